// Timing hook behind gllm/cuda_bench_attn.h: fills its own buffers on the device,
// times each call between two CUDA events and takes the median.
#include <algorithm>
#include <vector>

#include "attention.cuh"
#include "gllm/cuda_bench_attn.h"

namespace {

__global__ void fill_uniform(__nv_bfloat16 *x, size_t n, uint64_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        x[i] = __float2bfloat16_rn((float)(z >> 40) / 8388608.0f - 1.0f);
    }
}

__global__ void fill_pos(int32_t *pos, int N, int T)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x)
        pos[i] = i % T;
}

// Frees everything it holds on every exit path.
struct bench_state {
    std::vector<void *> ptrs;
    std::vector<cudaEvent_t> events;
    ~bench_state()
    {
        for (void *p : ptrs)
            cudaFree(p);
        for (cudaEvent_t e : events)
            cudaEventDestroy(e);
    }
    gllm_status alloc(size_t bytes, void **out)
    {
        cudaError_t e = cudaMalloc(out, bytes);
        if (e != cudaSuccess)
            return gllm_cuda_fail(e, "cudaMalloc (attention bench buffer)", __FILE__, __LINE__);
        ptrs.push_back(*out);
        return GLLM_OK;
    }
};

} // namespace

extern "C" gllm_status gllm_cuda_bench_attention(gllm_backend *be, const gllm_attn_shape *s,
                                                 int bwd, int warmup, int iters,
                                                 double *median_ms)
{
    if (!be || strncmp(be->name, "cuda", 4) != 0)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_cuda_bench_attention: backend is not CUDA");
    if (iters < 1 || warmup < 0)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_cuda_bench_attention: iters=%d warmup=%d",
                         iters, warmup);
    GLLM_TRY(gllm_cuda_attn_check("gllm_cuda_bench_attention", s));
    gllm_cuda_ctx *c = gllm_cuda(be);
    const size_t N = (size_t)s->B * s->T, W = (size_t)(s->Hq + 2 * s->Hkv) * s->D;
    const size_t NO = N * s->Hq * s->D;
    bench_state bs;
    void *qkv, *dqkv, *out, *dout, *lse, *pos;
    GLLM_TRY(bs.alloc(N * W * 2, &qkv));
    GLLM_TRY(bs.alloc(N * W * 2, &dqkv));
    GLLM_TRY(bs.alloc(NO * 2, &out));
    GLLM_TRY(bs.alloc(NO * 2, &dout));
    GLLM_TRY(bs.alloc(N * s->Hq * sizeof(float), &lse));
    GLLM_TRY(bs.alloc(N * sizeof(int32_t), &pos));
    fill_uniform<<<1024, 256, 0, c->stream>>>((__nv_bfloat16 *)qkv, N * W, 1);
    fill_uniform<<<1024, 256, 0, c->stream>>>((__nv_bfloat16 *)dout, NO, 2);
    fill_pos<<<256, 256, 0, c->stream>>>((int32_t *)pos, (int)N, s->T);
    CUDA_LAUNCH_CHECK("attention bench fill");

    auto run = [&]() -> gllm_status {
        if (!bwd)
            return be->attention_fwd(be, out, (float *)lse, qkv, (const int32_t *)pos, s);
        return be->attention_bwd(be, dqkv, dout, qkv, out, (const float *)lse,
                                 (const int32_t *)pos, s);
    };
    GLLM_TRY(be->attention_fwd(be, out, (float *)lse, qkv, (const int32_t *)pos, s));
    for (int i = 0; i < warmup; i++)
        GLLM_TRY(run());
    bs.events.resize(2 * iters);
    for (cudaEvent_t &e : bs.events)
        CUDA_TRY(cudaEventCreate(&e));
    for (int i = 0; i < iters; i++) {
        CUDA_TRY(cudaEventRecord(bs.events[2 * i], c->stream));
        GLLM_TRY(run());
        CUDA_TRY(cudaEventRecord(bs.events[2 * i + 1], c->stream));
    }
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    std::vector<float> ms(iters);
    for (int i = 0; i < iters; i++)
        CUDA_TRY(cudaEventElapsedTime(&ms[i], bs.events[2 * i], bs.events[2 * i + 1]));
    std::sort(ms.begin(), ms.end());
    *median_ms = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
    return GLLM_OK;
}
