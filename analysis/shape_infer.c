/* Shape and type inference: one walk over the nodes in topological order,
 * one rule per op (ops.def), with the values of small integer tensors
 * (shape computations) carried along so Reshape / Expand / Slice targets
 * computed in the graph resolve to numbers or symbols.
 *
 * Policy on failure: inference goes on past a problem so that one run
 * reports all of them. An unsupported op leaves its outputs unknown and is
 * listed, with counts, in one error at the end; a dim that cannot be
 * resolved is reported at the node where it first appears (not again
 * downstream); a shape the model declares (value_info, graph outputs) that
 * disagrees with the inferred one is an error. Any of these makes the
 * result an error status. */
#include "infer_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct op_entry {
    const char *name;
    lp_infer_rule rule;
    lp_fold_op fold;
} op_entry;

static const op_entry op_table[] = {
#define LP_OP(name, infer, fold, flops, workspace, shard, reads, emit) {#name, infer, fold},
#include "ops.def"
#undef LP_OP
};

lp_analysis_options lp_analysis_defaults(void) {
    lp_analysis_options o;
    memset(&o, 0, sizeof o);
    o.deploy_dtype = LP_DT_UNDEFINED;
    o.layering = LP_LAYERS_AUTO;
    return o;
}

_Static_assert(sizeof op_table / sizeof op_table[0] == LP_OP_COUNT, "one op id per row of ops.def");

/* Rows of ops with no shape rule (Constant, control flow, ...): reported as
 * unsupported, as ops with no row are; never called. */
lp_status lp_infer_none(lp_infer *cx, const lp_node *n) {
    return lp_node_error(cx->d, LP_ERR_INTERNAL, n, "no shape rule for %s", n->op_type);
}

/* The node's row, or NULL where it has none or its row has no shape rule. */
static const op_entry *find_op(const lp_node *n) {
    int id = lp_node_op(n);
    return id > 0 && op_table[id - 1].rule != lp_infer_none ? &op_table[id - 1] : NULL;
}

/* ---- the rules' view of the graph ----------------------------------------- */

const lp_value *lp_infer_input(const lp_infer *cx, const lp_node *n, int i) {
    if (i < 0 || i >= n->n_inputs || n->inputs[i] < 0) return NULL;
    return &cx->g->values[n->inputs[i]];
}

lp_dim *lp_infer_dims(lp_infer *cx, int count) {
    lp_dim *d = lp_arena_array(cx->g->arena, (size_t)(count > 0 ? count : 1), sizeof *d);
    if (!d) cx->oom = true;
    return d;
}

lp_status lp_infer_check_rank(lp_infer *cx, const lp_node *n, int64_t rank, const char *what) {
    if (rank <= LP_MAX_RANK) return LP_OK;
    return lp_node_error(cx->d, LP_ERR_UNSUPPORTED, n, "%s would have rank %lld; lpcc supports ranks up to %d",
                         what, (long long)rank, LP_MAX_RANK);
}

lp_status lp_infer_output(lp_infer *cx, const lp_node *n, int i, lp_dtype dt, int rank,
                          const lp_dim *dims) {
    if (i >= n->n_outputs || n->outputs[i] < 0) return LP_OK;
    lp_value *v = &cx->g->values[n->outputs[i]];
    if (rank > LP_MAX_RANK) {
        char what[96];
        snprintf(what, sizeof what, "output %d ('%.60s')", i, v->name);
        return lp_infer_check_rank(cx, n, rank, what);
    }
    v->dtype = dt;
    v->shape.rank = rank;
    v->shape.dims = NULL;
    if (rank < 0) return LP_OK;
    v->shape.dims = lp_infer_dims(cx, rank);
    if (!v->shape.dims) return LP_ERR_INTERNAL;
    for (int k = 0; k < rank; k++) v->shape.dims[k] = dims[k];
    return LP_OK;
}

lp_status lp_infer_same(lp_infer *cx, const lp_node *n, int i, int j) {
    const lp_value *in = lp_infer_input(cx, n, j);
    if (!in) return lp_infer_bad(cx, n, "input %d is required", j);
    return lp_infer_output(cx, n, i, in->dtype, in->shape.rank, in->shape.dims);
}

const lp_sval *lp_infer_known(const lp_infer *cx, const lp_node *n, int i) {
    if (i < 0 || i >= n->n_inputs || n->inputs[i] < 0) return NULL;
    return cx->known[n->inputs[i]];
}

bool lp_infer_ints(const lp_infer *cx, const lp_node *n, int i, int64_t *vals, int max, int *count) {
    const lp_sval *s = lp_infer_known(cx, n, i);
    if (!s || s->n > max) return false;
    for (int k = 0; k < s->n; k++) {
        if (s->e[k].kind != LP_EL_NUM) return false;
        vals[k] = s->e[k].v;
    }
    *count = s->n;
    return true;
}

lp_list_state lp_infer_int_list(const lp_infer *cx, const lp_node *n, const char *attr, int input,
                                int64_t *vals, int max, int *count) {
    const lp_attr *a = attr ? lp_node_attr(n, attr) : NULL;
    if (a && a->type == LP_ATTR_INTS) {
        if (a->n > max) return LP_LIST_UNKNOWN;
        for (int k = 0; k < a->n; k++) vals[k] = a->ints[k];
        *count = a->n;
        return LP_LIST_KNOWN;
    }
    if (!lp_infer_input(cx, n, input)) return LP_LIST_ABSENT;
    return lp_infer_ints(cx, n, input, vals, max, count) ? LP_LIST_KNOWN : LP_LIST_UNKNOWN;
}

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return h >> 15 ? -v : v;
}

bool lp_infer_floats(const lp_infer *cx, const lp_node *n, int i, double *vals, int max, int *count) {
    const lp_value *v = lp_infer_input(cx, n, i);
    uint64_t numel;
    if (!v || v->data.where != LP_DATA_INLINE || !lp_shape_numel(&v->shape, &numel) || numel > (uint64_t)max)
        return false;
    int bytes = lp_dtype_bits(v->dtype) / 8;
    if (bytes <= 0 || v->data.nbytes < numel * (uint64_t)bytes) return false;
    for (uint64_t k = 0; k < numel; k++) {
        const uint8_t *p = v->data.bytes + k * (uint64_t)bytes;
        uint64_t u = 0;
        for (int b = 0; b < bytes; b++) u |= (uint64_t)p[b] << (8 * b);
        if (v->dtype == LP_DT_FLOAT) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, sizeof f);
            vals[k] = f;
        } else if (v->dtype == LP_DT_DOUBLE) {
            memcpy(&vals[k], &u, sizeof u);
        } else if (v->dtype == LP_DT_FLOAT16) {
            vals[k] = half_to_double((uint16_t)u);
        } else {
            return false;
        }
    }
    *count = (int)numel;
    return true;
}

lp_status lp_infer_set_known(lp_infer *cx, const lp_node *n, int i, int count, const lp_elem *e) {
    if (i >= n->n_outputs || n->outputs[i] < 0 || count > LP_FOLD_MAX_ELEMS) return LP_OK;
    lp_sval *s = lp_arena_alloc(cx->g->arena, sizeof *s);
    lp_elem *copy = lp_arena_array(cx->g->arena, (size_t)(count ? count : 1), sizeof *copy);
    if (!s || !copy) {
        cx->oom = true;
        return LP_ERR_INTERNAL;
    }
    memcpy(copy, e, (size_t)count * sizeof *e);
    s->n = count;
    s->e = copy;
    cx->known[n->outputs[i]] = s;
    return LP_OK;
}

lp_status lp_infer_bad(lp_infer *cx, const lp_node *n, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lp_node_error(cx->d, LP_ERR_INVALID_MODEL, n, "%s", msg);
}

lp_status lp_infer_axis(lp_infer *cx, const lp_node *n, int64_t axis, int rank, int *out) {
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank)
        return lp_infer_bad(cx, n, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int)a;
    return LP_OK;
}

/* ---- formatting and symbol lists for messages ------------------------------ */

static void format_type(char *buf, size_t size, lp_dtype dt, const lp_shape *s) {
    size_t used = (size_t)snprintf(buf, size, "%s", dt ? lp_dtype_name(dt) : "?");
    if (s->rank < 0) {
        snprintf(buf + (used < size ? used : size - 1), size - (used < size ? used : size - 1), "[?]");
        return;
    }
    for (int k = 0; k < s->rank && used < size; k++) {
        const lp_dim *d = &s->dims[k];
        const char *sep = k ? ", " : "[";
        if (d->size >= 0)
            used += (size_t)snprintf(buf + used, size - used, "%s%lld", sep, (long long)d->size);
        else
            used += (size_t)snprintf(buf + used, size - used, "%s%s", sep, d->sym ? d->sym : "?");
    }
    if (used < size) snprintf(buf + used, size - used, s->rank ? "]" : "[]");
}

typedef struct symbol_list {
    char text[256];
    size_t used;
} symbol_list;

static void symbol_add(const char *name, size_t len, void *ctx) {
    symbol_list *l = ctx;
    /* skip names already listed */
    for (const char *p = l->text; (p = strstr(p, name)) != NULL; p++)
        if ((p == l->text || p[-1] == ' ') && (p[len] == ',' || p[len] == '\0') &&
            strncmp(p, name, len) == 0)
            return;
    if (l->used + len + 3 >= sizeof l->text) return;
    if (l->used) {
        memcpy(l->text + l->used, ", ", 2);
        l->used += 2;
    }
    memcpy(l->text + l->used, name, len);
    l->used += len;
    l->text[l->used] = '\0';
}

static void symbols_of_shape(const lp_shape *s, symbol_list *l) {
    for (int k = 0; k < s->rank; k++) lp_dim_for_each_symbol(s->dims[k], symbol_add, l);
}

/* ---- checks after each node ------------------------------------------------ */

static bool shape_complete(const lp_shape *s) {
    if (s->rank < 0) return false;
    for (int k = 0; k < s->rank; k++)
        if (lp_dim_is_unknown(s->dims[k])) return false;
    return true;
}

/* Merges what the model declares for an output with what was inferred:
 * numbers must agree; the more specific of the two is kept. */
static lp_status merge_declared(lp_infer *cx, const lp_node *n, lp_value *v, lp_dtype ddt,
                                lp_shape ds) {
    char want[256], got[256];
    bool conflict = ddt && v->dtype && ddt != v->dtype;
    if (!v->dtype) v->dtype = ddt;
    if (ds.rank >= 0 && v->shape.rank >= 0) {
        conflict |= ds.rank != v->shape.rank;
        for (int k = 0; !conflict && k < ds.rank; k++) {
            lp_dim dd = ds.dims[k], *id = &v->shape.dims[k];
            if (lp_dim_is_num(dd) && lp_dim_is_num(*id) && dd.size != id->size) conflict = true;
            else if (lp_dim_is_num(dd) || lp_dim_is_unknown(*id)) *id = dd;
        }
    } else if (ds.rank >= 0) {
        v->shape = ds;
    }
    if (!conflict) return LP_OK;
    format_type(want, sizeof want, ddt, &ds);
    format_type(got, sizeof got, v->dtype, &v->shape);
    return lp_node_error(cx->d, LP_ERR_INVALID_MODEL, n,
                         "output '%s' is declared %s in the model but inferred as %s", v->name, want,
                         got);
}

/* Reports an output dim that could not be resolved although every input
 * was: this node is where the information is lost. */
static lp_status check_resolved(lp_infer *cx, const lp_node *n) {
    for (int i = 0; i < n->n_inputs; i++) {
        const lp_value *in = lp_infer_input(cx, n, i);
        if (in && !shape_complete(&in->shape)) return LP_OK;
    }
    for (int i = 0; i < n->n_outputs; i++) {
        if (n->outputs[i] < 0) continue;
        const lp_value *v = &cx->g->values[n->outputs[i]];
        if (shape_complete(&v->shape)) continue;
        symbol_list l = {.used = 0};
        l.text[0] = '\0';
        for (int k = 0; k < n->n_inputs; k++) {
            const lp_value *in = lp_infer_input(cx, n, k);
            const lp_sval *s = lp_infer_known(cx, n, k);
            if (in) symbols_of_shape(&in->shape, &l);
            for (int e = 0; s && e < s->n; e++)
                if (s->e[e].kind == LP_EL_SYM) lp_dim_for_each_symbol(lp_elem_to_dim(s->e[e]), symbol_add, &l);
        }
        char got[256];
        format_type(got, sizeof got, v->dtype, &v->shape);
        if (l.used)
            return lp_node_error(cx->d, LP_ERR_UNSUPPORTED, n,
                                 "the shape of output '%s' (%s) cannot be resolved: it depends on "
                                 "the unbound dims %s (bind them with --dim NAME=VALUE)",
                                 v->name, got, l.text);
        return lp_node_error(cx->d, LP_ERR_UNSUPPORTED, n,
                             "the shape of output '%s' (%s) depends on tensor values known only "
                             "at run time", v->name, got);
    }
    return LP_OK;
}

/* ---- unsupported ops, reported together --------------------------------------- */

typedef struct unsupported {
    const lp_node *first;
    int count;
} unsupported;

typedef struct unsupported_list {
    unsupported *items;
    int n, cap;
} unsupported_list;

static bool same_op(const lp_node *a, const lp_node *b) {
    return strcmp(a->op_type, b->op_type) == 0 && strcmp(a->domain, b->domain) == 0;
}

static bool unsupported_add(unsupported_list *l, const lp_node *n) {
    for (int i = 0; i < l->n; i++)
        if (same_op(l->items[i].first, n)) {
            l->items[i].count++;
            return true;
        }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        unsupported *p = realloc(l->items, (size_t)cap * sizeof *p);
        if (!p) return false;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n].first = n;
    l->items[l->n].count = 1;
    l->n++;
    return true;
}

static lp_status unsupported_report(const unsupported_list *l, lp_diag *d) {
    char text[768];
    size_t used = 0;
    text[0] = '\0';
    for (int i = 0; i < l->n && used < sizeof text; i++) {
        const lp_node *n = l->items[i].first;
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%s%s%s x%d (first: node %d '%s')",
                                 i ? ", " : "", n->domain, n->domain[0] ? "." : "", n->op_type,
                                 l->items[i].count, n->file_index, n->name);
    }
    return lp_error(d, LP_ERR_UNSUPPORTED,
                    "shape inference does not support %d op type%s: %s", l->n, l->n == 1 ? "" : "s",
                    text);
}

/* ---- the walk ------------------------------------------------------------------ */

/* A value of a rank above LP_MAX_RANK (declared in the model) is refused at
 * its first reader, before any rule sizes arrays by it. */
static lp_status check_input_ranks(lp_infer *cx, const lp_node *n) {
    for (int i = 0; i < n->n_inputs; i++) {
        const lp_value *in = lp_infer_input(cx, n, i);
        if (in && in->shape.rank > LP_MAX_RANK)
            return lp_node_error(cx->d, LP_ERR_UNSUPPORTED, n,
                                 "input %d ('%s') has rank %d; lpcc supports ranks up to %d", i, in->name,
                                 in->shape.rank, LP_MAX_RANK);
    }
    return LP_OK;
}

static bool inputs_ready(const lp_infer *cx, const lp_node *n) {
    for (int i = 0; i < n->n_inputs; i++) {
        const lp_value *in = lp_infer_input(cx, n, i);
        if (in && (in->shape.rank < 0 || !in->dtype)) return false;
    }
    return true;
}

static lp_status infer_node(lp_infer *cx, const lp_node *n, const op_entry *op) {
    int no = n->n_outputs;
    lp_dtype *ddt = malloc((size_t)(no ? no : 1) * sizeof *ddt);
    lp_shape *ds = malloc((size_t)(no ? no : 1) * sizeof *ds);
    if (!ddt || !ds) {
        free(ddt);
        free(ds);
        return lp_error(cx->d, LP_ERR_INTERNAL, "out of memory");
    }
    for (int i = 0; i < no; i++) {
        if (n->outputs[i] < 0) continue;
        lp_value *v = &cx->g->values[n->outputs[i]];
        ddt[i] = v->dtype;
        ds[i] = v->shape;
        v->dtype = LP_DT_UNDEFINED;
        v->shape.rank = LP_RANK_UNKNOWN;
        v->shape.dims = NULL;
    }
    /* every operator of the standard domains has at least one output */
    lp_status st = no > 0 ? op->rule(cx, n) : lp_infer_bad(cx, n, "the node has no outputs");
    if (st == LP_OK && op->fold != LP_FOLD_NONE) st = lp_fold_elementwise(cx, n, op->fold);
    if (cx->oom || st == LP_ERR_INTERNAL) st = lp_error(cx->d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < no; i++) {
        if (n->outputs[i] < 0) continue;
        lp_value *v = &cx->g->values[n->outputs[i]];
        if (st != LP_OK) {
            v->dtype = ddt[i];
            v->shape = ds[i];
            cx->known[n->outputs[i]] = NULL;
            continue;
        }
        lp_status ms = merge_declared(cx, n, v, ddt[i], ds[i]);
        if (st == LP_OK) st = ms;
    }
    free(ddt);
    free(ds);
    if (st == LP_OK) st = check_resolved(cx, n);
    return st;
}

static lp_status check_graph_inputs(lp_infer *cx) {
    lp_status first = LP_OK;
    for (int i = 0; i < cx->g->n_inputs; i++) {
        const lp_value *v = &cx->g->values[cx->g->inputs[i]];
        lp_status st = LP_OK;
        if (v->shape.rank < 0)
            st = lp_error(cx->d, LP_ERR_UNSUPPORTED,
                          "input '%s' has no shape; give one with --shapes %s:AxBx..", v->name, v->name);
        else if (v->shape.rank > LP_MAX_RANK)
            st = lp_error(cx->d, LP_ERR_UNSUPPORTED, "input '%s' has rank %d; lpcc supports ranks up to %d",
                          v->name, v->shape.rank, LP_MAX_RANK);
        if (st == LP_OK) st = lp_graph_check_input_dims(cx->g, cx->g->inputs[i], cx->d);
        if (first == LP_OK) first = st;
    }
    return first;
}

/* The known values of one inference: an array that grows when an If is
 * inlined (lp_fold_if adds values), kept across walks. */
typedef struct known_table {
    lp_sval **v;
    int n;
    bool inlined; /* a walk replaced an If by its branch */
} known_table;

/* Where a walk first failed, kept by value: a later walk may inline an If
 * and move the nodes. */
typedef struct bad_node {
    bool set;
    int64_t file_index;
    const char *name, *op_type; /* arena strings */
} bad_node;

/* One walk over the nodes; *first_bad (when given) is the first node whose
 * inference failed. */
static lp_status infer_walk(lp_graph *g, lp_diag *d, known_table *kt, bad_node *first_bad) {
    lp_infer cx = {.g = g, .d = d, .known = kt->v, .n_known = kt->n};
    for (int i = 0; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        cx.known[i] = v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT ? lp_fold_from_data(g->arena, v)
                                                                              : NULL;
    }
    unsupported_list unsup = {0};
    lp_status first = check_graph_inputs(&cx);
    int n_control = 0;
    bool inlined = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        const op_entry *op = find_op(n);
        lp_status st = LP_OK;
        if (lp_is_control_flow(n)) {
            /* an If that folds is replaced by its branch, walked next; every
             * other control-flow node is reported on a line of its own */
            bool folded = false;
            char why[512];
            st = lp_fold_if(&cx, i, &folded, why, sizeof why);
            if (st == LP_OK && folded) {
                inlined = true;
                i--;
                continue;
            }
            if (st == LP_OK) {
                n_control++;
                st = lp_node_error(d, LP_ERR_UNSUPPORTED, n, "control-flow subgraph (attribute '%s') is not "
                                   "supported yet: %s", lp_control_flow_attr(n), why);
            }
        } else if (!op) {
            if (!unsupported_add(&unsup, n)) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        } else if ((st = check_input_ranks(&cx, n)) == LP_OK && inputs_ready(&cx, n)) {
            st = infer_node(&cx, n, op);
        }
        if (st != LP_OK && first_bad && !first_bad->set)
            *first_bad = (bad_node){true, n->file_index, n->name, n->op_type};
        if (first == LP_OK) first = st;
        if (st == LP_ERR_INTERNAL) break;
    }
    if (unsup.n) {
        lp_status st = unsupported_report(&unsup, d);
        if (first == LP_OK) first = st;
    }
    if (n_control) {
        lp_status st = lp_error(d, LP_ERR_UNSUPPORTED,
                                "%d control-flow node%s cannot be compiled (listed above): an If folds "
                                "only when its condition is known at compile time; Loop and Scan are "
                                "not supported", n_control, n_control == 1 ? "" : "s");
        if (first == LP_OK) first = st;
    }
    if (inlined) lp_analysis_assign_ops(g);
    free(unsup.items);
    kt->v = cx.known;
    kt->n = cx.n_known;
    kt->inlined |= inlined;
    return first;
}

/* ---- a dim the exporter fixed to 1 ------------------------------------------------
 * torch.export specialises a dim whose example size is 1: the graph input
 * keeps its name (`batch`) but every shape declared inside, and the Reshape
 * targets, say 1. Bound to anything else, such a model fails at dozens of
 * nodes. When inference fails with a named dim bound to a size other than
 * 1, it is tried once more, silently, with that dim at 1; if the model is
 * then consistent, the one error says so instead of the dozens. */

typedef struct saved_type {
    lp_dtype dtype;
    lp_shape shape;
} saved_type;

/* Sets every dim named `sym` (as binding left it: a size and its name) to v. */
static void set_named_dim(lp_graph *g, const char *sym, int64_t v) {
    for (int i = 0; i < g->n_values; i++) {
        lp_shape *s = &g->values[i].shape;
        for (int k = 0; k < s->rank; k++)
            if (s->dims[k].sym && s->dims[k].size >= 0 && strcmp(s->dims[k].sym, sym) == 0) s->dims[k].size = v;
    }
}

/* The first n values as they were saved (values an inlined If added after
 * them keep what the walk gave them: the walk again gives the same). */
static void restore_types(lp_graph *g, const saved_type *saved, int n) {
    for (int i = 0; i < n; i++) {
        g->values[i].dtype = saved[i].dtype;
        g->values[i].shape = saved[i].shape;
    }
}

/* The named dims of the graph inputs bound to a size other than 1, each once. */
static int bound_dims(const lp_graph *g, const lp_dim **out) {
    int n = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        const lp_shape *s = &g->values[g->inputs[i]].shape;
        for (int k = 0; k < s->rank; k++) {
            const lp_dim *dm = &s->dims[k];
            bool seen = false;
            if (!dm->sym || dm->size < 0 || dm->size == 1) continue;
            for (int j = 0; j < n && !seen; j++) seen = strcmp(out[j]->sym, dm->sym) == 0;
            if (!seen) out[n++] = dm;
        }
    }
    return n;
}

static int count_input_dims(const lp_graph *g) {
    int n = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        int r = g->values[g->inputs[i]].shape.rank;
        n += r > 0 ? r : 0;
    }
    return n;
}

/* Returns LP_OK with *found NULL when the failure is not a dim fixed to 1. */
static lp_status find_fixed_dim(lp_graph *g, known_table *kt, const saved_type *saved, int n_saved,
                                const lp_dim **cand, int n_cand, const lp_dim **found) {
    *found = NULL;
    for (int c = 0; c < n_cand && !*found; c++) {
        lp_diag silent = lp_diag_make(NULL);
        silent.sink = NULL;
        /* cand[c] points into a graph input's dims, which the walk keeps */
        const char *sym = cand[c]->sym;
        int64_t size = cand[c]->size;
        restore_types(g, saved, n_saved);
        set_named_dim(g, sym, 1);
        lp_status st = infer_walk(g, &silent, kt, NULL);
        restore_types(g, saved, n_saved);
        set_named_dim(g, sym, size);
        if (st == LP_ERR_INTERNAL) return st;
        if (st == LP_OK) *found = cand[c];
    }
    return LP_OK;
}

/* Every activation of an integer or bool type whose elements the walk knew
 * as numbers keeps its bytes (lp_value.known): the value of exporters'
 * Shape -> Gather -> Concat arithmetic once dims are bound. Graph outputs
 * and values made inside control flow are left to be computed. */
static lp_status keep_known(lp_graph *g, const known_table *kt, lp_diag *d) {
    for (int i = 0; i < g->n_values && i < kt->n; i++) {
        lp_value *v = &g->values[i];
        const lp_sval *k = kt->v[i];
        if (!k || v->kind != LP_VALUE_ACTIVATION || v->is_graph_output || v->producer < 0 ||
            lp_dtype_is_float(v->dtype) || !lp_fold_tracked(v->dtype))
            continue;
        uint64_t numel = 0;
        if (!lp_shape_numel(&v->shape, &numel) || numel != (uint64_t)k->n) continue;
        bool all = true;
        for (int e = 0; e < k->n && all; e++) all = k->e[e].kind == LP_EL_NUM;
        int bytes = lp_dtype_bits(v->dtype) / 8;
        if (!all || bytes <= 0 || bytes > 8 || lp_dtype_bits(v->dtype) % 8) continue;
        uint8_t *p = lp_arena_alloc(g->arena, numel * (uint64_t)bytes + 1);
        if (!p) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        for (uint64_t e = 0; e < numel; e++) {
            uint64_t u = (uint64_t)k->e[e].v;
            if (v->dtype == LP_DT_BOOL) u = u != 0;
            for (int b = 0; b < bytes; b++) p[e * (uint64_t)bytes + (uint64_t)b] = (uint8_t)(u >> (8 * b));
        }
        v->known = p;
        v->known_nbytes = numel * (uint64_t)bytes;
    }
    return LP_OK;
}

lp_status lp_analysis_infer_shapes(lp_graph *g, const lp_analysis_options *opt, lp_diag *d) {
    (void)opt; /* dtypes are inferred as the model has them; deploy_dtype is for sizes */
    lp_analysis_assign_ops(g);
    known_table kt = {.v = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *kt.v), .n = g->n_values};
    int n_dims = count_input_dims(g), n_saved = g->n_values;
    const lp_dim **cand = malloc((size_t)(n_dims ? n_dims : 1) * sizeof *cand);
    saved_type *saved = malloc((size_t)(n_saved ? n_saved : 1) * sizeof *saved);
    lp_status st;
    if (!kt.v || !cand || !saved) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        goto done;
    }
    int n_cand = bound_dims(g, cand);
    if (n_cand == 0) {
        st = infer_walk(g, d, &kt, NULL);
        goto done;
    }
    for (int i = 0; i < n_saved; i++) saved[i] = (saved_type){g->values[i].dtype, g->values[i].shape};
    lp_diag silent = lp_diag_make(NULL);
    silent.sink = NULL;
    bad_node first_bad = {0};
    st = infer_walk(g, &silent, &kt, &first_bad);
    if (st == LP_OK || st == LP_ERR_INTERNAL) {
        if (st == LP_ERR_INTERNAL) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        goto done;
    }
    /* a graph an If was inlined into is not walked with other dims: its
     * branch was chosen with these */
    const lp_dim *fixed = NULL;
    if (!kt.inlined && (st = find_fixed_dim(g, &kt, saved, n_saved, cand, n_cand, &fixed)) != LP_OK) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        goto done;
    }
    if (fixed) {
        char where[320] = "";
        if (first_bad.set)
            snprintf(where, sizeof where, " (first seen at node %d '%.100s' (%.60s))", (int)first_bad.file_index,
                     first_bad.name, first_bad.op_type);
        st = lp_error(d, LP_ERR_INVALID_MODEL,
                      "the model fixes the dim '%s' to 1%s, so %s=%lld cannot hold; re-export with an example "
                      "%s > 1 or bind %s=1",
                      fixed->sym, where, fixed->sym, (long long)fixed->size, fixed->sym, fixed->sym);
        goto done;
    }
    /* not that: the walk again, reporting as it goes */
    restore_types(g, saved, n_saved);
    st = infer_walk(g, d, &kt, NULL);
done:
    if (st == LP_OK) st = keep_known(g, &kt, d);
    free(kt.v);
    free(cand);
    free(saved);
    return st;
}
