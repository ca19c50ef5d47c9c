// Argument checking, path choice and the simple fallback GEMM. The fast kernels
// live in matmul_mma.cu (sm_80+) and matmul_wgmma.cu (sm_90a).
#include <string.h>

#include "cublaslt_baseline.cuh"
#include "matmul.cuh"

extern "C" const char *gllm_matmul_path_name(gllm_matmul_path path)
{
    switch (path) {
    case GLLM_MM_AUTO: return "auto";
    case GLLM_MM_SIMPLE: return "simple";
    case GLLM_MM_MMA: return "mma";
    case GLLM_MM_WGMMA: return "wgmma";
    case GLLM_MM_CUBLASLT: return "cublaslt";
    case GLLM_MM_WGMMA_128: return "wgmma128";
    case GLLM_MM_WGMMA_256: return "wgmma256";
    }
    return "?";
}

// ------------------------------------------------------------------ simple kernel
// 16x16 output tile per block, one element per thread, K in steps of 16 through
// shared memory. Reads any layout and alignment element by element.
#define SIMPLE_T 16

__global__ void __launch_bounds__(SIMPLE_T *SIMPLE_T)
    mm_simple_kernel(gllm_mm_params p)
{
    __shared__ float As[SIMPLE_T][SIMPLE_T + 1];
    __shared__ float Bs[SIMPLE_T][SIMPLE_T + 1];
    int b = blockIdx.z;
    int tx = threadIdx.x, ty = threadIdx.y;
    int m0 = blockIdx.y * SIMPLE_T, n0 = blockIdx.x * SIMPLE_T;
    const __nv_bfloat16 *A = p.A + (int64_t)b * p.sa;
    const __nv_bfloat16 *B = p.B + (int64_t)b * p.sb;
    float acc = 0.f;
    for (int k0 = 0; k0 < p.K; k0 += SIMPLE_T) {
        // As[i][kk] = op(A)[m0+i][k0+kk]; the thread mapping follows the stored
        // layout so that consecutive threads read consecutive addresses.
        if (p.trans_a) {
            int k = k0 + ty, m = m0 + tx;
            As[tx][ty] = (k < p.K && m < p.M) ? __bfloat162float(A[(int64_t)k * p.lda + m]) : 0.f;
        } else {
            int m = m0 + ty, k = k0 + tx;
            As[ty][tx] = (k < p.K && m < p.M) ? __bfloat162float(A[(int64_t)m * p.lda + k]) : 0.f;
        }
        // Bs[kk][j] = op(B)[k0+kk][n0+j]
        if (p.trans_b) {
            int n = n0 + ty, k = k0 + tx;
            Bs[tx][ty] = (k < p.K && n < p.N) ? __bfloat162float(B[(int64_t)n * p.ldb + k]) : 0.f;
        } else {
            int k = k0 + ty, n = n0 + tx;
            Bs[ty][tx] = (k < p.K && n < p.N) ? __bfloat162float(B[(int64_t)k * p.ldb + n]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SIMPLE_T; kk++)
            acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();
    }
    int m = m0 + ty, n = n0 + tx;
    if (m >= p.M || n >= p.N)
        return;
    int64_t idx = (int64_t)b * p.sc + (int64_t)m * p.ldc + n;
    if (p.c_f32) {
        float *C = (float *)p.C;
        C[idx] = gllm_mm_finish(p, idx, n, acc, p.beta != 0.f ? C[idx] : 0.f);
    } else {
        __nv_bfloat16 *C = (__nv_bfloat16 *)p.C;
        float old = p.beta != 0.f ? __bfloat162float(C[idx]) : 0.f;
        C[idx] = __float2bfloat16(gllm_mm_finish(p, idx, n, acc, old));
    }
}

gllm_status gllm_mm_launch_simple(gllm_cuda_ctx *c, const gllm_mm_params &p)
{
    dim3 grid(gllm_cdiv(p.N, SIMPLE_T), gllm_cdiv(p.M, SIMPLE_T), p.batch);
    if (grid.y > 65535)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "matmul simple: M=%d needs more than 65535 tile rows",
                         p.M);
    mm_simple_kernel<<<grid, dim3(SIMPLE_T, SIMPLE_T), 0, c->stream>>>(p);
    CUDA_LAUNCH_CHECK("mm_simple_kernel");
    return GLLM_OK;
}

// ------------------------------------------------------------------ dispatch
gllm_status gllm_mm_resolve(void *C, const void *A, const void *B, const gllm_matmul_args *a,
                            gllm_mm_params *p)
{
    if (!a || !A || !B || !C)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: NULL argument");
    if (a->M < 0 || a->N < 0 || a->K < 0)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: negative shape M=%d N=%d K=%d", a->M, a->N,
                         a->K);
    p->M = a->M;
    p->N = a->N;
    p->K = a->K;
    p->trans_a = a->trans_a;
    p->trans_b = a->trans_b;
    p->lda = a->lda ? a->lda : (a->trans_a ? a->M : a->K);
    p->ldb = a->ldb ? a->ldb : (a->trans_b ? a->K : a->N);
    p->ldc = a->ldc ? a->ldc : a->N;
    int need_a = a->trans_a ? a->M : a->K, need_b = a->trans_b ? a->K : a->N;
    if (p->lda < need_a || p->ldb < need_b || p->ldc < a->N)
        return gllm_fail(GLLM_ERR_INVALID,
                         "matmul: leading dimensions lda=%d ldb=%d ldc=%d below %d, %d, %d "
                         "(M=%d N=%d K=%d trans_a=%d trans_b=%d)",
                         p->lda, p->ldb, p->ldc, need_a, need_b, a->N, a->M, a->N, a->K,
                         (int)a->trans_a, (int)a->trans_b);
    if (a->c_f32 && (a->bias || a->epilogue != GLLM_EPI_NONE || a->residual))
        return gllm_fail(GLLM_ERR_INVALID, "matmul: bias, epilogue and residual need a bf16 C");
    if (a->epilogue != GLLM_EPI_NONE && a->epilogue != GLLM_EPI_GELU)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: unknown epilogue %d", (int)a->epilogue);
    if (a->residual && a->residual == C)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: residual must not alias C");
    p->batch = a->batch > 1 ? a->batch : 1;
    if (p->batch > 65535)
        return gllm_fail(GLLM_ERR_UNSUPPORTED, "matmul: batch %d above 65535", p->batch);
    p->sa = a->stride_a;
    p->sb = a->stride_b;
    p->sc = a->stride_c;
    if (p->batch > 1 && p->sc == 0)
        return gllm_fail(GLLM_ERR_INVALID, "matmul: batch %d with stride_c 0", p->batch);
    p->A = (const __nv_bfloat16 *)A;
    p->B = (const __nv_bfloat16 *)B;
    p->C = C;
    p->alpha = a->alpha;
    p->beta = a->beta;
    p->c_f32 = a->c_f32;
    p->gelu = a->epilogue == GLLM_EPI_GELU;
    p->bias = (const __nv_bfloat16 *)a->bias;
    p->residual = (const __nv_bfloat16 *)a->residual;
    size_t esz = a->c_f32 ? 4 : 2;
    p->pair_ok = p->ldc % 2 == 0 && p->sc % 2 == 0 && (uintptr_t)C % (2 * esz) == 0 &&
                 (!p->residual || (uintptr_t)p->residual % 4 == 0);
    return GLLM_OK;
}

gllm_status gllm_cuda_matmul_path(gllm_cuda_ctx *c, gllm_matmul_path path, void *C,
                                  const void *A, const void *B, const gllm_matmul_args *a)
{
    if (path == GLLM_MM_CUBLASLT)
        return gllm_cuda_matmul_cublaslt(c, C, A, B, a);
    gllm_mm_params p;
    GLLM_TRY(gllm_mm_resolve(C, A, B, a, &p));
    if (p.M == 0 || p.N == 0)
        return GLLM_OK;
    switch (path) {
    case GLLM_MM_SIMPLE: return gllm_mm_launch_simple(c, p);
    case GLLM_MM_MMA: return gllm_mm_launch_mma(c, p);
    case GLLM_MM_WGMMA: return gllm_mm_launch_wgmma(c, p);
    case GLLM_MM_WGMMA_128: return gllm_mm_launch_wgmma(c, p, 128);
    case GLLM_MM_WGMMA_256: return gllm_mm_launch_wgmma(c, p, 256);
    case GLLM_MM_AUTO:
        break;
    default:
        return gllm_fail(GLLM_ERR_INVALID, "matmul: unknown path %d", (int)path);
    }
    // Each fast path declines with GLLM_ERR_UNSUPPORTED (layout, alignment,
    // device) before launching anything; the next one down takes the call.
    gllm_status s;
    if (c->hopper) {
        s = gllm_mm_launch_wgmma(c, p);
        if (s != GLLM_ERR_UNSUPPORTED)
            return s;
    }
    if (c->sm_major >= 8) {
        s = gllm_mm_launch_mma(c, p);
        if (s != GLLM_ERR_UNSUPPORTED)
            return s;
    }
    gllm_clear_error();
    return gllm_mm_launch_simple(c, p);
}

// Row-invariant calls (args.row_invariant: inference, where a request's
// output must not depend on what else is in the batch) take one kernel whatever
// the shape: the mma kernel, with its fixed 128x128x32 tile and 8 warps, K
// summed tile after tile in order, each step one m16n8k16 mma into the same
// fp32 accumulator, and no split-K. An output element's sum then depends only
// on its row of A, its column of B and K: not on M, nor on which tile or
// fragment row it falls in, nor on the other rows. The other paths choose by
// shape: cuBLASLt's heuristics (algorithms, split-K among them), and wgmma's
// tile width. Operands off mma's 16-byte rows take the simple kernel (one fp32
// sum per element, k in order), a choice made from pointers, leading
// dimensions and strides, never from M. Unverified on a GPU so far: the
// op harness (tests/backend/ops_cases.h, check_matmul_rows) checks it on one.
static gllm_status matmul_row_invariant(gllm_cuda_ctx *c, void *C, const void *A, const void *B,
                                        const gllm_matmul_args *a)
{
    gllm_mm_params p;
    GLLM_TRY(gllm_mm_resolve(C, A, B, a, &p));
    if (p.M == 0 || p.N == 0)
        return GLLM_OK;
    gllm_status s = gllm_mm_launch_mma(c, p);
    if (s != GLLM_ERR_UNSUPPORTED)
        return s;
    gllm_clear_error();
    return gllm_mm_launch_simple(c, p);
}

gllm_status gllm_cuda_matmul(gllm_cuda_ctx *c, void *C, const void *A, const void *B,
                             const gllm_matmul_args *a)
{
    if (a && a->row_invariant)
        return matmul_row_invariant(c, C, A, B, a);
    if (c->use_cublaslt) {
        // cuBLASLt may have no algorithm for operands off its alignments: gllm's
        // own kernels serve those calls
        gllm_status s = gllm_cuda_matmul_path(c, GLLM_MM_CUBLASLT, C, A, B, a);
        if (s != GLLM_ERR_UNSUPPORTED)
            return s;
        gllm_clear_error();
    }
    return gllm_cuda_matmul_path(c, GLLM_MM_AUTO, C, A, B, a);
}

extern "C" gllm_status gllm_cuda_matmul_with(gllm_backend *be, gllm_matmul_path path, void *C,
                                             const void *A, const void *B,
                                             const gllm_matmul_args *a)
{
    if (!be || strncmp(be->name, "cuda", 4) != 0)
        return gllm_fail(GLLM_ERR_INVALID, "gllm_cuda_matmul_with: backend '%s' is not CUDA",
                         be ? be->name : "(null)");
    return gllm_cuda_matmul_path(gllm_cuda(be), path, C, A, B, a);
}
