/* ir_builder.h - hand-built graph IR for tests: 2-D float values, nodes of
 * one or two inputs and the graph's inputs and output, written straight into
 * an lp_graph, and its layer IR. */
#ifndef TB_IR_BUILDER_H
#define TB_IR_BUILDER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lp_analysis.h"
#include "lp_ir.h"

/* A float value [d0, d1] of the given kind. */
static inline int32_t ib_value(lp_graph *g, const char *name, lp_value_kind kind, int64_t d0,
                               int64_t d1) {
    int32_t v = lp_graph_intern_value(g, name);
    assert_true(v >= 0);
    lp_value *val = &g->values[v];
    val->kind = kind;
    val->dtype = LP_DT_FLOAT;
    val->shape.rank = 2;
    val->shape.dims = lp_arena_array(g->arena, 2, sizeof(lp_dim));
    val->shape.dims[0].size = d0;
    val->shape.dims[1].size = d1;
    return v;
}

/* Node *n (then n+1) of g->nodes: out = op(a[, b]); b < 0 for one input. */
static inline void ib_node(lp_graph *g, int *n, const char *op, int32_t a, int32_t b, int32_t out) {
    lp_node *nd = &g->nodes[*n];
    nd->name = lp_arena_printf(g->arena, "n%d", *n);
    nd->op_type = op;
    nd->domain = "";
    nd->file_index = *n;
    nd->n_inputs = b >= 0 ? 2 : 1;
    nd->inputs = lp_arena_array(g->arena, 2, sizeof(int32_t));
    nd->inputs[0] = a;
    nd->inputs[1] = b;
    nd->n_outputs = 1;
    nd->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    nd->outputs[0] = out;
    g->values[out].producer = *n;
    (*n)++;
}

/* Marks v[0..n-1] as the graph's inputs, in order. */
static inline void ib_inputs(lp_graph *g, int n, const int32_t *v) {
    g->inputs = lp_arena_array(g->arena, (size_t)n, sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        g->values[v[i]].is_graph_input = true;
        g->inputs[i] = v[i];
    }
    g->n_inputs = n;
}

/* Marks v as the graph's one output. */
static inline void ib_output(lp_graph *g, int32_t v) {
    g->values[v].is_graph_output = true;
    g->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    g->outputs[0] = v;
    g->n_outputs = 1;
}

/* The layer IR of g in the given layering mode; fails the test on error. */
static inline lp_layer_ir *ib_build_layers(lp_graph *g, lp_layering mode) {
    lp_analysis_options o = lp_analysis_defaults();
    o.layering = mode;
    lp_diag d = lp_diag_make(g->path);
    lp_layer_ir *L = NULL;
    assert_int_equal(lp_analysis_build_layers(g, &o, &L, &d), LP_OK);
    return L;
}

#endif
