#include "gllm/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GLLM_MSG_MAX 2048

static _Thread_local char g_msg[GLLM_MSG_MAX];

gllm_status gllm_fail(gllm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

gllm_status gllm_fail_prefix(gllm_status code, const char *fmt, ...)
{
    char prefix[GLLM_MSG_MAX];
    char old[GLLM_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t n = strlen(prefix);
    memcpy(g_msg, prefix, n + 1);
    strncat(g_msg, old, sizeof g_msg - n - 1);
    return code;
}

const char *gllm_last_error(void) { return g_msg; }

void gllm_clear_error(void) { g_msg[0] = '\0'; }

const char *gllm_status_name(gllm_status s)
{
    switch (s) {
    case GLLM_OK: return "ok";
    case GLLM_ERR_IO: return "I/O error";
    case GLLM_ERR_FORMAT: return "malformed input";
    case GLLM_ERR_UNSUPPORTED: return "unsupported";
    case GLLM_ERR_INVALID: return "invalid argument";
    case GLLM_ERR_NOT_FOUND: return "not found";
    case GLLM_ERR_OOM: return "out of memory";
    case GLLM_ERR_BACKEND: return "backend error";
    }
    return "unknown status";
}

void *gllm_malloc(size_t bytes, const char *what)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        gllm_fail(GLLM_ERR_OOM, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *gllm_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        gllm_fail(GLLM_ERR_OOM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}
