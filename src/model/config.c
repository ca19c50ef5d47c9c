/* config.json -> gllm_model_config, following the defaults of each
 * transformers configuration class. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gllm/model.h"
#include "core/file.h"
#include "gllm/json.h"
#include "model_internal.h"

#define SUPPORTED_ARCHS \
    "GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM"

void gllm_config_path(const char *path, char *buf, size_t n)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(buf, n, "%s/config.json", path);
    else
        snprintf(buf, n, "%s", path);
}

/* Accessors that distinguish "absent" (default) from "wrong type" (error). */
typedef struct {
    const char *file;
    const cJSON *root;
} cfg_src;

static gllm_status get_int(const cfg_src *s, const char *key, int dflt, bool required, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: missing required key \"%s\"", s->file, key);
        *out = dflt;
        return GLLM_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 2147483647.0)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be a non-negative integer", s->file,
                         key);
    *out = (int)v->valuedouble;
    return GLLM_OK;
}

static gllm_status get_float(const cfg_src *s, const char *key, float dflt, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return GLLM_OK;
    }
    if (!cJSON_IsNumber(v))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be a number", s->file, key);
    *out = (float)v->valuedouble;
    return GLLM_OK;
}

static gllm_status get_bool(const cfg_src *s, const char *key, bool dflt, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return GLLM_OK;
    }
    if (!cJSON_IsBool(v))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be true or false", s->file, key);
    *out = cJSON_IsTrue(v);
    return GLLM_OK;
}

static const char *get_str(const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* eos_token_id may be an int or a list (Llama-3 instruct); take the first. */
static int token_id(const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsArray(v))
        v = cJSON_GetArrayItem(v, 0);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

static gllm_status parse_gpt2(const cfg_src *s, gllm_model_config *c)
{
    GLLM_TRY(get_int(s, "vocab_size", 50257, false, &c->vocab_size));
    GLLM_TRY(get_int(s, "n_embd", 768, false, &c->hidden));
    GLLM_TRY(get_int(s, "n_layer", 12, false, &c->n_layers));
    GLLM_TRY(get_int(s, "n_head", 12, false, &c->n_heads));
    GLLM_TRY(get_int(s, "n_positions", 1024, false, &c->max_pos));
    GLLM_TRY(get_int(s, "n_inner", 4 * c->hidden, false, &c->intermediate));
    GLLM_TRY(get_float(s, "layer_norm_epsilon", 1e-5f, &c->norm_eps));
    GLLM_TRY(get_bool(s, "tie_word_embeddings", true, &c->tied));
    const char *act = get_str(s->root, "activation_function");
    if (act && strcmp(act, "gelu_new") != 0 && strcmp(act, "gelu_pytorch_tanh") != 0)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "%s: activation_function \"%s\" is not supported (supported: gelu_new, "
                         "gelu_pytorch_tanh)",
                         s->file, act);
    bool b;
    GLLM_TRY(get_bool(s, "scale_attn_by_inverse_layer_idx", false, &b));
    if (b)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "%s: scale_attn_by_inverse_layer_idx=true is not supported", s->file);
    GLLM_TRY(get_bool(s, "scale_attn_weights", true, &b));
    if (!b)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: scale_attn_weights=false is not supported",
                         s->file);
    c->n_kv_heads = c->n_heads;
    c->layernorm = true;
    c->learned_pos = true;
    c->qkv_bias = c->o_bias = c->mlp_bias = true;
    return GLLM_OK;
}

/* RoPE settings: transformers < 5 writes "rope_theta" and "rope_scaling" at the
 * top level; transformers 5 writes one "rope_parameters" object holding
 * rope_theta, rope_type and the scaling keys. Both are read. */
static gllm_status parse_rope_scaling(const cfg_src *s, gllm_model_config *c)
{
    const char *key = "rope_parameters";
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(s->root, key);
    if (!rs || cJSON_IsNull(rs)) {
        key = "rope_scaling";
        rs = cJSON_GetObjectItemCaseSensitive(s->root, key);
    }
    if (!rs || cJSON_IsNull(rs))
        return GLLM_OK;
    if (!cJSON_IsObject(rs))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: %s must be an object or null", s->file, key);
    if (cJSON_GetObjectItemCaseSensitive(rs, "rope_theta")) {
        cfg_src sub = {s->file, rs};
        GLLM_TRY(get_float(&sub, "rope_theta", c->rope_theta, &c->rope_theta));
    }
    const char *type = get_str(rs, "rope_type");
    if (!type)
        type = get_str(rs, "type");
    if (!type || strcmp(type, "default") == 0)
        return GLLM_OK;
    if (strcmp(type, "llama3") != 0)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "%s: %s type \"%s\" is not supported (supported: default, llama3)",
                         s->file, key, type);
    cfg_src sub = {s->file, rs};
    c->rope_llama3 = true;
    GLLM_TRY(get_float(&sub, "factor", 8.0f, &c->rope_factor));
    GLLM_TRY(get_float(&sub, "low_freq_factor", 1.0f, &c->rope_low_freq_factor));
    GLLM_TRY(get_float(&sub, "high_freq_factor", 4.0f, &c->rope_high_freq_factor));
    GLLM_TRY(get_int(&sub, "original_max_position_embeddings", 8192, false,
                     &c->rope_original_max_pos));
    if (c->rope_high_freq_factor <= c->rope_low_freq_factor || c->rope_factor <= 0)
        return gllm_fail(GLLM_ERR_FORMAT,
                         "%s: %s needs factor > 0 and high_freq_factor > low_freq_factor",
                         s->file, key);
    return GLLM_OK;
}

static gllm_status parse_llama_like(const cfg_src *s, gllm_model_config *c)
{
    GLLM_TRY(get_int(s, "vocab_size", 32000, false, &c->vocab_size));
    GLLM_TRY(get_int(s, "hidden_size", 0, true, &c->hidden));
    GLLM_TRY(get_int(s, "intermediate_size", 0, true, &c->intermediate));
    GLLM_TRY(get_int(s, "num_hidden_layers", 0, true, &c->n_layers));
    GLLM_TRY(get_int(s, "num_attention_heads", 0, true, &c->n_heads));
    GLLM_TRY(get_int(s, "num_key_value_heads", c->n_heads, false, &c->n_kv_heads));
    GLLM_TRY(get_int(s, "head_dim", c->n_heads ? c->hidden / c->n_heads : 0, false, &c->head_dim));
    GLLM_TRY(get_int(s, "max_position_embeddings", 2048, false, &c->max_pos));
    GLLM_TRY(get_float(s, "rms_norm_eps", 1e-6f, &c->norm_eps));
    GLLM_TRY(get_float(s, "rope_theta", 10000.0f, &c->rope_theta));
    GLLM_TRY(parse_rope_scaling(s, c));
    const char *act = get_str(s->root, "hidden_act");
    if (act && strcmp(act, "silu") != 0)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "%s: hidden_act \"%s\" is not supported (supported: silu)", s->file, act);
    c->gated_mlp = true;
    if (c->arch == GLLM_ARCH_QWEN2) {
        GLLM_TRY(get_bool(s, "tie_word_embeddings", false, &c->tied));
        bool sw;
        GLLM_TRY(get_bool(s, "use_sliding_window", false, &sw));
        if (sw)
            return gllm_fail(GLLM_ERR_UNSUPPORTED,
                             "%s: use_sliding_window=true is not supported for Qwen2", s->file);
        c->qkv_bias = true;
    } else {
        GLLM_TRY(get_bool(s, "tie_word_embeddings", false, &c->tied));
        bool attn_bias;
        GLLM_TRY(get_bool(s, "attention_bias", false, &attn_bias));
        c->qkv_bias = c->o_bias = attn_bias;
        GLLM_TRY(get_bool(s, "mlp_bias", false, &c->mlp_bias));
        if (c->mlp_bias)
            return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: mlp_bias=true is not supported", s->file);
    }
    if (c->arch == GLLM_ARCH_MISTRAL)
        GLLM_TRY(get_int(s, "sliding_window", 0, false, &c->sliding_window));
    /* transformers 5 lists per-layer attention kinds; gllm runs one kind for all layers */
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(s->root, "layer_types");
    const cJSON *it;
    cJSON_ArrayForEach(it, lt)
    {
        const bool sliding = cJSON_IsString(it) && strcmp(it->valuestring, "sliding_attention") == 0;
        const bool full = cJSON_IsString(it) && strcmp(it->valuestring, "full_attention") == 0;
        if (!full && !(sliding && c->arch == GLLM_ARCH_MISTRAL))
            return gllm_fail(GLLM_ERR_UNSUPPORTED,
                             "%s: layer_types entry %s is not supported (supported: full_attention%s)",
                             s->file, cJSON_IsString(it) ? it->valuestring : "(not a string)",
                             c->arch == GLLM_ARCH_MISTRAL ? ", sliding_attention" : "");
    }
    return GLLM_OK;
}

static gllm_status config_from_json(const char *file, cJSON *root, gllm_model_config *c);

gllm_status gllm_model_config_load(const char *path, gllm_model_config *c)
{
    char file[4096];
    gllm_config_path(path, file, sizeof file);
    cJSON *root;
    GLLM_TRY(gllm_json_read_file(file, &root)); /* duplicate keys, bad UTF-8 refused there */
    return config_from_json(file, root, c);
}

gllm_status gllm_model_config_parse(const char *file, const char *text, gllm_model_config *c)
{
    return config_from_json(file, cJSON_Parse(text), c);
}

/* takes ownership of root (may be NULL: the text did not parse) */
static gllm_status config_from_json(const char *file, cJSON *root, gllm_model_config *c)
{
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gllm_fail(GLLM_ERR_FORMAT, "%s: not a JSON object", file);
    }
    memset(c, 0, sizeof *c);
    cfg_src s = {file, root};
    gllm_status st = GLLM_OK;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : NULL;
    if (!arch) {
        const char *mt = get_str(root, "model_type");
        static const char *by_type[][2] = {{"gpt2", "GPT2LMHeadModel"},
                                           {"llama", "LlamaForCausalLM"},
                                           {"qwen2", "Qwen2ForCausalLM"},
                                           {"mistral", "MistralForCausalLM"}};
        for (size_t i = 0; mt && i < sizeof by_type / sizeof by_type[0]; i++)
            if (strcmp(mt, by_type[i][0]) == 0)
                arch = by_type[i][1];
    }
    if (!arch) {
        st = gllm_fail(GLLM_ERR_FORMAT,
                       "%s: no \"architectures\" list or known \"model_type\" (supported: %s)",
                       file, SUPPORTED_ARCHS);
        goto done;
    }
    snprintf(c->architecture, sizeof c->architecture, "%s", arch);
    c->rope_theta = 10000.0f;
    if (strcmp(arch, "GPT2LMHeadModel") == 0) {
        c->arch = GLLM_ARCH_GPT2;
        st = parse_gpt2(&s, c);
    } else if (strcmp(arch, "LlamaForCausalLM") == 0) {
        c->arch = GLLM_ARCH_LLAMA;
        st = parse_llama_like(&s, c);
    } else if (strcmp(arch, "Qwen2ForCausalLM") == 0) {
        c->arch = GLLM_ARCH_QWEN2;
        st = parse_llama_like(&s, c);
    } else if (strcmp(arch, "MistralForCausalLM") == 0) {
        c->arch = GLLM_ARCH_MISTRAL;
        st = parse_llama_like(&s, c);
    } else {
        st = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)",
                       file, arch, SUPPORTED_ARCHS);
    }
    if (st != GLLM_OK)
        goto done;
    if (!c->head_dim && c->n_heads)
        c->head_dim = c->hidden / c->n_heads;
    if (c->vocab_size <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->head_dim <= 0 || c->intermediate <= 0 || c->max_pos <= 0) {
        st = gllm_fail(GLLM_ERR_FORMAT, "%s: sizes must be positive (vocab %d, hidden %d, layers %d, "
                       "heads %d, kv heads %d, head_dim %d, intermediate %d, max positions %d)",
                       file, c->vocab_size, c->hidden, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->head_dim, c->intermediate, c->max_pos);
        goto done;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        st = gllm_fail(GLLM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of "
                       "num_key_value_heads %d", file, c->n_heads, c->n_kv_heads);
        goto done;
    }
    if (c->head_dim % 2 != 0) {
        st = gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: odd head_dim %d is not supported", file,
                       c->head_dim);
        goto done;
    }
    if (c->arch == GLLM_ARCH_GPT2 && c->head_dim * c->n_heads != c->hidden) {
        st = gllm_fail(GLLM_ERR_FORMAT, "%s: n_embd %d is not divisible by n_head %d", file,
                       c->hidden, c->n_heads);
        goto done;
    }
    c->bos_id = token_id(root, "bos_token_id");
    c->eos_id = token_id(root, "eos_token_id");
done:
    cJSON_Delete(root);
    return st;
}

void gllm_rope_inv_freq(const gllm_model_config *c, float *inv_freq)
{
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in fp32 */
        float expo = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf(c->rope_theta, expo);
        if (c->rope_llama3) {
            const float pi = 3.14159265358979323846f;
            float old_ctx = (float)c->rope_original_max_pos;
            float low_wavelen = old_ctx / c->rope_low_freq_factor;
            float high_wavelen = old_ctx / c->rope_high_freq_factor;
            float wavelen = 2.0f * pi / f;
            float scaled = wavelen > low_wavelen ? f / c->rope_factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                               (c->rope_high_freq_factor - c->rope_low_freq_factor);
                scaled = (1.0f - smooth) * scaled / c->rope_factor + smooth * scaled;
            }
            f = scaled;
        }
        inv_freq[i] = f;
    }
}
