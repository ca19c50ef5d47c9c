// Attention for any head dim (the D = 8 or 16 of test fixtures, or a model whose
// head dim has no tensor-core kernel): one warp per (token, head), keys or queries
// taken 32 at a time, one per lane, then the 32 weights applied to the head's
// values by all lanes together. Simple and exact in structure rather than fast;
// the fixed lane-to-key mapping and shuffle trees keep it deterministic.
#include "attention.cuh"
#include "attention_mma.cuh"

using namespace gllm_attn;

static constexpr int WARPS = 4;

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
// dot of a float vector in shared memory with a bf16 row in global memory
__device__ __forceinline__ float dot_sg(const float *a, const bf16 *b, int D)
{
    float acc = 0.f;
    for (int d = 0; d < D; d++)
        acc += a[d] * __bfloat162float(b[d]);
    return acc;
}
__device__ __forceinline__ float dot_gg(const bf16 *a, const bf16 *b, int D)
{
    float acc = 0.f;
    for (int d = 0; d < D; d++)
        acc += __bfloat162float(a[d]) * __bfloat162float(b[d]);
    return acc;
}

__global__ void attn_fwd_generic_kernel(bf16 *__restrict__ out, float *__restrict__ lse,
                                        const bf16 *__restrict__ qkv,
                                        const int32_t *__restrict__ pos, int N, int T, int Hq,
                                        int Hkv, int D, int window, float scale)
{
    extern __shared__ float sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int idx = blockIdx.x * WARPS + warp;
    if (idx >= N * Hq)
        return; // whole warps leave; nothing below synchronises the block
    const int n = idx / Hq, h = idx % Hq, g = h / (Hq / Hkv);
    float *q = sm + warp * (2 * D + 32), *o = q + D, *p = o + D;
    const size_t ldq = (size_t)(Hq + 2 * Hkv) * D;
    const bf16 *K = qkv + (size_t)(Hq + g) * D, *V = qkv + (size_t)(Hq + Hkv + g) * D;
    for (int d = lane; d < D; d += 32) {
        q[d] = __bfloat162float(qkv[n * ldq + (size_t)h * D + d]) * scale;
        o[d] = 0.f;
    }
    __syncwarp();
    const int lo = key_lo(n, n / T * T, pos, window);
    float mrun = -INFINITY, l = 0.f;
    for (int m0 = lo; m0 <= n; m0 += 32) {
        const int m = m0 + lane, cnt = min(32, n - m0 + 1);
        const float sc = m <= n ? dot_sg(q, K + m * ldq, D) : -INFINITY;
        const float mn = fmaxf(mrun, warp_max(sc)); // finite: lane 0's key is visible
        const float alpha = __expf(mrun - mn), pe = m <= n ? __expf(sc - mn) : 0.f;
        p[lane] = pe;
        l = l * alpha + warp_sum(pe);
        mrun = mn;
        __syncwarp();
        for (int d = lane; d < D; d += 32) {
            float acc = o[d] * alpha;
            for (int j = 0; j < cnt; j++)
                acc += p[j] * __bfloat162float(V[(m0 + j) * ldq + d]);
            o[d] = acc;
        }
        __syncwarp();
    }
    for (int d = lane; d < D; d += 32)
        out[(size_t)n * Hq * D + (size_t)h * D + d] = __float2bfloat16_rn(o[d] / l);
    if (lane == 0)
        lse[(size_t)n * Hq + h] = mrun + logf(l);
}

// dQ for one (token, head): dq = scale * sum_m p_m (dO.v_m - dO.o) k_m
__global__ void attn_dq_generic_kernel(bf16 *__restrict__ dqkv, const bf16 *__restrict__ dout,
                                       const bf16 *__restrict__ qkv,
                                       const bf16 *__restrict__ out,
                                       const float *__restrict__ lse,
                                       const int32_t *__restrict__ pos, int N, int T, int Hq,
                                       int Hkv, int D, int window, float scale)
{
    extern __shared__ float sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int idx = blockIdx.x * WARPS + warp;
    if (idx >= N * Hq)
        return;
    const int n = idx / Hq, h = idx % Hq, g = h / (Hq / Hkv);
    float *q = sm + warp * (3 * D + 32), *go = q + D, *dq = go + D, *dsb = dq + D;
    const size_t ldq = (size_t)(Hq + 2 * Hkv) * D, ho = (size_t)n * Hq * D + (size_t)h * D;
    const bf16 *K = qkv + (size_t)(Hq + g) * D, *V = qkv + (size_t)(Hq + Hkv + g) * D;
    float di = 0.f;
    for (int d = lane; d < D; d += 32) {
        q[d] = __bfloat162float(qkv[n * ldq + (size_t)h * D + d]);
        go[d] = __bfloat162float(dout[ho + d]);
        dq[d] = 0.f;
        di += go[d] * __bfloat162float(out[ho + d]);
    }
    di = warp_sum(di);
    __syncwarp();
    const float l = lse[(size_t)n * Hq + h];
    const int lo = key_lo(n, n / T * T, pos, window);
    for (int m0 = lo; m0 <= n; m0 += 32) {
        const int m = m0 + lane, cnt = min(32, n - m0 + 1);
        float ds = 0.f;
        if (m <= n) {
            float p = __expf(scale * dot_sg(q, K + m * ldq, D) - l);
            ds = p * (dot_sg(go, V + m * ldq, D) - di);
        }
        dsb[lane] = ds;
        __syncwarp();
        for (int d = lane; d < D; d += 32) {
            float acc = dq[d];
            for (int j = 0; j < cnt; j++)
                acc += dsb[j] * __bfloat162float(K[(m0 + j) * ldq + d]);
            dq[d] = acc;
        }
        __syncwarp();
    }
    for (int d = lane; d < D; d += 32)
        dqkv[n * ldq + (size_t)h * D + d] = __float2bfloat16_rn(dq[d] * scale);
}

// dK, dV for one (key token, kv head): sums over the group's query heads, in
// order, and over the queries that see the key.
__global__ void attn_dkv_generic_kernel(bf16 *__restrict__ dqkv, const bf16 *__restrict__ dout,
                                        const bf16 *__restrict__ qkv,
                                        const bf16 *__restrict__ out,
                                        const float *__restrict__ lse,
                                        const int32_t *__restrict__ pos, int N, int T, int Hq,
                                        int Hkv, int D, int window, float scale)
{
    extern __shared__ float sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int idx = blockIdx.x * WARPS + warp;
    if (idx >= N * Hkv)
        return;
    const int m = idx / Hkv, g = idx % Hkv, G = Hq / Hkv;
    float *k = sm + warp * (4 * D + 64), *v = k + D, *dk = v + D, *dv = dk + D, *pb = dv + D,
          *dsb = pb + 32;
    const size_t ldq = (size_t)(Hq + 2 * Hkv) * D;
    for (int d = lane; d < D; d += 32) {
        k[d] = __bfloat162float(qkv[m * ldq + (size_t)(Hq + g) * D + d]);
        v[d] = __bfloat162float(qkv[m * ldq + (size_t)(Hq + Hkv + g) * D + d]);
        dk[d] = dv[d] = 0.f;
    }
    __syncwarp();
    const int row0 = m / T * T;
    const int hi = window > 0 ? min(row0 + T - 1, m + window - 1) : row0 + T - 1;
    for (int hh = 0; hh < G; hh++) {
        const int h = g * G + hh;
        for (int n0 = m; n0 <= hi; n0 += 32) {
            const int n = n0 + lane, cnt = min(32, hi - n0 + 1);
            float p = 0.f, ds = 0.f;
            if (n <= hi && key_lo(n, row0, pos, window) <= m) {
                const size_t ho = (size_t)n * Hq * D + (size_t)h * D;
                p = __expf(scale * dot_sg(k, qkv + n * ldq + (size_t)h * D, D) -
                           lse[(size_t)n * Hq + h]);
                ds = p * (dot_sg(v, dout + ho, D) - dot_gg(dout + ho, out + ho, D));
            }
            pb[lane] = p;
            dsb[lane] = ds;
            __syncwarp();
            for (int d = lane; d < D; d += 32) {
                float av = dv[d], ak = dk[d];
                for (int j = 0; j < cnt; j++) {
                    const size_t nn = n0 + j;
                    av += pb[j] * __bfloat162float(dout[nn * Hq * D + (size_t)h * D + d]);
                    ak += dsb[j] * __bfloat162float(qkv[nn * ldq + (size_t)h * D + d]);
                }
                dv[d] = av;
                dk[d] = ak;
            }
            __syncwarp();
        }
    }
    for (int d = lane; d < D; d += 32) {
        dqkv[m * ldq + (size_t)(Hq + g) * D + d] = __float2bfloat16_rn(dk[d] * scale);
        dqkv[m * ldq + (size_t)(Hq + Hkv + g) * D + d] = __float2bfloat16_rn(dv[d]);
    }
}

// Raise the kernel's dynamic shared-memory limit when it needs more than 48 KB.
template <typename K>
static gllm_status smem_fits(gllm_cuda_ctx *c, K kern, size_t bytes, const char *op, int D)
{
    if (bytes > c->smem_optin)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "%s: head dim %d needs %zu bytes of shared memory, the device allows %zu",
                         op, D, bytes, c->smem_optin);
    if (bytes > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)bytes));
    return GLLM_OK;
}

gllm_status gllm_cuda_attention_fwd_generic(gllm_cuda_ctx *c, bf16 *out, float *lse,
                                            const bf16 *qkv, const int32_t *pos,
                                            const gllm_attn_shape *s)
{
    const int N = s->B * s->T;
    const size_t smem = (size_t)WARPS * (2 * s->D + 32) * sizeof(float);
    GLLM_TRY(smem_fits(c, attn_fwd_generic_kernel, smem, "attention_fwd", s->D));
    attn_fwd_generic_kernel<<<gllm_cdiv(N * s->Hq, WARPS), WARPS * 32, smem, c->stream>>>(
        out, lse, qkv, pos, N, s->T, s->Hq, s->Hkv, s->D, s->window, s->scale);
    CUDA_LAUNCH_CHECK("attn_fwd_generic_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_attention_bwd_generic(gllm_cuda_ctx *c, bf16 *dqkv, const bf16 *dout,
                                            const bf16 *qkv, const bf16 *out, const float *lse,
                                            const int32_t *pos, const gllm_attn_shape *s)
{
    const int N = s->B * s->T;
    const size_t smem_q = (size_t)WARPS * (3 * s->D + 32) * sizeof(float);
    const size_t smem_kv = (size_t)WARPS * (4 * s->D + 64) * sizeof(float);
    GLLM_TRY(smem_fits(c, attn_dq_generic_kernel, smem_q, "attention_bwd", s->D));
    GLLM_TRY(smem_fits(c, attn_dkv_generic_kernel, smem_kv, "attention_bwd", s->D));
    attn_dq_generic_kernel<<<gllm_cdiv(N * s->Hq, WARPS), WARPS * 32, smem_q, c->stream>>>(
        dqkv, dout, qkv, out, lse, pos, N, s->T, s->Hq, s->Hkv, s->D, s->window, s->scale);
    CUDA_LAUNCH_CHECK("attn_dq_generic_kernel");
    attn_dkv_generic_kernel<<<gllm_cdiv(N * s->Hkv, WARPS), WARPS * 32, smem_kv, c->stream>>>(
        dqkv, dout, qkv, out, lse, pos, N, s->T, s->Hq, s->Hkv, s->D, s->window, s->scale);
    CUDA_LAUNCH_CHECK("attn_dkv_generic_kernel");
    return GLLM_OK;
}
