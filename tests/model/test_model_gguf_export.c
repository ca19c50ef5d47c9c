/* gllm's GGUF export read by other tools: the tiny qwen2 (F32 and F16), mistral
 * and llama2 fixtures and a tiny GPT-2 with small tokenizers (byte-level and
 * SentencePiece-style), exported with this build's gconvert, then read by the
 * `gguf` package (metadata, tensors, tokenizer arrays) and by transformers'
 * GGUF loader (logits against transformers on the original HF folder;
 * tokenizer ids against the `tokenizers` package on the
 * tokenizer.json the file came from). tests/model/gguf_export_check.py does
 * the Python side; this test skips when python3 lacks those packages. */
#include <unistd.h>

#include "test_util.h"

static char g_tmp[] = "/tmp/gllm_gguf_exportXXXXXX";

int main(void)
{
    if (access("./gconvert", X_OK) != 0)
        test_skip("./gconvert is not built in the test folder");
    if (!mkdtemp(g_tmp))
        return 1;
    char cmd[4096], out[512], line[512];
    snprintf(out, sizeof out, "%s/py.txt", g_tmp);
    snprintf(cmd, sizeof cmd,
             "python3 '%s/tests/model/gguf_export_check.py' ./gconvert '%s' '%s' > '%s' 2>'%s/py.err'",
             GLLM_SOURCE_DIR, GLLM_SOURCE_DIR, g_tmp, out, g_tmp);
    int rc = system(cmd);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            printf("could not remove %s\n", g_tmp);
        test_skip("python3 lacks numpy, torch, transformers, gguf, tokenizers or safetensors");
    }
    CHECK_MSG(rc == 0, "%s exited with %d", cmd, rc);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -20 '%s/py.err'", g_tmp);
        if (system(cmd) != 0)
            printf("(no error output)\n");
    }
    FILE *f = fopen(out, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        char name[64];
        double e, tol;
        int tok_equal, ok, T;
        if (sscanf(line, "check %63s rel_err %lf tol %lf tok_equal %d gguf_ok %d positions %d", name,
                   &e, &tol, &tok_equal, &ok, &T) != 6)
            continue;
        n++;
        TEST_CASE(name)
        {
            printf("%s: transformers' GGUF loader: logits rel err %.2e (tolerance %g, %d positions), "
                   "tokenizer ids equal: %s; gguf package reads the metadata: %s\n",
                   name, e, tol, T, tok_equal ? "yes" : "no", ok ? "yes" : "no");
            CHECK_MSG(e < tol, "%s: rel err %.2e", name, e);
            CHECK(tok_equal == 1);
            CHECK(ok == 1);
        }
    }
    if (f)
        fclose(f);
    CHECK_MSG(n == 5, "%d of 5 checks reported", n);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_tmp);
    return test_summary();
}
