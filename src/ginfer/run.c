/* A ginfer run: read the input line by line, feed the engine a bounded window
 * of requests, format results as they finish and hand them to the output in
 * input order.
 *
 * Replicas: with o->replicas = N > 1 the process forks N workers before any
 * thread pool exists; worker r loads its own model (on cuda:r with --gpus, on
 * a share of the CPU cores otherwise) and answers the lines whose index is
 * r mod N. Each worker sends its result lines through a pipe; the parent alone
 * writes the output, in order, so resume works exactly as with one process.
 * Identifiers and seeds depend on the line only, so N replicas write the same
 * file as one process. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "ginfer_internal.h"
#include "gllm/backend.h"
#include "gllm/backend_cpu.h"
#include "gllm/jsonl.h"
#include "gllm/model.h"

#define TAKE_BATCH 64

void gllm_ginfer_options_default(gllm_ginfer_options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = "auto";
    o->replicas = 1;
    o->engine = gllm_engine_options_default();
}

/* ------------------------------------------------------------ where results go */

typedef struct gi_sink gi_sink;
struct gi_sink {
    /* result `index` (line owned by the sink from here on) */
    gllm_status (*result)(gi_sink *s, long index, bool error, char *line);
    /* after each engine step: counters of this process, and its device */
    gllm_status (*step)(gi_sink *s, const gi_stats *st, const char *device, bool final);
    /* results held back waiting for an earlier one (bounds the read-ahead) */
    long (*backlog)(gi_sink *s);
};

/* In-process: straight to the output file. */
typedef struct local_sink {
    gi_sink base;
    gllm_ginfer_out *out;
    gi_progress_state prog;
    long total, errors;
    gi_stats stats;
    char device[64];
} local_sink;

static gllm_status local_result(gi_sink *s, long index, bool error, char *line)
{
    local_sink *l = (local_sink *)s;
    l->errors += error;
    return gllm_ginfer_out_put(l->out, index, line);
}

static gllm_status local_step(gi_sink *s, const gi_stats *st, const char *device, bool final)
{
    local_sink *l = (local_sink *)s;
    l->stats = *st;
    snprintf(l->device, sizeof l->device, "%s", device);
    GLLM_TRY(gllm_ginfer_out_sync(l->out));
    gi_progress(&l->prog, gllm_ginfer_out_next(l->out), l->total, l->errors, &l->stats, final);
    return GLLM_OK;
}

static long local_backlog(gi_sink *s)
{
    return gllm_ginfer_out_buffered(((local_sink *)s)->out);
}

/* In a worker: through a pipe to the parent, one message per line:
 *   R <index> <error 0|1> <result line>   a result
 *   S <counters>                          progress (every half second, and last)
 *   D <device>                            the device, once
 *   E <message>                           why the worker failed
 *   F <message>                           --fail-fast stopped it at a bad line */
typedef struct pipe_sink {
    gi_sink base;
    int fd;
    double last;
    bool device_sent;
} pipe_sink;

static gllm_status pipe_write(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return gllm_fail(GLLM_ERR_IO, "replica: writing to the parent failed: %s",
                             strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return GLLM_OK;
}

static gllm_status pipe_result(gi_sink *s, long index, bool error, char *line)
{
    pipe_sink *p = (pipe_sink *)s;
    const size_t n = strlen(line);
    char *msg = malloc(n + 48);
    if (!msg) {
        free(line);
        return gllm_fail(GLLM_ERR_OOM, "replica: out of memory");
    }
    int k = snprintf(msg, 48, "R %ld %d ", index, error ? 1 : 0);
    memcpy(msg + k, line, n);
    msg[(size_t)k + n] = '\n';
    gllm_status st = pipe_write(p->fd, msg, (size_t)k + n + 1);
    free(msg);
    free(line);
    return st;
}

static gllm_status pipe_step(gi_sink *s, const gi_stats *st, const char *device, bool final)
{
    pipe_sink *p = (pipe_sink *)s;
    char msg[512];
    if (!p->device_sent) {
        snprintf(msg, sizeof msg, "D %s\n", device);
        GLLM_TRY(pipe_write(p->fd, msg, strlen(msg)));
        p->device_sent = true;
    }
    const double now = gi_now();
    if (!final && now - p->last < 0.5)
        return GLLM_OK;
    p->last = now;
    snprintf(msg, sizeof msg, "S %lld %lld %lld %lld %d %d %zu %zu %.3f %d\n",
             (long long)st->prompt_tokens, (long long)st->cached_tokens,
             (long long)st->generated_tokens, (long long)st->preemptions, st->kv_blocks_used,
             st->kv_blocks_total, st->kv_bytes, st->peak_bytes, st->rss_mib, st->block_size);
    return pipe_write(p->fd, msg, strlen(msg));
}

static long pipe_backlog(gi_sink *s)
{
    (void)s; /* the parent stops reading a replica that runs too far ahead */
    return 0;
}

/* ------------------------------------------------------------ one replica */

static gllm_status open_backend(const gllm_ginfer_options *o, int rank, int world,
                                gllm_backend **be)
{
    if (o->gpus) {
        char name[32];
        snprintf(name, sizeof name, "cuda:%d", rank);
        gllm_status st = gllm_backend_open(name, be);
        if (st != GLLM_OK)
            return gllm_fail_prefix(st, "--gpus %d: ", world);
        return GLLM_OK;
    }
    int threads = o->threads;
    if (threads <= 0 && world > 1) {
        /* the cores this process may use (affinity mask, cgroup quota,
         * OMP_NUM_THREADS), not the machine's, shared among the replicas */
        const int cores = gllm_cpu_default_threads();
        threads = cores > world ? cores / world : 1;
    }
    if (strcmp(o->backend, "cpu") == 0)
        return gllm_backend_cpu_create(threads, be);
    if (strcmp(o->backend, "auto") == 0) {
        if (gllm_backend_cuda_create(0, be) == GLLM_OK)
            return GLLM_OK;
        gllm_clear_error();
        return gllm_backend_cpu_create(threads, be);
    }
    return gllm_backend_open(o->backend, be);
}

static void model_name(const char *path, char *out, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t len = strlen(tmp);
    while (len > 1 && tmp[len - 1] == '/')
        tmp[--len] = 0;
    snprintf(out, n, "%s", basename(tmp));
}

static void engine_stats(const gllm_engine *e, gi_stats *s)
{
    gllm_engine_stats es;
    gllm_engine_get_stats(e, &es);
    s->prompt_tokens = es.prompt_tokens;
    s->cached_tokens = es.cached_tokens;
    s->generated_tokens = es.generated_tokens;
    s->preemptions = es.preemptions;
    s->kv_blocks_used = es.kv_blocks_used;
    s->kv_blocks_total = es.kv_blocks_total;
    s->kv_bytes = es.kv_bytes;
    s->block_size = es.block_size;
    s->peak_bytes = es.peak_bytes;
    s->rss_mib = gi_peak_rss_mib();
}

typedef struct replica {
    const gllm_ginfer_options *o;
    int rank, world;
    long skip;            /* lines already answered (resume) */
    long long created;
    gllm_backend *be;
    gllm_model *m;
    gllm_tokenizer *tok;
    gllm_chat_template *chat;
    char chat_why[512];
    gllm_engine *e;
    gllm_jsonl *in;
    gllm_ginfer_item *slots;
    int *free_slots, n_free, window;
    char device[64];
} replica;

static void replica_free(replica *r)
{
    if (r->slots)
        for (int i = 0; i < r->window; i++)
            gllm_ginfer_item_free(&r->slots[i]);
    free(r->slots);
    free(r->free_slots);
    gllm_jsonl_close(r->in);
    gllm_engine_free(r->e);
    gllm_chat_free(r->chat);
    gllm_tok_free(r->tok);
    gllm_model_free(r->m);
    if (r->be)
        r->be->destroy(r->be);
}

static gllm_status replica_open(replica *r)
{
    const gllm_ginfer_options *o = r->o;
    GLLM_TRY(open_backend(o, r->rank, r->world, &r->be));
    snprintf(r->device, sizeof r->device, "%s", r->be->name);
    gllm_status st = gllm_model_load(o->model, r->be, &r->m);
    if (st == GLLM_ERR_OOM && strncmp(r->be->name, "cuda", 4) == 0)
        return gllm_fail_prefix(st,
                                "%s does not fit on one GPU (ginfer runs one whole replica per "
                                "GPU and does not split a model): ",
                                o->model);
    if (st != GLLM_OK)
        return st;
    /* the tokenizer and chat template: an HF folder's tokenizer.json, or
     * inside a .gguf file (a folder without one runs prompts given as ids) */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->model);
    const size_t ml = strlen(o->model);
    const bool gguf = ml > 5 && strcmp(o->model + ml - 5, ".gguf") == 0;
    struct stat sb;
    if (gguf || stat(path, &sb) == 0) {
        GLLM_TRY(gllm_tok_load(o->model, &r->tok));
        /* --chat-template: a built-in name, or a file of template source */
        char *src = NULL;
        if (o->chat_template && stat(o->chat_template, &sb) == 0 && S_ISREG(sb.st_mode))
            GLLM_TRY(gllm_read_file(o->chat_template, &src, NULL));
        gllm_status cst = gllm_chat_load(o->model, src ? src : o->chat_template, &r->chat);
        free(src);
        if (cst != GLLM_OK) {
            snprintf(r->chat_why, sizeof r->chat_why, "%s", gllm_last_error());
            gllm_clear_error();
        }
    } else
        snprintf(r->chat_why, sizeof r->chat_why, "%s has no tokenizer.json", o->model);
    gllm_engine_options eo = o->engine;
    eo.tok = r->tok;
    GLLM_TRY(gllm_engine_create(r->m, &eo, &r->e));
    GLLM_TRY(gllm_jsonl_open(o->input, &r->in));
    const int max_seqs = eo.max_seqs > 0 ? eo.max_seqs : 256;
    r->window = o->window > 0 ? o->window : 4 * max_seqs;
    r->slots = calloc((size_t)r->window, sizeof *r->slots);
    r->free_slots = malloc((size_t)r->window * sizeof *r->free_slots);
    if (!r->slots || !r->free_slots)
        return gllm_fail(GLLM_ERR_OOM, "ginfer: out of memory");
    for (int i = 0; i < r->window; i++)
        r->free_slots[i] = r->window - 1 - i;
    r->n_free = r->window;
    return GLLM_OK;
}

/* Hand over every finished result. */
static gllm_status drain(replica *r, gi_sink *sink, const gllm_ginfer_format_ctx *fc)
{
    gllm_result res[TAKE_BATCH];
    for (;;) {
        int n = gllm_engine_take(r->e, res, TAKE_BATCH);
        gllm_status st = GLLM_OK;
        for (int i = 0; i < n; i++) {
            const int slot = (int)res[i].tag;
            gllm_ginfer_item *it = &r->slots[slot];
            if (st == GLLM_OK) {
                char *line = gllm_ginfer_format(it, &res[i], fc);
                st = line ? sink->result(sink, it->index, res[i].status != GLLM_OK, line)
                          : gllm_fail(GLLM_ERR_OOM, "ginfer: out of memory");
            }
            gllm_result_free(&res[i]);
            gllm_ginfer_item_free(it);
            r->free_slots[r->n_free++] = slot;
        }
        GLLM_TRY(st);
        if (n < TAKE_BATCH)
            return GLLM_OK;
    }
}

static gllm_status replica_loop(replica *r, gi_sink *sink)
{
    const gllm_ginfer_options *o = r->o;
    char name[128];
    model_name(o->model, name, sizeof name);
    const gllm_ginfer_format_ctx fc = {.tok = r->tok, .model_name = name, .created = r->created};
    const int n_ctx = gllm_model_cfg(r->m)->max_pos;
    const long backlog_limit = 8L * r->window;
    long index = -1;
    bool eof = false;
    gllm_status fatal = GLLM_OK;
    char fatal_msg[640] = "";
    gi_stats stats;
    for (;;) {
        /* admit lines while there is room in the window and the output keeps up */
        while (!eof && fatal == GLLM_OK && r->n_free > 0 && sink->backlog(sink) < backlog_limit) {
            cJSON *obj = NULL;
            long lineno = 0;
            gllm_status st = gllm_jsonl_next(r->in, &obj, &lineno);
            if (st != GLLM_OK && st != GLLM_ERR_FORMAT) {
                fatal = st;
                snprintf(fatal_msg, sizeof fatal_msg, "%s", gllm_last_error());
                break;
            }
            if (st == GLLM_OK && !obj) {
                eof = true;
                break;
            }
            index++;
            /* with --fail-fast every replica checks every line, so that all
             * of them stop at the same bad line */
            const bool mine = index >= r->skip && index % r->world == r->rank;
            if (!mine && !(o->fail_fast && index >= r->skip)) {
                cJSON_Delete(obj);
                continue;
            }
            gllm_ginfer_item it;
            gllm_ginfer_parse(obj, st == GLLM_ERR_FORMAT ? gllm_last_error() : NULL, &o->defaults,
                              o->input, index, lineno, &it);
            cJSON_Delete(obj);
            gllm_ginfer_encoded enc;
            gllm_ginfer_encode(&it, r->tok, r->chat, r->chat_why[0] ? r->chat_why : NULL, &enc);
            if (!mine && it.status == GLLM_OK) {
                gllm_ginfer_encoded_free(&enc);
                gllm_ginfer_item_free(&it);
                continue;
            }
            if (it.status != GLLM_OK) {
                gllm_ginfer_encoded_free(&enc);
                if (o->fail_fast) {
                    fatal = GLLM_ERR_FORMAT;
                    snprintf(fatal_msg, sizeof fatal_msg, "%s (--fail-fast stops here)",
                             it.error);
                    gllm_ginfer_item_free(&it);
                    break;
                }
                char *line = gllm_ginfer_format(&it, NULL, &fc);
                gllm_ginfer_item_free(&it);
                st = line ? sink->result(sink, index, true, line)
                          : gllm_fail(GLLM_ERR_OOM, "ginfer: out of memory");
                if (st != GLLM_OK) {
                    fatal = st;
                    snprintf(fatal_msg, sizeof fatal_msg, "%s", gllm_last_error());
                    break;
                }
                continue;
            }
            const int slot = r->free_slots[--r->n_free];
            gllm_request req;
            gllm_ginfer_request(&it, &enc, o->seed, n_ctx, (uint64_t)slot, &req);
            st = gllm_engine_add(r->e, &req);
            gllm_ginfer_encoded_free(&enc);
            r->slots[slot] = it;
            if (st != GLLM_OK) {
                fatal = st;
                snprintf(fatal_msg, sizeof fatal_msg, "%s", gllm_last_error());
                break;
            }
        }
        if (gllm_engine_pending(r->e) > 0) {
            gllm_status st = gllm_engine_step(r->e);
            if (st != GLLM_OK)
                return gllm_fail_prefix(st, "engine step: ");
        }
        GLLM_TRY(drain(r, sink, &fc));
        const bool done = gllm_engine_pending(r->e) == 0 && (eof || fatal != GLLM_OK);
        engine_stats(r->e, &stats);
        GLLM_TRY(sink->step(sink, &stats, r->device, done));
        if (done)
            break;
    }
    if (fatal != GLLM_OK)
        return gllm_fail(fatal, "%s", fatal_msg);
    return GLLM_OK;
}

static gllm_status run_replica(const gllm_ginfer_options *o, int rank, int world, long skip,
                               long long created, gi_sink *sink)
{
    replica r = {.o = o, .rank = rank, .world = world, .skip = skip, .created = created};
    gllm_status st = replica_open(&r);
    if (st == GLLM_OK)
        st = replica_loop(&r, sink);
    replica_free(&r);
    return st;
}

/* ------------------------------------------------------------ the parent */

typedef struct worker {
    pid_t pid;
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
    gi_stats stats;
    char error[1024];
    bool fail_fast_stop;
} worker;

typedef struct merge {
    gllm_ginfer_out *out;
    worker *w;
    int n;
    long errors;
    char device[48];
} merge;

static gllm_status handle_message(merge *m, worker *w, char *msg)
{
    if (msg[0] == 'R' && msg[1] == ' ') {
        char *p = msg + 2, *end;
        long index = strtol(p, &end, 10);
        if (end == p || end[0] != ' ' || (end[1] != '0' && end[1] != '1') || end[2] != ' ')
            return gllm_fail(GLLM_ERR_FORMAT, "replica %d sent a malformed result message",
                             (int)(w - m->w));
        m->errors += end[1] == '1';
        char *line = malloc(strlen(end + 3) + 1);
        if (!line)
            return gllm_fail(GLLM_ERR_OOM, "ginfer: out of memory");
        strcpy(line, end + 3);
        return gllm_ginfer_out_put(m->out, index, line);
    }
    if (msg[0] == 'S' && msg[1] == ' ') {
        gi_stats *s = &w->stats;
        long long a, b, c, d;
        if (sscanf(msg + 2, "%lld %lld %lld %lld %d %d %zu %zu %lf %d", &a, &b, &c, &d,
                   &s->kv_blocks_used, &s->kv_blocks_total, &s->kv_bytes, &s->peak_bytes,
                   &s->rss_mib, &s->block_size) == 10) {
            s->prompt_tokens = a;
            s->cached_tokens = b;
            s->generated_tokens = c;
            s->preemptions = d;
        }
        return GLLM_OK;
    }
    if (msg[0] == 'D' && msg[1] == ' ') {
        snprintf(m->device, sizeof m->device, "%s", msg + 2);
        return GLLM_OK;
    }
    if ((msg[0] == 'E' || msg[0] == 'F') && msg[1] == ' ') {
        snprintf(w->error, sizeof w->error, "%s", msg + 2);
        w->fail_fast_stop = msg[0] == 'F';
        return GLLM_OK;
    }
    return gllm_fail(GLLM_ERR_FORMAT, "replica %d sent an unknown message", (int)(w - m->w));
}

/* Read what worker w has sent; handle every complete message. */
static gllm_status read_worker(merge *m, worker *w)
{
    if (w->cap - w->len < 65536) {
        size_t cap = w->cap ? w->cap * 2 : 1 << 17;
        char *b = realloc(w->buf, cap);
        if (!b)
            return gllm_fail(GLLM_ERR_OOM, "ginfer: out of memory");
        w->buf = b;
        w->cap = cap;
    }
    ssize_t k = read(w->fd, w->buf + w->len, w->cap - w->len - 1);
    if (k < 0)
        return errno == EINTR ? GLLM_OK
                              : gllm_fail(GLLM_ERR_IO, "reading from a replica: %s",
                                          strerror(errno));
    if (k == 0) {
        w->eof = true;
        return GLLM_OK;
    }
    w->len += (size_t)k;
    size_t start = 0;
    for (;;) {
        char *nl = memchr(w->buf + start, '\n', w->len - start);
        if (!nl)
            break;
        *nl = 0;
        GLLM_TRY(handle_message(m, w, w->buf + start));
        start = (size_t)(nl - w->buf) + 1;
    }
    memmove(w->buf, w->buf + start, w->len - start);
    w->len -= start;
    return GLLM_OK;
}

static gllm_status run_replicas(const gllm_ginfer_options *o, gllm_ginfer_out *out, long skip,
                                long total, long long created, gi_progress_state *prog,
                                gllm_ginfer_summary *sum, gi_stats *totals)
{
    const int n = o->replicas;
    merge m = {.out = out, .n = n};
    m.w = calloc((size_t)n, sizeof *m.w);
    if (!m.w)
        return gllm_fail(GLLM_ERR_OOM, "ginfer: out of memory");
    const pid_t parent = getpid();
    gllm_status st = GLLM_OK;
    int started = 0;
    for (int r = 0; r < n; r++) {
        int fds[2];
        if (pipe(fds) != 0) {
            st = gllm_fail(GLLM_ERR_IO, "ginfer: pipe: %s", strerror(errno));
            break;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            close(fds[0]);
            close(fds[1]);
            st = gllm_fail(GLLM_ERR_IO, "ginfer: fork: %s", strerror(errno));
            break;
        }
        if (pid == 0) {
            /* a worker dies with the parent (kill -9 included) */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            close(fds[0]);
            for (int q = 0; q < r; q++)
                close(m.w[q].fd);
            gi_out_forget(out);
            signal(SIGPIPE, SIG_DFL);
            pipe_sink ps = {.base = {pipe_result, pipe_step, pipe_backlog}, .fd = fds[1]};
            gllm_status ws = run_replica(o, r, n, skip, created, &ps.base);
            if (ws != GLLM_OK) {
                /* F: a --fail-fast stop (every replica stops at the same line,
                 * after sending all its results before it); E: a failure */
                char msg[1100];
                snprintf(msg, sizeof msg, "%c %s\n",
                         o->fail_fast && ws == GLLM_ERR_FORMAT ? 'F' : 'E', gllm_last_error());
                for (char *p = msg + 2; *p && p[1]; p++)
                    if (*p == '\n')
                        *p = ' ';
                pipe_write(fds[1], msg, strlen(msg));
            }
            _exit(ws == GLLM_OK ? 0 : 1);
        }
        close(fds[1]);
        m.w[r].pid = pid;
        m.w[r].fd = fds[0];
        started++;
    }
    /* merge until every worker has closed its pipe */
    const long limit = 64L * 1024;
    struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
    int *who = calloc((size_t)n, sizeof *who);
    bool failed = st != GLLM_OK, stopped = false;
    while (st == GLLM_OK && pfd && who) {
        int np = 0;
        const long next = gllm_ginfer_out_next(out);
        for (int r = 0; r < started; r++) {
            if (m.w[r].eof)
                continue;
            /* a replica far ahead of the output waits (its pipe fills), except
             * the one that owns the next line */
            if (gllm_ginfer_out_buffered(out) > limit && next % n != r)
                continue;
            pfd[np] = (struct pollfd){.fd = m.w[r].fd, .events = POLLIN};
            who[np++] = r;
        }
        if (np == 0)
            break;
        int k = poll(pfd, (nfds_t)np, 1000);
        if (k < 0 && errno != EINTR) {
            st = gllm_fail(GLLM_ERR_IO, "ginfer: poll: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < np && k > 0 && st == GLLM_OK; i++)
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                worker *w = &m.w[who[i]];
                st = read_worker(&m, w);
                if (w->eof) {
                    int ws = 0;
                    waitpid(w->pid, &ws, 0);
                    w->pid = 0;
                    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
                        if (!w->error[0])
                            snprintf(w->error, sizeof w->error, "replica %d %s %d", who[i],
                                     WIFSIGNALED(ws) ? "killed by signal" : "exited with",
                                     WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
                        if (w->fail_fast_stop)
                            stopped = true; /* the others stop at the same line */
                        else
                            failed = true;
                    }
                }
            }
        if (st == GLLM_OK)
            st = gllm_ginfer_out_sync(out);
        gi_stats per_total;
        gi_stats tmp[256];
        for (int r = 0; r < started && r < 256; r++)
            tmp[r] = m.w[r].stats;
        gi_stats_total(tmp, started < 256 ? started : 256, &per_total);
        gi_progress(prog, gllm_ginfer_out_next(out), total, m.errors, &per_total, false);
        if (failed)
            break;
    }
    free(pfd);
    free(who);
    /* stop whatever still runs (after a failure), then reap */
    for (int r = 0; r < started; r++)
        if (m.w[r].pid > 0)
            kill(m.w[r].pid, SIGTERM);
    for (int r = 0; r < started; r++) {
        if (m.w[r].pid > 0)
            waitpid(m.w[r].pid, NULL, 0);
        close(m.w[r].fd);
    }
    gi_stats tmp[256];
    for (int r = 0; r < started && r < 256; r++)
        tmp[r] = m.w[r].stats;
    gi_stats_total(tmp, started < 256 ? started : 256, totals);
    sum->errors = m.errors;
    snprintf(sum->device, sizeof sum->device, "%d x %.40s", n, m.device[0] ? m.device : o->backend);
    if (st == GLLM_OK && (failed || stopped)) {
        for (int r = 0; r < started; r++)
            if (m.w[r].error[0] && (failed ? !m.w[r].fail_fast_stop : true)) {
                st = failed ? gllm_fail(GLLM_ERR_BACKEND, "replica %d: %s", r, m.w[r].error)
                            : gllm_fail(GLLM_ERR_FORMAT, "%s", m.w[r].error);
                break;
            }
        if (st == GLLM_OK)
            st = gllm_fail(GLLM_ERR_BACKEND, "a replica failed");
    }
    for (int r = 0; r < n; r++)
        free(m.w[r].buf);
    free(m.w);
    return st;
}

/* ------------------------------------------------------------ the whole run */

/* Count the input's lines; check that the output's last result answers line done-1. */
static gllm_status check_input(const gllm_ginfer_options *o, const cJSON *last, long done,
                               long *total)
{
    gllm_jsonl *in;
    GLLM_TRY(gllm_jsonl_open(o->input, &in));
    long n = 0;
    gllm_status st = GLLM_OK;
    for (;;) {
        cJSON *obj = NULL;
        long lineno = 0;
        st = gllm_jsonl_next(in, &obj, &lineno);
        if (st != GLLM_OK && st != GLLM_ERR_FORMAT)
            break;
        if (st == GLLM_OK && !obj)
            break;
        if (n == done - 1 && last) {
            gllm_ginfer_item it;
            gllm_ginfer_parse(obj, st == GLLM_ERR_FORMAT ? gllm_last_error() : NULL, NULL,
                              o->input, n, lineno, &it);
            const bool same = gllm_ginfer_result_matches(last, &it);
            gllm_ginfer_item_free(&it);
            if (!same) {
                cJSON_Delete(obj);
                gllm_jsonl_close(in);
                return gllm_fail(GLLM_ERR_INVALID,
                                 "%s: its result %ld does not answer %s:%ld: the output belongs "
                                 "to another input (--overwrite starts it over)",
                                 o->output, done, o->input, lineno);
            }
        }
        cJSON_Delete(obj);
        n++;
    }
    gllm_jsonl_close(in);
    if (st != GLLM_OK && st != GLLM_ERR_FORMAT)
        return st;
    gllm_clear_error();
    if (done > n)
        return gllm_fail(GLLM_ERR_INVALID,
                         "%s has %ld results but %s has %ld lines: the output belongs to another "
                         "input (--overwrite starts it over)",
                         o->output, done, o->input, n);
    *total = n;
    return GLLM_OK;
}

gllm_status gllm_ginfer_run(const gllm_ginfer_options *o, gllm_ginfer_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    if (!o->model || !o->input || !o->output)
        return gllm_fail(GLLM_ERR_INVALID, "ginfer: model, input and output are needed");
    if (o->replicas < 1 || o->replicas > 256)
        return gllm_fail(GLLM_ERR_INVALID, "ginfer: replicas must be in 1..256, got %d",
                         o->replicas);
    const double t0 = gi_now();
    const long long created = (long long)time(NULL);
    gllm_ginfer_out *out = NULL;
    GLLM_TRY(gllm_ginfer_out_open(o->output, o->overwrite, &out));
    const long done = gllm_ginfer_out_done(out);
    long total = 0;
    gllm_status st = check_input(o, gllm_ginfer_out_last(out), done, &total);
    if (st != GLLM_OK) {
        gllm_ginfer_out_close(out);
        return st;
    }
    if (!o->quiet && (done > 0 || gllm_ginfer_out_cut(out) > 0))
        fprintf(stderr, "ginfer: resuming %s after %ld of %ld results%s\n", o->output, done,
                total, gllm_ginfer_out_cut(out) ? " (a torn last line was cut off)" : "");
    gi_progress_state prog = {.tty = o->progress_tty, .quiet = o->quiet, .t0 = t0,
                              .done_before = done};
    gi_stats totals = {0};
    sum->total = total;
    sum->done_before = done;
    if (done < total) {
        if (o->replicas > 1)
            st = run_replicas(o, out, done, total, created, &prog, sum, &totals);
        else {
            local_sink ls = {.base = {local_result, local_step, local_backlog}, .out = out,
                             .prog = prog, .total = total};
            st = run_replica(o, 0, 1, done, created, &ls.base);
            totals = ls.stats;
            sum->errors = ls.errors;
            snprintf(sum->device, sizeof sum->device, "%s", ls.device);
            prog = ls.prog;
        }
    } else
        snprintf(sum->device, sizeof sum->device, "none (nothing left to run)");
    char err[1024] = "";
    if (st != GLLM_OK)
        snprintf(err, sizeof err, "%s", gllm_last_error());
    const long next = gllm_ginfer_out_next(out);
    gllm_status cs = gllm_ginfer_out_close(out);
    if (st == GLLM_OK && cs != GLLM_OK) {
        st = cs;
        snprintf(err, sizeof err, "%s", gllm_last_error());
    }
    if (st == GLLM_OK && next != total) {
        st = GLLM_ERR_BACKEND;
        snprintf(err, sizeof err, "%s: %ld of %ld results written", o->output, next, total);
    }
    sum->done = next;
    sum->wall_s = gi_now() - t0;
    sum->prompt_tokens = totals.prompt_tokens;
    sum->cached_tokens = totals.cached_tokens;
    sum->generated_tokens = totals.generated_tokens;
    sum->preemptions = totals.preemptions;
    sum->peak_bytes = totals.peak_bytes;
    const double own = gi_peak_rss_mib();
    sum->peak_rss_mib = totals.rss_mib > own ? totals.rss_mib : own;
    if (done < total && o->replicas > 1) /* one process prints its own last line */
        gi_progress(&prog, next, total, sum->errors, &totals, true);
    char path[PATH_MAX];
    gi_summary_path(o, path, sizeof path);
    gllm_status ss = gi_write_summary(path, o, sum, &totals);
    if (st == GLLM_OK && ss != GLLM_OK)
        return ss;
    if (st != GLLM_OK)
        return gllm_fail(st, "%s", err);
    return GLLM_OK;
}
