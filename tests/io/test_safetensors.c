#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gllm/safetensors.h"
#include "test_util.h"

static char g_dir[256];

static const char *in_dir(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
    return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* 8-byte little-endian `hlen`, then hbytes bytes of header, then data_len
 * bytes of a non-zero pattern: every malformed file is crafted this way. */
static void write_raw(const char *path, uint64_t hlen, const char *header, size_t hbytes,
                      size_t data_len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot create %s\n", path);
        exit(1);
    }
    for (int i = 0; i < 8; i++)
        fputc((int)((hlen >> (8 * i)) & 0xff), f);
    fwrite(header, 1, hbytes, f);
    for (size_t i = 0; i < data_len; i++)
        fputc((int)((i * 37 + 1) & 0xff), f);
    fclose(f);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("cannot create %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*len + 1);
    if (fread(p, 1, *len, f) != *len)
        *len = 0;
    fclose(f);
    return p;
}

/* Open must fail with `code`, leave *out NULL, and the message must name the
 * file and contain both needles (the tensor, then the reason). */
#define CHECK_OPEN_FAILS(path, code, needle, needle2)                                        \
    do {                                                                                      \
        gllm_safetensors *st_ = (gllm_safetensors *)1;                                        \
        CHECK_ERR(gllm_st_open((path), &st_), (code), (needle));                              \
        CHECK(st_ == NULL);                                                                   \
        const char *base_ = strrchr((path), '/') ? strrchr((path), '/') + 1 : (path);         \
        CHECK_MSG(strstr(gllm_last_error(), base_) && strstr(gllm_last_error(), (needle2)),  \
                  "'%s' should name %s and say '%s'", gllm_last_error(), base_, (needle2));   \
    } while (0)

static size_t entry_bytes(const gllm_st_entry *e)
{
    size_t n = gllm_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++)
        n *= (size_t)e->shape[d];
    return n;
}

static int same_shape(const gllm_st_tensor *t, const gllm_st_entry *e)
{
    if (t->ndim != e->ndim)
        return 0;
    for (int d = 0; d < e->ndim; d++)
        if (t->shape[d] != e->shape[d])
            return 0;
    return 1;
}

/* Every entry is in st under its name, with the same dtype, shape and bytes. */
static void check_holds(const gllm_safetensors *st, const gllm_st_entry *e, int n)
{
    for (int i = 0; i < n; i++) {
        const gllm_st_tensor *t = gllm_st_find(st, e[i].name);
        CHECK_MSG(t != NULL, "tensor %s missing", e[i].name);
        if (!t)
            continue;
        CHECK(t->dtype == e[i].dtype);
        CHECK_MSG(same_shape(t, &e[i]), "tensor %s shape", e[i].name);
        CHECK(t->nbytes == entry_bytes(&e[i]));
        CHECK_MSG(t->nbytes == 0 || memcmp(t->data, e[i].data, t->nbytes) == 0,
                  "tensor %s bytes differ", e[i].name);
    }
}

static int leftover_temp_files(void)
{
    int n = 0;
    DIR *d = opendir(g_dir);
    for (struct dirent *de; d && (de = readdir(d));)
        n += strstr(de->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* Random payloads: floats through the dtype's own rounding, ints over their range. */
typedef struct payload {
    float f32[15];
    uint16_t bf16[7], f16[24];
    int32_t i32[11];
    int64_t i64[3];
    uint8_t u8[5];
    float scalar;
} payload;

static void fill_payload(payload *p)
{
    float tmp[24];
    test_fill(p->f32, 15, 4.0f);
    test_fill(tmp, 7, 100.0f);
    gllm_from_f32(p->bf16, GLLM_BF16, tmp, 7);
    test_fill(tmp, 24, 2.0f);
    gllm_from_f32(p->f16, GLLM_F16, tmp, 24);
    for (int i = 0; i < 11; i++)
        p->i32[i] = (int32_t)(uint32_t)test_rand_u64();
    for (int i = 0; i < 3; i++)
        p->i64[i] = (int64_t)test_rand_u64();
    for (int i = 0; i < 5; i++)
        p->u8[i] = (uint8_t)(test_rand_u64() | 1);
    p->scalar = test_randf() + 2.0f;
}

enum { N_ENTRIES = 8 };

static void make_entries(gllm_st_entry *e, const payload *p)
{
    const gllm_st_entry list[N_ENTRIES] = {
        {"model.embed.weight", GLLM_F32, 2, {3, 5}, p->f32},
        {"layers.0.norm.weight", GLLM_BF16, 1, {7}, p->bf16},
        {"layers.0.attn.q.weight", GLLM_F16, 3, {2, 3, 4}, p->f16},
        {"token_ids", GLLM_I32, 1, {11}, p->i32},
        {"positions \"quoted\" \\ name", GLLM_I64, 1, {3}, p->i64},
        {"mask.\xc3\xa9t\xc3\xa9", GLLM_U8, 1, {5}, p->u8},
        {"scale", GLLM_F32, 0, {0}, &p->scalar},
        {"empty", GLLM_U8, 2, {0, 4}, NULL},
    };
    memcpy(e, list, sizeof list);
}

static void test_round_trip(void)
{
    payload p;
    fill_payload(&p);
    gllm_st_entry e[N_ENTRIES];
    make_entries(e, &p);
    const char *meta[] = {"format", "pt", "note", "line\nbreak \"q\"", NULL};
    char path[512];
    in_dir(path, sizeof path, "round_trip.safetensors");
    write_text(path, "an older file that the write must replace");
    CHECK_OK(gllm_st_write(path, e, N_ENTRIES, meta));
    CHECK(leftover_temp_files() == 0);

    gllm_safetensors *st = NULL;
    CHECK_OK(gllm_st_open(path, &st));
    if (!st)
        return;
    CHECK(gllm_st_count(st) == N_ENTRIES);
    size_t total = 0;
    for (int i = 0; i < N_ENTRIES && i < gllm_st_count(st); i++) {
        const gllm_st_tensor *t = gllm_st_at(st, i);
        CHECK_MSG(strcmp(t->name, e[i].name) == 0, "entry %d is %s, wanted %s", i, t->name,
                  e[i].name);
        CHECK(strcmp(t->file, path) == 0);
        /* contiguous, in entry order */
        CHECK(t->data == (const uint8_t *)gllm_st_at(st, 0)->data + total);
        total += t->nbytes;
    }
    CHECK(gllm_st_at(st, -1) == NULL && gllm_st_at(st, N_ENTRIES) == NULL);
    check_holds(st, e, N_ENTRIES);
    CHECK(gllm_st_find(st, "absent") == NULL);
    CHECK(gllm_st_metadata(st, "format") && strcmp(gllm_st_metadata(st, "format"), "pt") == 0);
    CHECK(gllm_st_metadata(st, "note") &&
          strcmp(gllm_st_metadata(st, "note"), "line\nbreak \"q\"") == 0);
    CHECK(gllm_st_metadata(st, "absent") == NULL);

    /* layout as the safetensors package writes it: header padded to 8 bytes */
    size_t len = 0;
    uint8_t *raw = read_all(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0 && raw && len >= 8; i--)
        hlen = (hlen << 8) | raw[i];
    CHECK(hlen % 8 == 0);
    CHECK(len == 8 + hlen + total);
    CHECK(raw && raw[8] == '{' && raw[8 + hlen - 1] != '\0');
    free(raw);

    float out[24], ref[24];
    const int64_t s_f32[2] = {3, 5}, s_bf16[1] = {7}, s_f16[3] = {2, 3, 4};
    CHECK_OK(gllm_st_read_f32(st, "model.embed.weight", 2, s_f32, out));
    CHECK(memcmp(out, p.f32, sizeof p.f32) == 0);
    CHECK_OK(gllm_st_read_f32(st, "layers.0.norm.weight", 1, s_bf16, out));
    gllm_to_f32(ref, p.bf16, GLLM_BF16, 7);
    CHECK(memcmp(out, ref, 7 * sizeof(float)) == 0);
    CHECK_OK(gllm_st_read_f32(st, "layers.0.attn.q.weight", 3, s_f16, out));
    gllm_to_f32(ref, p.f16, GLLM_F16, 24);
    CHECK(memcmp(out, ref, 24 * sizeof(float)) == 0);
    CHECK_OK(gllm_st_read_f32(st, "scale", 0, NULL, out));
    CHECK(out[0] == p.scalar);

    const int64_t wrong[2] = {5, 3};
    CHECK_ERR(gllm_st_read_f32(st, "model.embed.weight", 2, wrong, out), GLLM_ERR_FORMAT,
              "tensor 'model.embed.weight': shape [3, 5] in the file, expected [5, 3]");
    CHECK_ERR(gllm_st_read_f32(st, "model.embed.weight", 1, wrong, out), GLLM_ERR_FORMAT,
              "expected [5]");
    CHECK_ERR(gllm_st_read_f32(st, "lm_head.weight", 2, s_f32, out), GLLM_ERR_NOT_FOUND,
              "round_trip.safetensors: tensor 'lm_head.weight' not found");
    const int64_t s_i32[1] = {11};
    CHECK_ERR(gllm_st_read_f32(st, "token_ids", 1, s_i32, out), GLLM_ERR_UNSUPPORTED,
              "tensor 'token_ids': dtype I32");
    gllm_st_close(st);
}

/* gllm_st_write packs tensors in caller order, so a BF16 after 3 bytes of U8
 * sits at an odd address: read_f32 must still convert it exactly. */
static void test_misaligned(void)
{
    uint8_t u8[3] = {1, 2, 3};
    float src[12], f32[4], out[12], ref[12];
    uint16_t bf16[5], f16[3];
    test_fill(src, 12, 8.0f);
    gllm_from_f32(bf16, GLLM_BF16, src, 5);
    gllm_from_f32(f16, GLLM_F16, src + 5, 3);
    memcpy(f32, src + 8, sizeof f32);
    const gllm_st_entry e[4] = {
        {"u8", GLLM_U8, 1, {3}, u8},
        {"bf16", GLLM_BF16, 1, {5}, bf16},
        {"f16", GLLM_F16, 1, {3}, f16},
        {"f32", GLLM_F32, 2, {2, 2}, f32},
    };
    char path[512];
    CHECK_OK(gllm_st_write(in_dir(path, sizeof path, "misaligned.safetensors"), e, 4, NULL));
    gllm_safetensors *st = NULL;
    CHECK_OK(gllm_st_open(path, &st));
    if (!st)
        return;
    CHECK(((uintptr_t)gllm_st_find(st, "bf16")->data & 1) == 1);
    CHECK(gllm_st_metadata(st, "format") == NULL);
    const int64_t s5[1] = {5}, s3[1] = {3}, s22[2] = {2, 2};
    CHECK_OK(gllm_st_read_f32(st, "bf16", 1, s5, out));
    CHECK_OK(gllm_st_read_f32(st, "f16", 1, s3, out + 5));
    CHECK_OK(gllm_st_read_f32(st, "f32", 2, s22, out + 8));
    gllm_to_f32(ref, bf16, GLLM_BF16, 5);
    gllm_to_f32(ref + 5, f16, GLLM_F16, 3);
    memcpy(ref + 8, f32, sizeof f32);
    CHECK(memcmp(out, ref, sizeof out) == 0);
    CHECK_REL(out, src, 12, 4e-3);
    gllm_st_close(st);
}

static void test_write_refuses(void)
{
    float x[4] = {1, 2, 3, 4};
    char path[512];
    in_dir(path, sizeof path, "refused.safetensors");
    gllm_st_entry dup[2] = {{"w", GLLM_F32, 1, {2}, x}, {"w", GLLM_F32, 1, {2}, x + 2}};
    CHECK_ERR(gllm_st_write(path, dup, 2, NULL), GLLM_ERR_INVALID, "tensor 'w' is given twice");
    gllm_st_entry null_data = {"w", GLLM_F32, 1, {2}, NULL};
    CHECK_ERR(gllm_st_write(path, &null_data, 1, NULL), GLLM_ERR_INVALID,
              "tensor 'w': data is NULL");
    gllm_st_entry reserved = {"__metadata__", GLLM_F32, 1, {2}, x};
    CHECK_ERR(gllm_st_write(path, &reserved, 1, NULL), GLLM_ERR_INVALID, "'__metadata__'");
    gllm_st_entry negative = {"w", GLLM_F32, 2, {2, -1}, x};
    CHECK_ERR(gllm_st_write(path, &negative, 1, NULL), GLLM_ERR_INVALID, "shape[1] = -1");
    gllm_st_entry bad_utf8 = {"w\xff", GLLM_F32, 1, {2}, x};
    CHECK_ERR(gllm_st_write(path, &bad_utf8, 1, NULL), GLLM_ERR_INVALID, "cannot be a tensor name");
    gllm_st_entry ok = {"w", GLLM_F32, 1, {4}, x};
    const char *odd_meta[] = {"format", NULL};
    CHECK_ERR(gllm_st_write(path, &ok, 1, odd_meta), GLLM_ERR_INVALID,
              "metadata key 'format' has no value");
    const char *dup_meta[] = {"k", "a", "k", "b", NULL};
    CHECK_ERR(gllm_st_write(path, &ok, 1, dup_meta), GLLM_ERR_INVALID, "'k' is given twice");
    CHECK(access(path, F_OK) != 0);
    char nowhere[512];
    in_dir(nowhere, sizeof nowhere, "no/such/folder/x.safetensors");
    CHECK_ERR(gllm_st_write(nowhere, &ok, 1, NULL), GLLM_ERR_IO, "no/such/folder/x.safetensors");
    CHECK(leftover_temp_files() == 0);

    /* an empty file is still a valid one */
    CHECK_OK(gllm_st_write(path, NULL, 0, NULL));
    gllm_safetensors *st = NULL;
    CHECK_OK(gllm_st_open(path, &st));
    CHECK(st && gllm_st_count(st) == 0 && gllm_st_find(st, "w") == NULL);
    gllm_st_close(st);
}

typedef struct bad_case {
    const char *file;
    const char *header;
    size_t header_len; /* 0: strlen(header) */
    uint64_t hlen;     /* the length field; 0: header_len */
    size_t data_len;
    gllm_status code;
    const char *what, *why;
} bad_case;

#define E_OK "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"
#define HDR(body) "{\"w\":{" body "}}"

static const bad_case k_bad[] = {
    {"hlen_past_eof.st", "{}", 0, 1000, 16, GLLM_ERR_FORMAT, "header length 1000", "past the end"},
    {"hlen_absurd.st", "{}", 0, 1ull << 60, 16, GLLM_ERR_FORMAT, "header length", "absurd"},
    {"empty_header.st", "", 0, 0, 0, GLLM_ERR_FORMAT, "header", "not valid JSON"},
    {"not_json.st", "{\"w\":{\"dtype\":\"F32\",", 0, 0, 8, GLLM_ERR_FORMAT, "header",
     "not valid JSON"},
    {"trailing.st", "{}  x", 0, 0, 0, GLLM_ERR_FORMAT, "header", "after the JSON object"},
    {"not_object.st", "[1, 2]", 0, 0, 0, GLLM_ERR_FORMAT, "header", "not a JSON object"},
    {"bad_byte.st", HDR(E_OK) "\xff", 0, 0, 8, GLLM_ERR_FORMAT, "UTF-8", "0xff"},
    {"overlong.st", "{\"\xc0\xaf\":1}", 0, 0, 0, GLLM_ERR_FORMAT, "UTF-8", "0xc0"},
    {"surrogate.st", "{\"\xed\xa0\x80\":1}", 0, 0, 0, GLLM_ERR_FORMAT, "UTF-8", "0xed"},
    {"cut_sequence.st", "{\"\xe2\x82\":1}", 0, 0, 0, GLLM_ERR_FORMAT, "UTF-8", "0xe2"},
    {"past_max.st", "{\"\xf4\x90\x80\x80\":1}", 0, 0, 0, GLLM_ERR_FORMAT, "UTF-8", "0xf4"},
    {"nul.st", "{\"w\0\":1}", 8, 0, 0, GLLM_ERR_FORMAT, "header", "NUL byte"},
    {"entry_number.st", "{\"w\":3}", 0, 0, 0, GLLM_ERR_FORMAT, "tensor 'w'", "not a JSON object"},
    {"no_dtype.st", HDR("\"shape\":[2],\"data_offsets\":[0,8]"), 0, 0, 8, GLLM_ERR_FORMAT,
     "tensor 'w'", "missing \"dtype\""},
    {"no_shape.st", HDR("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 0, 0, 8, GLLM_ERR_FORMAT,
     "tensor 'w'", "missing \"shape\""},
    {"no_offsets.st", HDR("\"dtype\":\"F32\",\"shape\":[2]"), 0, 0, 8, GLLM_ERR_FORMAT,
     "tensor 'w'", "missing \"data_offsets\""},
    {"dtype_number.st", HDR("\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "\"dtype\" is not a string"},
    {"shape_string.st", HDR("\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "\"shape\" is not an array"},
    {"offsets_object.st", HDR("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"b\":0}"), 0, 0,
     8, GLLM_ERR_FORMAT, "tensor 'w'", "\"data_offsets\" is not an array"},
    {"offsets_one.st", HDR("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "[begin, end]"},
    {"dtype_twice.st", HDR("\"dtype\":\"F32\"," E_OK), 0, 0, 8, GLLM_ERR_FORMAT, "tensor 'w'",
     "\"dtype\" appears twice"},
    {"unknown_dtype.st", HDR("\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "unknown dtype \"Q7\""},
    {"f64.st", HDR("\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_UNSUPPORTED, "tensor 'w'", "dtype F64 is not supported"},
    {"negative_dim.st", HDR("\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "shape[0] is not a non-negative integer"},
    {"fractional_dim.st", HDR("\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,8]"), 0,
     0, 8, GLLM_ERR_FORMAT, "tensor 'w'", "shape[1] is not a non-negative integer"},
    {"string_dim.st", HDR("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "shape[0] is not"},
    {"huge_dim.st", HDR("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "shape[0] is not"},
    {"nine_dims.st",
     HDR("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_UNSUPPORTED, "tensor 'w'", "9 dims"},
    {"negative_offset.st", HDR("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]"), 0, 0,
     8, GLLM_ERR_FORMAT, "tensor 'w'", "data_offsets[0] is not a non-negative integer"},
    {"fractional_offset.st", HDR("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,7.5]"), 0,
     0, 8, GLLM_ERR_FORMAT, "tensor 'w'", "data_offsets[1] is not"},
    {"begin_after_end.st", HDR("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]"), 0, 0,
     16, GLLM_ERR_FORMAT, "tensor 'w'", "begin > end"},
    {"past_data.st", HDR(E_OK), 0, 0, 4, GLLM_ERR_FORMAT, "tensor 'w'",
     "run past the data section (4 bytes)"},
    {"size_mismatch.st", HDR("\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "[3] x F32 needs 12 bytes"},
    {"overflow.st",
     HDR("\"dtype\":\"BF16\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]"), 0, 0, 8,
     GLLM_ERR_FORMAT, "tensor 'w'", "overflows"},
    {"overlap.st",
     "{\"a\":{" E_OK "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 0,
     12, GLLM_ERR_FORMAT, "tensor 'b'", "overlap tensor 'a'"},
    {"duplicate.st",
     "{\"w\":{" E_OK "},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 0, 0,
     16, GLLM_ERR_FORMAT, "tensor 'w'", "appears twice"},
    {"meta_array.st", "{\"__metadata__\":[1]}", 0, 0, 0, GLLM_ERR_FORMAT, "__metadata__",
     "not a JSON object"},
    {"meta_number.st", "{\"__metadata__\":{\"k\":1}}", 0, 0, 0, GLLM_ERR_FORMAT, "key 'k'",
     "not a string"},
    {"meta_twice.st", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, 0, GLLM_ERR_FORMAT,
     "__metadata__", "twice"},
};

static void test_malformed(void)
{
    char path[512];
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        const bad_case *c = &k_bad[i];
        size_t hbytes = c->header_len ? c->header_len : strlen(c->header);
        in_dir(path, sizeof path, c->file);
        write_raw(path, c->hlen ? c->hlen : hbytes, c->header, hbytes, c->data_len);
        CHECK_OPEN_FAILS(path, c->code, c->what, c->why);
    }

    /* shorter than the length field */
    FILE *f = fopen(in_dir(path, sizeof path, "short.st"), "wb");
    fwrite("\x02\0\0\0\0", 1, 5, f);
    fclose(f);
    CHECK_OPEN_FAILS(path, GLLM_ERR_FORMAT, "5 bytes", "too short");
    write_raw(in_dir(path, sizeof path, "empty.st"), 0, "", 0, 0);
    CHECK(truncate(path, 0) == 0);
    CHECK_OPEN_FAILS(path, GLLM_ERR_FORMAT, "0 bytes", "too short");

    /* deep nesting stops at cJSON's limit instead of the stack */
    size_t depth = 5000;
    char *deep = malloc(depth * 2 + 8);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    write_raw(in_dir(path, sizeof path, "deep.st"), depth * 2, deep, depth * 2, 0);
    free(deep);
    CHECK_OPEN_FAILS(path, GLLM_ERR_FORMAT, "header", "not valid JSON");

    CHECK_OPEN_FAILS(in_dir(path, sizeof path, "absent.safetensors"), GLLM_ERR_NOT_FOUND,
                     "absent.safetensors", "cannot open");
    CHECK_OPEN_FAILS(g_dir, GLLM_ERR_NOT_FOUND, "neither model.safetensors", "index.json");
}

static void test_sharded(void)
{
    float a[4], c[6];
    uint16_t b[3];
    int32_t x[2] = {7, -7};
    test_fill(a, 4, 1.0f);
    test_fill(c, 6, 1.0f);
    gllm_from_f32(b, GLLM_BF16, c, 3);
    const gllm_st_entry s1[2] = {{"a", GLLM_F32, 1, {4}, a}, {"b", GLLM_BF16, 1, {3}, b}};
    const gllm_st_entry s2[1] = {{"c", GLLM_F32, 2, {2, 3}, c}};
    const gllm_st_entry s3[2] = {{"x", GLLM_I32, 1, {2}, x}, {"a", GLLM_F32, 1, {4}, a}};
    const gllm_st_entry all[3] = {s1[0], s1[1], s2[0]};
    const char *meta[] = {"format", "pt", NULL};
    char dir[512], path[768];
    in_dir(dir, sizeof dir, "sharded");
    mkdir(dir, 0755);
#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define SHARD3 "extra.safetensors"
    snprintf(path, sizeof path, "%s/" SHARD1, dir);
    CHECK_OK(gllm_st_write(path, s1, 2, meta));
    snprintf(path, sizeof path, "%s/" SHARD2, dir);
    CHECK_OK(gllm_st_write(path, s2, 1, NULL));
    snprintf(path, sizeof path, "%s/" SHARD3, dir);
    CHECK_OK(gllm_st_write(path, s3, 2, NULL));
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_text(path, "{\"metadata\": {\"total_size\": 46}, \"weight_map\": {\"c\": \"" SHARD2
                     "\", \"a\": \"" SHARD1 "\", \"b\": \"" SHARD1 "\"}}");

    gllm_safetensors *st = NULL;
    CHECK_OK(gllm_st_open(dir, &st));
    if (st) {
        CHECK(gllm_st_count(st) == 3);
        check_holds(st, all, 3);
        /* shards in order of first mention in weight_map */
        CHECK(strstr(gllm_st_at(st, 0)->file, SHARD2) && strcmp(gllm_st_at(st, 0)->name, "c") == 0);
        CHECK(strstr(gllm_st_find(st, "b")->file, SHARD1));
        CHECK(gllm_st_metadata(st, "format") == NULL); /* shard 2 comes first and has none */
        gllm_st_close(st);
    }
    st = NULL;
    CHECK_OK(gllm_st_open(path, &st)); /* the index file itself */
    CHECK(st && gllm_st_count(st) == 3);
    gllm_st_close(st);

    static const struct {
        const char *file, *text;
        gllm_status code;
        const char *what, *why;
    } bad[] = {
        {"missing_shard.index.json",
         "{\"weight_map\": {\"a\": \"" SHARD1 "\", \"d\": \"model-00003-of-00002.safetensors\"}}",
         GLLM_ERR_NOT_FOUND, "tensor 'd'", "model-00003-of-00002.safetensors does not exist"},
        {"missing_tensor.index.json",
         "{\"weight_map\": {\"a\": \"" SHARD1 "\", \"z\": \"" SHARD2 "\"}}", GLLM_ERR_NOT_FOUND,
         "tensor 'z'", "mapped to " SHARD2 ", which does not hold it"},
        {"wrong_shard.index.json",
         "{\"weight_map\": {\"b\": \"" SHARD1 "\", \"c\": \"" SHARD2 "\", \"a\": \"" SHARD2 "\"}}",
         GLLM_ERR_FORMAT, "tensor 'a'", "is mapped to " SHARD2 " but is in"},
        {"both_shards.index.json",
         "{\"weight_map\": {\"a\": \"" SHARD1 "\", \"x\": \"" SHARD3 "\"}}", GLLM_ERR_FORMAT,
         "tensor 'a' is in both", SHARD3},
        {"no_map.index.json", "{\"metadata\": {}}", GLLM_ERR_FORMAT, "weight_map", "no"},
        {"bad_json.index.json", "{\"weight_map\": {", GLLM_ERR_FORMAT, "not valid JSON", "index"},
        {"map_twice.index.json",
         "{\"weight_map\": {\"a\": \"" SHARD1 "\", \"a\": \"" SHARD1 "\"}}", GLLM_ERR_FORMAT,
         "tensor 'a'", "twice in weight_map"},
        {"escape.index.json", "{\"weight_map\": {\"a\": \"../" SHARD1 "\"}}", GLLM_ERR_FORMAT,
         "tensor 'a'", "not a shard file name"},
        {"number.index.json", "{\"weight_map\": {\"a\": 1}}", GLLM_ERR_FORMAT, "tensor 'a'",
         "not a shard file name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bad[i].file);
        write_text(path, bad[i].text);
        CHECK_OPEN_FAILS(path, bad[i].code, bad[i].what, bad[i].why);
    }
    /* a malformed shard is reported by its own name */
    snprintf(path, sizeof path, "%s/" SHARD2, dir);
    write_raw(path, 2, "{]", 2, 0);
    CHECK_OPEN_FAILS(dir, GLLM_ERR_FORMAT, SHARD2, "not valid JSON");
}

static void test_stories260k(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/assets/models/stories260K-hf/model.safetensors",
             GLLM_SHARED_DIR);
    if (access(path, R_OK) != 0) {
        printf("%s absent: the stories260K check is skipped\n", path);
        return;
    }
    gllm_safetensors *st = NULL;
    CHECK_OK(gllm_st_open(path, &st));
    if (!st)
        return;
    CHECK(gllm_st_count(st) == 47);
    CHECK(strcmp(gllm_st_at(st, 0)->name, "model.embed_tokens.weight") == 0);
    size_t total = 0;
    for (int i = 0; i < gllm_st_count(st); i++) {
        CHECK(gllm_st_at(st, i)->dtype == GLLM_F32);
        total += gllm_st_at(st, i)->nbytes;
    }
    CHECK(total == 1040128); /* 260032 f32 parameters */
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[2];
    } want[] = {
        {"model.embed_tokens.weight", 2, {512, 64}},
        {"model.layers.0.self_attn.q_proj.weight", 2, {64, 64}},
        {"model.layers.2.self_attn.k_proj.weight", 2, {32, 64}},
        {"model.layers.4.mlp.down_proj.weight", 2, {64, 172}},
        {"model.layers.4.mlp.up_proj.weight", 2, {172, 64}},
        {"model.norm.weight", 1, {64}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gllm_st_tensor *t = gllm_st_find(st, want[i].name);
        CHECK_MSG(t && t->ndim == want[i].ndim && t->shape[0] == want[i].shape[0] &&
                      (want[i].ndim < 2 || t->shape[1] == want[i].shape[1]),
                  "%s", want[i].name);
    }
    CHECK(gllm_st_find(st, "lm_head.weight") == NULL); /* tied to the embedding */
    CHECK(gllm_st_metadata(st, "format") && strcmp(gllm_st_metadata(st, "format"), "pt") == 0);
    float norm[64];
    const int64_t s64[1] = {64};
    CHECK_OK(gllm_st_read_f32(st, "model.norm.weight", 1, s64, norm));
    double sum = 0;
    for (int i = 0; i < 64; i++)
        sum += fabs(norm[i]);
    CHECK(isfinite(sum) && sum > 0);
    gllm_st_close(st);

    /* the folder resolves to its model.safetensors */
    char *slash = strrchr(path, '/');
    *slash = '\0';
    CHECK_OK(gllm_st_open(path, &st));
    CHECK(st && gllm_st_count(st) == 47);
    gllm_st_close(st);
}

/* ---------------------------------------------------------------- the reference package */

typedef struct manifest_row {
    char name[128], dtype[16];
    int ndim;
    int64_t shape[GLLM_ST_MAX_DIMS];
    size_t nbytes, offset;
} manifest_row;

/* Rows of a manifest written by st_crosscheck.py; meta lines go to meta[]. */
static int read_manifest(const char *path, manifest_row *rows, int max, char meta[][2][64],
                         int *nmeta)
{
    FILE *f = fopen(path, "r");
    int n = 0;
    size_t offset = 0;
    char line[1024];
    *nmeta = 0;
    while (f && fgets(line, sizeof line, f)) {
        manifest_row *r = &rows[n];
        int at = 0;
        if (n < max &&
            sscanf(line, "tensor %127s %15s %d%n", r->name, r->dtype, &r->ndim, &at) == 3) {
            for (int d = 0; d < r->ndim && d < GLLM_ST_MAX_DIMS; d++) {
                int used = 0;
                long long v = 0;
                sscanf(line + at, "%lld%n", &v, &used);
                r->shape[d] = v;
                at += used;
            }
            sscanf(line + at, "%zu", &r->nbytes);
            r->offset = offset;
            offset += r->nbytes;
            n++;
        } else if (*nmeta < 8 &&
                   sscanf(line, "meta %63s %63s", meta[*nmeta][0], meta[*nmeta][1]) == 2) {
            (*nmeta)++;
        }
    }
    if (f)
        fclose(f);
    return n;
}

static int run_python(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 '%s/tests/io/st_crosscheck.py' %s", GLLM_SOURCE_DIR, args);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s exited with %d", cmd, rc);
    return rc;
}

/* (a) the package reads what gllm wrote, bit for bit */
static void test_python_reads_gllm(void)
{
    payload p;
    fill_payload(&p);
    gllm_st_entry e[N_ENTRIES];
    make_entries(e, &p);
    /* the manifest is space-separated: keep to names without spaces */
    e[4].name = "positions";
    const char *meta[] = {"format", "pt", "producer", "gllm", NULL};
    char st_path[512], man[512], raw_path[512], args[1600];
    in_dir(st_path, sizeof st_path, "by_gllm.safetensors");
    in_dir(man, sizeof man, "by_gllm.manifest");
    in_dir(raw_path, sizeof raw_path, "by_gllm.raw");
    CHECK_OK(gllm_st_write(st_path, e, N_ENTRIES, meta));
    snprintf(args, sizeof args, "read '%s' '%s' '%s'", st_path, man, raw_path);
    if (run_python(args) != 0)
        return;
    manifest_row rows[16];
    char kv[8][2][64];
    int nmeta = 0;
    int n = read_manifest(man, rows, 16, kv, &nmeta);
    size_t raw_len = 0;
    uint8_t *raw = read_all(raw_path, &raw_len);
    CHECK(n == N_ENTRIES);
    for (int i = 0; i < n; i++) {
        const gllm_st_entry *want = NULL;
        for (int j = 0; j < N_ENTRIES; j++)
            if (strcmp(e[j].name, rows[i].name) == 0)
                want = &e[j];
        CHECK_MSG(want != NULL, "python saw an unknown tensor %s", rows[i].name);
        if (!want)
            continue;
        int same = strcmp(rows[i].dtype, gllm_dtype_name(want->dtype)) == 0 &&
                   rows[i].ndim == want->ndim && rows[i].nbytes == entry_bytes(want);
        for (int d = 0; same && d < want->ndim; d++)
            same = rows[i].shape[d] == want->shape[d];
        CHECK_MSG(same, "python sees %s as %s with %d dims", rows[i].name, rows[i].dtype,
                  rows[i].ndim);
        CHECK_MSG(raw && rows[i].offset + rows[i].nbytes <= raw_len &&
                      (rows[i].nbytes == 0 ||
                       memcmp(raw + rows[i].offset, want->data, rows[i].nbytes) == 0),
                  "python reads different bytes for %s", rows[i].name);
    }
    int meta_ok = nmeta == 2;
    for (int i = 0; i < nmeta; i++)
        meta_ok &= (strcmp(kv[i][0], "format") == 0 && strcmp(kv[i][1], "pt") == 0) ||
                   (strcmp(kv[i][0], "producer") == 0 && strcmp(kv[i][1], "gllm") == 0);
    CHECK(meta_ok);
    free(raw);
}

/* (b) gllm reads what safetensors.numpy.save_file wrote, bit for bit */
static void test_gllm_reads_python(void)
{
    char st_path[512], man[512], raw_path[512], args[1600];
    in_dir(st_path, sizeof st_path, "by_numpy.safetensors");
    in_dir(man, sizeof man, "by_numpy.manifest");
    in_dir(raw_path, sizeof raw_path, "by_numpy.raw");
    unsigned long long seed = test_rand_u64() >> 1;
    snprintf(args, sizeof args, "write '%s' '%s' '%s' %llu", st_path, man, raw_path, seed);
    if (run_python(args) != 0)
        return;
    manifest_row rows[16];
    char kv[8][2][64];
    int nmeta = 0;
    int n = read_manifest(man, rows, 16, kv, &nmeta);
    size_t raw_len = 0;
    uint8_t *raw = read_all(raw_path, &raw_len);
    gllm_safetensors *st = NULL;
    CHECK_OK(gllm_st_open(st_path, &st));
    if (!st || !raw) {
        free(raw);
        gllm_st_close(st);
        return;
    }
    CHECK(n == 6 && gllm_st_count(st) == n);
    for (int i = 0; i < n; i++) {
        const gllm_st_tensor *t = gllm_st_find(st, rows[i].name);
        CHECK_MSG(t != NULL, "gllm misses %s", rows[i].name);
        if (!t)
            continue;
        int same = strcmp(rows[i].dtype, gllm_dtype_name(t->dtype)) == 0 &&
                   rows[i].ndim == t->ndim && rows[i].nbytes == t->nbytes;
        for (int d = 0; same && d < t->ndim; d++)
            same = rows[i].shape[d] == t->shape[d];
        CHECK_MSG(same, "gllm sees %s differently", rows[i].name);
        CHECK_MSG(same && rows[i].offset + t->nbytes <= raw_len &&
                      memcmp(raw + rows[i].offset, t->data, t->nbytes) == 0,
                  "gllm reads different bytes for %s", rows[i].name);
        if (strcmp(rows[i].name, "embed.weight") == 0 && same) {
            float out[30];
            CHECK_OK(gllm_st_read_f32(st, "embed.weight", 2, t->shape, out));
            CHECK(memcmp(out, raw + rows[i].offset, sizeof out) == 0);
        }
    }
    char seed_str[32];
    snprintf(seed_str, sizeof seed_str, "%llu", seed);
    CHECK(gllm_st_metadata(st, "format") && strcmp(gllm_st_metadata(st, "format"), "np") == 0);
    CHECK(gllm_st_metadata(st, "seed") && strcmp(gllm_st_metadata(st, "seed"), seed_str) == 0);
    CHECK(nmeta == 2);
    gllm_st_close(st);
    free(raw);
}

int main(void)
{
    test_seed();
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/gllm_st_XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        printf("cannot create a temporary folder\n");
        return 1;
    }
    TEST_CASE("round trip of every dtype, bit-exact") test_round_trip();
    TEST_CASE("misaligned tensors convert exactly") test_misaligned();
    TEST_CASE("write refuses bad entries") test_write_refuses();
    TEST_CASE("malformed files are refused by name") test_malformed();
    TEST_CASE("sharded folder") test_sharded();
    TEST_CASE("stories260K") test_stories260k();
    if (system("python3 -c 'import safetensors, numpy' >/dev/null 2>&1") != 0) {
        printf("python3 with safetensors and numpy not found: the cross-check is skipped\n");
    } else {
        TEST_CASE("the safetensors package reads gllm's file") test_python_reads_gllm();
        TEST_CASE("gllm reads safetensors.numpy's file") test_gllm_reads_python();
    }
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_summary();
}
