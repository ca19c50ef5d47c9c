// RoPE: one thread per (token, head, rotated pair). The angle pos * inv_freq is
// formed in fp32 and fed to the accurate sincosf, as HF does, because positions in
// the thousands make the fast intrinsic's error visible.
#include "rope.cuh"

namespace {

__global__ void rope_kernel(__nv_bfloat16 *x, const int32_t *pos, const float *inv_freq,
                            int n_tokens, int n_heads, int head_dim, int half, int row_stride,
                            float attn_factor, float dir)
{
    size_t total = (size_t)n_tokens * n_heads * half;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % half);
        size_t th = e / half;
        int h = (int)(th % n_heads);
        size_t n = th / n_heads;
        float s, co;
        sincosf((float)pos[n] * inv_freq[i], &s, &co);
        co *= attn_factor;
        s *= attn_factor * dir; // dir = -1: the transpose, for the gradient
        __nv_bfloat16 *p = x + n * row_stride + (size_t)h * head_dim;
        float x1 = gllm_ld(p + i), x2 = gllm_ld(p + i + half);
        p[i] = gllm_bf(x1 * co - x2 * s);
        p[i + half] = gllm_bf(x2 * co + x1 * s);
    }
}

gllm_status rope(gllm_cuda_ctx *c, __nv_bfloat16 *x, const int32_t *pos, const gllm_rope_args *a,
                 float dir, const char *op)
{
    if (a->rot_dim <= 0 || (a->rot_dim & 1) || a->rot_dim > a->head_dim)
        return gllm_fail(GLLM_ERR_INVALID, "cuda %s: rot_dim %d must be even and <= head_dim %d",
                         op, a->rot_dim, a->head_dim);
    int half = a->rot_dim / 2;
    size_t total = (size_t)a->n_tokens * a->n_heads * half;
    if (total == 0)
        return GLLM_OK;
    size_t want = (total + 255) / 256, cap = (size_t)c->n_sms * 32;
    rope_kernel<<<(unsigned)(want < cap ? want : cap), 256, 0, c->stream>>>(
        x, pos, a->inv_freq, a->n_tokens, a->n_heads, a->head_dim, half, a->row_stride,
        a->attn_factor, dir);
    CUDA_LAUNCH_CHECK("rope_kernel");
    return GLLM_OK;
}

} // namespace

gllm_status gllm_cuda_rope_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *x, const int32_t *pos,
                               const gllm_rope_args *a)
{
    return rope(c, x, pos, a, 1.0f, "rope_fwd");
}

gllm_status gllm_cuda_rope_bwd(gllm_cuda_ctx *c, __nv_bfloat16 *dx, const int32_t *pos,
                               const gllm_rope_args *a)
{
    return rope(c, dx, pos, a, -1.0f, "rope_bwd");
}
