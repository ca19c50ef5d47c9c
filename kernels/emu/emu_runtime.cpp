// The CUDA emulator's runtime: the part of the CUDA runtime API that gllm calls,
// on host memory, and the scheduler that runs a launch's blocks one at a time
// with every thread of a block a fiber (see emu.h for what is modelled).
//
// Checked here, as a GPU would refuse or fault: launch configurations (block
// size, grid size, dynamic shared memory against the kernel's attribute),
// copies whose device side is not inside one cudaMalloc'd buffer, barrier
// deadlocks (threads of a block waiting at different barriers or at mbarriers
// that no copy or thread will complete), lanes of a warp at different
// collectives, tensor maps the driver would refuse, TMA boxes and wgmma
// operands outside the block's shared memory, mbarriers used before
// mbarrier.init or over-arrived, a block that ends with a copy or a wgmma still
// in flight, and __trap. A kernel fault is sticky, as on a
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

#include <cuda.h>

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
std::mutex mu; // allocations, attributes, the sticky error and its reason
cudaError_t sticky = cudaSuccess;
char fault[768];

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

enum fstate { RUN, WAIT_BLOCK, WAIT_WARP, WAIT_MBAR, DONE };

typedef void (*collective_fn)(void **args, unsigned lanes);

// an mbarrier's state (the 8 bytes in shared memory only name it)
struct mbarrier {
    unsigned expected, pending;
    long long tx; // transaction bytes still to come (may dip below 0 before expect_tx)
    unsigned phase;
};

struct fiber {
    thread_ctx t;
    void *sp;
    char *stack; // lowest usable byte
    fstate state;
    const mbarrier *mbar;  // WAIT_MBAR: the barrier
    unsigned mbar_parity;  // and the parity of the phase awaited
};

// the encoder's record, kept in the 128 bytes of a CUtensorMap
struct tmap {
    uint32_t magic;
    uint8_t rank, esize, swizzle_bytes, nan_fill; // swizzle_bytes 0, 32, 64 or 128
    const unsigned char *base;
    uint64_t dim[5], stride[5]; // stride[0] = esize; bytes
    uint16_t box[5];
};
static_assert(sizeof(tmap) <= sizeof(CUtensorMap), "tensor map record");
constexpr uint32_t TMAP_MAGIC = 0x7e45a9c1u;

struct tma_copy {
    unsigned char *dst;
    size_t bytes;
    tmap map;
    int coords[5];
    uintptr_t bar;
};

// what every lane of a warp must give a wgmma alike
struct wgmma_key {
    uint64_t da, db;
    int n, tnsp_a, tnsp_b;
    bool scale_d;
    bool operator==(const wgmma_key &o) const
    {
        return da == o.da && db == o.db && n == o.n && tnsp_a == o.tnsp_a && tnsp_b == o.tnsp_b &&
               scale_d == o.scale_d;
    }
};

struct wgmma_op {
    wgmma_key k;
    int group; // -1 until wgmma.commit_group
    float *d[32];
    std::vector<uintptr_t> at; // the shared addresses it reads: A 16 x 16, then B n x 16
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
    size_t dyn_size;
    std::map<uintptr_t, mbarrier> mbars;
    std::vector<tma_copy> copies; // in flight
    // per 16-byte unit of dynamic shared memory: copies in flight writing it,
    // wgmmas in flight reading it (an overlap is a race on a GPU)
    std::vector<uint32_t> copy_writing, wgmma_reading;
    std::vector<wgmma_op> wgmma[32]; // per warp, in issue order
    int wgmma_groups[32];            // groups committed so far, per warp
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
    int at_bar = 0, at_warp = 0, at_mbar = 0;
    const char *kind = "";
    for (auto &f : b->f) {
        if (f.state == WAIT_BLOCK)
            at_bar++;
        if (f.state == WAIT_WARP) {
            at_warp++;
            kind = b->w[f.t.warp].kind;
        }
        if (f.state == WAIT_MBAR)
            at_mbar++;
    }
    snprintf(out, n,
             "deadlock: %d of %d running threads wait at __syncthreads, %d at a warp "
             "collective (%s) that the others never reach and %d at an mbarrier phase that "
             "nothing in flight will complete",
             at_bar, b->live, at_warp, kind, at_mbar);
}

// ------------------------------------------------------------ Hopper

bool phase_done(const mbarrier &m, unsigned parity) { return (m.phase & 1u) != parity; }

void mbar_progress(mbarrier &m)
{
    if (m.pending == 0 && m.tx == 0) {
        m.phase++;
        m.pending = m.expected;
    }
}

// a failure found by the scheduler itself (no fiber to switch from)
void fail_sched(block_state *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof b->why, fmt, ap);
    va_end(ap);
    b->failed = true;
}

bool in_dyn(block_state *b, const void *p, size_t n)
{
    const uintptr_t a = (uintptr_t)p, d = (uintptr_t)b->dyn;
    return a >= d && a + n <= d + b->dyn_size;
}

// the 16-byte units [*u0, *u1) of dynamic shared memory that [p, p + n) covers
void units(block_state *b, const void *p, size_t n, size_t *u0, size_t *u1)
{
    *u0 = ((uintptr_t)p - (uintptr_t)b->dyn) / 16;
    *u1 = ((uintptr_t)p + n - (uintptr_t)b->dyn + 15) / 16;
}

// the 128-byte swizzle (and its 64- and 32-byte kin): bits 4.. of a shared
// address are XORed with the bits from 7 on, over log2(bytes / 16) bits
uintptr_t swizzle(uintptr_t a, int bytes)
{
    const uintptr_t mask = bytes == 128 ? 7 : bytes == 64 ? 3 : bytes == 32 ? 1 : 0;
    return a ^ (((a >> 7) & mask) << 4);
}

// a TMA copy lands: the box, element by element, with zero (or NaN) where it
// lies outside the tensor, then its bytes complete on the barrier
void land(block_state *b, const tma_copy &c)
{
    const tmap &m = c.map;
    size_t box_elems = 1;
    for (int i = 0; i < m.rank; i++)
        box_elems *= m.box[i];
    for (size_t e = 0; e < box_elems; e++) {
        size_t rem = e;
        bool in = true;
        uint64_t off = 0;
        for (int i = 0; i < m.rank; i++) {
            const long long x = (long long)c.coords[i] + (long long)(rem % m.box[i]);
            rem /= m.box[i];
            if (x < 0 || (uint64_t)x >= m.dim[i])
                in = false;
            else
                off += (uint64_t)x * m.stride[i];
        }
        const uintptr_t lin = (uintptr_t)c.dst + e * m.esize;
        unsigned char *to = (unsigned char *)(m.swizzle_bytes ? swizzle(lin, m.swizzle_bytes) : lin);
        if (in) {
            if (!on_device(m.base + off, m.esize)) {
                fail_sched(b, "TMA load: element %zu of the box (global %p) is outside every "
                              "cudaMalloc'd buffer",
                           e, (const void *)(m.base + off));
                return;
            }
            memcpy(to, m.base + off, m.esize);
        } else if (m.nan_fill) {
            memset(to, 0xff, m.esize);
        } else {
            memset(to, 0, m.esize);
        }
    }
    size_t u0, u1;
    units(b, c.dst, c.bytes, &u0, &u1);
    for (size_t u = u0; u < u1; u++)
        b->copy_writing[u]--;
    auto it = b->mbars.find(c.bar);
    if (it == b->mbars.end()) {
        fail_sched(b, "TMA load completes on an mbarrier that was never initialised");
        return;
    }
    it->second.tx -= (long long)(box_elems * m.esize);
    mbar_progress(it->second);
}

// every copy in flight lands (the scheduler calls this when no thread can run)
bool land_all(block_state *b)
{
    if (b->copies.empty())
        return false;
    std::vector<tma_copy> c;
    c.swap(b->copies);
    for (const tma_copy &x : c)
        land(b, x);
    return true;
}

// the shared-memory address a descriptor's 14-bit start field names: the one
// in the block's dynamic shared memory with those address bits (4..17; the
// window is under 256 KiB, so there is one)
const unsigned char *desc_start(block_state *b, uint64_t desc)
{
    const uintptr_t field = (uintptr_t)(desc & 0x3FFF) << 4, d = (uintptr_t)b->dyn;
    uintptr_t a = (d & ~(uintptr_t)0x3FFFF) | field;
    if (a < d)
        a += 0x40000;
    return in_dyn(b, (const void *)a, 1) ? (const unsigned char *)a : NULL;
}

// A wgmma operand (A: mn = row m; B: mn = column n) that a descriptor with the
// 128-byte swizzle describes. Canonical layouts, in bytes for 2-byte elements:
//   K-major:  rows of 64 k (128 bytes); row mn % 8 of a group at +128 each,
//             8-row groups SBO apart (LBO unused)
//   MN-major: rows of 64 mn (128 bytes), one per k; k % 8 at +128 each, 8-k
//             groups SBO apart, 64-wide mn chunks LBO apart
// then the swizzle of the resulting address. The addresses of rows
// mn0..mn0+rows-1, k 0..15, into at[r * 16 + k].
bool operand_at(block_state *b, uint64_t desc, bool mn_major, int mn0, int rows, uintptr_t *at,
                char *why, size_t n)
{
    const unsigned char *start = desc_start(b, desc);
    const uint64_t lbo = (desc >> 16 & 0x3FFF) << 4, sbo = (desc >> 32 & 0x3FFF) << 4;
    const int base_off = (int)(desc >> 49 & 7), mode = (int)(desc >> 62 & 3);
    if (!start) {
        snprintf(why, n, "wgmma descriptor 0x%016llx: start address outside the block's shared memory",
                 (unsigned long long)desc);
        return false;
    }
    if (mode != 1) {
        snprintf(why, n, "wgmma descriptor 0x%016llx: swizzle mode %d is not modelled (only 1, "
                         "128-byte)", (unsigned long long)desc, mode);
        return false;
    }
    if ((int)(((uintptr_t)start >> 7) & 7) != base_off) {
        snprintf(why, n, "wgmma descriptor 0x%016llx: the start's 128-byte row within the 1024-byte "
                         "swizzle pattern (%d) is not the base offset (%d)",
                 (unsigned long long)desc, (int)(((uintptr_t)start >> 7) & 7), base_off);
        return false;
    }
    const uintptr_t lo = (uintptr_t)b->dyn, hi = lo + b->dyn_size;
    for (int r = 0; r < rows; r++) {
        const int mn = mn0 + r;
        for (int k = 0; k < 16; k++) {
            const uint64_t off =
                mn_major ? (uint64_t)(mn % 64) * 2 + (uint64_t)(mn / 64) * lbo +
                               (uint64_t)(k % 8) * 128 + (uint64_t)(k / 8) * sbo
                         : (uint64_t)(mn % 8) * 128 + (uint64_t)(mn / 8) * sbo + (uint64_t)k * 2;
            const uintptr_t p = swizzle((uintptr_t)start + off, 128);
            if (p < lo || p + 2 > hi) {
                snprintf(why, n, "wgmma operand element (%d, k %d) of descriptor 0x%016llx lies "
                                 "outside the block's shared memory",
                         mn, k, (unsigned long long)desc);
                return false;
            }
            at[r * 16 + k] = p;
        }
    }
    return true;
}


float bf16_at(uintptr_t p)
{
    uint16_t v;
    memcpy(&v, (const void *)p, 2);
    return __uint_as_float((uint32_t)v << 16);
}

// one warp's part of a wgmma (rows 16 * (warp % 4) .. +15 of the 64), from
// the addresses its issue found
void run_wgmma(block_state *b, const wgmma_op &op)
{
    static thread_local float A[16 * 16], B[256 * 16], P[16][256];
    const int n = op.k.n;
    for (int i = 0; i < 256; i++)
        A[i] = bf16_at(op.at[i]);
    for (int i = 0; i < n * 16; i++)
        B[i] = bf16_at(op.at[256 + i]);
    for (uintptr_t p : op.at)
        b->wgmma_reading[(p - (uintptr_t)b->dyn) / 16]--;
    // products of bf16 are exact in fp32; the sum is in k order here (the
    // tensor core's order is its own, which no test may depend on)
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < n; c++) {
            float acc = 0.f;
            for (int k = 0; k < 16; k++)
                acc += A[r * 16 + k] * B[c * 16 + k];
            P[r][c] = acc;
        }
    // accumulator fragment: register j of lane l is row l/4 + 8 * (j/2 % 2),
    // column 8 * (j/4) + 2 * (l % 4) + j % 2
    for (int l = 0; l < 32; l++)
        for (int j = 0; j < n / 2; j++) {
            const int r = l / 4 + 8 * ((j >> 1) & 1), c = 8 * (j >> 2) + 2 * (l % 4) + (j & 1);
            op.d[l][j] = (op.k.scale_d ? op.d[l][j] : 0.f) + P[r][c];
        }
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

static mbarrier &mbar_of(void *bar, const char *op)
{
    if ((uintptr_t)bar % 8)
        fail_block("%s: mbarrier at %p is not 8-byte aligned", op, bar);
    auto it = blk->mbars.find((uintptr_t)bar);
    if (it == blk->mbars.end())
        fail_block("%s on %p, which no mbarrier.init of this block initialised", op, bar);
    return it->second;
}

void mbar_init(void *bar, unsigned count)
{
    if ((uintptr_t)bar % 8)
        fail_block("mbarrier.init: %p is not 8-byte aligned", bar);
    if (count == 0 || count >= (1u << 20))
        fail_block("mbarrier.init: count %u is not 1..2^20-1", count);
    blk->mbars[(uintptr_t)bar] = mbarrier{count, count, 0, 0};
}

void mbar_arrive(void *bar, unsigned tx_bytes)
{
    mbarrier &m = mbar_of(bar, "mbarrier.arrive");
    if (m.pending == 0)
        fail_block("mbarrier.arrive on %p: more arrivals than its count (%u) in phase %u", bar,
                   m.expected, m.phase);
    m.tx += tx_bytes;
    m.pending--;
    const unsigned phase = m.phase;
    mbar_progress(m);
    // a completed phase: the threads it releases run before this one goes on
    // (the scheduler's next pass starts from thread 0), so that what this
    // thread does next races with them as on a GPU
    if (m.phase != phase)
        to_main();
}

void mbar_wait(void *bar, unsigned parity)
{
    fiber *me = &blk->f[blk->running];
    const mbarrier &m = mbar_of(bar, "mbarrier.try_wait");
    while (!phase_done(m, parity & 1)) {
        me->state = WAIT_MBAR;
        me->mbar = &m; // std::map's nodes stay put
        me->mbar_parity = parity & 1;
        to_main();
    }
}

void tma_load(void *dst, const void *tensor_map, void *bar, const int *coords, int rank)
{
    tma_copy c;
    memcpy(&c.map, tensor_map, sizeof c.map);
    if (c.map.magic != TMAP_MAGIC)
        fail_block("cp.async.bulk.tensor: the tensor map at %p was not made by cuTensorMapEncodeTiled",
                   tensor_map);
    if (rank != c.map.rank)
        fail_block("cp.async.bulk.tensor.%dd with a rank-%d tensor map", rank, (int)c.map.rank);
    if ((uintptr_t)dst % 128)
        fail_block("cp.async.bulk.tensor: shared destination %p is not 128-byte aligned", dst);
    // the swizzle is modelled on the address bits, as the descriptors read it;
    // a box that starts inside a pattern repeat is not modelled
    if (c.map.swizzle_bytes && (uintptr_t)dst % (8u * c.map.swizzle_bytes))
        fail_block("cp.async.bulk.tensor: swizzled (%d-byte) box at %p does not start on a %d-byte "
                   "pattern boundary (not modelled)",
                   (int)c.map.swizzle_bytes, dst, 8 * (int)c.map.swizzle_bytes);
    size_t bytes = c.map.esize;
    for (int i = 0; i < rank; i++)
        bytes *= c.map.box[i];
    if (!in_dyn(blk, dst, bytes))
        fail_block("cp.async.bulk.tensor: the %zu-byte box at %p runs outside the block's %zu bytes "
                   "of dynamic shared memory",
                   bytes, dst, blk->dyn_size);
    mbar_of(bar, "cp.async.bulk.tensor");
    c.dst = (unsigned char *)dst;
    for (int i = 0; i < 5; i++)
        c.coords[i] = i < rank ? coords[i] : 0;
    c.bar = (uintptr_t)bar;
    c.bytes = bytes;
    size_t u0, u1;
    units(blk, dst, bytes, &u0, &u1);
    for (size_t u = u0; u < u1; u++)
        if (blk->wgmma_reading[u])
            fail_block("cp.async.bulk.tensor into shared memory at %p that an in-flight wgmma "
                       "reads: release a stage only after the wgmma.wait_group that covers its "
                       "wgmmas",
                       (void *)((uintptr_t)blk->dyn + 16 * u));
    for (size_t u = u0; u < u1; u++)
        blk->copy_writing[u]++;
    blk->copies.push_back(c);
}

struct wgmma_args {
    float *d;
    wgmma_key k;
};

static void wgmma_issue_fn(void **a, unsigned lanes)
{
    if (lanes != 0xffffffffu)
        fail_block("wgmma.mma_async with lanes 0x%08x: the whole warp must take part", lanes);
    wgmma_op op;
    op.k = ((const wgmma_args *)a[0])->k;
    op.group = -1;
    for (int l = 0; l < 32; l++) {
        const wgmma_args *x = (const wgmma_args *)a[l];
        if (!(x->k == op.k))
            fail_block("wgmma.mma_async: lane %d's operands differ from lane 0's", l);
        op.d[l] = x->d;
    }
    // what this warp's part reads (A rows 16 * (warp % 4) .. +15, all of B),
    // found now: no copy in flight may be writing it, and no copy may start
    // writing it until the wgmma is waited for. (Checked in a scratch array:
    // a failure leaves this fiber for good, and a vector here would leak.)
    const int w = blk->f[blk->running].t.warp;
    static thread_local uintptr_t at[256 + 256 * 16];
    const size_t count = 256 + (size_t)op.k.n * 16;
    char why[256];
    if (!operand_at(blk, op.k.da, op.k.tnsp_a != 0, 16 * (w % 4), 16, at, why, sizeof why) ||
        !operand_at(blk, op.k.db, op.k.tnsp_b != 0, 0, op.k.n, at + 256, why, sizeof why))
        fail_block("%s", why);
    for (size_t i = 0; i < count; i++)
        if (blk->copy_writing[(at[i] - (uintptr_t)blk->dyn) / 16])
            fail_block("wgmma.mma_async reads shared memory at %p that a TMA copy in flight is "
                       "still writing: wait on the copy's mbarrier first",
                       (void *)at[i]);
    op.at.assign(at, at + count);
    for (uintptr_t p : op.at)
        blk->wgmma_reading[(p - (uintptr_t)blk->dyn) / 16]++;
    blk->wgmma[w].push_back(std::move(op));
}

void wgmma_bf16(float *d, int n, uint64_t desc_a, uint64_t desc_b, int tnsp_a, int tnsp_b,
                bool scale_d)
{
    if (n < 8 || n > 256 || n % 8)
        fail_block("wgmma.mma_async m64n%dk16: N must be a multiple of 8 in 8..256", n);
    if (blk->f.size() % 128)
        fail_block("wgmma.mma_async in a block of %zu threads, not whole warpgroups", blk->f.size());
    wgmma_args x = {d, {desc_a, desc_b, n, tnsp_a, tnsp_b, scale_d}};
    collective(0xffffffffu, "wgmma.mma_async", &x, wgmma_issue_fn);
}

void warp_aligned(const char *what) { collective(0xffffffffu, what, NULL, nop_fn); }

static void wgmma_commit_fn(void **, unsigned lanes)
{
    if (lanes != 0xffffffffu)
        fail_block("wgmma.commit_group with lanes 0x%08x: the whole warp must take part", lanes);
    const int w = blk->f[blk->running].t.warp;
    bool any = false;
    for (wgmma_op &op : blk->wgmma[w])
        if (op.group < 0) {
            op.group = blk->wgmma_groups[w];
            any = true;
        }
    if (any)
        blk->wgmma_groups[w]++;
}

void wgmma_commit() { collective(0xffffffffu, "wgmma.commit_group", NULL, wgmma_commit_fn); }

static void wgmma_wait_fn(void **a, unsigned lanes)
{
    if (lanes != 0xffffffffu)
        fail_block("wgmma.wait_group with lanes 0x%08x: the whole warp must take part", lanes);
    const int w = blk->f[blk->running].t.warp, keep = *(const int *)a[0];
    for (int l = 1; l < 32; l++)
        if (*(const int *)a[l] != keep)
            fail_block("wgmma.wait_group: lane %d waits for %d groups, lane 0 for %d", l,
                       *(const int *)a[l], keep);
    // the groups older than the newest `keep` run now, in issue order
    const int upto = blk->wgmma_groups[w] - keep;
    std::vector<wgmma_op> &q = blk->wgmma[w];
    std::vector<wgmma_op> rest;
    for (wgmma_op &op : q) {
        if (op.group >= 0 && op.group < upto)
            run_wgmma(blk, op);
        else
            rest.push_back(std::move(op));
    }
    q.swap(rest);
}

void wgmma_wait(int pending)
{
    int p = pending;
    collective(0xffffffffu, "wgmma.wait_group", &p, wgmma_wait_fn);
}

const char *last_fault() { return fault; }

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
                b.dyn_size = smem;
                memset(b.dyn, 0xff, smem);
                b.mbars.clear();
                b.copies.clear();
                b.copy_writing.assign(smem / 16 + 1, 0);
                b.wgmma_reading.assign(smem / 16 + 1, 0);
                for (int w = 0; w < 32; w++) {
                    b.wgmma[w].clear();
                    b.wgmma_groups[w] = 0;
                }
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
                    for (size_t i = 0; i < threads && !b.failed; i++) {
                        fiber &f = b.f[i];
                        if (f.state == WAIT_MBAR && phase_done(*f.mbar, f.mbar_parity))
                            f.state = RUN;
                        if (f.state == RUN) {
                            ran = true;
                            to_fiber((int)i);
                        }
                    }
                    // the copy engine moves only when no thread can
                    if (!ran && b.live > 0 && !b.failed && !land_all(&b)) {
                        describe_deadlock(&b, b.why, sizeof b.why);
                        b.failed = true;
                    }
                }
                if (!b.failed && !b.copies.empty())
                    fail_sched(&b, "the block ended with %zu TMA copies in flight", b.copies.size());
                for (int w = 0; w < 32 && !b.failed; w++)
                    if (!b.wgmma[w].empty())
                        fail_sched(&b, "warp %d ended with %zu wgmma.mma_async never waited for "
                                       "(wgmma.commit_group and wgmma.wait_group)",
                                   w, b.wgmma[w].size());
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
        snprintf(fault, sizeof fault, "%s: %s", name, b.why);
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
    snprintf(p->name, sizeof p->name, "gllm CUDA emulator (sm_90a: wgmma and TMA modelled)");
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

// the driver's cuTensorMapEncodeTiled, with the checks its documentation lists
static CUresult emu_encode_tiled(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank,
                                 void *base, const cuuint64_t *dims, const cuuint64_t *strides,
                                 const cuuint32_t *box, const cuuint32_t *estr,
                                 CUtensorMapInterleave interleave, CUtensorMapSwizzle swz,
                                 CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob)
{
    (void)l2;
    int esize = 0;
    bool is_float = true;
    switch (type) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: esize = 1, is_float = false; break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16: esize = 2, is_float = false; break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32: esize = 4, is_float = false; break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64: esize = 8, is_float = false; break;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: esize = 2; break;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ: esize = 4; break;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: esize = 8; break;
    default: break;
    }
    const int swz_bytes = swz == CU_TENSOR_MAP_SWIZZLE_NONE   ? 0
                          : swz == CU_TENSOR_MAP_SWIZZLE_32B  ? 32
                          : swz == CU_TENSOR_MAP_SWIZZLE_64B  ? 64
                          : swz == CU_TENSOR_MAP_SWIZZLE_128B ? 128
                                                              : -1;
    const char *bad = NULL;
    if (!map || (uintptr_t)map % 64)
        bad = "the CUtensorMap is not 64-byte aligned";
    else if (!esize)
        bad = "data type not modelled";
    else if (rank < 1 || rank > 5)
        bad = "rank is not 1..5";
    else if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE)
        bad = "interleaved layouts are not modelled";
    else if (swz_bytes < 0)
        bad = "swizzle mode not modelled";
    else if ((uintptr_t)base % 16)
        bad = "globalAddress is not 16-byte aligned";
    else if (oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && !is_float)
        bad = "NaN fill of an integer type";
    if (!bad)
        for (cuuint32_t i = 0; i < rank && !bad; i++) {
            if (dims[i] == 0 || dims[i] > (1ull << 32))
                bad = "globalDim is not 1..2^32";
            else if (box[i] == 0 || box[i] > 256)
                bad = "boxDim is not 1..256";
            else if (estr[i] != 1)
                bad = "elementStrides other than 1 are not modelled";
            else if (i + 1 < rank && (strides[i] % 16 || strides[i] >= (1ull << 40)))
                bad = "globalStrides is not a multiple of 16 under 2^40";
        }
    if (!bad && ((size_t)box[0] * esize) % 16)
        bad = "boxDim[0] * element size is not a multiple of 16 bytes";
    if (!bad && swz_bytes && (size_t)box[0] * esize > (size_t)swz_bytes)
        bad = "boxDim[0] * element size exceeds the swizzle span";
    if (!bad && swz_bytes && (size_t)box[0] * esize != (size_t)swz_bytes)
        bad = "a swizzled box narrower than its span is not modelled";
    if (bad) {
        warn("cuTensorMapEncodeTiled: %s", bad);
        return CUDA_ERROR_INVALID_VALUE;
    }
    tmap t;
    memset(&t, 0, sizeof t);
    t.magic = TMAP_MAGIC;
    t.rank = (uint8_t)rank;
    t.esize = (uint8_t)esize;
    t.swizzle_bytes = (uint8_t)swz_bytes;
    t.nan_fill = oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
    t.base = (const unsigned char *)base;
    for (cuuint32_t i = 0; i < rank; i++) {
        t.dim[i] = dims[i];
        t.stride[i] = i == 0 ? (uint64_t)esize : strides[i - 1];
        t.box[i] = (uint16_t)box[i];
    }
    memset(map, 0, sizeof *map);
    memcpy(map, &t, sizeof t);
    return CUDA_SUCCESS;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char *sym, void **fn, unsigned int version,
                                             unsigned long long flags,
                                             cudaDriverEntryPointQueryResult *status)
{
    (void)version, (void)flags;
    *fn = strcmp(sym, "cuTensorMapEncodeTiled") == 0 ? (void *)emu_encode_tiled : NULL;
    if (status)
        *status = *fn ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}

// a fresh context: every allocation and attribute gone, the sticky fault cleared
cudaError_t cudaDeviceReset(void)
{
    std::lock_guard<std::mutex> l(mu);
    for (auto &a : allocs)
        free((void *)a.first);
    allocs.clear();
    in_use = 0;
    max_dyn_smem.clear();
    sticky = cudaSuccess;
    last_error = cudaSuccess;
    fault[0] = 0;
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
