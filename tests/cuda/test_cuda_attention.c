/* CUDA attention (forward, backward, kv_store, paged decode) against the CPU
 * backend and an fp64 host reference on fresh random bf16-representable inputs:
 * head dims with and without a tensor-core kernel, lengths that are not tile
 * multiples, GQA ratios 1..8, packed documents with random boundaries, sliding
 * windows. Outputs are poisoned (NaN) first, so an unwritten element fails; every
 * op runs twice and must give identical bytes. Skips without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/backend.h"
#include "test_util.h"

static gllm_backend *gpu, *cpu;

static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gllm_bf16_to_f32(gllm_f32_to_bf16(x[i]));
}

/* Device buffer of `bytes`, filled with 0xff bytes (NaN in bf16 and f32). */
static void *dev_poisoned(gllm_backend *be, size_t bytes)
{
    void *p = NULL;
    if (be->alloc(be, bytes, "test buffer", &p) != GLLM_OK) {
        printf("alloc of %zu bytes failed: %s\n", bytes, gllm_last_error());
        exit(1);
    }
    unsigned char *h = malloc(bytes);
    memset(h, 0xff, bytes);
    if (be->upload(be, p, h, bytes) != GLLM_OK) {
        printf("upload failed: %s\n", gllm_last_error());
        exit(1);
    }
    free(h);
    return p;
}
static void *dev_act(gllm_backend *be, const float *x, size_t n)
{
    void *p = dev_poisoned(be, n * gllm_dtype_size(be->act_dtype));
    CHECK_OK(be->upload_f32(be, p, x, n));
    return p;
}
static void *dev_bytes(gllm_backend *be, const void *x, size_t bytes)
{
    void *p = dev_poisoned(be, bytes);
    CHECK_OK(be->upload(be, p, x, bytes));
    return p;
}

/* Random packed documents: each row starts a document at token 0 and at random
 * later tokens; lengths range from 1 to half the row. */
static void make_pos(int32_t *pos, int B, int T, int packed)
{
    for (int b = 0; b < B; b++) {
        int left = 0;
        for (int t = 0; t < T; t++) {
            if (t == 0 || (packed && left == 0)) {
                pos[b * T + t] = 0;
                left = packed ? 1 + (int)(test_rand_u64() % (uint64_t)(T / 2 + 1)) : T;
            } else {
                pos[b * T + t] = pos[b * T + t - 1] + 1;
            }
            left--;
        }
    }
}

static long ref_lo(long n, long row0, const int32_t *pos, int window)
{
    long lo = n - pos[n];
    if (window > 0 && n - window + 1 > lo)
        lo = n - window + 1;
    return lo < row0 ? row0 : lo;
}

static double dotd(const float *a, const float *b, int D)
{
    double s = 0;
    for (int d = 0; d < D; d++)
        s += (double)a[d] * b[d];
    return s;
}

/* fp64 forward and backward of one shape; outputs converted to float. */
static void reference(const gllm_attn_shape *s, const float *qkv, const int32_t *pos,
                      const float *dout, float *out, float *lse, float *dqkv)
{
    const int T = s->T, Hq = s->Hq, Hkv = s->Hkv, D = s->D, G = Hq / Hkv;
    const long N = (long)s->B * T, W = (long)(Hq + 2 * Hkv) * D;
    double *p = malloc(sizeof(double) * T), *dp = malloc(sizeof(double) * T);
    double *acc = calloc((size_t)N * W, sizeof(double));
    for (long n = 0; n < N; n++) {
        const long lo = ref_lo(n, n / T * T, pos, s->window);
        for (int h = 0; h < Hq; h++) {
            const int g = h / G;
            const float *q = qkv + n * W + (long)h * D, *go = dout + n * Hq * D + (long)h * D;
            double mx = -INFINITY, sum = 0, di = 0;
            for (long m = lo; m <= n; m++) {
                p[m - lo] = s->scale * dotd(q, qkv + m * W + (long)(Hq + g) * D, D);
                if (p[m - lo] > mx)
                    mx = p[m - lo];
            }
            for (long m = lo; m <= n; m++)
                sum += (p[m - lo] = exp(p[m - lo] - mx));
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (long m = lo; m <= n; m++)
                    o += p[m - lo] / sum * qkv[m * W + (long)(Hq + Hkv + g) * D + d];
                out[n * Hq * D + (long)h * D + d] = (float)o;
                di += o * go[d];
            }
            lse[n * Hq + h] = (float)(mx + log(sum));
            for (long m = lo; m <= n; m++) {
                const double pm = p[m - lo] / sum;
                dp[m - lo] = pm * (dotd(go, qkv + m * W + (long)(Hq + Hkv + g) * D, D) - di);
                for (int d = 0; d < D; d++) {
                    acc[n * W + (long)h * D + d] +=
                        s->scale * dp[m - lo] * qkv[m * W + (long)(Hq + g) * D + d];
                    acc[m * W + (long)(Hq + g) * D + d] += s->scale * dp[m - lo] * q[d];
                    acc[m * W + (long)(Hq + Hkv + g) * D + d] += pm * go[d];
                }
            }
        }
    }
    for (long i = 0; i < N * W; i++)
        dqkv[i] = (float)acc[i];
    free(p);
    free(dp);
    free(acc);
}

/* Relative error over columns [c0, c1) of an [N, W] matrix. */
static double rel_cols(const float *a, const float *ref, long N, long W, long c0, long c1)
{
    double num = 0, den = 0;
    for (long n = 0; n < N; n++)
        for (long c = c0; c < c1; c++) {
            double d = (double)a[n * W + c] - ref[n * W + c];
            num += d * d;
            den += (double)ref[n * W + c] * ref[n * W + c];
        }
    return den > 0 ? sqrt(num / den) : (num == 0 ? 0 : INFINITY);
}

/* Root mean square over columns [c0, c1) of an [N, W] matrix. */
static double rms_cols(const float *a, long N, long W, long c0, long c1)
{
    double s = 0;
    for (long n = 0; n < N; n++)
        for (long c = c0; c < c1; c++)
            s += (double)a[n * W + c] * a[n * W + c];
    return N * (c1 - c0) > 0 ? sqrt(s / (double)(N * (c1 - c0))) : 0;
}

#define CHECK_COLS(a, ref, N, W, c0, c1, what)                                                \
    do {                                                                                      \
        double e_ = rel_cols(a, ref, N, W, c0, c1);                                           \
        CHECK_MSG(e_ <= 1e-2, "%s: rel_err %.3e", what, e_);                                  \
    } while (0)

/* dq and dk where every row sees one key (T = 1): softmax is then constant, so
 * both are exactly zero and a relative error has no denominator. The result
 * must then be zero up to rounding, measured against dv's size (the same
 * dout, through the same probabilities): rms(dq) <= 1e-2 rms(dv). */
#define CHECK_GRAD_COLS(a, ref, N, W, c0, c1, yard, what)                                     \
    do {                                                                                      \
        if (rms_cols(ref, N, W, c0, c1) > 0) {                                                \
            CHECK_COLS(a, ref, N, W, c0, c1, what);                                           \
        } else {                                                                              \
            double z_ = rms_cols(a, N, W, c0, c1);                                            \
            CHECK_MSG(z_ <= 1e-2 * (yard), "%s: exactly 0, got rms %.3e (dv rms %.3e)", what, \
                      z_, (yard));                                                            \
        }                                                                                     \
    } while (0)

typedef struct attn_case {
    int B, T, Hq, Hkv, D, window, packed;
} attn_case;

static void run_case(const attn_case *c)
{
    const gllm_attn_shape s = {c->B, c->T, c->Hq, c->Hkv, c->D, c->window,
                               1.0f / sqrtf((float)c->D)};
    const long N = (long)c->B * c->T, W = (long)(c->Hq + 2 * c->Hkv) * c->D;
    const long NO = N * c->Hq * c->D, NL = N * c->Hq;
    float *qkv = malloc(sizeof(float) * N * W), *dout = malloc(sizeof(float) * NO);
    int32_t *pos = malloc(sizeof(int32_t) * N);
    test_fill(qkv, N * W, 1.5f);
    test_fill(dout, NO, 1.0f);
    round_bf16(qkv, N * W);
    round_bf16(dout, NO);
    make_pos(pos, c->B, c->T, c->packed);

    float *r_out = malloc(sizeof(float) * NO), *r_lse = malloc(sizeof(float) * NL);
    float *r_dqkv = malloc(sizeof(float) * N * W);
    reference(&s, qkv, pos, dout, r_out, r_lse, r_dqkv);

    float *g_out = malloc(sizeof(float) * NO), *g_lse = malloc(sizeof(float) * NL);
    float *g_dqkv = malloc(sizeof(float) * N * W);
    float *c_out = malloc(sizeof(float) * NO), *c_lse = malloc(sizeof(float) * NL);
    float *c_dqkv = malloc(sizeof(float) * N * W);
    gllm_backend *bes[2] = {gpu, cpu};
    float *outs[2] = {g_out, c_out}, *lses[2] = {g_lse, c_lse}, *dqkvs[2] = {g_dqkv, c_dqkv};
    for (int k = 0; k < 2; k++) {
        gllm_backend *be = bes[k];
        const size_t es = gllm_dtype_size(be->act_dtype);
        void *d_qkv = dev_act(be, qkv, N * W), *d_dout = dev_act(be, dout, NO);
        void *d_pos = dev_bytes(be, pos, sizeof(int32_t) * N);
        void *d_out = dev_poisoned(be, NO * es), *d_lse = dev_poisoned(be, NL * sizeof(float));
        void *d_dqkv = dev_poisoned(be, N * W * es);
        CHECK_OK(be->attention_fwd(be, d_out, d_lse, d_qkv, d_pos, &s));
        CHECK_OK(be->attention_bwd(be, d_dqkv, d_dout, d_qkv, d_out, d_lse, d_pos, &s));
        CHECK_OK(be->download_f32(be, outs[k], d_out, NO));
        CHECK_OK(be->download(be, lses[k], d_lse, NL * sizeof(float)));
        CHECK_OK(be->download_f32(be, dqkvs[k], d_dqkv, N * W));
        if (be == gpu) { /* bitwise repeatable: run again into poisoned buffers */
            unsigned char *a = malloc(N * W * es), *b = malloc(N * W * es);
            CHECK_OK(be->download(be, a, d_out, NO * es));
            CHECK_OK(be->download(be, b, d_dqkv, N * W * es));
            be->free(be, d_out);
            be->free(be, d_dqkv);
            d_out = dev_poisoned(be, NO * es);
            d_dqkv = dev_poisoned(be, N * W * es);
            CHECK_OK(be->attention_fwd(be, d_out, d_lse, d_qkv, d_pos, &s));
            CHECK_OK(be->attention_bwd(be, d_dqkv, d_dout, d_qkv, d_out, d_lse, d_pos, &s));
            unsigned char *a2 = malloc(N * W * es), *b2 = malloc(N * W * es);
            CHECK_OK(be->download(be, a2, d_out, NO * es));
            CHECK_OK(be->download(be, b2, d_dqkv, N * W * es));
            CHECK_MSG(memcmp(a, a2, NO * es) == 0, "attention_fwd not bitwise repeatable");
            CHECK_MSG(memcmp(b, b2, N * W * es) == 0, "attention_bwd not bitwise repeatable");
            free(a);
            free(b);
            free(a2);
            free(b2);
        }
        be->free(be, d_qkv);
        be->free(be, d_dout);
        be->free(be, d_pos);
        be->free(be, d_out);
        be->free(be, d_lse);
        be->free(be, d_dqkv);
    }
    const long QW = (long)c->Hq * c->D, KW = (long)c->Hkv * c->D;
    CHECK_COLS(g_out, r_out, N, QW, 0, QW, "out vs fp64");
    CHECK_COLS(g_out, c_out, N, QW, 0, QW, "out vs cpu");
    CHECK_COLS(g_lse, r_lse, N, c->Hq, 0, c->Hq, "lse vs fp64");
    CHECK_COLS(g_lse, c_lse, N, c->Hq, 0, c->Hq, "lse vs cpu");
    const double dv_rms = rms_cols(r_dqkv, N, W, QW + KW, W);
    CHECK_GRAD_COLS(g_dqkv, r_dqkv, N, W, 0, QW, dv_rms, "dq vs fp64");
    CHECK_GRAD_COLS(g_dqkv, r_dqkv, N, W, QW, QW + KW, dv_rms, "dk vs fp64");
    CHECK_COLS(g_dqkv, r_dqkv, N, W, QW + KW, W, "dv vs fp64");
    CHECK_COLS(g_dqkv, c_dqkv, N, W, 0, W, "dqkv vs cpu");
    printf("  B=%d T=%d Hq=%d Hkv=%d D=%d window=%d packed=%d: out %.2e lse %.2e dq %.2e dk %.2e "
           "dv %.2e\n",
           c->B, c->T, c->Hq, c->Hkv, c->D, c->window, c->packed,
           rel_cols(g_out, r_out, N, QW, 0, QW), rel_cols(g_lse, r_lse, N, c->Hq, 0, c->Hq),
           rel_cols(g_dqkv, r_dqkv, N, W, 0, QW), rel_cols(g_dqkv, r_dqkv, N, W, QW, QW + KW),
           rel_cols(g_dqkv, r_dqkv, N, W, QW + KW, W));
    free(qkv);
    free(dout);
    free(pos);
    free(r_out);
    free(r_lse);
    free(r_dqkv);
    free(g_out);
    free(g_lse);
    free(g_dqkv);
    free(c_out);
    free(c_lse);
    free(c_dqkv);
}

typedef struct decode_case {
    int n_seq, Hq, Hkv, D, block_size, max_blocks, window;
} decode_case;

static void run_decode(const decode_case *c)
{
    const int S = c->n_seq, Hq = c->Hq, Hkv = c->Hkv, D = c->D, bs = c->block_size;
    const int G = Hq / Hkv, n_blocks = S * c->max_blocks + 3;
    const long W = (long)(Hq + 2 * Hkv) * D, HD = (long)Hkv * D;
    int32_t *seq_len = malloc(sizeof(int32_t) * S), *table = malloc(sizeof(int32_t) * S * c->max_blocks);
    int32_t *perm = malloc(sizeof(int32_t) * n_blocks);
    for (int i = 0; i < n_blocks; i++)
        perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) { /* blocks scattered over the cache */
        int j = (int)(test_rand_u64() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    long total = 0;
    for (int q = 0; q < S; q++) {
        seq_len[q] = q == 0 ? c->max_blocks * bs : 1 + (int)(test_rand_u64() % (uint64_t)(c->max_blocks * bs));
        total += seq_len[q];
        for (int i = 0; i < c->max_blocks; i++)
            table[q * c->max_blocks + i] = perm[q * c->max_blocks + i];
    }
    /* every cached token as a qkv row, stored through kv_store into its slot */
    float *ctx = malloc(sizeof(float) * total * W), *qrows = malloc(sizeof(float) * S * W);
    int32_t *slot = malloc(sizeof(int32_t) * total);
    test_fill(ctx, total * W, 1.5f);
    test_fill(qrows, S * W, 1.5f);
    round_bf16(ctx, total * W);
    round_bf16(qrows, S * W);
    long t0 = 0;
    for (int q = 0; q < S; q++)
        for (int j = 0; j < seq_len[q]; j++, t0++)
            slot[t0] = table[q * c->max_blocks + j / bs] * bs + j % bs;

    const float scale = 1.0f / sqrtf((float)D);
    float *ref = malloc(sizeof(float) * S * Hq * D), *p = malloc(sizeof(float) * c->max_blocks * bs);
    t0 = 0;
    for (int q = 0; q < S; q++) {
        const int L = seq_len[q], lo = c->window > 0 && L - c->window > 0 ? L - c->window : 0;
        for (int h = 0; h < Hq; h++) {
            const int g = h / G;
            double mx = -INFINITY, sum = 0;
            for (int j = lo; j < L; j++) {
                p[j] = (float)(scale * dotd(qrows + q * W + (long)h * D,
                                            ctx + (t0 + j) * W + (long)(Hq + g) * D, D));
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int j = lo; j < L; j++)
                sum += exp(p[j] - mx);
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (int j = lo; j < L; j++)
                    o += exp(p[j] - mx) / sum * ctx[(t0 + j) * W + (long)(Hq + Hkv + g) * D + d];
                ref[((long)q * Hq + h) * D + d] = (float)o;
            }
        }
        t0 += L;
    }

    float *outs[2], *caches[2];
    gllm_backend *bes[2] = {gpu, cpu};
    const size_t cache_n = (size_t)n_blocks * bs * HD;
    for (int k = 0; k < 2; k++) {
        gllm_backend *be = bes[k];
        const size_t es = gllm_dtype_size(be->act_dtype);
        outs[k] = malloc(sizeof(float) * S * Hq * D);
        caches[k] = malloc(sizeof(float) * cache_n * 2);
        gllm_kv_cache kv = {dev_poisoned(be, cache_n * es), dev_poisoned(be, cache_n * es),
                            n_blocks, bs, Hkv, D};
        void *d_ctx = dev_act(be, ctx, total * W), *d_q = dev_act(be, qrows, S * W);
        void *d_slot = dev_bytes(be, slot, sizeof(int32_t) * total);
        void *d_len = dev_bytes(be, seq_len, sizeof(int32_t) * S);
        void *d_table = dev_bytes(be, table, sizeof(int32_t) * S * c->max_blocks);
        void *d_out = dev_poisoned(be, (size_t)S * Hq * D * es);
        CHECK_OK(be->kv_store(be, &kv, d_ctx, d_slot, (int)total, Hq));
        CHECK_OK(be->attention_decode(be, d_out, d_q, &kv, d_table, c->max_blocks, d_len, S, Hq,
                                      c->window, scale));
        CHECK_OK(be->download_f32(be, outs[k], d_out, (size_t)S * Hq * D));
        CHECK_OK(be->download_f32(be, caches[k], kv.k, cache_n));
        CHECK_OK(be->download_f32(be, caches[k] + cache_n, kv.v, cache_n));
        if (be == gpu) {
            unsigned char *a = malloc((size_t)S * Hq * D * es), *b = malloc((size_t)S * Hq * D * es);
            CHECK_OK(be->download(be, a, d_out, (size_t)S * Hq * D * es));
            CHECK_OK(be->attention_decode(be, d_out, d_q, &kv, d_table, c->max_blocks, d_len, S,
                                          Hq, c->window, scale));
            CHECK_OK(be->download(be, b, d_out, (size_t)S * Hq * D * es));
            CHECK_MSG(memcmp(a, b, (size_t)S * Hq * D * es) == 0,
                      "attention_decode not bitwise repeatable");
            free(a);
            free(b);
        }
        be->free(be, kv.k);
        be->free(be, kv.v);
        be->free(be, d_ctx);
        be->free(be, d_q);
        be->free(be, d_slot);
        be->free(be, d_len);
        be->free(be, d_table);
        be->free(be, d_out);
    }
    /* slots no token was stored into stay poisoned (NaN) on both: compare written ones */
    long same = 0, written = 0;
    for (size_t i = 0; i < cache_n * 2; i++) {
        if (isnan(caches[1][i]))
            continue;
        written++;
        same += caches[0][i] == caches[1][i];
    }
    CHECK_MSG(written == total * HD * 2 && same == written, "kv_store: %ld of %ld values match",
              same, written);
    const long QW = (long)Hq * D;
    CHECK_COLS(outs[0], ref, S, QW, 0, QW, "decode vs fp64");
    CHECK_COLS(outs[0], outs[1], S, QW, 0, QW, "decode vs cpu");
    printf("  decode n_seq=%d Hq=%d Hkv=%d D=%d block=%d ctx<=%d window=%d: %.2e\n", S, Hq, Hkv,
           D, bs, c->max_blocks * bs, c->window, rel_cols(outs[0], ref, S, QW, 0, QW));
    for (int k = 0; k < 2; k++) {
        free(outs[k]);
        free(caches[k]);
    }
    free(seq_len);
    free(table);
    free(perm);
    free(ctx);
    free(qrows);
    free(slot);
    free(ref);
    free(p);
}

int main(void)
{
    if (gllm_backend_open("cuda", &gpu) != GLLM_OK) {
        char why[600];
        snprintf(why, sizeof why, "no CUDA backend: %s", gllm_last_error());
        test_skip(why);
    }
    if (gllm_backend_cpu_create(0, &cpu) != GLLM_OK) {
        printf("cpu backend: %s\n", gllm_last_error());
        return 1;
    }
    test_seed();
    static const attn_case cases[] = {
        {1, 1, 2, 1, 64, 0, 0},     {2, 37, 4, 4, 8, 0, 1},     {2, 37, 4, 2, 16, 5, 1},
        {1, 129, 4, 1, 64, 0, 1},   {2, 129, 8, 1, 80, 0, 0},   {1, 300, 8, 2, 128, 0, 1},
        {2, 300, 2, 2, 64, 70, 1},  {1, 300, 4, 4, 80, 33, 0},  {1, 200, 8, 1, 128, 100, 1},
        {3, 64, 4, 2, 32, 0, 1},    {1, 257, 2, 1, 128, 0, 0},  {2, 96, 8, 8, 16, 0, 0},
    };
    TEST_CASE("attention fwd/bwd vs cpu and fp64")
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    static const decode_case dcases[] = {
        {3, 8, 2, 64, 16, 40, 0}, {2, 8, 1, 128, 16, 33, 100}, {4, 4, 4, 16, 8, 10, 0},
        {1, 2, 1, 80, 32, 3, 7},
    };
    TEST_CASE("kv_store + attention_decode vs cpu and fp64")
    for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++)
        run_decode(&dcases[i]);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return test_summary();
}
