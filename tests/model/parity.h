/* Parity of gllm's model against the transformers reference fixtures: the
 * errors, measured (not checked) so the same code serves the parity test, the
 * GPU test and the mutation test that proves the checks can fail. */
#ifndef GLLM_TEST_PARITY_H
#define GLLM_TEST_PARITY_H

#include "fixture.h"

/* Without RoPE (GPT-2) key biases get an exactly zero gradient: adding a
 * constant to every key of a query's softmax leaves it unchanged. (With RoPE
 * the bias is rotated by the key's position, so Qwen2's is not degenerate.) Their computed gradients are
 * rounding noise in both implementations (so a relative error is noise over
 * noise) and AdamW turns that noise into +-lr steps. Those elements are
 * checked to be zero up to rounding instead: ||g|| <= 1e-6. Returns the
 * element range [lo, hi) of p that holds key biases, or lo == hi. */
static inline void key_bias_range(const gllm_param_info *p, size_t *lo, size_t *hi)
{
    const size_t n = strlen(p->name);
    *lo = *hi = 0;
    if (n > 11 && strcmp(p->name + n - 11, "c_attn.bias") == 0) {
        *lo = p->numel / 3; /* GPT-2 [q | k | v] */
        *hi = 2 * p->numel / 3;
    }
}

/* relative error over the elements not excluded, and the norm of the excluded ones */
static inline double rel_err_masked(const float *got, const float *want, size_t n,
                                    const unsigned char *excluded, double *excluded_norm)
{
    double e2 = 0, r2 = 0, in2 = 0;
    for (size_t i = 0; i < n; i++) {
        if (excluded[i]) {
            in2 += (double)got[i] * got[i] + (double)want[i] * want[i];
            continue;
        }
        double d = (double)got[i] - want[i];
        e2 += d * d;
        r2 += (double)want[i] * want[i];
    }
    if (excluded_norm)
        *excluded_norm = sqrt(in2);
    return r2 > 0 ? sqrt(e2 / r2) : (e2 > 0 ? INFINITY : 0);
}

/* AdamW divides each gradient element by its own running magnitude, so an
 * element whose gradient is near zero moves by about +-lr in a direction set
 * by rounding noise (torch against itself, with gradients perturbed by 1e-6
 * relative, differs by 3e-5..8e-3 after 3 steps at lr 1e-2). Elements whose
 * reference gradient is below 1e-3 of their tensor's RMS are left out of the
 * AdamW comparison; they are a handful per tensor and counted in the report.
 * Exact zeros stay in: both sides then apply weight decay alone. */
static inline size_t adamw_ill_conditioned(const float *g, size_t n, unsigned char *excluded)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    const double floor = 1e-3 * sqrt(ss / (double)(n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (g[i] != 0 && fabs(g[i]) < floor && !excluded[i]) {
            excluded[i] = 1;
            k++;
        }
    return k;
}

typedef struct parity_result {
    int ok;              /* fixtures found and every call succeeded */
    double logits_err;   /* max over batches of ||logits - ref|| / ||ref|| */
    double loss_err;     /* max over batches of |loss - ref| / |ref| */
    double grad_err;     /* max over batches and parameters */
    char grad_worst[128];
    double key_bias_grad; /* max norm of the (analytically zero) key-bias gradients */
    double adamw_err;    /* max over parameters after the AdamW steps */
    size_t adamw_excluded, adamw_total; /* ill-conditioned elements left out, of all */
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
                    size_t lo, hi;
                    double kb;
                    key_bias_range(p, &lo, &hi);
                    unsigned char *ex = calloc(p->numel, 1);
                    for (size_t j = lo; j < hi; j++)
                        ex[j] = 1;
                    double e = rel_err_masked(got, want, p->numel, ex, &kb);
                    free(ex);
                    r->key_bias_grad = fmax(r->key_bias_grad, kb);
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
            float *g0 = fixture_param_ref(ref, "b0.grad.", p);
            float *got = malloc(p->numel * sizeof(float));
            unsigned char *ex = calloc(p->numel, 1);
            if (!want || !g0 || gllm_model_read_param(m, p, got) != GLLM_OK) {
                ok = 0;
            } else {
                size_t lo, hi;
                key_bias_range(p, &lo, &hi);
                for (size_t j = lo; j < hi; j++)
                    ex[j] = 1;
                r->adamw_excluded += (hi - lo) + adamw_ill_conditioned(g0, p->numel, ex);
                r->adamw_total += p->numel;
                double e = rel_err_masked(got, want, p->numel, ex, NULL);
                if (getenv("GLLM_PARITY_VERBOSE"))
                    printf("  %s adamw %.2e\n", p->name, e);
                if (!(e <= r->adamw_err)) {
                    r->adamw_err = e;
                    snprintf(r->adamw_worst, sizeof r->adamw_worst, "%s", p->name);
                }
            }
            free(want);
            free(g0);
            free(got);
            free(ex);
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
