/* GEMM benchmark: gllm's matmul paths against cuBLASLt, timed in the same run,
 * at the training GEMMs of GPT-2 124M, Llama-3.2-1B and Llama-3.1-8B with
 * B*T = 8192 tokens: per linear layer the forward (out = inp W^T), the input
 * gradient (dinp = dout W) and the weight gradient (dW += dout^T inp, fp32).
 *
 *   bench_matmul [--out PREFIX] [--paths auto,mma,...] [--model NAME]
 *                [--iters N] [--warmup N] [--tokens N]
 *
 * Prints a markdown table; with --out also writes PREFIX.md and PREFIX.json.
 * Without a GPU it says so and exits 0. See bench/gemm_notes.md. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gllm/backend.h"
#include "gllm/cuda_bench.h"

typedef struct layer {
    const char *model, *name;
    int out, in; /* W is [out, in] */
} layer;

static const layer LAYERS[] = {
    {"gpt2-124m", "qkv", 2304, 768},
    {"gpt2-124m", "attn_proj", 768, 768},
    {"gpt2-124m", "fc", 3072, 768},
    {"gpt2-124m", "fc_proj", 768, 3072},
    {"gpt2-124m", "lm_head", 50304, 768},
    {"llama-3.2-1b", "qkv", 3072, 2048},
    {"llama-3.2-1b", "o_proj", 2048, 2048},
    {"llama-3.2-1b", "gate_up", 16384, 2048},
    {"llama-3.2-1b", "down", 2048, 8192},
    {"llama-3.2-1b", "lm_head", 128256, 2048},
    {"llama-3.1-8b", "qkv", 6144, 4096},
    {"llama-3.1-8b", "o_proj", 4096, 4096},
    {"llama-3.1-8b", "gate_up", 28672, 4096},
    {"llama-3.1-8b", "down", 4096, 14336},
    {"llama-3.1-8b", "lm_head", 128256, 4096},
};

enum { PASS_FWD, PASS_DINP, PASS_DW };
static const char *PASS_NAME[] = {"fwd", "dinp", "dW"};

#define MAX_PATHS 4
#define MAX_ROWS (3 * (int)(sizeof LAYERS / sizeof LAYERS[0]))

typedef struct row {
    const layer *l;
    int pass, M, N, K;
    double ms[MAX_PATHS], lt_ms;
    bool ok[MAX_PATHS];
} row;

static gllm_matmul_args pass_args(const layer *l, int pass, int tokens)
{
    gllm_matmul_args a;
    memset(&a, 0, sizeof a);
    a.alpha = 1.0f;
    a.batch = 1;
    if (pass == PASS_FWD) { /* out[T,out] = inp[T,in] W[out,in]^T */
        a.M = tokens, a.N = l->out, a.K = l->in, a.trans_b = true;
    } else if (pass == PASS_DINP) { /* dinp[T,in] = dout[T,out] W[out,in] */
        a.M = tokens, a.N = l->in, a.K = l->out;
    } else { /* dW[out,in] += dout[T,out]^T inp[T,in] */
        a.M = l->out, a.N = l->in, a.K = tokens, a.trans_a = true, a.c_f32 = true, a.beta = 1.0f;
    }
    return a;
}

static double tflops(const row *r, double ms) { return 2.0 * r->M * r->N * r->K / (ms * 1e-3) / 1e12; }

static int parse_paths(const char *s, gllm_matmul_path *paths)
{
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok && n < MAX_PATHS; tok = strtok(NULL, ",")) {
        int found = -1;
        for (int p = GLLM_MM_AUTO; p < GLLM_MM_CUBLASLT; p++)
            if (strcmp(tok, gllm_matmul_path_name((gllm_matmul_path)p)) == 0)
                found = p;
        if (found < 0) {
            fprintf(stderr, "bench_matmul: unknown path '%s' (auto, simple, mma, wgmma)\n", tok);
            return -1;
        }
        paths[n++] = (gllm_matmul_path)found;
    }
    return n;
}

static void print_table(FILE *f, const char *device, const char *date, const row *rows, int n,
                        const gllm_matmul_path *paths, int np)
{
    fprintf(f, "# GEMM: gllm vs cuBLASLt\n\ndevice: %s  \ndate: %s  \n", device, date);
    fprintf(f, "time: median of CUDA-event timings, inputs rotated beyond L2; "
               "ratio = cuBLASLt time / gllm time (>= 1: gllm as fast or faster)\n\n");
    fprintf(f, "| model | gemm | pass | M | N | K |");
    for (int p = 0; p < np; p++)
        fprintf(f, " %s ms | %s TFLOP/s | %s ratio |", gllm_matmul_path_name(paths[p]),
                gllm_matmul_path_name(paths[p]), gllm_matmul_path_name(paths[p]));
    fprintf(f, " cuBLASLt ms | cuBLASLt TFLOP/s |\n|---|---|---|--:|--:|--:|");
    for (int p = 0; p < np; p++)
        fprintf(f, "--:|--:|--:|");
    fprintf(f, "--:|--:|\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        fprintf(f, "| %s | %s | %s | %d | %d | %d |", r->l->model, r->l->name, PASS_NAME[r->pass],
                r->M, r->N, r->K);
        for (int p = 0; p < np; p++) {
            if (r->ok[p])
                fprintf(f, " %.3f | %.1f | %.3f |", r->ms[p], tflops(r, r->ms[p]),
                        r->lt_ms / r->ms[p]);
            else
                fprintf(f, " n/a | | |");
        }
        fprintf(f, " %.3f | %.1f |\n", r->lt_ms, tflops(r, r->lt_ms));
    }
}

static void write_json(FILE *f, const char *device, const char *date, const row *rows, int n,
                       const gllm_matmul_path *paths, int np)
{
    fprintf(f, "{\n  \"device\": \"%s\",\n  \"date\": \"%s\",\n  \"rows\": [\n", device, date);
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        fprintf(f, "    {\"model\": \"%s\", \"gemm\": \"%s\", \"pass\": \"%s\", \"M\": %d, "
                   "\"N\": %d, \"K\": %d, \"cublaslt_ms\": %.5f",
                r->l->model, r->l->name, PASS_NAME[r->pass], r->M, r->N, r->K, r->lt_ms);
        for (int p = 0; p < np; p++)
            if (r->ok[p])
                fprintf(f, ", \"%s_ms\": %.5f", gllm_matmul_path_name(paths[p]), r->ms[p]);
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
}

int main(int argc, char **argv)
{
    const char *out = NULL, *model = NULL, *path_list = "auto";
    int iters = 20, warmup = 3, tokens = 8192;
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (more && strcmp(argv[i], "--out") == 0)
            out = argv[++i];
        else if (more && strcmp(argv[i], "--paths") == 0)
            path_list = argv[++i];
        else if (more && strcmp(argv[i], "--model") == 0)
            model = argv[++i];
        else if (more && strcmp(argv[i], "--iters") == 0)
            iters = atoi(argv[++i]);
        else if (more && strcmp(argv[i], "--warmup") == 0)
            warmup = atoi(argv[++i]);
        else if (more && strcmp(argv[i], "--tokens") == 0)
            tokens = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_matmul [--out PREFIX] [--paths auto,mma,wgmma,simple] "
                            "[--model NAME] [--iters N] [--warmup N] [--tokens N]\n");
            return 2;
        }
    }
    gllm_matmul_path paths[MAX_PATHS];
    int np = parse_paths(path_list, paths);
    if (np <= 0 || iters < 1 || warmup < 0 || tokens < 1)
        return 2;

    gllm_backend *be;
    if (gllm_backend_open("cuda", &be) != GLLM_OK) {
        printf("SKIP: no CUDA backend: %s\n", gllm_last_error());
        return 0;
    }
    char device[512], date[64];
    if (gllm_cuda_describe(be, device, sizeof device) != GLLM_OK) {
        fprintf(stderr, "bench_matmul: %s\n", gllm_last_error());
        be->destroy(be);
        return 1;
    }
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(stderr, "%s\n", device);

    static row rows[MAX_ROWS];
    int n = 0, status = 0;
    for (size_t li = 0; li < sizeof LAYERS / sizeof LAYERS[0]; li++) {
        const layer *l = &LAYERS[li];
        if (model && strcmp(model, l->model) != 0)
            continue;
        for (int pass = PASS_FWD; pass <= PASS_DW; pass++) {
            row *r = &rows[n];
            gllm_matmul_args a = pass_args(l, pass, tokens);
            r->l = l, r->pass = pass, r->M = a.M, r->N = a.N, r->K = a.K;
            if (gllm_cuda_bench_matmul(be, GLLM_MM_CUBLASLT, &a, warmup, iters, &r->lt_ms) !=
                GLLM_OK) {
                fprintf(stderr, "bench_matmul: %s %s %s cuBLASLt: %s\n", l->model, l->name,
                        PASS_NAME[pass], gllm_last_error());
                status = 1;
                continue;
            }
            for (int p = 0; p < np; p++) {
                gllm_status s = gllm_cuda_bench_matmul(be, paths[p], &a, warmup, iters, &r->ms[p]);
                r->ok[p] = s == GLLM_OK;
                if (s != GLLM_OK && s != GLLM_ERR_UNSUPPORTED) {
                    fprintf(stderr, "bench_matmul: %s %s %s %s: %s\n", l->model, l->name,
                            PASS_NAME[pass], gllm_matmul_path_name(paths[p]), gllm_last_error());
                    status = 1;
                }
            }
            fprintf(stderr, "%s %s %s done\n", l->model, l->name, PASS_NAME[pass]);
            n++;
        }
    }
    be->destroy(be);
    print_table(stdout, device, date, rows, n, paths, np);
    if (out) {
        char path[1024];
        snprintf(path, sizeof path, "%s.md", out);
        FILE *f = fopen(path, "w");
        if (f) {
            print_table(f, device, date, rows, n, paths, np);
            fclose(f);
        }
        snprintf(path, sizeof path, "%s.json", out);
        FILE *g = fopen(path, "w");
        if (g) {
            write_json(g, device, date, rows, n, paths, np);
            fclose(g);
        }
        if (!f || !g) {
            fprintf(stderr, "bench_matmul: cannot write %s\n", path);
            status = 1;
        }
    }
    return status;
}
