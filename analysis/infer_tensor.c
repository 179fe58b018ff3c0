/* Shape rules of the ops that move data around without arithmetic: Shape,
 * Gather, Slice, Concat, Reshape, Expand, ... Most also carry known values
 * through, which is how shape subgraphs fold at compile time. */
#include "infer_internal.h"

#include <math.h>
#include <string.h>

#define MAXL LP_FOLD_MAX_ELEMS

static const lp_value *need(lp_infer *cx, const lp_node *n, int i, lp_status *st) {
    const lp_value *v = lp_infer_input(cx, n, i);
    if (!v) *st = lp_infer_bad(cx, n, "input %d is required", i);
    return v;
}

/* Known values of input i are passed through to output 0 unchanged. */
static lp_status pass_known(lp_infer *cx, const lp_node *n, int i) {
    const lp_sval *s = lp_infer_known(cx, n, i);
    return s ? lp_infer_set_known(cx, n, 0, s->n, s->e) : LP_OK;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

lp_status lp_infer_Shape(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank;
    int64_t start = lp_node_attr_int(n, "start", 0), end = lp_node_attr_int(n, "end", r);
    start = clamp64(start < 0 ? start + r : start, 0, r);
    end = clamp64(end < 0 ? end + r : end, 0, r);
    int len = end > start ? (int)(end - start) : 0;
    lp_dim d = lp_dim_num(len);
    if ((st = lp_infer_output(cx, n, 0, LP_DT_INT64, 1, &d)) != LP_OK) return st;
    if (len > MAXL) return LP_OK;
    lp_elem e[MAXL];
    for (int k = 0; k < len; k++) e[k] = lp_elem_from_dim(x->shape.dims[start + k]);
    return lp_infer_set_known(cx, n, 0, len, e);
}

lp_status lp_infer_Size(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    if ((st = lp_infer_output(cx, n, 0, LP_DT_INT64, 0, NULL)) != LP_OK) return st;
    lp_elem e = lp_elem_from_dim(lp_dim_product(cx->g->arena, x->shape.dims, x->shape.rank));
    return lp_infer_set_known(cx, n, 0, 1, &e);
}

/* Gather on known values: output index (data's axes before `axis`, the
 * indices' axes, data's axes after) picks data at the index's value. */
typedef struct gather_fold {
    const lp_sval *xs, *is;
    int64_t xd[LP_MAX_RANK], xst[LP_MAX_RANK], id[LP_MAX_RANK], ist[LP_MAX_RANK];
    int r, q, axis;
    bool bad;
} gather_fold;

static bool gather_pick(const int64_t *idx, void *ctx, lp_elem *out) {
    gather_fold *g = ctx;
    int64_t xf = 0, jf = 0;
    for (int k = 0; k < g->q; k++) jf += idx[g->axis + k] * g->ist[k];
    lp_elem j = g->is->e[jf];
    if (j.kind != LP_EL_NUM) return false;
    int64_t at = j.v < 0 ? j.v + g->xd[g->axis] : j.v;
    if (at < 0 || at >= g->xd[g->axis]) {
        g->bad = true;
        return false;
    }
    for (int k = 0; k < g->r; k++) {
        int64_t ik = k < g->axis ? idx[k] : k == g->axis ? at : idx[k + g->q - 1];
        xf += ik * g->xst[k];
    }
    *out = g->xs->e[xf];
    return true;
}

static lp_status fold_gather(lp_infer *cx, const lp_node *n, int axis) {
    gather_fold g = {.xs = lp_infer_known(cx, n, 0), .is = lp_infer_known(cx, n, 1), .axis = axis};
    const lp_value *x = lp_infer_input(cx, n, 0), *idx = lp_infer_input(cx, n, 1);
    if (!lp_fold_layout(x, g.xs, g.xd, g.xst) || !lp_fold_layout(idx, g.is, g.id, g.ist)) return LP_OK;
    g.r = x->shape.rank;
    g.q = idx->shape.rank;
    lp_status st = lp_fold_map(cx, n, 0, gather_pick, &g);
    if (st == LP_OK && g.bad) {
        cx->known[n->outputs[0]] = NULL;
        return lp_infer_bad(cx, n, "an index is out of range for axis %d of %lld elements", axis,
                            (long long)g.xd[axis]);
    }
    return st;
}

lp_status lp_infer_Gather(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *idx = need(cx, n, 1, &st);
    if (!x || !idx) return st;
    int axis, r = x->shape.rank, q = idx->shape.rank;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", 0), r, &axis)) != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, r + q - 1);
    if (!d) return LP_ERR_INTERNAL;
    int o = 0;
    for (int k = 0; k < axis; k++) d[o++] = x->shape.dims[k];
    for (int k = 0; k < q; k++) d[o++] = idx->shape.dims[k];
    for (int k = axis + 1; k < r; k++) d[o++] = x->shape.dims[k];
    if ((st = lp_infer_output(cx, n, 0, x->dtype, o, d)) != LP_OK) return st;
    return fold_gather(cx, n, axis);
}

lp_status lp_infer_GatherElements(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *idx = need(cx, n, 1, &st);
    if (!x || !idx) return st;
    if (x->shape.rank != idx->shape.rank)
        return lp_infer_bad(cx, n, "data has rank %d but indices rank %d", x->shape.rank, idx->shape.rank);
    return lp_infer_output(cx, n, 0, x->dtype, idx->shape.rank, idx->shape.dims);
}

lp_status lp_infer_GatherND(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *idx = need(cx, n, 1, &st);
    if (!x || !idx) return st;
    int b = (int)lp_node_attr_int(n, "batch_dims", 0), q = idx->shape.rank, r = x->shape.rank;
    if (q < 1) return lp_infer_bad(cx, n, "indices must have rank >= 1");
    lp_dim last = idx->shape.dims[q - 1];
    if (!lp_dim_is_num(last)) return lp_infer_output(cx, n, 0, x->dtype, LP_RANK_UNKNOWN, NULL);
    if (b < 0 || b + last.size > r) return lp_infer_bad(cx, n, "indices' last dim %lld is too large", (long long)last.size);
    int rank = q - 1 + r - b - (int)last.size;
    lp_dim *d = lp_infer_dims(cx, rank);
    if (!d) return LP_ERR_INTERNAL;
    int o = 0;
    for (int k = 0; k < q - 1; k++) d[o++] = idx->shape.dims[k];
    for (int k = b + (int)last.size; k < r; k++) d[o++] = x->shape.dims[k];
    return lp_infer_output(cx, n, 0, x->dtype, o, d);
}

/* One sliced axis: elements of [start, end) by step over a dim; symbolic
 * dims are kept only for the whole-axis slice. */
static lp_dim slice_dim(lp_dim dim, lp_elem start, lp_elem end, int64_t step) {
    const int64_t big = INT64_MAX / 4;
    if (start.kind == LP_EL_NUM && end.kind == LP_EL_NUM && lp_dim_is_num(dim)) {
        int64_t s = start.v, e = end.v, len = dim.size;
        if (s < 0) s += len;
        if (e < 0) e += len;
        /* ceil(span / |step|) as 1 + (span - 1) / |step|: no overflow for any
         * step, INT64_MIN included */
        if (step > 0) {
            s = clamp64(s, 0, len);
            e = clamp64(e, 0, len);
            return lp_dim_num(e > s ? 1 + (int64_t)((uint64_t)(e - s - 1) / (uint64_t)step) : 0);
        }
        /* ONNX clamps a negative step's start to [0, len-1] (not numpy's
         * [-1, len-1]): x[-5:-10:-1] of 3 elements is {x[0]} */
        if (len == 0) return lp_dim_num(0);
        s = clamp64(s, 0, len - 1);
        e = clamp64(e, -1, len - 1);
        return lp_dim_num(s > e ? 1 + (int64_t)((uint64_t)(s - e - 1) / (0 - (uint64_t)step)) : 0);
    }
    if (step == 1 && start.kind == LP_EL_NUM && start.v == 0) {
        if (end.kind == LP_EL_NUM && end.v >= big) return dim;
        if (end.kind == LP_EL_SYM && lp_dim_same(lp_elem_to_dim(end), dim)) return dim;
        if (end.kind == LP_EL_SYM && lp_dim_is_num(dim)) return lp_dim_unknown();
        if (end.kind == LP_EL_NUM && end.v >= 0 && !lp_dim_is_num(dim)) return lp_dim_unknown();
    }
    return lp_dim_unknown();
}

static bool elems_of(const lp_infer *cx, const lp_node *n, int i, const lp_sval **out) {
    *out = lp_infer_known(cx, n, i);
    return *out != NULL;
}

typedef struct slice_fold {
    const lp_sval *xs;
    int64_t xd[LP_MAX_RANK], xst[LP_MAX_RANK], start[LP_MAX_RANK], step[LP_MAX_RANK];
    int r;
} slice_fold;

static bool slice_pick(const int64_t *idx, void *ctx, lp_elem *out) {
    const slice_fold *f = ctx;
    int64_t flat = 0;
    for (int k = 0; k < f->r; k++) flat += (f->start[k] + idx[k] * f->step[k]) * f->xst[k];
    *out = f->xs->e[flat];
    return true;
}

lp_status lp_infer_Slice(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, cnt = 0;
    lp_elem starts[MAXL], ends[MAXL];
    int64_t axes[MAXL], steps[MAXL];
    const lp_attr *sa = lp_node_attr(n, "starts");
    if (sa) { /* opset < 10: attributes */
        const lp_attr *ea = lp_node_attr(n, "ends"), *aa = lp_node_attr(n, "axes");
        if (!ea || ea->n != sa->n || sa->n > MAXL) return lp_infer_bad(cx, n, "starts and ends differ in length");
        cnt = sa->n;
        for (int k = 0; k < cnt; k++) {
            starts[k] = lp_elem_num(sa->ints[k]);
            ends[k] = lp_elem_num(ea->ints[k]);
            axes[k] = aa && aa->n == cnt ? aa->ints[k] : k;
            steps[k] = 1;
        }
    } else {
        const lp_sval *ss, *es;
        if (!elems_of(cx, n, 1, &ss) || !elems_of(cx, n, 2, &es) || ss->n != es->n) {
            /* bounds computed at run time: only the rank is known */
            lp_dim *d = lp_infer_dims(cx, r);
            if (!d) return LP_ERR_INTERNAL;
            for (int k = 0; k < r; k++) d[k] = lp_dim_unknown();
            return lp_infer_output(cx, n, 0, x->dtype, r, d);
        }
        cnt = ss->n;
        int na = 0, ns = 0;
        lp_list_state as = lp_infer_int_list(cx, n, NULL, 3, axes, MAXL, &na);
        lp_list_state ps = lp_infer_int_list(cx, n, NULL, 4, steps, MAXL, &ns);
        if (as == LP_LIST_UNKNOWN || ps == LP_LIST_UNKNOWN)
            return lp_infer_output(cx, n, 0, x->dtype, LP_RANK_UNKNOWN, NULL);
        if ((as == LP_LIST_KNOWN && na != cnt) || (ps == LP_LIST_KNOWN && ns != cnt))
            return lp_infer_bad(cx, n, "starts, ends, axes and steps differ in length");
        for (int k = 0; k < cnt; k++) {
            starts[k] = ss->e[k];
            ends[k] = es->e[k];
            if (as != LP_LIST_KNOWN) axes[k] = k;
            if (ps != LP_LIST_KNOWN) steps[k] = 1;
        }
    }
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    memcpy(d, x->shape.dims, (size_t)r * sizeof *d);
    int ax[MAXL];
    for (int k = 0; k < cnt; k++) {
        if ((st = lp_infer_axis(cx, n, axes[k], r, &ax[k])) != LP_OK) return st;
        if (steps[k] == 0) return lp_infer_bad(cx, n, "a step is 0");
        d[ax[k]] = slice_dim(x->shape.dims[ax[k]], starts[k], ends[k], steps[k]);
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    /* fold: input index = start + output index * step on each sliced axis */
    slice_fold f = {.xs = lp_infer_known(cx, n, 0)};
    if (!lp_fold_layout(x, f.xs, f.xd, f.xst)) return LP_OK;
    f.r = r;
    for (int k = 0; k < r; k++) {
        f.start[k] = 0;
        f.step[k] = 1;
    }
    for (int k = 0; k < cnt; k++) {
        int64_t len = f.xd[ax[k]], s0 = starts[k].v;
        if (starts[k].kind != LP_EL_NUM) return LP_OK;
        if (s0 < 0) s0 += len;
        f.start[ax[k]] = steps[k] > 0 ? clamp64(s0, 0, len) : clamp64(s0, 0, len - 1);
        f.step[ax[k]] = steps[k];
    }
    return lp_fold_map(cx, n, 0, slice_pick, &f);
}

typedef struct concat_part {
    const lp_sval *s;
    int64_t dims[LP_MAX_RANK], strides[LP_MAX_RANK];
} concat_part;

typedef struct concat_fold {
    concat_part *part;
    int n, r, axis;
} concat_fold;

static bool concat_pick(const int64_t *idx, void *ctx, lp_elem *out) {
    const concat_fold *f = ctx;
    int64_t at = idx[f->axis];
    for (int i = 0; i < f->n; i++) {
        const concat_part *p = &f->part[i];
        if (at >= p->dims[f->axis]) {
            at -= p->dims[f->axis];
            continue;
        }
        int64_t flat = 0;
        for (int k = 0; k < f->r; k++) flat += (k == f->axis ? at : idx[k]) * p->strides[k];
        *out = p->s->e[flat];
        return true;
    }
    return false;
}

lp_status lp_infer_Concat(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x0 = need(cx, n, 0, &st);
    if (!x0) return st;
    int r = x0->shape.rank, axis;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", 0), r, &axis)) != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    memcpy(d, x0->shape.dims, (size_t)r * sizeof *d);
    d[axis] = lp_dim_num(0);
    for (int i = 0; i < n->n_inputs; i++) {
        const lp_value *v = lp_infer_input(cx, n, i);
        if (!v) continue;
        if (v->shape.rank != r)
            return lp_infer_bad(cx, n, "input %d ('%s') has rank %d, input 0 has %d", i, v->name, v->shape.rank, r);
        for (int k = 0; k < r; k++) {
            if (k == axis) {
                d[k] = lp_dim_add(d[k], v->shape.dims[k]);
                continue;
            }
            lp_dim a = d[k], b = v->shape.dims[k];
            if (lp_dim_is_num(a) && lp_dim_is_num(b) && a.size != b.size)
                return lp_infer_bad(cx, n, "input %d ('%s') axis %d is %lld, input 0 has %lld", i, v->name,
                                    k, (long long)b.size, (long long)a.size);
            if (!lp_dim_is_num(a) && (lp_dim_is_num(b) || lp_dim_is_unknown(a))) d[k] = b;
        }
    }
    if ((st = lp_infer_output(cx, n, 0, x0->dtype, r, d)) != LP_OK) return st;
    /* fold: each output index along the axis falls in one input */
    concat_fold f = {.r = r, .axis = axis, .n = 0};
    f.part = lp_arena_array(cx->g->arena, (size_t)(n->n_inputs ? n->n_inputs : 1), sizeof *f.part);
    if (!f.part) {
        cx->oom = true;
        return LP_ERR_INTERNAL;
    }
    for (int i = 0; i < n->n_inputs; i++) {
        const lp_value *v = lp_infer_input(cx, n, i);
        if (!v) continue;
        concat_part *p = &f.part[f.n++];
        p->s = lp_infer_known(cx, n, i);
        if (!lp_fold_layout(v, p->s, p->dims, p->strides)) return LP_OK;
    }
    return lp_fold_map(cx, n, 0, concat_pick, &f);
}

static lp_elem scalar_of(const lp_infer *cx, const lp_node *n, int i) {
    const lp_sval *s = lp_infer_known(cx, n, i);
    lp_elem unk = {.kind = LP_EL_UNKNOWN};
    return s && s->n == 1 ? s->e[0] : unk;
}

lp_status lp_infer_Range(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *s0 = need(cx, n, 0, &st);
    if (!s0 || !need(cx, n, 1, &st) || !need(cx, n, 2, &st)) return st;
    lp_elem start = scalar_of(cx, n, 0), limit = scalar_of(cx, n, 1), delta = scalar_of(cx, n, 2);
    lp_dim len = lp_dim_unknown();
    if (start.kind == LP_EL_NUM && limit.kind == LP_EL_NUM && delta.kind == LP_EL_NUM) {
        if (delta.v == 0) return lp_infer_bad(cx, n, "delta is 0");
        /* ceil(|limit - start| / |delta|) when the range runs the way delta
         * steps, else empty; unsigned, as |limit - start| may reach 2^64 - 1 */
        uint64_t c = 0;
        if (delta.v > 0 && limit.v > start.v)
            c = 1 + ((uint64_t)limit.v - (uint64_t)start.v - 1) / (uint64_t)delta.v;
        else if (delta.v < 0 && limit.v < start.v)
            c = 1 + ((uint64_t)start.v - (uint64_t)limit.v - 1) / (0 - (uint64_t)delta.v);
        if (c > INT64_MAX)
            return lp_infer_bad(cx, n, "the range from %lld to %lld by %lld has %llu elements",
                                (long long)start.v, (long long)limit.v, (long long)delta.v,
                                (unsigned long long)c);
        len = lp_dim_num((int64_t)c);
    } else if (start.kind == LP_EL_NUM && start.v == 0 && delta.kind == LP_EL_NUM && delta.v == 1) {
        len = lp_elem_to_dim(limit);
    } else {
        /* float bounds given as constants */
        double a[1], b[1], c[1];
        int k;
        if (lp_infer_floats(cx, n, 0, a, 1, &k) && lp_infer_floats(cx, n, 1, b, 1, &k) &&
            lp_infer_floats(cx, n, 2, c, 1, &k) && c[0] != 0) {
            double cntf = ceil((b[0] - a[0]) / c[0]);
            if (!(cntf < 0x1p62) && cntf > 0)
                return lp_infer_bad(cx, n, "the range has %g elements", cntf);
            len = lp_dim_num(cntf > 0 ? (int64_t)cntf : 0);
        }
    }
    if ((st = lp_infer_output(cx, n, 0, s0->dtype, 1, &len)) != LP_OK) return st;
    if (!lp_dim_is_num(len) || len.size > MAXL || start.kind != LP_EL_NUM || delta.kind != LP_EL_NUM) return LP_OK;
    lp_elem e[MAXL];
    /* each element lies between start and limit; the product may not */
    for (int64_t k = 0; k < len.size; k++)
        e[k] = lp_elem_num((int64_t)((uint64_t)start.v + (uint64_t)k * (uint64_t)delta.v));
    return lp_infer_set_known(cx, n, 0, (int)len.size, e);
}

/* Dims of a shape given as a known 1-D tensor (Expand, ConstantOfShape, ...):
 * *dims NULL with *rank set when only the rank is known, *dims NULL with
 * *rank unknown when not even that. A shape tensor longer than LP_MAX_RANK
 * is an error before anything is sized by its length. */
static lp_status dims_from_input(lp_infer *cx, const lp_node *n, int i, int *rank, lp_dim **dims) {
    const lp_value *v = lp_infer_input(cx, n, i);
    const lp_sval *s = lp_infer_known(cx, n, i);
    *rank = LP_RANK_UNKNOWN;
    *dims = NULL;
    if (!v) return LP_OK;
    if (v->shape.rank == 1 && lp_dim_is_num(v->shape.dims[0])) {
        char what[128];
        snprintf(what, sizeof what, "the output (its shape is input %d '%.60s')", i, v->name);
        lp_status st = lp_infer_check_rank(cx, n, v->shape.dims[0].size, what);
        if (st != LP_OK) return st;
    }
    if (!s) {
        if (v->shape.rank == 1 && lp_dim_is_num(v->shape.dims[0])) *rank = (int)v->shape.dims[0].size;
        return LP_OK;
    }
    *rank = s->n;
    lp_dim *d = lp_infer_dims(cx, s->n);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < s->n; k++) d[k] = lp_elem_to_dim(s->e[k]);
    *dims = d;
    return LP_OK;
}

static lp_status unknown_dims_output(lp_infer *cx, const lp_node *n, int i, lp_dtype dt, int rank) {
    if (rank < 0) return lp_infer_output(cx, n, i, dt, LP_RANK_UNKNOWN, NULL);
    lp_status st = lp_infer_check_rank(cx, n, rank, "the output");
    if (st != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, rank);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < rank; k++) d[k] = lp_dim_unknown();
    return lp_infer_output(cx, n, i, dt, rank, d);
}

lp_status lp_infer_Expand(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x || !need(cx, n, 1, &st)) return st;
    int tr;
    lp_dim *t;
    if ((st = dims_from_input(cx, n, 1, &tr, &t)) != LP_OK) return st;
    int r = tr > x->shape.rank ? tr : x->shape.rank;
    if (!t) return unknown_dims_output(cx, n, 0, x->dtype, tr < 0 ? -1 : r);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < r; k++) {
        int kx = k - (r - x->shape.rank), kt = k - (r - tr);
        lp_dim a = kx >= 0 ? x->shape.dims[kx] : lp_dim_num(1), b = kt >= 0 ? t[kt] : lp_dim_num(1);
        if (!lp_dim_broadcast(a, b, &d[k]))
            return lp_infer_bad(cx, n, "cannot expand axis %d of size %lld to %lld", kx, (long long)a.size,
                                (long long)b.size);
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    return lp_fold_broadcast_copy(cx, n, 0);
}

/* Reshape's target: 0 copies the input dim (unless allowzero), -1 is what
 * the element count leaves, computed on monomials so that
 * [batch, seq, 256] -> [0, -1, 4, 64] gives [batch, seq, 4, 64]. */
lp_status lp_infer_Reshape(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    const lp_sval *s = lp_infer_known(cx, n, 1);
    const lp_attr *sa = lp_node_attr(n, "shape");
    lp_elem tmp[MAXL];
    if (!s && sa && sa->type == LP_ATTR_INTS && sa->n <= MAXL) { /* opset 1-4 */
        for (int k = 0; k < sa->n; k++) tmp[k] = lp_elem_num(sa->ints[k]);
        lp_sval *fake = &(lp_sval){.n = sa->n, .e = tmp};
        s = fake;
    }
    if (!s) {
        int tr;
        lp_dim *t;
        if ((st = dims_from_input(cx, n, 1, &tr, &t)) != LP_OK) return st;
        return unknown_dims_output(cx, n, 0, x->dtype, tr);
    }
    bool allowzero = lp_node_attr_int(n, "allowzero", 0) != 0;
    int r = s->n, minus = -1;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    lp_dim known = lp_dim_num(1);
    for (int k = 0; k < r; k++) {
        lp_elem e = s->e[k];
        if (e.kind == LP_EL_NUM && e.v == -1) {
            if (minus >= 0) return lp_infer_bad(cx, n, "the target shape has more than one -1");
            minus = k;
            continue;
        }
        if (e.kind == LP_EL_NUM && e.v == 0 && !allowzero) {
            if (k >= x->shape.rank)
                return lp_infer_bad(cx, n, "target dim %d is 0 but the input has rank %d", k, x->shape.rank);
            d[k] = x->shape.dims[k];
        } else if (e.kind == LP_EL_NUM && e.v < 0) {
            return lp_infer_bad(cx, n, "target dim %d is %lld", k, (long long)e.v);
        } else {
            d[k] = lp_elem_to_dim(e);
        }
        known = lp_dim_mul(cx->g->arena, known, d[k]);
    }
    if (minus >= 0) {
        lp_dim total = lp_dim_product(cx->g->arena, x->shape.dims, x->shape.rank);
        d[minus] = lp_dim_div(cx->g->arena, total, known);
        if (lp_dim_is_num(total) && lp_dim_is_num(known) && lp_dim_is_unknown(d[minus]))
            return lp_infer_bad(cx, n, "cannot reshape %lld elements with %lld per -1 slot",
                                (long long)total.size, (long long)known.size);
    } else {
        lp_dim total = lp_dim_product(cx->g->arena, x->shape.dims, x->shape.rank);
        if (lp_dim_is_num(total) && lp_dim_is_num(known) && total.size != known.size)
            return lp_infer_bad(cx, n, "cannot reshape %lld elements into %lld", (long long)total.size,
                                (long long)known.size);
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    return pass_known(cx, n, 0);
}

/* Output axis k is input axis perm[k]. */
typedef struct transpose_fold {
    const lp_sval *xs;
    int64_t xd[LP_MAX_RANK], xst[LP_MAX_RANK];
    int perm[LP_MAX_RANK];
    int r;
} transpose_fold;

static bool transpose_pick(const int64_t *idx, void *ctx, lp_elem *out) {
    const transpose_fold *f = ctx;
    int64_t flat = 0;
    for (int k = 0; k < f->r; k++) flat += idx[k] * f->xst[f->perm[k]];
    *out = f->xs->e[flat];
    return true;
}

lp_status lp_infer_Transpose(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank;
    const lp_attr *p = lp_node_attr(n, "perm");
    if (p && p->n != r) return lp_infer_bad(cx, n, "perm has %d entries for rank %d", p->n, r);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    transpose_fold f;
    for (int k = 0; k < r; k++) {
        int64_t src = p ? p->ints[k] : r - 1 - k;
        if (src < 0 || src >= r) return lp_infer_bad(cx, n, "perm entry %lld is out of range", (long long)src);
        for (int j = 0; p && j < k; j++)
            if (p->ints[j] == src) return lp_infer_bad(cx, n, "perm names axis %lld twice", (long long)src);
        d[k] = x->shape.dims[src];
        f.perm[k] = (int)src;
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    f.xs = lp_infer_known(cx, n, 0);
    f.r = r;
    if (!lp_fold_layout(x, f.xs, f.xd, f.xst)) return LP_OK;
    return lp_fold_map(cx, n, 0, transpose_pick, &f);
}

lp_status lp_infer_Split(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, axis, no = n->n_outputs, cnt = 0;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", 0), r, &axis)) != LP_OK) return st;
    int64_t sizes[MAXL];
    lp_list_state ls = lp_infer_int_list(cx, n, "split", 1, sizes, MAXL, &cnt);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    memcpy(d, x->shape.dims, (size_t)r * sizeof *d);
    lp_dim whole = x->shape.dims[axis];
    if (ls == LP_LIST_KNOWN && cnt != no)
        return lp_infer_bad(cx, n, "split has %d sizes for %d outputs", cnt, no);
    if (ls == LP_LIST_KNOWN) {
        /* sizes >= 0 that add up to the axis (checked without overflow) */
        uint64_t sum = 0;
        for (int i = 0; i < cnt; i++) {
            if (sizes[i] < 0) return lp_infer_bad(cx, n, "split size %lld is negative", (long long)sizes[i]);
            sum = sum + (uint64_t)sizes[i] < sum ? UINT64_MAX : sum + (uint64_t)sizes[i];
        }
        if (lp_dim_is_num(whole) && sum != (uint64_t)whole.size)
            return lp_infer_bad(cx, n, "split sizes add up to %llu, axis %d has %lld",
                                (unsigned long long)sum, axis, (long long)whole.size);
    }
    for (int i = 0; i < no; i++) {
        if (ls == LP_LIST_KNOWN) {
            d[axis] = lp_dim_num(sizes[i]);
        } else if (ls == LP_LIST_UNKNOWN) {
            d[axis] = lp_dim_unknown();
        } else if (lp_dim_is_num(whole)) {
            /* equal parts; with num_outputs (opset 18) the last may be smaller */
            int64_t part = (whole.size + no - 1) / no;
            if (!lp_node_attr(n, "num_outputs") && whole.size % no)
                return lp_infer_bad(cx, n, "axis %d of size %lld does not split into %d equal parts", axis,
                                    (long long)whole.size, no);
            int64_t left = whole.size - part * i;
            d[axis] = lp_dim_num(left < part ? (left > 0 ? left : 0) : part);
        } else {
            d[axis] = lp_dim_div(cx->g->arena, whole, lp_dim_num(no));
        }
        if ((st = lp_infer_output(cx, n, i, x->dtype, r, d)) != LP_OK) return st;
    }
    /* fold: output i is the input from the sum of the sizes before it */
    slice_fold f = {.xs = lp_infer_known(cx, n, 0), .r = r};
    if (!lp_fold_layout(x, f.xs, f.xd, f.xst)) return LP_OK;
    for (int k = 0; k < r; k++) {
        f.start[k] = 0;
        f.step[k] = 1;
    }
    for (int i = 0; i < no; i++) {
        if (n->outputs[i] < 0) continue;
        const lp_value *o = &cx->g->values[n->outputs[i]];
        if (!lp_dim_is_num(o->shape.dims[axis])) return LP_OK;
        if ((st = lp_fold_map(cx, n, i, slice_pick, &f)) != LP_OK) return st;
        f.start[axis] += o->shape.dims[axis].size;
    }
    return LP_OK;
}

/* Marks axes (normalised against `rank`) in `mark`; an error for a repeat. */
static lp_status mark_axes(lp_infer *cx, const lp_node *n, const int64_t *axes, int cnt, int rank, bool *mark) {
    for (int k = 0; k < rank; k++) mark[k] = false;
    for (int k = 0; k < cnt; k++) {
        int a;
        lp_status st = lp_infer_axis(cx, n, axes[k], rank, &a);
        if (st != LP_OK) return st;
        if (mark[a]) return lp_infer_bad(cx, n, "axis %lld is given twice", (long long)axes[k]);
        mark[a] = true;
    }
    return LP_OK;
}

lp_status lp_infer_Squeeze(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, cnt = 0;
    int64_t axes[MAXL];
    lp_list_state ls = lp_infer_int_list(cx, n, "axes", 1, axes, MAXL, &cnt);
    if (ls == LP_LIST_UNKNOWN) return lp_infer_output(cx, n, 0, x->dtype, LP_RANK_UNKNOWN, NULL);
    bool *mark = lp_arena_array(cx->g->arena, (size_t)r + 1, sizeof *mark);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!mark || !d) return LP_ERR_INTERNAL;
    if (ls == LP_LIST_KNOWN) {
        if ((st = mark_axes(cx, n, axes, cnt, r, mark)) != LP_OK) return st;
    } else {
        for (int k = 0; k < r; k++) {
            if (!lp_dim_is_num(x->shape.dims[k]))
                return lp_infer_output(cx, n, 0, x->dtype, LP_RANK_UNKNOWN, NULL);
            mark[k] = x->shape.dims[k].size == 1;
        }
    }
    int o = 0;
    for (int k = 0; k < r; k++) {
        if (!mark[k]) {
            d[o++] = x->shape.dims[k];
        } else if (lp_dim_is_num(x->shape.dims[k]) && x->shape.dims[k].size != 1) {
            return lp_infer_bad(cx, n, "cannot squeeze axis %d of size %lld", k, (long long)x->shape.dims[k].size);
        }
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, o, d)) != LP_OK) return st;
    return pass_known(cx, n, 0);
}

lp_status lp_infer_Unsqueeze(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int cnt = 0;
    int64_t axes[MAXL];
    lp_list_state ls = lp_infer_int_list(cx, n, "axes", 1, axes, MAXL, &cnt);
    if (ls == LP_LIST_UNKNOWN) return lp_infer_output(cx, n, 0, x->dtype, LP_RANK_UNKNOWN, NULL);
    if (ls == LP_LIST_ABSENT) return lp_infer_bad(cx, n, "axes are required");
    int r = x->shape.rank + cnt;
    bool *mark = lp_arena_array(cx->g->arena, (size_t)r + 1, sizeof *mark);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!mark || !d) return LP_ERR_INTERNAL;
    if ((st = mark_axes(cx, n, axes, cnt, r, mark)) != LP_OK) return st;
    for (int k = 0, i = 0; k < r; k++) d[k] = mark[k] ? lp_dim_num(1) : x->shape.dims[i++];
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    return pass_known(cx, n, 0);
}

lp_status lp_infer_Flatten(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank;
    int64_t axis = lp_node_attr_int(n, "axis", 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) return lp_infer_bad(cx, n, "axis %lld is out of range", (long long)axis);
    lp_dim d[2] = {lp_dim_product(cx->g->arena, x->shape.dims, (int)axis),
                   lp_dim_product(cx->g->arena, x->shape.dims + axis, r - (int)axis)};
    if ((st = lp_infer_output(cx, n, 0, x->dtype, 2, d)) != LP_OK) return st;
    return pass_known(cx, n, 0);
}

lp_status lp_infer_ConstantOfShape(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    if (!need(cx, n, 0, &st)) return st;
    const lp_attr *va = lp_node_attr(n, "value");
    lp_dtype dt = va && va->tensor ? va->tensor->dtype : LP_DT_FLOAT;
    int r;
    lp_dim *d;
    if ((st = dims_from_input(cx, n, 0, &r, &d)) != LP_OK) return st;
    if (!d) return unknown_dims_output(cx, n, 0, dt, r);
    if ((st = lp_infer_output(cx, n, 0, dt, r, d)) != LP_OK) return st;
    /* fold: a filled integer tensor (e.g. ones for Expand targets) */
    uint64_t numel;
    if (!lp_shape_numel(&cx->g->values[n->outputs[0]].shape, &numel) || numel > MAXL) return LP_OK;
    lp_value fill = {.dtype = dt, .shape = {.rank = 0}, .data = va ? va->tensor->data : (lp_tensor_data){0}};
    lp_elem v = lp_elem_num(0); /* the default fill is a float 0 */
    if (va) {
        lp_sval *s = lp_fold_from_data(cx->g->arena, &fill);
        if (!s || s->n != 1) return LP_OK;
        v = s->e[0];
    }
    lp_elem e[MAXL];
    for (uint64_t k = 0; k < numel; k++) e[k] = v;
    return lp_infer_set_known(cx, n, 0, (int)numel, e);
}

/* Tile: input index = output index modulo the input's dim. */
typedef struct tile_fold {
    const lp_sval *xs;
    int64_t xd[LP_MAX_RANK], xst[LP_MAX_RANK];
    int r;
} tile_fold;

static bool tile_pick(const int64_t *idx, void *ctx, lp_elem *out) {
    const tile_fold *f = ctx;
    int64_t flat = 0;
    for (int k = 0; k < f->r; k++) flat += (idx[k] % f->xd[k]) * f->xst[k];
    *out = f->xs->e[flat];
    return true;
}

lp_status lp_infer_Tile(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x || !need(cx, n, 1, &st)) return st;
    int r = x->shape.rank, cnt;
    int64_t rep[MAXL];
    if (!lp_infer_ints(cx, n, 1, rep, MAXL, &cnt)) return unknown_dims_output(cx, n, 0, x->dtype, r);
    if (cnt != r) return lp_infer_bad(cx, n, "repeats has %d entries for rank %d", cnt, r);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < r; k++) d[k] = lp_dim_mul(cx->g->arena, x->shape.dims[k], lp_dim_num(rep[k]));
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    tile_fold f = {.xs = lp_infer_known(cx, n, 0), .r = r};
    if (!lp_fold_layout(x, f.xs, f.xd, f.xst)) return LP_OK;
    return lp_fold_map(cx, n, 0, tile_pick, &f);
}

lp_status lp_infer_Pad(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, np = 0, na = 0;
    int64_t pads[2 * MAXL], axes[MAXL];
    lp_list_state ps = lp_infer_int_list(cx, n, "pads", 1, pads, 2 * MAXL, &np);
    if (ps == LP_LIST_UNKNOWN) return unknown_dims_output(cx, n, 0, x->dtype, r);
    if (ps == LP_LIST_ABSENT) np = 0;
    lp_list_state as = lp_infer_int_list(cx, n, NULL, 3, axes, MAXL, &na);
    if (as == LP_LIST_UNKNOWN) return unknown_dims_output(cx, n, 0, x->dtype, r);
    if (as == LP_LIST_ABSENT) {
        na = r;
        for (int k = 0; k < r; k++) axes[k] = k;
    }
    if (np && np != 2 * na) return lp_infer_bad(cx, n, "pads has %d entries for %d axes", np, na);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    memcpy(d, x->shape.dims, (size_t)r * sizeof *d);
    for (int k = 0; np && k < na; k++) {
        int a;
        if ((st = lp_infer_axis(cx, n, axes[k], r, &a)) != LP_OK) return st;
        lp_dim p = lp_dim_num(0);
        int64_t add = pads[k] + pads[k + na];
        if (lp_dim_is_num(d[a])) {
            if (d[a].size + add < 0) return lp_infer_bad(cx, n, "pads make axis %d negative", a);
            p = lp_dim_num(d[a].size + add);
        } else {
            p = add == 0 ? d[a] : lp_dim_unknown();
        }
        d[a] = p;
    }
    return lp_infer_output(cx, n, 0, x->dtype, r, d);
}

/* Resize: explicit sizes, or floor(dim * scale) (round-to-nearest would
 * differ; ONNX specifies floor). */
lp_status lp_infer_Resize(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, na = 0, cnt = 0;
    int64_t axes[MAXL], sizes[MAXL];
    double scales[MAXL];
    const lp_attr *aa = lp_node_attr(n, "axes");
    if (aa && aa->n <= MAXL) {
        na = aa->n;
        for (int k = 0; k < na; k++) axes[k] = aa->ints[k];
    } else {
        na = r;
        for (int k = 0; k < r; k++) axes[k] = k;
    }
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    memcpy(d, x->shape.dims, (size_t)r * sizeof *d);
    int si = n->n_inputs >= 3 ? 2 : 1; /* opset 10 has (X, scales) */
    bool have_sizes = lp_infer_input(cx, n, 3) && lp_infer_ints(cx, n, 3, sizes, MAXL, &cnt);
    bool have_scales = !have_sizes && lp_infer_floats(cx, n, si, scales, MAXL, &cnt) && cnt > 0;
    if (!have_sizes && !have_scales) return unknown_dims_output(cx, n, 0, x->dtype, r);
    if (cnt != na) return lp_infer_bad(cx, n, "%d %s for %d axes", cnt, have_sizes ? "sizes" : "scales", na);
    const char *policy = lp_node_attr_string(n, "keep_aspect_ratio_policy", "stretch");
    if (have_sizes && strcmp(policy, "stretch") != 0) {
        /* one scale for all axes: min or max of sizes / dims */
        double s = strcmp(policy, "not_larger") == 0 ? INFINITY : 0;
        for (int k = 0; k < na; k++) {
            int a;
            if ((st = lp_infer_axis(cx, n, axes[k], r, &a)) != LP_OK) return st;
            if (!lp_dim_is_num(d[a])) return unknown_dims_output(cx, n, 0, x->dtype, r);
            double q = (double)sizes[k] / (double)d[a].size;
            s = strcmp(policy, "not_larger") == 0 ? fmin(s, q) : fmax(s, q);
        }
        for (int k = 0; k < na; k++) scales[k] = s;
        have_sizes = false;
        have_scales = true;
        for (int k = 0; k < na; k++) {
            int a = (int)(axes[k] < 0 ? axes[k] + r : axes[k]);
            d[a] = lp_dim_num((int64_t)floor((double)d[a].size * s + 0.5));
        }
        return lp_infer_output(cx, n, 0, x->dtype, r, d);
    }
    for (int k = 0; k < na; k++) {
        int a;
        if ((st = lp_infer_axis(cx, n, axes[k], r, &a)) != LP_OK) return st;
        if (have_sizes)
            d[a] = lp_dim_num(sizes[k]);
        else if (lp_dim_is_num(d[a]))
            d[a] = lp_dim_num((int64_t)floor((double)d[a].size * scales[k]));
        else
            d[a] = scales[k] == 1.0 ? d[a] : lp_dim_unknown();
    }
    return lp_infer_output(cx, n, 0, x->dtype, r, d);
}

lp_status lp_infer_TopK(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, axis, cnt;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", -1), r, &axis)) != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    memcpy(d, x->shape.dims, (size_t)r * sizeof *d);
    int64_t k[1];
    bool known = true;
    if (lp_node_attr(n, "k"))
        k[0] = lp_node_attr_int(n, "k", 0);
    else
        known = lp_infer_ints(cx, n, 1, k, 1, &cnt);
    if (known && k[0] < 0) return lp_infer_bad(cx, n, "k is %lld", (long long)k[0]);
    if (known && lp_dim_is_num(x->shape.dims[axis]) && k[0] > x->shape.dims[axis].size)
        return lp_infer_bad(cx, n, "k is %lld but axis %d has %lld elements", (long long)k[0], axis,
                            (long long)x->shape.dims[axis].size);
    d[axis] = known ? lp_dim_num(k[0]) : lp_dim_unknown();
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    return lp_infer_output(cx, n, 1, LP_DT_INT64, r, d);
}

lp_status lp_infer_OneHot(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *idx = need(cx, n, 0, &st), *vals = need(cx, n, 2, &st);
    if (!idx || !vals || !need(cx, n, 1, &st)) return st;
    int r = idx->shape.rank + 1, axis;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", -1), r, &axis)) != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    int64_t depth[1];
    double fdepth[1];
    int cnt;
    lp_dim dd = lp_dim_unknown();
    if (lp_infer_ints(cx, n, 1, depth, 1, &cnt)) dd = lp_dim_num(depth[0]);
    else if (lp_infer_floats(cx, n, 1, fdepth, 1, &cnt)) dd = lp_dim_num((int64_t)fdepth[0]);
    for (int k = 0, i = 0; k < r; k++) d[k] = k == axis ? dd : idx->shape.dims[i++];
    return lp_infer_output(cx, n, 0, vals->dtype, r, d);
}

lp_status lp_infer_EyeLike(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int64_t t = lp_node_attr_int(n, "dtype", x->dtype);
    return lp_infer_output(cx, n, 0, (lp_dtype)t, x->shape.rank, x->shape.dims);
}

static lp_status space_depth(lp_infer *cx, const lp_node *n, bool to_space) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    if (x->shape.rank != 4) return lp_infer_bad(cx, n, "input must have rank 4");
    int64_t b = lp_node_attr_int(n, "blocksize", 0);
    if (b <= 0) return lp_infer_bad(cx, n, "blocksize must be > 0");
    lp_dim d[4], bb = lp_dim_num(b * b), bd = lp_dim_num(b);
    lp_arena *a = cx->g->arena;
    d[0] = x->shape.dims[0];
    d[1] = to_space ? lp_dim_div(a, x->shape.dims[1], bb) : lp_dim_mul(a, x->shape.dims[1], bb);
    for (int k = 2; k < 4; k++)
        d[k] = to_space ? lp_dim_mul(a, x->shape.dims[k], bd) : lp_dim_div(a, x->shape.dims[k], bd);
    return lp_infer_output(cx, n, 0, x->dtype, 4, d);
}

lp_status lp_infer_DepthToSpace(lp_infer *cx, const lp_node *n) { return space_depth(cx, n, true); }
lp_status lp_infer_SpaceToDepth(lp_infer *cx, const lp_node *n) { return space_depth(cx, n, false); }
