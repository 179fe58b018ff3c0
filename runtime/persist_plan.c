/* persist_plan.c - a card's recorded step becomes a persistent program
 * (lp_persist.h): each compute and copy a phase, epilogues fused into their
 * Gemms, reshaping and transposing copies absorbed into their readers,
 * barriers only where a phase depends on bytes written since the last one. */
#include "lp_persist.h"
#include "lp_ops.h"
#include "lp_ref.h"
#include "persist_ops.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- recording ------------------------------------------------------------ */

typedef struct recorder {
    lp_persist_event *ev;
    int n, cap;
    bool gather, oom;
} recorder;

static int record_push(lp_card_env *env, lp_persist_event e) {
    recorder *r = (recorder *)env->user;
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        lp_persist_event *ev = realloc(r->ev, (size_t)cap * sizeof *ev);
        if (!ev) {
            r->oom = true;
            return 1;
        }
        r->ev = ev;
        r->cap = cap;
    }
    r->ev[r->n++] = e;
    return 0;
}

static int record_compute(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    (void)base;
    return record_push(env, (lp_persist_event){.node = n, .value = n->node});
}

static int record_copy(lp_card_env *env, unsigned char *base, uint64_t dst, uint64_t src,
                       uint64_t bytes, const char *value) {
    (void)base;
    return record_push(env, (lp_persist_event){.dst = dst, .src = src, .bytes = bytes, .value = value});
}

static int record_gather(lp_card_env *env, unsigned char *base, const char *value, int first_card,
                         int n_cards, int rank, int axis, uint64_t chunk, uint64_t chunk_bytes,
                         uint64_t whole, uint64_t whole_bytes, uint64_t dst) {
    (void)base, (void)value, (void)first_card, (void)n_cards, (void)rank, (void)axis, (void)chunk;
    (void)chunk_bytes, (void)whole, (void)whole_bytes, (void)dst;
    ((recorder *)env->user)->gather = true;
    return 1;
}

lp_status lp_persist_record(lp_card_step_fn step, int card, lp_persist_event **events, int *n,
                            lp_diag *d) {
    recorder r = {0};
    lp_card_env env = {.abi = LP_CARD_ABI, .card = card, .compute = record_compute,
                       .copy = record_copy, .all_gather = record_gather, .user = &r};
    int rc = step(&env, NULL);
    if (rc != 0 || r.oom || r.gather) {
        free(r.ev);
        if (r.gather)
            return lp_error(d, LP_ERR_UNSUPPORTED, "card %d: its step meets other cards at an all-gather",
                            card);
        return lp_error(d, LP_ERR_INTERNAL, "card %d: recording its step failed (%s)", card,
                        r.oom ? "out of memory" : "the step returned an error");
    }
    *events = r.ev;
    *n = r.n;
    return LP_OK;
}

/* ---- views ------------------------------------------------------------------ */

static bool is_float(int dt) { return dt == 1 || dt == 10 || dt == 16; }

static int64_t view_numel(const lp_persist_view *v) {
    int64_t n = 1;
    for (int k = 0; k < v->rank; k++) n *= v->dims[k];
    return n;
}

static void contiguous(lp_persist_view *v) {
    int64_t s = 1;
    for (int k = v->rank - 1; k >= 0; k--) {
        v->strides[k] = s;
        s *= v->dims[k];
    }
}

static bool is_contiguous(const lp_persist_view *v) {
    int64_t s = 1;
    for (int k = v->rank - 1; k >= 0; k--) {
        if (v->dims[k] != 1 && v->strides[k] != s) return false;
        s *= v->dims[k];
    }
    return true;
}

static lp_persist_view view_of(const lp_card_tensor *t, uint64_t weights_bytes) {
    lp_persist_view v = {.offset = t->offset, .dtype = t->dtype, .rank = t->rank};
    for (int k = 0; k < t->rank && k < LP_PERSIST_RANK; k++) v.dims[k] = t->dims[k];
    contiguous(&v);
    v.weight = t->offset + t->bytes <= weights_bytes;
    return v;
}

/* t viewed with the dims of out (right-aligned numpy broadcasting). */
static bool broadcast_view(const lp_card_tensor *t, const lp_persist_view *out, uint64_t weights_bytes,
                           lp_persist_view *v) {
    if (t->rank > out->rank) return false;
    lp_persist_view src = view_of(t, weights_bytes);
    *v = src;
    v->rank = out->rank;
    int lead = out->rank - t->rank;
    for (int k = 0; k < out->rank; k++) {
        v->dims[k] = out->dims[k];
        if (k < lead) {
            v->strides[k] = 0;
            continue;
        }
        int64_t d = src.dims[k - lead];
        if (d == out->dims[k])
            v->strides[k] = src.strides[k - lead];
        else if (d == 1)
            v->strides[k] = 0;
        else
            return false;
    }
    return true;
}

typedef struct range {
    uint64_t lo, hi;
} range;

static range view_range(const lp_persist_view *v) {
    uint64_t es = (uint64_t)lp_persist_esize(v->dtype);
    return (range){v->offset, v->offset + (uint64_t)lp_persist_view_extent(v) * es};
}

static bool overlap(range a, range b) { return a.lo < b.hi && b.lo < a.hi && a.lo < a.hi && b.lo < b.hi; }
static bool covers(range a, range b) { return a.lo <= b.lo && b.hi <= a.hi; }

/* Strides for viewing a strided view v with other dims of the same count
 * (numpy's no-copy reshape): false when that needs a copy. */
static bool reshape_view(const lp_persist_view *v, const int64_t *dims, int rank, lp_persist_view *out) {
    int64_t od[LP_PERSIST_RANK], os[LP_PERSIST_RANK];
    int on = 0;
    for (int k = 0; k < v->rank; k++)
        if (v->dims[k] != 1) {
            od[on] = v->dims[k];
            os[on++] = v->strides[k];
        }
    *out = *v;
    out->rank = rank;
    for (int k = 0; k < rank; k++) out->dims[k] = dims[k];
    /* walk both shapes in chunks of equal products */
    int i = 0, j = 0;
    while (j < rank && dims[j] == 1) out->strides[j++] = 0;
    while (i < on && j < rank) {
        int64_t p = od[i], q = dims[j];
        int i2 = i + 1, j2 = j + 1;
        while (p != q) {
            if (p < q) {
                if (i2 >= on) return false;
                p *= od[i2++];
            } else {
                if (j2 >= rank) return false;
                q *= dims[j2++];
            }
        }
        for (int k = i; k < i2 - 1; k++)
            if (os[k] != od[k + 1] * os[k + 1]) return false; /* the chunk is not contiguous */
        int64_t s = os[i2 - 1];
        for (int k = j2 - 1; k >= j; k--) {
            out->strides[k] = s;
            s *= dims[k];
        }
        i = i2;
        j = j2;
        while (j < rank && dims[j] == 1) out->strides[j++] = 0;
    }
    return i == on && j == rank;
}

/* ---- attributes ------------------------------------------------------------- */

static const lp_card_attr *attr(const lp_card_node *n, const char *name) {
    for (int k = 0; k < n->n_attrs; k++)
        if (strcmp(n->attrs[k].name, name) == 0) return &n->attrs[k];
    return NULL;
}
static int64_t attr_int(const lp_card_node *n, const char *name, int64_t fallback) {
    const lp_card_attr *a = attr(n, name);
    return a && a->type == 2 ? a->i : fallback;
}
static float attr_float(const lp_card_node *n, const char *name, float fallback) {
    const lp_card_attr *a = attr(n, name);
    return a && a->type == 1 ? a->f : fallback;
}
static bool attr_is(const lp_card_node *n, const char *name, const char *s) {
    const lp_card_attr *a = attr(n, name);
    return a && a->type == 3 && a->s_len == strlen(s) && memcmp(a->s, s, a->s_len) == 0;
}

/* ---- phases from events ----------------------------------------------------- */

typedef struct plan_ctx {
    lp_persist_program *p;
    uint64_t weights_bytes;
    const unsigned char *weights; /* the weights region's bytes, or NULL */
    const lp_persist_range *live;
    int n_live;
    bool *gone;          /* [n_phases]: absorbed into another phase */
    const char *why;     /* why the node being converted stays a library call */
} plan_ctx;

static const lp_card_tensor *in_at(const lp_card_node *n, int i) {
    return i < n->n_inputs && n->inputs[i].region != LP_CARD_NONE ? &n->inputs[i] : NULL;
}

static bool data_arg(plan_ctx *x, const lp_card_tensor *t, bool need_float) {
    if (!t) return false;
    if (t->region != LP_CARD_MEMORY) {
        x->why = "an input is data the program carries";
        return false;
    }
    if (t->rank > LP_PERSIST_RANK || lp_persist_esize(t->dtype) == 0 || (need_float && !is_float(t->dtype))) {
        x->why = "a dtype or rank no phase handles";
        return false;
    }
    return true;
}

static bool one_output(plan_ctx *x, const lp_card_node *n, bool need_float) {
    for (int k = 1; k < n->n_outputs; k++)
        if (n->outputs[k].region != LP_CARD_NONE) {
            x->why = "more than one output";
            return false;
        }
    return n->n_outputs >= 1 && data_arg(x, &n->outputs[0], need_float);
}

static bool is_view_op(int op) {
    return op == LP_OP_Reshape || op == LP_OP_Flatten || op == LP_OP_Squeeze || op == LP_OP_Unsqueeze ||
           op == LP_OP_Identity;
}

/* The phase of node n (index node), or kind NODE with x->why set. */
static lp_persist_phase node_phase(plan_ctx *x, const lp_card_node *n, int node) {
    lp_persist_phase ph = {.kind = LP_PERSIST_NODE, .node = node};
    int op = lp_op_lookup("", n->op);
    uint64_t wb = x->weights_bytes;
    x->why = "no phase kind for the op";
    const lp_card_tensor *a = in_at(n, 0), *b = in_at(n, 1), *c = in_at(n, 2);
    bool fl = !(is_view_op(op) || op == LP_OP_Transpose || op == LP_OP_Expand);
    if (!data_arg(x, a, fl) || !one_output(x, n, fl)) return ph;
    lp_persist_view out = view_of(&n->outputs[0], wb), va = view_of(a, wb);
    ph.out = out;
    if (is_view_op(op) || (op == LP_OP_Cast && is_float(a->dtype) && is_float(out.dtype))) {
        if (view_numel(&va) != view_numel(&out)) return ph;
        ph.kind = LP_PERSIST_COPY;
        ph.a = out;
        ph.a.offset = va.offset;
        ph.a.dtype = va.dtype;
        ph.a.weight = va.weight;
        if (!is_view_op(op)) ph.op = op;
        return ph;
    }
    if (op == LP_OP_Transpose) {
        if (a->rank != out.rank) return ph;
        const lp_card_attr *pa = attr(n, "perm");
        ph.kind = LP_PERSIST_COPY;
        ph.op = op;
        ph.a = va;
        for (int k = 0; k < out.rank; k++) {
            int64_t src = pa ? (k < pa->n ? pa->ints[k] : -1) : out.rank - 1 - k;
            if (src < 0 || src >= out.rank || va.dims[src] != out.dims[k]) {
                ph.kind = LP_PERSIST_NODE;
                return ph;
            }
            ph.a.dims[k] = va.dims[src];
            ph.a.strides[k] = va.strides[src];
        }
        return ph;
    }
    if (op == LP_OP_Expand) {
        if (!broadcast_view(a, &out, wb, &ph.a)) return ph;
        ph.kind = LP_PERSIST_COPY;
        ph.op = op;
        return ph;
    }
    if (lp_persist_is_unary(op) && n->n_inputs == 1) {
        ph.kind = LP_PERSIST_ELEMENTWISE;
        ph.op = op;
        ph.a = out;
        ph.a.offset = va.offset;
        ph.a.dtype = va.dtype;
        ph.a.weight = va.weight;
        if (op == LP_OP_Gelu) {
            if (attr_is(n, "approximate", "tanh")) ph.alpha = 1;
            else if (attr(n, "approximate") && !attr_is(n, "approximate", "none")) ph.kind = LP_PERSIST_NODE;
        }
        if (op == LP_OP_LeakyRelu) ph.alpha = attr_float(n, "alpha", 0.01f);
        if (op == LP_OP_HardSigmoid) {
            ph.alpha = attr_float(n, "alpha", 0.2f);
            ph.beta = attr_float(n, "beta", 0.5f);
        }
        return ph;
    }
    if (lp_persist_is_binary(op) && n->n_inputs == 2) {
        if (!data_arg(x, b, true)) return ph;
        if (!broadcast_view(a, &out, wb, &ph.a) || !broadcast_view(b, &out, wb, &ph.b)) return ph;
        ph.kind = LP_PERSIST_ELEMENTWISE;
        ph.op = op;
        return ph;
    }
    if (op == LP_OP_MatMul || op == LP_OP_Gemm) {
        if (!data_arg(x, b, true)) return ph;
        bool gemm = op == LP_OP_Gemm;
        if (gemm && (attr_int(n, "transA", 0) != 0 || attr_float(n, "alpha", 1.0f) != 1.0f ||
                     (c && attr_float(n, "beta", 1.0f) != 1.0f))) {
            x->why = "Gemm with transA, alpha or beta";
            return ph;
        }
        lp_persist_view vb = view_of(b, wb);
        if (a->rank >= 2 && b->rank == 2 && vb.weight && out.rank >= 2) {
            int tw = gemm ? (int)attr_int(n, "transB", 0) : 0;
            int64_t k = va.dims[va.rank - 1], nn = tw ? vb.dims[0] : vb.dims[1];
            if ((tw ? vb.dims[1] : vb.dims[0]) != k || out.dims[out.rank - 1] != nn || k == 0 ||
                view_numel(&out) != view_numel(&va) / k * nn)
                return ph;
            ph.kind = LP_PERSIST_GEMM;
            ph.m = view_numel(&va) / (k ? k : 1);
            ph.n = nn;
            ph.k = k;
            ph.trans_w = tw;
            ph.a = va;
            ph.b = vb;
            if (c) {
                if (!data_arg(x, c, true)) return (lp_persist_phase){.kind = LP_PERSIST_NODE, .node = node};
                lp_persist_view vc = view_of(c, wb);
                if (view_numel(&vc) != nn || !vc.weight) {
                    x->why = "a Gemm bias that is not one row of weights";
                    return (lp_persist_phase){.kind = LP_PERSIST_NODE, .node = node};
                }
                ph.has_bias = 1;
                ph.bias = vc;
            }
            return ph;
        }
        if (gemm || a->rank < 2 || b->rank < 2 || out.rank < 2) return ph;
        /* both activations: a [.., M, K] . b [.., K, N], batch dims broadcast */
        int r = out.rank;
        lp_persist_view shape = out;
        shape.dims[r - 1] = a->dims[a->rank - 1];
        if (!broadcast_view(a, &shape, wb, &ph.a)) return ph;
        shape = out;
        shape.dims[r - 2] = b->dims[b->rank - 2];
        if (!broadcast_view(b, &shape, wb, &ph.b)) return ph;
        if (ph.a.dims[r - 1] != ph.b.dims[r - 2]) return ph;
        ph.kind = LP_PERSIST_BATCHED_MATMUL;
        ph.alpha = 1.0f;
        return ph;
    }
    if (op == LP_OP_LayerNormalization) {
        int64_t axis = attr_int(n, "axis", -1);
        if (axis != -1 && axis != a->rank - 1) {
            x->why = "LayerNormalization over more than the last axis";
            return ph;
        }
        if (!data_arg(x, b, true)) return ph;
        int64_t dlast = a->rank ? a->dims[a->rank - 1] : 1;
        ph.scale = view_of(b, wb);
        if (view_numel(&ph.scale) != dlast) return ph;
        if (c) {
            if (!data_arg(x, c, true)) return ph;
            ph.bias = view_of(c, wb);
            if (view_numel(&ph.bias) != dlast) return ph;
            ph.has_bias = 1;
        }
        ph.kind = LP_PERSIST_LAYERNORM;
        ph.a = va;
        ph.alpha = attr_float(n, "epsilon", 1e-5f);
        return ph;
    }
    if (op == LP_OP_Softmax || op == LP_OP_LogSoftmax) {
        int64_t axis = attr_int(n, "axis", n->opset >= 13 ? -1 : 1);
        if (axis != -1 && axis != a->rank - 1) {
            x->why = "Softmax over another axis than the last";
            return ph;
        }
        ph.kind = LP_PERSIST_SOFTMAX;
        ph.op = op;
        ph.a = va;
        return ph;
    }
    return ph;
}

/* Elements a phase's view may reach: the kernels index in 32 bits. */
#define PERSIST_MAX_ELEMS ((int64_t)1 << 30)

/* Bytes [src, src + bytes) to dst as a bit copy of `bytes` bytes, in words
 * of the widest size that divides it. */
static lp_persist_phase copy_phase(uint64_t dst, uint64_t src, uint64_t bytes, uint64_t weights_bytes) {
    int dt = bytes % 8 == 0 ? 7 : bytes % 4 == 0 ? 1 : bytes % 2 == 0 ? 10 : 2;
    int64_t n = (int64_t)(bytes / (uint64_t)lp_persist_esize(dt));
    lp_persist_phase ph = {.kind = LP_PERSIST_COPY, .node = -1};
    ph.out = (lp_persist_view){.offset = dst, .dtype = dt, .rank = 1, .dims = {n}, .strides = {1}};
    ph.a = ph.out;
    ph.a.offset = src;
    ph.a.weight = src + bytes <= weights_bytes;
    return ph;
}

static int64_t reach(const lp_persist_view *v) {
    int64_t hi = lp_persist_view_extent(v), n = view_numel(v);
    return hi > n ? hi : n;
}

/* Every view of the phase, and a Gemm's M x N and M x K, under the kernels' limit. */
static bool small_enough(const lp_persist_phase *ph) {
    const lp_persist_view *vs[6] = {&ph->out, &ph->a, &ph->b, &ph->bias, &ph->scale, &ph->epi.res};
    for (int k = 0; k < 6; k++)
        if (reach(vs[k]) >= PERSIST_MAX_ELEMS) return false;
    return ph->m * ph->n < PERSIST_MAX_ELEMS && ph->m * ph->k < PERSIST_MAX_ELEMS &&
           ph->k * ph->n < PERSIST_MAX_ELEMS;
}

/* ---- reads and writes ------------------------------------------------------- */

typedef struct rw {
    int n_reads, n_writes;
    range reads[8], writes[4];
} rw;

/* Appends t's bytes to list[*n] (at most cap), merging into the last past cap. */
static void fold_range(range *list, int *n, int cap, const lp_card_tensor *t) {
    range r = {t->offset, t->offset + t->bytes};
    if (*n < cap) {
        list[(*n)++] = r;
        return;
    }
    range *l = &list[cap - 1];
    if (r.lo < l->lo) l->lo = r.lo;
    if (r.hi > l->hi) l->hi = r.hi;
}

static void rw_of(const lp_persist_program *p, const lp_persist_phase *ph, rw *s) {
    s->n_reads = s->n_writes = 0;
    if (ph->kind == LP_PERSIST_NODE) {
        const lp_card_node *n = p->nodes[ph->node];
        /* a node's reads beyond 7 inputs (writes beyond 3 outputs) fold into
         * one covering range */
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k].region == LP_CARD_MEMORY) fold_range(s->reads, &s->n_reads, 7, &n->inputs[k]);
        for (int k = 0; k < n->n_outputs; k++)
            if (n->outputs[k].region == LP_CARD_MEMORY) fold_range(s->writes, &s->n_writes, 3, &n->outputs[k]);
        if (n->workspace_bytes) {
            range w = {n->workspace_offset, n->workspace_offset + n->workspace_bytes};
            s->reads[s->n_reads++] = w;
            s->writes[s->n_writes++] = w;
        }
        return;
    }
    s->writes[s->n_writes++] = view_range(&ph->out);
    s->reads[s->n_reads++] = view_range(&ph->a);
    if (ph->kind == LP_PERSIST_ELEMENTWISE && lp_persist_is_binary(ph->op)) s->reads[s->n_reads++] = view_range(&ph->b);
    if (ph->kind == LP_PERSIST_GEMM || ph->kind == LP_PERSIST_BATCHED_MATMUL || ph->kind == LP_PERSIST_ATTENTION)
        s->reads[s->n_reads++] = view_range(&ph->b);
    if (ph->kind == LP_PERSIST_LAYERNORM || ph->kind == LP_PERSIST_ATTENTION)
        s->reads[s->n_reads++] = view_range(&ph->scale);
    if (ph->has_bias) s->reads[s->n_reads++] = view_range(&ph->bias);
    if (ph->epi.residual) s->reads[s->n_reads++] = view_range(&ph->epi.res);
    if (ph->ln) {
        s->reads[s->n_reads++] = view_range(&ph->scale);
        if (ph->ln_bias.dtype) s->reads[s->n_reads++] = view_range(&ph->ln_bias);
    }
}

static bool reads_any(const rw *s, range r) {
    for (int k = 0; k < s->n_reads; k++)
        if (overlap(s->reads[k], r)) return true;
    return false;
}
static bool writes_any(const rw *s, range r) {
    for (int k = 0; k < s->n_writes; k++)
        if (overlap(s->writes[k], r)) return true;
    return false;
}
static bool writes_all(const rw *s, range r) {
    for (int k = 0; k < s->n_writes; k++)
        if (covers(s->writes[k], r)) return true;
    return false;
}

static bool is_live_out(const plan_ctx *x, range r) {
    for (int k = 0; k < x->n_live; k++)
        if (overlap((range){x->live[k].lo, x->live[k].hi}, r)) return true;
    return false;
}

/* The next phase after i that is not gone, or n_phases. */
static int next_live(const plan_ctx *x, int i) {
    int j = i + 1;
    while (j < x->p->n_phases && x->gone[j]) j++;
    return j;
}

/* Nothing after phase `from` (skipping `except`) reads bytes r before they
 * are written whole again, and the step does not send them. */
static bool dead_after(const plan_ctx *x, int from, int except, range r) {
    const lp_persist_program *p = x->p;
    rw s;
    for (int k = from + 1; k < p->n_phases; k++) {
        if (x->gone[k] || k == except) continue;
        rw_of(p, &p->phases[k], &s);
        if (reads_any(&s, r)) return false;
        if (writes_all(&s, r)) return true;
        if (writes_any(&s, r)) return false;
    }
    return !is_live_out(x, r);
}

static bool same_bytes(const lp_persist_view *v, range r) {
    range q = view_range(v);
    return is_contiguous(v) && q.lo == r.lo && q.hi == r.hi;
}

/* ---- epilogue fusion ---------------------------------------------------------- */

static bool is_activation(int op) {
    return op == LP_OP_Gelu || op == LP_OP_Relu || op == LP_OP_Sigmoid || op == LP_OP_Tanh ||
           op == LP_OP_LeakyRelu || op == LP_OP_HardSigmoid || op == LP_OP_HardSwish ||
           op == LP_OP_Erf || op == LP_OP_Softplus;
}

/* Phase j, reading g's output y whole, becomes part of g's epilogue. */
static bool fuse_into_gemm(plan_ctx *x, int gi, int j) {
    lp_persist_phase *g = &x->p->phases[gi], *e = &x->p->phases[j];
    if (!is_contiguous(&g->out)) return false;
    range y = view_range(&g->out);
    range ins[3] = {view_range(&g->a), view_range(&g->b), g->has_bias ? view_range(&g->bias) : (range){0, 0}};
    range z = view_range(&e->out);
    if (!is_contiguous(&e->out) || view_numel(&e->out) * lp_persist_esize(e->out.dtype) !=
                                       (int64_t)(z.hi - z.lo))
        return false;
    for (int k = 0; k < 3; k++)
        if (overlap(ins[k], z)) return false;
    if (!dead_after(x, j, -1, y) && !covers(z, y)) return false;
    if (e->kind == LP_PERSIST_COPY) {
        /* the result moving into place: written there directly */
        if (e->a.dtype != e->out.dtype || !same_bytes(&e->a, y) || z.hi - z.lo != y.hi - y.lo) return false;
        if (g->epi.residual && overlap(view_range(&g->epi.res), z) &&
            view_range(&g->epi.res).lo != z.lo)
            return false;
        g->out.offset = e->out.offset;
        return true;
    }
    if (e->kind != LP_PERSIST_ELEMENTWISE || view_numel(&e->out) != g->m * g->n || !is_float(e->out.dtype))
        return false;
    if (lp_persist_is_unary(e->op)) {
        if (!is_activation(e->op) || g->epi.act || g->epi.residual || !same_bytes(&e->a, y) ||
            e->a.dtype != g->out.dtype)
            return false;
        g->epi.act = e->op;
        g->epi.act_tanh = e->op == LP_OP_Gelu && e->alpha != 0;
        g->epi.act_alpha = e->alpha;
        g->epi.act_beta = e->beta;
    } else if (e->op == LP_OP_Add) {
        const lp_persist_view *mine = same_bytes(&e->a, y) ? &e->a : same_bytes(&e->b, y) ? &e->b : NULL;
        if (!mine || g->epi.residual || mine->dtype != g->out.dtype) return false;
        const lp_persist_view *res = mine == &e->a ? &e->b : &e->a;
        range rr = view_range(res);
        if (!is_contiguous(res) || view_numel(res) != g->m * g->n || overlap(rr, y) ||
            (overlap(rr, z) && rr.lo != z.lo))
            return false;
        g->epi.residual = 1;
        g->epi.res = *res;
    } else
        return false;
    g->out.offset = e->out.offset;
    g->out.dtype = e->out.dtype;
    return true;
}

/* The value of a weight view that broadcasts one element, or false. */
static bool scalar_weight(const plan_ctx *x, const lp_persist_view *v, float *out) {
    if (!x->weights || !v->weight || !is_float(v->dtype)) return false;
    for (int k = 0; k < v->rank; k++)
        if (v->dims[k] != 1 && v->strides[k] != 0) return false;
    const unsigned char *at = x->weights + v->offset;
    if (v->dtype == 1) {
        memcpy(out, at, sizeof *out);
    } else {
        uint16_t h;
        memcpy(&h, at, sizeof h);
        *out = v->dtype == 10 ? lp_ref_f16_to_f32(h) : lp_ref_bf16_to_f32(h);
    }
    return true;
}

/* A batched matmul followed by a Mul or Div of its whole output by a
 * constant scalar: the product is scaled by alpha instead. */
static void fold_scales(plan_ctx *x) {
    lp_persist_program *p = x->p;
    for (int i = 0; i < p->n_phases; i++) {
        lp_persist_phase *g = &p->phases[i];
        if (x->gone[i] || g->kind != LP_PERSIST_BATCHED_MATMUL || !is_contiguous(&g->out)) continue;
        int j = next_live(x, i);
        if (j >= p->n_phases) continue;
        lp_persist_phase *e = &p->phases[j];
        if (e->kind != LP_PERSIST_ELEMENTWISE || (e->op != LP_OP_Mul && e->op != LP_OP_Div)) continue;
        range y = view_range(&g->out), z = view_range(&e->out);
        float v;
        bool first = same_bytes(&e->a, y) && e->a.dtype == g->out.dtype && scalar_weight(x, &e->b, &v);
        if (!first && !(e->op == LP_OP_Mul && same_bytes(&e->b, y) && e->b.dtype == g->out.dtype &&
                         scalar_weight(x, &e->a, &v)))
            continue;
        if (!is_contiguous(&e->out) || view_numel(&e->out) != view_numel(&g->out) ||
            overlap(z, view_range(&g->a)) || overlap(z, view_range(&g->b)) ||
            (!dead_after(x, j, -1, y) && !covers(z, y)))
            continue;
        /* rounding the product before the scale (as the graph does) is dropped */
        g->alpha = e->op == LP_OP_Mul ? g->alpha * v : g->alpha / v;
        g->out.offset = e->out.offset;
        g->out.dtype = e->out.dtype;
        x->gone[j] = true;
        p->n_fused++;
    }
}

static void fuse_epilogues(plan_ctx *x) {
    lp_persist_program *p = x->p;
    for (int i = 0; i < p->n_phases; i++) {
        if (x->gone[i] || p->phases[i].kind != LP_PERSIST_GEMM) continue;
        for (;;) {
            int j = next_live(x, i);
            if (j >= p->n_phases || !fuse_into_gemm(x, i, j)) break;
            x->gone[j] = true;
            p->n_fused++;
        }
    }
}

/* ---- copies absorbed into their readers ---------------------------------------- */

/* The view v of bytes o (c's output, contiguous) re-expressed over c's source. */
static bool through_copy(const lp_persist_phase *c, const lp_persist_view *v, lp_persist_view *nv) {
    range o = view_range(&c->out);
    if (v->offset < o.lo) return false;
    if (is_contiguous(&c->a)) {
        /* bits moved unchanged: the reader may read them as any dtype */
        /* the copy only reshapes: same layout, other place */
        *nv = *v;
        nv->offset = c->a.offset + (v->offset - o.lo);
        nv->weight = c->a.weight;
        return view_range(nv).hi <= view_range(&c->a).hi;
    }
    /* a strided source: the reader must read the whole output in order */
    if (v->dtype != c->out.dtype || !same_bytes(v, o)) return false;
    if (!reshape_view(&c->a, v->dims, v->rank, nv)) return false;
    nv->dtype = v->dtype;
    return true;
}

/* Which views of phase r read bytes o: bit k for a, b, scale, bias, res. */
static bool absorb_into(const lp_persist_phase *c, lp_persist_phase *r, range o, bool apply) {
    lp_persist_view *views[5] = {&r->a, &r->b, &r->scale, &r->bias, &r->epi.res};
    bool used[5] = {true,
                    r->kind == LP_PERSIST_GEMM || r->kind == LP_PERSIST_BATCHED_MATMUL ||
                        (r->kind == LP_PERSIST_ELEMENTWISE && lp_persist_is_binary(r->op)),
                    r->kind == LP_PERSIST_LAYERNORM, r->has_bias != 0, r->epi.residual != 0};
    if (r->kind == LP_PERSIST_NODE) return false;
    for (int k = 0; k < 5; k++) {
        if (!used[k] || !overlap(view_range(views[k]), o)) continue;
        lp_persist_view nv;
        if (!through_copy(c, views[k], &nv)) return false;
        /* the Gemm reads a contiguous; scale, bias and res stay contiguous */
        if ((k != 0 || r->kind == LP_PERSIST_GEMM) && k != 1 && !is_contiguous(&nv)) return false;
        if (k == 1 && r->kind == LP_PERSIST_GEMM) return false; /* weights are not copies */
        if (apply) *views[k] = nv;
    }
    return true;
}

static bool same_view(const lp_persist_view *a, const lp_persist_view *b) {
    if (a->offset != b->offset || a->rank != b->rank ||
        lp_persist_esize(a->dtype) != lp_persist_esize(b->dtype))
        return false;
    for (int k = 0; k < a->rank; k++)
        if (a->dims[k] != b->dims[k] || (a->dims[k] != 1 && a->strides[k] != b->strides[k])) return false;
    return true;
}

/* Reader r, an element-wise phase reading o only as its input a, would read
 * c's source exactly where it writes: element by element in place. */
static bool in_place_after(const lp_persist_phase *c, const lp_persist_phase *r, range o) {
    if (r->kind != LP_PERSIST_COPY && !(r->kind == LP_PERSIST_ELEMENTWISE && lp_persist_is_unary(r->op)))
        return false;
    lp_persist_view nv;
    return overlap(view_range(&r->a), o) && through_copy(c, &r->a, &nv) && same_view(&nv, &r->out) &&
           is_contiguous(&r->out);
}

static void absorb_copies(plan_ctx *x) {
    lp_persist_program *p = x->p;
    rw s;
    for (int i = 0; i < p->n_phases; i++) {
        lp_persist_phase *c = &p->phases[i];
        if (x->gone[i] || c->kind != LP_PERSIST_COPY || c->a.dtype != c->out.dtype) continue;
        range o = view_range(&c->out), src = view_range(&c->a);
        if (overlap(o, src)) continue;
        /* the readers of o until it is written whole again; once partly
         * overwritten (at most 4 ranges tracked), only those parts may be read */
        int last = -1, n_clob = 0;
        range clob[4];
        bool ok = true, ended = false;
        for (int k = i + 1; k < p->n_phases && ok; k++) {
            if (x->gone[k]) continue;
            rw_of(p, &p->phases[k], &s);
            bool reads_copy = false;
            for (int q = 0; q < s.n_reads; q++) {
                if (!overlap(s.reads[q], o)) continue;
                range part = {s.reads[q].lo > o.lo ? s.reads[q].lo : o.lo,
                              s.reads[q].hi < o.hi ? s.reads[q].hi : o.hi};
                bool fresh = false;
                for (int u = 0; u < n_clob && !fresh; u++) fresh = covers(clob[u], part);
                if (!fresh) reads_copy = true;
            }
            if (reads_copy) {
                ok = n_clob == 0 && absorb_into(c, &p->phases[k], o, false);
                last = k;
            }
            if (writes_all(&s, o)) {
                ended = true;
                break;
            }
            for (int q = 0; q < s.n_writes && ok; q++)
                if (overlap(s.writes[q], o)) {
                    if (n_clob == 4) ok = false;
                    else clob[n_clob++] = s.writes[q];
                }
        }
        if (!ok || last < 0 || (!ended && is_live_out(x, o))) continue;
        /* the source must hold until the last reader (which may overwrite
         * it element by element in place) */
        for (int k = i + 1; k <= last && ok; k++) {
            if (x->gone[k]) continue;
            rw_of(p, &p->phases[k], &s);
            if (writes_any(&s, src) && !(k == last && in_place_after(c, &p->phases[k], o))) ok = false;
        }
        if (!ok) continue;
        for (int k = i + 1; k <= last; k++)
            if (!x->gone[k]) {
                rw_of(p, &p->phases[k], &s);
                if (reads_any(&s, o)) absorb_into(c, &p->phases[k], o, true);
            }
        x->gone[i] = true;
        p->n_fused++;
    }
}

/* A copy that only moves bits onto themselves. */
static void drop_noop_copies(plan_ctx *x) {
    for (int i = 0; i < x->p->n_phases; i++) {
        lp_persist_phase *c = &x->p->phases[i];
        if (!x->gone[i] && c->kind == LP_PERSIST_COPY && c->a.dtype == c->out.dtype &&
            same_view(&c->a, &c->out)) {
            x->gone[i] = true;
            x->p->n_fused++;
        }
    }
}

/* ---- copies folded into the phase that writes their input -------------------
 * P writes y (contiguous), the next phase c copies y, permuted or reshaped,
 * to z, and nothing else reads y: P writes z directly, through strides. */

/* The strides, over the dims of y, at which c's output z holds each element
 * of y: false unless c reads y as a permutation of a reshaping of it. */
static bool inverse_view(const lp_persist_phase *c, const lp_persist_view *y, lp_persist_view *w) {
    const lp_persist_view *v = &c->a;
    int r = v->rank, order[LP_PERSIST_RANK];
    int64_t zs[LP_PERSIST_RANK];
    lp_persist_view z = c->out;
    contiguous(&z);
    /* dims of v by falling stride (size-1 dims dropped) must tile y contiguously */
    int n = 0;
    for (int k = 0; k < r; k++)
        if (v->dims[k] != 1) {
            if (v->strides[k] == 0) return false;
            order[n++] = k;
        }
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && v->strides[order[b]] > v->strides[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    lp_persist_view e = {.offset = c->out.offset, .dtype = c->out.dtype, .rank = n};
    int64_t expect = 1;
    for (int j = n - 1; j >= 0; j--) {
        if (v->strides[order[j]] != expect) return false;
        expect *= v->dims[order[j]];
        e.dims[j] = v->dims[order[j]];
        zs[j] = z.strides[order[j]];
    }
    for (int j = 0; j < n; j++) e.strides[j] = zs[j];
    if (n == 0) {
        e.rank = 1;
        e.dims[0] = 1;
        e.strides[0] = 1;
    }
    /* y's own dims over the same bytes */
    if (!reshape_view(&e, y->dims, y->rank, w)) return false;
    w->offset = c->out.offset;
    w->dtype = c->out.dtype;
    w->weight = 0;
    return true;
}

static void fuse_into_producers(plan_ctx *x) {
    lp_persist_program *p = x->p;
    rw s;
    for (int i = 0; i < p->n_phases; i++) {
        lp_persist_phase *c = &p->phases[i];
        if (x->gone[i] || c->kind != LP_PERSIST_COPY || c->a.dtype != c->out.dtype) continue;
        int pi = i - 1;
        while (pi >= 0 && x->gone[pi]) pi--;
        if (pi < 0) continue;
        lp_persist_phase *pr = &p->phases[pi];
        bool rows = pr->kind == LP_PERSIST_LAYERNORM || pr->kind == LP_PERSIST_SOFTMAX;
        if (pr->kind != LP_PERSIST_GEMM && pr->kind != LP_PERSIST_BATCHED_MATMUL &&
            pr->kind != LP_PERSIST_ELEMENTWISE && pr->kind != LP_PERSIST_COPY && !rows)
            continue;
        range y = view_range(&pr->out), z = view_range(&c->out), a = view_range(&c->a);
        /* a plain move of y's bytes, whatever dtype the copy names them by */
        bool move = is_contiguous(&c->a) && is_contiguous(&c->out) && a.lo == y.lo && a.hi == y.hi;
        if (!is_contiguous(&pr->out) || c->a.offset != y.lo || !dead_after(x, i, -1, y) ||
            (!move && (pr->out.dtype != c->a.dtype || view_numel(&c->a) != view_numel(&pr->out))))
            continue;
        rw_of(p, pr, &s);
        if (reads_any(&s, z)) continue;
        lp_persist_view w = pr->out;
        w.offset = c->out.offset;
        if (!move && (!inverse_view(c, &pr->out, &w) || (rows && !is_contiguous(&w)))) continue;
        pr->out = w;
        x->gone[i] = true;
        p->n_fused++;
    }
}

/* ---- attention as one phase ------------------------------------------------------ */

/* Batch dims of v equal (or broadcast) over out's (rank r), dims [r-2], [r-1] as given. */
static bool fits_as(const lp_persist_view *v, const lp_persist_view *out, int64_t d2, int64_t d1) {
    int r = out->rank;
    if (v->rank != r || v->dims[r - 2] != d2 || v->dims[r - 1] != d1 || !is_float(v->dtype)) return false;
    for (int k = 0; k < r - 2; k++)
        if (v->dims[k] != out->dims[k] && v->strides[k] != 0) return false;
    return true;
}

/* Phase j joins the chain; its output is now the value followed. Returns
 * the next phase. */
static int take(const plan_ctx *x, int *chain, int *n, int j, range *cur) {
    *cur = view_range(&x->p->phases[j].out);
    chain[(*n)++] = j;
    return next_live(x, j);
}

/* Batched matmul s = q . kt, then optionally a Mul or Div of s by a constant
 * scalar and an Add of a mask, then Softmax, then o = p . v, each phase the
 * next one's only reader of what it wrote: one attention phase, in the first
 * one's place, writing o. q, kt, v and the mask are read where they lie. */
static bool fuse_attention(plan_ctx *x, int i) {
    lp_persist_program *p = x->p;
    lp_persist_phase *s1 = &p->phases[i];
    int r = s1->out.rank;
    if (r < 2 || !is_contiguous(&s1->out)) return false;
    int chain[5], n = 0;
    chain[n++] = i;
    float alpha = s1->alpha;
    const lp_persist_view *mask = NULL;
    range cur = view_range(&s1->out);
    int dt = s1->out.dtype;
    int j = next_live(x, i);
    /* an optional constant scale */
    if (j < p->n_phases) {
        const lp_persist_phase *e = &p->phases[j];
        float v;
        bool on_a = same_bytes(&e->a, cur) && e->a.dtype == dt, on_b = same_bytes(&e->b, cur) && e->b.dtype == dt;
        bool elementwise = e->kind == LP_PERSIST_ELEMENTWISE && is_contiguous(&e->out) && e->out.dtype == dt &&
                           view_numel(&e->out) == view_numel(&s1->out);
        if (elementwise && (e->op == LP_OP_Mul || e->op == LP_OP_Div) && on_a && scalar_weight(x, &e->b, &v))
            alpha = e->op == LP_OP_Mul ? alpha * v : alpha / v;
        else if (elementwise && e->op == LP_OP_Mul && on_b && scalar_weight(x, &e->a, &v))
            alpha *= v;
        else
            elementwise = false;
        if (elementwise) {
            if (!dead_after(x, j, -1, cur)) return false;
            j = take(x, chain, &n, j, &cur);
        }
    }
    /* an optional mask */
    if (j < p->n_phases) {
        const lp_persist_phase *e = &p->phases[j];
        bool on_a = same_bytes(&e->a, cur) && e->a.dtype == dt, on_b = same_bytes(&e->b, cur) && e->b.dtype == dt;
        if (e->kind == LP_PERSIST_ELEMENTWISE && e->op == LP_OP_Add && (on_a || on_b) && is_contiguous(&e->out) &&
            e->out.dtype == dt && view_numel(&e->out) == view_numel(&s1->out)) {
            mask = on_a ? &e->b : &e->a;
            if (!fits_as(mask, &s1->out, s1->out.dims[r - 2], s1->out.dims[r - 1]) || !dead_after(x, j, -1, cur))
                return false;
            j = take(x, chain, &n, j, &cur);
        }
    }
    if (j >= p->n_phases) return false;
    const lp_persist_phase *sm = &p->phases[j];
    if (sm->kind != LP_PERSIST_SOFTMAX || sm->op != LP_OP_Softmax || !same_bytes(&sm->a, cur) ||
        sm->a.dtype != dt || sm->out.dtype != dt || !is_contiguous(&sm->out) || sm->out.rank != r ||
        !dead_after(x, j, -1, cur))
        return false;
    j = take(x, chain, &n, j, &cur);
    if (j >= p->n_phases) return false;
    const lp_persist_phase *s2 = &p->phases[j];
    int64_t M = s1->out.dims[r - 2], N = s1->out.dims[r - 1], K = s1->a.dims[r - 1];
    if (s2->kind != LP_PERSIST_BATCHED_MATMUL || s2->out.rank != r || !same_bytes(&s2->a, cur) ||
        s2->a.dtype != dt || s2->out.dtype != dt || s2->alpha != 1.0f || !dead_after(x, j, -1, cur) ||
        N > LP_PERSIST_ATTENTION_N || s2->out.dims[r - 2] != M)
        return false;
    for (int k = 0; k < r - 2; k++)
        if (s2->out.dims[k] != s1->out.dims[k]) return false;
    int64_t D = s2->out.dims[r - 1];
    if (s1->a.dtype != dt || s1->b.dtype != dt || s2->b.dtype != dt || (mask && mask->dtype != dt)) return false;
    if (!fits_as(&s1->a, &s1->out, M, K) || !fits_as(&s1->b, &s1->out, K, N) || !fits_as(&s2->b, &s2->out, N, D))
        return false;
    /* o overlaps no input; no phase of the chain writes v or the mask (which
     * would then be values the attention phase no longer writes); q and kt,
     * read first, may be overwritten after: the attention phase reads them
     * at the first phase's place */
    range ins[4] = {view_range(&s1->a), view_range(&s1->b), view_range(&s2->b), mask ? view_range(mask) : (range){0, 0}};
    range o = view_range(&s2->out);
    rw w;
    for (int q = 0; q < 4; q++) {
        if (overlap(o, ins[q])) return false;
        for (int c = 0; c < n && q >= 2; c++) {
            rw_of(p, &p->phases[chain[c]], &w);
            if (writes_any(&w, ins[q])) return false;
        }
    }
    lp_persist_phase at = *s1;
    at.kind = LP_PERSIST_ATTENTION;
    at.alpha = alpha;
    at.out = s2->out;
    at.scale = s2->b;
    at.has_bias = mask != NULL;
    if (mask) at.bias = *mask;
    *s1 = at;
    for (int c = 1; c < n; c++) {
        x->gone[chain[c]] = true;
        p->n_fused++;
    }
    x->gone[j] = true;
    p->n_fused++;
    return true;
}

static void fuse_attentions(plan_ctx *x) {
    lp_persist_program *p = x->p;
    for (int i = 0; i < p->n_phases; i++)
        if (!x->gone[i] && p->phases[i].kind == LP_PERSIST_BATCHED_MATMUL) fuse_attention(x, i);
}

/* ---- LayerNorm as the prologue of the Gemms that read it ----------------------- */

/* LayerNorm l's output y, read after it only as the A of Gemms (each the
 * whole of y, over the same K) until written whole again or the step ends,
 * and never sent: each of those Gemms normalises its rows of A itself,
 * reading l's input, which nothing between l and the last of them writes. */
static bool fuse_layernorm(plan_ctx *x, int li) {
    lp_persist_program *p = x->p;
    const lp_persist_phase *l = &p->phases[li];
    int r = l->out.rank;
    if (!is_contiguous(&l->out) || !is_contiguous(&l->a) || l->a.dtype != l->out.dtype || r < 1 ||
        !l->scale.weight || (l->has_bias && !l->bias.weight))
        return false;
    int64_t K = l->out.dims[r - 1];
    range y = view_range(&l->out), in = view_range(&l->a);
    if (is_live_out(x, y) || overlap(y, in)) return false;
    int readers[64], n_readers = 0;
    rw s;
    for (int k = li + 1; k < p->n_phases; k++) {
        if (x->gone[k]) continue;
        const lp_persist_phase *g = &p->phases[k];
        rw_of(p, g, &s);
        bool reads = reads_any(&s, y);
        if (reads) {
            if (g->kind != LP_PERSIST_GEMM || g->ln || g->k != K || !same_bytes(&g->a, y) ||
                g->a.dtype != l->out.dtype || n_readers == 64)
                return false;
            /* y read only as A */
            range others[3] = {view_range(&g->b), g->has_bias ? view_range(&g->bias) : (range){0, 0},
                               g->epi.residual ? view_range(&g->epi.res) : (range){0, 0}};
            for (int q = 0; q < 3; q++)
                if (overlap(others[q], y)) return false;
            readers[n_readers++] = k;
        }
        if (writes_all(&s, y)) break;
        if (writes_any(&s, y)) return false;
    }
    if (!n_readers) return false;
    /* l's input and its scale and bias stay as they are until the last reader */
    for (int k = li + 1; k < readers[n_readers - 1]; k++) {
        if (x->gone[k]) continue;
        rw_of(p, &p->phases[k], &s);
        if (writes_any(&s, in)) return false;
    }
    for (int q = 0; q < n_readers; q++) {
        lp_persist_phase *g = &p->phases[readers[q]];
        lp_persist_view a = {.offset = l->a.offset, .dtype = g->a.dtype, .weight = l->a.weight};
        a.rank = 2;
        a.dims[0] = g->m;
        a.dims[1] = K;
        contiguous(&a);
        g->a = a;
        g->ln = 1;
        g->ln_eps = l->alpha;
        g->scale = l->scale;
        g->ln_bias = l->has_bias ? l->bias : (lp_persist_view){0};
    }
    return true;
}

static void fuse_layernorms(plan_ctx *x) {
    lp_persist_program *p = x->p;
    for (int i = 0; i < p->n_phases; i++)
        if (!x->gone[i] && p->phases[i].kind == LP_PERSIST_LAYERNORM && fuse_layernorm(x, i)) {
            x->gone[i] = true;
            p->n_fused++;
        }
}

/* ---- barriers ------------------------------------------------------------------ */

typedef struct pending {
    range *r;
    int n, cap;
} pending;

static bool pending_add(pending *q, range r) {
    if (q->n == q->cap) {
        int cap = q->cap ? 2 * q->cap : 32;
        range *nr = realloc(q->r, (size_t)cap * sizeof *nr);
        if (!nr) return false;
        q->r = nr;
        q->cap = cap;
    }
    q->r[q->n++] = r;
    return true;
}

static bool pending_hits(const pending *q, range r) {
    for (int k = 0; k < q->n; k++)
        if (overlap(q->r[k], r)) return true;
    return false;
}

static bool place_barriers(plan_ctx *x) {
    lp_persist_program *p = x->p;
    pending reads = {0}, writes = {0};
    bool ok = true, open = false;
    rw s;
    for (int i = 0; i < p->n_phases && ok; i++) {
        lp_persist_phase *ph = &p->phases[i];
        if (ph->kind == LP_PERSIST_NODE) {
            reads.n = writes.n = 0;
            open = false;
            continue;
        }
        if (!open) p->n_kernels++;
        open = true;
        rw_of(p, ph, &s);
        bool dep = false;
        for (int k = 0; k < s.n_reads && !dep; k++) dep = pending_hits(&writes, s.reads[k]);
        for (int k = 0; k < s.n_writes && !dep; k++)
            dep = pending_hits(&writes, s.writes[k]) || pending_hits(&reads, s.writes[k]);
        if (dep) {
            ph->sync = 1;
            p->n_syncs++;
            reads.n = writes.n = 0;
        }
        for (int k = 0; k < s.n_reads && ok; k++) ok = pending_add(&reads, s.reads[k]);
        for (int k = 0; k < s.n_writes && ok; k++) ok = pending_add(&writes, s.writes[k]);
    }
    free(reads.r);
    free(writes.r);
    return ok;
}

/* ---- the plan ---------------------------------------------------------------------- */

/* Room for more phases than events (a large copy is several). */
static bool grow(lp_persist_program *p, int *cap, bool **gone) {
    int c = *cap * 2;
    lp_persist_phase *ph = realloc(p->phases, (size_t)c * sizeof *ph);
    if (!ph) return false;
    p->phases = ph;
    bool *g = realloc(*gone, (size_t)c * sizeof *g);
    if (!g) return false;
    memset(g + *cap, 0, (size_t)(c - *cap) * sizeof *g);
    *gone = g;
    *cap = c;
    return true;
}

lp_status lp_persist_plan(const lp_persist_event *events, int n, const void *weights,
                          uint64_t weights_bytes, const lp_persist_range *live_out, int n_live,
                          lp_persist_program **out, lp_diag *d) {
    *out = NULL;
    lp_persist_program *p = calloc(1, sizeof *p);
    int n_nodes = 0;
    for (int i = 0; i < n; i++) n_nodes += events[i].node != NULL;
    int cap = n + 1;
    if (p) {
        p->phases = calloc((size_t)cap, sizeof *p->phases);
        p->nodes = calloc((size_t)n_nodes + 1, sizeof *p->nodes);
    }
    bool *gone = calloc((size_t)cap, sizeof *gone);
    if (!p || !p->phases || !p->nodes || !gone) {
        free(gone);
        lp_persist_free(p);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory planning a persistent program");
    }
    plan_ctx x = {.p = p, .weights_bytes = weights_bytes, .weights = weights, .live = live_out, .n_live = n_live};
    for (int i = 0; i < n; i++) {
        const lp_persist_event *e = &events[i];
        if (!e->node) {
            /* a large move in pieces the kernels index in 32 bits */
            uint64_t piece = (uint64_t)(PERSIST_MAX_ELEMS / 2);
            for (uint64_t at = 0; at < e->bytes; at += piece) {
                uint64_t b = e->bytes - at < piece ? e->bytes - at : piece;
                if (p->n_phases == cap && !grow(p, &cap, &gone)) {
                    free(gone);
                    lp_persist_free(p);
                    return lp_error(d, LP_ERR_INTERNAL, "out of memory planning a persistent program");
                }
                p->phases[p->n_phases++] = copy_phase(e->dst + at, e->src + at, b, weights_bytes);
            }
            continue;
        }
        int node = p->n_nodes;
        p->nodes[p->n_nodes++] = e->node;
        lp_persist_phase ph = node_phase(&x, e->node, node);
        if (ph.kind != LP_PERSIST_NODE && !small_enough(&ph)) {
            x.why = "a tensor of 2^30 elements or more";
            ph = (lp_persist_phase){.kind = LP_PERSIST_NODE, .node = node};
        }
        if (p->n_phases == cap && !grow(p, &cap, &gone)) {
            free(gone);
            lp_persist_free(p);
            return lp_error(d, LP_ERR_INTERNAL, "out of memory planning a persistent program");
        }
        if (ph.kind == LP_PERSIST_NODE && !p->fallback[0])
            snprintf(p->fallback, sizeof p->fallback, "%s '%s': %s", e->node->op, e->node->node, x.why);
        p->phases[p->n_phases++] = ph;
    }
    x.gone = gone;
    fuse_epilogues(&x);
    absorb_copies(&x);
    drop_noop_copies(&x);
    fuse_epilogues(&x);
    fold_scales(&x);
    fuse_into_producers(&x);
    fuse_attentions(&x);
    fuse_layernorms(&x);
    int k = 0;
    for (int i = 0; i < p->n_phases; i++)
        if (!gone[i]) p->phases[k++] = p->phases[i];
    p->n_phases = k;
    free(gone);
    if (!place_barriers(&x)) {
        lp_persist_free(p);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory planning a persistent program");
    }
    *out = p;
    return LP_OK;
}

/* ---- a cut written into the receiver's buffer ------------------------------------ */

bool lp_persist_write_cut(lp_persist_program *p, uint64_t lo, uint64_t hi, uint64_t at, char *why,
                          size_t why_len) {
    range cut = {lo, hi};
    uint64_t written = 0;
    rw s;
    for (int i = 0; i < p->n_phases; i++) {
        const lp_persist_phase *ph = &p->phases[i];
        rw_of(p, ph, &s);
        const char *node = ph->node >= 0 && ph->node < p->n_nodes ? p->nodes[ph->node]->node : "?";
        if (reads_any(&s, cut)) {
            snprintf(why, why_len, "node '%s' reads the sent bytes on the sending card", node);
            return false;
        }
        if (!writes_any(&s, cut)) continue;
        if (ph->kind == LP_PERSIST_NODE) {
            snprintf(why, why_len, "node '%s', a library call, writes the sent bytes", node);
            return false;
        }
        if (!covers(cut, view_range(&ph->out))) {
            snprintf(why, why_len, "node '%s' writes the sent bytes and others", node);
            return false;
        }
        written += (uint64_t)view_numel(&ph->out) * (uint64_t)lp_persist_esize(ph->out.dtype);
    }
    if (written != hi - lo) {
        snprintf(why, why_len, "the step writes %" PRIu64 " of the %" PRIu64 " sent bytes", written, hi - lo);
        return false;
    }
    for (int i = 0; i < p->n_phases; i++) {
        lp_persist_phase *ph = &p->phases[i];
        if (ph->kind != LP_PERSIST_NODE && overlap(view_range(&ph->out), cut)) ph->out_at = at + (ph->out.offset - lo);
    }
    return true;
}

void lp_persist_free(lp_persist_program *p) {
    if (!p) return;
    free(p->phases);
    free(p->nodes);
    free(p);
}

/* ---- the dump ------------------------------------------------------------------------ */

static const char *kind_name(int k) {
    static const char *names[] = {"?", "copy", "elementwise", "gemm", "batched_matmul", "layernorm",
                                  "softmax", "node", "attention"};
    return k >= 1 && k <= 8 ? names[k] : "?";
}

static void put_view(FILE *f, const char *name, const lp_persist_view *v) {
    fprintf(f, " %s@%" PRIu64 "%s[", name, v->offset, v->weight ? "w" : "");
    for (int k = 0; k < v->rank; k++) fprintf(f, "%s%" PRId64, k ? "x" : "", v->dims[k]);
    fputs("]", f);
    if (!is_contiguous(v)) {
        fputs("/", f);
        for (int k = 0; k < v->rank; k++) fprintf(f, "%s%" PRId64, k ? "," : "", v->strides[k]);
    }
    fprintf(f, ":%s", lp_dtype_name((lp_dtype)v->dtype));
}

void lp_persist_dump(const lp_persist_program *p, FILE *f) {
    fprintf(f, "persistent program: %d phases, %d kernel%s, %d barriers, %d fused\n", p->n_phases,
            p->n_kernels, p->n_kernels == 1 ? "" : "s", p->n_syncs, p->n_fused);
    for (int i = 0; i < p->n_phases; i++) {
        const lp_persist_phase *ph = &p->phases[i];
        fprintf(f, "  %3d %s %-14s", i, ph->sync ? "|" : " ", kind_name(ph->kind));
        if (ph->node >= 0 && ph->node < p->n_nodes) fprintf(f, " %s", p->nodes[ph->node]->node);
        else fputs(" (copy)", f);
        if (ph->kind == LP_PERSIST_NODE) {
            fprintf(f, " %s\n", p->nodes[ph->node]->op);
            continue;
        }
        if (ph->op > 0 && lp_op_name(ph->op)) fprintf(f, " %s", lp_op_name(ph->op));
        if (ph->kind == LP_PERSIST_GEMM) {
            fprintf(f, " m=%" PRId64 " n=%" PRId64 " k=%" PRId64 "%s%s", ph->m, ph->n, ph->k,
                    ph->trans_w ? " trans_w" : "", ph->has_bias ? " +bias" : "");
            if (ph->ln) fputs(" +layernorm", f);
            if (ph->epi.act) fprintf(f, " +%s", lp_op_name(ph->epi.act));
            if (ph->epi.residual) fputs(" +residual", f);
        }
        put_view(f, "out", &ph->out);
        if (ph->out_at) fputs(" (written into the receiving card's buffer)", f);
        if (ph->kind == LP_PERSIST_ATTENTION) {
            put_view(f, "q", &ph->a);
            put_view(f, "kt", &ph->b);
            put_view(f, "v", &ph->scale);
            if (ph->has_bias) put_view(f, "mask", &ph->bias);
            fprintf(f, " alpha=%g\n", ph->alpha);
            continue;
        }
        put_view(f, "a", &ph->a);
        if (ph->kind == LP_PERSIST_GEMM || ph->kind == LP_PERSIST_BATCHED_MATMUL ||
            (ph->kind == LP_PERSIST_ELEMENTWISE && lp_persist_is_binary(ph->op)))
            put_view(f, "b", &ph->b);
        if (ph->epi.residual) put_view(f, "res", &ph->epi.res);
        if (ph->ln) {
            put_view(f, "ln_scale", &ph->scale);
            if (ph->ln_bias.dtype) put_view(f, "ln_bias", &ph->ln_bias);
        }
        fputc('\n', f);
    }
}
