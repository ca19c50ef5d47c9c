/* LayerNorm, RMSNorm (HF LlamaRMSNorm) and RoPE (HF rotate_half) on the CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

/* Column block for parameter-gradient reductions: each thread owns a block of
 * columns and sums rows in order, so dw is deterministic and race-free. */
#define COL_BLOCK 64

/* arguments of the norm chunks */
typedef struct norm_args {
    const float *x, *g, *w, *b, *mean_in, *rstd_in;
    float *y, *mean, *rstd, *dw, *db;
    int N, C;
    float eps;
    bool centered; /* LayerNorm; RMSNorm is the same without the mean (m = 0) and bias */
} norm_args;

/* y = (x - m) r w (+ b), r = 1 / sqrt(mean((x - m)^2) + eps): m = mean(x) for
 * LayerNorm (biased variance, as torch), m = 0 for RMSNorm (HF LlamaRMSNorm,
 * where x - 0 and the double sums come out exactly as mean(x^2)). */
static void norm_fwd_range(void *v, long b, long e, int tid)
{
    const norm_args *a = v;
    const int C = a->C;
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *xr = a->x + (size_t)n * C;
        double mu = 0, var = 0;
        if (a->centered) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += xr[c];
            mu = s / C;
        }
        for (int c = 0; c < C; c++) {
            double dx = xr[c] - mu;
            var += dx * dx;
        }
        float m = (float)mu;
        float r = (float)(1.0 / sqrt(var / C + a->eps));
        float *yr = a->y + (size_t)n * C;
        if (a->centered)
            for (int c = 0; c < C; c++)
                yr[c] = (xr[c] - m) * r * a->w[c] + (a->b ? a->b[c] : 0.0f);
        else
            for (int c = 0; c < C; c++)
                yr[c] = a->w[c] * (xr[c] * r);
        if (a->mean)
            a->mean[n] = m;
        if (a->rstd)
            a->rstd[n] = r;
    }
}

static void layernorm_bwd_rows(void *v, long b, long e, int tid)
{
    const norm_args *a = v;
    const int C = a->C;
    const float *wt = a->w;
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *xr = a->x + (size_t)n * C, *gr = a->g + (size_t)n * C;
        float m = a->mean_in[n], r = a->rstd_in[n];
        double sg = 0, sgx = 0;
        for (int c = 0; c < C; c++) {
            float gn = gr[c] * wt[c];
            sg += gn;
            sgx += gn * ((xr[c] - m) * r);
        }
        float mg = (float)(sg / C), mgx = (float)(sgx / C);
        float *dr = a->y + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float xh = (xr[c] - m) * r;
            dr[c] += (gr[c] * wt[c] - mg - xh * mgx) * r;
        }
    }
}

/* parameter gradients, dw = sum g (x - m) r and db = sum g (m = 0 without
 * mean_in: RMSNorm): each chunk owns column blocks and sums rows in order */
static void norm_bwd_cols(void *v, long b, long e, int tid)
{
    const norm_args *a = v;
    const int C = a->C;
    float *dw = a->dw, *db = a->db;
    (void)tid;
    for (long blk = b; blk < e; blk++) {
        int c0 = (int)blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int n = 0; n < a->N; n++) {
            const float *xr = a->x + (size_t)n * C, *gr = a->g + (size_t)n * C;
            float m = a->mean_in ? a->mean_in[n] : 0.0f, r = a->rstd_in[n];
            for (int c = c0; c < c1; c++) {
                if (dw)
                    dw[c] += gr[c] * ((xr[c] - m) * r);
                if (db)
                    db[c] += gr[c];
            }
        }
    }
}

/* y = w x r with r = (mean(x^2) + eps)^-1/2, so dx = r (g w) - x r^3 mean(g w x). */
static void rmsnorm_bwd_rows(void *v, long b, long e, int tid)
{
    const norm_args *a = v;
    const int C = a->C;
    const float *wt = a->w;
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *xr = a->x + (size_t)n * C, *gr = a->g + (size_t)n * C;
        float r = a->rstd_in[n];
        double s = 0;
        for (int c = 0; c < C; c++)
            s += (double)gr[c] * wt[c] * xr[c];
        float k = (float)(s / C) * r * r * r;
        float *dr = a->y + (size_t)n * C;
        for (int c = 0; c < C; c++)
            dr[c] += gr[c] * wt[c] * r - xr[c] * k;
    }
}

gllm_status gllm_cpu_layernorm_fwd(gllm_backend *be, void *out, float *mean, float *rstd,
                                   const void *inp, const void *w, const void *b, int N, int C,
                                   float eps)
{
    if (!out || !inp || !w || N < 0 || C <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "layernorm_fwd: bad arguments (N=%d C=%d)", N, C);
    norm_args a = {.x = inp, .w = w, .b = b, .y = out, .mean = mean, .rstd = rstd, .N = N,
                   .C = C, .eps = eps, .centered = true};
    gllm_cpu_for(be, N, 6.0 * C, norm_fwd_range, &a);
    return GLLM_OK;
}

gllm_status gllm_cpu_layernorm_bwd(gllm_backend *be, void *dinp, float *dw, float *db,
                                   const void *dout, const void *inp, const void *w,
                                   const float *mean, const float *rstd, int N, int C)
{
    if (!dinp || !dout || !inp || !w || !mean || !rstd || N < 0 || C <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "layernorm_bwd: bad arguments (N=%d C=%d)", N, C);
    norm_args a = {.x = inp, .g = dout, .w = w, .mean_in = mean, .rstd_in = rstd, .y = dinp,
                   .dw = dw, .db = db, .N = N, .C = C};
    gllm_cpu_for(be, N, 10.0 * C, layernorm_bwd_rows, &a);
    if (!dw && !db)
        return GLLM_OK;
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (C + COL_BLOCK - 1) / COL_BLOCK, 1,
                      norm_bwd_cols, &a);
    return GLLM_OK;
}

gllm_status gllm_cpu_rmsnorm_fwd(gllm_backend *be, void *out, float *rstd, const void *inp,
                                 const void *w, int N, int C, float eps)
{
    if (!out || !inp || !w || N < 0 || C <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "rmsnorm_fwd: bad arguments (N=%d C=%d)", N, C);
    norm_args a = {.x = inp, .w = w, .y = out, .rstd = rstd, .N = N, .C = C, .eps = eps};
    gllm_cpu_for(be, N, 4.0 * C, norm_fwd_range, &a);
    return GLLM_OK;
}

gllm_status gllm_cpu_rmsnorm_bwd(gllm_backend *be, void *dinp, float *dw, const void *dout,
                                 const void *inp, const void *w, const float *rstd, int N,
                                 int C)
{
    if (!dinp || !dout || !inp || !w || !rstd || N < 0 || C <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "rmsnorm_bwd: bad arguments (N=%d C=%d)", N, C);
    norm_args a = {.x = inp, .g = dout, .w = w, .rstd_in = rstd, .y = dinp, .dw = dw, .N = N,
                   .C = C};
    gllm_cpu_for(be, N, 8.0 * C, rmsnorm_bwd_rows, &a);
    if (!dw)
        return GLLM_OK;
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (C + COL_BLOCK - 1) / COL_BLOCK, 1,
                      norm_bwd_cols, &a);
    return GLLM_OK;
}

#define GLLM_ROPE_MAX_HALF 512     /* rot_dim up to 1024 */
#define GLLM_ROPE_TAB_MAX (1 << 17) /* positions a table covers (at rot_dim 128: 64 MiB) */

static gllm_status rope_check(const char *op, const void *x, const int32_t *pos,
                              const gllm_rope_args *a)
{
    if (!x || !pos || !a || !a->inv_freq)
        return gllm_fail(GLLM_ERR_INVALID, "%s: NULL argument", op);
    if (a->n_tokens < 0 || a->n_heads <= 0 || a->head_dim <= 0 || a->rot_dim <= 0 ||
        a->rot_dim % 2 || a->rot_dim > a->head_dim || a->rot_dim > 2 * GLLM_ROPE_MAX_HALF ||
        a->row_stride < a->n_heads * a->head_dim)
        return gllm_fail(GLLM_ERR_INVALID,
                         "%s: bad shape (tokens=%d heads=%d head_dim=%d rot_dim=%d "
                         "row_stride=%d)",
                         op, a->n_tokens, a->n_heads, a->head_dim, a->rot_dim, a->row_stride);
    return GLLM_OK;
}

typedef struct rope_ctx {
    float *x;
    const int32_t *pos;
    const gllm_rope_args *a;
    float sign;
    const float *tab; /* cos/sin per position (rope_table), or NULL: computed here */
} rope_ctx;

/* The rotation of position p: cs[i] = cos, cs[half + i] = sin of the angle
 * p * inv_freq[i], each times attn_factor. The angle is rounded to fp32 first,
 * as HF computes inv_freq @ pos in fp32. The table and the in-place path both
 * call this, so they hold the same bits. */
static void rope_angles(float *cs, int32_t p, const float *inv_freq, int half, float attn_factor)
{
    for (int i = 0; i < half; i++) {
        const float th = (float)p * inv_freq[i];
        cs[i] = cosf(th) * attn_factor;
        cs[half + i] = sinf(th) * attn_factor;
    }
}

/* Rotates rows [b, e). The angle is rounded to fp32 first, as HF computes
 * inv_freq @ pos in fp32; a table entry holds the same cosf/sinf of the same
 * angle times attn_factor, and the sign is applied after (exact for +-1), so
 * both ways give the same bits. */
static void rope_range(void *v, long b, long e, int tid)
{
    const rope_ctx *r = v;
    const gllm_rope_args *a = r->a;
    float *x = r->x, sign = r->sign;
    const int half = a->rot_dim / 2;
    float cs[2 * GLLM_ROPE_MAX_HALF];
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *c = cs, *s = cs + half;
        if (r->tab) {
            c = r->tab + (size_t)r->pos[n] * 2 * half;
            s = c + half;
        } else {
            rope_angles(cs, r->pos[n], a->inv_freq, half, a->attn_factor);
        }
        for (int h = 0; h < a->n_heads; h++) {
            float *xh = x + (size_t)n * a->row_stride + (size_t)h * a->head_dim;
            for (int i = 0; i < half; i++) {
                const float x1 = xh[i], x2 = xh[i + half], si = sign * s[i];
                xh[i] = x1 * c[i] - x2 * si;
                xh[i + half] = x2 * c[i] + x1 * si;
            }
        }
    }
}

/* The backend's table of rotations for positions [0, npos), rebuilt when the
 * frequencies or attn_factor change and grown (doubling) when a position lies
 * past it: every layer of a step, q and k alike, and every later step read the
 * same angles, so each cosf/sinf is computed once per position, not once per
 * head, layer and step. NULL (compute in place) for positions it does not cover
 * (negative or past GLLM_ROPE_TAB_MAX) or when memory is short. */
static const float *rope_table(gllm_backend *be, const int32_t *pos, const gllm_rope_args *a)
{
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    const int half = a->rot_dim / 2;
    int32_t maxp = -1;
    for (int n = 0; n < a->n_tokens; n++) {
        if (pos[n] < 0)
            return NULL;
        maxp = pos[n] > maxp ? pos[n] : maxp;
    }
    if (maxp >= GLLM_ROPE_TAB_MAX)
        return NULL;
    const bool same = c->rope_tab && c->rope_half == half && c->rope_attn == a->attn_factor &&
                      memcmp(c->rope_inv, a->inv_freq, (size_t)half * sizeof(float)) == 0;
    if (same && maxp < c->rope_npos)
        return c->rope_tab;
    int npos = same ? c->rope_npos : 256;
    while (npos <= maxp)
        npos *= 2;
    npos = npos > GLLM_ROPE_TAB_MAX ? GLLM_ROPE_TAB_MAX : npos;
    float *tab = malloc((size_t)npos * 2 * half * sizeof(float));
    float *inv = malloc((size_t)half * sizeof(float));
    if (!tab || !inv) {
        free(tab);
        free(inv);
        return NULL;
    }
    memcpy(inv, a->inv_freq, (size_t)half * sizeof(float));
    for (int p = 0; p < npos; p++)
        rope_angles(tab + (size_t)p * 2 * half, p, inv, half, a->attn_factor);
    free(c->rope_tab);
    free(c->rope_inv);
    c->rope_tab = tab;
    c->rope_inv = inv;
    c->rope_half = half;
    c->rope_npos = npos;
    c->rope_attn = a->attn_factor;
    return tab;
}

/* sign = +1 rotates by +angle (forward), -1 by -angle (the transpose, for backward). */
static void rope_apply(gllm_backend *be, float *x, const int32_t *pos, const gllm_rope_args *a,
                       float sign)
{
    rope_ctx r = {x, pos, a, sign, rope_table(be, pos, a)};
    gllm_cpu_for(be, a->n_tokens, (r.tab ? 0.0 : 40.0 * a->rot_dim) + 3.0 * a->rot_dim * a->n_heads,
                 rope_range, &r);
}

gllm_status gllm_cpu_rope_fwd(gllm_backend *be, void *x, const int32_t *pos,
                              const gllm_rope_args *a)
{
    GLLM_TRY(rope_check("rope_fwd", x, pos, a));
    rope_apply(be, x, pos, a, 1.0f);
    return GLLM_OK;
}

gllm_status gllm_cpu_rope_bwd(gllm_backend *be, void *dx, const int32_t *pos,
                              const gllm_rope_args *a)
{
    GLLM_TRY(rope_check("rope_bwd", dx, pos, a));
    rope_apply(be, dx, pos, a, -1.0f);
    return GLLM_OK;
}
