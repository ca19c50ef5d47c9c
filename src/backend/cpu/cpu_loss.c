/* Cross-entropy (fused forward and logits gradient) and token sampling. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "gllm/rng.h"
#include "backend/cpu/cpu_internal.h"
#include "gllm/backend_cpu.h"

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
    float *x = logits;
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(static)
    for (int n = 0; n < N; n++) {
        float *row = x + (size_t)n * V;
        float mask = loss_mask ? loss_mask[n] : 1.0f;
        if (mask == 0) {
            loss[n] = 0;
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
        int t = targets[n];
        loss[n] = lse - row[t];
        if (dlogits_scale != 0) {
            float k = dlogits_scale * mask;
#pragma omp simd
            for (int v = 0; v < V; v++)
                row[v] = k * gllm_cpu_exp(row[v] - lse);
            row[t] -= k;
        }
    }
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
    size_t stride = gllm_cpu_ctx_of(be)->scratch_stride;
    const float *x = logits;
#pragma omp parallel for num_threads(gllm_cpu_ctx_of(be)->n_threads) schedule(dynamic, 1)
    for (int n = 0; n < N; n++)
        out_ids[n] = sample_row(x + (size_t)n * V, V, a, seeds ? seeds[n] : 0,
                                (prob_id *)(scr + (size_t)omp_get_thread_num() * stride));
    return GLLM_OK;
}
