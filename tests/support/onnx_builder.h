/* onnx_builder.h - hand-built ONNX models for the frontend's unit tests.
 *
 *     Onnx__ModelProto *m = tb_model(10, 18);
 *     tb_input(m, "x", LP_DT_FLOAT, "batch,4");
 *     Onnx__NodeProto *n = tb_node(m, "Relu", "relu0", "x", "y");
 *     tb_output(m, "y", LP_DT_FLOAT, "batch,4");
 *     size_t len;
 *     uint8_t *bytes = tb_pack(m, &len);     // then lp_frontend_load_buffer()
 *     free(bytes);
 *     tb_free(m);
 *
 * Every part is malloc'd the way protobuf-c's unpacker allocates, so one
 * onnx__model_proto__free_unpacked() (tb_free) releases the whole tree.
 * Shapes are written as text: "batch,3,32" gives a symbolic dim, two numbers;
 * "?" an unknown dim; "" a scalar. Lists of names are comma-separated, an
 * empty item being an omitted optional input or output.
 */
#ifndef TB_ONNX_BUILDER_H
#define TB_ONNX_BUILDER_H

#include "lp_ir.h"
#include "onnx.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocation failure in a test helper ends the test run: there is nothing
 * meaningful to check afterwards. */
static inline void *tb_xalloc(size_t size) {
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "onnx_builder: out of memory\n");
        abort();
    }
    return p;
}

static inline char *tb_strdup(const char *s) {
    char *p = tb_xalloc(strlen(s) + 1);
    memcpy(p, s, strlen(s) + 1);
    return p;
}

/* Grows a protobuf-c repeated field by one slot and returns the new count. */
static inline void *tb_grow(void *arr, size_t n, size_t elem) {
    void *p = realloc(arr, (n + 1) * elem);
    if (!p) {
        fprintf(stderr, "onnx_builder: out of memory\n");
        abort();
    }
    return p;
}

#define TB_PUSH(arr, n, item)                                  \
    do {                                                       \
        (arr) = tb_grow((arr), (n), sizeof *(arr));            \
        (arr)[(n)++] = (item);                                 \
    } while (0)

static inline Onnx__StringStringEntryProto *tb_kv(const char *key, const char *value) {
    Onnx__StringStringEntryProto *kv = tb_xalloc(sizeof *kv);
    onnx__string_string_entry_proto__init(kv);
    kv->key = tb_strdup(key);
    kv->value = tb_strdup(value);
    return kv;
}

static inline void tb_opset(Onnx__ModelProto *m, const char *domain, int64_t version) {
    Onnx__OperatorSetIdProto *os = tb_xalloc(sizeof *os);
    onnx__operator_set_id_proto__init(os);
    os->domain = tb_strdup(domain);
    os->has_version = 1;
    os->version = version;
    TB_PUSH(m->opset_import, m->n_opset_import, os);
}

/* A model with an empty graph named "g" importing the default domain at
 * `opset` (none when opset < 0). */
static inline Onnx__ModelProto *tb_model(int64_t ir_version, int64_t opset) {
    Onnx__ModelProto *m = tb_xalloc(sizeof *m);
    onnx__model_proto__init(m);
    m->has_ir_version = 1;
    m->ir_version = ir_version;
    m->producer_name = tb_strdup("tb");
    m->producer_version = tb_strdup("1.0");
    if (opset >= 0) tb_opset(m, "", opset);
    m->graph = tb_xalloc(sizeof *m->graph);
    onnx__graph_proto__init(m->graph);
    m->graph->name = tb_strdup("g");
    return m;
}

static inline Onnx__TensorShapeProto *tb_shape(const char *dims) {
    Onnx__TensorShapeProto *s = tb_xalloc(sizeof *s);
    onnx__tensor_shape_proto__init(s);
    char *copy = tb_strdup(dims), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        Onnx__TensorShapeProto__Dimension *d = tb_xalloc(sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        char *end;
        long long v = strtoll(tok, &end, 10);
        if (strcmp(tok, "?") == 0) {
            /* neither value nor param */
        } else if (*end == '\0') {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = v;
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = tb_strdup(tok);
        }
        TB_PUSH(s->dim, s->n_dim, d);
    }
    free(copy);
    return s;
}

/* A tensor-typed ValueInfo; dims NULL leaves the shape out (rank unknown). */
static inline Onnx__ValueInfoProto *tb_value_info(const char *name, lp_dtype dt, const char *dims) {
    Onnx__ValueInfoProto *vi = tb_xalloc(sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = tb_strdup(name);
    vi->type = tb_xalloc(sizeof *vi->type);
    onnx__type_proto__init(vi->type);
    vi->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    vi->type->tensor_type = tb_xalloc(sizeof *vi->type->tensor_type);
    onnx__type_proto__tensor__init(vi->type->tensor_type);
    vi->type->tensor_type->has_elem_type = 1;
    vi->type->tensor_type->elem_type = (int32_t)dt;
    if (dims) vi->type->tensor_type->shape = tb_shape(dims);
    return vi;
}

static inline Onnx__ValueInfoProto *tb_input(Onnx__ModelProto *m, const char *name, lp_dtype dt,
                                             const char *dims) {
    Onnx__ValueInfoProto *vi = tb_value_info(name, dt, dims);
    TB_PUSH(m->graph->input, m->graph->n_input, vi);
    return vi;
}

static inline Onnx__ValueInfoProto *tb_output(Onnx__ModelProto *m, const char *name, lp_dtype dt,
                                              const char *dims) {
    Onnx__ValueInfoProto *vi = tb_value_info(name, dt, dims);
    TB_PUSH(m->graph->output, m->graph->n_output, vi);
    return vi;
}

static inline void tb_names(const char *list, size_t *n, char ***out) {
    if (!list) return;
    /* split by hand: strtok would drop empty items */
    const char *s = list;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char *name = tb_xalloc(len + 1);
        memcpy(name, s, len);
        TB_PUSH(*out, *n, name);
        if (!e) break;
        s = e + 1;
    }
}

/* A node in the default domain; inputs and outputs as "a,b" (NULL: none). */
static inline Onnx__NodeProto *tb_node(Onnx__ModelProto *m, const char *op, const char *name,
                                       const char *inputs, const char *outputs) {
    Onnx__NodeProto *n = tb_xalloc(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = tb_strdup(op);
    n->name = tb_strdup(name);
    tb_names(inputs, &n->n_input, &n->input);
    tb_names(outputs, &n->n_output, &n->output);
    TB_PUSH(m->graph->node, m->graph->n_node, n);
    return n;
}

static inline Onnx__AttributeProto *tb_attr(Onnx__NodeProto *n, const char *name,
                                            Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = tb_xalloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = tb_strdup(name);
    a->has_type = 1;
    a->type = type;
    TB_PUSH(n->attribute, n->n_attribute, a);
    return a;
}

static inline void tb_attr_int(Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = tb_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static inline void tb_attr_float(Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = tb_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static inline void tb_attr_string(Onnx__NodeProto *n, const char *name, const char *v) {
    Onnx__AttributeProto *a = tb_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)tb_strdup(v);
}

static inline void tb_attr_ints(Onnx__NodeProto *n, const char *name, size_t count,
                                const int64_t *v) {
    Onnx__AttributeProto *a = tb_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = count;
    a->ints = tb_xalloc(count * sizeof *a->ints);
    if (count) memcpy(a->ints, v, count * sizeof *v);
}

static inline void tb_attr_floats(Onnx__NodeProto *n, const char *name, size_t count,
                                  const float *v) {
    Onnx__AttributeProto *a = tb_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
    a->n_floats = count;
    a->floats = tb_xalloc(count * sizeof *a->floats);
    if (count) memcpy(a->floats, v, count * sizeof *v);
}

static inline void tb_attr_strings(Onnx__NodeProto *n, const char *name, size_t count,
                                   const char *const *v) {
    Onnx__AttributeProto *a = tb_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
    a->n_strings = count;
    a->strings = tb_xalloc(count * sizeof *a->strings);
    for (size_t i = 0; i < count; i++) {
        a->strings[i].len = strlen(v[i]);
        a->strings[i].data = (uint8_t *)tb_strdup(v[i]);
    }
}

/* A tensor with dims given as numbers ("2,3"; "" for a scalar) and no data. */
static inline Onnx__TensorProto *tb_tensor(const char *name, lp_dtype dt, const char *dims) {
    Onnx__TensorProto *t = tb_xalloc(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = tb_strdup(name);
    t->has_data_type = 1;
    t->data_type = (int32_t)dt;
    char *copy = tb_strdup(dims), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t d = strtoll(tok, NULL, 10);
        TB_PUSH(t->dims, t->n_dims, d);
    }
    free(copy);
    return t;
}

static inline void tb_set_raw(Onnx__TensorProto *t, const void *bytes, size_t len) {
    t->has_raw_data = 1;
    t->raw_data.len = len;
    t->raw_data.data = tb_xalloc(len);
    if (len) memcpy(t->raw_data.data, bytes, len);
}

static inline void tb_set_int32_data(Onnx__TensorProto *t, size_t count, const int32_t *v) {
    t->n_int32_data = count;
    t->int32_data = tb_xalloc(count * sizeof *v);
    if (count) memcpy(t->int32_data, v, count * sizeof *v);
}

static inline void tb_set_external(Onnx__TensorProto *t, const char *location,
                                   const char *offset, const char *length) {
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    TB_PUSH(t->external_data, t->n_external_data, tb_kv("location", location));
    if (offset) TB_PUSH(t->external_data, t->n_external_data, tb_kv("offset", offset));
    if (length) TB_PUSH(t->external_data, t->n_external_data, tb_kv("length", length));
}

static inline Onnx__TensorProto *tb_initializer(Onnx__ModelProto *m, Onnx__TensorProto *t) {
    TB_PUSH(m->graph->initializer, m->graph->n_initializer, t);
    return t;
}

/* Serialised bytes of the model; caller frees. */
static inline uint8_t *tb_pack(const Onnx__ModelProto *m, size_t *len) {
    *len = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = tb_xalloc(*len);
    size_t wrote = onnx__model_proto__pack(m, buf);
    if (wrote != *len) {
        fprintf(stderr, "onnx_builder: packed %zu of %zu bytes\n", wrote, *len);
        abort();
    }
    return buf;
}

static inline void tb_free(Onnx__ModelProto *m) { onnx__model_proto__free_unpacked(m, NULL); }

#endif
