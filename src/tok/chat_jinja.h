/* Internal to the chat-template module: the Jinja subset's syntax tree, values
 * and arena, shared by chat_parse.c (lexer + parser), chat_eval.c (renderer)
 * and chat.c (public API, built-in templates). */
#ifndef GLLM_CHAT_JINJA_H
#define GLLM_CHAT_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/status.h"
#include "tok/tok_internal.h"

/* Bump allocator: a template's tree and a render's values live in one arena
 * each and are freed together, so the interpreter never tracks ownership. */
typedef struct jarena_chunk jarena_chunk;
typedef struct jarena {
    jarena_chunk *head;
} jarena;
void *gllm_jarena_alloc(jarena *a, size_t bytes);
char *gllm_jarena_strndup(jarena *a, const char *s, size_t n);
void gllm_jarena_free(jarena *a);

/* ------------------------------------------------------------------ values */
typedef enum jkind { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_STR, JV_LIST, JV_DICT } jkind;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jv {
    jkind k;
    union {
        bool b;
        long long i;
        struct {
            const char *s;
            size_t n;
        } s;
        jlist *l;
        jdict *d;
    } u;
} jv;

struct jlist {
    jv *items;
    size_t n;
};
/* Insertion-ordered; a namespace() is a dict with is_ns set, the only value a
 * {% set x.attr %} may write to. */
struct jdict {
    jv *keys, *vals;
    size_t n, cap;
    bool is_ns;
};

/* ------------------------------------------------------------ syntax tree */
typedef enum jekind {
    JE_LIT,    /* lit */
    JE_NAME,   /* name */
    JE_ATTR,   /* a.name */
    JE_INDEX,  /* a[b] */
    JE_SLICE,  /* a[b:c:d], any of b/c/d NULL */
    JE_CALL,   /* a(args): a is JE_NAME (global) or JE_ATTR (method) */
    JE_FILTER, /* a | name(args) */
    JE_TEST,   /* a is [not] name(args); negate */
    JE_NOT,    /* not a */
    JE_NEG,    /* -a */
    JE_BIN,    /* a op b */
    JE_AND,    /* a and b (short-circuit) */
    JE_OR,     /* a or b */
    JE_COND,   /* b if a else c */
    JE_LIST,   /* [args] */
    JE_DICT,   /* {args[2i]: args[2i+1]} */
} jekind;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
} jop;

typedef struct jexpr jexpr;
struct jexpr {
    jekind k;
    int line;
    jop op;
    bool negate;
    jv lit;
    const char *name;
    jexpr *a, *b, *c, *d;
    jexpr **args;
    const char **kwnames; /* per argument: keyword name or NULL */
    int nargs;
};

typedef enum jskind { JS_TEXT, JS_OUT, JS_IF, JS_FOR, JS_SET, JS_BREAK, JS_CONTINUE } jskind;

typedef struct jstmt jstmt;
typedef struct jbody {
    jstmt **items;
    int n;
} jbody;

struct jstmt {
    jskind k;
    int line;
    const char *text; /* JS_TEXT */
    size_t len;
    jexpr *e;         /* JS_OUT value, JS_FOR iterable, JS_SET value */
    /* JS_IF: branches with conds[i] (NULL for else) and bodies[i] */
    jexpr **conds;
    jbody *bodies;
    int nbranches;
    /* JS_FOR: var(, var2) in e: body, else_body; JS_SET: var(.attr) = e */
    const char *var, *var2, *attr;
    jbody body, else_body;
};

typedef struct jtemplate {
    jarena arena;
    jbody root;
} jtemplate;

/* ------------------------------------------------------------------ tokens */
typedef enum jtkind { T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_OP, T_EOF } jtkind;

typedef struct jtoken {
    jtkind k;
    int line;
    const char *s; /* TEXT/NAME/OP/STR: bytes (STR decoded) */
    size_t n;
    long long ival;
} jtoken;

/* Tokens of a whole template, whitespace rules applied (chat_lex.c); TEXT and
 * STR bytes live in arena, NAME/OP bytes point into src. *toks is malloc'd. */
gllm_status gllm_jinja_lex(const char *src, jarena *arena, jtoken **toks, size_t *ntok);

/* Parse `src` into t (t->arena owns everything). Errors name the line and the
 * construct. */
gllm_status gllm_jinja_parse(const char *src, jtemplate *t);

/* The hint appended to every "cannot render" message. */
#define JINJA_HINT                                                                           \
    "; set \"chat_template\" in the config to a built-in name (chatml, llama2, llama3, "  \
    "mistral, plain) to use a known template instead"

/* Render with the given variables (names[i] = vals[i]); output malloc'd. */
gllm_status gllm_jinja_render(const jtemplate *t, const char *const *names, const jv *vals, int nvars,
                         jarena *scratch, char **out, size_t *len);

/* ------------------------------------------------------- render internals */
/* rendered text: the tokenizer module's growable string */
typedef tok_str jsbuf;

typedef struct jframe {
    const char **names;
    jv *vals;
    int n, cap;
} jframe;

#define MAX_DEPTH 64

typedef struct jctx {
    jarena *a;
    jframe frames[MAX_DEPTH];
    int nframes;
    const char *const *gnames;
    const jv *gvals;
    int ngl;
    jsbuf out;
    int loop_ctl; /* 1: break, 2: continue pending */
} jctx;

static inline jv mk_str(const char *s, size_t n)
{
    jv v = {.k = JV_STR};
    v.u.s.s = s;
    v.u.s.n = n;
    return v;
}
static inline jv mk_int(long long i) { return (jv){.k = JV_INT, .u.i = i}; }
static inline jv mk_bool(bool b) { return (jv){.k = JV_BOOL, .u.b = b}; }
static const jv k_undef = {.k = JV_UNDEF};
static inline bool is_num(const jv *v) { return v->k == JV_INT || v->k == JV_BOOL; }
static inline long long num(const jv *v) { return v->k == JV_BOOL ? v->u.b : v->u.i; }

/* chat_eval.c: values, scopes, expressions */
gllm_status gllm_jv_sb_add(jsbuf *b, const char *s, size_t n);
gllm_status gllm_jv_sb_str(jsbuf *b, const char *s);
gllm_status gllm_jv_sb_to_value(jctx *c, jsbuf *b, jv *out); /* frees b */
gllm_status gllm_jv_oom(void);
gllm_status gllm_jv_rt_err(const jexpr *e, const char *fmt, const char *a, const char *b);
const char *gllm_jv_type_name(const jv *v);
bool gllm_jv_truthy(const jv *v);
bool gllm_jv_equal(const jv *x, const jv *y);
size_t gllm_jv_utf8_len(const char *s, size_t n);
gllm_status gllm_jv_write_value(jsbuf *b, const jv *v, bool nested); /* Python str() */
gllm_status gllm_jv_write_json(jsbuf *b, const jv *v);               /* json.dumps() */
gllm_status gllm_jv_to_string(jctx *c, const jv *v, jv *out);
jlist *gllm_jv_new_list(jctx *c, size_t n);
jdict *gllm_jv_new_dict(jctx *c, bool ns);
gllm_status gllm_jv_dict_set(jctx *c, jdict *d, jv key, jv val);
gllm_status gllm_jv_dict_set_cstr(jctx *c, jdict *d, const char *k, jv val);
gllm_status gllm_jv_eval(jctx *c, const jexpr *e, jv *out);

/* chat_builtins.c: filters, tests, methods and global functions */
gllm_status gllm_jv_list_from(jctx *c, const jv *v, jv *out, const jexpr *e); /* iteration order */
gllm_status gllm_jv_items_of(jctx *c, const jdict *d, jv *out);
gllm_status gllm_jv_apply_filter(jctx *c, const jexpr *e, jv v, jv *out);
gllm_status gllm_jv_apply_test(const jexpr *e, const jv *v, bool *r);
gllm_status gllm_jv_call_method(jctx *c, const jexpr *e, jv obj, jv *out);
gllm_status gllm_jv_call_global(jctx *c, const jexpr *e, jv *out);

#endif
