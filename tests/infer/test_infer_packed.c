/* The inference workspace keeps the projections' weights packed for the
 * backend's row-invariant matmul (be->pack_b). A step must always see the
 * model's current weights: after gllm_model_write_param and after an AdamW
 * step, a step on the old workspace equals a step on a fresh one and differs
 * from the step before the change; and packed or not, the logits are the same
 * bits (GLLM_BATCH_INVARIANT stays on; the CPU backend without pack_b is the
 * unpacked reference). */
#include <stdlib.h>
#include <string.h>

#include "gllm/step.h"
#include "infer_util.h"

#define NT 11 /* prompt tokens, one sequence */
#define BS 4 /* cache block size */

/* logits of the last prompt token, prefilled in one step on ws */
static gllm_status step_logits(gllm_model *m, gllm_step_ws *ws, float *out, int V)
{
    gllm_kv_pages *kv = NULL;
    GLLM_TRY(gllm_kv_pages_create(m, (NT + BS - 1) / BS, BS, &kv));
    int32_t ids[NT], pos[NT], slots[NT], bt[(NT + BS - 1) / BS];
    for (int i = 0; i < NT; i++)
        ids[i] = (int32_t)((i * 37 + 5) % V), pos[i] = i, slots[i] = i;
    for (int b = 0; b < (NT + BS - 1) / BS; b++)
        bt[b] = b;
    const int32_t q_start = 0, q_len = NT, ctx = NT, row = NT - 1;
    gllm_step_batch b = {.n_tokens = NT, .ids = ids, .pos = pos, .slots = slots, .n_seq = 1,
                         .q_start = &q_start, .q_len = &q_len, .ctx_len = &ctx,
                         .block_table = bt, .max_blocks = (NT + BS - 1) / BS, .n_logits = 1,
                         .logit_rows = &row};
    void *lg = NULL;
    gllm_status s = gllm_model_step(m, kv, ws, &b, &lg);
    gllm_backend *be = gllm_model_backend(m);
    if (s == GLLM_OK)
        s = be->download_f32(be, out, lg, (size_t)V);
    gllm_kv_pages_free(m, kv);
    return s;
}

/* logits on a workspace made for this call */
static gllm_status fresh_logits(gllm_model *m, float *out, int V)
{
    gllm_step_ws *ws = NULL;
    GLLM_TRY(gllm_step_ws_create(m, NT, 1, &ws));
    gllm_status s = step_logits(m, ws, out, V);
    gllm_step_ws_free(ws);
    return s;
}

static void check_arch(const char *arch)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", GLLM_SOURCE_DIR, arch);
    t_case = arch;
    gllm_backend *be = NULL, *plain = NULL;
    CHECK_OK(gllm_backend_cpu_create(2, &be));
    CHECK_OK(gllm_backend_cpu_create(2, &plain));
    if (!be || !plain)
        return;
    plain->packed_b_bytes = NULL; /* the same backend, weights never packed */
    plain->pack_b = NULL;
    gllm_model *m = load_model(be, dir), *mp = load_model(plain, dir);
    CHECK(m && mp);
    if (!m || !mp) {
        gllm_model_free(m), gllm_model_free(mp);
        be->destroy(be), plain->destroy(plain);
        return;
    }
    const int V = gllm_model_cfg(m)->vocab_size;
    float *before = malloc((size_t)V * 4), *after = malloc((size_t)V * 4);
    float *fresh = malloc((size_t)V * 4), *unpacked = malloc((size_t)V * 4);
    gllm_step_ws *ws = NULL;
    CHECK_OK(gllm_step_ws_create(m, NT, 1, &ws));
    CHECK_OK(step_logits(m, ws, before, V));
    CHECK_OK(fresh_logits(mp, unpacked, V));
    CHECK_MSG(memcmp(before, unpacked, (size_t)V * 4) == 0,
              "logits with packed weights differ from unpacked");

    /* 1. one projection rewritten through the public API */
    const gllm_param_info *p = NULL;
    for (int i = 0; i < gllm_model_n_params(m) && !p; i++) {
        const gllm_param_info *q = gllm_model_param(m, i);
        if (q->ndim == 2 && strstr(q->name, ".0.")) /* a projection of layer 0 */
            p = q;
    }
    CHECK(p != NULL);
    if (p) {
        float *w = malloc(p->numel * 4);
        CHECK_OK(gllm_model_read_param(m, p, w));
        for (size_t i = 0; i < p->numel; i++)
            w[i] = -1.5f * w[i] + 0.01f * (float)(i % 7);
        CHECK_OK(gllm_model_write_param(m, p, w));
        free(w);
        CHECK_OK(step_logits(m, ws, after, V));
        CHECK_OK(fresh_logits(m, fresh, V));
        CHECK_MSG(memcmp(after, fresh, (size_t)V * 4) == 0,
                  "%s rewritten: the old workspace's logits differ from a fresh one's", p->name);
        CHECK_MSG(memcmp(after, before, (size_t)V * 4) != 0,
                  "%s rewritten: the logits did not change", p->name);
    }

    /* 2. an AdamW step (gradients of one training batch) */
    int32_t ids[2 * NT], tg[2 * NT], tpos[2 * NT];
    float mask[2 * NT];
    for (int i = 0; i < 2 * NT; i++)
        ids[i] = (int32_t)((i * 11 + 3) % V), tg[i] = (int32_t)((i * 13 + 1) % V),
        tpos[i] = i % NT, mask[i] = 1.0f;
    gllm_batch tb = {.B = 2, .T = NT, .ids = ids, .targets = tg, .loss_mask = mask, .pos = tpos};
    float loss = 0, gn = 0;
    CHECK_OK(gllm_model_zero_grad(m));
    CHECK_OK(gllm_model_forward_backward(m, &tb, 0.0f, &loss));
    gllm_adamw_config h = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                           .weight_decay = 0.0f, .max_grad_norm = 0.0f};
    CHECK_OK(gllm_model_adamw_step(m, &h, 1, &gn));
    memcpy(before, after, (size_t)V * 4);
    CHECK_OK(step_logits(m, ws, after, V));
    CHECK_OK(fresh_logits(m, fresh, V));
    CHECK_MSG(memcmp(after, fresh, (size_t)V * 4) == 0,
              "after an AdamW step the old workspace's logits differ from a fresh one's");
    CHECK_MSG(memcmp(after, before, (size_t)V * 4) != 0,
              "after an AdamW step the logits did not change");
    printf("%-8s checked: packed vs unpacked, after write_param, after AdamW\n", arch);

    gllm_step_ws_free(ws);
    free(before), free(after), free(fresh), free(unpacked);
    gllm_model_free(m), gllm_model_free(mp);
    be->destroy(be), plain->destroy(plain);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_seed();
    gllm_backend *probe = NULL;
    CHECK_OK(gllm_backend_cpu_create(1, &probe));
    if (probe && (!probe->packed_b_bytes || probe->packed_b_bytes(probe, 64, 64) == 0))
        printf("note: this CPU backend has no packed layout (no AVX2 kernel or no BLAS); "
               "the checks still run, packing nothing\n");
    if (probe)
        probe->destroy(probe);
    static const char *const archs[] = {"llama3", "gpt2"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        check_arch(archs[i]);
    return test_summary();
}
