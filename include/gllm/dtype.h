/* Element types and host-side conversions between them. */
#ifndef GLLM_DTYPE_H
#define GLLM_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gllm_dtype {
    GLLM_F32 = 0,
    GLLM_BF16,
    GLLM_F16,
    GLLM_I32,
    GLLM_I64,
    GLLM_U8,
    GLLM_DTYPE_COUNT
} gllm_dtype;

size_t gllm_dtype_size(gllm_dtype t);
/* safetensors spelling: "F32", "BF16", "F16", "I32", "I64", "U8". */
const char *gllm_dtype_name(gllm_dtype t);
/* Parse a safetensors dtype string; returns -1 if unknown. */
int gllm_dtype_parse(const char *s);

/* Scalar conversions. bf16/f16 from f32 round to nearest even; NaN stays NaN. */
float gllm_bf16_to_f32(uint16_t h);
uint16_t gllm_f32_to_bf16(float f);
float gllm_f16_to_f32(uint16_t h);
uint16_t gllm_f32_to_f16(float f);

/* Convert n elements of a floating type (F32, BF16, F16) to f32 and back. */
void gllm_to_f32(float *dst, const void *src, gllm_dtype t, size_t n);
void gllm_from_f32(void *dst, gllm_dtype t, const float *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
