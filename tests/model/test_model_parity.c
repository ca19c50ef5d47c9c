/* The CPU engine against Hugging Face transformers, per architecture:
 * logits and loss within 1e-4, every parameter gradient within 1e-3 (plain
 * and packed batches with loss masks), parameters after 3 AdamW steps with
 * clipping within 1e-5 (torch.optim.AdamW), leaving out the few elements whose
 * gradient is below 1e-3 of their tensor's RMS (see parity.h). */
#include "parity.h"

int main(void)
{
    gllm_backend *be;
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK) {
        printf("cpu backend: %s\n", gllm_last_error());
        return 1;
    }
    for (int a = 0; a < N_FIXTURE_ARCHS; a++) {
        TEST_CASE(k_fixture_archs[a])
        {
            parity_result r;
            parity_run(be, k_fixture_archs[a], &r);
            CHECK(r.ok);
            printf("%-8s logits %.2e  loss %.2e  grad %.2e (%s)  key-bias |g| %.1e  adamw %.2e "
                   "(%s; %zu of %zu ill-conditioned elements left out)\n",
                   k_fixture_archs[a], r.logits_err, r.loss_err, r.grad_err, r.grad_worst,
                   r.key_bias_grad, r.adamw_err, r.adamw_worst, r.adamw_excluded, r.adamw_total);
            CHECK(r.logits_err < 1e-4);
            CHECK(r.loss_err < 1e-4);
            CHECK(r.grad_err < 1e-3);
            CHECK(r.key_bias_grad < 1e-6);
            CHECK(r.adamw_err < 1e-5);
        }
    }
    be->destroy(be);
    return test_summary();
}
