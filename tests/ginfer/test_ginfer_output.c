/* ginfer's output file: results handed over out of order are written in
 * order; a file cut by a real kill -9 at chosen points (inside a line, right
 * after one, before the fsync) resumes with no result duplicated or lost. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gllm/ginfer.h"
#include "test_util.h"

#define N_RESULTS 12

static char g_path[256];

static char *result_line(long i)
{
    /* lines of different lengths, valid JSON objects */
    char *s = malloc(128);
    int pad = (int)((i * 7) % 23) + 1;
    snprintf(s, 128, "{\"index\":%ld,\"text\":\"%.*s\"}", i, pad, "abcdefghijklmnopqrstuvwxyz");
    return s;
}

static char *expected_file(long n)
{
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    s[0] = 0;
    for (long i = 0; i < n; i++) {
        char *l = result_line(i);
        len += (size_t)snprintf(s + len, cap - len, "%s\n", l);
        free(l);
    }
    return s;
}

static void write_file(const char *text)
{
    FILE *f = fopen(g_path, "wb");
    fputs(text, f);
    fclose(f);
}

static char *read_all(void)
{
    char *t = test_slurp(g_path, NULL);
    return t ? t : calloc(1, 1);
}

/* Hand results done..n-1 to a writer in a scrambled order, syncing after each. */
static gllm_status feed(gllm_ginfer_out *w, long n, uint64_t perm_seed)
{
    long done = gllm_ginfer_out_next(w);
    long m = n - done;
    long *order = malloc(sizeof(long) * (size_t)(m > 0 ? m : 1));
    for (long i = 0; i < m; i++)
        order[i] = done + i;
    uint64_t s = perm_seed | 1;
    for (long i = m - 1; i > 0; i--) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        long j = (long)(s % (uint64_t)(i + 1));
        long t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    gllm_status st = GLLM_OK;
    for (long i = 0; i < m && st == GLLM_OK; i++) {
        st = gllm_ginfer_out_put(w, order[i], result_line(order[i]));
        if (st == GLLM_OK)
            st = gllm_ginfer_out_sync(w);
    }
    free(order);
    return st;
}

/* A child that writes the file and kills itself (SIGKILL) at result k after b bytes. */
static int run_and_crash(long k, long b, uint64_t perm_seed)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char env[64];
        snprintf(env, sizeof env, "%ld:%ld", k, b);
        setenv("GLLM_GINFER_CRASH", env, 1);
        gllm_ginfer_out *w = NULL;
        if (gllm_ginfer_out_open(g_path, false, &w) != GLLM_OK)
            _exit(3);
        feed(w, N_RESULTS, perm_seed);
        _exit(4); /* the crash point was never reached */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

int main(void)
{
    test_seed();
    snprintf(g_path, sizeof g_path, "ginfer_out_test_%d.jsonl", (int)getpid());
    unlink(g_path);
    char *want = expected_file(N_RESULTS);

    TEST_CASE("results arrive out of order, the file is in order") {
        gllm_ginfer_out *w = NULL;
        CHECK_OK(gllm_ginfer_out_open(g_path, false, &w));
        CHECK(w && gllm_ginfer_out_done(w) == 0 && gllm_ginfer_out_cut(w) == 0);
        CHECK_OK(gllm_ginfer_out_put(w, 2, result_line(2)));
        CHECK_OK(gllm_ginfer_out_put(w, 1, result_line(1)));
        CHECK_OK(gllm_ginfer_out_sync(w));
        CHECK(gllm_ginfer_out_next(w) == 0 && gllm_ginfer_out_buffered(w) == 2);
        char *t = read_all();
        CHECK(t[0] == 0); /* nothing written before result 0 */
        free(t);
        CHECK_ERR(gllm_ginfer_out_put(w, 1, result_line(1)), GLLM_ERR_INVALID, "twice");
        /* far ahead: the buffer grows */
        CHECK_OK(gllm_ginfer_out_put(w, 200, result_line(200)));
        CHECK_OK(gllm_ginfer_out_put(w, 0, result_line(0)));
        CHECK_OK(gllm_ginfer_out_sync(w));
        CHECK(gllm_ginfer_out_next(w) == 3 && gllm_ginfer_out_buffered(w) == 1);
        CHECK_ERR(gllm_ginfer_out_put(w, 0, result_line(0)), GLLM_ERR_INVALID, "twice");
        /* a second writer on the same file is refused */
        gllm_ginfer_out *w2 = NULL;
        CHECK_ERR(gllm_ginfer_out_open(g_path, false, &w2), GLLM_ERR_INVALID,
                  "another ginfer is writing");
        CHECK_OK(gllm_ginfer_out_close(w));
        t = read_all();
        char *w3 = expected_file(3);
        CHECK(strcmp(t, w3) == 0);
        free(w3);
        free(t);
    }
    TEST_CASE("resume: complete lines counted, a torn last line cut") {
        char *three = expected_file(3);
        char torn[4096];
        snprintf(torn, sizeof torn, "%s{\"index\":3,\"te", three);
        write_file(torn);
        gllm_ginfer_out *w = NULL;
        CHECK_OK(gllm_ginfer_out_open(g_path, false, &w));
        CHECK(gllm_ginfer_out_done(w) == 3 && gllm_ginfer_out_next(w) == 3);
        CHECK(gllm_ginfer_out_cut(w) == strlen("{\"index\":3,\"te"));
        const cJSON *last = gllm_ginfer_out_last(w);
        CHECK(last && cJSON_GetObjectItem(last, "index")->valueint == 2);
        char *t = read_all();
        CHECK(strcmp(t, three) == 0); /* cut at open, before anything is added */
        free(t);
        CHECK_OK(feed(w, N_RESULTS, test_rand_u64()));
        CHECK_OK(gllm_ginfer_out_close(w));
        t = read_all();
        CHECK(strcmp(t, want) == 0);
        free(t);
        free(three);
        /* a finished file resumes to nothing more */
        CHECK_OK(gllm_ginfer_out_open(g_path, false, &w));
        CHECK(gllm_ginfer_out_done(w) == N_RESULTS && gllm_ginfer_out_cut(w) == 0);
        CHECK_OK(gllm_ginfer_out_close(w));
        /* --overwrite starts over */
        CHECK_OK(gllm_ginfer_out_open(g_path, true, &w));
        CHECK(gllm_ginfer_out_done(w) == 0 && gllm_ginfer_out_last(w) == NULL);
        CHECK_OK(gllm_ginfer_out_close(w));
        t = read_all();
        CHECK(t[0] == 0);
        free(t);
    }
    TEST_CASE("a file that is not a ginfer output is refused, naming the line") {
        write_file("{\"index\":0}\nnot json\n{\"index\":2}\n");
        gllm_ginfer_out *w = NULL;
        CHECK_ERR(gllm_ginfer_out_open(g_path, false, &w), GLLM_ERR_FORMAT, ":2: not a result line");
        CHECK(w == NULL);
        write_file("[1,2]\n");
        CHECK_ERR(gllm_ginfer_out_open(g_path, false, &w), GLLM_ERR_FORMAT, ":1: not a result line");
        char dir[300];
        snprintf(dir, sizeof dir, "%s.d", g_path);
        mkdir(dir, 0755);
        CHECK_ERR(gllm_ginfer_out_open(dir, false, &w), GLLM_ERR_INVALID, "not a regular file");
        rmdir(dir);
    }
    TEST_CASE("kill -9 at chosen points, then resume: nothing duplicated or lost") {
        /* (result, bytes): at the first byte, inside a line, its last byte
         * without the newline, after the newline before the fsync */
        char *l3 = result_line(3);
        const long line3 = (long)strlen(l3);
        free(l3);
        long points[][2] = {{0, 0}, {0, 4}, {3, 1}, {3, line3 - 1}, {3, line3},
                            {3, line3 + 1}, {N_RESULTS - 1, 7}, {5, 1000}};
        for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
            unlink(g_path);
            const long k = points[p][0], b = points[p][1];
            CHECK_MSG(run_and_crash(k, b, test_rand_u64()), "point %ld:%ld: no SIGKILL", k, b);
            /* the file holds results 0..k-1 (k with its newline) and maybe a torn line */
            char *line = result_line(k);
            const long len = (long)strlen(line);
            free(line);
            gllm_ginfer_out *w = NULL;
            CHECK_OK(gllm_ginfer_out_open(g_path, false, &w));
            if (!w)
                continue;
            const long done = b > len ? k + 1 : k;
            const size_t cut = b > len ? 0 : (size_t)b;
            CHECK_MSG(gllm_ginfer_out_done(w) == done && gllm_ginfer_out_cut(w) == cut,
                      "point %ld:%ld: done %ld cut %zu, wanted %ld and %zu", k, b,
                      gllm_ginfer_out_done(w), gllm_ginfer_out_cut(w), done, cut);
            CHECK_OK(feed(w, N_RESULTS, test_rand_u64()));
            CHECK_OK(gllm_ginfer_out_close(w));
            char *t = read_all();
            CHECK_MSG(strcmp(t, want) == 0, "point %ld:%ld: file differs after resume", k, b);
            free(t);
        }
    }
    TEST_CASE("killed again while resuming") {
        unlink(g_path);
        CHECK(run_and_crash(4, 9, test_rand_u64()));
        CHECK(run_and_crash(7, 3, test_rand_u64())); /* resumes at 4, dies in 7 */
        CHECK(run_and_crash(9, 60, test_rand_u64())); /* dies after 9's newline */
        gllm_ginfer_out *w = NULL;
        CHECK_OK(gllm_ginfer_out_open(g_path, false, &w));
        CHECK(w && gllm_ginfer_out_done(w) == 10 && gllm_ginfer_out_cut(w) == 0);
        CHECK_OK(feed(w, N_RESULTS, test_rand_u64()));
        CHECK_OK(gllm_ginfer_out_close(w));
        char *t = read_all();
        CHECK(strcmp(t, want) == 0);
        free(t);
    }
    unlink(g_path);
    free(want);
    return test_summary();
}
