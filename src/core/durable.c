/* Durable, atomic file replacement and the fault points of the kill tests
 * (see core/file.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

#define ATOMIC_BUF (1u << 16)

struct gllm_atomic {
    int fd;
    char *path, *tmp;
    gllm_status err; /* the first failed write; commit reports it */
    char msg[512];
    size_t used;
    char buf[ATOMIC_BUF];
};

void gllm_fault_point(const char *name)
{
    const char *at = getenv("GLLM_KILL_AT");
    if (!at)
        return;
    size_t n = strlen(name);
    if (strncmp(at, name, n) != 0 || (at[n] != '\0' && at[n] != ':'))
        return;
    /* "name:K" dies at the K-th time the point is reached (counted per process) */
    static int hits;
    if (at[n] == ':' && ++hits < atoi(at + n + 1))
        return;
    raise(SIGKILL);
}

gllm_status gllm_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot open the folder to sync it: %s", dir, strerror(errno));
    /* file systems that cannot fsync a folder (EINVAL) have nothing more to flush */
    int bad = fsync(fd) != 0 && errno != EINVAL;
    int e = errno;
    close(fd);
    if (bad)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot sync the folder: %s", dir, strerror(e));
    return GLLM_OK;
}

gllm_status gllm_sync_parent(const char *path)
{
    size_t n = strlen(path);
    char *dir = gllm_malloc(n + 2, "a folder path");
    if (!dir)
        return GLLM_ERR_OOM;
    memcpy(dir, path, n + 1);
    while (n > 1 && dir[n - 1] == '/') /* "a/b/" names b: its parent is a */
        dir[--n] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    gllm_status s = gllm_sync_dir(dir);
    free(dir);
    return s;
}

gllm_status gllm_atomic_begin(const char *path, gllm_atomic **out)
{
    *out = NULL;
    size_t n = strlen(path);
    gllm_atomic *a = calloc(1, sizeof *a);
    char *p = a ? malloc(n + 1) : NULL, *tmp = p ? malloc(n + 16) : NULL;
    if (!tmp) {
        free(p);
        free(a);
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory opening it for writing", path);
    }
    memcpy(p, path, n + 1);
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        gllm_status s = gllm_fail(GLLM_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                                  strerror(errno));
        free(tmp);
        free(p);
        free(a);
        return s;
    }
    if (fchmod(fd, 0644) != 0) { /* mkstemp makes 0600; the files of a run are read by others */
        gllm_status s = gllm_fail(GLLM_ERR_IO, "%s: chmod: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        free(p);
        free(a);
        return s;
    }
    a->fd = fd;
    a->path = p;
    a->tmp = tmp;
    *out = a;
    return GLLM_OK;
}

static void fail_once(gllm_atomic *a, const char *step, int err)
{
    if (a->err)
        return;
    a->err = GLLM_ERR_IO;
    snprintf(a->msg, sizeof a->msg, "%s: %s of %s failed: %s", a->path, step, a->tmp, strerror(err));
}

static void flush_buf(gllm_atomic *a, const char *p, size_t n)
{
    while (n && !a->err) {
        ssize_t w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fail_once(a, "write", w < 0 ? errno : ENOSPC);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void gllm_atomic_write(gllm_atomic *a, const void *data, size_t n)
{
    if (a->err || n == 0) /* an empty tensor may come with data == NULL */
        return;
    if (a->used + n > ATOMIC_BUF) {
        flush_buf(a, a->buf, a->used);
        a->used = 0;
    }
    if (n >= ATOMIC_BUF) {
        flush_buf(a, data, n);
        return;
    }
    memcpy(a->buf + a->used, data, n);
    a->used += n;
}

static void atomic_free(gllm_atomic *a)
{
    free(a->tmp);
    free(a->path);
    free(a);
}

void gllm_atomic_abort(gllm_atomic *a)
{
    if (!a)
        return;
    close(a->fd);
    unlink(a->tmp);
    atomic_free(a);
}

gllm_status gllm_atomic_commit(gllm_atomic *a)
{
    flush_buf(a, a->buf, a->used);
    a->used = 0;
    if (!a->err && fsync(a->fd) != 0)
        fail_once(a, "fsync", errno);
    if (close(a->fd) != 0)
        fail_once(a, "close", errno);
    a->fd = -1;
    gllm_fault_point("atomic-before-rename");
    if (!a->err && rename(a->tmp, a->path) != 0)
        fail_once(a, "rename", errno);
    if (a->err) {
        gllm_status s = gllm_fail(a->err, "%s", a->msg);
        unlink(a->tmp);
        atomic_free(a);
        return s;
    }
    gllm_status s = gllm_sync_parent(a->path);
    atomic_free(a);
    return s;
}

gllm_status gllm_write_file_atomic(const char *path, const void *data, size_t n)
{
    gllm_atomic *a;
    GLLM_TRY(gllm_atomic_begin(path, &a));
    gllm_atomic_write(a, data, n);
    return gllm_atomic_commit(a);
}

gllm_status gllm_lock_dir(const char *dir, const char *who, int *fd_out)
{
    *fd_out = -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.lock", dir, who);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return gllm_fail(GLLM_ERR_IO, "%s: cannot open the lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char text[32] = "";
        ssize_t n = pread(fd, text, sizeof text - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK)
            return gllm_fail(GLLM_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
        long pid = n > 0 ? strtol(text, NULL, 10) : 0;
        bool alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
        if (pid > 0 && alive)
            return gllm_fail(GLLM_ERR_INVALID, "%s is in use by another %s (pid %ld, holding %s); wait for it to "
                             "finish or stop it", dir, who, pid, path);
        return gllm_fail(GLLM_ERR_INVALID, "%s is in use by another %s: %s is held by processes started by pid "
                         "%ld, which has exited (its worker processes still run); stop them", dir, who, path, pid);
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return gllm_fail(GLLM_ERR_IO, "%s: cannot write the pid: %s", path, strerror(e));
    }
    *fd_out = fd;
    return GLLM_OK;
}

void gllm_unlock_dir(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the descriptor releases the flock */
}
