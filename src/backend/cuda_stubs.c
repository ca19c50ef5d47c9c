/* A build without CUDA still links the kernel benches, which then report
 * that CUDA is absent instead of failing to build. */
#ifndef GLLM_HAVE_CUDA
#include "gllm/cuda_bench.h"
#include "gllm/cuda_bench_attn.h"

static gllm_status no_cuda(const char *what)
{
    return gllm_fail(GLLM_ERR_UNSUPPORTED, "%s: this gllm was built without CUDA", what);
}

const char *gllm_matmul_path_name(gllm_matmul_path path)
{
    static const char *const names[] = {"auto",     "simple",    "mma",      "wgmma",
                                        "cublaslt", "wgmma128", "wgmma256"};
    return (unsigned)path < sizeof names / sizeof names[0] ? names[path] : "?";
}

gllm_status gllm_cuda_matmul_with(gllm_backend *be, gllm_matmul_path path, void *C, const void *A,
                                  const void *B, const gllm_matmul_args *a)
{
    (void)be, (void)path, (void)C, (void)A, (void)B, (void)a;
    return no_cuda("gllm_cuda_matmul_with");
}

gllm_status gllm_cuda_bench_matmul(gllm_backend *be, gllm_matmul_path path,
                                   const gllm_matmul_args *a, int warmup, int iters,
                                   double *median_ms)
{
    (void)be, (void)path, (void)a, (void)warmup, (void)iters, (void)median_ms;
    return no_cuda("gllm_cuda_bench_matmul");
}

gllm_status gllm_cuda_describe(gllm_backend *be, char *buf, size_t n)
{
    (void)be, (void)buf, (void)n;
    return no_cuda("gllm_cuda_describe");
}

gllm_status gllm_cuda_bench_attention(gllm_backend *be, const gllm_attn_shape *s, int bwd,
                                      int warmup, int iters, double *median_ms)
{
    (void)be, (void)s, (void)bwd, (void)warmup, (void)iters, (void)median_ms;
    return no_cuda("gllm_cuda_bench_attention");
}
#else
/* ISO C forbids an empty translation unit */
typedef int gllm_cuda_stubs_unused;
#endif
