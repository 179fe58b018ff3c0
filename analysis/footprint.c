/* Footprints of layer groups, and the FLOP count of one node.
 *
 * FLOP rules (multiply and add count as two):
 *   MatMul                  2 * numel(Y) * K, K = last dim of A (batched too)
 *   Gemm                    2 * M * N * K, plus M * N with a bias C
 *   Conv                    2 * numel(Y) * (C_in / group) * prod(kernel dims)
 *   ConvTranspose           2 * numel(X) * (C_out / group) * prod(kernel dims)
 *   Softmax, LogSoftmax,
 *   *Normalization          5 * numel(Y) (max/mean, subtract, exp/square,
 *                           sum, scale)
 *   MaxPool, AveragePool    numel(Y) * prod(kernel_shape)
 *   Reduce*, GlobalPool     numel(X)
 *   element-wise ops        numel(Y) (Add, Mul, Relu, Gelu, Erf, Where, ...)
 *   data movement           0 (Reshape, Transpose, Gather, Concat, Slice,
 *                           Shape, Cast, Expand, Split, ...)
 * The rule of each op is its row's flops column in ir/ops.def; an op with no
 * row counts numel(Y). An unknown shape counts as 0; a count beyond 64 bits saturates at UINT64_MAX
 * (a model that large is reported as such, never wrapped to a small number). */
#include "layers_internal.h"
#include "infer_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static uint64_t numel_of(const lp_graph *g, int32_t v) {
    uint64_t n;
    if (v < 0 || !lp_shape_numel(&g->values[v].shape, &n)) return 0;
    return n;
}

static int64_t dim_of(const lp_graph *g, int32_t v, int k) {
    if (v < 0) return -1;
    const lp_shape *s = &g->values[v].shape;
    if (k < 0) k += s->rank;
    if (s->rank < 0 || k < 0 || k >= s->rank) return -1;
    return s->dims[k].size;
}

static uint64_t sat_mul(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_mul3(uint64_t a, uint64_t b, uint64_t c) { return sat_mul(sat_mul(a, b), c); }

static uint64_t kernel_elems(const lp_graph *g, const lp_node *n, int32_t w) {
    const lp_attr *ks = lp_node_attr(n, "kernel_shape");
    uint64_t k = 1;
    if (ks && ks->type == LP_ATTR_INTS) {
        for (int i = 0; i < ks->n; i++) k = sat_mul(k, (uint64_t)(ks->ints[i] > 0 ? ks->ints[i] : 1));
        return k;
    }
    const lp_shape *s = w >= 0 ? &g->values[w].shape : NULL;
    if (!s || s->rank < 2) return 0;
    for (int i = 2; i < s->rank; i++) k = sat_mul(k, (uint64_t)(s->dims[i].size > 0 ? s->dims[i].size : 0));
    return k;
}

uint64_t lp_analysis_node_flops(const lp_graph *g, const lp_node *n) {
    int32_t x = n->n_inputs > 0 ? n->inputs[0] : -1;
    int32_t w = n->n_inputs > 1 ? n->inputs[1] : -1;
    int32_t y = n->n_outputs > 0 ? n->outputs[0] : -1;
    /* the op table's flops column; an op with no row counts as element-wise */
    lp_op_flops c = lp_op_flops_of(lp_node_op(n));
    switch (c) {
    case LP_FLOPS_MATMUL: {
        int64_t k = dim_of(g, x, -1);
        return k > 0 ? sat_mul3(2, numel_of(g, y), (uint64_t)k) : 0;
    }
    case LP_FLOPS_GEMM: {
        int64_t k = dim_of(g, x, lp_node_attr_int(n, "transA", 0) ? 0 : 1);
        uint64_t mn = numel_of(g, y);
        if (k <= 0) return 0;
        uint64_t f = sat_mul3(2, mn, (uint64_t)k), bias = n->n_inputs > 2 && n->inputs[2] >= 0 ? mn : 0;
        return f + bias < f ? UINT64_MAX : f + bias;
    }
    case LP_FLOPS_CONV: {
        int64_t cin_g = dim_of(g, w, 1); /* W is [C_out, C_in/group, k...] */
        return cin_g > 0 ? sat_mul(sat_mul3(2, numel_of(g, y), (uint64_t)cin_g), kernel_elems(g, n, w)) : 0;
    }
    case LP_FLOPS_CONV_T: {
        int64_t cout_g = dim_of(g, w, 1); /* W is [C_in, C_out/group, k...] */
        return cout_g > 0 ? sat_mul(sat_mul3(2, numel_of(g, x), (uint64_t)cout_g), kernel_elems(g, n, w)) : 0;
    }
    case LP_FLOPS_NORM: return sat_mul(5, numel_of(g, y));
    case LP_FLOPS_POOL: return sat_mul(numel_of(g, y), kernel_elems(g, n, -1));
    case LP_FLOPS_INPUT: return numel_of(g, x);
    case LP_FLOPS_ZERO: return 0;
    case LP_FLOPS_OUTPUT: break;
    }
    return numel_of(g, y);
}

/* Last consumer of v at or before node b (consumers are ascending). */
static int last_use_upto(const struct lp_layer_index *ix, int32_t v, int b) {
    int lo = ix->cons_start[v], hi = ix->cons_start[v + 1];
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (ix->cons[mid] <= b)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > ix->cons_start[v] ? ix->cons[lo - 1] : -1;
}

/* The lifetimes of the group's values over its nodes a..b, as planner items
 * with steps relative to a. */
static int range_items(const lp_layer_ir *L, int a, int b, lp_footprint *fp) {
    const lp_graph *g = L->g;
    struct lp_layer_index *ix = L->index;
    uint32_t mark = lp_layer_index_next_epoch(ix, g->n_values);
    int n = 0;
    for (int t = a; t <= b; t++) {
        const lp_node *nd = &g->nodes[t];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0 || ix->stamp[v] == mark || !lp_value_in_arena(&g->values[v])) continue;
            if (g->values[v].kind == LP_VALUE_ACTIVATION && g->values[v].producer >= a) continue;
            ix->stamp[v] = mark;
            int last = last_use_upto(ix, v, b);
            assert(ix->vbytes[v] != LP_BYTES_UNKNOWN && last >= t && n < ix->items_cap);
            ix->items[n++] = (lp_memplan_item){.bytes = ix->vbytes[v], .first = 0, .last = last - a};
            fp->received_bytes += ix->vbytes[v];
            fp->padding_bytes += lp_align_pad(ix->vbytes[v]);
        }
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = nd->outputs[k];
            if (v < 0) continue;
            bool sent = g->values[v].is_graph_output || ix->last_use[v] > b;
            int last = sent ? b : ix->last_use[v] > t ? ix->last_use[v] : t;
            assert(n < ix->items_cap);
            ix->items[n++] = (lp_memplan_item){.bytes = ix->vbytes[v], .first = t - a, .last = last - a};
            if (sent) {
                fp->sent_bytes += ix->vbytes[v];
                fp->padding_bytes += lp_align_pad(ix->vbytes[v]);
            }
        }
    }
    return n;
}

void lp_analysis_range_footprint_exact(const lp_layer_ir *L, int first, int last,
                                       lp_footprint *fp) {
    assert(L && first >= 0 && first <= last && last < L->n_layers);
    memset(fp, 0, sizeof *fp);
    struct lp_layer_index *ix = L->index;
    uint32_t mark = lp_layer_index_next_epoch(ix, L->g->n_values);
    for (int j = first; j <= last; j++) {
        const lp_layer *l = &L->layers[j];
        for (int k = 0; k < l->n_weights; k++) {
            int32_t v = l->weights[k];
            if (ix->stamp[v] == mark) continue;
            ix->stamp[v] = mark;
            if (ix->vbytes[v] == LP_BYTES_UNKNOWN) continue;
            fp->weight_bytes += ix->vbytes[v];
            fp->padding_bytes += lp_align_pad(ix->vbytes[v]);
        }
        if (l->buffer_bytes > fp->buffer_bytes) fp->buffer_bytes = l->buffer_bytes;
    }
    int a = L->layers[first].first_node, b = L->layers[last].last_node;
    int n = range_items(L, a, b, fp);
    if (lp_memplan_run(ix->items, n, b - a + 1, LP_MEMPLAN_ALIGN, &fp->activation_bytes) != LP_OK) {
        fp->total = UINT64_MAX; /* out of memory: never fits */
        return;
    }
    fp->live_bytes = lp_memplan_live_peak(ix->items, n, b - a + 1, LP_MEMPLAN_ALIGN);
    fp->boundary_bytes = fp->received_bytes + fp->sent_bytes;
    fp->total = fp->weight_bytes + fp->activation_bytes + fp->buffer_bytes + fp->boundary_bytes +
                fp->padding_bytes;
}

/* ---- growing ranges ------------------------------------------------------
 *
 * A partitioner sweeps first..first, first..first+1, ... Redoing the plan
 * for each costs O(range) a call, O(range^2) a sweep. The cursor keeps the
 * items of first..last and the online planner's state saved before step s0,
 * the earliest step where an item may still change when the range grows:
 * a value sent out of the range is freed at its last step only because the
 * range ends there, and a received value that later layers read again is
 * freed early for the same reason. Every event before s0 is final, so
 * growing the range replays the planner from s0 only, and the result is the
 * exact planner's (lp_analysis_range_footprint_exact), event for event.
 * One exception: a value made before `first` and read for the first time
 * in the new layers is received, live from step 0, and so changes the plan
 * from the start; then the range is planned again from scratch. */

struct lp_range_cursor {
    int first, last;        /* layers of the current range; last < first: empty */
    int a, b;               /* its nodes */
    int n, cap;             /* items, in range_items order */
    lp_memplan_item *items;
    int32_t *value;         /* value of each item */
    int32_t *node;          /* producing node of an output item; -1: received */
    int *open, n_open;      /* items whose last step is >= s0, ascending */
    int *active;            /* scratch: open items and the new ones */
    int s0;                 /* the plan is saved before this step (from a) */
    lp_memplan_online saved, work;
    uint64_t saved_live, saved_best;
    int saved_alive, saved_max_alive; /* items alive before s0, and the most at once */
    uint64_t weight_bytes, buffer_bytes, received_bytes;
    uint64_t padding_bytes; /* of the weights and received values so far */
    uint32_t *seen, epoch;  /* [n_values]: weights and received values counted */
    int *fstart, *lstart;   /* [n_nodes + 2]: step buckets of the replay */
    int *fidx, *lidx;       /* [cap] */
    lp_footprint fp;        /* of first..last */
};

void lp_range_cursor_free(struct lp_range_cursor *c) {
    if (!c) return;
    free(c->items);
    free(c->value);
    free(c->node);
    free(c->open);
    free(c->active);
    free(c->saved.b);
    free(c->work.b);
    free(c->seen);
    free(c->fstart);
    free(c->lstart);
    free(c->fidx);
    free(c->lidx);
    free(c);
}

static struct lp_range_cursor *cursor_new(const lp_layer_ir *L) {
    struct lp_range_cursor *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t cap = (size_t)(L->index->items_cap > 0 ? L->index->items_cap : 1);
    size_t steps = (size_t)L->g->n_nodes + 2;
    c->cap = (int)cap;
    c->items = malloc(cap * sizeof *c->items);
    c->value = malloc(cap * sizeof *c->value);
    c->node = malloc(cap * sizeof *c->node);
    c->open = malloc(cap * sizeof *c->open);
    c->active = malloc(cap * sizeof *c->active);
    c->fidx = malloc(cap * sizeof *c->fidx);
    c->lidx = malloc(cap * sizeof *c->lidx);
    c->fstart = malloc(steps * sizeof *c->fstart);
    c->lstart = malloc(steps * sizeof *c->lstart);
    c->seen = calloc((size_t)(L->g->n_values > 0 ? L->g->n_values : 1), sizeof *c->seen);
    if (!c->items || !c->value || !c->node || !c->open || !c->active || !c->fidx || !c->lidx ||
        !c->fstart || !c->lstart || !c->seen) {
        lp_range_cursor_free(c);
        return NULL;
    }
    c->first = -1;
    return c;
}

/* The empty range before layer `first`. */
static void cursor_reset(struct lp_range_cursor *c, const lp_layer_ir *L, int first) {
    c->first = first;
    c->last = first - 1;
    c->a = L->layers[first].first_node;
    c->b = c->a - 1;
    c->n = c->n_open = c->s0 = 0;
    c->saved.n = 0;
    c->saved.top = 0;
    c->saved_live = c->saved_best = 0;
    c->saved_alive = c->saved_max_alive = 0;
    c->weight_bytes = c->buffer_bytes = c->received_bytes = c->padding_bytes = 0;
    if (++c->epoch == 0) {
        memset(c->seen, 0, (size_t)L->g->n_values * sizeof *c->seen);
        c->epoch = 1;
    }
}

/* Weights and largest buffer of layers c->last+1 .. last. */
static void cursor_add_layers(struct lp_range_cursor *c, const lp_layer_ir *L, int last) {
    const struct lp_layer_index *ix = L->index;
    for (int j = c->last + 1; j <= last; j++) {
        const lp_layer *l = &L->layers[j];
        for (int k = 0; k < l->n_weights; k++) {
            int32_t v = l->weights[k];
            if (c->seen[v] == c->epoch) continue;
            c->seen[v] = c->epoch;
            if (ix->vbytes[v] == LP_BYTES_UNKNOWN) continue;
            c->weight_bytes += ix->vbytes[v];
            c->padding_bytes += lp_align_pad(ix->vbytes[v]);
        }
        if (l->buffer_bytes > c->buffer_bytes) c->buffer_bytes = l->buffer_bytes;
    }
}

/* Items of nodes c->b+1 .. b, lasts left for cursor_set_lasts; false if a
 * received value appears in a range that is not fresh. */
static bool cursor_add_items(struct lp_range_cursor *c, const lp_layer_ir *L, int b) {
    const lp_graph *g = L->g;
    const struct lp_layer_index *ix = L->index;
    bool fresh = c->last < c->first;
    for (int t = c->b + 1; t <= b; t++) {
        const lp_node *nd = &g->nodes[t];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0 || c->seen[v] == c->epoch || !lp_value_in_arena(&g->values[v])) continue;
            if (g->values[v].kind == LP_VALUE_ACTIVATION && g->values[v].producer >= c->a) continue;
            if (!fresh) return false;
            c->seen[v] = c->epoch;
            assert(ix->vbytes[v] != LP_BYTES_UNKNOWN && c->n < c->cap);
            c->items[c->n] = (lp_memplan_item){.bytes = ix->vbytes[v], .first = 0};
            c->value[c->n] = v;
            c->node[c->n++] = -1;
            c->received_bytes += ix->vbytes[v];
            c->padding_bytes += lp_align_pad(ix->vbytes[v]);
        }
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = nd->outputs[k];
            if (v < 0) continue;
            assert(c->n < c->cap);
            c->items[c->n] = (lp_memplan_item){.bytes = ix->vbytes[v], .first = t - c->a};
            c->value[c->n] = v;
            c->node[c->n++] = t;
        }
    }
    return true;
}

/* Last step of item i when the range ends at node b (as range_items sets
 * it); *open: whether it may still move when the range grows; *sent: an
 * output read after b. */
static int item_last(const struct lp_range_cursor *c, const lp_layer_ir *L, int i, int b, bool *open,
                     bool *sent) {
    const struct lp_layer_index *ix = L->index;
    int32_t v = c->value[i], t = c->node[i];
    if (t < 0) {
        *open = ix->last_use[v] > b;
        *sent = false;
        return last_use_upto(ix, v, b) - c->a;
    }
    *sent = *open = L->g->values[v].is_graph_output || ix->last_use[v] > b;
    return (*sent ? b : ix->last_use[v] > t ? ix->last_use[v] : t) - c->a;
}

/* Counting sort of the active items by first (those starting at or after
 * s0) and by last, over steps s0 .. steps-1, stable in item order. */
static void cursor_bucket(struct lp_range_cursor *c, int n_active, int steps) {
    int span = steps - c->s0;
    memset(c->fstart, 0, (size_t)(span + 1) * sizeof *c->fstart);
    memset(c->lstart, 0, (size_t)(span + 1) * sizeof *c->lstart);
    for (int k = 0; k < n_active; k++) {
        const lp_memplan_item *it = &c->items[c->active[k]];
        if (it->first >= c->s0) c->fstart[it->first - c->s0 + 1]++;
        c->lstart[it->last - c->s0 + 1]++;
    }
    for (int s = 0; s < span; s++) {
        c->fstart[s + 1] += c->fstart[s];
        c->lstart[s + 1] += c->lstart[s];
    }
    /* fill, then shift the starts back */
    for (int k = 0; k < n_active; k++) {
        int i = c->active[k];
        if (c->items[i].first >= c->s0) c->fidx[c->fstart[c->items[i].first - c->s0]++] = i;
        c->lidx[c->lstart[c->items[i].last - c->s0]++] = i;
    }
    for (int s = span; s > 0; s--) {
        c->fstart[s] = c->fstart[s - 1];
        c->lstart[s] = c->lstart[s - 1];
    }
    c->fstart[0] = c->lstart[0] = 0;
}

/* Replays the online planner (memplan.c's plan_online, the live peak and
 * the most items alive at once) over steps s0 .. steps-1, saving the state
 * before step s_next. */
static bool cursor_replay(struct lp_range_cursor *c, int steps, int s_next, uint64_t *best_out,
                          int *max_alive_out) {
    uint64_t live = c->saved_live, best = c->saved_best;
    int alive = c->saved_alive, max_alive = c->saved_max_alive;
    if (!lp_memplan_online_copy(&c->work, &c->saved)) return false;
    for (int s = c->s0; s <= steps; s++) {
        if (s == s_next) {
            if (!lp_memplan_online_copy(&c->saved, &c->work)) return false;
            c->saved_live = live;
            c->saved_best = best;
            c->saved_alive = alive;
            c->saved_max_alive = max_alive;
        }
        if (s == steps) break;
        int r = s - c->s0;
        for (int k = c->fstart[r]; k < c->fstart[r + 1]; k++) {
            lp_memplan_item *it = &c->items[c->fidx[k]];
            uint64_t size = (it->bytes + LP_MEMPLAN_ALIGN - 1) / LP_MEMPLAN_ALIGN * LP_MEMPLAN_ALIGN;
            it->offset = it->bytes ? lp_memplan_online_take(&c->work, size) : 0;
            live += size;
        }
        alive += c->fstart[r + 1] - c->fstart[r];
        if (live > best) best = live;
        if (alive > max_alive) max_alive = alive;
        for (int k = c->lstart[r]; k < c->lstart[r + 1]; k++) {
            const lp_memplan_item *it = &c->items[c->lidx[k]];
            uint64_t size = (it->bytes + LP_MEMPLAN_ALIGN - 1) / LP_MEMPLAN_ALIGN * LP_MEMPLAN_ALIGN;
            if (it->bytes && !lp_memplan_online_give(&c->work, it->offset, size)) return false;
            live -= size;
        }
        alive -= c->lstart[r + 1] - c->lstart[r];
    }
    *best_out = best;
    *max_alive_out = max_alive;
    return true;
}

/* Grows the cursor's range to end at layer `last`: 1 done, 0 a new received
 * value (plan from scratch), -1 out of memory. */
static int cursor_extend(struct lp_range_cursor *c, const lp_layer_ir *L, int last) {
    int b = L->layers[last].last_node, first_new = c->n;
    if (!cursor_add_items(c, L, b)) return 0;
    cursor_add_layers(c, L, last);
    int steps = b - c->a + 1, s_next = steps, n_active = 0;
    uint64_t sent_bytes = 0, sent_padding = 0;
    for (int k = 0; k < c->n_open; k++) c->active[n_active++] = c->open[k];
    for (int i = first_new; i < c->n; i++) c->active[n_active++] = i;
    for (int k = 0; k < n_active; k++) {
        int i = c->active[k];
        bool open, sent;
        c->items[i].last = item_last(c, L, i, b, &open, &sent);
        assert(c->items[i].last >= c->s0 && c->items[i].last >= c->items[i].first);
        if (open && c->items[i].last < s_next) s_next = c->items[i].last;
        if (sent) {
            sent_bytes += c->items[i].bytes;
            sent_padding += lp_align_pad(c->items[i].bytes);
        }
    }
    assert(s_next >= c->s0);
    cursor_bucket(c, n_active, steps);
    uint64_t live_peak;
    int max_alive;
    if (!cursor_replay(c, steps, s_next, &live_peak, &max_alive)) return -1;
    c->n_open = 0;
    for (int k = 0; k < n_active; k++)
        if (c->items[c->active[k]].last >= s_next) c->open[c->n_open++] = c->active[k];
    c->s0 = s_next;
    c->b = b;
    c->last = last;

    lp_footprint *fp = &c->fp;
    *fp = (lp_footprint){.weight_bytes = c->weight_bytes, .buffer_bytes = c->buffer_bytes,
                         .received_bytes = c->received_bytes, .sent_bytes = sent_bytes,
                         .padding_bytes = c->padding_bytes + sent_padding,
                         .live_bytes = live_peak, .activation_bytes = c->work.top};
    if (c->n >= 2 && fp->activation_bytes != live_peak &&
        (max_alive < 3 || c->n <= LP_MEMPLAN_BY_SIZE_MAX)) {
        /* the other layouts may do better; they write offsets, so on a copy */
        lp_memplan_item *scratch = L->index->items;
        memcpy(scratch, c->items, (size_t)c->n * sizeof *scratch);
        if (lp_memplan_improve(scratch, c->n, LP_MEMPLAN_ALIGN, live_peak, max_alive,
                               &fp->activation_bytes) != LP_OK)
            return -1;
    }
    fp->boundary_bytes = fp->received_bytes + fp->sent_bytes;
    fp->total = fp->weight_bytes + fp->activation_bytes + fp->buffer_bytes + fp->boundary_bytes +
                fp->padding_bytes;
    return 1;
}

void lp_analysis_range_footprint(const lp_layer_ir *L, int first, int last, lp_footprint *fp) {
    assert(L && first >= 0 && first <= last && last < L->n_layers);
    struct lp_layer_index *ix = L->index;
    if (!ix->cursor) ix->cursor = cursor_new(L);
    struct lp_range_cursor *c = ix->cursor;
    if (!c) {
        lp_analysis_range_footprint_exact(L, first, last, fp);
        return;
    }
    if (c->first == first && c->last == last) {
        *fp = c->fp;
        return;
    }
    if (c->first != first || c->last > last) cursor_reset(c, L, first);
    int r = cursor_extend(c, L, last);
    if (r == 0) {
        cursor_reset(c, L, first);
        r = cursor_extend(c, L, last);
    }
    if (r < 0) {
        c->first = -1; /* state half updated: start over next time */
        lp_analysis_range_footprint_exact(L, first, last, fp);
        return;
    }
    *fp = c->fp;
}
