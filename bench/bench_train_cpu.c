/* Forward+backward throughput of a model on the CPU backend: the gllm side of
 * bench/cpu_vs_torch.sh. Prints one JSON line.
 * usage: bench_train_cpu MODEL_DIR B T THREADS STEPS WARMUP
 * GLLM_BENCH_BACKEND=cuda (any gllm_backend_open name) runs it on that backend
 * instead (THREADS is then ignored): the gllm side of the GPU training bench in
 * scripts/gpu_check.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gllm/backend.h"
#include "gllm/model.h"
#include "bench_util.h"

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL_DIR B T THREADS STEPS WARMUP\n", argv[0]);
        return 2;
    }
    const int B = atoi(argv[2]), T = atoi(argv[3]), threads = atoi(argv[4]);
    const int steps = atoi(argv[5]), warmup = atoi(argv[6]);
    if (B <= 0 || T <= 0 || threads <= 0 || steps <= 0 || warmup < 0) {
        fprintf(stderr, "B, T, THREADS and STEPS must be positive\n");
        return 2;
    }
    gllm_backend *be;
    gllm_model *m;
    const char *bname = getenv("GLLM_BENCH_BACKEND");
    gllm_status st = bname && *bname ? gllm_backend_open(bname, &be)
                                     : gllm_backend_cpu_create(threads, &be);
    if (st != GLLM_OK || gllm_model_load(argv[1], be, &m) != GLLM_OK) {
        fprintf(stderr, "bench_train_cpu: %s\n", gllm_last_error());
        return 1;
    }
    const int N = B * T, V = gllm_model_cfg(m)->vocab_size;
    gllm_batch b = {.B = B, .T = T};
    b.ids = malloc(N * sizeof(int32_t));
    b.targets = malloc(N * sizeof(int32_t));
    b.pos = malloc(N * sizeof(int32_t));
    b.loss_mask = malloc(N * sizeof(float));
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        b.ids[i] = (int32_t)(s % (uint64_t)V);
        b.targets[i] = (int32_t)((s >> 20) % (uint64_t)V);
        b.pos[i] = i % T;
        b.loss_mask[i] = 1.0f;
    }
    double *ms = malloc(steps * sizeof(double));
    float loss = 0;
    for (int i = 0; i < warmup + steps; i++) {
        double t0 = bench_now_s();
        if (gllm_model_zero_grad(m) != GLLM_OK ||
            gllm_model_forward_backward(m, &b, 0.0f, &loss) != GLLM_OK) {
            fprintf(stderr, "bench_train_cpu: %s\n", gllm_last_error());
            return 1;
        }
        if (i >= warmup)
            ms[i - warmup] = (bench_now_s() - t0) * 1e3;
    }
    const double med = bench_median(ms, steps);
    printf("{\"impl\":\"gllm-%s\",\"model\":\"%s\",\"params\":%zu,\"B\":%d,\"T\":%d,"
           "\"threads\":%d,\"tokens_per_s\":%.1f,\"ms_per_step\":%.3f,\"loss\":%.4f}\n",
           be->name, argv[1], gllm_model_numel(m), B, T, threads, N / (med / 1e3), med, loss);
    free(ms);
    free(b.ids);
    free(b.targets);
    free(b.pos);
    free(b.loss_mask);
    gllm_model_free(m);
    be->destroy(be);
    return 0;
}
