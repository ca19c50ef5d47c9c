/* The one streaming JSONL reader: training datasets, ginfer's requests and
 * any other one-JSON-value-per-line file go through it.
 *
 * Memory is bounded: the reader holds one read buffer that grows to the
 * longest line seen, never past GLLM_JSONL_MAX_LINE bytes. Only regular files
 * are read (a folder, /dev/zero, a FIFO or a socket is refused by
 * gllm_jsonl_open at once, before anything is read).
 *
 *   gllm_jsonl *r;
 *   GLLM_TRY(gllm_jsonl_open(path, &r));
 *   for (;;) {
 *       cJSON *obj; long line;
 *       gllm_status st = gllm_jsonl_next(r, &obj, &line);
 *       if (st == GLLM_ERR_FORMAT) { report(gllm_last_error()); continue; }  // "path:7: ..."
 *       if (st != GLLM_OK) break;   // I/O error: the reader is done
 *       if (!obj) break;            // end of file
 *       use(obj); cJSON_Delete(obj);
 *   }
 *   gllm_jsonl_close(r);
 *
 * A line-level error (GLLM_ERR_FORMAT: too long, NUL bytes, invalid UTF-8,
 * not JSON, trailing garbage, two values) names "path:line: what" and leaves
 * the reader usable: the next call continues with the next line. GLLM_ERR_IO
 * (a read failed) ends the file: further calls repeat the error. */
#ifndef GLLM_JSONL_H
#define GLLM_JSONL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest line accepted, in bytes without its newline (256 MiB). */
#define GLLM_JSONL_MAX_LINE ((size_t)256 << 20)

typedef struct gllm_jsonl gllm_jsonl;

/* Open `path` for reading. Errors name the path: GLLM_ERR_NOT_FOUND when it
 * does not exist, GLLM_ERR_INVALID when it is not a regular file (a folder,
 * a device, a FIFO), GLLM_ERR_IO otherwise. Caller closes with gllm_jsonl_close. */
gllm_status gllm_jsonl_open(const char *path, gllm_jsonl **out);

/* The next raw line, without its '\n' (a '\r' before it is kept; no other
 * byte is changed, NUL bytes included: use *len). *lineno is 1-based.
 * *has_newline is false only for a last line that the file ends without a
 * newline (a torn last line of an append-only log, say). At end of file
 * *line is NULL. The line stays valid until the next call on r. A line
 * longer than GLLM_JSONL_MAX_LINE returns GLLM_ERR_FORMAT "path:N: line is
 * longer than ... bytes" and is skipped. */
gllm_status gllm_jsonl_next_line(gllm_jsonl *r, const char **line, size_t *len, long *lineno,
                                 bool *has_newline);

/* The next JSON value, one per non-blank line (blank: only spaces, tabs and
 * '\r'); blank lines are skipped. A UTF-8 byte-order mark at the start of a
 * line is ignored (as cJSON does; files joined with `cat` carry them). *obj (caller frees with cJSON_Delete) is NULL at end of
 * file; *lineno (may be NULL) is the value's line. A line that is not
 * exactly one JSON value returns GLLM_ERR_FORMAT "path:N: what" (NUL byte at
 * column C, invalid UTF-8 at column C, not valid JSON at column C, trailing
 * characters after the value at column C) with *obj NULL and *lineno set;
 * the next call continues with the next line. Columns are 1-based bytes. */
gllm_status gllm_jsonl_next(gllm_jsonl *r, cJSON **obj, long *lineno);

/* Lower the longest line accepted (tests; a reader that wants a tighter bound). */
void gllm_jsonl_set_max_line(gllm_jsonl *r, size_t max_line);

/* The path given to gllm_jsonl_open. */
const char *gllm_jsonl_path(const gllm_jsonl *r);

void gllm_jsonl_close(gllm_jsonl *r);

/* Where the first byte of s[0..n) that breaks UTF-8 is (overlong forms,
 * surrogates, code points past U+10FFFF and truncated sequences break it),
 * or n when all of it is valid UTF-8. */
size_t gllm_utf8_invalid_at(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
