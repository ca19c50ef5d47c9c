/* Between the training loop and its checkpoints. */
#ifndef GLLM_TRAIN_INTERNAL_H
#define GLLM_TRAIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/comm.h"
#include "gllm/model.h"
#include "gllm/train.h"

/* Where the loop stands after a step: enough to continue it exactly. */
typedef struct gllm_train_state {
    int step, epoch;
    size_t cursor;      /* micro-batches of this epoch already used */
    long long tokens;
    long long skipped_steps; /* optimizer steps skipped: their batches had no target token */
    float first_loss;
    double elapsed_s;
} gllm_train_state;

/* What a checkpoint must agree with to be resumed bit for bit: the run's
 * shape and inputs. Saved in trainer_state.json beside the state. */
typedef struct gllm_train_identity {
    int world, batch_size, seq_len, grad_accum;
    bool packing;
    float val_fraction;
    uint64_t seed, data_hash;
    char data[4096], model[4096];
} gllm_train_identity;

void gllm_train_identity_of(const gllm_train_config *c, int world, uint64_t data_hash,
                            gllm_train_identity *id);

/* An HF folder: the model's weights and config, and the tokenizer files of
 * tokenizer_dir. */
gllm_status gllm_train_save_hf(gllm_model *m, const char *tokenizer_dir, const char *dir);

/* Collective: every rank calls it; rank 0 writes the folder, each rank its
 * optimizer slice. */
gllm_status gllm_train_save_checkpoint(gllm_model *m, gllm_comm *comm, const gllm_train_config *c,
                                       const gllm_train_identity *id, const gllm_train_state *ts);

/* The newest complete checkpoint folder of out_dir into dir; "" when there
 * is none (c->resume makes that an error). */
gllm_status gllm_train_find_checkpoint(const gllm_train_config *c, char *dir, size_t n);

/* Read and validate dir/trainer_state.json into ts and the identity it was
 * saved with into saved. Errors name the file and the key. */
gllm_status gllm_train_load_state(const char *dir, gllm_train_state *ts, gllm_train_identity *saved);

/* GLLM_ERR_INVALID naming the first key on which `now` differs from the
 * checkpoint's `saved` identity. */
gllm_status gllm_train_check_identity(const char *dir, const gllm_train_identity *saved,
                                      const gllm_train_identity *now);

/* Remove out_dir's leftovers of interrupted saves and prunes. */
gllm_status gllm_train_sweep(const char *out_dir);

/* Peak dense bf16 FLOP/s of a device by name (GLLM_PEAK_TFLOPS overrides),
 * 0 when unknown (the CPU): MFU is then omitted. *source says where it came from. */
double gllm_train_peak_flops(const char *device, const char **source);

#endif
