/* ggml block formats -> f32. Each function follows the float32 operations of
 * the `gguf` Python package's dequantize_blocks (gguf/quants.py), in the same
 * order ((d * sc) * q - dmin * m, not d * (sc * q)), so the results are
 * bit-identical; the C standard mode compiles without FP contraction. */
#include <string.h>

#include "gllm/dtype.h"
#include "gllm/gguf.h"

#define QK_K 256

static float h2f(const uint8_t *p) { return gllm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void deq_q4_0(const uint8_t *b, float *y)
{
    const float d = h2f(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((int)(qs[j] & 0xF) - 8);
        y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    const float d = h2f(b), m = h2f(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0xF) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y)
{
    const float d = h2f(b);
    const uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 |
                        (uint32_t)b[5] << 24;
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

static void deq_q5_1(const uint8_t *b, float *y)
{
    const float d = h2f(b), m = h2f(b + 2);
    const uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 |
                        (uint32_t)b[7] << 24;
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y)
{
    const float d = h2f(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* layout: scales[16] (4-bit scale | 4-bit min), qs[64] (2 bits), d, dmin */
static void deq_q2_k(const uint8_t *b, float *y)
{
    const uint8_t *sc = b, *qs = b + 16;
    const float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int i = 0; i < QK_K; i++) {
        const int half = i / 128, shift = 2 * ((i / 32) % 4), j = i % 32;
        const int q = (qs[half * 32 + j] >> shift) & 3;
        const int g = i / 16;
        const float dl = d * (float)(sc[g] & 0xF), ml = dmin * (float)(sc[g] >> 4);
        y[i] = dl * (float)q - ml;
    }
}

/* layout: hmask[32], qs[64], scales[12] (6-bit signed, packed), d */
static void deq_q3_k(const uint8_t *b, float *y)
{
    const uint8_t *hm = b, *qs = b + 32, *s = b + 96;
    const float d = h2f(b + 108);
    float dl[16];
    for (int k = 0; k < 16; k++) {
        int lo = (k < 8 ? s[k] : s[k - 8] >> 4) & 0xF;
        int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
        dl[k] = d * (float)((int8_t)(uint8_t)(lo | hi << 4) - 32);
    }
    for (int i = 0; i < QK_K; i++) {
        const int half = i / 128, shift = 2 * ((i / 32) % 4), j = i % 32;
        const int ql = (qs[half * 32 + j] >> shift) & 3;
        const int hbit = (hm[j] >> (i / 32)) & 1;
        y[i] = dl[i / 16] * (float)(ql - (hbit ? 0 : 4));
    }
}

/* the 6-bit scales and mins of Q4_K/Q5_K, 8 of each in 12 bytes */
static void scale_min_k4(const uint8_t *s, int *sc, int *mn)
{
    for (int i = 0; i < 4; i++) {
        sc[i] = s[i] & 0x3F;
        mn[i] = s[4 + i] & 0x3F;
        sc[4 + i] = (s[8 + i] & 0x0F) | ((s[i] >> 2) & 0x30);
        mn[4 + i] = (s[8 + i] >> 4) | ((s[4 + i] >> 2) & 0x30);
    }
}

/* layout: d, dmin, scales[12], qs[128] */
static void deq_q4_k(const uint8_t *b, float *y)
{
    const float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], mn[8];
    scale_min_k4(b + 4, sc, mn);
    const uint8_t *qs = b + 16;
    for (int g = 0; g < 8; g++) {
        const float dl = d * (float)sc[g], ml = dmin * (float)mn[g];
        const int chunk = g / 2, shift = 4 * (g % 2);
        for (int j = 0; j < 32; j++)
            y[g * 32 + j] = dl * (float)((qs[chunk * 32 + j] >> shift) & 0xF) - ml;
    }
}

/* layout: d, dmin, scales[12], qh[32], qs[128] */
static void deq_q5_k(const uint8_t *b, float *y)
{
    const float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], mn[8];
    scale_min_k4(b + 4, sc, mn);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int g = 0; g < 8; g++) {
        const float dl = d * (float)sc[g], ml = dmin * (float)mn[g];
        const int chunk = g / 2, shift = 4 * (g % 2);
        for (int j = 0; j < 32; j++) {
            int q = ((qs[chunk * 32 + j] >> shift) & 0xF) | ((qh[j] >> g) & 1) << 4;
            y[g * 32 + j] = dl * (float)q - ml;
        }
    }
}

/* layout: ql[128], qh[64], scales[16] (int8), d */
static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = h2f(b + 208);
    for (int i = 0; i < QK_K; i++) {
        const int half = i / 128;
        const int lo = (ql[half * 64 + i % 64] >> (4 * ((i / 64) % 2))) & 0xF;
        const int hi = (qh[half * 32 + i % 32] >> (2 * ((i / 32) % 4))) & 3;
        const float dl = d * (float)sc[i / 16];
        y[i] = dl * (float)((lo | hi << 4) - 32);
    }
}

gllm_status gllm_ggml_dequantize(int type, const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    switch (type) {
    case GLLM_GGML_F32:
        memcpy(dst, src, n * sizeof(float));
        return GLLM_OK;
    case GLLM_GGML_F16:
        gllm_to_f32(dst, src, GLLM_F16, n);
        return GLLM_OK;
    case GLLM_GGML_BF16:
        gllm_to_f32(dst, src, GLLM_BF16, n);
        return GLLM_OK;
    default:
        break;
    }
    void (*fn)(const uint8_t *, float *) = NULL;
    switch (type) {
    case GLLM_GGML_Q4_0: fn = deq_q4_0; break;
    case GLLM_GGML_Q4_1: fn = deq_q4_1; break;
    case GLLM_GGML_Q5_0: fn = deq_q5_0; break;
    case GLLM_GGML_Q5_1: fn = deq_q5_1; break;
    case GLLM_GGML_Q8_0: fn = deq_q8_0; break;
    case GLLM_GGML_Q2_K: fn = deq_q2_k; break;
    case GLLM_GGML_Q3_K: fn = deq_q3_k; break;
    case GLLM_GGML_Q4_K: fn = deq_q4_k; break;
    case GLLM_GGML_Q5_K: fn = deq_q5_k; break;
    case GLLM_GGML_Q6_K: fn = deq_q6_k; break;
    default:
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "no dequantizer for ggml type %d", type);
    }
    const size_t bs = (size_t)gllm_ggml_block_size(type), bytes = gllm_ggml_type_size(type);
    if (n % bs)
        return gllm_fail(GLLM_ERR_INVALID, "%zu elements are not a whole number of %s blocks", n,
                         gllm_ggml_type_name(type));
    const size_t nb = n / bs;
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (size_t i = 0; i < nb; i++)
        fn(s + i * bytes, dst + i * bs);
    return GLLM_OK;
}
