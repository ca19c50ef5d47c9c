// Timing of one matmul path for bench/bench_matmul.c, and the device line the
// bench writes into its results.
#include <algorithm>
#include <stdio.h>
#include <string.h>
#include <vector>

#include "matmul.cuh"
#include "ptx.cuh"

namespace {

// Uniform values in [-1, 1) from a hash of (seed, index): every buffer gets
// different, non-zero data without a host round trip.
__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + i;
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return (float)(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fill_bf16(__nv_bfloat16 *x, size_t n, uint64_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = __float2bfloat16(hash_uniform(seed, i));
}

__global__ void fill_f32(float *x, size_t n, uint64_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = hash_uniform(seed, i);
}

// Keeps the GPU busy while the host queues the timed launches, so that host
// overhead (descriptor setup, launch latency) stays out of the event times.
__global__ void spin(long long ns)
{
    const uint64_t t0 = gllm_ptx::globaltimer_ns();
    while ((long long)(gllm_ptx::globaltimer_ns() - t0) < ns) {
    }
}

struct bench_bufs {
    std::vector<void *> ptrs;
    std::vector<cudaEvent_t> events;
    ~bench_bufs()
    {
        for (void *p : ptrs)
            cudaFree(p);
        for (cudaEvent_t e : events)
            cudaEventDestroy(e);
    }
};

gllm_status alloc_filled(bench_bufs &bb, cudaStream_t st, size_t n, bool f32, uint64_t seed,
                         void **out)
{
    void *p;
    CUDA_TRY(cudaMalloc(&p, n * (f32 ? 4 : 2)));
    bb.ptrs.push_back(p);
    if (f32)
        fill_f32<<<1024, 256, 0, st>>>((float *)p, n, seed);
    else
        fill_bf16<<<1024, 256, 0, st>>>((__nv_bfloat16 *)p, n, seed);
    CUDA_LAUNCH_CHECK("bench fill");
    *out = p;
    return GLLM_OK;
}

} // namespace

extern "C" gllm_status gllm_cuda_bench_matmul(gllm_backend *be, gllm_matmul_path path,
                                              const gllm_matmul_args *a, int warmup, int iters,
                                              double *median_ms)
{
    if (!be || strncmp(be->name, "cuda", 4) != 0)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_cuda_bench_matmul: backend is not CUDA");
    if (iters < 1 || warmup < 0)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_cuda_bench_matmul: iters=%d warmup=%d", iters,
                         warmup);
    gllm_cuda_ctx *c = gllm_cuda(be);
    cudaStream_t st = c->stream;
    int batch = a->batch > 1 ? a->batch : 1;
    size_t na = (size_t)a->M * a->K * batch, nb = (size_t)a->K * a->N * batch;
    size_t nc = (size_t)a->M * a->N * batch;
    int l2 = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, c->device));
    size_t set_bytes = (na + nb) * 2;
    int sets = (int)std::min<size_t>(16, std::max<size_t>(1, (2 * (size_t)l2) / set_bytes + 1));

    bench_bufs bb;
    std::vector<void *> As(sets), Bs(sets);
    for (int i = 0; i < sets; i++) {
        GLLM_TRY(alloc_filled(bb, st, na, false, 2 * i + 1, &As[i]));
        GLLM_TRY(alloc_filled(bb, st, nb, false, 2 * i + 2, &Bs[i]));
    }
    void *C, *bias = NULL, *residual = NULL;
    GLLM_TRY(alloc_filled(bb, st, nc, a->c_f32, 1000, &C));
    if (a->bias)
        GLLM_TRY(alloc_filled(bb, st, a->N, false, 1001, &bias));
    if (a->residual)
        GLLM_TRY(alloc_filled(bb, st, nc, false, 1002, &residual));

    gllm_matmul_args r = *a;
    r.lda = r.ldb = r.ldc = 0;
    r.bias = bias;
    r.residual = residual;
    r.stride_a = (int64_t)a->M * a->K;
    r.stride_b = (int64_t)a->K * a->N;
    r.stride_c = (int64_t)a->M * a->N;
    for (int i = 0; i < warmup; i++)
        GLLM_TRY(gllm_cuda_matmul_path(c, path, C, As[i % sets], Bs[i % sets], &r));

    bb.events.resize(2 * iters);
    for (cudaEvent_t &e : bb.events)
        CUDA_TRY(cudaEventCreate(&e));
    spin<<<1, 1, 0, st>>>(20 * 1000 * 1000);
    CUDA_LAUNCH_CHECK("bench spin");
    for (int i = 0; i < iters; i++) {
        CUDA_TRY(cudaEventRecord(bb.events[2 * i], st));
        GLLM_TRY(gllm_cuda_matmul_path(c, path, C, As[i % sets], Bs[i % sets], &r));
        CUDA_TRY(cudaEventRecord(bb.events[2 * i + 1], st));
    }
    CUDA_TRY(cudaStreamSynchronize(st));
    std::vector<float> ms(iters);
    for (int i = 0; i < iters; i++)
        CUDA_TRY(cudaEventElapsedTime(&ms[i], bb.events[2 * i], bb.events[2 * i + 1]));
    std::sort(ms.begin(), ms.end());
    *median_ms = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
    return GLLM_OK;
}

extern "C" gllm_status gllm_cuda_describe(gllm_backend *be, char *buf, size_t n)
{
    if (!be || strncmp(be->name, "cuda", 4) != 0)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_cuda_describe: backend is not CUDA");
    gllm_cuda_ctx *c = gllm_cuda(be);
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, c->device));
    int drv = 0, rt = 0;
    CUDA_TRY(cudaDriverGetVersion(&drv));
    CUDA_TRY(cudaRuntimeGetVersion(&rt));
    snprintf(buf, n, "%s, sm_%d%d, %d SMs, %d MB L2, driver API %d.%d, runtime %d.%d, wgmma %s",
             prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize >> 20,
             drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10,
             c->hopper ? "on" : c->sm_major == 9 ? "off (no sm_90a code in this build)" : "off");
    return GLLM_OK;
}
