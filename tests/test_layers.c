/* The layer IR on hand-built graphs: cuts at the residual stream when there
 * is no module metadata, shared weights listed per layer and counted once
 * per group, and lp_analysis_range_footprint against a brute-force
 * recomputation of every range. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lp_analysis.h"
#include "support/ir_builder.h"

enum { HID = 64, MLP = 256, SEQ = 8 };

/* `blocks` residual MLP blocks x + W2 relu(W1 x); all blocks share W1. */
static lp_graph *mlp_stack(int blocks) {
    lp_graph *g = lp_graph_new("stack.onnx");
    assert_non_null(g);
    g->nodes = lp_arena_array(g->arena, (size_t)blocks * 4, sizeof(lp_node));
    int32_t x = ib_value(g, "x", LP_VALUE_INPUT, SEQ, HID);
    ib_inputs(g, 1, &x);
    int32_t w1 = ib_value(g, "w1", LP_VALUE_WEIGHT, HID, MLP);
    int n = 0;
    for (int b = 0; b < blocks; b++) {
        char nm[32];
        snprintf(nm, sizeof nm, "w2.%d", b);
        int32_t w2 = ib_value(g, nm, LP_VALUE_WEIGHT, MLP, HID);
        snprintf(nm, sizeof nm, "h.%d", b);
        int32_t h = ib_value(g, nm, LP_VALUE_ACTIVATION, SEQ, MLP);
        snprintf(nm, sizeof nm, "r.%d", b);
        int32_t r = ib_value(g, nm, LP_VALUE_ACTIVATION, SEQ, MLP);
        snprintf(nm, sizeof nm, "o.%d", b);
        int32_t o = ib_value(g, nm, LP_VALUE_ACTIVATION, SEQ, HID);
        snprintf(nm, sizeof nm, "y.%d", b);
        int32_t y = ib_value(g, nm, LP_VALUE_ACTIVATION, SEQ, HID);
        ib_node(g, &n, "MatMul", x, w1, h);
        ib_node(g, &n, "Relu", h, -1, r);
        ib_node(g, &n, "MatMul", r, w2, o);
        ib_node(g, &n, "Add", o, x, y);
        x = y;
    }
    g->n_nodes = n;
    ib_output(g, x);
    return g;
}

static void test_cuts_at_residual(void **state) {
    (void)state;
    lp_graph *g = mlp_stack(3);
    lp_layer_ir *L = ib_build_layers(g, LP_LAYERS_AUTO);
    assert_int_equal(L->n_layers, 3);
    for (int j = 0; j < 3; j++) {
        const lp_layer *l = &L->layers[j];
        assert_int_equal(l->first_node, 4 * j);
        assert_int_equal(l->last_node, 4 * j + 3);
        /* W1 is shared: listed in every layer */
        assert_int_equal(l->n_weights, 2);
        assert_int_equal(l->weight_bytes, 2 * HID * MLP * 4);
        assert_int_equal(l->input_bytes, SEQ * HID * 4);
        assert_int_equal(l->output_bytes, SEQ * HID * 4);
        /* 2*S*H*M per MatMul, S*M for Relu, S*H for Add */
        assert_int_equal(l->flops, 2ull * 2 * SEQ * HID * MLP + SEQ * MLP + SEQ * HID);
    }
    lp_footprint fp;
    lp_analysis_range_footprint(L, 0, 2, &fp);
    assert_int_equal(fp.weight_bytes, HID * MLP * 4 + 3 * MLP * HID * 4);
    lp_layer_ir_free(L);
    lp_graph_free(g);
}

/* Brute force: lifetimes of one range written out directly. */
static void brute_range(const lp_layer_ir *L, int first, int last, uint64_t *live, uint64_t *recv,
                        uint64_t *sent) {
    const lp_graph *g = L->g;
    int a = L->layers[first].first_node, b = L->layers[last].last_node;
    *live = *recv = *sent = 0;
    int steps = b - a + 1;
    uint64_t *at = calloc((size_t)steps, sizeof *at);
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        if (val->kind == LP_VALUE_WEIGHT) continue;
        int made = val->kind == LP_VALUE_INPUT ? -1 : val->producer;
        int last_in = -1, after = 0;
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++)
                if (g->nodes[i].inputs[k] == v) {
                    if (i >= a && i <= b) last_in = i;
                    if (i > b) after = 1;
                }
        uint64_t bytes;
        assert_true(lp_analysis_value_bytes(L, v, &bytes));
        int from, to;
        if (made >= a && made <= b) {
            from = made;
            to = after || val->is_graph_output ? b : last_in > made ? last_in : made;
            if (after || val->is_graph_output) *sent += bytes;
        } else if (made < a && last_in >= 0) {
            from = a;
            to = last_in;
            *recv += bytes;
        } else {
            continue;
        }
        for (int t = from; t <= to; t++) at[t - a] += (bytes + LP_MEMPLAN_ALIGN - 1) / LP_MEMPLAN_ALIGN * LP_MEMPLAN_ALIGN;
    }
    for (int t = 0; t < steps; t++)
        if (at[t] > *live) *live = at[t];
    free(at);
}

static void test_range_footprint_brute_force(void **state) {
    (void)state;
    lp_graph *g = mlp_stack(5);
    lp_layer_ir *L = ib_build_layers(g, LP_LAYERS_NODE);
    assert_int_equal(L->n_layers, 20);
    for (int i = 0; i < L->n_layers; i++)
        for (int j = i; j < L->n_layers; j++) {
            lp_footprint fp;
            lp_analysis_range_footprint(L, i, j, &fp);
            uint64_t live, recv, sent;
            brute_range(L, i, j, &live, &recv, &sent);
            assert_int_equal(fp.live_bytes, live);
            assert_int_equal(fp.received_bytes, recv);
            assert_int_equal(fp.sent_bytes, sent);
            assert_true(fp.activation_bytes >= live);
            assert_int_equal(fp.total, fp.weight_bytes + fp.activation_bytes + fp.buffer_bytes +
                                           recv + sent);
        }
    lp_layer_ir_free(L);
    lp_graph_free(g);
}

/* Two blocks by node name, /layers.K/...: A (block 0), B (block 1, reads
 * only x), C (block 0, reads A), D (block 1, reads B and C). In the order
 * A B C D the blocks interleave and the nodes are re-sorted to A C B D; in
 * the order A C B D they are kept as they are, the node array untouched. */
static lp_graph *two_blocks(bool interleaved) {
    lp_graph *g = lp_graph_new("blocks.onnx");
    assert_non_null(g);
    g->nodes = lp_arena_array(g->arena, 4, sizeof(lp_node));
    int32_t x = ib_value(g, "x", LP_VALUE_INPUT, SEQ, HID);
    ib_inputs(g, 1, &x);
    int32_t a = ib_value(g, "a", LP_VALUE_ACTIVATION, SEQ, HID);
    int32_t b = ib_value(g, "b", LP_VALUE_ACTIVATION, SEQ, HID);
    int32_t c = ib_value(g, "c", LP_VALUE_ACTIVATION, SEQ, HID);
    int32_t y = ib_value(g, "y", LP_VALUE_ACTIVATION, SEQ, HID);
    int n = 0;
    ib_node(g, &n, "Relu", x, -1, a);
    g->nodes[n - 1].name = "/layers.0/A";
    if (interleaved) {
        ib_node(g, &n, "Relu", x, -1, b);
        g->nodes[n - 1].name = "/layers.1/B";
    }
    ib_node(g, &n, "Relu", a, -1, c);
    g->nodes[n - 1].name = "/layers.0/C";
    if (!interleaved) {
        ib_node(g, &n, "Relu", x, -1, b);
        g->nodes[n - 1].name = "/layers.1/B";
    }
    ib_node(g, &n, "Add", b, c, y);
    g->nodes[n - 1].name = "/layers.1/D";
    g->n_nodes = n;
    ib_output(g, y);
    return g;
}

static void test_blocks_reordered(void **state) {
    (void)state;
    static const char *const want[4] = {"/layers.0/A", "/layers.0/C", "/layers.1/B", "/layers.1/D"};
    for (int interleaved = 0; interleaved < 2; interleaved++) {
        lp_graph *g = two_blocks(interleaved);
        const lp_node *before = g->nodes;
        lp_layer_ir *L = ib_build_layers(g, LP_LAYERS_AUTO);
        assert_int_equal(L->n_layers, 2);
        assert_string_equal(L->layers[0].name, "layers.0");
        assert_string_equal(L->layers[1].name, "layers.1");
        assert_int_equal(L->layers[0].first_node, 0);
        assert_int_equal(L->layers[0].last_node, 1);
        assert_int_equal(L->layers[1].last_node, 3);
        for (int i = 0; i < 4; i++) {
            assert_string_equal(g->nodes[i].name, want[i]);
            for (int k = 0; k < g->nodes[i].n_outputs; k++)
                assert_int_equal(g->values[g->nodes[i].outputs[k]].producer, i);
        }
        if (interleaved) assert_ptr_not_equal(g->nodes, before);
        else assert_ptr_equal(g->nodes, before);
        /* C's output feeds D in the other layer; A's stays inside layer 0 */
        assert_int_equal(L->layers[0].n_outputs, 1);
        assert_string_equal(g->values[L->layers[0].outputs[0]].name, "c");
        lp_layer_ir_free(L);
        lp_graph_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuts_at_residual),
        cmocka_unit_test(test_blocks_reordered),
        cmocka_unit_test(test_range_footprint_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
