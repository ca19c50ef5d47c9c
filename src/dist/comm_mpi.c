/* The MPI communicator (OpenMPI or any MPI-3 library): ranks started by
 * mpirun/srun, on one machine or many, on the CPU backend (host buffers).
 * It is how the multi-process and multi-node code path runs in CI without
 * GPUs, and how the NCCL id reaches the ranks under mpirun.
 *
 * Every collective is MPI's non-blocking one polled with a deadline, so a
 * rank that dies or stalls ends the wait with an error rather than a hang;
 * the process then aborts the MPI job (gllm_mpi_finalize) and mpirun stops
 * the others. Starts (all_reduce_start, reduce_scatter_start) return at once
 * and wait() completes them: MPI progresses them while backward runs. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"
#include "gllm/comm.h"

#ifdef GLLM_HAVE_MPI
#include <mpi.h>

bool gllm_mpi_available(void) { return true; }

gllm_status gllm_mpi_init(int *rank, int *world)
{
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return gllm_fail(GLLM_ERR_BACKEND, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, world);
    return GLLM_OK;
}

void gllm_mpi_finalize(bool failed)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return;
    if (failed) /* the other ranks may be waiting in a collective: end the job */
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
}

typedef struct pending {
    MPI_Request req;
    float *result;   /* where the result lands (tmp for an out-of-place reduce-scatter) */
    float *dst;      /* copied here after completion when != result */
    size_t n;
    bool avg;        /* divide by world after the sum */
    bool own_result; /* result is a temporary to free */
    const char *what;
} pending;

typedef struct mpi_ctx {
    pending *p;
    int n, cap;
} mpi_ctx;

static gllm_status check_args(const char *op, gllm_dtype t, size_t n)
{
    if (t != GLLM_F32)
        return gllm_fail(GLLM_ERR_INVALID,
                         "mpi comm %s: dtype %s (the MPI communicator serves the CPU backend's "
                         "F32 buffers; GPUs use NCCL)", op, gllm_dtype_name(t));
    if (n > INT_MAX)
        return gllm_fail(GLLM_ERR_INVALID, "mpi comm %s: %zu elements exceed MPI's int count",
                         op, n);
    return GLLM_OK;
}

static MPI_Op mpi_op(gllm_reduce_op op) { return op == GLLM_REDUCE_MAX ? MPI_MAX : MPI_SUM; }

static gllm_status push(gllm_comm *c, pending p)
{
    mpi_ctx *x = c->ctx;
    if (x->n == x->cap) {
        const int cap = x->cap ? 2 * x->cap : 16;
        pending *q = realloc(x->p, (size_t)cap * sizeof *q);
        if (!q)
            return gllm_fail(GLLM_ERR_OOM, "mpi comm: out of memory for requests");
        x->p = q;
        x->cap = cap;
    }
    x->p[x->n++] = p;
    return GLLM_OK;
}

/* Poll every pending request until all are done, a request fails or the
 * deadline passes; then finish them (averages, copies) in start order. */
static gllm_status mpi_wait(gllm_comm *c)
{
    mpi_ctx *x = c->ctx;
    const double timeout = gllm_comm_timeout_of(c), t0 = gllm_dist_now();
    gllm_status s = GLLM_OK;
    for (int i = 0; i < x->n && s == GLLM_OK; i++) {
        for (long spins = 0;; spins++) {
            int done = 0;
            if (MPI_Test(&x->p[i].req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
                s = gllm_fail(GLLM_ERR_BACKEND, "mpi comm %s failed on rank %d", x->p[i].what,
                              c->rank);
                break;
            }
            if (done)
                break;
            if (gllm_dist_now() - t0 > timeout) {
                s = gllm_fail(GLLM_ERR_BACKEND,
                              "mpi comm %s: not complete after %g s on rank %d (another rank "
                              "died or stalls; GLLM_COMM_TIMEOUT sets the limit)",
                              x->p[i].what, timeout, c->rank);
                break;
            }
            if (spins > 1000) { /* past the fast path: do not burn a core */
                struct timespec ts = {0, 50 * 1000};
                nanosleep(&ts, NULL);
            }
        }
    }
    for (int i = 0; i < x->n; i++) {
        pending *p = &x->p[i];
        if (s == GLLM_OK && p->avg)
            for (size_t k = 0; k < p->n; k++)
                p->result[k] /= (float)c->world;
        if (s == GLLM_OK && p->dst != p->result)
            memcpy(p->dst, p->result, p->n * sizeof(float));
        if (p->own_result && s == GLLM_OK) /* after a failure MPI may still write it */
            free(p->result);
    }
    x->n = 0;
    return s;
}

static gllm_status mpi_all_reduce_start(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                        gllm_reduce_op op)
{
    GLLM_TRY(check_args("all_reduce", t, n));
    pending p = {.result = buf, .dst = buf, .n = n, .avg = op == GLLM_REDUCE_AVG,
                 .what = "all_reduce"};
    if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, mpi_op(op), MPI_COMM_WORLD,
                       &p.req) != MPI_SUCCESS)
        return gllm_fail(GLLM_ERR_BACKEND, "MPI_Iallreduce of %zu floats failed", n);
    return push(c, p);
}

static gllm_status mpi_reduce_scatter_start(gllm_comm *c, void *out, const void *in, size_t n,
                                            gllm_dtype t, gllm_reduce_op op)
{
    GLLM_TRY(check_args("reduce_scatter", t, n));
    /* MPI wants distinct buffers; the result goes through a temporary so that
     * out may be this rank's slice of in */
    float *tmp = malloc((n ? n : 1) * sizeof(float));
    if (!tmp)
        return gllm_fail(GLLM_ERR_OOM, "mpi comm reduce_scatter: out of memory for %zu floats", n);
    pending p = {.result = tmp, .dst = out, .n = n, .avg = op == GLLM_REDUCE_AVG,
                 .own_result = true, .what = "reduce_scatter"};
    if (MPI_Ireduce_scatter_block(in, tmp, (int)n, MPI_FLOAT, mpi_op(op), MPI_COMM_WORLD,
                                  &p.req) != MPI_SUCCESS) {
        free(tmp);
        return gllm_fail(GLLM_ERR_BACKEND, "MPI_Ireduce_scatter_block of %zu floats failed", n);
    }
    return push(c, p);
}

static gllm_status mpi_all_reduce(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                  gllm_reduce_op op)
{
    GLLM_TRY(mpi_all_reduce_start(c, buf, n, t, op));
    return mpi_wait(c);
}

static gllm_status mpi_reduce_scatter(gllm_comm *c, void *out, const void *in, size_t n,
                                      gllm_dtype t, gllm_reduce_op op)
{
    GLLM_TRY(mpi_reduce_scatter_start(c, out, in, n, t, op));
    return mpi_wait(c);
}

static gllm_status mpi_all_gather_start(gllm_comm *c, void *out, const void *in, size_t n,
                                        gllm_dtype t)
{
    GLLM_TRY(check_args("all_gather", t, n));
    const bool in_place = (const float *)in == (float *)out + (size_t)c->rank * n;
    pending p = {.result = out, .dst = out, .n = 0, .what = "all_gather"};
    if (MPI_Iallgather(in_place ? MPI_IN_PLACE : in, (int)n, MPI_FLOAT, out, (int)n, MPI_FLOAT,
                       MPI_COMM_WORLD, &p.req) != MPI_SUCCESS)
        return gllm_fail(GLLM_ERR_BACKEND, "MPI_Iallgather of %zu floats failed", n);
    return push(c, p);
}

static gllm_status mpi_all_gather(gllm_comm *c, void *out, const void *in, size_t n,
                                  gllm_dtype t)
{
    GLLM_TRY(mpi_all_gather_start(c, out, in, n, t));
    return mpi_wait(c);
}

static gllm_status mpi_broadcast(gllm_comm *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->world)
        return gllm_fail(GLLM_ERR_INVALID, "mpi comm broadcast: root %d of %d ranks", root,
                         c->world);
    for (size_t off = 0; off < bytes; off += INT_MAX) {
        const size_t k = bytes - off < INT_MAX ? bytes - off : INT_MAX;
        pending p = {.result = NULL, .dst = NULL, .n = 0, .what = "broadcast"};
        if (MPI_Ibcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD, &p.req) !=
            MPI_SUCCESS)
            return gllm_fail(GLLM_ERR_BACKEND, "MPI_Ibcast of %zu bytes failed", k);
        GLLM_TRY(push(c, p));
        GLLM_TRY(mpi_wait(c));
    }
    return GLLM_OK;
}

static gllm_status mpi_barrier(gllm_comm *c)
{
    pending p = {.what = "barrier"};
    if (MPI_Ibarrier(MPI_COMM_WORLD, &p.req) != MPI_SUCCESS)
        return gllm_fail(GLLM_ERR_BACKEND, "MPI_Ibarrier failed");
    GLLM_TRY(push(c, p));
    return mpi_wait(c);
}

static void mpi_destroy(gllm_comm *c)
{
    mpi_ctx *x = c->ctx;
    if (x && x->n) /* started and never waited for: complete them before freeing */
        (void)mpi_wait(c);
    if (x)
        free(x->p);
    free(x);
    free(c);
}

gllm_status gllm_mpi_bcast_bytes(void *buf, size_t bytes, int root)
{
    if (bytes > INT_MAX ||
        MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
        return gllm_fail(GLLM_ERR_BACKEND, "MPI_Bcast of %zu bytes from rank %d failed", bytes,
                         root);
    return GLLM_OK;
}

gllm_status gllm_comm_mpi(gllm_backend *be, gllm_comm **out)
{
    *out = NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited)
        return gllm_fail(GLLM_ERR_INVALID, "mpi comm: MPI is not initialised (gllm_mpi_init)");
    if (be->act_dtype != GLLM_F32 || be->queue_handle(be, GLLM_QUEUE_COMPUTE) != NULL)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "mpi comm serves the CPU backend (got '%s'); GPUs use NCCL", be->name);
    gllm_comm *c = gllm_calloc(1, sizeof *c, "communicator");
    mpi_ctx *x = gllm_calloc(1, sizeof *x, "communicator");
    if (!c || !x) {
        free(c);
        free(x);
        return GLLM_ERR_OOM;
    }
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    *c = (gllm_comm){.name = "mpi", .rank = rank, .world = world, .be = be, .ctx = x,
                     .all_reduce = mpi_all_reduce, .reduce_scatter = mpi_reduce_scatter,
                     .all_gather = mpi_all_gather, .broadcast = mpi_broadcast,
                     .barrier = mpi_barrier, .all_reduce_start = mpi_all_reduce_start,
                     .reduce_scatter_start = mpi_reduce_scatter_start,
                     .all_gather_start = mpi_all_gather_start, .wait = mpi_wait,
                     .destroy = mpi_destroy};
    *out = c;
    return GLLM_OK;
}

#else /* built without MPI */

static gllm_status no_mpi(void)
{
    return gllm_fail(GLLM_ERR_UNSUPPORTED,
                     "this gllm was built without MPI (install libopenmpi-dev and reconfigure)");
}

bool gllm_mpi_available(void) { return false; }
gllm_status gllm_mpi_init(int *rank, int *world)
{
    *rank = 0;
    *world = 1;
    return no_mpi();
}
void gllm_mpi_finalize(bool failed) { (void)failed; }
gllm_status gllm_mpi_bcast_bytes(void *buf, size_t bytes, int root)
{
    (void)buf, (void)bytes, (void)root;
    return no_mpi();
}
gllm_status gllm_comm_mpi(gllm_backend *be, gllm_comm **out)
{
    (void)be;
    *out = NULL;
    return no_mpi();
}
#endif
