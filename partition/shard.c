/* Sharding one layer too large for a card: which weights split by output
 * dim, what each shard card holds, and how many shards make it fit. */
#include "lp_ops.h"
#include "lp_partition.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lp_shard_range(int64_t dim, int n, int k, int64_t *begin, int64_t *end) {
    assert(n > 0 && k >= 0 && k < n && dim >= 0);
    *begin = dim * k / n;
    *end = dim * (k + 1) / n;
}

/* ceil(bytes * cols / dim) without overflow for any dim below 2^32; the
 * bytes of `cols` of `dim` columns of a tensor of `bytes`. */
static uint64_t columns_bytes(uint64_t bytes, int64_t dim, int64_t cols) {
    if (dim <= 0) return bytes;
    uint64_t d = (uint64_t)dim, c = (uint64_t)cols, q = bytes / d, r = bytes % d;
    if (d > UINT32_MAX) return (uint64_t)ceill((long double)bytes * (long double)c / (long double)d);
    return q * c + (r * c + d - 1) / d;
}

void lp_transfer_range(const lp_transfer *t, int k, int64_t *begin, int64_t *end) {
    lp_shard_range(t->dim, t->n_cards, k, begin, end);
}

uint64_t lp_transfer_slice_bytes(const lp_transfer *t, int k) {
    int64_t b, e;
    lp_transfer_range(t, k, &b, &e);
    return columns_bytes(t->bytes, t->dim, e - b);
}

/* The output-dim axes of node n's weight input, or false if it has none
 * this pass can split. */
static bool split_axes(const lp_graph *g, const lp_node *n, int *w_axis, int *o_axis) {
    if (n->n_inputs < 2 || n->inputs[1] < 0 || n->n_outputs < 1 || n->outputs[0] < 0) return false;
    const lp_value *w = &g->values[n->inputs[1]], *o = &g->values[n->outputs[0]];
    if (w->kind != LP_VALUE_WEIGHT || o->shape.rank < 1) return false;
    lp_op_shard how = lp_op_shard_of(lp_node_op(n)); /* the op table's shard column */
    if (how == LP_SHARD_MATMUL && w->shape.rank == 2) {
        *w_axis = 1;
        *o_axis = o->shape.rank - 1;
    } else if (how == LP_SHARD_GEMM && w->shape.rank == 2 && o->shape.rank == 2) {
        *w_axis = lp_node_attr_int(n, "transB", 0) ? 0 : 1;
        *o_axis = 1;
    } else if (how == LP_SHARD_CONV && w->shape.rank >= 3 && o->shape.rank >= 2 &&
               lp_node_attr_int(n, "group", 1) == 1) {
        *w_axis = 0;
        *o_axis = 1;
    } else {
        return false;
    }
    return w->shape.dims[*w_axis].size > 1 && o->shape.dims[*o_axis].size == w->shape.dims[*w_axis].size;
}

/* The layer's candidates first, then one pass over the graph counting how
 * often each is read: O(nodes + values), not O(layer nodes x nodes). */
lp_status lp_shard_layer(const lp_layer_ir *L, int layer, int n_shards, lp_arena *a, lp_shard *out,
                         lp_diag *d) {
    const lp_graph *g = L->g;
    const lp_layer *l = &L->layers[layer];
    *out = (lp_shard){.layer = layer, .n_shards = n_shards};
    out->weights = lp_arena_array(a, (size_t)(l->last_node - l->first_node + 1), sizeof(lp_shard_weight));
    if (!out->weights) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int i = l->first_node; i <= l->last_node; i++) {
        const lp_node *n = &g->nodes[i];
        int wa, oa;
        if (!split_axes(g, n, &wa, &oa)) continue;
        out->weights[out->n_weights++] = (lp_shard_weight){
            n->inputs[1], i, n->outputs[0], wa, oa, g->values[n->inputs[1]].shape.dims[wa].size};
    }
    if (out->n_weights == 0) return LP_OK;
    int *reads = calloc((size_t)g->n_values + 1, sizeof(int));
    if (!reads) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int k = 0; k < out->n_weights; k++) reads[out->weights[k].weight] = 1; /* candidate */
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            int32_t v = g->nodes[i].inputs[k];
            if (v >= 0 && reads[v] > 0 && reads[v] < 3) reads[v]++;
        }
    int kept = 0; /* read by its node only: 1 + one read */
    for (int k = 0; k < out->n_weights; k++)
        if (reads[out->weights[k].weight] == 2) out->weights[kept++] = out->weights[k];
    out->n_weights = kept;
    free(reads);
    return LP_OK;
}

static uint64_t value_bytes(const lp_footprint_source *src, int32_t v) {
    uint64_t b = 0;
    return src->value_bytes && src->value_bytes(src->ctx, v, &b) ? b : 0;
}

/* Bytes of columns [begin, end) of a tensor of `bytes` over `dim` columns. */
static uint64_t slice_bytes(uint64_t bytes, int64_t dim, int64_t begin, int64_t end) {
    return columns_bytes(bytes, dim, end - begin);
}

void lp_shard_footprint(const lp_shard *s, int k, const lp_footprint_source *src, lp_footprint *fp) {
    src->fn(src->ctx, s->layer, s->layer, fp);
    for (int i = 0; i < s->n_weights; i++) {
        const lp_shard_weight *w = &s->weights[i];
        int64_t b, e;
        lp_shard_range(w->dim, s->n_shards, k, &b, &e);
        uint64_t whole = value_bytes(src, w->weight), part = slice_bytes(whole, w->dim, b, e);
        fp->weight_bytes -= whole - part;
        fp->padding_bytes = fp->padding_bytes - lp_align_pad(whole) + lp_align_pad(part);
        fp->total = fp->total - (whole - part) - lp_align_pad(whole) + lp_align_pad(part);
        uint64_t gathered = value_bytes(src, w->output); /* the all-gather's receive buffer */
        fp->boundary_bytes += gathered;
        fp->padding_bytes += lp_align_pad(gathered);
        fp->total += gathered + lp_align_pad(gathered);
    }
}

/* Largest card footprint of layer sharded n ways: every slice at its widest,
 * ceil(dim / n) columns, so an upper bound of each card's exact footprint
 * that only shrinks as n grows. */
static uint64_t widest_card(const lp_shard *s, const lp_footprint *whole, const lp_footprint_source *src,
                            int n) {
    uint64_t total = whole->total;
    for (int i = 0; i < s->n_weights; i++) {
        const lp_shard_weight *w = &s->weights[i];
        uint64_t bytes = value_bytes(src, w->weight);
        int64_t cols = (w->dim + n - 1) / n;
        uint64_t part = slice_bytes(bytes, w->dim, 0, cols);
        total = total - (bytes - part) - lp_align_pad(bytes) + lp_align_pad(part);
        uint64_t gathered = value_bytes(src, w->output); /* the same on every n */
        total += gathered + lp_align_pad(gathered);
    }
    return total;
}

/* Binary search for the fewest shards n (2 .. smallest split dim) whose
 * widest card fits; the widest card is monotone in n. */
int lp_shard_count(const lp_layer_ir *L, const lp_footprint_source *src, int layer, uint64_t cap) {
    lp_arena *a = lp_arena_new();
    lp_diag quiet = lp_diag_make(NULL);
    quiet.sink = NULL;
    lp_shard s;
    int found = 0;
    if (a && lp_shard_layer(L, layer, 2, a, &s, &quiet) == LP_OK && s.n_weights > 0) {
        lp_footprint whole;
        src->fn(src->ctx, layer, layer, &whole);
        int64_t max_n = s.weights[0].dim;
        for (int i = 1; i < s.n_weights; i++)
            if (s.weights[i].dim < max_n) max_n = s.weights[i].dim;
        if (max_n > 1 << 20) max_n = 1 << 20;
        int lo = 2, hi = (int)max_n;
        if (hi >= 2 && widest_card(&s, &whole, src, hi) <= cap) {
            while (lo < hi) {
                int mid = lo + (hi - lo) / 2;
                if (widest_card(&s, &whole, src, mid) <= cap)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            found = lo;
        }
    }
    lp_arena_free(a);
    return found;
}
