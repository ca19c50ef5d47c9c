/* The AdamW step over the elements this rank owns: all of them, or under
 * ZeRO-1 one slice of every gradient bucket (grad_sync.c lays them out). The
 * global gradient norm is taken over the owned elements and, under ZeRO-1,
 * summed over the ranks; the updated slices are then all-gathered. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model_internal.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the owned ranges; a model without a list owns everything */
static int owned(const gllm_model *m, const gllm_own_range **r, gllm_own_range *all)
{
    if (m->n_own > 0) {
        *r = m->own;
        return m->n_own;
    }
    *all = (gllm_own_range){.lo = 0, .n = m->numel, .state = 0};
    *r = all;
    return 1;
}

size_t gllm_model_optimizer_bytes(const gllm_model *m)
{
    const size_t n = m->n_own > 0 ? m->state_n : m->numel;
    return n * sizeof(float) * (m->be->act_dtype != GLLM_F32 ? 3 : 2);
}

double gllm_model_train_flops_per_token(const gllm_model *m, int T)
{
    const gllm_model_config *c = &m->cfg;
    double matmul = 0;
    for (int i = 0; i < m->n_params; i++) {
        const gllm_param_info *p = &m->params[i];
        if (p->ndim == 2 && p->offset != m->wte && (m->wpe == SIZE_MAX || p->offset != m->wpe))
            matmul += (double)p->numel;
    }
    if (c->tied) /* the LM head is the embedding matrix used once more */
        matmul += (double)c->vocab_size * c->hidden;
    const double attn = (double)c->n_layers * T * c->n_heads * c->head_dim;
    return 6.0 * matmul + 6.0 * attn;
}

/* AdamW segments of [lo, lo + n), offsets relative to lo; returns their count. */
static int adamw_segments(gllm_model *m, float weight_decay, size_t lo, size_t n)
{
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const gllm_param_info *p = &m->params[i];
        const size_t a = p->offset > lo ? p->offset : lo;
        const size_t b = p->offset + p->numel < lo + n ? p->offset + p->numel : lo + n;
        if (a >= b)
            continue;
        m->segs[k].offset = a - lo;
        m->segs[k].n = b - a;
        m->segs[k].weight_decay = p->ndim >= 2 ? weight_decay : 0.0f;
        k++;
    }
    return k;
}

static gllm_status alloc_state(gllm_model *m, const gllm_own_range *r, int nr)
{
    gllm_backend *be = m->be;
    const size_t n = m->n_own > 0 ? m->state_n : m->numel, bytes = (n ? n : 1) * sizeof(float);
    GLLM_TRY(be->alloc(be, bytes, "AdamW first moment", (void **)&m->adam_m));
    GLLM_TRY(be->alloc(be, bytes, "AdamW second moment", (void **)&m->adam_v));
    GLLM_TRY(be->memset0(be, m->adam_m, bytes));
    GLLM_TRY(be->memset0(be, m->adam_v, bytes));
    if (be->act_dtype != GLLM_F32) {
        float *host = gllm_malloc(bytes, "master weight staging");
        if (!host)
            return GLLM_ERR_OOM;
        gllm_status s = be->alloc(be, bytes, "fp32 master weights", (void **)&m->master);
        for (int i = 0; i < nr && s == GLLM_OK; i++)
            if (r[i].n)
                s = be->download_f32(be, host + r[i].state, wptr(m, r[i].lo), r[i].n);
        if (s == GLLM_OK)
            s = be->upload(be, m->master, host, bytes);
        free(host);
        GLLM_TRY(s);
    }
    if (!m->segs) {
        m->segs = gllm_calloc((size_t)m->n_params, sizeof *m->segs, "AdamW segments");
        if (!m->segs)
            return GLLM_ERR_OOM;
    }
    return GLLM_OK;
}

gllm_status gllm_model_adamw_step(gllm_model *m, const gllm_adamw_config *h, int step,
                                  float *grad_norm)
{
    GLLM_TRY(gllm_model_grads(m));
    gllm_backend *be = m->be;
    if (step < 1)
        return gllm_fail(GLLM_ERR_INVALID, "adamw: step must be >= 1 (got %d)", step);
    gllm_own_range all;
    const gllm_own_range *r;
    const int nr = owned(m, &r, &all);
    if (!m->adam_m)
        GLLM_TRY(alloc_state(m, r, nr));
    m->w_version++;
    /* the squared norm of the owned gradients, in range order; under ZeRO-1
     * the ranks' partial sums are added in rank order */
    float sumsq = 0;
    for (int i = 0; i < nr; i++) {
        if (!r[i].n)
            continue;
        float part = 0;
        GLLM_TRY(be->sumsq(be, m->sumsq, m->g + r[i].lo, r[i].n));
        GLLM_TRY(be->download(be, &part, m->sumsq, sizeof part));
        sumsq = nr == 1 ? part : sumsq + part;
    }
    if (m->zero && m->zero->world > 1) {
        const double t0 = now_s();
        GLLM_TRY(be->upload(be, m->sumsq, &sumsq, sizeof sumsq));
        GLLM_TRY(m->zero->all_reduce(m->zero, m->sumsq, 1, GLLM_F32, GLLM_REDUCE_SUM));
        GLLM_TRY(be->download(be, &sumsq, m->sumsq, sizeof sumsq));
        m->comm_wait_s += now_s() - t0;
    }
    const float norm = sqrtf(sumsq);
    if (!isfinite(norm))
        return gllm_fail(GLLM_ERR_INVALID, "adamw step %d: gradient norm is %f", step, norm);
    /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is < 1 */
    float clip = 1.0f;
    if (h->max_grad_norm > 0) {
        float coef = h->max_grad_norm / (norm + 1e-6f);
        if (coef < 1.0f)
            clip = coef;
    }
    if (grad_norm)
        *grad_norm = norm;
    gllm_adamw_args a = {.lr = h->lr, .beta1 = h->beta1, .beta2 = h->beta2, .eps = h->eps,
                         .step = step, .grad_scale = clip};
    for (int i = 0; i < nr; i++) {
        const int n_segs = r[i].n ? adamw_segments(m, h->weight_decay, r[i].lo, r[i].n) : 0;
        if (n_segs > 0)
            GLLM_TRY(be->adamw(be, wptr(m, r[i].lo), m->master ? m->master + r[i].state : NULL,
                               m->g + r[i].lo, m->adam_m + r[i].state, m->adam_v + r[i].state,
                               m->segs, n_segs, &a));
    }
    if (!m->zero)
        return GLLM_OK;
    /* every rank's slices back into every rank's parameters: all started, then one
     * wait; timed from the end of the update (the compute queue synced, untimed) */
    gllm_status s = be->sync(be);
    const double t0 = now_s();
    for (int i = 0; i < nr && s == GLLM_OK; i++)
        s = gllm_comm_all_gather_start(
            m->zero, wptr(m, r[i].bucket_lo),
            wptr(m, r[i].bucket_lo + (size_t)m->zero->rank * r[i].slice), r[i].slice,
            be->act_dtype);
    if (s == GLLM_OK)
        s = gllm_comm_wait(m->zero);
    m->comm_wait_s += now_s() - t0;
    return s;
}
