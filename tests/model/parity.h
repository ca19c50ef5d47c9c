/* Parity of gllm's model against the transformers reference fixtures: the
 * errors, measured (not checked) so the same code serves the parity test, the
 * GPU test and the mutation test that proves the checks can fail. */
#ifndef GLLM_TEST_PARITY_H
#define GLLM_TEST_PARITY_H

#include "fixture.h"

typedef struct parity_result {
    int ok;              /* fixtures found and every call succeeded */
    double logits_err;   /* max over batches of ||logits - ref|| / ||ref|| */
    double loss_err;     /* max over batches of |loss - ref| / |ref| */
    double grad_err;     /* max over batches and parameters */
    char grad_worst[128];
    double adamw_err;    /* max over parameters after the AdamW steps */
    char adamw_worst[128];
} parity_result;

static inline void parity_run(gllm_backend *be, const char *arch, parity_result *r)
{
    memset(r, 0, sizeof *r);
    char dir[1024], refpath[1100];
    fixture_dir(arch, dir, sizeof dir);
    snprintf(refpath, sizeof refpath, "%s/reference.safetensors", dir);
    gllm_safetensors *ref = NULL;
    gllm_model *m = NULL;
    if (gllm_st_open(refpath, &ref) != GLLM_OK || gllm_model_load(dir, be, &m) != GLLM_OK) {
        printf("%s: %s\n", arch, gllm_last_error());
        gllm_st_close(ref);
        return;
    }
    const gllm_model_config *c = gllm_model_cfg(m);
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
        fixture_batch fb;
        if (!fixture_load_batch(ref, k, &fb)) {
            ok = 0;
            break;
        }
        const size_t N = (size_t)fb.b.B * fb.b.T;
        float *logits = malloc(N * (size_t)c->vocab_size * sizeof(float));
        float loss = 0, loss2 = 0;
        ok = gllm_model_forward(m, &fb.b, &loss, logits) == GLLM_OK &&
             gllm_model_zero_grad(m) == GLLM_OK &&
             gllm_model_forward_backward(m, &fb.b, 0.0f, &loss2) == GLLM_OK;
        if (ok) {
            double le = rel_err(logits, fb.logits, N * (size_t)c->vocab_size);
            double lo = fabs((double)loss - fb.loss) / fabs(fb.loss);
            double lo2 = fabs((double)loss2 - fb.loss) / fabs(fb.loss);
            r->logits_err = fmax(r->logits_err, le);
            r->loss_err = fmax(r->loss_err, fmax(lo, lo2));
            char prefix[32];
            snprintf(prefix, sizeof prefix, "b%d.grad.", k);
            for (int i = 0; i < gllm_model_n_params(m); i++) {
                const gllm_param_info *p = gllm_model_param(m, i);
                float *want = fixture_param_ref(ref, prefix, p);
                float *got = malloc(p->numel * sizeof(float));
                if (!want || gllm_model_read_grad(m, p, got) != GLLM_OK) {
                    ok = 0;
                } else {
                    double e = rel_err(got, want, p->numel);
                    if (!(e <= r->grad_err)) {
                        r->grad_err = e;
                        snprintf(r->grad_worst, sizeof r->grad_worst, "%s", p->name);
                    }
                }
                free(want);
                free(got);
            }
        }
        free(logits);
        fixture_free_batch(&fb);
    }
    /* AdamW: from the initial weights, steps on batch 0 */
    fixture_batch fb;
    if (ok && fixture_load_batch(ref, 0, &fb)) {
        gllm_model_free(m);
        m = NULL;
        ok = gllm_model_load(dir, be, &m) == GLLM_OK;
        gllm_adamw_config h = {
            .lr = fixture_meta_f(ref, "lr", NAN), .beta1 = fixture_meta_f(ref, "beta1", NAN),
            .beta2 = fixture_meta_f(ref, "beta2", NAN), .eps = fixture_meta_f(ref, "eps", NAN),
            .weight_decay = fixture_meta_f(ref, "weight_decay", NAN),
            .max_grad_norm = fixture_meta_f(ref, "max_grad_norm", NAN)};
        const int steps = (int)fixture_meta_f(ref, "adamw_steps", 3);
        for (int s = 1; ok && s <= steps; s++) {
            float loss;
            ok = gllm_model_zero_grad(m) == GLLM_OK &&
                 gllm_model_forward_backward(m, &fb.b, 0.0f, &loss) == GLLM_OK &&
                 gllm_model_adamw_step(m, &h, s, NULL) == GLLM_OK;
        }
        for (int i = 0; ok && i < gllm_model_n_params(m); i++) {
            const gllm_param_info *p = gllm_model_param(m, i);
            float *want = fixture_param_ref(ref, "adamw.", p);
            float *got = malloc(p->numel * sizeof(float));
            if (!want || gllm_model_read_param(m, p, got) != GLLM_OK) {
                ok = 0;
            } else {
                double e = rel_err(got, want, p->numel);
                if (!(e <= r->adamw_err)) {
                    r->adamw_err = e;
                    snprintf(r->adamw_worst, sizeof r->adamw_worst, "%s", p->name);
                }
            }
            free(want);
            free(got);
        }
        fixture_free_batch(&fb);
    }
    if (!ok)
        printf("%s: parity run failed: %s\n", arch, gllm_last_error());
    r->ok = ok;
    gllm_model_free(m);
    gllm_st_close(ref);
}

#endif
