/* The inference matmul (out = inp W^T, row-invariant) at the shapes of a model's
 * projections, for batch sizes from one decode row to a prefill chunk:
 * gllm's row-invariant path against OpenBLAS's plain sgemm (not row-invariant,
 * the baseline), both timed in this run on the backend's default threads.
 *
 *   bench_rowinv [C I V]     (default 576 1536 49152: SmolLM2-135M)
 *
 * Which row-invariant path runs is the backend's choice for this CPU: gllm's
 * sgemm (cpu_gemm.c) where the CPU has AVX2 or AVX-512, else an OpenBLAS
 * strategy; GLLM_GEMM=off shows the OpenBLAS strategy, GLLM_GEMM=avx2 the
 * AVX2 kernel on an AVX-512 CPU. Each cell is the median of 7 timed runs after
 * a warm-up. "packed weights" passes the weights packed once (be->pack_b), as
 * gllm's inference workspace does; the ratio is OpenBLAS time / that time
 * (> 1: faster). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "bench_util.h"

static gllm_backend *be;

static float *rnd(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench_rowinv: out of memory\n");
        exit(1);
    }
    uint64_t s = 0x9E3779B97F4A7C15ull ^ seed;
    for (size_t i = 0; i < n; i++)
        x[i] = bench_randf(&s);
    return x;
}

static double time_ms(float *C, const float *A, const float *W, const gllm_matmul_args *a)
{
    double t[7];
    if (be->matmul(be, C, A, W, a) != GLLM_OK) {
        fprintf(stderr, "bench_rowinv: %s\n", gllm_last_error());
        exit(1);
    }
    for (int i = 0; i < 7; i++) {
        double t0 = bench_now_s();
        be->matmul(be, C, A, W, a);
        t[i] = (bench_now_s() - t0) * 1e3;
    }
    return bench_median(t, 7);
}

int main(int argc, char **argv)
{
    int C = 576, I = 1536, V = 49152;
    if (argc == 4)
        C = atoi(argv[1]), I = atoi(argv[2]), V = atoi(argv[3]);
    else if (argc != 1) {
        fprintf(stderr, "usage: bench_rowinv [C I V]\n");
        return 2;
    }
    if (!gllm_backend_cpu_has_blas()) {
        printf("bench_rowinv: built without OpenBLAS, no baseline to compare with\n");
        return 0;
    }
    if (gllm_backend_cpu_create(0, &be) != GLLM_OK) {
        fprintf(stderr, "bench_rowinv: %s\n", gllm_last_error());
        return 1;
    }
    const struct {
        const char *name;
        int N, K;
    } shapes[] = {{"q/o proj", C, C}, {"k/v proj", C / 3, C}, {"mlp gate/up", I, C},
                  {"mlp down", C, I}, {"lm head", V, C}};
    static const int Ms[] = {1, 8, 32, 128, 256, 512};
    time_t now = time(NULL);
    printf("row-invariant matmul (%s) vs OpenBLAS sgemm, C=%d I=%d V=%d, %s",
           gllm_backend_cpu_rowinv_kernel(be), C, I, V, ctime(&now));
    printf("| shape | M | N | K | row-invariant ms | GFLOP/s | packed weights ms | GFLOP/s | "
           "OpenBLAS ms | GFLOP/s | ratio (packed) |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    double sum_ri = 0, sum_pk = 0, sum_bl = 0, sum_pack = 0, sum_pack_elems = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int N = shapes[si].N, K = shapes[si].K;
        float *W = rnd((size_t)N * K, 1 + si);
        /* the weights in the backend's own layout, as an inference workspace keeps them */
        const size_t pkb = be->packed_b_bytes ? be->packed_b_bytes(be, N, K) : 0;
        void *pk = NULL;
        const double tp0 = bench_now_s();
        if (pkb && (be->alloc(be, pkb, "packed weights", &pk) != GLLM_OK ||
                    be->pack_b(be, pk, W, N, K) != GLLM_OK)) {
            fprintf(stderr, "bench_rowinv: %s\n", gllm_last_error());
            return 1;
        }
        sum_pack += bench_now_s() - tp0;
        sum_pack_elems += (double)N * K;
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            const int M = Ms[mi];
            if (N == V && M > 32) /* logits are wanted for a few rows per step */
                continue;
            float *A = rnd((size_t)M * K, 100 + mi), *out = malloc((size_t)M * N * 4);
            gllm_matmul_args a = {.M = M, .N = N, .K = K, .trans_b = true, .alpha = 1.0f,
                                  .batch = 1, .row_invariant = true};
            const double ri = time_ms(out, A, W, &a);
            a.b_packed = pk;
            const double pt = pk ? time_ms(out, A, W, &a) : ri;
            a.b_packed = NULL;
            a.row_invariant = false;
            const double bl = time_ms(out, A, W, &a);
            const double gf = 2.0 * M * N * K * 1e-6;
            printf("| %s | %d | %d | %d | %.3f | %.1f | %.3f | %.1f | %.3f | %.1f | %.2f |\n",
                   shapes[si].name, M, N, K, ri, gf / ri, pt, gf / pt, bl, gf / bl, bl / pt);
            sum_ri += ri, sum_pk += pt, sum_bl += bl;
            free(A), free(out);
        }
        free(W);
        if (pk)
            be->free(be, pk);
    }
    printf("\nsum over the table: row-invariant %.2f ms, with packed weights %.2f ms, OpenBLAS "
           "%.2f ms; OpenBLAS / packed %.2f\n", sum_ri, sum_pk, sum_bl, sum_bl / sum_pk);
    printf("packing the %d weights once (first touch included): %.1f ms, %.2f G floats/s\n",
           (int)(sizeof shapes / sizeof shapes[0]), sum_pack * 1e3, sum_pack_elems / sum_pack * 1e-9);
    be->destroy(be);
    return 0;
}
