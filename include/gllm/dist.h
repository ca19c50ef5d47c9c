/* Data-parallel process groups. On the CPU backend the ranks are processes of
 * one machine that share a memory segment; the group is created before fork
 * and each rank joins it after. (NCCL for GPUs comes with --gpus N.) */
#ifndef GLLM_DIST_H
#define GLLM_DIST_H

#include <stddef.h>

#include "gllm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gllm_shm_group gllm_shm_group;

/* A group of `world` ranks whose collectives move slot_bytes per rank per
 * round (larger buffers go in chunks). Create it before fork; every process
 * that inherits it joins with gllm_comm_shm. The creator frees it after the
 * ranks are done (each process may free its own mapping). */
gllm_status gllm_shm_group_create(int world, size_t slot_bytes, gllm_shm_group **out);
void gllm_shm_group_free(gllm_shm_group *g);

/* This process's communicator as `rank` of the group, on a CPU backend.
 * Every rank must call the same collectives in the same order. */
gllm_status gllm_comm_shm(gllm_shm_group *g, int rank, gllm_backend *be, gllm_comm **out);

#ifdef __cplusplus
}
#endif
#endif
