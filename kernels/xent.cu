// Cross-entropy, one block per row. Pass 1 streams the bf16 row once with an online
// (max, sum of exp) per thread, combined in a fixed tree; pass 2 overwrites the row
// with the gradient. Nothing of size N x V exists in fp32: the row is re-read from
// the bf16 logits (mostly from L2) instead of being kept.
#include "xent.cuh"

namespace {

const int xent_threads = 512;

// Adds exp(x) to the running (max m, sum s scaled by exp(-m)). A -inf logit adds
// nothing: while m is still -inf, exp(x - m) would be exp(-inf + inf) = NaN.
__device__ inline void online_add(float &m, float &s, float x)
{
    if (x > m) {
        s = s * __expf(m - x) + 1.0f; // m = -inf: s is 0 and 0 * exp(-inf) is 0
        m = x;
    } else if (x != -INFINITY) {
        s += __expf(x - m);
    }
}

__global__ void xent_kernel(float *loss, __nv_bfloat16 *logits, const int32_t *targets,
                            const float *loss_mask, int V, float scale, bool vec)
{
    __shared__ float red_m[32], red_s[32];
    __shared__ float row_stats[2];
    size_t row = blockIdx.x;
    __nv_bfloat16 *x = logits + row * V;
    float mask = loss_mask ? loss_mask[row] : 1.0f;
    if (mask == 0.0f && scale == 0.0f) {
        if (threadIdx.x == 0)
            loss[row] = 0.0f;
        return;
    }
    float m = -INFINITY, s = 0.0f;
    int V8 = vec ? V / 8 * 8 : 0;
    for (int i = threadIdx.x * 8; i < V8; i += blockDim.x * 8) {
        uint4 u = *(const uint4 *)(x + i);
        const __nv_bfloat162 *p = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 f = __bfloat1622float2(p[j]);
            online_add(m, s, f.x);
            online_add(m, s, f.y);
        }
    }
    for (int i = V8 + threadIdx.x; i < V; i += blockDim.x)
        online_add(m, s, gllm_ld(x + i));
    // Warp, then block combination of (m, s) pairs in a fixed order.
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        float mm = fmaxf(m, m2);
        s = (m == -INFINITY ? 0.0f : s * __expf(m - mm)) +
            (m2 == -INFINITY ? 0.0f : s2 * __expf(m2 - mm));
        m = mm;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        red_m[warp] = m;
        red_s[warp] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = -INFINITY, S = 0.0f;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
            float mm = fmaxf(M, red_m[w]);
            S = (M == -INFINITY ? 0.0f : S * __expf(M - mm)) +
                (red_m[w] == -INFINITY ? 0.0f : red_s[w] * __expf(red_m[w] - mm));
            M = mm;
        }
        float lse = M + logf(S);
        row_stats[0] = lse;
        if (mask == 0.0f) {
            loss[row] = 0.0f;
        } else {
            int t = targets[row];
            loss[row] = (t >= 0 && t < V) ? lse - gllm_ld(x + t) : NAN;
            row_stats[1] = (float)t;
        }
    }
    __syncthreads();
    if (scale == 0.0f)
        return;
    float lse = row_stats[0], f = scale * mask;
    int t = mask == 0.0f ? -1 : (int)row_stats[1];
    for (int i = threadIdx.x * 8; i < V8; i += blockDim.x * 8) {
        uint4 u = *(const uint4 *)(x + i);
        __nv_bfloat162 *p = (__nv_bfloat162 *)&u;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 v = __bfloat1622float2(p[j]);
            int k = i + 2 * j;
            float g0 = f * (__expf(v.x - lse) - (k == t ? 1.0f : 0.0f));
            float g1 = f * (__expf(v.y - lse) - (k + 1 == t ? 1.0f : 0.0f));
            p[j] = __floats2bfloat162_rn(g0, g1);
        }
        *(uint4 *)(x + i) = u;
    }
    for (int i = V8 + threadIdx.x; i < V; i += blockDim.x)
        x[i] = gllm_bf(f * (__expf(gllm_ld(x + i) - lse) - (i == t ? 1.0f : 0.0f)));
}

} // namespace

gllm_status gllm_cuda_xent_fwd_bwd(gllm_cuda_ctx *c, float *loss, __nv_bfloat16 *logits,
                                   const int32_t *targets, const float *loss_mask, int N, int V,
                                   float dlogits_scale)
{
    if (N <= 0)
        return GLLM_OK;
    if (V <= 0)
        return gllm_fail(GLLM_ERR_INVALID, "cuda xent_fwd_bwd: vocabulary size %d", V);
    // 16-byte row access needs every row start aligned: V a multiple of 8 elements.
    bool vec = (V % 8) == 0 && ((uintptr_t)logits & 15) == 0;
    xent_kernel<<<N, xent_threads, 0, c->stream>>>(loss, logits, targets, loss_mask, V,
                                                  dlogits_scale, vec);
    CUDA_LAUNCH_CHECK("xent_kernel");
    return GLLM_OK;
}
