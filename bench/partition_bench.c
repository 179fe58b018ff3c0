/* Partitioner speed, two ways:
 *
 *   micro: dp (min-max) on 10,000 layers x 64 cards and greedy on 10k / 100k /
 *          1M layers over an additive cost (prefix sums, O(1) a call), so the
 *          figures are the algorithms' own;
 *   real:  lp_partition_run with the analysis footprint source (the exact
 *          memory planner behind every range) on a synthetic stack of N
 *          residual MLP blocks (one 4-node layer a block, as
 *          bench/footprint_bench.c builds), for every algorithm, unpinned and
 *          with one layer in ten pinned, at card counts up to 1,024 and with
 *          1,000 and 25,000 unequal capacities. Each case
 *          runs in its own process, so its peak RSS is its own.
 *
 *     build/bench/partition_bench                  # micro, then real at 10k layers
 *     build/bench/partition_bench real 100000      # real at 100k layers
 *     build/bench/partition_bench case N ALGO CARDS PIN [CAPS [VALIDATE]]  # one case
 *                                                  # (VALIDATE 0: lp_partition_run only)
 */
#define _POSIX_C_SOURCE 200809L
#include "bench_clock.h"
#include "lp_analysis.h"
#include "lp_partition.h"
#include "synthetic_stack.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t prefix_cost(void *ctx, int first, int last) {
    const uint64_t *pre = ctx;
    return pre[last + 1] - pre[first];
}

static uint64_t *random_prefix(int n, uint64_t seed) {
    uint64_t *pre = malloc(sizeof(uint64_t) * ((size_t)n + 1));
    if (!pre) return NULL;
    pre[0] = 0;
    for (int i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        pre[i + 1] = pre[i] + 1000 + seed % 100000; /* 1-100 KB layers */
    }
    return pre;
}

/* ---- the synthetic stack (bench/synthetic_stack.h) ---- */

enum { HID = 128, MLP = 256, SEQ = 16 };


static int micro(void) {
    int ns[] = {10000, 100000, 1000000};
    for (int t = 0; t < 3; t++) {
        int n = ns[t];
        uint64_t *pre = random_prefix(n, 42);
        int *ends = malloc(sizeof(int) * (size_t)n);
        if (!pre || !ends) return 1;
        lp_range_cost c = {n, prefix_cost, pre};
        uint64_t cap = 4u << 20;
        lp_cards cards = {1, &cap, 0};
        double t0 = bench_seconds();
        int g = lp_partition_greedy(&c, &cards, ends, NULL);
        double t1 = bench_seconds();
        printf("greedy  %8d layers  C 4 MiB        %6d cards  %8.3f ms\n", n, g, (t1 - t0) * 1e3);
        if (n == 10000) {
            uint64_t big = UINT64_MAX / 4, largest = 0;
            lp_cards k64 = {1, &big, 64};
            t0 = bench_seconds();
            g = lp_partition_minmax(&c, &k64, 64, ends, &largest);
            t1 = bench_seconds();
            printf("dp      %8d layers  64 cards      %6d cards  %8.3f ms  largest %.1f%% above mean\n", n,
                   g, (t1 - t0) * 1e3, 100.0 * ((double)largest / ((double)pre[n] / 64) - 1));
        }
        free(pre);
        free(ends);
    }
    return 0;
}

/* The analysis source, counting its range queries and the time they take. */
typedef struct counted {
    lp_footprint_source inner;
    long queries;
    double seconds;
} counted;

static void counted_fn(void *ctx, int first, int last, lp_footprint *fp) {
    counted *c = ctx;
    double t0 = bench_seconds();
    c->inner.fn(c->inner.ctx, first, last, fp);
    c->seconds += bench_seconds() - t0;
    c->queries++;
}

static bool counted_bytes(void *ctx, int32_t v, uint64_t *bytes) {
    counted *c = ctx;
    return c->inner.value_bytes(c->inner.ctx, v, bytes);
}

/* One case: build the stack, then time lp_partition_run and lp_plan_validate
 * (each with its count of range-footprint queries). cards 0: as many as
 * needed; pin: every tenth layer pinned where the unpinned plan put it (so
 * the pins are honourable); caps: 0 one capacity (the target's), else a
 * list of that many capacities cycling through 0.6x .. 1.4x of it. */
static int run_case(int blocks, const char *algo, int cards, int pin, int n_caps, bool validate) {
    lp_graph *g = bench_stack(blocks, HID, MLP, SEQ);
    if (!g) return 1;
    lp_diag d = lp_diag_make("stack.onnx");
    lp_analysis_options ao = lp_analysis_defaults();
    lp_layer_ir *L = NULL;
    if (lp_analysis_build_layers(g, &ao, &L, &d) != LP_OK) return 1;
    double rss0 = bench_peak_rss_mb();
    lp_partition_options po = lp_partition_defaults();
    if (!lp_algo_from_name(algo, &po.algo)) return 1;
    po.cards = cards;
    uint64_t *caps = NULL;
    if (n_caps > 0) {
        caps = malloc(sizeof(uint64_t) * (size_t)n_caps);
        if (!caps) return 1;
        for (int i = 0; i < n_caps; i++) caps[i] = po.target.capacity / 10 * (uint64_t)(6 + i % 9);
        po.caps = caps;
        po.n_caps = n_caps;
    }
    counted cs = {lp_partition_source_analysis(L), 0, 0};
    lp_footprint_source src = {counted_fn, counted_bytes, &cs};
    lp_pin *pins = NULL;
    lp_plan *plan = NULL;
    lp_status st0 = pin ? lp_partition_run(L, &src, &po, &plan, &d) : LP_OK;
    if (st0 == LP_ERR_INFEASIBLE) { /* too few cards for this size: a row all the same */
        printf("%-10s %7d layers  --cards %-5d %-6s  no plan (too few cards)\n", algo, L->n_layers,
               cards, "pinned");
        return 0;
    }
    if (pin) {
        if (st0 != LP_OK) return 1;
        pins = malloc(sizeof(lp_pin) * (size_t)(L->n_layers / 10 + 1));
        if (!pins) return 1;
        int n_pins = 0;
        for (int c = 0; c < plan->n_cards; c++)
            for (int l = plan->cards[c].first_layer; l <= plan->cards[c].last_layer; l++)
                if (l % 10 == 5) pins[n_pins++] = (lp_pin){l, c};
        po.pins = pins;
        po.n_pins = n_pins;
        lp_plan_free(plan);
        plan = NULL;
    }
    cs.queries = 0;
    cs.seconds = 0;
    double t0 = bench_seconds();
    lp_status st = lp_partition_run(L, &src, &po, &plan, &d);
    double t1 = bench_seconds();
    long q_run = cs.queries;
    double s_run = cs.seconds;
    if (st == LP_OK && validate) st = lp_plan_validate(plan, L, &src, &d);
    double t2 = bench_seconds();
    char capn[16] = "";
    if (n_caps) snprintf(capn, sizeof capn, "%d caps", n_caps);
    printf("%-10s %7d layers  --cards %-5d %-6s %-11s %6d cards  slowest %8.2f us  %7.3f s (run %.3f s, "
           "%ld queries %.1f us each; validate %.3f s)  peak RSS %6.1f MB (IR %.1f MB)%s\n",
           algo, L->n_layers, cards, pin ? "pinned" : "", capn, plan ? plan->n_cards : 0,
           plan ? plan->slowest_s * 1e6 : 0, t2 - t0,
           t1 - t0, q_run, q_run ? s_run / (double)q_run * 1e6 : 0, t2 - t1, bench_peak_rss_mb(), rss0,
           st == LP_OK ? "" : st == LP_ERR_INFEASIBLE ? "  no plan (too few cards)" : "  FAILED");
    fflush(stdout);
    if (st == LP_ERR_INFEASIBLE && !pin) st = LP_OK; /* reported above: too few cards */
    lp_plan_free(plan);
    free(pins);
    free(caps);
    lp_layer_ir_free(L);
    lp_graph_free(g);
    return st == LP_OK ? 0 : 1;
}

/* One case in its own process, stopped after 30 s. */
static int one(int blocks, const char *algo, int cards, int pin, int n_caps) {
    enum { LIMIT_S = 30 };
    pid_t pid = fork();
    if (pid == 0) {
        alarm(LIMIT_S);
        _exit(run_case(blocks, algo, cards, pin, n_caps, true));
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return 1;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        printf("%-10s %7d layers  --cards %-5d %-6s %5d caps   not done in %d s\n", algo, blocks,
               cards, pin ? "pinned" : "", n_caps, LIMIT_S);
        fflush(stdout);
    }
    return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

/* Every algorithm, pinned or not, at card counts up to 1,024 with one
 * capacity, then with a 1,000-entry and a 25,000-entry list of unequal ones. */
static int real(int blocks) {
    static const char *const algos[] = {"greedy", "dp", "throughput"};
    static const int counts[] = {0, 64, 1024};
    int bad = 0;
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            for (int pin = 0; pin < 2; pin++) bad += one(blocks, algos[a], counts[c], pin, 0);
    for (int a = 0; a < 3; a++)
        for (int pin = 0; pin < 2; pin++) {
            bad += one(blocks, algos[a], 0, pin, 1000);
            bad += one(blocks, algos[a], 0, pin, 25000);
        }
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 6 && strcmp(argv[1], "case") == 0)
        return run_case(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]),
                        argc > 6 ? atoi(argv[6]) : 0, argc > 7 ? atoi(argv[7]) != 0 : true);
    if (argc >= 2 && strcmp(argv[1], "real") == 0) return real(argc > 2 ? atoi(argv[2]) : 10000);
    if (micro() != 0) return 1;
    return real(10000);
}
