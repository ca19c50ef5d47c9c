/* safetensors files: mmap'd reads (single file or a sharded model through
 * model.safetensors.index.json) and atomic writes that the `safetensors`
 * package and transformers load back bit for bit.
 *
 * Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data; offsets are relative to the
 * end of the header. Every malformed file is refused with a message naming
 * the file and the tensor: bad lengths, non-UTF-8 or non-JSON headers, missing
 * or mistyped fields, unknown dtypes (valid but unsupported ones such as F64
 * give GLLM_ERR_UNSUPPORTED), non-integer dims, offsets outside the data
 * section or overlapping, byte sizes that disagree with shape x dtype, and
 * repeated names. Gaps between tensors are allowed. */
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
    /* inside the read-only mapping; valid until gllm_st_close. Files packed
     * in caller order (gllm_st_write's included) may leave it unaligned for
     * its dtype: copy or use gllm_st_read_f32 rather than dereference it. */
    const void *data;
    size_t nbytes;
    const char *file; /* path of the file (shard) holding it */
} gllm_st_tensor;

typedef struct gllm_safetensors gllm_safetensors;

/* Open one .safetensors file, a model folder (its model.safetensors, else the
 * shards listed by its model.safetensors.index.json) or an *.index.json file.
 * Shards are opened in order of first mention in weight_map, and every
 * tensor of weight_map must be in the shard it names. Tensors are listed in
 * file order, header order within a file. On failure *out is NULL and the
 * message names the file (index and tensor for a bad shard map):
 * GLLM_ERR_NOT_FOUND for a missing file, shard or mapped tensor,
 * GLLM_ERR_FORMAT for malformed content, GLLM_ERR_UNSUPPORTED for valid
 * dtypes or ranks gllm does not load. Caller closes with gllm_st_close. */
gllm_status gllm_st_open(const char *path, gllm_safetensors **out);
void gllm_st_close(gllm_safetensors *st);

int gllm_st_count(const gllm_safetensors *st);
const gllm_st_tensor *gllm_st_at(const gllm_safetensors *st, int i);
/* NULL if absent (no error recorded). */
const gllm_st_tensor *gllm_st_find(const gllm_safetensors *st, const char *name);
/* A value from __metadata__ of the (first) file, or NULL; valid until gllm_st_close. */
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
 * the same folder (mode 0644), fsync, rename, fsync of the folder. The header
 * lists the entries in order, then __metadata__, padded with spaces to a
 * multiple of 8 bytes; the data follow contiguously in entry order, with no
 * alignment padding. metadata: NULL or alternating key, value strings ending
 * with NULL. GLLM_ERR_INVALID for repeated or non-UTF-8 names, NULL data of a
 * non-empty tensor, negative dims or a key without a value; GLLM_ERR_IO if
 * the file cannot be written (no temporary file is left behind). */
gllm_status gllm_st_write(const char *path, const gllm_st_entry *entries, int n,
                          const char *const *metadata);

#ifdef __cplusplus
}
#endif
#endif
