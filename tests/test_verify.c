/* The IR verifier accepts a well-formed graph and names each broken invariant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lp_ir.h"

/* x -> Relu -> y -> Neg -> z, with weight w read by the Neg node. */
static lp_graph *chain(void) {
    lp_graph *g = lp_graph_new("chain.onnx");
    int32_t x = lp_graph_intern_value(g, "x"), y = lp_graph_intern_value(g, "y");
    int32_t z = lp_graph_intern_value(g, "z"), w = lp_graph_intern_value(g, "w");
    g->values[x].kind = LP_VALUE_INPUT;
    g->values[x].is_graph_input = true;
    g->values[w].kind = LP_VALUE_WEIGHT;
    g->values[w].data.where = LP_DATA_INLINE;
    g->values[z].is_graph_output = true;
    g->inputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    g->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    g->inputs[0] = x;
    g->outputs[0] = z;
    g->n_inputs = g->n_outputs = 1;
    g->nodes = lp_arena_array(g->arena, 2, sizeof(lp_node));
    g->n_nodes = 2;
    const int32_t ins[2][2] = {{x, -1}, {y, w}}, outs[2] = {y, z};
    for (int i = 0; i < 2; i++) {
        lp_node *n = &g->nodes[i];
        n->name = i ? "neg" : "relu";
        n->op_type = i ? "Neg" : "Relu";
        n->domain = "";
        n->n_inputs = i ? 2 : 1;
        n->inputs = lp_arena_array(g->arena, 2, sizeof(int32_t));
        memcpy(n->inputs, ins[i], sizeof ins[i]);
        n->n_outputs = 1;
        n->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
        n->outputs[0] = outs[i];
        g->values[outs[i]].producer = i;
    }
    return g;
}

static lp_status verify_quiet(const lp_graph *g, lp_diag *d) {
    *d = lp_diag_make("chain.onnx");
    d->sink = NULL;
    return lp_graph_verify(g, d);
}

static void accepts_well_formed(void **state) {
    (void)state;
    lp_graph *g = chain();
    lp_diag d;
    assert_int_equal(verify_quiet(g, &d), LP_OK);
    assert_int_equal(d.n_errors, 0);
    lp_graph_free(g);
}

static void rejects_out_of_order(void **state) {
    (void)state;
    lp_graph *g = chain();
    lp_node t = g->nodes[0];
    g->nodes[0] = g->nodes[1];
    g->nodes[1] = t;
    g->values[lp_graph_find_value(g, "y")].producer = 1;
    g->values[lp_graph_find_value(g, "z")].producer = 0;
    lp_diag d;
    assert_int_equal(verify_quiet(g, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "not topological"));
    lp_graph_free(g);
}

static void rejects_wrong_producer(void **state) {
    (void)state;
    lp_graph *g = chain();
    g->values[lp_graph_find_value(g, "z")].producer = 0;
    lp_diag d;
    assert_int_equal(verify_quiet(g, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "producer field disagrees"));
    lp_graph_free(g);
}

static void rejects_bad_index_and_dims(void **state) {
    (void)state;
    lp_graph *g = chain();
    g->nodes[1].inputs[1] = 99;
    lp_diag d;
    assert_int_equal(verify_quiet(g, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "input out of range"));
    g->nodes[1].inputs[1] = lp_graph_find_value(g, "w");
    lp_value *y = &g->values[lp_graph_find_value(g, "y")];
    y->shape.rank = 1;
    y->shape.dims = lp_arena_array(g->arena, 1, sizeof(lp_dim));
    y->shape.dims[0].size = -7;
    assert_int_equal(verify_quiet(g, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "dim below -1"));
    y->shape.dims[0].size = 3;
    g->values[lp_graph_find_value(g, "w")].data.where = LP_DATA_NONE;
    assert_int_equal(verify_quiet(g, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "holds no data"));
    lp_graph_free(g);
}

static void rejects_unproduced_activation(void **state) {
    (void)state;
    lp_graph *g = chain();
    int32_t ghost = lp_graph_intern_value(g, "ghost");
    g->nodes[1].inputs[0] = ghost;
    lp_diag d;
    assert_int_equal(verify_quiet(g, &d), LP_ERR_INTERNAL);
    assert_non_null(strstr(d.last_error, "no node produces"));
    lp_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_well_formed),
        cmocka_unit_test(rejects_out_of_order),
        cmocka_unit_test(rejects_wrong_producer),
        cmocka_unit_test(rejects_bad_index_and_dims),
        cmocka_unit_test(rejects_unproduced_activation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
