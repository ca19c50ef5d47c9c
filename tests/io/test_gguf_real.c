/* The real SmolLM2-135M-Instruct.Q4_1.gguf: its layout as published, and every
 * tensor dequantized bit-identically to the `gguf` Python package (checksums in
 * tests/fixtures/gguf/smollm2_dequant.json, made by scripts/make_gguf_fixtures.py). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/gguf.h"
#include "smollm2_path.h"
#include "test_util.h"

int main(void)
{
    char path[1024], ref[1024];
    test_smollm2_gguf(path, sizeof path);
    snprintf(ref, sizeof ref, "%s/tests/fixtures/gguf/smollm2_dequant.json", GLLM_SOURCE_DIR);
    gllm_gguf *g = NULL;
    TEST_CASE("open") { CHECK_OK(gllm_gguf_open(path, &g)); }
    if (!g)
        return test_summary();
    TEST_CASE("layout")
    {
        int counts[64] = {0};
        for (int i = 0; i < gllm_gguf_tensor_count(g); i++)
            counts[gllm_gguf_tensor_at(g, i)->type & 63]++;
        CHECK(gllm_gguf_tensor_count(g) == 272);
        CHECK_MSG(counts[GLLM_GGML_Q4_1] == 210 && counts[GLLM_GGML_F32] == 61 &&
                      counts[GLLM_GGML_Q8_0] == 1,
                  "Q4_1 %d F32 %d Q8_0 %d", counts[GLLM_GGML_Q4_1], counts[GLLM_GGML_F32],
                  counts[GLLM_GGML_Q8_0]);
        int64_t v;
        CHECK_OK(gllm_gguf_get_int(g, "llama.block_count", &v));
        CHECK(v == 30);
        char *pre = NULL;
        CHECK_OK(gllm_gguf_get_str(g, "tokenizer.ggml.pre", &pre));
        CHECK(pre && strcmp(pre, "smollm") == 0);
        free(pre);
    }
    TEST_CASE("every tensor bit-identical to gguf's dequantize")
    {
        char *text = test_slurp(ref, NULL);
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        CHECK_MSG(root != NULL, "cannot read %s", ref);
        int same = 0, n = gllm_gguf_tensor_count(g);
        for (int i = 0; root && i < n; i++) {
            const gllm_gguf_tensor *t = gllm_gguf_tensor_at(g, i);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, t->name);
            const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "sum");
            const cJSON *jx = cJSON_GetObjectItemCaseSensitive(e, "xor");
            CHECK_MSG(cJSON_IsString(js) && cJSON_IsString(jx), "%s not in %s", t->name, ref);
            if (!cJSON_IsString(js) || !cJSON_IsString(jx))
                continue;
            float *v = malloc(t->nelems * sizeof(float));
            CHECK_OK(gllm_gguf_read_f32(g, t, v));
            uint64_t s = 0, x = 0;
            for (size_t j = 0; j < t->nelems; j++) {
                uint32_t u;
                memcpy(&u, &v[j], 4);
                s += (uint64_t)u * (2 * (uint64_t)j + 1);
                x ^= u;
            }
            free(v);
            int ok = s == strtoull(js->valuestring, NULL, 10) &&
                     x == strtoull(jx->valuestring, NULL, 10);
            CHECK_MSG(ok, "%s (%s) differs from gguf's dequantize", t->name,
                      gllm_ggml_type_name(t->type));
            same += ok;
        }
        printf("%d of %d tensors bit-identical\n", same, n);
        cJSON_Delete(root);
        free(text);
    }
    gllm_gguf_close(g);
    return test_summary();
}
