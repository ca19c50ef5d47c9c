/* The gtrain run config: a JSON object, every key checked. */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/json.h"
#include "gllm/train.h"

typedef enum { K_PATH, K_STR, K_INT, K_FLOAT, K_BOOL, K_U64 } key_kind;

typedef struct key_spec {
    const char *name;
    key_kind kind;
    size_t offset;
    size_t size; /* for strings */
    bool required;
} key_spec;

#define F(field) offsetof(gllm_train_config, field)
#define S(field) sizeof(((gllm_train_config *)0)->field)
static const key_spec k_keys[] = {
    {"model", K_PATH, F(model), S(model), true},
    {"data", K_PATH, F(data), S(data), true},
    {"val_data", K_PATH, F(val_data), S(val_data), false},
    {"out_dir", K_PATH, F(out_dir), S(out_dir), true},
    {"backend", K_STR, F(backend), S(backend), false},
    {"chat_template", K_STR, F(chat_template), S(chat_template), false},
    {"seq_len", K_INT, F(seq_len), 0, false},
    {"batch_size", K_INT, F(batch_size), 0, false},
    {"grad_accum", K_INT, F(grad_accum), 0, false},
    {"epochs", K_INT, F(epochs), 0, false},
    {"max_steps", K_INT, F(max_steps), 0, false},
    {"warmup_steps", K_INT, F(warmup_steps), 0, false},
    {"eval_every", K_INT, F(eval_every), 0, false},
    {"log_every", K_INT, F(log_every), 0, false},
    {"lr", K_FLOAT, F(lr), 0, false},
    {"min_lr_ratio", K_FLOAT, F(min_lr_ratio), 0, false},
    {"weight_decay", K_FLOAT, F(weight_decay), 0, false},
    {"beta1", K_FLOAT, F(beta1), 0, false},
    {"beta2", K_FLOAT, F(beta2), 0, false},
    {"eps", K_FLOAT, F(eps), 0, false},
    {"max_grad_norm", K_FLOAT, F(max_grad_norm), 0, false},
    {"val_fraction", K_FLOAT, F(val_fraction), 0, false},
    {"seed", K_U64, F(seed), 0, false},
    {"packing", K_BOOL, F(packing), 0, false},
    {"skip_bad", K_BOOL, F(skip_bad), 0, false},
    {"zero1", K_BOOL, F(zero1), 0, false},
    {"bucket_mb", K_FLOAT, F(bucket_mb), 0, false},
    {"save_every", K_INT, F(save_every), 0, false},
    {"keep_checkpoints", K_INT, F(keep_checkpoints), 0, false},
    {"resume", K_BOOL, F(resume), 0, false},
    {"overwrite", K_BOOL, F(overwrite), 0, false},
};
#undef F
#undef S

static void defaults(gllm_train_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->backend, sizeof c->backend, "auto");
    c->seq_len = 256;
    c->batch_size = 8;
    c->grad_accum = 1;
    c->epochs = 1;
    c->warmup_steps = 0;
    c->eval_every = 0;
    c->log_every = 1;
    c->lr = 1e-4f;
    c->min_lr_ratio = 0.1f;
    c->weight_decay = 0.0f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->max_grad_norm = 1.0f;
    c->val_fraction = 0.0f;
    c->seed = 1234;
    c->packing = true;
    c->keep_checkpoints = 2;
    c->bucket_mb = 25.0f;
}

static gllm_status set_key(const char *file, const char *dir, const key_spec *k, const cJSON *v,
                           gllm_train_config *c)
{
    char *base = (char *)c + k->offset;
    switch (k->kind) {
    case K_PATH:
    case K_STR:
        if (!cJSON_IsString(v))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be a string", file, k->name);
        if (k->kind == K_PATH && !v->valuestring[0])
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" is empty: expected %s", file, k->name,
                             !strcmp(k->name, "model") ? "the path of a Hugging Face model folder"
                             : !strcmp(k->name, "data") || !strcmp(k->name, "val_data")
                                 ? "the path of a JSONL (or JSON array) file"
                                                        : "the path of the run folder");
        if (k->kind == K_PATH && v->valuestring[0] != '/')
            snprintf(base, k->size, "%s/%s", dir, v->valuestring);
        else
            snprintf(base, k->size, "%s", v->valuestring);
        return GLLM_OK;
    case K_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > 1e9)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be a non-negative integer", file,
                             k->name);
        *(int *)base = (int)v->valuedouble;
        return GLLM_OK;
    case K_U64:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0)
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be a non-negative integer", file,
                             k->name);
        *(uint64_t *)base = (uint64_t)v->valuedouble;
        return GLLM_OK;
    case K_FLOAT:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be a number", file, k->name);
        *(float *)base = (float)v->valuedouble;
        return GLLM_OK;
    case K_BOOL:
        if (!cJSON_IsBool(v))
            return gllm_fail(GLLM_ERR_FORMAT, "%s: key \"%s\" must be true or false", file, k->name);
        *(bool *)base = cJSON_IsTrue(v);
        return GLLM_OK;
    }
    return GLLM_OK;
}

static gllm_status validate(const char *file, const gllm_train_config *c)
{
    if (c->seq_len < 2 || c->batch_size < 1 || c->grad_accum < 1)
        return gllm_fail(GLLM_ERR_INVALID, "%s: seq_len must be >= 2, batch_size and grad_accum >= 1",
                         file);
    if (c->epochs < 1 && c->max_steps < 1)
        return gllm_fail(GLLM_ERR_INVALID, "%s: set epochs >= 1 or max_steps >= 1", file);
    if (!(c->lr > 0) || c->min_lr_ratio < 0 || c->min_lr_ratio > 1)
        return gllm_fail(GLLM_ERR_INVALID, "%s: lr must be > 0 and min_lr_ratio in [0, 1]", file);
    if (c->beta1 < 0 || c->beta1 >= 1 || c->beta2 < 0 || c->beta2 >= 1 || !(c->eps > 0))
        return gllm_fail(GLLM_ERR_INVALID, "%s: beta1, beta2 must be in [0, 1) and eps > 0", file);
    if (c->val_fraction < 0 || c->val_fraction >= 1)
        return gllm_fail(GLLM_ERR_INVALID, "%s: val_fraction must be in [0, 1)", file);
    if (c->val_data[0] && c->val_fraction > 0)
        return gllm_fail(GLLM_ERR_INVALID, "%s: val_data and val_fraction both set: validate on one or the other",
                         file);
    if (c->max_grad_norm < 0)
        return gllm_fail(GLLM_ERR_INVALID, "%s: max_grad_norm must be >= 0 (0: no clipping), got %g", file,
                         c->max_grad_norm);
    if (c->log_every < 1)
        return gllm_fail(GLLM_ERR_INVALID, "%s: log_every must be >= 1", file);
    return GLLM_OK;
}

gllm_status gllm_train_config_load(const char *path, gllm_train_config *c)
{
    defaults(c);
    cJSON *root;
    GLLM_TRY(gllm_json_read_file(path, &root));
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gllm_fail(GLLM_ERR_FORMAT, "%s: not a JSON object", path);
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    const char *dir = dirname(dirbuf);
    gllm_status s = GLLM_OK;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        const key_spec *k = NULL;
        for (size_t i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++)
            if (strcmp(k_keys[i].name, it->string) == 0)
                k = &k_keys[i];
        if (!k) {
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: unknown key \"%s\" (see configs/README.md)", path,
                          it->string);
            break;
        }
        if ((s = set_key(path, dir, k, it, c)) != GLLM_OK)
            break;
    }
    for (size_t i = 0; s == GLLM_OK && i < sizeof k_keys / sizeof k_keys[0]; i++)
        if (k_keys[i].required && !cJSON_GetObjectItemCaseSensitive(root, k_keys[i].name))
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: missing required key \"%s\"", path, k_keys[i].name);
    cJSON_Delete(root);
    return s == GLLM_OK ? validate(path, c) : s;
}
