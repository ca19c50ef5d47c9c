/* GGUF files (llama.cpp's model format): mmap'd reads, dequantization to f32
 * and writes that the `gguf` Python package and llama.cpp load.
 *
 * Format (little-endian): "GGUF", u32 version (2 or 3), u64 tensor count,
 * u64 metadata count; the metadata as (string key, u32 value type, value);
 * the tensor infos as (string name, u32 n_dims, u64 dims[n_dims] innermost
 * first, u32 ggml type, u64 offset); padding to `general.alignment` (default
 * 32); then the data section, each tensor at its offset (a multiple of the
 * alignment) from the start of that section. A string is a u64 byte count and
 * the bytes (no NUL); an array is a u32 element type, a u64 count, the
 * elements.
 *
 * Every malformed file is refused with a message naming the file and the
 * field (key, tensor): bad magic or version, truncation anywhere, counts or
 * string lengths past the end of the file, unknown value or tensor types,
 * dims of zero/negative products or rows that are not whole blocks, tensor
 * data outside the data section, misaligned or overlapping, a bad alignment,
 * repeated keys or tensor names. */
#ifndef GLLM_GGUF_H
#define GLLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GLLM_GGUF_MAX_DIMS 4
#define GLLM_GGUF_DEFAULT_ALIGNMENT 32

/* metadata value types */
typedef enum gllm_gguf_vtype {
    GLLM_GGUF_U8 = 0,
    GLLM_GGUF_I8 = 1,
    GLLM_GGUF_U16 = 2,
    GLLM_GGUF_I16 = 3,
    GLLM_GGUF_U32 = 4,
    GLLM_GGUF_I32 = 5,
    GLLM_GGUF_F32 = 6,
    GLLM_GGUF_BOOL = 7,
    GLLM_GGUF_STRING = 8,
    GLLM_GGUF_ARRAY = 9,
    GLLM_GGUF_U64 = 10,
    GLLM_GGUF_I64 = 11,
    GLLM_GGUF_F64 = 12,
} gllm_gguf_vtype;

/* ggml tensor types (the numbering of ggml.h) that gllm reads */
typedef enum gllm_ggml_type {
    GLLM_GGML_F32 = 0,
    GLLM_GGML_F16 = 1,
    GLLM_GGML_Q4_0 = 2,
    GLLM_GGML_Q4_1 = 3,
    GLLM_GGML_Q5_0 = 6,
    GLLM_GGML_Q5_1 = 7,
    GLLM_GGML_Q8_0 = 8,
    GLLM_GGML_Q2_K = 10,
    GLLM_GGML_Q3_K = 11,
    GLLM_GGML_Q4_K = 12,
    GLLM_GGML_Q5_K = 13,
    GLLM_GGML_Q6_K = 14,
    GLLM_GGML_BF16 = 30,
} gllm_ggml_type;

/* "Q4_K" etc., or NULL for a type gllm does not know. */
const char *gllm_ggml_type_name(int type);
/* Elements per block and bytes per block; 0 for unknown types. */
int gllm_ggml_block_size(int type);
size_t gllm_ggml_type_size(int type);

typedef struct gllm_gguf_str {
    const char *ptr; /* inside the mapping, not NUL-terminated */
    uint64_t len;
} gllm_gguf_str;

typedef struct gllm_gguf_kv {
    const char *key;        /* NUL-terminated copy */
    gllm_gguf_vtype type;
    gllm_gguf_vtype arr_type; /* element type when type == ARRAY */
    uint64_t n;             /* array length (1 for a scalar) */
    /* scalars and arrays of numbers: the little-endian values inside the
     * mapping (possibly unaligned: read them with the accessors below) */
    const void *data;
    /* strings: one entry (scalar) or n entries (array of strings) */
    const gllm_gguf_str *strs;
} gllm_gguf_kv;

typedef struct gllm_gguf_tensor {
    const char *name;       /* NUL-terminated copy */
    int type;               /* gllm_ggml_type */
    int ndim;
    int64_t ne[GLLM_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the innermost (row) length */
    uint64_t offset;        /* from the start of the data section */
    const void *data;       /* inside the mapping */
    size_t nbytes;
    size_t nelems;
} gllm_gguf_tensor;

typedef struct gllm_gguf gllm_gguf;

/* Map and validate `path`. On failure *out is NULL and the message names the
 * file and field: GLLM_ERR_NOT_FOUND (no file), GLLM_ERR_IO, GLLM_ERR_FORMAT
 * (malformed), GLLM_ERR_UNSUPPORTED (GGUF v1, tensor types gllm cannot
 * dequantize). Caller closes with gllm_gguf_close. */
gllm_status gllm_gguf_open(const char *path, gllm_gguf **out);
void gllm_gguf_close(gllm_gguf *g);

const char *gllm_gguf_path(const gllm_gguf *g);
uint32_t gllm_gguf_version(const gllm_gguf *g);
uint32_t gllm_gguf_alignment(const gllm_gguf *g);
int gllm_gguf_kv_count(const gllm_gguf *g);
const gllm_gguf_kv *gllm_gguf_kv_at(const gllm_gguf *g, int i);
const gllm_gguf_kv *gllm_gguf_find_kv(const gllm_gguf *g, const char *key);
int gllm_gguf_tensor_count(const gllm_gguf *g);
const gllm_gguf_tensor *gllm_gguf_tensor_at(const gllm_gguf *g, int i);
const gllm_gguf_tensor *gllm_gguf_find_tensor(const gllm_gguf *g, const char *name);

/* Typed metadata reads. Absent key: GLLM_ERR_NOT_FOUND naming file and key;
 * a value of another kind: GLLM_ERR_FORMAT. get_int accepts every integer
 * type whose value fits an int64; get_float also F64 and integers; get_str
 * returns a malloc'd NUL-terminated copy (refusing embedded NULs). */
gllm_status gllm_gguf_get_int(const gllm_gguf *g, const char *key, int64_t *out);
gllm_status gllm_gguf_get_float(const gllm_gguf *g, const char *key, double *out);
gllm_status gllm_gguf_get_bool(const gllm_gguf *g, const char *key, bool *out);
gllm_status gllm_gguf_get_str(const gllm_gguf *g, const char *key, char **out);
/* Element i of an array of numbers (any numeric element type), as int64 or double. */
int64_t gllm_gguf_arr_int(const gllm_gguf_kv *kv, uint64_t i);
double gllm_gguf_arr_float(const gllm_gguf_kv *kv, uint64_t i);

/* Dequantize n elements (a whole number of blocks) of `type` at src to f32,
 * with the same float32 operations, in the same order, as the `gguf` Python
 * package, so results are bit-identical. GLLM_ERR_UNSUPPORTED for types
 * without a dequantizer, GLLM_ERR_INVALID if n is not a whole number of blocks. */
gllm_status gllm_ggml_dequantize(int type, const void *src, float *dst, size_t n);

/* The whole tensor as f32 into dst (t->nelems floats); errors name the file and tensor. */
gllm_status gllm_gguf_read_f32(const gllm_gguf *g, const gllm_gguf_tensor *t, float *dst);

/* ---------------------------------------------------------------- writing */

typedef struct gllm_gguf_writer gllm_gguf_writer;

/* Start a GGUF v3 file at `path` (written atomically on finish). */
gllm_status gllm_gguf_writer_new(const char *path, gllm_gguf_writer **out);
/* Metadata, in the order added (keys must be unique). Strings are copied. */
gllm_status gllm_gguf_add_u32(gllm_gguf_writer *w, const char *key, uint32_t v);
gllm_status gllm_gguf_add_i32(gllm_gguf_writer *w, const char *key, int32_t v);
gllm_status gllm_gguf_add_f32(gllm_gguf_writer *w, const char *key, float v);
gllm_status gllm_gguf_add_bool(gllm_gguf_writer *w, const char *key, bool v);
gllm_status gllm_gguf_add_str(gllm_gguf_writer *w, const char *key, const char *v);
gllm_status gllm_gguf_add_str_len(gllm_gguf_writer *w, const char *key, const char *v, size_t len);
/* Arrays: strings (n NUL-terminated), i32, f32. */
gllm_status gllm_gguf_add_arr_str(gllm_gguf_writer *w, const char *key, const char *const *v,
                                  uint64_t n);
gllm_status gllm_gguf_add_arr_i32(gllm_gguf_writer *w, const char *key, const int32_t *v,
                                  uint64_t n);
gllm_status gllm_gguf_add_arr_f32(gllm_gguf_writer *w, const char *key, const float *v,
                                  uint64_t n);
/* A tensor from f32 host data with ggml dims ne[0..ndim) (ne[0] innermost),
 * stored as F32, F16, BF16 or Q8_0 (rows a multiple of 32; quantized as
 * ggml's reference quantize_row_q8_0). The data are converted now. */
gllm_status gllm_gguf_add_tensor(gllm_gguf_writer *w, const char *name, int type, int ndim,
                                 const int64_t *ne, const float *data);
/* Write the file and free the writer (also on failure). */
gllm_status gllm_gguf_writer_finish(gllm_gguf_writer *w);
/* Free without writing. */
void gllm_gguf_writer_free(gllm_gguf_writer *w);

#ifdef __cplusplus
}
#endif
#endif
