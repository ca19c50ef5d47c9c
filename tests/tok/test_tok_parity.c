/* Parity with the `tokenizers` package: for every shared tokenizer and every
 * corpus entry, identical ids (with and without special tokens), identical
 * decoded text (by hash), and decode(encode(s)) == s wherever HF round-trips.
 * Reference ids come from scripts/make_tok_fixtures.py. */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "gllm/tok.h"
#include "test_util.h"
#include "tok/tok_corpus.h"

#define FIX GLLM_SOURCE_DIR "/tests/fixtures/tok/"

static bool same(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (!na || !memcmp(a, b, na * sizeof *a));
}

/* Compare the tokenizer at `path` with <name>.ids over every stride-th entry. */
static void check_tokenizer(const char *name, const char *path, const entry *corpus, int n,
                            int stride)
{
    char fix[1024];
    snprintf(fix, sizeof fix, FIX "%s.ids", name);
    gllm_tokenizer *tok = NULL;
    CHECK_OK(gllm_tok_load(path, &tok));
    char *ref = test_slurp(fix, NULL);
    CHECK(ref != NULL);
    if (!tok || !ref)
        return;
    int32_t *want = malloc(REF_CAP * sizeof *want), *full = malloc(REF_CAP * sizeof *full);
    int32_t pre[REF_SPECIALS], post[REF_SPECIALS];
    int bad = 0;
    char *line = ref;
    for (int i = 0; i < n && *line; i += stride) {
        ref_line r;
        parse_ref_line(&line, want, pre, post, &r);
        const size_t nw = r.n_ids, npre = r.n_pre, npost = r.n_post;

        int32_t *ids = NULL, *ids2 = NULL;
        size_t nids = 0, nids2 = 0;
        CHECK_OK(gllm_tok_encode(tok, corpus[i].bytes, corpus[i].len, false, &ids, &nids));
        CHECK_OK(gllm_tok_encode(tok, corpus[i].bytes, corpus[i].len, true, &ids2, &nids2));
        memcpy(full, pre, npre * sizeof *pre);
        memcpy(full + npre, want, nw * sizeof *want);
        memcpy(full + npre + nw, post, npost * sizeof *post);
        bool ok = same(ids, nids, want, nw) && same(ids2, nids2, full, npre + nw + npost);
        if (!ok && bad++ < 5) {
            printf("%s entry %d (%zu bytes): got %zu ids, want %zu:", name, i, corpus[i].len, nids, nw);
            for (size_t k = 0; k < nids && k < 24; k++)
                printf(" %d%s", ids[k], k < nw && ids[k] != want[k] ? "*" : "");
            printf("\n");
        }
        CHECK_MSG(ok, "%s: ids differ from tokenizers on corpus entry %d", name, i);

        char *text = NULL;
        size_t len = 0;
        CHECK_OK(gllm_tok_decode(tok, ids2, nids2, false, &text, &len));
        CHECK_MSG(text && fnv1a(text, len) == r.h_all, "%s: decode differs on entry %d: '%s'", name,
                  i, text ? text : "");
        free(text);
        CHECK_OK(gllm_tok_decode(tok, ids2, nids2, true, &text, &len));
        CHECK_MSG(text && fnv1a(text, len) == r.h_skip,
                  "%s: decode(skip_special) differs on entry %d: '%s'", name, i, text ? text : "");
        free(text);
        if (r.roundtrip && corpus[i].valid) {
            CHECK_OK(gllm_tok_decode(tok, ids, nids, false, &text, &len));
            CHECK_MSG(text && len == corpus[i].len && !memcmp(text, corpus[i].bytes, len),
                      "%s: decode(encode(s)) != s on entry %d", name, i);
            free(text);
        }
        free(ids);
        free(ids2);
    }
    free(want);
    free(full);
    free(ref);
    gllm_tok_free(tok);
}

/* A variant of a shared tokenizer.json with components replaced as
 * variants.json says, written to tmpdir/<name>.json. */
static bool write_variant(const cJSON *v, const char *tmpdir, char *out, size_t cap)
{
    char base[768]; /* < 1024 - 40: test_shared_path formats it into 1024 bytes */
    test_shared_path(cJSON_GetObjectItem(v, "base")->valuestring, base, sizeof base);
    strcat(base, "/tokenizer.json");
    char *text = test_slurp(base, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(v, "replace"))
        cJSON_ReplaceItemInObject(j, it->string, cJSON_Duplicate(it, 1));
    snprintf(out, cap, "%s/%s.json", tmpdir, cJSON_GetObjectItem(v, "name")->valuestring);
    char *json = cJSON_PrintUnformatted(j);
    FILE *f = fopen(out, "w");
    bool ok = f && json && fputs(json, f) >= 0;
    if (f)
        fclose(f);
    free(json);
    cJSON_Delete(j);
    return ok;
}

int main(void)
{
    static entry corpus[1024];
    int n = load_corpus(corpus, 1024);
    static const char *names[][2] = {
        {"gpt2", "assets/tokenizers/gpt2"},
        {"llama3", "assets/tokenizers/llama3"},
        {"llama3.1", "assets/tokenizers/llama3.1"},
        {"mistral", "assets/tokenizers/mistral"},
        {"qwen3", "assets/tokenizers/qwen3"},
        {"stories260K", "assets/models/stories260K-hf"},
    };
    for (size_t t = 0; t < sizeof names / sizeof names[0]; t++) {
        char path[768]; /* < 1024 - 40: test_shared_path formats it into 1024 bytes */
        test_shared_path(names[t][1], path, sizeof path);
        TEST_CASE(names[t][0]) { check_tokenizer(names[t][0], path, corpus, n, 1); }
    }
    char *vtext = test_slurp(FIX "variants.json", NULL);
    cJSON *vj = cJSON_Parse(vtext);
    int stride = cJSON_GetObjectItem(vj, "stride")->valueint;
    char tmpdir[] = "/tmp/gllm_tok_varXXXXXX";
    CHECK(mkdtemp(tmpdir) != NULL);
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(vj, "variants")) {
        const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
        char path[1024];
        TEST_CASE(name)
        {
            CHECK(write_variant(v, tmpdir, path, sizeof path));
            check_tokenizer(name, path, corpus, n, stride);
            unlink(path);
        }
    }
    rmdir(tmpdir);
    cJSON_Delete(vj);
    free(vtext);
    free_corpus(corpus, n);
    return test_summary();
}
