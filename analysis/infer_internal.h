/* infer_internal.h - what the shape rules of analysis/ share (private to
 * analysis/; the public entry point is lp_analysis_infer_shapes).
 *
 * Each op of ops.def has one rule, `lp_status lp_infer_<Op>(lp_infer *cx,
 * const lp_node *n)`, that reads its inputs' dtypes, shapes and (for small
 * integer tensors) known values, and writes its outputs' through
 * lp_infer_output / lp_infer_set_known. The driver calls a rule only when
 * every present input has a known rank, so rules may rely on that.
 *
 * Dims are numbers or symbolic monomials: "batch", "seq", "2*batch*seq"
 * (a coefficient and sorted factors joined by '*'). Products and exact
 * quotients of monomials stay symbolic; anything else (a sum of symbols, a
 * value computed at run time) becomes an unknown dim, which the driver
 * reports as an error naming the unbound symbols.
 *
 * Adding an op: the checklist at the top of ir/ops.def (one row, the
 * functions its columns name, a test, a line in COVERAGE.md).
 */
#ifndef LP_INFER_INTERNAL_H
#define LP_INFER_INTERNAL_H

#include "lp_analysis.h"
#include "lp_ops.h"

/* Tensors of at most this many elements have their values tracked. */
#define LP_FOLD_MAX_ELEMS 64

/* One element of a tracked tensor: a number (any sign), a symbolic
 * monomial (a dim that is not bound), a fraction v/den (only in float
 * tensors: a quotient such as float(W) / 2 on its way to Floor or Ceil),
 * or unknown. Rules that need integers test for LP_EL_NUM, so a fraction is
 * never read as one. */
typedef enum lp_elem_kind { LP_EL_UNKNOWN, LP_EL_NUM, LP_EL_SYM, LP_EL_FRAC } lp_elem_kind;

typedef struct lp_elem {
    lp_elem_kind kind;
    int64_t v;       /* LP_EL_NUM; the numerator of LP_EL_FRAC */
    const char *sym; /* LP_EL_SYM */
    int64_t den;     /* LP_EL_FRAC: > 1, in lowest terms */
} lp_elem;

/* The known values of a small integer tensor, row-major. */
typedef struct lp_sval {
    int n;
    lp_elem *e;
} lp_sval;

lp_elem lp_elem_num(int64_t v);
lp_elem lp_elem_from_dim(lp_dim d);
/* A dim from an element; negative numbers and unknowns give an unknown dim. */
lp_dim lp_elem_to_dim(lp_elem e);

typedef struct lp_infer {
    lp_graph *g;
    lp_diag *d;
    lp_sval **known; /* [n_known], NULL where values are not known */
    int n_known;     /* g->n_values; grows when an If is inlined */
    int nodes_cap;   /* room in g->nodes once an If was inlined (0: exactly n_nodes) */
    bool oom;
} lp_infer;

typedef lp_status (*lp_infer_rule)(lp_infer *cx, const lp_node *n);

/* Elementwise evaluations of known values (ops.def's fold column). */
typedef enum lp_fold_op {
    LP_FOLD_NONE, LP_FOLD_ID, LP_FOLD_NEG, LP_FOLD_ABS, LP_FOLD_SIGN, LP_FOLD_NOT,
    LP_FOLD_ADD, LP_FOLD_SUB, LP_FOLD_MUL, LP_FOLD_DIV, LP_FOLD_MOD, LP_FOLD_MAX, LP_FOLD_MIN,
    LP_FOLD_EQ, LP_FOLD_LT, LP_FOLD_LE, LP_FOLD_GT, LP_FOLD_GE, LP_FOLD_AND, LP_FOLD_OR,
    LP_FOLD_XOR, LP_FOLD_WHERE, LP_FOLD_CAST, LP_FOLD_FLOOR, LP_FOLD_CEIL, LP_FOLD_ROUND,
} lp_fold_op;

#define LP_OP(name, infer, fold, flops, workspace, shard, reads, emit) \
    lp_status infer(lp_infer *cx, const lp_node *n);
#include "ops.def"
#undef LP_OP

/* ---- dims (infer_dim.c) -------------------------------------------------- */

lp_dim lp_dim_num(int64_t v);
lp_dim lp_dim_unknown(void);
static inline bool lp_dim_is_num(lp_dim d) { return d.size >= 0; }
static inline bool lp_dim_is_unknown(lp_dim d) { return d.size < 0 && !d.sym; }
/* Same number, or the same symbol. */
bool lp_dim_same(lp_dim a, lp_dim b);
/* Exact arithmetic on dims; unknown when the result is not a number or a
 * monomial (or overflows). Division is exact: 6/4 is unknown. */
lp_dim lp_dim_mul(lp_arena *a, lp_dim x, lp_dim y);
lp_dim lp_dim_div(lp_arena *a, lp_dim x, lp_dim y);
lp_dim lp_dim_add(lp_dim x, lp_dim y);
lp_dim lp_dim_sub(lp_dim x, lp_dim y);
/* numpy broadcasting of two dims; false when both are different numbers
 * neither of which is 1. */
bool lp_dim_broadcast(lp_dim x, lp_dim y, lp_dim *out);
/* Product of all dims of a shape. */
lp_dim lp_dim_product(lp_arena *a, const lp_dim *dims, int n);
/* Calls fn(name, ctx) for each symbol factor of an unresolved dim. */
void lp_dim_for_each_symbol(lp_dim d, void (*fn)(const char *name, size_t len, void *ctx), void *ctx);

/* ---- access for rules (shape_infer.c) ------------------------------------ */

/* Input i, or NULL when absent or omitted. */
const lp_value *lp_infer_input(const lp_infer *cx, const lp_node *n, int i);
/* Writes output i's dtype and shape (dims copied into the arena); does
 * nothing for an omitted output. rank LP_RANK_UNKNOWN leaves dims unset. */
lp_status lp_infer_output(lp_infer *cx, const lp_node *n, int i, lp_dtype dt, int rank,
                          const lp_dim *dims);
/* An error naming `what` when `rank` exceeds LP_MAX_RANK; lp_infer_output
 * checks every output, rules check ranks read from the file (a shape
 * tensor's length) before sizing anything by them. */
lp_status lp_infer_check_rank(lp_infer *cx, const lp_node *n, int64_t rank, const char *what);
/* Output i is input j's dtype and shape. */
lp_status lp_infer_same(lp_infer *cx, const lp_node *n, int i, int j);
/* The known values of input i, or NULL. */
const lp_sval *lp_infer_known(const lp_infer *cx, const lp_node *n, int i);
/* Known values of input i when every element is a number (copied into
 * *vals, at most max of them); false otherwise. */
bool lp_infer_ints(const lp_infer *cx, const lp_node *n, int i, int64_t *vals, int max, int *count);
/* An int list given by attribute `attr` (older opsets) or input `input`
 * (newer): LP_LIST_ABSENT when neither is there, LP_LIST_UNKNOWN when the
 * input's values are not known at compile time. */
typedef enum lp_list_state { LP_LIST_ABSENT, LP_LIST_KNOWN, LP_LIST_UNKNOWN } lp_list_state;
lp_list_state lp_infer_int_list(const lp_infer *cx, const lp_node *n, const char *attr, int input,
                                int64_t *vals, int max, int *count);
/* Reads a float constant (float, double, float16 given inline) into vals;
 * false if not a constant or more than max elements. */
bool lp_infer_floats(const lp_infer *cx, const lp_node *n, int i, double *vals, int max, int *count);
/* Records output i's known values (copied). */
lp_status lp_infer_set_known(lp_infer *cx, const lp_node *n, int i, int count, const lp_elem *e);
/* An invalid-model error at the node. */
lp_status lp_infer_bad(lp_infer *cx, const lp_node *n, const char *fmt, ...) LP_PRINTF(3, 4);
/* Normalises a possibly negative axis into [0, rank); an error if outside. */
lp_status lp_infer_axis(lp_infer *cx, const lp_node *n, int64_t axis, int rank, int *out);
/* Temporary dims from the arena (NULL sets cx->oom). */
lp_dim *lp_infer_dims(lp_infer *cx, int count);

/* ---- control flow (fold_if.c) -------------------------------------------- */

/* If, Loop, Scan, or any node holding a graph attribute. */
bool lp_is_control_flow(const lp_node *n);
/* The name of its first graph attribute (what messages cite). */
const char *lp_control_flow_attr(const lp_node *n);
/* At g->nodes[at], a control-flow node: an If whose condition is known is
 * replaced by the nodes of the branch it selects (*folded; g->nodes, values
 * and cx->known grow). Otherwise *why (why_size bytes) says why it stays. */
lp_status lp_fold_if(lp_infer *cx, int at, bool *folded, char *why, size_t why_size);

/* ---- folding (fold.c) ---------------------------------------------------- */

/* Known values of a weight or constant small enough to track, or NULL. */
lp_sval *lp_fold_from_data(lp_arena *a, const lp_value *v);
/* Evaluates an elementwise op (Add, Equal, Where, Cast, ...) when all of
 * its inputs' values are known and its output shape is numeric; does
 * nothing otherwise. */
lp_status lp_fold_elementwise(lp_infer *cx, const lp_node *n, lp_fold_op op);
/* Output 0's values are input i's broadcast to output 0's shape (Expand). */
lp_status lp_fold_broadcast_copy(lp_infer *cx, const lp_node *n, int i);
/* Whether values of dtype t are tracked: integers and bool, and floats
 * element by element while they hold integers exactly. */
bool lp_fold_tracked(lp_dtype t);
/* Numeric dims and row-major strides of v when s covers it (s->n elements
 * for a shape of numbers); false otherwise. dims/strides hold LP_MAX_RANK. */
bool lp_fold_layout(const lp_value *v, const lp_sval *s, int64_t *dims, int64_t *strides);
/* Computes output i's known values element by element: pick gets the
 * output's multi-index and writes the element, or returns false to leave
 * the output unknown. Nothing is done unless output i has a numeric shape
 * of at most LP_FOLD_MAX_ELEMS elements and a tracked dtype. */
typedef bool (*lp_fold_pick)(const int64_t *idx, void *ctx, lp_elem *out);
lp_status lp_fold_map(lp_infer *cx, const lp_node *n, int i, lp_fold_pick pick, void *ctx);

#endif
