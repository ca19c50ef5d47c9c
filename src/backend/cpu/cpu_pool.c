/* The CPU backend's own thread pool. Why not OpenMP: on a machine whose cores
 * are shared with other work, libgomp's workers spin at every barrier (up to
 * GOMP_SPINCOUNT, read once when libgomp loads, so a library cannot lower it),
 * and a static schedule makes every region wait for a thread the kernel has
 * descheduled. Measured on 2 cores with one busy process per core
 * (bench/results/cpu_load_*.md): 70% of gllm's cycles were libgomp spinning
 * and a training step took 19x its idle time.
 *
 * Here a parallel range is cut into chunks that threads claim from one atomic
 * counter, the caller included, so the work of a descheduled thread is taken
 * by the others and the caller never waits for a thread that has not started;
 * it only waits for chunks already running. Idle workers spin for a few
 * microseconds (ops follow each other closely) and then sleep on a condition
 * variable, so they do not burn a core somebody else needs. Every chunk owns
 * its outputs, so which thread runs which chunk never changes a result. */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/cpu_internal.h"

/* spin iterations (each a pause, ~10-60 cycles) before a wait sleeps: a few
 * tens of microseconds, about the gap between two ops of a training step */
#define POOL_SPIN 4000

struct gllm_cpu_pool {
    int n_threads; /* the caller is thread 0 */
    pthread_t *workers;
    int n_started;
    /* the current job: written by the caller before `claim` publishes it */
    _Atomic(gllm_cpu_range_fn) fn;
    _Atomic(void *) arg;
    atomic_long n_items, grain, n_chunks;
    /* epoch << 32 | next chunk: a claim succeeds only for the current job */
    _Atomic uint64_t claim;
    atomic_long done;     /* chunks finished in the current job */
    atomic_uint epoch;    /* workers wake when it changes */
    atomic_int sleepers;  /* workers asleep on `wake` */
    atomic_int caller_asleep;
    unsigned next_epoch;  /* the caller's own counter */
    pthread_mutex_t mu;
    pthread_cond_t wake, finished;
    bool stop;
    struct worker_arg {
        gllm_cpu_pool *p;
        int tid;
    } *wargs;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claim and run chunks of job `e` until none is left. */
static void run_chunks(gllm_cpu_pool *p, unsigned e, int tid)
{
    for (;;) {
        uint64_t w = atomic_load_explicit(&p->claim, memory_order_acquire);
        if ((unsigned)(w >> 32) != e)
            return;
        const long k = (long)(w & 0xffffffffu);
        const long nch = atomic_load_explicit(&p->n_chunks, memory_order_relaxed);
        if (k >= nch)
            return;
        gllm_cpu_range_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
        const long n = atomic_load_explicit(&p->n_items, memory_order_relaxed);
        const long grain = atomic_load_explicit(&p->grain, memory_order_relaxed);
        /* the fields above belong to job e: the caller rewrites them only after
         * every chunk of e is done, and chunk k is not claimed yet */
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        const long b = k * grain, end = b + grain < n ? b + grain : n;
        fn(arg, b, end, tid);
        if (atomic_fetch_add(&p->done, 1) + 1 == nch && tid &&
            atomic_load(&p->caller_asleep)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void *worker_main(void *v)
{
    struct worker_arg *wa = v;
    gllm_cpu_pool *p = wa->p;
    /* OpenBLAS's OpenMP build sizes its team from the calling thread's
     * omp_get_max_threads(): sgemm called from a pool thread runs on that
     * thread alone instead of starting a libgomp team per worker */
    omp_set_num_threads(1);
    unsigned seen = atomic_load(&p->epoch);
    for (;;) {
        unsigned e = atomic_load(&p->epoch);
        for (int i = 0; e == seen && i < POOL_SPIN; i++) {
            cpu_relax();
            e = atomic_load_explicit(&p->epoch, memory_order_acquire);
        }
        if (e == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((e = atomic_load(&p->epoch)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            const bool stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop)
                return NULL;
        }
        seen = e;
        run_chunks(p, e, wa->tid);
    }
}

gllm_status gllm_cpu_pool_create(int n_threads, gllm_cpu_pool **out)
{
    *out = NULL;
    gllm_cpu_pool *p = gllm_calloc(1, sizeof *p, "cpu thread pool");
    if (!p)
        return GLLM_ERR_OOM;
    p->n_threads = n_threads > 0 ? n_threads : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->finished, NULL);
    if (p->n_threads > 1) {
        p->workers = gllm_calloc((size_t)p->n_threads - 1, sizeof *p->workers, "cpu workers");
        p->wargs = gllm_calloc((size_t)p->n_threads - 1, sizeof *p->wargs, "cpu workers");
        if (!p->workers || !p->wargs) {
            gllm_cpu_pool_free(p);
            return GLLM_ERR_OOM;
        }
        for (int t = 1; t < p->n_threads; t++) {
            p->wargs[t - 1] = (struct worker_arg){p, t};
            int rc = pthread_create(&p->workers[t - 1], NULL, worker_main, &p->wargs[t - 1]);
            if (rc != 0) {
                gllm_cpu_pool_free(p);
                return gllm_fail(GLLM_ERR_BACKEND, "cpu backend: cannot start worker thread %d "
                                 "of %d (pthread_create error %d)", t, n_threads, rc);
            }
            p->n_started++;
        }
    }
    *out = p;
    return GLLM_OK;
}

void gllm_cpu_pool_free(gllm_cpu_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < p->n_started; t++)
        pthread_join(p->workers[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->finished);
    free(p->workers);
    free(p->wargs);
    free(p);
}

int gllm_cpu_pool_threads(const gllm_cpu_pool *p) { return p->n_threads; }

void gllm_cpu_pool_run(gllm_cpu_pool *p, long n, long grain, gllm_cpu_range_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    const long nch = (n + grain - 1) / grain;
    /* sgemm inside a chunk runs on its own thread (see worker_main); the
     * caller's setting is restored, so creating or using a backend leaves the
     * caller's OpenMP thread count as it was */
    const int omp_saved = omp_get_max_threads();
    if (omp_saved != 1)
        omp_set_num_threads(1);
    if (p->n_threads == 1 || nch == 1 || nch >= 0xffffffffL) {
        fn(arg, 0, n, 0);
    } else {
        const unsigned e = ++p->next_epoch;
        /* close the claim word first: a worker still in run_chunks of the last
         * job may hold claim == (old epoch, old n_chunks) and, reading this
         * job's larger n_chunks, would otherwise claim a chunk that does not
         * exist with a mix of both jobs' fields (seen as crashes in
         * the paged attention and norm chunks when two processes share the cores) */
        atomic_store(&p->claim, (uint64_t)e << 32 | 0xffffffffu);
        atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
        atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
        atomic_store_explicit(&p->n_items, n, memory_order_relaxed);
        atomic_store_explicit(&p->grain, grain, memory_order_relaxed);
        atomic_store_explicit(&p->n_chunks, nch, memory_order_relaxed);
        atomic_store_explicit(&p->done, 0, memory_order_relaxed);
        atomic_store_explicit(&p->claim, (uint64_t)e << 32, memory_order_release);
        atomic_store(&p->epoch, e);
        if (atomic_load(&p->sleepers) > 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->wake);
            pthread_mutex_unlock(&p->mu);
        }
        run_chunks(p, e, 0);
        /* only chunks already running remain: wait for them */
        for (int i = 0; i < POOL_SPIN; i++) {
            if (atomic_load_explicit(&p->done, memory_order_acquire) == nch)
                break;
            cpu_relax();
        }
        if (atomic_load_explicit(&p->done, memory_order_acquire) != nch) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->caller_asleep, 1);
            while (atomic_load(&p->done) != nch)
                pthread_cond_wait(&p->finished, &p->mu);
            atomic_store(&p->caller_asleep, 0);
            pthread_mutex_unlock(&p->mu);
        }
    }
    if (omp_saved != 1)
        omp_set_num_threads(omp_saved);
}

long gllm_cpu_grain(const gllm_cpu_pool *p, long n, double work_per_item)
{
    /* a chunk is worth handing out from ~20k element operations (a few
     * microseconds); below that the whole range runs on the caller. Up to 8
     * chunks per thread keep the threads even when one of them is descheduled. */
    const double min_work = 20000.0;
    if (n <= 0)
        return 1;
    if (work_per_item < 1)
        work_per_item = 1;
    long g = (long)(min_work / work_per_item) + 1;
    const long even = (n + 8L * p->n_threads - 1) / (8L * p->n_threads);
    if (even > g)
        g = even;
    return g < n ? g : n;
}
