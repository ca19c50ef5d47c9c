/* Where tests find the real SmolLM2-135M-Instruct GGUF: models/ (filled by
 * scripts/get_models.sh from PyPI), else ../shared; skip (exit 77) when neither. */
#ifndef GLLM_TEST_SMOLLM2_PATH_H
#define GLLM_TEST_SMOLLM2_PATH_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "test_util.h"

#define SMOLLM2_GGUF_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

/* The path, or NULL when neither exists. */
static inline const char *test_smollm2_gguf_find(char *buf, size_t n)
{
    struct stat st;
    snprintf(buf, n, "%s/models/%s", GLLM_SOURCE_DIR, SMOLLM2_GGUF_NAME);
    if (stat(buf, &st) == 0)
        return buf;
    snprintf(buf, n, "%s/assets/models/SmolLM2-135M-Instruct-GGUF/%s", GLLM_SHARED_DIR,
             SMOLLM2_GGUF_NAME);
    if (stat(buf, &st) == 0)
        return buf;
    return NULL;
}

static inline const char *test_smollm2_gguf(char *buf, size_t n)
{
    if (test_smollm2_gguf_find(buf, n))
        return buf;
    test_skip(SMOLLM2_GGUF_NAME " is neither in models/ nor in ../shared (run "
              "scripts/get_models.sh)");
    return NULL;
}

/* The 135M-parameter checks (forward passes, greedy decoding, conversions)
 * take minutes in a Release build and far longer in the Debug + ASan build,
 * past ctest's timeout: sanitizer builds run the rest of each test and say so. */
#if defined(__SANITIZE_ADDRESS__)
#define SMOLLM2_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SMOLLM2_SANITIZER 1
#endif
#endif

static inline bool test_smollm2_heavy_ok(void)
{
#ifdef SMOLLM2_SANITIZER
    printf("SKIP part: the SmolLM2-135M model checks do not run in sanitizer builds (too slow)\n");
    return false;
#else
    return true;
#endif
}

#endif
