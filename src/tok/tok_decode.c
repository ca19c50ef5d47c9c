/* Decoding (HF's decoder chain over the token strings) and accessors. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

typedef struct {
    tok_str *t;
    size_t n;
} tok_list;

static void list_free(tok_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->t[i].s);
    free(l->t);
    l->t = NULL;
    l->n = 0;
}

/* Replace the list by one token holding the concatenation of `parts`. */
static gllm_status list_set_one(tok_list *l, tok_str *one)
{
    list_free(l);
    l->t = malloc(sizeof *l->t);
    if (!l->t) {
        free(one->s);
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory while decoding");
    }
    l->t[0] = *one;
    l->n = 1;
    return GLLM_OK;
}

static gllm_status dec_bytelevel(tok_list *l)
{
    tok_str bytes = {0}, out = {0};
    gllm_status st = tok_str_append(&bytes, "", 0);
    for (size_t i = 0; st == GLLM_OK && i < l->n; i++) {
        const tok_str *t = &l->t[i];
        size_t mark = bytes.n;
        bool all = true;
        for (size_t k = 0; all && k < t->n;) {
            int cl;
            int b = tok_cp_to_byte(tok_utf8_decode((const unsigned char *)t->s + k, &cl));
            all = b >= 0;
            char c = (char)b;
            if (all)
                st = tok_str_append(&bytes, &c, 1);
            k += (size_t)cl;
        }
        if (!all) { /* a token outside the byte table stands for itself */
            bytes.n = mark;
            st = tok_str_append(&bytes, t->s, t->n);
        }
    }
    if (st == GLLM_OK)
        st = tok_utf8_sanitize(bytes.s, bytes.n, &out);
    free(bytes.s);
    if (st != GLLM_OK) {
        free(out.s);
        return st;
    }
    return list_set_one(l, &out);
}

static gllm_status replace_all(tok_str *t, const char *a, const char *b)
{
    size_t al = strlen(a), bl = strlen(b), last = 0;
    tok_str out = {0};
    gllm_status st = tok_str_append(&out, "", 0);
    for (size_t i = 0; st == GLLM_OK && al && i + al <= t->n;) {
        if (!memcmp(t->s + i, a, al)) {
            st = tok_str_append(&out, t->s + last, i - last);
            if (st == GLLM_OK)
                st = tok_str_append(&out, b, bl);
            i += al;
            last = i;
        } else {
            i++;
        }
    }
    if (st == GLLM_OK)
        st = tok_str_append(&out, t->s + last, t->n - last);
    if (st != GLLM_OK) {
        free(out.s);
        return st;
    }
    free(t->s);
    *t = out;
    return GLLM_OK;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Runs of <0xXX> tokens become their bytes when those form valid UTF-8, else
 * one U+FFFD per byte (HF's ByteFallback). */
static gllm_status dec_bytefallback(tok_list *l)
{
    tok_list out = {calloc(l->n + 1, sizeof(tok_str)), 0};
    tok_str run = {0};
    gllm_status st = out.t ? GLLM_OK : gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory while decoding");
    for (size_t i = 0; st == GLLM_OK && i <= l->n; i++) {
        const tok_str *t = i < l->n ? &l->t[i] : NULL;
        if (t && t->n == 6 && !memcmp(t->s, "<0x", 3) && t->s[5] == '>' && hexval(t->s[3]) >= 0 &&
            hexval(t->s[4]) >= 0) {
            char b = (char)(hexval(t->s[3]) * 16 + hexval(t->s[4]));
            st = tok_str_append(&run, &b, 1);
            continue;
        }
        if (run.n) {
            tok_str *o = &out.t[out.n++];
            if (tok_utf8_valid(run.s, run.n)) {
                st = tok_str_append(o, run.s, run.n);
            } else {
                for (size_t k = 0; st == GLLM_OK && k < run.n; k++)
                    st = tok_str_append(o, "\xEF\xBF\xBD", 3);
            }
            run.n = 0;
        }
        if (t && st == GLLM_OK)
            st = tok_str_append(&out.t[out.n++], t->s, t->n);
    }
    free(run.s);
    if (st != GLLM_OK) {
        list_free(&out);
        return st;
    }
    list_free(l);
    *l = out;
    return GLLM_OK;
}

static gllm_status dec_fuse(tok_list *l)
{
    tok_str one = {0};
    gllm_status st = tok_str_append(&one, "", 0);
    for (size_t i = 0; st == GLLM_OK && i < l->n; i++)
        st = tok_str_append(&one, l->t[i].s, l->t[i].n);
    if (st != GLLM_OK) {
        free(one.s);
        return st;
    }
    return list_set_one(l, &one);
}

static void dec_strip(tok_list *l, const tok_dec *d)
{
    size_t cl = strlen(d->a);
    for (size_t i = 0; i < l->n; i++) {
        tok_str *t = &l->t[i];
        size_t a = 0, b = t->n;
        for (int k = 0; k < d->start && a + cl <= b && !memcmp(t->s + a, d->a, cl); k++)
            a += cl;
        for (int k = 0; k < d->stop && b >= a + cl && !memcmp(t->s + b - cl, d->a, cl); k++)
            b -= cl;
        memmove(t->s, t->s + a, b - a);
        t->n = b - a;
        if (t->s)
            t->s[t->n] = '\0';
    }
}

static gllm_status dec_metaspace(tok_list *l, const tok_dec *d)
{
    for (size_t i = 0; i < l->n; i++) {
        /* the first token drops every replacement char (HF Metaspace::decode_chain) */
        GLLM_TRY(replace_all(&l->t[i], d->replacement,
                             i == 0 && d->prepend != PREPEND_NEVER ? "" : " "));
    }
    return GLLM_OK;
}

gllm_status gllm_tok_decode(const gllm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                            bool skip_special, char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    tok_list l = {calloc(n_ids + 1, sizeof(tok_str)), 0};
    if (!l.t)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory while decoding");
    gllm_status st = GLLM_OK;
    for (size_t i = 0; st == GLLM_OK && i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_vocab || !tok->tok_str[id]) {
            st = gllm_fail(GLLM_ERR_INVALID, "%s: cannot decode id %d at position %zu (vocab size %d)",
                           tok->json_path, id, i, tok->n_vocab);
            break;
        }
        if (skip_special && tok->is_special[id])
            continue;
        st = tok_str_append(&l.t[l.n++], tok->tok_str[id], tok->tok_len[id]);
    }
    for (int k = 0; st == GLLM_OK && k < tok->n_dec; k++) {
        const tok_dec *d = &tok->dec[k];
        switch (d->kind) {
        case DEC_BYTELEVEL: st = dec_bytelevel(&l); break;
        case DEC_REPLACE:
            for (size_t i = 0; st == GLLM_OK && i < l.n; i++)
                st = replace_all(&l.t[i], d->a, d->b);
            break;
        case DEC_BYTEFALLBACK: st = dec_bytefallback(&l); break;
        case DEC_FUSE: st = dec_fuse(&l); break;
        case DEC_STRIP: dec_strip(&l, d); break;
        case DEC_METASPACE: st = dec_metaspace(&l, d); break;
        }
    }
    tok_str out = {0};
    if (st == GLLM_OK)
        st = tok_str_append(&out, "", 0);
    for (size_t i = 0; st == GLLM_OK && i < l.n; i++) {
        if (i && !tok->has_decoder)
            st = tok_str_append(&out, " ", 1);
        if (st == GLLM_OK)
            st = tok_str_append(&out, l.t[i].s, l.t[i].n);
    }
    list_free(&l);
    if (st != GLLM_OK) {
        free(out.s);
        return st;
    }
    *text = out.s;
    if (len)
        *len = out.n;
    return GLLM_OK;
}

/* ------------------------------------------------------------ accessors */
int gllm_tok_vocab_size(const gllm_tokenizer *tok) { return tok->n_vocab; }
int gllm_tok_bos_id(const gllm_tokenizer *tok) { return tok->bos_id; }
int gllm_tok_eos_id(const gllm_tokenizer *tok) { return tok->eos_id; }
int gllm_tok_pad_id(const gllm_tokenizer *tok) { return tok->pad_id; }
const char *gllm_tok_chat_template(const gllm_tokenizer *tok) { return tok->chat_template; }
const char *gllm_tok_dir(const gllm_tokenizer *tok) { return tok->dir; }
bool gllm_tok_is_special(const gllm_tokenizer *tok, int id)
{
    return id >= 0 && id < tok->n_vocab && tok->is_special[id];
}
void gllm_tok_thread_cleanup(void) { tok_thread_release(NULL); }
const char *gllm_tok_bos_str(const gllm_tokenizer *tok) { return tok->bos_str; }
const char *gllm_tok_eos_str(const gllm_tokenizer *tok) { return tok->eos_str; }

int gllm_tok_token_id(const gllm_tokenizer *tok, const char *token)
{
    size_t n = strlen(token);
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && !memcmp(tok->added[i].content, token, n))
            return tok->added[i].id;
    return tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, token, n);
}

const char *gllm_tok_token_str(const gllm_tokenizer *tok, int id)
{
    return id >= 0 && id < tok->n_vocab ? tok->tok_str[id] : NULL;
}
