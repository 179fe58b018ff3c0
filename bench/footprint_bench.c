/* Speed of the layer IR: lp_analysis_build_layers and
 * lp_analysis_range_footprint on a synthetic stack of N residual MLP blocks
 * (4 nodes each), the way a partitioner calls them: a greedy sweep that grows
 * each group layer by layer until it exceeds a capacity, then
 * N * log2(N) ranges of random length up to 64 layers (a DP's pattern).
 *
 *     footprint_bench [N_BLOCKS]     (default 10000)
 */
#include "bench_clock.h"
#include "lp_analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { HID = 256, MLP = 1024, SEQ = 16 };

static int32_t add_value(lp_graph *g, const char *name, lp_value_kind kind, int64_t d0, int64_t d1) {
    int32_t v = lp_graph_intern_value(g, name);
    if (v < 0) return -1;
    lp_value *val = &g->values[v];
    val->kind = kind;
    val->dtype = LP_DT_FLOAT16;
    val->shape.rank = 2;
    val->shape.dims = lp_arena_array(g->arena, 2, sizeof(lp_dim));
    if (!val->shape.dims) return -1;
    val->shape.dims[0].size = d0;
    val->shape.dims[1].size = d1;
    return v;
}

static bool add_node(lp_graph *g, int *n, const char *op, int32_t a, int32_t b, int32_t out) {
    lp_node *nd = &g->nodes[*n];
    nd->name = lp_arena_printf(g->arena, "/blocks.%d/%s_%d", *n / 4, op, *n % 4);
    nd->op_type = op;
    nd->domain = "";
    nd->file_index = *n;
    nd->n_inputs = b >= 0 ? 2 : 1;
    nd->inputs = lp_arena_array(g->arena, 2, sizeof(int32_t));
    nd->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    if (!nd->name || !nd->inputs || !nd->outputs) return false;
    nd->inputs[0] = a;
    nd->inputs[1] = b;
    nd->n_outputs = 1;
    nd->outputs[0] = out;
    g->values[out].producer = *n;
    (*n)++;
    return true;
}

static lp_graph *make_stack(int blocks) {
    lp_graph *g = lp_graph_new("stack.onnx");
    if (!g) return NULL;
    g->nodes = lp_arena_array(g->arena, (size_t)blocks * 4, sizeof(lp_node));
    g->inputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    g->outputs = lp_arena_array(g->arena, 1, sizeof(int32_t));
    int32_t x = add_value(g, "x", LP_VALUE_INPUT, SEQ, HID);
    if (!g->nodes || !g->inputs || !g->outputs || x < 0) goto fail;
    g->values[x].is_graph_input = true;
    g->n_inputs = 1;
    g->inputs[0] = x;
    int n = 0;
    for (int b = 0; b < blocks; b++) {
        char nm[5][48];
        static const char *const prefix[5] = {"w1", "w2", "h", "r", "y"};
        for (int k = 0; k < 5; k++) snprintf(nm[k], sizeof nm[k], "%s.%d", prefix[k], b);
        int32_t w1 = add_value(g, nm[0], LP_VALUE_WEIGHT, HID, MLP);
        int32_t w2 = add_value(g, nm[1], LP_VALUE_WEIGHT, MLP, HID);
        int32_t h = add_value(g, nm[2], LP_VALUE_ACTIVATION, SEQ, MLP);
        int32_t r = add_value(g, nm[3], LP_VALUE_ACTIVATION, SEQ, MLP);
        char on[48];
        snprintf(on, sizeof on, "o.%d", b);
        int32_t o = add_value(g, on, LP_VALUE_ACTIVATION, SEQ, HID);
        int32_t y = add_value(g, nm[4], LP_VALUE_ACTIVATION, SEQ, HID);
        if (w1 < 0 || w2 < 0 || h < 0 || r < 0 || o < 0 || y < 0) goto fail;
        if (!add_node(g, &n, "MatMul", x, w1, h) || !add_node(g, &n, "Relu", h, -1, r) ||
            !add_node(g, &n, "MatMul", r, w2, o) || !add_node(g, &n, "Add", o, x, y))
            goto fail;
        x = y;
    }
    g->n_nodes = n;
    g->values[x].is_graph_output = true;
    g->n_outputs = 1;
    g->outputs[0] = x;
    return g;
fail:
    lp_graph_free(g);
    return NULL;
}

int main(int argc, char **argv) {
    int blocks = argc > 1 ? atoi(argv[1]) : 10000;
    if (blocks < 1) blocks = 1;
    lp_graph *g = make_stack(blocks);
    if (!g) {
        fprintf(stderr, "footprint_bench: out of memory\n");
        return 1;
    }
    lp_diag d = lp_diag_make("stack.onnx");
    lp_analysis_options o = lp_analysis_defaults();
    lp_layer_ir *L = NULL;
    double t0 = bench_seconds();
    if (lp_analysis_build_layers(g, &o, &L, &d) != LP_OK) return 1;
    double t_build = bench_seconds() - t0;

    /* greedy: grow each group until it passes 8 layers' worth of weights */
    lp_footprint fp;
    uint64_t cap = 8 * L->layers[0].total_bytes;
    long calls = 0;
    t0 = bench_seconds();
    for (int first = 0; first < L->n_layers;) {
        int last = first;
        for (; last < L->n_layers; last++, calls++) {
            lp_analysis_range_footprint(L, first, last, &fp);
            if (fp.total > cap) break;
        }
        first = last > first ? last : first + 1;
    }
    double t_greedy = bench_seconds() - t0;
    long greedy_calls = calls;

    /* DP pattern: n log2 n ranges of random length 1..64 */
    long n_dp = 0;
    for (int k = L->n_layers; k > 1; k >>= 1) n_dp += L->n_layers;
    unsigned seed = 1;
    t0 = bench_seconds();
    for (long i = 0; i < n_dp; i++) {
        seed = seed * 1103515245u + 12345u;
        int first = (int)((seed >> 8) % (unsigned)L->n_layers);
        int len = 1 + (int)((seed >> 4) % 64);
        int last = first + len - 1 < L->n_layers ? first + len - 1 : L->n_layers - 1;
        lp_analysis_range_footprint(L, first, last, &fp);
    }
    double t_dp = bench_seconds() - t0;
    printf("blocks %d, layers %d, nodes %d\n", blocks, L->n_layers, g->n_nodes);
    printf("build_layers     %.3f s\n", t_build);
    printf("greedy sweep     %ld calls, %.3f s, %.2f us/call\n", greedy_calls, t_greedy,
           1e6 * t_greedy / (double)greedy_calls);
    printf("random ranges    %ld calls (len 1-64), %.3f s, %.2f us/call\n", n_dp, t_dp,
           1e6 * t_dp / (double)n_dp);
    lp_layer_ir_free(L);
    lp_graph_free(g);
    return 0;
}
