/* GGUF v3 writer: metadata serialized as added, tensors converted when added,
 * the file written at the end through a temporary file and a rename. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gllm/dtype.h"
#include "gllm/gguf.h"

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

typedef struct wtensor {
    char *name;
    int type, ndim;
    int64_t ne[GLLM_GGUF_MAX_DIMS];
    uint8_t *data;
    size_t nbytes;
} wtensor;

struct gllm_gguf_writer {
    char *path;
    wbuf kv;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    int n_t, cap_t;
};

static void put(wbuf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(wbuf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    put(b, x, 4);
}

static void put_u64(wbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    put(b, x, 8);
}

static void put_str(wbuf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

gllm_status gllm_gguf_writer_new(const char *path, gllm_gguf_writer **out)
{
    *out = NULL;
    gllm_gguf_writer *w = gllm_calloc(1, sizeof *w, "GGUF writer");
    if (!w)
        return GLLM_ERR_OOM;
    w->path = strdup(path);
    if (!w->path) {
        free(w);
        return gllm_fail(GLLM_ERR_OOM, "out of memory for the GGUF writer");
    }
    *out = w;
    return GLLM_OK;
}

void gllm_gguf_writer_free(gllm_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w->kv.p);
    free(w->path);
    free(w);
}

/* Start a metadata entry: the key (unique) and its type. */
static gllm_status begin_kv(gllm_gguf_writer *w, const char *key, uint32_t type)
{
    if (!key || !*key)
        return gllm_fail(GLLM_ERR_INVALID, "%s: a metadata key is empty", w->path);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return gllm_fail(GLLM_ERR_INVALID, "%s: metadata key '%s' added twice", w->path, key);
    char **nk = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *nk);
    if (!nk)
        return gllm_fail(GLLM_ERR_OOM, "out of memory for GGUF metadata");
    w->keys = nk;
    w->keys[w->n_kv] = strdup(key);
    if (!w->keys[w->n_kv])
        return gllm_fail(GLLM_ERR_OOM, "out of memory for GGUF metadata");
    w->n_kv++;
    put_str(&w->kv, key, strlen(key));
    put_u32(&w->kv, type);
    return GLLM_OK;
}

static gllm_status end_kv(gllm_gguf_writer *w)
{
    return w->kv.oom ? gllm_fail(GLLM_ERR_OOM, "out of memory for GGUF metadata") : GLLM_OK;
}

gllm_status gllm_gguf_add_u32(gllm_gguf_writer *w, const char *key, uint32_t v)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_U32));
    put_u32(&w->kv, v);
    return end_kv(w);
}

gllm_status gllm_gguf_add_i32(gllm_gguf_writer *w, const char *key, int32_t v)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_I32));
    put_u32(&w->kv, (uint32_t)v);
    return end_kv(w);
}

gllm_status gllm_gguf_add_f32(gllm_gguf_writer *w, const char *key, float v)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_F32));
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u32(&w->kv, u);
    return end_kv(w);
}

gllm_status gllm_gguf_add_bool(gllm_gguf_writer *w, const char *key, bool v)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_BOOL));
    uint8_t b = v ? 1 : 0;
    put(&w->kv, &b, 1);
    return end_kv(w);
}

gllm_status gllm_gguf_add_str_len(gllm_gguf_writer *w, const char *key, const char *v, size_t len)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_STRING));
    put_str(&w->kv, v, len);
    return end_kv(w);
}

gllm_status gllm_gguf_add_str(gllm_gguf_writer *w, const char *key, const char *v)
{
    return gllm_gguf_add_str_len(w, key, v, strlen(v));
}

gllm_status gllm_gguf_add_arr_str(gllm_gguf_writer *w, const char *key, const char *const *v,
                                  uint64_t n)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_ARRAY));
    put_u32(&w->kv, GLLM_GGUF_STRING);
    put_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++)
        put_str(&w->kv, v[i], strlen(v[i]));
    return end_kv(w);
}

gllm_status gllm_gguf_add_arr_i32(gllm_gguf_writer *w, const char *key, const int32_t *v,
                                  uint64_t n)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_ARRAY));
    put_u32(&w->kv, GLLM_GGUF_I32);
    put_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++)
        put_u32(&w->kv, (uint32_t)v[i]);
    return end_kv(w);
}

gllm_status gllm_gguf_add_arr_f32(gllm_gguf_writer *w, const char *key, const float *v,
                                  uint64_t n)
{
    GLLM_TRY(begin_kv(w, key, GLLM_GGUF_ARRAY));
    put_u32(&w->kv, GLLM_GGUF_F32);
    put_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(&w->kv, u);
    }
    return end_kv(w);
}

/* ggml's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) (half away from zero) */
static void quantize_q8_0(const float *x, uint8_t *out, size_t n)
{
    for (size_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        uint8_t *o = out + b * 34;
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = gllm_f32_to_f16(d);
        o[0] = (uint8_t)h;
        o[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++)
            o[2 + j] = (uint8_t)(int8_t)roundf(xb[j] * id);
    }
}

gllm_status gllm_gguf_add_tensor(gllm_gguf_writer *w, const char *name, int type, int ndim,
                                 const int64_t *ne, const float *data)
{
    if (type != GLLM_GGML_F32 && type != GLLM_GGML_F16 && type != GLLM_GGML_BF16 &&
        type != GLLM_GGML_Q8_0)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: tensor '%s': gllm writes F32, F16, BF16 and "
                         "Q8_0, not ggml type %d", w->path, name, type);
    if (ndim < 1 || ndim > GLLM_GGUF_MAX_DIMS)
        return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': %d dims", w->path, name, ndim);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (ne[d] <= 0)
            return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': dim %d is %lld", w->path, name,
                             d, (long long)ne[d]);
        n *= (size_t)ne[d];
    }
    if (ne[0] % gllm_ggml_block_size(type))
        return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s': row length %lld is not a multiple "
                         "of %d for %s", w->path, name, (long long)ne[0],
                         gllm_ggml_block_size(type), gllm_ggml_type_name(type));
    for (int i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return gllm_fail(GLLM_ERR_INVALID, "%s: tensor '%s' added twice", w->path, name);
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt)
            return gllm_fail(GLLM_ERR_OOM, "out of memory for GGUF tensors");
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->nbytes = n / (size_t)gllm_ggml_block_size(type) * gllm_ggml_type_size(type);
    t->name = strdup(name);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory for tensor '%s'", w->path, name);
    }
    t->type = type;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->ne[d] = ne[d];
    switch (type) {
    case GLLM_GGML_F32: memcpy(t->data, data, n * sizeof(float)); break;
    case GLLM_GGML_F16: gllm_from_f32(t->data, GLLM_F16, data, n); break;
    case GLLM_GGML_BF16: gllm_from_f32(t->data, GLLM_BF16, data, n); break;
    default: quantize_q8_0(data, t->data, n); break;
    }
    w->n_t++;
    return GLLM_OK;
}

static gllm_status write_all(FILE *f, const char *path, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, f) != n)
        return gllm_fail(GLLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return GLLM_OK;
}

gllm_status gllm_gguf_writer_finish(gllm_gguf_writer *w)
{
    const size_t align = GLLM_GGUF_DEFAULT_ALIGNMENT;
    wbuf h = {0};
    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, (uint64_t)w->n_t);
    put_u64(&h, w->n_kv);
    put(&h, w->kv.p, w->kv.n);
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&h, t->name, strlen(t->name));
        put_u32(&h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            put_u64(&h, (uint64_t)t->ne[d]);
        put_u32(&h, (uint32_t)t->type);
        put_u64(&h, off);
        off += (t->nbytes + align - 1) / align * align;
    }
    static const uint8_t zeros[GLLM_GGUF_DEFAULT_ALIGNMENT];
    put(&h, zeros, (align - h.n % align) % align);
    gllm_status s = GLLM_OK;
    if (h.oom || w->kv.oom)
        s = gllm_fail(GLLM_ERR_OOM, "%s: out of memory for the GGUF header", w->path);
    size_t plen = strlen(w->path);
    char *tmp = malloc(plen + 16);
    FILE *f = NULL;
    if (s == GLLM_OK && !tmp)
        s = gllm_fail(GLLM_ERR_OOM, "out of memory");
    if (s == GLLM_OK) {
        snprintf(tmp, plen + 16, "%s.tmp%d", w->path, (int)getpid());
        f = fopen(tmp, "wb");
        if (!f)
            s = gllm_fail(GLLM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (s == GLLM_OK)
        s = write_all(f, w->path, h.p, h.n);
    for (int i = 0; i < w->n_t && s == GLLM_OK; i++) {
        s = write_all(f, w->path, w->t[i].data, w->t[i].nbytes);
        if (s == GLLM_OK)
            s = write_all(f, w->path, zeros, (align - w->t[i].nbytes % align) % align);
    }
    if (f) {
        if (s == GLLM_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
            s = gllm_fail(GLLM_ERR_IO, "%s: flush failed: %s", w->path, strerror(errno));
        if (fclose(f) != 0 && s == GLLM_OK)
            s = gllm_fail(GLLM_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
        if (s == GLLM_OK && rename(tmp, w->path) != 0)
            s = gllm_fail(GLLM_ERR_IO, "%s: rename failed: %s", w->path, strerror(errno));
        if (s != GLLM_OK)
            unlink(tmp);
    }
    free(tmp);
    free(h.p);
    gllm_gguf_writer_free(w);
    return s;
}
