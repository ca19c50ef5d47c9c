/* The NCCL communicator: compiled and linked in CUDA builds (this checks the
 * library answers), and on a machine with a GPU a one-rank job through it:
 * every collective, in place where allowed, and a non-blocking start with
 * wait. (Two ranks need two GPUs: NCCL does not put two ranks on one. The
 * multi-rank code path above the communicator runs in CI under MPI and
 * shared memory, tests/train/test_train_launch.c.) */
#include "gllm/dist.h"
#include "test_util.h"

int main(void)
{
    const int v = gllm_nccl_version();
    if (v == 0)
        test_skip("this build has no NCCL (a CPU build; -DGLLM_CUDA=ON builds it)");
    printf("NCCL linked: version code %d\n", v);
    CHECK(v >= 21400); /* ncclAvg (2.10) and the non-blocking ncclConfig_t init (2.14) */
    unsigned char id[GLLM_NCCL_ID_BYTES];
    gllm_backend *be;
    if (gllm_backend_cuda_create(0, &be) != GLLM_OK) {
        printf("%s\n", gllm_last_error());
        if (test_summary() != 0)
            return 1;
        test_skip("NCCL compiled and linked; no GPU here to run it on");
    }
    gllm_comm *c = NULL;
    TEST_CASE("one rank through NCCL")
    {
        CHECK_OK(gllm_nccl_unique_id(id));
        CHECK_OK(gllm_comm_nccl(be, id, 0, 1, NULL, &c));
    }
    if (!c)
        return test_summary();
    enum { N = 4099 };
    static float x[N], y[N];
    test_fill(x, N, 1.0f);
    float *d = NULL, *e = NULL;
    CHECK_OK(be->alloc(be, N * sizeof(float), "x", (void **)&d));
    CHECK_OK(be->alloc(be, N * sizeof(float), "y", (void **)&e));
    TEST_CASE("collectives of one rank leave the data as it is")
    {
        for (int op = GLLM_REDUCE_SUM; op <= GLLM_REDUCE_MAX; op++) {
            CHECK_OK(be->upload(be, d, x, sizeof x));
            CHECK_OK(c->all_reduce(c, d, N, GLLM_F32, (gllm_reduce_op)op));
            CHECK_OK(be->download(be, y, d, sizeof y));
            CHECK(memcmp(x, y, sizeof x) == 0);
        }
        CHECK_OK(be->upload(be, d, x, sizeof x));
        CHECK_OK(c->reduce_scatter(c, d, d, N, GLLM_F32, GLLM_REDUCE_SUM)); /* in place */
        CHECK_OK(c->all_gather(c, e, d, N, GLLM_F32));
        CHECK_OK(c->broadcast(c, e, sizeof x, 0));
        CHECK_OK(c->barrier(c));
        CHECK_OK(be->download(be, y, e, sizeof y));
        CHECK(memcmp(x, y, sizeof x) == 0);
    }
    TEST_CASE("a start on the comm stream, then wait, orders with compute")
    {
        CHECK_OK(be->upload(be, d, x, sizeof x));
        CHECK_OK(gllm_comm_all_reduce_start(c, d, N, GLLM_F32, GLLM_REDUCE_SUM));
        CHECK_OK(gllm_comm_wait(c));
        CHECK_OK(be->add(be, e, d, d, N)); /* compute after the wait sees the result */
        CHECK_OK(be->download(be, y, e, sizeof y));
        double worst = 0;
        for (int i = 0; i < N; i++)
            worst = fmax(worst, fabs(y[i] - 2.0 * x[i]));
        CHECK(worst == 0);
    }
    be->free(be, d);
    be->free(be, e);
    c->destroy(c);
    be->destroy(be);
    return test_summary();
}
