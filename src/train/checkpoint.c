/* Training checkpoints: out_dir/checkpoint-<step>/ holds an HF folder
 * (model.safetensors in fp32, config.json, the tokenizer files), each rank's
 * AdamW state (optimizer-rank<r>.safetensors) and trainer_state.json (step,
 * data position, counters). out_dir/latest names the newest complete one.
 * A checkpoint is written under a temporary name and renamed when complete,
 * so an interrupted save never leaves a half checkpoint behind "latest". */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "gllm/tok_gguf.h"
#include "train/train_internal.h"

static gllm_status copy_file(const char *from_dir, const char *to_dir, const char *name)
{
    char src[4600], dst[4600];
    snprintf(src, sizeof src, "%s/%s", from_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", to_dir, name);
    FILE *in = fopen(src, "rb");
    if (!in)
        return GLLM_OK; /* optional file */
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
    }
    char buf[65536];
    size_t n;
    gllm_status s = GLLM_OK;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            s = gllm_fail(GLLM_ERR_IO, "%s: short write", dst);
            break;
        }
    fclose(in);
    if (fclose(out) != 0 && s == GLLM_OK)
        s = gllm_fail(GLLM_ERR_IO, "%s: close failed", dst);
    return s;
}

/* A model loaded from a .gguf file has no tokenizer files to copy: write the
 * tokenizer.json and tokenizer_config.json its metadata describes. */
static gllm_status write_gguf_tokenizer(const char *gguf, const char *dir)
{
    char *tj = NULL, *tc = NULL;
    GLLM_TRY(gllm_tok_gguf_to_hf(gguf, &tj, &tc));
    const char *names[2] = {"tokenizer.json", "tokenizer_config.json"};
    const char *texts[2] = {tj, tc};
    gllm_status s = GLLM_OK;
    for (int i = 0; i < 2 && s == GLLM_OK; i++) {
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        if (!f) {
            s = gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
            break;
        }
        size_t n = strlen(texts[i]);
        bool ok = fwrite(texts[i], 1, n, f) == n;
        if (fclose(f) != 0 || !ok)
            s = gllm_fail(GLLM_ERR_IO, "%s: write failed", path);
    }
    free(tj);
    free(tc);
    return s;
}

gllm_status gllm_train_save_hf(gllm_model *m, const char *tokenizer_dir, const char *dir)
{
    GLLM_TRY(gllm_model_save(m, dir));
    const size_t n = strlen(tokenizer_dir);
    if (n > 5 && strcmp(tokenizer_dir + n - 5, ".gguf") == 0)
        return write_gguf_tokenizer(tokenizer_dir, dir);
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        GLLM_TRY(copy_file(tokenizer_dir, dir, files[i]));
    return GLLM_OK;
}

static gllm_status remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? GLLM_OK : gllm_fail(GLLM_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4600];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path); /* checkpoint folders hold only files */
        }
    closedir(d);
    if (rmdir(dir) != 0)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot remove: %s", dir, strerror(errno));
    return GLLM_OK;
}

/* Replace out_dir/latest atomically with `name`. */
static gllm_status write_latest(const char *out_dir, const char *name)
{
    char tmp[4600], path[4600];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", out_dir);
    snprintf(path, sizeof path, "%s/latest", out_dir);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f, "%s\n", name);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        return gllm_fail(GLLM_ERR_IO, "%s: write failed", tmp);
    }
    fclose(f);
    if (rename(tmp, path) != 0)
        return gllm_fail(GLLM_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    return GLLM_OK;
}

gllm_status gllm_train_save_checkpoint(gllm_model *m, gllm_comm *comm,
                                       const gllm_train_config *c, const gllm_train_state *ts)
{
    char name[64], dir[4600], tmp[4700], path[4800];
    snprintf(name, sizeof name, "checkpoint-%d", ts->step);
    snprintf(dir, sizeof dir, "%s/%s", c->out_dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    gllm_status s = GLLM_OK;
    if (comm->rank == 0) {
        s = remove_tree(tmp); /* leftovers of an interrupted save */
        if (s == GLLM_OK && mkdir(tmp, 0755) != 0)
            s = gllm_fail(GLLM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    /* every rank waits for the folder, even after a failure, so none is left in a collective */
    gllm_status b = comm->barrier(comm);
    if (s == GLLM_OK)
        s = b;
    if (s == GLLM_OK) {
        snprintf(path, sizeof path, "%s/optimizer-rank%d.safetensors", tmp, comm->rank);
        s = gllm_model_save_optimizer(m, path);
    }
    b = comm->barrier(comm);
    if (s == GLLM_OK)
        s = b;
    if (s != GLLM_OK || comm->rank != 0)
        return s == GLLM_OK ? comm->barrier(comm) : s;
    s = gllm_train_save_hf(m, c->model, tmp);
    if (s == GLLM_OK) {
        snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
        FILE *f = fopen(path, "w");
        if (!f)
            s = gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        else {
            fprintf(f,
                    "{\"step\":%d,\"epoch\":%d,\"cursor\":%zu,\"tokens\":%lld,\"first_loss\":%.9g,"
                    "\"world\":%d,\"seed\":%llu,\"elapsed_s\":%.3f}\n",
                    ts->step, ts->epoch, ts->cursor, ts->tokens, ts->first_loss, comm->world,
                    (unsigned long long)c->seed, ts->elapsed_s);
            if (fclose(f) != 0)
                s = gllm_fail(GLLM_ERR_IO, "%s: write failed", path);
        }
    }
    if (s == GLLM_OK) {
        remove_tree(dir); /* an older save of the same step */
        if (rename(tmp, dir) != 0)
            s = gllm_fail(GLLM_ERR_IO, "%s: rename failed: %s", dir, strerror(errno));
    }
    if (s == GLLM_OK)
        s = write_latest(c->out_dir, name);
    /* keep the newest keep_checkpoints */
    if (s == GLLM_OK && c->keep_checkpoints > 0 && c->save_every > 0) {
        const int old = ts->step - c->keep_checkpoints * c->save_every;
        if (old > 0) {
            snprintf(path, sizeof path, "%s/checkpoint-%d", c->out_dir, old);
            remove_tree(path);
        }
    }
    b = comm->barrier(comm);
    return s == GLLM_OK ? b : s;
}

gllm_status gllm_train_find_checkpoint(const gllm_train_config *c, char *dir, size_t n)
{
    char path[4600];
    snprintf(path, sizeof path, "%s/latest", c->out_dir);
    char *text = NULL;
    if (gllm_read_file(path, &text, NULL) != GLLM_OK) {
        gllm_clear_error();
        dir[0] = '\0';
        return GLLM_OK; /* nothing to resume: a fresh run */
    }
    text[strcspn(text, "\r\n")] = '\0';
    if (!text[0] || strchr(text, '/')) {
        free(text);
        return gllm_fail(GLLM_ERR_FORMAT, "%s: does not name a checkpoint folder", path);
    }
    snprintf(dir, n, "%s/%s", c->out_dir, text);
    free(text);
    return GLLM_OK;
}

gllm_status gllm_train_load_state(const char *dir, const gllm_train_config *c, int world,
                                  gllm_train_state *ts)
{
    char path[4700];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *text;
    GLLM_TRY(gllm_read_file(path, &text, NULL));
    cJSON *j = cJSON_Parse(text);
    free(text);
    const char *keys[] = {"step", "epoch", "cursor", "tokens", "first_loss", "world", "seed",
                          "elapsed_s"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, keys[i]))) {
            cJSON_Delete(j);
            return gllm_fail(GLLM_ERR_FORMAT, "%s: missing or non-numeric \"%s\"", path, keys[i]);
        }
#define NUM(k) cJSON_GetObjectItemCaseSensitive(j, k)->valuedouble
    ts->step = (int)NUM("step");
    ts->epoch = (int)NUM("epoch");
    ts->cursor = (size_t)NUM("cursor");
    ts->tokens = (long long)NUM("tokens");
    ts->first_loss = (float)NUM("first_loss");
    ts->elapsed_s = NUM("elapsed_s");
    const int saved_world = (int)NUM("world");
    const unsigned long long seed = (unsigned long long)NUM("seed");
#undef NUM
    cJSON_Delete(j);
    if (saved_world != world)
        return gllm_fail(GLLM_ERR_INVALID, "%s: saved by %d ranks, resumed with %d (the data "
                         "order and optimizer slices depend on it)", path, saved_world, world);
    if (seed != (unsigned long long)c->seed)
        return gllm_fail(GLLM_ERR_INVALID, "%s: saved with seed %llu, the config says %llu", path,
                         seed, (unsigned long long)c->seed);
    return GLLM_OK;
}
