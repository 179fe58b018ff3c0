/* Op ids: each node's op type is looked up once in the op table (ir/ops.def)
 * and kept in lp_node.op, so that the stages after it compare small integers
 * instead of strings. */
#include "infer_internal.h"

void lp_analysis_assign_ops(lp_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        lp_node *n = &g->nodes[i];
        n->op = (int16_t)lp_op_lookup(n->domain, n->op_type);
    }
}
