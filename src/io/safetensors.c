#include "gllm/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors_internal.h"

/* The reference implementation refuses headers past 100 MB; a larger length
 * field is a corrupt or hostile file, not a model. */
#define ST_MAX_HEADER 100000000ull
/* cJSON parses every number as a double: integers above 2^53 are no longer
 * exact, so offsets and dims beyond it cannot be trusted. */
#define ST_MAX_EXACT 9007199254740992.0

typedef struct st_file {
    char *path;
    uint8_t *map;
    size_t size;
    const uint8_t *data; /* start of the data section (right after the header) */
    size_t data_size;
    cJSON *header;
} st_file;

struct gllm_safetensors {
    char *path; /* what the caller opened: named in errors about the whole set */
    st_file *files;
    int nfiles;
    gllm_st_tensor *tensors; /* file order, then header order within a file */
    int count;
    const gllm_st_tensor **by_name; /* sorted by name, for gllm_st_find */
    const cJSON *metadata;          /* __metadata__ of the first file, or NULL */
};

/* ---------------------------------------------------------------- helpers */

size_t gllm_st_utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07u, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return n;
}

const char *gllm_st_shape_str(char *buf, size_t n, const int64_t *shape, int ndim)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (at < n)
        snprintf(buf + at, n - at, "]");
    return buf;
}

static char *str_dup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    char *p = gllm_malloc(n, what);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* dir + "/" + name, malloc'd. */
static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = gllm_malloc(a + b + 2, "a safetensors path");
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static int is_regular_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* A JSON number that is an exact integer in [0, 2^53]. */
static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT) || floor(d) != d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Valid safetensors dtypes that gllm does not load: refused as unsupported,
 * any other string is a malformed header. */
static int known_foreign_dtype(const char *s)
{
    static const char *const k_names[] = {
        "BOOL", "I8", "I16", "U16", "U32", "U64", "F64", "F8_E4M3", "F8_E5M2",
        "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64",
    };
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++)
        if (strcmp(s, k_names[i]) == 0)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- one file */

static void st_file_free(st_file *f)
{
    if (f->map)
        munmap(f->map, f->size);
    cJSON_Delete(f->header);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static gllm_status map_file(st_file *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s",
                         f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        gllm_status s = gllm_fail(GLLM_ERR_IO, "%s: cannot stat: %s", f->path, strerror(errno));
        close(fd);
        return s;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return gllm_fail(GLLM_ERR_IO, "%s: not a regular file", f->path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: file is %zu bytes, too short for the 8-byte header length", f->path,
                         f->size);
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return gllm_fail(GLLM_ERR_IO, "%s: mmap of %zu bytes failed: %s", f->path, f->size,
                         strerror(errno));
    f->map = m;
    return GLLM_OK;
}

/* Check the header bytes (length, UTF-8, JSON) and parse them into f->header. */
static gllm_status parse_header(st_file *f)
{
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->map[i];
    if (hlen > ST_MAX_HEADER)
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: header length %llu is absurd (the limit is %llu bytes)", f->path,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: header length %llu runs past the end of the file (%zu bytes)",
                         f->path, (unsigned long long)hlen, f->size);
    const uint8_t *h = f->map + 8;
    size_t n = (size_t)hlen;
    f->data = h + n;
    f->data_size = f->size - 8 - n;

    const uint8_t *nul = memchr(h, 0, n);
    if (nul)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: header has a NUL byte at offset %zu", f->path,
                         (size_t)(nul - h));
    size_t bad = gllm_st_utf8_check(h, n);
    if (bad < n)
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                         f->path, h[bad], bad);

    /* cJSON wants a terminated string; the mapping has none. */
    char *text = gllm_malloc(n + 1, "a safetensors header");
    if (!text)
        return gllm_fail_prefix(GLLM_ERR_OOM, "%s: ", f->path);
    memcpy(text, h, n);
    text[n] = '\0';
    const char *end = NULL;
    f->header = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    size_t at = end ? (size_t)(end - text) : 0;
    gllm_status s = GLLM_OK;
    if (!f->header) {
        s = gllm_fail(GLLM_ERR_FORMAT,
                      "%s: header is not valid JSON (error near header offset %zu)", f->path, at);
    } else {
        while (at < n && strchr(" \t\r\n", text[at]))
            at++;
        if (at < n)
            s = gllm_fail(GLLM_ERR_FORMAT,
                          "%s: header has bytes after the JSON object (header offset %zu)",
                          f->path, at);
        else if (!cJSON_IsObject(f->header))
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: header is not a JSON object", f->path);
    }
    free(text);
    return s;
}

typedef struct st_range {
    uint64_t begin, end;
    const char *name;
} st_range;

/* Validate one header entry and fill t; r gets its byte range in the data section. */
static gllm_status parse_entry(const st_file *f, const cJSON *item, gllm_st_tensor *t,
                               st_range *r)
{
    const char *p = f->path, *name = item->string;
    if (!cJSON_IsObject(item))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", p, name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = item->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dtype
                             : strcmp(c->string, "shape") == 0        ? &shape
                             : strcmp(c->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot)
            continue;
        if (*slot)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': key \"%s\" appears twice", p,
                             name, c->string);
        *slot = c;
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", p, name, missing);

    if (!cJSON_IsString(dtype))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", p, name);
    int dt = gllm_dtype_parse(dtype->valuestring);
    if (dt < 0)
        return known_foreign_dtype(dtype->valuestring)
                   ? gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported",
                               p, name, dtype->valuestring)
                   : gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", p, name,
                               dtype->valuestring);

    if (!cJSON_IsArray(shape))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", p, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > GLLM_ST_MAX_DIMS)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: tensor '%s': %d dims, gllm handles at most %d",
                         p, name, ndim, GLLM_ST_MAX_DIMS);
    uint64_t numel = 1;
    int overflow = 0;
    int d = 0;
    for (const cJSON *c = shape->child; c; c = c->next, d++) {
        uint64_t v;
        if (!json_u64(c, &v))
            return gllm_fail(GLLM_ERR_FORMAT,
                             "%s: tensor '%s': shape[%d] is not a non-negative integer", p, name,
                             d);
        t->shape[d] = (int64_t)v;
        overflow |= __builtin_mul_overflow(numel, v, &numel);
    }

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: tensor '%s': \"data_offsets\" is not an array [begin, end]", p, name);
    uint64_t be[2];
    for (int i = 0; i < 2; i++)
        if (!json_u64(cJSON_GetArrayItem(offs, i), &be[i]))
            return gllm_fail(GLLM_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets[%d] is not a non-negative integer", p,
                             name, i);
    if (be[0] > be[1])
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] begin > end",
                         p, name, (unsigned long long)be[0], (unsigned long long)be[1]);
    if (be[1] > f->data_size)
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] run past the data section "
                         "(%zu bytes)",
                         p, name, (unsigned long long)be[0], (unsigned long long)be[1],
                         f->data_size);

    size_t esize = gllm_dtype_size((gllm_dtype)dt);
    uint64_t need;
    char sh[160];
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)esize, &need))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': shape %s x %s overflows 64 bits", p,
                         name, gllm_st_shape_str(sh, sizeof sh, t->shape, ndim),
                         dtype->valuestring);
    if (need != be[1] - be[0])
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: tensor '%s': shape %s x %s needs %llu bytes, data_offsets [%llu, "
                         "%llu] give %llu",
                         p, name, gllm_st_shape_str(sh, sizeof sh, t->shape, ndim),
                         dtype->valuestring, (unsigned long long)need, (unsigned long long)be[0],
                         (unsigned long long)be[1], (unsigned long long)(be[1] - be[0]));

    t->name = name;
    t->dtype = (gllm_dtype)dt;
    t->ndim = ndim;
    t->data = f->data + be[0];
    t->nbytes = (size_t)need;
    t->file = f->path;
    r->begin = be[0];
    r->end = be[1];
    r->name = name;
    return GLLM_OK;
}

static int cmp_range_name(const void *a, const void *b)
{
    return strcmp(((const st_range *)a)->name, ((const st_range *)b)->name);
}

/* cJSON keeps a repeated key as a second item instead of refusing it. */
static gllm_status check_unique(const char *path, st_range *r, int n)
{
    qsort(r, (size_t)n, sizeof *r, cmp_range_name);
    for (int i = 1; i < n; i++)
        if (strcmp(r[i - 1].name, r[i].name) == 0)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path,
                             r[i].name);
    return GLLM_OK;
}

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* No two tensors of one file may share a byte (empty tensors share none). */
static gllm_status check_overlap(const char *path, st_range *r, int n)
{
    qsort(r, (size_t)n, sizeof *r, cmp_range);
    uint64_t end = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        if (r[i].begin == r[i].end)
            continue;
        if (prev && r[i].begin < end)
            return gllm_fail(GLLM_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                             "(ends at %llu)",
                             path, r[i].name, (unsigned long long)r[i].begin,
                             (unsigned long long)r[i].end, prev, (unsigned long long)end);
        end = r[i].end;
        prev = r[i].name;
    }
    return GLLM_OK;
}

static int cmp_by_name(const void *a, const void *b)
{
    const gllm_st_tensor *x = *(const gllm_st_tensor *const *)a;
    const gllm_st_tensor *y = *(const gllm_st_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    /* ties keep file order so the error below names the first copy first */
    return c ? c : (x > y) - (x < y);
}

/* Sort the tensors by name for gllm_st_find. Names repeated within a file
 * were refused by check_unique, so a repeat here is held by two shards of
 * `index`. */
static gllm_status index_names(gllm_safetensors *st, const char *index)
{
    free(st->by_name);
    st->by_name = gllm_malloc((size_t)st->count * sizeof *st->by_name, "the tensor name index");
    if (!st->by_name)
        return GLLM_ERR_OOM;
    for (int i = 0; i < st->count; i++)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, (size_t)st->count, sizeof *st->by_name, cmp_by_name);
    for (int i = 1; i < st->count; i++) {
        const gllm_st_tensor *a = st->by_name[i - 1], *b = st->by_name[i];
        if (strcmp(a->name, b->name) == 0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", index, a->name,
                         a->file, b->file);
    }
    return GLLM_OK;
}

static gllm_status check_metadata(const st_file *f, const cJSON *meta)
{
    if (!cJSON_IsObject(meta))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
    for (const cJSON *c = meta->child; c; c = c->next)
        if (!cJSON_IsString(c))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: __metadata__ key '%s' is not a string",
                             f->path, c->string);
    return GLLM_OK;
}

/* Map `path`, validate its header and append its tensors to st. */
static gllm_status add_file(gllm_safetensors *st, const char *path)
{
    st_file *files = realloc(st->files, (size_t)(st->nfiles + 1) * sizeof *files);
    if (!files)
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory for the file table", path);
    st->files = files;
    st_file *f = &files[st->nfiles++];
    memset(f, 0, sizeof *f);
    if (!(f->path = str_dup(path, "a safetensors path")))
        return GLLM_ERR_OOM;
    GLLM_TRY(map_file(f));
    GLLM_TRY(parse_header(f));

    int n = cJSON_GetArraySize(f->header);
    const cJSON *meta = NULL;
    for (const cJSON *c = f->header->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") != 0)
            continue;
        if (meta)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: __metadata__ appears twice", f->path);
        GLLM_TRY(check_metadata(f, c));
        meta = c;
        n--;
    }
    if (!st->metadata && st->nfiles == 1)
        st->metadata = meta;

    gllm_st_tensor *t = realloc(st->tensors, (size_t)(st->count + n + 1) * sizeof *t);
    if (!t)
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory for %d tensors", f->path, n);
    st->tensors = t;
    st_range *ranges = gllm_malloc((size_t)(n + 1) * sizeof *ranges, "tensor byte ranges");
    if (!ranges)
        return GLLM_ERR_OOM;
    gllm_status s = GLLM_OK;
    int k = 0;
    for (const cJSON *c = f->header->child; c && s == GLLM_OK; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0)
            continue;
        memset(&t[st->count + k], 0, sizeof *t);
        s = parse_entry(f, c, &t[st->count + k], &ranges[k]);
        k++;
    }
    if (s == GLLM_OK) {
        st->count += n;
        s = check_unique(f->path, ranges, n);
    }
    if (s == GLLM_OK)
        s = check_overlap(f->path, ranges, n);
    free(ranges);
    return s;
}

/* ---------------------------------------------------------------- sharded models */

static gllm_status read_index(const char *path, cJSON **out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    gllm_status s = GLLM_OK;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > ST_MAX_HEADER) {
                s = gllm_fail(GLLM_ERR_FORMAT, "%s: index file is larger than %llu bytes", path,
                              ST_MAX_HEADER);
                break;
            }
            char *p = realloc(text, cap);
            if (!p) {
                s = gllm_fail(GLLM_ERR_OOM, "%s: out of memory reading the index", path);
                break;
            }
            text = p;
        }
        size_t got = fread(text + len, 1, cap - len - 1, fp);
        len += got;
        if (got == 0)
            break;
    }
    if (s == GLLM_OK && ferror(fp))
        s = gllm_fail(GLLM_ERR_IO, "%s: read error", path);
    fclose(fp);
    if (s == GLLM_OK) {
        text[len] = '\0';
        const char *end = NULL;
        *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
        if (!*out)
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: not valid JSON (error near offset %zu)", path,
                          end ? (size_t)(end - text) : (size_t)0);
    }
    free(text);
    return s;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static gllm_status check_weight_map(const char *index, const cJSON *map)
{
    if (!cJSON_IsObject(map))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: no \"weight_map\" object", index);
    int n = cJSON_GetArraySize(map);
    const cJSON **keys = gllm_malloc((size_t)(n + 1) * sizeof *keys, "the weight_map keys");
    if (!keys)
        return GLLM_ERR_OOM;
    gllm_status s = GLLM_OK;
    int k = 0;
    for (const cJSON *c = map->child; c; c = c->next) {
        keys[k++] = c;
        int bad = !cJSON_IsString(c) || !c->valuestring[0] || strchr(c->valuestring, '/');
        if (s == GLLM_OK && bad)
            s = gllm_fail(GLLM_ERR_FORMAT,
                          "%s: tensor '%s': weight_map value is not a shard file name", index,
                          c->string);
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_key);
    for (int i = 1; i < n && s == GLLM_OK; i++)
        if (strcmp(keys[i - 1]->string, keys[i]->string) == 0)
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s' appears twice in weight_map", index,
                          keys[i]->string);
    free(keys);
    return s;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Every shard named by weight_map is opened once, in order of first mention;
 * every mapped tensor must then be found in the shard the index names. */
static gllm_status open_sharded(gllm_safetensors *st, const char *index, const char *dir)
{
    cJSON *root = NULL;
    GLLM_TRY(read_index(index, &root));
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    gllm_status s = check_weight_map(index, map);
    for (const cJSON *c = s == GLLM_OK ? map->child : NULL; c && s == GLLM_OK; c = c->next) {
        int seen = 0;
        for (int i = 0; i < st->nfiles && !seen; i++)
            seen = strcmp(base_name(st->files[i].path), c->valuestring) == 0;
        if (seen)
            continue;
        char *shard = path_join(dir, c->valuestring);
        if (!shard) {
            s = GLLM_ERR_OOM;
            break;
        }
        if (!is_regular_file(shard))
            s = gllm_fail(GLLM_ERR_NOT_FOUND, "%s: tensor '%s': shard %s does not exist", index,
                          c->string, shard);
        else
            s = add_file(st, shard);
        free(shard);
    }
    if (s == GLLM_OK)
        s = index_names(st, index);
    for (const cJSON *c = s == GLLM_OK ? map->child : NULL; c && s == GLLM_OK; c = c->next) {
        const gllm_st_tensor *t = gllm_st_find(st, c->string);
        if (!t)
            s = gllm_fail(GLLM_ERR_NOT_FOUND,
                          "%s: tensor '%s' is mapped to %s, which does not hold it", index,
                          c->string, c->valuestring);
        else if (strcmp(base_name(t->file), c->valuestring) != 0)
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s' is mapped to %s but is in %s", index,
                          c->string, c->valuestring, t->file);
    }
    cJSON_Delete(root);
    return s;
}

/* ---------------------------------------------------------------- public API */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static gllm_status open_path(gllm_safetensors *st, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (!ends_with(path, ".index.json"))
            return add_file(st, path);
        char *dir = str_dup(path, "a safetensors path");
        if (!dir)
            return GLLM_ERR_OOM;
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        gllm_status s = open_sharded(st, path, slash ? (dir[0] ? dir : "/") : ".");
        free(dir);
        return s;
    }
    char *single = path_join(path, "model.safetensors");
    char *index = path_join(path, "model.safetensors.index.json");
    gllm_status s = GLLM_OK;
    if (!single || !index)
        s = GLLM_ERR_OOM;
    else if (is_regular_file(single))
        s = add_file(st, single);
    else if (is_regular_file(index))
        s = open_sharded(st, index, path);
    else
        s = gllm_fail(GLLM_ERR_NOT_FOUND,
                      "%s: folder holds neither model.safetensors nor "
                      "model.safetensors.index.json",
                      path);
    free(single);
    free(index);
    return s;
}

gllm_status gllm_st_open(const char *path, gllm_safetensors **out)
{
    if (!out || !path)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_st_open: NULL %s", out ? "path" : "out");
    *out = NULL;
    gllm_safetensors *st = gllm_calloc(1, sizeof *st, "a safetensors handle");
    if (!st)
        return GLLM_ERR_OOM;
    gllm_status s = (st->path = str_dup(path, "a safetensors path")) ? open_path(st, path)
                                                                      : GLLM_ERR_OOM;
    if (s == GLLM_OK && !st->by_name)
        s = index_names(st, path);
    if (s != GLLM_OK) {
        gllm_st_close(st);
        return s;
    }
    *out = st;
    return GLLM_OK;
}

void gllm_st_close(gllm_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->nfiles; i++)
        st_file_free(&st->files[i]);
    free(st->files);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    free(st);
}

int gllm_st_count(const gllm_safetensors *st) { return st ? st->count : 0; }

const gllm_st_tensor *gllm_st_at(const gllm_safetensors *st, int i)
{
    return st && i >= 0 && i < st->count ? &st->tensors[i] : NULL;
}

static int cmp_find(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const gllm_st_tensor *const *)elem)->name);
}

const gllm_st_tensor *gllm_st_find(const gllm_safetensors *st, const char *name)
{
    if (!st || !name || !st->count)
        return NULL;
    const gllm_st_tensor *const *hit =
        bsearch(name, st->by_name, (size_t)st->count, sizeof *st->by_name, cmp_find);
    return hit ? *hit : NULL;
}

const char *gllm_st_metadata(const gllm_safetensors *st, const char *key)
{
    if (!st || !key || !st->metadata)
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->metadata, key);
    return v ? v->valuestring : NULL;
}

gllm_status gllm_st_read_f32(const gllm_safetensors *st, const char *name, int ndim,
                             const int64_t *shape, float *dst)
{
    if (!st || !name || !dst || (ndim > 0 && !shape))
        return gllm_fail(GLLM_ERR_INVALID, "gllm_st_read_f32: NULL argument");
    const gllm_st_tensor *t = gllm_st_find(st, name);
    if (!t)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: tensor '%s' not found", st->path, name);
    int same = ndim == t->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = shape[d] == t->shape[d];
    if (!same) {
        char a[160], b[160];
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': shape %s in the file, expected %s",
                         t->file, name, gllm_st_shape_str(a, sizeof a, t->shape, t->ndim),
                         gllm_st_shape_str(b, sizeof b, shape, ndim < 0 ? 0 : ndim));
    }
    if (t->dtype != GLLM_F32 && t->dtype != GLLM_BF16 && t->dtype != GLLM_F16)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be read as f32",
                         t->file, name, gllm_dtype_name(t->dtype));
    size_t esize = gllm_dtype_size(t->dtype);
    size_t n = t->nbytes / esize;
    if ((uintptr_t)t->data % esize == 0) {
        gllm_to_f32(dst, t->data, t->dtype, n);
        return GLLM_OK;
    }
    /* Writers that pack tensors in caller order (gllm_st_write included) can
     * leave a tensor at an offset its element size does not divide: convert
     * through an aligned bounce buffer rather than read misaligned words. */
    uint64_t bounce[512];
    size_t chunk = sizeof bounce / esize;
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        memcpy(bounce, (const uint8_t *)t->data + i * esize, m * esize);
        gllm_to_f32(dst + i, bounce, t->dtype, m);
    }
    return GLLM_OK;
}
