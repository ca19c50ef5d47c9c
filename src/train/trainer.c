/* The training loop: dataset -> micro-batches -> forward/backward ->
 * clipped AdamW with warmup + cosine learning rate, validation, metrics. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gllm/data.h"
#include "gllm/model.h"
#include "gllm/tok.h"
#include "core/file.h"
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

/* Mean loss over the validation split (token-weighted). */
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

/* Mean loss over the validation split (token-weighted), over all ranks. */
static gllm_status evaluate(gllm_model *m, const gllm_dataset *ds, const gllm_train_config *c,
                            gllm_comm *comm, float *dev, gllm_batch *b, float *val_loss)
{
    gllm_data_loader *l;
    GLLM_TRY(gllm_data_loader_new(ds, 1, c->batch_size, c->seq_len, c->packing, 0, comm->rank,
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

/* a number for JSON, or null when it is not finite */
static const char *json_num(double x, int digits, char *buf, size_t n)
{
    if (!isfinite(x))
        return "null";
    snprintf(buf, n, "%.*f", digits, x);
    return buf;
}

typedef struct run {
    const gllm_train_config *c;
    gllm_backend *be;
    gllm_model *m;
    gllm_tokenizer *tok;
    gllm_chat_template *chat;
    gllm_dataset *ds;
    gllm_batch *micro;
    gllm_comm *comm;
    gllm_grad_sync *sync; /* gradient buckets over the ranks (ZeRO-1 slices) */
    gllm_device_info dev; /* for MFU and peak memory */
    double peak_flops;    /* per rank; 0 when unknown */
    float *dev_scalars; /* [2] on the backend, for reductions of counts */
    FILE *metrics;      /* rank 0 only */
    gllm_train_state resume; /* step 0: a fresh run */
    char resume_dir[4600];
} run;

static void run_free(run *r)
{
    if (r->micro)
        for (int i = 0; i < r->c->grad_accum; i++)
            free_batch(&r->micro[i]);
    free(r->micro);
    if (r->metrics)
        fclose(r->metrics);
    if (r->dev_scalars)
        r->be->free(r->be, r->dev_scalars);
    gllm_grad_sync_free(r->sync);
    if (r->comm)
        r->comm->destroy(r->comm);
    gllm_data_free(r->ds);
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

/* metrics.jsonl: new, or on resumption the lines up to the checkpoint's step
 * (later ones belong to steps that are run again) */
static gllm_status open_metrics(run *r, const char *path)
{
    char *old = NULL;
    if (r->resume.step > 0 && gllm_read_file(path, &old, NULL) != GLLM_OK)
        gllm_clear_error();
    r->metrics = fopen(path, "w");
    if (!r->metrics) {
        free(old);
        return gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    for (char *line = old ? strtok(old, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        const char *st = strstr(line, "\"step\":");
        if (!st || atoi(st + 7) <= r->resume.step)
            fprintf(r->metrics, "%s\n", line);
    }
    free(old);
    if (r->resume.step > 0)
        fprintf(r->metrics, "{\"event\":\"resume\",\"step\":%d,\"from\":\"%s\"}\n",
                r->resume.step, r->resume_dir);
    return GLLM_OK;
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

static gllm_status setup(run *r, const gllm_comm_factory *make_comm)
{
    const gllm_train_config *c = r->c;
    GLLM_TRY(gllm_backend_open(c->backend, &r->be));
    if (make_comm)
        GLLM_TRY(make_comm->make(make_comm->ctx, r->be, &r->comm));
    else
        GLLM_TRY(gllm_comm_single(r->be, &r->comm));
    GLLM_TRY(r->be->alloc(r->be, 2 * sizeof(float), "reduction scalars", (void **)&r->dev_scalars));
    if (c->resume)
        GLLM_TRY(gllm_train_find_checkpoint(c, r->resume_dir, sizeof r->resume_dir));
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
        GLLM_TRY(gllm_train_load_state(r->resume_dir, c, r->comm->world, &r->resume));
        snprintf(opt, sizeof opt, "%s/optimizer-rank%d.safetensors", r->resume_dir,
                 r->comm->rank);
        GLLM_TRY(gllm_model_load_optimizer(r->m, opt));
    }
    if (r->comm->rank == 0) {
        GLLM_TRY(make_dirs(c->out_dir));
        char path[4600];
        snprintf(path, sizeof path, "%s/metrics.jsonl", c->out_dir);
        GLLM_TRY(open_metrics(r, path));
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
    /* rank 0 tokenizes and writes the token cache; the other ranks then read it */
    gllm_status ls = GLLM_OK;
    if (r->comm->rank != 0)
        GLLM_TRY(r->comm->barrier(r->comm));
    ls = gllm_data_load(c->data, &enc, &o, &r->ds);
    if (r->comm->rank == 0 && r->comm->world > 1)
        GLLM_TRY(r->comm->barrier(r->comm));
    GLLM_TRY(ls);
    const gllm_data_stats *st = gllm_data_stats_of(r->ds);
    if (r->metrics)
        fprintf(r->metrics,
            "{\"event\":\"data\",\"records\":%zu,\"train_docs\":%zu,\"val_docs\":%zu,"
            "\"bad_skipped\":%zu,\"truncated\":%zu,\"tokens\":%zu,\"loss_tokens\":%zu,"
            "\"cache_hit\":%s}\n",
            st->n_records, st->n_train, st->n_val, st->n_bad, st->n_truncated, st->n_tokens,
            st->n_loss_tokens, st->cache_hit ? "true" : "false");
    if (st->n_train == 0)
        return gllm_fail(GLLM_ERR_INVALID, "%s: no training documents", c->data);
    r->micro = calloc((size_t)c->grad_accum, sizeof *r->micro);
    if (!r->micro)
        return gllm_fail(GLLM_ERR_OOM, "out of memory for micro-batches");
    for (int i = 0; i < c->grad_accum; i++)
        if (!alloc_batch(&r->micro[i], c->batch_size, c->seq_len))
            return gllm_fail(GLLM_ERR_OOM, "out of memory for micro-batches");
    return gllm_model_plan(r->m, c->batch_size, c->seq_len);
}

gllm_status gllm_train_run(const gllm_train_config *c, const gllm_comm_factory *make_comm,
                           gllm_train_callback on_progress, void *user, gllm_train_summary *summary)
{
    run r = {.c = c};
    memset(summary, 0, sizeof *summary);
    gllm_status s = setup(&r, make_comm);
    const int rank = r.comm ? r.comm->rank : 0, world = r.comm ? r.comm->world : 1;
    gllm_data_loader *loader = NULL;
    if (s == GLLM_OK)
        s = gllm_data_loader_new(r.ds, 0, c->batch_size, c->seq_len, c->packing,
                                 (uint64_t)r.resume.epoch, rank, world, &loader);
    const size_t per_epoch = loader ? gllm_data_loader_n_batches(loader) : 0;
    const int steps_per_epoch = (int)(per_epoch / (size_t)c->grad_accum);
    const int total = c->max_steps > 0 ? c->max_steps : c->epochs * steps_per_epoch;
    if (s == GLLM_OK && total < 1)
        s = gllm_fail(GLLM_ERR_INVALID, "%s: %zu batches per epoch are fewer than grad_accum %d",
                      c->data, per_epoch, c->grad_accum);
    const gllm_adamw_config base = {.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                                    .weight_decay = c->weight_decay,
                                    .max_grad_norm = c->max_grad_norm};
    const double t0 = now_s() - r.resume.elapsed_s;
    double prev_el = r.resume.elapsed_s, prev_wait = 0, mfu_sum = 0, mfu_time = 0, comm_total = 0;
    const double flops_tok = r.m ? gllm_model_train_flops_per_token(r.m, c->seq_len) : 0;
    size_t cursor = r.resume.cursor;
    int epoch = r.resume.epoch;
    long long tokens = r.resume.tokens;
    summary->first_loss = r.resume.first_loss;
    summary->steps = r.resume.step;
    if (s == GLLM_OK && r.resume.step >= total)
        s = gllm_fail(GLLM_ERR_INVALID, "%s: already at step %d of %d", r.resume_dir,
                      r.resume.step, total);
    for (int step = r.resume.step + 1; s == GLLM_OK && step <= total; step++) {
        double loss_tokens = 0;
        for (int k = 0; s == GLLM_OK && k < c->grad_accum; k++) {
            if (cursor == per_epoch) { /* next epoch: a fresh shuffle */
                gllm_data_loader_free(loader);
                loader = NULL;
                cursor = 0;
                s = gllm_data_loader_new(r.ds, 0, c->batch_size, c->seq_len, c->packing,
                                         (uint64_t)++epoch, rank, world, &loader);
            }
            if (s == GLLM_OK)
                s = gllm_data_loader_batch(loader, cursor++, &r.micro[k], NULL);
            loss_tokens += s == GLLM_OK ? mask_sum(&r.micro[k]) : 0;
        }
        /* one optimizer step averages the loss over every target token of its
         * micro-batches, on every rank */
        float tokens_all = (float)loss_tokens;
        if (s == GLLM_OK)
            s = reduce_scalars(r.comm, r.dev_scalars, &tokens_all, 1);
        const float scale = tokens_all > 0 ? 1.0f / tokens_all : 0.0f;
        double loss_sum = 0;
        if (s == GLLM_OK)
            s = gllm_model_zero_grad(r.m);
        for (int k = 0; s == GLLM_OK && k < c->grad_accum; k++) {
            float loss = 0;
            if (k == c->grad_accum - 1) /* its backward starts the gradient buckets */
                s = gllm_grad_sync_arm(r.sync);
            if (s == GLLM_OK && mask_sum(&r.micro[k]) > 0)
                s = gllm_model_forward_backward(r.m, &r.micro[k], scale, &loss);
            loss_sum += (double)loss * mask_sum(&r.micro[k]);
        }
        float loss_all = (float)loss_sum;
        if (s == GLLM_OK)
            s = gllm_grad_sync_finish(r.sync);
        if (s == GLLM_OK)
            s = reduce_scalars(r.comm, r.dev_scalars, &loss_all, 1);
        gllm_adamw_config h = base;
        h.lr = lr_at(c, step, total);
        float gnorm = 0;
        if (s == GLLM_OK && scale > 0)
            s = gllm_model_adamw_step(r.m, &h, step, &gnorm);
        if (s != GLLM_OK)
            break;
        tokens += (long long)world * c->grad_accum * c->batch_size * c->seq_len;
        const float loss = tokens_all > 0 ? loss_all / tokens_all : NAN;
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
        if (s == GLLM_OK)
            s = r.be->device_info(r.be, &r.dev);
        gllm_train_progress p = {.step = step, .total_steps = total, .epoch = epoch, .loss = loss,
                                 .lr = h.lr, .grad_norm = gnorm, .tokens = tokens,
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
        if ((c->eval_every > 0 && step % c->eval_every == 0) ||
            (step == total && c->val_fraction > 0)) {
            s = evaluate(r.m, r.ds, c, r.comm, r.dev_scalars, &r.micro[0], &p.val_loss);
            summary->final_val_loss = p.val_loss;
            if (s == GLLM_OK && r.metrics)
                fprintf(r.metrics, "{\"event\":\"eval\",\"step\":%d,\"val_loss\":%.6f}\n", step,
                        p.val_loss);
        }
        char numbuf[32];
        if (r.metrics)
            fprintf(r.metrics,
                "{\"step\":%d,\"epoch\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,"
                "\"tokens\":%lld,\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f,\"rss_mib\":%.1f,"
                "\"mfu\":%s,\"comm_share\":%.4f,\"peak_mem_mib\":%.1f}\n",
                step, epoch, loss, h.lr, gnorm, tokens, p.tokens_per_s, el, p.rss_mib,
                json_num(p.mfu, 4, numbuf, sizeof numbuf), p.comm_share, p.peak_mem_mib);
        if (r.metrics)
            fflush(r.metrics);
        summary->steps = step;
        if (s == GLLM_OK && c->save_every > 0 && step % c->save_every == 0) {
            const gllm_train_state ts = {.step = step, .epoch = epoch, .cursor = cursor,
                                         .tokens = tokens, .first_loss = summary->first_loss,
                                         .elapsed_s = el};
            s = gllm_train_save_checkpoint(r.m, r.comm, c, &ts);
            if (s == GLLM_OK && r.metrics)
                fprintf(r.metrics, "{\"event\":\"checkpoint\",\"step\":%d}\n", step);
        }
        if (s == GLLM_OK && on_progress && rank == 0 &&
            (step % c->log_every == 0 || step == total || !isnan(p.val_loss)) &&
            on_progress(&p, user) != 0) {
            s = gllm_fail(GLLM_ERR_INVALID, "interrupted at step %d: resume with \"resume\": true "
                          "(or gtrain --resume) from the last checkpoint", step);
            break;
        }
    }
    gllm_data_loader_free(loader);
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
    summary->tokens_per_s = tokens / (summary->seconds > 0 ? summary->seconds : 1e-9);
    if (s == GLLM_OK && rank == 0) {
        char dir[4600];
        snprintf(dir, sizeof dir, "%s/final", c->out_dir);
        s = gllm_train_save_hf(r.m, c->model, dir);
    }
    if (s == GLLM_OK && rank == 0) {
        char path[4600];
        snprintf(path, sizeof path, "%s/summary.json", c->out_dir);
        FILE *f = fopen(path, "w");
        if (!f)
            s = gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        else {
            char val[32] = "null", mfu[32], peak_list[256 * 12] = "";
            if (c->val_fraction > 0 && !isnan(summary->final_val_loss))
                snprintf(val, sizeof val, "%.6f", summary->final_val_loss);
            for (int i = 0, k = 0; i < world && i < 256; i++)
                k += snprintf(peak_list + k, sizeof peak_list - (size_t)k, "%s%.1f", i ? "," : "",
                              peaks[i]);
            const char *peak_src;
            gllm_train_peak_flops(r.dev.name, &peak_src);
            gllm_grad_sync_stats gs;
            gllm_grad_sync_stats_of(r.sync, &gs);
            fprintf(f,
                    "{\"steps\":%d,\"first_loss\":%.6f,\"final_loss\":%.6f,\"final_val_loss\":%s,"
                    "\"tokens\":%lld,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"backend\":\"%s\","
                    "\"parameters\":%zu,\"checkpoint\":\"final\",\"ranks\":%d,"
                    "\"device\":\"%s\",\"peak_tflops\":%.1f,\"peak_source\":\"%s\","
                    "\"train_flops_per_token\":%.6g,\"mfu\":%s,\"comm_share\":%.4f,"
                    "\"grad_buckets\":%d,\"zero1\":%s,\"optimizer_bytes_per_rank\":%zu,"
                    "\"peak_mem_mib_per_rank\":[%s]}\n",
                    summary->steps, summary->first_loss, summary->final_loss, val,
                    summary->tokens, summary->seconds, summary->tokens_per_s, r.be->name,
                    gllm_model_numel(r.m), world, r.dev.name, r.peak_flops / 1e12, peak_src,
                    flops_tok, json_num(summary->mfu, 4, mfu, sizeof mfu), summary->comm_share,
                    gs.n_buckets, c->zero1 && world > 1 ? "true" : "false",
                    summary->optimizer_bytes, peak_list);
            fclose(f);
        }
    }
    run_free(&r);
    return s;
}
