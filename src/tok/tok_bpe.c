/* Vocabulary and merge hash tables, the BPE merge loop, and the per-thread
 * scratch (word cache, symbol/heap buffers, regex match data) that keeps
 * gllm_tok_encode thread-safe on a const tokenizer without locks. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ------------------------------------------------------------ string -> id */
static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

gllm_status tok_strmap_build(tok_strmap *m, char **strs, const uint32_t *lens, int n,
                             const unsigned char *skip)
{
    uint32_t cap = pow2_at_least((size_t)n * 2 + 1);
    m->slot = calloc(cap, sizeof *m->slot);
    if (!m->slot)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for a %u-slot vocab table", cap);
    m->mask = cap - 1;
    for (int id = 0; id < n; id++) {
        if (!strs[id] || (skip && skip[id]))
            continue;
        uint32_t h = (uint32_t)tok_hash(strs[id], lens[id]) & m->mask;
        while (m->slot[h]) {
            uint32_t o = m->slot[h] - 1;
            if (lens[o] == lens[id] && !memcmp(strs[o], strs[id], lens[id]))
                break; /* duplicate string: the first id wins */
            h = (h + 1) & m->mask;
        }
        if (!m->slot[h])
            m->slot[h] = (uint32_t)id + 1;
    }
    return GLLM_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, char *const *strs, const uint32_t *lens,
                       const char *s, size_t n)
{
    uint32_t h = (uint32_t)tok_hash(s, n) & m->mask;
    while (m->slot[h]) {
        uint32_t id = m->slot[h] - 1;
        if (lens[id] == n && !memcmp(strs[id], s, n))
            return (int32_t)id;
        h = (h + 1) & m->mask;
    }
    return -1;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slot);
    m->slot = NULL;
}

/* ------------------------------------------------------------ pair -> merge */
static inline uint32_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

gllm_status tok_pairmap_init(tok_pairmap *m, size_t n)
{
    uint32_t cap = pow2_at_least(n * 2 + 1);
    m->key = calloc(cap, sizeof *m->key);
    m->rank = malloc(cap * sizeof *m->rank);
    m->merged = malloc(cap * sizeof *m->merged);
    m->mask = cap - 1;
    if (!m->key || !m->rank || !m->merged)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for %zu merges", n);
    return GLLM_OK;
}

void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged)
{
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t h = pair_hash(k) & m->mask;
    while (m->key[h] && m->key[h] != k)
        h = (h + 1) & m->mask;
    if (m->key[h])
        return; /* a repeated merge keeps its first (best) rank, as HF does */
    m->key[h] = k;
    m->rank[h] = rank;
    m->merged[h] = merged;
}

bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged)
{
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t h = pair_hash(k) & m->mask;
    while (m->key[h]) {
        if (m->key[h] == k) {
            *rank = m->rank[h];
            *merged = m->merged[h];
            return true;
        }
        h = (h + 1) & m->mask;
    }
    return false;
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->key);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ per-thread state */
/* Words up to CACHE_KEY_MAX bytes are cached; the cache is cleared when it
 * fills, which bounds its memory at about (slots * 32 + arenas) bytes. */
#define CACHE_SLOTS (1u << 16)
#define CACHE_KEY_MAX 64
#define CACHE_KEY_ARENA (CACHE_SLOTS / 2 * 16)
#define CACHE_VAL_ARENA (CACHE_SLOTS / 2 * 4)

typedef struct {
    uint64_t hash; /* 0 = empty */
    uint32_t koff, voff;
    uint16_t klen, vlen;
} cache_slot;

typedef struct {
    int32_t id, prev, next;
} sym;

typedef struct {
    uint32_t rank;
    int32_t pos, merged;
} cand;

typedef struct {
    uint64_t serial;
    cache_slot *slot;
    char *keys;
    int32_t *vals;
    size_t n_used, key_used, val_used;
    sym *syms;
    cand *heap;
    size_t sym_cap, heap_cap;
    pcre2_match_data *md;
} tok_tls;

static _Thread_local tok_tls *g_tls;

static void tls_free(tok_tls *t)
{
    if (!t)
        return;
    free(t->slot);
    free(t->keys);
    free(t->vals);
    free(t->syms);
    free(t->heap);
    if (t->md)
        pcre2_match_data_free(t->md);
    free(t);
}

static tok_tls *tls_get(const gllm_tokenizer *tok)
{
    tok_tls *t = g_tls;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return NULL;
        t->slot = calloc(CACHE_SLOTS, sizeof *t->slot);
        t->keys = malloc(CACHE_KEY_ARENA);
        t->vals = malloc(CACHE_VAL_ARENA * sizeof *t->vals);
        t->md = pcre2_match_data_create(16, NULL);
        if (!t->slot || !t->keys || !t->vals || !t->md) {
            tls_free(t);
            return NULL;
        }
        g_tls = t;
    }
    if (tok && t->serial != tok->serial) {
        memset(t->slot, 0, CACHE_SLOTS * sizeof *t->slot);
        t->n_used = t->key_used = t->val_used = 0;
        t->serial = tok->serial;
    }
    return t;
}

pcre2_match_data *tok_thread_match_data(void)
{
    tok_tls *t = tls_get(NULL);
    return t ? t->md : NULL;
}

void tok_thread_release(const gllm_tokenizer *tok)
{
    (void)tok;
    tls_free(g_tls);
    g_tls = NULL;
}

static const int32_t *cache_get(tok_tls *t, uint64_t h, const char *w, size_t n, size_t *nv)
{
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    while (t->slot[i].hash) {
        cache_slot *s = &t->slot[i];
        if (s->hash == h && s->klen == n && !memcmp(t->keys + s->koff, w, n)) {
            *nv = s->vlen;
            return t->vals + s->voff;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    return NULL;
}

static void cache_put(tok_tls *t, uint64_t h, const char *w, size_t n, const int32_t *v, size_t nv)
{
    if (t->n_used >= CACHE_SLOTS / 2 || t->key_used + n > CACHE_KEY_ARENA ||
        t->val_used + nv > CACHE_VAL_ARENA) {
        memset(t->slot, 0, CACHE_SLOTS * sizeof *t->slot);
        t->n_used = t->key_used = t->val_used = 0;
    }
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    while (t->slot[i].hash)
        i = (i + 1) & (CACHE_SLOTS - 1);
    cache_slot *s = &t->slot[i];
    s->hash = h;
    s->koff = (uint32_t)t->key_used;
    s->klen = (uint16_t)n;
    s->voff = (uint32_t)t->val_used;
    s->vlen = (uint16_t)nv;
    memcpy(t->keys + t->key_used, w, n);
    memcpy(t->vals + t->val_used, v, nv * sizeof *v);
    t->key_used += n;
    t->val_used += nv;
    t->n_used++;
}

/* ------------------------------------------------------------ BPE */
static inline bool cand_less(const cand *a, const cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(cand *h, size_t *n, cand c)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n)
{
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && cand_less(&h[r], best))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n)
        h[i] = last;
    return top;
}

static gllm_status grow(tok_tls *t, size_t n)
{
    if (n <= t->sym_cap)
        return GLLM_OK;
    size_t cap = t->sym_cap ? t->sym_cap : 256;
    while (cap < n)
        cap *= 2;
    sym *s = realloc(t->syms, cap * sizeof *s);
    if (s)
        t->syms = s;
    cand *h = realloc(t->heap, 2 * cap * sizeof *h);
    if (h)
        t->heap = h;
    if (!s || !h)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for a %zu-symbol word", n);
    t->sym_cap = cap;
    t->heap_cap = 2 * cap;
    return GLLM_OK;
}

/* Initial symbols: bytes (byte-level) or characters with byte fallback and
 * unknown-token fusion (SentencePiece-style), as HF's BPE::merge_word. */
static gllm_status initial_symbols(const gllm_tokenizer *tok, tok_tls *t, const char *w,
                                   size_t n, size_t *n_sym)
{
    size_t k = 0;
    bool prev_unk = false;
    for (size_t i = 0; i < n;) {
        size_t cl = tok->byte_level ? 1 : (size_t)tok_utf8_len((unsigned char)w[i]);
        if (i + cl > n)
            cl = n - i;
        int32_t id = tok->byte_level
                         ? tok->byte_id[(unsigned char)w[i]]
                         : tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, w + i, cl);
        if (id >= 0) {
            t->syms[k++].id = id;
            prev_unk = false;
        } else {
            bool all = tok->byte_fallback;
            for (size_t b = 0; all && b < cl; b++)
                all = tok->byte_fallback_id[(unsigned char)w[i + b]] >= 0;
            if (all) {
                for (size_t b = 0; b < cl; b++)
                    t->syms[k++].id = tok->byte_fallback_id[(unsigned char)w[i + b]];
                prev_unk = false;
            } else if (tok->unk_id >= 0) {
                if (!(tok->fuse_unk && prev_unk))
                    t->syms[k++].id = tok->unk_id;
                prev_unk = true;
            } else {
                return gllm_fail(GLLM_ERR_INVALID,
                                 "%s: text has a character with no token and the model has no "
                                 "unk_token or byte fallback",
                                 tok->json_path);
            }
        }
        i += cl;
    }
    *n_sym = k;
    return GLLM_OK;
}

static void push_pair(const gllm_tokenizer *tok, tok_tls *t, size_t *nh, int32_t l)
{
    int32_t r = t->syms[l].next;
    if (r < 0)
        return;
    cand c;
    if (tok_pairmap_get(&tok->merges, t->syms[l].id, t->syms[r].id, &c.rank, &c.merged)) {
        c.pos = l;
        heap_push(t->heap, nh, c);
    }
}

static gllm_status bpe_merge(const gllm_tokenizer *tok, tok_tls *t, const char *w, size_t n,
                             tok_ids *out)
{
    GLLM_TRY(grow(t, n + 4));
    size_t ns = 0;
    GLLM_TRY(initial_symbols(tok, t, w, n, &ns));
    sym *s = t->syms;
    size_t nh = 0;
    for (size_t i = 0; i < ns; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < ns; i++)
        push_pair(tok, t, &nh, (int32_t)i);
    while (nh) {
        cand c = heap_pop(t->heap, &nh);
        int32_t l = c.pos, r = s[l].next;
        if (s[l].id < 0 || r < 0)
            continue;
        uint32_t rank;
        int32_t merged;
        /* stale: one side was merged since this candidate was pushed */
        if (!tok_pairmap_get(&tok->merges, s[l].id, s[r].id, &rank, &merged) || merged != c.merged)
            continue;
        s[l].id = merged;
        s[l].next = s[r].next;
        if (s[r].next >= 0)
            s[s[r].next].prev = l;
        s[r].id = -1;
        if (s[l].prev >= 0)
            push_pair(tok, t, &nh, s[l].prev);
        push_pair(tok, t, &nh, l);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = s[i].next)
        GLLM_TRY(tok_ids_push(out, s[i].id));
    return GLLM_OK;
}

gllm_status tok_bpe_word(const gllm_tokenizer *tok, const char *w, size_t n, tok_ids *out)
{
    if (!n)
        return GLLM_OK;
    tok_tls *t = tls_get(tok);
    if (!t)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for per-thread scratch");
    uint64_t h = 0;
    if (n <= CACHE_KEY_MAX) {
        h = tok_hash(w, n) | 1;
        size_t nv;
        const int32_t *v = cache_get(t, h, w, n, &nv);
        if (v)
            return tok_ids_append(out, v, nv);
    }
    size_t start = out->n;
    int32_t whole = -1;
    if (tok->ignore_merges)
        whole = tok->byte_level ? tok_strmap_get(&tok->raw_vocab, tok->raw_str, tok->raw_len, w, n)
                                : tok_strmap_get(&tok->vocab, tok->tok_str, tok->tok_len, w, n);
    if (whole >= 0)
        GLLM_TRY(tok_ids_push(out, whole));
    else
        GLLM_TRY(bpe_merge(tok, t, w, n, out));
    if (n <= CACHE_KEY_MAX && out->n - start <= 0xFFFF)
        cache_put(t, h, w, n, out->v + start, out->n - start);
    return GLLM_OK;
}
