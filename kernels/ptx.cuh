// The PTX that the mma.sync kernels share (matmul_mma.cu and the attention
// kernels through attention_mma.cuh): 16-byte cp.async with zero fill, ldmatrix
// x4 (plain and transposed) and the m16n8k16 bf16 mma with fp32 accumulators;
// and the global timer (matmul_bench.cu). In an emulator build (GLLM_CUDA_EMU, kernels/emu) each one is
// the emulator's model of the same instruction.
//
// Fragment layout of mma.m16n8k16 (g = lane/4, t = lane%4; a register holds two
// bf16, the lower column or k in its low half):
//   A 16x16: a0 (row g, cols 2t..2t+1), a1 (row g+8, same cols), a2, a3 (cols +8)
//   B 16x8:  b0 (k 2t..2t+1, col g), b1 (k +8)
//   C 16x8:  c0,c1 (row g, cols 2t..2t+1), c2,c3 (row g+8)
// ldmatrix x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; lane l
// receives in register i row l/4, columns 2(l%4)..+1 of matrix i (.trans: column
// l/4, rows 2(l%4)..+1).
#pragma once

#include "cuda_common.cuh"

namespace gllm_ptx {

#ifndef GLLM_CUDA_EMU
__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}
#endif

// 16-byte async copy of which the first src_bytes (0..16) come from src and the
// rest are zero; with 0 the source is not read.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::cp_async16(dst, src, src_bytes);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit()
{
#ifndef GLLM_CUDA_EMU // the emulator's copies are done when issued
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int N> __device__ __forceinline__ void cp_async_wait()
{
#ifndef GLLM_CUDA_EMU
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::ldmatrix_x4(r, p, false);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
#endif
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::ldmatrix_x4(r, p, true);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
#endif
}

// c += a * b over one 16x8x16 tile
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1)
{
#ifdef GLLM_CUDA_EMU
    gllm_emu::mma_m16n8k16_bf16(c, a, b0, b1);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// the GPU's nanosecond clock
__device__ __forceinline__ uint64_t globaltimer_ns()
{
#ifdef GLLM_CUDA_EMU
    return gllm_emu::globaltimer_ns();
#else
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
#endif
}

} // namespace gllm_ptx
