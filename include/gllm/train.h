/* Fine-tuning: a JSON run config, the training loop (AdamW, warmup + cosine
 * learning rate, gradient accumulation, clipping, periodic validation),
 * metrics.jsonl and summary.json in the run folder, and a final checkpoint
 * in Hugging Face format. */
#ifndef GLLM_TRAIN_H
#define GLLM_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "gllm/comm.h"
#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gllm_train_config {
    char model[4096];         /* HF model folder (config.json, *.safetensors, tokenizer.json) */
    char data[4096];          /* JSONL (or JSON array) training records */
    char val_data[4096];      /* "" = none; else records whose loss is the validation loss (not with val_fraction) */
    char out_dir[4096];       /* run folder: metrics.jsonl, summary.json, final/ */
    char backend[32];         /* "auto", "cpu", "cuda", "cuda:N" */
    char chat_template[256];  /* "" = the model's own; or a built-in name */
    int seq_len, batch_size, grad_accum;
    int epochs, max_steps;    /* max_steps > 0 overrides epochs */
    int warmup_steps, eval_every, log_every;
    float lr, min_lr_ratio, weight_decay, beta1, beta2, eps, max_grad_norm;
    float val_fraction;
    uint64_t seed;
    bool packing, skip_bad;
    bool zero1;               /* with several ranks: shard AdamW state over them (ZeRO-1) */
    float bucket_mb;          /* gradient buckets reduced during backward (0: one reduction after it) */
    int save_every;           /* steps between checkpoints (0: only the final model) */
    int keep_checkpoints;     /* newest checkpoints kept (0: all) */
    bool resume;              /* continue from out_dir's latest checkpoint (an error when there is none) */
    bool overwrite;           /* a fresh run may replace the run already in out_dir */
} gllm_train_config;

/* Read a run config. Relative paths are taken from the config file's folder.
 * Unknown keys and wrong types are errors naming the file and the key. */
gllm_status gllm_train_config_load(const char *path, gllm_train_config *cfg);

/* After a step; or, when notice is not NULL, a line for the terminal (the
 * backend chosen, a warning about the data) and nothing else is set. */
typedef struct gllm_train_progress {
    const char *notice;
    int step, total_steps, epoch;
    float loss, lr, grad_norm;
    float target_tokens;      /* tokens of the step that were loss targets, over all ranks */
    long long skipped_steps;  /* steps skipped so far: their batches had no target token */
    double tokens_per_s, elapsed_s, eta_s;
    long long tokens;         /* tokens processed so far */
    double rss_mib;           /* host resident memory */
    float val_loss;           /* NaN when no evaluation ran at this step */
    double mfu;               /* model FLOPs utilisation of the step over all ranks, 0..1;
                               * NaN when the device's peak rate is unknown (the CPU) */
    double comm_share;        /* share of the step the host waited on communication */
    double peak_mem_mib;      /* this rank's peak device memory (CPU: its backend's buffers) */
} gllm_train_progress;

/* Return non-zero to stop the run at once (as an interruption would: what
 * the last checkpoint holds is what a resumed run starts from). */
typedef int (*gllm_train_callback)(const gllm_train_progress *p, void *user);

typedef struct gllm_train_summary {
    int steps;
    long long skipped_steps;  /* not counted in steps: batches without a target token */
    float first_loss, final_loss, final_val_loss;
    double seconds, tokens_per_s;
    long long tokens;
    double mfu;               /* NaN when unknown */
    double comm_share;
    double peak_mem_mib;      /* the largest over the ranks */
    size_t optimizer_bytes;   /* this rank's AdamW state (1/world of it under ZeRO-1) */
} gllm_train_summary;

/* Run training as configured. `make_comm` (NULL: one rank) makes the
 * communicator of this process's rank on the opened backend: each rank reads
 * its shard of every epoch, gradients and loss-token counts are summed over
 * the ranks before the optimizer step, and rank 0 alone writes metrics,
 * summary and checkpoints. on_progress (may be NULL) is called on rank 0
 * after every log_every-th step and after each evaluation, and with notices.
 *
 * The run folder: rank 0 holds an exclusive lock on it (out_dir/gtrain.lock,
 * with its pid) for the run's length, so a second run into it is refused.
 * A fresh run refuses a folder that holds a run unless cfg->overwrite;
 * cfg->resume without a checkpoint is an error; a resumed run must agree
 * with its checkpoint on ranks, batch_size, seq_len, grad_accum, packing,
 * seed, val_fraction, the data file's bytes and the model path.
 * metrics.jsonl is only appended to (one JSON object per line; NaN and
 * infinity are written as null and listed under "nonfinite"); resuming
 * replaces it atomically by its records up to the checkpoint's step. A step
 * whose batches hold no target token on any rank is skipped (counted, with
 * a "skipped" event) and taken again from the next batches. */
typedef struct gllm_comm_factory {
    gllm_status (*make)(void *ctx, gllm_backend *be, gllm_comm **out);
    void *ctx; /* e.g. the gllm_launch of this worker (gllm_launch_make_comm) */
} gllm_comm_factory;
gllm_status gllm_train_run(const gllm_train_config *cfg, const gllm_comm_factory *make_comm,
                           gllm_train_callback on_progress, void *user,
                           gllm_train_summary *summary);

#ifdef __cplusplus
}
#endif
#endif
