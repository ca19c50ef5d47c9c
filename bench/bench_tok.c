/* Tokenizer encode throughput: one thread over the whole text as a single
 * string (what bench/tok_vs_hf.py compares with the `tokenizers` package),
 * then the text's lines as separate documents on 1 and N OpenMP threads (how
 * the dataset module tokenizes a JSONL file).
 *
 * usage: bench_tok <tokenizer folder or tokenizer.json> <text file> [reps=3] [threads=2]
 * prints one JSON object per measurement. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gllm/tok.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *what)
{
    fprintf(stderr, "bench_tok: %s: %s\n", what, gllm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <tokenizer> <text file> [reps=3] [threads=2]\n", argv[0]);
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 3, threads = argc > 4 ? atoi(argv[4]) : 2;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "bench_tok: cannot open %s\n", argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(len + 1);
    if (!text || fread(text, 1, len, f) != len) {
        fprintf(stderr, "bench_tok: cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    gllm_tokenizer *tok;
    double t0 = now();
    if (gllm_tok_load(argv[1], &tok) != GLLM_OK)
        return fail(argv[1]);
    double load_s = now() - t0;

    double best = 1e30;
    size_t n_ids = 0;
    uint64_t h = 0;
    for (int r = 0; r < reps; r++) {
        int32_t *ids;
        t0 = now();
        if (gllm_tok_encode(tok, text, len, false, &ids, &n_ids) != GLLM_OK)
            return fail("encode");
        double dt = now() - t0;
        best = dt < best ? dt : best;
        h = 0xcbf29ce484222325ull; /* FNV-1a over the ids as decimal text, like the driver */
        for (size_t i = 0; i < n_ids; i++) {
            char num[16];
            int k = snprintf(num, sizeof num, "%d,", ids[i]);
            for (int c = 0; c < k; c++)
                h = (h ^ (unsigned char)num[c]) * 0x100000001b3ull;
        }
        free(ids);
    }
    printf("{\"mode\":\"single\",\"threads\":1,\"bytes\":%zu,\"tokens\":%zu,\"best_s\":%.6f,"
           "\"mb_s\":%.3f,\"tok_s\":%.0f,\"load_s\":%.3f,\"ids_fnv\":\"%016llx\"}\n",
           len, n_ids, best, len / best / 1e6, n_ids / best, load_s, (unsigned long long)h);

    /* lines as documents */
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    size_t *start = malloc((n_lines + 2) * sizeof *start);
    size_t nl = 0;
    start[nl++] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            start[nl++] = i + 1;
    start[nl] = len;
    for (int nt = 1; nt <= threads; nt = nt == 1 && threads > 1 ? threads : nt + threads) {
        gllm_tok_thread_cleanup(); /* each measurement starts with cold caches */
        double bl = 1e30;
        size_t total = 0;
        for (int r = 0; r < reps; r++) {
            size_t tokens = 0;
            int errors = 0;
            t0 = now();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 256) reduction(+ : tokens, errors)
            for (size_t i = 0; i < nl; i++) {
                int32_t *ids;
                size_t n;
                errors += gllm_tok_encode(tok, text + start[i], start[i + 1] - start[i], false,
                                          &ids, &n) != GLLM_OK;
                tokens += n;
                free(ids);
            }
            double dt = now() - t0;
            if (errors)
                return fail("encode of lines");
            bl = dt < bl ? dt : bl;
            total = tokens;
        }
        printf("{\"mode\":\"lines\",\"threads\":%d,\"bytes\":%zu,\"tokens\":%zu,\"best_s\":%.6f,"
               "\"mb_s\":%.3f,\"tok_s\":%.0f}\n",
               nt, len, total, bl, len / bl / 1e6, total / bl);
    }
    free(start);
    free(text);
    gllm_tok_free(tok);
    return 0;
}
