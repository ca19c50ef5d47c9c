/* Internal layout of a loaded tokenizer, shared by the tok_*.c files.
 *
 * The pipeline mirrors the `tokenizers` package: added tokens are split out,
 * the remaining text is normalized, pre-tokenized into words, each word goes
 * through BPE, and a post-processor adds BOS/EOS. Everything here is read-only
 * after gllm_tok_load, so one tokenizer can encode on many threads; per-thread
 * scratch (BPE cache, regex match data) lives in tok_bpe.c. */
#ifndef GLLM_TOK_INTERNAL_H
#define GLLM_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "gllm/tok.h"

/* ------------------------------------------------------------ growable buffers */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids;

typedef struct {
    char *s;
    size_t n, cap;
} tok_str;

gllm_status tok_ids_push(tok_ids *a, int32_t id);
gllm_status tok_ids_append(tok_ids *a, const int32_t *v, size_t n);
gllm_status tok_str_append(tok_str *b, const char *s, size_t n);

/* ------------------------------------------------------------ UTF-8 helpers */
/* Length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
static inline int tok_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
/* Decode one code point of valid UTF-8 at s, set *n to its length. */
uint32_t tok_utf8_decode(const unsigned char *s, int *n);
int tok_utf8_encode(uint32_t cp, char *out);
/* Copy text into out with every invalid UTF-8 sequence replaced by U+FFFD,
 * exactly as Python's bytes.decode("utf-8", errors="replace") (and Rust's
 * from_utf8_lossy) do: one U+FFFD per maximal invalid subpart. */
gllm_status tok_utf8_sanitize(const char *text, size_t len, tok_str *out);
bool tok_utf8_valid(const char *text, size_t len);

/* GPT-2's byte <-> printable code point table used by ByteLevel. */
extern uint16_t tok_byte_to_cp[256];
void tok_bytelevel_init(void);
/* code point -> byte, or -1 when cp is not in the table */
int tok_cp_to_byte(uint32_t cp);

/* NFC normalization (canonical decomposition, reordering, composition). */
bool tok_nfc_quick_yes(const char *s, size_t n);
gllm_status tok_nfc(const char *s, size_t n, tok_str *out);

/* ------------------------------------------------------------ hash tables */
/* String -> id, open addressing over a string arena. */
typedef struct {
    uint32_t *slot; /* id + 1, 0 = empty */
    uint32_t mask;
} tok_strmap;

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t *key; /* (left << 32 | right) + 1, 0 = empty */
    uint32_t *rank;
    int32_t *merged;
    uint32_t mask;
} tok_pairmap;

static inline uint64_t tok_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* ------------------------------------------------------------ components */
typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC } tok_norm_kind;
typedef struct {
    tok_norm_kind kind;
    char *a, *b; /* Prepend: a; Replace: a -> b */
} tok_norm;

typedef enum { PRE_SPLIT, PRE_METASPACE, PRE_BYTELEVEL } tok_pre_kind;
typedef enum {
    SPLIT_ISOLATED,
    SPLIT_REMOVED,
    SPLIT_MERGED_PREV,
    SPLIT_MERGED_NEXT,
    SPLIT_CONTIGUOUS
} tok_split_behavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend_scheme;
typedef struct {
    tok_pre_kind kind;
    pcre2_code *re; /* Split, or ByteLevel with use_regex */
    char *pattern;  /* Split: the pattern's source (for GGUF export) */
    tok_split_behavior behavior;
    bool invert;
    bool add_prefix_space; /* ByteLevel */
    char replacement[8];   /* Metaspace, UTF-8 */
    tok_prepend_scheme prepend;
    bool split; /* Metaspace */
} tok_pre;

typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } tok_dec_kind;
typedef struct {
    tok_dec_kind kind;
    char *a, *b; /* Replace a -> b; Strip: a = content */
    int start, stop;
    char replacement[8];
    tok_prepend_scheme prepend;
} tok_dec;

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* Trie over added-token contents for leftmost-longest matching. */
typedef struct {
    /* [n_nodes][width]: column 0 is the added-token index + 1 ending at this
     * node (0 = none), column cls[b] the child for byte b (0 = none) */
    int32_t *next;
    int16_t cls[256]; /* byte -> column, 0 = byte in no added token */
    int width, n_nodes;
    bool empty;
} tok_trie;

#define TOK_MAX_NORM 8
#define TOK_MAX_PRE 8
#define TOK_MAX_DEC 8
#define TOK_MAX_SPECIAL_IDS 8

struct gllm_tokenizer {
    char *dir;
    char *json_path;
    uint64_t serial; /* distinguishes tokenizers for the per-thread cache */

    /* vocabulary: token strings for every id (model vocab and added) */
    int n_vocab;
    char **tok_str;
    uint32_t *tok_len;
    tok_strmap vocab; /* model vocab only */
    tok_pairmap merges;
    bool byte_level;  /* ByteLevel pre-tokenizer: BPE symbols are bytes */
    int32_t byte_id[256]; /* byte-level: id of each byte's symbol */
    /* byte-level: raw bytes of each id (the ByteLevel table inverted), so that
     * ignore_merges lookup and decoding work on raw text */
    char **raw_str;
    uint32_t *raw_len;
    tok_strmap raw_vocab;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    int32_t byte_fallback_id[256];

    tok_norm norm[TOK_MAX_NORM];
    int n_norm;
    tok_pre pre[TOK_MAX_PRE];
    int n_pre;
    tok_dec dec[TOK_MAX_DEC];
    int n_dec;
    bool has_decoder;

    tok_added *added;
    int n_added;
    unsigned char *is_special; /* [n_vocab] */
    unsigned char *is_added;   /* [n_vocab] */
    tok_trie trie_raw, trie_norm;

    int32_t prefix_ids[TOK_MAX_SPECIAL_IDS], suffix_ids[TOK_MAX_SPECIAL_IDS];
    int n_prefix, n_suffix;

    int bos_id, eos_id, pad_id;
    char *bos_str, *eos_str, *chat_template;
};

/* tok_bpe.c */
gllm_status tok_strmap_build(tok_strmap *m, char **strs, const uint32_t *lens, int n,
                             const unsigned char *skip);
int32_t tok_strmap_get(const tok_strmap *m, char *const *strs, const uint32_t *lens,
                       const char *s, size_t n);
void tok_strmap_free(tok_strmap *m);
gllm_status tok_pairmap_init(tok_pairmap *m, size_t n);
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged);
void tok_pairmap_free(tok_pairmap *m);
/* BPE of one pre-tokenized word (raw bytes for byte-level, normalized UTF-8
 * otherwise), appending its ids to out. Uses a per-thread cache. */
gllm_status tok_bpe_word(const gllm_tokenizer *tok, const char *w, size_t n, tok_ids *out);
/* Per-thread match data for the pre-tokenizer regexes. */
pcre2_match_data *tok_thread_match_data(void);
void tok_thread_release(const gllm_tokenizer *tok);

/* tok_trie (tok_added.c) */
gllm_status tok_trie_build(tok_trie *t, const tok_added *added, int n, bool normalized);
void tok_trie_free(tok_trie *t);
/* Leftmost-longest match at or after text[from]; returns added index or -1
 * and the match [*ms, *me). */
int tok_trie_find(const tok_trie *t, const char *text, size_t len, size_t from, size_t *ms,
                  size_t *me);

/* tok_load.c: a tokenizer from an in-memory tokenizer.json object and an
 * optional tokenizer_config.json object; `path` names the source in errors. */
typedef struct cJSON cJSON;
gllm_status tok_load_objects(const char *path, const cJSON *tokenizer_json, const cJSON *config,
                             gllm_tokenizer **out);
/* tok_gguf.c: the tokenizer described by a GGUF file's tokenizer.* metadata. */
gllm_status tok_load_gguf(const char *path, gllm_tokenizer **out);
/* chat.c's gllm_chat_load for a .gguf path: tokenizer.chat_template (or
 * `override`) with the bos/eos token strings of the file. */
typedef struct gllm_chat_template gllm_chat_template;
gllm_status tok_gguf_chat(const char *path, const char *override, gllm_chat_template **out);

#endif
