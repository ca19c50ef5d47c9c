// Norm kernels: one block per row forward; backward in two stages so the weight
// gradients are reduced over rows in a fixed order (no atomics): stage 1 gives each
// block a fixed range of rows and writes that range's partial dw (and db) to
// scratch, stage 2 sums the partials per column in block order.
#include "norm.cuh"

namespace {

const int norm_threads = 256;

// The row in fp32 is staged in shared memory (C floats), so each input byte is read once.
__global__ void layernorm_fwd_kernel(__nv_bfloat16 *out, float *mean_out, float *rstd_out,
                                     const __nv_bfloat16 *inp, const __nv_bfloat16 *w,
                                     const __nv_bfloat16 *b, int C, float eps)
{
    extern __shared__ float xs[];
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const __nv_bfloat16 *x = inp + row * C;
    float s = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float v = gllm_ld(x + i);
        xs[i] = v;
        s += v;
    }
    float mean = gllm_block_sum(s, red) / C;
    float q = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float d = xs[i] - mean;
        q += d * d;
    }
    float rstd = rsqrtf(gllm_block_sum(q, red) / C + eps);
    __nv_bfloat16 *y = out + row * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float v = (xs[i] - mean) * rstd * gllm_ld(w + i);
        y[i] = gllm_bf(b ? v + gllm_ld(b + i) : v);
    }
    if (threadIdx.x == 0) {
        if (mean_out)
            mean_out[row] = mean;
        if (rstd_out)
            rstd_out[row] = rstd;
    }
}

__global__ void rmsnorm_fwd_kernel(__nv_bfloat16 *out, float *rstd_out,
                                   const __nv_bfloat16 *inp, const __nv_bfloat16 *w, int C,
                                   float eps)
{
    extern __shared__ float xs[];
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const __nv_bfloat16 *x = inp + row * C;
    float q = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float v = gllm_ld(x + i);
        xs[i] = v;
        q += v * v;
    }
    float rstd = rsqrtf(gllm_block_sum(q, red) / C + eps);
    __nv_bfloat16 *y = out + row * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        y[i] = gllm_bf(xs[i] * rstd * gllm_ld(w + i));
    if (threadIdx.x == 0 && rstd_out)
        rstd_out[row] = rstd;
}

// Stage 1 of both backward passes. mean == NULL selects RMSNorm (xhat = x * rstd).
// Shared memory: dw partial [C], then db partial [C] when has_db.
__global__ void norm_bwd_kernel(__nv_bfloat16 *dinp, float *partial, const __nv_bfloat16 *dout,
                                const __nv_bfloat16 *inp, const __nv_bfloat16 *w,
                                const float *mean, const float *rstd, int N, int C,
                                int rows_per_block, bool has_db)
{
    extern __shared__ float acc[];
    __shared__ float red[32];
    float *acc_w = acc, *acc_b = acc + C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        acc_w[i] = 0.0f;
        if (has_db)
            acc_b[i] = 0.0f;
    }
    int r0 = blockIdx.x * rows_per_block, r1 = min(N, r0 + rows_per_block);
    for (int r = r0; r < r1; r++) {
        const __nv_bfloat16 *g = dout + (size_t)r * C, *x = inp + (size_t)r * C;
        float mu = mean ? mean[r] : 0.0f, rs = rstd[r];
        float s1 = 0.0f, s2 = 0.0f; // sum(g*w), sum(g*w*xhat)
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            float gi = gllm_ld(g + i), xh = (gllm_ld(x + i) - mu) * rs;
            float gw = gi * gllm_ld(w + i);
            s1 += gw;
            s2 += gw * xh;
            // each thread owns the same columns for every row: no race on acc
            acc_w[i] += gi * xh;
            if (has_db)
                acc_b[i] += gi;
        }
        s2 = gllm_block_sum(s2, red) / C;
        s1 = mean ? gllm_block_sum(s1, red) / C : 0.0f;
        __nv_bfloat16 *dx = dinp + (size_t)r * C;
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            float gi = gllm_ld(g + i), xh = (gllm_ld(x + i) - mu) * rs;
            float d = rs * (gi * gllm_ld(w + i) - s1 - xh * s2);
            dx[i] = gllm_bf(gllm_ld(dx + i) + d);
        }
    }
    float *pw = partial + (size_t)blockIdx.x * C * (has_db ? 2 : 1);
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        pw[i] = acc_w[i];
        if (has_db)
            pw[C + i] = acc_b[i];
    }
}

__global__ void norm_bwd_final_kernel(float *dw, float *db, const float *partial, int blocks,
                                      int C)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C)
        return;
    size_t stride = (size_t)C * (db ? 2 : 1);
    float sw = 0.0f, sb = 0.0f;
    for (int k = 0; k < blocks; k++) {
        sw += partial[k * stride + i];
        if (db)
            sb += partial[k * stride + C + i];
    }
    dw[i] += sw;
    if (db)
        db[i] += sb;
}

gllm_status set_smem(const void *kernel, size_t bytes, gllm_cuda_ctx *c, const char *op, int C)
{
    if (bytes > c->smem_optin)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "cuda %s: C = %d needs %zu bytes of shared memory, the device allows %zu",
                         op, C, bytes, c->smem_optin);
    if (bytes > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)bytes));
    return GLLM_OK;
}

gllm_status norm_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, float *dw, float *db,
                     const __nv_bfloat16 *dout, const __nv_bfloat16 *inp,
                     const __nv_bfloat16 *w, const float *mean, const float *rstd, int N, int C,
                     const char *op)
{
    if (N <= 0 || C <= 0)
        return GLLM_OK;
    // A fixed split for a given (N, device): enough blocks to fill the GPU twice.
    int blocks = min(N, 2 * c->n_sms);
    int rows_per_block = gllm_cdiv(N, blocks);
    blocks = gllm_cdiv(N, rows_per_block);
    bool has_db = db != NULL;
    size_t per_block = (size_t)C * (has_db ? 2 : 1);
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, per_block * blocks * sizeof(float), op, &scratch));
    size_t smem = per_block * sizeof(float);
    GLLM_TRY(set_smem((const void *)norm_bwd_kernel, smem, c, op, C));
    norm_bwd_kernel<<<blocks, norm_threads, smem, c->stream>>>(
        dinp, (float *)scratch, dout, inp, w, mean, rstd, N, C, rows_per_block, has_db);
    CUDA_LAUNCH_CHECK("norm_bwd_kernel");
    norm_bwd_final_kernel<<<gllm_cdiv(C, 256), 256, 0, c->stream>>>(dw, db, (float *)scratch,
                                                                     blocks, C);
    CUDA_LAUNCH_CHECK("norm_bwd_final_kernel");
    return GLLM_OK;
}

} // namespace

gllm_status gllm_cuda_layernorm_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, float *mean,
                                    float *rstd, const __nv_bfloat16 *inp,
                                    const __nv_bfloat16 *w, const __nv_bfloat16 *b, int N, int C,
                                    float eps)
{
    if (N <= 0 || C <= 0)
        return GLLM_OK;
    size_t smem = (size_t)C * sizeof(float);
    GLLM_TRY(set_smem((const void *)layernorm_fwd_kernel, smem, c, "layernorm_fwd", C));
    layernorm_fwd_kernel<<<N, norm_threads, smem, c->stream>>>(out, mean, rstd, inp, w, b, C,
                                                               eps);
    CUDA_LAUNCH_CHECK("layernorm_fwd_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_rmsnorm_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, float *rstd,
                                  const __nv_bfloat16 *inp, const __nv_bfloat16 *w, int N, int C,
                                  float eps)
{
    if (N <= 0 || C <= 0)
        return GLLM_OK;
    size_t smem = (size_t)C * sizeof(float);
    GLLM_TRY(set_smem((const void *)rmsnorm_fwd_kernel, smem, c, "rmsnorm_fwd", C));
    rmsnorm_fwd_kernel<<<N, norm_threads, smem, c->stream>>>(out, rstd, inp, w, C, eps);
    CUDA_LAUNCH_CHECK("rmsnorm_fwd_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_layernorm_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, float *dw, float *db,
                                    const __nv_bfloat16 *dout, const __nv_bfloat16 *inp,
                                    const __nv_bfloat16 *w, const float *mean,
                                    const float *rstd, int N, int C)
{
    if (!mean)
        return gllm_fail(GLLM_ERR_INVALID, "cuda layernorm_bwd: mean is NULL");
    return norm_bwd(c, dinp, dw, db, dout, inp, w, mean, rstd, N, C, "layernorm_bwd");
}

gllm_status gllm_cuda_rmsnorm_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dinp, float *dw,
                                  const __nv_bfloat16 *dout, const __nv_bfloat16 *inp,
                                  const __nv_bfloat16 *w, const float *rstd, int N, int C)
{
    return norm_bwd(c, dinp, dw, NULL, dout, inp, w, NULL, rstd, N, C, "rmsnorm_bwd");
}
