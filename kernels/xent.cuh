// Fused softmax cross-entropy over bf16 logits, gradient written in place.
#pragma once
#include "cuda_common.cuh"

// loss_mask may be NULL (every row counts). Semantics: include/gllm/backend.h xent_fwd_bwd.
gllm_status gllm_cuda_xent_fwd_bwd(gllm_cuda_ctx *c, float *loss, __nv_bfloat16 *logits,
                                   const int32_t *targets, const float *loss_mask, int N, int V,
                                   float dlogits_scale);
