#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "gllm/safetensors.h"
#include "io/safetensors_internal.h"

typedef struct text_buf {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static void put(text_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(text_buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

/* A JSON string literal; s is valid UTF-8 (checked by the caller), so only
 * quotes, backslashes and control bytes need escapes. */
static void put_json_str(text_buf *b, const char *s)
{
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(b, e, 2);
        } else if (c < 0x20) {
            putf(b, "\\u%04x", c);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    put(b, "\"", 1);
}

static int utf8_ok(const char *s)
{
    size_t n = strlen(s);
    return gllm_st_utf8_check((const uint8_t *)s, n) == n;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Byte size of every entry into sizes[]; refuses what a reader would refuse. */
static gllm_status check_entries(const char *path, const gllm_st_entry *e, int n, size_t *sizes)
{
    for (int i = 0; i < n; i++) {
        const char *name = e[i].name;
        if (!name || !name[0])
            return gllm_fail(GLLM_ERR_INVALID, "%s: entry %d has no name", path, i);
        if (strcmp(name, "__metadata__") == 0 || !utf8_ok(name))
            return gllm_fail(GLLM_ERR_INVALID, "%s: entry %d: '%s' cannot be a tensor name", path,
                             i, name);
        if ((unsigned)e[i].dtype >= GLLM_DTYPE_COUNT)
            return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': dtype %d is not a gllm_dtype",
                             path, name, (int)e[i].dtype);
        if (e[i].ndim < 0 || e[i].ndim > GLLM_ST_MAX_DIMS)
            return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': ndim %d is outside [0, %d]", path,
                             name, e[i].ndim, GLLM_ST_MAX_DIMS);
        size_t bytes = gllm_dtype_size(e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++) {
            if (e[i].shape[d] < 0)
                return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': shape[%d] = %lld < 0", path,
                                 name, d, (long long)e[i].shape[d]);
            if (__builtin_mul_overflow(bytes, (size_t)e[i].shape[d], &bytes))
                return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': byte size overflows", path,
                                 name);
        }
        if (bytes && !e[i].data)
            return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': data is NULL", path, name);
        sizes[i] = bytes;
    }
    const char **names = gllm_malloc((size_t)(n + 1) * sizeof *names, "tensor names");
    if (!names)
        return GLLM_ERR_OOM;
    for (int i = 0; i < n; i++)
        names[i] = e[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    gllm_status s = GLLM_OK;
    for (int i = 1; i < n && s == GLLM_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            s = gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s' is given twice", path, names[i]);
    free(names);
    return s;
}

static gllm_status check_metadata(const char *path, const char *const *meta)
{
    for (int i = 0; meta && meta[i]; i += 2) {
        if (!meta[i + 1])
            return gllm_fail(GLLM_ERR_INVALID, "%s: metadata key '%s' has no value", path,
                             meta[i]);
        if (!utf8_ok(meta[i]) || !utf8_ok(meta[i + 1]))
            return gllm_fail(GLLM_ERR_INVALID, "%s: metadata key '%s': not valid UTF-8", path,
                             meta[i]);
        for (int j = 0; j < i; j += 2)
            if (strcmp(meta[j], meta[i]) == 0)
                return gllm_fail(GLLM_ERR_INVALID, "%s: metadata key '%s' is given twice", path,
                                 meta[i]);
    }
    return GLLM_OK;
}

/* The header text, padded with spaces to a multiple of 8 bytes as the
 * safetensors package does, so the data section starts 8-aligned. */
static void build_header(text_buf *b, const gllm_st_entry *e, int n, const size_t *sizes,
                         const char *const *meta)
{
    put(b, "{", 1);
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            put(b, ",", 1);
        put_json_str(b, e[i].name);
        putf(b, ":{\"dtype\":\"%s\",\"shape\":[", gllm_dtype_name(e[i].dtype));
        for (int d = 0; d < e[i].ndim; d++)
            putf(b, d ? ",%lld" : "%lld", (long long)e[i].shape[d]);
        putf(b, "],\"data_offsets\":[%zu,%zu]}", offset, offset + sizes[i]);
        offset += sizes[i];
    }
    if (meta && meta[0]) {
        put(b, n ? ",\"__metadata__\":{" : "\"__metadata__\":{", n ? 17 : 16);
        for (int i = 0; meta[i]; i += 2) {
            if (i)
                put(b, ",", 1);
            put_json_str(b, meta[i]);
            put(b, ":", 1);
            put_json_str(b, meta[i + 1]);
        }
        put(b, "}", 1);
    }
    put(b, "}", 1);
    while (b->len % 8)
        put(b, " ", 1);
}

/* Through the core's durable atomic write: a reader never sees a half file. */
static gllm_status write_file(const char *path, const text_buf *header, const gllm_st_entry *e,
                              int n, const size_t *sizes)
{
    gllm_atomic *a;
    GLLM_TRY(gllm_atomic_begin(path, &a));
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)header->len >> (8 * i));
    gllm_atomic_write(a, len8, 8);
    gllm_atomic_write(a, header->p, header->len);
    for (int i = 0; i < n; i++)
        gllm_atomic_write(a, e[i].data, sizes[i]);
    return gllm_atomic_commit(a);
}

gllm_status gllm_st_write(const char *path, const gllm_st_entry *entries, int n,
                          const char *const *metadata)
{
    if (!path || n < 0 || (n > 0 && !entries))
        return gllm_fail(GLLM_ERR_INVALID, "gllm_st_write(%s): no path or entries",
                         path ? path : "NULL");
    size_t *sizes = gllm_malloc((size_t)(n + 1) * sizeof *sizes, "tensor sizes");
    if (!sizes)
        return GLLM_ERR_OOM;
    gllm_status s = check_entries(path, entries, n, sizes);
    if (s == GLLM_OK)
        s = check_metadata(path, metadata);
    text_buf header = {0};
    if (s == GLLM_OK) {
        build_header(&header, entries, n, sizes, metadata);
        s = header.oom ? gllm_fail(GLLM_ERR_OOM, "%s: out of memory building the header", path)
                       : write_file(path, &header, entries, n, sizes);
    }
    free(header.p);
    free(sizes);
    return s;
}
