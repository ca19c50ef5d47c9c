/* A real pretrained model: the stories260K TinyStories Llama from ../shared.
 * Logits on fixed prompts against transformers (committed fixture), and the
 * first 64 ids of the greedy continuation from BOS against the reference
 * file, decoded with the paged KV cache. */
#include "fixture.h"

static int read_reference_ids(const char *path, int32_t *ids, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "IDS ", 4) != 0)
            continue;
        char *p = line + 4, *end;
        for (long v = strtol(p, &end, 10); end != p && n < max; v = strtol(p, &end, 10)) {
            ids[n++] = (int32_t)v;
            p = end;
        }
        break;
    }
    fclose(f);
    return n;
}

int main(void)
{
    char model_dir[1024], ref_ids_path[1024], fix[1024];
    test_shared_path("assets/models/stories260K-hf", model_dir, sizeof model_dir);
    test_shared_path("assets/models/stories260K/reference_greedy_t0_generated_here.txt",
                     ref_ids_path, sizeof ref_ids_path);
    snprintf(fix, sizeof fix, "%s/stories260K_reference.safetensors", test_fixtures_dir());
    gllm_backend *be;
    gllm_model *m = NULL;
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK || gllm_model_load(model_dir, be, &m) != GLLM_OK) {
        printf("setup: %s\n", gllm_last_error());
        return 1;
    }
    const int V = gllm_model_cfg(m)->vocab_size;
    TEST_CASE("logits match transformers on fixed prompts")
    {
        gllm_safetensors *ref = NULL;
        CHECK_OK(gllm_st_open(fix, &ref));
        for (int k = 0; ref; k++) {
            char name[64];
            snprintf(name, sizeof name, "prompt%d.ids", k);
            const gllm_st_tensor *t = gllm_st_find(ref, name);
            if (!t) {
                CHECK(k >= 3);
                break;
            }
            const int L = (int)t->shape[0];
            int32_t *ids = fixture_tensor(ref, name, NULL);
            snprintf(name, sizeof name, "prompt%d.logits", k);
            float *want = fixture_tensor(ref, name, NULL);
            int32_t *pos = malloc((size_t)L * sizeof *pos);
            for (int i = 0; i < L; i++)
                pos[i] = i;
            float *got = malloc((size_t)L * V * sizeof(float));
            gllm_batch b = {.B = 1, .T = L, .ids = ids, .pos = pos};
            CHECK_OK(gllm_model_forward(m, &b, NULL, got));
            double e = want ? rel_err(got, want, (size_t)L * V) : INFINITY;
            printf("prompt %d (%d tokens): logits rel err %.2e\n", k, L, e);
            CHECK(e < 1e-4);
            free(ids);
            free(want);
            free(pos);
            free(got);
        }
        gllm_st_close(ref);
    }
    TEST_CASE("greedy continuation from BOS equals the reference ids")
    {
        int32_t want[300];
        const int n = read_reference_ids(ref_ids_path, want, 300);
        CHECK(n >= 65);
        int32_t got[64];
        const int32_t bos = 1;
        CHECK(want[0] == bos);
        CHECK_OK(gllm_model_generate_greedy(m, &bos, 1, 64, got));
        int same = 0;
        while (same < 64 && got[same] == want[1 + same])
            same++;
        printf("greedy: first %d of 64 ids equal the reference\n", same);
        CHECK(same == 64);
    }
    TEST_CASE("KV-cache decode agrees with the full forward")
    {
        /* the argmax of each full-sequence logit row must be the next generated id */
        int32_t gen[24], ids[25], pos[25];
        const int32_t bos = 1;
        CHECK_OK(gllm_model_generate_greedy(m, &bos, 1, 24, gen));
        ids[0] = bos;
        for (int i = 0; i < 24; i++)
            ids[i + 1] = gen[i];
        for (int i = 0; i < 25; i++)
            pos[i] = i;
        float *logits = malloc(25 * (size_t)V * sizeof(float));
        gllm_batch b = {.B = 1, .T = 25, .ids = ids, .pos = pos};
        CHECK_OK(gllm_model_forward(m, &b, NULL, logits));
        int agree = 0;
        for (int t = 0; t < 24; t++) {
            int best = 0;
            for (int v = 1; v < V; v++)
                if (logits[(size_t)t * V + v] > logits[(size_t)t * V + best])
                    best = v;
            agree += best == gen[t];
        }
        CHECK(agree == 24);
        free(logits);
    }
    gllm_model_free(m);
    be->destroy(be);
    return test_summary();
}
