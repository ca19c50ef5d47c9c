// Shared by every CUDA kernel file: error checking, the backend context, bf16 helpers.
// Host code in these files is CUDA C++ only where CUDA needs it; the C interface
// stays include/gllm/backend.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "gllm/backend.h"

// The CUDA backend's state, stored in gllm_backend.ctx.
struct gllm_cuda_ctx {
    int device;
    int sm_major, sm_minor;
    int n_sms;
    size_t smem_optin;          // max dynamic shared memory per block
    cudaStream_t stream;
    bool hopper;                // sm_90: the wgmma/TMA paths are used
    bool use_cublaslt;          // matmul through cuBLASLt instead of gllm's kernels
    void *cublaslt;             // cublasLtHandle_t when created
    void *workspace;            // scratch for cuBLASLt and split reductions
    size_t workspace_bytes;
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

static inline __host__ __device__ int gllm_cdiv(int a, int b) { return (a + b - 1) / b; }
