/* A synthetic stack of residual MLP blocks for the benchmarks: per block
 * MatMul(x, w1) -> Relu -> MatMul(., w2) -> Add(., x), fp16, node names
 * "/blocks.B/OP_K" so --layers auto makes one layer a block. */
#ifndef LP_BENCH_SYNTHETIC_STACK_H
#define LP_BENCH_SYNTHETIC_STACK_H
#include "lp_ir.h"

#include <stdio.h>

static int32_t stack_value(lp_graph *g, const char *name, lp_value_kind kind, int64_t d0, int64_t d1) {
    int32_t v = lp_graph_intern_value(g, name);
    if (v < 0) return -1;
    lp_value *val = &g->values[v];
    val->kind = kind;
    val->dtype = LP_DT_FLOAT16;
    val->shape.rank = 2;
    val->shape.dims = lp_arena_array(g->arena, 2, sizeof(lp_dim));
    if (!val->shape.dims) return -1;
    val->shape.dims[0].size = d0;
    val->shape.dims[1].size = d1;
    return v;
}

static bool stack_node(lp_graph *g, int *n, const char *op, int32_t a, int32_t b, int32_t out) {
    lp_node *nd = &g->nodes[*n];
    nd->name = lp_arena_printf(g->arena, "/blocks.%d/%s_%d", *n / 4, op, *n % 4);
    nd->op_type = op;
    nd->domain = "";
    nd->file_index = *n;
    nd->n_inputs = b >= 0 ? 2 : 1;
    nd->inputs = lp_arena_array(g->arena, 2, sizeof(int32_t));
    nd->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    if (!nd->name || !nd->inputs || !nd->outputs) return false;
    nd->inputs[0] = a;
    nd->inputs[1] = b;
    nd->n_outputs = 1;
    nd->outputs[0] = out;
    g->values[out].producer = *n;
    (*n)++;
    return true;
}

static lp_graph *bench_stack(int blocks, int64_t hid, int64_t mlp, int64_t seq) {
    lp_graph *g = lp_graph_new("stack.onnx");
    if (!g) return NULL;
    g->nodes = lp_arena_array(g->arena, (size_t)blocks * 4, sizeof(lp_node));
    g->inputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    g->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    int32_t x = stack_value(g, "x", LP_VALUE_INPUT, seq, hid);
    if (!g->nodes || !g->inputs || !g->outputs || x < 0) goto fail;
    g->values[x].is_graph_input = true;
    g->n_inputs = 1;
    g->inputs[0] = x;
    int n = 0;
    for (int b = 0; b < blocks; b++) {
        char nm[5][48];
        static const char *const prefix[5] = {"w1", "w2", "h", "r", "y"};
        for (int k = 0; k < 5; k++) snprintf(nm[k], sizeof nm[k], "%s.%d", prefix[k], b);
        int32_t w1 = stack_value(g, nm[0], LP_VALUE_WEIGHT, hid, mlp);
        int32_t w2 = stack_value(g, nm[1], LP_VALUE_WEIGHT, mlp, hid);
        int32_t h = stack_value(g, nm[2], LP_VALUE_ACTIVATION, seq, mlp);
        int32_t r = stack_value(g, nm[3], LP_VALUE_ACTIVATION, seq, mlp);
        char on[48];
        snprintf(on, sizeof on, "o.%d", b);
        int32_t o = stack_value(g, on, LP_VALUE_ACTIVATION, seq, hid);
        int32_t y = stack_value(g, nm[4], LP_VALUE_ACTIVATION, seq, hid);
        if (w1 < 0 || w2 < 0 || h < 0 || r < 0 || o < 0 || y < 0) goto fail;
        if (!stack_node(g, &n, "MatMul", x, w1, h) || !stack_node(g, &n, "Relu", h, -1, r) ||
            !stack_node(g, &n, "MatMul", r, w2, o) || !stack_node(g, &n, "Add", o, x, y))
            goto fail;
        x = y;
    }
    g->n_nodes = n;
    g->values[x].is_graph_output = true;
    g->n_outputs = 1;
    g->outputs[0] = x;
    return g;
fail:
    lp_graph_free(g);
    return NULL;
}

#endif
