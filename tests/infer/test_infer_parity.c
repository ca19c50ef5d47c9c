/* The engine against transformers (tests/fixtures/infer, made by
 * scripts/make_infer_reference.py): greedy ids of model.generate exactly, and
 * scored candidate logprobs (log_softmax) within 1e-4, for every fixture
 * architecture and for the pretrained stories260K (skipped without ../shared).
 * All of one model's requests run in one engine, batched, with a small prefill
 * chunk so prompts are split over steps; the generated ids' own logprobs are
 * checked against the scores of the same ids. */
#include <sys/stat.h>

#include "infer/infer_util.h"

#define LP_TOL 1e-4

static void *tensor(const gllm_safetensors *ref, const char *name, int *n)
{
    const gllm_st_tensor *t = gllm_st_find(ref, name);
    if (!t)
        return NULL;
    void *p = malloc(t->nbytes ? t->nbytes : 4);
    memcpy(p, t->data, t->nbytes);
    *n = (int)(t->nbytes / 4);
    return p;
}

static void check_model(const char *name, const char *model_dir, const char *ref_path)
{
    t_case = name;
    gllm_backend *be = NULL;
    CHECK_OK(gllm_backend_cpu_create(2, &be)); /* two threads: the pool degrades gracefully on a loaded machine */
    gllm_model *m = load_model(be, model_dir);
    gllm_safetensors *ref = NULL;
    CHECK_OK(gllm_st_open(ref_path, &ref));
    CHECK(m != NULL);
    if (!m || !ref) {
        gllm_st_close(ref);
        be->destroy(be);
        return;
    }
    gllm_request q[16];
    int32_t *want[16] = {0}, *prompts[16] = {0}, *cands[16][3] = {{0}};
    float *lps[16][3] = {{0}};
    int n_want[16] = {0}, cand_len[16][3] = {{0}}, nq = 0, n_gen = 0;
    for (int k = 0; k < 8; k++) {
        char key[64];
        int L = 0;
        snprintf(key, sizeof key, "g%d.prompt", k);
        int32_t *p = tensor(ref, key, &L);
        if (!p)
            break;
        snprintf(key, sizeof key, "g%d.ids", k);
        want[nq] = tensor(ref, key, &n_want[nq]);
        prompts[nq] = p;
        q[nq] = (gllm_request){.prompt = p, .n_prompt = L, .sampling = gllm_sampling_default(),
                               .max_tokens = n_want[nq], .n = 1, .ignore_eos = true,
                               .logprobs = true, .top_logprobs = 3};
        nq++;
        n_gen++;
    }
    int n_score = 0;
    for (int k = 0; k < 8; k++) {
        char key[64];
        int L = 0;
        snprintf(key, sizeof key, "s%d.prompt", k);
        int32_t *p = tensor(ref, key, &L);
        if (!p)
            break;
        prompts[nq] = p;
        for (int j = 0; j < 3; j++) {
            int n = 0;
            snprintf(key, sizeof key, "s%d.cand%d", k, j);
            cands[nq][j] = tensor(ref, key, &cand_len[nq][j]);
            snprintf(key, sizeof key, "s%d.lp%d", k, j);
            lps[nq][j] = tensor(ref, key, &n);
        }
        q[nq] = (gllm_request){.prompt = p, .n_prompt = L,
                               .candidates = (const int32_t *const *)cands[nq],
                               .candidate_len = cand_len[nq], .n_candidates = 3};
        nq++;
        n_score++;
    }
    CHECK(n_gen >= 3 && n_score >= 2);
    gllm_engine_options o = gllm_engine_options_default();
    o.prefill_chunk = 5;
    gllm_result res[16];
    memset(res, 0, sizeof res);
    CHECK_OK(run_all(m, &o, q, nq, res, NULL));
    double worst = 0;
    for (int i = 0; i < nq; i++) {
        CHECK_MSG(res[i].status == GLLM_OK, "request %d: %s", i, res[i].error);
        if (res[i].status != GLLM_OK)
            continue;
        if (i < n_gen) {
            const gllm_sample_out *o1 = &res[i].samples[0];
            CHECK_MSG(o1->n_ids == n_want[i] &&
                          memcmp(o1->ids, want[i], (size_t)n_want[i] * 4) == 0,
                      "prompt %d: greedy ids differ from transformers", i);
            /* the chosen id is the top-1 of the top logprobs, with the same logprob */
            for (int t = 0; t < o1->n_ids; t++)
                CHECK(o1->top[(size_t)t * 3].id == o1->ids[t] &&
                      o1->top[(size_t)t * 3].logprob == o1->logprobs[t] &&
                      o1->top[(size_t)t * 3 + 1].logprob <= o1->logprobs[t]);
        } else {
            for (int j = 0; j < 3; j++) {
                double sum = 0;
                for (int t = 0; t < cand_len[i][j]; t++) {
                    const double d = fabs((double)res[i].candidate_token_logprobs[j][t] -
                                          lps[i][j][t]);
                    worst = d > worst ? d : worst;
                    sum += res[i].candidate_token_logprobs[j][t];
                }
                CHECK(fabs(sum - res[i].candidate_logprob[j]) < 1e-9);
            }
        }
    }
    CHECK_MSG(worst <= LP_TOL, "scored logprobs differ from transformers by %.2e", worst);
    printf("%-12s greedy %d prompts ids exact, scoring %d prompts x 3 candidates: max |dlogprob| "
           "%.2e\n", name, n_gen, n_score, worst);

    /* a generated id's logprob equals the score of the same id as a candidate */
    gllm_request q2[2];
    int32_t *cand0 = res[0].samples[0].ids;
    int len0 = res[0].samples[0].n_ids;
    const int32_t *cl[1] = {cand0};
    q2[0] = (gllm_request){.prompt = prompts[0], .n_prompt = q[0].n_prompt,
                           .candidates = cl, .candidate_len = &len0, .n_candidates = 1};
    gllm_result r2[1];
    CHECK_OK(run_all(m, &o, q2, 1, r2, NULL));
    double d = 0;
    for (int t = 0; t < len0; t++) {
        const double e = fabs((double)r2[0].candidate_token_logprobs[0][t] -
                              res[0].samples[0].logprobs[t]);
        d = e > d ? e : d;
    }
    CHECK_MSG(d <= 1e-5, "sampled logprobs and scored logprobs differ by %.2e", d);
    gllm_result_free(&r2[0]);

    for (int i = 0; i < nq; i++) {
        gllm_result_free(&res[i]);
        free(prompts[i]);
        free(want[i]);
        for (int j = 0; j < 3; j++) {
            free(cands[i][j]);
            free(lps[i][j]);
        }
    }
    gllm_st_close(ref);
    gllm_model_free(m);
    be->destroy(be);
}

static const char *const k_archs[] = {"gpt2", "llama2", "llama3", "qwen2", "mistral", "smollm"};

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++) {
        char dir[1024], ref[1024];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", GLLM_SOURCE_DIR, k_archs[i]);
        snprintf(ref, sizeof ref, "%s/tests/fixtures/infer/%s.safetensors", GLLM_SOURCE_DIR,
                 k_archs[i]);
        check_model(k_archs[i], dir, ref);
    }
    char dir[1024], ref[1024];
    snprintf(dir, sizeof dir, "%s/assets/models/stories260K-hf", GLLM_SHARED_DIR);
    snprintf(ref, sizeof ref, "%s/tests/fixtures/infer/stories260K.safetensors", GLLM_SOURCE_DIR);
    struct stat st;
    if (stat(dir, &st) == 0)
        check_model("stories260K", dir, ref);
    else
        printf("SKIP stories260K: %s not found (../shared assets absent)\n", dir);
    return test_summary();
}
