/* Progress and summary of a ginfer run: the live line (a terminal gets one
 * line rewritten in place, anything else plain lines every few seconds) and
 * summary.json, written atomically beside the output. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ginfer_internal.h"

double gi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmHWM, the high-water mark of this program's own address space: getrusage's
 * ru_maxrss survives exec, so a ginfer started by a large process (the trade-off
 * runner, a Python bench) would report its parent's resident memory at the fork.
 * ru_maxrss only where /proc is absent. */
double gi_peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    if (kib >= 0)
        return kib / 1024.0;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

void gi_stats_total(const gi_stats *per, int n, gi_stats *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n; i++) {
        t->prompt_tokens += per[i].prompt_tokens;
        t->cached_tokens += per[i].cached_tokens;
        t->generated_tokens += per[i].generated_tokens;
        t->preemptions += per[i].preemptions;
        t->kv_blocks_used += per[i].kv_blocks_used;
        t->kv_blocks_total += per[i].kv_blocks_total;
        t->kv_bytes += per[i].kv_bytes;
        if (per[i].block_size)
            t->block_size = per[i].block_size;
        if (per[i].peak_bytes > t->peak_bytes)
            t->peak_bytes = per[i].peak_bytes;
        if (per[i].rss_mib > t->rss_mib)
            t->rss_mib = per[i].rss_mib;
    }
}

void gi_progress(gi_progress_state *p, long done, long total, long errors, const gi_stats *s,
                 bool final)
{
    if (p->quiet)
        return;
    const double now = gi_now();
    const double interval = p->tty ? 0.25 : 10.0;
    if (!final && now - p->last_print < interval)
        return;
    p->last_print = now;
    const double el = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    const long ran = done - p->done_before;
    char eta[32] = "-";
    if (ran > 0 && done < total) {
        long e = (long)(el / (double)ran * (double)(total - done));
        snprintf(eta, sizeof eta, "%ldm%02lds", e / 60, e % 60);
    }
    char errs[40] = "";
    if (errors)
        snprintf(errs, sizeof errs, " (%ld errors)", errors);
    const double kv = s->kv_blocks_total ? 100.0 * s->kv_blocks_used / s->kv_blocks_total : 0;
    const double hit =
        s->prompt_tokens ? 100.0 * (double)s->cached_tokens / (double)s->prompt_tokens : 0;
    fprintf(stderr,
            "%s%ld/%ld lines%s  prompt %.0f tok/s  gen %.0f tok/s  KV %.0f%%  prefix hit %.0f%%"
            "  ETA %s%s",
            p->tty ? "\r" : "", done, total, errs,
            (double)s->prompt_tokens / el, (double)s->generated_tokens / el, kv, hit, eta,
            p->tty && !final ? "   " : "\n");
    fflush(stderr);
}

gllm_status gi_write_summary(const char *path, const gllm_ginfer_options *o,
                             const gllm_ginfer_summary *s, const gi_stats *t)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "input", o->input);
    cJSON_AddStringToObject(j, "output", o->output);
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "device", s->device);
    cJSON_AddNumberToObject(j, "replicas", o->replicas);
    cJSON_AddNumberToObject(j, "lines", (double)s->total);
    cJSON_AddNumberToObject(j, "resumed_from", (double)s->done_before);
    cJSON_AddNumberToObject(j, "done", (double)s->done);
    cJSON_AddNumberToObject(j, "errors", (double)s->errors);
    cJSON_AddNumberToObject(j, "wall_s", s->wall_s);
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)s->prompt_tokens);
    cJSON_AddNumberToObject(j, "cached_prompt_tokens", (double)s->cached_tokens);
    cJSON_AddNumberToObject(j, "generated_tokens", (double)s->generated_tokens);
    cJSON_AddNumberToObject(j, "prefix_cache_hit_rate",
                            s->prompt_tokens ? (double)s->cached_tokens / (double)s->prompt_tokens
                                             : 0);
    const double w = s->wall_s > 0 ? s->wall_s : 1e-9;
    cJSON_AddNumberToObject(j, "prompt_tokens_per_s", (double)s->prompt_tokens / w);
    cJSON_AddNumberToObject(j, "generated_tokens_per_s", (double)s->generated_tokens / w);
    cJSON_AddNumberToObject(j, "preemptions", (double)s->preemptions);
    cJSON_AddNumberToObject(j, "peak_memory_bytes", (double)s->peak_bytes);
    cJSON_AddNumberToObject(j, "peak_rss_mib", s->peak_rss_mib);
    cJSON_AddNumberToObject(j, "kv_cache_bytes", (double)t->kv_bytes);
    cJSON *opt = cJSON_AddObjectToObject(j, "options");
    cJSON_AddStringToObject(opt, "backend", o->gpus ? "cuda (one replica per GPU)" : o->backend);
    cJSON_AddNumberToObject(opt, "threads", o->threads);
    cJSON_AddNumberToObject(opt, "kv_bytes", (double)o->engine.kv_bytes);
    cJSON_AddNumberToObject(opt, "gpu_memory_utilization",
                            o->engine.gpu_memory_utilization > 0.0f
                                ? (double)o->engine.gpu_memory_utilization : 0.9);
    cJSON_AddNumberToObject(opt, "max_batch_tokens", o->engine.max_batch_tokens);
    cJSON_AddNumberToObject(opt, "max_seqs", o->engine.max_seqs);
    cJSON_AddNumberToObject(opt, "prefill_chunk", o->engine.prefill_chunk);
    /* the block size the engine ran with (the option, or the backend's default) */
    cJSON_AddNumberToObject(opt, "block_size", t->block_size ? t->block_size : o->engine.block_size);
    cJSON_AddBoolToObject(opt, "prefix_sharing", o->engine.prefix_sharing);
    if (o->defaults.obj)
        cJSON_AddItemToObject(opt, "set", cJSON_Duplicate(o->defaults.obj, true));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        return gllm_fail(GLLM_ERR_OOM, "summary: out of memory");
    /* write a temporary file, fsync, rename over the old one */
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    gllm_status st = GLLM_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    } else {
        size_t n = strlen(text), off = 0;
        while (off < n) {
            ssize_t k = write(fd, text + off, n - off);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                st = gllm_fail(GLLM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
                break;
            }
            off += (size_t)k;
        }
        if (st == GLLM_OK && (write(fd, "\n", 1) != 1 || fsync(fd) != 0))
            st = gllm_fail(GLLM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        if (st == GLLM_OK && rename(tmp, path) != 0)
            st = gllm_fail(GLLM_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                           strerror(errno));
    }
    free(text);
    return st;
}

void gi_summary_path(const gllm_ginfer_options *o, char *buf, size_t n)
{
    if (o->summary) {
        snprintf(buf, n, "%s", o->summary);
        return;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", o->output);
    snprintf(buf, n, "%s/summary.json", dirname(tmp));
}
