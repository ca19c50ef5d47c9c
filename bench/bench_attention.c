/* Attention benchmark: gllm's flash-attention forward and backward at the training
 * shapes of GPT-2 124M, Llama-3.2-1B and Llama-3.1-8B (causal, unpacked rows).
 *
 *   bench_attention [--json] [--iters N] [--warmup N]
 *
 * Prints per shape the median time (CUDA events, one call per event pair) and the
 * TFLOP/s counted the usual way for causal attention: 4*B*H*T*T*D/2 forward, 2.5
 * times that backward. With --json it prints one JSON object per line instead, for
 * bench/run_attention_bench.sh to join with PyTorch's flash SDPA. Without a GPU it
 * says so and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gllm/backend.h"
#include "gllm/cuda_bench.h"
#include "gllm/cuda_bench_attn.h"

typedef struct attn_shape_row {
    const char *model;
    int B, T, Hq, Hkv, D;
} attn_shape_row;

static const attn_shape_row SHAPES[] = {
    {"gpt2-124m", 8, 1024, 12, 12, 64},
    {"llama-3.2-1b", 4, 2048, 32, 8, 64},
    {"llama-3.1-8b", 2, 4096, 32, 8, 128},
};

int main(int argc, char **argv)
{
    int json = 0, iters = 30, warmup = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_attention [--json] [--iters N] [--warmup N]\n");
            return 2;
        }
    }
    gllm_backend *be;
    if (gllm_backend_open("cuda", &be) != GLLM_OK) {
        printf("SKIP: no CUDA backend: %s\n", gllm_last_error());
        return 0;
    }
    char device[512];
    if (gllm_cuda_describe(be, device, sizeof device) != GLLM_OK) {
        fprintf(stderr, "bench_attention: %s\n", gllm_last_error());
        be->destroy(be);
        return 1;
    }
    if (!json) {
        printf("# %s\n", device);
        printf("| model | B | T | Hq/Hkv | D | pass | ms | TFLOP/s |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
    }
    int status = 0;
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const attn_shape_row *r = &SHAPES[i];
        gllm_attn_shape s = {r->B, r->T, r->Hq, r->Hkv, r->D, 0, 0};
        s.scale = 1.0f / sqrtf((float)r->D);
        const double fwd_flops = 4.0 * r->B * r->Hq * (double)r->T * r->T * r->D / 2;
        for (int bwd = 0; bwd < 2; bwd++) {
            double ms;
            if (gllm_cuda_bench_attention(be, &s, bwd, warmup, iters, &ms) != GLLM_OK) {
                fprintf(stderr, "bench_attention: %s %s: %s\n", r->model, bwd ? "bwd" : "fwd",
                        gllm_last_error());
                status = 1;
                continue;
            }
            const double tflops = (bwd ? 2.5 : 1.0) * fwd_flops / (ms * 1e-3) / 1e12;
            if (json)
                printf("{\"model\": \"%s\", \"B\": %d, \"T\": %d, \"Hq\": %d, \"Hkv\": %d, "
                       "\"D\": %d, \"pass\": \"%s\", \"ms\": %.5f, \"tflops\": %.2f, "
                       "\"device\": \"%s\"}\n",
                       r->model, r->B, r->T, r->Hq, r->Hkv, r->D, bwd ? "bwd" : "fwd", ms,
                       tflops, device);
            else
                printf("| %s | %d | %d | %d/%d | %d | %s | %.3f | %.1f |\n", r->model, r->B,
                       r->T, r->Hq, r->Hkv, r->D, bwd ? "bwd" : "fwd", ms, tflops);
            fflush(stdout);
        }
    }
    be->destroy(be);
    return status;
}
