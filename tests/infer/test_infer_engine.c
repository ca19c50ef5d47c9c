/* The engine's scheduling properties:
 *  - batch invariance: 64 mixed requests (greedy, seeded sampling with every
 *    filter, n > 1, logprobs, scoring) behind shared prefixes give bit-identical
 *    results run together as run one at a time, with prefix sharing on and off,
 *    two prefill chunk sizes, and a cache so small that sequences are preempted
 *    and recomputed (which must still finish every request);
 *  - prefix sharing really shares (cached tokens counted, fewer tokens computed);
 *  - seeded sampling follows the target distribution (chi-square test);
 *  - stop ids, eos, max_tokens, stop strings, and error results.
 * On the mistral fixture (sliding window) always, and on stories260K when
 * ../shared is present. */
#include <sys/stat.h>

#include "backend/cpu/cpu_internal.h"
#include "gllm/step.h"
#include "infer/infer_util.h"

typedef struct reqset {
    gllm_request q[64];
    int32_t *prompt[64];
    int32_t *cand[64][3];
    int cand_len[64][3];
    int n;
} reqset;

static int rnd(int n) { return (int)(test_rand_u64() % (uint64_t)n); }

static void make_requests(reqset *rs, int V, const int *prefix_len, int n_prefix, int max_suffix,
                          int max_new)
{
    int32_t *prefix[8];
    for (int p = 0; p < n_prefix; p++) {
        prefix[p] = malloc((size_t)(prefix_len[p] + 1) * 4);
        for (int i = 0; i < prefix_len[p]; i++)
            prefix[p][i] = 3 + rnd(V - 3);
    }
    rs->n = 64;
    for (int k = 0; k < 64; k++) {
        const int p = k % n_prefix, suf = 1 + rnd(max_suffix), L = prefix_len[p] + suf;
        int32_t *ids = malloc((size_t)L * 4);
        memcpy(ids, prefix[p], (size_t)prefix_len[p] * 4);
        for (int i = prefix_len[p]; i < L; i++)
            ids[i] = 3 + rnd(V - 3);
        rs->prompt[k] = ids;
        gllm_request *q = &rs->q[k];
        *q = (gllm_request){.prompt = ids, .n_prompt = L, .sampling = gllm_sampling_default(),
                            .max_tokens = 1 + rnd(max_new), .n = 1, .ignore_eos = k % 3 != 0};
        switch (k % 8) {
        case 0: case 1: case 2: /* greedy */
            q->logprobs = k % 2 == 0;
            break;
        case 3:
            q->sampling.temperature = 0.9f;
            q->sampling.seed = 1000 + (uint64_t)k;
            q->logprobs = true;
            q->top_logprobs = 4;
            break;
        case 4:
            q->sampling = (gllm_sampling){.temperature = 1.2f, .top_k = 20, .top_p = 0.8f,
                                          .min_p = 0.02f, .repetition_penalty = 1.3f,
                                          .seed = 7 + (uint64_t)k};
            q->n = 3;
            break;
        case 5:
            q->sampling = (gllm_sampling){.temperature = 0.7f, .top_k = 0, .top_p = 0.95f,
                                          .min_p = 0.0f, .repetition_penalty = 0.8f,
                                          .seed = (uint64_t)k * 31};
            q->n = 2;
            q->logprobs = true;
            break;
        case 6: { /* scoring */
            for (int j = 0; j < 3; j++) {
                rs->cand_len[k][j] = 1 + rnd(5);
                rs->cand[k][j] = malloc((size_t)rs->cand_len[k][j] * 4);
                for (int i = 0; i < rs->cand_len[k][j]; i++)
                    rs->cand[k][j][i] = rnd(V);
            }
            q->candidates = (const int32_t *const *)rs->cand[k];
            q->candidate_len = rs->cand_len[k];
            q->n_candidates = 3;
            break;
        }
        default: /* greedy with repetition penalty, stop ids */
            q->sampling.repetition_penalty = 1.5f;
            q->stop_ids = &rs->prompt[k][L - 1];
            q->n_stop_ids = 1;
            break;
        }
    }
    for (int p = 0; p < n_prefix; p++)
        free(prefix[p]);
}

static void free_requests(reqset *rs)
{
    for (int k = 0; k < rs->n; k++) {
        free(rs->prompt[k]);
        for (int j = 0; j < 3; j++)
            free(rs->cand[k][j]);
    }
}

static void free_results(gllm_result *r, int n)
{
    for (int i = 0; i < n; i++)
        gllm_result_free(&r[i]);
}

static void invariance(gllm_model *m, const char *name, const int *prefix_len, int n_prefix,
                       int max_suffix, int max_new, unsigned cfg_mask)
{
    char label[128];
    snprintf(label, sizeof label, "%s: batch invariance", name);
    t_case = label;
    const gllm_model_config *c = gllm_model_cfg(m);
    reqset rs;
    memset(&rs, 0, sizeof rs);
    make_requests(&rs, c->vocab_size, prefix_len, n_prefix, max_suffix, max_new);
    gllm_result alone[64], together[64];
    memset(alone, 0, sizeof alone);
    gllm_engine_options o = gllm_engine_options_default();
    o.prefix_sharing = false;
    for (int k = 0; k < 64; k++) {
        CHECK_OK(run_all(m, &o, &rs.q[k], 1, &alone[k], NULL));
        CHECK_MSG(alone[k].status == GLLM_OK, "request %d: %s", k, alone[k].error);
    }
    long max_len = 0;
    for (int k = 0; k < 64; k++) {
        long need = rs.q[k].n_prompt + rs.q[k].max_tokens + 6;
        max_len = need > max_len ? need : max_len;
    }
    const size_t block = 2ull * c->n_layers * 16 * c->n_kv_heads * c->head_dim * 4;
    static const struct {
        bool sharing;
        int chunk, max_seqs, max_tokens;
        int cache_blocks; /* 0 = default */
        int block_size;   /* 0 = default (4 on the CPU) */
    } cfgs[] = {
        {true, 0, 0, 0, 0, 0},    {false, 0, 0, 0, 0, 0}, {true, 7, 0, 0, 0, 0},
        {false, 13, 0, 64, 0, 0}, {true, 5, 16, 40, -1, 0}, {false, 0, 0, 0, -1, 0},
        {true, 0, 0, 0, 0, 16},   {true, 3, 0, 0, 0, 1},
    };
    long long tight_preemptions = 0;
    int tight_runs = 0;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        if (!(cfg_mask >> ci & 1))
            continue;
        gllm_engine_options oc = gllm_engine_options_default();
        oc.prefix_sharing = cfgs[ci].sharing;
        oc.prefill_chunk = cfgs[ci].chunk;
        oc.max_seqs = cfgs[ci].max_seqs;
        oc.max_batch_tokens = cfgs[ci].max_tokens;
        oc.block_size = cfgs[ci].block_size;
        int blocks = 0;
        if (cfgs[ci].cache_blocks < 0) { /* room for about two of the longest requests */
            blocks = (int)(2 * ((max_len + 15) / 16));
            oc.kv_bytes = (size_t)blocks * block;
        }
        gllm_engine_stats st;
        memset(together, 0, sizeof together);
        CHECK_OK(run_all(m, &oc, rs.q, 64, together, &st));
        int differ = 0;
        for (int k = 0; k < 64; k++)
            if (!same_result(&alone[k], &together[k])) {
                if (differ++ < 3) {
                    const gllm_result *a = &alone[k], *b = &together[k];
                    printf("  request %d (kind %d, prompt %d, n %d): status %d/%d", k, k % 8,
                           rs.q[k].n_prompt, rs.q[k].n, a->status, b->status);
                    for (int i = 0; i < a->n_samples && i < b->n_samples; i++) {
                        const gllm_sample_out *x = &a->samples[i], *y = &b->samples[i];
                        int t = 0;
                        while (t < x->n_ids && t < y->n_ids && x->ids[t] == y->ids[t])
                            t++;
                        printf(" | sample %d: %d vs %d ids, first difference at %d", i, x->n_ids,
                               y->n_ids, t);
                    }
                    printf("\n");
                }
            }
        CHECK_MSG(differ == 0, "config %zu (sharing %d, chunk %d, cache %d tokens, blocks of %d): "
                  "%d of 64 results differ from the request run alone", ci, cfgs[ci].sharing,
                  cfgs[ci].chunk, blocks * 16, st.block_size, differ);
        /* whether one tight configuration preempts depends on the random request
         * lengths (seed 4768014128580052253: config 5 admitted so that it never had
         * to); the tight configurations together must */
        if (cfgs[ci].cache_blocks < 0) {
            tight_runs++;
            tight_preemptions += st.preemptions;
        }
        if (cfgs[ci].sharing)
            CHECK_MSG(st.cached_tokens > 0, "prefix sharing found no cached tokens");
        else
            CHECK(st.cached_tokens == 0);
        printf("%s: config %zu sharing %d chunk %d cache %d tokens, blocks of %d: %d/64 differ, "
               "steps %lld, preemptions %lld, cached %lld of %lld prompt tokens\n",
               name, ci, cfgs[ci].sharing, cfgs[ci].chunk, blocks * 16, st.block_size, differ,
               (long long)st.steps,
               (long long)st.preemptions, (long long)st.cached_tokens,
               (long long)st.prompt_tokens);
        free_results(together, 64);
    }
    if (tight_runs > 0)
        CHECK_MSG(tight_preemptions > 0, "%d runs on a cache of room for two of the longest "
                  "requests never preempted", tight_runs);
    free_results(alone, 64);
    free_requests(&rs);
}

/* one-sided chi-square critical value at false-failure rate 1e-6 (Wilson-Hilferty) */
static double chi2_crit(int df)
{
    const double z = 4.753424; /* upper 1e-6 quantile of N(0,1) */
    const double a = 2.0 / (9.0 * df);
    return df * pow(1 - a + z * sqrt(a), 3);
}

/* Draw n samples of the first token with different seeds (one request, n
 * samples) and compare frequencies with the target distribution computed from
 * the model's logprobs (a scoring request over every id). */
static void sampling_distribution(gllm_model *m, const char *name, float temp, int top_k,
                                  float top_p, float min_p)
{
    char label[160];
    snprintf(label, sizeof label, "%s: sampling T=%g k=%d p=%g min_p=%g follows the target", name,
             (double)temp, top_k, (double)top_p, (double)min_p);
    t_case = label;
    const int V = gllm_model_cfg(m)->vocab_size, N = 4000;
    int32_t prompt[5] = {1, 5, 9, 13, 17};
    for (int i = 0; i < 5; i++)
        prompt[i] %= V;
    /* the model's distribution: every id scored as a one-token candidate */
    int32_t *ids = malloc((size_t)V * 4);
    int32_t **cands = malloc((size_t)V * sizeof *cands);
    int *lens = malloc((size_t)V * sizeof *lens);
    for (int v = 0; v < V; v++) {
        ids[v] = v;
        cands[v] = &ids[v];
        lens[v] = 1;
    }
    gllm_request qs = {.prompt = prompt, .n_prompt = 5, .candidates = (const int32_t *const *)cands,
                       .candidate_len = lens, .n_candidates = V};
    gllm_result rs;
    gllm_engine_options o = gllm_engine_options_default();
    CHECK_OK(run_all(m, &o, &qs, 1, &rs, NULL));
    double *p = calloc((size_t)V, sizeof *p);
    int *order = malloc((size_t)V * sizeof *order);
    double mx = -1e30;
    for (int v = 0; v < V; v++) {
        p[v] = rs.candidate_logprob[v] / temp;
        mx = p[v] > mx ? p[v] : mx;
        order[v] = v;
    }
    double tot = 0;
    for (int v = 0; v < V; v++)
        tot += (p[v] = exp(p[v] - mx));
    for (int v = 0; v < V; v++)
        p[v] /= tot;
    /* sort ids by probability (test side only), then apply top-k, top-p, min-p */
    for (int i = 1; i < V; i++) /* insertion sort: V is small */
        for (int j = i; j > 0 && (p[order[j]] > p[order[j - 1]] ||
                                  (p[order[j]] == p[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int keep = top_k > 0 && top_k < V ? top_k : V;
    if (top_p < 1) {
        double kept = 0, cum = 0;
        for (int i = 0; i < keep; i++)
            kept += p[order[i]];
        int i = 0;
        while (i < keep) {
            cum += p[order[i++]];
            if (cum >= top_p * kept)
                break;
        }
        keep = i;
    }
    double *target = calloc((size_t)V, sizeof *target), tk = 0;
    for (int i = 0; i < keep; i++)
        if (p[order[i]] >= min_p * p[order[0]])
            tk += (target[order[i]] = p[order[i]]);
    for (int v = 0; v < V; v++)
        target[v] /= tk;
    /* N samples of one token */
    gllm_request qg = {.prompt = prompt, .n_prompt = 5,
                       .sampling = {.temperature = temp, .top_k = top_k, .top_p = top_p,
                                    .min_p = min_p, .repetition_penalty = 1.0f, .seed = 99},
                       .max_tokens = 1, .n = N, .ignore_eos = true};
    gllm_result rg;
    CHECK_OK(run_all(m, &o, &qg, 1, &rg, NULL));
    int *count = calloc((size_t)V, sizeof *count), outside = 0;
    for (int i = 0; i < rg.n_samples; i++) {
        const int id = rg.samples[i].ids[0];
        count[id]++;
        outside += target[id] == 0;
    }
    CHECK_MSG(outside == 0, "%d samples outside the kept set", outside);
    /* chi-square over bins of expected count >= 5 (the rest pooled) */
    double chi = 0, pool_e = 0, pool_o = 0;
    int bins = 0;
    for (int v = 0; v < V; v++) {
        const double ex = target[v] * N;
        if (ex == 0)
            continue;
        if (ex >= 5) {
            chi += (count[v] - ex) * (count[v] - ex) / ex;
            bins++;
        } else {
            pool_e += ex;
            pool_o += count[v];
        }
    }
    if (pool_e > 0) {
        chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    }
    const int df = bins - 1;
    CHECK(df >= 1);
    const double crit = chi2_crit(df > 0 ? df : 1);
    CHECK_MSG(chi <= crit, "chi-square %.1f > %.1f (df %d, false-failure rate 1e-6)", chi, crit,
              df);
    printf("%s: chi-square %.1f (df %d, critical %.1f at 1e-6), kept %d ids\n", label, chi, df,
           crit, keep);
    /* a distribution that is wrong on purpose must fail the same test (the test can fail) */
    if (df >= 3) {
        double chi_bad = 0;
        for (int v = 0; v < V; v++) {
            const double ex = target[v] * N;
            if (ex >= 5) {
                const double o2 = v == order[0] ? count[v] * 0.9 : count[v];
                chi_bad += (o2 - ex) * (o2 - ex) / ex;
            }
        }
        CHECK_MSG(chi_bad > chi, "a 10%% deficit on the top id went unnoticed");
    }
    free(count);
    free(target);
    free(order);
    free(p);
    free(ids);
    free(cands);
    free(lens);
    gllm_result_free(&rs);
    gllm_result_free(&rg);
}

static void stops_and_errors(gllm_model *m, const char *name)
{
    char label[128];
    snprintf(label, sizeof label, "%s: stops, lengths and errors", name);
    t_case = label;
    const gllm_model_config *c = gllm_model_cfg(m);
    int32_t prompt[4] = {1, 4, 7, 9};
    gllm_request base = {.prompt = prompt, .n_prompt = 4, .sampling = gllm_sampling_default(),
                         .max_tokens = 10, .n = 1, .ignore_eos = true};
    gllm_result ref;
    gllm_engine_options o = gllm_engine_options_default();
    CHECK_OK(run_all(m, &o, &base, 1, &ref, NULL));
    CHECK(ref.samples[0].n_ids == 10 && ref.samples[0].finish == GLLM_FINISH_LENGTH);
    /* a stop id at the 4th generated token ends the sample there, id included */
    gllm_request q[6];
    for (int i = 0; i < 6; i++)
        q[i] = base;
    int32_t stop = ref.samples[0].ids[3];
    int first = 0;
    while (ref.samples[0].ids[first] != stop)
        first++;
    q[0].stop_ids = &stop;
    q[0].n_stop_ids = 1;
    int32_t bad[2] = {1, c->vocab_size};
    q[1].prompt = bad;
    q[1].n_prompt = 2;
    q[2].max_tokens = c->max_pos; /* prompt + max_tokens past the context */
    q[3].top_logprobs = 21;
    q[4].max_tokens = 0;
    q[5].n_prompt = 0;
    gllm_result r[6];
    CHECK_OK(run_all(m, &o, q, 6, r, NULL));
    CHECK(r[0].status == GLLM_OK && r[0].samples[0].n_ids == first + 1 &&
          r[0].samples[0].finish == GLLM_FINISH_STOP &&
          memcmp(r[0].samples[0].ids, ref.samples[0].ids, (size_t)(first + 1) * 4) == 0);
    CHECK_MSG(r[1].status == GLLM_ERR_INVALID && strstr(r[1].error, "outside the vocabulary"),
              "%s", r[1].error);
    CHECK_MSG(r[2].status == GLLM_ERR_INVALID && strstr(r[2].error, "context"), "%s",
              r[2].error);
    CHECK_MSG(r[3].status == GLLM_ERR_INVALID && strstr(r[3].error, "top_logprobs"), "%s",
              r[3].error);
    CHECK(r[4].status == GLLM_OK && r[4].samples[0].n_ids == 0);
    CHECK_MSG(r[5].status == GLLM_ERR_INVALID && strstr(r[5].error, "empty"), "%s", r[5].error);
    /* eos ends a sample when not ignored */
    gllm_request qe = base;
    qe.ignore_eos = false;
    gllm_result re;
    const int eos = c->eos_id;
    CHECK_OK(run_all(m, &o, &qe, 1, &re, NULL));
    int eos_at = -1;
    for (int i = 0; i < ref.samples[0].n_ids && eos_at < 0; i++)
        if (ref.samples[0].ids[i] == eos)
            eos_at = i;
    if (eos_at >= 0)
        CHECK(re.samples[0].n_ids == eos_at + 1 && re.samples[0].finish == GLLM_FINISH_STOP);
    else
        CHECK(re.samples[0].n_ids == 10);
    /* a request larger than the whole cache gets an error result, the rest runs */
    gllm_engine_options small = o;
    small.kv_bytes = 2ull * c->n_layers * 16 * c->n_kv_heads * c->head_dim * 4 * 2; /* 2 blocks */
    gllm_request qb[2] = {base, base};
    qb[0].max_tokens = 40;
    qb[1].max_tokens = 5;
    gllm_result rb[2];
    CHECK_OK(run_all(m, &small, qb, 2, rb, NULL));
    CHECK_MSG(rb[0].status == GLLM_ERR_INVALID && strstr(rb[0].error, "blocks"), "%s",
              rb[0].error);
    CHECK(rb[1].status == GLLM_OK && rb[1].samples[0].n_ids == 5 &&
          memcmp(rb[1].samples[0].ids, ref.samples[0].ids, 5 * 4) == 0);
    gllm_result_free(&ref);
    gllm_result_free(&re);
    free_results(r, 6);
    free_results(rb, 2);
}

static void stop_strings(gllm_model *m, const char *dir)
{
    t_case = "stories260K: stop strings";
    gllm_tokenizer *tok = NULL;
    CHECK_OK(gllm_tok_load(dir, &tok));
    if (!tok)
        return;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(gllm_tok_encode(tok, "Once upon a time", 16, true, &ids, &n));
    gllm_request q = {.prompt = ids, .n_prompt = (int)n, .sampling = gllm_sampling_default(),
                      .max_tokens = 60, .n = 1, .ignore_eos = true};
    gllm_engine_options o = gllm_engine_options_default();
    o.tok = tok;
    gllm_result r0, r1;
    CHECK_OK(run_all(m, &o, &q, 1, &r0, NULL));
    const char *text = r0.samples[0].text;
    CHECK(text && strlen(text) > 20);
    /* stop at a word from the middle of the greedy text */
    char word[16] = {0};
    const char *mid = text ? strchr(text + strlen(text) / 2, ' ') : NULL;
    if (mid) {
        int k = 0;
        while (mid[k + 1] && mid[k + 1] != ' ' && k < 6) {
            word[k] = mid[k + 1];
            k++;
        }
        const char *stop[1] = {word};
        q.stop = stop;
        q.n_stop = 1;
        CHECK_OK(run_all(m, &o, &q, 1, &r1, NULL));
        const char *t1 = r1.samples[0].text;
        const char *at = strstr(text, word);
        CHECK_MSG(t1 && at && strlen(t1) == (size_t)(at - text) &&
                      strncmp(t1, text, strlen(t1)) == 0 &&
                      r1.samples[0].finish == GLLM_FINISH_STOP,
                  "stop '%s': got '%s'", word, t1 ? t1 : "(null)");
        gllm_result_free(&r1);
    }
    gllm_result_free(&r0);
    free(ids);
    gllm_tok_free(tok);
}

/* SentencePiece: the first generated id "▁there" reads " there" after the
 * prompt. The result text keeps that space (prompt text + result text is the
 * decoding of prompt + result ids), and a stop string that begins with it
 * matches at the first token. */
static void stop_after_leading_space(gllm_model *m, const char *dir)
{
    t_case = "stories260K: stop strings and text keep SentencePiece's leading space";
    gllm_tokenizer *tok = NULL;
    CHECK_OK(gllm_tok_load(dir, &tok));
    if (!tok)
        return;
    static const char *const prompts[] = {"Once upon a time,", "Lily and Tom", "The cat sat on the",
                                          "One day, a little girl"};
    gllm_engine_options o = gllm_engine_options_default();
    o.tok = tok;
    bool found = false;
    for (size_t pi = 0; pi < sizeof prompts / sizeof *prompts && !found; pi++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(gllm_tok_encode(tok, prompts[pi], strlen(prompts[pi]), true, &ids, &n));
        gllm_request q = {.prompt = ids, .n_prompt = (int)n, .sampling = gllm_sampling_default(),
                          .max_tokens = 24, .n = 1, .ignore_eos = true};
        gllm_result r0;
        CHECK_OK(run_all(m, &o, &q, 1, &r0, NULL));
        const gllm_sample_out *s0 = &r0.samples[0];
        const char *first = s0->n_ids > 0 ? gllm_tok_token_str(tok, s0->ids[0]) : NULL;
        if (!first || strncmp(first, "\xe2\x96\x81", 3) != 0 || !first[3]) {
            gllm_result_free(&r0);
            free(ids);
            continue;
        }
        found = true;
        /* prompt text + result text == decode(prompt + ids) */
        int32_t *both = malloc((n + (size_t)s0->n_ids) * sizeof *both);
        memcpy(both, ids, n * sizeof *both);
        memcpy(both + n, s0->ids, (size_t)s0->n_ids * sizeof *both);
        char *pt = NULL, *full = NULL;
        size_t pl = 0, fl = 0;
        CHECK_OK(gllm_tok_decode(tok, ids, n, true, &pt, &pl));
        CHECK_OK(gllm_tok_decode(tok, both, n + (size_t)s0->n_ids, true, &full, &fl));
        CHECK_MSG(s0->text && s0->text[0] == ' ' && fl >= pl && strcmp(full + pl, s0->text) == 0,
                  "'%s': text '%s', continuation '%s'", prompts[pi], s0->text ? s0->text : "",
                  full ? full + pl : "");
        /* " word" (the first token with its space) stops at once; "word" after the space */
        char stop_sp[64], stop_word[64];
        snprintf(stop_sp, sizeof stop_sp, " %s", first + 3);
        snprintf(stop_word, sizeof stop_word, "%s", first + 3);
        const char *const stops[2][1] = {{stop_sp}, {stop_word}};
        const char *const want[2] = {"", " "};
        for (int k = 0; k < 2; k++) {
            q.stop = stops[k];
            q.n_stop = 1;
            gllm_result r1;
            CHECK_OK(run_all(m, &o, &q, 1, &r1, NULL));
            const gllm_sample_out *s1 = &r1.samples[0];
            CHECK_MSG(s1->finish == GLLM_FINISH_STOP && s1->n_ids == 1 && s1->text &&
                          strcmp(s1->text, want[k]) == 0,
                      "'%s' + stop '%s': finish %d after %d ids, text '%s' (want '%s')",
                      prompts[pi], stops[k][0], (int)s1->finish, s1->n_ids,
                      s1->text ? s1->text : "(null)", want[k]);
            gllm_result_free(&r1);
        }
        free(pt);
        free(full);
        free(both);
        gllm_result_free(&r0);
        free(ids);
    }
    CHECK_MSG(found, "no prompt's greedy continuation starts with a U+2581 token: pick others");
    gllm_tok_free(tok);
}

/* The default KV budget. gllm_kv_budget_device's arithmetic on chosen numbers,
 * then the engine's choice on a CPU backend that reports itself as a device of
 * fake_total bytes, fake_used of them in use by others besides the backend's
 * own live allocations (the weights, and the step workspace: the engine must
 * ask after allocating it): the cache gets utilization * total - in use -
 * 256 MiB, or an error naming the option. */
static size_t fake_total, fake_used, live_at_query;
static gllm_status (*cpu_info)(gllm_backend *, gllm_device_info *);

static gllm_status fake_device_info(gllm_backend *be, gllm_device_info *out)
{
    GLLM_TRY(cpu_info(be, out));
    live_at_query = gllm_cpu_ctx_of(be)->mem_live;
    out->mem_total = fake_total;
    out->mem_free = fake_total - fake_used - live_at_query;
    return GLLM_OK;
}

static void kv_budget(gllm_model *m, const char *name)
{
    char label[128];
    snprintf(label, sizeof label, "%s: default KV budget", name);
    t_case = label;
    const size_t G = (size_t)1 << 30, M = (size_t)1 << 20;
    /* 80 GiB, 2 GiB in use: 0.9 * 80 - 2 - 0.25 = 69.75 GiB */
    CHECK(gllm_kv_budget_device(80 * G, 78 * G, 0.9, 256 * M) == 69 * G + 768 * M);
    CHECK(gllm_kv_budget_device(80 * G, 78 * G, 1.0, 0) == 78 * G);
    /* a share smaller than what is in use leaves nothing */
    CHECK(gllm_kv_budget_device(80 * G, 10 * G, 0.5, 256 * M) == 0);
    CHECK(gllm_kv_budget_device(80 * G, 78 * G, 0.0, 0) == 0);
    CHECK(gllm_kv_budget_device(10 * G, 11 * G, 0.9, 0) == 0); /* free > total: nonsense */
    gllm_backend *be = gllm_model_backend(m);
    const size_t bb = gllm_kv_block_bytes(m, 16);
    cpu_info = be->device_info;
    be->device_info = fake_device_info;
    fake_total = G;
    fake_used = 600 * M;
    gllm_engine_options o = gllm_engine_options_default();
    const float util[3] = {0.0f /* default 0.9 */, 1.0f, 0.95f};
    const size_t live0 = gllm_cpu_ctx_of(be)->mem_live;
    for (int k = 0; k < 3; k++) {
        o.gpu_memory_utilization = util[k];
        gllm_engine *e = NULL;
        CHECK_OK(gllm_engine_create(m, &o, &e));
        if (!e)
            continue;
        gllm_engine_stats st;
        gllm_engine_get_stats(e, &st);
        const double u = k == 0 ? 0.9 : util[k];
        const size_t want =
            gllm_kv_budget_device(G, G - fake_used - live_at_query, u, 256 * M) / bb;
        CHECK_MSG(live_at_query > live0, "device memory asked before the workspace was "
                  "allocated (%zu live bytes, %zu before the engine)", live_at_query, live0);
        CHECK_MSG((size_t)st.kv_blocks_total == want && want > 0,
                  "utilization %.2f: %d blocks of %zu bytes, want %zu", u, st.kv_blocks_total, bb,
                  want);
        CHECK_MSG(st.block_size == 16, "a device's default block is 16 tokens, not %d",
                  st.block_size);
        gllm_engine_free(e);
    }
    /* too small a share: refused, naming the option */
    o.gpu_memory_utilization = 0.5f;
    gllm_engine *e = NULL;
    gllm_status s = gllm_engine_create(m, &o, &e);
    CHECK_MSG(s != GLLM_OK && !e && strstr(gllm_last_error(), "gpu_memory_utilization 0.50"),
              "status %d: %s", (int)s, gllm_last_error());
    o.gpu_memory_utilization = 1.5f;
    s = gllm_engine_create(m, &o, &e);
    CHECK(s == GLLM_ERR_INVALID && !e && strstr(gllm_last_error(), "must be in (0, 1]"));
    /* kv_bytes given: used as is, whatever the device has */
    o = gllm_engine_options_default();
    o.kv_bytes = 7 * bb + bb / 2;
    CHECK_OK(gllm_engine_create(m, &o, &e));
    if (e) {
        gllm_engine_stats st;
        gllm_engine_get_stats(e, &st);
        CHECK(st.kv_blocks_total == 7);
        gllm_engine_free(e);
    }
    be->device_info = cpu_info;
    /* the CPU: blocks of 4 tokens, 1 GiB, capped at max_seqs full-context sequences */
    o = gllm_engine_options_default();
    o.max_seqs = 2;
    CHECK_OK(gllm_engine_create(m, &o, &e));
    if (e) {
        gllm_engine_stats st;
        gllm_engine_get_stats(e, &st);
        CHECK_MSG(st.block_size == 4, "the CPU's default block is 4 tokens, not %d",
                  st.block_size);
        const int bpseq = (gllm_model_cfg(m)->max_pos + 3) / 4;
        const long cap = 2L * bpseq + 1, gib = (long)(G / gllm_kv_block_bytes(m, 4));
        CHECK_MSG(st.kv_blocks_total == (cap < gib ? cap : gib), "%d blocks, cap %ld, 1 GiB %ld",
                  st.kv_blocks_total, cap, gib);
        gllm_engine_free(e);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_seed();
    gllm_backend *be = NULL;
    CHECK_OK(gllm_backend_cpu_create(2, &be)); /* two threads: the pool degrades gracefully on a loaded machine */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/mistral", GLLM_SOURCE_DIR);
    gllm_model *m = load_model(be, dir);
    CHECK(m != NULL);
    if (m) {
        static const int prefix[4] = {0, 16, 21, 35};
        invariance(m, "mistral fixture", prefix, 4, 12, 12, 0xff);
        sampling_distribution(m, "mistral fixture", 1.0f, 0, 1.0f, 0.0f);
        sampling_distribution(m, "mistral fixture", 0.7f, 30, 0.9f, 0.05f);
        stops_and_errors(m, "mistral fixture");
        kv_budget(m, "mistral fixture");
        gllm_model_free(m);
    }
    snprintf(dir, sizeof dir, "%s/assets/models/stories260K-hf", GLLM_SHARED_DIR);
    struct stat st;
    if (stat(dir, &st) == 0) {
        m = load_model(be, dir);
        CHECK(m != NULL);
        if (m) {
            /* configs 0 (sharing), 3 (no sharing, chunk 13), 4 (tiny cache, chunk 5) */
            static const int prefix[4] = {0, 32, 45, 80};
            invariance(m, "stories260K", prefix, 4, 40, 16, 0x59);
            sampling_distribution(m, "stories260K", 0.8f, 0, 0.95f, 0.0f);
            stop_strings(m, dir);
            stop_after_leading_space(m, dir);
            gllm_model_free(m);
        }
    } else {
        printf("SKIP stories260K parts: %s not found (../shared assets absent)\n", dir);
    }
    be->destroy(be);
    return test_summary();
}
