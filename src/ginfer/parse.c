/* Input lines -> gllm_ginfer_item: the own forms ({"id","prompt"},
 * {"id","messages"}, scoring) and OpenAI batch lines, with --set defaults
 * beneath each line's keys. A bad line is never fatal here: the item carries
 * "path:line: field: what" and becomes an error result. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/ginfer.h"
#include "gllm/json.h"

#define MAX_STOP 16
#define MAX_N 128
#define MAX_TOP_LOGPROBS 20
#define DEFAULT_MAX_TOKENS 256

static void item_fail(gllm_ginfer_item *it, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void item_fail(gllm_ginfer_item *it, const char *path, const char *fmt, ...)
{
    if (it->status != GLLM_OK)
        return; /* keep the first reason */
    it->status = GLLM_ERR_INVALID;
    int k = snprintf(it->error, sizeof it->error, "%s:%ld: ", path, it->line);
    if (k < 0 || (size_t)k >= sizeof it->error)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->error + k, sizeof it->error - (size_t)k, fmt, ap);
    va_end(ap);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

/* ------------------------------------------------------------ sampling keys */

typedef enum key_type { K_INT, K_NUM, K_BOOL, K_STOP, K_LOGPROBS } key_type;

typedef struct key_spec {
    const char *name;
    key_type type;
    double lo, hi; /* numeric range, inclusive */
} key_spec;

static const key_spec KEYS[] = {
    {"max_tokens", K_INT, 0, 1e9},
    {"max_completion_tokens", K_INT, 0, 1e9},
    {"temperature", K_NUM, 0, 1e4},
    {"top_p", K_NUM, 0, 1},
    {"top_k", K_INT, 0, 1e9},
    {"min_p", K_NUM, 0, 1},
    {"repetition_penalty", K_NUM, 1e-6, 1e4},
    {"seed", K_INT, -9007199254740992.0, 9007199254740992.0},
    {"n", K_INT, 1, MAX_N},
    {"stop", K_STOP, 0, 0},
    {"logprobs", K_LOGPROBS, 0, MAX_TOP_LOGPROBS},
    {"top_logprobs", K_INT, 0, MAX_TOP_LOGPROBS},
    {"ignore_eos", K_BOOL, 0, 0},
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

static const key_spec *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

static void free_stop(gllm_ginfer_item *it)
{
    for (int i = 0; i < it->n_stop; i++)
        free(it->stop[i]);
    free(it->stop);
    it->stop = NULL;
    it->n_stop = 0;
}

/* Check a value against its key; NULL when fine, else what is wrong. */
static const char *check_value(const key_spec *k, const cJSON *v, char *buf, size_t n)
{
    switch (k->type) {
    case K_INT:
    case K_NUM: {
        if (!cJSON_IsNumber(v))
            return "must be a number";
        double x = v->valuedouble;
        if (!isfinite(x) || x < k->lo || x > k->hi ||
            (k->type == K_INT && x != floor(x))) {
            snprintf(buf, n, "must be %s in [%g, %g], got %g",
                     k->type == K_INT ? "an integer" : "a number", k->lo, k->hi, x);
            return buf;
        }
        if (strcmp(k->name, "top_p") == 0 && x <= 0)
            return "must be in (0, 1]";
        return NULL;
    }
    case K_BOOL:
        return cJSON_IsBool(v) ? NULL : "must be true or false";
    case K_LOGPROBS:
        if (cJSON_IsBool(v))
            return NULL;
        if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= MAX_TOP_LOGPROBS &&
            v->valuedouble == floor(v->valuedouble))
            return NULL;
        return "must be true/false or a number of top logprobs in [0, 20]";
    case K_STOP: {
        if (cJSON_IsString(v))
            return v->valuestring[0] ? NULL : "must not be an empty string";
        if (!cJSON_IsArray(v))
            return "must be a string or a list of strings";
        int cnt = cJSON_GetArraySize(v);
        if (cnt > MAX_STOP) {
            snprintf(buf, n, "has %d strings, at most %d are allowed", cnt, MAX_STOP);
            return buf;
        }
        const cJSON *s;
        cJSON_ArrayForEach(s, v) {
            if (!cJSON_IsString(s) || !s->valuestring[0])
                return "must be a list of non-empty strings";
        }
        return NULL;
    }
    }
    return "unknown type";
}

/* Apply one (already checked) value. top_given: "top_logprobs" was set by
 * this source, so an integer "logprobs" does not override it. */
static void apply_value(gllm_ginfer_item *it, const key_spec *k, const cJSON *v, int *max_ct)
{
    const char *nm = k->name;
    if (strcmp(nm, "max_tokens") == 0)
        it->max_tokens = v->valueint;
    else if (strcmp(nm, "max_completion_tokens") == 0)
        *max_ct = v->valueint;
    else if (strcmp(nm, "temperature") == 0)
        it->sampling.temperature = (float)v->valuedouble;
    else if (strcmp(nm, "top_p") == 0)
        it->sampling.top_p = (float)v->valuedouble;
    else if (strcmp(nm, "top_k") == 0)
        it->sampling.top_k = v->valueint;
    else if (strcmp(nm, "min_p") == 0)
        it->sampling.min_p = (float)v->valuedouble;
    else if (strcmp(nm, "repetition_penalty") == 0)
        it->sampling.repetition_penalty = (float)v->valuedouble;
    else if (strcmp(nm, "seed") == 0) {
        it->sampling.seed = (uint64_t)(int64_t)v->valuedouble;
        it->seed_given = true;
    } else if (strcmp(nm, "n") == 0)
        it->n = v->valueint;
    else if (strcmp(nm, "ignore_eos") == 0)
        it->ignore_eos = cJSON_IsTrue(v);
    else if (strcmp(nm, "top_logprobs") == 0)
        it->top_logprobs = v->valueint;
    else if (strcmp(nm, "logprobs") == 0) {
        if (cJSON_IsBool(v))
            it->logprobs = cJSON_IsTrue(v);
        else { /* the completions API: an integer asks for that many top logprobs */
            it->logprobs = true;
            it->top_logprobs = v->valueint;
        }
    } else if (strcmp(nm, "stop") == 0) {
        free_stop(it);
        int cnt = cJSON_IsString(v) ? 1 : cJSON_GetArraySize(v);
        it->stop = calloc((size_t)cnt, sizeof *it->stop);
        if (!it->stop)
            return;
        if (cJSON_IsString(v))
            it->stop[it->n_stop++] = dup_str(v->valuestring);
        else {
            const cJSON *s;
            cJSON_ArrayForEach(s, v) it->stop[it->n_stop++] = dup_str(s->valuestring);
        }
    }
}

/* Keys of OpenAI bodies that gllm cannot honour: refused when set to
 * anything but their neutral value, so that a run never silently differs
 * from what the file asked for. */
static const char *unsupported_body_key(const cJSON *body, char *buf, size_t n)
{
    static const char *zero_keys[] = {"frequency_penalty", "presence_penalty"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, zero_keys[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0)) {
            snprintf(buf, n, "body.%s is not supported (use repetition_penalty)", zero_keys[i]);
            return buf;
        }
    }
    static const char *true_keys[] = {"stream", "echo"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, true_keys[i]);
        if (cJSON_IsTrue(v)) {
            snprintf(buf, n, "body.%s=true is not supported", true_keys[i]);
            return buf;
        }
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "best_of");
    if (cJSON_IsNumber(v) && v->valuedouble > 1)
        return "body.best_of > 1 is not supported (use n)";
    v = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (v && !cJSON_IsNull(v) && cJSON_GetArraySize(v) > 0)
        return "body.logit_bias is not supported";
    v = cJSON_GetObjectItemCaseSensitive(body, "suffix");
    if (cJSON_IsString(v) && v->valuestring[0])
        return "body.suffix is not supported";
    v = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (v && !cJSON_IsNull(v) && cJSON_GetArraySize(v) > 0)
        return "body.tools is not supported";
    v = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (v && !cJSON_IsNull(v)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return "body.response_format other than {\"type\": \"text\"} is not supported";
    }
    return NULL;
}

/* Apply the sampling keys found in src (nulls count as absent). where: ""
 * for top-level keys, "body." for OpenAI bodies. */
static void apply_keys(gllm_ginfer_item *it, const cJSON *src, const char *where,
                       const char *path)
{
    int max_ct = -1;
    for (size_t i = 0; i < N_KEYS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, KEYS[i].name);
        if (!v || cJSON_IsNull(v))
            continue;
        char buf[160];
        const char *bad = check_value(&KEYS[i], v, buf, sizeof buf);
        if (bad) {
            item_fail(it, path, "%s%s %s", where, KEYS[i].name, bad);
            return;
        }
        apply_value(it, &KEYS[i], v, &max_ct);
    }
    if (max_ct >= 0)
        it->max_tokens = max_ct;
}

gllm_status gllm_ginfer_set(gllm_ginfer_defaults *d, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return gllm_fail(GLLM_ERR_INVALID, "--set '%s': expected key=value", kv);
    char key[64];
    size_t kl = (size_t)(eq - kv);
    if (kl >= sizeof key)
        return gllm_fail(GLLM_ERR_INVALID, "--set '%s': key too long", kv);
    memcpy(key, kv, kl);
    key[kl] = 0;
    const key_spec *k = find_key(key);
    if (!k) {
        char known[512] = "";
        for (size_t i = 0; i < N_KEYS; i++) {
            strncat(known, KEYS[i].name, sizeof known - strlen(known) - 1);
            if (i + 1 < N_KEYS)
                strncat(known, ", ", sizeof known - strlen(known) - 1);
        }
        return gllm_fail(GLLM_ERR_INVALID, "--set: unknown key '%s' (known: %s)", key, known);
    }
    const char *val = eq + 1;
    cJSON *v = cJSON_Parse(val);
    if (!v)
        v = cJSON_CreateString(val); /* a bare word: the string itself */
    if (!v)
        return gllm_fail(GLLM_ERR_OOM, "--set %s: out of memory", key);
    char buf[160];
    const char *bad = check_value(k, v, buf, sizeof buf);
    if (bad) {
        cJSON_Delete(v);
        return gllm_fail(GLLM_ERR_INVALID, "--set %s=%s: %s %s", key, val, key, bad);
    }
    if (!d->obj && !(d->obj = cJSON_CreateObject())) {
        cJSON_Delete(v);
        return gllm_fail(GLLM_ERR_OOM, "--set: out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(d->obj, key);
    cJSON_AddItemToObject(d->obj, key, v);
    return GLLM_OK;
}

void gllm_ginfer_defaults_free(gllm_ginfer_defaults *d)
{
    cJSON_Delete(d->obj);
    d->obj = NULL;
}

/* ------------------------------------------------------------ prompt forms */

/* A prompt given as a string or a list of token ids. */
static void read_prompt(gllm_ginfer_item *it, const cJSON *p, const char *field,
                        const char *path)
{
    if (cJSON_IsString(p)) {
        if (!p->valuestring[0]) {
            item_fail(it, path, "%s is empty", field);
            return;
        }
        it->prompt = dup_str(p->valuestring);
        return;
    }
    if (cJSON_IsArray(p)) {
        int n = cJSON_GetArraySize(p);
        if (n == 1 && cJSON_IsString(cJSON_GetArrayItem(p, 0))) { /* ["text"] */
            read_prompt(it, cJSON_GetArrayItem(p, 0), field, path);
            return;
        }
        if (n == 0) {
            item_fail(it, path, "%s is an empty list", field);
            return;
        }
        it->prompt_ids = malloc((size_t)n * sizeof *it->prompt_ids);
        if (!it->prompt_ids) {
            item_fail(it, path, "out of memory");
            return;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, p) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 2147483647.0 ||
                e->valuedouble != floor(e->valuedouble)) {
                item_fail(it, path,
                          "%s must be a string or a list of token ids (one prompt per line); "
                          "element %d is not a token id",
                          field, it->n_prompt_ids);
                return;
            }
            it->prompt_ids[it->n_prompt_ids++] = (int32_t)e->valuedouble;
        }
        return;
    }
    item_fail(it, path, "%s must be a string or a list of token ids", field);
}

/* Chat messages: [{"role", "content"}], content a string or a list of
 * {"type": "text", "text"} parts (joined). */
static void read_messages(gllm_ginfer_item *it, const cJSON *m, const char *field,
                          const char *path)
{
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) == 0) {
        item_fail(it, path, "%s must be a non-empty list of {\"role\", \"content\"}", field);
        return;
    }
    int n = cJSON_GetArraySize(m);
    it->messages = calloc((size_t)n, sizeof *it->messages);
    if (!it->messages) {
        item_fail(it, path, "out of memory");
        return;
    }
    int i = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
            item_fail(it, path, "%s[%d] needs a string \"role\"", field, i);
            return;
        }
        char *text = NULL;
        if (cJSON_IsString(content))
            text = dup_str(content->valuestring);
        else if (cJSON_IsArray(content)) {
            size_t len = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
                    !cJSON_IsString(t)) {
                    item_fail(it, path,
                              "%s[%d].content: only {\"type\": \"text\", \"text\"} parts are "
                              "supported",
                              field, i);
                    return;
                }
                len += strlen(t->valuestring);
            }
            text = malloc(len + 1);
            if (text) {
                text[0] = 0;
                cJSON_ArrayForEach(part, content)
                    strcat(text, cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
            }
        } else {
            item_fail(it, path, "%s[%d].content must be a string or a list of text parts", field,
                      i);
            return;
        }
        it->messages[i].role = dup_str(role->valuestring);
        it->messages[i].content = text;
        it->n_messages = ++i;
        if (!text || !it->messages[i - 1].role) {
            item_fail(it, path, "out of memory");
            return;
        }
    }
}

static void read_candidates(gllm_ginfer_item *it, const cJSON *c, const char *path)
{
    int n = cJSON_GetArraySize(c);
    if (!cJSON_IsArray(c) || n == 0) {
        item_fail(it, path, "candidates must be a non-empty list of strings");
        return;
    }
    it->candidates = calloc((size_t)n, sizeof *it->candidates);
    if (!it->candidates) {
        item_fail(it, path, "out of memory");
        return;
    }
    const cJSON *s;
    cJSON_ArrayForEach(s, c) {
        if (!cJSON_IsString(s) || !s->valuestring[0]) {
            item_fail(it, path, "candidates[%d] must be a non-empty string", it->n_candidates);
            return;
        }
        it->candidates[it->n_candidates++] = dup_str(s->valuestring);
    }
}

/* ------------------------------------------------------------ lines */

static void parse_openai(const cJSON *obj, const gllm_ginfer_defaults *d, const char *path,
                         gllm_ginfer_item *it)
{
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(obj, "custom_id");
    if (cJSON_IsString(cid))
        it->custom_id = dup_str(cid->valuestring);
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(obj, "url");
    it->kind = GLLM_GINFER_OPENAI_CHAT;
    if (cJSON_IsString(url) && strcmp(url->valuestring, "/v1/completions") == 0)
        it->kind = GLLM_GINFER_OPENAI_TEXT;
    /* the API's own defaults, so that a file written for it means the same:
     * temperature 1; max_tokens 16 for completions, the rest of the context
     * for chat */
    it->sampling.temperature = 1;
    it->max_tokens = it->kind == GLLM_GINFER_OPENAI_TEXT ? 16 : GLLM_GINFER_MAX_TOKENS_CONTEXT;
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(obj, "body");
    const cJSON *model = cJSON_IsObject(body) ? cJSON_GetObjectItemCaseSensitive(body, "model")
                                              : NULL;
    if (cJSON_IsString(model))
        it->model = dup_str(model->valuestring);

    if (!cJSON_IsString(cid) || !cid->valuestring[0]) {
        item_fail(it, path, "custom_id must be a non-empty string");
        return;
    }
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(obj, "method");
    if (!cJSON_IsString(method) || strcmp(method->valuestring, "POST") != 0) {
        item_fail(it, path, "method must be \"POST\"");
        return;
    }
    if (!cJSON_IsString(url) || (strcmp(url->valuestring, "/v1/chat/completions") != 0 &&
                                 strcmp(url->valuestring, "/v1/completions") != 0)) {
        item_fail(it, path, "url must be \"/v1/chat/completions\" or \"/v1/completions\"%s%s%s",
                  cJSON_IsString(url) ? ", got \"" : "",
                  cJSON_IsString(url) ? url->valuestring : "", cJSON_IsString(url) ? "\"" : "");
        return;
    }
    if (!cJSON_IsObject(body)) {
        item_fail(it, path, "body must be an object");
        return;
    }
    char buf[160];
    const char *bad = unsupported_body_key(body, buf, sizeof buf);
    if (bad) {
        item_fail(it, path, "%s", bad);
        return;
    }
    if (d && d->obj)
        apply_keys(it, d->obj, "--set ", path);
    apply_keys(it, body, "body.", path);
    if (it->kind == GLLM_GINFER_OPENAI_CHAT) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "messages");
        if (!m)
            item_fail(it, path, "body.messages is missing (url /v1/chat/completions)");
        else
            read_messages(it, m, "body.messages", path);
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
        if (!p)
            item_fail(it, path, "body.prompt is missing (url /v1/completions)");
        else
            read_prompt(it, p, "body.prompt", path);
    }
}

static void parse_own(const cJSON *obj, const gllm_ginfer_defaults *d, const char *path,
                      gllm_ginfer_item *it)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    if (id)
        it->id = cJSON_Duplicate(id, true);
    if (id && !cJSON_IsString(id) && !cJSON_IsNumber(id) && !cJSON_IsNull(id)) {
        item_fail(it, path, "id must be a string or a number");
        return;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "candidates");
    it->kind = c ? GLLM_GINFER_SCORE : m ? GLLM_GINFER_MESSAGES : GLLM_GINFER_PROMPT;
    if (p && m) {
        item_fail(it, path, "has both \"prompt\" and \"messages\"; give one");
        return;
    }
    if (!p && !m) {
        item_fail(it, path,
                  "needs \"prompt\" or \"messages\" (or an OpenAI batch line with "
                  "\"custom_id\" and \"body\")");
        return;
    }
    if (d && d->obj)
        apply_keys(it, d->obj, "--set ", path);
    apply_keys(it, obj, "", path);
    if (p)
        read_prompt(it, p, "prompt", path);
    else
        read_messages(it, m, "messages", path);
    if (c)
        read_candidates(it, c, path);
}

void gllm_ginfer_parse(const cJSON *obj, const char *why, const gllm_ginfer_defaults *d,
                       const char *path, long index, long line, gllm_ginfer_item *it)
{
    memset(it, 0, sizeof *it);
    it->index = index;
    it->line = line;
    it->path = path;
    it->status = GLLM_OK;
    /* greedy unless asked (gllm_sampling_default's values, set here so that
     * parsing needs no engine) */
    it->sampling = (gllm_sampling){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                                   .repetition_penalty = 1, .seed = 0};
    it->max_tokens = DEFAULT_MAX_TOKENS;
    it->n = 1;
    if (!obj) {
        it->kind = GLLM_GINFER_BAD;
        it->status = GLLM_ERR_FORMAT;
        if (why && why[0])
            snprintf(it->error, sizeof it->error, "%s", why); /* the reader's "path:N: ..." */
        else
            snprintf(it->error, sizeof it->error, "%s:%ld: not a JSON value", path, line);
        return;
    }
    if (!cJSON_IsObject(obj)) {
        it->kind = GLLM_GINFER_BAD;
        item_fail(it, path, "expected a JSON object, got %s",
                  cJSON_IsArray(obj) ? "a list" : "a scalar");
        it->status = GLLM_ERR_FORMAT;
        return;
    }
    const char *dup = gllm_json_duplicate_key(obj);
    if (dup) {
        it->kind = GLLM_GINFER_BAD;
        item_fail(it, path, "key \"%s\" appears twice", dup);
        it->status = GLLM_ERR_FORMAT;
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(obj, "custom_id") ||
        cJSON_GetObjectItemCaseSensitive(obj, "body"))
        parse_openai(obj, d, path, it);
    else
        parse_own(obj, d, path, it);
    if (it->status == GLLM_OK && it->top_logprobs > 0 && it->kind != GLLM_GINFER_OPENAI_TEXT &&
        !it->logprobs)
        item_fail(it, path, "top_logprobs needs logprobs: true");
    if (it->status == GLLM_OK && it->top_logprobs > 0)
        it->logprobs = true;
}

void gllm_ginfer_item_free(gllm_ginfer_item *it)
{
    cJSON_Delete(it->id);
    free(it->custom_id);
    free(it->model);
    free(it->prompt);
    free(it->prompt_ids);
    for (int i = 0; i < it->n_messages; i++) {
        free((char *)it->messages[i].role);
        free((char *)it->messages[i].content);
    }
    free(it->messages);
    for (int i = 0; i < it->n_candidates; i++)
        free(it->candidates[i]);
    free(it->candidates);
    free_stop(it);
    memset(it, 0, sizeof *it);
}
