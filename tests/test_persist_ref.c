/* The CPU executor of persistent programs (runtime/persist_ref.c) against
 * the reference kernels (lp_ref.h): each phase kind runs on random inputs
 * (fixed seed) in float32, float16 and bfloat16 laid out in a byte arena,
 * read through strided, transposed and broadcast views, and is compared
 * with the same computation composed from lp_ref kernels on contiguous
 * fp32 copies of the inputs. Also the NODE phase's callback and its errors,
 * and the refusal of an unknown phase kind, dtype or op. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lp_ops.h"
#include "lp_persist.h"
#include "lp_ref.h"

/* ---- the byte arena and its views ------------------------------------- */

typedef struct arena {
    unsigned char *base;
    uint64_t used, cap;
} arena;

static arena arena_new(uint64_t cap) {
    arena ar = {.base = calloc(1, cap), .cap = cap};
    assert_non_null(ar.base);
    return ar;
}

/* n elements of dtype at a fresh 16-byte aligned offset. */
static uint64_t arena_put(arena *ar, int dtype, int64_t n) {
    uint64_t off = (ar->used + 15) & ~(uint64_t)15;
    ar->used = off + (uint64_t)n * (uint64_t)lp_persist_esize(dtype);
    assert_true(ar->used <= ar->cap);
    return off;
}

static uint32_t rng_state = 20240611u;
/* Uniform in [-1, 1). */
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

/* x rounded to dtype and back. */
static float round_to(int dtype, float x) {
    if (dtype == LP_DT_FLOAT16) return lp_ref_f16_to_f32(lp_ref_f32_to_f16(x));
    if (dtype == LP_DT_BFLOAT16) return lp_ref_bf16_to_f32(lp_ref_f32_to_bf16(x));
    return x;
}

static void poke(unsigned char *at, int dtype, float x) {
    if (dtype == LP_DT_FLOAT) {
        memcpy(at, &x, sizeof x);
        return;
    }
    uint16_t h = dtype == LP_DT_FLOAT16 ? lp_ref_f32_to_f16(x) : lp_ref_f32_to_bf16(x);
    memcpy(at, &h, sizeof h);
}

/* Random values scale * u + shift (u uniform in [-1, 1)) at off, as dtype;
 * copy (n floats, malloc'd) receives them as stored. */
static float *fill(arena *ar, uint64_t off, int dtype, int64_t n, float scale, float shift) {
    float *copy = malloc(sizeof(float) * (size_t)n);
    assert_non_null(copy);
    for (int64_t i = 0; i < n; i++) {
        copy[i] = round_to(dtype, scale * frand() + shift);
        poke(ar->base + off + (uint64_t)(i * lp_persist_esize(dtype)), dtype, copy[i]);
    }
    return copy;
}

static lp_persist_view view(uint64_t off, int dtype, int rank, const int64_t *dims, const int64_t *strides) {
    lp_persist_view v = {.offset = off, .dtype = dtype, .rank = rank};
    memcpy(v.dims, dims, sizeof(int64_t) * (size_t)rank);
    memcpy(v.strides, strides, sizeof(int64_t) * (size_t)rank);
    return v;
}

/* A row-major view of dims. */
static lp_persist_view dense(uint64_t off, int dtype, int rank, const int64_t *dims) {
    int64_t strides[LP_PERSIST_RANK], s = 1;
    for (int k = rank - 1; k >= 0; k--) {
        strides[k] = s;
        s *= dims[k];
    }
    return view(off, dtype, rank, dims, strides);
}

/* ---- the reference side ----------------------------------------------- */

static lp_ref_tensor ft(float *data, int rank, const int64_t *dims) {
    lp_ref_tensor t = {.data = data, .dtype = LP_DT_FLOAT, .rank = rank};
    for (int k = 0; k < rank; k++) t.dims[k] = dims[k];
    return t;
}

static float *fbuf(int64_t n) {
    float *p = calloc((size_t)n, sizeof(float));
    assert_non_null(p);
    return p;
}

/* Runs op on the inputs into out (opset 17). */
static void ref(int op, int n_in, const lp_ref_tensor *in, lp_ref_tensor *out, int n_attrs,
                const lp_attr *attrs) {
    lp_diag d = lp_diag_make("test_persist_ref");
    lp_ref_call c = {.op = op, .node = "ref", .opset = 17, .n_inputs = n_in, .inputs = in,
                     .n_outputs = 1, .outputs = out, .n_attrs = n_attrs, .attrs = attrs, .diag = &d};
    assert_int_equal(lp_ref_run(&c), LP_OK);
}

/* y = op(a, b) on fp32 tensors (numpy broadcasting). */
static void ref2(int op, lp_ref_tensor a, lp_ref_tensor b, lp_ref_tensor y) {
    lp_ref_tensor in[2] = {a, b};
    ref(op, 2, in, &y, 0, NULL);
}

static lp_attr ints_attr(const char *name, int n, int64_t *v) {
    lp_attr a = {.name = name, .type = LP_ATTR_INTS, .n = n, .ints = v};
    return a;
}

static double tol(int dtype) {
    return dtype == LP_DT_FLOAT ? 1e-6 : dtype == LP_DT_FLOAT16 ? 2e-3 : 1e-2;
}

/* The n elements of out in the arena against want (fp32): within the
 * tolerance of out's dtype, or exactly when exact. */
static void check(const arena *ar, const lp_persist_view *out, const float *want, int64_t n, int exact,
                  const char *what) {
    lp_ref_diff diff;
    lp_ref_compare(ar->base + out->offset, (lp_dtype)out->dtype, want, LP_DT_FLOAT, n, &diff);
    printf("  %-34s dtype %2d  rel_l2 %.3g  worst %.3g\n", what, out->dtype, diff.rel_l2, diff.worst_abs);
    assert_int_equal(diff.n_mismatch, 0);
    if (exact)
        assert_true(diff.rel_l2 == 0.0);
    else
        assert_true(diff.rel_l2 < tol(out->dtype));
}

/* Runs the one phase ph as a program of one node. */
static lp_status run1(lp_persist_phase *ph, arena *ar, lp_diag *d) {
    lp_card_node node = {.node = "phase_node", .op = "Test"};
    const lp_card_node *nodes[1] = {&node};
    ph->node = 0;
    lp_persist_program p = {.n_phases = 1, .phases = ph, .n_nodes = 1, .nodes = nodes, .n_kernels = 1};
    return lp_persist_run_cpu(&p, ar->base, NULL, d);
}

static void run1_ok(lp_persist_phase *ph, arena *ar) {
    lp_diag d = lp_diag_make("test_persist_ref");
    lp_status st = run1(ph, ar, &d);
    if (st != LP_OK) fprintf(stderr, "%s\n", d.last_error);
    assert_int_equal(st, LP_OK);
}

/* ---- COPY --------------------------------------------------------------- */

/* out [4, 2, 3] = transpose(src [2, 3, 4], perm (2, 0, 1)) read through
 * strides, with and without a dtype change. */
static void test_copy_transpose(void **state) {
    (void)state;
    const int pairs[][2] = {{LP_DT_FLOAT, LP_DT_FLOAT}, {LP_DT_FLOAT16, LP_DT_FLOAT16},
                            {LP_DT_FLOAT16, LP_DT_FLOAT}, {LP_DT_FLOAT, LP_DT_BFLOAT16},
                            {LP_DT_BFLOAT16, LP_DT_FLOAT16}};
    for (size_t t = 0; t < sizeof pairs / sizeof pairs[0]; t++) {
        arena ar = arena_new(4096);
        int64_t sdims[3] = {2, 3, 4}, odims[3] = {4, 2, 3}, strides[3] = {1, 12, 4}, perm[3] = {2, 0, 1};
        uint64_t so = arena_put(&ar, pairs[t][0], 24), oo = arena_put(&ar, pairs[t][1], 24);
        float *src = fill(&ar, so, pairs[t][0], 24, 2.0f, 0.0f), *want = fbuf(24);
        lp_persist_phase ph = {.kind = LP_PERSIST_COPY, .out = dense(oo, pairs[t][1], 3, odims),
                               .a = view(so, pairs[t][0], 3, odims, strides)};
        run1_ok(&ph, &ar);
        lp_attr pa = ints_attr("perm", 3, perm);
        lp_ref_tensor in = ft(src, 3, sdims), out = ft(want, 3, odims);
        ref(LP_OP_Transpose, 1, &in, &out, 1, &pa);
        for (int i = 0; i < 24; i++) want[i] = round_to(pairs[t][1], want[i]);
        check(&ar, &ph.out, want, 24, 1, "copy transpose");
        free(src);
        free(want);
        free(ar.base);
    }
}

/* A COPY of one non-float dtype moves bits: int64 and uint8 transposed. */
static void test_copy_bits(void **state) {
    (void)state;
    const int dts[] = {LP_DT_INT64, LP_DT_UINT8};
    for (size_t t = 0; t < 2; t++) {
        int dt = dts[t], es = lp_persist_esize(dt);
        arena ar = arena_new(4096);
        int64_t odims[2] = {5, 3}, strides[2] = {1, 5}, perm[2] = {1, 0};
        uint64_t so = arena_put(&ar, dt, 15), oo = arena_put(&ar, dt, 15);
        for (int i = 0; i < 15; i++) {
            int64_t v = (int64_t)(frand() * 100.0f) + (dt == LP_DT_INT64 ? (int64_t)1 << 40 : 100);
            if (dt == LP_DT_INT64) memcpy(ar.base + so + (uint64_t)(i * es), &v, sizeof v);
            else ar.base[so + (uint64_t)i] = (unsigned char)v;
        }
        unsigned char want[15 * 8];
        lp_persist_phase ph = {.kind = LP_PERSIST_COPY, .out = dense(oo, dt, 2, odims),
                               .a = view(so, dt, 2, odims, strides)};
        run1_ok(&ph, &ar);
        lp_attr pa = ints_attr("perm", 2, perm);
        lp_ref_tensor in = {.data = ar.base + so, .dtype = (lp_dtype)dt, .rank = 2, .dims = {3, 5}};
        lp_ref_tensor out = {.data = want, .dtype = (lp_dtype)dt, .rank = 2, .dims = {5, 3}};
        ref(LP_OP_Transpose, 1, &in, &out, 1, &pa);
        assert_memory_equal(ar.base + oo, want, (size_t)(15 * es));
        free(ar.base);
    }
}

/* out [2, 3, 4] = src [3, 1] broadcast (strides 0 in dims 0 and 2). */
static void test_copy_broadcast(void **state) {
    (void)state;
    arena ar = arena_new(4096);
    int64_t sdims[2] = {3, 1}, odims[3] = {2, 3, 4}, strides[3] = {0, 1, 0}, shape[3] = {2, 3, 4};
    uint64_t so = arena_put(&ar, LP_DT_FLOAT16, 3), oo = arena_put(&ar, LP_DT_FLOAT, 24);
    float *src = fill(&ar, so, LP_DT_FLOAT16, 3, 1.0f, 0.0f), *want = fbuf(24);
    lp_persist_phase ph = {.kind = LP_PERSIST_COPY, .out = dense(oo, LP_DT_FLOAT, 3, odims),
                           .a = view(so, LP_DT_FLOAT16, 3, odims, strides)};
    run1_ok(&ph, &ar);
    lp_ref_tensor in[2] = {ft(src, 2, sdims), {.data = shape, .dtype = LP_DT_INT64, .rank = 1, .dims = {3}}};
    lp_ref_tensor out = ft(want, 3, odims);
    ref(LP_OP_Expand, 2, in, &out, 0, NULL);
    check(&ar, &ph.out, want, 24, 1, "copy broadcast");
    free(src);
    free(want);
    free(ar.base);
}

/* ---- ELEMENTWISE -------------------------------------------------------- */

/* out [3, 4, 5] = a op b, b [3, 1, 5] broadcast through a stride of 0. */
static void test_elementwise_binary_broadcast(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16};
    const int ops[] = {LP_OP_Add, LP_OP_Sub, LP_OP_Mul, LP_OP_Div};
    for (size_t t = 0; t < 3; t++)
        for (size_t o = 0; o < 4; o++) {
            int dt = dts[t];
            arena ar = arena_new(4096);
            int64_t dims[3] = {3, 4, 5}, bdims[3] = {3, 1, 5}, bstr[3] = {5, 0, 1};
            uint64_t ao = arena_put(&ar, dt, 60), bo = arena_put(&ar, dt, 15), oo = arena_put(&ar, dt, 60);
            float *a = fill(&ar, ao, dt, 60, 1.0f, 0.0f), *b = fill(&ar, bo, dt, 15, 0.5f, 1.0f);
            float *want = fbuf(60);
            lp_persist_phase ph = {.kind = LP_PERSIST_ELEMENTWISE, .op = ops[o], .out = dense(oo, dt, 3, dims),
                                   .a = dense(ao, dt, 3, dims), .b = view(bo, dt, 3, dims, bstr)};
            run1_ok(&ph, &ar);
            ref2(ops[o], ft(a, 3, dims), ft(b, 3, bdims), ft(want, 3, dims));
            check(&ar, &ph.out, want, 60, 0, "elementwise binary");
            free(a);
            free(b);
            free(want);
            free(ar.base);
        }
}

/* out [4, 6] = op(a), a a transposed view of [6, 4], with the op's
 * parameters (Gelu's tanh form, LeakyRelu alpha, HardSigmoid alpha, beta). */
static void test_elementwise_unary(void **state) {
    (void)state;
    typedef struct {
        int op;
        float alpha, beta;
    } uop;
    const uop ops[] = {{LP_OP_Gelu, 0, 0}, {LP_OP_Gelu, 1, 0}, {LP_OP_LeakyRelu, 0.2f, 0},
                       {LP_OP_HardSigmoid, 0.3f, 0.4f}, {LP_OP_Exp, 0, 0}};
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16};
    for (size_t t = 0; t < 2; t++)
        for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
            int dt = dts[t];
            arena ar = arena_new(4096);
            int64_t dims[2] = {4, 6}, sdims[2] = {6, 4}, str[2] = {1, 4}, perm[2] = {1, 0};
            uint64_t ao = arena_put(&ar, dt, 24), oo = arena_put(&ar, dt, 24);
            float *a = fill(&ar, ao, dt, 24, 3.0f, 0.0f), *x = fbuf(24), *want = fbuf(24);
            lp_persist_phase ph = {.kind = LP_PERSIST_ELEMENTWISE, .op = ops[o].op, .alpha = ops[o].alpha,
                                   .beta = ops[o].beta, .out = dense(oo, dt, 2, dims),
                                   .a = view(ao, dt, 2, dims, str)};
            run1_ok(&ph, &ar);
            lp_attr pa = ints_attr("perm", 2, perm);
            lp_ref_tensor in = ft(a, 2, sdims), xt = ft(x, 2, dims), out = ft(want, 2, dims);
            ref(LP_OP_Transpose, 1, &in, &xt, 1, &pa);
            lp_attr attrs[2];
            int na = 0;
            if (ops[o].op == LP_OP_Gelu && ops[o].alpha != 0)
                attrs[na++] = (lp_attr){.name = "approximate", .type = LP_ATTR_STRING, .s = "tanh", .s_len = 4};
            if (ops[o].op == LP_OP_LeakyRelu || ops[o].op == LP_OP_HardSigmoid)
                attrs[na++] = (lp_attr){.name = "alpha", .type = LP_ATTR_FLOAT, .f = ops[o].alpha};
            if (ops[o].op == LP_OP_HardSigmoid)
                attrs[na++] = (lp_attr){.name = "beta", .type = LP_ATTR_FLOAT, .f = ops[o].beta};
            ref(ops[o].op, 1, &xt, &out, na, attrs);
            check(&ar, &ph.out, want, 24, 0, "elementwise unary");
            free(a);
            free(x);
            free(want);
            free(ar.base);
        }
}

/* ---- GEMM --------------------------------------------------------------- */

enum { GM = 5, GK = 7, GN = 6 };

/* out = Gelu(a . w + bias) + res against MatMul, Add, Gelu, Add. */
static void test_gemm_bias_gelu_residual(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16};
    for (size_t t = 0; t < 3; t++) {
        int dt = dts[t];
        arena ar = arena_new(8192);
        int64_t ad[2] = {GM, GK}, wd[2] = {GK, GN}, bd[1] = {GN}, od[2] = {GM, GN};
        uint64_t ao = arena_put(&ar, dt, GM * GK), wo = arena_put(&ar, dt, GK * GN);
        uint64_t bo = arena_put(&ar, dt, GN), ro = arena_put(&ar, dt, GM * GN), oo = arena_put(&ar, dt, GM * GN);
        float *a = fill(&ar, ao, dt, GM * GK, 1.0f, 0.0f), *w = fill(&ar, wo, dt, GK * GN, 0.5f, 0.0f);
        float *bias = fill(&ar, bo, dt, GN, 1.0f, 0.0f), *res = fill(&ar, ro, dt, GM * GN, 1.0f, 0.0f);
        float *t1 = fbuf(GM * GN), *t2 = fbuf(GM * GN), *t3 = fbuf(GM * GN), *want = fbuf(GM * GN);
        lp_persist_phase ph = {.kind = LP_PERSIST_GEMM, .m = GM, .n = GN, .k = GK, .has_bias = 1,
                               .out = dense(oo, dt, 2, od), .a = dense(ao, dt, 2, ad), .b = dense(wo, dt, 2, wd),
                               .bias = dense(bo, dt, 1, bd),
                               .epi = {.act = LP_OP_Gelu, .residual = 1, .res = dense(ro, dt, 2, od)}};
        run1_ok(&ph, &ar);
        ref2(LP_OP_MatMul, ft(a, 2, ad), ft(w, 2, wd), ft(t1, 2, od));
        ref2(LP_OP_Add, ft(t1, 2, od), ft(bias, 1, bd), ft(t2, 2, od));
        lp_ref_tensor g_in = ft(t2, 2, od), g_out = ft(t3, 2, od);
        ref(LP_OP_Gelu, 1, &g_in, &g_out, 0, NULL);
        ref2(LP_OP_Add, ft(t3, 2, od), ft(res, 2, od), ft(want, 2, od));
        check(&ar, &ph.out, want, GM * GN, 0, "gemm bias gelu residual");
        free(a), free(w), free(bias), free(res), free(t1), free(t2), free(t3), free(want);
        free(ar.base);
    }
}

/* The residual is out's own bytes: out = a . w + bias + out. */
static void test_gemm_residual_in_place(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16};
    for (size_t t = 0; t < 2; t++) {
        int dt = dts[t];
        arena ar = arena_new(8192);
        int64_t ad[2] = {GM, GK}, wd[2] = {GK, GN}, bd[1] = {GN}, od[2] = {GM, GN};
        uint64_t ao = arena_put(&ar, dt, GM * GK), wo = arena_put(&ar, dt, GK * GN);
        uint64_t bo = arena_put(&ar, dt, GN), oo = arena_put(&ar, dt, GM * GN);
        float *a = fill(&ar, ao, dt, GM * GK, 1.0f, 0.0f), *w = fill(&ar, wo, dt, GK * GN, 0.5f, 0.0f);
        float *bias = fill(&ar, bo, dt, GN, 1.0f, 0.0f), *res = fill(&ar, oo, dt, GM * GN, 1.0f, 0.0f);
        float *t1 = fbuf(GM * GN), *t2 = fbuf(GM * GN), *want = fbuf(GM * GN);
        lp_persist_phase ph = {.kind = LP_PERSIST_GEMM, .m = GM, .n = GN, .k = GK, .has_bias = 1,
                               .out = dense(oo, dt, 2, od), .a = dense(ao, dt, 2, ad), .b = dense(wo, dt, 2, wd),
                               .bias = dense(bo, dt, 1, bd), .epi = {.residual = 1, .res = dense(oo, dt, 2, od)}};
        run1_ok(&ph, &ar);
        ref2(LP_OP_MatMul, ft(a, 2, ad), ft(w, 2, wd), ft(t1, 2, od));
        ref2(LP_OP_Add, ft(t1, 2, od), ft(bias, 1, bd), ft(t2, 2, od));
        ref2(LP_OP_Add, ft(t2, 2, od), ft(res, 2, od), ft(want, 2, od));
        check(&ar, &ph.out, want, GM * GN, 0, "gemm residual in place");
        free(a), free(w), free(bias), free(res), free(t1), free(t2), free(want);
        free(ar.base);
    }
}

/* w stored [N, K] (trans_w) against Gemm transB=1 with C = bias, then the
 * activation: Gelu's tanh form, LeakyRelu's alpha. */
static void test_gemm_trans_w(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16};
    for (size_t t = 0; t < 2; t++)
        for (int act = 0; act < 2; act++) {
            int dt = dts[t];
            arena ar = arena_new(8192);
            int64_t ad[2] = {GM, GK}, wd[2] = {GN, GK}, bd[1] = {GN}, od[2] = {GM, GN};
            uint64_t ao = arena_put(&ar, dt, GM * GK), wo = arena_put(&ar, dt, GK * GN);
            uint64_t bo = arena_put(&ar, dt, GN), oo = arena_put(&ar, dt, GM * GN);
            float *a = fill(&ar, ao, dt, GM * GK, 1.0f, 0.0f), *w = fill(&ar, wo, dt, GK * GN, 0.5f, 0.0f);
            float *bias = fill(&ar, bo, dt, GN, 1.0f, 0.0f), *t1 = fbuf(GM * GN), *want = fbuf(GM * GN);
            lp_persist_phase ph = {.kind = LP_PERSIST_GEMM, .m = GM, .n = GN, .k = GK, .trans_w = 1,
                                   .has_bias = 1, .out = dense(oo, dt, 2, od), .a = dense(ao, dt, 2, ad),
                                   .b = dense(wo, dt, 2, wd), .bias = dense(bo, dt, 1, bd)};
            /* act_alpha set for Gelu too: its tanh flag alone picks the form */
            if (act == 0) ph.epi = (lp_persist_epilogue){.act = LP_OP_Gelu, .act_tanh = 1, .act_alpha = 0.0f};
            else ph.epi = (lp_persist_epilogue){.act = LP_OP_LeakyRelu, .act_alpha = 0.2f};
            run1_ok(&ph, &ar);
            lp_attr tb = {.name = "transB", .type = LP_ATTR_INT, .i = 1};
            lp_ref_tensor in[3] = {ft(a, 2, ad), ft(w, 2, wd), ft(bias, 1, bd)}, y = ft(t1, 2, od);
            ref(LP_OP_Gemm, 3, in, &y, 1, &tb);
            lp_attr aa = act == 0 ? (lp_attr){.name = "approximate", .type = LP_ATTR_STRING, .s = "tanh", .s_len = 4}
                                  : (lp_attr){.name = "alpha", .type = LP_ATTR_FLOAT, .f = 0.2f};
            lp_ref_tensor out = ft(want, 2, od);
            ref(act == 0 ? LP_OP_Gelu : LP_OP_LeakyRelu, 1, &y, &out, 1, &aa);
            check(&ar, &ph.out, want, GM * GN, 0, act == 0 ? "gemm trans_w gelu tanh" : "gemm trans_w leakyrelu");
            free(a), free(w), free(bias), free(t1), free(want);
            free(ar.base);
        }
}

/* ---- BATCHED_MATMUL ----------------------------------------------------- */

/* out [2, 3, 4, 5] = 0.5 * a . b: a [3, 4, 6] broadcast over batch dim 0
 * (stride 0), b read transposed from bt [2, 3, 5, 6]. */
static void test_batched_matmul(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16};
    for (size_t t = 0; t < 2; t++) {
        int dt = dts[t];
        arena ar = arena_new(8192);
        int64_t od[4] = {2, 3, 4, 5}, avd[4] = {2, 3, 4, 6}, ast[4] = {0, 24, 6, 1}, asd[3] = {3, 4, 6};
        int64_t bvd[4] = {2, 3, 6, 5}, bst[4] = {90, 30, 1, 6}, btd[4] = {2, 3, 5, 6}, perm[4] = {0, 1, 3, 2};
        uint64_t ao = arena_put(&ar, dt, 72), bo = arena_put(&ar, dt, 180), oo = arena_put(&ar, dt, 120);
        float *a = fill(&ar, ao, dt, 72, 1.0f, 0.0f), *bt = fill(&ar, bo, dt, 180, 1.0f, 0.0f);
        float *b = fbuf(180), *t1 = fbuf(120), *want = fbuf(120), half = 0.5f;
        lp_persist_phase ph = {.kind = LP_PERSIST_BATCHED_MATMUL, .alpha = 0.5f, .out = dense(oo, dt, 4, od),
                               .a = view(ao, dt, 4, avd, ast), .b = view(bo, dt, 4, bvd, bst)};
        run1_ok(&ph, &ar);
        lp_attr pa = ints_attr("perm", 4, perm);
        lp_ref_tensor in = ft(bt, 4, btd), bo_t = ft(b, 4, bvd);
        ref(LP_OP_Transpose, 1, &in, &bo_t, 1, &pa);
        ref2(LP_OP_MatMul, ft(a, 3, asd), bo_t, ft(t1, 4, od));
        ref2(LP_OP_Mul, ft(t1, 4, od), ft(&half, 0, NULL), ft(want, 4, od));
        check(&ar, &ph.out, want, 120, 0, "batched matmul");
        free(a), free(bt), free(b), free(t1), free(want);
        free(ar.base);
    }
}

/* ---- LAYERNORM ---------------------------------------------------------- */

/* out [4, 3, 8] = LayerNormalization(x) over the last dim, x read
 * transposed from [3, 4, 8], with and without the bias. */
static void test_layernorm(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16};
    for (size_t t = 0; t < 3; t++)
        for (int has_bias = 0; has_bias < 2; has_bias++) {
            int dt = dts[t];
            arena ar = arena_new(8192);
            int64_t od[3] = {4, 3, 8}, sd[3] = {3, 4, 8}, st[3] = {8, 32, 1}, vd[1] = {8}, perm[3] = {1, 0, 2};
            uint64_t ao = arena_put(&ar, dt, 96), so = arena_put(&ar, dt, 8), bo = arena_put(&ar, dt, 8);
            uint64_t oo = arena_put(&ar, dt, 96);
            float *a = fill(&ar, ao, dt, 96, 1.0f, 3.0f), *s = fill(&ar, so, dt, 8, 1.0f, 0.5f);
            float *b = fill(&ar, bo, dt, 8, 1.0f, 0.0f), *x = fbuf(96), *want = fbuf(96);
            lp_persist_phase ph = {.kind = LP_PERSIST_LAYERNORM, .alpha = 1e-2f, .has_bias = has_bias,
                                   .out = dense(oo, dt, 3, od), .a = view(ao, dt, 3, od, st),
                                   .scale = dense(so, dt, 1, vd), .bias = dense(bo, dt, 1, vd)};
            run1_ok(&ph, &ar);
            lp_attr pa = ints_attr("perm", 3, perm);
            lp_ref_tensor in = ft(a, 3, sd), xt = ft(x, 3, od), out = ft(want, 3, od);
            ref(LP_OP_Transpose, 1, &in, &xt, 1, &pa);
            lp_attr eps = {.name = "epsilon", .type = LP_ATTR_FLOAT, .f = 1e-2f};
            lp_ref_tensor ln[3] = {xt, ft(s, 1, vd), ft(b, 1, vd)};
            ref(LP_OP_LayerNormalization, 2 + has_bias, ln, &out, 1, &eps);
            check(&ar, &ph.out, want, 96, 0, has_bias ? "layernorm" : "layernorm without bias");
            free(a), free(s), free(b), free(x), free(want);
            free(ar.base);
        }
}

/* ---- SOFTMAX ------------------------------------------------------------ */

/* out [3, 7] = (Log)Softmax over the last dim of x read transposed from
 * [7, 3]; inputs near 100, where exp overflows unless the max goes first. */
static void test_softmax(void **state) {
    (void)state;
    const int dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16};
    const int ops[] = {LP_OP_Softmax, LP_OP_LogSoftmax};
    for (size_t t = 0; t < 3; t++)
        for (size_t o = 0; o < 2; o++) {
            int dt = dts[t];
            arena ar = arena_new(4096);
            int64_t od[2] = {3, 7}, sd[2] = {7, 3}, st[2] = {1, 3}, perm[2] = {1, 0};
            uint64_t ao = arena_put(&ar, dt, 21), oo = arena_put(&ar, dt, 21);
            float *a = fill(&ar, ao, dt, 21, 4.0f, 100.0f), *x = fbuf(21), *want = fbuf(21);
            lp_persist_phase ph = {.kind = LP_PERSIST_SOFTMAX, .op = ops[o], .out = dense(oo, dt, 2, od),
                                   .a = view(ao, dt, 2, od, st)};
            run1_ok(&ph, &ar);
            lp_attr pa = ints_attr("perm", 2, perm);
            lp_ref_tensor in = ft(a, 2, sd), xt = ft(x, 2, od), out = ft(want, 2, od);
            ref(LP_OP_Transpose, 1, &in, &xt, 1, &pa);
            ref(ops[o], 1, &xt, &out, 0, NULL);
            check(&ar, &ph.out, want, 21, 0, o ? "logsoftmax" : "softmax");
            free(a), free(x), free(want);
            free(ar.base);
        }
}

/* ---- NODE phases and errors -------------------------------------------- */

typedef struct fake_env {
    int calls;
    const lp_card_node *seen;
    int rc;       /* what compute returns */
    int report;   /* 1: it reports an LP_ERR_UNSUPPORTED through d first */
    lp_diag *d;
} fake_env;

static int fake_compute(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    fake_env *f = env->user;
    (void)base;
    f->calls++;
    f->seen = n;
    if (f->report) lp_error(f->d, LP_ERR_UNSUPPORTED, "node '%s': no kernel here", n->node);
    return f->rc;
}

/* COPY x -> y, NODE (node 1), COPY y -> z: the node runs through
 * env->compute between the copies; its failure stops the program. */
static void test_node_phase(void **state) {
    (void)state;
    const int rcs[] = {0, 7, LP_ERR_UNSUPPORTED};
    for (int c = 0; c < 3; c++) {
        arena ar = arena_new(1024);
        int64_t dims[1] = {4};
        uint64_t xo = arena_put(&ar, LP_DT_FLOAT, 4), yo = arena_put(&ar, LP_DT_FLOAT, 4);
        uint64_t zo = arena_put(&ar, LP_DT_FLOAT, 4);
        float *x = fill(&ar, xo, LP_DT_FLOAT, 4, 1.0f, 2.0f), zero[4] = {0, 0, 0, 0};
        lp_card_node n0 = {.node = "copy_in", .op = "Identity"}, n1 = {.node = "custom_op", .op = "Custom"};
        const lp_card_node *nodes[2] = {&n0, &n1};
        lp_persist_phase ph[3] = {
            {.kind = LP_PERSIST_COPY, .node = 0, .out = dense(yo, LP_DT_FLOAT, 1, dims),
             .a = dense(xo, LP_DT_FLOAT, 1, dims)},
            {.kind = LP_PERSIST_NODE, .node = 1, .sync = 1},
            {.kind = LP_PERSIST_COPY, .node = 0, .sync = 1, .out = dense(zo, LP_DT_FLOAT, 1, dims),
             .a = dense(yo, LP_DT_FLOAT, 1, dims)},
        };
        lp_persist_program p = {.n_phases = 3, .phases = ph, .n_nodes = 2, .nodes = nodes, .n_kernels = 2};
        lp_diag d = lp_diag_make("test_persist_ref");
        d.sink = NULL;
        fake_env f = {.rc = rcs[c], .report = rcs[c] == LP_ERR_UNSUPPORTED, .d = &d};
        lp_card_env env = {.abi = LP_CARD_ABI, .compute = fake_compute, .user = &f};
        lp_status st = lp_persist_run_cpu(&p, ar.base, &env, &d);
        assert_int_equal(f.calls, 1);
        assert_ptr_equal(f.seen, &n1);
        if (c == 0) {
            assert_int_equal(st, LP_OK);
            check(&ar, &ph[2].out, x, 4, 1, "copies around a node");
        } else if (c == 1) {
            assert_int_equal(st, LP_ERR_INTERNAL);
            assert_non_null(strstr(d.last_error, "custom_op"));
            assert_non_null(strstr(d.last_error, "phase 1"));
            check(&ar, &ph[2].out, zero, 4, 1, "nothing after a failed node");
        } else {
            /* the callback's own status and message stay */
            assert_int_equal(st, LP_ERR_UNSUPPORTED);
            assert_int_equal(d.n_errors, 1);
            assert_non_null(strstr(d.last_error, "no kernel here"));
        }
        free(x);
        free(ar.base);
    }
}

/* An unknown kind, dtype or op is LP_ERR_INTERNAL naming phase and node. */
static void test_unknown_kind(void **state) {
    (void)state;
    for (int c = 0; c < 6; c++) {
        arena ar = arena_new(1024);
        int64_t dims[1] = {4};
        uint64_t xo = arena_put(&ar, LP_DT_FLOAT, 4), yo = arena_put(&ar, LP_DT_FLOAT, 4);
        lp_card_node n0 = {.node = "first", .op = "Identity"}, n1 = {.node = "mystery", .op = "Mystery"};
        const lp_card_node *nodes[2] = {&n0, &n1};
        lp_persist_phase ph[2] = {
            {.kind = LP_PERSIST_COPY, .node = 0, .out = dense(yo, LP_DT_FLOAT, 1, dims),
             .a = dense(xo, LP_DT_FLOAT, 1, dims)},
            {.kind = LP_PERSIST_ELEMENTWISE, .op = LP_OP_Relu, .node = 1,
             .out = dense(yo, LP_DT_FLOAT, 1, dims), .a = dense(xo, LP_DT_FLOAT, 1, dims)},
        };
        if (c == 0) ph[1].kind = 99;
        if (c == 1) ph[1].out.dtype = LP_DT_INT64;
        if (c == 2) ph[1].op = LP_OP_Conv;
        if (c == 3) ph[1].a.dims[0] = 5; /* a view that does not fit the output */
        if (c == 4) ph[1] = (lp_persist_phase){.kind = LP_PERSIST_COPY, .node = 1,
                                               .out = dense(yo, LP_DT_STRING, 1, dims),
                                               .a = dense(xo, LP_DT_STRING, 1, dims)};
        if (c == 5) ph[1] = (lp_persist_phase){.kind = LP_PERSIST_COPY, .node = 1, /* int32 -> float */
                                               .out = dense(yo, LP_DT_FLOAT, 1, dims),
                                               .a = dense(xo, LP_DT_INT32, 1, dims)};
        lp_persist_program p = {.n_phases = 2, .phases = ph, .n_nodes = 2, .nodes = nodes, .n_kernels = 1};
        lp_diag d = lp_diag_make("test_persist_ref");
        d.sink = NULL;
        lp_status st = lp_persist_run_cpu(&p, ar.base, NULL, &d);
        printf("  refused: %s\n", d.last_error);
        assert_int_equal(st, LP_ERR_INTERNAL);
        assert_non_null(strstr(d.last_error, "mystery"));
        assert_non_null(strstr(d.last_error, "phase 1"));
        free(ar.base);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_transpose),
        cmocka_unit_test(test_copy_bits),
        cmocka_unit_test(test_copy_broadcast),
        cmocka_unit_test(test_elementwise_binary_broadcast),
        cmocka_unit_test(test_elementwise_unary),
        cmocka_unit_test(test_gemm_bias_gelu_residual),
        cmocka_unit_test(test_gemm_residual_in_place),
        cmocka_unit_test(test_gemm_trans_w),
        cmocka_unit_test(test_batched_matmul),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_node_phase),
        cmocka_unit_test(test_unknown_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
