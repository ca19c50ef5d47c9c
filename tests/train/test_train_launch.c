/* gtrain across processes, run as a user runs it: `gtrain --ranks 2` and
 * `mpirun -np 2 gtrain` (each rank batch B) against one rank with batch 2B,
 * with and without ZeRO-1, with gradient buckets and with one flat reduction;
 * the ZeRO-1 optimizer state per rank at 1, 2 and 4 ranks; a rank killed with
 * kill -9 mid-run; and the launcher killed with kill -9 (no worker may keep
 * running). Workers run with OMP_NUM_THREADS=1 on this 2-core machine. */
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gllm/dist.h"
#include "gllm/model.h"
#include "test_util.h"
#include "checkpoint_compare.h"

static char g_tmp[64], g_model[1024], g_gtrain[1200];

/* mpirun as CI runs it: as root, 2 ranks on 2 cores, no single-copy shared
 * memory (containers often forbid the ptrace it needs), no leak check of
 * OpenMPI's own allocations under ASan */
#define MPIRUN_ARGS                                                                          \
    GLLM_MPIEXEC, "-np", "2", "--oversubscribe", "--bind-to", "none", "--allow-run-as-root",  \
        "--mca", "btl_vader_single_copy_mechanism", "none", "-x", "OMP_NUM_THREADS=1", "-x", \
        "ASAN_OPTIONS=detect_leaks=0"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void write_config_ex(const char *name, const char *out, int batch, bool zero1,
                            float bucket_mb, int steps, int save_every, float min_lr_ratio)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.json", g_tmp, name);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"model\": \"%s\", \"data\": \"docs.jsonl\", \"out_dir\": \"%s\", \"backend\": "
            "\"cpu\", \"seq_len\": 48, \"batch_size\": %d, \"max_steps\": %d, \"lr\": 2e-3, "
            "\"warmup_steps\": 1, \"weight_decay\": 0.1, \"max_grad_norm\": 1.0, "
            "\"packing\": false, \"seed\": 3, \"zero1\": %s, \"bucket_mb\": %g, "
            "\"log_every\": 1000, \"save_every\": %d, \"min_lr_ratio\": %g}",
            g_model, out, batch, steps, zero1 ? "true" : "false", bucket_mb, save_every,
            min_lr_ratio);
    fclose(f);
}

static void write_config(const char *name, int batch, bool zero1, float bucket_mb, int steps)
{
    write_config_ex(name, name, batch, zero1, bucket_mb, steps, 0, 0.1f);
}

/* run a shell command; its output goes to <tmp>/<name>.log */
static int run(const char *fmt, const char *prefix, const char *cfg)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, prefix, cfg);
    char full[4400];
    snprintf(full, sizeof full, "cd %s && %s > %s.log 2>&1", g_tmp, cmd, cfg);
    const int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int read_losses(const char *name, float *loss, int max)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", g_tmp, name);
    FILE *f = fopen(path, "r");
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

/* a number from <name>/summary.json */
static double summary_num(const char *name, const char *key)
{
    char path[1400], *text = NULL, k[64];
    snprintf(path, sizeof path, "%s/%s/summary.json", g_tmp, name);
    if (gllm_read_file(path, &text, NULL) != GLLM_OK)
        return NAN;
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    const double v = p ? strtod(p + strlen(k) + (p[strlen(k)] == '['), NULL) : NAN;
    free(text);
    return v;
}

/* worst relative difference over the tensors of two runs' final checkpoints */
static double compare(const char *a_name, const char *b_name, bool *bitwise)
{
    char d1[1400], d2[1400];
    snprintf(d1, sizeof d1, "%s/%s/final", g_tmp, a_name);
    snprintf(d2, sizeof d2, "%s/%s/final", g_tmp, b_name);
    return compare_checkpoints(d1, d2, bitwise);
}

/* name's losses and weights against the one-rank reference */
static void check_against_reference(const char *name)
{
    float l1[16], l2[16];
    const int n1 = read_losses("one", l1, 16), n2 = read_losses(name, l2, 16);
    CHECK_MSG(n1 == 5 && n2 == 5, "%s: %d and %d steps", name, n1, n2);
    double worst_loss = 0;
    for (int i = 0; i < n1 && i < n2; i++)
        worst_loss = fmax(worst_loss, fabs((double)l1[i] - l2[i]) / fabs((double)l1[i]));
    bool same;
    const double w = compare("one", name, &same);
    printf("%-14s vs 1 rank x batch 4: worst step-loss rel diff %.2e, worst weight rel diff "
           "%.2e\n", name, worst_loss, w);
    CHECK_MSG(worst_loss < 1e-5, "%s", name);
    CHECK_MSG(w < 1e-5, "%s", name);
}

/* pids whose parent is `parent` (and whose comm starts with `comm`, if given) */
static int children_of(pid_t parent, const char *comm, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) && n < max) {
        const int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        const size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = '\0';
        const char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
        int ppid = 0;
        char state = 0;
        if (!lp || !rp || sscanf(rp + 2, "%c %d", &state, &ppid) != 2 || state == 'Z')
            continue;
        if (parent > 0 && ppid != parent)
            continue;
        if (comm && strncmp(lp + 1, comm, strlen(comm)) != 0)
            continue;
        out[n++] = pid;
    }
    if (d)
        closedir(d);
    return n;
}

/* the value of variable `var` in the environment of pid */
static int env_of(pid_t pid, const char *var)
{
    char path[64], buf[65536];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    const size_t vl = strlen(var);
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
        if (strncmp(buf + i, var, vl) == 0 && buf[i + vl] == '=')
            return atoi(buf + i + vl + 1);
    return -1;
}

/* start `argv` with output to log; returns its pid */
static pid_t spawn(char *const argv[], const char *log)
{
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        if (chdir(g_tmp) != 0)
            _exit(127);
        FILE *f = freopen(log, "w", stderr);
        if (!f || !freopen(log, "a", stdout))
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* wait until <name>/metrics.jsonl shows `steps` steps (or 60 s pass) */
static bool wait_steps(const char *name, int steps)
{
    float l[64];
    for (double t0 = now_s(); now_s() - t0 < 60;) {
        if (read_losses(name, l, 64) >= steps)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

/* wait for pid up to `limit` s; returns the wait status, or -1 on timeout (then kills it) */
static int wait_for(pid_t pid, double limit, double *took)
{
    const double t0 = now_s();
    for (;;) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            *took = now_s() - t0;
            return st;
        }
        if (now_s() - t0 > limit) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            *took = now_s() - t0;
            return -1;
        }
        usleep(20 * 1000);
    }
}

static bool log_has(const char *log, const char *needle)
{
    char path[1400], *text = NULL;
    snprintf(path, sizeof path, "%s/%s", g_tmp, log);
    if (gllm_read_file(path, &text, NULL) != GLLM_OK)
        return false;
    const bool yes = strstr(text, needle) != NULL;
    if (!yes)
        printf("--- %s ---\n%s\n---\n", log, text);
    free(text);
    return yes;
}

/* remove the run folder <g_tmp>/<name> of an earlier case */
static bool clear_run(const char *name)
{
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "rm -rf %s/%s", g_tmp, name);
    return system(cmd) == 0;
}

/* the pid of the gtrain process that mpirun started as rank `rank` (0 if none) */
static pid_t mpi_rank_pid(int rank)
{
    static pid_t all[65536];
    const int n = children_of(0, NULL, all, 65536);
    for (int i = 0; i < n; i++) {
        char path[64], exe[1400] = "";
        snprintf(path, sizeof path, "/proc/%d/exe", (int)all[i]);
        const ssize_t k = readlink(path, exe, sizeof exe - 1);
        exe[k > 0 ? k : 0] = '\0';
        if (strcmp(exe, g_gtrain) == 0 && env_of(all[i], "OMPI_COMM_WORLD_RANK") == rank)
            return all[i];
    }
    return 0;
}

/* wait up to `limit` s for the processes to end, reaping those re-parented to this one (a
 * subreaper); returns how many still run */
static int wait_gone(const pid_t *pids, int n, double limit)
{
    const double t0 = now_s();
    int alive = n;
    while (alive > 0 && now_s() - t0 < limit) {
        alive = 0;
        for (int i = 0; i < n; i++) {
            int st;
            if (pids[i] <= 0)
                continue;
            waitpid(pids[i], &st, WNOHANG);
            alive += kill(pids[i], 0) == 0;
        }
        usleep(20 * 1000);
    }
    return alive;
}

int main(void)
{
    test_shared_path("assets/models/stories260K-hf", g_model, sizeof g_model);
    snprintf(g_gtrain, sizeof g_gtrain, "%s/gtrain", GLLM_BINARY_DIR);
    if (access(g_gtrain, X_OK) != 0)
        test_skip("gtrain is not built beside the tests");
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gllm_test_train_launch_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    setenv("OMP_NUM_THREADS", "1", 1);
    char data[1200];
    snprintf(data, sizeof data, "%s/docs.jsonl", g_tmp);
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
    /* buckets of 0.05 MB cut the 260K-parameter model into several */
    write_config("one", 4, false, 0.05f, 5);
    write_config("ranks", 2, false, 0.05f, 5);
    write_config("ranks_flat", 2, false, 0, 5);
    write_config("ranks_zero", 2, true, 0.05f, 5);
    write_config("ranks_zero_flat", 2, true, 0, 5);
    const char *ranks = "%s --ranks 2 %s.json";
    const char *plain = "%s %s.json";

    TEST_CASE("--ranks 2 x batch 2 == 1 rank x batch 4; bucketed == flat")
    {
        CHECK(run(plain, g_gtrain, "one") == 0);
        CHECK(run(ranks, g_gtrain, "ranks") == 0);
        CHECK(run(ranks, g_gtrain, "ranks_flat") == 0);
        CHECK(run(ranks, g_gtrain, "ranks_zero") == 0);
        CHECK(run(ranks, g_gtrain, "ranks_zero_flat") == 0);
        check_against_reference("ranks");
        check_against_reference("ranks_zero");
        const double nb = summary_num("ranks", "grad_buckets");
        printf("buckets: %.0f with bucket_mb 0.05, %.0f with 0\n", nb,
               summary_num("ranks_flat", "grad_buckets"));
        CHECK(nb >= 3 && summary_num("ranks_flat", "grad_buckets") == 1);
        bool same;
        double w = compare("ranks", "ranks_flat", &same);
        printf("bucketed vs flat all-reduce: worst rel diff %.2e, %s\n", w,
               same ? "bitwise identical" : "different");
        CHECK(same);
        w = compare("ranks_zero", "ranks_zero_flat", &same);
        printf("bucketed vs flat ZeRO-1: worst rel diff %.2e, %s\n", w,
               same ? "bitwise identical" : "different");
        CHECK(w < 1e-6); /* only the clip factor's sum of slice norms regroups */
        w = compare("ranks", "ranks_zero", &same);
        printf("ZeRO-1 vs replicated AdamW: worst rel diff %.2e\n", w);
        CHECK(w < 1e-6);
    }
    TEST_CASE("ZeRO-1 with several buckets resumes from its sharded checkpoint bit for bit")
    {
        /* constant lr after warmup, so 4 steps + 1 resumed follow the 5-step schedule */
        write_config_ex("zb5", "zb5", 2, true, 0.05f, 5, 2, 1.0f);
        write_config_ex("zb4", "zbr", 2, true, 0.05f, 4, 2, 1.0f);
        write_config_ex("zbr", "zbr", 2, true, 0.05f, 5, 2, 1.0f);
        CHECK(run(ranks, g_gtrain, "zb5") == 0);
        CHECK(run(ranks, g_gtrain, "zb4") == 0);
        CHECK(run("%s --resume --ranks 2 %s.json", g_gtrain, "zbr") == 0);
        bool same;
        const double w = compare("zb5", "zbr", &same);
        printf("ZeRO-1, %.0f buckets: 4 steps + resumed 1 vs 5 steps: worst rel diff %.2e, %s\n",
               summary_num("zbr", "grad_buckets"), w, same ? "bitwise identical" : "different");
        CHECK(same);
        CHECK(summary_num("zbr", "grad_buckets") >= 3);
        /* other buckets slice the state differently: refused, not misread */
        write_config_ex("zbx", "zbr", 2, true, 0, 6, 2, 1.0f);
        CHECK(run("%s --resume --ranks 2 %s.json", g_gtrain, "zbx") != 0);
        CHECK(log_has("zbx.log", "bucket_mb"));
    }
    TEST_CASE("ZeRO-1 optimizer state per rank falls as 1/N")
    {
        double bytes[5] = {0};
        for (int n = 1; n <= 4; n *= 2) {
            char name[32];
            snprintf(name, sizeof name, "zero_n%d", n);
            write_config(name, 1, true, 0.05f, 1);
            char cmd[64];
            snprintf(cmd, sizeof cmd, "%%s --ranks %d %%s.json", n);
            CHECK(run(cmd, g_gtrain, name) == 0);
            bytes[n] = summary_num(name, "optimizer_bytes_per_rank");
            printf("ZeRO-1 over %d rank(s): AdamW state %.0f bytes per rank (%.3f of 1 rank's), "
                   "peak memory of rank 0 %.1f MiB\n", n, bytes[n], bytes[n] / bytes[1],
                   summary_num(name, "peak_mem_mib_per_rank"));
        }
        CHECK(bytes[1] > 0);
        CHECK(fabs(bytes[2] / bytes[1] - 0.5) < 0.01);
        CHECK(fabs(bytes[4] / bytes[1] - 0.25) < 0.01);
    }
    TEST_CASE("summary.json: comm share, peak memory per rank; MFU null on the CPU")
    {
        char path[1400], *text = NULL;
        snprintf(path, sizeof path, "%s/ranks/summary.json", g_tmp);
        CHECK_OK(gllm_read_file(path, &text, NULL));
        if (text) {
            printf("%s", text);
            CHECK(strstr(text, "\"mfu\":null"));
            CHECK(strstr(text, "\"peak_source\":\"unknown device\""));
            CHECK(strstr(text, "\"peak_mem_mib_per_rank\":["));
            const double share = summary_num("ranks", "comm_share");
            CHECK(share >= 0 && share < 1);
            CHECK(summary_num("ranks", "train_flops_per_token") > 6 * 200000.0);
        }
        free(text);
    }
    const bool mpi = gllm_mpi_available() && GLLM_MPIEXEC[0] && access(GLLM_MPIEXEC, X_OK) == 0;
    char mpirun[1400];
    snprintf(mpirun, sizeof mpirun,
             "%s -np 2 --oversubscribe --bind-to none --allow-run-as-root "
             "--mca btl_vader_single_copy_mechanism none -x OMP_NUM_THREADS=1 "
             "-x ASAN_OPTIONS=detect_leaks=0 %s", GLLM_MPIEXEC, g_gtrain);
    if (!mpi)
        printf("SKIP the mpirun cases: %s\n",
               gllm_mpi_available() ? "no mpiexec found" : "gtrain was built without MPI");
    TEST_CASE("mpirun -np 2 == --ranks 2 == 1 rank x batch 4")
    {
        if (!mpi)
            break;
        write_config("mpi", 2, false, 0.05f, 5);
        write_config("mpi_zero", 2, true, 0.05f, 5);
        CHECK(run(plain, mpirun, "mpi") == 0);
        CHECK(run(plain, mpirun, "mpi_zero") == 0);
        check_against_reference("mpi");
        check_against_reference("mpi_zero");
        bool same;
        double w = compare("mpi", "ranks", &same);
        printf("mpirun vs --ranks (bucketed): worst rel diff %.2e, %s\n", w,
               same ? "bitwise identical" : "different");
        CHECK(same); /* two ranks: a + b either way */
        w = compare("mpi_zero", "ranks_zero", &same);
        printf("mpirun vs --ranks (ZeRO-1): worst rel diff %.2e, %s\n", w,
               same ? "bitwise identical" : "different");
        CHECK(same);
    }
    /* long runs for the kill tests (they are stopped long before the end) */
    write_config("long", 1, false, 0.05f, 100000);
    char cfg_long[1400];
    snprintf(cfg_long, sizeof cfg_long, "%s/long.json", g_tmp);
    TEST_CASE("--ranks 2: rank 1 killed with kill -9 stops rank 0 within seconds, named")
    {
        char *argv[] = {g_gtrain, "--ranks", "2", cfg_long, NULL};
        const pid_t launcher = spawn(argv, "kill_rank.log");
        CHECK(wait_steps("long", 3));
        pid_t w[4];
        const int n = children_of(launcher, "gllm-rank1", w, 4);
        CHECK(n == 1);
        if (n == 1) {
            kill(w[0], SIGKILL);
            double took = 0;
            const int st = wait_for(launcher, 20, &took);
            printf("launcher exited %.2f s after rank 1 was killed, status 0x%x\n", took, st);
            CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0);
            CHECK(took < 5);
            CHECK(log_has("kill_rank.log", "rank 1 (pid"));
            CHECK(log_has("kill_rank.log", "killed by signal 9"));
            CHECK(log_has("kill_rank.log", "gtrain rank 0: rank 1 died"));
        } else {
            kill(launcher, SIGKILL);
            waitpid(launcher, NULL, 0);
        }
    }
    TEST_CASE("kill -9 of the launcher leaves no worker running")
    {
        CHECK(clear_run("long"));
        /* orphans are re-parented to this process, so it can see them end */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        char *argv[] = {g_gtrain, "--ranks", "2", cfg_long, NULL};
        const pid_t launcher = spawn(argv, "kill_launcher.log");
        CHECK(wait_steps("long", 3));
        pid_t w[4];
        const int n = children_of(launcher, "gllm-rank", w, 4);
        CHECK(n == 2);
        const double t0 = now_s();
        kill(launcher, SIGKILL);
        waitpid(launcher, NULL, 0);
        const int alive = wait_gone(w, n, 10); /* orphans re-parented to us are reaped */
        printf("%d of %d workers still running %.2f s after kill -9 of the launcher\n", alive, n,
               now_s() - t0);
        CHECK(alive == 0);
        static pid_t any[65536];
        const int left = children_of(0, "gllm-rank", any, 65536); /* a scan of every process */
        int ours = 0;
        for (int i = 0; i < left; i++)
            for (int k = 0; k < n; k++)
                ours += any[i] == w[k];
        CHECK(ours == 0);
        prctl(PR_SET_CHILD_SUBREAPER, 0);
    }
    TEST_CASE("mpirun: rank 1 killed with kill -9 ends the job within seconds, named")
    {
        if (!mpi)
            break;
        CHECK(clear_run("long"));
        char *argv[24] = {MPIRUN_ARGS, g_gtrain, cfg_long, NULL};
        const pid_t mpirun_pid = spawn(argv, "kill_mpi.log");
        CHECK(wait_steps("long", 3));
        const pid_t victim = mpi_rank_pid(1);
        CHECK(victim > 0);
        if (victim > 0) {
            kill(victim, SIGKILL);
            double took = 0;
            const int st = wait_for(mpirun_pid, 30, &took);
            printf("mpirun exited %.2f s after rank 1 was killed, status 0x%x\n", took, st);
            CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0);
            CHECK(took < 10);
            CHECK(log_has("kill_mpi.log", "rank 1"));
        } else {
            kill(mpirun_pid, SIGTERM);
            waitpid(mpirun_pid, NULL, 0);
        }
    }
    TEST_CASE("--ranks 2: a stalled rank (SIGSTOP) makes the others time out, no hang")
    {
        CHECK(clear_run("long"));
        setenv("GLLM_COMM_TIMEOUT", "3", 1);
        char *argv[] = {g_gtrain, "--ranks", "2", cfg_long, NULL};
        const pid_t launcher = spawn(argv, "stall_rank.log");
        unsetenv("GLLM_COMM_TIMEOUT");
        CHECK(wait_steps("long", 3));
        pid_t w[4];
        const int n = children_of(launcher, "gllm-rank1", w, 4);
        CHECK(n == 1);
        if (n == 1)
            kill(w[0], SIGSTOP);
        double took = 0;
        const int st = wait_for(launcher, 40, &took);
        printf("launcher exited %.2f s after rank 1 stalled, status 0x%x\n", took, st);
        CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0);
        CHECK(took < 20); /* 3 s timeout, then the launcher's 10 s grace before kill */
        CHECK(log_has("stall_rank.log", "no rank-wide progress in 3 s"));
        CHECK(log_has("stall_rank.log", "rank 1 (pid"));
    }
    TEST_CASE("mpirun: a stalled rank (SIGSTOP) makes the others time out and abort the job")
    {
        if (!mpi)
            break;
        CHECK(clear_run("long"));
        char *argv[24] = {MPIRUN_ARGS, "-x", "GLLM_COMM_TIMEOUT=3", g_gtrain,
                          cfg_long, NULL};
        const pid_t mpirun_pid = spawn(argv, "stall_mpi.log");
        CHECK(wait_steps("long", 3));
        const pid_t victim = mpi_rank_pid(1);
        CHECK(victim > 0);
        if (victim > 0)
            kill(victim, SIGSTOP);
        double took = 0;
        const int st = wait_for(mpirun_pid, 40, &took);
        printf("mpirun exited %.2f s after rank 1 stalled, status 0x%x\n", took, st);
        CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0);
        CHECK(took < 15);
        CHECK(log_has("stall_mpi.log", "not complete after 3 s on rank 0"));
        if (victim > 0)
            kill(victim, SIGKILL); /* should be gone already; never leave it stopped */
    }
    TEST_CASE("kill -9 of mpirun leaves no rank running")
    {
        if (!mpi)
            break;
        CHECK(clear_run("long"));
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        char *argv[24] = {MPIRUN_ARGS, g_gtrain, cfg_long, NULL};
        const pid_t mpirun_pid = spawn(argv, "kill_mpirun.log");
        CHECK(wait_steps("long", 3));
        const pid_t ranks_pid[2] = {mpi_rank_pid(0), mpi_rank_pid(1)};
        CHECK(ranks_pid[0] > 0 && ranks_pid[1] > 0);
        const double t0 = now_s();
        kill(mpirun_pid, SIGKILL);
        waitpid(mpirun_pid, NULL, 0);
        const int alive = wait_gone(ranks_pid, 2, 10);
        printf("%d of 2 MPI ranks still running %.2f s after kill -9 of mpirun\n", alive,
               now_s() - t0);
        CHECK(alive == 0);
        for (int r = 0; r < 2; r++)
            if (alive && ranks_pid[r] > 0)
                kill(ranks_pid[r], SIGKILL);
        prctl(PR_SET_CHILD_SUBREAPER, 0);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (t_failures == 0 && system(cmd) != 0)
        printf("could not remove %s\n", g_tmp);
    return test_summary();
}
