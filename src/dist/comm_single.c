/* The one-rank communicator: what the trainer runs with when there is no
 * data parallelism. Reductions over one rank leave the data as it is. */
#include <stdlib.h>

#include "gllm/comm.h"

static gllm_status check_type(const char *op, gllm_dtype t)
{
    if (t != GLLM_F32 && t != GLLM_BF16)
        return gllm_fail(GLLM_ERR_INVALID, "comm %s: dtype %s (supported: F32, BF16)", op,
                         gllm_dtype_name(t));
    return GLLM_OK;
}

static gllm_status single_all_reduce(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                     gllm_reduce_op op)
{
    (void)c, (void)buf, (void)n, (void)op;
    return check_type("all_reduce", t);
}

static gllm_status single_reduce_scatter(gllm_comm *c, void *out, const void *in, size_t n,
                                         gllm_dtype t, gllm_reduce_op op)
{
    (void)op;
    GLLM_TRY(check_type("reduce_scatter", t));
    return out == in ? GLLM_OK : c->be->copy(c->be, out, in, n * gllm_dtype_size(t));
}

static gllm_status single_all_gather(gllm_comm *c, void *out, const void *in, size_t n,
                                     gllm_dtype t)
{
    GLLM_TRY(check_type("all_gather", t));
    return out == in ? GLLM_OK : c->be->copy(c->be, out, in, n * gllm_dtype_size(t));
}

static gllm_status single_broadcast(gllm_comm *c, void *buf, size_t bytes, int root)
{
    (void)buf, (void)bytes;
    if (root != 0)
        return gllm_fail(GLLM_ERR_INVALID, "comm broadcast: root %d of a 1-rank job", root);
    return c->be->sync(c->be);
}

static gllm_status single_barrier(gllm_comm *c) { return c->be->sync(c->be); }

static void single_destroy(gllm_comm *c) { free(c); }

gllm_status gllm_comm_single(gllm_backend *be, gllm_comm **out)
{
    *out = NULL;
    gllm_comm *c = gllm_calloc(1, sizeof *c, "communicator");
    if (!c)
        return GLLM_ERR_OOM;
    *c = (gllm_comm){.name = "single", .rank = 0, .world = 1, .be = be,
                     .all_reduce = single_all_reduce, .reduce_scatter = single_reduce_scatter,
                     .all_gather = single_all_gather, .broadcast = single_broadcast,
                     .barrier = single_barrier, .destroy = single_destroy};
    *out = c;
    return GLLM_OK;
}
