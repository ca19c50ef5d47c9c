/* Whole-file reads shared by the modules (configs, tokenizer files, datasets). */
#ifndef GLLM_CORE_FILE_H
#define GLLM_CORE_FILE_H

#include <stddef.h>

#include "gllm/status.h"

/* Read all of `path` into a malloc'd, NUL-terminated buffer (caller frees);
 * *len (may be NULL) gets the byte count. Errors name the file:
 * GLLM_ERR_NOT_FOUND when it does not exist, GLLM_ERR_INVALID when it is
 * not a regular file (a folder, a device: refused before reading), GLLM_ERR_IO
 * otherwise. */
gllm_status gllm_read_file(const char *path, char **out, size_t *len);

/* GLLM_OK when path is a regular file; else GLLM_ERR_INVALID "path: is a
 * folder, not a regular file" (or a device, a FIFO...), GLLM_ERR_NOT_FOUND. */
gllm_status gllm_require_regular_file(const char *path);

/* "a folder", "a character device", ... for a stat st_mode. */
const char *gllm_file_kind(unsigned mode);

#endif
