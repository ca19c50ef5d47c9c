/* Loading tokenizer.json (+ tokenizer_config.json): the BPE model, added
 * tokens and the pipeline components. Anything gllm cannot reproduce exactly
 * is refused with a message naming the component and the file. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "gllm/json.h"
#include "tok/tok_internal.h"

static atomic_uint_fast64_t g_serial = 1;
static pthread_once_t g_bytelevel_once = PTHREAD_ONCE_INIT;

/* GPT-2's split pattern, which ByteLevel applies when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The "String" or "Regex" of a {"String": ...} / {"Regex": ...} pattern. */
static const char *pattern_of(const cJSON *o, bool *is_regex)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(p, "String");
    *is_regex = false;
    if (s)
        return s;
    *is_regex = true;
    return jstr(p, "Regex");
}

static gllm_status compile_regex(const gllm_tokenizer *tok, const char *pat, bool literal,
                                 pcre2_code **out)
{
    int err;
    PCRE2_SIZE off;
    uint32_t flags = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, flags, &err, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: pre-tokenizer regex /%s/ at offset %zu: %s",
                         tok->json_path, pat, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return GLLM_OK;
}

/* ------------------------------------------------------------ components */
static gllm_status unsupported(const gllm_tokenizer *tok, const char *what, const char *type)
{
    return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: %s '%s' is not supported", tok->json_path, what,
                     type ? type : "(no type)");
}

static gllm_status load_normalizer(gllm_tokenizer *tok, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return GLLM_OK;
    const char *type = jstr(o, "type");
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "normalizers"))
            GLLM_TRY(load_normalizer(tok, it));
        return GLLM_OK;
    }
    if (tok->n_norm == TOK_MAX_NORM)
        return unsupported(tok, "normalizer sequence longer than 8, at", type);
    tok_norm *m = &tok->norm[tok->n_norm];
    bool is_regex = false;
    if (type && !strcmp(type, "Prepend") && jstr(o, "prepend")) {
        m->kind = NORM_PREPEND;
        m->a = dupstr(jstr(o, "prepend"));
    } else if (type && !strcmp(type, "Replace") && pattern_of(o, &is_regex) && !is_regex &&
               jstr(o, "content")) {
        m->kind = NORM_REPLACE;
        m->a = dupstr(pattern_of(o, &is_regex));
        m->b = dupstr(jstr(o, "content"));
    } else if (type && !strcmp(type, "NFC")) {
        m->kind = NORM_NFC;
    } else {
        return unsupported(tok, "normalizer", is_regex ? "Replace with a Regex pattern" : type);
    }
    tok->n_norm++;
    return GLLM_OK;
}

static gllm_status load_pre(gllm_tokenizer *tok, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return GLLM_OK;
    const char *type = jstr(o, "type");
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"))
            GLLM_TRY(load_pre(tok, it));
        return GLLM_OK;
    }
    if (tok->n_pre && tok->pre[tok->n_pre - 1].kind == PRE_BYTELEVEL)
        return unsupported(tok, "pre-tokenizer after ByteLevel", type);
    if (tok->n_pre == TOK_MAX_PRE)
        return unsupported(tok, "pre-tokenizer sequence longer than 8, at", type);
    tok_pre *p = &tok->pre[tok->n_pre];
    memset(p, 0, sizeof *p);
    if (type && !strcmp(type, "Split")) {
        bool is_regex;
        const char *pat = pattern_of(o, &is_regex);
        const char *beh = jstr(o, "behavior");
        static const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        int b = -1;
        for (int i = 0; beh && i < 5; i++)
            if (!strcmp(beh, names[i]))
                b = i;
        if (!pat || b < 0)
            return unsupported(tok, "Split pre-tokenizer behavior", beh);
        p->kind = PRE_SPLIT;
        p->behavior = (tok_split_behavior)b;
        p->invert = jbool(o, "invert", false);
        GLLM_TRY(compile_regex(tok, pat, !is_regex, &p->re));
        p->pattern = is_regex ? strdup(pat) : NULL;
    } else if (type && !strcmp(type, "ByteLevel")) {
        p->kind = PRE_BYTELEVEL;
        p->add_prefix_space = jbool(o, "add_prefix_space", true);
        p->behavior = SPLIT_ISOLATED;
        if (jbool(o, "use_regex", true))
            GLLM_TRY(compile_regex(tok, GPT2_PATTERN, false, &p->re));
        tok->byte_level = true;
    } else if (type && !strcmp(type, "Metaspace")) {
        const char *rep = jstr(o, "replacement");
        const char *scheme = jstr(o, "prepend_scheme");
        p->kind = PRE_METASPACE;
        if (!rep || strlen(rep) >= sizeof p->replacement)
            return unsupported(tok, "Metaspace replacement", rep);
        strcpy(p->replacement, rep);
        if (scheme)
            p->prepend = !strcmp(scheme, "always") ? PREPEND_ALWAYS
                         : !strcmp(scheme, "first") ? PREPEND_FIRST
                         : !strcmp(scheme, "never") ? PREPEND_NEVER
                                                    : (tok_prepend_scheme)-1;
        else
            p->prepend = jbool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
        if ((int)p->prepend < 0)
            return unsupported(tok, "Metaspace prepend_scheme", scheme);
        p->split = jbool(o, "split", true);
    } else {
        return unsupported(tok, "pre-tokenizer", type);
    }
    tok->n_pre++;
    return GLLM_OK;
}

static gllm_status special_ids(gllm_tokenizer *tok, const cJSON *specials, const char *name,
                               int32_t *ids, int *n)
{
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(sp, "ids");
    const cJSON *it;
    if (!cJSON_IsArray(arr))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: post_processor special token '%s' has no ids",
                         tok->json_path, name);
    cJSON_ArrayForEach(it, arr) {
        if (*n == TOK_MAX_SPECIAL_IDS)
            return unsupported(tok, "post_processor with more than 8 special ids", name);
        ids[(*n)++] = (int32_t)it->valuedouble;
    }
    return GLLM_OK;
}

static gllm_status load_post(gllm_tokenizer *tok, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return GLLM_OK;
    const char *type = jstr(o, "type");
    const cJSON *it;
    if (type && !strcmp(type, "Sequence")) {
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "processors"))
            GLLM_TRY(load_post(tok, it));
        return GLLM_OK;
    }
    if (type && !strcmp(type, "ByteLevel"))
        return GLLM_OK; /* only trims offsets, ids are unchanged */
    if (type && !strcmp(type, "TemplateProcessing")) {
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
        bool seen_a = false;
        tok->n_prefix = tok->n_suffix = 0;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "single")) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            if (sp) {
                const char *name = jstr(sp, "id");
                if (!name)
                    return gllm_fail(GLLM_ERR_FORMAT, "%s: post_processor SpecialToken without id",
                                     tok->json_path);
                GLLM_TRY(seen_a ? special_ids(tok, specials, name, tok->suffix_ids, &tok->n_suffix)
                                : special_ids(tok, specials, name, tok->prefix_ids, &tok->n_prefix));
            } else if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
                seen_a = true;
            }
        }
        return GLLM_OK;
    }
    if (type && (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(o, "sep");
        if (cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: post_processor %s needs cls and sep pairs",
                             tok->json_path, type);
        tok->prefix_ids[0] = (int32_t)cJSON_GetArrayItem(cls, 1)->valuedouble;
        tok->suffix_ids[0] = (int32_t)cJSON_GetArrayItem(sep, 1)->valuedouble;
        tok->n_prefix = tok->n_suffix = 1;
        return GLLM_OK;
    }
    return unsupported(tok, "post_processor", type);
}

static gllm_status load_decoder(gllm_tokenizer *tok, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return GLLM_OK;
    tok->has_decoder = true;
    const char *type = jstr(o, "type");
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "decoders"))
            GLLM_TRY(load_decoder(tok, it));
        return GLLM_OK;
    }
    if (tok->n_dec == TOK_MAX_DEC)
        return unsupported(tok, "decoder sequence longer than 8, at", type);
    tok_dec *d = &tok->dec[tok->n_dec];
    memset(d, 0, sizeof *d);
    bool is_regex = false;
    if (type && !strcmp(type, "ByteLevel")) {
        d->kind = DEC_BYTELEVEL;
    } else if (type && !strcmp(type, "Replace") && pattern_of(o, &is_regex) && !is_regex &&
               jstr(o, "content")) {
        d->kind = DEC_REPLACE;
        d->a = dupstr(pattern_of(o, &is_regex));
        d->b = dupstr(jstr(o, "content"));
    } else if (type && !strcmp(type, "ByteFallback")) {
        d->kind = DEC_BYTEFALLBACK;
    } else if (type && !strcmp(type, "Fuse")) {
        d->kind = DEC_FUSE;
    } else if (type && !strcmp(type, "Strip") && jstr(o, "content")) {
        d->kind = DEC_STRIP;
        d->a = dupstr(jstr(o, "content"));
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "start");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "stop");
        d->start = cJSON_IsNumber(s) ? s->valueint : 0;
        d->stop = cJSON_IsNumber(e) ? e->valueint : 0;
    } else if (type && !strcmp(type, "Metaspace") && jstr(o, "replacement") &&
               strlen(jstr(o, "replacement")) < sizeof d->replacement) {
        d->kind = DEC_METASPACE;
        strcpy(d->replacement, jstr(o, "replacement"));
        const char *scheme = jstr(o, "prepend_scheme");
        d->prepend = scheme ? (!strcmp(scheme, "never") ? PREPEND_NEVER : PREPEND_ALWAYS)
                            : (jbool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER);
    } else {
        return unsupported(tok, "decoder", is_regex ? "Replace with a Regex pattern" : type);
    }
    tok->n_dec++;
    return GLLM_OK;
}

/* ------------------------------------------------------------ model */
static gllm_status set_token(gllm_tokenizer *tok, int id, const char *s)
{
    if (id < 0 || id >= tok->n_vocab)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: token id %d out of range", tok->json_path, id);
    if (tok->tok_str[id])
        return GLLM_OK;
    tok->tok_str[id] = strdup(s);
    if (!tok->tok_str[id])
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for token strings");
    tok->tok_len[id] = (uint32_t)strlen(s);
    return GLLM_OK;
}

static gllm_status load_merges(gllm_tokenizer *tok, const cJSON *merges)
{
    int n = cJSON_GetArraySize(merges);
    GLLM_TRY(tok_pairmap_init(&tok->merges, (size_t)n));
    char buf[1024];
    uint32_t rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp)
                return gllm_fail(GLLM_ERR_FORMAT, "%s: merge %u '%s' is not 'left right'",
                                 tok->json_path, rank, it->valuestring);
            a = it->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            return gllm_fail(GLLM_ERR_FORMAT, "%s: merge %u is neither a string nor a pair",
                             tok->json_path, rank);
        }
        if (la + lb >= sizeof buf)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: merge %u is too long", tok->json_path, rank);
        int32_t ia = tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, a, la);
        int32_t ib = tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, b, lb);
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t im = tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, buf, la + lb);
        /* A merge whose parts or result are not in the vocab can never apply
         * (GPT-2's file has one, "\u0120Cla ude"); it is skipped but keeps its rank. */
        if (ia >= 0 && ib >= 0 && im >= 0)
            tok_pairmap_put(&tok->merges, ia, ib, rank, im);
        rank++;
    }
    return GLLM_OK;
}

#define MAX_TOKEN_ID (1 << 24)

static bool valid_id(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < MAX_TOKEN_ID &&
           v->valuedouble == (double)(int)v->valuedouble;
}

static gllm_status load_model(gllm_tokenizer *tok, const cJSON *model, const cJSON *added)
{
    const char *type = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (type ? strcmp(type, "BPE") != 0 : !merges)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)",
                         tok->json_path, type ? type : "(no type)");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: BPE model lacks vocab or merges", tok->json_path);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0)
        return unsupported(tok, "BPE option", "dropout");
    const char *cont = jstr(model, "continuing_subword_prefix");
    const char *suffix = jstr(model, "end_of_word_suffix");
    if ((cont && *cont) || (suffix && *suffix))
        return unsupported(tok, "BPE option", cont && *cont ? "continuing_subword_prefix"
                                                            : "end_of_word_suffix");
    /* ids index arrays sized by the largest one: each must be an integer in
     * [0, 2^24), more than any released vocabulary */
    int max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!valid_id(it))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: model.vocab: token '%s' has an id that is not an "
                             "integer in [0, %d)", tok->json_path, it->string, MAX_TOKEN_ID);
        if (it->valueint > max_id)
            max_id = it->valueint;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (id && !valid_id(id))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: added_tokens: an id is not an integer in [0, %d)",
                             tok->json_path, MAX_TOKEN_ID);
        if (id && id->valueint > max_id)
            max_id = id->valueint;
    }
    tok->n_vocab = max_id + 1;
    size_t n = (size_t)tok->n_vocab;
    tok->tok_str = calloc(n, sizeof *tok->tok_str);
    tok->tok_len = calloc(n, sizeof *tok->tok_len);
    tok->is_special = calloc(n, 1);
    tok->is_added = calloc(n, 1);
    unsigned char *not_model = malloc(n);
    if (!tok->tok_str || !tok->tok_len || !tok->is_special || !tok->is_added || !not_model) {
        free(not_model);
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for %zu tokens", n);
    }
    memset(not_model, 1, n);
    gllm_status st = GLLM_OK;
    cJSON_ArrayForEach(it, vocab) {
        if (st == GLLM_OK && (st = set_token(tok, it->valueint, it->string)) == GLLM_OK)
            not_model[it->valueint] = 0;
    }
    if (st == GLLM_OK)
        st = tok_strmap_build(&tok->vocab, tok->tok_str, tok->tok_len, tok->n_vocab, not_model);
    free(not_model);
    GLLM_TRY(st);
    GLLM_TRY(load_merges(tok, merges));
    tok->byte_fallback = jbool(model, "byte_fallback", false);
    tok->fuse_unk = jbool(model, "fuse_unk", false);
    tok->ignore_merges = jbool(model, "ignore_merges", false);
    const char *unk = jstr(model, "unk_token");
    tok->unk_id = unk ? tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, unk, strlen(unk)) : -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_fallback_id[b] = tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, name, 6);
    }
    return GLLM_OK;
}

static gllm_status load_added(gllm_tokenizer *tok, const cJSON *added)
{
    int n = cJSON_GetArraySize(added);
    tok->added = calloc((size_t)n + 1, sizeof *tok->added);
    if (!tok->added)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for added tokens");
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = jstr(it, "content");
        if (!cJSON_IsNumber(id) || !content)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: added_tokens entry without id or content",
                             tok->json_path);
        tok_added *a = &tok->added[tok->n_added++];
        a->content = strdup(content);
        a->len = strlen(content);
        a->id = id->valueint;
        a->special = jbool(it, "special", false);
        a->normalized = jbool(it, "normalized", !a->special);
        a->lstrip = jbool(it, "lstrip", false);
        a->rstrip = jbool(it, "rstrip", false);
        a->single_word = jbool(it, "single_word", false);
        if (!a->content)
            return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for added tokens");
        GLLM_TRY(set_token(tok, a->id, content));
        tok->is_added[a->id] = 1;
        tok->is_special[a->id] = a->special;
    }
    /* With no normalizer, "normalized" tokens match the raw text directly. */
    if (!tok->n_norm)
        for (int i = 0; i < tok->n_added; i++)
            tok->added[i].normalized = false;
    GLLM_TRY(tok_trie_build(&tok->trie_raw, tok->added, tok->n_added, false));
    return tok_trie_build(&tok->trie_norm, tok->added, tok->n_added, true);
}

/* Byte-level tokenizers: each id's raw bytes (ByteLevel inverted), the raw
 * vocab table for ignore_merges, and the id of every single-byte symbol. */
static gllm_status load_raw(gllm_tokenizer *tok)
{
    size_t n = (size_t)tok->n_vocab;
    tok->raw_str = calloc(n, sizeof *tok->raw_str);
    tok->raw_len = calloc(n, sizeof *tok->raw_len);
    unsigned char *skip = calloc(n, 1);
    gllm_status st = GLLM_OK;
    if (!tok->raw_str || !tok->raw_len || !skip)
        st = gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for byte-level tables");
    for (size_t id = 0; st == GLLM_OK && id < n; id++) {
        const char *s = tok->tok_str[id];
        if (!s) {
            skip[id] = 1;
            continue;
        }
        char *raw = malloc(tok->tok_len[id] + 1);
        if (!raw) {
            st = gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for byte-level tables");
            break;
        }
        size_t k = 0;
        bool all = true;
        for (uint32_t i = 0; i < tok->tok_len[id] && all;) {
            int cl;
            int b = tok_cp_to_byte(tok_utf8_decode((const unsigned char *)s + i, &cl));
            all = b >= 0;
            raw[k++] = (char)b;
            i += (uint32_t)cl;
        }
        if (!all) { /* not a byte-level string: decodes as itself */
            memcpy(raw, s, tok->tok_len[id]);
            k = tok->tok_len[id];
            skip[id] = 1;
        }
        skip[id] |= tok->is_added[id];
        raw[k] = '\0';
        tok->raw_str[id] = raw;
        tok->raw_len[id] = (uint32_t)k;
    }
    if (st == GLLM_OK)
        st = tok_strmap_build(&tok->raw_vocab, tok->raw_str, tok->raw_len, tok->n_vocab, skip);
    free(skip);
    GLLM_TRY(st);
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = tok_utf8_encode(tok_byte_to_cp[b], u);
        tok->byte_id[b] = tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, u, (size_t)l);
    }
    return GLLM_OK;
}

/* ------------------------------------------------------------ tokenizer_config.json */
/* A special token as the config names it: a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v))
        return v->valuestring;
    return jstr(v, "content");
}

static int token_id(const gllm_tokenizer *tok, const char *s)
{
    return s ? gllm_tok_token_id(tok, s) : -1;
}

static void load_config_root(gllm_tokenizer *tok, const cJSON *cfg)
{
    tok->bos_str = dupstr(config_token(cfg, "bos_token"));
    tok->eos_str = dupstr(config_token(cfg, "eos_token"));
    const char *pad = config_token(cfg, "pad_token");
    tok->pad_id = token_id(tok, pad);
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(tpl)) {
        tok->chat_template = dupstr(tpl->valuestring);
    } else if (cJSON_IsArray(tpl)) { /* named templates: take "default" */
        const cJSON *it;
        cJSON_ArrayForEach(it, tpl) if (jstr(it, "name") && !strcmp(jstr(it, "name"), "default"))
            tok->chat_template = dupstr(jstr(it, "template"));
    }
    /* transformers rebuilds the post-processor of Llama-style tokenizers from
     * add_bos_token/add_eos_token (LlamaTokenizerFast.update_post_processor). */
    const char *cls = jstr(cfg, "tokenizer_class");
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    bool llama = cls && (!strncmp(cls, "LlamaTokenizer", 14) || !strncmp(cls, "CodeLlamaTokenizer", 18) ||
                         !strncmp(cls, "GemmaTokenizer", 14));
    if (llama && (cJSON_IsBool(ab) || cJSON_IsBool(ae))) {
        int bos = token_id(tok, tok->bos_str), eos = token_id(tok, tok->eos_str);
        tok->n_prefix = tok->n_suffix = 0;
        if (jbool(cfg, "add_bos_token", true) && bos >= 0)
            tok->prefix_ids[tok->n_prefix++] = bos;
        if (jbool(cfg, "add_eos_token", false) && eos >= 0)
            tok->suffix_ids[tok->n_suffix++] = eos;
    }
}

static gllm_status load_config(gllm_tokenizer *tok, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return GLLM_OK;
    cJSON *cfg;
    GLLM_TRY(gllm_json_read_file(path, &cfg));
    load_config_root(tok, cfg);
    cJSON_Delete(cfg);
    return GLLM_OK;
}

/* ------------------------------------------------------------ entry points */
static gllm_status load_root(gllm_tokenizer *tok, const cJSON *j)
{
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(j, "truncation");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(j, "padding");
    gllm_status st = GLLM_OK;
    if ((trunc && !cJSON_IsNull(trunc)) || (pad && !cJSON_IsNull(pad)))
        st = unsupported(tok, "setting", trunc && !cJSON_IsNull(trunc) ? "truncation" : "padding");
    if (st == GLLM_OK)
        st = load_normalizer(tok, cJSON_GetObjectItemCaseSensitive(j, "normalizer"));
    if (st == GLLM_OK)
        st = load_pre(tok, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"));
    if (st == GLLM_OK)
        st = load_post(tok, cJSON_GetObjectItemCaseSensitive(j, "post_processor"));
    if (st == GLLM_OK)
        st = load_decoder(tok, cJSON_GetObjectItemCaseSensitive(j, "decoder"));
    if (st == GLLM_OK)
        st = load_model(tok, cJSON_GetObjectItemCaseSensitive(j, "model"), added);
    if (st == GLLM_OK)
        st = load_added(tok, added);
    if (st == GLLM_OK && tok->byte_level)
        st = load_raw(tok);
    return st;
}

static gllm_status load_json(gllm_tokenizer *tok)
{
    cJSON *j;
    GLLM_TRY(gllm_json_read_file(tok->json_path, &j));
    gllm_status st = load_root(tok, j);
    cJSON_Delete(j);
    return st;
}

static gllm_tokenizer *tok_new(void)
{
    pthread_once(&g_bytelevel_once, tok_bytelevel_init);
    gllm_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return NULL;
    tok->serial = atomic_fetch_add(&g_serial, 1);
    tok->bos_id = tok->eos_id = tok->pad_id = -1;
    return tok;
}

/* bos/eos ids from their strings once everything is loaded */
static void finish_specials(gllm_tokenizer *tok)
{
    tok->bos_id = token_id(tok, tok->bos_str);
    tok->eos_id = token_id(tok, tok->eos_str);
    if (!tok->bos_str && !tok->eos_str) {
        /* GPT-2's config names no specials; transformers defaults both to
         * <|endoftext|> */
        int id = gllm_tok_token_id(tok, "<|endoftext|>");
        if (id >= 0 && tok->is_special[id])
            tok->bos_id = tok->eos_id = id;
    }
}

gllm_status tok_load_objects(const char *path, const cJSON *tokenizer_json, const cJSON *config,
                             gllm_tokenizer **out)
{
    *out = NULL;
    gllm_tokenizer *tok = tok_new();
    if (!tok)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    const char *slash = strrchr(path, '/');
    tok->json_path = strdup(path);
    tok->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    gllm_status s = tok->dir && tok->json_path ? load_root(tok, tokenizer_json)
                                               : gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    if (s != GLLM_OK) {
        gllm_tok_free(tok);
        return s;
    }
    if (config)
        load_config_root(tok, config);
    finish_specials(tok);
    *out = tok;
    return GLLM_OK;
}

gllm_status gllm_tok_load(const char *path, gllm_tokenizer **out)
{
    *out = NULL;
    size_t plen = strlen(path);
    if (plen > 5 && strcmp(path + plen - 5, ".gguf") == 0)
        return tok_load_gguf(path, out);
    gllm_tokenizer *tok = tok_new();
    if (!tok)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    struct stat st;
    size_t pl = strlen(path);
    char *buf = malloc(pl + 32);
    if (!buf) {
        free(tok);
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        tok->dir = strdup(path);
        snprintf(buf, pl + 32, "%s/tokenizer.json", path);
        tok->json_path = strdup(buf);
    } else {
        tok->json_path = strdup(path);
        const char *slash = strrchr(path, '/');
        tok->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    }
    gllm_status s = tok->dir && tok->json_path ? load_json(tok)
                                               : gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory");
    if (s == GLLM_OK) {
        snprintf(buf, pl + 32, "%s/tokenizer_config.json", tok->dir);
        s = load_config(tok, buf);
    }
    free(buf);
    if (s != GLLM_OK) {
        gllm_tok_free(tok);
        return s;
    }
    finish_specials(tok);
    *out = tok;
    return GLLM_OK;
}

void gllm_tok_free(gllm_tokenizer *tok)
{
    if (!tok)
        return;
    tok_thread_release(tok);
    for (int i = 0; tok->tok_str && i < tok->n_vocab; i++) {
        free(tok->tok_str[i]);
        if (tok->raw_str)
            free(tok->raw_str[i]);
    }
    free(tok->tok_str);
    free(tok->tok_len);
    free(tok->raw_str);
    free(tok->raw_len);
    tok_strmap_free(&tok->vocab);
    tok_strmap_free(&tok->raw_vocab);
    tok_pairmap_free(&tok->merges);
    for (int i = 0; i < tok->n_norm; i++) {
        free(tok->norm[i].a);
        free(tok->norm[i].b);
    }
    for (int i = 0; i < tok->n_pre; i++) {
        if (tok->pre[i].re)
            pcre2_code_free(tok->pre[i].re);
        free(tok->pre[i].pattern);
    }
    for (int i = 0; i < tok->n_dec; i++) {
        free(tok->dec[i].a);
        free(tok->dec[i].b);
    }
    for (int i = 0; i < tok->n_added; i++)
        free(tok->added[i].content);
    free(tok->added);
    free(tok->is_special);
    free(tok->is_added);
    tok_trie_free(&tok->trie_raw);
    tok_trie_free(&tok->trie_norm);
    free(tok->bos_str);
    free(tok->eos_str);
    free(tok->chat_template);
    free(tok->dir);
    free(tok->json_path);
    free(tok);
}
