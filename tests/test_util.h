/* Minimal test harness shared by every test executable.
 *
 *   int main(void) {
 *       TEST_CASE("name") { CHECK(x == 1); CHECK_OK(fn()); CHECK_REL(a, b, n, 1e-4); }
 *       return test_summary();
 *   }
 *
 * A failed check prints file:line and the expression and counts a failure; the
 * test keeps going so one run lists every failure. test_skip() exits 77, which
 * ctest reports as skipped, with the reason on stdout. */
#ifndef GLLM_TEST_UTIL_H
#define GLLM_TEST_UTIL_H

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/file.h"
#include "gllm/status.h"

static int t_checks, t_failures;
static const char *t_case = "";

#define TEST_CASE(name) for (int t_once_ = (t_case = (name), 1); t_once_; t_once_ = 0)

#define CHECK(cond)                                                                     \
    do {                                                                                \
        t_checks++;                                                                     \
        if (!(cond)) {                                                                  \
            t_failures++;                                                               \
            printf("FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, t_case, #cond);         \
        }                                                                               \
    } while (0)

#define CHECK_MSG(cond, ...)                                                            \
    do {                                                                                \
        t_checks++;                                                                     \
        if (!(cond)) {                                                                  \
            t_failures++;                                                               \
            printf("FAIL %s:%d [%s]: %s: ", __FILE__, __LINE__, t_case, #cond);         \
            printf(__VA_ARGS__);                                                        \
            printf("\n");                                                               \
        }                                                                               \
    } while (0)

#define CHECK_OK(expr)                                                                  \
    do {                                                                                \
        t_checks++;                                                                     \
        gllm_status t_s_ = (expr);                                                      \
        if (t_s_ != GLLM_OK) {                                                          \
            t_failures++;                                                               \
            printf("FAIL %s:%d [%s]: %s -> %s: %s\n", __FILE__, __LINE__, t_case, #expr, \
                   gllm_status_name(t_s_), gllm_last_error());                          \
        }                                                                               \
    } while (0)

/* Expect a failure with `code` whose message contains `needle`. */
#define CHECK_ERR(expr, code, needle)                                                   \
    do {                                                                                \
        t_checks++;                                                                     \
        gllm_clear_error();                                                             \
        gllm_status t_s_ = (expr);                                                      \
        if (t_s_ != (code) || !strstr(gllm_last_error(), (needle))) {                    \
            t_failures++;                                                               \
            printf("FAIL %s:%d [%s]: %s -> %s '%s', wanted %s containing '%s'\n",        \
                   __FILE__, __LINE__, t_case, #expr, gllm_status_name(t_s_),           \
                   gllm_last_error(), gllm_status_name(code), (needle));                \
        }                                                                               \
    } while (0)

/* ||out - ref|| / ||ref|| over n floats (ref must not be all zeros). */
static inline double rel_err(const float *out, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)out[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (den == 0)
        return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}

#define CHECK_REL(out, ref, n, tol)                                                     \
    do {                                                                                \
        t_checks++;                                                                     \
        double t_e_ = rel_err((out), (ref), (n));                                       \
        if (!(t_e_ <= (tol))) {                                                         \
            t_failures++;                                                               \
            printf("FAIL %s:%d [%s]: rel_err(%s, %s) = %.3e > %.1e\n", __FILE__,        \
                   __LINE__, t_case, #out, #ref, t_e_, (double)(tol));                  \
        }                                                                               \
    } while (0)

/* Deterministic per-test random numbers (xorshift64*), seeded freshly per run
 * from the clock unless GLLM_TEST_SEED is set; the seed is printed so a failure
 * can be replayed. */
static uint64_t t_rng_state;
static inline void test_seed(void)
{
    const char *s = getenv("GLLM_TEST_SEED");
    t_rng_state = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + 1;
    if (!t_rng_state)
        t_rng_state = 1;
    printf("seed %llu (replay with GLLM_TEST_SEED)\n", (unsigned long long)t_rng_state);
}
static inline uint64_t test_rand_u64(void)
{
    t_rng_state ^= t_rng_state >> 12;
    t_rng_state ^= t_rng_state << 25;
    t_rng_state ^= t_rng_state >> 27;
    return t_rng_state * 2685821657736338717ull;
}
/* uniform in [-1, 1) */
static inline float test_randf(void) { return (float)((test_rand_u64() >> 40) / 8388608.0 - 1.0); }
static inline void test_fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * test_randf();
}

static inline int test_summary(void)
{
    printf("%d checks, %d failed\n", t_checks, t_failures);
    return t_failures ? 1 : 0;
}

/* A whole file, malloc'd and NUL-terminated, or NULL (the reason in gllm_last_error). */
static inline char *test_slurp(const char *path, size_t *len)
{
    char *text = NULL;
    return gllm_read_file(path, &text, len) == GLLM_OK ? text : NULL;
}

/* Skip the whole test (exit code 77) with a reason. */
static inline void test_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    exit(77);
}

/* The folder of the test fixtures (tests/fixtures of the checkout): $GLLM_FIXTURES
 * when set (a bundle carried to another machine, scripts/gpu_bundle.sh), else the
 * source tree this test was built from. */
static inline const char *test_fixtures_dir(void)
{
    const char *env = getenv("GLLM_FIXTURES");
    return env && *env ? env : GLLM_SOURCE_DIR "/tests/fixtures";
}

/* Path of a file under ../shared, or skip the test when the folder is absent. */
/* 1 when two files hold the same bytes (both readable), else 0. */
static inline int test_files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        same = x == y;
        if (x == EOF || y == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* GLLM_SHARED_DIR in the environment overrides the folder compiled in (the GPU
 * bundle points it at a shared-shaped folder of its own inputs). */
static inline const char *test_shared_path(const char *rel, char *buf, size_t n)
{
    const char *dir = getenv("GLLM_SHARED_DIR");
    snprintf(buf, n, "%s/%s", dir && *dir ? dir : GLLM_SHARED_DIR, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        char why[PATH_MAX + 64];
        snprintf(why, sizeof why, "%s not found (../shared assets absent)", buf);
        test_skip(why);
    }
    return buf;
}

#endif
