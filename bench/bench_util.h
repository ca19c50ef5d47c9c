/* What the C benchmarks share: a monotonic clock, the median of a set of
 * timings, and a seeded xorshift generator of values in [-1, 1). Header-only
 * (each bench is one executable of one .c file). */
#ifndef GLLM_BENCH_UTIL_H
#define GLLM_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sorts t[0..n) and returns its middle element (the upper one for even n) */
static inline double bench_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    return t[n / 2];
}

/* the next value in [-1, 1) of the xorshift stream whose state is *s (never 0) */
static inline float bench_randf(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (float)((*s * 2685821657736338717ull >> 40) / 8388608.0 - 1.0);
}

#endif
