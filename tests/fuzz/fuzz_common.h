/* libFuzzer harness helpers: the input written to a per-process file, since
 * the loaders under test read files (and safetensors mmaps them). */
#ifndef GLLM_FUZZ_COMMON_H
#define GLLM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "gllm/tok.h"

static const char *fuzz_write(const char *suffix, const uint8_t *data, size_t size)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/gllm-fuzz-%d%s", (int)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    return path;
}

/* Encode a fixed text (added tokens, accents, an emoji, newlines) with a
 * loaded tokenizer and decode the ids back, then free the tokenizer. */
static inline void fuzz_tok_roundtrip(gllm_tokenizer *tok)
{
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

#endif
