/* How the ranks of a job start, find out who they are, and end.
 *
 *  --ranks N / --gpus N: this process forks N workers and supervises them.
 *    Each worker asks the kernel to kill it when the launcher dies
 *    (PR_SET_PDEATHSIG), so no worker trains on orphaned. When a worker ends
 *    badly the launcher says which rank and how, marks it dead in the shared
 *    segment (every rank waiting in a collective then fails at once with that
 *    message) and kills what is left after a grace period.
 *  mpirun / srun / torchrun: each process reads its rank from the launcher's
 *    environment; mpirun (or srun) stops the job when a rank dies, and the
 *    collective timeout covers what it does not.
 * A GPU worker opens the GPU of its local rank before anything touches CUDA.
 * The NCCL id goes from rank 0 to the others through a pipe (one node), MPI
 * (mpirun), or a file in a folder every node shares (GLLM_RENDEZVOUS). */
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist/dist_internal.h"
#include "gllm/backend_cpu.h"
#include "gllm/dist.h"

/* seconds the other workers get to stop by themselves after one failed */
#define GRACE_S 10.0

const char *gllm_launcher_name(gllm_launcher k)
{
    switch (k) {
    case GLLM_LAUNCH_FORK: return "fork";
    case GLLM_LAUNCH_MPI: return "mpirun";
    case GLLM_LAUNCH_SLURM: return "srun";
    case GLLM_LAUNCH_TORCHRUN: return "torchrun";
    default: return "none";
    }
}

/* *out = the integer in variable `name`; absent: *found = false */
static gllm_status env_int(const char *name, int lo, int *out, bool *found)
{
    const char *v = getenv(name);
    *found = v && *v;
    if (!*found)
        return GLLM_OK;
    char *end;
    errno = 0;
    const long x = strtol(v, &end, 10);
    if (*end || errno || x < lo || x > 1 << 20)
        return gllm_fail(GLLM_ERR_INVALID, "environment: %s=\"%s\" is not a number >= %d", name,
                         v, lo);
    *out = (int)x;
    return GLLM_OK;
}

/* rank, world and local rank from three variables; local world optional */
static gllm_status from_env(gllm_launch *l, const char *rank, const char *world,
                            const char *local, const char *local_world)
{
    bool has_r, has_w, has_l, has_lw;
    GLLM_TRY(env_int(rank, 0, &l->rank, &has_r));
    GLLM_TRY(env_int(world, 1, &l->world, &has_w));
    GLLM_TRY(env_int(local, 0, &l->local_rank, &has_l));
    has_lw = false;
    if (local_world)
        GLLM_TRY(env_int(local_world, 1, &l->local_world, &has_lw));
    if (!has_r || !has_w)
        return gllm_fail(GLLM_ERR_INVALID, "environment (%s launch): %s is set but %s is not",
                         gllm_launcher_name(l->kind), has_r ? rank : world,
                         has_r ? world : rank);
    if (l->rank >= l->world)
        return gllm_fail(GLLM_ERR_INVALID, "environment: %s=%d is not below %s=%d", rank,
                         l->rank, world, l->world);
    if (!has_l)
        l->local_rank = l->rank; /* one node */
    if (!has_lw)
        l->local_world = has_l ? l->local_rank + 1 : l->world;
    if (l->local_rank >= l->local_world || l->local_rank > l->rank)
        return gllm_fail(GLLM_ERR_INVALID, "environment: local rank %s=%d does not fit rank %d "
                         "of %d with %d per node", local, l->local_rank, l->rank, l->world,
                         l->local_world);
    return GLLM_OK;
}

static void job_id(gllm_launch *l)
{
    const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID");
    const char *run = getenv("TORCHELASTIC_RUN_ID"), *addr = getenv("MASTER_ADDR");
    const char *port = getenv("MASTER_PORT"), *own = getenv("GLLM_JOB_ID");
    if (own && *own)
        snprintf(l->job_id, sizeof l->job_id, "%s", own);
    else if (job && *job)
        snprintf(l->job_id, sizeof l->job_id, "slurm-%s.%s", job, step ? step : "0");
    else if (run && *run && strcmp(run, "none") != 0)
        snprintf(l->job_id, sizeof l->job_id, "torchrun-%s", run);
    else if (addr && port)
        snprintf(l->job_id, sizeof l->job_id, "%s-%s", addr, port);
    else
        snprintf(l->job_id, sizeof l->job_id, "job");
    for (char *p = l->job_id; *p; p++) /* a file name */
        if (*p == '/' || *p == ' ')
            *p = '_';
}

gllm_status gllm_launch_init(gllm_launch *l, int workers, bool gpus)
{
    memset(l, 0, sizeof *l);
    l->id_pipe[0] = l->id_pipe[1] = -1;
    l->world = l->local_world = 1;
    l->gpus = gpus;
    const char *rdv = getenv("GLLM_RENDEZVOUS");
    if (rdv)
        snprintf(l->rendezvous, sizeof l->rendezvous, "%s", rdv);
    job_id(l);
    /* which launcher started us, if any (mpirun under Slurm sets both: MPI first) */
    gllm_launcher env = GLLM_LAUNCH_NONE;
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("OMPI_COMM_WORLD_RANK"))
        env = GLLM_LAUNCH_MPI;
    else if (getenv("SLURM_STEP_ID") && getenv("SLURM_PROCID")) /* srun, not the batch script */
        env = GLLM_LAUNCH_SLURM;
    else if (getenv("RANK") || getenv("WORLD_SIZE"))
        env = GLLM_LAUNCH_TORCHRUN;
    gllm_launch probe = *l;
    probe.kind = env;
    switch (env) {
    case GLLM_LAUNCH_MPI:
        GLLM_TRY(from_env(&probe, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                          "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"));
        break;
    case GLLM_LAUNCH_SLURM:
        GLLM_TRY(from_env(&probe, "SLURM_PROCID",
                          getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS",
                          "SLURM_LOCALID", NULL));
        break;
    case GLLM_LAUNCH_TORCHRUN:
        GLLM_TRY(from_env(&probe, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"));
        break;
    default:
        break;
    }
    if (workers > 0) {
        if (env != GLLM_LAUNCH_NONE && probe.world > 1)
            return gllm_fail(GLLM_ERR_INVALID,
                             "%s %d starts its own workers, but this process is rank %d of %d "
                             "under %s: start one process per %s there instead (without %s)",
                             gpus ? "--gpus" : "--ranks", workers, probe.rank, probe.world,
                             gllm_launcher_name(env), gpus ? "GPU" : "rank",
                             gpus ? "--gpus" : "--ranks");
        if (workers > 256)
            return gllm_fail(GLLM_ERR_INVALID, "%s %d: at most 256 workers",
                             gpus ? "--gpus" : "--ranks", workers);
        /* --ranks 1 is a plain run; --gpus 1 still goes through the GPU worker path */
        if (workers > 1 || gpus) {
            l->kind = GLLM_LAUNCH_FORK;
            l->world = l->local_world = workers;
        }
        return GLLM_OK;
    }
    if (env != GLLM_LAUNCH_NONE && probe.world > 1)
        *l = probe;
    return GLLM_OK;
}

/* CPU workers of one machine share its cores: unless OMP_NUM_THREADS says
 * otherwise, each takes cores / workers threads (threads that outnumber the
 * cores slow every rank down), counting cores as the CPU backend does
 * (affinity mask, physical cores, cgroup quota). Set in this worker's
 * environment, so the CPU backend it creates and its OpenMP loops (data
 * loading) both follow it. */
static void share_cores(int local_world)
{
    const char *v = getenv("OMP_NUM_THREADS");
    if ((v && *v) || local_world <= 1)
        return;
    const int cores = gllm_cpu_default_threads();
    const int t = cores > local_world ? cores / local_world : 1;
    char buf[16];
    snprintf(buf, sizeof buf, "%d", t);
    setenv("OMP_NUM_THREADS", buf, 1);
    omp_set_num_threads(t);
}

/* ---- the launcher's side ---- */

static volatile sig_atomic_t g_stop_signal;

static void on_stop(int sig) { g_stop_signal = sig; }
static void on_interrupt(int sig) { (void)sig; } /* workers handle Ctrl-C themselves */

static int rank_of(const gllm_launch *l, pid_t pid)
{
    for (int r = 0; r < l->world; r++)
        if (l->pids[r] == pid)
            return r;
    return -1;
}

/* Reap the workers; the first failure is reported and shared with the rest. */
static int supervise(gllm_launch *l)
{
    int left = l->world, failed = -1;
    double kill_at = 0;
    while (left > 0) {
        int st = 0;
        const pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid < 0 && errno != EINTR)
            break;
        if (pid > 0) {
            const int r = rank_of(l, pid);
            if (r < 0)
                continue;
            l->pids[r] = 0;
            left--;
            if (failed < 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
                failed = r;
                char how[96];
                gllm_describe_exit(st, how, sizeof how);
                fprintf(stderr, "\ngllm launcher: rank %d (pid %d) %s; stopping the other %d "
                        "rank(s)\n", r, (int)pid, how, left);
                gllm_shm_group_mark_dead(l->group, r, st);
                kill_at = gllm_dist_now() + GRACE_S;
            }
            continue;
        }
        if (g_stop_signal) { /* SIGTERM/SIGHUP to the launcher: pass it on */
            for (int r = 0; r < l->world; r++)
                if (l->pids[r] > 0)
                    kill(l->pids[r], (int)g_stop_signal);
            g_stop_signal = 0;
            if (failed < 0)
                failed = l->world; /* no rank to blame, but the run did not finish */
        }
        if (kill_at > 0 && gllm_dist_now() > kill_at) {
            for (int r = 0; r < l->world; r++)
                if (l->pids[r] > 0) {
                    fprintf(stderr, "gllm launcher: rank %d (pid %d) did not stop within "
                            "%g s: killing it\n", r, l->pids[r], GRACE_S);
                    kill(l->pids[r], SIGKILL);
                }
            kill_at = 0;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return failed >= 0 ? 1 : 0;
}

gllm_status gllm_launch_start(gllm_launch *l, int *exit_code)
{
    *exit_code = -1;
    if (l->kind == GLLM_LAUNCH_MPI || (l->kind == GLLM_LAUNCH_SLURM && gllm_mpi_available() &&
                                       !l->gpus && !l->rendezvous[0])) {
        int rank, world;
        if (gllm_mpi_init(&rank, &world) != GLLM_OK)
            return gllm_fail_prefix(GLLM_ERR_BACKEND, "%s", l->kind == GLLM_LAUNCH_SLURM
                                    ? "under srun, MPI needs srun --mpi=pmix (or set "
                                      "GLLM_RENDEZVOUS for GPU ranks): "
                                    : "");
        l->mpi_up = true;
        if (rank != l->rank || world != l->world)
            return gllm_fail(GLLM_ERR_INVALID, "MPI says rank %d of %d, the %s environment says "
                             "rank %d of %d", rank, world, gllm_launcher_name(l->kind), l->rank,
                             l->world);
    }
    if (l->kind != GLLM_LAUNCH_FORK) {
        if (l->kind != GLLM_LAUNCH_NONE) {
            /* our parent is the launcher's process on this node (mpirun or orted,
             * slurmstepd, the torchrun agent): die with it, as forked workers do */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            share_cores(l->local_world);
        }
        return GLLM_OK;
    }
    /* CPU workers reduce through the group's slots; GPU workers use it only for
     * the launcher's word on dead ranks */
    GLLM_TRY(gllm_shm_group_create(l->world, l->gpus ? 64 : 4u << 20, &l->group));
    l->pids = gllm_calloc((size_t)l->world, sizeof *l->pids, "worker pids");
    if (!l->pids)
        return GLLM_ERR_OOM;
    if (l->gpus && pipe(l->id_pipe) != 0)
        return gllm_fail(GLLM_ERR_IO, "launcher: pipe: %s", strerror(errno));
    const pid_t launcher = getpid();
    /* fork before any OpenMP region or CUDA call: neither survives a fork */
    for (int r = 0; r < l->world; r++) {
        fflush(NULL);
        const pid_t pid = fork();
        if (pid < 0) {
            const int e = errno;
            for (int k = 0; k < r; k++)
                kill(l->pids[k], SIGKILL);
            while (wait(NULL) > 0)
                ;
            return gllm_fail(GLLM_ERR_IO, "launcher: fork of rank %d: %s", r, strerror(e));
        }
        if (pid == 0) {
            /* die with the launcher, even by kill -9; it may already be gone */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != launcher)
                _exit(1);
            char name[16];
            snprintf(name, sizeof name, "gllm-rank%d", r & 0xfff);
            prctl(PR_SET_NAME, name);
            l->rank = l->local_rank = r;
            l->is_launcher = false;
            if (!l->gpus)
                share_cores(l->world);
            free(l->pids);
            l->pids = NULL;
            return GLLM_OK;
        }
        l->pids[r] = pid;
    }
    l->is_launcher = true;
    if (l->id_pipe[0] >= 0) {
        close(l->id_pipe[0]);
        close(l->id_pipe[1]);
        l->id_pipe[0] = l->id_pipe[1] = -1;
    }
    struct sigaction sa = {0}, old_int, old_term, old_hup;
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, &old_int);
    *exit_code = supervise(l);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    return GLLM_OK;
}

gllm_status gllm_launch_backend(const gllm_launch *l, char *backend, size_t n)
{
    const bool is_auto = strcmp(backend, "auto") == 0, is_cuda = strcmp(backend, "cuda") == 0;
    if (l->kind == GLLM_LAUNCH_FORK && !l->gpus) { /* --ranks: CPU processes */
        if (is_auto) {
            snprintf(backend, n, "cpu");
            return GLLM_OK;
        }
        if (strcmp(backend, "cpu") != 0)
            return gllm_fail(GLLM_ERR_INVALID, "--ranks runs CPU processes, but the backend is "
                             "\"%s\" (GPUs: --gpus N)", backend);
        return GLLM_OK;
    }
    if (l->kind == GLLM_LAUNCH_FORK && l->gpus && !is_auto && !is_cuda)
        return gllm_fail(GLLM_ERR_INVALID, "--gpus runs one process per GPU, but the backend is "
                         "\"%s\" (use \"cuda\" or \"auto\"; CPU processes: --ranks N)", backend);
    if (l->kind == GLLM_LAUNCH_NONE)
        return GLLM_OK;
    /* one GPU per process: the local rank picks it, unless the launcher has
     * already given each process a single GPU (srun --gpus-per-task=1 sets
     * CUDA_VISIBLE_DEVICES to one device: it is device 0 of that process) */
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    const int dev = vis && *vis && !strchr(vis, ',') ? 0 : l->local_rank;
    if (is_cuda || (is_auto && l->gpus))
        snprintf(backend, n, "cuda:%d", dev);
    else if (is_auto)
        snprintf(backend, n, "auto:%d", dev);
    return GLLM_OK;
}

/* ---- NCCL id exchange ---- */

/* read exactly n bytes from fd, waiting in slices that check the dead-rank word */
static gllm_status read_id(gllm_launch *l, unsigned char *id, size_t n)
{
    const double timeout = gllm_comm_timeout_s(), t0 = gllm_dist_now();
    size_t got = 0;
    while (got < n) {
        if (l->group)
            GLLM_TRY(gllm_shm_group_check(l->group));
        if (gllm_dist_now() - t0 > timeout)
            return gllm_fail(GLLM_ERR_BACKEND, "rank %d: no NCCL id from rank 0 within %g s",
                             l->rank, timeout);
        struct pollfd p = {.fd = l->id_pipe[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        const ssize_t k = read(l->id_pipe[0], id + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return gllm_fail(GLLM_ERR_IO, "rank %d: reading the NCCL id: %s", l->rank,
                             k < 0 ? strerror(errno) : "pipe closed");
        got += (size_t)k;
    }
    return GLLM_OK;
}

static gllm_status share_id_pipe(gllm_launch *l, unsigned char id[GLLM_NCCL_ID_BYTES])
{
    gllm_status s = GLLM_OK;
    if (l->rank == 0) {
        s = gllm_nccl_unique_id(id);
        /* one copy per reader: writes of <= PIPE_BUF bytes are atomic */
        for (int r = 1; s == GLLM_OK && r < l->world; r++)
            if (write(l->id_pipe[1], id, GLLM_NCCL_ID_BYTES) != GLLM_NCCL_ID_BYTES)
                s = gllm_fail(GLLM_ERR_IO, "rank 0: writing the NCCL id: %s", strerror(errno));
    } else {
        s = read_id(l, id, GLLM_NCCL_ID_BYTES);
    }
    close(l->id_pipe[0]);
    close(l->id_pipe[1]);
    l->id_pipe[0] = l->id_pipe[1] = -1;
    return s;
}

gllm_status gllm_rendezvous_file(const char *dir, const char *job, int rank, void *blob,
                                 size_t bytes)
{
    char path[1400], tmp[1500];
    snprintf(path, sizeof path, "%s/gllm-rendezvous-%s", dir, job);
    if (rank == 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
        const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            return gllm_fail(GLLM_ERR_IO, "%s: cannot create: %s (GLLM_RENDEZVOUS must be a "
                             "folder every node can write)", tmp, strerror(errno));
        const bool ok = write(fd, blob, bytes) == (ssize_t)bytes && fsync(fd) == 0;
        close(fd);
        if (!ok || rename(tmp, path) != 0) {
            const int e = errno;
            unlink(tmp);
            return gllm_fail(GLLM_ERR_IO, "%s: cannot write: %s", path, strerror(e));
        }
        return GLLM_OK;
    }
    const double timeout = gllm_comm_timeout_s(), t0 = gllm_dist_now();
    for (;;) {
        const int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            const ssize_t k = read(fd, blob, bytes);
            close(fd);
            if (k == (ssize_t)bytes)
                return GLLM_OK;
        }
        if (gllm_dist_now() - t0 > timeout)
            return gllm_fail(GLLM_ERR_BACKEND, "rank %d: %s did not appear within %g s (is "
                             "GLLM_RENDEZVOUS a folder all nodes share, and rank 0 running?)",
                             rank, path, timeout);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

gllm_status gllm_launch_make_comm(void *ctx, gllm_backend *be, gllm_comm **out)
{
    gllm_launch *l = ctx;
    *out = NULL;
    const bool gpu = be->queue_handle(be, GLLM_QUEUE_COMPUTE) != NULL;
    if (l->kind == GLLM_LAUNCH_FORK && !l->gpus)
        return gllm_comm_shm(l->group, l->rank, be, out);
    if (!gpu) {
        if (l->kind == GLLM_LAUNCH_NONE)
            return gllm_comm_single(be, out);
        if (l->mpi_up)
            return gllm_comm_mpi(be, out);
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "rank %d of %d under %s on the CPU: CPU processes reduce through MPI "
                         "(run under mpirun%s) or shared memory (gtrain --ranks N)", l->rank,
                         l->world, gllm_launcher_name(l->kind),
                         gllm_mpi_available() ? "" : "; this gllm was built without MPI");
    }
    if (l->kind == GLLM_LAUNCH_NONE)
        return gllm_comm_single(be, out);
    unsigned char id[GLLM_NCCL_ID_BYTES];
    if (l->kind == GLLM_LAUNCH_FORK) {
        GLLM_TRY(share_id_pipe(l, id));
    } else if (l->mpi_up) {
        if (l->rank == 0)
            GLLM_TRY(gllm_nccl_unique_id(id));
        GLLM_TRY(gllm_mpi_bcast_bytes(id, sizeof id, 0));
    } else {
        if (!l->rendezvous[0])
            return gllm_fail(GLLM_ERR_INVALID,
                             "rank %d of %d under %s: set GLLM_RENDEZVOUS to a folder every node "
                             "shares (the NCCL id goes through a file there), or run under mpirun",
                             l->rank, l->world, gllm_launcher_name(l->kind));
        if (l->rank == 0)
            GLLM_TRY(gllm_nccl_unique_id(id));
        GLLM_TRY(gllm_rendezvous_file(l->rendezvous, l->job_id, l->rank, id, sizeof id));
    }
    GLLM_TRY(gllm_comm_nccl(be, id, l->rank, l->world, l->group, out));
    if (l->kind != GLLM_LAUNCH_FORK && !l->mpi_up && l->rank == 0) {
        /* every rank has joined (init returned): the id file has served */
        char path[1400];
        snprintf(path, sizeof path, "%s/gllm-rendezvous-%s", l->rendezvous, l->job_id);
        unlink(path);
    }
    return GLLM_OK;
}

void gllm_launch_finish(gllm_launch *l, bool failed)
{
    if (l->mpi_up)
        gllm_mpi_finalize(failed);
    l->mpi_up = false;
    if (l->id_pipe[0] >= 0)
        close(l->id_pipe[0]);
    if (l->id_pipe[1] >= 0)
        close(l->id_pipe[1]);
    l->id_pipe[0] = l->id_pipe[1] = -1;
    gllm_shm_group_free(l->group);
    l->group = NULL;
    free(l->pids);
    l->pids = NULL;
}
