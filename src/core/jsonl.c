/* The streaming JSONL reader: one read buffer that holds at least the current
 * line, refilled with read(2); lines are cut in place (the '\n' becomes a NUL
 * so that cJSON may read past nothing). See include/gllm/jsonl.h. */
#include "gllm/jsonl.h"

#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JSONL_FIRST_CAP ((size_t)64 << 10)

struct gllm_jsonl {
    int fd;
    char *path;
    char *buf;          /* [cap]: bytes [start, end) are unread, one byte kept for a NUL */
    size_t cap, start, end;
    size_t scanned;     /* bytes from start already known to hold no '\n' */
    size_t max_line;
    long lineno;        /* number of the last line returned */
    bool eof;           /* read(2) returned 0 */
    bool skipping;      /* inside an over-long line: drop bytes up to its '\n' */
    gllm_status io_err; /* a failed read ends the file */
    char io_msg[512];
};

size_t gllm_utf8_invalid_at(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i; /* a continuation byte, an overlong lead (c0, c1) or past f4 */
        }
        if (n - i <= k) {
            for (size_t j = 1; i + j < n; j++)
                if ((s[i + j] & 0xc0) != 0x80)
                    return i;
            return i; /* truncated at the end */
        }
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += k + 1;
    }
    return n;
}

gllm_status gllm_jsonl_open(const char *path, gllm_jsonl **out)
{
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return gllm_fail(GLLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return gllm_fail(GLLM_ERR_INVALID, "%s: is %s, not a regular file", path, gllm_file_kind(sb.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    gllm_jsonl *r = calloc(1, sizeof *r);
    size_t plen = strlen(path);
    char *p = r ? malloc(plen + 1) : NULL;
    char *buf = p ? malloc(JSONL_FIRST_CAP) : NULL;
    if (!buf) {
        close(fd);
        free(p);
        free(r);
        return gllm_fail(GLLM_ERR_OOM, "%s: out of memory opening the reader", path);
    }
    memcpy(p, path, plen + 1);
    r->fd = fd;
    r->path = p;
    r->buf = buf;
    r->cap = JSONL_FIRST_CAP;
    r->max_line = GLLM_JSONL_MAX_LINE;
    *out = r;
    return GLLM_OK;
}

void gllm_jsonl_set_max_line(gllm_jsonl *r, size_t max_line) { r->max_line = max_line ? max_line : 1; }

const char *gllm_jsonl_path(const gllm_jsonl *r) { return r->path; }

void gllm_jsonl_close(gllm_jsonl *r)
{
    if (!r)
        return;
    close(r->fd);
    free(r->buf);
    free(r->path);
    free(r);
}

/* Read more bytes after `end`, first moving the unread bytes to the front and
 * growing the buffer when it is full (up to max_line + 2: the line, one byte
 * that proves it too long, and the NUL). */
static gllm_status fill(gllm_jsonl *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end + 1 >= r->cap) {
        size_t want = r->cap * 2, most = r->max_line + 2;
        if (want > most)
            want = most;
        if (want <= r->cap)
            return GLLM_OK; /* full: the caller sees a line longer than max_line */
        char *nb = realloc(r->buf, want);
        if (!nb)
            return gllm_fail(GLLM_ERR_OOM, "%s:%ld: out of memory for a %zu-byte line", r->path, r->lineno + 1,
                             want);
        r->buf = nb;
        r->cap = want;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - 1 - r->end);
        if (n > 0) {
            r->end += (size_t)n;
            return GLLM_OK;
        }
        if (n == 0) {
            r->eof = true;
            return GLLM_OK;
        }
        if (errno != EINTR) {
            snprintf(r->io_msg, sizeof r->io_msg, "%s:%ld: read failed: %s", r->path, r->lineno + 1,
                     strerror(errno));
            r->io_err = GLLM_ERR_IO;
            return gllm_fail(GLLM_ERR_IO, "%s", r->io_msg);
        }
    }
}

/* Drop the rest of an over-long line, through its '\n'. */
static gllm_status skip_long_line(gllm_jsonl *r)
{
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl) {
            r->start = (size_t)(nl - r->buf) + 1;
            r->scanned = 0;
            r->skipping = false;
            return GLLM_OK;
        }
        r->start = r->end = 0;
        if (r->eof) {
            r->skipping = false;
            return GLLM_OK;
        }
        GLLM_TRY(fill(r));
    }
}

gllm_status gllm_jsonl_next_line(gllm_jsonl *r, const char **line, size_t *len, long *lineno,
                                 bool *has_newline)
{
    *line = NULL;
    *len = 0;
    if (has_newline)
        *has_newline = false;
    if (lineno)
        *lineno = r->lineno;
    if (r->io_err)
        return gllm_fail(r->io_err, "%s", r->io_msg);
    if (r->skipping)
        GLLM_TRY(skip_long_line(r));
    for (;;) {
        size_t have = r->end - r->start;
        char *nl = memchr(r->buf + r->start + r->scanned, '\n', have - r->scanned);
        size_t n = nl ? (size_t)(nl - (r->buf + r->start)) : have;
        if (n > r->max_line) {
            r->lineno++;
            if (lineno)
                *lineno = r->lineno;
            if (nl) {
                r->start += n + 1;
                r->scanned = 0;
            } else {
                r->start = r->end = 0;
                r->scanned = 0;
                r->skipping = !r->eof;
            }
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: line is longer than %zu bytes", r->path, r->lineno,
                             r->max_line);
        }
        if (nl || (r->eof && have > 0)) {
            char *s = r->buf + r->start;
            s[n] = '\0'; /* the '\n', or the byte kept free after `end` */
            r->start += nl ? n + 1 : n;
            r->scanned = 0;
            r->lineno++;
            *line = s;
            *len = n;
            if (lineno)
                *lineno = r->lineno;
            if (has_newline)
                *has_newline = nl != NULL;
            return GLLM_OK;
        }
        if (r->eof)
            return GLLM_OK; /* end of file: *line stays NULL */
        r->scanned = have;
        GLLM_TRY(fill(r));
    }
}

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

gllm_status gllm_jsonl_next(gllm_jsonl *r, cJSON **obj, long *lineno)
{
    *obj = NULL;
    for (;;) {
        const char *s;
        size_t n;
        long ln;
        gllm_status st = gllm_jsonl_next_line(r, &s, &n, &ln, NULL);
        if (lineno)
            *lineno = ln;
        if (st != GLLM_OK || !s)
            return st;
        size_t b = 0;
        if (n >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) /* as cJSON does */
            b = 3;
        while (b < n && blank(s[b]))
            b++;
        if (b == n)
            continue;
        const char *nul = memchr(s, '\0', n);
        if (nul)
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: NUL byte at column %zu", r->path, ln, (size_t)(nul - s) + 1);
        size_t bad = gllm_utf8_invalid_at(s, n);
        if (bad < n)
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: invalid UTF-8 at column %zu (byte 0x%02x)", r->path, ln,
                             bad + 1, (unsigned char)s[bad]);
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(s + b, n - b, &end, false);
        if (!v) {
            size_t col = end && end >= s + b && end <= s + n ? (size_t)(end - s) + 1 : b + 1;
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: not valid JSON (at column %zu)", r->path, ln, col);
        }
        size_t e = end && end >= s + b && end <= s + n ? (size_t)(end - s) : n;
        while (e < n && blank(s[e]))
            e++;
        if (e < n) {
            cJSON_Delete(v);
            const char *end2 = NULL;
            cJSON *second = cJSON_ParseWithLengthOpts(s + e, n - e, &end2, false);
            cJSON_Delete(second);
            if (second)
                return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: two JSON values on one line (the second at column %zu)",
                                 r->path, ln, e + 1);
            return gllm_fail(GLLM_ERR_FORMAT, "%s:%ld: trailing characters after the JSON value at column %zu",
                             r->path, ln, e + 1);
        }
        *obj = v;
        return GLLM_OK;
    }
}
