/* Shared state and op entry points of the CPU backend (src/backend/cpu). */
#ifndef GLLM_CPU_INTERNAL_H
#define GLLM_CPU_INTERNAL_H

#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/backend.h"
#include "gllm/backend_cpu.h"

/* The backend's thread pool (cpu_pool.c). fn runs items [begin, end) of a
 * range on thread `tid` (0 = the caller, < n_threads): per-thread scratch is
 * indexed by tid. */
typedef struct gllm_cpu_pool gllm_cpu_pool;
typedef void (*gllm_cpu_range_fn)(void *arg, long begin, long end, int tid);
gllm_status gllm_cpu_pool_create(int n_threads, gllm_cpu_pool **out);
void gllm_cpu_pool_free(gllm_cpu_pool *p);
int gllm_cpu_pool_threads(const gllm_cpu_pool *p);
/* Run fn over [0, n) in chunks of `grain` items, claimed by whichever thread
 * is free (the caller too); returns when all are done. Chunks must own their
 * outputs: which thread runs a chunk must not change any result. */
void gllm_cpu_pool_run(gllm_cpu_pool *p, long n, long grain, gllm_cpu_range_fn fn, void *arg);
/* A chunk size for n items of about work_per_item element operations each:
 * small ranges run on the caller alone, larger ones in up to 8 chunks per thread. */
long gllm_cpu_grain(const gllm_cpu_pool *p, long n, double work_per_item);

/* Thread-count defaults (cpu_threads.c), exposed for tests. A CPU list as in
 * sysfs and cpusets ("0-3,8,10-11") into *set: the number of CPUs, or -1 when
 * malformed. */
int gllm_cpu_list_parse(const char *list, cpu_set_t *set);
/* CPUs granted by a cgroup v2 cpu.max line ("max 100000" -> 0 = no limit,
 * "150000 100000" -> 1.5), or v1 cpu.cfs_quota_us / cpu.cfs_period_us
 * (quota -1 -> 0); -1 when malformed. */
double gllm_cpu_quota_v2(const char *cpu_max);
double gllm_cpu_quota_v1(long quota_us, long period_us);
/* The default thread count: OMP_NUM_THREADS's first number when it is one,
 * else n_cores capped by a quota (quota_cpus > 0, rounded up). */
int gllm_cpu_threads_from(const char *omp_num_threads, int n_cores, double quota_cpus);

typedef struct gllm_cpu_ctx {
    int n_threads;
    gllm_cpu_pool *pool;
    bool use_blas;
    /* Per-thread scratch, grown on demand and kept: thread i owns bytes
     * [i * stride, (i + 1) * stride). Ops run one at a time per backend. */
    unsigned char *scratch;
    size_t scratch_bytes, scratch_stride;
    /* A of a row-invariant matmul, packed for cpu_gemm.c's kernel */
    float *gemm_a;
    size_t gemm_a_bytes;
    /* RoPE's rotation per position, [pos][rot_dim/2] pairs (cos, sin) * attn_factor,
     * for the inv_freq (copied) and attn_factor it was built with: the angles of a
     * step are the same in every layer, for q and k (cpu_norm.c) */
    float *rope_tab, *rope_inv;
    int rope_half, rope_npos;
    float rope_attn;
    /* bytes of this backend's live allocations and their peak (device_info) */
    size_t mem_live, mem_peak;
    char device_name[128];      /* the CPU model, read once from /proc/cpuinfo */
} gllm_cpu_ctx;

/* tanh-approximated GELU ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
#define GLLM_GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GLLM_GELU_K1 0.044715f

/* exp(x) as 2^n * 2^f with |f| <= 1/2 and a degree-6 Taylor polynomial of 2^f
 * (relative error ~2e-7): plain arithmetic that vectorises (the backend is
 * built with -fno-trapping-math so the range clamps become selects), where
 * libm's expf and tanhf are scalar calls. Used by GELU, SiLU and softmaxes. */
static inline float gllm_cpu_exp(float x)
{
    /* the ordered compare sends NaN to the clamp, so the exponent bits below
     * are always in range (a NaN cast to int is undefined); NaN returns NaN */
    const float xc = x > -87.0f ? (x < 88.0f ? x : 88.0f) : -87.0f;
    const float t = xc * 1.4426950408889634f;
    /* round to nearest by adding and removing 1.5 * 2^23: no libm call */
    const float n = (t + 12582912.0f) - 12582912.0f, f = t - n;
    float p = 1.5252733804059841e-5f;
    p = p * f + 1.5403530393381608e-4f;
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) * (1 << 23)};
    return x == x ? p * scale.f : x;
}

/* tanh from exp: absolute error ~2e-7, which is what GELU's 1 + tanh sees */
static inline float gllm_cpu_tanh(float u)
{
    u = u < -9.0f ? -9.0f : (u > 9.0f ? 9.0f : u);
    return 1.0f - 2.0f / (gllm_cpu_exp(2.0f * u) + 1.0f);
}

static inline float gllm_cpu_gelu(float x)
{
    float u = GLLM_GELU_K0 * (x + GLLM_GELU_K1 * x * x * x);
    return 0.5f * x * (1.0f + gllm_cpu_tanh(u));
}

/* q.k and friends for attention: eight independent partial sums let the
 * compiler use SIMD lanes without -ffast-math; the summation order is fixed,
 * so training attention, paged attention and decode give repeatable results. */
static inline float gllm_cpu_dot(const float *a, const float *b, int D)
{
    float acc[8] = {0};
    int d = 0;
    for (; d + 8 <= D; d += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += a[d + l] * b[d + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; d < D; d++)
        s += a[d] * b[d];
    return s;
}

/* Eight floats as one value (GCC/clang vector extension): lane-wise arithmetic
 * that compiles to one AVX register or two SSE ones. GLLM_V8F_AT(p) is the eight
 * floats at any float pointer p (unaligned, may alias), to read or assign. */
typedef float gllm_v8f __attribute__((vector_size(32)));
typedef float gllm_v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
#define GLLM_V8F_AT(p) (*(gllm_v8f_u *)(p))

/* Hot loops compiled twice, for x86-64-v3 (AVX2) and for the baseline the rest of
 * the build targets, the version picked once at load time from the CPU (GCC's
 * function multiversioning): the binaries still run on any x86-64. Both versions
 * do the same operations in the same order (ISO C mode: no contraction into
 * FMA), so they give the same bits. */
#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer: the ifunc resolvers of target_clones run before its runtime
 * is set up and crash every program at load, so the TSan build has one version */
#define GLLM_CPU_CLONES
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define GLLM_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define GLLM_CPU_CLONES
#endif

static inline gllm_cpu_ctx *gllm_cpu_ctx_of(gllm_backend *be) { return (gllm_cpu_ctx *)be->ctx; }

/* gllm_cpu_pool_run on be's pool, chunked by gllm_cpu_grain */
static inline void gllm_cpu_for(gllm_backend *be, long n, double work_per_item,
                                gllm_cpu_range_fn fn, void *arg)
{
    gllm_cpu_pool *p = gllm_cpu_ctx_of(be)->pool;
    gllm_cpu_pool_run(p, n, gllm_cpu_grain(p, n, work_per_item), fn, arg);
}

/* Make sure every thread has `bytes_per_thread` of scratch (64-byte aligned);
 * returns NULL after gllm_fail on out-of-memory. */
unsigned char *gllm_cpu_scratch(gllm_backend *be, size_t bytes_per_thread, const char *op);

/* queues, events and device facts (cpu_queue.c) */
void gllm_cpu_queue_ops(gllm_backend *be);

/* gllm's own sgemm (cpu_gemm.c): every element of C one FMA chain over k in
 * order, so rows never depend on M or on their neighbours. The kernel is
 * picked once per process from the CPU (AVX-512, else AVX2 + FMA, else none);
 * GLLM_GEMM=avx2 forces the AVX2 kernel, GLLM_GEMM=off turns it off. */
enum { GLLM_GEMM_NONE = 0, GLLM_GEMM_AVX2 = 1, GLLM_GEMM_AVX512 = 2 };
int gllm_cpu_gemm_isa(void);
int gllm_cpu_gemm_nr(int isa);                /* columns per panel (a task) */
size_t gllm_cpu_gemm_scratch_bytes(int isa);  /* per thread: one packed block of B */
typedef struct gllm_cpu_gemm_call {
    int isa, M, N, K;
    bool trans_b; /* B is [N][K] (ldb >= K), else [K][N] (ldb >= N) */
    const float *A, *B;
    const float *Bpk; /* B packed (gllm_cpu_gemm_pack_panel), or NULL: pack per call */
    float *Apk;       /* A packed by gllm_cpu_gemm_pack_a (gllm_cpu_gemm_apack_bytes) */
    const float *R;   /* residual [M][ldc] added after the sum, or NULL */
    float *C;
    long lda, ldb, ldc;
} gllm_cpu_gemm_call;
int gllm_cpu_gemm_mr(int isa); /* rows per register tile (a group of A) */
size_t gllm_cpu_gemm_apack_bytes(int isa, int M, int K);
void gllm_cpu_gemm_pack_a(const gllm_cpu_gemm_call *g, int group);
/* bytes of B [N, K] packed for `isa`'s kernel, and one panel of it into dst */
size_t gllm_cpu_gemm_packed_bytes(int isa, int N, int K);
void gllm_cpu_gemm_pack_panel(const gllm_cpu_gemm_call *g, int panel, float *dst);
/* C[:, panel*nr ..) = A op(B) for one panel of columns (beta 0, alpha 1);
 * Bp: gllm_cpu_gemm_scratch_bytes of 64-byte-aligned scratch */
void gllm_cpu_gemm_panel(const gllm_cpu_gemm_call *g, int panel, float *Bp);

/* How row-invariant matmuls run in this process (with BLAS), chosen once by a
 * probe of OpenBLAS (cpu_matmul.c): 0 whole-M sgemm tiles, 1 calls of 8 rows,
 * 2 gllm's plain loops; GLLM_ROWINV=whole|chunk8|loops forces one. */
int gllm_cpu_rowinv_strategy(void);
size_t gllm_cpu_packed_b_bytes(gllm_backend *be, int N, int K);
gllm_status gllm_cpu_pack_b(gllm_backend *be, void *dst, const void *B, int N, int K);
gllm_status gllm_cpu_matmul(gllm_backend *be, void *C, const void *A, const void *B,
                            const gllm_matmul_args *a);
gllm_status gllm_cpu_bias_bwd(gllm_backend *be, float *dbias, const void *dout, int M, int N);

gllm_status gllm_cpu_embed_fwd(gllm_backend *be, void *out, const int32_t *ids,
                               const int32_t *pos, const void *wte, const void *wpe, int N,
                               int C);
gllm_status gllm_cpu_embed_bwd(gllm_backend *be, float *dwte, float *dwpe, const void *dout,
                               const int32_t *ids, const int32_t *pos, int N, int C, int V);

gllm_status gllm_cpu_layernorm_fwd(gllm_backend *be, void *out, float *mean, float *rstd,
                                   const void *inp, const void *w, const void *b, int N, int C,
                                   float eps);
gllm_status gllm_cpu_layernorm_bwd(gllm_backend *be, void *dinp, float *dw, float *db,
                                   const void *dout, const void *inp, const void *w,
                                   const float *mean, const float *rstd, int N, int C);
gllm_status gllm_cpu_rmsnorm_fwd(gllm_backend *be, void *out, float *rstd, const void *inp,
                                 const void *w, int N, int C, float eps);
gllm_status gllm_cpu_rmsnorm_bwd(gllm_backend *be, void *dinp, float *dw, const void *dout,
                                 const void *inp, const void *w, const float *rstd, int N,
                                 int C);
gllm_status gllm_cpu_rope_fwd(gllm_backend *be, void *x, const int32_t *pos,
                              const gllm_rope_args *a);
gllm_status gllm_cpu_rope_bwd(gllm_backend *be, void *dx, const int32_t *pos,
                              const gllm_rope_args *a);

gllm_status gllm_cpu_attention_fwd(gllm_backend *be, void *out, float *lse, const void *qkv,
                                   const int32_t *pos, const gllm_attn_shape *s);
gllm_status gllm_cpu_attention_bwd(gllm_backend *be, void *dqkv, const void *dout,
                                   const void *qkv, const void *out, const float *lse,
                                   const int32_t *pos, const gllm_attn_shape *s);
/* First key index token n (global, its row starting at row0) may attend to. */
static inline long gllm_cpu_attn_lo(long n, long row0, const int32_t *pos, int window)
{
    long lo = n - pos[n];
    if (window > 0 && n - window + 1 > lo)
        lo = n - window + 1;
    return lo < row0 ? row0 : lo;
}

/* The sgemm-blocked attention used with OpenBLAS (cpu_attention_blas.c); the
 * loop versions above remain the reference. */
gllm_status gllm_cpu_attention_fwd_blas(gllm_backend *be, float *out, float *lse, const float *x,
                                        const int32_t *pos, const gllm_attn_shape *s);
gllm_status gllm_cpu_attention_bwd_blas(gllm_backend *be, float *dx, const float *dout,
                                        const float *x, const float *out, const float *lse,
                                        const int32_t *pos, const gllm_attn_shape *s);
gllm_status gllm_cpu_kv_store(gllm_backend *be, gllm_kv_cache *kv, const void *qkv,
                              const int32_t *slot, int n_tokens, int Hq);
gllm_status gllm_cpu_attention_decode(gllm_backend *be, void *out, const void *qkv,
                                      const gllm_kv_cache *kv, const int32_t *block_table,
                                      int max_blocks, const int32_t *seq_len, int n_seq, int Hq,
                                      int window, float scale);

gllm_status gllm_cpu_gelu_fwd(gllm_backend *be, void *out, const void *inp, size_t n);
gllm_status gllm_cpu_gelu_bwd(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                              size_t n);
gllm_status gllm_cpu_swiglu_fwd(gllm_backend *be, void *out, const void *inp, int N, int I);
gllm_status gllm_cpu_swiglu_bwd(gllm_backend *be, void *dinp, const void *inp,
                                const void *dout, int N, int I);
gllm_status gllm_cpu_add(gllm_backend *be, void *out, const void *a, const void *b, size_t n);

gllm_status gllm_cpu_xent_fwd_bwd(gllm_backend *be, float *loss, void *logits,
                                  const int32_t *targets, const float *loss_mask, int N, int V,
                                  float dlogits_scale);
gllm_status gllm_cpu_sample(gllm_backend *be, int32_t *out_ids, const void *logits, int N,
                            int V, const gllm_sample_args *a, const uint64_t *seeds);

gllm_status gllm_cpu_attention_paged(gllm_backend *be, void *out, const void *qkv,
                                     const gllm_kv_cache *kv, const gllm_paged_attn_args *a);
gllm_status gllm_cpu_sample_rows(gllm_backend *be, int32_t *out_ids, float *out_logprob,
                                 int32_t *top_ids, float *top_lp, int max_top, const void *logits,
                                 int N, int V, const gllm_sample_params *params,
                                 const int32_t *pen_ids, const int32_t *pen_off);

gllm_status gllm_cpu_sumsq(gllm_backend *be, float *out, const float *x, size_t n);
gllm_status gllm_cpu_adamw(gllm_backend *be, void *params, float *master, const float *grads,
                           float *m, float *v, const gllm_param_segment *segs, int n_segs,
                           const gllm_adamw_args *a);

#endif
