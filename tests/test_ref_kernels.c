/* The CPU reference kernels (runtime/lp_ref.h) against the ONNX backend
 * node suite: for every single-node test whose op has a reference kernel,
 * runs the kernel on test_data_set_0's inputs (output shapes from lpcc's
 * shape inference, checked against the expected outputs) and compares the
 * outputs: floats within atol 1e-6 + rtol 1e-5 per element (float16 and
 * bfloat16 outputs within their storage precision), integers and bools
 * exactly. A test whose attributes or dtypes a kernel refuses is a skip,
 * listed with the kernel's reason; anything else that differs fails.
 *
 * Also unit tests of the interface: the fp16 / bf16 conversions, the
 * dispatcher's error for an op without a kernel, refusals that name the op.
 *
 * LPCC_ONNX_TESTDATA overrides the Debian folder. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lp_analysis.h"
#include "lp_frontend.h"
#include "lp_ops.h"
#include "lp_ref.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads `path` into a freshly allocated reference tensor (data malloc'd). */
static lp_status load_pb(lp_graph *g, const char *path, lp_ref_tensor *t, lp_diag *d) {
    lp_tensor pt;
    lp_status st = lp_frontend_load_tensor_file(g, path, &pt, d);
    if (st != LP_OK) return st;
    if (pt.shape.rank < 0 || pt.shape.rank > LP_MAX_RANK)
        return lp_error(d, LP_ERR_UNSUPPORTED, "%s: rank %d", path, pt.shape.rank);
    memset(t, 0, sizeof *t);
    t->dtype = pt.dtype;
    t->rank = pt.shape.rank;
    for (int i = 0; i < t->rank; i++) t->dims[i] = pt.shape.dims[i].size;
    size_t n = pt.data.where == LP_DATA_INLINE ? (size_t)pt.data.nbytes : 0;
    t->data = malloc(n ? n : 1);
    if (!t->data) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (n) memcpy(t->data, pt.data.bytes, n);
    return LP_OK;
}

/* Index of value v among the graph inputs, or -1. */
static int graph_input_pos(const lp_graph *g, int32_t v) {
    for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i] == v) return i;
    return -1;
}

static int graph_output_pos(const lp_graph *g, int32_t v) {
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return i;
    return -1;
}

/* The suite stores bfloat16 tensors as uint16 (numpy has no bfloat16):
 * such a file holds the bits of the model's bfloat16 value. */
static lp_dtype suite_dtype(lp_dtype file, lp_dtype model) {
    return file == LP_DT_UINT16 && model == LP_DT_BFLOAT16 ? LP_DT_BFLOAT16 : file;
}

/* Compares got with want; writes the first difference into why. */
static bool outputs_match(const lp_ref_tensor *got, const lp_ref_tensor *want, char *why, size_t cap) {
    int64_t n = lp_ref_numel(want);
    double rtol = 1e-5, atol = 1e-6;
    if (want->dtype == LP_DT_FLOAT16) rtol = 1e-3, atol = 1e-4;
    if (want->dtype == LP_DT_BFLOAT16) rtol = 1e-2, atol = 1e-3;
    size_t es = lp_ref_dtype_size(want->dtype);
    for (int64_t i = 0; i < n; i++) {
        if (lp_dtype_is_float(want->dtype)) {
            double a, b;
            if (want->dtype == LP_DT_DOUBLE) {
                a = ((double *)got->data)[i];
                b = ((double *)want->data)[i];
            } else {
                lp_ref_tensor g1 = *got, w1 = *want;
                /* loadf is internal: go through the public conversions */
                if (want->dtype == LP_DT_FLOAT) {
                    a = ((float *)g1.data)[i];
                    b = ((float *)w1.data)[i];
                } else if (want->dtype == LP_DT_FLOAT16) {
                    a = lp_ref_f16_to_f32(((uint16_t *)g1.data)[i]);
                    b = lp_ref_f16_to_f32(((uint16_t *)w1.data)[i]);
                } else {
                    a = lp_ref_bf16_to_f32(((uint16_t *)g1.data)[i]);
                    b = lp_ref_bf16_to_f32(((uint16_t *)w1.data)[i]);
                }
            }
            if (isnan(a) && isnan(b)) continue;
            if (a == b) continue;
            if (!(fabs(a - b) <= atol + rtol * fabs(b))) {
                snprintf(why, cap, "element %lld: got %.9g, want %.9g", (long long)i, a, b);
                return false;
            }
        } else if (memcmp((char *)got->data + (size_t)i * es, (char *)want->data + (size_t)i * es, es)) {
            snprintf(why, cap, "element %lld differs (integer/bool, exact)", (long long)i);
            return false;
        }
    }
    return true;
}

typedef struct suite_counts {
    int passed, failed, skipped, no_kernel;
    int per_op_pass[LP_OP_END + 1], per_op_fail[LP_OP_END + 1], per_op_skip[LP_OP_END + 1];
} suite_counts;

typedef enum verdict { V_NONE, V_PASS, V_FAIL, V_SKIP } verdict;

/* Runs one node test folder; prints failures and skips. */
static verdict run_case(const char *dir, const char *name, suite_counts *sc) {
    char path[8300];
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    lp_diag d = lp_diag_make(path);
    d.sink = NULL;
    lp_graph *g = NULL;
    lp_load_options lo = {.require_weights = false};
    if (lp_frontend_load(path, &lo, &g, &d) != LP_OK || g->n_nodes != 1) {
        lp_graph_free(g);
        return V_NONE;
    }
    const lp_node *n = &g->nodes[0];
    int op = lp_node_op(n);
    if (op <= 0 || !lp_ref_kernel(op, NULL)) {
        sc->no_kernel++;
        lp_graph_free(g);
        return V_NONE;
    }
    lp_analysis_options ao = lp_analysis_defaults();
    lp_diag sd = lp_diag_make(path);
    sd.sink = NULL;
    bool inferred = lp_analysis_infer_shapes(g, &ao, &sd) == LP_OK;
    n = &g->nodes[0];

    verdict v = V_FAIL;
    char why[2048] = "";
    lp_ref_tensor *ins = calloc((size_t)n->n_inputs + 1, sizeof *ins);
    lp_ref_tensor *outs = calloc((size_t)n->n_outputs + 1, sizeof *outs);
    lp_ref_tensor *want = calloc((size_t)n->n_outputs + 1, sizeof *want);
    assert_non_null(ins);
    assert_non_null(outs);
    assert_non_null(want);
    for (int k = 0; k < n->n_inputs; k++) {
        int32_t vi = n->inputs[k];
        if (vi < 0) continue;
        const lp_value *val = &g->values[vi];
        int pos = graph_input_pos(g, vi);
        if (pos >= 0) {
            char p[8400];
            snprintf(p, sizeof p, "%s/%s/test_data_set_0/input_%d.pb", dir, name, pos);
            if (load_pb(g, p, &ins[k], &d) != LP_OK) {
                snprintf(why, sizeof why, "input %d: %s", k, d.last_error);
                v = V_SKIP;
                goto done;
            }
            ins[k].dtype = suite_dtype(ins[k].dtype, val->dtype);
        } else if (val->data.where != LP_DATA_NONE) {
            uint64_t bytes;
            if (!lp_value_bytes(val, &bytes)) {
                snprintf(why, sizeof why, "initializer %s of unknown size", val->name);
                v = V_SKIP;
                goto done;
            }
            ins[k].dtype = val->dtype;
            ins[k].rank = val->shape.rank;
            for (int i = 0; i < val->shape.rank; i++) ins[k].dims[i] = val->shape.dims[i].size;
            ins[k].data = malloc(bytes ? bytes : 1);
            assert_non_null(ins[k].data);
            if (lp_frontend_read_weight(g, val, ins[k].data, bytes, &d) != LP_OK) {
                snprintf(why, sizeof why, "initializer %s: %s", val->name, d.last_error);
                goto done;
            }
        } else {
            snprintf(why, sizeof why, "input %d has no data", k);
            goto done;
        }
    }
    for (int k = 0; k < n->n_outputs; k++) {
        int32_t vi = n->outputs[k];
        int pos = vi >= 0 ? graph_output_pos(g, vi) : -1;
        if (pos < 0) continue; /* an output the test does not check: not computed */
        char p[8400];
        snprintf(p, sizeof p, "%s/%s/test_data_set_0/output_%d.pb", dir, name, pos);
        if (load_pb(g, p, &want[k], &d) != LP_OK) {
            snprintf(why, sizeof why, "output %d: %s", k, d.last_error);
            v = V_SKIP;
            goto done;
        }
        const lp_value *val = &g->values[vi];
        want[k].dtype = suite_dtype(want[k].dtype, val->dtype);
        outs[k] = want[k];
        outs[k].data = NULL;
        uint64_t numel;
        if (inferred && val->shape.rank >= 0 && lp_shape_numel(&val->shape, &numel)) {
            /* lpcc's shape inference gives the output shape; it must be the suite's */
            bool same = val->shape.rank == want[k].rank && val->dtype == want[k].dtype;
            for (int i = 0; same && i < val->shape.rank; i++)
                same = val->shape.dims[i].size == want[k].dims[i];
            if (!same) {
                snprintf(why, sizeof why, "output %d: inferred shape or dtype differs from the suite's", k);
                goto done;
            }
        }
        size_t bytes = (size_t)lp_ref_numel(&want[k]) * lp_ref_dtype_size(want[k].dtype);
        outs[k].data = malloc(bytes ? bytes : 1);
        assert_non_null(outs[k].data);
        memset(outs[k].data, 0xA5, bytes); /* garbage a kernel must overwrite */
    }
    {
        lp_ref_call call = {.op = op, .node = n->name, .opset = g->opset,
                            .n_inputs = n->n_inputs, .inputs = ins,
                            .n_outputs = n->n_outputs, .outputs = outs,
                            .n_attrs = n->n_attrs, .attrs = n->attrs, .diag = &d};
        for (int k = 0; k < n->n_outputs; k++)
            if (!want[k].data && outs[k].dtype == LP_DT_UNDEFINED) outs[k].data = NULL;
        lp_status st = lp_ref_run(&call);
        if (st == LP_ERR_UNSUPPORTED) {
            snprintf(why, sizeof why, "%s", d.last_error);
            v = V_SKIP;
            goto done;
        }
        if (st != LP_OK) {
            snprintf(why, sizeof why, "%s: %s", lp_status_name(st), d.last_error);
            goto done;
        }
        v = V_PASS;
        for (int k = 0; k < n->n_outputs && v == V_PASS; k++) {
            if (!want[k].data) continue;
            char diff[512];
            if (!outputs_match(&outs[k], &want[k], diff, sizeof diff)) {
                snprintf(why, sizeof why, "output %d: %s", k, diff);
                v = V_FAIL;
            }
        }
    }
done:
    if (v == V_FAIL) printf("  FAIL %s (%s): %s\n", name, n->op_type, why);
    if (v == V_SKIP) printf("  skip %s (%s): %s\n", name, n->op_type, why);
    if (v == V_PASS) { sc->passed++; sc->per_op_pass[op]++; }
    if (v == V_FAIL) { sc->failed++; sc->per_op_fail[op]++; }
    if (v == V_SKIP) { sc->skipped++; sc->per_op_skip[op]++; }
    for (int k = 0; k < n->n_inputs; k++) free(ins[k].data);
    for (int k = 0; k < n->n_outputs; k++) {
        free(outs[k].data);
        free(want[k].data);
    }
    free(ins);
    free(outs);
    free(want);
    lp_graph_free(g);
    return v;
}

static void test_node_suite(void **state) {
    (void)state;
    const char *env = getenv("LPCC_ONNX_TESTDATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/node", env && *env ? env : "/usr/share/libonnx-testdata/data");
    DIR *dh = opendir(dir);
    if (!dh) {
        printf("no node suite at %s: skipped\n", dir);
        skip();
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (strncmp(e->d_name, "test_", 5) != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            names = realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[n] = strdup(e->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(dh);
    qsort(names, n, sizeof *names, cmp_str);
    suite_counts *sc = calloc(1, sizeof *sc);
    assert_non_null(sc);
    for (size_t i = 0; i < n; i++) run_case(dir, names[i], sc);
    printf("per op (passed/failed/skipped):\n");
    for (int op = 1; op < LP_OP_END; op++)
        if (sc->per_op_pass[op] + sc->per_op_fail[op] + sc->per_op_skip[op])
            printf("    %-20s %3d %3d %3d\n", lp_op_name(op), sc->per_op_pass[op], sc->per_op_fail[op],
                   sc->per_op_skip[op]);
    printf("node suite: %d passed, %d failed, %d skipped (%d single-node tests of ops without a "
           "reference kernel)\n", sc->passed, sc->failed, sc->skipped, sc->no_kernel);
    int failed = sc->failed, passed = sc->passed;
    free(sc);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    assert_int_equal(failed, 0);
    /* the count when the test was written, less a margin for other data versions */
    assert_true(passed >= 400);
}

static void test_half_conversions(void **state) {
    (void)state;
    assert_int_equal(lp_ref_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(lp_ref_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(lp_ref_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(lp_ref_f32_to_f16(65520.0f), 0x7c00);          /* rounds up to inf */
    assert_int_equal(lp_ref_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);   /* tie: to even */
    assert_int_equal(lp_ref_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie: to even */
    assert_int_equal(lp_ref_f32_to_f16(0x1p-24f), 0x0001);          /* smallest subnormal */
    assert_int_equal(lp_ref_f32_to_f16(0x1p-25f), 0x0000);          /* tie to even: 0 */
    assert_true(lp_ref_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(lp_ref_f16_to_f32(0x3555) == 0x1.554p-2f);
    assert_true(isnan(lp_ref_f16_to_f32(lp_ref_f32_to_f16(NAN))));
    assert_int_equal(lp_ref_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(lp_ref_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);          /* tie: to even */
    assert_int_equal(lp_ref_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);      /* tie: to even */
    assert_int_equal(lp_ref_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81); /* above: up */
    assert_true(lp_ref_bf16_to_f32(0x3f81) == 1.0f + 0x1p-7f);
    assert_true(isnan(lp_ref_bf16_to_f32(lp_ref_f32_to_bf16(NAN))));
    /* every half round-trips exactly */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
        assert_int_equal(lp_ref_f32_to_f16(lp_ref_f16_to_f32((uint16_t)h)), h);
    }
}

static void test_dispatch_errors(void **state) {
    (void)state;
    lp_diag d = lp_diag_make("card_0");
    d.sink = NULL;
    assert_null(lp_ref_kernel(LP_OP_LSTM, &d));
    assert_non_null(strstr(d.last_error, "no CPU reference kernel for op LSTM"));
    assert_null(lp_ref_kernel(LP_OP_UNKNOWN, &d));
    assert_non_null(strstr(d.last_error, "op id -1"));
    assert_non_null(lp_ref_kernel(LP_OP_Conv, &d));

    /* an attribute value a kernel refuses names the op and the node */
    float x[2] = {1, 2}, y[2];
    lp_ref_tensor in = {.data = x, .dtype = LP_DT_FLOAT, .rank = 1, .dims = {2}};
    lp_ref_tensor out = {.data = y, .dtype = LP_DT_FLOAT, .rank = 1, .dims = {2}};
    lp_attr a = {.name = "approximate", .type = LP_ATTR_STRING, .s = "cubic"};
    lp_ref_call c = {.op = LP_OP_Gelu, .node = "act1", .opset = 20, .n_inputs = 1, .inputs = &in,
                     .n_outputs = 1, .outputs = &out, .n_attrs = 1, .attrs = &a, .diag = &d};
    assert_int_equal(lp_ref_run(&c), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "Gelu 'act1'"));
    assert_non_null(strstr(d.last_error, "cubic"));
    /* a dtype the kernels cannot store */
    in.dtype = LP_DT_STRING;
    c.n_attrs = 0;
    c.op = LP_OP_Relu;
    assert_int_equal(lp_ref_run(&c), LP_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.last_error, "Relu 'act1'"));
    assert_non_null(strstr(d.last_error, "string"));
}

/* The example of lp_ref.h: Gemm with transB and a bias broadcast. */
static void test_gemm_example(void **state) {
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, 1, 0, 1, 0}, bias[2] = {10, 20}, y[4];
    lp_ref_tensor in[3] = {
        {.data = x, .dtype = LP_DT_FLOAT, .rank = 2, .dims = {2, 3}},
        {.data = w, .dtype = LP_DT_FLOAT, .rank = 2, .dims = {2, 3}},
        {.data = bias, .dtype = LP_DT_FLOAT, .rank = 1, .dims = {2}},
    };
    lp_ref_tensor out = {.data = y, .dtype = LP_DT_FLOAT, .rank = 2, .dims = {2, 2}};
    lp_attr attrs[2] = {{.name = "transB", .type = LP_ATTR_INT, .i = 1},
                        {.name = "alpha", .type = LP_ATTR_FLOAT, .f = 2.0f}};
    lp_diag d = lp_diag_make("card_0");
    d.sink = NULL;
    lp_ref_call c = {.op = LP_OP_Gemm, .node = "fc1", .opset = 17, .n_inputs = 3, .inputs = in,
                     .n_outputs = 1, .outputs = &out, .n_attrs = 2, .attrs = attrs, .diag = &d};
    assert_int_equal(lp_ref_run(&c), LP_OK);
    /* row 0: [1+3, 2] * 2 + bias; row 1: [4+6, 5] * 2 + bias */
    assert_true(y[0] == 18 && y[1] == 24 && y[2] == 30 && y[3] == 30);
    /* a bias that does not broadcast is an invalid model, not a crash */
    in[2].dims[0] = 3;
    assert_int_equal(lp_ref_run(&c), LP_ERR_INVALID_MODEL);
    assert_non_null(strstr(d.last_error, "Gemm 'fc1'"));
}

/* Gelu has no test in the node suite's data: values from erf and tanh. */
/* lp_ref_compare against errors worked out by hand. */
static void test_compare(void **state) {
    (void)state;
    lp_ref_diff d;
    /* want (3, 4): |w| = 5; got (3, 4.5): |g - w| = 0.5 -> 0.1 */
    float want[2] = {3, 4}, got[2] = {3, 4.5f};
    lp_ref_compare(got, LP_DT_FLOAT, want, LP_DT_FLOAT, 2, &d);
    assert_true(fabs(d.rel_l2 - 0.1) < 1e-12);
    assert_int_equal(d.n_mismatch, 0);
    assert_int_equal(d.worst_at, 1);
    /* the same in fp16 against fp32 (all exact in half) */
    uint16_t got16[2] = {lp_ref_f32_to_f16(3), lp_ref_f32_to_f16(4.5f)};
    lp_ref_compare(got16, LP_DT_FLOAT16, want, LP_DT_FLOAT, 2, &d);
    assert_true(fabs(d.rel_l2 - 0.1) < 1e-12);
    /* NaN against NaN is no difference; NaN against a number and unequal infinities are */
    float w3[4] = {NAN, 1, INFINITY, 2}, g3[4] = {NAN, NAN, -INFINITY, 2};
    lp_ref_compare(g3, LP_DT_FLOAT, w3, LP_DT_FLOAT, 4, &d);
    assert_int_equal(d.n_mismatch, 2);
    assert_int_equal(d.first_mismatch, 1);
    assert_true(d.rel_l2 == 0);
    /* integers are compared exactly */
    int64_t wi[3] = {1, 2, 3}, gi[3] = {1, 2, 4};
    lp_ref_compare(gi, LP_DT_INT64, wi, LP_DT_INT64, 3, &d);
    assert_int_equal(d.n_mismatch, 1);
    assert_int_equal(d.first_mismatch, 2);
    /* a zero reference: the error is absolute */
    float z[2] = {0, 0}, e[2] = {3, 4};
    lp_ref_compare(e, LP_DT_FLOAT, z, LP_DT_FLOAT, 2, &d);
    assert_true(fabs(d.rel_l2 - 5) < 1e-12);
}

static void test_gelu(void **state) {
    (void)state;
    float x[4] = {-3.0f, -0.5f, 0.0f, 2.0f}, y[4];
    /* 0.5 x (1 + erf(x / sqrt 2)) and 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    const double exact[4] = {-0.0040496941, -0.1542687694, 0.0, 1.9544997361};
    lp_ref_tensor in = {.data = x, .dtype = LP_DT_FLOAT, .rank = 1, .dims = {4}};
    lp_ref_tensor out = {.data = y, .dtype = LP_DT_FLOAT, .rank = 1, .dims = {4}};
    lp_diag d = lp_diag_make("card_0");
    d.sink = NULL;
    lp_ref_call c = {.op = LP_OP_Gelu, .opset = 20, .n_inputs = 1, .inputs = &in,
                     .n_outputs = 1, .outputs = &out, .diag = &d};
    assert_int_equal(lp_ref_run(&c), LP_OK);
    for (int i = 0; i < 4; i++) assert_true(fabs(y[i] - exact[i]) <= 1e-6 + 1e-5 * fabs(exact[i]));
    lp_attr a = {.name = "approximate", .type = LP_ATTR_STRING, .s = "tanh"};
    c.n_attrs = 1;
    c.attrs = &a;
    assert_int_equal(lp_ref_run(&c), LP_OK);
    for (int i = 0; i < 4; i++) {
        double v = x[i], t = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        assert_true(fabs(y[i] - t) <= 1e-6 + 1e-5 * fabs(t));
    }
    assert_true(fabs(y[0] - exact[0]) > 1e-4); /* the approximation differs where |x| is large */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_dispatch_errors),
        cmocka_unit_test(test_gemm_example),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_node_suite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
