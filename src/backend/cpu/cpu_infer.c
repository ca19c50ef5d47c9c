/* Inference ops of the CPU backend: paged attention (prefill chunks and decode
 * over the block-paged KV cache) and per-row sampling with logprobs.
 *
 * Both compute every output row alone, in an order that depends only on that
 * row's own data (its query, its cached keys, its logits and parameters), never
 * on the other rows of the batch or on the thread count: this is what makes
 * the engine's results batch invariant. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

/* query heads per paged-attention task at most (their accumulators live in registers) */
#define GLLM_PAGED_MAX_HEADS 8

typedef struct paged_ctx {
    const gllm_paged_attn_args *a;
    const float *x, *K, *V;
    float *o;
    const int32_t *row_seq;
    unsigned char *scr;
    size_t stride, W, HD, sc_stride;
    int bs, Hq, D, group, heads_per_task;
} paged_ctx;

/* One row's attention for the nh query heads h0.. that share KV head g: each
 * key and value row is read once for all of them. Per head, in a fixed order:
 * q.k in gllm_cpu_dot's eight lanes and tree, exp(s - max) (gllm_cpu_exp,
 * which vectorises where libm's expf is a call) summed in key order, then
 * o[d] = (sum over keys in order of w * v[d]) * (1 / sum). The vector types
 * only run independent lanes (d, keys, heads) side by side, so the bits are
 * the same on every CPU and for either compiled version (ISO C: no contraction
 * into FMA). Inlined with nh a constant and the head loops unrolled, the
 * heads' accumulators stay in registers. */
static inline __attribute__((always_inline)) void
paged_task(const paged_ctx *c, int row, int h0, int s, float *sc, int32_t *slot, const int nh)
{
    const gllm_paged_attn_args *a = c->a;
    const int bs = c->bs, D = c->D, D8 = D & ~7, g = h0 / c->group;
    const size_t HD = c->HD, scs = c->sc_stride;
    const int L = a->ctx_len[s], p = L - a->q_len[s] + (row - a->q_start[s]);
    const int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0, n = p - lo + 1;
    const int32_t *bt = a->block_table + (size_t)s * a->max_blocks;
    const float *q = c->x + (size_t)row * c->W + (size_t)h0 * D;
    const float *Kg = c->K + (size_t)g * D, *Vg = c->V + (size_t)g * D;
    /* the cache slot of every key, once (no division in the loops below) */
    for (int j = 0, blk = lo / bs, off = lo % bs; j < n; j++) {
        slot[j] = bt[blk] * bs + off;
        if (++off == bs)
            off = 0, blk++;
    }
    /* scores, two keys at a time: 2 nh independent accumulations in flight */
    for (int j = 0; j < n; j += 2) {
        const int two = j + 1 < n;
        const size_t s0 = (size_t)slot[j];
        const size_t s1 = two ? (size_t)slot[j + 1] : s0;
        const float *k0 = Kg + s0 * HD, *k1 = Kg + s1 * HD;
        gllm_v8f acc0[GLLM_PAGED_MAX_HEADS] = {{0}}, acc1[GLLM_PAGED_MAX_HEADS] = {{0}};
        for (int d = 0; d < D8; d += 8) {
            const gllm_v8f kv0 = GLLM_V8F_AT(k0 + d), kv1 = GLLM_V8F_AT(k1 + d);
            #pragma GCC unroll 8
            for (int h = 0; h < nh; h++) {
                const gllm_v8f qv = GLLM_V8F_AT(q + (size_t)h * D + d);
                acc0[h] += qv * kv0;
                acc1[h] += qv * kv1;
            }
        }
        #pragma GCC unroll 8
        for (int h = 0; h < nh; h++) {
            const float *qh = q + (size_t)h * D;
            const gllm_v8f x = acc0[h], y = acc1[h];
            float d0 = ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
            float d1 = ((y[0] + y[4]) + (y[1] + y[5])) + ((y[2] + y[6]) + (y[3] + y[7]));
            for (int d = D8; d < D; d++) {
                d0 += qh[d] * k0[d];
                d1 += qh[d] * k1[d];
            }
            sc[(size_t)h * scs + j] = a->scale * d0;
            if (two)
                sc[(size_t)h * scs + j + 1] = a->scale * d1;
        }
    }
    float inv[GLLM_PAGED_MAX_HEADS] = {0};
    #pragma GCC unroll 8
    for (int h = 0; h < nh; h++) {
        float *sh = sc + (size_t)h * scs, mx = -INFINITY, sum = 0;
        for (int j = 0; j < n; j++)
            mx = sh[j] > mx ? sh[j] : mx;
        for (int j = 0; j < n; j++)
            sh[j] = gllm_cpu_exp(sh[j] - mx);
        for (int j = 0; j < n; j++)
            sum += sh[j];
        inv[h] = 1.0f / sum;
    }
    /* values, 32 d lanes at a time while 4 nh accumulators fit in the 16
     * registers, else 16; either way o[d] sums over the keys in order */
    float *on = c->o + (size_t)row * c->Hq * D + (size_t)h0 * D;
    int d = 0;
    if (nh <= 3)
        for (; d + 32 <= D; d += 32) {
            gllm_v8f a0[3] = {{0}}, a1[3] = {{0}}, a2[3] = {{0}}, a3[3] = {{0}};
            for (int j = 0; j < n; j++) {
                const float *v = Vg + (size_t)slot[j] * HD + d;
                const gllm_v8f v0 = GLLM_V8F_AT(v), v1 = GLLM_V8F_AT(v + 8);
                const gllm_v8f v2 = GLLM_V8F_AT(v + 16), v3 = GLLM_V8F_AT(v + 24);
                #pragma GCC unroll 8
                for (int h = 0; h < nh; h++) {
                    const float w = sc[(size_t)h * scs + j];
                    a0[h] += w * v0;
                    a1[h] += w * v1;
                    a2[h] += w * v2;
                    a3[h] += w * v3;
                }
            }
            #pragma GCC unroll 8
            for (int h = 0; h < nh; h++) {
                float *oh = on + (size_t)h * D + d;
                GLLM_V8F_AT(oh) = a0[h] * inv[h];
                GLLM_V8F_AT(oh + 8) = a1[h] * inv[h];
                GLLM_V8F_AT(oh + 16) = a2[h] * inv[h];
                GLLM_V8F_AT(oh + 24) = a3[h] * inv[h];
            }
        }
    for (; d + 16 <= D; d += 16) {
        gllm_v8f acc0[GLLM_PAGED_MAX_HEADS] = {{0}}, acc1[GLLM_PAGED_MAX_HEADS] = {{0}};
        for (int j = 0; j < n; j++) {
            const float *v = Vg + (size_t)slot[j] * HD + d;
            const gllm_v8f v0 = GLLM_V8F_AT(v), v1 = GLLM_V8F_AT(v + 8);
            #pragma GCC unroll 8
            for (int h = 0; h < nh; h++) {
                const float w = sc[(size_t)h * scs + j];
                acc0[h] += w * v0;
                acc1[h] += w * v1;
            }
        }
        #pragma GCC unroll 8
        for (int h = 0; h < nh; h++) {
            GLLM_V8F_AT(on + (size_t)h * D + d) = acc0[h] * inv[h];
            GLLM_V8F_AT(on + (size_t)h * D + d + 8) = acc1[h] * inv[h];
        }
    }
    for (; d < D; d++)
        #pragma GCC unroll 8
        for (int h = 0; h < nh; h++) {
            float acc = 0;
            for (int j = 0; j < n; j++)
                acc += sc[(size_t)h * scs + j] * Vg[(size_t)slot[j] * HD + d];
            on[(size_t)h * D + d] = acc * inv[h];
        }
}

/* One task is one row and a run of query heads that share a KV head (a GQA
 * group, or part of one). */
GLLM_CPU_CLONES
static void paged_range(void *args, long tb, long te, int tid)
{
    const paged_ctx *c = args;
    const int hpt = c->heads_per_task, tasks_per_row = c->Hq / hpt;
    float *sc = (float *)(c->scr + (size_t)tid * c->stride);
    int32_t *slot = (int32_t *)(sc + (size_t)hpt * c->sc_stride);
    for (long task = tb; task < te; task++) {
        const int row = (int)(task / tasks_per_row), h0 = (int)(task % tasks_per_row) * hpt;
        const int s = c->row_seq[row];
        if (s < 0)
            continue;
        switch (hpt) { /* the usual GQA groups with a constant head count */
        case 1: paged_task(c, row, h0, s, sc, slot, 1); break;
        case 2: paged_task(c, row, h0, s, sc, slot, 2); break;
        case 3: paged_task(c, row, h0, s, sc, slot, 3); break;
        case 4: paged_task(c, row, h0, s, sc, slot, 4); break;
        default: paged_task(c, row, h0, s, sc, slot, hpt); break;
        }
    }
}

gllm_status gllm_cpu_attention_paged(gllm_backend *be, void *out, const void *qkv,
                                     const gllm_kv_cache *kv, const gllm_paged_attn_args *a)
{
    if (!out || !qkv || !kv || !kv->k || !kv->v || !a || !a->q_start || !a->q_len ||
        !a->ctx_len || !a->block_table || a->n_seq < 0 || a->Hq <= 0 || kv->Hkv <= 0 ||
        a->Hq % kv->Hkv || kv->D <= 0 || kv->block_size <= 0 || a->max_blocks <= 0 ||
        a->window < 0 || a->n_tokens < 0)
        return gllm_fail(GLLM_ERR_INVALID,
                         "attention_paged: bad arguments (n_seq=%d Hq=%d Hkv=%d window=%d)",
                         a ? a->n_seq : 0, a ? a->Hq : 0, kv ? kv->Hkv : 0, a ? a->window : 0);
    const int bs = kv->block_size, Hkv = kv->Hkv, D = kv->D, Hq = a->Hq, group = Hq / Hkv;
    int max_ctx = 1;
    int32_t *row_seq = malloc(((size_t)a->n_tokens + 1) * sizeof *row_seq);
    if (!row_seq)
        return gllm_fail(GLLM_ERR_OOM, "attention_paged: out of memory");
    for (int i = 0; i < a->n_tokens; i++)
        row_seq[i] = -1;
    for (int s = 0; s < a->n_seq; s++) {
        const int q0 = a->q_start[s], ql = a->q_len[s], L = a->ctx_len[s];
        if (ql < 1 || q0 < 0 || q0 + ql > a->n_tokens || L < ql || L > (long)a->max_blocks * bs) {
            free(row_seq);
            return gllm_fail(GLLM_ERR_INVALID,
                             "attention_paged: sequence %d has rows %d+%d of %d and context %d "
                             "(at most %ld): q_len must be >= 1 and <= ctx_len",
                             s, q0, ql, a->n_tokens, L, (long)a->max_blocks * bs);
        }
        for (int j = 0; j < (L + bs - 1) / bs; j++) {
            const int blk = a->block_table[(size_t)s * a->max_blocks + j];
            if (blk < 0 || blk >= kv->n_blocks) {
                free(row_seq);
                return gllm_fail(GLLM_ERR_INVALID,
                                 "attention_paged: block_table[%d][%d] = %d outside %d blocks", s,
                                 j, blk, kv->n_blocks);
            }
        }
        for (int j = 0; j < ql; j++) {
            if (row_seq[q0 + j] >= 0) {
                free(row_seq);
                return gllm_fail(GLLM_ERR_INVALID,
                                 "attention_paged: row %d belongs to two sequences", q0 + j);
            }
            row_seq[q0 + j] = s;
        }
        if (L > max_ctx)
            max_ctx = L;
    }
    /* the largest divisor of the group that fits the per-task head limit */
    int hpt = group < GLLM_PAGED_MAX_HEADS ? group : GLLM_PAGED_MAX_HEADS;
    while (group % hpt)
        hpt--;
    const size_t sc_stride = ((size_t)max_ctx + 15) & ~(size_t)15;
    unsigned char *scr =
        gllm_cpu_scratch(be, ((size_t)hpt + 1) * sc_stride * sizeof(float), "attention_paged");
    if (!scr) {
        free(row_seq);
        return GLLM_ERR_OOM;
    }
    paged_ctx c = {.a = a, .x = qkv, .K = kv->k, .V = kv->v, .o = out, .row_seq = row_seq,
                   .scr = scr, .stride = gllm_cpu_ctx_of(be)->scratch_stride,
                   .W = (size_t)(Hq + 2 * Hkv) * D, .HD = (size_t)Hkv * D,
                   .sc_stride = sc_stride, .bs = bs, .Hq = Hq, .D = D, .group = group,
                   .heads_per_task = hpt};
    gllm_cpu_for(be, (long)a->n_tokens * (Hq / hpt), 4.0 * D * max_ctx * hpt, paged_range, &c);
    free(row_seq);
    return GLLM_OK;
}

/* ------------------------------------------------------------------ sampling */

typedef struct pid {
    float p;
    int32_t id;
} pid;

/* the sampling order: higher probability first, then the lower id */
static inline bool before(pid a, pid b) { return a.p > b.p || (a.p == b.p && a.id < b.id); }

static int pid_cmp(const void *x, const void *y)
{
    const pid *a = x, *b = y;
    return before(*a, *b) ? -1 : before(*b, *a) ? 1 : 0;
}

/* Rearrange v[lo, hi) so that v[lo, k) holds the k - lo first elements in the
 * `before` order (in any order among themselves). Expected O(hi - lo). */
static void select_first(pid *v, long lo, long hi, long k)
{
    while (hi - lo > 1 && k > lo && k < hi) {
        /* median of three as the pivot */
        long mid = lo + (hi - lo) / 2;
        pid a = v[lo], b = v[mid], c = v[hi - 1], piv;
        if (before(a, b))
            piv = before(b, c) ? b : (before(a, c) ? c : a);
        else
            piv = before(a, c) ? a : (before(b, c) ? c : b);
        /* three-way partition: [lo, lt) before piv, [lt, gt) equal, [gt, hi) after */
        long lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (before(v[i], piv)) {
                pid t = v[lt];
                v[lt++] = v[i];
                v[i++] = t;
            } else if (before(piv, v[i])) {
                pid t = v[--gt];
                v[gt] = v[i];
                v[i] = t;
            } else {
                i++;
            }
        }
        if (k <= lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
}

/* float lanes in a fixed order, then one double: deterministic and vectorisable */
GLLM_CPU_CLONES
static double sum_exp(const float *x, int V, float mx, float inv_t)
{
    float acc[16] = {0};
    int v = 0;
    for (; v + 16 <= V; v += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += gllm_cpu_exp((x[v + l] - mx) * inv_t);
    double s = 0;
    for (int l = 0; l < 16; l++)
        s += acc[l];
    for (; v < V; v++)
        s += gllm_cpu_exp((x[v] - mx) * inv_t);
    return s;
}

double gllm_sample_uniform(uint64_t seed);

/* max of x[0..V) as `m = x[v] > m ? x[v] : m` from x[0] computes it (NaN only
 * when x[0] is), in 16 lanes: the same value whatever the order */
GLLM_CPU_CLONES
static float row_max(const float *x, int V)
{
    float acc[16];
    for (int l = 0; l < 16; l++)
        acc[l] = x[0];
    int v = 0;
    for (; v + 16 <= V; v += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = x[v + l] > acc[l] ? x[v + l] : acc[l];
    float m = acc[0];
    for (int l = 1; l < 16; l++)
        m = acc[l] > m ? acc[l] : m;
    for (; v < V; v++)
        m = x[v] > m ? x[v] : m;
    return m;
}

/* the first v with x[v] == m, or -1 (m is NaN, or not in x) */
GLLM_CPU_CLONES
static int first_equal(const float *x, int V, float m)
{
    int v = 0;
    for (; v + 16 <= V; v += 16) {
        int any = 0;
        for (int l = 0; l < 16; l++)
            any |= x[v + l] == m;
        if (any)
            break;
    }
    for (; v < V; v++)
        if (x[v] == m)
            return v;
    return -1;
}

/* One row. z: scratch [V] floats; buf: scratch [V] pairs. */
static void sample_one(const float *x, int V, const gllm_sample_params *sp, const int32_t *pen,
                       int n_pen, float *z, pid *buf, int32_t *out_id, float *out_lp,
                       int32_t *top_ids, float *top_lp)
{
    /* the unprocessed distribution: max, log-sum-exp, top-n */
    const float mx = row_max(x, V);
    const double lse = (double)mx + log(sum_exp(x, V, mx, 1.0f));
    const int n_top = sp->n_top;
    if (n_top > 0) {
        /* insertion into a short sorted list: the vocabulary is never sorted */
        int n = 0;
        for (int v = 0; v < V; v++) {
            if (n == n_top && !(x[v] > x[top_ids[n - 1]]))
                continue;
            int i = n < n_top ? n++ : n - 1;
            while (i > 0 && x[v] > x[top_ids[i - 1]]) {
                top_ids[i] = top_ids[i - 1];
                i--;
            }
            top_ids[i] = v;
        }
        for (int i = 0; i < n; i++)
            top_lp[i] = (float)((double)x[top_ids[i]] - lse);
    }
    /* processed logits */
    const float *y = x;
    if (sp->repetition_penalty != 1.0f && n_pen > 0) {
        memcpy(z, x, (size_t)V * sizeof(float));
        const float rp = sp->repetition_penalty;
        for (int i = 0; i < n_pen; i++) {
            const int32_t id = pen[i];
            if (id >= 0 && id < V) /* from x, so a repeated id is penalised once */
                z[id] = x[id] < 0 ? x[id] * rp : x[id] / rp;
        }
        y = z;
    }
    /* the first id of the largest processed logit (as `if (y[v] > y[best])`
     * over v in order would pick it); without a penalty that is x's max */
    int32_t best = y == x ? first_equal(x, V, mx) : -1;
    if (best < 0) {
        best = 0;
        for (int v = 1; v < V; v++)
            if (y[v] > y[best])
                best = v;
    }
    int32_t chosen = best;
    if (sp->temperature > 0) {
        const float inv_t = 1.0f / sp->temperature, ymax = y[best];
        for (int v = 0; v < V; v++) {
            buf[v].p = gllm_cpu_exp((y[v] - ymax) * inv_t); /* p_max = 1 exactly */
            buf[v].id = v;
        }
        /* kept(v): before-or-equal the threshold pair (top-k and top-p) and p >= min_p */
        bool have_thr = false;
        pid thr = {0, 0};
        long n_cand = V;
        if (sp->top_k > 0 && sp->top_k < V) {
            select_first(buf, 0, V, sp->top_k);
            n_cand = sp->top_k;
            if (sp->top_p >= 1.0f) { /* threshold = the last of the first k */
                thr = buf[0];
                for (long i = 1; i < n_cand; i++)
                    if (before(thr, buf[i]))
                        thr = buf[i];
                have_thr = true;
            }
        }
        if (sp->top_p < 1.0f) {
            /* mass of the candidates, then their sorted prefix in growing chunks */
            double kept = 0;
            for (long i = 0; i < n_cand; i++)
                kept += buf[i].p;
            const double target = (double)sp->top_p * kept;
            double cum = 0;
            long done = 0, chunk = 64;
            while (done < n_cand) {
                long end = done + chunk < n_cand ? done + chunk : n_cand;
                select_first(buf, done, n_cand, end);
                qsort(buf + done, (size_t)(end - done), sizeof *buf, pid_cmp);
                long i = done;
                for (; i < end; i++) {
                    cum += buf[i].p;
                    if (cum >= target)
                        break;
                }
                if (i < end) {
                    thr = buf[i];
                    have_thr = true;
                    break;
                }
                done = end;
                chunk *= 2;
            }
            if (!have_thr) { /* rounding: the whole candidate set */
                thr = buf[0];
                for (long i = 1; i < n_cand; i++)
                    if (before(thr, buf[i]))
                        thr = buf[i];
                have_thr = true;
            }
        }
        /* the draw, in id order over the kept set */
        const float minp = sp->min_p > 0 ? sp->min_p : 0.0f;
        double total = 0;
        for (int v = 0; v < V; v++) {
            const float p = gllm_cpu_exp((y[v] - ymax) * inv_t);
            const pid e = {p, v};
            if (p >= minp && (!have_thr || !before(thr, e)))
                total += p;
        }
        const double u = gllm_sample_uniform(sp->seed) * total;
        double cum = 0;
        chosen = best;
        for (int v = 0; v < V; v++) {
            const float p = gllm_cpu_exp((y[v] - ymax) * inv_t);
            const pid e = {p, v};
            if (p >= minp && (!have_thr || !before(thr, e))) {
                cum += p;
                chosen = v;
                if (u < cum)
                    break;
            }
        }
    }
    *out_id = chosen;
    if (out_lp)
        *out_lp = (float)((double)x[chosen] - lse);
}

typedef struct sample_rows_ctx {
    int32_t *out_ids, *top_ids;
    float *out_logprob, *top_lp;
    int max_top, V;
    const float *x;
    const gllm_sample_params *params;
    const int32_t *pen_ids, *pen_off;
    unsigned char *scr;
    size_t stride;
} sample_rows_ctx;

static void sample_rows_range(void *args, long b, long e, int tid)
{
    const sample_rows_ctx *c = args;
    const int V = c->V, max_top = c->max_top;
    for (long n = b; n < e; n++) {
        unsigned char *mine = c->scr + (size_t)tid * c->stride;
        pid *buf = (pid *)mine;
        float *z = (float *)(mine + (size_t)V * sizeof(pid));
        const int32_t *pen = c->pen_off && c->pen_ids ? c->pen_ids + c->pen_off[n] : NULL;
        const int n_pen = pen ? c->pen_off[n + 1] - c->pen_off[n] : 0;
        sample_one(c->x + (size_t)n * V, V, &c->params[n], pen, n_pen, z, buf, &c->out_ids[n],
                   c->out_logprob ? &c->out_logprob[n] : NULL,
                   max_top ? c->top_ids + (size_t)n * max_top : NULL,
                   max_top ? c->top_lp + (size_t)n * max_top : NULL);
    }
}

gllm_status gllm_cpu_sample_rows(gllm_backend *be, int32_t *out_ids, float *out_logprob,
                                 int32_t *top_ids, float *top_lp, int max_top, const void *logits,
                                 int N, int V, const gllm_sample_params *params,
                                 const int32_t *pen_ids, const int32_t *pen_off)
{
    if (!out_ids || !logits || !params || N < 0 || V <= 0 || max_top < 0 ||
        (max_top > 0 && (!top_ids || !top_lp)))
        return gllm_fail(GLLM_ERR_INVALID, "sample_rows: bad arguments (N=%d V=%d max_top=%d)",
                         N, V, max_top);
    for (int n = 0; n < N; n++) {
        const gllm_sample_params *p = &params[n];
        if (!(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) ||
            !(p->min_p >= 0 && p->min_p <= 1) || !(p->repetition_penalty > 0) || p->n_top < 0 ||
            p->n_top > max_top || p->n_top > V)
            return gllm_fail(GLLM_ERR_INVALID,
                             "sample_rows: row %d: temperature %g, top_k %d, top_p %g, min_p %g, "
                             "repetition_penalty %g, n_top %d (max %d) out of range",
                             n, (double)p->temperature, p->top_k, (double)p->top_p,
                             (double)p->min_p, (double)p->repetition_penalty, p->n_top, max_top);
        if (p->repetition_penalty != 1.0f && (!pen_off || (pen_off[n + 1] > pen_off[n] && !pen_ids)))
            return gllm_fail(GLLM_ERR_INVALID, "sample_rows: row %d penalises but has no ids", n);
    }
    const size_t need = (size_t)V * (sizeof(float) + sizeof(pid)) + 64;
    unsigned char *scr = gllm_cpu_scratch(be, need, "sample_rows");
    if (!scr)
        return GLLM_ERR_OOM;
    sample_rows_ctx c = {.out_ids = out_ids, .out_logprob = out_logprob, .top_ids = top_ids,
                         .top_lp = top_lp, .max_top = max_top, .x = logits, .V = V,
                         .params = params, .pen_ids = pen_ids, .pen_off = pen_off, .scr = scr,
                         .stride = gllm_cpu_ctx_of(be)->scratch_stride};
    gllm_cpu_pool_run(gllm_cpu_ctx_of(be)->pool, N, 1, sample_rows_range, &c);
    return GLLM_OK;
}
