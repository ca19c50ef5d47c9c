/* Internal to the data module: the dataset's flat arrays and the cache. */
#ifndef GLLM_DATA_INTERNAL_H
#define GLLM_DATA_INTERNAL_H

#include "gllm/data.h"

/* Documents are stored back to back: document i is tokens[off[i] .. off[i+1]). */
struct gllm_dataset {
    size_t n_docs, n_tokens;
    int32_t *tokens;
    uint8_t *labels;
    uint64_t *off;  /* [n_docs + 1] */
    uint32_t *line; /* [n_docs] record number in the file, 1-based */
    uint8_t *split; /* [n_docs] 0 train, 1 validation */
    int32_t pad_id;
    uint64_t seed; /* of the split and the shuffle */
    gllm_data_stats stats;
};

uint64_t gllm_data_hash(uint64_t h, const void *data, size_t n); /* FNV-1a 64, chainable */
#define GLLM_DATA_HASH_INIT 0xcbf29ce484222325ull

/* Cache key of (data file's hash, tokenizer files, template, options, encoder). */
gllm_status gllm_data_cache_key(const char *data_path, uint64_t data_hash, const gllm_data_encoder *enc,
                                const gllm_data_options *opt, uint64_t *key);
/* Fill ds's documents and stats from the cache file for key; GLLM_ERR_NOT_FOUND
 * when absent, stale, truncated or corrupt (the caller then rebuilds it). */
gllm_status gllm_data_cache_read(const char *dir, uint64_t key, gllm_dataset *ds);
/* Write through the core's durable atomic write. */
gllm_status gllm_data_cache_write(const char *dir, uint64_t key, const gllm_dataset *ds);
void gllm_data_cache_path(const char *dir, uint64_t key, char *buf, size_t n);

#endif
