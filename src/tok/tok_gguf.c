/* The tokenizer of a GGUF file: tokenizer.ggml.* metadata turned into the
 * same tokenizer.json / tokenizer_config.json objects that transformers' GGUF
 * loader builds (vocabulary, merges, control tokens as special added tokens,
 * user-defined ones as plain added tokens, bos/eos/unk/pad strings, the chat
 * template), then loaded by the tokenizer.json code.
 *
 * One deliberate difference: `tokenizer.ggml.pre` is mapped to the
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
    {"gpt2", PRE_GPT2, NULL},           {"mpt", PRE_GPT2, NULL},
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

#define TOKEN_CONTROL 3
#define TOKEN_USER_DEFINED 4

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

static gllm_status build_gpt2(const gllm_gguf *g, cJSON *tj, cJSON *cfg)
{
    const char *path = gllm_gguf_path(g);
    const gllm_gguf_kv *tokens, *merges;
    GLLM_TRY(string_array(g, "tokenizer.ggml.tokens", &tokens));
    GLLM_TRY(string_array(g, "tokenizer.ggml.merges", &merges));
    if (tokens->n == 0 || tokens->n > (1u << 24))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': %llu tokens",
                         path, (unsigned long long)tokens->n);
    const gllm_gguf_kv *types = gllm_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GLLM_GGUF_ARRAY || types->n != tokens->n ||
                  types->arr_type == GLLM_GGUF_STRING || types->arr_type == GLLM_GGUF_ARRAY))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key 'tokenizer.ggml.token_type' must be an array "
                         "of %llu integers", path, (unsigned long long)tokens->n);
    cJSON *model = cJSON_AddObjectToObject(tj, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddBoolToObject(model, "fuse_unk", false);
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    cJSON_AddBoolToObject(model, "ignore_merges", false);
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
        if ((type == TOKEN_CONTROL && alpha) || type == TOKEN_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", type == TOKEN_CONTROL ? s : spelled);
            cJSON_AddBoolToObject(a, "single_word", false);
            cJSON_AddBoolToObject(a, "lstrip", false);
            cJSON_AddBoolToObject(a, "rstrip", false);
            cJSON_AddBoolToObject(a, "normalized", false);
            cJSON_AddBoolToObject(a, "special", type == TOKEN_CONTROL);
            cJSON_AddItemToArray(added, a);
        }
        if (spelled != s)
            free(spelled);
        free(s);
    }
    cJSON *ml = cJSON_AddArrayToObject(model, "merges");
    for (uint64_t i = 0; i < merges->n; i++) {
        char *s;
        GLLM_TRY(cstr(g, "tokenizer.ggml.merges", &merges->strs[i], i, &s));
        cJSON_AddItemToArray(ml, cJSON_CreateString(s));
        free(s);
    }
    cJSON_AddNullToObject(tj, "normalizer");
    cJSON *pre = NULL;
    GLLM_TRY(pre_tokenizer(g, &pre));
    cJSON_AddItemToObject(tj, "pre_tokenizer", pre);
    cJSON_AddItemToObject(tj, "decoder", byte_level(true));
    /* BOS/EOS added on encode as llama.cpp's add_bos/add_eos say */
    bool add_bos = false, add_eos = false;
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

gllm_status tok_load_gguf(const char *path, gllm_tokenizer **out)
{
    *out = NULL;
    tok_bytelevel_init();
    gllm_gguf *g;
    GLLM_TRY(gllm_gguf_open(path, &g));
    char *model = NULL;
    gllm_status s = gllm_gguf_get_str(g, "tokenizer.ggml.model", &model);
    cJSON *tj = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    if (s == GLLM_OK && (!tj || !cfg))
        s = gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    if (s == GLLM_OK) {
        if (strcmp(model, "gpt2") == 0)
            s = build_gpt2(g, tj, cfg);
        else
            s = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: key 'tokenizer.ggml.model': \"%s\" is not "
                          "supported (supported: gpt2)", path, model);
    }
    if (s == GLLM_OK)
        s = tok_load_objects(path, tj, cfg, out);
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    free(model);
    gllm_gguf_close(g);
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
