/* Data parallelism on the CPU: the trainer on 2 forked ranks (shared-memory
 * communicator), each with batch B, takes the same steps as 1 rank with batch
 * 2B: per-step losses and the final weights agree up to summation order.
 * (Unpacked rows make the two runs see the same documents in each step: rank
 * r takes documents k % 2 == r of the same shuffled order.) */
#include <sys/wait.h>
#include <unistd.h>

#include "gllm/dist.h"
#include "gllm/model.h"
#include "gllm/train.h"
#include "test_util.h"
#include "checkpoint_compare.h"

static gllm_shm_group *g_group;
static int g_rank;

static gllm_status join(void *ctx, gllm_backend *be, gllm_comm **out)
{
    (void)ctx;
    return gllm_comm_shm(g_group, g_rank, be, out);
}

static const gllm_comm_factory g_join = {.make = join};

static int read_losses(const char *metrics, float *loss, int max)
{
    FILE *f = fopen(metrics, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        const char *p = strstr(line, "\"loss\":");
        if (strncmp(line, "{\"step\":", 8) == 0 && p)
            loss[n++] = strtof(p + 7, NULL);
    }
    fclose(f);
    return n;
}

/* constant learning rate after warmup (min_lr_ratio 1), so a run cut at step 4
 * and resumed to step 5 follows the same schedule as a 5-step run */
static void write_config(const char *path, const char *model, const char *out, int batch,
                         bool zero1, int steps, bool resume)
{
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"model\": \"%s\", \"data\": \"docs.jsonl\", \"out_dir\": \"%s\", \"backend\": "
            "\"cpu\", \"seq_len\": 48, \"batch_size\": %d, \"max_steps\": %d, \"lr\": 2e-3, "
            "\"min_lr_ratio\": 1.0, \"warmup_steps\": 1, \"weight_decay\": 0.1, "
            "\"packing\": false, \"seed\": 3, \"zero1\": %s, \"save_every\": 2, "
            "\"resume\": %s}",
            model, out, batch, steps, zero1 ? "true" : "false", resume ? "true" : "false");
    fclose(f);
}

/* Train on `world` forked ranks; returns the number of ranks that failed. */
static int run_ranks(const char *cfg_path, int world)
{
    gllm_train_config c;
    if (gllm_train_config_load(cfg_path, &c) != GLLM_OK ||
        gllm_shm_group_create(world, 1 << 16, &g_group) != GLLM_OK) {
        printf("%s\n", gllm_last_error());
        return world;
    }
    pid_t pid[8];
    for (int r = 0; r < world; r++) {
        fflush(stdout);
        pid[r] = fork();
        if (pid[r] == 0) {
            g_rank = r;
            gllm_train_summary s;
            const int rc = gllm_train_run(&c, &g_join, NULL, NULL, &s) == GLLM_OK ? 0 : 1;
            if (rc)
                printf("rank %d: %s\n", r, gllm_last_error());
            fflush(stdout);
            _exit(rc);
        }
    }
    int failed = 0;
    for (int r = 0; r < world; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    gllm_shm_group_free(g_group);
    return failed;
}

int main(void)
{
    char model[1024];
    test_shared_path("assets/models/stories260K-hf", model, sizeof model);
    char tmp[] = "/tmp/gllm_test_dp_XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char data[1200], cfg1[1200], cfg2[1200], cfgz[1200], cfgr[1200];
    snprintf(data, sizeof data, "%s/docs.jsonl", tmp);
    FILE *f = fopen(data, "w");
    static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "Lily",
                                  "saw", "big", "red", "ball", "park", "happy", "day"};
    for (int d = 0; d < 40; d++) {
        fprintf(f, "{\"text\": \"");
        for (int w = 0; w < 6 + d % 9; w++)
            fprintf(f, "%s%s", w ? " " : "", words[(d * 7 + w * 3) % 15]);
        fprintf(f, ".\"}\n");
    }
    fclose(f);
    snprintf(cfg1, sizeof cfg1, "%s/one.json", tmp);
    snprintf(cfg2, sizeof cfg2, "%s/two.json", tmp);
    snprintf(cfgz, sizeof cfgz, "%s/zero.json", tmp);
    snprintf(cfgr, sizeof cfgr, "%s/resumed.json", tmp);
    write_config(cfg1, model, "one", 4, false, 5, false);
    write_config(cfg2, model, "two", 2, false, 5, false);
    write_config(cfgz, model, "zero", 2, true, 5, false);

    /* the two ranks first: fork before this process has used OpenMP */
    TEST_CASE("2 ranks x batch 2, with and without ZeRO-1")
    {
        CHECK(run_ranks(cfg2, 2) == 0);
        CHECK(run_ranks(cfgz, 2) == 0);
        char d2[1300], dz[1300];
        snprintf(d2, sizeof d2, "%s/two/final", tmp);
        snprintf(dz, sizeof dz, "%s/zero/final", tmp);
        bool same = false;
        const double e = compare_checkpoints(d2, dz, &same);
        /* the same reduced gradients and updates; only the clipping factor can
         * differ in its last bits, as ZeRO-1 sums the gradient norm from the
         * ranks' slices (one fp32 rounding per step, 5 steps) */
        printf("ZeRO-1 vs replicated AdamW: worst rel diff %.2e, bitwise %s\n", e,
               same ? "identical" : "different");
        CHECK(e < 1e-6);
    }
    TEST_CASE("ZeRO-1 over 2 ranks resumes from its sharded checkpoint bit for bit")
    {
        write_config(cfgr, model, "resumed", 2, true, 4, false);
        CHECK(run_ranks(cfgr, 2) == 0);
        write_config(cfgr, model, "resumed", 2, true, 5, true);
        CHECK(run_ranks(cfgr, 2) == 0);
        char dz[1300], dr[1300];
        snprintf(dz, sizeof dz, "%s/zero/final", tmp);
        snprintf(dr, sizeof dr, "%s/resumed/final", tmp);
        bool same = false;
        const double e = compare_checkpoints(dz, dr, &same);
        printf("4 steps + resumed 1 vs 5 steps (ZeRO-1, 2 ranks): worst rel diff %.2e, %s\n", e,
               same ? "bitwise identical" : "different");
        CHECK(same);
    }
    TEST_CASE("1 rank x batch 4 takes the same steps")
    {
        gllm_train_config c;
        gllm_train_summary s;
        CHECK_OK(gllm_train_config_load(cfg1, &c));
        CHECK_OK(gllm_train_run(&c, NULL, NULL, NULL, &s));
        char m1[1300], m2[1300];
        snprintf(m1, sizeof m1, "%s/one/metrics.jsonl", tmp);
        snprintf(m2, sizeof m2, "%s/two/metrics.jsonl", tmp);
        float l1[16], l2[16];
        const int n1 = read_losses(m1, l1, 16), n2 = read_losses(m2, l2, 16);
        CHECK(n1 == 5 && n2 == 5);
        for (int i = 0; i < n1 && i < n2; i++) {
            printf("step %d: loss 1 rank %.6f, 2 ranks %.6f\n", i + 1, l1[i], l2[i]);
            CHECK(fabsf(l1[i] - l2[i]) <= 1e-4f * fabsf(l1[i]));
        }
        CHECK(l1[4] < l1[0]);
        char d1[1300], d2[1300];
        snprintf(d1, sizeof d1, "%s/one/final", tmp);
        snprintf(d2, sizeof d2, "%s/two/final", tmp);
        bool same;
        const double worst = compare_checkpoints(d1, d2, &same);
        printf("final weights: worst tensor rel diff %.2e\n", worst);
        CHECK(worst < 1e-4);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    return test_summary();
}
