// The CUDA emulator's own checks (kernels/emu), which CI relies on to find
// kernel bugs without a GPU: a small TMA + mbarrier + wgmma GEMM must compute
// C = A B^T exactly as the CPU does (K- and MN-major B, rows outside the tensor
// zero-filled), and each deliberately broken variant of it must fail its launch
// with the fault that names its defect, so that the checks cannot rot
// silently. Built only with -DGLLM_CUDA_EMU=ON (the kernels call the emulator's
// models directly, as kernels/matmul_wgmma.cu's PTX wrappers do there).
//
// The kernel: one warpgroup, C [64 x 64] over K = 128 in two 64-wide k-tiles
// through ONE shared-memory stage, so the second load must wait until the
// first tile's wgmmas are done (the `empty` barrier), and the wgmmas must wait
// for the loads (the `full` barrier).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <vector>

#include "test_util.h"

namespace {

constexpr int M = 64, N = 64, K = 128, BK = 64, THREADS = 128;
constexpr int TILE_BYTES = 64 * BK * 2; // A or B: 64 rows of 128 bytes
constexpr int SMEM = 2 * TILE_BYTES + 1024;

enum defect {
    NONE,
    NO_WAIT_GROUP,  // the last k-tile's wgmmas are never waited for
    NO_FULL_WAIT,   // wgmma reads a stage whose copy has not landed
    EARLY_RELEASE,  // the stage is released before the wgmmas reading it are done
    OVER_ARRIVE,    // the producer arrives twice on a count-1 barrier
    SHORT_TX,       // expect_tx counts 16 bytes fewer than the copies bring
    UNINIT_MBAR,    // the full barrier is never initialised
    BAD_DESC,       // a descriptor whose 8-row stride runs off shared memory
    HALF_WARP,      // half a warp issues the wgmma
};

// 128-byte-swizzle descriptor: start, LBO (MN-major: 64-wide chunks), SBO =
// 1024 (8-row / 8-k groups), mode 1
uint64_t desc(const void *p, uint32_t sbo = 1024)
{
    return ((uint64_t)(((uintptr_t)p & 0x3FFFF) >> 4)) | ((uint64_t)(8192 >> 4) << 16) |
           ((uint64_t)(sbo >> 4) << 32) | ((uint64_t)1 << 62);
}

__global__ void gemm_kernel(const __grid_constant__ CUtensorMap ma,
                            const __grid_constant__ CUtensorMap mb, float *c, int b_mn_major,
                            int defect)
{
    extern __shared__ unsigned char raw[];
    __shared__ __align__(8) uint64_t full, empty;
    unsigned char *smem = (unsigned char *)(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
    unsigned char *sa = smem, *sb = smem + TILE_BYTES;
    const int t = threadIdx.x;
    if (t == 0) {
        if (defect != UNINIT_MBAR)
            gllm_emu::mbar_init(&full, 1);
        gllm_emu::mbar_init(&empty, THREADS);
    }
    __syncthreads();
    float acc[N / 2];
    for (int i = 0; i < N / 2; i++)
        acc[i] = 0.f;
    for (int kt = 0; kt < K / BK; kt++) {
        if (t == 0) {
            if (kt > 0)
                gllm_emu::mbar_wait(&empty, (unsigned)(kt - 1) & 1);
            gllm_emu::mbar_arrive(&full, 2 * TILE_BYTES - (defect == SHORT_TX ? 16 : 0));
            if (defect == OVER_ARRIVE)
                gllm_emu::mbar_arrive(&full, 0);
            const int ca[3] = {kt * BK, 0, 0};
            gllm_emu::tma_load(sa, &ma, &full, ca, 3);
            const int cb_k[3] = {kt * BK, 0, 0}, cb_mn[3] = {0, kt * BK, 0};
            gllm_emu::tma_load(sb, &mb, &full, b_mn_major ? cb_mn : cb_k, 3);
        }
        if (defect != NO_FULL_WAIT)
            gllm_emu::mbar_wait(&full, (unsigned)kt & 1);
        gllm_emu::warp_aligned("wgmma.fence");
        if (defect == HALF_WARP && (t % 32) >= 16)
            return;
        for (int kk = 0; kk < BK / 16; kk++)
            gllm_emu::wgmma_bf16(acc, N, desc(sa + 32 * kk, defect == BAD_DESC ? 16368 : 1024),
                                 desc(sb + (b_mn_major ? 2048 : 32) * kk), 0, b_mn_major, true);
        gllm_emu::wgmma_commit();
        if (defect == EARLY_RELEASE)
            gllm_emu::mbar_arrive(&empty, 0);
        if (!(defect == NO_WAIT_GROUP && kt == K / BK - 1))
            gllm_emu::wgmma_wait(0);
        if (defect != EARLY_RELEASE)
            gllm_emu::mbar_arrive(&empty, 0);
    }
    const int warp = t / 32, lane = t % 32, m = warp * 16 + lane / 4;
    for (int j = 0; j < N / 8; j++)
        for (int e = 0; e < 4; e++)
            c[(m + 8 * (e / 2)) * N + 8 * j + 2 * (lane % 4) + e % 2] = acc[4 * j + e];
}

PFN_cuTensorMapEncodeTiled_v12000 encoder()
{
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q;
    cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    return (PFN_cuTensorMapEncodeTiled_v12000)fn;
}

// a 2-d bf16 map (as 3-d with one batch) over [outer][inner], box 64 x 64
CUresult make_map(CUtensorMap *map, const void *base, uint64_t inner, uint64_t outer,
                  uint64_t ld_bytes, uint32_t box_inner = 64)
{
    cuuint64_t dims[3] = {inner, outer, 1}, strides[2] = {ld_bytes, ld_bytes * outer};
    cuuint32_t box[3] = {box_inner, 64, 1}, estr[3] = {1, 1, 1};
    return encoder()(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)base, dims, strides, box, estr,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                     CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

uint16_t bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// A [rows_a x K] (rows past rows_a are outside the tensor: zero), B as
// [N x K] (K-major) or [K x N] (MN-major); returns the launch's error and
// fills c
cudaError_t run(int rows_a, bool b_mn_major, defect d, std::vector<float> &c,
                std::vector<float> &ref)
{
    std::vector<uint16_t> ha((size_t)rows_a * K), hb((size_t)N * K);
    for (auto &x : ha)
        x = bf16(test_randf());
    for (auto &x : hb)
        x = bf16(test_randf());
    ref.assign((size_t)M * N, 0.f);
    for (int m = 0; m < rows_a; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                const float bv = b_mn_major ? from_bf16(hb[(size_t)k * N + n])
                                            : from_bf16(hb[(size_t)n * K + k]);
                s += (double)from_bf16(ha[(size_t)m * K + k]) * bv;
            }
            ref[(size_t)m * N + n] = (float)s;
        }
    void *da, *db, *dc;
    cudaMalloc(&da, ha.size() * 2);
    cudaMalloc(&db, hb.size() * 2);
    cudaMalloc(&dc, (size_t)M * N * 4);
    cudaMemcpy(da, ha.data(), ha.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(db, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice);
    CUtensorMap ma, mb;
    CHECK(make_map(&ma, da, K, (uint64_t)rows_a, K * 2) == CUDA_SUCCESS);
    CHECK(b_mn_major ? make_map(&mb, db, N, K, N * 2) == CUDA_SUCCESS
                     : make_map(&mb, db, K, N, K * 2) == CUDA_SUCCESS);
    cudaFuncSetAttribute(gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM);
    gemm_kernel<<<1, THREADS, SMEM>>>(ma, mb, (float *)dc, b_mn_major ? 1 : 0, (int)d);
    cudaError_t e = cudaDeviceSynchronize();
    c.assign((size_t)M * N, NAN);
    if (e == cudaSuccess)
        cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost);
    cudaFree(da), cudaFree(db), cudaFree(dc);
    return e;
}

} // namespace

int main()
{
    test_seed();
    std::vector<float> c, ref;

    TEST_CASE("right: K-major B, A rows past the tensor zero-filled")
    {
        CHECK(run(50, false, NONE, c, ref) == cudaSuccess);
        CHECK_REL(c.data(), ref.data(), c.size(), 1e-5);
        double tail = 0;
        for (size_t i = (size_t)50 * N; i < c.size(); i++)
            tail += fabs(c[i]);
        CHECK_MSG(tail == 0, "rows 50..63 (outside A) sum to %g, not 0", tail);
    }
    TEST_CASE("right: MN-major B")
    {
        CHECK(run(64, true, NONE, c, ref) == cudaSuccess);
        CHECK_REL(c.data(), ref.data(), c.size(), 1e-5);
    }

    static const struct {
        defect d;
        const char *name, *needle;
    } wrong[] = {
        {NO_WAIT_GROUP, "no wgmma.wait_group after the last k-tile", "never waited for"},
        {NO_FULL_WAIT, "wgmma before the copy's mbarrier", "a TMA copy in flight is still writing"},
        {EARLY_RELEASE, "stage released before its wgmmas finish", "that an in-flight wgmma reads"},
        {OVER_ARRIVE, "two arrivals on a count-1 barrier", "more arrivals than its count"},
        {SHORT_TX, "expect_tx short of the bytes copied", "at an mbarrier phase that nothing"},
        {UNINIT_MBAR, "mbarrier never initialised", "no mbarrier.init"},
        {BAD_DESC, "descriptor stride off shared memory", "outside the block's shared memory"},
        {HALF_WARP, "wgmma from half a warp", "lanes"},
    };
    for (const auto &w : wrong) {
        TEST_CASE(w.name)
        {
            const cudaError_t e = run(64, false, w.d, c, ref);
            const char *why = gllm_emu::last_fault();
            CHECK_MSG(e == cudaErrorLaunchFailure, "launch returned %d (%s), fault '%s'", (int)e,
                      cudaGetErrorName(e), why);
            CHECK_MSG(strstr(why, w.needle) != NULL, "fault '%s' does not say '%s'", why, w.needle);
            cudaDeviceReset();
        }
    }

    TEST_CASE("cuTensorMapEncodeTiled refuses what the driver refuses")
    {
        void *p;
        cudaMalloc(&p, 1 << 16);
        CUtensorMap m;
        CHECK(make_map(&m, p, 64, 64, 128) == CUDA_SUCCESS);
        CHECK(make_map(&m, (char *)p + 8, 64, 64, 128) == CUDA_ERROR_INVALID_VALUE); // base % 16
        CHECK(make_map(&m, p, 64, 64, 136) == CUDA_ERROR_INVALID_VALUE); // stride % 16
        CHECK(make_map(&m, p, 128, 64, 256, 128) == CUDA_ERROR_INVALID_VALUE); // box row > 128 B
        cudaFree(p);
    }
    return test_summary();
}
