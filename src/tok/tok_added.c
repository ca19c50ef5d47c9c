/* Trie over added-token contents: leftmost-longest matching, as HF's
 * AddedVocabulary does with Aho-Corasick (MatchKind::LeftmostLongest).
 * Only bytes that occur in some added token get a column, which keeps the
 * node table small (Llama-3 has 256 long special tokens). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

gllm_status tok_trie_build(tok_trie *t, const tok_added *added, int n, bool normalized)
{
    memset(t, 0, sizeof *t);
    t->empty = true;
    t->width = 1;
    size_t total = 1;
    for (int i = 0; i < n; i++) {
        if (added[i].normalized != normalized || !added[i].len)
            continue;
        t->empty = false;
        total += added[i].len;
        for (size_t k = 0; k < added[i].len; k++) {
            unsigned char b = (unsigned char)added[i].content[k];
            if (!t->cls[b])
                t->cls[b] = (int16_t)t->width++;
        }
    }
    size_t w = (size_t)t->width;
    t->next = calloc(total * w, sizeof *t->next);
    if (!t->next)
        return gllm_fail(GLLM_ERR_OOM, "tokenizer: out of memory for the added-token trie");
    t->n_nodes = 1;
    for (int i = 0; i < n; i++) {
        if (added[i].normalized != normalized || !added[i].len)
            continue;
        int32_t node = 0;
        for (size_t k = 0; k < added[i].len; k++) {
            int32_t *slot = &t->next[(size_t)node * w + t->cls[(unsigned char)added[i].content[k]]];
            if (!*slot)
                *slot = t->n_nodes++;
            node = *slot;
        }
        if (!t->next[(size_t)node * w])
            t->next[(size_t)node * w] = i + 1; /* on duplicates the first listed wins */
    }
    return GLLM_OK;
}

void tok_trie_free(tok_trie *t)
{
    free(t->next);
    t->next = NULL;
}

int tok_trie_find(const tok_trie *t, const char *text, size_t len, size_t from, size_t *ms,
                  size_t *me)
{
    if (t->empty)
        return -1;
    const size_t w = (size_t)t->width;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = from; i < len; i++) {
        int col = t->cls[s[i]];
        if (!col || !t->next[col])
            continue;
        int best = -1;
        size_t best_end = 0;
        int32_t node = 0;
        for (size_t k = i; k < len; k++) {
            col = t->cls[s[k]];
            if (!col || !(node = t->next[(size_t)node * w + col]))
                break;
            int32_t a = t->next[(size_t)node * w];
            if (a) {
                best = a - 1;
                best_end = k + 1;
            }
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            return best;
        }
    }
    return -1;
}
