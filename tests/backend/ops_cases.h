/* The op cases shared by the backend op tests: a table of (op, shape) cases,
 * each with host inputs and a forward and backward written against the op
 * table, so any backend runs them (tests/backend/test_backend_ops.c). */
#ifndef GLLM_TEST_OPS_CASES_H
#define GLLM_TEST_OPS_CASES_H

#include <stdbool.h>
#include <stdint.h>

#include "gllm/backend.h"
#include "gllm/dtype.h"
#include "test_util.h"

#define MAX_IN 4
#define POOL_MAX 32

typedef enum op_kind {
    OP_LINEAR,
    OP_LAYERNORM,
    OP_RMSNORM,
    OP_ROPE,
    OP_ATTENTION,
    OP_GELU,
    OP_SWIGLU,
    OP_ADD,
    OP_EMBED,
    OP_XENT,
    OP_PAGED_ATTN, /* kv_store of every context token, then attention_paged (forward only) */
} op_kind;

typedef struct tcase {
    op_kind op;
    const char *name;
    /* linear: M tokens, N outputs, K inputs; norms/swiglu/embed/xent: M rows, N columns */
    int M, N, K;
    bool bias, gelu, residual, wpe;
    /* linear: the inference matmul (row_invariant), with the weight packed by
     * be->pack_b first where the backend has a packed layout */
    bool rowinv, packed;
    gllm_attn_shape as;       /* attention */
    int heads, head_dim, rot_dim, col0, row_stride; /* rope */
} tcase;

/* A case made concrete: random inputs and index arrays on the host. */
typedef struct inst {
    const tcase *c;
    int n_in;
    float *in[MAX_IN];
    size_t in_n[MAX_IN];
    bool diff[MAX_IN];     /* has a gradient from bwd */
    bool grad_f32[MAX_IN]; /* parameter gradient (F32) rather than activation (act) */
    size_t out_n;
    bool out_f32;          /* output is F32 whatever act_dtype is (losses) */
    bool r_const;          /* the loss weights R must be one constant (xent) */
    int32_t *ids, *pos;    /* [M] or [B*T] */
    float *mask, *inv_freq;
} inst;

/* Device allocations of one op run, freed together. */
typedef struct pool {
    gllm_backend *be;
    void *p[POOL_MAX];
    int n;
} pool;

#define XENT_SCALE 0.25f

static void *pool_alloc(pool *pl, size_t bytes)
{
    void *p = NULL;
    if (pl->n == POOL_MAX || pl->be->alloc(pl->be, bytes, "test buffer", &p) != GLLM_OK)
        return NULL;
    pl->p[pl->n++] = p;
    return p;
}

static void pool_free(pool *pl)
{
    for (int i = 0; i < pl->n; i++)
        pl->be->free(pl->be, pl->p[i]);
    pl->n = 0;
}

static size_t act_size(const gllm_backend *be) { return gllm_dtype_size(be->act_dtype); }

static void *up_act(pool *pl, const float *h, size_t n)
{
    void *d = pool_alloc(pl, n * act_size(pl->be));
    if (d && pl->be->upload_f32(pl->be, d, h, n) != GLLM_OK)
        return NULL;
    return d;
}

static void *up_raw(pool *pl, const void *h, size_t bytes)
{
    void *d = pool_alloc(pl, bytes);
    if (d && pl->be->upload(pl->be, d, h, bytes) != GLLM_OK)
        return NULL;
    return d;
}

static void *zeros(pool *pl, size_t bytes)
{
    void *d = pool_alloc(pl, bytes);
    if (d && pl->be->memset0(pl->be, d, bytes) != GLLM_OK)
        return NULL;
    return d;
}

/* Document starts at random: pos restarts at 0 with probability 1/5 per token. */
static void make_pos(int32_t *pos, int B, int T)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            pos[b * T + t] = t == 0 || test_rand_u64() % 5 == 0 ? 0 : pos[b * T + t - 1] + 1;
}

static size_t rope_rows(const tcase *c) { return (size_t)c->M * c->row_stride; }

static float *new_filled(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    test_fill(x, n, scale);
    return x;
}

static void add_in(inst *t, size_t n, float scale, bool diff, bool grad_f32)
{
    int i = t->n_in++;
    t->in[i] = new_filled(n, scale);
    t->in_n[i] = n;
    t->diff[i] = diff;
    t->grad_f32[i] = grad_f32;
}

/* Paged attention cases: as.B sequences; sequence s has PA_CTX(c, s) cached
 * tokens of which the last PA_QLEN(s) are the new rows (1 = decode), blocks of
 * PA_BS tokens placed at random in the cache. */
#define PA_BS 4
#define PA_CTX(c, s) ((c)->as.T + 5 * (s))
#define PA_QLEN(c, s) ((s) % 3 == 0 ? 1 : 1 + (s) * 2 % PA_CTX(c, s))
static int pa_total(const tcase *c, int *n_new, int *n_blocks)
{
    int total = 0, nn = 0, nb = 0;
    for (int s = 0; s < c->as.B; s++) {
        total += PA_CTX(c, s);
        nn += PA_QLEN(c, s);
        nb += (PA_CTX(c, s) + PA_BS - 1) / PA_BS;
    }
    *n_new = nn;
    *n_blocks = nb;
    return total;
}

static void inst_make(inst *t, const tcase *c)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    size_t M = (size_t)c->M, N = (size_t)c->N, K = (size_t)c->K;
    switch (c->op) {
    case OP_LINEAR:
        add_in(t, M * K, 1.0f, true, false);
        add_in(t, N * K, 0.5f, true, true);
        if (c->bias)
            add_in(t, N, 0.5f, true, true);
        if (c->residual)
            add_in(t, M * N, 1.0f, false, false);
        t->out_n = M * N;
        break;
    case OP_LAYERNORM:
    case OP_RMSNORM:
        add_in(t, M * N, 1.0f, true, false);
        /* alternating +-2 keeps every row's variance away from 0, where the
         * normalisation is too curved for finite differences */
        for (size_t i = 0; i < M * N; i++)
            t->in[0][i] += i % N % 2 ? 2.0f : -2.0f;
        add_in(t, N, 1.0f, true, true);
        for (size_t i = 0; i < N; i++) /* weights near 1, as trained norms are */
            t->in[1][i] += 1.0f;
        if (c->op == OP_LAYERNORM)
            add_in(t, N, 0.5f, true, true);
        t->out_n = M * N;
        break;
    case OP_ROPE: {
        add_in(t, rope_rows(c), 1.0f, true, false);
        t->pos = malloc(M * sizeof *t->pos);
        for (size_t n = 0; n < M; n++)
            t->pos[n] = (int32_t)(test_rand_u64() % 4096);
        t->inv_freq = malloc((size_t)c->rot_dim / 2 * sizeof(float));
        for (int i = 0; i < c->rot_dim / 2; i++)
            t->inv_freq[i] = (float)pow(10000.0, -2.0 * i / c->rot_dim);
        t->out_n = rope_rows(c);
        break;
    }
    case OP_ATTENTION: {
        const gllm_attn_shape *s = &c->as;
        size_t n = (size_t)s->B * s->T;
        add_in(t, n * (size_t)(s->Hq + 2 * s->Hkv) * s->D, 1.5f, true, false);
        t->pos = malloc(n * sizeof *t->pos);
        make_pos(t->pos, s->B, s->T);
        t->out_n = n * (size_t)s->Hq * s->D;
        break;
    }
    case OP_PAGED_ATTN: {
        const gllm_attn_shape *s = &c->as;
        int n_new, nb;
        const int total = pa_total(c, &n_new, &nb);
        add_in(t, (size_t)total * (s->Hq + 2 * s->Hkv) * s->D, 1.5f, false, false);
        /* ids: block tables [B, max_blocks] over a random permutation; pos: slots [total] */
        const int maxb = (PA_CTX(c, s->B - 1) + PA_BS - 1) / PA_BS;
        int *perm = malloc((size_t)nb * sizeof *perm);
        for (int i = 0; i < nb; i++)
            perm[i] = i;
        for (int i = nb - 1; i > 0; i--) {
            int j = (int)(test_rand_u64() % (uint64_t)(i + 1)), x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        t->ids = calloc((size_t)s->B * maxb, sizeof *t->ids);
        t->pos = malloc((size_t)total * sizeof *t->pos);
        for (int q = 0, k = 0, r = 0; q < s->B; q++) {
            const int L = PA_CTX(c, q);
            for (int b = 0; b < (L + PA_BS - 1) / PA_BS; b++)
                t->ids[(size_t)q * maxb + b] = perm[k++];
            for (int p = 0; p < L; p++)
                t->pos[r++] = t->ids[(size_t)q * maxb + p / PA_BS] * PA_BS + p % PA_BS;
        }
        free(perm);
        t->out_n = (size_t)n_new * s->Hq * s->D;
        break;
    }
    case OP_GELU:
        add_in(t, M, 3.0f, true, false);
        t->out_n = M;
        break;
    case OP_SWIGLU:
        add_in(t, M * 2 * N, 3.0f, true, false);
        t->out_n = M * N;
        break;
    case OP_ADD:
        add_in(t, M, 1.0f, false, false);
        add_in(t, M, 1.0f, false, false);
        t->out_n = M;
        break;
    case OP_EMBED:
        /* M tokens, N channels, K vocabulary (small, so ids repeat) */
        add_in(t, K * N, 1.0f, true, true);
        if (c->wpe)
            add_in(t, M * N, 1.0f, true, true);
        t->ids = malloc(M * sizeof *t->ids);
        t->pos = malloc(M * sizeof *t->pos);
        for (size_t n = 0; n < M; n++)
            t->ids[n] = (int32_t)(test_rand_u64() % K);
        make_pos(t->pos, 1, c->M);
        t->out_n = M * N;
        break;
    case OP_XENT:
        add_in(t, M * N, 4.0f, true, false);
        t->ids = malloc(M * sizeof *t->ids);
        t->mask = malloc(M * sizeof *t->mask);
        for (size_t n = 0; n < M; n++) {
            t->ids[n] = (int32_t)(test_rand_u64() % N);
            t->mask[n] = n % 3 == 1 ? 0.0f : 1.0f;
        }
        t->out_n = M;
        t->out_f32 = true;
        t->r_const = true;
        break;
    }
}

static void inst_free(inst *t)
{
    for (int i = 0; i < t->n_in; i++)
        free(t->in[i]);
    free(t->ids);
    free(t->pos);
    free(t->mask);
    free(t->inv_freq);
}

static gllm_matmul_args linear_args(const tcase *c)
{
    gllm_matmul_args a = {.M = c->M, .N = c->N, .K = c->K, .trans_b = true, .alpha = 1.0f,
                          .row_invariant = c->rowinv || c->packed};
    return a;
}

/* W [N, K] in be's packed layout when the case asks and be has one, else NULL */
static const void *pack_weight(const tcase *c, gllm_backend *be, pool *pl, const void *W)
{
    if (!c->packed || !be->packed_b_bytes || !be->pack_b)
        return NULL;
    const size_t bytes = be->packed_b_bytes(be, c->N, c->K);
    void *p = bytes ? pool_alloc(pl, bytes) : NULL;
    if (p && be->pack_b(be, p, W, c->N, c->K) != GLLM_OK)
        return NULL;
    return p;
}

/* Forward of the case on `be`: device inputs din, device output dout. */
static gllm_status op_fwd(const inst *t, gllm_backend *be, pool *pl, void **din, void *out)
{
    const tcase *c = t->c;
    size_t as = act_size(be);
    switch (c->op) {
    case OP_LINEAR: {
        gllm_matmul_args a = linear_args(c);
        a.b_packed = pack_weight(c, be, pl, din[1]);
        a.bias = c->bias ? din[2] : NULL;
        a.epilogue = c->gelu ? GLLM_EPI_GELU : GLLM_EPI_NONE;
        a.residual = c->residual ? din[c->bias ? 3 : 2] : NULL;
        return be->matmul(be, out, din[0], din[1], &a);
    }
    case OP_LAYERNORM:
        return be->layernorm_fwd(be, out, NULL, NULL, din[0], din[1], din[2], c->M, c->N, 1e-5f);
    case OP_RMSNORM:
        return be->rmsnorm_fwd(be, out, NULL, din[0], din[1], c->M, c->N, 1e-5f);
    case OP_ROPE: {
        gllm_rope_args a = {c->M, c->heads, c->head_dim, c->rot_dim, c->row_stride,
                            up_raw(pl, t->inv_freq, (size_t)c->rot_dim / 2 * sizeof(float)),
                            1.0f};
        GLLM_TRY(be->copy(be, out, din[0], rope_rows(c) * as));
        return be->rope_fwd(be, (char *)out + (size_t)c->col0 * as,
                            up_raw(pl, t->pos, (size_t)c->M * 4), &a);
    }
    case OP_ATTENTION: {
        size_t n = (size_t)c->as.B * c->as.T;
        float *lse = pool_alloc(pl, n * (size_t)c->as.Hq * sizeof(float));
        return be->attention_fwd(be, out, lse, din[0], up_raw(pl, t->pos, n * 4), &c->as);
    }
    case OP_PAGED_ATTN: {
        const gllm_attn_shape *sh = &c->as;
        int n_new, nb;
        const int total = pa_total(c, &n_new, &nb), maxb = (PA_CTX(c, sh->B - 1) + PA_BS - 1) / PA_BS;
        const size_t W = (size_t)(sh->Hq + 2 * sh->Hkv) * sh->D;
        const size_t kvb = (size_t)nb * PA_BS * sh->Hkv * sh->D * as;
        gllm_kv_cache kv = {zeros(pl, kvb), zeros(pl, kvb), nb, PA_BS, sh->Hkv, sh->D};
        GLLM_TRY(be->kv_store(be, &kv, din[0], up_raw(pl, t->pos, (size_t)total * 4), total,
                              sh->Hq));
        /* the new rows: the last q_len tokens of each sequence, packed */
        void *q = pool_alloc(pl, (size_t)n_new * W * as);
        int32_t qs[64], ql[64], cl[64];
        for (int s = 0, off = 0, r = 0; s < sh->B; s++) {
            const int L = PA_CTX(c, s), n = PA_QLEN(c, s);
            GLLM_TRY(be->copy(be, (char *)q + (size_t)r * W * as,
                              (char *)din[0] + (size_t)(off + L - n) * W * as, (size_t)n * W * as));
            qs[s] = r;
            ql[s] = n;
            cl[s] = L;
            off += L;
            r += n;
        }
        const size_t sb = (size_t)sh->B * 4;
        gllm_paged_attn_args a = {.n_seq = sh->B, .Hq = sh->Hq, .window = sh->window,
                                  .scale = sh->scale, .q_start = up_raw(pl, qs, sb),
                                  .q_len = up_raw(pl, ql, sb), .ctx_len = up_raw(pl, cl, sb),
                                  .block_table = up_raw(pl, t->ids, sb * maxb),
                                  .max_blocks = maxb, .n_tokens = n_new,
                                  .max_ctx = PA_CTX(c, sh->B - 1)};
        return be->attention_paged(be, out, q, &kv, &a);
    }
    case OP_GELU:
        return be->gelu_fwd(be, out, din[0], (size_t)c->M);
    case OP_SWIGLU:
        return be->swiglu_fwd(be, out, din[0], c->M, c->N);
    case OP_ADD:
        return be->add(be, out, din[0], din[1], (size_t)c->M);
    case OP_EMBED:
        return be->embed_fwd(be, out, up_raw(pl, t->ids, (size_t)c->M * 4),
                             up_raw(pl, t->pos, (size_t)c->M * 4), din[0],
                             c->wpe ? din[1] : NULL, c->M, c->N);
    case OP_XENT: {
        void *x = pool_alloc(pl, (size_t)c->M * c->N * as);
        GLLM_TRY(be->copy(be, x, din[0], (size_t)c->M * c->N * as));
        return be->xent_fwd_bwd(be, out, x, up_raw(pl, t->ids, (size_t)c->M * 4),
                                up_raw(pl, t->mask, (size_t)c->M * 4), c->M, c->N, 0.0f);
    }
    }
    return GLLM_ERR_INVALID;
}

/* Backward: the gradients dg[i] of every input with diff[i], zeroed by the caller,
 * for the loss sum(out * dout). */
static gllm_status op_bwd(const inst *t, gllm_backend *be, pool *pl, void **din,
                          const void *dout, void **dg)
{
    const tcase *c = t->c;
    size_t as = act_size(be), M = (size_t)c->M, N = (size_t)c->N;
    switch (c->op) {
    case OP_LINEAR: {
        const void *dpre = dout;
        if (c->gelu) { /* the model keeps the pre-activation; recompute it here */
            gllm_matmul_args a = linear_args(c);
            a.bias = c->bias ? din[2] : NULL;
            void *pre = pool_alloc(pl, M * N * as), *dp = pool_alloc(pl, M * N * as);
            GLLM_TRY(be->matmul(be, pre, din[0], din[1], &a));
            GLLM_TRY(be->gelu_bwd(be, dp, pre, dout, M * N));
            dpre = dp;
        }
        gllm_matmul_args dx = {.M = c->M, .N = c->K, .K = c->N, .alpha = 1.0f};
        GLLM_TRY(be->matmul(be, dg[0], dpre, din[1], &dx));
        gllm_matmul_args dw = {.M = c->N, .N = c->K, .K = c->M, .trans_a = true, .alpha = 1.0f,
                               .beta = 1.0f, .c_f32 = true};
        GLLM_TRY(be->matmul(be, dg[1], dpre, din[0], &dw));
        if (c->bias)
            GLLM_TRY(be->bias_bwd(be, dg[2], dpre, c->M, c->N));
        return GLLM_OK;
    }
    case OP_LAYERNORM: {
        float *mean = pool_alloc(pl, M * 4), *rstd = pool_alloc(pl, M * 4);
        void *y = pool_alloc(pl, M * N * as);
        GLLM_TRY(be->layernorm_fwd(be, y, mean, rstd, din[0], din[1], din[2], c->M, c->N, 1e-5f));
        return be->layernorm_bwd(be, dg[0], dg[1], dg[2], dout, din[0], din[1], mean, rstd,
                                 c->M, c->N);
    }
    case OP_RMSNORM: {
        float *rstd = pool_alloc(pl, M * 4);
        void *y = pool_alloc(pl, M * N * as);
        GLLM_TRY(be->rmsnorm_fwd(be, y, rstd, din[0], din[1], c->M, c->N, 1e-5f));
        return be->rmsnorm_bwd(be, dg[0], dg[1], dout, din[0], din[1], rstd, c->M, c->N);
    }
    case OP_ROPE: {
        gllm_rope_args a = {c->M, c->heads, c->head_dim, c->rot_dim, c->row_stride,
                            up_raw(pl, t->inv_freq, (size_t)c->rot_dim / 2 * sizeof(float)),
                            1.0f};
        GLLM_TRY(be->copy(be, dg[0], dout, rope_rows(c) * as));
        return be->rope_bwd(be, (char *)dg[0] + (size_t)c->col0 * as,
                            up_raw(pl, t->pos, M * 4), &a);
    }
    case OP_ATTENTION: {
        size_t n = (size_t)c->as.B * c->as.T;
        float *lse = pool_alloc(pl, n * (size_t)c->as.Hq * sizeof(float));
        void *out = pool_alloc(pl, t->out_n * as);
        const int32_t *pos = up_raw(pl, t->pos, n * 4);
        GLLM_TRY(be->attention_fwd(be, out, lse, din[0], pos, &c->as));
        return be->attention_bwd(be, dg[0], dout, din[0], out, lse, pos, &c->as);
    }
    case OP_GELU:
        return be->gelu_bwd(be, dg[0], din[0], dout, M);
    case OP_SWIGLU:
        return be->swiglu_bwd(be, dg[0], din[0], dout, c->M, c->N);
    case OP_ADD:
    case OP_PAGED_ATTN: /* inference only: no backward */
        return GLLM_OK;
    case OP_EMBED:
        return be->embed_bwd(be, dg[0], c->wpe ? dg[1] : NULL, dout, up_raw(pl, t->ids, M * 4),
                             up_raw(pl, t->pos, M * 4), c->M, c->N, c->K);
    case OP_XENT: {
        /* the fused op's gradient is d(sum_n XENT_SCALE * loss[n]) / dlogits */
        float *loss = pool_alloc(pl, M * 4);
        GLLM_TRY(be->copy(be, dg[0], din[0], M * N * as));
        return be->xent_fwd_bwd(be, loss, dg[0], up_raw(pl, t->ids, M * 4),
                                up_raw(pl, t->mask, M * 4), c->M, c->N, XENT_SCALE);
    }
    }
    return GLLM_ERR_INVALID;
}

/* The rows computed alone against a double-precision product on the host:
 * fp32 within 1e-5 relative, bf16 activations within 1e-2. */
static void check_rows_accuracy(gllm_backend *be, const unsigned char *ref_dev_rows,
                                const float *A, const float *W, const float *bias,
                                const float *res, int M, int N, int K)
{
    float *got = malloc((size_t)M * N * sizeof *got), *want = malloc((size_t)M * N * sizeof *want);
    CHECK_OK(be->download_f32(be, got, ref_dev_rows, (size_t)M * N));
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)A[(size_t)m * K + k] * W[(size_t)n * K + k];
            want[(size_t)m * N + n] =
                (float)(s + (bias ? bias[n] : 0) + (res ? res[(size_t)m * N + n] : 0));
        }
    CHECK_REL(got, want, (size_t)M * N, act_size(be) == 4 ? 1e-5 : 1e-2);
    free(got), free(want);
}

/* Batch invariance of the matmul (args.row_invariant), on any backend: row i of
 * an M-row call has the bits of that row computed alone (M = 1), for M = 2..300
 * at random offsets, in the backend's activation dtype. The shapes cross the
 * CPU's small-matrix thresholds and CUDA's 128-row tiles; K = 100 (rows not
 * 16-byte aligned in bf16) takes CUDA's simple kernel, the others its mma
 * kernel; one shape carries bias and residual (the model's projections do).
 * Then the same with the weight packed by be->pack_b (where the backend has a
 * packed layout): the same bits again, packed or not. */
static void check_matmul_rows(gllm_backend *be)
{
    static const struct {
        int K, N;
        bool epi;
    } shapes[] = {{64, 64, false}, {40, 104, false}, {576, 960, true}, {1536, 576, false},
                  {4000, 100, false}, {100, 72, false}};
    const size_t as = act_size(be);
    /* rows 1..300 (CUDA: three 128-row tiles, the last partial); on the CUDA
     * emulator 1..136 (across one tile boundary), where each single-row call
     * costs a whole emulated tile and 300 would take minutes */
    gllm_device_info dev = {0};
    const bool emulated = be->device_info && be->device_info(be, &dev) == GLLM_OK &&
                          strstr(dev.name, "emulator") != NULL;
    const int MM = emulated ? 136 : 300;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int K = shapes[si].K, N = shapes[si].N;
        char name[128];
        snprintf(name, sizeof name, "%s: row-invariant matmul K=%d N=%d%s, M = 1..%d", be->name,
                 K, N, shapes[si].epi ? " +bias +residual" : "", MM);
        t_case = name;
        pool pl = {.be = be};
        float *A = new_filled((size_t)MM * K, 1.0f), *W = new_filled((size_t)N * K, 0.5f);
        float *bias = new_filled((size_t)N, 0.5f), *res = new_filled((size_t)MM * N, 1.0f);
        unsigned char *ref = malloc((size_t)MM * N * as), *got = malloc((size_t)MM * N * as);
        char *dA = up_act(&pl, A, (size_t)MM * K), *dW = up_act(&pl, W, (size_t)N * K);
        char *dB = up_act(&pl, bias, (size_t)N), *dR = up_act(&pl, res, (size_t)MM * N);
        char *dRef = pool_alloc(&pl, (size_t)MM * N * as);
        char *dC = pool_alloc(&pl, (size_t)MM * N * as);
        CHECK(dA && dW && dB && dR && dRef && dC);
        /* the inputs as the backend holds them, for the host reference */
        float *Ar = malloc((size_t)MM * K * 4), *Wr = malloc((size_t)N * K * 4);
        float *Br = malloc((size_t)N * 4), *Rr = malloc((size_t)MM * N * 4);
        if (dA && dW && dB && dR) {
            CHECK_OK(be->download_f32(be, Ar, dA, (size_t)MM * K));
            CHECK_OK(be->download_f32(be, Wr, dW, (size_t)N * K));
            CHECK_OK(be->download_f32(be, Br, dB, (size_t)N));
            CHECK_OK(be->download_f32(be, Rr, dR, (size_t)MM * N));
        }
        const size_t pkb = be->packed_b_bytes ? be->packed_b_bytes(be, N, K) : 0;
        void *dP = pkb && dW ? pool_alloc(&pl, pkb) : NULL;
        if (dP)
            CHECK_OK(be->pack_b(be, dP, dW, N, K));
        const bool ok = dA && dW && dB && dR && dRef && dC;
        for (int packed = 0; ok && packed < (dP ? 2 : 1); packed++) {
            if (packed) {
                snprintf(name, sizeof name, "%s: row-invariant matmul K=%d N=%d%s, packed "
                         "weight, M = 1..%d", be->name, K, N, shapes[si].epi ? " +bias +residual"
                         : "", MM);
                /* the unpacked rows alone, which the packed ones must equal */
                CHECK_OK(be->download(be, ref, dRef, (size_t)MM * N * as));
            }
            gllm_matmul_args a = {.M = 1, .N = N, .K = K, .trans_b = true, .alpha = 1.0f,
                                  .batch = 1, .row_invariant = true,
                                  .bias = shapes[si].epi ? dB : NULL,
                                  .b_packed = packed ? dP : NULL};
            for (int m = 0; m < MM; m++) { /* every row alone */
                a.residual = shapes[si].epi ? dR + (size_t)m * N * as : NULL;
                CHECK_OK(be->matmul(be, dRef + (size_t)m * N * as, dA + (size_t)m * K * as, dW,
                                    &a));
            }
            if (packed) {
                unsigned char *pk_rows = malloc((size_t)MM * N * as);
                CHECK_OK(be->download(be, pk_rows, dRef, (size_t)MM * N * as));
                CHECK_MSG(memcmp(pk_rows, ref, (size_t)MM * N * as) == 0,
                          "rows alone differ with the weight packed");
                free(pk_rows);
            }
            check_rows_accuracy(be, (unsigned char *)dRef, Ar, Wr, shapes[si].epi ? Br : NULL,
                                shapes[si].epi ? Rr : NULL, MM, N, K);
            CHECK_OK(be->download(be, ref, dRef, (size_t)MM * N * as));
            int bad = 0, tried = 0;
            for (int M = 2; M <= MM; M += M < 40 ? 1 : 37) {
                a.M = M;
                const int start = (int)(test_rand_u64() % (uint64_t)(MM - M + 1));
                a.residual = shapes[si].epi ? dR + (size_t)start * N * as : NULL;
                CHECK_OK(be->matmul(be, dC, dA + (size_t)start * K * as, dW, &a));
                CHECK_OK(be->download(be, got, dC, (size_t)M * N * as));
                CHECK_OK(be->sync(be));
                bad += memcmp(got, ref + (size_t)start * N * as, (size_t)M * N * as) != 0;
                tried++;
            }
            CHECK_MSG(bad == 0, "%d of %d batch sizes gave rows different from the row alone",
                      bad, tried);
        }
        pool_free(&pl);
        free(A), free(W), free(bias), free(res), free(ref), free(got);
        free(Ar), free(Wr), free(Br), free(Rr);
    }
}

#endif
