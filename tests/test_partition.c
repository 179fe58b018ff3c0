/* Partitioner: the algorithms against exhaustive search over every
 * contiguous split on small random instances, sizes and profiles, plans
 * built from a hand-made layer IR, and their validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lp_partition.h"

/* ---- random instances ------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t rng_below(uint64_t n) { return rng() % n; }

#define MAXN 14

/* weights[i] summed, plus (non-additive) the largest act[i] in the range:
 * the shape of weights + peak activation. */
typedef struct inst {
    int n;
    bool additive;
    uint64_t w[MAXN], act[MAXN];
} inst;

static uint64_t inst_cost(void *ctx, int a, int b) {
    const inst *s = ctx;
    uint64_t sum = 0, peak = 0;
    for (int i = a; i <= b; i++) {
        sum += s->w[i];
        if (s->act[i] > peak) peak = s->act[i];
    }
    return s->additive ? sum : sum + peak;
}

static void inst_random(inst *s) {
    s->n = 1 + (int)rng_below(MAXN);
    s->additive = rng_below(2);
    for (int i = 0; i < s->n; i++) {
        s->w[i] = 1 + rng_below(rng_below(4) ? 100 : 1000);
        s->act[i] = rng_below(60);
    }
}

static void random_cards(lp_cards *c, uint64_t *caps, int max_caps) {
    c->n_caps = 1 + (int)rng_below(3) * (int)rng_below((uint64_t)max_caps);
    if (c->n_caps > max_caps) c->n_caps = max_caps;
    for (int i = 0; i < c->n_caps; i++) caps[i] = 50 + rng_below(1200);
    c->caps = caps;
    c->max_cards = rng_below(2) ? 0 : 1 + (int)rng_below(MAXN);
}

/* Walks every set of cuts; calls visit(groups, ends). */
typedef void (*visit_fn)(void *ctx, int groups, const int *ends);

static void for_each_split(int n, visit_fn visit, void *ctx) {
    int ends[MAXN];
    for (uint32_t mask = 0; mask < (1u << (n - 1)); mask++) {
        int g = 0;
        for (int i = 0; i < n - 1; i++)
            if (mask & (1u << i)) ends[g++] = i;
        ends[g++] = n - 1;
        visit(ctx, g, ends);
    }
}

typedef struct search {
    const inst *s;
    const lp_cards *cards;
    int limit;          /* at most this many groups */
    int best_groups;    /* fewest groups that fit */
    uint64_t best_max;  /* smallest largest group within limit */
} search;

static bool split_fits(const search *x, int groups, const int *ends, uint64_t *largest) {
    if (groups > x->limit) return false;
    *largest = 0;
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        uint64_t c = inst_cost((void *)x->s, a, ends[g]);
        if (c > lp_cards_capacity(x->cards, g)) return false;
        if (c > *largest) *largest = c;
    }
    return true;
}

static void visit_search(void *ctx, int groups, const int *ends) {
    search *x = ctx;
    uint64_t largest;
    if (!split_fits(x, groups, ends, &largest)) return;
    if (x->best_groups == 0 || groups < x->best_groups) x->best_groups = groups;
    if (largest < x->best_max) x->best_max = largest;
}

static void check_ends_fit(const inst *s, const lp_cards *cards, const int *ends, int groups,
                           uint64_t ceiling) {
    int a = 0;
    for (int g = 0; g < groups; g++) {
        assert_true(ends[g] >= a);
        uint64_t c = inst_cost((void *)s, a, ends[g]);
        assert_true(c <= lp_cards_capacity(cards, g));
        assert_true(c <= ceiling);
        a = ends[g] + 1;
    }
    assert_int_equal(a, s->n);
}

/* equal: one capacity for every card (the paper's setting, where greedy is
 * exact); else 1-4 capacities in card order (lp_partition_fewest). */
static void check_fewest(bool equal) {
    int feasible = 0;
    for (int iter = 0; iter < 4000; iter++) {
        inst s;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&s);
        random_cards(&cards, caps, equal ? 1 : 4);
        lp_range_cost c = {s.n, inst_cost, &s};
        search x = {&s, &cards, cards.max_cards ? cards.max_cards : s.n, 0, UINT64_MAX};
        for_each_split(s.n, visit_search, &x);
        int ends[MAXN], stuck = -1;
        int groups = equal ? lp_partition_greedy(&c, &cards, ends, &stuck)
                           : lp_partition_fewest(&c, &cards, ends, &stuck);
        assert_int_equal(groups, x.best_groups);
        if (groups) {
            check_ends_fit(&s, &cards, ends, groups, UINT64_MAX);
            feasible++;
        } else {
            assert_true(stuck >= 0 && stuck < s.n);
        }
    }
    /* the generator must produce both outcomes often */
    assert_true(feasible > 1000 && feasible < 3900);
}

static void test_greedy_is_fewest_cards(void **state) {
    (void)state;
    check_fewest(true);
}

static void test_fewest_unequal_cards(void **state) {
    (void)state;
    check_fewest(false);
}

/* Why unequal cards need more than greedy: greedy packs 50+5 on the first
 * card and leaves 50 for the 10-byte card. */
static void test_greedy_counterexample(void **state) {
    (void)state;
    inst s = {.n = 3, .additive = true, .w = {50, 5, 50}};
    uint64_t caps[] = {100, 10, 100};
    lp_cards cards = {3, caps, 3};
    lp_range_cost c = {s.n, inst_cost, &s};
    int ends[3], stuck = -1;
    assert_int_equal(lp_partition_greedy(&c, &cards, ends, &stuck), 0);
    assert_int_equal(stuck, 2);
    assert_int_equal(lp_partition_fewest(&c, &cards, ends, &stuck), 3);
    assert_int_equal(ends[0], 0);
    assert_int_equal(ends[1], 1);
    assert_int_equal(ends[2], 2);
}

static void test_minmax_is_optimal(void **state) {
    (void)state;
    int feasible = 0;
    for (int iter = 0; iter < 4000; iter++) {
        inst s;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&s);
        random_cards(&cards, caps, 4);
        int k = 1 + (int)rng_below((uint64_t)s.n + 1);
        lp_range_cost c = {s.n, inst_cost, &s};
        int limit = cards.max_cards && cards.max_cards < k ? cards.max_cards : k;
        search x = {&s, &cards, limit, 0, UINT64_MAX};
        for_each_split(s.n, visit_search, &x);
        int ends[MAXN];
        uint64_t largest = 0;
        int groups = lp_partition_minmax(&c, &cards, k, ends, &largest);
        if (!x.best_groups) {
            assert_int_equal(groups, 0);
            continue;
        }
        feasible++;
        assert_true(groups > 0 && groups <= limit);
        assert_int_equal(largest, x.best_max);
        check_ends_fit(&s, &cards, ends, groups, largest);
        /* equal capacities: all cards get work when there are enough layers */
        if (cards.n_caps == 1 && s.n >= limit) assert_int_equal(groups, limit);
    }
    assert_true(feasible > 1000);
}

/* ---- throughput ------------------------------------------------------------ */

typedef struct tp_search {
    const lp_stage_model *m;
    const lp_cards *cards;
    int k;              /* exactly k groups; 0 any */
    double best;
    int best_groups;
} tp_search;

static void visit_tp(void *ctx, int groups, const int *ends) {
    tp_search *x = ctx;
    if (x->k && groups != x->k) return;
    if (x->cards->max_cards && groups > x->cards->max_cards) return;
    double worst = 0;
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        if (x->m->footprint.fn(x->m->footprint.ctx, a, ends[g]) > x->m->target->dram_bytes) return;
        double t = lp_stage_time(x->m, x->cards, g, a, ends[g]);
        if (t > worst) worst = t;
    }
    if (worst < x->best * (1 - 1e-12)) {
        x->best = worst;
        x->best_groups = groups;
    }
}

/* A random device and per-layer work over instance s, for the throughput
 * tests; m points into rm, so rm must outlive it. */
typedef struct random_model {
    lp_target t;
    uint64_t flops[MAXN], bytes[MAXN], kernels[MAXN], cut[MAXN];
    lp_stage_model m;
} random_model;

static void random_model_make(random_model *rm, inst *s) {
    rm->t = (lp_target){.peak_flops = 1e3, .hbm_bw = 100, .l2_bw = 400,
                        .link_latency_s = 0.01 * (double)rng_below(5), .link_bw = 50,
                        .launch_s = 0.001, .dram_bytes = 300 + rng_below(3000)};
    for (int i = 0; i < s->n; i++) {
        rm->flops[i] = rng_below(2000);
        rm->bytes[i] = s->w[i] + rng_below(100);
        rm->kernels[i] = 1 + rng_below(5);
        rm->cut[i] = rng_below(200);
    }
    rm->m = (lp_stage_model){s->n, rm->flops, rm->bytes, rm->kernels, rm->cut,
                             {s->n, inst_cost, s}, &rm->t};
}

/* 0 (the best count) two times in three, else a fixed count within the cards. */
static int random_card_count(const inst *s, const lp_cards *cards) {
    int k = rng_below(3) ? 0 : 1 + (int)rng_below((uint64_t)s->n);
    if (k && cards->max_cards && k > cards->max_cards) k = cards->max_cards;
    return k;
}

static void test_throughput_is_optimal(void **state) {
    (void)state;
    int feasible = 0;
    for (int iter = 0; iter < 1500; iter++) {
        inst s;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&s);
        if (s.n > 11) s.n = 11;
        random_cards(&cards, caps, 4);
        random_model rm;
        random_model_make(&rm, &s);
        lp_stage_model m = rm.m;
        int k = random_card_count(&s, &cards);
        tp_search x = {&m, &cards, k, INFINITY, 0};
        for_each_split(s.n, visit_tp, &x);
        int ends[MAXN];
        double slowest = -1;
        int groups = lp_partition_throughput(&m, &cards, k, ends, &slowest);
        if (!x.best_groups) {
            assert_int_equal(groups, 0);
            continue;
        }
        feasible++;
        assert_true(fabs(slowest - x.best) <= 1e-9 * x.best + 1e-15);
        if (k) assert_int_equal(groups, k);
        /* the reported ends achieve the reported time */
        double worst = 0;
        for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
            double st = lp_stage_time(&m, &cards, g, a, ends[g]);
            if (st > worst) worst = st;
        }
        assert_true(fabs(worst - slowest) <= 1e-9 * slowest + 1e-15);
    }
    assert_true(feasible > 500);
}

/* ---- pins ------------------------------------------------------------------ */

/* Pins: 1-3 layers, each on a random group below 4, in any order, so the
 * generator makes monotone, non-monotone, feasible and infeasible sets. */
static void random_pins(int n, int *pinned, lp_pin *pins, int *n_pins) {
    for (int i = 0; i < n; i++) pinned[i] = -1;
    *n_pins = 1 + (int)rng_below(3);
    for (int i = 0; i < *n_pins; i++) {
        int layer = (int)rng_below((uint64_t)n), group = (int)rng_below(n < 4 ? (uint64_t)n : 4);
        if (pinned[layer] >= 0) group = pinned[layer];
        pinned[layer] = group;
        pins[i] = (lp_pin){layer, group};
    }
}

static bool split_honours(const int *pinned, int groups, const int *ends) {
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++)
        for (int i = a; i <= ends[g]; i++)
            if (pinned[i] >= 0 && pinned[i] != g) return false;
    return true;
}

typedef struct pin_search {
    search x;
    const int *pinned;
} pin_search;

static void visit_pinned(void *ctx, int groups, const int *ends) {
    pin_search *p = ctx;
    if (split_honours(p->pinned, groups, ends)) visit_search(&p->x, groups, ends);
}

/* Monotone exactly when brute force over layer/card orders finds no pair
 * with a later layer on an earlier card or one layer on two cards. */
static bool pins_monotone_brute(const lp_pin *pins, int n) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            if (pins[i].layer < pins[k].layer ? pins[i].card > pins[k].card
                                              : pins[i].layer == pins[k].layer && pins[i].card != pins[k].card)
                return false;
    return true;
}

/* lp_partition_fewest_pinned and lp_partition_minmax_pinned against every
 * split honouring the pins (n <= 12, equal and unequal capacities,
 * additive and not). */
static void test_pinned_is_optimal(void **state) {
    (void)state;
    int feasible = 0, infeasible_pinned = 0, non_monotone = 0;
    for (int iter = 0; iter < 6000; iter++) {
        inst s;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&s);
        if (s.n > 12) s.n = 12;
        random_cards(&cards, caps, iter % 2 ? 4 : 1);
        int pinned[MAXN], n_pins;
        lp_pin pins[3];
        random_pins(s.n, pinned, pins, &n_pins);
        int first = -1, second = -1;
        bool monotone = lp_pins_sort_check(pins, n_pins, &first, &second);
        assert_int_equal(monotone, pins_monotone_brute(pins, n_pins));
        for (int i = 1; i < n_pins; i++) assert_true(pins[i - 1].layer <= pins[i].layer);
        if (!monotone) {
            non_monotone++;
            assert_true(first >= 0 && second == first + 1);
            assert_false(pins_monotone_brute((lp_pin[]){pins[first], pins[second]}, 2));
        }
        lp_range_cost c = {s.n, inst_cost, &s};
        pin_search all = {{&s, &cards, cards.max_cards ? cards.max_cards : s.n, 0, UINT64_MAX}, pinned};
        for_each_split(s.n, visit_pinned, &all);
        pin_search free_ = {{&s, &cards, all.x.limit, 0, UINT64_MAX}, NULL};
        for_each_split(s.n, visit_search, &free_.x);
        int ends[MAXN];
        int groups = lp_partition_fewest_pinned(&c, &cards, pinned, ends);
        assert_int_equal(groups, all.x.best_groups);
        if (!groups) {
            if (!monotone) assert_int_equal(all.x.best_groups, 0);
            infeasible_pinned += free_.x.best_groups > 0;
            continue;
        }
        assert_true(monotone);
        feasible++;
        check_ends_fit(&s, &cards, ends, groups, UINT64_MAX);
        assert_true(split_honours(pinned, groups, ends));
        /* min-max over at most k groups */
        int k = 1 + (int)rng_below((uint64_t)s.n + 1);
        int limit = cards.max_cards && cards.max_cards < k ? cards.max_cards : k;
        pin_search mm = {{&s, &cards, limit, 0, UINT64_MAX}, pinned};
        for_each_split(s.n, visit_pinned, &mm);
        uint64_t largest = 0;
        groups = lp_partition_minmax_pinned(&c, &cards, k, pinned, ends, &largest);
        if (!mm.x.best_groups) {
            assert_int_equal(groups, 0);
            continue;
        }
        assert_true(groups > 0 && groups <= limit);
        assert_int_equal(largest, mm.x.best_max);
        check_ends_fit(&s, &cards, ends, groups, largest);
        assert_true(split_honours(pinned, groups, ends));
    }
    /* all outcomes, including plans that exist only without the pins */
    assert_true(feasible > 1000);
    assert_true(infeasible_pinned > 300);
    assert_true(non_monotone > 300);
}

typedef struct tp_pin_search {
    tp_search x;
    const int *pinned;
} tp_pin_search;

static void visit_tp_pinned(void *ctx, int groups, const int *ends) {
    tp_pin_search *p = ctx;
    if (split_honours(p->pinned, groups, ends)) visit_tp(&p->x, groups, ends);
}

static void test_throughput_pinned_is_optimal(void **state) {
    (void)state;
    int feasible = 0;
    for (int iter = 0; iter < 1500; iter++) {
        inst s;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&s);
        if (s.n > 11) s.n = 11;
        random_cards(&cards, caps, 4);
        int pinned[MAXN], n_pins;
        lp_pin pins[3];
        random_pins(s.n, pinned, pins, &n_pins);
        random_model rm;
        random_model_make(&rm, &s);
        lp_stage_model m = rm.m;
        int k = random_card_count(&s, &cards);
        tp_pin_search x = {{&m, &cards, k, INFINITY, 0}, pinned};
        for_each_split(s.n, visit_tp_pinned, &x);
        int ends[MAXN];
        double slowest = -1;
        int groups = lp_partition_throughput_pinned(&m, &cards, k, pinned, ends, &slowest);
        if (!x.x.best_groups) {
            assert_int_equal(groups, 0);
            continue;
        }
        feasible++;
        assert_true(groups > 0);
        assert_true(fabs(slowest - x.x.best) <= 1e-9 * x.x.best + 1e-15);
        if (k) assert_int_equal(groups, k);
        assert_true(split_honours(pinned, groups, ends));
    }
    assert_true(feasible > 300);
}

/* Many pins in layer order: each layer pinned one time in three, to a
 * group that grows by 0-2 from one pin to the next (groups up to ~8). */
static void dense_pins(int n, int *pinned) {
    int g = (int)rng_below(2);
    for (int i = 0; i < n; i++) {
        pinned[i] = -1;
        if (rng_below(3)) continue;
        pinned[i] = g;
        g += (int)rng_below(3);
    }
}

/* Capacity lists longer than the model (one entry per card, as a cluster
 * file lists them), one capacity with many pinned blocks, and many pins
 * under unequal capacities: every search against the exhaustive one. */
static void test_long_capacity_lists(void **state) {
    (void)state;
    int feasible = 0, pinned_feasible = 0, tp_feasible = 0;
    for (int iter = 0; iter < 4000; iter++) {
        inst s;
        inst_random(&s);
        if (s.n > 11) s.n = 11;
        uint64_t caps[24];
        lp_cards cards = {iter % 3 == 0 ? 1 : s.n + (int)rng_below(12), caps, 0};
        for (int i = 0; i < cards.n_caps; i++) caps[i] = 50 + rng_below(1200);
        cards.max_cards = rng_below(2) ? 0 : 1 + (int)rng_below(MAXN);
        lp_range_cost c = {s.n, inst_cost, &s};
        int ends[MAXN], stuck = -1;
        int limit = cards.max_cards ? cards.max_cards : s.n;
        search x = {&s, &cards, limit, 0, UINT64_MAX};
        for_each_split(s.n, visit_search, &x);
        int groups = lp_partition_fewest(&c, &cards, ends, &stuck);
        assert_int_equal(groups, x.best_groups);
        if (groups) {
            check_ends_fit(&s, &cards, ends, groups, UINT64_MAX);
            feasible++;
        }
        int pinned[MAXN];
        dense_pins(s.n, pinned);
        pin_search all = {{&s, &cards, limit, 0, UINT64_MAX}, pinned};
        for_each_split(s.n, visit_pinned, &all);
        groups = lp_partition_fewest_pinned(&c, &cards, pinned, ends);
        assert_int_equal(groups, all.x.best_groups);
        if (groups) {
            pinned_feasible++;
            check_ends_fit(&s, &cards, ends, groups, UINT64_MAX);
            assert_true(split_honours(pinned, groups, ends));
            int k = 1 + (int)rng_below((uint64_t)s.n + 1);
            int lim = cards.max_cards && cards.max_cards < k ? cards.max_cards : k;
            pin_search mm = {{&s, &cards, lim, 0, UINT64_MAX}, pinned};
            for_each_split(s.n, visit_pinned, &mm);
            uint64_t largest = 0;
            groups = lp_partition_minmax_pinned(&c, &cards, k, pinned, ends, &largest);
            assert_int_equal(groups > 0, mm.x.best_groups > 0);
            if (groups) {
                assert_int_equal(largest, mm.x.best_max);
                check_ends_fit(&s, &cards, ends, groups, largest);
                assert_true(split_honours(pinned, groups, ends));
            }
        }
        random_model rm;
        random_model_make(&rm, &s);
        lp_stage_model m = rm.m;
        int k = random_card_count(&s, &cards);
        tp_pin_search tx = {{&m, &cards, k, INFINITY, 0}, pinned};
        for_each_split(s.n, visit_tp_pinned, &tx);
        double slowest = -1;
        groups = lp_partition_throughput_pinned(&m, &cards, k, pinned, ends, &slowest);
        assert_int_equal(groups > 0, tx.x.best_groups > 0);
        if (groups) {
            tp_feasible++;
            assert_true(fabs(slowest - tx.x.best) <= 1e-9 * tx.x.best + 1e-15);
            if (k) assert_int_equal(groups, k);
            assert_true(split_honours(pinned, groups, ends));
        }
    }
    assert_true(feasible > 1000 && pinned_feasible > 500 && tp_feasible > 500);
}

/* ---- throughput: unequal capacities, exact card counts, pins ------------- */

typedef struct tp_any_search {
    const lp_stage_model *m;
    const lp_cards *cards;
    int k;              /* exactly k groups; 0 any within the cards */
    const int *pinned;  /* or NULL */
    double best;
} tp_any_search;

static void visit_tp_any(void *ctx, int groups, const int *ends) {
    tp_any_search *x = ctx;
    int limit = lp_cards_max(x->cards);
    if (x->k && groups != x->k) return;
    if (limit && groups > limit) return;
    if (x->cards->max_cards < 0 && groups != limit) return; /* --cards N: exactly N */
    if (x->pinned && !split_honours(x->pinned, groups, ends)) return;
    double worst = 0;
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        if (x->m->footprint.fn(x->m->footprint.ctx, a, ends[g]) > x->m->target->dram_bytes) return;
        double t = lp_stage_time(x->m, x->cards, g, a, ends[g]);
        if (t > worst) worst = t;
    }
    if (worst < x->best) x->best = worst;
}

/* Every card its own capacity (lists up to 8 longer than the model), the
 * card count free, bounded or exact, no pins, a few or dense ones, cut
 * bytes that rise and fall (so a shorter group can leave a cheaper cut),
 * against the exhaustive search; one instance in five has HBM faster than
 * L2, where stage times need not grow with the group (the general DP). */
static void test_throughput_unequal_is_optimal(void **state) {
    (void)state;
    int feasible = 0, exact = 0, pinned_feasible = 0;
    for (int iter = 0; iter < 6000; iter++) {
        inst s;
        inst_random(&s);
        if (s.n > 11) s.n = 11;
        uint64_t caps[24];
        lp_cards cards = {1 + (int)rng_below((uint64_t)s.n + 8), caps, 0};
        for (int i = 0; i < cards.n_caps; i++) caps[i] = 30 + rng_below(rng_below(2) ? 300 : 1500);
        int mode = (int)rng_below(3);
        if (mode == 1) cards.max_cards = 1 + (int)rng_below((uint64_t)s.n + 1);
        if (mode == 2) cards.max_cards = -(1 + (int)rng_below((uint64_t)s.n + 1));
        random_model rm;
        random_model_make(&rm, &s);
        for (int i = 0; i < s.n; i++) rm.cut[i] = rng_below(2) ? rng_below(20) : 100 + rng_below(400);
        if (rng_below(5) == 0) rm.t.hbm_bw = 800;
        lp_stage_model m = rm.m;
        int pinned[MAXN], n_pins = 0;
        lp_pin pins[3];
        int pin_mode = (int)rng_below(3);
        if (pin_mode == 1) random_pins(s.n, pinned, pins, &n_pins);
        if (pin_mode == 2) dense_pins(s.n, pinned);
        const int *pin = pin_mode ? pinned : NULL;
        int k = mode == 2 ? 0 : random_card_count(&s, &cards);
        tp_any_search x = {&m, &cards, k, pin, INFINITY};
        for_each_split(s.n, visit_tp_any, &x);
        int ends[MAXN];
        double slowest = -1;
        int groups = pin ? lp_partition_throughput_pinned(&m, &cards, k, pin, ends, &slowest)
                         : lp_partition_throughput(&m, &cards, k, ends, &slowest);
        if (!isfinite(x.best)) {
            assert_int_equal(groups, 0);
            continue;
        }
        feasible++;
        exact += mode == 2;
        pinned_feasible += pin != NULL;
        assert_true(groups > 0);
        assert_true(fabs(slowest - x.best) <= 1e-9 * x.best + 1e-15);
        if (k) assert_int_equal(groups, k);
        if (cards.max_cards < 0) assert_int_equal(groups, -cards.max_cards);
        if (cards.max_cards > 0) assert_true(groups <= cards.max_cards);
        if (pin) assert_true(split_honours(pin, groups, ends));
        double worst = 0;
        for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
            assert_true(ends[g] >= a);
            assert_true(m.footprint.fn(m.footprint.ctx, a, ends[g]) <= m.target->dram_bytes);
            double st = lp_stage_time(&m, &cards, g, a, ends[g]);
            if (st > worst) worst = st;
        }
        assert_int_equal(ends[groups - 1], s.n - 1);
        assert_true(fabs(worst - slowest) <= 1e-9 * slowest + 1e-15);
    }
    assert_true(feasible > 2500 && exact > 600 && pinned_feasible > 1000);
}

/* An additive cost that counts its calls. */
typedef struct counted_prefix {
    const uint64_t *pre;
    long calls;
} counted_prefix;

static uint64_t counted_prefix_cost(void *ctx, int a, int b) {
    counted_prefix *c = ctx;
    c->calls++;
    return c->pre[b + 1] - c->pre[a];
}

/* 20,000 layers on 25,000 cards of 9 capacities in turn, the card count
 * free and then 64 exactly, with and without pins: the work grows with
 * n log n, not with cards x layers (the DP over (card, end) would make
 * billions of range costs here). */
static void test_throughput_unequal_scale(void **state) {
    (void)state;
    enum { N = 20000, CAPS = 25000 };
    uint64_t *pre = malloc(sizeof(uint64_t) * (N + 1)), *caps = malloc(sizeof(uint64_t) * CAPS);
    uint64_t *flops = malloc(sizeof(uint64_t) * N), *bytes = malloc(sizeof(uint64_t) * N);
    uint64_t *kernels = malloc(sizeof(uint64_t) * N), *cut = malloc(sizeof(uint64_t) * N);
    int *ends = malloc(sizeof(int) * N), *pinned = malloc(sizeof(int) * N);
    assert_true(pre && caps && flops && bytes && kernels && cut && ends && pinned);
    pre[0] = 0;
    for (int i = 0; i < N; i++) {
        uint64_t w = 1000 + rng_below(100000);
        pre[i + 1] = pre[i] + w;
        flops[i] = 1000 + rng_below(1000000);
        bytes[i] = w + rng_below(10000);
        kernels[i] = 1 + rng_below(4);
        cut[i] = rng_below(100000);
    }
    for (int i = 0; i < CAPS; i++) caps[i] = (4u << 20) / 10 * (uint64_t)(6 + i % 9);
    lp_target t = {.peak_flops = 1e12, .hbm_bw = 1e11, .l2_bw = 4e11, .link_latency_s = 1e-5,
                   .link_bw = 5e10, .launch_s = 1e-6, .dram_bytes = UINT64_MAX / 4};
    counted_prefix cp = {pre, 0};
    lp_stage_model m = {N, flops, bytes, kernels, cut, {N, counted_prefix_cost, &cp}, &t};
    for (int run = 0; run < 4; run++) {
        lp_cards cards = {CAPS, caps, run < 2 ? CAPS : -64};
        bool pin = run % 2;
        for (int i = 0; i < N; i++) pinned[i] = pin && i % 1000 == 0 ? (run < 2 ? i / 1000 : i / 1000 * 3) : -1;
        cp.calls = 0;
        double slowest = 0;
        int groups = pin ? lp_partition_throughput_pinned(&m, &cards, 0, pinned, ends, &slowest)
                         : lp_partition_throughput(&m, &cards, 0, ends, &slowest);
        assert_true(groups > 0 && slowest > 0);
        if (run >= 2) assert_int_equal(groups, 64);
        if (pin) assert_true(split_honours(pinned, groups, ends));
        assert_true(cp.calls < 400L * N);
        /* the slowest stage is what the ends give */
        double worst = 0;
        for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
            double st = lp_stage_time(&m, &cards, g, a, ends[g]);
            if (st > worst) worst = st;
        }
        assert_true(fabs(worst - slowest) <= 1e-9 * slowest);
    }
    free(pre);
    free(caps);
    free(flops);
    free(bytes);
    free(kernels);
    free(cut);
    free(ends);
    free(pinned);
}

/* Layers pinned to one group take everything between them; a layer pinned
 * elsewhere in between leaves no plan. */
static void test_pins_hand_cases(void **state) {
    (void)state;
    inst s = {.n = 6, .additive = true, .w = {10, 10, 10, 10, 10, 10}};
    uint64_t caps[] = {100};
    lp_cards cards = {1, caps, 0};
    lp_range_cost c = {s.n, inst_cost, &s};
    int ends[6];
    int pinned[6] = {-1, 1, -1, -1, 1, -1};
    /* all fits one card, but layer 1 on card 1 puts layer 0 alone on card 0 */
    assert_int_equal(lp_partition_fewest_pinned(&c, &cards, pinned, ends), 2);
    assert_int_equal(ends[0], 0);
    assert_int_equal(ends[1], 5);
    pinned[2] = 2;
    assert_int_equal(lp_partition_fewest_pinned(&c, &cards, pinned, ends), 0);
    /* layers 1..4 on one card need 40: with a capacity of 35 no plan */
    pinned[2] = -1;
    caps[0] = 35;
    assert_int_equal(lp_partition_fewest_pinned(&c, &cards, pinned, ends), 0);
    caps[0] = 40;
    assert_int_equal(lp_partition_fewest_pinned(&c, &cards, pinned, ends), 3);
    assert_int_equal(ends[0], 0);
    assert_int_equal(ends[1], 4);
    /* a pin past the card limit */
    cards.max_cards = 1;
    assert_int_equal(lp_partition_fewest_pinned(&c, &cards, pinned, ends), 0);
}

/* ---- exactly N cards (--cards N) ------------------------------------------ */

typedef struct exact_search {
    const inst *s;
    const lp_cards *cards; /* max_cards < 0: exactly -max_cards */
    const int *pinned;     /* or NULL */
    int k;
    bool any;
    uint64_t best_max;     /* smallest largest group over splits into exactly k */
} exact_search;

static void visit_exact(void *ctx, int groups, const int *ends) {
    exact_search *x = ctx;
    if (groups != x->k || (x->pinned && !split_honours(x->pinned, groups, ends))) return;
    uint64_t largest = 0;
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        uint64_t c = inst_cost((void *)x->s, a, ends[g]);
        if (c > lp_cards_capacity(x->cards, g)) return;
        if (c > largest) largest = c;
    }
    x->any = true;
    if (largest < x->best_max) x->best_max = largest;
}

/* With max_cards = -k every search returns exactly k groups when some split
 * into exactly k fits (and honours the pins), else 0; min-max finds the
 * best of those splits. Equal and unequal capacities, k past n included. */
static void test_exact_cards(void **state) {
    (void)state;
    int feasible = 0, fewer_exist = 0;
    for (int iter = 0; iter < 6000; iter++) {
        inst s;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&s);
        if (s.n > 12) s.n = 12;
        random_cards(&cards, caps, iter % 2 ? 4 : 1);
        int k = 1 + (int)rng_below((uint64_t)s.n + 2);
        cards.max_cards = -k;
        bool equal = cards.n_caps == 1;
        lp_range_cost c = {s.n, inst_cost, &s};
        exact_search x = {&s, &cards, NULL, k, false, UINT64_MAX};
        for_each_split(s.n, visit_exact, &x);
        lp_cards any = cards;
        any.max_cards = 0;
        int ends[MAXN];
        int free_groups = equal ? lp_partition_greedy(&c, &any, ends, NULL)
                                : lp_partition_fewest(&c, &any, ends, NULL);
        int groups = equal ? lp_partition_greedy(&c, &cards, ends, NULL)
                           : lp_partition_fewest(&c, &cards, ends, NULL);
        assert_int_equal(groups, x.any ? k : 0);
        if (groups) check_ends_fit(&s, &cards, ends, groups, UINT64_MAX);
        if (x.any) feasible++;
        fewer_exist += free_groups > 0 && free_groups < k;
        uint64_t largest = 0;
        groups = lp_partition_minmax(&c, &cards, k, ends, &largest);
        assert_int_equal(groups, x.any ? k : 0);
        if (groups) {
            assert_int_equal(largest, x.best_max);
            check_ends_fit(&s, &cards, ends, groups, largest);
        }
        /* with pins */
        int pinned[MAXN], n_pins;
        lp_pin pins[3];
        random_pins(s.n, pinned, pins, &n_pins);
        exact_search xp = {&s, &cards, pinned, k, false, UINT64_MAX};
        for_each_split(s.n, visit_exact, &xp);
        groups = lp_partition_fewest_pinned(&c, &cards, pinned, ends);
        assert_int_equal(groups, xp.any ? k : 0);
        if (groups) assert_true(split_honours(pinned, groups, ends));
        groups = lp_partition_minmax_pinned(&c, &cards, k, pinned, ends, &largest);
        assert_int_equal(groups, xp.any ? k : 0);
        if (groups) {
            assert_int_equal(largest, xp.best_max);
            assert_true(split_honours(pinned, groups, ends));
            check_ends_fit(&s, &cards, ends, groups, largest);
        }
    }
    assert_true(feasible > 1000 && fewer_exist > 500);
}

/* A real card footprint is not monotone: a group holds the values crossing
 * its edges, and a layer alone can cost more than the layer with its
 * producer (the value between them leaves the boundary). The cost here adds
 * out[i] at each edge a group cuts. Under --cards k every search must still
 * return exactly k groups that fit, or 0, and never fewer; min-max finds a
 * split whenever greedy does. */
typedef struct edge_inst {
    inst base;
    uint64_t out[MAXN]; /* bytes layer i hands to layer i + 1 */
} edge_inst;

static uint64_t edge_cost(void *ctx, int a, int b) {
    const edge_inst *e = ctx;
    uint64_t c = inst_cost((void *)&e->base, a, b);
    if (a > 0) c += e->out[a - 1];
    if (b < e->base.n - 1) c += e->out[b];
    return c;
}

static void check_edge_split(const edge_inst *e, const lp_cards *cards, const int *ends,
                             int groups) {
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        assert_true(ends[g] >= a);
        assert_true(edge_cost((void *)e, a, ends[g]) <= lp_cards_capacity(cards, g));
        if (g == groups - 1) assert_int_equal(ends[g], e->base.n - 1);
    }
}

static void test_exact_cards_boundary_cost(void **state) {
    (void)state;
    /* two layers: 0..0 costs 110, 1..1 costs 200, 0..1 only 110; two cards of 320 */
    edge_inst h = {{2, true, {10, 100}, {0, 0}}, {100}};
    lp_range_cost hc = {2, edge_cost, &h};
    uint64_t cap = 320;
    lp_cards two = {1, &cap, -2};
    int ends[MAXN];
    uint64_t largest = 0;
    assert_int_equal(edge_cost(&h, 0, 1), 110);
    assert_int_equal(edge_cost(&h, 1, 1), 200);
    assert_int_equal(lp_partition_minmax(&hc, &two, 2, ends, &largest), 2);
    assert_int_equal(ends[0], 0);
    assert_int_equal(largest, 200);
    int kept = 0;
    for (int iter = 0; iter < 6000; iter++) {
        edge_inst e;
        uint64_t caps[4];
        lp_cards cards;
        inst_random(&e.base);
        if (e.base.n > 12) e.base.n = 12;
        for (int i = 0; i < e.base.n; i++) e.out[i] = rng_below(300);
        random_cards(&cards, caps, iter % 2 ? 4 : 1);
        int k = 1 + (int)rng_below((uint64_t)e.base.n);
        cards.max_cards = -k;
        bool equal = cards.n_caps == 1;
        lp_range_cost c = {e.base.n, edge_cost, &e};
        int groups = equal ? lp_partition_greedy(&c, &cards, ends, NULL)
                           : lp_partition_fewest(&c, &cards, ends, NULL);
        assert_true(groups == 0 || groups == k);
        if (groups) check_edge_split(&e, &cards, ends, groups);
        int found = groups;
        groups = lp_partition_minmax(&c, &cards, k, ends, &largest);
        assert_true(groups == 0 || groups == k);
        if (found) assert_int_equal(groups, k);
        if (groups) {
            check_edge_split(&e, &cards, ends, groups);
            kept += k > 1;
        }
        int pinned[MAXN], n_pins;
        lp_pin pins[3];
        random_pins(e.base.n, pinned, pins, &n_pins);
        groups = lp_partition_fewest_pinned(&c, &cards, pinned, ends);
        assert_true(groups == 0 || groups == k);
        if (groups) {
            assert_true(split_honours(pinned, groups, ends));
            check_edge_split(&e, &cards, ends, groups);
        }
        found = groups;
        groups = lp_partition_minmax_pinned(&c, &cards, k, pinned, ends, &largest);
        assert_true(groups == 0 || groups == k);
        if (found) assert_int_equal(groups, k);
        if (groups) {
            assert_true(split_honours(pinned, groups, ends));
            check_edge_split(&e, &cards, ends, groups);
        }
        /* throughput: exactly k groups or none (device memory is checked
         * when the plan is validated) */
        random_model rm;
        random_model_make(&rm, &e.base);
        rm.m.footprint = c;
        double slowest = -1;
        groups = lp_partition_throughput(&rm.m, &cards, k, ends, &slowest);
        assert_true(groups == 0 || groups == k);
        for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
            assert_true(ends[g] >= a);
            if (g == groups - 1) assert_int_equal(ends[g], e.base.n - 1);
        }
        groups = lp_partition_throughput_pinned(&rm.m, &cards, k, pinned, ends, &slowest);
        assert_true(groups == 0 || groups == k);
        if (groups) assert_true(split_honours(pinned, groups, ends));
    }
    assert_true(kept > 500);
}

/* ---- sizes and targets ------------------------------------------------------ */

static void test_parse_size(void **state) {
    (void)state;
    uint64_t v;
    assert_true(lp_parse_size("31MiB", &v));
    assert_int_equal(v, 31ull << 20);
    assert_true(lp_parse_size("40 MB", &v));
    assert_int_equal(v, 40000000ull);
    assert_true(lp_parse_size("1.5GiB", &v));
    assert_int_equal(v, 3ull << 29);
    assert_true(lp_parse_size("2KB", &v));
    assert_int_equal(v, 2000);
    assert_true(lp_parse_size("7kib", &v));
    assert_int_equal(v, 7 * 1024);
    assert_true(lp_parse_size("123", &v));
    assert_int_equal(v, 123);
    assert_true(lp_parse_size("9B", &v));
    assert_int_equal(v, 9);
    assert_false(lp_parse_size("", &v));
    assert_false(lp_parse_size("MiB", &v));
    assert_false(lp_parse_size("-1MiB", &v));
    assert_false(lp_parse_size("3 parsecs", &v));
    assert_false(lp_parse_size("0.5B", &v));
    /* exact fractions, spaces, big values */
    assert_true(lp_parse_size(" .5KiB ", &v));
    assert_int_equal(v, 512);
    assert_true(lp_parse_size("1.000000000000000000000GiB", &v));
    assert_int_equal(v, 1ull << 30);
    assert_true(lp_parse_size("18446744073709551615", &v));
    assert_true(v == UINT64_MAX);
    assert_true(lp_parse_size("16TiB", &v));
    assert_int_equal(v, 16ull << 40);
    /* each sloppy form is refused with its own reason */
    static const struct {
        const char *s, *why;
    } bad[] = {
        {"0x10MiB", "hexadecimal"}, {"+1MiB", "sign"},  {"-1MiB", "negative"},
        {"1e6", "unit"},            {"31MiB junk", "unit"}, {"31 M", "unit"},
        {"nan", "number"},          {"inf", "number"},  {".", "number"},
        {"18446744073709551616", "too large"},          {"16777216TiB", "too large"},
        {"0.3B", "whole number"},   {"1.0000001KiB", "whole number"}, {"", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = lp_size_error(bad[i].s, &v);
        assert_non_null(why);
        if (!strstr(why, bad[i].why)) fail_msg("'%s': %s, want '%s'", bad[i].s, why, bad[i].why);
    }
}

/* A target file's bad size names the file, the key and the reason; an
 * explicit capacity of 0 is refused instead of falling back to persist_bytes. */
static void test_target_sizes(void **state) {
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"capacity\": \"0\", \"persist_bytes\": \"31MiB\"}", "'capacity' is 0"},
        {"{\"capacity\": 0, \"persist_bytes\": \"31MiB\"}", "'capacity' is 0"},
        {"{\"capacity\": \"0x10MiB\"}", "'capacity' \"0x10MiB\" is not a size: hexadecimal"},
        {"{\"capacity\": -5}", "'capacity': a size cannot be negative"},
        {"{\"capacity\": 1.5}", "'capacity': expected an integer"},
        {"{\"l2_bytes\": \"50 MiB trailing\"}", "'l2_bytes' \"50 MiB trailing\" is not a size: unknown unit"},
        {"{\"capacity\": \"1MiB\", \"sms\": -1}", "'sms' must be a whole number of SMs from 0 to 1000000"},
        {"{\"capacity\": \"1MiB\", \"sms\": 13.5}", "'sms' must be a whole number"},
        {"{\"capacity\": \"1MiB\", \"sms\": 4294967296}", "'sms' must be a whole number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t err;
        json_t *j = json_loads(cases[i].json, 0, &err);
        assert_non_null(j);
        lp_diag d = lp_diag_make("t.json");
        d.quiet = 1;
        lp_target t;
        assert_int_equal(lp_target_from_json(j, "t.json", &t, &d), LP_ERR_USAGE);
        if (!strstr(d.last_error, cases[i].want) || !strstr(d.last_error, "target 't.json'"))
            fail_msg("%s: got '%s', want '%s'", cases[i].json, d.last_error, cases[i].want);
        json_decref(j);
    }
    /* capacity absent: persist_bytes, as before */
    json_error_t err;
    json_t *j = json_loads("{\"persist_bytes\": \"31 MiB\"}", 0, &err);
    lp_diag d = lp_diag_make("t.json");
    lp_target t;
    assert_int_equal(lp_target_from_json(j, "t.json", &t, &d), LP_OK);
    assert_int_equal(t.capacity, 31ull << 20);
    assert_int_equal(t.sms, 0);
    json_decref(j);
    j = json_loads("{\"persist_bytes\": \"31 MiB\", \"sms\": 114}", 0, &err);
    assert_int_equal(lp_target_from_json(j, "t.json", &t, &d), LP_OK);
    assert_int_equal(t.sms, 114);
    json_decref(j);
}

/* The built-in profiles equal the JSON files in partition/targets/. */
static void test_builtin_targets_match_files(void **state) {
    (void)state;
    const char *src = getenv("LPCC_SOURCE_DIR");
    if (!src) skip();
    const char *names[] = {"h100", "h200"};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/partition/targets/%s.json", src, names[i]);
        lp_target a, b;
        lp_diag d = lp_diag_make(path);
        assert_true(lp_target_builtin(names[i], &a));
        assert_int_equal(lp_target_load(path, &b, &d), LP_OK);
        assert_string_equal(a.name, b.name);
        assert_int_equal(a.l2_bytes, b.l2_bytes);
        assert_int_equal(a.persist_bytes, b.persist_bytes);
        assert_int_equal(a.capacity, b.capacity);
        assert_int_equal(a.dram_bytes, b.dram_bytes);
        assert_true(a.peak_flops == b.peak_flops && a.hbm_bw == b.hbm_bw && a.l2_bw == b.l2_bw);
        assert_true(a.link_latency_s == b.link_latency_s && a.link_bw == b.link_bw);
        assert_true(a.launch_s == b.launch_s);
        assert_int_equal(a.smem_bytes, b.smem_bytes);
        assert_int_equal(a.sms, b.sms);
        assert_true(a.smem_bw == b.smem_bw);
    }
    lp_target t;
    assert_true(lp_target_builtin("h100", &t));
    assert_int_equal(t.capacity, 31ull << 20);
    assert_true(lp_target_builtin("H200", &t));
    assert_int_equal(t.l2_bytes, 60ull << 20);
    assert_false(lp_target_builtin("tpu", &t));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_is_fewest_cards),
        cmocka_unit_test(test_fewest_unequal_cards),
        cmocka_unit_test(test_greedy_counterexample),
        cmocka_unit_test(test_minmax_is_optimal),
        cmocka_unit_test(test_throughput_is_optimal),
        cmocka_unit_test(test_long_capacity_lists),
        cmocka_unit_test(test_pinned_is_optimal),
        cmocka_unit_test(test_throughput_pinned_is_optimal),
        cmocka_unit_test(test_throughput_unequal_is_optimal),
        cmocka_unit_test(test_throughput_unequal_scale),
        cmocka_unit_test(test_pins_hand_cases),
        cmocka_unit_test(test_exact_cards),
        cmocka_unit_test(test_exact_cards_boundary_cost),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_target_sizes),
        cmocka_unit_test(test_builtin_targets_match_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
