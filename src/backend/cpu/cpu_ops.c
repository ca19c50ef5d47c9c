/* Pointwise ops and embeddings on the CPU. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define COL_BLOCK 64

/* arguments of the pointwise ops' chunks */
typedef struct pw_args {
    const float *x, *g;
    float *y;
    int I;
} pw_args;

static void gelu_fwd_range(void *v, long b, long e, int tid)
{
    const pw_args *a = v;
    (void)tid;
#pragma omp simd
    for (long i = b; i < e; i++)
        a->y[i] = gllm_cpu_gelu(a->x[i]);
}

gllm_status gllm_cpu_gelu_fwd(gllm_backend *be, void *out, const void *inp, size_t n)
{
    if (!out || !inp)
        return gllm_fail(GLLM_ERR_INVALID, "gelu_fwd: NULL argument");
    pw_args a = {.x = inp, .y = out};
    gllm_cpu_for(be, (long)n, 30, gelu_fwd_range, &a);
    return GLLM_OK;
}

static void gelu_bwd_range(void *args, long b, long e, int tid)
{
    const pw_args *a = args;
    const float *x = a->x, *g = a->g;
    float *dx = a->y;
    (void)tid;
#pragma omp simd
    for (long i = b; i < e; i++) {
        float v = x[i];
        float u = GLLM_GELU_K0 * (v + GLLM_GELU_K1 * v * v * v);
        float t = gllm_cpu_tanh(u);
        float du = GLLM_GELU_K0 * (1.0f + 3.0f * GLLM_GELU_K1 * v * v);
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
        dx[i] = g[i] * d;
    }
}

gllm_status gllm_cpu_gelu_bwd(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                              size_t n)
{
    if (!dinp || !inp || !dout)
        return gllm_fail(GLLM_ERR_INVALID, "gelu_bwd: NULL argument");
    pw_args a = {.x = inp, .g = dout, .y = dinp};
    gllm_cpu_for(be, (long)n, 40, gelu_bwd_range, &a);
    return GLLM_OK;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + gllm_cpu_exp(-x)); }

GLLM_CPU_CLONES
static void swiglu_fwd_range(void *v, long b, long e, int tid)
{
    const pw_args *a = v;
    const int I = a->I;
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *gate = a->x + (size_t)n * 2 * I, *up = gate + I;
        float *yr = a->y + (size_t)n * I;
#pragma omp simd
        for (int i = 0; i < I; i++)
            yr[i] = gate[i] * sigmoid(gate[i]) * up[i];
    }
}

static void swiglu_bwd_range(void *v, long b, long e, int tid)
{
    const pw_args *a = v;
    const int I = a->I;
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *gate = a->x + (size_t)n * 2 * I, *up = gate + I, *gr = a->g + (size_t)n * I;
        float *dg = a->y + (size_t)n * 2 * I, *du = dg + I;
#pragma omp simd
        for (int i = 0; i < I; i++) {
            float x = gate[i], sg = sigmoid(x), gi = gr[i], u = up[i];
            /* d silu(x)/dx = sig(x) (1 + x (1 - sig(x))) */
            dg[i] = gi * u * sg * (1.0f + x * (1.0f - sg));
            du[i] = gi * x * sg;
        }
    }
}

gllm_status gllm_cpu_swiglu_fwd(gllm_backend *be, void *out, const void *inp, int N, int I)
{
    if (!out || !inp || N < 0 || I <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "swiglu_fwd: bad arguments (N=%d I=%d)", N, I);
    pw_args a = {.x = inp, .y = out, .I = I};
    gllm_cpu_for(be, N, 30.0 * I, swiglu_fwd_range, &a);
    return GLLM_OK;
}

gllm_status gllm_cpu_swiglu_bwd(gllm_backend *be, void *dinp, const void *inp,
                                const void *dout, int N, int I)
{
    if (!dinp || !inp || !dout || N < 0 || I <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "swiglu_bwd: bad arguments (N=%d I=%d)", N, I);
    pw_args a = {.x = inp, .g = dout, .y = dinp, .I = I};
    gllm_cpu_for(be, N, 40.0 * I, swiglu_bwd_range, &a);
    return GLLM_OK;
}

static void add_range(void *v, long b, long e, int tid)
{
    const pw_args *a = v;
    (void)tid;
    for (long i = b; i < e; i++)
        a->y[i] = a->x[i] + a->g[i];
}

gllm_status gllm_cpu_add(gllm_backend *be, void *out, const void *a, const void *b, size_t n)
{
    if (!out || !a || !b)
        return gllm_fail(GLLM_ERR_INVALID, "add: NULL argument");
    pw_args args = {.x = a, .g = b, .y = out};
    gllm_cpu_for(be, (long)n, 2, add_range, &args);
    return GLLM_OK;
}

/* arguments of the embedding chunks */
typedef struct emb_args {
    float *y, *dwte, *dwpe;
    const float *te, *pe, *g;
    const int32_t *ids, *pos;
    int N, C;
} emb_args;

static void embed_fwd_range(void *v, long b, long e, int tid)
{
    const emb_args *a = v;
    const int C = a->C;
    (void)tid;
    for (long n = b; n < e; n++) {
        const float *t = a->te + (size_t)a->ids[n] * C;
        float *yr = a->y + (size_t)n * C;
        if (a->pe) {
            const float *p = a->pe + (size_t)a->pos[n] * C;
            for (int c = 0; c < C; c++)
                yr[c] = t[c] + p[c];
        } else {
            memcpy(yr, t, (size_t)C * sizeof(float));
        }
    }
}

/* Each chunk owns a block of columns and walks tokens in order: repeated ids
 * add up deterministically without atomics. */
static void embed_bwd_range(void *v, long b, long e, int tid)
{
    const emb_args *a = v;
    const int C = a->C;
    (void)tid;
    for (long blk = b; blk < e; blk++) {
        int c0 = (int)blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int n = 0; n < a->N; n++) {
            const float *gr = a->g + (size_t)n * C;
            float *t = a->dwte + (size_t)a->ids[n] * C;
            for (int c = c0; c < c1; c++)
                t[c] += gr[c];
            if (a->dwpe) {
                float *p = a->dwpe + (size_t)a->pos[n] * C;
                for (int c = c0; c < c1; c++)
                    p[c] += gr[c];
            }
        }
    }
}

gllm_status gllm_cpu_embed_fwd(gllm_backend *be, void *out, const int32_t *ids,
                               const int32_t *pos, const void *wte, const void *wpe, int N,
                               int C)
{
    if (!out || !ids || !wte || (wpe && !pos) || N < 0 || C <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "embed_fwd: bad arguments (N=%d C=%d)", N, C);
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || (wpe && pos[n] < 0))
            return gllm_fail(GLLM_ERR_INVALID, "embed_fwd: negative id or position at token %d",
                             n);
    emb_args a = {.y = out, .te = wte, .pe = wpe, .ids = ids, .pos = pos, .N = N, .C = C};
    gllm_cpu_for(be, N, 2.0 * C, embed_fwd_range, &a);
    return GLLM_OK;
}

gllm_status gllm_cpu_embed_bwd(gllm_backend *be, float *dwte, float *dwpe, const void *dout,
                               const int32_t *ids, const int32_t *pos, int N, int C, int V)
{
    if (!dwte || !dout || !ids || (dwpe && !pos) || N < 0 || C <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "embed_bwd: bad arguments (N=%d C=%d)", N, C);
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V || (dwpe && pos[n] < 0))
            return gllm_fail(GLLM_ERR_INVALID,
                             "embed_bwd: token %d: id %d outside vocabulary %d or negative "
                             "position",
                             n, ids[n], V);
    emb_args a = {.dwte = dwte, .dwpe = dwpe, .g = dout, .ids = ids, .pos = pos, .N = N, .C = C};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (C + COL_BLOCK - 1) / COL_BLOCK, 1,
                      embed_bwd_range, &a);
    return GLLM_OK;
}
