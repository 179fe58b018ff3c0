/* Shape rules of the compute ops: MatMul, Gemm, Einsum, normalisations,
 * reductions, convolutions and pooling. */
#include "infer_internal.h"

#include <string.h>

#define MAXL LP_FOLD_MAX_ELEMS

static const lp_value *need(lp_infer *cx, const lp_node *n, int i, lp_status *st) {
    const lp_value *v = lp_infer_input(cx, n, i);
    if (!v) *st = lp_infer_bad(cx, n, "input %d is required", i);
    return v;
}

/* Inner dims of a product must agree where both are numbers. */
static lp_status check_inner(lp_infer *cx, const lp_node *n, lp_dim a, lp_dim b) {
    if (lp_dim_is_num(a) && lp_dim_is_num(b) && a.size != b.size)
        return lp_infer_bad(cx, n, "inner dims differ: %lld and %lld", (long long)a.size, (long long)b.size);
    return LP_OK;
}

/* numpy matmul: 1-D operands are promoted and the added axis dropped;
 * leading (batch) axes broadcast. */
lp_status lp_infer_MatMul(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *a = need(cx, n, 0, &st), *b = need(cx, n, 1, &st);
    if (!a || !b) return st;
    int ra = a->shape.rank, rb = b->shape.rank;
    if (ra < 1 || rb < 1) return lp_infer_bad(cx, n, "MatMul operands must have rank >= 1");
    const lp_dim *da = a->shape.dims, *db = b->shape.dims;
    lp_dim ka = da[ra - 1], kb = rb == 1 ? db[0] : db[rb - 2];
    if ((st = check_inner(cx, n, ka, kb)) != LP_OK) return st;
    int ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0, nb = ba > bb ? ba : bb;
    lp_dim *d = lp_infer_dims(cx, nb + 2);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < nb; k++) {
        lp_dim x = k - (nb - ba) >= 0 ? da[k - (nb - ba)] : lp_dim_num(1);
        lp_dim y = k - (nb - bb) >= 0 ? db[k - (nb - bb)] : lp_dim_num(1);
        if (!lp_dim_broadcast(x, y, &d[k]))
            return lp_infer_bad(cx, n, "batch axis %d does not broadcast: %lld and %lld", k, (long long)x.size,
                                (long long)y.size);
    }
    int r = nb;
    if (ra >= 2) d[r++] = da[ra - 2];
    if (rb >= 2) d[r++] = db[rb - 1];
    return lp_infer_output(cx, n, 0, a->dtype, r, d);
}

lp_status lp_infer_Gemm(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *a = need(cx, n, 0, &st), *b = need(cx, n, 1, &st);
    if (!a || !b) return st;
    if (a->shape.rank != 2 || b->shape.rank != 2) return lp_infer_bad(cx, n, "Gemm operands must have rank 2");
    bool ta = lp_node_attr_int(n, "transA", 0), tb = lp_node_attr_int(n, "transB", 0);
    lp_dim m = a->shape.dims[ta ? 1 : 0], ka = a->shape.dims[ta ? 0 : 1];
    lp_dim kb = b->shape.dims[tb ? 1 : 0], nn = b->shape.dims[tb ? 0 : 1];
    if ((st = check_inner(cx, n, ka, kb)) != LP_OK) return st;
    lp_dim d[2] = {m, nn};
    return lp_infer_output(cx, n, 0, a->dtype, 2, d);
}

/* ---- Einsum: "bij,bjk->bik", with "..." and implicit outputs ------------------- */

typedef struct einsum_term {
    char labels[64];
    int n;        /* labels, '.' standing for the ellipsis */
} einsum_term;

static bool einsum_parse_term(const char *s, size_t len, einsum_term *t) {
    t->n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ' ') continue;
        if (c == '.') {
            if (i + 2 >= len) return false;
            if (s[i + 1] != '.' || s[i + 2] != '.') return false;
            i += 2;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
        if (t->n == (int)sizeof t->labels) return false;
        t->labels[t->n++] = c;
    }
    return true;
}

lp_status lp_infer_Einsum(lp_infer *cx, const lp_node *n) {
    const char *eq = lp_node_attr_string(n, "equation", NULL);
    if (!eq) return lp_infer_bad(cx, n, "attribute 'equation' is required");
    lp_status st = LP_OK;
    const lp_value *x0 = need(cx, n, 0, &st); /* the output takes its dtype */
    if (!x0) return st;
    const char *arrow = strstr(eq, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    lp_dim size_of[128];
    bool seen[128] = {false};
    int count[128] = {0};
    lp_dim ell[16];
    int ell_rank = 0;
    const char *p = eq;
    for (int i = 0; i < n->n_inputs; i++) {
        const char *comma = memchr(p, ',', lhs_len - (size_t)(p - eq));
        size_t len = comma ? (size_t)(comma - p) : lhs_len - (size_t)(p - eq);
        einsum_term t;
        const lp_value *v = lp_infer_input(cx, n, i);
        if (!v || !einsum_parse_term(p, len, &t)) return lp_infer_bad(cx, n, "cannot read equation '%s'", eq);
        int has_ell = memchr(t.labels, '.', (size_t)t.n) != NULL;
        int er = v->shape.rank - (t.n - has_ell);
        if (er < 0 || (!has_ell && er != 0) || er > 16)
            return lp_infer_bad(cx, n, "input %d has rank %d, which does not match '%.*s'", i, v->shape.rank, (int)len, p);
        int k = 0;
        for (int l = 0; l < t.n; l++) {
            char c = t.labels[l];
            if (c == '.') {
                /* ellipsis dims broadcast across inputs, right-aligned */
                for (int e = 0; e < er; e++) {
                    int slot = e + (ell_rank > er ? ell_rank - er : 0);
                    if (er > ell_rank) {
                        memmove(ell + (er - ell_rank), ell, (size_t)ell_rank * sizeof *ell);
                        for (int z = 0; z < er - ell_rank; z++) ell[z] = lp_dim_num(1);
                        ell_rank = er;
                        slot = e;
                    }
                    lp_dim b;
                    if (!lp_dim_broadcast(ell[slot], v->shape.dims[k + e], &b))
                        return lp_infer_bad(cx, n, "ellipsis dims do not broadcast");
                    ell[slot] = b;
                }
                k += er;
                continue;
            }
            lp_dim dm = v->shape.dims[k++];
            if (seen[(int)c] && lp_dim_is_num(size_of[(int)c]) && lp_dim_is_num(dm) &&
                size_of[(int)c].size != dm.size && dm.size != 1 && size_of[(int)c].size != 1)
                return lp_infer_bad(cx, n, "label '%c' has sizes %lld and %lld", c,
                                    (long long)size_of[(int)c].size, (long long)dm.size);
            if (!seen[(int)c] || (lp_dim_is_num(size_of[(int)c]) && size_of[(int)c].size == 1))
                size_of[(int)c] = dm;
            seen[(int)c] = true;
            count[(int)c]++;
        }
        p += len + (comma ? 1 : 0);
    }
    einsum_term out;
    if (arrow) {
        if (!einsum_parse_term(arrow + 2, strlen(arrow + 2), &out))
            return lp_infer_bad(cx, n, "cannot read equation '%s'", eq);
    } else {
        /* implicit output: the ellipsis, then labels used once, sorted */
        out.n = 0;
        if (ell_rank) out.labels[out.n++] = '.';
        for (int c = 'A'; c <= 'z'; c++)
            if (count[c] == 1 && out.n < (int)sizeof out.labels) out.labels[out.n++] = (char)c;
    }
    lp_dim *d = lp_infer_dims(cx, out.n + ell_rank);
    if (!d) return LP_ERR_INTERNAL;
    int r = 0;
    for (int l = 0; l < out.n; l++) {
        char c = out.labels[l];
        if (c == '.') {
            for (int e = 0; e < ell_rank; e++) d[r++] = ell[e];
        } else if (!seen[(int)c]) {
            return lp_infer_bad(cx, n, "output label '%c' is not in any input", c);
        } else {
            d[r++] = size_of[(int)c];
        }
    }
    return lp_infer_output(cx, n, 0, x0->dtype, r, d);
}

/* ---- normalisations ------------------------------------------------------------- */

lp_status lp_infer_LayerNormalization(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, axis;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", -1), r, &axis)) != LP_OK) return st;
    if ((st = lp_infer_same(cx, n, 0, 0)) != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < r; k++) d[k] = k < axis ? x->shape.dims[k] : lp_dim_num(1);
    lp_dtype stash = (lp_dtype)lp_node_attr_int(n, "stash_type", LP_DT_FLOAT);
    for (int i = 1; i < 3 && st == LP_OK; i++) st = lp_infer_output(cx, n, i, stash, r, d);
    return st;
}

lp_status lp_infer_RMSNormalization(lp_infer *cx, const lp_node *n) { return lp_infer_same(cx, n, 0, 0); }

lp_status lp_infer_BatchNormalization(lp_infer *cx, const lp_node *n) {
    lp_status st = lp_infer_same(cx, n, 0, 0);
    /* training mode: running mean and variance, shaped like the inputs 3, 4 */
    for (int i = 1; i < n->n_outputs && i < 3 && st == LP_OK; i++) {
        const lp_value *src = lp_infer_input(cx, n, i + 2);
        if (src) st = lp_infer_output(cx, n, i, src->dtype, src->shape.rank, src->shape.dims);
    }
    return st;
}

/* ---- reductions ---------------------------------------------------------------- */

lp_status lp_infer_reduce(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, cnt = 0;
    int64_t axes[MAXL];
    bool keep = lp_node_attr_int(n, "keepdims", 1) != 0;
    bool noop = lp_node_attr_int(n, "noop_with_empty_axes", 0) != 0;
    lp_list_state ls = lp_infer_int_list(cx, n, "axes", 1, axes, MAXL, &cnt);
    if (ls == LP_LIST_UNKNOWN) {
        if (!keep) return lp_infer_output(cx, n, 0, x->dtype, LP_RANK_UNKNOWN, NULL);
        lp_dim *d = lp_infer_dims(cx, r);
        if (!d) return LP_ERR_INTERNAL;
        for (int k = 0; k < r; k++) d[k] = lp_dim_unknown();
        return lp_infer_output(cx, n, 0, x->dtype, r, d);
    }
    if (ls == LP_LIST_ABSENT) cnt = 0;
    if (cnt == 0 && noop) return lp_infer_same(cx, n, 0, 0);
    bool *mark = lp_arena_array(cx->g->arena, (size_t)r + 1, sizeof *mark);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!mark || !d) return LP_ERR_INTERNAL;
    for (int k = 0; k < r; k++) mark[k] = cnt == 0;
    for (int k = 0; k < cnt; k++) {
        int a;
        if ((st = lp_infer_axis(cx, n, axes[k], r, &a)) != LP_OK) return st;
        mark[a] = true;
    }
    int o = 0;
    for (int k = 0; k < r; k++) {
        if (!mark[k]) d[o++] = x->shape.dims[k];
        else if (keep) d[o++] = lp_dim_num(1);
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, o, d)) != LP_OK) return st;
    /* fold: the product or sum of a known 1-D tensor (element counts) */
    const lp_sval *s = lp_infer_known(cx, n, 0);
    int id = lp_node_op(n);
    bool prod = id == LP_OP_ReduceProd, sum = id == LP_OP_ReduceSum;
    if (!s || r != 1 || !mark[0] || !(prod || sum)) return LP_OK;
    lp_dim acc = lp_dim_num(prod ? 1 : 0);
    for (int k = 0; k < s->n; k++) {
        lp_dim e = lp_elem_to_dim(s->e[k]);
        if (lp_dim_is_unknown(e)) return LP_OK;
        acc = prod ? lp_dim_mul(cx->g->arena, acc, e) : lp_dim_add(acc, e);
    }
    lp_elem res = lp_elem_from_dim(acc);
    return lp_infer_set_known(cx, n, 0, 1, &res);
}

lp_status lp_infer_arg(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank, axis;
    if ((st = lp_infer_axis(cx, n, lp_node_attr_int(n, "axis", 0), r, &axis)) != LP_OK) return st;
    bool keep = lp_node_attr_int(n, "keepdims", 1) != 0;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    int o = 0;
    for (int k = 0; k < r; k++) {
        if (k != axis) d[o++] = x->shape.dims[k];
        else if (keep) d[o++] = lp_dim_num(1);
    }
    return lp_infer_output(cx, n, 0, LP_DT_INT64, o, d);
}

/* ---- convolution and pooling ---------------------------------------------------- */

typedef struct window {
    int n;              /* spatial axes */
    int64_t kernel[MAXL], stride[MAXL], dil[MAXL], pad[2 * MAXL];
    const char *auto_pad;
    bool ceil_mode;
} window;

static lp_status read_window(lp_infer *cx, const lp_node *n, int spatial, const lp_value *w, window *win) {
    const lp_attr *ks = lp_node_attr(n, "kernel_shape");
    if (spatial > MAXL) return lp_infer_bad(cx, n, "too many spatial axes (%d)", spatial);
    win->n = spatial;
    for (int k = 0; k < spatial; k++) {
        if (ks && ks->n == spatial) win->kernel[k] = ks->ints[k];
        else if (w && lp_dim_is_num(w->shape.dims[2 + k])) win->kernel[k] = w->shape.dims[2 + k].size;
        else return lp_infer_bad(cx, n, "the kernel shape is not known");
        if (win->kernel[k] < 1) return lp_infer_bad(cx, n, "kernel axis %d has size %lld", k, (long long)win->kernel[k]);
        win->stride[k] = win->dil[k] = 1;
        win->pad[k] = win->pad[k + spatial] = 0;
    }
    const lp_attr *s = lp_node_attr(n, "strides"), *dl = lp_node_attr(n, "dilations"), *p = lp_node_attr(n, "pads");
    if ((s && s->n != spatial) || (dl && dl->n != spatial) || (p && p->n != 2 * spatial))
        return lp_infer_bad(cx, n, "strides, dilations or pads do not match %d spatial axes", spatial);
    for (int k = 0; k < spatial; k++) {
        if (s) win->stride[k] = s->ints[k];
        if (dl) win->dil[k] = dl->ints[k];
        if (win->stride[k] <= 0 || win->dil[k] <= 0) return lp_infer_bad(cx, n, "strides and dilations must be > 0");
    }
    for (int k = 0; p && k < 2 * spatial; k++) win->pad[k] = p->ints[k];
    win->auto_pad = lp_node_attr_string(n, "auto_pad", "NOTSET");
    win->ceil_mode = lp_node_attr_int(n, "ceil_mode", 0) != 0;
    return LP_OK;
}

/* Window arithmetic in 128 bits: a kernel, dilation and padding of up to
 * 2^63 each cannot overflow it; the result must fit a dim again. */
typedef __int128 wide;
static wide div_ceil(wide a, wide b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static wide div_floor(wide a, wide b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static wide window_size(const window *w, int k, int64_t D) {
    wide eff = ((wide)w->kernel[k] - 1) * w->dil[k] + 1, s = w->stride[k];
    if (strncmp(w->auto_pad, "SAME", 4) == 0) return div_ceil(D, s);
    if (strcmp(w->auto_pad, "VALID") == 0) return div_floor(D - eff, s) + 1;
    wide span = (wide)D + w->pad[k] + w->pad[k + w->n] - eff;
    if (!w->ceil_mode) return div_floor(span, s) + 1;
    wide o = div_ceil(span, s) + 1;
    /* the last window must start inside the input or its left padding */
    if ((o - 1) * s >= (wide)D + w->pad[k]) o--;
    return o;
}

/* Output size of one windowed axis; false if it does not fit 64 bits. */
static bool window_out(const window *w, int k, lp_dim in, lp_dim *out) {
    bool same = strncmp(w->auto_pad, "SAME", 4) == 0;
    if (!lp_dim_is_num(in)) {
        *out = same && w->stride[k] == 1 ? in : lp_dim_unknown();
        return true;
    }
    wide o = window_size(w, k, in.size);
    /* sizes <= 0 come back as 0, which the callers report */
    *out = lp_dim_num(o > INT64_MAX ? INT64_MAX : o < 0 ? 0 : (int64_t)o);
    return o <= INT64_MAX;
}

lp_status lp_infer_Conv(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *w = need(cx, n, 1, &st);
    if (!x || !w) return st;
    int r = x->shape.rank;
    if (r < 3 || w->shape.rank != r) return lp_infer_bad(cx, n, "input rank %d and weight rank %d do not fit a convolution", r, w->shape.rank);
    window win;
    if ((st = read_window(cx, n, r - 2, w, &win)) != LP_OK) return st;
    int64_t group = lp_node_attr_int(n, "group", 1);
    lp_dim cin = x->shape.dims[1], wc = w->shape.dims[1];
    int64_t want = 0;
    if (group < 1) return lp_infer_bad(cx, n, "group is %lld", (long long)group);
    if (lp_dim_is_num(wc) && __builtin_mul_overflow(wc.size, group, &want))
        return lp_infer_bad(cx, n, "weight channels %lld x group %lld overflow 64 bits", (long long)wc.size,
                            (long long)group);
    if (lp_dim_is_num(cin) && lp_dim_is_num(wc) && cin.size != want)
        return lp_infer_bad(cx, n, "input has %lld channels but weight expects %lld x group %lld", (long long)cin.size,
                            (long long)wc.size, (long long)group);
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    d[0] = x->shape.dims[0];
    d[1] = w->shape.dims[0];
    for (int k = 0; k < r - 2; k++) {
        if (!window_out(&win, k, x->shape.dims[2 + k], &d[2 + k]))
            return lp_infer_bad(cx, n, "spatial axis %d is larger than 64 bits can count", k);
        if (lp_dim_is_num(d[2 + k]) && d[2 + k].size <= 0)
            return lp_infer_bad(cx, n, "spatial axis %d would have size %lld", k, (long long)d[2 + k].size);
    }
    return lp_infer_output(cx, n, 0, x->dtype, r, d);
}

lp_status lp_infer_ConvTranspose(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *w = need(cx, n, 1, &st);
    if (!x || !w) return st;
    int r = x->shape.rank, sp = r - 2;
    if (r < 3 || w->shape.rank != r) return lp_infer_bad(cx, n, "input rank %d and weight rank %d do not fit a convolution", r, w->shape.rank);
    window win;
    if ((st = read_window(cx, n, sp, w, &win)) != LP_OK) return st;
    int64_t group = lp_node_attr_int(n, "group", 1);
    const lp_attr *os = lp_node_attr(n, "output_shape"), *op = lp_node_attr(n, "output_padding");
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    d[0] = x->shape.dims[0];
    d[1] = lp_dim_mul(cx->g->arena, w->shape.dims[1], lp_dim_num(group));
    for (int k = 0; k < sp; k++) {
        lp_dim in = x->shape.dims[2 + k];
        int64_t eff = (win.kernel[k] - 1) * win.dil[k] + 1, outpad = op && op->n == sp ? op->ints[k] : 0;
        if (os && os->n >= sp) d[2 + k] = lp_dim_num(os->ints[os->n - sp + k]);
        else if (!lp_dim_is_num(in)) d[2 + k] = lp_dim_unknown();
        else if (strncmp(win.auto_pad, "SAME", 4) == 0) d[2 + k] = lp_dim_num(in.size * win.stride[k]);
        else
            d[2 + k] = lp_dim_num(win.stride[k] * (in.size - 1) + outpad + eff - win.pad[k] - win.pad[k + sp]);
    }
    return lp_infer_output(cx, n, 0, x->dtype, r, d);
}

lp_status lp_infer_pool(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank;
    if (r < 3) return lp_infer_bad(cx, n, "input must have rank >= 3, not %d", r);
    if (!lp_node_attr(n, "kernel_shape")) return lp_infer_bad(cx, n, "attribute 'kernel_shape' is required");
    window win;
    if ((st = read_window(cx, n, r - 2, NULL, &win)) != LP_OK) return st;
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    d[0] = x->shape.dims[0];
    d[1] = x->shape.dims[1];
    for (int k = 0; k < r - 2; k++) {
        if (!window_out(&win, k, x->shape.dims[2 + k], &d[2 + k]))
            return lp_infer_bad(cx, n, "spatial axis %d is larger than 64 bits can count", k);
        if (lp_dim_is_num(d[2 + k]) && d[2 + k].size <= 0)
            return lp_infer_bad(cx, n, "spatial axis %d would have size 0", k);
    }
    if ((st = lp_infer_output(cx, n, 0, x->dtype, r, d)) != LP_OK) return st;
    return lp_infer_output(cx, n, 1, LP_DT_INT64, r, d);
}

lp_status lp_infer_global_pool(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    int r = x->shape.rank;
    if (r < 2) return lp_infer_bad(cx, n, "input must have rank >= 2");
    lp_dim *d = lp_infer_dims(cx, r);
    if (!d) return LP_ERR_INTERNAL;
    for (int k = 0; k < r; k++) d[k] = k < 2 ? x->shape.dims[k] : lp_dim_num(1);
    return lp_infer_output(cx, n, 0, x->dtype, r, d);
}

/* ---- losses and quantisation ---------------------------------------------------- */

/* NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss: per-element losses
 * shaped like the target with reduction "none", else a scalar; the second
 * output of SoftmaxCrossEntropyLoss is the log-probabilities. */
lp_status lp_infer_loss(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *t = need(cx, n, 1, &st);
    if (!x || !t) return st;
    bool none = strcmp(lp_node_attr_string(n, "reduction", "mean"), "none") == 0;
    if (none) st = lp_infer_output(cx, n, 0, x->dtype, t->shape.rank, t->shape.dims);
    else st = lp_infer_output(cx, n, 0, x->dtype, 0, NULL);
    if (st == LP_OK && n->n_outputs > 1) st = lp_infer_same(cx, n, 1, 0);
    return st;
}

lp_status lp_infer_QuantizeLinear(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *zp = lp_infer_input(cx, n, 2);
    if (!x) return st;
    int64_t odt = lp_node_attr_int(n, "output_dtype", 0);
    lp_dtype dt = odt > 0 && odt < LP_DT_COUNT ? (lp_dtype)odt : zp ? zp->dtype : LP_DT_UINT8;
    return lp_infer_output(cx, n, 0, dt, x->shape.rank, x->shape.dims);
}

lp_status lp_infer_DequantizeLinear(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *scale = need(cx, n, 1, &st);
    if (!x || !scale) return st;
    int64_t odt = lp_node_attr_int(n, "output_dtype", 0);
    lp_dtype dt = odt > 0 && odt < LP_DT_COUNT ? (lp_dtype)odt : scale->dtype;
    return lp_infer_output(cx, n, 0, dt, x->shape.rank, x->shape.dims);
}

lp_status lp_infer_DynamicQuantizeLinear(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st);
    if (!x) return st;
    if ((st = lp_infer_output(cx, n, 0, LP_DT_UINT8, x->shape.rank, x->shape.dims)) != LP_OK) return st;
    if ((st = lp_infer_output(cx, n, 1, LP_DT_FLOAT, 0, NULL)) != LP_OK) return st;
    return lp_infer_output(cx, n, 2, LP_DT_UINT8, 0, NULL);
}

/* RNN, GRU, LSTM: X is [seq, batch, input] (layout 0) or [batch, seq,
 * input] (layout 1); Y adds the direction axis, Y_h and Y_c are the last
 * states. */
lp_status lp_infer_recurrent(lp_infer *cx, const lp_node *n) {
    lp_status st = LP_OK;
    const lp_value *x = need(cx, n, 0, &st), *r = need(cx, n, 2, &st);
    if (!x || !r) return st;
    if (x->shape.rank != 3 || r->shape.rank != 3) return lp_infer_bad(cx, n, "X and R must have rank 3");
    int64_t hidden = lp_node_attr_int(n, "hidden_size", -1);
    lp_dim h = hidden > 0 ? lp_dim_num(hidden) : r->shape.dims[2];
    const char *dir = lp_node_attr_string(n, "direction", "forward");
    lp_dim nd = lp_dim_num(strcmp(dir, "bidirectional") == 0 ? 2 : 1);
    bool bs = lp_node_attr_int(n, "layout", 0) != 0;
    lp_dim seq = x->shape.dims[bs ? 1 : 0], batch = x->shape.dims[bs ? 0 : 1];
    lp_dim y[4] = {seq, nd, batch, h}, yb[4] = {batch, seq, nd, h};
    lp_dim s[3] = {nd, batch, h}, sb[3] = {batch, nd, h};
    if ((st = lp_infer_output(cx, n, 0, x->dtype, 4, bs ? yb : y)) != LP_OK) return st;
    for (int i = 1; i < 3 && st == LP_OK; i++) st = lp_infer_output(cx, n, i, x->dtype, 3, bs ? sb : s);
    return st;
}
