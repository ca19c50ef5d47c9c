/* Encoding: added-token split, normalizers, pre-tokenizers, BPE, and the
 * post-processor's special tokens, in the order HF's TokenizerImpl applies them. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* Every stage below also passes `first`: whether the piece starts the whole
 * input (HF's offsets_original().0 == 0, which Metaspace's prepend_scheme
 * "first" tests). */
typedef struct {
    const gllm_tokenizer *tok;
    tok_ids *out;
} enc_ctx;

static gllm_status pre_stage(enc_ctx *e, int k, const char *s, size_t n, bool first);

static bool is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* ------------------------------------------------------------ pre-tokenizers */
/* A piece under construction for the merging split behaviours. */
typedef struct {
    size_t a, b;
    int kind; /* 0 none, 1 text between delimiters, 2 delimiter */
} pending;

static gllm_status flush(enc_ctx *e, int k, pending *c, const char *s, bool first)
{
    gllm_status st = GLLM_OK;
    if (c->kind)
        st = pre_stage(e, k + 1, s + c->a, c->b - c->a, first && c->a == 0);
    c->kind = 0;
    return st;
}

/* One segment of s, a delimiter (regex match, or gap when inverted) or not,
 * placed as HF's SplitDelimiterBehavior says. */
static gllm_status segment(enc_ctx *e, int k, const tok_pre *p, pending *c, const char *s,
                           size_t a, size_t b, bool delim, bool first)
{
    if (a >= b)
        return GLLM_OK;
    pending seg = {a, b, delim ? 2 : 1};
    switch (p->behavior) {
    case SPLIT_ISOLATED:
        return flush(e, k, &seg, s, first);
    case SPLIT_REMOVED:
        return delim ? GLLM_OK : flush(e, k, &seg, s, first);
    case SPLIT_MERGED_PREV:
        if (!delim) {
            GLLM_TRY(flush(e, k, c, s, first));
            *c = seg;
            return GLLM_OK;
        }
        if (c->kind)
            c->b = b;
        else
            *c = seg;
        return flush(e, k, c, s, first);
    case SPLIT_MERGED_NEXT:
        if (delim) {
            GLLM_TRY(flush(e, k, c, s, first));
            *c = seg;
            return GLLM_OK;
        }
        if (c->kind) {
            c->b = b;
            return flush(e, k, c, s, first);
        }
        return flush(e, k, &seg, s, first);
    case SPLIT_CONTIGUOUS:
        if (delim && c->kind) {
            c->b = b;
            return GLLM_OK;
        }
        GLLM_TRY(flush(e, k, c, s, first));
        if (delim) {
            *c = seg;
            return GLLM_OK;
        }
        return flush(e, k, &seg, s, first);
    }
    return GLLM_OK;
}

static gllm_status split_regex(enc_ctx *e, int k, const tok_pre *p, const char *s, size_t n,
                               bool first)
{
    pcre2_match_data *md = tok_thread_match_data();
    if (!md)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for regex match data");
    pending cur = {0, 0, 0};
    size_t pos = 0, last = 0;
    while (pos < n) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return gllm_fail(GLLM_ERR_INVALID, "%s: pre-tokenizer regex failed (PCRE2 error %d)",
                             e->tok->json_path, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ma = ov[0], mb = ov[1];
        if (mb == ma) { /* an empty match splits nothing: step one character */
            pos = ma + (size_t)tok_utf8_len((unsigned char)s[ma]);
            continue;
        }
        GLLM_TRY(segment(e, k, p, &cur, s, last, ma, p->invert, first));
        GLLM_TRY(segment(e, k, p, &cur, s, ma, mb, !p->invert, first));
        last = pos = mb;
    }
    GLLM_TRY(segment(e, k, p, &cur, s, last, n, p->invert, first));
    return flush(e, k, &cur, s, first);
}

static gllm_status metaspace(enc_ctx *e, int k, const tok_pre *p, const char *s, size_t n,
                             bool first)
{
    size_t rl = strlen(p->replacement);
    tok_str b = {0};
    gllm_status st = GLLM_OK;
    bool starts = n >= rl && !memcmp(s, p->replacement, rl);
    bool starts_space = n && s[0] == ' ';
    if (!starts && !starts_space &&
        (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && first)))
        st = tok_str_append(&b, p->replacement, rl);
    for (size_t i = 0; st == GLLM_OK && i < n; i++)
        st = s[i] == ' ' ? tok_str_append(&b, p->replacement, rl) : tok_str_append(&b, s + i, 1);
    if (st == GLLM_OK && n) {
        if (!p->split) {
            st = pre_stage(e, k + 1, b.s, b.n, first);
        } else { /* split on the replacement, each piece keeping it in front */
            size_t a = 0;
            for (size_t i = rl; st == GLLM_OK && i + rl <= b.n; i++) {
                if (!memcmp(b.s + i, p->replacement, rl)) {
                    st = pre_stage(e, k + 1, b.s + a, i - a, first && a == 0);
                    a = i;
                }
            }
            if (st == GLLM_OK)
                st = pre_stage(e, k + 1, b.s + a, b.n - a, first && a == 0);
        }
    }
    free(b.s);
    return st;
}

static gllm_status bytelevel(enc_ctx *e, int k, const tok_pre *p, const char *s, size_t n,
                             bool first)
{
    tok_str b = {0};
    if (p->add_prefix_space && n && s[0] != ' ') {
        GLLM_TRY(tok_str_append(&b, " ", 1));
        gllm_status st = tok_str_append(&b, s, n);
        if (st == GLLM_OK)
            st = p->re ? split_regex(e, k, p, b.s, b.n, first) : pre_stage(e, k + 1, b.s, b.n, first);
        free(b.s);
        return st;
    }
    return p->re ? split_regex(e, k, p, s, n, first) : pre_stage(e, k + 1, s, n, first);
}

static gllm_status pre_stage(enc_ctx *e, int k, const char *s, size_t n, bool first)
{
    if (!n)
        return GLLM_OK;
    if (k == e->tok->n_pre)
        return tok_bpe_word(e->tok, s, n, e->out);
    const tok_pre *p = &e->tok->pre[k];
    switch (p->kind) {
    case PRE_SPLIT: return split_regex(e, k, p, s, n, first);
    case PRE_METASPACE: return metaspace(e, k, p, s, n, first);
    case PRE_BYTELEVEL: return bytelevel(e, k, p, s, n, first);
    }
    return GLLM_OK;
}

/* ------------------------------------------------------------ normalizers */
static gllm_status normalize(const gllm_tokenizer *tok, const char *s, size_t n, tok_str *out)
{
    tok_str tmp = {0};
    gllm_status st = tok_str_append(out, s, n);
    for (int i = 0; st == GLLM_OK && i < tok->n_norm; i++) {
        const tok_norm *m = &tok->norm[i];
        tmp.n = 0;
        switch (m->kind) {
        case NORM_PREPEND:
            if (!out->n)
                continue;
            st = tok_str_append(&tmp, m->a, strlen(m->a));
            if (st == GLLM_OK)
                st = tok_str_append(&tmp, out->s, out->n);
            break;
        case NORM_REPLACE: {
            size_t pl = strlen(m->a), rl = strlen(m->b), a = 0;
            st = tok_str_append(&tmp, "", 0);
            for (size_t j = 0; st == GLLM_OK && pl && j + pl <= out->n;) {
                if (!memcmp(out->s + j, m->a, pl)) {
                    st = tok_str_append(&tmp, out->s + a, j - a);
                    if (st == GLLM_OK)
                        st = tok_str_append(&tmp, m->b, rl);
                    j += pl;
                    a = j;
                } else {
                    j++;
                }
            }
            if (st == GLLM_OK)
                st = tok_str_append(&tmp, out->s + a, out->n - a);
            break;
        }
        case NORM_NFC:
            if (tok_nfc_quick_yes(out->s, out->n))
                continue;
            st = tok_nfc(out->s, out->n, &tmp);
            break;
        }
        if (st == GLLM_OK) {
            tok_str swap = *out;
            *out = tmp;
            tmp = swap;
        }
    }
    free(tmp.s);
    return st;
}

/* ------------------------------------------------------------ added tokens */
typedef gllm_status (*piece_fn)(enc_ctx *e, const char *s, size_t n, bool first);

static bool word_byte(unsigned char c)
{
    return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
}

/* Split s on the trie's added tokens; text between them goes to fn, each
 * token's id straight to the output. lstrip/rstrip eat the whitespace beside
 * a token; single_word tokens only match outside words. */
static gllm_status split_added(enc_ctx *e, const tok_trie *trie, const char *s, size_t n,
                               bool first, piece_fn fn)
{
    const gllm_tokenizer *tok = e->tok;
    size_t from = 0, text_start = 0, ms, me;
    int a;
    while ((a = tok_trie_find(trie, s, n, from, &ms, &me)) >= 0) {
        const tok_added *t = &tok->added[a];
        if (t->single_word && ((ms > 0 && word_byte((unsigned char)s[ms - 1])) ||
                               (me < n && word_byte((unsigned char)s[me])))) {
            from = me;
            continue;
        }
        size_t gap_end = ms;
        if (t->lstrip)
            while (gap_end > text_start && is_ws((unsigned char)s[gap_end - 1]))
                gap_end--;
        GLLM_TRY(fn(e, s + text_start, gap_end - text_start, first && text_start == 0));
        GLLM_TRY(tok_ids_push(e->out, t->id));
        if (t->rstrip)
            while (me < n && is_ws((unsigned char)s[me]))
                me++;
        text_start = from = me;
    }
    return fn(e, s + text_start, n - text_start, first && text_start == 0);
}

static gllm_status normalized_piece(enc_ctx *e, const char *s, size_t n, bool first)
{
    return pre_stage(e, 0, s, n, first);
}

static gllm_status raw_piece(enc_ctx *e, const char *s, size_t n, bool first)
{
    const gllm_tokenizer *tok = e->tok;
    if (!n)
        return GLLM_OK;
    bool identity = !tok->n_norm ||
                    (tok->n_norm == 1 && tok->norm[0].kind == NORM_NFC && tok_nfc_quick_yes(s, n));
    if (identity && tok->trie_norm.empty)
        return pre_stage(e, 0, s, n, first);
    tok_str b = {0};
    gllm_status st = identity ? tok_str_append(&b, s, n) : normalize(tok, s, n, &b);
    if (st == GLLM_OK)
        st = split_added(e, &tok->trie_norm, b.s, b.n, first, normalized_piece);
    free(b.s);
    return st;
}

gllm_status gllm_tok_encode(const gllm_tokenizer *tok, const char *text, size_t len,
                            bool add_special, int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (!tok || (!text && len))
        return gllm_fail(GLLM_ERR_INVALID, "gllm_tok_encode: NULL tokenizer or text");
    tok_ids out = {0};
    tok_str clean = {0};
    enc_ctx e = {tok, &out};
    gllm_status st = GLLM_OK;
    if (!tok_utf8_valid(text, len)) {
        st = tok_utf8_sanitize(text, len, &clean);
        text = clean.s;
        len = clean.n;
    }
    if (st == GLLM_OK && add_special)
        st = tok_ids_append(&out, tok->prefix_ids, (size_t)tok->n_prefix);
    if (st == GLLM_OK)
        st = split_added(&e, &tok->trie_raw, text, len, true, raw_piece);
    if (st == GLLM_OK && add_special)
        st = tok_ids_append(&out, tok->suffix_ids, (size_t)tok->n_suffix);
    free(clean.s);
    if (st == GLLM_OK && !out.v)
        st = tok_ids_append(&out, NULL, 0);
    if (st != GLLM_OK) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return GLLM_OK;
}
