/* Internal state of a gllm_model: flat parameter/gradient buffers with named
 * views, the activation plan, optimizer state and the KV cache. */
#ifndef GLLM_MODEL_INTERNAL_H
#define GLLM_MODEL_INTERNAL_H

#include "gllm/model.h"

void gllm_config_path(const char *path, char *buf, size_t n);
/* config.json text -> config; `file` names the source in errors. */
gllm_status gllm_model_config_parse(const char *file, const char *text, gllm_model_config *c);
/* The parameter table and views of m->cfg (params.c); the flat buffers. */
gllm_status gllm_model_build_layout(gllm_model *m);
gllm_status gllm_model_alloc_params(gllm_model *m);
/* Load a .gguf file (gguf_model.c). */
gllm_status gllm_model_load_gguf(const char *path, gllm_backend *be, gllm_model **out);

/* Views of one layer's parameters as element offsets into the flat buffers;
 * SIZE_MAX when absent. q,k,v rows are adjacent so `qkv_w` is one [QKV, C]
 * matrix; gate and up rows likewise form `fc_w` [2I, C]. */
typedef struct layer_params {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
} layer_params;

/* A range of the flat buffers whose AdamW state this rank holds. */
typedef struct gllm_own_range {
    size_t lo, n;           /* elements [lo, lo + n) (n is 0 for a slice wholly in padding) */
    size_t state;           /* offset of their state in adam_m, adam_v, master */
    size_t bucket_lo, slice; /* ZeRO-1: the bucket starts at bucket_lo, each rank owns slice */
} gllm_own_range;

/* Stages of backward after which gradients are final, in order: 0 the head
 * and final norm, 1 + (L-1-l) layer l, L+1 the embeddings. */
int gllm_model_grad_stage(const gllm_model *m, size_t offset);

/* Saved activations of one layer, in the backend's act dtype (stats in f32). */
typedef struct layer_acts {
    void *x;        /* [N, C] layer input (residual stream) */
    void *ln1;      /* [N, C] */
    float *ln1_mean, *ln1_rstd;
    void *qkv;      /* [N, QKV] after bias and RoPE */
    void *attn;     /* [N, Hq*D] */
    float *lse;     /* [N, Hq] */
    void *x2;       /* [N, C] after the attention residual */
    void *ln2;      /* [N, C] */
    float *ln2_mean, *ln2_rstd;
    void *fc;       /* [N, FC] pre-activation */
    void *act;      /* [N, ACT] */
} layer_acts;

struct gllm_model {
    gllm_model_config cfg;
    gllm_backend *be;
    char *config_json;      /* the loaded config.json text, written back on save */

    int n_params;
    gllm_param_info *params;
    size_t numel;           /* total parameter elements */
    size_t esz;             /* act dtype size */
    void *w;                /* flat params, act dtype */
    /* bumped whenever w changes after loading (optimizer step, write_param,
     * ZeRO-1 re-layout): inference workspaces repack their weights then */
    uint64_t w_version;
    float *g;               /* flat grads, f32 */
    float *master, *adam_m, *adam_v; /* optimizer state, allocated on first step */
    /* The elements this rank's AdamW updates: none listed = all of [0, numel).
     * ZeRO-1 (zero != NULL): one slice of each gradient bucket; w and g are
     * padded to padded elements so every bucket splits evenly over the ranks. */
    gllm_comm *zero;
    gllm_own_range *own;
    int n_own;
    size_t state_n;         /* elements of adam_m, adam_v, master */
    size_t padded;          /* elements of w and g (numel unless ZeRO-1 padded them) */
    double comm_wait_s;     /* host time in the ZeRO-1 norm reduction and gathers */
    /* called by forward_backward as gradients become final (grad_sync.c) */
    gllm_status (*grad_ready)(void *user, int stage);
    void *grad_ready_user;
    float *sumsq;           /* device scalar */
    gllm_param_segment *segs;

    /* views */
    size_t wte, wpe, lnf_w, lnf_b, lm_head;
    layer_params *layer;
    int QKV, FC, ACT;       /* widths of the qkv, fc and activation rows */
    float *inv_freq;        /* device [head_dim/2] */

    /* activation plan for B x T */
    int planB, planT, chunk;
    void *arena;
    layer_acts *acts;
    void *x_final, *lnf;     /* [N, C] */
    float *lnf_mean, *lnf_rstd;
    void *logits;            /* [chunk, V] */
    float *losses;           /* [N] */
    void *dres, *dln, *dwide, *dact, *dattn;
    int32_t *ids, *targets, *pos;
    float *mask;
    float *host_losses;
};

/* Inference state for gllm_model_blocks: per-layer paged KV caches (device),
 * the cache slot of each new token, and for decode the block table and the
 * context length of each sequence (one new token per sequence). */
typedef struct gllm_infer {
    gllm_kv_cache *kv;      /* [n_layers] */
    const int32_t *slots;   /* [N] device */
    bool decode;
    const int32_t *block_table; /* [n_seq * max_blocks] device */
    int max_blocks;
    const int32_t *seq_len; /* [n_seq] device */
} gllm_infer;

/* Gradient buffers, allocated (zeroed) on first training use. */
gllm_status gllm_model_grads(gllm_model *m);

gllm_status gllm_model_blocks(gllm_model *m, int B, int T, const gllm_infer *inf);
/* out[N, out_dim] = inp[N, in_dim] W^T + bias + residual (offsets into the flat buffers) */
gllm_status gllm_model_linear(gllm_model *m, void *out, const void *inp, size_t w, size_t bias,
                              const void *residual, int N, int out_dim, int in_dim);

static inline void *wptr(const gllm_model *m, size_t off) { return (char *)m->w + off * m->esz; }
static inline void *act_at(const gllm_model *m, void *base, size_t elems)
{
    return (char *)base + elems * m->esz;
}

#endif
