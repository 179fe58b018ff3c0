/* ONNX protobuf -> lp_graph. The file is read without its large raw_data
 * fields (model_read.c), the rest unpacked once, converted into the graph's
 * arena and freed before returning; the large tensors stay in the file. */
#define _GNU_SOURCE
#include "lp_frontend.h"
#include "lp_ops.h"
#include "model_read.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct missing_file {
    const char *location;
    struct missing_file *next;
} missing_file;

/* Conversion state for one model. */
typedef struct loader {
    lp_graph *g;
    lp_diag *d;
    const lp_load_options *opt;
    const Onnx__ModelProto *model;
    /* external files reported missing, to warn once per file */
    struct missing_file *missing;
    /* the external file looked up last; models keep their tensors in one or
     * a few files, so most lookups skip the path checks and the stat */
    const char *ext_location, *ext_path;
    bool ext_exists;
    uint64_t ext_size;
    /* raw_data left out of the unpacked message: in `file`, or in `mem` */
    const lp_raw_range *raw;
    size_t n_raw;
    /* node metadata left out of it likewise */
    const lp_meta_range *meta;
    size_t n_meta;
    const uint8_t *kv;
    uint64_t nonce;
    const uint8_t *mem;
    const lp_data_file *file;
    size_t n_file_tensors; /* and metadata runs: what keeps the file open */
} loader;

static const char *str_or_empty(const char *s) { return s ? s : ""; }

#define OOM(ld) lp_error((ld)->d, LP_ERR_INTERNAL, "out of memory while loading the model")

/* ---- tensors ------------------------------------------------------------- */

static lp_status convert_shape_dims(loader *ld, const char *what, const char *name,
                                    size_t n, const int64_t *dims, lp_shape *out) {
    if (n > LP_MAX_RANK)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "%s '%s' has rank %zu, above the largest rank lpcc accepts (%d)", what,
                        name, n, LP_MAX_RANK);
    out->rank = (int)n;
    out->dims = lp_arena_array(ld->g->arena, n, sizeof *out->dims);
    if (n && !out->dims) return OOM(ld);
    for (size_t i = 0; i < n; i++) {
        if (dims[i] < 0)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "%s '%s' has negative dim %" PRId64
                            " at axis %zu", what, name, dims[i], i);
        out->dims[i].size = dims[i];
    }
    return LP_OK;
}

static bool dtype_valid(int32_t t) { return t > LP_DT_UNDEFINED && t < LP_DT_COUNT; }

/* Elements each int32_data entry carries for a type stored there. */
static int per_int32(lp_dtype t) {
    switch (lp_dtype_bits(t)) {
    case 2: return 4;
    case 4: return 2;
    default: return 1;
    }
}

/* The typed field (float_data, int32_data, ...) that holds a dtype's values,
 * its entry count, and how many entries `numel` elements need. */
static const char *typed_field(const Onnx__TensorProto *t, lp_dtype dt, uint64_t numel,
                               uint64_t *have, uint64_t *need) {
    switch (dt) {
    case LP_DT_FLOAT:
    case LP_DT_COMPLEX64:
        *have = t->n_float_data, *need = dt == LP_DT_COMPLEX64 ? numel * 2 : numel;
        return "float_data";
    case LP_DT_DOUBLE:
    case LP_DT_COMPLEX128:
        *have = t->n_double_data, *need = dt == LP_DT_COMPLEX128 ? numel * 2 : numel;
        return "double_data";
    case LP_DT_INT64:
        *have = t->n_int64_data, *need = numel;
        return "int64_data";
    case LP_DT_UINT32:
    case LP_DT_UINT64:
        *have = t->n_uint64_data, *need = numel;
        return "uint64_data";
    default: {
        /* int32_data carries the 16-, 8-, 6-, 4- and 2-bit types */
        uint64_t per = (uint64_t)per_int32(dt);
        *have = t->n_int32_data, *need = numel / per + (numel % per != 0);
        return "int32_data";
    }
    }
}

/* Packs typed-field data into raw bytes. Counts are checked before anything
 * is allocated, so dims that promise more than the file holds cost nothing. */
static lp_status pack_typed_fields(loader *ld, const Onnx__TensorProto *t, const char *name,
                                   lp_dtype dt, uint64_t numel, uint64_t nbytes,
                                   lp_tensor_data *out) {
    if (dt == LP_DT_STRING)
        return lp_error(ld->d, LP_ERR_UNSUPPORTED, "tensor '%s' holds strings, which are not supported", name);
    uint64_t have, need;
    const char *field = typed_field(t, dt, numel, &have, &need);
    if (have != need)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s' (%s) holds %" PRIu64 " entries in %s, but its dims need %" PRIu64,
                        name, lp_dtype_name(dt), have, field, need);
    uint8_t *buf = lp_arena_alloc(ld->g->arena, nbytes ? nbytes : 1);
    if (!buf) return OOM(ld);
    int bits = lp_dtype_bits(dt);
    size_t width = (size_t)bits / 8;
    if (have == 0) {
        /* nothing to copy */
    } else if (dt == LP_DT_FLOAT || dt == LP_DT_COMPLEX64) {
        memcpy(buf, t->float_data, nbytes);
    } else if (dt == LP_DT_DOUBLE || dt == LP_DT_COMPLEX128) {
        memcpy(buf, t->double_data, nbytes);
    } else if (dt == LP_DT_INT64) {
        memcpy(buf, t->int64_data, nbytes);
    } else if (dt == LP_DT_UINT32 || dt == LP_DT_UINT64) {
        for (uint64_t i = 0; i < numel; i++) {
            uint64_t v = t->uint64_data[i];
            memcpy(buf + i * width, &v, width);
        }
    } else if (bits >= 8) {
        for (uint64_t i = 0; i < numel; i++) {
            uint32_t v = (uint32_t)t->int32_data[i];
            memcpy(buf + i * width, &v, width);
        }
    } else {
        /* sub-byte: each entry holds `per` elements (or one 6-bit one);
         * repack as a little-endian bit stream */
        uint64_t per = (uint64_t)per_int32(dt);
        for (uint64_t e = 0; e < numel; e++) {
            uint32_t word = (uint32_t)t->int32_data[e / per];
            uint32_t v = (word >> ((e % per) * (uint64_t)bits)) & ((1u << bits) - 1);
            uint64_t bit = e * (uint64_t)bits;
            for (int k = 0; k < bits; k++, bit++)
                if (v >> k & 1) buf[bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
    }
    out->where = LP_DATA_INLINE;
    out->bytes = buf;
    out->nbytes = nbytes;
    return LP_OK;
}

static lp_status parse_u64(loader *ld, const char *name, const char *key, const char *s,
                           uint64_t *out) {
    if (!s || !*s) goto bad;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') goto bad;
        unsigned dgt = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - dgt) / 10) goto bad;
        v = v * 10 + dgt;
    }
    *out = v;
    return LP_OK;
bad:
    return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                    "tensor '%s': external data '%s' is '%s', not a non-negative integer", name,
                    key, str_or_empty(s));
}

/* Resolves `location` (checked to stay in the model's folder) and sizes the
 * file into ld->ext_*, reusing the previous answer for the same location. */
static lp_status lookup_external(loader *ld, const char *location) {
    if (ld->ext_location && strcmp(ld->ext_location, location) == 0) return LP_OK;
    ld->ext_location = NULL;
    const char *path;
    bool exists;
    lp_status st = lp_frontend_resolve_external(ld->g->arena, ld->g->dir, location, &path, &exists, ld->d);
    if (st != LP_OK) return st;
    uint64_t size = 0;
    if (exists) {
        struct stat sb;
        if (stat(path, &sb) != 0)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "external data '%s': %s", location,
                            strerror(errno));
        size = (uint64_t)sb.st_size;
    }
    const char *copy = lp_arena_strdup(ld->g->arena, location);
    if (!copy) return OOM(ld);
    ld->ext_location = copy;
    ld->ext_path = path;
    ld->ext_exists = exists;
    ld->ext_size = size;
    return LP_OK;
}

static lp_status convert_external(loader *ld, const Onnx__TensorProto *t, const char *name,
                                  uint64_t nbytes, lp_tensor_data *out) {
    const char *location = NULL;
    uint64_t offset = 0, length = nbytes;
    bool has_length = false;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const char *k = str_or_empty(t->external_data[i]->key);
        const char *v = t->external_data[i]->value;
        lp_status st = LP_OK;
        if (strcmp(k, "location") == 0)
            location = v;
        else if (strcmp(k, "offset") == 0)
            st = parse_u64(ld, name, k, v, &offset);
        else if (strcmp(k, "length") == 0) {
            st = parse_u64(ld, name, k, v, &length);
            has_length = true;
        }
        if (st != LP_OK) return st;
    }
    if (!location)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s' is stored externally but has no 'location'", name);
    if (has_length && length != nbytes)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s': external data length %" PRIu64 " does not match the %" PRIu64
                        " bytes its dtype and dims need", name, length, nbytes);
    lp_status st = lookup_external(ld, location);
    if (st != LP_OK) return st;
    out->where = LP_DATA_EXTERNAL;
    out->location = ld->ext_location;
    out->path = ld->ext_path;
    out->offset = offset;
    out->nbytes = nbytes;
    if (offset > UINT64_MAX - nbytes)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s': external offset %" PRIu64 " + length %" PRIu64 " overflows",
                        name, offset, nbytes);
    if (ld->ext_exists) {
        if (offset + nbytes > ld->ext_size)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                            "tensor '%s': external range [%" PRIu64 ", %" PRIu64 ") lies beyond "
                            "the end of '%s' (%" PRIu64 " bytes)", name, offset, offset + nbytes,
                            location, ld->ext_size);
        out->present = true;
        return LP_OK;
    }
    if (ld->opt && ld->opt->require_weights)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s': external data file '%s' is missing from '%s'", name,
                        location, ld->g->dir);
    for (const missing_file *m = ld->missing; m; m = m->next)
        if (strcmp(m->location, location) == 0) return LP_OK;
    missing_file *m = lp_arena_alloc(ld->g->arena, sizeof *m);
    if (!m) return OOM(ld);
    m->location = out->location;
    m->next = ld->missing;
    ld->missing = m;
    lp_warn(ld->d, "external data file '%s' is missing (first needed by '%s'): shapes and sizes "
            "are analysed without it; stages that need weight bytes will fail", location, name);
    return LP_OK;
}

static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The index a mark field of this read carries, if u is one (any other is
 * the file's own, and ignored). */
static bool our_mark(const loader *ld, const ProtobufCMessageUnknownField *u, uint64_t *idx) {
    /* protobuf-c keeps a length-prefixed field with its one-byte prefix */
    if (u->tag != LP_RAW_MARK_FIELD || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED ||
        u->len != 17 || u->data[0] != 16 || get_le64(u->data + 1) != ld->nonce)
        return false;
    *idx = get_le64(u->data + 9);
    return true;
}

/* The raw_data range model_read.c took out of tensor t, if it did. */
static lp_status removed_raw(loader *ld, const Onnx__TensorProto *t, const char *name,
                             const lp_raw_range **out) {
    *out = NULL;
    for (unsigned i = 0; i < t->base.n_unknown_fields; i++) {
        uint64_t idx;
        if (!our_mark(ld, &t->base.unknown_fields[i], &idx)) continue;
        if (*out || idx >= ld->n_raw)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "tensor '%s' holds raw_data twice", name);
        *out = &ld->raw[idx];
    }
    return LP_OK;
}

/* Fills dtype, shape and data from a TensorProto (an initializer or an
 * attribute's tensor). */
static lp_status convert_tensor(loader *ld, const Onnx__TensorProto *t, const char *name,
                                lp_dtype *dtype, lp_shape *shape, lp_tensor_data *data) {
    if (!t->has_data_type || !dtype_valid(t->data_type))
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s' has data type %d, which is not a type of the ONNX spec",
                        name, t->has_data_type ? (int)t->data_type : 0);
    if (t->segment)
        return lp_error(ld->d, LP_ERR_UNSUPPORTED, "tensor '%s' is stored in segments, which are "
                        "not supported", name);
    lp_dtype dt = (lp_dtype)t->data_type;
    *dtype = dt;
    lp_status st = convert_shape_dims(ld, "tensor", name, t->n_dims, t->dims, shape);
    if (st != LP_OK) return st;
    uint64_t numel, nbytes = 0;
    if (!lp_shape_numel(shape, &numel))
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "tensor '%s' has dims whose element count overflows 64 bits", name);
    if (dt == LP_DT_STRING) {
        if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "string tensor '%s' cannot be external", name);
        if (t->n_string_data != numel)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                            "string tensor '%s' holds %zu strings but its dims need %" PRIu64,
                            name, t->n_string_data, numel);
        data->where = LP_DATA_INLINE;
        for (size_t i = 0; i < t->n_string_data; i++) data->nbytes += t->string_data[i].len;
        return LP_OK;
    }
    /* byte counts are int64 in the IR's consumers and in JSON */
    if (!lp_dtype_storage_bytes(dt, numel, &nbytes) || nbytes > (uint64_t)INT64_MAX)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL, "tensor '%s' is too large to address", name);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return convert_external(ld, t, name, nbytes, data);
    const lp_raw_range *raw = NULL;
    if ((st = removed_raw(ld, t, name, &raw)) != LP_OK) return st;
    if (raw) {
        if (t->has_raw_data)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "tensor '%s' holds raw_data twice", name);
        if (raw->len != nbytes)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                            "tensor '%s' (%s) holds %" PRIu64 " bytes of raw_data, but its dims need %" PRIu64,
                            name, lp_dtype_name(dt), raw->len, nbytes);
        if (ld->file) {
            *data = (lp_tensor_data){.where = LP_DATA_FILE, .nbytes = nbytes, .offset = raw->offset,
                                     .file = ld->file};
            ld->n_file_tensors++;
            return LP_OK;
        }
        uint8_t *buf = lp_arena_alloc(ld->g->arena, (size_t)nbytes);
        if (!buf) return OOM(ld);
        memcpy(buf, ld->mem + raw->offset, (size_t)nbytes);
        *data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = buf, .nbytes = nbytes};
        return LP_OK;
    }
    if (t->has_raw_data) {
        if (t->raw_data.len != nbytes)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                            "tensor '%s' (%s) holds %zu bytes of raw_data, but its dims need %" PRIu64,
                            name, lp_dtype_name(dt), t->raw_data.len, nbytes);
        uint8_t *buf = lp_arena_alloc(ld->g->arena, nbytes ? nbytes : 1);
        if (!buf) return OOM(ld);
        if (nbytes) memcpy(buf, t->raw_data.data, nbytes);
        data->where = LP_DATA_INLINE;
        data->bytes = buf;
        data->nbytes = nbytes;
        return LP_OK;
    }
    return pack_typed_fields(ld, t, name, dt, numel, nbytes, data);
}

/* ---- value types ---------------------------------------------------------- */

static lp_status convert_value_info(loader *ld, const Onnx__ValueInfoProto *vi, lp_value *v,
                                    const char *role) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp) return LP_OK; /* untyped: left for inference */
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) {
        static const char *const kinds[] = {[ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE] = "a sequence",
                                            [ONNX__TYPE_PROTO__VALUE_MAP_TYPE] = "a map",
                                            [ONNX__TYPE_PROTO__VALUE_OPAQUE_TYPE] = "opaque",
                                            [ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE] = "a sparse tensor",
                                            [ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE] = "an optional"};
        if (tp->value_case == ONNX__TYPE_PROTO__VALUE__NOT_SET) return LP_OK;
        const char *k = (unsigned)tp->value_case < sizeof kinds / sizeof kinds[0] && kinds[tp->value_case]
                            ? kinds[tp->value_case] : "not a tensor";
        return lp_error(ld->d, LP_ERR_UNSUPPORTED, "%s '%s' is %s; only tensors are supported",
                        role, v->name, k);
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (!tt) return LP_OK;
    if (tt->has_elem_type && tt->elem_type != 0) {
        if (!dtype_valid(tt->elem_type))
            return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                            "%s '%s' has element type %d, which is not a type of the ONNX spec",
                            role, v->name, (int)tt->elem_type);
        v->dtype = (lp_dtype)tt->elem_type;
    }
    if (!tt->shape) return LP_OK;
    size_t n = tt->shape->n_dim;
    if (n > LP_MAX_RANK)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                        "%s '%s' has rank %zu, above the largest rank lpcc accepts (%d)", role,
                        v->name, n, LP_MAX_RANK);
    lp_dim *dims = lp_arena_array(ld->g->arena, n, sizeof *dims);
    if (n && !dims) return OOM(ld);
    bool input = v->kind == LP_VALUE_INPUT;
    for (size_t i = 0; i < n; i++) {
        const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[i];
        dims[i].size = LP_DIM_UNKNOWN;
        /* exporters write an unknown dim as -1 (Paddle2ONNX) or as the
         * literal name "?"; ONNX Runtime reads both as an unknown of its own
         * on that axis, never equal to another, and so does lpcc */
        const char *written = NULL;
        if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (dm->dim_value == -1)
                written = "-1";
            else if (dm->dim_value < 0)
                return lp_error(ld->d, LP_ERR_INVALID_MODEL, "%s '%s' has negative dim %" PRId64
                                " at axis %zu", role, v->name, dm->dim_value, i);
            else
                dims[i].size = dm->dim_value;
        } else if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   dm->dim_param && dm->dim_param[0]) {
            if (strcmp(dm->dim_param, "?") == 0) {
                written = "'?'";
            } else {
                dims[i].sym = lp_arena_strdup(ld->g->arena, dm->dim_param);
                if (!dims[i].sym) return OOM(ld);
            }
        }
        if (written && input &&
            !lp_graph_note_written_dim(ld->g, (int32_t)(v - ld->g->values), (int)i, written))
            return OOM(ld);
    }
    v->shape.rank = (int)n;
    v->shape.dims = dims;
    return LP_OK;
}

/* ---- nodes ----------------------------------------------------------------- */

static lp_status convert_kvs(loader *ld, size_t n, Onnx__StringStringEntryProto **src,
                             int *n_out, lp_kv **out) {
    *n_out = 0;
    if (!n) return LP_OK;
    lp_kv *kv = lp_arena_array(ld->g->arena, n, sizeof *kv);
    if (!kv) return OOM(ld);
    for (size_t i = 0; i < n; i++) {
        kv[i].key = lp_arena_strdup(ld->g->arena, str_or_empty(src[i]->key));
        kv[i].value = lp_arena_strdup(ld->g->arena, str_or_empty(src[i]->value));
        if (!kv[i].key || !kv[i].value) return OOM(ld);
    }
    *n_out = (int)n;
    *out = kv;
    return LP_OK;
}

/* Old models omit AttributeProto.type; infer it from the field that is set. */
static int attr_type_of(const Onnx__AttributeProto *a) {
    if (a->has_type) return (int)a->type;
    if (a->has_f) return LP_ATTR_FLOAT;
    if (a->has_i) return LP_ATTR_INT;
    if (a->has_s) return LP_ATTR_STRING;
    if (a->t) return LP_ATTR_TENSOR;
    if (a->g) return LP_ATTR_GRAPH;
    if (a->n_floats) return LP_ATTR_FLOATS;
    if (a->n_ints) return LP_ATTR_INTS;
    if (a->n_strings) return LP_ATTR_STRINGS;
    if (a->n_tensors) return LP_ATTR_TENSORS;
    if (a->n_graphs) return LP_ATTR_GRAPHS;
    return LP_ATTR_UNDEFINED;
}

static lp_status convert_graph(loader *ld, const Onnx__GraphProto *gp);

/* A control-flow body (If's branches, Loop's and Scan's body) becomes a graph
 * of its own, owned by the enclosing one; analysis inlines the branch an If
 * selects (analysis/fold_if.c). A problem inside is reported once, at the
 * node that holds the body. */
static lp_status convert_body(loader *ld, const lp_node *node, const Onnx__GraphProto *gp,
                              lp_attr *out) {
    lp_graph *outer = ld->g;
    if (!gp)
        return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                             "attribute '%s' has type GRAPH but holds no graph", out->name);
    if (outer->depth >= LP_MAX_BODY_DEPTH)
        return lp_node_error(ld->d, LP_ERR_UNSUPPORTED, node,
                             "control-flow subgraph (attribute '%s') nests bodies deeper than %d "
                             "levels, which is not supported", out->name, LP_MAX_BODY_DEPTH);
    lp_graph *b = lp_graph_new_body(outer);
    if (!b) return OOM(ld);
    b->dir = outer->dir;
    lp_diag *od = ld->d;
    lp_diag inner = *od;
    inner.sink = NULL;
    inner.file = NULL;
    ld->d = &inner;
    ld->g = b;
    lp_status st = convert_graph(ld, gp);
    ld->g = outer;
    ld->d = od;
    od->n_warnings = inner.n_warnings;
    if (st != LP_OK)
        return lp_node_error(od, st, node, "in its subgraph '%s': %s", out->name, inner.last_error);
    out->graph = b;
    return LP_OK;
}

static lp_status convert_attr(loader *ld, const lp_node *node, const Onnx__AttributeProto *a,
                              lp_attr *out) {
    lp_arena *ar = ld->g->arena;
    out->name = lp_arena_strdup(ar, str_or_empty(a->name));
    if (!out->name) return OOM(ld);
    if (a->ref_attr_name && a->ref_attr_name[0])
        return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                             "attribute '%s' refers to a function attribute '%s' outside a function",
                             out->name, a->ref_attr_name);
    out->type = (lp_attr_type)attr_type_of(a);
    switch (out->type) {
    case LP_ATTR_FLOAT: out->f = a->f; break;
    case LP_ATTR_INT: out->i = a->i; break;
    case LP_ATTR_STRING:
        out->s = lp_arena_strndup(ar, (const char *)a->s.data, a->s.len);
        out->s_len = a->s.len;
        if (!out->s) return OOM(ld);
        break;
    case LP_ATTR_FLOATS:
        out->n = (int)a->n_floats;
        out->floats = lp_arena_array(ar, a->n_floats, sizeof(float));
        if (a->n_floats && !out->floats) return OOM(ld);
        if (a->n_floats) memcpy(out->floats, a->floats, a->n_floats * sizeof(float));
        break;
    case LP_ATTR_INTS:
        out->n = (int)a->n_ints;
        out->ints = lp_arena_array(ar, a->n_ints, sizeof(int64_t));
        if (a->n_ints && !out->ints) return OOM(ld);
        if (a->n_ints) memcpy(out->ints, a->ints, a->n_ints * sizeof(int64_t));
        break;
    case LP_ATTR_STRINGS:
        out->n = (int)a->n_strings;
        out->strings = lp_arena_array(ar, a->n_strings, sizeof(char *));
        if (a->n_strings && !out->strings) return OOM(ld);
        for (size_t i = 0; i < a->n_strings; i++) {
            out->strings[i] = lp_arena_strndup(ar, (const char *)a->strings[i].data, a->strings[i].len);
            if (!out->strings[i]) return OOM(ld);
        }
        break;
    case LP_ATTR_TENSOR:
    case LP_ATTR_TENSORS: {
        size_t n = out->type == LP_ATTR_TENSOR ? (a->t ? 1 : 0) : a->n_tensors;
        Onnx__TensorProto *const *src = out->type == LP_ATTR_TENSOR ? &a->t : a->tensors;
        if (out->type == LP_ATTR_TENSOR && !a->t)
            return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node, "tensor attribute '%s' has no tensor", out->name);
        lp_tensor *ts = lp_arena_array(ar, n ? n : 1, sizeof *ts);
        if (!ts) return OOM(ld);
        for (size_t i = 0; i < n; i++) {
            const char *tname = src[i]->name && src[i]->name[0] ? src[i]->name : out->name;
            /* report the tensor's problem once, located at this node */
            lp_diag *outer = ld->d;
            lp_diag inner = *outer;
            inner.sink = NULL;
            ld->d = &inner;
            lp_status st = convert_tensor(ld, src[i], tname, &ts[i].dtype, &ts[i].shape, &ts[i].data);
            ld->d = outer;
            outer->n_warnings = inner.n_warnings;
            if (st != LP_OK)
                return lp_node_error(outer, st, node, "attribute '%s': %s", out->name, inner.last_error);
        }
        out->n = (int)n;
        if (out->type == LP_ATTR_TENSOR) out->tensor = ts; else out->tensors = ts;
        break;
    }
    case LP_ATTR_GRAPH: return convert_body(ld, node, a->g, out);
    case LP_ATTR_GRAPHS:
        return lp_node_error(ld->d, LP_ERR_UNSUPPORTED, node,
                             "control-flow subgraph list (attribute '%s') is not supported yet",
                             out->name);
    case LP_ATTR_SPARSE_TENSOR:
    case LP_ATTR_SPARSE_TENSORS:
        return lp_node_error(ld->d, LP_ERR_UNSUPPORTED, node,
                             "sparse tensor attribute '%s' is not supported yet", out->name);
    case LP_ATTR_TYPE_PROTO:
    case LP_ATTR_TYPE_PROTOS:
        break; /* kept by name and type only */
    default:
        return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                             "attribute '%s' has no value or an unknown type %d", out->name,
                             (int)out->type);
    }
    return LP_OK;
}

static bool default_domain(const char *domain) {
    return !domain || !domain[0] || strcmp(domain, "ai.onnx") == 0;
}

static lp_status check_domain(loader *ld, const lp_node *node) {
    if (default_domain(node->domain)) return LP_OK;
    for (size_t i = 0; i < ld->model->n_functions; i++) {
        const Onnx__FunctionProto *f = ld->model->functions[i];
        if (strcmp(str_or_empty(f->name), node->op_type) == 0 &&
            strcmp(str_or_empty(f->domain), node->domain) == 0)
            return lp_node_error(ld->d, LP_ERR_UNSUPPORTED, node,
                                 "calls model-local function '%s.%s', which is not supported "
                                 "yet; inline it first (onnx.inliner.inline_local_functions)",
                                 node->domain, node->op_type);
    }
    return lp_node_error(ld->d, LP_ERR_UNSUPPORTED, node,
                         "operator domain '%s' is not supported yet; lpcc reads the default "
                         "ONNX domain only", node->domain);
}

/* Converts a Constant node's value into the data of its output value. */
static lp_status fold_constant(loader *ld, const lp_node *node, lp_value *out) {
    if (node->n_attrs != 1)
        return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                             "a Constant needs exactly one value attribute, it has %d", node->n_attrs);
    const lp_attr *a = &node->attrs[0];
    lp_arena *ar = ld->g->arena;
    out->kind = LP_VALUE_CONSTANT;
    out->producer = -1;
    if (strcmp(a->name, "value") == 0 && a->type == LP_ATTR_TENSOR) {
        out->dtype = a->tensor->dtype;
        out->shape = a->tensor->shape;
        out->data = a->tensor->data;
        return LP_OK;
    }
    bool list = a->type == LP_ATTR_FLOATS || a->type == LP_ATTR_INTS;
    int n = list ? a->n : 1;
    out->shape.rank = list ? 1 : 0;
    out->shape.dims = lp_arena_alloc(ar, sizeof(lp_dim));
    if (!out->shape.dims) return OOM(ld);
    out->shape.dims[0].size = n;
    size_t elem = 0;
    const void *src = NULL;
    if (strcmp(a->name, "value_float") == 0 && a->type == LP_ATTR_FLOAT) {
        out->dtype = LP_DT_FLOAT, elem = 4, src = &a->f;
    } else if (strcmp(a->name, "value_floats") == 0 && a->type == LP_ATTR_FLOATS) {
        out->dtype = LP_DT_FLOAT, elem = 4, src = a->floats;
    } else if (strcmp(a->name, "value_int") == 0 && a->type == LP_ATTR_INT) {
        out->dtype = LP_DT_INT64, elem = 8, src = &a->i;
    } else if (strcmp(a->name, "value_ints") == 0 && a->type == LP_ATTR_INTS) {
        out->dtype = LP_DT_INT64, elem = 8, src = a->ints;
    } else if (strncmp(a->name, "value_string", 12) == 0) {
        out->dtype = LP_DT_STRING;
        out->shape.rank = a->type == LP_ATTR_STRINGS ? 1 : 0;
        out->shape.dims[0].size = a->type == LP_ATTR_STRINGS ? a->n : 1;
        out->data.where = LP_DATA_INLINE;
        return LP_OK;
    } else {
        return lp_node_error(ld->d, LP_ERR_UNSUPPORTED, node,
                             "Constant attribute '%s' is not supported", a->name);
    }
    uint8_t *buf = lp_arena_alloc(ar, (size_t)n * elem + 1);
    if (!buf) return OOM(ld);
    if (n) memcpy(buf, src, (size_t)n * elem);
    out->data.where = LP_DATA_INLINE;
    out->data.bytes = buf;
    out->data.nbytes = (uint64_t)n * elem;
    return LP_OK;
}

static uint64_t get_uvarint(const uint8_t **p) {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        uint8_t byte = *(*p)++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return v;
    }
}

/* Key and value of a read metadata entry model_read.c copied out (checked
 * there: tag, length, key field, value field). */
static lp_status kv_from_entry(loader *ld, const uint8_t *p, lp_kv *out) {
    p++; /* the field tag */
    (void)get_uvarint(&p);
    p++;
    uint64_t n = get_uvarint(&p);
    out->key = lp_arena_strndup(ld->g->arena, (const char *)p, (size_t)n);
    p += n + 1;
    n = get_uvarint(&p);
    out->value = lp_arena_strndup(ld->g->arena, (const char *)p, (size_t)n);
    return out->key && out->value ? LP_OK : OOM(ld);
}

static lp_status push_pb_kv(loader *ld, const Onnx__StringStringEntryProto *e, lp_node *node) {
    lp_kv *kv = &node->meta[node->n_meta++];
    kv->key = lp_arena_strdup(ld->g->arena, str_or_empty(e->key));
    kv->value = lp_arena_strdup(ld->g->arena, str_or_empty(e->value));
    return kv->key && kv->value ? LP_OK : OOM(ld);
}

/* A node's metadata in file order: the entries protobuf-c unpacked, and
 * the items model_read.c took out (entries a stage reads, as strings, and
 * runs of the others, whose bytes stay in the model file or are copied
 * from a buffer). */
static lp_status convert_node_meta(loader *ld, const Onnx__NodeProto *np, lp_node *node) {
    node->n_meta = node->n_meta_runs = 0;
    node->meta = NULL;
    node->meta_runs = NULL;
    size_t n_kv = np->n_metadata_props, n_runs = 0;
    for (unsigned i = 0; i < np->base.n_unknown_fields; i++) {
        uint64_t idx;
        if (!our_mark(ld, &np->base.unknown_fields[i], &idx)) continue;
        uint64_t first = idx & 0xffffffffu, count = idx >> 32;
        if (first > ld->n_meta || count > ld->n_meta - first)
            return lp_node_error(ld->d, LP_ERR_INTERNAL, node, "metadata items %" PRIu64
                                 "+%" PRIu64 " are unknown", first, count);
        for (uint64_t k = first; k < first + count; k++) ld->meta[k].read ? n_kv++ : n_runs++;
    }
    if (!n_kv && !n_runs) return LP_OK;
    lp_arena *ar = ld->g->arena;
    if ((n_kv && !(node->meta = lp_arena_array(ar, n_kv, sizeof *node->meta))) ||
        (n_runs && !(node->meta_runs = lp_arena_array(ar, n_runs, sizeof *node->meta_runs))))
        return OOM(ld);
    size_t pb = 0;
    lp_status st;
    for (unsigned i = 0; i < np->base.n_unknown_fields; i++) {
        uint64_t idx;
        if (!our_mark(ld, &np->base.unknown_fields[i], &idx)) continue;
        for (uint64_t k = idx & 0xffffffffu, stop = k + (idx >> 32); k < stop; k++) {
            const lp_meta_range *r = &ld->meta[k];
            for (; pb < r->before && pb < np->n_metadata_props; pb++)
                if ((st = push_pb_kv(ld, np->metadata_props[pb], node)) != LP_OK) return st;
            if (r->read) {
                if ((st = kv_from_entry(ld, ld->kv + r->offset, &node->meta[node->n_meta++])) != LP_OK)
                    return st;
                continue;
            }
            lp_meta_run *run = &node->meta_runs[node->n_meta_runs++];
            run->before = node->n_meta;
            if (ld->file) {
                run->data = (lp_tensor_data){.where = LP_DATA_FILE, .nbytes = r->len,
                                             .offset = r->offset, .file = ld->file};
                ld->n_file_tensors++;
                continue;
            }
            uint8_t *buf = lp_arena_alloc(ar, (size_t)r->len);
            if (!buf) return OOM(ld);
            memcpy(buf, ld->mem + r->offset, (size_t)r->len);
            run->data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = buf, .nbytes = r->len};
        }
    }
    for (; pb < np->n_metadata_props; pb++)
        if ((st = push_pb_kv(ld, np->metadata_props[pb], node)) != LP_OK) return st;
    return LP_OK;
}

static lp_status convert_node(loader *ld, const Onnx__NodeProto *np, int32_t file_index,
                              lp_node *node) {
    lp_arena *ar = ld->g->arena;
    node->file_index = file_index;
    node->name = lp_arena_strdup(ar, str_or_empty(np->name));
    node->op_type = lp_arena_strdup(ar, str_or_empty(np->op_type));
    node->domain = lp_arena_strdup(ar, default_domain(np->domain) ? "" : np->domain);
    if (!node->name || !node->op_type || !node->domain) return OOM(ld);
    if (!node->op_type[0]) return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node, "node has no op_type");
    lp_status st = check_domain(ld, node);
    if (st != LP_OK) return st;
    if (np->n_input > INT32_MAX || np->n_output > INT32_MAX || np->n_attribute > INT32_MAX)
        return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node, "node has too many inputs, outputs or attributes");
    node->n_inputs = (int)np->n_input;
    node->n_outputs = (int)np->n_output;
    node->inputs = lp_arena_array(ar, np->n_input ? np->n_input : 1, sizeof(int32_t));
    node->outputs = lp_arena_array(ar, np->n_output ? np->n_output : 1, sizeof(int32_t));
    node->attrs = lp_arena_array(ar, np->n_attribute ? np->n_attribute : 1, sizeof(lp_attr));
    if (!node->inputs || !node->outputs || !node->attrs) return OOM(ld);
    node->n_attrs = (int)np->n_attribute;
    for (size_t i = 0; i < np->n_attribute; i++) {
        st = convert_attr(ld, node, np->attribute[i], &node->attrs[i]);
        if (st != LP_OK) return st;
        for (size_t j = 0; j < i; j++)
            if (strcmp(node->attrs[j].name, node->attrs[i].name) == 0)
                return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                                     "attribute '%s' appears twice", node->attrs[i].name);
    }
    return convert_node_meta(ld, np, node);
}

/* ---- the model -------------------------------------------------------------- */

static lp_status add_value(loader *ld, const char *name, int32_t *idx) {
    *idx = lp_graph_intern_value(ld->g, name);
    return *idx >= 0 ? LP_OK : OOM(ld);
}

/* A name a body reads but does not define: a value of an enclosing scope
 * (an input without a producer, not one of the body's graph inputs). */
static lp_status add_capture(loader *ld, const char *name, int32_t *idx) {
    lp_status st = add_value(ld, name, idx);
    if (st != LP_OK) return st;
    ld->g->values[*idx].kind = LP_VALUE_INPUT;
    return LP_OK;
}

/* The captures of a node's bodies are names of this graph's scope: a body
 * captures them from its own enclosing scope in turn, and the main graph
 * must define them. */
static lp_status resolve_body_captures(loader *ld, const lp_node *node) {
    lp_graph *g = ld->g;
    for (int a = 0; a < node->n_attrs; a++) {
        const lp_graph *b = node->attrs[a].graph;
        for (int i = 0; b && i < b->n_values; i++) {
            const char *name = b->outer_names[i];
            if (!name || lp_graph_find_value(g, name) >= 0) continue;
            int32_t idx;
            lp_status st = LP_OK;
            if (g->depth == 0)
                return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                                     "its subgraph '%s' reads '%s', which is not a graph input, an "
                                     "initializer or the output of any node", node->attrs[a].name, name);
            if ((st = add_capture(ld, name, &idx)) != LP_OK) return st;
        }
    }
    return LP_OK;
}

static lp_status convert_graph(loader *ld, const Onnx__GraphProto *gp) {
    lp_graph *g = ld->g;
    lp_arena *ar = g->arena;
    lp_status st;
    g->name = lp_arena_strdup(ar, str_or_empty(gp->name));
    if (gp->n_sparse_initializer)
        return lp_error(ld->d, LP_ERR_UNSUPPORTED,
                        "the graph has %zu sparse initializers (first '%s'); sparse initializers "
                        "are not supported yet", gp->n_sparse_initializer,
                        gp->sparse_initializer[0]->values ? str_or_empty(gp->sparse_initializer[0]->values->name) : "");
    if (gp->n_node > INT32_MAX || gp->n_input > INT32_MAX || gp->n_output > INT32_MAX)
        return lp_error(ld->d, LP_ERR_INVALID_MODEL, "the graph is too large");

    /* initializers first: a graph input of the same name is then a weight */
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        const char *name = str_or_empty(t->name);
        if (!name[0]) return lp_error(ld->d, LP_ERR_INVALID_MODEL, "initializer %zu has no name", i);
        int32_t idx;
        if ((st = add_value(ld, name, &idx)) != LP_OK) return st;
        lp_value *v = &g->values[idx];
        if (v->kind == LP_VALUE_WEIGHT)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "initializer '%s' is defined twice", name);
        v->kind = LP_VALUE_WEIGHT;
        st = convert_tensor(ld, t, name, &v->dtype, &v->shape, &v->data);
        if (st != LP_OK) return st;
    }

    int32_t *inputs = lp_arena_array(ar, gp->n_input ? gp->n_input : 1, sizeof(int32_t));
    if (!inputs) return OOM(ld);
    g->inputs = inputs;
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *name = str_or_empty(gp->input[i]->name);
        if (!name[0]) return lp_error(ld->d, LP_ERR_INVALID_MODEL, "graph input %zu has no name", i);
        int32_t idx;
        if ((st = add_value(ld, name, &idx)) != LP_OK) return st;
        lp_value *v = &g->values[idx];
        if (v->is_graph_input)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL, "graph input '%s' is listed twice", name);
        v->is_graph_input = true;
        if (v->kind == LP_VALUE_WEIGHT) continue; /* IR < 4: initializers repeated as inputs */
        v->kind = LP_VALUE_INPUT;
        if ((st = convert_value_info(ld, gp->input[i], v, "graph input")) != LP_OK) return st;
        inputs[g->n_inputs++] = idx;
    }

    /* nodes: outputs of every node are named before any input is looked up,
     * so nodes out of order resolve and the sort can report cycles */
    lp_node *nodes = lp_arena_array(ar, gp->n_node ? gp->n_node : 1, sizeof *nodes);
    if (!nodes) return OOM(ld);
    g->nodes = nodes;
    int n_nodes = 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        lp_node *node = &nodes[n_nodes];
        if ((st = convert_node(ld, np, (int32_t)i, node)) != LP_OK) return st;
        for (size_t k = 0; k < np->n_output; k++) {
            const char *name = str_or_empty(np->output[k]);
            if (!name[0]) {
                node->outputs[k] = -1;
                continue;
            }
            int32_t idx;
            if ((st = add_value(ld, name, &idx)) != LP_OK) return st;
            lp_value *v = &g->values[idx];
            if (v->producer >= 0 || v->kind == LP_VALUE_CONSTANT || v->kind == LP_VALUE_WEIGHT ||
                v->kind == LP_VALUE_INPUT)
                return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                                     "output '%s' is already defined (a value must have one "
                                     "producer)", name);
            v->producer = n_nodes;
            node->outputs[k] = idx;
        }
        if (!node->domain[0] && lp_op_lookup(node->domain, node->op_type) == LP_OP_Constant) {
            if (node->n_outputs != 1 || node->outputs[0] < 0)
                return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node, "a Constant needs one output");
            if ((st = fold_constant(ld, node, &g->values[node->outputs[0]])) != LP_OK) return st;
            continue; /* no node: its output is now a constant value */
        }
        n_nodes++;
    }
    g->n_nodes = n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        lp_node *node = &nodes[i];
        const Onnx__NodeProto *np = gp->node[node->file_index];
        for (size_t k = 0; k < np->n_input; k++) {
            const char *name = str_or_empty(np->input[k]);
            if (!name[0]) {
                node->inputs[k] = -1;
                continue;
            }
            int32_t idx = lp_graph_find_value(g, name);
            if (idx < 0 && g->depth > 0 && (st = add_capture(ld, name, &idx)) != LP_OK) return st;
            if (idx < 0)
                return lp_node_error(ld->d, LP_ERR_INVALID_MODEL, node,
                                     "input '%s' is not a graph input, an initializer or the "
                                     "output of any node", name);
            node->inputs[k] = idx;
        }
        if ((st = resolve_body_captures(ld, node)) != LP_OK) return st;
    }

    for (size_t i = 0; i < gp->n_value_info; i++) {
        int32_t idx = lp_graph_find_value(g, str_or_empty(gp->value_info[i]->name));
        if (idx < 0) continue; /* describes nothing in this graph */
        lp_value *v = &g->values[idx];
        if (v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT) continue;
        if ((st = convert_value_info(ld, gp->value_info[i], v, "value")) != LP_OK) return st;
    }

    g->outputs = lp_arena_array(ar, gp->n_output ? gp->n_output : 1, sizeof(int32_t));
    if (!g->outputs) return OOM(ld);
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = str_or_empty(gp->output[i]->name);
        int32_t idx = lp_graph_find_value(g, name);
        if (idx < 0 && g->depth > 0 && name[0] && (st = add_capture(ld, name, &idx)) != LP_OK)
            return st;
        if (idx < 0)
            return lp_error(ld->d, LP_ERR_INVALID_MODEL,
                            "graph output '%s' is not produced by any node, input or initializer",
                            name);
        lp_value *v = &g->values[idx];
        v->is_graph_output = true;
        if (v->kind != LP_VALUE_WEIGHT && v->kind != LP_VALUE_CONSTANT &&
            (st = convert_value_info(ld, gp->output[i], v, "graph output")) != LP_OK)
            return st;
        g->outputs[g->n_outputs++] = idx;
    }
    if (g->depth > 0) {
        g->outer_names = lp_arena_array(ar, (size_t)(g->n_values ? g->n_values : 1), sizeof(char *));
        if (!g->outer_names) return OOM(ld);
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i].kind == LP_VALUE_INPUT && !g->values[i].is_graph_input)
                g->outer_names[i] = g->values[i].name;
    }
    return lp_graph_sort(g, ld->d);
}

static lp_status convert_model(loader *ld, const Onnx__ModelProto *m) {
    lp_graph *g = ld->g;
    lp_status st;
    g->ir_version = m->has_ir_version ? m->ir_version : 0;
    g->producer_name = lp_arena_strdup(g->arena, str_or_empty(m->producer_name));
    g->producer_version = lp_arena_strdup(g->arena, str_or_empty(m->producer_version));
    if (!m->graph) return lp_error(ld->d, LP_ERR_INVALID_MODEL, "the model has no graph");
    if (m->n_training_info)
        return lp_error(ld->d, LP_ERR_UNSUPPORTED,
                        "the model carries training info (%zu entries), which is not supported yet",
                        m->n_training_info);
    g->n_opsets = (int)m->n_opset_import;
    g->opsets = lp_arena_array(g->arena, m->n_opset_import ? m->n_opset_import : 1, sizeof(lp_opset));
    if (!g->opsets) return OOM(ld);
    g->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *os = m->opset_import[i];
        g->opsets[i].domain = lp_arena_strdup(g->arena, str_or_empty(os->domain));
        g->opsets[i].version = os->has_version ? os->version : 0;
        if (default_domain(os->domain)) g->opset = g->opsets[i].version;
    }
    if (g->opset < 0) {
        if (m->n_opset_import)
            return lp_error(ld->d, LP_ERR_UNSUPPORTED,
                            "the model imports no version of the default ONNX domain");
        g->opset = 1; /* IR version 2 models carry no opset_import */
    }
    if ((st = convert_kvs(ld, m->n_metadata_props, m->metadata_props, &g->n_meta, &g->meta)) != LP_OK)
        return st;
    return convert_graph(ld, m->graph);
}

/* ---- reading and unpacking ------------------------------------------------------ */

/* protobuf-c allocates from an arena of its own, freed once the model is
 * converted: hundreds of thousands of small messages that die together.
 * protobuf-c initialises all it allocates, so nothing is zeroed. */
static void *pb_arena_alloc(void *arena, size_t size) { return lp_arena_alloc_uninit(arena, size); }
static void pb_arena_free(void *arena, void *p) { (void)arena, (void)p; }

/* Unpacks the read message (releasing it) and converts it into a new graph. The removed
 * raw_data ranges lie in the open model file fd, which this takes over (the
 * graph keeps it while a tensor is read from it; it is closed otherwise),
 * or in `mem` when fd is -1. */
static lp_status load_model(lp_model_bytes *mb, const uint8_t *mem, int fd, uint64_t size,
                            const char *path, const lp_load_options *opt, lp_graph **out,
                            lp_diag *d) {
    lp_graph *g = lp_graph_new(path);
    lp_data_file *file = g && fd >= 0 ? lp_arena_alloc(g->arena, sizeof *file) : NULL;
    if (!g || (fd >= 0 && !file)) {
        if (fd >= 0) close(fd);
        lp_graph_free(g);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    if (file) {
        *file = (lp_data_file){.fd = fd, .path = g->path, .size = size};
        g->file = file; /* closed by lp_graph_free from here on */
    }
    lp_arena *pb_arena = lp_arena_new();
    if (!pb_arena) {
        lp_graph_free(g);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    ProtobufCAllocator pb_alloc = {.alloc = pb_arena_alloc, .free = pb_arena_free,
                                   .allocator_data = pb_arena};
    Onnx__ModelProto *m = onnx__model_proto__unpack(&pb_alloc, mb->len, mb->msg);
    /* protobuf-c copied what it kept: the conversion can reuse the memory */
    size_t len = mb->len;
    free(mb->owned);
    mb->owned = mb->msg = NULL;
    if (!m) {
        lp_arena_free(pb_arena);
        lp_graph_free(g);
        return lp_error(d, LP_ERR_INVALID_MODEL,
                        "not an ONNX model: the protobuf is truncated or malformed (%zu bytes)",
                        len);
    }
    loader ld = {.g = g, .d = d, .opt = opt, .model = m, .raw = mb->raw, .n_raw = mb->n_raw,
                 .meta = mb->meta, .n_meta = mb->n_meta, .kv = mb->kv, .nonce = mb->nonce,
                 .mem = mem, .file = file};
    lp_status st = convert_model(&ld, m);
    lp_arena_free(pb_arena);
    if (st != LP_OK) {
        lp_graph_free(g);
        return st;
    }
    if (file && !ld.n_file_tensors) {
        close(file->fd);
        file->fd = -1;
        g->file = NULL;
    }
    *out = g;
    return LP_OK;
}

static lp_status too_big(lp_diag *d, uint64_t size) {
    char buf[32];
    return lp_error(d, LP_ERR_INVALID_MODEL,
                    "the file is %s, over protobuf's 2 GiB limit for one message; store the "
                    "weights as external data (onnx.save_model(m, path, "
                    "save_as_external_data=True))", lp_format_bytes(size, buf));
}

lp_status lp_frontend_load_buffer(const void *bytes, size_t len, const char *path,
                                  const lp_load_options *opt, lp_graph **out, lp_diag *d) {
    *out = NULL;
    if ((uint64_t)len >= LP_PROTOBUF_LIMIT) return too_big(d, (uint64_t)len);
    lp_model_bytes mb;
    lp_status st = lp_model_read_mem(bytes, len, &mb, d);
    if (st != LP_OK) return st;
    st = load_model(&mb, bytes, -1, 0, path, opt, out, d);
    lp_model_bytes_free(&mb);
    return st;
}

lp_status lp_frontend_load(const char *path, const lp_load_options *opt, lp_graph **out,
                           lp_diag *d) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lp_error(d, LP_ERR_INVALID_MODEL, "cannot open: %s", strerror(errno));
    struct stat sb;
    lp_status st = LP_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = lp_error(d, LP_ERR_INVALID_MODEL, "not a regular file");
    else if (sb.st_size == 0)
        st = lp_error(d, LP_ERR_INVALID_MODEL, "the file is empty");
    else if ((uint64_t)sb.st_size >= LP_PROTOBUF_LIMIT)
        st = too_big(d, (uint64_t)sb.st_size);
    lp_model_bytes mb = {0};
    if (st == LP_OK) st = lp_model_read_fd(fd, (uint64_t)sb.st_size, &mb, d);
    if (st != LP_OK) {
        close(fd);
        return st;
    }
    st = load_model(&mb, NULL, fd, (uint64_t)sb.st_size, path, opt, out, d);
    lp_model_bytes_free(&mb);
    return st;
}

/* ---- tensor files (lpcc --value NAME=FILE.pb) ----------------------------------- */

lp_status lp_frontend_load_tensor_file(lp_graph *g, const char *path, lp_tensor *out, lp_diag *d) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lp_error(d, LP_ERR_USAGE, "cannot open tensor file '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size >= LP_PROTOBUF_LIMIT) {
        close(fd);
        return lp_error(d, LP_ERR_USAGE, "tensor file '%s' is not a regular file under 2 GiB", path);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    size_t got = 0;
    while (buf && got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (got != len) {
        free(buf);
        return lp_error(d, LP_ERR_USAGE, "cannot read tensor file '%s'", path);
    }
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
    free(buf);
    if (!t) return lp_error(d, LP_ERR_USAGE, "'%s' is not an ONNX TensorProto file", path);
    lp_status st;
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        st = lp_error(d, LP_ERR_USAGE, "tensor file '%s' keeps its data externally, which --value does not read", path);
    } else {
        /* a loader of its own: the bytes land in g's arena */
        lp_diag inner = *d;
        inner.sink = NULL;
        loader ld = {.g = g, .d = &inner};
        st = convert_tensor(&ld, t, path, &out->dtype, &out->shape, &out->data);
        if (st != LP_OK) st = lp_error(d, LP_ERR_USAGE, "tensor file '%s': %s", path, inner.last_error);
        else if (out->dtype == LP_DT_STRING)
            st = lp_error(d, LP_ERR_USAGE, "tensor file '%s' holds strings, which --value does not take", path);
    }
    onnx__tensor_proto__free_unpacked(t, NULL);
    return st;
}
