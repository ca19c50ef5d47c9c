// Portable tensor-core GEMM (sm_80 and newer): mma.sync m16n8k16 bf16 -> fp32.
//
// Block tile 128x128x32, 8 warps in a 2x4 grid (each warp 64x32), a 4-stage
// cp.async pipeline. Shared memory keeps each operand in its stored layout
// (K-contiguous or M/N-contiguous) and ldmatrix, with .trans for the
// M/N-contiguous case, turns either into the mma fragment: no transposed copy
// is ever made. Rows are padded by 16 bytes so that the 8 row addresses of one
// ldmatrix phase fall into 8 distinct 4-bank groups.
//
// Requires 16-byte aligned rows (pointers, leading dimensions and batch
// strides multiples of 8 elements); M, N and K are arbitrary: edge chunks are
// zero-filled by cp.async's src-size operand.
#include "matmul.cuh"
#include "ptx.cuh"

namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 4, THREADS = 256;
constexpr int PAD = 8; // elements = 16 bytes
static_assert(BM == BN, "tile_layout sizes both operands by BM");

// Elements of one stage of an operand whose tile is `rows` (M or N) by BK.
template <bool KMAJOR> struct tile_layout {
    // K-contiguous: [rows][BK + PAD]; MN-contiguous: [BK][rows + PAD]
    static constexpr int LD = KMAJOR ? BK + PAD : BM + PAD;
    static constexpr int ELEMS = KMAJOR ? BM * LD : BK * LD;
};

using gllm_ptx::cp_async16;
using gllm_ptx::ldsm_x4;
using gllm_ptx::ldsm_x4_t;
using gllm_ptx::mma16816;

// Copy one BK slice of an operand tile into shared memory. `rows0` is the
// first M (or N) index of the tile, `extent` is M (or N). KMAJOR: element
// (r, k) sits at g[r*ld + k]; otherwise at g[k*ld + r].
template <bool KMAJOR>
__device__ __forceinline__ void load_tile(__nv_bfloat16 *s, const __nv_bfloat16 *g, int ld,
                                          int rows0, int extent, int k0, int K, int tid)
{
    constexpr int CHUNKS = BM * BK / 8; // 16-byte chunks per tile
#pragma unroll
    for (int i = 0; i < CHUNKS / THREADS; i++) {
        int c = tid + i * THREADS;
        int r, k, left;
        if (KMAJOR) {
            r = c / (BK / 8);
            k = (c % (BK / 8)) * 8;
            left = (rows0 + r < extent) ? K - (k0 + k) : 0;
        } else {
            k = c / (BM / 8);
            r = (c % (BM / 8)) * 8;
            left = (k0 + k < K) ? extent - (rows0 + r) : 0;
        }
        int bytes = 2 * max(0, min(8, left));
        const __nv_bfloat16 *src =
            bytes ? (KMAJOR ? g + (int64_t)(rows0 + r) * ld + k0 + k
                            : g + (int64_t)(k0 + k) * ld + rows0 + r)
                  : g;
        __nv_bfloat16 *dst = KMAJOR ? s + r * tile_layout<true>::LD + k
                                    : s + k * tile_layout<false>::LD + r;
        cp_async16(dst, src, bytes);
    }
}

template <bool A_KMAJOR, bool B_KMAJOR>
__global__ void __launch_bounds__(THREADS, 2) mm_mma_kernel(gllm_mm_params p)
{
    extern __shared__ __align__(16) unsigned char smem_raw[];
    using LA = tile_layout<A_KMAJOR>;
    using LB = tile_layout<B_KMAJOR>;
    __nv_bfloat16 *As = (__nv_bfloat16 *)smem_raw;
    __nv_bfloat16 *Bs = As + STAGES * LA::ELEMS;

    int tiles_m = gllm_cdiv(p.M, BM), tiles_n = gllm_cdiv(p.N, BN);
    int tm, tn;
    gllm_mm_tile_order(blockIdx.x, tiles_m, tiles_n, &tm, &tn);
    int m0 = tm * BM, n0 = tn * BN, b = blockIdx.z;
    const __nv_bfloat16 *A = p.A + (int64_t)b * p.sa;
    const __nv_bfloat16 *B = p.B + (int64_t)b * p.sb;

    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int warp_m = warp >> 2, warp_n = warp & 3;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[i][j][e] = 0.f;

    int ktiles = gllm_cdiv(p.K, BK);
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ktiles) {
            load_tile<A_KMAJOR>(As + s * LA::ELEMS, A, p.lda, m0, p.M, s * BK, p.K, tid);
            load_tile<B_KMAJOR>(Bs + s * LB::ELEMS, B, p.ldb, n0, p.N, s * BK, p.K, tid);
        }
        gllm_ptx::cp_async_commit();
    }

    // ldmatrix lane roles: lane supplies row (lane & 7) of 8x8 matrix (lane >> 3)
    int lr = lane & 7, lj = lane >> 3;

    for (int kt = 0; kt < ktiles; kt++) {
        gllm_ptx::cp_async_wait<STAGES - 2>();
        // Also guarantees every warp is done reading the stage refilled below.
        __syncthreads();
        int nk = kt + STAGES - 1;
        if (nk < ktiles) {
            int s = nk % STAGES;
            load_tile<A_KMAJOR>(As + s * LA::ELEMS, A, p.lda, m0, p.M, nk * BK, p.K, tid);
            load_tile<B_KMAJOR>(Bs + s * LB::ELEMS, B, p.ldb, n0, p.N, nk * BK, p.K, tid);
        }
        gllm_ptx::cp_async_commit();

        const __nv_bfloat16 *as = As + (kt % STAGES) * LA::ELEMS;
        const __nv_bfloat16 *bs = Bs + (kt % STAGES) * LB::ELEMS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint32_t af[4][4], bfr[4][2];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int mb = warp_m * 64 + i * 16;
                if (A_KMAJOR) {
                    // matrices: (m 0-7, k 0-7) (m 8-15, k 0-7) (m 0-7, k 8-15) (m 8-15, k 8-15)
                    ldsm_x4(af[i], as + (mb + (lane & 15)) * LA::LD + kk + (lane >> 4) * 8);
                } else {
                    int k = kk + lr + (lj >> 1) * 8, m = mb + (lj & 1) * 8;
                    ldsm_x4_t(af[i], as + k * LA::LD + m);
                }
            }
#pragma unroll
            for (int j2 = 0; j2 < 2; j2++) {
                int nb = warp_n * 32 + j2 * 16;
                uint32_t r[4];
                // matrices: (n 0-7, k 0-7) (n 0-7, k 8-15) (n 8-15, k 0-7) (n 8-15, k 8-15)
                if (B_KMAJOR) {
                    int n = nb + lr + (lj >> 1) * 8, k = kk + (lj & 1) * 8;
                    ldsm_x4(r, bs + n * LB::LD + k);
                } else {
                    int k = kk + lr + (lj & 1) * 8, n = nb + (lj >> 1) * 8;
                    ldsm_x4_t(r, bs + k * LB::LD + n);
                }
                bfr[2 * j2][0] = r[0];
                bfr[2 * j2][1] = r[1];
                bfr[2 * j2 + 1][0] = r[2];
                bfr[2 * j2 + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    mma16816(acc[i][j], af[i], bfr[j][0], bfr[j][1]);
        }
    }
    gllm_ptx::cp_async_wait<0>();

    // Accumulator fragment: c0,c1 at (row g, cols 2q, 2q+1), c2,c3 at row g+8.
    int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int m = m0 + warp_m * 64 + i * 16 + g;
            int n = n0 + warp_n * 32 + j * 8 + 2 * q;
            gllm_mm_store2(p, b, m, n, acc[i][j][0], acc[i][j][1]);
            gllm_mm_store2(p, b, m + 8, n, acc[i][j][2], acc[i][j][3]);
        }
}

template <bool A_KMAJOR, bool B_KMAJOR>
gllm_status launch(gllm_cuda_ctx *c, const gllm_mm_params &p)
{
    auto kernel = mm_mma_kernel<A_KMAJOR, B_KMAJOR>;
    size_t smem = STAGES * (tile_layout<A_KMAJOR>::ELEMS + tile_layout<B_KMAJOR>::ELEMS) * 2;
    if (smem > c->smem_optin)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "matmul mma: needs %zu bytes of shared memory, device allows %zu", smem,
                         c->smem_optin);
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    int64_t tiles = (int64_t)gllm_cdiv(p.M, BM) * gllm_cdiv(p.N, BN);
    if (tiles > 0x7fffffff)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "matmul mma: %lld tiles", (long long)tiles);
    kernel<<<dim3((unsigned)tiles, 1, p.batch), THREADS, smem, c->stream>>>(p);
    CUDA_LAUNCH_CHECK("mm_mma_kernel");
    return GLLM_OK;
}

bool aligned16(const void *ptr, int ld, int64_t stride)
{
    return (uintptr_t)ptr % 16 == 0 && ld % 8 == 0 && stride % 8 == 0;
}

} // namespace

gllm_status gllm_mm_launch_mma(gllm_cuda_ctx *c, const gllm_mm_params &p)
{
    if (c->sm_major < 8)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "matmul mma: needs sm_80, device is sm_%d%d",
                         c->sm_major, c->sm_minor);
    if (!aligned16(p.A, p.lda, p.sa) || !aligned16(p.B, p.ldb, p.sb))
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "matmul mma: operands need 16-byte rows (lda=%d ldb=%d, strides %lld %lld)",
                         p.lda, p.ldb, (long long)p.sa, (long long)p.sb);
    bool a_k = !p.trans_a, b_k = p.trans_b;
    if (a_k && b_k)
        return launch<true, true>(c, p);
    if (a_k)
        return launch<true, false>(c, p);
    if (b_k)
        return launch<false, true>(c, p);
    return launch<false, false>(c, p);
}
