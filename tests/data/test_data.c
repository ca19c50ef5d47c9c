/* Datasets with a byte-level stand-in tokenizer (id = byte, BOS 256, EOS 257,
 * pad 258), so that every label can be checked against the text it covers:
 * loss masks of each format, packing boundaries, shuffling and sharding,
 * validation split, bad records with file:line, the token cache. */
#include <unistd.h>

#include "gllm/data.h"
#include "test_util.h"

enum { BOS = 256, EOS = 257, PAD = 258 };

static gllm_status byte_encode(const void *ctx, const char *text, size_t len, bool add_special, int32_t **ids,
                               size_t *n)
{
    (void)ctx;
    *ids = malloc((len + 1) * sizeof **ids);
    if (!*ids)
        return gllm_fail(GLLM_ERR_OOM, "test encoder");
    size_t k = 0;
    if (add_special)
        (*ids)[k++] = BOS;
    for (size_t i = 0; i < len; i++)
        (*ids)[k++] = (unsigned char)text[i];
    *n = k;
    return GLLM_OK;
}

static const gllm_data_encoder k_enc = {byte_encode, NULL, EOS, PAD};
static char g_dir[256];

static const char *write_file(const char *name, const char *content)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    fputs(content, f);
    fclose(f);
    return path;
}

static const char *write_bytes(const char *name, const char *data, size_t n)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

/* The bytes of doc i whose label is 1, as a string (non-byte ids as '#'). */
static void labelled_text(const gllm_dataset *ds, size_t i, char *buf, size_t cap)
{
    const int32_t *ids;
    const uint8_t *lab;
    size_t n, k = 0;
    gllm_data_doc(ds, i, &ids, &lab, &n, NULL, NULL);
    for (size_t t = 0; t < n && k + 1 < cap; t++)
        if (lab[t])
            buf[k++] = ids[t] < 256 ? (char)ids[t] : '#';
    buf[k] = '\0';
}

static gllm_dataset *load(const char *path, gllm_data_options *o)
{
    gllm_dataset *ds = NULL;
    CHECK_OK(gllm_data_load(path, &k_enc, o, &ds));
    return ds;
}

/* A JSONL of n text documents of varied lengths ("doc<i>:" + filler). */
static const char *make_corpus(const char *name, int n, unsigned salt)
{
    size_t cap = (size_t)n * 128 + 1;
    char *s = malloc(cap);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        int len = 3 + (int)((i * 7919u + salt) % 37);
        k += (size_t)snprintf(s + k, cap - k, "{\"text\": \"doc%d:", i);
        for (int j = 0; j < len; j++)
            s[k++] = (char)('a' + (i + j) % 26);
        k += (size_t)snprintf(s + k, cap - k, "\"}\n");
    }
    s[k] = '\0';
    const char *p = write_file(name, s);
    free(s);
    return p;
}

static void check_batches(const gllm_dataset *ds, gllm_data_loader *l, int B, int T, int *seen)
{
    gllm_batch b = {B, T, malloc((size_t)B * T * 4), malloc((size_t)B * T * 4), malloc((size_t)B * T * 4),
                    malloc((size_t)B * T * 4)};
    int32_t *doc = malloc((size_t)B * T * 4);
    for (size_t i = 0; i < gllm_data_loader_n_batches(l); i++) {
        CHECK_OK(gllm_data_loader_batch(l, i, &b, doc));
        for (int r = 0; r < B; r++) {
            int prev = -2;
            for (int t = 0; t < T; t++) {
                size_t p = (size_t)r * T + t;
                if (doc[p] < 0) {
                    CHECK(b.loss_mask[p] == 0 && b.ids[p] == PAD);
                    prev = -1;
                    continue;
                }
                const int32_t *ids;
                const uint8_t *lab;
                size_t n;
                gllm_data_doc(ds, (size_t)doc[p], &ids, &lab, &n, NULL, NULL);
                if (doc[p] != prev) { /* a document starts: whole, at pos 0 */
                    CHECK(b.pos[p] == 0);
                    CHECK(prev != -1); /* never after padding */
                    CHECK(t + (int)n <= T);
                    seen[doc[p]]++;
                }
                int32_t pos = b.pos[p];
                CHECK(b.ids[p] == ids[pos]);
                bool last = (size_t)pos + 1 == n;
                CHECK(last ? b.loss_mask[p] == 0 : b.targets[p] == ids[pos + 1]);
                CHECK(last || b.loss_mask[p] == (float)lab[pos + 1]);
                prev = doc[p];
            }
        }
    }
    free(b.ids);
    free(b.targets);
    free(b.loss_mask);
    free(b.pos);
    free(doc);
}

int main(void)
{
    test_seed();
    snprintf(g_dir, sizeof g_dir, "/tmp/gllm_test_data_XXXXXX");
    if (!mkdtemp(g_dir))
        test_skip("cannot create a temporary folder");
    gllm_data_options o = gllm_data_default_options();
    o.max_len = 512;

    TEST_CASE("loss masks of text, prompt/completion and alpaca") {
        const char *p = write_file(
            "fmt.jsonl",
            "{\"text\": \"hello\"}\n"
            "\n"
            "{\"prompt\": \"Q: 2+2?\\nA:\", \"completion\": \" 4\"}\n"
            "{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"hi\"}\n"
            "{\"instruction\": \"Add.\", \"input\": \"1 2\", \"output\": \"3\"}\n");
        gllm_dataset *ds = load(p, &o);
        if (ds) {
            char buf[1024];
            CHECK(gllm_data_n_docs(ds) == 4);
            labelled_text(ds, 0, buf, sizeof buf);
            CHECK(!strcmp(buf, "hello#")); /* everything after BOS, and the EOS */
            labelled_text(ds, 1, buf, sizeof buf);
            CHECK(!strcmp(buf, " 4#"));
            labelled_text(ds, 2, buf, sizeof buf);
            CHECK(!strcmp(buf, "hi#"));
            labelled_text(ds, 3, buf, sizeof buf);
            CHECK(!strcmp(buf, "3#"));
            const int32_t *ids;
            size_t n, line;
            gllm_data_doc(ds, 3, &ids, NULL, &n, NULL, &line);
            const char *want = "Below is an instruction that describes a task, paired with an input that provides "
                               "further context. Write a response that appropriately completes the request.\n\n"
                               "### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response:\n3";
            CHECK(n == strlen(want) + 2 && ids[0] == BOS && ids[n - 1] == EOS && line == 5);
            bool same = n == strlen(want) + 2;
            for (size_t t = 0; same && t < strlen(want); t++)
                same = ids[t + 1] == (unsigned char)want[t];
            CHECK(same);
            gllm_data_doc(ds, 2, &ids, NULL, &n, NULL, NULL);
            const char *noinput = "Below is an instruction that describes a task. Write a response";
            same = n > strlen(noinput);
            for (size_t t = 0; same && t < strlen(noinput); t++)
                same = ids[t + 1] == (unsigned char)noinput[t];
            CHECK(same);
            const gllm_data_stats *s = gllm_data_stats_of(ds);
            CHECK(s->n_records == 4 && s->n_docs == 4 && s->n_bad == 0);
            CHECK(s->n_loss_tokens == 6 + 3 + 3 + 2);
        }
        gllm_data_free(ds);
    }

    TEST_CASE("messages: loss on assistant turns only") {
        gllm_chat_template *chat = NULL;
        CHECK_OK(gllm_chat_open("chatml", NULL, "<|im_end|>", &chat));
        o.chat = chat;
        o.chat_source = "chatml";
        const char *p = write_file("chat.jsonl",
                                   "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", "
                                   "\"content\": \"U1\"}, {\"role\": \"assistant\", \"content\": \"A1\"}, {\"role\": "
                                   "\"user\", \"content\": \"U2\"}, {\"role\": \"assistant\", \"content\": \"A2\"}]}\n");
        gllm_dataset *ds = load(p, &o);
        if (ds) {
            char buf[256];
            labelled_text(ds, 0, buf, sizeof buf);
            CHECK_MSG(!strcmp(buf, "A1<|im_end|>\nA2<|im_end|>\n"), "got '%s'", buf);
        }
        gllm_data_free(ds);
        /* a template error in one record is that record's error */
        gllm_chat_template *mistral = NULL;
        CHECK_OK(gllm_chat_open("mistral", "<s>", "</s>", &mistral));
        o.chat = mistral;
        o.chat_source = "mistral";
        p = write_file("chat2.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                                      "\"assistant\", \"content\": \"yo\"}]}\n"
                                      "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": "
                                      "\"assistant\", \"content\": \"x\"}]}\n");
        gllm_dataset *bad = NULL;
        CHECK_ERR(gllm_data_load(p, &k_enc, &o, &bad), GLLM_ERR_FORMAT, "chat2.jsonl:2: chat template");
        o.skip_bad = true;
        ds = load(p, &o);
        if (ds) {
            char buf[256];
            labelled_text(ds, 0, buf, sizeof buf);
            CHECK_MSG(!strcmp(buf, "yo</s>"), "got '%s'", buf);
            CHECK(gllm_data_stats_of(ds)->n_bad == 1);
            CHECK(strstr(gllm_data_stats_of(ds)->first_bad, "chat2.jsonl:2: chat template") != NULL);
            CHECK(strstr(gllm_data_stats_of(ds)->first_bad, "roles must alternate") != NULL);
        }
        gllm_data_free(ds);
        o.skip_bad = false;
        gllm_chat_free(mistral);
        gllm_chat_free(chat);
        o.chat = NULL;
        o.chat_source = NULL;
    }

    TEST_CASE("bad records: file:line, or skipped and counted") {
        const char *p = write_file("bad.jsonl", "{\"text\": \"fine\"}\n"
                                                "not json at all\n"
                                                "{\"prompt\": \"p\"}\n"
                                                "{\"prompt\": \"p\", \"completion\": \"\"}\n"
                                                "[1, 2]\n"
                                                "{\"other\": 1}\n"
                                                "{\"text\": \"0123456789012345678901234567890123456789\"}\n"
                                                "{\"text\": \"also fine\"}\n");
        gllm_dataset *ds = NULL;
        CHECK_ERR(gllm_data_load(p, &k_enc, &o, &ds), GLLM_ERR_FORMAT, "bad.jsonl:2: not valid JSON");
        CHECK(ds == NULL);
        o.skip_bad = true;
        o.max_len = 20;
        ds = load(p, &o);
        if (ds) {
            const gllm_data_stats *s = gllm_data_stats_of(ds);
            CHECK(s->n_records == 8 && s->n_bad == 6 && s->n_docs == 2);
            CHECK(strstr(s->first_bad, "bad.jsonl:2: not valid JSON") != NULL);
        }
        gllm_data_free(ds);
        o.skip_bad = false;
        const char *q = write_file("long.jsonl", "{\"text\": \"short\"}\n"
                                                 "{\"prompt\": \"0123456789\", \"completion\": \"0123456789\"}\n");
        CHECK_ERR(gllm_data_load(q, &k_enc, &o, &ds), GLLM_ERR_FORMAT, "long.jsonl:2: 22 tokens exceed max_len 20");
        o.overlong = GLLM_DATA_OVERLONG_TRUNCATE;
        ds = load(q, &o);
        if (ds) {
            size_t n;
            gllm_data_doc(ds, 1, NULL, NULL, &n, NULL, NULL);
            CHECK(n == 20 && gllm_data_stats_of(ds)->n_truncated == 1);
        }
        gllm_data_free(ds);
        o.overlong = GLLM_DATA_OVERLONG_DROP;
        ds = load(q, &o);
        CHECK(ds && gllm_data_n_docs(ds) == 1 && gllm_data_stats_of(ds)->n_dropped_long == 1);
        gllm_data_free(ds);
        o.overlong = GLLM_DATA_OVERLONG_ERROR;
        o.max_len = 512;
        CHECK_ERR(gllm_data_load("/nonexistent/x.jsonl", &k_enc, &o, &ds), GLLM_ERR_NOT_FOUND, "/nonexistent/x.jsonl");
    }

    TEST_CASE("nothing passes silently: each malformed line or record is a file:line error") {
        static const struct {
            const char *data;
            size_t len;
            const char *want;
        } cases[] = {
#define C(lit, want) {lit, sizeof lit - 1, want}
            C("{\"text\": \"a\"}\n{\"text\": \"b\"} {\"text\": \"c\"}\n", "x.jsonl:2: two JSON values on one line"),
            C("{\"text\": \"a\"} garbage\n", "x.jsonl:1: trailing characters after the JSON value at column 15"),
            C("{\"text\": \"a\"}\n\n{\"text\": \"a\0b\"}\n", "x.jsonl:3: NUL byte at column 12"),
            C("{\"text\": \"caf\xe9\"}\n", "x.jsonl:1: invalid UTF-8 at column 14"),
            C("{\"text\": \"a\", \"prompt\": \"p\", \"completion\": \"c\"}\n",
              "x.jsonl:1: record has both \"prompt\" and \"text\""),
            C("{\"messages\": [], \"instruction\": \"i\", \"output\": \"o\"}\n",
              "x.jsonl:1: record has both \"messages\" and \"instruction\""),
            C("{\"text\": \"a\", \"text\": \"b\"}\n", "x.jsonl:1: duplicate key \"text\""),
            C("{\"prompt\": \"a\", \"completion\": \"b\", \"meta\": {\"k\": 1, \"k\": 2}}\n",
              "x.jsonl:1: duplicate key \"k\""),
            C("[{\"text\": \"a\"}, {\"text\": \"b\", \"text\": \"c\"}]", "x.jsonl:record 2: duplicate key \"text\""),
            C("[{\"text\": \"a\"}] [1]", "x.jsonl:1: starts with '[' but is not a valid JSON array"),
            C("[{\"text\": \"a\xff\"}]", "x.jsonl:1: invalid UTF-8 in a JSON array file"),
#undef C
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const char *p = write_bytes("x.jsonl", cases[i].data, cases[i].len);
            gllm_dataset *ds = NULL;
            gllm_clear_error();
            gllm_status st = gllm_data_load(p, &k_enc, &o, &ds);
            CHECK_MSG(st == GLLM_ERR_FORMAT && strstr(gllm_last_error(), cases[i].want), "case %zu: got '%s'", i,
                      gllm_last_error());
            gllm_data_free(ds);
        }
        /* the reader stays usable after a bad line: skip_bad counts it and reads on */
#define WRITE_LIT(name, lit) write_bytes(name, lit, sizeof lit - 1)
        const char *p = WRITE_LIT("skip.jsonl", "{\"text\": \"a\"} x\n{\"text\": \"\xc3\"}\n{\"text\": \"ok\"}\n");
        o.skip_bad = true;
        gllm_dataset *ds = load(p, &o);
        o.skip_bad = false;
        CHECK(ds && gllm_data_n_docs(ds) == 1 && gllm_data_stats_of(ds)->n_bad == 2);
        gllm_data_free(ds);
        /* a byte-order mark before a JSON array: still an array (it was an error) */
        ds = NULL;
        p = WRITE_LIT("bom.json", "\xef\xbb\xbf\n [{\"text\": \"a\"}, {\"text\": \"b\"}]\n");
        ds = load(p, &o);
        CHECK(ds && gllm_data_n_docs(ds) == 2);
        gllm_data_free(ds);
        /* and before JSONL */
        p = WRITE_LIT("bom.jsonl", "\xef\xbb\xbf{\"text\": \"a\"}\n");
#undef WRITE_LIT
        ds = load(p, &o);
        CHECK(ds && gllm_data_n_docs(ds) == 1);
        gllm_data_free(ds);
    }

    TEST_CASE("data that is not a regular file is refused at once") {
        gllm_dataset *ds = NULL;
        o.cache_dir = g_dir; /* the cache key would hash /dev/zero forever */
        o.tokenizer_path = "/dev/null";
        CHECK_ERR(gllm_data_load("/dev/zero", &k_enc, &o, &ds), GLLM_ERR_INVALID,
                  "/dev/zero: is a character device, not a regular file");
        CHECK_ERR(gllm_data_load(g_dir, &k_enc, &o, &ds), GLLM_ERR_INVALID, "is a folder, not a regular file");
        o.cache_dir = NULL;
        o.tokenizer_path = NULL;
        CHECK(ds == NULL);
    }

    TEST_CASE("validation split is by document and deterministic by seed") {
        const char *p = make_corpus("split.jsonl", 400, (unsigned)test_rand_u64());
        o.val_fraction = 0.25;
        gllm_dataset *a = load(p, &o), *b = load(p, &o);
        o.seed += 1;
        gllm_dataset *c = load(p, &o);
        o.seed -= 1;
        if (a && b && c) {
            size_t nval = 0, differ = 0;
            for (size_t i = 0; i < gllm_data_n_docs(a); i++) {
                int sa, sb, sc;
                gllm_data_doc(a, i, NULL, NULL, NULL, &sa, NULL);
                gllm_data_doc(b, i, NULL, NULL, NULL, &sb, NULL);
                gllm_data_doc(c, i, NULL, NULL, NULL, &sc, NULL);
                CHECK(sa == sb);
                nval += sa;
                differ += sa != sc;
            }
            CHECK_MSG(nval > 60 && nval < 140, "%zu of 400 held out", nval);
            CHECK(differ > 0);
            CHECK(gllm_data_stats_of(a)->n_val == nval && gllm_data_stats_of(a)->n_train == 400 - nval);
            /* the validation loader sees exactly the held-out documents */
            int *seen = calloc(400, sizeof *seen);
            gllm_data_loader *l = NULL;
            CHECK_OK(gllm_data_loader_new(a, 1, 4, 128, true, 0, 0, 1, &l));
            if (l)
                check_batches(a, l, 4, 128, seen);
            for (size_t i = 0; i < 400; i++) {
                int s;
                gllm_data_doc(a, i, NULL, NULL, NULL, &s, NULL);
                CHECK(seen[i] == s);
            }
            gllm_data_loader_free(l);
            free(seen);
        }
        gllm_data_free(a);
        gllm_data_free(b);
        gllm_data_free(c);
        o.val_fraction = 0;
    }

    TEST_CASE("packing keeps documents whole; shuffle by (seed, epoch); ranks disjoint and covering") {
        const char *p = make_corpus("pack.jsonl", 300, (unsigned)test_rand_u64());
        gllm_dataset *ds = load(p, &o);
        if (ds) {
            size_t n = gllm_data_n_docs(ds);
            int *seen = calloc(n, sizeof *seen);
            for (int packed = 0; packed < 2; packed++) {
                for (int world = 1; world <= 3; world++) {
                    memset(seen, 0, n * sizeof *seen);
                    size_t nb = 0;
                    for (int r = 0; r < world; r++) {
                        gllm_data_loader *l = NULL;
                        CHECK_OK(gllm_data_loader_new(ds, 0, 3, 64, packed, 7, r, world, &l));
                        if (!l)
                            continue;
                        if (r == 0)
                            nb = gllm_data_loader_n_batches(l);
                        CHECK(gllm_data_loader_n_batches(l) == nb);
                        check_batches(ds, l, 3, 64, seen);
                        gllm_data_loader_free(l);
                    }
                    bool once = true;
                    for (size_t i = 0; i < n; i++)
                        once = once && seen[i] == 1;
                    CHECK_MSG(once, "packed=%d world=%d: every document exactly once", packed, world);
                }
            }
            free(seen);
            /* order: equal for equal (seed, epoch), different across epochs */
            gllm_data_loader *e0 = NULL, *e0b = NULL, *e1 = NULL;
            CHECK_OK(gllm_data_loader_new(ds, 0, 2, 64, true, 0, 0, 1, &e0));
            CHECK_OK(gllm_data_loader_new(ds, 0, 2, 64, true, 0, 0, 1, &e0b));
            CHECK_OK(gllm_data_loader_new(ds, 0, 2, 64, true, 1, 0, 1, &e1));
            if (e0 && e0b && e1) {
                gllm_batch b0 = {2, 64, malloc(512), malloc(512), malloc(512), malloc(512)};
                gllm_batch b1 = {2, 64, malloc(512), malloc(512), malloc(512), malloc(512)};
                CHECK_OK(gllm_data_loader_batch(e0, 0, &b0, NULL));
                CHECK_OK(gllm_data_loader_batch(e0b, 0, &b1, NULL));
                CHECK(!memcmp(b0.ids, b1.ids, 512) && !memcmp(b0.loss_mask, b1.loss_mask, 512));
                CHECK_OK(gllm_data_loader_batch(e1, 0, &b1, NULL));
                CHECK(memcmp(b0.ids, b1.ids, 512) != 0);
                CHECK_ERR(gllm_data_loader_batch(e0, gllm_data_loader_n_batches(e0), &b0, NULL), GLLM_ERR_INVALID,
                          "batch");
                free(b0.ids), free(b0.targets), free(b0.loss_mask), free(b0.pos);
                free(b1.ids), free(b1.targets), free(b1.loss_mask), free(b1.pos);
            }
            gllm_data_loader_free(e0);
            gllm_data_loader_free(e0b);
            gllm_data_loader_free(e1);
            gllm_data_loader *l = NULL;
            CHECK_ERR(gllm_data_loader_new(ds, 0, 2, 8, true, 0, 0, 1, &l), GLLM_ERR_INVALID, "T=8");
        }
        gllm_data_free(ds);
    }

    TEST_CASE("token cache: hit on reload, miss on any key change, corrupt file rebuilt") {
        char cache[300], tok[300];
        snprintf(cache, sizeof cache, "%s/cache", g_dir);
        snprintf(tok, sizeof tok, "%s", write_file("tokenizer.json", "{\"byte\": 1}"));
        char p[512];
        snprintf(p, sizeof p, "%s", make_corpus("cache.jsonl", 50, 3));
        o.cache_dir = cache;
        o.tokenizer_path = tok;
        gllm_dataset *a = load(p, &o), *b = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        CHECK(b && gllm_data_stats_of(b)->cache_hit);
        if (a && b) {
            CHECK(gllm_data_n_docs(a) == gllm_data_n_docs(b));
            bool same = true;
            for (size_t i = 0; i < gllm_data_n_docs(a); i++) {
                const int32_t *ia, *ib;
                const uint8_t *la, *lb;
                size_t na, nb;
                gllm_data_doc(a, i, &ia, &la, &na, NULL, NULL);
                gllm_data_doc(b, i, &ib, &lb, &nb, NULL, NULL);
                same = same && na == nb && !memcmp(ia, ib, na * 4) && !memcmp(la, lb, na);
            }
            CHECK(same);
        }
        gllm_data_free(a);
        gllm_data_free(b);
        /* each key change misses (and is then cached itself) */
        o.max_len = 300;
        a = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        o.max_len = 512;
        o.chat_source = "chatml";
        a = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        o.chat_source = NULL;
        write_file("tokenizer.json", "{\"byte\": 2}");
        a = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        make_corpus("cache.jsonl", 50, 4);
        a = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        a = load(p, &o);
        CHECK(a && gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        /* truncate, then flip a byte: both detected and rebuilt */
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "for f in %s/gllm-tokens-*.bin; do truncate -s -9 $f; done", cache);
        CHECK(system(cmd) == 0);
        a = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        snprintf(cmd, sizeof cmd,
                 "for f in %s/gllm-tokens-*.bin; do printf 'Z' | dd of=$f bs=1 seek=700 conv=notrunc 2>/dev/null; done",
                 cache);
        CHECK(system(cmd) == 0);
        a = load(p, &o);
        CHECK(a && !gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        a = load(p, &o);
        CHECK(a && gllm_data_stats_of(a)->cache_hit);
        gllm_data_free(a);
        o.cache_dir = NULL;
        o.tokenizer_path = NULL;
    }

    TEST_CASE("real data: Alpaca JSON array from ../shared") {
        char path[1024];
        snprintf(path, sizeof path, "%s/assets/datasets/instructions/alpaca_small_2k.json", GLLM_SHARED_DIR);
        struct stat st;
        if (stat(path, &st) == 0) {
            o.max_len = 4096;
            gllm_dataset *ds = load(path, &o);
            if (ds) {
                const gllm_data_stats *s = gllm_data_stats_of(ds);
                printf("alpaca_small_2k: %zu records, %zu docs, %zu tokens, %zu loss tokens\n", s->n_records,
                       s->n_docs, s->n_tokens, s->n_loss_tokens);
                CHECK(s->n_records == 2000 && s->n_docs + s->n_bad == 2000);
                CHECK(s->n_loss_tokens > 0 && s->n_loss_tokens < s->n_tokens);
            }
            gllm_data_free(ds);
            o.max_len = 512;
        } else {
            printf("note: %s absent, real-data case skipped\n", path);
        }
    }

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", g_dir);
    return test_summary();
}
