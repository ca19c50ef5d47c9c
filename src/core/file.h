/* Whole-file reads shared by the modules (configs, tokenizer files, datasets). */
#ifndef GLLM_CORE_FILE_H
#define GLLM_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* FNV-1a 64 over n bytes, chainable from GLLM_FNV_INIT. */
#define GLLM_FNV_INIT 0xcbf29ce484222325ull
uint64_t gllm_fnv1a64(uint64_t h, const void *data, size_t n);
/* FNV-1a 64 of a regular file's bytes (a folder or device is refused). */
gllm_status gllm_hash_file(const char *path, uint64_t *hash);

/* Durable, atomic replacement of a file: the bytes go to a temporary file
 * beside `path` (path.tmp.XXXXXX), which is fsynced, renamed over path, and
 * the folder fsynced, so that after a crash or kill -9 path holds either its
 * old content or all of the new, and a completed write survives power loss.
 * Every file gllm writes whole (weights, optimizer state, trainer_state.json,
 * the token cache, summary.json, config.json, latest) goes through it.
 *   gllm_atomic *a; GLLM_TRY(gllm_atomic_begin(path, &a));
 *   gllm_atomic_write(a, p, n); ...          (errors are kept for commit)
 *   GLLM_TRY(gllm_atomic_commit(a));         (or gllm_atomic_abort(a))
 * commit and abort free a; on failure the temporary file is removed. */
typedef struct gllm_atomic gllm_atomic;
gllm_status gllm_atomic_begin(const char *path, gllm_atomic **out);
void gllm_atomic_write(gllm_atomic *a, const void *data, size_t n);
gllm_status gllm_atomic_commit(gllm_atomic *a);
void gllm_atomic_abort(gllm_atomic *a);
/* The three calls above for one buffer. */
gllm_status gllm_write_file_atomic(const char *path, const void *data, size_t n);

/* fsync a folder (making renames and removals in it durable); of the folder
 * that holds path. */
gllm_status gllm_sync_dir(const char *dir);
gllm_status gllm_sync_parent(const char *path);

/* One writer per folder: an exclusive flock on dir/<who>.lock, which holds
 * the pid of the holder. Refused at once (GLLM_ERR_INVALID) while another
 * process holds it, with a message naming that pid. The lock lasts until
 * gllm_unlock_dir(fd) or the process ends (a kill -9 included). */
gllm_status gllm_lock_dir(const char *dir, const char *who, int *fd);
void gllm_unlock_dir(int fd);

/* Fault injection for the kill tests: when the environment variable
 * GLLM_KILL_AT is `name` (or "name:K", the K-th time the point is reached in
 * this process), the process kills itself with SIGKILL right there, as a
 * crash or `kill -9` would. A no-op otherwise. */
void gllm_fault_point(const char *name);

#endif
