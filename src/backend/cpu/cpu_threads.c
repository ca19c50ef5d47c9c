/* How many threads the CPU backend uses when the caller does not say: the
 * physical cores this process may run on (its affinity mask, one thread per
 * core, not per hyperthread), capped by its cgroup CPU quota, unless
 * OMP_NUM_THREADS names a number. Read at backend creation, not cached, so a
 * process that changes its affinity or environment gets what it asked for. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

int gllm_cpu_list_parse(const char *list, cpu_set_t *set)
{
    CPU_ZERO(set);
    const char *s = list;
    while (*s && isspace((unsigned char)*s))
        s++;
    if (!*s)
        return -1;
    for (;;) {
        char *end;
        errno = 0;
        long a = strtol(s, &end, 10), b;
        if (end == s || errno || a < 0 || a >= CPU_SETSIZE)
            return -1;
        s = end;
        b = a;
        if (*s == '-') {
            s++;
            b = strtol(s, &end, 10);
            if (end == s || errno || b < a || b >= CPU_SETSIZE)
                return -1;
            s = end;
        }
        for (long c = a; c <= b; c++)
            CPU_SET((int)c, set);
        if (*s != ',')
            break;
        s++;
    }
    while (*s && isspace((unsigned char)*s))
        s++;
    return *s ? -1 : CPU_COUNT(set);
}

double gllm_cpu_quota_v2(const char *cpu_max)
{
    char first[32];
    long period = 100000;
    int n = sscanf(cpu_max, "%31s %ld", first, &period);
    if (n < 1)
        return -1;
    if (strcmp(first, "max") == 0)
        return 0;
    char *end;
    errno = 0;
    long quota = strtol(first, &end, 10);
    if (*end || errno || quota <= 0 || period <= 0)
        return -1;
    return (double)quota / (double)period;
}

double gllm_cpu_quota_v1(long quota_us, long period_us)
{
    if (quota_us < 0) /* -1: no limit */
        return 0;
    if (quota_us == 0 || period_us <= 0)
        return -1;
    return (double)quota_us / (double)period_us;
}

int gllm_cpu_threads_from(const char *omp_num_threads, int n_cores, double quota_cpus)
{
    if (omp_num_threads && *omp_num_threads) {
        /* "4" or a nesting list "4,2": the first level is ours */
        char *end;
        errno = 0;
        long v = strtol(omp_num_threads, &end, 10);
        if (!errno && end != omp_num_threads && (*end == '\0' || *end == ',') && v > 0 &&
            v <= 4096)
            return (int)v;
    }
    int n = n_cores > 0 ? n_cores : 1;
    if (quota_cpus > 0) {
        /* a quota of 1.5 CPUs still lets two threads run at once */
        double q = ceil(quota_cpus - 1e-9);
        if (q < n)
            n = q < 1 ? 1 : (int)q;
    }
    return n;
}

static int read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* Cores among the allowed CPUs: a CPU counts unless a lower allowed CPU is
 * one of its hardware-thread siblings. Without topology, every CPU counts. */
static int physical_cores(const cpu_set_t *allowed)
{
    int cores = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, allowed))
            continue;
        char path[128], line[1024];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list",
                 c);
        cpu_set_t sib;
        bool first = true;
        if (read_line(path, line, sizeof line) == 0 && gllm_cpu_list_parse(line, &sib) > 0)
            for (int d = 0; d < c; d++)
                if (CPU_ISSET(d, &sib) && CPU_ISSET(d, allowed))
                    first = false;
        cores += first;
    }
    return cores;
}

/* The tightest CPU quota on the cgroup path of this process (v2 cpu.max or
 * v1 cpu.cfs_quota_us / cpu.cfs_period_us, each level up to the root):
 * 0 when there is none. */
static double cgroup_quota(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return 0;
    char line[4096], path[4300], val[256];
    double best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        const bool v2 = c1[1] == ':';
        const char *ctrl = c1 + 1, *cg = c2 + 1;
        bool v1cpu = false;
        for (const char *s = ctrl; !v2 && s < c2;) {
            size_t len = strcspn(s, ",:");
            if (len == 3 && strncmp(s, "cpu", 3) == 0)
                v1cpu = true;
            s += len + 1;
        }
        if (!v2 && !v1cpu)
            continue;
        char rel[4096];
        snprintf(rel, sizeof rel, "%s", cg);
        for (;;) { /* this level, then each parent */
            double q = -1;
            if (v2) {
                snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", rel);
                if (read_line(path, val, sizeof val) == 0)
                    q = gllm_cpu_quota_v2(val);
            } else {
                static const char *mounts[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
                for (int m = 0; m < 2 && q < 0; m++) {
                    char per[64];
                    snprintf(path, sizeof path, "%s%s/cpu.cfs_quota_us", mounts[m], rel);
                    if (read_line(path, val, sizeof val) != 0)
                        continue;
                    snprintf(path, sizeof path, "%s%s/cpu.cfs_period_us", mounts[m], rel);
                    if (read_line(path, per, sizeof per) == 0)
                        q = gllm_cpu_quota_v1(atol(val), atol(per));
                }
            }
            if (q > 0 && (best == 0 || q < best))
                best = q;
            char *slash = strrchr(rel, '/');
            if (!slash || rel[0] == '\0' || (slash == rel && rel[1] == '\0'))
                break;
            if (slash == rel)
                rel[1] = '\0';
            else
                *slash = '\0';
        }
    }
    fclose(f);
    return best;
}

int gllm_cpu_default_threads(void)
{
    cpu_set_t allowed;
    int cores = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        cores = physical_cores(&allowed);
    if (cores < 1)
        cores = 1;
    return gllm_cpu_threads_from(getenv("OMP_NUM_THREADS"), cores, cgroup_quota());
}
