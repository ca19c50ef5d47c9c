/* The built-in filters, tests, methods and globals of the chat-template
 * Jinja subset, with the Python semantics the rendered string depends on
 * (str.split() without a separator, strip(chars), len() in code points). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat_jinja.h"

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

static gllm_status str_replace(jctx *c, jv s, jv from, jv to, long long count, jv *out)
{
    jsbuf b = {0};
    size_t i = 0;
    gllm_status st = GLLM_OK;
    while (i <= s.u.s.n && st == GLLM_OK) {
        const char *hit = NULL;
        if (count != 0 && from.u.s.n > 0)
            hit = memmem(s.u.s.s + i, s.u.s.n - i, from.u.s.s, from.u.s.n);
        if (!hit) {
            st = gllm_jv_sb_add(&b, s.u.s.s + i, s.u.s.n - i);
            break;
        }
        st = gllm_jv_sb_add(&b, s.u.s.s + i, (size_t)(hit - (s.u.s.s + i)));
        if (st == GLLM_OK)
            st = gllm_jv_sb_add(&b, to.u.s.s, to.u.s.n);
        i = (size_t)(hit - s.u.s.s) + from.u.s.n;
        if (count > 0)
            count--;
    }
    if (st != GLLM_OK) {
        free(b.s);
        return st;
    }
    return gllm_jv_sb_to_value(c, &b, out);
}

static gllm_status str_split(jctx *c, jv s, const jv *sep, jv *out)
{
    size_t cap = 8, n = 0;
    jv *parts = malloc(cap * sizeof *parts);
    if (!parts)
        return gllm_jv_oom();
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
                    return gllm_jv_oom();
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
                    return gllm_jv_oom();
                }
                parts = np;
            }
            parts[n++] = mk_str(p, (size_t)(q - p));
            if (!hit)
                break;
            p = hit + sep->u.s.n;
        }
    }
    jlist *l = gllm_jv_new_list(c, n);
    if (!l) {
        free(parts);
        return gllm_jv_oom();
    }
    memcpy(l->items, parts, n * sizeof *parts);
    free(parts);
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

static gllm_status case_map(jctx *c, jv s, int mode, jv *out) /* 0 upper 1 lower 2 capitalize 3 title */
{
    char *d = gllm_jarena_alloc(c->a, s.u.s.n + 1);
    if (!d)
        return gllm_jv_oom();
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

static gllm_status eval_args(jctx *c, const jexpr *e, args *a)
{
    a->n = e->nargs;
    for (int i = 0; i < e->nargs; i++) {
        a->kw[i] = e->kwnames ? e->kwnames[i] : NULL;
        GLLM_TRY(gllm_jv_eval(c, e->args[i], &a->v[i]));
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
        return gllm_jv_rt_err(e, "%s needs a string, got %s", what, v ? gllm_jv_type_name(v) : "nothing");
    return GLLM_OK;
}

gllm_status gllm_jv_list_from(jctx *c, const jv *v, jv *out, const jexpr *e)
{
    jlist *l;
    if (v->k == JV_LIST) {
        *out = *v;
        return GLLM_OK;
    }
    if (v->k == JV_UNDEF) {
        if (!(l = gllm_jv_new_list(c, 0)))
            return gllm_jv_oom();
    } else if (v->k == JV_DICT) {
        if (!(l = gllm_jv_new_list(c, v->u.d->n)))
            return gllm_jv_oom();
        memcpy(l->items, v->u.d->keys, v->u.d->n * sizeof *l->items);
    } else if (v->k == JV_STR) {
        size_t n = gllm_jv_utf8_len(v->u.s.s, v->u.s.n), k = 0;
        if (!(l = gllm_jv_new_list(c, n)))
            return gllm_jv_oom();
        for (size_t i = 0; i < v->u.s.n;) {
            size_t j = i + 1;
            while (j < v->u.s.n && ((unsigned char)v->u.s.s[j] & 0xC0) == 0x80)
                j++;
            l->items[k++] = mk_str(v->u.s.s + i, j - i);
            i = j;
        }
    } else {
        return gllm_jv_rt_err(e, "'%s' object is not iterable%s", gllm_jv_type_name(v), "");
    }
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

gllm_status gllm_jv_items_of(jctx *c, const jdict *d, jv *out)
{
    jlist *l = gllm_jv_new_list(c, d->n);
    if (!l)
        return gllm_jv_oom();
    for (size_t i = 0; i < d->n; i++) {
        jlist *pair = gllm_jv_new_list(c, 2);
        if (!pair)
            return gllm_jv_oom();
        pair->items[0] = d->keys[i];
        pair->items[1] = d->vals[i];
        l->items[i] = (jv){.k = JV_LIST, .u.l = pair};
    }
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

gllm_status gllm_jv_apply_filter(jctx *c, const jexpr *e, jv v, jv *out)
{
    args a;
    GLLM_TRY(eval_args(c, e, &a));
    const char *f = e->name;
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const jv *dflt = arg(&a, 0, "default_value"), *boolean = arg(&a, 1, "boolean");
        bool use = v.k == JV_UNDEF || (boolean && gllm_jv_truthy(boolean) && !gllm_jv_truthy(&v));
        *out = use ? (dflt ? *dflt : mk_str("", 0)) : v;
        return GLLM_OK;
    }
    if (!strcmp(f, "safe")) {
        *out = v;
        return GLLM_OK;
    }
    if (!strcmp(f, "string"))
        return gllm_jv_to_string(c, &v, out);
    if (!strcmp(f, "tojson")) {
        if (a.n)
            return gllm_jv_rt_err(e, "tojson with arguments is not supported%s%s", "", "");
        jsbuf b = {0};
        gllm_status s = gllm_jv_write_json(&b, &v);
        if (s != GLLM_OK) {
            free(b.s);
            return s;
        }
        return gllm_jv_sb_to_value(c, &b, out);
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (v.k == JV_STR)
            *out = mk_int((long long)gllm_jv_utf8_len(v.u.s.s, v.u.s.n));
        else if (v.k == JV_LIST)
            *out = mk_int((long long)v.u.l->n);
        else if (v.k == JV_DICT)
            *out = mk_int((long long)v.u.d->n);
        else if (v.k == JV_UNDEF)
            *out = mk_int(0);
        else
            return gllm_jv_rt_err(e, "object of type '%s' has no len()%s", gllm_jv_type_name(&v), "");
        return GLLM_OK;
    }
    if (!strcmp(f, "first") || !strcmp(f, "last") || !strcmp(f, "list") || !strcmp(f, "reverse")) {
        jv l;
        GLLM_TRY(gllm_jv_list_from(c, &v, &l, e));
        size_t n = l.u.l->n;
        if (!strcmp(f, "first") || !strcmp(f, "last")) {
            *out = n ? l.u.l->items[f[0] == 'f' ? 0 : n - 1] : k_undef;
            return GLLM_OK;
        }
        jlist *r = gllm_jv_new_list(c, n);
        if (!r)
            return gllm_jv_oom();
        for (size_t i = 0; i < n; i++)
            r->items[i] = l.u.l->items[f[0] == 'r' ? n - 1 - i : i];
        if (f[0] == 'r' && v.k == JV_STR) {
            jsbuf b = {0};
            for (size_t i = 0; i < n; i++)
                if (gllm_jv_sb_add(&b, r->items[i].u.s.s, r->items[i].u.s.n) != GLLM_OK) {
                    free(b.s);
                    return gllm_jv_oom();
                }
            return gllm_jv_sb_to_value(c, &b, out);
        }
        out->k = JV_LIST;
        out->u.l = r;
        return GLLM_OK;
    }
    if (!strcmp(f, "join")) {
        jv l;
        const jv *sep = arg(&a, 0, "d");
        GLLM_TRY(gllm_jv_list_from(c, &v, &l, e));
        jsbuf b = {0};
        gllm_status s = GLLM_OK;
        for (size_t i = 0; i < l.u.l->n && s == GLLM_OK; i++) {
            if (i && sep)
                s = gllm_jv_write_value(&b, sep, false);
            if (s == GLLM_OK)
                s = gllm_jv_write_value(&b, &l.u.l->items[i], false);
        }
        if (s != GLLM_OK) {
            free(b.s);
            return s;
        }
        return gllm_jv_sb_to_value(c, &b, out);
    }
    if (!strcmp(f, "items")) {
        if (v.k != JV_DICT)
            return gllm_jv_rt_err(e, "items needs a mapping, got %s%s", gllm_jv_type_name(&v), "");
        return gllm_jv_items_of(c, v.u.d, out);
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

gllm_status gllm_jv_apply_test(const jexpr *e, const jv *v, bool *r)
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
            return gllm_jv_rt_err(e, "test '%s' needs a number, got %s", t, gllm_jv_type_name(v));
        *r = (num(v) % 2 == 0) == (t[0] == 'e');
    } else
        return gllm_jv_rt_err(e, "unknown test '%s'%s", t, "");
    if (e->negate)
        *r = !*r;
    return GLLM_OK;
}

gllm_status gllm_jv_call_method(jctx *c, const jexpr *e, jv obj, jv *out)
{
    args a;
    GLLM_TRY(eval_args(c, e, &a));
    const char *m = e->a->name;
    if (obj.k == JV_DICT) {
        if (!strcmp(m, "get")) {
            const jv *k = arg(&a, 0, "key"), *d = arg(&a, 1, "default");
            const jv *hit = NULL;
            for (size_t i = 0; k && i < obj.u.d->n; i++)
                if (gllm_jv_equal(&obj.u.d->keys[i], k))
                    hit = &obj.u.d->vals[i];
            *out = hit ? *hit : d ? *d : (jv){.k = JV_NONE};
            return GLLM_OK;
        }
        if (!strcmp(m, "items"))
            return gllm_jv_items_of(c, obj.u.d, out);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            jlist *l = gllm_jv_new_list(c, obj.u.d->n);
            if (!l)
                return gllm_jv_oom();
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
    return gllm_jv_rt_err(e, "'%s' object has no method '%s'", gllm_jv_type_name(&obj), m);
}

gllm_status gllm_jv_call_global(jctx *c, const jexpr *e, jv *out)
{
    args a;
    GLLM_TRY(eval_args(c, e, &a));
    const char *f = e->a->name;
    if (!strcmp(f, "raise_exception")) {
        jv msg = a.n ? a.v[0] : mk_str("", 0);
        jv s;
        GLLM_TRY(gllm_jv_to_string(c, &msg, &s));
        return gllm_fail(GLLM_ERR_INVALID, "chat template line %d raised: %.*s", e->line, (int)s.u.s.n,
                         s.u.s.s);
    }
    if (!strcmp(f, "namespace")) {
        jdict *d = gllm_jv_new_dict(c, true);
        if (!d)
            return gllm_jv_oom();
        for (int i = 0; i < a.n; i++) {
            if (!a.kw[i])
                return gllm_jv_rt_err(e, "namespace() takes keyword arguments only%s%s", "", "");
            GLLM_TRY(gllm_jv_dict_set_cstr(c, d, a.kw[i], a.v[i]));
        }
        out->k = JV_DICT;
        out->u.d = d;
        return GLLM_OK;
    }
    /* range */
    long long lo = 0, hi, step = 1;
    for (int i = 0; i < a.n; i++)
        if (!is_num(&a.v[i]))
            return gllm_jv_rt_err(e, "range() needs integers, got %s%s", gllm_jv_type_name(&a.v[i]), "");
    if (a.n == 1)
        hi = num(&a.v[0]);
    else if (a.n == 2 || a.n == 3) {
        lo = num(&a.v[0]);
        hi = num(&a.v[1]);
        if (a.n == 3)
            step = num(&a.v[2]);
    } else
        return gllm_jv_rt_err(e, "range() takes 1 to 3 arguments%s%s", "", "");
    if (step == 0)
        return gllm_jv_rt_err(e, "range() step must not be zero%s%s", "", "");
    long long n = step > 0 ? (hi > lo ? (hi - lo + step - 1) / step : 0) : (lo > hi ? (lo - hi - step - 1) / -step : 0);
    if (n > 1000000)
        return gllm_jv_rt_err(e, "range() too long%s%s", "", "");
    jlist *l = gllm_jv_new_list(c, (size_t)n);
    if (!l)
        return gllm_jv_oom();
    for (long long i = 0; i < n; i++)
        l->items[i] = mk_int(lo + i * step);
    out->k = JV_LIST;
    out->u.l = l;
    return GLLM_OK;
}

