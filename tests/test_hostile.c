/* Hostile values in shape inference and cost rules, against brute force:
 * Slice and Range lengths for bounds and steps at the ends of int64 (an
 * index walk in 128 bits is the oracle), nodes missing what their operator
 * needs, and FLOP counts that do not fit 64 bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lp_analysis.h"

typedef __int128 i128;

static const int64_t extremes[] = {
    INT64_MIN, INT64_MIN + 1, -((int64_t)1 << 62), -8, -7, -3, -1, 0, 1, 2, 5, 7,
    (int64_t)1 << 62, INT64_MAX - 1, INT64_MAX,
};
static const int64_t steps[] = {
    INT64_MIN, INT64_MIN + 1, -((int64_t)1 << 62), -3, -2, -1, 1, 2, 3, (int64_t)1 << 62, INT64_MAX,
};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- graphs built through the IR's own API -------------------------------------- */

static lp_graph *new_graph(int n_nodes) {
    lp_graph *g = lp_graph_new("hostile.onnx");
    assert_non_null(g);
    g->nodes = lp_arena_array(g->arena, (size_t)n_nodes, sizeof *g->nodes);
    assert_non_null(g->nodes);
    g->opset = 18;
    return g;
}

static int32_t add_input(lp_graph *g, const char *name, int64_t dim) {
    int32_t v = lp_graph_intern_value(g, name);
    assert_true(v >= 0);
    lp_value *x = &g->values[v];
    x->kind = LP_VALUE_INPUT;
    x->is_graph_input = true;
    x->dtype = LP_DT_FLOAT;
    x->shape.rank = 1;
    x->shape.dims = lp_arena_array(g->arena, 1, sizeof(lp_dim));
    x->shape.dims[0] = (lp_dim){.size = dim};
    return v;
}

/* An int64 constant: rank 1 of one element, or a scalar. */
static int32_t add_const(lp_graph *g, const char *name, int64_t value, bool scalar) {
    int32_t v = lp_graph_intern_value(g, name);
    assert_true(v >= 0);
    lp_value *c = &g->values[v];
    c->kind = LP_VALUE_CONSTANT;
    c->dtype = LP_DT_INT64;
    c->shape.rank = scalar ? 0 : 1;
    c->shape.dims = lp_arena_array(g->arena, 1, sizeof(lp_dim));
    c->shape.dims[0] = (lp_dim){.size = 1};
    uint8_t *bytes = lp_arena_alloc(g->arena, 8);
    for (int b = 0; b < 8; b++) bytes[b] = (uint8_t)((uint64_t)value >> (8 * b));
    c->data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = bytes, .nbytes = 8};
    return v;
}

static lp_node *add_node(lp_graph *g, const char *op, int n_in, const int32_t *in, const char *out) {
    lp_node *n = &g->nodes[g->n_nodes];
    n->op_type = op;
    n->name = op;
    n->domain = "";
    n->file_index = g->n_nodes;
    n->n_inputs = n_in;
    n->inputs = lp_arena_array(g->arena, (size_t)n_in + 1, sizeof(int32_t));
    if (n_in) memcpy(n->inputs, in, (size_t)n_in * sizeof(int32_t));
    n->n_outputs = out ? 1 : 0;
    n->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    if (out) {
        n->outputs[0] = lp_graph_intern_value(g, out);
        g->values[n->outputs[0]].producer = g->n_nodes;
    }
    n->attrs = lp_arena_array(g->arena, 2, sizeof(lp_attr));
    g->n_nodes++;
    return n;
}

static lp_status infer(lp_graph *g, lp_diag *d) {
    *d = lp_diag_make("hostile.onnx");
    d->sink = NULL;
    lp_analysis_options o = lp_analysis_defaults();
    return lp_analysis_infer_shapes(g, &o, d);
}

/* ---- Slice ------------------------------------------------------------------------ */

static i128 clamp128(i128 x, i128 lo, i128 hi) { return x < lo ? lo : x > hi ? hi : x; }

/* ONNX's Slice on one axis, walked index by index: how many of the visited
 * indices lie inside the axis. */
static int64_t slice_brute(int64_t dim, int64_t start, int64_t end, int64_t step) {
    i128 s = start, e = end;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    s = step > 0 ? clamp128(s, 0, dim) : clamp128(s, 0, (i128)dim - 1);
    e = step > 0 ? clamp128(e, 0, dim) : clamp128(e, -1, (i128)dim - 1);
    int64_t n = 0;
    for (i128 i = s; step > 0 ? i < e : i > e; i += step) n += i >= 0 && i < dim;
    return n;
}

static void test_slice_extremes(void **state) {
    (void)state;
    int checked = 0;
    for (int64_t dim = 0; dim <= 6; dim++)
        for (int a = 0; a < COUNT(extremes); a++)
            for (int b = 0; b < COUNT(extremes); b++)
                for (int c = 0; c < COUNT(steps); c++) {
                    lp_graph *g = new_graph(1);
                    int32_t in[5] = {add_input(g, "x", dim), add_const(g, "s", extremes[a], false),
                                     add_const(g, "e", extremes[b], false), add_const(g, "a", 0, false),
                                     add_const(g, "t", steps[c], false)};
                    add_node(g, "Slice", 5, in, "y");
                    lp_diag d;
                    assert_int_equal(infer(g, &d), LP_OK);
                    const lp_value *y = &g->values[lp_graph_find_value(g, "y")];
                    assert_int_equal(y->shape.rank, 1);
                    int64_t want = slice_brute(dim, extremes[a], extremes[b], steps[c]);
                    if (y->shape.dims[0].size != want)
                        fail_msg("Slice dim %lld start %lld end %lld step %lld: %lld, expected %lld",
                                 (long long)dim, (long long)extremes[a], (long long)extremes[b],
                                 (long long)steps[c], (long long)y->shape.dims[0].size, (long long)want);
                    lp_graph_free(g);
                    checked++;
                }
    assert_int_equal(checked, 7 * COUNT(extremes) * COUNT(extremes) * COUNT(steps));
}

static void test_slice_step_zero(void **state) {
    (void)state;
    lp_graph *g = new_graph(1);
    int32_t in[5] = {add_input(g, "x", 5), add_const(g, "s", 0, false), add_const(g, "e", 3, false),
                     add_const(g, "a", 0, false), add_const(g, "t", 0, false)};
    add_node(g, "Slice", 5, in, "y");
    lp_diag d;
    assert_int_not_equal(infer(g, &d), LP_OK);
    assert_non_null(strstr(d.last_error, "node 0 'Slice' (Slice)"));
    assert_non_null(strstr(d.last_error, "step"));
    lp_graph_free(g);
}

/* ---- Range ------------------------------------------------------------------------ */

/* ceil((limit - start) / delta) in 128 bits, or 0 when empty. */
static i128 range_oracle(int64_t start, int64_t limit, int64_t delta) {
    i128 span = (i128)limit - start;
    i128 q = span / delta, r = span % delta;
    if (r != 0 && ((r > 0) == (delta > 0))) q++;
    return q > 0 ? q : 0;
}

static void test_range_extremes(void **state) {
    (void)state;
    for (int a = 0; a < COUNT(extremes); a++)
        for (int b = 0; b < COUNT(extremes); b++)
            for (int c = 0; c < COUNT(steps); c++) {
                lp_graph *g = new_graph(1);
                int32_t in[3] = {add_const(g, "s", extremes[a], true), add_const(g, "l", extremes[b], true),
                                 add_const(g, "d", steps[c], true)};
                add_node(g, "Range", 3, in, "y");
                lp_diag d;
                lp_status st = infer(g, &d);
                i128 want = range_oracle(extremes[a], extremes[b], steps[c]);
                const lp_value *y = &g->values[lp_graph_find_value(g, "y")];
                if (want > INT64_MAX) {
                    /* more elements than a dim holds: refused at the node */
                    if (st == LP_OK) fail_msg("Range %lld..%lld by %lld accepted", (long long)extremes[a],
                                             (long long)extremes[b], (long long)steps[c]);
                    assert_non_null(strstr(d.last_error, "(Range)"));
                } else {
                    assert_int_equal(st, LP_OK);
                    assert_int_equal(y->shape.rank, 1);
                    if (y->shape.dims[0].size != (int64_t)want)
                        fail_msg("Range %lld..%lld by %lld: %lld elements, expected %lld",
                                 (long long)extremes[a], (long long)extremes[b], (long long)steps[c],
                                 (long long)y->shape.dims[0].size, (long long)want);
                }
                lp_graph_free(g);
            }
}

/* ---- nodes missing what their operator needs --------------------------------------- */

static void expect_node_error(lp_graph *g, const char *where, const char *why) {
    lp_diag d;
    lp_status st = infer(g, &d);
    assert_true(st == LP_ERR_INVALID_MODEL || st == LP_ERR_UNSUPPORTED);
    if (!strstr(d.last_error, where) || !strstr(d.last_error, why))
        fail_msg("expected '%s' and '%s' in: %s", where, why, d.last_error);
    lp_graph_free(g);
}

static void test_einsum_without_inputs(void **state) {
    (void)state;
    lp_graph *g = new_graph(1);
    lp_node *n = add_node(g, "Einsum", 0, NULL, "y");
    n->attrs[n->n_attrs++] = (lp_attr){.name = "equation", .type = LP_ATTR_STRING, .s = "->", .s_len = 2};
    expect_node_error(g, "node 0 'Einsum' (Einsum)", "input 0");
}

static void test_node_without_outputs(void **state) {
    (void)state;
    lp_graph *g = new_graph(1);
    int32_t x = add_input(g, "x", 4);
    add_node(g, "Relu", 1, &x, NULL);
    expect_node_error(g, "node 0 'Relu' (Relu)", "no outputs");
}

static void test_transpose_repeated_axis(void **state) {
    (void)state;
    for (int repeat = 0; repeat < 2; repeat++) {
        lp_graph *g = new_graph(1);
        int32_t x = add_input(g, "x", 2);
        lp_dim *dims = lp_arena_array(g->arena, 2, sizeof(lp_dim));
        dims[0].size = 2, dims[1].size = 3;
        g->values[x].shape = (lp_shape){2, dims};
        lp_node *n = add_node(g, "Transpose", 1, &x, "y");
        int64_t *perm = lp_arena_array(g->arena, 2, sizeof *perm);
        perm[0] = 1, perm[1] = repeat ? 1 : 0;
        n->attrs[n->n_attrs++] = (lp_attr){.name = "perm", .type = LP_ATTR_INTS, .n = 2, .ints = perm};
        if (repeat) {
            expect_node_error(g, "node 0 'Transpose' (Transpose)", "twice");
            continue;
        }
        lp_diag d;
        assert_int_equal(infer(g, &d), LP_OK);
        const lp_value *y = &g->values[lp_graph_find_value(g, "y")];
        assert_int_equal(y->shape.dims[0].size, 3);
        assert_int_equal(y->shape.dims[1].size, 2);
        lp_graph_free(g);
    }
}

/* ---- FLOPs beyond 64 bits ------------------------------------------------------------ */

static void test_flops_saturate(void **state) {
    (void)state;
    const int64_t side = (int64_t)1 << 21; /* 2 * 2^21 * 2^21 * 2^21 = 2^64 */
    for (int64_t k = side - 1; k <= side; k++) {
        lp_graph *g = new_graph(1);
        int32_t in[2] = {add_input(g, "a", side), add_input(g, "b", k)};
        /* a: [side, k], b: [k, side], y: [side, side] */
        lp_dim *ad = lp_arena_array(g->arena, 2, sizeof(lp_dim)), *bd = lp_arena_array(g->arena, 2, sizeof(lp_dim));
        ad[0].size = side, ad[1].size = k, bd[0].size = k, bd[1].size = side;
        g->values[in[0]].shape = (lp_shape){2, ad};
        g->values[in[1]].shape = (lp_shape){2, bd};
        add_node(g, "MatMul", 2, in, "y");
        lp_diag d;
        assert_int_equal(infer(g, &d), LP_OK);
        uint64_t flops = lp_analysis_node_flops(g, &g->nodes[0]);
        /* exact below 2^64, saturated at it */
        uint64_t want = k < side ? 2ull * (uint64_t)side * (uint64_t)side * (uint64_t)k : UINT64_MAX;
        assert_int_equal(flops, want);
        lp_graph_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slice_extremes),       cmocka_unit_test(test_slice_step_zero),
        cmocka_unit_test(test_range_extremes),       cmocka_unit_test(test_einsum_without_inputs),
        cmocka_unit_test(test_node_without_outputs), cmocka_unit_test(test_transpose_repeated_axis),
        cmocka_unit_test(test_flops_saturate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
