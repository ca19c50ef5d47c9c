/* The inference plan: paged KV cache, a one-layer workspace, and the step
 * function (prefill chunks and decode tokens of many sequences in one pass). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/step.h"
#include "model_internal.h"

#define NONE SIZE_MAX

gllm_backend *gllm_model_backend(const gllm_model *m) { return m->be; }

size_t gllm_kv_block_bytes(const gllm_model *m, int block_size)
{
    const gllm_model_config *c = &m->cfg;
    return 2 * (size_t)c->n_layers * (size_t)block_size * c->n_kv_heads * c->head_dim * m->esz;
}

void gllm_kv_pages_free(gllm_model *m, gllm_kv_pages *kv)
{
    if (!kv)
        return;
    for (int l = 0; kv->layer && l < kv->n_layers; l++) {
        if (kv->layer[l].k)
            m->be->free(m->be, kv->layer[l].k);
        if (kv->layer[l].v)
            m->be->free(m->be, kv->layer[l].v);
    }
    free(kv->layer);
    free(kv);
}

gllm_status gllm_kv_pages_create(gllm_model *m, int n_blocks, int block_size,
                                 gllm_kv_pages **out)
{
    const gllm_model_config *c = &m->cfg;
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "kv cache: %d blocks of %d tokens must be positive",
                         n_blocks, block_size);
    gllm_kv_pages *kv = gllm_calloc(1, sizeof *kv, "KV cache");
    if (!kv)
        return GLLM_ERR_OOM;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_layers = c->n_layers;
    kv->layer = gllm_calloc((size_t)c->n_layers, sizeof *kv->layer, "KV cache layers");
    if (!kv->layer) {
        free(kv);
        return GLLM_ERR_OOM;
    }
    const size_t bytes = (size_t)n_blocks * block_size * c->n_kv_heads * c->head_dim * m->esz;
    for (int l = 0; l < c->n_layers; l++) {
        gllm_kv_cache *L = &kv->layer[l];
        L->n_blocks = n_blocks;
        L->block_size = block_size;
        L->Hkv = c->n_kv_heads;
        L->D = c->head_dim;
        gllm_status s = m->be->alloc(m->be, bytes, "KV cache keys", &L->k);
        if (s == GLLM_OK)
            s = m->be->alloc(m->be, bytes, "KV cache values", &L->v);
        if (s != GLLM_OK) {
            gllm_kv_pages_free(m, kv);
            return s;
        }
        kv->bytes += 2 * bytes;
    }
    *out = kv;
    return GLLM_OK;
}

struct gllm_step_ws {
    gllm_model *m;
    int cap_tokens, cap_logits, cap_seq_ints;
    void *arena;        /* activations: one layer's scratch, logits rows */
    size_t arena_bytes;
    void *x, *x2, *h, *qkv, *attn, *fc, *act, *rows, *rows_n, *logits;
    int32_t *ints;      /* ids, pos, slots [T] | logit_rows [R] */
    int32_t *seq_ints;  /* q_start, q_len, ctx_len [S] | block_table [S * max_blocks] */
    int32_t *host;      /* staging for one upload of every index array */
    size_t host_cap;
    /* The projections' weights in the backend's packed layout (pack_b), when it
     * has one: [layer * 4 + (qkv, o, fc, proj)], then the head. Packed from
     * the weights of version pk_version (gllm_model.w_version). */
    void *pk_arena;
    size_t pk_bytes;
    const void **pk;
    uint64_t pk_version;
};

static void ws_release(gllm_step_ws *ws)
{
    gllm_backend *be = ws->m->be;
    if (ws->arena)
        be->free(be, ws->arena);
    if (ws->ints)
        be->free(be, ws->ints);
    if (ws->seq_ints)
        be->free(be, ws->seq_ints);
    ws->arena = NULL;
    ws->ints = ws->seq_ints = NULL;
    ws->arena_bytes = 0;
}

void gllm_step_ws_free(gllm_step_ws *ws)
{
    if (!ws)
        return;
    ws_release(ws);
    if (ws->pk_arena)
        ws->m->be->free(ws->m->be, ws->pk_arena);
    free(ws->pk);
    free(ws->host);
    free(ws);
}

size_t gllm_step_ws_bytes(const gllm_step_ws *ws)
{
    return ws->arena_bytes + ws->pk_bytes + ((size_t)3 * ws->cap_tokens + ws->cap_logits) * sizeof(int32_t) +
           (size_t)ws->cap_seq_ints * sizeof(int32_t);
}

static size_t al(size_t b) { return (b + 255) & ~(size_t)255; }

static gllm_status ws_grow(gllm_step_ws *ws, int T, int R)
{
    if (T <= ws->cap_tokens && R <= ws->cap_logits && ws->arena)
        return GLLM_OK;
    gllm_model *m = ws->m;
    const gllm_model_config *c = &m->cfg;
    T = T > ws->cap_tokens ? T : ws->cap_tokens;
    R = R > ws->cap_logits ? R : ws->cap_logits;
    if (R < 1)
        R = 1;
    ws_release(ws);
    const size_t e = m->esz, t = (size_t)T, C = (size_t)c->hidden;
    const size_t sz[] = {t * C * e, t * C * e, t * C * e, t * (size_t)m->QKV * e,
                         t * (size_t)c->n_heads * c->head_dim * e, t * (size_t)m->FC * e,
                         t * (size_t)m->ACT * e, (size_t)R * C * e, (size_t)R * C * e,
                         (size_t)R * c->vocab_size * e};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
        total += al(sz[i]);
    gllm_backend *be = m->be;
    GLLM_TRY(be->alloc(be, total, "inference workspace", &ws->arena));
    ws->arena_bytes = total;
    void **views[] = {&ws->x, &ws->x2, &ws->h, &ws->qkv, &ws->attn, &ws->fc, &ws->act,
                      &ws->rows, &ws->rows_n, &ws->logits};
    char *p = ws->arena;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        *views[i] = p;
        p += al(sz[i]);
    }
    GLLM_TRY(be->alloc(be, ((size_t)3 * T + R) * sizeof(int32_t), "step indices",
                       (void **)&ws->ints));
    ws->cap_tokens = T;
    ws->cap_logits = R;
    ws->cap_seq_ints = 0;
    return GLLM_OK;
}

/* the matmuls of one step: weight, N (outputs), K (inputs), in ws->pk order */
typedef struct pk_mat {
    size_t w;
    int N, K;
} pk_mat;

static int pk_list(const gllm_model *m, pk_mat *out)
{
    const gllm_model_config *c = &m->cfg;
    const int C = c->hidden, HD = c->n_heads * c->head_dim;
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_params *p = &m->layer[l];
        if (out) {
            out[n + 0] = (pk_mat){p->qkv_w, m->QKV, C};
            out[n + 1] = (pk_mat){p->o_w, C, HD};
            out[n + 2] = (pk_mat){p->fc_w, m->FC, C};
            out[n + 3] = (pk_mat){p->proj_w, C, m->ACT};
        }
        n += 4;
    }
    if (out)
        out[n] = (pk_mat){m->lm_head, c->vocab_size, C};
    return n + 1;
}

/* (Re)pack every projection when the backend has a packed layout and the
 * weights changed since the last packing (or were never packed). */
static gllm_status ws_pack(gllm_step_ws *ws)
{
    gllm_model *m = ws->m;
    gllm_backend *be = m->be;
    if (!be->packed_b_bytes || !be->pack_b || (ws->pk && ws->pk_version == m->w_version))
        return GLLM_OK;
    const int n = pk_list(m, NULL);
    pk_mat *list = gllm_malloc((size_t)n * sizeof *list, "packed weights list");
    if (!list)
        return GLLM_ERR_OOM;
    pk_list(m, list);
    gllm_status s = GLLM_OK;
    if (!ws->pk_arena) {
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            const size_t b = be->packed_b_bytes(be, list[i].N, list[i].K);
            if (b == 0) { /* no packed layout: the matmul packs per call */
                free(list);
                return GLLM_OK;
            }
            total += al(b);
        }
        ws->pk = gllm_calloc((size_t)n, sizeof *ws->pk, "packed weights");
        s = ws->pk ? be->alloc(be, total, "packed weights", &ws->pk_arena) : GLLM_ERR_OOM;
        if (s == GLLM_OK) {
            char *p = ws->pk_arena;
            for (int i = 0; i < n; i++) {
                ws->pk[i] = p;
                p += al(be->packed_b_bytes(be, list[i].N, list[i].K));
            }
            ws->pk_bytes = total;
        } else {
            free(ws->pk);
            ws->pk = NULL;
        }
    }
    for (int i = 0; s == GLLM_OK && i < n; i++)
        s = be->pack_b(be, (void *)ws->pk[i], wptr(m, list[i].w), list[i].N, list[i].K);
    if (s == GLLM_OK)
        ws->pk_version = m->w_version;
    free(list);
    return s;
}

gllm_status gllm_step_ws_create(gllm_model *m, int max_tokens, int max_logits,
                                gllm_step_ws **out)
{
    *out = NULL;
    gllm_step_ws *ws = gllm_calloc(1, sizeof *ws, "inference workspace");
    if (!ws)
        return GLLM_ERR_OOM;
    ws->m = m;
    gllm_status s = ws_grow(ws, max_tokens > 0 ? max_tokens : 1, max_logits > 0 ? max_logits : 1);
    if (s == GLLM_OK)
        s = ws_pack(ws);
    if (s != GLLM_OK) {
        gllm_step_ws_free(ws);
        return s;
    }
    *out = ws;
    return GLLM_OK;
}

static void *wv(const gllm_model *m, size_t off) { return off == NONE ? NULL : wptr(m, off); }

/* Batch invariance is on unless GLLM_BATCH_INVARIANT=0 (a measurement knob for
 * bench/infer_vs_transformers.py: what the row-invariant matmul costs). */
static bool row_invariant(void)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("GLLM_BATCH_INVARIANT");
        on = !(v && strcmp(v, "0") == 0);
    }
    return on != 0;
}

/* out[N, n_out] = inp W^T + bias + residual, rows computed independently of N */
static gllm_status lin(gllm_model *m, void *out, const void *inp, size_t w, size_t bias,
                       const void *residual, int N, int n_out, int n_in, const void *packed)
{
    const bool ri = row_invariant();
    gllm_matmul_args a = {.M = N, .N = n_out, .K = n_in, .trans_b = true, .alpha = 1.0f,
                          .bias = wv(m, bias), .residual = residual, .batch = 1,
                          .row_invariant = ri, .b_packed = ri ? packed : NULL};
    return m->be->matmul(m->be, out, inp, wptr(m, w), &a);
}

static gllm_status norm(gllm_model *m, void *out, const void *inp, size_t w, size_t b, int N)
{
    const gllm_model_config *c = &m->cfg;
    if (c->layernorm)
        return m->be->layernorm_fwd(m->be, out, NULL, NULL, inp, wptr(m, w), wv(m, b), N,
                                    c->hidden, c->norm_eps);
    return m->be->rmsnorm_fwd(m->be, out, NULL, inp, wptr(m, w), N, c->hidden, c->norm_eps);
}

static gllm_status check_batch(const gllm_model *m, const gllm_kv_pages *kv,
                               const gllm_step_batch *b)
{
    const gllm_model_config *c = &m->cfg;
    if (!b || b->n_tokens <= 0 || b->n_seq <= 0 || !b->ids || !b->pos || !b->slots ||
        !b->q_start || !b->q_len || !b->ctx_len || !b->block_table || b->max_blocks <= 0 ||
        b->n_logits < 0 || (b->n_logits > 0 && !b->logit_rows))
        return gllm_fail(GLLM_ERR_INVALID, "step: needs tokens, sequences, block tables");
    const long n_slots = (long)kv->n_blocks * kv->block_size;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size)
            return gllm_fail(GLLM_ERR_INVALID, "step: token %d has id %d outside the vocabulary "
                             "[0, %d)", i, b->ids[i], c->vocab_size);
        if (b->pos[i] < 0 || b->pos[i] >= c->max_pos)
            return gllm_fail(GLLM_ERR_INVALID, "step: token %d at position %d past "
                             "max_position_embeddings %d", i, b->pos[i], c->max_pos);
        if (b->slots[i] < 0 || b->slots[i] >= n_slots)
            return gllm_fail(GLLM_ERR_INVALID, "step: token %d has cache slot %d outside %ld",
                             i, b->slots[i], n_slots);
    }
    for (int i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= b->n_tokens)
            return gllm_fail(GLLM_ERR_INVALID, "step: logits row %d is %d, outside %d tokens", i,
                             b->logit_rows[i], b->n_tokens);
    return GLLM_OK;
}

/* A layer past its attention, on n rows: x2 = attn o_w + resid, then the MLP
 * on norm(x2), out = mlp + x2 (out may be resid: it is read before out is
 * written). Uses the workspace's x2, h, fc and act. */
static gllm_status layer_tail(gllm_model *m, gllm_step_ws *ws, const layer_params *p,
                              const void *const *pk, const void *attn, const void *resid,
                              void *out, int n)
{
    const gllm_model_config *c = &m->cfg;
    const int C = c->hidden, HD = c->n_heads * c->head_dim;
    GLLM_TRY(lin(m, ws->x2, attn, p->o_w, p->o_b, resid, n, C, HD, pk[1]));
    GLLM_TRY(norm(m, ws->h, ws->x2, p->ln2_w, p->ln2_b, n));
    GLLM_TRY(lin(m, ws->fc, ws->h, p->fc_w, p->fc_b, NULL, n, m->FC, C, pk[2]));
    if (c->gated_mlp)
        GLLM_TRY(m->be->swiglu_fwd(m->be, ws->act, ws->fc, n, m->ACT));
    else
        GLLM_TRY(m->be->gelu_fwd(m->be, ws->act, ws->fc, (size_t)n * m->ACT));
    return lin(m, out, ws->act, p->proj_w, p->proj_b, ws->x2, n, C, m->ACT, pk[3]);
}

gllm_status gllm_model_step(gllm_model *m, gllm_kv_pages *kv, gllm_step_ws *ws,
                            const gllm_step_batch *b, void **logits)
{
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    GLLM_TRY(check_batch(m, kv, b));
    if (!be->attention_paged)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "step: backend %s has no paged attention",
                         be->name);
    const int N = b->n_tokens, S = b->n_seq, R = b->n_logits, C = c->hidden;
    const int HD = c->n_heads * c->head_dim;
    GLLM_TRY(ws_grow(ws, N, R));
    GLLM_TRY(ws_pack(ws));
    const int seq_ints = 3 * S + S * b->max_blocks;
    if (seq_ints > ws->cap_seq_ints) {
        if (ws->seq_ints)
            be->free(be, ws->seq_ints);
        ws->seq_ints = NULL;
        int cap = seq_ints * 2;
        GLLM_TRY(be->alloc(be, (size_t)cap * sizeof(int32_t), "step sequence indices",
                           (void **)&ws->seq_ints));
        ws->cap_seq_ints = cap;
    }
    const size_t n_host = (size_t)3 * N + R + seq_ints;
    if (n_host > ws->host_cap) {
        free(ws->host);
        ws->host = gllm_malloc(2 * n_host * sizeof(int32_t), "step index staging");
        ws->host_cap = ws->host ? 2 * n_host : 0;
        if (!ws->host)
            return GLLM_ERR_OOM;
    }
    /* token ints: ids | pos | slots | logit_rows, one upload */
    int32_t *h = ws->host;
    memcpy(h, b->ids, (size_t)N * 4);
    memcpy(h + N, b->pos, (size_t)N * 4);
    memcpy(h + 2 * N, b->slots, (size_t)N * 4);
    if (R)
        memcpy(h + 3 * N, b->logit_rows, (size_t)R * 4);
    GLLM_TRY(be->upload(be, ws->ints, h, ((size_t)3 * N + R) * 4));
    int32_t *d_ids = ws->ints, *d_pos = d_ids + N, *d_slots = d_pos + N, *d_rows = d_slots + N;
    int32_t *hs = h + 3 * N + R;
    int max_ctx = 1;
    for (int s = 0; s < S; s++) {
        hs[s] = b->q_start[s];
        hs[S + s] = b->q_len[s];
        hs[2 * S + s] = b->ctx_len[s];
        max_ctx = b->ctx_len[s] > max_ctx ? b->ctx_len[s] : max_ctx;
    }
    memcpy(hs + 3 * S, b->block_table, (size_t)S * b->max_blocks * 4);
    GLLM_TRY(be->upload(be, ws->seq_ints, hs, (size_t)seq_ints * 4));
    const gllm_paged_attn_args pa = {
        .n_seq = S, .Hq = c->n_heads, .window = c->sliding_window,
        .scale = 1.0f / sqrtf((float)c->head_dim), .q_start = ws->seq_ints,
        .q_len = ws->seq_ints + S, .ctx_len = ws->seq_ints + 2 * S,
        .block_table = ws->seq_ints + 3 * S, .max_blocks = b->max_blocks, .n_tokens = N,
        .max_ctx = max_ctx};

    GLLM_TRY(be->embed_fwd(be, ws->x, d_ids, d_pos, wptr(m, m->wte), wv(m, m->wpe), N, C));
    /* The last layer's keys and values are needed for every token, its output
     * only for the rows whose logits are wanted: past its attention it runs on
     * those rows alone (R < N: a prefill chunk wants one row per sequence, or
     * none). Rows are computed independently of how many there are (lin), so
     * the logits are the same bits either way. */
    const int last = c->n_layers - 1;
    const bool gather_last = R < N;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_params *p = &m->layer[l];
        const void *const *pk = ws->pk ? ws->pk + 4 * l : (const void *const[4]){0};
        GLLM_TRY(norm(m, ws->h, ws->x, p->ln1_w, p->ln1_b, N));
        GLLM_TRY(lin(m, ws->qkv, ws->h, p->qkv_w, p->qkv_b, NULL, N, m->QKV, C, pk[0]));
        if (!c->learned_pos) {
            /* q's heads and k's follow each other in a qkv row: one rotation of
             * both, each angle's cos and sin computed once */
            gllm_rope_args qk = {.n_tokens = N, .n_heads = c->n_heads + c->n_kv_heads,
                                 .head_dim = c->head_dim, .rot_dim = c->head_dim,
                                 .row_stride = m->QKV, .inv_freq = m->inv_freq,
                                 .attn_factor = 1.0f};
            GLLM_TRY(be->rope_fwd(be, ws->qkv, d_pos, &qk));
        }
        GLLM_TRY(be->kv_store(be, &kv->layer[l], ws->qkv, d_slots, N, c->n_heads));
        GLLM_TRY(be->attention_paged(be, ws->attn, ws->qkv, &kv->layer[l], &pa));
        if (l == last && gather_last)
            break;
        GLLM_TRY(layer_tail(m, ws, p, pk, ws->attn, ws->x, ws->x, N));
    }
    if (logits)
        *logits = ws->logits;
    if (R == 0)
        return GLLM_OK;
    if (gather_last) {
        /* the rest of the last layer on the wanted rows: their attention output
         * (into qkv, free now) and residual (into rows) */
        const layer_params *p = &m->layer[last];
        const void *const *pk = ws->pk ? ws->pk + 4 * last : (const void *const[4]){0};
        GLLM_TRY(be->embed_fwd(be, ws->qkv, d_rows, NULL, ws->attn, NULL, R, HD));
        GLLM_TRY(be->embed_fwd(be, ws->rows, d_rows, NULL, ws->x, NULL, R, C));
        GLLM_TRY(layer_tail(m, ws, p, pk, ws->qkv, ws->rows, ws->rows, R));
    } else {
        /* every row wanted (decode): the final norm and the head on the wanted order */
        GLLM_TRY(be->embed_fwd(be, ws->rows, d_rows, NULL, ws->x, NULL, R, C));
    }
    GLLM_TRY(norm(m, ws->rows_n, ws->rows, m->lnf_w, m->lnf_b, R));
    return lin(m, ws->logits, ws->rows_n, m->lm_head, NONE, NULL, R, c->vocab_size, C,
               ws->pk ? ws->pk[4 * c->n_layers] : NULL);
}
