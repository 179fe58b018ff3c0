/* The ONNX loader on hand-built protobufs: what converts, what is rejected,
 * and what each rejection says. Expected bytes and sizes come from the ONNX
 * spec (onnx.proto's TensorProto comments), not from the loader. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lp_frontend.h"
#include "model_read.h"
#include "lp_analysis.h"
#include "support/onnx_builder.h"
#include "support/tmpdir.h"

#define assert_contains(hay, needle)                                                    \
    do {                                                                                \
        const char *h_ = (hay), *n_ = (needle);                                         \
        if (!h_ || !strstr(h_, n_)) fail_msg("expected \"%s\" in \"%s\"", n_, h_ ? h_ : "(null)"); \
    } while (0)

/* Packs m and loads it as if it were the file `path`; diagnostics are kept
 * in *d but not printed. */
static lp_status load_as(const Onnx__ModelProto *m, const char *path, bool require_weights,
                         lp_graph **g, lp_diag *d) {
    size_t len;
    uint8_t *buf = tb_pack(m, &len);
    *d = lp_diag_make(path);
    d->sink = NULL;
    lp_load_options opt = {.require_weights = require_weights};
    lp_status st = lp_frontend_load_buffer(buf, len, path, &opt, g, d);
    free(buf);
    if (st != LP_OK) assert_null(*g);
    return st;
}

static lp_status load(const Onnx__ModelProto *m, lp_graph **g, lp_diag *d) {
    return load_as(m, "t.onnx", false, g, d);
}

/* Loads m, expects status `want` with `needle` in the error text, frees m. */
static void expect_reject(Onnx__ModelProto *m, lp_status want, const char *needle) {
    lp_graph *g = NULL;
    lp_diag d;
    lp_status st = load(m, &g, &d);
    if (st != want)
        fail_msg("expected %s, got %s (%s)", lp_status_name(want), lp_status_name(st), d.last_error);
    assert_true(d.n_errors >= 1);
    assert_contains(d.last_error, needle);
    lp_graph_free(g);
    tb_free(m);
}

/* x[2] -> Relu -> y */
static Onnx__ModelProto *relu_model(void) {
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_node(m, "Relu", "relu0", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, "2");
    return m;
}

static const lp_value *value_named(const lp_graph *g, const char *name) {
    int32_t i = lp_graph_find_value(g, name);
    if (i < 0) fail_msg("no value '%s'", name);
    return &g->values[i];
}

/* ---- a valid graph ---------------------------------------------------------- */

static void test_small_graph(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(8, 17);
    tb_opset(m, "com.microsoft", 1); /* imported but unused: fine */
    TB_PUSH(m->metadata_props, m->n_metadata_props, tb_kv("author", "lpcc"));
    tb_input(m, "x", LP_DT_FLOAT, "batch,4");
    tb_input(m, "W", LP_DT_FLOAT, "4,4"); /* IR < 4 style: initializer repeated as input */
    float w[16];
    for (int i = 0; i < 16; i++) w[i] = (float)i * 0.5f;
    tb_set_raw(tb_initializer(m, tb_tensor("W", LP_DT_FLOAT, "4,4")), w, sizeof w);
    Onnx__TensorProto *b = tb_initializer(m, tb_tensor("B", LP_DT_FLOAT, "4"));
    b->n_float_data = 4;
    b->float_data = tb_xalloc(4 * sizeof(float));
    for (int i = 0; i < 4; i++) b->float_data[i] = -1.0f - (float)i;

    Onnx__NodeProto *mm = tb_node(m, "MatMul", "mm", "x,W", "h");
    TB_PUSH(mm->metadata_props, mm->n_metadata_props,
            tb_kv("pkg.torch.onnx.name_scopes", "['', 'layer0', 'mm']"));
    Onnx__NodeProto *add = tb_node(m, "Add", "add", "h,B", "y");
    tb_attr_int(add, "i", -7);
    tb_attr_float(add, "f", 2.5f);
    tb_attr_string(add, "s", "hello");
    int64_t ints[3] = {1, -2, 3};
    tb_attr_ints(add, "is", 3, ints);
    float floats[2] = {0.25f, -4.0f};
    tb_attr_floats(add, "fs", 2, floats);
    const char *strs[2] = {"a", "bc"};
    tb_attr_strings(add, "ss", 2, strs);
    Onnx__AttributeProto *ta = tb_attr(add, "t", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    ta->t = tb_tensor("", LP_DT_INT64, "2");
    int64_t tv[2] = {5, 6};
    tb_set_raw(ta->t, tv, sizeof tv);
    tb_output(m, "y", LP_DT_FLOAT, "batch,4");

    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(d.n_warnings, 0);

    assert_int_equal(g->ir_version, 8);
    assert_int_equal(g->opset, 17);
    assert_int_equal(g->n_opsets, 2);
    assert_string_equal(g->opsets[1].domain, "com.microsoft");
    assert_int_equal(g->opsets[1].version, 1);
    assert_string_equal(g->producer_name, "tb");
    assert_string_equal(g->producer_version, "1.0");
    assert_string_equal(g->name, "g");
    assert_int_equal(g->n_meta, 1);
    assert_string_equal(g->meta[0].key, "author");
    assert_string_equal(g->meta[0].value, "lpcc");

    /* W is an initializer, so not a graph input */
    assert_int_equal(g->n_inputs, 1);
    const lp_value *x = &g->values[g->inputs[0]];
    assert_string_equal(x->name, "x");
    assert_int_equal(x->kind, LP_VALUE_INPUT);
    assert_int_equal(x->dtype, LP_DT_FLOAT);
    assert_int_equal(x->shape.rank, 2);
    assert_true(x->shape.dims[0].size < 0);
    assert_string_equal(x->shape.dims[0].sym, "batch");
    assert_int_equal(x->shape.dims[1].size, 4);
    assert_null(x->shape.dims[1].sym);

    const lp_value *W = value_named(g, "W");
    assert_int_equal(W->kind, LP_VALUE_WEIGHT);
    assert_true(W->is_graph_input);
    assert_int_equal(W->data.where, LP_DATA_INLINE);
    assert_int_equal(W->data.nbytes, sizeof w);
    assert_memory_equal(W->data.bytes, w, sizeof w);
    const lp_value *B = value_named(g, "B");
    assert_int_equal(B->data.nbytes, 16);
    float bb[4];
    memcpy(bb, B->data.bytes, sizeof bb);
    for (int i = 0; i < 4; i++) assert_true(bb[i] == -1.0f - (float)i);

    assert_int_equal(g->n_nodes, 2);
    const lp_node *n0 = &g->nodes[0], *n1 = &g->nodes[1];
    assert_string_equal(n0->op_type, "MatMul");
    assert_string_equal(n0->name, "mm");
    assert_string_equal(n0->domain, "");
    assert_int_equal(n0->file_index, 0);
    assert_int_equal(n0->n_inputs, 2);
    assert_int_equal(n0->inputs[0], lp_graph_find_value(g, "x"));
    assert_int_equal(n0->inputs[1], lp_graph_find_value(g, "W"));
    assert_string_equal(lp_node_meta(n0, "pkg.torch.onnx.name_scopes"), "['', 'layer0', 'mm']");
    assert_null(lp_node_meta(n1, "pkg.torch.onnx.name_scopes"));
    const lp_value *h = value_named(g, "h");
    assert_int_equal(h->kind, LP_VALUE_ACTIVATION);
    assert_int_equal(h->producer, 0);
    assert_int_equal(h->shape.rank, LP_RANK_UNKNOWN);
    const lp_value *y = value_named(g, "y");
    assert_int_equal(y->producer, 1);
    assert_true(y->is_graph_output);
    assert_int_equal(g->n_outputs, 1);
    assert_int_equal(g->outputs[0], lp_graph_find_value(g, "y"));
    assert_int_equal(y->shape.rank, 2);

    assert_int_equal(n1->n_attrs, 7);
    assert_int_equal(lp_node_attr_int(n1, "i", 0), -7);
    assert_true(lp_node_attr_float(n1, "f", 0) == 2.5f);
    assert_string_equal(lp_node_attr_string(n1, "s", ""), "hello");
    assert_int_equal(lp_node_attr_int(n1, "missing", 42), 42);
    assert_int_equal(lp_node_attr_int(n1, "f", 42), 42); /* wrong type: fallback */
    const lp_attr *a = lp_node_attr(n1, "is");
    assert_int_equal(a->type, LP_ATTR_INTS);
    assert_int_equal(a->n, 3);
    assert_memory_equal(a->ints, ints, sizeof ints);
    a = lp_node_attr(n1, "fs");
    assert_int_equal(a->type, LP_ATTR_FLOATS);
    assert_int_equal(a->n, 2);
    assert_true(a->floats[0] == 0.25f && a->floats[1] == -4.0f);
    a = lp_node_attr(n1, "ss");
    assert_int_equal(a->type, LP_ATTR_STRINGS);
    assert_int_equal(a->n, 2);
    assert_string_equal(a->strings[0], "a");
    assert_string_equal(a->strings[1], "bc");
    a = lp_node_attr(n1, "t");
    assert_int_equal(a->type, LP_ATTR_TENSOR);
    assert_int_equal(a->tensor->dtype, LP_DT_INT64);
    assert_int_equal(a->tensor->shape.rank, 1);
    assert_int_equal(a->tensor->shape.dims[0].size, 2);
    assert_int_equal(a->tensor->data.nbytes, 16);
    assert_memory_equal(a->tensor->data.bytes, tv, sizeof tv);

    lp_graph_free(g);
    tb_free(m);
}

/* Old files omit AttributeProto.type: it is inferred from the field set. */
static void test_attr_type_inferred(void **state) {
    (void)state;
    Onnx__ModelProto *m = relu_model();
    Onnx__AttributeProto *a = tb_attr(m->graph->node[0], "alpha", 0);
    a->has_type = 0;
    a->has_f = 1;
    a->f = 0.125f;
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    assert_int_equal(g->nodes[0].attrs[0].type, LP_ATTR_FLOAT);
    assert_true(lp_node_attr_float(&g->nodes[0], "alpha", 0) == 0.125f);
    lp_graph_free(g);
    tb_free(m);
}

/* Optional inputs and outputs left empty, an IR-3 file without opset
 * imports, a string initializer. */
static void test_edge_forms(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(3, -1);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_input(m, "hi", LP_DT_FLOAT, "");
    tb_node(m, "Clip", "clip", "x,,hi", "y");
    tb_node(m, "Dropout", "drop", "y", "z,");
    Onnx__TensorProto *t = tb_initializer(m, tb_tensor("words", LP_DT_STRING, "2"));
    t->n_string_data = 2;
    t->string_data = tb_xalloc(2 * sizeof *t->string_data);
    t->string_data[0].data = (uint8_t *)tb_strdup("ab");
    t->string_data[0].len = 2;
    t->string_data[1].data = (uint8_t *)tb_strdup("c");
    t->string_data[1].len = 1;
    tb_output(m, "z", LP_DT_FLOAT, "2");
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    tb_free(m);
    assert_int_equal(g->opset, 1);
    assert_int_equal(g->n_opsets, 0);
    assert_int_equal(g->ir_version, 3);
    assert_int_equal(value_named(g, "hi")->shape.rank, 0);
    const lp_node *clip = &g->nodes[0], *drop = &g->nodes[1];
    assert_int_equal(clip->n_inputs, 3);
    assert_int_equal(clip->inputs[1], -1);
    assert_int_equal(clip->inputs[2], lp_graph_find_value(g, "hi"));
    assert_int_equal(drop->n_outputs, 2);
    assert_int_equal(drop->outputs[1], -1);
    const lp_value *w = value_named(g, "words");
    assert_int_equal(w->dtype, LP_DT_STRING);
    uint64_t bytes;
    assert_false(lp_value_bytes(w, &bytes)); /* strings have no fixed size */
    /* reading a string tensor as bytes is refused, not a crash */
    char buf[8];
    assert_int_equal(lp_frontend_read_weight(g, w, buf, sizeof buf, &d), LP_ERR_UNSUPPORTED);
    assert_contains(d.last_error, "'words' is a string tensor");
    lp_graph_free(g);

    /* dims whose product overflows */
    m = relu_model();
    tb_initializer(m, tb_tensor("vast", LP_DT_FLOAT, "4294967296,4294967296"));
    expect_reject(m, LP_ERR_INVALID_MODEL, "'vast'");

    /* a graph input listed twice */
    m = relu_model();
    tb_input(m, "x", LP_DT_FLOAT, "2");
    expect_reject(m, LP_ERR_INVALID_MODEL, "graph input 'x' is listed twice");
}

/* ---- initializers in typed fields, repacked as raw_data ---------------------- */

typedef struct packed_case {
    lp_dtype dt;
    const char *dims;
    int n_words;
    int32_t words[4];
    int n_bytes;
    uint8_t bytes[8];
} packed_case;

static void check_int32_packing(const packed_case *c) {
    Onnx__ModelProto *m = relu_model();
    Onnx__TensorProto *t = tb_initializer(m, tb_tensor("c", c->dt, c->dims));
    tb_set_int32_data(t, (size_t)c->n_words, c->words);
    lp_graph *g = NULL;
    lp_diag d;
    lp_status st = load(m, &g, &d);
    if (st != LP_OK) fail_msg("%s: %s", lp_dtype_name(c->dt), d.last_error);
    const lp_value *v = value_named(g, "c");
    assert_int_equal(v->dtype, c->dt);
    assert_int_equal(v->data.where, LP_DATA_INLINE);
    if (v->data.nbytes != (uint64_t)c->n_bytes)
        fail_msg("%s: %llu bytes, want %d", lp_dtype_name(c->dt),
                 (unsigned long long)v->data.nbytes, c->n_bytes);
    for (int i = 0; i < c->n_bytes; i++)
        if (v->data.bytes[i] != c->bytes[i])
            fail_msg("%s: byte %d is 0x%02x, want 0x%02x", lp_dtype_name(c->dt), i,
                     v->data.bytes[i], c->bytes[i]);
    uint8_t copy[8] = {0};
    assert_int_equal(lp_frontend_read_weight(g, v, copy, sizeof copy, &d), LP_OK);
    assert_memory_equal(copy, c->bytes, (size_t)c->n_bytes);
    lp_graph_free(g);
    tb_free(m);
}

static void test_typed_fields(void **state) {
    (void)state;
    /* float6: a 24-bit LSB-first stream per four elements (onnx.proto):
     * byte0 = x0 | (x1 & 3) << 6; byte1 = x1 >> 2 | (x2 & 15) << 4; byte2 = x2 >> 4 | x3 << 2 */
    const uint32_t f6[4] = {8, 40, 4, 16}; /* FLOAT6E2M3 1.0, -1.0, 0.5, 2.0 */
    const packed_case cases[] = {
        /* float16 1.0 = 0x3c00, -2.0 = 0xc000, little-endian */
        {LP_DT_FLOAT16, "2", 2, {0x3c00, 0xc000}, 4, {0x00, 0x3c, 0x00, 0xc0}},
        {LP_DT_BFLOAT16, "1", 1, {0x3f80}, 2, {0x80, 0x3f}},
        {LP_DT_INT8, "3", 3, {-1, 127, -128}, 3, {0xff, 0x7f, 0x80}},
        {LP_DT_UINT8, "2", 2, {0, 255}, 2, {0x00, 0xff}},
        {LP_DT_BOOL, "3", 3, {1, 0, 1}, 3, {1, 0, 1}},
        {LP_DT_INT16, "2", 2, {-2, 0x1234}, 4, {0xfe, 0xff, 0x34, 0x12}},
        {LP_DT_INT32, "1", 1, {-2}, 4, {0xfe, 0xff, 0xff, 0xff}},
        /* int4 [1, -2, 7]: two per int32 entry, first in the low nibble */
        {LP_DT_INT4, "3", 2, {0xe1, 0x07}, 2, {0xe1, 0x07}},
        {LP_DT_UINT4, "2,2", 2, {0x21, 0xf3}, 2, {0x21, 0xf3}},
        /* uint2 [1, 2, 3, 0, 1]: four per entry, x0 | x1 << 2 | x2 << 4 | x3 << 6 */
        {LP_DT_UINT2, "5", 2, {1 | 2 << 2 | 3 << 4, 1}, 2, {0x39, 0x01}},
        {LP_DT_FLOAT6E2M3, "4", 4, {8, 40, 4, 16}, 3,
         {(uint8_t)(f6[0] | (f6[1] & 3) << 6), (uint8_t)(f6[1] >> 2 | (f6[2] & 15) << 4),
          (uint8_t)(f6[2] >> 4 | f6[3] << 2)}},
        /* a lone float6 element: zero-padded to one byte */
        {LP_DT_FLOAT6E3M2, "1", 1, {0x3f}, 1, {0x3f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_int32_packing(&cases[i]);
}

static void test_int64_and_double_fields(void **state) {
    (void)state;
    Onnx__ModelProto *m = relu_model();
    Onnx__TensorProto *t = tb_initializer(m, tb_tensor("i64", LP_DT_INT64, "3"));
    int64_t iv[3] = {-1, 0x0102030405060708LL, 9};
    t->n_int64_data = 3;
    t->int64_data = tb_xalloc(sizeof iv);
    memcpy(t->int64_data, iv, sizeof iv);
    Onnx__TensorProto *u = tb_initializer(m, tb_tensor("u32", LP_DT_UINT32, "2"));
    u->n_uint64_data = 2;
    u->uint64_data = tb_xalloc(2 * sizeof(uint64_t));
    u->uint64_data[0] = 0xdeadbeefu;
    u->uint64_data[1] = 1;
    Onnx__TensorProto *c = tb_initializer(m, tb_tensor("c64", LP_DT_COMPLEX64, "1"));
    c->n_float_data = 2; /* real, imaginary */
    c->float_data = tb_xalloc(2 * sizeof(float));
    c->float_data[0] = 1.0f;
    c->float_data[1] = -1.0f;
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    const lp_value *v = value_named(g, "i64");
    assert_int_equal(v->data.nbytes, 24);
    const uint8_t want_i64[8] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    assert_memory_equal(v->data.bytes + 8, want_i64, 8);
    v = value_named(g, "u32");
    const uint8_t want_u32[8] = {0xef, 0xbe, 0xad, 0xde, 1, 0, 0, 0};
    assert_int_equal(v->data.nbytes, 8);
    assert_memory_equal(v->data.bytes, want_u32, 8);
    v = value_named(g, "c64");
    assert_int_equal(v->data.nbytes, 8);
    float cf[2];
    memcpy(cf, v->data.bytes, 8);
    assert_true(cf[0] == 1.0f && cf[1] == -1.0f);
    lp_graph_free(g);
    tb_free(m);
}

static void test_typed_field_count_mismatch(void **state) {
    (void)state;
    Onnx__ModelProto *m = relu_model();
    Onnx__TensorProto *t = tb_initializer(m, tb_tensor("short", LP_DT_FLOAT16, "3"));
    int32_t w[2] = {1, 2};
    tb_set_int32_data(t, 2, w);
    expect_reject(m, LP_ERR_INVALID_MODEL, "tensor 'short' (float16) holds 2 ");

    m = relu_model();
    t = tb_initializer(m, tb_tensor("f", LP_DT_FLOAT, "2,2"));
    t->n_float_data = 3;
    t->float_data = tb_xalloc(3 * sizeof(float));
    expect_reject(m, LP_ERR_INVALID_MODEL, "'f'");

    /* int4 x3 needs exactly two int32 entries */
    m = relu_model();
    t = tb_initializer(m, tb_tensor("q", LP_DT_INT4, "3"));
    int32_t q[3] = {1, 2, 3};
    tb_set_int32_data(t, 3, q);
    expect_reject(m, LP_ERR_INVALID_MODEL, "'q'");
}

/* ---- Constant nodes fold into values ------------------------------------- */

static Onnx__NodeProto *constant_node(Onnx__ModelProto *m, const char *out) {
    return tb_node(m, "Constant", out, NULL, out);
}

static void test_constants_fold(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    Onnx__AttributeProto *a = tb_attr(constant_node(m, "k_tensor"), "value",
                                      ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = tb_tensor("", LP_DT_FLOAT16, "2,1");
    uint16_t half[2] = {0x3c00, 0x4000};
    tb_set_raw(a->t, half, sizeof half);
    tb_attr_float(constant_node(m, "k_float"), "value_float", 3.5f);
    float fl[3] = {1, 2, 3};
    tb_attr_floats(constant_node(m, "k_floats"), "value_floats", 3, fl);
    tb_attr_int(constant_node(m, "k_int"), "value_int", -9);
    int64_t il[2] = {4, 5};
    tb_attr_ints(constant_node(m, "k_ints"), "value_ints", 2, il);
    tb_node(m, "Sum", "sum", "x,k_tensor,k_float,k_floats,k_int,k_ints", "y");
    tb_output(m, "y", LP_DT_FLOAT, NULL);

    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    assert_int_equal(g->n_nodes, 1);
    assert_string_equal(g->nodes[0].op_type, "Sum");
    assert_int_equal(g->nodes[0].file_index, 5);
    assert_int_equal(value_named(g, "y")->producer, 0);
    const char *names[] = {"k_tensor", "k_float", "k_floats", "k_int", "k_ints"};
    for (int i = 0; i < 5; i++) {
        const lp_value *v = value_named(g, names[i]);
        assert_int_equal(v->kind, LP_VALUE_CONSTANT);
        assert_int_equal(v->producer, -1);
        assert_int_equal(v->data.where, LP_DATA_INLINE);
        assert_int_equal(g->nodes[0].inputs[i + 1], lp_graph_find_value(g, names[i]));
    }
    const lp_value *v = value_named(g, "k_tensor");
    assert_int_equal(v->dtype, LP_DT_FLOAT16);
    assert_int_equal(v->shape.rank, 2);
    assert_int_equal(v->shape.dims[0].size, 2);
    assert_int_equal(v->shape.dims[1].size, 1);
    assert_memory_equal(v->data.bytes, half, 4);

    v = value_named(g, "k_float");
    assert_int_equal(v->dtype, LP_DT_FLOAT);
    assert_int_equal(v->shape.rank, 0);
    float f;
    memcpy(&f, v->data.bytes, 4);
    assert_true(f == 3.5f);
    uint64_t bytes;
    assert_true(lp_value_bytes(v, &bytes));
    assert_int_equal(bytes, 4);

    v = value_named(g, "k_floats");
    assert_int_equal(v->dtype, LP_DT_FLOAT);
    assert_int_equal(v->shape.rank, 1);
    assert_int_equal(v->shape.dims[0].size, 3);
    assert_memory_equal(v->data.bytes, fl, sizeof fl);

    v = value_named(g, "k_int");
    assert_int_equal(v->dtype, LP_DT_INT64);
    assert_int_equal(v->shape.rank, 0);
    int64_t iv;
    memcpy(&iv, v->data.bytes, 8);
    assert_int_equal(iv, -9);

    v = value_named(g, "k_ints");
    assert_int_equal(v->dtype, LP_DT_INT64);
    assert_int_equal(v->shape.rank, 1);
    assert_int_equal(v->shape.dims[0].size, 2);
    assert_memory_equal(v->data.bytes, il, sizeof il);
    lp_graph_free(g);
    tb_free(m);
}

/* ---- topological order ----------------------------------------------------- */

static void test_sort_out_of_order(void **state) {
    (void)state;
    /* chain x -> a -> b -> c written backwards, plus two independent nodes
     * (p, q) whose relative file order must survive */
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_node(m, "Relu", "third", "b", "c");   /* 0 */
    tb_node(m, "Relu", "p", "x", "pp");      /* 1 */
    tb_node(m, "Relu", "second", "a", "b");  /* 2 */
    tb_node(m, "Relu", "q", "x", "qq");      /* 3 */
    tb_node(m, "Relu", "first", "x", "a");   /* 4 */
    tb_output(m, "c", LP_DT_FLOAT, NULL);
    tb_output(m, "pp", LP_DT_FLOAT, NULL);
    tb_output(m, "qq", LP_DT_FLOAT, NULL);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    assert_int_equal(g->n_nodes, 5);
    /* Kahn's order taking the lowest file index among ready nodes */
    const char *want[5] = {"p", "q", "first", "second", "third"};
    for (int i = 0; i < 5; i++) assert_string_equal(g->nodes[i].name, want[i]);
    const int32_t want_index[5] = {1, 3, 4, 2, 0};
    for (int i = 0; i < 5; i++) assert_int_equal(g->nodes[i].file_index, want_index[i]);
    /* every input is produced earlier; producers point at sorted positions */
    for (int i = 0; i < g->n_nodes; i++) {
        for (int k = 0; k < g->nodes[i].n_outputs; k++)
            assert_int_equal(g->values[g->nodes[i].outputs[k]].producer, i);
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            assert_true(g->values[g->nodes[i].inputs[k]].producer < i);
    }
    lp_graph_free(g);
    tb_free(m);
}

static void test_cycle_rejected(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_node(m, "Relu", "free", "x", "f");
    tb_node(m, "Add", "ping", "x,b", "a");
    tb_node(m, "Relu", "pong", "a", "b");
    tb_output(m, "b", LP_DT_FLOAT, NULL);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "cycle");
    assert_contains(d.last_error, "1 'ping'");
    assert_contains(d.last_error, "2 'pong'");
    assert_null(strstr(d.last_error, "'free'"));
    tb_free(m);
}

/* ---- storage sizes of every dtype ----------------------------------------------- */

static void test_dtype_storage(void **state) {
    (void)state;
    /* element widths in bits as the ONNX spec defines each type */
    static const int spec_bits[LP_DT_COUNT] = {
        [LP_DT_FLOAT] = 32,  [LP_DT_UINT8] = 8,  [LP_DT_INT8] = 8,   [LP_DT_UINT16] = 16,
        [LP_DT_INT16] = 16,  [LP_DT_INT32] = 32, [LP_DT_INT64] = 64, [LP_DT_BOOL] = 8,
        [LP_DT_FLOAT16] = 16, [LP_DT_DOUBLE] = 64, [LP_DT_UINT32] = 32, [LP_DT_UINT64] = 64,
        [LP_DT_COMPLEX64] = 64, [LP_DT_COMPLEX128] = 128, [LP_DT_BFLOAT16] = 16,
        [LP_DT_FLOAT8E4M3FN] = 8, [LP_DT_FLOAT8E4M3FNUZ] = 8, [LP_DT_FLOAT8E5M2] = 8,
        [LP_DT_FLOAT8E5M2FNUZ] = 8, [LP_DT_UINT4] = 4, [LP_DT_INT4] = 4,
        [LP_DT_FLOAT4E2M1] = 4, [LP_DT_FLOAT8E8M0] = 8, [LP_DT_UINT2] = 2, [LP_DT_INT2] = 2,
        [LP_DT_FLOAT6E2M3] = 6, [LP_DT_FLOAT6E3M2] = 6,
    };
    const uint64_t counts[] = {1, 2, 3, 7};
    for (int t = 0; t < LP_DT_COUNT; t++) {
        assert_non_null(lp_dtype_name((lp_dtype)t));
        lp_dtype back;
        assert_true(lp_dtype_from_name(lp_dtype_name((lp_dtype)t), &back));
        assert_int_equal(back, t);
        assert_int_equal(lp_dtype_bits((lp_dtype)t), spec_bits[t]);
        for (size_t c = 0; c < 4; c++) {
            uint64_t bytes = 12345;
            bool ok = lp_dtype_storage_bytes((lp_dtype)t, counts[c], &bytes);
            if (spec_bits[t] == 0) {
                assert_false(ok);
                continue;
            }
            uint64_t want = (counts[c] * (uint64_t)spec_bits[t] + 7) / 8;
            if (!ok || bytes != want)
                fail_msg("%s x%llu: %llu bytes, want %llu", lp_dtype_name((lp_dtype)t),
                         (unsigned long long)counts[c], (unsigned long long)bytes,
                         (unsigned long long)want);
        }
    }
    assert_null(lp_dtype_name(LP_DT_COUNT));
    assert_null(lp_dtype_name((lp_dtype)99));
    assert_false(lp_dtype_from_name("float32", &(lp_dtype){0}));
    uint64_t b;
    assert_true(lp_dtype_storage_bytes(LP_DT_INT4, 3, &b) && b == 2);
    assert_true(lp_dtype_storage_bytes(LP_DT_FLOAT6E2M3, 4, &b) && b == 3);
    assert_true(lp_dtype_storage_bytes(LP_DT_UINT2, 5, &b) && b == 2);
    assert_true(lp_dtype_storage_bytes(LP_DT_COMPLEX128, 1, &b) && b == 16);
    assert_true(lp_dtype_storage_bytes(LP_DT_FLOAT, 0, &b) && b == 0);
    assert_false(lp_dtype_storage_bytes(LP_DT_STRING, 1, &b));
    assert_false(lp_dtype_storage_bytes(LP_DT_UNDEFINED, 1, &b));
    assert_false(lp_dtype_storage_bytes((lp_dtype)99, 1, &b));

    /* overflow: a count whose bytes do not fit 64 bits is refused, and one
     * that does fit is exact (no wrap in the rounding) */
    assert_false(lp_dtype_storage_bytes(LP_DT_FLOAT, UINT64_MAX, &b));
    assert_false(lp_dtype_storage_bytes(LP_DT_COMPLEX128, UINT64_MAX / 16 + 1, &b));
    assert_true(lp_dtype_storage_bytes(LP_DT_COMPLEX128, UINT64_MAX / 16, &b));
    assert_true(b == UINT64_MAX / 16 * 16);
    assert_true(lp_dtype_storage_bytes(LP_DT_UINT8, UINT64_MAX, &b) && b == UINT64_MAX);
    assert_true(lp_dtype_storage_bytes(LP_DT_UINT2, UINT64_MAX, &b));
    assert_true(b == UINT64_MAX / 4 + 1); /* ceil((2^64 - 1) / 4) */
    assert_true(lp_dtype_storage_bytes(LP_DT_INT4, UINT64_MAX, &b));
    assert_true(b == UINT64_MAX / 2 + 1);
    assert_true(lp_dtype_storage_bytes(LP_DT_FLOAT6E2M3, UINT64_MAX / 4 * 4, &b));
    assert_true(b == UINT64_MAX / 4 * 3);
    assert_false(lp_dtype_storage_bytes(LP_DT_UINT16, UINT64_MAX / 2 + 1, &b));
    assert_true(lp_dtype_storage_bytes(LP_DT_UINT16, UINT64_MAX / 2, &b));
    assert_true(b == UINT64_MAX - 1);
}

/* ---- external data ------------------------------------------------------------- */

/* A model whose one initializer W (float[4], 16 bytes) is external. */
static Onnx__ModelProto *external_model(const char *location, const char *offset,
                                        const char *length) {
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "4");
    tb_set_external(tb_initializer(m, tb_tensor("W", LP_DT_FLOAT, "4")), location, offset, length);
    tb_node(m, "Add", "add", "x,W", "y");
    tb_output(m, "y", LP_DT_FLOAT, "4");
    return m;
}

typedef struct ext_dir {
    char dir[256];
    char model[300];
    uint8_t data[64];
} ext_dir;

/* A scratch folder holding w.bin: bytes 0..63. */
static void ext_setup(ext_dir *e) {
    tmp_make(e->dir, sizeof e->dir);
    snprintf(e->model, sizeof e->model, "%s/m.onnx", e->dir);
    for (int i = 0; i < 64; i++) e->data[i] = (uint8_t)(i * 3 + 1);
    assert_int_equal(tmp_write(e->dir, "w.bin", e->data, sizeof e->data), 0);
}

static lp_status ext_load(ext_dir *e, Onnx__ModelProto *m, bool require, lp_graph **g,
                          lp_diag *d) {
    lp_status st = load_as(m, e->model, require, g, d);
    tb_free(m);
    return st;
}

static void expect_ext_reject(ext_dir *e, Onnx__ModelProto *m, const char *needle) {
    lp_graph *g = NULL;
    lp_diag d;
    lp_status st = ext_load(e, m, false, &g, &d);
    if (st != LP_ERR_INVALID_MODEL)
        fail_msg("'%s': expected invalid model, got %s", needle, lp_status_name(st));
    assert_contains(d.last_error, needle);
}

static void test_external_present(void **state) {
    (void)state;
    ext_dir e;
    ext_setup(&e);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(ext_load(&e, external_model("w.bin", "16", "16"), true, &g, &d), LP_OK);
    assert_int_equal(d.n_warnings, 0);
    const lp_value *w = value_named(g, "W");
    assert_int_equal(w->kind, LP_VALUE_WEIGHT);
    assert_int_equal(w->data.where, LP_DATA_EXTERNAL);
    assert_true(w->data.present);
    assert_string_equal(w->data.location, "w.bin");
    assert_int_equal(w->data.offset, 16);
    assert_int_equal(w->data.nbytes, 16);
    /* resolved against the model's folder, whatever the working folder */
    char real_dir[PATH_MAX], want[PATH_MAX + 8];
    assert_non_null(realpath(e.dir, real_dir));
    snprintf(want, sizeof want, "%s/w.bin", real_dir);
    assert_string_equal(w->data.path, want);
    uint8_t buf[20];
    memset(buf, 0xaa, sizeof buf);
    assert_int_equal(lp_frontend_read_weight(g, w, buf, sizeof buf, &d), LP_OK);
    assert_memory_equal(buf, e.data + 16, 16);
    assert_int_equal(buf[16], 0xaa); /* nothing past the weight */
    /* a buffer too small is refused, not overrun */
    assert_int_not_equal(lp_frontend_read_weight(g, w, buf, 8, &d), LP_OK);
    lp_graph_free(g);

    /* a file inside a subfolder, without an explicit length */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", e.dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(tmp_write(sub, "v.bin", e.data, 32), 0);
    assert_int_equal(ext_load(&e, external_model("sub/v.bin", "8", NULL), true, &g, &d), LP_OK);
    w = value_named(g, "W");
    assert_int_equal(lp_frontend_read_weight(g, w, buf, 16, &d), LP_OK);
    assert_memory_equal(buf, e.data + 8, 16);
    lp_graph_free(g);
    tmp_remove(e.dir);
}

static void test_external_missing(void **state) {
    (void)state;
    ext_dir e;
    ext_setup(&e);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(ext_load(&e, external_model("gone.bin", "0", "16"), false, &g, &d), LP_OK);
    assert_int_equal(d.n_warnings, 1);
    assert_int_equal(d.n_errors, 0);
    const lp_value *w = value_named(g, "W");
    assert_int_equal(w->data.where, LP_DATA_EXTERNAL);
    assert_false(w->data.present);
    uint64_t bytes;
    assert_true(lp_value_bytes(w, &bytes) && bytes == 16);
    uint8_t buf[16];
    assert_int_equal(lp_frontend_read_weight(g, w, buf, sizeof buf, &d), LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "gone.bin");
    lp_graph_free(g);

    /* one warning per missing file, not per tensor */
    Onnx__ModelProto *m = external_model("gone.bin", "0", "16");
    tb_set_external(tb_initializer(m, tb_tensor("W2", LP_DT_FLOAT, "4")), "gone.bin", "16", "16");
    tb_set_external(tb_initializer(m, tb_tensor("W3", LP_DT_FLOAT, "4")), "other.bin", "0", "16");
    assert_int_equal(ext_load(&e, m, false, &g, &d), LP_OK);
    assert_int_equal(d.n_warnings, 2);
    assert_false(value_named(g, "W2")->data.present);
    lp_graph_free(g);

    assert_int_equal(ext_load(&e, external_model("gone.bin", "0", "16"), true, &g, &d),
                     LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "gone.bin");
    assert_contains(d.last_error, "'W'");
    tmp_remove(e.dir);
}

static void test_external_escapes(void **state) {
    (void)state;
    ext_dir e;
    ext_setup(&e);
    char outside[256];
    tmp_make(outside, sizeof outside);
    assert_int_equal(tmp_write(outside, "secret.bin", e.data, sizeof e.data), 0);
    char abs_path[300], link_path[300], target[300];
    snprintf(abs_path, sizeof abs_path, "%s/secret.bin", outside);
    snprintf(target, sizeof target, "%s/secret.bin", outside);
    snprintf(link_path, sizeof link_path, "%s/link.bin", e.dir);
    assert_int_equal(symlink(target, link_path), 0);
    snprintf(link_path, sizeof link_path, "%s/linkdir", e.dir);
    assert_int_equal(symlink(outside, link_path), 0);

    const char *bad[] = {abs_path, "../secret.bin", "sub/../../x", "..\\x", "a/..",
                         "link.bin", "linkdir/secret.bin", "\\abs", "C:\\w.bin"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_ext_reject(&e, external_model(bad[i], "0", "16"), bad[i]);
    /* a dangling link and a folder are not data files */
    snprintf(link_path, sizeof link_path, "%s/dangling.bin", e.dir);
    assert_int_equal(symlink("nothing-here.bin", link_path), 0);
    expect_ext_reject(&e, external_model("dangling.bin", "0", "16"), "'dangling.bin' is a link to a missing file");
    snprintf(link_path, sizeof link_path, "%s/adir", e.dir);
    assert_int_equal(mkdir(link_path, 0700), 0);
    expect_ext_reject(&e, external_model("adir", "0", "16"), "'adir' is not a regular file");
    /* "./" stays inside */
    lp_graph *g0 = NULL;
    lp_diag d0;
    assert_int_equal(ext_load(&e, external_model("./w.bin", "0", "16"), true, &g0, &d0), LP_OK);
    assert_true(value_named(g0, "W")->data.present);
    lp_graph_free(g0);
    /* a link that stays inside the folder is fine */
    snprintf(link_path, sizeof link_path, "%s/inner.bin", e.dir);
    assert_int_equal(symlink("w.bin", link_path), 0);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(ext_load(&e, external_model("inner.bin", "0", "16"), true, &g, &d), LP_OK);
    lp_graph_free(g);
    tmp_remove(outside);
    tmp_remove(e.dir);
}

/* Weights beyond 4 GiB into a (sparse) external file: offsets past 32 bits
 * load and read back exactly, without reading the rest of the file. */
static void test_external_beyond_4gib(void **state) {
    (void)state;
    ext_dir e;
    ext_setup(&e);
    char path[300];
    snprintf(path, sizeof path, "%s/big.bin", e.dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    const uint64_t offset = ((uint64_t)9 << 29) + 48; /* 4.5 GiB + 48 */
    assert_int_equal(ftruncate(fd, (off_t)(offset + 4096)), 0);
    assert_int_equal(pwrite(fd, e.data, 16, (off_t)offset), 16);
    close(fd);
    char off_text[32];
    snprintf(off_text, sizeof off_text, "%llu", (unsigned long long)offset);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(ext_load(&e, external_model("big.bin", off_text, "16"), true, &g, &d), LP_OK);
    const lp_value *w = value_named(g, "W");
    assert_true(w->data.present);
    assert_true(w->data.offset == offset);
    uint8_t buf[16];
    assert_int_equal(lp_frontend_read_weight(g, w, buf, sizeof buf, &d), LP_OK);
    assert_memory_equal(buf, e.data, 16);
    lp_graph_free(g);
    /* one byte past the end of the 4.5 GiB file is refused */
    snprintf(off_text, sizeof off_text, "%llu", (unsigned long long)(offset + 4096 - 15));
    expect_ext_reject(&e, external_model("big.bin", off_text, "16"), "beyond the end of 'big.bin'");
    tmp_remove(e.dir);
}

static void test_external_bad_ranges(void **state) {
    (void)state;
    ext_dir e;
    ext_setup(&e);
    /* w.bin holds 64 bytes */
    expect_ext_reject(&e, external_model("w.bin", "56", "16"), "beyond the end of 'w.bin'");
    expect_ext_reject(&e, external_model("w.bin", "64", NULL), "beyond the end");
    expect_ext_reject(&e, external_model("w.bin", "0", "12"), "length 12 does not match the 16");
    expect_ext_reject(&e, external_model("w.bin", "12a", "16"), "'offset' is '12a'");
    expect_ext_reject(&e, external_model("w.bin", "-4", "16"), "'offset' is '-4'");
    expect_ext_reject(&e, external_model("w.bin", "0", "sixteen"), "'length' is 'sixteen'");
    expect_ext_reject(&e, external_model("w.bin", "18446744073709551615", "16"), "overflows");
    expect_ext_reject(&e, external_model("w.bin", "99999999999999999999999", "16"),
                      "not a non-negative integer");
    /* no location at all */
    Onnx__ModelProto *m = external_model("w.bin", NULL, NULL);
    free(m->graph->initializer[0]->external_data[0]->key);
    m->graph->initializer[0]->external_data[0]->key = tb_strdup("place");
    expect_ext_reject(&e, m, "no 'location'");
    tmp_remove(e.dir);
}

/* ---- unsupported features ---------------------------------------------------------- */

/* A body graph from a scratch model: nodes and outputs added to bm, then
 * taken out of it. */
static Onnx__GraphProto *take_graph(Onnx__ModelProto *bm, const char *name) {
    Onnx__GraphProto *sg = bm->graph;
    bm->graph = NULL;
    tb_free(bm);
    free(sg->name);
    sg->name = tb_strdup(name);
    return sg;
}

static void add_body(Onnx__NodeProto *n, const char *attr, Onnx__GraphProto *body) {
    Onnx__AttributeProto *ga = tb_attr(n, attr, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    ga->g = body;
}

/* then: Relu(b) where b is the main graph's; else: Neg(b) */
static Onnx__GraphProto *branch(const char *op, const char *out) {
    Onnx__ModelProto *bm = tb_model(10, 18);
    tb_node(bm, op, out, "b", out);
    tb_output(bm, out, LP_DT_FLOAT, "2");
    return take_graph(bm, out);
}

/* Bodies load as graphs of their own; values they read from the enclosing
 * graph are captures resolved by name. If, Loop and Scan that cannot be
 * compiled are each reported by shape inference, then counted. */
static void test_control_flow_bodies(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_input(m, "flag", LP_DT_BOOL, "");
    tb_node(m, "Relu", "r0", "x", "a");
    tb_node(m, "Relu", "r1", "a", "b");
    Onnx__NodeProto *n = tb_node(m, "If", "cond", "flag", "c");
    add_body(n, "then_branch", branch("Relu", "t"));
    add_body(n, "else_branch", branch("Neg", "e"));
    Onnx__ModelProto *bm = tb_model(10, 18);
    tb_node(bm, "Identity", "l0", "c", "l_out");
    add_body(tb_node(m, "Loop", "loop", ",flag", "d"), "body", take_graph(bm, "loop_body"));
    bm = tb_model(10, 18);
    tb_node(bm, "Identity", "s0", "c", "s_out");
    add_body(tb_node(m, "Scan", "scan", "c", "e2"), "body", take_graph(bm, "scan_body"));
    tb_output(m, "c", LP_DT_FLOAT, "2");
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    const lp_node *ifn = &g->nodes[2];
    assert_string_equal(ifn->op_type, "If");
    const lp_graph *t = lp_node_attr(ifn, "then_branch")->graph;
    assert_non_null(t);
    assert_int_equal(t->depth, 1);
    assert_int_equal(t->n_nodes, 1);
    int32_t cb = lp_graph_find_value(t, "b");
    assert_true(cb >= 0);
    assert_int_equal(t->values[cb].kind, LP_VALUE_INPUT);
    assert_false(t->values[cb].is_graph_input);
    assert_string_equal(t->outer_names[cb], "b");
    assert_null(t->outer_names[lp_graph_find_value(t, "t")]);

    char *text = NULL;
    size_t len = 0;
    FILE *sink = open_memstream(&text, &len);
    assert_non_null(sink);
    d.sink = sink;
    assert_int_equal(lp_analysis_infer_shapes(g, NULL, &d), LP_ERR_UNSUPPORTED);
    fclose(sink);
    assert_contains(text, "t.onnx: error: node 2 'cond' (If): control-flow subgraph (attribute "
                          "'then_branch') is not supported yet: its condition 'flag' is known only at run time");
    assert_contains(text, "t.onnx: error: node 3 'loop' (Loop): control-flow subgraph (attribute 'body') "
                          "is not supported yet: Loop is not unrolled");
    assert_contains(text, "t.onnx: error: node 4 'scan' (Scan): control-flow subgraph (attribute 'body') "
                          "is not supported yet: Scan is not unrolled");
    assert_contains(d.last_error, "3 control-flow nodes cannot be compiled");
    assert_null(strstr(text, "shape inference does not support"));
    free(text);
    lp_graph_free(g);
    tb_free(m);
}

/* A body reading a name nothing defines is refused at the node holding it;
 * bodies nest at most LP_MAX_BODY_DEPTH deep. */
static void test_control_flow_bounds(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "flag", LP_DT_BOOL, "");
    Onnx__ModelProto *bm = tb_model(10, 18);
    tb_node(bm, "Relu", "t0", "nowhere", "t");
    tb_output(bm, "t", LP_DT_FLOAT, "2");
    add_body(tb_node(m, "If", "cond", "flag", "c"), "then_branch", take_graph(bm, "then"));
    tb_output(m, "c", LP_DT_FLOAT, "2");
    expect_reject(m, LP_ERR_INVALID_MODEL,
                  "node 0 'cond' (If): its subgraph 'then_branch' reads 'nowhere', which is not a graph input");

    /* a GRAPH attribute that holds no graph (found by fuzzing) */
    Onnx__ModelProto *em = tb_model(10, 18);
    tb_input(em, "flag", LP_DT_BOOL, "");
    add_body(tb_node(em, "If", "empty", "flag", "e"), "then_branch", NULL);
    tb_output(em, "e", LP_DT_FLOAT, "2");
    expect_reject(em, LP_ERR_INVALID_MODEL, "node 0 'empty' (If): attribute 'then_branch' has type GRAPH but holds no graph");

    /* LP_MAX_BODY_DEPTH + 1 bodies, each inside the last one's If */
    Onnx__GraphProto *inner = NULL;
    for (int level = LP_MAX_BODY_DEPTH + 1; level >= 0; level--) {
        Onnx__ModelProto *lm = tb_model(10, 18);
        if (level == 0) tb_input(lm, "flag", LP_DT_BOOL, "");
        Onnx__NodeProto *n = tb_node(lm, inner ? "If" : "Identity", "n", "flag", "o");
        if (inner) add_body(n, "then_branch", inner);
        tb_output(lm, "o", LP_DT_BOOL, "");
        if (level == 0) {
            expect_reject(lm, LP_ERR_UNSUPPORTED, "nests bodies deeper than 16 levels");
            break;
        }
        inner = take_graph(lm, "level");
    }
}

/* lp_graph_fix_input: the input becomes a constant holding the bytes. */
static void test_fix_input(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_input(m, "rate", LP_DT_INT64, "n");
    tb_node(m, "Relu", "r0", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, "2");
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    int64_t v[2] = {16000, 8000}, dims[1] = {2};
    assert_int_equal(lp_graph_fix_input(g, "rate", LP_DT_INT32, 1, dims, v, 8, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "the input is int64, the value given is int32");
    assert_int_equal(lp_graph_fix_input(g, "rate", LP_DT_INT64, 1, dims, v, 12, &d), LP_ERR_USAGE);
    assert_int_equal(lp_graph_fix_input(g, "y", LP_DT_FLOAT, 1, dims, v, 8, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "no input named 'y'");
    assert_int_equal(g->n_inputs, 2);
    assert_int_equal(lp_graph_fix_input(g, "rate", LP_DT_INT64, 1, dims, v, 16, &d), LP_OK);
    const lp_value *r = value_named(g, "rate");
    assert_int_equal(r->kind, LP_VALUE_CONSTANT);
    assert_false(r->is_graph_input);
    assert_int_equal(r->shape.dims[0].size, 2); /* the symbolic dim is bound */
    assert_int_equal(r->data.nbytes, 16);
    assert_memory_equal(r->data.bytes, v, 16);
    assert_int_equal(g->n_inputs, 1);
    assert_int_equal(lp_graph_verify(g, &d), LP_OK);
    lp_graph_free(g);
    tb_free(m);
}

static void test_other_unsupported(void **state) {
    (void)state;
    /* sparse initializer */
    Onnx__ModelProto *m = relu_model();
    Onnx__SparseTensorProto *sp = tb_xalloc(sizeof *sp);
    onnx__sparse_tensor_proto__init(sp);
    sp->values = tb_tensor("sparse_w", LP_DT_FLOAT, "1");
    sp->values->n_float_data = 1;
    sp->values->float_data = tb_xalloc(sizeof(float));
    sp->indices = tb_tensor("", LP_DT_INT64, "1");
    sp->indices->n_int64_data = 1;
    sp->indices->int64_data = tb_xalloc(sizeof(int64_t));
    TB_PUSH(m->graph->sparse_initializer, m->graph->n_sparse_initializer, sp);
    expect_reject(m, LP_ERR_UNSUPPORTED, "sparse_w");

    /* an operator from another domain */
    m = relu_model();
    tb_opset(m, "com.microsoft", 1);
    Onnx__NodeProto *n = tb_node(m, "FusedGemm", "fg", "y", "z");
    n->domain = tb_strdup("com.microsoft");
    tb_output(m, "z", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_UNSUPPORTED, "node 1 'fg' (FusedGemm): operator domain 'com.microsoft'");

    /* a call of a function the model defines */
    m = relu_model();
    tb_opset(m, "local", 1);
    Onnx__FunctionProto *f = tb_xalloc(sizeof *f);
    onnx__function_proto__init(f);
    f->name = tb_strdup("Twice");
    f->domain = tb_strdup("local");
    TB_PUSH(m->functions, m->n_functions, f);
    n = tb_node(m, "Twice", "tw", "y", "z");
    n->domain = tb_strdup("local");
    tb_output(m, "z", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_UNSUPPORTED, "model-local function 'local.Twice'");

    /* training info */
    m = relu_model();
    Onnx__TrainingInfoProto *ti = tb_xalloc(sizeof *ti);
    onnx__training_info_proto__init(ti);
    TB_PUSH(m->training_info, m->n_training_info, ti);
    expect_reject(m, LP_ERR_UNSUPPORTED, "training info");

    /* a graph input that is a sequence, not a tensor */
    m = relu_model();
    Onnx__TypeProto *tp = m->graph->input[0]->type;
    free(tp->tensor_type->shape->dim[0]);
    free(tp->tensor_type->shape->dim);
    free(tp->tensor_type->shape);
    free(tp->tensor_type);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE;
    tp->sequence_type = tb_xalloc(sizeof *tp->sequence_type);
    onnx__type_proto__sequence__init(tp->sequence_type);
    expect_reject(m, LP_ERR_UNSUPPORTED, "graph input 'x' is a sequence");
}

/* ---- malformed models ------------------------------------------------------------ */

static void test_invalid_bytes(void **state) {
    (void)state;
    lp_graph *g = (lp_graph *)1;
    lp_diag d = lp_diag_make("bad.onnx");
    d.sink = NULL;
    /* field 1 (ir_version) as a varint that never ends */
    static const uint8_t garbage[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(lp_frontend_load_buffer(garbage, sizeof garbage, "bad.onnx", NULL, &g, &d),
                     LP_ERR_INVALID_MODEL);
    assert_null(g);
    assert_contains(d.last_error, "not an ONNX model");

    Onnx__ModelProto *m = relu_model();
    size_t len;
    uint8_t *buf = tb_pack(m, &len);
    tb_free(m);
    /* every strict prefix that cuts a field short is rejected, never crashes */
    int rejected = 0;
    for (size_t cut = 1; cut < len; cut++) {
        lp_diag dd = lp_diag_make("cut.onnx");
        dd.sink = NULL;
        lp_graph *gg = NULL;
        lp_status st = lp_frontend_load_buffer(buf, cut, "cut.onnx", NULL, &gg, &dd);
        assert_true(st == LP_OK || st == LP_ERR_INVALID_MODEL || st == LP_ERR_UNSUPPORTED);
        rejected += st != LP_OK;
        lp_graph_free(gg);
    }
    assert_true(rejected > (int)len / 2);
    assert_int_equal(lp_frontend_load_buffer(buf, len / 2, "cut.onnx", NULL, &g, &d),
                     LP_ERR_INVALID_MODEL);
    free(buf);

    /* a model with no graph */
    m = tb_model(10, 18);
    onnx__graph_proto__free_unpacked(m->graph, NULL);
    m->graph = NULL;
    expect_reject(m, LP_ERR_INVALID_MODEL, "no graph");
}

/* Every single-byte corruption of a small model with each kind of content
 * loads or is refused with a status; under the sanitizers this also checks
 * that no corruption reads out of bounds. */
static void test_corrupted_bytes(void **state) {
    (void)state;
    Onnx__ModelProto *m = relu_model();
    tb_attr_ints(m->graph->node[0], "axes", 2, (const int64_t[]){0, -1});
    int32_t q[2] = {0x21, 0x43};
    tb_set_int32_data(tb_initializer(m, tb_tensor("q", LP_DT_INT4, "4")), 2, q);
    float f[2] = {1, 2};
    tb_set_raw(tb_initializer(m, tb_tensor("w", LP_DT_FLOAT, "2")), f, sizeof f);
    tb_set_external(tb_initializer(m, tb_tensor("e", LP_DT_FLOAT16, "2")), "e.bin", "0", "4");
    Onnx__AttributeProto *a = tb_attr(tb_node(m, "Constant", "k", NULL, "kk"), "value_ints",
                                      ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = 1;
    a->ints = tb_xalloc(sizeof(int64_t));
    size_t len;
    uint8_t *good = tb_pack(m, &len);
    tb_free(m);
    uint8_t *buf = tb_xalloc(len);
    static const uint8_t flips[] = {0xff, 0x01, 0x80, 0x7f};
    int loaded = 0, refused = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof flips; k++) {
            memcpy(buf, good, len);
            buf[i] ^= flips[k];
            lp_diag d = lp_diag_make("flip.onnx");
            d.sink = NULL;
            lp_graph *g = NULL;
            lp_status st = lp_frontend_load_buffer(buf, len, "/nonexistent/flip.onnx", NULL, &g, &d);
            if (st != LP_OK && st != LP_ERR_INVALID_MODEL && st != LP_ERR_UNSUPPORTED)
                fail_msg("byte %zu ^ 0x%02x: status %s (%s)", i, flips[k], lp_status_name(st),
                         d.last_error);
            if (st == LP_OK) {
                assert_non_null(g);
                loaded++;
            } else {
                assert_null(g);
                assert_true(d.last_error[0] != '\0');
                refused++;
            }
            lp_graph_free(g);
        }
    }
    assert_true(loaded > 0 && refused > 0);
    free(buf);
    free(good);
}

static void test_invalid_graphs(void **state) {
    (void)state;
    Onnx__ModelProto *m = relu_model();
    tb_node(m, "Add", "adder", "y,nowhere", "z");
    expect_reject(m, LP_ERR_INVALID_MODEL, "node 1 'adder' (Add): input 'nowhere'");

    m = relu_model();
    tb_node(m, "Relu", "again", "x", "y");
    expect_reject(m, LP_ERR_INVALID_MODEL, "node 1 'again' (Relu): output 'y' is already defined");

    m = relu_model();
    tb_node(m, "Relu", "shadow", "y", "x"); /* writes a graph input */
    expect_reject(m, LP_ERR_INVALID_MODEL, "output 'x' is already defined");

    m = relu_model();
    float one = 1;
    tb_set_raw(tb_initializer(m, tb_tensor("w", LP_DT_FLOAT, "1")), &one, 4);
    tb_set_raw(tb_initializer(m, tb_tensor("w", LP_DT_FLOAT, "1")), &one, 4);
    expect_reject(m, LP_ERR_INVALID_MODEL, "initializer 'w' is defined twice");

    m = relu_model();
    tb_initializer(m, tb_tensor("neg", LP_DT_FLOAT, "2,-1"));
    expect_reject(m, LP_ERR_INVALID_MODEL, "'neg' has negative dim -1 at axis 1");

    m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "4,-3");
    tb_node(m, "Relu", "relu0", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_INVALID_MODEL, "graph input 'x' has negative dim -3 at axis 1");

    m = relu_model();
    tb_initializer(m, tb_tensor("odd", (lp_dtype)99, "1"));
    expect_reject(m, LP_ERR_INVALID_MODEL, "'odd' has data type 99");

    m = tb_model(10, 18);
    tb_input(m, "x", (lp_dtype)99, "2");
    tb_node(m, "Relu", "relu0", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_INVALID_MODEL, "'x' has element type 99");

    m = relu_model();
    float three[3] = {1, 2, 3};
    tb_set_raw(tb_initializer(m, tb_tensor("short", LP_DT_FLOAT, "4")), three, sizeof three);
    expect_reject(m, LP_ERR_INVALID_MODEL, "'short' (float) holds 12 bytes of raw_data, but its dims need 16");

    m = relu_model();
    tb_output(m, "ghost", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_INVALID_MODEL, "graph output 'ghost'");

    m = relu_model();
    free(m->graph->node[0]->op_type);
    m->graph->node[0]->op_type = tb_strdup("");
    expect_reject(m, LP_ERR_INVALID_MODEL, "no op_type");

    m = relu_model();
    tb_attr_int(m->graph->node[0], "k", 1);
    tb_attr_int(m->graph->node[0], "k", 2);
    expect_reject(m, LP_ERR_INVALID_MODEL, "attribute 'k' appears twice");

    /* a Constant whose tensor is broken is reported at the Constant node */
    m = relu_model();
    Onnx__AttributeProto *a = tb_attr(tb_node(m, "Constant", "kc", NULL, "kk"), "value",
                                      ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = tb_tensor("", LP_DT_FLOAT, "2");
    tb_set_raw(a->t, three, 4);
    expect_reject(m, LP_ERR_INVALID_MODEL, "node 1 'kc' (Constant): attribute 'value'");

    /* only a foreign domain imported */
    m = tb_model(10, -1);
    tb_opset(m, "com.microsoft", 1);
    expect_reject(m, LP_ERR_UNSUPPORTED, "default ONNX domain");
}

/* ---- large inline tensors stay in the file -------------------------------------- */

#define BIG_N 4096 /* floats: 16 KiB of raw_data, above LP_DATA_INLINE_MAX */

/* x[BIG_N] + W (raw_data) + K (a Constant's tensor) + B (4 floats, broadcast) -> y */
static Onnx__ModelProto *big_model(const float *w, const float *k, const float *b) {
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "4096");
    tb_set_raw(tb_initializer(m, tb_tensor("W", LP_DT_FLOAT, "4096")), w, BIG_N * sizeof *w);
    tb_set_raw(tb_initializer(m, tb_tensor("B", LP_DT_FLOAT, "4")), b, 4 * sizeof *b);
    Onnx__AttributeProto *a = tb_attr(tb_node(m, "Constant", "k", NULL, "K"), "value",
                                      ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = tb_tensor("", LP_DT_FLOAT, "4096");
    tb_set_raw(a->t, k, BIG_N * sizeof *k);
    tb_node(m, "Add", "add0", "x,W", "s");
    tb_node(m, "Add", "add1", "s,K", "y");
    tb_output(m, "y", LP_DT_FLOAT, "4096");
    return m;
}

typedef struct big_files {
    char dir[256], model[300], card[300];
    float w[BIG_N], k[BIG_N], b[4];
} big_files;

static void big_setup(big_files *f) {
    tmp_make(f->dir, sizeof f->dir);
    snprintf(f->model, sizeof f->model, "%s/big.onnx", f->dir);
    snprintf(f->card, sizeof f->card, "%s/card.onnx", f->dir);
    for (int i = 0; i < BIG_N; i++) f->w[i] = (float)i * 0.5f, f->k[i] = (float)-i;
    for (int i = 0; i < 4; i++) f->b[i] = (float)i + 0.25f;
    Onnx__ModelProto *m = big_model(f->w, f->k, f->b);
    size_t len;
    uint8_t *buf = tb_pack(m, &len);
    tb_free(m);
    assert_int_equal(tmp_write(f->dir, "big.onnx", buf, len), 0);
    free(buf);
}

static void expect_bytes(const lp_graph *g, const char *name, const void *want, size_t n) {
    const lp_value *v = value_named(g, name);
    assert_int_equal(v->data.nbytes, n);
    uint8_t *got = malloc(n);
    assert_non_null(got);
    lp_diag d = lp_diag_make("t");
    d.sink = NULL;
    assert_int_equal(lp_frontend_read_weight(g, v, got, n, &d), LP_OK);
    assert_memory_equal(got, want, n);
    free(got);
}

/* Large raw_data is left in the model file and read on demand, from the
 * loaded graph and from a card model written from it (streamed). */
static void test_large_raw_in_file(void **state) {
    (void)state;
    big_files f;
    big_setup(&f);
    lp_diag d = lp_diag_make(f.model);
    d.sink = NULL;
    lp_graph *g = NULL;
    assert_int_equal(lp_frontend_load(f.model, NULL, &g, &d), LP_OK);
    const lp_value *w = value_named(g, "W"), *k = value_named(g, "K"), *b = value_named(g, "B");
    assert_int_equal(w->data.where, LP_DATA_FILE);
    assert_int_equal(k->kind, LP_VALUE_CONSTANT);
    assert_int_equal(k->data.where, LP_DATA_FILE);
    assert_non_null(g->file);
    assert_true(w->data.file == g->file && k->data.file == g->file);
    assert_int_equal(b->data.where, LP_DATA_INLINE); /* small: in memory */
    assert_memory_equal(b->data.bytes, f.b, sizeof f.b);
    expect_bytes(g, "W", f.w, sizeof f.w);
    expect_bytes(g, "K", f.k, sizeof f.k);
    /* a part of a tensor */
    float part[3];
    assert_int_equal(lp_frontend_read_tensor(g, &w->data, "W", 8 * sizeof(float), part, sizeof part, &d), LP_OK);
    assert_memory_equal(part, f.w + 8, sizeof part);
    assert_int_equal(lp_frontend_read_tensor(g, &w->data, "W", sizeof f.w - 4, part, 8, &d), LP_ERR_INTERNAL);

    /* the card model carries the bytes */
    int nodes[] = {0, 1};
    int32_t in[] = {lp_graph_find_value(g, "x")}, out[] = {lp_graph_find_value(g, "y")};
    assert_int_equal(lp_frontend_write_submodel(g, nodes, 2, in, 1, out, 1, f.card, &d), LP_OK);
    lp_graph *c = NULL;
    assert_int_equal(lp_frontend_load(f.card, NULL, &c, &d), LP_OK);
    assert_int_equal(value_named(c, "W")->data.where, LP_DATA_FILE);
    expect_bytes(c, "W", f.w, sizeof f.w);
    expect_bytes(c, "K", f.k, sizeof f.k);
    lp_graph_free(c);
    lp_graph_free(g);

    /* from memory, the same bytes are copied in */
    size_t len;
    Onnx__ModelProto *m = big_model(f.w, f.k, f.b);
    assert_int_equal(load_as(m, f.model, false, &g, &d), LP_OK);
    tb_free(m);
    assert_int_equal(value_named(g, "W")->data.where, LP_DATA_INLINE);
    assert_memory_equal(value_named(g, "W")->data.bytes, f.w, sizeof f.w);
    assert_memory_equal(value_named(g, "K")->data.bytes, f.k, sizeof f.k);
    assert_null(g->file);
    lp_graph_free(g);

    /* a model without large tensors keeps no file open */
    m = relu_model();
    uint8_t *buf = tb_pack(m, &len);
    tb_free(m);
    assert_int_equal(tmp_write(f.dir, "relu.onnx", buf, len), 0);
    free(buf);
    char relu[300];
    snprintf(relu, sizeof relu, "%s/relu.onnx", f.dir);
    assert_int_equal(lp_frontend_load(relu, NULL, &g, &d), LP_OK);
    assert_null(g->file);
    lp_graph_free(g);
    tmp_remove(f.dir);
}

/* A torch-style model whose nodes carry metadata: name_scopes (read by
 * layer detection) among keys no stage reads, a short unread entry, and
 * an entry written non-canonically (value before key). */
static Onnx__ModelProto *meta_model(void) {
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    Onnx__NodeProto *n = tb_node(m, "Relu", "relu0", "x", "y");
    TB_PUSH(n->metadata_props, n->n_metadata_props, tb_kv("namespace", "layer0/Relu: aten.relu.default"));
    TB_PUSH(n->metadata_props, n->n_metadata_props,
            tb_kv("pkg.torch.onnx.class_hierarchy", "['torch.nn.Module', 'torch.nn.ReLU']"));
    TB_PUSH(n->metadata_props, n->n_metadata_props,
            tb_kv("pkg.torch.onnx.name_scopes", "['', 'layer0', 'relu']"));
    TB_PUSH(n->metadata_props, n->n_metadata_props,
            tb_kv("pkg.torch.onnx.stack_trace", "File \"m.py\", line 3, in forward\n  return x.relu()"));
    /* a second node: a short entry and a long one, one run; a third whose
     * one short entry is not worth a mark, unpacked as usual */
    Onnx__NodeProto *n2 = tb_node(m, "Relu", "relu2", "y", "z");
    TB_PUSH(n2->metadata_props, n2->n_metadata_props, tb_kv("a", "b"));
    TB_PUSH(n2->metadata_props, n2->n_metadata_props,
            tb_kv("pkg.torch.onnx.fx_node", "%relu_1 : [num_users=1] = call_function[target=torch.ops.aten.relu.default]"));
    Onnx__NodeProto *n3 = tb_node(m, "Relu", "a_node_name_long_enough_to_be_walked_for_metadata", "z", "w");
    TB_PUSH(n3->metadata_props, n3->n_metadata_props, tb_kv("a", "b"));
    tb_output(m, "w", LP_DT_FLOAT, "2");
    return m;
}

static void expect_meta_graph(const lp_graph *g, lp_data_where where) {
    const lp_node *n = &g->nodes[0], *n2 = &g->nodes[1], *n3 = &g->nodes[2];
    /* only the key a stage reads is a string; the rest are two runs around it */
    assert_int_equal(n->n_meta, 1);
    assert_string_equal(n->meta[0].key, "pkg.torch.onnx.name_scopes");
    assert_string_equal(lp_node_meta(n, "pkg.torch.onnx.name_scopes"), "['', 'layer0', 'relu']");
    assert_int_equal(n->n_meta_runs, 2);
    assert_int_equal(n->meta_runs[0].before, 0);
    assert_int_equal(n->meta_runs[1].before, 1);
    assert_int_equal(n->meta_runs[0].data.where, where);
    assert_int_equal(n2->n_meta, 0);
    assert_int_equal(n2->n_meta_runs, 1);
    assert_int_equal(n2->meta_runs[0].before, 0);
    assert_null(lp_node_meta(n2, "pkg.torch.onnx.name_scopes"));
    assert_int_equal(n3->n_meta, 1);
    assert_string_equal(n3->meta[0].key, "a");
    assert_string_equal(n3->meta[0].value, "b");
    assert_int_equal(n3->n_meta_runs, 0);
}

/* Node metadata: what a stage reads is kept as strings, the rest comes
 * back in card models as the bytes the model held (from the file, or from
 * a buffer's copy), in its place among the node's fields. */
static void test_node_meta_kept_and_copied(void **state) {
    (void)state;
    char dir[256];
    tmp_make(dir, sizeof dir);
    Onnx__ModelProto *m = meta_model();
    size_t len;
    uint8_t *bytes = tb_pack(m, &len);
    assert_int_equal(tmp_write(dir, "m.onnx", bytes, len), 0);
    char path[300], card[300];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    snprintf(card, sizeof card, "%s/card.onnx", dir);
    for (int from_file = 0; from_file < 2; from_file++) {
        lp_diag d = lp_diag_make(path);
        d.sink = NULL;
        lp_graph *g = NULL;
        if (from_file)
            assert_int_equal(lp_frontend_load(path, NULL, &g, &d), LP_OK);
        else
            assert_int_equal(lp_frontend_load_buffer(bytes, len, path, NULL, &g, &d), LP_OK);
        expect_meta_graph(g, from_file ? LP_DATA_FILE : LP_DATA_INLINE);
        int nodes[] = {0, 1, 2};
        int32_t in[] = {lp_graph_find_value(g, "x")}, out[] = {lp_graph_find_value(g, "w")};
        assert_int_equal(lp_frontend_write_submodel(g, nodes, 3, in, 1, out, 1, card, &d), LP_OK);
        lp_graph_free(g);
        /* each card node is the model's node, byte for byte */
        FILE *f = fopen(card, "rb");
        assert_non_null(f);
        static uint8_t cbuf[1 << 16];
        size_t clen = fread(cbuf, 1, sizeof cbuf, f);
        fclose(f);
        Onnx__ModelProto *c = onnx__model_proto__unpack(NULL, clen, cbuf);
        assert_non_null(c);
        assert_int_equal(c->graph->n_node, 3);
        for (int i = 0; i < 3; i++) {
            size_t a = onnx__node_proto__get_packed_size(m->graph->node[i]);
            size_t b = onnx__node_proto__get_packed_size(c->graph->node[i]);
            assert_int_equal(a, b);
            uint8_t *pa = malloc(a), *pb = malloc(b);
            onnx__node_proto__pack(m->graph->node[i], pa);
            onnx__node_proto__pack(c->graph->node[i], pb);
            assert_memory_equal(pa, pb, a);
            free(pa);
            free(pb);
        }
        onnx__model_proto__free_unpacked(c, NULL);
        /* the card loads with the same metadata split */
        assert_int_equal(lp_frontend_load(card, NULL, &g, &d), LP_OK);
        expect_meta_graph(g, LP_DATA_FILE);
        lp_graph_free(g);
    }
    /* the model file cut after loading: writing the card is a clear error */
    lp_diag d = lp_diag_make(path);
    d.sink = NULL;
    lp_graph *g = NULL;
    assert_int_equal(lp_frontend_load(path, NULL, &g, &d), LP_OK);
    assert_int_equal(truncate(path, (off_t)(len / 4)), 0);
    int nodes[] = {0, 1, 2};
    int32_t in[] = {lp_graph_find_value(g, "x")}, out[] = {lp_graph_find_value(g, "w")};
    assert_int_equal(lp_frontend_write_submodel(g, nodes, 3, in, 1, out, 1, card, &d),
                     LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "shrank after it was loaded");
    assert_contains(d.last_error, "metadata of node");
    lp_graph_free(g);
    free(bytes);
    tb_free(m);
    tmp_remove(dir);
}

/* A metadata entry written value first loads as usual and is re-encoded. */
static void test_node_meta_noncanonical(void **state) {
    (void)state;
    Onnx__ModelProto *m = relu_model();
    size_t len;
    uint8_t *base = tb_pack(m, &len);
    tb_free(m);
    /* append to node 0 (the first graph field) an entry: value (2) then key (1) */
    static const uint8_t entry[] = {0x4a, 0x1e, 0x12, 0x0e, 'v', 'a', 'l', 'u', 'e', ' ', 'f', 'i',
                                    'r', 's', 't', '!', '!', '!', 0x0a, 0x0c, 'n', 'a', 'm', 'e',
                                    's', 'p', 'a', 'c', 'e', '_', '_', '_'};
    Onnx__ModelProto *mm = onnx__model_proto__unpack(NULL, len, base);
    assert_non_null(mm);
    Onnx__NodeProto *n = mm->graph->node[0];
    n->base.n_unknown_fields = 0;
    size_t nlen = onnx__node_proto__get_packed_size(n);
    uint8_t *nb = malloc(nlen + sizeof entry);
    onnx__node_proto__pack(n, nb);
    memcpy(nb + nlen, entry, sizeof entry);
    Onnx__NodeProto *n2 = onnx__node_proto__unpack(NULL, nlen + sizeof entry, nb);
    assert_non_null(n2);
    assert_int_equal(n2->n_metadata_props, 1);
    mm->graph->node[0] = n2;
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(mm, &g, &d), LP_OK);
    assert_int_equal(g->nodes[0].n_meta, 1);
    assert_int_equal(g->nodes[0].n_meta_runs, 0);
    assert_string_equal(g->nodes[0].meta[0].key, "namespace___");
    assert_string_equal(g->nodes[0].meta[0].value, "value first!!!");
    lp_graph_free(g);
    mm->graph->node[0] = n;
    onnx__node_proto__free_unpacked(n2, NULL);
    onnx__model_proto__free_unpacked(mm, NULL);
    free(nb);
    free(base);
}

/* A file truncated after loading: reading a weight, or writing a card
 * model that carries it, is an error naming the file, never a SIGBUS. */
static void test_truncated_after_load(void **state) {
    (void)state;
    big_files f;
    big_setup(&f);
    lp_diag d = lp_diag_make(f.model);
    d.sink = NULL;
    lp_graph *g = NULL;
    assert_int_equal(lp_frontend_load(f.model, NULL, &g, &d), LP_OK);
    struct stat sb;
    assert_int_equal(stat(f.model, &sb), 0);
    assert_int_equal(truncate(f.model, sb.st_size / 2), 0);
    const lp_value *w = value_named(g, "W");
    float *buf = malloc(sizeof f.w);
    assert_non_null(buf);
    lp_status st = lp_frontend_read_weight(g, w, buf, sizeof f.w, &d);
    lp_status st_k = lp_frontend_read_weight(g, value_named(g, "K"), buf, sizeof f.k, &d);
    /* whichever of the two lies past the cut fails */
    assert_true(st == LP_ERR_INVALID_MODEL || st_k == LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, f.model);
    assert_contains(d.last_error, "shrank after it was loaded");
    assert_contains(d.last_error, "shorter than its contents say");
    int nodes[] = {0, 1};
    int32_t in[] = {lp_graph_find_value(g, "x")}, out[] = {lp_graph_find_value(g, "y")};
    assert_int_equal(lp_frontend_write_submodel(g, nodes, 2, in, 1, out, 1, f.card, &d),
                     LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "shrank after it was loaded");
    assert_int_equal(access(f.card, F_OK), -1); /* nothing left behind */
    free(buf);
    lp_graph_free(g);

    /* loading the cut file: it is shorter than its contents say */
    assert_int_equal(lp_frontend_load(f.model, NULL, &g, &d), LP_ERR_INVALID_MODEL);
    assert_null(g);
    assert_contains(d.last_error, "shorter than its contents say");
    tmp_remove(f.dir);
}

/* The field that marks removed raw_data, written by the file itself (in
 * any form, here as the loader writes it but without its secret), is
 * ignored rather than taken for a reference. */
static void test_raw_mark_in_file(void **state) {
    (void)state;
    float big[BIG_N];
    for (int i = 0; i < BIG_N; i++) big[i] = (float)i;
    for (int form = 0; form < 2; form++) {
        Onnx__ModelProto *m = relu_model();
        float v[4] = {1, 2, 3, 4};
        Onnx__TensorProto *t = tb_initializer(m, tb_tensor("W", LP_DT_FLOAT, "4"));
        tb_set_raw(t, v, sizeof v);
        /* a large tensor too, so the read removes one raw_data (index 0) */
        tb_set_raw(tb_initializer(m, tb_tensor("L", LP_DT_FLOAT, "4096")), big, sizeof big);
        t->base.n_unknown_fields = 1;
        t->base.unknown_fields = tb_xalloc(sizeof *t->base.unknown_fields);
        ProtobufCMessageUnknownField *u = &t->base.unknown_fields[0];
        *u = (ProtobufCMessageUnknownField){.tag = LP_RAW_MARK_FIELD};
        u->wire_type = form ? PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED : PROTOBUF_C_WIRE_TYPE_VARINT;
        u->len = form ? 17 : 1; /* protobuf-c keeps the length prefix */
        u->data = tb_xalloc(u->len); /* nonce 0, index 0 */
        u->data[0] = form ? 16 : 0;
        lp_graph *g = NULL;
        lp_diag d;
        assert_int_equal(load(m, &g, &d), LP_OK);
        const lp_value *w = value_named(g, "W");
        assert_int_equal(w->data.where, LP_DATA_INLINE);
        assert_int_equal(w->data.nbytes, sizeof v);
        assert_memory_equal(w->data.bytes, v, sizeof v);
        assert_memory_equal(value_named(g, "L")->data.bytes, big, sizeof big);
        lp_graph_free(g);
        tb_free(m);
    }
}

/* Ranks above LP_MAX_RANK are refused where they appear, naming the value. */
static void test_rank_bounds(void **state) {
    (void)state;
    char dims[400] = "1";
    for (int i = 1; i < LP_MAX_RANK; i++) strcat(dims, ",1");
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, dims); /* rank 64: accepted */
    tb_node(m, "Relu", "r", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, dims);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    assert_int_equal(value_named(g, "x")->shape.rank, LP_MAX_RANK);
    lp_graph_free(g);
    tb_free(m);

    strcat(dims, ",1"); /* 65 */
    m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, dims);
    tb_node(m, "Relu", "r", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_INVALID_MODEL, "graph input 'x' has rank 65, above the largest rank lpcc accepts (64)");

    m = relu_model();
    TB_PUSH(m->graph->value_info, m->graph->n_value_info, tb_value_info("y", LP_DT_FLOAT, dims));
    expect_reject(m, LP_ERR_INVALID_MODEL, "value 'y' has rank 65");

    m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "2");
    tb_node(m, "Relu", "r", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, dims);
    expect_reject(m, LP_ERR_INVALID_MODEL, "graph output 'y' has rank 65");

    m = relu_model();
    tb_set_raw(tb_initializer(m, tb_tensor("W", LP_DT_FLOAT, dims)), "\0\0\0\0", 4);
    expect_reject(m, LP_ERR_INVALID_MODEL, "tensor 'W' has rank 65");
}

static void test_file_errors(void **state) {
    (void)state;
    char dir[256], path[300];
    tmp_make(dir, sizeof dir);
    lp_graph *g = NULL;
    lp_diag d = lp_diag_make("x");
    d.sink = NULL;
    snprintf(path, sizeof path, "%s/absent.onnx", dir);
    assert_int_equal(lp_frontend_load(path, NULL, &g, &d), LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "cannot open");
    assert_int_equal(lp_frontend_load(dir, NULL, &g, &d), LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "not a regular file");
    assert_int_equal(tmp_write(dir, "empty.onnx", "", 0), 0);
    snprintf(path, sizeof path, "%s/empty.onnx", dir);
    assert_int_equal(lp_frontend_load(path, NULL, &g, &d), LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "empty");

    /* a sparse file of exactly 2 GiB: refused from its size, never read */
    snprintf(path, sizeof path, "%s/huge.onnx", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)LP_PROTOBUF_LIMIT), 0);
    close(fd);
    assert_int_equal(lp_frontend_load(path, NULL, &g, &d), LP_ERR_INVALID_MODEL);
    assert_null(g);
    assert_contains(d.last_error, "2.00 GiB");
    assert_contains(d.last_error, "external data");
    /* the in-memory path checks the length before touching the bytes */
    static const uint8_t one = 0;
    assert_int_equal(lp_frontend_load_buffer(&one, (size_t)LP_PROTOBUF_LIMIT, "big.onnx", NULL,
                                             &g, &d),
                     LP_ERR_INVALID_MODEL);
    assert_contains(d.last_error, "external data");

    /* the same model from a file and from memory */
    Onnx__ModelProto *m = relu_model();
    size_t len;
    uint8_t *buf = tb_pack(m, &len);
    tb_free(m);
    assert_int_equal(tmp_write(dir, "ok.onnx", buf, len), 0);
    free(buf);
    snprintf(path, sizeof path, "%s/ok.onnx", dir);
    assert_int_equal(lp_frontend_load(path, NULL, &g, &d), LP_OK);
    assert_string_equal(g->path, path);
    assert_string_equal(g->dir, dir);
    assert_int_equal(g->n_nodes, 1);
    lp_graph_free(g);
    tmp_remove(dir);
}

/* ---- binding symbolic dims ------------------------------------------------------ */

static lp_graph *bind_graph(void) {
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "batch,seq,4");
    tb_input(m, "mask", LP_DT_INT64, "batch,?");
    float w[4] = {0};
    tb_set_raw(tb_initializer(m, tb_tensor("w", LP_DT_FLOAT, "4")), w, sizeof w);
    tb_node(m, "Add", "add", "x,w", "y");
    tb_output(m, "y", LP_DT_FLOAT, "batch,seq,4");
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    tb_free(m);
    return g;
}

static void test_bind_dim(void **state) {
    (void)state;
    lp_graph *g = bind_graph();
    lp_diag d = lp_diag_make("t.onnx");
    d.sink = NULL;
    assert_int_equal(lp_graph_bind_dim(g, "batch", 2, &d), LP_OK);
    const lp_value *x = value_named(g, "x"), *y = value_named(g, "y"), *mask = value_named(g, "mask");
    assert_int_equal(x->shape.dims[0].size, 2);
    assert_int_equal(y->shape.dims[0].size, 2);
    assert_int_equal(mask->shape.dims[0].size, 2);
    assert_true(x->shape.dims[1].size < 0); /* seq untouched */
    assert_true(mask->shape.dims[1].size < 0);
    assert_int_equal(lp_graph_bind_dim(g, "heads", 2, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'heads'");
    /* already bound: no symbolic dim of that name is left */
    assert_int_equal(lp_graph_bind_dim(g, "batch", 3, &d), LP_ERR_USAGE);
    assert_int_equal(x->shape.dims[0].size, 2);
    assert_int_equal(lp_graph_bind_dim(g, "seq", -1, &d), LP_ERR_USAGE);
    assert_true(x->shape.dims[1].size < 0);
    lp_graph_free(g);
}

static void test_bind_input_shape(void **state) {
    (void)state;
    lp_graph *g = bind_graph();
    lp_diag d = lp_diag_make("t.onnx");
    d.sink = NULL;
    const int64_t ok[3] = {2, 5, 4};
    const int64_t bad_fixed[3] = {2, 5, 8};
    assert_int_equal(lp_graph_bind_input_shape(g, "nope", 3, ok, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "no input named 'nope'");
    assert_int_equal(lp_graph_bind_input_shape(g, "w", 1, ok, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'w'");
    assert_int_equal(lp_graph_bind_input_shape(g, "y", 3, ok, &d), LP_ERR_USAGE);
    assert_int_equal(lp_graph_bind_input_shape(g, "x", 2, ok, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "rank 3");
    assert_int_equal(lp_graph_bind_input_shape(g, "x", 3, bad_fixed, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "axis 2 is 4 in the model, not 8");
    /* a refused shape binds nothing */
    assert_true(value_named(g, "x")->shape.dims[0].size < 0);
    assert_true(value_named(g, "y")->shape.dims[1].size < 0);
    assert_true(value_named(g, "mask")->shape.dims[0].size < 0);

    assert_int_equal(lp_graph_bind_input_shape(g, "x", 3, ok, &d), LP_OK);
    const lp_value *y = value_named(g, "y");
    /* the symbols are bound everywhere, not only on the input */
    assert_int_equal(y->shape.dims[0].size, 2);
    assert_int_equal(y->shape.dims[1].size, 5);
    assert_int_equal(value_named(g, "mask")->shape.dims[0].size, 2);
    /* the unnamed dim of mask can only be fixed through mask itself */
    const int64_t mask_bad[2] = {3, 7};
    assert_int_equal(lp_graph_bind_input_shape(g, "mask", 2, mask_bad, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "axis 0 is 2 in the model, not 3");
    const int64_t mask_ok[2] = {2, 7};
    assert_int_equal(lp_graph_bind_input_shape(g, "mask", 2, mask_ok, &d), LP_OK);
    assert_int_equal(value_named(g, "mask")->shape.dims[1].size, 7);
    lp_graph_free(g);
}

/* One symbol on two axes cannot take two values. */
static void test_bind_shared_symbol(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "sq", LP_DT_FLOAT, "n,n");
    tb_node(m, "Relu", "r", "sq", "y");
    tb_output(m, "y", LP_DT_FLOAT, "n,n");
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    tb_free(m);
    const int64_t bad[2] = {2, 3}, ok[2] = {4, 4};
    assert_int_equal(lp_graph_bind_input_shape(g, "sq", 2, bad, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "share the dim 'n'");
    assert_int_equal(lp_graph_bind_input_shape(g, "sq", 2, ok, &d), LP_OK);
    assert_int_equal(value_named(g, "y")->shape.dims[1].size, 4);
    lp_graph_free(g);
}

/* The builder's "?" is a dim with neither value nor name; exporters also
 * write the literal name "?", which this sets on one axis. */
static void set_dim_param(Onnx__ValueInfoProto *vi, size_t axis, const char *param) {
    Onnx__TensorShapeProto__Dimension *dm = vi->type->tensor_type->shape->dim[axis];
    /* dim_value and dim_param share a oneof: free only a name */
    if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) free(dm->dim_param);
    dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    dm->dim_param = tb_strdup(param);
}

/* x[-1,3] (Paddle2ONNX), a[2,"?","?"] and b["?",3]: every such dim is an
 * unknown of its own, also in value_info and graph outputs. */
static Onnx__ModelProto *written_unknowns_model(void) {
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "-1,3");
    Onnx__ValueInfoProto *a = tb_input(m, "a", LP_DT_FLOAT, "2,q,q");
    set_dim_param(a, 1, "?");
    set_dim_param(a, 2, "?");
    set_dim_param(tb_input(m, "b", LP_DT_FLOAT, "q,3"), 0, "?");
    tb_node(m, "MatMul", "mm", "a,b", "ab");
    tb_node(m, "Add", "add", "ab,x", "y");
    Onnx__ValueInfoProto *vi = tb_value_info("ab", LP_DT_FLOAT, "-1,q,3");
    set_dim_param(vi, 1, "?");
    TB_PUSH(m->graph->value_info, m->graph->n_value_info, vi);
    set_dim_param(tb_output(m, "y", LP_DT_FLOAT, "q,-1,3"), 0, "?");
    return m;
}

static void assert_unknown(const lp_value *v, int axis) {
    if (v->shape.dims[axis].size >= 0 || v->shape.dims[axis].sym)
        fail_msg("'%s' axis %d: expected an unknown dim, got size %lld sym %s", v->name, axis,
                 (long long)v->shape.dims[axis].size,
                 v->shape.dims[axis].sym ? v->shape.dims[axis].sym : "(none)");
}

static void test_written_unknown_dims(void **state) {
    (void)state;
    Onnx__ModelProto *m = written_unknowns_model();
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    tb_free(m);
    int32_t x = lp_graph_find_value(g, "x"), a = lp_graph_find_value(g, "a"),
            b = lp_graph_find_value(g, "b");
    assert_unknown(&g->values[x], 0);
    assert_int_equal(g->values[x].shape.dims[1].size, 3);
    assert_unknown(&g->values[a], 1);
    assert_unknown(&g->values[a], 2);
    assert_unknown(&g->values[b], 0);
    assert_unknown(value_named(g, "ab"), 0);
    assert_unknown(value_named(g, "ab"), 1);
    assert_unknown(value_named(g, "y"), 0);
    assert_unknown(value_named(g, "y"), 1);
    /* where they are and how they are written, for the inputs only */
    assert_string_equal(lp_graph_dim_written(g, x, 0), "-1");
    assert_null(lp_graph_dim_written(g, x, 1));
    assert_null(lp_graph_dim_written(g, a, 0));
    assert_string_equal(lp_graph_dim_written(g, a, 1), "'?'");
    assert_string_equal(lp_graph_dim_written(g, a, 2), "'?'");
    assert_string_equal(lp_graph_dim_written(g, b, 0), "'?'");
    assert_null(lp_graph_dim_written(g, lp_graph_find_value(g, "ab"), 0));
    assert_int_equal(g->n_written_dims, 4);

    d = lp_diag_make("t.onnx");
    d.sink = NULL;
    assert_int_equal(lp_graph_check_input_dims(g, x, &d), LP_ERR_UNSUPPORTED);
    assert_contains(d.last_error, "input 'x' axis 0 (written -1) has no size; give the input's "
                                  "shape with --shapes x:Ax3");
    assert_int_equal(lp_graph_check_input_dims(g, a, &d), LP_ERR_UNSUPPORTED);
    assert_contains(d.last_error, "input 'a' axes 1 (written '?') and 2 (written '?') have no "
                                  "size; give the input's shape with --shapes a:2xAxB");

    /* --dim cannot bind them: they have no name */
    assert_int_equal(lp_graph_bind_dim(g, "?", 3, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'?' is not a dim name");
    assert_contains(d.last_error, "--shapes INPUT:AxBx.. (unknown: input 'x' axis 0; input 'a' "
                                  "axes 1, 2; input 'b' axis 0)");
    assert_int_equal(lp_graph_bind_dim(g, "-1", 3, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'-1' is not a dim name");
    assert_unknown(&g->values[a], 1);

    /* --shapes: the two "?" of a take two sizes, and binding a touches no
     * other "?" (b's, the value_info's, the output's) */
    const int64_t a_dims[3] = {2, 5, 7}, b_dims[2] = {7, 3}, x_dims[2] = {4, 3};
    assert_int_equal(lp_graph_bind_input_shape(g, "a", 3, a_dims, &d), LP_OK);
    assert_int_equal(g->values[a].shape.dims[1].size, 5);
    assert_int_equal(g->values[a].shape.dims[2].size, 7);
    assert_unknown(&g->values[b], 0);
    assert_unknown(value_named(g, "ab"), 1);
    assert_unknown(value_named(g, "y"), 0);
    assert_int_equal(lp_graph_check_input_dims(g, a, &d), LP_OK);
    assert_int_equal(lp_graph_bind_input_shape(g, "b", 2, b_dims, &d), LP_OK);
    assert_int_equal(lp_graph_bind_input_shape(g, "x", 2, x_dims, &d), LP_OK);
    assert_int_equal(g->values[x].shape.dims[0].size, 4);
    assert_unknown(value_named(g, "ab"), 0);
    assert_int_equal(lp_graph_check_input_dims(g, x, &d), LP_OK);
    assert_int_equal(lp_graph_check_input_dims(g, b, &d), LP_OK);
    /* bound: nothing left for --dim ? to name */
    assert_int_equal(lp_graph_bind_dim(g, "?", 3, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "give that with --shapes INPUT:AxBx..");
    lp_graph_free(g);

    /* a dim with neither size nor name is reported the same way */
    g = bind_graph();
    assert_int_equal(lp_graph_check_input_dims(g, lp_graph_find_value(g, "mask"), &d),
                     LP_ERR_UNSUPPORTED);
    assert_contains(d.last_error, "input 'mask' axis 1 (left empty) has no size; give the "
                                  "input's shape with --shapes mask:AxB");
    assert_int_equal(lp_graph_check_input_dims(g, lp_graph_find_value(g, "x"), &d), LP_OK);
    lp_graph_free(g);

    /* other negative dims are still invalid (a tensor's -1 too: test_invalid_graphs) */
    m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, "-2,3");
    tb_node(m, "Relu", "relu0", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, NULL);
    expect_reject(m, LP_ERR_INVALID_MODEL, "graph input 'x' has negative dim -2 at axis 0");
}

/* --dim ? lists eight inputs, then says there are more. */
static void test_dim_refusal_lists_eight(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    char name[8];
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof name, "in%d", i);
        tb_input(m, name, LP_DT_FLOAT, "-1");
    }
    tb_node(m, "Sum", "sum", "in0,in1,in2,in3,in4,in5,in6,in7,in8", "s");
    tb_output(m, "s", LP_DT_FLOAT, "-1");
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    tb_free(m);
    assert_int_equal(lp_graph_bind_dim(g, "?", 1, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "(unknown: input 'in0' axis 0; input 'in1' axis 0;");
    assert_contains(d.last_error, "input 'in7' axis 0; ...)");
    assert_null(strstr(d.last_error, "in8"));
    /* bound through its input, the eighth is the last: no "..." */
    const int64_t one[1] = {1};
    assert_int_equal(lp_graph_bind_input_shape(g, "in0", 1, one, &d), LP_OK);
    assert_int_equal(lp_graph_bind_dim(g, "?", 1, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "input 'in8' axis 0)");
    assert_null(strstr(d.last_error, "in0"));
    lp_graph_free(g);
}

/* The table of written dims is looked up in any order of insertion. */
static void test_written_dims_table(void **state) {
    (void)state;
    lp_graph *g = lp_graph_new("t.onnx");
    assert_non_null(g);
    assert_null(lp_graph_dim_written(g, 0, 0));
    /* out of order and more than one arena block's worth */
    for (int i = 40; i > 0; i--) assert_true(lp_graph_note_written_dim(g, i, i % 3, i % 2 ? "-1" : "'?'"));
    assert_int_equal(g->n_written_dims, 40);
    for (int i = 1; i <= 40; i++) {
        assert_string_equal(lp_graph_dim_written(g, i, i % 3), i % 2 ? "-1" : "'?'");
        assert_null(lp_graph_dim_written(g, i, i % 3 + 1));
    }
    assert_null(lp_graph_dim_written(g, 41, 0));
    lp_graph_free(g);
}

/* An input without a shape takes the rank it is given. */
static void test_bind_unranked_input(void **state) {
    (void)state;
    Onnx__ModelProto *m = tb_model(10, 18);
    tb_input(m, "x", LP_DT_FLOAT, NULL);
    tb_node(m, "Relu", "r", "x", "y");
    tb_output(m, "y", LP_DT_FLOAT, NULL);
    lp_graph *g = NULL;
    lp_diag d;
    assert_int_equal(load(m, &g, &d), LP_OK);
    tb_free(m);
    assert_int_equal(value_named(g, "x")->shape.rank, LP_RANK_UNKNOWN);
    const int64_t dims[2] = {3, 0};
    assert_int_equal(lp_graph_bind_input_shape(g, "x", 2, dims, &d), LP_OK);
    const lp_value *x = value_named(g, "x");
    assert_int_equal(x->shape.rank, 2);
    assert_int_equal(x->shape.dims[0].size, 3);
    assert_int_equal(x->shape.dims[1].size, 0);
    lp_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_graph),
        cmocka_unit_test(test_attr_type_inferred),
        cmocka_unit_test(test_edge_forms),
        cmocka_unit_test(test_typed_fields),
        cmocka_unit_test(test_int64_and_double_fields),
        cmocka_unit_test(test_typed_field_count_mismatch),
        cmocka_unit_test(test_constants_fold),
        cmocka_unit_test(test_sort_out_of_order),
        cmocka_unit_test(test_cycle_rejected),
        cmocka_unit_test(test_dtype_storage),
        cmocka_unit_test(test_external_present),
        cmocka_unit_test(test_external_missing),
        cmocka_unit_test(test_external_escapes),
        cmocka_unit_test(test_external_bad_ranges),
        cmocka_unit_test(test_external_beyond_4gib),
        cmocka_unit_test(test_control_flow_bodies),
        cmocka_unit_test(test_control_flow_bounds),
        cmocka_unit_test(test_fix_input),
        cmocka_unit_test(test_other_unsupported),
        cmocka_unit_test(test_invalid_bytes),
        cmocka_unit_test(test_corrupted_bytes),
        cmocka_unit_test(test_invalid_graphs),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_large_raw_in_file),
        cmocka_unit_test(test_truncated_after_load),
        cmocka_unit_test(test_node_meta_kept_and_copied),
        cmocka_unit_test(test_node_meta_noncanonical),
        cmocka_unit_test(test_raw_mark_in_file),
        cmocka_unit_test(test_rank_bounds),
        cmocka_unit_test(test_bind_dim),
        cmocka_unit_test(test_bind_input_shape),
        cmocka_unit_test(test_bind_shared_symbol),
        cmocka_unit_test(test_bind_unranked_input),
        cmocka_unit_test(test_written_unknown_dims),
        cmocka_unit_test(test_written_dims_table),
        cmocka_unit_test(test_dim_refusal_lists_eight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
