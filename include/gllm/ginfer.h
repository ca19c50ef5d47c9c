/* ginfer: batched prompt inference from JSONL files. This module turns input
 * lines into engine requests (include/gllm/infer.h) and engine results into
 * output lines, writes them in input order to an append-only, fsync'd file
 * that a restarted run continues, and runs replicas (one process per GPU, or
 * per share of the CPU) whose results merge in order.
 *
 * Input, one JSON object per line (blank lines are skipped):
 *   {"id", "prompt"}                    raw text (or a list of token ids)
 *   {"id", "messages"}                  rendered by the model's chat template
 *                                       (gllm_chat_render, generation prompt added)
 *   {"id", "prompt"|"messages", "candidates": [...]}
 *                                       scoring: each candidate's total and
 *                                       per-token logprob as a continuation
 *   {"custom_id", "method", "url", "body"}  an OpenAI batch line, url
 *                                       /v1/chat/completions or /v1/completions
 * Sampling keys (top level in gllm's own lines, in "body" in OpenAI lines):
 * max_tokens, max_completion_tokens, temperature, top_p, top_k, min_p,
 * repetition_penalty, seed, n, stop, logprobs, top_logprobs, ignore_eos.
 * Defaults for every key come from gllm_ginfer_set ("--set key=value").
 *
 * Output: one line per input line, in input order. gllm's own lines:
 *   {"id", "line", "choices": [{"index", "text", "token_ids", "finish_reason",
 *    "logprobs"?}], "usage": {...}, "error": null}
 *   scoring: {"id", "line", "candidates": [{"index", "text", "logprob",
 *    "mean_logprob", "token_logprobs", "token_ids"}], "best", "usage", "error": null}
 *   a failed line: {"id", "line", "error": {"code", "message"}} where the
 *   message names "path:line".
 * OpenAI lines: {"id", "custom_id", "response": {"status_code", "request_id",
 *   "body": <chat.completion | text_completion>}, "error": null}; a failed
 *   request: status_code 400 and body {"error": {...}}; a line that is not
 *   JSON at all: "response": null, "error": {"code", "message"}. */
#ifndef GLLM_GINFER_H
#define GLLM_GINFER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/chat.h"
#include "gllm/infer.h"
#include "gllm/status.h"
#include "gllm/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ requests */

typedef enum gllm_ginfer_kind {
    GLLM_GINFER_PROMPT = 0,    /* {"id","prompt"} */
    GLLM_GINFER_MESSAGES,      /* {"id","messages"} */
    GLLM_GINFER_SCORE,         /* {"id","prompt"|"messages","candidates"} */
    GLLM_GINFER_OPENAI_CHAT,   /* url /v1/chat/completions */
    GLLM_GINFER_OPENAI_TEXT,   /* url /v1/completions */
    GLLM_GINFER_BAD,           /* a line that could not be read at all */
} gllm_ginfer_kind;

/* Defaults applied beneath every line's own keys ("--set key=value"). */
typedef struct gllm_ginfer_defaults {
    cJSON *obj; /* key -> value, owned */
} gllm_ginfer_defaults;

/* Parse "key=value" into d: value is read as JSON when it is valid JSON
 * (numbers, true/false, lists, quoted strings), else as a plain string.
 * Unknown keys and values of the wrong type are GLLM_ERR_INVALID naming them. */
gllm_status gllm_ginfer_set(gllm_ginfer_defaults *d, const char *key_eq_value);
void gllm_ginfer_defaults_free(gllm_ginfer_defaults *d);

/* One input line, parsed. A line with an error keeps what could be read
 * (id, custom_id) so that its error result can name it. */
typedef struct gllm_ginfer_item {
    long index;               /* 0-based among non-blank lines */
    long line;                /* 1-based line in the input file */
    const char *path;         /* the input file's name (not owned), for messages */
    gllm_ginfer_kind kind;
    cJSON *id;                /* own format: the "id" value (any JSON), or NULL; owned */
    char *custom_id;          /* OpenAI: custom_id; owned */
    char *model;              /* OpenAI: body.model, echoed; owned */

    char *prompt;             /* text prompt, or NULL */
    int32_t *prompt_ids;      /* a prompt given as token ids, or NULL */
    int n_prompt_ids;
    gllm_chat_message *messages; /* role/content strings owned */
    int n_messages;
    char **candidates;
    int n_candidates;

    gllm_sampling sampling;
    int max_tokens, n;
    bool ignore_eos;
    char **stop;
    int n_stop;
    bool logprobs;
    int top_logprobs;
    bool seed_given;          /* else the seed is derived from (default seed, index) */

    gllm_status status;       /* GLLM_OK or why the line failed */
    char error[512];          /* "path:line: ..." */
} gllm_ginfer_item;

/* Read one input value (already JSON-parsed) into *it. obj NULL means the
 * line could not be parsed; `why` (may be NULL) is then the reader's message.
 * Never fails as a call: a bad line sets it->status and it->error, naming
 * path:line and the field. */
void gllm_ginfer_parse(const cJSON *obj, const char *why, const gllm_ginfer_defaults *d,
                       const char *path, long index, long line, gllm_ginfer_item *it);
void gllm_ginfer_item_free(gllm_ginfer_item *it);

/* Token ids of an item, ready for gllm_engine_add. */
typedef struct gllm_ginfer_encoded {
    int32_t *prompt;
    int n_prompt;
    int32_t **candidates;
    int *candidate_len;
    int n_candidates;
} gllm_ginfer_encoded;

/* Tokenize an item: text prompts with the tokenizer's special tokens (HF
 * add_special_tokens), chat messages rendered by `chat` with the generation
 * prompt and encoded without them (the template writes them). A candidate is
 * the tail of encode(prompt + candidate) when that starts with
 * encode(prompt), else encode(candidate) alone. tok or chat may be NULL: a
 * line that needs them then fails naming what is missing (chat_why, may be
 * NULL, says why there is no template). On failure it->status/error are set. */
gllm_status gllm_ginfer_encode(gllm_ginfer_item *it, const gllm_tokenizer *tok,
                               const gllm_chat_template *chat, const char *chat_why,
                               gllm_ginfer_encoded *enc);
void gllm_ginfer_encoded_free(gllm_ginfer_encoded *enc);

/* max_tokens value meaning "up to the model's context" (OpenAI chat's default) */
#define GLLM_GINFER_MAX_TOKENS_CONTEXT (-1)

/* The engine request of an item (pointers into it and enc). default_seed is
 * mixed with the item's index when the line gives no seed, so every line
 * samples its own stream and a run repeats exactly. n_ctx: the model's
 * context, for GLLM_GINFER_MAX_TOKENS_CONTEXT. */
void gllm_ginfer_request(const gllm_ginfer_item *it, const gllm_ginfer_encoded *enc,
                         uint64_t default_seed, int n_ctx, uint64_t tag, gllm_request *r);

/* ------------------------------------------------------------ results */

typedef struct gllm_ginfer_format_ctx {
    const gllm_tokenizer *tok; /* token strings in logprobs; may be NULL */
    const char *model_name;    /* OpenAI "model" when the line gives none */
    long long created;         /* OpenAI "created" (unix seconds) */
} gllm_ginfer_format_ctx;

/* The output line (no newline) for an item and its engine result (res NULL
 * or res->status != GLLM_OK, or it->status != GLLM_OK: an error result).
 * malloc'd, caller frees. NULL only when out of memory. */
char *gllm_ginfer_format(const gllm_ginfer_item *it, const gllm_result *res,
                         const gllm_ginfer_format_ctx *fc);

/* Whether an output line (parsed) is the result of this input item: same
 * custom_id (OpenAI) or same "line" and "id" (own format). */
bool gllm_ginfer_result_matches(const cJSON *out_line, const gllm_ginfer_item *it);

/* ------------------------------------------------------------ output file */

typedef struct gllm_ginfer_out gllm_ginfer_out;

/* Open the output for appending (created if absent; overwrite: truncated).
 * An existing file is resumed: its complete lines are results 0..done-1; a
 * torn last line (no newline: a run killed mid-write) is cut off. A complete
 * line that is not a JSON object is GLLM_ERR_FORMAT naming path:line. The file
 * is locked (flock) so that two runs cannot write it at once. */
gllm_status gllm_ginfer_out_open(const char *path, bool overwrite, gllm_ginfer_out **out);
long gllm_ginfer_out_done(const gllm_ginfer_out *w);   /* results in the file at open */
size_t gllm_ginfer_out_cut(const gllm_ginfer_out *w);  /* bytes of torn line cut at open */
/* The last complete result in the file at open (parsed), or NULL. */
const cJSON *gllm_ginfer_out_last(const gllm_ginfer_out *w);
/* Hand over result `index` (line without newline; w takes ownership). Lines
 * are buffered until every earlier index has arrived, then written in order. */
gllm_status gllm_ginfer_out_put(gllm_ginfer_out *w, long index, char *line);
/* Write every line that is next in order and fsync the file. */
gllm_status gllm_ginfer_out_sync(gllm_ginfer_out *w);
long gllm_ginfer_out_next(const gllm_ginfer_out *w);   /* next index to be written */
long gllm_ginfer_out_buffered(const gllm_ginfer_out *w); /* results held, waiting for order */
/* Sync and close (lines still waiting for an earlier one are dropped; a
 * resumed run recomputes them). */
gllm_status gllm_ginfer_out_close(gllm_ginfer_out *w);

/* ------------------------------------------------------------ runs */

typedef struct gllm_ginfer_options {
    const char *model;        /* HF folder */
    const char *input, *output;
    const char *summary;      /* summary.json path; NULL: beside the output */
    const char *backend;      /* "cpu", "cuda", "cuda:N", "auto" */
    int threads;              /* CPU threads (per replica); 0 = all cores / replicas */
    int replicas;             /* processes, each with its own model (1 = in process) */
    bool gpus;                /* replica r runs on cuda:r */
    const char *chat_template;/* override: a built-in name or template source; NULL = model's */
    gllm_ginfer_defaults defaults;
    uint64_t seed;            /* default seed (mixed with each line's index) */
    bool fail_fast;           /* stop at the first bad line */
    bool overwrite;           /* start the output over instead of resuming */
    bool progress_tty;        /* the live line (else plain lines) */
    bool quiet;               /* no progress */
    int window;               /* lines read ahead of the output; 0 = 4 * max_seqs */
    gllm_engine_options engine; /* kv_bytes, max_batch_tokens, prefill_chunk, prefix_sharing... */
} gllm_ginfer_options;

void gllm_ginfer_options_default(gllm_ginfer_options *o);

typedef struct gllm_ginfer_summary {
    long total, done_before, done, errors;
    double wall_s;
    int64_t prompt_tokens, cached_tokens, generated_tokens, preemptions;
    size_t peak_bytes;        /* engine/model backend memory, most of any replica */
    double peak_rss_mib;      /* host memory, most of any process */
    char device[64];
} gllm_ginfer_summary;

/* Run a whole file: resume or start the output, run every line not yet
 * answered, write summary.json. A bad line is an error result unless
 * fail_fast (then GLLM_ERR_FORMAT after the results before it are written). */
gllm_status gllm_ginfer_run(const gllm_ginfer_options *o, gllm_ginfer_summary *sum);

#ifdef __cplusplus
}
#endif
#endif
