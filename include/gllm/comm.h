/* The communication interface behind the trainer: collectives over the ranks
 * of a data-parallel job. The trainer never knows how many ranks there are
 * beyond what this tells it; implementations are one process (here), and
 * later NCCL (--gpus N, mpirun/srun) behind the same table.
 *
 * Buffers are device buffers of the backend the communicator was made for.
 * Collectives are blocking from the caller's point of view and reduce in a
 * fixed order, so runs with the same rank count are bitwise repeatable.
 * An implementation may also offer non-blocking starts on the backend's comm
 * queue (GLLM_QUEUE_COMM), so gradient buckets are reduced while backward
 * still runs; gllm_comm_*_start fall back to the blocking calls.
 *
 * No collective hangs: each gives up with an error naming the cause after
 * gllm_comm_timeout_s() seconds (GLLM_COMM_TIMEOUT, default 600), or at once
 * when the launcher reports that a rank died. A communicator whose collective
 * failed is unusable: the job is over. */
#ifndef GLLM_COMM_H
#define GLLM_COMM_H

#include <stddef.h>

#include "gllm/backend.h"
#include "gllm/dtype.h"
#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gllm_reduce_op {
    GLLM_REDUCE_SUM = 0,
    GLLM_REDUCE_AVG, /* the sum divided by world */
    GLLM_REDUCE_MAX,
} gllm_reduce_op;

typedef struct gllm_comm gllm_comm;

struct gllm_comm {
    const char *name;
    int rank, world;
    gllm_backend *be;
    void *ctx;
    /* seconds a collective may wait before it fails; 0: gllm_comm_timeout_s(). A
     * caller that knows a wait is long (rank 0 tokenizing the data while the others
     * wait) raises it for that call; a rank reported dead still ends the wait. */
    double timeout_s;
    /* in place over n elements of buf (F32 or BF16) */
    gllm_status (*all_reduce)(gllm_comm *c, void *buf, size_t n, gllm_dtype t, gllm_reduce_op op);
    /* in: world * n elements; out: this rank's n-element slice of the reduction (ZeRO-1).
     * out may be in + rank * n (in place). */
    gllm_status (*reduce_scatter)(gllm_comm *c, void *out, const void *in, size_t n, gllm_dtype t,
                                  gllm_reduce_op op);
    /* in: this rank's n elements; out: world * n elements in rank order. in may be
     * out + rank * n (in place). */
    gllm_status (*all_gather)(gllm_comm *c, void *out, const void *in, size_t n, gllm_dtype t);
    gllm_status (*broadcast)(gllm_comm *c, void *buf, size_t bytes, int root);
    gllm_status (*barrier)(gllm_comm *c);
    /* Optional (NULL: not offered). Start the collective after the work queued so far
     * on the backend's compute queue and return without waiting for it; its buffers
     * must not be touched until wait. */
    gllm_status (*all_reduce_start)(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                    gllm_reduce_op op);
    gllm_status (*reduce_scatter_start)(gllm_comm *c, void *out, const void *in, size_t n,
                                        gllm_dtype t, gllm_reduce_op op);
    gllm_status (*all_gather_start)(gllm_comm *c, void *out, const void *in, size_t n,
                                    gllm_dtype t);
    /* every started collective has completed as far as the compute queue is
     * concerned; an error (or timeout) of any of them is returned here */
    gllm_status (*wait)(gllm_comm *c);
    void (*destroy)(gllm_comm *c);
};

static inline gllm_status gllm_comm_all_reduce_start(gllm_comm *c, void *buf, size_t n,
                                                     gllm_dtype t, gllm_reduce_op op)
{
    return c->all_reduce_start ? c->all_reduce_start(c, buf, n, t, op)
                               : c->all_reduce(c, buf, n, t, op);
}

static inline gllm_status gllm_comm_reduce_scatter_start(gllm_comm *c, void *out, const void *in,
                                                         size_t n, gllm_dtype t,
                                                         gllm_reduce_op op)
{
    return c->reduce_scatter_start ? c->reduce_scatter_start(c, out, in, n, t, op)
                                   : c->reduce_scatter(c, out, in, n, t, op);
}

static inline gllm_status gllm_comm_all_gather_start(gllm_comm *c, void *out, const void *in,
                                                     size_t n, gllm_dtype t)
{
    return c->all_gather_start ? c->all_gather_start(c, out, in, n, t)
                               : c->all_gather(c, out, in, n, t);
}

static inline gllm_status gllm_comm_wait(gllm_comm *c)
{
    return c->wait ? c->wait(c) : GLLM_OK;
}

/* Seconds a collective waits before it fails: GLLM_COMM_TIMEOUT, else 600. */
double gllm_comm_timeout_s(void);

static inline double gllm_comm_timeout_of(const gllm_comm *c)
{
    return c->timeout_s > 0 ? c->timeout_s : gllm_comm_timeout_s();
}

/* A job of one rank on backend `be`: reductions are identities, gathers and
 * scatters copies. Caller releases it with c->destroy(c). */
gllm_status gllm_comm_single(gllm_backend *be, gllm_comm **out);

#ifdef __cplusplus
}
#endif
#endif
