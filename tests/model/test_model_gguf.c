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
#include "forward_util.h"
#include "smollm2_path.h"

static char g_tmp[] = "/tmp/gllm_model_ggufXXXXXX";

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
            CHECK_OK(export(m, path, GLLM_GGML_F32));
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
                float *x = test_forward(m, ids, T), *y = test_forward(g, ids, T);
                double e = x && y ? rel_err(y, x, (size_t)T * V) : INFINITY;
                /* llama3 rope scaling travels as rope_freqs factors, from which
                 * the parameters are fitted back: frequencies equal to ~1e-7 */
                if (!x || !y)
                    ; /* the failed forward is counted already */
                else if (c0->rope_llama3)
                    CHECK_MSG(c1->rope_llama3 && e < 1e-6, "%s: logits rel err %.2e after the GGUF "
                              "round trip (rope_freqs)", k_fixture_archs[a], e);
                else
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

/* Llama-3.1 RoPE scaling on both load paths against transformers
 * (scripts/make_gguf_rope_fixtures.py: a tiny random model with Llama 3.1's
 * rope settings, 3 of its 32 frequency pairs on the ramp; over its 2048
 * tokens the scaling changes the logits by 11%): the HF folder (rope_scaling llama3), the GGUF as llama.cpp
 * writes it (rope_freqs, q/k permuted), gllm's own export of the HF folder
 * (its rope_freqs equal llama.cpp's formula), and a rope_freqs tensor that is
 * not Llama-3.1 scaling refused. */
static void test_llama31(gllm_backend *be)
{
    char dir[1024], gg[1024], bad[1024], refp[1024], out[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/gguf/llama31", GLLM_SOURCE_DIR);
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/llama31.gguf", GLLM_SOURCE_DIR);
    snprintf(bad, sizeof bad, "%s/tests/fixtures/gguf/llama31_badfreqs.gguf", GLLM_SOURCE_DIR);
    snprintf(refp, sizeof refp, "%s/tests/fixtures/gguf/llama31_reference.safetensors",
             GLLM_SOURCE_DIR);
    snprintf(out, sizeof out, "%s/llama31_gllm.gguf", g_tmp);
    gllm_safetensors *ref = NULL;
    CHECK_OK(gllm_st_open(refp, &ref));
    if (!ref)
        return;
    size_t T = 0, R = 0, nl = 0;
    int32_t *ids = fixture_tensor(ref, "ids", &T), *rows = fixture_tensor(ref, "rows", &R);
    float *want = fixture_tensor(ref, "logits", &nl), *inv_ref = fixture_tensor(ref, "inv_freq", NULL);
    const char *paths[3] = {dir, gg, out};
    const char *what[3] = {"HF folder (rope_scaling llama3)", "llama.cpp-style GGUF (rope_freqs)",
                           "gllm's GGUF export of the HF folder"};
    for (int k = 0; k < 3 && ids && rows && want && inv_ref; k++) {
        TEST_CASE(what[k])
        {
            gllm_model *m = NULL;
            CHECK_OK(gllm_model_load(paths[k], be, &m));
            if (!m)
                continue;
            const gllm_model_config *c = gllm_model_cfg(m);
            const size_t V = (size_t)c->vocab_size;
            CHECK(c->rope_llama3 && c->head_dim == 64 && R * V == nl);
            float inv[32];
            gllm_rope_inv_freq(c, inv);
            double ei = rel_err(inv, inv_ref, 32);
            float *all = test_forward(m, ids, (int)T), *got = malloc(nl * sizeof(float));
            for (size_t r = 0; all && r < R && R * V == nl; r++)
                memcpy(got + r * V, all + (size_t)rows[r] * V, V * sizeof(float));
            double e = rel_err(got, want, nl);
            free(all);
            printf("%s: inv_freq rel err %.2e, logits rel err vs transformers %.2e (fitted: "
                   "factor %g, low %g, high %g, original %d)\n", what[k], ei, e,
                   (double)c->rope_factor, (double)c->rope_low_freq_factor,
                   (double)c->rope_high_freq_factor, c->rope_original_max_pos);
            CHECK_MSG(ei < 1e-6, "inv_freq rel err %.2e", ei);
            CHECK_MSG(e < 1e-5, "logits rel err %.2e", e);
            free(got);
            if (k == 0) { /* write gllm's export for k == 2 and compare its factors */
                CHECK_OK(export(m, out, GLLM_GGML_F32));
                gllm_gguf *a = NULL, *b = NULL;
                CHECK_OK(gllm_gguf_open(out, &a));
                CHECK_OK(gllm_gguf_open(gg, &b));
                const gllm_gguf_tensor *ta = a ? gllm_gguf_find_tensor(a, "rope_freqs.weight") : NULL;
                const gllm_gguf_tensor *tb = b ? gllm_gguf_find_tensor(b, "rope_freqs.weight") : NULL;
                CHECK(ta && tb && ta->ne[0] == 32 && tb->ne[0] == 32);
                if (ta && tb) {
                    float fa[32], fb[32];
                    CHECK_OK(gllm_gguf_read_f32(a, ta, fa));
                    CHECK_OK(gllm_gguf_read_f32(b, tb, fb));
                    double ef = rel_err(fa, fb, 32);
                    printf("rope_freqs of gllm's export vs llama.cpp's formula: rel err %.2e\n", ef);
                    CHECK_MSG(ef < 1e-6, "rope_freqs rel err %.2e", ef);
                }
                gllm_gguf_close(a);
                gllm_gguf_close(b);
            }
            gllm_model_free(m);
        }
    }
    TEST_CASE("rope_freqs that are not Llama-3.1 scaling are refused")
    {
        gllm_model *m = NULL;
        CHECK_ERR(gllm_model_load(bad, be, &m), GLLM_ERR_UNSUPPORTED, "rope_freqs.weight");
        CHECK(m == NULL && strstr(gllm_last_error(), "llama31_badfreqs.gguf"));
    }
    unlink(out);
    free(ids);
    free(rows);
    free(want);
    free(inv_ref);
    gllm_st_close(ref);
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
        float *all = test_forward(m, ids, (int)T);
        float *got = malloc(T * (size_t)C * sizeof(float));
        for (size_t t = 0; all && t < T; t++)
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
    test_llama31(be);
    test_smollm2(be);
    be->destroy(be);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_tmp);
    return test_summary();
}
