/* The NCCL communicator: ranks on GPUs (gtrain --gpus N, or one process per
 * GPU under mpirun/srun/torchrun), buffers on the CUDA backend's device.
 *
 * Collectives run on the backend's comm queue (a second CUDA stream): a start
 * records an event on the compute stream, makes the comm stream wait for it
 * and enqueues the NCCL call, so the gradient bucket of layer l is reduced
 * while backward computes layer l-1. wait() makes the compute stream wait for
 * the comm stream, then the host polls until the work is done: that poll is
 * where a dead rank (the launcher's word, when there is a launcher on this
 * node), an asynchronous NCCL error or the timeout end the run with a message
 * instead of a hang (the communicator is aborted so no kernel stays stuck).
 * The communicator is created non-blocking for the same reason: a rank that
 * never joins makes the others time out in init. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"
#include "gllm/comm.h"

#ifdef GLLM_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

_Static_assert(GLLM_NCCL_ID_BYTES == sizeof(ncclUniqueId), "NCCL unique id size");

int gllm_nccl_version(void)
{
    int v = 0;
    return ncclGetVersion(&v) == ncclSuccess ? v : 0;
}

gllm_status gllm_nccl_unique_id(unsigned char id[GLLM_NCCL_ID_BYTES])
{
    ncclUniqueId u;
    const ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess)
        return gllm_fail(GLLM_ERR_BACKEND, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    memcpy(id, &u, sizeof u);
    return GLLM_OK;
}

typedef struct nccl_ctx {
    ncclComm_t comm;
    bool aborted;
    cudaStream_t comm_stream;
    gllm_event *ready, *done;
    gllm_shm_group *watch; /* the launcher's word on dead ranks, or NULL */
    const gllm_comm *self; /* for its timeout */
    int started;           /* collectives started since the last wait */
    float *scratch;        /* one float on the device, for barrier */
} nccl_ctx;

static gllm_status nccl_err(nccl_ctx *x, ncclResult_t r, const char *what)
{
    return gllm_fail(GLLM_ERR_BACKEND, "NCCL %s: %s%s%s%s", what, ncclGetErrorString(r),
                     x && x->comm ? " (" : "", x && x->comm ? ncclGetLastError(x->comm) : "",
                     x && x->comm ? ")" : "");
}

/* Poll until the communicator has no call in progress (non-blocking mode). */
static gllm_status settle(nccl_ctx *x, ncclResult_t r, const char *what)
{
    const double timeout = gllm_comm_timeout_of(x->self), t0 = gllm_dist_now();
    while (r == ncclInProgress) {
        if (x->watch && gllm_shm_group_check(x->watch) != GLLM_OK)
            goto abort;
        if (gllm_dist_now() - t0 > timeout) {
            gllm_fail(GLLM_ERR_BACKEND, "NCCL %s: not complete after %g s (a rank died or "
                      "stalls; GLLM_COMM_TIMEOUT sets the limit)", what, timeout);
            goto abort;
        }
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
        if (ncclCommGetAsyncError(x->comm, &r) != ncclSuccess)
            break;
    }
    if (r != ncclSuccess)
        return nccl_err(x, r, what);
    return GLLM_OK;
abort: {
    const gllm_status s = GLLM_ERR_BACKEND; /* the message is already set */
    ncclCommAbort(x->comm);
    x->aborted = true;
    return s;
}
}

static ncclDataType_t nccl_type(gllm_dtype t)
{
    return t == GLLM_BF16 ? ncclBfloat16 : ncclFloat32;
}

static gllm_status check_type(const char *op, gllm_dtype t)
{
    if (t != GLLM_F32 && t != GLLM_BF16)
        return gllm_fail(GLLM_ERR_INVALID, "nccl comm %s: dtype %s (supported: F32, BF16)", op,
                         gllm_dtype_name(t));
    return GLLM_OK;
}

static ncclRedOp_t nccl_op(gllm_reduce_op op)
{
    return op == GLLM_REDUCE_MAX ? ncclMax : op == GLLM_REDUCE_AVG ? ncclAvg : ncclSum;
}

/* the comm stream waits for what is queued on the compute stream */
static gllm_status order_after_compute(gllm_comm *c)
{
    nccl_ctx *x = c->ctx;
    if (x->aborted)
        return gllm_fail(GLLM_ERR_BACKEND, "NCCL communicator was aborted after an earlier error");
    GLLM_TRY(c->be->event_record(c->be, x->ready, GLLM_QUEUE_COMPUTE));
    return c->be->queue_wait(c->be, GLLM_QUEUE_COMM, x->ready);
}

static gllm_status nccl_all_reduce_start(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                         gllm_reduce_op op)
{
    nccl_ctx *x = c->ctx;
    GLLM_TRY(check_type("all_reduce", t));
    GLLM_TRY(order_after_compute(c));
    GLLM_TRY(settle(x, ncclAllReduce(buf, buf, n, nccl_type(t), nccl_op(op), x->comm,
                                     x->comm_stream), "all_reduce"));
    x->started++;
    return GLLM_OK;
}

static gllm_status nccl_reduce_scatter_start(gllm_comm *c, void *out, const void *in, size_t n,
                                             gllm_dtype t, gllm_reduce_op op)
{
    nccl_ctx *x = c->ctx;
    GLLM_TRY(check_type("reduce_scatter", t));
    GLLM_TRY(order_after_compute(c));
    /* in place when out == in + rank * n, as NCCL allows */
    GLLM_TRY(settle(x, ncclReduceScatter(in, out, n, nccl_type(t), nccl_op(op), x->comm,
                                         x->comm_stream), "reduce_scatter"));
    x->started++;
    return GLLM_OK;
}

/* The compute stream waits for the comm stream; the host polls the same
 * event with the dead-rank word, NCCL's async error and the timeout. */
static gllm_status nccl_wait(gllm_comm *c)
{
    nccl_ctx *x = c->ctx;
    gllm_backend *be = c->be;
    if (x->aborted)
        return gllm_fail(GLLM_ERR_BACKEND, "NCCL communicator was aborted after an earlier error");
    if (!x->started)
        return GLLM_OK;
    x->started = 0;
    GLLM_TRY(be->event_record(be, x->done, GLLM_QUEUE_COMM));
    GLLM_TRY(be->queue_wait(be, GLLM_QUEUE_COMPUTE, x->done));
    const double timeout = gllm_comm_timeout_of(c), t0 = gllm_dist_now();
    for (long spins = 0;; spins++) {
        bool done = false;
        GLLM_TRY(be->event_query(be, x->done, &done));
        if (done)
            return GLLM_OK;
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(x->comm, &async);
        gllm_status s = GLLM_OK;
        if (async != ncclSuccess && async != ncclInProgress)
            s = nccl_err(x, async, "collective");
        else if (x->watch)
            s = gllm_shm_group_check(x->watch);
        if (s == GLLM_OK && gllm_dist_now() - t0 > timeout)
            s = gllm_fail(GLLM_ERR_BACKEND, "NCCL collectives of rank %d not complete after "
                          "%g s (a rank died or stalls; GLLM_COMM_TIMEOUT sets the limit)",
                          c->rank, timeout);
        if (s != GLLM_OK) {
            ncclCommAbort(x->comm);
            x->aborted = true;
            return s;
        }
        if (spins > 1000) {
            struct timespec ts = {0, 20 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static gllm_status nccl_all_reduce(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                   gllm_reduce_op op)
{
    GLLM_TRY(nccl_all_reduce_start(c, buf, n, t, op));
    return nccl_wait(c);
}

static gllm_status nccl_reduce_scatter(gllm_comm *c, void *out, const void *in, size_t n,
                                       gllm_dtype t, gllm_reduce_op op)
{
    GLLM_TRY(nccl_reduce_scatter_start(c, out, in, n, t, op));
    return nccl_wait(c);
}

static gllm_status nccl_all_gather_start(gllm_comm *c, void *out, const void *in, size_t n,
                                         gllm_dtype t)
{
    nccl_ctx *x = c->ctx;
    GLLM_TRY(check_type("all_gather", t));
    GLLM_TRY(order_after_compute(c));
    /* in place when in == out + rank * n, as NCCL allows */
    GLLM_TRY(settle(x, ncclAllGather(in, out, n, nccl_type(t), x->comm, x->comm_stream),
                    "all_gather"));
    x->started++;
    return GLLM_OK;
}

static gllm_status nccl_all_gather(gllm_comm *c, void *out, const void *in, size_t n,
                                   gllm_dtype t)
{
    GLLM_TRY(nccl_all_gather_start(c, out, in, n, t));
    return nccl_wait(c);
}

static gllm_status nccl_broadcast(gllm_comm *c, void *buf, size_t bytes, int root)
{
    nccl_ctx *x = c->ctx;
    if (root < 0 || root >= c->world)
        return gllm_fail(GLLM_ERR_INVALID, "nccl comm broadcast: root %d of %d ranks", root,
                         c->world);
    GLLM_TRY(order_after_compute(c));
    GLLM_TRY(settle(x, ncclBroadcast(buf, buf, bytes, ncclUint8, root, x->comm, x->comm_stream),
                    "broadcast"));
    x->started++;
    return nccl_wait(c);
}

static gllm_status nccl_barrier(gllm_comm *c)
{
    nccl_ctx *x = c->ctx;
    return nccl_all_reduce(c, x->scratch, 1, GLLM_F32, GLLM_REDUCE_SUM);
}

static void nccl_destroy(gllm_comm *c)
{
    nccl_ctx *x = c->ctx;
    if (x) {
        if (x->comm && !x->aborted) {
            ncclResult_t r = ncclCommFinalize(x->comm);
            if (r == ncclInProgress) {
                if (settle(x, r, "finalize") != GLLM_OK)
                    gllm_clear_error();
            }
            if (!x->aborted)
                ncclCommDestroy(x->comm);
        }
        if (x->ready)
            c->be->event_destroy(c->be, x->ready);
        if (x->done)
            c->be->event_destroy(c->be, x->done);
        if (x->scratch)
            c->be->free(c->be, x->scratch);
    }
    free(x);
    free(c);
}

gllm_status gllm_comm_nccl(gllm_backend *be, const unsigned char id[GLLM_NCCL_ID_BYTES],
                           int rank, int world, gllm_shm_group *watch, gllm_comm **out)
{
    *out = NULL;
    void *stream = be->queue_handle(be, GLLM_QUEUE_COMM);
    if (!stream)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "nccl comm needs a CUDA backend (got '%s'); CPU ranks use --ranks or "
                         "mpirun", be->name);
    if (rank < 0 || rank >= world)
        return gllm_fail(GLLM_ERR_INVALID, "nccl comm: rank %d of %d", rank, world);
    gllm_comm *c = gllm_calloc(1, sizeof *c, "communicator");
    nccl_ctx *x = gllm_calloc(1, sizeof *x, "communicator");
    if (!c || !x) {
        free(c);
        free(x);
        return GLLM_ERR_OOM;
    }
    x->comm_stream = (cudaStream_t)stream;
    x->watch = watch;
    x->self = c;
    *c = (gllm_comm){.name = "nccl", .rank = rank, .world = world, .be = be, .ctx = x,
                     .all_reduce = nccl_all_reduce, .reduce_scatter = nccl_reduce_scatter,
                     .all_gather = nccl_all_gather, .broadcast = nccl_broadcast,
                     .barrier = nccl_barrier, .all_reduce_start = nccl_all_reduce_start,
                     .reduce_scatter_start = nccl_reduce_scatter_start,
                     .all_gather_start = nccl_all_gather_start, .wait = nccl_wait,
                     .destroy = nccl_destroy};
    gllm_status s = be->event_create(be, &x->ready);
    if (s == GLLM_OK)
        s = be->event_create(be, &x->done);
    if (s == GLLM_OK)
        s = be->alloc(be, sizeof(float), "barrier scalar", (void **)&x->scratch);
    if (s == GLLM_OK)
        s = be->memset0(be, x->scratch, sizeof(float));
    if (s == GLLM_OK) {
        ncclUniqueId u;
        memcpy(&u, id, sizeof u);
        ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
        cfg.blocking = 0; /* init polls, so a rank that never joins times out */
        ncclResult_t r = ncclCommInitRankConfig(&x->comm, world, u, rank, &cfg);
        if (r == ncclInProgress || r == ncclSuccess) {
            if (ncclCommGetAsyncError(x->comm, &r) != ncclSuccess)
                r = ncclInternalError;
            s = settle(x, r, "init");
        } else {
            s = nccl_err(x, r, "init");
            x->comm = NULL;
        }
    }
    if (s != GLLM_OK) {
        if (x->comm && !x->aborted) {
            ncclCommAbort(x->comm);
            x->aborted = true;
        }
        nccl_destroy(c);
        return s;
    }
    *out = c;
    return GLLM_OK;
}

#else /* built without NCCL */

int gllm_nccl_version(void) { return 0; }

static gllm_status no_nccl(void)
{
    return gllm_fail(GLLM_ERR_UNSUPPORTED,
                     "this gllm was built without NCCL (it comes with the CUDA toolkit: "
                     "configure with -DGLLM_CUDA=ON)");
}

gllm_status gllm_nccl_unique_id(unsigned char id[GLLM_NCCL_ID_BYTES])
{
    memset(id, 0, GLLM_NCCL_ID_BYTES);
    return no_nccl();
}

gllm_status gllm_comm_nccl(gllm_backend *be, const unsigned char id[GLLM_NCCL_ID_BYTES],
                           int rank, int world, gllm_shm_group *watch, gllm_comm **out)
{
    (void)be, (void)id, (void)rank, (void)world, (void)watch;
    *out = NULL;
    return no_nccl();
}
#endif
