/* Causal attention over packed documents with GQA and sliding windows, its
 * flash-style backward (probabilities recomputed from the saved log-sum-exp),
 * and decode over the paged KV cache. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

/* what the chunks of this file's ops read */
typedef struct attn_ctx {
    const gllm_attn_shape *s;
    const float *x, *go, *o, *lse_in, *K, *V;
    float *out, *lse, *dx, *Kw, *Vw;
    const int32_t *pos, *slot, *block_table, *seq_len;
    unsigned char *scr;
    size_t stride, W, OW, HD;
    int T, Hq, Hkv, D, group, bs, max_blocks, window;
    float scale;
} attn_ctx;

static void attn_fwd_range(void *args, long b, long e, int tid)
{
    const attn_ctx *c = args;
    const gllm_attn_shape *s = c->s;
    const int T = c->T, Hq = c->Hq, Hkv = c->Hkv, D = c->D, group = c->group;
    const size_t W = c->W;
    const float *x = c->x;
    float *p = (float *)(c->scr + (size_t)tid * c->stride);
    for (long task = b; task < e; task++) {
        long n = task / Hq;
        int h = (int)(task % Hq), g = h / group;
        long lo = gllm_cpu_attn_lo(n, n / T * T, c->pos, s->window);
        const float *q = x + n * W + (size_t)h * D;
        float mx = -INFINITY;
        for (long m = lo; m <= n; m++) {
            float sc = s->scale * gllm_cpu_dot(q, x + m * W + (size_t)(Hq + g) * D, D);
            p[m - lo] = sc;
            if (sc > mx)
                mx = sc;
        }
        float sum = 0;
        for (long m = lo; m <= n; m++) {
            p[m - lo] = expf(p[m - lo] - mx);
            sum += p[m - lo];
        }
        float *on = c->out + n * (size_t)Hq * D + (size_t)h * D;
        memset(on, 0, (size_t)D * sizeof(float));
        for (long m = lo; m <= n; m++) {
            const float *v = x + m * W + (size_t)(Hq + Hkv + g) * D;
            float pm = p[m - lo];
            for (int d = 0; d < D; d++)
                on[d] += pm * v[d];
        }
        float inv = 1.0f / sum;
        for (int d = 0; d < D; d++)
            on[d] *= inv;
        c->lse[n * Hq + h] = mx + logf(sum);
    }
}

/* One task per (row, kv head): it owns dk, dv of that head and dq of the query
 * heads sharing it, so no two threads write the same element and the sums run
 * in a fixed order. */
static void attn_bwd_range(void *args, long b, long e, int tid)
{
    const attn_ctx *c = args;
    const gllm_attn_shape *s = c->s;
    const int T = c->T, Hq = c->Hq, Hkv = c->Hkv, D = c->D, group = c->group;
    const size_t W = c->W, OW = c->OW;
    const float *x = c->x, *go = c->go, *o = c->o;
    float *dx = c->dx;
    float *dq = (float *)(c->scr + (size_t)tid * c->stride);
    for (long task = b; task < e; task++) {
        long row0 = (task / Hkv) * T;
        int g = (int)(task % Hkv);
        for (long n = row0; n < row0 + T; n++) {
            memset(dx + n * W + (size_t)(Hq + g) * D, 0, (size_t)D * sizeof(float));
            memset(dx + n * W + (size_t)(Hq + Hkv + g) * D, 0, (size_t)D * sizeof(float));
        }
        for (long n = row0; n < row0 + T; n++) {
            long lo = gllm_cpu_attn_lo(n, row0, c->pos, s->window);
            for (int h = g * group; h < (g + 1) * group; h++) {
                const float *q = x + n * W + (size_t)h * D;
                const float *gn = go + n * OW + (size_t)h * D;
                float di = gllm_cpu_dot(gn, o + n * OW + (size_t)h * D, D);
                float l = c->lse_in[n * Hq + h];
                memset(dq, 0, (size_t)D * sizeof(float));
                for (long m = lo; m <= n; m++) {
                    const float *k = x + m * W + (size_t)(Hq + g) * D;
                    const float *v = k + (size_t)Hkv * D;
                    float p = expf(s->scale * gllm_cpu_dot(q, k, D) - l);
                    float ds = p * (gllm_cpu_dot(gn, v, D) - di) * s->scale;
                    float *dk = dx + m * W + (size_t)(Hq + g) * D;
                    float *dv = dk + (size_t)Hkv * D;
                    for (int d = 0; d < D; d++) {
                        dq[d] += ds * k[d];
                        dk[d] += ds * q[d];
                        dv[d] += p * gn[d];
                    }
                }
                memcpy(dx + n * W + (size_t)h * D, dq, (size_t)D * sizeof(float));
            }
        }
    }
}

static void kv_store_range(void *args, long b, long e, int tid)
{
    const attn_ctx *c = args;
    const size_t W = c->W, HD = c->HD;
    (void)tid;
    for (long i = b; i < e; i++) {
        memcpy(c->Kw + (size_t)c->slot[i] * HD, c->x + i * W + (size_t)c->Hq * c->D,
               HD * sizeof(float));
        memcpy(c->Vw + (size_t)c->slot[i] * HD, c->x + i * W + (size_t)(c->Hq + c->Hkv) * c->D,
               HD * sizeof(float));
    }
}

static void attn_decode_range(void *args, long b, long e, int tid)
{
    const attn_ctx *c = args;
    const int Hq = c->Hq, D = c->D, group = c->group, bs = c->bs, window = c->window;
    const size_t W = c->W, HD = c->HD;
    float *p = (float *)(c->scr + (size_t)tid * c->stride);
    for (long task = b; task < e; task++) {
        int sq = (int)(task / Hq), h = (int)(task % Hq), g = h / group;
        int L = c->seq_len[sq];
        /* the query sits at position L-1; key j is visible iff L-1 - j < window */
        int lo = window > 0 && L - window > 0 ? L - window : 0;
        const int32_t *bt = c->block_table + (size_t)sq * c->max_blocks;
        const float *q = c->x + sq * W + (size_t)h * D;
        float mx = -INFINITY;
        for (int j = lo; j < L; j++) {
            size_t slot = (size_t)bt[j / bs] * bs + j % bs;
            float sc = c->scale * gllm_cpu_dot(q, c->K + slot * HD + (size_t)g * D, D);
            p[j - lo] = sc;
            if (sc > mx)
                mx = sc;
        }
        float sum = 0;
        for (int j = lo; j < L; j++) {
            p[j - lo] = expf(p[j - lo] - mx);
            sum += p[j - lo];
        }
        float *on = c->out + (size_t)sq * Hq * D + (size_t)h * D;
        memset(on, 0, (size_t)D * sizeof(float));
        for (int j = lo; j < L; j++) {
            size_t slot = (size_t)bt[j / bs] * bs + j % bs;
            const float *v = c->V + slot * HD + (size_t)g * D;
            for (int d = 0; d < D; d++)
                on[d] += p[j - lo] * v[d];
        }
        float inv = 1.0f / sum;
        for (int d = 0; d < D; d++)
            on[d] *= inv;
    }
}

static gllm_status attn_check(const char *op, const gllm_attn_shape *s)
{
    if (!s || s->B <= 0 || s->T <= 0 || s->Hq <= 0 || s->Hkv <= 0 || s->D <= 0 ||
        s->Hq % s->Hkv || s->window < 0)
        return gllm_fail(GLLM_ERR_INVALID,
                         "%s: bad shape (B=%d T=%d Hq=%d Hkv=%d D=%d window=%d): Hq must be a "
                         "multiple of Hkv",
                         op, s ? s->B : 0, s ? s->T : 0, s ? s->Hq : 0, s ? s->Hkv : 0,
                         s ? s->D : 0, s ? s->window : 0);
    return GLLM_OK;
}

static gllm_status pos_check(const char *op, const int32_t *pos, const gllm_attn_shape *s)
{
    for (long n = 0; n < (long)s->B * s->T; n++)
        if (pos[n] < 0 || pos[n] > n % s->T)
            return gllm_fail(GLLM_ERR_INVALID,
                             "%s: pos[%ld] = %d is outside its row (token %ld of %d)", op, n,
                             pos[n], n % s->T, s->T);
    return GLLM_OK;
}

gllm_status gllm_cpu_attention_fwd(gllm_backend *be, void *out, float *lse, const void *qkv,
                                   const int32_t *pos, const gllm_attn_shape *s)
{
    GLLM_TRY(attn_check("attention_fwd", s));
    if (!out || !lse || !qkv || !pos)
        return gllm_fail(GLLM_ERR_INVALID, "attention_fwd: NULL argument");
    GLLM_TRY(pos_check("attention_fwd", pos, s));
#ifdef GLLM_HAVE_BLAS
    if (gllm_cpu_ctx_of(be)->use_blas)
        return gllm_cpu_attention_fwd_blas(be, out, lse, qkv, pos, s);
#endif
    int T = s->T, Hq = s->Hq, Hkv = s->Hkv, D = s->D, group = Hq / Hkv;
    size_t W = (size_t)(Hq + 2 * Hkv) * D;
    unsigned char *scr = gllm_cpu_scratch(be, (size_t)T * sizeof(float), "attention_fwd");
    if (!scr)
        return GLLM_ERR_OOM;
    attn_ctx c = {.s = s, .x = qkv, .out = out, .lse = lse, .pos = pos, .scr = scr,
                  .stride = gllm_cpu_ctx_of(be)->scratch_stride, .W = W, .T = T, .Hq = Hq,
                  .Hkv = Hkv, .D = D, .group = group};
    gllm_cpu_for(be, (long)s->B * T * Hq, 4.0 * D * (T / 2 + 1), attn_fwd_range, &c);
    return GLLM_OK;
}

gllm_status gllm_cpu_attention_bwd(gllm_backend *be, void *dqkv, const void *dout,
                                   const void *qkv, const void *out, const float *lse,
                                   const int32_t *pos, const gllm_attn_shape *s)
{
    GLLM_TRY(attn_check("attention_bwd", s));
    if (!dqkv || !dout || !qkv || !out || !lse || !pos)
        return gllm_fail(GLLM_ERR_INVALID, "attention_bwd: NULL argument");
    GLLM_TRY(pos_check("attention_bwd", pos, s));
#ifdef GLLM_HAVE_BLAS
    if (gllm_cpu_ctx_of(be)->use_blas)
        return gllm_cpu_attention_bwd_blas(be, dqkv, dout, qkv, out, lse, pos, s);
#endif
    int T = s->T, Hq = s->Hq, Hkv = s->Hkv, D = s->D, group = Hq / Hkv;
    size_t W = (size_t)(Hq + 2 * Hkv) * D, OW = (size_t)Hq * D;
    unsigned char *scr = gllm_cpu_scratch(be, (size_t)D * sizeof(float), "attention_bwd");
    if (!scr)
        return GLLM_ERR_OOM;
    attn_ctx c = {.s = s, .x = qkv, .go = dout, .o = out, .lse_in = lse, .dx = dqkv,
                  .pos = pos, .scr = scr, .stride = gllm_cpu_ctx_of(be)->scratch_stride, .W = W,
                  .OW = OW, .T = T, .Hq = Hq, .Hkv = Hkv, .D = D, .group = group};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (long)s->B * Hkv, 1, attn_bwd_range, &c);
    return GLLM_OK;
}

gllm_status gllm_cpu_kv_store(gllm_backend *be, gllm_kv_cache *kv, const void *qkv,
                              const int32_t *slot, int n_tokens, int Hq)
{
    if (!kv || !kv->k || !kv->v || !qkv || !slot || n_tokens < 0 || Hq <= 0 || kv->Hkv <= 0 ||
        kv->D <= 0 || kv->block_size <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "kv_store: bad arguments (n_tokens=%d Hq=%d)",
                         n_tokens, Hq);
    int Hkv = kv->Hkv, D = kv->D;
    long n_slots = (long)kv->n_blocks * kv->block_size;
    for (int i = 0; i < n_tokens; i++)
        if (slot[i] < 0 || slot[i] >= n_slots)
            return gllm_fail(GLLM_ERR_INVALID,
                             "kv_store: slot[%d] = %d outside the cache's %ld slots", i, slot[i],
                             n_slots);
    attn_ctx c = {.x = qkv, .Kw = kv->k, .Vw = kv->v, .slot = slot,
                  .W = (size_t)(Hq + 2 * Hkv) * D, .HD = (size_t)Hkv * D, .Hq = Hq, .Hkv = Hkv,
                  .D = D};
    gllm_cpu_for(be, n_tokens, 2.0 * Hkv * D, kv_store_range, &c);
    return GLLM_OK;
}

gllm_status gllm_cpu_attention_decode(gllm_backend *be, void *out, const void *qkv,
                                      const gllm_kv_cache *kv, const int32_t *block_table,
                                      int max_blocks, const int32_t *seq_len, int n_seq, int Hq,
                                      int window, float scale)
{
    if (!out || !qkv || !kv || !block_table || !seq_len || n_seq < 0 || Hq <= 0 ||
        kv->Hkv <= 0 || Hq % kv->Hkv || kv->block_size <= 0 || max_blocks <= 0)
        return gllm_fail(GLLM_ERR_INVALID,
                         "attention_decode: bad arguments (n_seq=%d Hq=%d Hkv=%d)", n_seq, Hq,
                         kv ? kv->Hkv : 0);
    int bs = kv->block_size, Hkv = kv->Hkv, D = kv->D, group = Hq / Hkv, max_len = 1;
    for (int i = 0; i < n_seq; i++) {
        if (seq_len[i] <= 0 || seq_len[i] > (long)max_blocks * bs)
            return gllm_fail(GLLM_ERR_INVALID,
                             "attention_decode: seq_len[%d] = %d outside 1..%ld", i, seq_len[i],
                             (long)max_blocks * bs);
        for (int j = 0; j < (seq_len[i] + bs - 1) / bs; j++) {
            int blk = block_table[(size_t)i * max_blocks + j];
            if (blk < 0 || blk >= kv->n_blocks)
                return gllm_fail(GLLM_ERR_INVALID,
                                 "attention_decode: block_table[%d][%d] = %d outside %d blocks",
                                 i, j, blk, kv->n_blocks);
        }
        if (seq_len[i] > max_len)
            max_len = seq_len[i];
    }
    unsigned char *scr =
        gllm_cpu_scratch(be, (size_t)max_len * sizeof(float), "attention_decode");
    if (!scr)
        return GLLM_ERR_OOM;
    attn_ctx c = {.x = qkv, .K = kv->k, .V = kv->v, .out = out, .block_table = block_table,
                  .seq_len = seq_len, .scr = scr, .stride = gllm_cpu_ctx_of(be)->scratch_stride,
                  .W = (size_t)(Hq + 2 * Hkv) * D, .HD = (size_t)Hkv * D, .Hq = Hq, .Hkv = Hkv,
                  .D = D, .group = group, .bs = bs, .max_blocks = max_blocks, .window = window,
                  .scale = scale};
    gllm_cpu_for(be, (long)n_seq * Hq, 4.0 * D * max_len, attn_decode_range, &c);
    return GLLM_OK;
}
