// The CUDA emulator's device side: force-included (-include) into every kernel
// file of a -DGLLM_CUDA_EMU=ON build, which compiles kernels/*.cu as host C++
// (after emu_rewrite.py has turned each launch into a call and each dynamic
// shared array into a pointer) and links emu_runtime.cpp in place of the CUDA
// runtime. It lets the CUDA backend's code, host and kernels, run on a machine
// without a GPU, under AddressSanitizer when the build has it.
//
// What it models: a block's threads are fibers that the runtime switches at
// every barrier (__syncthreads), warp collective (shuffles, votes, reductions,
// __syncwarp, ldmatrix, mma.sync), so code that is correct on a GPU is correct
// here and code that depends on a missing barrier, a lane that has exited or an
// uninitialised shared buffer shows it. Launches run at once, blocks one after
// the other, so nothing here says anything about races between blocks or
// streams, or timing.
//
// The Hopper (sm_90a) path is modelled too: mbarriers (arrival counts, the
// transaction count, phases), TMA tensor loads (cuTensorMapEncodeTiled's
// checks, 128-byte swizzle, zero fill outside the tensor) and wgmma.mma_async
// bf16 (shared-memory descriptors with the 128-byte swizzle, K- and MN-major
// operands, the accumulator fragment). Both are asynchronous here as on a GPU,
// and as late as they can be: a TMA copy lands only when no thread of the block
// can run, and a wgmma reads its operands and writes its accumulators only at
// the wgmma.wait_group that covers it, so a missing wait reads the 0xff poison
// of shared memory or leaves the accumulators unwritten.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

// CUDA's qualifiers, as host C++ sees them: shared memory is a static of the
// block (a host thread runs one block at a time; thread_local, so that host
// threads launching at once each have their own), everything else is a plain
// function.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static thread_local
#define __constant__ static
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#undef __grid_constant__
#define __grid_constant__

namespace gllm_emu {

// the fiber running now (one launch at a time per host thread)
struct thread_ctx {
    uint3 tid, bid;
    dim3 bdim, gdim;
    int lane, warp;
};
extern thread_local thread_ctx *cur;

void syncthreads();
// exchange one 64-bit value among the lanes of `mask` (this lane included);
// returns the value lane `src` put in, or poison (all ones) where `src` did not
// take part (not in the mask, or exited)
uint64_t warp_exchange(unsigned mask, uint64_t v, int src);
// the lanes of `mask` that reached this collective, and their values: vals[32]
unsigned warp_gather(unsigned mask, uint64_t v, uint64_t *vals);
void syncwarp(unsigned mask);
[[noreturn]] void trap(const char *why);
void *dyn_smem();

// the tensor-core instructions kernels/ptx.cuh wraps, in their PTX semantics
void ldmatrix_x4(uint32_t r[4], const void *row_addr, bool trans);
void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
void cp_async16(void *dst, const void *src, int src_bytes);
uint64_t globaltimer_ns();

// Hopper: mbarrier, TMA and wgmma (the kernel's own PTX wrappers call these)
void mbar_init(void *bar, unsigned count);
// arrive, after adding tx_bytes to the transaction count (arrive.expect_tx)
void mbar_arrive(void *bar, unsigned tx_bytes);
// block until the phase of this parity has completed
void mbar_wait(void *bar, unsigned parity);
// cp.async.bulk.tensor tile mode: the box at coords of the CUtensorMap into dst,
// completing its bytes on bar
void tma_load(void *dst, const void *tensor_map, void *bar, const int *coords, int rank);
// wgmma.mma_async m64nNk16 f32 += bf16 * bf16 of this lane's warpgroup
void wgmma_bf16(float *d, int n, uint64_t desc_a, uint64_t desc_b, int tnsp_a, int tnsp_b,
                bool scale_d);
// the .sync.aligned instructions without operands: every lane of the warp
// takes part ("wgmma.fence", "setmaxnreg")
void warp_aligned(const char *what);
void wgmma_commit();
void wgmma_wait(int pending);

// why the last faulting launch failed ("" if none has): the emulator's own
// tests (tests/emu) check that each defect is reported as what it is
const char *last_fault();

template <typename T> inline uint64_t to_bits(T v)
{
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <typename T> inline T from_bits(uint64_t u)
{
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}

// a launch: `kernel<<<grid, block, smem, stream>>>(args)` becomes
// `gllm_emu::launch(kernel, "kernel", grid, block, smem, stream)(args)`
typedef void (*block_body)(void *closure);
void run_grid(const void *kernel, const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
              block_body body, void *closure);

template <typename... P> struct launcher {
    void (*k)(P...);
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <typename... A> void operator()(A &&...args) const
    {
        static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
        // parameters are copied at launch, as CUDA copies them to the device
        struct closure {
            void (*k)(P...);
            std::tuple<typename std::decay<P>::type...> args;
        } c{k, std::tuple<typename std::decay<P>::type...>(std::forward<A>(args)...)};
        run_grid((const void *)k, name, grid, block, smem, stream,
                 [](void *p) {
                     closure *c = (closure *)p;
                     std::apply(c->k, c->args);
                 },
                 &c);
    }
};

template <typename... P>
launcher<P...> launch(void (*k)(P...), const char *name, dim3 grid, dim3 block,
                      size_t smem = 0, cudaStream_t stream = 0)
{
    return launcher<P...>{k, name, grid, block, smem, stream};
}

// a template kernel launched by its bare name: the lambda calls it with the
// launch's arguments, so the compiler deduces its template arguments as nvcc
// does. There is no function pointer to find a shared-memory attribute by, so
// such a launch may use only the default 48 KiB.
struct deduced_launcher {
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <typename F, typename... A> void operator()(F f, A... args) const
    {
        struct closure {
            F f;
            std::tuple<A...> args;
        } c{f, std::tuple<A...>(args...)};
        run_grid(NULL, name, grid, block, smem, stream,
                 [](void *p) {
                     closure *c = (closure *)p;
                     std::apply(c->f, c->args);
                 },
                 &c);
    }
};

inline deduced_launcher launch_deduced(const char *name, dim3 grid, dim3 block, size_t smem = 0,
                                       cudaStream_t stream = 0)
{
    return deduced_launcher{name, grid, block, smem, stream};
}

} // namespace gllm_emu

// the runtime's typed overload, which cuda_runtime.h offers to nvcc only
template <typename T> inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute a, int v)
{
    return cudaFuncSetAttribute((const void *)entry, a, v);
}

#define threadIdx (gllm_emu::cur->tid)
#define blockIdx (gllm_emu::cur->bid)
#define blockDim (gllm_emu::cur->bdim)
#define gridDim (gllm_emu::cur->gdim)

inline void __syncthreads() { gllm_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { gllm_emu::syncwarp(mask); }
inline void __threadfence() {}
inline void __threadfence_block() {}
[[noreturn]] inline void __trap() { gllm_emu::trap("__trap()"); }

inline int gllm_emu_sub_lane(int lane, int width) { return lane & (width - 1); }

template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    const int lane = gllm_emu::cur->lane, base = lane & ~(width - 1);
    return gllm_emu::from_bits<T>(
        gllm_emu::warp_exchange(mask, gllm_emu::to_bits(v), base + (src & (width - 1))));
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32)
{
    const int lane = gllm_emu::cur->lane, src = lane ^ m;
    const bool same = (src & ~(width - 1)) == (lane & ~(width - 1));
    const uint64_t r = gllm_emu::warp_exchange(mask, gllm_emu::to_bits(v), same ? src : lane);
    return gllm_emu::from_bits<T>(r);
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    const int lane = gllm_emu::cur->lane;
    const bool in = gllm_emu_sub_lane(lane, width) + (int)d < width;
    return gllm_emu::from_bits<T>(
        gllm_emu::warp_exchange(mask, gllm_emu::to_bits(v), in ? lane + (int)d : lane));
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    const int lane = gllm_emu::cur->lane;
    const bool in = gllm_emu_sub_lane(lane, width) - (int)d >= 0;
    return gllm_emu::from_bits<T>(
        gllm_emu::warp_exchange(mask, gllm_emu::to_bits(v), in ? lane - (int)d : lane));
}

inline unsigned __ballot_sync(unsigned mask, int pred)
{
    uint64_t vals[32];
    const unsigned in = gllm_emu::warp_gather(mask, pred != 0, vals);
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if ((in >> l & 1) && vals[l])
            r |= 1u << l;
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred)
{
    uint64_t vals[32];
    const unsigned in = gllm_emu::warp_gather(mask, pred != 0, vals);
    for (int l = 0; l < 32; l++)
        if ((in >> l & 1) && !vals[l])
            return 0;
    return 1;
}
template <typename T> inline T gllm_emu_reduce(unsigned mask, T v, bool want_max)
{
    uint64_t vals[32];
    const unsigned in = gllm_emu::warp_gather(mask, gllm_emu::to_bits(v), vals);
    T r = v;
    for (int l = 0; l < 32; l++)
        if (in >> l & 1) {
            const T x = gllm_emu::from_bits<T>(vals[l]);
            r = want_max ? (x > r ? x : r) : (x < r ? x : r);
        }
    return r;
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) { return gllm_emu_reduce(mask, v, false); }
inline int __reduce_min_sync(unsigned mask, int v) { return gllm_emu_reduce(mask, v, false); }
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) { return gllm_emu_reduce(mask, v, true); }
inline int __reduce_max_sync(unsigned mask, int v) { return gllm_emu_reduce(mask, v, true); }

// fast-math intrinsics: the accurate libm function (the GPU's are within a few ulp)
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline unsigned __float_as_uint(float x) { return gllm_emu::from_bits<unsigned>(gllm_emu::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return gllm_emu::from_bits<float>(gllm_emu::to_bits(x)); }
inline int __float_as_int(float x) { return gllm_emu::from_bits<int>(gllm_emu::to_bits(x)); }
inline float __int_as_float(int x) { return gllm_emu::from_bits<float>(gllm_emu::to_bits(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
template <typename T> inline T __ldg(const T *p) { return *p; }
inline size_t __cvta_generic_to_shared(const void *p) { return (size_t)(uintptr_t)p; }

// atomics: blocks run one at a time on one host thread
template <typename T> inline T atomicAdd(T *p, T v)
{
    const T old = *p;
    *p = old + v;
    return old;
}
template <typename T> inline T atomicMin(T *p, T v)
{
    const T old = *p;
    *p = v < old ? v : old;
    return old;
}
template <typename T> inline T atomicMax(T *p, T v)
{
    const T old = *p;
    *p = v > old ? v : old;
    return old;
}
template <typename T> inline T atomicExch(T *p, T v)
{
    const T old = *p;
    *p = v;
    return old;
}
template <typename T> inline T atomicCAS(T *p, T cmp, T v)
{
    const T old = *p;
    if (old == cmp)
        *p = v;
    return old;
}

// CUDA's overloaded min/max of device code
template <typename A, typename B> inline auto min(A a, B b) -> typename std::common_type<A, B>::type
{
    return b < a ? b : a;
}
template <typename A, typename B> inline auto max(A a, B b) -> typename std::common_type<A, B>::type
{
    return a < b ? b : a;
}

#include "emu_cub.h"
