/* The shared-memory communicator across real processes: 3 forked ranks run
 * every collective on buffers larger than a slot (so in chunks) and check the
 * results bit for bit against the reduction in rank order. */
#include <sys/wait.h>
#include <unistd.h>

#include "gllm/dist.h"
#include "test_util.h"

#define WORLD 3
#define N 1000 /* floats per rank; slots of 256 bytes make 16 chunks */

static float value(int rank, int i) { return sinf((float)(rank * 1000 + i)) * (float)(rank + 1); }

static int run_rank(gllm_shm_group *g, int rank)
{
    gllm_backend *be;
    gllm_comm *c;
    if (gllm_backend_cpu_create(1, &be) != GLLM_OK || gllm_comm_shm(g, rank, be, &c) != GLLM_OK) {
        printf("rank %d: %s\n", rank, gllm_last_error());
        return 1;
    }
    static float x[WORLD * N], want[WORLD * N], got[WORLD * N];
    TEST_CASE("all_reduce sum, avg and max in rank order")
    {
        for (int op = GLLM_REDUCE_SUM; op <= GLLM_REDUCE_MAX; op++) {
            for (int i = 0; i < N; i++) {
                x[i] = value(rank, i);
                float acc = value(0, i);
                for (int r = 1; r < WORLD; r++)
                    acc = op == GLLM_REDUCE_MAX ? fmaxf(acc, value(r, i)) : acc + value(r, i);
                want[i] = op == GLLM_REDUCE_AVG ? acc / WORLD : acc;
            }
            CHECK_OK(c->all_reduce(c, x, N, GLLM_F32, (gllm_reduce_op)op));
            CHECK(memcmp(x, want, N * sizeof(float)) == 0);
        }
    }
    TEST_CASE("reduce_scatter gives each rank its slice of the sum")
    {
        for (int i = 0; i < WORLD * N; i++)
            x[i] = value(rank, i);
        CHECK_OK(c->reduce_scatter(c, got, x, N, GLLM_F32, GLLM_REDUCE_SUM));
        for (int i = 0; i < N; i++) {
            float acc = value(0, rank * N + i);
            for (int r = 1; r < WORLD; r++)
                acc += value(r, rank * N + i);
            want[i] = acc;
        }
        CHECK(memcmp(got, want, N * sizeof(float)) == 0);
    }
    TEST_CASE("all_gather and broadcast")
    {
        for (int i = 0; i < N; i++)
            x[i] = value(rank, i);
        CHECK_OK(c->all_gather(c, got, x, N, GLLM_F32));
        for (int r = 0; r < WORLD; r++)
            for (int i = 0; i < N; i++)
                want[r * N + i] = value(r, i);
        CHECK(memcmp(got, want, WORLD * N * sizeof(float)) == 0);
        for (int i = 0; i < N; i++)
            x[i] = value(rank, i);
        CHECK_OK(c->broadcast(c, x, N * sizeof(float), 2));
        for (int i = 0; i < N; i++)
            want[i] = value(2, i);
        CHECK(memcmp(x, want, N * sizeof(float)) == 0);
        CHECK_OK(c->barrier(c));
        CHECK_ERR(c->broadcast(c, x, 4, WORLD), GLLM_ERR_INVALID, "root 3");
        CHECK_ERR(c->all_reduce(c, x, N, GLLM_BF16, GLLM_REDUCE_SUM), GLLM_ERR_INVALID, "BF16");
    }
    c->destroy(c);
    be->destroy(be);
    return test_summary();
}

int main(void)
{
    gllm_shm_group *g;
    if (gllm_shm_group_create(WORLD, 256, &g) != GLLM_OK) {
        printf("group: %s\n", gllm_last_error());
        return 1;
    }
    pid_t pid[WORLD];
    for (int r = 0; r < WORLD; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            const int rc = run_rank(g, r);
            fflush(stdout);
            _exit(rc);
        }
    }
    int failed = 0;
    for (int r = 0; r < WORLD; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        const int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        printf("rank %d: %s\n", r, ok ? "ok" : "FAILED");
        failed += !ok;
    }
    gllm_shm_group_free(g);
    printf("%d ranks, %d failed\n", WORLD, failed);
    return failed ? 1 : 0;
}
