// The CUDA backend: device selection, memory with out-of-memory messages that say
// what was being allocated and how much was free, and the op table wiring every
// kernel launcher. Activations and weights are bf16; every launch goes on one
// stream, so ops run in the order they are called and be->sync waits for all.
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.cuh"
#include "embed.cuh"
#include "infer.cuh"
#include "matmul.cuh"
#include "norm.cuh"
#include "optim.cuh"
#include "pointwise.cuh"
#include "rope.cuh"
#include "sample.cuh"
#include "xent.cuh"

namespace {

typedef __nv_bfloat16 bf16;

// cuBLASLt asks for 32 MiB on Hopper; the GEMM kernels use it for split reductions too.
const size_t workspace_bytes = 32u << 20;

gllm_cuda_ctx *ctx_of(gllm_backend *be) { return gllm_cuda(be); }

gllm_status be_alloc(gllm_backend *be, size_t bytes, const char *what, void **out)
{
    *out = NULL;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e == cudaSuccess) {
        // in use = total - free: the context, cuBLAS and other processes count too,
        // as nvidia-smi shows them
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
            gllm_cuda_ctx *c = ctx_of(be);
            if (total_b - free_b > c->mem_peak)
                c->mem_peak = total_b - free_b;
        } else {
            cudaGetLastError();
        }
        return GLLM_OK;
    }
    cudaGetLastError();
    *out = NULL;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return gllm_fail(e == cudaErrorMemoryAllocation ? GLLM_ERR_OOM : GLLM_ERR_BACKEND,
                     "cuda: allocating %s: %zu bytes (%.1f MiB): %s; %.1f MiB free of %.1f MiB "
                     "on device %d",
                     what ? what : "(unnamed buffer)", bytes, bytes / 1048576.0,
                     cudaGetErrorString(e), free_b / 1048576.0, total_b / 1048576.0,
                     ctx_of(be)->device);
}

void be_free(gllm_backend *be, void *p)
{
    (void)be;
    // Nothing to report to: a failing free means an earlier fault, which the next
    // synchronising call reports. Clear it so it is not blamed on an unrelated call.
    if (p && cudaFree(p) != cudaSuccess)
        cudaGetLastError();
}

gllm_status be_upload(gllm_backend *be, void *dst, const void *host, size_t bytes)
{
    gllm_cuda_ctx *c = ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, c->stream));
    // The host buffer may be reused as soon as we return.
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return GLLM_OK;
}

gllm_status be_download(gllm_backend *be, void *host, const void *src, size_t bytes)
{
    gllm_cuda_ctx *c = ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return GLLM_OK;
}

gllm_status be_copy(gllm_backend *be, void *dst, const void *src, size_t bytes)
{
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
    return GLLM_OK;
}

gllm_status be_memset0(gllm_backend *be, void *p, size_t bytes)
{
    CUDA_TRY(cudaMemsetAsync(p, 0, bytes, ctx_of(be)->stream));
    return GLLM_OK;
}

gllm_status be_sync(gllm_backend *be)
{
    CUDA_TRY(cudaStreamSynchronize(ctx_of(be)->stream));
    return GLLM_OK;
}

gllm_status be_upload_f32(gllm_backend *be, void *dst, const float *host, size_t n)
{
    uint16_t *tmp = (uint16_t *)gllm_malloc(n * sizeof(uint16_t), "upload_f32 staging");
    if (!tmp)
        return GLLM_ERR_OOM;
    gllm_from_f32(tmp, GLLM_BF16, host, n);
    gllm_status st = be_upload(be, dst, tmp, n * sizeof(uint16_t));
    free(tmp);
    return st;
}

gllm_status be_download_f32(gllm_backend *be, float *host, const void *src, size_t n)
{
    uint16_t *tmp = (uint16_t *)gllm_malloc(n * sizeof(uint16_t), "download_f32 staging");
    if (!tmp)
        return GLLM_ERR_OOM;
    gllm_status st = be_download(be, tmp, src, n * sizeof(uint16_t));
    if (st == GLLM_OK)
        gllm_to_f32(host, tmp, GLLM_BF16, n);
    free(tmp);
    return st;
}

gllm_status be_matmul(gllm_backend *be, void *C, const void *A, const void *B,
                      const gllm_matmul_args *a)
{
    return gllm_cuda_matmul(ctx_of(be), C, A, B, a);
}

gllm_status be_bias_bwd(gllm_backend *be, float *dbias, const void *dout, int M, int N)
{
    return gllm_cuda_bias_bwd(ctx_of(be), dbias, (const bf16 *)dout, M, N);
}

gllm_status be_embed_fwd(gllm_backend *be, void *out, const int32_t *ids, const int32_t *pos,
                         const void *wte, const void *wpe, int N, int C)
{
    return gllm_cuda_embed_fwd(ctx_of(be), (bf16 *)out, ids, pos, (const bf16 *)wte,
                               (const bf16 *)wpe, N, C);
}

gllm_status be_embed_bwd(gllm_backend *be, float *dwte, float *dwpe, const void *dout,
                         const int32_t *ids, const int32_t *pos, int N, int C, int V)
{
    return gllm_cuda_embed_bwd(ctx_of(be), dwte, dwpe, (const bf16 *)dout, ids, pos, N, C, V);
}

gllm_status be_layernorm_fwd(gllm_backend *be, void *out, float *mean, float *rstd,
                             const void *inp, const void *w, const void *b, int N, int C,
                             float eps)
{
    return gllm_cuda_layernorm_fwd(ctx_of(be), (bf16 *)out, mean, rstd, (const bf16 *)inp,
                                   (const bf16 *)w, (const bf16 *)b, N, C, eps);
}

gllm_status be_layernorm_bwd(gllm_backend *be, void *dinp, float *dw, float *db,
                             const void *dout, const void *inp, const void *w,
                             const float *mean, const float *rstd, int N, int C)
{
    return gllm_cuda_layernorm_bwd(ctx_of(be), (bf16 *)dinp, dw, db, (const bf16 *)dout,
                                   (const bf16 *)inp, (const bf16 *)w, mean, rstd, N, C);
}

gllm_status be_rmsnorm_fwd(gllm_backend *be, void *out, float *rstd, const void *inp,
                           const void *w, int N, int C, float eps)
{
    return gllm_cuda_rmsnorm_fwd(ctx_of(be), (bf16 *)out, rstd, (const bf16 *)inp,
                                 (const bf16 *)w, N, C, eps);
}

gllm_status be_rmsnorm_bwd(gllm_backend *be, void *dinp, float *dw, const void *dout,
                           const void *inp, const void *w, const float *rstd, int N, int C)
{
    return gllm_cuda_rmsnorm_bwd(ctx_of(be), (bf16 *)dinp, dw, (const bf16 *)dout,
                                 (const bf16 *)inp, (const bf16 *)w, rstd, N, C);
}

gllm_status be_rope_fwd(gllm_backend *be, void *x, const int32_t *pos, const gllm_rope_args *a)
{
    return gllm_cuda_rope_fwd(ctx_of(be), (bf16 *)x, pos, a);
}

gllm_status be_rope_bwd(gllm_backend *be, void *dx, const int32_t *pos, const gllm_rope_args *a)
{
    return gllm_cuda_rope_bwd(ctx_of(be), (bf16 *)dx, pos, a);
}

gllm_status be_attention_fwd(gllm_backend *be, void *out, float *lse, const void *qkv,
                             const int32_t *pos, const gllm_attn_shape *s)
{
    return gllm_cuda_attention_fwd(ctx_of(be), (bf16 *)out, lse, (const bf16 *)qkv, pos, s);
}

gllm_status be_attention_bwd(gllm_backend *be, void *dqkv, const void *dout, const void *qkv,
                             const void *out, const float *lse, const int32_t *pos,
                             const gllm_attn_shape *s)
{
    return gllm_cuda_attention_bwd(ctx_of(be), (bf16 *)dqkv, (const bf16 *)dout,
                                   (const bf16 *)qkv, (const bf16 *)out, lse, pos, s);
}

gllm_status be_kv_store(gllm_backend *be, gllm_kv_cache *kv, const void *qkv,
                        const int32_t *slot, int n_tokens, int Hq)
{
    return gllm_cuda_kv_store(ctx_of(be), kv, (const bf16 *)qkv, slot, n_tokens, Hq);
}

gllm_status be_attention_decode(gllm_backend *be, void *out, const void *qkv,
                                const gllm_kv_cache *kv, const int32_t *block_table,
                                int max_blocks, const int32_t *seq_len, int n_seq, int Hq,
                                int window, float scale)
{
    return gllm_cuda_attention_decode(ctx_of(be), (bf16 *)out, (const bf16 *)qkv, kv,
                                      block_table, max_blocks, seq_len, n_seq, Hq, window,
                                      scale);
}

gllm_status be_gelu_fwd(gllm_backend *be, void *out, const void *inp, size_t n)
{
    return gllm_cuda_gelu_fwd(ctx_of(be), (bf16 *)out, (const bf16 *)inp, n);
}

gllm_status be_gelu_bwd(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                        size_t n)
{
    return gllm_cuda_gelu_bwd(ctx_of(be), (bf16 *)dinp, (const bf16 *)inp, (const bf16 *)dout,
                              n);
}

gllm_status be_swiglu_fwd(gllm_backend *be, void *out, const void *inp, int N, int I)
{
    return gllm_cuda_swiglu_fwd(ctx_of(be), (bf16 *)out, (const bf16 *)inp, N, I);
}

gllm_status be_swiglu_bwd(gllm_backend *be, void *dinp, const void *inp, const void *dout,
                          int N, int I)
{
    return gllm_cuda_swiglu_bwd(ctx_of(be), (bf16 *)dinp, (const bf16 *)inp,
                                (const bf16 *)dout, N, I);
}

gllm_status be_add(gllm_backend *be, void *out, const void *a, const void *b, size_t n)
{
    return gllm_cuda_add(ctx_of(be), (bf16 *)out, (const bf16 *)a, (const bf16 *)b, n);
}

gllm_status be_xent_fwd_bwd(gllm_backend *be, float *loss, void *logits, const int32_t *targets,
                            const float *loss_mask, int N, int V, float dlogits_scale)
{
    return gllm_cuda_xent_fwd_bwd(ctx_of(be), loss, (bf16 *)logits, targets, loss_mask, N, V,
                                  dlogits_scale);
}

gllm_status be_attention_paged(gllm_backend *be, void *out, const void *qkv,
                               const gllm_kv_cache *kv, const gllm_paged_attn_args *a)
{
    return gllm_cuda_attention_paged(ctx_of(be), (bf16 *)out, (const bf16 *)qkv, kv, a);
}

gllm_status be_sample_rows(gllm_backend *be, int32_t *out_ids, float *out_logprob,
                           int32_t *top_ids, float *top_lp, int max_top, const void *logits,
                           int N, int V, const gllm_sample_params *params,
                           const int32_t *pen_ids, const int32_t *pen_off)
{
    return gllm_cuda_sample_rows(ctx_of(be), out_ids, out_logprob, top_ids, top_lp, max_top,
                                 (const bf16 *)logits, N, V, params, pen_ids, pen_off);
}

gllm_status be_sample(gllm_backend *be, int32_t *out_ids, const void *logits, int N, int V,
                      const gllm_sample_args *a, const uint64_t *seeds)
{
    return gllm_cuda_sample(ctx_of(be), out_ids, (const bf16 *)logits, N, V, a, seeds);
}

gllm_status be_sumsq(gllm_backend *be, float *out, const float *x, size_t n)
{
    return gllm_cuda_sumsq(ctx_of(be), out, x, n);
}

gllm_status be_adamw(gllm_backend *be, void *params, float *master, const float *grads,
                     float *m, float *v, const gllm_param_segment *segs, int n_segs,
                     const gllm_adamw_args *a)
{
    return gllm_cuda_adamw(ctx_of(be), (bf16 *)params, master, grads, m, v, segs, n_segs, a);
}

void release(gllm_cuda_ctx *c)
{
    if (!c)
        return;
    // Teardown: errors here have no caller left to report to, and would only repeat
    // a fault already reported by an op.
    if (c->cublaslt)
        cublasLtDestroy((cublasLtHandle_t)c->cublaslt);
    if (c->workspace)
        cudaFree(c->workspace);
    if (c->scratch)
        cudaFree(c->scratch);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    if (c->comm_stream)
        cudaStreamDestroy(c->comm_stream);
    cudaGetLastError();
    free(c);
}

// Events are cudaEvent_t behind the opaque gllm_event pointer.
cudaStream_t queue_stream(gllm_backend *be, gllm_queue q)
{
    return q == GLLM_QUEUE_COMM ? ctx_of(be)->comm_stream : ctx_of(be)->stream;
}

gllm_status check_queue(gllm_queue q)
{
    if (q != GLLM_QUEUE_COMPUTE && q != GLLM_QUEUE_COMM)
        return gllm_fail(GLLM_ERR_INVALID, "cuda backend: no queue %d (compute 0, comm 1)", (int)q);
    return GLLM_OK;
}

gllm_status be_event_create(gllm_backend *be, gllm_event **out)
{
    (void)be;
    cudaEvent_t e;
    *out = NULL;
    CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *out = (gllm_event *)e;
    return GLLM_OK;
}

void be_event_destroy(gllm_backend *be, gllm_event *e)
{
    (void)be;
    if (e && cudaEventDestroy((cudaEvent_t)e) != cudaSuccess)
        cudaGetLastError();
}

gllm_status be_event_record(gllm_backend *be, gllm_event *e, gllm_queue q)
{
    GLLM_TRY(check_queue(q));
    CUDA_TRY(cudaEventRecord((cudaEvent_t)e, queue_stream(be, q)));
    return GLLM_OK;
}

gllm_status be_queue_wait(gllm_backend *be, gllm_queue q, gllm_event *e)
{
    GLLM_TRY(check_queue(q));
    CUDA_TRY(cudaStreamWaitEvent(queue_stream(be, q), (cudaEvent_t)e, 0));
    return GLLM_OK;
}

gllm_status be_event_query(gllm_backend *be, gllm_event *e, bool *done)
{
    (void)be;
    cudaError_t r = cudaEventQuery((cudaEvent_t)e);
    *done = r == cudaSuccess;
    if (r == cudaSuccess || r == cudaErrorNotReady) {
        if (r == cudaErrorNotReady)
            cudaGetLastError();
        return GLLM_OK;
    }
    CUDA_TRY(r);
    return GLLM_OK;
}

void *be_queue_handle(gllm_backend *be, gllm_queue q)
{
    if (q != GLLM_QUEUE_COMPUTE && q != GLLM_QUEUE_COMM)
        return NULL;
    return (void *)queue_stream(be, q);
}

gllm_status be_device_info(gllm_backend *be, gllm_device_info *out)
{
    gllm_cuda_ctx *c = ctx_of(be);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%.127s", c->name);
    out->index = c->device;
    out->mem_total = c->mem_total;
    out->mem_peak = c->mem_peak;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        out->mem_free = free_b;
    else
        cudaGetLastError();
    return GLLM_OK;
}

void be_destroy(gllm_backend *be)
{
    if (!be)
        return;
    release(ctx_of(be));
    free(be);
}

gllm_status init_ctx(gllm_cuda_ctx *c, int device)
{
    c->device = device;
    CUDA_TRY(cudaSetDevice(device));
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    c->sm_major = prop.major;
    c->sm_minor = prop.minor;
    c->n_sms = prop.multiProcessorCount;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    if (c->sm_major < 8)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "backend 'cuda': device %d (%s) is sm_%d%d; gllm's kernels need sm_80 "
                         "or newer (bf16 tensor cores)",
                         device, prop.name, c->sm_major, c->sm_minor);
    const char *mm = getenv("GLLM_CUDA_MATMUL");
    c->use_cublaslt = mm && strcmp(mm, "cublaslt") == 0;
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    // collectives get the higher priority: a bucket's all-reduce should not queue
    // behind the rest of backward
    int lo_prio = 0, hi_prio = 0;
    CUDA_TRY(cudaDeviceGetStreamPriorityRange(&lo_prio, &hi_prio));
    CUDA_TRY(cudaStreamCreateWithPriority(&c->comm_stream, cudaStreamNonBlocking, hi_prio));
    snprintf(c->name, sizeof c->name, "%.127s", prop.name);
    c->mem_total = prop.totalGlobalMem;
    cudaError_t e = cudaMalloc(&c->workspace, workspace_bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        c->workspace = NULL;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return gllm_fail(GLLM_ERR_OOM,
                         "cuda: allocating the matmul workspace: %zu bytes: %s; %.1f MiB free "
                         "of %.1f MiB on device %d",
                         workspace_bytes, cudaGetErrorString(e), free_b / 1048576.0,
                         total_b / 1048576.0, device);
    }
    c->workspace_bytes = workspace_bytes;
    // Hopper (9.0) runs the wgmma/TMA path when the binary has its sm_90a code;
    // what was compiled is asked of the device, not assumed from its capability.
    GLLM_TRY(gllm_mm_wgmma_built(c, (int *)c->workspace, &c->wgmma_built));
    c->hopper = c->sm_major == 9 && c->sm_minor == 0 && c->wgmma_built;
    return GLLM_OK;
}

} // namespace

gllm_status gllm_backend_cuda_create(int device, gllm_backend **out)
{
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "backend 'cuda': no CUDA GPU present (%s)",
                         e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= count)
        return gllm_fail(GLLM_ERR_INVALID, "backend 'cuda:%d': only %d CUDA device(s) present",
                         device, count);
    gllm_cuda_ctx *c = (gllm_cuda_ctx *)gllm_calloc(1, sizeof *c, "cuda backend context");
    if (!c)
        return GLLM_ERR_OOM;
    gllm_status st = init_ctx(c, device);
    if (st != GLLM_OK) {
        release(c);
        return st;
    }
    gllm_backend *be = (gllm_backend *)gllm_calloc(1, sizeof *be, "cuda backend");
    if (!be) {
        release(c);
        return GLLM_ERR_OOM;
    }
    be->name = "cuda";
    be->act_dtype = GLLM_BF16;
    be->ctx = c;
    be->alloc = be_alloc;
    be->free = be_free;
    be->upload = be_upload;
    be->download = be_download;
    be->copy = be_copy;
    be->memset0 = be_memset0;
    be->sync = be_sync;
    be->upload_f32 = be_upload_f32;
    be->download_f32 = be_download_f32;
    be->matmul = be_matmul;
    be->bias_bwd = be_bias_bwd;
    be->embed_fwd = be_embed_fwd;
    be->embed_bwd = be_embed_bwd;
    be->layernorm_fwd = be_layernorm_fwd;
    be->layernorm_bwd = be_layernorm_bwd;
    be->rmsnorm_fwd = be_rmsnorm_fwd;
    be->rmsnorm_bwd = be_rmsnorm_bwd;
    be->rope_fwd = be_rope_fwd;
    be->rope_bwd = be_rope_bwd;
    be->attention_fwd = be_attention_fwd;
    be->attention_bwd = be_attention_bwd;
    be->kv_store = be_kv_store;
    be->attention_decode = be_attention_decode;
    be->gelu_fwd = be_gelu_fwd;
    be->gelu_bwd = be_gelu_bwd;
    be->swiglu_fwd = be_swiglu_fwd;
    be->swiglu_bwd = be_swiglu_bwd;
    be->add = be_add;
    be->xent_fwd_bwd = be_xent_fwd_bwd;
    be->sample = be_sample;
    be->attention_paged = be_attention_paged;
    be->sample_rows = be_sample_rows;
    be->sumsq = be_sumsq;
    be->adamw = be_adamw;
    be->event_create = be_event_create;
    be->event_destroy = be_event_destroy;
    be->event_record = be_event_record;
    be->queue_wait = be_queue_wait;
    be->event_query = be_event_query;
    be->queue_handle = be_queue_handle;
    be->device_info = be_device_info;
    be->destroy = be_destroy;
    *out = be;
    return GLLM_OK;
}
