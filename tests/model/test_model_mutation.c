/* Proof that the parity checks can fail: the CPU backend with one op broken
 * on purpose must push the measured error past the parity tolerance, while
 * the untouched quantities stay within it. */
#include "parity.h"

static gllm_backend g_orig; /* the real CPU table */

/* RoPE on the first half of each head only (the wrong half left unrotated) */
static gllm_status rope_half_fwd(gllm_backend *be, void *x, const int32_t *pos,
                                 const gllm_rope_args *a)
{
    gllm_rope_args b = *a;
    b.rot_dim = a->rot_dim / 2;
    (void)be;
    return g_orig.rope_fwd(&g_orig, x, pos, &b);
}

/* every weight gradient scaled by 2 */
static gllm_status matmul_grad_x2(gllm_backend *be, void *C, const void *A, const void *B,
                                  const gllm_matmul_args *a)
{
    gllm_matmul_args b = *a;
    if (b.c_f32)
        b.alpha *= 2.0f;
    (void)be;
    return g_orig.matmul(&g_orig, C, A, B, &b);
}

/* attention that ignores document boundaries inside packed rows */
static int32_t g_flat_pos[1 << 16];
static gllm_status attention_no_docs(gllm_backend *be, void *out, float *lse, const void *qkv,
                                     const int32_t *pos, const gllm_attn_shape *s)
{
    (void)be;
    (void)pos;
    for (int i = 0; i < s->B * s->T && i < (1 << 16); i++)
        g_flat_pos[i] = i % s->T;
    return g_orig.attention_fwd(&g_orig, out, lse, qkv, g_flat_pos, s);
}

/* AdamW without bias correction of the second moment */
static gllm_status adamw_no_v_correction(gllm_backend *be, void *params, float *master,
                                         const float *grads, float *m, float *v,
                                         const gllm_param_segment *segs, int n_segs,
                                         const gllm_adamw_args *a)
{
    (void)be;
    gllm_adamw_args b = *a;
    /* folding sqrt(1 - beta2^t) into lr undoes the correction of v */
    b.lr = a->lr / sqrtf(1.0f - powf(a->beta2, (float)a->step));
    return g_orig.adamw(&g_orig, params, master, grads, m, v, segs, n_segs, &b);
}

int main(void)
{
    gllm_backend *cpu;
    if (gllm_backend_cpu_create(0, &cpu) != GLLM_OK) {
        printf("cpu backend: %s\n", gllm_last_error());
        return 1;
    }
    g_orig = *cpu;
    parity_result r;

    TEST_CASE("rope on the wrong half is caught (llama3)")
    {
        gllm_backend bad = g_orig;
        bad.rope_fwd = rope_half_fwd;
        parity_run(&bad, "llama3", &r);
        printf("rope-half: logits %.2e grad %.2e\n", r.logits_err, r.grad_err);
        CHECK(r.ok);
        CHECK(r.logits_err > 1e-4);
    }
    TEST_CASE("gradients scaled by 2 are caught (gpt2), logits unaffected")
    {
        gllm_backend bad = g_orig;
        bad.matmul = matmul_grad_x2;
        parity_run(&bad, "gpt2", &r);
        printf("grad-x2: logits %.2e grad %.2e (%s)\n", r.logits_err, r.grad_err, r.grad_worst);
        CHECK(r.ok);
        CHECK(r.logits_err < 1e-4);
        CHECK(r.grad_err > 1e-3);
    }
    TEST_CASE("attention across packed documents is caught (qwen2)")
    {
        gllm_backend bad = g_orig;
        bad.attention_fwd = attention_no_docs;
        parity_run(&bad, "qwen2", &r);
        printf("no-doc-boundaries: logits %.2e\n", r.logits_err);
        CHECK(r.ok);
        CHECK(r.logits_err > 1e-4);
    }
    TEST_CASE("AdamW without the second-moment bias correction is caught (mistral)")
    {
        gllm_backend bad = g_orig;
        bad.adamw = adamw_no_v_correction;
        parity_run(&bad, "mistral", &r);
        printf("adamw-no-v-correction: adamw %.2e\n", r.adamw_err);
        CHECK(r.ok);
        CHECK(r.grad_err < 1e-3);
        CHECK(r.adamw_err > 1e-5);
    }
    TEST_CASE("the unbroken backend passes (control)")
    {
        parity_run(cpu, "qwen2", &r);
        CHECK(r.ok && r.logits_err < 1e-4 && r.grad_err < 1e-3);
    }
    cpu->destroy(cpu);
    return test_summary();
}
