/* Between the training loop and its checkpoints. */
#ifndef GLLM_TRAIN_INTERNAL_H
#define GLLM_TRAIN_INTERNAL_H

#include <stddef.h>

#include "gllm/comm.h"
#include "gllm/model.h"
#include "gllm/train.h"

/* Where the loop stands after a step: enough to continue it exactly. */
typedef struct gllm_train_state {
    int step, epoch;
    size_t cursor;      /* micro-batches of this epoch already used */
    long long tokens;
    float first_loss;
    double elapsed_s;
} gllm_train_state;

/* An HF folder: the model's weights and config, and the tokenizer files of
 * tokenizer_dir. */
gllm_status gllm_train_save_hf(gllm_model *m, const char *tokenizer_dir, const char *dir);

/* Collective: every rank calls it; rank 0 writes the folder, each rank its
 * optimizer slice. */
gllm_status gllm_train_save_checkpoint(gllm_model *m, gllm_comm *comm,
                                       const gllm_train_config *c, const gllm_train_state *ts);

/* The newest complete checkpoint folder of out_dir into dir, or "" if none. */
gllm_status gllm_train_find_checkpoint(const gllm_train_config *c, char *dir, size_t n);

gllm_status gllm_train_load_state(const char *dir, const gllm_train_config *c, int world,
                                  gllm_train_state *ts);

/* Peak dense bf16 FLOP/s of a device by name (GLLM_PEAK_TFLOPS overrides),
 * 0 when unknown (the CPU): MFU is then omitted. *source says where it came from. */
double gllm_train_peak_flops(const char *device, const char **source);

#endif
