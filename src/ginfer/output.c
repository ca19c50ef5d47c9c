/* The output file: append-only, one result per line in input order, fsync'd.
 *
 * Resume rests on one invariant: every write appends whole lines ending in
 * '\n', in index order, so the file is always "results 0..k-1, complete"
 * followed by at most one torn line (a run killed, or a machine lost, in the
 * middle of a write). Opening it again counts the complete lines, cuts the
 * torn tail off, and the run continues with result k. Results that arrive out
 * of order wait in memory until every earlier one is there.
 *
 * Fault injection for the kill -9 tests: GLLM_GINFER_CRASH="K:B" makes the
 * process kill itself with SIGKILL after writing the first B bytes of result
 * K (B past the line's length: after the whole line, before its fsync). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ginfer_internal.h"
#include "gllm/jsonl.h"

struct gllm_ginfer_out {
    int fd;
    char *path;
    long done_at_open;
    size_t cut;
    cJSON *last;
    long next;         /* next index to write */
    char **ring;       /* ring[i % cap]: result i, for next <= i < next + cap */
    long cap;
    long held;
    long crash_index;  /* fault injection (-1: off) */
    size_t crash_bytes;
};

static gllm_status write_all(gllm_ginfer_out *w, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return gllm_fail(GLLM_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return GLLM_OK;
}

/* fsync the folder holding path, so that a newly created file's name is durable */
static void sync_dir(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Count the complete lines of an existing output; *end is the byte offset
 * after the last one. Every complete line must be a JSON object. */
static gllm_status scan(gllm_ginfer_out *w, off_t *end)
{
    gllm_jsonl *r;
    GLLM_TRY(gllm_jsonl_open(w->path, &r));
    off_t off = 0;
    long n = 0;
    gllm_status st = GLLM_OK;
    for (;;) {
        const char *line;
        size_t len;
        long lineno;
        bool nl;
        st = gllm_jsonl_next_line(r, &line, &len, &lineno, &nl);
        if (st != GLLM_OK || !line)
            break;
        if (!nl)
            break; /* the torn tail */
        cJSON *o = cJSON_ParseWithLength(line, len);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            st = gllm_fail(GLLM_ERR_FORMAT,
                           "%s:%ld: not a result line (JSON object): is this a ginfer output? "
                           "(--overwrite starts it over)",
                           w->path, lineno);
            break;
        }
        cJSON_Delete(w->last);
        w->last = o;
        off += (off_t)len + 1;
        n++;
    }
    gllm_jsonl_close(r);
    *end = off;
    w->done_at_open = n;
    return st;
}

gllm_status gllm_ginfer_out_open(const char *path, bool overwrite, gllm_ginfer_out **out)
{
    *out = NULL;
    gllm_ginfer_out *w = calloc(1, sizeof *w);
    if (!w)
        return gllm_fail(GLLM_ERR_OOM, "output writer: out of memory");
    w->fd = -1;
    w->crash_index = -1;
    w->path = malloc(strlen(path) + 1);
    if (!w->path) {
        free(w);
        return gllm_fail(GLLM_ERR_OOM, "output writer: out of memory");
    }
    strcpy(w->path, path);
    gllm_status st = GLLM_OK;
    struct stat sb;
    const bool existed = stat(path, &sb) == 0;
    if (existed && !S_ISREG(sb.st_mode)) {
        st = gllm_fail(GLLM_ERR_INVALID, "%s: the output is not a regular file", path);
        goto fail;
    }
    w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = gllm_fail(GLLM_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
        st = gllm_fail(GLLM_ERR_INVALID, "%s: another ginfer is writing this output", path);
        goto fail;
    }
    off_t end = 0;
    if (!overwrite && existed) {
        st = scan(w, &end);
        if (st != GLLM_OK)
            goto fail;
    }
    off_t size = lseek(w->fd, 0, SEEK_END);
    if (size < 0 || size < end) {
        st = gllm_fail(GLLM_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto fail;
    }
    w->cut = (size_t)(size - end);
    if (size != end) {
        if (ftruncate(w->fd, end) != 0 || fsync(w->fd) != 0) {
            st = gllm_fail(GLLM_ERR_IO, "%s: cannot cut the torn last line: %s", path,
                           strerror(errno));
            goto fail;
        }
    }
    if (lseek(w->fd, 0, SEEK_END) != end) {
        st = gllm_fail(GLLM_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto fail;
    }
    if (!existed)
        sync_dir(path);
    w->next = w->done_at_open;
    w->cap = 64;
    w->ring = calloc((size_t)w->cap, sizeof *w->ring);
    if (!w->ring) {
        st = gllm_fail(GLLM_ERR_OOM, "output writer: out of memory");
        goto fail;
    }
    const char *crash = getenv("GLLM_GINFER_CRASH");
    unsigned long long cb = 0;
    long ci = -1;
    if (crash && sscanf(crash, "%ld:%llu", &ci, &cb) == 2) {
        w->crash_index = ci;
        w->crash_bytes = (size_t)cb;
    }
    *out = w;
    return GLLM_OK;
fail:
    if (w->fd >= 0)
        close(w->fd);
    cJSON_Delete(w->last);
    free(w->ring);
    free(w->path);
    free(w);
    return st;
}

void gi_out_forget(gllm_ginfer_out *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

long gllm_ginfer_out_done(const gllm_ginfer_out *w) { return w->done_at_open; }
size_t gllm_ginfer_out_cut(const gllm_ginfer_out *w) { return w->cut; }
const cJSON *gllm_ginfer_out_last(const gllm_ginfer_out *w) { return w->last; }
long gllm_ginfer_out_next(const gllm_ginfer_out *w) { return w->next; }
long gllm_ginfer_out_buffered(const gllm_ginfer_out *w) { return w->held; }

static gllm_status grow(gllm_ginfer_out *w, long need)
{
    long cap = w->cap;
    while (cap <= need)
        cap *= 2;
    char **ring = calloc((size_t)cap, sizeof *ring);
    if (!ring)
        return gllm_fail(GLLM_ERR_OOM, "output writer: out of memory");
    for (long i = w->next; i < w->next + w->cap; i++)
        ring[i % cap] = w->ring[i % w->cap];
    free(w->ring);
    w->ring = ring;
    w->cap = cap;
    return GLLM_OK;
}

gllm_status gllm_ginfer_out_put(gllm_ginfer_out *w, long index, char *line)
{
    if (index < w->next || (index - w->next < w->cap && w->ring[index % w->cap])) {
        free(line);
        return gllm_fail(GLLM_ERR_INVALID, "%s: result %ld handed over twice", w->path, index);
    }
    if (index - w->next >= w->cap) {
        gllm_status st = grow(w, index - w->next);
        if (st != GLLM_OK) {
            free(line);
            return st;
        }
    }
    w->ring[index % w->cap] = line;
    w->held++;
    return GLLM_OK;
}

/* Write result `index` (its line plus '\n'), honouring the crash point. */
static gllm_status write_line(gllm_ginfer_out *w, long index, const char *line)
{
    const size_t len = strlen(line);
    if (index == w->crash_index) {
        size_t b = w->crash_bytes < len ? w->crash_bytes : len;
        GLLM_TRY(write_all(w, line, b));
        if (w->crash_bytes > len)
            GLLM_TRY(write_all(w, "\n", 1));
        raise(SIGKILL);
    }
    /* line and newline in one write: a kill between two writes cannot leave
     * a complete-looking line without its newline */
    char *buf = malloc(len + 1);
    if (!buf)
        return gllm_fail(GLLM_ERR_OOM, "output writer: out of memory");
    memcpy(buf, line, len);
    buf[len] = '\n';
    gllm_status st = write_all(w, buf, len + 1);
    free(buf);
    return st;
}

gllm_status gllm_ginfer_out_sync(gllm_ginfer_out *w)
{
    bool wrote = false;
    for (;;) {
        char **slot = &w->ring[w->next % w->cap];
        if (!*slot)
            break;
        GLLM_TRY(write_line(w, w->next, *slot));
        free(*slot);
        *slot = NULL;
        w->held--;
        w->next++;
        wrote = true;
    }
    if (wrote && fsync(w->fd) != 0)
        return gllm_fail(GLLM_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
    return GLLM_OK;
}

gllm_status gllm_ginfer_out_close(gllm_ginfer_out *w)
{
    if (!w)
        return GLLM_OK;
    gllm_status st = gllm_ginfer_out_sync(w);
    for (long i = 0; i < w->cap; i++)
        free(w->ring[i]);
    free(w->ring);
    cJSON_Delete(w->last);
    close(w->fd);
    free(w->path);
    free(w);
    return st;
}
