/* Partitioner speed: dp (min-max) on 10,000 layers x 64 cards, greedy on
 * 10k / 100k / 1M layers, over an additive cost (prefix sums, O(1) a call)
 * so the figures are the algorithms' own.
 *
 *     build/bench/partition_bench      # prints one line per case
 */
#define _POSIX_C_SOURCE 199309L
#include "bench_clock.h"
#include "lp_partition.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

int main(void) {
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
