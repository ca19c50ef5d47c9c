/* C-callable hooks into the CUDA backend for benches and GPU tests.
 *
 * The backend's own state (gllm_cuda_ctx) is CUDA C++; these functions take the
 * gllm_backend opened with gllm_backend_open("cuda") and are plain C. Every one
 * returns GLLM_ERR_UNSUPPORTED when gllm was built without CUDA. */
#ifndef GLLM_CUDA_BENCH_H
#define GLLM_CUDA_BENCH_H

#include <stddef.h>

#include "gllm/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Matmul implementations (kernels/matmul*.cu, kernels/cublaslt_baseline.cu). */
typedef enum gllm_matmul_path {
    GLLM_MM_AUTO = 0, /* what be->matmul does: wgmma on Hopper, else mma, else simple */
    GLLM_MM_SIMPLE,   /* scalar-load fallback, any alignment */
    GLLM_MM_MMA,      /* sm_80+: mma.sync + cp.async */
    GLLM_MM_WGMMA,    /* sm_90a: wgmma + TMA */
    GLLM_MM_CUBLASLT, /* the library baseline */
    GLLM_MM_WGMMA_128, /* wgmma with the 128-wide tile, whatever the tile heuristic says */
    GLLM_MM_WGMMA_256, /* wgmma with the 256-wide tile (tests reach both tiles at any shape) */
} gllm_matmul_path;

const char *gllm_matmul_path_name(gllm_matmul_path path);

/* be->matmul through one named path. GLLM_ERR_UNSUPPORTED when the path cannot
 * serve this device, layout or alignment; GLLM_MM_AUTO serves every valid call. */
gllm_status gllm_cuda_matmul_with(gllm_backend *be, gllm_matmul_path path, void *C,
                                  const void *A, const void *B, const gllm_matmul_args *a);

/* Time `a` (pointers and ld fields are ignored: the bench allocates its own
 * contiguous buffers, filled with random bf16, in enough copies that their sum
 * exceeds twice the L2 and rotates through them). After `warmup` runs it times
 * `iters` runs one by one with CUDA events and returns the median in *median_ms. */
gllm_status gllm_cuda_bench_matmul(gllm_backend *be, gllm_matmul_path path,
                                   const gllm_matmul_args *a, int warmup, int iters,
                                   double *median_ms);

/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 50 MB L2, driver API 13.0, runtime 13.0, wgmma on"
 * into buf ("wgmma on": the wgmma path serves be->matmul: sm_90 with sm_90a code built). */
gllm_status gllm_cuda_describe(gllm_backend *be, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
