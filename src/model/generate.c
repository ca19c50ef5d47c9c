/* Greedy decoding of one sequence, on the inference plan: a paged KV cache,
 * one step over the prompt, then one-token steps (gllm_model_step), the next
 * id picked by the backend's per-row sampler. No training state is touched. */
#include <stdlib.h>
#include <string.h>

#include "gllm/step.h"
#include "model_internal.h"

#define KV_BLOCK 16

gllm_status gllm_model_generate_greedy(gllm_model *m, const int32_t *prompt, int n_prompt,
                                       int n_new, int32_t *out)
{
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    if (n_prompt < 1 || n_new < 0 || n_prompt + n_new > c->max_pos)
        return gllm_fail(GLLM_ERR_INVALID, "generate: %d prompt + %d new tokens must be >= 1 and "
                         "fit max_position_embeddings %d", n_prompt, n_new, c->max_pos);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return gllm_fail(GLLM_ERR_INVALID, "generate: prompt token %d is id %d, outside the "
                             "vocabulary [0, %d)", i, prompt[i], c->vocab_size);
    if (n_new == 0)
        return GLLM_OK;
    const int total = n_prompt + n_new, nb = (total + KV_BLOCK - 1) / KV_BLOCK;
    gllm_kv_pages *kv = NULL;
    gllm_step_ws *ws = NULL;
    void *dev = NULL; /* sample params [1] | chosen id [1] */
    int32_t *table = malloc((size_t)nb * sizeof *table);
    int32_t *idx = malloc((size_t)n_prompt * 3 * sizeof *idx);
    gllm_status s = table && idx ? GLLM_OK : gllm_fail(GLLM_ERR_OOM, "generate: out of memory");
    if (s == GLLM_OK)
        s = gllm_kv_pages_create(m, nb, KV_BLOCK, &kv);
    if (s == GLLM_OK)
        s = gllm_step_ws_create(m, n_prompt, 1, &ws);
    const gllm_sample_params greedy = {.temperature = 0.0f, .top_p = 1.0f,
                                       .repetition_penalty = 1.0f};
    if (s == GLLM_OK)
        s = be->alloc(be, sizeof greedy + 64, "sampler state", &dev);
    if (s == GLLM_OK)
        s = be->upload(be, dev, &greedy, sizeof greedy);
    int32_t *d_id = dev ? (int32_t *)((char *)dev + sizeof greedy) : NULL;
    /* one sequence owning blocks 0..nb-1 in order: the slot of position p is p */
    for (int i = 0; table && i < nb; i++)
        table[i] = i;
    int32_t *ids = idx, *pos = idx + n_prompt, *slots = idx + 2 * n_prompt;
    for (int i = 0; idx && i < n_prompt; i++) {
        ids[i] = prompt[i];
        pos[i] = slots[i] = i;
    }
    int32_t q0 = 0, ql = n_prompt, len = n_prompt, row = n_prompt - 1, id = 0;
    gllm_step_batch b = {.n_tokens = n_prompt, .ids = ids, .pos = pos, .slots = slots,
                         .n_seq = 1, .q_start = &q0, .q_len = &ql, .ctx_len = &len,
                         .block_table = table, .max_blocks = nb, .n_logits = 1,
                         .logit_rows = &row};
    for (int t = 0; s == GLLM_OK && t < n_new; t++) {
        void *logits = NULL;
        s = gllm_model_step(m, kv, ws, &b, &logits);
        if (s == GLLM_OK)
            s = be->sample_rows(be, d_id, NULL, NULL, NULL, 0, logits, 1, c->vocab_size,
                                (const gllm_sample_params *)dev, NULL, NULL);
        if (s == GLLM_OK)
            s = be->download(be, &id, d_id, sizeof id);
        if (s != GLLM_OK)
            break;
        out[t] = id;
        /* the next step: the new token alone, at position len */
        ids[0] = id;
        pos[0] = slots[0] = len;
        len++;
        ql = 1;
        row = 0;
        b.n_tokens = 1;
    }
    if (dev)
        be->free(be, dev);
    gllm_step_ws_free(ws);
    gllm_kv_pages_free(m, kv);
    free(table);
    free(idx);
    return s;
}
