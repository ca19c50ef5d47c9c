/* The CPU reference backend: the op table, host memory and per-thread scratch. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "gllm/backend_cpu.h"

#ifdef GLLM_HAVE_BLAS
#include <cblas.h>
#endif

#define CPU_ALIGN 64

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static gllm_status cpu_alloc(gllm_backend *be, size_t bytes, const char *what, void **out)
{
    *out = aligned_alloc(CPU_ALIGN, round_up(bytes ? bytes : 1, CPU_ALIGN));
    if (!*out)
        return gllm_fail(GLLM_ERR_OOM, "cpu backend: out of memory allocating %zu bytes for %s",
                         bytes, what ? what : "a buffer");
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    c->mem_live += malloc_usable_size(*out);
    if (c->mem_live > c->mem_peak)
        c->mem_peak = c->mem_live;
    return GLLM_OK;
}

static void cpu_free(gllm_backend *be, void *p)
{
    if (p)
        gllm_cpu_ctx_of(be)->mem_live -= malloc_usable_size(p);
    free(p);
}

static gllm_status cpu_copy(gllm_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memmove(dst, src, bytes);
    return GLLM_OK;
}

static gllm_status cpu_memset0(gllm_backend *be, void *p, size_t bytes)
{
    (void)be;
    if (bytes)
        memset(p, 0, bytes);
    return GLLM_OK;
}

static gllm_status cpu_sync(gllm_backend *be)
{
    (void)be;
    return GLLM_OK;
}

/* act_dtype is F32 here, so the f32 transfers are plain copies. */
static gllm_status cpu_upload_f32(gllm_backend *be, void *dst, const float *host, size_t n)
{
    return cpu_copy(be, dst, host, n * sizeof(float));
}

static gllm_status cpu_download_f32(gllm_backend *be, float *host, const void *src, size_t n)
{
    return cpu_copy(be, host, src, n * sizeof(float));
}

unsigned char *gllm_cpu_scratch(gllm_backend *be, size_t bytes_per_thread, const char *op)
{
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    size_t stride = round_up(bytes_per_thread ? bytes_per_thread : 1, CPU_ALIGN);
    if (stride <= c->scratch_stride) /* the existing layout already fits */
        return c->scratch;
    size_t total = stride * (size_t)c->n_threads;
    unsigned char *p = aligned_alloc(CPU_ALIGN, total);
    if (!p) {
        gllm_fail(GLLM_ERR_OOM, "cpu backend: %s: out of memory for %zu bytes of scratch", op,
                  total);
        return NULL;
    }
    free(c->scratch);
    c->scratch = p;
    c->scratch_bytes = total;
    c->scratch_stride = stride;
    return p;
}

static void cpu_destroy(gllm_backend *be)
{
    if (!be)
        return;
    gllm_cpu_ctx *c = gllm_cpu_ctx_of(be);
    if (c) {
        gllm_cpu_pool_free(c->pool);
        free(c->scratch);
        free(c->gemm_a);
        free(c->rope_tab);
        free(c->rope_inv);
    }
    free(c);
    free(be);
}

bool gllm_backend_cpu_has_blas(void)
{
#ifdef GLLM_HAVE_BLAS
    return true;
#else
    return false;
#endif
}

gllm_status gllm_backend_cpu_set_blas(gllm_backend *be, bool on)
{
    if (!be || be->destroy != cpu_destroy)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_backend_cpu_set_blas: not a CPU backend");
    if (on && !gllm_backend_cpu_has_blas())
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "cpu backend: this gllm was built without OpenBLAS (install "
                         "libopenblas-dev and configure with -DGLLM_BLAS=ON)");
    gllm_cpu_ctx_of(be)->use_blas = on;
    return GLLM_OK;
}

gllm_status gllm_backend_cpu_create(int n_threads, gllm_backend **out)
{
    *out = NULL;
    gllm_backend *be = gllm_calloc(1, sizeof *be, "cpu backend");
    gllm_cpu_ctx *c = gllm_calloc(1, sizeof *c, "cpu backend context");
    if (!be || !c) {
        free(be);
        free(c);
        return GLLM_ERR_OOM;
    }
    c->n_threads = n_threads > 0 ? n_threads : gllm_cpu_default_threads();
    c->use_blas = gllm_backend_cpu_has_blas();
#ifdef GLLM_HAVE_BLAS
    /* sgemm runs single-threaded inside the pool. OpenBLAS's OpenMP build
     * follows the calling thread's OpenMP thread count, which the pool sets
     * per thread (cpu_pool.c); its pthreads build has one process-wide count,
     * set to 1 here: the one process-wide effect of creating a CPU backend,
     * and only with that build. */
    if (openblas_get_parallel() == 1)
        openblas_set_num_threads(1);
#endif
    gllm_status st = gllm_cpu_pool_create(c->n_threads, &c->pool);
    if (st != GLLM_OK) {
        free(be);
        free(c);
        return st;
    }
    be->name = "cpu";
    be->act_dtype = GLLM_F32;
    be->ctx = c;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->copy = cpu_copy;
    be->memset0 = cpu_memset0;
    be->sync = cpu_sync;
    be->upload_f32 = cpu_upload_f32;
    be->download_f32 = cpu_download_f32;
    be->matmul = gllm_cpu_matmul;
    be->bias_bwd = gllm_cpu_bias_bwd;
    be->embed_fwd = gllm_cpu_embed_fwd;
    be->embed_bwd = gllm_cpu_embed_bwd;
    be->layernorm_fwd = gllm_cpu_layernorm_fwd;
    be->layernorm_bwd = gllm_cpu_layernorm_bwd;
    be->rmsnorm_fwd = gllm_cpu_rmsnorm_fwd;
    be->rmsnorm_bwd = gllm_cpu_rmsnorm_bwd;
    be->rope_fwd = gllm_cpu_rope_fwd;
    be->rope_bwd = gllm_cpu_rope_bwd;
    be->attention_fwd = gllm_cpu_attention_fwd;
    be->attention_bwd = gllm_cpu_attention_bwd;
    be->kv_store = gllm_cpu_kv_store;
    be->attention_decode = gllm_cpu_attention_decode;
    be->gelu_fwd = gllm_cpu_gelu_fwd;
    be->gelu_bwd = gllm_cpu_gelu_bwd;
    be->swiglu_fwd = gllm_cpu_swiglu_fwd;
    be->swiglu_bwd = gllm_cpu_swiglu_bwd;
    be->add = gllm_cpu_add;
    be->xent_fwd_bwd = gllm_cpu_xent_fwd_bwd;
    be->sample = gllm_cpu_sample;
    be->attention_paged = gllm_cpu_attention_paged;
    be->sample_rows = gllm_cpu_sample_rows;
    be->packed_b_bytes = gllm_cpu_packed_b_bytes;
    be->pack_b = gllm_cpu_pack_b;
    be->sumsq = gllm_cpu_sumsq;
    be->adamw = gllm_cpu_adamw;
    gllm_cpu_queue_ops(be);
    be->destroy = cpu_destroy;
    *out = be;
    return GLLM_OK;
}
