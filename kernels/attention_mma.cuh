// Device helpers shared by the tensor-core attention kernels (attention_fwd.cu,
// attention_bwd.cu): cp.async, ldmatrix and the m16n8k16 bf16 mma, plus the mask
// bound of a query row.
//
// Fragment layout of mma.m16n8k16 (g = lane/4, t = lane%4):
//   A 16x16: a0 (row g, cols 2t..2t+1), a1 (row g+8, same cols), a2, a3 (cols +8)
//   B 16x8:  b0 (k 2t..2t+1, col g), b1 (k +8)
//   C 16x8:  c0,c1 (row g, cols 2t..2t+1), c2,c3 (row g+8)
// so a C tile pair of a score matrix is directly the A operand of the next product.
#pragma once
#include <limits.h>

#include "cuda_common.cuh"

namespace gllm_attn {

typedef __nv_bfloat16 bf16;

constexpr float LOG2E = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

// 16-byte async copy; with valid == false the destination is zero-filled and the
// source is not read (keeps NaN garbage out of masked rows that still multiply).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16 *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const bf16 *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

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
        cp_async16(dst + r * LD + c * 8, src + (size_t)(ok ? r : 0) * ld + c * 8, ok);
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
