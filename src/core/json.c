/* JSON helpers over cJSON (see include/gllm/json.h). */
#include "gllm/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "gllm/jsonl.h"

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicates among one object's members: pairwise for small objects, sorted
 * key pointers for large ones (a 10^5-key object stays fast). */
static const char *object_duplicate(const cJSON *o)
{
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        n++;
    if (n <= 32) {
        for (const cJSON *a = o->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string))
                    return a->string;
        return NULL;
    }
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) /* cannot check without memory: say so rather than pass */
        return "(out of memory checking keys)";
    size_t k = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        keys[k++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_key);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            dup = keys[i];
    free(keys);
    return dup;
}

const char *gllm_json_duplicate_key(const cJSON *v)
{
    if (!v)
        return NULL;
    if (cJSON_IsObject(v)) {
        const char *d = object_duplicate(v);
        if (d)
            return d;
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (const cJSON *c = v->child; c; c = c->next) {
            const char *d = gllm_json_duplicate_key(c);
            if (d)
                return d;
        }
    return NULL;
}

/* 1-based line and column of byte offset `at` of text. */
static void line_col(const char *text, size_t at, long *line, long *col)
{
    *line = 1;
    size_t bol = 0;
    for (size_t i = 0; i < at; i++)
        if (text[i] == '\n') {
            ++*line;
            bol = i + 1;
        }
    *col = (long)(at - bol) + 1;
}

gllm_status gllm_json_read_file(const char *path, cJSON **out)
{
    *out = NULL;
    char *text;
    size_t n;
    GLLM_TRY(gllm_read_file(path, &text, &n));
    size_t b = n >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? 3 : 0;
    long line, col;
    const char *nul = memchr(text, '\0', n);
    size_t bad = gllm_utf8_invalid_at(text, n);
    if (nul || bad < n) {
        size_t at = nul && (size_t)(nul - text) < bad ? (size_t)(nul - text) : bad;
        line_col(text, at, &line, &col);
        free(text);
        return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld:%ld: %s", path, line, col,
                         nul && (size_t)(nul - text) == at ? "NUL byte" : "invalid UTF-8");
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text + b, n - b, &end, false);
    size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : n;
    if (v)
        while (at < n && (text[at] == ' ' || text[at] == '\t' || text[at] == '\r' || text[at] == '\n'))
            at++;
    if (!v || at < n) {
        line_col(text, at, &line, &col);
        free(text);
        cJSON_Delete(v);
        if (!v && at >= n)
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld:%ld: not valid JSON (the file ends early)", path, line, col);
        return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld:%ld: %s", path, line, col,
                         v ? "trailing characters after the JSON value" : "not valid JSON");
    }
    free(text);
    const char *dup = gllm_json_duplicate_key(v);
    if (dup) {
        gllm_status s = gllm_fail(GLLM_ERR_FORMAT, "%s: duplicate key \"%s\"", path, dup);
        cJSON_Delete(v);
        return s;
    }
    *out = v;
    return GLLM_OK;
}

gllm_status gllm_json_write_file(const char *path, const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    if (!s)
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory printing JSON", path);
    size_t n = strlen(s);
    gllm_atomic *a;
    gllm_status st = gllm_atomic_begin(path, &a);
    if (st == GLLM_OK) {
        gllm_atomic_write(a, s, n);
        gllm_atomic_write(a, "\n", 1);
        st = gllm_atomic_commit(a);
    }
    cJSON_free(s);
    return st;
}

bool gllm_json_add_number(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        return cJSON_AddNumberToObject(o, key, v) != NULL;
    if (!cJSON_AddNullToObject(o, key))
        return false;
    cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "nonfinite");
    if (!list && !(list = cJSON_AddArrayToObject(o, "nonfinite")))
        return false;
    cJSON *name = cJSON_CreateString(key);
    if (!name)
        return false;
    cJSON_AddItemToArray(list, name);
    return true;
}
