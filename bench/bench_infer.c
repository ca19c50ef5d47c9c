/* Batched inference throughput of the engine (include/gllm/infer.h) on the CPU
 * (GLLM_BENCH_BACKEND=cuda, or any gllm_backend_open name, runs it on that
 * backend instead; --threads is then ignored).
 *
 *   bench_infer MODEL_DIR PROMPTS OUT_JSON [--no-sharing] [--threads N]
 *               [--max-batch-tokens N] [--max-seqs N] [--block-size N] [--kv-bytes N]
 *               [--ids OUT_IDS]
 *
 * PROMPTS: one request per line, "max_tokens id id id ...". Every request is
 * greedy with eos ignored (so every system generates exactly max_tokens). All
 * requests are added at once; the clock runs from the first add to the last
 * result. GLLM_BATCH_INVARIANT=0 in the environment turns the row-invariant
 * matmul padding off (to measure what batch invariance costs). Writes a JSON
 * object with wall time, tokens, tokens/s and engine stats; with --ids, the
 * generated ids per request (one line each) for comparison. --kv-bytes sets the
 * KV cache budget (default: the engine's), so that peak_bytes holds the KV cache
 * the requests need rather than a default reservation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "gllm/infer.h"
#include "gllm/model.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of this process (all threads) */
static double cpu_now(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

/* Peak resident memory of this process in MiB: VmHWM, the high-water mark of this
 * program's own address space (getrusage's ru_maxrss would also carry the RSS of the
 * process that forked it, from before the exec); 0 where /proc is absent. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib / 1024.0;
}

typedef struct prompt {
    int32_t *ids;
    int n, max_tokens;
} prompt;

static int read_prompts(const char *path, prompt **out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_infer: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    int n = 0, cap_p = 64;
    prompt *p = malloc((size_t)cap_p * sizeof *p);
    while (fgets(line, (int)cap, f)) {
        char *s = line, *end;
        long mt = strtol(s, &end, 10);
        if (end == s)
            continue;
        s = end;
        if (n == cap_p)
            p = realloc(p, (size_t)(cap_p *= 2) * sizeof *p);
        int cap_i = 64, k = 0;
        int32_t *ids = malloc((size_t)cap_i * 4);
        for (long v = strtol(s, &end, 10); end != s; v = strtol(s, &end, 10)) {
            if (k == cap_i)
                ids = realloc(ids, (size_t)(cap_i *= 2) * 4);
            ids[k++] = (int32_t)v;
            s = end;
        }
        p[n++] = (prompt){ids, k, (int)mt};
    }
    free(line);
    fclose(f);
    *out = p;
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPTS OUT_JSON [--no-sharing] [--threads N] "
                        "[--max-batch-tokens N] [--max-seqs N] [--block-size N] [--kv-bytes N] "
                        "[--ids OUT_IDS]\n",
                argv[0]);
        return 2;
    }
    gllm_engine_options o = gllm_engine_options_default();
    int threads = 0;
    const char *ids_path = NULL;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--no-sharing"))
            o.prefix_sharing = false;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-batch-tokens") && i + 1 < argc)
            o.max_batch_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-seqs") && i + 1 < argc)
            o.max_seqs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--block-size") && i + 1 < argc)
            o.block_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-bytes") && i + 1 < argc) {
            char *end;
            const unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end || v == 0) {
                fprintf(stderr, "bench_infer: --kv-bytes takes a positive byte count, not %s\n",
                        argv[i]);
                return 2;
            }
            o.kv_bytes = (size_t)v;
        } else if (!strcmp(argv[i], "--ids") && i + 1 < argc)
            ids_path = argv[++i];
        else {
            fprintf(stderr, "bench_infer: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    prompt *p = NULL;
    const int n = read_prompts(argv[2], &p);
    if (n <= 0) {
        fprintf(stderr, "bench_infer: no prompts in %s\n", argv[2]);
        return 1;
    }
    gllm_backend *be = NULL;
    gllm_model *m = NULL;
    gllm_engine *e = NULL;
    const char *bname = getenv("GLLM_BENCH_BACKEND");
    const gllm_status bs = bname && *bname ? gllm_backend_open(bname, &be)
                                           : gllm_backend_cpu_create(threads, &be);
    if (bs != GLLM_OK || gllm_model_load(argv[1], be, &m) ||
        gllm_engine_create(m, &o, &e) != GLLM_OK) {
        fprintf(stderr, "bench_infer: %s\n", gllm_last_error());
        return 1;
    }
    gllm_result *res = calloc((size_t)n, sizeof *res);
    const double t0 = now(), c0 = cpu_now();
    for (int i = 0; i < n; i++) {
        gllm_request q = {.tag = (uint64_t)i, .prompt = p[i].ids, .n_prompt = p[i].n,
                          .sampling = gllm_sampling_default(), .max_tokens = p[i].max_tokens,
                          .n = 1, .ignore_eos = true};
        if (gllm_engine_add(e, &q) != GLLM_OK) {
            fprintf(stderr, "bench_infer: %s\n", gllm_last_error());
            return 1;
        }
    }
    int got = 0;
    double first_done = 0;
    while (got < n) {
        if (gllm_engine_step(e) != GLLM_OK) {
            fprintf(stderr, "bench_infer: %s\n", gllm_last_error());
            return 1;
        }
        gllm_result buf[64];
        int k;
        while ((k = gllm_engine_take(e, buf, 64)) > 0)
            for (int i = 0; i < k; i++) {
                if (buf[i].status != GLLM_OK) {
                    fprintf(stderr, "bench_infer: request %llu: %s\n",
                            (unsigned long long)buf[i].tag, buf[i].error);
                    return 1;
                }
                if (!got)
                    first_done = now() - t0;
                res[buf[i].tag] = buf[i];
                got++;
            }
    }
    const double wall = now() - t0, cpu = cpu_now() - c0;
    gllm_engine_stats st;
    gllm_engine_get_stats(e, &st);
    FILE *f = fopen(argv[3], "w");
    if (!f) {
        fprintf(stderr, "bench_infer: cannot write %s\n", argv[3]);
        return 1;
    }
    const char *inv = getenv("GLLM_BATCH_INVARIANT");
    fprintf(f,
            "{\"requests\": %d, \"wall_s\": %.3f, \"cpu_s\": %.3f, \"first_result_s\": %.3f, "
            "\"generated_tokens\": %lld, \"prompt_tokens\": %lld, \"cached_tokens\": %lld, "
            "\"output_tok_per_s\": %.2f, \"steps\": %lld, \"preemptions\": %lld, "
            "\"kv_blocks\": %d, \"block_size\": %d, \"peak_bytes\": %zu, \"prefix_sharing\": %s, "
            "\"batch_invariant\": %s, \"threads\": %d, \"backend\": \"%s\", \"kv_bytes\": %zu, "
            "\"peak_rss_mib\": %.1f, \"rowinv_matmul\": \"%s\"}\n",
            n, wall, cpu, first_done, (long long)st.generated_tokens, (long long)st.prompt_tokens,
            (long long)st.cached_tokens, (double)st.generated_tokens / wall, (long long)st.steps,
            (long long)st.preemptions, st.kv_blocks_total, st.block_size, st.peak_bytes,
            o.prefix_sharing ? "true" : "false", inv && !strcmp(inv, "0") ? "false" : "true",
            threads, be->name, st.kv_bytes, peak_rss_mib(),
            strcmp(be->name, "cpu") == 0 ? gllm_backend_cpu_rowinv_kernel(be) : "-");
    fclose(f);
    printf("%d requests: %.2f s (%.1f CPU s), %lld generated tokens (%.1f tok/s), %lld of %lld prompt tokens "
           "cached, %lld steps\n", n, wall, cpu, (long long)st.generated_tokens,
           (double)st.generated_tokens / wall, (long long)st.cached_tokens,
           (long long)st.prompt_tokens, (long long)st.steps);
    if (ids_path) {
        FILE *g = fopen(ids_path, "w");
        for (int i = 0; g && i < n; i++) {
            for (int k = 0; k < res[i].samples[0].n_ids; k++)
                fprintf(g, k ? " %d" : "%d", res[i].samples[0].ids[k]);
            fprintf(g, "\n");
        }
        if (g)
            fclose(g);
    }
    for (int i = 0; i < n; i++) {
        gllm_result_free(&res[i]);
        free(p[i].ids);
    }
    free(res);
    free(p);
    gllm_engine_free(e);
    gllm_model_free(m);
    be->destroy(be);
    return 0;
}
