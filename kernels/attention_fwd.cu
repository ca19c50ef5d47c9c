// Flash-attention-2 forward on tensor cores (mma.sync m16n8k16, bf16 in, fp32
// accumulate): one block per (64-query tile, q head, row), K/V tiles streamed
// through shared memory with cp.async double buffering, online softmax in
// registers, no T x T matrix anywhere. Key tiles start at the first key any row
// of the query tile may see (from pos and the window), so documents packed into
// one row cost only their own causal triangle.
#include "attention.cuh"
#include "attention_mma.cuh"

using namespace gllm_attn;

template <int D, int BM, int BN>
__global__ void __launch_bounds__(THREADS)
    attn_fwd_kernel(bf16 *__restrict__ out, float *__restrict__ lse,
                    const bf16 *__restrict__ qkv, const int32_t *__restrict__ pos, int T, int Hq,
                    int Hkv, int window, float scale_log2)
{
    constexpr int LD = D + 8, KT = D / 16, NT = BN / 8, DT = D / 8;
    static_assert(BM == 16 * (THREADS / 32), "one warp per 16 query rows");
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sK = sQ + BM * LD;
    bf16 *sV = sK + 2 * BN * LD;
    __shared__ int s_red[2][BM / 32];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int h = blockIdx.y, b = blockIdx.z;
    const int row0 = b * T, q0 = row0 + blockIdx.x * BM;
    const int nq = min(BM, row0 + T - q0);
    const int g = h / (Hq / Hkv);
    const size_t ldq = (size_t)(Hq + 2 * Hkv) * D;
    const bf16 *Kb = qkv + (size_t)(Hq + g) * D;
    const bf16 *Vb = qkv + (size_t)(Hq + Hkv + g) * D;

    int kstart, lomax;
    query_tile_bounds<BM>(q0, nq, row0, pos, window, &s_red[0][0], kstart, lomax);
    const int kend = q0 + nq - 1; // the last query of the tile sees at most itself
    const int n_tiles = (kend - kstart) / BN + 1;

    // this thread's two rows: r0 and r0 + 8 of the warp's 16
    const int r0 = warp * 16 + (lane >> 2);
    int lo_r[2], hi_r[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int r = r0 + 8 * i;
        lo_r[i] = r < nq ? key_lo(q0 + r, row0, pos, window) : INT_MAX;
        hi_r[i] = q0 + r;
    }

    load_tile<D, BM>(sQ, qkv + (size_t)q0 * ldq + (size_t)h * D, ldq, nq, tid);
    load_tile<D, BN>(sK, Kb + (size_t)kstart * ldq, ldq, kend - kstart + 1, tid);
    load_tile<D, BN>(sV, Vb + (size_t)kstart * ldq, ldq, kend - kstart + 1, tid);
    cp_async_commit();

    float o[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; dt++)
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    uint32_t qf[KT][4];

    for (int it = 0; it < n_tiles; it++) {
        const int k0 = kstart + it * BN, st = it & 1;
        if (it + 1 < n_tiles) {
            const int kn = k0 + BN;
            load_tile<D, BN>(sK + (st ^ 1) * BN * LD, Kb + (size_t)kn * ldq, ldq, kend - kn + 1,
                             tid);
            load_tile<D, BN>(sV + (st ^ 1) * BN * LD, Vb + (size_t)kn * ldq, ldq, kend - kn + 1,
                             tid);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < KT; kk++)
                load_a(qf[kk], sQ, LD, warp * 16, kk * 16, lane);
        }
        const bf16 *k_s = sK + st * BN * LD, *v_s = sV + st * BN * LD;

        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
#pragma unroll
            for (int j = 0; j < NT; j += 2) {
                uint32_t bb[4];
                load_b_nk(bb, k_s, LD, j * 8, kk * 16, lane);
                mma16816(s[j], qf[kk], bb[0], bb[1]);
                mma16816(s[j + 1], qf[kk], bb[2], bb[3]);
            }
        }

        // Tiles wholly inside every row's window skip the per-element mask.
        const bool full = nq == BM && k0 >= lomax && k0 + BN - 1 <= q0;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = k0 + j * 8 + 2 * (lane & 3) + (e & 1);
                float x = s[j][e] * scale_log2;
                if (!full && !(key >= lo_r[e >> 1] && key <= hi_r[e >> 1]))
                    x = -INFINITY;
                s[j][e] = x;
            }
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < NT; j++)
                mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mn = fmaxf(m[i], mx);
            // a row with nothing visible yet keeps exponents finite: exp2(-inf - 0) = 0
            const float base = mn == -INFINITY ? 0.f : mn;
            const float alpha = exp2f(m[i] - base);
            m[i] = mn;
            l[i] *= alpha;
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                o[dt][2 * i] *= alpha;
                o[dt][2 * i + 1] *= alpha;
            }
#pragma unroll
            for (int j = 0; j < NT; j++) {
                float p0 = exp2f(s[j][2 * i] - base), p1 = exp2f(s[j][2 * i + 1] - base);
                s[j][2 * i] = p0;
                s[j][2 * i + 1] = p1;
                l[i] += p0 + p1;
            }
        }
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                             pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dt = 0; dt < DT; dt += 2) {
                uint32_t bb[4];
                load_b_kn(bb, v_s, LD, kk * 16, dt * 8, lane);
                mma16816(o[dt], a, bb[0], bb[1]);
                mma16816(o[dt + 1], a, bb[2], bb[3]);
            }
        }
        __syncthreads(); // this stage is refilled by the next iteration's prefetch
    }

#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        const int r = r0 + 8 * i;
        if (r >= nq)
            continue;
        const float inv = 1.f / l[i];
        bf16 *dst = out + (size_t)(q0 + r) * Hq * D + (size_t)h * D;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *(__nv_bfloat162 *)(dst + dt * 8 + 2 * (lane & 3)) =
                __floats2bfloat162_rn(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
        if ((lane & 3) == 0)
            lse[(size_t)(q0 + r) * Hq + h] = (m[i] + log2f(l[i])) / LOG2E;
    }
}

template <int D>
static gllm_status launch_fwd(gllm_cuda_ctx *c, bf16 *out, float *lse, const bf16 *qkv,
                              const int32_t *pos, const gllm_attn_shape *s)
{
    constexpr int BM = 64, BN = 64;
    const size_t smem = (size_t)(BM + 4 * BN) * (D + 8) * sizeof(bf16);
    auto kern = attn_fwd_kernel<D, BM, BN>;
    CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(gllm_cdiv(s->T, BM), s->Hq, s->B);
    kern<<<grid, THREADS, smem, c->stream>>>(out, lse, qkv, pos, s->T, s->Hq, s->Hkv, s->window,
                                             s->scale * LOG2E);
    CUDA_LAUNCH_CHECK("attn_fwd_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_attn_check(const char *op, const gllm_attn_shape *s)
{
    if (!s || s->B <= 0 || s->T <= 0 || s->Hq <= 0 || s->Hkv <= 0 || s->D <= 0 ||
        s->Hq % s->Hkv || s->window < 0 || s->Hq > 65535 || s->B > 65535 ||
        (int64_t)s->B * s->T > INT_MAX / 2)
        return gllm_fail(GLLM_ERR_INVALID,
                         "%s: bad shape (B=%d T=%d Hq=%d Hkv=%d D=%d window=%d): need positive "
                         "sizes, Hq a multiple of Hkv, window >= 0",
                         op, s ? s->B : 0, s ? s->T : 0, s ? s->Hq : 0, s ? s->Hkv : 0,
                         s ? s->D : 0, s ? s->window : 0);
    return GLLM_OK;
}

gllm_status gllm_cuda_attention_fwd(gllm_cuda_ctx *c, bf16 *out, float *lse, const bf16 *qkv,
                                    const int32_t *pos, const gllm_attn_shape *s)
{
    GLLM_TRY(gllm_cuda_attn_check("attention_fwd", s));
    if (!out || !lse || !qkv || !pos)
        return gllm_fail(GLLM_ERR_INVALID, "attention_fwd: NULL buffer");
    // cp.async moves 16-byte pieces and the output is written in bf16 pairs
    const bool aligned = ((uintptr_t)qkv % 16) == 0 && ((uintptr_t)out % 4) == 0;
    if (aligned && s->D == 64)
        return launch_fwd<64>(c, out, lse, qkv, pos, s);
    if (aligned && s->D == 80)
        return launch_fwd<80>(c, out, lse, qkv, pos, s);
    if (aligned && s->D == 128)
        return launch_fwd<128>(c, out, lse, qkv, pos, s);
    return gllm_cuda_attention_fwd_generic(c, out, lse, qkv, pos, s);
}
