// cuBLASLt behind gllm_matmul_args.
//
// cuBLASLt is column-major; a row-major [R,C] matrix with leading dimension ld
// is the column-major [C,R] one. So row-major C = op(A) op(B) is computed as
// column-major C^T = op(B)^T op(A)^T: cuBLASLt's first operand is our B, its
// second our A, and each is transposed exactly when ours is.
#include <mutex>
#include <string.h>

#include <cublasLt.h>

#include "cublaslt_baseline.cuh"
#include "matmul.cuh"

namespace {

// cublasGetStatusString lives in libcublas, which gllm does not link.
const char *lt_status_name(cublasStatus_t st)
{
    switch (st) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

gllm_status lt_fail(cublasStatus_t st, const char *what)
{
    return gllm_fail(st == CUBLAS_STATUS_ALLOC_FAILED ? GLLM_ERR_OOM : GLLM_ERR_BACKEND,
                     "cuBLASLt: %s failed: %s (status %d)", what, lt_status_name(st), (int)st);
}

#define LT_TRY(call)                                                                         \
    do {                                                                                     \
        cublasStatus_t lt_st_ = (call);                                                      \
        if (lt_st_ != CUBLAS_STATUS_SUCCESS) {                                               \
            gllm_status lt_s_ = lt_fail(lt_st_, #call);                                      \
            release(&e);                                                                     \
            return lt_s_;                                                                    \
        }                                                                                    \
    } while (0)

// Everything that selects a plan; zero-initialised so memcmp compares it.
struct plan_key {
    int device;
    int M, N, K, lda, ldb, ldc, batch;
    int64_t sa, sb, sc;
    int trans_a, trans_b, c_f32, bias, gelu, beta_nonzero;
    // Byte alignment (a power of two, at most 256) of every matrix the call
    // touches: cuBLASLt's heuristic assumes 256 unless told, and an algorithm
    // chosen for aligned operands may fail or misread on offset ones.
    int align_a, align_b, align_c;
    size_t workspace;
};

// The largest power of two (at most 256) dividing the address of every batch
// entry: the base pointer and, for batches, the byte stride between entries.
int alignment_of(const void *p, int batch, int64_t stride_elems, int elem_bytes)
{
    uint64_t v = (uint64_t)(uintptr_t)p | 256u;
    if (batch > 1)
        v |= (uint64_t)stride_elems * (uint64_t)elem_bytes;
    return (int)(v & (~v + 1)); // lowest set bit
}

struct plan {
    plan_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

void release(plan *e)
{
    if (e->desc)
        cublasLtMatmulDescDestroy(e->desc);
    if (e->la)
        cublasLtMatrixLayoutDestroy(e->la);
    if (e->lb)
        cublasLtMatrixLayoutDestroy(e->lb);
    if (e->lc)
        cublasLtMatrixLayoutDestroy(e->lc);
    memset(e, 0, sizeof *e);
}

// Plans are kept for the process lifetime: the bench and the tests replay a
// few dozen shapes, and the heuristic query costs more host time than the
// smaller GEMMs take on the GPU.
constexpr int CACHE = 64;
plan g_cache[CACHE];
int g_used, g_next;
std::mutex g_lock;

cublasStatus_t set_layout_batch(cublasLtMatrixLayout_t l, int batch, int64_t stride)
{
    cublasStatus_t st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &batch, sizeof batch);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    return cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                            &stride, sizeof stride);
}

gllm_status make_plan(cublasLtHandle_t h, const plan_key &k, plan *out)
{
    plan e;
    memset(&e, 0, sizeof e);
    e.key = k;
    LT_TRY(cublasLtMatmulDescCreate(&e.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t op_first = k.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_second = k.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_TRY(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                          sizeof op_first));
    LT_TRY(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                          sizeof op_second));
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (k.bias && k.gelu)
        epi = CUBLASLT_EPILOGUE_GELU_BIAS;
    else if (k.bias)
        epi = CUBLASLT_EPILOGUE_BIAS;
    else if (k.gelu)
        epi = CUBLASLT_EPILOGUE_GELU;
    LT_TRY(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (k.bias) {
        cudaDataType_t bt = CUDA_R_16BF;
        LT_TRY(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                              sizeof bt));
    }
    // Stored (pre-op) shapes, column-major: our B is [N,K] when not transposed
    // in row-major terms [K,N]; see the file comment.
    LT_TRY(cublasLtMatrixLayoutCreate(&e.la, CUDA_R_16BF, k.trans_b ? k.K : k.N,
                                      k.trans_b ? k.N : k.K, k.ldb));
    LT_TRY(cublasLtMatrixLayoutCreate(&e.lb, CUDA_R_16BF, k.trans_a ? k.M : k.K,
                                      k.trans_a ? k.K : k.M, k.lda));
    LT_TRY(cublasLtMatrixLayoutCreate(&e.lc, k.c_f32 ? CUDA_R_32F : CUDA_R_16BF, k.N, k.M, k.ldc));
    if (k.batch > 1) {
        LT_TRY(set_layout_batch(e.la, k.batch, k.sb));
        LT_TRY(set_layout_batch(e.lb, k.batch, k.sa));
        LT_TRY(set_layout_batch(e.lc, k.batch, k.sc));
    }
    cublasLtMatmulPreference_t pref;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = k.workspace;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    // cuBLASLt's A is our B and its B our A (see the file comment); C is also D.
    const uint32_t al[4] = {(uint32_t)k.align_b, (uint32_t)k.align_a, (uint32_t)k.align_c,
                            (uint32_t)k.align_c};
    const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; i++)
        st = cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &al[i], sizeof al[i]);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(h, e.desc, e.la, e.lb, e.lc, e.lc, pref, 1, &res,
                                            &found);
    cublasLtMatmulPreferenceDestroy(pref);
    LT_TRY(st);
    if (!found) {
        release(&e);
        return gllm_fail(GLLM_ERR_UNSUPPORTED,
                         "cuBLASLt: no algorithm for M=%d N=%d K=%d trans_a=%d trans_b=%d", k.M,
                         k.N, k.K, k.trans_a, k.trans_b);
    }
    e.algo = res.algo;
    *out = e;
    return GLLM_OK;
}

__global__ void add_residual_kernel(__nv_bfloat16 *C, const __nv_bfloat16 *R, int M, int N,
                                    int ldc, int64_t sc)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)M * N)
        return;
    int64_t off = (int64_t)blockIdx.y * sc;
    int m = (int)(i / N), n = (int)(i % N);
    int64_t idx = off + (int64_t)m * ldc + n;
    C[idx] = __float2bfloat16(__bfloat162float(C[idx]) + __bfloat162float(R[idx]));
}

} // namespace

gllm_status gllm_cuda_matmul_cublaslt(gllm_cuda_ctx *c, void *C, const void *A, const void *B,
                                      const gllm_matmul_args *a)
{
    gllm_mm_params p;
    GLLM_TRY(gllm_mm_resolve(C, A, B, a, &p));
    if (p.M == 0 || p.N == 0)
        return GLLM_OK;
    if (p.K == 0) // cuBLASLt rejects it; C = beta*C + epilogue is all there is to do
        return gllm_mm_launch_simple(c, p);
    if (!c->cublaslt) {
        cublasLtHandle_t h;
        cublasStatus_t st = cublasLtCreate(&h);
        if (st != CUBLAS_STATUS_SUCCESS)
            return lt_fail(st, "cublasLtCreate");
        c->cublaslt = h;
    }
    cublasLtHandle_t h = (cublasLtHandle_t)c->cublaslt;
    plan_key k;
    memset(&k, 0, sizeof k);
    k.device = c->device;
    k.M = p.M;
    k.N = p.N;
    k.K = p.K;
    k.lda = p.lda;
    k.ldb = p.ldb;
    k.ldc = p.ldc;
    k.batch = p.batch;
    k.sa = p.sa;
    k.sb = p.sb;
    k.sc = p.sc;
    k.trans_a = p.trans_a;
    k.trans_b = p.trans_b;
    k.c_f32 = p.c_f32;
    k.bias = p.bias != NULL;
    k.gelu = p.gelu;
    k.beta_nonzero = p.beta != 0.0f;
    k.align_a = alignment_of(A, p.batch, p.sa, 2);
    k.align_b = alignment_of(B, p.batch, p.sb, 2);
    k.align_c = alignment_of(C, p.batch, p.sc, p.c_f32 ? 4 : 2);
    k.workspace = c->workspace ? c->workspace_bytes : 0;

    plan e;
    {
        std::lock_guard<std::mutex> guard(g_lock);
        int hit = -1;
        for (int i = 0; i < g_used; i++)
            if (memcmp(&g_cache[i].key, &k, sizeof k) == 0)
                hit = i;
        if (hit < 0) {
            plan fresh;
            GLLM_TRY(make_plan(h, k, &fresh));
            if (g_used < CACHE) {
                hit = g_used++;
            } else {
                hit = g_next;
                release(&g_cache[hit]);
                g_next = (g_next + 1) % CACHE;
            }
            g_cache[hit] = fresh;
        }
        e = g_cache[hit];
        if (a->bias) {
            const void *bias = a->bias;
            cublasStatus_t st = cublasLtMatmulDescSetAttribute(
                e.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
            if (st != CUBLAS_STATUS_SUCCESS)
                return lt_fail(st, "setting the bias pointer");
        }
        float alpha = a->alpha, beta = a->beta;
        cublasStatus_t st = cublasLtMatmul(h, e.desc, &alpha, B, e.la, A, e.lb, &beta, C, e.lc, C,
                                           e.lc, &e.algo, c->workspace, k.workspace, c->stream);
        if (st != CUBLAS_STATUS_SUCCESS)
            return lt_fail(st, "cublasLtMatmul");
    }
    if (a->residual) {
        int64_t per = (int64_t)a->M * a->N;
        dim3 grid((unsigned)((per + 255) / 256), k.batch);
        add_residual_kernel<<<grid, 256, 0, c->stream>>>((__nv_bfloat16 *)C,
                                                         (const __nv_bfloat16 *)a->residual, a->M,
                                                         a->N, k.ldc, k.sc);
        CUDA_LAUNCH_CHECK("add_residual_kernel");
    }
    return GLLM_OK;
}
