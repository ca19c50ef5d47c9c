// Inference ops on CUDA: paged attention (prefill chunks and decode over the
// block-paged KV cache) and per-row sampling with logprobs. Semantics are those
// of attention_paged / sample_rows in gllm/backend.h and the CPU reference
// (src/backend/cpu/cpu_infer.c).
//
// Batch invariance: one thread block computes one output row (one token's kv
// head group, or one logits row) alone, with reductions in a fixed order, so a
// row's result never depends on the other rows of the launch.
//
// Status: compiled (-Werror) but not yet run on a GPU.
#include "infer.cuh"

typedef __nv_bfloat16 bf16;

namespace {

const int PA_THREADS = 128;
const int PA_CHUNK = 128;
const int SR_THREADS = 256;

// One block per (token row, kv head): online softmax over the row's visible
// context in chunks of PA_CHUNK keys, for the G query heads sharing the kv head.
__global__ void paged_attn_kernel(bf16 *__restrict__ out, const bf16 *__restrict__ qkv,
                                  const bf16 *__restrict__ Kc, const bf16 *__restrict__ Vc,
                                  const int32_t *__restrict__ q_start,
                                  const int32_t *__restrict__ q_len,
                                  const int32_t *__restrict__ ctx_len,
                                  const int32_t *__restrict__ block_table, int max_blocks,
                                  int n_seq, int Hq, int Hkv, int D, int bs, int window,
                                  float scale)
{
    extern __shared__ float sm[];
    const int row = blockIdx.x, kvh = blockIdx.y, G = Hq / Hkv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
    __shared__ int s_seq;
    if (tid == 0) {
        s_seq = -1;
        for (int s = 0; s < n_seq; s++)
            if (row >= q_start[s] && row < q_start[s] + q_len[s]) {
                s_seq = s;
                break;
            }
    }
    __syncthreads();
    const int s = s_seq;
    if (s < 0)
        return;
    const int L = ctx_len[s], p = L - q_len[s] + (row - q_start[s]);
    const int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
    float *q = sm;                       // [G * D]
    float *acc = q + G * D;              // [G * D]
    float *pr = acc + G * D;             // [G * PA_CHUNK]
    float *m_run = pr + G * PA_CHUNK;    // [G]
    float *l_run = m_run + G;            // [G]
    float *resc = l_run + G;             // [G]
    int *slots = (int *)(resc + G);      // [PA_CHUNK]
    const size_t HD = (size_t)Hkv * D;
    const bf16 *qrow = qkv + (size_t)row * (Hq + 2 * Hkv) * D + (size_t)kvh * G * D;
    for (int e = tid; e < G * D; e += blockDim.x) {
        q[e] = __bfloat162float(qrow[e]) * scale;
        acc[e] = 0.f;
    }
    for (int g = tid; g < G; g += blockDim.x) {
        m_run[g] = -INFINITY;
        l_run[g] = 0.f;
    }
    const int32_t *bt = block_table + (size_t)s * max_blocks;
    for (int c0 = lo; c0 <= p; c0 += PA_CHUNK) {
        const int cnt = min(PA_CHUNK, p + 1 - c0);
        __syncthreads();
        for (int jj = tid; jj < cnt; jj += blockDim.x) {
            const int j = c0 + jj;
            slots[jj] = bt[j / bs] * bs + j % bs;
        }
        __syncthreads();
        for (int e = tid; e < G * cnt; e += blockDim.x) {
            const int g = e / cnt, jj = e % cnt;
            const bf16 *k = Kc + (size_t)slots[jj] * HD + (size_t)kvh * D;
            const float *qg = q + g * D;
            float a = 0.f;
            for (int d = 0; d < D; d++)
                a += qg[d] * __bfloat162float(k[d]);
            pr[g * PA_CHUNK + jj] = a;
        }
        __syncthreads();
        for (int g = warp; g < G; g += nw) {
            float *pg = pr + g * PA_CHUNK;
            float mx = -INFINITY;
            for (int jj = lane; jj < cnt; jj += 32)
                mx = fmaxf(mx, pg[jj]);
            for (int o = 16; o > 0; o >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_new = fmaxf(m_run[g], mx);
            float sum = 0.f;
            for (int jj = lane; jj < cnt; jj += 32) {
                const float e = __expf(pg[jj] - m_new);
                pg[jj] = e;
                sum += e;
            }
            for (int o = 16; o > 0; o >>= 1)
                sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) {
                const float r = m_run[g] == -INFINITY ? 0.f : __expf(m_run[g] - m_new);
                resc[g] = r;
                l_run[g] = l_run[g] * r + sum;
                m_run[g] = m_new;
            }
        }
        __syncthreads();
        for (int e = tid; e < G * D; e += blockDim.x) {
            const int g = e / D, d = e % D;
            const float *pg = pr + g * PA_CHUNK;
            const bf16 *v = Vc + (size_t)kvh * D + d;
            float a = acc[e] * resc[g];
            for (int jj = 0; jj < cnt; jj++)
                a += pg[jj] * __bfloat162float(v[(size_t)slots[jj] * HD]);
            acc[e] = a;
        }
    }
    __syncthreads();
    bf16 *orow = out + (size_t)row * Hq * D + (size_t)kvh * G * D;
    for (int e = tid; e < G * D; e += blockDim.x)
        orow[e] = __float2bfloat16_rn(acc[e] / l_run[e / D]);
}

// ---------------------------------------------------------------- sampling

__device__ inline double su_uniform(uint64_t seed)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

// (value, id) ordering: higher value first, then the lower id
__device__ inline bool before(float a, int ia, float b, int ib)
{
    return a > b || (a == b && ia < ib);
}

struct vi {
    float v;
    int i;
};

// the first element in the (value desc, id asc) order over the block
__device__ vi block_best(vi x, vi *red)
{
    for (int o = 16; o > 0; o >>= 1) {
        vi y = {__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.i, o)};
        if (before(y.v, y.i, x.v, x.i))
            x = y;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        red[warp] = x;
    __syncthreads();
    if (warp == 0) {
        x = lane < nw ? red[lane] : vi{-INFINITY, 0x7fffffff};
        for (int o = 16; o > 0; o >>= 1) {
            vi y = {__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.i, o)};
            if (before(y.v, y.i, x.v, x.i))
                x = y;
        }
        if (lane == 0)
            red[0] = x;
    }
    __syncthreads();
    vi r = red[0];
    __syncthreads();
    return r;
}

__device__ double block_dsum(double x, double *red)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        red[warp] = x;
    __syncthreads();
    double t = 0;
    for (int w = 0; w < nw; w++)
        t += red[w];
    __syncthreads();
    return t;
}

__device__ int block_isum(int x, int *red)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        red[warp] = x;
    __syncthreads();
    int t = 0;
    for (int w = 0; w < nw; w++)
        t += red[w];
    __syncthreads();
    return t;
}

// kept(v): p >= minp and not after the threshold pair (thr_p, thr_id) when set
__device__ inline bool kept(float p, int id, float minp, bool have, float tp, int ti)
{
    return p >= minp && (!have || !before(tp, ti, p, id));
}

// One block per row. y (scratch [N, V] floats): processed logits, then probabilities.
__global__ void sample_rows_kernel(int32_t *__restrict__ out_ids, float *__restrict__ out_lp,
                                   int32_t *__restrict__ top_ids, float *__restrict__ top_lp,
                                   int max_top, const bf16 *__restrict__ logits, int V,
                                   const gllm_sample_params *__restrict__ params,
                                   const int32_t *__restrict__ pen_ids,
                                   const int32_t *__restrict__ pen_off, float *__restrict__ yall)
{
    __shared__ vi red_vi[32];
    __shared__ double red_d[32];
    __shared__ int red_i[32];
    const int n = blockIdx.x, tid = threadIdx.x;
    const gllm_sample_params sp = params[n];
    const bf16 *x = logits + (size_t)n * V;
    float *y = yall + (size_t)n * V;
    // the unprocessed distribution
    vi best = {-INFINITY, 0x7fffffff};
    for (int v = tid; v < V; v += blockDim.x) {
        const float xv = gllm_ld(x + v);
        if (before(xv, v, best.v, best.i))
            best = vi{xv, v};
    }
    const vi xmax = block_best(best, red_vi);
    double se = 0;
    for (int v = tid; v < V; v += blockDim.x)
        se += (double)expf(gllm_ld(x + v) - xmax.v);
    const double lse = (double)xmax.v + log(block_dsum(se, red_d));
    // top-n: n passes, each the best element after the previous one
    vi prev = {INFINITY, -1};
    for (int k = 0; k < sp.n_top; k++) {
        vi b = {-INFINITY, 0x7fffffff};
        for (int v = tid; v < V; v += blockDim.x) {
            const float xv = gllm_ld(x + v);
            if (before(prev.v, prev.i, xv, v) && before(xv, v, b.v, b.i))
                b = vi{xv, v};
        }
        prev = block_best(b, red_vi);
        if (tid == 0) {
            top_ids[(size_t)n * max_top + k] = prev.i;
            top_lp[(size_t)n * max_top + k] = (float)((double)prev.v - lse);
        }
    }
    // processed logits: repetition penalty from the unprocessed values
    for (int v = tid; v < V; v += blockDim.x)
        y[v] = gllm_ld(x + v);
    __syncthreads();
    if (sp.repetition_penalty != 1.0f && pen_off) {
        const float rp = sp.repetition_penalty;
        for (int i = pen_off[n] + tid; i < pen_off[n + 1]; i += blockDim.x) {
            const int id = pen_ids[i];
            if (id >= 0 && id < V) {
                const float xv = gllm_ld(x + id);
                y[id] = xv < 0 ? xv * rp : xv / rp;
            }
        }
    }
    __syncthreads();
    best = vi{-INFINITY, 0x7fffffff};
    for (int v = tid; v < V; v += blockDim.x)
        if (before(y[v], v, best.v, best.i))
            best = vi{y[v], v};
    const vi ymax = block_best(best, red_vi);
    int chosen = ymax.i;
    if (sp.temperature > 0) {
        const float inv_t = 1.0f / sp.temperature;
        for (int v = tid; v < V; v += blockDim.x)
            y[v] = expf((y[v] - ymax.v) * inv_t);
        __syncthreads();
        bool have = false;
        float tp = 0.f;
        int ti = 0;
        // top-k: the k-th pair by bisection on the value bits, then the tie by id
        if (sp.top_k > 0 && sp.top_k < V) {
            unsigned lo_b = 0u, hi_b = __float_as_uint(1.0f) + 1u; // p in [0, 1]
            while (hi_b - lo_b > 1u) { // largest t with count(p >= t) >= k
                const unsigned mid = lo_b + (hi_b - lo_b) / 2u;
                const float t = __uint_as_float(mid);
                int c = 0;
                for (int v = tid; v < V; v += blockDim.x)
                    c += y[v] >= t;
                if (block_isum(c, red_i) >= sp.top_k)
                    lo_b = mid;
                else
                    hi_b = mid;
            }
            const float t = __uint_as_float(lo_b);
            int above = 0;
            for (int v = tid; v < V; v += blockDim.x)
                above += y[v] > t;
            above = block_isum(above, red_i);
            // the (k - above)-th id with p == t, in id order
            const int need = sp.top_k - above;
            int seen = 0, found = V - 1;
            for (int v0 = 0; v0 < V; v0 += blockDim.x) {
                const int v = v0 + tid;
                const int eq = v < V && y[v] == t;
                int incl = eq; // inclusive scan of eq over the block
                for (int o = 1; o < 32; o <<= 1) {
                    const int u = __shfl_up_sync(0xffffffffu, incl, o);
                    if ((tid & 31) >= o)
                        incl += u;
                }
                __syncthreads();
                if ((tid & 31) == 31)
                    red_i[tid >> 5] = incl;
                __syncthreads();
                int base = seen;
                for (int w = 0; w < (tid >> 5); w++)
                    base += red_i[w];
                int tot = 0;
                for (int w = 0; w < (int)(blockDim.x >> 5); w++)
                    tot += red_i[w];
                __shared__ int s_found;
                if (tid == 0)
                    s_found = -1;
                __syncthreads();
                if (eq && base + incl == need)
                    s_found = v;
                __syncthreads();
                if (s_found >= 0) {
                    found = s_found;
                    break;
                }
                seen += tot;
            }
            have = true;
            tp = t;
            ti = found;
        }
        // top-p: the largest value t whose kept mass through t reaches top_p
        if (sp.top_p < 1.0f) {
            double kept_mass = 0;
            for (int v = tid; v < V; v += blockDim.x)
                if (kept(y[v], v, 0.f, have, tp, ti))
                    kept_mass += y[v];
            kept_mass = block_dsum(kept_mass, red_d);
            const double target = (double)sp.top_p * kept_mass;
            unsigned lo_b = 0u, hi_b = __float_as_uint(1.0f) + 1u;
            while (hi_b - lo_b > 1u) { // largest t with mass(p >= t) >= target
                const unsigned mid = lo_b + (hi_b - lo_b) / 2u;
                const float t = __uint_as_float(mid);
                double mss = 0;
                for (int v = tid; v < V; v += blockDim.x)
                    if (y[v] >= t && kept(y[v], v, 0.f, have, tp, ti))
                        mss += y[v];
                if (block_dsum(mss, red_d) >= target)
                    lo_b = mid;
                else
                    hi_b = mid;
            }
            const float t = __uint_as_float(lo_b);
            double above = 0;
            for (int v = tid; v < V; v += blockDim.x)
                if (y[v] > t && kept(y[v], v, 0.f, have, tp, ti))
                    above += y[v];
            above = block_dsum(above, red_d);
            // among ids with p == t in id order, the first where the mass reaches target
            int found = -1;
            if (tid == 0) {
                double cum = above;
                for (int v = 0; v < V; v++)
                    if (y[v] == t && kept(y[v], v, 0.f, have, tp, ti)) {
                        cum += y[v];
                        found = v;
                        if (cum >= target)
                            break;
                    }
                red_i[0] = found;
            }
            __syncthreads();
            found = red_i[0];
            __syncthreads();
            if (found >= 0) {
                have = true;
                tp = t;
                ti = found;
            }
        }
        // the draw over the kept set in id order
        const float minp = sp.min_p > 0 ? sp.min_p : 0.f;
        double total = 0;
        for (int v = tid; v < V; v += blockDim.x)
            if (kept(y[v], v, minp, have, tp, ti))
                total += y[v];
        total = block_dsum(total, red_d);
        const double u = su_uniform(sp.seed) * total;
        if (tid == 0) { // sequential in id order, as the CPU
            double cum = 0;
            int c = ymax.i;
            for (int v = 0; v < V; v++)
                if (kept(y[v], v, minp, have, tp, ti)) {
                    cum += y[v];
                    c = v;
                    if (u < cum)
                        break;
                }
            red_i[0] = c;
        }
        __syncthreads();
        chosen = red_i[0];
    }
    if (tid == 0) {
        out_ids[n] = chosen;
        if (out_lp)
            out_lp[n] = (float)((double)gllm_ld(x + chosen) - lse);
    }
}

} // namespace

gllm_status gllm_cuda_attention_paged(gllm_cuda_ctx *c, bf16 *out, const bf16 *qkv,
                                      const gllm_kv_cache *kv, const gllm_paged_attn_args *a)
{
    if (!out || !qkv || !kv || !kv->k || !kv->v || !a || !a->q_start || !a->q_len ||
        !a->ctx_len || !a->block_table || a->n_seq < 0 || a->Hq <= 0 || kv->Hkv <= 0 ||
        a->Hq % kv->Hkv || kv->D <= 0 || kv->block_size <= 0 || a->max_blocks <= 0 ||
        a->window < 0 || a->n_tokens < 0)
        return gllm_fail(GLLM_ERR_INVALID, "cuda attention_paged: bad arguments");
    if (a->n_tokens == 0 || a->n_seq == 0)
        return GLLM_OK;
    const int G = a->Hq / kv->Hkv, D = kv->D;
    const size_t smem = ((size_t)2 * G * D + (size_t)G * PA_CHUNK + 3 * (size_t)G) *
                            sizeof(float) + PA_CHUNK * sizeof(int);
    if (smem > c->smem_optin)
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "cuda attention_paged: %d query heads per kv head at head dim %d need "
                         "%zu bytes of shared memory, the device allows %zu",
                         G, D, smem, c->smem_optin);
    if (smem > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(paged_attn_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    paged_attn_kernel<<<dim3(a->n_tokens, kv->Hkv), PA_THREADS, smem, c->stream>>>(
        out, qkv, (const bf16 *)kv->k, (const bf16 *)kv->v, a->q_start, a->q_len, a->ctx_len,
        a->block_table, a->max_blocks, a->n_seq, a->Hq, kv->Hkv, D, kv->block_size, a->window,
        a->scale);
    CUDA_LAUNCH_CHECK("paged_attn_kernel");
    return GLLM_OK;
}

gllm_status gllm_cuda_sample_rows(gllm_cuda_ctx *c, int32_t *out_ids, float *out_logprob,
                                  int32_t *top_ids, float *top_lp, int max_top,
                                  const bf16 *logits, int N, int V,
                                  const gllm_sample_params *params, const int32_t *pen_ids,
                                  const int32_t *pen_off)
{
    if (!out_ids || !logits || !params || N < 0 || V <= 0 || max_top < 0 ||
        (max_top > 0 && (!top_ids || !top_lp)))
        return gllm_fail(GLLM_ERR_INVALID, "cuda sample_rows: bad arguments (N=%d V=%d)", N, V);
    if (N == 0)
        return GLLM_OK;
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, (size_t)N * V * sizeof(float), "sample_rows", &scratch));
    sample_rows_kernel<<<N, SR_THREADS, 0, c->stream>>>(out_ids, out_logprob, top_ids, top_lp,
                                                        max_top, logits, V, params, pen_ids,
                                                        pen_off, (float *)scratch);
    CUDA_LAUNCH_CHECK("sample_rows_kernel");
    return GLLM_OK;
}
