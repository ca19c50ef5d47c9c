/* The hard tokenizer corpus (tests/fixtures/tok/corpus.jsonl) and the
 * reference id files made from it by scripts/make_tok_fixtures.py and
 * scripts/make_gguf_tok_fixtures.py, as the tokenizer tests read them. */
#ifndef GLLM_TEST_TOK_CORPUS_H
#define GLLM_TEST_TOK_CORPUS_H

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

typedef struct {
    char *bytes;
    size_t len;
    bool valid; /* a {"text"} entry; {"hex"} entries hold invalid UTF-8 */
} entry;

/* Up to cap entries into out (bytes malloc'd, NUL-terminated; free with
 * free_corpus); returns the count. */
static inline int load_corpus(entry *out, int cap)
{
    char *text = test_slurp(GLLM_SOURCE_DIR "/tests/fixtures/tok/corpus.jsonl", NULL);
    int n = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line && n < cap;
         line = strtok(NULL, "\n")) {
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

static inline void free_corpus(entry *corpus, int n)
{
    for (int i = 0; i < n; i++)
        free(corpus[i].bytes);
}

/* Parse space-separated ids up to '|'; returns the count, advances *p past '|'. */
static inline size_t parse_ids(char **p, int32_t *ids, size_t cap)
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

/* One line of a reference .ids file, "IDS|PRE|POST|HASH|HASH|ROUNDTRIP":
 * the ids without special tokens, those added before and after with them,
 * and the FNV-1a hashes of the decoded text with and without specials. */
typedef struct {
    size_t n_ids, n_pre, n_post;
    uint64_t h_all, h_skip;
    bool roundtrip; /* HF's decode(encode(s)) == s */
} ref_line;

enum { REF_CAP = 8192, REF_SPECIALS = 16 };

/* Parse the line at *line into r (ids[REF_CAP], pre/post[REF_SPECIALS]) and
 * advance *line to the next one. */
static inline void parse_ref_line(char **line, int32_t *ids, int32_t *pre, int32_t *post,
                                  ref_line *r)
{
    char *p = *line;
    r->n_ids = parse_ids(&p, ids, REF_CAP);
    r->n_pre = parse_ids(&p, pre, REF_SPECIALS);
    r->n_post = parse_ids(&p, post, REF_SPECIALS);
    r->h_all = strtoull(p, &p, 16);
    r->h_skip = strtoull(p + 1, &p, 16);
    r->roundtrip = p[1] == '1';
    char *eol = strchr(p, '\n');
    *line = eol ? eol + 1 : p + strlen(p);
}

static inline uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

#endif
