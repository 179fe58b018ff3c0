/* The activation planner against brute force on small random lifetimes:
 * no two items alive at one step overlap, the peak covers every placement
 * and is at least the most bytes alive at once; on chains the bound is met. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "layers_internal.h"
#include "lp_analysis.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state % n;
}

static uint64_t up(uint64_t x, uint64_t a) { return a > 1 ? (x + a - 1) / a * a : x; }

/* Checks a placement pairwise and returns the brute-force lower bound. */
static uint64_t check_plan(const lp_memplan_item *it, int n, int steps, uint64_t align, uint64_t peak) {
    for (int i = 0; i < n; i++) {
        if (it[i].bytes == 0) continue;
        assert_true(it[i].offset % (align ? align : 1) == 0);
        assert_true(it[i].offset + up(it[i].bytes, align) <= peak);
        for (int k = i + 1; k < n; k++) {
            if (it[k].bytes == 0) continue;
            bool same_time = it[i].first <= it[k].last && it[k].first <= it[i].last;
            bool apart = it[i].offset + up(it[i].bytes, align) <= it[k].offset ||
                         it[k].offset + up(it[k].bytes, align) <= it[i].offset;
            if (same_time && !apart)
                fail_msg("items %d [%d,%d] @%llu+%llu and %d [%d,%d] @%llu+%llu overlap", i,
                         it[i].first, it[i].last, (unsigned long long)it[i].offset,
                         (unsigned long long)it[i].bytes, k, it[k].first, it[k].last,
                         (unsigned long long)it[k].offset, (unsigned long long)it[k].bytes);
        }
    }
    uint64_t bound = 0;
    for (int s = 0; s < steps; s++) {
        uint64_t live = 0;
        for (int i = 0; i < n; i++)
            if (it[i].first <= s && s <= it[i].last) live += up(it[i].bytes, align);
        if (live > bound) bound = live;
    }
    assert_int_equal(bound, lp_memplan_live_peak(it, n, steps, align));
    return bound;
}

/* Random DAGs: node s makes one value read by 1-3 later nodes. */
static void test_random_dags(void **state) {
    (void)state;
    double frag_sum = 0, frag_max = 0;
    int runs = 400;
    for (int r = 0; r < runs; r++) {
        int steps = 1 + (int)rnd(40);
        lp_memplan_item it[48];
        int n = 0;
        for (int s = 0; s < steps; s++) {
            int last = s;
            int uses = (int)rnd(4);
            for (int u = 0; u < uses; u++) {
                int c = s + 1 + (int)rnd(6);
                if (c < steps && c > last) last = c;
            }
            it[n++] = (lp_memplan_item){.bytes = 1 + rnd(r % 2 ? 5000 : 64), .first = s, .last = last};
        }
        /* a graph input live from the start, an output to the end */
        it[n++] = (lp_memplan_item){.bytes = 1 + rnd(300), .first = 0, .last = (int)rnd((uint64_t)steps)};
        it[n - 2].last = steps - 1;
        uint64_t align = r % 3 == 0 ? 1 : r % 3 == 1 ? 16 : 256;
        uint64_t peak;
        assert_int_equal(lp_memplan_run(it, n, steps, align, &peak), LP_OK);
        uint64_t bound = check_plan(it, n, steps, align, peak);
        assert_true(peak >= bound);
        double frag = (double)peak / (double)bound - 1.0;
        frag_sum += frag;
        if (frag > frag_max) frag_max = frag;
    }
    printf("random DAGs: fragmentation (peak / live bound - 1) mean %.3f, max %.3f over %d plans\n",
           frag_sum / runs, frag_max, runs);
}

/* Chains: value s is made by node s and read by node s+1 only. The bound
 * max(size[s] + size[s+1]) is then reachable, and must be reached. */
static void test_chains_meet_bound(void **state) {
    (void)state;
    int missed = 0;
    for (int r = 0; r < 300; r++) {
        int steps = 2 + (int)rnd(30);
        lp_memplan_item it[40];
        for (int s = 0; s < steps; s++)
            it[s] = (lp_memplan_item){.bytes = (1 + rnd(r % 2 ? 100 : 4)) * 256, .first = s,
                                      .last = s + 1 < steps ? s + 1 : s};
        uint64_t peak;
        assert_int_equal(lp_memplan_run(it, steps, steps, 256, &peak), LP_OK);
        uint64_t bound = check_plan(it, steps, steps, 256, peak);
        missed += peak != bound;
    }
    printf("chains: %d of 300 above the bound\n", missed);
    assert_int_equal(missed, 0);
}

/* The example where step-order best-fit alone needs 18: 5, 5, 8 in a chain. */
static void test_chain_needs_lookahead(void **state) {
    (void)state;
    lp_memplan_item it[3] = {{5, 0, 1, 0}, {5, 1, 2, 0}, {8, 2, 2, 0}};
    uint64_t peak;
    assert_int_equal(lp_memplan_run(it, 3, 3, 1, &peak), LP_OK);
    check_plan(it, 3, 3, 1, peak);
    assert_int_equal(peak, 13);
}

/* Freed memory is reused: a long chain of equal buffers needs two. */
static void test_reuse(void **state) {
    (void)state;
    enum { N = 2000 };
    lp_memplan_item *it = calloc(N, sizeof *it);
    assert_non_null(it);
    for (int s = 0; s < N; s++) it[s] = (lp_memplan_item){1000, s, s + 1 < N ? s + 1 : s, 0};
    uint64_t peak;
    assert_int_equal(lp_memplan_run(it, N, N, 256, &peak), LP_OK);
    assert_int_equal(peak, 2 * 1024);
    free(it);
}

/* Greedy by size done the slow way: largest first (then earliest, then
 * lowest index); each item gathers the placed items whose lifetimes overlap
 * it, sorted by offset, and takes the smallest gap between them that holds
 * it (the lowest on ties), else the end of the last. */
static uint64_t by_size_reference(lp_memplan_item *it, int n, uint64_t align) {
    bool placed[LP_MEMPLAN_BY_SIZE_MAX] = {0};
    uint64_t off[LP_MEMPLAN_BY_SIZE_MAX], end[LP_MEMPLAN_BY_SIZE_MAX], peak = 0;
    for (int r = 0; r < n; r++) {
        int pick = -1;
        for (int i = 0; i < n; i++)
            if (!placed[i] && (pick < 0 || it[i].bytes > it[pick].bytes ||
                               (it[i].bytes == it[pick].bytes && it[i].first < it[pick].first)))
                pick = i;
        int nc = 0;
        for (int k = 0; k < n; k++) {
            if (!placed[k] || !it[k].bytes || it[k].first > it[pick].last || it[pick].first > it[k].last)
                continue;
            /* insertion sort by offset */
            int j = nc++;
            for (; j > 0 && off[j - 1] > it[k].offset; j--) {
                off[j] = off[j - 1];
                end[j] = end[j - 1];
            }
            off[j] = it[k].offset;
            end[j] = it[k].offset + up(it[k].bytes, align);
        }
        uint64_t size = up(it[pick].bytes, align), at = 0, best = UINT64_MAX, best_gap = UINT64_MAX;
        for (int k = 0; k < nc; k++) {
            if (off[k] > at && off[k] - at >= size && off[k] - at < best_gap) {
                best = at;
                best_gap = off[k] - at;
            }
            if (end[k] > at) at = end[k];
        }
        it[pick].offset = best != UINT64_MAX ? best : at;
        placed[pick] = true;
        if (size && it[pick].offset + size > peak) peak = it[pick].offset + size;
    }
    return peak;
}

/* The planner's greedy-by-size layout (forced: no chain, no better peak
 * known) places every item where the reference does. */
static void test_by_size_matches_reference(void **state) {
    (void)state;
    enum { MAX = LP_MEMPLAN_BY_SIZE_MAX };
    lp_memplan_item a[MAX], b[MAX];
    for (int r = 0; r < 300; r++) {
        int n = 2 + (int)rnd(MAX - 1), steps = 1 + (int)rnd(60);
        for (int i = 0; i < n; i++) {
            int first = (int)rnd((uint64_t)steps);
            int last = first + (int)rnd((uint64_t)(steps - first));
            /* few distinct sizes, so ties in size and offset are common; some zero */
            uint64_t bytes = rnd(8) == 0 ? 0 : 256 * (1 + rnd(6)) - rnd(3) * 100;
            a[i] = b[i] = (lp_memplan_item){bytes, first, last, 0};
        }
        uint64_t peak = UINT64_MAX;
        assert_int_equal(lp_memplan_improve(a, n, 256, 0, 3, &peak), LP_OK);
        uint64_t want = by_size_reference(b, n, 256);
        assert_int_equal(peak, want);
        for (int i = 0; i < n; i++)
            if (a[i].offset != b[i].offset)
                fail_msg("run %d item %d [%d,%d] %llu B: offset %llu, reference %llu", r, i, a[i].first,
                         a[i].last, (unsigned long long)a[i].bytes, (unsigned long long)a[i].offset,
                         (unsigned long long)b[i].offset);
        check_plan(a, n, steps, 256, peak);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_dags),
        cmocka_unit_test(test_chains_meet_bound),
        cmocka_unit_test(test_chain_needs_lookahead),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_by_size_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
