/* The batched inference engine (include/gllm/infer.h): a request queue, a
 * scheduler with a token budget per step, chunked prefill, continuous
 * batching, a paged KV cache with prefix sharing, preemption and recompute.
 *
 * Sequences. Every sample of a generation request and every candidate of a
 * scoring request is one sequence: its tokens (prompt, then generated ids or
 * the candidate's ids), how many of them are in the cache (n_computed), and
 * the cache blocks holding them. Each step computes, for each scheduled
 * sequence, the next piece of its uncomputed tokens (a prefill chunk, or the
 * one new token of a decode) and, when it has caught up, samples its next id
 * from the last row's logits (or, for a candidate, scores its ids).
 *
 * Sharing. Sample 0 (candidate 0) of a request leads: the others wait until it
 * has computed the prompt's full blocks, then take references to them and
 * compute only the prompt's tail (< one block) themselves. With prefix
 * sharing on, every computed full block is also entered in a table keyed by a
 * hash of its tokens chained with its prefix's hash (tokens and parent checked
 * on a hit), so later requests with the same prefix take references instead of
 * computing it; a sequence whose next block is being computed by a running one
 * waits a step for it. Blocks nobody references stay cached and are evicted
 * least recently released first.
 *
 * Scheduling. Each step: running sequences in admission order take up to
 * prefill_chunk tokens each from the budget; when the cache is full the newest
 * running sequence is preempted (its blocks released, recomputed later from
 * its tokens, prefix cache included); then waiting sequences are admitted in
 * order while budget, sequence slots and blocks last. A request that cannot
 * fit the whole cache gets an error result when added, so the queue always
 * drains (the oldest running sequence can always grow by preempting the rest).
 *
 * Batch invariance. Everything a sequence sees is computed per token row in a
 * fixed order (gllm_model_step, sample_rows), its seeds depend only on (seed,
 * sample index, token index), and a recomputed or shared block holds the very
 * bits a fresh computation would: so results do not depend on the batch, on
 * prefix sharing, on preemption or on the chunk size. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/backend_cpu.h"
#include "gllm/infer.h"
#include "gllm/rng.h"
#include "gllm/step.h"

#define MAX_TOP 20
#define GLLM_CPU_BLOCK_SIZE 4 /* default tokens per KV block on the CPU (16 on a device) */

/* ------------------------------------------------------------------ utils */

/* one SplitMix64 output from state z (the core's generator) */
static uint64_t mix64(uint64_t z) { return gllm_splitmix64(&z); }

/* the seed of generated token t of sample i */
static uint64_t token_seed(uint64_t seed, int sample, int t)
{
    return mix64(mix64(mix64(seed) ^ (uint64_t)(uint32_t)sample) ^ (uint64_t)(uint32_t)t);
}

static uint64_t block_hash(uint64_t parent, const int32_t *tok, int n)
{
    uint64_t h = mix64(parent ^ 0x51ED270B27B1C3A5ull);
    for (int i = 0; i < n; i++)
        h = mix64(h ^ (uint64_t)(uint32_t)tok[i]);
    return h;
}

static void *grow(void *p, int *cap, int need, size_t elem)
{
    if (need < 1)
        need = 1;
    if (p && need <= *cap)
        return p;
    int c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(p, (size_t)c * elem);
    if (!q)
        return NULL;
    *cap = c;
    return q;
}
#define GROW(arr, cap, need) \
    (((arr) = grow((arr), &(cap), (need), sizeof *(arr))) != NULL ? GLLM_OK : \
     gllm_fail(GLLM_ERR_OOM, "engine: out of memory"))

/* ------------------------------------------------------------------ state */

typedef struct req req;

enum { SEQ_WAITING, SEQ_RUNNING, SEQ_DONE };

typedef struct seq {
    req *r;
    int index;               /* sample or candidate index */
    bool cand;               /* scoring candidate */
    int32_t *tok;
    int n_tok, cap_tok;
    int n_target;            /* tokens to compute: n_tok (generation), n_prompt + len - 1 */
    int n_computed;
    int *blocks;
    int n_blocks, cap_blocks;
    uint64_t *hash;          /* chained hashes of full blocks, [n_hash] computed so far */
    int n_hash, cap_hash;
    int n_registered;        /* leading full blocks entered in the prefix table or found */
    long order;              /* admission order (larger = newer) */
    int state;
    bool admitted_once;
    /* generation output */
    int32_t *out;
    float *lp;
    gllm_token_logprob *top;
    int n_out, cap_out, cap_lp, cap_top;
    gllm_finish finish;
    char *text;
} seq;

struct req {
    uint64_t tag;
    gllm_request q;          /* pointers below own copies */
    int32_t *prompt, *stop_ids;
    char **stop;
    int32_t **cands;
    int *cand_len;
    seq *seqs;               /* [n_seqs] */
    int n_seqs, n_left;
    bool counted;            /* prompt tokens entered in the stats */
    int n_cached;            /* prompt tokens sample 0 found cached at its first admission */
};

typedef struct blk {
    int ref;
    bool hashed;
    uint64_t hash, parent;
    int prev, next;          /* LRU list of unreferenced hashed blocks */
    int hnext;               /* hash chain */
} blk;

struct gllm_engine {
    gllm_model *m;
    gllm_backend *be;
    gllm_engine_options o;
    int V, max_pos, eos, eos2;
    /* cache */
    gllm_kv_pages *kv;
    gllm_step_ws *ws;
    int nb, bs;
    blk *b;
    int32_t *btok;           /* [nb * bs] tokens of hashed blocks */
    int *free_stack, n_free;
    int lru_head, lru_tail, n_lru;
    int *bucket;
    int n_bucket;
    /* queues */
    seq **waiting;
    int n_waiting, cap_waiting;
    seq **running;
    int n_running, cap_running;
    gllm_result *done;
    int n_done, cap_done, done_head;
    req **reqs;              /* live requests */
    int n_reqs, cap_reqs;
    long next_order;
    /* step staging (host) */
    int32_t *ids, *pos, *slots, *qs, *table, *rows;
    int cap_ids, cap_pos, cap_slots, cap_qs, cap_table, cap_rows;
    seq **sched;
    int *sched_q;
    int cap_sched, cap_sched_q;
    /* sampling rows: which sequence, and scoring rows */
    seq **srow;
    int cap_srow;
    gllm_sample_params *hp;
    int cap_hp;
    int32_t *pen_off, *pen_ids;
    int cap_pen_off, cap_pen_ids;
    seq **xrow;
    int *xidx, *xtarget;
    int cap_xrow, cap_xidx, cap_xtarget;
    float *hmask;
    int cap_hmask;
    int32_t *h_out_ids;
    float *h_out_lp, *h_top_lp;
    int32_t *h_top_ids;
    int cap_hoi, cap_hol, cap_htl, cap_hti;
    /* device buffers for sampling and scoring */
    void *dev;
    size_t dev_bytes;
    gllm_engine_stats st;
};

/* ------------------------------------------------------------------ blocks */

static void lru_remove(gllm_engine *e, int i)
{
    blk *b = &e->b[i];
    if (b->prev >= 0)
        e->b[b->prev].next = b->next;
    else
        e->lru_head = b->next;
    if (b->next >= 0)
        e->b[b->next].prev = b->prev;
    else
        e->lru_tail = b->prev;
    b->prev = b->next = -1;
    e->n_lru--;
}

static void lru_push(gllm_engine *e, int i)
{
    blk *b = &e->b[i];
    b->prev = e->lru_tail;
    b->next = -1;
    if (e->lru_tail >= 0)
        e->b[e->lru_tail].next = i;
    else
        e->lru_head = i;
    e->lru_tail = i;
    e->n_lru++;
}

static void hash_remove(gllm_engine *e, int i)
{
    int *p = &e->bucket[e->b[i].hash % (uint64_t)e->n_bucket];
    while (*p >= 0 && *p != i)
        p = &e->b[*p].hnext;
    if (*p == i)
        *p = e->b[i].hnext;
    e->b[i].hashed = false;
    e->b[i].hnext = -1;
}

static int hash_find(gllm_engine *e, uint64_t h, uint64_t parent, const int32_t *tok)
{
    for (int i = e->bucket[h % (uint64_t)e->n_bucket]; i >= 0; i = e->b[i].hnext)
        if (e->b[i].hash == h && e->b[i].parent == parent &&
            memcmp(e->btok + (size_t)i * e->bs, tok, (size_t)e->bs * sizeof *tok) == 0)
            return i;
    return -1;
}

/* a block with no content for a sequence: a free one, else evict the LRU cached one */
static int block_take(gllm_engine *e)
{
    int i;
    if (e->n_free > 0) {
        i = e->free_stack[--e->n_free];
    } else if (e->lru_head >= 0) {
        i = e->lru_head;
        lru_remove(e, i);
        hash_remove(e, i);
    } else {
        return -1;
    }
    e->b[i].ref = 1;
    return i;
}

static void block_ref(gllm_engine *e, int i)
{
    if (e->b[i].ref++ == 0 && e->b[i].hashed)
        lru_remove(e, i);
}

static void block_unref(gllm_engine *e, int i)
{
    if (--e->b[i].ref > 0)
        return;
    if (e->b[i].hashed)
        lru_push(e, i);
    else
        e->free_stack[e->n_free++] = i;
}

static void seq_release(gllm_engine *e, seq *s)
{
    for (int i = 0; i < s->n_blocks; i++)
        block_unref(e, s->blocks[i]);
    s->n_blocks = 0;
    s->n_computed = 0;
    s->n_registered = 0;
}

/* hashes of s's full blocks up to index k (exclusive), from its tokens */
static gllm_status seq_hashes(gllm_engine *e, seq *s, int k)
{
    GLLM_TRY(GROW(s->hash, s->cap_hash, k));
    for (int i = s->n_hash; i < k; i++)
        s->hash[i] = block_hash(i ? s->hash[i - 1] : 0, s->tok + (size_t)i * e->bs, e->bs);
    if (k > s->n_hash)
        s->n_hash = k;
    return GLLM_OK;
}

/* enter s's computed full blocks in the prefix table */
static gllm_status seq_register(gllm_engine *e, seq *s)
{
    const int full = s->n_computed / e->bs;
    if (!e->o.prefix_sharing || full <= s->n_registered)
        return GLLM_OK;
    GLLM_TRY(seq_hashes(e, s, full));
    for (int i = s->n_registered; i < full; i++) {
        const int bi = s->blocks[i];
        const uint64_t parent = i ? s->hash[i - 1] : 0;
        if (!e->b[bi].hashed &&
            hash_find(e, s->hash[i], parent, s->tok + (size_t)i * e->bs) < 0) {
            blk *b = &e->b[bi];
            b->hashed = true;
            b->hash = s->hash[i];
            b->parent = parent;
            memcpy(e->btok + (size_t)bi * e->bs, s->tok + (size_t)i * e->bs,
                   (size_t)e->bs * sizeof(int32_t));
            int *head = &e->bucket[b->hash % (uint64_t)e->n_bucket];
            b->hnext = *head;
            *head = bi;
        }
    }
    s->n_registered = full;
    return GLLM_OK;
}

/* give s blocks for its first `upto` tokens; false when the cache is out of blocks */
static bool seq_grow_blocks(gllm_engine *e, seq *s, int upto)
{
    const int need = (upto + e->bs - 1) / e->bs;
    if (need > s->cap_blocks && GROW(s->blocks, s->cap_blocks, need) != GLLM_OK)
        return false;
    while (s->n_blocks < need) {
        const int i = block_take(e);
        if (i < 0)
            return false;
        s->blocks[s->n_blocks++] = i;
    }
    return true;
}

/* ------------------------------------------------------------------ requests */

gllm_sampling gllm_sampling_default(void)
{
    return (gllm_sampling){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                           .repetition_penalty = 1.0f, .seed = 0};
}

gllm_engine_options gllm_engine_options_default(void)
{
    return (gllm_engine_options){.kv_bytes = 0, .gpu_memory_utilization = 0.9f,
                                 .block_size = 0, .max_batch_tokens = 2048, .max_seqs = 256,
                                 .prefill_chunk = 0, .prefix_sharing = true, .tok = NULL};
}

void gllm_result_free(gllm_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_samples; i++) {
        free(r->samples[i].ids);
        free(r->samples[i].text);
        free(r->samples[i].logprobs);
        free(r->samples[i].top);
    }
    free(r->samples);
    for (int i = 0; i < r->n_candidates; i++)
        free(r->candidate_token_logprobs ? r->candidate_token_logprobs[i] : NULL);
    free(r->candidate_token_logprobs);
    free(r->candidate_logprob);
    free(r->candidate_len);
    memset(r, 0, sizeof *r);
}

static void req_free(req *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_seqs; i++) {
        seq *s = &r->seqs[i];
        free(s->tok);
        free(s->blocks);
        free(s->hash);
        free(s->out);
        free(s->lp);
        free(s->top);
        free(s->text);
    }
    free(r->seqs);
    free(r->prompt);
    free(r->stop_ids);
    for (int i = 0; r->stop && i < r->q.n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    for (int i = 0; r->cands && i < r->q.n_candidates; i++)
        free(r->cands[i]);
    free(r->cands);
    free(r->cand_len);
    free(r);
}

static gllm_status push_result(gllm_engine *e, gllm_result *res)
{
    if (e->done_head > 0 && e->done_head == e->n_done) {
        e->done_head = e->n_done = 0;
    }
    GLLM_TRY(GROW(e->done, e->cap_done, e->n_done + 1));
    e->done[e->n_done++] = *res;
    return GLLM_OK;
}

static gllm_status error_result(gllm_engine *e, uint64_t tag, int n_prompt, gllm_status code,
                                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static gllm_status error_result(gllm_engine *e, uint64_t tag, int n_prompt, gllm_status code,
                                const char *fmt, ...)
{
    gllm_result res;
    memset(&res, 0, sizeof res);
    res.tag = tag;
    res.status = code;
    res.n_prompt = n_prompt;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.error, sizeof res.error, fmt, ap);
    va_end(ap);
    return push_result(e, &res);
}

static void *dup_mem(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

/* Why a request cannot run, or NULL. */
static const char *validate(gllm_engine *e, const gllm_request *q, char *buf, size_t n)
{
    const gllm_sampling *sp = &q->sampling;
    if (!q->prompt || q->n_prompt < 1)
        return "the prompt is empty";
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= e->V) {
            snprintf(buf, n, "prompt token %d is id %d, outside the vocabulary [0, %d)", i,
                     q->prompt[i], e->V);
            return buf;
        }
    const int bs = e->bs;
    if (q->n_candidates > 0) {
        if (!q->candidates || !q->candidate_len)
            return "scoring: candidates missing";
        for (int c = 0; c < q->n_candidates; c++) {
            if (q->candidate_len[c] < 1 || !q->candidates[c]) {
                snprintf(buf, n, "candidate %d is empty", c);
                return buf;
            }
            for (int i = 0; i < q->candidate_len[c]; i++)
                if (q->candidates[c][i] < 0 || q->candidates[c][i] >= e->V) {
                    snprintf(buf, n, "candidate %d token %d is id %d, outside the vocabulary "
                             "[0, %d)", c, i, q->candidates[c][i], e->V);
                    return buf;
                }
            const int len = q->n_prompt + q->candidate_len[c] - 1;
            if (len > e->max_pos) {
                snprintf(buf, n, "prompt (%d) + candidate %d (%d tokens) exceed the context of "
                         "%d", q->n_prompt, c, q->candidate_len[c], e->max_pos);
                return buf;
            }
            if ((len + bs - 1) / bs > e->nb) {
                snprintf(buf, n, "prompt + candidate %d need %d KV blocks, the cache has %d",
                         c, (len + bs - 1) / bs, e->nb);
                return buf;
            }
        }
        return NULL;
    }
    if (q->max_tokens < 0 || q->n < 1) {
        snprintf(buf, n, "max_tokens %d must be >= 0 and n %d >= 1", q->max_tokens, q->n);
        return buf;
    }
    if ((long)q->n_prompt + q->max_tokens > e->max_pos) {
        snprintf(buf, n, "prompt (%d tokens) + max_tokens (%d) exceed the model's context of %d",
                 q->n_prompt, q->max_tokens, e->max_pos);
        return buf;
    }
    const long blocks = ((long)q->n_prompt + q->max_tokens + bs - 1) / bs;
    if (blocks > e->nb) {
        snprintf(buf, n, "prompt + max_tokens need %ld KV blocks of %d tokens, the whole cache "
                 "has %d (raise kv_bytes)", blocks, bs, e->nb);
        return buf;
    }
    if (q->top_logprobs < 0 || q->top_logprobs > MAX_TOP) {
        snprintf(buf, n, "top_logprobs %d outside 0..%d", q->top_logprobs, MAX_TOP);
        return buf;
    }
    if (!(sp->temperature >= 0) || sp->top_k < 0 || !(sp->top_p > 0 && sp->top_p <= 1) ||
        !(sp->min_p >= 0 && sp->min_p <= 1) || !(sp->repetition_penalty > 0)) {
        snprintf(buf, n, "sampling: temperature %g >= 0, top_k %d >= 0, top_p %g in (0, 1], "
                 "min_p %g in [0, 1], repetition_penalty %g > 0 required",
                 (double)sp->temperature, sp->top_k, (double)sp->top_p, (double)sp->min_p,
                 (double)sp->repetition_penalty);
        return buf;
    }
    if (q->n_stop > 0 && !e->o.tok)
        return "stop strings need a tokenizer (engine options.tok)";
    if (q->n_stop < 0 || (q->n_stop > 0 && !q->stop) || q->n_stop_ids < 0 ||
        (q->n_stop_ids > 0 && !q->stop_ids))
        return "stop list missing";
    for (int i = 0; i < q->n_stop; i++)
        if (!q->stop[i] || !q->stop[i][0])
            return "an empty stop string";
    return NULL;
}

static gllm_status seq_init(gllm_engine *e, req *r, seq *s, int index)
{
    (void)e;
    s->r = r;
    s->index = index;
    s->cand = r->q.n_candidates > 0;
    const int extra = s->cand ? r->cand_len[index] : r->q.max_tokens + 1;
    GLLM_TRY(GROW(s->tok, s->cap_tok, r->q.n_prompt + extra));
    memcpy(s->tok, r->prompt, (size_t)r->q.n_prompt * sizeof(int32_t));
    s->n_tok = r->q.n_prompt;
    if (s->cand) {
        memcpy(s->tok + s->n_tok, r->cands[index], (size_t)r->cand_len[index] * sizeof(int32_t));
        s->n_tok += r->cand_len[index];
        s->n_target = s->n_tok - 1;
        s->lp = calloc((size_t)r->cand_len[index], sizeof *s->lp);
        if (!s->lp)
            return gllm_fail(GLLM_ERR_OOM, "engine: out of memory");
    } else {
        s->n_target = s->n_tok;
    }
    s->state = SEQ_WAITING;
    return GLLM_OK;
}

gllm_status gllm_engine_add(gllm_engine *e, const gllm_request *q)
{
    if (!e || !q)
        return gllm_fail(GLLM_ERR_INVALID, "engine_add: NULL argument");
    char buf[200];
    const char *why = validate(e, q, buf, sizeof buf);
    if (why)
        return error_result(e, q->tag, q->n_prompt, GLLM_ERR_INVALID, "%s", why);
    if (q->n_candidates == 0 && q->max_tokens == 0) { /* nothing to generate */
        gllm_result res;
        memset(&res, 0, sizeof res);
        res.tag = q->tag;
        res.n_prompt = q->n_prompt;
        res.n_samples = q->n;
        res.samples = gllm_calloc((size_t)q->n, sizeof *res.samples, "result samples");
        if (!res.samples)
            return GLLM_ERR_OOM;
        for (int i = 0; i < q->n; i++) {
            res.samples[i].finish = GLLM_FINISH_LENGTH;
            res.samples[i].ids = malloc(sizeof(int32_t));
            if (e->o.tok)
                res.samples[i].text = dup_mem("", 1);
        }
        return push_result(e, &res);
    }
    req *r = gllm_calloc(1, sizeof *r, "request");
    if (!r)
        return GLLM_ERR_OOM;
    r->tag = q->tag;
    r->q = *q;
    r->prompt = dup_mem(q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
    bool ok = r->prompt != NULL;
    if (q->n_candidates > 0) {
        r->q.n_stop = r->q.n_stop_ids = 0;
        r->cands = calloc((size_t)q->n_candidates, sizeof *r->cands);
        r->cand_len = dup_mem(q->candidate_len, (size_t)q->n_candidates * sizeof(int));
        ok = ok && r->cands && r->cand_len;
        for (int c = 0; ok && c < q->n_candidates; c++)
            ok = (r->cands[c] = dup_mem(q->candidates[c],
                                        (size_t)q->candidate_len[c] * sizeof(int32_t))) != NULL;
        r->n_seqs = q->n_candidates;
    } else {
        r->q.n_candidates = 0;
        if (q->n_stop_ids > 0)
            ok = ok && (r->stop_ids = dup_mem(q->stop_ids,
                                              (size_t)q->n_stop_ids * sizeof(int32_t)));
        if (q->n_stop > 0) {
            r->stop = calloc((size_t)q->n_stop, sizeof *r->stop);
            ok = ok && r->stop;
            for (int i = 0; ok && i < q->n_stop; i++)
                ok = (r->stop[i] = dup_mem(q->stop[i], strlen(q->stop[i]) + 1)) != NULL;
        }
        r->n_seqs = q->n;
    }
    r->q.prompt = r->prompt;
    r->q.stop_ids = r->stop_ids;
    r->q.stop = (const char *const *)r->stop;
    r->q.candidates = (const int32_t *const *)r->cands;
    r->q.candidate_len = r->cand_len;
    if (ok)
        ok = (r->seqs = calloc((size_t)r->n_seqs, sizeof *r->seqs)) != NULL;
    gllm_status s = ok ? GLLM_OK : gllm_fail(GLLM_ERR_OOM, "engine_add: out of memory");
    for (int i = 0; s == GLLM_OK && i < r->n_seqs; i++)
        s = seq_init(e, r, &r->seqs[i], i);
    if (s == GLLM_OK)
        s = GROW(e->reqs, e->cap_reqs, e->n_reqs + 1);
    if (s == GLLM_OK)
        s = GROW(e->waiting, e->cap_waiting, e->n_waiting + r->n_seqs);
    if (s != GLLM_OK) {
        req_free(r);
        return s;
    }
    r->n_left = r->n_seqs;
    e->reqs[e->n_reqs++] = r;
    for (int i = 0; i < r->n_seqs; i++)
        e->waiting[e->n_waiting++] = &r->seqs[i];
    return GLLM_OK;
}

/* ------------------------------------------------------------------ finishing */

static void remove_running(gllm_engine *e, seq *s)
{
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == s) {
            memmove(e->running + i, e->running + i + 1,
                    (size_t)(e->n_running - i - 1) * sizeof *e->running);
            e->n_running--;
            return;
        }
}

static gllm_status continuation_text(const gllm_engine *e, const req *r, const int32_t *ids,
                                     int n, char **text);

static gllm_status finish_request(gllm_engine *e, req *r)
{
    gllm_result res;
    memset(&res, 0, sizeof res);
    res.tag = r->tag;
    res.n_prompt = r->q.n_prompt;
    res.n_cached = r->n_cached;
    gllm_status st = GLLM_OK;
    if (r->q.n_candidates > 0) {
        const int nc = r->q.n_candidates;
        res.n_candidates = nc;
        res.candidate_logprob = calloc((size_t)nc, sizeof(double));
        res.candidate_token_logprobs = calloc((size_t)nc, sizeof(float *));
        res.candidate_len = dup_mem(r->cand_len, (size_t)nc * sizeof(int));
        if (!res.candidate_logprob || !res.candidate_token_logprobs || !res.candidate_len)
            st = gllm_fail(GLLM_ERR_OOM, "engine: out of memory");
        for (int c = 0; st == GLLM_OK && c < nc; c++) {
            seq *s = &r->seqs[c];
            res.candidate_token_logprobs[c] = s->lp;
            s->lp = NULL;
            double sum = 0;
            for (int i = 0; i < r->cand_len[c]; i++)
                sum += res.candidate_token_logprobs[c][i];
            res.candidate_logprob[c] = sum;
        }
    } else {
        res.n_samples = r->n_seqs;
        res.samples = calloc((size_t)r->n_seqs, sizeof *res.samples);
        if (!res.samples)
            st = gllm_fail(GLLM_ERR_OOM, "engine: out of memory");
        for (int i = 0; st == GLLM_OK && i < r->n_seqs; i++) {
            seq *s = &r->seqs[i];
            gllm_sample_out *o = &res.samples[i];
            o->n_ids = s->n_out;
            o->ids = s->out ? s->out : malloc(sizeof(int32_t));
            s->out = NULL;
            o->finish = s->finish;
            if (r->q.logprobs) {
                o->logprobs = s->lp ? s->lp : malloc(sizeof(float));
                s->lp = NULL;
            }
            if (r->q.top_logprobs > 0) {
                o->top = s->top ? s->top : malloc(sizeof *o->top);
                s->top = NULL;
            }
            if (e->o.tok) {
                if (s->text) {
                    o->text = s->text;
                    s->text = NULL;
                } else if (continuation_text(e, r, o->ids, o->n_ids, &o->text) != GLLM_OK) {
                    o->text = NULL;
                }
            }
        }
    }
    for (int i = 0; i < e->n_reqs; i++)
        if (e->reqs[i] == r) {
            e->reqs[i] = e->reqs[--e->n_reqs];
            break;
        }
    if (st != GLLM_OK) {
        gllm_result_free(&res);
        res.tag = r->tag;
        res.status = st;
        snprintf(res.error, sizeof res.error, "%s", gllm_last_error());
    }
    req_free(r);
    return push_result(e, &res);
}

/* ------------------------------------------------------------------ sequences */

static gllm_status seq_done(gllm_engine *e, seq *s, req ***fin, int *n_fin, int *cap_fin)
{
    seq_release(e, s);
    remove_running(e, s);
    s->state = SEQ_DONE;
    if (--s->r->n_left == 0) {
        GLLM_TRY(GROW(*fin, *cap_fin, *n_fin + 1));
        (*fin)[(*n_fin)++] = s->r;
    }
    return GLLM_OK;
}

/* The text of a sample's ids as it continues the prompt, malloc'd. Decoded
 * alone, a SentencePiece decoder drops the space that leads the first id
 * ("▁the sky" -> "the sky") although it is part of the continuation, so the
 * ids are decoded behind the prompt's last few ids and the prompt part's text
 * is cut off (as incremental detokenizers do). If that text is not a prefix
 * (a multi-byte character cut by the context's start or end), fewer context
 * ids are tried, then none. */
enum { TEXT_CONTEXT = 4 };

static gllm_status continuation_text(const gllm_engine *e, const req *r, const int32_t *ids,
                                     int n, char **text)
{
    *text = NULL;
    const int nc = r->q.n_prompt < TEXT_CONTEXT ? r->q.n_prompt : TEXT_CONTEXT;
    int32_t *both = malloc(((size_t)nc + (size_t)n + 1) * sizeof *both);
    if (!both)
        return gllm_fail(GLLM_ERR_OOM, "engine: out of memory decoding text");
    for (int k = nc; k > 0; k--) {
        memcpy(both, r->prompt + r->q.n_prompt - k, (size_t)k * sizeof *both);
        memcpy(both + k, ids, (size_t)n * sizeof *both);
        char *pre = NULL, *full = NULL;
        size_t plen = 0, flen = 0;
        gllm_status st = gllm_tok_decode(e->o.tok, both, (size_t)k, true, &pre, &plen);
        if (st == GLLM_OK)
            st = gllm_tok_decode(e->o.tok, both, (size_t)(k + n), true, &full, &flen);
        if (st != GLLM_OK) {
            free(pre);
            free(full);
            free(both);
            return st;
        }
        const bool prefix = flen >= plen && memcmp(full, pre, plen) == 0;
        free(pre);
        if (prefix) {
            memmove(full, full + plen, flen - plen + 1);
            free(both);
            *text = full;
            return GLLM_OK;
        }
        free(full);
    }
    free(both);
    size_t len = 0;
    return gllm_tok_decode(e->o.tok, ids, (size_t)n, true, text, &len);
}

/* the earliest match of any stop string in text, or -1 */
static long stop_match(const req *r, const char *text)
{
    long best = -1;
    for (int i = 0; i < r->q.n_stop; i++) {
        const char *p = strstr(text, r->stop[i]);
        if (p && (best < 0 || p - text < best))
            best = p - text;
    }
    return best;
}

/* a sampled id joins sample s; true when the sample is finished */
static gllm_status seq_append(gllm_engine *e, seq *s, int32_t id, float lp, const int32_t *tid,
                              const float *tlp, bool *finished)
{
    req *r = s->r;
    const int T = r->q.top_logprobs;
    GLLM_TRY(GROW(s->out, s->cap_out, s->n_out + 1));
    s->out[s->n_out] = id;
    if (r->q.logprobs) {
        GLLM_TRY(GROW(s->lp, s->cap_lp, s->n_out + 1));
        s->lp[s->n_out] = lp;
    }
    if (T > 0) {
        GLLM_TRY(GROW(s->top, s->cap_top, (s->n_out + 1) * T));
        for (int k = 0; k < T; k++)
            s->top[(size_t)s->n_out * T + k] = (gllm_token_logprob){tid[k], tlp[k]};
    }
    s->n_out++;
    s->tok[s->n_tok++] = id;
    s->n_target = s->n_tok;
    e->st.generated_tokens++;
    *finished = false;
    bool stop = !r->q.ignore_eos && id >= 0 && (id == e->eos || id == e->eos2);
    for (int i = 0; !stop && i < r->q.n_stop_ids; i++)
        stop = id == r->stop_ids[i];
    if (!stop && r->q.n_stop > 0) {
        char *text = NULL;
        GLLM_TRY(continuation_text(e, r, s->out, s->n_out, &text));
        const long at = stop_match(r, text);
        if (at >= 0) {
            text[at] = '\0';
            free(s->text);
            s->text = text;
            stop = true;
        } else {
            free(text);
        }
    }
    if (stop) {
        s->finish = GLLM_FINISH_STOP;
        *finished = true;
    } else if (s->n_out >= r->q.max_tokens || s->n_tok >= e->max_pos) {
        s->finish = GLLM_FINISH_LENGTH;
        *finished = true;
    }
    return GLLM_OK;
}

static gllm_status preempt(gllm_engine *e, seq *s)
{
    GLLM_TRY(GROW(e->waiting, e->cap_waiting, e->n_waiting + 1));
    seq_release(e, s);
    remove_running(e, s);
    s->state = SEQ_WAITING;
    /* to the front: it was admitted before everything still waiting */
    memmove(e->waiting + 1, e->waiting, (size_t)e->n_waiting * sizeof *e->waiting);
    e->waiting[0] = s;
    e->n_waiting++;
    e->st.preemptions++;
    return GLLM_OK;
}

/* is s's block k (not cached) being computed right now by a running sequence? */
static gllm_status in_flight(gllm_engine *e, seq *s, int k, bool *yes)
{
    *yes = false;
    const int end = (k + 1) * e->bs;
    for (int i = 0; i < e->n_running; i++) {
        seq *r = e->running[i];
        if (r->n_computed >= end || r->n_target < end)
            continue;
        GLLM_TRY(seq_hashes(e, r, k + 1));
        if (r->hash[k] == s->hash[k]) {
            *yes = true;
            return GLLM_OK;
        }
    }
    return GLLM_OK;
}

static int imin(int a, int b) { return a < b ? a : b; }

/* Try to admit waiting sequence s with budget; *q gets its first piece (0 = not admitted). */
static gllm_status try_admit(gllm_engine *e, seq *s, int budget, int *q, bool *stop_admitting)
{
    const int bs = e->bs;
    *q = 0;
    *stop_admitting = false;
    req *r = s->r;
    seq *lead = s->index > 0 ? &r->seqs[0] : NULL;
    const int share = (r->q.n_prompt - 1) / bs;
    if (lead && lead->state == SEQ_RUNNING && lead->n_computed < share * bs)
        return GLLM_OK; /* the leader is still computing the shared prompt */
    int matched = 0;
    if (lead && lead->state == SEQ_RUNNING && share > 0) {
        GLLM_TRY(GROW(s->blocks, s->cap_blocks, share));
        for (int k = 0; k < share; k++) {
            block_ref(e, lead->blocks[k]);
            s->blocks[k] = lead->blocks[k];
        }
        s->n_blocks = share;
        matched = share;
    } else if (e->o.prefix_sharing) {
        /* leave the first row whose logits are wanted to compute */
        const int first_row = s->cand ? r->q.n_prompt - 1 : s->n_target - 1;
        const int maxb = first_row / bs;
        GLLM_TRY(seq_hashes(e, s, maxb));
        GLLM_TRY(GROW(s->blocks, s->cap_blocks, maxb > 0 ? maxb : 1));
        int k = 0;
        for (; k < maxb; k++) {
            const int bi = hash_find(e, s->hash[k], k ? s->hash[k - 1] : 0, s->tok + (size_t)k * bs);
            if (bi < 0)
                break;
            block_ref(e, bi);
            s->blocks[k] = bi;
            s->n_blocks = k + 1;
        }
        matched = k;
        if (k < maxb) {
            bool busy = false;
            GLLM_TRY(in_flight(e, s, k, &busy));
            if (busy) { /* another sequence is computing the next block: wait for it */
                seq_release(e, s);
                return GLLM_OK;
            }
        }
        s->n_registered = matched;
    }
    s->n_computed = matched * bs;
    const int chunk = e->o.prefill_chunk;
    const int want = imin(imin(s->n_target - s->n_computed, chunk), budget);
    if (!seq_grow_blocks(e, s, s->n_computed + want)) {
        seq_release(e, s);
        *stop_admitting = true;
        return GLLM_OK;
    }
    if (!r->counted) {
        r->counted = true;
        e->st.prompt_tokens += r->q.n_prompt;
    }
    if (s->index == 0 && !s->admitted_once) {
        r->n_cached = imin(matched * bs, r->q.n_prompt);
        e->st.cached_tokens += r->n_cached;
    }
    s->admitted_once = true;
    *q = want;
    return GLLM_OK;
}

/* ------------------------------------------------------------------ the step */

static gllm_status ensure_dev(gllm_engine *e, size_t bytes)
{
    if (bytes <= e->dev_bytes)
        return GLLM_OK;
    if (e->dev)
        e->be->free(e->be, e->dev);
    e->dev = NULL;
    e->dev_bytes = 0;
    size_t b = bytes * 2;
    GLLM_TRY(e->be->alloc(e->be, b, "sampler buffers", &e->dev));
    e->dev_bytes = b;
    return GLLM_OK;
}

static void update_peak(gllm_engine *e);

static size_t a64(size_t b) { return (b + 63) & ~(size_t)63; }

gllm_status gllm_engine_step(gllm_engine *e)
{
    if (!e)
        return gllm_fail(GLLM_ERR_INVALID, "engine_step: NULL engine");
    if (e->n_running == 0 && e->n_waiting == 0)
        return GLLM_OK;
    const int bs = e->bs, chunk = e->o.prefill_chunk;
    int budget = e->o.max_batch_tokens, n_sched = 0;
    req **fin = NULL;
    int n_fin = 0, cap_fin = 0;
    gllm_status st = GLLM_OK;
    GLLM_TRY(GROW(e->sched, e->cap_sched, e->n_running + e->n_waiting + 1));
    GLLM_TRY(GROW(e->sched_q, e->cap_sched_q, e->n_running + e->n_waiting + 1));

    /* 1. running sequences, oldest first; preempt the newest when out of blocks */
    for (int i = 0; i < e->n_running && budget > 0;) {
        seq *s = e->running[i];
        const int q = imin(imin(s->n_target - s->n_computed, chunk), budget);
        bool ok = true;
        while (!seq_grow_blocks(e, s, s->n_computed + q)) {
            seq *v = e->running[e->n_running - 1];
            if (v == s) {
                ok = false;
                break;
            }
            GLLM_TRY(preempt(e, v));
        }
        if (!ok) {
            if (e->n_running == 1) { /* alone and still too big: cannot happen after validate */
                req *r = s->r;
                for (int k = 0; k < r->n_seqs; k++)
                    if (r->seqs[k].state != SEQ_DONE)
                        seq_release(e, &r->seqs[k]);
                return gllm_fail(GLLM_ERR_OOM, "engine: request %llu does not fit the KV cache",
                                 (unsigned long long)r->tag);
            }
            GLLM_TRY(preempt(e, s));
            break;
        }
        e->sched[n_sched] = s;
        e->sched_q[n_sched++] = q;
        budget -= q;
        i++;
    }
    /* 2. admit waiting sequences in order while budget, slots and blocks last */
    for (int w = 0; w < e->n_waiting && budget > 0 && e->n_running < e->o.max_seqs;) {
        seq *s = e->waiting[w];
        int q = 0;
        bool stop = false;
        GLLM_TRY(try_admit(e, s, budget, &q, &stop));
        if (stop)
            break;
        if (q == 0) {
            w++;
            continue;
        }
        memmove(e->waiting + w, e->waiting + w + 1,
                (size_t)(e->n_waiting - w - 1) * sizeof *e->waiting);
        e->n_waiting--;
        GLLM_TRY(GROW(e->running, e->cap_running, e->n_running + 1));
        e->running[e->n_running++] = s;
        s->state = SEQ_RUNNING;
        s->order = e->next_order++;
        e->sched[n_sched] = s;
        e->sched_q[n_sched++] = q;
        budget -= q;
    }
    if (n_sched == 0)
        return GLLM_OK;

    /* 3. the batch */
    int n_tok = 0, max_blocks = 1, ns = 0, nx = 0;
    for (int j = 0; j < n_sched; j++) {
        n_tok += e->sched_q[j];
        max_blocks = e->sched[j]->n_blocks > max_blocks ? e->sched[j]->n_blocks : max_blocks;
    }
    GLLM_TRY(GROW(e->ids, e->cap_ids, n_tok));
    GLLM_TRY(GROW(e->pos, e->cap_pos, n_tok));
    GLLM_TRY(GROW(e->slots, e->cap_slots, n_tok));
    GLLM_TRY(GROW(e->rows, e->cap_rows, n_tok + n_sched));
    GLLM_TRY(GROW(e->qs, e->cap_qs, 3 * n_sched));
    GLLM_TRY(GROW(e->table, e->cap_table, n_sched * max_blocks));
    GLLM_TRY(GROW(e->srow, e->cap_srow, n_sched));
    GLLM_TRY(GROW(e->xrow, e->cap_xrow, n_tok));
    GLLM_TRY(GROW(e->xidx, e->cap_xidx, n_tok));
    GLLM_TRY(GROW(e->xtarget, e->cap_xtarget, n_tok));
    int32_t *ql = e->qs + n_sched, *cl = e->qs + 2 * n_sched;
    int row = 0;
    for (int j = 0; j < n_sched; j++) {
        seq *s = e->sched[j];
        const int q = e->sched_q[j], c0 = s->n_computed;
        e->qs[j] = row;
        ql[j] = q;
        cl[j] = c0 + q;
        for (int k = 0; k < max_blocks; k++)
            e->table[(size_t)j * max_blocks + k] = k < s->n_blocks ? s->blocks[k] : 0;
        for (int t = 0; t < q; t++) {
            const int p = c0 + t;
            e->ids[row + t] = s->tok[p];
            e->pos[row + t] = p;
            e->slots[row + t] = s->blocks[p / bs] * bs + p % bs;
        }
        if (!s->cand) {
            if (c0 + q == s->n_target)
                e->srow[ns++] = s;
        } else {
            const int np = s->r->q.n_prompt;
            for (int p = c0 > np - 1 ? c0 : np - 1; p < c0 + q; p++) {
                e->xrow[nx] = s;
                e->xidx[nx] = p - np + 1;
                e->xtarget[nx] = s->tok[p + 1];
                nx++;
            }
        }
        row += q;
    }
    /* logits rows: sampled sequences' last rows, then scored rows */
    {
        int k = 0;
        for (int j = 0; j < n_sched; j++) {
            seq *s = e->sched[j];
            if (!s->cand && e->qs[j] + e->sched_q[j] > 0 && s->n_computed + e->sched_q[j] ==
                                                               s->n_target)
                e->rows[k++] = e->qs[j] + e->sched_q[j] - 1;
        }
        for (int j = 0; j < n_sched; j++) {
            seq *s = e->sched[j];
            if (!s->cand)
                continue;
            const int np = s->r->q.n_prompt, c0 = s->n_computed;
            for (int p = c0 > np - 1 ? c0 : np - 1; p < c0 + e->sched_q[j]; p++)
                e->rows[k++] = e->qs[j] + (p - c0);
        }
    }
    gllm_step_batch b = {.n_tokens = n_tok, .ids = e->ids, .pos = e->pos, .slots = e->slots,
                         .n_seq = n_sched, .q_start = e->qs, .q_len = ql, .ctx_len = cl,
                         .block_table = e->table, .max_blocks = max_blocks,
                         .n_logits = ns + nx, .logit_rows = e->rows};
    void *logits = NULL;
    GLLM_TRY(gllm_model_step(e->m, e->kv, e->ws, &b, &logits));
    e->st.steps++;

    /* 4. sampling and scoring */
    gllm_backend *be = e->be;
    int max_top = 0, n_pen = 0;
    for (int i = 0; i < ns; i++) {
        const req *r = e->srow[i]->r;
        max_top = r->q.top_logprobs > max_top ? r->q.top_logprobs : max_top;
        if (r->q.sampling.repetition_penalty != 1.0f)
            n_pen += e->srow[i]->n_tok;
    }
    GLLM_TRY(GROW(e->hp, e->cap_hp, ns + 1));
    GLLM_TRY(GROW(e->pen_off, e->cap_pen_off, ns + 1));
    GLLM_TRY(GROW(e->pen_ids, e->cap_pen_ids, n_pen + 1));
    GLLM_TRY(GROW(e->h_out_ids, e->cap_hoi, ns + 1));
    GLLM_TRY(GROW(e->h_out_lp, e->cap_hol, ns + nx + 1));
    GLLM_TRY(GROW(e->h_top_ids, e->cap_hti, ns * max_top + 1));
    GLLM_TRY(GROW(e->h_top_lp, e->cap_htl, ns * max_top + 1));
    GLLM_TRY(GROW(e->hmask, e->cap_hmask, nx + 1));
    n_pen = 0;
    for (int i = 0; i < ns; i++) {
        seq *s = e->srow[i];
        const req *r = s->r;
        const gllm_sampling *sp = &r->q.sampling;
        e->hp[i] = (gllm_sample_params){.temperature = sp->temperature, .top_k = sp->top_k,
                                        .top_p = sp->top_p, .min_p = sp->min_p,
                                        .repetition_penalty = sp->repetition_penalty,
                                        .n_top = r->q.top_logprobs,
                                        .seed = token_seed(sp->seed, s->index, s->n_out)};
        e->pen_off[i] = n_pen;
        if (sp->repetition_penalty != 1.0f) {
            memcpy(e->pen_ids + n_pen, s->tok, (size_t)s->n_tok * sizeof(int32_t));
            n_pen += s->n_tok;
        }
    }
    e->pen_off[ns] = n_pen;
    /* device layout */
    const size_t o_params = 0, o_penoff = a64(o_params + (size_t)ns * sizeof(gllm_sample_params));
    const size_t o_penids = a64(o_penoff + (size_t)(ns + 1) * 4);
    const size_t o_ids = a64(o_penids + (size_t)(n_pen + 1) * 4);
    const size_t o_lp = a64(o_ids + (size_t)(ns + 1) * 4);
    const size_t o_tid = a64(o_lp + (size_t)(ns + 1) * 4);
    const size_t o_tlp = a64(o_tid + (size_t)(ns * max_top + 1) * 4);
    const size_t o_tgt = a64(o_tlp + (size_t)(ns * max_top + 1) * 4);
    const size_t o_mask = a64(o_tgt + (size_t)(nx + 1) * 4);
    const size_t o_loss = a64(o_mask + (size_t)(nx + 1) * 4);
    const size_t total = a64(o_loss + (size_t)(nx + 1) * 4);
    GLLM_TRY(ensure_dev(e, total));
    char *d = e->dev;
    if (ns > 0) {
        GLLM_TRY(be->upload(be, d + o_params, e->hp, (size_t)ns * sizeof(gllm_sample_params)));
        GLLM_TRY(be->upload(be, d + o_penoff, e->pen_off, (size_t)(ns + 1) * 4));
        if (n_pen > 0)
            GLLM_TRY(be->upload(be, d + o_penids, e->pen_ids, (size_t)n_pen * 4));
        GLLM_TRY(be->sample_rows(be, (int32_t *)(d + o_ids), (float *)(d + o_lp),
                                 max_top ? (int32_t *)(d + o_tid) : NULL,
                                 max_top ? (float *)(d + o_tlp) : NULL, max_top, logits, ns, e->V,
                                 (const gllm_sample_params *)(d + o_params),
                                 n_pen ? (const int32_t *)(d + o_penids) : NULL,
                                 n_pen ? (const int32_t *)(d + o_penoff) : NULL));
        GLLM_TRY(be->download(be, e->h_out_ids, d + o_ids, (size_t)ns * 4));
        GLLM_TRY(be->download(be, e->h_out_lp, d + o_lp, (size_t)ns * 4));
        if (max_top) {
            GLLM_TRY(be->download(be, e->h_top_ids, d + o_tid, (size_t)ns * max_top * 4));
            GLLM_TRY(be->download(be, e->h_top_lp, d + o_tlp, (size_t)ns * max_top * 4));
        }
    }
    if (nx > 0) {
        for (int i = 0; i < nx; i++)
            e->hmask[i] = 1.0f;
        GLLM_TRY(be->upload(be, d + o_tgt, e->xtarget, (size_t)nx * 4));
        GLLM_TRY(be->upload(be, d + o_mask, e->hmask, (size_t)nx * 4));
        void *xl = (char *)logits + (size_t)ns * e->V * gllm_dtype_size(be->act_dtype);
        GLLM_TRY(be->xent_fwd_bwd(be, (float *)(d + o_loss), xl, (const int32_t *)(d + o_tgt),
                                  (const float *)(d + o_mask), nx, e->V, 0.0f));
        GLLM_TRY(be->download(be, e->h_out_lp + ns, d + o_loss, (size_t)nx * 4));
    }

    /* 5. bookkeeping: computed tokens, prefix table, outputs, finished sequences */
    for (int j = 0; j < n_sched; j++) {
        seq *s = e->sched[j];
        s->n_computed += e->sched_q[j];
        st = seq_register(e, s);
        if (st != GLLM_OK)
            goto out;
    }
    for (int i = 0; i < nx; i++) {
        seq *s = e->xrow[i];
        s->lp[e->xidx[i]] = -e->h_out_lp[ns + i];
    }
    for (int i = 0; i < ns; i++) {
        seq *s = e->srow[i];
        bool finished = false;
        st = seq_append(e, s, e->h_out_ids[i], e->h_out_lp[i],
                        e->h_top_ids + (size_t)i * max_top, e->h_top_lp + (size_t)i * max_top,
                        &finished);
        if (st == GLLM_OK && finished)
            st = seq_done(e, s, &fin, &n_fin, &cap_fin);
        if (st != GLLM_OK)
            goto out;
    }
    for (int j = 0; j < n_sched; j++) {
        seq *s = e->sched[j];
        if (s->cand && s->state == SEQ_RUNNING && s->n_computed == s->n_target) {
            st = seq_done(e, s, &fin, &n_fin, &cap_fin);
            if (st != GLLM_OK)
                goto out;
        }
    }
out:
    update_peak(e);
    for (int i = 0; i < n_fin; i++) {
        gllm_status fs = finish_request(e, fin[i]);
        if (st == GLLM_OK)
            st = fs;
    }
    free(fin);
    return st;
}

/* ------------------------------------------------------------------ lifecycle */

/* Default KV budgets: the CPU's (capped at what max_seqs full-context sequences
 * use), and on a device what is kept back besides utilization's share for the
 * sampler's buffers (a few MB) and allocator slack. */
#define CPU_KV_DEFAULT ((size_t)1 << 30)
#define KV_RESERVE ((size_t)256 << 20)

size_t gllm_kv_budget_device(size_t mem_total, size_t mem_free, double utilization,
                             size_t reserve)
{
    if (!(utilization > 0.0) || mem_free > mem_total)
        return 0;
    if (utilization > 1.0)
        utilization = 1.0;
    const double share = utilization * (double)mem_total;
    const double left = share - (double)(mem_total - mem_free) - (double)reserve;
    return left > 0 ? (size_t)left : 0;
}

gllm_status gllm_engine_create(gllm_model *m, const gllm_engine_options *o, gllm_engine **out)
{
    if (!m || !out)
        return gllm_fail(GLLM_ERR_INVALID, "engine_create: NULL argument");
    *out = NULL;
    gllm_engine_options opt = o ? *o : gllm_engine_options_default();
    if (opt.max_batch_tokens == 0)
        opt.max_batch_tokens = 2048;
    if (opt.max_seqs == 0)
        opt.max_seqs = 256;
    if (opt.prefill_chunk == 0)
        opt.prefill_chunk = opt.max_batch_tokens;
    if (opt.block_size < 0 || opt.max_batch_tokens < 1 || opt.max_seqs < 1 ||
        opt.prefill_chunk < 1)
        return gllm_fail(GLLM_ERR_INVALID, "engine: block_size %d (0: the default), "
                         "max_batch_tokens %d, max_seqs %d and prefill_chunk %d must be "
                         "positive", opt.block_size,
                         opt.max_batch_tokens, opt.max_seqs, opt.prefill_chunk);
    const gllm_model_config *c = gllm_model_cfg(m);
    gllm_backend *be = gllm_model_backend(m);
    if (!be->attention_paged || !be->sample_rows)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "engine: backend %s lacks the inference ops",
                         be->name);
    if (opt.gpu_memory_utilization == 0.0f)
        opt.gpu_memory_utilization = 0.9f;
    if (!(opt.gpu_memory_utilization > 0.0f && opt.gpu_memory_utilization <= 1.0f))
        return gllm_fail(GLLM_ERR_INVALID, "engine: gpu_memory_utilization %g must be in (0, 1]",
                         (double)opt.gpu_memory_utilization);
    /* the step workspace first: on a device, the KV cache gets what is left after it */
    gllm_step_ws *ws = NULL;
    GLLM_TRY(gllm_step_ws_create(m, opt.max_batch_tokens, opt.max_seqs, &ws));
    gllm_device_info dev;
    memset(&dev, 0, sizeof dev);
    if (be->device_info && be->device_info(be, &dev) != GLLM_OK)
        memset(&dev, 0, sizeof dev);
    const bool device = dev.mem_free > 0 && dev.mem_total > 0;
    /* Sharing is by whole blocks, so a request recomputes up to block_size - 1
     * tokens of a prefix it shares. On the CPU the attention reads each key
     * through its slot whatever the block size, and 4 costs nothing there while
     * sharing almost every shared token (bench/results/infer_cpu_2026-12-03_zen3*:
     * 256 prompts behind common prefixes computed 4384 prompt tokens with 16,
     * 1916 with 4, 1588 with 1; SGLang shares per token); a GPU kernel reads a
     * block per warp and keeps vLLM's 16. */
    if (opt.block_size == 0)
        opt.block_size = device ? 16 : GLLM_CPU_BLOCK_SIZE;
    const size_t block_bytes = gllm_kv_block_bytes(m, opt.block_size);
    size_t kv_bytes = opt.kv_bytes;
    if (!kv_bytes && device) {
        kv_bytes = gllm_kv_budget_device(dev.mem_total, dev.mem_free,
                                         opt.gpu_memory_utilization, KV_RESERVE);
        if (kv_bytes < block_bytes) {
            gllm_step_ws_free(ws);
            return gllm_fail(GLLM_ERR_OOM,
                             "engine: gpu_memory_utilization %.2f of %.2f GiB on %s leaves no "
                             "room for the KV cache (%.2f GiB in use with the weights and "
                             "workspace, %.0f MiB reserved; one block is %zu bytes): raise it "
                             "or give kv_bytes", (double)opt.gpu_memory_utilization,
                             (double)dev.mem_total / 1073741824.0, dev.name,
                             (double)(dev.mem_total - dev.mem_free) / 1073741824.0,
                             (double)KV_RESERVE / 1048576.0, block_bytes);
        }
    } else if (!kv_bytes) {
        kv_bytes = CPU_KV_DEFAULT;
    }
    long nb = (long)(kv_bytes / block_bytes);
    const long most = (long)opt.max_seqs * ((c->max_pos + opt.block_size - 1) / opt.block_size) + 1;
    if (!opt.kv_bytes && !device && nb > most) /* the CPU default never exceeds what max_seqs
                                                 * could use */
        nb = most;
    if (nb < 1) {
        gllm_step_ws_free(ws);
        return gllm_fail(GLLM_ERR_INVALID, "engine: kv_bytes %zu is below one block (%zu bytes "
                         "for %d tokens)", kv_bytes, block_bytes, opt.block_size);
    }
    if (nb > 1 << 30)
        nb = 1 << 30;
    gllm_engine *e = gllm_calloc(1, sizeof *e, "engine");
    if (!e) {
        gllm_step_ws_free(ws);
        return GLLM_ERR_OOM;
    }
    e->ws = ws;
    e->m = m;
    e->be = be;
    e->o = opt;
    e->V = c->vocab_size;
    e->max_pos = c->max_pos;
    e->eos = c->eos_id;
    e->eos2 = opt.tok ? gllm_tok_eos_id(opt.tok) : -1;
    e->nb = (int)nb;
    e->bs = opt.block_size;
    e->lru_head = e->lru_tail = -1;
    gllm_status s = gllm_kv_pages_create(m, e->nb, e->bs, &e->kv);
    if (s == GLLM_OK) {
        e->b = calloc((size_t)e->nb, sizeof *e->b);
        e->btok = malloc((size_t)e->nb * e->bs * sizeof *e->btok);
        e->free_stack = malloc((size_t)e->nb * sizeof *e->free_stack);
        e->n_bucket = 1;
        while (e->n_bucket < 2 * e->nb)
            e->n_bucket *= 2;
        e->bucket = malloc((size_t)e->n_bucket * sizeof *e->bucket);
        if (!e->b || !e->btok || !e->free_stack || !e->bucket)
            s = gllm_fail(GLLM_ERR_OOM, "engine: out of memory for %d blocks", e->nb);
    }
    if (s != GLLM_OK) {
        gllm_engine_free(e);
        return s;
    }
    for (int i = 0; i < e->nb; i++) {
        e->b[i] = (blk){.ref = 0, .prev = -1, .next = -1, .hnext = -1};
        e->free_stack[i] = e->nb - 1 - i;
    }
    e->n_free = e->nb;
    for (int i = 0; i < e->n_bucket; i++)
        e->bucket[i] = -1;
    e->st.kv_blocks_total = e->nb;
    e->st.kv_bytes = e->kv->bytes;
    update_peak(e);
    *out = e;
    return GLLM_OK;
}

void gllm_engine_free(gllm_engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->n_reqs; i++)
        req_free(e->reqs[i]);
    free(e->reqs);
    for (int i = e->done_head; i < e->n_done; i++)
        gllm_result_free(&e->done[i]);
    free(e->done);
    if (e->dev)
        e->be->free(e->be, e->dev);
    gllm_step_ws_free(e->ws);
    gllm_kv_pages_free(e->m, e->kv);
    void *bufs[] = {e->b, e->btok, e->free_stack, e->bucket, e->waiting, e->running, e->ids,
                    e->pos, e->slots, e->qs, e->table, e->rows, e->sched,
                    e->sched_q, e->srow, e->hp, e->pen_off, e->pen_ids, e->xrow, e->xidx,
                    e->xtarget, e->hmask, e->h_out_ids, e->h_out_lp, e->h_top_lp,
                    e->h_top_ids};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(e);
}

int gllm_engine_pending(const gllm_engine *e) { return e ? e->n_reqs : 0; }

int gllm_engine_take(gllm_engine *e, gllm_result *out, int max)
{
    int n = 0;
    while (n < max && e->done_head < e->n_done)
        out[n++] = e->done[e->done_head++];
    if (e->done_head == e->n_done)
        e->done_head = e->n_done = 0;
    return n;
}

void gllm_engine_get_stats(const gllm_engine *e, gllm_engine_stats *st)
{
    *st = e->st;
    st->waiting = e->n_waiting;
    st->running = e->n_running;
    st->finished = e->n_done - e->done_head;
    st->kv_blocks_total = e->nb;
    st->kv_blocks_used = e->nb - e->n_free - e->n_lru;
    st->block_size = e->bs;
    st->kv_bytes = e->kv->bytes;
}

static void update_peak(gllm_engine *e)
{
    const size_t now = gllm_model_numel(e->m) * gllm_dtype_size(e->be->act_dtype) +
                       e->kv->bytes + gllm_step_ws_bytes(e->ws) + e->dev_bytes;
    if (now > e->st.peak_bytes)
        e->st.peak_bytes = now;
}
