/* Chat templates rendered by gllm's Jinja subset must equal, byte for byte,
 * what transformers renders (tests/fixtures/chat/expected.json, written by
 * scripts/make_chat_fixtures.py), for the fixture templates, the shared
 * Llama-3/3.1/Qwen3 tokenizer configs and the built-in named templates. */
#include <cjson/cJSON.h>

#include "gllm/chat.h"
#include "test_util.h"

static const char *k_shared[] = {"llama3", "llama3.1", "qwen3", NULL};

static bool is_shared(const char *name)
{
    for (int i = 0; k_shared[i]; i++)
        if (!strcmp(name, k_shared[i]))
            return true;
    return false;
}

/* Open the fixture template `name` (or NULL when its shared folder is absent). */
static gllm_chat_template *open_named(const char *name, const cJSON *tokens)
{
    gllm_chat_template *t = NULL;
    if (is_shared(name)) {
        char path[1024];
        snprintf(path, sizeof path, "%s/assets/tokenizers/%s", GLLM_SHARED_DIR, name);
        struct stat st;
        if (stat(path, &st) != 0)
            return NULL;
        CHECK_OK(gllm_chat_load(path, NULL, &t));
        return t;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat/templates/%s.jinja", GLLM_SOURCE_DIR, name);
    char *src = test_slurp(path, NULL);
    CHECK_MSG(src != NULL, "%s", path);
    if (!src)
        return NULL;
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(tokens, name);
    const char *bos = cJSON_GetStringValue(cJSON_GetArrayItem(tk, 0));
    const char *eos = cJSON_GetStringValue(cJSON_GetArrayItem(tk, 1));
    CHECK_OK(gllm_chat_open(src, bos, eos, &t));
    free(src);
    return t;
}

static size_t to_messages(const cJSON *conv, gllm_chat_message *msgs)
{
    size_t n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, conv) {
        msgs[n].role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
        msgs[n].content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
        n++;
    }
    return n;
}

/* Render every fixture case of `fixture` with template t; returns cases run. */
static int run_cases(gllm_chat_template *t, const char *label, const char *fixture, const cJSON *doc)
{
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(doc, "conversations");
    const cJSON *c;
    int ran = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "cases")) {
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "template")), fixture))
            continue;
        int ci = cJSON_GetObjectItemCaseSensitive(c, "conversation")->valueint;
        bool gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
        gllm_chat_message msgs[16];
        size_t n = to_messages(cJSON_GetArrayItem(convs, ci), msgs);
        const char *expected = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "expected"));
        char *out = NULL;
        size_t len = 0;
        gllm_clear_error();
        gllm_status s = gllm_chat_render(t, msgs, n, gen, &out, &len);
        if (expected) {
            CHECK_MSG(s == GLLM_OK, "%s conv %d gen %d: %s", label, ci, gen, gllm_last_error());
            if (s == GLLM_OK)
                CHECK_MSG(len == strlen(expected) && !strcmp(out, expected),
                          "%s conv %d gen %d:\n--- got\n%s\n--- want\n%s\n---", label, ci, gen, out, expected);
        } else {
            const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "error"));
            CHECK_MSG(s == GLLM_ERR_INVALID, "%s conv %d: expected an error like '%s', got %s", label, ci,
                      err, gllm_status_name(s));
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "raised")))
                CHECK_MSG(strstr(gllm_last_error(), err) != NULL, "%s conv %d: '%s' lacks '%s'", label, ci,
                          gllm_last_error(), err);
        }
        free(out);
        ran++;
    }
    return ran;
}

int main(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat/expected.json", GLLM_SOURCE_DIR);
    char *text = test_slurp(path, NULL);
    if (!text) {
        printf("FAIL: cannot read %s\n", path);
        return 1;
    }
    cJSON *doc = cJSON_Parse(text);
    free(text);
    CHECK(doc != NULL);
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(doc, "tokens");

    TEST_CASE("fixture and shared templates match transformers") {
        const char *names[] = {"qwen2_instruct", "smollm2_instruct", "llama2_chat", "mistral_instruct",
                               "chatml", "plain", "features", "features_ws", "llama3", "llama3.1", "qwen3"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            gllm_chat_template *t = open_named(names[i], tokens);
            if (!t) {
                if (is_shared(names[i]))
                    printf("note: %s skipped (../shared absent)\n", names[i]);
                continue;
            }
            CHECK_MSG(run_cases(t, names[i], names[i], doc) >= 12, "%s: too few cases", names[i]);
            gllm_chat_free(t);
        }
    }

    TEST_CASE("built-in named templates match their upstream templates") {
        const struct {
            const char *builtin, *fixture, *bos, *eos;
        } map[] = {{"chatml", "chatml", NULL, "<|im_end|>"},
                   {"plain", "plain", "<s>", "</s>"},
                   {"llama2", "llama2_chat", "<s>", "</s>"},
                   {"mistral", "mistral_instruct", "<s>", "</s>"},
                   {"llama3", "llama3.1", "<|begin_of_text|>", "<|eot_id|>"}};
        for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
            gllm_chat_template *t = NULL;
            CHECK_OK(gllm_chat_open(map[i].builtin, map[i].bos, map[i].eos, &t));
            if (t)
                CHECK(run_cases(t, map[i].builtin, map[i].fixture, doc) >= 12);
            gllm_chat_free(t);
        }
        CHECK(gllm_chat_builtin("chatml") != NULL);
        CHECK(gllm_chat_builtin("nope") == NULL);
    }

    TEST_CASE("override by name replaces the folder's template") {
        snprintf(path, sizeof path, "%s/assets/tokenizers/qwen3", GLLM_SHARED_DIR);
        struct stat st;
        if (stat(path, &st) == 0) {
            gllm_chat_template *t = NULL;
            CHECK_OK(gllm_chat_load(path, "chatml", &t));
            gllm_chat_message m = {"user", "hi"};
            char *out = NULL;
            if (t)
                CHECK_OK(gllm_chat_render(t, &m, 1, true, &out, NULL));
            CHECK(out && !strcmp(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
            free(out);
            gllm_chat_free(t);
            /* mistral's shared config has no chat_template: the error says how to pick one */
            snprintf(path, sizeof path, "%s/assets/tokenizers/mistral", GLLM_SHARED_DIR);
            CHECK_ERR(gllm_chat_load(path, NULL, &t), GLLM_ERR_NOT_FOUND, "\"chat_template\"");
        }
    }

    TEST_CASE("unsupported constructs are refused at open, naming them") {
        gllm_chat_template *t = NULL;
        CHECK_ERR(gllm_chat_open("{% macro f() %}x{% endmacro %}", NULL, NULL, &t), GLLM_ERR_UNSUPPORTED,
                  "'{% macro %}'");
        CHECK_ERR(gllm_chat_open("a\n{{ x | wordcount }}", NULL, NULL, &t), GLLM_ERR_UNSUPPORTED,
                  "line 2: unsupported filter '|wordcount'");
        CHECK_ERR(gllm_chat_open("{{ x.format(1) }}", NULL, NULL, &t), GLLM_ERR_UNSUPPORTED, "'.format()'");
        CHECK_ERR(gllm_chat_open("{{ strftime_now('%d') }}", NULL, NULL, &t), GLLM_ERR_UNSUPPORTED,
                  "chatml, llama2, llama3, mistral, plain");
        CHECK_ERR(gllm_chat_open("{% if x %}open", NULL, NULL, &t), GLLM_ERR_FORMAT, "endif");
        CHECK_ERR(gllm_chat_open("{{ 'unterminated }}", NULL, NULL, &t), GLLM_ERR_FORMAT, "unterminated");
        CHECK(t == NULL);
    }

    TEST_CASE("runtime errors carry the line") {
        gllm_chat_template *t = NULL;
        CHECK_OK(gllm_chat_open("ok\n{{ messages[0].content + 1 }}", NULL, NULL, &t));
        gllm_chat_message m = {"user", "hi"};
        char *out = NULL;
        if (t)
            CHECK_ERR(gllm_chat_render(t, &m, 1, false, &out, NULL), GLLM_ERR_INVALID, "line 2");
        CHECK(out == NULL);
        gllm_chat_free(t);
    }

    cJSON_Delete(doc);
    return test_summary();
}
