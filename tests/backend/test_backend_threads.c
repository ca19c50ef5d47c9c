/* The CPU backend's threads: the default thread count (CPU lists, cgroup
 * quotas, OMP_NUM_THREADS, the affinity mask), the pool (every item of a range
 * runs exactly once, on a valid thread, also with more threads than cores),
 * matmul results that do not depend on the thread count, and no change to the
 * caller's OpenMP thread count. */
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include "backend/cpu/cpu_internal.h"
#include "test_util.h"

static void test_parsing(void)
{
    TEST_CASE("CPU lists")
    {
        cpu_set_t s;
        CHECK(gllm_cpu_list_parse("0-3,8,10-11", &s) == 7);
        CHECK(CPU_ISSET(3, &s) && CPU_ISSET(8, &s) && CPU_ISSET(11, &s) && !CPU_ISSET(9, &s));
        CHECK(gllm_cpu_list_parse("5", &s) == 1 && CPU_ISSET(5, &s));
        CHECK(gllm_cpu_list_parse("0-1 ", &s) == 2);
        static const char *bad[] = {"", " ", "3-1", "0-3x", "0,,1", "-1", "1-", "a", "0-99999"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            CHECK_MSG(gllm_cpu_list_parse(bad[i], &s) == -1, "'%s' accepted", bad[i]);
    }
    TEST_CASE("cgroup quotas")
    {
        CHECK(gllm_cpu_quota_v2("max 100000") == 0);
        CHECK(gllm_cpu_quota_v2("150000 100000") == 1.5);
        CHECK(gllm_cpu_quota_v2("50000") == 0.5);
        CHECK(gllm_cpu_quota_v2("") == -1);
        CHECK(gllm_cpu_quota_v2("abc 100000") == -1);
        CHECK(gllm_cpu_quota_v2("0 100000") == -1);
        CHECK(gllm_cpu_quota_v2("100000 0") == -1);
        CHECK(gllm_cpu_quota_v1(-1, 100000) == 0);
        CHECK(gllm_cpu_quota_v1(200000, 100000) == 2);
        CHECK(gllm_cpu_quota_v1(0, 100000) == -1);
        CHECK(gllm_cpu_quota_v1(100000, 0) == -1);
    }
    TEST_CASE("default thread count from OMP_NUM_THREADS, cores and quota")
    {
        CHECK(gllm_cpu_threads_from("3", 8, 0) == 3);
        CHECK(gllm_cpu_threads_from("4,2", 8, 0) == 4);
        CHECK(gllm_cpu_threads_from("3", 8, 1.0) == 3); /* an explicit number wins */
        CHECK(gllm_cpu_threads_from("x", 8, 0) == 8);
        CHECK(gllm_cpu_threads_from("0", 8, 0) == 8);
        CHECK(gllm_cpu_threads_from("-2", 8, 0) == 8);
        CHECK(gllm_cpu_threads_from("2x", 8, 0) == 8);
        CHECK(gllm_cpu_threads_from("", 6, 0) == 6);
        CHECK(gllm_cpu_threads_from(NULL, 8, 1.5) == 2);
        CHECK(gllm_cpu_threads_from(NULL, 8, 2.0) == 2);
        CHECK(gllm_cpu_threads_from(NULL, 8, 0.2) == 1);
        CHECK(gllm_cpu_threads_from(NULL, 2, 4) == 2);
        CHECK(gllm_cpu_threads_from(NULL, 0, 0) == 1);
    }
}

static void test_default_follows_process(void)
{
    TEST_CASE("the default follows the affinity mask and OMP_NUM_THREADS")
    {
        char *saved = getenv("OMP_NUM_THREADS") ? strdup(getenv("OMP_NUM_THREADS")) : NULL;
        unsetenv("OMP_NUM_THREADS");
        cpu_set_t all, one;
        CHECK(sched_getaffinity(0, sizeof all, &all) == 0);
        const int n_all = gllm_cpu_default_threads();
        CHECK(n_all >= 1 && n_all <= CPU_COUNT(&all));
        int first = 0;
        while (!CPU_ISSET(first, &all))
            first++;
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
        CHECK(gllm_cpu_default_threads() == 1);
        setenv("OMP_NUM_THREADS", "3", 1);
        CHECK(gllm_cpu_default_threads() == 3);
        gllm_backend *be = NULL;
        CHECK_OK(gllm_backend_cpu_create(0, &be));
        CHECK(be && gllm_cpu_ctx_of(be)->n_threads == 3);
        if (be)
            be->destroy(be);
        CHECK(sched_setaffinity(0, sizeof all, &all) == 0);
        if (saved)
            setenv("OMP_NUM_THREADS", saved, 1);
        else
            unsetenv("OMP_NUM_THREADS");
        free(saved);
    }
}

typedef struct count_args {
    int *count;
    int n_threads, bad_tid;
} count_args;

static void count_range(void *v, long b, long e, int tid)
{
    count_args *a = v;
    if (tid < 0 || tid >= a->n_threads)
        a->bad_tid = 1; /* every writer stores the same value */
    for (long i = b; i < e; i++)
        a->count[i]++;
}

static void test_pool(void)
{
    TEST_CASE("pool: every item once, on a valid thread (5 threads on this machine's cores)")
    {
        gllm_cpu_pool *p = NULL;
        CHECK_OK(gllm_cpu_pool_create(5, &p));
        enum { MAXN = 5000 };
        int *count = calloc(MAXN, sizeof *count);
        int wrong = 0, runs = 3000;
        count_args a = {count, 5, 0};
        for (int r = 0; p && r < runs; r++) {
            const long n = (long)(test_rand_u64() % (MAXN + 1));
            const long grain = 1 + (long)(test_rand_u64() % 300);
            memset(count, 0, MAXN * sizeof *count);
            gllm_cpu_pool_run(p, n, grain, count_range, &a);
            for (long i = 0; i < n; i++)
                wrong += count[i] != 1;
            if (r % 500 == 0) /* let the workers fall asleep once in a while */
                usleep(2000);
        }
        CHECK_MSG(wrong == 0, "%d items ran other than once", wrong);
        CHECK(a.bad_tid == 0);
        CHECK(gllm_cpu_grain(p, 0, 10) == 1);
        CHECK(gllm_cpu_grain(p, 100, 1) == 100);        /* too small to split */
        CHECK(gllm_cpu_grain(p, 1000000, 100) == 25000); /* 8 chunks per thread */
        gllm_cpu_pool_free(p);
        free(count);
    }
}

typedef struct mm_case {
    int M, N, K, batch;
    bool ta, tb, bias, gelu, residual, rowinv;
    float beta;
} mm_case;

static void test_matmul_threads(void)
{
    static const mm_case cases[] = {
        {700, 900, 96, 1, false, true, true, true, true, false, 0},
        {300, 1100, 200, 1, false, false, false, false, false, false, 0.5f},
        {96, 80, 2100, 1, true, false, false, false, false, false, 1.0f},
        {257, 130, 70, 3, false, true, false, false, false, false, 0},
        {3, 2000, 576, 1, false, true, true, false, true, true, 0},
        {40, 1536, 576, 1, false, true, false, false, false, true, 0},
    };
    static const int threads[] = {1, 2, 3, 6};
    gllm_backend *be[4] = {0};
    for (int t = 0; t < 4; t++)
        CHECK_OK(gllm_backend_cpu_create(threads[t], &be[t]));
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const mm_case *c = &cases[ci];
        char name[160];
        snprintf(name, sizeof name,
                 "matmul M=%d N=%d K=%d batch=%d ta=%d tb=%d: same bits on 1, 2, 3, 6 threads",
                 c->M, c->N, c->K, c->batch, c->ta, c->tb);
        t_case = name;
        const size_t na = (size_t)c->M * c->K, nb = (size_t)c->K * c->N, nc = (size_t)c->M * c->N;
        float *A = malloc(na * c->batch * 4), *B = malloc(nb * c->batch * 4);
        float *C0 = malloc(nc * c->batch * 4), *C = malloc(nc * c->batch * 4);
        float *bias = malloc((size_t)c->N * 4), *res = malloc(nc * 4);
        test_fill(A, na * c->batch, 1.0f);
        test_fill(B, nb * c->batch, 0.5f);
        test_fill(C0, nc * c->batch, 1.0f);
        test_fill(bias, (size_t)c->N, 0.5f);
        test_fill(res, nc, 1.0f);
        gllm_matmul_args a = {.M = c->M, .N = c->N, .K = c->K, .trans_a = c->ta, .trans_b = c->tb,
                              .alpha = 0.75f, .beta = c->beta, .batch = c->batch,
                              .stride_a = (int64_t)na, .stride_b = (int64_t)nb,
                              .stride_c = (int64_t)nc, .bias = c->bias ? bias : NULL,
                              .epilogue = c->gelu ? GLLM_EPI_GELU : GLLM_EPI_NONE,
                              .residual = c->residual ? res : NULL, .row_invariant = c->rowinv};
        float *ref = malloc(nc * c->batch * 4);
        for (int t = 0; t < 4 && be[t]; t++) {
            memcpy(C, C0, nc * c->batch * 4); /* beta != 0 reads C */
            CHECK_OK(be[t]->matmul(be[t], C, A, B, &a));
            if (t == 0)
                memcpy(ref, C, nc * c->batch * 4);
            else
                CHECK_MSG(memcmp(C, ref, nc * c->batch * 4) == 0, "%d threads differ from 1",
                          threads[t]);
        }
        free(A), free(B), free(C0), free(C), free(bias), free(res), free(ref);
    }
    TEST_CASE("creating and using a backend leaves the caller's OpenMP thread count alone")
    {
        omp_set_num_threads(3);
        gllm_backend *b = NULL;
        CHECK_OK(gllm_backend_cpu_create(2, &b));
        float A[64 * 64], C[64 * 64];
        test_fill(A, 64 * 64, 1.0f);
        gllm_matmul_args a = {.M = 64, .N = 64, .K = 64, .alpha = 1.0f, .batch = 1};
        if (b)
            CHECK_OK(b->matmul(b, C, A, A, &a));
        CHECK(omp_get_max_threads() == 3);
        if (b)
            b->destroy(b);
    }
    for (int t = 0; t < 4; t++)
        if (be[t])
            be[t]->destroy(be[t]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_seed();
    test_parsing();
    test_default_follows_process();
    test_pool();
    test_matmul_threads();
    return test_summary();
}
