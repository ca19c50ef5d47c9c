// Gradient norm and the fused multi-tensor AdamW.
#pragma once
#include "cuda_common.cuh"

// *out = sum of x[i]^2 over n floats, in a fixed order (two launches).
gllm_status gllm_cuda_sumsq(gllm_cuda_ctx *c, float *out, const float *x, size_t n);

// One launch updating every segment (a ZeRO-1 shard is simply a subset of
// segments or sub-ranges). master must not be NULL: bf16 params are no master copy.
gllm_status gllm_cuda_adamw(gllm_cuda_ctx *c, __nv_bfloat16 *params, float *master,
                            const float *grads, float *m, float *v,
                            const gllm_param_segment *segs, int n_segs,
                            const gllm_adamw_args *a);
