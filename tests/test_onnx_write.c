/* lp_frontend_write_submodel: a sub-model written from a hand-built model
 * and loaded back must carry the same nodes, attributes of every kind,
 * initializer bytes and boundary types; failures must leave no file. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lp_frontend.h"
#include "support/onnx_builder.h"
#include "support/tmpdir.h"

#define assert_contains(hay, needle)                                                    \
    do {                                                                                \
        const char *h_ = (hay), *n_ = (needle);                                         \
        if (!h_ || !strstr(h_, n_)) fail_msg("expected \"%s\" in \"%s\"", n_, h_ ? h_ : "(null)"); \
    } while (0)

static const float W_DATA[16] = {-3.0f, 0.5f, 1e-30f, -0.0f, 2.0f, 3.25f, -7.5f, 1e30f,
                                 0.1f,  0.2f, 0.3f,   0.4f,  5.0f, 6.0f,  7.0f,  8.0f};
static const float SCALES[3] = {1.5f, -0.0f, 3e-7f};
static const int64_t PADS[3] = {0, -1, (int64_t)1 << 40};
static const char *const NAMES[3] = {"a", "", "xyz"};
static const int32_t TENSOR_INTS[3] = {7, -8, 9};
static const float PAIR0[2] = {0.25f, -4.0f};
static const uint8_t PAIR1[3] = {1, 2, 255};
static const int64_t SHAPE_C[2] = {2, -1};
/* the external file: 8 bytes of padding, then E's 4 floats */
static const float E_FILE[6] = {99.0f, 98.0f, 1.0f, -2.0f, 3.5f, 1e-3f};

/* Node order after loading (the Constant is folded into value "c"):
 *   0 mm   MatMul(x, W) -> h      (every attribute kind, metadata)
 *   1 clip Clip(h, "", E) -> y    (an omitted optional input)
 *   2 resh Reshape(y, c) -> z
 *   3 relu Relu(z) -> r           (r has no type)
 *   4 neg  Neg(r) -> q            (graph output) */
static Onnx__ModelProto *make_model(void) {
    Onnx__ModelProto *m = tb_model(9, 18);
    tb_opset(m, "ai.onnx.ml", 3);
    tb_input(m, "x", LP_DT_FLOAT, "batch,?,4");
    tb_set_raw(tb_initializer(m, tb_tensor("W", LP_DT_FLOAT, "4,4")), W_DATA, sizeof W_DATA);
    tb_set_external(tb_initializer(m, tb_tensor("E", LP_DT_FLOAT, "4")), "w.bin", "8", "16");

    Onnx__NodeProto *c = tb_node(m, "Constant", "const_c", NULL, "c");
    tb_attr_ints(c, "value_ints", 2, SHAPE_C);

    Onnx__NodeProto *mm = tb_node(m, "MatMul", "mm", "x,W", "h");
    tb_attr_float(mm, "alpha", 0.25f);
    tb_attr_int(mm, "axis", -3);
    tb_attr_string(mm, "mode", "nearest");
    tb_attr_floats(mm, "scales", 3, SCALES);
    tb_attr_ints(mm, "pads", 3, PADS);
    tb_attr_strings(mm, "names", 3, NAMES);
    Onnx__AttributeProto *t = tb_attr(mm, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    t->t = tb_tensor("", LP_DT_INT32, "3");
    tb_set_int32_data(t->t, 3, TENSOR_INTS);
    Onnx__AttributeProto *ts = tb_attr(mm, "pair", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS);
    Onnx__TensorProto *t0 = tb_tensor("", LP_DT_FLOAT, "2"), *t1 = tb_tensor("", LP_DT_UINT8, "1,3");
    tb_set_raw(t0, PAIR0, sizeof PAIR0);
    tb_set_raw(t1, PAIR1, sizeof PAIR1);
    TB_PUSH(ts->tensors, ts->n_tensors, t0);
    TB_PUSH(ts->tensors, ts->n_tensors, t1);
    TB_PUSH(mm->metadata_props, mm->n_metadata_props, tb_kv("namespace", "a/b"));
    TB_PUSH(mm->metadata_props, mm->n_metadata_props, tb_kv("k2", "v2"));

    tb_node(m, "Clip", "clip", "h,,E", "y");
    tb_node(m, "Reshape", "resh", "y,c", "z");
    tb_node(m, "Relu", "relu", "z", "r");
    tb_node(m, "Neg", "neg", "r", "q");
    TB_PUSH(m->graph->value_info, m->graph->n_value_info, tb_value_info("h", LP_DT_FLOAT, "batch,?,4"));
    TB_PUSH(m->graph->value_info, m->graph->n_value_info, tb_value_info("y", LP_DT_FLOAT, NULL));
    TB_PUSH(m->graph->value_info, m->graph->n_value_info, tb_value_info("z", LP_DT_FLOAT, "2,sym"));
    tb_output(m, "q", LP_DT_FLOAT, "2,sym");
    return m;
}

typedef struct fixture {
    char dir[256];  /* the model and w.bin */
    char out[256];  /* another folder for the sub-models */
    char model[512];
    lp_graph *g;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    tmp_make(f->dir, sizeof f->dir);
    tmp_make(f->out, sizeof f->out);
    snprintf(f->model, sizeof f->model, "%s/model.onnx", f->dir);
    Onnx__ModelProto *m = make_model();
    size_t len;
    uint8_t *bytes = tb_pack(m, &len);
    tb_free(m);
    int rc = tmp_write(f->dir, "model.onnx", bytes, len) | tmp_write(f->dir, "w.bin", E_FILE, sizeof E_FILE);
    free(bytes);
    lp_diag d = lp_diag_make(f->model);
    if (rc || lp_frontend_load(f->model, NULL, &f->g, &d) != LP_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    lp_graph_free(f->g);
    tmp_remove(f->dir);
    tmp_remove(f->out);
    free(f);
    return 0;
}

static int32_t value(const lp_graph *g, const char *name) {
    int32_t v = lp_graph_find_value(g, name);
    if (v < 0) fail_msg("no value '%s'", name);
    return v;
}

static bool exists(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0;
}

static lp_status write_sub(const fixture *f, const char *dir, const int *nodes, int n_nodes,
                           const char *const *in, int n_in, const char *const *out, int n_out,
                           lp_diag *d) {
    int32_t iv[8], ov[8];
    for (int i = 0; i < n_in; i++) iv[i] = value(f->g, in[i]);
    for (int i = 0; i < n_out; i++) ov[i] = value(f->g, out[i]);
    char path[1024];
    snprintf(path, sizeof path, "%s/sub.onnx", dir);
    *d = lp_diag_make(f->model);
    d->sink = NULL;
    return lp_frontend_write_submodel(f->g, nodes, n_nodes, iv, n_in, ov, n_out, path, d);
}

static lp_graph *load_sub(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/sub.onnx", dir);
    lp_diag d = lp_diag_make(path);
    lp_load_options opt = {.require_weights = true};
    lp_graph *g = NULL;
    assert_int_equal(lp_frontend_load(path, &opt, &g, &d), LP_OK);
    return g;
}

static void assert_tensor_bytes(const lp_tensor *t, lp_dtype dt, int rank, const int64_t *dims,
                                const void *bytes, size_t n) {
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->shape.rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(t->shape.dims[i].size, dims[i]);
    assert_int_equal(t->data.where, LP_DATA_INLINE);
    assert_int_equal(t->data.nbytes, n);
    assert_memory_equal(t->data.bytes, bytes, n);
}

static void check_attrs(const lp_node *n) {
    assert_int_equal(n->n_attrs, 8);
    const lp_attr *a = lp_node_attr(n, "alpha");
    assert_non_null(a);
    assert_int_equal(a->type, LP_ATTR_FLOAT);
    assert_true(a->f == 0.25f);
    a = lp_node_attr(n, "axis");
    assert_int_equal(a->type, LP_ATTR_INT);
    assert_int_equal(a->i, -3);
    a = lp_node_attr(n, "mode");
    assert_int_equal(a->type, LP_ATTR_STRING);
    assert_string_equal(a->s, "nearest");
    assert_int_equal(a->s_len, 7);
    a = lp_node_attr(n, "scales");
    assert_int_equal(a->type, LP_ATTR_FLOATS);
    assert_int_equal(a->n, 3);
    assert_memory_equal(a->floats, SCALES, sizeof SCALES); /* bitwise: keeps -0.0 */
    a = lp_node_attr(n, "pads");
    assert_int_equal(a->type, LP_ATTR_INTS);
    assert_int_equal(a->n, 3);
    assert_memory_equal(a->ints, PADS, sizeof PADS);
    a = lp_node_attr(n, "names");
    assert_int_equal(a->type, LP_ATTR_STRINGS);
    assert_int_equal(a->n, 3);
    for (int i = 0; i < 3; i++) assert_string_equal(a->strings[i], NAMES[i]);
    a = lp_node_attr(n, "value");
    assert_int_equal(a->type, LP_ATTR_TENSOR);
    int64_t d3[] = {3}, d2[] = {2}, d13[] = {1, 3};
    assert_tensor_bytes(a->tensor, LP_DT_INT32, 1, d3, TENSOR_INTS, sizeof TENSOR_INTS);
    a = lp_node_attr(n, "pair");
    assert_int_equal(a->type, LP_ATTR_TENSORS);
    assert_int_equal(a->n, 2);
    assert_tensor_bytes(&a->tensors[0], LP_DT_FLOAT, 1, d2, PAIR0, sizeof PAIR0);
    assert_tensor_bytes(&a->tensors[1], LP_DT_UINT8, 2, d13, PAIR1, sizeof PAIR1);
}

/* Metadata no stage reads comes back as the bytes the model held: one run
 * of both entries, in the card model's file. */
static void check_meta(const lp_graph *g, const lp_node *n) {
    static const uint8_t want[] = {0x4a, 0x10, 0x0a, 0x09, 'n', 'a', 'm', 'e', 's', 'p', 'a', 'c',
                                   'e', 0x12, 0x03, 'a', '/', 'b', 0x4a, 0x08, 0x0a, 0x02, 'k',
                                   '2', 0x12, 0x02, 'v', '2'};
    assert_int_equal(n->n_meta, 0);
    assert_int_equal(n->n_meta_runs, 1);
    assert_int_equal(n->meta_runs[0].before, 0);
    assert_int_equal(n->meta_runs[0].data.where, LP_DATA_FILE);
    assert_int_equal(n->meta_runs[0].data.nbytes, sizeof want);
    uint8_t got[sizeof want];
    lp_diag d = lp_diag_make(g->path);
    assert_int_equal(lp_frontend_read_tensor(g, &n->meta_runs[0].data, "meta", 0, got, sizeof got, &d),
                     LP_OK);
    assert_memory_equal(got, want, sizeof want);
}

static void check_weight(const lp_graph *g, const char *name, lp_dtype dt, const void *bytes,
                         size_t n) {
    const lp_value *v = &g->values[value(g, name)];
    assert_int_equal(v->kind, LP_VALUE_WEIGHT);
    assert_int_equal(v->dtype, dt);
    uint8_t buf[64];
    assert_true(n <= sizeof buf);
    lp_diag d = lp_diag_make(g->path);
    assert_int_equal(lp_frontend_read_weight(g, v, buf, sizeof buf, &d), LP_OK);
    assert_int_equal(v->data.nbytes, n);
    assert_memory_equal(buf, bytes, n);
}

/* Nodes 0..2 from x to z, into another folder: E's bytes go to a sidecar. */
static void test_roundtrip(void **state) {
    fixture *f = *state;
    int nodes[] = {0, 1, 2};
    const char *in[] = {"x"}, *out[] = {"z"};
    lp_diag d;
    assert_int_equal(write_sub(f, f->out, nodes, 3, in, 1, out, 1, &d), LP_OK);
    lp_graph *s = load_sub(f->out);

    assert_int_equal(s->ir_version, 9);
    assert_string_equal(s->producer_name, "lpcc");
    assert_int_equal(s->n_opsets, 2);
    assert_string_equal(s->opsets[1].domain, "ai.onnx.ml");
    assert_int_equal(s->opsets[1].version, 3);
    assert_int_equal(s->opset, 18);

    assert_int_equal(s->n_nodes, 3);
    const char *names[] = {"mm", "clip", "resh"}, *ops[] = {"MatMul", "Clip", "Reshape"};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(s->nodes[i].name, names[i]);
        assert_string_equal(s->nodes[i].op_type, ops[i]);
        assert_string_equal(s->nodes[i].domain, "");
    }
    check_attrs(&s->nodes[0]);
    check_meta(s, &s->nodes[0]);
    assert_int_equal(s->nodes[1].n_inputs, 3);
    assert_int_equal(s->nodes[1].inputs[1], -1);
    assert_string_equal(s->values[s->nodes[1].inputs[2]].name, "E");
    assert_int_equal(s->nodes[1].n_attrs, 0);

    check_weight(s, "W", LP_DT_FLOAT, W_DATA, sizeof W_DATA);
    check_weight(s, "E", LP_DT_FLOAT, E_FILE + 2, 16);
    check_weight(s, "c", LP_DT_INT64, SHAPE_C, sizeof SHAPE_C);
    const lp_value *e = &s->values[value(s, "E")];
    assert_int_equal(e->data.where, LP_DATA_EXTERNAL);
    assert_string_equal(e->data.location, "sub.onnx.data");
    assert_int_equal(e->data.offset, 0);

    assert_int_equal(s->n_inputs, 1);
    const lp_value *x = &s->values[s->inputs[0]];
    assert_string_equal(x->name, "x");
    assert_int_equal(x->dtype, LP_DT_FLOAT);
    assert_int_equal(x->shape.rank, 3);
    assert_string_equal(x->shape.dims[0].sym, "batch");
    assert_true(x->shape.dims[1].size < 0 && x->shape.dims[1].sym == NULL);
    assert_int_equal(x->shape.dims[2].size, 4);
    assert_int_equal(s->n_outputs, 1);
    const lp_value *z = &s->values[s->outputs[0]];
    assert_string_equal(z->name, "z");
    assert_int_equal(z->shape.rank, 2);
    assert_int_equal(z->shape.dims[0].size, 2);
    assert_string_equal(z->shape.dims[1].sym, "sym");
    /* intermediates keep what was known: h's shape, y's type only */
    const lp_value *h = &s->values[value(s, "h")], *y = &s->values[value(s, "y")];
    assert_int_equal(h->dtype, LP_DT_FLOAT);
    assert_int_equal(h->shape.rank, 3);
    assert_int_equal(y->dtype, LP_DT_FLOAT);
    assert_int_equal(y->shape.rank, LP_RANK_UNKNOWN);
    lp_graph_free(s);

    assert_true(exists(f->out, "sub.onnx.data"));
    assert_false(exists(f->out, "sub.onnx.tmp"));
    assert_false(exists(f->out, "sub.onnx.data.tmp"));
}

/* Next to the model, external weights keep their file and offset. */
/* The bytes of a file, NUL-terminated; caller frees. */
static uint8_t *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* The writer encodes the wire format itself; protobuf-c, unpacking the
 * file and packing it again, must give back exactly the same bytes (fields
 * in number order, shortest varints, ten-byte negative ints). */
static Onnx__ModelProto *assert_canonical(const char *path, uint8_t **bytes, size_t *len) {
    *bytes = read_all(path, len);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, *len, *bytes);
    assert_non_null(m);
    assert_int_equal(onnx__model_proto__get_packed_size(m), *len);
    uint8_t *again = malloc(*len + 1);
    assert_non_null(again);
    assert_int_equal(onnx__model_proto__pack(m, again), *len);
    assert_memory_equal(again, *bytes, *len);
    free(again);
    return m;
}

/* Every node, every attribute kind, metadata, an omitted input, symbolic
 * and unknown dims, an untyped intermediate, external bytes copied. */
static void test_canonical_encoding(void **state) {
    fixture *f = *state;
    int nodes[] = {0, 1, 2, 3, 4};
    const char *in[] = {"x"}, *out[] = {"q"};
    lp_diag d;
    assert_int_equal(write_sub(f, f->out, nodes, 5, in, 1, out, 1, &d), LP_OK);
    char path[1024];
    snprintf(path, sizeof path, "%s/sub.onnx", f->out);
    uint8_t *bytes;
    size_t len;
    Onnx__ModelProto *m = assert_canonical(path, &bytes, &len);
    assert_int_equal(m->graph->n_node, 5);
    assert_int_equal(m->graph->n_initializer, 3); /* W, E, c */
    assert_int_equal(m->graph->node[0]->n_attribute, 8);
    assert_int_equal(m->graph->node[0]->attribute[1]->i, -3);
    assert_int_equal(m->graph->n_value_info, 3); /* h, y, z; r has no type */
    onnx__model_proto__free_unpacked(m, NULL);
    free(bytes);
}

/* A model before IR 4 with a 16 KiB weight: the loader leaves its bytes in
 * the model file and the writer streams them from there; the same bytes
 * held in memory are written from where they are. Both files are the same,
 * canonical, and list the weight among the inputs too. */
static void test_large_weight_streamed(void **state) {
    (void)state;
    enum { N = 64 };
    static float big[N * N];
    for (int i = 0; i < N * N; i++) big[i] = (float)i * 0.5f - 7.0f;
    char dir[256], out[256], model[512], path[1024];
    tmp_make(dir, sizeof dir);
    tmp_make(out, sizeof out);
    Onnx__ModelProto *mp = tb_model(3, 13);
    tb_input(mp, "x", LP_DT_FLOAT, "2,64");
    tb_set_raw(tb_initializer(mp, tb_tensor("B", LP_DT_FLOAT, "64,64")), big, sizeof big);
    tb_node(mp, "MatMul", "mm", "x,B", "y");
    tb_node(mp, "Relu", "relu", "y", "z");
    tb_output(mp, "z", LP_DT_FLOAT, "2,64");
    size_t len;
    uint8_t *bytes = tb_pack(mp, &len);
    tb_free(mp);
    assert_int_equal(tmp_write(dir, "model.onnx", bytes, len), 0);
    free(bytes);
    snprintf(model, sizeof model, "%s/model.onnx", dir);
    lp_diag d = lp_diag_make(model);
    lp_graph *g = NULL;
    assert_int_equal(lp_frontend_load(model, NULL, &g, &d), LP_OK);
    int32_t b = lp_graph_find_value(g, "B");
    assert_true(b >= 0);
    assert_int_equal(g->values[b].data.where, LP_DATA_FILE);

    int nodes[] = {0, 1};
    int32_t in[] = {lp_graph_find_value(g, "x")}, outs[] = {lp_graph_find_value(g, "z")};
    snprintf(path, sizeof path, "%s/streamed.onnx", out);
    assert_int_equal(lp_frontend_write_submodel(g, nodes, 2, in, 1, outs, 1, path, &d), LP_OK);
    uint8_t *streamed;
    size_t n_streamed;
    Onnx__ModelProto *m = assert_canonical(path, &streamed, &n_streamed);
    assert_int_equal(m->ir_version, 3);
    assert_int_equal(m->graph->n_input, 2);
    assert_string_equal(m->graph->input[1]->name, "B");
    assert_int_equal(m->graph->n_initializer, 1);
    assert_int_equal(m->graph->initializer[0]->raw_data.len, sizeof big);
    assert_memory_equal(m->graph->initializer[0]->raw_data.data, big, sizeof big);
    onnx__model_proto__free_unpacked(m, NULL);

    g->values[b].data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = (const uint8_t *)big,
                                         .nbytes = sizeof big};
    snprintf(path, sizeof path, "%s/inline.onnx", out);
    assert_int_equal(lp_frontend_write_submodel(g, nodes, 2, in, 1, outs, 1, path, &d), LP_OK);
    uint8_t *held;
    size_t n_held;
    onnx__model_proto__free_unpacked(assert_canonical(path, &held, &n_held), NULL);
    assert_int_equal(n_held, n_streamed);
    assert_memory_equal(held, streamed, n_held);
    free(held);
    free(streamed);
    lp_graph_free(g);
    tmp_remove(dir);
    tmp_remove(out);
}

static void test_same_folder_keeps_location(void **state) {
    fixture *f = *state;
    int nodes[] = {0, 1};
    /* W is read by mm and is an output itself: one initializer, or the
     * loader reports it defined twice */
    const char *in[] = {"x"}, *out[] = {"h", "y", "W"};
    lp_diag d;
    assert_int_equal(write_sub(f, f->dir, nodes, 2, in, 1, out, 3, &d), LP_OK);
    lp_graph *s = load_sub(f->dir);
    const lp_value *e = &s->values[value(s, "E")];
    assert_int_equal(e->data.where, LP_DATA_EXTERNAL);
    assert_string_equal(e->data.location, "w.bin");
    assert_int_equal(e->data.offset, 8);
    check_weight(s, "E", LP_DT_FLOAT, E_FILE + 2, 16);
    assert_int_equal(s->n_outputs, 3);
    assert_string_equal(s->values[s->outputs[2]].name, "W");
    check_weight(s, "W", LP_DT_FLOAT, W_DATA, sizeof W_DATA);
    lp_graph_free(s);
    assert_false(exists(f->dir, "sub.onnx.data"));
}

static void test_unwritable_path_leaves_nothing(void **state) {
    fixture *f = *state;
    int nodes[] = {3};
    const char *in[] = {"z"}, *out[] = {"r"};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/no_such_folder", f->out);
    lp_diag d;
    /* r has no type: a type error comes first, and leaves nothing either */
    assert_int_equal(write_sub(f, dir, nodes, 1, in, 1, out, 1, &d), LP_ERR_UNSUPPORTED);
    assert_contains(d.last_error, "'r'");
    int nodes2[] = {0};
    const char *in2[] = {"x"}, *out2[] = {"h"};
    assert_int_equal(write_sub(f, dir, nodes2, 1, in2, 1, out2, 1, &d), LP_ERR_OUTPUT);
    assert_contains(d.last_error, "no_such_folder/sub.onnx");
    assert_false(exists(dir, "sub.onnx"));
    assert_false(exists(dir, "sub.onnx.tmp"));
}

/* The external file vanishes after loading: the copy fails half way and
 * neither the model nor its sidecar (nor their temporaries) remain. */
static void test_failed_copy_leaves_nothing(void **state) {
    fixture *f = *state;
    char w[512];
    snprintf(w, sizeof w, "%s/w.bin", f->dir);
    assert_int_equal(unlink(w), 0);
    int nodes[] = {0, 1};
    const char *in[] = {"x"}, *out[] = {"y"};
    lp_diag d;
    assert_int_not_equal(write_sub(f, f->out, nodes, 2, in, 1, out, 1, &d), LP_OK);
    assert_contains(d.last_error, "w.bin");
    const char *left[] = {"sub.onnx", "sub.onnx.tmp", "sub.onnx.data", "sub.onnx.data.tmp"};
    for (int i = 0; i < 4; i++)
        if (exists(f->out, left[i])) fail_msg("'%s' was left behind", left[i]);
}

static void test_selection_errors(void **state) {
    fixture *f = *state;
    lp_diag d;
    int clip[] = {1};
    const char *none[] = {"x"}, *y[] = {"y"};
    /* clip reads h, which nothing in the sub-model provides */
    assert_int_equal(write_sub(f, f->out, clip, 1, none, 1, y, 1, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'h'");
    assert_contains(d.last_error, "'clip'");
    /* an output the nodes do not compute */
    int mm[] = {0};
    const char *z[] = {"z"};
    assert_int_equal(write_sub(f, f->out, mm, 1, none, 1, z, 1, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'z'");
    /* a weight offered as an input */
    const char *w[] = {"x", "W"}, *h[] = {"h"};
    assert_int_equal(write_sub(f, f->out, mm, 1, w, 2, h, 1, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "'W'");
    /* a node index out of range */
    int bad[] = {0, 99};
    assert_int_equal(write_sub(f, f->out, bad, 2, none, 1, h, 1, &d), LP_ERR_USAGE);
    assert_contains(d.last_error, "99");
    assert_false(exists(f->out, "sub.onnx"));
    assert_false(exists(f->out, "sub.onnx.tmp"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_encoding, setup, teardown),
        cmocka_unit_test(test_large_weight_streamed),
        cmocka_unit_test_setup_teardown(test_same_folder_keeps_location, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_path_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_copy_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selection_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
