/* CPU matmul: cblas_sgemm when built with OpenBLAS, else (or when forced) plain
 * loops; row-invariant (inference) calls on gllm's own sgemm (cpu_gemm.c) where
 * the CPU has AVX2. Bias, GELU and residual are applied afterwards, by the same
 * chunk. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#ifdef GLLM_HAVE_BLAS
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
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

/* c[n0..n1) of one row already holds alpha*AB + beta*c; add bias, apply
 * GELU, add residual. */
static void mm_epilogue_cols(float *c, const gllm_matmul_args *a, const float *res_row, int n0,
                             int n1)
{
    const float *bias = a->bias;
    if (bias)
        for (int n = n0; n < n1; n++)
            c[n] += bias[n];
    if (a->epilogue == GLLM_EPI_GELU)
        for (int n = n0; n < n1; n++)
            c[n] = gllm_cpu_gelu(c[n]);
    if (res_row)
        for (int n = n0; n < n1; n++)
            c[n] += res_row[n];
}

static void mm_epilogue_row(float *c, const gllm_matmul_args *a, const float *res_row)
{
    mm_epilogue_cols(c, a, res_row, 0, a->N);
}

/* what the matmul chunks read */
typedef struct mm_ctx {
    float *C;
    const float *A, *B;
    const gllm_matmul_args *a;
    const mm_dims *d;
    unsigned char *scr;
    size_t stride;
    /* sgemm tiles: boundaries of op(A)'s rows and of C's columns */
    int n_tm, n_tn;
    const int *mb, *nb;
} mm_ctx;

static void mm_loops_range(void *args, long rb, long re, int tid)
{
    const mm_ctx *x = args;
    const gllm_matmul_args *a = x->a;
    const mm_dims *d = x->d;
    const int M = a->M, N = a->N, K = a->K;
    const float *A = x->A, *B = x->B, *R = a->residual;
    float *C = x->C;
    for (long r = rb; r < re; r++) {
        long bi = r / M;
        int m = (int)(r % M);
        const float *Ab = A + bi * a->stride_a;
        const float *Bb = B + bi * a->stride_b;
        float *c = C + bi * a->stride_c + (size_t)m * d->ldc;
        float *acc = (float *)(x->scr + (size_t)tid * x->stride);
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
}

static gllm_status mm_loops(gllm_backend *be, float *C, const float *A, const float *B,
                            const gllm_matmul_args *a, const mm_dims *d, int batch)
{
    size_t stride = ((size_t)a->N + (size_t)a->K) * sizeof(float);
    unsigned char *scr = gllm_cpu_scratch(be, stride, "matmul");
    if (!scr)
        return GLLM_ERR_OOM;
    mm_ctx x = {.C = C, .A = A, .B = B, .a = a, .d = d, .scr = scr,
                .stride = gllm_cpu_ctx_of(be)->scratch_stride};
    gllm_cpu_for(be, (long)batch * a->M, 2.0 * a->N * a->K, mm_loops_range, &x);
    return GLLM_OK;
}

/* The row-invariant matmul on gllm's own sgemm (cpu_gemm.c): one task per
 * panel of columns, the epilogue on the panel while it is still in cache. */
typedef struct gemm_ctx {
    gllm_cpu_gemm_call g;
    const gllm_matmul_args *a;
    unsigned char *scr;
    size_t stride;
    int nr;
} gemm_ctx;

/* (only where OpenBLAS is: the kernel runs on the fast path, use_blas, and
 * without OpenBLAS the backend has only the plain loops) */
#ifdef GLLM_HAVE_BLAS
static bool mm_has_epilogue(const gllm_matmul_args *a)
{
    return a->bias || a->residual || a->epilogue != GLLM_EPI_NONE;
}

static void mm_gemm_range(void *args, long pb, long pe, int tid)
{
    const gemm_ctx *x = args;
    float *Bp = (float *)(x->scr + (size_t)tid * x->stride);
    const float *R = x->a->residual;
    for (long p = pb; p < pe; p++) {
        gllm_cpu_gemm_panel(&x->g, (int)p, Bp);
        if (!mm_has_epilogue(x->a) || x->g.R) /* a residual alone is added by the kernel */
            continue;
        const int n0 = (int)p * x->nr, n1 = n0 + x->nr < x->g.N ? n0 + x->nr : x->g.N;
        for (int m = 0; m < x->g.M; m++)
            mm_epilogue_cols(x->g.C + (size_t)m * x->g.ldc, x->a,
                             R ? R + (size_t)m * x->g.ldc : NULL, n0, n1);
    }
}

static void pack_a_range(void *args, long gb, long ge, int tid)
{
    const gemm_ctx *x = args;
    (void)tid;
    for (long g = gb; g < ge; g++)
        gllm_cpu_gemm_pack_a(&x->g, (int)g);
}

static bool mm_gemm_fits(const gllm_matmul_args *a, int batch)
{
    return a->row_invariant && batch == 1 && !a->trans_a && a->alpha == 1.0f &&
           a->beta == 0.0f && gllm_cpu_gemm_isa() != GLLM_GEMM_NONE;
}

static gllm_status mm_gemm(gllm_backend *be, float *C, const float *A, const float *B,
                           const gllm_matmul_args *a, const mm_dims *d)
{
    const int isa = gllm_cpu_gemm_isa();
    unsigned char *scr = gllm_cpu_scratch(be, gllm_cpu_gemm_scratch_bytes(isa), "matmul");
    if (!scr)
        return GLLM_ERR_OOM;
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    const size_t abytes = gllm_cpu_gemm_apack_bytes(isa, a->M, a->K);
    if (abytes > c->gemm_a_bytes) {
        float *p = aligned_alloc(64, (abytes + 63) & ~(size_t)63);
        if (!p)
            return gllm_fail(GLLM_ERR_OOM, "matmul: out of memory packing %d rows of A", a->M);
        free(c->gemm_a);
        c->gemm_a = p;
        c->gemm_a_bytes = abytes;
    }
    const float *pk = a->trans_b ? a->b_packed : NULL;
    /* a residual with nothing before it (the model's o and down projections) is
     * added in the kernel's last store: the same one rounding as a separate pass */
    const bool fuse_res = a->residual && !a->bias && a->epilogue == GLLM_EPI_NONE;
    gemm_ctx x = {.g = {.isa = isa, .M = a->M, .N = a->N, .K = a->K, .trans_b = a->trans_b,
                        .A = A, .B = B, .Bpk = pk, .Apk = c->gemm_a,
                        .R = fuse_res ? a->residual : NULL, .C = C, .lda = d->lda,
                        .ldb = d->ldb, .ldc = d->ldc},
                  .a = a, .scr = scr, .stride = c->scratch_stride, .nr = gllm_cpu_gemm_nr(isa)};
    const int mr = gllm_cpu_gemm_mr(isa);
    gllm_cpu_pool_run(c->pool, (a->M + mr - 1) / mr, 1, pack_a_range, &x);
    gllm_cpu_pool_run(c->pool, (a->N + x.nr - 1) / x.nr, 1, mm_gemm_range, &x);
    return GLLM_OK;
}

#endif /* GLLM_HAVE_BLAS */

static bool cpu_gemm_on(gllm_backend *be)
{
    return gllm_cpu_ctx_of(be)->use_blas && gllm_cpu_gemm_isa() != GLLM_GEMM_NONE;
}

size_t gllm_cpu_packed_b_bytes(gllm_backend *be, int N, int K)
{
    return N > 0 && K > 0 && cpu_gemm_on(be) ? gllm_cpu_gemm_packed_bytes(gllm_cpu_gemm_isa(), N, K)
                                             : 0;
}

static void pack_range(void *args, long pb, long pe, int tid)
{
    const gemm_ctx *x = args;
    (void)tid;
    for (long p = pb; p < pe; p++)
        gllm_cpu_gemm_pack_panel(&x->g, (int)p, (float *)x->scr);
}

gllm_status gllm_cpu_pack_b(gllm_backend *be, void *dst, const void *B, int N, int K)
{
    if (!dst || !B || N <= 0 || K <= 0 || !cpu_gemm_on(be))
        return gllm_fail(GLLM_ERR_INVALID, "pack_b: N=%d K=%d%s", N, K,
                         cpu_gemm_on(be) ? "" : " (this backend has no packed layout)");
    const int isa = gllm_cpu_gemm_isa();
    gemm_ctx x = {.g = {.isa = isa, .N = N, .K = K, .trans_b = true, .B = B, .ldb = K},
                  .scr = dst, .nr = gllm_cpu_gemm_nr(isa)};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (N + x.nr - 1) / x.nr, 1, pack_range, &x);
    return GLLM_OK;
}

#ifdef GLLM_HAVE_BLAS

/* sgemm runs in tiles of C, one single-threaded cblas_sgemm per tile, handed
 * out by the pool like any other chunk: one pool for everything, no libgomp
 * team inside OpenBLAS spinning against it, and a descheduled thread's tiles
 * taken by the others. Tile boundaries depend on M, N and K only, never on the
 * thread count, and every element of C is one tile's full sum over K in
 * OpenBLAS's order: the result is the same for any number of threads.
 * Each sub-call packs its own panels of A and B, a cost of about 1/rows +
 * 1/columns of the multiply-adds, and has a fixed cost of its own, so tiles
 * are as large as balance allows: about 1/32 of the product, between 16e6 and
 * 64e6 multiply-adds (square edges of 64..512). Measured: with 4e6 tiles,
 * gpt2-14m and llama-6m training steps were up to 10% slower than OpenBLAS's
 * own threading; with a 2e6 floor, SmolLM2-135M decoding (16-row calls) was
 * 20-45% slower; with these, neither is. */
#define ROWINV_MIN_M 16     /* see mm_blas_rowinv */
enum { ROWINV_WHOLE, ROWINV_CHUNK8, ROWINV_LOOPS }; /* see rowinv_probe */
#define ROWINV_MIN_MNK 1.2e6
#define TILE_MIN 64
#define TILE_MAX 512
#define MM_MAX_TILES 4096

static int mm_tile_edge(double total_work, int K)
{
    double target = total_work / 32;
    target = target < 16e6 ? 16e6 : target > 64e6 ? 64e6 : target;
    int e = TILE_MIN;
    while (e < TILE_MAX && (double)e * e * K < target)
        e *= 2;
    return e;
}

/* n_parts boundaries of [0, len) in steps of 16 (the last one ends at len) */
static int mm_split(int len, int edge, int *bounds, int max_parts)
{
    int parts = len / edge;
    if (parts < 1)
        parts = 1;
    if (parts > max_parts)
        parts = max_parts;
    for (int i = 0; i < parts; i++)
        bounds[i] = (int)((long)len * i / parts) & ~15;
    bounds[parts] = len;
    return parts;
}

/* the narrowest tile of a split (row invariance needs its M*N*K) */
static int mm_min_part(const int *bounds, int parts)
{
    int w = bounds[1] - bounds[0];
    for (int i = 1; i < parts; i++)
        if (bounds[i + 1] - bounds[i] < w)
            w = bounds[i + 1] - bounds[i];
    return w;
}

static void mm_tile_range(void *args, long tb, long te, int tid)
{
    const mm_ctx *x = args;
    const gllm_matmul_args *a = x->a;
    const mm_dims *d = x->d;
    const long per_batch = (long)x->n_tm * x->n_tn;
    (void)tid;
    for (long t = tb; t < te; t++) {
        const long bi = t / per_batch, r = t % per_batch;
        const int m0 = x->mb[r / x->n_tn], m1 = x->mb[r / x->n_tn + 1];
        const int n0 = x->nb[r % x->n_tn], n1 = x->nb[r % x->n_tn + 1];
        const float *Ab = x->A + bi * a->stride_a, *Bb = x->B + bi * a->stride_b;
        float *Cb = x->C + bi * a->stride_c;
        const float *At = a->trans_a ? Ab + m0 : Ab + (size_t)m0 * d->lda;
        const float *Bt = a->trans_b ? Bb + (size_t)n0 * d->ldb : Bb + n0;
        float *Ct = Cb + (size_t)m0 * d->ldc + n0;
        cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans,
                    a->trans_b ? CblasTrans : CblasNoTrans, m1 - m0, n1 - n0, a->K, a->alpha, At,
                    d->lda, Bt, d->ldb, a->beta, Ct, d->ldc);
        if (!mm_has_epilogue(a))
            continue;
        const float *R = a->residual ? (const float *)a->residual + bi * a->stride_c : NULL;
        for (int m = m0; m < m1; m++)
            mm_epilogue_cols(Cb + (size_t)m * d->ldc, a, R ? R + (size_t)m * d->ldc : NULL, n0,
                             n1);
    }
}

/* C = op(A) op(B) (+ epilogue) in tiles. row_chunk (row invariance: a row's
 * sum never depends on which rows share its call): ROWS_WHOLE keeps every tile
 * at all M rows; a positive value cuts the rows at its multiples (M is one of
 * them); 0 splits rows and columns by size. */
#define ROWS_WHOLE (-1)
static gllm_status mm_blas(gllm_backend *be, float *C, const float *A, const float *B,
                           const gllm_matmul_args *a, const mm_dims *d, int batch, int row_chunk)
{
    /* row-invariant tiles must not depend on M: sized as for ROWINV_MIN_M rows */
    const double rows = row_chunk ? ROWINV_MIN_M : a->M;
    const int edge = mm_tile_edge(rows * a->N * a->K, a->K);
    const size_t n_mb = row_chunk > 0 ? (size_t)(a->M / row_chunk) : MM_MAX_TILES;
    int *bounds = malloc((n_mb + MM_MAX_TILES + 2) * sizeof *bounds);
    if (!bounds)
        return gllm_fail(GLLM_ERR_OOM, "matmul: out of memory for tile bounds");
    int *mb = bounds, *nb = bounds + n_mb + 1;
    mm_ctx x = {.C = C, .A = A, .B = B, .a = a, .d = d, .mb = mb, .nb = nb};
    if (row_chunk == ROWS_WHOLE) {
        mb[0] = 0, mb[1] = a->M, x.n_tm = 1;
    } else if (row_chunk > 0) {
        x.n_tm = a->M / row_chunk;
        for (int i = 0; i <= x.n_tm; i++)
            mb[i] = i * row_chunk;
    } else {
        x.n_tm = mm_split(a->M, edge, mb, MM_MAX_TILES);
    }
    x.n_tn = mm_split(a->N, edge, nb, MM_MAX_TILES);
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (long)batch * x.n_tm * x.n_tn, 1, mm_tile_range,
                      &x);
    free(bounds);
    return GLLM_OK;
}

/* Batch invariance with OpenBLAS: the fallback where gllm's own kernel
 * (cpu_gemm.c, used whenever the CPU has AVX2) is off (GLLM_GEMM=off, or no
 * AVX2). Which rows of one sgemm call are summed in
 * the same order depends on OpenBLAS's kernel for the CPU, so the strategy is
 * chosen per process by a probe (rowinv_strategy) among:
 *  - WHOLE: every tile keeps all M rows (tiles split the columns only, at
 *    bounds that depend on N and K) and M is padded up past the small-matrix
 *    limits for the narrowest tile. Measured on 0.3.21 with its SkylakeX
 *    kernels (AVX-512): a row of C is bit-identical for every M once
 *    M * N * K exceeds the "small matrix" threshold (1e6 there) and M >= 3;
 *    below it OpenBLAS switches to a small-matrix kernel (and newer releases
 *    forward M = 1 to gemv), whose summation order differs.
 *  - CHUNK8: sgemm calls of exactly 8 rows (the last one zero-padded), so a row
 *    only ever sits at positions 0..7 of a call. Measured on 0.3.21 with its
 *    Zen/Haswell kernels (AVX2, no AVX-512), where WHOLE fails: they sum rows in
 *    groups of 12 and rows 6..11 of a group in another order than rows 0..5,
 *    while calls of 2, 3, 4 or 8 rows sum every row alike (6, 12, 16, 24 not).
 *  - LOOPS: gllm's plain loops (one dot product per element, in order): exact
 *    on any CPU, and slow; the fallback when neither probe passes.
 * The padding costs nothing at the model sizes that matter (it only ever
 * applies to tiny matrices, M < 16 or the last 8-row chunk).
 * tests/backend checks the property for many M and shapes. */

static int rowinv_pad_m(const gllm_matmul_args *a)
{
    int nb[MM_MAX_TILES + 1];
    const int parts =
        mm_split(a->N, mm_tile_edge((double)ROWINV_MIN_M * a->N * a->K, a->K), nb, MM_MAX_TILES);
    double nk = (double)mm_min_part(nb, parts) * (double)a->K;
    long m = (long)(ROWINV_MIN_MNK / nk) + 1;
    if (m < ROWINV_MIN_M)
        m = ROWINV_MIN_M;
    return a->M >= m ? a->M : (int)m;
}

/* the rows a row-invariant call runs with: M padded to whole 8-row chunks, or
 * past the small-matrix limits for whole-M tiles (chunk == ROWS_WHOLE) */
static int rowinv_rows(const gllm_matmul_args *a, int chunk)
{
    return chunk > 0 ? (a->M + chunk - 1) / chunk * chunk : rowinv_pad_m(a);
}

static gllm_status mm_blas_rowinv(gllm_backend *be, float *C, const float *A, const float *B,
                                  const gllm_matmul_args *a, const mm_dims *d, int chunk)
{
    const int Mp = rowinv_rows(a, chunk);
    if (Mp == a->M)
        return mm_blas(be, C, A, B, a, d, 1, chunk);
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
    gllm_matmul_args pa = *a;
    pa.M = Mp;
    pa.bias = NULL, pa.residual = NULL, pa.epilogue = GLLM_EPI_NONE;
    mm_dims pd = {.lda = a->K, .ldb = d->ldb, .ldc = a->N};
    gllm_status st = mm_blas(be, cp, buf, B, &pa, &pd, 1, chunk);
    for (int m = 0; st == GLLM_OK && m < a->M; m++) {
        float *c = C + (size_t)m * d->ldc;
        memcpy(c, cp + (size_t)m * a->N, (size_t)a->N * sizeof(float));
        if (mm_has_epilogue(a))
            mm_epilogue_row(c, a, a->residual ? (const float *)a->residual + (size_t)m * d->ldc
                                              : NULL);
    }
    free(buf);
    return st;
}

/* uniform in [-1, 1) from a 64-bit LCG: the probe's fixed inputs */
static float probe_uniform(uint64_t *r)
{
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*r >> 40) / (double)(1ull << 23)) - 1.0f;
}

/* One strategy on one row-major problem, single-threaded (the probe's own
 * call; the real path runs the same sgemm calls in the pool's tiles). */
static bool rowinv_probe_mm(int strategy, int M, int N, int K, bool trans_b, const float *A,
                            const float *W, float *C)
{
    const int chunk = strategy == ROWINV_CHUNK8 ? 8 : 0;
    gllm_matmul_args a = {.M = M, .N = N, .K = K, .trans_b = trans_b, .alpha = 1.0f};
    const int Mp = rowinv_rows(&a, chunk ? chunk : ROWS_WHOLE);
    float *pa = calloc((size_t)Mp * K, sizeof(float)), *pc = malloc((size_t)Mp * N * sizeof(float));
    if (!pa || !pc) {
        free(pa), free(pc);
        return false;
    }
    memcpy(pa, A, (size_t)M * K * sizeof(float));
    const int step = chunk ? chunk : Mp;
    for (int m0 = 0; m0 < Mp; m0 += step)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, step, N, K,
                    1.0f, pa + (size_t)m0 * K, K, W, trans_b ? K : N, 0.0f,
                    pc + (size_t)m0 * N, N);
    memcpy(C, pc, (size_t)M * N * sizeof(float));
    free(pa), free(pc);
    return true;
}

/* Does `strategy` give every row the bits it has alone, for several M, on
 * shapes on both sides of OpenBLAS's small-matrix limits? */
static bool rowinv_probe(int strategy)
{
    static const int shapes[][2] = {{64, 64}, {104, 40}, {576, 576}, {100, 4000}};
    static const int Ms[] = {2, 7, 13, 24, 41};
    const int MMAX = 41;
    bool ok = true;
    for (size_t si = 0; ok && si < sizeof shapes / sizeof shapes[0]; si++) {
        const int N = shapes[si][0], K = shapes[si][1];
        float *A = malloc((size_t)MMAX * K * sizeof(float));
        float *W = malloc((size_t)N * K * sizeof(float));
        float *ref = malloc((size_t)MMAX * N * sizeof(float));
        float *got = malloc((size_t)MMAX * N * sizeof(float));
        if (!A || !W || !ref || !got) {
            ok = false;
        } else {
            uint64_t r = 0x9e3779b97f4a7c15ull + si;
            for (size_t i = 0; i < (size_t)MMAX * K; i++)
                A[i] = probe_uniform(&r);
            for (size_t i = 0; i < (size_t)N * K; i++)
                W[i] = probe_uniform(&r);
            for (int tb = 0; ok && tb < 2; tb++) {
                for (int m = 0; ok && m < MMAX; m++)
                    ok = rowinv_probe_mm(strategy, 1, N, K, tb, A + (size_t)m * K, W,
                                         ref + (size_t)m * N);
                for (size_t mi = 0; ok && mi < sizeof Ms / sizeof Ms[0]; mi++)
                    ok = rowinv_probe_mm(strategy, Ms[mi], N, K, tb, A, W, got) &&
                         memcmp(got, ref, (size_t)Ms[mi] * N * sizeof(float)) == 0;
            }
        }
        free(A), free(W), free(ref), free(got);
    }
    return ok;
}

static int rowinv_chosen = -1;

static void rowinv_choose(void)
{
    const char *v = getenv("GLLM_ROWINV");
    if (v && strcmp(v, "whole") == 0)
        rowinv_chosen = ROWINV_WHOLE;
    else if (v && strcmp(v, "chunk8") == 0)
        rowinv_chosen = ROWINV_CHUNK8;
    else if (v && strcmp(v, "loops") == 0)
        rowinv_chosen = ROWINV_LOOPS;
    else {
        /* sgemm inside the probe runs on this thread alone */
        const int omp_saved = omp_get_max_threads();
        omp_set_num_threads(1);
        rowinv_chosen = rowinv_probe(ROWINV_WHOLE)    ? ROWINV_WHOLE
                        : rowinv_probe(ROWINV_CHUNK8) ? ROWINV_CHUNK8
                                                      : ROWINV_LOOPS;
        omp_set_num_threads(omp_saved);
    }
}

int gllm_cpu_rowinv_strategy(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, rowinv_choose);
    return rowinv_chosen;
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
        if (mm_gemm_fits(a, batch))
            return mm_gemm(be, C, A, B, a, &d);
        if (a->row_invariant && batch == 1 && !a->trans_a) {
            const int s = gllm_cpu_rowinv_strategy();
            if (s != ROWINV_LOOPS)
                return mm_blas_rowinv(be, C, A, B, a, &d, s == ROWINV_CHUNK8 ? 8 : ROWS_WHOLE);
            return mm_loops(be, C, A, B, a, &d, batch);
        }
        return mm_blas(be, C, A, B, a, &d, batch, 0);
    }
#endif
    return mm_loops(be, C, A, B, a, &d, batch);
}

typedef struct bias_bwd_ctx {
    float *dbias;
    const float *g;
    int M, N;
} bias_bwd_ctx;

/* Columns are split in blocks of 64 and rows summed in order, so the result
 * does not depend on the thread count. */
static void bias_bwd_range(void *args, long b, long e, int tid)
{
    const bias_bwd_ctx *x = args;
    (void)tid;
    for (long blk = b; blk < e; blk++) {
        int c0 = (int)blk * 64, c1 = c0 + 64 < x->N ? c0 + 64 : x->N;
        for (int m = 0; m < x->M; m++) {
            const float *row = x->g + (size_t)m * x->N;
            for (int c = c0; c < c1; c++)
                x->dbias[c] += row[c];
        }
    }
}

gllm_status gllm_cpu_bias_bwd(gllm_backend *be, float *dbias, const void *dout, int M, int N)
{
    if (!dbias || !dout || M < 0 || N <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "bias_bwd: bad arguments (M=%d N=%d)", M, N);
    bias_bwd_ctx x = {dbias, dout, M, N};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, (N + 63) / 64, 1, bias_bwd_range, &x);
    return GLLM_OK;
}

const char *gllm_backend_cpu_rowinv_kernel(gllm_backend *be)
{
    if (!be || be->matmul != gllm_cpu_matmul)
        return "not a CPU backend";
    if (!gllm_cpu_ctx_of(be)->use_blas)
        return "plain loops";
    switch (gllm_cpu_gemm_isa()) {
    case GLLM_GEMM_AVX512: return "gllm sgemm avx512";
    case GLLM_GEMM_AVX2: return "gllm sgemm avx2";
    default: break;
    }
#ifdef GLLM_HAVE_BLAS
    switch (gllm_cpu_rowinv_strategy()) {
    case ROWINV_WHOLE: return "openblas (whole-M tiles)";
    case ROWINV_CHUNK8: return "openblas (8-row calls)";
    default: break;
    }
#endif
    return "plain loops";
}
