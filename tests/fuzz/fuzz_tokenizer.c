/* Any bytes as tokenizer.json: refused or loaded; a loaded tokenizer encodes
 * and decodes a fixed text without crashing. */
#include <string.h>

#include "fuzz_common.h"
#include "gllm/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("-tokenizer.json", data, size);
    gllm_tokenizer *tok = NULL;
    if (gllm_tok_load(path, &tok) == GLLM_OK) {
        static const char text[] = "Hello, world! 123 \xc3\xa9t\xc3\xa9 <s> \xf0\x9f\x99\x82\n\n";
        int32_t *ids = NULL;
        size_t n = 0;
        if (gllm_tok_encode(tok, text, sizeof text - 1, true, &ids, &n) == GLLM_OK) {
            char *back = NULL;
            if (gllm_tok_decode(tok, ids, n, false, &back, NULL) == GLLM_OK)
                free(back);
            free(ids);
        }
        gllm_tok_free(tok);
    }
    unlink(path);
    return 0;
}
