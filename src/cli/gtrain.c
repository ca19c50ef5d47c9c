/* gtrain: fine-tune a Hugging Face model from a JSON run config.
 * usage: gtrain [--backend NAME] [--ranks N | --gpus N] [--resume | --overwrite] CONFIG.json
 * Starting and supervising the ranks is src/dist/launch.c's job. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gllm/dist.h"
#include "gllm/train.h"

static volatile sig_atomic_t g_interrupted;

/* a progress line is on the terminal without its newline: an error message
 * first ends it (and only then: no blank line before a message otherwise) */
static int g_line_open;

static void print_error(const char *who, const char *msg)
{
    fprintf(stderr, "%s%s: %s\n", g_line_open ? "\n" : "", who, msg);
    g_line_open = 0;
}

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static int progress(const gllm_train_progress *p, void *user)
{
    const int tty = *(const int *)user;
    if (p->notice) {
        fprintf(stderr, "%sgtrain: %s\n", g_line_open ? "\n" : "", p->notice);
        g_line_open = 0;
        return g_interrupted;
    }
    char val[32] = "";
    if (!isnan(p->val_loss))
        snprintf(val, sizeof val, " val %.4f", p->val_loss);
    const int eta = (int)p->eta_s;
    /* MFU needs the device's peak rate: the CPU has none, so it is left out */
    char mfu[64] = "";
    if (!isnan(p->mfu))
        snprintf(mfu, sizeof mfu, "  MFU %.1f%%", 100.0 * p->mfu);
    if (p->comm_share > 0)
        snprintf(mfu + strlen(mfu), sizeof mfu - strlen(mfu), "  comm %.0f%%",
                 100.0 * p->comm_share);
    fprintf(stderr, "%sstep %d/%d  loss %.4f%s  lr %.2e  |g| %.3f  %.0f tok/s%s  ETA %dm%02ds  "
            "mem %.0f MiB%s",
            tty ? "\r" : "", p->step, p->total_steps, p->loss, val, p->lr, p->grad_norm,
            p->tokens_per_s, mfu, eta / 60, eta % 60, p->rss_mib,
            tty && p->step < p->total_steps && isnan(p->val_loss) ? "   " : "\n");
    g_line_open = tty && p->step < p->total_steps && isnan(p->val_loss);
    return g_interrupted;
}

int main(int argc, char **argv)
{
    const char *backend = NULL, *config = NULL;
    int ranks = 0, resume = 0, overwrite = 0;
    bool gpus = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            backend = argv[++i];
        else if (strcmp(argv[i], "--resume") == 0)
            resume = 1;
        else if (strcmp(argv[i], "--overwrite") == 0)
            overwrite = 1;
        else if (strcmp(argv[i], "--version") == 0) {
            printf("gtrain (gllm) %s\n", GLLM_VERSION);
            return 0;
        }
        else if ((strcmp(argv[i], "--ranks") == 0 || strcmp(argv[i], "--gpus") == 0) &&
                 i + 1 < argc) {
            gpus = strcmp(argv[i], "--gpus") == 0;
            char *end;
            ranks = (int)strtol(argv[++i], &end, 10);
            if (*end || ranks < 1 || ranks > 256) {
                fprintf(stderr, "gtrain: %s needs a number of processes in 1..256\n", argv[i - 1]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: gtrain [--backend cpu|cuda|cuda:N|auto] [--ranks N | --gpus N] "
                   "[--resume | --overwrite] CONFIG.json\n"
                   "  --resume     continue from the run folder's latest checkpoint (Ctrl-C stops\n"
                   "               a run at the next step)\n"
                   "  --overwrite  start afresh in a run folder that holds a run (its checkpoints,\n"
                   "               metrics and summary are deleted)\n"
                   "  --ranks N    data parallelism over N CPU processes sharing memory\n"
                   "               (each runs batch_size rows per micro-batch; backend auto means cpu)\n"
                   "  --gpus N     data parallelism over N GPUs of this machine (NCCL)\n"
                   "  --version    print the version\n"
                   "Under mpirun, srun or torchrun each process finds its rank itself\n"
                   "(README: multi-GPU and multi-node runs).\n"
                   "Keys of CONFIG.json: configs/README.md\n");
            return 0;
        } else if (!config && argv[i][0] != '-')
            config = argv[i];
        else {
            fprintf(stderr, "gtrain: unexpected argument '%s' (see gtrain --help)\n", argv[i]);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "usage: gtrain [--backend NAME] [--ranks N | --gpus N] [--resume | --overwrite] "
                        "CONFIG.json\n");
        return 2;
    }
    gllm_train_config cfg;
    if (gllm_train_config_load(config, &cfg) != GLLM_OK) {
        fprintf(stderr, "gtrain: %s\n", gllm_last_error());
        return 1;
    }
    if (backend)
        snprintf(cfg.backend, sizeof cfg.backend, "%s", backend);
    if (resume)
        cfg.resume = true;
    if (overwrite)
        cfg.overwrite = true;
    if (cfg.resume && cfg.overwrite) {
        fprintf(stderr, "gtrain: --resume and --overwrite contradict each other\n");
        return 2;
    }
    signal(SIGINT, on_sigint);
    int tty = isatty(2);
    gllm_launch launch;
    int code = 0;
    if (gllm_launch_init(&launch, ranks, gpus) != GLLM_OK ||
        gllm_launch_backend(&launch, cfg.backend, sizeof cfg.backend) != GLLM_OK ||
        gllm_launch_start(&launch, &code) != GLLM_OK) {
        fprintf(stderr, "gtrain: %s\n", gllm_last_error());
        gllm_launch_finish(&launch, true);
        return launch.is_launcher ? 1 : 2;
    }
    if (launch.is_launcher) { /* the workers have ended; the message of a failure is printed */
        gllm_launch_finish(&launch, code != 0);
        return code;
    }
    const int rank = launch.rank, world = launch.world;
    const gllm_comm_factory comm = {.make = gllm_launch_make_comm, .ctx = &launch};
    gllm_train_summary sum;
    if (gllm_train_run(&cfg, &comm, progress, &tty, &sum) != GLLM_OK) {
        char who[32] = "gtrain";
        if (world > 1)
            snprintf(who, sizeof who, "gtrain rank %d", rank);
        print_error(who, gllm_last_error());
        fflush(NULL);
        gllm_launch_finish(&launch, true);
        return 1;
    }
    if (rank == 0)
        fprintf(stderr, "done: %d rank%s, %d steps, loss %.4f -> %.4f, %.0f tok/s, %.1f s; "
                "checkpoint %s/final\n", world, world > 1 ? "s" : "", sum.steps, sum.first_loss,
                sum.final_loss, sum.tokens_per_s, sum.seconds, cfg.out_dir);
    if (rank == 0 && sum.skipped_steps)
        fprintf(stderr, "gtrain: %lld steps were skipped: their batches had no target token\n",
                sum.skipped_steps);
    fflush(NULL);
    gllm_launch_finish(&launch, false);
    return 0;
}
