/* Shape inference on tiny hand-built graphs: broadcasting, Reshape 0/-1,
 * Conv/Pool sizes against brute force, symbolic Concat, folding of shape
 * subgraphs, and the error messages. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer_internal.h"
#include "lp_analysis.h"

/* ---- building graphs ------------------------------------------------------------ */

enum { MAX_TEST_NODES = 16 };

static lp_graph *graph(void) {
    lp_graph *g = lp_graph_new("test.onnx");
    assert_non_null(g);
    g->nodes = lp_arena_array(g->arena, MAX_TEST_NODES, sizeof *g->nodes);
    assert_non_null(g->nodes);
    g->opset = 18;
    return g;
}

/* "batch,seq,256": numbers and symbols; NULL for an unknown rank. */
static void set_shape(lp_graph *g, int32_t v, lp_dtype dt, const char *spec) {
    lp_value *val = &g->values[v];
    val->dtype = dt;
    if (!spec) return;
    int rank = 0;
    lp_dim dims[16];
    char buf[128];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (t[0] >= '0' && t[0] <= '9') dims[rank++] = lp_dim_num(atoll(t));
        else dims[rank++] = (lp_dim){.size = LP_DIM_UNKNOWN, .sym = lp_arena_strdup(g->arena, t)};
    }
    val->shape.rank = rank;
    val->shape.dims = lp_arena_array(g->arena, (size_t)rank + 1, sizeof(lp_dim));
    memcpy(val->shape.dims, dims, (size_t)rank * sizeof(lp_dim));
}

static int32_t input(lp_graph *g, const char *name, lp_dtype dt, const char *spec) {
    int32_t v = lp_graph_intern_value(g, name);
    assert_true(v >= 0);
    g->values[v].kind = LP_VALUE_INPUT;
    g->values[v].is_graph_input = true;
    set_shape(g, v, dt, spec);
    return v;
}

/* An int64 constant of rank 1 (or 0 when scalar). */
static int32_t const_i64(lp_graph *g, const char *name, int count, const int64_t *vals, bool scalar) {
    int32_t v = lp_graph_intern_value(g, name);
    assert_true(v >= 0);
    lp_value *val = &g->values[v];
    val->kind = LP_VALUE_CONSTANT;
    val->dtype = LP_DT_INT64;
    val->shape.rank = scalar ? 0 : 1;
    val->shape.dims = lp_arena_array(g->arena, 1, sizeof(lp_dim));
    val->shape.dims[0] = lp_dim_num(count);
    uint8_t *bytes = lp_arena_alloc(g->arena, (size_t)count * 8 + 1);
    for (int i = 0; i < count; i++)
        for (int b = 0; b < 8; b++) bytes[i * 8 + b] = (uint8_t)((uint64_t)vals[i] >> (8 * b));
    val->data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = bytes, .nbytes = (uint64_t)count * 8};
    return v;
}

static int32_t *names_to_values(lp_graph *g, const char *list, int *count) {
    char buf[256];
    int32_t *out = lp_arena_array(g->arena, 8, sizeof *out);
    *count = 0;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        out[(*count)++] = strcmp(t, "-") == 0 ? -1 : lp_graph_intern_value(g, t);
    return out;
}

/* Appends a node; inputs and outputs are space-separated value names. */
static lp_node *node(lp_graph *g, const char *op, const char *name, const char *ins, const char *outs) {
    assert_true(g->n_nodes < MAX_TEST_NODES);
    lp_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op_type = op;
    n->name = name;
    n->domain = "";
    n->file_index = g->n_nodes++;
    n->inputs = names_to_values(g, ins, &n->n_inputs);
    n->outputs = names_to_values(g, outs, &n->n_outputs);
    n->attrs = lp_arena_array(g->arena, 8, sizeof *n->attrs);
    for (int i = 0; i < n->n_outputs; i++) {
        g->values[n->outputs[i]].kind = LP_VALUE_ACTIVATION;
        g->values[n->outputs[i]].producer = n->file_index;
    }
    return n;
}

static void attr_int(lp_node *n, const char *name, int64_t v) {
    n->attrs[n->n_attrs++] = (lp_attr){.name = name, .type = LP_ATTR_INT, .i = v};
}

static void attr_ints(lp_graph *g, lp_node *n, const char *name, int count, const int64_t *v) {
    int64_t *copy = lp_arena_array(g->arena, (size_t)count + 1, sizeof *copy);
    memcpy(copy, v, (size_t)count * sizeof *copy);
    n->attrs[n->n_attrs++] = (lp_attr){.name = name, .type = LP_ATTR_INTS, .n = count, .ints = copy};
}

static void attr_string(lp_node *n, const char *name, const char *s) {
    n->attrs[n->n_attrs++] = (lp_attr){.name = name, .type = LP_ATTR_STRING, .s = s, .s_len = strlen(s)};
}

static lp_status infer(lp_graph *g, lp_diag *d) {
    *d = lp_diag_make("test.onnx");
    d->sink = NULL;
    lp_analysis_options o = lp_analysis_defaults();
    return lp_analysis_infer_shapes(g, &o, d);
}

/* The value's type as text, "float[batch, 3, 4]". */
static const char *type_of(lp_graph *g, const char *name) {
    static char buf[256];
    const lp_value *v = &g->values[lp_graph_find_value(g, name)];
    size_t used = (size_t)snprintf(buf, sizeof buf, "%s[", v->dtype ? lp_dtype_name(v->dtype) : "?");
    if (v->shape.rank < 0) used += (size_t)snprintf(buf + used, sizeof buf - used, "?");
    for (int k = 0; k < v->shape.rank; k++) {
        const lp_dim *dm = &v->shape.dims[k];
        if (dm->size >= 0) used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%lld", k ? ", " : "", (long long)dm->size);
        else used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", k ? ", " : "", dm->sym ? dm->sym : "?");
    }
    snprintf(buf + used, sizeof buf - used, "]");
    return buf;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_dim_algebra(void **state) {
    (void)state;
    lp_arena *a = lp_arena_new();
    lp_dim seq = {.size = -1, .sym = "seq"}, batch = {.size = -1, .sym = "batch"};
    lp_dim bs = lp_dim_mul(a, seq, batch);
    assert_string_equal(bs.sym, "batch*seq");
    lp_dim b2s = lp_dim_mul(a, lp_dim_num(2), bs);
    assert_string_equal(b2s.sym, "2*batch*seq");
    /* the exporter's spelling of the same product is read as a monomial */
    lp_dim torch = {.size = -1, .sym = "seq*batch"};
    lp_dim two = lp_dim_div(a, b2s, torch);
    assert_int_equal(two.size, 2);
    assert_null(two.sym);
    /* inexact division and sums are unknown, never guessed */
    assert_true(lp_dim_is_unknown(lp_dim_div(a, seq, batch)));
    assert_true(lp_dim_is_unknown(lp_dim_add(seq, lp_dim_num(1))));
    assert_int_equal(lp_dim_sub(seq, seq).size, 0);
    /* an expression that is not a product stays one opaque factor */
    lp_dim opaque = {.size = -1, .sym = "((batch*seq)//batch)"};
    assert_string_equal(lp_dim_div(a, lp_dim_mul(a, opaque, seq), seq).sym, "((batch*seq)//batch)");
    lp_arena_free(a);
}

static void test_broadcast(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "a", LP_DT_FLOAT, "batch,1,4");
    input(g, "b", LP_DT_FLOAT, "3,1");
    input(g, "c", LP_DT_FLOAT, "batch,3,4");
    node(g, "Add", "add", "a b", "ab");
    node(g, "Mul", "mul", "ab c", "abc");
    node(g, "Less", "less", "abc b", "cmp");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "ab"), "float[batch, 3, 4]");
    assert_string_equal(type_of(g, "abc"), "float[batch, 3, 4]");
    assert_string_equal(type_of(g, "cmp"), "bool[batch, 3, 4]");
    lp_graph_free(g);
}

static void test_broadcast_errors(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "a", LP_DT_FLOAT, "2,3");
    input(g, "b", LP_DT_FLOAT, "4,3");
    node(g, "Add", "bad_add", "a b", "y");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_ERR_INVALID_MODEL);
    assert_non_null(strstr(d.last_error, "'bad_add' (Add)"));
    assert_non_null(strstr(d.last_error, "broadcast"));
    lp_graph_free(g);

    /* two different symbols: either may be 1, so the result is unresolved */
    g = graph();
    input(g, "a", LP_DT_FLOAT, "n,3");
    input(g, "b", LP_DT_FLOAT, "m,3");
    node(g, "Sub", "sub_nm", "a b", "y");
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "node 0 'sub_nm' (Sub)"));
    assert_non_null(strstr(d.last_error, "unbound dims n, m"));
    lp_graph_free(g);
}

static void test_reshape_zero_and_minus_one(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT16, "batch,seq,256");
    const_i64(g, "t1", 4, (int64_t[]){0, -1, 4, 64}, false);
    node(g, "Reshape", "r1", "x t1", "y1");
    input(g, "z", LP_DT_FLOAT, "2,6");
    const_i64(g, "t2", 2, (int64_t[]){-1, 4}, false);
    node(g, "Reshape", "r2", "z t2", "y2");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "y1"), "float16[batch, seq, 4, 64]");
    assert_string_equal(type_of(g, "y2"), "float[3, 4]");
    lp_graph_free(g);

    g = graph();
    input(g, "z", LP_DT_FLOAT, "5,7");
    const_i64(g, "t", 2, (int64_t[]){-1, 4}, false);
    node(g, "Reshape", "r_bad", "z t", "y");
    assert_int_equal(infer(g, &d), LP_ERR_INVALID_MODEL);
    assert_non_null(strstr(d.last_error, "35 elements"));
    lp_graph_free(g);
}

/* Number of window positions, counted one by one. */
static int64_t brute_windows(int64_t D, int64_t k, int64_t s, int64_t pb, int64_t pe, int64_t dil) {
    int64_t count = 0, eff = (k - 1) * dil + 1;
    for (int64_t start = -pb; start + eff <= D + pe; start += s) count++;
    return count;
}

static void test_conv_pool_sizes(void **state) {
    (void)state;
    for (int64_t D = 1; D <= 12; D++)
        for (int64_t k = 1; k <= 4; k++)
            for (int64_t s = 1; s <= 3; s++)
                for (int64_t p = 0; p <= 2; p++)
                    for (int64_t dil = 1; dil <= 2; dil++) {
                        int64_t want = brute_windows(D, k, s, p, p + 1, dil);
                        if (want <= 0) continue;
                        lp_graph *g = graph();
                        char spec[64];
                        snprintf(spec, sizeof spec, "1,3,%lld,5", (long long)D);
                        input(g, "x", LP_DT_FLOAT, spec);
                        snprintf(spec, sizeof spec, "8,3,%lld,1", (long long)k);
                        input(g, "w", LP_DT_FLOAT, spec);
                        lp_node *n = node(g, "Conv", "conv", "x w", "y");
                        attr_ints(g, n, "strides", 2, (int64_t[]){s, 1});
                        attr_ints(g, n, "pads", 4, (int64_t[]){p, 0, p + 1, 0});
                        attr_ints(g, n, "dilations", 2, (int64_t[]){dil, 1});
                        lp_node *m = node(g, "MaxPool", "pool", "x", "yp");
                        attr_ints(g, m, "kernel_shape", 2, (int64_t[]){k, 1});
                        attr_ints(g, m, "strides", 2, (int64_t[]){s, 1});
                        attr_ints(g, m, "pads", 4, (int64_t[]){p, 0, p + 1, 0});
                        attr_ints(g, m, "dilations", 2, (int64_t[]){dil, 1});
                        lp_diag d;
                        assert_int_equal(infer(g, &d), LP_OK);
                        char expect[64];
                        snprintf(expect, sizeof expect, "float[1, 8, %lld, 5]", (long long)want);
                        assert_string_equal(type_of(g, "y"), expect);
                        snprintf(expect, sizeof expect, "float[1, 3, %lld, 5]", (long long)want);
                        assert_string_equal(type_of(g, "yp"), expect);
                        lp_graph_free(g);
                    }
    /* SAME_UPPER keeps ceil(D / s) */
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "1,3,15,15");
    input(g, "w", LP_DT_FLOAT, "4,1,3,3");
    lp_node *n = node(g, "Conv", "dw", "x w", "y");
    attr_ints(g, n, "strides", 2, (int64_t[]){2, 2});
    attr_int(n, "group", 3);
    attr_string(n, "auto_pad", "SAME_UPPER");
    node(g, "GlobalAveragePool", "gap", "y", "z");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "y"), "float[1, 4, 8, 8]");
    assert_string_equal(type_of(g, "z"), "float[1, 4, 1, 1]");
    lp_graph_free(g);
}

static void test_concat_symbolic(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "a", LP_DT_FLOAT, "batch,3");
    input(g, "b", LP_DT_FLOAT, "batch,5");
    lp_node *n = node(g, "Concat", "cat1", "a b", "y");
    attr_int(n, "axis", 1);
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "y"), "float[batch, 8]");
    lp_graph_free(g);

    /* batch + batch is not a monomial: an error naming the dim and node */
    g = graph();
    input(g, "a", LP_DT_FLOAT, "batch,3");
    n = node(g, "Concat", "cat0", "a a", "y");
    attr_int(n, "axis", 0);
    char *printed = NULL;
    size_t printed_len = 0;
    d = lp_diag_make("test.onnx");
    d.sink = open_memstream(&printed, &printed_len);
    assert_non_null(d.sink);
    lp_analysis_options o = lp_analysis_defaults();
    assert_int_equal(lp_analysis_infer_shapes(g, &o, &d), LP_ERR_UNSUPPORTED);
    fclose(d.sink);
    assert_non_null(strstr(printed, "test.onnx: error: node 0 'cat0' (Concat): "));
    assert_non_null(strstr(printed, "unbound dims batch"));
    assert_non_null(strstr(printed, "--dim"));
    free(printed);
    lp_graph_free(g);

    /* ... which binding resolves */
    g = graph();
    input(g, "a", LP_DT_FLOAT, "batch,3");
    n = node(g, "Concat", "cat0", "a a", "y");
    attr_int(n, "axis", 0);
    assert_int_equal(lp_graph_bind_dim(g, "batch", 5, &d), LP_OK);
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "y"), "float[10, 3]");
    lp_graph_free(g);
}

/* Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write it. */
static lp_graph *shape_subgraph(void) {
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "batch,seq,256");
    const_i64(g, "zero", 1, (int64_t[]){0}, true);
    const_i64(g, "axes0", 1, (int64_t[]){0}, false);
    const_i64(g, "tail", 2, (int64_t[]){-1, 64}, false);
    node(g, "Shape", "shape", "x", "s");
    node(g, "Gather", "gather", "s zero", "b");
    node(g, "Unsqueeze", "unsq", "b axes0", "b1");
    lp_node *c = node(g, "Concat", "cat", "b1 tail", "target");
    attr_int(c, "axis", 0);
    node(g, "Reshape", "reshape", "x target", "y");
    node(g, "Size", "size", "y", "numel");
    return g;
}

static void test_shape_subgraph_folds(void **state) {
    (void)state;
    lp_graph *g = shape_subgraph();
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "s"), "int64[3]");
    assert_string_equal(type_of(g, "target"), "int64[3]");
    /* batch*seq*256 / (batch*64) */
    assert_string_equal(type_of(g, "y"), "float[batch, 4*seq, 64]");
    assert_string_equal(type_of(g, "numel"), "int64[]");
    lp_graph_free(g);

    g = shape_subgraph();
    assert_int_equal(lp_graph_bind_dim(g, "batch", 2, &d), LP_OK);
    assert_int_equal(lp_graph_bind_dim(g, "seq", 8, &d), LP_OK);
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "y"), "float[2, 32, 64]");
    lp_graph_free(g);
}

/* Range(0, seq, 1) and a Slice with computed bounds resolve to numbers. */
static void test_range_slice_expand(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "batch,seq,16");
    const_i64(g, "zero", 1, (int64_t[]){0}, true);
    const_i64(g, "one", 1, (int64_t[]){1}, true);
    const_i64(g, "idx1", 1, (int64_t[]){1}, false);
    const_i64(g, "two", 1, (int64_t[]){2}, false);
    const_i64(g, "m1", 1, (int64_t[]){-1}, false);
    const_i64(g, "zero1", 1, (int64_t[]){0}, false);
    node(g, "Shape", "shape", "x", "s");
    node(g, "Gather", "g1", "s one", "seqv");
    node(g, "Range", "range", "zero seqv one", "pos");
    node(g, "Slice", "sl", "s idx1 two", "seq1");   /* [seq] */
    node(g, "Sub", "sub", "seqv one", "seqm1");      /* seq - 1: unknown until bound */
    node(g, "Unsqueeze", "u", "seqm1 m1", "end");
    node(g, "Slice", "sl2", "x idx1 end idx1", "xs");
    node(g, "Slice", "sl3", "s zero1 two", "bs"); /* [batch, seq] */
    node(g, "Expand", "ex", "pos bs", "posx");
    lp_diag d;
    assert_int_equal(lp_graph_bind_dim(g, "seq", 8, &d), LP_OK);
    assert_int_equal(lp_graph_bind_dim(g, "batch", 3, &d), LP_OK);
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "pos"), "int64[8]");
    assert_string_equal(type_of(g, "xs"), "float[3, 6, 16]");
    assert_string_equal(type_of(g, "posx"), "int64[3, 8]");
    lp_graph_free(g);
}

/* A 2-D integer tensor folds through Transpose and a reversing Slice (the
 * pads chain of F.pad): every element reaches ConstantOfShape's shape. */
static void test_fold_2d(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "2");
    const_i64(g, "flat", 4, (int64_t[]){1, 2, 3, 4}, false);
    const_i64(g, "sq", 2, (int64_t[]){2, 2}, false);
    const_i64(g, "st", 1, (int64_t[]){-1}, false);
    const_i64(g, "en", 1, (int64_t[]){INT64_MIN}, false);
    const_i64(g, "ax", 1, (int64_t[]){0}, false);
    const_i64(g, "sp", 1, (int64_t[]){-1}, false);
    const_i64(g, "m1", 1, (int64_t[]){-1}, false);
    node(g, "Reshape", "r", "flat sq", "m");           /* [[1, 2], [3, 4]] */
    node(g, "Transpose", "t", "m", "mt");              /* [[1, 3], [2, 4]] */
    node(g, "Slice", "s", "mt st en ax sp", "rev");    /* [[2, 4], [1, 3]] */
    node(g, "Reshape", "r2", "rev m1", "v");
    node(g, "ConstantOfShape", "c", "v", "y");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_OK);
    assert_string_equal(type_of(g, "y"), "float[2, 4, 1, 3]");
    lp_graph_free(g);
}

static void test_declared_conflict(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "a", LP_DT_FLOAT, "2,4");
    node(g, "Relu", "relu", "a", "y");
    set_shape(g, lp_graph_find_value(g, "y"), LP_DT_FLOAT, "2,5");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_ERR_INVALID_MODEL);
    assert_non_null(strstr(d.last_error, "'y' is declared float[2, 5]"));
    assert_non_null(strstr(d.last_error, "inferred as float[2, 4]"));
    lp_graph_free(g);
}

static void test_unsupported_listed(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "a", LP_DT_FLOAT, "2,4");
    node(g, "Frobnicate", "f1", "a", "b");
    node(g, "Relu", "relu", "b", "c");
    node(g, "Frobnicate", "f2", "c", "e");
    node(g, "Relu", "relu2", "a", "ok");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "Frobnicate x2 (first: node 0 'f1')"));
    /* inference went on past the unsupported op */
    assert_string_equal(type_of(g, "ok"), "float[2, 4]");
    assert_string_equal(type_of(g, "c"), "?[?]");
    lp_graph_free(g);
}

/* Ranks are bounded by LP_MAX_RANK wherever the file decides them: a shape
 * tensor's length (values unknown, or known), Unsqueeze's axes, a declared
 * input rank. Each is an error at the node, before anything is sized. */
static void test_rank_bounds(void **state) {
    (void)state;
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "2,3");
    input(g, "shp", LP_DT_INT64, "100000000");
    node(g, "Reshape", "big", "x shp", "y");
    node(g, "Expand", "big_expand", "x shp", "z");
    node(g, "ConstantOfShape", "big_fill", "shp", "w");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_int_equal(d.n_errors, 3);
    assert_non_null(strstr(d.last_error, "node 2 'big_fill' (ConstantOfShape)"));
    assert_non_null(strstr(d.last_error, "rank 100000000"));
    assert_int_equal(g->values[lp_graph_find_value(g, "y")].shape.rank, LP_RANK_UNKNOWN);
    lp_graph_free(g);

    /* 65 known ones; 64 are fine */
    int64_t ones[LP_MAX_RANK + 1];
    for (int k = 0; k <= LP_MAX_RANK; k++) ones[k] = 1;
    g = graph();
    input(g, "x", LP_DT_FLOAT, "1");
    const_i64(g, "s64", LP_MAX_RANK, ones, false);
    const_i64(g, "s65", LP_MAX_RANK + 1, ones, false);
    node(g, "Reshape", "r64", "x s64", "y64");
    node(g, "Reshape", "r65", "x s65", "y65");
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_int_equal(d.n_errors, 1);
    assert_non_null(strstr(d.last_error, "node 1 'r65' (Reshape): the output (its shape is input 1 's65') would have rank 65"));
    assert_int_equal(g->values[lp_graph_find_value(g, "y64")].shape.rank, LP_MAX_RANK);
    lp_graph_free(g);

    /* Unsqueeze past the limit; a declared input above it stops at its reader */
    g = graph();
    input(g, "x", LP_DT_FLOAT, "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1");
    g->values[0].shape.rank = 100; /* the input claims rank 100 */
    g->values[0].shape.dims = lp_arena_array(g->arena, 100, sizeof(lp_dim));
    for (int k = 0; k < 100; k++) g->values[0].shape.dims[k] = lp_dim_num(1);
    node(g, "Relu", "relu", "x", "y");
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "rank 100; lpcc supports ranks up to 64"));
    assert_int_equal(g->values[lp_graph_find_value(g, "y")].shape.rank, LP_RANK_UNKNOWN);
    lp_graph_free(g);

    int64_t axes[20];
    for (int k = 0; k < 20; k++) axes[k] = k;
    g = graph();
    input(g, "x", LP_DT_FLOAT, "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1");
    const_i64(g, "axes", 20, axes, false);
    node(g, "Unsqueeze", "u1", "x axes", "u");
    node(g, "Unsqueeze", "u2", "u axes", "uu");
    node(g, "Unsqueeze", "u3", "uu axes", "uuu");
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "node 2 'u3' (Unsqueeze): output 0 ('uuu') would have rank 76"));
    assert_int_equal(g->values[lp_graph_find_value(g, "uu")].shape.rank, 56);
    lp_graph_free(g);
}

/* The op table's stage columns: what footprint, workspace, shard and layers
 * read for an op comes from its row; an op with no row gets the defaults. */
static void test_op_table_columns(void **state) {
    (void)state;
    assert_int_equal(lp_op_flops_of(LP_OP_MatMul), LP_FLOPS_MATMUL);
    assert_int_equal(lp_op_flops_of(LP_OP_Conv), LP_FLOPS_CONV);
    assert_int_equal(lp_op_flops_of(LP_OP_ReduceMean), LP_FLOPS_INPUT);
    assert_int_equal(lp_op_flops_of(LP_OP_Reshape), LP_FLOPS_ZERO);
    assert_int_equal(lp_op_flops_of(LP_OP_Add), LP_FLOPS_OUTPUT);
    assert_int_equal(lp_op_flops_of(LP_OP_UNKNOWN), LP_FLOPS_OUTPUT);
    assert_string_equal(lp_op_workspace_of(LP_OP_Gemm), "min(33554432, 4*outnumel)");
    assert_string_equal(lp_op_workspace_of(LP_OP_Softmax), "8*rows");
    assert_null(lp_op_workspace_of(LP_OP_Relu));
    assert_null(lp_op_workspace_of(LP_OP_UNKNOWN));
    assert_int_equal(lp_op_shard_of(LP_OP_MatMul), LP_SHARD_MATMUL);
    assert_int_equal(lp_op_shard_of(LP_OP_Gemm), LP_SHARD_GEMM);
    assert_int_equal(lp_op_shard_of(LP_OP_Conv), LP_SHARD_CONV);
    assert_int_equal(lp_op_shard_of(LP_OP_ConvTranspose), LP_SHARD_NONE);
    assert_int_equal(lp_op_reads_of(LP_OP_Gather), LP_READS_ROWS);
    assert_int_equal(lp_op_reads_of(LP_OP_GatherND), LP_READS_ROWS);
    assert_int_equal(lp_op_reads_of(LP_OP_Slice), LP_READS_ALL);
    int rows_only = 0;
    for (int id = 1; id <= LP_OP_COUNT; id++) {
        rows_only += lp_op_reads_of(id) == LP_READS_ROWS;
    }
    assert_int_equal(rows_only, 3);
    assert_int_equal(lp_op_emit_of(LP_OP_MatMul), LP_EMIT_MATMUL);
    assert_int_equal(lp_op_emit_of(LP_OP_LessOrEqual), LP_EMIT_BINARY);
    assert_int_equal(lp_op_emit_of(LP_OP_Unsqueeze), LP_EMIT_VIEW);
    assert_int_equal(lp_op_emit_of(LP_OP_NonZero), LP_EMIT_NONE);
    assert_int_equal(lp_op_emit_of(LP_OP_UNKNOWN), LP_EMIT_NONE);
    /* rows without a shape rule are reported as unsupported, like ops with no row */
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "2,3");
    node(g, "NonZero", "nz", "x", "y");
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "does not support 1 op type: NonZero x1"));
    lp_graph_free(g);
}

/* Op ids: every row of ops.def is found by name, in both spellings of the
 * default domain; other domains and unknown names are LP_OP_UNKNOWN. */
static void test_op_ids(void **state) {
    (void)state;
    for (int id = 1; id <= LP_OP_COUNT; id++) {
        assert_int_equal(lp_op_lookup("", lp_op_name(id)), id);
        assert_int_equal(lp_op_lookup("ai.onnx", lp_op_name(id)), id);
        assert_int_equal(lp_op_lookup("com.microsoft", lp_op_name(id)), LP_OP_UNKNOWN);
    }
    assert_string_equal(lp_op_name(LP_OP_Reshape), "Reshape");
    assert_int_equal(lp_op_lookup("", "MatMul"), LP_OP_MatMul);
    assert_int_equal(lp_op_lookup("", "matmul"), LP_OP_UNKNOWN);
    assert_int_equal(lp_op_lookup("", "Constant"), LP_OP_Constant); /* a row with no shape rule */
    assert_int_equal(lp_op_lookup("", ""), LP_OP_UNKNOWN);
    assert_null(lp_op_name(0));
    assert_null(lp_op_name(LP_OP_COUNT + 1));
    lp_graph *g = graph();
    input(g, "x", LP_DT_FLOAT, "2,3");
    lp_node *relu = node(g, "Relu", "relu", "x", "y");
    lp_node *custom = node(g, "Relu", "custom", "y", "z");
    custom->domain = "com.example";
    assert_int_equal(relu->op, LP_OP_UNSET);
    lp_diag d;
    assert_int_equal(infer(g, &d), LP_ERR_UNSUPPORTED); /* com.example.Relu has no rule */
    assert_int_equal(relu->op, LP_OP_Relu);
    assert_int_equal(custom->op, LP_OP_UNKNOWN);
    assert_string_equal(type_of(g, "y"), "float[2, 3]");
    lp_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dim_algebra),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_broadcast_errors),
        cmocka_unit_test(test_reshape_zero_and_minus_one),
        cmocka_unit_test(test_conv_pool_sizes),
        cmocka_unit_test(test_concat_symbolic),
        cmocka_unit_test(test_shape_subgraph_folds),
        cmocka_unit_test(test_range_slice_expand),
        cmocka_unit_test(test_fold_2d),
        cmocka_unit_test(test_declared_conflict),
        cmocka_unit_test(test_unsupported_listed),
        cmocka_unit_test(test_rank_bounds),
        cmocka_unit_test(test_op_ids),
        cmocka_unit_test(test_op_table_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
