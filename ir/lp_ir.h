/* lp_ir.h - the graph IR every stage of lpcc reads and writes.
 *
 * A model becomes one lp_graph: flat arrays of values and nodes that refer to
 * each other by integer index, all allocated from the graph's arena and freed
 * by one lp_graph_free(). Nodes are stored in a topological order.
 *
 *     lp_diag diag = lp_diag_make("model.onnx");
 *     lp_graph *g = NULL;
 *     if (lp_frontend_load("model.onnx", NULL, &g, &diag) != LP_OK) return 1;
 *     for (int i = 0; i < g->n_nodes; i++) {
 *         const lp_node *n = &g->nodes[i];
 *         printf("%s %s -> %s\n", n->op_type, n->name, g->values[n->outputs[0]].name);
 *     }
 *     lp_graph_free(g);
 */
#ifndef LP_IR_H
#define LP_IR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* ---- status and diagnostics ------------------------------------------- */

/* Every stage returns one of these; the CLI maps them to exit codes. */
typedef enum lp_status {
    LP_OK = 0,
    LP_ERR_INVALID_MODEL, /* the file is not a well-formed ONNX model      */
    LP_ERR_UNSUPPORTED,   /* well-formed, but uses what lpcc cannot handle */
    LP_ERR_USAGE,         /* bad command line or option value            */
    LP_ERR_INFEASIBLE,    /* no plan fits the cards                      */
    LP_ERR_OUTPUT,        /* cannot write to the output folder           */
    LP_ERR_INTERNAL,      /* a bug or resource failure (out of memory)   */
    LP_ERR_PEER,          /* another process of the run failed or timed out */
} lp_status;

const char *lp_status_name(lp_status s);

typedef enum lp_severity { LP_SEV_NOTE, LP_SEV_WARNING, LP_SEV_ERROR } lp_severity;

/* Collects diagnostics: prints them to `sink` (stderr by default, NULL for
 * silence) prefixed with the model's path, and keeps the last error text so
 * callers and tests can inspect it. */
typedef struct lp_diag {
    const char *file;   /* shown at the start of every message */
    FILE *sink;
    int quiet;          /* 1: drop warnings and notes, keep errors */
    int n_errors;
    int n_warnings;
    char last_error[1024];
} lp_diag;

lp_diag lp_diag_make(const char *file);
lp_status lp_error(lp_diag *d, lp_status s, const char *fmt, ...) LP_PRINTF(3, 4);
void lp_warn(lp_diag *d, const char *fmt, ...) LP_PRINTF(2, 3);
void lp_note(lp_diag *d, const char *fmt, ...) LP_PRINTF(2, 3);
lp_status lp_verror(lp_diag *d, lp_status s, const char *fmt, va_list ap) LP_PRINTF(3, 0);
void lp_vreport(lp_diag *d, lp_severity sev, const char *fmt, va_list ap) LP_PRINTF(3, 0);

/* ---- arena -------------------------------------------------------------- */

/* A bump allocator of chunks; everything in one graph lives in one arena. */
typedef struct lp_arena lp_arena;

lp_arena *lp_arena_new(void);
void lp_arena_free(lp_arena *a);
/* Zeroed memory, 16-byte aligned; NULL on overflow or out of memory. */
void *lp_arena_alloc(lp_arena *a, size_t size);
/* Same, not zeroed (for writers that fill every byte, e.g. protobuf-c). */
void *lp_arena_alloc_uninit(lp_arena *a, size_t size);
void *lp_arena_array(lp_arena *a, size_t count, size_t elem_size);
char *lp_arena_strdup(lp_arena *a, const char *s);
char *lp_arena_strndup(lp_arena *a, const char *s, size_t n);
char *lp_arena_printf(lp_arena *a, const char *fmt, ...) LP_PRINTF(2, 3);
size_t lp_arena_bytes(const lp_arena *a);

/* ---- data types --------------------------------------------------------- */

/* Numbered as ONNX's TensorProto.DataType. */
typedef enum lp_dtype {
    LP_DT_UNDEFINED = 0,
    LP_DT_FLOAT = 1,
    LP_DT_UINT8 = 2,
    LP_DT_INT8 = 3,
    LP_DT_UINT16 = 4,
    LP_DT_INT16 = 5,
    LP_DT_INT32 = 6,
    LP_DT_INT64 = 7,
    LP_DT_STRING = 8,
    LP_DT_BOOL = 9,
    LP_DT_FLOAT16 = 10,
    LP_DT_DOUBLE = 11,
    LP_DT_UINT32 = 12,
    LP_DT_UINT64 = 13,
    LP_DT_COMPLEX64 = 14,
    LP_DT_COMPLEX128 = 15,
    LP_DT_BFLOAT16 = 16,
    LP_DT_FLOAT8E4M3FN = 17,
    LP_DT_FLOAT8E4M3FNUZ = 18,
    LP_DT_FLOAT8E5M2 = 19,
    LP_DT_FLOAT8E5M2FNUZ = 20,
    LP_DT_UINT4 = 21,
    LP_DT_INT4 = 22,
    LP_DT_FLOAT4E2M1 = 23,
    LP_DT_FLOAT8E8M0 = 24,
    LP_DT_UINT2 = 25,
    LP_DT_INT2 = 26,
    LP_DT_FLOAT6E2M3 = 27,
    LP_DT_FLOAT6E3M2 = 28,
    LP_DT_COUNT
} lp_dtype;

/* Lower-case ONNX name ("float16"), or NULL for a number outside the spec. */
const char *lp_dtype_name(lp_dtype t);
/* The name for messages: lp_dtype_name, or "?" for a number with none. */
const char *lp_dtype_label(lp_dtype t);
bool lp_dtype_from_name(const char *name, lp_dtype *out);
/* Bits one element occupies when packed (4 for INT4); 0 for UNDEFINED and
 * STRING, whose size is not fixed. */
int lp_dtype_bits(lp_dtype t);
bool lp_dtype_is_float(lp_dtype t);
/* Bytes that `count` packed elements occupy: ceil(count * bits / 8).
 * Returns false on overflow or for a type without a fixed size. */
bool lp_dtype_storage_bytes(lp_dtype t, uint64_t count, uint64_t *bytes);

/* ---- shapes ------------------------------------------------------------- */

/* A dimension is a number (size >= 0), a named symbol (sym != NULL, size < 0)
 * or unknown (both unset). */
typedef struct lp_dim {
    int64_t size;
    const char *sym;
} lp_dim;

#define LP_DIM_UNKNOWN (-1)
#define LP_RANK_UNKNOWN (-1)
/* The largest rank lpcc accepts anywhere (numpy's limit; ONNX Runtime and
 * TensorRT cap ranks too). A larger one is refused where it first appears. */
#define LP_MAX_RANK 64

typedef struct lp_shape {
    int rank; /* LP_RANK_UNKNOWN when not even the rank is known */
    lp_dim *dims;
} lp_shape;

/* Element count of a fully numeric shape; false if a dim is not a number or
 * the product overflows int64. */
bool lp_shape_numel(const lp_shape *s, uint64_t *numel);

/* ---- values ------------------------------------------------------------- */

typedef enum lp_value_kind {
    LP_VALUE_ACTIVATION,  /* produced by a node */
    LP_VALUE_INPUT,       /* graph input without initializer */
    LP_VALUE_WEIGHT,      /* initializer */
    LP_VALUE_CONSTANT,    /* output of a Constant node, folded away */
} lp_value_kind;

typedef enum lp_data_where {
    LP_DATA_NONE,     /* no bytes (activations, graph inputs) */
    LP_DATA_INLINE,   /* bytes copied into the arena */
    LP_DATA_EXTERNAL, /* bytes in a file next to the model, not read */
    LP_DATA_FILE,     /* raw_data inside the model file itself, not read */
} lp_data_where;

/* The model file, kept open while its graph lives so that tensors stored in
 * it (LP_DATA_FILE) are read on demand with pread; lp_graph_free closes it.
 * A file shorter than `size` was truncated after loading. */
typedef struct lp_data_file {
    int fd;
    const char *path;
    uint64_t size; /* bytes at load */
} lp_data_file;

/* Where a tensor's bytes are. Inline bytes are little-endian and packed as
 * ONNX's raw_data; external and file bytes (the same packing) are read only
 * on demand, by lp_frontend_read_weight / lp_frontend_read_tensor. Small
 * tensors (under LP_DATA_INLINE_MAX bytes, all that constant folding reads)
 * are always INLINE. */
#define LP_DATA_INLINE_MAX 4096
typedef struct lp_tensor_data {
    lp_data_where where;
    const uint8_t *bytes;   /* INLINE */
    uint64_t nbytes;        /* INLINE: size of bytes; EXTERNAL, FILE: length */
    const char *location;   /* EXTERNAL: path as written in the model */
    const char *path;       /* EXTERNAL: resolved path on disk */
    uint64_t offset;        /* EXTERNAL, FILE: where the bytes start in the file */
    bool present;           /* EXTERNAL: the file exists and covers the range */
    const lp_data_file *file; /* FILE: the open model file */
} lp_tensor_data;

typedef struct lp_value {
    const char *name;
    lp_value_kind kind;
    lp_dtype dtype;        /* UNDEFINED until known */
    lp_shape shape;        /* rank LP_RANK_UNKNOWN until known */
    int32_t producer;      /* node index, or -1 */
    bool is_graph_input;
    bool is_graph_output;
    lp_tensor_data data;   /* WEIGHT and CONSTANT only */
    /* ACTIVATION: its bytes when shape inference knew every element at
     * compile time (small integer shape data), else NULL; the programs
     * carry such values instead of computing them */
    const uint8_t *known;
    uint64_t known_nbytes;
} lp_value;

/* ---- attributes --------------------------------------------------------- */

typedef enum lp_attr_type {
    LP_ATTR_UNDEFINED = 0,
    LP_ATTR_FLOAT = 1,
    LP_ATTR_INT = 2,
    LP_ATTR_STRING = 3,
    LP_ATTR_TENSOR = 4,
    LP_ATTR_GRAPH = 5,
    LP_ATTR_FLOATS = 6,
    LP_ATTR_INTS = 7,
    LP_ATTR_STRINGS = 8,
    LP_ATTR_TENSORS = 9,
    LP_ATTR_GRAPHS = 10,
    LP_ATTR_SPARSE_TENSOR = 11,
    LP_ATTR_SPARSE_TENSORS = 12,
    LP_ATTR_TYPE_PROTO = 13,
    LP_ATTR_TYPE_PROTOS = 14,
} lp_attr_type;

/* A tensor held by an attribute (Constant's `value`, ConstantOfShape's). */
typedef struct lp_tensor {
    lp_dtype dtype;
    lp_shape shape;
    lp_tensor_data data;
} lp_tensor;

typedef struct lp_attr {
    const char *name;
    lp_attr_type type;
    int64_t i;
    float f;
    const char *s;        /* STRING, NUL-terminated copy */
    size_t s_len;
    int n;                /* element count of INTS, FLOATS, STRINGS, TENSORS */
    int64_t *ints;
    float *floats;
    const char **strings;
    lp_tensor *tensor;    /* TENSOR */
    lp_tensor *tensors;   /* TENSORS */
    struct lp_graph *graph; /* GRAPH: a control-flow body (If's branches, Loop's and
                               Scan's body), owned by the enclosing graph */
} lp_attr;

typedef struct lp_kv {
    const char *key;
    const char *value;
} lp_kv;

/* Node metadata_props entries whose keys no stage reads stay as their
 * encoded bytes (NodeProto field 9 entries, tags included), which card
 * models copy verbatim: INLINE, or FILE (in the open model file). A run
 * comes after the first `before` entries of the node's `meta`. */
typedef struct lp_meta_run {
    int before;
    lp_tensor_data data;
} lp_meta_run;

/* A graph input's dim that the model writes as unknown: dim_value -1 (as
 * Paddle2ONNX does) or the literal dim_param "?". Each is an unknown of its
 * own, never equal to another, and loads as an unknown dim (size < 0, no
 * sym); the graph keeps where they are so that messages can say which axis
 * to give with --shapes and how the model writes it. */
typedef struct lp_written_dim {
    int32_t value; /* the graph input */
    int32_t axis;
    const char *as; /* "-1" or "'?'" */
} lp_written_dim;

/* ---- nodes and the graph ------------------------------------------------ */

typedef struct lp_node {
    const char *name;      /* may be "" as in the file */
    const char *op_type;
    const char *domain;    /* "" for the default domain */
    int32_t file_index;    /* position in the model file, for diagnostics */
    int n_inputs;
    int32_t *inputs;       /* value indices; -1 for an omitted optional input */
    int n_outputs;
    int32_t *outputs;      /* value indices; -1 for an omitted optional output */
    int n_attrs;
    lp_attr *attrs;
    int n_meta;
    lp_kv *meta;           /* metadata_props read by some stage (lp_node_meta_key_read) */
    int n_meta_runs;
    lp_meta_run *meta_runs; /* the other metadata_props, as bytes */
    int16_t op;            /* analysis's op id: 0 not looked up yet, -1 an op it has no rule for */
} lp_node;

typedef struct lp_opset {
    const char *domain;
    int64_t version;
} lp_opset;

typedef struct lp_graph {
    lp_arena *arena;
    const char *path;          /* the model file as given */
    const char *dir;           /* its folder, external data is resolved here */
    const char *name;
    const char *producer_name;
    const char *producer_version;
    int64_t ir_version;
    int64_t opset;             /* version of the default domain */
    int n_opsets;
    lp_opset *opsets;
    int n_values;
    lp_value *values;
    int n_nodes;
    lp_node *nodes;            /* in topological order */
    int n_inputs;
    int32_t *inputs;           /* graph inputs, initializers excluded */
    int n_outputs;
    int32_t *outputs;
    int n_meta;
    lp_kv *meta;               /* model metadata_props */
    struct lp_name_map *names; /* value name -> index */
    lp_data_file *file;        /* open model file for LP_DATA_FILE tensors, or NULL */
    int n_written_dims;        /* unknown input dims written -1 or "?" */
    int cap_written_dims;
    bool written_dims_sorted;  /* by (value, axis); lp_graph_dim_written sorts */
    lp_written_dim *written_dims;
    /* Control-flow bodies. A body is an lp_graph of its own values; a value
     * it reads from an enclosing scope is a capture (kind LP_VALUE_INPUT, not
     * a graph input) whose name there is outer_names[index] (NULL for the
     * body's other values). The main graph has depth 0 and no outer_names;
     * bodies are freed with the graph that owns them. */
    int depth;
    const char **outer_names;
    struct lp_graph *bodies;    /* first body this graph owns */
    struct lp_graph *next_body; /* next body of the same owner */
} lp_graph;

/* Control-flow bodies nest at most this deep (If inside If inside ...). */
#define LP_MAX_BODY_DEPTH 16

/* A new, empty body owned by `owner` (same path and folder); NULL if out of memory. */
lp_graph *lp_graph_new_body(lp_graph *owner);

lp_graph *lp_graph_new(const char *path);
void lp_graph_free(lp_graph *g);

/* Index of the value with this name, or -1. */
int32_t lp_graph_find_value(const lp_graph *g, const char *name);
/* Index of the value with this name, adding an empty one if new; -1 if out
 * of memory. */
int32_t lp_graph_intern_value(lp_graph *g, const char *name);

/* Attribute lookup in a plain array (a node's, or a kernel call's): the
 * attribute named `name`, or NULL; _int an INT's value, _float a FLOAT's or
 * an INT's, _string a STRING's, else the fallback. */
const lp_attr *lp_attrs_find(const lp_attr *attrs, int n, const char *name);
int64_t lp_attrs_int(const lp_attr *attrs, int n, const char *name, int64_t fallback);
float lp_attrs_float(const lp_attr *attrs, int n, const char *name, float fallback);
const char *lp_attrs_string(const lp_attr *attrs, int n, const char *name, const char *fallback);

const lp_attr *lp_node_attr(const lp_node *n, const char *name);
int64_t lp_node_attr_int(const lp_node *n, const char *name, int64_t fallback);
float lp_node_attr_float(const lp_node *n, const char *name, float fallback);
const char *lp_node_attr_string(const lp_node *n, const char *name, const char *fallback);
/* The value of a node's metadata_props entry, or NULL. Only the keys
 * lp_node_meta_key_read accepts are kept as strings by the loader; a stage
 * that reads another adds it there. */
const char *lp_node_meta(const lp_node *n, const char *key);
/* Whether a stage reads metadata key [key, key + len) of nodes. */
bool lp_node_meta_key_read(const char *key, size_t len);

/* Records that input `value`'s dim at `axis` is written `as` ("-1", "'?'");
 * false if out of memory. */
bool lp_graph_note_written_dim(lp_graph *g, int32_t value, int axis, const char *as);
/* How the model writes the unknown dim at `axis` of input `value` ("-1",
 * "'?'"), or NULL where it writes no such dim. Sorts the table on first use. */
const char *lp_graph_dim_written(lp_graph *g, int32_t value, int axis);

/* Orders g->nodes topologically (stable: file order where free). A cycle is
 * reported as an invalid model naming the nodes on it. */
lp_status lp_graph_sort(lp_graph *g, lp_diag *d);
/* Same, choosing among ready nodes the smallest priority[i] (0 <= p < 2^31)
 * first, then the earliest. order_out (n_nodes entries, may be NULL)
 * receives the old index of each new position. */
lp_status lp_graph_sort_by(lp_graph *g, const int32_t *priority, int32_t *order_out,
                           lp_diag *d);

/* Reports a problem at a node: "file: node 17 'conv3' (Conv): message". */
lp_status lp_node_error(lp_diag *d, lp_status s, const lp_node *n, const char *fmt, ...)
    LP_PRINTF(4, 5);
void lp_node_warn(lp_diag *d, const lp_node *n, const char *fmt, ...) LP_PRINTF(3, 4);

/* Bytes of a value's tensor at its own dtype; false if its shape or size is
 * not known. */
bool lp_value_bytes(const lp_value *v, uint64_t *bytes);

/* Checks the graph's invariants: indices in range, one producer per value
 * and producer fields that agree, nodes in topological order, graph inputs
 * and outputs that exist, dims that are numbers >= 0 or symbols. Stages run
 * it after they change the graph; a failure is an internal error naming the
 * first broken invariant. */
lp_status lp_graph_verify(const lp_graph *g, lp_diag *d);

/* ---- binding symbolic dims --------------------------------------------- */

/* Replaces the symbolic dim `name` by `value` in every value's shape, as ONNX
 * Runtime's free-dimension overrides do. Returns a usage error if no value
 * has that dim. */
lp_status lp_graph_bind_dim(lp_graph *g, const char *name, int64_t value, lp_diag *d);
/* Fixes a graph input's shape (trtexec's --shapes): rank and fixed dims must
 * agree; its symbolic dims are bound everywhere, its unknown dims (written
 * -1 or "?") on this input only. */
lp_status lp_graph_bind_input_shape(lp_graph *g, const char *input, int rank,
                                    const int64_t *dims, lp_diag *d);
/* Checks that every axis of graph input `value` has a size or a name; if
 * not, reports all of its unknown axes, how the model writes each, and the
 * --shapes option that fixes them, as LP_ERR_UNSUPPORTED. */
lp_status lp_graph_check_input_dims(lp_graph *g, int32_t value, lp_diag *d);

/* Fixes graph input `input` to a constant value (lpcc --value): the value's
 * dtype must be the input's, and its dims (rank entries) agree with the
 * input's fixed dims and bind its symbolic ones, as lp_graph_bind_input_shape
 * does; `bytes` (packed as raw_data, nbytes of them) are copied. The input is
 * then a constant and no longer a graph input. Usage errors otherwise. */
lp_status lp_graph_fix_input(lp_graph *g, const char *input, lp_dtype dtype, int rank,
                             const int64_t *dims, const void *bytes, uint64_t nbytes, lp_diag *d);

/* ---- dumps -------------------------------------------------------------- */

/* "float16[batch, 128, 768]": dtype and dims, '?' where unknown. */
void lp_value_print_type(const lp_value *v, FILE *out);
/* Stable, readable text: one line per value and per node. */
void lp_graph_dump_text(const lp_graph *g, FILE *out);
/* One JSON object (see README "JSON output"); returns a jansson json_t*
 * typed as void* so this header needs no jansson. Caller decrefs. */
void *lp_graph_to_json(const lp_graph *g);
/* The same document into w as it is built (json_out.h). */
typedef struct lp_json_out lp_json_out;
void lp_graph_write_json(const lp_graph *g, lp_json_out *w);

/* Formats a byte count as "1.50 GiB"; buf must hold 32 bytes. */
const char *lp_format_bytes(uint64_t bytes, char buf[32]);

#endif
