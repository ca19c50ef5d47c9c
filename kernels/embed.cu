// Embedding forward is a gather. The backward must add rows of dout that share a
// token id without atomics (whose order, and so whose rounding, would vary): the
// token indices are sorted by id with a stable radix sort (ties stay in token
// order), and one block per run of equal ids sums that run in order into its row.
#include <cub/device/device_radix_sort.cuh>

#include "embed.cuh"

namespace {

__global__ void embed_fwd_kernel(__nv_bfloat16 *out, const int32_t *ids, const int32_t *pos,
                                 const __nv_bfloat16 *wte, const __nv_bfloat16 *wpe, int C)
{
    size_t n = blockIdx.x;
    const __nv_bfloat16 *t = wte + (size_t)ids[n] * C;
    const __nv_bfloat16 *p = wpe ? wpe + (size_t)pos[n] * C : NULL;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float v = gllm_ld(t + i);
        out[n * C + i] = gllm_bf(p ? v + gllm_ld(p + i) : v);
    }
}

__global__ void iota_kernel(int32_t *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = i;
}

// Block k starts a run when sorted key k differs from key k-1; it sums the run.
__global__ void segment_add_kernel(float *dst, const int32_t *keys, const int32_t *tokens,
                                   const __nv_bfloat16 *dout, int N, int C)
{
    int k = blockIdx.x;
    int key = keys[k];
    if (k > 0 && keys[k - 1] == key)
        return;
    int end = k + 1;
    while (end < N && keys[end] == key)
        end++;
    float *row = dst + (size_t)key * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float s = 0.0f;
        for (int j = k; j < end; j++)
            s += gllm_ld(dout + (size_t)tokens[j] * C + i);
        row[i] += s;
    }
}

int bits_for(int max_value)
{
    int b = 1;
    while (b < 31 && (1 << b) <= max_value)
        b++;
    return b;
}

// Scratch layout: keys_out[N], tokens_in[N], tokens_out[N], then CUB's temporaries.
gllm_status segment_add(gllm_cuda_ctx *c, float *dst, const int32_t *keys, int max_key,
                        const __nv_bfloat16 *dout, int N, int C)
{
    int bits = bits_for(max_key);
    size_t cub_bytes = 0;
    CUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, cub_bytes, (const int32_t *)NULL,
                                             (int32_t *)NULL, (const int32_t *)NULL,
                                             (int32_t *)NULL, N, 0, bits, c->stream));
    size_t ints = ((size_t)3 * N + 63) / 64 * 64;
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, ints * sizeof(int32_t) + cub_bytes, "embed_bwd", &scratch));
    int32_t *keys_out = (int32_t *)scratch, *tok_in = keys_out + N, *tok_out = tok_in + N;
    void *cub_tmp = (int32_t *)scratch + ints;
    iota_kernel<<<gllm_cdiv(N, 256), 256, 0, c->stream>>>(tok_in, N);
    CUDA_LAUNCH_CHECK("iota_kernel");
    CUDA_TRY(cub::DeviceRadixSort::SortPairs(cub_tmp, cub_bytes, keys, keys_out, tok_in, tok_out,
                                             N, 0, bits, c->stream));
    segment_add_kernel<<<N, 256, 0, c->stream>>>(dst, keys_out, tok_out, dout, N, C);
    CUDA_LAUNCH_CHECK("segment_add_kernel");
    return GLLM_OK;
}

} // namespace

gllm_status gllm_cuda_embed_fwd(gllm_cuda_ctx *c, __nv_bfloat16 *out, const int32_t *ids,
                                const int32_t *pos, const __nv_bfloat16 *wte,
                                const __nv_bfloat16 *wpe, int N, int C)
{
    if (N <= 0 || C <= 0)
        return GLLM_OK;
    embed_fwd_kernel<<<N, 256, 0, c->stream>>>(out, ids, pos, wte, wpe, C);
    CUDA_LAUNCH_CHECK("embed_fwd_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_embed_bwd(gllm_cuda_ctx *c, float *dwte, float *dwpe,
                                const __nv_bfloat16 *dout, const int32_t *ids,
                                const int32_t *pos, int N, int C, int V)
{
    if (N <= 0 || C <= 0)
        return GLLM_OK;
    GLLM_TRY(segment_add(c, dwte, ids, V - 1, dout, N, C));
    // Positions are below 2^31; the number of wpe rows is not passed, so sort on all bits.
    if (dwpe)
        GLLM_TRY(segment_add(c, dwpe, pos, 0x7fffffff, dout, N, C));
    return GLLM_OK;
}
