/* gpu_blas.cu - MatMul and Gemm through cuBLASLt, Conv through cuDNN, and
 * the library handles (lp_gpu_libs) with the algorithm choices cached per
 * call shape.
 *
 * ONNX tensors are row-major; cuBLASLt is column-major. A row-major [R, C]
 * matrix is the column-major [C, R] matrix with the same bytes, so
 * Y = op(A) op(B) is computed as Y^T = op(B)^T op(A)^T: cuBLASLt's first
 * operand is B's memory, its second A's, and D (Y) is [N, M] column-major.
 * Arithmetic: fp32, fp16 and bf16 data with CUBLAS_COMPUTE_32F (fp32
 * accumulation, TF32 off) and float scale; convolutions in fp32 use only
 * FMA kernels (CUDNN_FMA_MATH: CUDNN_DEFAULT_MATH would permit TF32 on
 * Ampere and later), fp16 / bf16 ones accumulate in float.
 *
 * Algorithms: during the warm-up pass (c->warmup) the candidates are timed
 * on the real arguments with CUDA events and the fastest is cached, keyed
 * by everything that shapes the call (dtypes, dims, leading dims, strides,
 * epilogue, workspace size, pointer alignment); outside warm-up the cached
 * choice is used, else the heuristic's first. */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_kernels.h"

/* ---- checks ---------------------------------------------------------------- */

#define LP_BLAS_CHECK(c, stmt)                                                         \
    do {                                                                               \
        cublasStatus_t lp_s_ = (stmt);                                                 \
        if (lp_s_ != CUBLAS_STATUS_SUCCESS)                                            \
            return lp_gpu_fail((c), LP_ERR_INTERNAL, "%s failed: %s", #stmt,           \
                               cublasLtGetStatusString(lp_s_));                        \
    } while (0)

#define LP_DNN_CHECK(c, stmt)                                                          \
    do {                                                                               \
        cudnnStatus_t lp_s_ = (stmt);                                                  \
        if (lp_s_ != CUDNN_STATUS_SUCCESS)                                             \
            return lp_gpu_fail((c), LP_ERR_INTERNAL, "%s failed: %s", #stmt,           \
                               cudnnGetErrorString(lp_s_));                            \
    } while (0)

/* ---- the handles and the caches -------------------------------------------- */

/* What determines a GEMM's algorithm; compared bytewise (zero-filled first). */
typedef struct gemm_key {
    int64_t dtype, ta, tb, m, n, k, lda, ldb, ldc, ldy, batch, sa, sb, sy;
    int64_t has_c, bias, align_a, align_b, align_c, align_y;
    uint64_t workspace_bytes;
} gemm_key;

typedef struct gemm_entry {
    gemm_key key;
    cublasLtMatmulAlgo_t algo;
    bool timed;
} gemm_entry;

#define CONV_DIMS 5 /* NCHW / NCDHW as cuDNN sees them */

typedef struct conv_key {
    int64_t dtype, nd, group;
    int64_t x[CONV_DIMS], w[CONV_DIMS], y[CONV_DIMS];
    int64_t pad[CONV_DIMS - 2], stride[CONV_DIMS - 2], dil[CONV_DIMS - 2];
    int64_t align;
    uint64_t workspace_bytes;
} conv_key;

typedef struct conv_entry {
    conv_key key;
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
    bool timed;
} conv_entry;

struct lp_gpu_libs {
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    gemm_entry *gemm;
    size_t n_gemm, cap_gemm;
    conv_entry *conv;
    size_t n_conv, cap_conv;
};

lp_status lp_gpu_libs_open(lp_gpu_libs **out, lp_diag *d) {
    *out = NULL;
    lp_gpu_libs *l = (lp_gpu_libs *)calloc(1, sizeof *l);
    if (!l) return lp_error(d, LP_ERR_INTERNAL, "out of memory for the GPU library handles");
    cublasStatus_t bs = cublasLtCreate(&l->lt);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        free(l);
        return lp_error(d, LP_ERR_INTERNAL, "cublasLtCreate failed: %s", cublasLtGetStatusString(bs));
    }
    cudnnStatus_t ds = cudnnCreate(&l->dnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        cublasLtDestroy(l->lt);
        free(l);
        return lp_error(d, LP_ERR_INTERNAL, "cudnnCreate failed: %s", cudnnGetErrorString(ds));
    }
    *out = l;
    return LP_OK;
}

void lp_gpu_libs_close(lp_gpu_libs *l) {
    if (!l) return;
    if (l->dnn) cudnnDestroy(l->dnn);
    if (l->lt) cublasLtDestroy(l->lt);
    free(l->gemm);
    free(l->conv);
    free(l);
}

/* Finds key in a cache array, or NULL. */
template <typename E, typename K>
static E *cache_find(E *arr, size_t n, const K *key) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&arr[i].key, key, sizeof *key) == 0) return &arr[i];
    return NULL;
}

/* The entry for key, added (zeroed, key set) when new; NULL when out of memory. */
template <typename E, typename K>
static E *cache_put(E **arr, size_t *n, size_t *cap, const K *key) {
    E *e = cache_find(*arr, *n, key);
    if (e) return e;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        E *grown = (E *)realloc(*arr, nc * sizeof(E));
        if (!grown) return NULL;
        *arr = grown;
        *cap = nc;
    }
    e = &(*arr)[(*n)++];
    memset(e, 0, sizeof *e);
    e->key = *key;
    return e;
}

/* The largest power of two (at most 256) dividing every address and byte
 * offset or-ed into v. */
static int64_t align_of(uint64_t v) {
    if (v == 0) return 256;
    uint64_t low = v & (~v + 1);
    return low > 256 ? 256 : (int64_t)low;
}

static lp_status need_libs(const lp_gpu_call *c) {
    if (!c->libs) return lp_gpu_fail(c, LP_ERR_INTERNAL, "the GPU library handles are not open");
    return LP_OK;
}


/* ---- C broadcast: Y[i, j] = beta * C[i * s0 + j * s1] ----------------------- */

template <typename T> __device__ __forceinline__ float to_f(T v) { return (float)v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_f(float v) { return (T)v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

template <typename T, typename I>
__global__ void bcast_scaled(T *__restrict__ y, const T *__restrict__ cm, I m, I n, I s0, I s1,
                             float beta) {
    I total = m * n;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        I r = i / n, col = i - r * n;
        y[i] = from_f<T>(beta * to_f<T>(cm[r * s0 + col * s1]));
    }
}

template <typename T>
static lp_status launch_bcast(const lp_gpu_call *c, void *y, const void *cm, int64_t m, int64_t n,
                              int64_t s0, int64_t s1, float beta) {
    int64_t total = m * n;
    int threads = 256;
    int64_t want = (total + threads - 1) / threads;
    unsigned blocks = (unsigned)(want < 4096 ? (want > 0 ? want : 1) : 4096);
    if (total <= INT32_MAX / 2) /* room for the grid-stride step */
        bcast_scaled<T, int32_t><<<blocks, threads, 0, c->stream>>>(
            (T *)y, (const T *)cm, (int32_t)m, (int32_t)n, (int32_t)s0, (int32_t)s1, beta);
    else
        bcast_scaled<T, int64_t><<<blocks, threads, 0, c->stream>>>((T *)y, (const T *)cm, m, n,
                                                                    s0, s1, beta);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

static lp_status broadcast_c(const lp_gpu_call *c, lp_dtype dt, void *y, const void *cm, int64_t m,
                             int64_t n, int64_t s0, int64_t s1, float beta) {
    if (m * n == 0) return LP_OK;
    switch (dt) {
    case LP_DT_FLOAT: return launch_bcast<float>(c, y, cm, m, n, s0, s1, beta);
    case LP_DT_FLOAT16: return launch_bcast<__half>(c, y, cm, m, n, s0, s1, beta);
    case LP_DT_BFLOAT16: return launch_bcast<__nv_bfloat16>(c, y, cm, m, n, s0, s1, beta);
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "C of dtype %s", lp_dtype_label(dt));
    }
}

/* ---- cuBLASLt GEMM ------------------------------------------------------------ */

/* One (possibly strided-batched) row-major product
 *     Y = alpha * op(A) op(B) + beta * Cm (+ bias[N] by the epilogue),
 * op(A) [M, K], op(B) [K, N], Y [M, N] with leading dims lda / ldb / ldy
 * (the row lengths as stored). cm NULL: C is Y itself (beta 0, or Y already
 * holds the scaled C). *_offs: the or of every byte offset the caller adds
 * to that pointer later (the per-batch loop), for the alignment the
 * algorithm may assume. */
typedef struct gemm_args {
    lp_dtype dtype;
    bool ta, tb;
    int64_t m, n, k, lda, ldb, ldc, ldy;
    int64_t batch, sa, sb, sy; /* element strides between batch matrices */
    const void *a, *b, *cm, *bias;
    void *y;
    float alpha, beta;
    uint64_t a_offs, b_offs, y_offs;
} gemm_args;

/* The descriptors of one product; destroyed with the value. */
struct lt_plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr, ld = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulAlgo_t algo;
    ~lt_plan() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (ld) cublasLtMatrixLayoutDestroy(ld);
        if (lc) cublasLtMatrixLayoutDestroy(lc);
        if (lb) cublasLtMatrixLayoutDestroy(lb);
        if (la) cublasLtMatrixLayoutDestroy(la);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

struct event_pair {
    cudaEvent_t start = nullptr, stop = nullptr;
    ~event_pair() {
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
    }
};

static lp_status lt_layout(const lp_gpu_call *c, cublasLtMatrixLayout_t *l, cudaDataType_t t,
                           int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
    LP_BLAS_CHECK(c, cublasLtMatrixLayoutCreate(l, t, (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        int32_t count = (int32_t)batch;
        LP_BLAS_CHECK(c, cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                          &count, sizeof count));
        LP_BLAS_CHECK(c, cublasLtMatrixLayoutSetAttribute(
                             *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
    return LP_OK;
}

/* One launch of the product with plan's algorithm, on these pointers. */
static cublasStatus_t lt_launch(const lp_gpu_call *c, const lt_plan *p, const gemm_args *g,
                                const cublasLtMatmulAlgo_t *algo, const void *a, const void *b,
                                const void *cm, void *y) {
    return cublasLtMatmul(c->libs->lt, p->op, &g->alpha, b, p->la, a, p->lb, &g->beta,
                          cm ? cm : y, p->lc, y, p->ld, algo, c->workspace_bytes ? c->workspace : NULL,
                          c->workspace_bytes, c->stream);
}

/* Builds the descriptors and chooses the algorithm (timing the heuristic's
 * candidates during warm-up; the timed runs overwrite Y). */
static lp_status lt_prepare(const lp_gpu_call *c, const gemm_args *g, lt_plan *p) {
    cudaDataType_t t = g->dtype == LP_DT_FLOAT     ? CUDA_R_32F
                       : g->dtype == LP_DT_FLOAT16 ? CUDA_R_16F
                                                   : CUDA_R_16BF;
    if (g->batch > INT32_MAX)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "%lld batch matrices, more than cuBLASLt takes",
                           (long long)g->batch);
    LP_BLAS_CHECK(c, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    /* cuBLASLt's A is our B (op'd when transB), its B our A */
    cublasOperation_t opa = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    LP_BLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LP_BLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (g->bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = t;
        LP_BLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                        sizeof epi));
        LP_BLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &g->bias, sizeof g->bias));
        LP_BLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                        &bt, sizeof bt));
    }
    lp_status st;
    if ((st = lt_layout(c, &p->la, t, g->tb ? g->k : g->n, g->tb ? g->n : g->k, g->ldb, g->batch,
                        g->sb)) != LP_OK ||
        (st = lt_layout(c, &p->lb, t, g->ta ? g->m : g->k, g->ta ? g->k : g->m, g->lda, g->batch,
                        g->sa)) != LP_OK ||
        (st = lt_layout(c, &p->lc, t, g->n, g->m, g->cm ? g->ldc : g->ldy, g->batch, g->sy)) != LP_OK ||
        (st = lt_layout(c, &p->ld, t, g->n, g->m, g->ldy, g->batch, g->sy)) != LP_OK)
        return st;

    size_t es = lp_gpu_dtype_size(g->dtype);
    uint64_t bstep = g->batch > 1 ? 1 : 0; /* strided batches shift the pointers too */
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.dtype = g->dtype;
    key.ta = g->ta;
    key.tb = g->tb;
    key.m = g->m;
    key.n = g->n;
    key.k = g->k;
    key.lda = g->lda;
    key.ldb = g->ldb;
    key.ldc = g->cm ? g->ldc : 0;
    key.ldy = g->ldy;
    key.batch = g->batch;
    key.sa = g->sa;
    key.sb = g->sb;
    key.sy = g->sy;
    key.has_c = g->cm != NULL || g->beta != 0.0f;
    key.bias = g->bias != NULL;
    key.align_a = align_of((uintptr_t)g->a | g->a_offs | bstep * (uint64_t)g->sa * es);
    key.align_b = align_of((uintptr_t)g->b | g->b_offs | bstep * (uint64_t)g->sb * es);
    key.align_y = align_of((uintptr_t)g->y | g->y_offs | bstep * (uint64_t)g->sy * es);
    key.align_c = g->cm ? align_of((uintptr_t)g->cm | bstep * (uint64_t)g->sy * es) : key.align_y;
    if (g->bias) key.bias = align_of((uintptr_t)g->bias);
    key.workspace_bytes = c->workspace_bytes;

    lp_gpu_libs *L = c->libs;
    gemm_entry *e = cache_find(L->gemm, L->n_gemm, &key);
    if (e && (e->timed || !c->warmup)) {
        p->algo = e->algo;
        return LP_OK;
    }

    LP_BLAS_CHECK(c, cublasLtMatmulPreferenceCreate(&p->pref));
    uint64_t ws = c->workspace_bytes;
    uint32_t al[4] = {(uint32_t)key.align_b, (uint32_t)key.align_a, (uint32_t)key.align_c,
                      (uint32_t)key.align_y};
    LP_BLAS_CHECK(c, cublasLtMatmulPreferenceSetAttribute(
                         p->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LP_BLAS_CHECK(c, cublasLtMatmulPreferenceSetAttribute(
                         p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof al[0]));
    LP_BLAS_CHECK(c, cublasLtMatmulPreferenceSetAttribute(
                         p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof al[1]));
    LP_BLAS_CHECK(c, cublasLtMatmulPreferenceSetAttribute(
                         p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof al[2]));
    LP_BLAS_CHECK(c, cublasLtMatmulPreferenceSetAttribute(
                         p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], sizeof al[3]));

    enum { CANDIDATES = 8, REPS = 5 };
    cublasLtMatmulHeuristicResult_t res[CANDIDATES];
    int found = 0;
    LP_BLAS_CHECK(c, cublasLtMatmulAlgoGetHeuristic(L->lt, p->op, p->la, p->lb, p->lc, p->ld, p->pref,
                                                    c->warmup ? CANDIDATES : 1, res, &found));
    int best = -1;
    if (!c->warmup) {
        for (int i = 0; i < found && best < 0; i++)
            if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= ws) best = i;
    } else {
        event_pair ev;
        LP_GPU_CHECK(c, cudaEventCreate(&ev.start));
        LP_GPU_CHECK(c, cudaEventCreate(&ev.stop));
        float best_ms = 0;
        for (int i = 0; i < found; i++) {
            if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > ws) continue;
            /* one untimed run (and a check that the candidate runs at all) */
            if (lt_launch(c, p, g, &res[i].algo, g->a, g->b, g->cm, g->y) != CUBLAS_STATUS_SUCCESS)
                continue;
            LP_GPU_CHECK(c, cudaEventRecord(ev.start, c->stream));
            bool ran = true;
            for (int r = 0; r < REPS && ran; r++)
                ran = lt_launch(c, p, g, &res[i].algo, g->a, g->b, g->cm, g->y) == CUBLAS_STATUS_SUCCESS;
            LP_GPU_CHECK(c, cudaEventRecord(ev.stop, c->stream));
            LP_GPU_CHECK(c, cudaEventSynchronize(ev.stop));
            float ms = 0;
            LP_GPU_CHECK(c, cudaEventElapsedTime(&ms, ev.start, ev.stop));
            if (ran && (best < 0 || ms < best_ms)) {
                best = i;
                best_ms = ms;
            }
        }
    }
    if (best < 0)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED,
                           "cuBLASLt has no algorithm for %s [%lld x %lld] x [%lld x %lld] "
                           "(batch %lld) within %llu bytes of workspace",
                           lp_dtype_label(g->dtype), (long long)g->m, (long long)g->k, (long long)g->k,
                           (long long)g->n, (long long)g->batch, (unsigned long long)ws);
    e = cache_put(&L->gemm, &L->n_gemm, &L->cap_gemm, &key);
    if (!e) return lp_gpu_fail(c, LP_ERR_INTERNAL, "out of memory for the algorithm cache");
    e->algo = res[best].algo;
    e->timed = c->warmup;
    p->algo = e->algo;
    return LP_OK;
}

static bool blas_dtype(lp_dtype t) {
    return t == LP_DT_FLOAT || t == LP_DT_FLOAT16 || t == LP_DT_BFLOAT16;
}

/* ---- MatMul ------------------------------------------------------------------- */

static int64_t prod(const int64_t *d, int n) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= d[i];
    return p;
}

/* Element strides of a batch shape (rank r, right-aligned) broadcast to the
 * output's batch dims; false if they do not broadcast. */
static bool batch_strides(const int64_t *dims, int r, int yr, const int64_t *ydims, int64_t *s) {
    if (r > yr) return false;
    int64_t step = 1;
    for (int d = yr - 1; d >= 0; d--) {
        int sd = d - (yr - r);
        int64_t n = sd >= 0 ? dims[sd] : 1;
        if (n != ydims[d] && n != 1) return false;
        s[d] = n == 1 ? 0 : step;
        step *= n;
    }
    return true;
}

lp_status lp_gpu_matmul(const lp_gpu_call *c) {
    const lp_gpu_tensor *a = lp_gpu_in(c, 0), *b = lp_gpu_in(c, 1);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if (!a || !b || !y) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "needs inputs A, B and output Y");
    if (a->rank < 1 || b->rank < 1) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "a scalar operand");
    if (!blas_dtype(y->dtype) || a->dtype != y->dtype || b->dtype != y->dtype)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtypes %s x %s -> %s (float, float16 and bfloat16 "
                           "only, all the same)", lp_dtype_label(a->dtype), lp_dtype_label(b->dtype),
                           lp_dtype_label(y->dtype));
    lp_status st = need_libs(c);
    if (st != LP_OK) return st;
    /* 1-D operands: A gets a leading 1, B a trailing 1, both dropped from Y */
    int64_t m = a->rank >= 2 ? a->dims[a->rank - 2] : 1, k = a->dims[a->rank - 1];
    int64_t kb = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    int64_t n = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (k != kb)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "inner dims %lld and %lld differ", (long long)k,
                           (long long)kb);
    int ar = a->rank >= 2 ? a->rank - 2 : 0, br = b->rank >= 2 ? b->rank - 2 : 0;
    int yr = y->rank - (a->rank >= 2) - (b->rank >= 2);
    if (yr < 0) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output rank too small");
    int64_t sa[LP_MAX_RANK], sb[LP_MAX_RANK];
    if (!batch_strides(a->dims, ar, yr, y->dims, sa) || !batch_strides(b->dims, br, yr, y->dims, sb))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "batch dims do not broadcast to the output");
    int64_t batches = prod(y->dims, yr), na = prod(a->dims, ar), nb = prod(b->dims, br);
    if (lp_gpu_numel(y) != batches * m * n)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output size does not match the operands");
    if (batches * m * n == 0) return LP_OK;
    size_t es = lp_gpu_dtype_size(y->dtype);
    if (k == 0) {
        LP_GPU_CHECK(c, cudaMemsetAsync(y->data, 0, (size_t)(batches * m * n) * es, c->stream));
        return LP_OK;
    }

    gemm_args g;
    memset(&g, 0, sizeof g);
    g.dtype = y->dtype;
    g.m = m;
    g.n = n;
    g.k = k;
    g.lda = k;
    g.ldb = n;
    g.ldy = n;
    g.batch = 1;
    g.a = a->data;
    g.b = b->data;
    g.y = y->data;
    g.alpha = 1.0f;
    g.beta = 0.0f;
    lt_plan p;
    if (nb == 1 && na == batches) {
        /* B shared by every batch: the batches are rows of one [batches*M, K] A */
        g.m = batches * m;
        if ((st = lt_prepare(c, &g, &p)) != LP_OK) return st;
        LP_BLAS_CHECK(c, lt_launch(c, &p, &g, &p.algo, g.a, g.b, NULL, g.y));
        return LP_OK;
    }
    if (na == batches && nb == batches) {
        /* both batched alike: one strided-batched product */
        g.batch = batches;
        g.sa = m * k;
        g.sb = k * n;
        g.sy = m * n;
        if ((st = lt_prepare(c, &g, &p)) != LP_OK) return st;
        LP_BLAS_CHECK(c, lt_launch(c, &p, &g, &p.algo, g.a, g.b, NULL, g.y));
        return LP_OK;
    }
    /* other broadcasts: one product per output batch, as the reference walks them */
    int64_t coord[LP_MAX_RANK];
    uint64_t aor = 0, bor = 0, yor = 0;
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t i = bi, oa = 0, ob = 0;
        for (int d = yr - 1; d >= 0; d--) {
            coord[d] = i % y->dims[d];
            i /= y->dims[d];
        }
        for (int d = 0; d < yr; d++) {
            oa += coord[d] * sa[d];
            ob += coord[d] * sb[d];
        }
        aor |= (uint64_t)(oa * m * k) * es;
        bor |= (uint64_t)(ob * k * n) * es;
        yor |= (uint64_t)(bi * m * n) * es;
    }
    g.a_offs = aor;
    g.b_offs = bor;
    g.y_offs = yor;
    if ((st = lt_prepare(c, &g, &p)) != LP_OK) return st;
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t i = bi, oa = 0, ob = 0;
        for (int d = yr - 1; d >= 0; d--) {
            coord[d] = i % y->dims[d];
            i /= y->dims[d];
        }
        for (int d = 0; d < yr; d++) {
            oa += coord[d] * sa[d];
            ob += coord[d] * sb[d];
        }
        const char *pa = (const char *)a->data + (size_t)(oa * m * k) * es;
        const char *pb = (const char *)b->data + (size_t)(ob * k * n) * es;
        char *py = (char *)y->data + (size_t)(bi * m * n) * es;
        LP_BLAS_CHECK(c, lt_launch(c, &p, &g, &p.algo, pa, pb, NULL, py));
    }
    return LP_OK;
}

/* ---- Gemm --------------------------------------------------------------------- */

lp_status lp_gpu_gemm(const lp_gpu_call *c) {
    const lp_gpu_tensor *a = lp_gpu_in(c, 0), *b = lp_gpu_in(c, 1), *cc = lp_gpu_in(c, 2);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if (!a || !b || !y) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "needs inputs A, B and output Y");
    if (a->rank != 2 || b->rank != 2 || y->rank != 2)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "A, B and Y must be matrices");
    if (!blas_dtype(y->dtype) || a->dtype != y->dtype || b->dtype != y->dtype ||
        (cc && cc->dtype != y->dtype))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtypes %s, %s, %s -> %s (float, float16 and "
                           "bfloat16 only, all the same)", lp_dtype_label(a->dtype), lp_dtype_label(b->dtype),
                           cc ? lp_dtype_label(cc->dtype) : "-", lp_dtype_label(y->dtype));
    lp_status st = need_libs(c);
    if (st != LP_OK) return st;
    bool ta = lp_gpu_attr_int(c, "transA", 0) != 0, tb = lp_gpu_attr_int(c, "transB", 0) != 0;
    float alpha = lp_gpu_attr_float(c, "alpha", 1.0f), beta = lp_gpu_attr_float(c, "beta", 1.0f);
    int64_t m = ta ? a->dims[1] : a->dims[0], k = ta ? a->dims[0] : a->dims[1];
    int64_t kb = tb ? b->dims[1] : b->dims[0], n = tb ? b->dims[0] : b->dims[1];
    if (k != kb || y->dims[0] != m || y->dims[1] != n)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "shapes of A, B and Y do not agree");
    /* C's strides broadcast to [M, N] (numpy rules) */
    int64_t sc[2] = {0, 0};
    if (cc) {
        if (cc->rank > 2 || !batch_strides(cc->dims, cc->rank, 2, y->dims, sc))
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "C does not broadcast to [M, N]");
    }
    if (m * n == 0) return LP_OK;
    size_t es = lp_gpu_dtype_size(y->dtype);
    if (k == 0) { /* Y = beta * C */
        if (cc) return broadcast_c(c, y->dtype, y->data, cc->data, m, n, sc[0], sc[1], beta);
        LP_GPU_CHECK(c, cudaMemsetAsync(y->data, 0, (size_t)(m * n) * es, c->stream));
        return LP_OK;
    }

    gemm_args g;
    memset(&g, 0, sizeof g);
    g.dtype = y->dtype;
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    g.lda = a->dims[1];
    g.ldb = b->dims[1];
    g.ldy = n;
    g.batch = 1;
    g.a = a->data;
    g.b = b->data;
    g.y = y->data;
    g.alpha = alpha;
    g.beta = 0.0f;
    bool fill = false; /* Y holds beta * C broadcast before the product */
    if (cc && beta != 0.0f) {
        /* broadcastable with M*N elements: C has Y's layout */
        bool full = lp_gpu_numel(cc) == m * n;
        bool row = sc[0] == 0 && sc[1] == 1; /* [N] or [1, N]: one row for every output row */
        if (row && beta == 1.0f) {
            g.bias = cc->data;
        } else if (full) {
            g.cm = cc->data;
            g.ldc = n;
            g.beta = beta;
        } else {
            fill = true;
            g.beta = 1.0f;
        }
    }
    lt_plan p;
    if ((st = lt_prepare(c, &g, &p)) != LP_OK) return st; /* may time on Y: fill after */
    if (fill && (st = broadcast_c(c, y->dtype, y->data, cc->data, m, n, sc[0], sc[1], beta)) != LP_OK)
        return st;
    LP_BLAS_CHECK(c, lt_launch(c, &p, &g, &p.algo, g.a, g.b, g.cm, g.y));
    return LP_OK;
}

/* ---- Conv (cuDNN) --------------------------------------------------------------- */

struct dnn_descs {
    cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
    cudnnFilterDescriptor_t w = nullptr;
    cudnnConvolutionDescriptor_t conv = nullptr;
    ~dnn_descs() {
        if (conv) cudnnDestroyConvolutionDescriptor(conv);
        if (w) cudnnDestroyFilterDescriptor(w);
        if (bias) cudnnDestroyTensorDescriptor(bias);
        if (y) cudnnDestroyTensorDescriptor(y);
        if (x) cudnnDestroyTensorDescriptor(x);
    }
};

/* An INTS attribute of n entries, or fill everywhere when absent. */
static lp_status conv_ints(const lp_gpu_call *c, const char *name, int n, int64_t fill, int64_t *out) {
    const lp_attr *at = lp_gpu_attr(c, name);
    for (int i = 0; i < n; i++) out[i] = fill;
    if (!at) return LP_OK;
    if (at->type != LP_ATTR_INTS || at->n != n)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "%s must have %d entries", name, n);
    for (int i = 0; i < n; i++) out[i] = at->ints[i];
    return LP_OK;
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

lp_status lp_gpu_conv(const lp_gpu_call *c) {
    const lp_gpu_tensor *x = lp_gpu_in(c, 0), *w = lp_gpu_in(c, 1), *bias = lp_gpu_in(c, 2);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if (!x || !w || !y) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "needs inputs X, W and output Y");
    if (w->rank != x->rank) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "W rank differs from X's");
    int ns = x->rank - 2;
    if (ns < 1 || y->rank != x->rank)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, spatial...] and Y the same rank");
    if (ns > 3)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "%d spatial dims (1 to 3 on the GPU)", ns);
    lp_dtype dt = y->dtype;
    if (!blas_dtype(dt) || x->dtype != dt || w->dtype != dt || (bias && bias->dtype != dt))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtypes X %s, W %s, B %s -> %s (float, float16 "
                           "and bfloat16 only, all the same)", lp_dtype_label(x->dtype), lp_dtype_label(w->dtype),
                           bias ? lp_dtype_label(bias->dtype) : "-", lp_dtype_label(dt));
    lp_status st = need_libs(c);
    if (st != LP_OK) return st;

    /* the geometry, as the reference derives it */
    int64_t stride[3], dil[3], pads[6], ks[3], pad0[3], pad1[3];
    if ((st = conv_ints(c, "strides", ns, 1, stride)) != LP_OK ||
        (st = conv_ints(c, "dilations", ns, 1, dil)) != LP_OK ||
        (st = conv_ints(c, "pads", 2 * ns, 0, pads)) != LP_OK ||
        (st = conv_ints(c, "kernel_shape", ns, 0, ks)) != LP_OK)
        return st;
    if (lp_gpu_attr(c, "kernel_shape"))
        for (int d = 0; d < ns; d++)
            if (ks[d] != w->dims[2 + d])
                return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "kernel_shape differs from W");
    const char *ap = lp_gpu_attr_string(c, "auto_pad", "NOTSET");
    for (int d = 0; d < ns; d++) {
        if (stride[d] < 1 || dil[d] < 1)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "strides and dilations must be >= 1");
        int64_t span = (w->dims[2 + d] - 1) * dil[d] + 1, in = x->dims[2 + d], out = y->dims[2 + d];
        if (strcmp(ap, "NOTSET") == 0) {
            pad0[d] = pads[d];
            pad1[d] = pads[d + ns];
        } else if (strcmp(ap, "VALID") == 0) {
            pad0[d] = pad1[d] = 0;
        } else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            int64_t total = (out - 1) * stride[d] + span - in;
            if (total < 0) total = 0;
            pad0[d] = ap[5] == 'U' ? total / 2 : total - total / 2;
            pad1[d] = total - pad0[d];
        } else {
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "auto_pad '%s' is not known", ap);
        }
    }
    int64_t g = lp_gpu_attr_int(c, "group", 1), nb = x->dims[0], ci = x->dims[1], co = w->dims[0];
    if (g < 1 || ci % g || co % g || w->dims[1] != ci / g || y->dims[0] != nb || y->dims[1] != co)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "channels of X, W, Y and group %lld do not agree",
                           (long long)g);
    if (bias && lp_gpu_numel(bias) != co) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "B is not [M]");
    if (lp_gpu_numel(y) == 0) return LP_OK;

    /* cuDNN's view: 1-D as 2-D with height 1; padding must be symmetric */
    int nd = ns == 1 ? 4 : x->rank, nsp = nd - 2, lead = nd - x->rank;
    int xd[CONV_DIMS], wd[CONV_DIMS], yd[CONV_DIMS], bd[CONV_DIMS];
    int cpad[CONV_DIMS - 2], cstr[CONV_DIMS - 2], cdil[CONV_DIMS - 2];
    for (int i = 0; i < nd; i++) {
        int src = i < 2 ? i : i - lead; /* dims 2..lead+1 are the added height */
        bool added = i >= 2 && i < 2 + lead;
        int64_t xv = added ? 1 : x->dims[src], wv = added ? 1 : w->dims[src], yv = added ? 1 : y->dims[src];
        if (!fits_int(xv) || !fits_int(wv) || !fits_int(yv))
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "a dim beyond cuDNN's int range");
        xd[i] = (int)xv;
        wd[i] = (int)wv;
        yd[i] = (int)yv;
        bd[i] = i == 1 ? (int)co : 1;
    }
    for (int s = 0; s < nsp; s++) {
        int d = s - lead;
        if (d < 0) {
            cpad[s] = 0;
            cstr[s] = cdil[s] = 1;
            continue;
        }
        if (pad0[d] != pad1[d])
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "asymmetric padding %lld / %lld on spatial dim %d "
                               "(cuDNN pads both sides alike)", (long long)pad0[d], (long long)pad1[d], d);
        if (!fits_int(pad0[d]) || !fits_int(stride[d]) || !fits_int(dil[d]))
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "pads, strides or dilations beyond int range");
        cpad[s] = (int)pad0[d];
        cstr[s] = (int)stride[d];
        cdil[s] = (int)dil[d];
    }
    if (!fits_int(g)) return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "group %lld", (long long)g);

    cudnnDataType_t ct = dt == LP_DT_FLOAT ? CUDNN_DATA_FLOAT
                         : dt == LP_DT_FLOAT16 ? CUDNN_DATA_HALF
                                               : CUDNN_DATA_BFLOAT16;
    /* fp32: FMA kernels only (no TF32); fp16 / bf16: tensor cores, float accumulation */
    cudnnMathType_t math = dt == LP_DT_FLOAT ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    lp_gpu_libs *L = c->libs;
    cudnnHandle_t h = L->dnn;
    LP_DNN_CHECK(c, cudnnSetStream(h, c->stream));
    dnn_descs D;
    LP_DNN_CHECK(c, cudnnCreateTensorDescriptor(&D.x));
    LP_DNN_CHECK(c, cudnnCreateTensorDescriptor(&D.y));
    LP_DNN_CHECK(c, cudnnCreateFilterDescriptor(&D.w));
    LP_DNN_CHECK(c, cudnnCreateConvolutionDescriptor(&D.conv));
    LP_DNN_CHECK(c, cudnnSetTensorNdDescriptorEx(D.x, CUDNN_TENSOR_NCHW, ct, nd, xd));
    LP_DNN_CHECK(c, cudnnSetTensorNdDescriptorEx(D.y, CUDNN_TENSOR_NCHW, ct, nd, yd));
    LP_DNN_CHECK(c, cudnnSetFilterNdDescriptor(D.w, ct, CUDNN_TENSOR_NCHW, nd, wd));
    LP_DNN_CHECK(c, cudnnSetConvolutionNdDescriptor(D.conv, nsp, cpad, cstr, cdil,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    LP_DNN_CHECK(c, cudnnSetConvolutionGroupCount(D.conv, (int)g));
    LP_DNN_CHECK(c, cudnnSetConvolutionMathType(D.conv, math));
    int od[CONV_DIMS];
    LP_DNN_CHECK(c, cudnnGetConvolutionNdForwardOutputDim(D.conv, D.x, D.w, nd, od));
    for (int i = 0; i < nd; i++)
        if (od[i] != yd[i])
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Y dim %d is %d, the convolution gives %d", i,
                               yd[i], od[i]);

    conv_key key;
    memset(&key, 0, sizeof key);
    key.dtype = dt;
    key.nd = nd;
    key.group = g;
    for (int i = 0; i < nd; i++) {
        key.x[i] = xd[i];
        key.w[i] = wd[i];
        key.y[i] = yd[i];
    }
    for (int s = 0; s < nsp; s++) {
        key.pad[s] = cpad[s];
        key.stride[s] = cstr[s];
        key.dil[s] = cdil[s];
    }
    key.align = align_of((uintptr_t)x->data | (uintptr_t)w->data | (uintptr_t)y->data |
                         (uintptr_t)c->workspace);
    key.workspace_bytes = c->workspace_bytes;
    size_t ws = c->workspace_bytes;
    void *wsp = ws ? c->workspace : NULL;

    conv_entry *e = cache_find(L->conv, L->n_conv, &key);
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    cudnnMathType_t algo_math = math;
    if (e && (e->timed || !c->warmup)) {
        algo = e->algo;
        algo_math = e->math;
    } else {
        enum { ALGOS = CUDNN_CONVOLUTION_FWD_ALGO_COUNT };
        cudnnConvolutionFwdAlgoPerf_t perf[ALGOS];
        int found = 0;
        if (c->warmup)
            LP_DNN_CHECK(c, cudnnFindConvolutionForwardAlgorithmEx(h, D.x, x->data, D.w, w->data, D.conv,
                                                                   D.y, y->data, ALGOS, &found, perf,
                                                                   wsp, ws));
        else
            LP_DNN_CHECK(c, cudnnGetConvolutionForwardAlgorithm_v7(h, D.x, D.w, D.conv, D.y, ALGOS,
                                                                   &found, perf));
        int best = -1;
        size_t least = SIZE_MAX; /* the smallest workspace any working algorithm needs */
        for (int i = 0; i < found && best < 0; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
            /* fp32 keeps FMA kernels whatever the result says */
            cudnnMathType_t mt = dt == LP_DT_FLOAT ? CUDNN_FMA_MATH : perf[i].mathType;
            LP_DNN_CHECK(c, cudnnSetConvolutionMathType(D.conv, mt));
            size_t need = 0;
            if (cudnnGetConvolutionForwardWorkspaceSize(h, D.x, D.w, D.conv, D.y, perf[i].algo, &need) !=
                CUDNN_STATUS_SUCCESS)
                continue;
            if (need < least) least = need;
            if (need <= ws) {
                best = i;
                algo = perf[i].algo;
                algo_math = mt;
            }
        }
        if (best < 0) {
            if (least == SIZE_MAX)
                return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "cuDNN has no %s convolution algorithm for "
                                   "this geometry", lp_dtype_label(dt));
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "every cuDNN algorithm needs workspace: at least "
                               "%zu bytes, the node has %zu bytes", least, ws);
        }
        e = cache_put(&L->conv, &L->n_conv, &L->cap_conv, &key);
        if (!e) return lp_gpu_fail(c, LP_ERR_INTERNAL, "out of memory for the algorithm cache");
        e->algo = algo;
        e->math = algo_math;
        e->timed = c->warmup;
    }
    LP_DNN_CHECK(c, cudnnSetConvolutionMathType(D.conv, algo_math));
    const float one = 1.0f, zero = 0.0f;
    LP_DNN_CHECK(c, cudnnConvolutionForward(h, &one, D.x, x->data, D.w, w->data, D.conv, algo, wsp, ws,
                                            &zero, D.y, y->data));
    if (bias) {
        LP_DNN_CHECK(c, cudnnCreateTensorDescriptor(&D.bias));
        LP_DNN_CHECK(c, cudnnSetTensorNdDescriptorEx(D.bias, CUDNN_TENSOR_NCHW, ct, nd, bd));
        LP_DNN_CHECK(c, cudnnAddTensor(h, &one, D.bias, bias->data, &one, D.y, y->data));
    }
    return LP_OK;
}
