/* The training loop: dataset -> micro-batches -> forward/backward ->
 * clipped AdamW with warmup + cosine learning rate, validation, metrics. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "gllm/data.h"
#include "gllm/json.h"
#include "gllm/jsonl.h"
#include "gllm/model.h"
#include "gllm/tok.h"
#include "gllm/train.h"
#include "train/train_internal.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return (double)rss * 4096.0 / (1024.0 * 1024.0);
}

/* Linear warmup to lr, then cosine decay to lr * min_lr_ratio at the last step. */
static float lr_at(const gllm_train_config *c, int step, int total)
{
    if (c->warmup_steps > 0 && step <= c->warmup_steps)
        return c->lr * (float)step / (float)c->warmup_steps;
    const int decay = total - c->warmup_steps;
    if (decay <= 1)
        return c->lr;
    const double t = (double)(step - c->warmup_steps - 1) / (double)(decay - 1);
    const double cosv = 0.5 * (1.0 + cos(M_PI * t));
    return (float)(c->lr * (c->min_lr_ratio + (1.0 - c->min_lr_ratio) * cosv));
}

static int alloc_batch(gllm_batch *b, int B, int T)
{
    const size_t n = (size_t)B * T;
    b->B = B;
    b->T = T;
    b->ids = malloc(n * sizeof(int32_t));
    b->targets = malloc(n * sizeof(int32_t));
    b->pos = malloc(n * sizeof(int32_t));
    b->loss_mask = malloc(n * sizeof(float));
    return b->ids && b->targets && b->pos && b->loss_mask;
}

static void free_batch(gllm_batch *b)
{
    free(b->ids);
    free(b->targets);
    free(b->pos);
    free(b->loss_mask);
}

static double mask_sum(const gllm_batch *b)
{
    double s = 0;
    for (int i = 0; i < b->B * b->T; i++)
        s += b->loss_mask[i];
    return s;
}

/* Sum host scalars over the ranks through a small device buffer. */
static gllm_status reduce_scalars(gllm_comm *comm, float *dev, float *vals, int n)
{
    if (comm->world == 1)
        return GLLM_OK;
    gllm_backend *be = comm->be;
    GLLM_TRY(be->upload(be, dev, vals, (size_t)n * sizeof(float)));
    GLLM_TRY(comm->all_reduce(comm, dev, (size_t)n, GLLM_F32, GLLM_REDUCE_SUM));
    return be->download(be, vals, dev, (size_t)n * sizeof(float));
}

/* Mean loss over the validation documents (token-weighted), over all ranks:
 * split 1 of the training data, or split 0 (all) of the val_data file. */
static gllm_status evaluate(gllm_model *m, const gllm_dataset *ds, int split, const gllm_train_config *c,
                            gllm_comm *comm, float *dev, gllm_batch *b, float *val_loss)
{
    gllm_data_loader *l;
    GLLM_TRY(gllm_data_loader_new(ds, split, c->batch_size, c->seq_len, c->packing, 0, comm->rank,
                                  comm->world, &l));
    double sum = 0, count = 0;
    gllm_status s = GLLM_OK;
    for (size_t i = 0; s == GLLM_OK && i < gllm_data_loader_n_batches(l); i++) {
        float loss;
        s = gllm_data_loader_batch(l, i, b, NULL);
        const double n = s == GLLM_OK ? mask_sum(b) : 0;
        if (s == GLLM_OK && n > 0 && (s = gllm_model_forward(m, b, &loss, NULL)) == GLLM_OK) {
            sum += loss * n;
            count += n;
        }
    }
    gllm_data_loader_free(l);
    float v[2] = {(float)sum, (float)count};
    if (s == GLLM_OK)
        s = reduce_scalars(comm, dev, v, 2);
    *val_loss = v[1] > 0 ? v[0] / v[1] : NAN;
    return s;
}

typedef struct run {
    const gllm_train_config *c;
    gllm_backend *be;
    gllm_model *m;
    gllm_tokenizer *tok;
    gllm_chat_template *chat;
    gllm_dataset *ds;
    gllm_dataset *val_ds; /* the val_data file, or NULL */
    gllm_batch micro;   /* one micro-batch buffer, whatever grad_accum is */
    gllm_comm *comm;
    gllm_grad_sync *sync; /* gradient buckets over the ranks (ZeRO-1 slices) */
    gllm_device_info dev; /* for MFU and peak memory */
    double peak_flops;    /* per rank; 0 when unknown */
    float *dev_scalars; /* [2] on the backend, for reductions of counts */
    FILE *metrics;      /* rank 0 only; appended to, line by line */
    int lock_fd;        /* rank 0: the flock on out_dir */
    gllm_train_state resume;    /* step 0: a fresh run */
    gllm_train_identity saved;  /* the checkpoint's identity, when resuming */
    gllm_train_identity id;     /* this run's */
    char resume_dir[4600];
} run;

static void run_free(run *r)
{
    free_batch(&r->micro);
    if (r->metrics)
        fclose(r->metrics);
    gllm_unlock_dir(r->lock_fd);
    if (r->dev_scalars)
        r->be->free(r->be, r->dev_scalars);
    gllm_grad_sync_free(r->sync);
    if (r->comm)
        r->comm->destroy(r->comm);
    gllm_data_free(r->ds);
    gllm_data_free(r->val_ds);
    gllm_chat_free(r->chat);
    gllm_tok_free(r->tok);
    gllm_model_free(r->m);
    if (r->be)
        r->be->destroy(r->be);
}

/* mkdir -p */
static gllm_status make_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return gllm_fail(GLLM_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot create run folder: %s", buf, strerror(errno));
    return GLLM_OK;
}

/* One metrics.jsonl record: a single line, flushed, so a kill leaves at most
 * the last line torn (readers and resumption drop a line without its '\n'). */
static gllm_status emit(run *r, cJSON *o)
{
    gllm_status s = GLLM_OK;
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    if (!text)
        s = gllm_fail(GLLM_ERR_OOM, "%s/metrics.jsonl: out of memory for a record", r->c->out_dir);
    else if (fprintf(r->metrics, "%s\n", text) < 0 || fflush(r->metrics) != 0)
        s = gllm_fail(GLLM_ERR_IO, "%s/metrics.jsonl: write failed: %s", r->c->out_dir, strerror(errno));
    cJSON_free(text);
    cJSON_Delete(o);
    return s;
}

/* A float as JSON shows it: 9 significant digits (what a float holds), not
 * the 17 of its double. */
static double f9(double v)
{
    if (!isfinite(v))
        return v;
    char b[40];
    snprintf(b, sizeof b, "%.9g", v);
    return strtod(b, NULL);
}

/* metrics.jsonl on resumption: the records up to the checkpoint's step (later
 * ones belong to steps that run again), a torn last line dropped, then the
 * resume event. Built beside the old file and renamed over it (core's atomic
 * write): a kill at any moment leaves either the old file or the new whole. */
static gllm_status trim_metrics(run *r, const char *path)
{
    gllm_jsonl *in;
    gllm_status s = gllm_jsonl_open(path, &in);
    if (s == GLLM_ERR_NOT_FOUND) {
        gllm_clear_error();
        return GLLM_OK;
    }
    GLLM_TRY(s);
    gllm_atomic *out;
    s = gllm_atomic_begin(path, &out);
    long kept = 0, dropped = 0, torn = 0;
    for (;;) {
        if (s != GLLM_OK)
            break;
        const char *line;
        size_t n;
        long ln;
        bool nl;
        s = gllm_jsonl_next_line(in, &line, &n, &ln, &nl);
        if (s == GLLM_ERR_FORMAT) { /* an over-long line: not one of ours; keep nothing of it */
            gllm_clear_error();
            s = GLLM_OK;
            dropped++;
            continue;
        }
        if (s != GLLM_OK || !line)
            break;
        if (!nl) {
            torn++;
            continue;
        }
        cJSON *o = cJSON_ParseWithLength(line, n);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        bool keep = !cJSON_IsNumber(st) || st->valuedouble <= r->resume.step;
        cJSON_Delete(o);
        if (!keep) {
            dropped++;
            continue;
        }
        gllm_atomic_write(out, line, n);
        gllm_atomic_write(out, "\n", 1);
        if (++kept == 2)
            gllm_fault_point("metrics-trim");
    }
    gllm_jsonl_close(in);
    if (s != GLLM_OK) {
        gllm_atomic_abort(out);
        return s;
    }
    cJSON *ev = cJSON_CreateObject();
    bool ok = ev && cJSON_AddStringToObject(ev, "event", "resume") && cJSON_AddNumberToObject(ev, "step", r->resume.step) &&
              cJSON_AddStringToObject(ev, "from", r->resume_dir) &&
              cJSON_AddNumberToObject(ev, "dropped_records", (double)dropped) &&
              cJSON_AddNumberToObject(ev, "torn_lines", (double)torn);
    char *text = ok ? cJSON_PrintUnformatted(ev) : NULL;
    cJSON_Delete(ev);
    if (!text) {
        gllm_atomic_abort(out);
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory", path);
    }
    gllm_atomic_write(out, text, strlen(text));
    gllm_atomic_write(out, "\n", 1);
    cJSON_free(text);
    return gllm_atomic_commit(out);
}

static gllm_status open_metrics(run *r, const char *path)
{
    if (r->resume.step > 0)
        GLLM_TRY(trim_metrics(r, path));
    r->metrics = fopen(path, "a");
    if (!r->metrics)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return GLLM_OK;
}

/* Whether out_dir holds the files of a run (anything but the lock, the token
 * caches and leftovers of interrupted saves). */
static gllm_status holds_a_run(const char *dir, char *first, size_t n)
{
    first[0] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? GLLM_OK : gllm_fail(GLLM_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) && !first[0]) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "gtrain.lock") ||
            !strncmp(name, "gllm-tokens-", 12))
            continue;
        snprintf(first, n, "%s", name);
    }
    closedir(d);
    return GLLM_OK;
}

static gllm_status remove_run_file(const char *dir, const char *name)
{
    char path[4600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return GLLM_OK;
}

/* --overwrite: the old run's records and checkpoints go, the token cache stays.
 * latest goes first, so that a kill part way leaves nothing to resume from. */
static gllm_status clear_run(const char *dir)
{
    GLLM_TRY(remove_run_file(dir, "latest"));
    GLLM_TRY(gllm_sync_dir(dir));
    GLLM_TRY(remove_run_file(dir, "metrics.jsonl"));
    GLLM_TRY(remove_run_file(dir, "summary.json"));
    DIR *d = opendir(dir);
    if (!d)
        return gllm_fail(GLLM_ERR_IO, "%s: %s", dir, strerror(errno));
    gllm_status s = GLLM_OK;
    struct dirent *e;
    char path[4600];
    while (s == GLLM_OK && (e = readdir(d))) {
        if (strncmp(e->d_name, "checkpoint-", 11) && strcmp(e->d_name, "final"))
            continue;
        /* checkpoint and final folders hold only files */
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        DIR *sub = opendir(path);
        if (!sub)
            continue;
        struct dirent *f;
        char file[4900];
        while ((f = readdir(sub)))
            if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")) {
                snprintf(file, sizeof file, "%s/%s", path, f->d_name);
                unlink(file);
            }
        closedir(sub);
        if (rmdir(path) != 0)
            s = gllm_fail(GLLM_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    }
    closedir(d);
    return s == GLLM_OK ? gllm_sync_dir(dir) : s;
}

/* The run folder, by rank 0 before anything is written: created, locked
 * against a second writer, and checked against what the run is about to do. */
static gllm_status prepare_out_dir(run *r)
{
    const gllm_train_config *c = r->c;
    GLLM_TRY(make_dirs(c->out_dir));
    GLLM_TRY(gllm_lock_dir(c->out_dir, "gtrain", &r->lock_fd));
    GLLM_TRY(gllm_train_sweep(c->out_dir));
    if (c->resume)
        return GLLM_OK;
    char first[300];
    GLLM_TRY(holds_a_run(c->out_dir, first, sizeof first));
    if (!first[0])
        return GLLM_OK;
    if (!c->overwrite)
        return gllm_fail(GLLM_ERR_INVALID, "%s already holds a run (%s, ...): continue it with --resume, or start "
                         "afresh with --overwrite (which deletes its checkpoints, metrics and summary)",
                         c->out_dir, first);
    return clear_run(c->out_dir);
}

/* A model path must be a Hugging Face folder (or a GGUF file): say so
 * before the loader fails on a file inside it. */
static gllm_status check_model_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "model %s: %s; expected a Hugging Face model folder (config.json, "
                         "*.safetensors, tokenizer.json)", path, strerror(errno));
    size_t n = strlen(path);
    if (S_ISREG(sb.st_mode) && !(n > 5 && !strcmp(path + n - 5, ".gguf")))
        return gllm_fail(GLLM_ERR_INVALID, "model %s: is a file; expected a Hugging Face model folder holding "
                         "config.json, *.safetensors and tokenizer.json (give the folder, not a file in it)", path);
    if (S_ISDIR(sb.st_mode)) {
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (access(cfg, F_OK) != 0)
            return gllm_fail(GLLM_ERR_NOT_FOUND, "model %s: the folder has no config.json; expected a Hugging Face "
                             "model folder (config.json, *.safetensors, tokenizer.json)", path);
    } else if (!S_ISREG(sb.st_mode)) {
        return gllm_fail(GLLM_ERR_INVALID, "model %s: is %s; expected a Hugging Face model folder", path,
                         gllm_file_kind(sb.st_mode));
    }
    return GLLM_OK;
}

/* A line for the terminal (rank 0 only), through the progress callback. */
static int notify(gllm_train_callback cb, void *user, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int notify(gllm_train_callback cb, void *user, const char *fmt, ...)
{
    if (!cb)
        return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gllm_train_progress p = {.notice = msg, .val_loss = NAN, .loss = NAN};
    return cb(&p, user);
}

/* peaks[r] = rank r's peak device memory in MiB (every rank calls it) */
static gllm_status gather_peaks(run *r, double *peaks)
{
    const int world = r->comm->world;
    gllm_backend *be = r->be;
    GLLM_TRY(be->device_info(be, &r->dev));
    const float mine = (float)((double)r->dev.mem_peak / 1048576.0);
    if (world == 1 || world > 256) {
        peaks[0] = mine;
        return GLLM_OK;
    }
    float host[256], *dev = NULL;
    GLLM_TRY(be->alloc(be, (size_t)world * sizeof(float), "peak memory gather", (void **)&dev));
    gllm_status s = be->upload(be, dev + r->comm->rank, &mine, sizeof mine);
    if (s == GLLM_OK)
        s = r->comm->all_gather(r->comm, dev, dev + r->comm->rank, 1, GLLM_F32);
    if (s == GLLM_OK)
        s = be->download(be, host, dev, (size_t)world * sizeof(float));
    be->free(be, dev);
    for (int i = 0; s == GLLM_OK && i < world; i++)
        peaks[i] = host[i];
    return s;
}

/* The data event of metrics.jsonl and the warnings of the terminal: nothing
 * in the data passes silently. Documents that truncation left without a
 * target token are counted; a run with no target token at all is an error. */
static gllm_status report_data(run *r, gllm_train_callback cb, void *user)
{
    const gllm_train_config *c = r->c;
    const gllm_data_stats *st = gllm_data_stats_of(r->ds);
    size_t train_targets = 0;
    for (size_t i = 0; i < gllm_data_n_docs(r->ds); i++) {
        const uint8_t *lab;
        size_t n;
        int split;
        gllm_data_doc(r->ds, i, NULL, &lab, &n, &split, NULL);
        for (size_t t = 0; split == 0 && t < n; t++)
            train_targets += lab[t];
    }
    if (r->metrics) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "event", "data");
            cJSON_AddNumberToObject(o, "records", (double)st->n_records);
            cJSON_AddNumberToObject(o, "train_docs", (double)st->n_train);
            cJSON_AddNumberToObject(o, "val_docs",
                                    (double)(r->val_ds ? gllm_data_stats_of(r->val_ds)->n_docs : st->n_val));
            cJSON_AddNumberToObject(o, "bad_skipped", (double)st->n_bad);
            cJSON_AddNumberToObject(o, "truncated", (double)st->n_truncated);
            cJSON_AddNumberToObject(o, "no_target_docs", (double)st->n_no_target);
            cJSON_AddNumberToObject(o, "tokens", (double)st->n_tokens);
            cJSON_AddNumberToObject(o, "loss_tokens", (double)st->n_loss_tokens);
            cJSON_AddBoolToObject(o, "cache_hit", st->cache_hit);
        }
        GLLM_TRY(emit(r, o));
    }
    if (st->n_train == 0)
        return gllm_fail(GLLM_ERR_INVALID, "%s: no training documents", c->data);
    if (train_targets == 0)
        return gllm_fail(GLLM_ERR_INVALID, "%s: no target tokens in the training documents: all %zu have none "
                         "after truncation to seq_len %d (%zu documents truncated); raise seq_len or shorten the "
                         "prompts", c->data, st->n_train, c->seq_len, st->n_truncated);
    if (st->n_bad)
        notify(cb, user, "warning: %zu of %zu records skipped as bad (skip_bad), the first: %s", st->n_bad,
               st->n_records, st->first_bad);
    if (st->n_no_target)
        notify(cb, user, "warning: %zu of %zu documents (%.1f%%) have no target token after truncation to "
               "seq_len %d: they train nothing", st->n_no_target, st->n_docs,
               100.0 * (double)st->n_no_target / (double)(st->n_docs ? st->n_docs : 1), c->seq_len);
    return GLLM_OK;
}

static gllm_status setup(run *r, const gllm_comm_factory *make_comm, gllm_train_callback cb, void *user)
{
    const gllm_train_config *c = r->c;
    GLLM_TRY(gllm_backend_open(c->backend, &r->be));
    if (make_comm)
        GLLM_TRY(make_comm->make(make_comm->ctx, r->be, &r->comm));
    else
        GLLM_TRY(gllm_comm_single(r->be, &r->comm));
    if (r->comm->rank == 0) {
        if (!strcmp(c->backend, "auto"))
            notify(cb, user, "backend %s (chosen by \"auto\")", r->be->name);
        else
            notify(cb, user, "backend %s", r->be->name);
    }
    GLLM_TRY(r->be->alloc(r->be, 2 * sizeof(float), "reduction scalars", (void **)&r->dev_scalars));
    if (r->comm->rank == 0)
        GLLM_TRY(prepare_out_dir(r));
    if (c->resume)
        GLLM_TRY(gllm_train_find_checkpoint(c, r->resume_dir, sizeof r->resume_dir));
    if (!r->resume_dir[0])
        GLLM_TRY(check_model_path(c->model));
    /* resuming: the weights, optimizer state and position of the checkpoint */
    GLLM_TRY(gllm_model_load(r->resume_dir[0] ? r->resume_dir : c->model, r->be, &r->m));
    if (c->bucket_mb < 0)
        return gllm_fail(GLLM_ERR_INVALID, "bucket_mb %g: must be >= 0 (0: one reduction)",
                         c->bucket_mb);
    GLLM_TRY(gllm_grad_sync_new(r->m, r->comm, (size_t)(c->bucket_mb * 1048576.0), c->zero1,
                                &r->sync));
    GLLM_TRY(r->be->device_info(r->be, &r->dev));
    const char *peak_src;
    r->peak_flops = gllm_train_peak_flops(r->dev.name, &peak_src);
    if (r->resume_dir[0]) {
        char opt[4700];
        GLLM_TRY(gllm_train_load_state(r->resume_dir, &r->resume, &r->saved));
        snprintf(opt, sizeof opt, "%s/optimizer-rank%d.safetensors", r->resume_dir,
                 r->comm->rank);
        GLLM_TRY(gllm_model_load_optimizer(r->m, opt));
    }
    GLLM_TRY(gllm_tok_load(c->model, &r->tok));
    const gllm_model_config *mc = gllm_model_cfg(r->m);
    if (gllm_tok_vocab_size(r->tok) > mc->vocab_size)
        return gllm_fail(GLLM_ERR_INVALID, "%s: tokenizer has %d tokens, the model's vocab_size is %d",
                         c->model, gllm_tok_vocab_size(r->tok), mc->vocab_size);
    if (c->seq_len > mc->max_pos)
        return gllm_fail(GLLM_ERR_INVALID, "seq_len %d exceeds the model's max_position_embeddings %d",
                         c->seq_len, mc->max_pos);
    /* a chat template is needed only by "messages" records; a model without one is fine */
    if (gllm_chat_load(c->model, c->chat_template[0] ? c->chat_template : NULL, &r->chat) != GLLM_OK) {
        if (c->chat_template[0])
            return gllm_fail_prefix(GLLM_ERR_INVALID, "chat_template \"%s\": ", c->chat_template);
        r->chat = NULL;
        gllm_clear_error();
    }
    gllm_data_options o = gllm_data_default_options();
    o.max_len = c->seq_len;
    o.overlong = GLLM_DATA_OVERLONG_TRUNCATE;
    o.skip_bad = c->skip_bad;
    o.chat = r->chat;
    o.chat_source = c->chat_template[0] ? c->chat_template : c->model;
    o.val_fraction = c->val_fraction;
    o.seed = c->seed;
    o.cache_dir = c->out_dir;
    o.tokenizer_path = c->model;
    gllm_data_encoder enc = gllm_data_encoder_tok(r->tok);
    /* rank 0 tokenizes and writes the token cache; the other ranks then read it
     * (they wait as long as tokenizing takes: a week, rather than the collective
     * timeout; a rank that dies still ends the wait at once) */
    gllm_status ls = GLLM_OK;
    r->comm->timeout_s = 7 * 24 * 3600.0;
    if (r->comm->rank != 0)
        GLLM_TRY(r->comm->barrier(r->comm));
    ls = gllm_data_load(c->data, &enc, &o, &r->ds);
    if (r->comm->rank == 0 && r->comm->world > 1)
        GLLM_TRY(r->comm->barrier(r->comm));
    GLLM_TRY(ls);
    if (c->val_data[0]) { /* every rank reads the validation file (its token cache is rank 0's) */
        gllm_data_options vo = o;
        vo.val_fraction = 0;
        if (r->comm->rank != 0)
            GLLM_TRY(r->comm->barrier(r->comm));
        ls = gllm_data_load(c->val_data, &enc, &vo, &r->val_ds);
        if (r->comm->rank == 0 && r->comm->world > 1)
            GLLM_TRY(r->comm->barrier(r->comm));
        GLLM_TRY(ls);
        if (gllm_data_stats_of(r->val_ds)->n_loss_tokens == 0)
            return gllm_fail(GLLM_ERR_INVALID, "%s: val_data has no target token", c->val_data);
    }
    r->comm->timeout_s = 0;
    gllm_train_identity_of(c, r->comm->world, gllm_data_stats_of(r->ds)->file_hash, &r->id);
    if (r->resume_dir[0])
        GLLM_TRY(gllm_train_check_identity(r->resume_dir, &r->saved, &r->id));
    /* metrics.jsonl is touched only once the run is known to go ahead */
    if (r->comm->rank == 0) {
        char path[4600];
        snprintf(path, sizeof path, "%s/metrics.jsonl", c->out_dir);
        GLLM_TRY(open_metrics(r, path));
    }
    GLLM_TRY(report_data(r, r->comm->rank == 0 ? cb : NULL, user));
    if (!alloc_batch(&r->micro, c->batch_size, c->seq_len))
        return gllm_fail(GLLM_ERR_OOM, "out of memory for a micro-batch of %d x %d tokens", c->batch_size,
                         c->seq_len);
    return gllm_model_plan(r->m, c->batch_size, c->seq_len);
}

/* The data stream of the run: micro-batch `cursor` of epoch `epoch`'s
 * shuffled order, moving to a fresh shuffle at the end of each epoch. */
typedef struct stream {
    gllm_data_loader *loader;
    size_t cursor, per_epoch;
    int epoch;
} stream;

static gllm_status stream_seek(run *r, stream *d, int epoch, size_t cursor)
{
    const gllm_train_config *c = r->c;
    if (!d->loader || d->epoch != epoch) {
        gllm_data_loader_free(d->loader);
        d->loader = NULL;
        GLLM_TRY(gllm_data_loader_new(r->ds, 0, c->batch_size, c->seq_len, c->packing, (uint64_t)epoch,
                                      r->comm->rank, r->comm->world, &d->loader));
        d->per_epoch = gllm_data_loader_n_batches(d->loader);
    }
    d->epoch = epoch;
    d->cursor = cursor;
    return GLLM_OK;
}

static gllm_status stream_next(run *r, stream *d, gllm_batch *b)
{
    if (d->cursor == d->per_epoch) /* next epoch: a fresh shuffle */
        GLLM_TRY(stream_seek(r, d, d->epoch + 1, 0));
    return gllm_data_loader_batch(d->loader, d->cursor++, b, NULL);
}

static cJSON *step_record(const gllm_train_progress *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "step", p->step);
    cJSON_AddNumberToObject(o, "epoch", p->epoch);
    gllm_json_add_number(o, "loss", f9(p->loss));
    cJSON_AddNumberToObject(o, "lr", f9(p->lr));
    gllm_json_add_number(o, "grad_norm", f9(p->grad_norm));
    cJSON_AddNumberToObject(o, "tokens", (double)p->tokens);
    cJSON_AddNumberToObject(o, "target_tokens", p->target_tokens);
    cJSON_AddNumberToObject(o, "tokens_per_s", round(p->tokens_per_s * 10) / 10);
    cJSON_AddNumberToObject(o, "elapsed_s", round(p->elapsed_s * 1000) / 1000);
    cJSON_AddNumberToObject(o, "rss_mib", round(p->rss_mib * 10) / 10);
    if (isfinite(p->mfu)) /* unknown (no peak rate for the device: the CPU) is null, not a fault */
        cJSON_AddNumberToObject(o, "mfu", round(p->mfu * 1e4) / 1e4);
    else
        cJSON_AddNullToObject(o, "mfu");
    cJSON_AddNumberToObject(o, "comm_share", round(p->comm_share * 1e4) / 1e4);
    cJSON_AddNumberToObject(o, "peak_mem_mib", round(p->peak_mem_mib * 10) / 10);
    return o;
}

static cJSON *event(const char *name, int step)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "event", name);
        cJSON_AddNumberToObject(o, "step", step);
    }
    return o;
}

static gllm_status write_summary(run *r, const gllm_train_summary *sum, const double *peaks, double flops_tok)
{
    const gllm_train_config *c = r->c;
    char path[4600];
    snprintf(path, sizeof path, "%s/summary.json", c->out_dir);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory", path);
    cJSON_AddNumberToObject(o, "steps", sum->steps);
    cJSON_AddNumberToObject(o, "skipped_steps", (double)sum->skipped_steps);
    gllm_json_add_number(o, "first_loss", f9(sum->first_loss));
    gllm_json_add_number(o, "final_loss", f9(sum->final_loss));
    if (c->val_fraction > 0 || c->val_data[0])
        gllm_json_add_number(o, "final_val_loss", f9(sum->final_val_loss));
    else
        cJSON_AddNullToObject(o, "final_val_loss");
    cJSON_AddNumberToObject(o, "tokens", (double)sum->tokens);
    cJSON_AddNumberToObject(o, "seconds", round(sum->seconds * 1000) / 1000);
    cJSON_AddNumberToObject(o, "tokens_per_s", round(sum->tokens_per_s * 10) / 10);
    cJSON_AddStringToObject(o, "backend", r->be->name);
    cJSON_AddNumberToObject(o, "parameters", (double)gllm_model_numel(r->m));
    cJSON_AddNumberToObject(o, "no_target_docs", (double)gllm_data_stats_of(r->ds)->n_no_target);
    cJSON_AddStringToObject(o, "checkpoint", "final");
    const int world = r->comm->world;
    const char *peak_src;
    gllm_train_peak_flops(r->dev.name, &peak_src);
    gllm_grad_sync_stats gs;
    gllm_grad_sync_stats_of(r->sync, &gs);
    cJSON_AddNumberToObject(o, "ranks", world);
    cJSON_AddStringToObject(o, "device", r->dev.name);
    cJSON_AddNumberToObject(o, "peak_tflops", round(r->peak_flops / 1e11) / 10);
    cJSON_AddStringToObject(o, "peak_source", peak_src);
    cJSON_AddNumberToObject(o, "train_flops_per_token", f9(flops_tok));
    if (isfinite(sum->mfu))
        cJSON_AddNumberToObject(o, "mfu", round(sum->mfu * 1e4) / 1e4);
    else
        cJSON_AddNullToObject(o, "mfu");
    cJSON_AddNumberToObject(o, "comm_share", round(sum->comm_share * 1e4) / 1e4);
    cJSON_AddNumberToObject(o, "grad_buckets", gs.n_buckets);
    cJSON_AddBoolToObject(o, "zero1", r->c->zero1 && world > 1);
    cJSON_AddNumberToObject(o, "optimizer_bytes_per_rank", (double)sum->optimizer_bytes);
    cJSON *pl = cJSON_AddArrayToObject(o, "peak_mem_mib_per_rank");
    for (int i = 0; i < world && i < 256; i++)
        cJSON_AddItemToArray(pl, cJSON_CreateNumber(round(peaks[i] * 10) / 10));
    gllm_status s = gllm_json_write_file(path, o);
    cJSON_Delete(o);
    return s;
}

gllm_status gllm_train_run(const gllm_train_config *c, const gllm_comm_factory *make_comm,
                           gllm_train_callback on_progress, void *user, gllm_train_summary *summary)
{
    run r = {.c = c, .lock_fd = -1};
    memset(summary, 0, sizeof *summary);
    gllm_status s = setup(&r, make_comm, on_progress, user);
    const int rank = r.comm ? r.comm->rank : 0, world = r.comm ? r.comm->world : 1;
    stream d = {0};
    if (s == GLLM_OK)
        s = stream_seek(&r, &d, r.resume.epoch, r.resume.cursor);
    const size_t per_epoch = d.per_epoch;
    const int steps_per_epoch = (int)(per_epoch / (size_t)c->grad_accum);
    const int total = c->max_steps > 0 ? c->max_steps : c->epochs * steps_per_epoch;
    if (s == GLLM_OK && total < 1)
        s = gllm_fail(GLLM_ERR_INVALID, "%s: %zu batches per epoch are fewer than grad_accum %d",
                      c->data, per_epoch, c->grad_accum);
    if (s == GLLM_OK && r.resume.cursor > per_epoch)
        s = gllm_fail(GLLM_ERR_FORMAT, "%s/trainer_state.json: \"cursor\" %zu is past the %zu batches of an epoch",
                      r.resume_dir, r.resume.cursor, per_epoch);
    const gllm_adamw_config base = {.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                                    .weight_decay = c->weight_decay,
                                    .max_grad_norm = c->max_grad_norm};
    const double t0 = now_s() - r.resume.elapsed_s;
    double prev_el = r.resume.elapsed_s, prev_wait = 0, mfu_sum = 0, mfu_time = 0, comm_total = 0;
    const double flops_tok = r.m ? gllm_model_train_flops_per_token(r.m, c->seq_len) : 0;
    long long tokens = r.resume.tokens, skipped = r.resume.skipped_steps;
    int skipped_in_a_row = 0;
    summary->first_loss = r.resume.first_loss;
    summary->steps = r.resume.step;
    if (s == GLLM_OK && r.resume.step >= total)
        s = gllm_fail(GLLM_ERR_INVALID, "%s: already at step %d of %d", r.resume_dir,
                      r.resume.step, total);
    for (int step = r.resume.step + 1; s == GLLM_OK && step <= total; step++) {
        /* pass 1 counts the target tokens of the step's micro-batches (the
         * loss is their mean); pass 2 replays them through the model. One
         * micro-batch buffer serves both, so grad_accum costs no memory. */
        const int epoch0 = d.epoch;
        const size_t cursor0 = d.cursor;
        double loss_tokens = 0;
        for (int k = 0; s == GLLM_OK && k < c->grad_accum; k++) {
            s = stream_next(&r, &d, &r.micro);
            loss_tokens += s == GLLM_OK ? mask_sum(&r.micro) : 0;
        }
        float tokens_all = (float)loss_tokens;
        if (s == GLLM_OK)
            s = reduce_scalars(r.comm, r.dev_scalars, &tokens_all, 1);
        if (s != GLLM_OK)
            break;
        tokens += (long long)world * c->grad_accum * c->batch_size * c->seq_len;
        if (tokens_all == 0) {
            /* no target token on any rank: an optimizer step would divide by
             * zero; the batches are used up, the step is taken again from the next */
            skipped++;
            if (++skipped_in_a_row > steps_per_epoch + 1) {
                s = gllm_fail(GLLM_ERR_INVALID, "%s: %d steps in a row without a target token (a whole epoch)",
                              c->data, skipped_in_a_row);
                break;
            }
            if (r.metrics) {
                cJSON *o = event("skipped", step);
                cJSON_AddStringToObject(o, "reason", "no target token in the step's batches");
                cJSON_AddNumberToObject(o, "skipped_steps", (double)skipped);
                s = emit(&r, o);
            }
            step--;
            continue;
        }
        skipped_in_a_row = 0;
        const float scale = 1.0f / tokens_all;
        double loss_sum = 0;
        s = gllm_model_zero_grad(r.m);
        if (s == GLLM_OK && c->grad_accum > 1)
            s = stream_seek(&r, &d, epoch0, cursor0);
        for (int k = 0; s == GLLM_OK && k < c->grad_accum; k++) {
            if (c->grad_accum > 1)
                s = stream_next(&r, &d, &r.micro);
            float loss = 0;
            if (s == GLLM_OK && k == c->grad_accum - 1) /* its backward starts the gradient buckets */
                s = gllm_grad_sync_arm(r.sync);
            const double n = s == GLLM_OK ? mask_sum(&r.micro) : 0;
            if (n > 0)
                s = gllm_model_forward_backward(r.m, &r.micro, scale, &loss);
            loss_sum += (double)loss * n;
        }
        float loss_all = (float)loss_sum;
        if (s == GLLM_OK)
            s = gllm_grad_sync_finish(r.sync);
        if (s == GLLM_OK)
            s = reduce_scalars(r.comm, r.dev_scalars, &loss_all, 1);
        gllm_adamw_config h = base;
        h.lr = lr_at(c, step, total);
        float gnorm = 0;
        if (s == GLLM_OK)
            s = gllm_model_adamw_step(r.m, &h, step, &gnorm);
        if (s != GLLM_OK)
            break;
        const float loss = loss_all / tokens_all;
        if (step == 1)
            summary->first_loss = loss;
        summary->final_loss = loss;
        const double el = now_s() - t0;
        /* this step's cost: time, the host's waits on communication, MFU over all ranks */
        gllm_grad_sync_stats gs;
        gllm_grad_sync_stats_of(r.sync, &gs);
        const double step_s = el - prev_el, comm_s = gs.wait_s - prev_wait;
        prev_el = el;
        prev_wait = gs.wait_s;
        const double step_tokens = (double)world * c->grad_accum * c->batch_size * c->seq_len;
        s = r.be->device_info(r.be, &r.dev);
        gllm_train_progress p = {.step = step, .total_steps = total, .epoch = d.epoch, .loss = loss,
                                 .lr = h.lr, .grad_norm = gnorm, .tokens = tokens,
                                 .target_tokens = tokens_all, .skipped_steps = skipped,
                                 .elapsed_s = el, .tokens_per_s = tokens / (el > 0 ? el : 1e-9),
                                 .eta_s = el / step * (total - step), .rss_mib = rss_mib(),
                                 .val_loss = NAN,
                                 .mfu = r.peak_flops > 0 && step_s > 0
                                            ? flops_tok * step_tokens / step_s /
                                                  (r.peak_flops * world)
                                            : NAN,
                                 .comm_share = step_s > 0 ? comm_s / step_s : 0,
                                 .peak_mem_mib = (double)r.dev.mem_peak / 1048576.0};
        mfu_sum += isnan(p.mfu) ? 0 : p.mfu * step_s;
        mfu_time += step_s;
        comm_total += comm_s;
        if (s == GLLM_OK && ((c->eval_every > 0 && step % c->eval_every == 0) ||
                             (step == total && (c->val_fraction > 0 || r.val_ds)))) {
            s = evaluate(r.m, r.val_ds ? r.val_ds : r.ds, r.val_ds ? 0 : 1, c, r.comm, r.dev_scalars, &r.micro, &p.val_loss);
            summary->final_val_loss = p.val_loss;
            if (s == GLLM_OK && r.metrics) {
                cJSON *o = event("eval", step);
                gllm_json_add_number(o, "val_loss", f9(p.val_loss));
                s = emit(&r, o);
            }
        }
        if (s == GLLM_OK && r.metrics)
            s = emit(&r, step_record(&p));
        summary->steps = step;
        if (s == GLLM_OK && c->save_every > 0 && step % c->save_every == 0) {
            const gllm_train_state ts = {.step = step, .epoch = d.epoch, .cursor = d.cursor,
                                         .tokens = tokens, .skipped_steps = skipped,
                                         .first_loss = summary->first_loss, .elapsed_s = el};
            s = gllm_train_save_checkpoint(r.m, r.comm, c, &r.id, &ts);
            if (s == GLLM_OK && r.metrics)
                s = emit(&r, event("checkpoint", step));
        }
        if (rank == 0)
            gllm_fault_point("step"); /* the kill tests: a crash after a step */
        if (s == GLLM_OK && on_progress && rank == 0 &&
            (step % c->log_every == 0 || step == total || !isnan(p.val_loss)) &&
            on_progress(&p, user) != 0) {
            s = gllm_fail(GLLM_ERR_INVALID, "interrupted at step %d: resume with \"resume\": true "
                          "(or gtrain --resume) from the last checkpoint", step);
            break;
        }
    }
    gllm_data_loader_free(d.loader);
    /* every rank's peak memory, for the summary */
    double peaks[256] = {0};
    if (s == GLLM_OK && r.comm)
        s = gather_peaks(&r, peaks);
    summary->mfu = mfu_time > 0 && r.peak_flops > 0 ? mfu_sum / mfu_time : NAN;
    summary->comm_share = mfu_time > 0 ? comm_total / mfu_time : 0;
    for (int i = 0; i < world && i < 256; i++)
        summary->peak_mem_mib = fmax(summary->peak_mem_mib, peaks[i]);
    summary->optimizer_bytes = r.m ? gllm_model_optimizer_bytes(r.m) : 0;
    summary->seconds = now_s() - t0;
    summary->tokens = tokens;
    summary->skipped_steps = skipped;
    summary->tokens_per_s = tokens / (summary->seconds > 0 ? summary->seconds : 1e-9);
    if (s == GLLM_OK && rank == 0) {
        char dir[4600];
        snprintf(dir, sizeof dir, "%s/final", c->out_dir);
        s = gllm_train_save_hf(r.m, c->model, dir);
    }
    if (s == GLLM_OK && rank == 0)
        s = write_summary(&r, summary, peaks, flops_tok);
    run_free(&r);
    return s;
}
