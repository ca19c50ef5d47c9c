/* GGUF files as gllm models: an HF config.json synthesized from the `{arch}.*`
 * metadata (parsed by the same code as a folder's config.json, and written
 * back by gllm_model_save), weights dequantized on load into gllm's layout,
 * and the reverse for export. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/gguf_model.h"
#include "model_internal.h"

typedef struct arch_info {
    const char *gguf;       /* general.architecture */
    const char *hf_class;
    const char *model_type;
    gllm_arch arch;
    bool permuted_qk;       /* llama.cpp's converter interleaves q/k rows */
} arch_info;

static const arch_info k_archs[] = {
    {"llama", "LlamaForCausalLM", "llama", GLLM_ARCH_LLAMA, true},
    {"mistral", "MistralForCausalLM", "mistral", GLLM_ARCH_MISTRAL, true},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", GLLM_ARCH_QWEN2, false},
    {"gpt2", "GPT2LMHeadModel", "gpt2", GLLM_ARCH_GPT2, false},
};

static const arch_info *find_arch_gguf(const char *name)
{
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (strcmp(k_archs[i].gguf, name) == 0)
            return &k_archs[i];
    return NULL;
}

static const arch_info *find_arch_gllm(gllm_arch a)
{
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (k_archs[i].arch == a)
            return &k_archs[i];
    return NULL;
}

/* ---------------------------------------------------------------- names */

static const char *const k_llama_names[][2] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},        {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},   {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},         {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
static const char *const k_gpt2_names[][2] = {
    {"ln_1", "attn_norm"},        {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
    {"ln_2", "ffn_norm"},         {"mlp.c_fc", "ffn_up"},      {"mlp.c_proj", "ffn_down"},
};
static const char *const k_global_names[][2] = {
    {"model.embed_tokens.", "token_embd."}, {"model.norm.", "output_norm."},
    {"lm_head.", "output."},                {"transformer.wte.", "token_embd."},
    {"transformer.wpe.", "position_embd."}, {"transformer.ln_f.", "output_norm."},
};

bool gllm_gguf_tensor_name(const char *hf, char *out, size_t n)
{
    for (size_t i = 0; i < sizeof k_global_names / sizeof k_global_names[0]; i++) {
        size_t k = strlen(k_global_names[i][0]);
        if (strncmp(hf, k_global_names[i][0], k) == 0) {
            snprintf(out, n, "%s%s", k_global_names[i][1], hf + k);
            return true;
        }
    }
    const char *pre = NULL;
    const char *const(*tab)[2] = NULL;
    size_t ntab = 0;
    if (strncmp(hf, "model.layers.", 13) == 0) {
        pre = hf + 13;
        tab = k_llama_names;
        ntab = sizeof k_llama_names / sizeof k_llama_names[0];
    } else if (strncmp(hf, "transformer.h.", 14) == 0) {
        pre = hf + 14;
        tab = k_gpt2_names;
        ntab = sizeof k_gpt2_names / sizeof k_gpt2_names[0];
    } else {
        return false;
    }
    char *end;
    long layer = strtol(pre, &end, 10);
    if (end == pre || *end != '.')
        return false;
    const char *rest = end + 1;
    for (size_t i = 0; i < ntab; i++) {
        size_t k = strlen(tab[i][0]);
        if (strncmp(rest, tab[i][0], k) == 0 && rest[k] == '.') {
            snprintf(out, n, "blk.%ld.%s%s", layer, tab[i][1], rest + k);
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- config */

static gllm_status meta_int(const gllm_gguf *g, const char *arch, const char *key, bool required,
                            int64_t dflt, int64_t *out)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!gllm_gguf_find_kv(g, full)) {
        if (required)
            return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: key '%s' is missing (needed for a %s model)",
                             gllm_gguf_path(g), full, arch);
        *out = dflt;
        return GLLM_OK;
    }
    GLLM_TRY(gllm_gguf_get_int(g, full, out));
    if (*out < 0 || *out > 1 << 30)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key '%s' = %lld is out of range", gllm_gguf_path(g),
                         full, (long long)*out);
    return GLLM_OK;
}

static gllm_status meta_float(const gllm_gguf *g, const char *arch, const char *key, double dflt,
                              double *out)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!gllm_gguf_find_kv(g, full)) {
        *out = dflt;
        return GLLM_OK;
    }
    return gllm_gguf_get_float(g, full, out);
}

/* ---------------------------------------------------------------- rope_freqs */

/* Llama-3.1 RoPE scaling in a GGUF file: llama.cpp's converter stores no
 * parameters, only `rope_freqs` (one factor per frequency pair: 1 for short
 * wavelengths, `factor` for long ones, 1 / ((1 - s) / factor + s) between),
 * by which it divides each rotation frequency. gllm has one representation,
 * transformers' rope_scaling {"rope_type": "llama3", factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings}, so the parameters are
 * recovered from the factors (the smooth region s = (1/w - l) / (h - l), with
 * w the wavelength, l = 1/low_wavelen and h = 1/high_wavelen, fitted by least
 * squares, or placed inside the gaps the classes leave when fewer than two
 * factors lie between), then checked: the frequencies they give must equal
 * base / rope_freqs to 1e-5 relative, or the file is refused. */
static gllm_status fit_rope_freqs(const gllm_gguf *g, double theta, int64_t head_dim, cJSON *c)
{
    const char *path = gllm_gguf_path(g);
    const gllm_gguf_tensor *t = gllm_gguf_find_tensor(g, "rope_freqs.weight");
    const int half = (int)(head_dim / 2);
    if (t->ndim != 1 || t->ne[0] != half || half < 1 || half > 1024)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' has %lld elements, "
                         "expected head_dim / 2 = %d", path, (long long)t->ne[0], half);
    float ff[1024], base[1024];
    GLLM_TRY(gllm_gguf_read_f32(g, t, ff));
    double u[1024], F = 0;
    for (int i = 0; i < half; i++) {
        if (!(ff[i] > 0) || !isfinite(ff[i]))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' element %d is %g "
                             "(factors must be positive)", path, i, (double)ff[i]);
        /* as gllm_rope_inv_freq computes it */
        base[i] = 1.0f / powf((float)theta, (float)(2 * i) / (float)head_dim);
        u[i] = base[i] / (2.0 * 3.14159265358979323846); /* 1 / wavelength */
        F = ff[i] > F ? ff[i] : F;
    }
    const double tol = 1e-5;
    if (F <= 1 + tol)
        return GLLM_OK; /* all 1: no scaling */
    /* classes by wavelength (u falls with i): ones, then smooth, then F */
    int n1 = 0, nF = 0;
    while (n1 < half && fabs(ff[n1] - 1.0) <= tol)
        n1++;
    while (nF < half - n1 && fabs(ff[half - 1 - nF] - F) <= tol * F)
        nF++;
    const int s0 = n1, s1 = half - nF; /* smooth: [s0, s1) */
    double su = 0, ss = 0, suu = 0, sus = 0;
    bool ok = nF > 0;
    for (int i = s0; i < s1 && ok; i++) {
        double sm = (1.0 / ff[i] - 1.0 / F) / (1.0 - 1.0 / F);
        ok = sm > 0 && sm < 1;
        su += u[i];
        ss += sm;
        suu += u[i] * u[i];
        sus += u[i] * sm;
    }
    double l = 0, h = 0;
    const int ns = s1 - s0;
    const double u_full = nF ? u[s1] : 0;              /* largest u of the F class */
    const double u_one = n1 ? u[n1 - 1] : INFINITY;    /* smallest u of the ones */
    if (ok && ns >= 2) { /* s = alpha u + beta */
        double det = ns * suu - su * su;
        double alpha = (ns * sus - su * ss) / det, beta = (ss - alpha * su) / ns;
        ok = det > 0 && alpha > 0;
        l = -beta / alpha;
        h = (1.0 - beta) / alpha;
    } else if (ok && ns == 1) { /* l between the F class and the point, h from s */
        const double sm = ss, up = u[s0];
        double lo = u_full, hi = up;
        ok = false;
        for (int k = 0; k < 60 && !ok; k++) {
            l = 0.5 * (lo + hi);
            h = l + (up - l) / sm;
            ok = h < u_one;
            lo = l; /* closer to the point keeps h lower */
        }
    } else if (ok) { /* no smooth factor: l and h inside the gap between the classes */
        const double upper = n1 ? u_one : 2 * u_full;
        l = u_full + 0.25 * (upper - u_full);
        h = u_full + 0.75 * (upper - u_full);
    }
    ok = ok && l > 0 && h > l;
    gllm_model_config cfg = {0};
    if (ok) {
        /* any original length L gives the same frequencies; L = 1/l makes low 1 */
        double L = floor(1.0 / l + 0.5);
        if (L < 1)
            L = 1;
        cfg.head_dim = (int)head_dim;
        cfg.rope_theta = (float)theta;
        cfg.rope_llama3 = true;
        cfg.rope_factor = (float)F;
        cfg.rope_low_freq_factor = (float)(L * l);
        cfg.rope_high_freq_factor = (float)(L * h);
        cfg.rope_original_max_pos = (int)L;
        float inv[1024];
        gllm_rope_inv_freq(&cfg, inv);
        for (int i = 0; i < half && ok; i++)
            ok = fabs(inv[i] - base[i] / ff[i]) <= tol * (base[i] / ff[i]);
    }
    if (!ok)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: tensor 'rope_freqs.weight': its factors are "
                         "not Llama-3.1 RoPE scaling (1, then a smooth ramp, then one factor, by "
                         "wavelength), the only per-frequency scaling gllm supports", path);
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
    cJSON_AddNumberToObject(rs, "factor", (double)cfg.rope_factor);
    cJSON_AddNumberToObject(rs, "low_freq_factor", (double)cfg.rope_low_freq_factor);
    cJSON_AddNumberToObject(rs, "high_freq_factor", (double)cfg.rope_high_freq_factor);
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                            (double)cfg.rope_original_max_pos);
    return GLLM_OK;
}

/* a: the metadata prefix (general.architecture); ai: the HF class to build */
static gllm_status build_config(const gllm_gguf *g, const char *a, const arch_info *ai, cJSON *c)
{
    const char *path = gllm_gguf_path(g);
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (gllm_gguf_find_kv(g, key)) {
        char *t = NULL;
        GLLM_TRY(gllm_gguf_get_str(g, key, &t));
        bool none = strcmp(t, "none") == 0;
        free(t);
        if (!none)
            return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: key '%s': rope scaling is not supported "
                             "for GGUF models", path, key);
    }
    if (gllm_gguf_find_tensor(g, "rope_freqs.weight") && ai->arch == GLLM_ARCH_GPT2)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' in a gpt2 model",
                         path);
    const gllm_gguf_tensor *emb = gllm_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: tensor 'token_embd.weight' is missing or not "
                         "2-D", path);
    int64_t layers, hidden, ff, heads, kv_heads, ctx, head_dim, key_len;
    GLLM_TRY(meta_int(g, a, "block_count", true, 0, &layers));
    GLLM_TRY(meta_int(g, a, "embedding_length", true, 0, &hidden));
    GLLM_TRY(meta_int(g, a, "feed_forward_length", ai->arch != GLLM_ARCH_GPT2, 4 * hidden, &ff));
    GLLM_TRY(meta_int(g, a, "attention.head_count", true, 0, &heads));
    GLLM_TRY(meta_int(g, a, "attention.head_count_kv", false, heads, &kv_heads));
    GLLM_TRY(meta_int(g, a, "context_length", false, ai->arch == GLLM_ARCH_GPT2 ? 1024 : 2048,
                      &ctx));
    if (emb->ne[0] != hidden)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: tensor 'token_embd.weight' has rows of %lld, but "
                         "%s.embedding_length is %lld", path, (long long)emb->ne[0], a,
                         (long long)hidden);
    const bool tied = gllm_gguf_find_tensor(g, "output.weight") == NULL;
    cJSON_AddItemToObject(c, "architectures", cJSON_CreateStringArray(&ai->hf_class, 1));
    cJSON_AddStringToObject(c, "model_type", ai->model_type);
    cJSON_AddNumberToObject(c, "vocab_size", (double)emb->ne[1]);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", tied);
    if (ai->arch == GLLM_ARCH_GPT2) {
        double eps;
        GLLM_TRY(meta_float(g, a, "attention.layer_norm_epsilon", 1e-5, &eps));
        cJSON_AddNumberToObject(c, "n_embd", (double)hidden);
        cJSON_AddNumberToObject(c, "n_layer", (double)layers);
        cJSON_AddNumberToObject(c, "n_head", (double)heads);
        cJSON_AddNumberToObject(c, "n_positions", (double)ctx);
        cJSON_AddNumberToObject(c, "n_ctx", (double)ctx);
        cJSON_AddNumberToObject(c, "n_inner", (double)ff);
        cJSON_AddNumberToObject(c, "layer_norm_epsilon", (double)(float)eps);
        cJSON_AddStringToObject(c, "activation_function", "gelu_new");
    } else {
        double eps, theta;
        GLLM_TRY(meta_float(g, a, "attention.layer_norm_rms_epsilon", 1e-6, &eps));
        GLLM_TRY(meta_float(g, a, "rope.freq_base", 10000.0, &theta));
        GLLM_TRY(meta_int(g, a, "rope.dimension_count", false, heads ? hidden / heads : 0,
                          &head_dim));
        GLLM_TRY(meta_int(g, a, "attention.key_length", false, head_dim, &key_len));
        cJSON_AddNumberToObject(c, "hidden_size", (double)hidden);
        cJSON_AddNumberToObject(c, "intermediate_size", (double)ff);
        cJSON_AddNumberToObject(c, "num_hidden_layers", (double)layers);
        cJSON_AddNumberToObject(c, "num_attention_heads", (double)heads);
        cJSON_AddNumberToObject(c, "num_key_value_heads", (double)kv_heads);
        cJSON_AddNumberToObject(c, "head_dim", (double)key_len);
        cJSON_AddNumberToObject(c, "max_position_embeddings", (double)ctx);
        cJSON_AddNumberToObject(c, "rms_norm_eps", (double)(float)eps);
        cJSON_AddNumberToObject(c, "rope_theta", (double)(float)theta);
        cJSON_AddStringToObject(c, "hidden_act", "silu");
        if (gllm_gguf_find_tensor(g, "rope_freqs.weight"))
            GLLM_TRY(fit_rope_freqs(g, (double)(float)theta, head_dim, c));
        if (ai->arch == GLLM_ARCH_MISTRAL) {
            int64_t sw;
            GLLM_TRY(meta_int(g, a, "attention.sliding_window", false, 0, &sw));
            if (sw > 0)
                cJSON_AddNumberToObject(c, "sliding_window", (double)sw);
            else
                cJSON_AddNullToObject(c, "sliding_window");
        }
    }
    static const char *const ids[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token_id"},
                                         {"tokenizer.ggml.eos_token_id", "eos_token_id"}};
    for (int i = 0; i < 2; i++) {
        int64_t v;
        if (gllm_gguf_find_kv(g, ids[i][0]) && gllm_gguf_get_int(g, ids[i][0], &v) == GLLM_OK)
            cJSON_AddNumberToObject(c, ids[i][1], (double)v);
    }
    cJSON_AddStringToObject(c, "torch_dtype", "float32");
    return GLLM_OK;
}

gllm_status gllm_gguf_hf_config(const gllm_gguf *g, char **json)
{
    *json = NULL;
    char *arch = NULL;
    gllm_status s = gllm_gguf_get_str(g, "general.architecture", &arch);
    if (s != GLLM_OK)
        return s;
    const arch_info *ai = find_arch_gguf(arch);
    if (!ai) {
        s = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: key 'general.architecture': \"%s\" is not "
                      "supported (supported: llama, mistral, qwen2, gpt2)", gllm_gguf_path(g),
                      arch);
        free(arch);
        return s;
    }
    /* llama.cpp runs Mistral checkpoints as "llama"; gllm's export keeps
     * their sliding window under llama.attention.sliding_window */
    int64_t sw = 0;
    if (ai->arch == GLLM_ARCH_LLAMA &&
        meta_int(g, "llama", "attention.sliding_window", false, 0, &sw) == GLLM_OK && sw > 0)
        ai = find_arch_gllm(GLLM_ARCH_MISTRAL);
    cJSON *c = cJSON_CreateObject();
    s = c ? build_config(g, arch, ai, c) : gllm_fail(GLLM_ERR_OOM, "out of memory for a config");
    free(arch);
    if (s == GLLM_OK) {
        *json = cJSON_Print(c);
        if (!*json)
            s = gllm_fail(GLLM_ERR_OOM, "out of memory for a config");
    }
    cJSON_Delete(c);
    return s;
}

/* ---------------------------------------------------------------- q/k rows */

/* llama.cpp's permute: within each of n_head heads of D rows, GGUF row 2i + j
 * holds HF row j * D/2 + i. to_gguf chooses the direction. */
static void permute_rows(float *dst, const float *src, int64_t rows, int64_t cols, int n_head,
                         bool to_gguf)
{
    const int64_t D = rows / n_head, half = D / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++) {
                const int64_t hf = h * D + j * half + i, gg = h * D + 2 * i + j;
                const int64_t d = to_gguf ? gg : hf, s = to_gguf ? hf : gg;
                memcpy(dst + d * cols, src + s * cols, (size_t)cols * sizeof(float));
            }
}

/* heads for the q/k permutation of a parameter, or 0 if it is not permuted */
static int permute_heads(const gllm_model *m, const char *hf_name)
{
    const arch_info *ai = find_arch_gllm(m->cfg.arch);
    if (!ai || !ai->permuted_qk)
        return 0;
    if (strstr(hf_name, ".self_attn.q_proj."))
        return m->cfg.n_heads;
    if (strstr(hf_name, ".self_attn.k_proj."))
        return m->cfg.n_kv_heads;
    return 0;
}

/* ---------------------------------------------------------------- load */

static gllm_status load_weights(gllm_model *m, const gllm_gguf *g)
{
    const char *path = gllm_gguf_path(g);
    size_t maxn = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > maxn)
            maxn = m->params[i].numel;
    float *buf = gllm_malloc(2 * maxn * sizeof(float), "weight conversion buffer");
    if (!buf)
        return GLLM_ERR_OOM;
    gllm_status s = GLLM_OK;
    for (int i = 0; i < m->n_params && s == GLLM_OK; i++) {
        const gllm_param_info *p = &m->params[i];
        char name[160];
        if (!gllm_gguf_tensor_name(p->name, name, sizeof name)) {
            s = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: parameter '%s' has no GGUF name", path,
                          p->name);
            break;
        }
        const gllm_gguf_tensor *t = gllm_gguf_find_tensor(g, name);
        if (!t) {
            s = gllm_fail(GLLM_ERR_NOT_FOUND, "%s: tensor '%s' is missing (needed by %s as %s)",
                          path, name, m->cfg.architecture, p->name);
            break;
        }
        const bool ok = p->ndim == 2 ? t->ndim == 2 && t->ne[0] == p->shape[1] &&
                                           t->ne[1] == p->shape[0]
                                     : t->ndim == 1 && t->ne[0] == p->shape[0];
        if (!ok) {
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s' has ggml dims [%lld, %lld], expected "
                          "[%lld, %lld] for %s", path, name, (long long)t->ne[0],
                          (long long)(t->ndim > 1 ? t->ne[1] : 1),
                          (long long)(p->ndim == 2 ? p->shape[1] : p->shape[0]),
                          (long long)(p->ndim == 2 ? p->shape[0] : 1), p->name);
            break;
        }
        s = gllm_gguf_read_f32(g, t, buf);
        if (s != GLLM_OK)
            break;
        const float *src = buf;
        const int heads = permute_heads(m, p->name);
        if (heads) {
            const int64_t rows = p->shape[0], cols = p->ndim == 2 ? p->shape[1] : 1;
            if (rows % (2 * heads)) {
                s = gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s': %lld rows do not split into %d "
                              "heads of even size", path, name, (long long)rows, heads);
                break;
            }
            permute_rows(buf + maxn, buf, rows, cols, heads, false);
            src = buf + maxn;
        }
        s = m->be->upload_f32(m->be, wptr(m, p->offset), src, p->numel);
    }
    free(buf);
    return s;
}

gllm_status gllm_model_load_gguf(const char *path, gllm_backend *be, gllm_model **out)
{
    *out = NULL;
    gllm_gguf *g;
    GLLM_TRY(gllm_gguf_open(path, &g));
    gllm_model *m = gllm_calloc(1, sizeof *m, "model");
    gllm_status s = m ? GLLM_OK : GLLM_ERR_OOM;
    if (s == GLLM_OK) {
        m->be = be;
        m->esz = gllm_dtype_size(be->act_dtype);
        s = gllm_gguf_hf_config(g, &m->config_json);
    }
    if (s == GLLM_OK)
        s = gllm_model_config_parse(path, m->config_json, &m->cfg);
    if (s == GLLM_OK)
        s = gllm_model_build_layout(m);
    if (s == GLLM_OK)
        s = gllm_model_alloc_params(m);
    if (s == GLLM_OK)
        s = load_weights(m, g);
    gllm_gguf_close(g);
    if (s != GLLM_OK) {
        gllm_model_free(m);
        return s;
    }
    *out = m;
    return GLLM_OK;
}

/* ---------------------------------------------------------------- export */

static int file_type_of(int type)
{
    switch (type) {
    case GLLM_GGML_F16: return 1;
    case GLLM_GGML_Q8_0: return 7;
    case GLLM_GGML_BF16: return 32;
    default: return 0;
    }
}

static gllm_status add_u32k(gllm_gguf_writer *w, const char *a, const char *k, uint32_t v)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", a, k);
    return gllm_gguf_add_u32(w, key, v);
}

static gllm_status add_f32k(gllm_gguf_writer *w, const char *a, const char *k, float v)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", a, k);
    return gllm_gguf_add_f32(w, key, v);
}

gllm_status gllm_model_export_gguf(gllm_model *m, gllm_gguf_writer *w, int type, const char *name)
{
    const gllm_model_config *c = &m->cfg;
    const arch_info *ai = find_arch_gllm(c->arch);
    /* llama.cpp runs Mistral checkpoints as "llama" */
    const char *a = c->arch == GLLM_ARCH_MISTRAL ? "llama" : ai->gguf;
    GLLM_TRY(gllm_gguf_add_str(w, "general.architecture", a));
    GLLM_TRY(gllm_gguf_add_str(w, "general.name", name ? name : "gllm model"));
    GLLM_TRY(gllm_gguf_add_u32(w, "general.file_type", (uint32_t)file_type_of(type)));
    GLLM_TRY(gllm_gguf_add_u32(w, "general.quantization_version", 2));
    GLLM_TRY(add_u32k(w, a, "context_length", (uint32_t)c->max_pos));
    GLLM_TRY(add_u32k(w, a, "embedding_length", (uint32_t)c->hidden));
    GLLM_TRY(add_u32k(w, a, "block_count", (uint32_t)c->n_layers));
    GLLM_TRY(add_u32k(w, a, "feed_forward_length", (uint32_t)c->intermediate));
    GLLM_TRY(add_u32k(w, a, "attention.head_count", (uint32_t)c->n_heads));
    if (c->arch == GLLM_ARCH_GPT2) {
        GLLM_TRY(add_f32k(w, a, "attention.layer_norm_epsilon", c->norm_eps));
    } else {
        GLLM_TRY(add_u32k(w, a, "attention.head_count_kv", (uint32_t)c->n_kv_heads));
        GLLM_TRY(add_f32k(w, a, "rope.freq_base", c->rope_theta));
        GLLM_TRY(add_f32k(w, a, "attention.layer_norm_rms_epsilon", c->norm_eps));
        GLLM_TRY(add_u32k(w, a, "rope.dimension_count", (uint32_t)c->head_dim));
        if (c->head_dim * c->n_heads != c->hidden) {
            GLLM_TRY(add_u32k(w, a, "attention.key_length", (uint32_t)c->head_dim));
            GLLM_TRY(add_u32k(w, a, "attention.value_length", (uint32_t)c->head_dim));
        }
        GLLM_TRY(add_u32k(w, a, "vocab_size", (uint32_t)c->vocab_size));
        if (c->sliding_window > 0)
            GLLM_TRY(add_u32k(w, a, "attention.sliding_window", (uint32_t)c->sliding_window));
    }
    if (c->rope_llama3) { /* as llama.cpp's converter: the divisor of each frequency */
        const int half = c->head_dim / 2;
        float inv[1024], ff[1024];
        if (half > 1024)
            return gllm_fail(GLLM_ERR_UNSUPPORTED, "GGUF export: head_dim %d", c->head_dim);
        gllm_model_config plain = *c;
        plain.rope_llama3 = false;
        gllm_rope_inv_freq(c, inv);
        gllm_rope_inv_freq(&plain, ff);
        for (int i = 0; i < half; i++)
            ff[i] = (float)((double)ff[i] / (double)inv[i]);
        const int64_t ne[1] = {half};
        GLLM_TRY(gllm_gguf_add_tensor(w, "rope_freqs.weight", GLLM_GGML_F32, 1, ne, ff));
    }
    size_t maxn = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > maxn)
            maxn = m->params[i].numel;
    float *buf = gllm_malloc(2 * maxn * sizeof(float), "GGUF export buffer");
    if (!buf)
        return GLLM_ERR_OOM;
    gllm_status s = GLLM_OK;
    for (int i = 0; i < m->n_params && s == GLLM_OK; i++) {
        const gllm_param_info *p = &m->params[i];
        char gname[160];
        if (!gllm_gguf_tensor_name(p->name, gname, sizeof gname)) {
            s = gllm_fail(GLLM_ERR_UNSUPPORTED, "GGUF export: parameter '%s' has no GGUF name",
                          p->name);
            break;
        }
        s = gllm_model_read_param(m, p, buf);
        if (s != GLLM_OK)
            break;
        const float *src = buf;
        const int heads = permute_heads(m, p->name);
        const int64_t cols = p->ndim == 2 ? p->shape[1] : 1;
        if (heads) {
            permute_rows(buf + maxn, buf, p->shape[0], cols, heads, true);
            src = buf + maxn;
        }
        int64_t ne[2] = {p->ndim == 2 ? p->shape[1] : p->shape[0], p->shape[0]};
        int t = p->ndim == 2 ? type : GLLM_GGML_F32;
        if (t == GLLM_GGML_Q8_0 && ne[0] % 32)
            t = GLLM_GGML_F32;
        s = gllm_gguf_add_tensor(w, gname, t, p->ndim, ne, src);
    }
    free(buf);
    return s;
}
