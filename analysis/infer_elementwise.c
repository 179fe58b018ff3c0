/* Shape rules of elementwise ops: unary maps, numpy-broadcasting binary and
 * variadic ops, comparisons, Where, Cast. */
#include "infer_internal.h"

lp_status lp_infer_unary(lp_infer *cx, const lp_node *n) { return lp_infer_same(cx, n, 0, 0); }

lp_status lp_infer_unary_bool(lp_infer *cx, const lp_node *n) {
    const lp_value *x = lp_infer_input(cx, n, 0);
    if (!x) return lp_infer_bad(cx, n, "input 0 is required");
    return lp_infer_output(cx, n, 0, LP_DT_BOOL, x->shape.rank, x->shape.dims);
}

/* Broadcasts all present inputs from `first` on into output 0 with dtype dt. */
static lp_status broadcast_inputs(lp_infer *cx, const lp_node *n, int first, lp_dtype dt) {
    int rank = 0;
    for (int i = first; i < n->n_inputs; i++) {
        const lp_value *v = lp_infer_input(cx, n, i);
        if (v && v->shape.rank > rank) rank = v->shape.rank;
    }
    lp_dim *dims = lp_infer_dims(cx, rank);
    if (!dims) return LP_ERR_INTERNAL;
    for (int k = 0; k < rank; k++) dims[k] = lp_dim_num(1);
    for (int i = first; i < n->n_inputs; i++) {
        const lp_value *v = lp_infer_input(cx, n, i);
        if (!v) continue;
        int off = rank - v->shape.rank;
        for (int k = 0; k < v->shape.rank; k++) {
            lp_dim b;
            if (!lp_dim_broadcast(dims[off + k], v->shape.dims[k], &b))
                return lp_infer_bad(cx, n, "input %d ('%s') does not broadcast: axis %d is %lld, "
                                    "the other inputs have %lld", i, v->name, k,
                                    (long long)v->shape.dims[k].size, (long long)dims[off + k].size);
            dims[off + k] = b;
        }
    }
    return lp_infer_output(cx, n, 0, dt, rank, dims);
}

lp_status lp_infer_broadcast(lp_infer *cx, const lp_node *n) {
    const lp_value *x = lp_infer_input(cx, n, 0);
    if (!x) return lp_infer_bad(cx, n, "input 0 is required");
    return broadcast_inputs(cx, n, 0, x->dtype);
}

lp_status lp_infer_compare(lp_infer *cx, const lp_node *n) { return broadcast_inputs(cx, n, 0, LP_DT_BOOL); }

lp_status lp_infer_where(lp_infer *cx, const lp_node *n) {
    const lp_value *x = lp_infer_input(cx, n, 1);
    if (!x || n->n_inputs != 3) return lp_infer_bad(cx, n, "Where needs 3 inputs");
    return broadcast_inputs(cx, n, 0, x->dtype);
}

lp_status lp_infer_cast(lp_infer *cx, const lp_node *n) {
    const lp_value *x = lp_infer_input(cx, n, 0);
    if (!x) return lp_infer_bad(cx, n, "input 0 is required");
    lp_dtype to;
    if (n->n_inputs >= 2) {
        to = lp_infer_input(cx, n, 1)->dtype;
    } else {
        int64_t t = lp_node_attr_int(n, "to", -1);
        if (t <= 0 || t >= LP_DT_COUNT || !lp_dtype_name((lp_dtype)t))
            return lp_infer_bad(cx, n, "attribute 'to' is missing or not a data type (%lld)", (long long)t);
        to = (lp_dtype)t;
    }
    return lp_infer_output(cx, n, 0, to, x->shape.rank, x->shape.dims);
}

lp_status lp_infer_dropout(lp_infer *cx, const lp_node *n) {
    lp_status st = lp_infer_same(cx, n, 0, 0);
    const lp_value *x = lp_infer_input(cx, n, 0);
    if (st == LP_OK && n->n_outputs > 1) st = lp_infer_output(cx, n, 1, LP_DT_BOOL, x->shape.rank, x->shape.dims);
    return st;
}
