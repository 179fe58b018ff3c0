/* gpu_nn.cu - pooling, the normalisations, Softmax and the reductions on the
 * GPU, the twins of runtime/ref_nn.c.
 *
 * Row-wise work (LayerNormalization, Softmax along the last axis, reductions
 * over the trailing dims, the global pools) runs one warp per row for rows of
 * up to ROW_WARP_MAX elements and one block per row above; each accumulates in
 * fp32 (int64 for integer reductions) through warp shuffles. LayerNorm and
 * Softmax keep a row in registers where it fits, so that their passes (mean
 * then variance, max then sum) read memory once. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "gpu_kernels.h"

namespace {

constexpr int ROW_WARP_MAX = 1024;  /* longest row a warp takes */
constexpr int ROW_BLOCK = 512;      /* threads of a block-per-row kernel */
constexpr int EW_BLOCK = 256;       /* threads of an element-wise kernel */
constexpr int64_t GRID_MAX = 65535; /* blocks of a grid-stride launch */
/* 32-bit indices below this many elements: a grid-stride step past the end
 * still fits in int32 */
constexpr int64_t I32_LIMIT = INT32_MAX - GRID_MAX * 1024;

/* ---- element conversion ---------------------------------------------------- */

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

template <typename T>
constexpr bool is_flt_v = std::is_same<T, float>::value || std::is_same<T, __half>::value ||
                          std::is_same<T, __nv_bfloat16>::value;

/* A float stored into an integer: truncation toward zero, NaN as 0 and
 * saturation at the int64 range, as the reference's store does. */
template <typename T> __device__ __forceinline__ T int_from_f(float v) {
    if (isnan(v)) return (T)0;
    if (v >= 9.2233715e18f) return (T)INT64_MAX;
    if (v <= -9.2233715e18f) return (T)INT64_MIN;
    return (T)(int64_t)v;
}

/* Side tensors (Scale, B, statistics) whose dtype may differ from X's. */
__device__ __forceinline__ float ld_any(const void *p, int dt, int64_t i) {
    switch (dt) {
    case LP_DT_FLOAT16: return __half2float(((const __half *)p)[i]);
    case LP_DT_BFLOAT16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case LP_DT_DOUBLE: return (float)((const double *)p)[i];
    default: return ((const float *)p)[i];
    }
}
__device__ __forceinline__ void st_any(void *p, int dt, int64_t i, float v) {
    switch (dt) {
    case LP_DT_FLOAT16: ((__half *)p)[i] = __float2half_rn(v); break;
    case LP_DT_BFLOAT16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    case LP_DT_DOUBLE: ((double *)p)[i] = (double)v; break;
    default: ((float *)p)[i] = v; break;
    }
}

bool is_float_dt(lp_dtype t) {
    return t == LP_DT_FLOAT || t == LP_DT_FLOAT16 || t == LP_DT_BFLOAT16 || t == LP_DT_DOUBLE;
}


int64_t prod(const int64_t *dims, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= dims[d];
    return p;
}

unsigned grid_for(int64_t work, int block) {
    int64_t g = (work + block - 1) / block;
    if (g < 1) g = 1;
    return (unsigned)(g < GRID_MAX ? g : GRID_MAX);
}

/* ---- warp and block reductions ----------------------------------------------- */

struct OpSum {
    template <typename A> __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct OpMaxF { /* fmaxf: NaN ignored */
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename A, typename F> __device__ __forceinline__ A warp_all(A v, F f) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* Every thread of the block gets the reduction of v; blockDim.x is a
 * multiple of 32. */
template <typename A, typename F> __device__ __forceinline__ A block_all(A v, F f, A ident) {
    __shared__ A sh[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_all(v, f);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : ident;
    return warp_all(v, f);
}

/* ---- broadcast of Scale / B over the normalised dims ----------------------- */

enum { BC_FULL, BC_SCALAR, BC_MOD, BC_GENERAL };

/* Kernel parameters stay small (a launch copies them): the general mode
 * holds at most BC_MAX_RANK dims. */
#define BC_MAX_RANK 8
struct Bcast {
    int mode;
    int64_t mod;              /* BC_MOD: index is i % mod */
    int rank;                 /* BC_GENERAL */
    int64_t dims[BC_MAX_RANK];
    int64_t strides[BC_MAX_RANK];
};

/* The broadcast of t to dims, worked out at full rank. */
struct BcastFull {
    int64_t dims[LP_MAX_RANK];
    int64_t strides[LP_MAX_RANK];
};

__device__ __forceinline__ int64_t bc_index(const Bcast &b, int64_t i) {
    switch (b.mode) {
    case BC_FULL: return i;
    case BC_SCALAR: return 0;
    case BC_MOD: return i % b.mod;
    default: {
        int64_t off = 0;
        for (int d = b.rank - 1; d >= 0; d--) {
            off += (i % b.dims[d]) * b.strides[d];
            i /= b.dims[d];
        }
        return off;
    }
    }
}

/* t broadcast (numpy rules) to the shape dims[0..rank); false if it does not. */
bool bcast_make(const lp_gpu_tensor *t, int rank, const int64_t *dims, Bcast *out) {
    if (t->rank > rank) return false;
    int lead = rank - t->rank;
    int64_t st = 1;
    BcastFull full;
    struct {
        int mode;
        int64_t mod;
        int rank;
        int64_t *dims, *strides;
    } bb = {0, 0, rank, full.dims, full.strides}, *b = &bb;
    for (int d = rank - 1; d >= 0; d--) {
        int64_t td = d >= lead ? t->dims[d - lead] : 1;
        b->dims[d] = dims[d];
        if (td == dims[d]) {
            b->strides[d] = dims[d] == 1 ? 0 : st;
        } else if (td == 1) {
            b->strides[d] = 0;
        } else {
            return false;
        }
        st *= td;
    }
    /* classify: all zero strides, full row-major, or a row-major suffix */
    bool scalar = true;
    for (int d = 0; d < rank; d++)
        if (b->strides[d]) scalar = false;
    if (scalar) {
        out->mode = BC_SCALAR;
        return true;
    }
    int k = rank; /* dims k.. are row-major (size-1 dims do not matter) */
    int64_t want = 1;
    while (k > 0 && (b->dims[k - 1] == 1 || b->strides[k - 1] == want)) {
        want *= b->dims[k - 1];
        k--;
    }
    bool zero_lead = true;
    for (int d = 0; d < k; d++)
        if (b->strides[d]) zero_lead = false;
    if (zero_lead) {
        out->mode = k == 0 ? BC_FULL : BC_MOD;
        out->mod = want;
        return true;
    }
    if (rank > BC_MAX_RANK) return false;
    out->mode = BC_GENERAL;
    out->rank = rank;
    for (int d = 0; d < rank; d++) {
        out->dims[d] = full.dims[d];
        out->strides[d] = full.strides[d];
    }
    return true;
}

/* ---- LayerNormalization ------------------------------------------------------ */

template <typename T> struct LnArgs {
    const T *x;
    T *y;
    const void *s, *b;
    int sdt, bdt;
    void *mean, *inv;
    int mdt, idt;
    int64_t rows;
    int n;
    float eps;
    Bcast bs, bb;
};

template <typename T>
__device__ __forceinline__ void ln_store(const LnArgs<T> &a, int64_t row, int j, float v, float mean,
                                         float inv) {
    float r = (v - mean) * inv * ld_any(a.s, a.sdt, bc_index(a.bs, j));
    if (a.b) r += ld_any(a.b, a.bdt, bc_index(a.bb, j));
    a.y[row * a.n + j] = from_f<T>(r);
}

/* The normalised row from registers: every Scale and B value loaded before
 * the first store (a store to Y could alias them, so loads interleaved with
 * stores would each wait for memory in turn). */
template <typename T, int VPT>
__device__ __forceinline__ void ln_row_out(const LnArgs<T> &a, int64_t row, int first, int step,
                                           const float *v, float mean, float inv) {
    float sv[VPT], bv[VPT];
#pragma unroll
    for (int k = 0; k < VPT; k++) {
        int j = first + step * k;
        sv[k] = j < a.n ? ld_any(a.s, a.sdt, bc_index(a.bs, j)) : 0.f;
        bv[k] = j < a.n && a.b ? ld_any(a.b, a.bdt, bc_index(a.bb, j)) : 0.f;
    }
    T *yr = a.y + row * a.n;
#pragma unroll
    for (int k = 0; k < VPT; k++) {
        int j = first + step * k;
        if (j < a.n) yr[j] = from_f<T>((v[k] - mean) * inv * sv[k] + bv[k]);
    }
}

template <typename T>
__device__ __forceinline__ void ln_stats(const LnArgs<T> &a, int64_t row, float mean, float inv) {
    if (a.mean) st_any(a.mean, a.mdt, row, mean);
    if (a.inv) st_any(a.inv, a.idt, row, inv);
}

/* One warp per row, the row in registers (VPT values a lane). */
template <typename T, int VPT> __global__ void ln_warp(LnArgs<T> a) {
    int lane = threadIdx.x & 31;
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t row = w; row < a.rows; row += nw) {
        const T *xr = a.x + row * a.n;
        float v[VPT], sum = 0.f;
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = lane + 32 * k;
            v[k] = j < a.n ? to_f(xr[j]) : 0.f;
            sum += v[k];
        }
        sum = warp_all(sum, OpSum());
        float mean = a.n ? sum / (float)a.n : 0.f, sq = 0.f;
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = lane + 32 * k;
            float d = v[k] - mean;
            if (j < a.n) sq += d * d;
        }
        sq = warp_all(sq, OpSum());
        float inv = 1.f / sqrtf((a.n ? sq / (float)a.n : 0.f) + a.eps);
        ln_row_out<T, VPT>(a, row, lane, 32, v, mean, inv);
        if (lane == 0) ln_stats(a, row, mean, inv);
    }
}

/* One block per row; VPT > 0 keeps the row in registers, 0 reads it again
 * for each pass. */
template <typename T, int VPT> __global__ void ln_block(LnArgs<T> a) {
    constexpr int C = VPT > 0 ? VPT : 1;
    float v[C];
    for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
        const T *xr = a.x + row * a.n;
        float sum = 0.f;
        if (VPT > 0) {
#pragma unroll
            for (int k = 0; k < C; k++) {
                int j = threadIdx.x + k * blockDim.x;
                v[k] = j < a.n ? to_f(xr[j]) : 0.f;
                sum += v[k];
            }
        } else {
            for (int j = threadIdx.x; j < a.n; j += blockDim.x) sum += to_f(xr[j]);
        }
        sum = block_all(sum, OpSum(), 0.f);
        float mean = sum / (float)a.n, sq = 0.f;
        if (VPT > 0) {
#pragma unroll
            for (int k = 0; k < C; k++) {
                int j = threadIdx.x + k * blockDim.x;
                float d = v[k] - mean;
                if (j < a.n) sq += d * d;
            }
        } else {
            for (int j = threadIdx.x; j < a.n; j += blockDim.x) {
                float d = to_f(xr[j]) - mean;
                sq += d * d;
            }
        }
        sq = block_all(sq, OpSum(), 0.f);
        float inv = 1.f / sqrtf(sq / (float)a.n + a.eps);
        if (VPT > 0) {
            ln_row_out<T, C>(a, row, threadIdx.x, blockDim.x, v, mean, inv);
        } else {
            for (int j = threadIdx.x; j < a.n; j += blockDim.x) ln_store(a, row, j, to_f(xr[j]), mean, inv);
        }
        if (threadIdx.x == 0) ln_stats(a, row, mean, inv);
    }
}

/* The common LayerNormalization: Scale and B of X's dtype over the last
 * dims, no statistics written. One block of LN_FAST_BLOCK threads a row, the
 * row in registers (at most LN_FAST_BLOCK * VPT elements), typed pointers and
 * no broadcast table: nothing but the row's bytes is read. */
#define LN_FAST_BLOCK 256
template <typename T, int VPT>
__global__ void __launch_bounds__(LN_FAST_BLOCK)
ln_fast(const T *__restrict__ x, T *__restrict__ y, const T *__restrict__ scale, const T *__restrict__ bias,
        int64_t rows, int n, float eps) {
    __shared__ float red[LN_FAST_BLOCK / 32];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * n;
        float v[VPT], sum = 0.f;
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = threadIdx.x + k * LN_FAST_BLOCK;
            v[k] = j < n ? to_f(xr[j]) : 0.f;
            sum += v[k];
        }
        sum = warp_all(sum, OpSum());
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = sum;
        __syncthreads();
        sum = 0.f;
#pragma unroll
        for (int w = 0; w < LN_FAST_BLOCK / 32; w++) sum += red[w];
        float mean = sum / (float)n, sq = 0.f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = threadIdx.x + k * LN_FAST_BLOCK;
            float dv = v[k] - mean;
            if (j < n) sq += dv * dv;
        }
        sq = warp_all(sq, OpSum());
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = sq;
        __syncthreads();
        sq = 0.f;
#pragma unroll
        for (int w = 0; w < LN_FAST_BLOCK / 32; w++) sq += red[w];
        __syncthreads();
        float inv = rsqrtf(sq / (float)n + eps);
        T *yr = y + row * n;
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = threadIdx.x + k * LN_FAST_BLOCK;
            if (j < n) {
                float r = (v[k] - mean) * inv * to_f(scale[j]);
                if (bias) r += to_f(bias[j]);
                yr[j] = from_f<T>(r);
            }
        }
    }
}

template <typename T> bool ln_fast_launch(const lp_gpu_call *c, const LnArgs<T> &a) {
    if (a.mean || a.inv || a.bs.mode != BC_FULL || (a.b && a.bb.mode != BC_FULL)) return false;
    lp_dtype want = std::is_same<T, float>::value ? LP_DT_FLOAT
                    : std::is_same<T, __half>::value ? LP_DT_FLOAT16 : LP_DT_BFLOAT16;
    if (a.sdt != (int)want || (a.b && a.bdt != (int)want) || a.n > 32 * LN_FAST_BLOCK) return false;
    unsigned g = (unsigned)(a.rows < GRID_MAX ? a.rows : GRID_MAX);
    const T *sc = (const T *)a.s, *bi = (const T *)a.b;
    if (a.n <= 2 * LN_FAST_BLOCK) ln_fast<T, 2><<<g, LN_FAST_BLOCK, 0, c->stream>>>(a.x, a.y, sc, bi, a.rows, a.n, a.eps);
    else if (a.n <= 4 * LN_FAST_BLOCK) ln_fast<T, 4><<<g, LN_FAST_BLOCK, 0, c->stream>>>(a.x, a.y, sc, bi, a.rows, a.n, a.eps);
    else if (a.n <= 8 * LN_FAST_BLOCK) ln_fast<T, 8><<<g, LN_FAST_BLOCK, 0, c->stream>>>(a.x, a.y, sc, bi, a.rows, a.n, a.eps);
    else if (a.n <= 16 * LN_FAST_BLOCK) ln_fast<T, 16><<<g, LN_FAST_BLOCK, 0, c->stream>>>(a.x, a.y, sc, bi, a.rows, a.n, a.eps);
    else ln_fast<T, 32><<<g, LN_FAST_BLOCK, 0, c->stream>>>(a.x, a.y, sc, bi, a.rows, a.n, a.eps);
    return true;
}

template <typename T> lp_status ln_launch(const lp_gpu_call *c, LnArgs<T> &a) {
    if (a.rows == 0) return LP_OK;
    /* rows of 128 or more with plain Scale / B: the fast kernel */
    if (a.n >= 128 && ln_fast_launch<T>(c, a)) {
        LP_GPU_LAUNCHED(c);
        return LP_OK;
    }
    int n = a.n;
    if (n <= ROW_WARP_MAX) {
        unsigned g = grid_for(a.rows * 32, EW_BLOCK);
        if (n <= 32) ln_warp<T, 1><<<g, EW_BLOCK, 0, c->stream>>>(a);
        else if (n <= 64) ln_warp<T, 2><<<g, EW_BLOCK, 0, c->stream>>>(a);
        else if (n <= 128) ln_warp<T, 4><<<g, EW_BLOCK, 0, c->stream>>>(a);
        else if (n <= 256) ln_warp<T, 8><<<g, EW_BLOCK, 0, c->stream>>>(a);
        else if (n <= 512) ln_warp<T, 16><<<g, EW_BLOCK, 0, c->stream>>>(a);
        else ln_warp<T, 32><<<g, EW_BLOCK, 0, c->stream>>>(a);
    } else {
        unsigned g = (unsigned)(a.rows < GRID_MAX ? a.rows : GRID_MAX);
        if (n <= 4 * ROW_BLOCK) ln_block<T, 4><<<g, ROW_BLOCK, 0, c->stream>>>(a);
        else if (n <= 8 * ROW_BLOCK) ln_block<T, 8><<<g, ROW_BLOCK, 0, c->stream>>>(a);
        else if (n <= 16 * ROW_BLOCK) ln_block<T, 16><<<g, ROW_BLOCK, 0, c->stream>>>(a);
        else ln_block<T, 0><<<g, ROW_BLOCK, 0, c->stream>>>(a);
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* ---- Softmax / LogSoftmax --------------------------------------------------- */

template <typename T> struct SmArgs {
    const T *x;
    T *y;
    int64_t rows;
    int n;
};

template <typename T, bool LOG>
__device__ __forceinline__ void sm_store(T *y, int64_t at, float v, float mx, float sum, float lsum) {
    float d = v - mx;
    y[at] = from_f<T>(LOG ? d - lsum : expf(d) / sum);
}

template <typename T, int VPT, bool LOG> __global__ void sm_warp(SmArgs<T> a) {
    int lane = threadIdx.x & 31;
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t row = w; row < a.rows; row += nw) {
        const T *xr = a.x + row * a.n;
        float v[VPT], mx = -INFINITY;
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = lane + 32 * k;
            v[k] = j < a.n ? to_f(xr[j]) : -INFINITY;
            mx = fmaxf(mx, v[k]);
        }
        mx = warp_all(mx, OpMaxF());
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = lane + 32 * k;
            if (j < a.n) sum += expf(v[k] - mx);
        }
        sum = warp_all(sum, OpSum());
        float lsum = logf(sum);
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            int j = lane + 32 * k;
            if (j < a.n) sm_store<T, LOG>(a.y, row * a.n + j, v[k], mx, sum, lsum);
        }
    }
}

template <typename T, int VPT, bool LOG> __global__ void sm_block(SmArgs<T> a) {
    constexpr int C = VPT > 0 ? VPT : 1;
    float v[C];
    for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
        const T *xr = a.x + row * a.n;
        float mx = -INFINITY;
        if (VPT > 0) {
#pragma unroll
            for (int k = 0; k < C; k++) {
                int j = threadIdx.x + k * blockDim.x;
                v[k] = j < a.n ? to_f(xr[j]) : -INFINITY;
                mx = fmaxf(mx, v[k]);
            }
        } else {
            for (int j = threadIdx.x; j < a.n; j += blockDim.x) mx = fmaxf(mx, to_f(xr[j]));
        }
        mx = block_all(mx, OpMaxF(), -INFINITY);
        float sum = 0.f;
        if (VPT > 0) {
#pragma unroll
            for (int k = 0; k < C; k++) {
                int j = threadIdx.x + k * blockDim.x;
                if (j < a.n) sum += expf(v[k] - mx);
            }
        } else {
            for (int j = threadIdx.x; j < a.n; j += blockDim.x) sum += expf(to_f(xr[j]) - mx);
        }
        sum = block_all(sum, OpSum(), 0.f);
        float lsum = logf(sum);
        if (VPT > 0) {
#pragma unroll
            for (int k = 0; k < C; k++) {
                int j = threadIdx.x + k * blockDim.x;
                if (j < a.n) sm_store<T, LOG>(a.y, row * a.n + j, v[k], mx, sum, lsum);
            }
        } else {
            for (int j = threadIdx.x; j < a.n; j += blockDim.x)
                sm_store<T, LOG>(a.y, row * a.n + j, to_f(xr[j]), mx, sum, lsum);
        }
    }
}

/* Softmax along a non-last axis: X is [outer, dim, inner]; one thread per
 * (outer, inner) column, neighbouring threads on neighbouring elements. */
template <typename T, typename I, bool LOG>
__global__ void sm_strided(const T *x, T *y, I cols, I dim, I inner) {
    for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < cols; t += (I)gridDim.x * blockDim.x) {
        I o = t / inner, in = t - o * inner;
        I base = o * dim * inner + in;
        float mx = -INFINITY, sum = 0.f;
        for (I j = 0; j < dim; j++) mx = fmaxf(mx, to_f(x[base + j * inner]));
        for (I j = 0; j < dim; j++) sum += expf(to_f(x[base + j * inner]) - mx);
        float lsum = logf(sum);
        for (I j = 0; j < dim; j++)
            sm_store<T, LOG>(y, base + j * inner, to_f(x[base + j * inner]), mx, sum, lsum);
    }
}

template <typename T, bool LOG>
lp_status sm_launch(const lp_gpu_call *c, const T *x, T *y, int64_t outer, int64_t dim, int64_t inner) {
    if (outer * dim * inner == 0) return LP_OK;
    if (inner == 1) {
        if (dim > INT32_MAX - 1024) return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "rows of %lld elements", (long long)dim);
        SmArgs<T> a = {x, y, outer, (int)dim};
        int n = a.n;
        if (n <= ROW_WARP_MAX) {
            unsigned g = grid_for(outer * 32, EW_BLOCK);
            if (n <= 32) sm_warp<T, 1, LOG><<<g, EW_BLOCK, 0, c->stream>>>(a);
            else if (n <= 64) sm_warp<T, 2, LOG><<<g, EW_BLOCK, 0, c->stream>>>(a);
            else if (n <= 128) sm_warp<T, 4, LOG><<<g, EW_BLOCK, 0, c->stream>>>(a);
            else if (n <= 256) sm_warp<T, 8, LOG><<<g, EW_BLOCK, 0, c->stream>>>(a);
            else if (n <= 512) sm_warp<T, 16, LOG><<<g, EW_BLOCK, 0, c->stream>>>(a);
            else sm_warp<T, 32, LOG><<<g, EW_BLOCK, 0, c->stream>>>(a);
        } else {
            unsigned g = (unsigned)(outer < GRID_MAX ? outer : GRID_MAX);
            if (n <= 4 * ROW_BLOCK) sm_block<T, 4, LOG><<<g, ROW_BLOCK, 0, c->stream>>>(a);
            else if (n <= 8 * ROW_BLOCK) sm_block<T, 8, LOG><<<g, ROW_BLOCK, 0, c->stream>>>(a);
            else if (n <= 16 * ROW_BLOCK) sm_block<T, 16, LOG><<<g, ROW_BLOCK, 0, c->stream>>>(a);
            else sm_block<T, 0, LOG><<<g, ROW_BLOCK, 0, c->stream>>>(a);
        }
    } else {
        int64_t cols = outer * inner, total = cols * dim;
        unsigned g = grid_for(cols, EW_BLOCK);
        if (total < I32_LIMIT)
            sm_strided<T, int32_t, LOG><<<g, EW_BLOCK, 0, c->stream>>>(x, y, (int32_t)cols, (int32_t)dim,
                                                                      (int32_t)inner);
        else
            sm_strided<T, int64_t, LOG><<<g, EW_BLOCK, 0, c->stream>>>(x, y, cols, dim, inner);
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* ---- reductions --------------------------------------------------------------- */

/* R_GMAX is GlobalMaxPool's max, which passes over NaN (the reference's
 * `v > acc ? v : acc`); ReduceMax and ReduceMin propagate NaN. */
enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_SUMSQ, R_GMAX };

template <int OP, typename A> struct Red {
    static __device__ __forceinline__ A init() {
        if constexpr (OP == R_MAX || OP == R_GMAX) {
            if constexpr (std::is_floating_point<A>::value) return (A)-INFINITY;
            else return (A)INT64_MIN;
        } else if constexpr (OP == R_MIN) {
            if constexpr (std::is_floating_point<A>::value) return (A)INFINITY;
            else return (A)INT64_MAX;
        } else {
            return OP == R_PROD ? (A)1 : (A)0;
        }
    }
    static __device__ __forceinline__ A pre(A v) { return OP == R_SUMSQ ? v * v : v; }
    __device__ __forceinline__ A operator()(A a, A b) const {
        if (OP == R_MAX || OP == R_MIN) {
            if constexpr (std::is_floating_point<A>::value)
                if (isnan(a)) return a;
            if constexpr (std::is_floating_point<A>::value)
                if (isnan(b)) return b;
            return OP == R_MAX ? (a > b ? a : b) : (a < b ? a : b);
        }
        if (OP == R_GMAX) return b > a ? b : a;
        if (OP == R_PROD) return a * b;
        return a + b;
    }
};

/* The accumulator of a reduction over T: fp32 for the float types, int64
 * for integers, and for ReduceMean over integers the reference's double of
 * the values read as float. */
template <typename T, int OP> struct AccOf {
    using type = typename std::conditional<is_flt_v<T>, float,
                 typename std::conditional<OP == R_MEAN, double, int64_t>::type>::type;
};

template <typename T, typename A> __device__ __forceinline__ A ld_acc(T v) {
    if constexpr (is_flt_v<T>) return to_f(v);
    else if constexpr (std::is_same<A, double>::value) return (double)(float)v;
    else return (A)v;
}

template <typename T, int OP, typename A> __device__ __forceinline__ T fin(A acc, int64_t count) {
    if constexpr (is_flt_v<T>) {
        float r = acc;
        if (OP == R_MEAN) r = count ? acc / (float)count : NAN;
        return from_f<T>(r);
    } else if constexpr (std::is_same<A, double>::value) {
        double r = count ? acc / (double)count : NAN;
        return int_from_f<T>((float)r);
    } else {
        return (T)acc;
    }
}

/* Rows of n contiguous elements: one thread a row (short rows). */
template <typename T, int OP, typename A>
__global__ void red_row_thread(const T *x, T *y, int64_t rows, int64_t n) {
    Red<OP, A> f;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows;
         r += (int64_t)gridDim.x * blockDim.x) {
        A acc = f.init();
        const T *xr = x + r * n;
        for (int64_t j = 0; j < n; j++) acc = f(acc, f.pre(ld_acc<T, A>(xr[j])));
        y[r] = fin<T, OP, A>(acc, n);
    }
}

template <typename T, int OP, typename A>
__global__ void red_row_warp(const T *x, T *y, int64_t rows, int n) {
    Red<OP, A> f;
    int lane = threadIdx.x & 31;
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = w; r < rows; r += nw) {
        A acc = f.init();
        const T *xr = x + r * n;
        for (int j = lane; j < n; j += 32) acc = f(acc, f.pre(ld_acc<T, A>(xr[j])));
        acc = warp_all(acc, f);
        if (lane == 0) y[r] = fin<T, OP, A>(acc, n);
    }
}

template <typename T, int OP, typename A>
__global__ void red_row_block(const T *x, T *y, int64_t rows, int64_t n) {
    Red<OP, A> f;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        A acc = f.init();
        const T *xr = x + r * n;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc = f(acc, f.pre(ld_acc<T, A>(xr[j])));
        acc = block_all(acc, f, f.init());
        if (threadIdx.x == 0) y[r] = fin<T, OP, A>(acc, n);
    }
}

/* X as [outer, R, inner], reducing R: one thread an output. */
template <typename T, int OP, typename A, typename I>
__global__ void red_col(const T *x, T *y, I outer, I R, I inner) {
    Red<OP, A> f;
    I total = outer * inner;
    for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
        I o = t / inner, in = t - o * inner;
        const T *p = x + o * R * inner + in;
        A acc = f.init();
        for (I r = 0; r < R; r++) acc = f(acc, f.pre(ld_acc<T, A>(p[r * inner])));
        y[t] = fin<T, OP, A>(acc, (int64_t)R);
    }
}

/* Any pattern of kept and reduced dims: one warp an output. */
struct RedGeo {
    int nk, nr;
    int64_t kdims[LP_MAX_RANK], kstr[LP_MAX_RANK];
    int64_t rdims[LP_MAX_RANK], rstr[LP_MAX_RANK];
    int64_t count, ny;
};

template <typename T, int OP, typename A> __global__ void red_generic(const T *x, T *y, RedGeo g) {
    Red<OP, A> f;
    int lane = threadIdx.x & 31;
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t o = w; o < g.ny; o += nw) {
        int64_t base = 0, i = o;
        for (int d = g.nk - 1; d >= 0; d--) {
            base += (i % g.kdims[d]) * g.kstr[d];
            i /= g.kdims[d];
        }
        A acc = f.init();
        for (int64_t q = lane; q < g.count; q += 32) {
            int64_t off = base, k = q;
            for (int d = g.nr - 1; d >= 0; d--) {
                off += (k % g.rdims[d]) * g.rstr[d];
                k /= g.rdims[d];
            }
            acc = f(acc, f.pre(ld_acc<T, A>(x[off])));
        }
        acc = warp_all(acc, f);
        if (lane == 0) y[o] = fin<T, OP, A>(acc, g.count);
    }
}

/* Contiguous rows: the row kernel that suits their length. */
template <typename T, int OP>
lp_status red_rows(const lp_gpu_call *c, const T *x, T *y, int64_t rows, int64_t n) {
    using A = typename AccOf<T, OP>::type;
    if (rows == 0) return LP_OK;
    if (n < 16) {
        red_row_thread<T, OP, A><<<grid_for(rows, EW_BLOCK), EW_BLOCK, 0, c->stream>>>(x, y, rows, n);
    } else if (n <= 2048) {
        red_row_warp<T, OP, A><<<grid_for(rows * 32, EW_BLOCK), EW_BLOCK, 0, c->stream>>>(x, y, rows, (int)n);
    } else {
        unsigned g = (unsigned)(rows < GRID_MAX ? rows : GRID_MAX);
        red_row_block<T, OP, A><<<g, ROW_BLOCK, 0, c->stream>>>(x, y, rows, n);
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* Dims merged into alternating kept / reduced groups (size-1 dims dropped). */
template <typename T, int OP>
lp_status red_launch(const lp_gpu_call *c, const T *x, T *y, int rank, const int64_t *dims,
                     const bool *red, int64_t ny, int64_t count) {
    using A = typename AccOf<T, OP>::type;
    if (ny == 0) return LP_OK;
    if (count == 0) return red_rows<T, OP>(c, x, y, ny, 0); /* identities; Mean NaN */
    int ng = 0;
    int64_t gs[LP_MAX_RANK];
    bool gr[LP_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        if (dims[d] == 1) continue;
        if (ng && gr[ng - 1] == red[d]) {
            gs[ng - 1] *= dims[d];
        } else {
            gs[ng] = dims[d];
            gr[ng] = red[d];
            ng++;
        }
    }
    int nred = 0;
    for (int g = 0; g < ng; g++) nred += gr[g];
    if (nred == 0) return red_rows<T, OP>(c, x, y, ny, 1);
    if (nred == 1 && gr[ng - 1]) return red_rows<T, OP>(c, x, y, ny, count);
    if (nred == 1 && (ng == 2 || (ng == 3 && gr[1]))) {
        /* [R, inner] or [outer, R, inner] */
        int64_t outer = ng == 3 ? gs[0] : 1, R = gs[ng - 2], inner = gs[ng - 1];
        unsigned g = grid_for(ny, EW_BLOCK);
        if (outer * R * inner < I32_LIMIT)
            red_col<T, OP, A, int32_t><<<g, EW_BLOCK, 0, c->stream>>>(x, y, (int32_t)outer, (int32_t)R,
                                                                     (int32_t)inner);
        else
            red_col<T, OP, A, int64_t><<<g, EW_BLOCK, 0, c->stream>>>(x, y, outer, R, inner);
        LP_GPU_LAUNCHED(c);
        return LP_OK;
    }
    RedGeo geo;
    geo.nk = geo.nr = 0;
    geo.count = count;
    geo.ny = ny;
    int64_t st = 1;
    for (int g = ng - 1; g >= 0; g--) {
        if (gr[g]) {
            geo.rdims[geo.nr] = gs[g];
            geo.rstr[geo.nr++] = st;
        } else {
            geo.kdims[geo.nk] = gs[g];
            geo.kstr[geo.nk++] = st;
        }
        st *= gs[g];
    }
    /* collected innermost first; the kernel walks them outermost first */
    for (int i = 0; i < geo.nk / 2; i++) {
        int64_t t = geo.kdims[i]; geo.kdims[i] = geo.kdims[geo.nk - 1 - i]; geo.kdims[geo.nk - 1 - i] = t;
        t = geo.kstr[i]; geo.kstr[i] = geo.kstr[geo.nk - 1 - i]; geo.kstr[geo.nk - 1 - i] = t;
    }
    for (int i = 0; i < geo.nr / 2; i++) {
        int64_t t = geo.rdims[i]; geo.rdims[i] = geo.rdims[geo.nr - 1 - i]; geo.rdims[geo.nr - 1 - i] = t;
        t = geo.rstr[i]; geo.rstr[i] = geo.rstr[geo.nr - 1 - i]; geo.rstr[geo.nr - 1 - i] = t;
    }
    red_generic<T, OP, A><<<grid_for(ny * 32, EW_BLOCK), EW_BLOCK, 0, c->stream>>>(x, y, geo);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

template <typename T>
lp_status red_op(const lp_gpu_call *c, int op, const void *x, void *y, int rank, const int64_t *dims,
                 const bool *red, int64_t ny, int64_t count) {
    const T *xt = (const T *)x;
    T *yt = (T *)y;
    switch (op) {
    case R_SUM: return red_launch<T, R_SUM>(c, xt, yt, rank, dims, red, ny, count);
    case R_MEAN: return red_launch<T, R_MEAN>(c, xt, yt, rank, dims, red, ny, count);
    case R_MAX: return red_launch<T, R_MAX>(c, xt, yt, rank, dims, red, ny, count);
    case R_MIN: return red_launch<T, R_MIN>(c, xt, yt, rank, dims, red, ny, count);
    case R_PROD: return red_launch<T, R_PROD>(c, xt, yt, rank, dims, red, ny, count);
    default: return red_launch<T, R_SUMSQ>(c, xt, yt, rank, dims, red, ny, count);
    }
}

/* ---- pooling ------------------------------------------------------------------- */

template <int NS> struct PoolGeo {
    int64_t in[NS], out[NS], k[NS], stride[NS], dil[NS], pad0[NS], pad1[NS];
    int64_t nc, osz, isz, ksz;
    int is_max, incl, order;
    int64_t *ind;
};

template <typename T, int NS, typename I> __global__ void pool_kernel(const T *x, T *y, PoolGeo<NS> g) {
    I total = (I)(g.nc * g.osz);
    for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
        I b = t / (I)g.osz, p = t - b * (I)g.osz;
        I oc[NS], kc[NS];
        {
            I r = p;
#pragma unroll
            for (int d = NS - 1; d >= 0; d--) {
                oc[d] = r % (I)g.out[d];
                r /= (I)g.out[d];
                kc[d] = 0;
            }
        }
        const T *xb = x + (int64_t)b * g.isz;
        float acc = g.is_max ? -INFINITY : 0.f;
        int64_t acci = INT64_MIN, arg = -1, count = 0;
        for (int64_t q = 0; q < g.ksz; q++) {
            I off = 0, col = 0, colstride = 1;
            bool inside = true, in_padded = true;
#pragma unroll
            for (int d = 0; d < NS; d++) {
                I pos = oc[d] * (I)g.stride[d] - (I)g.pad0[d] + kc[d] * (I)g.dil[d];
                if (pos < 0 || pos >= (I)g.in[d]) inside = false;
                if (pos < -(I)g.pad0[d] || pos >= (I)(g.in[d] + g.pad1[d])) in_padded = false;
                off = off * (I)g.in[d] + pos;
                col += pos * colstride; /* storage_order 1: first spatial dim fastest */
                colstride *= (I)g.in[d];
            }
            /* next kernel position, last dim fastest */
#pragma unroll
            for (int d = NS - 1; d >= 0; d--) {
                if (++kc[d] < (I)g.k[d]) break;
                kc[d] = 0;
            }
            if (g.incl ? in_padded : inside) count++;
            if (!inside) continue;
            T raw = xb[off];
            if constexpr (!is_flt_v<T>) {
                int64_t v = (int64_t)raw;
                if (v > acci) {
                    acci = v;
                    arg = (int64_t)b * g.isz + (g.order ? col : off);
                }
            } else {
                float v = to_f(raw);
                if (g.is_max) {
                    if (v > acc || arg < 0) {
                        acc = v;
                        arg = (int64_t)b * g.isz + (g.order ? col : off);
                    }
                } else {
                    acc += v;
                }
            }
        }
        if constexpr (!is_flt_v<T>) y[t] = (T)acci;
        else y[t] = from_f<T>(g.is_max ? acc : count ? acc / (float)count : NAN);
        if (g.ind) g.ind[t] = arg;
    }
}

template <typename T, int NS>
lp_status pool_launch_ns(const lp_gpu_call *c, const void *x, void *y, const PoolGeo<NS> &g) {
    int64_t total = g.nc * g.osz;
    if (total == 0) return LP_OK;
    unsigned grid = grid_for(total, EW_BLOCK);
    if (total < I32_LIMIT && g.nc * g.isz < I32_LIMIT)
        pool_kernel<T, NS, int32_t><<<grid, EW_BLOCK, 0, c->stream>>>((const T *)x, (T *)y, g);
    else
        pool_kernel<T, NS, int64_t><<<grid, EW_BLOCK, 0, c->stream>>>((const T *)x, (T *)y, g);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

template <typename T>
lp_status pool_launch(const lp_gpu_call *c, const void *x, void *y, int ns, const int64_t *in,
                      const int64_t *out, const int64_t *k, const int64_t *stride, const int64_t *dil,
                      const int64_t *pad0, const int64_t *pad1, int64_t nc, int is_max, int incl,
                      int order, int64_t *ind) {
#define LP_POOL_NS(NS)                                                                     \
    {                                                                                      \
        PoolGeo<NS> g;                                                                     \
        for (int d = 0; d < NS; d++) {                                                     \
            g.in[d] = in[d]; g.out[d] = out[d]; g.k[d] = k[d]; g.stride[d] = stride[d];    \
            g.dil[d] = dil[d]; g.pad0[d] = pad0[d]; g.pad1[d] = pad1[d];                   \
        }                                                                                  \
        g.nc = nc; g.osz = prod(out, 0, NS); g.isz = prod(in, 0, NS); g.ksz = prod(k, 0, NS); \
        g.is_max = is_max; g.incl = incl; g.order = order; g.ind = ind;                    \
        return pool_launch_ns<T, NS>(c, x, y, g);                                          \
    }
    switch (ns) {
    case 1: LP_POOL_NS(1)
    case 2: LP_POOL_NS(2)
    case 3: LP_POOL_NS(3)
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "%d spatial dims; 1 to 3 are supported", ns);
    }
#undef LP_POOL_NS
}

/* ---- BatchNormalization (inference) ------------------------------------------ */

struct BnArgs {
    const void *s, *b, *mean, *var;
    int sdt, bdt, mdt, vdt;
    float eps;
};

template <typename T, typename I>
__global__ void bn_kernel(const T *x, T *y, I total, I sz, I ch, BnArgs p) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        I ci = (i / sz) % ch;
        float scale = ld_any(p.s, p.sdt, ci) / sqrtf(ld_any(p.var, p.vdt, ci) + p.eps);
        float v = (to_f(x[i]) - ld_any(p.mean, p.mdt, ci)) * scale + ld_any(p.b, p.bdt, ci);
        y[i] = from_f<T>(v);
    }
}

template <typename T>
lp_status bn_launch(const lp_gpu_call *c, const void *x, void *y, int64_t total, int64_t sz, int64_t ch,
                    const BnArgs &p) {
    if (total == 0) return LP_OK;
    unsigned g = grid_for(total, EW_BLOCK);
    if (total < I32_LIMIT)
        bn_kernel<T, int32_t><<<g, EW_BLOCK, 0, c->stream>>>((const T *)x, (T *)y, (int32_t)total,
                                                            (int32_t)sz, (int32_t)ch, p);
    else
        bn_kernel<T, int64_t><<<g, EW_BLOCK, 0, c->stream>>>((const T *)x, (T *)y, total, sz, ch, p);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

lp_status need_float_side(const lp_gpu_call *c, const lp_gpu_tensor *t, const char *what) {
    if (!is_float_dt(t->dtype))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "%s has dtype %s; float types are supported", what,
                           lp_dtype_label(t->dtype));
    return LP_OK;
}

lp_status need_io(const lp_gpu_call *c, int n_in, const lp_gpu_tensor **x, lp_gpu_tensor **y) {
    for (int i = 0; i < n_in; i++)
        if (!lp_gpu_in(c, i)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", i);
    *x = lp_gpu_in(c, 0);
    *y = lp_gpu_out(c, 0);
    if (!*y) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output 0 is missing");
    if ((*y)->dtype != (*x)->dtype)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Y has dtype %s, X %s", lp_dtype_label((*y)->dtype),
                           lp_dtype_label((*x)->dtype));
    return LP_OK;
}

lp_status ints_attr(const lp_gpu_call *c, const char *name, int n, int64_t fill, int64_t *out) {
    const lp_attr *a = lp_gpu_attr(c, name);
    for (int i = 0; i < n; i++) out[i] = fill;
    if (!a) return LP_OK;
    if (a->type != LP_ATTR_INTS || a->n != n)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "%s must have %d entries", name, n);
    for (int i = 0; i < n; i++) out[i] = a->ints[i];
    return LP_OK;
}

} /* namespace */

/* ---- family functions ------------------------------------------------------------ */

lp_status lp_gpu_layernorm(const lp_gpu_call *c) {
    const lp_gpu_tensor *x, *s, *bias;
    lp_gpu_tensor *y;
    lp_status st = need_io(c, 2, &x, &y);
    if (st != LP_OK) return st;
    s = lp_gpu_in(c, 1);
    bias = lp_gpu_in(c, 2);
    lp_gpu_tensor *mo = lp_gpu_out(c, 1), *io = lp_gpu_out(c, 2);
    int axis;
    if (!lp_gpu_axis(lp_gpu_attr_int(c, "axis", -1), x->rank, &axis))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis, x->rank);
    if (lp_gpu_numel(y) != lp_gpu_numel(x)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Y differs from X");
    if (inner > INT32_MAX - 1024)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "rows of %lld elements", (long long)inner);
    Bcast bs, bb;
    int nr = x->rank - axis;
    if (!bcast_make(s, nr, x->dims + axis, &bs) || (bias && !bcast_make(bias, nr, x->dims + axis, &bb)))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Scale or B does not broadcast to X.shape[axis:]");
    if (!bias) bb.mode = BC_SCALAR;
    if ((mo && lp_gpu_numel(mo) != outer) || (io && lp_gpu_numel(io) != outer))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Mean or InvStdDev has the wrong size");
    if ((st = need_float_side(c, s, "Scale")) != LP_OK ||
        (bias && (st = need_float_side(c, bias, "B")) != LP_OK) ||
        (mo && (st = need_float_side(c, mo, "Mean")) != LP_OK) ||
        (io && (st = need_float_side(c, io, "InvStdDev")) != LP_OK))
        return st;
    float eps = lp_gpu_attr_float(c, "epsilon", 1e-5f);
#define LP_LN(T)                                                                                  \
    {                                                                                             \
        LnArgs<T> a;                                                                              \
        a.x = (const T *)x->data; a.y = (T *)y->data;                                             \
        a.s = s->data; a.sdt = s->dtype; a.b = bias ? bias->data : NULL; a.bdt = bias ? bias->dtype : 0; \
        a.mean = mo ? mo->data : NULL; a.mdt = mo ? mo->dtype : 0;                                \
        a.inv = io ? io->data : NULL; a.idt = io ? io->dtype : 0;                                 \
        a.rows = outer; a.n = (int)inner; a.eps = eps; a.bs = bs; a.bb = bb;                \
        return ln_launch<T>(c, a);                                                                \
    }
    switch (x->dtype) {
    case LP_DT_FLOAT: LP_LN(float)
    case LP_DT_FLOAT16: LP_LN(__half)
    case LP_DT_BFLOAT16: LP_LN(__nv_bfloat16)
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "X has dtype %s; float, float16 and bfloat16 are supported",
                           lp_dtype_label(x->dtype));
    }
#undef LP_LN
}

lp_status lp_gpu_softmax(const lp_gpu_call *c) {
    const lp_gpu_tensor *x;
    lp_gpu_tensor *y;
    lp_status st = need_io(c, 1, &x, &y);
    if (st != LP_OK) return st;
    bool flat = c->opset < 13, is_log = c->op == LP_OP_LogSoftmax;
    int axis;
    if (!lp_gpu_axis(lp_gpu_attr_int(c, "axis", flat ? 1 : -1), x->rank, &axis))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    if (lp_gpu_numel(y) != lp_gpu_numel(x)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Y differs from X");
    /* opset < 13: X is flattened to 2-D at axis; from 13 on, one axis */
    int64_t outer = prod(x->dims, 0, axis);
    int64_t dim = flat ? prod(x->dims, axis, x->rank) : (x->rank ? x->dims[axis] : 1);
    int64_t inner = flat ? 1 : prod(x->dims, axis + 1, x->rank);
#define LP_SM(T)                                                                                   \
    return is_log ? sm_launch<T, true>(c, (const T *)x->data, (T *)y->data, outer, dim, inner)     \
                  : sm_launch<T, false>(c, (const T *)x->data, (T *)y->data, outer, dim, inner);
    switch (x->dtype) {
    case LP_DT_FLOAT: LP_SM(float)
    case LP_DT_FLOAT16: LP_SM(__half)
    case LP_DT_BFLOAT16: LP_SM(__nv_bfloat16)
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "X has dtype %s; float, float16 and bfloat16 are supported",
                           lp_dtype_label(x->dtype));
    }
#undef LP_SM
}

lp_status lp_gpu_reduce(const lp_gpu_call *c) {
    const lp_gpu_tensor *x;
    lp_gpu_tensor *y;
    lp_status st = need_io(c, 1, &x, &y);
    if (st != LP_OK) return st;
    int r = x->rank, op;
    switch (c->op) {
    case LP_OP_ReduceSum: op = R_SUM; break;
    case LP_OP_ReduceMean: op = R_MEAN; break;
    case LP_OP_ReduceMax: op = R_MAX; break;
    case LP_OP_ReduceMin: op = R_MIN; break;
    case LP_OP_ReduceProd: op = R_PROD; break;
    case LP_OP_ReduceSumSquare: op = R_SUMSQ; break;
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "not a reduction this family computes");
    }
    int64_t axes[LP_MAX_RANK];
    int na = -1;
    if (c->n_inputs > 1 && (c->inputs[1].data || c->inputs[1].host)) {
        if (lp_gpu_numel(&c->inputs[1]) > LP_MAX_RANK)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "too many axes");
        if ((st = lp_gpu_host_ints(c, 1, axes, LP_MAX_RANK, &na)) != LP_OK) return st;
    } else {
        const lp_attr *a = lp_gpu_attr(c, "axes");
        if (a && a->type == LP_ATTR_INTS) {
            if (a->n > LP_MAX_RANK) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "too many axes");
            na = a->n;
            for (int i = 0; i < na; i++) axes[i] = a->ints[i];
        }
    }
    bool noop = lp_gpu_attr_int(c, "noop_with_empty_axes", 0) != 0;
    bool red[LP_MAX_RANK];
    for (int d = 0; d < r; d++) red[d] = na <= 0 && !noop;
    for (int i = 0; i < na; i++) {
        int ax;
        if (!lp_gpu_axis(axes[i], r, &ax)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
        red[ax] = true;
    }
    int64_t s = 1;
    for (int d = 0; d < r; d++) s *= red[d] ? 1 : x->dims[d];
    int64_t ny = lp_gpu_numel(y), nx = lp_gpu_numel(x);
    if (ny != s)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, the reduction %lld",
                           (long long)ny, (long long)s);
    int64_t count = ny ? nx / ny : 0;
    switch (x->dtype) {
    case LP_DT_FLOAT: return red_op<float>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    case LP_DT_FLOAT16: return red_op<__half>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    case LP_DT_BFLOAT16: return red_op<__nv_bfloat16>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    case LP_DT_INT64: return red_op<int64_t>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    case LP_DT_INT32: return red_op<int32_t>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    case LP_DT_UINT8: return red_op<uint8_t>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    case LP_DT_INT8: return red_op<int8_t>(c, op, x->data, y->data, r, x->dims, red, ny, count);
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "X has dtype %s; float, float16, bfloat16, int64, int32, "
                           "uint8 and int8 are supported", lp_dtype_label(x->dtype));
    }
}

lp_status lp_gpu_pool(const lp_gpu_call *c) {
    const lp_gpu_tensor *x;
    lp_gpu_tensor *y;
    lp_status st = need_io(c, 1, &x, &y);
    if (st != LP_OK) return st;
    lp_gpu_tensor *ind = lp_gpu_out(c, 1);
    bool is_max = c->op == LP_OP_MaxPool;
    int ns = x->rank - 2;
    if (ns < 1) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, spatial...]");
    if (y->rank != x->rank)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, spatial...] and Y the same rank");
    if (ns > 3) return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "%d spatial dims; 1 to 3 are supported", ns);
    const lp_attr *ka = lp_gpu_attr(c, "kernel_shape");
    if (!ka || ka->type != LP_ATTR_INTS || ka->n != ns)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "kernel_shape must have %d entries", ns);
    int64_t stride[3], dil[3], pads[6], pad0[3], pad1[3], in[3], out[3], k[3];
    if ((st = ints_attr(c, "strides", ns, 1, stride)) != LP_OK ||
        (st = ints_attr(c, "dilations", ns, 1, dil)) != LP_OK ||
        (st = ints_attr(c, "pads", 2 * ns, 0, pads)) != LP_OK)
        return st;
    const char *ap = lp_gpu_attr_string(c, "auto_pad", "NOTSET");
    for (int d = 0; d < ns; d++) {
        in[d] = x->dims[2 + d];
        out[d] = y->dims[2 + d];
        k[d] = ka->ints[d];
        if (stride[d] < 1 || dil[d] < 1)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "strides and dilations must be >= 1");
        int64_t span = (k[d] - 1) * dil[d] + 1;
        if (strcmp(ap, "NOTSET") == 0) {
            pad0[d] = pads[d];
            pad1[d] = pads[d + ns];
        } else if (strcmp(ap, "VALID") == 0) {
            pad0[d] = pad1[d] = 0;
        } else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            int64_t total = (out[d] - 1) * stride[d] + span - in[d];
            if (total < 0) total = 0;
            pad0[d] = ap[5] == 'U' ? total / 2 : total - total / 2;
            pad1[d] = total - pad0[d];
        } else {
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "auto_pad '%s' is not known", ap);
        }
    }
    int64_t order = lp_gpu_attr_int(c, "storage_order", 0);
    if (order != 0 && order != 1)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "storage_order %lld is not 0 or 1", (long long)order);
    if (ind && ind->dtype != LP_DT_INT64) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Indices must be int64");
    if (ind && lp_gpu_numel(ind) != lp_gpu_numel(y))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Indices differ from Y in size");
    int incl = lp_gpu_attr_int(c, "count_include_pad", 0) != 0;
    int64_t nc = x->dims[0] * x->dims[1];
    if (y->dims[0] * y->dims[1] != nc) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "N, C of Y differ");
    int64_t *ip = ind ? (int64_t *)ind->data : NULL;
#define LP_PL(T) return pool_launch<T>(c, x->data, y->data, ns, in, out, k, stride, dil, pad0, pad1, nc, \
                                       is_max, incl, (int)order, ip);
    switch (x->dtype) {
    case LP_DT_FLOAT: LP_PL(float)
    case LP_DT_FLOAT16: LP_PL(__half)
    case LP_DT_BFLOAT16: LP_PL(__nv_bfloat16)
    default: break;
    }
    if (is_max) {
        switch (x->dtype) {
        case LP_DT_INT64: LP_PL(int64_t)
        case LP_DT_INT32: LP_PL(int32_t)
        case LP_DT_UINT8: LP_PL(uint8_t)
        case LP_DT_INT8: LP_PL(int8_t)
        default: break;
        }
    }
#undef LP_PL
    return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "X has dtype %s; float, float16, bfloat16%s are supported",
                       lp_dtype_label(x->dtype), is_max ? ", int64, int32, uint8 and int8" : "");
}

lp_status lp_gpu_global_pool(const lp_gpu_call *c) {
    const lp_gpu_tensor *x;
    lp_gpu_tensor *y;
    lp_status st = need_io(c, 1, &x, &y);
    if (st != LP_OK) return st;
    if (x->rank < 2) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, ...]");
    int64_t nc = x->dims[0] * x->dims[1], sz = prod(x->dims, 2, x->rank);
    if (lp_gpu_numel(y) != nc) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "Y must be [N, C, 1...]");
    bool is_max = c->op == LP_OP_GlobalMaxPool;
#define LP_GP(T)                                                                                 \
    return is_max ? red_rows<T, R_GMAX>(c, (const T *)x->data, (T *)y->data, nc, sz)              \
                  : red_rows<T, R_MEAN>(c, (const T *)x->data, (T *)y->data, nc, sz);
    switch (x->dtype) {
    case LP_DT_FLOAT: LP_GP(float)
    case LP_DT_FLOAT16: LP_GP(__half)
    case LP_DT_BFLOAT16: LP_GP(__nv_bfloat16)
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "X has dtype %s; float, float16 and bfloat16 are supported",
                           lp_dtype_label(x->dtype));
    }
#undef LP_GP
}

lp_status lp_gpu_batchnorm(const lp_gpu_call *c) {
    const lp_gpu_tensor *x;
    lp_gpu_tensor *y;
    lp_status st = need_io(c, 5, &x, &y);
    if (st != LP_OK) return st;
    if (lp_gpu_attr_int(c, "training_mode", 0) != 0 || lp_gpu_out(c, 1))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "training mode (batch statistics, running mean "
                           "outputs); inference only is supported");
    if (x->rank < 2 || lp_gpu_numel(y) != lp_gpu_numel(x))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, ...] and Y its shape");
    int64_t ch = x->dims[1], sz = prod(x->dims, 2, x->rank);
    for (int k = 1; k < 5; k++) {
        if (lp_gpu_numel(lp_gpu_in(c, k)) != ch)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is not [C]", k);
        static const char *const names[5] = {"X", "scale", "B", "input_mean", "input_var"};
        if ((st = need_float_side(c, lp_gpu_in(c, k), names[k])) != LP_OK) return st;
    }
    BnArgs p;
    p.s = c->inputs[1].data; p.sdt = c->inputs[1].dtype;
    p.b = c->inputs[2].data; p.bdt = c->inputs[2].dtype;
    p.mean = c->inputs[3].data; p.mdt = c->inputs[3].dtype;
    p.var = c->inputs[4].data; p.vdt = c->inputs[4].dtype;
    p.eps = lp_gpu_attr_float(c, "epsilon", 1e-5f);
    int64_t total = lp_gpu_numel(x);
    switch (x->dtype) {
    case LP_DT_FLOAT: return bn_launch<float>(c, x->data, y->data, total, sz, ch, p);
    case LP_DT_FLOAT16: return bn_launch<__half>(c, x->data, y->data, total, sz, ch, p);
    case LP_DT_BFLOAT16: return bn_launch<__nv_bfloat16>(c, x->data, y->data, total, sz, ch, p);
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "X has dtype %s; float, float16 and bfloat16 are supported",
                           lp_dtype_label(x->dtype));
    }
}
