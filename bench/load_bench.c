/* load_bench.c - how long lp_frontend_load takes, and how much memory.
 *
 *     load_bench MODEL.onnx [RUNS]
 *
 * Loads MODEL RUNS times (default 10) and prints one line:
 *
 *     nodes=116000 values=...  min_ms=... median_ms=... peak_rss_mb=... base_rss_mb=...
 *
 * peak_rss_mb is the process's high-water mark (getrusage) after all runs;
 * base_rss_mb the same taken before the first load, so the difference is
 * what loading costs. Each graph is freed before the next load.
 */
#define _GNU_SOURCE
#include "bench_clock.h"
#include "lp_frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: load_bench MODEL.onnx [RUNS]\n");
        return 2;
    }
    const char *path = argv[1];
    int runs = argc == 3 ? atoi(argv[2]) : 10;
    if (runs < 1) {
        fprintf(stderr, "load_bench: RUNS must be at least 1\n");
        return 2;
    }
    double *ms = malloc((size_t)runs * sizeof *ms);
    if (!ms) {
        fprintf(stderr, "load_bench: out of memory\n");
        return 1;
    }
    double base = bench_peak_rss_mb();
    int n_nodes = 0, n_values = 0;
    size_t arena = 0;
    for (int i = 0; i < runs; i++) {
        lp_diag d = lp_diag_make(path);
        d.quiet = 1; /* the missing-weights warning once per run is noise */
        lp_load_options opt = {.require_weights = false};
        lp_graph *g = NULL;
        double t0 = bench_ms();
        lp_status st = lp_frontend_load(path, &opt, &g, &d);
        ms[i] = bench_ms() - t0;
        if (st != LP_OK) {
            free(ms);
            return 1; /* diag printed why */
        }
        n_nodes = g->n_nodes;
        n_values = g->n_values;
        arena = lp_arena_bytes(g->arena);
        lp_graph_free(g);
    }
    qsort(ms, (size_t)runs, sizeof *ms, bench_cmp_double);
    double median = runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2;
    printf("nodes=%d values=%d runs=%d min_ms=%.2f median_ms=%.2f peak_rss_mb=%.1f "
           "base_rss_mb=%.1f arena_mb=%.1f\n",
           n_nodes, n_values, runs, ms[0], median, bench_peak_rss_mb(), base,
           (double)arena / (1024.0 * 1024.0));
    free(ms);
    return 0;
}
