/* The tokenizer of a GGUF file: tokenizer.ggml.* metadata turned into the
 * same tokenizer.json / tokenizer_config.json objects that transformers' GGUF
 * loader builds (vocabulary, merges, control tokens as special added tokens,
 * user-defined ones as plain added tokens, bos/eos/unk/pad strings, the chat
 * template), then loaded by the tokenizer.json code. Two models:
 * "gpt2" (byte-level BPE with the file's merges) and "llama" (SentencePiece:
 * BPE with byte fallback, merges recovered from the scores; build_llama).
 *
 * One deliberate difference for "gpt2": `tokenizer.ggml.pre` is mapped to the
 * pre-tokenizer llama.cpp runs for that name, for every name gllm knows.
 * transformers maps only some names (llama3, qwen2, tekken, ...) and falls
 * back to GPT-2's split for the rest, "smollm" included, whose llama.cpp
 * meaning (and SmolLM's own tokenizer.json) splits digits one by one first.
 * Unknown names are refused. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/chat.h"
#include "gllm/gguf.h"
#include "gllm/tok_gguf.h"
#include "tok/tok_internal.h"

#define GPT2_SPLIT \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_SPLIT                                                                      \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}" \
    "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_SPLIT                                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TEKKEN_SPLIT                                                                            \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|" \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* How each `pre` name splits text before byte-level BPE (llama.cpp's table):
 * gpt2: ByteLevel's own GPT-2 split; digits: every digit alone, then the
 * GPT-2 split; regex: one Split with the pattern, then ByteLevel without its
 * split. */
typedef enum { PRE_GPT2, PRE_DIGITS_GPT2, PRE_REGEX } pre_kind;
static const struct {
    const char *name;
    pre_kind kind;
    const char *regex;
} k_pre[] = {
    /* llama.cpp names GPT-2's split "gpt-2" (and refuses "gpt2"); files
     * written by gllm before it said so carry "gpt2" */
    {"gpt-2", PRE_GPT2, NULL},          {"gpt2", PRE_GPT2, NULL},
    {"mpt", PRE_GPT2, NULL},
    {"olmo", PRE_GPT2, NULL},           {"jais", PRE_GPT2, NULL},
    {"smollm", PRE_DIGITS_GPT2, NULL},  {"starcoder", PRE_DIGITS_GPT2, NULL},
    {"refact", PRE_DIGITS_GPT2, NULL},  {"command-r", PRE_DIGITS_GPT2, NULL},
    {"codeshell", PRE_DIGITS_GPT2, NULL}, {"exaone", PRE_DIGITS_GPT2, NULL},
    {"llama3", PRE_REGEX, LLAMA3_SPLIT}, {"llama-v3", PRE_REGEX, LLAMA3_SPLIT},
    {"llama-bpe", PRE_REGEX, LLAMA3_SPLIT}, {"falcon3", PRE_REGEX, LLAMA3_SPLIT},
    {"dbrx", PRE_REGEX, LLAMA3_SPLIT},  {"smaug-bpe", PRE_REGEX, LLAMA3_SPLIT},
    {"qwen2", PRE_REGEX, QWEN2_SPLIT},  {"deepseek-r1-qwen", PRE_REGEX, QWEN2_SPLIT},
    {"megrez", PRE_REGEX, QWEN2_SPLIT}, {"tekken", PRE_REGEX, TEKKEN_SPLIT},
};

#define TOKEN_UNKNOWN 2
#define TOKEN_CONTROL 3
#define TOKEN_USER_DEFINED 4
#define TOKEN_BYTE 6

static cJSON *byte_level(bool use_regex)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", false);
    cJSON_AddBoolToObject(o, "trim_offsets", true);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *split_isolated(const char *regex)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Split");
    cJSON *p = cJSON_AddObjectToObject(o, "pattern");
    cJSON_AddStringToObject(p, "Regex", regex);
    cJSON_AddStringToObject(o, "behavior", "Isolated");
    cJSON_AddBoolToObject(o, "invert", false);
    return o;
}

static gllm_status pre_tokenizer(const gllm_gguf *g, cJSON **out)
{
    const char *path = gllm_gguf_path(g);
    char *name = NULL;
    if (gllm_gguf_find_kv(g, "tokenizer.ggml.pre"))
        GLLM_TRY(gllm_gguf_get_str(g, "tokenizer.ggml.pre", &name));
    int k = -1;
    for (size_t i = 0; name && i < sizeof k_pre / sizeof k_pre[0]; i++)
        if (strcmp(k_pre[i].name, name) == 0)
            k = (int)i;
    if (name && k < 0) {
        char list[512] = "";
        for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     k_pre[i].name);
        gllm_status s = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: key 'tokenizer.ggml.pre': \"%s\" is "
                                  "not a pre-tokenizer gllm knows (known: %s)", path, name, list);
        free(name);
        return s;
    }
    free(name);
    /* absent: GPT-2's split, as transformers does */
    pre_kind kind = k < 0 ? PRE_GPT2 : k_pre[k].kind;
    if (kind == PRE_GPT2) {
        *out = byte_level(true);
        return GLLM_OK;
    }
    cJSON *seq = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    if (kind == PRE_DIGITS_GPT2) {
        cJSON_AddItemToArray(list, split_isolated("\\p{N}"));
        cJSON_AddItemToArray(list, byte_level(true));
    } else {
        cJSON_AddItemToArray(list, split_isolated(k_pre[k].regex));
        cJSON_AddItemToArray(list, byte_level(false));
    }
    *out = seq;
    return GLLM_OK;
}

/* A string of the GGUF (not NUL-terminated) as a C string; NULs refused. */
static gllm_status cstr(const gllm_gguf *g, const char *key, const gllm_gguf_str *s, uint64_t i,
                        char **out)
{
    if (memchr(s->ptr, 0, s->len))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' element %llu contains a NUL byte",
                         gllm_gguf_path(g), key, (unsigned long long)i);
    char *p = malloc(s->len + 1);
    if (!p)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    memcpy(p, s->ptr, s->len);
    p[s->len] = 0;
    *out = p;
    return GLLM_OK;
}

static gllm_status string_array(const gllm_gguf *g, const char *key, const gllm_gguf_kv **kv)
{
    *kv = gllm_gguf_find_kv(g, key);
    if (!*kv)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: key '%s' is missing", gllm_gguf_path(g), key);
    if ((*kv)->type != GLLM_GGUF_ARRAY || (*kv)->arr_type != GLLM_GGUF_STRING)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' must be an array of strings",
                         gllm_gguf_path(g), key);
    return GLLM_OK;
}

/* true if every code point of s (valid UTF-8) is in GPT-2's byte alphabet */
static bool in_byte_alphabet(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int cl;
        if (tok_cp_to_byte(tok_utf8_decode((const unsigned char *)s + i, &cl)) < 0)
            return false;
        i += (size_t)cl;
    }
    return true;
}

/* a token outside the alphabet spelled byte by byte in it (transformers does this) */
static char *respell(const char *s, size_t n)
{
    char *o = malloc(n * 3 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t)tok_utf8_encode(tok_byte_to_cp[(unsigned char)s[i]], o + k);
    o[k] = 0;
    return o;
}

static const char *token_of(const gllm_gguf_kv *tokens, const gllm_gguf *g, const char *key,
                            char *buf, size_t n)
{
    int64_t id;
    if (!gllm_gguf_find_kv(g, key) || gllm_gguf_get_int(g, key, &id) != GLLM_OK || id < 0 ||
        (uint64_t)id >= tokens->n || tokens->strs[id].len >= n ||
        memchr(tokens->strs[id].ptr, 0, tokens->strs[id].len))
        return NULL;
    memcpy(buf, tokens->strs[id].ptr, tokens->strs[id].len);
    buf[tokens->strs[id].len] = 0;
    return buf;
}

/* tokenizer.ggml.tokens (1 to 2^24 strings) and the optional
 * tokenizer.ggml.token_type (as many integers; *types NULL when absent) */
static gllm_status vocab_arrays(const gllm_gguf *g, const gllm_gguf_kv **tokens,
                                const gllm_gguf_kv **types)
{
    const char *path = gllm_gguf_path(g);
    GLLM_TRY(string_array(g, "tokenizer.ggml.tokens", tokens));
    if ((*tokens)->n == 0 || (*tokens)->n > (1u << 24))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': %llu tokens",
                         path, (unsigned long long)(*tokens)->n);
    const gllm_gguf_kv *t = gllm_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (t && (t->type != GLLM_GGUF_ARRAY || t->n != (*tokens)->n ||
              t->arr_type == GLLM_GGUF_STRING || t->arr_type == GLLM_GGUF_ARRAY))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.token_type' must be an array "
                         "of %llu integers", path, (unsigned long long)(*tokens)->n);
    *types = t;
    return GLLM_OK;
}

/* tokenizer.json's "model" object of a BPE vocabulary, added to tj */
static cJSON *bpe_model(cJSON *tj, bool spm)
{
    cJSON *model = cJSON_AddObjectToObject(tj, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddBoolToObject(model, "fuse_unk", spm);
    cJSON_AddBoolToObject(model, "byte_fallback", spm);
    cJSON_AddBoolToObject(model, "ignore_merges", false);
    return model;
}

/* one entry of tokenizer.json's "added_tokens" */
static void add_token(cJSON *added, int64_t id, const char *content, bool special)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", (double)id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", false);
    cJSON_AddBoolToObject(a, "lstrip", false);
    cJSON_AddBoolToObject(a, "rstrip", false);
    cJSON_AddBoolToObject(a, "normalized", false);
    cJSON_AddBoolToObject(a, "special", special);
    cJSON_AddItemToArray(added, a);
}

/* the strings of tokenizer.ggml.merges appended to the model's "merges" */
static gllm_status copy_merges(const gllm_gguf *g, const gllm_gguf_kv *merges, cJSON *ml)
{
    for (uint64_t i = 0; i < merges->n; i++) {
        char *m;
        GLLM_TRY(cstr(g, "tokenizer.ggml.merges", &merges->strs[i], i, &m));
        cJSON_AddItemToArray(ml, cJSON_CreateString(m));
        free(m);
    }
    return GLLM_OK;
}

/* The post-processor (BOS/EOS as add_bos_token/add_eos_token say, add_bos
 * defaulting to bos_default) and tokenizer_config.json (special token
 * strings, chat template). */
static gllm_status post_and_config(const gllm_gguf *g, const gllm_gguf_kv *tokens,
                                   bool bos_default, cJSON *tj, cJSON *cfg)
{
    /* BOS/EOS added on encode as llama.cpp's add_bos/add_eos say */
    bool add_bos = bos_default, add_eos = false;
    if (gllm_gguf_find_kv(g, "tokenizer.ggml.add_bos_token"))
        GLLM_TRY(gllm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos));
    if (gllm_gguf_find_kv(g, "tokenizer.ggml.add_eos_token"))
        GLLM_TRY(gllm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos));
    char bos[256], eos[256];
    const char *bs = token_of(tokens, g, "tokenizer.ggml.bos_token_id", bos, sizeof bos);
    const char *es = token_of(tokens, g, "tokenizer.ggml.eos_token_id", eos, sizeof eos);
    cJSON *post = cJSON_AddObjectToObject(tj, "post_processor");
    cJSON_AddStringToObject(post, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(post, "single");
    cJSON *specials = cJSON_AddObjectToObject(post, "special_tokens");
    const char *ends[2] = {add_bos ? bs : NULL, add_eos ? es : NULL};
    const char *ids_key[2] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (int side = 0; side < 2; side++) {
        if (side == 1) {
            cJSON *seq = cJSON_CreateObject();
            cJSON *in = cJSON_AddObjectToObject(seq, "Sequence");
            cJSON_AddStringToObject(in, "id", "A");
            cJSON_AddNumberToObject(in, "type_id", 0);
            cJSON_AddItemToArray(single, seq);
        }
        if (!ends[side])
            continue;
        int64_t id;
        GLLM_TRY(gllm_gguf_get_int(g, ids_key[side], &id));
        cJSON *sp = cJSON_CreateObject();
        cJSON *in = cJSON_AddObjectToObject(sp, "SpecialToken");
        cJSON_AddStringToObject(in, "id", ends[side]);
        cJSON_AddNumberToObject(in, "type_id", 0);
        cJSON_AddItemToArray(single, sp);
        cJSON *e = cJSON_AddObjectToObject(specials, ends[side]);
        cJSON_AddStringToObject(e, "id", ends[side]);
        cJSON *idl = cJSON_AddArrayToObject(e, "ids");
        cJSON_AddItemToArray(idl, cJSON_CreateNumber((double)id));
        cJSON *tl = cJSON_AddArrayToObject(e, "tokens");
        cJSON_AddItemToArray(tl, cJSON_CreateString(ends[side]));
    }
    cJSON *pair = cJSON_Duplicate(single, 1);
    cJSON *seqb = cJSON_CreateObject();
    cJSON *inb = cJSON_AddObjectToObject(seqb, "Sequence");
    cJSON_AddStringToObject(inb, "id", "B");
    cJSON_AddNumberToObject(inb, "type_id", 1);
    cJSON_AddItemToArray(pair, seqb);
    cJSON_AddItemToObject(post, "pair", pair);
    /* tokenizer_config.json */
    static const char *const names[][2] = {{"bos_token", "tokenizer.ggml.bos_token_id"},
                                           {"eos_token", "tokenizer.ggml.eos_token_id"},
                                           {"unk_token", "tokenizer.ggml.unknown_token_id"},
                                           {"pad_token", "tokenizer.ggml.padding_token_id"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char buf[256];
        const char *t = token_of(tokens, g, names[i][1], buf, sizeof buf);
        if (t)
            cJSON_AddStringToObject(cfg, names[i][0], t);
    }
    if (gllm_gguf_find_kv(g, "tokenizer.chat_template")) {
        char *tpl;
        GLLM_TRY(gllm_gguf_get_str(g, "tokenizer.chat_template", &tpl));
        cJSON_AddStringToObject(cfg, "chat_template", tpl);
        free(tpl);
    }
    return GLLM_OK;
}

static gllm_status build_gpt2(const gllm_gguf *g, cJSON *tj, cJSON *cfg)
{
    const char *path = gllm_gguf_path(g);
    const gllm_gguf_kv *tokens, *types, *merges;
    GLLM_TRY(vocab_arrays(g, &tokens, &types));
    GLLM_TRY(string_array(g, "tokenizer.ggml.merges", &merges));
    cJSON *model = bpe_model(tj, false);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *added = cJSON_AddArrayToObject(tj, "added_tokens");
    for (uint64_t i = 0; i < tokens->n; i++) {
        char *s;
        GLLM_TRY(cstr(g, "tokenizer.ggml.tokens", &tokens->strs[i], i, &s));
        if (!tok_utf8_valid(s, tokens->strs[i].len)) {
            free(s);
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens' element %llu is "
                             "not valid UTF-8", path, (unsigned long long)i);
        }
        const bool alpha = in_byte_alphabet(s, tokens->strs[i].len);
        char *spelled = alpha ? s : respell(s, tokens->strs[i].len);
        if (!spelled) {
            free(s);
            return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
        }
        /* (transformers builds a Python dict here, where a later token of the
         * same spelling replaces an earlier one; released vocabularies have none) */
        cJSON_AddNumberToObject(vocab, spelled, (double)i);
        const int64_t type = types ? gllm_gguf_arr_int(types, i) : 1;
        if ((type == TOKEN_CONTROL && alpha) || type == TOKEN_USER_DEFINED)
            add_token(added, (int64_t)i, type == TOKEN_CONTROL ? s : spelled,
                      type == TOKEN_CONTROL);
        if (spelled != s)
            free(spelled);
        free(s);
    }
    GLLM_TRY(copy_merges(g, merges, cJSON_AddArrayToObject(model, "merges")));
    cJSON_AddNullToObject(tj, "normalizer");
    cJSON *pre = NULL;
    GLLM_TRY(pre_tokenizer(g, &pre));
    cJSON_AddItemToObject(tj, "pre_tokenizer", pre);
    cJSON_AddItemToObject(tj, "decoder", byte_level(true));
    return post_and_config(g, tokens, false, tj, cfg);
}

/* ---------------------------------------------------------------- SentencePiece */

/* One merge recovered from the vocabulary: left + right = a token. */
typedef struct spm_merge {
    int32_t a, b;
    double score;   /* the merged token's score */
    uint32_t la, lb; /* lengths in code points */
    uint64_t seq;    /* position in transformers' list before its sort */
} spm_merge;

static int cmp_local(const void *x, const void *y)
{
    const spm_merge *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/* best first: higher score, then longer left, then longer right, then earlier */
static int cmp_best(const void *x, const void *y)
{
    const spm_merge *p = x, *q = y;
    if (p->score != q->score)
        return p->score > q->score ? -1 : 1;
    if (p->la != q->la)
        return p->la > q->la ? -1 : 1;
    if (p->lb != q->lb)
        return p->lb > q->lb ? -1 : 1;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

static uint32_t cp_count(const char *s, size_t n)
{
    uint32_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* The merges a SentencePiece vocabulary implies, as transformers derives
 * them (tokenization_utils_base.generate_merges with the scores): every split
 * of every token into two tokens, a token's splits ordered by (left id, right
 * id), then all of them by the token's score, highest first, then longer left
 * and longer right pieces first; ties keep that order. Appends [left, right]
 * pairs to `out`. */
static gllm_status spm_merges(char **strs, const uint32_t *lens, const double *scores, int n,
                              const tok_strmap *map, cJSON *out)
{
    size_t cap = 1024, nm = 0;
    spm_merge *m = malloc(cap * sizeof *m);
    if (!m)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for merges");
    for (int id = 0; id < n; id++) {
        const size_t start = nm;
        for (uint32_t k = 1; k < lens[id]; k++) {
            if (((unsigned char)strs[id][k] & 0xC0) == 0x80)
                continue; /* not a code point boundary */
            int32_t a = tok_strmap_get(map, strs, lens, strs[id], k);
            int32_t b = a < 0 ? -1 : tok_strmap_get(map, strs, lens, strs[id] + k, lens[id] - k);
            if (b < 0)
                continue;
            if (nm == cap) {
                spm_merge *g = realloc(m, 2 * cap * sizeof *m);
                if (!g) {
                    free(m);
                    return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for merges");
                }
                m = g;
                cap *= 2;
            }
            m[nm++] = (spm_merge){a, b, scores[id], cp_count(strs[id], k),
                                  cp_count(strs[id] + k, lens[id] - k), 0};
        }
        qsort(m + start, nm - start, sizeof *m, cmp_local);
    }
    for (size_t i = 0; i < nm; i++)
        m[i].seq = i;
    qsort(m, nm, sizeof *m, cmp_best);
    for (size_t i = 0; i < nm; i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(strs[m[i].a]));
        cJSON_AddItemToArray(pair, cJSON_CreateString(strs[m[i].b]));
        cJSON_AddItemToArray(out, pair);
    }
    free(m);
    return GLLM_OK;
}

static cJSON *replace_decoder(const char *from, const char *to)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Replace");
    cJSON *p = cJSON_AddObjectToObject(o, "pattern");
    cJSON_AddStringToObject(p, "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

#define SPM_SPACE "\xe2\x96\x81" /* U+2581 */

/* tokenizer.ggml.model = "llama": a SentencePiece vocabulary with scores,
 * built as transformers' LlamaTokenizer is from it: BPE over the tokens
 * (byte fallback to <0xNN> tokens, unknowns fused), merges recovered from the
 * scores (or the file's own tokenizer.ggml.merges when it has them), a
 * Metaspace pre-tokenizer ("▁" for spaces, one prepended to the text's first
 * word), control tokens and the bos/eos/unk/pad tokens as special added
 * tokens, user-defined ones as plain added tokens, and the decoder that undoes
 * it all. add_bos defaults to true, as in llama.cpp.
 *
 * One deliberate difference: tokenizer.ggml.add_space_prefix = false is
 * followed (no "▁" prepended, none stripped when decoding), as llama.cpp
 * does; transformers ignores that key. */
static gllm_status build_llama(const gllm_gguf *g, cJSON *tj, cJSON *cfg)
{
    const char *path = gllm_gguf_path(g);
    char *arch = NULL;
    if (gllm_gguf_find_kv(g, "general.architecture"))
        GLLM_TRY(gllm_gguf_get_str(g, "general.architecture", &arch));
    /* these spell spaces or split merges differently (transformers has a
     * builder for each); gllm does not build them */
    static const char *const other[] = {"gemma", "gemma2", "gemma3", "gemma3n", "phi3"};
    for (size_t i = 0; arch && i < sizeof other / sizeof other[0]; i++)
        if (strcmp(arch, other[i]) == 0) {
            gllm_status s = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: key 'tokenizer.ggml.model': the "
                                      "SentencePiece tokenizer of architecture \"%s\" is not "
                                      "supported (llama-style ones are)", path, arch);
            free(arch);
            return s;
        }
    free(arch);
    const gllm_gguf_kv *tokens, *types, *merges = gllm_gguf_find_kv(g, "tokenizer.ggml.merges");
    GLLM_TRY(vocab_arrays(g, &tokens, &types));
    if (merges)
        GLLM_TRY(string_array(g, "tokenizer.ggml.merges", &merges));
    const gllm_gguf_kv *scores = gllm_gguf_find_kv(g, "tokenizer.ggml.scores");
    if (!scores && !merges)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: key 'tokenizer.ggml.scores' is missing (a "
                         "SentencePiece vocabulary needs scores or merges)", path);
    if (scores && (scores->type != GLLM_GGUF_ARRAY || scores->n != tokens->n ||
                   scores->arr_type == GLLM_GGUF_STRING || scores->arr_type == GLLM_GGUF_ARRAY))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.scores' must be an array of "
                         "%llu numbers", path, (unsigned long long)tokens->n);
    bool prefix = true;
    if (gllm_gguf_find_kv(g, "tokenizer.ggml.add_space_prefix"))
        GLLM_TRY(gllm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix));
    int64_t special_ids[4] = {-1, -1, -1, -1};
    static const char *const special_keys[4] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    for (int k = 0; k < 4; k++)
        if (gllm_gguf_find_kv(g, special_keys[k]) &&
            gllm_gguf_get_int(g, special_keys[k], &special_ids[k]) != GLLM_OK)
            special_ids[k] = -1;

    const int n = (int)tokens->n;
    char **strs = calloc((size_t)n, sizeof *strs);
    uint32_t *lens = calloc((size_t)n, sizeof *lens);
    double *sc = calloc((size_t)n, sizeof *sc);
    tok_strmap map = {0};
    gllm_status s = strs && lens && sc ? GLLM_OK : gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    for (int i = 0; s == GLLM_OK && i < n; i++) {
        s = cstr(g, "tokenizer.ggml.tokens", &tokens->strs[i], (uint64_t)i, &strs[i]);
        if (s != GLLM_OK)
            break;
        lens[i] = (uint32_t)tokens->strs[i].len;
        if (!tok_utf8_valid(strs[i], lens[i]))
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens' element %d is not "
                          "valid UTF-8", path, i);
        sc[i] = scores ? gllm_gguf_arr_float(scores, (uint64_t)i) : 0;
        if (s == GLLM_OK && sc[i] != sc[i])
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.scores' element %d is NaN",
                          path, i);
    }
    if (s == GLLM_OK)
        s = tok_strmap_build(&map, strs, lens, n, NULL);
    for (int i = 0; s == GLLM_OK && i < n; i++) {
        int32_t first = tok_strmap_get(&map, strs, lens, strs[i], lens[i]);
        if (first != i)
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': element %d (\"%s\") "
                          "repeats element %d", path, i, strs[i], first);
    }
    cJSON *model = s == GLLM_OK ? bpe_model(tj, true) : NULL;
    if (model) {
        cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
        cJSON *added = cJSON_AddArrayToObject(tj, "added_tokens");
        for (int i = 0; i < n; i++) {
            cJSON_AddNumberToObject(vocab, strs[i], (double)i);
            const int64_t type = types ? gllm_gguf_arr_int(types, (uint64_t)i) : 1;
            bool special = type == TOKEN_CONTROL;
            for (int k = 0; k < 4; k++)
                special |= special_ids[k] == i;
            if (special || type == TOKEN_USER_DEFINED)
                add_token(added, i, strs[i], special);
        }
        cJSON *ml = cJSON_AddArrayToObject(model, "merges");
        s = merges ? copy_merges(g, merges, ml) : spm_merges(strs, lens, sc, n, &map, ml);
    }
    tok_strmap_free(&map);
    for (int i = 0; strs && i < n; i++)
        free(strs[i]);
    free(strs);
    free(lens);
    free(sc);
    GLLM_TRY(s);
    cJSON_AddNullToObject(tj, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(tj, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Metaspace");
    cJSON_AddStringToObject(pre, "replacement", SPM_SPACE);
    cJSON_AddStringToObject(pre, "prepend_scheme", prefix ? "first" : "never");
    cJSON_AddBoolToObject(pre, "split", false);
    cJSON *dec = cJSON_AddObjectToObject(tj, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddItemToArray(dl, replace_decoder(SPM_SPACE, " "));
    cJSON_AddItemToArray(dl, typed("ByteFallback"));
    cJSON_AddItemToArray(dl, typed("Fuse"));
    if (prefix) {
        cJSON *strip = typed("Strip");
        cJSON_AddStringToObject(strip, "content", " ");
        cJSON_AddNumberToObject(strip, "start", 1);
        cJSON_AddNumberToObject(strip, "stop", 0);
        cJSON_AddItemToArray(dl, strip);
    }
    return post_and_config(g, tokens, true, tj, cfg);
}

/* The tokenizer.json and tokenizer_config.json objects of a GGUF file. */
static gllm_status build_objects(const char *path, cJSON **tj_out, cJSON **cfg_out)
{
    *tj_out = *cfg_out = NULL;
    tok_bytelevel_init();
    gllm_gguf *g;
    GLLM_TRY(gllm_gguf_open(path, &g));
    char *model = NULL;
    gllm_status s = gllm_gguf_get_str(g, "tokenizer.ggml.model", &model);
    cJSON *tj = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    if (s == GLLM_OK && (!tj || !cfg))
        s = gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    if (s == GLLM_OK) {
        cJSON_AddStringToObject(tj, "version", "1.0");
        cJSON_AddNullToObject(tj, "truncation");
        cJSON_AddNullToObject(tj, "padding");
        if (strcmp(model, "gpt2") == 0)
            s = build_gpt2(g, tj, cfg);
        else if (strcmp(model, "llama") == 0)
            s = build_llama(g, tj, cfg);
        else
            s = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: key 'tokenizer.ggml.model': \"%s\" is not "
                          "supported (supported: gpt2, llama)", path, model);
    }
    free(model);
    gllm_gguf_close(g);
    if (s != GLLM_OK) {
        cJSON_Delete(tj);
        cJSON_Delete(cfg);
        return s;
    }
    *tj_out = tj;
    *cfg_out = cfg;
    return GLLM_OK;
}

gllm_status tok_load_gguf(const char *path, gllm_tokenizer **out)
{
    *out = NULL;
    cJSON *tj, *cfg;
    GLLM_TRY(build_objects(path, &tj, &cfg));
    gllm_status s = tok_load_objects(path, tj, cfg, out);
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    return s;
}

gllm_status gllm_tok_gguf_to_hf(const char *gguf_path, char **tokenizer_json,
                                char **tokenizer_config_json)
{
    *tokenizer_json = *tokenizer_config_json = NULL;
    cJSON *tj, *cfg;
    GLLM_TRY(build_objects(gguf_path, &tj, &cfg));
    cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    *tokenizer_json = cJSON_PrintUnformatted(tj);
    *tokenizer_config_json = cJSON_Print(cfg);
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    if (!*tokenizer_json || !*tokenizer_config_json) {
        free(*tokenizer_json);
        free(*tokenizer_config_json);
        *tokenizer_json = *tokenizer_config_json = NULL;
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    }
    return GLLM_OK;
}

/* ---------------------------------------------------------------- export */

typedef struct merge_rank {
    uint32_t rank;
    int32_t a, b;
} merge_rank;

static int cmp_rank(const void *x, const void *y)
{
    const merge_rank *p = x, *q = y;
    return p->rank < q->rank ? -1 : p->rank > q->rank;
}

/* the llama.cpp `pre` name of tok's pre-tokenizer, or NULL */
static const char *pre_name(const gllm_tokenizer *tok)
{
    const tok_pre *p = tok->pre;
    if (tok->n_norm != 0 || !tok->byte_level)
        return NULL;
    if (tok->n_pre == 1 && p[0].kind == PRE_BYTELEVEL && p[0].re && !p[0].add_prefix_space)
        return "gpt-2";
    if (tok->n_pre != 2 || p[0].kind != PRE_SPLIT || p[0].behavior != SPLIT_ISOLATED ||
        p[0].invert || !p[0].pattern || p[1].kind != PRE_BYTELEVEL || p[1].add_prefix_space)
        return NULL;
    if (p[1].re)
        return strcmp(p[0].pattern, "\\p{N}") == 0 ? "smollm" : NULL;
    static const char *const known[][2] = {
        {LLAMA3_SPLIT, "llama-bpe"}, {QWEN2_SPLIT, "qwen2"}, {TEKKEN_SPLIT, "tekken"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(p[0].pattern, known[i][0]) == 0)
            return known[i][1];
    return NULL;
}

/* 1 (add_space_prefix) or 0 when tok is a SentencePiece-style BPE llama.cpp
 * reads as tokenizer.ggml.model "llama": byte fallback, no byte-level step,
 * spaces as "▁" either by a Metaspace pre-tokenizer (no split) or by the
 * older Prepend("▁") + Replace(" ", "▁") normalizers; -1 otherwise. */
static int spm_style(const gllm_tokenizer *tok)
{
    if (tok->byte_level || !tok->byte_fallback)
        return -1;
    const tok_pre *p = tok->pre;
    if (tok->n_norm == 0 && tok->n_pre == 1 && p[0].kind == PRE_METASPACE && !p[0].split &&
        strcmp(p[0].replacement, SPM_SPACE) == 0)
        return p[0].prepend != PREPEND_NEVER;
    const tok_norm *q = tok->norm;
    if (tok->n_pre == 0 && tok->n_norm == 2 && q[0].kind == NORM_PREPEND &&
        strcmp(q[0].a, SPM_SPACE) == 0 && q[1].kind == NORM_REPLACE && strcmp(q[1].a, " ") == 0 &&
        strcmp(q[1].b, SPM_SPACE) == 0)
        return 1;
    return -1;
}

gllm_status gllm_tok_export_gguf(const gllm_tokenizer *tok, gllm_gguf_writer *w)
{
    const char *pre = pre_name(tok);
    const int spm = spm_style(tok);
    if (!pre && spm < 0)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: GGUF export needs a byte-level BPE tokenizer "
                         "without normalizer whose pre-tokenizer llama.cpp names (ByteLevel, "
                         "or a Split of \\p{N}, the Llama-3, Qwen2 or Tekken pattern before it), "
                         "or a SentencePiece-style BPE (byte fallback, Metaspace or "
                         "Prepend/Replace of U+2581)", tok->json_path);
    const int n = tok->n_vocab;
    const char **strs = calloc((size_t)n, sizeof *strs);
    char **pads = calloc((size_t)n, sizeof *pads);
    int32_t *types = calloc((size_t)n, sizeof *types);
    size_t cap = (size_t)tok->merges.mask + 1, nm = 0;
    merge_rank *mr = calloc(cap, sizeof *mr);
    gllm_status s = strs && pads && types && mr ? GLLM_OK
                                                : gllm_fail(GLLM_ERR_OOM, "tokenizer export: out of memory");
    float *scores = spm >= 0 ? calloc((size_t)n, sizeof *scores) : NULL;
    if (s == GLLM_OK && spm >= 0 && !scores)
        s = gllm_fail(GLLM_ERR_OOM, "tokenizer export: out of memory");
    for (int i = 0; s == GLLM_OK && i < n; i++) {
        if (tok->tok_str[i]) {
            strs[i] = tok->tok_str[i];
            types[i] = !tok->is_added[i] ? 1 : tok->is_special[i] ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
            if (spm >= 0 && i == tok->unk_id)
                types[i] = TOKEN_UNKNOWN;
            if (spm >= 0 && !tok->is_added[i])
                for (int b = 0; b < 256; b++)
                    if (tok->byte_fallback_id[b] == i)
                        types[i] = TOKEN_BYTE;
        } else { /* an id no token uses: llama.cpp's converter writes [PAD<id>], unused */
            pads[i] = malloc(24);
            if (!pads[i]) {
                s = gllm_fail(GLLM_ERR_OOM, "tokenizer export: out of memory");
                break;
            }
            snprintf(pads[i], 24, "[PAD%d]", i);
            strs[i] = pads[i];
            types[i] = 5;
        }
    }
    for (size_t i = 0; s == GLLM_OK && tok->merges.key && i < cap; i++)
        if (tok->merges.key[i]) {
            uint64_t k = tok->merges.key[i] - 1;
            mr[nm].rank = tok->merges.rank[i];
            mr[nm].a = (int32_t)(k >> 32);
            mr[nm++].b = (int32_t)(k & 0xffffffffu);
        }
    char **ms = NULL;
    if (s == GLLM_OK)
        qsort(mr, nm, sizeof *mr, cmp_rank);
    if (s == GLLM_OK && spm >= 0) {
        /* Scores that give back the merge order when llama.cpp (highest
         * score merged first) or transformers (merges recovered from the
         * scores) read them: the token the k-th merge (0-based) makes first
         * scores -(k + 1). Tokens no merge makes score 0 if they are one
         * code point, added or bytes (nothing merges into them), and below
         * every merge otherwise. */
        for (int i = 0; i < n; i++)
            scores[i] = tok->tok_str[i] && !tok->is_added[i] && types[i] == 1 &&
                                cp_count(tok->tok_str[i], tok->tok_len[i]) > 1
                            ? -(float)(nm + 1)
                            : 0.0f;
        for (size_t i = nm; i-- > 0;) {
            const char *a = tok->tok_str[mr[i].a], *b = tok->tok_str[mr[i].b];
            size_t la = strlen(a), lb = strlen(b);
            char buf[1024];
            if (la + lb >= sizeof buf)
                continue;
            memcpy(buf, a, la);
            memcpy(buf + la, b, lb);
            int32_t t = tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, buf, la + lb);
            if (t >= 0)
                scores[t] = -(float)(i + 1);
        }
        nm = 0; /* llama.cpp's SentencePiece vocabularies carry no merges */
    }
    if (s == GLLM_OK) {
        ms = calloc(nm ? nm : 1, sizeof *ms);
        if (!ms)
            s = gllm_fail(GLLM_ERR_OOM, "tokenizer export: out of memory");
    }
    for (size_t i = 0; s == GLLM_OK && i < nm; i++) {
        const char *a = tok->tok_str[mr[i].a], *b = tok->tok_str[mr[i].b];
        ms[i] = malloc(strlen(a) + strlen(b) + 2);
        if (!ms[i]) {
            s = gllm_fail(GLLM_ERR_OOM, "tokenizer export: out of memory");
            break;
        }
        sprintf(ms[i], "%s %s", a, b);
    }
    if (s == GLLM_OK)
        s = gllm_gguf_add_str(w, "tokenizer.ggml.model", spm >= 0 ? "llama" : "gpt2");
    if (s == GLLM_OK && spm < 0)
        s = gllm_gguf_add_str(w, "tokenizer.ggml.pre", pre);
    if (s == GLLM_OK)
        s = gllm_gguf_add_arr_str(w, "tokenizer.ggml.tokens", strs, (uint64_t)n);
    if (s == GLLM_OK && spm >= 0)
        s = gllm_gguf_add_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
    if (s == GLLM_OK)
        s = gllm_gguf_add_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    if (s == GLLM_OK && spm < 0)
        s = gllm_gguf_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, nm);
    if (s == GLLM_OK && spm >= 0)
        s = gllm_gguf_add_bool(w, "tokenizer.ggml.add_space_prefix", spm == 1);
    const struct {
        const char *key;
        int id;
    } ids[] = {{"tokenizer.ggml.bos_token_id", tok->bos_id},
               {"tokenizer.ggml.eos_token_id", tok->eos_id},
               {"tokenizer.ggml.unknown_token_id", spm >= 0 ? tok->unk_id : -1},
               {"tokenizer.ggml.padding_token_id", tok->pad_id}};
    for (size_t i = 0; s == GLLM_OK && i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= 0)
            s = gllm_gguf_add_u32(w, ids[i].key, (uint32_t)ids[i].id);
    if (s == GLLM_OK)
        s = gllm_gguf_add_bool(w, "tokenizer.ggml.add_bos_token",
                               tok->n_prefix > 0 && tok->prefix_ids[0] == tok->bos_id);
    if (s == GLLM_OK)
        s = gllm_gguf_add_bool(w, "tokenizer.ggml.add_eos_token",
                               tok->n_suffix > 0 && tok->suffix_ids[0] == tok->eos_id);
    if (s == GLLM_OK && tok->chat_template)
        s = gllm_gguf_add_str(w, "tokenizer.chat_template", tok->chat_template);
    for (size_t i = 0; ms && i < nm; i++)
        free(ms[i]);
    free(ms);
    for (int i = 0; pads && i < n; i++)
        free(pads[i]);
    free(pads);
    free(strs);
    free(types);
    free(scores);
    free(mr);
    return s;
}

gllm_status tok_gguf_chat(const char *path, const char *override, gllm_chat_template **out)
{
    *out = NULL;
    gllm_gguf *g;
    GLLM_TRY(gllm_gguf_open(path, &g));
    char *tpl = NULL;
    gllm_status s = GLLM_OK;
    if (!override) {
        if (!gllm_gguf_find_kv(g, "tokenizer.chat_template"))
            s = gllm_fail(GLLM_ERR_NOT_FOUND, "%s: key 'tokenizer.chat_template' is missing (no "
                          "chat template; name a built-in one, e.g. \"chatml\", in the config)",
                          path);
        else
            s = gllm_gguf_get_str(g, "tokenizer.chat_template", &tpl);
    }
    const gllm_gguf_kv *tokens = gllm_gguf_find_kv(g, "tokenizer.ggml.tokens");
    char bos[256], eos[256];
    const char *bs = NULL, *es = NULL;
    if (tokens && tokens->type == GLLM_GGUF_ARRAY && tokens->arr_type == GLLM_GGUF_STRING) {
        bs = token_of(tokens, g, "tokenizer.ggml.bos_token_id", bos, sizeof bos);
        es = token_of(tokens, g, "tokenizer.ggml.eos_token_id", eos, sizeof eos);
    }
    if (s == GLLM_OK) {
        s = gllm_chat_open(override ? override : tpl, bs, es, out);
        if (s != GLLM_OK)
            gllm_fail_prefix(s, "%s: ", path);
    }
    free(tpl);
    gllm_gguf_close(g);
    return s;
}
