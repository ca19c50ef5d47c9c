/* Shared by the files of src/dist. */
#ifndef GLLM_DIST_INTERNAL_H
#define GLLM_DIST_INTERNAL_H

#include <stddef.h>
#include <time.h>

#include "gllm/dist.h"

/* "killed by signal 9 (Killed)" / "exited with status 1" for a wait() status */
void gllm_describe_exit(int status, char *buf, size_t n);
/* monotonic seconds */
double gllm_dist_now(void);

#endif
