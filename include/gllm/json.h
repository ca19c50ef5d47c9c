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

#ifdef __cplusplus
}
#endif
#endif
