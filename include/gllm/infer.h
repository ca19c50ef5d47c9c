/* Batched inference: an engine that takes requests (token ids in, token ids
 * and logprobs out) and runs them together over a paged KV cache with
 * continuous batching, chunked prefill and shared-prefix blocks. ginfer (the
 * command) parses prompts and writes results; everything between lives here.
 *
 * Contract: a request's result does not depend on which other requests run
 * beside it, on prefix sharing being on or off, or on the prefill chunk size
 * (batch invariance): greedy ids are identical and seeded samples are the same.
 *
 * Ownership: gllm_engine_add copies everything a request points to; results
 * handed out by gllm_engine_take belong to the caller (gllm_result_free). */
#ifndef GLLM_INFER_H
#define GLLM_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/model.h"
#include "gllm/status.h"
#include "gllm/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-request sampling. Defaults (gllm_sampling_default): greedy. */
typedef struct gllm_sampling {
    float temperature;        /* 0 = greedy (argmax, lowest id on ties) */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off: drop tokens with p < min_p * p_max */
    float repetition_penalty; /* 1 = off; HF semantics over prompt and generated ids */
    uint64_t seed;            /* sample i of a request uses a stream derived from (seed, i) */
} gllm_sampling;

gllm_sampling gllm_sampling_default(void);

typedef struct gllm_request {
    uint64_t tag;             /* the caller's handle, returned in the result (e.g. line index) */
    const int32_t *prompt;    /* n_prompt >= 1 token ids */
    int n_prompt;

    /* generation (ignored in scoring mode) */
    gllm_sampling sampling;
    int max_tokens;           /* new tokens at most (>= 0) */
    int n;                    /* independent samples of this prompt (>= 1), sharing its blocks */
    bool ignore_eos;          /* else the model's eos id ends a sample */
    const int32_t *stop_ids;  /* further ids that end a sample (included in the output) */
    int n_stop_ids;
    const char *const *stop;  /* stop strings: the sample ends before the first match, which
                               * is cut from the text; needs options.tok */
    int n_stop;
    bool logprobs;            /* the chosen token's logprob for every generated token */
    int top_logprobs;         /* and the n most likely (0..20), each with its logprob */

    /* scoring mode when n_candidates > 0: no generation; each candidate's ids are
     * scored as a continuation of the prompt, the prompt computed once. */
    const int32_t *const *candidates;
    const int *candidate_len; /* each >= 1 */
    int n_candidates;
} gllm_request;

typedef enum gllm_finish {
    GLLM_FINISH_LENGTH = 0,   /* max_tokens reached (or the context is full) */
    GLLM_FINISH_STOP,         /* eos, a stop id or a stop string */
} gllm_finish;

typedef struct gllm_token_logprob {
    int32_t id;
    float logprob;
} gllm_token_logprob;

typedef struct gllm_sample_out {
    int32_t *ids;             /* generated ids (a matched stop id included, eos included) */
    int n_ids;
    char *text;               /* decoded text when options.tok is set (stop string cut), else NULL */
    float *logprobs;          /* [n_ids] when requested, else NULL */
    gllm_token_logprob *top;  /* [n_ids * top_logprobs], most likely first, else NULL */
    gllm_finish finish;
} gllm_sample_out;

typedef struct gllm_result {
    uint64_t tag;
    gllm_status status;       /* GLLM_OK, or why this request failed (message in error) */
    char error[256];
    int n_prompt;
    int n_cached;             /* prompt tokens found in the prefix cache (not computed) */
    int n_samples;
    gllm_sample_out *samples; /* [n_samples] */
    int n_candidates;
    double *candidate_logprob;         /* [n_candidates] sum over the candidate's tokens */
    float **candidate_token_logprobs;  /* [n_candidates][candidate_len[i]] */
    int *candidate_len;
} gllm_result;

void gllm_result_free(gllm_result *r);

typedef struct gllm_engine_options {
    size_t kv_bytes;          /* KV cache budget in bytes; 0 = default: on a device, what
                               * gpu_memory_utilization leaves (gllm_kv_budget_device); on the
                               * CPU 1 GiB, capped at what max_seqs full-context sequences use */
    float gpu_memory_utilization; /* device backends, kv_bytes 0: the share of the device's
                               * memory this engine may hold in all (weights, workspace, KV
                               * cache; as vLLM's option); 0 = 0.9 */
    int block_size;           /* tokens per KV block; 0 = the backend's: 16 on a device, 4 on
                               * the CPU (gllm_engine_stats.block_size says which) */
    int max_batch_tokens;     /* tokens computed per step (prefill chunks + decodes); 0 = 2048 */
    int max_seqs;             /* running sequences at most; 0 = 256 */
    int prefill_chunk;        /* longest prefill piece of one sequence per step; 0 = max_batch_tokens */
    bool prefix_sharing;      /* share full prompt blocks between requests */
    const gllm_tokenizer *tok;/* for stop strings and result text; may be NULL */
} gllm_engine_options;

gllm_engine_options gllm_engine_options_default(void);

typedef struct gllm_engine_stats {
    int64_t prompt_tokens;    /* over all admitted requests */
    int64_t cached_tokens;    /* prompt tokens served from shared blocks */
    int64_t generated_tokens;
    int64_t preemptions;      /* sequences evicted and recomputed for lack of cache */
    int64_t steps;
    int waiting, running, finished; /* finished = results not yet taken */
    int kv_blocks_total, kv_blocks_used;
    int block_size;           /* tokens per block (the default resolved) */
    size_t kv_bytes;
    size_t peak_bytes;        /* backend memory held by the engine and model at most */
} gllm_engine_stats;

typedef struct gllm_engine gllm_engine;

/* The default KV budget on a device, in bytes: utilization * mem_total, less
 * what is in use once the weights and the step workspace are allocated
 * (mem_total - mem_free: those, the context, and other processes), less
 * reserve (the sampler's buffers and allocator slack). 0 when nothing is left. */
size_t gllm_kv_budget_device(size_t mem_total, size_t mem_free, double utilization,
                             size_t reserve);

/* The model must outlive the engine. The engine allocates only inference
 * state (KV cache, one layer's scratch, logits), never gradients or optimizer
 * state. Caller frees with gllm_engine_free. */
gllm_status gllm_engine_create(gllm_model *m, const gllm_engine_options *o, gllm_engine **out);
void gllm_engine_free(gllm_engine *e);

/* Queue a request (copied). Invalid requests (ids outside the vocabulary,
 * prompt + max_tokens past the context, too many top_logprobs) are not
 * refused here: they finish at once with an error result, so a batch goes on. */
gllm_status gllm_engine_add(gllm_engine *e, const gllm_request *r);

/* One scheduler step: admit waiting requests, run one batched forward over
 * prefill chunks and decode tokens, sample. Returns GLLM_OK when idle too. */
gllm_status gllm_engine_step(gllm_engine *e);

/* Requests queued or running (not counting finished results not yet taken). */
int gllm_engine_pending(const gllm_engine *e);

/* Move up to max finished results to out (in the order they finished);
 * returns how many. */
int gllm_engine_take(gllm_engine *e, gllm_result *out, int max);

void gllm_engine_get_stats(const gllm_engine *e, gllm_engine_stats *st);

#ifdef __cplusplus
}
#endif
#endif
