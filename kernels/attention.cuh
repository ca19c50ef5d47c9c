// Attention on bf16 activations: flash-attention forward and backward over packed
// rows (causal inside each document, GQA, optional sliding window), the paged KV
// cache store and the split-context decode kernel. Semantics are those of
// attention_fwd / attention_bwd / kv_store / attention_decode in gllm/backend.h.
//
// Head dims 64, 80 and 128 take the tensor-core (mma.sync, sm_80+) kernels; any
// other head dim takes a simple warp-per-row kernel. Every op is deterministic:
// no float atomics, all reductions in a fixed order.
#pragma once
#include "cuda_common.cuh"

gllm_status gllm_cuda_attention_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, float *lse,
                                    const __nv_bfloat16 *qkv, const int32_t *pos,
                                    const gllm_attn_shape *s);

// Uses gllm_cuda_scratch for D_i = rowsum(dO * O) and per-query-tile bounds.
gllm_status gllm_cuda_attention_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dqkv,
                                    const __nv_bfloat16 *dout, const __nv_bfloat16 *qkv,
                                    const __nv_bfloat16 *out, const float *lse,
                                    const int32_t *pos, const gllm_attn_shape *s);

// Slots outside [0, n_blocks*block_size) are skipped on the device (checking them
// would need a copy back to the host); the CPU backend reports them.
gllm_status gllm_cuda_kv_store(gllm_cuda_ctx *c, gllm_kv_cache *kv, const __nv_bfloat16 *qkv,
                               const int32_t *slot, int n_tokens, int Hq);

// Uses gllm_cuda_scratch for the per-split partial (max, sum, out).
gllm_status gllm_cuda_attention_decode(gllm_cuda_ctx *c, __nv_bfloat16 *out,
                                       const __nv_bfloat16 *qkv, const gllm_kv_cache *kv,
                                       const int32_t *block_table, int max_blocks,
                                       const int32_t *seq_len, int n_seq, int Hq, int window,
                                       float scale);

// Shared by the forward and backward launchers: the generic (any head dim) kernels.
gllm_status gllm_cuda_attention_fwd_generic(gllm_cuda_ctx *c, __nv_bfloat16 *out, float *lse,
                                            const __nv_bfloat16 *qkv, const int32_t *pos,
                                            const gllm_attn_shape *s);
gllm_status gllm_cuda_attention_bwd_generic(gllm_cuda_ctx *c, __nv_bfloat16 *dqkv,
                                            const __nv_bfloat16 *dout,
                                            const __nv_bfloat16 *qkv,
                                            const __nv_bfloat16 *out, const float *lse,
                                            const int32_t *pos, const gllm_attn_shape *s);

// Checks a shape for every attention entry point; names the op in the message.
gllm_status gllm_cuda_attn_check(const char *op, const gllm_attn_shape *s);
