// Token (and learned position) embeddings.
#pragma once
#include "cuda_common.cuh"

gllm_status gllm_cuda_embed_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, const int32_t *ids,
                                const int32_t *pos, const __nv_bfloat16 *wte,
                                const __nv_bfloat16 *wpe, int N, int C);
// dwte[ids[n]] += dout[n] (and dwpe[pos[n]] += dout[n] when dwpe): deterministic,
// each destination row summed by one block in token order.
gllm_status gllm_cuda_embed_bwd(gllm_cuda_ctx *c, float *dwte, float *dwpe,
                                const __nv_bfloat16 *dout, const int32_t *ids,
                                const int32_t *pos, int N, int C, int V);
