/* ginfer input lines: every form parses to the fields it gives, --set
 * defaults sit beneath a line's own keys, and every malformed line becomes an
 * error that names path:line and the field. Then the output lines of both
 * styles are checked as JSON with the fields OpenAI's batch output has. */
#include <cjson/cJSON.h>

#include "gllm/chat.h"
#include "gllm/ginfer.h"
#include "test_util.h"

static const char *PATH = "in.jsonl";

static void parse_str(const char *json, const gllm_ginfer_defaults *d, long line,
                      gllm_ginfer_item *it)
{
    cJSON *o = cJSON_Parse(json);
    if (!o)
        printf("test input is not JSON: %s\n", json);
    gllm_ginfer_parse(o, o ? NULL : "in.jsonl:0: test input", d, PATH, line - 1, line, it);
    cJSON_Delete(o);
}

/* A malformed line: its error names in.jsonl:<line> and contains `needle`. */
static void expect_bad(const char *json, const char *needle)
{
    static long line = 100;
    line++;
    gllm_ginfer_item it;
    parse_str(json, NULL, line, &it);
    char where[32];
    snprintf(where, sizeof where, "in.jsonl:%ld: ", line);
    CHECK_MSG(it.status != GLLM_OK, "accepted: %s", json);
    CHECK_MSG(strstr(it.error, where) == it.error && strstr(it.error, needle),
              "%s -> '%s', wanted '%s' and '%s'", json, it.error, where, needle);
    /* its error result is a JSON object that carries the message and the line */
    gllm_ginfer_format_ctx fc = {.model_name = "m", .created = 1};
    char *out = gllm_ginfer_format(&it, NULL, &fc);
    cJSON *o = out ? cJSON_Parse(out) : NULL;
    CHECK_MSG(cJSON_IsObject(o), "error result not JSON: %s", out ? out : "(null)");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "response");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    if (!cJSON_IsString(msg)) /* an OpenAI request error: a 400 with an error body */
        msg = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(resp, "body"), "error"),
            "message");
    CHECK_MSG(cJSON_IsString(msg) && strstr(msg->valuestring, where),
              "error result without the line: %s", out ? out : "(null)");
    cJSON_Delete(o);
    free(out);
    gllm_ginfer_item_free(&it);
}

static const cJSON *path_get(const cJSON *o, const char *p)
{
    char key[64];
    while (o && *p) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        if (cJSON_IsArray(o))
            o = cJSON_GetArrayItem(o, atoi(key));
        else
            o = cJSON_GetObjectItemCaseSensitive(o, key);
        p += n + (p[n] == '.');
    }
    return o;
}

/* A hand-made engine result: 2 samples of 3 ids with logprobs and top 2. */
typedef struct fake_result {
    gllm_result r;
    gllm_sample_out s[2];
    int32_t ids[2][3];
    float lp[2][3];
    gllm_token_logprob top[2][6];
    char text[2][16];
} fake_result;

static void make_result(fake_result *f, int n_samples, bool logprobs, int top_n)
{
    memset(f, 0, sizeof *f);
    f->r.status = GLLM_OK;
    f->r.n_prompt = 7;
    f->r.n_cached = 4;
    f->r.n_samples = n_samples;
    f->r.samples = f->s;
    for (int i = 0; i < n_samples; i++) {
        for (int t = 0; t < 3; t++) {
            f->ids[i][t] = 10 + 3 * i + t;
            f->lp[i][t] = -0.25f * (float)(t + 1);
            for (int k = 0; k < top_n; k++)
                f->top[i][t * top_n + k] = (gllm_token_logprob){20 + k, -0.5f * (float)(k + 1)};
        }
        snprintf(f->text[i], sizeof f->text[i], "abc%d", i);
        f->s[i] = (gllm_sample_out){.ids = f->ids[i], .n_ids = 3, .text = f->text[i],
                                    .logprobs = logprobs ? f->lp[i] : NULL,
                                    .top = top_n ? f->top[i] : NULL,
                                    .finish = i ? GLLM_FINISH_LENGTH : GLLM_FINISH_STOP};
    }
}

static cJSON *format_parsed(const gllm_ginfer_item *it, const gllm_result *r)
{
    gllm_ginfer_format_ctx fc = {.model_name = "stories", .created = 1700000000};
    char *s = gllm_ginfer_format(it, r, &fc);
    cJSON *o = s ? cJSON_Parse(s) : NULL;
    CHECK_MSG(cJSON_IsObject(o), "not a JSON object: %s", s ? s : "(null)");
    CHECK(s && !strchr(s, '\n'));
    free(s);
    return o;
}

int main(void)
{
    TEST_CASE("own prompt line with every sampling key") {
        gllm_ginfer_item it;
        parse_str("{\"id\":\"a\",\"prompt\":\"Once upon\",\"max_tokens\":5,\"temperature\":0.5,"
                  "\"top_k\":3,\"top_p\":0.9,\"min_p\":0.1,\"repetition_penalty\":1.2,\"seed\":7,"
                  "\"stop\":[\"x\",\"yy\"],\"n\":2,\"logprobs\":true,\"top_logprobs\":3,"
                  "\"ignore_eos\":true,\"label\":\"extra keys are kept out of the way\"}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.kind == GLLM_GINFER_PROMPT);
        CHECK(cJSON_IsString(it.id) && strcmp(it.id->valuestring, "a") == 0);
        CHECK(it.prompt && strcmp(it.prompt, "Once upon") == 0 && !it.prompt_ids);
        CHECK(it.max_tokens == 5 && it.n == 2 && it.ignore_eos && it.logprobs);
        CHECK(it.top_logprobs == 3 && it.sampling.top_k == 3);
        CHECK(it.sampling.temperature == 0.5f && it.sampling.top_p == 0.9f);
        CHECK(it.sampling.min_p == 0.1f && it.sampling.repetition_penalty == 1.2f);
        CHECK(it.seed_given && it.sampling.seed == 7);
        CHECK(it.n_stop == 2 && strcmp(it.stop[1], "yy") == 0);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("own prompt defaults: greedy, 256 tokens, one sample") {
        gllm_ginfer_item it;
        parse_str("{\"prompt\":\"x\"}", NULL, 3, &it);
        CHECK_OK(it.status);
        CHECK(!it.id && it.line == 3 && it.index == 2);
        CHECK(it.sampling.temperature == 0 && it.sampling.top_p == 1 && it.max_tokens == 256);
        CHECK(it.n == 1 && !it.logprobs && !it.seed_given && it.n_stop == 0);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("prompt as token ids; numeric id") {
        gllm_ginfer_item it;
        parse_str("{\"id\":17,\"prompt\":[1,5,9]}", NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(cJSON_IsNumber(it.id) && it.id->valueint == 17);
        CHECK(it.n_prompt_ids == 3 && it.prompt_ids[2] == 9 && !it.prompt);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("messages, content as a string and as text parts") {
        gllm_ginfer_item it;
        parse_str("{\"id\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"
                  "{\"type\":\"text\",\"text\":\"there\"}]}]}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.kind == GLLM_GINFER_MESSAGES && it.n_messages == 2);
        CHECK(strcmp(it.messages[0].role, "system") == 0);
        CHECK(strcmp(it.messages[1].content, "Hi there") == 0);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("scoring line") {
        gllm_ginfer_item it;
        parse_str("{\"id\":\"s\",\"prompt\":\"Sentiment:\",\"candidates\":[\" good\",\" bad\"]}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.kind == GLLM_GINFER_SCORE && it.n_candidates == 2);
        CHECK(strcmp(it.candidates[1], " bad") == 0);
        gllm_ginfer_item_free(&it);
        parse_str("{\"id\":\"s\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                  "\"candidates\":[\"A\"]}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.kind == GLLM_GINFER_SCORE && it.n_messages == 1 && it.n_candidates == 1);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("OpenAI chat line") {
        gllm_ginfer_item it;
        parse_str("{\"custom_id\":\"req-1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                  "\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
                  "\"content\":\"Hello\"}],\"max_tokens\":50,\"max_completion_tokens\":20,"
                  "\"temperature\":0.2,\"top_p\":0.8,\"n\":3,\"stop\":\"\\n\",\"seed\":42,"
                  "\"logprobs\":true,\"top_logprobs\":2,\"frequency_penalty\":0,"
                  "\"presence_penalty\":0,\"user\":\"u\",\"stream\":false}}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.kind == GLLM_GINFER_OPENAI_CHAT);
        CHECK(strcmp(it.custom_id, "req-1") == 0 && strcmp(it.model, "gpt-4o-mini") == 0);
        CHECK(it.max_tokens == 20); /* max_completion_tokens wins */
        CHECK(it.n == 3 && it.n_stop == 1 && strcmp(it.stop[0], "\n") == 0);
        CHECK(it.sampling.temperature == 0.2f && it.sampling.seed == 42 && it.seed_given);
        CHECK(it.logprobs && it.top_logprobs == 2);
        CHECK(it.n_messages == 1 && strcmp(it.messages[0].content, "Hello") == 0);
        gllm_ginfer_item_free(&it);
        /* the API's defaults: temperature 1, the rest of the context */
        parse_str("{\"custom_id\":\"r\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                  "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"seed\":null,\"stop\":null}}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.sampling.temperature == 1 && it.max_tokens == GLLM_GINFER_MAX_TOKENS_CONTEXT);
        CHECK(!it.seed_given && it.n_stop == 0);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("OpenAI completions line: integer logprobs, default 16 tokens") {
        gllm_ginfer_item it;
        parse_str("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"model\":\"m\",\"prompt\":\"Say\",\"logprobs\":2}}",
                  NULL, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.kind == GLLM_GINFER_OPENAI_TEXT && it.max_tokens == 16);
        CHECK(it.logprobs && it.top_logprobs == 2 && strcmp(it.prompt, "Say") == 0);
        gllm_ginfer_item_free(&it);
        parse_str("{\"custom_id\":\"c2\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":[[\"no\"]]}}",
                  NULL, 1, &it);
        CHECK(it.status != GLLM_OK);
        gllm_ginfer_item_free(&it);
        parse_str("{\"custom_id\":\"c3\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":[\"one\"],\"top_k\":5,\"min_p\":0.05}}",
                  NULL, 1, &it);
        CHECK_OK(it.status); /* gllm's own keys in a body */
        CHECK(strcmp(it.prompt, "one") == 0 && it.sampling.top_k == 5);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("--set defaults beneath the line's keys") {
        gllm_ginfer_defaults d = {0};
        CHECK_OK(gllm_ginfer_set(&d, "temperature=0.7"));
        CHECK_OK(gllm_ginfer_set(&d, "max_tokens=9"));
        CHECK_OK(gllm_ginfer_set(&d, "stop=END"));   /* a bare word is a string */
        CHECK_OK(gllm_ginfer_set(&d, "top_k=4"));
        CHECK_OK(gllm_ginfer_set(&d, "top_k=6"));    /* the last one counts */
        CHECK_OK(gllm_ginfer_set(&d, "stop=[\"a\",\"b\"]"));
        CHECK_ERR(gllm_ginfer_set(&d, "temprature=1"), GLLM_ERR_INVALID, "unknown key 'temprature'");
        CHECK_ERR(gllm_ginfer_set(&d, "top_p=2"), GLLM_ERR_INVALID, "top_p");
        CHECK_ERR(gllm_ginfer_set(&d, "n=x"), GLLM_ERR_INVALID, "must be a number");
        CHECK_ERR(gllm_ginfer_set(&d, "novalue"), GLLM_ERR_INVALID, "key=value");
        gllm_ginfer_item it;
        parse_str("{\"prompt\":\"x\",\"max_tokens\":3}", &d, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.max_tokens == 3 && it.sampling.temperature == 0.7f && it.sampling.top_k == 6);
        CHECK(it.n_stop == 2 && strcmp(it.stop[1], "b") == 0);
        gllm_ginfer_item_free(&it);
        parse_str("{\"custom_id\":\"r\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"p\",\"temperature\":0}}",
                  &d, 1, &it);
        CHECK_OK(it.status);
        CHECK(it.max_tokens == 9 && it.sampling.temperature == 0); /* body over --set */
        gllm_ginfer_item_free(&it);
        gllm_ginfer_defaults_free(&d);
    }
    TEST_CASE("malformed lines: each names its line and field") {
        gllm_ginfer_item it;
        gllm_ginfer_parse(NULL, "in.jsonl:101: not valid JSON at column 3", NULL, PATH, 0, 101,
                          &it);
        CHECK(it.status == GLLM_ERR_FORMAT && it.kind == GLLM_GINFER_BAD);
        CHECK(strstr(it.error, "in.jsonl:101: not valid JSON"));
        gllm_ginfer_item_free(&it);
        expect_bad("[1,2]", "expected a JSON object");
        expect_bad("\"text\"", "expected a JSON object");
        expect_bad("{\"id\":\"a\"}", "needs \"prompt\" or \"messages\"");
        expect_bad("{\"id\":\"a\",\"prompt\":\"x\",\"messages\":[]}", "both");
        expect_bad("{\"id\":\"a\",\"prompt\":\"x\",\"prompt\":\"y\"}", "\"prompt\" appears twice");
        expect_bad("{\"id\":{\"x\":1},\"prompt\":\"x\"}", "id must be");
        expect_bad("{\"prompt\":\"\"}", "prompt is empty");
        expect_bad("{\"prompt\":5}", "prompt must be");
        expect_bad("{\"prompt\":[]}", "empty list");
        expect_bad("{\"prompt\":[1,-2]}", "element 1 is not a token id");
        expect_bad("{\"prompt\":[1,2.5]}", "element 1");
        expect_bad("{\"prompt\":[\"a\",\"b\"]}", "one prompt per line");
        expect_bad("{\"prompt\":\"x\",\"temperature\":\"hot\"}", "temperature must be a number");
        expect_bad("{\"prompt\":\"x\",\"temperature\":-1}", "temperature must be");
        expect_bad("{\"prompt\":\"x\",\"top_p\":0}", "top_p must be in (0, 1]");
        expect_bad("{\"prompt\":\"x\",\"top_p\":1.5}", "top_p");
        expect_bad("{\"prompt\":\"x\",\"top_k\":1.5}", "top_k must be an integer");
        expect_bad("{\"prompt\":\"x\",\"min_p\":2}", "min_p");
        expect_bad("{\"prompt\":\"x\",\"repetition_penalty\":0}", "repetition_penalty");
        expect_bad("{\"prompt\":\"x\",\"n\":0}", "n must be");
        expect_bad("{\"prompt\":\"x\",\"n\":1000}", "n must be");
        expect_bad("{\"prompt\":\"x\",\"max_tokens\":-1}", "max_tokens");
        expect_bad("{\"prompt\":\"x\",\"seed\":\"s\"}", "seed");
        expect_bad("{\"prompt\":\"x\",\"stop\":\"\"}", "stop must not be an empty string");
        expect_bad("{\"prompt\":\"x\",\"stop\":[\"a\",3]}", "stop must be a list of non-empty");
        expect_bad("{\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\","
                   "\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
                   "has 17 strings");
        expect_bad("{\"prompt\":\"x\",\"logprobs\":\"yes\"}", "logprobs must be");
        expect_bad("{\"prompt\":\"x\",\"top_logprobs\":21,\"logprobs\":true}", "top_logprobs");
        expect_bad("{\"prompt\":\"x\",\"top_logprobs\":2}", "top_logprobs needs logprobs");
        expect_bad("{\"prompt\":\"x\",\"ignore_eos\":1}", "ignore_eos must be true or false");
        expect_bad("{\"messages\":\"hi\"}", "messages must be a non-empty list");
        expect_bad("{\"messages\":[]}", "messages must be a non-empty list");
        expect_bad("{\"messages\":[{\"content\":\"x\"}]}", "messages[0] needs a string \"role\"");
        expect_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
                   "\"content\":7}]}",
                   "messages[1].content must be");
        expect_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
                   "only {\"type\": \"text\"");
        expect_bad("{\"prompt\":\"x\",\"candidates\":[]}", "candidates must be a non-empty");
        expect_bad("{\"prompt\":\"x\",\"candidates\":\"a\"}", "candidates must be a non-empty");
        expect_bad("{\"prompt\":\"x\",\"candidates\":[\"a\",\"\"]}", "candidates[1]");
        /* OpenAI lines */
        expect_bad("{\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}",
                   "custom_id must be");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/completions\","
                   "\"body\":{\"prompt\":\"x\"}}",
                   "method must be \"POST\"");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
                   "\"body\":{\"input\":\"x\"}}",
                   "got \"/v1/embeddings\"");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                   "\"body\":\"x\"}",
                   "body must be an object");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                   "\"body\":{}}",
                   "body.prompt is missing");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"prompt\":\"x\"}}",
                   "body.messages is missing");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"temperature\":3e9}}",
                   "body.temperature must be");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"presence_penalty\":0.5}}",
                   "presence_penalty is not supported");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"stream\":true}}",
                   "stream=true");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"logit_bias\":{\"5\":10}}}",
                   "logit_bias");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"tools\":[{\"type\":\"function\"}]}}",
                   "tools");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"response_format\":{\"type\":\"json_object\"}}}",
                   "response_format");
        expect_bad("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                   "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"top_logprobs\":3}}",
                   "top_logprobs needs logprobs");
    }

    TEST_CASE("own result line: choices, ids, logprobs, usage") {
        gllm_ginfer_item it;
        parse_str("{\"id\":\"g\",\"prompt\":\"x\",\"n\":2,\"logprobs\":true,\"top_logprobs\":2}",
                  NULL, 4, &it);
        CHECK_OK(it.status);
        fake_result f;
        make_result(&f, 2, true, 2);
        cJSON *o = format_parsed(&it, &f.r);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "id")), "g") == 0);
        CHECK(path_get(o, "line")->valueint == 4);
        CHECK(cJSON_IsNull(path_get(o, "error")));
        CHECK(cJSON_GetArraySize(path_get(o, "choices")) == 2);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "choices.1.text")), "abc1") == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "choices.0.finish_reason")), "stop") == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "choices.1.finish_reason")), "length") == 0);
        CHECK(path_get(o, "choices.1.token_ids.2")->valueint == 15);
        CHECK(fabs(path_get(o, "choices.0.logprobs.1.logprob")->valuedouble + 0.5) < 1e-6);
        CHECK(path_get(o, "choices.0.logprobs.1.top.1.id")->valueint == 21);
        CHECK(path_get(o, "usage.prompt_tokens")->valueint == 7);
        CHECK(path_get(o, "usage.cached_tokens")->valueint == 4);
        CHECK(path_get(o, "usage.completion_tokens")->valueint == 6);
        CHECK(path_get(o, "usage.total_tokens")->valueint == 13);
        cJSON_Delete(o);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("scoring result line") {
        gllm_ginfer_item it;
        parse_str("{\"id\":\"s\",\"prompt\":\"x\",\"candidates\":[\" a\",\" b\"]}", NULL, 2, &it);
        gllm_result r = {.status = GLLM_OK, .n_prompt = 5, .n_candidates = 2};
        double tot[2] = {-3.0, -1.5};
        float lp0[2] = {-1, -2}, lp1[3] = {-0.5f, -0.5f, -0.5f};
        float *lps[2] = {lp0, lp1};
        int len[2] = {2, 3};
        r.candidate_logprob = tot;
        r.candidate_token_logprobs = lps;
        r.candidate_len = len;
        cJSON *o = format_parsed(&it, &r);
        CHECK(path_get(o, "best")->valueint == 1);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "candidates.0.text")), " a") == 0);
        CHECK(path_get(o, "candidates.0.logprob")->valuedouble == -3.0);
        CHECK(path_get(o, "candidates.1.mean_logprob")->valuedouble == -0.5);
        CHECK(cJSON_GetArraySize(path_get(o, "candidates.1.token_logprobs")) == 3);
        CHECK(path_get(o, "usage.candidate_tokens")->valueint == 5);
        cJSON_Delete(o);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("OpenAI chat.completion output line") {
        gllm_ginfer_item it;
        parse_str("{\"custom_id\":\"req-9\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                  "\"body\":{\"model\":\"mini\",\"messages\":[{\"role\":\"user\","
                  "\"content\":\"Hi\"}],\"logprobs\":true,\"top_logprobs\":2,\"n\":2}}",
                  NULL, 1, &it);
        fake_result f;
        make_result(&f, 2, true, 2);
        cJSON *o = format_parsed(&it, &f.r);
        static const char *keys[] = {"id", "custom_id", "response", "error"};
        for (int k = 0; k < 4; k++)
            CHECK_MSG(cJSON_HasObjectItem(o, keys[k]), "missing %s", keys[k]);
        CHECK(strncmp(cJSON_GetStringValue(path_get(o, "id")), "batch_req_", 10) == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "custom_id")), "req-9") == 0);
        CHECK(cJSON_IsNull(path_get(o, "error")));
        CHECK(path_get(o, "response.status_code")->valueint == 200);
        CHECK(strncmp(cJSON_GetStringValue(path_get(o, "response.request_id")), "req_", 4) == 0);
        const cJSON *b = path_get(o, "response.body");
        CHECK(strncmp(cJSON_GetStringValue(path_get(b, "id")), "chatcmpl-", 9) == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "object")), "chat.completion") == 0);
        CHECK(path_get(b, "created")->valuedouble == 1700000000);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "model")), "mini") == 0);
        CHECK(cJSON_GetArraySize(path_get(b, "choices")) == 2);
        CHECK(path_get(b, "choices.1.index")->valueint == 1);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "choices.0.message.role")), "assistant") == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "choices.0.message.content")), "abc0") == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "choices.1.finish_reason")), "length") == 0);
        CHECK(cJSON_GetArraySize(path_get(b, "choices.0.logprobs.content")) == 3);
        CHECK(cJSON_IsString(path_get(b, "choices.0.logprobs.content.0.token")));
        CHECK(cJSON_IsArray(path_get(b, "choices.0.logprobs.content.0.bytes")));
        CHECK(fabs(path_get(b, "choices.0.logprobs.content.2.logprob")->valuedouble + 0.75) < 1e-6);
        CHECK(cJSON_GetArraySize(path_get(b, "choices.0.logprobs.content.0.top_logprobs")) == 2);
        CHECK(path_get(b, "usage.prompt_tokens")->valueint == 7);
        CHECK(path_get(b, "usage.completion_tokens")->valueint == 6);
        CHECK(path_get(b, "usage.total_tokens")->valueint == 13);
        CHECK(path_get(b, "usage.prompt_tokens_details.cached_tokens")->valueint == 4);
        /* identifiers depend on the line only: a rerun writes the same line */
        gllm_ginfer_format_ctx fc = {.model_name = "stories", .created = 1700000000};
        char *a1 = gllm_ginfer_format(&it, &f.r, &fc), *a2 = gllm_ginfer_format(&it, &f.r, &fc);
        CHECK(a1 && a2 && strcmp(a1, a2) == 0);
        free(a1);
        free(a2);
        CHECK(gllm_ginfer_result_matches(o, &it));
        cJSON_Delete(o);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("OpenAI text_completion output line") {
        gllm_ginfer_item it;
        parse_str("{\"custom_id\":\"t\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"Say\",\"logprobs\":2}}",
                  NULL, 1, &it);
        fake_result f;
        make_result(&f, 1, true, 2);
        cJSON *o = format_parsed(&it, &f.r);
        const cJSON *b = path_get(o, "response.body");
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "object")), "text_completion") == 0);
        CHECK(strncmp(cJSON_GetStringValue(path_get(b, "id")), "cmpl-", 5) == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "model")), "stories") == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "choices.0.text")), "abc0") == 0);
        CHECK(strcmp(cJSON_GetStringValue(path_get(b, "choices.0.finish_reason")), "stop") == 0);
        CHECK(cJSON_GetArraySize(path_get(b, "choices.0.logprobs.tokens")) == 3);
        CHECK(cJSON_GetArraySize(path_get(b, "choices.0.logprobs.token_logprobs")) == 3);
        CHECK(cJSON_GetArraySize(path_get(b, "choices.0.logprobs.top_logprobs")) == 3);
        CHECK(path_get(b, "choices.0.logprobs.text_offset.0")->valueint == 3);
        CHECK(path_get(b, "usage.total_tokens")->valueint == 10);
        cJSON_Delete(o);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("engine errors become error results") {
        gllm_ginfer_item it;
        parse_str("{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"x\"}}",
                  NULL, 12, &it);
        gllm_result r = {.status = GLLM_ERR_INVALID};
        snprintf(r.error, sizeof r.error, "prompt + max_tokens exceed the context (512)");
        cJSON *o = format_parsed(&it, &r);
        CHECK(path_get(o, "response.status_code")->valueint == 400);
        const char *m = cJSON_GetStringValue(path_get(o, "response.body.error.message"));
        CHECK(m && strstr(m, "in.jsonl:12: prompt + max_tokens"));
        cJSON_Delete(o);
        gllm_ginfer_item_free(&it);
        parse_str("{\"id\":5,\"prompt\":\"x\"}", NULL, 13, &it);
        r.status = GLLM_ERR_BACKEND;
        o = format_parsed(&it, &r);
        CHECK(strcmp(cJSON_GetStringValue(path_get(o, "error.code")), "engine_error") == 0);
        CHECK(path_get(o, "id")->valueint == 5 && path_get(o, "line")->valueint == 13);
        cJSON_Delete(o);
        gllm_ginfer_item_free(&it);
    }

    TEST_CASE("request: seeds derived per line unless given, context default") {
        gllm_ginfer_item a, b, c;
        parse_str("{\"prompt\":[1,2]}", NULL, 1, &a);
        parse_str("{\"prompt\":[1,2]}", NULL, 2, &b);
        parse_str("{\"prompt\":[1,2],\"seed\":5}", NULL, 3, &c);
        gllm_ginfer_encoded ea, eb, ec;
        CHECK_OK(gllm_ginfer_encode(&a, NULL, NULL, NULL, &ea));
        CHECK_OK(gllm_ginfer_encode(&b, NULL, NULL, NULL, &eb));
        CHECK_OK(gllm_ginfer_encode(&c, NULL, NULL, NULL, &ec));
        gllm_request ra, rb, rc, ra2;
        gllm_ginfer_request(&a, &ea, 1, 64, 0, &ra);
        gllm_ginfer_request(&a, &ea, 1, 64, 0, &ra2);
        gllm_ginfer_request(&b, &eb, 1, 64, 0, &rb);
        gllm_ginfer_request(&c, &ec, 1, 64, 0, &rc);
        CHECK(ra.sampling.seed == ra2.sampling.seed && ra.sampling.seed != rb.sampling.seed);
        CHECK(rc.sampling.seed == 5);
        a.max_tokens = GLLM_GINFER_MAX_TOKENS_CONTEXT;
        gllm_ginfer_request(&a, &ea, 1, 64, 0, &ra);
        CHECK(ra.max_tokens == 62);
        /* a text prompt without a tokenizer is an error naming the line */
        gllm_ginfer_item t;
        parse_str("{\"prompt\":\"text\"}", NULL, 4, &t);
        gllm_ginfer_encoded et;
        CHECK(gllm_ginfer_encode(&t, NULL, NULL, NULL, &et) != GLLM_OK);
        CHECK(strstr(t.error, "in.jsonl:4: a text prompt needs a tokenizer"));
        gllm_ginfer_encoded_free(&ea);
        gllm_ginfer_encoded_free(&eb);
        gllm_ginfer_encoded_free(&ec);
        gllm_ginfer_encoded_free(&et);
        gllm_ginfer_item_free(&a);
        gllm_ginfer_item_free(&b);
        gllm_ginfer_item_free(&c);
        gllm_ginfer_item_free(&t);
    }
    /* tokenization needs a real tokenizer (the checks above count even when it is absent) */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/assets/models/stories260K-hf", GLLM_SHARED_DIR);
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        printf("encode checks skipped: %s not found (../shared assets absent)\n", dir);
        return test_summary();
    }
    gllm_tokenizer *tok = NULL;
    CHECK_OK(gllm_tok_load(dir, &tok));
    if (!tok)
        return test_summary();
    TEST_CASE("encode: text prompt with BOS, candidates as continuations") {
        gllm_ginfer_item it;
        parse_str("{\"id\":1,\"prompt\":\"Once upon a time\",\"candidates\":[\" there\","
                  "\" was\"]}",
                  NULL, 1, &it);
        gllm_ginfer_encoded enc;
        CHECK_OK(gllm_ginfer_encode(&it, tok, NULL, NULL, &enc));
        int32_t *ref = NULL;
        size_t n_ref = 0;
        CHECK_OK(gllm_tok_encode(tok, "Once upon a time", 16, true, &ref, &n_ref));
        CHECK(enc.n_prompt == (int)n_ref && enc.prompt[0] == gllm_tok_bos_id(tok));
        CHECK(memcmp(enc.prompt, ref, n_ref * sizeof *ref) == 0);
        free(ref);
        CHECK_OK(gllm_tok_encode(tok, "Once upon a time there", 22, true, &ref, &n_ref));
        CHECK(enc.n_candidates == 2 && enc.candidate_len[0] == (int)n_ref - enc.n_prompt);
        CHECK(memcmp(enc.candidates[0], ref + enc.n_prompt,
                     (size_t)enc.candidate_len[0] * sizeof *ref) == 0);
        free(ref);
        gllm_request r;
        gllm_ginfer_request(&it, &enc, 99, 512, 42, &r);
        CHECK(r.tag == 42 && r.n_candidates == 2 && r.prompt == enc.prompt);
        gllm_ginfer_encoded_free(&enc);
        gllm_ginfer_item_free(&it);
    }
    TEST_CASE("encode: messages through the chat template, no extra BOS") {
        gllm_chat_template *chat = NULL;
        CHECK_OK(gllm_chat_open("llama2", "<s>", "</s>", &chat));
        gllm_ginfer_item it;
        parse_str("{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}", NULL, 1, &it);
        gllm_ginfer_encoded enc;
        CHECK_OK(gllm_ginfer_encode(&it, tok, chat, NULL, &enc));
        char *text = NULL;
        CHECK_OK(gllm_chat_render(chat, it.messages, 1, true, &text, NULL));
        int32_t *ref = NULL;
        size_t n_ref = 0;
        CHECK_OK(gllm_tok_encode(tok, text, strlen(text), false, &ref, &n_ref));
        CHECK(enc.n_prompt == (int)n_ref && memcmp(enc.prompt, ref, n_ref * 4) == 0);
        free(ref);
        free(text);
        gllm_ginfer_encoded_free(&enc);
        /* without a template: an error result naming the line and the fix */
        gllm_ginfer_item_free(&it);
        parse_str("{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}", NULL, 8, &it);
        CHECK(gllm_ginfer_encode(&it, tok, NULL, "stories260K-hf/tokenizer_config.json has no "
                                                  "chat_template", &enc) != GLLM_OK);
        CHECK(strstr(it.error, "in.jsonl:8: messages need a chat template") &&
              strstr(it.error, "--chat-template"));
        gllm_ginfer_encoded_free(&enc);
        gllm_ginfer_item_free(&it);
        gllm_chat_free(chat);
    }
    TEST_CASE("logprob token strings keep their leading space") {
        gllm_ginfer_item it;
        parse_str("{\"custom_id\":\"t\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"The cat\",\"logprobs\":0}}",
                  NULL, 1, &it);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(gllm_tok_encode(tok, "a the", 5, false, &ids, &n));
        fake_result f;
        make_result(&f, 1, true, 0);
        f.ids[0][0] = ids[n - 1]; /* "▁the" */
        gllm_ginfer_format_ctx fc = {.tok = tok, .created = 1};
        char *line = gllm_ginfer_format(&it, &f.r, &fc);
        cJSON *o = line ? cJSON_Parse(line) : NULL;
        const char *t0 =
            cJSON_GetStringValue(path_get(o, "response.body.choices.0.logprobs.tokens.0"));
        CHECK_MSG(t0 && strcmp(t0, " the") == 0, "token text '%s'", t0 ? t0 : "(null)");
        cJSON_Delete(o);
        free(line);
        free(ids);
        gllm_ginfer_item_free(&it);
    }
    gllm_tok_free(tok);
    return test_summary();
}
