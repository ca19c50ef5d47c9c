/* Logits of one sequence through gllm_model_forward, shared by the model tests
 * that compare every position's logits with another implementation. */
#ifndef GLLM_TEST_FORWARD_UTIL_H
#define GLLM_TEST_FORWARD_UTIL_H

#include <stdlib.h>

#include "gllm/batch.h"
#include "gllm/model.h"
#include "test_util.h"

/* ids[T] at positions 0..T-1 as one row: [T, V] floats (caller frees), or NULL
 * after a failed check (the forward's error counted and printed). */
static inline float *test_forward(gllm_model *m, const int32_t *ids, int T)
{
    const size_t V = (size_t)gllm_model_cfg(m)->vocab_size;
    int32_t *pos = malloc((size_t)T * sizeof *pos), *idc = malloc((size_t)T * sizeof *idc);
    float *out = malloc((size_t)T * V * sizeof(float));
    gllm_status s = pos && idc && out ? GLLM_OK : GLLM_ERR_OOM;
    for (int i = 0; s == GLLM_OK && i < T; i++) {
        pos[i] = i;
        idc[i] = ids[i];
    }
    if (s == GLLM_OK) {
        gllm_batch b = {.B = 1, .T = T, .ids = idc, .pos = pos};
        s = gllm_model_forward(m, &b, NULL, out);
    }
    CHECK_OK(s);
    free(pos);
    free(idc);
    if (s != GLLM_OK) {
        free(out);
        return NULL;
    }
    return out;
}

#endif
