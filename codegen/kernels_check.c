/* kernels_check.c - an op without a kernel family stops code generation,
 * all such ops reported together, as analysis reports unsupported ops. */
#include "lp_codegen.h"
#include "lp_ops.h"

#include <stdlib.h>
#include <string.h>

lp_status lp_codegen_check_kernels(const lp_program *prog, const lp_layer_ir *L, lp_diag *d) {
    const lp_graph *g = L->g;
    int *count = calloc((size_t)LP_OP_COUNT + 2, sizeof *count);
    int32_t *example = calloc((size_t)LP_OP_COUNT + 2, sizeof *example);
    if (!count || !example) {
        free(count);
        free(example);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    int missing = 0, unknown = 0;
    int32_t unknown_node = -1;
    for (int c = 0; c < prog->n_cards; c++) {
        const lp_card_program *cp = &prog->cards[c];
        for (int s = 0; s < cp->n_steps; s++) {
            const lp_step *st = &cp->steps[s];
            if (st->kind != LP_STEP_COMPUTE) continue;
            if (st->kernel <= 0 || st->kernel > LP_OP_COUNT) {
                if (unknown++ == 0) unknown_node = st->node;
                continue;
            }
            if (lp_op_emit_of(st->kernel) != LP_EMIT_NONE) continue;
            if (count[st->kernel]++ == 0) {
                example[st->kernel] = st->node;
                missing++;
            }
        }
    }
    lp_status st = LP_OK;
    if (missing || unknown) {
        st = lp_error(d, LP_ERR_UNSUPPORTED, "%d op%s in the plan ha%s no kernel to run %s",
                      missing + (unknown > 0), missing + (unknown > 0) == 1 ? "" : "s",
                      missing + (unknown > 0) == 1 ? "s" : "ve",
                      missing + (unknown > 0) == 1 ? "it" : "them");
        for (int op = 1; op <= LP_OP_COUNT; op++)
            if (count[op])
                lp_note(d, "%s: %d node%s (e.g. '%s')", lp_op_name(op), count[op], count[op] == 1 ? "" : "s",
                        g->nodes[example[op]].name ? g->nodes[example[op]].name : "");
        if (unknown)
            lp_note(d, "%s (not in the op table): %d node%s (e.g. '%s')", g->nodes[unknown_node].op_type,
                    unknown, unknown == 1 ? "" : "s",
                    g->nodes[unknown_node].name ? g->nodes[unknown_node].name : "");
    }
    free(count);
    free(example);
    return st;
}
