/* persist_ref.c - the CPU executor of persistent programs (lp_persist.h).
 *
 * Runs the phases in order on the card's allocation; a phase's barrier
 * (sync) needs nothing here since every phase completes before the next.
 * Loads convert float16 / bfloat16 / float32 to fp32, element arithmetic is
 * fp32 (persist_ops.h, shared with the GPU executor), dot products and
 * reductions accumulate in double as the reference kernels do, and each
 * output element is rounded to its dtype once, at its store. A COPY whose
 * source and output have one dtype moves each element's bits (any dtype
 * lp_persist_esize knows); a COPY between two dtypes casts float ones.
 *
 * Views read through their strides. Outputs of LAYERNORM and SOFTMAX, and
 * the operands a GEMM phase calls contiguous, are dense row-major; the
 * other outputs are written through their strides. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lp_persist.h"
#include "lp_ref.h"
#include "persist_ops.h"

/* Element el (in elements from the view's offset) of v, as fp32. */
static float load(const unsigned char *base, const lp_persist_view *v, int64_t el) {
    const unsigned char *at = base + v->offset + (uint64_t)(el * lp_persist_esize(v->dtype));
    if (v->dtype == LP_DT_FLOAT) {
        float f;
        memcpy(&f, at, sizeof f);
        return f;
    }
    uint16_t h;
    memcpy(&h, at, sizeof h);
    return v->dtype == LP_DT_FLOAT16 ? lp_ref_f16_to_f32(h) : lp_ref_bf16_to_f32(h);
}

/* Stores x into element el of ph's output (at lp_persist_out), rounded
 * to nearest even. */
static void store(const lp_persist_phase *ph, unsigned char *base, int64_t el, float x) {
    const lp_persist_view *v = &ph->out;
    unsigned char *at = lp_persist_out(ph, base) + (uint64_t)(el * lp_persist_esize(v->dtype));
    if (v->dtype == LP_DT_FLOAT) {
        memcpy(at, &x, sizeof x);
        return;
    }
    uint16_t h = v->dtype == LP_DT_FLOAT16 ? lp_ref_f32_to_f16(x) : lp_ref_f32_to_bf16(x);
    memcpy(at, &h, sizeof h);
}

/* x rounded to nearest even in dtype dt, back as fp32. */
static float round_to(float x, int dt) {
    if (dt == LP_DT_FLOAT16) return lp_ref_f16_to_f32(lp_ref_f32_to_f16(x));
    if (dt == LP_DT_BFLOAT16) return lp_ref_bf16_to_f32(lp_ref_f32_to_bf16(x));
    return x;
}

/* The element offset in v of the element whose row-major index over
 * dims[rank] is flat (v has that rank; its strides place it). */
static int64_t view_elem(const lp_persist_view *v, int rank, const int64_t *dims, int64_t flat) {
    int64_t el = 0;
    for (int k = rank - 1; k >= 0; k--) {
        if (dims[k] > 0) {
            el += (flat % dims[k]) * v->strides[k];
            flat /= dims[k];
        }
    }
    return el;
}

/* Where the output element of row-major index flat lies (outputs may be
 * strided when a transposing copy was folded into the phase that writes). */
static int64_t out_elem(const lp_persist_view *o, int64_t flat) {
    return view_elem(o, o->rank, o->dims, flat);
}

static int64_t numel(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= dims[k];
    return n;
}

/* The name of the node a phase comes from, for messages. */
static const char *phase_node(const lp_persist_program *p, const lp_persist_phase *ph) {
    if (ph->node >= 0 && ph->node < p->n_nodes && p->nodes && p->nodes[ph->node] &&
        p->nodes[ph->node]->node)
        return p->nodes[ph->node]->node;
    return "?";
}

static lp_status bad_phase(const lp_persist_program *p, int i, const char *why, lp_diag *d) {
    const lp_persist_phase *ph = &p->phases[i];
    return lp_error(d, LP_ERR_INTERNAL, "persistent program, phase %d (kind %d, node '%s'): %s", i,
                    ph->kind, phase_node(p, ph), why);
}

/* The dtypes arithmetic phases load and store. */
static int is_float(int dtype) {
    return dtype == LP_DT_FLOAT || dtype == LP_DT_FLOAT16 || dtype == LP_DT_BFLOAT16;
}

/* v has a rank and dims a phase can index and a dtype it can load: any
 * dtype of lp_persist_esize for a bit copy, else a float one. */
static int view_ok(const lp_persist_view *v, int bits) {
    if (v->rank < 0 || v->rank > LP_PERSIST_RANK || lp_persist_esize(v->dtype) == 0 ||
        (!bits && !is_float(v->dtype)))
        return 0;
    for (int k = 0; k < v->rank; k++)
        if (v->dims[k] < 0) return 0;
    return 1;
}

/* v can be read at out's coordinates: same rank, each dim equal or
 * broadcast (stride 0); the last `skip` dims are not compared. */
static int view_fits(const lp_persist_view *v, const lp_persist_view *out, int skip) {
    if (!view_ok(v, v->dtype == out->dtype) || v->rank != out->rank) return 0;
    for (int k = 0; k < out->rank - skip; k++)
        if (v->dims[k] != out->dims[k] && v->strides[k] != 0) return 0;
    return 1;
}

/* v is a vector of D elements along its last dim (or broadcasts one). */
static int vec_fits(const lp_persist_view *v, int64_t D) {
    return view_ok(v, 0) && v->rank >= 1 && (v->dims[v->rank - 1] == D || v->strides[v->rank - 1] == 0);
}

/* A cast between float dtypes, or the bits of one dtype (any size). */
static void run_copy(const lp_persist_phase *ph, unsigned char *base) {
    int64_t n = numel(ph->out.rank, ph->out.dims);
    uint64_t es = (uint64_t)lp_persist_esize(ph->out.dtype);
    for (int64_t i = 0; i < n; i++) {
        int64_t el = view_elem(&ph->a, ph->out.rank, ph->out.dims, i);
        if (ph->a.dtype == ph->out.dtype)
            memmove(lp_persist_out(ph, base) + (uint64_t)out_elem(&ph->out, i) * es, base + ph->a.offset + (uint64_t)el * es, es);
        else
            store(ph, base, out_elem(&ph->out, i), load(base, &ph->a, el));
    }
}

static void run_elementwise(const lp_persist_phase *ph, unsigned char *base) {
    int r = ph->out.rank;
    int64_t n = numel(r, ph->out.dims);
    int binary = lp_persist_is_binary(ph->op);
    for (int64_t i = 0; i < n; i++) {
        float x = load(base, &ph->a, view_elem(&ph->a, r, ph->out.dims, i));
        float v = binary ? lp_persist_binary(ph->op, x, load(base, &ph->b, view_elem(&ph->b, r, ph->out.dims, i)))
                         : lp_persist_unary(ph->op, x, ph->alpha, ph->beta);
        store(ph, base, out_elem(&ph->out, i), v);
    }
}

static void gemm_store(const lp_persist_phase *ph, unsigned char *base, int64_t m, int64_t n, double acc) {
    const lp_persist_epilogue *e = &ph->epi;
    /* Gelu's tanh form is alpha != 0 in lp_persist_unary */
    float act_alpha = e->act == LP_OP_Gelu ? (e->act_tanh ? 1.0f : 0.0f) : e->act_alpha;
    float v = (float)acc;
    if (ph->has_bias) v += load(base, &ph->bias, n);
    if (e->act) v = lp_persist_unary(e->act, v, act_alpha, e->act_beta);
    /* res may be out's own bytes: read this element before its store */
    if (e->residual) v += load(base, &e->res, m * ph->n + n);
    store(ph, base, out_elem(&ph->out, m * ph->n + n), v);
}

/* row[D] layer-normalised in place (sums in double), times scale[D], plus
 * bias[D] (NULL: none): what a LAYERNORM phase stores, before rounding. */
static void layernorm_row(float *row, int64_t D, float eps, const unsigned char *base, const lp_persist_view *scale,
                          const lp_persist_view *bias) {
    double sum = 0, sq = 0;
    for (int64_t j = 0; j < D; j++) sum += row[j];
    double mean = sum / (double)D;
    for (int64_t j = 0; j < D; j++) sq += (row[j] - mean) * (row[j] - mean);
    float inv = (float)(1.0 / sqrt(sq / (double)D + (double)eps)), fmean = (float)mean;
    for (int64_t j = 0; j < D; j++) {
        float y = (row[j] - fmean) * inv * load(base, scale, j * scale->strides[scale->rank - 1]);
        if (bias) y += load(base, bias, j * bias->strides[bias->rank - 1]);
        row[j] = y;
    }
}

/* row[D] through softmax (is_log: log-softmax) in place, before rounding. */
static void softmax_row(float *row, int64_t D, int is_log) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < D; j++) mx = fmaxf(mx, row[j]);
    double sum = 0;
    for (int64_t j = 0; j < D; j++) sum += expf(row[j] - mx);
    float fsum = (float)sum, lsum = (float)log(sum);
    for (int64_t j = 0; j < D; j++) {
        float v = row[j] - mx;
        row[j] = is_log ? v - lsum : expf(v) / fsum;
    }
}

/* Row m of a GEMM's A into row[K]: a's values, or (ln) their LayerNorm
 * rounded to a's dtype, as a LAYERNORM phase would store them. */
static void gemm_row(const lp_persist_phase *ph, const unsigned char *base, int64_t m, float *row) {
    int64_t K = ph->k;
    for (int64_t q = 0; q < K; q++) row[q] = load(base, &ph->a, m * K + q);
    if (!ph->ln) return;
    layernorm_row(row, K, ph->ln_eps, base, &ph->scale, ph->ln_bias.dtype ? &ph->ln_bias : NULL);
    for (int64_t q = 0; q < K; q++) row[q] = round_to(row[q], ph->a.dtype);
}

/* false: out of memory */
static bool run_gemm(const lp_persist_phase *ph, unsigned char *base) {
    int64_t M = ph->m, N = ph->n, K = ph->k;
    double *acc = malloc((size_t)(N ? N : 1) * sizeof *acc);
    float *row = malloc((size_t)(K ? K : 1) * sizeof *row);
    if (!acc || !row) {
        free(acc);
        free(row);
        return false;
    }
    for (int64_t m = 0; m < M; m++) {
        gemm_row(ph, base, m, row);
        if (!ph->trans_w) {
            /* a row of sums at a time, so that w is read along its rows */
            for (int64_t n = 0; n < N; n++) acc[n] = 0;
            for (int64_t q = 0; q < K; q++) {
                double x = row[q];
                for (int64_t n = 0; n < N; n++) acc[n] += x * load(base, &ph->b, q * N + n);
            }
            for (int64_t n = 0; n < N; n++) gemm_store(ph, base, m, n, acc[n]);
            continue;
        }
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t q = 0; q < K; q++) s += (double)row[q] * load(base, &ph->b, n * K + q);
            gemm_store(ph, base, m, n, s);
        }
    }
    free(acc);
    free(row);
    return true;
}

static void run_batched_matmul(const lp_persist_phase *ph, unsigned char *base) {
    const lp_persist_view *a = &ph->a, *b = &ph->b;
    int r = ph->out.rank;
    int64_t M = ph->out.dims[r - 2], N = ph->out.dims[r - 1], K = a->dims[r - 1];
    int64_t batches = numel(r - 2, ph->out.dims);
    for (int64_t bi = 0; bi < batches; bi++) {
        /* the batch coordinates through each operand's batch strides */
        int64_t oa = view_elem(a, r - 2, ph->out.dims, bi), ob = view_elem(b, r - 2, ph->out.dims, bi);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0;
                for (int64_t q = 0; q < K; q++)
                    acc += (double)load(base, a, oa + m * a->strides[r - 2] + q * a->strides[r - 1]) *
                           load(base, b, ob + q * b->strides[r - 2] + n * b->strides[r - 1]);
                store(ph, base, out_elem(&ph->out, (bi * M + m) * N + n), ph->alpha * (float)acc);
            }
    }
}

/* false: out of memory */
static bool run_layernorm(const lp_persist_phase *ph, unsigned char *base) {
    int r = ph->out.rank;
    int64_t D = ph->out.dims[r - 1], rows = D ? numel(r, ph->out.dims) / D : 0;
    float *row = malloc((size_t)(D ? D : 1) * sizeof *row);
    if (!row) return false;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < D; j++) row[j] = load(base, &ph->a, view_elem(&ph->a, r, ph->out.dims, i * D + j));
        layernorm_row(row, D, ph->alpha, base, &ph->scale, ph->has_bias ? &ph->bias : NULL);
        for (int64_t j = 0; j < D; j++) store(ph, base, i * D + j, row[j]);
    }
    free(row);
    return true;
}

/* false: out of memory */
static bool run_softmax(const lp_persist_phase *ph, unsigned char *base) {
    int r = ph->out.rank;
    int64_t D = ph->out.dims[r - 1], rows = D ? numel(r, ph->out.dims) / D : 0;
    float *row = malloc((size_t)(D ? D : 1) * sizeof *row);
    if (!row) return false;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < D; j++) row[j] = load(base, &ph->a, view_elem(&ph->a, r, ph->out.dims, i * D + j));
        softmax_row(row, D, ph->op == LP_OP_LogSoftmax);
        for (int64_t j = 0; j < D; j++) store(ph, base, i * D + j, row[j]);
    }
    free(row);
    return true;
}

/* false: out of memory */
static bool run_attention(const lp_persist_phase *ph, unsigned char *base) {
    const lp_persist_view *q = &ph->a, *kt = &ph->b, *v = &ph->scale, *mask = &ph->bias, *o = &ph->out;
    int r = o->rank, dt = o->dtype;
    int64_t M = o->dims[r - 2], D = o->dims[r - 1], K = q->dims[r - 1], N = kt->dims[r - 1];
    int64_t batches = numel(r - 2, o->dims);
    float *p = malloc((size_t)(N ? N : 1) * sizeof *p);
    if (!p) return false;
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t oq = view_elem(q, r - 2, o->dims, bi), ok = view_elem(kt, r - 2, o->dims, bi);
        int64_t ov = view_elem(v, r - 2, o->dims, bi), om = ph->has_bias ? view_elem(mask, r - 2, o->dims, bi) : 0;
        for (int64_t m = 0; m < M; m++) {
            /* the scores, as the batched matmul (and the mask Add) stored them */
            for (int64_t n = 0; n < N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)load(base, q, oq + m * q->strides[r - 2] + k * q->strides[r - 1]) *
                           load(base, kt, ok + k * kt->strides[r - 2] + n * kt->strides[r - 1]);
                float sc = round_to(ph->alpha * (float)acc, dt);
                if (ph->has_bias)
                    sc = round_to(sc + load(base, mask, om + m * mask->strides[r - 2] + n * mask->strides[r - 1]), dt);
                p[n] = sc;
            }
            /* the probabilities, as the Softmax stored them */
            softmax_row(p, N, 0);
            for (int64_t n = 0; n < N; n++) p[n] = round_to(p[n], dt);
            for (int64_t d = 0; d < D; d++) {
                double acc = 0;
                for (int64_t n = 0; n < N; n++)
                    acc += (double)p[n] * load(base, v, ov + n * v->strides[r - 2] + d * v->strides[r - 1]);
                store(ph, base, out_elem(o, (bi * M + m) * D + d), (float)acc);
            }
        }
    }
    free(p);
    return true;
}

/* The library call of a NODE phase. A nonzero return that the callback
 * reported through d as an lp_status stays that status; any other is
 * LP_ERR_INTERNAL naming the node. */
static lp_status run_node(const lp_persist_program *p, int i, unsigned char *base, lp_card_env *env,
                          lp_diag *d) {
    const lp_persist_phase *ph = &p->phases[i];
    if (ph->node < 0 || ph->node >= p->n_nodes || !p->nodes || !p->nodes[ph->node])
        return bad_phase(p, i, "the node index is not one of the program's nodes", d);
    if (!env || !env->compute) return bad_phase(p, i, "no compute callback to run the node", d);
    int errors = d->n_errors;
    int rc = env->compute(env, base, p->nodes[ph->node]);
    if (rc == 0) return LP_OK;
    if (rc > LP_OK && rc <= LP_ERR_INTERNAL && d->n_errors > errors) return (lp_status)rc;
    return lp_error(d, LP_ERR_INTERNAL, "persistent program, phase %d: node '%s' (%s) failed (%d)", i,
                    phase_node(p, ph), p->nodes[ph->node]->op ? p->nodes[ph->node]->op : "?", rc);
}

/* What is wrong with a compute phase's views, or NULL. */
static const char *check_phase(const lp_persist_phase *ph) {
    const lp_persist_view *o = &ph->out;
    int bits = ph->kind == LP_PERSIST_COPY && ph->a.dtype == o->dtype;
    if (!view_ok(o, bits)) return "the output view has a dtype the phase does not take or a bad rank";
    switch (ph->kind) {
    case LP_PERSIST_COPY:
        if (!bits && (!is_float(ph->a.dtype) || !is_float(o->dtype)))
            return "a cast between dtypes that are not both float ones";
        return view_fits(&ph->a, o, 0) ? NULL : "the source view does not fit the output";
    case LP_PERSIST_ELEMENTWISE:
        if (lp_persist_is_binary(ph->op))
            return view_fits(&ph->a, o, 0) && view_fits(&ph->b, o, 0) ? NULL
                   : "an operand view does not fit the output";
        if (lp_persist_is_unary(ph->op))
            return view_fits(&ph->a, o, 0) ? NULL : "the operand view does not fit the output";
        return "the op is not an element-wise op of persistent phases";
    case LP_PERSIST_GEMM:
        if (!view_ok(&ph->a, 0) || !view_ok(&ph->b, 0) || (ph->has_bias && !view_ok(&ph->bias, 0)) ||
            (ph->epi.residual && !view_ok(&ph->epi.res, 0)))
            return "an operand view has a dtype the phase does not take or a bad rank";
        if (ph->m < 0 || ph->n < 0 || ph->k < 0 || numel(o->rank, o->dims) != ph->m * ph->n)
            return "M, N, K do not match the output";
        if (ph->epi.act && !lp_persist_is_unary(ph->epi.act))
            return "the epilogue's activation is not a unary op of persistent phases";
        if (ph->ln && (!vec_fits(&ph->scale, ph->k) || (ph->ln_bias.dtype && !vec_fits(&ph->ln_bias, ph->k))))
            return "the LayerNorm prologue's scale or bias does not fit K";
        return NULL;
    case LP_PERSIST_BATCHED_MATMUL:
        if (o->rank < 2 || !view_fits(&ph->a, o, 2) || !view_fits(&ph->b, o, 2))
            return "the operand views do not fit the output [batch.., M, N]";
        if (ph->a.dims[o->rank - 2] != o->dims[o->rank - 2] || ph->b.dims[o->rank - 1] != o->dims[o->rank - 1] ||
            ph->a.dims[o->rank - 1] != ph->b.dims[o->rank - 2])
            return "the operands are not [.., M, K] and [.., K, N]";
        return NULL;
    case LP_PERSIST_LAYERNORM:
        if (o->rank < 1 || !view_fits(&ph->a, o, 0) || !vec_fits(&ph->scale, o->dims[o->rank - 1]) ||
            (ph->has_bias && !vec_fits(&ph->bias, o->dims[o->rank - 1])))
            return "the input, scale or bias view does not fit the output";
        return NULL;
    case LP_PERSIST_SOFTMAX:
        if (ph->op != LP_OP_Softmax && ph->op != LP_OP_LogSoftmax) return "the op is not Softmax or LogSoftmax";
        return o->rank >= 1 && view_fits(&ph->a, o, 0) ? NULL : "the input view does not fit the output";
    case LP_PERSIST_ATTENTION: {
        int r = o->rank;
        if (r < 2 || !view_ok(&ph->a, 0) || !view_ok(&ph->b, 0) || !view_ok(&ph->scale, 0) ||
            ph->a.rank != r || ph->b.rank != r || ph->scale.rank != r || (ph->has_bias && !view_fits(&ph->bias, o, 1)))
            return "the query, key, value or mask view does not fit the output [batch.., M, D]";
        if (!view_fits(&ph->a, o, 2) || !view_fits(&ph->b, o, 2) || !view_fits(&ph->scale, o, 2))
            return "the query, key or value batch dims do not fit the output";
        int64_t N = ph->b.dims[r - 1];
        if (ph->a.dims[r - 2] != o->dims[r - 2] || ph->a.dims[r - 1] != ph->b.dims[r - 2] ||
            ph->scale.dims[r - 2] != N || ph->scale.dims[r - 1] != o->dims[r - 1] ||
            (ph->has_bias && ph->bias.dims[r - 1] != N))
            return "the operands are not q [.., M, K], kt [.., K, N], v [.., N, D] and mask [.., M, N]";
        if (N > LP_PERSIST_ATTENTION_N) return "more keys than an attention phase holds";
        if (ph->a.dtype != o->dtype || ph->b.dtype != o->dtype || ph->scale.dtype != o->dtype ||
            (ph->has_bias && ph->bias.dtype != o->dtype))
            return "an operand's dtype is not the output's";
        return NULL;
    }
    default:
        return "unknown phase kind";
    }
}

lp_status lp_persist_run_cpu(const lp_persist_program *p, unsigned char *base, lp_card_env *env,
                             lp_diag *d) {
    for (int i = 0; i < p->n_phases; i++) {
        const lp_persist_phase *ph = &p->phases[i];
        if (ph->kind == LP_PERSIST_NODE) {
            lp_status st = run_node(p, i, base, env, d);
            if (st != LP_OK) return st;
            continue;
        }
        const char *why = check_phase(ph);
        if (why) return bad_phase(p, i, why, d);
        bool ok = true;
        switch (ph->kind) {
        case LP_PERSIST_COPY: run_copy(ph, base); break;
        case LP_PERSIST_ELEMENTWISE: run_elementwise(ph, base); break;
        case LP_PERSIST_GEMM: ok = run_gemm(ph, base); break;
        case LP_PERSIST_BATCHED_MATMUL: run_batched_matmul(ph, base); break;
        case LP_PERSIST_LAYERNORM: ok = run_layernorm(ph, base); break;
        case LP_PERSIST_ATTENTION: ok = run_attention(ph, base); break;
        default: ok = run_softmax(ph, base); break; /* LP_PERSIST_SOFTMAX, checked above */
        }
        if (!ok) return lp_error(d, LP_ERR_INTERNAL, "persistent program, phase %d: out of memory", i);
    }
    return LP_OK;
}
