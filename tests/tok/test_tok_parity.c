/* Parity with the `tokenizers` package: for every shared tokenizer and every
 * corpus entry, identical ids (with and without special tokens), identical
 * decoded text (by hash), and decode(encode(s)) == s wherever HF round-trips.
 * Reference ids come from scripts/make_tok_fixtures.py. */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "gllm/tok.h"
#include "test_util.h"

#define FIX GLLM_SOURCE_DIR "/tests/fixtures/tok/"

typedef struct {
    char *bytes;
    size_t len;
    bool valid; /* a {"text"} entry; {"hex"} entries hold invalid UTF-8 */
} entry;

static int load_corpus(entry *out, int cap)
{
    char *text = test_slurp(FIX "corpus.jsonl", NULL);
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cJSON *t = cJSON_GetObjectItem(j, "text"), *h = cJSON_GetObjectItem(j, "hex");
        entry *e = &out[n++];
        if (cJSON_IsString(t)) {
            e->len = strlen(t->valuestring);
            e->bytes = malloc(e->len + 1);
            memcpy(e->bytes, t->valuestring, e->len + 1);
            e->valid = true;
        } else {
            const char *hx = h->valuestring;
            e->len = strlen(hx) / 2;
            e->bytes = malloc(e->len + 1);
            for (size_t i = 0; i < e->len; i++) {
                unsigned v;
                sscanf(hx + 2 * i, "%2x", &v);
                e->bytes[i] = (char)v;
            }
            e->bytes[e->len] = '\0';
            e->valid = false;
        }
        cJSON_Delete(j);
    }
    free(text);
    return n;
}

/* Parse space-separated ids up to '|'; returns the count, advances *p past '|'. */
static size_t parse_ids(char **p, int32_t *ids, size_t cap)
{
    size_t n = 0;
    while (**p && **p != '|' && **p != '\n') {
        char *end;
        long v = strtol(*p, &end, 10);
        if (end == *p) {
            (*p)++;
            continue;
        }
        if (n < cap)
            ids[n] = (int32_t)v;
        n++;
        *p = end;
    }
    if (**p == '|')
        (*p)++;
    return n;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

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
    enum { CAP = 8192 };
    int32_t *want = malloc(CAP * sizeof *want), *full = malloc(CAP * sizeof *full);
    int32_t pre[16], post[16];
    int bad = 0;
    char *line = ref;
    for (int i = 0; i < n && *line; i += stride) {
        char *p = line;
        size_t nw = parse_ids(&p, want, CAP);
        size_t npre = parse_ids(&p, pre, 16);
        size_t npost = parse_ids(&p, post, 16);
        uint64_t h_all = strtoull(p, &p, 16);
        uint64_t h_skip = strtoull(p + 1, &p, 16);
        bool roundtrip = p[1] == '1';
        line = strchr(p, '\n');
        line = line ? line + 1 : p + strlen(p);

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
        CHECK_MSG(text && fnv1a(text, len) == h_all, "%s: decode differs on entry %d: '%s'", name,
                  i, text ? text : "");
        free(text);
        CHECK_OK(gllm_tok_decode(tok, ids2, nids2, true, &text, &len));
        CHECK_MSG(text && fnv1a(text, len) == h_skip,
                  "%s: decode(skip_special) differs on entry %d: '%s'", name, i, text ? text : "");
        free(text);
        if (roundtrip && corpus[i].valid) {
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
    for (int i = 0; i < n; i++)
        free(corpus[i].bytes);
    return test_summary();
}
