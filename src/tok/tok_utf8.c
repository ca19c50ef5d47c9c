/* UTF-8 decoding and repair, the GPT-2 ByteLevel table, growable buffers. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

gllm_status tok_ids_push(tok_ids *a, int32_t id) { return tok_ids_append(a, &id, 1); }

gllm_status tok_ids_append(tok_ids *a, const int32_t *v, size_t n)
{
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap < a->n + n)
            cap *= 2;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p)
            return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for %zu token ids", cap);
        a->v = p;
        a->cap = cap;
    }
    if (n)
        memcpy(a->v + a->n, v, n * sizeof *v);
    a->n += n;
    return GLLM_OK;
}

gllm_status tok_str_append(tok_str *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for a %zu-byte string", cap);
        b->s = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return GLLM_OK;
}

uint32_t tok_utf8_decode(const unsigned char *s, int *n)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *n = 1;
        return c;
    }
    if (c < 0xE0) {
        *n = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (c < 0xF0) {
        *n = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *n = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

int tok_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid sequence at s (0 if invalid); on invalid, *bad is the
 * length of the maximal subpart to replace (Unicode 3.9, Table 3-7). */
static size_t utf8_step(const unsigned char *s, size_t left, size_t *bad)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= left || s[k] < lo || s[k] > hi) {
            *bad = (size_t)k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return (size_t)need + 1;
}

bool tok_utf8_valid(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, bad;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_step(s + i, len - i, &bad);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

gllm_status tok_utf8_sanitize(const char *text, size_t len, tok_str *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, run = 0, bad;
    out->n = 0;
    GLLM_TRY(tok_str_append(out, "", 0));
    while (i < len) {
        size_t k = s[i] < 0x80 ? 1 : utf8_step(s + i, len - i, &bad);
        if (k) {
            i += k;
            continue;
        }
        GLLM_TRY(tok_str_append(out, text + run, i - run));
        GLLM_TRY(tok_str_append(out, "\xEF\xBF\xBD", 3));
        i += bad;
        run = i;
    }
    return tok_str_append(out, text + run, len - run);
}

/* ByteLevel maps every byte to a printable code point: printable Latin-1 bytes
 * map to themselves, the other 68 to U+0100.. in byte order (GPT-2's
 * bytes_to_unicode). */
uint16_t tok_byte_to_cp[256];
static int16_t cp_to_byte[324];

void tok_bytelevel_init(void)
{
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        tok_byte_to_cp[b] = (uint16_t)(printable ? b : 256 + extra++);
    }
    for (int i = 0; i < 324; i++)
        cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++)
        cp_to_byte[tok_byte_to_cp[b]] = (int16_t)b;
}

int tok_cp_to_byte(uint32_t cp) { return cp < 324 ? cp_to_byte[cp] : -1; }
