/* Transformer forward and backward, written out per layer as in llm.c, built
 * only from backend ops. Activations live in one arena planned per (B, T). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#define NONE SIZE_MAX
/* rows of logits materialised at once: bounds the [rows, V] buffer */
#define LOGIT_CHUNK_TOKENS 1024

static void *wopt(const gllm_model *m, size_t off) { return off == NONE ? NULL : wptr(m, off); }
static float *gopt(const gllm_model *m, size_t off) { return off == NONE ? NULL : m->g + off; }

gllm_status gllm_model_alloc_params(gllm_model *m)
{
    gllm_backend *be = m->be;
    m->padded = m->numel;
    GLLM_TRY(be->alloc(be, m->numel * m->esz, "parameters", &m->w));
    const int half = m->cfg.head_dim / 2;
    float *inv = gllm_malloc((size_t)half * sizeof(float), "rope frequencies");
    if (!inv)
        return GLLM_ERR_OOM;
    gllm_rope_inv_freq(&m->cfg, inv);
    gllm_status s = be->alloc(be, (size_t)half * sizeof(float), "rope frequencies",
                              (void **)&m->inv_freq);
    if (s == GLLM_OK)
        s = be->upload(be, m->inv_freq, inv, (size_t)half * sizeof(float));
    free(inv);
    return s;
}

/* Training state is allocated on first training use (gradients zeroed), so a
 * model loaded for inference holds its weights only. */
gllm_status gllm_model_grads(gllm_model *m)
{
    gllm_backend *be = m->be;
    if (!m->g) {
        GLLM_TRY(be->alloc(be, m->padded * sizeof(float), "parameter gradients", (void **)&m->g));
        GLLM_TRY(be->memset0(be, m->g, m->padded * sizeof(float)));
    }
    if (!m->sumsq)
        GLLM_TRY(be->alloc(be, sizeof(float), "gradient norm", (void **)&m->sumsq));
    return GLLM_OK;
}

static void free_plan(gllm_model *m)
{
    if (m->arena)
        m->be->free(m->be, m->arena);
    m->arena = NULL;
    free(m->acts);
    m->acts = NULL;
    free(m->host_losses);
    m->host_losses = NULL;
    m->planB = m->planT = 0;
}

void gllm_model_free(gllm_model *m)
{
    if (!m)
        return;
    gllm_backend *be = m->be;
    free_plan(m);
    void *bufs[] = {m->w, m->g, m->master, m->adam_m, m->adam_v, m->sumsq, m->inv_freq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            be->free(be, bufs[i]);
    free(m->segs);
    free(m->own);
    free(m->layer);
    free(m->params);
    free(m->config_json);
    free(m);
}

/* Carve the arena: a first pass with base == NULL only counts bytes. Every
 * piece is 256-byte aligned so device kernels can use wide loads. */
typedef struct carver {
    char *base;
    size_t off;
} carver;

static void *carve(carver *c, size_t bytes)
{
    size_t start = (c->off + 255) & ~(size_t)255;
    c->off = start + bytes;
    return c->base ? c->base + start : (void *)(uintptr_t)(start + 1);
}

static void layout_plan(gllm_model *m, carver *cv, int N)
{
    const gllm_model_config *c = &m->cfg;
    const size_t C = (size_t)c->hidden, e = m->esz, n = (size_t)N;
    const size_t HD = (size_t)c->n_heads * c->head_dim;
    const size_t wide = (size_t)(m->QKV > m->FC ? m->QKV : m->FC);
    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *a = &m->acts[l];
        a->x = carve(cv, n * C * e);
        a->ln1 = carve(cv, n * C * e);
        a->ln1_mean = carve(cv, n * sizeof(float));
        a->ln1_rstd = carve(cv, n * sizeof(float));
        a->qkv = carve(cv, n * (size_t)m->QKV * e);
        a->attn = carve(cv, n * HD * e);
        a->lse = carve(cv, n * (size_t)c->n_heads * sizeof(float));
        a->x2 = carve(cv, n * C * e);
        a->ln2 = carve(cv, n * C * e);
        a->ln2_mean = carve(cv, n * sizeof(float));
        a->ln2_rstd = carve(cv, n * sizeof(float));
        a->fc = carve(cv, n * (size_t)m->FC * e);
        a->act = carve(cv, n * (size_t)m->ACT * e);
    }
    m->x_final = carve(cv, n * C * e);
    m->lnf = carve(cv, n * C * e);
    m->lnf_mean = carve(cv, n * sizeof(float));
    m->lnf_rstd = carve(cv, n * sizeof(float));
    m->logits = carve(cv, (size_t)m->chunk * (size_t)c->vocab_size * e);
    m->losses = carve(cv, n * sizeof(float));
    m->dres = carve(cv, n * C * e);
    m->dln = carve(cv, n * C * e);
    m->dwide = carve(cv, n * wide * e);
    m->dact = carve(cv, n * (size_t)m->ACT * e);
    m->dattn = carve(cv, n * HD * e);
    m->ids = carve(cv, n * sizeof(int32_t));
    m->targets = carve(cv, n * sizeof(int32_t));
    m->pos = carve(cv, n * sizeof(int32_t));
    m->mask = carve(cv, n * sizeof(float));
}

gllm_status gllm_model_plan(gllm_model *m, int B, int T)
{
    if (B <= 0 || T <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "plan: batch %d x %d must be positive", B, T);
    if (m->arena && B * T <= m->planB * m->planT && T <= m->planT)
        return GLLM_OK;
    free_plan(m);
    const int N = B * T;
    m->chunk = N < LOGIT_CHUNK_TOKENS ? N : LOGIT_CHUNK_TOKENS;
    m->acts = gllm_calloc((size_t)m->cfg.n_layers, sizeof *m->acts, "activation views");
    m->host_losses = gllm_malloc((size_t)N * sizeof(float), "per-token losses");
    if (!m->acts || !m->host_losses)
        return GLLM_ERR_OOM;
    carver count = {NULL, 0};
    layout_plan(m, &count, N);
    GLLM_TRY(m->be->alloc(m->be, count.off, "activations", &m->arena));
    carver real = {m->arena, 0};
    layout_plan(m, &real, N);
    m->planB = B;
    m->planT = T;
    return GLLM_OK;
}

static gllm_status upload_batch(gllm_model *m, const gllm_batch *b, double *mask_sum)
{
    const gllm_model_config *c = &m->cfg;
    const size_t N = (size_t)b->B * b->T;
    double sum = 0;
    for (size_t i = 0; i < N; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size)
            return gllm_fail(GLLM_ERR_INVALID, "batch: token %zu has id %d outside the vocabulary "
                             "[0, %d)", i, b->ids[i], c->vocab_size);
        if (b->pos[i] < 0 || b->pos[i] > (int)(i % (size_t)b->T) || b->pos[i] >= c->max_pos)
            return gllm_fail(GLLM_ERR_INVALID, "batch: token %zu has position %d (row offset %zu, "
                             "max_position_embeddings %d)", i, b->pos[i], i % (size_t)b->T,
                             c->max_pos);
        if (b->loss_mask && b->loss_mask[i] != 0) {
            if (b->targets[i] < 0 || b->targets[i] >= c->vocab_size)
                return gllm_fail(GLLM_ERR_INVALID, "batch: token %zu has target %d outside the "
                                 "vocabulary [0, %d)", i, b->targets[i], c->vocab_size);
            sum += b->loss_mask[i];
        }
    }
    *mask_sum = sum;
    gllm_backend *be = m->be;
    GLLM_TRY(be->upload(be, m->ids, b->ids, N * sizeof(int32_t)));
    GLLM_TRY(be->upload(be, m->pos, b->pos, N * sizeof(int32_t)));
    if (b->targets && b->loss_mask) {
        /* masked rows may carry any target value; the op never reads them */
        GLLM_TRY(be->upload(be, m->targets, b->targets, N * sizeof(int32_t)));
        GLLM_TRY(be->upload(be, m->mask, b->loss_mask, N * sizeof(float)));
    }
    return GLLM_OK;
}

gllm_status gllm_model_linear(gllm_model *m, void *out, const void *inp, size_t w, size_t bias,
                          const void *residual, int N, int out_dim, int in_dim)
{
    gllm_matmul_args a = {.M = N, .N = out_dim, .K = in_dim, .trans_b = true, .alpha = 1.0f,
                          .bias = wopt(m, bias), .residual = residual, .batch = 1};
    return m->be->matmul(m->be, out, inp, wptr(m, w), &a);
}

/* dinp = dout W ; dW += dout^T inp ; db += colsum(dout) */
static gllm_status linear_bwd(gllm_model *m, void *dinp, const void *dout, const void *inp,
                              size_t w, size_t bias, int N, int out_dim, int in_dim)
{
    gllm_backend *be = m->be;
    if (dinp) {
        gllm_matmul_args a = {.M = N, .N = in_dim, .K = out_dim, .alpha = 1.0f, .batch = 1};
        GLLM_TRY(be->matmul(be, dinp, dout, wptr(m, w), &a));
    }
    gllm_matmul_args g = {.M = out_dim, .N = in_dim, .K = N, .trans_a = true, .alpha = 1.0f,
                          .beta = 1.0f, .c_f32 = true, .batch = 1};
    GLLM_TRY(be->matmul(be, m->g + w, dout, inp, &g));
    if (bias != NONE)
        GLLM_TRY(be->bias_bwd(be, m->g + bias, dout, N, out_dim));
    return GLLM_OK;
}

static gllm_status norm_fwd(gllm_model *m, void *out, float *mean, float *rstd, const void *inp,
                            size_t w, size_t b, int N)
{
    const gllm_model_config *c = &m->cfg;
    if (c->layernorm)
        return m->be->layernorm_fwd(m->be, out, mean, rstd, inp, wptr(m, w), wopt(m, b), N,
                                    c->hidden, c->norm_eps);
    return m->be->rmsnorm_fwd(m->be, out, rstd, inp, wptr(m, w), N, c->hidden, c->norm_eps);
}

static gllm_status norm_bwd(gllm_model *m, void *dinp, const void *dout, const void *inp,
                            size_t w, size_t b, const float *mean, const float *rstd, int N)
{
    const gllm_model_config *c = &m->cfg;
    if (c->layernorm)
        return m->be->layernorm_bwd(m->be, dinp, m->g + w, gopt(m, b), dout, inp, wptr(m, w),
                                    mean, rstd, N, c->hidden);
    return m->be->rmsnorm_bwd(m->be, dinp, m->g + w, dout, inp, wptr(m, w), rstd, N, c->hidden);
}

static gllm_rope_args rope_args(const gllm_model *m, int N, int heads)
{
    return (gllm_rope_args){.n_tokens = N, .n_heads = heads, .head_dim = m->cfg.head_dim,
                            .rot_dim = m->cfg.head_dim, .row_stride = m->QKV,
                            .inv_freq = m->inv_freq, .attn_factor = 1.0f};
}

static gllm_attn_shape attn_shape(const gllm_model *m, int B, int T)
{
    const gllm_model_config *c = &m->cfg;
    return (gllm_attn_shape){.B = B, .T = T, .Hq = c->n_heads, .Hkv = c->n_kv_heads,
                             .D = c->head_dim, .window = c->sliding_window,
                             .scale = 1.0f / sqrtf((float)c->head_dim)};
}

/* q and k heads of qkv rows, in place. */
static gllm_status apply_rope(gllm_model *m, void *qkv, const int32_t *pos, int N, bool bwd)
{
    const gllm_model_config *c = &m->cfg;
    if (c->learned_pos)
        return GLLM_OK;
    gllm_rope_args q = rope_args(m, N, c->n_heads), k = rope_args(m, N, c->n_kv_heads);
    void *kp = act_at(m, qkv, (size_t)c->n_heads * c->head_dim);
    gllm_backend *be = m->be;
    if (bwd) {
        GLLM_TRY(be->rope_bwd(be, qkv, pos, &q));
        return be->rope_bwd(be, kp, pos, &k);
    }
    GLLM_TRY(be->rope_fwd(be, qkv, pos, &q));
    return be->rope_fwd(be, kp, pos, &k);
}

static gllm_status mlp_act_fwd(gllm_model *m, void *out, const void *fc, int N)
{
    if (m->cfg.gated_mlp)
        return m->be->swiglu_fwd(m->be, out, fc, N, m->ACT);
    return m->be->gelu_fwd(m->be, out, fc, (size_t)N * m->ACT);
}

/* Transformer blocks and the final norm; leaves m->lnf [N, C]. With `inf`,
 * each layer's k,v are stored in the KV cache (prefill), and in decode mode
 * attention reads the cache instead of the batch. */
gllm_status gllm_model_blocks(gllm_model *m, int B, int T, const gllm_infer *inf)
{
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    const int N = B * T, C = c->hidden, HD = c->n_heads * c->head_dim;
    const gllm_attn_shape as = attn_shape(m, B, T);
    GLLM_TRY(be->embed_fwd(be, m->acts[0].x, m->ids, m->pos, wptr(m, m->wte), wopt(m, m->wpe), N,
                           C));
    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *a = &m->acts[l];
        const layer_params *p = &m->layer[l];
        void *out = l + 1 < c->n_layers ? m->acts[l + 1].x : m->x_final;
        GLLM_TRY(norm_fwd(m, a->ln1, a->ln1_mean, a->ln1_rstd, a->x, p->ln1_w, p->ln1_b, N));
        GLLM_TRY(gllm_model_linear(m, a->qkv, a->ln1, p->qkv_w, p->qkv_b, NULL, N, m->QKV, C));
        GLLM_TRY(apply_rope(m, a->qkv, m->pos, N, false));
        if (inf)
            GLLM_TRY(be->kv_store(be, &inf->kv[l], a->qkv, inf->slots, N, c->n_heads));
        if (inf && inf->decode)
            GLLM_TRY(be->attention_decode(be, a->attn, a->qkv, &inf->kv[l], inf->block_table,
                                          inf->max_blocks, inf->seq_len, N, c->n_heads,
                                          c->sliding_window, as.scale));
        else
            GLLM_TRY(be->attention_fwd(be, a->attn, a->lse, a->qkv, m->pos, &as));
        GLLM_TRY(gllm_model_linear(m, a->x2, a->attn, p->o_w, p->o_b, a->x, N, C, HD));
        GLLM_TRY(norm_fwd(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->x2, p->ln2_w, p->ln2_b, N));
        GLLM_TRY(gllm_model_linear(m, a->fc, a->ln2, p->fc_w, p->fc_b, NULL, N, m->FC, C));
        GLLM_TRY(mlp_act_fwd(m, a->act, a->fc, N));
        GLLM_TRY(gllm_model_linear(m, out, a->act, p->proj_w, p->proj_b, a->x2, N, C, m->ACT));
    }
    return norm_fwd(m, m->lnf, m->lnf_mean, m->lnf_rstd, m->x_final, m->lnf_w, m->lnf_b, N);
}

/* lm_head and loss over row chunks. With backward, dlogits of each chunk go
 * straight into d(lnf) and the lm_head gradient, so [N, V] never exists. */
static gllm_status head_and_loss(gllm_model *m, int N, float scale, bool backward, float *logits_out)
{
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    const int V = c->vocab_size, C = c->hidden;
    for (int r0 = 0; r0 < N; r0 += m->chunk) {
        const int rows = N - r0 < m->chunk ? N - r0 : m->chunk;
        const void *x = act_at(m, m->lnf, (size_t)r0 * C);
        GLLM_TRY(gllm_model_linear(m, m->logits, x, m->lm_head, NONE, NULL, rows, V, C));
        if (logits_out)
            GLLM_TRY(be->download_f32(be, logits_out + (size_t)r0 * V, m->logits,
                                      (size_t)rows * V));
        GLLM_TRY(be->xent_fwd_bwd(be, m->losses + r0, m->logits, m->targets + r0, m->mask + r0,
                                  rows, V, backward ? scale : 0.0f));
        if (backward)
            GLLM_TRY(linear_bwd(m, act_at(m, m->dln, (size_t)r0 * C), m->logits, x, m->lm_head,
                                NONE, rows, V, C));
    }
    return GLLM_OK;
}

static gllm_status mean_loss(gllm_model *m, const gllm_batch *b, double mask_sum, float *loss)
{
    if (!loss)
        return GLLM_OK;
    const int N = b->B * b->T;
    GLLM_TRY(m->be->download(m->be, m->host_losses, m->losses, (size_t)N * sizeof(float)));
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum += (double)b->loss_mask[i] * m->host_losses[i];
    *loss = mask_sum > 0 ? (float)(sum / mask_sum) : 0.0f;
    return GLLM_OK;
}

static gllm_status check_batch(gllm_model *m, const gllm_batch *b, bool need_targets)
{
    if (!b || b->B <= 0 || b->T <= 0 || !b->ids || !b->pos)
        return gllm_fail(GLLM_ERR_INVALID, "batch: needs B, T > 0, ids and pos");
    if (need_targets && (!b->targets || !b->loss_mask))
        return gllm_fail(GLLM_ERR_INVALID, "batch: training needs targets and loss_mask");
    return gllm_model_plan(m, b->B, b->T);
}

gllm_status gllm_model_forward(gllm_model *m, const gllm_batch *b, float *loss, float *logits)
{
    GLLM_TRY(check_batch(m, b, loss != NULL));
    const int N = b->B * b->T;
    double mask_sum = 0;
    GLLM_TRY(upload_batch(m, b, &mask_sum));
    if (!loss) /* logits only: a mask of zeros makes the loss op a no-op */
        GLLM_TRY(m->be->memset0(m->be, m->mask, (size_t)N * sizeof(float)));
    GLLM_TRY(gllm_model_blocks(m, b->B, b->T, NULL));
    GLLM_TRY(head_and_loss(m, N, 0.0f, false, logits));
    return mean_loss(m, b, mask_sum, loss);
}

gllm_status gllm_model_zero_grad(gllm_model *m)
{
    GLLM_TRY(gllm_model_grads(m));
    return m->be->memset0(m->be, m->g, m->padded * sizeof(float));
}

gllm_status gllm_model_all_reduce_grads(gllm_model *m, gllm_comm *c)
{
    if (c->world == 1)
        return GLLM_OK;
    GLLM_TRY(gllm_model_grads(m));
    return c->all_reduce(c, m->g, m->numel, GLLM_F32, GLLM_REDUCE_SUM);
}

static gllm_status mlp_act_bwd(gllm_model *m, void *dfc, const void *fc, const void *dact, int N)
{
    if (m->cfg.gated_mlp)
        return m->be->swiglu_bwd(m->be, dfc, fc, dact, N, m->ACT);
    return m->be->gelu_bwd(m->be, dfc, fc, dact, (size_t)N * m->ACT);
}

gllm_status gllm_model_forward_backward(gllm_model *m, const gllm_batch *b, float grad_scale,
                                        float *loss)
{
    GLLM_TRY(check_batch(m, b, true));
    GLLM_TRY(gllm_model_grads(m));
    const gllm_model_config *c = &m->cfg;
    gllm_backend *be = m->be;
    const int B = b->B, T = b->T, N = B * T, C = c->hidden, HD = c->n_heads * c->head_dim;
    double mask_sum = 0;
    GLLM_TRY(upload_batch(m, b, &mask_sum));
    const float scale = grad_scale > 0 ? grad_scale : mask_sum > 0 ? (float)(1.0 / mask_sum) : 0;
    GLLM_TRY(gllm_model_blocks(m, B, T, NULL));
    GLLM_TRY(head_and_loss(m, N, scale, true, NULL));
    GLLM_TRY(mean_loss(m, b, mask_sum, loss));

    /* final norm: the residual-stream gradient starts here */
    const size_t nc = (size_t)N * C * m->esz;
    GLLM_TRY(be->memset0(be, m->dres, nc));
    GLLM_TRY(norm_bwd(m, m->dres, m->dln, m->x_final, m->lnf_w, m->lnf_b, m->lnf_mean, m->lnf_rstd,
                      N));
    /* data parallelism: a gradient bucket may start reducing as soon as its
     * gradients are final (gllm_model_grad_stage numbers these points) */
    if (m->grad_ready)
        GLLM_TRY(m->grad_ready(m->grad_ready_user, 0));
    const gllm_attn_shape as = attn_shape(m, B, T);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        layer_acts *a = &m->acts[l];
        const layer_params *p = &m->layer[l];
        /* MLP: out = x2 + proj(act(fc(ln2(x2)))) */
        GLLM_TRY(linear_bwd(m, m->dact, m->dres, a->act, p->proj_w, p->proj_b, N, C, m->ACT));
        GLLM_TRY(mlp_act_bwd(m, m->dwide, a->fc, m->dact, N));
        GLLM_TRY(linear_bwd(m, m->dln, m->dwide, a->ln2, p->fc_w, p->fc_b, N, m->FC, C));
        GLLM_TRY(norm_bwd(m, m->dres, m->dln, a->x2, p->ln2_w, p->ln2_b, a->ln2_mean, a->ln2_rstd,
                          N));
        /* attention: x2 = x + o(attn(rope(qkv(ln1(x))))) */
        GLLM_TRY(linear_bwd(m, m->dattn, m->dres, a->attn, p->o_w, p->o_b, N, C, HD));
        GLLM_TRY(be->attention_bwd(be, m->dwide, m->dattn, a->qkv, a->attn, a->lse, m->pos, &as));
        GLLM_TRY(apply_rope(m, m->dwide, m->pos, N, true));
        GLLM_TRY(linear_bwd(m, m->dln, m->dwide, a->ln1, p->qkv_w, p->qkv_b, N, m->QKV, C));
        GLLM_TRY(norm_bwd(m, m->dres, m->dln, a->x, p->ln1_w, p->ln1_b, a->ln1_mean, a->ln1_rstd,
                          N));
        if (m->grad_ready)
            GLLM_TRY(m->grad_ready(m->grad_ready_user, c->n_layers - l));
    }
    float *dwpe = m->wpe == NONE ? NULL : m->g + m->wpe;
    GLLM_TRY(be->embed_bwd(be, m->g + m->wte, dwpe, m->dres, m->ids, m->pos, N, C, c->vocab_size));
    return m->grad_ready ? m->grad_ready(m->grad_ready_user, c->n_layers + 1) : GLLM_OK;
}

int gllm_model_grad_stage(const gllm_model *m, size_t offset)
{
    const int L = m->cfg.n_layers;
    if (offset >= m->lnf_w)
        return 0; /* final norm, LM head (and padding) */
    for (int l = L - 1; l >= 0; l--)
        if (offset >= m->layer[l].ln1_w)
            return L - l;
    return L + 1; /* embeddings: final after embed_bwd (and a tied LM head's use) */
}
