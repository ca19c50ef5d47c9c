/* The inference plan of a model: a paged KV cache and one step function that
 * runs any mix of prefill chunks and decode tokens over it.
 *
 * Inference allocates only what inference needs: the weights (the model),
 * the KV cache (gllm_kv_pages) and a workspace of one layer's scratch for the
 * step's tokens plus the logits rows asked for (gllm_step_ws). Gradients,
 * optimizer state and per-layer training activations are never touched (the
 * model allocates them on first training use).
 *
 * Positions are not cache slots: every token carries its position (RoPE,
 * learned positions) and its cache slot separately, so a sequence's prefill
 * can continue from blocks it shares with others (prefix sharing) and be split
 * into chunks.
 *
 * Batch invariance: every op of the step computes each token row alone in a
 * fixed order (row-invariant matmuls, per-token paged attention), so a token's
 * hidden states and logits are bit-identical whichever other tokens share the
 * step (on the CPU backend; see docs/inference.md). */
#ifndef GLLM_STEP_H
#define GLLM_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "gllm/backend.h"
#include "gllm/model.h"
#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend a model runs on. */
gllm_backend *gllm_model_backend(const gllm_model *m);

/* Per-layer K and V, each [n_blocks, block_size, Hkv, D] in act_dtype. */
typedef struct gllm_kv_pages {
    int n_blocks, block_size, n_layers;
    gllm_kv_cache *layer; /* [n_layers] */
    size_t bytes;         /* device bytes held */
} gllm_kv_pages;

/* Device bytes one block of block_size tokens takes over all layers (K and V). */
size_t gllm_kv_block_bytes(const gllm_model *m, int block_size);
gllm_status gllm_kv_pages_create(gllm_model *m, int n_blocks, int block_size,
                                 gllm_kv_pages **out);
void gllm_kv_pages_free(gllm_model *m, gllm_kv_pages *kv);

/* One step's work, all host arrays. Tokens are grouped by sequence: sequence s
 * owns token rows q_start[s] .. q_start[s] + q_len[s] - 1 and has ctx_len[s]
 * tokens in its cache after this step (its earlier tokens already there). */
typedef struct gllm_step_batch {
    int n_tokens;
    const int32_t *ids, *pos, *slots;         /* [n_tokens]; slot = block * block_size + offset */
    int n_seq;
    const int32_t *q_start, *q_len, *ctx_len; /* [n_seq] */
    const int32_t *block_table;               /* [n_seq * max_blocks] */
    int max_blocks;
    int n_logits;
    const int32_t *logit_rows;                /* [n_logits] token rows whose logits are wanted */
} gllm_step_batch;

typedef struct gllm_step_ws gllm_step_ws;

/* A workspace for steps of up to max_tokens tokens and max_logits logits rows
 * (grown on demand when a step needs more). Caller frees it. */
gllm_status gllm_step_ws_create(gllm_model *m, int max_tokens, int max_logits,
                                gllm_step_ws **out);
void gllm_step_ws_free(gllm_step_ws *ws);
size_t gllm_step_ws_bytes(const gllm_step_ws *ws);

/* Run the model over the batch: k, v of every token stored into its slot, then
 * attention over each sequence's cache. *logits (device, act_dtype, [n_logits,
 * V], valid until the next step) gets the wanted rows' logits. */
gllm_status gllm_model_step(gllm_model *m, gllm_kv_pages *kv, gllm_step_ws *ws,
                            const gllm_step_batch *b, void **logits);

#ifdef __cplusplus
}
#endif
#endif
