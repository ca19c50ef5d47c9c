/* Extras of the CPU reference backend that the op table does not cover.
 *
 * Sampling on the CPU (and every backend that must reproduce it) draws one
 * uniform number per row from a counter-based generator: with z = seeds[n],
 *   z += 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *   z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^= z >> 31;   (SplitMix64)
 *   u = (z >> 11) * 2^-53 in [0, 1),
 * and returns the first kept token (sorted by probability, descending, ties to the
 * lower id) whose cumulative renormalised probability exceeds u. The caller makes
 * each step's seed distinct (e.g. request seed mixed with the step number). */
#ifndef GLLM_BACKEND_CPU_H
#define GLLM_BACKEND_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "gllm/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* True when this gllm was built with OpenBLAS for the CPU matmul. */
bool gllm_backend_cpu_has_blas(void);

/* What runs the row-invariant (inference) matmuls of this CPU backend: "gllm
 * sgemm avx512" or "gllm sgemm avx2" (src/backend/cpu/cpu_gemm.c), "openblas
 * (whole-M tiles)", "openblas (8-row calls)" or "plain loops" (the fallbacks
 * without AVX2, or with GLLM_GEMM=off), "plain loops" also when the backend's
 * matmul is set to loops. For benchmark records. */
const char *gllm_backend_cpu_rowinv_kernel(gllm_backend *be);

/* Choose cblas_sgemm (on, the default when built with BLAS) or gllm's own
 * loops (off) for be's matmul. Asking for BLAS in a build without it returns
 * GLLM_ERR_UNSUPPORTED; `be` must come from gllm_backend_cpu_create. */
gllm_status gllm_backend_cpu_set_blas(gllm_backend *be, bool on);

/* The thread count a CPU backend takes by default: OMP_NUM_THREADS when it
 * is a number; otherwise the physical cores in this process's CPU affinity
 * mask (hardware threads of one core count once), capped by its cgroup CPU
 * quota (v2 cpu.max or v1 cfs quota/period, rounded up). Read anew each call. */
int gllm_cpu_default_threads(void);

/* The uniform number in [0, 1) that sampling draws for `seed` (see above). */
double gllm_sample_uniform(uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
