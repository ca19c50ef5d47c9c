/* Every op with a backward against central finite differences on the CPU
 * backend (gradient mode), then every op on every other backend against the
 * CPU one (reference mode), in the style of ggml's test-backend-ops; and on
 * every backend, the row-invariant matmul's batch invariance. */
#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "ops_cases.h"

/* fp32 central differences with step FD_H on O(1) inputs: truncation and
 * rounding each stay near 1e-4 relative, so 1e-2 catches any wrong term. */
#define FD_H 1e-2f
#define FD_TOL 1e-2
#define FD_COORDS 12
/* bf16 activations against the fp32 reference */
#define REF_TOL 1e-2

#define GQA(b, t, hq, hkv, d, w) {.B = b, .T = t, .Hq = hq, .Hkv = hkv, .D = d, .window = w, \
                                  .scale = 0.35355339f}

static const tcase CASES[] = {
    {OP_LINEAR, "linear", .M = 7, .N = 5, .K = 11},
    {OP_LINEAR, "linear+bias", .M = 13, .N = 9, .K = 6, .bias = true},
    {OP_LINEAR, "linear+bias+gelu", .M = 5, .N = 17, .K = 7, .bias = true, .gelu = true},
    {OP_LINEAR, "linear+residual", .M = 6, .N = 10, .K = 3, .residual = true},
    {OP_LINEAR, "linear+all", .M = 9, .N = 7, .K = 13, .bias = true, .gelu = true,
     .residual = true},
    /* the inference matmul: with AVX-512 12-row x 32-column tiles and k blocks
     * of 192, with AVX2 6 x 16 (cpu_gemm.c): 13 rows, 37 columns and K = 200
     * leave a partial tile and block on every side */
    {OP_LINEAR, "linear row-invariant", .M = 13, .N = 37, .K = 200, .rowinv = true},
    {OP_LINEAR, "linear row-invariant+all", .M = 25, .N = 70, .K = 9, .bias = true,
     .gelu = true, .residual = true, .rowinv = true},
    {OP_LINEAR, "linear packed weight", .M = 13, .N = 37, .K = 200, .packed = true},
    {OP_LINEAR, "linear packed weight+bias+residual", .M = 1, .N = 33, .K = 385, .bias = true,
     .residual = true, .packed = true},
    {OP_LAYERNORM, "layernorm", .M = 5, .N = 37},
    {OP_LAYERNORM, "layernorm C=3", .M = 11, .N = 3},
    {OP_RMSNORM, "rmsnorm", .M = 6, .N = 29},
    {OP_RMSNORM, "rmsnorm C=130", .M = 3, .N = 130},
    {OP_ROPE, "rope q heads", .M = 9, .heads = 3, .head_dim = 8, .rot_dim = 8, .col0 = 0,
     .row_stride = 40},
    {OP_ROPE, "rope k heads partial", .M = 7, .heads = 2, .head_dim = 10, .rot_dim = 6,
     .col0 = 30, .row_stride = 70},
    {OP_ATTENTION, "attention MHA", .as = GQA(2, 9, 3, 3, 8, 0)},
    {OP_ATTENTION, "attention GQA 4/2", .as = GQA(2, 13, 4, 2, 8, 0)},
    {OP_ATTENTION, "attention MQA 3/1 window 4", .as = GQA(1, 17, 3, 1, 8, 4)},
    {OP_ATTENTION, "attention GQA 6/2 window 1", .as = GQA(3, 5, 6, 2, 4, 1)},
    {OP_ATTENTION, "attention D=5 window 7", .as = GQA(2, 11, 2, 1, 5, 7)},
    {OP_PAGED_ATTN, "paged attention GQA 4/2, prefill chunks + decode", .as = GQA(5, 9, 4, 2, 8, 0)},
    {OP_PAGED_ATTN, "paged attention MQA 3/1 window 5", .as = GQA(4, 11, 3, 1, 8, 5)},
    {OP_PAGED_ATTN, "paged attention MHA D=16", .as = GQA(3, 6, 2, 2, 16, 0)},
    {OP_GELU, "gelu", .M = 131},
    {OP_SWIGLU, "swiglu", .M = 5, .N = 23},
    {OP_ADD, "add", .M = 101},
    {OP_EMBED, "embed", .M = 19, .N = 7, .K = 5},
    {OP_EMBED, "embed+wpe", .M = 23, .N = 9, .K = 6, .wpe = true},
    {OP_XENT, "xent", .M = 7, .N = 13},
    {OP_XENT, "xent V=301", .M = 4, .N = 301},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

/* Run the forward on `be` from host inputs; output to host (as f32). */
static gllm_status run_fwd(const inst *t, gllm_backend *be, float *const *in, float *out)
{
    pool pl = {.be = be};
    void *din[MAX_IN];
    gllm_status s = GLLM_OK;
    for (int i = 0; i < t->n_in; i++)
        din[i] = up_act(&pl, in[i], t->in_n[i]);
    void *dout = pool_alloc(&pl, t->out_n * (t->out_f32 ? 4 : act_size(be)));
    s = op_fwd(t, be, &pl, din, dout);
    if (s == GLLM_OK)
        s = t->out_f32 ? be->download(be, out, dout, t->out_n * 4)
                       : be->download_f32(be, out, dout, t->out_n);
    if (s == GLLM_OK)
        s = be->sync(be);
    pool_free(&pl);
    return s;
}

/* Run the backward for loss weights r; grads of diff inputs to host (as f32). */
static gllm_status run_bwd(const inst *t, gllm_backend *be, float *const *in, const float *r,
                           float **grad)
{
    pool pl = {.be = be};
    void *din[MAX_IN], *dg[MAX_IN] = {0};
    gllm_status s = GLLM_OK;
    for (int i = 0; i < t->n_in; i++) {
        din[i] = up_act(&pl, in[i], t->in_n[i]);
        if (t->diff[i])
            dg[i] = zeros(&pl, t->in_n[i] * (t->grad_f32[i] ? 4 : act_size(be)));
    }
    const void *dr = r ? up_act(&pl, r, t->out_n) : NULL;
    s = op_bwd(t, be, &pl, din, dr, dg);
    for (int i = 0; i < t->n_in && s == GLLM_OK; i++)
        if (t->diff[i])
            s = t->grad_f32[i] ? be->download(be, grad[i], dg[i], t->in_n[i] * 4)
                               : be->download_f32(be, grad[i], dg[i], t->in_n[i]);
    if (s == GLLM_OK)
        s = be->sync(be);
    pool_free(&pl);
    return s;
}

static double loss_of(const inst *t, gllm_backend *be, float *out, const float *r)
{
    if (run_fwd(t, be, t->in, out) != GLLM_OK)
        return NAN;
    double l = 0;
    for (size_t i = 0; i < t->out_n; i++)
        l += (double)out[i] * r[i];
    return l;
}

static float *loss_weights(const inst *t)
{
    float *r = new_filled(t->out_n, 1.0f);
    if (t->r_const)
        for (size_t i = 0; i < t->out_n; i++)
            r[i] = XENT_SCALE;
    return r;
}

/* Gradient of L = sum(out * R) from bwd against central differences at
 * FD_COORDS random coordinates plus one random direction, per input. */
static void gradient_mode(gllm_backend *cpu)
{
    for (int ci = 0; ci < N_CASES; ci++) {
        inst t;
        inst_make(&t, &CASES[ci]);
        t_case = CASES[ci].name;
        float *r = loss_weights(&t), *out = malloc(t.out_n * sizeof *out);
        float *grad[MAX_IN] = {0};
        for (int i = 0; i < t.n_in; i++)
            grad[i] = calloc(t.in_n[i], sizeof(float));
        CHECK_OK(run_bwd(&t, cpu, t.in, r, grad));
        for (int i = 0; i < t.n_in; i++) {
            if (!t.diff[i])
                continue;
            double an[FD_COORDS + 1], fd[FD_COORDS + 1], gnorm = 0;
            float *x = t.in[i];
            for (size_t j = 0; j < t.in_n[i]; j++)
                gnorm += (double)grad[i][j] * grad[i][j];
            CHECK_MSG(gnorm > 0, "input %d: the gradient is all zeros", i);
            for (int k = 0; k < FD_COORDS; k++) {
                size_t j = test_rand_u64() % t.in_n[i];
                float x0 = x[j];
                x[j] = x0 + FD_H;
                double lp = loss_of(&t, cpu, out, r);
                x[j] = x0 - FD_H;
                double lm = loss_of(&t, cpu, out, r);
                x[j] = x0;
                fd[k] = (lp - lm) / (2.0 * FD_H);
                an[k] = grad[i][j];
            }
            float *u = new_filled(t.in_n[i], 1.0f), *x0 = malloc(t.in_n[i] * sizeof *x0);
            memcpy(x0, x, t.in_n[i] * sizeof *x0);
            an[FD_COORDS] = 0;
            for (size_t j = 0; j < t.in_n[i]; j++) {
                an[FD_COORDS] += (double)grad[i][j] * u[j];
                x[j] = x0[j] + FD_H * u[j];
            }
            double lp = loss_of(&t, cpu, out, r);
            for (size_t j = 0; j < t.in_n[i]; j++)
                x[j] = x0[j] - FD_H * u[j];
            double lm = loss_of(&t, cpu, out, r);
            memcpy(x, x0, t.in_n[i] * sizeof *x0);
            fd[FD_COORDS] = (lp - lm) / (2.0 * FD_H);
            double num = 0, den = 0;
            for (int k = 0; k <= FD_COORDS; k++) {
                num += (an[k] - fd[k]) * (an[k] - fd[k]);
                den += fd[k] * fd[k];
            }
            double e = den > 0 ? sqrt(num / den) : sqrt(num);
            CHECK_MSG(e <= FD_TOL, "input %d: finite-difference rel err %.3e > %.0e", i, e,
                      FD_TOL);
            free(u);
            free(x0);
        }
        for (int i = 0; i < t.n_in; i++)
            free(grad[i]);
        free(r);
        free(out);
        inst_free(&t);
    }
}

/* Round host inputs to what `be` stores (its act_dtype) so both backends see
 * the same numbers and only the op's own error is measured. */
static void round_to(gllm_backend *be, float *x, size_t n)
{
    pool pl = {.be = be};
    void *d = up_act(&pl, x, n);
    if (d)
        be->download_f32(be, x, d, n);
    pool_free(&pl);
}

static void reference_mode(gllm_backend *cpu, gllm_backend *be)
{
    printf("reference mode: %s against cpu\n", be->name);
    for (int ci = 0; ci < N_CASES; ci++) {
        inst t;
        inst_make(&t, &CASES[ci]);
        t_case = CASES[ci].name;
        for (int i = 0; i < t.n_in; i++)
            round_to(be, t.in[i], t.in_n[i]);
        float *r = loss_weights(&t);
        round_to(be, r, t.out_n);
        float *o_ref = malloc(t.out_n * 4), *o = malloc(t.out_n * 4);
        CHECK_OK(run_fwd(&t, cpu, t.in, o_ref));
        CHECK_OK(run_fwd(&t, be, t.in, o));
        CHECK_REL(o, o_ref, t.out_n, REF_TOL);
        float *g_ref[MAX_IN] = {0}, *g[MAX_IN] = {0};
        for (int i = 0; i < t.n_in; i++) {
            g_ref[i] = calloc(t.in_n[i], 4);
            g[i] = calloc(t.in_n[i], 4);
        }
        CHECK_OK(run_bwd(&t, cpu, t.in, r, g_ref));
        CHECK_OK(run_bwd(&t, be, t.in, r, g));
        for (int i = 0; i < t.n_in; i++) {
            if (t.diff[i])
                CHECK_REL(g[i], g_ref[i], t.in_n[i], REF_TOL);
            free(g_ref[i]);
            free(g[i]);
        }
        free(o_ref);
        free(o);
        free(r);
        inst_free(&t);
    }
}

int main(void)
{
    test_seed();
    gllm_backend *cpu = NULL;
    CHECK_OK(gllm_backend_cpu_create(0, &cpu));
    if (!cpu)
        return test_summary();
    /* the row-invariant path this process runs, as benchmarks record it */
    const char *k = gllm_backend_cpu_rowinv_kernel(cpu), *force = getenv("GLLM_GEMM");
    printf("row-invariant matmul: %s\n", k);
    t_case = "gllm_backend_cpu_rowinv_kernel";
    if (force && strcmp(force, "off") == 0)
        CHECK_MSG(strncmp(k, "gllm sgemm", 10) != 0, "GLLM_GEMM=off, yet %s", k);
    else if (force && strcmp(force, "avx2") == 0)
        CHECK_MSG(strcmp(k, "gllm sgemm avx2") == 0 || strncmp(k, "gllm", 4) != 0,
                  "GLLM_GEMM=avx2, yet %s", k);
    CHECK(strcmp(gllm_backend_cpu_rowinv_kernel(NULL), "not a CPU backend") == 0);
    gradient_mode(cpu);
    check_matmul_rows(cpu);
    static const char *const others[] = {"cuda"};
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
        gllm_backend *be = NULL;
        if (gllm_backend_open(others[k], &be) != GLLM_OK) {
            printf("SKIP %s: %s\n", others[k], gllm_last_error());
            continue;
        }
        reference_mode(cpu, be);
        check_matmul_rows(be);
        be->destroy(be);
    }
    /* The plain-loop matmul runs the same comparison, so the reference loop is
     * exercised on every machine, with or without a GPU. */
    gllm_backend *loops = NULL;
    CHECK_OK(gllm_backend_cpu_create(0, &loops));
    if (loops) {
        if (gllm_backend_cpu_has_blas())
            CHECK_OK(gllm_backend_cpu_set_blas(loops, false));
        loops->name = "cpu (plain-loop matmul)";
        t_case = "gllm_backend_cpu_rowinv_kernel";
        CHECK(!gllm_backend_cpu_has_blas() ||
              strcmp(gllm_backend_cpu_rowinv_kernel(loops), "plain loops") == 0);
        reference_mode(cpu, loops);
        check_matmul_rows(loops);
        loops->destroy(loops);
    }
    cpu->destroy(cpu);
    return test_summary();
}
