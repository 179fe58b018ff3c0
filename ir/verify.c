/* The graph IR verifier: the invariants every stage may rely on. */
#include "lp_ir.h"

#include <stdlib.h>

static lp_status broken(lp_diag *d, const char *what, int index, const char *name) {
    return lp_error(d, LP_ERR_INTERNAL, "IR check failed: %s (index %d, '%s')", what, index,
                    name ? name : "");
}

static lp_status check_shape(const lp_value *v, int index, lp_diag *d) {
    if (v->shape.rank < LP_RANK_UNKNOWN) return broken(d, "rank below -1", index, v->name);
    if (v->shape.rank > 0 && !v->shape.dims) return broken(d, "ranked shape without dims", index, v->name);
    for (int k = 0; k < v->shape.rank; k++)
        if (v->shape.dims[k].size < LP_DIM_UNKNOWN) return broken(d, "dim below -1", index, v->name);
    if ((unsigned)v->dtype >= LP_DT_COUNT) return broken(d, "dtype outside the spec", index, v->name);
    return LP_OK;
}

lp_status lp_graph_verify(const lp_graph *g, lp_diag *d) {
    lp_status st;
    for (int i = 0; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        if (!v->name) return broken(d, "value without a name", i, NULL);
        if (lp_graph_find_value(g, v->name) != i) return broken(d, "value name map out of date", i, v->name);
        if ((st = check_shape(v, i, d)) != LP_OK) return st;
        if (v->producer >= g->n_nodes) return broken(d, "producer out of range", i, v->name);
        if (v->producer >= 0 && v->kind != LP_VALUE_ACTIVATION)
            return broken(d, "a weight, constant or input has a producer", i, v->name);
        if ((v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT) && v->data.where == LP_DATA_NONE &&
            v->dtype != LP_DT_STRING)
            return broken(d, "a weight or constant holds no data", i, v->name);
    }
    /* position of each value's producer, to check order and producers */
    int *made_at = malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *made_at);
    if (!made_at) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < g->n_values; i++) made_at[i] = -1;
    st = LP_OK;
    for (int n = 0; n < g->n_nodes && st == LP_OK; n++) {
        const lp_node *nd = &g->nodes[n];
        for (int k = 0; k < nd->n_outputs && st == LP_OK; k++) {
            int32_t v = nd->outputs[k];
            if (v < -1 || v >= g->n_values) st = broken(d, "node output out of range", n, nd->name);
            else if (v >= 0 && made_at[v] >= 0) st = broken(d, "value produced twice", n, g->values[v].name);
            else if (v >= 0 && g->values[v].producer != n) st = broken(d, "producer field disagrees with the node", n, g->values[v].name);
            else if (v >= 0) made_at[v] = n;
        }
    }
    for (int n = 0; n < g->n_nodes && st == LP_OK; n++) {
        const lp_node *nd = &g->nodes[n];
        for (int k = 0; k < nd->n_inputs && st == LP_OK; k++) {
            int32_t v = nd->inputs[k];
            if (v < -1 || v >= g->n_values) st = broken(d, "node input out of range", n, nd->name);
            else if (v >= 0 && g->values[v].kind == LP_VALUE_ACTIVATION && made_at[v] < 0)
                st = broken(d, "node reads an activation no node produces", n, g->values[v].name);
            else if (v >= 0 && made_at[v] >= n)
                st = broken(d, "node reads a value produced later (not topological)", n, g->values[v].name);
        }
    }
    free(made_at);
    for (int i = 0; i < g->n_inputs && st == LP_OK; i++)
        if (g->inputs[i] < 0 || g->inputs[i] >= g->n_values || g->values[g->inputs[i]].kind != LP_VALUE_INPUT)
            st = broken(d, "graph input is not an input value", i, NULL);
    for (int i = 0; i < g->n_outputs && st == LP_OK; i++)
        if (g->outputs[i] < 0 || g->outputs[i] >= g->n_values || !g->values[g->outputs[i]].is_graph_output)
            st = broken(d, "graph output is not marked as one", i, NULL);
    return st;
}
