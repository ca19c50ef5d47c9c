/* Gradient sum of squares and AdamW on the CPU. */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

/* sumsq adds fixed-size chunks in double, then the chunk sums in index order:
 * the result is the same for any thread count. */
#define SUMSQ_CHUNK 16384

typedef struct sumsq_args {
    const float *x;
    double *part;
    size_t n;
} sumsq_args;

static void sumsq_range(void *v, long b, long e, int tid)
{
    const sumsq_args *a = v;
    (void)tid;
    for (long k = b; k < e; k++) {
        size_t i1 = (size_t)(k + 1) * SUMSQ_CHUNK < a->n ? (size_t)(k + 1) * SUMSQ_CHUNK : a->n;
        double s = 0;
        for (size_t i = (size_t)k * SUMSQ_CHUNK; i < i1; i++)
            s += (double)a->x[i] * a->x[i];
        a->part[k] = s;
    }
}

typedef struct adamw_ctx {
    float *w, *p, *m, *v;
    const float *grads;
    float b1, b2, eps, gs, bc2_sqrt, step_size, decay;
} adamw_ctx;

static void adamw_range(void *args, long b, long e, int tid)
{
    const adamw_ctx *a = args;
    float *w = a->w, *p = a->p, *m = a->m, *v = a->v;
    const float b1 = a->b1, b2 = a->b2;
    (void)tid;
    for (long i = b; i < e; i++) {
        float g = a->grads[i] * a->gs;
        float mi = m[i] + (1.0f - b1) * (g - m[i]); /* torch's lerp_ */
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float wi = w[i] * a->decay;
        wi -= a->step_size * mi / (sqrtf(vi) / a->bc2_sqrt + a->eps);
        w[i] = wi;
        p[i] = wi;
    }
}

gllm_status gllm_cpu_sumsq(gllm_backend *be, float *out, const float *x, size_t n)
{
    if (!out || (!x && n))
        return gllm_fail(GLLM_ERR_INVALID, "sumsq: NULL argument");
    size_t n_chunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    /* the per-thread scratch is reused as one flat array of chunk sums */
    size_t per_thread = (n_chunks + (size_t)c->n_threads - 1) / (size_t)c->n_threads;
    double *part = (double *)gllm_cpu_scratch(be, per_thread * sizeof(double), "sumsq");
    if (!part)
        return GLLM_ERR_OOM;
    sumsq_args a = {x, part, n};
    gllm_cpu_for(be, (long)n_chunks, 2.0 * SUMSQ_CHUNK, sumsq_range, &a);
    double s = 0;
    for (size_t k = 0; k < n_chunks; k++)
        s += part[k];
    *out = (float)s;
    return GLLM_OK;
}

gllm_status gllm_cpu_adamw(gllm_backend *be, void *params, float *master, const float *grads,
                           float *m, float *v, const gllm_param_segment *segs, int n_segs,
                           const gllm_adamw_args *a)
{
    if (!params || !grads || !m || !v || (!segs && n_segs) || n_segs < 0 || !a || a->step < 1)
        return gllm_fail(GLLM_ERR_INVALID, "adamw: bad arguments (n_segs=%d step=%d)", n_segs,
                         a ? a->step : 0);
    /* the master copy, when given, is what the update reads and writes; params mirror it */
    float *w = master ? master : params, *p = params;
    float b1 = a->beta1, b2 = a->beta2, lr = a->lr, eps = a->eps, gs = a->grad_scale;
    /* torch.optim.AdamW: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps, with the
     * scalars computed in double as Python does */
    float bc2_sqrt = (float)sqrt(1.0 - pow(b2, a->step));
    float step_size = (float)(lr / (1.0 - pow(b1, a->step)));
    for (int s = 0; s < n_segs; s++) {
        size_t off = segs[s].offset, n = segs[s].n;
        adamw_ctx c = {.w = w + off, .p = p + off, .m = m + off, .v = v + off,
                       .grads = grads + off, .b1 = b1, .b2 = b2, .eps = eps, .gs = gs,
                       .bc2_sqrt = bc2_sqrt, .step_size = step_size,
                       .decay = (float)(1.0 - (double)lr * segs[s].weight_decay)};
        gllm_cpu_for(be, (long)n, 15, adamw_range, &c);
    }
    return GLLM_OK;
}
