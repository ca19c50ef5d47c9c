// cuBLASLt behind gllm_matmul_args: the baseline of bench/bench_matmul.c, the
// reference of tests/cuda/test_cuda_matmul.c, and be->matmul when
// ctx->use_cublaslt is set.
#pragma once

#include "cuda_common.cuh"

// Creates ctx->cublaslt on first use when the backend has not. The residual add
// runs as a second kernel (cuBLASLt has no epilogue for it after GELU).
gllm_status gllm_cuda_matmul_cublaslt(gllm_cuda_ctx *c, void *C, const void *A, const void *B,
                                      const gllm_matmul_args *a);
