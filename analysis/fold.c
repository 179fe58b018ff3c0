/* Compile-time evaluation of small integer tensors: the shape arithmetic
 * exporters emit (Shape -> Gather -> Add -> Concat -> Reshape). Elements may
 * be symbolic dims; arithmetic keeps them symbolic where the result is a
 * monomial (lp_dim_mul / lp_dim_div) and gives up (unknown) elsewhere, so
 * nothing here guesses. Only integer and bool tensors are evaluated: float
 * arithmetic is left to run time. */
#include "infer_internal.h"

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

/* Little-endian integer of `bytes` bytes, sign-extended when `sign`. */
static int64_t read_le(const uint8_t *p, int bytes, bool sign) {
    uint64_t u = 0;
    for (int i = 0; i < bytes; i++) u |= (uint64_t)p[i] << (8 * i);
    if (sign && bytes < 8 && (u >> (8 * bytes - 1)) & 1) u |= ~(uint64_t)0 << (8 * bytes);
    return (int64_t)u;
}

lp_sval *lp_fold_from_data(lp_arena *a, const lp_value *v) {
    uint64_t numel;
    if (!is_int_type(v->dtype) || v->data.where != LP_DATA_INLINE) return NULL;
    if (!lp_shape_numel(&v->shape, &numel) || numel > LP_FOLD_MAX_ELEMS) return NULL;
    int bytes = lp_dtype_bits(v->dtype) / 8;
    if (bytes <= 0 || v->data.nbytes < numel * (uint64_t)bytes) return NULL;
    bool sign = v->dtype == LP_DT_INT8 || v->dtype == LP_DT_INT16 || v->dtype == LP_DT_INT32 ||
                v->dtype == LP_DT_INT64;
    lp_sval *s = lp_arena_alloc(a, sizeof *s);
    lp_elem *e = lp_arena_array(a, numel ? numel : 1, sizeof *e);
    if (!s || !e) return NULL;
    for (uint64_t i = 0; i < numel; i++) e[i] = lp_elem_num(read_le(v->data.bytes + i * (uint64_t)bytes, bytes, sign));
    s->n = (int)numel;
    s->e = e;
    return s;
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

static lp_elem eval2(lp_arena *a, lp_fold_op op, lp_elem x, lp_elem y) {
    int64_t r;
    bool nums = x.kind == LP_EL_NUM && y.kind == LP_EL_NUM;
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
        if (!nums || y.v == 0 || (x.v == INT64_MIN && y.v == -1)) return elem_unknown();
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
    if (op == LP_FOLD_CAST) {
        if (to == LP_DT_BOOL) return x.kind == LP_EL_NUM ? lp_elem_num(x.v != 0) : elem_unknown();
        return x;
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
    if (!is_int_type(out->dtype) || !lp_shape_numel(&out->shape, &numel) || numel > LP_FOLD_MAX_ELEMS)
        return LP_OK;
    int arity = op == LP_FOLD_WHERE ? 3 : (op <= LP_FOLD_NOT || op == LP_FOLD_CAST) ? 1 : 2;
    if (op == LP_FOLD_CAST ? n->n_inputs < 1 : n->n_inputs != arity) return LP_OK;
    const lp_sval *in[3];
    for (int i = 0; i < arity; i++) {
        const lp_value *v = lp_infer_input(cx, n, i);
        uint64_t cnt;
        in[i] = lp_infer_known(cx, n, i);
        if (!v || !in[i] || !is_int_type(v->dtype) || !lp_shape_numel(&v->shape, &cnt) ||
            cnt != (uint64_t)in[i]->n || v->shape.rank > out->shape.rank)
            return LP_OK;
    }
    lp_elem res[LP_FOLD_MAX_ELEMS];
    int64_t idx[16];
    int rank = out->shape.rank;
    if (rank > 16) return LP_OK;
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
            res[f] = eval2(cx->g->arena, op, x[0], x[1]);
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
    if (!lp_shape_numel(&out->shape, &numel) || numel > LP_FOLD_MAX_ELEMS || rank > 16 ||
        !lp_shape_numel(&in->shape, &cnt) || cnt != (uint64_t)s->n || in->shape.rank > rank)
        return LP_OK;
    lp_elem res[LP_FOLD_MAX_ELEMS];
    int64_t idx[16];
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
