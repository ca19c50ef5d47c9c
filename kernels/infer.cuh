// Inference ops: paged attention and per-row sampling (gllm/backend.h's
// attention_paged and sample_rows). Every output row is computed by one block
// alone, in a fixed order (batch invariant).
#pragma once
#include "cuda_common.cuh"

gllm_status gllm_cuda_attention_paged(gllm_cuda_ctx *c, __nv_bfloat16 *out,
                                      const __nv_bfloat16 *qkv, const gllm_kv_cache *kv,
                                      const gllm_paged_attn_args *a);

// Uses gllm_cuda_scratch for [N, V] floats of processed logits.
gllm_status gllm_cuda_sample_rows(gllm_cuda_ctx *c, int32_t *out_ids, float *out_logprob,
                                  int32_t *top_ids, float *top_lp, int max_top,
                                  const __nv_bfloat16 *logits, int N, int V,
                                  const gllm_sample_params *params, const int32_t *pen_ids,
                                  const int32_t *pen_off);
