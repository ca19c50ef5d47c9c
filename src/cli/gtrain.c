/* gtrain: fine-tune a Hugging Face model from a JSON run config.
 * usage: gtrain [--backend NAME] CONFIG.json */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gllm/train.h"

static void progress(const gllm_train_progress *p, void *user)
{
    const int tty = *(const int *)user;
    char val[32] = "";
    if (!isnan(p->val_loss))
        snprintf(val, sizeof val, " val %.4f", p->val_loss);
    const int eta = (int)p->eta_s;
    /* MFU needs the device's peak rate; the CPU backend reports none */
    fprintf(stderr, "%sstep %d/%d  loss %.4f%s  lr %.2e  |g| %.3f  %.0f tok/s  ETA %dm%02ds  "
            "mem %.0f MiB%s",
            tty ? "\r" : "", p->step, p->total_steps, p->loss, val, p->lr, p->grad_norm,
            p->tokens_per_s, eta / 60, eta % 60, p->rss_mib,
            tty && p->step < p->total_steps && isnan(p->val_loss) ? "   " : "\n");
}

int main(int argc, char **argv)
{
    const char *backend = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            backend = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: gtrain [--backend cpu|cuda|cuda:N|auto] CONFIG.json\n"
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
        fprintf(stderr, "usage: gtrain [--backend NAME] CONFIG.json\n");
        return 2;
    }
    gllm_train_config cfg;
    if (gllm_train_config_load(config, &cfg) != GLLM_OK) {
        fprintf(stderr, "gtrain: %s\n", gllm_last_error());
        return 1;
    }
    if (backend)
        snprintf(cfg.backend, sizeof cfg.backend, "%s", backend);
    int tty = isatty(2);
    gllm_train_summary sum;
    if (gllm_train_run(&cfg, NULL, progress, &tty, &sum) != GLLM_OK) {
        fprintf(stderr, "\ngtrain: %s\n", gllm_last_error());
        return 1;
    }
    fprintf(stderr, "done: %d steps, loss %.4f -> %.4f, %.0f tok/s, %.1f s; checkpoint %s/final\n",
            sum.steps, sum.first_loss, sum.final_loss, sum.tokens_per_s, sum.seconds, cfg.out_dir);
    return 0;
}
