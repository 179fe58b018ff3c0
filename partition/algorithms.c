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
 * limit groups fits under ceiling". With equal capacities and n >= limit
 * the two agree (a fitting split can always be cut finer), so greedy
 * decides both. */
static int greedy_plain(const lp_range_cost *c, const lp_cards *cards, int limit,
                        uint64_t ceiling, bool exact, int *ends, int *stuck) {
    (void)exact;
    return greedy_core(c, cards, limit, ceiling, false, ends, stuck);
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
    int groups = equal && c->n >= limit ? greedy_core(c, cards, limit, hi, true, ends, NULL) : 0;
    if (!groups || largest_group(c, ends, groups) > hi)
        groups = fits(c, cards, limit, hi, exact, ends, NULL);
    assert(groups > 0);
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
    double bw = on_chip ? m->target->l2_bw : m->target->hbm_bw;
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
        s->pre_l2[i + 1] = s->pre_l2[i] + layer_time(m, i, m->target->l2_bw);
        s->pre_hbm[i + 1] = s->pre_hbm[i] + layer_time(m, i, m->target->hbm_bw);
    }
    uint64_t dram = m->target->dram_bytes ? m->target->dram_bytes : UINT64_MAX;
    range_reach(&m->footprint, dram, s->reach_dram);
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

/* ---- throughput by bisection on the answer ----
 *
 * With one capacity for every card the stage time w(a, b) of layers a..b
 * does not depend on the card, and it grows with b when a layer never runs
 * faster from HBM than from L2. Then for a bound T the edges "a group a..b
 * with w(a, b) <= T that fits device memory" leave each a towards an
 * interval a+1 .. r(a)+1, and:
 *   - gmin(p), the fewest groups covering layers 0..p-1, never decreases
 *     with p (drop the last layer), so the best predecessor of p is the
 *     smallest a still reaching p: a queue;
 *   - the counts of groups that cover 0..p-1 form an interval
 *     gmin(p)..gmax(p) (paths over such interval edges can be merged step
 *     by step); gmax comes from a heap of the a still reaching p.
 * "Exactly k groups under T" is then gmin(n) <= k <= gmax(n), monotone in
 * T, so a bisection over the bit patterns of non-negative doubles finds the
 * smallest T exactly: O(n log n) a step, 64 steps, O(n) memory, instead of
 * the O(k n^2) DP below (kept for unequal capacities and pins). */
typedef struct tp_fast {
    int n;
    int *r, *gmin, *gmax, *queue, *heap;
} tp_fast;

static double tp_w(const stage_tables *s, const lp_stage_model *m, int a, int b) {
    return stage_fast(s, m, 0, a, b);
}

static void heap_push(int *heap, int *size, const int *key, int v) {
    int i = (*size)++;
    heap[i] = v;
    while (i > 0 && key[heap[(i - 1) / 2]] < key[heap[i]]) {
        int p = (i - 1) / 2, t = heap[p];
        heap[p] = heap[i];
        heap[i] = t;
        i = p;
    }
}

static void heap_pop(int *heap, int *size, const int *key) {
    heap[0] = heap[--*size];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, top = i;
        if (l < *size && key[heap[l]] > key[heap[top]]) top = l;
        if (r < *size && key[heap[r]] > key[heap[top]]) top = r;
        if (top == i) break;
        int t = heap[top];
        heap[top] = heap[i];
        heap[i] = t;
        i = top;
    }
}

/* gmin/gmax of every prefix under bound T (-1: unreachable). */
static void tp_fast_counts(tp_fast *f, const stage_tables *s, const lp_stage_model *m, double T) {
    int n = f->n;
    for (int a = 0; a < n; a++) {
        int lo = a, hi = s->reach_dram[a]; /* largest b in lo..hi with w(a, b) <= T */
        if (hi < a || !(tp_w(s, m, a, a) <= T)) {
            f->r[a] = a - 1;
            continue;
        }
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if (tp_w(s, m, a, mid) <= T)
                lo = mid;
            else
                hi = mid - 1;
        }
        f->r[a] = lo;
    }
    int qh = 0, qt = 0, hs = 0;
    f->gmin[0] = f->gmax[0] = 0;
    for (int b = 0; b < n; b++) {
        if (f->gmin[b] >= 0 && f->r[b] >= b) {
            f->queue[qt++] = b;
            heap_push(f->heap, &hs, f->gmax, b);
        }
        while (qh < qt && f->r[f->queue[qh]] < b) qh++;
        while (hs > 0 && f->r[f->heap[0]] < b) heap_pop(f->heap, &hs, f->gmax);
        f->gmin[b + 1] = qh < qt ? f->gmin[f->queue[qh]] + 1 : -1;
        f->gmax[b + 1] = hs > 0 ? f->gmax[f->heap[0]] + 1 : -1;
    }
}

static bool tp_fast_ok(const tp_fast *f, int k, int kmax) {
    int lo = f->gmin[f->n], hi = f->gmax[f->n];
    if (lo < 0) return false;
    return k > 0 ? lo <= k && k <= hi : lo <= kmax;
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

/* Returns the group count, 0 if none, -1 out of memory, -2 when the
 * bisection's premise fails (the caller then runs the DP). */
static int throughput_fast(const lp_stage_model *m, const stage_tables *s, int k, int kmax,
                           int *ends, double *slowest) {
    int n = m->n;
    tp_fast f = {n, malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * ((size_t)n + 1)),
                 malloc(sizeof(int) * ((size_t)n + 1)), malloc(sizeof(int) * (size_t)n),
                 malloc(sizeof(int) * (size_t)n)};
    int groups = -1;
    if (!f.r || !f.gmin || !f.gmax || !f.queue || !f.heap) goto done;
    /* hi feasible, everything below lo not (bit patterns order like values) */
    uint64_t lo = 0, hi = double_bits(INFINITY);
    tp_fast_counts(&f, s, m, INFINITY);
    groups = 0;
    if (!tp_fast_ok(&f, k, kmax)) goto done;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        tp_fast_counts(&f, s, m, bits_double(mid));
        if (tp_fast_ok(&f, k, kmax))
            hi = mid;
        else
            lo = mid + 1;
    }
    double T = bits_double(hi);
    tp_fast_counts(&f, s, m, T);
    int want = k > 0 ? k : f.gmin[n];
    /* walk back: from p, the nearest a with an edge to p whose counts hold want-1 */
    int p = n, c = want, a = n - 1;
    double worst = 0;
    while (p > 0) {
        for (; a >= 0; a--)
            if (f.gmin[a] >= 0 && f.r[a] >= p - 1 && f.gmin[a] <= c - 1 && c - 1 <= f.gmax[a]) break;
        if (a < 0 || (a == 0) != (c == 1)) {
            groups = -2; /* not an interval after all: let the DP decide */
            goto done;
        }
        ends[c - 1] = p - 1;
        double w = tp_w(s, m, a, p - 1);
        if (w > worst) worst = w;
        p = a;
        c--;
        a = p - 1;
    }
    groups = want;
    if (slowest) *slowest = worst;
done:
    free(f.r);
    free(f.gmin);
    free(f.gmax);
    free(f.queue);
    free(f.heap);
    return groups;
}

/* f[j][i]: the best slowest stage for layers 0..i on cards 0..j, each card
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
    bool fast = ok && !pinned && cards_equal(cards, kmax);
    for (int i = 0; fast && i < n; i++)
        fast = s.pre_hbm[i + 1] - s.pre_hbm[i] >= s.pre_l2[i + 1] - s.pre_l2[i];
    if (fast) {
        groups = throughput_fast(m, &s, k, kmax, ends, slowest);
        if (groups != -2) ok = false; /* done */
        else groups = 0;
    }
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
