// Rotary position embedding, HF rotate_half convention, in place on q or k heads.
#pragma once
#include "cuda_common.cuh"

gllm_status gllm_cuda_rope_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *x, const int32_t *pos,
                               const gllm_rope_args *a);
// The transposed rotation (the gradient of the forward), in place on dx.
gllm_status gllm_cuda_rope_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dx, const int32_t *pos,
                               const gllm_rope_args *a);
