// Shared by every CUDA kernel file: error checking, the backend context, bf16 helpers.
// Host code in these files is CUDA C++ only where CUDA needs it; the C interface
// stays include/gllm/backend.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gllm/backend.h"

// The CUDA backend's state, stored in gllm_backend.ctx.
struct gllm_cuda_ctx {
    int device;
    int sm_major, sm_minor;
    int n_sms;
    size_t smem_optin;          // max dynamic shared memory per block
    cudaStream_t stream;
    cudaStream_t comm_stream;   // collectives (NCCL) run here, overlapping compute
    char name[128];             // cudaDeviceProp::name
    size_t mem_total, mem_peak; // device memory, and the most seen in use after an allocation
    bool wgmma_built;           // the binary has sm_90a code for this device (probed)
    bool hopper;                // sm_90 with wgmma_built: the wgmma/TMA paths are used
    bool use_cublaslt;          // matmul through cuBLASLt instead of gllm's kernels
    void *cublaslt;             // cublasLtHandle_t when created
    void *workspace;            // scratch for cuBLASLt and split reductions
    size_t workspace_bytes;
    void *scratch;              // grown on demand by gllm_cuda_scratch for the other ops
    size_t scratch_bytes;
};

static inline gllm_cuda_ctx *gllm_cuda(gllm_backend *be) { return (gllm_cuda_ctx *)be->ctx; }

// Record a failed CUDA runtime call with where it happened; returns GLLM_ERR_BACKEND
// (or GLLM_ERR_OOM for cudaErrorMemoryAllocation).
gllm_status gllm_cuda_fail(cudaError_t err, const char *what, const char *file, int line);

#define CUDA_TRY(call)                                                          \
    do {                                                                        \
        cudaError_t cuda_try_e_ = (call);                                       \
        if (cuda_try_e_ != cudaSuccess)                                         \
            return gllm_cuda_fail(cuda_try_e_, #call, __FILE__, __LINE__);      \
    } while (0)

// After every launch: catches bad launch configurations immediately (kernel
// faults surface at the next synchronising call, also checked).
#define CUDA_LAUNCH_CHECK(name)                                                 \
    do {                                                                        \
        cudaError_t cuda_launch_e_ = cudaGetLastError();                        \
        if (cuda_launch_e_ != cudaSuccess)                                      \
            return gllm_cuda_fail(cuda_launch_e_, "launch of " name, __FILE__, __LINE__); \
    } while (0)

// A device buffer of at least `bytes` for one op's temporaries, valid until the
// next call. Ops run in stream order, so one buffer serves them all; growing it
// frees the old one (cudaFree waits for the device, so no queued op still uses it).
gllm_status gllm_cuda_scratch(gllm_cuda_ctx *c, size_t bytes, const char *op, void **out);

static inline __host__ __device__ int gllm_cdiv(int a, int b) { return (a + b - 1) / b; }

static inline __device__ float gllm_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static inline __device__ __nv_bfloat16 gllm_bf(float x) { return __float2bfloat16_rn(x); }

// Fixed-shape block reduction (warp shuffles, then warp 0): the same tree every
// run, so results are bitwise repeatable. Every thread gets the sum; blockDim.x
// must be a multiple of 32 and `red` hold 32 floats.
static inline __device__ float gllm_block_sum(float x, float *red)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        red[warp] = x;
    __syncthreads();
    x = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

static inline __device__ float gllm_block_max(float x, float *red)
{
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        red[warp] = x;
    __syncthreads();
    x = lane < nw ? red[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
