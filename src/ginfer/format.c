/* Engine results -> output lines, written with cJSON: gllm's own result
 * objects and OpenAI batch output lines (chat.completion / text_completion
 * bodies). Identifiers are derived from the line, never from a clock or a
 * counter, so a resumed run and a run split over replicas write the same
 * lines as one uninterrupted run. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/ginfer.h"

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* A stable identifier for the line: its custom_id and index. */
static void line_hex(const gllm_ginfer_item *it, const char *salt, char *out, size_t n)
{
    uint64_t h = fnv1a(salt, 0xcbf29ce484222325ull);
    h = fnv1a(it->custom_id, h);
    char idx[32];
    snprintf(idx, sizeof idx, "#%ld", it->index);
    h = fnv1a(idx, h);
    snprintf(out, n, "%016" PRIx64, h);
}

static const char *finish_name(gllm_finish f)
{
    return f == GLLM_FINISH_STOP ? "stop" : "length";
}

/* The text of one token as it reads inside a text ("" without a tokenizer),
 * malloc'd. Decoded after an anchor token and cut after the anchor's text:
 * decoded alone, a SentencePiece token loses its leading space ("▁the" ->
 * "the"), which is part of the token. */
static char *token_text(const gllm_tokenizer *tok, int32_t id)
{
    char *s = NULL;
    size_t len = 0;
    if (tok) {
        const int32_t anchor = gllm_tok_token_id(tok, "a");
        char *a = NULL;
        size_t alen = 0;
        int32_t pair[2] = {anchor, id};
        if (anchor >= 0 && gllm_tok_decode(tok, pair, 1, false, &a, &alen) == GLLM_OK &&
            gllm_tok_decode(tok, pair, 2, false, &s, &len) == GLLM_OK && len >= alen &&
            memcmp(s, a, alen) == 0) {
            memmove(s, s + alen, len - alen + 1);
            free(a);
            return s;
        }
        free(a);
        free(s);
        s = NULL;
        if (gllm_tok_decode(tok, &id, 1, false, &s, &len) == GLLM_OK)
            return s;
    }
    s = malloc(1);
    if (s)
        s[0] = 0;
    return s;
}

static cJSON *bytes_array(const char *s)
{
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; a && *p; p++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

static cJSON *ids_array(const int32_t *ids, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static cJSON *floats_array(const float *x, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
    return a;
}

static void add_id(cJSON *o, const gllm_ginfer_item *it)
{
    cJSON_AddItemToObject(o, "id", it->id ? cJSON_Duplicate(it->id, true) : cJSON_CreateNull());
}

static bool is_openai(const gllm_ginfer_item *it)
{
    return it->kind == GLLM_GINFER_OPENAI_CHAT || it->kind == GLLM_GINFER_OPENAI_TEXT;
}

/* ------------------------------------------------------------ own format */

/* gllm's logprobs of one sample: [{"token","id","logprob","top"?}] */
static cJSON *own_logprobs(const gllm_sample_out *s, int top_n, const gllm_tokenizer *tok)
{
    cJSON *a = cJSON_CreateArray();
    for (int t = 0; a && t < s->n_ids; t++) {
        cJSON *e = cJSON_CreateObject();
        char *txt = token_text(tok, s->ids[t]);
        cJSON_AddStringToObject(e, "token", txt ? txt : "");
        free(txt);
        cJSON_AddNumberToObject(e, "id", s->ids[t]);
        cJSON_AddNumberToObject(e, "logprob", s->logprobs ? s->logprobs[t] : 0);
        if (top_n > 0 && s->top) {
            cJSON *top = cJSON_AddArrayToObject(e, "top");
            for (int k = 0; k < top_n; k++) {
                const gllm_token_logprob *tl = &s->top[(size_t)t * top_n + k];
                cJSON *o = cJSON_CreateObject();
                char *tt = token_text(tok, tl->id);
                cJSON_AddStringToObject(o, "token", tt ? tt : "");
                free(tt);
                cJSON_AddNumberToObject(o, "id", tl->id);
                cJSON_AddNumberToObject(o, "logprob", tl->logprob);
                cJSON_AddItemToArray(top, o);
            }
        }
        cJSON_AddItemToArray(a, e);
    }
    return a;
}

static cJSON *own_result(const gllm_ginfer_item *it, const gllm_result *res,
                         const gllm_ginfer_format_ctx *fc)
{
    cJSON *o = cJSON_CreateObject();
    add_id(o, it);
    cJSON_AddNumberToObject(o, "line", it->line);
    cJSON *usage = cJSON_CreateObject();
    cJSON_AddNumberToObject(usage, "prompt_tokens", res->n_prompt);
    cJSON_AddNumberToObject(usage, "cached_tokens", res->n_cached);
    if (it->kind == GLLM_GINFER_SCORE) {
        cJSON *cands = cJSON_AddArrayToObject(o, "candidates");
        int best = -1, total = 0;
        for (int c = 0; c < res->n_candidates; c++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "index", c);
            if (c < it->n_candidates)
                cJSON_AddStringToObject(e, "text", it->candidates[c]);
            const int len = res->candidate_len[c];
            cJSON_AddNumberToObject(e, "logprob", res->candidate_logprob[c]);
            cJSON_AddNumberToObject(e, "mean_logprob", res->candidate_logprob[c] / len);
            cJSON_AddItemToObject(e, "token_logprobs",
                                  floats_array(res->candidate_token_logprobs[c], len));
            cJSON_AddItemToArray(cands, e);
            if (best < 0 || res->candidate_logprob[c] > res->candidate_logprob[best])
                best = c;
            total += len;
        }
        cJSON_AddNumberToObject(o, "best", best);
        cJSON_AddNumberToObject(usage, "candidate_tokens", total);
    } else {
        cJSON *choices = cJSON_AddArrayToObject(o, "choices");
        int total = 0;
        for (int i = 0; i < res->n_samples; i++) {
            const gllm_sample_out *s = &res->samples[i];
            cJSON *c = cJSON_CreateObject();
            cJSON_AddNumberToObject(c, "index", i);
            if (s->text)
                cJSON_AddStringToObject(c, "text", s->text);
            else
                cJSON_AddNullToObject(c, "text");
            cJSON_AddItemToObject(c, "token_ids", ids_array(s->ids, s->n_ids));
            cJSON_AddStringToObject(c, "finish_reason", finish_name(s->finish));
            if (it->logprobs)
                cJSON_AddItemToObject(c, "logprobs", own_logprobs(s, it->top_logprobs, fc->tok));
            cJSON_AddItemToArray(choices, c);
            total += s->n_ids;
        }
        cJSON_AddNumberToObject(usage, "completion_tokens", total);
        cJSON_AddNumberToObject(usage, "total_tokens", res->n_prompt + total);
    }
    cJSON_AddItemToObject(o, "usage", usage);
    cJSON_AddNullToObject(o, "error");
    return o;
}

static cJSON *error_object(const char *code, const char *message)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    return e;
}

/* ------------------------------------------------------------ OpenAI format */

static cJSON *chat_logprobs(const gllm_sample_out *s, int top_n, const gllm_tokenizer *tok)
{
    cJSON *lp = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(lp, "content");
    for (int t = 0; t < s->n_ids; t++) {
        cJSON *e = cJSON_CreateObject();
        char *txt = token_text(tok, s->ids[t]);
        cJSON_AddStringToObject(e, "token", txt ? txt : "");
        cJSON_AddNumberToObject(e, "logprob", s->logprobs ? s->logprobs[t] : 0);
        cJSON_AddItemToObject(e, "bytes", bytes_array(txt ? txt : ""));
        free(txt);
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; s->top && k < top_n; k++) {
            const gllm_token_logprob *tl = &s->top[(size_t)t * top_n + k];
            cJSON *o = cJSON_CreateObject();
            char *tt = token_text(tok, tl->id);
            cJSON_AddStringToObject(o, "token", tt ? tt : "");
            cJSON_AddNumberToObject(o, "logprob", tl->logprob);
            cJSON_AddItemToObject(o, "bytes", bytes_array(tt ? tt : ""));
            free(tt);
            cJSON_AddItemToArray(top, o);
        }
        cJSON_AddItemToArray(content, e);
    }
    cJSON_AddNullToObject(lp, "refusal");
    return lp;
}

static cJSON *text_logprobs(const gllm_sample_out *s, int top_n, const gllm_tokenizer *tok,
                            size_t offset)
{
    cJSON *lp = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *tlp = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *top = top_n > 0 ? cJSON_AddArrayToObject(lp, "top_logprobs")
                           : cJSON_AddNullToObject(lp, "top_logprobs");
    cJSON *off = cJSON_AddArrayToObject(lp, "text_offset");
    for (int t = 0; t < s->n_ids; t++) {
        char *txt = token_text(tok, s->ids[t]);
        cJSON_AddItemToArray(tokens, cJSON_CreateString(txt ? txt : ""));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(s->logprobs ? s->logprobs[t] : 0));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
        offset += txt ? strlen(txt) : 0;
        free(txt);
        if (top_n > 0) {
            cJSON *m = cJSON_CreateObject();
            for (int k = 0; s->top && k < top_n; k++) {
                const gllm_token_logprob *tl = &s->top[(size_t)t * top_n + k];
                char *tt = token_text(tok, tl->id);
                /* two ids that decode alike: the likelier one stays */
                if (!cJSON_GetObjectItemCaseSensitive(m, tt ? tt : ""))
                    cJSON_AddNumberToObject(m, tt ? tt : "", tl->logprob);
                free(tt);
            }
            cJSON_AddItemToArray(top, m);
        }
    }
    return lp;
}

static cJSON *openai_body(const gllm_ginfer_item *it, const gllm_result *res,
                          const gllm_ginfer_format_ctx *fc)
{
    const bool chat = it->kind == GLLM_GINFER_OPENAI_CHAT;
    cJSON *b = cJSON_CreateObject();
    char hex[24], id[40];
    line_hex(it, "completion", hex, sizeof hex);
    snprintf(id, sizeof id, "%s%s", chat ? "chatcmpl-" : "cmpl-", hex);
    cJSON_AddStringToObject(b, "id", id);
    cJSON_AddStringToObject(b, "object", chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(b, "created", (double)fc->created);
    cJSON_AddStringToObject(b, "model", it->model ? it->model
                                        : fc->model_name ? fc->model_name : "gllm");
    cJSON *choices = cJSON_AddArrayToObject(b, "choices");
    int total = 0;
    for (int i = 0; i < res->n_samples; i++) {
        const gllm_sample_out *s = &res->samples[i];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        const char *text = s->text ? s->text : "";
        if (chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", text);
            cJSON_AddNullToObject(m, "refusal");
            if (it->logprobs)
                cJSON_AddItemToObject(c, "logprobs", chat_logprobs(s, it->top_logprobs, fc->tok));
            else
                cJSON_AddNullToObject(c, "logprobs");
        } else {
            cJSON_AddStringToObject(c, "text", text);
            if (it->logprobs)
                cJSON_AddItemToObject(c, "logprobs",
                                      text_logprobs(s, it->top_logprobs, fc->tok,
                                                    it->prompt ? strlen(it->prompt) : 0));
            else
                cJSON_AddNullToObject(c, "logprobs");
        }
        cJSON_AddStringToObject(c, "finish_reason", finish_name(s->finish));
        cJSON_AddItemToArray(choices, c);
        total += s->n_ids;
    }
    cJSON *usage = cJSON_AddObjectToObject(b, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", res->n_prompt);
    cJSON_AddNumberToObject(usage, "completion_tokens", total);
    cJSON_AddNumberToObject(usage, "total_tokens", res->n_prompt + total);
    cJSON *det = cJSON_AddObjectToObject(usage, "prompt_tokens_details");
    cJSON_AddNumberToObject(det, "cached_tokens", res->n_cached);
    return b;
}

static cJSON *openai_line(const gllm_ginfer_item *it, const gllm_result *res,
                          const gllm_ginfer_format_ctx *fc, const char *err, gllm_status st)
{
    cJSON *o = cJSON_CreateObject();
    char hex[24], buf[48];
    line_hex(it, "batch_req", hex, sizeof hex);
    snprintf(buf, sizeof buf, "batch_req_%s", hex);
    cJSON_AddStringToObject(o, "id", buf);
    cJSON_AddStringToObject(o, "custom_id", it->custom_id);
    cJSON *r = cJSON_AddObjectToObject(o, "response");
    /* a bad request is the API's 400; the engine failing is a server error */
    cJSON_AddNumberToObject(r, "status_code",
                            !err ? 200 : st == GLLM_ERR_INVALID || st == GLLM_ERR_FORMAT ? 400
                                                                                        : 500);
    line_hex(it, "request", hex, sizeof hex);
    snprintf(buf, sizeof buf, "req_%s", hex);
    cJSON_AddStringToObject(r, "request_id", buf);
    if (err) {
        cJSON *body = cJSON_AddObjectToObject(r, "body");
        cJSON *e = cJSON_AddObjectToObject(body, "error");
        cJSON_AddStringToObject(e, "message", err);
        cJSON_AddStringToObject(e, "type", st == GLLM_ERR_INVALID || st == GLLM_ERR_FORMAT
                                               ? "invalid_request_error"
                                               : "server_error");
        cJSON_AddNullToObject(e, "param");
        cJSON_AddNullToObject(e, "code");
    } else
        cJSON_AddItemToObject(r, "body", openai_body(it, res, fc));
    cJSON_AddNullToObject(o, "error");
    return o;
}

char *gllm_ginfer_format(const gllm_ginfer_item *it, const gllm_result *res,
                         const gllm_ginfer_format_ctx *fc)
{
    const char *err = NULL;
    gllm_status st = GLLM_OK;
    char msg[640];
    if (it->status != GLLM_OK) {
        err = it->error;
        st = it->status;
    } else if (!res) {
        err = "no result";
        st = GLLM_ERR_BACKEND;
    } else if (res->status != GLLM_OK) {
        snprintf(msg, sizeof msg, "%s:%ld: %s", it->path ? it->path : "input", it->line,
                 res->error);
        err = msg;
        st = res->status;
    }
    cJSON *o;
    if (it->kind == GLLM_GINFER_BAD || (is_openai(it) && err && !it->custom_id)) {
        /* not readable as a request: both styles' keys, so that either kind of
         * reader finds the error */
        o = cJSON_CreateObject();
        cJSON_AddNullToObject(o, "id");
        cJSON_AddNullToObject(o, "custom_id");
        cJSON_AddNumberToObject(o, "line", it->line);
        cJSON_AddNullToObject(o, "response");
        cJSON_AddItemToObject(o, "error", error_object("invalid_line", err));
    } else if (is_openai(it))
        o = openai_line(it, res, fc, err, st);
    else if (err) {
        o = cJSON_CreateObject();
        add_id(o, it);
        cJSON_AddNumberToObject(o, "line", it->line);
        cJSON_AddItemToObject(o, "error",
                              error_object(st == GLLM_ERR_INVALID || st == GLLM_ERR_FORMAT
                                               ? "invalid_request"
                                               : "engine_error",
                                           err));
    } else
        o = own_result(it, res, fc);
    char *line = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return line;
}

bool gllm_ginfer_result_matches(const cJSON *out, const gllm_ginfer_item *it)
{
    const cJSON *line = cJSON_GetObjectItemCaseSensitive(out, "line");
    if (cJSON_IsNumber(line))
        return (long)line->valuedouble == it->line &&
               (!it->id || cJSON_Compare(cJSON_GetObjectItemCaseSensitive(out, "id"), it->id,
                                         true));
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(out, "custom_id");
    return cJSON_IsString(cid) && it->custom_id && strcmp(cid->valuestring, it->custom_id) == 0;
}
