#include "gllm/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} k_dtypes[GLLM_DTYPE_COUNT] = {
    [GLLM_F32] = {"F32", 4}, [GLLM_BF16] = {"BF16", 2}, [GLLM_F16] = {"F16", 2},
    [GLLM_I32] = {"I32", 4}, [GLLM_I64] = {"I64", 8},   [GLLM_U8] = {"U8", 1},
};

size_t gllm_dtype_size(gllm_dtype t) { return (unsigned)t < GLLM_DTYPE_COUNT ? k_dtypes[t].size : 0; }

const char *gllm_dtype_name(gllm_dtype t)
{
    return (unsigned)t < GLLM_DTYPE_COUNT ? k_dtypes[t].name : "?";
}

int gllm_dtype_parse(const char *s)
{
    for (int i = 0; i < GLLM_DTYPE_COUNT; i++)
        if (strcmp(s, k_dtypes[i].name) == 0)
            return i;
    return -1;
}

float gllm_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t gllm_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and non-zero */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float gllm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float f = ldexpf((float)man, -24);
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t gllm_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return sign | 0x7e00u;
    if (absu >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return sign | 0x7c00u;
    if (absu < 0x38800000u) { /* below the smallest normal 2^-14: subnormal or zero */
        float a;
        memcpy(&a, &absu, 4);
        /* subnormal unit is 2^-24; nearbyintf rounds half to even */
        return sign | (uint16_t)nearbyintf(ldexpf(a, 24));
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

void gllm_to_f32(float *dst, const void *src, gllm_dtype t, size_t n)
{
    const uint16_t *h = (const uint16_t *)src;
    switch (t) {
    case GLLM_F32: memcpy(dst, src, n * 4); break;
    case GLLM_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = gllm_bf16_to_f32(h[i]);
        break;
    case GLLM_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = gllm_f16_to_f32(h[i]);
        break;
    default: break;
    }
}

void gllm_from_f32(void *dst, gllm_dtype t, const float *src, size_t n)
{
    uint16_t *h = (uint16_t *)dst;
    switch (t) {
    case GLLM_F32: memcpy(dst, src, n * 4); break;
    case GLLM_BF16:
        for (size_t i = 0; i < n; i++)
            h[i] = gllm_f32_to_bf16(src[i]);
        break;
    case GLLM_F16:
        for (size_t i = 0; i < n; i++)
            h[i] = gllm_f32_to_f16(src[i]);
        break;
    default: break;
    }
}
