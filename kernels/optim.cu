// Optimizer kernels. AdamW is memory-bound: per element it reads grad, m, v and the
// fp32 master (16 bytes) and writes m, v, master and the bf16 param (14 bytes), so
// it is written for bandwidth: 16-byte loads where a chunk is 4-aligned, one launch
// for all parameter tensors so small tensors do not each pay a launch.
#include "optim.cuh"

namespace {

const int sumsq_threads = 256, sumsq_max_blocks = 1024;

__global__ void sumsq_partial_kernel(float *partial, const float *x, size_t n)
{
    __shared__ float red[32];
    float s = 0.0f;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        s += x[i] * x[i];
    s = gllm_block_sum(s, red);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

__global__ void sumsq_final_kernel(float *out, const float *partial, int blocks)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double s = 0.0;
        for (int b = 0; b < blocks; b++)
            s += partial[b];
        *out = (float)s;
    }
}

// A segment as the kernel sees it: first_chunk is the prefix sum of chunk counts,
// so block b finds its segment by binary search.
struct adamw_seg {
    size_t offset, n;
    float weight_decay;
    long long first_chunk;
};

const int adamw_threads = 256, adamw_chunk = adamw_threads * 16;

struct adamw_consts {
    float lr, beta1, beta2, eps, grad_scale, step_size, rsqrt_bc2;
};

__device__ inline void adamw_one(float &w, float &m, float &v, float g, float decay,
                                 const adamw_consts &k)
{
    g *= k.grad_scale;
    m = k.beta1 * m + (1.0f - k.beta1) * g;
    v = k.beta2 * v + (1.0f - k.beta2) * g * g;
    w = w * decay - k.step_size * m / (sqrtf(v) * k.rsqrt_bc2 + k.eps);
}

__global__ void adamw_kernel(__nv_bfloat16 *params, float *master, const float *grads,
                             float *m, float *v, const adamw_seg *segs, int n_segs,
                             long long total_chunks, adamw_consts k)
{
    for (long long chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
        int lo = 0, hi = n_segs - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (segs[mid].first_chunk <= chunk)
                lo = mid;
            else
                hi = mid - 1;
        }
        adamw_seg sg = segs[lo];
        size_t begin = sg.offset + (size_t)(chunk - sg.first_chunk) * adamw_chunk;
        size_t end = min(begin + (size_t)adamw_chunk, sg.offset + sg.n);
        float decay = 1.0f - k.lr * sg.weight_decay;
        size_t i = begin;
        // 16-byte accesses need the addresses aligned, not just the index: callers may
        // pass buffers that start inside an allocation (a ZeRO-1 slice)
        const bool vec = ((uintptr_t)(grads + begin) | (uintptr_t)(m + begin) |
                          (uintptr_t)(v + begin) | (uintptr_t)(master + begin)) % 16 == 0 &&
                         (uintptr_t)(params + begin) % 8 == 0;
        if (vec) {
            size_t quads = (end - begin) / 4;
            for (size_t q = threadIdx.x; q < quads; q += blockDim.x) {
                size_t e = begin + q * 4;
                float4 g4 = *(const float4 *)(grads + e), m4 = *(const float4 *)(m + e);
                float4 v4 = *(const float4 *)(v + e), w4 = *(const float4 *)(master + e);
                adamw_one(w4.x, m4.x, v4.x, g4.x, decay, k);
                adamw_one(w4.y, m4.y, v4.y, g4.y, decay, k);
                adamw_one(w4.z, m4.z, v4.z, g4.z, decay, k);
                adamw_one(w4.w, m4.w, v4.w, g4.w, decay, k);
                *(float4 *)(m + e) = m4;
                *(float4 *)(v + e) = v4;
                *(float4 *)(master + e) = w4;
                __nv_bfloat162 p[2] = {__floats2bfloat162_rn(w4.x, w4.y),
                                       __floats2bfloat162_rn(w4.z, w4.w)};
                *(uint2 *)(params + e) = *(const uint2 *)p;
            }
            i = begin + quads * 4;
        }
        for (size_t e = i + threadIdx.x; e < end; e += blockDim.x) {
            float w = master[e], mm = m[e], vv = v[e];
            adamw_one(w, mm, vv, grads[e], decay, k);
            m[e] = mm;
            v[e] = vv;
            master[e] = w;
            params[e] = gllm_bf(w);
        }
    }
}

} // namespace

gllm_status gllm_cuda_sumsq(gllm_cuda_ctx *c, float *out, const float *x, size_t n)
{
    // The block count depends on n only, so the summation order is fixed for a given n.
    size_t want = (n + sumsq_threads * 8 - 1) / (sumsq_threads * 8);
    int blocks = (int)(want < 1 ? 1 : want > sumsq_max_blocks ? sumsq_max_blocks : want);
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, (size_t)blocks * sizeof(float), "sumsq", &scratch));
    sumsq_partial_kernel<<<blocks, sumsq_threads, 0, c->stream>>>((float *)scratch, x, n);
    CUDA_LAUNCH_CHECK("sumsq_partial_kernel");
    sumsq_final_kernel<<<1, 32, 0, c->stream>>>(out, (const float *)scratch, blocks);
    CUDA_LAUNCH_CHECK("sumsq_final_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_adamw(gllm_cuda_ctx *c, __nv_bfloat16 *params, float *master,
                            const float *grads, float *m, float *v,
                            const gllm_param_segment *segs, int n_segs,
                            const gllm_adamw_args *a)
{
    if (!master)
        return gllm_fail(GLLM_ERR_INVALID,
                         "cuda adamw: the fp32 master weights are required (params are bf16)");
    if (a->step < 1)
        return gllm_fail(GLLM_ERR_INVALID, "cuda adamw: step %d must be >= 1", a->step);
    if (n_segs <= 0)
        return GLLM_OK;
    adamw_seg *table = (adamw_seg *)gllm_malloc(sizeof(adamw_seg) * n_segs, "adamw segments");
    if (!table)
        return GLLM_ERR_OOM;
    long long chunks = 0;
    int used = 0;
    for (int i = 0; i < n_segs; i++) {
        if (segs[i].n == 0)
            continue;
        table[used].offset = segs[i].offset;
        table[used].n = segs[i].n;
        table[used].weight_decay = segs[i].weight_decay;
        table[used].first_chunk = chunks;
        chunks += (long long)((segs[i].n + adamw_chunk - 1) / adamw_chunk);
        used++;
    }
    if (used == 0) {
        free(table);
        return GLLM_OK;
    }
    void *scratch;
    gllm_status st = gllm_cuda_scratch(c, sizeof(adamw_seg) * used, "adamw", &scratch);
    if (st != GLLM_OK) {
        free(table);
        return st;
    }
    // Pageable source: the copy is staged before this call returns, so freeing the
    // host table right after is safe, and stream order keeps it ahead of the kernel.
    cudaError_t e = cudaMemcpyAsync(scratch, table, sizeof(adamw_seg) * used,
                                    cudaMemcpyHostToDevice, c->stream);
    free(table);
    if (e != cudaSuccess)
        return gllm_cuda_fail(e, "adamw segment table upload", __FILE__, __LINE__);
    adamw_consts k;
    k.lr = a->lr;
    k.beta1 = a->beta1;
    k.beta2 = a->beta2;
    k.eps = a->eps;
    k.grad_scale = a->grad_scale;
    double bc1 = 1.0 - pow((double)a->beta1, a->step), bc2 = 1.0 - pow((double)a->beta2, a->step);
    k.step_size = (float)(a->lr / bc1);
    k.rsqrt_bc2 = (float)(1.0 / sqrt(bc2));
    long long cap = (long long)c->n_sms * 16;
    unsigned blocks = (unsigned)(chunks < cap ? chunks : cap);
    adamw_kernel<<<blocks, adamw_threads, 0, c->stream>>>(params, master, grads, m, v,
                                                          (const adamw_seg *)scratch, used,
                                                          chunks, k);
    CUDA_LAUNCH_CHECK("adamw_kernel");
    return GLLM_OK;
}
