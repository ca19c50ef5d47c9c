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

typedef struct run {
    const gllm_train_config *c;
    gllm_backend *be;
    gllm_model *m;
    gllm_tokenizer *tok;
    gllm_chat_template *chat;
    gllm_dataset *ds;
    gllm_batch *micro;
    gllm_comm *comm;
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

static gllm_status setup(run *r, gllm_comm_factory make_comm)
{
    const gllm_train_config *c = r->c;
    GLLM_TRY(gllm_backend_open(c->backend, &r->be));
    GLLM_TRY((make_comm ? make_comm : gllm_comm_single)(r->be, &r->comm));
    GLLM_TRY(r->be->alloc(r->be, 2 * sizeof(float), "reduction scalars", (void **)&r->dev_scalars));
    if (c->resume)
        GLLM_TRY(gllm_train_find_checkpoint(c, r->resume_dir, sizeof r->resume_dir));
    /* resuming: the weights, optimizer state and position of the checkpoint */
    GLLM_TRY(gllm_model_load(r->resume_dir[0] ? r->resume_dir : c->model, r->be, &r->m));
    if (c->zero1 && r->comm->world > 1)
        GLLM_TRY(gllm_model_shard_optimizer(r->m, r->comm));
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

gllm_status gllm_train_run(const gllm_train_config *c, gllm_comm_factory make_comm,
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
            if (mask_sum(&r.micro[k]) > 0)
                s = gllm_model_forward_backward(r.m, &r.micro[k], scale, &loss);
            loss_sum += (double)loss * mask_sum(&r.micro[k]);
        }
        float loss_all = (float)loss_sum;
        if (s == GLLM_OK)
            s = gllm_model_all_reduce_grads(r.m, r.comm);
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
        gllm_train_progress p = {.step = step, .total_steps = total, .epoch = epoch, .loss = loss,
                                 .lr = h.lr, .grad_norm = gnorm, .tokens = tokens,
                                 .elapsed_s = el, .tokens_per_s = tokens / (el > 0 ? el : 1e-9),
                                 .eta_s = el / step * (total - step), .rss_mib = rss_mib(),
                                 .val_loss = NAN};
        if ((c->eval_every > 0 && step % c->eval_every == 0) ||
            (step == total && c->val_fraction > 0)) {
            s = evaluate(r.m, r.ds, c, r.comm, r.dev_scalars, &r.micro[0], &p.val_loss);
            summary->final_val_loss = p.val_loss;
            if (s == GLLM_OK && r.metrics)
                fprintf(r.metrics, "{\"event\":\"eval\",\"step\":%d,\"val_loss\":%.6f}\n", step,
                        p.val_loss);
        }
        if (r.metrics)
            fprintf(r.metrics,
                "{\"step\":%d,\"epoch\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,"
                "\"tokens\":%lld,\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f,\"rss_mib\":%.1f}\n",
                step, epoch, loss, h.lr, gnorm, tokens, p.tokens_per_s, el, p.rss_mib);
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
            char val[32] = "null";
            if (c->val_fraction > 0 && !isnan(summary->final_val_loss))
                snprintf(val, sizeof val, "%.6f", summary->final_val_loss);
            fprintf(f,
                    "{\"steps\":%d,\"first_loss\":%.6f,\"final_loss\":%.6f,\"final_val_loss\":%s,"
                    "\"tokens\":%lld,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"backend\":\"%s\","
                    "\"parameters\":%zu,\"checkpoint\":\"final\"}\n",
                    summary->steps, summary->first_loss, summary->final_loss, val,
                    summary->tokens, summary->seconds, summary->tokens_per_s, r.be->name,
                    gllm_model_numel(r.m));
            fclose(f);
        }
    }
    run_free(&r);
    return s;
}
