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
    struct lp_range_cursor *cursor; /* made on first use, or NULL */
};

/* Values that live in the activation arena (produced by nodes, or graph
 * inputs); weights and folded constants do not. */
static inline bool lp_value_in_arena(const lp_value *v) {
    return v->kind == LP_VALUE_ACTIVATION || v->kind == LP_VALUE_INPUT;
}

/* A fresh mark for the stamp array. */
uint32_t lp_layer_index_next_epoch(struct lp_layer_index *ix, int n_values);

/* The online best-fit planner's state between steps (memplan.c): free
 * blocks sorted by offset, and the arena's high-water mark. Shared so that
 * range footprints can resume a plan from a saved step. */
typedef struct lp_memplan_block {
    uint64_t offset, size;
} lp_memplan_block;

typedef struct lp_memplan_online {
    lp_memplan_block *b;
    int n, cap;
    uint64_t top;
} lp_memplan_online;

/* Offset for `size` bytes (already aligned): the smallest free block that
 * holds it, else the top block extended, else the top. */
uint64_t lp_memplan_online_take(lp_memplan_online *f, uint64_t size);
/* Frees a block, merging with its neighbours; false if out of memory. */
bool lp_memplan_online_give(lp_memplan_online *f, uint64_t off, uint64_t size);
/* dst = src (dst's buffer reused); false if out of memory. */
bool lp_memplan_online_copy(lp_memplan_online *dst, const lp_memplan_online *src);

/* Greedy by size is quadratic: tried only up to this many items. */
#define LP_MEMPLAN_BY_SIZE_MAX 128

/* What lp_memplan_run does after the online plan: given the online peak
 * (*peak) and the live lower bound, tries the chain layout and greedy by
 * size and keeps the smallest (offsets updated when one wins). max_alive:
 * the most items alive at one step, or -1 if not known; at 3 or more the
 * items are no chain, so that layout is not tried. */
lp_status lp_memplan_improve(lp_memplan_item *items, int n_items, uint64_t align, uint64_t live,
                             int max_alive, uint64_t *peak);

/* A range footprint kept between calls so that growing a range by layers
 * (first fixed, last increasing: the partitioners' sweeps) resumes the plan
 * instead of redoing it (footprint.c). */
struct lp_range_cursor;
void lp_range_cursor_free(struct lp_range_cursor *c);

/* lp_analysis_range_footprint without the cursor: the planner run over the
 * whole range, the reference the cursor must match. */
void lp_analysis_range_footprint_exact(const lp_layer_ir *L, int first, int last,
                                       lp_footprint *fp);

#endif
