/* GGUF reader: one mmap, a bounds-checked cursor over the header, tensor
 * views into the mapping (no copy of the data). */
#include "gllm/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A key or tensor name longer than this is a corrupt file, not a model
 * (llama.cpp's own limit for names is 64 bytes; keys are short too). */
#define GGUF_MAX_NAME 65536
#define GGUF_MAX_ARRAY_DEPTH 4

struct gllm_gguf {
    char *path;
    uint8_t *map;
    size_t size;
    uint32_t version, alignment;
    gllm_gguf_kv *kvs;
    int n_kv;
    gllm_gguf_tensor *tensors;
    int n_tensors;
    gllm_gguf_str **str_tables; /* one per string-valued kv, freed on close */
    int n_str_tables;
    const uint8_t *data;       /* start of the data section */
    size_t data_size;
};

typedef struct cursor {
    const gllm_gguf *g;
    size_t at;
} cursor;

/* ---------------------------------------------------------------- type tables */

static const struct {
    int type;
    const char *name;
    int block;
    size_t bytes;
} k_types[] = {
    {GLLM_GGML_F32, "F32", 1, 4},       {GLLM_GGML_F16, "F16", 1, 2},
    {GLLM_GGML_Q4_0, "Q4_0", 32, 18},   {GLLM_GGML_Q4_1, "Q4_1", 32, 20},
    {GLLM_GGML_Q5_0, "Q5_0", 32, 22},   {GLLM_GGML_Q5_1, "Q5_1", 32, 24},
    {GLLM_GGML_Q8_0, "Q8_0", 32, 34},   {GLLM_GGML_Q2_K, "Q2_K", 256, 84},
    {GLLM_GGML_Q3_K, "Q3_K", 256, 110}, {GLLM_GGML_Q4_K, "Q4_K", 256, 144},
    {GLLM_GGML_Q5_K, "Q5_K", 256, 176}, {GLLM_GGML_Q6_K, "Q6_K", 256, 210},
    {GLLM_GGML_BF16, "BF16", 1, 2},
};
#define N_TYPES (int)(sizeof k_types / sizeof k_types[0])

static int type_index(int type)
{
    for (int i = 0; i < N_TYPES; i++)
        if (k_types[i].type == type)
            return i;
    return -1;
}

const char *gllm_ggml_type_name(int type)
{
    int i = type_index(type);
    return i < 0 ? NULL : k_types[i].name;
}

int gllm_ggml_block_size(int type)
{
    int i = type_index(type);
    return i < 0 ? 0 : k_types[i].block;
}

size_t gllm_ggml_type_size(int type)
{
    int i = type_index(type);
    return i < 0 ? 0 : k_types[i].bytes;
}

/* Byte size of one scalar metadata value; 0 for STRING/ARRAY, -1 unknown. */
static int scalar_size(uint32_t t)
{
    switch (t) {
    case GLLM_GGUF_U8: case GLLM_GGUF_I8: case GLLM_GGUF_BOOL: return 1;
    case GLLM_GGUF_U16: case GLLM_GGUF_I16: return 2;
    case GLLM_GGUF_U32: case GLLM_GGUF_I32: case GLLM_GGUF_F32: return 4;
    case GLLM_GGUF_U64: case GLLM_GGUF_I64: case GLLM_GGUF_F64: return 8;
    case GLLM_GGUF_STRING: case GLLM_GGUF_ARRAY: return 0;
    default: return -1;
    }
}

static const char *vtype_name(uint32_t t)
{
    static const char *const n[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                    "int32", "float32", "bool",  "string", "array",
                                    "uint64", "int64", "float64"};
    return t < sizeof n / sizeof n[0] ? n[t] : "unknown";
}

/* ---------------------------------------------------------------- cursor */

static size_t left(const cursor *c) { return c->g->size - c->at; }

static gllm_status need(cursor *c, uint64_t n, const char *what)
{
    if (n > left(c))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s: needs %llu bytes at offset %zu but the file "
                         "ends at %zu (truncated or a length past the end)", c->g->path, what,
                         (unsigned long long)n, c->at, c->g->size);
    return GLLM_OK;
}

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static gllm_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    GLLM_TRY(need(c, 4, what));
    *v = (uint32_t)rd_le(c->g->map + c->at, 4);
    c->at += 4;
    return GLLM_OK;
}

static gllm_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    GLLM_TRY(need(c, 8, what));
    *v = rd_le(c->g->map + c->at, 8);
    c->at += 8;
    return GLLM_OK;
}

static gllm_status rd_str(cursor *c, gllm_gguf_str *s, const char *what)
{
    uint64_t n;
    GLLM_TRY(rd_u64(c, &n, what));
    GLLM_TRY(need(c, n, what));
    s->ptr = (const char *)c->g->map + c->at;
    s->len = n;
    c->at += n;
    return GLLM_OK;
}

/* Read a key or tensor name: a NUL-terminated copy; refuses NULs inside. */
static gllm_status rd_name(cursor *c, const char *what, char **out)
{
    gllm_gguf_str s;
    GLLM_TRY(rd_str(c, &s, what));
    if (s.len == 0 || s.len > GGUF_MAX_NAME || memchr(s.ptr, 0, s.len))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s: empty, longer than %d bytes or containing "
                         "a NUL byte", c->g->path, what, GGUF_MAX_NAME);
    char *p = gllm_malloc(s.len + 1, "a GGUF name");
    if (!p)
        return GLLM_ERR_OOM;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    *out = p;
    return GLLM_OK;
}

/* ---------------------------------------------------------------- metadata */

/* Skip one value of type t (recursively for nested arrays). */
static gllm_status skip_value(cursor *c, uint32_t t, int depth, const char *what)
{
    int sz = scalar_size(t);
    if (sz < 0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s: unknown value type %u", c->g->path, what, t);
    if (sz > 0) {
        GLLM_TRY(need(c, (uint64_t)sz, what));
        c->at += (size_t)sz;
        return GLLM_OK;
    }
    if (t == GLLM_GGUF_STRING) {
        gllm_gguf_str s;
        return rd_str(c, &s, what);
    }
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s: arrays nested deeper than %d", c->g->path,
                         what, GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    GLLM_TRY(rd_u32(c, &et, what));
    GLLM_TRY(rd_u64(c, &n, what));
    int esz = scalar_size(et);
    if (esz < 0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s: unknown array element type %u", c->g->path,
                         what, et);
    if (esz > 0) {
        if (n > left(c) / (uint64_t)esz)
            return need(c, UINT64_MAX, what);
        c->at += (size_t)(n * (uint64_t)esz);
        return GLLM_OK;
    }
    /* each string or array element takes at least 8 bytes */
    if (n > left(c) / 8)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s: array count %llu past the end of the file",
                         c->g->path, what, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        GLLM_TRY(skip_value(c, et, depth + 1, what));
    return GLLM_OK;
}

static gllm_status read_kv(gllm_gguf *g, cursor *c, int idx, gllm_gguf_kv *kv)
{
    char what[128];
    snprintf(what, sizeof what, "metadata entry %d key", idx);
    char *key;
    GLLM_TRY(rd_name(c, what, &key));
    kv->key = key;
    char kwhat[GGUF_MAX_NAME / 256 + 64];
    snprintf(kwhat, sizeof kwhat, "key '%.200s'", key);
    uint32_t t;
    GLLM_TRY(rd_u32(c, &t, kwhat));
    if (scalar_size(t) < 0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s': unknown value type %u", g->path, key, t);
    kv->type = (gllm_gguf_vtype)t;
    kv->n = 1;
    if (t == GLLM_GGUF_STRING) {
        gllm_gguf_str *s = gllm_malloc(sizeof *s, "a GGUF string");
        if (!s)
            return GLLM_ERR_OOM;
        g->str_tables[g->n_str_tables++] = s;
        kv->strs = s;
        return rd_str(c, s, kwhat);
    }
    if (t != GLLM_GGUF_ARRAY) {
        kv->data = g->map + c->at;
        return skip_value(c, t, 0, kwhat);
    }
    uint32_t et;
    uint64_t n;
    GLLM_TRY(rd_u32(c, &et, kwhat));
    GLLM_TRY(rd_u64(c, &n, kwhat));
    int esz = scalar_size(et);
    if (esz < 0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s': unknown array element type %u", g->path,
                         key, et);
    kv->arr_type = (gllm_gguf_vtype)et;
    kv->n = n;
    kv->data = g->map + c->at;
    if (esz > 0) {
        if (n > left(c) / (uint64_t)esz)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s': array of %llu %s past the end of the "
                             "file", g->path, key, (unsigned long long)n, vtype_name(et));
        c->at += (size_t)(n * (uint64_t)esz);
        return GLLM_OK;
    }
    if (n > left(c) / 8)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s': array count %llu past the end of the "
                         "file", g->path, key, (unsigned long long)n);
    if (et == GLLM_GGUF_ARRAY) { /* nested: kept as raw bytes, no typed access */
        for (uint64_t i = 0; i < n; i++)
            GLLM_TRY(skip_value(c, et, 1, kwhat));
        return GLLM_OK;
    }
    gllm_gguf_str *s = gllm_malloc((size_t)(n ? n : 1) * sizeof *s, "GGUF string array");
    if (!s)
        return GLLM_ERR_OOM;
    g->str_tables[g->n_str_tables++] = s;
    kv->strs = s;
    for (uint64_t i = 0; i < n; i++) {
        char ewhat[256];
        snprintf(ewhat, sizeof ewhat, "key '%.200s' element %llu", key, (unsigned long long)i);
        GLLM_TRY(rd_str(c, &s[i], ewhat));
    }
    return GLLM_OK;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

/* Sort pointers to the name fields and look for neighbours that are equal. */
static gllm_status check_unique(const gllm_gguf *g, const char *const *names, size_t stride,
                                int n, const char *what)
{
    if (n < 2)
        return GLLM_OK;
    const char *const **p = gllm_malloc((size_t)n * sizeof *p, "GGUF name check");
    if (!p)
        return GLLM_ERR_OOM;
    for (int i = 0; i < n; i++)
        p[i] = (const char *const *)((const char *)names + (size_t)i * stride);
    qsort(p, (size_t)n, sizeof *p, cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (strcmp(*p[i], *p[i - 1]) == 0) {
            gllm_status s = gllm_fail(GLLM_ERR_FORMAT, "%s: %s '%s' appears more than once",
                                      g->path, what, *p[i]);
            free(p);
            return s;
        }
    free(p);
    return GLLM_OK;
}

/* ---------------------------------------------------------------- tensors */

static gllm_status read_tensor_info(gllm_gguf *g, cursor *c, int idx, gllm_gguf_tensor *t)
{
    char what[64];
    snprintf(what, sizeof what, "tensor info %d name", idx);
    char *name;
    GLLM_TRY(rd_name(c, what, &name));
    t->name = name;
    char twhat[300];
    snprintf(twhat, sizeof twhat, "tensor '%.200s'", name);
    uint32_t nd;
    GLLM_TRY(rd_u32(c, &nd, twhat));
    if (nd == 0 || nd > GLLM_GGUF_MAX_DIMS)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': n_dims %u outside [1, %d]", g->path,
                         name, nd, GLLM_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t total = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        GLLM_TRY(rd_u64(c, &ne, twhat));
        if (ne == 0 || ne > (uint64_t)INT64_MAX || total > (uint64_t)INT64_MAX / ne)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': dimension %u is %llu (zero, or "
                             "the element count overflows)", g->path, name, d,
                             (unsigned long long)ne);
        total *= ne;
        t->ne[d] = (int64_t)ne;
    }
    for (int d = (int)nd; d < GLLM_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    uint32_t type;
    GLLM_TRY(rd_u32(c, &type, twhat));
    t->type = (int)type;
    GLLM_TRY(rd_u64(c, &t->offset, twhat));
    int ti = type_index((int)type);
    if (ti < 0)
        return gllm_fail(type <= 41 ? GLLM_ERR_UNSUPPORTED : GLLM_ERR_FORMAT,
                         "%s: tensor '%s': ggml type %u is %s (gllm reads F32, F16, BF16, Q4_0, "
                         "Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", g->path, name,
                         type, type <= 41 ? "not supported" : "unknown");
    if ((uint64_t)t->ne[0] % (uint64_t)k_types[ti].block)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': row length %lld is not a multiple "
                         "of the %s block size %d", g->path, name, (long long)t->ne[0],
                         k_types[ti].name, k_types[ti].block);
    uint64_t blocks = total / (uint64_t)k_types[ti].block;
    if (blocks > SIZE_MAX / k_types[ti].bytes)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': byte size overflows", g->path, name);
    t->nbytes = (size_t)(blocks * k_types[ti].bytes);
    t->nelems = (size_t)total;
    if (t->offset % g->alignment)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the "
                         "alignment %u", g->path, name, (unsigned long long)t->offset,
                         g->alignment);
    return GLLM_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const gllm_gguf_tensor *x = *(const gllm_gguf_tensor *const *)a;
    const gllm_gguf_tensor *y = *(const gllm_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static gllm_status place_tensors(gllm_gguf *g)
{
    for (int i = 0; i < g->n_tensors; i++) {
        gllm_gguf_tensor *t = &g->tensors[i];
        if (t->offset > g->data_size || t->nbytes > g->data_size - t->offset)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': data [%llu, %llu) lies outside "
                             "the data section of %zu bytes", g->path, t->name,
                             (unsigned long long)t->offset,
                             (unsigned long long)(t->offset + t->nbytes), g->data_size);
        t->data = g->data + t->offset;
    }
    if (g->n_tensors < 2)
        return GLLM_OK;
    const gllm_gguf_tensor **p = gllm_malloc((size_t)g->n_tensors * sizeof *p, "tensor order");
    if (!p)
        return GLLM_ERR_OOM;
    for (int i = 0; i < g->n_tensors; i++)
        p[i] = &g->tensors[i];
    qsort(p, (size_t)g->n_tensors, sizeof *p, cmp_offset);
    gllm_status s = GLLM_OK;
    for (int i = 1; i < g->n_tensors && s == GLLM_OK; i++)
        if (p[i]->offset < p[i - 1]->offset + p[i - 1]->nbytes)
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': data at offset %llu overlaps tensor "
                          "'%s'", g->path, p[i]->name, (unsigned long long)p[i]->offset,
                          p[i - 1]->name);
    free(p);
    return s;
}

/* ---------------------------------------------------------------- open */

static gllm_status parse(gllm_gguf *g)
{
    cursor c = {g, 0};
    if (g->size < 4 || memcmp(g->map, "GGUF", 4) != 0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: magic: not a GGUF file (the first 4 bytes are not "
                         "\"GGUF\")", g->path);
    c.at = 4;
    GLLM_TRY(rd_u32(&c, &g->version, "version"));
    if (g->version == 1)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: version: GGUF v1 is not supported (v2 and v3 "
                         "are)", g->path);
    if (g->version != 2 && g->version != 3)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: version: %u is not a GGUF version (2 or 3)",
                         g->path, g->version);
    uint64_t nt, nkv;
    GLLM_TRY(rd_u64(&c, &nt, "tensor count"));
    GLLM_TRY(rd_u64(&c, &nkv, "metadata count"));
    /* a metadata entry takes at least 13 bytes, a tensor info at least 29 */
    if (nkv > left(&c) / 13 || nkv > INT_MAX)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: metadata count: %llu entries cannot fit in the "
                         "%zu bytes left", g->path, (unsigned long long)nkv, left(&c));
    if (nt > left(&c) / 29 || nt > INT_MAX)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor count: %llu tensors cannot fit in the %zu "
                         "bytes left", g->path, (unsigned long long)nt, left(&c));
    g->kvs = gllm_calloc(nkv ? nkv : 1, sizeof *g->kvs, "GGUF metadata");
    g->str_tables = gllm_calloc(nkv ? nkv : 1, sizeof *g->str_tables, "GGUF strings");
    g->tensors = gllm_calloc(nt ? nt : 1, sizeof *g->tensors, "GGUF tensors");
    if (!g->kvs || !g->str_tables || !g->tensors)
        return GLLM_ERR_OOM;
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv++;
        GLLM_TRY(read_kv(g, &c, (int)i, &g->kvs[i]));
    }
    GLLM_TRY(check_unique(g, &g->kvs[0].key, sizeof g->kvs[0], g->n_kv, "metadata key"));
    g->alignment = GLLM_GGUF_DEFAULT_ALIGNMENT;
    const gllm_gguf_kv *al = gllm_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != GLLM_GGUF_U32)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'general.alignment' must be uint32, not "
                             "%s", g->path, vtype_name(al->type));
        uint32_t a = (uint32_t)rd_le(al->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'general.alignment': %u is not a power "
                             "of two", g->path, a);
        g->alignment = a;
    }
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors++;
        GLLM_TRY(read_tensor_info(g, &c, (int)i, &g->tensors[i]));
    }
    GLLM_TRY(check_unique(g, &g->tensors[0].name, sizeof g->tensors[0], g->n_tensors,
                          "tensor name"));
    size_t start = (c.at + g->alignment - 1) / g->alignment * g->alignment;
    if (start > g->size) {
        if (g->n_tensors > 0)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: data section: starts at %zu, past the end of "
                             "the file (%zu bytes)", g->path, start, g->size);
        start = g->size;
    }
    g->data = g->map + start;
    g->data_size = g->size - start;
    return place_tensors(g);
}

gllm_status gllm_gguf_open(const char *path, gllm_gguf **out)
{
    *out = NULL;
    gllm_gguf *g = gllm_calloc(1, sizeof *g, "GGUF reader");
    if (!g)
        return GLLM_ERR_OOM;
    size_t n = strlen(path) + 1;
    g->path = gllm_malloc(n, "GGUF path");
    if (!g->path) {
        free(g);
        return GLLM_ERR_OOM;
    }
    memcpy(g->path, path, n);
    gllm_status s = GLLM_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        s = gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s",
                      path, strerror(errno));
    else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        s = gllm_fail(GLLM_ERR_IO, "%s: not a regular file", path);
    else if (sb.st_size == 0)
        s = gllm_fail(GLLM_ERR_FORMAT, "%s: magic: the file is empty", path);
    else {
        g->size = (size_t)sb.st_size;
        void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            s = gllm_fail(GLLM_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        else
            g->map = m;
    }
    if (fd >= 0)
        close(fd);
    if (s == GLLM_OK)
        s = parse(g);
    if (s != GLLM_OK) {
        gllm_gguf_close(g);
        return s;
    }
    *out = g;
    return GLLM_OK;
}

void gllm_gguf_close(gllm_gguf *g)
{
    if (!g)
        return;
    if (g->map)
        munmap(g->map, g->size);
    for (int i = 0; i < g->n_kv; i++)
        free((char *)g->kvs[i].key);
    for (int i = 0; i < g->n_str_tables; i++)
        free(g->str_tables[i]);
    for (int i = 0; i < g->n_tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->str_tables);
    free(g->kvs);
    free(g->tensors);
    free(g->path);
    free(g);
}

/* ---------------------------------------------------------------- accessors */

const char *gllm_gguf_path(const gllm_gguf *g) { return g->path; }
uint32_t gllm_gguf_version(const gllm_gguf *g) { return g->version; }
uint32_t gllm_gguf_alignment(const gllm_gguf *g) { return g->alignment; }
int gllm_gguf_kv_count(const gllm_gguf *g) { return g->n_kv; }
int gllm_gguf_tensor_count(const gllm_gguf *g) { return g->n_tensors; }

const gllm_gguf_kv *gllm_gguf_kv_at(const gllm_gguf *g, int i)
{
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const gllm_gguf_tensor *gllm_gguf_tensor_at(const gllm_gguf *g, int i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gllm_gguf_kv *gllm_gguf_find_kv(const gllm_gguf *g, const char *key)
{
    for (int i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0)
            return &g->kvs[i];
    return NULL;
}

const gllm_gguf_tensor *gllm_gguf_find_tensor(const gllm_gguf *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

static int is_int_type(uint32_t t)
{
    return t <= GLLM_GGUF_I32 || t == GLLM_GGUF_U64 || t == GLLM_GGUF_I64;
}

/* Value i of numeric type t at p as int64 (u64 above INT64_MAX saturates;
 * callers range-check), or as double. */
static int64_t num_int(uint32_t t, const uint8_t *p)
{
    switch (t) {
    case GLLM_GGUF_U8: return p[0];
    case GLLM_GGUF_I8: return (int8_t)p[0];
    case GLLM_GGUF_U16: return (uint16_t)rd_le(p, 2);
    case GLLM_GGUF_I16: return (int16_t)(uint16_t)rd_le(p, 2);
    case GLLM_GGUF_U32: return (uint32_t)rd_le(p, 4);
    case GLLM_GGUF_I32: return (int32_t)(uint32_t)rd_le(p, 4);
    case GLLM_GGUF_U64: {
        uint64_t v = rd_le(p, 8);
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
    }
    case GLLM_GGUF_I64: return (int64_t)rd_le(p, 8);
    case GLLM_GGUF_BOOL: return p[0] != 0;
    default: return 0;
    }
}

static double num_float(uint32_t t, const uint8_t *p)
{
    if (t == GLLM_GGUF_F32) {
        uint32_t u = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    if (t == GLLM_GGUF_F64) {
        uint64_t u = rd_le(p, 8);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    return (double)num_int(t, p);
}

int64_t gllm_gguf_arr_int(const gllm_gguf_kv *kv, uint64_t i)
{
    int sz = scalar_size(kv->arr_type);
    if (kv->type != GLLM_GGUF_ARRAY || sz <= 0 || i >= kv->n)
        return 0;
    return num_int(kv->arr_type, (const uint8_t *)kv->data + i * (uint64_t)sz);
}

double gllm_gguf_arr_float(const gllm_gguf_kv *kv, uint64_t i)
{
    int sz = scalar_size(kv->arr_type);
    if (kv->type != GLLM_GGUF_ARRAY || sz <= 0 || i >= kv->n)
        return 0;
    return num_float(kv->arr_type, (const uint8_t *)kv->data + i * (uint64_t)sz);
}

static gllm_status find_typed(const gllm_gguf *g, const char *key, const gllm_gguf_kv **kv)
{
    *kv = gllm_gguf_find_kv(g, key);
    if (!*kv)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: key '%s' is missing", g->path, key);
    return GLLM_OK;
}

gllm_status gllm_gguf_get_int(const gllm_gguf *g, const char *key, int64_t *out)
{
    const gllm_gguf_kv *kv;
    GLLM_TRY(find_typed(g, key, &kv));
    if (!is_int_type(kv->type))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' must be an integer, not %s", g->path, key,
                         vtype_name(kv->type));
    if (kv->type == GLLM_GGUF_U64 && rd_le(kv->data, 8) > (uint64_t)INT64_MAX)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' is out of range", g->path, key);
    *out = num_int(kv->type, kv->data);
    return GLLM_OK;
}

gllm_status gllm_gguf_get_float(const gllm_gguf *g, const char *key, double *out)
{
    const gllm_gguf_kv *kv;
    GLLM_TRY(find_typed(g, key, &kv));
    if (!is_int_type(kv->type) && kv->type != GLLM_GGUF_F32 && kv->type != GLLM_GGUF_F64)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' must be a number, not %s", g->path, key,
                         vtype_name(kv->type));
    *out = num_float(kv->type, kv->data);
    return GLLM_OK;
}

gllm_status gllm_gguf_get_bool(const gllm_gguf *g, const char *key, bool *out)
{
    const gllm_gguf_kv *kv;
    GLLM_TRY(find_typed(g, key, &kv));
    if (kv->type != GLLM_GGUF_BOOL)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' must be a bool, not %s", g->path, key,
                         vtype_name(kv->type));
    *out = ((const uint8_t *)kv->data)[0] != 0;
    return GLLM_OK;
}

gllm_status gllm_gguf_get_str(const gllm_gguf *g, const char *key, char **out)
{
    const gllm_gguf_kv *kv;
    GLLM_TRY(find_typed(g, key, &kv));
    if (kv->type != GLLM_GGUF_STRING)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' must be a string, not %s", g->path, key,
                         vtype_name(kv->type));
    if (memchr(kv->strs->ptr, 0, kv->strs->len))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s': string contains a NUL byte", g->path,
                         key);
    char *p = gllm_malloc(kv->strs->len + 1, "a GGUF string");
    if (!p)
        return GLLM_ERR_OOM;
    memcpy(p, kv->strs->ptr, kv->strs->len);
    p[kv->strs->len] = 0;
    *out = p;
    return GLLM_OK;
}

gllm_status gllm_gguf_read_f32(const gllm_gguf *g, const gllm_gguf_tensor *t, float *dst)
{
    gllm_status s = gllm_ggml_dequantize(t->type, t->data, dst, t->nelems);
    if (s != GLLM_OK)
        return gllm_fail_prefix(s, "%s: tensor '%s': ", g->path, t->name);
    return GLLM_OK;
}
