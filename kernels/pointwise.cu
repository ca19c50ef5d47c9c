// Pointwise kernels. Memory-bound: each thread moves 16-byte vectors (8 bf16)
// when every pointer allows it, with a scalar path for the ragged end.
#include "pointwise.cuh"

namespace {

const float k_gelu = 0.7978845608028654f; // sqrt(2/pi)

struct gelu_fwd_op {
    __device__ float operator()(float x, float) const
    {
        return 0.5f * x * (1.0f + tanhf(k_gelu * (x + 0.044715f * x * x * x)));
    }
};
struct gelu_bwd_op { // (inp, dout) -> dout * gelu'(inp)
    __device__ float operator()(float x, float g) const
    {
        float t = tanhf(k_gelu * (x + 0.044715f * x * x * x));
        float du = k_gelu * (1.0f + 3.0f * 0.044715f * x * x);
        return g * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
};
struct add_op {
    __device__ float operator()(float a, float b) const { return a + b; }
};

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <class Op>
__global__ void map_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *a, const __nv_bfloat16 *b,
                           size_t n, bool vec, Op op)
{
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i0 >= n)
        return;
    if (vec && i0 + 8 <= n) {
        uint4 va = *(const uint4 *)(a + i0), vb = va, vo;
        if (b)
            vb = *(const uint4 *)(b + i0);
        const __nv_bfloat162 *pa = (const __nv_bfloat162 *)&va, *pb = (const __nv_bfloat162 *)&vb;
        __nv_bfloat162 *po = (__nv_bfloat162 *)&vo;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 fa = __bfloat1622float2(pa[j]), fb = __bfloat1622float2(pb[j]);
            po[j] = __floats2bfloat162_rn(op(fa.x, fb.x), op(fa.y, fb.y));
        }
        *(uint4 *)(out + i0) = vo;
        return;
    }
    size_t end = i0 + 8 < n ? i0 + 8 : n;
    for (size_t i = i0; i < end; i++)
        out[i] = gllm_bf(op(gllm_ld(a + i), b ? gllm_ld(b + i) : 0.0f));
}

template <class Op>
gllm_status launch_map(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *a,
                       const __nv_bfloat16 *b, size_t n, Op op)
{
    if (n == 0)
        return GLLM_OK;
    bool vec = aligned16(out) && aligned16(a) && (!b || aligned16(b));
    size_t threads = (n + 7) / 8;
    unsigned blocks = (unsigned)((threads + 255) / 256);
    map_kernel<<<blocks, 256, 0, c->stream>>>(out, a, b, n, vec, op);
    CUDA_LAUNCH_CHECK("map_kernel");
    return GLLM_OK;
}

__device__ inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void swiglu_fwd_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *inp, int N, int I)
{
    size_t total = (size_t)N * I;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t n = e / I, i = e % I;
        const __nv_bfloat16 *row = inp + n * 2 * I;
        float g = gllm_ld(row + i), u = gllm_ld(row + I + i);
        out[e] = gllm_bf(g * sigmoidf_(g) * u);
    }
}

__global__ void swiglu_bwd_kernel(__nv_bfloat16 *dinp, const __nv_bfloat16 *inp,
                                  const __nv_bfloat16 *dout, int N, int I)
{
    size_t total = (size_t)N * I;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t n = e / I, i = e % I;
        const __nv_bfloat16 *row = inp + n * 2 * I;
        float g = gllm_ld(row + i), u = gllm_ld(row + I + i), d = gllm_ld(dout + e);
        float s = sigmoidf_(g);
        dinp[n * 2 * I + i] = gllm_bf(d * u * s * (1.0f + g * (1.0f - s)));
        dinp[n * 2 * I + I + i] = gllm_bf(d * g * s);
    }
}

unsigned grid_for(gllm_cuda_ctx *c, size_t total, int threads)
{
    size_t want = (total + threads - 1) / threads, cap = (size_t)c->n_sms * 32;
    return (unsigned)(want < cap ? (want ? want : 1) : cap);
}

// Bias gradient, stage 1: block (x: 32 columns, y: 8 row lanes) sums its chunk of
// rows for its columns, each row lane in row order, then the lanes in lane order.
const int bias_cols = 32, bias_lanes = 8, bias_rows_per_chunk = 256;

__global__ void bias_partial_kernel(float *partial, const __nv_bfloat16 *dout, int M, int N)
{
    __shared__ float acc[bias_lanes][bias_cols];
    int col = blockIdx.x * bias_cols + threadIdx.x;
    int r0 = blockIdx.y * bias_rows_per_chunk;
    int r1 = min(M, r0 + bias_rows_per_chunk);
    float s = 0.0f;
    if (col < N)
        for (int r = r0 + threadIdx.y; r < r1; r += bias_lanes)
            s += gllm_ld(dout + (size_t)r * N + col);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < N) {
        float t = 0.0f;
        for (int l = 0; l < bias_lanes; l++)
            t += acc[l][threadIdx.x];
        partial[(size_t)blockIdx.y * N + col] = t;
    }
}

__global__ void bias_final_kernel(float *dbias, const float *partial, int chunks, int N)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= N)
        return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++)
        s += partial[(size_t)k * N + col];
    dbias[col] += s;
}

} // namespace

gllm_status gllm_cuda_gelu_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *inp,
                               size_t n)
{
    return launch_map(c, out, inp, NULL, n, gelu_fwd_op());
}

gllm_status gllm_cuda_gelu_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, const __nv_bfloat16 *inp,
                               const __nv_bfloat16 *dout, size_t n)
{
    return launch_map(c, dinp, inp, dout, n, gelu_bwd_op());
}

gllm_status gllm_cuda_add(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *a,
                          const __nv_bfloat16 *b, size_t n)
{
    return launch_map(c, out, a, b, n, add_op());
}

gllm_status gllm_cuda_swiglu_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, const __nv_bfloat16 *inp,
                                 int N, int I)
{
    if ((size_t)N * I == 0)
        return GLLM_OK;
    swiglu_fwd_kernel<<<grid_for(c, (size_t)N * I, 256), 256, 0, c->stream>>>(out, inp, N, I);
    CUDA_LAUNCH_CHECK("swiglu_fwd_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_swiglu_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp,
                                 const __nv_bfloat16 *inp, const __nv_bfloat16 *dout, int N,
                                 int I)
{
    if ((size_t)N * I == 0)
        return GLLM_OK;
    swiglu_bwd_kernel<<<grid_for(c, (size_t)N * I, 256), 256, 0, c->stream>>>(dinp, inp, dout,
                                                                              N, I);
    CUDA_LAUNCH_CHECK("swiglu_bwd_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_bias_bwd(gllm_cuda_ctx *c, float *dbias, const __nv_bfloat16 *dout, int M,
                               int N)
{
    if (M <= 0 || N <= 0)
        return GLLM_OK;
    int chunks = gllm_cdiv(M, bias_rows_per_chunk);
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, (size_t)chunks * N * sizeof(float), "bias_bwd", &scratch));
    float *partial = (float *)scratch;
    dim3 grid(gllm_cdiv(N, bias_cols), chunks), block(bias_cols, bias_lanes);
    bias_partial_kernel<<<grid, block, 0, c->stream>>>(partial, dout, M, N);
    CUDA_LAUNCH_CHECK("bias_partial_kernel");
    bias_final_kernel<<<gllm_cdiv(N, 256), 256, 0, c->stream>>>(dbias, partial, chunks, N);
    CUDA_LAUNCH_CHECK("bias_final_kernel");
    return GLLM_OK;
}
