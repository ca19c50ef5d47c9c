/* The CPU backend's forward semantics against direct double-precision formulas
 * (the PyTorch/HF definitions), BLAS against plain loops, decode against the
 * full attention, and the optimizer, loss, sampling and error paths. */
#include "gllm/backend.h"
#include "backend/cpu/cpu_internal.h"
#include "gllm/backend_cpu.h"
#include "test_util.h"

static float *rnd(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    test_fill(x, n, scale);
    return x;
}

static void to_f32(float *dst, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

static double gelu_d(double x)
{
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* C = alpha op(A) op(B) + beta C (+bias, gelu, +residual) in double. */
static void matmul_ref(float *C, const float *A, const float *B, const gllm_matmul_args *a)
{
    int lda = a->lda ? a->lda : (a->trans_a ? a->M : a->K);
    int ldb = a->ldb ? a->ldb : (a->trans_b ? a->K : a->N);
    int ldc = a->ldc ? a->ldc : a->N;
    const float *bias = a->bias, *res = a->residual;
    for (int b = 0; b < (a->batch > 1 ? a->batch : 1); b++)
        for (int m = 0; m < a->M; m++)
            for (int n = 0; n < a->N; n++) {
                double s = 0;
                for (int k = 0; k < a->K; k++) {
                    double x = a->trans_a ? A[b * a->stride_a + (size_t)k * lda + m]
                                          : A[b * a->stride_a + (size_t)m * lda + k];
                    double y = a->trans_b ? B[b * a->stride_b + (size_t)n * ldb + k]
                                          : B[b * a->stride_b + (size_t)k * ldb + n];
                    s += x * y;
                }
                size_t ci = b * a->stride_c + (size_t)m * ldc + n;
                double c = a->alpha * s + (a->beta != 0 ? a->beta * C[ci] : 0);
                if (bias)
                    c += bias[n];
                if (a->epilogue == GLLM_EPI_GELU)
                    c = gelu_d(c);
                if (res)
                    c += res[ci];
                C[ci] = (float)c;
            }
}

static void test_matmul(gllm_backend *be)
{
    static const struct {
        int M, N, K;
        bool ta, tb;
        int pad, batch;
        float alpha, beta;
        bool bias, gelu, res;
    } cfg[] = {
        {7, 5, 11, false, false, 0, 1, 1, 0, false, false, false},
        {13, 9, 6, false, true, 0, 1, 1, 0, true, true, false},
        {6, 17, 9, true, false, 0, 1, 1, 1, false, false, false},
        {5, 3, 31, true, true, 3, 1, 0.5f, 0, false, false, false},
        {9, 10, 8, false, true, 2, 1, 1, 0.75f, true, false, true},
        {4, 6, 5, false, false, 1, 3, 2, 0, false, true, true},
        {33, 65, 47, true, false, 0, 2, 1, 1, false, false, false},
    };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        t_case = "matmul: blas and loops vs double";
        gllm_matmul_args a = {.M = cfg[i].M, .N = cfg[i].N, .K = cfg[i].K,
                              .trans_a = cfg[i].ta, .trans_b = cfg[i].tb,
                              .alpha = cfg[i].alpha, .beta = cfg[i].beta,
                              .batch = cfg[i].batch,
                              .c_f32 = !cfg[i].bias && !cfg[i].gelu && !cfg[i].res,
                              .epilogue = cfg[i].gelu ? GLLM_EPI_GELU : GLLM_EPI_NONE};
        int ar = a.trans_a ? a.K : a.M, ac = a.trans_a ? a.M : a.K;
        int br = a.trans_b ? a.N : a.K, bc = a.trans_b ? a.K : a.N;
        if (cfg[i].pad) {
            a.lda = ac + cfg[i].pad;
            a.ldb = bc + cfg[i].pad;
            a.ldc = a.N + cfg[i].pad;
        }
        int lda = a.lda ? a.lda : ac, ldb = a.ldb ? a.ldb : bc, ldc = a.ldc ? a.ldc : a.N;
        a.stride_a = (int64_t)ar * lda;
        a.stride_b = (int64_t)br * ldb;
        a.stride_c = (int64_t)a.M * ldc;
        int nb = a.batch > 1 ? a.batch : 1;
        size_t nA = (size_t)nb * a.stride_a, nB = (size_t)nb * a.stride_b;
        size_t nC = (size_t)nb * a.stride_c;
        float *A = rnd(nA, 1), *B = rnd(nB, 1), *C0 = rnd(nC, 1), *bias = rnd((size_t)a.N, 1);
        float *R = rnd(nC, 1), *ref = malloc(nC * 4), *c1 = malloc(nC * 4), *c2 = malloc(nC * 4);
        a.bias = cfg[i].bias ? bias : NULL;
        a.residual = cfg[i].res ? R : NULL;
        memcpy(ref, C0, nC * 4);
        matmul_ref(ref, A, B, &a);
        memcpy(c1, C0, nC * 4);
        memcpy(c2, C0, nC * 4);
        if (a.beta == 0) /* beta = 0 must not read C */
            for (size_t j = 0; j < nC; j++)
                c1[j] = c2[j] = NAN;
        CHECK_OK(be->matmul(be, c1, A, B, &a));
        if (gllm_backend_cpu_has_blas()) {
            CHECK_OK(gllm_backend_cpu_set_blas(be, false));
            CHECK_OK(be->matmul(be, c2, A, B, &a));
            CHECK_OK(gllm_backend_cpu_set_blas(be, true));
            /* padding columns are outside C, so compare the rows' first N only */
            for (size_t j = 0; j < nC; j++)
                if (j % (size_t)ldc >= (size_t)a.N)
                    c1[j] = c2[j] = ref[j];
            CHECK_REL(c2, ref, nC, 1e-5);
            CHECK_REL(c2, c1, nC, 1e-5);
        }
        for (size_t j = 0; j < nC; j++)
            if (j % (size_t)ldc >= (size_t)a.N)
                c1[j] = ref[j];
        CHECK_REL(c1, ref, nC, 1e-5);
        free(A), free(B), free(C0), free(bias), free(R), free(ref), free(c1), free(c2);
    }
}

static void make_pos(int32_t *pos, int B, int T)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            pos[b * T + t] = t == 0 || test_rand_u64() % 4 == 0 ? 0 : pos[b * T + t - 1] + 1;
}

/* softmax(q k^T * scale) v over the visible keys, in double, and the lse */
static void attention_ref(float *out, float *lse, const float *qkv, const int32_t *pos,
                          const gllm_attn_shape *s)
{
    int W = (s->Hq + 2 * s->Hkv) * s->D, D = s->D;
    for (int n = 0; n < s->B * s->T; n++)
        for (int h = 0; h < s->Hq; h++) {
            int g = h / (s->Hq / s->Hkv);
            double w[512], mx = -INFINITY, sum = 0;
            for (int m = 0; m <= n; m++) {
                bool vis = m >= n - pos[n] && (s->window <= 0 || n - m < s->window);
                w[m] = -INFINITY;
                if (!vis)
                    continue;
                double d = 0;
                for (int i = 0; i < D; i++)
                    d += (double)qkv[n * W + h * D + i] * qkv[m * W + (s->Hq + g) * D + i];
                w[m] = d * s->scale;
                mx = w[m] > mx ? w[m] : mx;
            }
            for (int m = 0; m <= n; m++)
                sum += w[m] == -INFINITY ? 0 : exp(w[m] - mx);
            for (int i = 0; i < D; i++) {
                double o = 0;
                for (int m = 0; m <= n; m++)
                    if (w[m] != -INFINITY)
                        o += exp(w[m] - mx) / sum * qkv[m * W + (s->Hq + s->Hkv + g) * D + i];
                out[(n * s->Hq + h) * D + i] = (float)o;
            }
            lse[n * s->Hq + h] = (float)(mx + log(sum));
        }
}

static void test_attention(gllm_backend *be)
{
    static const gllm_attn_shape shapes[] = {
        {2, 19, 4, 2, 8, 0, 0.35f}, {1, 23, 3, 1, 5, 6, 0.4f}, {3, 7, 2, 2, 16, 1, 0.25f}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const gllm_attn_shape *s = &shapes[c];
        int N = s->B * s->T, W = (s->Hq + 2 * s->Hkv) * s->D, OW = s->Hq * s->D;
        float *qkv = rnd((size_t)N * W, 2), *out = malloc((size_t)N * OW * 4);
        float *ref = malloc((size_t)N * OW * 4), *lse = malloc((size_t)N * s->Hq * 4);
        float *lse_ref = malloc((size_t)N * s->Hq * 4);
        int32_t *pos = malloc((size_t)N * 4);
        t_case = "attention_fwd vs double (packed docs, GQA, window)";
        make_pos(pos, s->B, s->T);
        attention_ref(ref, lse_ref, qkv, pos, s);
        CHECK_OK(be->attention_fwd(be, out, lse, qkv, pos, s));
        CHECK_REL(out, ref, (size_t)N * OW, 1e-5);
        CHECK_REL(lse, lse_ref, (size_t)N * s->Hq, 1e-5);

        /* One document per row: decode of the last token over a paged cache whose
         * blocks are scattered must give the full attention's last row. */
        t_case = "attention_decode vs attention_fwd";
        for (int n = 0; n < N; n++)
            pos[n] = n % s->T;
        CHECK_OK(be->attention_fwd(be, out, lse, qkv, pos, s));
        int bs = 4, max_blocks = (s->T + bs - 1) / bs, n_blocks = s->B * max_blocks + 3;
        size_t slot_sz = (size_t)s->Hkv * s->D;
        gllm_kv_cache kv = {malloc((size_t)n_blocks * bs * slot_sz * 4),
                            malloc((size_t)n_blocks * bs * slot_sz * 4), n_blocks, bs, s->Hkv,
                            s->D};
        int32_t *table = malloc((size_t)s->B * max_blocks * 4), *slot = malloc((size_t)N * 4);
        int32_t *len = malloc((size_t)s->B * 4);
        for (int i = 0; i < s->B * max_blocks; i++) /* reversed, not in row order */
            table[i] = n_blocks - 1 - i;
        float *q_last = malloc((size_t)s->B * W * 4), *dec = malloc((size_t)s->B * OW * 4);
        float *want = malloc((size_t)s->B * OW * 4);
        for (int b = 0; b < s->B; b++) {
            /* each row's prefix has a different length: keep it at T - b */
            int L = s->T - b;
            len[b] = L;
            for (int t = 0; t < L; t++)
                slot[t] = table[b * max_blocks + t / bs] * bs + t % bs;
            CHECK_OK(be->kv_store(be, &kv, qkv + (size_t)b * s->T * W, slot, L, s->Hq));
            memcpy(q_last + (size_t)b * W, qkv + ((size_t)b * s->T + L - 1) * W, (size_t)W * 4);
            memcpy(want + (size_t)b * OW, out + ((size_t)b * s->T + L - 1) * OW, (size_t)OW * 4);
        }
        CHECK_OK(be->attention_decode(be, dec, q_last, &kv, table, max_blocks, len, s->B, s->Hq,
                                      s->window, s->scale));
        CHECK_REL(dec, want, (size_t)s->B * OW, 1e-5);
        free(kv.k), free(kv.v), free(table), free(slot), free(len), free(q_last), free(dec);
        free(want), free(qkv), free(out), free(ref), free(lse), free(lse_ref), free(pos);
    }
}

static void test_norms_rope(gllm_backend *be)
{
    int N = 5, C = 37;
    float *x = rnd((size_t)N * C, 2), *w = rnd(C, 1), *b = rnd(C, 1);
    float *y = malloc((size_t)N * C * 4);
    float *ref = malloc((size_t)N * C * 4), mean[5], rstd[5];
    t_case = "layernorm_fwd vs torch formula";
    for (int n = 0; n < N; n++) {
        double mu = 0, var = 0;
        for (int c = 0; c < C; c++)
            mu += x[n * C + c] / (double)C;
        for (int c = 0; c < C; c++)
            var += (x[n * C + c] - mu) * (x[n * C + c] - mu) / C;
        for (int c = 0; c < C; c++)
            ref[n * C + c] = (float)((x[n * C + c] - mu) / sqrt(var + 1e-5) * w[c] + b[c]);
    }
    CHECK_OK(be->layernorm_fwd(be, y, mean, rstd, x, w, b, N, C, 1e-5f));
    CHECK_REL(y, ref, (size_t)N * C, 1e-6);

    t_case = "rmsnorm_fwd vs HF LlamaRMSNorm";
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int c = 0; c < C; c++)
            ms += (double)x[n * C + c] * x[n * C + c] / C;
        for (int c = 0; c < C; c++)
            ref[n * C + c] = (float)(w[c] * x[n * C + c] / sqrt(ms + 1e-6));
    }
    CHECK_OK(be->rmsnorm_fwd(be, y, rstd, x, w, N, C, 1e-6f));
    CHECK_REL(y, ref, (size_t)N * C, 1e-6);

    t_case = "norm backward accumulates into dinp";
    float *g = rnd((size_t)N * C, 1), *d0 = calloc((size_t)N * C, 4), *d1 = rnd((size_t)N * C, 1);
    float *dw = calloc(C, 4), *prev = malloc((size_t)N * C * 4);
    memcpy(prev, d1, (size_t)N * C * 4);
    CHECK_OK(be->rmsnorm_bwd(be, d0, dw, g, x, w, rstd, N, C));
    CHECK_OK(be->rmsnorm_bwd(be, d1, dw, g, x, w, rstd, N, C));
    for (size_t i = 0; i < (size_t)N * C; i++)
        prev[i] += d0[i];
    CHECK_REL(d1, prev, (size_t)N * C, 1e-6);

    /* HF: q * cos + rotate_half(q) * sin, rotate_half(x) = cat(-x2, x1), cos = cat(c, c) */
    t_case = "rope_fwd vs HF rotate_half";
    int T = 6, H = 2, hd = 12, rot = 8, stride = 30, col0 = 3;
    float *q = rnd((size_t)T * stride, 1), *qr = malloc((size_t)T * stride * 4), inv[4];
    float *qe = malloc((size_t)T * stride * 4);
    int32_t pos[6] = {0, 1, 2, 0, 1, 3000};
    for (int i = 0; i < rot / 2; i++)
        inv[i] = (float)pow(500000.0, -2.0 * i / rot);
    memcpy(qr, q, (size_t)T * stride * 4);
    memcpy(qe, q, (size_t)T * stride * 4);
    float af = 1.25f;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < rot; i++) {
                const float *xh = q + t * stride + col0 + h * hd;
                int j = i % (rot / 2);
                double th = (double)(float)((float)pos[t] * inv[j]);
                double rh = i < rot / 2 ? -xh[i + rot / 2] : xh[i - rot / 2];
                qe[t * stride + col0 + h * hd + i] = (float)(af * (xh[i] * cos(th) + rh * sin(th)));
            }
    gllm_rope_args ra = {T, H, hd, rot, stride, inv, af};
    CHECK_OK(be->rope_fwd(be, qr + col0, pos, &ra));
    CHECK_REL(qr, qe, (size_t)T * stride, 1e-6);

    /* The backend keeps the rotations per position in a table; a position past
     * what a table covers sends the whole call down the path that computes the
     * angles in place. Both must give the same bits for the same positions. */
    t_case = "rope_fwd: table path == in-place path, bit for bit";
    int32_t pos2[7] = {0, 1, 2, 0, 1, 3000, 1 << 24};
    float *q2 = malloc((size_t)(T + 1) * stride * 4);
    memcpy(q2, q, (size_t)T * stride * 4);
    memcpy(q2 + (size_t)T * stride, q, (size_t)stride * 4);
    gllm_rope_args ra2 = {T + 1, H, hd, rot, stride, inv, af};
    CHECK_OK(be->rope_fwd(be, q2 + col0, pos2, &ra2));
    CHECK(memcmp(q2, qr, (size_t)T * stride * 4) == 0);
    /* other frequencies (another model on the same backend) rebuild the table */
    t_case = "rope_fwd: new inv_freq after a table was built";
    float inv3[4];
    for (int i = 0; i < rot / 2; i++)
        inv3[i] = (float)pow(10000.0, -2.0 * i / rot);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < rot; i++) {
                const float *xh = q + t * stride + col0 + h * hd;
                int j = i % (rot / 2);
                double th = (double)(float)((float)pos[t] * inv3[j]);
                double rh = i < rot / 2 ? -xh[i + rot / 2] : xh[i - rot / 2];
                qe[t * stride + col0 + h * hd + i] = (float)(af * (xh[i] * cos(th) + rh * sin(th)));
            }
    memcpy(qr, q, (size_t)T * stride * 4);
    gllm_rope_args ra3 = {T, H, hd, rot, stride, inv3, af};
    CHECK_OK(be->rope_fwd(be, qr + col0, pos, &ra3));
    CHECK_REL(qr, qe, (size_t)T * stride, 1e-6);
    free(q2);
    free(x), free(w), free(b), free(y), free(ref), free(g), free(d0), free(d1), free(dw);
    free(prev), free(q), free(qr), free(qe);
}

static void test_pointwise(gllm_backend *be)
{
    int N = 4, I = 21;
    size_t n = (size_t)N * 2 * I;
    float *x = rnd(n, 4), *y = malloc(n * 4), *ref = malloc(n * 4);
    t_case = "gelu_fwd vs tanh formula";
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)gelu_d(x[i]);
    CHECK_OK(be->gelu_fwd(be, y, x, n));
    CHECK_REL(y, ref, n, 1e-6);
    t_case = "swiglu_fwd: silu(gate) * up";
    for (int r = 0; r < N; r++)
        for (int i = 0; i < I; i++) {
            double gte = x[r * 2 * I + i], up = x[r * 2 * I + I + i];
            ref[r * I + i] = (float)(gte / (1 + exp(-gte)) * up);
        }
    CHECK_OK(be->swiglu_fwd(be, y, x, N, I));
    CHECK_REL(y, ref, (size_t)N * I, 1e-6);
    t_case = "embed_fwd: wte[id] + wpe[pos]";
    float *wte = rnd(7 * 5, 1), *wpe = rnd(4 * 5, 1);
    int32_t ids[3] = {6, 0, 6}, pos[3] = {0, 3, 1};
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < 5; c++)
            ref[t * 5 + c] = wte[ids[t] * 5 + c] + wpe[pos[t] * 5 + c];
    CHECK_OK(be->embed_fwd(be, y, ids, pos, wte, wpe, 3, 5));
    CHECK_REL(y, ref, 15, 0);
    free(x), free(y), free(ref), free(wte), free(wpe);
}

static void test_xent(gllm_backend *be)
{
    int N = 6, V = 1001;
    float *x = rnd((size_t)N * V, 8), *ref = malloc((size_t)N * V * 4), loss[6], lref[6];
    float mask[6] = {1, 0, 1, 1, 0, 1};
    int32_t tgt[6] = {0, -5, 1000, 17, 99999, 500}; /* masked rows carry invalid targets */
    t_case = "xent_fwd_bwd vs double (with -inf logits)";
    x[3 * V + 4] = 80.0f; /* one large logit: the max-subtraction keeps exp finite */
    for (int v = 0; v < V; v += 8) /* masked vocabulary (-inf), the first column too */
        x[5 * V + v] = x[3 * V + v] = -INFINITY;
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * V;
        double s = 0;
        for (int v = 0; v < V; v++)
            s += exp((double)r[v]);
        double lse = log(s);
        lref[n] = mask[n] ? (float)(lse - r[tgt[n]]) : 0;
        for (int v = 0; v < V; v++)
            ref[n * V + v] = mask[n] ? (float)(0.5 * (exp(r[v] - lse) - (v == tgt[n]))) : 0;
    }
    CHECK_OK(be->xent_fwd_bwd(be, loss, x, tgt, mask, N, V, 0.5f));
    CHECK_REL(loss, lref, 6, 1e-6);
    CHECK_REL(x, ref, (size_t)N * V, 1e-5);
    t_case = "xent rejects an out-of-range target";
    mask[1] = 1;
    CHECK_ERR(be->xent_fwd_bwd(be, loss, x, tgt, mask, N, V, 0.5f), GLLM_ERR_INVALID, "targets[1]");
    free(x), free(ref);
}

static void test_optim(gllm_backend *be, gllm_backend *be1)
{
    size_t n = 100003;
    float *g = rnd(n, 3), s2, s1;
    t_case = "sumsq vs double, same bits on 1 and 2 threads";
    double ref = 0;
    for (size_t i = 0; i < n; i++)
        ref += (double)g[i] * g[i];
    CHECK_OK(be->sumsq(be, &s2, g, n));
    CHECK_OK(be1->sumsq(be1, &s1, g, n));
    CHECK(fabs(s2 - ref) <= 1e-6 * ref);
    CHECK(memcmp(&s1, &s2, sizeof s1) == 0);

    t_case = "adamw vs torch.optim.AdamW formula in double";
    size_t P = 1000;
    float *w = rnd(P, 1), *m = calloc(P, 4), *v = calloc(P, 4), *gr = malloc(P * 4);
    double *wd = malloc(P * 8), *md = calloc(P, 8), *vd = calloc(P, 8);
    for (size_t i = 0; i < P; i++)
        wd[i] = w[i];
    gllm_param_segment segs[2] = {{0, 600, 0.1f}, {650, 350, 0.0f}}; /* 600..649 untouched */
    for (int step = 1; step <= 3; step++) {
        test_fill(gr, P, 1);
        gllm_adamw_args a = {1e-2f, 0.9f, 0.95f, 1e-8f, step, 0.5f};
        CHECK_OK(be->adamw(be, w, NULL, gr, m, v, segs, 2, &a));
        for (int sg = 0; sg < 2; sg++)
            for (size_t i = segs[sg].offset; i < segs[sg].offset + segs[sg].n; i++) {
                double gg = gr[i] * 0.5;
                md[i] = 0.9 * md[i] + 0.1 * gg;
                vd[i] = 0.95 * vd[i] + 0.05 * gg * gg;
                double mh = md[i] / (1 - pow(0.9, step)), vh = vd[i] / (1 - pow(0.95, step));
                wd[i] = wd[i] * (1 - 1e-2 * segs[sg].weight_decay) - 1e-2 * mh / (sqrt(vh) + 1e-8);
            }
    }
    float *wref = malloc(P * 4);
    to_f32(wref, wd, P);
    CHECK_REL(w, wref, P, 1e-6);
    CHECK(m[620] == 0 && v[620] == 0);
    free(g), free(w), free(m), free(v), free(gr), free(wd), free(md), free(vd), free(wref);
}

static void test_sample(gllm_backend *be, gllm_backend *be1)
{
    enum { V = 6, R = 12000 };
    static const float p[V] = {0.05f, 0.3f, 0.1f, 0.3f, 0.15f, 0.1f};
    float *logits = malloc((size_t)R * V * 4);
    uint64_t *seeds = malloc(R * 8);
    int32_t *ids = malloc(R * 4), *ids1 = malloc(R * 4);
    for (int r = 0; r < R; r++) {
        seeds[r] = test_rand_u64();
        for (int v = 0; v < V; v++)
            logits[r * V + v] = logf(p[v]) + 3.0f; /* a shift changes nothing */
    }
    t_case = "greedy: argmax, ties to the lowest id";
    gllm_sample_args greedy = {0, 0, 1};
    CHECK_OK(be->sample(be, ids, logits, 2, V, &greedy, NULL));
    CHECK(ids[0] == 1 && ids[1] == 1);

    t_case = "sampling follows softmax(logits / T) and is reproducible";
    gllm_sample_args a = {1.0f, 0, 1.0f};
    int cnt[V] = {0};
    CHECK_OK(be->sample(be, ids, logits, R, V, &a, seeds));
    CHECK_OK(be1->sample(be1, ids1, logits, R, V, &a, seeds));
    CHECK(memcmp(ids, ids1, R * 4) == 0);
    for (int r = 0; r < R; r++)
        cnt[ids[r]]++;
    for (int v = 0; v < V; v++)
        CHECK_MSG(fabs(cnt[v] / (double)R - p[v]) < 0.015, "id %d drawn %d of %d", v, cnt[v], R);

    t_case = "top-k keeps the k most likely (ties to the lower id)";
    gllm_sample_args k2 = {1.0f, 2, 1.0f};
    memset(cnt, 0, sizeof cnt);
    CHECK_OK(be->sample(be, ids, logits, R, V, &k2, seeds));
    for (int r = 0; r < R; r++)
        cnt[ids[r]]++;
    CHECK(cnt[1] + cnt[3] == R && cnt[1] > R / 3 && cnt[3] > R / 3);

    t_case = "top-p keeps the shortest prefix reaching p";
    gllm_sample_args p7 = {1.0f, 0, 0.7f}; /* 0.3 + 0.3 + 0.15 reaches 0.7 */
    memset(cnt, 0, sizeof cnt);
    CHECK_OK(be->sample(be, ids, logits, R, V, &p7, seeds));
    for (int r = 0; r < R; r++)
        cnt[ids[r]]++;
    CHECK(cnt[1] + cnt[3] + cnt[4] == R && cnt[4] > R / 8);
    gllm_sample_args tiny = {0.7f, 3, 0.01f}; /* keeps at least one: the top token */
    CHECK_OK(be->sample(be, ids, logits, 50, V, &tiny, seeds));
    for (int r = 0; r < 50; r++)
        CHECK(ids[r] == 1);
    CHECK(gllm_sample_uniform(7) == gllm_sample_uniform(7));
    CHECK(gllm_sample_uniform(7) != gllm_sample_uniform(8));
    free(logits), free(seeds), free(ids), free(ids1);
}

static void test_errors(gllm_backend *be)
{
    t_case = "bad arguments name the op";
    float buf[64] = {1};
    int32_t pos[4] = {0, 1, 2, 3};
    gllm_attn_shape s = {1, 4, 3, 2, 2, 0, 1};
    CHECK_ERR(be->attention_fwd(be, buf, buf, buf, pos, &s), GLLM_ERR_INVALID, "multiple of Hkv");
    s.Hq = 2;
    pos[2] = 5;
    CHECK_ERR(be->attention_fwd(be, buf, buf, buf, pos, &s), GLLM_ERR_INVALID, "pos[2]");
    gllm_matmul_args a = {.M = 2, .N = 2, .K = 2, .lda = 1, .alpha = 1};
    CHECK_ERR(be->matmul(be, buf, buf, buf, &a), GLLM_ERR_INVALID, "lda=1");
    gllm_kv_cache kv = {buf, buf, 1, 2, 1, 2};
    int32_t slot[1] = {2};
    CHECK_ERR(be->kv_store(be, &kv, buf, slot, 1, 1), GLLM_ERR_INVALID, "slot[0] = 2");
    int32_t ids[2] = {0, 9};
    CHECK_ERR(be->embed_bwd(be, buf, NULL, buf, ids, NULL, 2, 2, 4), GLLM_ERR_INVALID, "id 9");
    if (!gllm_backend_cpu_has_blas())
        CHECK_ERR(gllm_backend_cpu_set_blas(be, true), GLLM_ERR_UNSUPPORTED, "OpenBLAS");
}

/* The vectorisable exp: relative error against libm over the clamped range,
 * the clamps at both ends, and NaN through it without undefined behaviour
 * (UBSan: a NaN cast to int then shifted; issue 10 item 11). */
static void test_exp(void)
{
    TEST_CASE("exp approximation: accuracy, clamps, NaN") {
        double worst = 0;
        for (int i = 0; i <= 2000; i++) {
            const float x = -87.0f + 175.0f * (float)i / 2000.0f;
            const double ref = exp((double)x);
            worst = fmax(worst, fabs(gllm_cpu_exp(x) - ref) / ref);
        }
        /* ~2e-7 from the polynomial, plus |x| * 2^-24 from rounding x * log2(e) in float */
        CHECK_MSG(worst < 1e-5, "worst relative error %.3g", worst);
        CHECK(isfinite(gllm_cpu_exp(INFINITY)) && gllm_cpu_exp(INFINITY) > 1e38f);
        CHECK(gllm_cpu_exp(-INFINITY) >= 0 && gllm_cpu_exp(-INFINITY) < 1e-37f);
        volatile float nan = NAN; /* volatile: computed at run time, as a diverged loss is */
        CHECK(isnan(gllm_cpu_exp(nan)));
        CHECK(isnan(gllm_cpu_tanh(nan)));
        CHECK(isnan(gllm_cpu_exp(-nan)));
    }
}

int main(void)
{
    test_seed();
    test_exp();
    gllm_backend *be = NULL, *be1 = NULL;
    CHECK_OK(gllm_backend_cpu_create(2, &be));
    CHECK_OK(gllm_backend_cpu_create(1, &be1));
    if (!be || !be1)
        return test_summary();
    test_matmul(be);
    test_attention(be);
    test_norms_rope(be);
    test_pointwise(be);
    test_xent(be);
    test_optim(be, be1);
    test_sample(be, be1);
    test_errors(be);
    be->destroy(be);
    be1->destroy(be1);
    return test_summary();
}
