/* The run folder under crashes and bad inputs (issue 10), through the gtrain
 * program itself: real SIGKILLs at chosen points (GLLM_KILL_AT, see
 * core/file.h), then the folder is inspected and the run resumed.
 *  1 metrics.jsonl: a kill while resume rewrites it loses nothing, a torn
 *    last line is dropped, every step is recorded once;
 *  2 every JSON file of a run parses, NaN/inf included, paths with quotes;
 *  3 a second gtrain into a running folder is refused naming the pid;
 *  5 a kill while a checkpoint is pruned leaves no half checkpoint;
 *  6 resume refuses a changed shape, data or model naming the key, a bad
 *    trainer_state.json, --resume without a checkpoint; a fresh run into a
 *    used folder needs --overwrite;
 *  7 documents without targets are counted and reported; steps without
 *    targets are skipped and counted;
 *  9 grad_accum 1e8, /dev/zero, a folder, a model file: refused at once;
 * 10 messages: no leading blank line, the backend auto chose, --version,
 *    --ranks with backend auto. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gllm/jsonl.h"
#include "test_util.h"

static char g_tmp[256], g_model[1024], g_out[8192];
static int g_limit_s = 300; /* a gtrain that runs longer is killed: the check failed (e.g. no lock) */

static const char *path_in(const char *rel)
{
    static char bufs[4][1400];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", g_tmp, rel);
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* gtrain with argv (NULL-terminated, without the program), GLLM_KILL_AT set
 * to kill_at (or unset). Returns the exit status, or 128 + the signal; its
 * stderr and stdout are in g_out. */
static int gtrain(const char *kill_at, const char *const *args)
{
    char log[1400];
    snprintf(log, sizeof log, "%s/gtrain.log", g_tmp);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        if (kill_at)
            setenv("GLLM_KILL_AT", kill_at, 1);
        else
            unsetenv("GLLM_KILL_AT");
        /* GLLM_TEST_GTRAIN: another gtrain (an older build, to see these checks fail) */
        const char *bin = getenv("GLLM_TEST_GTRAIN") ? getenv("GLLM_TEST_GTRAIN") : GLLM_GTRAIN;
        const char *argv[16] = {bin};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0, waited_ms = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (waited_ms >= g_limit_s * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            printf("gtrain ran past %d s and was killed\n", g_limit_s);
            return 124;
        }
        usleep(50000);
        waited_ms += 50;
    }
    g_out[0] = '\0';
    FILE *f = fopen(log, "r");
    if (f) {
        size_t n = fread(g_out, 1, sizeof g_out - 1, f);
        g_out[n] = '\0';
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
#define GTRAIN(kill, ...) gtrain(kill, (const char *const[]){__VA_ARGS__, NULL})

/* A config for out_dir `out` (relative to the temporary folder): the keys in
 * `extra`, and defaults for the keys it does not give. The path stays valid
 * for the next 15 configs. */
static const char *config(const char *name, const char *out, const char *extra)
{
    static const char *const defaults[][2] = {
        {"data", "\"docs.jsonl\""}, {"seq_len", "64"}, {"batch_size", "2"}, {"lr", "3e-3"},
        {"warmup_steps", "2"},      {"seed", "5"},     {"packing", "true"},
    };
    char text[4096];
    int n = snprintf(text, sizeof text, "{\"model\": \"%s\", \"out_dir\": \"%s\"", g_model, out);
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
        char key[64];
        snprintf(key, sizeof key, "\"%s\"", defaults[i][0]);
        if (!strstr(extra, key))
            n += snprintf(text + n, sizeof text - (size_t)n, ", %s: %s", key, defaults[i][1]);
    }
    snprintf(text + n, sizeof text - (size_t)n, "%s%s}", extra[0] ? ", " : "", extra);
    static char paths[16][1400];
    static int k;
    char *p = paths[k++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", g_tmp, name);
    write_text(p, text);
    return p;
}

static char *slurp(const char *path, size_t *n)
{
    char *text = NULL;
    size_t len = 0;
    if (gllm_read_file(path, &text, &len) != GLLM_OK) {
        gllm_clear_error();
        return NULL;
    }
    if (n)
        *n = len;
    return text;
}

static bool same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* Every line of a JSONL file is one JSON object ending in '\n'; counts the
 * records with "step": s (s >= 1) in steps[s] and events by name. */
typedef struct jsonl_scan {
    int lines, bad, steps[64], resume, skipped, data, nonfinite;
    double no_target_docs;
} jsonl_scan;

static jsonl_scan scan(const char *path)
{
    jsonl_scan s;
    memset(&s, 0, sizeof s);
    gllm_jsonl *r;
    if (gllm_jsonl_open(path, &r) != GLLM_OK) {
        s.bad = -1;
        return s;
    }
    for (;;) {
        const char *line;
        size_t n;
        long ln;
        bool nl;
        if (gllm_jsonl_next_line(r, &line, &n, &ln, &nl) != GLLM_OK || !line)
            break;
        s.lines++;
        cJSON *o = cJSON_ParseWithLength(line, n);
        const char *end = cJSON_GetErrorPtr();
        (void)end;
        if (!nl || !cJSON_IsObject(o)) {
            s.bad++;
            cJSON_Delete(o);
            continue;
        }
        const cJSON *ev = cJSON_GetObjectItem(o, "event"), *st = cJSON_GetObjectItem(o, "step");
        if (!ev && cJSON_IsNumber(st) && st->valueint >= 1 && st->valueint < 64)
            s.steps[st->valueint]++;
        if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "resume"))
            s.resume++;
        if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "skipped"))
            s.skipped++;
        if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "data")) {
            s.data++;
            s.no_target_docs = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "no_target_docs"));
        }
        s.nonfinite += cJSON_GetObjectItem(o, "nonfinite") != NULL;
        cJSON_Delete(o);
    }
    gllm_jsonl_close(r);
    return s;
}

static bool is_json_file(const char *path)
{
    size_t n;
    char *t = slurp(path, &n);
    const char *end = NULL;
    cJSON *o = t ? cJSON_ParseWithLengthOpts(t, n + 1, &end, true) : NULL;
    bool ok = o != NULL;
    cJSON_Delete(o);
    free(t);
    return ok;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int main(void)
{
    test_shared_path("assets/models/stories260K-hf", g_model, sizeof g_model);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gllm_test_integrity_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    static const char *docs[] = {
        "Once upon a time, there was a little girl named Lily.", "The cat sat on the mat and looked at the ball.",
        "Tom and Sue went to the park. They played all day.", "One day, a bird flew into the garden and sang.",
        "Ben had a toy car. He liked to drive it on the floor.", "The sun was hot, so the children went to swim.",
        "A dog ran in the yard. It was very happy.", "Mia found a red box under her bed.",
    };
    FILE *f = fopen(path_in("docs.jsonl"), "w");
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
            fprintf(f, "{\"text\": \"%s\"}\n", docs[i]);
    fclose(f);

    TEST_CASE("1: metrics.jsonl survives a kill during resume; torn line dropped; each step once") {
        const char *ref = config("ref.json", "ref", "\"max_steps\": 8, \"save_every\": 2");
        CHECK_MSG(GTRAIN(NULL, ref) == 0, "%s", g_out);
        const char *cfg = config("k.json", "k", "\"max_steps\": 8, \"save_every\": 2");
        int rc = GTRAIN("step:5", cfg); /* killed after step 5: checkpoint-4 is the latest */
        CHECK_MSG(rc == 128 + SIGKILL, "rc %d: %s", rc, g_out);
        const char *metrics = path_in("k/metrics.jsonl");
        f = fopen(metrics, "a"); /* a kill in the middle of writing a record */
        fputs("{\"step\":6,\"epoch\":0,\"lo", f);
        fclose(f);
        size_t n0;
        char *before = slurp(metrics, &n0);
        rc = GTRAIN("metrics-trim", cfg, "--resume");
        CHECK_MSG(rc == 128 + SIGKILL, "rc %d: %s", rc, g_out);
        size_t n1;
        char *after = slurp(metrics, &n1);
        CHECK_MSG(before && after && n0 == n1 && !memcmp(before, after, n0),
                  "a kill while resume rewrote metrics.jsonl changed it (%zu -> %zu bytes)", n0, n1);
        free(before);
        free(after);
        rc = GTRAIN(NULL, cfg, "--resume");
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
        jsonl_scan s = scan(metrics);
        CHECK_MSG(s.bad == 0, "%d lines of metrics.jsonl are not JSON objects", s.bad);
        for (int step = 1; step <= 8; step++)
            CHECK_MSG(s.steps[step] == 1, "step %d recorded %d times", step, s.steps[step]);
        CHECK(s.resume == 1);
        CHECK_MSG(same_file(path_in("ref/final/model.safetensors"), path_in("k/final/model.safetensors")),
                  "resumed weights differ from the uninterrupted run's");
    }

    TEST_CASE("2: every JSON file of a run is JSON: NaN and infinity, a path with quotes") {
        /* a validation share so small that no document is held out: the
         * validation loss is 0/0 (diverged weights stop the run instead: AdamW
         * refuses a NaN gradient norm) */
        const char *cfg = config("nan.json", "q\\\"uote",
                                 "\"max_steps\": 3, \"save_every\": 1, \"val_fraction\": 0.0001, \"eval_every\": 1");
        int rc = GTRAIN(NULL, cfg);
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
        jsonl_scan s = scan(path_in("q\"uote/metrics.jsonl"));
        CHECK_MSG(s.lines > 3 && s.bad == 0, "%d of %d lines are not JSON", s.bad, s.lines);
        CHECK_MSG(s.nonfinite > 0, "no record flags a non-finite value");
        CHECK(is_json_file(path_in("q\"uote/summary.json")));
        CHECK(is_json_file(path_in("q\"uote/checkpoint-3/trainer_state.json")));
        rc = GTRAIN("step:1", cfg, "--overwrite"); /* and one resume event, whose "from" has the quote */
        rc = GTRAIN(NULL, cfg, "--resume");
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
        s = scan(path_in("q\"uote/metrics.jsonl"));
        CHECK_MSG(s.bad == 0 && s.resume == 1, "%d bad lines, %d resume events", s.bad, s.resume);
    }

    TEST_CASE("3: one writer per run folder: a second gtrain is refused naming the holder's pid") {
        const char *cfg = config("lock.json", "lock", "\"max_steps\": 100000, \"save_every\": 1");
        const char *log = path_in("lock.log");
        pid_t a = fork();
        if (a == 0) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            const char *bin = getenv("GLLM_TEST_GTRAIN") ? getenv("GLLM_TEST_GTRAIN") : GLLM_GTRAIN;
            execl(bin, bin, cfg, (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 600 && !exists(path_in("lock/latest")); i++)
            usleep(100000);
        CHECK(exists(path_in("lock/latest")));
        g_limit_s = 60;
        int rc = GTRAIN(NULL, cfg, "--resume");
        char want[64];
        snprintf(want, sizeof want, "(pid %d", (int)a);
        CHECK_MSG(rc == 1 && strstr(g_out, "in use by another gtrain") && strstr(g_out, want), "rc %d: %s", rc,
                  g_out);
        rc = GTRAIN(NULL, cfg, "--overwrite");
        CHECK_MSG(rc == 1 && strstr(g_out, want), "rc %d: %s", rc, g_out);
        g_limit_s = 300;
        kill(a, SIGKILL);
        waitpid(a, NULL, 0);
        const char *cfg2 = config("lock2.json", "lock", "\"max_steps\": 4, \"save_every\": 1");
        rc = GTRAIN(NULL, cfg2, "--overwrite"); /* the lock died with its holder */
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
    }

    TEST_CASE("5: a kill while an old checkpoint is pruned leaves no half checkpoint") {
        const char *cfg = config("prune.json", "prune", "\"max_steps\": 5, \"save_every\": 1, \"keep_checkpoints\": 2");
        int rc = GTRAIN("prune:2", cfg); /* the 2nd file removed while pruning checkpoint-1 */
        CHECK_MSG(rc == 128 + SIGKILL, "rc %d: %s", rc, g_out);
        static const char *const files[] = {"model.safetensors", "config.json", "trainer_state.json",
                                            "optimizer-rank0.safetensors", "tokenizer.json"};
        for (int step = 1; step <= 5; step++) {
            char dir[64];
            snprintf(dir, sizeof dir, "prune/checkpoint-%d", step);
            if (!exists(path_in(dir)))
                continue;
            for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
                char p[128];
                snprintf(p, sizeof p, "%s/%s", dir, files[i]);
                CHECK_MSG(exists(path_in(p)), "%s is missing: a half-deleted checkpoint", p);
            }
        }
        rc = GTRAIN(NULL, cfg, "--resume");
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
        CHECK(!exists(path_in("prune/checkpoint-1.deleted")) && !exists(path_in("prune/checkpoint-1")));
        CHECK(exists(path_in("prune/checkpoint-5/trainer_state.json")));
    }

    TEST_CASE("6: resume checks what it resumes; fresh runs need an empty folder or --overwrite") {
        const char *cfg = config("r.json", "r", "\"max_steps\": 6, \"save_every\": 2");
        int rc = GTRAIN("step:3", cfg);
        CHECK(rc == 128 + SIGKILL);
        static const struct {
            const char *extra, *want;
        } changed[] = {
            {"\"max_steps\": 6, \"save_every\": 2, \"batch_size\": 3", "\"batch_size\" was 2 when saved, now 3"},
            {"\"max_steps\": 6, \"save_every\": 2, \"seq_len\": 32", "\"seq_len\" was 64 when saved, now 32"},
            {"\"max_steps\": 6, \"save_every\": 2, \"grad_accum\": 2", "\"grad_accum\" was 1 when saved, now 2"},
            {"\"max_steps\": 6, \"save_every\": 2, \"data\": \"docs2.jsonl\"", "\"data\": the data file"},
        };
        f = fopen(path_in("docs2.jsonl"), "w");
        fprintf(f, "{\"text\": \"%s\"}\n", docs[0]);
        fclose(f);
        for (size_t i = 0; i < sizeof changed / sizeof *changed; i++) {
            const char *c2 = config("r2.json", "r", changed[i].extra);
            rc = GTRAIN(NULL, c2, "--resume");
            CHECK_MSG(rc == 1 && strstr(g_out, changed[i].want), "case %zu: rc %d: %s", i, rc, g_out);
        }
        /* the same model through another path */
        char link[1400];
        snprintf(link, sizeof link, "%s/model-link", g_tmp);
        CHECK(symlink(g_model, link) == 0);
        char text[4096];
        snprintf(text, sizeof text,
                 "{\"model\": \"%s\", \"data\": \"docs.jsonl\", \"out_dir\": \"r\", \"seq_len\": 64, \"batch_size\": 2, "
                 "\"lr\": 3e-3, \"warmup_steps\": 2, \"seed\": 5, \"packing\": true, \"max_steps\": 6, \"save_every\": 2}",
                 link);
        write_text(path_in("r3.json"), text);
        rc = GTRAIN(NULL, path_in("r3.json"), "--resume");
        CHECK_MSG(rc == 1 && strstr(g_out, "\"model\" was"), "rc %d: %s", rc, g_out);
        /* a trainer_state.json whose step is negative */
        const char *state = path_in("r/checkpoint-2/trainer_state.json");
        char *t = slurp(state, NULL);
        char *at = t ? strstr(t, "\"step\":2,") : NULL;
        CHECK_MSG(at != NULL, "no step in %s", t ? t : "(unreadable)");
        if (at) {
            char edited[8192];
            snprintf(edited, sizeof edited, "%.*s\"step\": -3%s", (int)(at - t), t, strchr(at, ','));
            write_text(state, edited);
            rc = GTRAIN(NULL, cfg, "--resume");
            CHECK_MSG(rc == 1 && strstr(g_out, "\"step\" must be an integer in [1,"), "rc %d: %s", rc, g_out);
        }
        free(t);
        /* --resume without a checkpoint */
        const char *fresh = config("f.json", "fresh", "\"max_steps\": 2");
        rc = GTRAIN(NULL, fresh, "--resume");
        CHECK_MSG(rc == 1 && strstr(g_out, "nothing to resume"), "rc %d: %s", rc, g_out);
        /* a fresh run into a folder that holds a run */
        rc = GTRAIN(NULL, cfg);
        CHECK_MSG(rc == 1 && strstr(g_out, "already holds a run") && strstr(g_out, "--overwrite"), "rc %d: %s", rc,
                  g_out);
        rc = GTRAIN(NULL, cfg, "--overwrite");
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
        CHECK(scan(path_in("r/metrics.jsonl")).resume == 0 && !exists(path_in("r/checkpoint-2/model.safetensors.x")));
    }

    TEST_CASE("7: documents and steps without target tokens are counted, not NaN") {
        /* prompts longer than seq_len: nothing of the completion survives truncation */
        char longp[400] = "";
        for (int i = 0; i < 40; i++)
            strcat(longp, "the cat ");
        f = fopen(path_in("notarget.jsonl"), "w");
        for (int i = 0; i < 4; i++)
            fprintf(f, "{\"prompt\": \"%s\", \"completion\": \" yes.\"}\n", longp);
        fprintf(f, "{\"text\": \"%s\"}\n{\"text\": \"%s\"}\n", docs[1], docs[2]);
        fclose(f);
        char text[4096];
        snprintf(text, sizeof text,
                 "{\"model\": \"%s\", \"data\": \"notarget.jsonl\", \"out_dir\": \"nt\", \"seq_len\": 32, "
                 "\"batch_size\": 1, \"packing\": false, \"epochs\": 2, \"seed\": 1}", g_model);
        write_text(path_in("nt.json"), text);
        int rc = GTRAIN(NULL, path_in("nt.json"));
        CHECK_MSG(rc == 0, "rc %d: %s", rc, g_out);
        CHECK_MSG(strstr(g_out, "4 of 6 documents (66.7%) have no target token"), "%s", g_out);
        jsonl_scan s = scan(path_in("nt/metrics.jsonl"));
        CHECK(s.no_target_docs == 4);
        CHECK_MSG(s.skipped >= 4 && s.nonfinite == 0 && s.bad == 0, "skipped %d, nonfinite %d", s.skipped, s.nonfinite);
        char *sum = slurp(path_in("nt/summary.json"), NULL);
        CHECK_MSG(sum && strstr(sum, "\"skipped_steps\":") && !strstr(sum, "nonfinite"), "%s", sum ? sum : "");
        free(sum);
        f = fopen(path_in("none.jsonl"), "w");
        fprintf(f, "{\"prompt\": \"%s\", \"completion\": \" yes.\"}\n", longp);
        fclose(f);
        snprintf(text, sizeof text,
                 "{\"model\": \"%s\", \"data\": \"none.jsonl\", \"out_dir\": \"none\", \"seq_len\": 32, "
                 "\"batch_size\": 1, \"max_steps\": 2}", g_model);
        write_text(path_in("none.json"), text);
        rc = GTRAIN(NULL, path_in("none.json"));
        CHECK_MSG(rc == 1 && strstr(g_out, "no target tokens in the training documents"), "rc %d: %s", rc, g_out);
    }

    TEST_CASE("8/9: bounded and explained inputs") {
        char text[4096];
        snprintf(text, sizeof text,
                 "{\"model\": \"%s\", \"data\": \"docs.jsonl\", \"out_dir\": \"ga\", \"seq_len\": 64, "
                 "\"batch_size\": 2, \"grad_accum\": 100000000}", g_model);
        write_text(path_in("ga.json"), text);
        time_t t0 = time(NULL);
        int rc = GTRAIN(NULL, path_in("ga.json"));
        CHECK_MSG(rc == 1 && strstr(g_out, "fewer than grad_accum 100000000") && time(NULL) - t0 < 60, "rc %d: %s",
                  rc, g_out);
        static const struct {
            const char *model, *data, *extra, *want;
        } bad[] = {
            {NULL, "/dev/zero", "", "/dev/zero: is a character device, not a regular file"},
            {NULL, "/tmp", "", "/tmp: is a folder, not a regular file"},
            {"config.json", "docs.jsonl", "", "is a file; expected a Hugging Face model folder"},
            {"", "docs.jsonl", "", "key \"model\" is empty"},
            {NULL, "docs.jsonl", ", \"max_grad_norm\": -1", "max_grad_norm must be >= 0"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            char model[1200];
            if (!bad[i].model)
                snprintf(model, sizeof model, "%s", g_model);
            else if (bad[i].model[0])
                snprintf(model, sizeof model, "%s/%s", g_model, bad[i].model);
            else
                model[0] = '\0';
            snprintf(text, sizeof text, "{\"model\": \"%s\", \"data\": \"%s\", \"out_dir\": \"bad%zu\"%s}", model,
                     bad[i].data, i, bad[i].extra);
            write_text(path_in("bad.json"), text);
            t0 = time(NULL);
            rc = GTRAIN(NULL, path_in("bad.json"));
            CHECK_MSG(rc == 1 && strstr(g_out, bad[i].want) && time(NULL) - t0 < 30, "case %zu: rc %d: %s", i, rc,
                      g_out);
        }
        write_text(path_in("dup.json"), "{\"model\": \"m\", \"data\": \"d\", \"out_dir\": \"o\", \"lr\": 1, \"lr\": 2}");
        rc = GTRAIN(NULL, path_in("dup.json"));
        CHECK_MSG(rc == 1 && strstr(g_out, "duplicate key \"lr\""), "rc %d: %s", rc, g_out);
    }

    TEST_CASE("10: messages: no leading blank line, the backend auto chose, --version, --ranks with auto") {
        int rc = GTRAIN(NULL, path_in("dup.json"));
        CHECK_MSG(rc == 1 && g_out[0] != '\n' && !strncmp(g_out, "gtrain: ", 8), "starts with '%.20s'", g_out);
        const char *cfg = config("auto.json", "auto", "\"max_steps\": 2, \"backend\": \"auto\"");
        rc = GTRAIN(NULL, cfg);
        CHECK_MSG(rc == 0 && !strncmp(g_out, "gtrain: backend cpu (chosen by \"auto\")", 38), "rc %d: %s", rc, g_out);
        rc = GTRAIN(NULL, "--version");
        CHECK_MSG(rc == 0 && !strncmp(g_out, "gtrain (gllm) ", 14), "rc %d: %s", rc, g_out);
        /* the README: gtrain --ranks N with the quick start's "backend": "auto" */
        rc = GTRAIN(NULL, "--ranks", "2", cfg, "--overwrite");
        CHECK_MSG(rc == 0 && strstr(g_out, "done: 2 ranks"), "rc %d: %s", rc, g_out);
    }

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_tmp);
    return test_summary();
}
