/* Training checkpoints: out_dir/checkpoint-<step>/ holds an HF folder
 * (model.safetensors in fp32, config.json, the tokenizer files), each rank's
 * AdamW state (optimizer-rank<r>.safetensors) and trainer_state.json (step,
 * data position, counters, and the identity of the run: shapes, data hash,
 * model). out_dir/latest names the newest complete one. Every file is
 * written durably (core's atomic write); a checkpoint is assembled under
 * checkpoint-<step>.tmp and renamed when complete, and an old one is first
 * renamed to checkpoint-<step>.deleted and only then emptied, so a kill at
 * any point leaves no half checkpoint under a checkpoint-<step> name. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "gllm/json.h"
#include "train/train_internal.h"

static gllm_status copy_file(const char *from_dir, const char *to_dir, const char *name)
{
    char src[4600], dst[4600];
    snprintf(src, sizeof src, "%s/%s", from_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", to_dir, name);
    FILE *in = fopen(src, "rb");
    if (!in)
        return GLLM_OK; /* optional file */
    gllm_atomic *a;
    gllm_status s = gllm_atomic_begin(dst, &a);
    if (s != GLLM_OK) {
        fclose(in);
        return s;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        gllm_atomic_write(a, buf, n);
    int bad = ferror(in);
    fclose(in);
    if (bad) {
        gllm_atomic_abort(a);
        return gllm_fail(GLLM_ERR_IO, "%s: read failed", src);
    }
    return gllm_atomic_commit(a);
}

gllm_status gllm_train_save_hf(gllm_model *m, const char *tokenizer_dir, const char *dir)
{
    GLLM_TRY(gllm_model_save(m, dir));
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
            gllm_fault_point("prune");
        }
    closedir(d);
    if (rmdir(dir) != 0)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot remove: %s", dir, strerror(errno));
    return GLLM_OK;
}

/* Remove a checkpoint folder so that a kill cannot leave it half deleted:
 * first renamed out of the checkpoint-<step> names (durably), then emptied. */
static gllm_status prune(const char *out_dir, const char *dir)
{
    char gone[4700];
    snprintf(gone, sizeof gone, "%s.deleted", dir);
    GLLM_TRY(remove_tree(gone)); /* an earlier interrupted prune of the same step */
    if (rename(dir, gone) != 0)
        return errno == ENOENT ? GLLM_OK : gllm_fail(GLLM_ERR_IO, "%s: cannot rename: %s", dir, strerror(errno));
    GLLM_TRY(gllm_sync_dir(out_dir));
    return remove_tree(gone);
}

gllm_status gllm_train_sweep(const char *out_dir)
{
    DIR *d = opendir(out_dir);
    if (!d)
        return errno == ENOENT ? GLLM_OK : gllm_fail(GLLM_ERR_IO, "%s: %s", out_dir, strerror(errno));
    gllm_status s = GLLM_OK;
    struct dirent *e;
    char path[4600];
    while (s == GLLM_OK && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        bool left = !strncmp(e->d_name, "checkpoint-", 11) &&
                    ((n > 8 && !strcmp(e->d_name + n - 8, ".deleted")) || (n > 4 && !strcmp(e->d_name + n - 4, ".tmp")));
        if (left) {
            snprintf(path, sizeof path, "%s/%s", out_dir, e->d_name);
            s = remove_tree(path);
        }
    }
    closedir(d);
    return s;
}

static gllm_status write_latest(const char *out_dir, const char *name)
{
    char path[4600], text[128];
    snprintf(path, sizeof path, "%s/latest", out_dir);
    int n = snprintf(text, sizeof text, "%s\n", name);
    return gllm_write_file_atomic(path, text, (size_t)n);
}

void gllm_train_identity_of(const gllm_train_config *c, int world, uint64_t data_hash,
                            gllm_train_identity *id)
{
    memset(id, 0, sizeof *id);
    id->world = world;
    id->batch_size = c->batch_size;
    id->seq_len = c->seq_len;
    id->grad_accum = c->grad_accum;
    id->packing = c->packing;
    id->val_fraction = c->val_fraction;
    id->seed = c->seed;
    id->data_hash = data_hash;
    snprintf(id->data, sizeof id->data, "%s", c->data);
    snprintf(id->model, sizeof id->model, "%s", c->model);
}

static bool add_u64_string(cJSON *o, const char *key, uint64_t v, bool hex)
{
    char buf[32];
    snprintf(buf, sizeof buf, hex ? "%016" PRIx64 : "%" PRIu64, v);
    return cJSON_AddStringToObject(o, key, buf) != NULL;
}

static gllm_status write_state(const char *path, const gllm_train_identity *id, const gllm_train_state *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddNumberToObject(o, "step", ts->step) && cJSON_AddNumberToObject(o, "epoch", ts->epoch) &&
              cJSON_AddNumberToObject(o, "cursor", (double)ts->cursor) &&
              cJSON_AddNumberToObject(o, "tokens", (double)ts->tokens) &&
              cJSON_AddNumberToObject(o, "skipped_steps", (double)ts->skipped_steps) &&
              gllm_json_add_number(o, "first_loss", ts->first_loss) &&
              cJSON_AddNumberToObject(o, "elapsed_s", ts->elapsed_s) &&
              cJSON_AddNumberToObject(o, "world", id->world) &&
              cJSON_AddNumberToObject(o, "batch_size", id->batch_size) &&
              cJSON_AddNumberToObject(o, "seq_len", id->seq_len) &&
              cJSON_AddNumberToObject(o, "grad_accum", id->grad_accum) &&
              cJSON_AddBoolToObject(o, "packing", id->packing) &&
              cJSON_AddNumberToObject(o, "val_fraction", id->val_fraction) &&
              add_u64_string(o, "seed", id->seed, false) && cJSON_AddStringToObject(o, "data", id->data) &&
              add_u64_string(o, "data_hash", id->data_hash, true) && cJSON_AddStringToObject(o, "model", id->model);
    gllm_status s = ok ? gllm_json_write_file(path, o) : gllm_fail(GLLM_ERR_OOM, "%s: out of memory", path);
    cJSON_Delete(o);
    return s;
}

gllm_status gllm_train_save_checkpoint(gllm_model *m, gllm_comm *comm, const gllm_train_config *c,
                                       const gllm_train_identity *id, const gllm_train_state *ts)
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
        s = write_state(path, id, ts);
    }
    if (s == GLLM_OK)
        s = gllm_sync_dir(tmp);
    if (s == GLLM_OK)
        s = prune(c->out_dir, dir); /* an older save of the same step */
    if (s == GLLM_OK && rename(tmp, dir) != 0)
        s = gllm_fail(GLLM_ERR_IO, "%s: rename failed: %s", dir, strerror(errno));
    if (s == GLLM_OK)
        s = gllm_sync_dir(c->out_dir);
    if (s == GLLM_OK)
        s = write_latest(c->out_dir, name);
    /* keep the newest keep_checkpoints */
    if (s == GLLM_OK && c->keep_checkpoints > 0 && c->save_every > 0) {
        const int old = ts->step - c->keep_checkpoints * c->save_every;
        if (old > 0) {
            snprintf(path, sizeof path, "%s/checkpoint-%d", c->out_dir, old);
            s = prune(c->out_dir, path);
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
    gllm_status rs = gllm_read_file(path, &text, NULL);
    if (rs == GLLM_ERR_NOT_FOUND && c->resume)
        return gllm_fail(GLLM_ERR_NOT_FOUND, "%s: nothing to resume: no checkpoint (%s does not exist); "
                         "run without --resume to start afresh", c->out_dir, path);
    if (rs == GLLM_ERR_NOT_FOUND) {
        gllm_clear_error();
        dir[0] = '\0';
        return GLLM_OK; /* a fresh run */
    }
    GLLM_TRY(rs);
    text[strcspn(text, "\r\n")] = '\0';
    if (!text[0] || strchr(text, '/')) {
        free(text);
        return gllm_fail(GLLM_ERR_FORMAT, "%s: does not name a checkpoint folder", path);
    }
    snprintf(dir, n, "%s/%s", c->out_dir, text);
    free(text);
    return GLLM_OK;
}

/* Members of trainer_state.json: each must be an integer in [lo, hi]. */
static gllm_status get_int(const char *path, const cJSON *j, const char *key, double lo, double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"%s\" must be an integer in [%.0f, %.0f]", path, key, lo, hi);
    *out = v->valuedouble;
    return GLLM_OK;
}

static gllm_status get_str(const char *path, const cJSON *j, const char *key, char *out, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n)
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"%s\" must be a string", path, key);
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return GLLM_OK;
}

static gllm_status get_u64(const char *path, const cJSON *j, const char *key, bool hex, uint64_t *out)
{
    char buf[32], *end;
    GLLM_TRY(get_str(path, j, key, buf, sizeof buf));
    errno = 0;
    *out = strtoull(buf, &end, hex ? 16 : 10);
    if (!buf[0] || *end || errno || buf[0] == '-')
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"%s\" must be a %s number in a string", path, key,
                         hex ? "hexadecimal" : "decimal");
    return GLLM_OK;
}

static gllm_status parse_state(const char *path, const cJSON *j, gllm_train_state *ts, gllm_train_identity *id)
{
    if (!cJSON_IsObject(j))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: not a JSON object", path);
    const double big = 9007199254740992.0; /* 2^53: integers a double holds exactly */
    double v;
    GLLM_TRY(get_int(path, j, "step", 1, 1e9, &v));
    ts->step = (int)v;
    GLLM_TRY(get_int(path, j, "epoch", 0, 1e9, &v));
    ts->epoch = (int)v;
    GLLM_TRY(get_int(path, j, "cursor", 0, big, &v));
    ts->cursor = (size_t)v;
    GLLM_TRY(get_int(path, j, "tokens", 0, big, &v));
    ts->tokens = (long long)v;
    GLLM_TRY(get_int(path, j, "skipped_steps", 0, big, &v));
    ts->skipped_steps = (long long)v;
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(j, "first_loss");
    if (!cJSON_IsNumber(fl) && !cJSON_IsNull(fl))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"first_loss\" must be a number or null", path);
    ts->first_loss = cJSON_IsNumber(fl) ? (float)fl->valuedouble : NAN;
    const cJSON *el = cJSON_GetObjectItemCaseSensitive(j, "elapsed_s");
    if (!cJSON_IsNumber(el) || !(el->valuedouble >= 0) || !isfinite(el->valuedouble))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"elapsed_s\" must be a number >= 0", path);
    ts->elapsed_s = el->valuedouble;
    GLLM_TRY(get_int(path, j, "world", 1, 1 << 20, &v));
    id->world = (int)v;
    GLLM_TRY(get_int(path, j, "batch_size", 1, 1e9, &v));
    id->batch_size = (int)v;
    GLLM_TRY(get_int(path, j, "seq_len", 2, 1e9, &v));
    id->seq_len = (int)v;
    GLLM_TRY(get_int(path, j, "grad_accum", 1, 1e9, &v));
    id->grad_accum = (int)v;
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "packing");
    if (!cJSON_IsBool(pk))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"packing\" must be true or false", path);
    id->packing = cJSON_IsTrue(pk);
    const cJSON *vf = cJSON_GetObjectItemCaseSensitive(j, "val_fraction");
    if (!cJSON_IsNumber(vf) || !(vf->valuedouble >= 0 && vf->valuedouble < 1))
        return gllm_fail(GLLM_ERR_FORMAT, "%s: \"val_fraction\" must be a number in [0, 1)", path);
    id->val_fraction = (float)vf->valuedouble;
    GLLM_TRY(get_u64(path, j, "seed", false, &id->seed));
    GLLM_TRY(get_u64(path, j, "data_hash", true, &id->data_hash));
    GLLM_TRY(get_str(path, j, "data", id->data, sizeof id->data));
    GLLM_TRY(get_str(path, j, "model", id->model, sizeof id->model));
    return GLLM_OK;
}

gllm_status gllm_train_load_state(const char *dir, gllm_train_state *ts, gllm_train_identity *saved)
{
    char path[4700];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    cJSON *j;
    GLLM_TRY(gllm_json_read_file(path, &j));
    memset(ts, 0, sizeof *ts);
    memset(saved, 0, sizeof *saved);
    gllm_status s = parse_state(path, j, ts, saved);
    cJSON_Delete(j);
    return s;
}

gllm_status gllm_train_check_identity(const char *dir, const gllm_train_identity *saved,
                                      const gllm_train_identity *now)
{
    static const char why[] = "a resumed run continues bit for bit only with what the checkpoint was saved with; "
                              "start a fresh run (another out_dir, or --overwrite) to change it";
#define SAME_INT(k, what)                                                                                   \
    if (saved->k != now->k)                                                                                 \
        return gllm_fail(GLLM_ERR_INVALID, "%s/trainer_state.json: \"" #k "\" was %lld when saved, now %lld " \
                         "(%s); %s", dir, (long long)saved->k, (long long)now->k, what, why);
    SAME_INT(world, "ranks: the data order and optimizer slices depend on it")
    SAME_INT(batch_size, "rows per micro-batch")
    SAME_INT(seq_len, "tokens per row")
    SAME_INT(grad_accum, "micro-batches per step")
    SAME_INT(packing, "packing")
#undef SAME_INT
    if (saved->seed != now->seed)
        return gllm_fail(GLLM_ERR_INVALID, "%s/trainer_state.json: \"seed\" was %" PRIu64 " when saved, now %" PRIu64
                         "; %s", dir, saved->seed, now->seed, why);
    if (saved->val_fraction != now->val_fraction)
        return gllm_fail(GLLM_ERR_INVALID, "%s/trainer_state.json: \"val_fraction\" was %g when saved, now %g; %s",
                         dir, saved->val_fraction, now->val_fraction, why);
    if (saved->data_hash != now->data_hash)
        return gllm_fail(GLLM_ERR_INVALID, "%s/trainer_state.json: \"data\": the data file %s has changed since the "
                         "checkpoint (hash %016" PRIx64 ", now %016" PRIx64 "); %s", dir, now->data, saved->data_hash,
                         now->data_hash, why);
    if (strcmp(saved->model, now->model))
        return gllm_fail(GLLM_ERR_INVALID, "%s/trainer_state.json: \"model\" was %s when saved, now %s; %s", dir,
                         saved->model, now->model, why);
    return GLLM_OK;
}
