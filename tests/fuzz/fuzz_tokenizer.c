/* Any bytes as tokenizer.json: refused or loaded; a loaded tokenizer encodes
 * and decodes a fixed text without crashing. */
#include <string.h>

#include "fuzz_common.h"
#include "gllm/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("-tokenizer.json", data, size);
    gllm_tokenizer *tok = NULL;
    if (gllm_tok_load(path, &tok) == GLLM_OK)
        fuzz_tok_roundtrip(tok);
    unlink(path);
    return 0;
}
