/* GGUF reader and writer: metadata of every type, dequantization bit for bit
 * against the `gguf` Python package (tests/fixtures/gguf, made by
 * scripts/make_gguf_fixtures.py), v2 and v3, every malformed file refused
 * naming the file and field (crafted byte by byte), and files gllm writes read
 * back by gllm and by the `gguf` package. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gllm/dtype.h"
#include "gllm/gguf.h"
#include "test_util.h"

static char g_dir[256];

/* ---------------------------------------------------------------- byte builder */

typedef struct bb {
    uint8_t b[8192];
    size_t n;
} bb;

static void b_raw(bb *o, const void *p, size_t n)
{
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void b_u32(bb *o, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        o->b[o->n++] = (uint8_t)(v >> (8 * i));
}
static void b_u64(bb *o, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        o->b[o->n++] = (uint8_t)(v >> (8 * i));
}
static void b_str(bb *o, const char *s)
{
    b_u64(o, strlen(s));
    b_raw(o, s, strlen(s));
}

/* A valid file and the ways to spoil it. */
typedef struct mut {
    const char *magic;
    uint32_t version;
    int64_t n_kv, n_t;        /* -1: the real counts */
    uint64_t key0_len;        /* 0: the real length */
    uint32_t vtype0;          /* value type of key 0 (a string) */
    uint32_t arr_etype;       /* element type of key 1 (int32 array) */
    uint64_t arr_n;           /* 0: 3 */
    const char *key2;         /* name of key 2 (general.alignment) */
    uint32_t align_type, align_val;
    uint32_t ndim0;
    uint64_t dim0;            /* first dim of tensor a (4) */
    uint32_t ttype0;          /* type of tensor a (F32) */
    uint64_t off1;            /* offset of tensor b (32) */
    const char *name1;        /* name of tensor b */
    size_t truncate;          /* keep only this many bytes (0: all) */
} mut;

static void build(bb *o, const mut *m)
{
    o->n = 0;
    b_raw(o, m->magic ? m->magic : "GGUF", 4);
    b_u32(o, m->version ? m->version : 3);
    b_u64(o, m->n_t >= 0 ? (uint64_t)m->n_t : 2);
    b_u64(o, m->n_kv >= 0 ? (uint64_t)m->n_kv : 3);
    /* key 0: general.architecture = "llama" */
    const char *k0 = "general.architecture";
    b_u64(o, m->key0_len ? m->key0_len : strlen(k0));
    b_raw(o, k0, strlen(k0));
    b_u32(o, m->vtype0 ? m->vtype0 : GLLM_GGUF_STRING);
    b_str(o, "llama");
    /* key 1: test.arr = [1, 2, 3] (int32) */
    b_str(o, "test.arr");
    b_u32(o, GLLM_GGUF_ARRAY);
    b_u32(o, m->arr_etype ? m->arr_etype : GLLM_GGUF_I32);
    b_u64(o, m->arr_n ? m->arr_n : 3);
    for (int i = 1; i <= 3; i++)
        b_u32(o, (uint32_t)i);
    /* key 2: general.alignment = 32 */
    b_str(o, m->key2 ? m->key2 : "general.alignment");
    b_u32(o, m->align_type ? m->align_type : GLLM_GGUF_U32);
    b_u32(o, m->align_val ? m->align_val : 32);
    /* tensor a: F32 [4, 2] at 0; tensor b: F32 [8] at 32 */
    b_str(o, "a");
    b_u32(o, m->ndim0 ? m->ndim0 : 2);
    b_u64(o, m->dim0 ? m->dim0 : 4);
    b_u64(o, 2);
    b_u32(o, m->ttype0 ? m->ttype0 : GLLM_GGML_F32);
    b_u64(o, 0);
    b_str(o, m->name1 ? m->name1 : "b");
    b_u32(o, 1);
    b_u64(o, 8);
    b_u32(o, GLLM_GGML_F32);
    b_u64(o, m->off1 ? m->off1 : 32);
    while (o->n % 32)
        o->b[o->n++] = 0;
    for (int i = 0; i < 16; i++) {
        float f = (float)(i + 1) * 0.5f;
        b_raw(o, &f, 4);
    }
    if (m->truncate)
        o->n = m->truncate;
}

static const char *write_bytes(const char *name, const bb *o)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot create %s\n", path);
        exit(1);
    }
    if (o->n)
        fwrite(o->b, 1, o->n, f);
    fclose(f);
    return path;
}

static mut base(void)
{
    mut m;
    memset(&m, 0, sizeof m);
    m.n_kv = m.n_t = -1;
    return m;
}

/* Open must fail with `code`, leave *out NULL, name the file and say `needle`. */
#define CHECK_REFUSED(name, m, code, needle)                                                 \
    do {                                                                                     \
        bb o_;                                                                               \
        build(&o_, &(m));                                                                    \
        const char *p_ = write_bytes((name), &o_);                                           \
        gllm_gguf *g_ = (gllm_gguf *)1;                                                      \
        CHECK_ERR(gllm_gguf_open(p_, &g_), (code), (needle));                                \
        CHECK(g_ == NULL);                                                                   \
        CHECK_MSG(strstr(gllm_last_error(), (name)) != NULL, "'%s' should name %s",          \
                  gllm_last_error(), (name));                                                \
    } while (0)

static void test_crafted_valid(void)
{
    TEST_CASE("a crafted minimal file reads back")
    {
        mut m = base();
        bb o;
        build(&o, &m);
        gllm_gguf *g = NULL;
        CHECK_OK(gllm_gguf_open(write_bytes("ok.gguf", &o), &g));
        if (!g)
            return;
        CHECK(gllm_gguf_version(g) == 3);
        CHECK(gllm_gguf_kv_count(g) == 3 && gllm_gguf_tensor_count(g) == 2);
        const gllm_gguf_tensor *b = gllm_gguf_find_tensor(g, "b");
        CHECK(b && b->nelems == 8 && b->ndim == 1 && b->ne[0] == 8);
        float v[8];
        if (b) {
            CHECK_OK(gllm_gguf_read_f32(g, b, v));
            CHECK(v[0] == 4.5f && v[7] == 8.0f);
        }
        const gllm_gguf_kv *arr = gllm_gguf_find_kv(g, "test.arr");
        CHECK(arr && arr->n == 3 && gllm_gguf_arr_int(arr, 2) == 3);
        char *s = NULL;
        CHECK_OK(gllm_gguf_get_str(g, "general.architecture", &s));
        CHECK(s && strcmp(s, "llama") == 0);
        free(s);
        int64_t x;
        CHECK_ERR(gllm_gguf_get_int(g, "general.architecture", &x), GLLM_ERR_FORMAT,
                  "must be an integer");
        CHECK_ERR(gllm_gguf_get_int(g, "no.such", &x), GLLM_ERR_NOT_FOUND, "no.such");
        gllm_gguf_close(g);
    }
    TEST_CASE("GGUF v2 reads like v3")
    {
        mut m = base();
        m.version = 2;
        bb o;
        build(&o, &m);
        gllm_gguf *g = NULL;
        CHECK_OK(gllm_gguf_open(write_bytes("v2.gguf", &o), &g));
        CHECK(g && gllm_gguf_version(g) == 2 && gllm_gguf_tensor_count(g) == 2);
        gllm_gguf_close(g);
    }
}

static void test_malformed(void)
{
    mut m;
    TEST_CASE("every truncation is refused")
    {
        m = base();
        bb full;
        build(&full, &m);
        int refused = 0, total = 0;
        for (size_t n = 1; n < full.n; n++) {
            m.truncate = n;
            bb o;
            build(&o, &m);
            gllm_gguf *g = NULL;
            gllm_clear_error();
            gllm_status s = gllm_gguf_open(write_bytes("trunc.gguf", &o), &g);
            total++;
            if (s == GLLM_ERR_FORMAT && !g && strstr(gllm_last_error(), "trunc.gguf"))
                refused++;
            else
                printf("truncation at %zu: %s %s\n", n, gllm_status_name(s), gllm_last_error());
            gllm_gguf_close(g);
        }
        CHECK_MSG(refused == total, "%d of %d truncations refused", refused, total);
    }
    TEST_CASE("empty file") { bb o = {.n = 0}; gllm_gguf *g = (gllm_gguf *)1;
        CHECK_ERR(gllm_gguf_open(write_bytes("empty.gguf", &o), &g), GLLM_ERR_FORMAT, "empty");
        CHECK(g == NULL); }
    TEST_CASE("missing file") { gllm_gguf *g = (gllm_gguf *)1;
        CHECK_ERR(gllm_gguf_open("/nonexistent/x.gguf", &g), GLLM_ERR_NOT_FOUND, "x.gguf"); }
    TEST_CASE("bad magic") { m = base(); m.magic = "GGML";
        CHECK_REFUSED("magic.gguf", m, GLLM_ERR_FORMAT, "magic"); }
    TEST_CASE("version 1") { m = base(); m.version = 1;
        CHECK_REFUSED("v1.gguf", m, GLLM_ERR_UNSUPPORTED, "version"); }
    TEST_CASE("version 4") { m = base(); m.version = 4;
        CHECK_REFUSED("v4.gguf", m, GLLM_ERR_FORMAT, "version"); }
    TEST_CASE("metadata count past the end") { m = base(); m.n_kv = 1000000;
        CHECK_REFUSED("nkv.gguf", m, GLLM_ERR_FORMAT, "metadata count"); }
    TEST_CASE("tensor count past the end") { m = base(); m.n_t = (int64_t)1 << 40;
        CHECK_REFUSED("nt.gguf", m, GLLM_ERR_FORMAT, "tensor count"); }
    TEST_CASE("key length past the end") { m = base(); m.key0_len = 1ull << 50;
        CHECK_REFUSED("keylen.gguf", m, GLLM_ERR_FORMAT, "metadata entry 0 key"); }
    TEST_CASE("unknown value type") { m = base(); m.vtype0 = 13;
        CHECK_REFUSED("vtype.gguf", m, GLLM_ERR_FORMAT, "unknown value type 13"); }
    TEST_CASE("unknown array element type") { m = base(); m.arr_etype = 77;
        CHECK_REFUSED("etype.gguf", m, GLLM_ERR_FORMAT, "test.arr"); }
    TEST_CASE("array count past the end") { m = base(); m.arr_n = 1ull << 61;
        CHECK_REFUSED("arrn.gguf", m, GLLM_ERR_FORMAT, "test.arr"); }
    TEST_CASE("string array count past the end") { m = base();
        m.arr_etype = GLLM_GGUF_STRING; m.arr_n = 1ull << 40;
        CHECK_REFUSED("strarr.gguf", m, GLLM_ERR_FORMAT, "test.arr"); }
    TEST_CASE("string element length past the end") { m = base();
        m.arr_etype = GLLM_GGUF_STRING; m.arr_n = 1;
        /* the first "string" has length 1 | 2 << 32 */
        CHECK_REFUSED("strlen.gguf", m, GLLM_ERR_FORMAT, "test.arr' element 0"); }
    TEST_CASE("repeated key") { m = base(); m.key2 = "test.arr";
        CHECK_REFUSED("dupkey.gguf", m, GLLM_ERR_FORMAT, "'test.arr' appears more than once"); }
    TEST_CASE("alignment not a power of two") { m = base(); m.align_val = 48;
        CHECK_REFUSED("align.gguf", m, GLLM_ERR_FORMAT, "general.alignment"); }
    TEST_CASE("alignment of the wrong type") { m = base(); m.align_type = GLLM_GGUF_I32;
        CHECK_REFUSED("aligntype.gguf", m, GLLM_ERR_FORMAT, "general.alignment"); }
    TEST_CASE("n_dims 0") { m = base(); m.ndim0 = 7;
        CHECK_REFUSED("ndim.gguf", m, GLLM_ERR_FORMAT, "tensor 'a': n_dims"); }
    TEST_CASE("a zero dimension") { m = base(); m.dim0 = 0;
        /* dim0 == 0 means "default" in the builder: use an overflow instead */
        m.dim0 = 1ull << 63;
        CHECK_REFUSED("dim.gguf", m, GLLM_ERR_FORMAT, "tensor 'a': dimension 0"); }
    TEST_CASE("unknown tensor type") { m = base(); m.ttype0 = 99;
        CHECK_REFUSED("ttype.gguf", m, GLLM_ERR_FORMAT, "tensor 'a': ggml type 99"); }
    TEST_CASE("unsupported tensor type") { m = base(); m.ttype0 = 16; /* IQ2_XXS */
        CHECK_REFUSED("iq.gguf", m, GLLM_ERR_UNSUPPORTED, "tensor 'a': ggml type 16"); }
    TEST_CASE("rows not whole blocks") { m = base(); m.ttype0 = GLLM_GGML_Q8_0;
        CHECK_REFUSED("block.gguf", m, GLLM_ERR_FORMAT, "tensor 'a': row length 4"); }
    TEST_CASE("misaligned tensor offset") { m = base(); m.off1 = 36;
        CHECK_REFUSED("misalign.gguf", m, GLLM_ERR_FORMAT, "tensor 'b': offset 36"); }
    TEST_CASE("tensor data past the end") { m = base(); m.off1 = 64;
        CHECK_REFUSED("range.gguf", m, GLLM_ERR_FORMAT, "tensor 'b': data [64, 96)"); }
    TEST_CASE("tensor offset far past the end") { m = base(); m.off1 = 1ull << 62;
        CHECK_REFUSED("range2.gguf", m, GLLM_ERR_FORMAT, "tensor 'b'"); }
    TEST_CASE("overlapping tensors") { m = base(); m.dim0 = 8; /* a: 64 bytes */
        CHECK_REFUSED("overlap.gguf", m, GLLM_ERR_FORMAT, "overlaps"); }
    TEST_CASE("repeated tensor name") { m = base(); m.name1 = "a";
        CHECK_REFUSED("dupname.gguf", m, GLLM_ERR_FORMAT, "tensor name 'a' appears more than"); }
    TEST_CASE("a NUL inside a tensor name") { m = base(); m.name1 = "\0";
        /* b_str of "\0" writes length 0: an empty name */
        CHECK_REFUSED("nul.gguf", m, GLLM_ERR_FORMAT, "tensor info 1 name"); }
}

/* ---------------------------------------------------------------- fixtures */

static void test_fixture(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/gguf/quant.gguf", GLLM_SOURCE_DIR);
    gllm_gguf *g = NULL;
    TEST_CASE("gguf-written fixture opens") { CHECK_OK(gllm_gguf_open(path, &g)); }
    if (!g)
        return;
    TEST_CASE("metadata of every value type")
    {
        CHECK(gllm_gguf_alignment(g) == 64);
        int64_t i;
        double d;
        bool b;
        char *s = NULL;
        struct { const char *key; int64_t want; } ints[] = {
            {"test.u8", 200}, {"test.i8", -100}, {"test.u16", 60000}, {"test.i16", -30000},
            {"test.u32", 4000000000}, {"test.i32", -2000000000}, {"test.u64", 1ll << 40},
            {"test.i64", -(1ll << 40)}};
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
            CHECK_OK(gllm_gguf_get_int(g, ints[k].key, &i));
            CHECK_MSG(i == ints[k].want, "%s = %lld", ints[k].key, (long long)i);
        }
        CHECK_OK(gllm_gguf_get_float(g, "test.f32", &d));
        CHECK(d == 0.15625);
        CHECK_OK(gllm_gguf_get_float(g, "test.f64", &d));
        CHECK(d == 2.718281828459045);
        CHECK_OK(gllm_gguf_get_bool(g, "test.bool", &b));
        CHECK(b);
        CHECK_OK(gllm_gguf_get_str(g, "test.str", &s));
        CHECK(s && strcmp(s, "h\xc3\xa9llo, GGUF") == 0);
        free(s);
        const gllm_gguf_kv *a = gllm_gguf_find_kv(g, "test.arr_i32");
        CHECK(a && a->n == 3 && gllm_gguf_arr_int(a, 1) == -2);
        a = gllm_gguf_find_kv(g, "test.arr_f32");
        CHECK(a && a->n == 2 && gllm_gguf_arr_float(a, 1) == -1.25);
        a = gllm_gguf_find_kv(g, "test.arr_str");
        CHECK(a && a->n == 3 && a->strs[1].len == 0 && a->strs[2].len == 3 &&
              memcmp(a->strs[2].ptr, "ccc", 3) == 0);
        a = gllm_gguf_find_kv(g, "test.arr_arr");
        CHECK(a && a->type == GLLM_GGUF_ARRAY && a->arr_type == GLLM_GGUF_ARRAY && a->n == 2);
    }
    TEST_CASE("dequantization is bit-identical to gguf's")
    {
        static const int types[] = {GLLM_GGML_F32,  GLLM_GGML_F16,  GLLM_GGML_BF16,
                                    GLLM_GGML_Q4_0, GLLM_GGML_Q4_1, GLLM_GGML_Q5_0,
                                    GLLM_GGML_Q5_1, GLLM_GGML_Q8_0, GLLM_GGML_Q2_K,
                                    GLLM_GGML_Q3_K, GLLM_GGML_Q4_K, GLLM_GGML_Q5_K,
                                    GLLM_GGML_Q6_K};
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            const char *tn = gllm_ggml_type_name(types[k]);
            char ename[64];
            snprintf(ename, sizeof ename, "%s.expected", tn);
            const gllm_gguf_tensor *t = gllm_gguf_find_tensor(g, tn);
            const gllm_gguf_tensor *e = gllm_gguf_find_tensor(g, ename);
            CHECK_MSG(t && e, "fixture lacks %s", tn);
            if (!t || !e)
                continue;
            CHECK(t->type == types[k] && t->ne[0] == 512 && t->ne[1] == 3 && t->nelems == 1536);
            CHECK((uintptr_t)t->offset % 64 == 0);
            float *got = malloc(t->nelems * sizeof(float));
            CHECK_OK(gllm_gguf_read_f32(g, t, got));
            const float *want = e->data; /* F32, 64-byte aligned in the mapping */
            size_t diff = 0;
            for (size_t j = 0; j < t->nelems; j++)
                diff += memcmp(&got[j], &want[j], 4) != 0;
            CHECK_MSG(diff == 0, "%s: %zu of %zu values differ from gguf's dequantize", tn, diff,
                      t->nelems);
            /* values are not all zero: the comparison means something */
            double sq = 0;
            for (size_t j = 0; j < t->nelems; j++)
                sq += (double)want[j] * want[j];
            CHECK_MSG(sq > 0, "%s: reference is all zeros", tn);
            free(got);
        }
    }
    gllm_gguf_close(g);
}

/* ---------------------------------------------------------------- writer */

static void test_writer(void)
{
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/written.gguf", g_dir);
    enum { R = 3, CC = 64 };
    float x[R * CC];
    test_fill(x, R * CC, 2.0f);
    static const int types[] = {GLLM_GGML_F32, GLLM_GGML_F16, GLLM_GGML_BF16, GLLM_GGML_Q8_0};
    TEST_CASE("writer round trip")
    {
        gllm_gguf_writer *w;
        CHECK_OK(gllm_gguf_writer_new(path, &w));
        CHECK_OK(gllm_gguf_add_str(w, "general.architecture", "llama"));
        CHECK_OK(gllm_gguf_add_u32(w, "test.u32", 7));
        CHECK_OK(gllm_gguf_add_i32(w, "test.i32", -7));
        CHECK_OK(gllm_gguf_add_f32(w, "test.f32", 1e-5f));
        CHECK_OK(gllm_gguf_add_bool(w, "test.bool", true));
        const char *toks[] = {"<s>", "h\xc3\xa9", ""};
        CHECK_OK(gllm_gguf_add_arr_str(w, "test.tokens", toks, 3));
        const int32_t ids[] = {1, 2, -3};
        CHECK_OK(gllm_gguf_add_arr_i32(w, "test.ids", ids, 3));
        const float sc[] = {0.5f, -2.0f};
        CHECK_OK(gllm_gguf_add_arr_f32(w, "test.scores", sc, 2));
        CHECK_ERR(gllm_gguf_add_u32(w, "test.u32", 8), GLLM_ERR_INVALID, "added twice");
        const int64_t ne[2] = {CC, R};
        for (size_t k = 0; k < 4; k++)
            CHECK_OK(gllm_gguf_add_tensor(w, gllm_ggml_type_name(types[k]), types[k], 2, ne, x));
        const int64_t bad[1] = {20};
        CHECK_ERR(gllm_gguf_add_tensor(w, "odd", GLLM_GGML_Q8_0, 1, bad, x), GLLM_ERR_INVALID,
                  "multiple of 32");
        CHECK_ERR(gllm_gguf_add_tensor(w, "q4", GLLM_GGML_Q4_0, 2, ne, x), GLLM_ERR_UNSUPPORTED,
                  "q4");
        CHECK_OK(gllm_gguf_writer_finish(w));
        gllm_gguf *g = NULL;
        CHECK_OK(gllm_gguf_open(path, &g));
        if (!g)
            return;
        int64_t i;
        CHECK_OK(gllm_gguf_get_int(g, "test.i32", &i));
        CHECK(i == -7);
        const gllm_gguf_kv *kv = gllm_gguf_find_kv(g, "test.tokens");
        CHECK(kv && kv->n == 3 && kv->strs[1].len == 3 && kv->strs[2].len == 0);
        float got[R * CC], want[R * CC];
        for (size_t k = 0; k < 4; k++) {
            const gllm_gguf_tensor *t = gllm_gguf_find_tensor(g, gllm_ggml_type_name(types[k]));
            CHECK(t && t->type == types[k] && t->ne[0] == CC && t->ne[1] == R);
            if (!t)
                continue;
            CHECK_OK(gllm_gguf_read_f32(g, t, got));
            if (types[k] == GLLM_GGML_Q8_0) {
                CHECK_REL(got, x, R * CC, 1e-2);
                continue;
            }
            gllm_dtype dt = types[k] == GLLM_GGML_F32 ? GLLM_F32
                            : types[k] == GLLM_GGML_F16 ? GLLM_F16 : GLLM_BF16;
            uint16_t tmp[R * CC * 2];
            gllm_from_f32(tmp, dt, x, R * CC);
            gllm_to_f32(want, tmp, dt, R * CC);
            CHECK_MSG(memcmp(got, want, sizeof got) == 0, "%s differs after the round trip",
                      gllm_ggml_type_name(types[k]));
        }
        gllm_gguf_close(g);
    }
    TEST_CASE("the gguf package reads what gllm wrote")
    {
        /* python prints each tensor's name, type and the checksum of its dequantize */
        char out[512];
        snprintf(out, sizeof out, "%s/written.txt", g_dir);
        snprintf(cmd, sizeof cmd, "python3 '%s/tests/io/gguf_crosscheck.py' '%s' > '%s'",
                 GLLM_SOURCE_DIR, path, out);
        int rc = system(cmd);
        if (WEXITSTATUS(rc) == 77) {
            printf("SKIP part: the gguf Python package is not installed\n");
            return;
        }
        CHECK_MSG(rc == 0, "%s exited with %d", cmd, rc);
        FILE *f = fopen(out, "r");
        gllm_gguf *g = NULL;
        CHECK_OK(gllm_gguf_open(path, &g));
        if (!f || !g) {
            if (f)
                fclose(f);
            gllm_gguf_close(g);
            return;
        }
        char name[64], type[16], line[256];
        unsigned long long sum, xr;
        int seen = 0, meta_ok = 0;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "meta ", 5) == 0) {
                meta_ok += strstr(line, "test.tokens ['<s>', 'h\xc3\xa9', '']") != NULL;
                meta_ok += strstr(line, "test.f32 9.999999747378752e-06") != NULL;
                continue;
            }
            if (sscanf(line, "tensor %63s %15s %llu %llu", name, type, &sum, &xr) != 4)
                continue;
            const gllm_gguf_tensor *t = gllm_gguf_find_tensor(g, name);
            CHECK_MSG(t != NULL, "python sees an unknown tensor %s", name);
            if (!t)
                continue;
            seen++;
            float *v = malloc(t->nelems * sizeof(float));
            CHECK_OK(gllm_gguf_read_f32(g, t, v));
            uint64_t s = 0, x2 = 0;
            for (size_t j = 0; j < t->nelems; j++) {
                uint32_t u;
                memcpy(&u, &v[j], 4);
                s += (uint64_t)u * (2 * (uint64_t)j + 1);
                x2 ^= u;
            }
            CHECK_MSG(s == sum && x2 == xr && strcmp(type, gllm_ggml_type_name(t->type)) == 0,
                      "%s: python reads %s %llu/%llu", name, type, sum, xr);
            free(v);
        }
        fclose(f);
        CHECK_MSG(seen == 4, "python saw %d tensors", seen);
        CHECK_MSG(meta_ok == 2, "python read the metadata differently (see %s)", out);
        gllm_gguf_close(g);
    }
}

int main(void)
{
    test_seed();
    snprintf(g_dir, sizeof g_dir, "/tmp/gllm-test-gguf-%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_dir);
    if (system(cmd) != 0)
        return 1;
    test_crafted_valid();
    test_malformed();
    test_fixture();
    test_writer();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_dir);
    return test_summary();
}
