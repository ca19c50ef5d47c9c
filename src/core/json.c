/* JSON helpers over cJSON (see include/gllm/json.h). */
#include "gllm/json.h"

#include <stdlib.h>
#include <string.h>

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
