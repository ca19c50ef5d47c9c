/* What every communicator shares: the collective timeout and how a dead
 * rank's end is described. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "dist/dist_internal.h"

double gllm_comm_timeout_s(void)
{
    const char *v = getenv("GLLM_COMM_TIMEOUT");
    if (v && *v) {
        char *end;
        const double t = strtod(v, &end);
        if (!*end && t > 0)
            return t;
    }
    return 600.0;
}

void gllm_describe_exit(int status, char *buf, size_t n)
{
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        snprintf(buf, n, "killed by signal %d (%s)%s", sig, strsignal(sig),
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else if (WIFEXITED(status)) {
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(buf, n, "ended (wait status 0x%x)", (unsigned)status);
    }
}

double gllm_dist_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
