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
#include "synthetic_stack.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { HID = 256, MLP = 1024, SEQ = 16 };


int main(int argc, char **argv) {
    int blocks = argc > 1 ? atoi(argv[1]) : 10000;
    if (blocks < 1) blocks = 1;
    lp_graph *g = bench_stack(blocks, HID, MLP, SEQ);
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
