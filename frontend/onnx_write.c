/* lp_graph slice -> ONNX model file. The selected nodes, their weights and
 * the boundary values are encoded straight into protobuf's wire format, in
 * the field order protobuf-c packs a ModelProto in, into one buffer that is
 * then written to a file of an output folder's staging area (lp_outdir.h),
 * which its commit moves into place. Large tensor bytes are not copied into
 * the buffer: inline ones are written from where they are, and tensors still
 * in the model file are streamed from it in bounded chunks. */
#define _GNU_SOURCE
#include "lp_frontend.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a value is to the sub-model being written (low bits), and two
 * marks the writer sets on the way. */
enum {
    ROLE_NONE = 0,
    ROLE_INPUT,       /* a graph input of the sub-model */
    ROLE_PRODUCED,    /* output of a selected node */
    ROLE_INITIALIZER, /* weight or constant the sub-model carries */
    ROLE_MASK = 0x0f,
    MARK_OUTPUT = 0x10, /* a graph output of the sub-model */
    MARK_ADDED = 0x20,  /* already listed as an initializer */
};

/* Bytes spliced into the encoded model at offset `at` of its buffer when
 * the file is written: large inline bytes (`bytes`), or a tensor still in
 * the model file (`t`), streamed from it. */
typedef struct span {
    size_t at;
    uint64_t len;
    const uint8_t *bytes;
    const lp_tensor_data *t;
    const char *name; /* the tensor's, for read errors */
} span;

/* The wire format being built. A nested message is encoded in place after
 * its tag and a one-byte length, which is filled in when it closes; a
 * longer length moves the content along then, so a byte moves at most once
 * per enclosing message of 128 bytes or more (a handful at most) and no
 * size is computed twice. */
typedef struct enc {
    uint8_t *buf;
    size_t len, cap;
    span *spans;
    size_t n_spans, cap_spans;
    uint64_t span_bytes; /* sum of spans[].len */
    bool oom;
} enc;

/* Where an open message starts. */
typedef struct enc_mark {
    size_t at, n_spans;
    uint64_t span_bytes;
} enc_mark;

/* An initializer: its value, and for external data the location and offset
 * the sub-model declares (after the bytes were copied to the sidecar). */
typedef struct init_entry {
    int32_t v;
    const char *location;
    uint64_t offset;
} init_entry;

typedef struct writer {
    const lp_graph *g;
    lp_diag *d;
    lp_arena *a;          /* scratch strings and tables */
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
    init_entry *init;

    enc e;
} writer;

#define OOM(w) lp_error((w)->d, LP_ERR_INTERNAL, "out of memory while writing '%s'", (w)->path)

static const char *or_empty(const char *s) { return s ? s : ""; }

/* Whether two folders are the same directory on disk. */
static bool same_folder(const char *x, const char *y) {
    struct stat sx, sy;
    if (stat(x, &sx) != 0 || stat(y, &sy) != 0) return false;
    return sx.st_dev == sy.st_dev && sx.st_ino == sy.st_ino;
}

static int role_of(const writer *w, int32_t v) { return w->role[v] & ROLE_MASK; }

static void set_role(writer *w, int32_t v, int role) {
    w->role[v] = (uint8_t)((w->role[v] & ~ROLE_MASK) | role);
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
        if (role_of(w, inputs[i]) != ROLE_NONE)
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': input '%s' is listed twice",
                            w->path, v->name);
        set_role(w, inputs[i], ROLE_INPUT);
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
            if (role_of(w, v) == ROLE_NONE && carries_data(&g->values[v]))
                set_role(w, v, ROLE_INITIALIZER);
            if (role_of(w, v) == ROLE_NONE)
                return lp_node_error(w->d, LP_ERR_USAGE, node,
                                     "writing '%s': reads '%s', which is neither an input of "
                                     "the sub-model, a weight, nor produced by an earlier node "
                                     "of it", w->path, g->values[v].name);
        }
        for (int k = 0; k < node->n_outputs; k++) {
            int32_t v = node->outputs[k];
            if (v < 0) continue;
            if (role_of(w, v) != ROLE_NONE)
                return lp_node_error(w->d, LP_ERR_USAGE, node,
                                     "writing '%s': output '%s' is already an input of the "
                                     "sub-model or produced twice (node listed twice?)",
                                     w->path, g->values[v].name);
            set_role(w, v, ROLE_PRODUCED);
        }
    }
    return LP_OK;
}

static lp_status mark_outputs(writer *w, const int32_t *outputs, int n) {
    for (int i = 0; i < n; i++) {
        lp_status st = check_value_index(w, outputs[i], "output");
        if (st != LP_OK) return st;
        const lp_value *v = &w->g->values[outputs[i]];
        if (role_of(w, outputs[i]) == ROLE_NONE && carries_data(v))
            set_role(w, outputs[i], ROLE_INITIALIZER);
        if (role_of(w, outputs[i]) == ROLE_NONE)
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': output '%s' is not computed by "
                            "the selected nodes", w->path, v->name);
        if (w->role[outputs[i]] & MARK_OUTPUT)
            return lp_error(w->d, LP_ERR_USAGE, "writing '%s': output '%s' is listed "
                            "twice", w->path, v->name);
        w->role[outputs[i]] |= MARK_OUTPUT;
    }
    return LP_OK;
}

/* ---- the wire format --------------------------------------------------------------- */

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static bool enc_grow(enc *e, size_t n) {
    size_t cap = e->cap ? e->cap : 1 << 16;
    while (cap - e->len < n) {
        if (cap > SIZE_MAX / 2) {
            e->oom = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *grown = realloc(e->buf, cap);
    if (!grown) {
        e->oom = true;
        return false;
    }
    e->buf = grown;
    e->cap = cap;
    return true;
}

/* Room for n more bytes. */
static inline bool enc_room(enc *e, size_t n) {
    if (e->oom) return false;
    return e->cap - e->len >= n || enc_grow(e, n);
}

static inline size_t varint_to(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static inline void put_varint(enc *e, uint64_t v) {
    if (enc_room(e, 10)) e->len += varint_to(e->buf + e->len, v);
}

static void put_tag(enc *e, uint32_t field, int wire) {
    put_varint(e, (uint64_t)field << 3 | (uint64_t)wire);
}

/* int64 and uint64 fields: the value's two's complement as a varint */
static void put_int64(enc *e, uint32_t field, int64_t v) {
    put_tag(e, field, WIRE_VARINT);
    put_varint(e, (uint64_t)v);
}

/* int32 and enum fields: negative values are sign-extended to ten bytes */
static void put_int32(enc *e, uint32_t field, int32_t v) { put_int64(e, field, v); }

static void put_float(enc *e, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_tag(e, field, WIRE_FIXED32);
    if (!enc_room(e, 4)) return;
    for (int i = 0; i < 4; i++) e->buf[e->len++] = (uint8_t)(u >> (8 * i));
}

static void put_bytes(enc *e, uint32_t field, const void *p, size_t n) {
    put_tag(e, field, WIRE_LEN);
    put_varint(e, n);
    if (n && enc_room(e, n)) {
        memcpy(e->buf + e->len, p, n);
        e->len += n;
    }
}

static void put_str(enc *e, uint32_t field, const char *s) { put_bytes(e, field, s, strlen(s)); }

static void add_span(enc *e, span sp) {
    if (e->oom) return;
    if (e->n_spans == e->cap_spans) {
        size_t cap = e->cap_spans ? 2 * e->cap_spans : 16;
        span *grown = realloc(e->spans, cap * sizeof *grown);
        if (!grown) {
            e->oom = true;
            return;
        }
        e->spans = grown;
        e->cap_spans = cap;
    }
    sp.at = e->len;
    e->spans[e->n_spans++] = sp;
    e->span_bytes += sp.len;
}

/* A bytes field whose content is written from `sp` when the file is. */
static void put_span(enc *e, uint32_t field, span sp) {
    put_tag(e, field, WIRE_LEN);
    put_varint(e, sp.len);
    if (sp.len) add_span(e, sp);
}

/* Opens a message that will be field `field` of its parent: its tag, and
 * one byte for its length, which enc_close fills in (moving the content
 * along only when the length needs more bytes). */
static enc_mark enc_open(enc *e, uint32_t field) {
    put_tag(e, field, WIRE_LEN);
    if (enc_room(e, 1)) e->len++;
    return (enc_mark){e->len, e->n_spans, e->span_bytes};
}

static void enc_close(enc *e, enc_mark m) {
    if (e->oom) return;
    uint64_t size = (uint64_t)(e->len - m.at) + (e->span_bytes - m.span_bytes);
    if (size < 0x80) {
        e->buf[m.at - 1] = (uint8_t)size;
        return;
    }
    uint8_t head[10];
    size_t h = varint_to(head, size), more = h - 1;
    if (!enc_room(e, more)) return;
    memmove(e->buf + m.at + more, e->buf + m.at, e->len - m.at);
    memcpy(e->buf + m.at - 1, head, h);
    e->len += more;
    for (size_t i = m.n_spans; i < e->n_spans; i++) e->spans[i].at += more;
}

static void enc_free(enc *e) {
    free(e->buf);
    free(e->spans);
    *e = (enc){0};
}

/* ---- value types -------------------------------------------------------------- */

/* TensorShapeProto: one Dimension per axis, with dim_value, dim_param, or
 * neither when unknown. */
static void enc_shape(enc *e, uint32_t field, const lp_shape *s) {
    enc_mark m = enc_open(e, field);
    for (int i = 0; i < s->rank; i++) {
        enc_mark dm = enc_open(e, 1);
        if (s->dims[i].size >= 0)
            put_int64(e, 1, s->dims[i].size);
        else if (s->dims[i].sym)
            put_str(e, 2, s->dims[i].sym);
        enc_close(e, dm);
    }
    enc_close(e, m);
}

/* A tensor ValueInfo: element type always, shape when the rank is known. */
static void enc_value_info(enc *e, uint32_t field, const lp_value *v) {
    enc_mark m = enc_open(e, field);
    put_str(e, 1, or_empty(v->name));
    enc_mark type = enc_open(e, 2);
    enc_mark tensor = enc_open(e, 1);
    put_int32(e, 1, (int32_t)v->dtype);
    if (v->shape.rank >= 0) enc_shape(e, 2, &v->shape);
    enc_close(e, tensor); /* TypeProto.tensor_type */
    enc_close(e, type);   /* ValueInfoProto.type */
    enc_close(e, m);
}

static lp_status check_boundary(writer *w, int32_t idx, const char *role) {
    const lp_value *v = &w->g->values[idx];
    if (v->dtype == LP_DT_UNDEFINED)
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "writing '%s': the element type of %s '%s' is "
                        "not known; infer shapes before writing sub-models", w->path, role,
                        v->name);
    return LP_OK;
}

/* ---- tensors -------------------------------------------------------------------- */

static void enc_kv(enc *e, uint32_t field, const char *key, const char *value) {
    enc_mark m = enc_open(e, field);
    put_str(e, 1, or_empty(key));
    put_str(e, 2, or_empty(value));
    enc_close(e, m);
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

/* Checks that a tensor can be written and settles where its external data
 * is declared: external data keeps its location when the sub-model sits
 * next to the original; present bytes are otherwise copied into the sidecar
 * now; absent bytes are declared with their original location, offset and
 * length so the graph stays complete (the file must be supplied before
 * running it). */
static lp_status check_tensor(writer *w, const char *name, lp_dtype dtype, const lp_shape *shape,
                              const lp_tensor_data *data, const char **location,
                              uint64_t *offset) {
    *location = NULL;
    *offset = 0;
    if (shape->rank < 0)
        return lp_error(w->d, LP_ERR_INTERNAL, "writing '%s': tensor '%s' has no shape",
                        w->path, name);
    if (dtype == LP_DT_STRING || (data->where == LP_DATA_INLINE && data->nbytes && !data->bytes))
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "writing '%s': tensor '%s' holds strings, "
                        "which cannot be written", w->path, name);
    switch (data->where) {
    case LP_DATA_INLINE:
    case LP_DATA_FILE:
        return LP_OK;
    case LP_DATA_EXTERNAL:
        *location = data->location;
        *offset = data->offset;
        if (data->present && !w->same_dir) {
            lp_status st = copy_external(w, name, data, offset);
            if (st != LP_OK) return st;
            *location = w->data_location;
        }
        return LP_OK;
    case LP_DATA_NONE:
        break;
    }
    return lp_error(w->d, LP_ERR_INTERNAL, "writing '%s': tensor '%s' holds no data", w->path, name);
}

/* A TensorProto checked by check_tensor; `name` NULL leaves it unnamed.
 * Inline bytes of LP_DATA_INLINE_MAX or more are written from where they
 * are, tensors in the model file streamed from it. */
static lp_status enc_tensor(writer *w, uint32_t field, const char *name, const char *what,
                            lp_dtype dtype, const lp_shape *shape, const lp_tensor_data *data,
                            const char *location, uint64_t offset) {
    enc *e = &w->e;
    enc_mark m = enc_open(e, field);
    for (int i = 0; i < shape->rank; i++) put_int64(e, 1, shape->dims[i].size);
    put_int32(e, 2, (int32_t)dtype);
    if (name) put_str(e, 8, name);
    switch (data->where) {
    case LP_DATA_INLINE:
        if (data->nbytes >= LP_DATA_INLINE_MAX)
            put_span(e, 9, (span){.len = data->nbytes, .bytes = data->bytes, .name = what});
        else
            put_bytes(e, 9, data->bytes, (size_t)data->nbytes);
        break;
    case LP_DATA_FILE:
        put_span(e, 9, (span){.len = data->nbytes, .t = data, .name = what});
        break;
    case LP_DATA_EXTERNAL: {
        char num[24];
        enc_kv(e, 13, "location", location);
        snprintf(num, sizeof num, "%" PRIu64, offset);
        enc_kv(e, 13, "offset", num);
        snprintf(num, sizeof num, "%" PRIu64, data->nbytes);
        enc_kv(e, 13, "length", num);
        put_int32(e, 14, 1); /* TensorProto.DataLocation.EXTERNAL */
        break;
    }
    case LP_DATA_NONE:
        break;
    }
    enc_close(e, m);
    return e->oom ? OOM(w) : LP_OK;
}

/* Lists weight v as an initializer, once; its bytes are checked (and
 * copied to the sidecar) now, in the order the nodes first read them. */
static lp_status add_initializer(writer *w, int32_t v) {
    if (v < 0 || role_of(w, v) != ROLE_INITIALIZER || (w->role[v] & MARK_ADDED)) return LP_OK;
    w->role[v] |= MARK_ADDED;
    if (w->n_init == w->cap_init) {
        size_t cap = w->cap_init ? 2 * w->cap_init : 16;
        init_entry *grown = lp_arena_array(w->a, cap, sizeof *grown);
        if (!grown) return OOM(w);
        if (w->n_init) memcpy(grown, w->init, w->n_init * sizeof *grown);
        w->init = grown;
        w->cap_init = cap;
    }
    const lp_value *val = &w->g->values[v];
    init_entry *ie = &w->init[w->n_init++];
    ie->v = v;
    return check_tensor(w, val->name, val->dtype, &val->shape, &val->data, &ie->location,
                        &ie->offset);
}

/* ---- nodes ----------------------------------------------------------------------- */

/* Attribute tensors go unnamed, as exporters write them; `t` for one, field
 * `tensors` for a list. */
static lp_status enc_attr_tensors(writer *w, const lp_node *node, const lp_attr *at) {
    int n = at->type == LP_ATTR_TENSOR ? 1 : at->n;
    const lp_tensor *src = at->type == LP_ATTR_TENSOR ? at->tensor : at->tensors;
    uint32_t field = at->type == LP_ATTR_TENSOR ? 5 : 10;
    for (int i = 0; i < n; i++) {
        const char *tname = lp_arena_printf(w->a, "%s.%s", node->name, at->name);
        if (!tname) return OOM(w);
        const char *location;
        uint64_t offset;
        lp_status st = check_tensor(w, tname, src[i].dtype, &src[i].shape, &src[i].data,
                                    &location, &offset);
        if (st == LP_OK)
            st = enc_tensor(w, field, NULL, tname, src[i].dtype, &src[i].shape, &src[i].data,
                            location, offset);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

static lp_status enc_attr(writer *w, const lp_node *node, const lp_attr *at) {
    enc *e = &w->e;
    enc_mark m = enc_open(e, 5);
    put_str(e, 1, or_empty(at->name));
    lp_status st = LP_OK;
    switch (at->type) {
    case LP_ATTR_FLOAT:
        put_float(e, 2, at->f);
        break;
    case LP_ATTR_INT:
        put_int64(e, 3, at->i);
        break;
    case LP_ATTR_STRING:
        put_bytes(e, 4, or_empty(at->s), at->s_len);
        break;
    case LP_ATTR_FLOATS:
        for (int i = 0; i < at->n; i++) put_float(e, 7, at->floats[i]);
        break;
    case LP_ATTR_INTS:
        for (int i = 0; i < at->n; i++) put_int64(e, 8, at->ints[i]);
        break;
    case LP_ATTR_STRINGS:
        for (int i = 0; i < at->n; i++) put_str(e, 9, or_empty(at->strings[i]));
        break;
    case LP_ATTR_TENSOR:
    case LP_ATTR_TENSORS:
        st = enc_attr_tensors(w, node, at);
        break;
    default:
        return lp_node_error(w->d, LP_ERR_UNSUPPORTED, node, "writing '%s': attribute '%s' of "
                             "type %d cannot be written", w->path, at->name, (int)at->type);
    }
    if (st != LP_OK) return st;
    put_int32(e, 20, (int32_t)at->type);
    enc_close(e, m);
    return LP_OK;
}

/* A run of encoded metadata entries: bytes in memory are copied, bytes in
 * the model file streamed from it when the file is written. */
static lp_status enc_meta_run(writer *w, const lp_node *node, const lp_meta_run *run) {
    enc *e = &w->e;
    const lp_tensor_data *t = &run->data;
    if (t->where == LP_DATA_INLINE) {
        if (t->nbytes && enc_room(e, (size_t)t->nbytes)) {
            memcpy(e->buf + e->len, t->bytes, (size_t)t->nbytes);
            e->len += (size_t)t->nbytes;
        }
    } else {
        const char *name = lp_arena_printf(w->a, "metadata of node '%s'", node->name);
        if (!name) return OOM(w);
        add_span(e, (span){.len = t->nbytes, .t = t, .name = name});
    }
    return e->oom ? OOM(w) : LP_OK;
}

static lp_status enc_node(writer *w, const lp_node *node) {
    enc *e = &w->e;
    const lp_value *values = w->g->values;
    enc_mark m = enc_open(e, 1);
    for (int i = 0; i < node->n_inputs; i++)
        put_str(e, 1, node->inputs[i] >= 0 ? or_empty(values[node->inputs[i]].name) : "");
    for (int i = 0; i < node->n_outputs; i++)
        put_str(e, 2, node->outputs[i] >= 0 ? or_empty(values[node->outputs[i]].name) : "");
    put_str(e, 3, or_empty(node->name));
    put_str(e, 4, or_empty(node->op_type));
    for (int i = 0; i < node->n_attrs; i++) {
        lp_status st = enc_attr(w, node, &node->attrs[i]);
        if (st != LP_OK) return st;
    }
    if (node->domain[0]) put_str(e, 7, node->domain);
    /* metadata in the file's order: the kept entries, and between them the
     * runs of encoded entries, copied as they are */
    int r = 0;
    for (int i = 0; i <= node->n_meta; i++) {
        for (; r < node->n_meta_runs && node->meta_runs[r].before <= i; r++) {
            lp_status st = enc_meta_run(w, node, &node->meta_runs[r]);
            if (st != LP_OK) return st;
        }
        if (i < node->n_meta) enc_kv(e, 9, node->meta[i].key, node->meta[i].value);
    }
    enc_close(e, m);
    return e->oom ? OOM(w) : LP_OK;
}

/* ---- the graph and the model ------------------------------------------------------ */

/* GraphProto, field 7 of the model: the nodes, and as initializers every
 * weight they read (in order of first use) and every weight that is itself
 * an output; the inputs and outputs; value_info for the values the nodes
 * make that stay inside the sub-model and whose element type is known. */
static lp_status enc_graph(writer *w, const int *nodes, int n_nodes, const int32_t *inputs,
                           int n_inputs, const int32_t *outputs, int n_outputs) {
    const lp_graph *g = w->g;
    enc *e = &w->e;
    lp_status st;
    enc_mark m = enc_open(e, 7);
    for (int i = 0; i < n_nodes; i++) {
        const lp_node *node = &g->nodes[nodes[i]];
        if ((st = enc_node(w, node)) != LP_OK) return st;
        for (int k = 0; k < node->n_inputs; k++)
            if ((st = add_initializer(w, node->inputs[k])) != LP_OK) return st;
    }
    for (int i = 0; i < n_outputs; i++)
        if ((st = add_initializer(w, outputs[i])) != LP_OK) return st;
    put_str(e, 2, g->name && g->name[0] ? g->name : "lpcc_submodel");
    for (size_t i = 0; i < w->n_init; i++) {
        const lp_value *v = &g->values[w->init[i].v];
        if ((st = enc_tensor(w, 5, or_empty(v->name), v->name, v->dtype, &v->shape, &v->data,
                             w->init[i].location, w->init[i].offset)) != LP_OK)
            return st;
    }
    for (int i = 0; i < n_inputs; i++) {
        if ((st = check_boundary(w, inputs[i], "input")) != LP_OK) return st;
        enc_value_info(e, 11, &g->values[inputs[i]]);
    }
    /* IR versions before 4 list every initializer among the graph inputs too */
    if (g->ir_version < 4)
        for (size_t i = 0; i < w->n_init; i++) enc_value_info(e, 11, &g->values[w->init[i].v]);
    for (int i = 0; i < n_outputs; i++) {
        if ((st = check_boundary(w, outputs[i], "output")) != LP_OK) return st;
        enc_value_info(e, 12, &g->values[outputs[i]]);
    }
    for (int i = 0; i < n_nodes; i++) {
        const lp_node *node = &g->nodes[nodes[i]];
        for (int k = 0; k < node->n_outputs; k++) {
            int32_t v = node->outputs[k];
            if (v < 0 || (w->role[v] & MARK_OUTPUT) || g->values[v].dtype == LP_DT_UNDEFINED)
                continue;
            enc_value_info(e, 13, &g->values[v]);
        }
    }
    enc_close(e, m);
    return e->oom ? OOM(w) : LP_OK;
}

/* ModelProto: ir_version, producer_name, graph, opset_import. */
static lp_status enc_model(writer *w, const int *nodes, int n_nodes, const int32_t *inputs,
                           int n_inputs, const int32_t *outputs, int n_outputs) {
    const lp_graph *g = w->g;
    enc *e = &w->e;
    put_int64(e, 1, g->ir_version);
    put_str(e, 2, "lpcc");
    lp_status st = enc_graph(w, nodes, n_nodes, inputs, n_inputs, outputs, n_outputs);
    if (st != LP_OK) return st;
    int n = g->n_opsets ? g->n_opsets : 1;
    for (int i = 0; i < n; i++) {
        enc_mark m = enc_open(e, 8);
        put_str(e, 1, g->n_opsets ? or_empty(g->opsets[i].domain) : "");
        put_int64(e, 2, g->n_opsets ? g->opsets[i].version : g->opset);
        enc_close(e, m);
    }
    return e->oom ? OOM(w) : LP_OK;
}

/* ---- files ------------------------------------------------------------------------- */

enum { STREAM_CHUNK = 1 << 20 };

/* Writes the encoded model: the buffer with each span spliced in, tensors
 * from the model file read through one bounded chunk. */
static lp_status write_model_file(writer *w) {
    enc *e = &w->e;
    uint64_t size = (uint64_t)e->len + e->span_bytes;
    if (size >= LP_PROTOBUF_LIMIT) {
        char buf[32];
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "cannot write '%s': the sub-model would be %s, "
                        "over protobuf's 2 GiB limit; store its weights as external data",
                        w->path, lp_format_bytes(size, buf));
    }
    FILE *f = lp_outdir_create(w->od, w->name, w->d);
    if (!f) return LP_ERR_OUTPUT;
    int err = 0;
    lp_status read = LP_OK;
    uint8_t *chunk = NULL;
    size_t at = 0;
    for (size_t i = 0; i <= e->n_spans && !err && read == LP_OK; i++) {
        size_t end = i < e->n_spans ? e->spans[i].at : e->len;
        if (end > at && fwrite(e->buf + at, 1, end - at, f) != end - at) {
            err = errno ? errno : EIO;
            break;
        }
        at = end;
        if (i == e->n_spans) break;
        const span *sp = &e->spans[i];
        if (sp->bytes) {
            if (fwrite(sp->bytes, 1, (size_t)sp->len, f) != sp->len) err = errno ? errno : EIO;
            continue;
        }
        if (!chunk && !(chunk = malloc(STREAM_CHUNK))) {
            err = ENOMEM;
            break;
        }
        for (uint64_t done = 0; done < sp->len && !err && read == LP_OK;) {
            size_t n = sp->len - done > STREAM_CHUNK ? STREAM_CHUNK : (size_t)(sp->len - done);
            read = lp_frontend_read_tensor(w->g, sp->t, sp->name, done, chunk, n, w->d);
            if (read == LP_OK && fwrite(chunk, 1, n, f) != n) err = errno ? errno : EIO;
            done += n;
        }
    }
    free(chunk);
    if (err) errno = err; /* what the close reports */
    lp_status st = lp_outdir_close(w->od, f, w->d);
    return read != LP_OK ? read : st;
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
    enc_free(&w->e);
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
    if (st == LP_OK) st = mark_inputs(&w, inputs, n_inputs);
    if (st == LP_OK) st = mark_nodes(&w, nodes, n_nodes);
    if (st == LP_OK) st = mark_outputs(&w, outputs, n_outputs);
    if (st == LP_OK) st = enc_model(&w, nodes, n_nodes, inputs, n_inputs, outputs, n_outputs);
    if (st == LP_OK) st = write_model_file(&w);
    if (st == LP_OK) st = commit_files(&w);
    writer_cleanup(&w);
    return st;
}
