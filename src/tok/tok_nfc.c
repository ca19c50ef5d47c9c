/* Unicode NFC (Qwen2/Qwen3's normalizer): canonical decomposition, canonical
 * ordering, canonical composition (UAX #15), over the tables that
 * scripts/gen_tok_unicode.py generates into tok_unicode_data.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

extern const uint32_t tok_nfc_decomp[];
extern const int tok_nfc_n_decomp;
extern const uint32_t tok_nfc_ccc[];
extern const int tok_nfc_n_ccc;

#define COMPOSES (1u << 31)
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7 };
enum { L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

typedef struct {
    uint32_t first, second, composite;
} comp_pair;

static comp_pair *g_comp; /* sorted by (first, second) */
static uint32_t *g_second; /* sorted code points that can compose onto a previous one */
static int g_n_comp, g_n_second;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int cmp_pair(const void *a, const void *b)
{
    const comp_pair *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->second < y->second ? -1 : x->second > y->second;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs once; if allocation fails the tables stay empty and tok_nfc reports it. */
static void nfc_init(void)
{
    int n = 0;
    for (int i = 0; i < tok_nfc_n_decomp; i++)
        n += (tok_nfc_decomp[3 * i] & COMPOSES) != 0;
    comp_pair *c = malloc((size_t)n * sizeof *c);
    uint32_t *s = malloc((size_t)n * sizeof *s);
    if (!c || !s) {
        free(c);
        free(s);
        return;
    }
    int k = 0;
    for (int i = 0; i < tok_nfc_n_decomp; i++) {
        const uint32_t *d = &tok_nfc_decomp[3 * i];
        if (d[0] & COMPOSES) {
            c[k] = (comp_pair){d[1], d[2], d[0] & ~COMPOSES};
            s[k++] = d[2];
        }
    }
    qsort(c, (size_t)n, sizeof *c, cmp_pair);
    qsort(s, (size_t)n, sizeof *s, cmp_u32);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (!u || s[u - 1] != s[i])
            s[u++] = s[i];
    g_comp = c;
    g_second = s;
    g_n_comp = n;
    g_n_second = u;
}

static int ccc(uint32_t cp)
{
    if (cp < 0x300)
        return 0;
    int lo = 0, hi = tok_nfc_n_ccc - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        const uint32_t *r = &tok_nfc_ccc[3 * m];
        if (cp < r[0])
            hi = m - 1;
        else if (cp > r[1])
            lo = m + 1;
        else
            return (int)r[2];
    }
    return 0;
}

static const uint32_t *decomp(uint32_t cp)
{
    int lo = 0, hi = tok_nfc_n_decomp - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        uint32_t c = tok_nfc_decomp[3 * m] & ~COMPOSES;
        if (cp < c)
            hi = m - 1;
        else if (cp > c)
            lo = m + 1;
        else
            return &tok_nfc_decomp[3 * m];
    }
    return NULL;
}

static bool is_second(uint32_t cp)
{
    if ((cp >= V_BASE && cp < V_BASE + V_COUNT) || (cp > T_BASE && cp < T_BASE + T_COUNT))
        return true;
    return bsearch(&cp, g_second, (size_t)g_n_second, sizeof cp, cmp_u32) != NULL;
}

static int64_t compose(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    comp_pair key = {a, b, 0};
    const comp_pair *p = bsearch(&key, g_comp, (size_t)g_n_comp, sizeof key, cmp_pair);
    return p ? (int64_t)p->composite : -1;
}

bool tok_nfc_quick_yes(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    bool init = false;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0xCC) { /* below U+0300 nothing decomposes, reorders or composes */
            i += (size_t)tok_utf8_len(s[i]);
            continue;
        }
        if (!init) {
            pthread_once(&g_once, nfc_init);
            init = true;
        }
        int l;
        uint32_t cp = tok_utf8_decode(s + i, &l);
        i += (size_t)l;
        if (cp >= 0x4E00 && cp <= 0x9FFF) /* CJK ideographs: stable */
            continue;
        if (ccc(cp) || decomp(cp) || is_second(cp))
            return false;
    }
    return true;
}

static gllm_status push_cp(uint32_t **v, size_t *n, size_t *cap, uint32_t cp)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        uint32_t *p = realloc(*v, c * sizeof *p);
        if (!p)
            return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory in NFC normalization");
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = cp;
    return GLLM_OK;
}

static gllm_status decompose(uint32_t cp, uint32_t **v, size_t *n, size_t *cap)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        GLLM_TRY(push_cp(v, n, cap, L_BASE + s / N_COUNT));
        GLLM_TRY(push_cp(v, n, cap, V_BASE + (s % N_COUNT) / T_COUNT));
        if (s % T_COUNT)
            GLLM_TRY(push_cp(v, n, cap, T_BASE + s % T_COUNT));
        return GLLM_OK;
    }
    const uint32_t *d = cp >= 0xC0 ? decomp(cp) : NULL;
    if (!d)
        return push_cp(v, n, cap, cp);
    GLLM_TRY(decompose(d[1], v, n, cap));
    return d[2] ? decompose(d[2], v, n, cap) : GLLM_OK;
}

static gllm_status nfc_full(const char *text, size_t len, tok_str *out)
{
    uint32_t *v = NULL;
    size_t n = 0, cap = 0;
    gllm_status st = GLLM_OK;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; st == GLLM_OK && i < len;) {
        int l;
        uint32_t cp = tok_utf8_decode(s + i, &l);
        i += (size_t)l;
        st = decompose(cp, &v, &n, &cap);
    }
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; st == GLLM_OK && i < n; i++) {
        int c = ccc(v[i]);
        if (!c)
            continue;
        uint32_t x = v[i];
        size_t j = i;
        while (j > 0 && ccc(v[j - 1]) > c) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    /* canonical composition */
    size_t k = 0;
    long starter = -1;
    int last = -1; /* class of the last character kept after the starter, -1 if none */
    for (size_t i = 0; st == GLLM_OK && i < n; i++) {
        uint32_t c = v[i];
        int cc = ccc(c);
        if (starter >= 0 && (last == -1 || (last != 0 && last < cc))) {
            int64_t m = compose(v[starter], c);
            if (m >= 0) {
                v[starter] = (uint32_t)m;
                continue;
            }
        }
        if (cc == 0) {
            starter = (long)k;
            last = -1;
        } else {
            last = cc;
        }
        v[k++] = c;
    }
    for (size_t i = 0; st == GLLM_OK && i < k; i++) {
        char u[4];
        st = tok_str_append(out, u, (size_t)tok_utf8_encode(v[i], u));
    }
    free(v);
    return st;
}

/* NFC is concatenative across a starter that cannot compose with what
 * precedes it (class 0, never a composition's second part): nothing reorders
 * or composes across it. So only the stretches between such boundaries that
 * hold a character needing work go through nfc_full; the rest is copied. */
gllm_status tok_nfc(const char *text, size_t len, tok_str *out)
{
    pthread_once(&g_once, nfc_init);
    if (!g_comp)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for NFC tables");
    const unsigned char *s = (const unsigned char *)text;
    size_t seg = 0;
    bool dirty = false;
    out->n = 0;
    GLLM_TRY(tok_str_append(out, "", 0));
    for (size_t i = 0; i < len;) {
        int l = tok_utf8_len(s[i]);
        bool boundary = true, work = false;
        if (s[i] >= 0xCC) {
            uint32_t cp = tok_utf8_decode(s + i, &l);
            boundary = !ccc(cp) && !is_second(cp);
            work = !boundary || decomp(cp) != NULL;
        }
        if (boundary && i > seg) {
            GLLM_TRY(dirty ? nfc_full(text + seg, i - seg, out)
                           : tok_str_append(out, text + seg, i - seg));
            seg = i;
            dirty = false;
        }
        dirty |= work;
        i += (size_t)l;
    }
    if (len > seg)
        GLLM_TRY(dirty ? nfc_full(text + seg, len - seg, out)
                       : tok_str_append(out, text + seg, len - seg));
    return GLLM_OK;
}
