/* Launch without a GPU: rank discovery from the environments of mpirun, srun
 * and torchrun (and the errors that name a bad variable), the backend each
 * worker opens, the NCCL-id file rendezvous across processes, and the
 * shared-memory group's dead-rank word ending a waiting collective at once. */
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gllm/dist.h"
#include "test_util.h"

static const char *k_vars[] = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
    "SLURM_LOCALID", "SLURM_STEP_ID", "SLURM_JOB_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK",
    "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "GLLM_JOB_ID"};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof k_vars / sizeof k_vars[0]; i++)
        unsetenv(k_vars[i]);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void)
{
    gllm_launch l;
    clear_env();
    TEST_CASE("no launcher: one process; --ranks/--gpus fork")
    {
        CHECK_OK(gllm_launch_init(&l, 0, false));
        CHECK(l.kind == GLLM_LAUNCH_NONE && l.rank == 0 && l.world == 1);
        CHECK_OK(gllm_launch_init(&l, 1, false));
        CHECK(l.kind == GLLM_LAUNCH_NONE); /* --ranks 1 is a plain run */
        CHECK_OK(gllm_launch_init(&l, 1, true));
        CHECK(l.kind == GLLM_LAUNCH_FORK && l.world == 1 && l.gpus); /* --gpus 1: the GPU path */
        CHECK_OK(gllm_launch_init(&l, 4, false));
        CHECK(l.kind == GLLM_LAUNCH_FORK && l.world == 4 && l.local_world == 4);
        CHECK_ERR(gllm_launch_init(&l, 300, false), GLLM_ERR_INVALID, "at most 256");
    }
    TEST_CASE("mpirun: OMPI_COMM_WORLD_*")
    {
        setenv("OMPI_COMM_WORLD_RANK", "5", 1);
        setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
        setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
        setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
        setenv("SLURM_PROCID", "0", 1); /* mpirun inside a Slurm job: MPI's variables win */
        setenv("SLURM_STEP_ID", "0", 1);
        CHECK_OK(gllm_launch_init(&l, 0, false));
        CHECK(l.kind == GLLM_LAUNCH_MPI && l.rank == 5 && l.world == 8 && l.local_rank == 1 &&
              l.local_world == 4);
        char be[32] = "cuda";
        CHECK_OK(gllm_launch_backend(&l, be, sizeof be));
        CHECK(strcmp(be, "cuda:1") == 0); /* its GPU from its local rank */
        snprintf(be, sizeof be, "auto");
        CHECK_OK(gllm_launch_backend(&l, be, sizeof be));
        CHECK(strcmp(be, "auto:1") == 0);
        CHECK_ERR(gllm_launch_init(&l, 2, true), GLLM_ERR_INVALID, "rank 5 of 8 under mpirun");
        setenv("OMPI_COMM_WORLD_RANK", "8", 1);
        CHECK_ERR(gllm_launch_init(&l, 0, false), GLLM_ERR_INVALID, "OMPI_COMM_WORLD_RANK=8");
        setenv("OMPI_COMM_WORLD_RANK", "x1", 1);
        CHECK_ERR(gllm_launch_init(&l, 0, false), GLLM_ERR_INVALID, "OMPI_COMM_WORLD_RANK");
        unsetenv("OMPI_COMM_WORLD_RANK");
        CHECK_ERR(gllm_launch_init(&l, 0, false), GLLM_ERR_INVALID,
                  "OMPI_COMM_WORLD_SIZE is set but OMPI_COMM_WORLD_RANK is not");
        clear_env();
    }
    TEST_CASE("srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID")
    {
        setenv("SLURM_PROCID", "3", 1);
        setenv("SLURM_NTASKS", "16", 1); /* the allocation's; the step's count wins */
        setenv("SLURM_STEP_NUM_TASKS", "4", 1);
        setenv("SLURM_LOCALID", "1", 1);
        setenv("SLURM_JOB_ID", "777", 1);
        /* in the batch script (no step yet) this is not a launch */
        CHECK_OK(gllm_launch_init(&l, 0, false));
        CHECK(l.kind == GLLM_LAUNCH_NONE && l.world == 1);
        setenv("SLURM_STEP_ID", "2", 1);
        CHECK_OK(gllm_launch_init(&l, 0, false));
        CHECK(l.kind == GLLM_LAUNCH_SLURM && l.rank == 3 && l.world == 4 && l.local_rank == 1);
        CHECK(strcmp(l.job_id, "slurm-777.2") == 0);
        clear_env();
    }
    TEST_CASE("torchrun: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE")
    {
        setenv("RANK", "6", 1);
        setenv("WORLD_SIZE", "16", 1);
        setenv("LOCAL_RANK", "6", 1);
        setenv("LOCAL_WORLD_SIZE", "8", 1);
        setenv("MASTER_ADDR", "node0", 1);
        setenv("MASTER_PORT", "29500", 1);
        CHECK_OK(gllm_launch_init(&l, 0, true));
        CHECK(l.kind == GLLM_LAUNCH_TORCHRUN && l.rank == 6 && l.world == 16 &&
              l.local_rank == 6 && l.local_world == 8);
        CHECK(strcmp(l.job_id, "node0-29500") == 0);
        char be[32] = "cuda";
        CHECK_OK(gllm_launch_backend(&l, be, sizeof be));
        CHECK(strcmp(be, "cuda:6") == 0);
        setenv("CUDA_VISIBLE_DEVICES", "3", 1); /* the launcher gave this process one GPU */
        snprintf(be, sizeof be, "cuda");
        CHECK_OK(gllm_launch_backend(&l, be, sizeof be));
        CHECK(strcmp(be, "cuda:0") == 0);
        setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7", 1);
        snprintf(be, sizeof be, "cuda");
        CHECK_OK(gllm_launch_backend(&l, be, sizeof be));
        CHECK(strcmp(be, "cuda:6") == 0);
        unsetenv("CUDA_VISIBLE_DEVICES");
        setenv("LOCAL_RANK", "9", 1);
        CHECK_ERR(gllm_launch_init(&l, 0, true), GLLM_ERR_INVALID, "LOCAL_RANK=9");
        unsetenv("WORLD_SIZE");
        CHECK_ERR(gllm_launch_init(&l, 0, true), GLLM_ERR_INVALID, "WORLD_SIZE");
        clear_env();
    }
    TEST_CASE("backends of forked workers")
    {
        char be[32] = "auto";
        CHECK_OK(gllm_launch_init(&l, 2, false));
        CHECK_OK(gllm_launch_backend(&l, be, sizeof be));
        CHECK(strcmp(be, "cpu") == 0); /* --ranks: CPU processes */
        snprintf(be, sizeof be, "cuda");
        CHECK_ERR(gllm_launch_backend(&l, be, sizeof be), GLLM_ERR_INVALID, "--gpus");
        CHECK_OK(gllm_launch_init(&l, 2, true));
        snprintf(be, sizeof be, "cpu");
        CHECK_ERR(gllm_launch_backend(&l, be, sizeof be), GLLM_ERR_INVALID, "--ranks");
    }
    char dir[] = "/tmp/gllm_test_launch_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    TEST_CASE("file rendezvous: 4 processes get rank 0's blob")
    {
        setenv("GLLM_COMM_TIMEOUT", "20", 1);
        pid_t pid[4];
        for (int r = 3; r >= 0; r--) { /* readers first: they must wait for the file */
            fflush(stdout);
            pid[r] = fork();
            if (pid[r] == 0) {
                unsigned char blob[GLLM_NCCL_ID_BYTES];
                for (int i = 0; i < GLLM_NCCL_ID_BYTES; i++)
                    blob[i] = r == 0 ? (unsigned char)(i * 7 + 3) : 0;
                if (r == 0)
                    usleep(300 * 1000);
                if (gllm_rendezvous_file(dir, "job-1", r, blob, sizeof blob) != GLLM_OK) {
                    printf("rank %d: %s\n", r, gllm_last_error());
                    _exit(1);
                }
                for (int i = 0; i < GLLM_NCCL_ID_BYTES; i++)
                    if (blob[i] != (unsigned char)(i * 7 + 3))
                        _exit(2);
                _exit(0);
            }
        }
        for (int r = 0; r < 4; r++) {
            int st = 0;
            waitpid(pid[r], &st, 0);
            CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank %d status 0x%x", r, st);
        }
        setenv("GLLM_COMM_TIMEOUT", "1", 1);
        unsigned char blob[8];
        CHECK_ERR(gllm_rendezvous_file(dir, "never-written", 1, blob, sizeof blob),
                  GLLM_ERR_BACKEND, "did not appear within 1 s");
        unsetenv("GLLM_COMM_TIMEOUT");
    }
    TEST_CASE("a rank marked dead ends the others' collective at once, naming it")
    {
        gllm_shm_group *g;
        CHECK_OK(gllm_shm_group_create(3, 256, &g));
        pid_t pid[2];
        for (int r = 0; r < 2; r++) { /* ranks 0 and 1 wait for rank 2, which never comes */
            fflush(stdout);
            pid[r] = fork();
            if (pid[r] == 0) {
                gllm_backend *be;
                gllm_comm *c;
                if (gllm_backend_cpu_create(1, &be) != GLLM_OK ||
                    gllm_comm_shm(g, r, be, &c) != GLLM_OK)
                    _exit(3);
                float x[100] = {1};
                const gllm_status s = c->all_reduce(c, x, 100, GLLM_F32, GLLM_REDUCE_SUM);
                printf("rank %d: %s\n", r, gllm_last_error());
                fflush(stdout);
                _exit(s != GLLM_OK && strstr(gllm_last_error(), "rank 2 died (killed by signal 9")
                          ? 0 : 4);
            }
        }
        usleep(300 * 1000);
        const double t0 = now_s();
        gllm_shm_group_mark_dead(g, 2, SIGKILL); /* as wait() reports a kill -9 */
        for (int r = 0; r < 2; r++) {
            int st = 0;
            waitpid(pid[r], &st, 0);
            CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank %d status 0x%x", r, st);
        }
        const double dt = now_s() - t0;
        printf("waiting ranks stopped %.3f s after the report\n", dt);
        CHECK(dt < 2.0);
        gllm_shm_group_free(g);
    }
    TEST_CASE("a collective that no rank completes times out")
    {
        gllm_shm_group *g;
        gllm_backend *be;
        gllm_comm *c;
        CHECK_OK(gllm_shm_group_create(2, 256, &g));
        CHECK_OK(gllm_backend_cpu_create(1, &be));
        CHECK_OK(gllm_comm_shm(g, 0, be, &c));
        setenv("GLLM_COMM_TIMEOUT", "0.5", 1);
        const double t0 = now_s();
        CHECK_ERR(c->barrier(c), GLLM_ERR_BACKEND, "no rank-wide progress in 0.5 s (1 of 2");
        CHECK(now_s() - t0 < 2.0);
        c->destroy(c);
        gllm_shm_group_free(g); /* a failed collective leaves the group unusable */
        CHECK_OK(gllm_shm_group_create(2, 256, &g));
        CHECK_OK(gllm_comm_shm(g, 0, be, &c));
        setenv("GLLM_COMM_TIMEOUT", "100", 1);
        c->timeout_s = 0.3; /* the caller's own limit for one long or short wait */
        const double t1 = now_s();
        CHECK_ERR(c->barrier(c), GLLM_ERR_BACKEND, "no rank-wide progress in 0.3 s");
        CHECK(now_s() - t1 < 2.0);
        unsetenv("GLLM_COMM_TIMEOUT");
        c->destroy(c);
        be->destroy(be);
        gllm_shm_group_free(g);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", dir);
    return test_summary();
}
