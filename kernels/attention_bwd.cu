// Flash-attention-2 backward on tensor cores, deterministic by construction:
//   1. prep: D_i = rowsum(dO * O) per (token, head), and per 64-query-tile the
//      smallest first-visible key (to skip query tiles that see nothing of a key tile);
//   2. dK, dV: one block per (64-key tile, kv head, row) owns its rows of dK and dV
//      and walks the group's query heads and the query tiles in a fixed order,
//      recomputing P from the saved lse (S^T = K Q^T, dV += P^T dO, dP^T = V dO^T,
//      dS = P (dP - D), dK += dS^T Q);
//   3. dQ: one block per (64-query tile, q head, row) walks its key tiles like the
//      forward (S = Q K^T, dP = dO V^T, dQ += dS K).
// dQ is recomputed in its own pass instead of accumulated by the key-tile blocks:
// two more tensor-core products per tile, but no atomics and no partial buffers.
#include "attention.cuh"
#include "attention_mma.cuh"

using namespace gllm_attn;

// One warp per (token, head): di[n, h] = sum_d dO * O in fp32, fixed lane order.
__global__ void attn_bwd_rowdot_kernel(float *__restrict__ di, const bf16 *__restrict__ dout,
                                       const bf16 *__restrict__ out, int NH, int D)
{
    const int idx = blockIdx.x * (THREADS / 32) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (idx >= NH)
        return;
    const bf16 *a = dout + (size_t)idx * D, *b = out + (size_t)idx * D;
    float acc = 0.f;
    for (int d = lane; d < D; d += 32)
        acc += __bfloat162float(a[d]) * __bfloat162float(b[d]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0)
        di[idx] = acc;
}

// qlo[b * n_qt + qt]: the smallest first-visible key of query tile qt of row b.
__global__ void attn_bwd_tile_lo_kernel(int32_t *__restrict__ qlo,
                                        const int32_t *__restrict__ pos, int B, int T, int BM,
                                        int window)
{
    const int n_qt = gllm_cdiv(T, BM);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * n_qt)
        return;
    const int b = i / n_qt, row0 = b * T, q0 = row0 + (i % n_qt) * BM;
    const int q1 = min(q0 + BM, row0 + T);
    int lo = INT_MAX;
    for (int n = q0; n < q1; n++)
        lo = min(lo, key_lo(n, row0, pos, window));
    qlo[i] = lo;
}

template <int D, int BM, int BN>
__global__ void __launch_bounds__(THREADS)
    attn_dq_kernel(bf16 *__restrict__ dqkv, const bf16 *__restrict__ dout,
                   const bf16 *__restrict__ qkv, const float *__restrict__ lse,
                   const float *__restrict__ di, const int32_t *__restrict__ pos, int T, int Hq,
                   int Hkv, int window, float scale_log2, float scale)
{
    constexpr int LD = D + 8, KT = D / 16, NT = BN / 8, DT = D / 8;
    static_assert(BM == 16 * (THREADS / 32), "one warp per 16 query rows");
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sdO = sQ + BM * LD;
    bf16 *sK = sdO + BM * LD;
    bf16 *sV = sK + 2 * BN * LD;
    __shared__ int s_red[2 * BM / 32];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int h = blockIdx.y, b = blockIdx.z;
    const int row0 = b * T, q0 = row0 + blockIdx.x * BM;
    const int nq = min(BM, row0 + T - q0);
    const int g = h / (Hq / Hkv);
    const size_t ldq = (size_t)(Hq + 2 * Hkv) * D, ldo = (size_t)Hq * D;
    const bf16 *Kb = qkv + (size_t)(Hq + g) * D;
    const bf16 *Vb = qkv + (size_t)(Hq + Hkv + g) * D;

    int kstart, lomax;
    query_tile_bounds<BM>(q0, nq, row0, pos, window, s_red, kstart, lomax);
    const int kend = q0 + nq - 1;
    const int n_tiles = (kend - kstart) / BN + 1;

    const int r0 = warp * 16 + (lane >> 2);
    int lo_r[2], hi_r[2];
    float lse_r[2], di_r[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = r0 + 8 * i;
        const bool ok = r < nq;
        lo_r[i] = ok ? key_lo(q0 + r, row0, pos, window) : INT_MAX;
        hi_r[i] = q0 + r;
        lse_r[i] = ok ? lse[(size_t)(q0 + r) * Hq + h] * LOG2E : 0.f;
        di_r[i] = ok ? di[(size_t)(q0 + r) * Hq + h] : 0.f;
    }

    load_tile<D, BM>(sQ, qkv + (size_t)q0 * ldq + (size_t)h * D, ldq, nq, tid);
    load_tile<D, BM>(sdO, dout + (size_t)q0 * ldo + (size_t)h * D, ldo, nq, tid);
    load_tile<D, BN>(sK, Kb + (size_t)kstart * ldq, ldq, kend - kstart + 1, tid);
    load_tile<D, BN>(sV, Vb + (size_t)kstart * ldq, ldq, kend - kstart + 1, tid);
    cp_async_commit();

    float dq[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; dt++)
        dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.f;

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
        const bf16 *k_s = sK + st * BN * LD, *v_s = sV + st * BN * LD;

        float s[NT][4], dp[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[j][e] = dp[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            uint32_t aq[4], ao[4];
            load_a(aq, sQ, LD, warp * 16, kk * 16, lane);
            load_a(ao, sdO, LD, warp * 16, kk * 16, lane);
#pragma unroll
            for (int j = 0; j < NT; j += 2) {
                uint32_t bb[4];
                load_b_nk(bb, k_s, LD, j * 8, kk * 16, lane);
                mma16816(s[j], aq, bb[0], bb[1]);
                mma16816(s[j + 1], aq, bb[2], bb[3]);
                load_b_nk(bb, v_s, LD, j * 8, kk * 16, lane);
                mma16816(dp[j], ao, bb[0], bb[1]);
                mma16816(dp[j + 1], ao, bb[2], bb[3]);
            }
        }
        const bool full = nq == BM && k0 >= lomax && k0 + BN - 1 <= q0;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + j * 8 + 2 * (lane & 3) + (e & 1), i = e >> 1;
                const bool vis = full || (key >= lo_r[i] && key <= hi_r[i]);
                const float p = vis ? exp2f(s[j][e] * scale_log2 - lse_r[i]) : 0.f;
                s[j][e] = p * (dp[j][e] - di_r[i]);
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
                load_b_kn(bb, k_s, LD, kk * 16, dt * 8, lane);
                mma16816(dq[dt], a, bb[0], bb[1]);
                mma16816(dq[dt + 1], a, bb[2], bb[3]);
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = r0 + 8 * i;
        if (r >= nq)
            continue;
        bf16 *dst = dqkv + (size_t)(q0 + r) * ldq + (size_t)h * D;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *(__nv_bfloat162 *)(dst + dt * 8 + 2 * (lane & 3)) =
                __floats2bfloat162_rn(dq[dt][2 * i] * scale, dq[dt][2 * i + 1] * scale);
    }
}

template <int D, int BM, int BN, int QS>
__global__ void __launch_bounds__(THREADS)
    attn_dkv_kernel(bf16 *__restrict__ dqkv, const bf16 *__restrict__ dout,
                    const bf16 *__restrict__ qkv, const float *__restrict__ lse,
                    const float *__restrict__ di, const int32_t *__restrict__ qlo,
                    const int32_t *__restrict__ pos, int T, int Hq, int Hkv, int window,
                    float scale_log2, float scale)
{
    constexpr int LD = D + 8, KT = D / 16, MT = QS / 8, DT = D / 8;
    static_assert(BM % QS == 0 && QS % 16 == 0, "whole 16-row slices");
    static_assert(BN == 16 * (THREADS / 32), "one warp per 16 keys");
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sK = (bf16 *)smem;
    bf16 *sV = sK + BN * LD;
    bf16 *sQ = sV + BN * LD;
    bf16 *sdO = sQ + 2 * BM * LD;
    __shared__ float s_lse[2][BM], s_di[2][BM];
    __shared__ int s_lo[2][BM];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = blockIdx.y, b = blockIdx.z, G = Hq / Hkv;
    const int row0 = b * T, k0 = row0 + blockIdx.x * BN;
    const int nk = min(BN, row0 + T - k0), klast = k0 + nk - 1;
    const size_t ldq = (size_t)(Hq + 2 * Hkv) * D, ldo = (size_t)Hq * D;
    const int n_qt = gllm_cdiv(T, BM);
    const int qend = window > 0 ? min(row0 + T - 1, klast + window - 1) : row0 + T - 1;
    const int qt0 = (k0 - row0) / BM, n_range = (qend - row0) / BM - qt0 + 1;
    const int n_items = G * n_range; // item = (query head of the group, query tile)
    const int32_t *tlo = qlo + (size_t)b * n_qt + qt0;

    // Stage item `it`'s query rows: Q and dO by cp.async, lse/di/first key by plain stores
    // (visible after the barrier that precedes their use).
    auto stage_item = [&](int it, int st) {
        const int h = g * G + it / n_range;
        const int q0 = row0 + (qt0 + it % n_range) * BM, nq = min(BM, row0 + T - q0);
        load_tile<D, BM>(sQ + st * BM * LD, qkv + (size_t)q0 * ldq + (size_t)h * D, ldq, nq, tid);
        load_tile<D, BM>(sdO + st * BM * LD, dout + (size_t)q0 * ldo + (size_t)h * D, ldo, nq,
                         tid);
        for (int r = tid; r < BM; r += THREADS) {
            const bool ok = r < nq;
            s_lse[st][r] = ok ? lse[(size_t)(q0 + r) * Hq + h] * LOG2E : 0.f;
            s_di[st][r] = ok ? di[(size_t)(q0 + r) * Hq + h] : 0.f;
            s_lo[st][r] = ok ? key_lo(q0 + r, row0, pos, window) : INT_MAX;
        }
    };
    auto next_item = [&](int it) {
        while (it < n_items && tlo[it % n_range] > klast)
            it++;
        return it;
    };

    load_tile<D, BN>(sK, qkv + (size_t)k0 * ldq + (size_t)(Hq + g) * D, ldq, nk, tid);
    load_tile<D, BN>(sV, qkv + (size_t)k0 * ldq + (size_t)(Hq + Hkv + g) * D, ldq, nk, tid);
    int cur = next_item(0);
    if (cur < n_items)
        stage_item(cur, 0);
    cp_async_commit();

    float dk[DT][4], dv[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dk[dt][e] = dv[dt][e] = 0.f;
    const int key_r = k0 + warp * 16 + (lane >> 2); // this thread's keys: key_r, key_r + 8

    for (int st = 0; cur < n_items; st ^= 1) {
        const int nxt = next_item(cur + 1);
        if (nxt < n_items) {
            stage_item(nxt, st ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int q0 = row0 + (qt0 + cur % n_range) * BM;
        const bf16 *q_s = sQ + st * BM * LD, *do_s = sdO + st * BM * LD;

        // The item's BM query rows in slices of QS rows: a slice's two score tiles
        // (QS / 2 fp32 per thread each) are all that lives beside dK and dV. The
        // slices accumulate in the order whole tiles did: the result is the same.
#pragma unroll 1
        for (int qs = 0; qs < BM; qs += QS) {
            float sT[MT][4], dpT[MT][4];
#pragma unroll
            for (int j = 0; j < MT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    sT[j][e] = dpT[j][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                uint32_t ak[4], av[4];
                load_a(ak, sK, LD, warp * 16, kk * 16, lane);
                load_a(av, sV, LD, warp * 16, kk * 16, lane);
#pragma unroll
                for (int j = 0; j < MT; j += 2) {
                    uint32_t bb[4];
                    load_b_nk(bb, q_s, LD, qs + j * 8, kk * 16, lane);
                    mma16816(sT[j], ak, bb[0], bb[1]);
                    mma16816(sT[j + 1], ak, bb[2], bb[3]);
                    load_b_nk(bb, do_s, LD, qs + j * 8, kk * 16, lane);
                    mma16816(dpT[j], av, bb[0], bb[1]);
                    mma16816(dpT[j + 1], av, bb[2], bb[3]);
                }
            }
#pragma unroll
            for (int j = 0; j < MT; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int c = qs + j * 8 + 2 * (lane & 3) + (e & 1);
                    const int key = key_r + 8 * (e >> 1);
                    const bool vis = key >= s_lo[st][c] && key <= q0 + c;
                    const float p = vis ? exp2f(sT[j][e] * scale_log2 - s_lse[st][c]) : 0.f;
                    sT[j][e] = p;
                    dpT[j][e] = p * (dpT[j][e] - s_di[st][c]);
                }
            }
#pragma unroll
            for (int kk = 0; kk < QS / 16; kk++) {
                uint32_t ap[4] = {pack_bf16(sT[2 * kk][0], sT[2 * kk][1]),
                                  pack_bf16(sT[2 * kk][2], sT[2 * kk][3]),
                                  pack_bf16(sT[2 * kk + 1][0], sT[2 * kk + 1][1]),
                                  pack_bf16(sT[2 * kk + 1][2], sT[2 * kk + 1][3])};
                uint32_t as[4] = {pack_bf16(dpT[2 * kk][0], dpT[2 * kk][1]),
                                  pack_bf16(dpT[2 * kk][2], dpT[2 * kk][3]),
                                  pack_bf16(dpT[2 * kk + 1][0], dpT[2 * kk + 1][1]),
                                  pack_bf16(dpT[2 * kk + 1][2], dpT[2 * kk + 1][3])};
#pragma unroll
                for (int dt = 0; dt < DT; dt += 2) {
                    uint32_t bb[4];
                    load_b_kn(bb, do_s, LD, qs + kk * 16, dt * 8, lane);
                    mma16816(dv[dt], ap, bb[0], bb[1]);
                    mma16816(dv[dt + 1], ap, bb[2], bb[3]);
                    load_b_kn(bb, q_s, LD, qs + kk * 16, dt * 8, lane);
                    mma16816(dk[dt], as, bb[0], bb[1]);
                    mma16816(dk[dt + 1], as, bb[2], bb[3]);
                }
            }
        }
        __syncthreads(); // stage st is refilled by the next iteration
        cur = nxt;
    }

#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = warp * 16 + (lane >> 2) + 8 * i;
        if (r >= nk)
            continue;
        bf16 *dK = dqkv + (size_t)(k0 + r) * ldq + (size_t)(Hq + g) * D;
        bf16 *dV = dqkv + (size_t)(k0 + r) * ldq + (size_t)(Hq + Hkv + g) * D;
#pragma unroll
        for (int dt = 0; dt < DT; dt++) {
            const int col = dt * 8 + 2 * (lane & 3);
            *(__nv_bfloat162 *)(dK + col) =
                __floats2bfloat162_rn(dk[dt][2 * i] * scale, dk[dt][2 * i + 1] * scale);
            *(__nv_bfloat162 *)(dV + col) = __floats2bfloat162_rn(dv[dt][2 * i], dv[dt][2 * i + 1]);
        }
    }
}

template <int D, int BM_KV, int QS = BM_KV>
static gllm_status launch_bwd(gllm_cuda_ctx *c, bf16 *dqkv, const bf16 *dout, const bf16 *qkv,
                              const bf16 *out, const float *lse, const int32_t *pos,
                              const gllm_attn_shape *s)
{
    constexpr int BQ = 64, BK = 64; // dQ pass: query rows x key tile; dK/dV pass: key rows
    const int N = s->B * s->T, n_qt = gllm_cdiv(s->T, BM_KV);
    const size_t di_bytes = ((size_t)N * s->Hq * sizeof(float) + 255) / 256 * 256;
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, di_bytes + (size_t)s->B * n_qt * sizeof(int32_t),
                               "attention_bwd", &scratch));
    float *di = (float *)scratch;
    int32_t *qlo = (int32_t *)((char *)scratch + di_bytes);

    attn_bwd_rowdot_kernel<<<gllm_cdiv(N * s->Hq, THREADS / 32), THREADS, 0, c->stream>>>(
        di, dout, out, N * s->Hq, D);
    CUDA_LAUNCH_CHECK("attn_bwd_rowdot_kernel");
    attn_bwd_tile_lo_kernel<<<gllm_cdiv(s->B * n_qt, 128), 128, 0, c->stream>>>(
        qlo, pos, s->B, s->T, BM_KV, s->window);
    CUDA_LAUNCH_CHECK("attn_bwd_tile_lo_kernel");

    const float sl2 = s->scale * LOG2E;
    const size_t smem_kv = (size_t)(2 * BK + 4 * BM_KV) * (D + 8) * sizeof(bf16);
    auto kv = attn_dkv_kernel<D, BM_KV, BK, QS>;
    CUDA_TRY(cudaFuncSetAttribute(kv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    kv<<<dim3(gllm_cdiv(s->T, BK), s->Hkv, s->B), THREADS, smem_kv, c->stream>>>(
        dqkv, dout, qkv, lse, di, qlo, pos, s->T, s->Hq, s->Hkv, s->window, sl2, s->scale);
    CUDA_LAUNCH_CHECK("attn_dkv_kernel");

    const size_t smem_q = (size_t)(2 * BQ + 4 * BK) * (D + 8) * sizeof(bf16);
    auto qk = attn_dq_kernel<D, BQ, BK>;
    CUDA_TRY(cudaFuncSetAttribute(qk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    qk<<<dim3(gllm_cdiv(s->T, BQ), s->Hq, s->B), THREADS, smem_q, c->stream>>>(
        dqkv, dout, qkv, lse, di, pos, s->T, s->Hq, s->Hkv, s->window, sl2, s->scale);
    CUDA_LAUNCH_CHECK("attn_dq_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_attention_bwd(gllm_cuda_ctx *c, bf16 *dqkv, const bf16 *dout,
                                    const bf16 *qkv, const bf16 *out, const float *lse,
                                    const int32_t *pos, const gllm_attn_shape *s)
{
    GLLM_TRY(gllm_cuda_attn_check("attention_bwd", s));
    if (!dqkv || !dout || !qkv || !out || !lse || !pos)
        return gllm_fail(GLLM_ERR_INVALID, "attention_bwd: NULL buffer");
    const bool aligned = ((uintptr_t)qkv % 16) == 0 && ((uintptr_t)dout % 16) == 0 &&
                         ((uintptr_t)dqkv % 4) == 0;
    // 128-wide heads take 32-query tiles in the dK/dV pass, computed in 16-row
    // slices: dK and dV (128 fp32 per thread) and one slice's two score tiles stay
    // in registers with room to spare (238 registers, no spills; spill-free under a
    // cap of 208, where whole 32-row tiles needed all 255)
    if (aligned && s->D == 64)
        return launch_bwd<64, 64>(c, dqkv, dout, qkv, out, lse, pos, s);
    if (aligned && s->D == 80)
        return launch_bwd<80, 64>(c, dqkv, dout, qkv, out, lse, pos, s);
    if (aligned && s->D == 128)
        return launch_bwd<128, 32, 16>(c, dqkv, dout, qkv, out, lse, pos, s);
    return gllm_cuda_attention_bwd_generic(c, dqkv, dout, qkv, out, lse, pos, s);
}
