/* Any bytes given to the GGUF reader: an error or a valid table whose every
 * tensor lies in the mapping and dequantizes, never a crash. A file that opens
 * also goes to the readers built on the table: the HF config of its
 * architecture, and the tokenizer (gpt2 or SentencePiece) from its
 * tokenizer.ggml.* keys, which encodes and decodes a fixed text when built. */
#include <string.h>

#include "fuzz_common.h"
#include "gllm/gguf.h"
#include "gllm/gguf_model.h"
#include "gllm/tok.h"

static void fuzz_readers(const gllm_gguf *g, const char *path)
{
    char *config = NULL;
    if (gllm_gguf_hf_config(g, &config) == GLLM_OK)
        free(config);
    gllm_tokenizer *tok = NULL;
    if (gllm_tok_load(path, &tok) == GLLM_OK)
        fuzz_tok_roundtrip(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(".gguf", data, size);
    gllm_gguf *g = NULL;
    if (gllm_gguf_open(path, &g) == GLLM_OK) {
        for (int i = 0; i < gllm_gguf_kv_count(g); i++) {
            const gllm_gguf_kv *kv = gllm_gguf_kv_at(g, i);
            volatile uint64_t sink = 0;
            if (kv->type == GLLM_GGUF_ARRAY && kv->arr_type != GLLM_GGUF_STRING &&
                kv->arr_type != GLLM_GGUF_ARRAY && kv->n)
                sink += (uint64_t)gllm_gguf_arr_int(kv, kv->n - 1);
            if (kv->strs && (kv->type == GLLM_GGUF_STRING || kv->n))
                sink += kv->strs[0].len ? (uint8_t)kv->strs[0].ptr[kv->strs[0].len - 1] : 0;
            (void)sink;
            char *s = NULL;
            if (gllm_gguf_get_str(g, kv->key, &s) == GLLM_OK)
                free(s);
        }
        for (int i = 0; i < gllm_gguf_tensor_count(g); i++) {
            const gllm_gguf_tensor *t = gllm_gguf_tensor_at(g, i);
            if (t->nelems <= (1 << 20)) {
                float *buf = malloc(t->nelems * sizeof(float));
                gllm_gguf_read_f32(g, t, buf);
                free(buf);
            }
        }
        fuzz_readers(g, path);
        gllm_gguf_close(g);
    }
    unlink(path);
    return 0;
}
