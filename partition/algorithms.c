/* Partitioning algorithms over an abstract range cost: greedy (fewest cards),
 * min-max (balance a fixed card count) and the throughput DP. */
#include "lp_partition.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t lp_cards_capacity(const lp_cards *c, int card) {
    assert(c->n_caps > 0 && card >= 0);
    return c->caps[card < c->n_caps ? card : c->n_caps - 1];
}

int lp_cards_max(const lp_cards *c) {
    return c->max_cards < 0 ? -c->max_cards : c->max_cards;
}

static int cards_limit(const lp_cards *c, int n) {
    return c->max_cards != 0 ? lp_cards_max(c) : n;
}

/* Greedy with every capacity clipped to `ceiling` and at most `limit`
 * groups. With `reserve`, card j stops early enough to leave one layer for
 * each of the remaining limit-j-1 cards, so all `limit` cards get work. */
static int greedy_core(const lp_range_cost *c, const lp_cards *cards, int limit,
                       uint64_t ceiling, bool reserve, int *ends, int *stuck) {
    int groups = 0;
    for (int start = 0; start < c->n; groups++) {
        uint64_t cap = lp_cards_capacity(cards, groups);
        if (cap > ceiling) cap = ceiling;
        if (groups == limit || c->fn(c->ctx, start, start) > cap) {
            if (stuck) *stuck = start;
            return 0;
        }
        int max_end = reserve ? c->n - (limit - groups) : c->n - 1;
        if (max_end < start) max_end = start;
        int end = start;
        while (end < max_end && c->fn(c->ctx, start, end + 1) <= cap) end++;
        ends[groups] = end;
        start = end + 1;
    }
    return groups;
}

static bool cards_exact(const lp_cards *c) {
    return c->max_cards < 0;
}

int lp_partition_greedy(const lp_range_cost *c, const lp_cards *cards, int *ends, int *stuck) {
    if (cards_exact(cards) && c->n < lp_cards_max(cards)) {
        if (stuck) *stuck = -1;
        return 0;
    }
    return greedy_core(c, cards, cards_limit(cards, c->n), UINT64_MAX, cards_exact(cards), ends,
                       stuck);
}

static uint64_t clipped_capacity(const lp_cards *cards, int card, uint64_t ceiling) {
    uint64_t cap = lp_cards_capacity(cards, card);
    return cap < ceiling ? cap : ceiling;
}

/* reach[a]: the last b such that a..b costs at most cap (a - 1 if none).
 * Monotone costs make reach non-decreasing, so two pointers suffice; once
 * a range reaches the last layer every later start does too, which keeps a
 * capacity that holds the whole model (device memory) from costing O(n^2). */
static void range_reach(const lp_range_cost *c, uint64_t cap, int *reach) {
    int b = -1;
    for (int a = 0; a < c->n; a++) {
        if (b == c->n - 1) {
            reach[a] = b;
            continue;
        }
        if (b < a - 1) b = a - 1;
        while (b + 1 < c->n && c->fn(c->ctx, a, b + 1) <= cap) b++;
        reach[a] = b;
    }
}

static int bfs_core(const lp_range_cost *c, const lp_cards *cards, int limit, uint64_t ceiling,
                    bool exact, const int *pinned, int *ends, int *furthest);

/* Fewest cards for unequal capacities in a fixed order. The paper's greedy
 * is not enough there: running ahead can leave a small card facing a layer
 * it cannot hold, so the search tracks every prefix each card count
 * reaches (bfs_core). */
static int fewest_core(const lp_range_cost *c, const lp_cards *cards, int limit, uint64_t ceiling,
                       bool exact, int *ends, int *stuck) {
    int furthest = 0;
    int groups = bfs_core(c, cards, limit, ceiling, exact, NULL, ends, &furthest);
    if (groups <= 0 && stuck) *stuck = furthest;
    return groups > 0 ? groups : 0;
}

int lp_partition_fewest(const lp_range_cost *c, const lp_cards *cards, int *ends, int *stuck) {
    return fewest_core(c, cards, cards_limit(cards, c->n), UINT64_MAX, cards_exact(cards), ends, stuck);
}

static bool cards_equal(const lp_cards *cards, int limit) {
    for (int i = 1; i < cards->n_caps && i < limit; i++)
        if (cards->caps[i] != cards->caps[0]) return false;
    return true;
}

/* Feasibility tests of min-max: "some split into at most (exact: exactly)
 * limit groups fits under ceiling". With a monotone cost, equal capacities
 * and n >= limit the two agree (a fitting split can always be cut finer),
 * but a card footprint is not monotone: a layer alone holds the value it
 * receives, and with its producer it may cost less. So the exact test is
 * greedy keeping one layer back for each card still to fill, which only
 * ever answers with exactly limit groups. */
static int greedy_plain(const lp_range_cost *c, const lp_cards *cards, int limit,
                        uint64_t ceiling, bool exact, int *ends, int *stuck) {
    return greedy_core(c, cards, limit, ceiling, exact, ends, stuck);
}

static uint64_t largest_group(const lp_range_cost *c, const int *ends, int groups) {
    uint64_t worst = 0;
    for (int g = 0, start = 0; g < groups; start = ends[g] + 1, g++) {
        uint64_t cost = c->fn(c->ctx, start, ends[g]);
        if (cost > worst) worst = cost;
    }
    return worst;
}

/* ---- a memo of range costs ----
 *
 * The bisections below ask for the same ranges again and again as the bound
 * converges; a real cost (the memory planner over the range's nodes) is
 * costly, so each (first, last) is computed once. Open addressing, grown at
 * half full; when memory runs out the costs are computed again (never wrong). */
typedef struct cost_memo {
    const lp_range_cost *inner;
    size_t cap, used;       /* slots, a power of two */
    uint64_t *key, *value;  /* key 0: empty; else (first << 32 | last) + 1 */
} cost_memo;

static uint64_t memo_cost(void *ctx, int first, int last) {
    cost_memo *m = ctx;
    uint64_t key = ((uint64_t)(uint32_t)first << 32 | (uint32_t)last) + 1;
    if (m->used * 2 >= m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        uint64_t *k = calloc(cap, sizeof *k), *v = malloc(cap * sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return m->inner->fn(m->inner->ctx, first, last);
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            size_t h = (size_t)(m->key[i] * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
            while (k[h]) h = (h + 1) & (cap - 1);
            k[h] = m->key[i];
            v[h] = m->value[i];
        }
        free(m->key);
        free(m->value);
        m->key = k;
        m->value = v;
        m->cap = cap;
    }
    size_t h = (size_t)(key * 0x9e3779b97f4a7c15ull >> 20) & (m->cap - 1);
    while (m->key[h] && m->key[h] != key) h = (h + 1) & (m->cap - 1);
    if (m->key[h]) return m->value[h];
    uint64_t v = m->inner->fn(m->inner->ctx, first, last);
    m->key[h] = key;
    m->value[h] = v;
    m->used++;
    return v;
}

static void memo_free(cost_memo *m) {
    free(m->key);
    free(m->value);
}

/* Feasibility of "largest group <= T" is monotone in T and greedy decides
 * it exactly, so a binary search over T finds the optimum in
 * O(log(max C) * n) cost calls. */
static int minmax_core(const lp_range_cost *c, const lp_cards *cards, int k, int *ends,
                       uint64_t *largest);

int lp_partition_minmax(const lp_range_cost *c, const lp_cards *cards, int k, int *ends,
                        uint64_t *largest) {
    cost_memo memo = {c, 0, 0, NULL, NULL};
    lp_range_cost mc = {c->n, memo_cost, &memo};
    int groups = minmax_core(&mc, cards, k, ends, largest);
    memo_free(&memo);
    return groups;
}

static int minmax_core(const lp_range_cost *c, const lp_cards *cards, int k, int *ends,
                       uint64_t *largest) {
    int limit = k > 0 ? k : cards_limit(cards, c->n);
    if (cards->max_cards != 0 && limit > lp_cards_max(cards)) limit = lp_cards_max(cards);
    bool exact = cards_exact(cards);
    if (exact && limit > c->n) return 0;
    uint64_t hi = 0;
    for (int i = 0; i < limit; i++)
        if (lp_cards_capacity(cards, i) > hi) hi = lp_cards_capacity(cards, i);
    bool equal = cards_equal(cards, limit);
    int (*fits)(const lp_range_cost *, const lp_cards *, int, uint64_t, bool, int *, int *) =
        equal ? greedy_plain : fewest_core;
    if (!fits(c, cards, limit, hi, exact, ends, NULL)) return 0;
    uint64_t lo = 0; /* hi is feasible, everything below lo is not */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (fits(c, cards, limit, mid, exact, ends, NULL))
            hi = mid;
        else
            lo = mid + 1;
    }
    /* Balanced over all limit cards where a split under hi allows it; the
     * search's test at hi succeeded, so the fallback always has a plan. */
    int groups = equal && c->n >= limit ? greedy_core(c, cards, limit, hi, true, ends, NULL) : 0;
    if (!groups || largest_group(c, ends, groups) > hi)
        groups = fits(c, cards, limit, hi, exact, ends, NULL);
    assert(groups > 0 && (!exact || groups == limit));
    if (largest) *largest = largest_group(c, ends, groups);
    return groups;
}

/* ---- pins with one capacity ------------------------------------------------
 *
 * With one capacity for every group, pins cut the line into blocks: the
 * layers from the first to the last one pinned to group g (g grows from
 * block to block) all lie in g. Group g_i = x_i..y_i covers its block
 * s_i..e_i, and the m = g_{i+1} - g_i - 1 groups between two blocks cover
 * y_i+1 .. x_{i+1}-1 exactly. Costs are monotone, so
 *   - the ends y_i that work are an interval e_i .. Y_i (cut a working
 *     group shorter and it still fits), and
 *   - the later x_{i+1} starts, the further group g_{i+1} reaches, so only
 *     the latest feasible start matters: with the gap starting at p, m
 *     groups cover p..x-1 exactly when x - p >= m and greedy from p with m
 *     groups reaches x-1 (every single layer fitting, a cover can always be
 *     cut finer). Starting at p = Y_i + 1 maximises greedy's reach; when
 *     that leaves fewer than m layers before s_{i+1}, x = s_{i+1} with m
 *     single layers works.
 * One pass over the blocks decides feasibility with O(groups + blocks)
 * fresh ranges and growing ones otherwise, so an incremental cost sees
 * O(n) work; the ends are rebuilt backwards from what the pass kept. */

/* End of at most m greedy groups from `from`, none past `bound`. */
static int greedy_reach(const lp_range_cost *c, uint64_t cap, int from, int m, int bound) {
    int end = from - 1;
    for (int j = 0; j < m && end < bound; j++) {
        int a = end + 1;
        end = a;
        while (end < bound && c->fn(c->ctx, a, end + 1) <= cap) end++;
    }
    return end;
}

/* Greedy groups over from..to into ends, at most `room` of them, each
 * stopping early enough to leave a layer for every group still to come
 * when `exact`; returns the count. */
static int greedy_fill(const lp_range_cost *c, uint64_t cap, int from, int to, int room, bool exact,
                       int *ends) {
    int groups = 0;
    for (int a = from; a <= to && groups < room; groups++) {
        int max_end = exact ? to - (room - groups - 1) : to;
        int end = a;
        while (end < max_end && c->fn(c->ctx, a, end + 1) <= cap) end++;
        ends[groups] = end;
        a = end + 1;
    }
    return groups;
}

/* Returns the group count, 0 if none, -1 out of memory. */
static int pinned_equal(const lp_range_cost *c, uint64_t cap, int limit, bool exact,
                        const int *pinned, int *ends) {
    int n = c->n;
    if (exact && limit > n) return 0;
    for (int i = 0; i < n; i++)
        if (c->fn(c->ctx, i, i) > cap) return 0;
    /* blocks: s, e, g, then the pass's x (start of g), p (start of the gap before it), y (Y_i) */
    int nb = 0;
    for (int i = 0, last = -1; i < n; i++)
        if (pinned[i] >= 0 && pinned[i] != last) nb++, last = pinned[i];
    int *blk = malloc(sizeof(int) * 6 * (size_t)(nb + 1));
    if (!blk) return -1;
    int *s = blk, *e = s + nb, *g = e + nb, *x = g + nb, *p = x + nb, *y = p + nb;
    int groups = 0;
    for (int i = 0, b = -1; i < n; i++) {
        if (pinned[i] < 0) continue;
        if (b >= 0 && pinned[i] == g[b]) {
            e[b] = i;
            continue;
        }
        if ((b >= 0 && pinned[i] < g[b]) || pinned[i] >= limit) goto done;
        b++;
        s[b] = e[b] = i;
        g[b] = pinned[i];
    }
    for (int b = 0; b < nb; b++) {
        int prev_e = b ? e[b - 1] : -1, prev_g = b ? g[b - 1] : -1;
        int lo = prev_e + 1, hi = b ? y[b - 1] + 1 : 0; /* where the gap may start */
        int m = g[b] - prev_g - 1;
        if (m == 0) {
            x[b] = p[b] = hi;
        } else {
            if (s[b] - m < lo) goto done;
            if (hi >= s[b] - m) {
                p[b] = s[b] - m;
                x[b] = s[b];
            } else {
                p[b] = hi;
                x[b] = greedy_reach(c, cap, hi, m, s[b] - 1) + 1;
            }
        }
        if (c->fn(c->ctx, x[b], e[b]) > cap) goto done;
        int bound = b + 1 < nb ? s[b + 1] - 1 : n - 1, end = e[b];
        while (end < bound && c->fn(c->ctx, x[b], end + 1) <= cap) end++;
        y[b] = end;
    }
    /* the tail after the last block */
    int prev_e = nb ? e[nb - 1] : -1, prev_g = nb ? g[nb - 1] : -1;
    int top = nb ? y[nb - 1] : -1, rest = limit - prev_g - 1, from;
    if (exact) {
        from = (top < n - 1 - rest ? top : n - 1 - rest) + 1;
        if (from - 1 < prev_e || (rest == 0 && from < n)) goto done;
        if (rest > 0 && greedy_reach(c, cap, from, rest, n - 1) < n - 1) goto done;
    } else {
        from = top + 1;
        if (from < n && (rest <= 0 || greedy_reach(c, cap, from, rest, n - 1) < n - 1)) goto done;
    }
    int tail = from < n ? greedy_fill(c, cap, from, n - 1, rest, exact, ends + prev_g + 1) : 0;
    groups = prev_g + 1 + tail;
    /* backwards: group g[b] = x[b]..end, the gap p[b]..x[b]-1 before it */
    for (int b = nb - 1, end = from - 1; b >= 0; b--) {
        ends[g[b]] = end;
        int first = b ? g[b - 1] + 1 : 0;
        if (g[b] > first) greedy_fill(c, cap, p[b], x[b] - 1, g[b] - first, true, ends + first);
        end = p[b] - 1;
    }
done:
    free(blk);
    return groups;
}

/* ---- fewest groups for capacities in card order --------------------------
 *
 * Breadth first over the group count: row j holds the prefixes that j
 * groups cover (respecting the pins when there are any). From prefix a
 * group j reaches a+1 .. last_j(a)+1, where last_j(a) (the reach under card
 * j's capacity, cut before the first layer pinned to another group) never
 * decreases with a, and is empty exactly when layer a alone does not fit
 * card j or is pinned elsewhere. So a run r0..r1 of consecutive prefixes
 * whose single layers fit covers r0+1 .. last_j(r1)+1: b <= r1 from b-1 by
 * one layer, b > r1 from r1. Rows are kept as such spans, and a row costs
 * one fresh range (at r1) per run plus growing ones, instead of a reach
 * table per capacity (n fresh ranges each) and n + 1 ints per row. */
typedef struct span {
    int lo, hi; /* prefixes lo..hi */
    int r1;     /* parent of b: b - 1 when b <= r1, else r1 */
} span;

typedef struct bfs_rows {
    span *spans;
    size_t n, room;
    int *start; /* [rows + 2]: first span of each row */
    int rows, row_room;
} bfs_rows;

static bool rows_push(bfs_rows *r, span s) {
    if (r->n == r->room) {
        size_t room = r->room ? 2 * r->room : 256;
        span *grown = realloc(r->spans, room * sizeof *grown);
        if (!grown) return false;
        r->spans = grown;
        r->room = room;
    }
    r->spans[r->n++] = s;
    return true;
}

static bool rows_close(bfs_rows *r) {
    if (r->rows + 2 > r->row_room) {
        int room = r->row_room ? 2 * r->row_room : 64;
        int *grown = realloc(r->start, (size_t)room * sizeof *grown);
        if (!grown) return false;
        r->start = grown;
        r->row_room = room;
    }
    r->start[++r->rows] = (int)r->n;
    return true;
}

/* Sparse table of the single-layer costs: the first layer at or after x
 * whose cost alone exceeds cap, in O(log n). */
typedef struct single_max {
    int n, levels;
    uint64_t *t; /* t[k * n + i]: largest cost of layers i .. i + 2^k - 1 */
} single_max;

static bool single_max_init(single_max *s, const lp_range_cost *c) {
    int n = c->n, levels = 1;
    while ((1 << levels) <= n) levels++;
    *s = (single_max){n, levels, malloc(sizeof(uint64_t) * (size_t)n * (size_t)levels)};
    if (!s->t) return false;
    for (int i = 0; i < n; i++) s->t[i] = c->fn(c->ctx, i, i);
    for (int k = 1; k < levels; k++)
        for (int i = 0; i + (1 << k) <= n; i++) {
            uint64_t x = s->t[(size_t)(k - 1) * n + i], y = s->t[(size_t)(k - 1) * n + i + (1 << (k - 1))];
            s->t[(size_t)k * n + i] = x > y ? x : y;
        }
    return true;
}

static int single_too_big(const single_max *s, int x, uint64_t cap) {
    for (int k = s->levels - 1; k >= 0 && x < s->n; k--)
        if (x + (1 << k) <= s->n && s->t[(size_t)k * s->n + x] <= cap) x += 1 << k;
    while (x < s->n && s->t[x] <= cap) x++; /* at most one step after the descent */
    return x;
}

/* The first layer at or after x pinned to a group other than j (n if none). */
static int pinned_other(const int *next_pin, const int *pinned, int n, int x, int j) {
    while (x < n && (x = next_pin[x]) < n && pinned[x] == j) x++;
    return x < n ? x : n;
}

/* Returns the group count, 0 if none (*furthest: the longest prefix any
 * row covered), -1 out of memory. */
static int bfs_core(const lp_range_cost *c, const lp_cards *cards, int limit, uint64_t ceiling,
                    bool exact, const int *pinned, int *ends, int *furthest) {
    int n = c->n, groups = 0;
    *furthest = 0;
    if (exact && limit > n) return 0;
    if (limit > n) limit = n;
    if (pinned)
        for (int i = 0; i < n; i++)
            if (pinned[i] >= limit) return 0;
    single_max sm = {0};
    bfs_rows r = {0};
    int *next_pin = pinned ? malloc(sizeof(int) * ((size_t)n + 1)) : NULL;
    if (!single_max_init(&sm, c) || (pinned && !next_pin) || !rows_close(&r)) {
        groups = -1;
        goto done;
    }
    r.start[0] = 0;
    if (next_pin) {
        next_pin[n] = n;
        for (int i = n - 1; i >= 0; i--) next_pin[i] = pinned[i] >= 0 ? i : next_pin[i + 1];
    }
    r.start[1] = 0;
    if (!rows_push(&r, (span){0, 0, -1})) {
        groups = -1;
        goto done;
    }
    r.start[1] = 1; /* row 0: prefix 0 */
    for (int j = 0; j < limit; j++) {
        uint64_t cap = clipped_capacity(cards, j, ceiling);
        int from = r.start[j], to = r.start[j + 1], top = -1; /* top: the row's highest prefix so far */
        for (int k = from; k < to; k++) {
            int lo = r.spans[k].lo, hi = r.spans[k].hi < n - 1 ? r.spans[k].hi : n - 1;
            for (int a = lo; a <= hi;) {
                /* the run from a: up to the first layer too big or pinned elsewhere */
                int stop = single_too_big(&sm, a, cap), bad = n;
                if (pinned) {
                    bad = pinned_other(next_pin, pinned, n, a, j);
                    if (bad < stop) stop = bad;
                }
                if (stop == a) {
                    a++;
                    continue;
                }
                int r1 = stop - 1 < hi ? stop - 1 : hi;
                if (pinned && r1 + 1 < n) bad = pinned_other(next_pin, pinned, n, r1 + 1, j);
                int bound = (bad < n ? bad : n) - 1, last = r1;
                while (last < bound && c->fn(c->ctx, r1, last + 1) <= cap) last++;
                span s = {a + 1 > top + 1 ? a + 1 : top + 1, last + 1, r1};
                if (s.lo <= s.hi) {
                    if (!rows_push(&r, s)) {
                        groups = -1;
                        goto done;
                    }
                    top = s.hi;
                }
                a = r1 + 1 > stop ? r1 + 1 : stop;
            }
        }
        if (!rows_close(&r)) {
            groups = -1;
            goto done;
        }
        if (top > *furthest) *furthest = top;
        if (top < 0) break;
        if (top == n && (!exact || j + 1 == limit)) {
            groups = j + 1;
            break;
        }
    }
    for (int i = groups, b = n; i > 0; i--) {
        int lo = r.start[i], hi = r.start[i + 1] - 1; /* the span of row i holding b */
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if (r.spans[mid].lo <= b)
                lo = mid;
            else
                hi = mid - 1;
        }
        const span *s = &r.spans[lo];
        assert(s->lo <= b && b <= s->hi);
        ends[i - 1] = b - 1;
        b = b <= s->r1 ? b - 1 : s->r1;
    }
done:
    free(sm.t);
    free(r.spans);
    free(r.start);
    free(next_pin);
    return groups;
}

/* Fewest groups (at most `limit`, capacities clipped to `ceiling`) such
 * that every pinned layer lands in its group: a group may only hold layers
 * that are free or pinned to it. Returns the group count, 0 if none, -1 out
 * of memory. */
static int pinned_core(const lp_range_cost *c, const lp_cards *cards, int limit, uint64_t ceiling,
                       bool exact, const int *pinned, int *ends) {
    if (cards_equal(cards, limit))
        return pinned_equal(c, clipped_capacity(cards, 0, ceiling), limit, exact, pinned, ends);
    int furthest = 0;
    return bfs_core(c, cards, limit, ceiling, exact, pinned, ends, &furthest);
}

int lp_partition_fewest_pinned(const lp_range_cost *c, const lp_cards *cards, const int *pinned,
                               int *ends) {
    return pinned_core(c, cards, cards_limit(cards, c->n), UINT64_MAX, cards_exact(cards), pinned,
                       ends);
}

/* As lp_partition_minmax: feasibility of "largest group <= T" only grows
 * with T, and pinned_core decides it exactly. */
static int minmax_pinned_core(const lp_range_cost *c, const lp_cards *cards, int k,
                              const int *pinned, int *ends, uint64_t *largest);

int lp_partition_minmax_pinned(const lp_range_cost *c, const lp_cards *cards, int k,
                               const int *pinned, int *ends, uint64_t *largest) {
    cost_memo memo = {c, 0, 0, NULL, NULL};
    lp_range_cost mc = {c->n, memo_cost, &memo};
    int groups = minmax_pinned_core(&mc, cards, k, pinned, ends, largest);
    memo_free(&memo);
    return groups;
}

static int minmax_pinned_core(const lp_range_cost *c, const lp_cards *cards, int k,
                              const int *pinned, int *ends, uint64_t *largest) {
    int limit = k > 0 ? k : cards_limit(cards, c->n);
    if (cards->max_cards != 0 && limit > lp_cards_max(cards)) limit = lp_cards_max(cards);
    uint64_t hi = 0;
    for (int i = 0; i < limit; i++)
        if (lp_cards_capacity(cards, i) > hi) hi = lp_cards_capacity(cards, i);
    bool exact = cards_exact(cards);
    int groups = pinned_core(c, cards, limit, hi, exact, pinned, ends);
    if (groups <= 0) return groups;
    uint64_t lo = 0; /* hi is feasible, everything below lo is not */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int g = pinned_core(c, cards, limit, mid, exact, pinned, ends);
        if (g < 0) return -1;
        if (g > 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    groups = pinned_core(c, cards, limit, hi, exact, pinned, ends);
    if (groups > 0 && largest) *largest = largest_group(c, ends, groups);
    return groups;
}

/* ---- throughput ----------------------------------------------------------- */

static double layer_time(const lp_stage_model *m, int i, double bw) {
    const lp_target *t = m->target;
    double compute = t->peak_flops > 0 ? (double)m->flops[i] / t->peak_flops : 0;
    double memory = bw > 0 ? (double)m->bytes[i] / bw : 0;
    double launches = m->kernels ? (double)m->kernels[i] * t->launch_s : 0;
    return (compute > memory ? compute : memory) + launches;
}

static double recv_time(const lp_stage_model *m, int first) {
    if (first == 0) return 0;
    const lp_target *t = m->target;
    return t->link_latency_s + (t->link_bw > 0 ? (double)m->cut_bytes[first] / t->link_bw : 0);
}

double lp_stage_time(const lp_stage_model *m, const lp_cards *cards, int card, int first,
                     int last) {
    bool on_chip = m->footprint.fn(m->footprint.ctx, first, last) <= lp_cards_capacity(cards, card);
    double bw = on_chip ? m->target->chip_bw : m->target->hbm_bw;
    double s = recv_time(m, first);
    for (int i = first; i <= last; i++) s += layer_time(m, i, bw);
    return s;
}

typedef struct stage_tables {
    int n;
    double *pre_l2, *pre_hbm; /* prefix sums of layer time at each bandwidth */
    int *reach_dram;
    int n_cards;
    int **reach_chip;         /* per card, shared between equal capacities */
} stage_tables;

static void stage_tables_free(stage_tables *s) {
    free(s->pre_l2);
    free(s->pre_hbm);
    free(s->reach_dram);
    if (s->reach_chip) {
        for (int j = 0; j < s->n_cards; j++)
            if (s->reach_chip[j] && (j == 0 || s->reach_chip[j] != s->reach_chip[j - 1]))
                free(s->reach_chip[j]);
        free(s->reach_chip);
    }
}

static bool stage_tables_init(stage_tables *s, const lp_stage_model *m, const lp_cards *cards,
                              int n_cards) {
    int n = m->n;
    *s = (stage_tables){.n = n, .n_cards = n_cards};
    s->pre_l2 = malloc(sizeof(double) * (size_t)(n + 1));
    s->pre_hbm = malloc(sizeof(double) * (size_t)(n + 1));
    s->reach_dram = malloc(sizeof(int) * (size_t)n);
    s->reach_chip = calloc((size_t)n_cards, sizeof(int *));
    if (!s->pre_l2 || !s->pre_hbm || !s->reach_dram || !s->reach_chip) return false;
    s->pre_l2[0] = s->pre_hbm[0] = 0;
    for (int i = 0; i < n; i++) {
        s->pre_l2[i + 1] = s->pre_l2[i] + layer_time(m, i, m->target->chip_bw);
        s->pre_hbm[i + 1] = s->pre_hbm[i] + layer_time(m, i, m->target->hbm_bw);
    }
    uint64_t dram = m->target->dram_bytes ? m->target->dram_bytes : UINT64_MAX;
    range_reach(&m->footprint, dram, s->reach_dram);
    return true;
}

/* reach_chip for every card: O(n) fresh ranges per change of capacity along
 * the cards, so only the general DP builds it. */
static bool stage_tables_chips(stage_tables *s, const lp_stage_model *m, const lp_cards *cards) {
    int n = s->n, n_cards = s->n_cards;
    for (int j = 0; j < n_cards; j++) {
        if (j > 0 && lp_cards_capacity(cards, j) == lp_cards_capacity(cards, j - 1)) {
            s->reach_chip[j] = s->reach_chip[j - 1];
            continue;
        }
        s->reach_chip[j] = malloc(sizeof(int) * (size_t)n);
        if (!s->reach_chip[j]) return false;
        range_reach(&m->footprint, lp_cards_capacity(cards, j), s->reach_chip[j]);
    }
    return true;
}

static double stage_fast(const stage_tables *s, const lp_stage_model *m, int card, int a, int b) {
    const double *pre = b <= s->reach_chip[card][a] ? s->pre_l2 : s->pre_hbm;
    return recv_time(m, a) + pre[b + 1] - pre[a];
}

static uint64_t double_bits(double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static double bits_double(uint64_t u) {
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---- throughput for any capacities and pins: rows of reachable prefixes ----
 *
 * Card j's stage time w_j(a, b) = recv(a) + the layers' time at L2
 * bandwidth when a..b fits card j's capacity, else at HBM bandwidth. When
 * no layer runs faster from HBM than from L2, w_j grows with b, so for a
 * bound T the ends a group starting at a can take on card j are an
 * interval a..R_j(a). recv(a) depends on the cut before a, so R_j does not
 * grow with a and taking the furthest end card by card is not exact (a
 * shorter group may leave a cheaper cut for the next card). Instead row j
 * holds every prefix that cards 0..j-1 cover under T, as disjoint
 * intervals. A run u..v of consecutive prefixes of row j that are good
 * starts for card j (the single layer fits under T) reaches the ends
 * u .. M, M >= v being the largest b such that some a in u..v has
 * w_j(a, b) <= T and a..b fits device memory. That holds through one of
 *   - HBM: min over a of recv(a) - H[a] (a sparse table) plus H[b+1] <= T
 *     (at L2 the group would only be faster), or
 *   - L2: the largest a whose recv(a) - L[a] + L[b+1] <= T (the smallest
 *     range, so the one most likely on chip) fits card j's capacity: one
 *     range cost.
 * Both only fail more as b grows, so M is a binary search; bounds from
 * the all-HBM and all-L2 figures leave range costs only where the card's
 * capacity decides. Pins become per-row windows (group j starts after every
 * layer pinned to an earlier group, at or before the first pinned to it or
 * later, and ends before the first pinned to a later one). A row costs
 * O(runs log n) table look-ups and range costs, where runs are cut only by
 * starts whose single layer misses T on that card; a bisection over the bit
 * patterns of T (64 steps) finds the smallest feasible T exactly. With one
 * capacity this is also faster than a reach table of the capacity (n fresh
 * ranges, each as long as a group). */
typedef struct tp_entry {
    int lo, hi; /* prefixes of the next row */
    int u, v;   /* the run of starts they come from */
} tp_entry;

typedef struct tp_rows {
    const lp_stage_model *m;
    const lp_cards *cards;
    const stage_tables *s;
    int n, k, kmax, levels;
    double *recv, *key_l, *key_h;   /* recv(a), recv(a) - L[a], recv(a) - H[a] */
    int *arg_l, *arg_h;             /* sparse tables of argmin, levels x n */
    uint64_t *single;               /* footprint of each layer alone */
    uint64_t *bad_max, *bad_min;    /* per T: sparse tables of bad_key, levels x n */
    int *dram_lo;                   /* smallest a with a..b in device memory */
    int *wlo, *whi, *bend;          /* per group: starts wlo..whi, ends <= bend */
    tp_entry *e;
    size_t n_e, room_e;
    int *start, rows, room_rows;    /* start[j]: first entry of row j */
} tp_rows;

static void tp_rows_free(tp_rows *r) {
    free(r->recv);
    free(r->key_l);
    free(r->key_h);
    free(r->arg_l);
    free(r->arg_h);
    free(r->single);
    free(r->bad_max);
    free(r->bad_min);
    free(r->dram_lo);
    free(r->wlo);
    free(r->whi);
    free(r->bend);
    free(r->e);
    free(r->start);
}

static int floor_log2(int x) {
    int k = 0;
    while ((2 << k) <= x) k++;
    return k;
}

static void argmin_build(int *t, const double *v, int n, int levels) {
    for (int i = 0; i < n; i++) t[i] = i;
    for (int k = 1; k < levels; k++)
        for (int i = 0; i + (1 << k) <= n; i++) {
            int x = t[(size_t)(k - 1) * n + i], y = t[(size_t)(k - 1) * n + i + (1 << (k - 1))];
            t[(size_t)k * n + i] = v[y] < v[x] ? y : x;
        }
}

static int argmin_query(const int *t, const double *v, int n, int lo, int hi) {
    int k = floor_log2(hi - lo + 1);
    int x = t[(size_t)k * n + lo], y = t[(size_t)k * n + hi - (1 << k) + 1];
    return v[y] < v[x] ? y : x;
}

/* The first x' >= x whose key is above cap (want_above) or at most cap;
 * n if none. */
static int key_find(const uint64_t *t, int n, int levels, int x, uint64_t cap, bool want_above) {
    for (int k = levels - 1; k >= 0 && x < n; k--) {
        if (x + (1 << k) > n) continue;
        uint64_t v = t[(size_t)k * n + x];
        if (want_above ? v <= cap : v > cap) x += 1 << k; /* the whole block fails */
    }
    while (x < n && (want_above ? t[x] <= cap : t[x] > cap)) x++;
    return x;
}

static void key_build(uint64_t *t, int n, int levels, bool max) {
    for (int k = 1; k < levels; k++)
        for (int i = 0; i + (1 << k) <= n; i++) {
            uint64_t x = t[(size_t)(k - 1) * n + i], y = t[(size_t)(k - 1) * n + i + (1 << (k - 1))];
            t[(size_t)k * n + i] = max ? (x > y ? x : y) : (x < y ? x : y);
        }
}

static double tp_time(const tp_rows *r, int card, int a, int b) {
    bool chip = r->m->footprint.fn(r->m->footprint.ctx, a, b) <= lp_cards_capacity(r->cards, card);
    const double *pre = chip ? r->s->pre_l2 : r->s->pre_hbm;
    return r->recv[a] + pre[b + 1] - pre[a];
}

/* Returns false when the pins leave no plan (a pin past kmax, or pins that
 * go backwards). */
static bool tp_windows(tp_rows *r, const int *pinned) {
    int n = r->n, kmax = r->kmax;
    for (int j = 0; j < kmax; j++) r->wlo[j] = 0, r->whi[j] = n - 1, r->bend[j] = n - 1;
    if (!pinned) return true;
    /* per group its first and last pinned layer (whi / bend as scratch) */
    int *first = r->whi, *last = r->bend, prev = -1;
    for (int j = 0; j < kmax; j++) first[j] = n, last[j] = -1;
    for (int i = 0; i < n; i++) {
        if (pinned[i] < 0) continue;
        if (pinned[i] >= kmax || pinned[i] < prev) return false;
        prev = pinned[i];
        if (first[prev] == n) first[prev] = i;
        last[prev] = i;
    }
    /* wlo[j] = 1 + last layer pinned below j; first_ge = first layer pinned at j or later */
    for (int j = 0, top = -1; j < kmax; j++) {
        r->wlo[j] = top + 1;
        if (last[j] > top) top = last[j];
    }
    for (int j = kmax - 1, ge = n; j >= 0; j--) {
        int gt = ge; /* first layer pinned after group j */
        if (first[j] < ge) ge = first[j];
        int own = first[j];
        r->bend[j] = gt - 1;
        r->whi[j] = own < n ? own : gt - 1;
        if (r->whi[j] > n - 1) r->whi[j] = n - 1;
    }
    return true;
}

/* Per T: bad_key(a) <= cap exactly when layer a alone on a card of capacity
 * cap takes at most T and fits device memory. */
static void tp_bad_keys(tp_rows *r, double T) {
    int n = r->n;
    const double *L = r->s->pre_l2, *H = r->s->pre_hbm;
    for (int a = 0; a < n; a++) {
        uint64_t key;
        if (r->s->reach_dram[a] < a || !(r->recv[a] + (L[a + 1] - L[a]) <= T))
            key = UINT64_MAX;
        else if (!(r->recv[a] + (H[a + 1] - H[a]) <= T))
            key = r->single[a] < UINT64_MAX - 1 ? r->single[a] : UINT64_MAX - 1; /* on chip only */
        else
            key = 0;
        r->bad_max[a] = r->bad_min[a] = key;
    }
    key_build(r->bad_max, n, r->levels, true);
    key_build(r->bad_min, n, r->levels, false);
}

/* Some start a in u..v (lo' = max(u, dram_lo[b]) .. v) reaches end b on
 * card j under T through HBM (chip false) or L2 too; the witness in *wit. */
static bool tp_hbm(const tp_rows *r, int u, int v, int b, double T, int *wit) {
    int lo = u > r->dram_lo[b] ? u : r->dram_lo[b];
    if (lo > v) return false;
    int a = argmin_query(r->arg_h, r->key_h, r->n, lo, v);
    *wit = a;
    return r->key_h[a] + r->s->pre_hbm[b + 1] <= T;
}

static bool tp_l2_any(const tp_rows *r, int u, int v, int b, double T) {
    int lo = u > r->dram_lo[b] ? u : r->dram_lo[b];
    if (lo > v) return false;
    int a = argmin_query(r->arg_l, r->key_l, r->n, lo, v);
    return r->key_l[a] + r->s->pre_l2[b + 1] <= T;
}

static bool tp_reaches(const tp_rows *r, int j, int u, int v, int b, double T, int *wit) {
    if (tp_hbm(r, u, v, b, T, wit)) return true;
    int lo = u > r->dram_lo[b] ? u : r->dram_lo[b];
    if (lo > v) return false;
    double top = r->s->pre_l2[b + 1];
    if (!(r->key_l[argmin_query(r->arg_l, r->key_l, r->n, lo, v)] + top <= T)) return false;
    int hi = v; /* the largest a in lo..v whose L2 time fits T */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (r->key_l[argmin_query(r->arg_l, r->key_l, r->n, mid, v)] + top <= T)
            lo = mid;
        else
            hi = mid - 1;
    }
    *wit = lo;
    return r->m->footprint.fn(r->m->footprint.ctx, lo, b) <= lp_cards_capacity(r->cards, j);
}

/* The furthest end of run u..v on card j under T, at most bmax (>= v). */
static int tp_run_reach(const tp_rows *r, int j, int u, int v, int bmax, double T) {
    int wit, lo = v, hi = bmax;
    /* all-HBM: a lower bound */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (tp_hbm(r, u, v, mid, T, &wit))
            lo = mid;
        else
            hi = mid - 1;
    }
    int sure = lo;
    hi = bmax; /* all-L2: an upper bound */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (tp_l2_any(r, u, v, mid, T))
            lo = mid;
        else
            hi = mid - 1;
    }
    hi = lo;
    lo = sure;
    /* galloping from the sure end: where the capacity holds no wider group
     * (long groups on few cards) the first probe settles it */
    for (int step = 1; lo < hi; step *= 2) {
        int probe = hi - lo > step ? lo + step : hi;
        if (!tp_reaches(r, j, u, v, probe, T, &wit)) {
            hi = probe - 1;
            break;
        }
        lo = probe;
    }
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (tp_reaches(r, j, u, v, mid, T, &wit))
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static bool tp_push(tp_rows *r, tp_entry e) {
    if (r->n_e == r->room_e) {
        size_t room = r->room_e ? 2 * r->room_e : 256;
        tp_entry *grown = realloc(r->e, room * sizeof *grown);
        if (!grown) return false;
        r->e = grown;
        r->room_e = room;
    }
    r->e[r->n_e++] = e;
    return true;
}

static bool tp_close_row(tp_rows *r) {
    if (r->rows + 2 > r->room_rows) {
        int room = r->room_rows ? 2 * r->room_rows : 64;
        int *grown = realloc(r->start, (size_t)room * sizeof *grown);
        if (!grown) return false;
        r->start = grown;
        r->room_rows = room;
    }
    r->start[++r->rows] = (int)r->n_e;
    return true;
}

/* The rows under T: the group count whose row first holds prefix n (k > 0:
 * row k), 0 if none, -1 out of memory. */
static int tp_rows_run(tp_rows *r, double T) {
    int n = r->n, k = r->k;
    tp_bad_keys(r, T);
    r->n_e = 0;
    r->rows = 0; /* row 0: prefix 0, in start[0] .. start[1] */
    if (!tp_close_row(r) || !tp_push(r, (tp_entry){0, 0, -1, -1})) return -1;
    r->start[0] = 0;
    r->start[1] = 1;
    int rows = k > 0 ? k : r->kmax;
    for (int j = 0; j < rows; j++) {
        uint64_t cap = lp_cards_capacity(r->cards, j);
        if (cap > UINT64_MAX - 1) cap = UINT64_MAX - 1;
        int wlo = r->wlo[j], whi = r->whi[j], bend = r->bend[j];
        if (k > 0 && whi > n - (k - j)) whi = n - (k - j);
        if (k > 0 && bend > n - k + j) bend = n - k + j;
        int top = -1, from = r->start[j], to = r->start[j + 1];
        for (int q = from; q < to; q++) {
            int x = r->e[q].lo > wlo ? r->e[q].lo : wlo, y = r->e[q].hi < whi ? r->e[q].hi : whi;
            if (y > bend) y = bend; /* a start past bend has no end */
            for (int a = x; a <= y;) {
                int u = key_find(r->bad_min, n, r->levels, a, cap, false);
                if (u > y) break;
                int v = key_find(r->bad_max, n, r->levels, u, cap, true) - 1;
                if (v > y) v = y;
                int M = tp_run_reach(r, j, u, v, bend, T);
                tp_entry e = {u + 1 > top + 1 ? u + 1 : top + 1, M + 1, u, v};
                if (e.lo <= e.hi) {
                    if (!tp_push(r, e)) return -1;
                    top = e.hi;
                }
                a = v + 1;
            }
        }
        if (!tp_close_row(r)) return -1;
        if (top < 0) return 0;
        if (top == n && (k == 0 || j + 1 == k)) return j + 1;
    }
    return 0;
}

/* Ends of the plan that tp_rows_run(T) found with `groups` rows. */
static void tp_rows_ends(const tp_rows *r, int groups, double T, int *ends) {
    for (int j = groups, q = r->n; j > 0; j--) {
        int lo = r->start[j], hi = r->start[j + 1] - 1; /* the entry of row j holding q */
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if (r->e[mid].lo <= q)
                lo = mid;
            else
                hi = mid - 1;
        }
        const tp_entry *e = &r->e[lo];
        assert(e->lo <= q && q <= e->hi);
        int b = q - 1, a = b;
        if (b > e->v) {
            bool ok = tp_reaches(r, j - 1, e->u, e->v, b, T, &a);
            assert(ok);
            (void)ok;
        }
        ends[j - 1] = b;
        q = a;
    }
}

/* Returns the group count, 0 if none, -1 out of memory. */
static int throughput_rows(const lp_stage_model *m, const lp_cards *cards, const stage_tables *s,
                           int k, int kmax, const int *pinned, int *ends, double *slowest) {
    int n = m->n, levels = floor_log2(n) + 1, groups = -1;
    size_t cells = (size_t)levels * (size_t)n;
    tp_rows r = {.m = m, .cards = cards, .s = s, .n = n, .k = k, .kmax = kmax, .levels = levels};
    r.recv = malloc(sizeof(double) * (size_t)n);
    r.key_l = calloc((size_t)n, sizeof(double)); /* calloc: -O3 cannot see the loop below fill them */
    r.key_h = calloc((size_t)n, sizeof(double));
    r.arg_l = malloc(sizeof(int) * cells);
    r.arg_h = malloc(sizeof(int) * cells);
    r.single = malloc(sizeof(uint64_t) * (size_t)n);
    r.bad_max = malloc(sizeof(uint64_t) * cells);
    r.bad_min = malloc(sizeof(uint64_t) * cells);
    r.dram_lo = malloc(sizeof(int) * (size_t)n);
    r.wlo = malloc(sizeof(int) * (size_t)kmax);
    r.whi = malloc(sizeof(int) * (size_t)kmax);
    r.bend = malloc(sizeof(int) * (size_t)kmax);
    if (!r.recv || !r.key_l || !r.key_h || !r.arg_l || !r.arg_h || !r.single || !r.bad_max ||
        !r.bad_min || !r.dram_lo || !r.wlo || !r.whi || !r.bend)
        goto done;
    groups = 0;
    if (!tp_windows(&r, pinned)) goto done;
    for (int a = 0; a < n; a++) {
        r.recv[a] = recv_time(m, a);
        r.key_l[a] = r.recv[a] - s->pre_l2[a];
        r.key_h[a] = r.recv[a] - s->pre_hbm[a];
        r.single[a] = m->footprint.fn(m->footprint.ctx, a, a);
    }
    argmin_build(r.arg_l, r.key_l, n, levels);
    argmin_build(r.arg_h, r.key_h, n, levels);
    for (int b = 0, a = 0; b < n; b++) {
        while (a <= b && s->reach_dram[a] < b) a++;
        r.dram_lo[b] = a;
    }
    /* hi feasible, everything below lo not (bit patterns order like values) */
    uint64_t lo = 0, hi = double_bits(INFINITY);
    groups = tp_rows_run(&r, INFINITY);
    if (groups <= 0) goto done;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int g = tp_rows_run(&r, bits_double(mid));
        if (g < 0) {
            groups = -1;
            goto done;
        }
        if (g > 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    double T = bits_double(hi);
    groups = tp_rows_run(&r, T);
    if (groups <= 0) {
        groups = groups < 0 ? -1 : 0;
        goto done;
    }
    tp_rows_ends(&r, groups, T, ends);
    double worst = 0;
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        double w = tp_time(&r, g, a, ends[g]);
        if (w > worst) worst = w;
    }
    if (slowest) *slowest = worst;
done:
    tp_rows_free(&r);
    return groups;
}

/* The general DP, for targets where some layer runs faster from HBM than
 * from L2 (stage times need not grow with the group there).
 * f[j][i]: the best slowest stage for layers 0..i on cards 0..j, each card
 * busy; f[j][i] = min over p of max(f[j-1][p], stage(j, p+1..i)), over the
 * p whose group p+1..i fits card j's device memory. */
/* With pins (pinned != NULL) group j = p+1..i must also stay below
 * bad_j(p+1), the first layer pinned elsewhere; like device memory, that
 * only fails more as the group widens. */
static int throughput_core(const lp_stage_model *m, const lp_cards *cards, int k, const int *pinned,
                           int *ends, double *slowest) {
    int n = m->n;
    if (cards_exact(cards) && k <= 0) k = lp_cards_max(cards);
    int kmax = k > 0 ? k : cards_limit(cards, n);
    if (cards->max_cards != 0 && kmax > lp_cards_max(cards)) kmax = lp_cards_max(cards);
    if (kmax > n) {
        if (cards_exact(cards)) return 0;
        kmax = n;
    }
    stage_tables s;
    bool ok = stage_tables_init(&s, m, cards, kmax);
    int groups = ok ? 0 : -1;
    /* stage times grow with the group: no layer faster from HBM than from L2 */
    bool grows = ok;
    for (int i = 0; grows && i < n; i++)
        grows = layer_time(m, i, m->target->hbm_bw) >= layer_time(m, i, m->target->chip_bw);
    if (ok && grows) {
        groups = throughput_rows(m, cards, &s, k, kmax, pinned, ends, slowest);
        ok = false;
    }
    if (ok && !stage_tables_chips(&s, m, cards)) ok = false, groups = -1;
    /* Row j only holds ends i in win_lo[j] .. win_hi[j]: past every layer
     * pinned to groups 0..j, before every layer pinned to a later group
     * (and i >= j, each group busy). Pins every few layers make the rows
     * narrow, and the table is the rows' total width, not k x n. */
    double *f = NULL;
    int *parent = NULL, *bad = NULL, *win = NULL, *next_pin = NULL;
    size_t *off = NULL;
    if (ok) {
        win = malloc(sizeof(int) * 2 * (size_t)kmax);
        off = malloc(sizeof(size_t) * ((size_t)kmax + 1));
        bad = pinned ? malloc(sizeof(int) * (size_t)n) : NULL;
        next_pin = pinned ? malloc(sizeof(int) * ((size_t)n + 1)) : NULL;
        if (!win || !off || (pinned && (!bad || !next_pin))) ok = false, groups = -1;
    }
    int *win_lo = win, *win_hi = win ? win + kmax : NULL;
    if (ok) {
        for (int j = 0; j < kmax; j++) win_lo[j] = j, win_hi[j] = n - 1;
        if (next_pin) {
            next_pin[n] = n;
            for (int i = n - 1; i >= 0; i--) next_pin[i] = pinned[i] >= 0 ? i : next_pin[i + 1];
        }
        for (int i = 0; pinned && i < n; i++) {
            if (pinned[i] >= kmax) ok = false; /* a group past the card count: no plan */
            if (pinned[i] < 0 || pinned[i] >= kmax) continue;
            if (win_lo[pinned[i]] < i) win_lo[pinned[i]] = i;
            if (pinned[i] > 0 && win_hi[pinned[i] - 1] > i - 1) win_hi[pinned[i] - 1] = i - 1;
        }
        for (int j = 1; j < kmax; j++)
            if (win_lo[j] < win_lo[j - 1]) win_lo[j] = win_lo[j - 1];
        for (int j = kmax - 2; j >= 0; j--)
            if (win_hi[j] > win_hi[j + 1]) win_hi[j] = win_hi[j + 1];
        off[0] = 0;
        for (int j = 0; j < kmax; j++)
            off[j + 1] = off[j] + (win_hi[j] >= win_lo[j] ? (size_t)(win_hi[j] - win_lo[j] + 1) : 0);
    }
    if (ok) {
        f = malloc(sizeof(double) * (off[kmax] + 1));
        parent = malloc(sizeof(int) * (off[kmax] + 1));
        if (!f || !parent) ok = false, groups = -1;
    }
    if (ok) {
        for (int j = 0; j < kmax; j++) {
            /* bad[a] for the starts this row reads: win_lo[j-1]+1 .. win_hi[j] */
            int a_lo = j == 0 ? 0 : win_lo[j - 1] + 1;
            if (pinned && a_lo <= win_hi[j]) {
                int next = pinned_other(next_pin, pinned, n, win_hi[j] + 1, j);
                for (int a = win_hi[j]; a >= a_lo; a--) {
                    if (pinned[a] >= 0 && pinned[a] != j) next = a;
                    bad[a] = next;
                }
            }
            for (int i = win_lo[j]; i <= win_hi[j]; i++) {
                double best = INFINITY;
                int arg = -2;
                int lo = j == 0 ? -1 : win_lo[j - 1], hi = j == 0 ? -1 : i - 1;
                if (j > 0 && hi > win_hi[j - 1]) hi = win_hi[j - 1];
                for (int p = hi; p >= lo; p--) {
                    if (s.reach_dram[p + 1] < i) break; /* wider groups fit less */
                    if (pinned && bad[p + 1] <= i) break;
                    double prev = p < 0 ? 0 : f[off[j - 1] + (size_t)(p - win_lo[j - 1])];
                    double st = stage_fast(&s, m, j, p + 1, i);
                    double v = prev > st ? prev : st;
                    if (v < best) best = v, arg = p;
                }
                f[off[j] + (size_t)(i - win_lo[j])] = best;
                parent[off[j] + (size_t)(i - win_lo[j])] = arg;
            }
        }
        int best_j = -1;
        double best_v = INFINITY;
        for (int j = k > 0 ? kmax - 1 : 0; j < kmax; j++) {
            if (win_hi[j] != n - 1 || win_lo[j] > n - 1) continue;
            double v = f[off[j] + (size_t)(n - 1 - win_lo[j])];
            if (isfinite(v) && (best_j < 0 || v < best_v * (1 - 1e-12))) best_j = j, best_v = v;
        }
        if (best_j >= 0) {
            groups = best_j + 1;
            for (int j = best_j, i = n - 1; j >= 0; j--) {
                ends[j] = i;
                i = parent[off[j] + (size_t)(i - win_lo[j])];
            }
            if (slowest) *slowest = best_v;
        }
    }
    free(win);
    free(off);
    free(next_pin);
    stage_tables_free(&s);
    free(f);
    free(parent);
    free(bad);
    return groups;
}

int lp_partition_throughput(const lp_stage_model *m, const lp_cards *cards, int k, int *ends,
                            double *slowest) {
    return throughput_core(m, cards, k, NULL, ends, slowest);
}

int lp_partition_throughput_pinned(const lp_stage_model *m, const lp_cards *cards, int k,
                                   const int *pinned, int *ends, double *slowest) {
    return throughput_core(m, cards, k, pinned, ends, slowest);
}
