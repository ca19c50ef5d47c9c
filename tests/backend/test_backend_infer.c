/* The CPU backend's inference ops: paged attention against a double-precision
 * reference (prefill chunks, decode, GQA, sliding windows, scattered blocks),
 * per-row sampling (greedy ties, logprobs, top-n, top-k/top-p/min-p sets,
 * repetition penalty, frequencies), and batch invariance: each of these gives a
 * row the same bits alone as inside any batch (the row-invariant matmul's check
 * is in the op harness, tests/backend/ops_cases.h, run on every backend). */
#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "test_util.h"

static float *rnd(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    test_fill(x, n, scale);
    return x;
}

typedef struct pa_case {
    int S, Hq, Hkv, D, window, bs;
} pa_case;

static void test_paged_attention(gllm_backend *be, const pa_case *c)
{
    char name[128];
    snprintf(name, sizeof name, "paged attention S=%d Hq=%d Hkv=%d D=%d window=%d block=%d", c->S,
             c->Hq, c->Hkv, c->D, c->window, c->bs);
    t_case = name;
    const int S = c->S, W = (c->Hq + 2 * c->Hkv) * c->D, HD = c->Hkv * c->D, QW = c->Hq * c->D;
    int L[16], ql[16], total = 0, n_new = 0, nb = 0, maxb = 0;
    for (int s = 0; s < S; s++) {
        L[s] = 1 + (int)(test_rand_u64() % 40);
        ql[s] = s % 2 ? 1 : 1 + (int)(test_rand_u64() % (uint64_t)L[s]);
        total += L[s];
        n_new += ql[s];
        const int b = (L[s] + c->bs - 1) / c->bs;
        nb += b;
        maxb = b > maxb ? b : maxb;
    }
    float *ctx = rnd((size_t)total * W, 1.5f); /* every token's q,k,v row */
    int32_t *table = calloc((size_t)S * maxb, 4), *slots = malloc((size_t)total * 4);
    int32_t *perm = malloc((size_t)nb * 4);
    for (int i = 0; i < nb; i++)
        perm[i] = i;
    for (int i = nb - 1; i > 0; i--) {
        int j = (int)(test_rand_u64() % (uint64_t)(i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    int32_t qs[16], cl[16], off[16];
    for (int s = 0, k = 0, r = 0, q = 0; s < S; s++) {
        off[s] = r;
        for (int b = 0; b < (L[s] + c->bs - 1) / c->bs; b++)
            table[s * maxb + b] = perm[k++];
        for (int p = 0; p < L[s]; p++)
            slots[r++] = table[s * maxb + p / c->bs] * c->bs + p % c->bs;
        qs[s] = q;
        cl[s] = L[s];
        q += ql[s];
    }
    float *K = calloc((size_t)nb * c->bs * HD, 4), *V = calloc((size_t)nb * c->bs * HD, 4);
    gllm_kv_cache kv = {K, V, nb, c->bs, c->Hkv, c->D};
    CHECK_OK(be->kv_store(be, &kv, ctx, slots, total, c->Hq));
    float *q = malloc((size_t)n_new * W * 4), *out = malloc((size_t)n_new * QW * 4);
    float *ref = malloc((size_t)n_new * QW * 4);
    for (int s = 0; s < S; s++)
        memcpy(q + (size_t)qs[s] * W, ctx + (size_t)(off[s] + L[s] - ql[s]) * W,
               (size_t)ql[s] * W * 4);
    const float scale = 1.0f / sqrtf((float)c->D);
    gllm_paged_attn_args a = {.n_seq = S, .Hq = c->Hq, .window = c->window, .scale = scale,
                              .q_start = qs, .q_len = ql, .ctx_len = cl, .block_table = table,
                              .max_blocks = maxb, .n_tokens = n_new, .max_ctx = 40};
    CHECK_OK(be->attention_paged(be, out, q, &kv, &a));
    /* reference in double over the context rows directly */
    const int G = c->Hq / c->Hkv;
    for (int s = 0; s < S; s++)
        for (int j = 0; j < ql[s]; j++) {
            const int p = L[s] - ql[s] + j, lo = c->window > 0 && p - c->window + 1 > 0
                                                    ? p - c->window + 1 : 0;
            for (int h = 0; h < c->Hq; h++) {
                const float *qv = ctx + (size_t)(off[s] + p) * W + (size_t)h * c->D;
                double sc[64], mx = -1e300, sum = 0;
                for (int m = lo; m <= p; m++) {
                    const float *k = ctx + (size_t)(off[s] + m) * W + (size_t)(c->Hq + h / G) * c->D;
                    double d = 0;
                    for (int e = 0; e < c->D; e++)
                        d += (double)qv[e] * k[e];
                    sc[m - lo] = d * scale;
                    mx = sc[m - lo] > mx ? sc[m - lo] : mx;
                }
                for (int m = lo; m <= p; m++)
                    sum += (sc[m - lo] = exp(sc[m - lo] - mx));
                for (int e = 0; e < c->D; e++) {
                    double o = 0;
                    for (int m = lo; m <= p; m++)
                        o += sc[m - lo] *
                             ctx[(size_t)(off[s] + m) * W + (size_t)(c->Hq + c->Hkv + h / G) * c->D + e];
                    ref[(size_t)(qs[s] + j) * QW + (size_t)h * c->D + e] = (float)(o / sum);
                }
            }
        }
    CHECK_REL(out, ref, (size_t)n_new * QW, 1e-5);
    /* batch invariance: each sequence alone gives the same bits */
    for (int s = 0; s < S; s++) {
        int32_t z = 0;
        float *o1 = malloc((size_t)ql[s] * QW * 4);
        gllm_paged_attn_args a1 = a;
        a1.n_seq = 1;
        a1.q_start = &z;
        a1.q_len = &ql[s];
        a1.ctx_len = &cl[s];
        a1.block_table = table + (size_t)s * maxb;
        a1.n_tokens = ql[s];
        CHECK_OK(be->attention_paged(be, o1, q + (size_t)qs[s] * W, &kv, &a1));
        CHECK_MSG(memcmp(o1, out + (size_t)qs[s] * QW, (size_t)ql[s] * QW * 4) == 0,
                  "sequence %d alone differs from the batch", s);
        free(o1);
    }
    int32_t bad_len[16];
    memcpy(bad_len, ql, sizeof bad_len);
    bad_len[0] = L[0] + 1;
    a.q_len = bad_len;
    CHECK_ERR(be->attention_paged(be, out, q, &kv, &a), GLLM_ERR_INVALID, "q_len");
    free(ctx), free(table), free(slots), free(perm), free(K), free(V), free(q), free(out),
        free(ref);
}

static gllm_sample_params sp_default(void)
{
    return (gllm_sample_params){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                                .repetition_penalty = 1, .n_top = 0, .seed = 0};
}

static void test_sample_rows(gllm_backend *be)
{
    enum { V = 6, R = 20000 };
    static const float p[V] = {0.05f, 0.3f, 0.1f, 0.3f, 0.15f, 0.1f};
    float *logits = malloc((size_t)R * V * 4);
    gllm_sample_params *sp = malloc(R * sizeof *sp);
    int32_t *ids = malloc(R * 4), *tid = malloc((size_t)R * 3 * 4);
    float *lp = malloc(R * 4), *tlp = malloc((size_t)R * 3 * 4);
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            logits[r * V + v] = logf(p[v]) + 2.0f;

    t_case = "sample_rows greedy: ties to the lowest id, logprob and top-3";
    sp[0] = sp_default();
    sp[0].n_top = 3;
    CHECK_OK(be->sample_rows(be, ids, lp, tid, tlp, 3, logits, 1, V, sp, NULL, NULL));
    CHECK(ids[0] == 1 && fabsf(lp[0] - logf(0.3f)) < 1e-5f);
    CHECK(tid[0] == 1 && tid[1] == 3 && tid[2] == 4 && tlp[0] == lp[0] &&
          fabsf(tlp[2] - logf(0.15f)) < 1e-5f);

    t_case = "sample_rows: per-row parameters, frequencies and kept sets";
    /* rows cycle through: plain T=1, top-k 2, top-p 0.7, min-p 0.5, T=0.5 */
    for (int r = 0; r < R; r++) {
        sp[r] = sp_default();
        sp[r].seed = test_rand_u64();
        sp[r].temperature = r % 5 == 4 ? 0.5f : 1.0f;
        if (r % 5 == 1)
            sp[r].top_k = 2;
        if (r % 5 == 2)
            sp[r].top_p = 0.7f;
        if (r % 5 == 3)
            sp[r].min_p = 0.5f;
    }
    CHECK_OK(be->sample_rows(be, ids, lp, NULL, NULL, 0, logits, R, V, sp, NULL, NULL));
    double want[5][V], tot[5] = {0};
    for (int k = 0; k < 5; k++)
        for (int v = 0; v < V; v++) {
            double q = k == 4 ? (double)p[v] * p[v] : p[v];
            if (k == 1 && v != 1 && v != 3)
                q = 0;
            if (k == 2 && v != 1 && v != 3 && v != 4) /* 0.3 + 0.3 + 0.15 >= 0.7 */
                q = 0;
            if (k == 3 && p[v] < 0.5f * 0.3f) /* min_p: p >= 0.15 */
                q = 0;
            want[k][v] = q;
            tot[k] += q;
        }
    int cnt[5][V];
    memset(cnt, 0, sizeof cnt);
    for (int r = 0; r < R; r++)
        cnt[r % 5][ids[r]]++;
    for (int k = 0; k < 5; k++) {
        double chi = 0;
        int df = -1;
        for (int v = 0; v < V; v++) {
            const double ex = want[k][v] / tot[k] * (R / 5);
            if (ex == 0) {
                CHECK_MSG(cnt[k][v] == 0, "kind %d: id %d drawn %d times outside the kept set",
                          k, v, cnt[k][v]);
                continue;
            }
            chi += (cnt[k][v] - ex) * (cnt[k][v] - ex) / ex;
            df++;
        }
        /* critical values at false-failure rate 1e-6 for df 1..5 */
        static const double crit[6] = {0, 23.93, 27.63, 30.66, 33.38, 35.89};
        CHECK_MSG(chi <= crit[df], "kind %d: chi-square %.1f > %.1f (df %d)", k, chi, crit[df],
                  df);
    }
    /* a row alone gives the same id as inside the batch */
    for (int r = 0; r < 50; r++) {
        int32_t one;
        CHECK_OK(be->sample_rows(be, &one, NULL, NULL, NULL, 0, logits + (size_t)r * V, 1, V,
                                 &sp[r], NULL, NULL));
        CHECK(one == ids[r]);
    }

    t_case = "sample_rows: repetition penalty (HF semantics)";
    float row[4] = {2.0f, 1.9f, -1.0f, -1.2f};
    int32_t pen[3] = {0, 0, 2}, pen_off[2] = {0, 3};
    gllm_sample_params g = sp_default();
    g.repetition_penalty = 1.5f; /* 2.0 -> 1.333, -1.0 -> -1.5: id 1 wins */
    CHECK_OK(be->sample_rows(be, ids, lp, NULL, NULL, 0, row, 1, 4, &g, pen, pen_off));
    CHECK(ids[0] == 1);
    g.repetition_penalty = 0.5f; /* < 1 favours repeats */
    int32_t pen2[1] = {3}, off2[2] = {0, 1};
    CHECK_OK(be->sample_rows(be, ids, lp, NULL, NULL, 0, row, 1, 4, &g, pen2, off2));
    CHECK(ids[0] == 0);
    g.repetition_penalty = 0.25f; /* -1.2 * 0.25 = -0.3, still below 2.0 */
    CHECK_OK(be->sample_rows(be, ids, lp, NULL, NULL, 0, row, 1, 4, &g, pen2, off2));
    CHECK(ids[0] == 0);

    t_case = "sample_rows: top-n on a large vocabulary equals a full sort";
    enum { VB = 5003 };
    float *big = rnd(VB, 4.0f);
    big[17] = big[4000]; /* a tie */
    gllm_sample_params t20 = sp_default();
    t20.n_top = 20;
    int32_t bid[20];
    float blp[20];
    CHECK_OK(be->sample_rows(be, ids, lp, bid, blp, 20, big, 1, VB, &t20, NULL, NULL));
    int32_t *order = malloc(VB * 4);
    for (int i = 0; i < VB; i++)
        order[i] = i;
    for (int i = 0; i < 20; i++) /* selection sort of the first 20 */
        for (int j = i + 1; j < VB; j++)
            if (big[order[j]] > big[order[i]] ||
                (big[order[j]] == big[order[i]] && order[j] < order[i])) {
                int x = order[i];
                order[i] = order[j];
                order[j] = x;
            }
    CHECK(memcmp(bid, order, 20 * 4) == 0 && ids[0] == order[0]);
    double lse = 0;
    for (int i = 0; i < VB; i++)
        lse += exp((double)big[i] - big[order[0]]);
    lse = log(lse) + big[order[0]];
    CHECK(fabs(blp[5] - (big[order[5]] - lse)) < 1e-5);

    t_case = "sample_rows: out-of-range parameters are refused";
    gllm_sample_params badp = sp_default();
    badp.top_p = 0;
    CHECK_ERR(be->sample_rows(be, ids, lp, NULL, NULL, 0, row, 1, 4, &badp, NULL, NULL),
              GLLM_ERR_INVALID, "row 0");
    free(order), free(big), free(logits), free(sp), free(ids), free(tid), free(lp), free(tlp);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_seed();
    gllm_backend *be = NULL;
    CHECK_OK(gllm_backend_cpu_create(0, &be));
    if (!be)
        return test_summary();
    /* groups of 1..4 (the kernel's constant head counts), 5 and 9 (split into
     * tasks of 5 and 3 heads); head sizes with and without 8- and 16-lane tails */
    static const pa_case cases[] = {{6, 4, 2, 8, 0, 4},    {5, 3, 1, 8, 7, 16},
                                    {4, 2, 2, 16, 1, 3},   {7, 6, 2, 5, 0, 2},
                                    {4, 8, 2, 64, 5, 16},  {5, 10, 2, 24, 0, 16},
                                    {3, 9, 1, 27, 0, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_paged_attention(be, &cases[i]);
    test_sample_rows(be);
    be->destroy(be);
    return test_summary();
}
