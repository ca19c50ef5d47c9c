// The cuBLASLt calls of cublaslt_baseline.cu, for the CUDA emulator: handles,
// descriptors, layouts and preferences that keep what is set on them, a
// heuristic that checks the problem and returns one algorithm remembering the
// operand alignments it was chosen for, and a matmul (column-major, strided
// batches, fp32 accumulation, bias/GELU epilogues, bf16 or fp32 D) that refuses
// operands less aligned than that algorithm assumed, as the real library may
// misread them. NVIDIA's library is tested by NVIDIA; what this lets run on a
// CPU is gllm's code around it: layouts, transposes, plan caching.
#include <cublasLt.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <new>

#include "emu.h"

namespace {

struct lt_handle {
    int magic;
};

struct lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
    cublasLtEpilogue_t epi;
    const void *bias;
    cudaDataType_t bias_type;
};

struct lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    int batch;
    int64_t stride;
};

struct lt_pref {
    size_t workspace;
    uint32_t align[4]; // A, B, C, D
};

// what the algorithm assumed, kept in the opaque algo
struct lt_algo {
    uint32_t align[4];
    uint32_t magic;
};
static_assert(sizeof(lt_algo) <= sizeof(cublasLtMatmulAlgo_t), "algo fits");

constexpr uint32_t ALGO_MAGIC = 0x6c6c6d61;

template <typename T> cublasStatus_t set(T &dst, const void *buf, size_t n)
{
    if (!buf || n != sizeof(T))
        return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&dst, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

float load(cudaDataType_t t, const void *p, int64_t i)
{
    if (t == CUDA_R_32F)
        return ((const float *)p)[i];
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

void store(cudaDataType_t t, void *p, int64_t i, float v)
{
    if (t == CUDA_R_32F)
        ((float *)p)[i] = v;
    else
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
}

uint32_t alignment(const void *p)
{
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a /= 2;
    return a;
}

float gelu(float x)
{
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

} // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    *h = (cublasLtHandle_t) new (std::nothrow) lt_handle{1};
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    delete (lt_handle *)h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale)
{
    lt_desc *x = new (std::nothrow) lt_desc;
    if (!x)
        return CUBLAS_STATUS_ALLOC_FAILED;
    *x = lt_desc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL,
                 CUDA_R_16BF};
    *d = (cublasLtMatmulDesc_t)x;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    delete (lt_desc *)d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t n)
{
    lt_desc *x = (lt_desc *)d;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return set(x->ta, buf, n);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set(x->tb, buf, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set(x->epi, buf, n);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set(x->bias, buf, n);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set(x->bias_type, buf, n);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows,
                                          uint64_t cols, int64_t ld)
{
    if (ld < (int64_t)rows || rows == 0 || cols == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    lt_layout *x = new (std::nothrow) lt_layout{t, rows, cols, ld, 1, 0};
    if (!x)
        return CUBLAS_STATUS_ALLOC_FAILED;
    *l = (cublasLtMatrixLayout_t)x;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    delete (lt_layout *)l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l,
                                                cublasLtMatrixLayoutAttribute_t a,
                                                const void *buf, size_t n)
{
    lt_layout *x = (lt_layout *)l;
    switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set(x->batch, buf, n);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return set(x->stride, buf, n);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    lt_pref *x = new (std::nothrow) lt_pref{0, {256, 256, 256, 256}};
    if (!x)
        return CUBLAS_STATUS_ALLOC_FAILED;
    *p = (cublasLtMatmulPreference_t)x;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    delete (lt_pref *)p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a,
                                                    const void *buf, size_t n)
{
    lt_pref *x = (lt_pref *)p;
    switch (a) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return set(x->workspace, buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return set(x->align[0], buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return set(x->align[1], buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return set(x->align[2], buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return set(x->align[3], buf, n);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

static cublasStatus_t check_problem(const lt_desc *d, const lt_layout *a, const lt_layout *b,
                                    const lt_layout *c, const lt_layout *dd)
{
    const uint64_t m = d->ta == CUBLAS_OP_N ? a->rows : a->cols;
    const uint64_t k = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    const uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols;
    const uint64_t n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (k != kb || c->rows != m || c->cols != n || dd->rows != m || dd->cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (a->type != CUDA_R_16BF || b->type != CUDA_R_16BF ||
        (c->type != CUDA_R_16BF && c->type != CUDA_R_32F) || d->compute != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->batch != b->batch || a->batch != c->batch || a->batch < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                                              cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *res, int *found)
{
    (void)h;
    *found = 0;
    if (requested < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t st = check_problem((const lt_desc *)desc, (const lt_layout *)la,
                                      (const lt_layout *)lb, (const lt_layout *)lc,
                                      (const lt_layout *)ld);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    memset(&res[0], 0, sizeof res[0]);
    lt_algo a;
    memcpy(a.align, ((const lt_pref *)pref)->align, sizeof a.align);
    a.magic = ALGO_MAGIC;
    memcpy(&res[0].algo, &a, sizeof a);
    res[0].state = CUBLAS_STATUS_SUCCESS;
    res[0].wavesCount = 1.0f;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t la, const void *B,
                              cublasLtMatrixLayout_t lb, const void *beta, const void *C,
                              cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspace_bytes, cudaStream_t stream)
{
    (void)h, (void)workspace, (void)workspace_bytes, (void)stream;
    if (cudaPeekAtLastError() != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    const lt_desc *d = (const lt_desc *)desc;
    const lt_layout *a = (const lt_layout *)la, *b = (const lt_layout *)lb,
                    *c = (const lt_layout *)lc, *dl = (const lt_layout *)ld;
    cublasStatus_t st = check_problem(d, a, b, c, dl);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    lt_algo al;
    memcpy(&al, algo, sizeof al);
    if (al.magic != ALGO_MAGIC)
        return CUBLAS_STATUS_INVALID_VALUE;
    const void *ptr[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (alignment(ptr[i]) < al.align[i]) // the plan would read it with wider loads
            return CUBLAS_STATUS_INVALID_VALUE;
    const bool bias = d->epi == CUBLASLT_EPILOGUE_BIAS || d->epi == CUBLASLT_EPILOGUE_GELU_BIAS;
    const bool gl = d->epi == CUBLASLT_EPILOGUE_GELU || d->epi == CUBLASLT_EPILOGUE_GELU_BIAS;
    if (bias && !d->bias)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al_ = *(const float *)alpha, be = *(const float *)beta;
    const int64_t m = (int64_t)c->rows, n = (int64_t)c->cols;
    const int64_t k = d->ta == CUBLAS_OP_N ? (int64_t)a->cols : (int64_t)a->rows;
    for (int bt = 0; bt < a->batch; bt++) {
        const int64_t oa = bt * a->stride, ob = bt * b->stride, oc = bt * c->stride,
                      od = bt * dl->stride;
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++) {
                    const int64_t ia = d->ta == CUBLAS_OP_N ? i + p * a->ld : p + i * a->ld;
                    const int64_t ib = d->tb == CUBLAS_OP_N ? p + j * b->ld : j + p * b->ld;
                    s += (double)load(a->type, A, oa + ia) * load(b->type, B, ob + ib);
                }
                float v = al_ * (float)s;
                if (be != 0.0f)
                    v += be * load(c->type, C, oc + i + j * c->ld);
                if (bias)
                    v += load(d->bias_type, d->bias, i);
                if (gl)
                    v = gelu(v);
                store(dl->type, D, od + i + j * dl->ld, v);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t st)
{
    switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    default: return "CUBLAS_STATUS (emulator: other)";
    }
}

} // extern "C"
