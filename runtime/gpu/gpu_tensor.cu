/* gpu_tensor.cu - data movement on the GPU: views, Shape, ConstantOfShape,
 * Range, Expand, Concat, Split, Slice, Transpose, the Gathers, Pad, CumSum
 * (the twins of runtime/ref_tensor.c).
 *
 * Moving data does not look at values, so most kernels copy "units": an
 * unsigned type as wide as the element, or wider (up to 16 bytes) where the
 * contiguous run and every offset and pointer allow. Strided copies first
 * drop size-1 dims and merge dims that are contiguous in both tensors, so
 * a Transpose that keeps the last dim (the [B,S,H,D] -> [B,H,S,D] case) or
 * an Expand of a row copies whole vectors per thread. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <string.h>

#include "gpu_kernels.h"

namespace {

const int kThreads = 256;
const int64_t kMaxBlocks = 65535; /* grid-stride beyond this */

int blocks_for(int64_t n, int threads = kThreads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    return (int)(b < kMaxBlocks ? b : kMaxBlocks);
}

#define GRID_STRIDE(I, i, n) \
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (I)gridDim.x * blockDim.x)

lp_status same_dtype(const lp_gpu_call *c, const lp_gpu_tensor *x, const lp_gpu_tensor *y) {
    if (x->dtype != y->dtype)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input is %s but the output is %s",
                           lp_dtype_name(x->dtype), lp_dtype_name(y->dtype));
    return LP_OK;
}

/* Input 0 and output 0 present, input 0's dtype storable. */
lp_status need(const lp_gpu_call *c, int n_in) {
    for (int i = 0; i < n_in; i++)
        if (!lp_gpu_in(c, i)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", i);
    if (!lp_gpu_out(c, 0)) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output 0 is missing");
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    if (x && !lp_gpu_dtype_size(x->dtype))
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input 0 has dtype %s, which the GPU kernels do "
                           "not move", lp_dtype_label(x->dtype));
    return LP_OK;
}

int64_t prod(const int64_t *dims, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= dims[d];
    return p;
}

/* 32-bit index math: the count and a grid stride past it stay in int32 */
bool fits32(int64_t n) { return n < ((int64_t)1 << 31) - ((int64_t)1 << 26); }

/* Widest unit (16, 8, 4, 2 or 1 bytes) dividing every value. */
int unit_for(const int64_t *bytes, int n) {
    for (int w = 16; w > 1; w /= 2) {
        bool ok = true;
        for (int k = 0; k < n && ok; k++) ok = bytes[k] % w == 0;
        if (ok) return w;
    }
    return 1;
}

int64_t ptr_bytes(const void *p) { return (int64_t)(uintptr_t)p; }

/* ---- strided copy: y (contiguous) [i] = x[base + sum coord[d] * stride[d]] ---- */

template <typename I> struct strided {
    int rank;
    I base;
    I dims[LP_MAX_RANK];
    I strides[LP_MAX_RANK]; /* of the source, units; may be 0 or negative */
};

template <typename T, typename I>
__global__ void strided_copy_kernel(T *__restrict__ y, const T *__restrict__ x,
                                    const __grid_constant__ strided<I> s, I n) {
    GRID_STRIDE(I, i, n) {
        I rest = i, off = s.base;
        for (int d = s.rank - 1; d > 0; d--) {
            I q = rest / s.dims[d];
            off += (rest - q * s.dims[d]) * s.strides[d];
            rest = q;
        }
        off += rest * s.strides[0];
        y[i] = x[off];
    }
}

/* A copy plan: the output's dims, the source's strides and base, in elements. */
struct copy_plan {
    int rank;
    int64_t base;
    int64_t dims[LP_MAX_RANK];
    int64_t strides[LP_MAX_RANK];
};

/* Drops size-1 dims and merges neighbours that are contiguous in the
 * source (the output is always contiguous). */
void plan_collapse(copy_plan *p) {
    int r = 0;
    for (int d = 0; d < p->rank; d++) {
        if (p->dims[d] == 1) continue;
        if (r > 0 && p->strides[r - 1] == p->strides[d] * p->dims[d]) {
            p->dims[r - 1] *= p->dims[d];
            p->strides[r - 1] = p->strides[d];
        } else {
            p->dims[r] = p->dims[d];
            p->strides[r] = p->strides[d];
            r++;
        }
    }
    p->rank = r;
}

template <typename T, typename I>
lp_status launch_strided(const lp_gpu_call *c, void *y, const void *x, const copy_plan *p,
                         int64_t n) {
    strided<I> s;
    s.rank = p->rank;
    s.base = (I)p->base;
    for (int d = 0; d < p->rank; d++) {
        s.dims[d] = (I)p->dims[d];
        s.strides[d] = (I)p->strides[d];
    }
    if (s.rank == 0) { s.rank = 1; s.dims[0] = 1; s.strides[0] = 0; }
    strided_copy_kernel<T, I><<<blocks_for(n), kThreads, 0, c->stream>>>((T *)y, (const T *)x, s, (I)n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

template <typename T>
lp_status launch_strided_t(const lp_gpu_call *c, void *y, const void *x, const copy_plan *p,
                           int64_t n, int64_t x_units) {
    if (fits32(n) && fits32(x_units)) return launch_strided<T, int32_t>(c, y, x, p, n);
    return launch_strided<T, int64_t>(c, y, x, p, n);
}

/* Runs a copy plan for element size es: a plain memcpy when it collapses
 * to a contiguous run, else the strided kernel on the widest unit the
 * innermost contiguous run allows. x_numel bounds the source offsets. */
lp_status run_plan(const lp_gpu_call *c, void *y, const void *x, copy_plan *p, size_t es,
                   int64_t x_numel) {
    plan_collapse(p);
    int64_t n = prod(p->dims, 0, p->rank);
    if (n == 0) return LP_OK;
    if (p->rank == 0 || (p->rank == 1 && p->strides[0] == 1)) {
        LP_GPU_CHECK(c, cudaMemcpyAsync(y, (const char *)x + (size_t)p->base * es, (size_t)n * es,
                                        cudaMemcpyDeviceToDevice, c->stream));
        return LP_OK;
    }
    int w = (int)es;
    if (p->strides[p->rank - 1] == 1) {
        /* vectorise the contiguous last dim */
        int64_t vals[LP_MAX_RANK + 3];
        int nv = 0;
        vals[nv++] = p->dims[p->rank - 1] * (int64_t)es;
        vals[nv++] = p->base * (int64_t)es;
        vals[nv++] = ptr_bytes(x);
        vals[nv++] = ptr_bytes(y);
        for (int d = 0; d < p->rank - 1; d++) vals[nv++] = p->strides[d] * (int64_t)es;
        w = unit_for(vals, nv);
        if (w < (int)es) w = (int)es;
        int64_t f = w / (int64_t)es;
        if (f > 1) {
            p->dims[p->rank - 1] /= f;
            p->base /= f;
            for (int d = 0; d < p->rank - 1; d++) p->strides[d] /= f;
            n /= f;
            x_numel /= f;
        }
    }
    switch (w) {
    case 1: return launch_strided_t<uint8_t>(c, y, x, p, n, x_numel);
    case 2: return launch_strided_t<uint16_t>(c, y, x, p, n, x_numel);
    case 4: return launch_strided_t<uint32_t>(c, y, x, p, n, x_numel);
    case 8: return launch_strided_t<uint2>(c, y, x, p, n, x_numel);
    case 16: return launch_strided_t<uint4>(c, y, x, p, n, x_numel);
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", w);
    }
}

void row_major_strides(const lp_gpu_tensor *t, int64_t *s) {
    int64_t acc = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        s[d] = acc;
        acc *= t->dims[d];
    }
}

/* ---- row copies (Concat, Split): pieces of `rows` rows of len units ---- */

struct row_piece {
    const void *src;
    void *dst;
    int64_t len, src_pitch, dst_pitch; /* units */
};
const int kPiecesPerLaunch = 32;
struct row_pieces {
    int n;
    int64_t rows;
    row_piece p[kPiecesPerLaunch];
};

/* blockIdx.y picks the piece; x grid-strides over its rows * len units. */
template <typename T, typename I> __global__ void row_copy_kernel(const __grid_constant__ row_pieces ps) {
    const row_piece &p = ps.p[blockIdx.y];
    const T *__restrict__ src = (const T *)p.src;
    T *__restrict__ dst = (T *)p.dst;
    I len = (I)p.len, sp = (I)p.src_pitch, dp = (I)p.dst_pitch, n = (I)ps.rows * len;
    GRID_STRIDE(I, i, n) {
        I r = i / len, col = i - r * len;
        dst[r * dp + col] = src[r * sp + col];
    }
}

template <typename T>
lp_status launch_rows(const lp_gpu_call *c, row_pieces *ps, int64_t max_units, int64_t max_piece) {
    dim3 grid(blocks_for(max_piece), ps->n);
    if (fits32(max_units)) row_copy_kernel<T, int32_t><<<grid, kThreads, 0, c->stream>>>(*ps);
    else row_copy_kernel<T, int64_t><<<grid, kThreads, 0, c->stream>>>(*ps);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* Copies pieces (lengths / pitches in elements of es bytes), converted to
 * the widest unit they all allow, kPiecesPerLaunch per launch. */
lp_status copy_rows(const lp_gpu_call *c, row_piece *pieces, int n, int64_t rows, size_t es) {
    if (rows == 0) return LP_OK;
    for (int at = 0; at < n; at += kPiecesPerLaunch) {
        row_pieces ps;
        ps.n = 0;
        ps.rows = rows;
        int64_t vals[5 * kPiecesPerLaunch];
        int nv = 0;
        for (int k = at; k < n && k < at + kPiecesPerLaunch; k++) {
            if (pieces[k].len == 0) continue;
            ps.p[ps.n++] = pieces[k];
            vals[nv++] = pieces[k].len * (int64_t)es;
            vals[nv++] = pieces[k].src_pitch * (int64_t)es;
            vals[nv++] = pieces[k].dst_pitch * (int64_t)es;
            vals[nv++] = ptr_bytes(pieces[k].src);
            vals[nv++] = ptr_bytes(pieces[k].dst);
        }
        if (ps.n == 0) continue;
        int w = unit_for(vals, nv);
        if (w < (int)es) w = (int)es;
        int64_t f = w / (int64_t)es, max_units = 0, max_piece = 0;
        for (int k = 0; k < ps.n; k++) {
            ps.p[k].len /= f;
            ps.p[k].src_pitch /= f;
            ps.p[k].dst_pitch /= f;
            int64_t span = rows * (ps.p[k].src_pitch > ps.p[k].dst_pitch ? ps.p[k].src_pitch
                                                                         : ps.p[k].dst_pitch);
            if (span > max_units) max_units = span;
            if (rows * ps.p[k].len > max_piece) max_piece = rows * ps.p[k].len;
        }
        lp_status st;
        switch (w) {
        case 1: st = launch_rows<uint8_t>(c, &ps, max_units, max_piece); break;
        case 2: st = launch_rows<uint16_t>(c, &ps, max_units, max_piece); break;
        case 4: st = launch_rows<uint32_t>(c, &ps, max_units, max_piece); break;
        case 8: st = launch_rows<uint2>(c, &ps, max_units, max_piece); break;
        case 16: st = launch_rows<uint4>(c, &ps, max_units, max_piece); break;
        default: st = lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", w);
        }
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

/* ---- fills ---- */

template <typename T, typename I> __global__ void fill_kernel(T *__restrict__ y, T v, I n) {
    GRID_STRIDE(I, i, n) y[i] = v;
}

template <typename T> lp_status launch_fill(const lp_gpu_call *c, void *y, T v, int64_t n) {
    if (fits32(n)) fill_kernel<T, int32_t><<<blocks_for(n), kThreads, 0, c->stream>>>((T *)y, v, (int32_t)n);
    else fill_kernel<T, int64_t><<<blocks_for(n), kThreads, 0, c->stream>>>((T *)y, v, n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* Fills n elements of es bytes with the element at `val`. */
lp_status fill_bytes(const lp_gpu_call *c, void *y, const uint8_t *val, size_t es, int64_t n) {
    if (n == 0) return LP_OK;
    bool same = true;
    for (size_t b = 1; b < es; b++) same = same && val[b] == val[0];
    if (same) {
        LP_GPU_CHECK(c, cudaMemsetAsync(y, val[0], (size_t)n * es, c->stream));
        return LP_OK;
    }
    switch (es) {
    case 2: { uint16_t v; memcpy(&v, val, 2); return launch_fill<uint16_t>(c, y, v, n); }
    case 4: { uint32_t v; memcpy(&v, val, 4); return launch_fill<uint32_t>(c, y, v, n); }
    case 8: { uint64_t v; memcpy(&v, val, 8); return launch_fill<uint64_t>(c, y, v, n); }
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", (int)es);
    }
}

/* A float as one element of dtype t (as the reference's storef does). */
bool float_as(lp_dtype t, float v, uint8_t *out) {
    memset(out, 0, 8);
    switch (t) {
    case LP_DT_FLOAT: memcpy(out, &v, 4); return true;
    case LP_DT_DOUBLE: { double d = v; memcpy(out, &d, 8); return true; }
    case LP_DT_FLOAT16: { __half h = __float2half_rn(v); memcpy(out, &h, 2); return true; }
    case LP_DT_BFLOAT16: { __nv_bfloat16 h = __float2bfloat16_rn(v); memcpy(out, &h, 2); return true; }
    case LP_DT_BOOL: out[0] = v != 0.0f; return true;
    default: break;
    }
    int64_t i = isnan(v) ? 0 : v >= 9.2233715e18f ? INT64_MAX : v <= -9.2233715e18f ? INT64_MIN
              : (int64_t)v;
    switch (t) {
    case LP_DT_UINT8: case LP_DT_INT8: out[0] = (uint8_t)i; return true;
    case LP_DT_UINT16: case LP_DT_INT16: { uint16_t u = (uint16_t)i; memcpy(out, &u, 2); return true; }
    case LP_DT_UINT32: case LP_DT_INT32: { uint32_t u = (uint32_t)i; memcpy(out, &u, 4); return true; }
    case LP_DT_UINT64: case LP_DT_INT64: memcpy(out, &i, 8); return true;
    default: return false;
    }
}

/* ---- element conversions for the ops that compute (Range, CumSum) ---- */

template <typename T> struct num {
    static __device__ float loadf(const T *p, int64_t i) { return (float)p[i]; }
    static __device__ void storef(T *p, int64_t i, float v) { p[i] = (T)v; }
};
template <> struct num<__half> {
    static __device__ float loadf(const __half *p, int64_t i) { return __half2float(p[i]); }
    static __device__ void storef(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }
};
template <> struct num<__nv_bfloat16> {
    static __device__ float loadf(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
    static __device__ void storef(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
};

} // namespace

/* ---- views ---------------------------------------------------------------- */

lp_status lp_gpu_view(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int64_t n = lp_gpu_numel(x);
    if (lp_gpu_numel(y) != n)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, input %lld",
                           (long long)lp_gpu_numel(y), (long long)n);
    if (y->data != x->data && n > 0)
        LP_GPU_CHECK(c, cudaMemcpyAsync(y->data, x->data, (size_t)n * lp_gpu_dtype_size(x->dtype),
                                        cudaMemcpyDeviceToDevice, c->stream));
    return LP_OK;
}

/* ---- Shape ---------------------------------------------------------------- */

namespace {
struct shape_vals {
    int n;
    int64_t v[LP_MAX_RANK];
};
template <typename T> __global__ void shape_kernel(T *y, const __grid_constant__ shape_vals s) {
    int i = (int)threadIdx.x;
    if (i < s.n) y[i] = (T)s.v[i];
}
} // namespace

lp_status lp_gpu_shape(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int64_t r = x->rank, start = lp_gpu_attr_int(c, "start", 0), end = lp_gpu_attr_int(c, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    int64_t n = end > start ? end - start : 0;
    if (lp_gpu_numel(y) != n)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, expected %lld",
                           (long long)lp_gpu_numel(y), (long long)n);
    if (n == 0) return LP_OK;
    shape_vals s;
    s.n = (int)n;
    for (int64_t i = 0; i < n; i++) s.v[i] = x->dims[start + i];
    switch (y->dtype) {
    case LP_DT_INT64: shape_kernel<int64_t><<<1, LP_MAX_RANK, 0, c->stream>>>((int64_t *)y->data, s); break;
    case LP_DT_INT32: shape_kernel<int32_t><<<1, LP_MAX_RANK, 0, c->stream>>>((int32_t *)y->data, s); break;
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "output dtype %s (int64 or int32 only)",
                           lp_dtype_label(y->dtype));
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* ---- ConstantOfShape ---------------------------------------------------- */

lp_status lp_gpu_constant_of_shape(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    size_t es = lp_gpu_dtype_size(y->dtype);
    if (!es)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "output dtype %s",
                           lp_dtype_label(y->dtype));
    const lp_attr *a = lp_gpu_attr(c, "value");
    uint8_t val[8] = {0};
    if (a && a->type == LP_ATTR_TENSOR && a->tensor) {
        const lp_tensor *t = a->tensor;
        if (t->dtype != y->dtype)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "value is %s but the output is %s",
                               lp_dtype_name(t->dtype), lp_dtype_name(y->dtype));
        if (t->data.where != LP_DATA_INLINE || t->data.nbytes != es)
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "value is not one inline element");
        memcpy(val, t->data.bytes, es);
    } else if (y->dtype != LP_DT_FLOAT) {
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "no value given and the output is not float");
    }
    const lp_gpu_tensor *shape = lp_gpu_in(c, 0);
    int64_t n_dims = lp_gpu_numel(shape);
    if (n_dims != y->rank)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "shape has %lld entries, output rank %d",
                           (long long)n_dims, y->rank);
    if (shape->host) {
        /* a literal shape is checked against the output dims */
        int64_t dims[LP_MAX_RANK];
        int nd;
        if ((st = lp_gpu_host_ints(c, 0, dims, LP_MAX_RANK, &nd)) != LP_OK) return st;
        for (int d = 0; d < y->rank; d++)
            if (dims[d] != y->dims[d])
                return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output dim %d is %lld, shape says %lld",
                                   d, (long long)y->dims[d], (long long)dims[d]);
    }
    return fill_bytes(c, y->data, val, es, lp_gpu_numel(y));
}

/* ---- Range ---------------------------------------------------------------- */

namespace {
/* float outputs: start + i * delta in double, as the reference */
template <typename T, typename S>
__global__ void range_float_kernel(T *y, const S *start, const S *delta, int64_t n) {
    double s = (double)num<S>::loadf(start, 0), d = (double)num<S>::loadf(delta, 0);
    GRID_STRIDE(int64_t, i, n) num<T>::storef(y, i, (float)(s + (double)i * d));
}
__global__ void range_double_kernel(double *y, const double *start, const double *delta, int64_t n) {
    double s = start[0], d = delta[0];
    GRID_STRIDE(int64_t, i, n) y[i] = s + (double)i * d;
}
template <typename T> __global__ void range_int_kernel(T *y, const T *start, const T *delta, int64_t n) {
    int64_t s = (int64_t)start[0], d = (int64_t)delta[0];
    GRID_STRIDE(int64_t, i, n) y[i] = (T)(s + i * d);
}
} // namespace

lp_status lp_gpu_range(const lp_gpu_call *c) {
    lp_status st = need(c, 3);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *s = lp_gpu_in(c, 0), *dl = lp_gpu_in(c, 2);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if (s->dtype != y->dtype || dl->dtype != y->dtype)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "start, delta and the output differ in dtype");
    int64_t n = lp_gpu_numel(y);
    if (n == 0) return LP_OK;
    int b = blocks_for(n);
    cudaStream_t q = c->stream;
    switch (y->dtype) {
    case LP_DT_FLOAT:
        range_float_kernel<float, float><<<b, kThreads, 0, q>>>((float *)y->data, (const float *)s->data,
                                                                (const float *)dl->data, n);
        break;
    case LP_DT_FLOAT16:
        range_float_kernel<__half, __half><<<b, kThreads, 0, q>>>(
            (__half *)y->data, (const __half *)s->data, (const __half *)dl->data, n);
        break;
    case LP_DT_BFLOAT16:
        range_float_kernel<__nv_bfloat16, __nv_bfloat16><<<b, kThreads, 0, q>>>(
            (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)s->data, (const __nv_bfloat16 *)dl->data, n);
        break;
    case LP_DT_DOUBLE:
        range_double_kernel<<<b, kThreads, 0, q>>>((double *)y->data, (const double *)s->data,
                                                   (const double *)dl->data, n);
        break;
    case LP_DT_INT64:
        range_int_kernel<int64_t><<<b, kThreads, 0, q>>>((int64_t *)y->data, (const int64_t *)s->data,
                                                         (const int64_t *)dl->data, n);
        break;
    case LP_DT_INT32:
        range_int_kernel<int32_t><<<b, kThreads, 0, q>>>((int32_t *)y->data, (const int32_t *)s->data,
                                                         (const int32_t *)dl->data, n);
        break;
    case LP_DT_INT16:
        range_int_kernel<int16_t><<<b, kThreads, 0, q>>>((int16_t *)y->data, (const int16_t *)s->data,
                                                         (const int16_t *)dl->data, n);
        break;
    case LP_DT_INT8:
        range_int_kernel<int8_t><<<b, kThreads, 0, q>>>((int8_t *)y->data, (const int8_t *)s->data,
                                                        (const int8_t *)dl->data, n);
        break;
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtype %s",
                           lp_dtype_label(y->dtype));
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

/* ---- Expand --------------------------------------------------------------- */

lp_status lp_gpu_expand(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    /* the target is the output shape: x's dims right-aligned, 1s broadcast */
    if (x->rank > y->rank)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input does not broadcast to the output shape");
    copy_plan p;
    p.rank = y->rank;
    p.base = 0;
    int64_t xs[LP_MAX_RANK];
    row_major_strides(x, xs);
    int lead = y->rank - x->rank;
    for (int d = 0; d < y->rank; d++) {
        p.dims[d] = y->dims[d];
        int xd = d - lead;
        if (xd < 0) p.strides[d] = 0;
        else if (x->dims[xd] == y->dims[d]) p.strides[d] = xs[xd];
        else if (x->dims[xd] == 1) p.strides[d] = 0;
        else return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input does not broadcast to the output shape");
    }
    return run_plan(c, y->data, x->data, &p, lp_gpu_dtype_size(x->dtype), lp_gpu_numel(x));
}

/* ---- Concat, Split -------------------------------------------------------- */

lp_status lp_gpu_concat(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    int axis;
    if (!lp_gpu_axis(lp_gpu_attr_int(c, "axis", 0), y->rank, &axis))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    size_t es = lp_gpu_dtype_size(y->dtype);
    int64_t outer = prod(y->dims, 0, axis), inner = prod(y->dims, axis + 1, y->rank);
    int64_t y_row = (y->rank ? y->dims[axis] : 1) * inner, at = 0;
    row_piece pieces[kPiecesPerLaunch];
    int np = 0;
    for (int k = 0; k < c->n_inputs; k++) {
        const lp_gpu_tensor *x = lp_gpu_in(c, k);
        if (!x) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", k);
        if ((st = same_dtype(c, x, y)) != LP_OK) return st;
        if (x->rank != y->rank) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d rank differs", k);
        int64_t x_row = (x->rank ? x->dims[axis] : 1) * inner;
        if (at + x_row > y_row) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "inputs exceed the output");
        pieces[np].src = x->data;
        pieces[np].dst = (char *)y->data + (size_t)at * es;
        pieces[np].len = x_row;
        pieces[np].src_pitch = x_row;
        pieces[np].dst_pitch = y_row;
        np++;
        at += x_row;
        if (np == kPiecesPerLaunch) {
            if ((st = copy_rows(c, pieces, np, outer, es)) != LP_OK) return st;
            np = 0;
        }
    }
    if (at != y_row) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "inputs do not fill the output");
    return copy_rows(c, pieces, np, outer, es);
}

lp_status lp_gpu_split(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    int axis;
    if (!lp_gpu_axis(lp_gpu_attr_int(c, "axis", 0), x->rank, &axis))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    size_t es = lp_gpu_dtype_size(x->dtype);
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis + 1, x->rank);
    int64_t x_row = (x->rank ? x->dims[axis] : 1) * inner, at = 0;
    row_piece pieces[kPiecesPerLaunch];
    int np = 0;
    /* the output shapes (from shape inference) say the split sizes */
    for (int k = 0; k < c->n_outputs; k++) {
        lp_gpu_tensor *y = lp_gpu_out(c, k);
        if (!y) return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "output %d is omitted", k);
        if ((st = same_dtype(c, x, y)) != LP_OK) return st;
        if (y->rank != x->rank) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output %d rank differs", k);
        int64_t y_row = (y->rank ? y->dims[axis] : 1) * inner;
        if (at + y_row > x_row) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "outputs exceed the input");
        pieces[np].src = (const char *)x->data + (size_t)at * es;
        pieces[np].dst = y->data;
        pieces[np].len = y_row;
        pieces[np].src_pitch = x_row;
        pieces[np].dst_pitch = y_row;
        np++;
        at += y_row;
        if (np == kPiecesPerLaunch) {
            if ((st = copy_rows(c, pieces, np, outer, es)) != LP_OK) return st;
            np = 0;
        }
    }
    if (at != x_row) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "outputs do not cover the input");
    return copy_rows(c, pieces, np, outer, es);
}

/* ---- Slice ---------------------------------------------------------------- */

namespace {
/* An int list from input i (opset >= 10, a host literal) or attribute
 * `name`; n = -1 if neither. */
lp_status int_list(const lp_gpu_call *c, int input, const char *name, int64_t *out, int max, int *n) {
    *n = -1;
    if (input >= 0 && input < c->n_inputs && (c->inputs[input].data || c->inputs[input].host))
        return lp_gpu_host_ints(c, input, out, max, n);
    const lp_attr *a = name ? lp_gpu_attr(c, name) : NULL;
    if (a && a->type == LP_ATTR_INTS) {
        if (a->n > max) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "%s is too long", name);
        for (int i = 0; i < a->n; i++) out[i] = a->ints[i];
        *n = a->n;
    }
    return LP_OK;
}
} // namespace

lp_status lp_gpu_slice(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int r = x->rank;
    int64_t starts[LP_MAX_RANK], ends[LP_MAX_RANK], axes[LP_MAX_RANK], steps[LP_MAX_RANK];
    int ns, ne, na, nst;
    bool old = c->opset < 10;
    /* ends computed at run time (exporters' Shape arithmetic): the extent
     * is the output's, so starts and steps are all the copy needs */
    bool ends_known = old || !(c->n_inputs > 2 && c->inputs[2].data && !c->inputs[2].host);
    if ((st = int_list(c, old ? -1 : 1, old ? "starts" : NULL, starts, LP_MAX_RANK, &ns)) != LP_OK ||
        (ends_known &&
         (st = int_list(c, old ? -1 : 2, old ? "ends" : NULL, ends, LP_MAX_RANK, &ne)) != LP_OK) ||
        (st = int_list(c, old ? -1 : 3, old ? "axes" : NULL, axes, LP_MAX_RANK, &na)) != LP_OK ||
        (st = int_list(c, old ? -1 : 4, NULL, steps, LP_MAX_RANK, &nst)) != LP_OK)
        return st;
    if (!ends_known) ne = ns;
    if (ns < 0 || ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "starts, ends, axes and steps differ in length");
    int64_t begin[LP_MAX_RANK], step[LP_MAX_RANK], count[LP_MAX_RANK];
    for (int d = 0; d < r; d++) {
        begin[d] = 0;
        step[d] = 1;
        count[d] = x->dims[d];
    }
    for (int k = 0; k < ns; k++) {
        int ax;
        if (!lp_gpu_axis(na >= 0 ? axes[k] : k, r, &ax))
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
        int64_t dim = x->dims[ax], s = starts[k], p = nst >= 0 ? steps[k] : 1;
        if (p == 0) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "step 0");
        if (ax >= y->rank) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output rank differs");
        /* unknown ends: the last element the output's extent reaches */
        int64_t e = ends_known ? ends[k] : 0;
        if (s < 0) s += dim;
        if (!ends_known) {
            int64_t s0 = p > 0 ? (s < 0 ? 0 : s > dim ? dim : s) : (s < 0 ? -1 : s > dim - 1 ? dim - 1 : s);
            e = s0 + p * y->dims[ax];
            if (p < 0 && e < -1) e = -1;
        }
        if (ends_known && e < 0 && e > INT64_MIN / 2) e += dim;
        if (p > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            count[ax] = e > s ? (e - s + p - 1) / p : 0;
        } else {
            s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            count[ax] = s > e ? (s - e + (-p) - 1) / (-p) : 0;
        }
        begin[ax] = s;
        step[ax] = p;
    }
    if (y->rank != r) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output rank differs");
    /* the extent comes from the output dims; the computed counts check them */
    for (int d = 0; d < r; d++)
        if (count[d] != y->dims[d])
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output dim %d is %lld, the slice gives %lld",
                               d, (long long)y->dims[d], (long long)count[d]);
    int64_t xs[LP_MAX_RANK];
    row_major_strides(x, xs);
    copy_plan p;
    p.rank = r;
    p.base = 0;
    for (int d = 0; d < r; d++) {
        p.dims[d] = y->dims[d];
        p.strides[d] = step[d] * xs[d];
        if (y->dims[d] > 0) p.base += begin[d] * xs[d];
    }
    return run_plan(c, y->data, x->data, &p, lp_gpu_dtype_size(x->dtype), lp_gpu_numel(x));
}

/* ---- Transpose ------------------------------------------------------------ */

namespace {
const int kTile = 32, kTileRows = 8;

/* y[b][j][i] = x[b][i][j] for x of [batches, m, n]: 32x32 tiles through
 * shared memory (padded against bank conflicts), both sides coalesced. */
template <typename T>
__global__ void transpose_tiled_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t batches,
                                       int m, int n) {
    __shared__ T tile[kTile][kTile + 1];
    int tiles_n = (n + kTile - 1) / kTile, tiles_m = (m + kTile - 1) / kTile;
    int64_t per_batch = (int64_t)tiles_m * tiles_n, total = per_batch * batches;
    for (int64_t t = blockIdx.x; t < total; t += gridDim.x) {
        int64_t b = t / per_batch;
        int rem = (int)(t - b * per_batch), tm = rem / tiles_n, tn = rem - tm * tiles_n;
        const T *xb = x + b * (int64_t)m * n;
        T *yb = y + b * (int64_t)m * n;
        int col = tn * kTile + threadIdx.x;
        for (int r = threadIdx.y; r < kTile; r += kTileRows) {
            int row = tm * kTile + r;
            if (row < m && col < n) tile[r][threadIdx.x] = xb[(int64_t)row * n + col];
        }
        __syncthreads();
        int ocol = tm * kTile + threadIdx.x; /* index along m */
        for (int r = threadIdx.y; r < kTile; r += kTileRows) {
            int orow = tn * kTile + r; /* index along n */
            if (orow < n && ocol < m) yb[(int64_t)orow * m + ocol] = tile[threadIdx.x][r];
        }
        __syncthreads();
    }
}

template <typename T>
lp_status launch_tiled(const lp_gpu_call *c, void *y, const void *x, int64_t batches, int64_t m,
                       int64_t n) {
    int64_t tiles = ((m + kTile - 1) / kTile) * ((n + kTile - 1) / kTile) * batches;
    int blocks = (int)(tiles < kMaxBlocks ? tiles : kMaxBlocks);
    transpose_tiled_kernel<T><<<blocks, dim3(kTile, kTileRows), 0, c->stream>>>(
        (T *)y, (const T *)x, batches, (int)m, (int)n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}
} // namespace

lp_status lp_gpu_transpose(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int r = x->rank, perm[LP_MAX_RANK];
    const lp_attr *a = lp_gpu_attr(c, "perm");
    if (a && a->type == LP_ATTR_INTS) {
        if (a->n != r) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "perm has %d entries, rank %d", a->n, r);
        for (int d = 0; d < r; d++)
            if (!lp_gpu_axis(a->ints[d], r, &perm[d]))
                return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "perm entry out of range");
    } else {
        for (int d = 0; d < r; d++) perm[d] = r - 1 - d;
    }
    if (y->rank != r) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output rank differs");
    for (int d = 0; d < r; d++)
        if (y->dims[d] != x->dims[perm[d]])
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output dim %d does not match perm", d);
    int64_t xs[LP_MAX_RANK];
    row_major_strides(x, xs);
    copy_plan p;
    p.rank = r;
    p.base = 0;
    for (int d = 0; d < r; d++) {
        p.dims[d] = y->dims[d];
        p.strides[d] = xs[perm[d]];
    }
    size_t es = lp_gpu_dtype_size(x->dtype);
    int64_t n = lp_gpu_numel(y);
    plan_collapse(&p);
    /* a batched swap of the last two dims, [B, M, N] -> [B, N, M] with the
     * source M x N contiguous: the tiled kernel */
    int q = p.rank;
    bool swap = false;
    int64_t batches = 1, m = 0, nn = 0;
    if (q >= 2 && p.strides[q - 2] == 1 && p.strides[q - 1] == p.dims[q - 2]) {
        nn = p.dims[q - 2]; /* source's last dim */
        m = p.dims[q - 1];
        swap = true;
        int64_t expect = m * nn;
        for (int d = q - 3; d >= 0 && swap; d--) {
            swap = p.strides[d] == expect;
            expect *= p.dims[d];
            batches *= p.dims[d];
        }
        swap = swap && fits32(m) && fits32(nn) && n > 0;
    }
    if (swap) {
        switch (es) {
        case 1: return launch_tiled<uint8_t>(c, y->data, x->data, batches, m, nn);
        case 2: return launch_tiled<uint16_t>(c, y->data, x->data, batches, m, nn);
        case 4: return launch_tiled<uint32_t>(c, y->data, x->data, batches, m, nn);
        case 8: return launch_tiled<uint64_t>(c, y->data, x->data, batches, m, nn);
        default: break;
        }
    }
    return run_plan(c, y->data, x->data, &p, es, lp_gpu_numel(x));
}

/* ---- Gather --------------------------------------------------------------- */

namespace {
template <typename J> __device__ __forceinline__ int64_t norm_index(const J *idx, int64_t j, int64_t dim) {
    int64_t v = (int64_t)idx[j];
    return v < 0 ? v + dim : v;
}

/* y[o][j][col] = x[o][idx[j]][col] in units; out-of-range indices write zeros. */
template <typename T, typename J, typename I>
__global__ void gather_kernel(T *__restrict__ y, const T *__restrict__ x, const J *__restrict__ idx,
                              I n_idx, I inner, I dim, I n) {
    GRID_STRIDE(I, i, n) {
        I t = i / inner, col = i - t * inner;
        I o = t / n_idx, j = t - o * n_idx;
        int64_t k = norm_index(idx, (int64_t)j, (int64_t)dim);
        if (k >= 0 && k < (int64_t)dim) y[i] = x[(o * dim + (I)k) * inner + col];
        else y[i] = T();
    }
}

template <typename T, typename J>
lp_status launch_gather(const lp_gpu_call *c, void *y, const void *x, const void *idx, int64_t n_idx,
                        int64_t inner, int64_t dim, int64_t n, int64_t x_units) {
    int b = blocks_for(n);
    if (fits32(n) && fits32(x_units))
        gather_kernel<T, J, int32_t><<<b, kThreads, 0, c->stream>>>(
            (T *)y, (const T *)x, (const J *)idx, (int32_t)n_idx, (int32_t)inner, (int32_t)dim, (int32_t)n);
    else
        gather_kernel<T, J, int64_t><<<b, kThreads, 0, c->stream>>>((T *)y, (const T *)x, (const J *)idx,
                                                                    n_idx, inner, dim, n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

template <typename J>
lp_status gather_units(const lp_gpu_call *c, int w, void *y, const void *x, const void *idx,
                       int64_t n_idx, int64_t inner, int64_t dim, int64_t n, int64_t x_units) {
    switch (w) {
    case 1: return launch_gather<uint8_t, J>(c, y, x, idx, n_idx, inner, dim, n, x_units);
    case 2: return launch_gather<uint16_t, J>(c, y, x, idx, n_idx, inner, dim, n, x_units);
    case 4: return launch_gather<uint32_t, J>(c, y, x, idx, n_idx, inner, dim, n, x_units);
    case 8: return launch_gather<uint2, J>(c, y, x, idx, n_idx, inner, dim, n, x_units);
    case 16: return launch_gather<uint4, J>(c, y, x, idx, n_idx, inner, dim, n, x_units);
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", w);
    }
}

lp_status index_dtype(const lp_gpu_call *c, const lp_gpu_tensor *idx) {
    if (idx->dtype != LP_DT_INT64 && idx->dtype != LP_DT_INT32)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "indices are %s, not int64 or int32",
                           lp_dtype_label(idx->dtype));
    return LP_OK;
}
} // namespace

lp_status lp_gpu_gather(const lp_gpu_call *c) {
    lp_status st = need(c, 2);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0), *idx = lp_gpu_in(c, 1);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK || (st = index_dtype(c, idx)) != LP_OK) return st;
    int axis;
    if (!lp_gpu_axis(lp_gpu_attr_int(c, "axis", 0), x->rank, &axis) || x->rank == 0)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis + 1, x->rank);
    int64_t dim = x->dims[axis], n_idx = lp_gpu_numel(idx);
    if (lp_gpu_numel(y) != outer * n_idx * inner)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output size does not match the indices");
    int64_t n = lp_gpu_numel(y);
    if (n == 0) return LP_OK;
    if (dim == 0) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "gathering from an empty axis");
    size_t es = lp_gpu_dtype_size(x->dtype);
    int64_t vals[3] = {inner * (int64_t)es, ptr_bytes(x->data), ptr_bytes(y->data)};
    int w = unit_for(vals, 3);
    if (w < (int)es) w = (int)es;
    int64_t f = w / (int64_t)es, x_units = lp_gpu_numel(x) / f;
    inner /= f;
    n /= f;
    if (idx->dtype == LP_DT_INT64)
        return gather_units<int64_t>(c, w, y->data, x->data, idx->data, n_idx, inner, dim, n, x_units);
    return gather_units<int32_t>(c, w, y->data, x->data, idx->data, n_idx, inner, dim, n, x_units);
}

/* ---- GatherElements ------------------------------------------------------- */

namespace {
struct gather_el_shape {
    int rank, axis;
    int64_t idx_dims[LP_MAX_RANK];
    int64_t x_strides[LP_MAX_RANK];
    int64_t axis_dim;
};

template <typename T, typename J, typename I>
__global__ void gather_elements_kernel(T *__restrict__ y, const T *__restrict__ x,
                                       const J *__restrict__ idx,
                                       const __grid_constant__ gather_el_shape s, I n) {
    GRID_STRIDE(I, i, n) {
        I rest = i, off = 0;
        for (int d = s.rank - 1; d >= 0; d--) {
            I dd = (I)s.idx_dims[d], q = rest / dd, co = rest - q * dd;
            if (d == s.axis) {
                int64_t k = norm_index(idx, (int64_t)i, s.axis_dim);
                if (k < 0 || k >= s.axis_dim) { off = -1; break; }
                co = (I)k;
            }
            off += co * (I)s.x_strides[d];
            rest = q;
        }
        if (off >= 0) y[i] = x[off];
        else y[i] = T();
    }
}

template <typename T, typename J>
lp_status launch_gather_el(const lp_gpu_call *c, void *y, const void *x, const void *idx,
                           const gather_el_shape &s, int64_t n, int64_t x_n) {
    int b = blocks_for(n);
    if (fits32(n) && fits32(x_n))
        gather_elements_kernel<T, J, int32_t><<<b, kThreads, 0, c->stream>>>(
            (T *)y, (const T *)x, (const J *)idx, s, (int32_t)n);
    else
        gather_elements_kernel<T, J, int64_t><<<b, kThreads, 0, c->stream>>>(
            (T *)y, (const T *)x, (const J *)idx, s, n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

template <typename J>
lp_status gather_el_es(const lp_gpu_call *c, size_t es, void *y, const void *x, const void *idx,
                       const gather_el_shape &s, int64_t n, int64_t x_n) {
    switch (es) {
    case 1: return launch_gather_el<uint8_t, J>(c, y, x, idx, s, n, x_n);
    case 2: return launch_gather_el<uint16_t, J>(c, y, x, idx, s, n, x_n);
    case 4: return launch_gather_el<uint32_t, J>(c, y, x, idx, s, n, x_n);
    case 8: return launch_gather_el<uint64_t, J>(c, y, x, idx, s, n, x_n);
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", (int)es);
    }
}
} // namespace

lp_status lp_gpu_gather_elements(const lp_gpu_call *c) {
    lp_status st = need(c, 2);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0), *idx = lp_gpu_in(c, 1);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK || (st = index_dtype(c, idx)) != LP_OK) return st;
    int axis, r = x->rank;
    if (!lp_gpu_axis(lp_gpu_attr_int(c, "axis", 0), r, &axis) || r == 0)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    if (idx->rank != r || lp_gpu_numel(y) != lp_gpu_numel(idx))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "indices and output shapes differ");
    int64_t n = lp_gpu_numel(idx);
    if (n == 0) return LP_OK;
    gather_el_shape s;
    s.rank = r;
    s.axis = axis;
    s.axis_dim = x->dims[axis];
    row_major_strides(x, s.x_strides);
    for (int d = 0; d < r; d++) s.idx_dims[d] = idx->dims[d];
    size_t es = lp_gpu_dtype_size(x->dtype);
    if (idx->dtype == LP_DT_INT64)
        return gather_el_es<int64_t>(c, es, y->data, x->data, idx->data, s, n, lp_gpu_numel(x));
    return gather_el_es<int32_t>(c, es, y->data, x->data, idx->data, s, n, lp_gpu_numel(x));
}

/* ---- GatherND ------------------------------------------------------------- */

namespace {
struct gather_nd_shape {
    int64_t k, per_batch, slice, x_batch;
    int64_t dims[LP_MAX_RANK];    /* x dims b .. b+k-1 */
    int64_t strides[LP_MAX_RANK]; /* their strides, units */
};

template <typename T, typename J>
__global__ void gather_nd_kernel(T *__restrict__ y, const T *__restrict__ x, const J *__restrict__ idx,
                                 const __grid_constant__ gather_nd_shape s, int64_t n) {
    GRID_STRIDE(int64_t, i, n) {
        int64_t row = i / s.slice, col = i - row * s.slice, bi = row / s.per_batch;
        int64_t off = bi * s.x_batch;
        bool ok = true;
        for (int64_t q = 0; q < s.k; q++) {
            int64_t v = norm_index(idx, row * s.k + q, s.dims[q]);
            ok = ok && v >= 0 && v < s.dims[q];
            off += v * s.strides[q];
        }
        if (ok) y[i] = x[off + col];
        else y[i] = T();
    }
}

template <typename T, typename J>
lp_status launch_gather_nd(const lp_gpu_call *c, void *y, const void *x, const void *idx,
                           const gather_nd_shape &s, int64_t n) {
    gather_nd_kernel<T, J><<<blocks_for(n), kThreads, 0, c->stream>>>((T *)y, (const T *)x,
                                                                      (const J *)idx, s, n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}

template <typename J>
lp_status gather_nd_units(const lp_gpu_call *c, int w, void *y, const void *x, const void *idx,
                          const gather_nd_shape &s, int64_t n) {
    switch (w) {
    case 1: return launch_gather_nd<uint8_t, J>(c, y, x, idx, s, n);
    case 2: return launch_gather_nd<uint16_t, J>(c, y, x, idx, s, n);
    case 4: return launch_gather_nd<uint32_t, J>(c, y, x, idx, s, n);
    case 8: return launch_gather_nd<uint2, J>(c, y, x, idx, s, n);
    case 16: return launch_gather_nd<uint4, J>(c, y, x, idx, s, n);
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", w);
    }
}
} // namespace

lp_status lp_gpu_gather_nd(const lp_gpu_call *c) {
    lp_status st = need(c, 2);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0), *idx = lp_gpu_in(c, 1);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK || (st = index_dtype(c, idx)) != LP_OK) return st;
    int64_t b = lp_gpu_attr_int(c, "batch_dims", 0);
    if (idx->rank < 1) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "indices are a scalar");
    int64_t k = idx->dims[idx->rank - 1];
    if (b < 0 || b >= idx->rank || b + k > x->rank)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "batch_dims %lld and index depth %lld do not fit",
                           (long long)b, (long long)k);
    gather_nd_shape s;
    int64_t batches = prod(x->dims, 0, (int)b);
    s.k = k;
    s.per_batch = prod(idx->dims, (int)b, idx->rank - 1);
    s.slice = prod(x->dims, (int)(b + k), x->rank);
    s.x_batch = prod(x->dims, (int)b, x->rank);
    if (lp_gpu_numel(y) != batches * s.per_batch * s.slice)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output size does not match the indices");
    int64_t n = lp_gpu_numel(y);
    if (n == 0) return LP_OK;
    int64_t xs[LP_MAX_RANK];
    row_major_strides(x, xs);
    size_t es = lp_gpu_dtype_size(x->dtype);
    /* the slice is contiguous: copy it in the widest unit */
    int64_t vals[3] = {s.slice * (int64_t)es, ptr_bytes(x->data), ptr_bytes(y->data)};
    int w = unit_for(vals, 3);
    if (w < (int)es) w = (int)es;
    int64_t f = w / (int64_t)es;
    s.slice /= f;
    s.x_batch /= f;
    for (int64_t q = 0; q < k; q++) {
        s.dims[q] = x->dims[b + q];
        s.strides[q] = xs[b + q] / f;
    }
    n /= f;
    if (idx->dtype == LP_DT_INT64) return gather_nd_units<int64_t>(c, w, y->data, x->data, idx->data, s, n);
    return gather_nd_units<int32_t>(c, w, y->data, x->data, idx->data, s, n);
}

/* ---- Pad ------------------------------------------------------------------ */

namespace {
struct pad_shape {
    int rank, mode; /* 0 constant, 1 reflect, 2 edge, 3 wrap */
    int64_t y_dims[LP_MAX_RANK];
    int64_t x_dims[LP_MAX_RANK];
    int64_t x_strides[LP_MAX_RANK];
    int64_t begin[LP_MAX_RANK];
};

/* cv: the constant on the device (constant_value input), else cbits */
template <typename T, typename I>
__global__ void pad_kernel(T *__restrict__ y, const T *__restrict__ x, const T *cv, T cbits,
                           const __grid_constant__ pad_shape s, I n) {
    T cval = cv ? *cv : cbits;
    GRID_STRIDE(I, i, n) {
        I rest = i;
        int64_t off = 0;
        bool outside = false;
        for (int d = s.rank - 1; d >= 0; d--) {
            I dd = (I)s.y_dims[d], q = rest / dd;
            int64_t p = (int64_t)(rest - q * dd) - s.begin[d], dim = s.x_dims[d];
            rest = q;
            if (p < 0 || p >= dim) {
                if (s.mode == 0 || dim == 0) { outside = true; break; }
                if (s.mode == 2) p = p < 0 ? 0 : dim - 1;
                else if (s.mode == 3) p = ((p % dim) + dim) % dim;
                else if (dim == 1) p = 0;
                else {
                    int64_t period = 2 * (dim - 1);
                    p = ((p % period) + period) % period;
                    if (p >= dim) p = period - p;
                }
            }
            off += p * s.x_strides[d];
        }
        y[i] = outside ? cval : x[off];
    }
}

template <typename T>
lp_status launch_pad(const lp_gpu_call *c, void *y, const void *x, const void *cv,
                     const uint8_t *cbytes, const pad_shape &s, int64_t n) {
    T cbits;
    memcpy(&cbits, cbytes, sizeof(T));
    int b = blocks_for(n);
    if (fits32(n))
        pad_kernel<T, int32_t><<<b, kThreads, 0, c->stream>>>((T *)y, (const T *)x, (const T *)cv,
                                                              cbits, s, (int32_t)n);
    else
        pad_kernel<T, int64_t><<<b, kThreads, 0, c->stream>>>((T *)y, (const T *)x, (const T *)cv,
                                                              cbits, s, n);
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}
} // namespace

lp_status lp_gpu_pad(const lp_gpu_call *c) {
    lp_status st = need(c, 1);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int r = x->rank;
    const char *mode = lp_gpu_attr_string(c, "mode", "constant");
    int m = strcmp(mode, "constant") == 0 ? 0 : strcmp(mode, "reflect") == 0 ? 1
          : strcmp(mode, "edge") == 0 ? 2 : strcmp(mode, "wrap") == 0 ? 3 : -1;
    if (m < 0)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "mode '%s' is not constant, reflect, edge or wrap", mode);
    int64_t raw[2 * LP_MAX_RANK], axes_l[LP_MAX_RANK], begin[LP_MAX_RANK], end[LP_MAX_RANK];
    int np = -1, na = -1;
    bool old = c->opset < 11;
    if (old) {
        const lp_attr *pa = lp_gpu_attr(c, "pads");
        if (!pa || pa->type != LP_ATTR_INTS || pa->n != 2 * r)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "pads must have 2 * rank entries");
        for (int i = 0; i < pa->n; i++) raw[i] = pa->ints[i];
        np = pa->n;
    } else {
        if (!(c->n_inputs > 1 && (c->inputs[1].data || c->inputs[1].host)))
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "pads input is missing");
        if ((st = lp_gpu_host_ints(c, 1, raw, 2 * LP_MAX_RANK, &np)) != LP_OK) return st;
        if ((st = int_list(c, 3, NULL, axes_l, LP_MAX_RANK, &na)) != LP_OK) return st;
    }
    for (int d = 0; d < r; d++) begin[d] = end[d] = 0;
    int n_ax = na >= 0 ? na : r;
    if (np != 2 * n_ax)
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "pads has %d entries for %d axes", np, n_ax);
    if (y->rank != r) return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output rank differs");
    for (int k = 0; k < n_ax; k++) {
        int ax;
        if (!lp_gpu_axis(na >= 0 ? axes_l[k] : k, r, &ax))
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
        begin[ax] = raw[k];
        end[ax] = raw[k + n_ax];
        if (y->dims[ax] != x->dims[ax] + raw[k] + raw[k + n_ax])
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "output dim %d does not match the pads", ax);
    }
    size_t es = lp_gpu_dtype_size(x->dtype);
    /* the constant: input 2 on the device, or the old attribute as bytes */
    uint8_t cbytes[8] = {0};
    const void *cv = NULL;
    if (old) {
        if (!float_as(x->dtype, lp_gpu_attr_float(c, "value", 0.0f), cbytes))
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtype %s", lp_dtype_name(x->dtype));
    } else if (lp_gpu_in(c, 2)) {
        const lp_gpu_tensor *v = lp_gpu_in(c, 2);
        if (v->dtype != x->dtype)
            return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "constant_value dtype differs");
        cv = v->data;
    }
    int64_t n = lp_gpu_numel(y);
    if (n == 0) return LP_OK;
    /* merge neighbouring dims that are not padded (their x and y dims agree) */
    pad_shape s;
    s.mode = m;
    s.rank = 0;
    int64_t xs[LP_MAX_RANK];
    row_major_strides(x, xs);
    for (int d = 0; d < r; d++) {
        bool flat = begin[d] == 0 && end[d] == 0;
        int q = s.rank;
        if (q > 0 && flat && s.begin[q - 1] == 0 && s.x_dims[q - 1] == s.y_dims[q - 1]) {
            s.y_dims[q - 1] *= y->dims[d];
            s.x_dims[q - 1] *= x->dims[d];
            s.x_strides[q - 1] = xs[d];
            continue;
        }
        s.y_dims[q] = y->dims[d];
        s.x_dims[q] = x->dims[d];
        s.x_strides[q] = xs[d];
        s.begin[q] = begin[d];
        s.rank++;
    }
    if (s.rank == 0) {
        s.rank = 1;
        s.y_dims[0] = s.x_dims[0] = 1;
        s.x_strides[0] = 1;
        s.begin[0] = 0;
    }
    switch (es) {
    case 1: return launch_pad<uint8_t>(c, y->data, x->data, cv, cbytes, s, n);
    case 2: return launch_pad<uint16_t>(c, y->data, x->data, cv, cbytes, s, n);
    case 4: return launch_pad<uint32_t>(c, y->data, x->data, cv, cbytes, s, n);
    case 8: return launch_pad<uint64_t>(c, y->data, x->data, cv, cbytes, s, n);
    default: return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "elements of %d bytes", (int)es);
    }
}

/* ---- CumSum --------------------------------------------------------------- */

namespace {
/* fp32 accumulation for float types, int64 for integers */
template <typename T> struct acc_of { typedef float type; };
template <> struct acc_of<int64_t> { typedef int64_t type; };
template <> struct acc_of<int32_t> { typedef int64_t type; };
template <> struct acc_of<double> { typedef double type; };

template <typename T, typename A> __device__ __forceinline__ A load_acc(const T *p, int64_t i) {
    return (A)num<T>::loadf(p, i);
}
template <> __device__ __forceinline__ int64_t load_acc<int64_t, int64_t>(const int64_t *p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ int64_t load_acc<int32_t, int64_t>(const int32_t *p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ double load_acc<double, double>(const double *p, int64_t i) { return p[i]; }
template <typename T, typename A> __device__ __forceinline__ void store_acc(T *p, int64_t i, A v) {
    num<T>::storef(p, i, (float)v);
}
template <> __device__ __forceinline__ void store_acc<int64_t, int64_t>(int64_t *p, int64_t i, int64_t v) { p[i] = v; }
template <> __device__ __forceinline__ void store_acc<int32_t, int64_t>(int32_t *p, int64_t i, int64_t v) { p[i] = (int32_t)v; }
template <> __device__ __forceinline__ void store_acc<double, double>(double *p, int64_t i, double v) { p[i] = v; }

/* Columns (inner > 1): one thread walks one (outer, inner) column along the
 * axis; neighbouring threads read neighbouring addresses. */
template <typename T>
__global__ void cumsum_cols_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t dim,
                                   int64_t inner, int64_t cols, bool excl, bool rev) {
    typedef typename acc_of<T>::type A;
    GRID_STRIDE(int64_t, t, cols) {
        int64_t o = t / inner, in = t - o * inner;
        A acc = 0;
        for (int64_t j = 0; j < dim; j++) {
            int64_t a = rev ? dim - 1 - j : j, at = (o * dim + a) * inner + in;
            A v = load_acc<T, A>(x, at);
            if (excl) { store_acc<T, A>(y, at, acc); acc += v; }
            else { acc += v; store_acc<T, A>(y, at, acc); }
        }
    }
}

const int kScanItems = 4;

/* Rows (inner == 1): one block per row, kScanItems consecutive elements per
 * thread, a warp-shuffle scan of the thread totals, a carry between chunks. */
template <typename T>
__global__ void cumsum_rows_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t rows,
                                   int64_t dim, bool excl, bool rev) {
    typedef typename acc_of<T>::type A;
    __shared__ A warp_tot[32];
    __shared__ A carry_s;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    int64_t chunk = (int64_t)blockDim.x * kScanItems;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * dim;
        T *yr = y + row * dim;
        A carry = 0;
        for (int64_t c0 = 0; c0 < dim; c0 += chunk) {
            A v[kScanItems], tot = 0;
            int64_t j0 = c0 + (int64_t)threadIdx.x * kScanItems;
            for (int k = 0; k < kScanItems; k++) {
                int64_t j = j0 + k;
                v[k] = j < dim ? load_acc<T, A>(xr, rev ? dim - 1 - j : j) : (A)0;
                tot += v[k];
            }
            /* inclusive scan of the thread totals within the warp */
            A inc = tot;
            for (int off = 1; off < 32; off <<= 1) {
                A o = __shfl_up_sync(0xffffffffu, inc, off);
                if (lane >= off) inc += o;
            }
            if (lane == 31) warp_tot[warp] = inc;
            __syncthreads();
            if (warp == 0) {
                A wt = lane < n_warps ? warp_tot[lane] : (A)0, wi = wt;
                for (int off = 1; off < 32; off <<= 1) {
                    A o = __shfl_up_sync(0xffffffffu, wi, off);
                    if (lane >= off) wi += o;
                }
                if (lane < n_warps) warp_tot[lane] = wi - wt; /* exclusive */
                if (lane == 31) carry_s = wi;                 /* the chunk's total */
            }
            __syncthreads();
            A run = carry + warp_tot[warp] + (inc - tot);
            for (int k = 0; k < kScanItems; k++) {
                int64_t j = j0 + k;
                if (j >= dim) break;
                int64_t a = rev ? dim - 1 - j : j;
                if (excl) { store_acc<T, A>(yr, a, run); run += v[k]; }
                else { run += v[k]; store_acc<T, A>(yr, a, run); }
            }
            carry += carry_s;
            __syncthreads();
        }
    }
}

template <typename T>
lp_status launch_cumsum(const lp_gpu_call *c, void *y, const void *x, int64_t outer, int64_t dim,
                        int64_t inner, bool excl, bool rev) {
    if (inner == 1) {
        int threads = 32;
        while (threads < 1024 && (int64_t)threads * kScanItems < dim) threads *= 2;
        int blocks = (int)(outer < kMaxBlocks ? outer : kMaxBlocks);
        cumsum_rows_kernel<T><<<blocks, threads, 0, c->stream>>>((T *)y, (const T *)x, outer, dim,
                                                                 excl, rev);
    } else {
        int64_t cols = outer * inner;
        cumsum_cols_kernel<T><<<blocks_for(cols), kThreads, 0, c->stream>>>((T *)y, (const T *)x, dim,
                                                                            inner, cols, excl, rev);
    }
    LP_GPU_LAUNCHED(c);
    return LP_OK;
}
} // namespace

lp_status lp_gpu_cumsum(const lp_gpu_call *c) {
    lp_status st = need(c, 2);
    if (st != LP_OK) return st;
    const lp_gpu_tensor *x = lp_gpu_in(c, 0);
    lp_gpu_tensor *y = lp_gpu_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int64_t axis_v[1];
    int na;
    if ((st = lp_gpu_host_ints(c, 1, axis_v, 1, &na)) != LP_OK) return st;
    int axis;
    if (na != 1 || !lp_gpu_axis(axis_v[0], x->rank, &axis))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    bool excl = lp_gpu_attr_int(c, "exclusive", 0) != 0, rev = lp_gpu_attr_int(c, "reverse", 0) != 0;
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis + 1, x->rank);
    int64_t dim = x->rank ? x->dims[axis] : 1;
    if (outer * inner * dim == 0) return LP_OK;
    switch (x->dtype) {
    case LP_DT_FLOAT: return launch_cumsum<float>(c, y->data, x->data, outer, dim, inner, excl, rev);
    case LP_DT_FLOAT16: return launch_cumsum<__half>(c, y->data, x->data, outer, dim, inner, excl, rev);
    case LP_DT_BFLOAT16:
        return launch_cumsum<__nv_bfloat16>(c, y->data, x->data, outer, dim, inner, excl, rev);
    case LP_DT_DOUBLE: return launch_cumsum<double>(c, y->data, x->data, outer, dim, inner, excl, rev);
    case LP_DT_INT64: return launch_cumsum<int64_t>(c, y->data, x->data, outer, dim, inner, excl, rev);
    case LP_DT_INT32: return launch_cumsum<int32_t>(c, y->data, x->data, outer, dim, inner, excl, rev);
    default:
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "dtype %s",
                           lp_dtype_label(x->dtype));
    }
}
