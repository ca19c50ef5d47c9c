/* gllm's own sgemm for the row-invariant matmul (inference): C = A op(B),
 * every element of C one chain of fused multiply-adds over k = 0..K-1 in
 * order, started from zero. Nothing about that chain depends on M, on where a
 * row or column sits in the call, on the tiling or on the thread count, so a
 * row's result is the same bits however many other rows share the call: batch
 * invariance by construction, on every x86-64 CPU with AVX2 or AVX-512,
 * where OpenBLAS's answer depends on its kernel for the CPU (cpu_matmul.c).
 *
 * Layout (GotoBLAS/BLIS style, no packing of A): a task is one panel of NR
 * columns of C. For each block of KC values of k the panel's slice of B is
 * packed into [KC][NR] (KC * NR * 4 bytes: 24 KiB with AVX-512, in L1), then
 * every group of MR rows of A runs the micro-kernel: MR x NR accumulators in
 * registers, per k one broadcast of A[i][k] per row and NR/lanes loads of B.
 * Between k blocks the partial sums wait in C itself; reloading a float and
 * continuing the chain is the same chain. Rows past the last full group run
 * the same micro-kernel with fewer rows (each row's instructions unchanged),
 * columns past N are zero in the packed panel and masked on store. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEMM_X86 1
#include <immintrin.h>
#endif

/* k block (the packing scratch holds one). Blocks only decide where a chain's
 * partial sum waits in C between runs of the micro-kernel; storing a float and
 * reloading it changes nothing, so the bits never depend on the block size. */
#define GEMM_KC 192
/* with B packed once (inference), the AVX2 kernel runs K up to this in one block:
 * no reloads of C in between (on Zen 3, K = 576 in one block ran ~4% faster than
 * three of 192, more on the vocabulary head whose C rows are pages apart) */
#define GEMM_KC_PACKED_AVX2 768

#ifdef GEMM_X86
/* ---------------------------------------------------------------- AVX-512: 12 x 32 */
#define G512_MR 12
#define G512_NR 32

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
ukr512(const int mr, int kc, const float *Ap, const float *Bp, float *C, long ldc, bool first,
       const float *R, long ldr, __mmask16 k0, __mmask16 k1)
{
    __m512 c0[G512_MR], c1[G512_MR];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        if (first) {
            c0[i] = _mm512_setzero_ps();
            c1[i] = _mm512_setzero_ps();
        } else {
            c0[i] = _mm512_maskz_loadu_ps(k0, C + i * ldc);
            c1[i] = _mm512_maskz_loadu_ps(k1, C + i * ldc + 16);
        }
    }
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(Bp + (long)k * G512_NR);
        const __m512 b1 = _mm512_loadu_ps(Bp + (long)k * G512_NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(Ap[(long)k * G512_MR + i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    if (R) /* the residual, added after the last block as a separate pass would */
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(k0, R + i * ldr));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(k1, R + i * ldr + 16));
        }
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(C + i * ldc, k0, c0[i]);
        _mm512_mask_storeu_ps(C + i * ldc + 16, k1, c1[i]);
    }
}

#define UKR512_N(MR)                                                                            \
    __attribute__((target("avx512f"))) static void ukr512_##MR(                                 \
        int kc, const float *Ap, const float *Bp, float *C, long ldc, bool first,               \
        const float *R, long ldr, __mmask16 k0, __mmask16 k1)                                   \
    {                                                                                           \
        ukr512(MR, kc, Ap, Bp, C, ldc, first, R, ldr, k0, k1);                                  \
    }
UKR512_N(1)
UKR512_N(2)
UKR512_N(3)
UKR512_N(4)
UKR512_N(5)
UKR512_N(6)
UKR512_N(7)
UKR512_N(8)
UKR512_N(9)
UKR512_N(10)
UKR512_N(11)
UKR512_N(12)
typedef void (*ukr512_fn)(int, const float *, const float *, float *, long, bool,
                          const float *, long, __mmask16, __mmask16);
static const ukr512_fn ukr512_tab[G512_MR + 1] = {
    NULL,       ukr512_1, ukr512_2, ukr512_3, ukr512_4,  ukr512_5,  ukr512_6,
    ukr512_7,   ukr512_8, ukr512_9, ukr512_10, ukr512_11, ukr512_12};

/* ---------------------------------------------------------------- AVX2 + FMA: 6 x 16 */
#define G256_MR 6
#define G256_NR 16

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
ukr256(const int mr, const bool full, int kc, const float *Ap, const float *Bp, float *C,
       long ldc, bool first, const float *R, long ldr, __m256i k0, __m256i k1)
{
    __m256 c0[G256_MR], c1[G256_MR];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (first) {
            c0[i] = _mm256_setzero_ps();
            c1[i] = _mm256_setzero_ps();
        } else {
            c0[i] = full ? _mm256_loadu_ps(C + i * ldc) : _mm256_maskload_ps(C + i * ldc, k0);
            c1[i] = full ? _mm256_loadu_ps(C + i * ldc + 8)
                         : _mm256_maskload_ps(C + i * ldc + 8, k1);
        }
    }
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(Bp + (long)k * G256_NR);
        const __m256 b1 = _mm256_loadu_ps(Bp + (long)k * G256_NR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            const __m256 a = _mm256_broadcast_ss(Ap + (long)k * G256_MR + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    if (R)
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            c0[i] = _mm256_add_ps(c0[i], full ? _mm256_loadu_ps(R + i * ldr)
                                              : _mm256_maskload_ps(R + i * ldr, k0));
            c1[i] = _mm256_add_ps(c1[i], full ? _mm256_loadu_ps(R + i * ldr + 8)
                                              : _mm256_maskload_ps(R + i * ldr + 8, k1));
        }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (full) {
            _mm256_storeu_ps(C + i * ldc, c0[i]);
            _mm256_storeu_ps(C + i * ldc + 8, c1[i]);
        } else {
            _mm256_maskstore_ps(C + i * ldc, k0, c0[i]);
            _mm256_maskstore_ps(C + i * ldc + 8, k1, c1[i]);
        }
    }
}

/* ukr256_MR: a full panel (plain loads and stores of C); ukr256m_MR: the last,
 * partial panel (masked). The two give the same bits; the split is for AMD
 * Zen, where a masked store costs about as much as a dozen FMAs and masking
 * every tile cost ~10% of the kernel. */
#define UKR256_N(MR)                                                                            \
    __attribute__((target("avx2,fma"))) static void ukr256_##MR(                                \
        int kc, const float *Ap, const float *Bp, float *C, long ldc, bool first,               \
        const float *R, long ldr, __m256i k0, __m256i k1)                                       \
    {                                                                                           \
        ukr256(MR, true, kc, Ap, Bp, C, ldc, first, R, ldr, k0, k1);                            \
    }                                                                                           \
    __attribute__((target("avx2,fma"))) static void ukr256m_##MR(                               \
        int kc, const float *Ap, const float *Bp, float *C, long ldc, bool first,               \
        const float *R, long ldr, __m256i k0, __m256i k1)                                       \
    {                                                                                           \
        ukr256(MR, false, kc, Ap, Bp, C, ldc, first, R, ldr, k0, k1);                           \
    }
UKR256_N(1)
UKR256_N(2)
UKR256_N(3)
UKR256_N(4)
UKR256_N(5)
UKR256_N(6)
typedef void (*ukr256_fn)(int, const float *, const float *, float *, long, bool, const float *,
                          long, __m256i, __m256i);
static const ukr256_fn ukr256_tab[2][G256_MR + 1] = {
    {NULL, ukr256m_1, ukr256m_2, ukr256m_3, ukr256m_4, ukr256m_5, ukr256m_6},
    {NULL, ukr256_1, ukr256_2, ukr256_3, ukr256_4, ukr256_5, ukr256_6}};

/* lanes [0, n) of an 8-lane mask (n clamped to 0..8) */
__attribute__((target("avx2"))) static __m256i mask8(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}
#endif /* GEMM_X86 */

/* ---------------------------------------------------------------- dispatch */
static int gemm_isa_chosen = -1;

static void gemm_choose(void)
{
    int isa = GLLM_GEMM_NONE;
#ifdef GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        isa = GLLM_GEMM_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        isa = GLLM_GEMM_AVX2;
    /* GLLM_GEMM forces a narrower kernel (tests run both) or turns it off */
    const char *v = getenv("GLLM_GEMM");
    if (v && strcmp(v, "off") == 0)
        isa = GLLM_GEMM_NONE;
    else if (v && strcmp(v, "avx2") == 0 && isa != GLLM_GEMM_NONE)
        isa = GLLM_GEMM_AVX2;
#endif
    gemm_isa_chosen = isa;
}

int gllm_cpu_gemm_isa(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, gemm_choose);
    return gemm_isa_chosen;
}

int gllm_cpu_gemm_mr(int isa)
{
#ifdef GEMM_X86
    if (isa == GLLM_GEMM_AVX512)
        return G512_MR;
    if (isa == GLLM_GEMM_AVX2)
        return G256_MR;
#endif
    (void)isa;
    return 0;
}

size_t gllm_cpu_gemm_apack_bytes(int isa, int M, int K)
{
    const size_t mr = (size_t)gllm_cpu_gemm_mr(isa);
    return mr ? ((size_t)M + mr - 1) / mr * mr * (size_t)K * sizeof(float) : 0;
}

/* dst[k * w + r] = src[r * ld + k] for r < rows, k < len: rows of a row-major
 * matrix become columns of a panel w floats wide (w >= rows), four rows by
 * four k at a time with one 4x4 transpose in SSE registers */
static void gemm_transpose(float *dst, int w, const float *src, long ld, int rows, int len)
{
    int r = 0;
#ifdef GEMM_X86
    for (; r + 4 <= rows; r += 4) {
        const float *s0 = src + (size_t)r * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
        int k = 0;
        for (; k + 4 <= len; k += 4) {
            __m128 a = _mm_loadu_ps(s0 + k), b = _mm_loadu_ps(s1 + k);
            __m128 c = _mm_loadu_ps(s2 + k), d = _mm_loadu_ps(s3 + k);
            _MM_TRANSPOSE4_PS(a, b, c, d);
            float *o = dst + (size_t)k * w + r;
            _mm_storeu_ps(o, a);
            _mm_storeu_ps(o + w, b);
            _mm_storeu_ps(o + 2 * w, c);
            _mm_storeu_ps(o + 3 * w, d);
        }
        for (; k < len; k++) {
            float *o = dst + (size_t)k * w + r;
            o[0] = s0[k], o[1] = s1[k], o[2] = s2[k], o[3] = s3[k];
        }
    }
#endif
    for (; r < rows; r++)
        for (int k = 0; k < len; k++)
            dst[(size_t)k * w + r] = src[(size_t)r * ld + k];
}

/* Rows [group * mr, + mr) of A into g->Apk as [K][mr] (rows past M zero), so
 * the micro-kernel's broadcasts of one k read consecutive floats. */
void gllm_cpu_gemm_pack_a(const gllm_cpu_gemm_call *g, int group)
{
    const int mr = gllm_cpu_gemm_mr(g->isa), i0 = group * mr;
    const int rows = g->M - i0 < mr ? g->M - i0 : mr;
    float *dst = (float *)g->Apk + (size_t)i0 * g->K;
    if (rows < mr)
        memset(dst, 0, (size_t)mr * g->K * sizeof(float));
    gemm_transpose(dst, mr, g->A + (size_t)i0 * g->lda, g->lda, rows, g->K);
}

int gllm_cpu_gemm_nr(int isa)
{
#ifdef GEMM_X86
    if (isa == GLLM_GEMM_AVX512)
        return G512_NR;
    if (isa == GLLM_GEMM_AVX2)
        return G256_NR;
#endif
    (void)isa;
    return 0;
}

size_t gllm_cpu_gemm_packed_bytes(int isa, int N, int K)
{
    const size_t nr = (size_t)gllm_cpu_gemm_nr(isa);
    return nr ? ((size_t)N + nr - 1) / nr * nr * (size_t)K * sizeof(float) : 0;
}

size_t gllm_cpu_gemm_scratch_bytes(int isa)
{
    return (size_t)GEMM_KC * (size_t)gllm_cpu_gemm_nr(isa) * sizeof(float);
}

/* B's columns [n0, n0 + nr) for k in [k0, k0 + kc) into Bp[kc][nr], zero past N */
static void gemm_pack_b(float *Bp, const gllm_cpu_gemm_call *g, int nr, int n0, int k0, int kc)
{
    const int nv = g->N - n0 < nr ? g->N - n0 : nr;
    if (g->trans_b) { /* B is [N][K]: row n holds column n of op(B) */
        if (nv < nr)
            memset(Bp, 0, (size_t)kc * nr * sizeof(float));
        gemm_transpose(Bp, nr, g->B + (size_t)n0 * g->ldb + k0, g->ldb, nv, kc);
    } else { /* B is [K][N] */
        for (int k = 0; k < kc; k++) {
            float *dst = Bp + (size_t)k * nr;
            memcpy(dst, g->B + (size_t)(k0 + k) * g->ldb + n0, (size_t)nv * sizeof(float));
            if (nv < nr)
                memset(dst + nv, 0, (size_t)(nr - nv) * sizeof(float));
        }
    }
}

#ifdef GEMM_X86
__attribute__((target("avx512f"))) static void rows512(const gllm_cpu_gemm_call *g, int n0,
                                                       int nv, int k0, int kc, const float *Bp)
{
    const __mmask16 m0 = nv >= 16 ? 0xffff : (__mmask16)((1u << nv) - 1);
    const __mmask16 m1 = nv >= 32 ? 0xffff : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
    const bool last = k0 + kc == g->K;
    for (int i = 0; i < g->M; i += G512_MR) {
        const int mr = g->M - i < G512_MR ? g->M - i : G512_MR;
        ukr512_tab[mr](kc, g->Apk + ((size_t)i * g->K + (size_t)k0 * G512_MR), Bp,
                       g->C + (size_t)i * g->ldc + n0, g->ldc, k0 == 0,
                       last && g->R ? g->R + (size_t)i * g->ldc + n0 : NULL, g->ldc, m0, m1);
    }
}

__attribute__((target("avx2,fma"))) static void rows256(const gllm_cpu_gemm_call *g, int n0,
                                                        int nv, int k0, int kc, const float *Bp)
{
    const __m256i m0 = mask8(nv), m1 = mask8(nv - 8);
    const bool last = k0 + kc == g->K;
    for (int i = 0; i < g->M; i += G256_MR) {
        const int mr = g->M - i < G256_MR ? g->M - i : G256_MR;
        ukr256_tab[nv >= G256_NR][mr](kc, g->Apk + ((size_t)i * g->K + (size_t)k0 * G256_MR), Bp,
                       g->C + (size_t)i * g->ldc + n0, g->ldc, k0 == 0,
                       last && g->R ? g->R + (size_t)i * g->ldc + n0 : NULL, g->ldc, m0, m1);
    }
}
#endif

/* The packed layout: panel p of nr columns at p * K * nr, inside it k-major
 * rows of nr floats, so the block of k0..k0+kc is [kc][nr] at k0 * nr. */
void gllm_cpu_gemm_pack_panel(const gllm_cpu_gemm_call *g, int panel, float *dst)
{
    const int nr = gllm_cpu_gemm_nr(g->isa);
    float *p = dst + (size_t)panel * g->K * nr;
    for (int k0 = 0; k0 < g->K; k0 += GEMM_KC)
        gemm_pack_b(p + (size_t)k0 * nr, g, nr, panel * nr, k0,
                    g->K - k0 < GEMM_KC ? g->K - k0 : GEMM_KC);
}

void gllm_cpu_gemm_panel(const gllm_cpu_gemm_call *g, int panel, float *Bp)
{
#ifdef GEMM_X86
    const int nr = gllm_cpu_gemm_nr(g->isa);
    const int n0 = panel * nr, nv = g->N - n0 < nr ? g->N - n0 : nr;
    const int kb = g->Bpk && g->isa == GLLM_GEMM_AVX2 && g->K <= GEMM_KC_PACKED_AVX2 ? g->K
                                                                                  : GEMM_KC;
    for (int k0 = 0; k0 < g->K; k0 += kb) {
        const int kc = g->K - k0 < kb ? g->K - k0 : kb;
        if (g->Bpk)
            Bp = (float *)g->Bpk + ((size_t)panel * g->K + k0) * nr;
        else
            gemm_pack_b(Bp, g, nr, n0, k0, kc);
        if (g->isa == GLLM_GEMM_AVX512)
            rows512(g, n0, nv, k0, kc, Bp);
        else
            rows256(g, n0, nv, k0, kc, Bp);
    }
#else
    (void)g, (void)panel, (void)Bp;
#endif
}
