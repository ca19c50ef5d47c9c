/* Renderer of a parsed chat template: values, scopes and the built-in
 * filters, tests, methods and globals, with Python/Jinja semantics where the
 * rendered string depends on them (str() of None/True, len() in code points,
 * slicing with negative steps, tojson with json.dumps' separators). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat_jinja.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct frame {
    const char **names;
    jv *vals;
    int n, cap;
} frame;

#define MAX_DEPTH 64

typedef struct ctx {
    jarena *a;
    frame frames[MAX_DEPTH];
    int nframes;
    const char *const *gnames;
    const jv *gvals;
    int ngl;
    sbuf out;
    int loop_ctl; /* 1: break, 2: continue pending */
} ctx;

static gllm_status sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory rendering");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return GLLM_OK;
}
static gllm_status sb_str(sbuf *b, const char *s) { return sb_add(b, s, strlen(s)); }

static jv mk_str(const char *s, size_t n)
{
    jv v = {.k = JV_STR};
    v.u.s.s = s;
    v.u.s.n = n;
    return v;
}
static jv mk_int(long long i) { return (jv){.k = JV_INT, .u.i = i}; }
static jv mk_bool(bool b) { return (jv){.k = JV_BOOL, .u.b = b}; }
static const jv k_undef = {.k = JV_UNDEF};

static gllm_status oom(void) { return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory rendering"); }

/* Move a temporary sbuf into the arena as a string value. */
static gllm_status sb_to_value(ctx *c, sbuf *b, jv *out)
{
    char *s = jarena_strndup(c->a, b->p ? b->p : "", b->n);
    free(b->p);
    if (!s)
        return oom();
    *out = mk_str(s, b->n);
    return GLLM_OK;
}

static const char *type_name(const jv *v)
{
    switch (v->k) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_DICT: return "dict";
    }
    return "?";
}

static bool truthy(const jv *v)
{
    switch (v->k) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_STR: return v->u.s.n > 0;
    case JV_LIST: return v->u.l->n > 0;
    case JV_DICT: return v->u.d->n > 0;
    }
    return false;
}

static bool is_num(const jv *v) { return v->k == JV_INT || v->k == JV_BOOL; }
static long long num(const jv *v) { return v->k == JV_BOOL ? v->u.b : v->u.i; }

static bool equal(const jv *x, const jv *y)
{
    if (is_num(x) && is_num(y))
        return num(x) == num(y);
    if (x->k != y->k)
        return false;
    switch (x->k) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return x->u.s.n == y->u.s.n && !memcmp(x->u.s.s, y->u.s.s, x->u.s.n);
    case JV_LIST:
        if (x->u.l->n != y->u.l->n)
            return false;
        for (size_t i = 0; i < x->u.l->n; i++)
            if (!equal(&x->u.l->items[i], &y->u.l->items[i]))
                return false;
        return true;
    case JV_DICT: return x->u.d == y->u.d;
    default: return false;
    }
}

static size_t utf8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Python repr of a string (single quotes unless it holds ' and no "). */
static gllm_status repr_str(sbuf *b, const char *s, size_t n)
{
    bool sq = memchr(s, '\'', n) && !memchr(s, '"', n);
    char q = sq ? '"' : '\'';
    GLLM_TRY(sb_add(b, &q, 1));
    for (size_t i = 0; i < n; i++) {
        char e[8];
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\\' || ch == (unsigned char)q) {
            e[0] = '\\';
            e[1] = (char)ch;
            GLLM_TRY(sb_add(b, e, 2));
        } else if (ch == '\n') {
            GLLM_TRY(sb_str(b, "\\n"));
        } else if (ch == '\t') {
            GLLM_TRY(sb_str(b, "\\t"));
        } else if (ch == '\r') {
            GLLM_TRY(sb_str(b, "\\r"));
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", ch);
            GLLM_TRY(sb_str(b, e));
        } else {
            GLLM_TRY(sb_add(b, s + i, 1));
        }
    }
    return sb_add(b, &q, 1);
}

/* str(v) as Python prints it; nested strings use repr. */
static gllm_status write_value(sbuf *b, const jv *v, bool nested)
{
    char num_buf[32];
    switch (v->k) {
    case JV_UNDEF: return GLLM_OK;
    case JV_NONE: return sb_str(b, "None");
    case JV_BOOL: return sb_str(b, v->u.b ? "True" : "False");
    case JV_INT:
        snprintf(num_buf, sizeof num_buf, "%lld", v->u.i);
        return sb_str(b, num_buf);
    case JV_STR: return nested ? repr_str(b, v->u.s.s, v->u.s.n) : sb_add(b, v->u.s.s, v->u.s.n);
    case JV_LIST:
        GLLM_TRY(sb_str(b, "["));
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                GLLM_TRY(sb_str(b, ", "));
            GLLM_TRY(write_value(b, &v->u.l->items[i], true));
        }
        return sb_str(b, "]");
    case JV_DICT:
        if (v->u.d->is_ns)
            return sb_str(b, "<Namespace>");
        GLLM_TRY(sb_str(b, "{"));
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i)
                GLLM_TRY(sb_str(b, ", "));
            GLLM_TRY(write_value(b, &v->u.d->keys[i], true));
            GLLM_TRY(sb_str(b, ": "));
            GLLM_TRY(write_value(b, &v->u.d->vals[i], true));
        }
        return sb_str(b, "}");
    }
    return GLLM_OK;
}

/* json.dumps(v, ensure_ascii=False) with its default ", " and ": " separators,
 * which is what transformers' tojson filter calls. */
static gllm_status write_json(sbuf *b, const jv *v)
{
    char e[16];
    switch (v->k) {
    case JV_UNDEF: case JV_NONE: return sb_str(b, "null");
    case JV_BOOL: return sb_str(b, v->u.b ? "true" : "false");
    case JV_INT: return write_value(b, v, false);
    case JV_STR:
        GLLM_TRY(sb_str(b, "\""));
        for (size_t i = 0; i < v->u.s.n; i++) {
            unsigned char ch = (unsigned char)v->u.s.s[i];
            const char *esc = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\n' ? "\\n" : ch == '\r' ? "\\r"
                            : ch == '\t' ? "\\t" : ch == '\b' ? "\\b" : ch == '\f' ? "\\f" : NULL;
            if (esc) {
                GLLM_TRY(sb_str(b, esc));
            } else if (ch < 0x20 || ch == 0x7f) {
                snprintf(e, sizeof e, "\\u%04x", ch);
                GLLM_TRY(sb_str(b, e));
            } else {
                GLLM_TRY(sb_add(b, v->u.s.s + i, 1));
            }
        }
        return sb_str(b, "\"");
    case JV_LIST:
        GLLM_TRY(sb_str(b, "["));
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                GLLM_TRY(sb_str(b, ", "));
            GLLM_TRY(write_json(b, &v->u.l->items[i]));
        }
        return sb_str(b, "]");
    case JV_DICT:
        GLLM_TRY(sb_str(b, "{"));
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i)
                GLLM_TRY(sb_str(b, ", "));
            if (v->u.d->keys[i].k == JV_STR) {
                GLLM_TRY(write_json(b, &v->u.d->keys[i]));
            } else {
                GLLM_TRY(sb_str(b, "\""));
                GLLM_TRY(write_value(b, &v->u.d->keys[i], false));
                GLLM_TRY(sb_str(b, "\""));
            }
            GLLM_TRY(sb_str(b, ": "));
            GLLM_TRY(write_json(b, &v->u.d->vals[i]));
        }
        return sb_str(b, "}");
    }
    return GLLM_OK;
}

static gllm_status to_string(ctx *c, const jv *v, jv *out)
{
    if (v->k == JV_STR) {
        *out = *v;
        return GLLM_OK;
    }
    sbuf b = {0};
    gllm_status s = write_value(&b, v, false);
    if (s != GLLM_OK) {
        free(b.p);
        return s;
    }
    return sb_to_value(c, &b, out);
}

static jlist *new_list(ctx *c, size_t n)
{
    jlist *l = jarena_alloc(c->a, sizeof *l);
    if (!l)
        return NULL;
    l->n = n;
    l->items = jarena_alloc(c->a, (n ? n : 1) * sizeof *l->items);
    return l->items ? l : NULL;
}

static jdict *new_dict(ctx *c, bool ns)
{
    jdict *d = jarena_alloc(c->a, sizeof *d);
    if (d)
        memset(d, 0, sizeof *d);
    if (d)
        d->is_ns = ns;
    return d;
}

static const jv *dict_get(const jdict *d, const char *k, size_t kn)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].k == JV_STR && d->keys[i].u.s.n == kn && !memcmp(d->keys[i].u.s.s, k, kn))
            return &d->vals[i];
    return NULL;
}

static gllm_status dict_set(ctx *c, jdict *d, jv key, jv val)
{
    for (size_t i = 0; i < d->n; i++)
        if (equal(&d->keys[i], &key)) {
            d->vals[i] = val;
            return GLLM_OK;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jv *k = jarena_alloc(c->a, cap * sizeof *k), *v = jarena_alloc(c->a, cap * sizeof *v);
        if (!k || !v)
            return oom();
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof *k);
            memcpy(v, d->vals, d->n * sizeof *v);
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
    return GLLM_OK;
}

static gllm_status dict_set_cstr(ctx *c, jdict *d, const char *k, jv val)
{
    return dict_set(c, d, mk_str(k, strlen(k)), val);
}

/* ------------------------------------------------------------------ scopes */
static jv lookup(const ctx *c, const char *name)
{
    for (int f = c->nframes - 1; f >= 0; f--)
        for (int i = 0; i < c->frames[f].n; i++)
            if (!strcmp(c->frames[f].names[i], name))
                return c->frames[f].vals[i];
    for (int i = 0; i < c->ngl; i++)
        if (!strcmp(c->gnames[i], name))
            return c->gvals[i];
    return k_undef;
}

static gllm_status assign(ctx *c, const char *name, jv v)
{
    frame *f = &c->frames[c->nframes - 1];
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) {
            f->vals[i] = v;
            return GLLM_OK;
        }
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 8;
        const char **nn = jarena_alloc(c->a, (size_t)cap * sizeof *nn);
        jv *vv = jarena_alloc(c->a, (size_t)cap * sizeof *vv);
        if (!nn || !vv)
            return oom();
        if (f->n) {
            memcpy(nn, f->names, (size_t)f->n * sizeof *nn);
            memcpy(vv, f->vals, (size_t)f->n * sizeof *vv);
        }
        f->names = nn;
        f->vals = vv;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return GLLM_OK;
}

/* -------------------------------------------------------------- expressions */
static gllm_status eval(ctx *c, const jexpr *e, jv *out);

static gllm_status rt_err(const jexpr *e, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a, b);
    return gllm_fail(GLLM_ERR_INVALID, "chat template line %d: %s", e->line, msg);
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

/* str.strip/lstrip/rstrip(chars=None); Jinja's trim is strip. */
static jv strip(jv s, const jv *chars, bool left, bool right)
{
    const char *p = s.u.s.s;
    size_t b = 0, e = s.u.s.n;
    bool ws = !chars || chars->k != JV_STR;
#define STRIPPABLE(ch) (ws ? is_ws(ch) : memchr(chars->u.s.s, (ch), chars->u.s.n) != NULL)
    while (left && b < e && STRIPPABLE(p[b]))
        b++;
    while (right && e > b && STRIPPABLE(p[e - 1]))
        e--;
#undef STRIPPABLE
    return mk_str(p + b, e - b);
}

static gllm_status str_replace(ctx *c, jv s, jv from, jv to, long long count, jv *out)
{
    sbuf b = {0};
    size_t i = 0;
    gllm_status st = GLLM_OK;
    while (i <= s.u.s.n && st == GLLM_OK) {
        const char *hit = NULL;
        if (count != 0 && from.u.s.n > 0)
            hit = memmem(s.u.s.s + i, s.u.s.n - i, from.u.s.s, from.u.s.n);
        if (!hit) {
            st = sb_add(&b, s.u.s.s + i, s.u.s.n - i);
            break;
        }
        st = sb_add(&b, s.u.s.s + i, (size_t)(hit - (s.u.s.s + i)));
        if (st == GLLM_OK)
            st = sb_add(&b, to.u.s.s, to.u.s.n);
        i = (size_t)(hit - s.u.s.s) + from.u.s.n;
        if (count > 0)
            count--;
    }
    if (st != GLLM_OK) {
        free(b.p);
        return st;
    }
    return sb_to_value(c, &b, out);
}

static gllm_status str_split(ctx *c, jv s, const jv *sep, jv *out)
{
    size_t cap = 8, n = 0;
    jv *parts = malloc(cap * sizeof *parts);
    if (!parts)
        return oom();
    const char *p = s.u.s.s, *end = p + s.u.s.n;
    if (!sep || sep->k == JV_NONE) {
        for (;;) {
            while (p < end && is_ws(*p))
                p++;
            if (p == end)
                break;
            const char *q = p;
            while (q < end && !is_ws(*q))
                q++;
            if (n == cap) {
                jv *np = realloc(parts, (cap *= 2) * sizeof *parts);
                if (!np) {
                    free(parts);
                    return oom();
                }
                parts = np;
            }
            parts[n++] = mk_str(p, (size_t)(q - p));
            p = q;
        }
    } else {
        if (sep->k != JV_STR || sep->u.s.n == 0) {
            free(parts);
            return gllm_fail(GLLM_ERR_INVALID, "chat template: split() separator must be a non-empty string");
        }
        for (;;) {
            const char *hit = memmem(p, (size_t)(end - p), sep->u.s.s, sep->u.s.n);
            const char *q = hit ? hit : end;
            if (n == cap) {
                jv *np = realloc(parts, (cap *= 2) * sizeof *parts);
                if (!np) {
                    free(parts);
                    return oom();
                }
                parts = np;
            }
            parts[n++] = mk_str(p, (size_t)(q - p));
            if (!hit)
                break;
            p = hit + sep->u.s.n;
        }
    }
    jlist *l = new_list(c, n);
    if (!l) {
        free(parts);
        return oom();
    }
    memcpy(l->items, parts, n * sizeof *parts);
    free(parts);
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

static gllm_status case_map(ctx *c, jv s, int mode, jv *out) /* 0 upper 1 lower 2 capitalize 3 title */
{
    char *d = jarena_alloc(c->a, s.u.s.n + 1);
    if (!d)
        return oom();
    bool word_start = true;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.s[i];
        bool up = mode == 0 || (mode == 2 && i == 0) || (mode == 3 && word_start);
        if (up && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 32);
        else if (!up && ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        d[i] = ch;
        word_start = !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'));
    }
    d[s.u.s.n] = '\0';
    *out = mk_str(d, s.u.s.n);
    return GLLM_OK;
}

/* Arguments evaluated, positional first; keywords looked up by name. */
typedef struct args {
    jv v[32];
    const char *kw[32];
    int n;
} args;

static gllm_status eval_args(ctx *c, const jexpr *e, args *a)
{
    a->n = e->nargs;
    for (int i = 0; i < e->nargs; i++) {
        a->kw[i] = e->kwnames ? e->kwnames[i] : NULL;
        GLLM_TRY(eval(c, e->args[i], &a->v[i]));
    }
    return GLLM_OK;
}

/* positional argument i, or keyword `name`, or NULL */
static const jv *arg(const args *a, int i, const char *name)
{
    int pos = 0;
    for (int k = 0; k < a->n; k++) {
        if (!a->kw[k] && pos++ == i)
            return &a->v[k];
        if (a->kw[k] && name && !strcmp(a->kw[k], name))
            return &a->v[k];
    }
    return NULL;
}

static gllm_status need_str(const jexpr *e, const jv *v, const char *what)
{
    if (!v || v->k != JV_STR)
        return rt_err(e, "%s needs a string, got %s", what, v ? type_name(v) : "nothing");
    return GLLM_OK;
}

static gllm_status list_from(ctx *c, const jv *v, jv *out, const jexpr *e)
{
    jlist *l;
    if (v->k == JV_LIST) {
        *out = *v;
        return GLLM_OK;
    }
    if (v->k == JV_UNDEF) {
        if (!(l = new_list(c, 0)))
            return oom();
    } else if (v->k == JV_DICT) {
        if (!(l = new_list(c, v->u.d->n)))
            return oom();
        memcpy(l->items, v->u.d->keys, v->u.d->n * sizeof *l->items);
    } else if (v->k == JV_STR) {
        size_t n = utf8_len(v->u.s.s, v->u.s.n), k = 0;
        if (!(l = new_list(c, n)))
            return oom();
        for (size_t i = 0; i < v->u.s.n;) {
            size_t j = i + 1;
            while (j < v->u.s.n && ((unsigned char)v->u.s.s[j] & 0xC0) == 0x80)
                j++;
            l->items[k++] = mk_str(v->u.s.s + i, j - i);
            i = j;
        }
    } else {
        return rt_err(e, "'%s' object is not iterable%s", type_name(v), "");
    }
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

static gllm_status items_of(ctx *c, const jdict *d, jv *out)
{
    jlist *l = new_list(c, d->n);
    if (!l)
        return oom();
    for (size_t i = 0; i < d->n; i++) {
        jlist *pair = new_list(c, 2);
        if (!pair)
            return oom();
        pair->items[0] = d->keys[i];
        pair->items[1] = d->vals[i];
        l->items[i] = (jv){.k = JV_LIST, .u.l = pair};
    }
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

static gllm_status apply_filter(ctx *c, const jexpr *e, jv v, jv *out)
{
    args a;
    GLLM_TRY(eval_args(c, e, &a));
    const char *f = e->name;
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const jv *dflt = arg(&a, 0, "default_value"), *boolean = arg(&a, 1, "boolean");
        bool use = v.k == JV_UNDEF || (boolean && truthy(boolean) && !truthy(&v));
        *out = use ? (dflt ? *dflt : mk_str("", 0)) : v;
        return GLLM_OK;
    }
    if (!strcmp(f, "safe")) {
        *out = v;
        return GLLM_OK;
    }
    if (!strcmp(f, "string"))
        return to_string(c, &v, out);
    if (!strcmp(f, "tojson")) {
        if (a.n)
            return rt_err(e, "tojson with arguments is not supported%s%s", "", "");
        sbuf b = {0};
        gllm_status s = write_json(&b, &v);
        if (s != GLLM_OK) {
            free(b.p);
            return s;
        }
        return sb_to_value(c, &b, out);
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (v.k == JV_STR)
            *out = mk_int((long long)utf8_len(v.u.s.s, v.u.s.n));
        else if (v.k == JV_LIST)
            *out = mk_int((long long)v.u.l->n);
        else if (v.k == JV_DICT)
            *out = mk_int((long long)v.u.d->n);
        else if (v.k == JV_UNDEF)
            *out = mk_int(0);
        else
            return rt_err(e, "object of type '%s' has no len()%s", type_name(&v), "");
        return GLLM_OK;
    }
    if (!strcmp(f, "first") || !strcmp(f, "last") || !strcmp(f, "list") || !strcmp(f, "reverse")) {
        jv l;
        GLLM_TRY(list_from(c, &v, &l, e));
        size_t n = l.u.l->n;
        if (!strcmp(f, "first") || !strcmp(f, "last")) {
            *out = n ? l.u.l->items[f[0] == 'f' ? 0 : n - 1] : k_undef;
            return GLLM_OK;
        }
        jlist *r = new_list(c, n);
        if (!r)
            return oom();
        for (size_t i = 0; i < n; i++)
            r->items[i] = l.u.l->items[f[0] == 'r' ? n - 1 - i : i];
        if (f[0] == 'r' && v.k == JV_STR) {
            sbuf b = {0};
            for (size_t i = 0; i < n; i++)
                if (sb_add(&b, r->items[i].u.s.s, r->items[i].u.s.n) != GLLM_OK) {
                    free(b.p);
                    return oom();
                }
            return sb_to_value(c, &b, out);
        }
        out->k = JV_LIST;
        out->u.l = r;
        return GLLM_OK;
    }
    if (!strcmp(f, "join")) {
        jv l;
        const jv *sep = arg(&a, 0, "d");
        GLLM_TRY(list_from(c, &v, &l, e));
        sbuf b = {0};
        gllm_status s = GLLM_OK;
        for (size_t i = 0; i < l.u.l->n && s == GLLM_OK; i++) {
            if (i && sep)
                s = write_value(&b, sep, false);
            if (s == GLLM_OK)
                s = write_value(&b, &l.u.l->items[i], false);
        }
        if (s != GLLM_OK) {
            free(b.p);
            return s;
        }
        return sb_to_value(c, &b, out);
    }
    if (!strcmp(f, "items")) {
        if (v.k != JV_DICT)
            return rt_err(e, "items needs a mapping, got %s%s", type_name(&v), "");
        return items_of(c, v.u.d, out);
    }
    if (!strcmp(f, "int")) {
        if (is_num(&v))
            *out = mk_int(num(&v));
        else if (v.k == JV_STR) {
            char buf[32];
            size_t n = v.u.s.n < sizeof buf - 1 ? v.u.s.n : sizeof buf - 1;
            memcpy(buf, v.u.s.s, n);
            buf[n] = '\0';
            char *end;
            long long x = strtoll(buf, &end, 10);
            *out = mk_int(end != buf ? x : 0);
        } else {
            *out = mk_int(0);
        }
        return GLLM_OK;
    }
    GLLM_TRY(need_str(e, &v, f));
    if (!strcmp(f, "trim")) {
        *out = strip(v, arg(&a, 0, "chars"), true, true);
        return GLLM_OK;
    }
    if (!strcmp(f, "upper"))
        return case_map(c, v, 0, out);
    if (!strcmp(f, "lower"))
        return case_map(c, v, 1, out);
    if (!strcmp(f, "capitalize"))
        return case_map(c, v, 2, out);
    if (!strcmp(f, "title"))
        return case_map(c, v, 3, out);
    /* replace */
    const jv *from = arg(&a, 0, "old"), *to = arg(&a, 1, "new"), *cnt = arg(&a, 2, "count");
    GLLM_TRY(need_str(e, from, "replace"));
    GLLM_TRY(need_str(e, to, "replace"));
    return str_replace(c, v, *from, *to, cnt && is_num(cnt) ? num(cnt) : -1, out);
}

static gllm_status apply_test(const jexpr *e, const jv *v, bool *r)
{
    const char *t = e->name;
    if (!strcmp(t, "defined"))
        *r = v->k != JV_UNDEF;
    else if (!strcmp(t, "undefined"))
        *r = v->k == JV_UNDEF;
    else if (!strcmp(t, "none"))
        *r = v->k == JV_NONE;
    else if (!strcmp(t, "string"))
        *r = v->k == JV_STR;
    else if (!strcmp(t, "number"))
        *r = is_num(v);
    else if (!strcmp(t, "integer"))
        *r = v->k == JV_INT;
    else if (!strcmp(t, "boolean"))
        *r = v->k == JV_BOOL;
    else if (!strcmp(t, "true"))
        *r = v->k == JV_BOOL && v->u.b;
    else if (!strcmp(t, "false"))
        *r = v->k == JV_BOOL && !v->u.b;
    else if (!strcmp(t, "mapping"))
        *r = v->k == JV_DICT;
    else if (!strcmp(t, "iterable") || !strcmp(t, "sequence"))
        *r = v->k == JV_LIST || v->k == JV_DICT || v->k == JV_STR;
    else if (!strcmp(t, "even") || !strcmp(t, "odd")) {
        if (!is_num(v))
            return rt_err(e, "test '%s' needs a number, got %s", t, type_name(v));
        *r = (num(v) % 2 == 0) == (t[0] == 'e');
    } else
        return rt_err(e, "unknown test '%s'%s", t, "");
    if (e->negate)
        *r = !*r;
    return GLLM_OK;
}

static gllm_status call_method(ctx *c, const jexpr *e, jv obj, jv *out)
{
    args a;
    GLLM_TRY(eval_args(c, e, &a));
    const char *m = e->a->name;
    if (obj.k == JV_DICT) {
        if (!strcmp(m, "get")) {
            const jv *k = arg(&a, 0, "key"), *d = arg(&a, 1, "default");
            const jv *hit = NULL;
            for (size_t i = 0; k && i < obj.u.d->n; i++)
                if (equal(&obj.u.d->keys[i], k))
                    hit = &obj.u.d->vals[i];
            *out = hit ? *hit : d ? *d : (jv){.k = JV_NONE};
            return GLLM_OK;
        }
        if (!strcmp(m, "items"))
            return items_of(c, obj.u.d, out);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            jlist *l = new_list(c, obj.u.d->n);
            if (!l)
                return oom();
            memcpy(l->items, m[0] == 'k' ? obj.u.d->keys : obj.u.d->vals, obj.u.d->n * sizeof *l->items);
            out->k = JV_LIST;
            out->u.l = l;
            return GLLM_OK;
        }
    } else if (obj.k == JV_STR) {
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            *out = strip(obj, arg(&a, 0, "chars"), m[0] != 'r', m[0] != 'l');
            return GLLM_OK;
        }
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            const jv *p = arg(&a, 0, NULL);
            GLLM_TRY(need_str(e, p, m));
            size_t n = p->u.s.n;
            bool r = n <= obj.u.s.n &&
                     !memcmp(m[0] == 's' ? obj.u.s.s : obj.u.s.s + obj.u.s.n - n, p->u.s.s, n);
            *out = mk_bool(r);
            return GLLM_OK;
        }
        if (!strcmp(m, "split"))
            return str_split(c, obj, arg(&a, 0, "sep"), out);
        if (!strcmp(m, "upper"))
            return case_map(c, obj, 0, out);
        if (!strcmp(m, "lower"))
            return case_map(c, obj, 1, out);
        if (!strcmp(m, "capitalize"))
            return case_map(c, obj, 2, out);
        if (!strcmp(m, "title"))
            return case_map(c, obj, 3, out);
        if (!strcmp(m, "replace")) {
            const jv *from = arg(&a, 0, NULL), *to = arg(&a, 1, NULL), *cnt = arg(&a, 2, NULL);
            GLLM_TRY(need_str(e, from, "replace"));
            GLLM_TRY(need_str(e, to, "replace"));
            return str_replace(c, obj, *from, *to, cnt && is_num(cnt) ? num(cnt) : -1, out);
        }
    }
    return rt_err(e, "'%s' object has no method '%s'", type_name(&obj), m);
}

static gllm_status call_global(ctx *c, const jexpr *e, jv *out)
{
    args a;
    GLLM_TRY(eval_args(c, e, &a));
    const char *f = e->a->name;
    if (!strcmp(f, "raise_exception")) {
        jv msg = a.n ? a.v[0] : mk_str("", 0);
        jv s;
        GLLM_TRY(to_string(c, &msg, &s));
        return gllm_fail(GLLM_ERR_INVALID, "chat template line %d raised: %.*s", e->line, (int)s.u.s.n,
                         s.u.s.s);
    }
    if (!strcmp(f, "namespace")) {
        jdict *d = new_dict(c, true);
        if (!d)
            return oom();
        for (int i = 0; i < a.n; i++) {
            if (!a.kw[i])
                return rt_err(e, "namespace() takes keyword arguments only%s%s", "", "");
            GLLM_TRY(dict_set_cstr(c, d, a.kw[i], a.v[i]));
        }
        out->k = JV_DICT;
        out->u.d = d;
        return GLLM_OK;
    }
    /* range */
    long long lo = 0, hi, step = 1;
    for (int i = 0; i < a.n; i++)
        if (!is_num(&a.v[i]))
            return rt_err(e, "range() needs integers, got %s%s", type_name(&a.v[i]), "");
    if (a.n == 1)
        hi = num(&a.v[0]);
    else if (a.n == 2 || a.n == 3) {
        lo = num(&a.v[0]);
        hi = num(&a.v[1]);
        if (a.n == 3)
            step = num(&a.v[2]);
    } else
        return rt_err(e, "range() takes 1 to 3 arguments%s%s", "", "");
    if (step == 0)
        return rt_err(e, "range() step must not be zero%s%s", "", "");
    long long n = step > 0 ? (hi > lo ? (hi - lo + step - 1) / step : 0) : (lo > hi ? (lo - hi - step - 1) / -step : 0);
    if (n > 1000000)
        return rt_err(e, "range() too long%s%s", "", "");
    jlist *l = new_list(c, (size_t)n);
    if (!l)
        return oom();
    for (long long i = 0; i < n; i++)
        l->items[i] = mk_int(lo + i * step);
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

/* Python's slice.indices() for a sequence of length n. */
static void slice_indices(long long n, const jv *b, const jv *e, long long step, long long *start, long long *stop)
{
    long long lo = step < 0 ? -1 : 0, hi = step < 0 ? n - 1 : n;
    if (!b || b->k == JV_NONE) {
        *start = step < 0 ? hi : lo;
    } else {
        *start = num(b);
        if (*start < 0)
            *start = *start + n < lo ? lo : *start + n;
        else if (*start > hi)
            *start = hi;
    }
    if (!e || e->k == JV_NONE) {
        *stop = step < 0 ? lo : hi;
    } else {
        *stop = num(e);
        if (*stop < 0)
            *stop = *stop + n < lo ? lo : *stop + n;
        else if (*stop > hi)
            *stop = hi;
    }
}

static gllm_status eval_slice(ctx *c, const jexpr *e, jv obj, jv *out)
{
    jv parts[3];
    const jv *pp[3] = {NULL, NULL, NULL};
    const jexpr *pe[3] = {e->b, e->c, e->d};
    for (int i = 0; i < 3; i++)
        if (pe[i]) {
            GLLM_TRY(eval(c, pe[i], &parts[i]));
            if (parts[i].k != JV_NONE && !is_num(&parts[i]))
                return rt_err(e, "slice indices must be integers, got %s%s", type_name(&parts[i]), "");
            pp[i] = &parts[i];
        }
    long long step = pp[2] && pp[2]->k != JV_NONE ? num(pp[2]) : 1;
    if (step == 0)
        return rt_err(e, "slice step cannot be zero%s%s", "", "");
    jv seq;
    if (obj.k == JV_STR || obj.k == JV_LIST)
        GLLM_TRY(list_from(c, &obj, &seq, e));
    else
        return rt_err(e, "'%s' object is not subscriptable by a slice%s", type_name(&obj), "");
    long long n = (long long)seq.u.l->n, start, stop;
    slice_indices(n, pp[0], pp[1], step, &start, &stop);
    long long cnt = 0;
    for (long long i = start; step > 0 ? i < stop : i > stop; i += step)
        cnt++;
    jlist *l = new_list(c, (size_t)cnt);
    if (!l)
        return oom();
    long long k = 0;
    for (long long i = start; step > 0 ? i < stop : i > stop; i += step)
        l->items[k++] = seq.u.l->items[i];
    if (obj.k == JV_STR) {
        sbuf b = {0};
        for (long long i = 0; i < cnt; i++)
            if (sb_add(&b, l->items[i].u.s.s, l->items[i].u.s.n) != GLLM_OK) {
                free(b.p);
                return oom();
            }
        return sb_to_value(c, &b, out);
    }
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

static gllm_status eval_index(const jexpr *e, jv obj, jv key, jv *out)
{
    *out = k_undef;
    if (obj.k == JV_UNDEF || obj.k == JV_NONE)
        return rt_err(e, "cannot index %s%s", obj.k == JV_NONE ? "None" : "an undefined value", "");
    if (obj.k == JV_DICT) {
        for (size_t i = 0; i < obj.u.d->n; i++)
            if (equal(&obj.u.d->keys[i], &key))
                *out = obj.u.d->vals[i];
        return GLLM_OK;
    }
    if ((obj.k == JV_LIST || obj.k == JV_STR) && is_num(&key)) {
        long long i = num(&key);
        if (obj.k == JV_LIST) {
            long long n = (long long)obj.u.l->n;
            if (i < 0)
                i += n;
            if (i >= 0 && i < n)
                *out = obj.u.l->items[i];
            return GLLM_OK;
        }
        /* code points, as Python indexes str */
        long long n = (long long)utf8_len(obj.u.s.s, obj.u.s.n);
        if (i < 0)
            i += n;
        if (i < 0 || i >= n)
            return GLLM_OK;
        size_t b = 0;
        for (long long k = 0; k < i; k++) {
            b++;
            while (b < obj.u.s.n && ((unsigned char)obj.u.s.s[b] & 0xC0) == 0x80)
                b++;
        }
        size_t en = b + 1;
        while (en < obj.u.s.n && ((unsigned char)obj.u.s.s[en] & 0xC0) == 0x80)
            en++;
        *out = mk_str(obj.u.s.s + b, en - b);
    }
    return GLLM_OK;
}

static gllm_status eval_bin(ctx *c, const jexpr *e, jv x, jv y, jv *out)
{
    switch (e->op) {
    case JOP_EQ: *out = mk_bool(equal(&x, &y)); return GLLM_OK;
    case JOP_NE: *out = mk_bool(!equal(&x, &y)); return GLLM_OK;
    case JOP_CONCAT: {
        jv a, b;
        GLLM_TRY(to_string(c, &x, &a));
        GLLM_TRY(to_string(c, &y, &b));
        x = a;
        y = b;
    } /* fall through */
    case JOP_ADD:
        if (is_num(&x) && is_num(&y)) {
            *out = mk_int(num(&x) + num(&y));
            return GLLM_OK;
        }
        if (x.k == JV_STR && y.k == JV_STR) {
            char *d = jarena_alloc(c->a, x.u.s.n + y.u.s.n + 1);
            if (!d)
                return oom();
            memcpy(d, x.u.s.s, x.u.s.n);
            memcpy(d + x.u.s.n, y.u.s.s, y.u.s.n);
            d[x.u.s.n + y.u.s.n] = '\0';
            *out = mk_str(d, x.u.s.n + y.u.s.n);
            return GLLM_OK;
        }
        if (x.k == JV_LIST && y.k == JV_LIST) {
            jlist *l = new_list(c, x.u.l->n + y.u.l->n);
            if (!l)
                return oom();
            memcpy(l->items, x.u.l->items, x.u.l->n * sizeof *l->items);
            memcpy(l->items + x.u.l->n, y.u.l->items, y.u.l->n * sizeof *l->items);
            out->k = JV_LIST;
            out->u.l = l;
            return GLLM_OK;
        }
        return rt_err(e, "unsupported operand types for +: '%s' and '%s'", type_name(&x), type_name(&y));
    case JOP_IN: case JOP_NOTIN: {
        bool r = false;
        if (y.k == JV_STR) {
            if (x.k != JV_STR)
                return rt_err(e, "'in <string>' requires a string on the left, not %s%s", type_name(&x), "");
            r = x.u.s.n == 0 || memmem(y.u.s.s, y.u.s.n, x.u.s.s, x.u.s.n) != NULL;
        } else if (y.k == JV_LIST) {
            for (size_t i = 0; i < y.u.l->n && !r; i++)
                r = equal(&x, &y.u.l->items[i]);
        } else if (y.k == JV_DICT) {
            for (size_t i = 0; i < y.u.d->n && !r; i++)
                r = equal(&x, &y.u.d->keys[i]);
        } else if (y.k != JV_UNDEF) {
            return rt_err(e, "argument of type '%s' is not iterable%s", type_name(&y), "");
        }
        *out = mk_bool(e->op == JOP_IN ? r : !r);
        return GLLM_OK;
    }
    default: break;
    }
    if (x.k == JV_STR && y.k == JV_STR && e->op >= JOP_LT && e->op <= JOP_GE) {
        size_t n = x.u.s.n < y.u.s.n ? x.u.s.n : y.u.s.n;
        int cmp = memcmp(x.u.s.s, y.u.s.s, n);
        if (!cmp)
            cmp = x.u.s.n < y.u.s.n ? -1 : x.u.s.n > y.u.s.n;
        bool r = e->op == JOP_LT ? cmp < 0 : e->op == JOP_LE ? cmp <= 0 : e->op == JOP_GT ? cmp > 0 : cmp >= 0;
        *out = mk_bool(r);
        return GLLM_OK;
    }
    if (e->op == JOP_MUL && x.k == JV_STR && is_num(&y)) {
        sbuf b = {0};
        for (long long i = 0; i < num(&y); i++)
            if (sb_add(&b, x.u.s.s, x.u.s.n) != GLLM_OK) {
                free(b.p);
                return oom();
            }
        return sb_to_value(c, &b, out);
    }
    if (!is_num(&x) || !is_num(&y))
        return rt_err(e, "unsupported operand types: '%s' and '%s'", type_name(&x), type_name(&y));
    long long a = num(&x), b = num(&y);
    switch (e->op) {
    case JOP_SUB: *out = mk_int(a - b); return GLLM_OK;
    case JOP_MUL: *out = mk_int(a * b); return GLLM_OK;
    case JOP_LT: *out = mk_bool(a < b); return GLLM_OK;
    case JOP_LE: *out = mk_bool(a <= b); return GLLM_OK;
    case JOP_GT: *out = mk_bool(a > b); return GLLM_OK;
    case JOP_GE: *out = mk_bool(a >= b); return GLLM_OK;
    case JOP_FLOORDIV: case JOP_MOD: {
        if (b == 0)
            return rt_err(e, "integer division or modulo by zero%s%s", "", "");
        long long q = a / b, r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) { /* Python floors */
            q--;
            r += b;
        }
        *out = mk_int(e->op == JOP_MOD ? r : q);
        return GLLM_OK;
    }
    default:
        return rt_err(e, "unsupported construct: true division '/' (float result)%s%s", "", "");
    }
}

static gllm_status eval(ctx *c, const jexpr *e, jv *out)
{
    jv x, y;
    bool r = false;
    switch (e->k) {
    case JE_LIT: *out = e->lit; return GLLM_OK;
    case JE_NAME: *out = lookup(c, e->name); return GLLM_OK;
    case JE_ATTR:
        GLLM_TRY(eval(c, e->a, &x));
        if (x.k == JV_UNDEF || x.k == JV_NONE)
            return rt_err(e, "'%s' has no attribute '%s'", x.k == JV_NONE ? "None" : "undefined value", e->name);
        *out = k_undef;
        if (x.k == JV_DICT) {
            const jv *hit = dict_get(x.u.d, e->name, strlen(e->name));
            if (hit)
                *out = *hit;
        }
        return GLLM_OK;
    case JE_INDEX:
        GLLM_TRY(eval(c, e->a, &x));
        GLLM_TRY(eval(c, e->b, &y));
        return eval_index(e, x, y, out);
    case JE_SLICE:
        GLLM_TRY(eval(c, e->a, &x));
        return eval_slice(c, e, x, out);
    case JE_CALL:
        if (e->a->k == JE_NAME)
            return call_global(c, e, out);
        GLLM_TRY(eval(c, e->a->a, &x));
        return call_method(c, e, x, out);
    case JE_FILTER:
        GLLM_TRY(eval(c, e->a, &x));
        return apply_filter(c, e, x, out);
    case JE_TEST:
        GLLM_TRY(eval(c, e->a, &x));
        GLLM_TRY(apply_test(e, &x, &r));
        *out = mk_bool(r);
        return GLLM_OK;
    case JE_NOT:
        GLLM_TRY(eval(c, e->a, &x));
        *out = mk_bool(!truthy(&x));
        return GLLM_OK;
    case JE_NEG:
        GLLM_TRY(eval(c, e->a, &x));
        if (!is_num(&x))
            return rt_err(e, "bad operand type for unary -: '%s'%s", type_name(&x), "");
        *out = mk_int(-num(&x));
        return GLLM_OK;
    case JE_BIN:
        GLLM_TRY(eval(c, e->a, &x));
        GLLM_TRY(eval(c, e->b, &y));
        return eval_bin(c, e, x, y, out);
    case JE_AND: case JE_OR:
        GLLM_TRY(eval(c, e->a, &x));
        if (truthy(&x) == (e->k == JE_OR)) {
            *out = x;
            return GLLM_OK;
        }
        return eval(c, e->b, out);
    case JE_COND:
        GLLM_TRY(eval(c, e->a, &x));
        if (truthy(&x))
            return eval(c, e->b, out);
        if (e->c)
            return eval(c, e->c, out);
        *out = k_undef;
        return GLLM_OK;
    case JE_LIST: {
        jlist *l = new_list(c, (size_t)e->nargs);
        if (!l)
            return oom();
        for (int i = 0; i < e->nargs; i++)
            GLLM_TRY(eval(c, e->args[i], &l->items[i]));
        out->k = JV_LIST;
        out->u.l = l;
        return GLLM_OK;
    }
    case JE_DICT: {
        jdict *d = new_dict(c, false);
        if (!d)
            return oom();
        for (int i = 0; i < e->nargs; i += 2) {
            GLLM_TRY(eval(c, e->args[i], &x));
            GLLM_TRY(eval(c, e->args[i + 1], &y));
            GLLM_TRY(dict_set(c, d, x, y));
        }
        out->k = JV_DICT;
        out->u.d = d;
        return GLLM_OK;
    }
    }
    return rt_err(e, "internal: unknown expression%s%s", "", "");
}

/* --------------------------------------------------------------- statements */
static gllm_status exec_body(ctx *c, const jbody *b);

static gllm_status push_frame(ctx *c, int line)
{
    if (c->nframes == MAX_DEPTH)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "chat template line %d: loops nested too deeply", line);
    c->frames[c->nframes++] = (frame){0};
    return GLLM_OK;
}

static gllm_status exec_for(ctx *c, const jstmt *s)
{
    jv it, seq;
    GLLM_TRY(eval(c, s->e, &it));
    if (it.k == JV_NONE)
        return gllm_fail(GLLM_ERR_INVALID, "chat template line %d: 'NoneType' object is not iterable", s->line);
    GLLM_TRY(list_from(c, &it, &seq, s->e));
    size_t n = seq.u.l->n;
    if (n == 0)
        return exec_body(c, &s->else_body);
    for (size_t i = 0; i < n; i++) {
        GLLM_TRY(push_frame(c, s->line));
        jdict *loop = new_dict(c, false);
        if (!loop)
            return oom();
        jv item = seq.u.l->items[i];
        GLLM_TRY(dict_set_cstr(c, loop, "index0", mk_int((long long)i)));
        GLLM_TRY(dict_set_cstr(c, loop, "index", mk_int((long long)i + 1)));
        GLLM_TRY(dict_set_cstr(c, loop, "revindex0", mk_int((long long)(n - 1 - i))));
        GLLM_TRY(dict_set_cstr(c, loop, "revindex", mk_int((long long)(n - i))));
        GLLM_TRY(dict_set_cstr(c, loop, "first", mk_bool(i == 0)));
        GLLM_TRY(dict_set_cstr(c, loop, "last", mk_bool(i + 1 == n)));
        GLLM_TRY(dict_set_cstr(c, loop, "length", mk_int((long long)n)));
        GLLM_TRY(dict_set_cstr(c, loop, "previtem", i ? seq.u.l->items[i - 1] : k_undef));
        GLLM_TRY(dict_set_cstr(c, loop, "nextitem", i + 1 < n ? seq.u.l->items[i + 1] : k_undef));
        GLLM_TRY(assign(c, "loop", (jv){.k = JV_DICT, .u.d = loop}));
        if (s->var2) {
            if (item.k != JV_LIST || item.u.l->n != 2)
                return gllm_fail(GLLM_ERR_INVALID, "chat template line %d: cannot unpack %s into 2 names",
                                 s->line, type_name(&item));
            GLLM_TRY(assign(c, s->var, item.u.l->items[0]));
            GLLM_TRY(assign(c, s->var2, item.u.l->items[1]));
        } else {
            GLLM_TRY(assign(c, s->var, item));
        }
        gllm_status st = exec_body(c, &s->body);
        c->nframes--;
        GLLM_TRY(st);
        int ctl = c->loop_ctl;
        c->loop_ctl = 0;
        if (ctl == 1)
            break;
    }
    return GLLM_OK;
}

static gllm_status exec_body(ctx *c, const jbody *b)
{
    for (int i = 0; i < b->n && !c->loop_ctl; i++) {
        const jstmt *s = b->items[i];
        jv v;
        switch (s->k) {
        case JS_TEXT: GLLM_TRY(sb_add(&c->out, s->text, s->len)); break;
        case JS_OUT:
            GLLM_TRY(eval(c, s->e, &v));
            GLLM_TRY(write_value(&c->out, &v, false));
            break;
        case JS_IF:
            for (int k = 0; k < s->nbranches; k++) {
                bool take = true;
                if (s->conds[k]) {
                    GLLM_TRY(eval(c, s->conds[k], &v));
                    take = truthy(&v);
                }
                if (take) {
                    GLLM_TRY(exec_body(c, &s->bodies[k]));
                    break;
                }
            }
            break;
        case JS_FOR: GLLM_TRY(exec_for(c, s)); break;
        case JS_SET:
            GLLM_TRY(eval(c, s->e, &v));
            if (s->attr) {
                jv ns = lookup(c, s->var);
                if (ns.k != JV_DICT || !ns.u.d->is_ns)
                    return gllm_fail(GLLM_ERR_INVALID,
                                     "chat template line %d: cannot assign attribute on non-namespace '%s'",
                                     s->line, s->var);
                GLLM_TRY(dict_set_cstr(c, ns.u.d, s->attr, v));
            } else {
                GLLM_TRY(assign(c, s->var, v));
            }
            break;
        case JS_BREAK: c->loop_ctl = 1; break;
        case JS_CONTINUE: c->loop_ctl = 2; break;
        }
    }
    return GLLM_OK;
}

gllm_status jinja_render(const jtemplate *t, const char *const *names, const jv *vals, int nvars,
                         jarena *scratch, char **out, size_t *len)
{
    ctx c = {.a = scratch, .nframes = 1, .gnames = names, .gvals = vals, .ngl = nvars};
    gllm_status s = exec_body(&c, &t->root);
    if (s == GLLM_OK)
        s = sb_add(&c.out, "", 0);
    if (s != GLLM_OK) {
        free(c.out.p);
        return s;
    }
    *out = c.out.p;
    if (len)
        *len = c.out.n;
    return GLLM_OK;
}
