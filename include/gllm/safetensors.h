/* safetensors files: mmap'd reads (single file or a sharded model through
 * model.safetensors.index.json) and atomic writes that the `safetensors`
 * package and transformers load back bit for bit.
 *
 * Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data; offsets are relative to the
 * end of the header. Every malformed file is refused with a message naming
 * the file and the tensor. */
#ifndef GLLM_SAFETENSORS_H
#define GLLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "gllm/dtype.h"
#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GLLM_ST_MAX_DIMS 8

typedef struct gllm_st_tensor {
    const char *name;
    gllm_dtype dtype;
    int ndim;
    int64_t shape[GLLM_ST_MAX_DIMS];
    const void *data; /* inside the mapping; valid until gllm_st_close */
    size_t nbytes;
    const char *file; /* path of the file (shard) holding it */
} gllm_st_tensor;

typedef struct gllm_safetensors gllm_safetensors;

/* Open one .safetensors file, or a model folder (model.safetensors, or the
 * shards listed by model.safetensors.index.json). Caller closes with gllm_st_close. */
gllm_status gllm_st_open(const char *path, gllm_safetensors **out);
void gllm_st_close(gllm_safetensors *st);

int gllm_st_count(const gllm_safetensors *st);
const gllm_st_tensor *gllm_st_at(const gllm_safetensors *st, int i);
/* NULL if absent (no error recorded). */
const gllm_st_tensor *gllm_st_find(const gllm_safetensors *st, const char *name);
/* A metadata value from __metadata__ of the (first) file, or NULL. */
const char *gllm_st_metadata(const gllm_safetensors *st, const char *key);

/* Find `name`, check its shape equals shape[0..ndim) and convert it to f32 into
 * dst (which holds the product of the shape). Errors name the file and tensor:
 * GLLM_ERR_NOT_FOUND if absent, GLLM_ERR_FORMAT on a shape mismatch,
 * GLLM_ERR_UNSUPPORTED for a non-float dtype. */
gllm_status gllm_st_read_f32(const gllm_safetensors *st, const char *name, int ndim,
                             const int64_t *shape, float *dst);

typedef struct gllm_st_entry {
    const char *name;
    gllm_dtype dtype;
    int ndim;
    int64_t shape[GLLM_ST_MAX_DIMS];
    const void *data; /* host memory, nbytes = prod(shape) * dtype size */
} gllm_st_entry;

/* Write entries (in the given order) to `path` atomically: a temporary file in
 * the same folder, fsync, rename. metadata: NULL or alternating key, value
 * strings ending with NULL. */
gllm_status gllm_st_write(const char *path, const gllm_st_entry *entries, int n,
                          const char *const *metadata);

#ifdef __cplusplus
}
#endif
#endif
