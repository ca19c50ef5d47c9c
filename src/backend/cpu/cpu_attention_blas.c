/* Attention forward and backward through sgemm, used when the CPU backend runs
 * with OpenBLAS: for each (row, head), blocks of QB queries against the keys
 * their documents can see, S = Q K^T and O = P V as matrix products instead of
 * one dot product per (query, key). The loop version in cpu_attention.c stays
 * the reference that tests compare this one with.
 *
 * Masked entries of P are exact zeros, so the products over the key range of a
 * block compute the same sums as the loops (in a different order). */
#ifdef GLLM_HAVE_BLAS
#include <math.h>
#include <string.h>

/* before cblas.h, whose complex.h defines a macro I */
#include "backend/cpu/cpu_internal.h"

#include <cblas.h>

#define QB 64

typedef struct attn_geom {
    int T, Hq, Hkv, D, group, window;
    size_t W, OW;
    float scale;
} attn_geom;

static attn_geom geom(const gllm_attn_shape *s)
{
    return (attn_geom){.T = s->T, .Hq = s->Hq, .Hkv = s->Hkv, .D = s->D,
                       .group = s->Hq / s->Hkv, .window = s->window,
                       .W = (size_t)(s->Hq + 2 * s->Hkv) * s->D, .OW = (size_t)s->Hq * s->D,
                       .scale = s->scale};
}

/* copy head `h` (column block of width D at h*D) of T rows with stride W */
static void gather(float *dst, const float *src, size_t W, int rows, int D)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * D, src + (size_t)r * W, (size_t)D * sizeof(float));
}

/* key range [*k0, r1) that queries [r0, r1) of a row may see */
static int key_start(const attn_geom *g, long row0, const int32_t *pos, int r0, int r1)
{
    int k0 = r1;
    for (int r = r0; r < r1; r++) {
        int lo = (int)(gllm_cpu_attn_lo(row0 + r, row0, pos, g->window) - row0);
        if (lo < k0)
            k0 = lo;
    }
    return k0;
}

/* P = softmax of the visible part of each row of S [rows, L] (keys k0..), in
 * place; masked entries become 0. lse (may be NULL) gets each row's
 * log-sum-exp; with lse_in the probabilities are recomputed from it instead. */
static void softmax_rows(const attn_geom *g, float *S, int rows, int L, int r0, int k0, long row0,
                         const int32_t *pos, float *lse_out, const float *lse_in)
{
    for (int i = 0; i < rows; i++) {
        float *srow = S + (size_t)i * L;
        const int n = r0 + i;
        const int lo = (int)(gllm_cpu_attn_lo(row0 + n, row0, pos, g->window) - row0) - k0;
        const int hi = n - k0; /* inclusive */
        if (lse_in) {
            const float l = lse_in[i];
#pragma omp simd
            for (int j = lo; j <= hi; j++)
                srow[j] = gllm_cpu_exp(srow[j] - l);
        } else {
            float mx = -INFINITY, sum = 0;
            for (int j = lo; j <= hi; j++)
                mx = srow[j] > mx ? srow[j] : mx;
#pragma omp simd reduction(+ : sum)
            for (int j = lo; j <= hi; j++) {
                srow[j] = gllm_cpu_exp(srow[j] - mx);
                sum += srow[j];
            }
            const float inv = 1.0f / sum;
            for (int j = lo; j <= hi; j++)
                srow[j] *= inv;
            lse_out[i] = mx + logf(sum);
        }
        for (int j = 0; j < lo; j++)
            srow[j] = 0;
        for (int j = hi + 1; j < L; j++)
            srow[j] = 0;
    }
}

/* what the chunks read: one task per (row, head) forward, per (row, kv head) backward */
typedef struct attn_blas_ctx {
    attn_geom g;
    float *out, *lse, *dx;
    const float *x, *dout, *o, *lse_in;
    const int32_t *pos;
    unsigned char *scr;
    size_t stride;
} attn_blas_ctx;

static void fwd_range(void *args, long tb, long te, int tid)
{
    const attn_blas_ctx *c = args;
    const attn_geom g = c->g;
    const int T = g.T, D = g.D;
    const float *x = c->x;
    const int32_t *pos = c->pos;
    float *out = c->out, *lse = c->lse;
    for (long task = tb; task < te; task++) {
        const int b = (int)(task / g.Hq), h = (int)(task % g.Hq), kvh = h / g.group;
        const long row0 = (long)b * T;
        float *K = (float *)(c->scr + (size_t)tid * c->stride);
        float *V = K + (size_t)T * D, *Q = V + (size_t)T * D, *O = Q + (size_t)QB * D;
        float *S = O + (size_t)QB * D, *L = S + (size_t)QB * T;
        const float *xr = x + row0 * g.W;
        gather(K, xr + (size_t)(g.Hq + kvh) * D, g.W, T, D);
        gather(V, xr + (size_t)(g.Hq + g.Hkv + kvh) * D, g.W, T, D);
        for (int r0 = 0; r0 < T; r0 += QB) {
            const int r1 = r0 + QB < T ? r0 + QB : T, rows = r1 - r0;
            const int k0 = key_start(&g, row0, pos, r0, r1), nk = r1 - k0;
            gather(Q, xr + (size_t)r0 * g.W + (size_t)h * D, g.W, rows, D);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nk, D, g.scale, Q, D,
                        K + (size_t)k0 * D, D, 0.0f, S, nk);
            softmax_rows(&g, S, rows, nk, r0, k0, row0, pos, L, NULL);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, nk, 1.0f, S, nk,
                        V + (size_t)k0 * D, D, 0.0f, O, D);
            for (int i = 0; i < rows; i++) {
                const long n = row0 + r0 + i;
                memcpy(out + n * g.OW + (size_t)h * D, O + (size_t)i * D, (size_t)D * sizeof(float));
                lse[n * g.Hq + h] = L[i];
            }
        }
    }
}

gllm_status gllm_cpu_attention_fwd_blas(gllm_backend *be, float *out, float *lse, const float *x,
                                        const int32_t *pos, const gllm_attn_shape *s)
{
    const attn_geom g = geom(s);
    const int T = g.T, D = g.D;
    /* per thread: K, V of the row [T, D] each, Q and O blocks [QB, D], S [QB, T], lse [QB] */
    const size_t floats = 2 * (size_t)T * D + 2 * (size_t)QB * D + (size_t)QB * T + QB;
    unsigned char *scr = gllm_cpu_scratch(be, floats * sizeof(float), "attention_fwd");
    if (!scr)
        return GLLM_ERR_OOM;
    attn_blas_ctx c = {.g = g, .out = out, .lse = lse, .x = x, .pos = pos, .scr = scr,
                       .stride = gllm_cpu_ctx_of(be)->scratch_stride};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (long)s->B * g.Hq, 1, fwd_range, &c);
    return GLLM_OK;
}

/* One task per (row, kv head) owns dK, dV of that head and dQ of its query
 * heads; heads and blocks run in a fixed order, so the sums are repeatable. */
static void bwd_range(void *args, long tb, long te, int tid)
{
    const attn_blas_ctx *c = args;
    const attn_geom g = c->g;
    const int T = g.T, D = g.D;
    const float *x = c->x, *dout = c->dout, *out = c->o, *lse = c->lse_in;
    const int32_t *pos = c->pos;
    float *dx = c->dx;
    for (long task = tb; task < te; task++) {
        const int b = (int)(task / g.Hkv), kvh = (int)(task % g.Hkv);
        const long row0 = (long)b * T;
        float *K = (float *)(c->scr + (size_t)tid * c->stride);
        float *V = K + (size_t)T * D, *dK = V + (size_t)T * D, *dV = dK + (size_t)T * D;
        float *Q = dV + (size_t)T * D, *dO = Q + (size_t)QB * D, *dQ = dO + (size_t)QB * D;
        float *P = dQ + (size_t)QB * D, *dP = P + (size_t)QB * T, *Lb = dP + (size_t)QB * T;
        float *Di = Lb + QB;
        const float *xr = x + row0 * g.W;
        gather(K, xr + (size_t)(g.Hq + kvh) * D, g.W, T, D);
        gather(V, xr + (size_t)(g.Hq + g.Hkv + kvh) * D, g.W, T, D);
        memset(dK, 0, 2 * (size_t)T * D * sizeof(float));
        for (int h = kvh * g.group; h < (kvh + 1) * g.group; h++) {
            for (int r0 = 0; r0 < T; r0 += QB) {
                const int r1 = r0 + QB < T ? r0 + QB : T, rows = r1 - r0;
                const int k0 = key_start(&g, row0, pos, r0, r1), nk = r1 - k0;
                gather(Q, xr + (size_t)r0 * g.W + (size_t)h * D, g.W, rows, D);
                gather(dO, dout + (row0 + r0) * g.OW + (size_t)h * D, g.OW, rows, D);
                for (int i = 0; i < rows; i++) {
                    const long n = row0 + r0 + i;
                    const float *o = out + n * g.OW + (size_t)h * D, *go = dO + (size_t)i * D;
                    double di = 0;
                    for (int d = 0; d < D; d++)
                        di += (double)go[d] * o[d];
                    Di[i] = (float)di;
                    Lb[i] = lse[n * g.Hq + h];
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nk, D, g.scale, Q, D,
                            K + (size_t)k0 * D, D, 0.0f, P, nk);
                softmax_rows(&g, P, rows, nk, r0, k0, row0, pos, NULL, Lb);
                /* dP = dO V^T; dS = P (dP - Di) scale, written over dP */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nk, D, 1.0f, dO, D,
                            V + (size_t)k0 * D, D, 0.0f, dP, nk);
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < nk; j++) {
                        const size_t e = (size_t)i * nk + j;
                        dP[e] = P[e] * (dP[e] - Di[i]) * g.scale;
                    }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, nk, 1.0f, dP, nk,
                            K + (size_t)k0 * D, D, 0.0f, dQ, D);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, rows, 1.0f, dP, nk,
                            Q, D, 1.0f, dK + (size_t)k0 * D, D);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, rows, 1.0f, P, nk, dO,
                            D, 1.0f, dV + (size_t)k0 * D, D);
                for (int i = 0; i < rows; i++)
                    memcpy(dx + (row0 + r0 + i) * g.W + (size_t)h * D, dQ + (size_t)i * D,
                           (size_t)D * sizeof(float));
            }
        }
        for (int t = 0; t < T; t++) {
            float *row = dx + (row0 + t) * g.W;
            memcpy(row + (size_t)(g.Hq + kvh) * D, dK + (size_t)t * D, (size_t)D * sizeof(float));
            memcpy(row + (size_t)(g.Hq + g.Hkv + kvh) * D, dV + (size_t)t * D,
                   (size_t)D * sizeof(float));
        }
    }
}

gllm_status gllm_cpu_attention_bwd_blas(gllm_backend *be, float *dx, const float *dout,
                                        const float *x, const float *out, const float *lse,
                                        const int32_t *pos, const gllm_attn_shape *s)
{
    const attn_geom g = geom(s);
    const int T = g.T, D = g.D;
    /* per thread: K, V, dK, dV [T, D]; Q, dO, dQ blocks [QB, D]; P, dP [QB, T]; lse, Di [QB] */
    const size_t floats = 4 * (size_t)T * D + 3 * (size_t)QB * D + 2 * (size_t)QB * T + 2 * QB;
    unsigned char *scr = gllm_cpu_scratch(be, floats * sizeof(float), "attention_bwd");
    if (!scr)
        return GLLM_ERR_OOM;
    attn_blas_ctx c = {.g = g, .dx = dx, .x = x, .dout = dout, .o = out, .lse_in = lse,
                       .pos = pos, .scr = scr, .stride = gllm_cpu_ctx_of(be)->scratch_stride};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (long)s->B * g.Hkv, 1, bwd_range, &c);
    return GLLM_OK;
}
#else
/* ISO C forbids an empty translation unit */
typedef int gllm_cpu_attention_blas_unused;
#endif
