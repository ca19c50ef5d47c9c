/* Greedy decoding of one sequence over a paged KV cache: a prefill pass over
 * the prompt, then one-token decode steps. The same ops (kv_store,
 * attention_decode, sample) serve batched inference. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#define KV_BLOCK 16

typedef struct gen_state {
    gllm_kv_cache *kv;
    int32_t *dev_ints; /* slots [T] | block_table [nb] | seq_len [1] | next id [1] */
    uint64_t *seed;    /* sampler seed (greedy ignores its value) */
    int nb;
} gen_state;

static void gen_free(gllm_model *m, gen_state *g)
{
    gllm_backend *be = m->be;
    for (int l = 0; g->kv && l < m->cfg.n_layers; l++) {
        if (g->kv[l].k)
            be->free(be, g->kv[l].k);
        if (g->kv[l].v)
            be->free(be, g->kv[l].v);
    }
    free(g->kv);
    if (g->dev_ints)
        be->free(be, g->dev_ints);
    if (g->seed)
        be->free(be, g->seed);
}

static gllm_status gen_alloc(gllm_model *m, gen_state *g, int total, int n_prompt)
{
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    g->nb = (total + KV_BLOCK - 1) / KV_BLOCK;
    g->kv = gllm_calloc((size_t)c->n_layers, sizeof *g->kv, "KV cache views");
    if (!g->kv)
        return GLLM_ERR_OOM;
    const size_t bytes = (size_t)g->nb * KV_BLOCK * c->n_kv_heads * c->head_dim * m->esz;
    for (int l = 0; l < c->n_layers; l++) {
        gllm_kv_cache *kv = &g->kv[l];
        kv->n_blocks = g->nb;
        kv->block_size = KV_BLOCK;
        kv->Hkv = c->n_kv_heads;
        kv->D = c->head_dim;
        GLLM_TRY(be->alloc(be, bytes, "KV cache keys", &kv->k));
        GLLM_TRY(be->alloc(be, bytes, "KV cache values", &kv->v));
    }
    const size_t n_ints = (size_t)n_prompt + (size_t)g->nb + 2;
    GLLM_TRY(be->alloc(be, n_ints * sizeof(int32_t), "decode indices", (void **)&g->dev_ints));
    const uint64_t seed = 0;
    GLLM_TRY(be->alloc(be, sizeof seed, "sampler seed", (void **)&g->seed));
    GLLM_TRY(be->upload(be, g->seed, &seed, sizeof seed));
    /* one sequence owning blocks 0..nb-1 in order: slot of position p is p */
    int32_t *host = gllm_malloc(n_ints * sizeof(int32_t), "decode indices");
    if (!host)
        return GLLM_ERR_OOM;
    for (int i = 0; i < n_prompt; i++)
        host[i] = i;
    for (int i = 0; i < g->nb; i++)
        host[n_prompt + i] = i;
    host[n_prompt + g->nb] = 0;
    host[n_prompt + g->nb + 1] = 0;
    gllm_status s = be->upload(be, g->dev_ints, host, n_ints * sizeof(int32_t));
    free(host);
    return s;
}

/* logits of token row `row` of m->lnf -> greedy id via the backend's sampler */
static gllm_status next_token(gllm_model *m, const gen_state *g, int row, int32_t *dev_id,
                              int32_t *id)
{
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    GLLM_TRY(gllm_model_linear(m, m->logits, act_at(m, m->lnf, (size_t)row * c->hidden),
                               m->lm_head, SIZE_MAX, NULL, 1, c->vocab_size, c->hidden));
    const gllm_sample_args greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    GLLM_TRY(be->sample(be, dev_id, m->logits, 1, c->vocab_size, &greedy, g->seed));
    return be->download(be, id, dev_id, sizeof *id);
}

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
    GLLM_TRY(gllm_model_plan(m, 1, n_prompt));
    gen_state g = {0};
    gllm_status s = gen_alloc(m, &g, n_prompt + n_new, n_prompt);
    int32_t *slots = g.dev_ints, *table = g.dev_ints + n_prompt;
    int32_t *seq_len = table + g.nb, *dev_id = seq_len + 1;
    int32_t *pos = gllm_malloc((size_t)n_prompt * sizeof(int32_t), "prompt positions");
    if (!pos && s == GLLM_OK)
        s = GLLM_ERR_OOM;
    for (int i = 0; pos && i < n_prompt; i++)
        pos[i] = i;
    if (s == GLLM_OK)
        s = be->upload(be, m->ids, prompt, (size_t)n_prompt * sizeof(int32_t));
    if (s == GLLM_OK)
        s = be->upload(be, m->pos, pos, (size_t)n_prompt * sizeof(int32_t));
    free(pos);
    gllm_infer prefill = {.kv = g.kv, .slots = slots, .decode = false};
    if (s == GLLM_OK)
        s = gllm_model_blocks(m, 1, n_prompt, &prefill);
    int32_t id = 0;
    if (s == GLLM_OK)
        s = next_token(m, &g, n_prompt - 1, dev_id, &id);
    gllm_infer step = {.kv = g.kv, .slots = m->pos, .decode = true, .block_table = table,
                       .max_blocks = g.nb, .seq_len = seq_len};
    for (int t = 0; s == GLLM_OK && t < n_new; t++) {
        out[t] = id;
        if (t + 1 == n_new)
            break;
        /* the new token sits at position p = n_prompt + t, which is also its cache slot */
        const int32_t p = n_prompt + t, len = p + 1;
        s = be->upload(be, m->ids, &id, sizeof id);
        if (s == GLLM_OK)
            s = be->upload(be, m->pos, &p, sizeof p);
        if (s == GLLM_OK)
            s = be->upload(be, seq_len, &len, sizeof len);
        if (s == GLLM_OK)
            s = gllm_model_blocks(m, 1, 1, &step);
        if (s == GLLM_OK)
            s = next_token(m, &g, 0, dev_id, &id);
    }
    gen_free(m, &g);
    return s;
}
