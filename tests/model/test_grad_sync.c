/* Gradient buckets start while backward still runs, and only once their
 * gradients are final. A recording communicator (rank 0 of 2, collectives
 * that leave the data as it is) snapshots each bucket when it is started:
 *  - the first bucket starts while layer 0's gradients are still zero
 *    (backward has not reached it yet),
 *  - every snapshot equals the bucket's final gradients (nothing was started
 *    before backward finished writing it),
 *  - the buckets tile the gradient buffer top down, each started once;
 *  - under ZeRO-1 each is a reduce-scatter, in place, on 64-element slices.
 * Model: the tiny Llama fixture (untied LM head), 2 layers. */
#include "gllm/model.h"
#include "model/model_internal.h"
#include "test_util.h"

#define MAX_STARTS 64

typedef struct recorder {
    gllm_model *m;
    int n;
    size_t lo[MAX_STARTS], len[MAX_STARTS];
    float *snap[MAX_STARTS];
    bool layer0_zero_at_first;
    bool aligned, in_place;
} recorder;

static recorder g_rec;

static void record(const float *buf, size_t n)
{
    recorder *r = &g_rec;
    gllm_model *m = r->m;
    if (r->n == MAX_STARTS)
        return;
    if (r->n == 0) {
        const size_t a = m->layer[0].ln1_w, b = m->layer[1].ln1_w;
        r->layer0_zero_at_first = true;
        for (size_t i = a; i < b; i++)
            r->layer0_zero_at_first = r->layer0_zero_at_first && m->g[i] == 0.0f;
    }
    r->lo[r->n] = (size_t)(buf - m->g);
    r->len[r->n] = n;
    r->snap[r->n] = malloc(n * sizeof(float));
    memcpy(r->snap[r->n], buf, n * sizeof(float));
    r->n++;
}

static gllm_status rec_all_reduce(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                  gllm_reduce_op op)
{
    (void)c, (void)t, (void)op;
    record(buf, n);
    return GLLM_OK;
}

static gllm_status rec_reduce_scatter(gllm_comm *c, void *out, const void *in, size_t n,
                                      gllm_dtype t, gllm_reduce_op op)
{
    (void)c, (void)t, (void)op;
    g_rec.in_place = g_rec.in_place && out == in; /* rank 0: its slice opens the bucket */
    g_rec.aligned = g_rec.aligned && n % 64 == 0 && ((const float *)in - g_rec.m->g) % 128 == 0;
    record(in, 2 * n);
    return GLLM_OK;
}

static gllm_status rec_all_gather(gllm_comm *c, void *out, const void *in, size_t n,
                                  gllm_dtype t)
{
    (void)c, (void)out, (void)in, (void)n, (void)t;
    return GLLM_OK;
}

static gllm_status rec_barrier(gllm_comm *c)
{
    (void)c;
    return GLLM_OK;
}

static gllm_status rec_broadcast(gllm_comm *c, void *buf, size_t bytes, int root)
{
    (void)c, (void)buf, (void)bytes, (void)root;
    return GLLM_OK;
}

static void run_case(gllm_backend *be, bool zero1)
{
    gllm_model *m = NULL;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/llama2", GLLM_SOURCE_DIR);
    CHECK_OK(gllm_model_load(dir, be, &m));
    if (!m)
        return;
    gllm_comm c = {.name = "recorder", .rank = 0, .world = 2, .be = be,
                   .all_reduce = rec_all_reduce, .reduce_scatter = rec_reduce_scatter,
                   .all_gather = rec_all_gather, .broadcast = rec_broadcast,
                   .barrier = rec_barrier};
    memset(&g_rec, 0, sizeof g_rec);
    g_rec.m = m;
    g_rec.aligned = g_rec.in_place = true;
    gllm_grad_sync *s = NULL;
    CHECK_OK(gllm_grad_sync_new(m, &c, 4096, zero1, &s)); /* 1024-float buckets */
    if (!s) {
        gllm_model_free(m);
        return;
    }
    gllm_grad_sync_stats st;
    gllm_grad_sync_stats_of(s, &st);
    const int B = 2, T = 16, N = B * T;
    int32_t ids[32], targets[32], pos[32];
    float mask[32];
    for (int i = 0; i < N; i++) {
        ids[i] = (i * 37 + 11) % 103;
        targets[i] = (i * 53 + 7) % 103;
        pos[i] = i % T;
        mask[i] = 1.0f;
    }
    const gllm_batch b = {.B = B, .T = T, .ids = ids, .targets = targets, .loss_mask = mask,
                          .pos = pos};
    float loss;
    CHECK_OK(gllm_model_plan(m, B, T));
    CHECK_OK(gllm_model_zero_grad(m));
    CHECK_OK(gllm_grad_sync_arm(s));
    CHECK_OK(gllm_model_forward_backward(m, &b, 0, &loss));
    const int during = g_rec.n;
    CHECK_OK(gllm_grad_sync_finish(s));
    printf("%s: %d buckets, %d started during backward, %d after; first started with layer 0's "
           "gradients %s\n", zero1 ? "ZeRO-1" : "all-reduce", st.n_buckets, during,
           g_rec.n - during, g_rec.layer0_zero_at_first ? "still zero" : "already written");
    CHECK(st.n_buckets >= 3);
    CHECK(g_rec.n == st.n_buckets);
    CHECK(during == st.n_buckets); /* the embeddings' bucket starts right after embed_bwd */
    CHECK(g_rec.layer0_zero_at_first);
    size_t top = m->padded;
    bool tiled = true, final = true;
    for (int i = 0; i < g_rec.n; i++) {
        const size_t len = g_rec.len[i], hi = g_rec.lo[i] + len;
        /* all-reduce buckets end at numel (no padding); ZeRO-1 ones at the padded end */
        tiled = tiled && (hi == top || (i == 0 && !zero1 && hi == m->numel));
        top = g_rec.lo[i];
        final = final && memcmp(g_rec.snap[i], m->g + g_rec.lo[i], len * sizeof(float)) == 0;
        free(g_rec.snap[i]);
    }
    CHECK(tiled && top == 0);
    CHECK(final);
    if (zero1) {
        CHECK(g_rec.aligned && g_rec.in_place);
        CHECK(st.state_bytes * 2 == m->padded * 2 * sizeof(float)); /* half of it: 1/world */
        printf("ZeRO-1: padded %zu of %zu elements, AdamW state %zu bytes (replicated: %zu)\n",
               m->padded, m->numel, st.state_bytes, m->numel * 2 * sizeof(float));
    }
    gllm_grad_sync_free(s);
    gllm_model_free(m);
}

int main(void)
{
    gllm_backend *be;
    if (gllm_backend_cpu_create(1, &be) != GLLM_OK)
        return 1;
    TEST_CASE("all-reduce buckets") { run_case(be, false); }
    TEST_CASE("ZeRO-1 reduce-scatter buckets") { run_case(be, true); }
    be->destroy(be);
    return test_summary();
}
