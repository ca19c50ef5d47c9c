// Hopper GEMM (sm_90a): TMA loads into 128-byte-swizzled shared memory, a
// 4-stage mbarrier pipeline, one producer warpgroup and two consumer
// warpgroups issuing wgmma.mma_async m64nBNk16 (bf16 in, fp32 accumulators in
// registers) with one k-tile of them kept in flight, fused epilogue straight
// from the accumulators.
//
// Block tile 128 x BN x 64 (BN = 256, or 128 when 256-wide tiles would leave
// most of the last wave idle). Each consumer owns 64 rows. Each operand stays
// in its stored layout: K-contiguous (A [M,K], B [N,K]) or M/N-contiguous
// (trans_a A [K,M], B [K,N]), the latter read through wgmma's transpose bits,
// so forward, input-gradient and weight-gradient GEMMs all run here.
// Misaligned rows and K = 0 are declined with GLLM_ERR_UNSUPPORTED and go to
// the mma.sync kernel. TMA zero-fills the parts of a box outside the matrix, so
// M, N and K need not be tile multiples.
#include <cuda.h>
#include <cudaTypedefs.h>

#include "matmul.cuh"

// The kernel body exists where sm_90a code is compiled, and on the CUDA
// emulator (kernels/emu), which models each PTX wrapper below.
#if defined(GLLM_CUDA_EMU) ||                                                                  \
    (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define GLLM_WGMMA_BODY 1
#endif

namespace {

constexpr int BM = 128, BK = 64, STAGES = 4, THREADS = 384;
constexpr int A_BYTES = BM * BK * 2;
// One 64-row box of an M/N-contiguous operand: 64 k rows of 128 bytes.
constexpr int MN_CHUNK_BYTES = 64 * BK * 2;
static_assert(A_BYTES == (BM / 64) * MN_CHUNK_BYTES, "an M/N-major tile is whole 64-wide boxes");

template <int BN> struct wg_cfg {
    static constexpr int STAGE_BYTES = A_BYTES + BN * BK * 2;
    // +1024: the 128-byte swizzle pattern repeats every 1024 bytes and the
    // descriptors assume tiles start on that boundary.
    static constexpr int SMEM = STAGES * STAGE_BYTES + 1024;
};

#ifdef GLLM_WGMMA_BODY

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_init(uint64_t *bar, int count)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::mbar_init(bar, (unsigned)count);
#else
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
#endif
}

// makes the initialised barriers visible to the async proxy (TMA)
__device__ __forceinline__ void mbar_init_fence()
{
#ifndef GLLM_CUDA_EMU // the emulator's barriers are seen at once
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, int bytes)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::mbar_arrive(bar, (unsigned)bytes);
#else
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
                 "r"(bytes)
                 : "memory");
#endif
}

__device__ __forceinline__ void mbar_arrive(uint64_t *bar)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::mbar_arrive(bar, 0);
#else
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
#endif
}

// Wait until the phase with this parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t *bar, int parity)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::mbar_wait(bar, (unsigned)parity);
#else
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n"
                     ".reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n"
                     "}\n"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory");
#endif
}

__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, uint64_t *bar, int c0,
                                         int c1, int c2)
{
#ifdef GLLM_CUDA_EMU
    const int coords[3] = {c0, c1, c2};
    gllm_emu::tma_load(dst, map, bar, coords, 3);
#else
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_u32(dst)),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
                 : "memory");
#endif
}

// Register reallocation between warpgroups (setmaxnreg): a no-op on the
// emulator beyond every lane having to take part.
template <int REGS, bool INC> __device__ __forceinline__ void setmaxnreg()
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::warp_aligned("setmaxnreg");
#else
    if (INC)
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
    else
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}

__device__ __forceinline__ void wgmma_fence()
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::warp_aligned("wgmma.fence");
#else
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_commit()
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::wgmma_commit();
#else
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

template <int N> __device__ __forceinline__ void wgmma_wait()
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::wgmma_wait(N);
#else
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// Shared-memory matrix descriptor for a tile stored with the 128-byte swizzle
// (what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B): start address, leading
// byte offset (bits 16-29), stride byte offset (bits 32-45), swizzle mode 1.
//  K-major (rows of 64 K values): 8-row groups are 1024 bytes apart (SBO); LBO
//    is unused. A k16 step is +32 bytes inside the swizzled 128-byte row.
//  MN-major (rows of 64 M/N values, one row per k): the 8-k groups are 1024
//    bytes apart (SBO) and the 64-wide M/N chunks, each loaded as its own TMA
//    box of 64 k rows, are 8192 bytes apart (LBO). A k16 step is +2048 bytes.
template <bool KMAJOR> __device__ __forceinline__ uint64_t desc_sw128(const void *tile)
{
    uint64_t d = (smem_u32(tile) & 0x3FFFF) >> 4;
    d |= (uint64_t)((KMAJOR ? 16 : MN_CHUNK_BYTES) >> 4) << 16;
    d |= (uint64_t)(1024 >> 4) << 32;
    d |= (uint64_t)1 << 62;
    return d;
}

#ifndef GLLM_CUDA_EMU // the emulator's model is gllm_emu::wgmma_bf16
template <int TA, int TB>
__device__ __forceinline__ void wgmma_n128(float (&d)[64], uint64_t da, uint64_t db)
{
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"
        " %64, %65, p, 1, 1, %67, %68;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(1), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wgmma_n256(float (&d)[128], uint64_t da, uint64_t db)
{
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
        "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
        "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
        "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
        "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127},"
        " %128, %129, p, 1, 1, %131, %132;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(1), "n"(TA), "n"(TB));
}
#endif

template <int BN, int TA, int TB>
__device__ __forceinline__ void wgmma_bn(float (&d)[BN / 2], uint64_t da, uint64_t db)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::wgmma_bf16(d, BN, da, db, TA, TB, true);
#else
    if constexpr (BN == 128)
        wgmma_n128<TA, TB>(d, da, db);
    else
        wgmma_n256<TA, TB>(d, da, db);
#endif
}

#endif

// Load one operand's BK slice of `rows` rows at row r0 into shared memory.
// K-major: one box of BK x rows. MN-major: rows/64 boxes of 64 x BK, one per
// 64-wide chunk (a 128-byte-swizzled box row is at most 64 bf16).
template <bool KMAJOR, int ROWS>
__device__ __forceinline__ void load_operand(unsigned char *dst, const CUtensorMap *map,
                                             uint64_t *bar, int k0, int r0, int b)
{
#ifdef GLLM_WGMMA_BODY
    if (KMAJOR) {
        tma_load(dst, map, bar, k0, r0, b);
    } else {
#pragma unroll
        for (int c = 0; c < ROWS / 64; c++)
            tma_load(dst + c * MN_CHUNK_BYTES, map, bar, r0 + 64 * c, k0, b);
    }
#endif
}

template <int BN, bool A_KMAJOR, bool B_KMAJOR>
__global__ void __launch_bounds__(THREADS, 1)
    mm_wgmma_kernel(const __grid_constant__ CUtensorMap tma_a,
                    const __grid_constant__ CUtensorMap tma_b, gllm_mm_params p)
{
#ifdef GLLM_WGMMA_BODY
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
    unsigned char *smem = (unsigned char *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    constexpr int STAGE_BYTES = wg_cfg<BN>::STAGE_BYTES;

    int tiles_m = gllm_cdiv(p.M, BM), tiles_n = gllm_cdiv(p.N, BN);
    int tm, tn;
    gllm_mm_tile_order(blockIdx.x, tiles_m, tiles_n, &tm, &tn);
    int m0 = tm * BM, n0 = tn * BN, b = blockIdx.z;
    int ktiles = gllm_cdiv(p.K, BK);
    int wg = threadIdx.x / 128, t = threadIdx.x % 128;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 256); // every consumer thread releases the stage
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        // Producer: one thread drives the copy engine; the warpgroup hands
        // its registers to the consumers.
        setmaxnreg<40, false>();
        if (t == 0) {
            for (int kt = 0; kt < ktiles; kt++) {
                int s = kt % STAGES, round = kt / STAGES;
                if (round > 0)
                    mbar_wait(&empty[s], (round - 1) & 1);
                unsigned char *st = smem + s * STAGE_BYTES;
                // counts whole boxes: TMA zero-fills and still counts the parts
                // outside the matrix
                mbar_expect_tx(&full[s], STAGE_BYTES);
                load_operand<A_KMAJOR, BM>(st, &tma_a, &full[s], kt * BK, m0, b);
                load_operand<B_KMAJOR, BN>(st + A_BYTES, &tma_b, &full[s], kt * BK, n0, b);
            }
        }
    } else {
        setmaxnreg<232, true>();
        float acc[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; i++)
            acc[i] = 0.f;
        // Consumer rows: 64 rows further is +8192 bytes in both layouts (64
        // rows of 128 bytes, or the second 64-wide M chunk).
        int row0 = (wg - 1) * 64;
        constexpr int KSTEP_A = A_KMAJOR ? 32 : 2048, KSTEP_B = B_KMAJOR ? 32 : 2048;
        for (int kt = 0; kt < ktiles; kt++) {
            int s = kt % STAGES;
            mbar_wait(&full[s], (kt / STAGES) & 1);
            unsigned char *st = smem + s * STAGE_BYTES;
            const unsigned char *a_tile = st + row0 * BK * 2;
            const unsigned char *b_tile = st + A_BYTES;
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++)
                wgmma_bn<BN, A_KMAJOR ? 0 : 1, B_KMAJOR ? 0 : 1>(
                    acc, desc_sw128<A_KMAJOR>(a_tile + kk * KSTEP_A),
                    desc_sw128<B_KMAJOR>(b_tile + kk * KSTEP_B));
            wgmma_commit();
            // this k-tile's wgmmas stay in flight while the previous k-tile's
            // finish (same shape and accumulators: ordered by the hardware);
            // then the previous stage can be refilled
            wgmma_wait<1>();
            if (kt > 0)
                mbar_arrive(&empty[(kt - 1) % STAGES]);
        }
        wgmma_wait<0>();
        // Accumulator layout of m64nN: warp w of the warpgroup holds rows
        // 16w + lane/4 (+8); register 4j+e covers columns 8j + 2*(lane%4) + e%2.
        int warp = t / 32, lane = t % 32;
        int m = m0 + row0 + warp * 16 + lane / 4;
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            int n = n0 + 8 * j + 2 * (lane % 4);
            gllm_mm_store2(p, b, m, n, acc[4 * j], acc[4 * j + 1]);
            gllm_mm_store2(p, b, m + 8, n, acc[4 * j + 2], acc[4 * j + 3]);
        }
    }
#elif defined(__CUDA_ARCH__)
    // Compiled without sm_90a (the body above is empty here): dispatch never
    // launches this (gllm_mm_wgmma_built), and a launch anyway must not return
    // an unwritten C as success.
    __trap();
#endif
}

// Writes 1 where the code running on this device has the wgmma body (sm_90a).
__global__ void wgmma_probe_kernel(int *out)
{
#ifdef GLLM_WGMMA_BODY
    *out = 1;
#else
    *out = 0;
#endif
}

// The driver's tensor-map encoder, looked up through the runtime so that gllm
// does not link libcuda (binaries must start on machines without a driver).
gllm_status tensor_map_encoder(PFN_cuTensorMapEncodeTiled_v12000 *out)
{
    struct lookup {
        void *fn;
        cudaError_t err;
        cudaDriverEntryPointQueryResult query;
    };
    // a function-local static: looked up once, thread-safe
    static const lookup found = [] {
        lookup l = {NULL, cudaSuccess, cudaDriverEntryPointSymbolNotFound};
        l.err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &l.fn, 12000,
                                                 cudaEnableDefault, &l.query);
        return l;
    }();
    if (found.err != cudaSuccess)
        return gllm_cuda_fail(found.err, "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)",
                              __FILE__, __LINE__);
    if (found.query != cudaDriverEntryPointSuccess || !found.fn)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "matmul wgmma: the driver has no cuTensorMapEncodeTiled (query %d)",
                         (int)found.query);
    *out = (PFN_cuTensorMapEncodeTiled_v12000)found.fn;
    return GLLM_OK;
}

// A 3-d bf16 tensor map over (inner, outer, batch) with the 128-byte swizzle
// that desc_sw128 describes. K-major operands: inner = K, box 64 x rows;
// MN-major: inner = M or N, box 64 x 64.
gllm_status make_map(CUtensorMap *map, const void *base, int inner, int outer, int ld, int batch,
                     int64_t stride, int box_outer, const char *which)
{
    PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
    GLLM_TRY(tensor_map_encoder(&encode));
    cuuint64_t dims[3] = {(cuuint64_t)inner, (cuuint64_t)outer, (cuuint64_t)batch};
    cuuint64_t strides[2] = {(cuuint64_t)ld * 2,
                             (cuuint64_t)(batch > 1 ? stride : (int64_t)ld * outer) * 2};
    cuuint32_t box[3] = {64, (cuuint32_t)box_outer, 1};
    cuuint32_t estr[3] = {1, 1, 1};
    CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)base, dims, strides, box,
                        estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return gllm_fail(GLLM_ERR_BACKEND,
                         "matmul wgmma: tensor map for %s (%d x %d, ld %d): CUresult %d", which,
                         inner, outer, ld, (int)r);
    return GLLM_OK;
}

template <int BN, bool A_KMAJOR, bool B_KMAJOR>
gllm_status launch(gllm_cuda_ctx *c, const gllm_mm_params &p)
{
    CUtensorMap ma, mb;
    if (A_KMAJOR)
        GLLM_TRY(make_map(&ma, p.A, p.K, p.M, p.lda, p.batch, p.sa, BM, "A"));
    else
        GLLM_TRY(make_map(&ma, p.A, p.M, p.K, p.lda, p.batch, p.sa, BK, "A"));
    if (B_KMAJOR)
        GLLM_TRY(make_map(&mb, p.B, p.K, p.N, p.ldb, p.batch, p.sb, BN, "B"));
    else
        GLLM_TRY(make_map(&mb, p.B, p.N, p.K, p.ldb, p.batch, p.sb, BK, "B"));
    auto kernel = mm_wgmma_kernel<BN, A_KMAJOR, B_KMAJOR>;
    int smem = wg_cfg<BN>::SMEM;
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int64_t tiles = (int64_t)gllm_cdiv(p.M, BM) * gllm_cdiv(p.N, BN);
    kernel<<<dim3((unsigned)tiles, 1, p.batch), THREADS, smem, c->stream>>>(ma, mb, p);
    CUDA_LAUNCH_CHECK("mm_wgmma_kernel");
    return GLLM_OK;
}

template <int BN> gllm_status launch_bn(gllm_cuda_ctx *c, const gllm_mm_params &p)
{
    bool a_k = !p.trans_a, b_k = p.trans_b;
    if (a_k && b_k)
        return launch<BN, true, true>(c, p);
    if (a_k)
        return launch<BN, true, false>(c, p);
    if (b_k)
        return launch<BN, false, true>(c, p);
    return launch<BN, false, false>(c, p);
}

int64_t waves(int64_t tiles, int sms) { return (tiles + sms - 1) / sms; }

} // namespace

gllm_status gllm_mm_wgmma_built(gllm_cuda_ctx *c, int *scratch, bool *out)
{
    *out = false;
    if (c->sm_major != 9 || c->sm_minor != 0)
        return GLLM_OK;
    wgmma_probe_kernel<<<1, 1, 0, c->stream>>>(scratch);
    cudaError_t e = cudaGetLastError();
    if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction)
        return GLLM_OK; // no code for this device at all: the other kernels will say so
    if (e != cudaSuccess)
        return gllm_cuda_fail(e, "launch of wgmma_probe_kernel", __FILE__, __LINE__);
    int v = 0;
    CUDA_TRY(cudaMemcpyAsync(&v, scratch, sizeof v, cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    *out = v == 1;
    return GLLM_OK;
}

gllm_status gllm_mm_launch_wgmma(gllm_cuda_ctx *c, const gllm_mm_params &p, int tile_n)
{
    if (!c->hopper)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "matmul wgmma: needs sm_90 and sm_90a code in the build (device sm_%d%d, "
                         "sm_90a code %s)",
                         c->sm_major, c->sm_minor, c->wgmma_built ? "built" : "not built");
    bool batch_ok = p.batch == 1 || (p.sa % 8 == 0 && p.sb % 8 == 0 && p.sa > 0 && p.sb > 0);
    if (p.K == 0 || (uintptr_t)p.A % 16 || (uintptr_t)p.B % 16 || p.lda % 8 || p.ldb % 8 ||
        !batch_ok)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "matmul wgmma: TMA needs K > 0 and 16-byte rows (K=%d lda=%d ldb=%d)", p.K,
                         p.lda, p.ldb);
    if ((size_t)wg_cfg<256>::SMEM > c->smem_optin)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "matmul wgmma: %d bytes of shared memory needed",
                         wg_cfg<256>::SMEM);
    // A 256-wide tile does twice the work of a 128-wide one at (assumed) 10%
    // better efficiency; when the grid is a little over a whole number of
    // waves, the idle tail of the last wave outweighs that.
    int64_t tm = gllm_cdiv(p.M, BM);
    int64_t t256 = tm * gllm_cdiv(p.N, 256) * p.batch, t128 = tm * gllm_cdiv(p.N, 128) * p.batch;
    int sms = c->n_sms > 0 ? c->n_sms : 1;
    if (t256 > 0x7fffffff || t128 > 0x7fffffff)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "matmul wgmma: too many tiles");
    if (tile_n == 128)
        return launch_bn<128>(c, p);
    if (tile_n == 256)
        return launch_bn<256>(c, p);
    if (11 * waves(t128, sms) < 20 * waves(t256, sms))
        return launch_bn<128>(c, p);
    return launch_bn<256>(c, p);
}
