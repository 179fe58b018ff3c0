/* Internals shared by layers.c, footprint.c, workspace.c and layer_dump.c. */
#ifndef LP_LAYERS_INTERNAL_H
#define LP_LAYERS_INTERNAL_H

#include "lp_analysis.h"

#define LP_BYTES_UNKNOWN UINT64_MAX

/* Per-value facts in the final node order, and scratch for range queries. */
struct lp_layer_index {
    int32_t *cons_start;  /* [n_values + 1]: consumers of v are cons[cons_start[v]..] */
    int32_t *cons;        /* node positions, ascending */
    int32_t *last_use;    /* [n_values]: last consuming node, or -1 */
    uint64_t *vbytes;     /* [n_values]: bytes at the deploy dtype, or LP_BYTES_UNKNOWN */
    uint32_t *stamp;      /* [n_values]: scratch marks, valid when == epoch */
    uint32_t epoch;
    lp_memplan_item *items; /* scratch for one range plan */
    int items_cap;
};

/* Values that live in the activation arena (produced by nodes, or graph
 * inputs); weights and folded constants do not. */
static inline bool lp_value_in_arena(const lp_value *v) {
    return v->kind == LP_VALUE_ACTIVATION || v->kind == LP_VALUE_INPUT;
}

/* A fresh mark for the stamp array. */
uint32_t lp_layer_index_next_epoch(struct lp_layer_index *ix, int n_values);

#endif
