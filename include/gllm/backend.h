/* The backend op table: every op that forward, backward, AdamW and inference
 * decode need, behind one struct of function pointers.
 *
 * The model never knows which backend it runs on. The CPU backend
 * (src/backend/cpu) is the plain-C reference, fp32 throughout; the CUDA
 * backend (kernels/) stores activations and weights in bf16 and accumulates
 * in fp32. Every entry of every table is checked against the CPU one.
 *
 * Conventions (all backends):
 *  - Buffers are opaque device pointers obtained from be->alloc. "act" buffers
 *    hold be->act_dtype elements (F32 on CPU, BF16 on CUDA); buffers typed
 *    `float *` are always F32 and `int32_t *` always I32, on the device.
 *  - All matrices are row-major and contiguous unless a leading dimension is given.
 *  - Parameters are stored in act_dtype; their gradients are always F32 and
 *    ops *accumulate* (+=) into them, so micro-batches add up without a copy.
 *  - Activation gradients are overwritten unless the op says "accumulates".
 *  - Token layout: N = B*T tokens, token n = b*T + t. Each token carries its
 *    position inside its own document, pos[n]; packed documents are
 *    contiguous, so token n may attend to tokens m with n - pos[n] <= m <= n.
 *    The same pos array drives RoPE and learned position embeddings.
 *  - QKV: one matmul produces rows of width (Hq + 2*Hkv)*D laid out
 *    [q heads | k heads | v heads]; attention and RoPE read it in place.
 *  - Ops are asynchronous on devices that queue work; be->sync waits.
 *  - Every op returns GLLM_OK or a status with a message (gllm_last_error). */
#ifndef GLLM_BACKEND_H
#define GLLM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/dtype.h"
#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gllm_backend gllm_backend;

typedef enum gllm_epilogue {
    GLLM_EPI_NONE = 0,
    GLLM_EPI_GELU, /* tanh-approximated GELU ("gelu_new", GPT-2) applied after bias */
} gllm_epilogue;

/* C = alpha * op(A) * op(B) + beta * C  [+ bias] [then epilogue] [+ residual]
 *   op(A) is M x K: A is [M,K] (lda >= K) or, with trans_a, [K,M] (lda >= M).
 *   op(B) is K x N: B is [K,N] (ldb >= N) or, with trans_b, [N,K] (ldb >= K).
 *   C is [M,N] with ldc >= N.
 * Forward linear layer:   out[M,N] = inp[M,K] * W[N,K]^T       (trans_b)
 * Backward, input grad:   dinp[M,K] = dout[M,N] * W[N,K]
 * Backward, weight grad:  dW[N,K] += dout[M,N]^T * inp[M,K]    (trans_a, c_f32, beta=1)
 * A and B are act_dtype. C is act_dtype, or F32 when c_f32 (weight grads).
 * `bias` is [N] act_dtype or NULL; `residual` is [M,N] act_dtype (ld = ldc) or NULL
 * and must not alias C. Bias, epilogue and residual need c_f32 == false.
 * Batched when batch > 1: A, B, C advance by stride_a/b/c elements per batch. */
typedef struct gllm_matmul_args {
    int M, N, K;
    bool trans_a, trans_b;
    int lda, ldb, ldc; /* 0 = contiguous default */
    float alpha, beta;
    bool c_f32;
    const void *bias;
    gllm_epilogue epilogue;
    const void *residual;
    int batch;
    int64_t stride_a, stride_b, stride_c;
    /* Batch invariance (inference): each row of C must come out bit-identical
     * whatever M is and whatever the other rows hold, i.e. the reduction order of
     * a row never depends on the batch. The CPU backend guarantees it (its own
     * sgemm, one FMA chain per element in k order, cpu_gemm.c; without AVX2 a
     * strategy for OpenBLAS verified by a probe, or plain loops per row, see
     * cpu_matmul.c); CUDA runs one fixed-tile kernel for every shape, no split-K
     * (kernels/matmul.cu; not yet run on a GPU). */
    bool row_invariant;
    /* Optional, trans_b row-invariant calls only: B already rearranged by
     * be->pack_b (same N, K; same backend). A backend with its own layout reads
     * it instead of B, skipping the per-call packing of B; B must still be
     * valid, and whoever changes B must pack it again. NULL: use B. */
    const void *b_packed;
} gllm_matmul_args;

/* Attention shape. The query of token n attends to keys m of the same row b with
 *   n - pos[n] <= m <= n            (causal, inside its own document)
 *   and n - m < window when window > 0 (sliding window, Mistral semantics).
 * scale is usually 1/sqrt(D). */
typedef struct gllm_attn_shape {
    int B, T;      /* batch rows and tokens per row */
    int Hq, Hkv, D;
    int window;    /* 0 = unlimited */
    float scale;
} gllm_attn_shape;

/* Paged KV cache used by inference: K and V each [n_blocks, block_size, Hkv, D]
 * act_dtype. Sequence s owns blocks block_table[s*max_blocks + i]. */
typedef struct gllm_kv_cache {
    void *k, *v;
    int n_blocks, block_size, Hkv, D;
} gllm_kv_cache;

/* RoPE, HF rotate_half convention: within each head the pairs are
 * (x[i], x[i + rot_dim/2]) for i < rot_dim/2, rotated by angle pos * inv_freq[i].
 * inv_freq ([rot_dim/2] F32 on the device) already carries rope_theta and any
 * llama3 scaling; `attn_factor` multiplies cos and sin (1 for llama3). */
typedef struct gllm_rope_args {
    int n_tokens, n_heads, head_dim, rot_dim;
    int row_stride;            /* elements between consecutive tokens in x */
    const float *inv_freq;     /* device, [rot_dim/2] */
    float attn_factor;
} gllm_rope_args;

/* One parameter tensor inside the flat parameter buffer, for AdamW. */
typedef struct gllm_param_segment {
    size_t offset, n;       /* in elements of the flat buffers */
    float weight_decay;
} gllm_param_segment;

typedef struct gllm_adamw_args {
    float lr, beta1, beta2, eps;
    int step;               /* 1-based, for bias correction */
    float grad_scale;       /* multiplies every gradient first: global-norm clip factor */
} gllm_adamw_args;

/* Queues of a backend: every op above runs on the compute queue; a communicator
 * launches its collectives on the comm queue so they overlap later compute. */
typedef enum gllm_queue {
    GLLM_QUEUE_COMPUTE = 0,
    GLLM_QUEUE_COMM = 1,
} gllm_queue;

/* A marker in a queue: complete once the work queued before it has finished. */
typedef struct gllm_event gllm_event;

/* What a backend runs on, for MFU and memory reports. */
typedef struct gllm_device_info {
    char name[128];         /* e.g. "NVIDIA H100 80GB HBM3"; the CPU model on the CPU */
    int index;              /* device ordinal (0 on the CPU) */
    size_t mem_total;       /* device memory (CPU: physical memory) */
    size_t mem_peak;        /* peak bytes in use: CUDA, device memory in use after each
                             * allocation (context and other processes included); CPU, the
                             * peak of this backend's live allocations */
    size_t mem_free;        /* device memory free now (CUDA: cudaMemGetInfo); 0 on a backend
                             * without memory of its own (the CPU) */
} gllm_device_info;

typedef struct gllm_sample_args {
    float temperature;      /* 0 = greedy */
    int top_k;              /* 0 = off */
    float top_p;            /* 1 = off */
} gllm_sample_args;

/* Per-row sampling parameters (sample_rows), one struct per row, on the device.
 * Order of processing, as transformers' generate: repetition penalty (HF: over
 * the row's distinct context ids, logit < 0 ? logit * rp : logit / rp), then
 * temperature, top-k, top-p (over the top-k renormalised), min-p (drop p <
 * min_p * p_max). temperature 0 = greedy: argmax of the penalised logits, the
 * lowest id on ties. The draw is u = uniform(seed) in [0, 1) (gllm_sample_uniform)
 * times the kept mass, against the kept ids' cumulative probability in
 * increasing id order. Top-k keeps exactly k ids (ties: the lower id). */
typedef struct gllm_sample_params {
    float temperature;
    int top_k;              /* 0 = off */
    float top_p;            /* 1 = off */
    float min_p;            /* 0 = off */
    float repetition_penalty; /* 1 = off */
    int32_t n_top;          /* top logprobs wanted for this row (<= max_top) */
    uint64_t seed;          /* this row's draw */
} gllm_sample_params;

/* Paged attention for inference (prefill chunks and decode in one call).
 * Sequence s has q_len[s] new tokens, rows q_start[s] .. q_start[s] + q_len[s]
 * - 1 of qkv, and ctx_len[s] tokens in the cache *including* the new ones
 * (kv_store runs first). New token j of s sits at position ctx_len[s] -
 * q_len[s] + j and attends to cached positions [lo, its own], lo = max(0,
 * pos - window + 1) when window > 0 (Mistral semantics). Keys and values come
 * from the cache through block_table[s * max_blocks + i]. Decode is q_len = 1.
 * Every output row is computed alone, in a fixed order (batch invariant).
 * All arrays are device arrays. */
typedef struct gllm_paged_attn_args {
    int n_seq, Hq, window;
    float scale;
    const int32_t *q_start, *q_len, *ctx_len; /* [n_seq] */
    const int32_t *block_table;               /* [n_seq * max_blocks] */
    int max_blocks;
    int n_tokens;                             /* rows of qkv and out */
    int max_ctx;                              /* >= every ctx_len (scratch sizing) */
} gllm_paged_attn_args;

struct gllm_backend {
    const char *name;
    gllm_dtype act_dtype;
    void *ctx;

    /* --- memory --- */
    gllm_status (*alloc)(gllm_backend *be, size_t bytes, const char *what, void **out);
    void (*free)(gllm_backend *be, void *p);
    /* host <-> device; bytes copied verbatim */
    gllm_status (*upload)(gllm_backend *be, void *dst, const void *host, size_t bytes);
    gllm_status (*download)(gllm_backend *be, void *host, const void *src, size_t bytes);
    gllm_status (*copy)(gllm_backend *be, void *dst, const void *src, size_t bytes);
    gllm_status (*memset0)(gllm_backend *be, void *p, size_t bytes);
    gllm_status (*sync)(gllm_backend *be);
    /* f32 host array -> n act_dtype device elements, and back */
    gllm_status (*upload_f32)(gllm_backend *be, void *dst, const float *host, size_t n);
    gllm_status (*download_f32)(gllm_backend *be, float *host, const void *src, size_t n);

    /* --- linear algebra --- */
    gllm_status (*matmul)(gllm_backend *be, void *C, const void *A, const void *B,
                          const gllm_matmul_args *a);
    /* dbias[N] (F32) += sum over M rows of dout[M,N] */
    gllm_status (*bias_bwd)(gllm_backend *be, float *dbias, const void *dout, int M, int N);

    /* --- embeddings --- out[n,:] = wte[ids[n],:] (+ wpe[pos[n],:] when wpe) */
    gllm_status (*embed_fwd)(gllm_backend *be, void *out, const int32_t *ids, const int32_t *pos,
                             const void *wte, const void *wpe, int N, int C);
    /* dwte[ids[n]] += dout[n]; dwpe[pos[n]] += dout[n] (dwpe may be NULL). Deterministic. */
    gllm_status (*embed_bwd)(gllm_backend *be, float *dwte, float *dwpe, const void *dout,
                             const int32_t *ids, const int32_t *pos, int N, int C, int V);

    /* --- norms over the last dim C of N rows; mean/rstd are F32 [N] saved for backward --- */
    gllm_status (*layernorm_fwd)(gllm_backend *be, void *out, float *mean, float *rstd,
                                 const void *inp, const void *w, const void *b, int N, int C,
                                 float eps);
    /* dinp accumulates (+=, it is the residual stream's gradient); dw, db accumulate. */
    gllm_status (*layernorm_bwd)(gllm_backend *be, void *dinp, float *dw, float *db,
                                 const void *dout, const void *inp, const void *w,
                                 const float *mean, const float *rstd, int N, int C);
    gllm_status (*rmsnorm_fwd)(gllm_backend *be, void *out, float *rstd, const void *inp,
                               const void *w, int N, int C, float eps);
    /* dinp accumulates (+=); dw accumulates. */
    gllm_status (*rmsnorm_bwd)(gllm_backend *be, void *dinp, float *dw, const void *dout,
                               const void *inp, const void *w, const float *rstd, int N, int C);

    /* --- positional: in place on x (q or k heads inside the qkv rows) --- */
    gllm_status (*rope_fwd)(gllm_backend *be, void *x, const int32_t *pos,
                            const gllm_rope_args *a);
    /* the inverse rotation, in place on the gradient */
    gllm_status (*rope_bwd)(gllm_backend *be, void *dx, const int32_t *pos,
                            const gllm_rope_args *a);

    /* --- attention over packed rows, reading q,k,v in place from qkv[N, (Hq+2Hkv)*D] ---
     * out[N, Hq*D]; lse F32 [N, Hq] (log-sum-exp of scaled scores) saved for backward. */
    gllm_status (*attention_fwd)(gllm_backend *be, void *out, float *lse, const void *qkv,
                                 const int32_t *pos, const gllm_attn_shape *s);
    /* dqkv [N, (Hq+2Hkv)*D] overwritten. */
    gllm_status (*attention_bwd)(gllm_backend *be, void *dqkv, const void *dout,
                                 const void *qkv, const void *out, const float *lse,
                                 const int32_t *pos, const gllm_attn_shape *s);
    /* Inference. Write k,v of n_tokens new tokens (read from their qkv rows, after RoPE)
     * into cache slots slot[i] = block * block_size + offset. */
    gllm_status (*kv_store)(gllm_backend *be, gllm_kv_cache *kv, const void *qkv,
                            const int32_t *slot, int n_tokens, int Hq);
    /* One query token per sequence: q rows of qkv[n_seq, (Hq+2Hkv)*D], attending to
     * the first seq_len[s] cached tokens of sequence s (its own token included, stored
     * first by kv_store). out[n_seq, Hq*D]. */
    gllm_status (*attention_decode)(gllm_backend *be, void *out, const void *qkv,
                                    const gllm_kv_cache *kv, const int32_t *block_table,
                                    int max_blocks, const int32_t *seq_len, int n_seq,
                                    int Hq, int window, float scale);

    /* --- pointwise --- */
    gllm_status (*gelu_fwd)(gllm_backend *be, void *out, const void *inp, size_t n);
    /* dinp = dout * gelu'(inp); dinp may alias dout */
    gllm_status (*gelu_bwd)(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                            size_t n);
    /* inp [N, 2I] = [gate | up]; out [N, I] = silu(gate) * up */
    gllm_status (*swiglu_fwd)(gllm_backend *be, void *out, const void *inp, int N, int I);
    gllm_status (*swiglu_bwd)(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                              int N, int I);
    /* out = a + b (out may alias a or b) */
    gllm_status (*add)(gllm_backend *be, void *out, const void *a, const void *b, size_t n);

    /* --- loss and logits ---
     * For each of N rows of logits [N, V]: loss[n] = logsumexp(logits[n]) - logits[n][targets[n]]
     * (F32). If `dlogits_scale` != 0, logits are overwritten in place with
     * dlogits_scale * loss_mask[n] * (softmax(logits[n]) - onehot(targets[n])).
     * Rows with loss_mask[n] == 0 get loss 0 and zero gradient; their target is not read. */
    gllm_status (*xent_fwd_bwd)(gllm_backend *be, float *loss, void *logits,
                                const int32_t *targets, const float *loss_mask, int N, int V,
                                float dlogits_scale);
    /* sample one id per row of logits [N, V] (act_dtype); seeds[n] makes row n reproducible */
    gllm_status (*sample)(gllm_backend *be, int32_t *out_ids, const void *logits, int N, int V,
                          const gllm_sample_args *a, const uint64_t *seeds);

    /* --- optimizer ---
     * sum of squares of n F32 gradients, into *out (F32, device), in a fixed order. */
    gllm_status (*sumsq)(gllm_backend *be, float *out, const float *x, size_t n);
    /* AdamW over segments of flat buffers, all one launch where the device can:
     * g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * w_master = w_master * (1 - lr*wd) - lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps);
     * params (act_dtype) = w_master. master is NULL when act_dtype is F32 (params are the
     * master copy). */
    gllm_status (*adamw)(gllm_backend *be, void *params, float *master, const float *grads,
                         float *m, float *v, const gllm_param_segment *segs, int n_segs,
                         const gllm_adamw_args *a);

    /* --- queues and events, so that collectives overlap compute ---
     * On a backend whose ops have finished when they return (the CPU) an event is
     * complete as soon as it is recorded and waiting on one is a no-op. */
    gllm_status (*event_create)(gllm_backend *be, gllm_event **out);
    void (*event_destroy)(gllm_backend *be, gllm_event *e);
    /* e marks the work queued so far on q */
    gllm_status (*event_record)(gllm_backend *be, gllm_event *e, gllm_queue q);
    /* work queued on q after this call starts after e is complete; the host does not block */
    gllm_status (*queue_wait)(gllm_backend *be, gllm_queue q, gllm_event *e);
    /* host poll: *done = whether e is complete (lets a waiting collective time out) */
    gllm_status (*event_query)(gllm_backend *be, gllm_event *e, bool *done);
    /* the native handle of q for libraries that enqueue work themselves (a cudaStream_t
     * for NCCL); NULL where ops run on the calling thread */
    void *(*queue_handle)(gllm_backend *be, gllm_queue q);
    gllm_status (*device_info)(gllm_backend *be, gllm_device_info *out);

    void (*destroy)(gllm_backend *be);

    /* --- inference (added after the training ops; see gllm_paged_attn_args) --- */
    gllm_status (*attention_paged)(gllm_backend *be, void *out, const void *qkv,
                                   const gllm_kv_cache *kv, const gllm_paged_attn_args *a);
    /* Per-row sampling over logits [N, V] (act_dtype) with params[N] (device).
     * Repetition penalty ids of row n: pen_ids[pen_off[n] .. pen_off[n+1]) (device;
     * both may be NULL when no row penalises). Outputs (device): out_ids[N];
     * out_logprob[N] (may be NULL): log_softmax of the *unprocessed* logits at the
     * chosen id; top_ids/top_lp [N, max_top] (may be NULL when max_top == 0): the
     * params[n].n_top most likely ids of the unprocessed distribution, most likely
     * first (ties: lower id), with their logprobs. No full sort of the vocabulary. */
    gllm_status (*sample_rows)(gllm_backend *be, int32_t *out_ids, float *out_logprob,
                               int32_t *top_ids, float *top_lp, int max_top, const void *logits,
                               int N, int V, const gllm_sample_params *params,
                               const int32_t *pen_ids, const int32_t *pen_off);
    /* Weights in the layout the backend's row-invariant matmul reads (see
     * gllm_matmul_args.b_packed): packed_b_bytes(N, K) is the size of B [N, K]
     * packed, 0 when the backend has no such layout (then pack_b is not
     * called); pack_b writes it to dst. Either pointer may be NULL. */
    size_t (*packed_b_bytes)(gllm_backend *be, int N, int K);
    gllm_status (*pack_b)(gllm_backend *be, void *dst, const void *B, int N, int K);
};

/* The CPU reference backend with its own pool of n_threads threads (n_threads
 * <= 0: gllm_cpu_default_threads(), see gllm/backend_cpu.h). Results do not
 * depend on the thread count. Creating one leaves the caller's OpenMP thread
 * count as it was; OpenBLAS runs single-threaded inside the pool's threads
 * (with OpenBLAS's pthreads build that means openblas_set_num_threads(1), the
 * one process-wide effect). Caller owns it: release with be->destroy(be). */
gllm_status gllm_backend_cpu_create(int n_threads, gllm_backend **out);

/* The CUDA backend on `device` (returns GLLM_ERR_UNSUPPORTED when gllm was
 * built without CUDA or no GPU is present; the message says which). */
gllm_status gllm_backend_cuda_create(int device, gllm_backend **out);

/* Open a backend by name: "cpu", "cuda", "cuda:N" or "auto" (CUDA if a GPU is
 * present, else CPU). */
gllm_status gllm_backend_open(const char *name, gllm_backend **out);

#ifdef __cplusplus
}
#endif
#endif
