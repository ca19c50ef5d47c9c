/* Cross-entropy (fused forward and logits gradient) and token sampling. */
#include <math.h>
#include <stdlib.h>

#include "gllm/rng.h"
#include "backend/cpu/cpu_internal.h"
#include "gllm/backend_cpu.h"

typedef struct xent_args {
    float *x, *loss;
    const int32_t *targets;
    const float *loss_mask;
    int V;
    float dlogits_scale;
} xent_args;

static void xent_range(void *args, long b, long e, int tid)
{
    const xent_args *a = args;
    const int V = a->V;
    const float dlogits_scale = a->dlogits_scale;
    (void)tid;
    for (long n = b; n < e; n++) {
        float *row = a->x + (size_t)n * V;
        float mask = a->loss_mask ? a->loss_mask[n] : 1.0f;
        if (mask == 0) {
            a->loss[n] = 0;
            if (dlogits_scale != 0)
                for (int v = 0; v < V; v++)
                    row[v] = 0;
            continue;
        }
        float mx = row[0];
        for (int v = 1; v < V; v++)
            if (row[v] > mx)
                mx = row[v];
        float sum = 0; /* vector partial sums in a fixed order: repeatable */
#pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; v++)
            sum += gllm_cpu_exp(row[v] - mx);
        float lse = mx + (float)log(sum);
        int t = a->targets[n];
        a->loss[n] = lse - row[t];
        if (dlogits_scale != 0) {
            float k = dlogits_scale * mask;
#pragma omp simd
            for (int v = 0; v < V; v++)
                row[v] = k * gllm_cpu_exp(row[v] - lse);
            row[t] -= k;
        }
    }
}

gllm_status gllm_cpu_xent_fwd_bwd(gllm_backend *be, float *loss, void *logits,
                                  const int32_t *targets, const float *loss_mask, int N, int V,
                                  float dlogits_scale)
{
    if (!loss || !logits || !targets || N < 0 || V <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "xent_fwd_bwd: bad arguments (N=%d V=%d)", N, V);
    for (int n = 0; n < N; n++)
        if ((!loss_mask || loss_mask[n] != 0) && (targets[n] < 0 || targets[n] >= V))
            return gllm_fail(GLLM_ERR_INVALID,
                             "xent_fwd_bwd: targets[%d] = %d outside vocabulary %d", n,
                             targets[n], V);
    xent_args a = {.x = logits, .loss = loss, .targets = targets, .loss_mask = loss_mask,
                   .V = V, .dlogits_scale = dlogits_scale};
    gllm_cpu_for(be, N, 40.0 * V, xent_range, &a);
    return GLLM_OK;
}

/* the core's SplitMix64 (the CUDA sampler mirrors it on the device) */
double gllm_sample_uniform(uint64_t seed) { return gllm_rng_uniform(&seed); }

typedef struct prob_id {
    float p;
    int32_t id;
} prob_id;

/* descending probability, ties to the lower id */
static int prob_id_cmp(const void *a, const void *b)
{
    const prob_id *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t sample_row(const float *row, int V, const gllm_sample_args *a, uint64_t seed,
                          prob_id *buf)
{
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > row[best])
            best = v;
    if (a->temperature <= 0)
        return best;
    float mx = row[best];
    for (int v = 0; v < V; v++) {
        buf[v].p = expf((row[v] - mx) / a->temperature);
        buf[v].id = v;
    }
    qsort(buf, (size_t)V, sizeof *buf, prob_id_cmp);
    int keep = a->top_k > 0 && a->top_k < V ? a->top_k : V;
    if (a->top_p < 1.0f) {
        /* nucleus over the renormalised top-k: the shortest prefix whose mass reaches top_p */
        double kept = 0, cum = 0;
        for (int i = 0; i < keep; i++)
            kept += buf[i].p;
        int i = 0;
        while (i < keep) {
            cum += buf[i].p;
            i++;
            if (cum >= a->top_p * kept)
                break;
        }
        keep = i;
    }
    double total = 0;
    for (int i = 0; i < keep; i++)
        total += buf[i].p;
    double u = gllm_sample_uniform(seed) * total, cum = 0;
    for (int i = 0; i < keep; i++) {
        cum += buf[i].p;
        if (u < cum)
            return buf[i].id;
    }
    return buf[keep - 1].id;
}

typedef struct sample_ctx {
    int32_t *out_ids;
    const float *x;
    const gllm_sample_args *a;
    const uint64_t *seeds;
    unsigned char *scr;
    size_t stride;
    int V;
} sample_ctx;

static void sample_range(void *args, long b, long e, int tid)
{
    const sample_ctx *c = args;
    for (long n = b; n < e; n++)
        c->out_ids[n] = sample_row(c->x + (size_t)n * c->V, c->V, c->a,
                                   c->seeds ? c->seeds[n] : 0,
                                   (prob_id *)(c->scr + (size_t)tid * c->stride));
}

gllm_status gllm_cpu_sample(gllm_backend *be, int32_t *out_ids, const void *logits, int N,
                            int V, const gllm_sample_args *a, const uint64_t *seeds)
{
    if (!out_ids || !logits || !a || N < 0 || V <= 0 || (a->temperature > 0 && !seeds))
        return gllm_fail(GLLM_ERR_INVALID, "sample: bad arguments (N=%d V=%d)", N, V);
    if (a->top_k < 0 || !(a->top_p > 0 && a->top_p <= 1))
        return gllm_fail(GLLM_ERR_INVALID, "sample: top_k=%d top_p=%g out of range", a->top_k,
                         (double)a->top_p);
    unsigned char *scr = gllm_cpu_scratch(be, (size_t)V * sizeof(prob_id), "sample");
    if (!scr)
        return GLLM_ERR_OOM;
    sample_ctx c = {out_ids, logits, a, seeds, scr, gllm_cpu_ctx_of(be)->scratch_stride, V};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, N, 1, sample_range, &c);
    return GLLM_OK;
}
