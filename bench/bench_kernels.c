/* Memory-bound kernel benchmark of the CUDA backend: AdamW against a device-to-device
 * copy of the same number of bytes (measured in the same run), and the bandwidth
 * that norms, cross-entropy, pointwise ops and sumsq reach, as a ratio of the copy
 * bandwidth of a large buffer.
 *
 *   bench_kernels [--out PREFIX] [--reps N] [--small]
 *
 * Bytes counted are the fewest each op must move (every input read once, every
 * output written once). Timing: host clock around `reps` queued launches between
 * two synchronisations (so launch gaps are amortised), seven batches after a
 * warm-up, median. Inputs are random, never zeros. Prints a markdown table; with
 * --out also writes PREFIX.md and PREFIX.json. Without a GPU it says so and exits 0. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gllm/backend.h"
#include "bench_util.h"

static gllm_backend *be;
static int reps = 20;

typedef struct result {
    char kernel[48], shape[64], baseline[32];
    double ms, gbs, base_gbs;
} result;

static result rows[64];
static int n_rows;

static void die(const char *what)
{
    fprintf(stderr, "bench_kernels: %s: %s\n", what, gllm_last_error());
    exit(1);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float randf(void) { return bench_randf(&rng); }

/* n elements of random values in [-scale, scale) (act dtype, or F32 when f32). */
static void *dev_random(size_t n, bool f32, float scale, const char *what)
{
    size_t es = f32 ? 4 : gllm_dtype_size(be->act_dtype);
    void *p;
    if (be->alloc(be, n * es, what, &p) != GLLM_OK)
        die("alloc");
    size_t chunk = (size_t)1 << 22;
    float *h = malloc(chunk * sizeof(float));
    for (size_t i = 0; i < chunk; i++)
        h[i] = scale * randf();
    /* the chunk repeats through the buffer: random values, cheap to fill */
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        gllm_status st = f32 ? be->upload(be, (char *)p + off * 4, h, k * 4)
                             : be->upload_f32(be, (char *)p + off * es, h, k);
        if (st != GLLM_OK)
            die("upload");
    }
    free(h);
    return p;
}

static void *dev_ints(size_t n, int mod)
{
    int32_t *h = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        h[i] = (int32_t)((unsigned)(randf() * 1e6f + 2e6f) % (unsigned)mod);
    void *p;
    if (be->alloc(be, n * 4, "bench ints", &p) != GLLM_OK || be->upload(be, p, h, n * 4) != GLLM_OK)
        die("ints");
    free(h);
    return p;
}

/* Median milliseconds per call of `fn(arg)`. */
typedef gllm_status (*op_fn)(void *arg);
static double time_op(op_fn fn, void *arg)
{
    for (int i = 0; i < 3; i++)
        if (fn(arg) != GLLM_OK)
            die("warm-up");
    if (be->sync(be) != GLLM_OK)
        die("sync");
    double t[7];
    for (int b = 0; b < 7; b++) {
        double t0 = bench_now_s();
        for (int i = 0; i < reps; i++)
            if (fn(arg) != GLLM_OK)
                die("run");
        if (be->sync(be) != GLLM_OK)
            die("sync");
        t[b] = (bench_now_s() - t0) * 1e3 / reps;
    }
    return bench_median(t, 7);
}

static void add_row(const char *kernel, const char *shape, double ms, double bytes,
                    const char *baseline, double base_gbs)
{
    result *r = &rows[n_rows++];
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel);
    snprintf(r->shape, sizeof r->shape, "%s", shape);
    snprintf(r->baseline, sizeof r->baseline, "%s", baseline);
    r->ms = ms;
    r->gbs = bytes / (ms * 1e-3) / 1e9;
    r->base_gbs = base_gbs;
    printf("%-16s %-28s %9.4f ms %8.1f GB/s  (%s %.1f GB/s, ratio %.2f)\n", kernel, shape, ms,
           r->gbs, baseline, base_gbs, r->gbs / base_gbs);
    fflush(stdout);
}

/* ---------------------------------------------------------------- ops */
typedef struct copy_arg { void *dst, *src; size_t bytes; } copy_arg;
static gllm_status do_copy(void *p)
{
    copy_arg *a = p;
    return be->copy(be, a->dst, a->src, a->bytes);
}

static double copy_gbs(size_t bytes)
{
    copy_arg a = {dev_random(bytes / 4, true, 1, "copy dst"), dev_random(bytes / 4, true, 1, "copy src"),
                  bytes / 4 * 4};
    double ms = time_op(do_copy, &a);
    be->free(be, a.dst);
    be->free(be, a.src);
    return 2.0 * a.bytes / (ms * 1e-3) / 1e9;
}

typedef struct adamw_arg {
    void *params;
    float *master, *grads, *m, *v;
    gllm_param_segment *segs;
    int n_segs;
    gllm_adamw_args a;
} adamw_arg;
static gllm_status do_adamw(void *p)
{
    adamw_arg *a = p;
    a->a.step++;
    return be->adamw(be, a->params, a->master, a->grads, a->m, a->v, a->segs, a->n_segs, &a->a);
}

static void bench_adamw(const char *name, size_t n_params, int n_tensors)
{
    adamw_arg a;
    a.params = dev_random(n_params, false, 1, "params");
    a.master = dev_random(n_params, true, 1, "master");
    a.grads = dev_random(n_params, true, 1, "grads");
    a.m = dev_random(n_params, true, 0.1f, "adam m");
    a.v = dev_random(n_params, true, 0.1f, "adam v"); /* v < 0 would be NaN, not slower */
    a.segs = calloc(n_tensors, sizeof *a.segs);
    a.n_segs = n_tensors;
    size_t per = n_params / n_tensors;
    for (int i = 0; i < n_tensors; i++) {
        a.segs[i].offset = per * i;
        a.segs[i].n = i == n_tensors - 1 ? n_params - per * i : per;
        a.segs[i].weight_decay = i % 2 ? 0.1f : 0.0f;
    }
    gllm_adamw_args h = {1e-4f, 0.9f, 0.95f, 1e-8f, 0, 1.0f};
    a.a = h;
    double ms = time_op(do_adamw, &a);
    /* 16 bytes read (grad, m, v, master) + 14 written (m, v, master, bf16 param) */
    double bytes = 30.0 * n_params;
    double base = copy_gbs((size_t)(bytes / 2));
    char shape[64];
    snprintf(shape, sizeof shape, "%s: %zuM params, %d tensors", name, n_params >> 20, n_tensors);
    add_row("adamw", shape, ms, bytes, "copy same bytes", base);
    be->free(be, a.params);
    be->free(be, a.master);
    be->free(be, a.grads);
    be->free(be, a.m);
    be->free(be, a.v);
    free(a.segs);
}

typedef struct norm_arg {
    void *out, *inp, *w, *b, *dout, *dinp;
    float *mean, *rstd, *dw, *db;
    int N, C;
} norm_arg;
static gllm_status do_ln_fwd(void *p)
{
    norm_arg *a = p;
    return be->layernorm_fwd(be, a->out, a->mean, a->rstd, a->inp, a->w, a->b, a->N, a->C, 1e-5f);
}
static gllm_status do_ln_bwd(void *p)
{
    norm_arg *a = p;
    return be->layernorm_bwd(be, a->dinp, a->dw, a->db, a->dout, a->inp, a->w, a->mean, a->rstd,
                             a->N, a->C);
}
static gllm_status do_rms_fwd(void *p)
{
    norm_arg *a = p;
    return be->rmsnorm_fwd(be, a->out, a->rstd, a->inp, a->w, a->N, a->C, 1e-6f);
}
static gllm_status do_rms_bwd(void *p)
{
    norm_arg *a = p;
    return be->rmsnorm_bwd(be, a->dinp, a->dw, a->dout, a->inp, a->w, a->rstd, a->N, a->C);
}

static void bench_norms(int N, int C, double base)
{
    size_t n = (size_t)N * C, es = gllm_dtype_size(be->act_dtype);
    norm_arg a = {dev_random(n, false, 1, "out"), dev_random(n, false, 2, "inp"),
                  dev_random(C, false, 1, "w"), dev_random(C, false, 1, "b"),
                  dev_random(n, false, 1, "dout"), dev_random(n, false, 1e-3f, "dinp"),
                  dev_random(N, true, 1, "mean"), dev_random(N, true, 1, "rstd"),
                  dev_random(C, true, 1, "dw"), dev_random(C, true, 1, "db"), N, C};
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d C=%d", N, C);
    add_row("layernorm_fwd", shape, time_op(do_ln_fwd, &a), 2.0 * n * es, "copy", base);
    /* the saved statistics must be real for the backward: recompute them first */
    if (do_ln_fwd(&a) != GLLM_OK)
        die("layernorm_fwd");
    /* reads dout, inp, dinp; writes dinp */
    add_row("layernorm_bwd", shape, time_op(do_ln_bwd, &a), 4.0 * n * es, "copy", base);
    add_row("rmsnorm_fwd", shape, time_op(do_rms_fwd, &a), 2.0 * n * es, "copy", base);
    if (do_rms_fwd(&a) != GLLM_OK)
        die("rmsnorm_fwd");
    add_row("rmsnorm_bwd", shape, time_op(do_rms_bwd, &a), 4.0 * n * es, "copy", base);
    void *all[] = {a.out, a.inp, a.w, a.b, a.dout, a.dinp, a.mean, a.rstd, a.dw, a.db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        be->free(be, all[i]);
}

typedef struct xent_arg {
    float *loss, *mask;
    void *logits;
    int32_t *targets;
    int N, V;
} xent_arg;
static gllm_status do_xent(void *p)
{
    xent_arg *a = p;
    /* The gradient overwrites the logits: the next call reads gradients, which is as
     * fast as logits (bf16 values of similar range; no data-dependent branches). */
    return be->xent_fwd_bwd(be, a->loss, a->logits, a->targets, a->mask, a->N, a->V, 1.0f / a->N);
}

static void bench_xent(int N, int V, double base)
{
    size_t n = (size_t)N * V;
    xent_arg a = {dev_random(N, true, 1, "loss"), dev_random(N, true, 1, "mask"),
                  dev_random(n, false, 4, "logits"), dev_ints(N, V), N, V};
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d V=%d", N, V);
    add_row("xent_fwd_bwd", shape, time_op(do_xent, &a),
            2.0 * n * gllm_dtype_size(be->act_dtype), "copy", base);
    be->free(be, a.loss);
    be->free(be, a.mask);
    be->free(be, a.logits);
    be->free(be, a.targets);
}

typedef struct pw_arg {
    void *out, *a, *b;
    float *f;
    size_t n;
    int N, I;
} pw_arg;
static gllm_status do_gelu(void *p)
{
    pw_arg *a = p;
    return be->gelu_fwd(be, a->out, a->a, a->n);
}
static gllm_status do_add(void *p)
{
    pw_arg *a = p;
    return be->add(be, a->out, a->a, a->b, a->n);
}
static gllm_status do_swiglu(void *p)
{
    pw_arg *a = p;
    return be->swiglu_fwd(be, a->out, a->a, a->N, a->I);
}
static gllm_status do_sumsq(void *p)
{
    pw_arg *a = p;
    return be->sumsq(be, a->f, a->f, a->n);
}

static void bench_pointwise(int N, int I, double base)
{
    size_t n = (size_t)N * I, es = gllm_dtype_size(be->act_dtype);
    pw_arg a = {dev_random(n, false, 1, "out"), dev_random(2 * n, false, 3, "a"),
                dev_random(n, false, 1, "b"), NULL, n, N, I};
    char shape[64];
    snprintf(shape, sizeof shape, "%zuM elements", n >> 20);
    add_row("gelu_fwd", shape, time_op(do_gelu, &a), 2.0 * n * es, "copy", base);
    add_row("add", shape, time_op(do_add, &a), 3.0 * n * es, "copy", base);
    snprintf(shape, sizeof shape, "N=%d I=%d", N, I);
    add_row("swiglu_fwd", shape, time_op(do_swiglu, &a), 3.0 * n * es, "copy", base);
    be->free(be, a.out);
    be->free(be, a.a);
    be->free(be, a.b);
    pw_arg s = {NULL, NULL, NULL, dev_random((size_t)124 << 20, true, 1, "grads"),
                (size_t)124 << 20, 0, 0};
    add_row("sumsq", "124M floats", time_op(do_sumsq, &s), 4.0 * s.n, "copy", base);
    be->free(be, s.f);
}

static void write_out(const char *prefix, double copy_big)
{
    char path[1024];
    snprintf(path, sizeof path, "%s.md", prefix);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_kernels: cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "Large device-to-device copy: %.1f GB/s (bytes read + written)\n\n", copy_big);
    fprintf(f, "| kernel | shape | time ms | GB/s | baseline | baseline GB/s | ratio |\n");
    fprintf(f, "|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++)
        fprintf(f, "| %s | %s | %.4f | %.1f | %s | %.1f | %.2f |\n", rows[i].kernel, rows[i].shape,
                rows[i].ms, rows[i].gbs, rows[i].baseline, rows[i].base_gbs,
                rows[i].gbs / rows[i].base_gbs);
    fclose(f);
    snprintf(path, sizeof path, "%s.json", prefix);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_kernels: cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "{\"copy_gbs\": %.3f, \"rows\": [", copy_big);
    for (int i = 0; i < n_rows; i++)
        fprintf(f, "%s\n {\"kernel\": \"%s\", \"shape\": \"%s\", \"ms\": %.6f, \"gbs\": %.3f, "
                   "\"baseline\": \"%s\", \"baseline_gbs\": %.3f}",
                i ? "," : "", rows[i].kernel, rows[i].shape, rows[i].ms, rows[i].gbs,
                rows[i].baseline, rows[i].base_gbs);
    fprintf(f, "\n]}\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    bool small = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--small") == 0)
            small = true;
        else {
            fprintf(stderr, "usage: bench_kernels [--out PREFIX] [--reps N] [--small]\n");
            return 2;
        }
    }
    if (gllm_backend_open("cuda", &be) != GLLM_OK) {
        printf("bench_kernels: no CUDA backend (%s); nothing to measure\n", gllm_last_error());
        return 0;
    }
    if (reps < 1)
        reps = 1;
    double copy_big = copy_gbs((size_t)1 << 30);
    printf("device-to-device copy, 1 GiB: %.1f GB/s (read + write)\n", copy_big);
    bench_adamw("gpt2-124m", (size_t)124 << 20, 148);
    if (!small)
        bench_adamw("llama-3.2-1b", (size_t)1236 << 20, 146);
    int C[] = {768, 2048, 4096};
    for (int i = 0; i < 3; i++)
        bench_norms(8192, C[i], copy_big);
    bench_xent(8192, 50304, copy_big);
    if (!small)
        bench_xent(4096, 128256, copy_big);
    bench_pointwise(8192, 8192, copy_big);
    if (out)
        write_out(out, copy_big);
    be->destroy(be);
    return 0;
}
