/* The runtime library in-process (lp_runtime.h): a hand-built model
 * compiled by the lpcc driver into a folder, opened, its input bound, run
 * on 1 and 2 cards, and its output checked against values computed here;
 * and the errors of binding inputs of the wrong size, dtype or shape. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "lp_runtime.h"
#include "lpcc_cli.h"
#include "support/onnx_builder.h"
#include "support/tmpdir.h"

/* y = Relu(x @ W) @ V, x [2, 4], W [4, 3], V [3, 2] */
static const float W[12] = {1, -2, 0.5f, 0, 1, 1, -1, 0.25f, 2, 3, -0.5f, 1};
static const float V[6] = {1, 0, -1, 2, 0.5f, 0.5f};

static void write_model(const char *dir) {
    Onnx__ModelProto *m = tb_model(8, 17);
    tb_input(m, "x", LP_DT_FLOAT, "2,4");
    Onnx__TensorProto *w = tb_tensor("W", LP_DT_FLOAT, "4,3");
    tb_set_raw(w, W, sizeof W);
    tb_initializer(m, w);
    Onnx__TensorProto *v = tb_tensor("V", LP_DT_FLOAT, "3,2");
    tb_set_raw(v, V, sizeof V);
    tb_initializer(m, v);
    tb_node(m, "MatMul", "mm0", "x,W", "h");
    tb_node(m, "Relu", "relu", "h", "r");
    tb_node(m, "MatMul", "mm1", "r,V", "y");
    tb_output(m, "y", LP_DT_FLOAT, "2,2");
    size_t len = 0;
    uint8_t *bytes = tb_pack(m, &len);
    assert_int_equal(tmp_write(dir, "m.onnx", bytes, len), 0);
    free(bytes);
    tb_free(m);
}

static void expected(const float *x, float *y) {
    for (int i = 0; i < 2; i++) {
        float r[3];
        for (int j = 0; j < 3; j++) {
            float s = 0;
            for (int k = 0; k < 4; k++) s += x[i * 4 + k] * W[k * 3 + j];
            r[j] = s > 0 ? s : 0;
        }
        for (int j = 0; j < 2; j++) {
            float s = 0;
            for (int k = 0; k < 3; k++) s += r[k] * V[k * 2 + j];
            y[i * 2 + j] = s;
        }
    }
}

static int compile(const char *dir, const char *out, const char *cards) {
    char model[4096];
    snprintf(model, sizeof model, "%s/m.onnx", dir);
    char *argv[] = {"lpcc", model, "-q", "--layers", "node", "--cards", (char *)cards, "-o",
                    (char *)out, NULL};
    return lpcc_main(9, argv);
}

static void run_cards(const char *cards, int n_cards) {
    char dir[64], out[4096];
    tmp_make(dir, sizeof dir);
    write_model(dir);
    snprintf(out, sizeof out, "%s/build", dir);
    assert_int_equal(compile(dir, out, cards), 0);

    lp_diag d = lp_diag_make(NULL);
    d.quiet = 1;
    lp_rt *rt = NULL;
    lp_rt_options o = lp_rt_defaults();
    assert_int_equal(lp_rt_open(out, &o, &rt, &d), LP_OK);
    assert_int_equal(lp_rt_n_cards(rt), n_cards);
    assert_int_equal(lp_rt_n_inputs(rt), 1);
    assert_int_equal(lp_rt_n_outputs(rt), 1);
    const lp_rt_io *in = lp_rt_input(rt, 0);
    assert_string_equal(in->name, "x");
    assert_int_equal(in->dtype, LP_DT_FLOAT);
    assert_int_equal(in->rank, 2);
    assert_int_equal(in->bytes, 32);

    float x[8] = {1, 2, -3, 0.5f, -1, 0, 2, 4}, want[4];
    expected(x, want);
    assert_int_equal(lp_rt_set_input_bytes(rt, 0, x, sizeof x, &d), LP_OK);
    assert_int_equal(lp_rt_run(rt, &d), LP_OK);
    const float *y = lp_rt_output_data(rt, 0);
    assert_string_equal(lp_rt_output(rt, 0)->name, "y");
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 1e-6);

    /* a second run on other inputs: nothing left over from the first */
    for (int i = 0; i < 8; i++) x[i] = -x[i];
    expected(x, want);
    assert_int_equal(lp_rt_set_input_bytes(rt, 0, x, sizeof x, &d), LP_OK);
    assert_int_equal(lp_rt_run(rt, &d), LP_OK);
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 1e-6);

    /* the wrong size, dtype and shape are usage errors naming the input */
    assert_int_equal(lp_rt_set_input_bytes(rt, 0, x, 16, &d), LP_ERR_USAGE);
    assert_non_null(strstr(d.last_error, "input 'x': 16 bytes given, the model takes 32"));
    lp_dim dims[2] = {{.size = 2}, {.size = 4}};
    lp_tensor t = {.dtype = LP_DT_INT32, .shape = {.rank = 2, .dims = dims},
                   .data = {.where = LP_DATA_INLINE, .bytes = (const uint8_t *)x, .nbytes = 32}};
    assert_int_equal(lp_rt_set_input(rt, 0, &t, &d), LP_ERR_USAGE);
    assert_non_null(strstr(d.last_error, "input 'x' is int32, the model takes float"));
    t.dtype = LP_DT_FLOAT;
    dims[0].size = 4, dims[1].size = 2;
    assert_int_equal(lp_rt_set_input(rt, 0, &t, &d), LP_ERR_USAGE);
    assert_non_null(strstr(d.last_error, "has shape [4, 2], the model was compiled for [2, 4]"));
    lp_rt_close(rt);
    tmp_remove(dir);
}

static void test_one_card(void **state) {
    (void)state;
    run_cards("1", 1);
}

static void test_two_cards(void **state) {
    (void)state;
    run_cards("2", 2);
}

static void test_open_errors(void **state) {
    (void)state;
    char dir[64];
    tmp_make(dir, sizeof dir);
    lp_diag d = lp_diag_make(NULL);
    d.quiet = 1;
    lp_rt *rt = NULL;
    assert_int_equal(lp_rt_open(dir, NULL, &rt, &d), LP_ERR_INVALID_MODEL);
    assert_null(rt);
    assert_non_null(strstr(d.last_error, "manifest.json: no manifest"));
    const char *doc = "{\"format\": \"lpcc-manifest\", \"version\": 1, \"cards\": []}";
    assert_int_equal(tmp_write(dir, "manifest.json", doc, strlen(doc)), 0);
    assert_int_equal(lp_rt_open(dir, NULL, &rt, &d), LP_ERR_INVALID_MODEL);
    assert_non_null(strstr(d.last_error, "key 'cards': missing or empty"));
    doc = "{\"format\": \"onnx\"}";
    assert_int_equal(tmp_write(dir, "manifest.json", doc, strlen(doc)), 0);
    assert_int_equal(lp_rt_open(dir, NULL, &rt, &d), LP_ERR_INVALID_MODEL);
    assert_non_null(strstr(d.last_error, "key 'format'"));
    lp_rt_options o = lp_rt_defaults();
    o.device = "tpu";
    assert_int_equal(lp_rt_open(dir, &o, &rt, &d), LP_ERR_USAGE);
    assert_non_null(strstr(d.last_error, "device 'tpu': not a device (cpu or cuda)"));
    tmp_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_card),
        cmocka_unit_test(test_two_cards),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
