/* Refusals: a tokenizer.json gllm cannot reproduce exactly must fail to load
 * with a message naming the component and the file; plus decode/encode
 * argument errors, invalid UTF-8 repair, and encoding on two threads. */
#include <omp.h>
#include <unistd.h>

#include "gllm/tok.h"
#include "test_util.h"

/* A minimal byte-level-free BPE over "a", "b", "ab" with one merge; `model`,
 * `normalizer`, `pre` and `decoder` replace the respective parts. */
static const char *write_json(const char *dir, const char *model, const char *normalizer,
                              const char *pre, const char *decoder)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],"
            "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":null,\"decoder\":%s,"
            "\"model\":%s}",
            normalizer, pre, decoder,
            model ? model
                  : "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}");
    fclose(f);
    return path;
}

int main(void)
{
    test_seed();
    char dir[] = "/tmp/gllm_tok_errXXXXXX";
    if (!mkdtemp(dir))
        test_skip("cannot create a temporary folder");
    gllm_tokenizer *tok = NULL;

    TEST_CASE("minimal BPE loads and merges")
    {
        CHECK_OK(gllm_tok_load(write_json(dir, NULL, "null", "null", "null"), &tok));
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(gllm_tok_encode(tok, "abab", 4, true, &ids, &n));
        CHECK(n == 2 && ids[0] == 2 && ids[1] == 2);
        free(ids);
        char *text = NULL;
        int32_t bad = 7;
        CHECK_ERR(gllm_tok_decode(tok, &bad, 1, false, &text, NULL), GLLM_ERR_INVALID, "id 7");
        CHECK_ERR(gllm_tok_encode(tok, "abc", 3, false, &ids, &n), GLLM_ERR_INVALID,
                  "no unk_token");
        CHECK(ids == NULL);
        gllm_tok_free(tok);
        tok = NULL;
    }
    TEST_CASE("token ids out of range are refused (found by fuzzing)")
    {
        CHECK_ERR(gllm_tok_load(write_json(dir, "{\"type\":\"BPE\",\"vocab\":{\"a\":2147483647},"
                                                "\"merges\":[]}", "null", "null", "null"), &tok),
                  GLLM_ERR_FORMAT, "token 'a'");
        CHECK_ERR(gllm_tok_load(write_json(dir, "{\"type\":\"BPE\",\"vocab\":{\"a\":-1},"
                                                "\"merges\":[]}", "null", "null", "null"), &tok),
                  GLLM_ERR_FORMAT, "model.vocab");
        CHECK_ERR(gllm_tok_load(write_json(dir, "{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},"
                                                "\"merges\":[]}", "null", "null", "null"), &tok),
                  GLLM_ERR_FORMAT, "model.vocab");
    }
    TEST_CASE("model types other than BPE are refused")
    {
        CHECK_ERR(gllm_tok_load(write_json(dir, "{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}", "null",
                                           "null", "null"), &tok),
                  GLLM_ERR_UNSUPPORTED, "model type 'WordPiece'");
        CHECK(strstr(gllm_last_error(), dir) != NULL);
        CHECK_ERR(gllm_tok_load(write_json(dir, "{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}", "null",
                                           "null", "null"), &tok),
                  GLLM_ERR_UNSUPPORTED, "model type 'Unigram'");
        CHECK(tok == NULL);
    }
    TEST_CASE("unknown components are refused by name")
    {
        CHECK_ERR(gllm_tok_load(write_json(dir, NULL, "{\"type\":\"Lowercase\"}", "null", "null"), &tok),
                  GLLM_ERR_UNSUPPORTED, "normalizer 'Lowercase'");
        CHECK_ERR(gllm_tok_load(write_json(dir, NULL, "{\"type\":\"NFKC\"}", "null", "null"), &tok),
                  GLLM_ERR_UNSUPPORTED, "normalizer 'NFKC'");
        CHECK_ERR(gllm_tok_load(write_json(dir, NULL, "null", "{\"type\":\"Whitespace\"}", "null"), &tok),
                  GLLM_ERR_UNSUPPORTED, "pre-tokenizer 'Whitespace'");
        CHECK_ERR(gllm_tok_load(write_json(dir, NULL, "null", "null", "{\"type\":\"WordPiece\"}"), &tok),
                  GLLM_ERR_UNSUPPORTED, "decoder 'WordPiece'");
        CHECK_ERR(gllm_tok_load(write_json(dir, NULL, "null",
                                           "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                                           "\"behavior\":\"Isolated\",\"invert\":false}",
                                           "null"), &tok),
                  GLLM_ERR_UNSUPPORTED, "regex");
        CHECK(strstr(gllm_last_error(), "tokenizer.json") != NULL);
    }
    TEST_CASE("malformed JSON names the file, line and column")
    {
        char path[600];
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        FILE *f = fopen(path, "w");
        fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}", f);
        fclose(f);
        CHECK_ERR(gllm_tok_load(dir, &tok), GLLM_ERR_FORMAT, "tokenizer.json:1:44: not valid JSON");
        CHECK(strstr(gllm_last_error(), path) != NULL);
        CHECK_ERR(gllm_tok_load("/nonexistent/tokenizer.json", &tok), GLLM_ERR_NOT_FOUND, "/nonexistent");
        unlink(path);
    }

    char path[768];
    test_shared_path("assets/tokenizers/llama3", path, sizeof path);
    CHECK_OK(gllm_tok_load(path, &tok));
    if (!tok)
        return test_summary();
    TEST_CASE("invalid UTF-8 becomes U+FFFD per maximal subpart")
    {
        /* \xE2\x82 is one maximal subpart (one U+FFFD), \xFF another */
        static const char bad[] = "x\xE2\x82y\xFFz", good[] = "x\xEF\xBF\xBDy\xEF\xBF\xBDz";
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_OK(gllm_tok_encode(tok, bad, sizeof bad - 1, false, &a, &na));
        CHECK_OK(gllm_tok_encode(tok, good, sizeof good - 1, false, &b, &nb));
        CHECK(na == nb && na && !memcmp(a, b, na * sizeof *a));
        free(a);
        free(b);
    }
    TEST_CASE("two threads encode like one")
    {
        enum { N = 64 };
        static char texts[N][40 * 16]; /* 40 words of at most 13 bytes: never truncated */
        static int32_t *one[N], *two[N];
        static size_t n1[N], n2[N];
        for (int i = 0; i < N; i++) {
            int len = 0;
            for (int k = 0; k < 40; k++) {
                static const char *words[] = {"the ", "cat's ", "naïve ", "123456 ", "\n\n", "  ",
                                              "<|eot_id|>", "🦙", "Привет ", "don't "};
                len += snprintf(texts[i] + len, sizeof texts[i] - (size_t)len, "%s",
                                words[test_rand_u64() % 10]);
            }
            CHECK_OK(gllm_tok_encode(tok, texts[i], strlen(texts[i]), true, &one[i], &n1[i]));
        }
        int fails = 0;
#pragma omp parallel for num_threads(2) reduction(+ : fails)
        for (int i = 0; i < N; i++) {
            fails += gllm_tok_encode(tok, texts[i], strlen(texts[i]), true, &two[i], &n2[i]) != GLLM_OK;
            gllm_tok_thread_cleanup();
        }
        CHECK(fails == 0);
        for (int i = 0; i < N; i++) {
            CHECK(n1[i] == n2[i] && !memcmp(one[i], two[i], n1[i] * sizeof(int32_t)));
            free(one[i]);
            free(two[i]);
        }
    }
    TEST_CASE("long inputs: whitespace runs and one long word")
    {
        size_t n = 200000;
        char *s = malloc(n);
        for (size_t i = 0; i < n; i++)
            s[i] = i % 1000 == 999 ? 'x' : ' ';
        int32_t *ids = NULL;
        size_t nids = 0;
        CHECK_OK(gllm_tok_encode(tok, s, n, false, &ids, &nids));
        char *back = NULL;
        size_t blen = 0;
        CHECK_OK(gllm_tok_decode(tok, ids, nids, false, &back, &blen));
        CHECK(blen == n && !memcmp(back, s, n));
        free(ids);
        free(back);
        free(s);
    }
    gllm_tok_free(tok);
    rmdir(dir);
    return test_summary();
}
