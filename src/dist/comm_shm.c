/* Ranks as processes of one machine sharing memory: the data-parallel
 * communicator of the CPU backend (gtrain --ranks N, and the tests that
 * check data parallelism without a GPU). The group's segment is mapped
 * before fork, so every rank sees it: a process-shared barrier and one slot
 * per rank. A reduction copies each rank's chunk into its slot, then every
 * rank sums the slots in rank order, so all ranks get the same bits.
 *
 * The segment's head also carries the launcher's word on dead ranks: the
 * barrier waits in short slices and fails as soon as a rank is marked dead,
 * or after the collective timeout, so a killed rank never leaves the others
 * waiting. (The launcher of GPU workers uses a group for that word alone.) */
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dist/dist_internal.h"
#include "gllm/comm.h"
#include "gllm/dist.h"

/* The barrier is a counter and a generation number in the shared segment,
 * waited on with futexes: no lock is held across processes, so a rank killed
 * anywhere cannot leave the others stuck on it (process-shared mutexes and
 * condition variables can be left in that state by a killed waiter). */
typedef struct shm_head {
    atomic_uint arrived;
    atomic_uint generation;
    atomic_int dead_rank1;  /* 0, or 1 + the rank the launcher saw die */
    atomic_int dead_status; /* its wait() status */
} shm_head;

struct gllm_shm_group {
    int world;
    size_t slot_bytes;
    size_t map_bytes;
    shm_head *head;
    unsigned char *slots; /* world * slot_bytes */
};

typedef struct shm_ctx {
    gllm_shm_group *g;
} shm_ctx;

gllm_status gllm_shm_group_create(int world, size_t slot_bytes, gllm_shm_group **out)
{
    *out = NULL;
    if (world < 1 || world > 256)
        return gllm_fail(GLLM_ERR_INVALID, "shared-memory group: %d ranks (1..256)", world);
    slot_bytes = (slot_bytes + 63) & ~(size_t)63;
    if (slot_bytes < 64)
        slot_bytes = 64;
    gllm_shm_group *g = gllm_calloc(1, sizeof *g, "shared-memory group");
    if (!g)
        return GLLM_ERR_OOM;
    const size_t head = 4096;
    g->world = world;
    g->slot_bytes = slot_bytes;
    g->map_bytes = head + (size_t)world * slot_bytes;
    void *p = mmap(NULL, g->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        const size_t bytes = g->map_bytes;
        free(g);
        return gllm_fail(GLLM_ERR_OOM, "shared-memory group: cannot map %zu bytes", bytes);
    }
    g->head = p; /* the anonymous mapping is zeroed: no arrivals, generation 0 */
    g->slots = (unsigned char *)p + head;
    *out = g;
    return GLLM_OK;
}

static void futex_wake_all(atomic_uint *word)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void gllm_shm_group_mark_dead(gllm_shm_group *g, int rank, int wait_status)
{
    shm_head *h = g->head;
    int expected = 0;
    atomic_store(&h->dead_status, wait_status);
    atomic_compare_exchange_strong(&h->dead_rank1, &expected, rank + 1);
    futex_wake_all(&h->generation); /* the waiters look now rather than at their next slice */
}

gllm_status gllm_shm_group_check(const gllm_shm_group *g)
{
    const int dead = atomic_load(&g->head->dead_rank1);
    if (!dead)
        return GLLM_OK;
    char how[96];
    gllm_describe_exit(atomic_load(&g->head->dead_status), how, sizeof how);
    return gllm_fail(GLLM_ERR_BACKEND, "rank %d died (%s); stopping", dead - 1, how);
}

void gllm_shm_group_free(gllm_shm_group *g)
{
    if (!g)
        return;
    munmap(g->head, g->map_bytes);
    free(g);
}

/* All ranks arrive before any leaves. A waiter spins briefly (collectives
 * go chunk by chunk, each a pair of barriers), then sleeps on the generation
 * in 100 ms slices: a rank marked dead, or the timeout, ends the wait. */
static gllm_status wait_all(gllm_shm_group *g, double timeout)
{
    shm_head *h = g->head;
    GLLM_TRY(gllm_shm_group_check(g));
    const unsigned gen = atomic_load(&h->generation);
    if (atomic_fetch_add(&h->arrived, 1) + 1 == (unsigned)g->world) {
        /* reset before the generation moves: the next barrier counts anew */
        atomic_store(&h->arrived, 0);
        atomic_fetch_add(&h->generation, 1);
        futex_wake_all(&h->generation);
        return GLLM_OK;
    }
    for (int spin = 0; spin < 4000; spin++)
        if (atomic_load(&h->generation) != gen)
            return GLLM_OK;
    const double t0 = gllm_dist_now();
    while (atomic_load(&h->generation) == gen) {
        GLLM_TRY(gllm_shm_group_check(g));
        if (gllm_dist_now() - t0 > timeout)
            return gllm_fail(GLLM_ERR_BACKEND, "shared-memory comm: no rank-wide progress in %g s "
                             "(%u of %d ranks arrived; GLLM_COMM_TIMEOUT sets the limit)",
                             timeout, atomic_load(&h->arrived), g->world);
        const struct timespec slice = {0, 100 * 1000 * 1000};
        syscall(SYS_futex, (unsigned *)&h->generation, FUTEX_WAIT, gen, &slice, NULL, 0);
    }
    return GLLM_OK;
}

static gllm_status need_f32(const char *op, gllm_dtype t)
{
    if (t != GLLM_F32)
        return gllm_fail(GLLM_ERR_INVALID,
                         "shared-memory comm %s: dtype %s (the CPU backend's buffers are F32)", op,
                         gllm_dtype_name(t));
    return GLLM_OK;
}

/* out[i] = op over ranks of in_r[i], for the chunk of n floats every rank has
 * placed in its slot. */
static void reduce_slots(gllm_shm_group *g, float *out, size_t n, gllm_reduce_op op)
{
    for (size_t i = 0; i < n; i++) {
        float acc = ((const float *)g->slots)[i];
        for (int r = 1; r < g->world; r++) {
            const float v = ((const float *)(g->slots + (size_t)r * g->slot_bytes))[i];
            acc = op == GLLM_REDUCE_MAX ? (v > acc ? v : acc) : acc + v;
        }
        out[i] = op == GLLM_REDUCE_AVG ? acc / (float)g->world : acc;
    }
}

static gllm_status shm_all_reduce(gllm_comm *c, void *buf, size_t n, gllm_dtype t,
                                  gllm_reduce_op op)
{
    GLLM_TRY(need_f32("all_reduce", t));
    gllm_shm_group *g = ((shm_ctx *)c->ctx)->g;
    float *x = buf;
    const size_t chunk = g->slot_bytes / sizeof(float);
    for (size_t off = 0; off < n; off += chunk) {
        const size_t k = n - off < chunk ? n - off : chunk;
        memcpy(g->slots + (size_t)c->rank * g->slot_bytes, x + off, k * sizeof(float));
        GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
        reduce_slots(g, x + off, k, op);
        /* nobody refills a slot before everyone has read it */
        GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
    }
    return GLLM_OK;
}

static gllm_status shm_reduce_scatter(gllm_comm *c, void *out, const void *in, size_t n,
                                      gllm_dtype t, gllm_reduce_op op)
{
    GLLM_TRY(need_f32("reduce_scatter", t));
    gllm_shm_group *g = ((shm_ctx *)c->ctx)->g;
    const float *x = in;
    float *y = out;
    const size_t chunk = g->slot_bytes / sizeof(float);
    /* rank r's slice is [r*n, (r+1)*n) of the reduced vector */
    for (int owner = 0; owner < c->world; owner++)
        for (size_t off = 0; off < n; off += chunk) {
            const size_t k = n - off < chunk ? n - off : chunk;
            memcpy(g->slots + (size_t)c->rank * g->slot_bytes, x + (size_t)owner * n + off,
                   k * sizeof(float));
            GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
            if (owner == c->rank)
                reduce_slots(g, y + off, k, op);
            GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
        }
    return GLLM_OK;
}

static gllm_status shm_all_gather(gllm_comm *c, void *out, const void *in, size_t n,
                                  gllm_dtype t)
{
    GLLM_TRY(need_f32("all_gather", t));
    gllm_shm_group *g = ((shm_ctx *)c->ctx)->g;
    const float *x = in;
    float *y = out;
    const size_t chunk = g->slot_bytes / sizeof(float);
    for (size_t off = 0; off < n; off += chunk) {
        const size_t k = n - off < chunk ? n - off : chunk;
        memcpy(g->slots + (size_t)c->rank * g->slot_bytes, x + off, k * sizeof(float));
        GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
        for (int r = 0; r < c->world; r++)
            if (y + (size_t)r * n + off != x + off) /* in place: our own slice is there */
                memcpy(y + (size_t)r * n + off, g->slots + (size_t)r * g->slot_bytes,
                       k * sizeof(float));
        GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
    }
    return GLLM_OK;
}

static gllm_status shm_broadcast(gllm_comm *c, void *buf, size_t bytes, int root)
{
    gllm_shm_group *g = ((shm_ctx *)c->ctx)->g;
    if (root < 0 || root >= c->world)
        return gllm_fail(GLLM_ERR_INVALID, "shared-memory comm broadcast: root %d of %d ranks",
                         root, c->world);
    unsigned char *p = buf;
    for (size_t off = 0; off < bytes; off += g->slot_bytes) {
        const size_t k = bytes - off < g->slot_bytes ? bytes - off : g->slot_bytes;
        if (c->rank == root)
            memcpy(g->slots, p + off, k);
        GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
        if (c->rank != root)
            memcpy(p + off, g->slots, k);
        GLLM_TRY(wait_all(g, gllm_comm_timeout_of(c)));
    }
    return GLLM_OK;
}

static gllm_status shm_barrier(gllm_comm *c)
{
    return wait_all(((shm_ctx *)c->ctx)->g, gllm_comm_timeout_of(c));
}

static void shm_destroy(gllm_comm *c)
{
    free(c->ctx);
    free(c);
}

gllm_status gllm_comm_shm(gllm_shm_group *g, int rank, gllm_backend *be, gllm_comm **out)
{
    *out = NULL;
    if (rank < 0 || rank >= g->world)
        return gllm_fail(GLLM_ERR_INVALID, "shared-memory comm: rank %d of %d", rank, g->world);
    if (be->act_dtype != GLLM_F32 || strcmp(be->name, "cpu") != 0)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "shared-memory comm serves the CPU backend (got '%s'); GPUs need NCCL",
                         be->name);
    gllm_comm *c = gllm_calloc(1, sizeof *c, "communicator");
    shm_ctx *x = gllm_calloc(1, sizeof *x, "communicator");
    if (!c || !x) {
        free(c);
        free(x);
        return GLLM_ERR_OOM;
    }
    x->g = g;
    *c = (gllm_comm){.name = "shm", .rank = rank, .world = g->world, .be = be, .ctx = x,
                     .all_reduce = shm_all_reduce, .reduce_scatter = shm_reduce_scatter,
                     .all_gather = shm_all_gather, .broadcast = shm_broadcast,
                     .barrier = shm_barrier, .destroy = shm_destroy};
    *out = c;
    return GLLM_OK;
}
