/* Dataset tokenization throughput: a JSONL file through gllm_data_load (parse,
 * tokenize, label) on 1, 2, ... threads, no cache. Prints one JSON line per
 * thread count. usage: bench_data TOKENIZER_DIR DATA.jsonl THREADS... */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "gllm/data.h"
#include "gllm/tok.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR DATA.jsonl THREADS...\n", argv[0]);
        return 2;
    }
    gllm_tokenizer *tok;
    if (gllm_tok_load(argv[1], &tok) != GLLM_OK) {
        fprintf(stderr, "bench_data: %s\n", gllm_last_error());
        return 1;
    }
    struct stat st;
    if (stat(argv[2], &st) != 0) {
        fprintf(stderr, "bench_data: %s: not found\n", argv[2]);
        return 1;
    }
    gllm_data_options o = gllm_data_default_options();
    o.max_len = 1 << 20;
    o.overlong = GLLM_DATA_OVERLONG_TRUNCATE;
    const gllm_data_encoder enc = gllm_data_encoder_tok(tok);
    for (int a = 3; a < argc; a++) {
        const int threads = atoi(argv[a]);
        if (threads < 1) {
            fprintf(stderr, "bench_data: bad thread count '%s'\n", argv[a]);
            return 2;
        }
        omp_set_num_threads(threads);
        gllm_dataset *ds;
        const double t0 = now();
        if (gllm_data_load(argv[2], &enc, &o, &ds) != GLLM_OK) {
            fprintf(stderr, "bench_data: %s\n", gllm_last_error());
            return 1;
        }
        const double s = now() - t0;
        const gllm_data_stats *stt = gllm_data_stats_of(ds);
        printf("{\"threads\":%d,\"bytes\":%lld,\"records\":%zu,\"tokens\":%zu,\"seconds\":%.3f,"
               "\"MB_per_s\":%.2f,\"tokens_per_s\":%.0f}\n",
               threads, (long long)st.st_size, stt->n_records, stt->n_tokens, s,
               st.st_size / 1e6 / s, stt->n_tokens / s);
        gllm_data_free(ds);
    }
    gllm_tok_free(tok);
    return 0;
}
