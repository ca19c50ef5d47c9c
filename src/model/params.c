/* Parameter layout (HF names -> flat buffers), loading from and saving to
 * Hugging Face safetensors folders. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "gllm/safetensors.h"
#include "model_internal.h"

#define NONE SIZE_MAX

typedef struct layout {
    gllm_param_info *p;
    int n, cap;
    size_t numel;
} layout;

static gllm_status add_param(layout *L, size_t *view, bool transposed, int64_t rows, int64_t cols,
                             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static gllm_status add_param(layout *L, size_t *view, bool transposed, int64_t rows, int64_t cols,
                             const char *fmt, ...)
{
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        gllm_param_info *np = realloc(L->p, (size_t)cap * sizeof *np);
        if (!np)
            return gllm_fail(GLLM_ERR_OOM, "out of memory for the parameter table");
        L->p = np;
        L->cap = cap;
    }
    gllm_param_info *p = &L->p[L->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->offset = L->numel;
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 0;
    p->numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    p->hf_transposed = transposed;
    *view = p->offset;
    L->numel += p->numel;
    return GLLM_OK;
}

static gllm_status build_gpt2(gllm_model *m, layout *L)
{
    const gllm_model_config *c = &m->cfg;
    const int C = c->hidden, F = c->intermediate;
    GLLM_TRY(add_param(L, &m->wte, false, c->vocab_size, C, "transformer.wte.weight"));
    GLLM_TRY(add_param(L, &m->wpe, false, c->max_pos, C, "transformer.wpe.weight"));
    for (int l = 0; l < c->n_layers; l++) {
        layer_params *lp = &m->layer[l];
        GLLM_TRY(add_param(L, &lp->ln1_w, false, C, 0, "transformer.h.%d.ln_1.weight", l));
        GLLM_TRY(add_param(L, &lp->ln1_b, false, C, 0, "transformer.h.%d.ln_1.bias", l));
        GLLM_TRY(add_param(L, &lp->qkv_w, true, 3 * C, C, "transformer.h.%d.attn.c_attn.weight", l));
        GLLM_TRY(add_param(L, &lp->qkv_b, false, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l));
        GLLM_TRY(add_param(L, &lp->o_w, true, C, C, "transformer.h.%d.attn.c_proj.weight", l));
        GLLM_TRY(add_param(L, &lp->o_b, false, C, 0, "transformer.h.%d.attn.c_proj.bias", l));
        GLLM_TRY(add_param(L, &lp->ln2_w, false, C, 0, "transformer.h.%d.ln_2.weight", l));
        GLLM_TRY(add_param(L, &lp->ln2_b, false, C, 0, "transformer.h.%d.ln_2.bias", l));
        GLLM_TRY(add_param(L, &lp->fc_w, true, F, C, "transformer.h.%d.mlp.c_fc.weight", l));
        GLLM_TRY(add_param(L, &lp->fc_b, false, F, 0, "transformer.h.%d.mlp.c_fc.bias", l));
        GLLM_TRY(add_param(L, &lp->proj_w, true, C, F, "transformer.h.%d.mlp.c_proj.weight", l));
        GLLM_TRY(add_param(L, &lp->proj_b, false, C, 0, "transformer.h.%d.mlp.c_proj.bias", l));
    }
    GLLM_TRY(add_param(L, &m->lnf_w, false, C, 0, "transformer.ln_f.weight"));
    GLLM_TRY(add_param(L, &m->lnf_b, false, C, 0, "transformer.ln_f.bias"));
    if (!c->tied)
        GLLM_TRY(add_param(L, &m->lm_head, false, c->vocab_size, C, "lm_head.weight"));
    return GLLM_OK;
}

static gllm_status build_llama(gllm_model *m, layout *L)
{
    const gllm_model_config *c = &m->cfg;
    const int C = c->hidden, I = c->intermediate, D = c->head_dim;
    const int q = c->n_heads * D, kv = c->n_kv_heads * D;
    size_t dummy;
    GLLM_TRY(add_param(L, &m->wte, false, c->vocab_size, C, "model.embed_tokens.weight"));
    for (int l = 0; l < c->n_layers; l++) {
        layer_params *lp = &m->layer[l];
        const char *pre = "model.layers";
        GLLM_TRY(add_param(L, &lp->ln1_w, false, C, 0, "%s.%d.input_layernorm.weight", pre, l));
        /* q, k, v adjacent: one [q + 2kv, C] matrix for a single matmul */
        GLLM_TRY(add_param(L, &lp->qkv_w, false, q, C, "%s.%d.self_attn.q_proj.weight", pre, l));
        GLLM_TRY(add_param(L, &dummy, false, kv, C, "%s.%d.self_attn.k_proj.weight", pre, l));
        GLLM_TRY(add_param(L, &dummy, false, kv, C, "%s.%d.self_attn.v_proj.weight", pre, l));
        if (c->qkv_bias) {
            GLLM_TRY(add_param(L, &lp->qkv_b, false, q, 0, "%s.%d.self_attn.q_proj.bias", pre, l));
            GLLM_TRY(add_param(L, &dummy, false, kv, 0, "%s.%d.self_attn.k_proj.bias", pre, l));
            GLLM_TRY(add_param(L, &dummy, false, kv, 0, "%s.%d.self_attn.v_proj.bias", pre, l));
        }
        GLLM_TRY(add_param(L, &lp->o_w, false, C, q, "%s.%d.self_attn.o_proj.weight", pre, l));
        if (c->o_bias)
            GLLM_TRY(add_param(L, &lp->o_b, false, C, 0, "%s.%d.self_attn.o_proj.bias", pre, l));
        GLLM_TRY(add_param(L, &lp->ln2_w, false, C, 0, "%s.%d.post_attention_layernorm.weight",
                           pre, l));
        /* gate, up adjacent: one [2I, C] matrix whose output rows are [gate | up] */
        GLLM_TRY(add_param(L, &lp->fc_w, false, I, C, "%s.%d.mlp.gate_proj.weight", pre, l));
        GLLM_TRY(add_param(L, &dummy, false, I, C, "%s.%d.mlp.up_proj.weight", pre, l));
        GLLM_TRY(add_param(L, &lp->proj_w, false, C, I, "%s.%d.mlp.down_proj.weight", pre, l));
    }
    GLLM_TRY(add_param(L, &m->lnf_w, false, C, 0, "model.norm.weight"));
    if (!c->tied)
        GLLM_TRY(add_param(L, &m->lm_head, false, c->vocab_size, C, "lm_head.weight"));
    return GLLM_OK;
}

gllm_status gllm_model_build_layout(gllm_model *m)
{
    const gllm_model_config *c = &m->cfg;
    m->layer = gllm_calloc((size_t)c->n_layers, sizeof *m->layer, "layer views");
    if (!m->layer)
        return GLLM_ERR_OOM;
    for (int l = 0; l < c->n_layers; l++) {
        layer_params *lp = &m->layer[l];
        lp->ln1_b = lp->qkv_b = lp->o_b = lp->ln2_b = lp->fc_b = lp->proj_b = NONE;
    }
    m->wpe = m->lnf_b = m->lm_head = NONE;
    layout L = {0};
    gllm_status st = c->arch == GLLM_ARCH_GPT2 ? build_gpt2(m, &L) : build_llama(m, &L);
    m->params = L.p;
    m->n_params = L.n;
    m->numel = L.numel;
    if (st != GLLM_OK)
        return st;
    if (c->tied)
        m->lm_head = m->wte;
    const int D = c->head_dim;
    m->QKV = (c->n_heads + 2 * c->n_kv_heads) * D;
    m->FC = c->gated_mlp ? 2 * c->intermediate : c->intermediate;
    m->ACT = c->intermediate;
    return GLLM_OK;
}

/* GPT-2 checkpoints from the original release name tensors without the
 * "transformer." prefix; accept both. */
static const gllm_st_tensor *find_tensor(const gllm_safetensors *st, const char *name)
{
    const gllm_st_tensor *t = gllm_st_find(st, name);
    if (!t && strncmp(name, "transformer.", 12) == 0)
        t = gllm_st_find(st, name + 12);
    return t;
}

static void transpose(float *dst, const float *src, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

static gllm_status load_weights(gllm_model *m, const char *dir)
{
    gllm_safetensors *st;
    GLLM_TRY(gllm_st_open(dir, &st));
    gllm_status s = GLLM_OK;
    size_t maxn = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > maxn)
            maxn = m->params[i].numel;
    float *buf = gllm_malloc(2 * maxn * sizeof(float), "weight conversion buffer");
    if (!buf) {
        gllm_st_close(st);
        return GLLM_ERR_OOM;
    }
    for (int i = 0; i < m->n_params && s == GLLM_OK; i++) {
        const gllm_param_info *p = &m->params[i];
        const gllm_st_tensor *t = find_tensor(st, p->name);
        if (!t) {
            s = gllm_fail(GLLM_ERR_NOT_FOUND, "%s: tensor '%s' is missing (needed by %s)", dir,
                          p->name, m->cfg.architecture);
            break;
        }
        int64_t hf_shape[2] = {p->shape[0], p->shape[1]};
        if (p->hf_transposed) {
            hf_shape[0] = p->shape[1];
            hf_shape[1] = p->shape[0];
        }
        s = gllm_st_read_f32(st, t->name, p->ndim, hf_shape, buf);
        if (s != GLLM_OK)
            break;
        float *src = buf;
        if (p->hf_transposed) {
            transpose(buf + maxn, buf, hf_shape[0], hf_shape[1]);
            src = buf + maxn;
        }
        s = m->be->upload_f32(m->be, wptr(m, p->offset), src, p->numel);
    }
    free(buf);
    gllm_st_close(st);
    return s;
}

static bool is_gguf_path(const char *path)
{
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".gguf") == 0;
}

gllm_status gllm_model_load(const char *dir, gllm_backend *be, gllm_model **out)
{
    *out = NULL;
    if (is_gguf_path(dir))
        return gllm_model_load_gguf(dir, be, out);
    gllm_model *m = gllm_calloc(1, sizeof *m, "model");
    if (!m)
        return GLLM_ERR_OOM;
    m->be = be;
    m->esz = gllm_dtype_size(be->act_dtype);
    gllm_status s = gllm_model_config_load(dir, &m->cfg);
    if (s == GLLM_OK) {
        char file[4096];
        gllm_config_path(dir, file, sizeof file);
        s = gllm_read_file(file, &m->config_json, NULL);
    }
    if (s == GLLM_OK)
        s = gllm_model_build_layout(m);
    if (s == GLLM_OK)
        s = gllm_model_alloc_params(m);
    if (s == GLLM_OK)
        s = load_weights(m, dir);
    if (s != GLLM_OK) {
        gllm_model_free(m);
        return s;
    }
    *out = m;
    return GLLM_OK;
}

const gllm_model_config *gllm_model_cfg(const gllm_model *m) { return &m->cfg; }
int gllm_model_n_params(const gllm_model *m) { return m->n_params; }
size_t gllm_model_numel(const gllm_model *m) { return m->numel; }

const gllm_param_info *gllm_model_param(const gllm_model *m, int i)
{
    return i >= 0 && i < m->n_params ? &m->params[i] : NULL;
}

const gllm_param_info *gllm_model_find_param(const gllm_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}

gllm_status gllm_model_read_param(gllm_model *m, const gllm_param_info *p, float *host)
{
    return m->be->download_f32(m->be, host, wptr(m, p->offset), p->numel);
}

gllm_status gllm_model_read_grad(gllm_model *m, const gllm_param_info *p, float *host)
{
    GLLM_TRY(gllm_model_grads(m));
    return m->be->download(m->be, host, m->g + p->offset, p->numel * sizeof(float));
}

gllm_status gllm_model_write_param(gllm_model *m, const gllm_param_info *p, const float *host)
{
    m->w_version++;
    GLLM_TRY(m->be->upload_f32(m->be, wptr(m, p->offset), host, p->numel));
    if (!m->master)
        return GLLM_OK;
    /* keep the fp32 master copy (all of it, or this rank's ZeRO-1 slices) in step */
    const gllm_own_range all = {.lo = 0, .n = m->numel, .state = 0};
    const gllm_own_range *r = m->n_own > 0 ? m->own : &all;
    for (int i = 0; i < (m->n_own > 0 ? m->n_own : 1); i++) {
        const size_t lo = r[i].lo, n = r[i].n;
        const size_t a = p->offset > lo ? p->offset : lo;
        const size_t b = p->offset + p->numel < lo + n ? p->offset + p->numel : lo + n;
        if (a < b)
            GLLM_TRY(m->be->upload(m->be, m->master + r[i].state + (a - lo),
                                   host + (a - p->offset), (b - a) * sizeof(float)));
    }
    return GLLM_OK;
}

gllm_status gllm_model_save(gllm_model *m, const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    gllm_st_entry *e = gllm_calloc((size_t)m->n_params, sizeof *e, "save entries");
    float *data = gllm_malloc(m->numel * sizeof(float), "save buffer");
    float *tmp = NULL;
    size_t maxn = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > maxn)
            maxn = m->params[i].numel;
    if (e && data)
        tmp = gllm_malloc(maxn * sizeof(float), "save transpose buffer");
    gllm_status s = (e && data && tmp) ? GLLM_OK : GLLM_ERR_OOM;
    for (int i = 0; i < m->n_params && s == GLLM_OK; i++) {
        const gllm_param_info *p = &m->params[i];
        float *dst = data + p->offset;
        s = gllm_model_read_param(m, p, p->hf_transposed ? tmp : dst);
        e[i].name = p->name;
        e[i].dtype = GLLM_F32;
        e[i].ndim = p->ndim;
        e[i].shape[0] = p->shape[0];
        e[i].shape[1] = p->shape[1];
        if (p->hf_transposed) {
            transpose(dst, tmp, p->shape[0], p->shape[1]);
            e[i].shape[0] = p->shape[1];
            e[i].shape[1] = p->shape[0];
        }
        e[i].data = dst;
    }
    char path[4096];
    if (s == GLLM_OK) {
        static const char *const meta[] = {"format", "pt", NULL};
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        s = gllm_st_write(path, e, m->n_params, meta);
    }
    if (s == GLLM_OK) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        s = gllm_write_file_atomic(path, m->config_json, strlen(m->config_json));
    }
    free(tmp);
    free(data);
    free(e);
    return s;
}
