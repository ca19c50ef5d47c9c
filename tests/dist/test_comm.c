/* The one-rank communicator: identities and copies on device buffers, and its
 * argument errors. */
#include "gllm/comm.h"
#include "test_util.h"

int main(void)
{
    test_seed();
    gllm_backend *be;
    gllm_comm *c;
    if (gllm_backend_cpu_create(1, &be) != GLLM_OK || gllm_comm_single(be, &c) != GLLM_OK)
        return 1;
    float x[37], y[37], z[37];
    test_fill(x, 37, 1.0f);
    TEST_CASE("one rank")
    {
        CHECK(c->rank == 0 && c->world == 1);
        memcpy(y, x, sizeof x);
        CHECK_OK(c->all_reduce(c, y, 37, GLLM_F32, GLLM_REDUCE_AVG));
        CHECK(memcmp(x, y, sizeof x) == 0);
        memset(z, 0, sizeof z);
        CHECK_OK(c->reduce_scatter(c, z, x, 37, GLLM_F32, GLLM_REDUCE_SUM));
        CHECK(memcmp(x, z, sizeof x) == 0);
        memset(z, 0, sizeof z);
        CHECK_OK(c->all_gather(c, z, x, 37, GLLM_F32));
        CHECK(memcmp(x, z, sizeof x) == 0);
        CHECK_OK(c->broadcast(c, y, sizeof y, 0));
        CHECK_OK(c->barrier(c));
    }
    TEST_CASE("errors")
    {
        CHECK_ERR(c->broadcast(c, y, sizeof y, 1), GLLM_ERR_INVALID, "root 1");
        CHECK_ERR(c->all_reduce(c, y, 37, GLLM_I32, GLLM_REDUCE_SUM), GLLM_ERR_INVALID, "I32");
    }
    c->destroy(c);
    be->destroy(be);
    return test_summary();
}
