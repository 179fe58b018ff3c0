/* analysis_bench.c - how long lpcc's front half takes on one model: load,
 * shape inference, the layer IR (which includes the whole-model memory plan
 * and every layer's footprint), and optionally the partitioner over the real
 * footprints.
 *
 *     analysis_bench MODEL.onnx [--dim NAME=VALUE]... [--runs N]
 *                    [--cards K [--algo dp|greedy]]
 *
 * Runs the pipeline N times (default 20), each time from the file, and prints
 * one line of key=value pairs: per stage and in total the min and median in
 * milliseconds, the graph's size, and the process's peak RSS (getrusage).
 * With --cards, each run also partitions into at most K cards (default
 * algorithm dp, the min-max split) and reports that stage's time and the
 * plan's card count and largest group.
 */
#include "bench_clock.h"
#include "lp_analysis.h"
#include "lp_frontend.h"
#include "lp_partition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { STAGE_LOAD, STAGE_INFER, STAGE_LAYERS, STAGE_PARTITION, STAGE_TOTAL, N_STAGES };
static const char *const stage_names[N_STAGES] = {"load", "infer", "layers", "partition", "total"};

typedef struct bench_args {
    const char *model;
    int n_dims;
    char **dim_names;
    int64_t *dim_values;
    int runs;
    int cards; /* 0: no partition stage */
    lp_algo algo;
} bench_args;

typedef struct run_result {
    int nodes, values, layers, plan_cards;
    uint64_t largest;
} run_result;

static double median_of_sorted(const double *ms, int n) {
    return n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
}

static int usage(void) {
    fprintf(stderr, "usage: analysis_bench MODEL.onnx [--dim NAME=VALUE]... [--runs N] "
                    "[--cards K [--algo dp|greedy]]\n");
    return 2;
}

/* argv -> args; dim names point into argv (the '=' is overwritten). */
static bool parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){.runs = 20, .algo = LP_ALGO_DP};
    a->dim_names = malloc((size_t)argc * sizeof *a->dim_names);
    a->dim_values = malloc((size_t)argc * sizeof *a->dim_values);
    if (!a->dim_names || !a->dim_values) return false;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--dim") == 0 && next) {
            char *eq = strchr(argv[++i], '=');
            if (!eq) return false;
            *eq = '\0';
            a->dim_names[a->n_dims] = argv[i];
            a->dim_values[a->n_dims++] = atoll(eq + 1);
        } else if (strcmp(argv[i], "--runs") == 0 && next) {
            a->runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--cards") == 0 && next) {
            a->cards = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--algo") == 0 && next) {
            if (!lp_algo_from_name(argv[++i], &a->algo)) return false;
        } else if (argv[i][0] != '-' && !a->model) {
            a->model = argv[i];
        } else {
            return false;
        }
    }
    return a->model && a->runs >= 1 && a->cards >= 0;
}

/* One pass of the pipeline; ms[stage] gets each stage's time. */
static bool run_once(const bench_args *a, double *ms, run_result *r) {
    lp_diag d = lp_diag_make(a->model);
    d.quiet = 1; /* the missing-weights warning once per run is noise */
    lp_load_options lo = {.require_weights = false};
    lp_analysis_options ao = lp_analysis_defaults();
    ao.deploy_dtype = LP_DT_FLOAT16;
    lp_graph *g = NULL;
    lp_layer_ir *L = NULL;
    lp_plan *plan = NULL;
    bool ok = false;
    double t0 = bench_ms();
    if (lp_frontend_load(a->model, &lo, &g, &d) != LP_OK) goto done;
    double t1 = bench_ms();
    for (int i = 0; i < a->n_dims; i++)
        if (lp_graph_bind_dim(g, a->dim_names[i], a->dim_values[i], &d) != LP_OK) goto done;
    if (lp_analysis_infer_shapes(g, &ao, &d) != LP_OK) goto done;
    double t2 = bench_ms();
    if (lp_analysis_build_layers(g, &ao, &L, &d) != LP_OK) goto done;
    double t3 = bench_ms();
    if (a->cards > 0) {
        lp_partition_options po = lp_partition_defaults();
        po.algo = a->algo;
        po.cards = a->cards;
        lp_footprint_source src = lp_partition_source_analysis(L);
        if (lp_partition_run(L, &src, &po, &plan, &d) != LP_OK) goto done;
        r->plan_cards = plan->n_cards;
        r->largest = 0;
        for (int c = 0; c < plan->n_cards; c++)
            if (plan->cards[c].fp.total > r->largest) r->largest = plan->cards[c].fp.total;
    }
    double t4 = bench_ms();
    ms[STAGE_LOAD] = t1 - t0;
    ms[STAGE_INFER] = t2 - t1;
    ms[STAGE_LAYERS] = t3 - t2;
    ms[STAGE_PARTITION] = t4 - t3;
    ms[STAGE_TOTAL] = t4 - t0;
    r->nodes = g->n_nodes;
    r->values = g->n_values;
    r->layers = L->n_layers;
    ok = true;
done:
    lp_plan_free(plan);
    lp_layer_ir_free(L);
    lp_graph_free(g);
    return ok;
}

int main(int argc, char **argv) {
    bench_args a;
    if (!parse_args(argc, argv, &a)) {
        free(a.dim_names);
        free(a.dim_values);
        return usage();
    }
    double *ms = malloc((size_t)a.runs * N_STAGES * sizeof *ms);
    if (!ms) {
        fprintf(stderr, "analysis_bench: out of memory\n");
        return 1;
    }
    double base = bench_peak_rss_mb();
    run_result r = {0};
    int rc = 0;
    for (int i = 0; i < a.runs && rc == 0; i++) {
        double one[N_STAGES] = {0};
        if (!run_once(&a, one, &r)) rc = 1; /* diag printed why */
        for (int s = 0; s < N_STAGES; s++) ms[(size_t)s * (size_t)a.runs + (size_t)i] = one[s];
    }
    if (rc == 0) {
        printf("nodes=%d values=%d layers=%d runs=%d", r.nodes, r.values, r.layers, a.runs);
        for (int s = 0; s < N_STAGES; s++) {
            if (s == STAGE_PARTITION && a.cards == 0) continue;
            double *col = ms + (size_t)s * (size_t)a.runs;
            qsort(col, (size_t)a.runs, sizeof *col, bench_cmp_double);
            printf(" %s_min_ms=%.3f %s_median_ms=%.3f", stage_names[s], col[0], stage_names[s],
                   median_of_sorted(col, a.runs));
        }
        if (a.cards > 0)
            printf(" algo=%s plan_cards=%d largest_mb=%.3f", lp_algo_name(a.algo), r.plan_cards,
                   (double)r.largest / (1024.0 * 1024.0));
        printf(" peak_rss_mb=%.1f base_rss_mb=%.1f\n", bench_peak_rss_mb(), base);
    }
    free(ms);
    free(a.dim_names);
    free(a.dim_values);
    return rc;
}
