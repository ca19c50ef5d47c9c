/* Inside the ginfer module: per-process engine statistics as they travel
 * from a replica to the process that writes the output, and the progress
 * line and summary helpers. */
#ifndef GLLM_GINFER_INTERNAL_H
#define GLLM_GINFER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gllm/ginfer.h"

/* One process's counters (cumulative over its run). */
typedef struct gi_stats {
    int64_t prompt_tokens, cached_tokens, generated_tokens, preemptions;
    int kv_blocks_used, kv_blocks_total;
    int block_size;            /* tokens per KV block, the engine's default resolved */
    size_t kv_bytes, peak_bytes;
    double rss_mib;
} gi_stats;

typedef struct gi_progress_state {
    bool tty, quiet;
    double t0, last_print;
    long done_before;
} gi_progress_state;

/* In a forked replica: close its copy of the output's descriptor, so that the
 * file (and its lock) is held by the parent alone and a replica that outlives
 * a killed parent for a moment cannot block the resumed run. */
void gi_out_forget(gllm_ginfer_out *w);

double gi_now(void);
double gi_peak_rss_mib(void);
/* sums over replicas (peaks: the largest) */
void gi_stats_total(const gi_stats *per, int n, gi_stats *t);
/* Print the progress line when due (always when final). */
void gi_progress(gi_progress_state *p, long done, long total, long errors, const gi_stats *s,
                 bool final);
gllm_status gi_write_summary(const char *path, const gllm_ginfer_options *o,
                             const gllm_ginfer_summary *s, const gi_stats *totals);
void gi_summary_path(const gllm_ginfer_options *o, char *buf, size_t n);

#endif
