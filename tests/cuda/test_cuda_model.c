/* Whole-model forward and backward on the CUDA backend against the CPU
 * reference, for every fixture architecture: logits, loss and every
 * parameter gradient within the bf16 tolerance, and bitwise identical across
 * two runs. Skips where no GPU is present.
 *
 * The tolerance is what bf16 itself costs on these models: PyTorch's own
 * model in bf16 against the same model in fp32, on the fixtures' unpacked
 * batches, differs by 0.86-1.35e-2 in the logits and by up to 1.6-4.7e-2 in
 * the worst parameter's gradient (llama3: 4.7e-2). The checks allow twice
 * that: 2.5e-2 and 1e-1. (The first bound, 1e-2, was set before any run; the
 * CUDA emulator showed it below what bf16 allows.) */
#include "model/fixture.h"

static double grads_err(gllm_model *gm, gllm_model *cm, char *worst, size_t wn)
{
    double e_max = 0;
    for (int i = 0; i < gllm_model_n_params(cm); i++) {
        const gllm_param_info *p = gllm_model_param(cm, i);
        float *a = malloc(p->numel * 4), *b = malloc(p->numel * 4);
        if (gllm_model_read_grad(gm, gllm_model_param(gm, i), a) == GLLM_OK &&
            gllm_model_read_grad(cm, p, b) == GLLM_OK) {
            /* GPT-2's key bias has an analytically zero gradient: skip it */
            size_t n = strlen(p->name);
            bool kbias = n > 11 && strcmp(p->name + n - 11, "c_attn.bias") == 0;
            double e = kbias ? 0 : rel_err(a, b, p->numel);
            if (e > e_max) {
                e_max = e;
                snprintf(worst, wn, "%s", p->name);
            }
        } else {
            e_max = INFINITY;
        }
        free(a);
        free(b);
    }
    return e_max;
}

int main(void)
{
    gllm_backend *gpu, *cpu;
    if (gllm_backend_cuda_create(0, &gpu) != GLLM_OK) {
        char why[2048];
        snprintf(why, sizeof why, "no CUDA backend: %s", gllm_last_error());
        test_skip(why);
    }
    if (gllm_backend_cpu_create(0, &cpu) != GLLM_OK)
        return 1;
    for (int a = 0; a < N_FIXTURE_ARCHS; a++) {
        TEST_CASE(k_fixture_archs[a])
        {
            char dir[1024], refpath[1100];
            fixture_dir(k_fixture_archs[a], dir, sizeof dir);
            snprintf(refpath, sizeof refpath, "%s/reference.safetensors", dir);
            gllm_safetensors *ref = NULL;
            gllm_model *gm = NULL, *cm = NULL;
            CHECK_OK(gllm_st_open(refpath, &ref));
            CHECK_OK(gllm_model_load(dir, gpu, &gm));
            CHECK_OK(gllm_model_load(dir, cpu, &cm));
            for (int k = 0; ref && gm && cm && k < 2; k++) {
                fixture_batch fb;
                CHECK(fixture_load_batch(ref, k, &fb));
                const size_t n = (size_t)fb.b.B * fb.b.T * gllm_model_cfg(cm)->vocab_size;
                float *lg = malloc(n * 4), *lc = malloc(n * 4), *lg2 = malloc(n * 4);
                float loss_g = 0, loss_c = 0, loss_g2 = 0;
                CHECK_OK(gllm_model_forward(gm, &fb.b, &loss_g, lg));
                CHECK_OK(gllm_model_forward(gm, &fb.b, &loss_g2, lg2));
                CHECK_OK(gllm_model_forward(cm, &fb.b, &loss_c, lc));
                const double le = rel_err(lg, lc, n);
                CHECK(le < 2.5e-2);
                CHECK(fabs(loss_g - loss_c) < 1e-2 * fabs(loss_c));
                CHECK_MSG(memcmp(lg, lg2, n * 4) == 0, "logits differ between two GPU runs");
                CHECK_OK(gllm_model_zero_grad(gm));
                CHECK_OK(gllm_model_zero_grad(cm));
                CHECK_OK(gllm_model_forward_backward(gm, &fb.b, 0.0f, &loss_g));
                CHECK_OK(gllm_model_forward_backward(cm, &fb.b, 0.0f, &loss_c));
                char worst[128] = "";
                const double ge = grads_err(gm, cm, worst, sizeof worst);
                printf("%-8s batch %d: logits %.2e  loss gpu %.5f cpu %.5f  grads %.2e (%s)\n",
                       k_fixture_archs[a], k, le, loss_g, loss_c, ge, worst);
                CHECK(ge < 1e-1);
                free(lg);
                free(lc);
                free(lg2);
                fixture_free_batch(&fb);
            }
            gllm_model_free(gm);
            gllm_model_free(cm);
            gllm_st_close(ref);
        }
    }
    cpu->destroy(cpu);
    gpu->destroy(gpu);
    return test_summary();
}
