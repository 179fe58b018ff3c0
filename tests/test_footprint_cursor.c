/* lp_analysis_range_footprint resumes the plan of a growing range (the
 * cursor in analysis/footprint.c). Whatever the order of the calls, every
 * field must equal lp_analysis_range_footprint_exact, which plans the whole
 * range from scratch: checked on a hand-built stack whose graph input is
 * read by every block (a received value freed early, then read again) and
 * on the real models in models/, node by node, in greedy sweeps, shrinking
 * ranges and random order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "layers_internal.h"
#include "lp_analysis.h"
#include "support/ir_builder.h"
#include "lp_frontend.h"

enum { HID = 64, MLP = 256, SEQ = 8 };

/* Blocks y = x + W2 relu(W1 x) * m with m a graph input read by every block,
 * sizes varying by block so that the planner's layouts differ. */
static lp_graph *masked_stack(int blocks) {
    lp_graph *g = lp_graph_new("masked.onnx");
    assert_non_null(g);
    g->nodes = lp_arena_array(g->arena, (size_t)blocks * 5, sizeof(lp_node));
    int32_t x = ib_value(g, "x", LP_VALUE_INPUT, SEQ, HID);
    int32_t m = ib_value(g, "m", LP_VALUE_INPUT, SEQ, HID);
    ib_inputs(g, 2, (int32_t[]){x, m});
    int n = 0;
    for (int b = 0; b < blocks; b++) {
        int64_t mlp = MLP / (1 + b % 3);
        char nm[32];
#define V(fmt, kind, d0, d1) (snprintf(nm, sizeof nm, fmt, b), ib_value(g, nm, kind, d0, d1))
        int32_t w1 = V("w1.%d", LP_VALUE_WEIGHT, HID, mlp);
        int32_t w2 = V("w2.%d", LP_VALUE_WEIGHT, mlp, HID);
        int32_t h = V("h.%d", LP_VALUE_ACTIVATION, SEQ, mlp);
        int32_t r = V("r.%d", LP_VALUE_ACTIVATION, SEQ, mlp);
        int32_t o = V("o.%d", LP_VALUE_ACTIVATION, SEQ, HID);
        int32_t p = V("p.%d", LP_VALUE_ACTIVATION, SEQ, HID);
        int32_t y = V("y.%d", LP_VALUE_ACTIVATION, SEQ, HID);
#undef V
        ib_node(g, &n, "MatMul", x, w1, h);
        ib_node(g, &n, "Relu", h, -1, r);
        ib_node(g, &n, "MatMul", r, w2, o);
        ib_node(g, &n, "Mul", o, m, p);
        ib_node(g, &n, "Add", p, x, y);
        x = y;
    }
    g->n_nodes = n;
    ib_output(g, x);
    return g;
}

/* One call through the cursor, checked field by field against the exact
 * planner. Returns the total. */
static uint64_t check(const lp_layer_ir *L, int first, int last) {
    lp_footprint fast, exact;
    lp_analysis_range_footprint(L, first, last, &fast);
    lp_analysis_range_footprint_exact(L, first, last, &exact);
    if (memcmp(&fast, &exact, sizeof fast) != 0)
        fail_msg("range %d..%d: total %llu activations %llu live %llu sent %llu, exact %llu %llu "
                 "%llu %llu", first, last, (unsigned long long)fast.total,
                 (unsigned long long)fast.activation_bytes, (unsigned long long)fast.live_bytes,
                 (unsigned long long)fast.sent_bytes, (unsigned long long)exact.total,
                 (unsigned long long)exact.activation_bytes, (unsigned long long)exact.live_bytes,
                 (unsigned long long)exact.sent_bytes);
    return fast.total;
}

/* Every sweep first..first, first..first+1, ...; then shrinking ranges
 * and random ranges (a DP's pattern). Returns how many totals differed
 * between neighbouring calls, so callers can see the ranges were not all
 * alike. */
static int check_patterns(const lp_layer_ir *L, int max_len, int n_random) {
    int n = L->n_layers, changes = 0;
    for (int a = 0; a < n; a++) {
        uint64_t prev = 0;
        for (int b = a; b < n && b - a < max_len; b++) {
            uint64_t t = check(L, a, b);
            changes += t != prev;
            prev = t;
        }
        /* the same range again (cached), then shorter ones */
        for (int b = a + max_len - 1 < n ? a + max_len - 1 : n - 1; b >= a; b -= 3) check(L, a, b);
    }
    unsigned seed = 12345;
    for (int i = 0; i < n_random; i++) {
        seed = seed * 1103515245u + 12345u;
        int a = (int)((seed >> 8) % (unsigned)n);
        seed = seed * 1103515245u + 12345u;
        int len = 1 + (int)((seed >> 8) % (unsigned)max_len);
        check(L, a, a + len - 1 < n ? a + len - 1 : n - 1);
        /* grow it by a few layers, sometimes more than one at a time */
        for (int b = a + len; b < n && b < a + len + 4; b += 1 + (int)(seed >> 20) % 2) check(L, a, b);
    }
    return changes;
}

static void test_masked_stack(void **state) {
    (void)state;
    lp_graph *g = masked_stack(12);
    lp_layer_ir *L = ib_build_layers(g, LP_LAYERS_NODE);
    assert_int_equal(L->n_layers, 60);
    assert_true(check_patterns(L, 60, 400) > 60);
    lp_layer_ir_free(L);
    lp_graph_free(g);

    g = masked_stack(12);
    L = ib_build_layers(g, LP_LAYERS_AUTO);
    assert_true(L->n_layers >= 12);
    assert_true(check_patterns(L, L->n_layers, 200) > L->n_layers);
    lp_layer_ir_free(L);
    lp_graph_free(g);
}

/* The real exports, one node per layer and as lpcc groups them. */
static void test_models(void **state) {
    (void)state;
    const char *src = getenv("LPCC_SOURCE_DIR");
    if (!src) skip();
    static const char *const models[] = {"gpt2_tiny", "bert_tiny", "llama_tiny", "cnn_small",
                                         "seed_4x256_ext"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        for (int mode = 0; mode < 2; mode++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/models/%s.onnx", src, models[i]);
            lp_diag d = lp_diag_make(path);
            d.quiet = 1;
            lp_load_options lo = {.require_weights = false};
            lp_graph *g = NULL;
            assert_int_equal(lp_frontend_load(path, &lo, &g, &d), LP_OK);
            assert_int_equal(lp_graph_bind_dim(g, "batch", 2, &d), LP_OK);
            if (strcmp(models[i], "cnn_small") != 0)
                assert_int_equal(lp_graph_bind_dim(g, "seq", 16, &d), LP_OK);
            lp_analysis_options ao = lp_analysis_defaults();
            ao.deploy_dtype = LP_DT_FLOAT16;
            assert_int_equal(lp_analysis_infer_shapes(g, &ao, &d), LP_OK);
            ao.layering = mode ? LP_LAYERS_AUTO : LP_LAYERS_NODE;
            lp_layer_ir *L = NULL;
            assert_int_equal(lp_analysis_build_layers(g, &ao, &L, &d), LP_OK);
            int changes = check_patterns(L, mode ? L->n_layers : 48, 300);
            assert_true(changes > L->n_layers / 2);
            lp_layer_ir_free(L);
            lp_graph_free(g);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masked_stack),
        cmocka_unit_test(test_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
