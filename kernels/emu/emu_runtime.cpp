// The CUDA emulator's runtime: the part of the CUDA runtime API that gllm calls,
// on host memory, and the scheduler that runs a launch's blocks one at a time
// with every thread of a block a fiber (see emu.h for what is modelled).
//
// Checked here, as a GPU would refuse or fault: launch configurations (block
// size, grid size, dynamic shared memory against the kernel's attribute),
// copies whose device side is not inside one cudaMalloc'd buffer, barrier
// deadlocks (threads of a block waiting at different barriers), lanes of a
// warp at different collectives, and __trap. A kernel fault is sticky, as on a
// GPU: every later call returns cudaErrorLaunchFailure. Dynamic shared memory
// starts as 0xff bytes (NaN as floats) in every block, so reading what no
// thread wrote shows. Memory errors inside kernels are AddressSanitizer's to
// find (configure with -DGLLM_SANITIZE=ON).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <map>
#include <mutex>
#include <vector>

#include "emu.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace gllm_emu {

thread_local thread_ctx *cur;

namespace {

// ------------------------------------------------------------ errors

thread_local cudaError_t last_error = cudaSuccess;
std::mutex mu; // allocations, attributes, the sticky error
cudaError_t sticky = cudaSuccess;

cudaError_t set_error(cudaError_t e)
{
    if (e != cudaSuccess)
        last_error = e;
    return e;
}

// every call but the error queries: the sticky fault first
cudaError_t entry()
{
    std::lock_guard<std::mutex> l(mu);
    return sticky;
}

// ------------------------------------------------------------ memory

std::map<uintptr_t, size_t> allocs; // device buffers: base -> bytes
size_t in_use = 0, limit = 0;

size_t mem_limit()
{
    if (!limit) {
        const char *s = getenv("GLLM_EMU_MEM_MIB");
        const long mib = s ? atol(s) : 0;
        limit = (size_t)(mib > 0 ? mib : 8192) << 20;
    }
    return limit;
}

// [p, p + n) inside one device buffer
bool on_device(const void *p, size_t n)
{
    std::lock_guard<std::mutex> l(mu);
    const uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin())
        return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gllm cuda emulator: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// ------------------------------------------------------------ fibers

enum fstate { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

typedef void (*collective_fn)(void **args, unsigned lanes);

struct fiber {
    thread_ctx t;
    void *sp;
    char *stack; // lowest usable byte
    fstate state;
};

struct warp_state {
    unsigned live, waiting, mask;
    const char *kind;
    collective_fn fn;
    void *args[32];
};

struct block_state {
    std::vector<fiber> f;
    void *main_sp;
    int live, at_barrier, running;
    warp_state w[32];
    block_body body;
    void *closure;
    unsigned char *dyn;
    bool failed;
    char why[512];
#ifdef EMU_ASAN
    void *fake_stack;
#endif
};

thread_local block_state *blk;
constexpr size_t STACK = 256u << 10, GUARD = 4096;
thread_local std::vector<char *> stacks; // mmap'd: a guard page, then STACK bytes

char *stack_at(size_t i)
{
    while (stacks.size() <= i) {
        void *p = mmap(NULL, STACK + GUARD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED) {
            warn("cannot map a fiber stack");
            abort();
        }
        mprotect(p, GUARD, PROT_NONE);
        stacks.push_back((char *)p + GUARD);
    }
    return stacks[i];
}

#if defined(__x86_64__)
// switch(save, to): push the callee-saved registers on this stack, store rsp in
// *save, load `to` and pop the same from there. MXCSR and the x87 control word
// are callee-saved too, but nothing here changes them, so every fiber has the
// scheduler's (saving them doubled the cost of a switch).
extern "C" void gllm_emu_switch(void **save, void *to);
asm(".text\n"
    ".globl gllm_emu_switch\n"
    ".type gllm_emu_switch,@function\n"
    "gllm_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size gllm_emu_switch, .-gllm_emu_switch\n");
#else
thread_local std::vector<ucontext_t> uctx; // [0]: the scheduler, [1 + i]: fiber i
#endif

void fiber_main();

void *initial_sp(char *stack, size_t idx)
{
#if defined(__x86_64__)
    (void)idx;
    uintptr_t top = ((uintptr_t)stack + STACK) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                           // fiber_main's return address: never used
    *--sp = (uint64_t)(uintptr_t)fiber_main; // where the first switch returns to
    for (int i = 0; i < 6; i++)
        *--sp = 0; // rbp rbx r12 r13 r14 r15
    return sp;
#else
    ucontext_t *u = &uctx[1 + idx];
    getcontext(u);
    u->uc_stack.ss_sp = stack;
    u->uc_stack.ss_size = STACK;
    u->uc_link = NULL;
    makecontext(u, fiber_main, 0);
    return u;
#endif
}

// from a fiber to the scheduler
void to_main()
{
    fiber *me = &blk->f[blk->running];
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(me->state == DONE || blk->failed ? NULL : &blk->fake_stack,
                                   NULL, 0);
#endif
#if defined(__x86_64__)
    gllm_emu_switch(&me->sp, blk->main_sp);
#else
    swapcontext(&uctx[1 + blk->running], &uctx[0]);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(blk->fake_stack, NULL, NULL);
#endif
}

// from the scheduler to fiber i
void to_fiber(int i)
{
    blk->running = i;
    fiber *f = &blk->f[i];
    cur = &f->t;
#ifdef EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack, STACK);
#endif
#if defined(__x86_64__)
    gllm_emu_switch(&blk->main_sp, f->sp);
#else
    swapcontext(&uctx[0], &uctx[1 + i]);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

[[noreturn]] void fail_block(const char *fmt, ...)
{
    if (!blk->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(blk->why, sizeof blk->why, fmt, ap);
        va_end(ap);
    }
    blk->failed = true;
    to_main();
    abort(); // the scheduler never resumes a failed block
}

void try_release_block()
{
    block_state *b = blk;
    if (b->at_barrier > 0 && b->at_barrier == b->live) {
        for (auto &f : b->f)
            if (f.state == WAIT_BLOCK)
                f.state = RUN;
        b->at_barrier = 0;
    }
}

void try_complete(warp_state &w, int warp)
{
    const unsigned need = w.mask & w.live;
    if (!w.waiting || (w.waiting & need) != need)
        return;
    w.fn(w.args, w.waiting);
    for (int l = 0; l < 32; l++)
        if (w.waiting >> l & 1)
            blk->f[warp * 32 + l].state = RUN;
    w.waiting = 0;
}

void fiber_main()
{
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    blk->body(blk->closure);
    fiber *me = &blk->f[blk->running];
    me->state = DONE;
    blk->live--;
    warp_state &w = blk->w[me->t.warp];
    w.live &= ~(1u << me->t.lane);
    try_complete(w, me->t.warp);
    try_release_block();
    to_main();
    abort();
}

// every thread of `me`'s warp in `mask` that is still running calls this with
// its own `args`; the last to arrive runs fn for all of them
void collective(unsigned mask, const char *kind, void *args, collective_fn fn)
{
    fiber *me = &blk->f[blk->running];
    const int lane = me->t.lane, warp = me->t.warp;
    warp_state &w = blk->w[warp];
    if (!(mask >> lane & 1))
        fail_block("%s with mask 0x%08x called by lane %d, which the mask leaves out", kind, mask,
                   lane);
    if (w.waiting == 0) {
        w.kind = kind;
        w.mask = mask;
        w.fn = fn;
    } else if (w.kind != kind || w.mask != mask) {
        fail_block("warp %d: lane %d reached %s (mask 0x%08x) while lanes 0x%08x wait at %s "
                   "(mask 0x%08x)",
                   warp, lane, kind, mask, w.waiting, w.kind, w.mask);
    }
    w.args[lane] = args;
    w.waiting |= 1u << lane;
    me->state = WAIT_WARP;
    try_complete(w, warp);
    to_main();
}

struct xchg_args {
    uint64_t v;
    int src;
    uint64_t out;
};

void xchg_fn(void **a, unsigned lanes)
{
    for (int l = 0; l < 32; l++)
        if (lanes >> l & 1) {
            xchg_args *x = (xchg_args *)a[l];
            const int s = x->src;
            // a lane that is not taking part has no defined value: poison
            x->out = (s >= 0 && s < 32 && (lanes >> s & 1)) ? ((xchg_args *)a[s])->v : ~0ull;
        }
}

struct gather_args {
    uint64_t v;
    uint64_t *vals;
    unsigned in;
};

void gather_fn(void **a, unsigned lanes)
{
    for (int l = 0; l < 32; l++)
        if (lanes >> l & 1) {
            gather_args *g = (gather_args *)a[l];
            for (int s = 0; s < 32; s++)
                g->vals[s] = (lanes >> s & 1) ? ((gather_args *)a[s])->v : 0;
            g->in = lanes;
        }
}

void nop_fn(void **, unsigned) {}

struct ldsm_args {
    const void *row;
    uint32_t *r;
    bool trans;
};

uint16_t ld16(const void *row, int col)
{
    uint16_t v;
    memcpy(&v, (const char *)row + 2 * col, 2);
    return v;
}

void ldsm_fn(void **a, unsigned lanes)
{
    if (lanes != 0xffffffffu)
        fail_block("ldmatrix with lanes 0x%08x: the whole warp must take part", lanes);
    const bool trans = ((ldsm_args *)a[0])->trans;
    for (int l = 0; l < 32; l++)
        if (((ldsm_args *)a[l])->trans != trans)
            fail_block("ldmatrix: lanes disagree on .trans");
    for (int l = 0; l < 32; l++) {
        ldsm_args *x = (ldsm_args *)a[l];
        if ((uintptr_t)x->row % 16)
            fail_block("ldmatrix: lane %d's row address %p is not 16-byte aligned", l, x->row);
        for (int i = 0; i < 4; i++) {
            // matrix i: rows are the addresses of lanes 8i..8i+7
            uint16_t lo, hi;
            if (!trans) {
                const void *row = ((ldsm_args *)a[8 * i + l / 4])->row;
                lo = ld16(row, 2 * (l % 4));
                hi = ld16(row, 2 * (l % 4) + 1);
            } else {
                lo = ld16(((ldsm_args *)a[8 * i + 2 * (l % 4)])->row, l / 4);
                hi = ld16(((ldsm_args *)a[8 * i + 2 * (l % 4) + 1])->row, l / 4);
            }
            x->r[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

struct mma_args {
    float *d;
    const uint32_t *a;
    uint32_t b0, b1;
};

float bf16_lo(uint32_t r) { return __uint_as_float(r << 16); }
float bf16_hi(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }
float half_of(uint32_t r, int h) { return h ? bf16_hi(r) : bf16_lo(r); }

void mma_fn(void **a, unsigned lanes)
{
    if (lanes != 0xffffffffu)
        fail_block("mma.sync with lanes 0x%08x: the whole warp must take part", lanes);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const mma_args *x = (const mma_args *)a[l];
        const int g = l / 4, t = l % 4;
        for (int h = 0; h < 2; h++) {
            A[g][2 * t + h] = half_of(x->a[0], h);
            A[g + 8][2 * t + h] = half_of(x->a[1], h);
            A[g][2 * t + 8 + h] = half_of(x->a[2], h);
            A[g + 8][2 * t + 8 + h] = half_of(x->a[3], h);
            B[2 * t + h][g] = half_of(x->b0, h);
            B[2 * t + 8 + h][g] = half_of(x->b1, h);
        }
    }
    // products of bf16 are exact in fp32 (so a product and an add is an FMA);
    // the tensor core's fp32 sum rounds in its own order, which no test may
    // depend on; here it is k order
    float P[16][8] = {};
    for (int k = 0; k < 16; k++)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 8; c++)
                P[r][c] += A[r][k] * B[k][c];
    for (int l = 0; l < 32; l++) {
        float *d = ((mma_args *)a[l])->d;
        const int g = l / 4, t = l % 4;
        d[0] += P[g][2 * t];
        d[1] += P[g][2 * t + 1];
        d[2] += P[g + 8][2 * t];
        d[3] += P[g + 8][2 * t + 1];
    }
}

// ------------------------------------------------------------ kernels

std::map<const void *, int> max_dyn_smem; // cudaFuncAttributeMaxDynamicSharedMemorySize
constexpr int SMEM_DEFAULT = 48 << 10, SMEM_OPTIN = 227 << 10;

void describe_deadlock(block_state *b, char *out, size_t n)
{
    int at_bar = 0, at_warp = 0;
    const char *kind = "";
    for (auto &f : b->f) {
        if (f.state == WAIT_BLOCK)
            at_bar++;
        if (f.state == WAIT_WARP) {
            at_warp++;
            kind = b->w[f.t.warp].kind;
        }
    }
    snprintf(out, n,
             "deadlock: %d of %d running threads wait at __syncthreads and %d at a warp "
             "collective (%s) that the others never reach",
             at_bar, b->live, at_warp, kind);
}

} // namespace

void syncthreads()
{
    fiber *me = &blk->f[blk->running];
    me->state = WAIT_BLOCK;
    blk->at_barrier++;
    try_release_block();
    to_main();
}

uint64_t warp_exchange(unsigned mask, uint64_t v, int src)
{
    xchg_args x = {v, src, 0};
    collective(mask, "a shuffle", &x, xchg_fn);
    return x.out;
}

unsigned warp_gather(unsigned mask, uint64_t v, uint64_t *vals)
{
    gather_args g = {v, vals, 0};
    collective(mask, "a vote or reduction", &g, gather_fn);
    return g.in;
}

void syncwarp(unsigned mask) { collective(mask, "__syncwarp", NULL, nop_fn); }

void trap(const char *why) { fail_block("%s", why); }

void *dyn_smem() { return blk->dyn; }

void ldmatrix_x4(uint32_t r[4], const void *row_addr, bool trans)
{
    ldsm_args x = {row_addr, r, trans};
    collective(0xffffffffu, "ldmatrix", &x, ldsm_fn);
}

void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    mma_args x = {d, a, b0, b1};
    collective(0xffffffffu, "mma.sync", &x, mma_fn);
}

void cp_async16(void *dst, const void *src, int src_bytes)
{
    if ((uintptr_t)dst % 16 || (src_bytes > 0 && (uintptr_t)src % 16))
        fail_block("cp.async: 16-byte copy at unaligned address (dst %p, src %p)", dst, src);
    if (src_bytes < 0 || src_bytes > 16)
        fail_block("cp.async: source size %d is not 0..16", src_bytes);
    memcpy(dst, src, (size_t)src_bytes);
    memset((char *)dst + src_bytes, 0, 16 - (size_t)src_bytes);
}

uint64_t globaltimer_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void run_grid(const void *kernel, const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
              block_body body, void *closure)
{
    (void)stream; // launches run at once, so every stream is in order with every other
    if (entry() != cudaSuccess)
        return; // a faulted context launches nothing; the sticky error says why
    const size_t threads = (size_t)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    int allowed = SMEM_DEFAULT;
    {
        std::lock_guard<std::mutex> l(mu);
        auto it = max_dyn_smem.find(kernel);
        if (it != max_dyn_smem.end())
            allowed = it->second;
    }
    if (smem > (size_t)allowed) {
        warn("%s: %zu bytes of dynamic shared memory, the kernel allows %d "
             "(cudaFuncSetAttribute)", name, smem, allowed);
        set_error(cudaErrorInvalidValue);
        return;
    }
    block_state b{};
    block_state *outer = blk;
    thread_ctx *outer_cur = cur;
    blk = &b;
    b.f.resize(threads);
#if !defined(__x86_64__)
    uctx.resize(1 + threads);
#endif
    b.body = body;
    b.closure = closure;
    for (unsigned bz = 0; bz < grid.z && !b.failed; bz++)
        for (unsigned by = 0; by < grid.y && !b.failed; by++)
            for (unsigned bx = 0; bx < grid.x && !b.failed; bx++) {
                b.dyn = (unsigned char *)malloc(smem ? smem : 1);
                memset(b.dyn, 0xff, smem);
                b.live = (int)threads;
                b.at_barrier = 0;
                memset(b.w, 0, sizeof b.w);
                for (size_t i = 0; i < threads; i++) {
                    fiber &f = b.f[i];
                    const unsigned x = (unsigned)(i % block.x), y = (unsigned)(i / block.x % block.y),
                                   z = (unsigned)(i / ((size_t)block.x * block.y));
                    f.t.tid = make_uint3(x, y, z);
                    f.t.bid = make_uint3(bx, by, bz);
                    f.t.bdim = block;
                    f.t.gdim = grid;
                    f.t.lane = (int)(i % 32);
                    f.t.warp = (int)(i / 32);
                    f.stack = stack_at(i);
                    f.sp = initial_sp(f.stack, i);
                    f.state = RUN;
                    b.w[i / 32].live |= 1u << (i % 32);
                }
                while (b.live > 0 && !b.failed) {
                    bool ran = false;
                    for (size_t i = 0; i < threads && !b.failed; i++)
                        if (b.f[i].state == RUN) {
                            ran = true;
                            to_fiber((int)i);
                        }
                    if (!ran && b.live > 0 && !b.failed) {
                        describe_deadlock(&b, b.why, sizeof b.why);
                        b.failed = true;
                    }
                }
                free(b.dyn);
                if (b.failed)
                    warn("%s, block (%u,%u,%u) of (%u,%u,%u), %zu threads: %s",
                         name, bx, by, bz, grid.x, grid.y, grid.z, threads, b.why);
            }
    blk = outer;
    cur = outer_cur;
    if (b.failed) {
        std::lock_guard<std::mutex> l(mu);
        sticky = cudaErrorLaunchFailure;
    }
}

} // namespace gllm_emu

// ---------------------------------------------------------------- runtime API

using namespace gllm_emu;

#define ENTRY()                                                                 \
    do {                                                                        \
        cudaError_t entry_e_ = entry();                                         \
        if (entry_e_ != cudaSuccess)                                            \
            return set_error(entry_e_);                                         \
    } while (0)

extern "C" {

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    std::lock_guard<std::mutex> l(mu);
    return sticky != cudaSuccess ? sticky : e;
}

cudaError_t cudaPeekAtLastError(void)
{
    std::lock_guard<std::mutex> l(mu);
    return sticky != cudaSuccess ? sticky : last_error;
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error (emulator)";
    }
}

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
    }
}

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return set_error(d == 0 ? cudaSuccess : cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int *d)
{
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties_v2(cudaDeviceProp *p, int d)
{
    if (d != 0)
        return set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "gllm CUDA emulator (sm_90 limits, no wgmma)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->totalGlobalMem = mem_limit();
    p->sharedMemPerBlock = SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = SMEM_OPTIN;
    p->sharedMemPerMultiprocessor = 228 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsPerMultiProcessor = 2048;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->l2CacheSize = 50 << 20;
    p->memoryBusWidth = 6144;
    return cudaSuccess;
}

#undef cudaGetDeviceProperties
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    return cudaGetDeviceProperties_v2(p, d);
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d)
{
    if (d != 0)
        return set_error(cudaErrorInvalidDevice);
    cudaDeviceProp p;
    cudaGetDeviceProperties_v2(&p, 0);
    switch (a) {
    case cudaDevAttrL2CacheSize: *v = p.l2CacheSize; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest)
{
    if (least)
        *least = 0;
    if (greatest)
        *greatest = -5;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v)
{
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v)
{
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char *sym, void **fn, unsigned int version,
                                             unsigned long long flags,
                                             cudaDriverEntryPointQueryResult *status)
{
    (void)sym, (void)version, (void)flags;
    *fn = NULL; // no driver: the TMA encoder (wgmma path) is absent
    if (status)
        *status = cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    ENTRY();
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    ENTRY();
    *p = NULL;
    std::lock_guard<std::mutex> l(mu);
    if (in_use + bytes > mem_limit())
        return set_error(cudaErrorMemoryAllocation);
    // 256-byte aligned, as cudaMalloc's are, and no larger than asked, so that
    // AddressSanitizer sees a kernel's first byte past the end
    void *q = NULL;
    if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0)
        return set_error(cudaErrorMemoryAllocation);
    allocs[(uintptr_t)q] = bytes;
    in_use += bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::mutex> l(mu);
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end())
        return set_error(cudaErrorInvalidValue);
    in_use -= it->second;
    allocs.erase(it);
    free(p);
    return sticky;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total)
{
    ENTRY();
    std::lock_guard<std::mutex> l(mu);
    *total = mem_limit();
    *free_b = *total - in_use;
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    (void)s;
    ENTRY();
    if (n == 0)
        return cudaSuccess;
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if ((dst_dev && !on_device(dst, n)) || (src_dev && !on_device(src, n)) ||
        (kind == cudaMemcpyDeviceToHost && on_device(dst, n)) ||
        (kind == cudaMemcpyHostToDevice && on_device(src, n))) {
        warn("cudaMemcpy of %zu bytes from %p to %p (kind %d): a device side is not inside one "
             "cudaMalloc'd buffer",
             n, src, dst, (int)kind);
        return set_error(cudaErrorInvalidValue);
    }
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    return cudaMemcpyAsync(dst, src, n, kind, 0);
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
    (void)s;
    ENTRY();
    if (n && !on_device(p, n)) {
        warn("cudaMemset of %zu bytes at %p: not inside one cudaMalloc'd buffer", n, p);
        return set_error(cudaErrorInvalidValue);
    }
    memset(p, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t n) { return cudaMemsetAsync(p, v, n, 0); }

// streams and events: work runs when launched, so a stream is only a name and an
// event only a time
struct CUstream_st {
    int magic;
};
struct CUevent_st {
    double t;
    bool recorded;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    (void)flags;
    *s = (cudaStream_t) new CUstream_st{0x57};
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority)
{
    (void)priority;
    return cudaStreamCreateWithFlags(s, flags);
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete (CUstream_st *)s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    (void)s;
    ENTRY();
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t s)
{
    (void)s;
    ENTRY();
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags)
{
    (void)s, (void)flags;
    ENTRY();
    return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags)
{
    (void)flags;
    *e = (cudaEvent_t) new CUevent_st{0, false};
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete (CUevent_st *)e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    (void)s;
    ENTRY();
    ((CUevent_st *)e)->t = globaltimer_ns() * 1e-6; // ms
    ((CUevent_st *)e)->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e)
{
    (void)e;
    ENTRY();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    (void)e;
    ENTRY();
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    ENTRY();
    if (!((CUevent_st *)a)->recorded || !((CUevent_st *)b)->recorded)
        return set_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(((CUevent_st *)b)->t - ((CUevent_st *)a)->t);
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute attr, int value)
{
    ENTRY();
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return cudaSuccess;
    if (value < 0 || value > SMEM_OPTIN)
        return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> l(mu);
    max_dyn_smem[f] = value;
    return cudaSuccess;
}

} // extern "C"
