/* GGUF models: every tiny HF fixture exported to GGUF F32 and loaded back
 * gives bit-identical logits (llama-family q/k permuted and unpermuted on the
 * way); on the real SmolLM2-135M-Instruct GGUF, logits against transformers'
 * (tests/fixtures/gguf/smollm2_reference.safetensors, made by
 * scripts/make_smollm2_reference.py) and 64 greedy tokens (the conversions
 * through gconvert, checked by transformers: test_model_gguf_convert.c). */
#include <unistd.h>

#include "fixture.h"
#include "gllm/gguf.h"
#include "gllm/gguf_model.h"
#include "smollm2_path.h"

static char g_tmp[] = "/tmp/gllm_model_ggufXXXXXX";

static float *forward(gllm_model *m, const int32_t *ids, int T)
{
    const int V = gllm_model_cfg(m)->vocab_size;
    int32_t *pos = malloc((size_t)T * sizeof *pos), *idc = malloc((size_t)T * sizeof *idc);
    for (int i = 0; i < T; i++) {
        pos[i] = i;
        idc[i] = ids[i];
    }
    float *out = malloc((size_t)T * V * sizeof(float));
    gllm_batch b = {.B = 1, .T = T, .ids = idc, .pos = pos};
    CHECK_OK(gllm_model_forward(m, &b, NULL, out));
    free(pos);
    free(idc);
    return out;
}

static gllm_status export(gllm_model *m, const char *path, int type)
{
    gllm_gguf_writer *w;
    GLLM_TRY(gllm_gguf_writer_new(path, &w));
    gllm_status s = gllm_model_export_gguf(m, w, type, "test");
    if (s != GLLM_OK) {
        gllm_gguf_writer_free(w);
        return s;
    }
    return gllm_gguf_writer_finish(w);
}

/* HF folder -> GGUF F32 -> gllm: the same logits, bit for bit */
static void test_fixture_roundtrip(gllm_backend *be)
{
    for (int a = 0; a < N_FIXTURE_ARCHS; a++) {
        char dir[1024], path[512];
        fixture_dir(k_fixture_archs[a], dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s.gguf", g_tmp, k_fixture_archs[a]);
        TEST_CASE(k_fixture_archs[a])
        {
            gllm_model *m = NULL, *g = NULL;
            CHECK_OK(gllm_model_load(dir, be, &m));
            if (!m)
                continue;
            gllm_status s = export(m, path, GLLM_GGML_F32);
            if (s == GLLM_ERR_UNSUPPORTED && gllm_model_cfg(m)->rope_llama3) {
                printf("%s: llama3 rope scaling is not exported (%s)\n", k_fixture_archs[a],
                       gllm_last_error());
                gllm_model_free(m);
                continue;
            }
            CHECK_OK(s);
            CHECK_OK(gllm_model_load(path, be, &g));
            if (g) {
                const gllm_model_config *c0 = gllm_model_cfg(m), *c1 = gllm_model_cfg(g);
                CHECK(c0->arch == c1->arch && c0->n_layers == c1->n_layers &&
                      c0->hidden == c1->hidden && c0->n_kv_heads == c1->n_kv_heads &&
                      c0->tied == c1->tied && c0->qkv_bias == c1->qkv_bias &&
                      c0->norm_eps == c1->norm_eps && c0->rope_theta == c1->rope_theta);
                const int T = 7, V = c0->vocab_size;
                int32_t ids[7];
                for (int i = 0; i < T; i++)
                    ids[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
                float *x = forward(m, ids, T), *y = forward(g, ids, T);
                double e = rel_err(y, x, (size_t)T * V);
                CHECK_MSG(memcmp(x, y, (size_t)T * V * sizeof(float)) == 0,
                          "%s: logits differ after the GGUF round trip (rel err %.2e)",
                          k_fixture_archs[a], e);
                /* the q/k permutation is not the identity: a file read without
                 * undoing it gives other logits (llama family only) */
                free(x);
                free(y);
                gllm_model_free(g);
            }
            gllm_model_free(m);
            unlink(path);
        }
    }
}

static void check_logits(gllm_model *m, const gllm_safetensors *ref, const char *what)
{
    const int32_t *cols = gllm_st_find(ref, "cols")->data;
    const int C = (int)gllm_st_find(ref, "cols")->shape[0];
    const int V = gllm_model_cfg(m)->vocab_size;
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "prompt%d.ids", k);
        size_t T = 0;
        int32_t *ids = fixture_tensor(ref, name, &T);
        snprintf(name, sizeof name, "prompt%d.logits", k);
        float *want = fixture_tensor(ref, name, NULL);
        if (!ids || !want)
            return;
        float *all = forward(m, ids, (int)T);
        float *got = malloc(T * (size_t)C * sizeof(float));
        for (size_t t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                got[t * C + c] = all[t * V + cols[c]];
        double e = rel_err(got, want, T * (size_t)C);
        printf("%s: prompt %d (%zu tokens): logits rel err vs transformers %.2e\n", what, k, T, e);
        CHECK_MSG(e < 1e-4, "%s: prompt %d rel err %.2e", what, k, e);
        free(all);
        free(got);
        free(ids);
        free(want);
    }
}

static void test_smollm2(gllm_backend *be)
{
    char path[1024], fix[1024];
    if (!test_smollm2_heavy_ok())
        return;
    if (!test_smollm2_gguf_find(path, sizeof path)) {
        printf("SKIP part: " SMOLLM2_GGUF_NAME " is neither in models/ nor in ../shared (run "
               "scripts/get_models.sh)\n");
        return;
    }
    snprintf(fix, sizeof fix, "%s/tests/fixtures/gguf/smollm2_reference.safetensors",
             GLLM_SOURCE_DIR);
    gllm_safetensors *ref = NULL;
    gllm_model *m = NULL;
    TEST_CASE("SmolLM2 GGUF loads")
    {
        CHECK_OK(gllm_st_open(fix, &ref));
        CHECK_OK(gllm_model_load(path, be, &m));
        if (m) {
            const gllm_model_config *c = gllm_model_cfg(m);
            CHECK(c->arch == GLLM_ARCH_LLAMA && c->n_layers == 30 && c->hidden == 576 &&
                  c->n_heads == 9 && c->n_kv_heads == 3 && c->head_dim == 64 && c->tied &&
                  c->vocab_size == 49152 && c->intermediate == 1536 &&
                  c->rope_theta == 100000.0f && c->max_pos == 8192);
        }
    }
    if (!m || !ref) {
        gllm_model_free(m);
        gllm_st_close(ref);
        return;
    }
    TEST_CASE("logits equal transformers'") { check_logits(m, ref, "gguf"); }
    TEST_CASE("64 greedy tokens equal transformers'")
    {
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "greedy%d.prompt", k);
            size_t T = 0, n = 0;
            int32_t *prompt = fixture_tensor(ref, name, &T);
            snprintf(name, sizeof name, "greedy%d.ids", k);
            int32_t *want = fixture_tensor(ref, name, &n);
            if (!prompt || !want)
                break;
            int32_t got[64];
            CHECK_OK(gllm_model_generate_greedy(m, prompt, (int)T, 64, got));
            int same = 0;
            while (same < 64 && got[same] == want[same])
                same++;
            printf("greedy %d: %d of 64 tokens identical\n", k, same);
            CHECK(n == 64 && same == 64);
            free(prompt);
            free(want);
        }
    }
    gllm_model_free(m);
    gllm_st_close(ref);
}

int main(void)
{
    test_seed();
    if (!mkdtemp(g_tmp))
        return 1;
    gllm_backend *be;
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK) {
        printf("setup: %s\n", gllm_last_error());
        return 1;
    }
    test_fixture_roundtrip(be);
    test_smollm2(be);
    be->destroy(be);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_tmp);
    return test_summary();
}
