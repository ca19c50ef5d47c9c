/* CUDA matmul against an fp64 host reference, the CPU backend and cuBLASLt, for
 * every path (auto, simple, mma, wgmma with either tile width, cuBLASLt), every
 * transpose, odd shapes, padded leading dimensions, batches, bias/GELU/residual,
 * fp32 accumulation, and operands that start off the 256-byte alignment
 * cuBLASLt assumes (after the same shape ran aligned, so a plan cached for it
 * would be reused). Outputs are poisoned first: NaN where the kernel must write,
 * a sentinel in the padding it must not touch. Skips without a GPU.
 *
 *   test_cuda_matmul            the suite above (small shapes, ctest)
 *   test_cuda_matmul --describe the device line alone ("wgmma on" when that path serves)
 *   test_cuda_matmul --large    training shapes up to M = N = K = 8192, all four
 *                               layouts, every path, aligned and offset operands:
 *                               each path against cuBLASLt on the whole output and
 *                               against an fp64 reference on sampled elements */
#include <stdbool.h>

#include "gllm/backend.h"
#include "gllm/cuda_bench.h"
#include "test_util.h"

typedef struct mm_case {
    int M, N, K;
    bool ta, tb;
    int pad;        /* added to every leading dimension */
    int batch;
    float alpha, beta;
    bool c_f32, bias, gelu, residual;
    int off;        /* A, B, C and residual start this many elements into their buffers */
} mm_case;

#define SENTINEL 1024.0f /* exact in bf16 */

typedef struct host_data {
    int lda, ldb, ldc;
    size_t sa, sb, sc; /* batch strides, elements */
    float *A, *B, *C0, *bias, *res;
    double *ref;      /* [batch][M][N] */
} host_data;

static double gelu64(double x)
{
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/* Round host values to what the device holds (bf16) by a trip through it. */
static void to_bf16(gllm_backend *gpu, float *x, size_t n)
{
    void *d;
    CHECK_OK(gpu->alloc(gpu, n * 2, "rounding buffer", &d));
    CHECK_OK(gpu->upload_f32(gpu, d, x, n));
    CHECK_OK(gpu->download_f32(gpu, x, d, n));
    gpu->free(gpu, d);
}

static void make_data(gllm_backend *gpu, const mm_case *c, host_data *h)
{
    int ra = c->ta ? c->K : c->M, ca = c->ta ? c->M : c->K;
    int rb = c->tb ? c->N : c->K, cb = c->tb ? c->K : c->N;
    h->lda = ca + c->pad, h->ldb = cb + c->pad, h->ldc = c->N + c->pad;
    h->sa = (size_t)ra * h->lda, h->sb = (size_t)rb * h->ldb, h->sc = (size_t)c->M * h->ldc;
    size_t na = h->sa * c->batch, nb = h->sb * c->batch, nc = h->sc * c->batch;
    h->A = malloc(na * 4), h->B = malloc(nb * 4), h->C0 = malloc(nc * 4);
    h->bias = malloc((size_t)c->N * 4), h->res = malloc(nc * 4);
    h->ref = malloc((size_t)c->batch * c->M * c->N * sizeof(double));
    test_fill(h->A, na, 1.0f);
    test_fill(h->B, nb, 1.0f);
    test_fill(h->bias, c->N, 0.5f);
    test_fill(h->res, nc, 1.0f);
    to_bf16(gpu, h->A, na);
    to_bf16(gpu, h->B, nb);
    to_bf16(gpu, h->bias, c->N);
    to_bf16(gpu, h->res, nc);
    /* C0: the accumulate-into value where beta != 0, else NaN; padding holds the sentinel */
    for (int b = 0; b < c->batch; b++)
        for (int m = 0; m < c->M; m++)
            for (int n = 0; n < h->ldc; n++)
                h->C0[b * h->sc + (size_t)m * h->ldc + n] =
                    n >= c->N ? SENTINEL : c->beta != 0.0f ? test_randf() : NAN;
    if (!c->c_f32 && c->beta != 0.0f)
        to_bf16(gpu, h->C0, nc);
    for (int b = 0; b < c->batch; b++)
        for (int m = 0; m < c->M; m++)
            for (int n = 0; n < c->N; n++) {
                double s = 0;
                for (int k = 0; k < c->K; k++) {
                    double av = c->ta ? h->A[b * h->sa + (size_t)k * h->lda + m]
                                      : h->A[b * h->sa + (size_t)m * h->lda + k];
                    double bv = c->tb ? h->B[b * h->sb + (size_t)n * h->ldb + k]
                                      : h->B[b * h->sb + (size_t)k * h->ldb + n];
                    s += av * bv;
                }
                size_t ci = b * h->sc + (size_t)m * h->ldc + n;
                double v = c->alpha * s;
                if (c->beta != 0.0f)
                    v += c->beta * (double)h->C0[ci];
                if (c->bias)
                    v += h->bias[n];
                if (c->gelu)
                    v = gelu64(v);
                if (c->residual)
                    v += h->res[ci];
                h->ref[((size_t)b * c->M + m) * c->N + n] = v;
            }
}

static void free_data(host_data *h)
{
    free(h->A), free(h->B), free(h->C0), free(h->bias), free(h->res), free(h->ref);
}

static gllm_matmul_args case_args(const mm_case *c, const host_data *h)
{
    gllm_matmul_args a;
    memset(&a, 0, sizeof a);
    a.M = c->M, a.N = c->N, a.K = c->K, a.trans_a = c->ta, a.trans_b = c->tb;
    a.lda = h->lda, a.ldb = h->ldb, a.ldc = h->ldc;
    a.alpha = c->alpha, a.beta = c->beta, a.c_f32 = c->c_f32;
    a.epilogue = c->gelu ? GLLM_EPI_GELU : GLLM_EPI_NONE;
    a.batch = c->batch;
    a.stride_a = (int64_t)h->sa, a.stride_b = (int64_t)h->sb, a.stride_c = (int64_t)h->sc;
    return a;
}

/* Run the case on backend `be` (path < 0: be->matmul, else a CUDA path) and
 * download the full C buffer (padding included) into out. Returns the status. */
static gllm_status run_case(gllm_backend *be, int path, const mm_case *c, const host_data *h,
                            float *out)
{
    size_t na = h->sa * c->batch, nb = h->sb * c->batch, nc = h->sc * c->batch;
    bool dev = be->act_dtype != GLLM_F32;
    size_t ae = dev ? 2 : 4, ce = c->c_f32 || !dev ? 4 : 2, off = (size_t)c->off;
    void *A0, *B0, *C0, *R0 = NULL, *A, *B, *C, *bias = NULL, *res = NULL;
    CHECK_OK(be->alloc(be, (na + off) * ae, "A", &A0));
    CHECK_OK(be->alloc(be, (nb + off) * ae, "B", &B0));
    CHECK_OK(be->alloc(be, (nc + off) * ce, "C", &C0));
    A = (char *)A0 + off * ae, B = (char *)B0 + off * ae, C = (char *)C0 + off * ce;
    CHECK_OK(be->upload_f32(be, A, h->A, na));
    CHECK_OK(be->upload_f32(be, B, h->B, nb));
    if (c->c_f32)
        CHECK_OK(be->upload(be, C, h->C0, nc * 4));
    else
        CHECK_OK(be->upload_f32(be, C, h->C0, nc));
    if (c->bias) {
        CHECK_OK(be->alloc(be, (size_t)c->N * (dev ? 2 : 4), "bias", &bias));
        CHECK_OK(be->upload_f32(be, bias, h->bias, c->N));
    }
    if (c->residual) {
        CHECK_OK(be->alloc(be, (nc + off) * ae, "residual", &R0));
        res = (char *)R0 + off * ae;
        CHECK_OK(be->upload_f32(be, res, h->res, nc));
    }
    gllm_matmul_args a = case_args(c, h);
    a.bias = bias, a.residual = res;
    gllm_status s = path < 0 ? be->matmul(be, C, A, B, &a)
                             : gllm_cuda_matmul_with(be, (gllm_matmul_path)path, C, A, B, &a);
    if (s == GLLM_OK) {
        CHECK_OK(be->sync(be));
        if (c->c_f32)
            CHECK_OK(be->download(be, out, C, nc * 4));
        else
            CHECK_OK(be->download_f32(be, out, C, nc));
    }
    be->free(be, A0), be->free(be, B0), be->free(be, C0);
    if (bias)
        be->free(be, bias);
    if (R0)
        be->free(be, R0);
    return s;
}

/* The M x N values of each batch, without padding; counts NaN (unwritten)
 * values and disturbed padding. */
static void unpad(const mm_case *c, const host_data *h, const float *full, float *dense,
                  int *unwritten, int *pad_hits)
{
    *unwritten = *pad_hits = 0;
    for (int b = 0; b < c->batch; b++)
        for (int m = 0; m < c->M; m++)
            for (int n = 0; n < h->ldc; n++) {
                float v = full[b * h->sc + (size_t)m * h->ldc + n];
                if (n >= c->N)
                    *pad_hits += v != SENTINEL;
                else {
                    *unwritten += isnan(v);
                    dense[((size_t)b * c->M + m) * c->N + n] = v;
                }
            }
}

/* On the CUDA emulator, GLLM_MM_AUTO and GLLM_MM_WGMMA are left out: they run
 * the kernel that be->matmul (auto) and one of the two wgmma tile widths run,
 * and at emulated speed each is seconds per case. */
static bool emulated;

static void check_case(gllm_backend *gpu, gllm_backend *cpu, bool hopper, const mm_case *c)
{
    host_data h;
    make_data(gpu, c, &h);
    size_t nc = h.sc * c->batch, nd = (size_t)c->batch * c->M * c->N;
    float *full = malloc(nc * 4), *out = malloc(nd * 4), *ref = malloc(nd * 4);
    float *cpu_out = malloc(nd * 4), *lt_out = malloc(nd * 4), *first = malloc(nd * 4);
    for (size_t i = 0; i < nd; i++)
        ref[i] = (float)h.ref[i];
    double tol = c->c_f32 ? 1e-4 : 1e-2;
    int unwritten, pad_hits;
    static char label[256]; /* t_case keeps pointing at it */
    snprintf(label, sizeof label,
             "M=%d N=%d K=%d ta=%d tb=%d pad=%d batch=%d%s%s%s%s beta=%g offset=%d", c->M, c->N,
             c->K, c->ta, c->tb, c->pad, c->batch, c->c_f32 ? " f32" : "", c->bias ? " bias" : "",
             c->gelu ? " gelu" : "", c->residual ? " residual" : "", (double)c->beta, c->off);
    t_case = label;

    CHECK_OK(run_case(cpu, -1, c, &h, full));
    unpad(c, &h, full, cpu_out, &unwritten, &pad_hits);
    CHECK_REL(cpu_out, ref, nd, c->c_f32 ? 1e-4 : 1e-5);

    bool aligned = h.lda % 8 == 0 && h.ldb % 8 == 0 && h.sa % 8 == 0 && h.sb % 8 == 0 &&
                   c->off % 8 == 0;
    /* cuBLASLt, asked with the operands' real alignment, may decline rows that
     * are not 16-byte aligned; it must never misread them */
    gllm_status lt_s = run_case(gpu, GLLM_MM_CUBLASLT, c, &h, full);
    if (lt_s == GLLM_ERR_UNSUPPORTED && !aligned) {
        printf("[%s] cuBLASLt declined: %s\n", label, gllm_last_error());
        memcpy(lt_out, ref, nd * 4);
    } else {
        CHECK_MSG(lt_s == GLLM_OK, "cuBLASLt: %s", gllm_last_error());
        unpad(c, &h, full, lt_out, &unwritten, &pad_hits);
        CHECK_MSG(unwritten == 0 && pad_hits == 0, "cuBLASLt left %d unwritten, %d padding hits",
                  unwritten, pad_hits);
        CHECK_REL(lt_out, ref, nd, tol);
    }

    static const int paths[] = {-1,           GLLM_MM_AUTO,      GLLM_MM_SIMPLE,
                                GLLM_MM_MMA,  GLLM_MM_WGMMA,     GLLM_MM_WGMMA_128,
                                GLLM_MM_WGMMA_256};
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        int path = paths[pi];
        if (emulated && (path == GLLM_MM_AUTO || path == GLLM_MM_WGMMA))
            continue;
        gllm_status s = run_case(gpu, path, c, &h, full);
        const char *pname = path < 0 ? "be->matmul" : gllm_matmul_path_name((gllm_matmul_path)path);
        bool wg = path == GLLM_MM_WGMMA || path == GLLM_MM_WGMMA_128 || path == GLLM_MM_WGMMA_256;
        bool must = path <= GLLM_MM_SIMPLE || (path == GLLM_MM_MMA && aligned) ||
                    (wg && hopper && aligned && c->K > 0);
        if (s == GLLM_ERR_UNSUPPORTED && !must)
            continue;
        CHECK_MSG(s == GLLM_OK, "%s: %s", pname, gllm_last_error());
        if (s != GLLM_OK)
            continue;
        unpad(c, &h, full, out, &unwritten, &pad_hits);
        CHECK_MSG(unwritten == 0, "%s left %d outputs unwritten", pname, unwritten);
        CHECK_MSG(pad_hits == 0, "%s wrote %d values into the ldc padding", pname, pad_hits);
        double e_ref = rel_err(out, ref, nd), e_cpu = rel_err(out, cpu_out, nd);
        double e_lt = rel_err(out, lt_out, nd);
        CHECK_MSG(e_ref <= tol && e_cpu <= tol && e_lt <= tol,
                  "%s: rel err vs fp64 %.2e, vs cpu %.2e, vs cuBLASLt %.2e (tol %.0e)", pname,
                  e_ref, e_cpu, e_lt, tol);
        if (path < 0) {
            memcpy(first, out, nd * 4);
            CHECK_OK(run_case(gpu, -1, c, &h, full));
            unpad(c, &h, full, out, &unwritten, &pad_hits);
            CHECK_MSG(memcmp(first, out, nd * 4) == 0, "be->matmul is not bitwise repeatable");
        }
    }
    free(full), free(out), free(ref), free(cpu_out), free(lt_out), free(first);
    free_data(&h);
}

static mm_case mk(int M, int N, int K, bool ta, bool tb, int pad)
{
    mm_case c = {M, N, K, ta, tb, pad, 1, 1.0f, 0.0f, false, false, false, false, 0};
    return c;
}

/* ---------------------------------------------------------------- training shapes
 * Too large for an fp64 reference of every element: each path is compared with
 * cuBLASLt on the whole output and with fp64 on sampled elements (every
 * corner, random positions), and cuBLASLt with fp64 likewise. */
#define N_SAMPLES 768

static void large_case(gllm_backend *gpu, bool hopper, int M, int N, int K, bool ta, bool tb,
                       bool c_f32, int off)
{
    static char label[160];
    snprintf(label, sizeof label, "large M=%d N=%d K=%d ta=%d tb=%d%s offset=%d", M, N, K, ta, tb,
             c_f32 ? " f32 beta=1" : "", off);
    t_case = label;
    const int lda = ta ? M : K, ldb = tb ? K : N;
    const size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    const size_t ce = c_f32 ? 4 : 2;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C0 = malloc(nc * 4);
    float *lt = malloc(nc * 4), *out = malloc(nc * 4);
    unsigned char *nan_bytes = malloc(nc * ce);
    test_fill(A, na, 1.0f);
    test_fill(B, nb, 1.0f);
    to_bf16(gpu, A, na);
    to_bf16(gpu, B, nb);
    if (c_f32)
        test_fill(C0, nc, 1.0f); /* accumulated into (beta = 1): the weight-gradient GEMM */
    memset(nan_bytes, 0xff, nc * ce);
    void *dA0, *dB0, *dC0;
    CHECK_OK(gpu->alloc(gpu, (na + off) * 2, "A", &dA0));
    CHECK_OK(gpu->alloc(gpu, (nb + off) * 2, "B", &dB0));
    CHECK_OK(gpu->alloc(gpu, (nc + off) * ce, "C", &dC0));
    void *dA = (char *)dA0 + (size_t)off * 2, *dB = (char *)dB0 + (size_t)off * 2;
    void *dC = (char *)dC0 + (size_t)off * ce;
    CHECK_OK(gpu->upload_f32(gpu, dA, A, na));
    CHECK_OK(gpu->upload_f32(gpu, dB, B, nb));

    /* sample positions and their fp64 reference */
    int sm[N_SAMPLES], sn[N_SAMPLES];
    double sref[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) {
        sm[i] = i < 4 ? (i & 1 ? M - 1 : 0) : (int)(test_rand_u64() % (uint64_t)M);
        sn[i] = i < 4 ? (i & 2 ? N - 1 : 0) : (int)(test_rand_u64() % (uint64_t)N);
        double acc = 0;
        for (int k = 0; k < K; k++) {
            double av = ta ? A[(size_t)k * lda + sm[i]] : A[(size_t)sm[i] * lda + k];
            double bv = tb ? B[(size_t)sn[i] * ldb + k] : B[(size_t)k * ldb + sn[i]];
            acc += av * bv;
        }
        sref[i] = acc + (c_f32 ? (double)C0[(size_t)sm[i] * N + sn[i]] : 0.0);
    }

    gllm_matmul_args a;
    memset(&a, 0, sizeof a);
    a.M = M, a.N = N, a.K = K, a.trans_a = ta, a.trans_b = tb, a.alpha = 1.0f;
    a.beta = c_f32 ? 1.0f : 0.0f, a.c_f32 = c_f32;
    const double tol = c_f32 ? 1e-4 : 1e-2;
    const bool aligned = off % 8 == 0;
    static const int paths[] = {GLLM_MM_CUBLASLT, GLLM_MM_AUTO,      GLLM_MM_SIMPLE,
                                GLLM_MM_MMA,      GLLM_MM_WGMMA_128, GLLM_MM_WGMMA_256};
    bool lt_ok = true; /* cuBLASLt served: the others are compared with it too */
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        const gllm_matmul_path path = (gllm_matmul_path)paths[pi];
        const char *pname = gllm_matmul_path_name(path);
        if (c_f32)
            CHECK_OK(gpu->upload(gpu, dC, C0, nc * 4));
        else
            CHECK_OK(gpu->upload(gpu, dC, nan_bytes, nc * 2));
        gllm_status s = gllm_cuda_matmul_with(gpu, path, dC, dA, dB, &a);
        const bool wg = path == GLLM_MM_WGMMA_128 || path == GLLM_MM_WGMMA_256;
        const bool must = !(wg && !(hopper && aligned)) && !(path == GLLM_MM_MMA && !aligned) &&
                          !(path == GLLM_MM_CUBLASLT && !aligned);
        if (s == GLLM_ERR_UNSUPPORTED && !must) {
            printf("  %-9s declined: %s\n", pname, gllm_last_error());
            if (path == GLLM_MM_CUBLASLT)
                lt_ok = false;
            continue;
        }
        CHECK_MSG(s == GLLM_OK, "%s: %s", pname, gllm_last_error());
        if (s != GLLM_OK)
            continue;
        CHECK_OK(gpu->sync(gpu));
        float *dst = path == GLLM_MM_CUBLASLT ? lt : out;
        if (c_f32)
            CHECK_OK(gpu->download(gpu, dst, dC, nc * 4));
        else
            CHECK_OK(gpu->download_f32(gpu, dst, dC, nc));
        size_t unwritten = 0;
        for (size_t i = 0; i < nc; i++)
            unwritten += isnan(dst[i]);
        float got[N_SAMPLES], want[N_SAMPLES];
        for (int i = 0; i < N_SAMPLES; i++) {
            got[i] = dst[(size_t)sm[i] * N + sn[i]];
            want[i] = (float)sref[i];
        }
        const double e_ref = rel_err(got, want, N_SAMPLES);
        const double e_lt = path == GLLM_MM_CUBLASLT || !lt_ok ? 0.0 : rel_err(out, lt, nc);
        printf("  %-9s rel err vs fp64 (%d samples) %.2e, vs cuBLASLt (all) %.2e%s\n", pname,
               N_SAMPLES, e_ref, e_lt, unwritten ? "  UNWRITTEN" : "");
        CHECK_MSG(unwritten == 0, "%s left %zu outputs unwritten", pname, unwritten);
        CHECK_MSG(e_ref <= tol && e_lt <= tol, "%s: rel err vs fp64 %.2e, vs cuBLASLt %.2e (tol %.0e)",
                  pname, e_ref, e_lt, tol);
    }
    gpu->free(gpu, dA0), gpu->free(gpu, dB0), gpu->free(gpu, dC0);
    free(A), free(B), free(C0), free(lt), free(out), free(nan_bytes);
}

static void large_suite(gllm_backend *gpu, bool hopper)
{
    /* all four layouts at the largest shape */
    for (int t = 0; t < 4; t++)
        large_case(gpu, hopper, 8192, 8192, 8192, t & 1, t >> 1, false, 0);
    /* a GPT-2 MLP at 8192 tokens: forward (x W^T), input grad (dy W), weight grad
     * (dy^T x, fp32 accumulate), each aligned and then at offsets */
    for (int off = 0; off <= 8; off += 8) {
        large_case(gpu, hopper, 8192, 3072, 768, false, true, false, off);
        large_case(gpu, hopper, 8192, 768, 3072, false, false, false, off);
        large_case(gpu, hopper, 3072, 768, 8192, true, false, true, off);
    }
    /* odd shapes off the tile grid; one element off (2 bytes): only cuBLASLt,
     * simple and auto can serve it */
    large_case(gpu, hopper, 8191, 4100, 2056, false, true, false, 0);
    large_case(gpu, hopper, 4099, 8192, 1032, true, true, false, 1);
    large_case(gpu, hopper, 2049, 2056, 8192, true, false, true, 3);
}

int main(int argc, char **argv)
{
    const bool large = argc > 1 && strcmp(argv[1], "--large") == 0;
    const bool describe = argc > 1 && strcmp(argv[1], "--describe") == 0;
    if (argc > 2 || (argc > 1 && !large && !describe)) {
        fprintf(stderr, "usage: test_cuda_matmul [--large | --describe]\n");
        return 2;
    }
    gllm_backend *gpu, *cpu;
    if (gllm_backend_open("cuda", &gpu) != GLLM_OK) {
        char why[512];
        snprintf(why, sizeof why, "no CUDA backend: %s", gllm_last_error());
        test_skip(why);
    }
    test_seed();
    char desc[512];
    CHECK_OK(gllm_cuda_describe(gpu, desc, sizeof desc));
    printf("%s\n", desc);
    bool hopper = strstr(desc, "wgmma on") != NULL;
    emulated = strstr(desc, "emulator") != NULL;
    if (describe) { /* the device line alone (gpu_check.sh's first step) */
        gpu->destroy(gpu);
        return 0;
    }
    if (large) {
        large_suite(gpu, hopper);
        gpu->destroy(gpu);
        return test_summary();
    }
    CHECK_OK(gllm_backend_cpu_create(2, &cpu));

    static const int shapes[][3] = {{1, 1, 1},     {17, 33, 65},   {127, 129, 255},
                                    {128, 128, 32}, {130, 260, 72}, {64, 200, 1000}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++)
            for (int pad = 0; pad <= 8; pad += 8) {
                mm_case c = mk(shapes[i][0], shapes[i][1], shapes[i][2], t & 1, t >> 1, pad);
                check_case(gpu, cpu, hopper, &c);
            }
    /* odd leading dimensions force the fallback on aligned shapes */
    mm_case odd = mk(96, 136, 64, false, true, 3);
    check_case(gpu, cpu, hopper, &odd);

    /* model GEMMs at small M: forward, input grad, weight grad (fp32 accumulate);
     * on the CUDA emulator the first two (the others are 4 and 8 times the work
     * of the largest one there, minutes at emulated speed) */
    static const int layers[][2] = {{2304, 768}, {768, 3072}, {3072, 2048}, {2048, 8192}};
    const size_t n_layers = emulated ? 2 : sizeof layers / sizeof layers[0];
    if (emulated)
        printf("emulator: model GEMMs of the first %zu layer shapes only\n", n_layers);
    for (size_t i = 0; i < n_layers; i++) {
        int out = layers[i][0], in = layers[i][1], T = 40;
        mm_case fwd = mk(T, out, in, false, true, 0);
        check_case(gpu, cpu, hopper, &fwd);
        mm_case dinp = mk(T, in, out, false, false, 0);
        check_case(gpu, cpu, hopper, &dinp);
        mm_case dw = mk(out, in, T, true, false, 0);
        dw.c_f32 = true, dw.beta = 1.0f;
        check_case(gpu, cpu, hopper, &dw);
    }

    /* epilogues, scaling and batches */
    mm_case e1 = mk(77, 300, 96, false, true, 0);
    e1.bias = e1.gelu = true;
    check_case(gpu, cpu, hopper, &e1);
    mm_case e2 = mk(200, 264, 136, false, true, 8);
    e2.bias = e2.residual = true;
    e2.alpha = 0.75f;
    check_case(gpu, cpu, hopper, &e2);
    mm_case e3 = mk(129, 250, 88, false, false, 0);
    e3.gelu = e3.residual = true;
    e3.beta = 0.5f;
    check_case(gpu, cpu, hopper, &e3);
    mm_case e4 = mk(300, 136, 513, true, false, 0);
    e4.c_f32 = true, e4.beta = 1.0f, e4.alpha = 0.5f;
    check_case(gpu, cpu, hopper, &e4);
    mm_case e5 = mk(65, 72, 80, false, true, 8);
    e5.batch = 3, e5.bias = true;
    check_case(gpu, cpu, hopper, &e5);
    mm_case e6 = mk(33, 48, 40, true, true, 0);
    e6.batch = 2, e6.beta = 1.0f, e6.c_f32 = true;
    check_case(gpu, cpu, hopper, &e6);

    /* Operands off the 256-byte alignment, each after the same shape ran aligned
     * (cuBLASLt must not reuse the aligned plan): 8 elements (16 bytes: every
     * path serves it), 1 and 3 elements (only simple and cuBLASLt) */
    static const int offs[] = {8, 1, 3};
    for (int t = 0; t < 4; t++) {
        mm_case al = mk(256, 512, 192, t & 1, t >> 1, 0);
        check_case(gpu, cpu, hopper, &al);
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
            mm_case o = al;
            o.off = offs[i];
            check_case(gpu, cpu, hopper, &o);
        }
    }
    mm_case ob = mk(100, 264, 136, false, true, 0);
    ob.batch = 3, ob.bias = ob.residual = true;
    check_case(gpu, cpu, hopper, &ob);
    ob.off = 8;
    check_case(gpu, cpu, hopper, &ob);
    ob.c_f32 = true, ob.bias = ob.residual = false, ob.beta = 1.0f, ob.off = 5;
    check_case(gpu, cpu, hopper, &ob);

    TEST_CASE("invalid arguments")
    {
        gllm_matmul_args a;
        memset(&a, 0, sizeof a);
        a.M = 4, a.N = 4, a.K = 4, a.alpha = 1.0f, a.lda = 2;
        void *buf;
        CHECK_OK(gpu->alloc(gpu, 256, "args test", &buf));
        CHECK_ERR(gpu->matmul(gpu, buf, buf, buf, &a), GLLM_ERR_INVALID, "lda=2");
        a.lda = 0, a.c_f32 = true, a.bias = buf;
        CHECK_ERR(gpu->matmul(gpu, buf, buf, buf, &a), GLLM_ERR_INVALID, "bias");
        gpu->free(gpu, buf);
    }

    cpu->destroy(cpu);
    gpu->destroy(gpu);
    return test_summary();
}
