/* The communication interface behind the trainer: collectives over the ranks
 * of a data-parallel job. The trainer never knows how many ranks there are
 * beyond what this tells it; implementations are one process (here), and
 * later NCCL (--gpus N, mpirun/srun) behind the same table.
 *
 * Buffers are device buffers of the backend the communicator was made for.
 * Collectives are blocking from the caller's point of view and reduce in a
 * fixed order, so runs with the same rank count are bitwise repeatable. */
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
    /* in place over n elements of buf (F32 or BF16) */
    gllm_status (*all_reduce)(gllm_comm *c, void *buf, size_t n, gllm_dtype t, gllm_reduce_op op);
    /* in: world * n elements; out: this rank's n-element slice of the reduction (ZeRO-1) */
    gllm_status (*reduce_scatter)(gllm_comm *c, void *out, const void *in, size_t n, gllm_dtype t,
                                  gllm_reduce_op op);
    /* in: this rank's n elements; out: world * n elements in rank order */
    gllm_status (*all_gather)(gllm_comm *c, void *out, const void *in, size_t n, gllm_dtype t);
    gllm_status (*broadcast)(gllm_comm *c, void *buf, size_t bytes, int root);
    gllm_status (*barrier)(gllm_comm *c);
    void (*destroy)(gllm_comm *c);
};

/* A job of one rank on backend `be`: reductions are identities, gathers and
 * scatters copies. Caller releases it with c->destroy(c). */
gllm_status gllm_comm_single(gllm_backend *be, gllm_comm **out);

#ifdef __cplusplus
}
#endif
#endif
