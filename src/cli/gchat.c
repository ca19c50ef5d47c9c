/* gchat: answer chat prompts with a model, greedily, on the CPU — the small
 * example program of the README's second quick start (ginfer is the batch
 * tool).
 *
 *   gchat MODEL [--max-new N] PROMPT...
 *
 * MODEL is an HF folder or a .gguf file; each PROMPT is one user message,
 * rendered with the model's chat template (add_generation_prompt), answered
 * with up to N greedy tokens (default 96), cut at the end-of-sequence token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gllm/backend.h"
#include "gllm/chat.h"
#include "gllm/model.h"
#include "gllm/tok.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(void)
{
    fprintf(stderr, "gchat: %s\n", gllm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: gchat MODEL [--max-new N] PROMPT...\n");
        return 2;
    }
    const char *model = argv[1];
    int max_new = 96, first = 2;
    if (argc > 4 && strcmp(argv[2], "--max-new") == 0) {
        max_new = atoi(argv[3]);
        first = 4;
        if (max_new <= 0) {
            fprintf(stderr, "gchat: --max-new must be positive\n");
            return 2;
        }
    }
    gllm_backend *be;
    gllm_model *m = NULL;
    gllm_tokenizer *tok = NULL;
    gllm_chat_template *chat = NULL;
    double t0 = now();
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK || gllm_model_load(model, be, &m) != GLLM_OK ||
        gllm_tok_load(model, &tok) != GLLM_OK || gllm_chat_load(model, NULL, &chat) != GLLM_OK)
        return fail();
    printf("loaded %s (%zu parameters) in %.1f s\n", model, gllm_model_numel(m), now() - t0);
    const int eos = gllm_tok_eos_id(tok);
    int32_t *out = malloc((size_t)max_new * sizeof *out);
    for (int i = first; i < argc; i++) {
        gllm_chat_message msg = {"user", argv[i]};
        char *prompt = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        if (gllm_chat_render(chat, &msg, 1, true, &prompt, NULL) != GLLM_OK ||
            gllm_tok_encode(tok, prompt, strlen(prompt), false, &ids, &n) != GLLM_OK)
            return fail();
        t0 = now();
        if (gllm_model_generate_greedy(m, ids, (int)n, max_new, out) != GLLM_OK)
            return fail();
        const double dt = now() - t0;
        int k = 0;
        while (k < max_new && out[k] != eos)
            k++;
        char *text = NULL;
        if (gllm_tok_decode(tok, out, (size_t)k, true, &text, NULL) != GLLM_OK)
            return fail();
        printf("\n> %s\n%s\n(%d tokens; %d generated in %.2f s, %.1f tokens/s)\n", argv[i], text,
               k, max_new, dt, max_new / dt);
        free(text);
        free(ids);
        free(prompt);
    }
    free(out);
    gllm_chat_free(chat);
    gllm_tok_free(tok);
    gllm_model_free(m);
    be->destroy(be);
    return 0;
}
