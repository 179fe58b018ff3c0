/* ref_core.c - dtype conversion, element access, broadcasting and the
 * dispatcher of the CPU reference kernels. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "ref_internal.h"

lp_status lp_ref_fail(const lp_ref_call *c, lp_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *op = lp_op_name(c->op);
    if (c->node && *c->node)
        return lp_error(c->diag, s, "reference kernel %s '%s': %s", op ? op : "?", c->node, msg);
    return lp_error(c->diag, s, "reference kernel %s: %s", op ? op : "?", msg);
}

const lp_attr *lp_ref_attr(const lp_ref_call *c, const char *name) {
    return lp_attrs_find(c->attrs, c->n_attrs, name);
}

int64_t lp_ref_attr_int(const lp_ref_call *c, const char *name, int64_t fallback) {
    return lp_attrs_int(c->attrs, c->n_attrs, name, fallback);
}

float lp_ref_attr_float(const lp_ref_call *c, const char *name, float fallback) {
    return lp_attrs_float(c->attrs, c->n_attrs, name, fallback);
}

const char *lp_ref_attr_string(const lp_ref_call *c, const char *name, const char *fallback) {
    return lp_attrs_string(c->attrs, c->n_attrs, name, fallback);
}

int64_t lp_ref_numel(const lp_ref_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0) return -1;
        if (t->dims[i] && n > INT64_MAX / t->dims[i]) return -1;
        n *= t->dims[i];
    }
    return n;
}

size_t lp_ref_dtype_size(lp_dtype t) {
    switch (t) {
    case LP_DT_BOOL: case LP_DT_UINT8: case LP_DT_INT8: return 1;
    case LP_DT_FLOAT16: case LP_DT_BFLOAT16: case LP_DT_UINT16: case LP_DT_INT16: return 2;
    case LP_DT_FLOAT: case LP_DT_INT32: case LP_DT_UINT32: return 4;
    case LP_DT_DOUBLE: case LP_DT_INT64: case LP_DT_UINT64: return 8;
    default: return 0;
    }
}

bool lp_ref_is_float(lp_dtype t) {
    return t == LP_DT_FLOAT || t == LP_DT_FLOAT16 || t == LP_DT_BFLOAT16 || t == LP_DT_DOUBLE;
}

/* ---- half precision ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float lp_ref_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 exactly */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t lp_ref_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff, man = u & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        /* subnormal half: shift the full mantissa, round to nearest even */
        if (e < -10) return sign;
        uint32_t m = man | 0x800000;
        int shift = 14 - e;
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into inf: right */
    return (uint16_t)(sign | half);
}

float lp_ref_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t lp_ref_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffff)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---- element access ---- */

float lp_ref_loadf(const lp_ref_tensor *t, int64_t i) {
    const void *p = t->data;
    switch (t->dtype) {
    case LP_DT_FLOAT: return ((const float *)p)[i];
    case LP_DT_DOUBLE: return (float)((const double *)p)[i];
    case LP_DT_FLOAT16: return lp_ref_f16_to_f32(((const uint16_t *)p)[i]);
    case LP_DT_BFLOAT16: return lp_ref_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return (float)lp_ref_loadi(t, i);
    }
}

void lp_ref_storef(lp_ref_tensor *t, int64_t i, float v) {
    void *p = t->data;
    switch (t->dtype) {
    case LP_DT_FLOAT: ((float *)p)[i] = v; return;
    case LP_DT_DOUBLE: ((double *)p)[i] = v; return;
    case LP_DT_FLOAT16: ((uint16_t *)p)[i] = lp_ref_f32_to_f16(v); return;
    case LP_DT_BFLOAT16: ((uint16_t *)p)[i] = lp_ref_f32_to_bf16(v); return;
    case LP_DT_BOOL: ((uint8_t *)p)[i] = v != 0.0f; return;
    default:
        /* float -> integer truncates toward zero, as C and ONNX Runtime do;
         * NaN and out-of-range values saturate instead of being undefined */
        if (isnan(v)) v = 0.0f;
        if (v >= 9.2233715e18f) lp_ref_storei(t, i, INT64_MAX);
        else if (v <= -9.2233715e18f) lp_ref_storei(t, i, INT64_MIN);
        else lp_ref_storei(t, i, (int64_t)v);
        return;
    }
}

int64_t lp_ref_loadi(const lp_ref_tensor *t, int64_t i) {
    const void *p = t->data;
    switch (t->dtype) {
    case LP_DT_BOOL: case LP_DT_UINT8: return ((const uint8_t *)p)[i];
    case LP_DT_INT8: return ((const int8_t *)p)[i];
    case LP_DT_UINT16: return ((const uint16_t *)p)[i];
    case LP_DT_INT16: return ((const int16_t *)p)[i];
    case LP_DT_INT32: return ((const int32_t *)p)[i];
    case LP_DT_UINT32: return ((const uint32_t *)p)[i];
    case LP_DT_INT64: return ((const int64_t *)p)[i];
    case LP_DT_UINT64: return (int64_t)((const uint64_t *)p)[i];
    default: {
        float f = lp_ref_loadf(t, i);
        if (isnan(f)) return 0;
        if (f >= 9.2233715e18f) return INT64_MAX;
        if (f <= -9.2233715e18f) return INT64_MIN;
        return (int64_t)f;
    }
    }
}

void lp_ref_storei(lp_ref_tensor *t, int64_t i, int64_t v) {
    void *p = t->data;
    switch (t->dtype) {
    case LP_DT_BOOL: ((uint8_t *)p)[i] = v != 0; return;
    case LP_DT_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; return;
    case LP_DT_INT8: ((int8_t *)p)[i] = (int8_t)v; return;
    case LP_DT_UINT16: ((uint16_t *)p)[i] = (uint16_t)v; return;
    case LP_DT_INT16: ((int16_t *)p)[i] = (int16_t)v; return;
    case LP_DT_INT32: ((int32_t *)p)[i] = (int32_t)v; return;
    case LP_DT_UINT32: ((uint32_t *)p)[i] = (uint32_t)v; return;
    case LP_DT_INT64: ((int64_t *)p)[i] = v; return;
    case LP_DT_UINT64: ((uint64_t *)p)[i] = (uint64_t)v; return;
    default: lp_ref_storef(t, i, (float)v); return;
    }
}

lp_status lp_ref_need(const lp_ref_call *c, int n_in, int n_out) {
    for (int i = 0; i < n_in; i++) {
        if (!lp_ref_in(c, i)) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", i);
    }
    for (int i = 0; i < c->n_inputs; i++) {
        const lp_ref_tensor *t = lp_ref_in(c, i);
        if (t && !lp_ref_dtype_size(t->dtype))
            return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "input %d has dtype %s, which the reference "
                               "kernels do not compute with", i,
                               lp_dtype_label(t->dtype));
        if (t && (t->rank < 0 || t->rank > LP_MAX_RANK || lp_ref_numel(t) < 0))
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d has a bad shape", i);
    }
    for (int i = 0; i < n_out; i++) {
        const lp_ref_tensor *t = lp_ref_out(c, i);
        if (!t) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output %d is missing", i);
        if (!lp_ref_dtype_size(t->dtype))
            return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "output %d has dtype %s, which the "
                               "reference kernels do not compute with", i,
                               lp_dtype_label(t->dtype));
        if (t->rank < 0 || t->rank > LP_MAX_RANK || lp_ref_numel(t) < 0)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output %d has a bad shape", i);
    }
    return LP_OK;
}

void lp_ref_strides(const lp_ref_tensor *t, int64_t *strides) {
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= t->dims[i];
    }
}

bool lp_ref_bcast_strides(const lp_ref_tensor *t, int rank, const int64_t *dims, int64_t *strides) {
    if (t->rank > rank) return false;
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        int k = i - (rank - t->rank);
        if (k < 0) {
            strides[i] = 0;
            continue;
        }
        if (t->dims[k] == dims[i]) strides[i] = dims[i] == 1 ? 0 : s;
        else if (t->dims[k] == 1) strides[i] = 0;
        else return false;
        s *= t->dims[k];
    }
    return true;
}

bool lp_ref_axis(int64_t axis, int rank, int *out) {
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= (rank ? rank : 1)) return false;
    *out = (int)axis;
    return true;
}

/* ---- dispatcher ---- */

/* One reference function per kernel family (ops.def's emit column). */
static const lp_ref_fn family_kernel[LP_EMIT_COUNT] = {
    [LP_EMIT_UNARY] = lp_ref_unary,
    [LP_EMIT_BINARY] = lp_ref_binary,
    [LP_EMIT_VARIADIC] = lp_ref_variadic,
    [LP_EMIT_WHERE] = lp_ref_where,
    [LP_EMIT_CLIP] = lp_ref_clip,
    [LP_EMIT_CAST] = lp_ref_cast,
    [LP_EMIT_VIEW] = lp_ref_view,
    [LP_EMIT_SHAPE] = lp_ref_shape,
    [LP_EMIT_CONSTANT_OF_SHAPE] = lp_ref_constant_of_shape,
    [LP_EMIT_RANGE] = lp_ref_range,
    [LP_EMIT_EXPAND] = lp_ref_expand,
    [LP_EMIT_CONCAT] = lp_ref_concat,
    [LP_EMIT_SPLIT] = lp_ref_split,
    [LP_EMIT_SLICE] = lp_ref_slice,
    [LP_EMIT_TRANSPOSE] = lp_ref_transpose,
    [LP_EMIT_GATHER] = lp_ref_gather,
    [LP_EMIT_GATHER_ELEMENTS] = lp_ref_gather_elements,
    [LP_EMIT_GATHER_ND] = lp_ref_gather_nd,
    [LP_EMIT_PAD] = lp_ref_pad,
    [LP_EMIT_CUMSUM] = lp_ref_cumsum,
    [LP_EMIT_MATMUL] = lp_ref_matmul,
    [LP_EMIT_GEMM] = lp_ref_gemm,
    [LP_EMIT_CONV] = lp_ref_conv,
    [LP_EMIT_POOL] = lp_ref_pool,
    [LP_EMIT_GLOBAL_POOL] = lp_ref_global_pool,
    [LP_EMIT_BATCHNORM] = lp_ref_batchnorm,
    [LP_EMIT_LAYERNORM] = lp_ref_layernorm,
    [LP_EMIT_SOFTMAX] = lp_ref_softmax,
    [LP_EMIT_REDUCE] = lp_ref_reduce,
};

static lp_ref_fn kernel_of(int op) {
    lp_op_emit e = lp_op_emit_of(op);
    return e > LP_EMIT_NONE && e < LP_EMIT_COUNT ? family_kernel[e] : NULL;
}

lp_ref_fn lp_ref_kernel(int op, lp_diag *d) {
    lp_ref_fn f = kernel_of(op);
    if (!f && d) {
        const char *name = lp_op_name(op);
        if (name)
            lp_error(d, LP_ERR_UNSUPPORTED, "no CPU reference kernel for op %s", name);
        else
            lp_error(d, LP_ERR_UNSUPPORTED, "no CPU reference kernel for op id %d (not in the op table)", op);
    }
    return f;
}

lp_status lp_ref_run(const lp_ref_call *c) {
    lp_ref_fn f = lp_ref_kernel(c->op, c->diag);
    if (!f) return LP_ERR_UNSUPPORTED;
    return f(c);
}

/* ---- comparing tensors ---- */

double lp_ref_elem(const void *p, lp_dtype t, int64_t i) {
    switch (t) {
    case LP_DT_FLOAT: return ((const float *)p)[i];
    case LP_DT_DOUBLE: return ((const double *)p)[i];
    case LP_DT_FLOAT16: return lp_ref_f16_to_f32(((const uint16_t *)p)[i]);
    case LP_DT_BFLOAT16: return lp_ref_bf16_to_f32(((const uint16_t *)p)[i]);
    case LP_DT_INT64: return (double)((const int64_t *)p)[i];
    case LP_DT_UINT64: return (double)((const uint64_t *)p)[i];
    case LP_DT_INT32: return ((const int32_t *)p)[i];
    case LP_DT_UINT32: return ((const uint32_t *)p)[i];
    case LP_DT_INT16: return ((const int16_t *)p)[i];
    case LP_DT_UINT16: return ((const uint16_t *)p)[i];
    case LP_DT_INT8: return ((const int8_t *)p)[i];
    case LP_DT_UINT8:
    case LP_DT_BOOL: return ((const uint8_t *)p)[i];
    default: return 0;
    }
}

void lp_ref_compare(const void *got, lp_dtype got_t, const void *want, lp_dtype want_t, int64_t n,
                    lp_ref_diff *out) {
    bool exact = !lp_ref_is_float(got_t) && !lp_ref_is_float(want_t);
    double num = 0, den = 0;
    *out = (lp_ref_diff){.worst_abs = 0, .n_mismatch = 0, .first_mismatch = -1, .worst_at = -1};
    for (int64_t i = 0; i < n; i++) {
        double g = lp_ref_elem(got, got_t, i), w = lp_ref_elem(want, want_t, i);
        if (g == w) {
            den += isfinite(w) ? w * w : 0;
            continue;
        }
        if (exact || !isfinite(g) || !isfinite(w)) {
            if (!(isnan(g) && isnan(w)) && out->n_mismatch++ == 0) out->first_mismatch = i;
            continue;
        }
        num += (g - w) * (g - w);
        den += w * w;
        if (fabs(g - w) > out->worst_abs || out->worst_at < 0) {
            out->worst_abs = fabs(g - w);
            out->worst_at = i;
        }
    }
    out->rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
}
