// The CUDA GEMM: C = alpha * op(A) op(B) + beta * C [+ bias] [GELU] [+ residual],
// with the semantics of gllm_matmul_args (include/gllm/backend.h).
//
// Four implementations behind one entry point:
//   simple   any layout and alignment (scalar loads); the fallback
//   mma      sm_80+: mma.sync m16n8k16 bf16, cp.async pipeline, ldmatrix(.trans)
//   wgmma    sm_90a: TMA loads, mbarrier pipeline, warp-specialised wgmma
//   cublaslt the library baseline and test reference
// gllm_cuda_matmul picks wgmma on Hopper, mma elsewhere, simple when 16-byte
// loads are impossible, or cuBLASLt when ctx->use_cublaslt is set.
#pragma once

#include "cuda_common.cuh"
#include "gllm/cuda_bench.h"

gllm_status gllm_cuda_matmul(gllm_cuda_ctx *c, void *C, const void *A, const void *B,
                             const gllm_matmul_args *a);

// One named path; GLLM_ERR_UNSUPPORTED when that path cannot serve this
// device, layout or alignment (GLLM_MM_AUTO always serves valid arguments).
gllm_status gllm_cuda_matmul_path(gllm_cuda_ctx *c, gllm_matmul_path path, void *C,
                                  const void *A, const void *B, const gllm_matmul_args *a);

// ------------------------------------------------------------------ internal
// Resolved arguments shared by the kernels of kernels/matmul*.cu.
struct gllm_mm_params {
    int M, N, K;
    const __nv_bfloat16 *A, *B;
    void *C;
    int lda, ldb, ldc;
    int64_t sa, sb, sc;       // batch strides in elements (residual follows sc)
    int batch;
    float alpha, beta;
    bool c_f32;
    bool trans_a, trans_b;
    bool gelu;
    bool pair_ok;             // C (and residual) rows allow 2-element vector stores
    const __nv_bfloat16 *bias, *residual;
};

__device__ __forceinline__ float gllm_mm_gelu(float x)
{
    // tanh form used by GPT-2 ("gelu_new"); constant is sqrt(2/pi)
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

// Epilogue for one output element (m, n) of batch b; the caller checks m < M, n < N.
__device__ __forceinline__ float gllm_mm_finish(const gllm_mm_params &p, int64_t idx, int n,
                                                float acc, float c_old)
{
    float v = p.alpha * acc;
    if (p.beta != 0.0f)
        v += p.beta * c_old;
    if (p.bias)
        v += __bfloat162float(p.bias[n]);
    if (p.gelu)
        v = gllm_mm_gelu(v);
    if (p.residual)
        v += __bfloat162float(p.residual[idx]);
    return v;
}

// Store acc0 at (m, n) and acc1 at (m, n+1) of batch b, predicated on N.
__device__ __forceinline__ void gllm_mm_store2(const gllm_mm_params &p, int b, int m, int n,
                                               float acc0, float acc1)
{
    if (m >= p.M || n >= p.N)
        return;
    int64_t idx = (int64_t)b * p.sc + (int64_t)m * p.ldc + n;
    bool two = n + 1 < p.N;
    if (p.c_f32) {
        float *C = (float *)p.C;
        if (two && p.pair_ok) {
            float2 old = p.beta != 0.0f ? *(const float2 *)(C + idx) : make_float2(0.f, 0.f);
            float2 v = make_float2(gllm_mm_finish(p, idx, n, acc0, old.x),
                                   gllm_mm_finish(p, idx + 1, n + 1, acc1, old.y));
            *(float2 *)(C + idx) = v;
            return;
        }
        C[idx] = gllm_mm_finish(p, idx, n, acc0, p.beta != 0.0f ? C[idx] : 0.f);
        if (two)
            C[idx + 1] = gllm_mm_finish(p, idx + 1, n + 1, acc1, p.beta != 0.0f ? C[idx + 1] : 0.f);
        return;
    }
    __nv_bfloat16 *C = (__nv_bfloat16 *)p.C;
    if (two && p.pair_ok) {
        float2 old = make_float2(0.f, 0.f);
        if (p.beta != 0.0f)
            old = __bfloat1622float2(*(const __nv_bfloat162 *)(C + idx));
        *(__nv_bfloat162 *)(C + idx) =
            __floats2bfloat162_rn(gllm_mm_finish(p, idx, n, acc0, old.x),
                                  gllm_mm_finish(p, idx + 1, n + 1, acc1, old.y));
        return;
    }
    float old0 = p.beta != 0.0f ? __bfloat162float(C[idx]) : 0.f;
    C[idx] = __float2bfloat16(gllm_mm_finish(p, idx, n, acc0, old0));
    if (two) {
        float old1 = p.beta != 0.0f ? __bfloat162float(C[idx + 1]) : 0.f;
        C[idx + 1] = __float2bfloat16(gllm_mm_finish(p, idx + 1, n + 1, acc1, old1));
    }
}

// Tile order that walks GROUP_M tile rows before moving right, so the B
// columns a wave of blocks touches stay in L2.
__device__ __forceinline__ void gllm_mm_tile_order(int bid, int tiles_m, int tiles_n, int *tm,
                                                   int *tn)
{
    const int GROUP_M = 8;
    int per_group = GROUP_M * tiles_n;
    int first_m = (bid / per_group) * GROUP_M;
    int gsize = min(tiles_m - first_m, GROUP_M);
    int in_group = bid % per_group;
    *tm = first_m + in_group % gsize;
    *tn = in_group / gsize;
}

// Check `a` against the contract of gllm_matmul_args and resolve defaults
// (leading dimensions, batch) into *p. Every path calls it first.
gllm_status gllm_mm_resolve(void *C, const void *A, const void *B, const gllm_matmul_args *a,
                            gllm_mm_params *p);

// Launchers (the caller has validated p). Each returns GLLM_ERR_UNSUPPORTED
// when it cannot serve p.
gllm_status gllm_mm_launch_simple(gllm_cuda_ctx *c, const gllm_mm_params &p);
gllm_status gllm_mm_launch_mma(gllm_cuda_ctx *c, const gllm_mm_params &p);
// tile_n: 0 lets the wave heuristic choose the 128- or 256-wide tile; 128 or 256 forces it.
gllm_status gllm_mm_launch_wgmma(gllm_cuda_ctx *c, const gllm_mm_params &p, int tile_n = 0);

// Whether this binary holds the wgmma kernel's body for the device (sm_90a
// code on a compute capability 9.0 GPU): a build without sm_90a runs an empty
// body there. Runs a one-thread probe kernel writing to `scratch` (4 bytes of
// device memory) and waits for it.
gllm_status gllm_mm_wgmma_built(gllm_cuda_ctx *c, int *scratch, bool *out);
