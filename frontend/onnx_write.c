/* lp_graph slice -> ONNX model file. The selected nodes, their weights and
 * the boundary values are converted into protobuf-c messages that live in a
 * scratch arena and packed straight into a file of an output folder's
 * staging area (lp_outdir.h), which its commit moves into place. */
#define _GNU_SOURCE
#include "lp_frontend.h"
#include "onnx.pb-c.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a value is to the sub-model being written. */
enum {
    ROLE_NONE = 0,
    ROLE_INPUT,       /* a graph input of the sub-model */
    ROLE_PRODUCED,    /* output of a selected node */
    ROLE_INITIALIZER, /* weight or constant the sub-model carries */
};

typedef struct writer {
    const lp_graph *g;
    lp_diag *d;
    lp_arena *a;          /* every protobuf message and string below */
    const char *path;     /* the final path, for messages */
    lp_outdir *od;        /* the folder the files are created in */
    const char *name;
    uint8_t *role;        /* [g->n_values] */

    /* External weights are re-referenced in place when the sub-model lands
     * in the model's own folder; otherwise they are copied into a sidecar
     * file next to it, created on first use. */
    bool same_dir;
    const char *data_location; /* sidecar name, relative to the output folder */
    const char *data_path;
    FILE *data;
    uint64_t data_size;

    size_t n_init, cap_init;
    Onnx__TensorProto **init;

    /* Tensors still in the model file (LP_DATA_FILE): their raw_data points
     * at the lp_tensor_data itself, and the file sink streams the bytes
     * from the model file when protobuf-c appends that pointer. Sorted by
     * address before packing. */
    size_t n_lazy, cap_lazy;
    struct lazy_tensor *lazy;
} writer;

typedef struct lazy_tensor {
    const lp_tensor_data *t; /* first: the sort and search key */
    const char *name;
} lazy_tensor;

#define OOM(w) lp_error((w)->d, LP_ERR_INTERNAL, "out of memory while writing '%s'", (w)->path)

/* protobuf-c's fields are not const; the writer never modifies through them */
static char *pb_str(const char *s) { return (char *)(s ? s : ""); }

/* Whether two folders are the same directory on disk. */
static bool same_folder(const char *x, const char *y) {
    struct stat sx, sy;
    if (stat(x, &sx) != 0 || stat(y, &sy) != 0) return false;
    return sx.st_dev == sy.st_dev && sx.st_ino == sy.st_ino;
}

/* ---- checking the selection ------------------------------------------------ */

static lp_status check_value_index(writer *w, int32_t v, const char *what) {
    if (v < 0 || v >= w->g->n_values)
        return lp_error(w->d, LP_ERR_USAGE, "writing '%s': %s %" PRId32 " is not a value of the "
                        "graph (it has %d)", w->path, what, v, w->g->n_values);
    return LP_OK;
}

static bool carries_data(const lp_value *v) {
    return v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT;
}

static lp_status mark_inputs(writer *w, const int32_t *inputs, int n) {
    for (int i = 0; i < n; i++) {
        lp_status st = check_value_index(w, inputs[i], "input");
        if (st != LP_OK) return st;
        const lp_value *v = &w->g->values[inputs[i]];
        if (carries_data(v))
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': input '%s' is a weight; weights "
                            "travel as initializers, not as inputs", w->path, v->name);
        if (w->role[inputs[i]] != ROLE_NONE)
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': input '%s' is listed twice",
                            w->path, v->name);
        w->role[inputs[i]] = ROLE_INPUT;
    }
    return LP_OK;
}

/* Walks the nodes in the given order: each must read only sub-model inputs,
 * weights, or values produced by a node before it. */
static lp_status mark_nodes(writer *w, const int *nodes, int n) {
    const lp_graph *g = w->g;
    for (int i = 0; i < n; i++) {
        if (nodes[i] < 0 || nodes[i] >= g->n_nodes)
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': node %d is not a node of the "
                            "graph (it has %d)", w->path, nodes[i], g->n_nodes);
        const lp_node *node = &g->nodes[nodes[i]];
        for (int k = 0; k < node->n_inputs; k++) {
            int32_t v = node->inputs[k];
            if (v < 0) continue;
            if (w->role[v] == ROLE_NONE && carries_data(&g->values[v]))
                w->role[v] = ROLE_INITIALIZER;
            if (w->role[v] == ROLE_NONE)
                return lp_node_error(w->d, LP_ERR_USAGE, node,
                                     "writing '%s': reads '%s', which is neither an input of "
                                     "the sub-model, a weight, nor produced by an earlier node "
                                     "of it", w->path, g->values[v].name);
        }
        for (int k = 0; k < node->n_outputs; k++) {
            int32_t v = node->outputs[k];
            if (v < 0) continue;
            if (w->role[v] != ROLE_NONE)
                return lp_node_error(w->d, LP_ERR_USAGE, node,
                                     "writing '%s': output '%s' is already an input of the "
                                     "sub-model or produced twice (node listed twice?)",
                                     w->path, g->values[v].name);
            w->role[v] = ROLE_PRODUCED;
        }
    }
    return LP_OK;
}

static lp_status mark_outputs(writer *w, const int32_t *outputs, int n) {
    for (int i = 0; i < n; i++) {
        lp_status st = check_value_index(w, outputs[i], "output");
        if (st != LP_OK) return st;
        const lp_value *v = &w->g->values[outputs[i]];
        if (w->role[outputs[i]] == ROLE_NONE && carries_data(v))
            w->role[outputs[i]] = ROLE_INITIALIZER;
        if (w->role[outputs[i]] == ROLE_NONE)
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': output '%s' is not computed by "
                            "the selected nodes", w->path, v->name);
        for (int j = 0; j < i; j++)
            if (outputs[j] == outputs[i])
                return lp_error(w->d, LP_ERR_USAGE, "writing '%s': output '%s' is listed "
                                "twice", w->path, v->name);
    }
    return LP_OK;
}

/* ---- value types -------------------------------------------------------------- */

static Onnx__TensorShapeProto *shape_to_proto(writer *w, const lp_shape *s) {
    Onnx__TensorShapeProto *sp = lp_arena_alloc(w->a, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims =
        lp_arena_array(w->a, s->rank ? (size_t)s->rank : 1, sizeof *dims);
    if (!sp || !dims) return NULL;
    onnx__tensor_shape_proto__init(sp);
    for (int i = 0; i < s->rank; i++) {
        Onnx__TensorShapeProto__Dimension *dm = lp_arena_alloc(w->a, sizeof *dm);
        if (!dm) return NULL;
        onnx__tensor_shape_proto__dimension__init(dm);
        if (s->dims[i].size >= 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = s->dims[i].size;
        } else if (s->dims[i].sym) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = pb_str(s->dims[i].sym);
        } /* unknown: a dimension with neither field */
        dims[i] = dm;
    }
    sp->n_dim = (size_t)s->rank;
    sp->dim = dims;
    return sp;
}

/* A tensor ValueInfo: element type always, shape when the rank is known. */
static lp_status value_to_proto(writer *w, const lp_value *v, Onnx__ValueInfoProto **out) {
    Onnx__ValueInfoProto *vi = lp_arena_alloc(w->a, sizeof *vi);
    Onnx__TypeProto *tp = lp_arena_alloc(w->a, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = lp_arena_alloc(w->a, sizeof *tt);
    if (!vi || !tp || !tt) return OOM(w);
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = true;
    tt->elem_type = (int32_t)v->dtype;
    if (v->shape.rank >= 0 && !(tt->shape = shape_to_proto(w, &v->shape))) return OOM(w);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = pb_str(v->name);
    vi->type = tp;
    *out = vi;
    return LP_OK;
}

static lp_status boundary_to_proto(writer *w, int32_t idx, const char *role,
                                   Onnx__ValueInfoProto **out) {
    const lp_value *v = &w->g->values[idx];
    if (v->dtype == LP_DT_UNDEFINED)
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "writing '%s': the element type of %s '%s' is "
                        "not known; infer shapes before writing sub-models", w->path, role,
                        v->name);
    return value_to_proto(w, v, out);
}

/* ---- tensors -------------------------------------------------------------------- */

static Onnx__StringStringEntryProto *kv_to_proto(writer *w, const char *key, const char *value) {
    Onnx__StringStringEntryProto *e = lp_arena_alloc(w->a, sizeof *e);
    if (!e) return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = pb_str(key);
    e->value = pb_str(value);
    return e;
}

static lp_status open_sidecar(writer *w) {
    w->data = lp_outdir_create(w->od, w->data_location, w->d);
    return w->data ? LP_OK : LP_ERR_OUTPUT;
}

/* Appends the external bytes of `t` to the sidecar file; *offset is where
 * they start there. */
static lp_status copy_external(writer *w, const char *name, const lp_tensor_data *t,
                               uint64_t *offset) {
    lp_status st;
    if (!w->data && (st = open_sidecar(w)) != LP_OK) return st;
    int fd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lp_error(w->d, LP_ERR_INVALID_MODEL, "writing '%s': cannot open external data "
                        "'%s' of '%s': %s", w->path, t->location, name, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return OOM(w);
    }
    st = LP_OK;
    for (uint64_t done = 0; done < t->nbytes && st == LP_OK;) {
        size_t want = t->nbytes - done > CHUNK ? CHUNK : (size_t)(t->nbytes - done);
        ssize_t got = pread(fd, buf, want, (off_t)(t->offset + done));
        if (got <= 0)
            st = lp_error(w->d, LP_ERR_INVALID_MODEL, "writing '%s': external data '%s' ended "
                          "early reading '%s'", w->path, t->location, name);
        else if (fwrite(buf, 1, (size_t)got, w->data) != (size_t)got)
            st = lp_error(w->d, LP_ERR_OUTPUT, "cannot write '%s': %s", w->data_path,
                          strerror(errno));
        else
            done += (uint64_t)got;
    }
    free(buf);
    close(fd);
    if (st != LP_OK) return st;
    *offset = w->data_size;
    w->data_size += t->nbytes;
    return LP_OK;
}

/* External data keeps its location when the sub-model sits next to the
 * original; present bytes are otherwise copied into the sidecar; absent
 * bytes are declared with their original location, offset and length so the
 * graph stays complete (the file must be supplied before running it). */
static lp_status external_to_proto(writer *w, const char *name, const lp_tensor_data *t,
                                   Onnx__TensorProto *tp) {
    const char *location = t->location;
    uint64_t offset = t->offset;
    if (t->present && !w->same_dir) {
        lp_status st = copy_external(w, name, t, &offset);
        if (st != LP_OK) return st;
        location = w->data_location;
    }
    Onnx__StringStringEntryProto **kv = lp_arena_array(w->a, 3, sizeof *kv);
    char *off = lp_arena_printf(w->a, "%" PRIu64, offset);
    char *len = lp_arena_printf(w->a, "%" PRIu64, t->nbytes);
    if (!kv || !off || !len) return OOM(w);
    if (!(kv[0] = kv_to_proto(w, "location", location)) ||
        !(kv[1] = kv_to_proto(w, "offset", off)) || !(kv[2] = kv_to_proto(w, "length", len)))
        return OOM(w);
    tp->n_external_data = 3;
    tp->external_data = kv;
    tp->has_data_location = true;
    tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    return LP_OK;
}

/* A TensorProto for an initializer or an attribute's tensor; inline bytes
 * are referenced, not copied. */
static lp_status tensor_to_proto(writer *w, const char *name, lp_dtype dtype,
                                 const lp_shape *shape, const lp_tensor_data *data,
                                 Onnx__TensorProto **out) {
    Onnx__TensorProto *tp = lp_arena_alloc(w->a, sizeof *tp);
    int64_t *dims = lp_arena_array(w->a, shape->rank > 0 ? (size_t)shape->rank : 1, sizeof *dims);
    if (!tp || !dims) return OOM(w);
    onnx__tensor_proto__init(tp);
    tp->name = pb_str(name);
    tp->has_data_type = true;
    tp->data_type = (int32_t)dtype;
    if (shape->rank < 0)
        return lp_error(w->d, LP_ERR_INTERNAL, "writing '%s': tensor '%s' has no shape",
                        w->path, name);
    for (int i = 0; i < shape->rank; i++) dims[i] = shape->dims[i].size;
    tp->n_dims = (size_t)shape->rank;
    tp->dims = dims;
    if (dtype == LP_DT_STRING || (data->where == LP_DATA_INLINE && data->nbytes && !data->bytes))
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "writing '%s': tensor '%s' holds strings, "
                        "which cannot be written", w->path, name);
    *out = tp;
    switch (data->where) {
    case LP_DATA_INLINE:
        tp->has_raw_data = true;
        tp->raw_data.len = (size_t)data->nbytes;
        tp->raw_data.data = (uint8_t *)data->bytes;
        return LP_OK;
    case LP_DATA_FILE:
        if (w->n_lazy == w->cap_lazy) {
            size_t cap = w->cap_lazy ? 2 * w->cap_lazy : 16;
            lazy_tensor *grown = lp_arena_array(w->a, cap, sizeof *grown);
            if (!grown) return OOM(w);
            if (w->n_lazy) memcpy(grown, w->lazy, w->n_lazy * sizeof *grown);
            w->lazy = grown;
            w->cap_lazy = cap;
        }
        w->lazy[w->n_lazy++] = (lazy_tensor){data, name};
        tp->has_raw_data = true;
        tp->raw_data.len = (size_t)data->nbytes;
        tp->raw_data.data = (uint8_t *)data; /* a token; see writer.lazy */
        return LP_OK;
    case LP_DATA_EXTERNAL:
        return external_to_proto(w, name, data, tp);
    case LP_DATA_NONE:
        break;
    }
    return lp_error(w->d, LP_ERR_INTERNAL, "writing '%s': tensor '%s' holds no data", w->path, name);
}

static lp_status add_initializer(writer *w, const lp_value *v) {
    if (w->n_init == w->cap_init) {
        size_t cap = w->cap_init ? 2 * w->cap_init : 16;
        Onnx__TensorProto **grown = lp_arena_array(w->a, cap, sizeof *grown);
        if (!grown) return OOM(w);
        if (w->n_init) memcpy(grown, w->init, w->n_init * sizeof *grown);
        w->init = grown;
        w->cap_init = cap;
    }
    return tensor_to_proto(w, v->name, v->dtype, &v->shape, &v->data, &w->init[w->n_init++]);
}

/* ---- nodes ----------------------------------------------------------------------- */

static lp_status attr_tensors_to_proto(writer *w, const lp_node *node, const lp_attr *at,
                                       Onnx__AttributeProto *ap) {
    int n = at->type == LP_ATTR_TENSOR ? 1 : at->n;
    const lp_tensor *src = at->type == LP_ATTR_TENSOR ? at->tensor : at->tensors;
    Onnx__TensorProto **ts = lp_arena_array(w->a, n ? (size_t)n : 1, sizeof *ts);
    if (!ts) return OOM(w);
    for (int i = 0; i < n; i++) {
        const char *tname = lp_arena_printf(w->a, "%s.%s", node->name, at->name);
        if (!tname) return OOM(w);
        lp_status st = tensor_to_proto(w, tname, src[i].dtype, &src[i].shape, &src[i].data, &ts[i]);
        if (st != LP_OK) return st;
        ts[i]->name = NULL; /* attribute tensors go unnamed, as exporters write them */
    }
    if (at->type == LP_ATTR_TENSOR)
        ap->t = ts[0];
    else {
        ap->n_tensors = (size_t)n;
        ap->tensors = ts;
    }
    return LP_OK;
}

static lp_status attr_to_proto(writer *w, const lp_node *node, const lp_attr *at,
                               Onnx__AttributeProto **out) {
    Onnx__AttributeProto *ap = lp_arena_alloc(w->a, sizeof *ap);
    if (!ap) return OOM(w);
    onnx__attribute_proto__init(ap);
    ap->name = pb_str(at->name);
    ap->has_type = true;
    ap->type = (Onnx__AttributeProto__AttributeType)at->type;
    *out = ap;
    switch (at->type) {
    case LP_ATTR_FLOAT:
        ap->has_f = true;
        ap->f = at->f;
        return LP_OK;
    case LP_ATTR_INT:
        ap->has_i = true;
        ap->i = at->i;
        return LP_OK;
    case LP_ATTR_STRING:
        ap->has_s = true;
        ap->s.len = at->s_len;
        ap->s.data = (uint8_t *)pb_str(at->s);
        return LP_OK;
    case LP_ATTR_FLOATS:
        ap->n_floats = (size_t)at->n;
        ap->floats = at->floats;
        return LP_OK;
    case LP_ATTR_INTS:
        ap->n_ints = (size_t)at->n;
        ap->ints = at->ints;
        return LP_OK;
    case LP_ATTR_STRINGS: {
        ProtobufCBinaryData *ss = lp_arena_array(w->a, at->n ? (size_t)at->n : 1, sizeof *ss);
        if (!ss) return OOM(w);
        for (int i = 0; i < at->n; i++) {
            ss[i].data = (uint8_t *)pb_str(at->strings[i]);
            ss[i].len = strlen(at->strings[i]);
        }
        ap->n_strings = (size_t)at->n;
        ap->strings = ss;
        return LP_OK;
    }
    case LP_ATTR_TENSOR:
    case LP_ATTR_TENSORS:
        return attr_tensors_to_proto(w, node, at, ap);
    default:
        return lp_node_error(w->d, LP_ERR_UNSUPPORTED, node, "writing '%s': attribute '%s' of "
                             "type %d cannot be written", w->path, at->name, (int)at->type);
    }
}

/* Value names of a node's inputs or outputs; "" marks an omitted one. */
static char **names_to_proto(writer *w, int n, const int32_t *idx) {
    char **names = lp_arena_array(w->a, n ? (size_t)n : 1, sizeof *names);
    if (!names) return NULL;
    for (int i = 0; i < n; i++) names[i] = pb_str(idx[i] >= 0 ? w->g->values[idx[i]].name : "");
    return names;
}

static lp_status node_to_proto(writer *w, const lp_node *node, Onnx__NodeProto **out) {
    Onnx__NodeProto *np = lp_arena_alloc(w->a, sizeof *np);
    Onnx__AttributeProto **attrs =
        lp_arena_array(w->a, node->n_attrs ? (size_t)node->n_attrs : 1, sizeof *attrs);
    Onnx__StringStringEntryProto **meta =
        lp_arena_array(w->a, node->n_meta ? (size_t)node->n_meta : 1, sizeof *meta);
    if (!np || !attrs || !meta) return OOM(w);
    onnx__node_proto__init(np);
    np->name = pb_str(node->name);
    np->op_type = pb_str(node->op_type);
    if (node->domain[0]) np->domain = pb_str(node->domain);
    if (!(np->input = names_to_proto(w, node->n_inputs, node->inputs)) ||
        !(np->output = names_to_proto(w, node->n_outputs, node->outputs)))
        return OOM(w);
    np->n_input = (size_t)node->n_inputs;
    np->n_output = (size_t)node->n_outputs;
    for (int i = 0; i < node->n_attrs; i++) {
        lp_status st = attr_to_proto(w, node, &node->attrs[i], &attrs[i]);
        if (st != LP_OK) return st;
    }
    np->n_attribute = (size_t)node->n_attrs;
    np->attribute = attrs;
    for (int i = 0; i < node->n_meta; i++)
        if (!(meta[i] = kv_to_proto(w, node->meta[i].key, node->meta[i].value))) return OOM(w);
    np->n_metadata_props = (size_t)node->n_meta;
    np->metadata_props = meta;
    *out = np;
    return LP_OK;
}

/* ---- the graph and the model ------------------------------------------------------ */

static lp_status graph_io_to_proto(writer *w, const int32_t *idx, int n, const char *role,
                                   size_t extra, Onnx__ValueInfoProto ***out) {
    Onnx__ValueInfoProto **vis = lp_arena_array(w->a, (size_t)n + extra + 1, sizeof *vis);
    if (!vis) return OOM(w);
    for (int i = 0; i < n; i++) {
        lp_status st = boundary_to_proto(w, idx[i], role, &vis[i]);
        if (st != LP_OK) return st;
    }
    *out = vis;
    return LP_OK;
}

/* Adds the weights among `vals` not added before as initializers. */
static lp_status add_initializers(writer *w, const int32_t *vals, int n, bool *added) {
    for (int k = 0; k < n; k++) {
        int32_t v = vals[k];
        if (v < 0 || w->role[v] != ROLE_INITIALIZER || added[v]) continue;
        added[v] = true;
        lp_status st = add_initializer(w, &w->g->values[v]);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

/* The nodes, and as initializers every weight they read (in order of first
 * use) and every weight that is itself an output. */
static lp_status nodes_to_proto(writer *w, const int *nodes, int n_nodes, const int32_t *outputs,
                                int n_outputs, Onnx__GraphProto *gp) {
    const lp_graph *g = w->g;
    lp_status st;
    Onnx__NodeProto **nps = lp_arena_array(w->a, n_nodes ? (size_t)n_nodes : 1, sizeof *nps);
    bool *added = lp_arena_array(w->a, (size_t)g->n_values + 1, sizeof *added);
    if (!nps || !added) return OOM(w);
    for (int i = 0; i < n_nodes; i++) {
        const lp_node *node = &g->nodes[nodes[i]];
        if ((st = node_to_proto(w, node, &nps[i])) != LP_OK ||
            (st = add_initializers(w, node->inputs, node->n_inputs, added)) != LP_OK)
            return st;
    }
    if ((st = add_initializers(w, outputs, n_outputs, added)) != LP_OK) return st;
    gp->n_node = (size_t)n_nodes;
    gp->node = nps;
    gp->n_initializer = w->n_init;
    gp->initializer = w->init;
    return LP_OK;
}

/* value_info for the values the nodes make that stay inside the sub-model
 * and whose element type is known. */
static lp_status intermediates_to_proto(writer *w, const int *nodes, int n_nodes,
                                        const int32_t *outputs, int n_outputs,
                                        Onnx__GraphProto *gp) {
    const lp_graph *g = w->g;
    bool *is_output = lp_arena_array(w->a, (size_t)g->n_values + 1, sizeof *is_output);
    if (!is_output) return OOM(w);
    for (int i = 0; i < n_outputs; i++) is_output[outputs[i]] = true;
    size_t n_made = 0;
    for (int i = 0; i < n_nodes; i++) n_made += (size_t)g->nodes[nodes[i]].n_outputs;
    Onnx__ValueInfoProto **info = lp_arena_array(w->a, n_made + 1, sizeof *info);
    if (!info) return OOM(w);
    gp->value_info = info;
    gp->n_value_info = 0;
    for (int i = 0; i < n_nodes; i++) {
        const lp_node *node = &g->nodes[nodes[i]];
        for (int k = 0; k < node->n_outputs; k++) {
            int32_t v = node->outputs[k];
            if (v < 0 || is_output[v] || g->values[v].dtype == LP_DT_UNDEFINED) continue;
            lp_status st = value_to_proto(w, &g->values[v], &info[gp->n_value_info++]);
            if (st != LP_OK) return st;
        }
    }
    return LP_OK;
}

static lp_status graph_to_proto(writer *w, const int *nodes, int n_nodes, const int32_t *inputs,
                                int n_inputs, const int32_t *outputs, int n_outputs,
                                Onnx__GraphProto *gp) {
    const lp_graph *g = w->g;
    lp_status st;
    if ((st = nodes_to_proto(w, nodes, n_nodes, outputs, n_outputs, gp)) != LP_OK ||
        (st = intermediates_to_proto(w, nodes, n_nodes, outputs, n_outputs, gp)) != LP_OK)
        return st;
    /* IR versions before 4 list every initializer among the graph inputs too */
    size_t extra = g->ir_version < 4 ? w->n_init : 0;
    if ((st = graph_io_to_proto(w, inputs, n_inputs, "input", extra, &gp->input)) != LP_OK ||
        (st = graph_io_to_proto(w, outputs, n_outputs, "output", 0, &gp->output)) != LP_OK)
        return st;
    gp->n_input = (size_t)n_inputs;
    gp->n_output = (size_t)n_outputs;
    for (size_t i = 0; i < extra; i++) {
        int32_t v = lp_graph_find_value(g, w->init[i]->name);
        assert(v >= 0);
        if ((st = value_to_proto(w, &g->values[v], &gp->input[gp->n_input++])) != LP_OK) return st;
    }
    gp->name = pb_str(g->name && g->name[0] ? g->name : "lpcc_submodel");
    return LP_OK;
}

static lp_status model_to_proto(writer *w, Onnx__GraphProto *gp, Onnx__ModelProto *m) {
    const lp_graph *g = w->g;
    onnx__model_proto__init(m);
    m->has_ir_version = true;
    m->ir_version = g->ir_version;
    m->producer_name = pb_str("lpcc");
    m->graph = gp;
    int n = g->n_opsets ? g->n_opsets : 1;
    Onnx__OperatorSetIdProto **os = lp_arena_array(w->a, (size_t)n, sizeof *os);
    if (!os) return OOM(w);
    for (int i = 0; i < n; i++) {
        if (!(os[i] = lp_arena_alloc(w->a, sizeof *os[i]))) return OOM(w);
        onnx__operator_set_id_proto__init(os[i]);
        os[i]->has_version = true;
        os[i]->domain = pb_str(g->n_opsets ? g->opsets[i].domain : "");
        os[i]->version = g->n_opsets ? g->opsets[i].version : g->opset;
    }
    m->n_opset_import = (size_t)n;
    m->opset_import = os;
    return LP_OK;
}

/* ---- files ------------------------------------------------------------------------- */

/* protobuf-c packs through this straight into the file. */
typedef struct file_sink {
    ProtobufCBuffer base;
    writer *w;
    FILE *f;
    int err;        /* first errno, 0 while all writes succeed */
    lp_status read; /* first failure reading a tensor from the model file */
    uint8_t *chunk;
} file_sink;

static int cmp_lazy(const void *x, const void *y) {
    uintptr_t a = (uintptr_t)((const lazy_tensor *)x)->t, b = (uintptr_t)((const lazy_tensor *)y)->t;
    return a < b ? -1 : a > b;
}

enum { SINK_CHUNK = 1 << 20 };

/* Streams a tensor's bytes from the model file into the sink. */
static void sink_stream(file_sink *s, const lazy_tensor *lt) {
    const lp_tensor_data *t = lt->t;
    if (!s->chunk && !(s->chunk = malloc(SINK_CHUNK))) {
        s->err = ENOMEM;
        return;
    }
    for (uint64_t done = 0; done < t->nbytes && !s->err && s->read == LP_OK;) {
        size_t n = t->nbytes - done > SINK_CHUNK ? SINK_CHUNK : (size_t)(t->nbytes - done);
        s->read = lp_frontend_read_tensor(s->w->g, t, lt->name, done, s->chunk, n, s->w->d);
        if (s->read == LP_OK && fwrite(s->chunk, 1, n, s->f) != n) s->err = errno ? errno : EIO;
        done += n;
    }
}

static void file_sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
    file_sink *s = (file_sink *)b;
    if (s->err || s->read != LP_OK || !len) return;
    writer *w = s->w;
    if (len >= LP_DATA_INLINE_MAX && w->n_lazy) {
        lazy_tensor key = {(const lp_tensor_data *)(const void *)data, NULL};
        const lazy_tensor *hit = bsearch(&key, w->lazy, w->n_lazy, sizeof *w->lazy, cmp_lazy);
        if (hit && hit->t->nbytes == len) {
            sink_stream(s, hit);
            return;
        }
    }
    if (fwrite(data, 1, len, s->f) != len) s->err = errno ? errno : EIO;
}

static lp_status write_model_file(writer *w, const Onnx__ModelProto *m) {
    size_t size = onnx__model_proto__get_packed_size(m);
    if ((uint64_t)size >= LP_PROTOBUF_LIMIT) {
        char buf[32];
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "cannot write '%s': the sub-model would be %s, "
                        "over protobuf's 2 GiB limit; store its weights as external data",
                        w->path, lp_format_bytes((uint64_t)size, buf));
    }
    if (w->n_lazy) qsort(w->lazy, w->n_lazy, sizeof *w->lazy, cmp_lazy);
    FILE *f = lp_outdir_create(w->od, w->name, w->d);
    if (!f) return LP_ERR_OUTPUT;
    file_sink sink = {.base = {.append = file_sink_append}, .w = w, .f = f};
    onnx__model_proto__pack_to_buffer(m, &sink.base);
    free(sink.chunk);
    if (sink.err) errno = sink.err; /* what the close reports */
    lp_status st = lp_outdir_close(w->od, f, w->d);
    return sink.read != LP_OK ? sink.read : st;
}

/* Closes the sidecar; the folder's commit moves both files into place. */
static lp_status commit_files(writer *w) {
    FILE *f = w->data;
    w->data = NULL;
    return f ? lp_outdir_close(w->od, f, w->d) : LP_OK;
}

static lp_status writer_init(writer *w, const lp_graph *g, lp_outdir *od, const char *name,
                             lp_diag *d) {
    *w = (writer){.g = g, .d = d, .od = od, .name = name};
    if (!(w->a = lp_arena_new())) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    const char *out_dir = lp_outdir_path(od);
    w->path = lp_arena_printf(w->a, "%s/%s", out_dir, name);
    w->role = lp_arena_alloc(w->a, (size_t)g->n_values + 1);
    w->data_location = lp_arena_printf(w->a, "%s.data", name);
    w->data_path = lp_arena_printf(w->a, "%s/%s.data", out_dir, name);
    if (!w->path || !w->role || !w->data_location || !w->data_path) {
        w->path = name;
        return OOM(w);
    }
    w->same_dir = g->dir && same_folder(out_dir, g->dir);
    return LP_OK;
}

/* A failed write leaves its files in the staging area, which the folder's
 * abort removes. */
static void writer_cleanup(writer *w) {
    if (w->data) {
        lp_diag silent = lp_diag_make(NULL);
        silent.sink = NULL;
        lp_outdir_close(w->od, w->data, &silent);
    }
    lp_arena_free(w->a);
}

lp_status lp_frontend_write_submodel(const lp_graph *g, const int *nodes, int n_nodes,
                                     const int32_t *inputs, int n_inputs, const int32_t *outputs,
                                     int n_outputs, const char *path, lp_diag *d) {
    assert(g && path && d);
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return lp_error(d, LP_ERR_INTERNAL, "out of memory while writing '%s'", path);
    lp_outdir_options opt = {.defer = true};
    lp_outdir *od = NULL;
    lp_status st = lp_outdir_open(dir, &opt, &od, d);
    if (st == LP_OK)
        st = lp_frontend_write_submodel_in(g, nodes, n_nodes, inputs, n_inputs, outputs, n_outputs, od,
                                           slash ? slash + 1 : path, d);
    if (st == LP_OK)
        st = lp_outdir_commit(od, d);
    else
        lp_outdir_abort(od);
    free(dir);
    return st;
}

lp_status lp_frontend_write_submodel_in(const lp_graph *g, const int *nodes, int n_nodes,
                                        const int32_t *inputs, int n_inputs, const int32_t *outputs,
                                        int n_outputs, lp_outdir *od, const char *name, lp_diag *d) {
    assert(g && od && name && d);
    assert(n_nodes >= 0 && n_inputs >= 0 && n_outputs >= 0);
    writer w;
    lp_status st = writer_init(&w, g, od, name, d);
    Onnx__GraphProto gp;
    Onnx__ModelProto m;
    onnx__graph_proto__init(&gp);
    if (st == LP_OK) st = mark_inputs(&w, inputs, n_inputs);
    if (st == LP_OK) st = mark_nodes(&w, nodes, n_nodes);
    if (st == LP_OK) st = mark_outputs(&w, outputs, n_outputs);
    if (st == LP_OK) st = graph_to_proto(&w, nodes, n_nodes, inputs, n_inputs, outputs, n_outputs, &gp);
    if (st == LP_OK) st = model_to_proto(&w, &gp, &m);
    if (st == LP_OK) st = write_model_file(&w, &m);
    if (st == LP_OK) st = commit_files(&w);
    writer_cleanup(&w);
    return st;
}
