/* JSON helpers over cJSON shared by every module: checks that cJSON does not
 * make (duplicate keys), reading a JSON file, and writing numbers that JSON
 * can carry. */
#ifndef GLLM_JSON_H
#define GLLM_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "gllm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The first key that appears twice in one object anywhere inside v (objects
 * nested in objects and arrays included), or NULL when there is none. cJSON
 * keeps both members and its lookups return the first, so a duplicate would
 * otherwise pass silently. */
const char *gllm_json_duplicate_key(const cJSON *v);

/* Read and parse a JSON file (one value; a UTF-8 byte-order mark is
 * skipped). Errors name the file and where: GLLM_ERR_NOT_FOUND when absent,
 * GLLM_ERR_INVALID when not a regular file, GLLM_ERR_FORMAT "path:L:C: not
 * valid JSON" (line and column of the fault), invalid UTF-8, NUL bytes,
 * trailing characters, or a duplicate key. *out: caller frees with cJSON_Delete. */
gllm_status gllm_json_read_file(const char *path, cJSON **out);

/* Write v to path (on one line, newline-terminated) through the core's durable
 * atomic write. */
gllm_status gllm_json_write_file(const char *path, const cJSON *v);

/* Add a number member that JSON can carry: a NaN or an infinity becomes null
 * and its key is listed in the object's "nonfinite" array, so a reader can
 * tell a missing value from a diverged one. Returns false on out of memory. */
bool gllm_json_add_number(cJSON *o, const char *key, double v);

#ifdef __cplusplus
}
#endif
#endif
