/* Pointwise ops and embeddings on the CPU. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define COL_BLOCK 64

gllm_status gllm_cpu_gelu_fwd(gllm_backend *be, void *out, const void *inp, size_t n)
{
    if (!out || !inp)
        return gllm_fail(GLLM_ERR_INVALID, "gelu_fwd: NULL argument");
    const float *x = inp;
    float *y = out;
#pragma omp parallel for simd num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = gllm_cpu_gelu(x[i]);
    return GLLM_OK;
}

gllm_status gllm_cpu_gelu_bwd(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                              size_t n)
{
    if (!dinp || !inp || !dout)
        return gllm_fail(GLLM_ERR_INVALID, "gelu_bwd: NULL argument");
    const float *x = inp, *g = dout;
    float *dx = dinp;
#pragma omp parallel for simd num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float u = GLLM_GELU_K0 * (v + GLLM_GELU_K1 * v * v * v);
        float t = gllm_cpu_tanh(u);
        float du = GLLM_GELU_K0 * (1.0f + 3.0f * GLLM_GELU_K1 * v * v);
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
        dx[i] = g[i] * d;
    }
    return GLLM_OK;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + gllm_cpu_exp(-x)); }

gllm_status gllm_cpu_swiglu_fwd(gllm_backend *be, void *out, const void *inp, int N, int I)
{
    if (!out || !inp || N < 0 || I <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "swiglu_fwd: bad arguments (N=%d I=%d)", N, I);
    const float *x = inp;
    float *y = out;
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gate = x + (size_t)n * 2 * I, *up = gate + I;
        float *yr = y + (size_t)n * I;
#pragma omp simd
        for (int i = 0; i < I; i++)
            yr[i] = gate[i] * sigmoid(gate[i]) * up[i];
    }
    return GLLM_OK;
}

gllm_status gllm_cpu_swiglu_bwd(gllm_backend *be, void *dinp, const void *inp,
                                const void *dout, int N, int I)
{
    if (!dinp || !inp || !dout || N < 0 || I <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "swiglu_bwd: bad arguments (N=%d I=%d)", N, I);
    const float *x = inp, *g = dout;
    float *dx = dinp;
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gate = x + (size_t)n * 2 * I, *up = gate + I, *gr = g + (size_t)n * I;
        float *dg = dx + (size_t)n * 2 * I, *du = dg + I;
#pragma omp simd
        for (int i = 0; i < I; i++) {
            float a = gate[i], sg = sigmoid(a), gi = gr[i], u = up[i];
            /* d silu(a)/da = sig(a) (1 + a (1 - sig(a))) */
            dg[i] = gi * u * sg * (1.0f + a * (1.0f - sg));
            du[i] = gi * a * sg;
        }
    }
    return GLLM_OK;
}

gllm_status gllm_cpu_add(gllm_backend *be, void *out, const void *a, const void *b, size_t n)
{
    if (!out || !a || !b)
        return gllm_fail(GLLM_ERR_INVALID, "add: NULL argument");
    const float *x = a, *y = b;
    float *z = out;
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (size_t i = 0; i < n; i++)
        z[i] = x[i] + y[i];
    return GLLM_OK;
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
    const float *te = wte, *pe = wpe;
    float *y = out;
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *t = te + (size_t)ids[n] * C;
        float *yr = y + (size_t)n * C;
        if (pe) {
            const float *p = pe + (size_t)pos[n] * C;
            for (int c = 0; c < C; c++)
                yr[c] = t[c] + p[c];
        } else {
            memcpy(yr, t, (size_t)C * sizeof(float));
        }
    }
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
    const float *g = dout;
    /* Each thread owns a block of columns and walks tokens in order: repeated ids
     * add up deterministically without atomics. */
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (int c0 = 0; c0 < C; c0 += COL_BLOCK) {
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int n = 0; n < N; n++) {
            const float *gr = g + (size_t)n * C;
            float *t = dwte + (size_t)ids[n] * C;
            for (int c = c0; c < c1; c++)
                t[c] += gr[c];
            if (dwpe) {
                float *p = dwpe + (size_t)pos[n] * C;
                for (int c = c0; c < c1; c++)
                    p[c] += gr[c];
            }
        }
    }
    return GLLM_OK;
}
