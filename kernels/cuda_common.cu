// Error recording for every CUDA call, and the shared scratch buffer.
#include "cuda_common.cuh"

gllm_status gllm_cuda_fail(cudaError_t err, const char *what, const char *file, int line)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (err == cudaErrorMemoryAllocation) {
        // Allocation errors are not sticky: clear them so the next call is not blamed.
        cudaGetLastError();
        return gllm_fail(GLLM_ERR_OOM, "cuda: %s (%s:%d): out of device memory", what, base,
                         line);
    }
    return gllm_fail(GLLM_ERR_BACKEND, "cuda: %s (%s:%d): %s (%s)", what, base, line,
                     cudaGetErrorString(err), cudaGetErrorName(err));
}

gllm_status gllm_cuda_scratch(gllm_cuda_ctx *c, size_t bytes, const char *op, void **out)
{
    if (bytes <= c->scratch_bytes) {
        *out = c->scratch;
        return GLLM_OK;
    }
    if (c->scratch) {
        CUDA_TRY(cudaFree(c->scratch));
        c->scratch = NULL;
        c->scratch_bytes = 0;
    }
    // Grow geometrically so a sequence of slightly larger requests reallocates rarely.
    size_t want = bytes + bytes / 4;
    cudaError_t e = cudaMalloc(&c->scratch, want);
    if (e != cudaSuccess) {
        cudaGetLastError();
        c->scratch = NULL;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return gllm_fail(e == cudaErrorMemoryAllocation ? GLLM_ERR_OOM : GLLM_ERR_BACKEND,
                         "cuda: scratch for %s: %zu bytes: %s (%zu MiB free of %zu MiB)", op,
                         want, cudaGetErrorString(e), free_b >> 20, total_b >> 20);
    }
    c->scratch_bytes = want;
    *out = c->scratch;
    return GLLM_OK;
}
