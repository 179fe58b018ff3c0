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
 * An unknown shape counts as 0. */
#include "layers_internal.h"

#include <assert.h>
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

static bool in_list(const char *op, const char *const *list) {
    for (; *list; list++)
        if (strcmp(op, *list) == 0) return true;
    return false;
}

static const char *const zero_ops[] = {
    "Reshape", "Transpose", "Gather", "GatherElements", "GatherND", "Concat", "Slice", "Shape",
    "Size", "Cast", "CastLike", "Expand", "Split", "Squeeze", "Unsqueeze", "Flatten", "Identity",
    "Constant", "ConstantOfShape", "Range", "Tile", "Pad", "ScatterND", "ScatterElements",
    "DepthToSpace", "SpaceToDepth", "Dropout", "EyeLike", "NonZero", "TopK", NULL};

static const char *const norm_ops[] = {
    "Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization", "BatchNormalization",
    "InstanceNormalization", "GroupNormalization", "SimplifiedLayerNormalization",
    "SkipLayerNormalization", "LpNormalization", "MeanVarianceNormalization", NULL};

static uint64_t kernel_elems(const lp_graph *g, const lp_node *n, int32_t w) {
    const lp_attr *ks = lp_node_attr(n, "kernel_shape");
    uint64_t k = 1;
    if (ks && ks->type == LP_ATTR_INTS) {
        for (int i = 0; i < ks->n; i++) k *= (uint64_t)(ks->ints[i] > 0 ? ks->ints[i] : 1);
        return k;
    }
    const lp_shape *s = w >= 0 ? &g->values[w].shape : NULL;
    if (!s || s->rank < 2) return 0;
    for (int i = 2; i < s->rank; i++) k *= (uint64_t)(s->dims[i].size > 0 ? s->dims[i].size : 0);
    return k;
}

uint64_t lp_analysis_node_flops(const lp_graph *g, const lp_node *n) {
    const char *op = n->op_type;
    int32_t x = n->n_inputs > 0 ? n->inputs[0] : -1;
    int32_t w = n->n_inputs > 1 ? n->inputs[1] : -1;
    int32_t y = n->n_outputs > 0 ? n->outputs[0] : -1;
    if (n->domain[0] && strcmp(n->domain, "ai.onnx") != 0 && strcmp(n->domain, "com.microsoft") != 0)
        return numel_of(g, y);
    if (strcmp(op, "MatMul") == 0 || strcmp(op, "MatMulInteger") == 0) {
        int64_t k = dim_of(g, x, -1);
        return k > 0 ? 2 * numel_of(g, y) * (uint64_t)k : 0;
    }
    if (strcmp(op, "Gemm") == 0) {
        int64_t k = dim_of(g, x, lp_node_attr_int(n, "transA", 0) ? 0 : 1);
        uint64_t mn = numel_of(g, y);
        if (k <= 0) return 0;
        return 2 * mn * (uint64_t)k + (n->n_inputs > 2 && n->inputs[2] >= 0 ? mn : 0);
    }
    if (strcmp(op, "Conv") == 0) {
        int64_t cin_g = dim_of(g, w, 1); /* W is [C_out, C_in/group, k...] */
        return cin_g > 0 ? 2 * numel_of(g, y) * (uint64_t)cin_g * kernel_elems(g, n, w) : 0;
    }
    if (strcmp(op, "ConvTranspose") == 0) {
        int64_t cout_g = dim_of(g, w, 1); /* W is [C_in, C_out/group, k...] */
        return cout_g > 0 ? 2 * numel_of(g, x) * (uint64_t)cout_g * kernel_elems(g, n, w) : 0;
    }
    if (in_list(op, norm_ops)) return 5 * numel_of(g, y);
    if (strcmp(op, "MaxPool") == 0 || strcmp(op, "AveragePool") == 0 || strcmp(op, "LpPool") == 0)
        return numel_of(g, y) * kernel_elems(g, n, -1);
    if (strncmp(op, "Reduce", 6) == 0 || strncmp(op, "Global", 6) == 0 || strncmp(op, "Arg", 3) == 0)
        return numel_of(g, x);
    if (in_list(op, zero_ops)) return 0;
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
        }
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = nd->outputs[k];
            if (v < 0) continue;
            bool sent = g->values[v].is_graph_output || ix->last_use[v] > b;
            int last = sent ? b : ix->last_use[v] > t ? ix->last_use[v] : t;
            assert(n < ix->items_cap);
            ix->items[n++] = (lp_memplan_item){.bytes = ix->vbytes[v], .first = t - a, .last = last - a};
            if (sent) fp->sent_bytes += ix->vbytes[v];
        }
    }
    return n;
}

void lp_analysis_range_footprint(const lp_layer_ir *L, int first, int last, lp_footprint *fp) {
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
            if (ix->vbytes[v] != LP_BYTES_UNKNOWN) fp->weight_bytes += ix->vbytes[v];
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
    fp->total = fp->weight_bytes + fp->activation_bytes + fp->buffer_bytes + fp->boundary_bytes;
}
