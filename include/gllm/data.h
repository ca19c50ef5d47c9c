/* Training datasets from JSONL: tokenized documents with per-token loss
 * labels, a held-out validation split, deterministic shuffling and rank
 * sharding, packing into gllm_batch rows, and an on-disk token cache.
 *
 * Record formats (detected per record by its fields):
 *   {"text": ...}                           language modelling, loss on every token
 *   {"prompt": ..., "completion": ...}      loss on the completion only
 *   {"messages": [{"role","content"},...]}  rendered by the chat template, loss
 *                                           on assistant turns only
 *   {"instruction", "input"?, "output"}     Alpaca: the standard Alpaca prompt
 *                                           ("Below is an instruction ..."), loss on output
 * A record has the fields of exactly one format ("text" with "prompt" is an
 * error), and no key twice. A file whose first non-blank character (after a
 * UTF-8 byte-order mark) is '[' is read as one JSON array of records; errors
 * then name the record number instead of the line. JSONL lines are read by the
 * streaming reader (gllm/jsonl.h): a line that is not exactly one JSON value
 * (trailing garbage, two values, NUL bytes) is a bad record, and so is invalid
 * UTF-8 (an error, not repaired). Only regular files are read.
 *
 * Tokenization, as TRL's SFT does it:
 *   - text: encode(text, add_special) + EOS appended (unless already last);
 *   - prompt/completion and Alpaca: P = encode(prompt, add_special),
 *     F = encode(prompt + completion, add_special) + EOS; the loss starts at
 *     the first position where F leaves P (so a merge across the boundary
 *     counts toward the completion), the appended EOS is a target;
 *   - messages: F = encode(render(all), no special tokens: the template writes
 *     them). For assistant turn i, A = encode(render(messages[:i], generation
 *     prompt)) and B = encode(render(messages[:i+1])); the tokens of F between
 *     the common prefix with A and the common prefix with B are assistant
 *     tokens (TRL's prefix-rendering rule). A template that renders a prefix
 *     differently from the whole conversation is an error naming the line.
 *     No EOS is appended: the template's end-of-turn token is in the span.
 *
 * Packing: a document never spans two rows. Rows of T tokens are filled with
 * whole documents in shuffled order; pos restarts at 0 at every document, the
 * target of a token is the next token of the same document, and the last
 * token of a document has loss_mask 0. Row tails (and padding-mode rows) are
 * filled with pad_id, pos restarting at 0, loss_mask 0. So the loss of a
 * document is the same packed or alone. */
#ifndef GLLM_DATA_H
#define GLLM_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/batch.h"
#include "gllm/chat.h"
#include "gllm/status.h"
#include "gllm/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tokenizer as the dataset sees it: gllm_data_encoder_tok() wraps a
 * gllm_tokenizer; tests may supply their own. encode must be thread-safe
 * (it is called from an OpenMP loop over records) and malloc *ids. */
typedef struct gllm_data_encoder {
    gllm_status (*encode)(const void *ctx, const char *text, size_t len, bool add_special,
                          int32_t **ids, size_t *n_ids);
    const void *ctx;
    int32_t eos_id; /* -1: none appended */
    int32_t pad_id; /* filler of row tails; eos or 0 when the tokenizer has no pad */
} gllm_data_encoder;

gllm_data_encoder gllm_data_encoder_tok(const gllm_tokenizer *tok);

typedef enum gllm_data_overlong {
    GLLM_DATA_OVERLONG_ERROR,    /* a bad record: file:line: ... exceeds max_len (default) */
    GLLM_DATA_OVERLONG_TRUNCATE, /* keep the first max_len tokens, counted in n_truncated */
    GLLM_DATA_OVERLONG_DROP,     /* leave the document out, counted in n_dropped_long */
} gllm_data_overlong;

typedef struct gllm_data_options {
    int max_len;                    /* longest document in tokens (> 0); packing T >= max_len */
    gllm_data_overlong overlong;
    bool skip_bad;                  /* skip and count bad records instead of failing */
    const gllm_chat_template *chat; /* needed for "messages" records */
    const char *chat_source;        /* the template's source or name, for the cache key */
    double val_fraction;            /* share of documents held out, by document */
    uint64_t seed;                  /* validation split and shuffling */
    const char *cache_dir;          /* NULL: no cache; else tokenized data is cached there */
    const char *tokenizer_path;     /* tokenizer.json (or its folder): hashed into the cache key */
} gllm_data_options;

static inline gllm_data_options gllm_data_default_options(void)
{
    gllm_data_options o = {0};
    o.max_len = 2048;
    o.overlong = GLLM_DATA_OVERLONG_ERROR;
    o.seed = 1234;
    return o;
}

/* What the load did with every record: nothing is dropped silently. */
typedef struct gllm_data_stats {
    size_t n_records;      /* non-blank lines (or array elements) read */
    size_t n_docs;         /* documents kept (train + validation) */
    size_t n_train, n_val; /* documents in each split */
    size_t n_bad;          /* skipped bad records (skip_bad only) */
    size_t n_truncated;    /* documents cut to max_len */
    size_t n_dropped_long; /* documents over max_len left out (OVERLONG_DROP) */
    size_t n_tokens;       /* tokens kept */
    size_t n_loss_tokens;  /* tokens that are targets of the loss */
    size_t n_no_target;    /* documents kept that have no target token (after truncation) */
    uint64_t file_hash;    /* FNV-1a 64 of the data file's bytes */
    bool cache_hit;        /* loaded from the cache without tokenizing */
    char first_bad[512];   /* "file:line: reason" of the first bad record, or "" */
} gllm_data_stats;

typedef struct gllm_dataset gllm_dataset;

/* Read, tokenize (OpenMP over records) or load from the cache, and split.
 * A bad record (not JSON, missing/empty fields, over max_len under
 * OVERLONG_ERROR, a template error) fails with "file:line: reason" unless
 * skip_bad. Caller frees with gllm_data_free. */
gllm_status gllm_data_load(const char *path, const gllm_data_encoder *enc, const gllm_data_options *opt,
                           gllm_dataset **out);
void gllm_data_free(gllm_dataset *ds);
const gllm_data_stats *gllm_data_stats_of(const gllm_dataset *ds);

/* Documents as tokenized: ids[n] and label[n], label[t] = 1 when token t is
 * a target (predicted from t-1). split: 0 train, 1 validation. line: the
 * record's line (or array element) number, 1-based. */
size_t gllm_data_n_docs(const gllm_dataset *ds);
void gllm_data_doc(const gllm_dataset *ds, size_t i, const int32_t **ids, const uint8_t **label,
                   size_t *n, int *split, size_t *line);

/* An epoch's rows for one rank: split 0 shuffled by (seed, epoch) and sharded
 * (document k of the permutation goes to rank k % world), split 1 in file
 * order, sharded the same way. packed: whole documents fill rows of T tokens;
 * else one document per row. Every rank gets the same number of batches
 * (n_batches, the largest over ranks); missing rows are all padding.
 * Caller frees with gllm_data_loader_free. */
typedef struct gllm_data_loader gllm_data_loader;
gllm_status gllm_data_loader_new(const gllm_dataset *ds, int split, int B, int T, bool packed,
                                 uint64_t epoch, int rank, int world, gllm_data_loader **out);
void gllm_data_loader_free(gllm_data_loader *l);
size_t gllm_data_loader_n_batches(const gllm_data_loader *l);
/* Fill batch number `i` (< n_batches) into b, whose B, T and arrays the
 * caller allocated. doc_of (may be NULL; [B*T]) gets the document index of
 * each token, -1 for padding. */
gllm_status gllm_data_loader_batch(const gllm_data_loader *l, size_t i, gllm_batch *b, int32_t *doc_of);

#ifdef __cplusplus
}
#endif
#endif
