/* Helpers shared by the safetensors reader and writer (not public API). */
#ifndef GLLM_IO_SAFETENSORS_INTERNAL_H
#define GLLM_IO_SAFETENSORS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Offset of the first byte that does not start a well-formed UTF-8 sequence
 * (overlong forms, surrogates and code points past U+10FFFF count as
 * malformed), or n when all n bytes are valid UTF-8. */
size_t gllm_st_utf8_check(const uint8_t *s, size_t n);

/* "[2, 3, 4]" into buf (truncated to n bytes); returns buf. */
const char *gllm_st_shape_str(char *buf, size_t n, const int64_t *shape, int ndim);

#endif
