/* C-callable timing hook for the CUDA attention kernels (kernels/attention_bench.cu),
 * used by bench/bench_attention.c. Returns GLLM_ERR_UNSUPPORTED when gllm was built
 * without CUDA (the stub lives beside the other cuda_bench.h stubs). */
#ifndef GLLM_CUDA_BENCH_ATTN_H
#define GLLM_CUDA_BENCH_ATTN_H

#include "gllm/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Time be->attention_fwd (bwd = 0) or be->attention_bwd (bwd = 1) at shape `s` with
 * unpacked rows (pos[n] = n % T, plain causal), on buffers the bench allocates and
 * fills with random bf16. After `warmup` runs it times `iters` runs one by one with
 * CUDA events and returns the median in *median_ms. */
gllm_status gllm_cuda_bench_attention(gllm_backend *be, const gllm_attn_shape *s, int bwd,
                                      int warmup, int iters, double *median_ms);

#ifdef __cplusplus
}
#endif
#endif
