/* gconvert on the real SmolLM2-135M-Instruct GGUF, checked by transformers:
 * GGUF -> HF folder (f32 and bf16) that transformers loads with the same
 * logits and chat-template ids; that folder -> GGUF F32 that gllm loads with
 * logits bit-identical to the original GGUF's, and that transformers' own
 * GGUF loader (which undoes llama.cpp's q/k permutation) reads with the same
 * logits and ids — so gllm's export permutes as llama.cpp's converter does.
 * Uses the gconvert binary of this build and tests/model/gguf_hf_check.py. */
#include <unistd.h>

#include "fixture.h"
#include "smollm2_path.h"

static char g_tmp[] = "/tmp/gllm_gconvertXXXXXX";

static int run(const char *cmd)
{
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s exited with %d", cmd, rc);
    return rc;
}

/* run the python check; *skipped when python lacks transformers */
static void py_check(const char *kind, const char *path, const char *ref, double tol,
                     bool *skipped)
{
    char cmd[4096], out[512], line[256];
    snprintf(out, sizeof out, "%s/py.txt", g_tmp);
    snprintf(cmd, sizeof cmd, "python3 '%s/tests/model/gguf_hf_check.py' %s '%s' '%s' > '%s' 2>/dev/null",
             GLLM_SOURCE_DIR, kind, path, ref, out);
    int rc = system(cmd);
    if (WEXITSTATUS(rc) == 77) {
        *skipped = true;
        return;
    }
    CHECK_MSG(rc == 0, "%s exited with %d", cmd, rc);
    FILE *f = fopen(out, "r");
    double e = INFINITY;
    int ids = -1;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "rel_err %lf", &e);
        sscanf(line, "ids_equal %d", &ids);
    }
    if (f)
        fclose(f);
    printf("transformers on %s %s: logits rel err %.2e, chat ids equal: %d\n", kind, path, e, ids);
    CHECK_MSG(e < tol, "%s: rel err %.2e", path, e);
    CHECK(ids == 1);
}

static float *logits(const char *path, const int32_t *ids, int T)
{
    gllm_backend *be;
    gllm_model *m = NULL;
    float *out = NULL;
    CHECK_OK(gllm_backend_cpu_create(0, &be));
    CHECK_OK(gllm_model_load(path, be, &m));
    if (m) {
        int32_t pos[64], idc[64];
        for (int i = 0; i < T; i++) {
            pos[i] = i;
            idc[i] = ids[i];
        }
        out = malloc((size_t)T * gllm_model_cfg(m)->vocab_size * sizeof(float));
        gllm_batch b = {.B = 1, .T = T, .ids = idc, .pos = pos};
        CHECK_OK(gllm_model_forward(m, &b, NULL, out));
        gllm_model_free(m);
    }
    be->destroy(be);
    return out;
}

int main(void)
{
    char model[1024], ref[1024], cmd[4096], hf[512], hf16[512], back[512];
    test_smollm2_gguf(model, sizeof model);
    if (!test_smollm2_heavy_ok())
        test_skip("sanitizer build");
    if (access("./gconvert", X_OK) != 0)
        test_skip("./gconvert is not built in the test folder");
    if (!mkdtemp(g_tmp))
        return 1;
    snprintf(ref, sizeof ref, "%s/tests/fixtures/gguf/smollm2_reference.safetensors",
             GLLM_SOURCE_DIR);
    snprintf(hf, sizeof hf, "%s/hf32", g_tmp);
    snprintf(hf16, sizeof hf16, "%s/hf16", g_tmp);
    snprintf(back, sizeof back, "%s/back.gguf", g_tmp);
    bool skipped = false;
    TEST_CASE("GGUF -> HF folder (f32) -> transformers")
    {
        snprintf(cmd, sizeof cmd, "./gconvert '%s' '%s' --type f32", model, hf);
        if (run(cmd) == 0)
            py_check("folder", hf, ref, 1e-4, &skipped);
    }
    TEST_CASE("GGUF -> HF folder (bf16) -> transformers")
    {
        snprintf(cmd, sizeof cmd, "./gconvert '%s' '%s'", model, hf16);
        if (run(cmd) == 0 && !skipped)
            py_check("folder", hf16, ref, 3e-2, &skipped);
    }
    TEST_CASE("HF folder -> GGUF F32 -> gllm: identical logits")
    {
        snprintf(cmd, sizeof cmd, "./gconvert '%s' '%s' --type f32", hf, back);
        if (run(cmd) == 0) {
            const int32_t ids[] = {504, 1345, 3358, 21290, 359, 253, 1166};
            float *a = logits(model, ids, 7), *b = logits(back, ids, 7);
            CHECK(a && b && memcmp(a, b, 7 * 49152 * sizeof(float)) == 0);
            if (a && b)
                printf("HF folder -> GGUF F32: logits rel err vs the original GGUF %.2e\n",
                       rel_err(b, a, 7 * 49152));
            free(a);
            free(b);
        }
    }
    TEST_CASE("gllm's GGUF -> transformers' GGUF loader")
    {
        if (!skipped)
            py_check("gguf", back, ref, 1e-4, &skipped);
    }
    if (skipped)
        printf("SKIP part: python3 lacks torch/transformers\n");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_tmp);
    return test_summary();
}
