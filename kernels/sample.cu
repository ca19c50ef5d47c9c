// Sampling mirrors the CPU reference step by step: unnormalised p = exp((x - max)/T),
// a stable descending sort of (p, id) per row (a stable radix sort keeps equal p in
// ascending id, the CPU's tie rule), top-k as a prefix, top-p as the shortest prefix
// reaching top_p of the kept mass, then the first prefix whose mass exceeds u * total.
// Prefix sums are block scans in double, in a fixed order.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "sample.cuh"

namespace {

const int sample_threads = 256;

__device__ inline double splitmix_uniform(uint64_t seed)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

// argmax with ties to the lowest id; writes the id (greedy) or keeps the max for
// the probability pass.
__device__ void row_argmax(const __nv_bfloat16 *x, int V, float *best_val, int *best_id)
{
    __shared__ float sv[sample_threads];
    __shared__ int si[sample_threads];
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = gllm_ld(x + i);
        if (v > bv || (v == bv && i < bi)) {
            bv = v;
            bi = i;
        }
    }
    sv[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float ov = sv[threadIdx.x + s];
            int oi = si[threadIdx.x + s];
            if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
                sv[threadIdx.x] = ov;
                si[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    *best_val = sv[0];
    *best_id = si[0] == 0x7fffffff ? 0 : si[0];
    __syncthreads();
}

__global__ void greedy_kernel(int32_t *out_ids, const __nv_bfloat16 *logits, int V)
{
    float bv;
    int bi;
    row_argmax(logits + (size_t)blockIdx.x * V, V, &bv, &bi);
    if (threadIdx.x == 0)
        out_ids[blockIdx.x] = bi;
}

__global__ void probs_kernel(float *p, int32_t *ids, int *offsets, const __nv_bfloat16 *logits,
                             int N, int V, float temperature)
{
    const __nv_bfloat16 *x = logits + (size_t)blockIdx.x * V;
    float mx;
    int unused;
    row_argmax(x, V, &mx, &unused);
    size_t base = (size_t)blockIdx.x * V;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        p[base + i] = expf((gllm_ld(x + i) - mx) / temperature);
        ids[base + i] = i;
    }
    if (threadIdx.x == 0) {
        offsets[blockIdx.x] = (int)base;
        if (blockIdx.x == N - 1)
            offsets[N] = (int)(base + V);
    }
}

// Inclusive block scan of one double per thread (warp shuffles, then warp totals).
__device__ double block_scan(double x, double *warp_tot, double *total)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        double y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o)
            x += y;
    }
    __syncthreads();
    if (lane == 31)
        warp_tot[warp] = x;
    __syncthreads();
    if (threadIdx.x == 0) {
        double run = 0;
        for (int w = 0; w < nw; w++) {
            double t = warp_tot[w];
            warp_tot[w] = run;
            run += t;
        }
        *total = run;
    }
    __syncthreads();
    return x + warp_tot[warp];
}

// Smallest i < n with (prefix mass through i) >= thr (or > thr when strict); n-1 if none.
__device__ int first_crossing(const float *p, int n, double thr, bool strict)
{
    __shared__ double warp_tot[32], total;
    __shared__ int found;
    if (threadIdx.x == 0)
        found = n;
    double carry = 0;
    for (int t0 = 0; t0 < n; t0 += blockDim.x) {
        int i = t0 + threadIdx.x;
        double cum = carry + block_scan(i < n ? (double)p[i] : 0.0, warp_tot, &total);
        if (i < n && (strict ? thr < cum : cum >= thr))
            atomicMin(&found, i);
        __syncthreads();
        if (found < n)
            break;
        carry += total;
    }
    int r = found < n ? found : n - 1;
    __syncthreads();
    return r;
}

__device__ double prefix_mass(const float *p, int n)
{
    __shared__ double warp_tot[32], total;
    double carry = 0;
    for (int t0 = 0; t0 < n; t0 += blockDim.x) {
        int i = t0 + threadIdx.x;
        block_scan(i < n ? (double)p[i] : 0.0, warp_tot, &total);
        carry += total;
        __syncthreads();
    }
    return carry;
}

__global__ void pick_kernel(int32_t *out_ids, const float *p_sorted, const int32_t *id_sorted,
                            int V, int top_k, float top_p, const uint64_t *seeds)
{
    size_t base = (size_t)blockIdx.x * V;
    const float *p = p_sorted + base;
    int keep = top_k > 0 && top_k < V ? top_k : V;
    if (top_p < 1.0f) {
        double kept = prefix_mass(p, keep);
        keep = first_crossing(p, keep, (double)top_p * kept, false) + 1;
    }
    double total = prefix_mass(p, keep);
    double u = splitmix_uniform(seeds[blockIdx.x]) * total;
    int i = first_crossing(p, keep, u, true);
    if (threadIdx.x == 0)
        out_ids[blockIdx.x] = id_sorted[base + i];
}

} // namespace

gllm_status gllm_cuda_sample(gllm_cuda_ctx *c, int32_t *out_ids, const __nv_bfloat16 *logits,
                             int N, int V, const gllm_sample_args *a, const uint64_t *seeds)
{
    if (N < 0 || V <= 0 || (a->temperature > 0 && !seeds))
        return gllm_fail(GLLM_ERR_INVALID, "cuda sample: bad arguments (N=%d V=%d)", N, V);
    if (a->top_k < 0 || !(a->top_p > 0 && a->top_p <= 1))
        return gllm_fail(GLLM_ERR_INVALID, "cuda sample: top_k=%d top_p=%g out of range",
                         a->top_k, (double)a->top_p);
    if (N == 0)
        return GLLM_OK;
    if (a->temperature <= 0) {
        greedy_kernel<<<N, sample_threads, 0, c->stream>>>(out_ids, logits, V);
        CUDA_LAUNCH_CHECK("greedy_kernel");
        return GLLM_OK;
    }
    size_t items = (size_t)N * V;
    if (items > 0x7fffffff)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "cuda sample: N*V = %zu exceeds 2^31", items);
    size_t cub_bytes = 0;
    CUDA_TRY(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        NULL, cub_bytes, (const float *)NULL, (float *)NULL, (const int32_t *)NULL,
        (int32_t *)NULL, (int)items, N, (const int *)NULL, (const int *)NULL, 0, 32, c->stream));
    // Scratch: p, p_sorted, ids, ids_sorted (items each), offsets [N+1], CUB temporaries.
    size_t items_al = (items + 63) / 64 * 64, off_al = ((size_t)N + 1 + 63) / 64 * 64;
    void *scratch;
    GLLM_TRY(gllm_cuda_scratch(c, 4 * items_al * 4 + off_al * 4 + cub_bytes, "sample", &scratch));
    float *p = (float *)scratch, *p_sorted = p + items_al;
    int32_t *ids = (int32_t *)(p_sorted + items_al), *ids_sorted = ids + items_al;
    int *offsets = (int *)(ids_sorted + items_al);
    void *cub_tmp = offsets + off_al;
    probs_kernel<<<N, sample_threads, 0, c->stream>>>(p, ids, offsets, logits, N, V,
                                                      a->temperature);
    CUDA_LAUNCH_CHECK("probs_kernel");
    CUDA_TRY(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        cub_tmp, cub_bytes, p, p_sorted, ids, ids_sorted, (int)items, N, offsets, offsets + 1, 0,
        32, c->stream));
    pick_kernel<<<N, sample_threads, 0, c->stream>>>(out_ids, p_sorted, ids_sorted, V, a->top_k,
                                                     a->top_p, seeds);
    CUDA_LAUNCH_CHECK("pick_kernel");
    return GLLM_OK;
}
