/* ref_tensor.c - data movement: views, Shape, ConstantOfShape, Range,
 * Expand, Concat, Split, Slice, Transpose, the Gathers, Pad, CumSum. */
#include <math.h>

#include "ref_internal.h"

/* The element of input `t` as int64 (scalar or 1-element inputs). */
static int64_t scalar_i(const lp_ref_tensor *t) { return lp_ref_loadi(t, 0); }

/* Coordinates of row-major index i in dims[rank]. */
static void unravel(int64_t i, int rank, const int64_t *dims, int64_t *coord) {
    for (int d = rank - 1; d >= 0; d--) {
        coord[d] = dims[d] ? i % dims[d] : 0;
        if (dims[d]) i /= dims[d];
    }
}

static lp_status same_dtype(const lp_ref_call *c, const lp_ref_tensor *x, const lp_ref_tensor *y) {
    if (x->dtype != y->dtype)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input is %s but the output is %s",
                           lp_dtype_name(x->dtype), lp_dtype_name(y->dtype));
    return LP_OK;
}

lp_status lp_ref_view(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    if (lp_ref_numel(x) != lp_ref_numel(y))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, input %lld",
                           (long long)lp_ref_numel(y), (long long)lp_ref_numel(x));
    memcpy(y->data, x->data, (size_t)lp_ref_numel(x) * lp_ref_dtype_size(x->dtype));
    return LP_OK;
}

lp_status lp_ref_shape(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int64_t r = x->rank, start = lp_ref_attr_int(c, "start", 0), end = lp_ref_attr_int(c, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    int64_t n = end > start ? end - start : 0;
    if (lp_ref_numel(y) != n)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, expected %lld",
                           (long long)lp_ref_numel(y), (long long)n);
    for (int64_t i = 0; i < n; i++) lp_ref_storei(y, i, x->dims[start + i]);
    return LP_OK;
}

lp_status lp_ref_constant_of_shape(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    lp_ref_tensor *y = lp_ref_out(c, 0);
    const lp_attr *a = lp_ref_attr(c, "value");
    size_t es = lp_ref_dtype_size(y->dtype);
    uint8_t zero[8] = {0};
    const uint8_t *val = zero;
    if (a && a->type == LP_ATTR_TENSOR && a->tensor) {
        const lp_tensor *t = a->tensor;
        if (t->dtype != y->dtype)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "value is %s but the output is %s",
                               lp_dtype_name(t->dtype), lp_dtype_name(y->dtype));
        if (t->data.where != LP_DATA_INLINE || t->data.nbytes != es)
            return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "value is not one inline element");
        val = t->data.bytes;
    } else if (y->dtype != LP_DT_FLOAT) {
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "no value given and the output is not float");
    }
    const lp_ref_tensor *shape = lp_ref_in(c, 0);
    int64_t n_dims = lp_ref_numel(shape);
    if (n_dims != y->rank)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "shape has %lld entries, output rank %d",
                           (long long)n_dims, y->rank);
    for (int d = 0; d < y->rank; d++)
        if (lp_ref_loadi(shape, d) != y->dims[d])
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output dim %d is %lld, shape says %lld", d,
                               (long long)y->dims[d], (long long)lp_ref_loadi(shape, d));
    int64_t n = lp_ref_numel(y);
    for (int64_t i = 0; i < n; i++) memcpy((char *)y->data + (size_t)i * es, val, es);
    return LP_OK;
}

lp_status lp_ref_range(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 3, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *s = lp_ref_in(c, 0), *l = lp_ref_in(c, 1), *dl = lp_ref_in(c, 2);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int64_t n = lp_ref_numel(y);
    if (lp_ref_is_float(y->dtype)) {
        double start = lp_ref_loadf(s, 0), limit = lp_ref_loadf(l, 0), delta = lp_ref_loadf(dl, 0);
        if (s->dtype == LP_DT_DOUBLE) {
            start = ((const double *)s->data)[0];
            limit = ((const double *)l->data)[0];
            delta = ((const double *)dl->data)[0];
        }
        double want = ceil((limit - start) / delta);
        if ((want < 0 ? 0 : want) != (double)n)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, range gives %.0f",
                               (long long)n, want);
        for (int64_t i = 0; i < n; i++) {
            if (y->dtype == LP_DT_DOUBLE) ((double *)y->data)[i] = start + (double)i * delta;
            else lp_ref_storef(y, i, (float)(start + (double)i * delta));
        }
    } else {
        int64_t start = scalar_i(s), limit = scalar_i(l), delta = scalar_i(dl);
        if (delta == 0) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "delta is 0");
        double want = ceil(((double)limit - (double)start) / (double)delta);
        if ((want < 0 ? 0 : want) != (double)n)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, range gives %.0f",
                               (long long)n, want);
        for (int64_t i = 0; i < n; i++) lp_ref_storei(y, i, start + i * delta);
    }
    return LP_OK;
}

lp_status lp_ref_expand(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int64_t strides[LP_MAX_RANK], coord[LP_MAX_RANK];
    if (!lp_ref_bcast_strides(x, y->rank, y->dims, strides))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input does not broadcast to the output shape");
    size_t es = lp_ref_dtype_size(x->dtype);
    int64_t n = lp_ref_numel(y);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, y->rank, y->dims, coord);
        int64_t off = 0;
        for (int d = 0; d < y->rank; d++) off += coord[d] * strides[d];
        lp_ref_copy_elem(y, i, x, off, es);
    }
    return LP_OK;
}

/* Product of dims [from, to). */
static int64_t prod(const int64_t *dims, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= dims[d];
    return p;
}

lp_status lp_ref_concat(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int axis;
    if (!lp_ref_axis(lp_ref_attr_int(c, "axis", 0), y->rank, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    size_t es = lp_ref_dtype_size(y->dtype);
    int64_t outer = prod(y->dims, 0, axis), inner = prod(y->dims, axis + 1, y->rank);
    int64_t y_row = y->dims[axis] * inner, at = 0;
    for (int k = 0; k < c->n_inputs; k++) {
        const lp_ref_tensor *x = lp_ref_in(c, k);
        if (!x) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", k);
        if ((st = same_dtype(c, x, y)) != LP_OK) return st;
        if (x->rank != y->rank) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d rank differs", k);
        int64_t x_row = x->dims[axis] * inner;
        if (at + x_row > y_row) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "inputs exceed the output");
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)(o * y_row + at) * es,
                   (const char *)x->data + (size_t)(o * x_row) * es, (size_t)x_row * es);
        at += x_row;
    }
    if (at != y_row) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "inputs do not fill the output");
    return LP_OK;
}

lp_status lp_ref_split(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    int axis;
    if (!lp_ref_axis(lp_ref_attr_int(c, "axis", 0), x->rank, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    size_t es = lp_ref_dtype_size(x->dtype);
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis + 1, x->rank);
    int64_t x_row = x->dims[axis] * inner, at = 0;
    /* the output shapes (from shape inference) say the split sizes */
    for (int k = 0; k < c->n_outputs; k++) {
        lp_ref_tensor *y = lp_ref_out(c, k);
        if (!y) return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "output %d is omitted", k);
        if ((st = same_dtype(c, x, y)) != LP_OK) return st;
        if (y->rank != x->rank) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output %d rank differs", k);
        int64_t y_row = y->dims[axis] * inner;
        if (at + y_row > x_row) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "outputs exceed the input");
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)(o * y_row) * es,
                   (const char *)x->data + (size_t)(o * x_row + at) * es, (size_t)y_row * es);
        at += y_row;
    }
    if (at != x_row) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "outputs do not cover the input");
    return LP_OK;
}

/* An int list from input i (opset >= 10 style) or attribute `name`; n = -1 if neither. */
static lp_status int_list(const lp_ref_call *c, int input, const char *name, int64_t *out, int *n) {
    const lp_ref_tensor *t = input >= 0 ? lp_ref_in(c, input) : NULL;
    *n = -1;
    if (t) {
        int64_t k = lp_ref_numel(t);
        if (k > LP_MAX_RANK) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d is too long", input);
        for (int64_t i = 0; i < k; i++) out[i] = lp_ref_loadi(t, i);
        *n = (int)k;
        return LP_OK;
    }
    const lp_attr *a = name ? lp_ref_attr(c, name) : NULL;
    if (a && a->type == LP_ATTR_INTS) {
        if (a->n > LP_MAX_RANK) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "%s is too long", name);
        for (int i = 0; i < a->n; i++) out[i] = a->ints[i];
        *n = a->n;
    }
    return LP_OK;
}

lp_status lp_ref_slice(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int r = x->rank;
    int64_t starts[LP_MAX_RANK], ends[LP_MAX_RANK], axes[LP_MAX_RANK], steps[LP_MAX_RANK];
    int ns, ne, na, nst;
    bool old = c->opset < 10;
    if ((st = int_list(c, old ? -1 : 1, old ? "starts" : NULL, starts, &ns)) != LP_OK ||
        (st = int_list(c, old ? -1 : 2, old ? "ends" : NULL, ends, &ne)) != LP_OK ||
        (st = int_list(c, old ? -1 : 3, old ? "axes" : NULL, axes, &na)) != LP_OK ||
        (st = int_list(c, old ? -1 : 4, NULL, steps, &nst)) != LP_OK)
        return st;
    if (ns < 0 || ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "starts, ends, axes and steps differ in length");
    int64_t begin[LP_MAX_RANK], step[LP_MAX_RANK], count[LP_MAX_RANK];
    for (int d = 0; d < r; d++) {
        begin[d] = 0;
        step[d] = 1;
        count[d] = x->dims[d];
    }
    for (int k = 0; k < ns; k++) {
        int ax;
        if (!lp_ref_axis(na >= 0 ? axes[k] : k, r, &ax))
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
        int64_t dim = x->dims[ax], s = starts[k], e = ends[k], p = nst >= 0 ? steps[k] : 1;
        if (p == 0) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "step 0");
        if (s < 0) s += dim;
        if (e < 0 && e > INT64_MIN / 2) e += dim;
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
    if (y->rank != r) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output rank differs");
    for (int d = 0; d < r; d++)
        if (count[d] != y->dims[d])
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output dim %d is %lld, the slice gives %lld",
                               d, (long long)y->dims[d], (long long)count[d]);
    int64_t xs[LP_MAX_RANK], coord[LP_MAX_RANK];
    lp_ref_strides(x, xs);
    size_t es = lp_ref_dtype_size(x->dtype);
    int64_t n = lp_ref_numel(y);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, r, y->dims, coord);
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += (begin[d] + coord[d] * step[d]) * xs[d];
        lp_ref_copy_elem(y, i, x, off, es);
    }
    return LP_OK;
}

lp_status lp_ref_transpose(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int r = x->rank, perm[LP_MAX_RANK];
    const lp_attr *a = lp_ref_attr(c, "perm");
    if (a && a->type == LP_ATTR_INTS) {
        if (a->n != r) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "perm has %d entries, rank %d", a->n, r);
        for (int d = 0; d < r; d++)
            if (!lp_ref_axis(a->ints[d], r, &perm[d]))
                return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "perm entry out of range");
    } else {
        for (int d = 0; d < r; d++) perm[d] = r - 1 - d;
    }
    if (y->rank != r) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output rank differs");
    for (int d = 0; d < r; d++)
        if (y->dims[d] != x->dims[perm[d]])
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output dim %d does not match perm", d);
    int64_t xs[LP_MAX_RANK], coord[LP_MAX_RANK];
    lp_ref_strides(x, xs);
    size_t es = lp_ref_dtype_size(x->dtype);
    int64_t n = lp_ref_numel(y);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, r, y->dims, coord);
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += coord[d] * xs[perm[d]];
        lp_ref_copy_elem(y, i, x, off, es);
    }
    return LP_OK;
}

/* An index read from `idx`, negative ones counted from the end of dim. */
static bool index_at(const lp_ref_tensor *idx, int64_t i, int64_t dim, int64_t *out) {
    int64_t v = lp_ref_loadi(idx, i);
    if (v < 0) v += dim;
    if (v < 0 || v >= dim) return false;
    *out = v;
    return true;
}

lp_status lp_ref_gather(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0), *idx = lp_ref_in(c, 1);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int axis;
    if (!lp_ref_axis(lp_ref_attr_int(c, "axis", 0), x->rank, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis + 1, x->rank);
    int64_t dim = x->dims[axis], n_idx = lp_ref_numel(idx);
    if (lp_ref_numel(y) != outer * n_idx * inner)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output size does not match the indices");
    size_t es = lp_ref_dtype_size(x->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < n_idx; j++) {
            int64_t k;
            if (!index_at(idx, j, dim, &k))
                return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "index %lld out of range [-%lld, %lld)",
                                   (long long)lp_ref_loadi(idx, j), (long long)dim, (long long)dim);
            memcpy((char *)y->data + (size_t)((o * n_idx + j) * inner) * es,
                   (const char *)x->data + (size_t)((o * dim + k) * inner) * es, (size_t)inner * es);
        }
    return LP_OK;
}

lp_status lp_ref_gather_elements(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0), *idx = lp_ref_in(c, 1);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int axis, r = x->rank;
    if (!lp_ref_axis(lp_ref_attr_int(c, "axis", 0), r, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    if (idx->rank != r || lp_ref_numel(y) != lp_ref_numel(idx))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "indices and output shapes differ");
    int64_t xs[LP_MAX_RANK], coord[LP_MAX_RANK];
    lp_ref_strides(x, xs);
    size_t es = lp_ref_dtype_size(x->dtype);
    int64_t n = lp_ref_numel(idx);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, r, idx->dims, coord);
        int64_t k;
        if (!index_at(idx, i, x->dims[axis], &k))
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "index out of range");
        coord[axis] = k;
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += coord[d] * xs[d];
        lp_ref_copy_elem(y, i, x, off, es);
    }
    return LP_OK;
}

lp_status lp_ref_gather_nd(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0), *idx = lp_ref_in(c, 1);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int64_t b = lp_ref_attr_int(c, "batch_dims", 0);
    if (idx->rank < 1) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "indices are a scalar");
    int64_t k = idx->dims[idx->rank - 1];
    if (b < 0 || b >= idx->rank || b + k > x->rank)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "batch_dims %lld and index depth %lld do not fit",
                           (long long)b, (long long)k);
    int64_t batches = prod(x->dims, 0, (int)b);
    int64_t per_batch = prod(idx->dims, (int)b, idx->rank - 1);
    int64_t slice = prod(x->dims, (int)(b + k), x->rank);
    int64_t x_batch = prod(x->dims, (int)b, x->rank);
    if (lp_ref_numel(y) != batches * per_batch * slice)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output size does not match the indices");
    int64_t xs[LP_MAX_RANK];
    lp_ref_strides(x, xs);
    size_t es = lp_ref_dtype_size(x->dtype);
    for (int64_t bi = 0; bi < batches; bi++)
        for (int64_t j = 0; j < per_batch; j++) {
            int64_t row = bi * per_batch + j, off = bi * x_batch;
            for (int64_t q = 0; q < k; q++) {
                int64_t v;
                if (!index_at(idx, row * k + q, x->dims[b + q], &v))
                    return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "index out of range");
                off += v * xs[b + q];
            }
            memcpy((char *)y->data + (size_t)(row * slice) * es,
                   (const char *)x->data + (size_t)off * es, (size_t)slice * es);
        }
    return LP_OK;
}

lp_status lp_ref_pad(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int r = x->rank;
    const char *mode = lp_ref_attr_string(c, "mode", "constant");
    int m = strcmp(mode, "constant") == 0 ? 0 : strcmp(mode, "reflect") == 0 ? 1
          : strcmp(mode, "edge") == 0 ? 2 : strcmp(mode, "wrap") == 0 ? 3 : -1;
    if (m < 0) return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "mode '%s' is not constant, reflect, edge or wrap", mode);
    int64_t raw[2 * LP_MAX_RANK], axes_l[LP_MAX_RANK], begin[LP_MAX_RANK];
    int np = -1, na = -1;
    bool old = c->opset < 11;
    const lp_attr *pa = lp_ref_attr(c, old ? "pads" : "");
    if (old) {
        if (!pa || pa->type != LP_ATTR_INTS || pa->n != 2 * r)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "pads must have 2 * rank entries");
        for (int i = 0; i < pa->n; i++) raw[i] = pa->ints[i];
        np = pa->n;
    } else {
        const lp_ref_tensor *p = lp_ref_in(c, 1);
        if (!p) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "pads input is missing");
        np = (int)lp_ref_numel(p);
        if (np > 2 * LP_MAX_RANK) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "pads too long");
        for (int i = 0; i < np; i++) raw[i] = lp_ref_loadi(p, i);
        if ((st = int_list(c, 3, NULL, axes_l, &na)) != LP_OK) return st;
    }
    for (int d = 0; d < r; d++) begin[d] = 0;
    int n_ax = na >= 0 ? na : r;
    if (np != 2 * n_ax) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "pads has %d entries for %d axes", np, n_ax);
    for (int k = 0; k < n_ax; k++) {
        int ax;
        if (!lp_ref_axis(na >= 0 ? axes_l[k] : k, r, &ax))
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
        begin[ax] = raw[k];
        if (y->dims[ax] != x->dims[ax] + raw[k] + raw[k + n_ax])
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output dim %d does not match the pads", ax);
    }
    /* the constant as one element of x's dtype */
    uint8_t cval[8] = {0};
    lp_ref_tensor cv = {.data = cval, .dtype = x->dtype, .rank = 0};
    if (old) {
        lp_ref_storef(&cv, 0, lp_ref_attr_float(c, "value", 0.0f));
    } else if (lp_ref_in(c, 2)) {
        const lp_ref_tensor *v = lp_ref_in(c, 2);
        if (v->dtype != x->dtype) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "constant_value dtype differs");
        memcpy(cval, v->data, lp_ref_dtype_size(v->dtype));
    }
    int64_t xs[LP_MAX_RANK], coord[LP_MAX_RANK];
    lp_ref_strides(x, xs);
    size_t es = lp_ref_dtype_size(x->dtype);
    int64_t n = lp_ref_numel(y);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, r, y->dims, coord);
        int64_t off = 0;
        bool outside = false;
        for (int d = 0; d < r && !outside; d++) {
            int64_t p = coord[d] - begin[d], dim = x->dims[d];
            if (p < 0 || p >= dim) {
                if (m == 0 || dim == 0) {
                    outside = true;
                    break;
                }
                if (m == 2) p = p < 0 ? 0 : dim - 1;
                else if (m == 3) p = ((p % dim) + dim) % dim;
                else if (dim == 1) p = 0;
                else {
                    int64_t period = 2 * (dim - 1);
                    p = ((p % period) + period) % period;
                    if (p >= dim) p = period - p;
                }
            }
            off += p * xs[d];
        }
        if (outside) memcpy((char *)y->data + (size_t)i * es, cval, es);
        else lp_ref_copy_elem(y, i, x, off, es);
    }
    return LP_OK;
}

lp_status lp_ref_cumsum(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if ((st = same_dtype(c, x, y)) != LP_OK) return st;
    int axis;
    if (!lp_ref_axis(scalar_i(lp_ref_in(c, 1)), x->rank, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    bool excl = lp_ref_attr_int(c, "exclusive", 0) != 0, rev = lp_ref_attr_int(c, "reverse", 0) != 0;
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis + 1, x->rank);
    int64_t dim = x->dims[axis];
    bool fl = lp_ref_is_float(x->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            double accf = 0;
            int64_t acci = 0;
            for (int64_t j = 0; j < dim; j++) {
                int64_t a = rev ? dim - 1 - j : j, at = (o * dim + a) * inner + in;
                if (fl) {
                    float v = lp_ref_loadf(x, at);
                    if (excl) { lp_ref_storef(y, at, (float)accf); accf += v; }
                    else { accf += v; lp_ref_storef(y, at, (float)accf); }
                } else {
                    int64_t v = lp_ref_loadi(x, at);
                    if (excl) { lp_ref_storei(y, at, acci); acci += v; }
                    else { acci += v; lp_ref_storei(y, at, acci); }
                }
            }
        }
    return LP_OK;
}
