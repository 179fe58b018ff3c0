/* Compile-time evaluation of small integer tensors: the shape arithmetic
 * exporters emit (Shape -> Gather -> Add -> Concat -> Reshape). Elements may
 * be symbolic dims; arithmetic keeps them symbolic where the result is a
 * monomial (lp_dim_mul / lp_dim_div) and gives up (unknown) elsewhere, so
 * nothing here guesses. Integer and bool tensors are evaluated, and float
 * tensors element by element where an element holds an integer the float
 * type represents exactly (a size cast to float for an anchor grid); any
 * other float element is unknown, so float arithmetic never rounds here. */
#include "infer_internal.h"

#include <math.h>
#include <string.h>

lp_elem lp_elem_num(int64_t v) {
    lp_elem e = {.kind = LP_EL_NUM, .v = v, .sym = NULL};
    return e;
}

static lp_elem elem_unknown(void) {
    lp_elem e = {.kind = LP_EL_UNKNOWN, .v = 0, .sym = NULL};
    return e;
}

lp_elem lp_elem_from_dim(lp_dim d) {
    if (lp_dim_is_num(d)) return lp_elem_num(d.size);
    if (!d.sym) return elem_unknown();
    lp_elem e = {.kind = LP_EL_SYM, .v = 0, .sym = d.sym};
    return e;
}

lp_dim lp_elem_to_dim(lp_elem e) {
    if (e.kind == LP_EL_NUM) return e.v >= 0 ? lp_dim_num(e.v) : lp_dim_unknown();
    lp_dim d = {.size = LP_DIM_UNKNOWN, .sym = e.kind == LP_EL_SYM ? e.sym : NULL};
    return d;
}

static bool is_int_type(lp_dtype t) {
    switch (t) {
    case LP_DT_INT8: case LP_DT_INT16: case LP_DT_INT32: case LP_DT_INT64: case LP_DT_UINT8:
    case LP_DT_UINT16: case LP_DT_UINT32: case LP_DT_UINT64: case LP_DT_BOOL: return true;
    default: return false;
    }
}

/* The largest integer magnitude below which every integer is exact in a
 * float type (2^mantissa bits); 0 for types that are not tracked. */
static int64_t float_exact_limit(lp_dtype t) {
    switch (t) {
    case LP_DT_FLOAT: return (int64_t)1 << 24;
    case LP_DT_DOUBLE: return (int64_t)1 << 53;
    case LP_DT_FLOAT16: return (int64_t)1 << 11;
    case LP_DT_BFLOAT16: return (int64_t)1 << 8;
    default: return 0;
    }
}

bool lp_fold_tracked(lp_dtype t) { return is_int_type(t) || float_exact_limit(t) > 0; }

/* A number stored in a float of type t: kept only while exact. */
static lp_elem float_clamp(lp_elem e, lp_dtype t) {
    int64_t lim = float_exact_limit(t);
    if (e.kind == LP_EL_FRAC && (!lim || e.den > lim)) e.kind = LP_EL_UNKNOWN;
    if (lim && e.kind != LP_EL_SYM && (e.v > lim || e.v < -lim)) e.kind = LP_EL_UNKNOWN;
    return e;
}

static double half_bits(uint16_t h, bool bf16) {
    if (bf16) {
        uint32_t w = (uint32_t)h << 16;
        float f;
        memcpy(&f, &w, sizeof f);
        return f;
    }
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return h >> 15 ? -v : v;
}

/* One float element: a number when it is an integer within the exact range. */
static lp_elem float_elem(const uint8_t *p, lp_dtype t) {
    double v;
    if (t == LP_DT_FLOAT) {
        float f;
        memcpy(&f, p, sizeof f);
        v = f;
    } else if (t == LP_DT_DOUBLE) {
        memcpy(&v, p, sizeof v);
    } else {
        v = half_bits((uint16_t)(p[0] | p[1] << 8), t == LP_DT_BFLOAT16);
    }
    double lim = (double)float_exact_limit(t);
    if (!(v >= -lim && v <= lim) || v != floor(v)) return elem_unknown();
    return lp_elem_num((int64_t)v);
}

/* Little-endian integer of `bytes` bytes, sign-extended when `sign`. */
static int64_t read_le(const uint8_t *p, int bytes, bool sign) {
    uint64_t u = 0;
    for (int i = 0; i < bytes; i++) u |= (uint64_t)p[i] << (8 * i);
    if (sign && bytes < 8 && (u >> (8 * bytes - 1)) & 1) u |= ~(uint64_t)0 << (8 * bytes);
    return (int64_t)u;
}

lp_sval *lp_fold_from_data(lp_arena *a, const lp_value *v) {
    uint64_t numel;
    if (!lp_fold_tracked(v->dtype) || v->data.where != LP_DATA_INLINE) return NULL;
    if (!lp_shape_numel(&v->shape, &numel) || numel > LP_FOLD_MAX_ELEMS) return NULL;
    int bytes = lp_dtype_bits(v->dtype) / 8;
    if (bytes <= 0 || v->data.nbytes < numel * (uint64_t)bytes) return NULL;
    bool sign = v->dtype == LP_DT_INT8 || v->dtype == LP_DT_INT16 || v->dtype == LP_DT_INT32 ||
                v->dtype == LP_DT_INT64;
    lp_sval *s = lp_arena_alloc(a, sizeof *s);
    lp_elem *e = lp_arena_array(a, numel ? numel : 1, sizeof *e);
    if (!s || !e) return NULL;
    bool flt = float_exact_limit(v->dtype) > 0;
    for (uint64_t i = 0; i < numel; i++) {
        const uint8_t *p = v->data.bytes + i * (uint64_t)bytes;
        e[i] = flt ? float_elem(p, v->dtype) : lp_elem_num(read_le(p, bytes, sign));
    }
    s->n = (int)numel;
    s->e = e;
    return s;
}

/* ---- fractions in float tensors ---------------------------------------------------
 * A quotient of two exact integers a / b (|a|, |b| within the float type's
 * exact range) is kept as a fraction. Floor, Ceil, Round and a Cast to an
 * integer of it are exact: the float quotient, correctly rounded, cannot
 * reach the next integer. Further arithmetic on a fraction is exact only
 * when its denominator is a power of two (the float holds it exactly), so
 * other fractions become unknown there. */

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* v / den in lowest terms: a number when den divides v; unknown when den
 * is 0 or a value overflows. */
static lp_elem make_frac(int64_t v, int64_t den) {
    if (den == 0 || v == INT64_MIN || den == INT64_MIN) return elem_unknown();
    if (den < 0) {
        v = -v;
        den = -den;
    }
    int64_t g = gcd64(v, den);
    if (g > 1) {
        v /= g;
        den /= g;
    }
    if (den == 1) return lp_elem_num(v);
    lp_elem e = {.kind = LP_EL_FRAC, .v = v, .sym = NULL, .den = den};
    return e;
}

static bool is_rational(lp_elem e) { return e.kind == LP_EL_NUM || e.kind == LP_EL_FRAC; }
static int64_t den_of(lp_elem e) { return e.kind == LP_EL_FRAC ? e.den : 1; }
static bool exact_binary(lp_elem e) { return e.kind != LP_EL_FRAC || (e.den & (e.den - 1)) == 0; }

/* Float arithmetic on numbers and fractions, exact or unknown. */
static lp_elem eval_frac(lp_fold_op op, lp_elem x, lp_elem y) {
    int64_t a = x.v, b = den_of(x), c = y.v, d = den_of(y), p, q, r;
    if ((op != LP_FOLD_DIV || x.kind == LP_EL_FRAC || y.kind == LP_EL_FRAC) &&
        (!exact_binary(x) || !exact_binary(y)))
        return elem_unknown();
    switch (op) {
    case LP_FOLD_ADD:
    case LP_FOLD_SUB:
        if (__builtin_mul_overflow(a, d, &p) || __builtin_mul_overflow(c, b, &q) ||
            __builtin_mul_overflow(b, d, &r))
            return elem_unknown();
        if (op == LP_FOLD_ADD ? __builtin_add_overflow(p, q, &p) : __builtin_sub_overflow(p, q, &p))
            return elem_unknown();
        return make_frac(p, r);
    case LP_FOLD_MUL:
        if (__builtin_mul_overflow(a, c, &p) || __builtin_mul_overflow(b, d, &r)) return elem_unknown();
        return make_frac(p, r);
    case LP_FOLD_DIV:
        if (__builtin_mul_overflow(a, d, &p) || __builtin_mul_overflow(b, c, &r)) return elem_unknown();
        return make_frac(p, r);
    case LP_FOLD_MAX:
    case LP_FOLD_MIN:
    case LP_FOLD_EQ: case LP_FOLD_LT: case LP_FOLD_LE: case LP_FOLD_GT: case LP_FOLD_GE: {
        if (__builtin_mul_overflow(a, d, &p) || __builtin_mul_overflow(c, b, &q)) return elem_unknown();
        switch (op) {
        case LP_FOLD_MAX: return p >= q ? x : y;
        case LP_FOLD_MIN: return p <= q ? x : y;
        case LP_FOLD_EQ: return lp_elem_num(p == q);
        case LP_FOLD_LT: return lp_elem_num(p < q);
        case LP_FOLD_LE: return lp_elem_num(p <= q);
        case LP_FOLD_GT: return lp_elem_num(p > q);
        default: return lp_elem_num(p >= q);
        }
    }
    default: return elem_unknown();
    }
}

/* Floor, Ceil, Round (half to even) and truncation of a fraction. */
static lp_elem round_frac(lp_fold_op op, lp_elem x) {
    if (x.kind != LP_EL_FRAC) return x;
    int64_t q = x.v / x.den, r = x.v % x.den; /* truncated */
    int64_t fl = r < 0 ? q - 1 : q;
    switch (op) {
    case LP_FOLD_FLOOR: return lp_elem_num(fl);
    case LP_FOLD_CEIL: return lp_elem_num(fl + 1);
    case LP_FOLD_ROUND: {
        /* compare the remainder above the floor with one half */
        int64_t rem = x.v - fl * x.den, twice = 2 * rem;
        if (twice < x.den) return lp_elem_num(fl);
        if (twice > x.den) return lp_elem_num(fl + 1);
        return lp_elem_num(fl % 2 == 0 ? fl : fl + 1);
    }
    default: return lp_elem_num(q);
    }
}

/* ---- one element ------------------------------------------------------------ */

static lp_elem num_or_unknown(bool overflow, const int64_t *v) {
    return overflow ? elem_unknown() : lp_elem_num(*v);
}

static lp_elem sym_result(lp_dim d) { return lp_elem_from_dim(d); }

/* A symbolic comparison is decided only for identical symbols. */
static lp_elem compare(lp_fold_op op, lp_elem x, lp_elem y) {
    if (x.kind == LP_EL_NUM && y.kind == LP_EL_NUM) {
        switch (op) {
        case LP_FOLD_EQ: return lp_elem_num(x.v == y.v);
        case LP_FOLD_LT: return lp_elem_num(x.v < y.v);
        case LP_FOLD_LE: return lp_elem_num(x.v <= y.v);
        case LP_FOLD_GT: return lp_elem_num(x.v > y.v);
        case LP_FOLD_GE: return lp_elem_num(x.v >= y.v);
        default: break;
        }
    }
    if (x.kind == LP_EL_SYM && y.kind == LP_EL_SYM && strcmp(x.sym, y.sym) == 0)
        return lp_elem_num(op == LP_FOLD_EQ || op == LP_FOLD_LE || op == LP_FOLD_GE);
    return elem_unknown();
}

/* `flt`: the result is a float, so Div is exact division (7/2 is not an
 * integer: unknown) rather than truncation, and Mod is left unknown. */
static lp_elem eval2(lp_arena *a, lp_fold_op op, lp_elem x, lp_elem y, bool flt) {
    int64_t r;
    bool nums = x.kind == LP_EL_NUM && y.kind == LP_EL_NUM;
    if (flt && is_rational(x) && is_rational(y) && (!nums || op == LP_FOLD_DIV)) return eval_frac(op, x, y);
    if (x.kind == LP_EL_FRAC || y.kind == LP_EL_FRAC) return elem_unknown();
    lp_dim dx = lp_elem_to_dim(x), dy = lp_elem_to_dim(y);
    switch (op) {
    case LP_FOLD_ADD:
        if (nums) return num_or_unknown(__builtin_add_overflow(x.v, y.v, &r), &r);
        return sym_result(lp_dim_add(dx, dy));
    case LP_FOLD_SUB:
        if (nums) return num_or_unknown(__builtin_sub_overflow(x.v, y.v, &r), &r);
        return sym_result(lp_dim_sub(dx, dy));
    case LP_FOLD_MUL:
        if (nums) return num_or_unknown(__builtin_mul_overflow(x.v, y.v, &r), &r);
        return sym_result(lp_dim_mul(a, dx, dy));
    case LP_FOLD_DIV:
        /* ONNX integer Div truncates toward zero, as C does */
        if (nums) {
            if (y.v == 0 || (x.v == INT64_MIN && y.v == -1)) return elem_unknown();
            return lp_elem_num(x.v / y.v);
        }
        return sym_result(lp_dim_div(a, dx, dy));
    case LP_FOLD_MOD:
        if (flt || !nums || y.v == 0 || (x.v == INT64_MIN && y.v == -1)) return elem_unknown();
        /* fmod=0: the sign follows the divisor */
        r = x.v % y.v;
        return lp_elem_num(r != 0 && ((r < 0) != (y.v < 0)) ? r + y.v : r);
    case LP_FOLD_MAX:
    case LP_FOLD_MIN:
        if (nums) return lp_elem_num(op == LP_FOLD_MAX ? (x.v > y.v ? x.v : y.v) : (x.v < y.v ? x.v : y.v));
        if (x.kind == LP_EL_SYM && y.kind == LP_EL_SYM && strcmp(x.sym, y.sym) == 0) return x;
        /* a dim is >= 0: max(dim, 0) = dim, min(dim, 0) = 0 */
        if (x.kind == LP_EL_NUM && x.v <= 0 && y.kind == LP_EL_SYM) return op == LP_FOLD_MAX ? y : x;
        if (y.kind == LP_EL_NUM && y.v <= 0 && x.kind == LP_EL_SYM) return op == LP_FOLD_MAX ? x : y;
        return elem_unknown();
    case LP_FOLD_AND: return nums ? lp_elem_num(x.v && y.v) : elem_unknown();
    case LP_FOLD_OR: return nums ? lp_elem_num(x.v || y.v) : elem_unknown();
    case LP_FOLD_XOR: return nums ? lp_elem_num(!x.v != !y.v) : elem_unknown();
    default: return compare(op, x, y);
    }
}

static lp_elem eval1(lp_fold_op op, lp_elem x, lp_dtype to) {
    if (op == LP_FOLD_ID) return x;
    if (op == LP_FOLD_FLOOR || op == LP_FOLD_CEIL || op == LP_FOLD_ROUND) return round_frac(op, x);
    if (op == LP_FOLD_CAST) {
        if (to == LP_DT_BOOL) return is_rational(x) ? lp_elem_num(x.v != 0) : elem_unknown();
        /* to an integer type truncates; to a float type keeps the value */
        return float_exact_limit(to) ? x : round_frac(LP_FOLD_CAST, x);
    }
    if (x.kind == LP_EL_FRAC) {
        if (op == LP_FOLD_NEG) return make_frac(-x.v, x.den);
        if (op == LP_FOLD_ABS) return make_frac(x.v < 0 ? -x.v : x.v, x.den);
        if (op == LP_FOLD_SIGN) return lp_elem_num((x.v > 0) - (x.v < 0));
        return elem_unknown();
    }
    if (x.kind != LP_EL_NUM) return elem_unknown();
    switch (op) {
    case LP_FOLD_NEG: return x.v == INT64_MIN ? elem_unknown() : lp_elem_num(-x.v);
    case LP_FOLD_ABS: return x.v == INT64_MIN ? elem_unknown() : lp_elem_num(x.v < 0 ? -x.v : x.v);
    case LP_FOLD_SIGN: return lp_elem_num((x.v > 0) - (x.v < 0));
    case LP_FOLD_NOT: return lp_elem_num(!x.v);
    default: return elem_unknown();
    }
}

/* ---- whole tensors with broadcasting ------------------------------------------ */

/* Flat index into an input of shape `in` (right-aligned against the
 * output's rank) for the output's multi-index `idx`. */
static int64_t broadcast_index(const int64_t *idx, int out_rank, const lp_shape *in) {
    int64_t flat = 0;
    for (int k = 0; k < in->rank; k++) {
        int64_t size = in->dims[k].size;
        int64_t i = size == 1 ? 0 : idx[out_rank - in->rank + k];
        flat = flat * size + i;
    }
    return flat;
}

lp_status lp_fold_elementwise(lp_infer *cx, const lp_node *n, lp_fold_op op) {
    if (n->n_outputs < 1 || n->outputs[0] < 0) return LP_OK;
    const lp_value *out = &cx->g->values[n->outputs[0]];
    uint64_t numel;
    if (!lp_fold_tracked(out->dtype) || !lp_shape_numel(&out->shape, &numel) || numel > LP_FOLD_MAX_ELEMS)
        return LP_OK;
    bool flt = float_exact_limit(out->dtype) > 0;
    int arity = op == LP_FOLD_WHERE ? 3 : (op <= LP_FOLD_NOT || op >= LP_FOLD_CAST) ? 1 : 2;
    if (op == LP_FOLD_CAST ? n->n_inputs < 1 : n->n_inputs != arity) return LP_OK;
    const lp_sval *in[3];
    for (int i = 0; i < arity; i++) {
        const lp_value *v = lp_infer_input(cx, n, i);
        uint64_t cnt;
        in[i] = lp_infer_known(cx, n, i);
        if (!v || !in[i] || !lp_fold_tracked(v->dtype) || !lp_shape_numel(&v->shape, &cnt) ||
            cnt != (uint64_t)in[i]->n || v->shape.rank > out->shape.rank)
            return LP_OK;
    }
    lp_elem res[LP_FOLD_MAX_ELEMS];
    int64_t idx[LP_MAX_RANK];
    int rank = out->shape.rank;
    if (rank > LP_MAX_RANK) return LP_OK;
    for (uint64_t f = 0; f < numel; f++) {
        uint64_t rest = f;
        for (int k = rank - 1; k >= 0; k--) {
            idx[k] = (int64_t)(rest % (uint64_t)out->shape.dims[k].size);
            rest /= (uint64_t)out->shape.dims[k].size;
        }
        lp_elem x[3];
        for (int i = 0; i < arity; i++) x[i] = in[i]->e[broadcast_index(idx, rank, &lp_infer_input(cx, n, i)->shape)];
        if (op == LP_FOLD_WHERE)
            res[f] = x[0].kind == LP_EL_NUM ? (x[0].v ? x[1] : x[2]) : elem_unknown();
        else if (arity == 1)
            res[f] = eval1(op, x[0], out->dtype);
        else
            res[f] = eval2(cx->g->arena, op, x[0], x[1], flt);
        res[f] = float_clamp(res[f], out->dtype);
    }
    return lp_infer_set_known(cx, n, 0, (int)numel, res);
}

lp_status lp_fold_broadcast_copy(lp_infer *cx, const lp_node *n, int i) {
    const lp_value *in = lp_infer_input(cx, n, i);
    const lp_sval *s = lp_infer_known(cx, n, i);
    if (n->n_outputs < 1 || n->outputs[0] < 0 || !in || !s) return LP_OK;
    const lp_value *out = &cx->g->values[n->outputs[0]];
    uint64_t numel, cnt;
    int rank = out->shape.rank;
    if (!lp_shape_numel(&out->shape, &numel) || numel > LP_FOLD_MAX_ELEMS || rank > LP_MAX_RANK ||
        !lp_shape_numel(&in->shape, &cnt) || cnt != (uint64_t)s->n || in->shape.rank > rank)
        return LP_OK;
    lp_elem res[LP_FOLD_MAX_ELEMS];
    int64_t idx[LP_MAX_RANK];
    for (uint64_t f = 0; f < numel; f++) {
        uint64_t rest = f;
        for (int k = rank - 1; k >= 0; k--) {
            idx[k] = (int64_t)(rest % (uint64_t)out->shape.dims[k].size);
            rest /= (uint64_t)out->shape.dims[k].size;
        }
        res[f] = s->e[broadcast_index(idx, rank, &in->shape)];
    }
    return lp_infer_set_known(cx, n, 0, (int)numel, res);
}

/* ---- data movement on N-D tensors ------------------------------------------------ */

bool lp_fold_layout(const lp_value *v, const lp_sval *s, int64_t *dims, int64_t *strides) {
    uint64_t numel;
    if (!v || !s || v->shape.rank > LP_MAX_RANK || !lp_shape_numel(&v->shape, &numel) ||
        numel != (uint64_t)s->n)
        return false;
    int64_t st = 1;
    for (int k = v->shape.rank - 1; k >= 0; k--) {
        dims[k] = v->shape.dims[k].size;
        strides[k] = st;
        st *= dims[k] ? dims[k] : 1;
    }
    return true;
}

lp_status lp_fold_map(lp_infer *cx, const lp_node *n, int i, lp_fold_pick pick, void *ctx) {
    if (i >= n->n_outputs || n->outputs[i] < 0) return LP_OK;
    const lp_value *out = &cx->g->values[n->outputs[i]];
    uint64_t numel;
    int rank = out->shape.rank;
    if (!lp_fold_tracked(out->dtype) || rank > LP_MAX_RANK || !lp_shape_numel(&out->shape, &numel) ||
        numel > LP_FOLD_MAX_ELEMS)
        return LP_OK;
    lp_elem res[LP_FOLD_MAX_ELEMS];
    int64_t idx[LP_MAX_RANK];
    for (uint64_t f = 0; f < numel; f++) {
        uint64_t rest = f;
        for (int k = rank - 1; k >= 0; k--) {
            idx[k] = (int64_t)(rest % (uint64_t)out->shape.dims[k].size);
            rest /= (uint64_t)out->shape.dims[k].size;
        }
        if (!pick(idx, ctx, &res[f])) return LP_OK;
    }
    return lp_infer_set_known(cx, n, i, (int)numel, res);
}
