/* On-disk token cache: one versioned binary file per key, where the key hashes
 * the data file, the tokenizer files, the chat template and every option that
 * changes the tokens. The file carries its sizes and a checksum of all that
 * precedes it, so a truncated or corrupt file is detected and rebuilt.
 *
 * Layout (little-endian, as written by this host):
 *   char magic[8] "GLLMTOK1"; u32 version; u32 zero; u64 key;
 *   u64 n_docs, n_tokens, n_records, n_bad, n_truncated, n_dropped_long;
 *   char first_bad[512];
 *   u32 line[n_docs]; u64 off[n_docs + 1]; i32 tokens[n_tokens]; u8 labels[n_tokens];
 *   u64 checksum (FNV-1a of every byte before it) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "data/data_internal.h"

#define CACHE_VERSION 1u

uint64_t gllm_data_hash(uint64_t h, const void *data, size_t n) { return gllm_fnv1a64(h, data, n); }

static gllm_status hash_file(uint64_t *h, const char *path, bool optional)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional)
            return GLLM_OK;
        return gllm_fail(GLLM_ERR_IO, "%s: cannot read for the dataset cache key: %s", path, strerror(errno));
    }
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        *h = gllm_data_hash(*h, buf, n);
    fclose(f);
    return GLLM_OK;
}

gllm_status gllm_data_cache_key(const char *data_path, uint64_t data_hash, const gllm_data_encoder *enc,
                                const gllm_data_options *opt, uint64_t *key)
{
    if (!opt->tokenizer_path)
        return gllm_fail(GLLM_ERR_INVALID, "dataset %s: a cache_dir needs tokenizer_path for its key", data_path);
    uint64_t h = GLLM_DATA_HASH_INIT;
    const char tag[] = "gllm-data-cache-v1";
    h = gllm_data_hash(h, tag, sizeof tag);
    h = gllm_data_hash(h, &data_hash, sizeof data_hash);
    struct stat st;
    char path[4096];
    if (stat(opt->tokenizer_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof path, "%s/tokenizer.json", opt->tokenizer_path);
        GLLM_TRY(hash_file(&h, path, false));
        snprintf(path, sizeof path, "%s/tokenizer_config.json", opt->tokenizer_path);
    } else {
        GLLM_TRY(hash_file(&h, opt->tokenizer_path, false));
        const char *slash = strrchr(opt->tokenizer_path, '/');
        snprintf(path, sizeof path, "%.*s/tokenizer_config.json", slash ? (int)(slash - opt->tokenizer_path) : 1,
                 slash ? opt->tokenizer_path : ".");
    }
    GLLM_TRY(hash_file(&h, path, true));
    const char *tpl = opt->chat_source ? opt->chat_source : "";
    h = gllm_data_hash(h, tpl, strlen(tpl) + 1);
    int64_t fields[5] = {opt->max_len, opt->overlong, opt->skip_bad, enc->eos_id, opt->chat != NULL};
    h = gllm_data_hash(h, fields, sizeof fields);
    *key = h;
    return GLLM_OK;
}

void gllm_data_cache_path(const char *dir, uint64_t key, char *buf, size_t n)
{
    snprintf(buf, n, "%s/gllm-tokens-%016llx.bin", dir, (unsigned long long)key);
}

typedef struct header {
    char magic[8];
    uint32_t version, zero;
    uint64_t key;
    uint64_t n_docs, n_tokens, n_records, n_bad, n_truncated, n_dropped_long;
    char first_bad[512];
} header;

static size_t body_bytes(uint64_t n_docs, uint64_t n_tokens)
{
    return (size_t)(n_docs * 4 + (n_docs + 1) * 8 + n_tokens * 4 + n_tokens);
}

gllm_status gllm_data_cache_read(const char *dir, uint64_t key, gllm_dataset *ds)
{
    char path[4096];
    gllm_data_cache_path(dir, key, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return GLLM_ERR_NOT_FOUND;
    header h;
    gllm_status st = GLLM_ERR_NOT_FOUND;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, "GLLMTOK1", 8) ||
        h.version != CACHE_VERSION || h.key != key || h.n_docs > (1ull << 40) || h.n_tokens > (1ull << 40) ||
        (uint64_t)sb.st_size != sizeof h + body_bytes(h.n_docs, h.n_tokens) + 8) {
        fclose(f);
        return st;
    }
    ds->line = malloc(h.n_docs * 4 + 4);
    ds->off = malloc((h.n_docs + 1) * 8);
    ds->tokens = malloc(h.n_tokens * 4 + 4);
    ds->labels = malloc(h.n_tokens + 1);
    ds->split = malloc(h.n_docs + 1);
    uint64_t sum = 0;
    if (ds->line && ds->off && ds->tokens && ds->labels && ds->split &&
        fread(ds->line, 4, h.n_docs, f) == h.n_docs && fread(ds->off, 8, h.n_docs + 1, f) == h.n_docs + 1 &&
        fread(ds->tokens, 4, h.n_tokens, f) == h.n_tokens && fread(ds->labels, 1, h.n_tokens, f) == h.n_tokens &&
        fread(&sum, 8, 1, f) == 1) {
        uint64_t c = gllm_data_hash(GLLM_DATA_HASH_INIT, &h, sizeof h);
        c = gllm_data_hash(c, ds->line, h.n_docs * 4);
        c = gllm_data_hash(c, ds->off, (h.n_docs + 1) * 8);
        c = gllm_data_hash(c, ds->tokens, h.n_tokens * 4);
        c = gllm_data_hash(c, ds->labels, h.n_tokens);
        bool sane = c == sum && ds->off[0] == 0 && ds->off[h.n_docs] == h.n_tokens;
        for (uint64_t i = 0; sane && i < h.n_docs; i++)
            sane = ds->off[i] <= ds->off[i + 1];
        if (sane)
            st = GLLM_OK;
    }
    fclose(f);
    if (st != GLLM_OK) {
        free(ds->line);
        free(ds->off);
        free(ds->tokens);
        free(ds->labels);
        free(ds->split);
        ds->line = NULL;
        ds->off = NULL;
        ds->tokens = NULL;
        ds->labels = NULL;
        ds->split = NULL;
        return st;
    }
    ds->n_docs = h.n_docs;
    ds->n_tokens = h.n_tokens;
    ds->stats.n_records = h.n_records;
    ds->stats.n_bad = h.n_bad;
    ds->stats.n_truncated = h.n_truncated;
    ds->stats.n_dropped_long = h.n_dropped_long;
    memcpy(ds->stats.first_bad, h.first_bad, sizeof h.first_bad);
    ds->stats.first_bad[sizeof ds->stats.first_bad - 1] = '\0';
    return GLLM_OK;
}

static void put(gllm_atomic *a, uint64_t *sum, const void *p, size_t n)
{
    *sum = gllm_data_hash(*sum, p, n);
    gllm_atomic_write(a, p, n);
}

gllm_status gllm_data_cache_write(const char *dir, uint64_t key, const gllm_dataset *ds)
{
    char path[4096];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot create the dataset cache folder: %s", dir, strerror(errno));
    gllm_data_cache_path(dir, key, path, sizeof path);
    gllm_atomic *a;
    GLLM_TRY(gllm_atomic_begin(path, &a));
    header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, "GLLMTOK1", 8);
    h.version = CACHE_VERSION;
    h.key = key;
    h.n_docs = ds->n_docs;
    h.n_tokens = ds->n_tokens;
    h.n_records = ds->stats.n_records;
    h.n_bad = ds->stats.n_bad;
    h.n_truncated = ds->stats.n_truncated;
    h.n_dropped_long = ds->stats.n_dropped_long;
    memcpy(h.first_bad, ds->stats.first_bad, sizeof h.first_bad);
    uint64_t sum = GLLM_DATA_HASH_INIT;
    put(a, &sum, &h, sizeof h);
    put(a, &sum, ds->line, ds->n_docs * 4);
    put(a, &sum, ds->off, (ds->n_docs + 1) * 8);
    put(a, &sum, ds->tokens, ds->n_tokens * 4);
    put(a, &sum, ds->labels, ds->n_tokens);
    gllm_atomic_write(a, &sum, 8);
    return gllm_atomic_commit(a);
}
