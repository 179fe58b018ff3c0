/* gpu_elementwise.cu - unary, binary and variadic element-wise ops, Where,
 * Clip and Cast on the GPU: the twin of ref_elementwise.c.
 *
 * Every kernel converts through the reference's element semantics (fp32
 * arithmetic for float types, int64 arithmetic for integer types, bool as
 * uint8 0/1, float -> integer truncating with NaN -> 0 and saturation).
 * Broadcasting inputs are first reduced to a merged layout (size-1 dims
 * dropped, dims that are contiguous for every operand merged); each operand
 * is then "full", "scalar" or "row" (a contiguous block repeated over the
 * leading dims, e.g. a bias [N] over [M, N]), which runs a flat grid-stride
 * kernel with vector loads, or else the generic strided kernel (merged rank
 * up to 8). Index math is 32-bit when the output has fewer than 2^31
 * elements. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <string.h>

#include <type_traits>

#include "gpu_kernels.h"

#define EW_MAX_RANK 8
#define EW_THREADS 256

/* bool as stored: one byte 0/1, converted as a boolean, not as uint8. */
struct ew_bool {
    uint8_t v;
};

template <typename T> struct ew_tag { typedef T type; };

template <typename T> struct ew_is_float : std::false_type {};
template <> struct ew_is_float<float> : std::true_type {};
template <> struct ew_is_float<double> : std::true_type {};
template <> struct ew_is_float<__half> : std::true_type {};
template <> struct ew_is_float<__nv_bfloat16> : std::true_type {};

/* N elements loaded or stored as one aligned access. */
template <typename T, int N> struct alignas(sizeof(T) * N) ew_vec {
    T v[N];
};

/* ---- element conversions (lp_ref_loadf / storef / loadi / storei) ---- */

__device__ __forceinline__ int64_t ew_f2i(float f) {
    if (isnan(f)) return 0;
    if (f >= 9.2233715e18f) return INT64_MAX;
    if (f <= -9.2233715e18f) return INT64_MIN;
    return (int64_t)f;
}

template <typename T> __device__ __forceinline__ int64_t ew_toi(T v);

template <typename T> __device__ __forceinline__ float ew_tof(T v) {
    if constexpr (std::is_same<T, float>::value) return v;
    else if constexpr (std::is_same<T, __half>::value) return __half2float(v);
    else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __bfloat162float(v);
    else if constexpr (std::is_same<T, double>::value) return (float)v;
    else return (float)ew_toi(v);
}

template <typename T> __device__ __forceinline__ int64_t ew_toi(T v) {
    if constexpr (ew_is_float<T>::value) return ew_f2i(ew_tof(v));
    else if constexpr (std::is_same<T, ew_bool>::value) return v.v;
    else return (int64_t)v;
}

template <typename T> __device__ __forceinline__ T ew_fromf(float f) {
    if constexpr (std::is_same<T, float>::value) return f;
    else if constexpr (std::is_same<T, __half>::value) return __float2half_rn(f);
    else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16_rn(f);
    else if constexpr (std::is_same<T, double>::value) return (double)f;
    else if constexpr (std::is_same<T, ew_bool>::value) return ew_bool{(uint8_t)(f != 0.0f)};
    else return (T)ew_f2i(f);
}

template <typename T> __device__ __forceinline__ T ew_fromi(int64_t v) {
    if constexpr (ew_is_float<T>::value) return ew_fromf<T>((float)v);
    else if constexpr (std::is_same<T, ew_bool>::value) return ew_bool{(uint8_t)(v != 0)};
    else return (T)v;
}

/* Every storable dtype, with its element type. */
#define EW_ALL_TYPES(X)                                                                     \
    X(LP_DT_FLOAT, float) X(LP_DT_FLOAT16, __half) X(LP_DT_BFLOAT16, __nv_bfloat16)       \
    X(LP_DT_DOUBLE, double) X(LP_DT_INT64, int64_t) X(LP_DT_INT32, int32_t)               \
    X(LP_DT_INT16, int16_t) X(LP_DT_INT8, int8_t) X(LP_DT_UINT8, uint8_t)                 \
    X(LP_DT_UINT16, uint16_t) X(LP_DT_UINT32, uint32_t) X(LP_DT_UINT64, uint64_t)         \
    X(LP_DT_BOOL, ew_bool)
/* Pow's base and exponent types. */
#define EW_POW_TYPES(X)                                                                     \
    X(LP_DT_FLOAT, float) X(LP_DT_FLOAT16, __half) X(LP_DT_BFLOAT16, __nv_bfloat16)       \
    X(LP_DT_DOUBLE, double) X(LP_DT_INT64, int64_t) X(LP_DT_INT32, int32_t)

#define EW_CASE(DT, T) case DT: return fn(ew_tag<T>{});

template <class Fn> static lp_status ew_switch_all(lp_dtype t, Fn &&fn) {
    switch (t) {
    EW_ALL_TYPES(EW_CASE)
    default: return LP_ERR_UNSUPPORTED;
    }
}

template <class Fn> static lp_status ew_switch_pow(lp_dtype t, Fn &&fn) {
    switch (t) {
    EW_POW_TYPES(EW_CASE)
    default: return LP_ERR_UNSUPPORTED;
    }
}

static bool ew_known(lp_dtype t) {
    switch (t) {
#define EW_KNOWN(DT, T) case DT:
    EW_ALL_TYPES(EW_KNOWN)
#undef EW_KNOWN
        return true;
    default: return false;
    }
}

static bool ew_pow_type(lp_dtype t) {
    switch (t) {
#define EW_KNOWN(DT, T) case DT:
    EW_POW_TYPES(EW_KNOWN)
#undef EW_KNOWN
        return true;
    default: return false;
    }
}

static bool ew_float_dtype(lp_dtype t) {
    return t == LP_DT_FLOAT || t == LP_DT_FLOAT16 || t == LP_DT_BFLOAT16 || t == LP_DT_DOUBLE;
}


/* ---- launch geometry ---- */

static lp_status ew_blocks(const lp_gpu_call *c, int64_t work, unsigned *blocks) {
    static int sms = 0;
    if (sms <= 0) {
        int dev = 0, n = 0;
        LP_GPU_CHECK(c, cudaGetDevice(&dev));
        LP_GPU_CHECK(c, cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
        sms = n > 0 ? n : 1;
    }
    int64_t b = (work + EW_THREADS - 1) / EW_THREADS, cap = (int64_t)sms * 16;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    *blocks = (unsigned)b;
    return LP_OK;
}

static bool ew_aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

/* ---- one-input map: Unary, Clip, Cast ---- */

template <class F, typename TX, typename TY, int VEC, typename I>
__global__ void __launch_bounds__(EW_THREADS)
ew_map_kernel(F f, const TX *__restrict__ x, TY *__restrict__ y, I n) {
    f.prepare();
    I tid = (I)blockIdx.x * blockDim.x + threadIdx.x, nt = (I)gridDim.x * blockDim.x;
    I nv = n / VEC;
    for (I v = tid; v < nv; v += nt) {
        ew_vec<TX, VEC> a = reinterpret_cast<const ew_vec<TX, VEC> *>(x)[v];
        ew_vec<TY, VEC> r;
#pragma unroll
        for (int j = 0; j < VEC; j++) r.v[j] = f(a.v[j]);
        reinterpret_cast<ew_vec<TY, VEC> *>(y)[v] = r;
    }
    for (I i = nv * VEC + tid; i < n; i += nt) y[i] = f(x[i]);
}

template <typename A, typename B> constexpr int ew_vec_width() {
    return 16 / (sizeof(A) > sizeof(B) ? sizeof(A) : sizeof(B));
}

template <class F, typename TX, typename TY>
static lp_status ew_map(const lp_gpu_call *c, F f, const void *x, void *y, int64_t n) {
    if (n <= 0) return LP_OK;
    constexpr int V = ew_vec_width<TX, TY>();
    bool vec = V > 1 && ew_aligned(x, V * sizeof(TX)) && ew_aligned(y, V * sizeof(TY));
    unsigned blocks;
    lp_status st = ew_blocks(c, vec ? (n + V - 1) / V : n, &blocks);
    if (st != LP_OK) return st;
    const TX *px = (const TX *)x;
    TY *py = (TY *)y;
    /* 32-bit indices when the grid-stride loop cannot step past INT32_MAX */
    if (n + (int64_t)blocks * EW_THREADS * V <= INT32_MAX) {
        if (vec) ew_map_kernel<F, TX, TY, V, int32_t><<<blocks, EW_THREADS, 0, c->stream>>>(f, px, py, (int32_t)n);
        else ew_map_kernel<F, TX, TY, 1, int32_t><<<blocks, EW_THREADS, 0, c->stream>>>(f, px, py, (int32_t)n);
    } else {
        if (vec) ew_map_kernel<F, TX, TY, V, int64_t><<<blocks, EW_THREADS, 0, c->stream>>>(f, px, py, n);
        else ew_map_kernel<F, TX, TY, 1, int64_t><<<blocks, EW_THREADS, 0, c->stream>>>(f, px, py, n);
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* ---- up to three broadcast inputs: Binary, Variadic, Where ---- */

enum { EW_NONE, EW_FULL, EW_SCALAR, EW_ROW, EW_STRIDED };

/* The merged layout of one launch: output dims, each operand's strides and
 * its access mode (m: the repeated block's length for EW_ROW). */
typedef struct ew_plan {
    int64_t n;
    int rank;
    int64_t dims[EW_MAX_RANK];
    int64_t st[3][EW_MAX_RANK];
    int mode[3];
    int64_t m[3];
    bool strided;
} ew_plan;

template <typename I> struct ew_flat {
    int mode[3];
    I m[3];
};

template <typename I> struct ew_geom {
    int rank;
    I dims[EW_MAX_RANK];
    I st[3][EW_MAX_RANK];
};

static lp_status ew_plan_make(const lp_gpu_call *c, const lp_gpu_tensor *out,
                              const lp_gpu_tensor *const ins[3], const int index[3], ew_plan *p) {
    int R = out->rank;
    if (R < 0 || R > LP_MAX_RANK)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output has rank %d", R);
    memset(p, 0, sizeof *p);
    p->n = lp_gpu_numel(out);
    int64_t st[3][LP_MAX_RANK], dims[LP_MAX_RANK];
    for (int k = 0; k < 3; k++) {
        const lp_gpu_tensor *t = ins[k];
        if (!t) {
            for (int d = 0; d < R; d++) st[k][d] = 0;
            continue;
        }
        if (t->rank > R || t->rank < 0)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL,
                               "input %d (rank %d) does not broadcast to the output shape",
                               index[k], t->rank);
        int64_t s = 1;
        for (int d = R - 1; d >= 0; d--) {
            int j = d - (R - t->rank);
            if (j < 0) {
                st[k][d] = 0;
                continue;
            }
            if (t->dims[j] == out->dims[d]) st[k][d] = out->dims[d] == 1 ? 0 : s;
            else if (t->dims[j] == 1) st[k][d] = 0;
            else
                return lp_gpu_fail(c, LP_ERR_INVALID_MODEL,
                                   "input %d (rank %d) does not broadcast to the output shape",
                                   index[k], t->rank);
            s *= t->dims[j];
        }
    }
    /* drop size-1 dims; merge a dim into the one outside it when every
     * operand steps through both as one */
    int r = 0;
    for (int d = 0; d < R; d++) {
        if (out->dims[d] == 1) continue;
        bool merge = r > 0;
        for (int k = 0; k < 3 && merge; k++) merge = st[k][r - 1] == st[k][d] * out->dims[d];
        if (merge) {
            dims[r - 1] *= out->dims[d];
            for (int k = 0; k < 3; k++) st[k][r - 1] = st[k][d];
        } else {
            dims[r] = out->dims[d];
            for (int k = 0; k < 3; k++) st[k][r] = st[k][d];
            r++;
        }
    }
    int64_t cs[LP_MAX_RANK];
    for (int d = r - 1; d >= 0; d--) cs[d] = d == r - 1 ? 1 : cs[d + 1] * dims[d + 1];
    for (int k = 0; k < 3; k++) {
        if (!ins[k]) {
            p->mode[k] = EW_NONE;
            continue;
        }
        int t = 0;
        while (t < r && st[k][t] == 0) t++;
        bool row = true;
        for (int d = t; d < r && row; d++) row = st[k][d] == cs[d];
        if (t == r) p->mode[k] = EW_SCALAR, p->m[k] = 1;
        else if (!row) p->mode[k] = EW_STRIDED, p->strided = true;
        else if (t == 0) p->mode[k] = EW_FULL, p->m[k] = p->n;
        else p->mode[k] = EW_ROW, p->m[k] = cs[t] * dims[t];
    }
    if (p->strided) {
        if (r > EW_MAX_RANK)
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "the broadcast needs %d dims after merging, "
                               "more than %d", r, EW_MAX_RANK);
        p->rank = r;
        for (int d = 0; d < r; d++) {
            p->dims[d] = dims[d];
            for (int k = 0; k < 3; k++) p->st[k][d] = st[k][d];
        }
    }
    return LP_OK;
}

template <int VEC, typename T, typename I>
__device__ __forceinline__ void ew_load(const T *p, int mode, I full, I row, T s, T (&out)[VEC]) {
    if (mode != EW_FULL && mode != EW_ROW) {
#pragma unroll
        for (int j = 0; j < VEC; j++) out[j] = s;
        return;
    }
    const T *q = p + (mode == EW_FULL ? full : row);
    if constexpr (VEC == 1) {
        out[0] = *q;
    } else {
        ew_vec<T, VEC> v = *reinterpret_cast<const ew_vec<T, VEC> *>(q);
#pragma unroll
        for (int j = 0; j < VEC; j++) out[j] = v.v[j];
    }
}

template <typename T, typename I>
__device__ __forceinline__ T ew_at(const T *p, int mode, I i, I m) {
    switch (mode) {
    case EW_FULL: return p[i];
    case EW_ROW: return p[i % m];
    case EW_SCALAR: return p[0];
    default: return T();
    }
}

/* Flat kernel: operands full, scalar or repeated rows. A row operand's
 * offset advances by the grid stride modulo its length, without division. */
template <class F, typename TA, typename TB, typename TC, typename TY, int VEC, typename I>
__global__ void __launch_bounds__(EW_THREADS)
ew_flat_kernel(F f, const TA *a, const TB *b, const TC *cc, TY *y, I n, ew_flat<I> fl) {
    I tid = (I)blockIdx.x * blockDim.x + threadIdx.x, nt = (I)gridDim.x * blockDim.x;
    I nv = n / VEC;
    TA sa = fl.mode[0] == EW_SCALAR ? a[0] : TA();
    TB sb = fl.mode[1] == EW_SCALAR ? b[0] : TB();
    TC sc = fl.mode[2] == EW_SCALAR ? cc[0] : TC();
    I ro[3], rs[3];
#pragma unroll
    for (int k = 0; k < 3; k++) {
        ro[k] = rs[k] = 0;
        if (fl.mode[k] == EW_ROW && tid < nv) {
            ro[k] = (tid * VEC) % fl.m[k];
            rs[k] = (nt * VEC) % fl.m[k];
        }
    }
    for (I v = tid; v < nv; v += nt) {
        I base = v * VEC;
        TA xa[VEC];
        TB xb[VEC];
        TC xc[VEC];
        ew_load<VEC>(a, fl.mode[0], base, ro[0], sa, xa);
        ew_load<VEC>(b, fl.mode[1], base, ro[1], sb, xb);
        ew_load<VEC>(cc, fl.mode[2], base, ro[2], sc, xc);
        ew_vec<TY, VEC> r;
#pragma unroll
        for (int j = 0; j < VEC; j++) r.v[j] = f(xa[j], xb[j], xc[j]);
        *reinterpret_cast<ew_vec<TY, VEC> *>(y + base) = r;
#pragma unroll
        for (int k = 0; k < 3; k++) {
            ro[k] += rs[k];
            if (ro[k] >= fl.m[k]) ro[k] -= fl.m[k];
        }
    }
    for (I i = nv * VEC + tid; i < n; i += nt)
        y[i] = f(ew_at(a, fl.mode[0], i, fl.m[0]), ew_at(b, fl.mode[1], i, fl.m[1]),
                 ew_at(cc, fl.mode[2], i, fl.m[2]));
}

template <class F, typename TA, typename TB, typename TC, typename TY, typename I>
__global__ void __launch_bounds__(EW_THREADS)
ew_strided_kernel(F f, const TA *a, const TB *b, const TC *cc, TY *y, I n, ew_geom<I> g) {
    I tid = (I)blockIdx.x * blockDim.x + threadIdx.x, nt = (I)gridDim.x * blockDim.x;
    for (I i = tid; i < n; i += nt) {
        I r = i, o0 = 0, o1 = 0, o2 = 0;
        for (int d = g.rank - 1; d >= 0; d--) {
            I q = r / g.dims[d], cd = r - q * g.dims[d];
            r = q;
            o0 += cd * g.st[0][d];
            o1 += cd * g.st[1][d];
            o2 += cd * g.st[2][d];
        }
        y[i] = f(a ? a[o0] : TA(), b ? b[o1] : TB(), cc ? cc[o2] : TC());
    }
}

template <typename T> static bool ew_vec_ok(const void *p, int mode, int64_t m, int v) {
    if (mode == EW_FULL) return ew_aligned(p, v * sizeof(T));
    if (mode == EW_ROW) return ew_aligned(p, v * sizeof(T)) && m % v == 0;
    return true;
}

template <typename I> static ew_flat<I> ew_flat_of(const ew_plan *p) {
    ew_flat<I> f;
    for (int k = 0; k < 3; k++) {
        f.mode[k] = p->mode[k];
        f.m[k] = (I)(p->m[k] > 0 ? p->m[k] : 1);
    }
    return f;
}

template <typename I> static ew_geom<I> ew_geom_of(const ew_plan *p) {
    ew_geom<I> g;
    memset(&g, 0, sizeof g);
    g.rank = p->rank;
    for (int d = 0; d < p->rank; d++) {
        g.dims[d] = (I)p->dims[d];
        for (int k = 0; k < 3; k++) g.st[k][d] = (I)p->st[k][d];
    }
    return g;
}

template <class F, typename TA, typename TB, typename TC, typename TY, typename I>
static void ew_launch3_at(const lp_gpu_call *c, const ew_plan *p, F f, const TA *a, const TB *b,
                          const TC *cc, TY *y, bool vec, unsigned blocks) {
    constexpr int V = 16 / (sizeof(TA) > sizeof(TB) ? (sizeof(TA) > sizeof(TY) ? sizeof(TA) : sizeof(TY))
                                                    : (sizeof(TB) > sizeof(TY) ? sizeof(TB) : sizeof(TY)));
    if (p->strided)
        ew_strided_kernel<F, TA, TB, TC, TY, I><<<blocks, EW_THREADS, 0, c->stream>>>(
            f, a, b, cc, y, (I)p->n, ew_geom_of<I>(p));
    else if (vec)
        ew_flat_kernel<F, TA, TB, TC, TY, V, I><<<blocks, EW_THREADS, 0, c->stream>>>(
            f, a, b, cc, y, (I)p->n, ew_flat_of<I>(p));
    else
        ew_flat_kernel<F, TA, TB, TC, TY, 1, I><<<blocks, EW_THREADS, 0, c->stream>>>(
            f, a, b, cc, y, (I)p->n, ew_flat_of<I>(p));
}

template <class F, typename TA, typename TB, typename TC, typename TY>
static lp_status ew_launch3(const lp_gpu_call *c, const ew_plan *p, F f, const void *a,
                            const void *b, const void *cc, void *y) {
    if (p->n <= 0) return LP_OK;
    constexpr int V = 16 / (sizeof(TA) > sizeof(TB) ? (sizeof(TA) > sizeof(TY) ? sizeof(TA) : sizeof(TY))
                                                    : (sizeof(TB) > sizeof(TY) ? sizeof(TB) : sizeof(TY)));
    bool vec = !p->strided && V > 1 && ew_aligned(y, V * sizeof(TY)) &&
               ew_vec_ok<TA>(a, p->mode[0], p->m[0], V) && ew_vec_ok<TB>(b, p->mode[1], p->m[1], V) &&
               ew_vec_ok<TC>(cc, p->mode[2], p->m[2], V);
    unsigned blocks;
    lp_status st = ew_blocks(c, vec ? (p->n + V - 1) / V : p->n, &blocks);
    if (st != LP_OK) return st;
    /* 32-bit indices when the grid-stride loop cannot step past INT32_MAX */
    if (p->n + (int64_t)blocks * EW_THREADS * V <= INT32_MAX)
        ew_launch3_at<F, TA, TB, TC, TY, int32_t>(c, p, f, (const TA *)a, (const TB *)b,
                                                  (const TC *)cc, (TY *)y, vec, blocks);
    else
        ew_launch3_at<F, TA, TB, TC, TY, int64_t>(c, p, f, (const TA *)a, (const TB *)b,
                                                  (const TC *)cc, (TY *)y, vec, blocks);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* ---- functors ---- */

__device__ __forceinline__ float ew_gelu(float x, bool tanh_approx) {
    if (tanh_approx) {
        float k = 0.7978845608028654f; /* sqrt(2 / pi) */
        return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    /* 1 + erf(t) = erfc(-t), without the cancellation of 1 + erf for t << 0 */
    return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

template <typename T> struct ew_unary_f {
    int op;
    bool tanh_approx;
    float alpha, beta;
    __device__ void prepare() {}
    __device__ __forceinline__ T operator()(T x) const {
        if constexpr (ew_is_float<T>::value) {
            float v = ew_tof(x), r;
            switch (op) {
            case LP_OP_Neg: r = -v; break;
            case LP_OP_Abs: r = fabsf(v); break;
            case LP_OP_Sign: r = (float)((v > 0) - (v < 0)); break;
            case LP_OP_Sqrt: r = sqrtf(v); break;
            case LP_OP_Reciprocal: r = 1.0f / v; break;
            case LP_OP_Exp: r = expf(v); break;
            case LP_OP_Log: r = logf(v); break;
            case LP_OP_Gelu: r = ew_gelu(v, tanh_approx); break;
            case LP_OP_Erf: r = erff(v); break;
            case LP_OP_Tanh: r = tanhf(v); break;
            case LP_OP_Sigmoid:
                r = v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
                break;
            case LP_OP_Relu: r = v > 0 ? v : 0.0f; break;
            case LP_OP_Sin: r = sinf(v); break;
            case LP_OP_Cos: r = cosf(v); break;
            case LP_OP_Floor: r = floorf(v); break;
            case LP_OP_Ceil: r = ceilf(v); break;
            case LP_OP_LeakyRelu: r = v >= 0 ? v : alpha * v; break;
            case LP_OP_Softplus: r = v > 20.0f ? v : log1pf(expf(v)); break;
            case LP_OP_Softsign: r = v / (1.0f + fabsf(v)); break;
            case LP_OP_HardSigmoid: r = fmaxf(0.0f, fminf(1.0f, alpha * v + beta)); break;
            case LP_OP_HardSwish: r = v * fmaxf(0.0f, fminf(1.0f, v / 6.0f + 0.5f)); break;
            default: r = v; break; /* refused on the host */
            }
            return ew_fromf<T>(r);
        } else {
            int64_t v = ew_toi(x), r;
            switch (op) {
            case LP_OP_Neg: r = (int64_t)(0 - (uint64_t)v); break;
            case LP_OP_Abs: r = v < 0 ? (int64_t)(0 - (uint64_t)v) : v; break;
            case LP_OP_Sign: r = (v > 0) - (v < 0); break;
            case LP_OP_Relu: r = v > 0 ? v : 0; break;
            case LP_OP_Not: r = !v; break;
            default: r = v; break; /* Floor, Ceil */
            }
            return ew_fromi<T>(r);
        }
    }
};

template <typename T> struct ew_clip_f {
    const T *lo, *hi;   /* device scalars, or NULL */
    float flo, fhi;     /* float bounds before the inputs are read */
    int64_t ilo, ihi;
    __device__ void prepare() {
        if constexpr (ew_is_float<T>::value) {
            if (lo) flo = ew_tof(*lo);
            if (hi) fhi = ew_tof(*hi);
        } else {
            if (lo) ilo = ew_toi(*lo);
            if (hi) ihi = ew_toi(*hi);
        }
    }
    __device__ __forceinline__ T operator()(T x) const {
        if constexpr (ew_is_float<T>::value) {
            float v = ew_tof(x);
            if (v < flo) v = flo;
            if (v > fhi) v = fhi;
            return ew_fromf<T>(v);
        } else {
            int64_t v = ew_toi(x);
            if (v < ilo) v = ilo;
            if (v > ihi) v = ihi;
            return ew_fromi<T>(v);
        }
    }
};

template <typename TX, typename TY> struct ew_cast_f {
    __device__ void prepare() {}
    __device__ __forceinline__ TY operator()(TX x) const {
        constexpr bool fx = ew_is_float<TX>::value, fy = ew_is_float<TY>::value;
        constexpr bool dx = std::is_same<TX, double>::value, dy = std::is_same<TY, double>::value;
        if constexpr (dx && dy) return x;
        else if constexpr (dx && !fy) {
            if constexpr (std::is_same<TY, ew_bool>::value) return ew_bool{(uint8_t)(x != 0)};
            else return ew_fromi<TY>((int64_t)x);
        } else if constexpr (fx) return ew_fromf<TY>(ew_tof(x));
        else if constexpr (dy) return (double)ew_toi(x);
        else if constexpr (fy) return ew_fromf<TY>((float)ew_toi(x));
        else return ew_fromi<TY>(ew_toi(x));
    }
};

__device__ __forceinline__ int64_t ew_ipow(int64_t b, int64_t e) {
    if (e < 0) return b == 1 ? 1 : b == -1 ? (e & 1 ? -1 : 1) : 0;
    uint64_t r = 1, x = (uint64_t)b;
    while (e) {
        if (e & 1) r *= x;
        x *= x;
        e >>= 1;
    }
    return (int64_t)r;
}

/* Add Sub Mul Div Pow: the result has the first input's type. */
template <typename TA, typename TB> struct ew_arith_f {
    int op;
    __device__ __forceinline__ TA operator()(TA a, TB b, uint8_t) const {
        if constexpr (ew_is_float<TA>::value) {
            float p = ew_tof(a), q = ew_tof(b), r;
            switch (op) {
            case LP_OP_Add: r = p + q; break;
            case LP_OP_Sub: r = p - q; break;
            case LP_OP_Mul: r = p * q; break;
            case LP_OP_Div: r = p / q; break;
            default: r = powf(p, q); break;
            }
            return ew_fromf<TA>(r);
        } else if constexpr (ew_is_float<TB>::value) {
            /* integer base, float exponent (Pow only) */
            return ew_fromf<TA>((float)pow((double)ew_toi(a), (double)ew_tof(b)));
        } else {
            int64_t p = ew_toi(a), q = ew_toi(b), r;
            switch (op) {
            case LP_OP_Add: r = (int64_t)((uint64_t)p + (uint64_t)q); break;
            case LP_OP_Sub: r = (int64_t)((uint64_t)p - (uint64_t)q); break;
            case LP_OP_Mul: r = (int64_t)((uint64_t)p * (uint64_t)q); break;
            case LP_OP_Div:
                /* truncating; division by zero (an error on the CPU) gives 0 */
                r = q == 0 ? 0 : (p == INT64_MIN && q == -1) ? p : p / q;
                break;
            default: r = ew_ipow(p, q); break;
            }
            return ew_fromi<TA>(r);
        }
    }
};

/* Comparisons and And / Or / Xor: bool out. */
template <typename T> struct ew_cmp_f {
    int op;
    __device__ __forceinline__ ew_bool operator()(T a, T b, uint8_t) const {
        bool t;
        if (op == LP_OP_And || op == LP_OP_Or || op == LP_OP_Xor) {
            bool p = ew_toi(a) != 0, q = ew_toi(b) != 0;
            t = op == LP_OP_And ? p && q : op == LP_OP_Or ? p || q : p != q;
        } else if constexpr (ew_is_float<T>::value) {
            float p = ew_tof(a), q = ew_tof(b);
            t = op == LP_OP_Equal ? p == q : op == LP_OP_Less ? p < q
              : op == LP_OP_LessOrEqual ? p <= q : op == LP_OP_Greater ? p > q : p >= q;
        } else {
            int64_t p = ew_toi(a), q = ew_toi(b);
            t = op == LP_OP_Equal ? p == q : op == LP_OP_Less ? p < q
              : op == LP_OP_LessOrEqual ? p <= q : op == LP_OP_Greater ? p > q : p >= q;
        }
        return ew_bool{(uint8_t)t};
    }
};

/* Max Min Sum Mean folding up to three values (the first may be the
 * running result in y), rounding to T between steps as the reference does
 * by storing each step; Mean divides at the last step of the last launch. */
template <typename T> struct ew_fold_f {
    int op, count, n_total;
    bool last;
    __device__ __forceinline__ T operator()(T a, T b, T c) const {
        T xs[2] = {b, c};
        if constexpr (ew_is_float<T>::value) {
            float v = ew_tof(a);
            for (int j = 0; j + 1 < count; j++) {
                float x = ew_tof(xs[j]);
                if (j > 0) v = ew_tof(ew_fromf<T>(v));
                switch (op) {
                case LP_OP_Max: v = (isnan(v) || v > x) ? v : x; break;
                case LP_OP_Min: v = (isnan(v) || v < x) ? v : x; break;
                default: v = v + x; break;
                }
            }
            if (last && op == LP_OP_Mean) v /= (float)n_total;
            return ew_fromf<T>(v);
        } else {
            int64_t v = ew_toi(a);
            for (int j = 0; j + 1 < count; j++) {
                int64_t x = ew_toi(xs[j]);
                if (j > 0) v = ew_toi(ew_fromi<T>(v));
                switch (op) {
                case LP_OP_Max: v = v > x ? v : x; break;
                case LP_OP_Min: v = v < x ? v : x; break;
                default: v = (int64_t)((uint64_t)v + (uint64_t)x); break;
                }
            }
            if (last && op == LP_OP_Mean) v /= n_total;
            return ew_fromi<T>(v);
        }
    }
};

template <typename U> struct ew_where_f {
    __device__ __forceinline__ U operator()(uint8_t cond, U x, U y) const { return cond ? x : y; }
};

/* ---- family functions ---- */

static lp_status ew_need(const lp_gpu_call *c, int n_in) {
    for (int i = 0; i < n_in; i++)
        if (!lp_gpu_in(c, i)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", i);
    if (!lp_gpu_out(c, 0)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output 0 is missing");
    for (int i = 0; i < c->n_inputs; i++) {
        const lp_gpu_tensor *t = lp_gpu_in(c, i);
        if (t && !ew_known(t->dtype))
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input %d has dtype %s, which the GPU "
                               "kernels do not compute with", i, lp_dtype_label(t->dtype));
    }
    if (!ew_known(c->outputs[0].dtype))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "output 0 has dtype %s, which the GPU kernels "
                           "do not compute with", lp_dtype_label(c->outputs[0].dtype));
    return LP_OK;
}

lp_status lp_gpu_unary(const lp_gpu_call *c) {
    lp_status st = ew_need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int64_t n = lp_gpu_numel(x);
    if (n != lp_gpu_numel(y))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, input %lld",
                           (long long)lp_gpu_numel(y), (long long)n);
    if (x->dtype != y->dtype)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "output dtype %s differs from the input's %s",
                           lp_dtype_label(y->dtype), lp_dtype_label(x->dtype));
    bool tanh_approx = false;
    if (c->op == LP_OP_Gelu) {
        const char *a = lp_gpu_attr_string(c, "approximate", "none");
        if (strcmp(a, "tanh") == 0) tanh_approx = true;
        else if (strcmp(a, "none") != 0)
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "approximate='%s' is not 'none' or 'tanh'", a);
    }
    int op = c->op;
    if (ew_float_dtype(x->dtype)) {
        switch (op) {
        case LP_OP_Neg: case LP_OP_Abs: case LP_OP_Sqrt: case LP_OP_Reciprocal: case LP_OP_Exp:
        case LP_OP_Log: case LP_OP_Gelu: case LP_OP_Erf: case LP_OP_Tanh: case LP_OP_Sigmoid:
        case LP_OP_Relu: case LP_OP_Sin: case LP_OP_Cos: case LP_OP_HardSigmoid:
        case LP_OP_HardSwish: case LP_OP_Floor: case LP_OP_Ceil: case LP_OP_Sign:
        case LP_OP_LeakyRelu: case LP_OP_Softplus: case LP_OP_Softsign:
            break;
        default:
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input dtype %s is not supported",
                               lp_dtype_label(x->dtype));
        }
    } else if (op != LP_OP_Neg && op != LP_OP_Abs && op != LP_OP_Sign && op != LP_OP_Relu &&
               op != LP_OP_Not && op != LP_OP_Floor && op != LP_OP_Ceil) {
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input dtype %s is not a float type",
                           lp_dtype_label(x->dtype));
    }
    float alpha = lp_gpu_attr_float(c, "alpha", op == LP_OP_HardSigmoid ? 0.2f : 0.01f);
    float beta = lp_gpu_attr_float(c, "beta", 0.5f);
    return ew_switch_all(x->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        ew_unary_f<T> f{op, tanh_approx, alpha, beta};
        return ew_map<ew_unary_f<T>, T, T>(c, f, x->data, y->data, n);
    });
}

static bool ew_is_compare(int op) {
    return op == LP_OP_Equal || op == LP_OP_Less || op == LP_OP_LessOrEqual ||
           op == LP_OP_Greater || op == LP_OP_GreaterOrEqual || op == LP_OP_And ||
           op == LP_OP_Or || op == LP_OP_Xor;
}

lp_status lp_gpu_binary(const lp_gpu_call *c) {
    lp_status st = ew_need(c, 2);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *a = lp_gpu_in(c, 0), *b = lp_gpu_in(c, 1);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int op = c->op;
    if (op != LP_OP_Pow && a->dtype != b->dtype)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input dtypes %s and %s differ",
                           lp_dtype_label(a->dtype), lp_dtype_label(b->dtype));
    if (ew_is_compare(op) ? y->dtype != LP_DT_BOOL : y->dtype != a->dtype)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "output dtype %s does not follow input 0's %s",
                           lp_dtype_label(y->dtype), lp_dtype_label(a->dtype));
    if (op == LP_OP_Pow && a->dtype != b->dtype && (!ew_pow_type(a->dtype) || !ew_pow_type(b->dtype)))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "Pow of %s by %s is not supported",
                           lp_dtype_label(a->dtype), lp_dtype_label(b->dtype));
    const lp_gpu_tensor *ins[3] = {a, b, NULL};
    const int index[3] = {0, 1, 2};
    ew_plan p;
    if ((st = ew_plan_make(c, y, ins, index, &p)) != LP_OK) return st;
    if (ew_is_compare(op))
        return ew_switch_all(a->dtype, [&](auto tag) {
            using T = typename decltype(tag)::type;
            return ew_launch3<ew_cmp_f<T>, T, T, uint8_t, ew_bool>(c, &p, ew_cmp_f<T>{op}, a->data,
                                                                   b->data, NULL, y->data);
        });
    if (op == LP_OP_Pow && a->dtype != b->dtype)
        return ew_switch_pow(a->dtype, [&](auto ta) {
            using TA = typename decltype(ta)::type;
            return ew_switch_pow(b->dtype, [&](auto tb) {
                using TB = typename decltype(tb)::type;
                return ew_launch3<ew_arith_f<TA, TB>, TA, TB, uint8_t, TA>(
                    c, &p, ew_arith_f<TA, TB>{op}, a->data, b->data, NULL, y->data);
            });
        });
    return ew_switch_all(a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        return ew_launch3<ew_arith_f<T, T>, T, T, uint8_t, T>(c, &p, ew_arith_f<T, T>{op}, a->data,
                                                              b->data, NULL, y->data);
    });
}

/* Max Min Sum Mean: inputs folded into y three at a time (then y and two
 * more per launch). */
lp_status lp_gpu_variadic(const lp_gpu_call *c) {
    lp_status st = ew_need(c, 1);
    if (st != LP_OK) return st;
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int n_in = c->n_inputs;
    for (int k = 0; k < n_in; k++) {
        const lp_gpu_tensor *x = lp_gpu_in(c, k);
        if (!x) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", k);
        if (x->dtype != y->dtype)
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input %d has dtype %s, the output %s", k,
                               lp_dtype_label(x->dtype), lp_dtype_label(y->dtype));
    }
    lp_gpu_tensor acc = *y;
    for (int k = 0; k < n_in;) {
        const lp_gpu_tensor *ins[3] = {NULL, NULL, NULL};
        int index[3] = {-1, -1, -1}, count = 0;
        if (k > 0) ins[count] = &acc, index[count++] = -1;
        while (count < 3 && k < n_in) ins[count] = lp_gpu_in(c, k), index[count++] = k++;
        ew_plan p;
        if ((st = ew_plan_make(c, y, ins, index, &p)) != LP_OK) return st;
        bool last = k == n_in;
        st = ew_switch_all(y->dtype, [&](auto tag) {
            using T = typename decltype(tag)::type;
            ew_fold_f<T> f{c->op, count, n_in, last};
            return ew_launch3<ew_fold_f<T>, T, T, T, T>(c, &p, f, ins[0]->data,
                                                        ins[1] ? ins[1]->data : NULL,
                                                        ins[2] ? ins[2]->data : NULL, y->data);
        });
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

lp_status lp_gpu_where(const lp_gpu_call *c) {
    lp_status st = ew_need(c, 3);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *ins[3] = {lp_gpu_in(c, 0), lp_gpu_in(c, 1), lp_gpu_in(c, 2)};
    const int index[3] = {0, 1, 2};
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if (ins[1]->dtype != y->dtype || ins[2]->dtype != y->dtype)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "X, Y and output dtypes differ");
    if (lp_gpu_dtype_size(ins[0]->dtype) != 1 || ew_float_dtype(ins[0]->dtype))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "condition dtype %s is not bool",
                           lp_dtype_label(ins[0]->dtype));
    ew_plan p;
    if ((st = ew_plan_make(c, y, ins, index, &p)) != LP_OK) return st;
    const void *pc = ins[0]->data, *px = ins[1]->data, *py = ins[2]->data;
    switch (lp_gpu_dtype_size(y->dtype)) {
    case 1: return ew_launch3<ew_where_f<uint8_t>, uint8_t, uint8_t, uint8_t, uint8_t>(c, &p, {}, pc, px, py, y->data);
    case 2: return ew_launch3<ew_where_f<uint16_t>, uint8_t, uint16_t, uint16_t, uint16_t>(c, &p, {}, pc, px, py, y->data);
    case 4: return ew_launch3<ew_where_f<uint32_t>, uint8_t, uint32_t, uint32_t, uint32_t>(c, &p, {}, pc, px, py, y->data);
    case 8: return ew_launch3<ew_where_f<uint64_t>, uint8_t, uint64_t, uint64_t, uint64_t>(c, &p, {}, pc, px, py, y->data);
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtype %s is not supported", lp_dtype_label(y->dtype));
    }
}

lp_status lp_gpu_clip(const lp_gpu_call *c) {
    lp_status st = ew_need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0), *lo = lp_gpu_in(c, 1), *hi = lp_gpu_in(c, 2);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int64_t n = lp_gpu_numel(x);
    if (n != lp_gpu_numel(y)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output size differs");
    if ((lo && lp_gpu_numel(lo) != 1) || (hi && lp_gpu_numel(hi) != 1))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "min and max must be scalars");
    if (x->dtype != y->dtype || (lo && lo->dtype != x->dtype) || (hi && hi->dtype != x->dtype))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input, min, max and output dtypes differ");
    float flo = -INFINITY, fhi = INFINITY;
    if (c->opset < 11) {
        flo = lp_gpu_attr_float(c, "min", -INFINITY);
        fhi = lp_gpu_attr_float(c, "max", INFINITY);
    }
    return ew_switch_all(x->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        ew_clip_f<T> f{lo ? (const T *)lo->data : NULL, hi ? (const T *)hi->data : NULL,
                       flo, fhi, INT64_MIN, INT64_MAX};
        return ew_map<ew_clip_f<T>, T, T>(c, f, x->data, y->data, n);
    });
}

lp_status lp_gpu_cast(const lp_gpu_call *c) {
    lp_status st = ew_need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int64_t to = lp_gpu_attr_int(c, "to", -1);
    if (to != (int64_t)y->dtype)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "attribute to=%lld but the output is %s",
                           (long long)to, lp_dtype_label(y->dtype));
    int64_t n = lp_gpu_numel(x);
    if (n != lp_gpu_numel(y)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output size differs");
    if (x->data == y->data && x->dtype == y->dtype) return LP_OK;
    return ew_switch_all(x->dtype, [&](auto tx) {
        using TX = typename decltype(tx)::type;
        return ew_switch_all(y->dtype, [&](auto ty) {
            using TY = typename decltype(ty)::type;
            return ew_map<ew_cast_f<TX, TY>, TX, TY>(c, ew_cast_f<TX, TY>{}, x->data, y->data, n);
        });
    });
}
