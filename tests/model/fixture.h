/* Reading the Hugging Face reference fixtures (tests/fixtures/<arch>/, made by
 * scripts/make_fixtures.py) into host buffers for the model tests. */
#ifndef GLLM_TEST_FIXTURE_H
#define GLLM_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/backend.h"
#include "gllm/model.h"
#include "gllm/safetensors.h"
#include "test_util.h"

static const char *const k_fixture_archs[] = {"gpt2", "llama2", "llama3", "qwen2", "mistral",
                                              "smollm"};
#define N_FIXTURE_ARCHS (int)(sizeof k_fixture_archs / sizeof k_fixture_archs[0])

static inline void fixture_dir(const char *arch, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", test_fixtures_dir(), arch);
}

/* A tensor of the reference file as a malloc'd f32/i32 array (caller frees);
 * NULL (with a failed check) if absent. */
static inline void *fixture_tensor(const gllm_safetensors *ref, const char *name, size_t *numel)
{
    const gllm_st_tensor *t = gllm_st_find(ref, name);
    CHECK_MSG(t != NULL, "reference tensor %s missing", name);
    if (!t)
        return NULL;
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    memcpy(p, t->data, t->nbytes);
    if (numel)
        *numel = t->nbytes / gllm_dtype_size(t->dtype);
    return p;
}

typedef struct fixture_batch {
    gllm_batch b;
    float *logits;
    float loss;
} fixture_batch;

static inline int fixture_load_batch(const gllm_safetensors *ref, int k, fixture_batch *fb)
{
    char name[128];
    memset(fb, 0, sizeof *fb);
    const gllm_st_tensor *t;
    snprintf(name, sizeof name, "b%d.ids", k);
    t = gllm_st_find(ref, name);
    if (!t || t->ndim != 2)
        return 0;
    fb->b.B = (int)t->shape[0];
    fb->b.T = (int)t->shape[1];
    fb->b.ids = fixture_tensor(ref, name, NULL);
    snprintf(name, sizeof name, "b%d.targets", k);
    fb->b.targets = fixture_tensor(ref, name, NULL);
    snprintf(name, sizeof name, "b%d.loss_mask", k);
    fb->b.loss_mask = fixture_tensor(ref, name, NULL);
    snprintf(name, sizeof name, "b%d.pos", k);
    fb->b.pos = fixture_tensor(ref, name, NULL);
    snprintf(name, sizeof name, "b%d.logits", k);
    fb->logits = fixture_tensor(ref, name, NULL);
    snprintf(name, sizeof name, "b%d.loss", k);
    float *l = fixture_tensor(ref, name, NULL);
    fb->loss = l ? l[0] : NAN;
    free(l);
    return fb->b.ids && fb->b.targets && fb->b.loss_mask && fb->b.pos && fb->logits;
}

static inline void fixture_free_batch(fixture_batch *fb)
{
    free(fb->b.ids);
    free(fb->b.targets);
    free(fb->b.loss_mask);
    free(fb->b.pos);
    free(fb->logits);
}

/* The HF-layout reference for parameter p (transposed for GPT-2 Conv1D) in
 * gllm layout, malloc'd. */
static inline float *fixture_param_ref(const gllm_safetensors *ref, const char *prefix,
                                       const gllm_param_info *p)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", prefix, p->name);
    size_t n = 0;
    float *hf = fixture_tensor(ref, name, &n);
    if (!hf)
        return NULL;
    CHECK_MSG(n == p->numel, "%s has %zu elements, want %zu", name, n, p->numel);
    if (!p->hf_transposed)
        return hf;
    float *g = malloc(p->numel * sizeof(float));
    const int64_t rows = p->shape[0], cols = p->shape[1]; /* gllm [out, in]; file [in, out] */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            g[r * cols + c] = hf[c * rows + r];
    free(hf);
    return g;
}

static inline float fixture_meta_f(const gllm_safetensors *ref, const char *key, float dflt)
{
    const char *v = gllm_st_metadata(ref, key);
    return v ? strtof(v, NULL) : dflt;
}

#endif
