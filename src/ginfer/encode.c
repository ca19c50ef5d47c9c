/* Items -> token ids -> engine requests. Text prompts are encoded with the
 * tokenizer's special tokens as HF's tokenizer(prompt) does; chat messages are
 * rendered by the model's template (the same gllm_chat_render that training
 * uses) with the generation prompt and encoded without added specials, since
 * the template writes them itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/ginfer.h"
#include "gllm/rng.h"

static gllm_status enc_fail(gllm_ginfer_item *it, gllm_status st, const char *what)
{
    it->status = st;
    snprintf(it->error, sizeof it->error, "%s", what);
    return st;
}

static gllm_status encode_text(gllm_ginfer_item *it, const gllm_tokenizer *tok, const char *s,
                               size_t len, bool add_special, int32_t **ids, int *n)
{
    size_t cnt = 0;
    if (gllm_tok_encode(tok, s, len, add_special, ids, &cnt) != GLLM_OK) {
        char msg[sizeof it->error];
        snprintf(msg, sizeof msg, "%s:%ld: tokenizing: %s", it->path, it->line, gllm_last_error());
        return enc_fail(it, GLLM_ERR_INVALID, msg);
    }
    *n = (int)cnt;
    return GLLM_OK;
}

/* The prompt text (rendered messages or the raw prompt); *special says
 * whether the tokenizer adds its special tokens. */
static gllm_status prompt_text(gllm_ginfer_item *it, const gllm_chat_template *chat,
                               const char *chat_why, char **text, bool *special)
{
    if (it->n_messages > 0) {
        if (!chat) {
            char msg[sizeof it->error];
            snprintf(msg, sizeof msg,
                     "%s:%ld: messages need a chat template: %s (or ginfer --chat-template "
                     "NAME|FILE)",
                     it->path, it->line, chat_why ? chat_why : "the model has none");
            return enc_fail(it, GLLM_ERR_INVALID, msg);
        }
        if (gllm_chat_render(chat, it->messages, (size_t)it->n_messages, true, text, NULL) !=
            GLLM_OK) {
            char msg[sizeof it->error];
            snprintf(msg, sizeof msg, "%s:%ld: chat template: %s", it->path, it->line,
                     gllm_last_error());
            return enc_fail(it, GLLM_ERR_INVALID, msg);
        }
        *special = false;
        return GLLM_OK;
    }
    *text = malloc(strlen(it->prompt) + 1);
    if (!*text)
        return enc_fail(it, GLLM_ERR_OOM, "out of memory");
    strcpy(*text, it->prompt);
    *special = true;
    return GLLM_OK;
}

gllm_status gllm_ginfer_encode(gllm_ginfer_item *it, const gllm_tokenizer *tok,
                               const gllm_chat_template *chat, const char *chat_why,
                               gllm_ginfer_encoded *enc)
{
    memset(enc, 0, sizeof *enc);
    if (it->status != GLLM_OK)
        return it->status;
    if (it->prompt_ids) {
        enc->prompt = malloc((size_t)it->n_prompt_ids * sizeof *enc->prompt);
        if (!enc->prompt)
            return enc_fail(it, GLLM_ERR_OOM, "out of memory");
        memcpy(enc->prompt, it->prompt_ids, (size_t)it->n_prompt_ids * sizeof *enc->prompt);
        enc->n_prompt = it->n_prompt_ids;
        if (it->n_candidates > 0 && !tok) {
            char msg[sizeof it->error];
            snprintf(msg, sizeof msg,
                     "%s:%ld: candidates are text and the model folder has no tokenizer",
                     it->path, it->line);
            return enc_fail(it, GLLM_ERR_INVALID, msg);
        }
    } else if (!tok) {
        char msg[sizeof it->error];
        snprintf(msg, sizeof msg,
                 "%s:%ld: a text prompt needs a tokenizer and the model folder has none "
                 "(give the prompt as a list of token ids)",
                 it->path, it->line);
        return enc_fail(it, GLLM_ERR_INVALID, msg);
    }
    char *text = NULL;
    bool special = true;
    if (!it->prompt_ids) {
        GLLM_TRY(prompt_text(it, chat, chat_why, &text, &special));
        gllm_status st = encode_text(it, tok, text, strlen(text), special, &enc->prompt,
                                     &enc->n_prompt);
        if (st != GLLM_OK) {
            free(text);
            return st;
        }
        if (enc->n_prompt == 0) {
            free(text);
            char msg[sizeof it->error];
            snprintf(msg, sizeof msg, "%s:%ld: the prompt encodes to no tokens", it->path, it->line);
            return enc_fail(it, GLLM_ERR_INVALID, msg);
        }
    }
    if (it->n_candidates == 0) {
        free(text);
        return GLLM_OK;
    }
    enc->candidates = calloc((size_t)it->n_candidates, sizeof *enc->candidates);
    enc->candidate_len = calloc((size_t)it->n_candidates, sizeof *enc->candidate_len);
    if (!enc->candidates || !enc->candidate_len) {
        free(text);
        return enc_fail(it, GLLM_ERR_OOM, "out of memory");
    }
    enc->n_candidates = it->n_candidates;
    const size_t plen = text ? strlen(text) : 0;
    for (int c = 0; c < it->n_candidates; c++) {
        const char *cand = it->candidates[c];
        const size_t clen = strlen(cand);
        int32_t *full = NULL;
        int n_full = 0;
        if (text) {
            /* the candidate as the model would see it written after the prompt */
            char *joined = malloc(plen + clen + 1);
            if (!joined) {
                free(text);
                return enc_fail(it, GLLM_ERR_OOM, "out of memory");
            }
            memcpy(joined, text, plen);
            memcpy(joined + plen, cand, clen + 1);
            gllm_status st = encode_text(it, tok, joined, plen + clen, special, &full, &n_full);
            free(joined);
            if (st != GLLM_OK) {
                free(text);
                return st;
            }
        }
        if (full && n_full > enc->n_prompt &&
            memcmp(full, enc->prompt, (size_t)enc->n_prompt * sizeof *full) == 0) {
            const int n = n_full - enc->n_prompt;
            memmove(full, full + enc->n_prompt, (size_t)n * sizeof *full);
            enc->candidates[c] = full;
            enc->candidate_len[c] = n;
            continue;
        }
        /* a token merges across the boundary (or the prompt is ids): the
         * candidate encoded on its own */
        free(full);
        gllm_status st = encode_text(it, tok, cand, clen, false, &enc->candidates[c],
                                     &enc->candidate_len[c]);
        if (st == GLLM_OK && enc->candidate_len[c] == 0) {
            char msg[sizeof it->error];
            snprintf(msg, sizeof msg, "%s:%ld: candidates[%d] encodes to no tokens", it->path, it->line,
                     c);
            st = enc_fail(it, GLLM_ERR_INVALID, msg);
        }
        if (st != GLLM_OK) {
            free(text);
            return st;
        }
    }
    free(text);
    return GLLM_OK;
}

void gllm_ginfer_encoded_free(gllm_ginfer_encoded *enc)
{
    free(enc->prompt);
    for (int c = 0; c < enc->n_candidates; c++)
        free(enc->candidates[c]);
    free(enc->candidates);
    free(enc->candidate_len);
    memset(enc, 0, sizeof *enc);
}

/* one SplitMix64 output from state x (the core's generator) */
static uint64_t splitmix64(uint64_t x) { return gllm_splitmix64(&x); }

void gllm_ginfer_request(const gllm_ginfer_item *it, const gllm_ginfer_encoded *enc,
                         uint64_t default_seed, int n_ctx, uint64_t tag, gllm_request *r)
{
    memset(r, 0, sizeof *r);
    r->tag = tag;
    r->prompt = enc->prompt;
    r->n_prompt = enc->n_prompt;
    r->sampling = it->sampling;
    if (!it->seed_given)
        r->sampling.seed = splitmix64(default_seed ^ splitmix64((uint64_t)it->index));
    r->max_tokens = it->max_tokens;
    if (r->max_tokens == GLLM_GINFER_MAX_TOKENS_CONTEXT)
        r->max_tokens = n_ctx > enc->n_prompt ? n_ctx - enc->n_prompt : 0;
    r->n = it->n;
    r->ignore_eos = it->ignore_eos;
    r->stop = (const char *const *)it->stop;
    r->n_stop = it->n_stop;
    r->logprobs = it->logprobs;
    r->top_logprobs = it->top_logprobs;
    if (enc->n_candidates > 0) {
        r->candidates = (const int32_t *const *)enc->candidates;
        r->candidate_len = enc->candidate_len;
        r->n_candidates = enc->n_candidates;
    }
}
