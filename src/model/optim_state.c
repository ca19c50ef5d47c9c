/* AdamW state (first and second moments, fp32 master weights when the
 * parameters are stored in lower precision) to and from safetensors, for
 * checkpoints that resume bit for bit. Under ZeRO-1 each rank holds and
 * saves its own slice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/safetensors.h"
#include "model_internal.h"

static size_t state_len(const gllm_model *m) { return m->n_own > 0 ? m->state_n : m->numel; }

/* "replicated", or under ZeRO-1 "zero1 rank R of W: lo+slice,..." (every bucket) */
static char *layout_of(const gllm_model *m)
{
    size_t cap = 64 + (size_t)m->n_own * 48;
    char *buf = gllm_malloc(cap, "optimizer layout");
    if (!buf)
        return NULL;
    if (!m->zero) {
        snprintf(buf, cap, "replicated");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, cap, "zero1 rank %d of %d:", m->zero->rank, m->zero->world);
    for (int i = 0; i < m->n_own && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%zu+%zu", i ? "," : "", m->own[i].bucket_lo,
                              m->own[i].slice);
    return buf;
}

gllm_status gllm_model_save_optimizer(gllm_model *m, const char *path)
{
    if (!m->adam_m)
        return gllm_fail(GLLM_ERR_INVALID, "%s: no optimizer state yet (no AdamW step taken)", path);
    gllm_backend *be = m->be;
    const size_t n = state_len(m), bytes = n * sizeof(float);
    float *host[3] = {NULL, NULL, NULL};
    const char *names[3] = {"adam_m", "adam_v", "master"};
    float *dev[3] = {m->adam_m, m->adam_v, m->master};
    const int k = m->master ? 3 : 2;
    gllm_st_entry e[3];
    gllm_status s = GLLM_OK;
    for (int i = 0; i < k && s == GLLM_OK; i++) {
        host[i] = gllm_malloc(bytes ? bytes : 4, "optimizer state staging");
        if (!host[i])
            s = GLLM_ERR_OOM;
        else if (n)
            s = be->download(be, host[i], dev[i], bytes);
        e[i] = (gllm_st_entry){.name = names[i], .dtype = GLLM_F32, .ndim = 1, .data = host[i]};
        e[i].shape[0] = (int64_t)n;
    }
    char total[32];
    snprintf(total, sizeof total, "%zu", m->numel);
    char *layout = layout_of(m);
    if (!layout)
        s = GLLM_ERR_OOM;
    const char *const meta[] = {"layout", layout ? layout : "", "numel", total, NULL};
    if (s == GLLM_OK)
        s = gllm_st_write(path, e, k, meta);
    for (int i = 0; i < k; i++)
        free(host[i]);
    free(layout);
    return s;
}

gllm_status gllm_model_load_optimizer(gllm_model *m, const char *path)
{
    gllm_backend *be = m->be;
    gllm_safetensors *st;
    GLLM_TRY(gllm_st_open(path, &st));
    const size_t n = state_len(m);
    const char *layout = gllm_st_metadata(st, "layout"), *total = gllm_st_metadata(st, "numel");
    char *mine = layout_of(m);
    gllm_status s = mine ? GLLM_OK : GLLM_ERR_OOM;
    if (s == GLLM_OK && (!layout || !total || strcmp(layout, mine) != 0 ||
                         strtoull(total, NULL, 10) != m->numel))
        s = gllm_fail(GLLM_ERR_FORMAT, "%s: optimizer state of another model or rank layout "
                      "(%.80s, numel %s; this run: %.80s, %zu; ZeRO-1 slices follow the rank count and "
                      "bucket_mb)", path, layout ? layout : "?",
                      total ? total : "?", mine, m->numel);
    free(mine);
    const bool want_master = be->act_dtype != GLLM_F32;
    const char *names[3] = {"adam_m", "adam_v", "master"};
    float **dev[3] = {&m->adam_m, &m->adam_v, &m->master};
    for (int i = 0; i < (want_master ? 3 : 2) && s == GLLM_OK; i++) {
        const gllm_st_tensor *t = gllm_st_find(st, names[i]);
        if (!t || t->dtype != GLLM_F32 || t->ndim != 1 || (size_t)t->shape[0] != n) {
            s = gllm_fail(GLLM_ERR_FORMAT, "%s: tensor '%s' missing or not F32 [%zu]", path,
                          names[i], n);
            break;
        }
        if (!*dev[i])
            s = be->alloc(be, (n ? n : 1) * sizeof(float), names[i], (void **)dev[i]);
        float *tmp = s == GLLM_OK ? gllm_malloc((n ? n : 1) * sizeof(float), path) : NULL;
        if (s == GLLM_OK && !tmp)
            s = GLLM_ERR_OOM;
        if (s == GLLM_OK && n) { /* copied: safetensors data may be unaligned */
            memcpy(tmp, t->data, n * sizeof(float));
            s = be->upload(be, *dev[i], tmp, n * sizeof(float));
        }
        free(tmp);
    }
    if (s == GLLM_OK && !m->segs) {
        m->segs = gllm_calloc((size_t)m->n_params, sizeof *m->segs, "AdamW segments");
        if (!m->segs)
            s = GLLM_ERR_OOM;
    }
    gllm_st_close(st);
    return s;
}
