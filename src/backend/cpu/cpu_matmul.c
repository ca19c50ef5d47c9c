/* CPU matmul: cblas_sgemm when built with OpenBLAS, else (or when forced) plain
 * OpenMP loops; bias, GELU and residual are applied row by row afterwards. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#ifdef GLLM_HAVE_BLAS
#include <cblas.h>
#endif

typedef struct mm_dims {
    int lda, ldb, ldc;
} mm_dims;

static gllm_status mm_check(const void *C, const void *A, const void *B,
                            const gllm_matmul_args *a, mm_dims *d)
{
    if (!C || !A || !B)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: NULL %s", !C ? "C" : !A ? "A" : "B");
    if (a->M <= 0 || a->N <= 0 || a->K <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: M=%d N=%d K=%d must all be positive", a->M,
                         a->N, a->K);
    int min_a = a->trans_a ? a->M : a->K;
    int min_b = a->trans_b ? a->K : a->N;
    d->lda = a->lda ? a->lda : min_a;
    d->ldb = a->ldb ? a->ldb : min_b;
    d->ldc = a->ldc ? a->ldc : a->N;
    if (d->lda < min_a || d->ldb < min_b || d->ldc < a->N)
        return gllm_fail(GLLM_ERR_INVALID,
                         "matmul: leading dimensions lda=%d ldb=%d ldc=%d below %d %d %d "
                         "(M=%d N=%d K=%d trans_a=%d trans_b=%d)",
                         d->lda, d->ldb, d->ldc, min_a, min_b, a->N, a->M, a->N, a->K,
                         a->trans_a, a->trans_b);
    if (a->c_f32 && (a->bias || a->residual || a->epilogue != GLLM_EPI_NONE))
        return gllm_fail(GLLM_ERR_INVALID,
                         "matmul: bias, epilogue and residual need c_f32 == false");
    if (a->epilogue != GLLM_EPI_NONE && a->epilogue != GLLM_EPI_GELU)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: unknown epilogue %d", (int)a->epilogue);
    if (a->residual && a->residual == C)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: residual must not alias C");
    return GLLM_OK;
}

/* c already holds alpha*AB + beta*c; add bias, apply GELU, add residual. */
static void mm_epilogue_row(float *c, const gllm_matmul_args *a, const float *res_row)
{
    const float *bias = a->bias;
    int N = a->N;
    if (bias)
        for (int n = 0; n < N; n++)
            c[n] += bias[n];
    if (a->epilogue == GLLM_EPI_GELU)
        for (int n = 0; n < N; n++)
            c[n] = gllm_cpu_gelu(c[n]);
    if (res_row)
        for (int n = 0; n < N; n++)
            c[n] += res_row[n];
}

static gllm_status mm_loops(gllm_backend *be, float *C, const float *A, const float *B,
                            const gllm_matmul_args *a, const mm_dims *d, int batch)
{
    int M = a->M, N = a->N, K = a->K, nt = gllm_cpu_ctx_of(be)->n_threads;
    size_t stride = ((size_t)N + (size_t)K) * sizeof(float);
    unsigned char *scr = gllm_cpu_scratch(be, stride, "matmul");
    if (!scr)
        return GLLM_ERR_OOM;
    stride = gllm_cpu_ctx_of(be)->scratch_stride;
    const float *R = a->residual;
    long rows = (long)batch * M;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long r = 0; r < rows; r++) {
        long bi = r / M;
        int m = (int)(r % M);
        const float *Ab = A + bi * a->stride_a;
        const float *Bb = B + bi * a->stride_b;
        float *c = C + bi * a->stride_c + (size_t)m * d->ldc;
        float *acc = (float *)(scr + (size_t)omp_get_thread_num() * stride);
        float *arow = acc + N;
        if (a->trans_a) /* gather column m of A so the inner loops read it contiguously */
            for (int k = 0; k < K; k++)
                arow[k] = Ab[(size_t)k * d->lda + m];
        else
            memcpy(arow, Ab + (size_t)m * d->lda, (size_t)K * sizeof(float));
        if (a->trans_b) {
            for (int n = 0; n < N; n++) {
                const float *brow = Bb + (size_t)n * d->ldb;
                float s = 0;
                for (int k = 0; k < K; k++)
                    s += arow[k] * brow[k];
                acc[n] = s;
            }
        } else {
            memset(acc, 0, (size_t)N * sizeof(float));
            for (int k = 0; k < K; k++) {
                float av = arow[k];
                const float *brow = Bb + (size_t)k * d->ldb;
                for (int n = 0; n < N; n++)
                    acc[n] += av * brow[n];
            }
        }
        /* beta == 0 must not read C: it may hold garbage (NaN) */
        if (a->beta == 0.0f)
            for (int n = 0; n < N; n++)
                c[n] = a->alpha * acc[n];
        else
            for (int n = 0; n < N; n++)
                c[n] = a->alpha * acc[n] + a->beta * c[n];
        mm_epilogue_row(c, a, R ? R + bi * a->stride_c + (size_t)m * d->ldc : NULL);
    }
    return GLLM_OK;
}

#ifdef GLLM_HAVE_BLAS
static bool mm_has_epilogue(const gllm_matmul_args *a)
{
    return a->bias || a->residual || a->epilogue != GLLM_EPI_NONE;
}

/* Batch invariance with OpenBLAS (measured on 0.3.21 with its SkylakeX kernels on
 * this project's CPU machine): a row of sgemm's C is bit-identical for every
 * M once M * N * K exceeds the "small matrix" threshold (1e6 there) and M >= 3;
 * below it OpenBLAS switches to a small-matrix kernel (and newer releases forward
 * M = 1 to gemv), whose summation order differs. So row-invariant calls pad M up
 * to the first M past both limits (rows copied into scratch, extra rows zero);
 * every real row then goes through the same kernel whatever the batch. The
 * padding costs nothing at the model sizes that matter (it only ever applies to
 * tiny matrices or M < 16). tests/backend checks the property for many M. */
#define ROWINV_MIN_M 16
#define ROWINV_MIN_MNK 1.2e6

static int rowinv_pad_m(const gllm_matmul_args *a)
{
    double nk = (double)a->N * (double)a->K;
    long m = (long)(ROWINV_MIN_MNK / nk) + 1;
    if (m < ROWINV_MIN_M)
        m = ROWINV_MIN_M;
    return a->M >= m ? a->M : (int)m;
}

static gllm_status mm_blas_rowinv(gllm_backend *be, float *C, const float *A, const float *B,
                                  const gllm_matmul_args *a, const mm_dims *d)
{
    const int Mp = rowinv_pad_m(a);
    if (Mp == a->M)
        return GLLM_ERR_UNSUPPORTED; /* no padding needed: the normal path */
    /* padded A [Mp, K] and C [Mp, N] in one heap block (scratch belongs to threads) */
    size_t na = (size_t)Mp * a->K, nc = (size_t)Mp * a->N;
    float *buf = calloc(na + nc, sizeof(float));
    if (!buf)
        return gllm_fail(GLLM_ERR_OOM, "matmul: out of memory padding %d rows", Mp);
    for (int m = 0; m < a->M; m++)
        memcpy(buf + (size_t)m * a->K, A + (size_t)m * d->lda, (size_t)a->K * sizeof(float));
    float *cp = buf + na;
    if (a->beta != 0.0f)
        for (int m = 0; m < a->M; m++)
            memcpy(cp + (size_t)m * a->N, C + (size_t)m * d->ldc, (size_t)a->N * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, a->trans_b ? CblasTrans : CblasNoTrans, Mp, a->N,
                a->K, a->alpha, buf, a->K, B, d->ldb, a->beta, cp, a->N);
    for (int m = 0; m < a->M; m++) {
        float *c = C + (size_t)m * d->ldc;
        memcpy(c, cp + (size_t)m * a->N, (size_t)a->N * sizeof(float));
        if (mm_has_epilogue(a))
            mm_epilogue_row(c, a, a->residual ? (const float *)a->residual + (size_t)m * d->ldc
                                              : NULL);
    }
    free(buf);
    (void)be;
    return GLLM_OK;
}

static void mm_blas(gllm_backend *be, float *C, const float *A, const float *B,
                    const gllm_matmul_args *a, const mm_dims *d, int batch)
{
    int nt = gllm_cpu_ctx_of(be)->n_threads;
    for (int bi = 0; bi < batch; bi++)
        cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans,
                    a->trans_b ? CblasTrans : CblasNoTrans, a->M, a->N, a->K, a->alpha,
                    A + bi * a->stride_a, d->lda, B + bi * a->stride_b, d->ldb, a->beta,
                    C + bi * a->stride_c, d->ldc);
    if (!mm_has_epilogue(a))
        return;
    const float *R = a->residual;
    long rows = (long)batch * a->M;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long r = 0; r < rows; r++) {
        long bi = r / a->M;
        size_t off = (size_t)(bi * a->stride_c) + (size_t)(r % a->M) * d->ldc;
        mm_epilogue_row(C + off, a, R ? R + off : NULL);
    }
}
#endif

gllm_status gllm_cpu_matmul(gllm_backend *be, void *C, const void *A, const void *B,
                            const gllm_matmul_args *a)
{
    mm_dims d;
    GLLM_TRY(mm_check(C, A, B, a, &d));
    int batch = a->batch > 1 ? a->batch : 1;
#ifdef GLLM_HAVE_BLAS
    if (gllm_cpu_ctx_of(be)->use_blas) {
        if (a->row_invariant && batch == 1 && !a->trans_a) {
            gllm_status s = mm_blas_rowinv(be, C, A, B, a, &d);
            if (s != GLLM_ERR_UNSUPPORTED)
                return s;
        }
        mm_blas(be, C, A, B, a, &d, batch);
        return GLLM_OK;
    }
#endif
    return mm_loops(be, C, A, B, a, &d, batch);
}

gllm_status gllm_cpu_bias_bwd(gllm_backend *be, float *dbias, const void *dout, int M, int N)
{
    if (!dbias || !dout || M < 0 || N <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "bias_bwd: bad arguments (M=%d N=%d)", M, N);
    const float *g = dout;
    int nt = gllm_cpu_ctx_of(be)->n_threads;
    /* Columns are split across threads and rows summed in order, so the result
     * does not depend on the thread count. */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int c0 = 0; c0 < N; c0 += 64) {
        int c1 = c0 + 64 < N ? c0 + 64 : N;
        for (int m = 0; m < M; m++) {
            const float *row = g + (size_t)m * N;
            for (int c = c0; c < c1; c++)
                dbias[c] += row[c];
        }
    }
    return GLLM_OK;
}
