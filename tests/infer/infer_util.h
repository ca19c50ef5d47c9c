/* Helpers of the engine tests: load a model, run a set of requests through an
 * engine to completion, results indexed by tag. */
#ifndef GLLM_TEST_INFER_UTIL_H
#define GLLM_TEST_INFER_UTIL_H

#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "gllm/infer.h"
#include "gllm/model.h"
#include "gllm/safetensors.h"
#include "test_util.h"

static inline gllm_model *load_model(gllm_backend *be, const char *dir)
{
    gllm_model *m = NULL;
    if (gllm_model_load(dir, be, &m) != GLLM_OK) {
        printf("load %s: %s\n", dir, gllm_last_error());
        return NULL;
    }
    return m;
}

/* Run n requests (tags 0..n-1) through one engine; out[tag] gets each result.
 * Returns the engine's final stats in *st (may be NULL). */
static inline gllm_status run_all(gllm_model *m, const gllm_engine_options *o, const gllm_request *q,
                           int n, gllm_result *out, gllm_engine_stats *st)
{
    gllm_engine *e = NULL;
    GLLM_TRY(gllm_engine_create(m, o, &e));
    gllm_status s = GLLM_OK;
    for (int i = 0; i < n && s == GLLM_OK; i++) {
        gllm_request r = q[i];
        r.tag = (uint64_t)i;
        s = gllm_engine_add(e, &r);
    }
    int got = 0;
    gllm_result buf[16];
    long guard = 0;
    while (s == GLLM_OK && got < n) {
        if (gllm_engine_pending(e) > 0)
            s = gllm_engine_step(e);
        int k;
        while ((k = gllm_engine_take(e, buf, 16)) > 0)
            for (int i = 0; i < k; i++) {
                out[buf[i].tag] = buf[i];
                got++;
            }
        if (++guard > 1000000) {
            s = gllm_fail(GLLM_ERR_INVALID, "engine did not finish");
            break;
        }
        if (gllm_engine_pending(e) == 0 && got < n) {
            s = gllm_fail(GLLM_ERR_INVALID, "engine idle with %d of %d results", got, n);
            break;
        }
    }
    if (st)
        gllm_engine_get_stats(e, st);
    gllm_engine_free(e);
    return s;
}

/* equal ids, finish and (when present) bitwise equal logprobs */
static inline bool same_result(const gllm_result *a, const gllm_result *b)
{
    if (a->status != b->status || a->n_samples != b->n_samples ||
        a->n_candidates != b->n_candidates)
        return false;
    for (int i = 0; i < a->n_samples; i++) {
        const gllm_sample_out *x = &a->samples[i], *y = &b->samples[i];
        if (x->n_ids != y->n_ids || x->finish != y->finish ||
            memcmp(x->ids, y->ids, (size_t)x->n_ids * sizeof *x->ids) != 0)
            return false;
        if ((x->logprobs != NULL) != (y->logprobs != NULL) ||
            (x->logprobs && memcmp(x->logprobs, y->logprobs, (size_t)x->n_ids * 4) != 0))
            return false;
    }
    for (int c = 0; c < a->n_candidates; c++)
        if (a->candidate_len[c] != b->candidate_len[c] ||
            memcmp(a->candidate_token_logprobs[c], b->candidate_token_logprobs[c],
                   (size_t)a->candidate_len[c] * 4) != 0)
            return false;
    return true;
}

#endif
