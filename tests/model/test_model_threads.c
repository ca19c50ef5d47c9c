/* Training results do not depend on the CPU thread count: loss, every gradient
 * and the weights after an AdamW step come out bit-identical on 1, 2 and 3
 * threads, for the fixture models (LayerNorm/GELU/bias and RMSNorm/SwiGLU/GQA
 * paths) and for stories260K at a size where every op splits into many chunks
 * (skipped when ../shared is absent). */
#include <unistd.h>

#include "fixture.h"

typedef struct run_out {
    float loss;
    float *grads, *weights;
    size_t n;
} run_out;

static void run(const char *dir, int threads, int B, int T, uint64_t seed, run_out *o)
{
    gllm_backend *be = NULL;
    gllm_model *m = NULL;
    memset(o, 0, sizeof *o);
    CHECK_OK(gllm_backend_cpu_create(threads, &be));
    if (!be)
        return;
    CHECK_OK(gllm_model_load(dir, be, &m));
    if (!m) {
        be->destroy(be);
        return;
    }
    const int V = gllm_model_cfg(m)->vocab_size, N = B * T;
    gllm_batch b = {.B = B, .T = T};
    b.ids = malloc(N * sizeof(int32_t));
    b.targets = malloc(N * sizeof(int32_t));
    b.pos = malloc(N * sizeof(int32_t));
    b.loss_mask = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) { /* the same batch for every thread count */
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        b.ids[i] = (int32_t)((seed >> 33) % (uint64_t)V);
        b.targets[i] = (int32_t)((seed >> 13) % (uint64_t)V);
        b.pos[i] = i % T < 40 ? i % T : i % T - 40; /* two documents per row */
        b.loss_mask[i] = (seed >> 7) % 5 ? 1.0f : 0.0f;
    }
    o->n = gllm_model_numel(m);
    o->grads = malloc(o->n * sizeof(float));
    o->weights = malloc(o->n * sizeof(float));
    CHECK_OK(gllm_model_zero_grad(m));
    CHECK_OK(gllm_model_forward_backward(m, &b, 0.0f, &o->loss));
    for (int i = 0; i < gllm_model_n_params(m); i++) {
        const gllm_param_info *p = gllm_model_param(m, i);
        CHECK_OK(gllm_model_read_grad(m, p, o->grads + p->offset));
    }
    gllm_adamw_config h = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                           .weight_decay = 0.1f, .max_grad_norm = 1.0f};
    CHECK_OK(gllm_model_adamw_step(m, &h, 1, NULL));
    for (int i = 0; i < gllm_model_n_params(m); i++) {
        const gllm_param_info *p = gllm_model_param(m, i);
        CHECK_OK(gllm_model_read_param(m, p, o->weights + p->offset));
    }
    free(b.ids), free(b.targets), free(b.pos), free(b.loss_mask);
    gllm_model_free(m);
    be->destroy(be);
}

static void compare(const char *name, const char *dir, int B, int T)
{
    char label[256];
    snprintf(label, sizeof label, "%s, B=%d T=%d: same bits on 1, 2 and 3 threads", name, B, T);
    t_case = label;
    const uint64_t seed = test_rand_u64();
    run_out ref, o;
    run(dir, 1, B, T, seed, &ref);
    for (int t = 2; t <= 3 && ref.grads; t++) {
        run(dir, t, B, T, seed, &o);
        if (!o.grads)
            continue;
        CHECK_MSG(memcmp(&o.loss, &ref.loss, sizeof o.loss) == 0, "%d threads: loss %.9g vs %.9g",
                  t, o.loss, ref.loss);
        CHECK_MSG(o.n == ref.n && memcmp(o.grads, ref.grads, o.n * sizeof(float)) == 0,
                  "%d threads: gradients differ", t);
        CHECK_MSG(o.n == ref.n && memcmp(o.weights, ref.weights, o.n * sizeof(float)) == 0,
                  "%d threads: weights after AdamW differ", t);
        free(o.grads), free(o.weights);
    }
    free(ref.grads), free(ref.weights);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_seed();
    char dir[1024];
    fixture_dir("gpt2", dir, sizeof dir);
    compare("gpt2 fixture", dir, 4, 64);
    fixture_dir("llama3", dir, sizeof dir);
    compare("llama3 fixture", dir, 4, 64);
    snprintf(dir, sizeof dir, "%s/assets/models/stories260K-hf", GLLM_SHARED_DIR);
    if (access(dir, R_OK) == 0)
        compare("stories260K", dir, 4, 256);
    else
        printf("stories260K case skipped: %s absent (../shared)\n", dir);
    return test_summary();
}
