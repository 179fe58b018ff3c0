/* ref_nn.c - MatMul, Gemm, Conv, pooling, normalisations, Softmax and the
 * reductions. Products and sums accumulate in double and are stored at the
 * output's dtype, so that the reference is at least as exact as any fp32
 * kernel it checks. */
#include <math.h>

#include "ref_internal.h"

static int64_t prod(const int64_t *dims, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= dims[d];
    return p;
}

static void unravel(int64_t i, int rank, const int64_t *dims, int64_t *coord) {
    for (int d = rank - 1; d >= 0; d--) {
        coord[d] = dims[d] ? i % dims[d] : 0;
        if (dims[d]) i /= dims[d];
    }
}

lp_status lp_ref_matmul(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *a = lp_ref_in(c, 0), *b = lp_ref_in(c, 1);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if (a->rank < 1 || b->rank < 1) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "a scalar operand");
    /* 1-D operands: A gets a leading 1, B a trailing 1, both dropped from Y */
    int64_t m = a->rank >= 2 ? a->dims[a->rank - 2] : 1, k = a->dims[a->rank - 1];
    int64_t kb = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    int64_t nn = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (k != kb) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "inner dims %lld and %lld differ",
                                    (long long)k, (long long)kb);
    lp_ref_tensor ab = {.rank = a->rank >= 2 ? a->rank - 2 : 0};
    lp_ref_tensor bb = {.rank = b->rank >= 2 ? b->rank - 2 : 0};
    memcpy(ab.dims, a->dims, sizeof(int64_t) * (size_t)ab.rank);
    memcpy(bb.dims, b->dims, sizeof(int64_t) * (size_t)bb.rank);
    int yb_rank = y->rank - (a->rank >= 2) - (b->rank >= 2);
    if (yb_rank < 0) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output rank too small");
    int64_t sa[LP_MAX_RANK], sb[LP_MAX_RANK], coord[LP_MAX_RANK];
    if (!lp_ref_bcast_strides(&ab, yb_rank, y->dims, sa) ||
        !lp_ref_bcast_strides(&bb, yb_rank, y->dims, sb))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "batch dims do not broadcast to the output");
    int64_t batches = prod(y->dims, 0, yb_rank);
    if (lp_ref_numel(y) != batches * m * nn)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output size does not match the operands");
    bool fl = lp_ref_is_float(y->dtype);
    for (int64_t bi = 0; bi < batches; bi++) {
        unravel(bi, yb_rank, y->dims, coord);
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < yb_rank; d++) {
            oa += coord[d] * sa[d];
            ob += coord[d] * sb[d];
        }
        oa *= m * k;
        ob *= k * nn;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < nn; j++) {
                int64_t at = (bi * m + i) * nn + j;
                if (fl) {
                    double acc = 0;
                    for (int64_t q = 0; q < k; q++)
                        acc += (double)lp_ref_loadf(a, oa + i * k + q) *
                               lp_ref_loadf(b, ob + q * nn + j);
                    lp_ref_storef(y, at, (float)acc);
                } else {
                    int64_t acc = 0;
                    for (int64_t q = 0; q < k; q++)
                        acc += lp_ref_loadi(a, oa + i * k + q) * lp_ref_loadi(b, ob + q * nn + j);
                    lp_ref_storei(y, at, acc);
                }
            }
    }
    return LP_OK;
}

lp_status lp_ref_gemm(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *a = lp_ref_in(c, 0), *b = lp_ref_in(c, 1), *cc = lp_ref_in(c, 2);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if (a->rank != 2 || b->rank != 2 || y->rank != 2)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "A, B and Y must be matrices");
    bool ta = lp_ref_attr_int(c, "transA", 0) != 0, tb = lp_ref_attr_int(c, "transB", 0) != 0;
    double alpha = lp_ref_attr_float(c, "alpha", 1.0f), beta = lp_ref_attr_float(c, "beta", 1.0f);
    int64_t m = ta ? a->dims[1] : a->dims[0], k = ta ? a->dims[0] : a->dims[1];
    int64_t kb = tb ? b->dims[1] : b->dims[0], n = tb ? b->dims[0] : b->dims[1];
    if (k != kb || y->dims[0] != m || y->dims[1] != n)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "shapes of A, B and Y do not agree");
    int64_t sc[2] = {0, 0};
    if (cc && !lp_ref_bcast_strides(cc, 2, y->dims, sc))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "C does not broadcast to [M, N]");
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t q = 0; q < k; q++)
                acc += (double)lp_ref_loadf(a, ta ? q * m + i : i * k + q) *
                       lp_ref_loadf(b, tb ? j * k + q : q * n + j);
            acc *= alpha;
            if (cc) acc += beta * lp_ref_loadf(cc, i * sc[0] + j * sc[1]);
            lp_ref_storef(y, i * n + j, (float)acc);
        }
    return LP_OK;
}

/* The spatial geometry shared by Conv and the pools. */
typedef struct window {
    int ns;                          /* spatial rank */
    int64_t in[LP_MAX_RANK], out[LP_MAX_RANK], k[LP_MAX_RANK];
    int64_t stride[LP_MAX_RANK], dil[LP_MAX_RANK], pad0[LP_MAX_RANK], pad1[LP_MAX_RANK];
} window;

static lp_status ints_attr(const lp_ref_call *c, const char *name, int n, int64_t fill, int64_t *out) {
    const lp_attr *a = lp_ref_attr(c, name);
    for (int i = 0; i < n; i++) out[i] = fill;
    if (!a) return LP_OK;
    if (a->type != LP_ATTR_INTS || a->n != n)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "%s must have %d entries", name, n);
    for (int i = 0; i < n; i++) out[i] = a->ints[i];
    return LP_OK;
}

/* Fills w from X's and Y's dims, the kernel dims and the attributes. */
static lp_status window_make(const lp_ref_call *c, const lp_ref_tensor *x, const lp_ref_tensor *y,
                             const int64_t *kdims, window *w) {
    w->ns = x->rank - 2;
    if (w->ns < 1 || y->rank != x->rank)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, spatial...] and Y the same rank");
    lp_status st;
    int64_t pads[2 * LP_MAX_RANK];
    if ((st = ints_attr(c, "strides", w->ns, 1, w->stride)) != LP_OK ||
        (st = ints_attr(c, "dilations", w->ns, 1, w->dil)) != LP_OK ||
        (st = ints_attr(c, "pads", 2 * w->ns, 0, pads)) != LP_OK)
        return st;
    const char *ap = lp_ref_attr_string(c, "auto_pad", "NOTSET");
    for (int d = 0; d < w->ns; d++) {
        w->in[d] = x->dims[2 + d];
        w->out[d] = y->dims[2 + d];
        w->k[d] = kdims[d];
        if (w->stride[d] < 1 || w->dil[d] < 1)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "strides and dilations must be >= 1");
        int64_t span = (w->k[d] - 1) * w->dil[d] + 1;
        if (strcmp(ap, "NOTSET") == 0) {
            w->pad0[d] = pads[d];
            w->pad1[d] = pads[d + w->ns];
        } else if (strcmp(ap, "VALID") == 0) {
            w->pad0[d] = w->pad1[d] = 0;
        } else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            int64_t total = (w->out[d] - 1) * w->stride[d] + span - w->in[d];
            if (total < 0) total = 0;
            w->pad0[d] = ap[5] == 'U' ? total / 2 : total - total / 2;
            w->pad1[d] = total - w->pad0[d];
        } else {
            return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "auto_pad '%s' is not known", ap);
        }
    }
    return LP_OK;
}

lp_status lp_ref_conv(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0), *wt = lp_ref_in(c, 1), *bias = lp_ref_in(c, 2);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if (wt->rank != x->rank) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "W rank differs from X's");
    window w;
    if ((st = window_make(c, x, y, wt->dims + 2, &w)) != LP_OK) return st;
    int64_t ks[LP_MAX_RANK];
    if ((st = ints_attr(c, "kernel_shape", w.ns, 0, ks)) != LP_OK) return st;
    if (lp_ref_attr(c, "kernel_shape"))
        for (int d = 0; d < w.ns; d++)
            if (ks[d] != w.k[d]) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "kernel_shape differs from W");
    int64_t g = lp_ref_attr_int(c, "group", 1), n = x->dims[0], ci = x->dims[1], co = wt->dims[0];
    if (g < 1 || ci % g || co % g || wt->dims[1] != ci / g || y->dims[0] != n || y->dims[1] != co)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "channels of X, W, Y and group %lld do not agree",
                           (long long)g);
    if (bias && lp_ref_numel(bias) != co) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "B is not [M]");
    int64_t cig = ci / g, cog = co / g, osz = prod(w.out, 0, w.ns), ksz = prod(w.k, 0, w.ns);
    int64_t isz = prod(w.in, 0, w.ns), oc[LP_MAX_RANK], kc[LP_MAX_RANK];
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < co; o++) {
            int64_t grp = o / cog;
            for (int64_t p = 0; p < osz; p++) {
                unravel(p, w.ns, w.out, oc);
                double acc = bias ? lp_ref_loadf(bias, o) : 0.0;
                for (int64_t q = 0; q < ksz; q++) {
                    unravel(q, w.ns, w.k, kc);
                    int64_t off = 0;
                    bool inside = true;
                    for (int d = 0; d < w.ns && inside; d++) {
                        int64_t pos = oc[d] * w.stride[d] - w.pad0[d] + kc[d] * w.dil[d];
                        inside = pos >= 0 && pos < w.in[d];
                        off = off * w.in[d] + pos;
                    }
                    if (!inside) continue;
                    for (int64_t ch = 0; ch < cig; ch++)
                        acc += (double)lp_ref_loadf(x, (b * ci + grp * cig + ch) * isz + off) *
                               lp_ref_loadf(wt, (o * cig + ch) * ksz + q);
                }
                lp_ref_storef(y, (b * co + o) * osz + p, (float)acc);
            }
        }
    return LP_OK;
}

lp_status lp_ref_pool(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0), *ind = lp_ref_out(c, 1);
    bool is_max = c->op == LP_OP_MaxPool;
    int ns = x->rank - 2;
    if (ns < 1) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, spatial...]");
    const lp_attr *ka = lp_ref_attr(c, "kernel_shape");
    if (!ka || ka->type != LP_ATTR_INTS || ka->n != ns)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "kernel_shape must have %d entries", ns);
    window w;
    if ((st = window_make(c, x, y, ka->ints, &w)) != LP_OK) return st;
    int64_t order = lp_ref_attr_int(c, "storage_order", 0);
    if (order != 0 && order != 1)
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "storage_order %lld is not 0 or 1", (long long)order);
    if (ind && ind->dtype != LP_DT_INT64) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "Indices must be int64");
    bool incl = lp_ref_attr_int(c, "count_include_pad", 0) != 0;
    int64_t nc = x->dims[0] * x->dims[1];
    if (y->dims[0] * y->dims[1] != nc) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "N, C of Y differ");
    int64_t osz = prod(w.out, 0, ns), ksz = prod(w.k, 0, ns), isz = prod(w.in, 0, ns);
    int64_t oc[LP_MAX_RANK], kc[LP_MAX_RANK];
    bool fl = lp_ref_is_float(x->dtype);
    for (int64_t b = 0; b < nc; b++)
        for (int64_t p = 0; p < osz; p++) {
            unravel(p, ns, w.out, oc);
            double acc = is_max ? -INFINITY : 0.0;
            int64_t acci = INT64_MIN, arg = -1, count = 0;
            for (int64_t q = 0; q < ksz; q++) {
                unravel(q, ns, w.k, kc);
                int64_t off = 0, col = 0, colstride = 1;
                bool inside = true, in_padded = true;
                for (int d = 0; d < ns; d++) {
                    int64_t pos = oc[d] * w.stride[d] - w.pad0[d] + kc[d] * w.dil[d];
                    if (pos < 0 || pos >= w.in[d]) inside = false;
                    if (pos < -w.pad0[d] || pos >= w.in[d] + w.pad1[d]) in_padded = false;
                    off = off * w.in[d] + pos;
                    col += pos * colstride; /* storage_order 1: first spatial dim fastest */
                    colstride *= w.in[d];
                }
                if (incl ? in_padded : inside) count++;
                if (!inside) continue;
                int64_t where = b * isz + (order ? col : off);
                if (is_max && !fl) {
                    int64_t v = lp_ref_loadi(x, b * isz + off);
                    if (v > acci) { acci = v; arg = where; }
                } else {
                    double v = lp_ref_loadf(x, b * isz + off);
                    if (is_max) {
                        if (v > acc || arg < 0) { acc = v; arg = where; }
                    } else {
                        acc += v;
                    }
                }
            }
            if (is_max && !fl) lp_ref_storei(y, b * osz + p, acci);
            else if (is_max) lp_ref_storef(y, b * osz + p, (float)acc);
            else lp_ref_storef(y, b * osz + p, count ? (float)(acc / (double)count) : NAN);
            if (ind) lp_ref_storei(ind, b * osz + p, arg);
        }
    return LP_OK;
}

lp_status lp_ref_global_pool(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    if (x->rank < 2) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, ...]");
    int64_t nc = x->dims[0] * x->dims[1], sz = prod(x->dims, 2, x->rank);
    if (lp_ref_numel(y) != nc) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "Y must be [N, C, 1...]");
    bool is_max = c->op == LP_OP_GlobalMaxPool;
    for (int64_t b = 0; b < nc; b++) {
        double acc = is_max ? -INFINITY : 0.0;
        for (int64_t i = 0; i < sz; i++) {
            double v = lp_ref_loadf(x, b * sz + i);
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
        lp_ref_storef(y, b, (float)(is_max ? acc : acc / (double)sz));
    }
    return LP_OK;
}

lp_status lp_ref_batchnorm(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 5, 1);
    if (st != LP_OK) return st;
    if (lp_ref_attr_int(c, "training_mode", 0) != 0 || lp_ref_out(c, 1))
        return lp_ref_fail(c, LP_ERR_UNSUPPORTED, "training mode (batch statistics, running mean "
                           "outputs); the reference covers inference only");
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    double eps = lp_ref_attr_float(c, "epsilon", 1e-5f);
    if (x->rank < 2 || lp_ref_numel(y) != lp_ref_numel(x))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "X must be [N, C, ...] and Y its shape");
    int64_t n = x->dims[0], ch = x->dims[1], sz = prod(x->dims, 2, x->rank);
    for (int k = 1; k < 5; k++)
        if (lp_ref_numel(lp_ref_in(c, k)) != ch)
            return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "input %d is not [C]", k);
    for (int64_t ci = 0; ci < ch; ci++) {
        double s = lp_ref_loadf(lp_ref_in(c, 1), ci), bb = lp_ref_loadf(lp_ref_in(c, 2), ci);
        double mean = lp_ref_loadf(lp_ref_in(c, 3), ci), var = lp_ref_loadf(lp_ref_in(c, 4), ci);
        double scale = s / sqrt(var + eps);
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < sz; i++) {
                int64_t at = (b * ch + ci) * sz + i;
                lp_ref_storef(y, at, (float)((lp_ref_loadf(x, at) - mean) * scale + bb));
            }
    }
    return LP_OK;
}

lp_status lp_ref_layernorm(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 2, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0), *s = lp_ref_in(c, 1), *bias = lp_ref_in(c, 2);
    lp_ref_tensor *y = lp_ref_out(c, 0), *mo = lp_ref_out(c, 1), *io = lp_ref_out(c, 2);
    int axis;
    if (!lp_ref_axis(lp_ref_attr_int(c, "axis", -1), x->rank, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    double eps = lp_ref_attr_float(c, "epsilon", 1e-5f);
    int64_t outer = prod(x->dims, 0, axis), inner = prod(x->dims, axis, x->rank);
    if (lp_ref_numel(y) != lp_ref_numel(x)) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "Y differs from X");
    /* Scale and B broadcast to the normalised shape X.shape[axis:] */
    lp_ref_tensor norm = {.rank = x->rank - axis};
    memcpy(norm.dims, x->dims + axis, sizeof(int64_t) * (size_t)norm.rank);
    int64_t ss[LP_MAX_RANK], sb[LP_MAX_RANK], coord[LP_MAX_RANK];
    if (!lp_ref_bcast_strides(s, norm.rank, norm.dims, ss) ||
        (bias && !lp_ref_bcast_strides(bias, norm.rank, norm.dims, sb)))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "Scale or B does not broadcast to X.shape[axis:]");
    if ((mo && lp_ref_numel(mo) != outer) || (io && lp_ref_numel(io) != outer))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "Mean or InvStdDev has the wrong size");
    for (int64_t o = 0; o < outer; o++) {
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < inner; i++) sum += lp_ref_loadf(x, o * inner + i);
        double mean = inner ? sum / (double)inner : 0;
        for (int64_t i = 0; i < inner; i++) {
            double dv = lp_ref_loadf(x, o * inner + i) - mean;
            sq += dv * dv;
        }
        double inv = 1.0 / sqrt((inner ? sq / (double)inner : 0) + eps);
        for (int64_t i = 0; i < inner; i++) {
            unravel(i, norm.rank, norm.dims, coord);
            int64_t os = 0, ob = 0;
            for (int d = 0; d < norm.rank; d++) {
                os += coord[d] * ss[d];
                if (bias) ob += coord[d] * sb[d];
            }
            double v = (lp_ref_loadf(x, o * inner + i) - mean) * inv * lp_ref_loadf(s, os);
            if (bias) v += lp_ref_loadf(bias, ob);
            lp_ref_storef(y, o * inner + i, (float)v);
        }
        if (mo) lp_ref_storef(mo, o, (float)mean);
        if (io) lp_ref_storef(io, o, (float)inv);
    }
    return LP_OK;
}

lp_status lp_ref_softmax(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    bool flat = c->opset < 13, is_log = c->op == LP_OP_LogSoftmax;
    int axis;
    if (!lp_ref_axis(lp_ref_attr_int(c, "axis", flat ? 1 : -1), x->rank, &axis))
        return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
    if (lp_ref_numel(y) != lp_ref_numel(x)) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "Y differs from X");
    /* opset < 13: X is flattened to 2-D at axis; from 13 on, one axis */
    int64_t outer = prod(x->dims, 0, axis);
    int64_t dim = flat ? prod(x->dims, axis, x->rank) : x->dims[axis];
    int64_t inner = flat ? 1 : prod(x->dims, axis + 1, x->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = o * dim * inner + in;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < dim; j++) {
                double v = lp_ref_loadf(x, base + j * inner);
                if (v > mx) mx = v;
            }
            for (int64_t j = 0; j < dim; j++) sum += exp(lp_ref_loadf(x, base + j * inner) - mx);
            for (int64_t j = 0; j < dim; j++) {
                double v = lp_ref_loadf(x, base + j * inner) - mx;
                lp_ref_storef(y, base + j * inner, (float)(is_log ? v - log(sum) : exp(v) / sum));
            }
        }
    return LP_OK;
}

lp_status lp_ref_reduce(const lp_ref_call *c) {
    lp_status st = lp_ref_need(c, 1, 1);
    if (st != LP_OK) return st;
    const lp_ref_tensor *x = lp_ref_in(c, 0);
    lp_ref_tensor *y = lp_ref_out(c, 0);
    int r = x->rank;
    bool red[LP_MAX_RANK];
    int64_t axes[LP_MAX_RANK];
    int na = -1;
    const lp_ref_tensor *at = lp_ref_in(c, 1);
    if (at) {
        na = (int)lp_ref_numel(at);
        if (na > LP_MAX_RANK) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "too many axes");
        for (int i = 0; i < na; i++) axes[i] = lp_ref_loadi(at, i);
    } else {
        const lp_attr *a = lp_ref_attr(c, "axes");
        if (a && a->type == LP_ATTR_INTS) {
            if (a->n > LP_MAX_RANK) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "too many axes");
            na = a->n;
            for (int i = 0; i < na; i++) axes[i] = a->ints[i];
        }
    }
    bool noop = lp_ref_attr_int(c, "noop_with_empty_axes", 0) != 0;
    for (int d = 0; d < r; d++) red[d] = na <= 0 && !noop;
    for (int i = 0; i < na; i++) {
        int ax;
        if (!lp_ref_axis(axes[i], r, &ax)) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "axis out of range");
        red[ax] = true;
    }
    /* the output over X's rank, reduced dims of size 1 */
    int64_t odims[LP_MAX_RANK], coord[LP_MAX_RANK], s = 1;
    for (int d = 0; d < r; d++) {
        odims[d] = red[d] ? 1 : x->dims[d];
        s *= odims[d];
    }
    int64_t ny = lp_ref_numel(y), nx = lp_ref_numel(x);
    if (ny != s) return lp_ref_fail(c, LP_ERR_INVALID_MODEL, "output has %lld elements, the reduction %lld",
                                    (long long)ny, (long long)s);
    int64_t count = ny ? nx / (ny ? ny : 1) : 0;
    bool fl = lp_ref_is_float(x->dtype) || c->op == LP_OP_ReduceMean;
    int op = c->op;
    /* one pass per output over its reduced sub-box, accumulated in double
     * (int64 for integers) rather than in y at its own dtype */
    for (int64_t o = 0; o < ny; o++) {
        double acc = op == LP_OP_ReduceMax ? -INFINITY : op == LP_OP_ReduceMin ? INFINITY
                   : op == LP_OP_ReduceProd ? 1.0 : 0.0;
        int64_t acci = op == LP_OP_ReduceMax ? INT64_MIN : op == LP_OP_ReduceMin ? INT64_MAX
                     : op == LP_OP_ReduceProd ? 1 : 0;
        unravel(o, r, odims, coord);
        /* walk the reduced sub-box: its dims are x's reduced dims */
        int64_t rdims[LP_MAX_RANK], rc[LP_MAX_RANK], xs[LP_MAX_RANK];
        lp_ref_strides(x, xs);
        int64_t base = 0, box = 1;
        for (int d = 0; d < r; d++) {
            rdims[d] = red[d] ? x->dims[d] : 1;
            box *= rdims[d];
            base += (red[d] ? 0 : coord[d]) * xs[d];
        }
        for (int64_t q = 0; q < box; q++) {
            unravel(q, r, rdims, rc);
            int64_t off = base;
            for (int d = 0; d < r; d++) off += rc[d] * xs[d];
            if (fl) {
                double v = lp_ref_loadf(x, off);
                switch (op) {
                case LP_OP_ReduceMax: if (v > acc || isnan(v)) acc = v; break;
                case LP_OP_ReduceMin: if (v < acc || isnan(v)) acc = v; break;
                case LP_OP_ReduceProd: acc *= v; break;
                case LP_OP_ReduceSumSquare: acc += v * v; break;
                default: acc += v; break;
                }
            } else {
                int64_t v = lp_ref_loadi(x, off);
                switch (op) {
                case LP_OP_ReduceMax: if (v > acci) acci = v; break;
                case LP_OP_ReduceMin: if (v < acci) acci = v; break;
                case LP_OP_ReduceProd: acci *= v; break;
                case LP_OP_ReduceSumSquare: acci += v * v; break;
                default: acci += v; break;
                }
            }
        }
        if (op == LP_OP_ReduceMean) acc = count ? acc / (double)count : NAN;
        if (fl) lp_ref_storef(y, o, (float)acc);
        else lp_ref_storei(y, o, acci);
    }
    return LP_OK;
}
