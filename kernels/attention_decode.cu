// Inference attention over the paged KV cache: kv_store writes new tokens' K and V
// into their slots; attention_decode runs flash-decoding for one query token per
// sequence. The context of each sequence is cut into chunks; one block per (chunk,
// kv head, sequence) scores the chunk for all query heads of the GQA group (K and
// V read once per group) and writes its partial (max, sum, unnormalised out); a
// second kernel merges the partials of each head in chunk order, so the result
// does not depend on scheduling.
#include "attention.cuh"

typedef __nv_bfloat16 bf16;

static constexpr int DEC_THREADS = 128;

__global__ void kv_store_kernel(bf16 *__restrict__ K, bf16 *__restrict__ V,
                                const bf16 *__restrict__ qkv, const int32_t *__restrict__ slot,
                                int Hq, int Hkv, int D, long n_slots)
{
    const long sl = slot[blockIdx.x];
    if (sl < 0 || sl >= n_slots)
        return;
    const size_t HD = (size_t)Hkv * D;
    const bf16 *src = qkv + (size_t)blockIdx.x * (Hq + 2 * Hkv) * D + (size_t)Hq * D;
    for (size_t e = threadIdx.x; e < HD; e += blockDim.x) {
        K[sl * HD + e] = src[e];
        V[sl * HD + e] = src[HD + e];
    }
}

// Partial results of split `s` for query head h of sequence q live at index
// (q * Hq + h) * n_splits + s: D floats in part_o, (max, sum) in part_ml.
__global__ void attn_decode_split_kernel(float *__restrict__ part_o, float *__restrict__ part_ml,
                                         const bf16 *__restrict__ qkv,
                                         const bf16 *__restrict__ Kc,
                                         const bf16 *__restrict__ Vc,
                                         const int32_t *__restrict__ block_table,
                                         int max_blocks, const int32_t *__restrict__ seq_len,
                                         int Hq, int Hkv, int D, int bs, int window, float scale,
                                         int chunk, int n_splits)
{
    extern __shared__ float sm[];
    const int split = blockIdx.x, kvh = blockIdx.y, sq = blockIdx.z, G = Hq / Hkv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float *q = sm, *p = q + G * D;
    int *slots = (int *)(p + G * chunk);
    const int L = seq_len[sq];
    // the query sits at position L - 1; key j is visible iff L - 1 - j < window
    const int lo = window > 0 ? max(0, L - window) : 0;
    const int j0 = lo + split * chunk, cnt = min(L, j0 + chunk) - j0;
    const size_t part0 = ((size_t)sq * Hq + (size_t)kvh * G) * n_splits + split;
    if (cnt <= 0) { // an empty chunk: weight zero in the merge
        for (int gg = tid; gg < G; gg += blockDim.x) {
            part_ml[2 * (part0 + (size_t)gg * n_splits)] = -INFINITY;
            part_ml[2 * (part0 + (size_t)gg * n_splits) + 1] = 0.f;
        }
        return;
    }
    const size_t HD = (size_t)Hkv * D;
    const bf16 *qrow = qkv + (size_t)sq * (Hq + 2 * Hkv) * D + (size_t)kvh * G * D;
    for (int e = tid; e < G * D; e += blockDim.x)
        q[e] = __bfloat162float(qrow[e]) * scale;
    const int32_t *bt = block_table + (size_t)sq * max_blocks;
    for (int jj = tid; jj < cnt; jj += blockDim.x) {
        const int j = j0 + jj;
        slots[jj] = bt[j / bs] * bs + j % bs;
    }
    __syncthreads();
    for (int e = tid; e < G * cnt; e += blockDim.x) {
        const int gg = e / cnt, jj = e % cnt;
        const bf16 *k = Kc + (size_t)slots[jj] * HD + (size_t)kvh * D;
        const float *qg = q + gg * D;
        float acc = 0.f;
        for (int d = 0; d < D; d++)
            acc += qg[d] * __bfloat162float(k[d]);
        p[gg * chunk + jj] = acc;
    }
    __syncthreads();
    for (int gg = warp; gg < G; gg += blockDim.x >> 5) {
        float *pg = p + gg * chunk;
        float mx = -INFINITY, sum = 0.f;
        for (int jj = lane; jj < cnt; jj += 32)
            mx = fmaxf(mx, pg[jj]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        for (int jj = lane; jj < cnt; jj += 32) {
            const float e = __expf(pg[jj] - mx);
            pg[jj] = e;
            sum += e;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) {
            part_ml[2 * (part0 + (size_t)gg * n_splits)] = mx;
            part_ml[2 * (part0 + (size_t)gg * n_splits) + 1] = sum;
        }
    }
    __syncthreads();
    for (int e = tid; e < G * D; e += blockDim.x) {
        const int gg = e / D, d = e % D;
        const float *pg = p + gg * chunk;
        const bf16 *v = Vc + (size_t)kvh * D + d;
        float acc = 0.f;
        for (int jj = 0; jj < cnt; jj++)
            acc += pg[jj] * __bfloat162float(v[(size_t)slots[jj] * HD]);
        part_o[(part0 + (size_t)gg * n_splits) * D + d] = acc;
    }
}

__global__ void attn_decode_combine_kernel(bf16 *__restrict__ out,
                                           const float *__restrict__ part_o,
                                           const float *__restrict__ part_ml, int D,
                                           int n_splits)
{
    const size_t idx = blockIdx.x; // sequence * Hq + head
    const float *ml = part_ml + idx * n_splits * 2;
    float M = -INFINITY, sum = 0.f;
    for (int s = 0; s < n_splits; s++)
        if (ml[2 * s + 1] > 0.f)
            M = fmaxf(M, ml[2 * s]);
    for (int s = 0; s < n_splits; s++)
        if (ml[2 * s + 1] > 0.f)
            sum += ml[2 * s + 1] * __expf(ml[2 * s] - M);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.f;
        for (int s = 0; s < n_splits; s++)
            if (ml[2 * s + 1] > 0.f)
                acc += part_o[(idx * n_splits + s) * D + d] * __expf(ml[2 * s] - M);
        out[idx * D + d] = __float2bfloat16_rn(sum > 0.f ? acc / sum : 0.f);
    }
}

static gllm_status check_cache(const char *op, const gllm_kv_cache *kv, int Hq)
{
    if (!kv || !kv->k || !kv->v || kv->n_blocks <= 0 || kv->block_size <= 0 || kv->Hkv <= 0 ||
        kv->D <= 0 || Hq <= 0 || Hq % kv->Hkv)
        return gllm_fail(GLLM_ERR_INVALID,
                         "%s: bad KV cache (n_blocks=%d block_size=%d Hkv=%d D=%d) for Hq=%d: "
                         "need positive sizes and Hq a multiple of Hkv",
                         op, kv ? kv->n_blocks : 0, kv ? kv->block_size : 0, kv ? kv->Hkv : 0,
                         kv ? kv->D : 0, Hq);
    return GLLM_OK;
}

gllm_status gllm_cuda_kv_store(gllm_cuda_ctx *c, gllm_kv_cache *kv, const bf16 *qkv,
                               const int32_t *slot, int n_tokens, int Hq)
{
    GLLM_TRY(check_cache("kv_store", kv, Hq));
    if (!qkv || !slot || n_tokens < 0)
        return gllm_fail(GLLM_ERR_INVALID, "kv_store: NULL buffer or n_tokens = %d", n_tokens);
    if (n_tokens == 0)
        return GLLM_OK;
    kv_store_kernel<<<n_tokens, DEC_THREADS, 0, c->stream>>>(
        (bf16 *)kv->k, (bf16 *)kv->v, qkv, slot, Hq, kv->Hkv, kv->D,
        (long)kv->n_blocks * kv->block_size);
    CUDA_LAUNCH_CHECK("kv_store_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_attention_decode(gllm_cuda_ctx *c, bf16 *out, const bf16 *qkv,
                                       const gllm_kv_cache *kv, const int32_t *block_table,
                                       int max_blocks, const int32_t *seq_len, int n_seq, int Hq,
                                       int window, float scale)
{
    GLLM_TRY(check_cache("attention_decode", kv, Hq));
    if (!out || !qkv || !block_table || !seq_len || n_seq < 0 || max_blocks <= 0 || window < 0)
        return gllm_fail(GLLM_ERR_INVALID,
                         "attention_decode: NULL buffer or bad n_seq=%d max_blocks=%d window=%d",
                         n_seq, max_blocks, window);
    if (n_seq == 0)
        return GLLM_OK;
    const int Hkv = kv->Hkv, D = kv->D, G = Hq / Hkv;
    // Sequence lengths stay on the device, so the split count covers the longest
    // possible context; splits past a sequence's end exit at once. Chunks shrink
    // until the grid has about two blocks per SM.
    long ctx = (long)max_blocks * kv->block_size;
    if (window > 0 && window < ctx)
        ctx = window;
    int chunk = 256;
    while (chunk > 32 && (long)n_seq * Hkv * ((ctx + chunk - 1) / chunk) < 2L * c->n_sms)
        chunk /= 2;
    const int n_splits = (int)((ctx + chunk - 1) / chunk);
    const size_t smem = ((size_t)G * D + (size_t)G * chunk) * sizeof(float) + chunk * sizeof(int);
    if (smem > c->smem_optin)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "attention_decode: %d query heads per kv head at head dim %d need %zu "
                         "bytes of shared memory, the device allows %zu",
                         G, D, smem, c->smem_optin);
    if (smem > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(attn_decode_split_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const size_t n_part = (size_t)n_seq * Hq * n_splits;
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, n_part * (D + 2) * sizeof(float), "attention_decode",
                               &scratch));
    float *part_o = (float *)scratch, *part_ml = part_o + n_part * D;
    attn_decode_split_kernel<<<dim3(n_splits, Hkv, n_seq), DEC_THREADS, smem, c->stream>>>(
        part_o, part_ml, qkv, (const bf16 *)kv->k, (const bf16 *)kv->v, block_table, max_blocks,
        seq_len, Hq, Hkv, D, kv->block_size, window, scale, chunk, n_splits);
    CUDA_LAUNCH_CHECK("attn_decode_split_kernel");
    attn_decode_combine_kernel<<<n_seq * Hq, DEC_THREADS, 0, c->stream>>>(out, part_o, part_ml,
                                                                         D, n_splits);
    CUDA_LAUNCH_CHECK("attn_decode_combine_kernel");
    return GLLM_OK;
}
