/* The activation memory planner: places buffers with known lifetimes in one
 * arena so that buffers alive at the same step never overlap, keeping the
 * arena (the peak) small. Offsets are computed here, ahead of time; the
 * runtime allocates one arena of the peak and uses them as they are.
 *
 * Two strategies run and the smaller peak wins:
 *  - online best-fit in step order (ggml-alloc's scheme): at each step the
 *    items starting there take the smallest free block that holds them
 *    (lowest offset on ties), else the free block at the top is extended or
 *    the arena grows; then the items whose last step it is are freed and
 *    merged with free neighbours. Outputs are placed before inputs are
 *    freed, so a node's outputs never overlap its inputs.
 *  - greedy by size (TFLite's default arena strategy): largest item first,
 *    each into the smallest gap left by already placed items whose lifetimes
 *    overlap it. Quadratic, so only up to LP_MEMPLAN_BY_SIZE_MAX items.
 *  - when the items form a chain (ordered by first step, each overlaps only
 *    its neighbours), the optimum: P = the largest aligned sum of two
 *    neighbours, items alternately at offset 0 and at P - size.
 * The general problem is NP-hard and the first two are heuristics: on a chain
 * with sizes 5, 5, 8 the online scheme needs 18 where 13 suffice. */
#include "layers_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef lp_memplan_block block;
typedef lp_memplan_online freelist;

static uint64_t align_up(uint64_t x, uint64_t a) { return a > 1 ? (x + a - 1) / a * a : x; }

uint64_t lp_memplan_online_take(freelist *f, uint64_t size) {
    int best = -1;
    for (int i = 0; i < f->n; i++)
        if (f->b[i].size >= size && (best < 0 || f->b[i].size < f->b[best].size)) best = i;
    if (best < 0 && f->n > 0 && f->b[f->n - 1].offset + f->b[f->n - 1].size == f->top) {
        /* the last free block touches the top: grow the arena past it */
        best = f->n - 1;
        f->top = f->b[best].offset + size;
        f->b[best].size = size;
    }
    if (best < 0) {
        uint64_t off = f->top;
        f->top += size;
        return off;
    }
    uint64_t off = f->b[best].offset;
    f->b[best].offset += size;
    f->b[best].size -= size;
    if (f->b[best].size == 0) {
        for (int i = best + 1; i < f->n; i++) f->b[i - 1] = f->b[i];
        f->n--;
    }
    return off;
}

bool lp_memplan_online_give(freelist *f, uint64_t off, uint64_t size) {
    int i = 0;
    while (i < f->n && f->b[i].offset < off) i++;
    bool merge_prev = i > 0 && f->b[i - 1].offset + f->b[i - 1].size == off;
    bool merge_next = i < f->n && off + size == f->b[i].offset;
    if (merge_prev && merge_next) {
        f->b[i - 1].size += size + f->b[i].size;
        for (int k = i + 1; k < f->n; k++) f->b[k - 1] = f->b[k];
        f->n--;
    } else if (merge_prev) {
        f->b[i - 1].size += size;
    } else if (merge_next) {
        f->b[i].offset = off;
        f->b[i].size += size;
    } else {
        if (f->n == f->cap) {
            int cap = f->cap ? 2 * f->cap : 16;
            block *nb = realloc(f->b, (size_t)cap * sizeof *nb);
            if (!nb) return false;
            f->b = nb;
            f->cap = cap;
        }
        for (int k = f->n; k > i; k--) f->b[k] = f->b[k - 1];
        f->b[i] = (block){off, size};
        f->n++;
    }
    return true;
}

bool lp_memplan_online_copy(freelist *dst, const freelist *src) {
    if (dst->cap < src->n) {
        int cap = src->n > 16 ? src->n : 16;
        block *nb = realloc(dst->b, (size_t)cap * sizeof *nb);
        if (!nb) return false;
        dst->b = nb;
        dst->cap = cap;
    }
    for (int i = 0; i < src->n; i++) dst->b[i] = src->b[i];
    dst->n = src->n;
    dst->top = src->top;
    return true;
}

/* Items grouped by a step key (first or last) as CSR: idx[start[s]..start[s+1]). */
static bool bucket_by_step(const lp_memplan_item *items, int n_items, int n_steps, bool by_last,
                           int **start_out, int **idx_out) {
    int *start = calloc((size_t)n_steps + 1, sizeof *start);
    int *idx = malloc((size_t)(n_items ? n_items : 1) * sizeof *idx);
    if (!start || !idx) {
        free(start);
        free(idx);
        return false;
    }
    for (int i = 0; i < n_items; i++) start[(by_last ? items[i].last : items[i].first) + 1]++;
    for (int s = 0; s < n_steps; s++) start[s + 1] += start[s];
    for (int i = 0; i < n_items; i++) {
        int s = by_last ? items[i].last : items[i].first;
        idx[start[s]++] = i;
    }
    for (int s = n_steps; s > 0; s--) start[s] = start[s - 1];
    start[0] = 0;
    *start_out = start;
    *idx_out = idx;
    return true;
}

/* The online plan; *live gets the most aligned bytes alive at one step
 * (lp_memplan_live_peak's result), from the same step buckets. */
static lp_status plan_online(lp_memplan_item *items, int n_items, int n_steps, uint64_t align,
                             uint64_t *peak, uint64_t *live) {
    *peak = *live = 0;
    for (int i = 0; i < n_items; i++)
        assert(items[i].first >= 0 && items[i].first <= items[i].last && items[i].last < n_steps);
    if (n_items == 0) return LP_OK;
    int *fstart = NULL, *fidx = NULL, *lstart = NULL, *lidx = NULL;
    freelist f = {0};
    lp_status st = LP_ERR_INTERNAL;
    if (!bucket_by_step(items, n_items, n_steps, false, &fstart, &fidx) ||
        !bucket_by_step(items, n_items, n_steps, true, &lstart, &lidx))
        goto done;
    uint64_t now = 0;
    for (int s = 0; s < n_steps; s++) {
        for (int k = fstart[s]; k < fstart[s + 1]; k++) {
            lp_memplan_item *it = &items[fidx[k]];
            uint64_t size = align_up(it->bytes, align);
            it->offset = it->bytes ? lp_memplan_online_take(&f, size) : 0;
            now += size;
        }
        if (now > *live) *live = now;
        for (int k = lstart[s]; k < lstart[s + 1]; k++) {
            const lp_memplan_item *it = &items[lidx[k]];
            uint64_t size = align_up(it->bytes, align);
            if (it->bytes && !lp_memplan_online_give(&f, it->offset, size)) goto done;
            now -= size;
        }
    }
    *peak = f.top;
    st = LP_OK;
done:
    free(fstart);
    free(fidx);
    free(lstart);
    free(lidx);
    free(f.b);
    return st;
}

uint64_t lp_memplan_live_peak(const lp_memplan_item *items, int n_items, int n_steps,
                              uint64_t align) {
    /* running sum over a difference array: +bytes at first, -bytes after last */
    uint64_t live = 0, best = 0;
    int *fstart = NULL, *fidx = NULL, *lstart = NULL, *lidx = NULL;
    if (!bucket_by_step(items, n_items, n_steps, false, &fstart, &fidx) ||
        !bucket_by_step(items, n_items, n_steps, true, &lstart, &lidx)) {
        /* out of memory: 0, a trivial bound */
        free(fstart);
        free(fidx);
        free(lstart);
        return 0;
    }
    for (int s = 0; s < n_steps; s++) {
        for (int k = fstart[s]; k < fstart[s + 1]; k++) live += align_up(items[fidx[k]].bytes, align);
        if (live > best) best = live;
        for (int k = lstart[s]; k < lstart[s + 1]; k++) live -= align_up(items[lidx[k]].bytes, align);
    }
    free(fstart);
    free(fidx);
    free(lstart);
    free(lidx);
    return best;
}

/* A placed item with nonzero size: its bytes [offset, end) and steps [first, last]. */
typedef struct placed {
    uint64_t offset, end;
    int first, last;
} placed;

typedef struct by_size {
    uint64_t bytes;
    int first, index;
} by_size;

/* Largest first, then earliest first step, then lowest index: a total order. */
static bool size_before(const by_size *x, const by_size *y) {
    if (x->bytes != y->bytes) return x->bytes > y->bytes;
    if (x->first != y->first) return x->first < y->first;
    return x->index < y->index;
}

/* Merge sort of a[0..n) by size_before, tmp[n] scratch; a direct sort since
 * the order is total (qsort through a comparator pointer cost more than the
 * placement). */
static void sort_by_size(by_size *a, by_size *tmp, int n) {
    if (n < 2) return;
    if (n <= 8) {
        for (int i = 1; i < n; i++) {
            by_size x = a[i];
            int j = i;
            for (; j > 0 && size_before(&x, &a[j - 1]); j--) a[j] = a[j - 1];
            a[j] = x;
        }
        return;
    }
    int h = n / 2;
    sort_by_size(a, tmp, h);
    sort_by_size(a + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = size_before(&a[j], &a[i]) ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    memcpy(a, tmp, (size_t)k * sizeof *a);
}

/* Greedy by size into offsets[]; returns false if out of memory. The items
 * placed so far are kept sorted by offset, so each new one scans them once
 * for the gaps between those whose lifetimes overlap it: O(n) an item. (The
 * order among equal offsets does not matter: after the first of them the
 * scan's end is past that offset, so no later one opens a gap there.) */
static bool plan_by_size(const lp_memplan_item *items, int n, uint64_t align, uint64_t *offsets,
                         uint64_t *peak) {
    by_size *order = malloc((size_t)n * 2 * sizeof *order);
    placed *sorted = malloc((size_t)n * sizeof *sorted);
    if (!order || !sorted) {
        free(order);
        free(sorted);
        return false;
    }
    for (int i = 0; i < n; i++) order[i] = (by_size){items[i].bytes, items[i].first, i};
    sort_by_size(order, order + n, n);
    *peak = 0;
    int n_sorted = 0;
    for (int r = 0; r < n; r++) {
        const lp_memplan_item *it = &items[order[r].index];
        uint64_t size = align_up(it->bytes, align);
        /* smallest gap between conflicting items that holds it, else the end */
        uint64_t at = 0, best = UINT64_MAX, best_gap = UINT64_MAX;
        for (int k = 0; k < n_sorted; k++) {
            const placed *p = &sorted[k];
            if (p->first > it->last || it->first > p->last) continue;
            if (p->offset > at && p->offset - at >= size && p->offset - at < best_gap) {
                best = at;
                best_gap = p->offset - at;
            }
            if (p->end > at) at = p->end;
        }
        uint64_t off = best != UINT64_MAX ? best : at;
        offsets[order[r].index] = off;
        if (!it->bytes) continue;
        if (off + size > *peak) *peak = off + size;
        /* insert after the last placed item with an offset <= off */
        int lo = 0, hi = n_sorted;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (sorted[mid].offset <= off) lo = mid + 1;
            else hi = mid;
        }
        memmove(&sorted[lo + 1], &sorted[lo], (size_t)(n_sorted - lo) * sizeof *sorted);
        sorted[lo] = (placed){off, off + size, it->first, it->last};
        n_sorted++;
    }
    free(order);
    free(sorted);
    return true;
}

/* Item indices ordered by first step, then index (a stable counting sort);
 * malloc'ed, NULL if out of memory. */
static int *order_by_first(const lp_memplan_item *items, int n) {
    int steps = 0;
    for (int i = 0; i < n; i++)
        if (items[i].first + 1 > steps) steps = items[i].first + 1;
    int *start = calloc((size_t)steps + 1, sizeof *start);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!start || !order) {
        free(start);
        free(order);
        return NULL;
    }
    for (int i = 0; i < n; i++) start[items[i].first + 1]++;
    for (int s = 0; s < steps; s++) start[s + 1] += start[s];
    for (int i = 0; i < n; i++) order[start[items[i].first]++] = i;
    free(start);
    return order;
}

/* The alternating layout when the items form a chain; false if they do not
 * (or out of memory). */
static bool plan_chain(const lp_memplan_item *items, int n, uint64_t align, uint64_t *offsets,
                       uint64_t *peak) {
    int *order = order_by_first(items, n);
    if (!order) return false;
    bool chain = true;
    uint64_t p = 0;
    for (int k = 0; k < n && chain; k++) {
        const lp_memplan_item *a = &items[order[k]];
        if (k + 2 < n && items[order[k + 2]].first <= a->last) chain = false;
        uint64_t pair = align_up(a->bytes, align);
        if (k + 1 < n && items[order[k + 1]].first <= a->last)
            pair += align_up(items[order[k + 1]].bytes, align);
        if (pair > p) p = pair;
    }
    for (int k = 0; k < n && chain; k++) {
        int i = order[k];
        offsets[i] = k % 2 == 0 ? 0 : p - align_up(items[i].bytes, align);
    }
    free(order);
    *peak = p;
    return chain;
}

lp_status lp_memplan_improve(lp_memplan_item *items, int n_items, uint64_t align, uint64_t live,
                             int max_alive, uint64_t *peak) {
    /* at the lower bound already: nothing can do better */
    if (n_items < 2 || *peak == live) return LP_OK;
    uint64_t *offsets = malloc((size_t)n_items * sizeof *offsets);
    uint64_t other;
    if (!offsets) return LP_ERR_INTERNAL;
    for (int strategy = 0; strategy < 2; strategy++) {
        bool ok = strategy == 0 ? max_alive < 3 && plan_chain(items, n_items, align, offsets, &other)
                  : n_items <= LP_MEMPLAN_BY_SIZE_MAX && plan_by_size(items, n_items, align, offsets, &other);
        if (ok && other < *peak) {
            for (int i = 0; i < n_items; i++) items[i].offset = offsets[i];
            *peak = other;
        }
    }
    free(offsets);
    return LP_OK;
}

lp_status lp_memplan_run(lp_memplan_item *items, int n_items, int n_steps, uint64_t align,
                         uint64_t *peak) {
    uint64_t live;
    lp_status st = plan_online(items, n_items, n_steps, align, peak, &live);
    if (st != LP_OK || n_items < 2) return st;
    return lp_memplan_improve(items, n_items, align, live, -1, peak);
}
