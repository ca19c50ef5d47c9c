/* Comparing two saved checkpoints tensor by tensor, shared by the training tests. */
#ifndef GLLM_TEST_CHECKPOINT_COMPARE_H
#define GLLM_TEST_CHECKPOINT_COMPARE_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/model.h"
#include "test_util.h"

/* worst relative difference over the tensors of two checkpoints; *bitwise
 * says whether every tensor is identical */
static double compare_checkpoints(const char *d1, const char *d2, bool *bitwise)
{
    gllm_backend *be;
    gllm_model *a = NULL, *b = NULL;
    double worst = INFINITY;
    *bitwise = false;
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK)
        return worst;
    if (gllm_model_load(d1, be, &a) == GLLM_OK && gllm_model_load(d2, be, &b) == GLLM_OK) {
        worst = 0;
        *bitwise = true;
        for (int i = 0; i < gllm_model_n_params(a); i++) {
            const gllm_param_info *p = gllm_model_param(a, i);
            float *x = malloc(p->numel * 4), *y = malloc(p->numel * 4);
            if (gllm_model_read_param(a, p, x) != GLLM_OK ||
                gllm_model_read_param(b, gllm_model_param(b, i), y) != GLLM_OK)
                worst = INFINITY;
            else
                worst = fmax(worst, rel_err(y, x, p->numel));
            *bitwise = *bitwise && memcmp(x, y, p->numel * 4) == 0;
            free(x);
            free(y);
        }
    } else {
        printf("%s\n", gllm_last_error());
    }
    gllm_model_free(a);
    gllm_model_free(b);
    be->destroy(be);
    return worst;
}

#endif
