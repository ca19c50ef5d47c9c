/* Gradient buckets for data parallelism (see gllm_grad_sync in model.h).
 *
 * Layout. The flat gradient buffer holds [embeddings | layer 0 .. L-1 | final
 * norm, LM head]; backward finishes them from the top down. Cuts are placed at
 * layer starts, from the top, each time the bucket above has reached the
 * target size; under ZeRO-1 every cut is rounded up to a multiple of world x 64
 * elements (so each rank's slice starts on a 64-element boundary, as the
 * device kernels' wide loads want) and the buffers are padded to such a
 * multiple. A bucket is ready at the backward stage of the last of its
 * gradients to become final (gllm_model_grad_stage).
 *
 * Order. Buckets start in one fixed order (top down) on every rank, whatever
 * the timing: collectives must be called in the same order everywhere. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model_internal.h"

typedef struct bucket {
    size_t lo, len; /* elements of the flat buffers (len includes ZeRO-1 padding) */
    int stage;      /* ready once backward has passed this stage */
} bucket;

struct gllm_grad_sync {
    gllm_model *m;
    gllm_comm *c;
    bool zero1;
    bucket *b;
    int n, next; /* buckets; the next one to start */
    bool armed;
    double wait_s;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* latest stage among the parameters overlapping [lo, hi) */
static int bucket_stage(const gllm_model *m, size_t lo, size_t hi)
{
    int st = 0;
    for (int i = 0; i < m->n_params; i++) {
        const gllm_param_info *p = &m->params[i];
        if (p->offset < hi && p->offset + p->numel > lo) {
            const int s = gllm_model_grad_stage(m, p->offset);
            st = s > st ? s : st;
        }
    }
    return st;
}

/* Cut [0, total) into buckets of >= target elements at layer starts rounded
 * up to `align`; top-down order. target 0: one bucket. */
static gllm_status make_buckets(gllm_grad_sync *s, size_t total, size_t target, size_t align)
{
    gllm_model *m = s->m;
    const int L = m->cfg.n_layers;
    s->b = gllm_calloc((size_t)L + 3, sizeof *s->b, "gradient buckets");
    if (!s->b)
        return GLLM_ERR_OOM;
    size_t top = total;
    for (int k = -1; k < L && target > 0; k++) {
        /* candidate cuts from the top: the final norm's start, then layers L-1 .. 0 */
        const size_t at = k < 0 ? m->lnf_w : m->layer[L - 1 - k].ln1_w;
        const size_t cut = round_up(at, align);
        if (cut < top && top - cut >= target && cut > 0) {
            s->b[s->n++] = (bucket){.lo = cut, .len = top - cut};
            top = cut;
        }
    }
    s->b[s->n++] = (bucket){.lo = 0, .len = top};
    for (int i = 0; i < s->n; i++)
        s->b[i].stage = bucket_stage(m, s->b[i].lo, s->b[i].lo + s->b[i].len);
    return GLLM_OK;
}

/* ZeRO-1: pad w and g to `total`, and own the rank's slice of every bucket. */
static gllm_status shard(gllm_grad_sync *s, size_t total)
{
    gllm_model *m = s->m;
    gllm_backend *be = m->be;
    const size_t world = (size_t)s->c->world, rank = (size_t)s->c->rank;
    void *w = NULL;
    float *g = NULL;
    gllm_status st = be->alloc(be, total * m->esz, "parameters (padded for ZeRO-1)", &w);
    if (st == GLLM_OK)
        st = be->alloc(be, total * sizeof(float), "gradients (padded for ZeRO-1)", (void **)&g);
    if (st == GLLM_OK)
        st = be->memset0(be, w, total * m->esz);
    if (st == GLLM_OK)
        st = be->memset0(be, g, total * sizeof(float));
    if (st == GLLM_OK)
        st = be->copy(be, w, m->w, m->numel * m->esz);
    m->own = st == GLLM_OK ? gllm_calloc((size_t)s->n, sizeof *m->own, "ZeRO-1 slices") : NULL;
    if (st == GLLM_OK && !m->own)
        st = GLLM_ERR_OOM;
    if (st != GLLM_OK) {
        if (w)
            be->free(be, w);
        if (g)
            be->free(be, g);
        return st;
    }
    be->free(be, m->w);
    be->free(be, m->g);
    m->w = w;
    m->g = g;
    m->w_version++;
    m->padded = total;
    m->zero = s->c;
    size_t state = 0;
    /* state in bucket order from the bottom, so a flat layout is one contiguous slice */
    for (int i = s->n - 1, k = 0; i >= 0; i--, k++) {
        const size_t slice = s->b[i].len / world, lo = s->b[i].lo + rank * slice;
        const size_t n = lo >= m->numel ? 0 : (m->numel - lo < slice ? m->numel - lo : slice);
        m->own[k] = (gllm_own_range){.lo = lo, .n = n, .state = state, .bucket_lo = s->b[i].lo,
                                     .slice = slice};
        state += n;
    }
    m->n_own = s->n;
    m->state_n = state;
    return GLLM_OK;
}

static gllm_status start_bucket(gllm_grad_sync *s, const bucket *b)
{
    gllm_model *m = s->m;
    if (s->zero1) {
        const size_t slice = b->len / (size_t)s->c->world;
        return gllm_comm_reduce_scatter_start(s->c, m->g + b->lo + (size_t)s->c->rank * slice,
                                              m->g + b->lo, slice, GLLM_F32, GLLM_REDUCE_SUM);
    }
    const size_t n = b->lo + b->len > m->numel ? m->numel - b->lo : b->len;
    return gllm_comm_all_reduce_start(s->c, m->g + b->lo, n, GLLM_F32, GLLM_REDUCE_SUM);
}

/* backward's hook: start every bucket, in order, whose gradients are final */
static gllm_status on_ready(void *user, int stage)
{
    gllm_grad_sync *s = user;
    /* timed: where the communicator has no non-blocking start (shared memory)
     * or a start blocks, this is where the host waits */
    const double t0 = now_s();
    gllm_status st = GLLM_OK;
    while (st == GLLM_OK && s->next < s->n && s->b[s->next].stage <= stage)
        st = start_bucket(s, &s->b[s->next++]);
    s->wait_s += now_s() - t0;
    return st;
}

static gllm_status sync_new(gllm_model *m, gllm_comm *c, size_t bucket_bytes, bool zero1,
                            gllm_grad_sync **out)
{
    GLLM_TRY(gllm_model_grads(m));
    *out = NULL;
    if (zero1 && m->adam_m)
        return gllm_fail(GLLM_ERR_INVALID, "ZeRO-1: AdamW state already exists; shard before "
                         "the first step");
    if (zero1 && m->zero)
        return gllm_fail(GLLM_ERR_INVALID, "ZeRO-1: the optimizer is already sharded");
    gllm_grad_sync *s = gllm_calloc(1, sizeof *s, "gradient sync");
    if (!s)
        return GLLM_ERR_OOM;
    s->m = m;
    s->c = c;
    s->zero1 = zero1;
    if (c->world > 1) {
        const size_t align = zero1 ? (size_t)c->world * 64 : 64;
        const size_t total = zero1 ? round_up(m->numel, align) : m->numel;
        gllm_status st = make_buckets(s, total, bucket_bytes / sizeof(float), align);
        if (st == GLLM_OK && zero1)
            st = shard(s, total);
        if (st != GLLM_OK) {
            gllm_grad_sync_free(s);
            return st;
        }
    }
    *out = s;
    return GLLM_OK;
}

gllm_status gllm_grad_sync_new(gllm_model *m, gllm_comm *c, size_t bucket_bytes, bool zero1,
                               gllm_grad_sync **out)
{
    return sync_new(m, c, bucket_bytes, zero1 && c->world > 1, out);
}

void gllm_grad_sync_free(gllm_grad_sync *s)
{
    if (!s)
        return;
    if (s->m->grad_ready_user == s) {
        s->m->grad_ready = NULL;
        s->m->grad_ready_user = NULL;
    }
    free(s->b);
    free(s);
}

gllm_status gllm_grad_sync_arm(gllm_grad_sync *s)
{
    if (s->n == 0)
        return GLLM_OK;
    s->next = 0;
    s->armed = true;
    s->m->grad_ready = on_ready;
    s->m->grad_ready_user = s;
    return GLLM_OK;
}

gllm_status gllm_grad_sync_finish(gllm_grad_sync *s)
{
    gllm_model *m = s->m;
    if (s->n == 0)
        return GLLM_OK;
    if (!s->armed)
        s->next = 0;
    s->armed = false;
    m->grad_ready = NULL;
    m->grad_ready_user = NULL;
    gllm_status st = on_ready(s, m->cfg.n_layers + 1); /* whatever backward did not start */
    /* on a device that queues work the host gets here long before backward has
     * run: wait for the compute queue first, untimed, so that wait_s is the
     * communication left exposed after compute, not compute itself */
    if (st == GLLM_OK)
        st = m->be->sync(m->be);
    const double t0 = now_s();
    if (st == GLLM_OK)
        st = gllm_comm_wait(s->c);
    s->wait_s += now_s() - t0;
    return st;
}

void gllm_grad_sync_stats_of(const gllm_grad_sync *s, gllm_grad_sync_stats *out)
{
    memset(out, 0, sizeof *out);
    out->n_buckets = s->n;
    for (int i = 0; i < s->n; i++)
        if (s->b[i].len > out->largest_bucket)
            out->largest_bucket = s->b[i].len;
    out->wait_s = s->wait_s + s->m->comm_wait_s;
    out->state_bytes = gllm_model_optimizer_bytes(s->m);
}

gllm_status gllm_model_shard_optimizer(gllm_model *m, gllm_comm *c)
{
    /* one bucket: rank r owns the r-th 1/world of the padded flat buffers; the
     * gradients are reduced by the caller (all-reduce) and the step gathers */
    gllm_grad_sync *s;
    GLLM_TRY(sync_new(m, c, 0, true, &s));
    gllm_grad_sync_free(s);
    return GLLM_OK;
}
