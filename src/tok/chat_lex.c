/* Lexer of the chat-template Jinja subset. It reproduces the whitespace rules
 * transformers' environment asks of Jinja: trim_blocks (drop the newline after
 * a block or comment tag), lstrip_blocks (drop spaces/tabs between a line
 * start and a block or comment tag), the explicit {%- -%} {{- -}} {#- -#}
 * markers, newline normalisation and the removal of one trailing newline
 * (keep_trailing_newline=False). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat_jinja.h"


typedef struct lexer {
    const char *src;
    size_t n, p;
    int line;
    jarena *arena;
    jtoken *toks;
    size_t ntok, cap;
} lexer;

static gllm_status push_tok(lexer *L, jtkind k, const char *s, size_t n, long long ival, int line)
{
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        jtoken *t = realloc(L->toks, cap * sizeof *t);
        if (!t)
            return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory lexing");
        L->toks = t;
        L->cap = cap;
    }
    L->toks[L->ntok++] = (jtoken){k, line, s, n, ival};
    return GLLM_OK;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Copy with \r\n and \r turned into \n (Jinja normalises template newlines). */
static char *norm_newlines(jarena *a, const char *s, size_t n, size_t *out_n)
{
    char *d = gllm_jarena_alloc(a, n + 1);
    if (!d)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            d[j++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n')
                i++;
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = '\0';
    *out_n = j;
    return d;
}

static void put_utf8(char *d, size_t *j, unsigned cp)
{
    if (cp < 0x80) {
        d[(*j)++] = (char)cp;
    } else if (cp < 0x800) {
        d[(*j)++] = (char)(0xC0 | (cp >> 6));
        d[(*j)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        d[(*j)++] = (char)(0xE0 | (cp >> 12));
        d[(*j)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[(*j)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        d[(*j)++] = (char)(0xF0 | (cp >> 18));
        d[(*j)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        d[(*j)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[(*j)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hexval(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string literal from L->p (at the quote): Python escapes, as Jinja decodes
 * them; an unknown escape keeps its backslash. */
static gllm_status lex_string(lexer *L)
{
    char q = L->src[L->p];
    int line = L->line;
    size_t start = ++L->p;
    while (L->p < L->n && L->src[L->p] != q) {
        if (L->src[L->p] == '\\' && L->p + 1 < L->n)
            L->p++;
        if (L->src[L->p] == '\n')
            L->line++;
        L->p++;
    }
    if (L->p >= L->n)
        return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: unterminated string", line);
    size_t raw_n;
    char *raw = norm_newlines(L->arena, L->src + start, L->p - start, &raw_n);
    char *d = gllm_jarena_alloc(L->arena, raw_n + 1);
    if (!raw || !d)
        return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
    size_t j = 0;
    for (size_t i = 0; i < raw_n; i++) {
        if (raw[i] != '\\' || i + 1 >= raw_n) {
            d[j++] = raw[i];
            continue;
        }
        char c = raw[++i];
        switch (c) {
        case 'n': d[j++] = '\n'; break;
        case 't': d[j++] = '\t'; break;
        case 'r': d[j++] = '\r'; break;
        case '0': d[j++] = '\0'; break;
        case '\\': case '\'': case '"': d[j++] = c; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            unsigned cp = 0;
            int k = 0;
            for (; k < nd && i + 1 + k < raw_n && hexval(raw[i + 1 + k]) >= 0; k++)
                cp = cp * 16 + (unsigned)hexval(raw[i + 1 + k]);
            if (k != nd)
                return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: bad \\%c escape", line, c);
            i += (size_t)nd;
            put_utf8(d, &j, cp);
            break;
        }
        default:
            d[j++] = '\\';
            d[j++] = c;
        }
    }
    d[j] = '\0';
    L->p++;
    return push_tok(L, T_STR, d, j, 0, line);
}

/* Tokens of one {{ }} or {% %} tag; sets *strip_after for a '-' close. */
static gllm_status lex_tag(lexer *L, char close, bool *strip_after)
{
    static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
    int depth = 0;
    for (;;) {
        while (L->p < L->n && is_space(L->src[L->p])) {
            if (L->src[L->p] == '\n')
                L->line++;
            L->p++;
        }
        if (L->p >= L->n)
            return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: unclosed tag", L->line);
        const char *s = L->src + L->p;
        size_t left = L->n - L->p;
        if (depth == 0) {
            if (left >= 3 && s[0] == '-' && s[1] == close && s[2] == '}') {
                L->p += 3;
                *strip_after = true;
                return GLLM_OK;
            }
            if (left >= 2 && s[0] == close && s[1] == '}') {
                L->p += 2;
                *strip_after = false;
                return GLLM_OK;
            }
        }
        if (*s == '\'' || *s == '"') {
            GLLM_TRY(lex_string(L));
        } else if (is_name0(*s)) {
            size_t k = 1;
            while (k < left && (is_name0(s[k]) || is_digit(s[k])))
                k++;
            GLLM_TRY(push_tok(L, T_NAME, s, k, 0, L->line));
            L->p += k;
        } else if (is_digit(*s)) {
            size_t k = 0;
            long long v = 0;
            while (k < left && (is_digit(s[k]) || s[k] == '_')) {
                if (s[k] != '_')
                    v = v * 10 + (s[k] - '0');
                k++;
            }
            if (k < left && (s[k] == '.' || s[k] == 'e' || s[k] == 'E') && k + 1 < left && is_digit(s[k + 1]))
                return gllm_fail(GLLM_ERR_UNSUPPORTED,
                                 "chat template line %d: unsupported construct: float literal" JINJA_HINT,
                                 L->line);
            GLLM_TRY(push_tok(L, T_INT, s, k, v, L->line));
            L->p += k;
        } else {
            size_t k = 1;
            for (size_t i = 0; i < sizeof ops2 / sizeof *ops2; i++)
                if (left >= 2 && s[0] == ops2[i][0] && s[1] == ops2[i][1])
                    k = 2;
            if (k == 1 && !strchr("+-*/%~()[]{},.:|=<>", *s))
                return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: unexpected character '%c'",
                                 L->line, *s);
            if (*s == '{')
                depth++;
            else if (*s == '}')
                depth--;
            GLLM_TRY(push_tok(L, T_OP, s, k, 0, L->line));
            L->p += k;
        }
    }
}

static gllm_status lex_all(lexer *L)
{
    bool strip_next = false; /* a '-' close strips the following text */
    bool trim_nl = false;    /* trim_blocks: a block/comment close drops one '\n' */
    while (L->p < L->n) {
        size_t q = L->p;
        while (q + 1 < L->n && !(L->src[q] == '{' && strchr("{%#", L->src[q + 1])))
            q++;
        if (q + 1 >= L->n)
            q = L->n;
        size_t ts = L->p, te = q;
        if (strip_next)
            while (ts < te && is_space(L->src[ts]))
                ts++;
        else if (trim_nl && ts < te && L->src[ts] == '\n')
            ts++;
        else if (trim_nl && ts + 1 < te && L->src[ts] == '\r' && L->src[ts + 1] == '\n')
            ts += 2;
        char kind = q < L->n ? L->src[q + 1] : 0;
        bool minus = q + 2 < L->n && L->src[q + 2] == '-';
        bool plus = q + 2 < L->n && L->src[q + 2] == '+';
        if (kind && minus) {
            while (te > ts && is_space(L->src[te - 1]))
                te--;
        } else if ((kind == '%' || kind == '#') && !plus) {
            size_t j = te;
            while (j > ts && (L->src[j - 1] == ' ' || L->src[j - 1] == '\t'))
                j--;
            if ((j > ts && L->src[j - 1] == '\n') || (j == ts && (j == 0 || L->src[j - 1] == '\n')))
                te = j;
        }
        int text_line = L->line;
        for (size_t i = L->p; i < q; i++)
            if (L->src[i] == '\n')
                L->line++;
        if (te > ts) {
            size_t nn;
            char *txt = norm_newlines(L->arena, L->src + ts, te - ts, &nn);
            if (!txt)
                return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
            GLLM_TRY(push_tok(L, T_TEXT, txt, nn, 0, text_line));
        }
        if (!kind)
            break;
        L->p = q + 2 + (minus || plus);
        if (kind == '#') {
            const char *end = strstr(L->src + L->p, "#}");
            if (!end)
                return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: unclosed comment", L->line);
            for (const char *c = L->src + L->p; c < end; c++)
                if (*c == '\n')
                    L->line++;
            strip_next = end > L->src + L->p && end[-1] == '-';
            trim_nl = !strip_next;
            L->p = (size_t)(end - L->src) + 2;
            continue;
        }
        int line = L->line;
        GLLM_TRY(push_tok(L, kind == '{' ? T_VBEGIN : T_BBEGIN, NULL, 0, 0, line));
        GLLM_TRY(lex_tag(L, kind == '{' ? '}' : '%', &strip_next));
        GLLM_TRY(push_tok(L, kind == '{' ? T_VEND : T_BEND, NULL, 0, 0, L->line));
        trim_nl = kind == '%' && !strip_next;
    }
    /* keep_trailing_newline=False: one final newline of the template goes */
    if (L->ntok && L->toks[L->ntok - 1].k == T_TEXT) {
        jtoken *t = &L->toks[L->ntok - 1];
        if (t->n && t->s[t->n - 1] == '\n')
            t->n--;
    }
    return push_tok(L, T_EOF, NULL, 0, 0, L->line);
}

gllm_status gllm_jinja_lex(const char *src, jarena *arena, jtoken **toks, size_t *ntok)
{
    lexer L = {.src = src, .n = strlen(src), .line = 1, .arena = arena};
    gllm_status s = lex_all(&L);
    if (s != GLLM_OK) {
        free(L.toks);
        return s;
    }
    *toks = L.toks;
    *ntok = L.ntok;
    return GLLM_OK;
}
