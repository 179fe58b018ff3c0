/* ref_elementwise.c - unary, binary and variadic element-wise ops, Where,
 * Clip and Cast, with numpy broadcasting. */
#include <math.h>

#include "ref_internal.h"

/* Offsets into up to 3 broadcast inputs for output element `i`. */
typedef struct bcast {
    int rank, n;
    const int64_t *dims;
    int64_t strides[3][LP_MAX_RANK];
} bcast;

static lp_status bcast_make(const lp_ref_call *c, bcast *b, const lp_ref_tensor *out,
                            const lp_ref_tensor *const *ins, int n) {
    b->rank = out->rank;
    b->dims = out->dims;
    b->n = n;
    for (int k = 0; k < n; k++)
        if (!lp_ref_bcast_strides(ins[k], out->rank, out->dims, b->strides[k]))
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL,
                               "input %d (rank %d) does not broadcast to the output shape", k,
                               ins[k]->rank);
    return LP_OK;
}

static void bcast_at(const bcast *b, int64_t i, int64_t *off) {
    for (int k = 0; k < b->n; k++) off[k] = 0;
    for (int d = b->rank - 1; d >= 0 && i; d--) {
        int64_t coord = i % b->dims[d];
        i /= b->dims[d];
        for (int k = 0; k < b->n; k++) off[k] += coord * b->strides[k][d];
    }
}

static float gelu(float x, bool tanh_approx) {
    if (tanh_approx) {
        float k = 0.7978845608028654f; /* sqrt(2 / pi) */
        return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    /* 1 + erf(t) = erfc(-t), without the cancellation of 1 + erf for t << 0 */
    return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

lp_status lp_ref_unary(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int64_t n = lp_ref_numel(x);
    if (n != lp_ref_numel(y))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, input %lld",
                           (long long)lp_ref_numel(y), (long long)n);
    bool tanh_approx = false;
    if (c->op == LP_OP_Gelu) {
        const char *a = lp_ref_attr_string(c, "approximate", "none");
        if (strcmp(a, "tanh") == 0) tanh_approx = true;
        else if (strcmp(a, "none") != 0)
            return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "approximate='%s' is not 'none' or 'tanh'", a);
    }
    float alpha = lp_ref_attr_float(c, "alpha", c->op == LP_OP_HardSigmoid ? 0.2f : 0.01f);
    float beta = lp_ref_attr_float(c, "beta", 0.5f);
    if (!lp_ref_is_float(x->dtype)) {
        /* integer and bool inputs: exact int64 arithmetic */
        for (int64_t i = 0; i < n; i++) {
            int64_t v = lp_ref_loadi(x, i), r;
            switch (c->op) {
            case LP_OP_Neg: r = (int64_t)(0 - (uint64_t)v); break;
            case LP_OP_Abs: r = v < 0 ? (int64_t)(0 - (uint64_t)v) : v; break;
            case LP_OP_Sign: r = (v > 0) - (v < 0); break;
            case LP_OP_Relu: r = v > 0 ? v : 0; break;
            case LP_OP_Not: r = !v; break;
            case LP_OP_Floor: case LP_OP_Ceil: r = v; break;
            default:
                return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "input dtype %s is not a float type",
                                   lp_dtype_name(x->dtype));
            }
            lp_ref_storei(y, i, r);
        }
        return LP_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = lp_ref_loadf(x, i), r;
        switch (c->op) {
        case LP_OP_Neg: r = -v; break;
        case LP_OP_Abs: r = fabsf(v); break;
        case LP_OP_Sign: r = (float)((v > 0) - (v < 0)); break;
        case LP_OP_Sqrt: r = sqrtf(v); break;
        case LP_OP_Reciprocal: r = 1.0f / v; break;
        case LP_OP_Exp: r = expf(v); break;
        case LP_OP_Log: r = logf(v); break;
        case LP_OP_Gelu: r = gelu(v, tanh_approx); break;
        case LP_OP_Erf: r = erff(v); break;
        case LP_OP_Tanh: r = tanhf(v); break;
        case LP_OP_Sigmoid: r = v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v)); break;
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
        default:
            return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "input dtype %s is not supported",
                               lp_dtype_name(x->dtype));
        }
        lp_ref_storef(y, i, r);
    }
    return LP_OK;
}

static bool is_compare(int op) {
    return op == LP_OP_Equal || op == LP_OP_Less || op == LP_OP_LessOrEqual ||
           op == LP_OP_Greater || op == LP_OP_GreaterOrEqual;
}

static int64_t ipow(int64_t b, int64_t e) {
    if (e < 0) return b == 1 ? 1 : b == -1 ? (e & 1 ? -1 : 1) : 0;
    uint64_t r = 1, x = (uint64_t)b;
    while (e) {
        if (e & 1) r *= x;
        x *= x;
        e >>= 1;
    }
    return (int64_t)r;
}

lp_status lp_ref_binary(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *ins[2] = {lp_ref_in(c, 0), lp_ref_in(c, 1)};
    lp_ref_tensor *y = lp_ref_out(c, 0);
    bcast b;
    if ((st = bcast_make(c, &b, y, ins, 2)) != LP_OK) return st;
    int op = c->op;
    /* compare and arithmetic in the inputs' domain; Pow follows its base */
    bool fl = lp_ref_is_float(ins[0]->dtype) || (op != LP_OP_Pow && lp_ref_is_float(ins[1]->dtype));
    if (op == LP_OP_Pow && !fl && lp_ref_is_float(ins[1]->dtype)) fl = false;
    int64_t n = lp_ref_numel(y), off[3];
    for (int64_t i = 0; i < n; i++) {
        bcast_at(&b, i, off);
        if (op == LP_OP_And || op == LP_OP_Or || op == LP_OP_Xor) {
            bool p = lp_ref_loadi(ins[0], off[0]) != 0, q = lp_ref_loadi(ins[1], off[1]) != 0;
            lp_ref_storei(y, i, op == LP_OP_And ? p && q : op == LP_OP_Or ? p || q : p != q);
            continue;
        }
        if (fl) {
            float p = lp_ref_loadf(ins[0], off[0]), q = lp_ref_loadf(ins[1], off[1]), r = 0;
            if (is_compare(op)) {
                bool t = op == LP_OP_Equal ? p == q : op == LP_OP_Less ? p < q
                       : op == LP_OP_LessOrEqual ? p <= q : op == LP_OP_Greater ? p > q : p >= q;
                lp_ref_storei(y, i, t);
                continue;
            }
            switch (op) {
            case LP_OP_Add: r = p + q; break;
            case LP_OP_Sub: r = p - q; break;
            case LP_OP_Mul: r = p * q; break;
            case LP_OP_Div: r = p / q; break;
            case LP_OP_Pow: r = powf(p, q); break;
            default: break;
            }
            lp_ref_storef(y, i, r);
        } else {
            int64_t p = lp_ref_loadi(ins[0], off[0]), r = 0;
            if (op == LP_OP_Pow && lp_ref_is_float(ins[1]->dtype)) {
                float q = lp_ref_loadf(ins[1], off[1]);
                lp_ref_storef(y, i, (float)pow((double)p, (double)q));
                continue;
            }
            int64_t q = lp_ref_loadi(ins[1], off[1]);
            if (is_compare(op)) {
                bool t = op == LP_OP_Equal ? p == q : op == LP_OP_Less ? p < q
                       : op == LP_OP_LessOrEqual ? p <= q : op == LP_OP_Greater ? p > q : p >= q;
                lp_ref_storei(y, i, t);
                continue;
            }
            switch (op) {
            case LP_OP_Add: r = (int64_t)((uint64_t)p + (uint64_t)q); break;
            case LP_OP_Sub: r = (int64_t)((uint64_t)p - (uint64_t)q); break;
            case LP_OP_Mul: r = (int64_t)((uint64_t)p * (uint64_t)q); break;
            case LP_OP_Div:
                if (q == 0) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "integer division by zero");
                r = (p == INT64_MIN && q == -1) ? p : p / q;
                break;
            case LP_OP_Pow: r = ipow(p, q); break;
            default: break;
            }
            lp_ref_storei(y, i, r);
        }
    }
    return LP_OK;
}

/* Max, Min, Sum, Mean over any number of inputs, broadcast together. */
lp_status lp_ref_variadic(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int n_in = c->n_inputs;
    bool fl = lp_ref_is_float(y->dtype);
    int64_t n = lp_ref_numel(y), off[3];
    /* fold inputs pairwise into y: acc = y (after the first), next = input k */
    for (int k = 0; k < n_in; k++) {
        const lp_ref_tensor *x = lp_ref_in(c, k);
        if (!x) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", k);
        const lp_ref_tensor *ins[1] = {x};
        bcast b;
        if ((st = bcast_make(c, &b, y, ins, 1)) != LP_OK) return st;
        for (int64_t i = 0; i < n; i++) {
            bcast_at(&b, i, off);
            if (fl) {
                float v = lp_ref_loadf(x, off[0]);
                if (k > 0) {
                    float a = lp_ref_loadf(y, i);
                    switch (c->op) {
                    case LP_OP_Max: v = (isnan(a) || a > v) ? a : v; break;
                    case LP_OP_Min: v = (isnan(a) || a < v) ? a : v; break;
                    default: v = a + v; break;
                    }
                }
                if (c->op == LP_OP_Mean && k == n_in - 1) v /= (float)n_in;
                lp_ref_storef(y, i, v);
            } else {
                int64_t v = lp_ref_loadi(x, off[0]);
                if (k > 0) {
                    int64_t a = lp_ref_loadi(y, i);
                    switch (c->op) {
                    case LP_OP_Max: v = a > v ? a : v; break;
                    case LP_OP_Min: v = a < v ? a : v; break;
                    default: v = (int64_t)((uint64_t)a + (uint64_t)v); break;
                    }
                }
                if (c->op == LP_OP_Mean && k == n_in - 1) v /= n_in;
                lp_ref_storei(y, i, v);
            }
        }
    }
    return LP_OK;
}

lp_status lp_ref_where(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 3, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *ins[3] = {lp_ref_in(c, 0), lp_ref_in(c, 1), lp_ref_in(c, 2)};
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if (ins[1]->dtype != y->dtype || ins[2]->dtype != y->dtype)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "X, Y and output dtypes differ");
    bcast b;
    if ((st = bcast_make(c, &b, y, ins, 3)) != LP_OK) return st;
    size_t es = lp_ref_dtype_size(y->dtype);
    int64_t n = lp_ref_numel(y), off[3];
    for (int64_t i = 0; i < n; i++) {
        bcast_at(&b, i, off);
        if (lp_ref_loadi(ins[0], off[0])) lp_ref_copy_elem(y, i, ins[1], off[1], es);
        else lp_ref_copy_elem(y, i, ins[2], off[2], es);
    }
    return LP_OK;
}

lp_status lp_ref_clip(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0), *lo = lp_ref_in(c, 1), *hi = lp_ref_in(c, 2);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int64_t n = lp_ref_numel(x);
    if (n != lp_ref_numel(y)) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output size differs");
    if ((lo && lp_ref_numel(lo) != 1) || (hi && lp_ref_numel(hi) != 1))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "min and max must be scalars");
    if (lp_ref_is_float(x->dtype)) {
        float a = -INFINITY, b = INFINITY;
        if (c->opset < 11) {
            a = lp_ref_attr_float(c, "min", -INFINITY);
            b = lp_ref_attr_float(c, "max", INFINITY);
        }
        if (lo) a = lp_ref_loadf(lo, 0);
        if (hi) b = lp_ref_loadf(hi, 0);
        for (int64_t i = 0; i < n; i++) {
            float v = lp_ref_loadf(x, i);
            if (v < a) v = a;
            if (v > b) v = b;
            lp_ref_storef(y, i, v);
        }
    } else {
        int64_t a = INT64_MIN, b = INT64_MAX;
        if (lo) a = lp_ref_loadi(lo, 0);
        if (hi) b = lp_ref_loadi(hi, 0);
        for (int64_t i = 0; i < n; i++) {
            int64_t v = lp_ref_loadi(x, i);
            if (v < a) v = a;
            if (v > b) v = b;
            lp_ref_storei(y, i, v);
        }
    }
    return LP_OK;
}

lp_status lp_ref_cast(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int64_t to = lp_ref_attr_int(c, "to", -1);
    if (to != (int64_t)y->dtype)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "attribute to=%lld but the output is %s",
                           (long long)to, lp_dtype_label(y->dtype));
    int64_t n = lp_ref_numel(x);
    if (n != lp_ref_numel(y)) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output size differs");
    bool fx = lp_ref_is_float(x->dtype), fy = lp_ref_is_float(y->dtype);
    for (int64_t i = 0; i < n; i++) {
        if (x->dtype == LP_DT_DOUBLE && y->dtype == LP_DT_DOUBLE)
            ((double *)y->data)[i] = ((const double *)x->data)[i];
        else if (x->dtype == LP_DT_DOUBLE && !fy)
            lp_ref_storei(y, i, y->dtype == LP_DT_BOOL ? ((const double *)x->data)[i] != 0
                                                       : (int64_t)((const double *)x->data)[i]);
        else if (fx) lp_ref_storef(y, i, lp_ref_loadf(x, i));
        else if (y->dtype == LP_DT_DOUBLE) ((double *)y->data)[i] = (double)lp_ref_loadi(x, i);
        else if (fy) lp_ref_storef(y, i, (float)lp_ref_loadi(x, i));
        else lp_ref_storei(y, i, lp_ref_loadi(x, i));
    }
    return LP_OK;
}
