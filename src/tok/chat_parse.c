/* Parser of the Jinja subset used by chat templates (tokens from chat_lex.c).
 * The parser refuses unsupported tags, filters, tests, methods and globals at
 * open time, so a template that cannot be rendered fails before training. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat_jinja.h"

/* ------------------------------------------------------------------ parser */
typedef struct parser {
    jtoken *t;
    size_t i;
    jarena *a;
} parser;

static jtoken *peek(parser *P) { return &P->t[P->i]; }
static bool is_op(const jtoken *t, const char *op)
{
    return t->k == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static bool is_kw(const jtoken *t, const char *kw)
{
    return t->k == T_NAME && t->n == strlen(kw) && !memcmp(t->s, kw, t->n);
}
static bool accept_op(parser *P, const char *op)
{
    if (is_op(peek(P), op)) {
        P->i++;
        return true;
    }
    return false;
}
static bool accept_kw(parser *P, const char *kw)
{
    if (is_kw(peek(P), kw)) {
        P->i++;
        return true;
    }
    return false;
}

static const char *tok_desc(const jtoken *t)
{
    static _Thread_local char buf[64];
    switch (t->k) {
    case T_EOF: return "end of template";
    case T_VEND: return "'}}'";
    case T_BEND: return "'%}'";
    case T_TEXT: return "text";
    case T_STR: return "a string";
    case T_INT: return "a number";
    default: snprintf(buf, sizeof buf, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    }
}

static gllm_status expect_op(parser *P, const char *op)
{
    if (!accept_op(P, op))
        return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected '%s', found %s",
                         peek(P)->line, op, tok_desc(peek(P)));
    return GLLM_OK;
}

static gllm_status expect_name(parser *P, const char **name)
{
    jtoken *t = peek(P);
    if (t->k != T_NAME)
        return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected a name, found %s", t->line,
                         tok_desc(t));
    *name = gllm_jarena_strndup(P->a, t->s, t->n);
    if (!*name)
        return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory");
    P->i++;
    return GLLM_OK;
}

static jexpr *new_expr(parser *P, jekind k, int line)
{
    jexpr *e = gllm_jarena_alloc(P->a, sizeof *e);
    if (e) {
        memset(e, 0, sizeof *e);
        e->k = k;
        e->line = line;
    }
    return e;
}

static bool in_list(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(name, *list))
            return true;
    return false;
}

static const char *const k_filters[] = {"trim", "length", "count", "default", "d", "tojson", "string",
                                        "upper", "lower", "first", "last", "join", "replace", "int",
                                        "list", "items", "reverse", "safe", "capitalize", "title", NULL};
static const char *const k_tests[] = {"defined", "undefined", "none", "string", "number", "integer",
                                      "mapping", "iterable", "sequence", "boolean", "true", "false",
                                      "even", "odd", NULL};
static const char *const k_methods[] = {"strip", "lstrip", "rstrip", "startswith", "endswith", "split",
                                        "upper", "lower", "replace", "title", "capitalize", "get",
                                        "items", "keys", "values", NULL};
static const char *const k_globals[] = {"raise_exception", "namespace", "range", NULL};

static gllm_status parse_expr(parser *P, jexpr **out);
static gllm_status parse_or(parser *P, jexpr **out);

#define OOM_IF(x)                                                                  \
    do {                                                                           \
        if (!(x))                                                                  \
            return gllm_fail(GLLM_ERR_OOM, "chat template: out of memory parsing"); \
    } while (0)

/* (args) with optional name=value keywords; the '(' is already consumed. */
static gllm_status parse_args(parser *P, jexpr *e, const char *close)
{
    jexpr *args[32];
    const char *kw[32];
    int n = 0;
    while (!accept_op(P, close)) {
        if (n && !accept_op(P, ","))
            return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected ',' or '%s', found %s",
                             peek(P)->line, close, tok_desc(peek(P)));
        if (accept_op(P, close))
            break;
        if (n == 32)
            return gllm_fail(GLLM_ERR_UNSUPPORTED, "chat template line %d: more than 32 arguments",
                             peek(P)->line);
        kw[n] = NULL;
        if (peek(P)->k == T_NAME && is_op(&P->t[P->i + 1], "=")) {
            GLLM_TRY(expect_name(P, &kw[n]));
            P->i++;
        }
        GLLM_TRY(parse_expr(P, &args[n]));
        n++;
    }
    e->nargs = n;
    e->args = gllm_jarena_alloc(P->a, (size_t)(n ? n : 1) * sizeof *args);
    e->kwnames = gllm_jarena_alloc(P->a, (size_t)(n ? n : 1) * sizeof *kw);
    OOM_IF(e->args && e->kwnames);
    memcpy(e->args, args, (size_t)n * sizeof *args);
    memcpy(e->kwnames, kw, (size_t)n * sizeof *kw);
    return GLLM_OK;
}

static gllm_status parse_primary(parser *P, jexpr **out)
{
    jtoken *t = peek(P);
    jexpr *e;
    if (t->k == T_STR || t->k == T_INT) {
        OOM_IF(e = new_expr(P, JE_LIT, t->line));
        if (t->k == T_STR) {
            e->lit.k = JV_STR;
            e->lit.u.s.s = t->s;
            e->lit.u.s.n = t->n;
        } else {
            e->lit.k = JV_INT;
            e->lit.u.i = t->ival;
        }
        P->i++;
    } else if (t->k == T_NAME) {
        OOM_IF(e = new_expr(P, JE_LIT, t->line));
        if (is_kw(t, "true") || is_kw(t, "True") || is_kw(t, "false") || is_kw(t, "False")) {
            e->lit.k = JV_BOOL;
            e->lit.u.b = t->s[0] == 't' || t->s[0] == 'T';
            P->i++;
        } else if (is_kw(t, "none") || is_kw(t, "None")) {
            e->lit.k = JV_NONE;
            P->i++;
        } else {
            e->k = JE_NAME;
            GLLM_TRY(expect_name(P, &e->name));
        }
    } else if (accept_op(P, "(")) {
        GLLM_TRY(parse_expr(P, &e));
        if (is_op(peek(P), ","))
            return gllm_fail(GLLM_ERR_UNSUPPORTED,
                             "chat template line %d: unsupported construct: tuple" JINJA_HINT, t->line);
        GLLM_TRY(expect_op(P, ")"));
    } else if (accept_op(P, "[")) {
        OOM_IF(e = new_expr(P, JE_LIST, t->line));
        GLLM_TRY(parse_args(P, e, "]"));
    } else if (accept_op(P, "{")) {
        OOM_IF(e = new_expr(P, JE_DICT, t->line));
        jexpr *items[64];
        int n = 0;
        while (!accept_op(P, "}")) {
            if (n && !accept_op(P, ","))
                return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected ',' in dict",
                                 peek(P)->line);
            if (accept_op(P, "}"))
                break;
            if (n == 64)
                return gllm_fail(GLLM_ERR_UNSUPPORTED, "chat template line %d: dict literal too long",
                                 t->line);
            GLLM_TRY(parse_expr(P, &items[n]));
            GLLM_TRY(expect_op(P, ":"));
            GLLM_TRY(parse_expr(P, &items[n + 1]));
            n += 2;
        }
        e->nargs = n;
        OOM_IF(e->args = gllm_jarena_alloc(P->a, (size_t)(n ? n : 1) * sizeof *items));
        memcpy(e->args, items, (size_t)n * sizeof *items);
    } else {
        return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected an expression, found %s",
                         t->line, tok_desc(t));
    }
    *out = e;
    return GLLM_OK;
}

/* .attr, [index or slice], (call) after a primary. */
static gllm_status parse_postfix(parser *P, jexpr **io)
{
    for (;;) {
        jtoken *t = peek(P);
        jexpr *e;
        if (accept_op(P, ".")) {
            OOM_IF(e = new_expr(P, JE_ATTR, t->line));
            e->a = *io;
            GLLM_TRY(expect_name(P, &e->name));
        } else if (accept_op(P, "[")) {
            jexpr *parts[3] = {NULL, NULL, NULL};
            int np = 0;
            bool slice = false;
            for (;;) {
                if (!is_op(peek(P), ":") && !is_op(peek(P), "]"))
                    GLLM_TRY(parse_expr(P, &parts[np]));
                if (accept_op(P, "]"))
                    break;
                GLLM_TRY(expect_op(P, ":"));
                slice = true;
                if (++np == 3)
                    return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: bad slice", t->line);
            }
            OOM_IF(e = new_expr(P, slice ? JE_SLICE : JE_INDEX, t->line));
            e->a = *io;
            e->b = parts[0];
            e->c = parts[1];
            e->d = parts[2];
            if (!slice && !e->b)
                return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: empty subscript", t->line);
        } else if (accept_op(P, "(")) {
            OOM_IF(e = new_expr(P, JE_CALL, t->line));
            e->a = *io;
            if (e->a->k == JE_NAME && !in_list(e->a->name, k_globals))
                return gllm_fail(GLLM_ERR_UNSUPPORTED,
                                 "chat template line %d: unsupported function '%s()'" JINJA_HINT,
                                 t->line, e->a->name);
            if (e->a->k == JE_ATTR && !in_list(e->a->name, k_methods))
                return gllm_fail(GLLM_ERR_UNSUPPORTED,
                                 "chat template line %d: unsupported method '.%s()'" JINJA_HINT,
                                 t->line, e->a->name);
            if (e->a->k != JE_NAME && e->a->k != JE_ATTR)
                return gllm_fail(GLLM_ERR_UNSUPPORTED,
                                 "chat template line %d: unsupported call of an expression" JINJA_HINT,
                                 t->line);
            GLLM_TRY(parse_args(P, e, ")"));
        } else {
            return GLLM_OK;
        }
        *io = e;
    }
}

static gllm_status parse_unary(parser *P, jexpr **out)
{
    jtoken *t = peek(P);
    jexpr *e;
    if (accept_op(P, "-")) {
        OOM_IF(e = new_expr(P, JE_NEG, t->line));
        GLLM_TRY(parse_unary(P, &e->a));
        *out = e;
        return GLLM_OK;
    }
    if (accept_op(P, "+"))
        return parse_unary(P, out);
    GLLM_TRY(parse_primary(P, &e));
    GLLM_TRY(parse_postfix(P, &e));
    for (;;) {
        jtoken *f = peek(P);
        jexpr *x;
        if (accept_op(P, "|")) {
            OOM_IF(x = new_expr(P, JE_FILTER, f->line));
            x->a = e;
            GLLM_TRY(expect_name(P, &x->name));
            if (!in_list(x->name, k_filters))
                return gllm_fail(GLLM_ERR_UNSUPPORTED,
                                 "chat template line %d: unsupported filter '|%s'" JINJA_HINT, f->line,
                                 x->name);
            if (accept_op(P, "("))
                GLLM_TRY(parse_args(P, x, ")"));
        } else if (accept_kw(P, "is")) {
            OOM_IF(x = new_expr(P, JE_TEST, f->line));
            x->a = e;
            x->negate = accept_kw(P, "not");
            GLLM_TRY(expect_name(P, &x->name));
            if (!in_list(x->name, k_tests))
                return gllm_fail(GLLM_ERR_UNSUPPORTED,
                                 "chat template line %d: unsupported test 'is %s'" JINJA_HINT, f->line,
                                 x->name);
        } else {
            break;
        }
        e = x;
    }
    *out = e;
    return GLLM_OK;
}

static gllm_status parse_binary_level(parser *P, int level, jexpr **out);

/* Jinja's precedence, loosest first: + -, ~, * / // %, unary. */
static gllm_status parse_binary_level(parser *P, int level, jexpr **out)
{
    static const struct {
        const char *op;
        jop code;
        int level;
    } ops[] = {{"+", JOP_ADD, 0}, {"-", JOP_SUB, 0}, {"~", JOP_CONCAT, 1}, {"*", JOP_MUL, 2},
               {"/", JOP_DIV, 2}, {"//", JOP_FLOORDIV, 2}, {"%", JOP_MOD, 2}};
    if (level == 3)
        return parse_unary(P, out);
    jexpr *lhs;
    GLLM_TRY(parse_binary_level(P, level + 1, &lhs));
    for (;;) {
        jtoken *t = peek(P);
        int found = -1;
        for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
            if (ops[i].level == level && is_op(t, ops[i].op))
                found = (int)i;
        if (found < 0)
            break;
        P->i++;
        jexpr *e;
        OOM_IF(e = new_expr(P, JE_BIN, t->line));
        e->op = ops[found].code;
        e->a = lhs;
        GLLM_TRY(parse_binary_level(P, level + 1, &e->b));
        lhs = e;
    }
    *out = lhs;
    return GLLM_OK;
}

static gllm_status parse_compare(parser *P, jexpr **out)
{
    static const struct {
        const char *op;
        jop code;
    } ops[] = {{"==", JOP_EQ}, {"!=", JOP_NE}, {"<=", JOP_LE}, {">=", JOP_GE}, {"<", JOP_LT}, {">", JOP_GT}};
    jexpr *lhs, *last = NULL;
    GLLM_TRY(parse_binary_level(P, 0, &lhs));
    for (;;) {
        jtoken *t = peek(P);
        int code = -1;
        for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
            if (is_op(t, ops[i].op))
                code = (int)ops[i].code;
        if (code >= 0) {
            P->i++;
        } else if (is_kw(t, "in")) {
            P->i++;
            code = JOP_IN;
        } else if (is_kw(t, "not") && is_kw(&P->t[P->i + 1], "in")) {
            P->i += 2;
            code = JOP_NOTIN;
        } else {
            break;
        }
        /* a < b < c is (a < b) and (b < c), as in Python */
        jexpr *e;
        OOM_IF(e = new_expr(P, JE_BIN, t->line));
        e->op = (jop)code;
        e->a = last ? last->b : lhs;
        GLLM_TRY(parse_binary_level(P, 0, &e->b));
        if (last) {
            jexpr *both;
            OOM_IF(both = new_expr(P, JE_AND, t->line));
            both->a = lhs;
            both->b = e;
            lhs = both;
        } else {
            lhs = e;
        }
        last = e;
    }
    *out = lhs;
    return GLLM_OK;
}

static gllm_status parse_not(parser *P, jexpr **out)
{
    jtoken *t = peek(P);
    if (accept_kw(P, "not")) {
        jexpr *e;
        OOM_IF(e = new_expr(P, JE_NOT, t->line));
        GLLM_TRY(parse_not(P, &e->a));
        *out = e;
        return GLLM_OK;
    }
    return parse_compare(P, out);
}

static gllm_status parse_and(parser *P, jexpr **out)
{
    GLLM_TRY(parse_not(P, out));
    while (is_kw(peek(P), "and")) {
        jexpr *e;
        OOM_IF(e = new_expr(P, JE_AND, peek(P)->line));
        P->i++;
        e->a = *out;
        GLLM_TRY(parse_not(P, &e->b));
        *out = e;
    }
    return GLLM_OK;
}

static gllm_status parse_or(parser *P, jexpr **out)
{
    GLLM_TRY(parse_and(P, out));
    while (is_kw(peek(P), "or")) {
        jexpr *e;
        OOM_IF(e = new_expr(P, JE_OR, peek(P)->line));
        P->i++;
        e->a = *out;
        GLLM_TRY(parse_and(P, &e->b));
        *out = e;
    }
    return GLLM_OK;
}

/* x if cond else y (the else part may be left out: undefined) */
static gllm_status parse_expr(parser *P, jexpr **out)
{
    GLLM_TRY(parse_or(P, out));
    while (is_kw(peek(P), "if")) {
        jexpr *e;
        OOM_IF(e = new_expr(P, JE_COND, peek(P)->line));
        P->i++;
        e->b = *out;
        GLLM_TRY(parse_or(P, &e->a));
        if (accept_kw(P, "else"))
            GLLM_TRY(parse_expr(P, &e->c));
        *out = e;
    }
    return GLLM_OK;
}

/* ---------------------------------------------------------------- statements */
static gllm_status expect_bend(parser *P)
{
    if (peek(P)->k != T_BEND)
        return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected '%%}', found %s",
                         peek(P)->line, tok_desc(peek(P)));
    P->i++;
    return GLLM_OK;
}

static gllm_status body_push(parser *P, jbody *b, jstmt *s, int *cap)
{
    if (b->n == *cap) {
        int nc = *cap ? 2 * *cap : 8;
        jstmt **items = gllm_jarena_alloc(P->a, (size_t)nc * sizeof *items);
        OOM_IF(items);
        if (b->n)
            memcpy(items, b->items, (size_t)b->n * sizeof *items);
        b->items = items;
        *cap = nc;
    }
    b->items[b->n++] = s;
    return GLLM_OK;
}

/* Statements up to a block tag named in `ends` (NULL-terminated); *end gets
 * the tag's index, the parser stops after that tag name. */
static gllm_status parse_body(parser *P, jbody *b, const char *const *ends, int *end);

static gllm_status parse_block(parser *P, jstmt *s, const char *const *ends, int *end_found, bool *is_end)
{
    int line = peek(P)->line;
    *is_end = false;
    for (int i = 0; ends && ends[i]; i++)
        if (is_kw(peek(P), ends[i])) {
            P->i++;
            *end_found = i;
            *is_end = true;
            return GLLM_OK;
        }
    if (accept_kw(P, "if")) {
        static const char *const if_ends[] = {"elif", "else", "endif", NULL};
        jexpr *conds[64];
        jbody bodies[64];
        int n = 0, which = 0;
        GLLM_TRY(parse_expr(P, &conds[0]));
        for (;;) {
            GLLM_TRY(expect_bend(P));
            if (n == 64)
                return gllm_fail(GLLM_ERR_UNSUPPORTED, "chat template line %d: too many elif", line);
            GLLM_TRY(parse_body(P, &bodies[n], if_ends, &which));
            n++;
            if (which == 2)
                break;
            conds[n] = NULL;
            if (which == 0)
                GLLM_TRY(parse_expr(P, &conds[n]));
        }
        GLLM_TRY(expect_bend(P));
        s->k = JS_IF;
        s->nbranches = n;
        s->conds = gllm_jarena_alloc(P->a, (size_t)n * sizeof *conds);
        s->bodies = gllm_jarena_alloc(P->a, (size_t)n * sizeof *bodies);
        OOM_IF(s->conds && s->bodies);
        memcpy(s->conds, conds, (size_t)n * sizeof *conds);
        memcpy(s->bodies, bodies, (size_t)n * sizeof *bodies);
        return GLLM_OK;
    }
    if (accept_kw(P, "for")) {
        static const char *const for_ends[] = {"else", "endfor", NULL};
        s->k = JS_FOR;
        GLLM_TRY(expect_name(P, &s->var));
        if (accept_op(P, ","))
            GLLM_TRY(expect_name(P, &s->var2));
        if (!accept_kw(P, "in"))
            return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected 'in' in for", line);
        GLLM_TRY(parse_or(P, &s->e));
        if (is_kw(peek(P), "if") || is_kw(peek(P), "recursive"))
            return gllm_fail(GLLM_ERR_UNSUPPORTED,
                             "chat template line %d: unsupported construct '{%% for ... %.*s %%}'" JINJA_HINT,
                             line, (int)peek(P)->n, peek(P)->s);
        GLLM_TRY(expect_bend(P));
        int which;
        GLLM_TRY(parse_body(P, &s->body, for_ends, &which));
        GLLM_TRY(expect_bend(P));
        if (which == 0) {
            static const char *const endfor[] = {"endfor", NULL};
            GLLM_TRY(parse_body(P, &s->else_body, endfor, &which));
            GLLM_TRY(expect_bend(P));
        }
        return GLLM_OK;
    }
    if (accept_kw(P, "set")) {
        s->k = JS_SET;
        GLLM_TRY(expect_name(P, &s->var));
        if (accept_op(P, "."))
            GLLM_TRY(expect_name(P, &s->attr));
        if (!accept_op(P, "="))
            return gllm_fail(GLLM_ERR_UNSUPPORTED,
                             "chat template line %d: unsupported construct: '{%% set %s %%}' block or "
                             "multiple targets" JINJA_HINT,
                             line, s->var);
        GLLM_TRY(parse_expr(P, &s->e));
        return expect_bend(P);
    }
    if (accept_kw(P, "break") || accept_kw(P, "continue")) {
        s->k = is_kw(&P->t[P->i - 1], "break") ? JS_BREAK : JS_CONTINUE;
        return expect_bend(P);
    }
    if (accept_kw(P, "generation")) {
        /* transformers' assistant-mask marker: renders its body unchanged */
        static const char *const gen_end[] = {"endgeneration", NULL};
        int which;
        GLLM_TRY(expect_bend(P));
        s->k = JS_IF;
        s->nbranches = 1;
        s->conds = gllm_jarena_alloc(P->a, sizeof *s->conds);
        s->bodies = gllm_jarena_alloc(P->a, sizeof *s->bodies);
        OOM_IF(s->conds && s->bodies);
        s->conds[0] = NULL;
        GLLM_TRY(parse_body(P, &s->bodies[0], gen_end, &which));
        return expect_bend(P);
    }
    jtoken *t = peek(P);
    return gllm_fail(GLLM_ERR_UNSUPPORTED, "chat template line %d: unsupported construct '{%% %.*s %%}'" JINJA_HINT,
                     line, t->k == T_NAME ? (int)t->n : 1, t->k == T_NAME ? t->s : "?");
}

static gllm_status parse_body(parser *P, jbody *b, const char *const *ends, int *end)
{
    int cap = 0;
    b->items = NULL;
    b->n = 0;
    for (;;) {
        jtoken *t = peek(P);
        if (t->k == T_EOF) {
            if (ends)
            {
                int last = 0;
                while (ends[last + 1])
                    last++;
                return gllm_fail(GLLM_ERR_FORMAT, "chat template: missing '{%% %s %%}' at end of template",
                                 ends[last]);
            }
            return GLLM_OK;
        }
        jstmt *s = gllm_jarena_alloc(P->a, sizeof *s);
        OOM_IF(s);
        memset(s, 0, sizeof *s);
        s->line = t->line;
        if (t->k == T_TEXT) {
            s->k = JS_TEXT;
            s->text = t->s;
            s->len = t->n;
            P->i++;
        } else if (t->k == T_VBEGIN) {
            P->i++;
            s->k = JS_OUT;
            GLLM_TRY(parse_expr(P, &s->e));
            if (peek(P)->k != T_VEND)
                return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: expected '}}', found %s",
                                 peek(P)->line, tok_desc(peek(P)));
            P->i++;
        } else if (t->k == T_BBEGIN) {
            P->i++;
            bool is_end;
            GLLM_TRY(parse_block(P, s, ends, end, &is_end));
            if (is_end)
                return GLLM_OK;
        } else {
            return gllm_fail(GLLM_ERR_FORMAT, "chat template line %d: unexpected %s", t->line, tok_desc(t));
        }
        GLLM_TRY(body_push(P, b, s, &cap));
    }
}

gllm_status gllm_jinja_parse(const char *src, jtemplate *t)
{
    jtoken *toks = NULL;
    size_t ntok = 0;
    GLLM_TRY(gllm_jinja_lex(src, &t->arena, &toks, &ntok));
    parser P = {.t = toks, .i = 0, .a = &t->arena};
    gllm_status s = parse_body(&P, &t->root, NULL, NULL);
    free(toks);
    return s;
}
