/* Data parallelism: how the ranks of a job start and find each other
 * (gllm_launch), and the communicators between them:
 *  - shared memory: CPU processes of one machine (gtrain --ranks N),
 *  - MPI: CPU processes under mpirun/srun, one machine or many,
 *  - NCCL: one GPU per process (gtrain --gpus N, or mpirun/srun/torchrun).
 * A launcher on this node (--ranks/--gpus) supervises its workers: they die
 * with it, and a worker that dies makes the others fail at once with a
 * message naming its rank. */
#ifndef GLLM_DIST_H
#define GLLM_DIST_H

#include <stdbool.h>
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

/* The launcher's report that `rank` ended with wait() status `wait_status`:
 * every rank waiting in (or later entering) a collective of the group fails
 * with a message naming it. The first report wins. */
void gllm_shm_group_mark_dead(gllm_shm_group *g, int rank, int wait_status);
/* GLLM_OK, or the failure "rank R died (killed by signal 9 (Killed)); stopping" */
gllm_status gllm_shm_group_check(const gllm_shm_group *g);

/* This process's communicator as `rank` of the group, on a CPU backend.
 * Every rank must call the same collectives in the same order. */
gllm_status gllm_comm_shm(gllm_shm_group *g, int rank, gllm_backend *be, gllm_comm **out);

/* ---- MPI (built when an MPI library is found) ---- */
bool gllm_mpi_available(void);
/* MPI_Init (thread level FUNNELED) unless done; this process's rank and world */
gllm_status gllm_mpi_init(int *rank, int *world);
/* MPI_Finalize; with failed, MPI_Abort so no other rank waits on this one */
void gllm_mpi_finalize(bool failed);
gllm_status gllm_mpi_bcast_bytes(void *buf, size_t bytes, int root);
/* The communicator over MPI_COMM_WORLD, on a CPU backend. */
gllm_status gllm_comm_mpi(gllm_backend *be, gllm_comm **out);

/* ---- NCCL (built with the CUDA backend) ---- */
#define GLLM_NCCL_ID_BYTES 128
/* NCCL's version code (e.g. 22703), 0 when built without NCCL */
int gllm_nccl_version(void);
gllm_status gllm_nccl_unique_id(unsigned char id[GLLM_NCCL_ID_BYTES]);
/* `rank` of `world` GPU ranks that share `id`, on a CUDA backend; collectives
 * run on the backend's comm queue. watch (may be NULL): a group whose
 * dead-rank word ends waits early. */
gllm_status gllm_comm_nccl(gllm_backend *be, const unsigned char id[GLLM_NCCL_ID_BYTES],
                           int rank, int world, gllm_shm_group *watch, gllm_comm **out);

/* Exchange `bytes` of blob through a folder every rank can read (a shared
 * filesystem across nodes): rank 0 writes <dir>/gllm-rendezvous-<job> atomically,
 * the others wait for it (up to the collective timeout) and read it. */
gllm_status gllm_rendezvous_file(const char *dir, const char *job, int rank, void *blob,
                                 size_t bytes);

/* ---- launch ---- */
typedef enum gllm_launcher {
    GLLM_LAUNCH_NONE = 0, /* one process */
    GLLM_LAUNCH_FORK,     /* --ranks N / --gpus N: this process forks and supervises the workers */
    GLLM_LAUNCH_MPI,      /* mpirun: OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE */
    GLLM_LAUNCH_SLURM,    /* srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS (or SLURM_NTASKS),
                           * SLURM_LOCALID */
    GLLM_LAUNCH_TORCHRUN, /* torchrun style: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE */
} gllm_launcher;

typedef struct gllm_launch {
    gllm_launcher kind;
    bool gpus;            /* FORK: one GPU per worker (--gpus), else CPU workers (--ranks) */
    int rank, world, local_rank, local_world;
    bool is_launcher;     /* FORK: the supervising process, once gllm_launch_start returned */
    char rendezvous[1024]; /* GLLM_RENDEZVOUS: shared folder for the NCCL id across nodes */
    char job_id[256];     /* names the rendezvous file: Slurm job.step, torchrun run id, ... */
    /* private to launch.c */
    gllm_shm_group *group;
    int id_pipe[2];
    int *pids;
    bool mpi_up;
} gllm_launch;

/* How this process was started. workers > 0 (--ranks N, or --gpus N with
 * gpus): this process will fork that many; else the environment of mpirun,
 * srun or torchrun gives the rank, or it is a job of one. Variables that are
 * missing, malformed or contradict each other are errors naming them. */
gllm_status gllm_launch_init(gllm_launch *l, int workers, bool gpus);
/* FORK: fork the workers. In each worker it returns with the rank set. In the
 * launcher it returns once every worker has ended, with *exit_code 0 when all
 * succeeded, else 1 after a message on stderr naming the first rank that failed
 * and how. Other kinds return at once (MPI: after MPI_Init). */
gllm_status gllm_launch_start(gllm_launch *l, int *exit_code);
/* The backend a worker opens, from the configured name: a GPU worker opens
 * the GPU of its local rank ("cuda" or "auto" -> "cuda:<local_rank>"). */
gllm_status gllm_launch_backend(const gllm_launch *l, char *backend, size_t n);
/* The worker's communicator on its opened backend (ctx: the gllm_launch):
 * one rank, shared memory, MPI or NCCL as the launch and backend call for. */
gllm_status gllm_launch_make_comm(void *ctx, gllm_backend *be, gllm_comm **out);
/* A worker's end: MPI_Finalize, or with failed MPI_Abort. Frees what init made. */
void gllm_launch_finish(gllm_launch *l, bool failed);
const char *gllm_launcher_name(gllm_launcher k);

#ifdef __cplusplus
}
#endif
#endif
