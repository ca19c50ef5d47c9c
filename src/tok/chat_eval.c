/* Renderer of a parsed chat template: values, scopes, expressions and
 * statements, with Python/Jinja semantics where the rendered string depends on
 * them (str() of None/True, slicing with negative steps, floor division,
 * tojson with json.dumps' separators). Filters, tests and methods live in
 * chat_builtins.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat_jinja.h"

gllm_status gllm_jv_sb_add(jsbuf *b, const char *s, size_t n) { return tok_str_append(b, s, n); }
gllm_status gllm_jv_sb_str(jsbuf *b, const char *s) { return gllm_jv_sb_add(b, s, strlen(s)); }


gllm_status gllm_jv_oom(void) { return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory rendering"); }

/* Move a temporary jsbuf into the arena as a string value. */
gllm_status gllm_jv_sb_to_value(jctx *c, jsbuf *b, jv *out)
{
    char *s = gllm_jarena_strndup(c->a, b->s ? b->s : "", b->n);
    free(b->s);
    if (!s)
        return gllm_jv_oom();
    *out = mk_str(s, b->n);
    return GLLM_OK;
}

const char *gllm_jv_type_name(const jv *v)
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

bool gllm_jv_truthy(const jv *v)
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


bool gllm_jv_equal(const jv *x, const jv *y)
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
            if (!gllm_jv_equal(&x->u.l->items[i], &y->u.l->items[i]))
                return false;
        return true;
    case JV_DICT: return x->u.d == y->u.d;
    default: return false;
    }
}

size_t gllm_jv_utf8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Python repr of a string (single quotes unless it holds ' and no "). */
static gllm_status repr_str(jsbuf *b, const char *s, size_t n)
{
    bool sq = memchr(s, '\'', n) && !memchr(s, '"', n);
    char q = sq ? '"' : '\'';
    GLLM_TRY(gllm_jv_sb_add(b, &q, 1));
    for (size_t i = 0; i < n; i++) {
        char e[8];
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\\' || ch == (unsigned char)q) {
            e[0] = '\\';
            e[1] = (char)ch;
            GLLM_TRY(gllm_jv_sb_add(b, e, 2));
        } else if (ch == '\n') {
            GLLM_TRY(gllm_jv_sb_str(b, "\\n"));
        } else if (ch == '\t') {
            GLLM_TRY(gllm_jv_sb_str(b, "\\t"));
        } else if (ch == '\r') {
            GLLM_TRY(gllm_jv_sb_str(b, "\\r"));
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", ch);
            GLLM_TRY(gllm_jv_sb_str(b, e));
        } else {
            GLLM_TRY(gllm_jv_sb_add(b, s + i, 1));
        }
    }
    return gllm_jv_sb_add(b, &q, 1);
}

/* str(v) as Python prints it; nested strings use repr. */
gllm_status gllm_jv_write_value(jsbuf *b, const jv *v, bool nested)
{
    char num_buf[32];
    switch (v->k) {
    case JV_UNDEF: return GLLM_OK;
    case JV_NONE: return gllm_jv_sb_str(b, "None");
    case JV_BOOL: return gllm_jv_sb_str(b, v->u.b ? "True" : "False");
    case JV_INT:
        snprintf(num_buf, sizeof num_buf, "%lld", v->u.i);
        return gllm_jv_sb_str(b, num_buf);
    case JV_STR: return nested ? repr_str(b, v->u.s.s, v->u.s.n) : gllm_jv_sb_add(b, v->u.s.s, v->u.s.n);
    case JV_LIST:
        GLLM_TRY(gllm_jv_sb_str(b, "["));
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                GLLM_TRY(gllm_jv_sb_str(b, ", "));
            GLLM_TRY(gllm_jv_write_value(b, &v->u.l->items[i], true));
        }
        return gllm_jv_sb_str(b, "]");
    case JV_DICT:
        if (v->u.d->is_ns)
            return gllm_jv_sb_str(b, "<Namespace>");
        GLLM_TRY(gllm_jv_sb_str(b, "{"));
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i)
                GLLM_TRY(gllm_jv_sb_str(b, ", "));
            GLLM_TRY(gllm_jv_write_value(b, &v->u.d->keys[i], true));
            GLLM_TRY(gllm_jv_sb_str(b, ": "));
            GLLM_TRY(gllm_jv_write_value(b, &v->u.d->vals[i], true));
        }
        return gllm_jv_sb_str(b, "}");
    }
    return GLLM_OK;
}

/* json.dumps(v, ensure_ascii=False) with its default ", " and ": " separators,
 * which is what transformers' tojson filter calls. */
gllm_status gllm_jv_write_json(jsbuf *b, const jv *v)
{
    char e[16];
    switch (v->k) {
    case JV_UNDEF: case JV_NONE: return gllm_jv_sb_str(b, "null");
    case JV_BOOL: return gllm_jv_sb_str(b, v->u.b ? "true" : "false");
    case JV_INT: return gllm_jv_write_value(b, v, false);
    case JV_STR:
        GLLM_TRY(gllm_jv_sb_str(b, "\""));
        for (size_t i = 0; i < v->u.s.n; i++) {
            unsigned char ch = (unsigned char)v->u.s.s[i];
            const char *esc = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\n' ? "\\n" : ch == '\r' ? "\\r"
                            : ch == '\t' ? "\\t" : ch == '\b' ? "\\b" : ch == '\f' ? "\\f" : NULL;
            if (esc) {
                GLLM_TRY(gllm_jv_sb_str(b, esc));
            } else if (ch < 0x20 || ch == 0x7f) {
                snprintf(e, sizeof e, "\\u%04x", ch);
                GLLM_TRY(gllm_jv_sb_str(b, e));
            } else {
                GLLM_TRY(gllm_jv_sb_add(b, v->u.s.s + i, 1));
            }
        }
        return gllm_jv_sb_str(b, "\"");
    case JV_LIST:
        GLLM_TRY(gllm_jv_sb_str(b, "["));
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                GLLM_TRY(gllm_jv_sb_str(b, ", "));
            GLLM_TRY(gllm_jv_write_json(b, &v->u.l->items[i]));
        }
        return gllm_jv_sb_str(b, "]");
    case JV_DICT:
        GLLM_TRY(gllm_jv_sb_str(b, "{"));
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i)
                GLLM_TRY(gllm_jv_sb_str(b, ", "));
            if (v->u.d->keys[i].k == JV_STR) {
                GLLM_TRY(gllm_jv_write_json(b, &v->u.d->keys[i]));
            } else {
                GLLM_TRY(gllm_jv_sb_str(b, "\""));
                GLLM_TRY(gllm_jv_write_value(b, &v->u.d->keys[i], false));
                GLLM_TRY(gllm_jv_sb_str(b, "\""));
            }
            GLLM_TRY(gllm_jv_sb_str(b, ": "));
            GLLM_TRY(gllm_jv_write_json(b, &v->u.d->vals[i]));
        }
        return gllm_jv_sb_str(b, "}");
    }
    return GLLM_OK;
}

gllm_status gllm_jv_to_string(jctx *c, const jv *v, jv *out)
{
    if (v->k == JV_STR) {
        *out = *v;
        return GLLM_OK;
    }
    jsbuf b = {0};
    gllm_status s = gllm_jv_write_value(&b, v, false);
    if (s != GLLM_OK) {
        free(b.s);
        return s;
    }
    return gllm_jv_sb_to_value(c, &b, out);
}

jlist *gllm_jv_new_list(jctx *c, size_t n)
{
    jlist *l = gllm_jarena_alloc(c->a, sizeof *l);
    if (!l)
        return NULL;
    l->n = n;
    l->items = gllm_jarena_alloc(c->a, (n ? n : 1) * sizeof *l->items);
    return l->items ? l : NULL;
}

jdict *gllm_jv_new_dict(jctx *c, bool ns)
{
    jdict *d = gllm_jarena_alloc(c->a, sizeof *d);
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

gllm_status gllm_jv_dict_set(jctx *c, jdict *d, jv key, jv val)
{
    for (size_t i = 0; i < d->n; i++)
        if (gllm_jv_equal(&d->keys[i], &key)) {
            d->vals[i] = val;
            return GLLM_OK;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jv *k = gllm_jarena_alloc(c->a, cap * sizeof *k), *v = gllm_jarena_alloc(c->a, cap * sizeof *v);
        if (!k || !v)
            return gllm_jv_oom();
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

gllm_status gllm_jv_dict_set_cstr(jctx *c, jdict *d, const char *k, jv val)
{
    return gllm_jv_dict_set(c, d, mk_str(k, strlen(k)), val);
}

/* ------------------------------------------------------------------ scopes */
static jv lookup(const jctx *c, const char *name)
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

static gllm_status assign(jctx *c, const char *name, jv v)
{
    jframe *f = &c->frames[c->nframes - 1];
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) {
            f->vals[i] = v;
            return GLLM_OK;
        }
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 8;
        const char **nn = gllm_jarena_alloc(c->a, (size_t)cap * sizeof *nn);
        jv *vv = gllm_jarena_alloc(c->a, (size_t)cap * sizeof *vv);
        if (!nn || !vv)
            return gllm_jv_oom();
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

gllm_status gllm_jv_rt_err(const jexpr *e, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a, b);
    return gllm_fail(GLLM_ERR_INVALID, "chat template line %d: %s", e->line, msg);
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

static gllm_status eval_slice(jctx *c, const jexpr *e, jv obj, jv *out)
{
    jv parts[3];
    const jv *pp[3] = {NULL, NULL, NULL};
    const jexpr *pe[3] = {e->b, e->c, e->d};
    for (int i = 0; i < 3; i++)
        if (pe[i]) {
            GLLM_TRY(gllm_jv_eval(c, pe[i], &parts[i]));
            if (parts[i].k != JV_NONE && !is_num(&parts[i]))
                return gllm_jv_rt_err(e, "slice indices must be integers, got %s%s", gllm_jv_type_name(&parts[i]), "");
            pp[i] = &parts[i];
        }
    long long step = pp[2] && pp[2]->k != JV_NONE ? num(pp[2]) : 1;
    if (step == 0)
        return gllm_jv_rt_err(e, "slice step cannot be zero%s%s", "", "");
    jv seq;
    if (obj.k == JV_STR || obj.k == JV_LIST)
        GLLM_TRY(gllm_jv_list_from(c, &obj, &seq, e));
    else
        return gllm_jv_rt_err(e, "'%s' object is not subscriptable by a slice%s", gllm_jv_type_name(&obj), "");
    long long n = (long long)seq.u.l->n, start, stop;
    slice_indices(n, pp[0], pp[1], step, &start, &stop);
    long long cnt = 0;
    for (long long i = start; step > 0 ? i < stop : i > stop; i += step)
        cnt++;
    jlist *l = gllm_jv_new_list(c, (size_t)cnt);
    if (!l)
        return gllm_jv_oom();
    long long k = 0;
    for (long long i = start; step > 0 ? i < stop : i > stop; i += step)
        l->items[k++] = seq.u.l->items[i];
    if (obj.k == JV_STR) {
        jsbuf b = {0};
        for (long long i = 0; i < cnt; i++)
            if (gllm_jv_sb_add(&b, l->items[i].u.s.s, l->items[i].u.s.n) != GLLM_OK) {
                free(b.s);
                return gllm_jv_oom();
            }
        return gllm_jv_sb_to_value(c, &b, out);
    }
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

static gllm_status eval_index(const jexpr *e, jv obj, jv key, jv *out)
{
    *out = k_undef;
    if (obj.k == JV_UNDEF || obj.k == JV_NONE)
        return gllm_jv_rt_err(e, "cannot index %s%s", obj.k == JV_NONE ? "None" : "an undefined value", "");
    if (obj.k == JV_DICT) {
        for (size_t i = 0; i < obj.u.d->n; i++)
            if (gllm_jv_equal(&obj.u.d->keys[i], &key))
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
        long long n = (long long)gllm_jv_utf8_len(obj.u.s.s, obj.u.s.n);
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

static gllm_status eval_bin(jctx *c, const jexpr *e, jv x, jv y, jv *out)
{
    switch (e->op) {
    case JOP_EQ: *out = mk_bool(gllm_jv_equal(&x, &y)); return GLLM_OK;
    case JOP_NE: *out = mk_bool(!gllm_jv_equal(&x, &y)); return GLLM_OK;
    case JOP_CONCAT: {
        jv a, b;
        GLLM_TRY(gllm_jv_to_string(c, &x, &a));
        GLLM_TRY(gllm_jv_to_string(c, &y, &b));
        x = a;
        y = b;
    } /* fall through */
    case JOP_ADD:
        if (is_num(&x) && is_num(&y)) {
            *out = mk_int(num(&x) + num(&y));
            return GLLM_OK;
        }
        if (x.k == JV_STR && y.k == JV_STR) {
            char *d = gllm_jarena_alloc(c->a, x.u.s.n + y.u.s.n + 1);
            if (!d)
                return gllm_jv_oom();
            memcpy(d, x.u.s.s, x.u.s.n);
            memcpy(d + x.u.s.n, y.u.s.s, y.u.s.n);
            d[x.u.s.n + y.u.s.n] = '\0';
            *out = mk_str(d, x.u.s.n + y.u.s.n);
            return GLLM_OK;
        }
        if (x.k == JV_LIST && y.k == JV_LIST) {
            jlist *l = gllm_jv_new_list(c, x.u.l->n + y.u.l->n);
            if (!l)
                return gllm_jv_oom();
            memcpy(l->items, x.u.l->items, x.u.l->n * sizeof *l->items);
            memcpy(l->items + x.u.l->n, y.u.l->items, y.u.l->n * sizeof *l->items);
            out->k = JV_LIST;
            out->u.l = l;
            return GLLM_OK;
        }
        return gllm_jv_rt_err(e, "unsupported operand types for +: '%s' and '%s'", gllm_jv_type_name(&x), gllm_jv_type_name(&y));
    case JOP_IN: case JOP_NOTIN: {
        bool r = false;
        if (y.k == JV_STR) {
            if (x.k != JV_STR)
                return gllm_jv_rt_err(e, "'in <string>' requires a string on the left, not %s%s", gllm_jv_type_name(&x), "");
            r = x.u.s.n == 0 || memmem(y.u.s.s, y.u.s.n, x.u.s.s, x.u.s.n) != NULL;
        } else if (y.k == JV_LIST) {
            for (size_t i = 0; i < y.u.l->n && !r; i++)
                r = gllm_jv_equal(&x, &y.u.l->items[i]);
        } else if (y.k == JV_DICT) {
            for (size_t i = 0; i < y.u.d->n && !r; i++)
                r = gllm_jv_equal(&x, &y.u.d->keys[i]);
        } else if (y.k != JV_UNDEF) {
            return gllm_jv_rt_err(e, "argument of type '%s' is not iterable%s", gllm_jv_type_name(&y), "");
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
        jsbuf b = {0};
        for (long long i = 0; i < num(&y); i++)
            if (gllm_jv_sb_add(&b, x.u.s.s, x.u.s.n) != GLLM_OK) {
                free(b.s);
                return gllm_jv_oom();
            }
        return gllm_jv_sb_to_value(c, &b, out);
    }
    if (!is_num(&x) || !is_num(&y))
        return gllm_jv_rt_err(e, "unsupported operand types: '%s' and '%s'", gllm_jv_type_name(&x), gllm_jv_type_name(&y));
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
            return gllm_jv_rt_err(e, "integer division or modulo by zero%s%s", "", "");
        long long q = a / b, r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) { /* Python floors */
            q--;
            r += b;
        }
        *out = mk_int(e->op == JOP_MOD ? r : q);
        return GLLM_OK;
    }
    default:
        return gllm_jv_rt_err(e, "unsupported construct: true division '/' (float result)%s%s", "", "");
    }
}

gllm_status gllm_jv_eval(jctx *c, const jexpr *e, jv *out)
{
    jv x, y;
    bool r = false;
    switch (e->k) {
    case JE_LIT: *out = e->lit; return GLLM_OK;
    case JE_NAME: *out = lookup(c, e->name); return GLLM_OK;
    case JE_ATTR:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        if (x.k == JV_UNDEF || x.k == JV_NONE)
            return gllm_jv_rt_err(e, "'%s' has no attribute '%s'", x.k == JV_NONE ? "None" : "undefined value", e->name);
        *out = k_undef;
        if (x.k == JV_DICT) {
            const jv *hit = dict_get(x.u.d, e->name, strlen(e->name));
            if (hit)
                *out = *hit;
        }
        return GLLM_OK;
    case JE_INDEX:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        GLLM_TRY(gllm_jv_eval(c, e->b, &y));
        return eval_index(e, x, y, out);
    case JE_SLICE:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        return eval_slice(c, e, x, out);
    case JE_CALL:
        if (e->a->k == JE_NAME)
            return gllm_jv_call_global(c, e, out);
        GLLM_TRY(gllm_jv_eval(c, e->a->a, &x));
        return gllm_jv_call_method(c, e, x, out);
    case JE_FILTER:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        return gllm_jv_apply_filter(c, e, x, out);
    case JE_TEST:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        GLLM_TRY(gllm_jv_apply_test(e, &x, &r));
        *out = mk_bool(r);
        return GLLM_OK;
    case JE_NOT:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        *out = mk_bool(!gllm_jv_truthy(&x));
        return GLLM_OK;
    case JE_NEG:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        if (!is_num(&x))
            return gllm_jv_rt_err(e, "bad operand type for unary -: '%s'%s", gllm_jv_type_name(&x), "");
        *out = mk_int(-num(&x));
        return GLLM_OK;
    case JE_BIN:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        GLLM_TRY(gllm_jv_eval(c, e->b, &y));
        return eval_bin(c, e, x, y, out);
    case JE_AND: case JE_OR:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        if (gllm_jv_truthy(&x) == (e->k == JE_OR)) {
            *out = x;
            return GLLM_OK;
        }
        return gllm_jv_eval(c, e->b, out);
    case JE_COND:
        GLLM_TRY(gllm_jv_eval(c, e->a, &x));
        if (gllm_jv_truthy(&x))
            return gllm_jv_eval(c, e->b, out);
        if (e->c)
            return gllm_jv_eval(c, e->c, out);
        *out = k_undef;
        return GLLM_OK;
    case JE_LIST: {
        jlist *l = gllm_jv_new_list(c, (size_t)e->nargs);
        if (!l)
            return gllm_jv_oom();
        for (int i = 0; i < e->nargs; i++)
            GLLM_TRY(gllm_jv_eval(c, e->args[i], &l->items[i]));
        out->k = JV_LIST;
        out->u.l = l;
        return GLLM_OK;
    }
    case JE_DICT: {
        jdict *d = gllm_jv_new_dict(c, false);
        if (!d)
            return gllm_jv_oom();
        for (int i = 0; i < e->nargs; i += 2) {
            GLLM_TRY(gllm_jv_eval(c, e->args[i], &x));
            GLLM_TRY(gllm_jv_eval(c, e->args[i + 1], &y));
            GLLM_TRY(gllm_jv_dict_set(c, d, x, y));
        }
        out->k = JV_DICT;
        out->u.d = d;
        return GLLM_OK;
    }
    }
    return gllm_jv_rt_err(e, "internal: unknown expression%s%s", "", "");
}

/* --------------------------------------------------------------- statements */
static gllm_status exec_body(jctx *c, const jbody *b);

static gllm_status push_frame(jctx *c, int line)
{
    if (c->nframes == MAX_DEPTH)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "chat template line %d: loops nested too deeply", line);
    c->frames[c->nframes++] = (jframe){0};
    return GLLM_OK;
}

static gllm_status exec_for(jctx *c, const jstmt *s)
{
    jv it, seq;
    GLLM_TRY(gllm_jv_eval(c, s->e, &it));
    if (it.k == JV_NONE)
        return gllm_fail(GLLM_ERR_INVALID, "chat template line %d: 'NoneType' object is not iterable", s->line);
    GLLM_TRY(gllm_jv_list_from(c, &it, &seq, s->e));
    size_t n = seq.u.l->n;
    if (n == 0)
        return exec_body(c, &s->else_body);
    for (size_t i = 0; i < n; i++) {
        GLLM_TRY(push_frame(c, s->line));
        jdict *loop = gllm_jv_new_dict(c, false);
        if (!loop)
            return gllm_jv_oom();
        jv item = seq.u.l->items[i];
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "index0", mk_int((long long)i)));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "index", mk_int((long long)i + 1)));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "revindex0", mk_int((long long)(n - 1 - i))));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "revindex", mk_int((long long)(n - i))));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "first", mk_bool(i == 0)));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "last", mk_bool(i + 1 == n)));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "length", mk_int((long long)n)));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "previtem", i ? seq.u.l->items[i - 1] : k_undef));
        GLLM_TRY(gllm_jv_dict_set_cstr(c, loop, "nextitem", i + 1 < n ? seq.u.l->items[i + 1] : k_undef));
        GLLM_TRY(assign(c, "loop", (jv){.k = JV_DICT, .u.d = loop}));
        if (s->var2) {
            if (item.k != JV_LIST || item.u.l->n != 2)
                return gllm_fail(GLLM_ERR_INVALID, "chat template line %d: cannot unpack %s into 2 names",
                                 s->line, gllm_jv_type_name(&item));
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

static gllm_status exec_body(jctx *c, const jbody *b)
{
    for (int i = 0; i < b->n && !c->loop_ctl; i++) {
        const jstmt *s = b->items[i];
        jv v;
        switch (s->k) {
        case JS_TEXT: GLLM_TRY(gllm_jv_sb_add(&c->out, s->text, s->len)); break;
        case JS_OUT:
            GLLM_TRY(gllm_jv_eval(c, s->e, &v));
            GLLM_TRY(gllm_jv_write_value(&c->out, &v, false));
            break;
        case JS_IF:
            for (int k = 0; k < s->nbranches; k++) {
                bool take = true;
                if (s->conds[k]) {
                    GLLM_TRY(gllm_jv_eval(c, s->conds[k], &v));
                    take = gllm_jv_truthy(&v);
                }
                if (take) {
                    GLLM_TRY(exec_body(c, &s->bodies[k]));
                    break;
                }
            }
            break;
        case JS_FOR: GLLM_TRY(exec_for(c, s)); break;
        case JS_SET:
            GLLM_TRY(gllm_jv_eval(c, s->e, &v));
            if (s->attr) {
                jv ns = lookup(c, s->var);
                if (ns.k != JV_DICT || !ns.u.d->is_ns)
                    return gllm_fail(GLLM_ERR_INVALID,
                                     "chat template line %d: cannot assign attribute on non-namespace '%s'",
                                     s->line, s->var);
                GLLM_TRY(gllm_jv_dict_set_cstr(c, ns.u.d, s->attr, v));
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

gllm_status gllm_jinja_render(const jtemplate *t, const char *const *names, const jv *vals, int nvars,
                         jarena *scratch, char **out, size_t *len)
{
    jctx c = {.a = scratch, .nframes = 1, .gnames = names, .gvals = vals, .ngl = nvars};
    gllm_status s = exec_body(&c, &t->root);
    if (s == GLLM_OK)
        s = gllm_jv_sb_add(&c.out, "", 0);
    if (s != GLLM_OK) {
        free(c.out.s);
        return s;
    }
    *out = c.out.s;
    if (len)
        *len = c.out.n;
    return GLLM_OK;
}
