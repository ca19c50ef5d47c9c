// Device helpers shared by the tensor-core attention kernels (attention_fwd.cu,
// attention_bwd.cu): cp.async, ldmatrix and the m16n8k16 bf16 mma, plus the mask
// bound of a query row.
//
// The PTX itself (cp.async, ldmatrix, mma and their fragment layouts) is
// kernels/ptx.cuh; a C tile pair of a score matrix is directly the A operand of
// the next product.
#pragma once
#include <limits.h>

#include "cuda_common.cuh"
#include "ptx.cuh"

namespace gllm_attn {

typedef __nv_bfloat16 bf16;

constexpr float LOG2E = 1.4426950408889634f;

using gllm_ptx::cp_async16;
using gllm_ptx::cp_async_commit;
using gllm_ptx::cp_async_wait;
using gllm_ptx::ldsm_x4;
using gllm_ptx::ldsm_x4_t;
using gllm_ptx::mma16816;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

// A operand (16 rows x 16 k) at `base` (row-major, ld elements): rows r0..r0+15,
// cols k0..k0+15. Lane l points at row (l%8) + 8*((l/8)%2), col 8*(l/16).
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *base, int ld, int r0, int k0,
                                       int lane)
{
    ldsm_x4(a, base + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + k0 + (lane >> 4) * 8);
}

// B operands of two adjacent n8 tiles at one k16 step, from a matrix stored
// [n][k] (row n holds consecutive k): b[0..1] for rows n0..n0+7, b[2..3] for n0+8..
__device__ __forceinline__ void load_b_nk(uint32_t b[4], const bf16 *base, int ld, int n0,
                                          int k0, int lane)
{
    ldsm_x4(b, base + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8);
}

// B operands of two adjacent n8 tiles at one k16 step, from a matrix stored
// [k][n] (row k holds consecutive n), transposed by ldmatrix.
__device__ __forceinline__ void load_b_kn(uint32_t b[4], const bf16 *base, int ld, int k0,
                                          int n0, int lane)
{
    ldsm_x4_t(b, base + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8);
}

// First key visible to query n of the row starting at row0 (the last is n itself).
__device__ __forceinline__ int key_lo(int n, int row0, const int32_t *pos, int window)
{
    int lo = max(n - pos[n], row0);
    if (window > 0)
        lo = max(lo, n - window + 1);
    return lo;
}

} // namespace gllm_attn

namespace gllm_attn {

constexpr int THREADS = 128; // four warps, each owning 16 rows of a tile

// Start async copies of rows [0, ROWS) of a head slice (row stride ld elements)
// into a padded tile; rows >= nvalid are zero-filled. The +8 padding puts the
// eight rows of an ldmatrix on distinct banks for D = 64, 80 and 128.
template <int D, int ROWS>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, size_t ld, int nvalid,
                                          int tid)
{
    constexpr int CH = D / 8, LD = D + 8;
#pragma unroll
    for (int i = tid; i < ROWS * CH; i += THREADS) {
        int r = i / CH, c = i % CH;
        bool ok = r < nvalid;
        cp_async16(dst + r * LD + c * 8, src + (size_t)(ok ? r : 0) * ld + c * 8, ok ? 16 : 0);
    }
}

} // namespace gllm_attn

namespace gllm_attn {

// Key range of a query tile [q0, q0 + nq): every row sees keys up to itself, so
// the tile needs keys from the smallest first-visible key (kstart) to q0 + nq - 1;
// from lomax (the largest first-visible key) on, no row masks a key from below.
// Called by all threads (it synchronises); s_red holds 2 * BM / 32 ints.
template <int BM>
__device__ __forceinline__ void query_tile_bounds(int q0, int nq, int row0,
                                                  const int32_t *pos, int window, int *s_red,
                                                  int &kstart, int &lomax)
{
    const int tid = threadIdx.x, lane = tid & 31;
    if (tid < BM) {
        int lo_min = INT_MAX, lo_max = INT_MIN;
        if (tid < nq)
            lo_min = lo_max = key_lo(q0 + tid, row0, pos, window);
        lo_min = __reduce_min_sync(0xffffffffu, lo_min);
        lo_max = __reduce_max_sync(0xffffffffu, lo_max);
        if (lane == 0) {
            s_red[tid >> 5] = lo_min;
            s_red[BM / 32 + (tid >> 5)] = lo_max;
        }
    }
    __syncthreads();
    kstart = INT_MAX;
    lomax = INT_MIN;
#pragma unroll
    for (int w = 0; w < BM / 32; w++) {
        kstart = min(kstart, s_red[w]);
        lomax = max(lomax, s_red[BM / 32 + w]);
    }
}

} // namespace gllm_attn
