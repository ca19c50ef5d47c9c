// Pointwise ops on bf16 activations: GELU (tanh), SwiGLU, add, and the bias gradient.
#pragma once
#include "cuda_common.cuh"

gllm_status gllm_cuda_gelu_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *inp,
                               size_t n);
gllm_status gllm_cuda_gelu_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, const __nv_bfloat16 *inp,
                               const __nv_bfloat16 *dout, size_t n);
gllm_status gllm_cuda_add(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *a,
                          const __nv_bfloat16 *b, size_t n);
gllm_status gllm_cuda_swiglu_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *inp,
                                 int N, int I);
gllm_status gllm_cuda_swiglu_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp,
                                 const __nv_bfloat16 *inp, const __nv_bfloat16 *dout, int N,
                                 int I);
// dbias[N] += column sums of dout[M, N], in a fixed order (two passes).
gllm_status gllm_cuda_bias_bwd(gllm_cuda_ctx *c, float *dbias, const __nv_bfloat16 *dout, int M,
                               int N);
