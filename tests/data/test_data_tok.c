/* Datasets through real tokenizers from ../shared: assistant-only labels of
 * chat data decode to exactly the assistant turns (Llama-3.1 and Qwen3
 * templates with their tokenizers), and tokenizing a real instruction set is
 * spread over the cores (timed with 1 and 2 threads). */
#include <omp.h>
#include <unistd.h>

#include "gllm/data.h"
#include "test_util.h"

static char *labelled(const gllm_tokenizer *tok, const gllm_dataset *ds, size_t i)
{
    const int32_t *ids;
    const uint8_t *lab;
    size_t n, k = 0;
    gllm_data_doc(ds, i, &ids, &lab, &n, NULL, NULL);
    int32_t *sel = malloc((n + 1) * sizeof *sel);
    for (size_t t = 0; t < n; t++)
        if (lab[t])
            sel[k++] = ids[t];
    char *text = NULL;
    size_t len;
    CHECK_OK(gllm_tok_decode(tok, sel, k, false, &text, &len));
    free(sel);
    return text;
}

static const char *write_tmp(const char *content)
{
    static char path[] = "/tmp/gllm_test_data_tok_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        test_skip("cannot create a temporary file");
    FILE *f = fdopen(fd, "w");
    fputs(content, f);
    fclose(f);
    return path;
}

int main(void)
{
    char buf[1024];
    const char *chat_jsonl =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", "
        "\"content\": \"And of Italy?\"}, {\"role\": \"assistant\", \"content\": \"Rome.\"}]}\n";
    const char *path = write_tmp(chat_jsonl);

    TEST_CASE("llama3.1: assistant labels decode to the assistant turns") {
        const char *dir = test_shared_path("assets/tokenizers/llama3.1", buf, sizeof buf);
        gllm_tokenizer *tok = NULL;
        gllm_chat_template *chat = NULL;
        CHECK_OK(gllm_tok_load(dir, &tok));
        CHECK_OK(gllm_chat_load(dir, NULL, &chat));
        if (tok && chat) {
            gllm_data_encoder enc = gllm_data_encoder_tok(tok);
            gllm_data_options o = gllm_data_default_options();
            o.chat = chat;
            gllm_dataset *ds = NULL;
            CHECK_OK(gllm_data_load(path, &enc, &o, &ds));
            if (ds) {
                char *got = labelled(tok, ds, 0);
                CHECK_MSG(got && !strcmp(got, "Paris.<|eot_id|>Rome.<|eot_id|>"), "got '%s'", got);
                free(got);
            }
            gllm_data_free(ds);
        }
        gllm_chat_free(chat);
        gllm_tok_free(tok);
    }

    TEST_CASE("qwen3: assistant labels decode to the assistant turns") {
        const char *dir = test_shared_path("assets/tokenizers/qwen3", buf, sizeof buf);
        gllm_tokenizer *tok = NULL;
        gllm_chat_template *chat = NULL;
        CHECK_OK(gllm_tok_load(dir, &tok));
        /* Qwen3's own template renders earlier assistant turns without their
         * thinking block, so multi-turn prefixes are not stable: refused */
        CHECK_OK(gllm_chat_load(dir, NULL, &chat));
        if (tok && chat) {
            gllm_data_encoder enc = gllm_data_encoder_tok(tok);
            gllm_data_options o = gllm_data_default_options();
            o.chat = chat;
            gllm_dataset *ds = NULL;
            CHECK_ERR(gllm_data_load(path, &enc, &o, &ds), GLLM_ERR_FORMAT, ":1: chat template renders");
            gllm_chat_free(chat);
            chat = NULL;
            CHECK_OK(gllm_chat_load(dir, "chatml", &chat));
            o.chat = chat;
            CHECK_OK(gllm_data_load(path, &enc, &o, &ds));
            if (ds) {
                char *got = labelled(tok, ds, 0);
                CHECK_MSG(got && !strcmp(got, "Paris.<|im_end|>\nRome.<|im_end|>\n"), "got '%s'", got);
                free(got);
            }
            gllm_data_free(ds);
        }
        gllm_chat_free(chat);
        gllm_tok_free(tok);
    }

    TEST_CASE("alpaca with the stories260K tokenizer: both cores, same result") {
        const char *dir = test_shared_path("assets/models/stories260K-hf", buf, sizeof buf);
        char data[1024];
        test_shared_path("assets/datasets/instructions/code_alpaca_2k.json", data, sizeof data);
        gllm_tokenizer *tok = NULL;
        CHECK_OK(gllm_tok_load(dir, &tok));
        if (tok) {
            gllm_data_encoder enc = gllm_data_encoder_tok(tok);
            gllm_data_options o = gllm_data_default_options();
            o.max_len = 1 << 20;
            o.skip_bad = true; /* the set holds records with an empty output */
            gllm_dataset *ds[2] = {NULL, NULL};
            double secs[2];
            for (int k = 0; k < 2; k++) {
                omp_set_num_threads(k + 1);
                double t0 = omp_get_wtime();
                CHECK_OK(gllm_data_load(data, &enc, &o, &ds[k]));
                secs[k] = omp_get_wtime() - t0;
            }
            if (ds[0] && ds[1]) {
                const gllm_data_stats *s = gllm_data_stats_of(ds[0]);
                printf("code_alpaca_2k: %zu docs, %zu tokens: 1 thread %.3f s, 2 threads %.3f s (%.2fx)\n",
                       s->n_docs, s->n_tokens, secs[0], secs[1], secs[0] / secs[1]);
                CHECK(s->n_bad > 0 && s->n_docs + s->n_bad == s->n_records);
                CHECK(strstr(s->first_bad, "code_alpaca_2k.json:record ") && strstr(s->first_bad, "empty \"output\""));
                CHECK(s->n_tokens == gllm_data_stats_of(ds[1])->n_tokens);
                bool same = true;
                for (size_t i = 0; same && i < s->n_docs; i++) {
                    const int32_t *a, *b;
                    size_t na, nb;
                    gllm_data_doc(ds[0], i, &a, NULL, &na, NULL, NULL);
                    gllm_data_doc(ds[1], i, &b, NULL, &nb, NULL, NULL);
                    same = na == nb && !memcmp(a, b, na * sizeof *a);
                }
                CHECK(same);
                /* the first document: BOS, the Alpaca prompt, output, EOS */
                const int32_t *ids;
                size_t n;
                gllm_data_doc(ds[0], 0, &ids, NULL, &n, NULL, NULL);
                CHECK(ids[0] == gllm_tok_bos_id(tok) && ids[n - 1] == gllm_tok_eos_id(tok));
            }
            gllm_data_free(ds[0]);
            gllm_data_free(ds[1]);
        }
        gllm_tok_free(tok);
    }

    unlink(path);
    return test_summary();
}
