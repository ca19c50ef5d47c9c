/* Every op of the CUDA backend against the CPU reference backend on the same fresh
 * random inputs (rounded to bf16 first, so both sides see identical values), at
 * shapes that are not multiples of any tile: relative error <= 1e-2 (bf16 storage),
 * tighter for the fp32 optimizer state. Device outputs are poisoned (NaN bytes)
 * before each run so an unwritten element fails. Each op then runs a second time on
 * the GPU from the same inputs and must give identical bytes (determinism). Also an
 * absurd allocation must fail with GLLM_ERR_OOM naming the buffer and the free memory.
 * Skips without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/backend.h"
#include "test_util.h"

static gllm_backend *cpu, *gpu;

typedef enum { ACT, F32, I32 } kind;

/* One tensor on both backends. `init` holds the host values it is reset to. */
typedef struct buf {
    kind k;
    size_t n;
    float *init;
    int32_t *init_i;
    void *c, *g;
} buf;

static size_t elem_size(gllm_backend *be, kind k)
{
    return k == ACT ? gllm_dtype_size(be->act_dtype) : 4;
}

static void die(const char *what)
{
    printf("FATAL %s: %s\n", what, gllm_last_error());
    exit(1);
}

static void *alloc_on(gllm_backend *be, size_t bytes)
{
    void *p;
    if (be->alloc(be, bytes ? bytes : 4, "test buffer", &p) != GLLM_OK)
        die("alloc");
    return p;
}

static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gllm_bf16_to_f32(gllm_f32_to_bf16(x[i]));
}

static void upload_to(gllm_backend *be, buf *b, void *dst)
{
    gllm_status st;
    if (b->k == ACT)
        st = be->upload_f32(be, dst, b->init, b->n);
    else if (b->k == F32)
        st = be->upload(be, dst, b->init, b->n * 4);
    else
        st = be->upload(be, dst, b->init_i, b->n * 4);
    if (st != GLLM_OK)
        die("upload");
}

/* Random values in [-scale, scale), bf16-representable for activations. */
static buf mk(kind k, size_t n, float scale)
{
    buf b = {k, n, NULL, NULL, NULL, NULL};
    b.init = malloc((n ? n : 1) * sizeof(float));
    test_fill(b.init, n, scale);
    if (k == ACT)
        round_bf16(b.init, n);
    b.c = alloc_on(cpu, n * elem_size(cpu, k));
    b.g = alloc_on(gpu, n * elem_size(gpu, k));
    upload_to(cpu, &b, b.c);
    upload_to(gpu, &b, b.g);
    return b;
}

static buf mk_ints(const int32_t *v, size_t n)
{
    buf b = {I32, n, NULL, NULL, NULL, NULL};
    b.init_i = malloc((n ? n : 1) * sizeof(int32_t));
    memcpy(b.init_i, v, n * sizeof(int32_t));
    b.c = alloc_on(cpu, n * 4);
    b.g = alloc_on(gpu, n * 4);
    upload_to(cpu, &b, b.c);
    upload_to(gpu, &b, b.g);
    return b;
}

/* Outputs: the GPU copy is filled with 0xff bytes (NaN in bf16 and f32). */
static void poison(buf *b)
{
    size_t bytes = b->n * elem_size(gpu, b->k);
    unsigned char *h = malloc(bytes ? bytes : 1);
    memset(h, 0xff, bytes);
    if (gpu->upload(gpu, b->g, h, bytes) != GLLM_OK)
        die("poison");
    free(h);
}

/* Put a buffer back to its initial values on one backend (or poison an output). */
static void reset(gllm_backend *be, buf *b, bool output)
{
    if (output && be == gpu)
        poison(b);
    else if (!output || b->init)
        upload_to(be, b, be == gpu ? b->g : b->c);
}

static float *get(gllm_backend *be, buf *b)
{
    float *h = malloc((b->n ? b->n : 1) * sizeof(float));
    void *src = be == gpu ? b->g : b->c;
    gllm_status st = b->k == ACT ? be->download_f32(be, h, src, b->n)
                                 : be->download(be, h, src, b->n * 4);
    if (st != GLLM_OK)
        die("download");
    return h;
}

static void *get_raw(buf *b)
{
    size_t bytes = b->n * elem_size(gpu, b->k);
    void *h = malloc(bytes ? bytes : 1);
    if (gpu->download(gpu, h, b->g, bytes) != GLLM_OK)
        die("download");
    return h;
}

static void drop(buf *b)
{
    cpu->free(cpu, b->c);
    gpu->free(gpu, b->g);
    free(b->init);
    free(b->init_i);
}

#define D(b) (be == gpu ? (b).g : (b).c)

/* Compare outputs of the CPU run (ref[i]) and the GPU run; keep the GPU bytes of
 * the first GPU run in raw[i] and memcmp the second against them. */
typedef struct outs {
    buf *b[6];
    int n;
    double tol[6];
    float *ref[6];
    void *raw[6];
} outs;

static void collect(outs *o, gllm_backend *be, int pass, const char *what)
{
    if (be->sync(be) != GLLM_OK)
        die("sync");
    for (int i = 0; i < o->n; i++) {
        buf *b = o->b[i];
        if (pass == 0) {
            o->ref[i] = get(cpu, b);
        } else if (pass == 1) {
            float *g = get(gpu, b);
            double e = rel_err(g, o->ref[i], b->n);
            CHECK_MSG(e <= o->tol[i], "%s output %d: rel_err %.3e > %.1e", what, i, e,
                      o->tol[i]);
            free(g);
            o->raw[i] = get_raw(b);
        } else {
            void *r = get_raw(b);
            CHECK_MSG(memcmp(r, o->raw[i], b->n * elem_size(gpu, b->k)) == 0,
                      "%s output %d differs between two GPU runs", what, i);
            free(r);
            free(o->raw[i]);
            free(o->ref[i]);
        }
    }
}

/* The three passes: CPU, GPU, GPU again. */
#define PASSES(o, what, mutable_reset, call)                                      \
    for (int pass = 0; pass < 3; pass++) {                                        \
        gllm_backend *be = pass == 0 ? cpu : gpu;                                 \
        mutable_reset;                                                            \
        CHECK_OK(call);                                                           \
        collect(&(o), be, pass, what);                                            \
    }

static void test_pointwise(size_t n)
{
    char name[64];
    snprintf(name, sizeof name, "pointwise n=%zu", n);
    t_case = name;
    buf a = mk(ACT, n, 3.0f), b = mk(ACT, n, 1.0f), out = mk(ACT, n, 1.0f);
    outs o = {{&out}, 1, {1e-2}, {0}, {0}};
    PASSES(o, "gelu_fwd", reset(be, &out, true), be->gelu_fwd(be, D(out), D(a), n));
    PASSES(o, "gelu_bwd", reset(be, &out, true), be->gelu_bwd(be, D(out), D(a), D(b), n));
    PASSES(o, "add", reset(be, &out, true), be->add(be, D(out), D(a), D(b), n));
    /* in place: out aliases its input (gelu_bwd allows dinp == dout, add allows out == a) */
    PASSES(o, "gelu_bwd in place", reset(be, &out, false),
           be->gelu_bwd(be, D(out), D(a), D(out), n));
    drop(&a);
    drop(&b);
    drop(&out);
}

static void test_swiglu(int N, int I)
{
    char name[64];
    snprintf(name, sizeof name, "swiglu N=%d I=%d", N, I);
    t_case = name;
    buf inp = mk(ACT, (size_t)N * 2 * I, 3.0f), dout = mk(ACT, (size_t)N * I, 1.0f);
    buf out = mk(ACT, (size_t)N * I, 1.0f), dinp = mk(ACT, (size_t)N * 2 * I, 1.0f);
    outs o = {{&out}, 1, {1e-2}, {0}, {0}};
    PASSES(o, "swiglu_fwd", reset(be, &out, true), be->swiglu_fwd(be, D(out), D(inp), N, I));
    outs ob = {{&dinp}, 1, {1e-2}, {0}, {0}};
    PASSES(ob, "swiglu_bwd", reset(be, &dinp, true),
           be->swiglu_bwd(be, D(dinp), D(inp), D(dout), N, I));
    drop(&inp);
    drop(&dout);
    drop(&out);
    drop(&dinp);
}

static void test_bias_bwd(int M, int N)
{
    char name[64];
    snprintf(name, sizeof name, "bias_bwd M=%d N=%d", M, N);
    t_case = name;
    buf dout = mk(ACT, (size_t)M * N, 1.0f), db = mk(F32, N, 1.0f);
    outs o = {{&db}, 1, {1e-4}, {0}, {0}};
    PASSES(o, "bias_bwd", reset(be, &db, false), be->bias_bwd(be, D(db), D(dout), M, N));
    drop(&dout);
    drop(&db);
}

static void test_embed(int N, int C, int V, bool with_wpe)
{
    char name[80];
    snprintf(name, sizeof name, "embed N=%d C=%d V=%d wpe=%d", N, C, V, with_wpe);
    t_case = name;
    int T = N / 3 + 1;
    int32_t *ids = malloc(N * sizeof(int32_t)), *pos = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)(test_rand_u64() % (uint64_t)V); /* V < N: many repeated ids */
        pos[i] = (int32_t)(test_rand_u64() % (uint64_t)T);
    }
    buf bi = mk_ints(ids, N), bp = mk_ints(pos, N);
    buf wte = mk(ACT, (size_t)V * C, 1.0f), wpe = mk(ACT, (size_t)T * C, 1.0f);
    buf out = mk(ACT, (size_t)N * C, 1.0f), dout = mk(ACT, (size_t)N * C, 1.0f);
    buf dwte = mk(F32, (size_t)V * C, 1.0f), dwpe = mk(F32, (size_t)T * C, 1.0f);
    outs o = {{&out}, 1, {1e-2}, {0}, {0}};
    PASSES(o, "embed_fwd", reset(be, &out, true),
           be->embed_fwd(be, D(out), D(bi), D(bp), D(wte), with_wpe ? D(wpe) : NULL, N, C));
    outs ob = {{&dwte, &dwpe}, 2, {1e-4, 1e-4}, {0}, {0}};
    PASSES(ob, "embed_bwd", (reset(be, &dwte, false), reset(be, &dwpe, false)),
           be->embed_bwd(be, D(dwte), with_wpe ? D(dwpe) : NULL, D(dout), D(bi), D(bp), N, C,
                         V));
    free(ids);
    free(pos);
    buf *all[] = {&bi, &bp, &wte, &wpe, &out, &dout, &dwte, &dwpe};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        drop(all[i]);
}

static void test_norms(int N, int C)
{
    char name[64];
    snprintf(name, sizeof name, "norms N=%d C=%d", N, C);
    t_case = name;
    size_t n = (size_t)N * C;
    buf inp = mk(ACT, n, 2.0f), w = mk(ACT, C, 1.0f), b = mk(ACT, C, 0.5f);
    buf out = mk(ACT, n, 1.0f), mean = mk(F32, N, 1.0f), rstd = mk(F32, N, 1.0f);
    buf dout = mk(ACT, n, 1.0f), dinp = mk(ACT, n, 1.0f);
    buf dw = mk(F32, C, 1.0f), db = mk(F32, C, 1.0f);
    /* shift the inputs so the mean is far from zero: layernorm must subtract it */
    for (size_t i = 0; i < n; i++)
        inp.init[i] = gllm_bf16_to_f32(gllm_f32_to_bf16(inp.init[i] + 1.5f));
    reset(cpu, &inp, false);
    reset(gpu, &inp, false);

    outs o = {{&out, &mean, &rstd}, 3, {1e-2, 1e-2, 1e-3}, {0}, {0}};
    PASSES(o, "layernorm_fwd", (reset(be, &out, true), reset(be, &mean, true), reset(be, &rstd, true)),
           be->layernorm_fwd(be, D(out), D(mean), D(rstd), D(inp), D(w), D(b), N, C, 1e-5f));
    /* the backward reads the CPU's saved statistics on both backends */
    float *mh = get(cpu, &mean), *rh = get(cpu, &rstd);
    memcpy(mean.init, mh, N * sizeof(float));
    memcpy(rstd.init, rh, N * sizeof(float));
    free(mh);
    free(rh);
    reset(cpu, &mean, false), reset(gpu, &mean, false);
    reset(cpu, &rstd, false), reset(gpu, &rstd, false);
    outs ob = {{&dinp, &dw, &db}, 3, {1e-2, 1e-3, 1e-3}, {0}, {0}};
    PASSES(ob, "layernorm_bwd",
           (reset(be, &dinp, false), reset(be, &dw, false), reset(be, &db, false)),
           be->layernorm_bwd(be, D(dinp), D(dw), D(db), D(dout), D(inp), D(w), D(mean), D(rstd),
                             N, C));

    outs orms = {{&out, &rstd}, 2, {1e-2, 1e-3}, {0}, {0}};
    PASSES(orms, "rmsnorm_fwd", (reset(be, &out, true), reset(be, &rstd, true)),
           be->rmsnorm_fwd(be, D(out), D(rstd), D(inp), D(w), N, C, 1e-6f));
    rh = get(cpu, &rstd);
    memcpy(rstd.init, rh, N * sizeof(float));
    free(rh);
    reset(cpu, &rstd, false), reset(gpu, &rstd, false);
    outs ormb = {{&dinp, &dw}, 2, {1e-2, 1e-3}, {0}, {0}};
    PASSES(ormb, "rmsnorm_bwd", (reset(be, &dinp, false), reset(be, &dw, false)),
           be->rmsnorm_bwd(be, D(dinp), D(dw), D(dout), D(inp), D(w), D(rstd), N, C));
    buf *all[] = {&inp, &w, &b, &out, &mean, &rstd, &dout, &dinp, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        drop(all[i]);
}

/* q heads at the start of each row, k heads after them */
static gllm_status rope_qk(gllm_backend *be, bool fwd, char *qkv, const int32_t *pos,
                           const gllm_rope_args *q, const gllm_rope_args *k, size_t koff)
{
    gllm_status (*op)(gllm_backend *, void *, const int32_t *, const gllm_rope_args *) =
        fwd ? be->rope_fwd : be->rope_bwd;
    gllm_status st = op(be, qkv, pos, q);
    return st != GLLM_OK ? st : op(be, qkv + koff * gllm_dtype_size(be->act_dtype), pos, k);
}

static void test_rope(int n_tokens, int Hq, int Hkv, int hd, int rot, float factor)
{
    char name[80];
    snprintf(name, sizeof name, "rope N=%d H=%d/%d hd=%d rot=%d", n_tokens, Hq, Hkv, hd, rot);
    t_case = name;
    int stride = (Hq + 2 * Hkv) * hd;
    int32_t *pos = malloc(n_tokens * sizeof(int32_t));
    for (int i = 0; i < n_tokens; i++)
        pos[i] = (int32_t)(test_rand_u64() % 4096);
    buf bp = mk_ints(pos, n_tokens), qkv = mk(ACT, (size_t)n_tokens * stride, 1.0f);
    buf inv = mk(F32, rot / 2, 1.0f);
    for (int i = 0; i < rot / 2; i++)
        inv.init[i] = powf(10000.0f, -2.0f * i / rot);
    reset(cpu, &inv, false), reset(gpu, &inv, false);
    gllm_rope_args ra = {n_tokens, Hq, hd, rot, stride, NULL, factor};
    gllm_rope_args rk = {n_tokens, Hkv, hd, rot, stride, NULL, factor};
    outs o = {{&qkv}, 1, {1e-2}, {0}, {0}};
    size_t koff = (size_t)Hq * hd;
    PASSES(o, "rope_fwd", (reset(be, &qkv, false), ra.inv_freq = D(inv), rk.inv_freq = D(inv)),
           rope_qk(be, true, D(qkv), D(bp), &ra, &rk, koff));
    PASSES(o, "rope_bwd", (reset(be, &qkv, false), ra.inv_freq = D(inv), rk.inv_freq = D(inv)),
           rope_qk(be, false, D(qkv), D(bp), &ra, &rk, koff));
    free(pos);
    drop(&bp);
    drop(&qkv);
    drop(&inv);
}

/* neginf: -inf logits (a masked vocabulary) at every 8th column, which is the
 * first logit each GPU thread reads, and in a block at each row's end; targets
 * stay on finite logits. */
static void test_xent(int N, int V, float scale, bool neginf)
{
    char name[80];
    snprintf(name, sizeof name, "xent N=%d V=%d scale=%g%s", N, V, (double)scale,
             neginf ? " -inf logits" : "");
    t_case = name;
    int32_t *tg = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        tg[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
        if (neginf)
            tg[i] = tg[i] / 8 * 8 + 1 < V - V / 4 ? tg[i] / 8 * 8 + 1 : 1;
    }
    buf bt = mk_ints(tg, N), logits = mk(ACT, (size_t)N * V, 6.0f), mask = mk(F32, N, 1.0f);
    buf loss = mk(F32, N, 1.0f);
    if (neginf) {
        for (int i = 0; i < N; i++)
            for (int v = 0; v < V; v++)
                if (v % 8 == 0 || v >= V - V / 4)
                    logits.init[(size_t)i * V + v] = -INFINITY;
        reset(cpu, &logits, false), reset(gpu, &logits, false);
    }
    for (int i = 0; i < N; i++)
        mask.init[i] = (i % 3 == 1) ? 0.0f : 1.0f;
    reset(cpu, &mask, false), reset(gpu, &mask, false);
    outs o = {{&loss, &logits}, scale != 0 ? 2 : 1, {1e-3, 1e-2}, {0}, {0}};
    PASSES(o, "xent_fwd_bwd", (reset(be, &loss, true), reset(be, &logits, false)),
           be->xent_fwd_bwd(be, D(loss), D(logits), D(bt), D(mask), N, V, scale));
    free(tg);
    drop(&bt);
    drop(&logits);
    drop(&mask);
    drop(&loss);
}

/* Per-row sampling: every row its own parameters (greedy, temperature, top-k,
 * top-p, min-p, repetition penalty), against the CPU on the same bf16 logits:
 * greedy ids exact, sampled ids equal but for draws within rounding of a
 * boundary, logprobs and top-5 logprobs within 2e-3 (bf16 logits, fp32 sums). */
static void test_sample_rows(int N, int V)
{
    char name[64];
    snprintf(name, sizeof name, "sample_rows N=%d V=%d", N, V);
    t_case = name;
    buf logits = mk(ACT, (size_t)N * V, 4.0f);
    gllm_sample_params *hp = malloc((size_t)N * sizeof *hp);
    int32_t *pen = malloc((size_t)N * 8 * 4), *off = malloc(((size_t)N + 1) * 4);
    for (int i = 0; i < N; i++) {
        hp[i] = (gllm_sample_params){.temperature = i % 6 == 0 ? 0.0f : 0.5f + 0.1f * (i % 7),
                                     .top_k = i % 6 == 1 ? 40 : 0,
                                     .top_p = i % 6 == 2 ? 0.9f : 1.0f,
                                     .min_p = i % 6 == 3 ? 0.05f : 0.0f,
                                     .repetition_penalty = i % 6 == 4 ? 1.3f : 1.0f,
                                     .n_top = 5, .seed = test_rand_u64()};
        off[i] = i * 8;
        for (int k = 0; k < 8; k++)
            pen[i * 8 + k] = (int32_t)(test_rand_u64() % (uint64_t)V);
    }
    off[N] = N * 8;
    const size_t pb = (size_t)N * sizeof *hp;
    void *pc = alloc_on(cpu, pb), *pg = alloc_on(gpu, pb);
    CHECK_OK(cpu->upload(cpu, pc, hp, pb));
    CHECK_OK(gpu->upload(gpu, pg, hp, pb));
    buf bpen = mk_ints(pen, (size_t)N * 8), boff = mk_ints(off, (size_t)N + 1);
    int32_t *zero = calloc((size_t)N * 5, sizeof(int32_t));
    buf ids = mk_ints(zero, N), tids = mk_ints(zero, (size_t)N * 5);
    buf lp = mk(F32, N, 1.0f), tlp = mk(F32, (size_t)N * 5, 1.0f);
    int32_t *gid[3], *gtid[3];
    float *glp[3], *gtlp[3];
    for (int pass = 0; pass < 3; pass++) {
        gllm_backend *be = pass == 0 ? cpu : gpu;
        reset(be, &ids, true), reset(be, &tids, true), reset(be, &lp, true), reset(be, &tlp, true);
        CHECK_OK(be->sample_rows(be, D(ids), D(lp), D(tids), D(tlp), 5, D(logits), N, V,
                                 be == gpu ? pg : pc, D(bpen), D(boff)));
        gid[pass] = (int32_t *)get(be, &ids);
        gtid[pass] = (int32_t *)get(be, &tids);
        glp[pass] = get(be, &lp);
        gtlp[pass] = get(be, &tlp);
    }
    int differ = 0, greedy_differ = 0, repeat = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        differ += gid[0][i] != gid[1][i];
        greedy_differ += hp[i].temperature == 0 && gid[0][i] != gid[1][i];
        repeat += gid[1][i] != gid[2][i];
        for (int k = 0; k < 5; k++)
            worst = fmax(worst, fabs((double)gtlp[0][i * 5 + k] - gtlp[1][i * 5 + k]));
        if (gid[0][i] == gid[1][i])
            worst = fmax(worst, fabs((double)glp[0][i] - glp[1][i]));
    }
    CHECK_MSG(greedy_differ == 0, "%d greedy rows differ from the CPU", greedy_differ);
    CHECK_MSG(differ <= N / 32, "%d of %d sampled ids differ from the CPU", differ, N);
    CHECK_MSG(repeat == 0, "%d of %d ids differ between two GPU runs", repeat, N);
    CHECK_MSG(worst <= 2e-3, "logprobs differ from the CPU by %.2e", worst);
    printf("  %s: %d of %d ids differ from the CPU, logprobs within %.1e\n", name, differ, N,
           worst);
    for (int p = 0; p < 3; p++)
        free(gid[p]), free(gtid[p]), free(glp[p]), free(gtlp[p]);
    cpu->free(cpu, pc);
    gpu->free(gpu, pg);
    free(hp), free(pen), free(off), free(zero);
    drop(&logits), drop(&bpen), drop(&boff), drop(&ids), drop(&tids), drop(&lp), drop(&tlp);
}

static void test_sample(int N, int V, float temp, int top_k, float top_p)
{
    char name[96];
    snprintf(name, sizeof name, "sample N=%d V=%d T=%g k=%d p=%g", N, V, (double)temp, top_k,
             (double)top_p);
    t_case = name;
    buf logits = mk(ACT, (size_t)N * V, 4.0f);
    int32_t *zero = calloc(N, sizeof(int32_t));
    buf ids = mk_ints(zero, N);
    uint64_t *seeds = malloc(N * sizeof(uint64_t));
    for (int i = 0; i < N; i++)
        seeds[i] = test_rand_u64();
    void *sc = alloc_on(cpu, N * 8), *sg = alloc_on(gpu, N * 8);
    CHECK_OK(cpu->upload(cpu, sc, seeds, N * 8));
    CHECK_OK(gpu->upload(gpu, sg, seeds, N * 8));
    gllm_sample_args a = {temp, top_k, top_p};
    int32_t *got[3];
    for (int pass = 0; pass < 3; pass++) {
        gllm_backend *be = pass == 0 ? cpu : gpu;
        reset(be, &ids, false);
        CHECK_OK(be->sample(be, D(ids), D(logits), N, V, &a, be == gpu ? sg : sc));
        got[pass] = (int32_t *)get(be, &ids);
    }
    int differ = 0, repeat = 0;
    for (int i = 0; i < N; i++) {
        differ += got[0][i] != got[1][i];
        repeat += got[1][i] != got[2][i];
    }
    /* Identical inputs, generator and rules: only a draw that lands within rounding
     * of a cumulative boundary may differ. */
    CHECK_MSG(differ <= N / 64, "%d of %d sampled ids differ from the CPU", differ, N);
    CHECK_MSG(repeat == 0, "%d of %d ids differ between two GPU runs", repeat, N);
    for (int p = 0; p < 3; p++)
        free(got[p]);
    free(zero);
    free(seeds);
    cpu->free(cpu, sc);
    gpu->free(gpu, sg);
    drop(&logits);
    drop(&ids);
}

static void test_sumsq(size_t n)
{
    char name[64];
    snprintf(name, sizeof name, "sumsq n=%zu", n);
    t_case = name;
    buf x = mk(F32, n, 1.0f), out = mk(F32, 1, 1.0f);
    outs o = {{&out}, 1, {1e-5}, {0}, {0}};
    PASSES(o, "sumsq", reset(be, &out, true), be->sumsq(be, D(out), D(x), n));
    drop(&x);
    drop(&out);
}

static void test_adamw(void)
{
    t_case = "adamw";
    /* segments with odd offsets and sizes, a gap that no segment covers (a ZeRO-1
     * shard updates only its own ranges), one big segment spanning many chunks */
    gllm_param_segment segs[] = {
        {0, 1, 0.0f}, {1, 37, 0.1f}, {40, 4097, 0.01f}, {5000, 70001, 0.1f}, {75003, 3, 0.0f}};
    int ns = sizeof segs / sizeof *segs;
    size_t n = 75010;
    buf params = mk(ACT, n, 1.0f), master = mk(F32, n, 1.0f), grads = mk(F32, n, 1.0f);
    buf m = mk(F32, n, 0.1f), v = mk(F32, n, 0.01f);
    for (size_t i = 0; i < n; i++) {
        v.init[i] = fabsf(v.init[i]) + 1e-4f;
        params.init[i] = gllm_bf16_to_f32(gllm_f32_to_bf16(master.init[i]));
    }
    gllm_adamw_args a = {1e-3f, 0.9f, 0.95f, 1e-8f, 7, 0.5f};
    /* the CPU keeps its (F32) params as the master copy: master == NULL there */
    outs o = {{&params, &m, &v, &master}, 4, {1e-2, 1e-5, 1e-5, 1e-5}, {0}, {0}};
    for (int pass = 0; pass < 3; pass++) {
        gllm_backend *be = pass == 0 ? cpu : gpu;
        if (be == cpu) {
            memcpy(params.init, master.init, n * sizeof(float));
            reset(cpu, &params, false);
        } else {
            for (size_t i = 0; i < n; i++)
                params.init[i] = gllm_bf16_to_f32(gllm_f32_to_bf16(master.init[i]));
            reset(gpu, &params, false);
        }
        reset(be, &master, false), reset(be, &m, false), reset(be, &v, false);
        CHECK_OK(be->adamw(be, D(params), be == gpu ? (float *)master.g : NULL, D(grads), D(m),
                           D(v), segs, ns, &a));
        if (be == cpu) {
            /* the CPU's master is its params buffer */
            float *p = get(cpu, &params);
            CHECK_OK(cpu->upload(cpu, master.c, p, n * 4));
            free(p);
        }
        collect(&o, be, pass, "adamw");
    }
    /* the gap [38, 40) and [4137, 5000) must be untouched on the GPU */
    float *mg = get(gpu, &master);
    CHECK(mg[38] == master.init[38] && mg[39] == master.init[39] && mg[4500] == master.init[4500]);
    free(mg);
    drop(&params);
    drop(&master);
    drop(&grads);
    drop(&m);
    drop(&v);
}

static void test_matmul_attention(void)
{
    t_case = "matmul + attention through the table";
    int M = 37, N = 65, K = 129;
    buf A = mk(ACT, (size_t)M * K, 1.0f), W = mk(ACT, (size_t)N * K, 1.0f);
    buf bias = mk(ACT, N, 1.0f), C = mk(ACT, (size_t)M * N, 1.0f);
    gllm_matmul_args ma = {0};
    ma.M = M, ma.N = N, ma.K = K, ma.trans_b = true, ma.alpha = 1.0f, ma.bias = NULL;
    ma.epilogue = GLLM_EPI_GELU, ma.batch = 1;
    outs o = {{&C}, 1, {1e-2}, {0}, {0}};
    PASSES(o, "matmul", (reset(be, &C, true), ma.bias = D(bias)),
           be->matmul(be, D(C), D(A), D(W), &ma));
    drop(&A);
    drop(&W);
    drop(&bias);
    drop(&C);

    gllm_attn_shape s = {2, 45, 4, 2, 64, 0, 0.125f};
    int Ntok = s.B * s.T, row = (s.Hq + 2 * s.Hkv) * s.D;
    int32_t *pos = malloc(Ntok * sizeof(int32_t));
    for (int b = 0; b < s.B; b++)
        for (int t = 0; t < s.T; t++)
            pos[b * s.T + t] = t < 20 ? t : t - 20; /* two packed documents per row */
    buf bp = mk_ints(pos, Ntok), qkv = mk(ACT, (size_t)Ntok * row, 1.0f);
    buf out = mk(ACT, (size_t)Ntok * s.Hq * s.D, 1.0f), lse = mk(F32, (size_t)Ntok * s.Hq, 1.0f);
    buf dout = mk(ACT, (size_t)Ntok * s.Hq * s.D, 1.0f), dqkv = mk(ACT, (size_t)Ntok * row, 1.0f);
    outs oa = {{&out, &lse}, 2, {1e-2, 1e-3}, {0}, {0}};
    PASSES(oa, "attention_fwd", (reset(be, &out, true), reset(be, &lse, true)),
           be->attention_fwd(be, D(out), D(lse), D(qkv), D(bp), &s));
    float *oh = get(cpu, &out), *lh = get(cpu, &lse);
    memcpy(out.init, oh, out.n * sizeof(float));
    memcpy(lse.init, lh, lse.n * sizeof(float));
    round_bf16(out.init, out.n);
    free(oh);
    free(lh);
    reset(cpu, &out, false), reset(gpu, &out, false), reset(cpu, &lse, false), reset(gpu, &lse, false);
    outs ob = {{&dqkv}, 1, {1e-2}, {0}, {0}};
    PASSES(ob, "attention_bwd", reset(be, &dqkv, true),
           be->attention_bwd(be, D(dqkv), D(dout), D(qkv), D(out), D(lse), D(bp), &s));
    free(pos);
    buf *all[] = {&bp, &qkv, &out, &lse, &dout, &dqkv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        drop(all[i]);
}

static void test_oom(void)
{
    t_case = "out of memory";
    void *p = NULL;
    CHECK_ERR(gpu->alloc(gpu, (size_t)1 << 50, "absurd test buffer", &p), GLLM_ERR_OOM,
              "absurd test buffer");
    CHECK(strstr(gllm_last_error(), "free") != NULL);
    CHECK(p == NULL);
    /* the failed allocation leaves the backend usable */
    CHECK_OK(gpu->alloc(gpu, 1024, "after oom", &p));
    gpu->free(gpu, p);
}

int main(void)
{
    gllm_status st = gllm_backend_open("cuda", &gpu);
    if (st != GLLM_OK) {
        char why[1200];
        snprintf(why, sizeof why, "no CUDA backend: %s", gllm_last_error());
        test_skip(why);
    }
    if (gllm_backend_cpu_create(2, &cpu) != GLLM_OK)
        die("cpu backend");
    test_seed();

    size_t pw[] = {1, 37, 4099, 100000};
    for (size_t i = 0; i < sizeof pw / sizeof *pw; i++)
        test_pointwise(pw[i]);
    test_swiglu(1, 1);
    test_swiglu(37, 65);
    test_swiglu(64, 1024);
    test_bias_bwd(1, 1);
    test_bias_bwd(37, 65);
    test_bias_bwd(1000, 771);
    test_embed(5, 8, 3, true);
    test_embed(300, 129, 50, false);
    test_embed(1000, 256, 97, true);
    test_norms(1, 8);
    test_norms(37, 65);
    test_norms(130, 768);
    test_norms(17, 4099);
    test_rope(1, 1, 1, 8, 8, 1.0f);
    test_rope(37, 4, 2, 64, 64, 1.0f);
    test_rope(50, 6, 2, 80, 40, 1.2f);
    test_rope(20, 8, 8, 128, 128, 1.0f);
    test_xent(1, 5, 1.0f, false);
    test_xent(37, 1001, 0.0f, false);
    test_xent(37, 1001, 1.0f / 37, false);
    test_xent(16, 50304, 0.5f, false);
    test_xent(37, 1001, 1.0f / 37, true);
    test_xent(16, 50304, 0.5f, true);
    test_sample(64, 1000, 0.0f, 0, 1.0f);
    test_sample_rows(96, 1000);
    test_sample_rows(64, 49152);
    test_sample(64, 1000, 1.0f, 0, 1.0f);
    test_sample(64, 1000, 0.7f, 50, 1.0f);
    test_sample(64, 1000, 1.0f, 0, 0.9f);
    test_sample(64, 5003, 1.3f, 40, 0.8f);
    test_sumsq(1);
    test_sumsq(1000);
    test_sumsq((1u << 20) + 3);
    test_adamw();
    test_matmul_attention();
    test_oom();

    cpu->destroy(cpu);
    gpu->destroy(gpu);
    return test_summary();
}
