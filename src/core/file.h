/* Whole-file reads shared by the modules (configs, tokenizer files, datasets). */
#ifndef GLLM_CORE_FILE_H
#define GLLM_CORE_FILE_H

#include <stddef.h>

#include "gllm/status.h"

/* Read all of `path` into a malloc'd, NUL-terminated buffer (caller frees);
 * *len (may be NULL) gets the byte count. Errors name the file:
 * GLLM_ERR_NOT_FOUND when it does not exist, GLLM_ERR_IO otherwise. */
gllm_status gllm_read_file(const char *path, char **out, size_t *len);

#endif
