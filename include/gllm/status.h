/* Status codes and the thread-local error message.
 *
 * Every library function that can fail returns gllm_status (GLLM_OK == 0) and,
 * on failure, leaves a message in a thread-local buffer that names the file,
 * tensor, key or line at fault. Only the command-line programs print it and
 * exit; a server or batch job reads it with gllm_last_error() and carries on. */
#ifndef GLLM_STATUS_H
#define GLLM_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gllm_status {
    GLLM_OK = 0,
    GLLM_ERR_IO,          /* open/read/write/mmap failed */
    GLLM_ERR_FORMAT,      /* a file's content is malformed */
    GLLM_ERR_UNSUPPORTED, /* valid input that gllm does not handle */
    GLLM_ERR_INVALID,     /* a bad argument or configuration value */
    GLLM_ERR_NOT_FOUND,   /* a missing tensor, key or file */
    GLLM_ERR_OOM,         /* allocation failed (host or device) */
    GLLM_ERR_BACKEND,     /* a device runtime call failed */
} gllm_status;

/* Record a printf-style message for the calling thread and return `code`.
 * Usage: return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': ...", path, name); */
gllm_status gllm_fail(gllm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current message with more context ("loading model: " + old). */
gllm_status gllm_fail_prefix(gllm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last message ("" if none). Valid until the next gllm_fail. */
const char *gllm_last_error(void);
void gllm_clear_error(void);
const char *gllm_status_name(gllm_status s);

/* Propagate a failing status unchanged. */
#define GLLM_TRY(expr)                    \
    do {                                  \
        gllm_status gllm_try_s_ = (expr); \
        if (gllm_try_s_ != GLLM_OK)       \
            return gllm_try_s_;           \
    } while (0)

/* Allocation helpers that record an out-of-memory message naming `what`.
 * They return NULL on failure (after gllm_fail(GLLM_ERR_OOM, ...)). */
void *gllm_malloc(size_t bytes, const char *what);
void *gllm_calloc(size_t n, size_t size, const char *what);

#ifdef __cplusplus
}
#endif
#endif
