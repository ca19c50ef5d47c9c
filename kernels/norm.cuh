// LayerNorm and RMSNorm over the last dim C of N bf16 rows (statistics in fp32).
#pragma once
#include "cuda_common.cuh"

gllm_status gllm_cuda_layernorm_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, float *mean,
                                    float *rstd, const __nv_bfloat16 *inp,
                                    const __nv_bfloat16 *w, const __nv_bfloat16 *b, int N, int C,
                                    float eps);
// dinp += ..., dw += ..., db += ... (db may be NULL when the norm has no bias).
gllm_status gllm_cuda_layernorm_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, float *dw, float *db,
                                    const __nv_bfloat16 *dout, const __nv_bfloat16 *inp,
                                    const __nv_bfloat16 *w, const float *mean,
                                    const float *rstd, int N, int C);
gllm_status gllm_cuda_rmsnorm_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, float *rstd,
                                  const __nv_bfloat16 *inp, const __nv_bfloat16 *w, int N, int C,
                                  float eps);
gllm_status gllm_cuda_rmsnorm_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, float *dw,
                                  const __nv_bfloat16 *dout, const __nv_bfloat16 *inp,
                                  const __nv_bfloat16 *w, const float *rstd, int N, int C);
