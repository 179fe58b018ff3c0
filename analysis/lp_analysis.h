/* lp_analysis.h - graph IR -> shapes, the linear layer IR, footprints and
 * the activation memory plan.
 *
 *     lp_analysis_options ao = lp_analysis_defaults();
 *     ao.deploy_dtype = LP_DT_FLOAT16;
 *     if (lp_analysis_infer_shapes(g, &ao, &diag) != LP_OK) ...;
 *     lp_layer_ir *L = NULL;
 *     if (lp_analysis_build_layers(g, &ao, &L, &diag) != LP_OK) ...;
 *     lp_footprint fp;
 *     lp_analysis_range_footprint(L, 0, L->n_layers - 1, &fp);
 *     lp_layer_ir_free(L);
 */
#ifndef LP_ANALYSIS_H
#define LP_ANALYSIS_H

#include "lp_ir.h"

typedef enum lp_layering {
    LP_LAYERS_AUTO,  /* module path of repeated blocks; else smallest cuts */
    LP_LAYERS_NODE,  /* one node per layer */
    LP_LAYERS_SCOPE, /* group by module path depth */
    LP_LAYERS_REGEX, /* group by a capture of a regex over node names */
} lp_layering;

typedef struct lp_analysis_options {
    lp_dtype deploy_dtype;      /* LP_DT_UNDEFINED: keep the model's dtypes */
    lp_layering layering;
    int scope_depth;            /* LP_LAYERS_SCOPE */
    const char *regex;          /* LP_LAYERS_REGEX */
    const char *workspace_file; /* profiled per-op workspace table, or NULL */
} lp_analysis_options;

lp_analysis_options lp_analysis_defaults(void);

/* Infers dtype and shape of every value, folding shape subgraphs (small
 * integer tensors, symbolic dims kept as monomials such as "4*seq"). A dim
 * that cannot be resolved is an error naming the node and the unbound
 * symbols; unsupported ops are listed with counts in one error at the end;
 * a declared shape (value_info, outputs) that disagrees is an error.
 * Inference continues past errors so one run reports them all. */
lp_status lp_analysis_infer_shapes(lp_graph *g, const lp_analysis_options *opt, lp_diag *d);
/* Sets every node's op id (lp_node.op) from its op type; shape inference
 * does it first, so later stages compare ids instead of names. Run again
 * after nodes are added or their op types changed. */
void lp_analysis_assign_ops(lp_graph *g);

/* Memory footprint of a group of layers, in bytes at the deploy dtype. */
typedef struct lp_footprint {
    uint64_t weight_bytes;     /* each weight once */
    uint64_t activation_bytes; /* liveness-planned arena peak */
    uint64_t buffer_bytes;     /* largest workspace */
    uint64_t boundary_bytes;   /* received + sent values at the group's edges */
    uint64_t padding_bytes;    /* aligning each weight and boundary buffer to
                                  LP_MEMPLAN_ALIGN, as the card allocates them */
    uint64_t total;            /* sum of the above: the card's allocation */
    /* detail, not part of total */
    uint64_t received_bytes;   /* values made before the group and read in it */
    uint64_t sent_bytes;       /* values made in the group and read after it */
    uint64_t live_bytes;       /* most bytes alive at once: a lower bound of
                                  activation_bytes (the planner's peak) */
} lp_footprint;

/* Where an activation lives in its arena, and for how long. */
typedef struct lp_value_slot {
    int32_t value;
    uint64_t offset;
    uint64_t bytes;
    int first_node; /* producing node (or first use for inputs) */
    int last_node;  /* last consumer */
} lp_value_slot;

typedef struct lp_layer {
    const char *name;
    int first_node, last_node;  /* contiguous range of g->nodes */
    int n_weights;
    int32_t *weights;           /* weights and constants it reads (not shape data:
                                   integer tensors of rank 0-1) */
    int n_inputs;
    int32_t *inputs;            /* values from earlier layers or graph inputs */
    int n_outputs;
    int32_t *outputs;           /* values read by later layers or graph outputs */
    uint64_t weight_bytes;
    uint64_t activation_bytes;  /* liveness-planned peak within the layer */
    uint64_t activation_sum_bytes; /* the paper's plain sum of node outputs */
    uint64_t buffer_bytes;      /* largest per-node workspace */
    uint64_t input_bytes, output_bytes;
    uint64_t flops;
    uint64_t bytes_read, bytes_written;
    uint64_t total_bytes;       /* weight + activation + buffer + input + output:
                                   lp_analysis_range_footprint(L, i, i).total */
} lp_layer;

typedef struct lp_layer_ir {
    lp_graph *g;
    lp_arena *arena;
    lp_dtype deploy_dtype;
    int n_layers;
    lp_layer *layers;
    int *layer_of_node;          /* [g->n_nodes] */
    /* whole-model activation plan, what the runtime allocates on one card */
    int n_slots;
    lp_value_slot *slots;
    uint64_t arena_bytes;
    uint64_t activation_sum_bytes; /* plain sum over all node outputs */
    /* per node, filled by build_layers */
    uint64_t *node_flops;        /* [g->n_nodes] */
    uint64_t *node_buffer_bytes; /* [g->n_nodes] */
    struct lp_layer_index *index; /* consumers and scratch for range queries */
} lp_layer_ir;

/* Builds the layer IR of a graph whose shapes are known. May reorder g->nodes
 * (always into another topological order) so that each layer is a contiguous
 * run; value producers are updated to match. */
lp_status lp_analysis_build_layers(lp_graph *g, const lp_analysis_options *opt,
                                   lp_layer_ir **out, lp_diag *d);
void lp_layer_ir_free(lp_layer_ir *L);

/* Footprint of layers first..last as one group (one card): the group's
 * weights once, the planner's activation peak over its nodes (received values
 * live from the start, sent values to the end), its largest buffer, and the
 * boundary bytes. Exact (it runs the planner); cost O(nodes + values in the
 * range). Uses scratch memory inside L: not safe to call on one L from
 * several threads at once. */
void lp_analysis_range_footprint(const lp_layer_ir *L, int first, int last, lp_footprint *fp);

/* The dtype value v is stored at on a card: the deploy dtype for a float
 * value when one is set (--dtype), else the model's. Every stage that
 * sizes, converts or declares a value asks this. */
lp_dtype lp_analysis_value_dtype(const lp_layer_ir *L, const lp_value *v);

/* Bytes of value v at the deploy dtype (floats converted); false if unknown. */
bool lp_analysis_value_bytes(const lp_layer_ir *L, int32_t v, uint64_t *bytes);

void lp_layer_ir_dump_text(const lp_layer_ir *L, FILE *out);
void *lp_layer_ir_to_json(const lp_layer_ir *L); /* json_t* */
/* The same document into w as it is built (ir/json_out.h). */
void lp_layer_ir_write_json(const lp_layer_ir *L, lp_json_out *w);
lp_status lp_layer_ir_write_dot(const lp_layer_ir *L, const char *path, lp_diag *d);

/* ---- cost rules (analysis/footprint.c, analysis/workspace.c) ------------ */

/* Floating-point operations of one node; see footprint.c for the rules. */
uint64_t lp_analysis_node_flops(const lp_graph *g, const lp_node *n);

/* Per-op workspace model: built-in defaults, optionally overridden by a JSON
 * file {"MatMul": 4194304, "Conv": "2*output", "Softmax": 0}. */
typedef struct lp_workspace_model lp_workspace_model;
lp_status lp_workspace_load(const char *path, lp_workspace_model **out, lp_diag *d);
void lp_workspace_free(lp_workspace_model *m);
/* Workspace bytes of node n; value sizes come from L (deploy dtype). */
uint64_t lp_workspace_node_bytes(const lp_workspace_model *m, const lp_layer_ir *L,
                                 const lp_node *n);

/* ---- the activation memory planner (analysis/memplan.c) ----------------- */

/* One buffer to place: alive over steps first..last (inclusive). */
typedef struct lp_memplan_item {
    uint64_t bytes;
    int first, last;
    uint64_t offset; /* out */
} lp_memplan_item;

/* Offsets within an arena are rounded up to this (cudaMalloc's alignment). */
#define LP_MEMPLAN_ALIGN 256

/* Bytes that round `bytes` up to LP_MEMPLAN_ALIGN. */
static inline uint64_t lp_align_pad(uint64_t bytes) {
    return (LP_MEMPLAN_ALIGN - bytes % LP_MEMPLAN_ALIGN) % LP_MEMPLAN_ALIGN;
}

/* Places items in one arena: items alive at the same step never overlap;
 * *peak = the arena size. The better of online best-fit in step order
 * (ggml-alloc's scheme) and greedy by size (see memplan.c). The runtime
 * allocates one arena of *peak and uses the offsets as they are. */
lp_status lp_memplan_run(lp_memplan_item *items, int n_items, int n_steps, uint64_t align,
                         uint64_t *peak);
/* Largest sum of (aligned) bytes alive at one step: a lower bound of any
 * placement's peak (0 if out of memory). */
uint64_t lp_memplan_live_peak(const lp_memplan_item *items, int n_items, int n_steps,
                              uint64_t align);

#endif
