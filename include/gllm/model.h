/* Transformer language models loaded from Hugging Face folders and run on a
 * backend: forward, backward, AdamW, greedy decoding over a paged KV cache,
 * and saving back to the Hugging Face format.
 *
 * Supported: GPT2LMHeadModel, LlamaForCausalLM (Llama-2, Llama-3.x with
 * llama3 rope scaling, SmolLM, TinyLlama), Qwen2ForCausalLM (q/k/v bias) and
 * MistralForCausalLM (sliding window), with GQA and tied or untied embeddings. */
#ifndef GLLM_MODEL_H
#define GLLM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/backend.h"
#include "gllm/batch.h"
#include "gllm/comm.h"
#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gllm_arch {
    GLLM_ARCH_GPT2 = 0,
    GLLM_ARCH_LLAMA,
    GLLM_ARCH_QWEN2,
    GLLM_ARCH_MISTRAL,
} gllm_arch;

typedef struct gllm_model_config {
    gllm_arch arch;
    char architecture[64]; /* the HF class name, e.g. "LlamaForCausalLM" */
    int vocab_size;
    int hidden;            /* C */
    int n_layers;
    int n_heads, n_kv_heads, head_dim;
    int intermediate;      /* MLP width (GPT-2: n_inner or 4C) */
    int max_pos;
    float norm_eps;
    bool layernorm;        /* GPT-2: LayerNorm with bias; others: RMSNorm */
    bool gated_mlp;        /* SwiGLU (gate, up, down) vs GELU MLP (fc, proj) */
    bool learned_pos;      /* GPT-2 position embedding table */
    bool tied;             /* lm_head shares the token embedding */
    bool qkv_bias, o_bias, mlp_bias;
    int sliding_window;    /* 0 = none */
    /* RoPE */
    float rope_theta;
    bool rope_llama3;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int bos_id, eos_id;    /* -1 if absent */
} gllm_model_config;

/* Read config.json (a file, or a model folder containing one). Unsupported
 * architectures and options are refused with a message listing what is supported. */
gllm_status gllm_model_config_load(const char *path, gllm_model_config *cfg);

/* RoPE inverse frequencies [head_dim/2] as transformers computes them,
 * including llama3 scaling. */
void gllm_rope_inv_freq(const gllm_model_config *cfg, float *inv_freq);

typedef struct gllm_model gllm_model;

/* One parameter tensor: the HF name, its place in the flat buffers and its
 * HF shape. GPT-2's Conv1D weights are stored transposed ([out, in]) inside
 * gllm; `hf_transposed` says the file holds [in, out]. */
typedef struct gllm_param_info {
    char name[96];
    size_t offset, numel;
    int ndim;
    int64_t shape[2];     /* gllm layout: [out, in] for matrices */
    bool hf_transposed;
} gllm_param_info;

/* Load config.json and the safetensors weights of an HF folder onto `be`.
 * Missing or mis-shaped tensors are errors naming the file and tensor.
 * Caller frees with gllm_model_free (the backend must outlive the model). */
gllm_status gllm_model_load(const char *dir, gllm_backend *be, gllm_model **out);
void gllm_model_free(gllm_model *m);

const gllm_model_config *gllm_model_cfg(const gllm_model *m);
int gllm_model_n_params(const gllm_model *m);
const gllm_param_info *gllm_model_param(const gllm_model *m, int i);
const gllm_param_info *gllm_model_find_param(const gllm_model *m, const char *name);
size_t gllm_model_numel(const gllm_model *m);
/* Copy a parameter or its gradient to host f32 (numel floats, gllm layout). */
gllm_status gllm_model_read_param(gllm_model *m, const gllm_param_info *p, float *host);
gllm_status gllm_model_read_grad(gllm_model *m, const gllm_param_info *p, float *host);
gllm_status gllm_model_write_param(gllm_model *m, const gllm_param_info *p, const float *host);

/* Plan activation memory for batches of B x T (allocates once; a later batch
 * of the same or smaller shape reuses it, a larger one re-plans). */
gllm_status gllm_model_plan(gllm_model *m, int B, int T);

/* Forward only. loss (may be NULL): masked mean cross-entropy of the batch.
 * logits (may be NULL): host f32 [B*T, V]. */
gllm_status gllm_model_forward(gllm_model *m, const gllm_batch *b, float *loss, float *logits);

/* Forward and backward: gradients of grad_scale * sum(mask * CE) are ADDED to
 * the gradient buffers (call gllm_model_zero_grad first). grad_scale <= 0
 * means 1 / sum(mask) (the batch's masked mean). *loss gets the masked mean. */
gllm_status gllm_model_forward_backward(gllm_model *m, const gllm_batch *b, float grad_scale,
                                        float *loss);
gllm_status gllm_model_zero_grad(gllm_model *m);
/* Sum the gradient buffers over the ranks of c (data parallelism). */
gllm_status gllm_model_all_reduce_grads(gllm_model *m, gllm_comm *c);

/* Gradient synchronisation for data parallelism, in buckets reduced while
 * backward still runs. The flat gradient buffer is cut into buckets of about
 * bucket_bytes (0: one bucket) at layer boundaries; a bucket is started on the
 * communicator as soon as backward has produced every gradient in it (the
 * layers run last to first), on the backend's comm queue where it has one.
 * Without zero1 each bucket is all-reduced. With zero1 (ZeRO-1) each bucket is
 * reduce-scattered: rank r owns the r-th 1/world slice of every bucket, keeps
 * AdamW state (and fp32 master weights) for its slices only, takes the global
 * gradient norm from the slices, updates them and all-gathers the parameters
 * bucket by bucket (gllm_model_adamw_step). Make it right after loading the
 * model, before any optimizer state exists. A job of one rank has no buckets. */
typedef struct gllm_grad_sync gllm_grad_sync;
gllm_status gllm_grad_sync_new(gllm_model *m, gllm_comm *c, size_t bucket_bytes, bool zero1,
                               gllm_grad_sync **out);
void gllm_grad_sync_free(gllm_grad_sync *s);
/* Call before the last micro-batch's forward_backward of a step: its backward
 * starts the buckets as they become ready. */
gllm_status gllm_grad_sync_arm(gllm_grad_sync *s);
/* After backward: start what has not started and wait for all of it. */
gllm_status gllm_grad_sync_finish(gllm_grad_sync *s);
typedef struct gllm_grad_sync_stats {
    int n_buckets;
    size_t largest_bucket;   /* elements */
    double wait_s;           /* host time spent in finish (and the ZeRO-1 gathers): exposed comm */
    size_t state_bytes;      /* this rank's AdamW state (moments + master weights), bytes */
} gllm_grad_sync_stats;
void gllm_grad_sync_stats_of(const gllm_grad_sync *s, gllm_grad_sync_stats *out);

/* Bytes of AdamW state this rank holds or will hold (moments, and fp32 master
 * weights when parameters are stored in lower precision). */
size_t gllm_model_optimizer_bytes(const gllm_model *m);
/* Model FLOPs of one token of training (forward + backward) at sequence length
 * T: 6 x the matmul parameters (embedding lookups excluded, the LM head
 * included) + 6 x layers x T x (heads x head_dim) for causal attention
 * (QK^T and PV, half of the T x T scores computed, x3 for backward). */
double gllm_model_train_flops_per_token(const gllm_model *m, int T);

typedef struct gllm_adamw_config {
    float lr, beta1, beta2, eps, weight_decay;
    float max_grad_norm; /* <= 0: no clipping */
} gllm_adamw_config;

/* One AdamW step (torch.optim.AdamW semantics; decay on params with ndim >= 2)
 * after clipping the global gradient norm. step is 1-based. grad_norm (may be
 * NULL) gets the norm before clipping. Optimizer state is allocated on first use. */
gllm_status gllm_model_adamw_step(gllm_model *m, const gllm_adamw_config *h, int step,
                                  float *grad_norm);

/* AdamW state (moments, fp32 master weights; this rank's slice under ZeRO-1)
 * to a safetensors file and back, for exact resumption. Loading checks that
 * the file was saved by a model and rank layout of the same size. */
gllm_status gllm_model_save_optimizer(gllm_model *m, const char *path);
gllm_status gllm_model_load_optimizer(gllm_model *m, const char *path);

/* ZeRO-1: from now on this rank keeps AdamW state (and fp32 master weights)
 * for its 1/world slice of the flat parameters only; each step updates the
 * slice and all-gathers the parameters over c. Call before the first AdamW
 * step, with gradients summed over the ranks (gllm_model_all_reduce_grads). */
gllm_status gllm_model_shard_optimizer(gllm_model *m, gllm_comm *c);

/* Greedy decoding with a paged KV cache: prompt of n_prompt ids (n_prompt >= 1),
 * n_new generated ids written to out. Uses prefill (attention_fwd + kv_store)
 * then one-token decode steps (attention_decode). */
gllm_status gllm_model_generate_greedy(gllm_model *m, const int32_t *prompt, int n_prompt,
                                       int n_new, int32_t *out);

/* Save as an HF folder: config.json (copied from the loaded one) and
 * model.safetensors in F32, with HF names and layouts. */
gllm_status gllm_model_save(gllm_model *m, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
