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

/* Infers dtype and shape of every value, folding shape subgraphs. A dim that
 * cannot be resolved is an error naming the unbound symbols. */
lp_status lp_analysis_infer_shapes(lp_graph *g, const lp_analysis_options *opt, lp_diag *d);

/* Memory footprint of a group of layers, in bytes at the deploy dtype. */
typedef struct lp_footprint {
    uint64_t weight_bytes;     /* each weight once */
    uint64_t activation_bytes; /* liveness-planned arena peak */
    uint64_t buffer_bytes;     /* largest workspace */
    uint64_t boundary_bytes;   /* received + sent values at the group's edges */
    uint64_t total;            /* sum of the above */
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
    int32_t *weights;           /* weight and constant values it reads */
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
} lp_layer_ir;

lp_status lp_analysis_build_layers(lp_graph *g, const lp_analysis_options *opt,
                                   lp_layer_ir **out, lp_diag *d);
void lp_layer_ir_free(lp_layer_ir *L);

/* Footprint of layers first..last as one group (one card). */
void lp_analysis_range_footprint(const lp_layer_ir *L, int first, int last, lp_footprint *fp);

/* Bytes of value v at the deploy dtype (floats converted); false if unknown. */
bool lp_analysis_value_bytes(const lp_layer_ir *L, int32_t v, uint64_t *bytes);

void lp_layer_ir_dump_text(const lp_layer_ir *L, FILE *out);
void *lp_layer_ir_to_json(const lp_layer_ir *L); /* json_t* */
lp_status lp_layer_ir_write_dot(const lp_layer_ir *L, const char *path, lp_diag *d);

#endif
