/* The persistent-program planner (runtime/persist_plan.c) on small recorded
 * steps built by hand: lp_card_node tables whose arguments lie in a made-up
 * allocation (weights [0, W_BYTES), activations above), as a card program
 * lays them out. Each test asserts the planner's exact output: phase kinds,
 * barriers, fused epilogues, absorbed and folded copies, folded scales,
 * LayerNorm prologues, attention phases,
 * library-call splits, split large copies. Where the plan changes what runs,
 * the planned program (lp_persist_run_cpu) and the recorded sequence run
 * node by node on the reference kernels over the same random arena give
 * the same outputs. Also lp_persist_record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lp_ops.h"
#include "lp_persist.h"
#include "lp_ref.h"

/* ---- a recorded step built by hand --------------------------------------- */

#define W_BYTES ((uint64_t)1 << 16) /* the weights region [0, W_BYTES) */
#define NET_TENSORS 128
#define NET_NODES 32
#define NET_EVENTS 32

typedef struct net {
    uint64_t w_top, a_top; /* next free weight byte, activation byte */
    int n_tensors, n_args, n_nodes, n_events;
    int64_t dims[NET_TENSORS][LP_PERSIST_RANK];
    lp_card_tensor tensors[NET_TENSORS]; /* every tensor made, to fill the arena by dtype */
    lp_card_tensor args[NET_TENSORS];    /* the nodes' inputs and outputs */
    lp_card_node nodes[NET_NODES];
    lp_persist_event events[NET_EVENTS];
} net;

static net *net_new(void) {
    net *g = calloc(1, sizeof *g);
    assert_non_null(g);
    g->w_top = 0;
    g->a_top = W_BYTES;
    return g;
}

#define F32 LP_DT_FLOAT
#define F16 LP_DT_FLOAT16
/* rank, dims */
#define D(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
/* count, tensors */
#define ARGS(...) \
    (int)(sizeof((lp_card_tensor[]){__VA_ARGS__}) / sizeof(lp_card_tensor)), (lp_card_tensor[]){__VA_ARGS__}

/* A tensor of the allocation at off. */
static lp_card_tensor at(net *g, uint64_t off, int dtype, int rank, const int64_t *dims) {
    assert_true(g->n_tensors < NET_TENSORS && rank <= LP_PERSIST_RANK);
    int64_t *d = g->dims[g->n_tensors];
    uint64_t n = 1;
    for (int k = 0; k < rank; k++) {
        d[k] = dims[k];
        n *= (uint64_t)dims[k];
    }
    lp_card_tensor t = {LP_CARD_MEMORY, off, n * (uint64_t)lp_persist_esize(dtype), dtype, rank,
                        rank ? d : NULL, NULL};
    g->tensors[g->n_tensors++] = t;
    return t;
}

/* A fresh tensor of the weights region (64-byte aligned). */
static lp_card_tensor weight(net *g, int dtype, int rank, const int64_t *dims) {
    lp_card_tensor t = at(g, g->w_top, dtype, rank, dims);
    g->w_top = (g->w_top + t.bytes + 63) & ~(uint64_t)63;
    assert_true(g->w_top <= W_BYTES);
    return t;
}

/* A fresh activation tensor, above the weights. */
static lp_card_tensor act(net *g, int dtype, int rank, const int64_t *dims) {
    lp_card_tensor t = at(g, g->a_top, dtype, rank, dims);
    g->a_top = (g->a_top + t.bytes + 63) & ~(uint64_t)63;
    return t;
}

/* Records a compute of a new node: inputs in[n_in], one output. */
static lp_card_node *compute(net *g, const char *name, const char *op, int n_in, const lp_card_tensor *in,
                             lp_card_tensor out) {
    assert_true(g->n_nodes < NET_NODES && g->n_events < NET_EVENTS && g->n_args + n_in + 1 <= NET_TENSORS);
    lp_card_tensor *args = &g->args[g->n_args];
    memcpy(args, in, (size_t)n_in * sizeof *in);
    args[n_in] = out;
    g->n_args += n_in + 1;
    lp_card_node *n = &g->nodes[g->n_nodes++];
    *n = (lp_card_node){.node = name, .op = op, .opset = 17, .n_inputs = n_in, .n_outputs = 1,
                        .inputs = args, .outputs = args + n_in};
    g->events[g->n_events++] = (lp_persist_event){.node = n, .value = name};
    return n;
}

/* Records a copy of bytes inside the allocation. */
static void copy(net *g, uint64_t dst, uint64_t src, uint64_t bytes) {
    assert_true(g->n_events < NET_EVENTS);
    g->events[g->n_events++] = (lp_persist_event){.dst = dst, .src = src, .bytes = bytes, .value = "copy"};
}

static lp_persist_program *plan(const net *g, const void *weights, const lp_persist_range *live, int n_live) {
    lp_diag d = lp_diag_make("test_persist_plan");
    lp_persist_program *p = NULL;
    assert_int_equal(lp_persist_plan(g->events, g->n_events, weights, W_BYTES, live, n_live, &p, &d), LP_OK);
    assert_non_null(p);
    return p;
}

static lp_persist_range bytes_of(lp_card_tensor t) { return (lp_persist_range){t.offset, t.offset + t.bytes}; }

static const int64_t perm_10[] = {1, 0}, perm_102[] = {1, 0, 2};
static const lp_card_attr attr_perm_10[] = {LP_ATTR_INTS("perm", 2, perm_10)};
static const lp_card_attr attr_perm_102[] = {LP_ATTR_INTS("perm", 3, perm_102)};
static const int64_t shape_16x32[] = {16, 32}, shape_2[] = {2};

/* ---- running both ways ----------------------------------------------------- */

static uint32_t rng_state = 20240611u;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static void poke(unsigned char *base, uint64_t off, int dtype, float x) {
    if (dtype == F32) {
        memcpy(base + off, &x, sizeof x);
        return;
    }
    uint16_t h = dtype == F16 ? lp_ref_f32_to_f16(x) : lp_ref_f32_to_bf16(x);
    memcpy(base + off, &h, sizeof h);
}

/* The allocation, every tensor holding random values of its dtype in [-1, 1). */
static unsigned char *random_arena(const net *g) {
    unsigned char *base = malloc(g->a_top);
    assert_non_null(base);
    for (uint64_t o = 0; o + 4 <= g->a_top; o += 4) poke(base, o, F32, frand());
    for (int i = 0; i < g->n_tensors; i++) {
        const lp_card_tensor *t = &g->tensors[i];
        int es = lp_persist_esize(t->dtype);
        if (t->dtype == F16 || t->dtype == LP_DT_BFLOAT16)
            for (uint64_t o = 0; o < t->bytes; o += (uint64_t)es) poke(base, t->offset + o, t->dtype, frand());
    }
    return base;
}

/* A node on the reference kernels, as the CPU runtime runs it. */
static int ref_compute(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    lp_diag *d = env->user;
    lp_ref_tensor *ts = calloc((size_t)(n->n_inputs + n->n_outputs), sizeof *ts);
    lp_attr *attrs = calloc((size_t)n->n_attrs + 1, sizeof *attrs);
    assert_non_null(ts);
    assert_non_null(attrs);
    for (int k = 0; k < n->n_inputs + n->n_outputs; k++) {
        const lp_card_tensor *t = k < n->n_inputs ? &n->inputs[k] : &n->outputs[k - n->n_inputs];
        ts[k].dtype = (lp_dtype)t->dtype;
        ts[k].rank = t->rank;
        for (int r = 0; r < t->rank; r++) ts[k].dims[r] = t->dims[r];
        ts[k].data = t->region == LP_CARD_MEMORY    ? (void *)(base + t->offset)
                     : t->region == LP_CARD_LITERAL ? (void *)t->literal
                                                    : NULL;
    }
    for (int k = 0; k < n->n_attrs; k++) {
        const lp_card_attr *a = &n->attrs[k];
        attrs[k] = (lp_attr){.name = a->name, .type = (lp_attr_type)a->type, .i = a->i, .f = a->f, .s = a->s,
                             .s_len = (size_t)a->s_len, .n = a->n, .ints = (int64_t *)a->ints,
                             .floats = (float *)a->floats};
    }
    lp_ref_call call = {.op = lp_op_lookup("", n->op), .node = n->node, .opset = n->opset,
                        .n_inputs = n->n_inputs, .inputs = ts, .n_outputs = n->n_outputs,
                        .outputs = ts + n->n_inputs, .n_attrs = n->n_attrs, .attrs = attrs, .diag = d};
    lp_status st = lp_ref_run(&call);
    free(ts);
    free(attrs);
    return st == LP_OK ? 0 : (int)st;
}

/* The recorded step and the planned program p over copies of one random
 * arena (weights: the arena the plan saw, when the test patched it): each
 * output in outs[n_out] is written and agrees to rel_l2 < tol. */
static void check_same(const net *g, const lp_persist_program *p, const unsigned char *init, int n_out,
                       const lp_card_tensor *outs, double tol) {
    unsigned char *want = malloc(g->a_top), *got = malloc(g->a_top);
    assert_non_null(want);
    assert_non_null(got);
    memcpy(want, init, g->a_top);
    memcpy(got, init, g->a_top);
    lp_diag d = lp_diag_make("test_persist_plan");
    lp_card_env env = {.abi = LP_CARD_ABI, .compute = ref_compute, .user = &d};
    for (int i = 0; i < g->n_events; i++) {
        const lp_persist_event *e = &g->events[i];
        if (e->node) assert_int_equal(ref_compute(&env, want, e->node), 0);
        else memmove(want + e->dst, want + e->src, e->bytes);
    }
    assert_int_equal(lp_persist_run_cpu(p, got, &env, &d), LP_OK);
    for (int k = 0; k < n_out; k++) {
        const lp_card_tensor *t = &outs[k];
        int64_t n = (int64_t)(t->bytes / (uint64_t)lp_persist_esize(t->dtype));
        lp_ref_diff diff;
        lp_ref_compare(got + t->offset, (lp_dtype)t->dtype, want + t->offset, (lp_dtype)t->dtype, n, &diff);
        if (diff.rel_l2 >= tol || diff.n_mismatch != 0)
            fail_msg("output %d at %llu: rel_l2 %g, %lld mismatches", k, (unsigned long long)t->offset,
                     diff.rel_l2, (long long)diff.n_mismatch);
        /* the step wrote it: not the arena's initial bytes compared with themselves */
        assert_true(memcmp(want + t->offset, init + t->offset, t->bytes) != 0);
    }
    free(want);
    free(got);
}

static int64_t view_bytes(const lp_persist_view *v) {
    int64_t n = lp_persist_esize(v->dtype);
    for (int k = 0; k < v->rank; k++) n *= v->dims[k];
    return n;
}

/* ---- 1, 2: barriers ------------------------------------------------------- */

/* Two Gemms reading one input into disjoint outputs run between the same
 * barriers; the phase that reads the first's output opens a barrier, after
 * which the second's output is visible without another one. */
static void test_independent_share_barrier(void **state) {
    (void)state;
    net *g = net_new();
    lp_card_tensor x = act(g, F32, D(16, 64)), w1 = weight(g, F32, D(64, 32)), w2 = weight(g, F32, D(64, 32));
    lp_card_tensor y1 = act(g, F32, D(16, 32)), y2 = act(g, F32, D(16, 32));
    lp_card_tensor z1 = act(g, F32, D(16, 32)), z2 = act(g, F32, D(16, 32));
    compute(g, "fc1", "MatMul", ARGS(x, w1), y1);
    compute(g, "fc2", "MatMul", ARGS(x, w2), y2);
    compute(g, "relu", "Relu", ARGS(y1), z1);
    compute(g, "sig", "Sigmoid", ARGS(y2), z2);
    lp_persist_program *p = plan(g, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 4);
    const int kinds[4] = {LP_PERSIST_GEMM, LP_PERSIST_GEMM, LP_PERSIST_ELEMENTWISE, LP_PERSIST_ELEMENTWISE};
    const int syncs[4] = {0, 0, 1, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(p->phases[i].kind, kinds[i]);
        assert_int_equal(p->phases[i].sync, syncs[i]);
        assert_int_equal(p->phases[i].node, i);
    }
    assert_int_equal(p->phases[0].m, 16);
    assert_int_equal(p->phases[0].n, 32);
    assert_int_equal(p->phases[0].k, 64);
    assert_int_equal(p->phases[0].out.offset, y1.offset);
    assert_int_equal(p->n_syncs, 1);
    assert_int_equal(p->n_kernels, 1);
    assert_int_equal(p->n_fused, 0);
    assert_true(p->fallback[0] == '\0');
    unsigned char *init = random_arena(g);
    check_same(g, p, init, ARGS(z1, z2), 1e-5);
    free(init);
    lp_persist_free(p);
    free(g);
}

/* A phase overwriting bytes an earlier phase since the last barrier read
 * (or wrote) waits for it; one writing untouched bytes does not. */
static void test_write_after_read(void **state) {
    (void)state;
    net *g = net_new();
    lp_card_tensor x = act(g, F32, D(8, 16)), y = act(g, F32, D(8, 16)), z = act(g, F32, D(8, 16));
    lp_card_tensor u = act(g, F32, D(8, 16)), v = act(g, F32, D(8, 16));
    compute(g, "relu", "Relu", ARGS(x), y); /* reads x */
    compute(g, "sig", "Sigmoid", ARGS(z), u); /* independent */
    compute(g, "tanh", "Tanh", ARGS(v), x);   /* overwrites what relu read: barrier */
    compute(g, "neg", "Neg", ARGS(v), z);     /* overwrites what sig read, before the barrier: none */
    compute(g, "abs", "Abs", ARGS(v), x);     /* writes what tanh wrote: barrier */
    lp_persist_program *p = plan(g, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 5);
    const int syncs[5] = {0, 0, 1, 0, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p->phases[i].kind, LP_PERSIST_ELEMENTWISE);
        assert_int_equal(p->phases[i].sync, syncs[i]);
    }
    assert_int_equal(p->n_syncs, 2);
    assert_int_equal(p->n_kernels, 1);
    unsigned char *init = random_arena(g);
    check_same(g, p, init, ARGS(y, u, z, x), 1e-6);
    free(init);
    lp_persist_free(p);
    free(g);
}

/* ---- 3, 4, 5: Gemm epilogues ----------------------------------------------- */

/* x [16, 64] . w [64, 32] + bias (a Gemm with C, how the program emits
 * MatMul + bias), Gelu, + residual r. gelu_out: where the Gelu writes
 * (NULL: a fresh tensor). */
typedef struct mlp {
    lp_card_tensor x, w, bias, y, gelu, r, z;
} mlp;

static mlp mlp_block(net *g, const lp_card_tensor *gelu_out) {
    mlp m;
    m.x = act(g, F32, D(16, 64));
    m.w = weight(g, F32, D(64, 32));
    m.bias = weight(g, F32, D(32));
    m.y = act(g, F32, D(16, 32));
    m.gelu = gelu_out ? *gelu_out : act(g, F32, D(16, 32));
    m.r = act(g, F32, D(16, 32));
    m.z = act(g, F32, D(16, 32));
    compute(g, "fc", "Gemm", ARGS(m.x, m.w, m.bias), m.y);
    compute(g, "gelu", "Gelu", ARGS(m.y), m.gelu);
    compute(g, "residual", "Add", ARGS(m.gelu, m.r), m.z);
    return m;
}

static void test_epilogue_fused(void **state) {
    (void)state;
    net *g = net_new();
    mlp m = mlp_block(g, NULL);
    lp_persist_program *p = plan(g, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 1);
    const lp_persist_phase *ph = &p->phases[0];
    assert_int_equal(ph->kind, LP_PERSIST_GEMM);
    assert_int_equal(ph->node, 0);
    assert_int_equal(ph->m, 16);
    assert_int_equal(ph->n, 32);
    assert_int_equal(ph->k, 64);
    assert_int_equal(ph->trans_w, 0);
    assert_int_equal(ph->a.offset, m.x.offset);
    assert_int_equal(ph->b.offset, m.w.offset);
    assert_int_equal(ph->b.weight, 1);
    assert_int_equal(ph->has_bias, 1);
    assert_int_equal(ph->bias.offset, m.bias.offset);
    assert_int_equal(ph->epi.act, LP_OP_Gelu);
    assert_int_equal(ph->epi.act_tanh, 0);
    assert_int_equal(ph->epi.residual, 1);
    assert_int_equal(ph->epi.res.offset, m.r.offset);
    assert_int_equal(ph->out.offset, m.z.offset);
    assert_int_equal(p->n_fused, 2);
    assert_int_equal(p->n_syncs, 0);
    unsigned char *init = random_arena(g);
    check_same(g, p, init, ARGS(m.z), 1e-5);
    free(init);
    lp_persist_free(p);
    free(g);
}

/* The Gelu writes over the Gemm's input a: the Gemm cannot write there
 * while it still reads a, so nothing fuses. */
static void test_epilogue_refused_overlap(void **state) {
    (void)state;
    net *g = net_new();
    lp_card_tensor a_head = at(g, W_BYTES, F32, D(16, 32)); /* the first half of x's bytes */
    mlp m = mlp_block(g, &a_head);
    assert_int_equal(m.x.offset, a_head.offset);
    lp_persist_program *p = plan(g, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 3);
    assert_int_equal(p->phases[0].kind, LP_PERSIST_GEMM);
    assert_int_equal(p->phases[0].epi.act, 0);
    assert_int_equal(p->phases[0].epi.residual, 0);
    assert_int_equal(p->phases[0].out.offset, m.y.offset);
    assert_int_equal(p->phases[1].kind, LP_PERSIST_ELEMENTWISE);
    assert_int_equal(p->phases[1].op, LP_OP_Gelu);
    assert_int_equal(p->phases[1].sync, 1);
    assert_int_equal(p->phases[2].op, LP_OP_Add);
    assert_int_equal(p->phases[2].sync, 1);
    assert_int_equal(p->n_fused, 0);
    assert_int_equal(p->n_syncs, 2);
    lp_persist_free(p);
    free(g);
}

/* The Gemm's result y is read again after its Gelu: y must be written, so
 * the Gelu stays a phase (and so does the Add after it). Once y is written
 * whole again before that read, fusion is back. */
static void test_epilogue_refused_live(void **state) {
    (void)state;
    for (int rewrite = 0; rewrite < 2; rewrite++) {
        net *g = net_new();
        mlp m = mlp_block(g, NULL);
        lp_card_tensor s = act(g, F32, D(16, 32)), v = act(g, F32, D(16, 32));
        if (rewrite) compute(g, "refill", "Neg", ARGS(v), m.y);
        compute(g, "again", "Sigmoid", ARGS(m.y), s);
        lp_persist_program *p = plan(g, NULL, NULL, 0);
        assert_int_equal(p->phases[0].kind, LP_PERSIST_GEMM);
        if (!rewrite) {
            assert_int_equal(p->n_phases, 4);
            assert_int_equal(p->phases[0].epi.act, 0);
            assert_int_equal(p->phases[0].out.offset, m.y.offset);
            assert_int_equal(p->phases[1].op, LP_OP_Gelu);
            assert_int_equal(p->phases[2].op, LP_OP_Add);
            assert_int_equal(p->n_fused, 0);
        } else {
            assert_int_equal(p->n_phases, 3);
            assert_int_equal(p->phases[0].epi.act, LP_OP_Gelu);
            assert_int_equal(p->phases[0].epi.residual, 1);
            assert_int_equal(p->phases[0].out.offset, m.z.offset);
            assert_int_equal(p->n_fused, 2);
        }
        unsigned char *init = random_arena(g);
        check_same(g, p, init, ARGS(m.z, s), 1e-5);
        free(init);
        lp_persist_free(p);
        free(g);
    }
}

/* ---- 6, 7: copies absorbed into their readers ----------------------------- */

/* Reshape src [4, 4, 32] -> o [16, 32], read by Add(r, o): the Add reads
 * src itself. With a phase between them overwriting src, the copy stays. */
static void test_copy_absorbed(void **state) {
    (void)state;
    for (int clobber = 0; clobber < 2; clobber++) {
        net *g = net_new();
        lp_card_tensor src = act(g, F32, D(4, 4, 32)), o = act(g, F32, D(16, 32));
        lp_card_tensor r = act(g, F32, D(16, 32)), z = act(g, F32, D(16, 32)), v = act(g, F32, D(4, 4, 32));
        lp_card_tensor shape = {LP_CARD_LITERAL, 0, sizeof shape_16x32, LP_DT_INT64, 1, shape_2, shape_16x32};
        compute(g, "reshape", "Reshape", ARGS(src, shape), o);
        if (clobber) compute(g, "clobber", "Neg", ARGS(v), src);
        compute(g, "add", "Add", ARGS(r, o), z);
        lp_persist_program *p = plan(g, NULL, NULL, 0);
        const lp_persist_phase *add = &p->phases[p->n_phases - 1];
        assert_int_equal(add->kind, LP_PERSIST_ELEMENTWISE);
        assert_int_equal(add->op, LP_OP_Add);
        assert_int_equal(add->a.offset, r.offset);
        assert_int_equal(add->out.offset, z.offset);
        if (!clobber) {
            assert_int_equal(p->n_phases, 1);
            assert_int_equal(p->n_fused, 1);
            assert_int_equal(add->b.offset, src.offset);
            assert_int_equal(add->b.rank, 2);
            assert_int_equal(add->b.strides[0], 32);
            assert_int_equal(add->b.strides[1], 1);
            assert_int_equal(add->sync, 0);
        } else {
            assert_int_equal(p->n_phases, 3);
            assert_int_equal(p->n_fused, 0);
            assert_int_equal(p->phases[0].kind, LP_PERSIST_COPY);
            assert_int_equal(p->phases[0].out.offset, o.offset);
            assert_int_equal(p->phases[0].a.offset, src.offset);
            assert_int_equal(p->phases[1].sync, 1); /* overwrites what the copy read */
            assert_int_equal(add->b.offset, o.offset);
            assert_int_equal(add->sync, 0);         /* the copy's write is behind that barrier */
        }
        unsigned char *init = random_arena(g);
        check_same(g, p, init, ARGS(z), 1e-6);
        free(init);
        lp_persist_free(p);
        free(g);
    }
}

/* A raw copy (a receive) into o, read by an Add: absorbed, unless o is sent
 * after the step (live out); but once o is written whole again before the
 * step ends, the send reads those bytes and the copy goes again. */
static void test_copy_live_out(void **state) {
    (void)state;
    for (int c = 0; c < 3; c++) {
        net *g = net_new();
        lp_card_tensor src = act(g, F32, D(16, 32)), o = act(g, F32, D(16, 32));
        lp_card_tensor r = act(g, F32, D(16, 32)), z = act(g, F32, D(16, 32)), v = act(g, F32, D(16, 32));
        copy(g, o.offset, src.offset, o.bytes);
        compute(g, "add", "Add", ARGS(o, r), z);
        if (c == 2) compute(g, "refill", "Relu", ARGS(v), o);
        lp_persist_range live = bytes_of(o);
        lp_persist_program *p = plan(g, NULL, &live, c ? 1 : 0);
        int kept = c == 1;
        assert_int_equal(p->n_phases, (c == 2 ? 2 : 1) + kept);
        assert_int_equal(p->n_fused, !kept);
        const lp_persist_phase *add = &p->phases[kept];
        assert_int_equal(add->op, LP_OP_Add);
        if (kept) {
            const lp_persist_phase *cp = &p->phases[0];
            assert_int_equal(cp->kind, LP_PERSIST_COPY);
            assert_int_equal(cp->node, -1);
            assert_int_equal(cp->out.offset, o.offset);
            assert_int_equal(cp->a.offset, src.offset);
            assert_int_equal(view_bytes(&cp->out), o.bytes);
            assert_int_equal(add->a.offset, o.offset);
            assert_int_equal(add->sync, 1);
        } else {
            assert_int_equal(add->a.offset, src.offset);
            assert_int_equal(add->a.dtype, F32);
        }
        unsigned char *init = random_arena(g);
        /* o itself matters only where it is sent */
        check_same(g, p, init, c ? 2 : 1, (lp_card_tensor[]){z, o}, 1e-6);
        free(init);
        lp_persist_free(p);
        free(g);
    }
}

/* ---- 8: a transpose folded into the Gemm that writes its input ------------- */

/* Gemm -> y, Transpose(y) -> t, t sent (nothing reads y): the Gemm writes t
 * through strides. Case 0: y [16, 32], perm (1, 0): y[i, j] is t[j, i] at
 * j * 16 + i, strides (1, 16). Case 1: y [2, 8, 32], perm (1, 0, 2):
 * y[b, i, k] is t[i, b, k] at i * 64 + b * 32 + k, strides (32, 64, 1).
 * Case 2: case 0 with bias, Relu and a residual fused first. */
static void test_transpose_into_gemm(void **state) {
    (void)state;
    for (int c = 0; c < 3; c++) {
        net *g = net_new();
        lp_card_tensor x = c == 1 ? act(g, F32, D(2, 8, 64)) : act(g, F32, D(16, 64));
        lp_card_tensor w = weight(g, F32, D(64, 32)), bias = weight(g, F32, D(32));
        lp_card_tensor y = c == 1 ? act(g, F32, D(2, 8, 32)) : act(g, F32, D(16, 32));
        lp_card_tensor t = c == 1 ? act(g, F32, D(8, 2, 32)) : act(g, F32, D(32, 16));
        if (c == 2) {
            lp_card_tensor h = act(g, F32, D(16, 32)), h2 = act(g, F32, D(16, 32)), r = act(g, F32, D(16, 32));
            compute(g, "fc", "Gemm", ARGS(x, w, bias), h);
            compute(g, "relu", "Relu", ARGS(h), h2);
            compute(g, "res", "Add", ARGS(r, h2), y);
        } else
            compute(g, "fc", "MatMul", ARGS(x, w), y);
        lp_card_node *tr = compute(g, "tr", "Transpose", ARGS(y), t);
        tr->n_attrs = 1;
        tr->attrs = c == 1 ? attr_perm_102 : attr_perm_10;
        lp_persist_range live = bytes_of(t);
        lp_persist_program *p = plan(g, NULL, &live, 1);
        assert_int_equal(p->n_phases, 1);
        assert_int_equal(p->n_fused, c == 2 ? 3 : 1);
        const lp_persist_phase *ph = &p->phases[0];
        assert_int_equal(ph->kind, LP_PERSIST_GEMM);
        assert_int_equal(ph->m, 16);
        assert_int_equal(ph->out.offset, t.offset);
        assert_int_equal(ph->out.rank, y.rank);
        const int64_t want2[2] = {1, 16}, want3[3] = {32, 64, 1};
        for (int k = 0; k < y.rank; k++) {
            assert_int_equal(ph->out.dims[k], y.dims[k]);
            assert_int_equal(ph->out.strides[k], c == 1 ? want3[k] : want2[k]);
        }
        if (c == 2) {
            assert_int_equal(ph->epi.act, LP_OP_Relu);
            assert_int_equal(ph->epi.residual, 1);
        }
        unsigned char *init = random_arena(g);
        check_same(g, p, init, ARGS(t), 1e-5);
        free(init);
        lp_persist_free(p);
        free(g);
    }
}

/* y read again after the Transpose: the Gemm still writes y, the copy stays. */
static void test_transpose_kept(void **state) {
    (void)state;
    net *g = net_new();
    lp_card_tensor x = act(g, F32, D(16, 64)), w = weight(g, F32, D(64, 32)), y = act(g, F32, D(16, 32));
    lp_card_tensor t = act(g, F32, D(32, 16)), s = act(g, F32, D(16, 32));
    compute(g, "fc", "MatMul", ARGS(x, w), y);
    lp_card_node *tr = compute(g, "tr", "Transpose", ARGS(y), t);
    tr->n_attrs = 1;
    tr->attrs = attr_perm_10;
    compute(g, "again", "Sigmoid", ARGS(y), s);
    lp_persist_range live = bytes_of(t);
    lp_persist_program *p = plan(g, NULL, &live, 1);
    assert_int_equal(p->n_phases, 3);
    assert_int_equal(p->n_fused, 0);
    assert_int_equal(p->phases[0].out.offset, y.offset);
    assert_int_equal(p->phases[0].out.strides[0], 32);
    assert_int_equal(p->phases[1].kind, LP_PERSIST_COPY);
    assert_int_equal(p->phases[1].op, LP_OP_Transpose);
    assert_int_equal(p->phases[1].a.strides[0], 1);
    assert_int_equal(p->phases[1].a.strides[1], 32);
    assert_int_equal(p->phases[1].sync, 1);
    assert_int_equal(p->phases[2].sync, 0); /* y is behind the copy's barrier */
    unsigned char *init = random_arena(g);
    check_same(g, p, init, ARGS(t, s), 1e-5);
    free(init);
    lp_persist_free(p);
    free(g);
}

/* ---- 9: a constant scale folded into a batched matmul ---------------------- */

/* q [2, 8, 16] . k [2, 16, 8] (two activations), then Div by a scalar
 * weight holding 8: with the weights' bytes the product is scaled by 1/8
 * and the Div goes; without them the Div stays. float32 and float16. */
static void test_scale_folded(void **state) {
    (void)state;
    const int dts[2] = {F32, F16};
    for (int di = 0; di < 2; di++)
        for (int known = 0; known < 2; known++) {
            int dt = dts[di];
            net *g = net_new();
            lp_card_tensor q = act(g, dt, D(2, 8, 16)), k = act(g, dt, D(2, 16, 8));
            lp_card_tensor s = act(g, dt, D(2, 8, 8)), z = act(g, dt, D(2, 8, 8));
            lp_card_tensor eight = weight(g, dt, 0, NULL);
            compute(g, "qk", "MatMul", ARGS(q, k), s);
            compute(g, "scale", "Div", ARGS(s, eight), z);
            unsigned char *init = random_arena(g);
            poke(init, eight.offset, dt, 8.0f);
            lp_persist_program *p = plan(g, known ? init : NULL, NULL, 0);
            const lp_persist_phase *mm = &p->phases[0];
            assert_int_equal(mm->kind, LP_PERSIST_BATCHED_MATMUL);
            assert_int_equal(mm->a.offset, q.offset);
            assert_int_equal(mm->b.offset, k.offset);
            if (known) {
                assert_int_equal(p->n_phases, 1);
                assert_int_equal(p->n_fused, 1);
                assert_true(mm->alpha == 0.125f);
                assert_int_equal(mm->out.offset, z.offset);
                assert_int_equal(mm->out.dtype, dt);
            } else {
                assert_int_equal(p->n_phases, 2);
                assert_int_equal(p->n_fused, 0);
                assert_true(mm->alpha == 1.0f);
                assert_int_equal(mm->out.offset, s.offset);
                assert_int_equal(p->phases[1].op, LP_OP_Div);
                assert_int_equal(p->phases[1].b.offset, eight.offset);
                assert_int_equal(p->phases[1].b.weight, 1);
                assert_int_equal(p->phases[1].sync, 1);
            }
            check_same(g, p, init, ARGS(z), dt == F32 ? 1e-5 : 1e-3);
            free(init);
            lp_persist_free(p);
            free(g);
        }
}

/* ---- 10: a LayerNorm as its Gemms' prologue -------------------------------- */

static const lp_card_attr attr_eps[] = {LP_ATTR_F("epsilon", 1e-3f)};

/* LayerNorm(x) -> y read by two Gemms: each normalises x itself, and the
 * LayerNorm is gone. It stays when y is also read by another phase, when
 * the step sends y, or when x is overwritten before the second Gemm reads
 * it. At fp16 the fused rows are rounded as y would have been stored. */
static void test_layernorm_prologue(void **state) {
    (void)state;
    enum { FUSED, OTHER_READER, LIVE, INPUT_CLOBBERED, FUSED_F16, CASES };
    for (int c = 0; c < CASES; c++) {
        int dt = c == FUSED_F16 ? F16 : F32;
        net *g = net_new();
        lp_card_tensor x = act(g, dt, D(16, 64)), sc = weight(g, dt, D(64)), bi = weight(g, dt, D(64));
        lp_card_tensor y = act(g, dt, D(16, 64)), wq = weight(g, dt, D(64, 32)), wk = weight(g, dt, D(64, 32));
        lp_card_tensor yq = act(g, dt, D(16, 32)), yk = act(g, dt, D(16, 32)), s = act(g, dt, D(16, 64));
        lp_card_tensor v = act(g, dt, D(16, 64));
        lp_card_node *ln = compute(g, "ln", "LayerNormalization", ARGS(x, sc, bi), y);
        ln->attrs = attr_eps;
        ln->n_attrs = 1;
        compute(g, "q", "MatMul", ARGS(y, wq), yq);
        if (c == INPUT_CLOBBERED) compute(g, "clobber", "Neg", ARGS(v), x);
        compute(g, "k", "MatMul", ARGS(y, wk), yk);
        if (c == OTHER_READER) compute(g, "other", "Sigmoid", ARGS(y), s);
        lp_persist_range live = bytes_of(y);
        lp_persist_program *p = plan(g, NULL, &live, c == LIVE ? 1 : 0);
        bool fused = c == FUSED || c == FUSED_F16;
        assert_int_equal(p->phases[0].kind, fused ? LP_PERSIST_GEMM : LP_PERSIST_LAYERNORM);
        if (fused) {
            assert_int_equal(p->n_phases, 2);
            assert_int_equal(p->n_fused, 1);
            for (int i = 0; i < 2; i++) {
                const lp_persist_phase *ph = &p->phases[i];
                assert_int_equal(ph->kind, LP_PERSIST_GEMM);
                assert_int_equal(ph->ln, 1);
                assert_int_equal(ph->a.offset, x.offset);
                assert_int_equal(ph->a.dims[0], 16);
                assert_int_equal(ph->a.dims[1], 64);
                assert_int_equal(ph->scale.offset, sc.offset);
                assert_int_equal(ph->ln_bias.offset, bi.offset);
                assert_int_equal(ph->ln_bias.dtype, dt);
                assert_true(fabsf(ph->ln_eps - 1e-3f) < 1e-9f);
                assert_int_equal(ph->sync, 0); /* both only read x */
                assert_int_equal(ph->out.offset, i ? yk.offset : yq.offset);
            }
        } else {
            for (int i = 1; i < p->n_phases; i++) assert_int_equal(p->phases[i].ln, 0);
            assert_int_equal(p->n_fused, 0);
        }
        unsigned char *init = random_arena(g);
        check_same(g, p, init, ARGS(yq, yk), dt == F16 ? 2e-3 : 1e-5);
        free(init);
        lp_persist_free(p);
        free(g);
    }
}

/* ---- 10b: attention as one phase ------------------------------------------- */

/* s = q . kt, a Div by a constant 8, + mask, Softmax, o = p . v: one attention
 * phase with alpha 1/8. The Div is taken either by the scale folding (its
 * output elsewhere) or by the attention fusion (its output over q's bytes,
 * which the folding refuses). Without the mask, the phase has none. Kept
 * apart when the masked scores are read again, when o would be written
 * over q (the fused phase reads q while it writes o), or when the "mask" is
 * the scores themselves (values the fused phase never writes). */
static void test_attention_fused(void **state) {
    (void)state;
    enum { FUSED, SCALE_OVER_Q, NO_MASK, SCORES_READ, O_OVER_Q, MASK_IS_SCORES, FUSED_F16, CASES };
    for (int c = 0; c < CASES; c++) {
        int dt = c == FUSED_F16 ? F16 : F32;
        net *g = net_new();
        lp_card_tensor q = act(g, dt, D(2, 4, 8)), kt = act(g, dt, D(2, 8, 6)), v = act(g, dt, D(2, 6, 5));
        lp_card_tensor mask = act(g, dt, D(2, 4, 6)), eight = weight(g, dt, 0, NULL);
        lp_card_tensor sc = act(g, dt, D(2, 4, 6)), u = act(g, dt, D(2, 4, 6)), pr = act(g, dt, D(2, 4, 6));
        lp_card_tensor z = c == SCALE_OVER_Q ? at(g, q.offset, dt, D(2, 4, 6)) : act(g, dt, D(2, 4, 6));
        lp_card_tensor o = c == O_OVER_Q ? at(g, q.offset, dt, D(2, 4, 5)) : act(g, dt, D(2, 4, 5));
        lp_card_tensor w = act(g, dt, D(2, 4, 6));
        compute(g, "qk", "MatMul", ARGS(q, kt), sc);
        compute(g, "scale", "Div", ARGS(sc, eight), z);
        if (c == MASK_IS_SCORES) compute(g, "mask", "Add", ARGS(z, z), u);
        else if (c != NO_MASK) compute(g, "mask", "Add", ARGS(z, mask), u);
        compute(g, "softmax", "Softmax", ARGS(c != NO_MASK ? u : z), pr);
        compute(g, "pv", "MatMul", ARGS(pr, v), o);
        if (c == SCORES_READ) compute(g, "again", "Sigmoid", ARGS(u), w);
        unsigned char *init = random_arena(g);
        poke(init, eight.offset, dt, 8.0f);
        lp_persist_program *p = plan(g, init, NULL, 0);
        bool fused = c != SCORES_READ && c != O_OVER_Q && c != MASK_IS_SCORES;
        const lp_persist_phase *at0 = &p->phases[0];
        assert_int_equal(at0->kind, fused ? LP_PERSIST_ATTENTION : LP_PERSIST_BATCHED_MATMUL);
        if (fused) {
            assert_int_equal(p->n_phases, 1);
            assert_int_equal(p->n_fused, c == NO_MASK ? 3 : 4);
            assert_true(at0->alpha == 0.125f);
            assert_int_equal(at0->a.offset, q.offset);
            assert_int_equal(at0->b.offset, kt.offset);
            assert_int_equal(at0->scale.offset, v.offset);
            assert_int_equal(at0->out.offset, o.offset);
            assert_int_equal(at0->has_bias, c != NO_MASK);
            if (c != NO_MASK) assert_int_equal(at0->bias.offset, mask.offset);
        } else {
            for (int i = 0; i < p->n_phases; i++) assert_int_not_equal(p->phases[i].kind, LP_PERSIST_ATTENTION);
        }
        if (c == SCORES_READ) check_same(g, p, init, ARGS(o, w), 1e-5);
        else check_same(g, p, init, ARGS(o), dt == F16 ? 2e-3 : 1e-5);
        free(init);
        lp_persist_free(p);
        free(g);
    }
}

/* ---- 10, 11: library calls and large copies -------------------------------- */

/* An op no phase kind covers splits the program into persistent kernels
 * before and after it; the phase after it needs no barrier (a new kernel,
 * though it overwrites what the first kernel read);
 * the dump's fallback names the first such node. */
static void test_node_splits(void **state) {
    (void)state;
    net *g = net_new();
    lp_card_tensor x = act(g, F32, D(8, 16)), y = act(g, F32, D(8, 16)), ind = act(g, LP_DT_INT64, D(4));
    lp_card_tensor gy = act(g, F32, D(4, 16)), gz = act(g, F32, D(2, 16)), ind2 = act(g, LP_DT_INT64, D(2));
    lp_card_tensor z = at(g, x.offset, F32, D(2, 16)); /* over what relu read, in the next kernel */
    compute(g, "relu", "Relu", ARGS(x), y);
    compute(g, "gather0", "Gather", ARGS(y, ind), gy);
    compute(g, "gather1", "Gather", ARGS(gy, ind2), gz);
    compute(g, "sig", "Sigmoid", ARGS(gz), z);
    compute(g, "neg", "Neg", ARGS(z), y);
    lp_persist_program *p = plan(g, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 5);
    const int kinds[5] = {LP_PERSIST_ELEMENTWISE, LP_PERSIST_NODE, LP_PERSIST_NODE, LP_PERSIST_ELEMENTWISE,
                          LP_PERSIST_ELEMENTWISE};
    const int syncs[5] = {0, 0, 0, 0, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p->phases[i].kind, kinds[i]);
        assert_int_equal(p->phases[i].sync, syncs[i]);
        assert_int_equal(p->phases[i].node, i);
    }
    assert_int_equal(p->n_kernels, 2);
    assert_int_equal(p->n_syncs, 1);
    assert_int_equal(p->n_nodes, 5);
    assert_ptr_equal(p->nodes[1], g->events[1].node);
    assert_string_equal(p->fallback, "Gather 'gather0': no phase kind for the op");
    lp_persist_free(p);

    /* a library call first or last adds no kernel of its own */
    net *h = net_new();
    lp_card_tensor a = act(h, F32, D(8, 16)), ai = act(h, LP_DT_INT64, D(4)), b = act(h, F32, D(4, 16));
    lp_card_tensor c = act(h, F32, D(4, 16));
    compute(h, "gather", "Gather", ARGS(a, ai), b);
    compute(h, "relu", "Relu", ARGS(b), c);
    p = plan(h, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 2);
    assert_int_equal(p->n_kernels, 1);
    assert_int_equal(p->phases[1].sync, 0);
    lp_persist_free(p);
    free(h);
    free(g);
}

/* A tensor of 2^30 elements stays a library call (one of 2^30 - 2^15 does
 * not); a copy of more than 2^29 bytes is several COPY phases covering its
 * bytes in order. Planning only: nothing runs on these offsets. */
static void test_huge(void **state) {
    (void)state;
    net *g = net_new();
    lp_card_tensor x = act(g, F16, D(32768, 32768)), y = act(g, F16, D(32768, 32768));
    lp_card_tensor xs = at(g, x.offset, F16, D(32767, 32768)), ys = at(g, y.offset, F16, D(32767, 32768));
    lp_card_tensor u = act(g, F32, D(64)), v = act(g, F32, D(64));
    compute(g, "small", "Relu", ARGS(u), v);
    compute(g, "huge", "Relu", ARGS(x), y);
    compute(g, "almost", "Relu", ARGS(xs), ys);
    lp_persist_program *p = plan(g, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 3);
    assert_int_equal(p->phases[0].kind, LP_PERSIST_ELEMENTWISE);
    assert_int_equal(p->phases[1].kind, LP_PERSIST_NODE);
    assert_int_equal(p->phases[1].node, 1);
    assert_int_equal(p->phases[2].kind, LP_PERSIST_ELEMENTWISE);
    assert_int_equal(p->n_kernels, 2);
    assert_string_equal(p->fallback, "Relu 'huge': a tensor of 2^30 elements or more");
    lp_persist_free(p);
    free(g);

    /* 3 * 2^29 + 12 bytes: three pieces of 2^29 in 8-byte words, 12 in 4-byte ones */
    net *h = net_new();
    const uint64_t bytes = 3 * ((uint64_t)1 << 29) + 12, src = W_BYTES, dst = W_BYTES + ((uint64_t)1 << 31);
    copy(h, dst, src, bytes);
    p = plan(h, NULL, NULL, 0);
    assert_int_equal(p->n_phases, 4);
    uint64_t done = 0;
    for (int i = 0; i < 4; i++) {
        const lp_persist_phase *ph = &p->phases[i];
        assert_int_equal(ph->kind, LP_PERSIST_COPY);
        assert_int_equal(ph->node, -1);
        assert_int_equal(ph->sync, 0);
        assert_int_equal(ph->out.offset, dst + done);
        assert_int_equal(ph->a.offset, src + done);
        assert_int_equal(ph->out.rank, 1);
        assert_int_equal(ph->out.dtype, i < 3 ? LP_DT_INT64 : F32);
        assert_int_equal(ph->out.dims[0], i < 3 ? (int64_t)1 << 26 : 3);
        assert_int_equal(ph->a.dims[0], ph->out.dims[0]);
        done += (uint64_t)view_bytes(&ph->out);
    }
    assert_int_equal(done, bytes);
    assert_int_equal(p->n_kernels, 1);
    assert_int_equal(p->n_syncs, 0);
    lp_persist_free(p);
    free(h);
}

/* ---- 12: recording a step ----------------------------------------------------- */

static const int64_t rec_dims[1] = {4};
static const lp_card_tensor rec_x[1] = {LP_MEM(W_BYTES, 16, F32, 1, rec_dims)};
static const lp_card_tensor rec_y[1] = {LP_MEM(W_BYTES + 64, 16, F32, 1, rec_dims)};
static const lp_card_tensor rec_z[1] = {LP_MEM(W_BYTES + 128, 16, F32, 1, rec_dims)};
static const lp_card_node rec_nodes[2] = {
    {"relu0", "Relu", 17, 1, 1, 0, rec_x, rec_y, NULL, 0, 0},
    {"neg0", "Neg", 17, 1, 1, 0, rec_z, rec_x, NULL, 0, 0},
};

static int step_two_nodes(lp_card_env *env, unsigned char *base) {
    LP_COMPUTE(env, base, rec_nodes[0]);
    LP_COPY(env, base, W_BYTES + 128, W_BYTES + 64, 16, "y");
    LP_COMPUTE(env, base, rec_nodes[1]);
    return 0;
}

static int step_gathers(lp_card_env *env, unsigned char *base) {
    LP_COMPUTE(env, base, rec_nodes[0]);
    LP_ALL_GATHER(env, base, "h", 0, 2, 0, 0, W_BYTES, 16, W_BYTES, 32, W_BYTES + 64);
    return 0;
}

static int step_fails(lp_card_env *env, unsigned char *base) {
    LP_COMPUTE(env, base, rec_nodes[0]);
    return 3;
}

static void test_record(void **state) {
    (void)state;
    lp_diag d = lp_diag_make("test_persist_plan");
    d.sink = NULL;
    lp_persist_event *ev = NULL;
    int n = -1;
    assert_int_equal(lp_persist_record(step_two_nodes, 2, &ev, &n, &d), LP_OK);
    assert_int_equal(n, 3);
    assert_ptr_equal(ev[0].node, &rec_nodes[0]);
    assert_string_equal(ev[0].value, "relu0");
    assert_null(ev[1].node);
    assert_int_equal(ev[1].dst, W_BYTES + 128);
    assert_int_equal(ev[1].src, W_BYTES + 64);
    assert_int_equal(ev[1].bytes, 16);
    assert_string_equal(ev[1].value, "y");
    assert_ptr_equal(ev[2].node, &rec_nodes[1]);
    /* and planned: relu, copy of its output, neg over relu's input; the copy
     * is absorbed into neg, which then reads y and overwrites x */
    lp_persist_program *p = NULL;
    assert_int_equal(lp_persist_plan(ev, n, NULL, W_BYTES, NULL, 0, &p, &d), LP_OK);
    assert_int_equal(p->n_nodes, 2);
    assert_int_equal(p->n_phases, 2);
    assert_int_equal(p->phases[1].a.offset, W_BYTES + 64);
    assert_int_equal(p->phases[1].out.offset, W_BYTES);
    assert_int_equal(p->phases[1].sync, 1);
    lp_persist_free(p);
    free(ev);

    ev = NULL;
    n = -1;
    assert_int_equal(lp_persist_record(step_gathers, 1, &ev, &n, &d), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "card 1"));
    assert_non_null(strstr(d.last_error, "all-gather"));
    assert_null(ev);
    assert_int_equal(n, -1);
    assert_int_equal(lp_persist_record(step_fails, 0, &ev, &n, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "the step returned an error"));
    assert_null(ev);
}

/* ---- a cut written into the receiver's buffer -------------------------------- */

static bool no_out_at(const lp_persist_program *p) {
    for (int i = 0; i < p->n_phases; i++)
        if (p->phases[i].out_at) return false;
    return true;
}

/* An MLP block whose result is copied to a send buffer s: the Gemm writes s
 * itself, and lp_persist_write_cut moves that write into a receive buffer
 * of another allocation, which then holds what the recorded step sent while
 * s is untouched. Refused, with nothing moved, when a later phase reads s,
 * when a library call writes s, when a writer writes beyond the cut, and
 * when the step does not write all of the cut. */
static void test_write_cut(void **state) {
    (void)state;
    net *g = net_new();
    mlp m = mlp_block(g, NULL);
    lp_card_tensor sent = act(g, F32, D(16, 32));
    copy(g, sent.offset, m.z.offset, sent.bytes);
    lp_persist_range live = bytes_of(sent);
    lp_persist_program *p = plan(g, NULL, &live, 1);
    assert_int_equal(p->n_phases, 1);
    assert_int_equal(p->phases[0].out.offset, sent.offset);
    unsigned char *init = random_arena(g), *want = malloc(g->a_top), *got = malloc(g->a_top);
    unsigned char *inbox = calloc(1, sent.bytes);
    assert_non_null(want);
    assert_non_null(got);
    assert_non_null(inbox);
    char why[160] = "";
    assert_true(lp_persist_write_cut(p, live.lo, live.hi, (uint64_t)(uintptr_t)inbox, why, sizeof why));
    assert_int_equal(p->phases[0].out_at, (uint64_t)(uintptr_t)inbox);
    /* the dump says so */
    char dump[4096] = "";
    FILE *mf = tmpfile();
    assert_non_null(mf);
    lp_persist_dump(p, mf);
    rewind(mf);
    size_t got_dump = fread(dump, 1, sizeof dump - 1, mf);
    fclose(mf);
    dump[got_dump] = '\0';
    assert_non_null(strstr(dump, "(written into the receiving card's buffer)"));
    lp_diag d = lp_diag_make("test_persist_plan");
    lp_card_env env = {.abi = LP_CARD_ABI, .compute = ref_compute, .user = &d};
    memcpy(want, init, g->a_top);
    memcpy(got, init, g->a_top);
    for (int i = 0; i < g->n_events; i++) {
        const lp_persist_event *e = &g->events[i];
        if (e->node) assert_int_equal(ref_compute(&env, want, e->node), 0);
        else memmove(want + e->dst, want + e->src, e->bytes);
    }
    assert_int_equal(lp_persist_run_cpu(p, got, &env, &d), LP_OK);
    lp_ref_diff diff;
    lp_ref_compare(inbox, F32, want + sent.offset, F32, 16 * 32, &diff);
    assert_true(diff.rel_l2 < 1e-5 && diff.n_mismatch == 0);
    assert_memory_equal(got + sent.offset, init + sent.offset, sent.bytes);
    assert_memory_not_equal(want + sent.offset, init + sent.offset, sent.bytes);
    free(init);
    free(want);
    free(got);
    free(inbox);
    lp_persist_free(p);

    /* a writer beyond the cut; a cut the step writes part of */
    p = plan(g, NULL, &live, 1);
    assert_false(lp_persist_write_cut(p, live.lo, live.hi - 64, 4096, why, sizeof why));
    assert_string_equal(why, "node 'fc' writes the sent bytes and others");
    assert_false(lp_persist_write_cut(p, live.lo, live.hi + 64, 4096, why, sizeof why));
    assert_string_equal(why, "the step writes 2048 of the 2112 sent bytes");
    assert_true(no_out_at(p));
    lp_persist_free(p);

    /* the sent bytes read again on the sending card */
    lp_card_tensor again = act(g, F32, D(16, 32));
    compute(g, "again", "Sigmoid", ARGS(sent), again);
    p = plan(g, NULL, &live, 1);
    assert_false(lp_persist_write_cut(p, live.lo, live.hi, 4096, why, sizeof why));
    assert_string_equal(why, "node 'again' reads the sent bytes on the sending card");
    assert_true(no_out_at(p));
    lp_persist_free(p);
    free(g);

    /* a library call writes them */
    net *h = net_new();
    lp_card_tensor a = act(h, F32, D(8, 16)), ai = act(h, LP_DT_INT64, D(4)), b = act(h, F32, D(4, 16));
    compute(h, "gather", "Gather", ARGS(a, ai), b);
    live = bytes_of(b);
    p = plan(h, NULL, &live, 1);
    assert_int_equal(p->phases[0].kind, LP_PERSIST_NODE);
    assert_false(lp_persist_write_cut(p, live.lo, live.hi, 4096, why, sizeof why));
    assert_string_equal(why, "node 'gather', a library call, writes the sent bytes");
    assert_true(no_out_at(p));
    lp_persist_free(p);
    free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_independent_share_barrier),
        cmocka_unit_test(test_write_after_read),
        cmocka_unit_test(test_epilogue_fused),
        cmocka_unit_test(test_epilogue_refused_overlap),
        cmocka_unit_test(test_epilogue_refused_live),
        cmocka_unit_test(test_copy_absorbed),
        cmocka_unit_test(test_copy_live_out),
        cmocka_unit_test(test_transpose_into_gemm),
        cmocka_unit_test(test_transpose_kept),
        cmocka_unit_test(test_scale_folded),
        cmocka_unit_test(test_layernorm_prologue),
        cmocka_unit_test(test_attention_fused),
        cmocka_unit_test(test_node_splits),
        cmocka_unit_test(test_huge),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_write_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
