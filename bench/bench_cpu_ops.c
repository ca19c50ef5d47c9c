/* Op micro-benchmark of the CPU reference backend at the shapes of a small
 * Llama training step (B*T tokens, model width C, GQA heads).
 *
 *   bench_cpu_ops [B T C Hq Hkv I V]       (default 4 256 288 6 6 768 512)
 *
 * Matmuls are timed with OpenBLAS (when built with it) and with the plain
 * loops, the loops being the baseline printed beside them with the ratio.
 * Every other op prints its time and its throughput. Timing: median of seven
 * runs after a warm-up, wall clock, on the backend's default thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "bench_util.h"

static gllm_backend *be;

static float *rnd(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    uint64_t s = 0x9E3779B97F4A7C15ull + n;
    for (size_t i = 0; i < n; i++)
        x[i] = scale * bench_randf(&s);
    return x;
}

typedef gllm_status (*op_fn)(void *arg);

static double time_ms(op_fn f, void *arg)
{
    double t[7];
    if (f(arg) != GLLM_OK) {
        fprintf(stderr, "bench_cpu_ops: %s\n", gllm_last_error());
        exit(1);
    }
    for (int i = 0; i < 7; i++) {
        double t0 = bench_now_s();
        f(arg);
        t[i] = (bench_now_s() - t0) * 1e3;
    }
    return bench_median(t, 7);
}

typedef struct mm_job {
    float *C;
    const float *A, *B;
    gllm_matmul_args a;
} mm_job;

static gllm_status run_mm(void *p)
{
    mm_job *j = p;
    return be->matmul(be, j->C, j->A, j->B, &j->a);
}

typedef struct attn_job {
    float *out, *lse, *qkv, *dout, *dqkv;
    int32_t *pos;
    gllm_attn_shape s;
} attn_job;

static gllm_status run_attn_fwd(void *p)
{
    attn_job *j = p;
    return be->attention_fwd(be, j->out, j->lse, j->qkv, j->pos, &j->s);
}

static gllm_status run_attn_bwd(void *p)
{
    attn_job *j = p;
    return be->attention_bwd(be, j->dqkv, j->dout, j->qkv, j->out, j->lse, j->pos, &j->s);
}

typedef struct row_job {
    float *y, *x, *w, *r, *g, *dx, *dw;
    int32_t *tgt;
    int N, C;
} row_job;

static gllm_status run_rms_fwd(void *p)
{
    row_job *j = p;
    return be->rmsnorm_fwd(be, j->y, j->r, j->x, j->w, j->N, j->C, 1e-5f);
}

static gllm_status run_rms_bwd(void *p)
{
    row_job *j = p;
    return be->rmsnorm_bwd(be, j->dx, j->dw, j->g, j->x, j->w, j->r, j->N, j->C);
}

static gllm_status run_xent(void *p)
{
    row_job *j = p;
    memcpy(j->y, j->x, (size_t)j->N * j->C * 4); /* the op overwrites its logits */
    return be->xent_fwd_bwd(be, j->r, j->y, j->tgt, NULL, j->N, j->C, 1.0f);
}

static void bench_matmul(const char *name, int M, int N, int K, bool ta, bool tb)
{
    mm_job j = {.a = {.M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .alpha = 1,
                      .beta = ta ? 1.0f : 0.0f, .c_f32 = ta}};
    j.A = rnd((size_t)M * K, 1), j.B = rnd((size_t)N * K, 1);
    j.C = calloc((size_t)M * N, 4);
    double flop = 2.0 * M * N * K, blas = 0;
    if (gllm_backend_cpu_has_blas())
        blas = time_ms(run_mm, &j);
    if (gllm_backend_cpu_has_blas())
        gllm_backend_cpu_set_blas(be, false);
    double loops = time_ms(run_mm, &j);
    if (gllm_backend_cpu_has_blas()) {
        gllm_backend_cpu_set_blas(be, true);
        printf("| %-28s | %5dx%5dx%5d | %8.3f | %7.1f GFLOP/s | loops %8.3f ms | x%.1f |\n",
               name, M, N, K, blas, flop / blas * 1e-6, loops, loops / blas);
    } else {
        printf("| %-28s | %5dx%5dx%5d | %8.3f | %7.1f GFLOP/s | (no BLAS) | |\n", name, M, N,
               K, loops, flop / loops * 1e-6);
    }
    free((void *)j.A), free((void *)j.B), free(j.C);
}

int main(int argc, char **argv)
{
    int B = 4, T = 256, C = 288, Hq = 6, Hkv = 6, I = 768, V = 512;
    if (argc == 8)
        B = atoi(argv[1]), T = atoi(argv[2]), C = atoi(argv[3]), Hq = atoi(argv[4]),
        Hkv = atoi(argv[5]), I = atoi(argv[6]), V = atoi(argv[7]);
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK) {
        fprintf(stderr, "bench_cpu_ops: %s\n", gllm_last_error());
        return 1;
    }
    int N = B * T, D = C / Hq, W = (Hq + 2 * Hkv) * D;
    time_t now = time(NULL);
    printf("CPU backend ops, B=%d T=%d C=%d Hq=%d Hkv=%d D=%d I=%d V=%d, %s", B, T, C, Hq, Hkv,
           D, I, V, ctime(&now));
    printf("| op | shape | ms | rate | baseline | ratio |\n|---|---|---|---|---|---|\n");
    bench_matmul("qkv fwd (inp W^T)", N, W, C, false, true);
    bench_matmul("mlp up fwd (inp W^T)", N, 2 * I, C, false, true);
    bench_matmul("mlp down dinp (dout W)", N, I, C, false, false);
    bench_matmul("mlp down dW (dout^T inp)", C, I, N, true, false);
    bench_matmul("lm head fwd (inp W^T)", N, V, C, false, true);

    attn_job a = {.s = {B, T, Hq, Hkv, D, 0, 1.0f / sqrtf((float)D)}};
    a.qkv = rnd((size_t)N * W, 1), a.dout = rnd((size_t)N * Hq * D, 1);
    a.out = malloc((size_t)N * Hq * D * 4), a.lse = malloc((size_t)N * Hq * 4);
    a.dqkv = malloc((size_t)N * W * 4), a.pos = malloc((size_t)N * 4);
    for (int n = 0; n < N; n++)
        a.pos[n] = n % T;
    double aflop = 4.0 * B * Hq * D * (double)T * (T + 1) / 2; /* QK^T and PV, causal half */
    double tf = time_ms(run_attn_fwd, &a), tb = time_ms(run_attn_bwd, &a);
    printf("| %-28s | %d tokens | %8.3f | %7.1f GFLOP/s | | |\n", "attention_fwd", N, tf,
           aflop / tf * 1e-6);
    printf("| %-28s | %d tokens | %8.3f | %7.1f GFLOP/s | | |\n", "attention_bwd", N, tb,
           2.5 * aflop / tb * 1e-6);

    row_job r = {.N = N, .C = C};
    r.x = rnd((size_t)N * (C > V ? C : V), 1), r.w = rnd(C, 1), r.g = rnd((size_t)N * C, 1);
    r.y = malloc((size_t)N * (C > V ? C : V) * 4), r.r = malloc((size_t)N * 4);
    r.dx = calloc((size_t)N * C, 4), r.dw = calloc(C, 4), r.tgt = calloc(N, 4);
    double mb = (double)N * C * 4 * 1e-6;
    double t1 = time_ms(run_rms_fwd, &r), t2 = time_ms(run_rms_bwd, &r);
    printf("| %-28s | %dx%d | %8.3f | %7.2f GB/s | | |\n", "rmsnorm_fwd", N, C, t1,
           2 * mb / t1);
    printf("| %-28s | %dx%d | %8.3f | %7.2f GB/s | | |\n", "rmsnorm_bwd", N, C, t2,
           3 * mb / t2);
    r.C = V;
    double t3 = time_ms(run_xent, &r);
    printf("| %-28s | %dx%d | %8.3f | %7.2f GB/s | | |\n", "xent_fwd_bwd (+copy)", N, V, t3,
           2.0 * N * V * 4 * 1e-6 / t3);
    free(a.qkv), free(a.dout), free(a.out), free(a.lse), free(a.dqkv), free(a.pos);
    free(r.x), free(r.w), free(r.g), free(r.y), free(r.r), free(r.dx), free(r.dw), free(r.tgt);
    be->destroy(be);
    return 0;
}
