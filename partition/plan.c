/* The partition stage: layer IR -> groups (through algorithms.c) -> plan
 * with footprints, the values that cross each cut, and stage times. */
#include "lp_partition.h"
#include "partition_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *lp_algo_name(lp_algo a) {
    switch (a) {
    case LP_ALGO_GREEDY: return "greedy";
    case LP_ALGO_DP: return "dp";
    case LP_ALGO_THROUGHPUT: return "throughput";
    }
    return "?";
}

bool lp_algo_from_name(const char *s, lp_algo *out) {
    for (int a = LP_ALGO_GREEDY; a <= LP_ALGO_THROUGHPUT; a++)
        if (strcmp(s, lp_algo_name((lp_algo)a)) == 0) {
            *out = (lp_algo)a;
            return true;
        }
    return false;
}

lp_partition_options lp_partition_defaults(void) {
    lp_partition_options o = {.algo = LP_ALGO_GREEDY};
    lp_target_builtin("h100", &o.target);
    return o;
}

static void analysis_footprint(void *ctx, int first, int last, lp_footprint *fp) {
    lp_analysis_range_footprint(ctx, first, last, fp);
}

static bool analysis_value_bytes(void *ctx, int32_t v, uint64_t *bytes) {
    return lp_analysis_value_bytes(ctx, v, bytes);
}

lp_footprint_source lp_partition_source_analysis(const lp_layer_ir *L) {
    lp_footprint_source s = {analysis_footprint, analysis_value_bytes, (void *)L};
    return s;
}

/* ---- value bookkeeping shared by the plan builder and the validator ---- */

static bool is_data(const lp_graph *g, int32_t v) {
    return v >= 0 && g->values[v].kind != LP_VALUE_WEIGHT && g->values[v].kind != LP_VALUE_CONSTANT;
}

/* Layer that produces v, or -1 for graph inputs, weights and constants. */
static int producer_layer(const lp_layer_ir *L, int32_t v) {
    int node = L->g->values[v].producer;
    return node >= 0 && is_data(L->g, v) ? L->layer_of_node[node] : -1;
}

/* last_use[v]: the last layer reading v (-1 if none); n_layers for graph
 * outputs, which leave the last card for the host. malloc'ed. */
static int *last_uses(const lp_layer_ir *L) {
    int *last = malloc(sizeof(int) * (size_t)(L->g->n_values ? L->g->n_values : 1));
    if (!last) return NULL;
    for (int v = 0; v < L->g->n_values; v++) last[v] = -1;
    for (int i = 0; i < L->n_layers; i++)
        for (int k = 0; k < L->layers[i].n_inputs; k++) {
            int32_t v = L->layers[i].inputs[k];
            if (v >= 0 && last[v] < i) last[v] = i;
        }
    return last;
}

static uint64_t value_bytes(const lp_footprint_source *src, int32_t v) {
    uint64_t b = 0;
    return src->value_bytes && src->value_bytes(src->ctx, v, &b) ? b : 0;
}

/* ---- costs the algorithms see -------------------------------------------- */

/* Footprint total, infinite across a forced cut: still monotone. A layer
 * to be sharded sits between forced cuts and costs nothing here: its
 * cards are added when the plan is built. With tier smem (one capacity, a
 * target with an SM count) a group of two or more layers must also fit the
 * resident kernel's shared memory a block: its need counts as need x C /
 * budget, so it fits C exactly when it fits a block (still monotone: a
 * group's need grows with it, and one layer is never below its own total). */
typedef struct cost_ctx {
    const lp_footprint_source *src;
    const int *cuts_before;  /* [n+1] prefix count of forced cuts */
    const int *shard_counts; /* [n] or NULL */
    const uint64_t *res_prefix; /* [n+1] prefix sums of each layer's resident weight bytes, or NULL */
    uint64_t res_work;          /* the largest work region of any layer */
    double res_scale;           /* C / a block's budget */
} cost_ctx;

static uint64_t range_total(void *ctx, int first, int last) {
    const cost_ctx *c = ctx;
    if (c->cuts_before && c->cuts_before[last] - c->cuts_before[first] > 0) return UINT64_MAX;
    if (first == last && c->shard_counts && c->shard_counts[first] > 1) return 0;
    lp_footprint fp;
    c->src->fn(c->src->ctx, first, last, &fp);
    if (c->res_prefix && last > first) {
        double need = (double)(c->res_prefix[last + 1] - c->res_prefix[first] + c->res_work) * c->res_scale;
        uint64_t as_total = need >= 1.8e19 ? UINT64_MAX : (uint64_t)need;
        if (as_total > fp.total) return as_total;
    }
    return fp.total;
}

/* The resident constraint's data for cc (tier smem, no --capacity list, a
 * target with an SM count); *prefix is NULL when it does not apply. */
static bool resident_costs(const lp_layer_ir *L, const lp_target *t, int n_caps, cost_ctx *cc,
                           uint64_t **prefix) {
    *prefix = NULL;
    uint64_t budget = lp_resident_budget(t);
    if (t->tier != LP_TIER_SMEM || n_caps || !budget) return true;
    int n = L->n_layers;
    uint64_t *pre = calloc((size_t)n + 1, sizeof *pre);
    if (!pre) return false;
    uint64_t work = 0;
    for (int l = 0; l < n; l++) {
        int64_t w;
        pre[l + 1] = pre[l] + (uint64_t)lp_resident_layer_bytes(L, l, t->sms, &w);
        if ((uint64_t)w > work) work = (uint64_t)w;
    }
    cc->res_prefix = pre;
    cc->res_work = work;
    cc->res_scale = (double)t->capacity / (double)budget;
    *prefix = pre;
    return true;
}


void lp_stage_data_free(lp_stage_data *s) {
    free(s->flops);
    free(s->bytes);
    free(s->kernels);
    free(s->cut_bytes);
}

/* cut_bytes[a]: values made before layer a and read at or after it. */
bool lp_stage_data_init(lp_stage_data *s, const lp_layer_ir *L, const lp_footprint_source *src,
                            lp_range_cost footprint, const lp_target *t) {
    int n = L->n_layers;
    *s = (lp_stage_data){0};
    s->flops = calloc((size_t)n + 1, sizeof(uint64_t));
    s->bytes = calloc((size_t)n + 1, sizeof(uint64_t));
    s->kernels = calloc((size_t)n + 1, sizeof(uint64_t));
    s->cut_bytes = calloc((size_t)n + 2, sizeof(uint64_t));
    int *last = last_uses(L);
    if (!s->flops || !s->bytes || !s->kernels || !s->cut_bytes || !last) {
        free(last);
        lp_stage_data_free(s);
        return false;
    }
    int64_t *diff = (int64_t *)s->cut_bytes; /* reuse: difference array, then prefix sums */
    for (int i = 0; i < n; i++) {
        const lp_layer *l = &L->layers[i];
        s->flops[i] = l->flops;
        s->bytes[i] = l->bytes_read + l->bytes_written;
        s->kernels[i] = (uint64_t)(l->last_node - l->first_node + 1);
        for (int k = 0; k < l->n_outputs; k++) {
            int32_t v = l->outputs[k];
            if (v < 0 || last[v] <= i) continue;
            int64_t b = (int64_t)value_bytes(src, v);
            diff[i + 1] += b;
            diff[last[v] + 1] -= b;
        }
    }
    for (int a = 1; a <= n; a++) diff[a] += diff[a - 1];
    free(last);
    s->m = (lp_stage_model){n, s->flops, s->bytes, s->kernels, s->cut_bytes, footprint, t};
    return true;
}

/* ---- oversize layers ------------------------------------------------------- */

/* A layer that no card can hold: what it is made of and what would fit. */
static lp_status report_oversize(const lp_layer_ir *L, const lp_footprint_source *src, int layer,
                                 uint64_t cap, const lp_partition_options *opt, lp_diag *d) {
    lp_footprint fp;
    src->fn(src->ctx, layer, layer, &fp);
    const lp_layer *l = &L->layers[layer];
    char b[7][32];
    int bits = lp_dtype_bits(L->deploy_dtype ? L->deploy_dtype : LP_DT_FLOAT16);
    if (bits <= 0) bits = 16;
    uint64_t int8 = fp.weight_bytes / (uint64_t)bits * 8;
    uint64_t rest = fp.total - fp.weight_bytes;
    int shards = lp_shard_count(L, src, layer, cap);
    const lp_node *n = &L->g->nodes[l->first_node];
    lp_node_error(d, LP_ERR_INFEASIBLE, n,
                  "layer %d '%s' needs %s on one card but a card holds %s (%.1fx too large): "
                  "weights %s + activations %s + buffers %s + boundary %s + alignment %s",
                  layer, l->name, lp_format_bytes(fp.total, b[0]), lp_format_bytes(cap, b[1]),
                  (double)fp.total / (double)cap, lp_format_bytes(fp.weight_bytes, b[2]),
                  lp_format_bytes(fp.activation_bytes, b[3]), lp_format_bytes(fp.buffer_bytes, b[4]),
                  lp_format_bytes(fp.boundary_bytes, b[5]), lp_format_bytes(fp.padding_bytes, b[6]));
    lp_note(d, "at int8 its weights alone would need %s; %s", lp_format_bytes(int8, b[0]),
            int8 + rest <= cap ? "that would fit" : "still too large");
    if (fp.weight_bytes >= cap)
        lp_note(d, "its weights alone exceed the capacity, so no batch size fits; "
                "activations and buffers are %s at this batch",
                lp_format_bytes(rest, b[0]));
    else if (rest > 0)
        lp_note(d, "weights fit; activations, buffers and boundary (%s) must shrink by %.1fx "
                "(a batch or sequence about that much smaller)", lp_format_bytes(rest, b[0]),
                (double)rest / (double)(cap - fp.weight_bytes));
    if (shards && opt->no_split)
        lp_note(d, "split by output columns it would fit %d cards of %s (--no-split forbids it)",
                shards, lp_format_bytes(cap, b[0]));
    else if (shards)
        lp_note(d, "split by output columns it would fit %d cards of %s, but sharding needs one "
                "capacity for every card", shards, lp_format_bytes(cap, b[0]));
    else
        lp_note(d, "splitting its MatMul/Gemm/Conv weights by output columns does not help: what "
                "cannot be split (activations, buffers, boundary, other weights) does not fit");
    if (opt->algo != LP_ALGO_THROUGHPUT)
        lp_note(d, "--algo throughput plans for device memory (%s per card) instead of on-chip "
                "residency", lp_format_bytes(opt->target.dram_bytes, b[0]));
    return LP_ERR_INFEASIBLE;
}

/* ---- the stage ------------------------------------------------------------- */

/* Layers no card holds get a shard count and forced cuts on both sides;
 * with --no-split, unequal capacities or no split that fits, the first of
 * them is reported. */
static lp_status plan_shards(const lp_layer_ir *L, const lp_footprint_source *src,
                             const lp_partition_options *opt, const lp_cards *cards,
                             int *cut_flags, int *shard_counts, int *extra_cards, lp_diag *d) {
    uint64_t biggest = 0;
    bool equal = true;
    for (int k = 0; k < cards->n_caps; k++) {
        if (cards->caps[k] > biggest) biggest = cards->caps[k];
        equal = equal && cards->caps[k] == cards->caps[0];
    }
    *extra_cards = 0;
    for (int i = 0; i < L->n_layers; i++) {
        lp_footprint fp;
        src->fn(src->ctx, i, i, &fp);
        if (fp.total <= biggest) continue;
        int s = opt->no_split || !equal ? 0 : lp_shard_count(L, src, i, biggest);
        if (s < 2) return report_oversize(L, src, i, biggest, opt, d);
        if (s > LP_MAX_SHARDS) {
            char b[2][32];
            lp_footprint fp1;
            src->fn(src->ctx, i, i, &fp1);
            return lp_node_error(d, LP_ERR_INFEASIBLE, &L->g->nodes[L->layers[i].first_node],
                                 "layer %d '%s' (%s) would be sharded over %d cards of %s, more than the "
                                 "%d cards lpcc splits one layer over", i, L->layers[i].name,
                                 lp_format_bytes(fp1.total, b[0]), s, lp_format_bytes(biggest, b[1]),
                                 LP_MAX_SHARDS);
        }
        shard_counts[i] = s;
        *extra_cards += s - 1;
        if (i > 0) cut_flags[i] = 1;
        if (i + 1 < L->n_layers) cut_flags[i + 1] = 1;
    }
    return LP_OK;
}

static lp_status run_algorithm(const lp_layer_ir *L, const lp_footprint_source *src,
                               const lp_partition_options *opt, const lp_cards *cards,
                               lp_range_cost *cost, int *ends, int *n_groups, lp_diag *d) {
    int n = L->n_layers, stuck = -1, groups = 0;
    bool equal = true;
    for (int i = 1; i < cards->n_caps; i++) equal = equal && cards->caps[i] == cards->caps[0];
    char b[2][32];
    if (opt->algo == LP_ALGO_THROUGHPUT) {
        lp_stage_data s;
        if (!lp_stage_data_init(&s, L, src, *cost, &opt->target))
            return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        double slowest = 0;
        groups = lp_partition_throughput(&s.m, cards, opt->cards, ends, &slowest);
        lp_stage_data_free(&s);
        if (groups < 0) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        if (groups == 0) {
            for (int i = 0; i < n; i++)
                if (cost->fn(cost->ctx, i, i) > opt->target.dram_bytes)
                    return report_oversize(L, src, i, opt->target.dram_bytes, opt, d);
            return lp_error(d, LP_ERR_INFEASIBLE, "no split into %d cards fits device memory (%s)",
                            opt->cards, lp_format_bytes(opt->target.dram_bytes, b[0]));
        }
    } else {
        groups = equal ? lp_partition_greedy(cost, cards, ends, &stuck)
                       : lp_partition_fewest(cost, cards, ends, &stuck);
        if (groups > 0 && opt->algo == LP_ALGO_DP) {
            int k = cards->max_cards != 0 ? lp_cards_max(cards) : groups;
            groups = lp_partition_minmax(cost, cards, k, ends, NULL);
        }
    }
    if (groups == 0 && opt->algo != LP_ALGO_THROUGHPUT) {
        /* one layer too big for every card, or too few cards */
        for (int i = 0; i < n; i++) {
            uint64_t c = range_total(cost->ctx, i, i), biggest = 0;
            for (int k = 0; k < cards->n_caps; k++)
                if (cards->caps[k] > biggest) biggest = cards->caps[k];
            if (c > biggest) return report_oversize(L, src, i, biggest, opt, d);
        }
        lp_cards unlimited = *cards;
        unlimited.max_cards = 0;
        int *tmp = malloc(sizeof(int) * (size_t)n);
        int need = tmp ? (equal ? lp_partition_greedy(cost, &unlimited, tmp, NULL)
                                : lp_partition_fewest(cost, &unlimited, tmp, NULL))
                       : 0;
        free(tmp);
        if (stuck >= 0 && need == 0)
            return lp_error(d, LP_ERR_INFEASIBLE,
                            "layer %d '%s' fits no card in the order given (capacities %s ...)",
                            stuck, L->layers[stuck].name, lp_format_bytes(cards->caps[0], b[0]));
        if (cards->max_cards < 0 && need > 0 && need <= lp_cards_max(cards))
            return lp_error(d, LP_ERR_INFEASIBLE,
                            "--cards %d: the layers fit %d cards, but no split into exactly %d "
                            "fits the capacities in card order", opt->cards, need, lp_cards_max(cards));
        uint64_t res_budget = lp_resident_budget(&opt->target);
        char why[160] = "";
        if (opt->target.tier == LP_TIER_SMEM && !opt->n_caps && res_budget)
            snprintf(why, sizeof why, " (with --tier smem a card of two or more layers must also hold their Gemm "
                     "weights in %s of shared memory a block, as the resident kernel lays them out)",
                     lp_format_bytes(res_budget, b[0]));
        return lp_error(d, LP_ERR_INFEASIBLE,
                        "the model needs %d cards of %s but only %d were given%s", need,
                        lp_format_bytes(lp_cards_capacity(cards, cards->n_caps - 1), b[1]),
                        lp_cards_max(cards), why);
    }
    *n_groups = groups;
    return LP_OK;
}

/* ---- pins ------------------------------------------------------------------ */

static int pin_order(const void *x, const void *y) {
    const lp_pin *a = x, *b = y;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return (a->card > b->card) - (a->card < b->card);
}

/* Sorted by (layer, card), the pins are monotone exactly when no adjacent
 * pair steps back a card or puts one layer on two cards. */
bool lp_pins_sort_check(lp_pin *pins, int n_pins, int *first, int *second) {
    if (n_pins > 1) qsort(pins, (size_t)n_pins, sizeof *pins, pin_order);
    for (int i = 1; i < n_pins; i++)
        if (pins[i].card < pins[i - 1].card ||
            (pins[i].layer == pins[i - 1].layer && pins[i].card != pins[i - 1].card)) {
            *first = i - 1;
            *second = i;
            return false;
        }
    return true;
}

/* What the pinned searches work on: the pins (sorted, monotone) with the
 * group each must land in. Group = card less the extra cards of the
 * sharded layers before it, as those are one group but several cards. */
typedef struct pin_set {
    int n_pins;
    lp_pin *pins;
    int *group;    /* [n_pins] */
    int *pinned;   /* [n_layers]: group of each layer, -1 free */
} pin_set;

static void pin_set_free(pin_set *ps) {
    free(ps->pins);
    free(ps->group);
    free(ps->pinned);
}

/* pinned[] holding only the first m pins. */
static void pin_set_prefix(pin_set *ps, int n, int m) {
    for (int i = 0; i < n; i++) ps->pinned[i] = -1;
    for (int i = 0; i < m; i++) ps->pinned[ps->pins[i].layer] = ps->group[i];
}

static lp_status pin_set_init(pin_set *ps, const lp_layer_ir *L, const lp_partition_options *opt,
                              const int *shard_counts, lp_diag *d) {
    int n = L->n_layers, a = 0, b = 0;
    *ps = (pin_set){opt->n_pins, malloc(sizeof(lp_pin) * (size_t)opt->n_pins),
                    malloc(sizeof(int) * (size_t)opt->n_pins), malloc(sizeof(int) * (size_t)n)};
    if (!ps->pins || !ps->group || !ps->pinned) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    memcpy(ps->pins, opt->pins, sizeof(lp_pin) * (size_t)opt->n_pins);
    if (!lp_pins_sort_check(ps->pins, ps->n_pins, &a, &b)) {
        const lp_pin *p = &ps->pins[a], *q = &ps->pins[b];
        if (p->layer == q->layer)
            return lp_error(d, LP_ERR_USAGE, "--pin: layer %d '%s' is pinned to both card %d and card %d",
                            p->layer, L->layers[p->layer].name, p->card, q->card);
        return lp_error(d, LP_ERR_USAGE,
                        "--pin: layer %d '%s' on card %d and layer %d '%s' on card %d conflict: cards "
                        "hold contiguous layers in order, so a later layer cannot go to an earlier card",
                        p->layer, L->layers[p->layer].name, p->card, q->layer, L->layers[q->layer].name,
                        q->card);
    }
    int extra = 0; /* extra cards of sharded layers before the layer */
    for (int i = 0, l = 0; i < ps->n_pins; i++) {
        for (; l < ps->pins[i].layer; l++)
            if (shard_counts[l] > 1) extra += shard_counts[l] - 1;
        int layer = ps->pins[i].layer;
        if (shard_counts[layer] > 1)
            return lp_node_error(d, LP_ERR_INFEASIBLE, &L->g->nodes[L->layers[layer].first_node],
                                 "layer %d '%s' is pinned to card %d but no card holds it whole: it "
                                 "must be split over %d cards", layer, L->layers[layer].name,
                                 ps->pins[i].card, shard_counts[layer]);
        ps->group[i] = ps->pins[i].card - extra;
        if (ps->group[i] < 0)
            return lp_node_error(d, LP_ERR_INFEASIBLE, &L->g->nodes[L->layers[layer].first_node],
                                 "layer %d '%s' is pinned to card %d, which holds a shard of an earlier "
                                 "layer too large for one card", layer, L->layers[layer].name,
                                 ps->pins[i].card);
    }
    pin_set_prefix(ps, n, ps->n_pins);
    return LP_OK;
}

/* Group count of the best plan honouring ps->pinned (0 none, -1 out of
 * memory); with `feasible_only`, any plan that proves one exists. */
static int solve_pinned(const lp_partition_options *opt, const lp_cards *cards,
                        const lp_range_cost *cost, const lp_stage_model *m, const int *pinned,
                        bool feasible_only, int *ends) {
    if (opt->algo == LP_ALGO_THROUGHPUT)
        return lp_partition_throughput_pinned(m, cards, opt->cards, pinned, ends, NULL);
    int groups = lp_partition_fewest_pinned(cost, cards, pinned, ends);
    if (groups > 0 && opt->algo == LP_ALGO_DP && !feasible_only)
        groups = lp_partition_minmax_pinned(cost, cards, cards->max_cards != 0 ? lp_cards_max(cards) : groups,
                                            pinned, ends, NULL);
    return groups;
}

/* The plan exists without the pins but not with them: name the first pin
 * (in layer order) that no plan honours together with those before it,
 * found by bisection as adding pins only removes plans, and say why. */
static lp_status report_pins(const lp_layer_ir *L, const lp_partition_options *opt,
                             const lp_cards *cards, const lp_range_cost *cost,
                             const lp_stage_model *m, pin_set *ps, int extra, int *ends, lp_diag *d) {
    int n = L->n_layers, lo = 0, hi = ps->n_pins; /* lo pins fit, hi do not */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        pin_set_prefix(ps, n, mid);
        int g = solve_pinned(opt, cards, cost, m, ps->pinned, true, ends);
        if (g < 0) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        if (g > 0)
            lo = mid;
        else
            hi = mid;
    }
    pin_set_prefix(ps, n, hi);
    const lp_pin *pin = &ps->pins[hi - 1];
    int layer = pin->layer, group = ps->group[hi - 1];
    bool dram = opt->algo == LP_ALGO_THROUGHPUT;
    uint64_t cap = dram ? opt->target.dram_bytes : lp_cards_capacity(cards, group);
    char b[2][32], limit[64] = "";
    if (opt->cards > 0)
        snprintf(limit, sizeof limit, " (at most %d card%s)", opt->cards, opt->cards == 1 ? "" : "s");
    lp_node_error(d, LP_ERR_INFEASIBLE, &L->g->nodes[L->layers[layer].first_node],
                  "layer %d '%s' is pinned to card %d, but no plan with %s %s on card %d%s puts it "
                  "there%s", layer, L->layers[layer].name, pin->card, lp_format_bytes(cap, b[0]),
                  dram ? "of device memory" : "capacity", pin->card, limit,
                  hi > 1 ? " together with the pins before it" : "");
    int first = layer; /* the first layer pinned to the same card */
    for (int i = hi - 1; i >= 0 && ps->group[i] == group; i--) first = ps->pins[i].layer;
    uint64_t span = cost->fn(cost->ctx, first, layer);
    if (cards->max_cards != 0 && group >= lp_cards_max(cards))
        lp_note(d, "--cards %d allows cards 0..%d only", opt->cards, opt->cards - 1);
    else if (group > layer)
        lp_note(d, "cards 0..%d before it need a layer each, but only %d layer%s come%s before it",
                pin->card - 1, layer, layer == 1 ? "" : "s", layer == 1 ? "s" : "");
    else if (!dram && span == UINT64_MAX)
        lp_note(d, "layers %d..%d, pinned to the same card, lie across a forced cut (--cut-after or a "
                "sharded layer)", first, layer);
    else if (!dram && span > cap && first < layer)
        lp_note(d, "layers %d..%d, all pinned to card %d, need %s together", first, layer, pin->card,
                lp_format_bytes(span, b[1]));
    else if (!dram && span > cap)
        lp_note(d, "the layer alone needs %s", lp_format_bytes(span, b[1]));
    else if (!dram && layer > 0) {
        lp_range_cost before = {layer, cost->fn, cost->ctx};
        lp_cards any = *cards;
        any.max_cards = 0;
        int need = lp_partition_fewest_pinned(&before, &any, ps->pinned, ends);
        if (need > group)
            lp_note(d, "layers 0..%d before it need %d cards", layer - 1, need + extra);
        else
            lp_note(d, "the layers after it do not fit on the cards that remain");
    }
    return LP_ERR_INFEASIBLE;
}

/* The algorithm over the plans that honour the pins. When none does, the
 * unpinned run says whether the capacities alone are the problem. */
static lp_status run_pinned(const lp_layer_ir *L, const lp_footprint_source *src,
                            const lp_partition_options *opt, const lp_cards *cards,
                            lp_range_cost *cost, pin_set *ps, int extra, int *ends, int *n_groups,
                            lp_diag *d) {
    lp_stage_data s = {0};
    if (opt->algo == LP_ALGO_THROUGHPUT && !lp_stage_data_init(&s, L, src, *cost, &opt->target))
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    int groups = solve_pinned(opt, cards, cost, &s.m, ps->pinned, false, ends);
    lp_status st = LP_OK;
    if (groups < 0)
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    else if (groups > 0)
        *n_groups = groups;
    else {
        st = run_algorithm(L, src, opt, cards, cost, ends, n_groups, d);
        if (st == LP_OK) st = report_pins(L, opt, cards, cost, &s.m, ps, extra, ends, d);
    }
    lp_stage_data_free(&s);
    return st;
}

lp_status lp_partition_run(const lp_layer_ir *L, const lp_footprint_source *src,
                           const lp_partition_options *opt, lp_plan **out, lp_diag *d) {
    int n = L->n_layers;
    *out = NULL;
    if (n == 0) return lp_error(d, LP_ERR_UNSUPPORTED, "partition: the model has no layers");
    uint64_t one = opt->target.capacity;
    /* --cards N is exact: N cards or an error, never silently fewer */
    lp_cards cards = {opt->n_caps ? opt->n_caps : 1, opt->n_caps ? opt->caps : &one, opt->cards};
    if (opt->n_caps > 1 && !opt->cards) cards.max_cards = opt->n_caps;
    for (int i = 0; i < opt->n_pins; i++)
        if (opt->pins[i].layer < 0 || opt->pins[i].layer >= n || opt->pins[i].card < 0)
            return lp_error(d, LP_ERR_USAGE, "pin %d: layer or card out of range", i);
    /* forced cuts: after each listed layer */
    int *cuts_before = calloc((size_t)n + 1, sizeof(int));
    int *ends = malloc(sizeof(int) * (size_t)n);
    int *shard_counts = calloc((size_t)n, sizeof(int));
    if (!cuts_before || !ends || !shard_counts) {
        free(cuts_before);
        free(ends);
        free(shard_counts);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    lp_status st = LP_OK;
    for (int i = 0; i < opt->n_cuts && st == LP_OK; i++) {
        if (opt->cuts[i] < 0 || opt->cuts[i] >= n - 1)
            st = lp_error(d, LP_ERR_USAGE, "cut after layer %d: must be in 0..%d", opt->cuts[i], n - 2);
        else
            cuts_before[opt->cuts[i] + 1] = 1;
    }
    int extra = 0;
    if (st == LP_OK && opt->algo != LP_ALGO_THROUGHPUT)
        st = plan_shards(L, src, opt, &cards, cuts_before, shard_counts, &extra, d);
    if (st == LP_OK && extra && cards.max_cards > 0) {
        if (cards.max_cards - extra < 1)
            st = lp_error(d, LP_ERR_INFEASIBLE,
                          "the sharded layers alone need %d cards but only %d were given",
                          extra + 1, cards.max_cards);
        cards.max_cards -= extra;
    }
    if (opt->cards > 0) cards.max_cards = -cards.max_cards; /* exactly */
    if (st == LP_OK && lp_cards_max(&cards) > n && opt->cards > 0)
        st = extra ? lp_error(d, LP_ERR_INFEASIBLE,
                              "--cards %d: the model has %d layers and its sharded layers take %d "
                              "extra cards, so at most %d cards can each hold work", opt->cards, n,
                              extra, n + extra)
                   : lp_error(d, LP_ERR_INFEASIBLE,
                              "--cards %d: the model has only %d layers and every card holds at least "
                              "one, so at most %d cards can be used", opt->cards, n, n);
    for (int i = 1; i <= n; i++) cuts_before[i] += cuts_before[i - 1];
    cost_ctx cc = {src, cuts_before, extra ? shard_counts : NULL, NULL, 0, 0};
    uint64_t *res_prefix = NULL;
    if (st == LP_OK && !resident_costs(L, &opt->target, opt->n_caps, &cc, &res_prefix))
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_range_cost cost = {n, range_total, &cc};
    int groups = 0;
    lp_partition_options o = *opt;
    o.shard_counts = extra ? shard_counts : NULL;
    pin_set ps = {0};
    if (st == LP_OK && opt->n_pins) st = pin_set_init(&ps, L, opt, shard_counts, d);
    if (st == LP_OK && opt->n_pins)
        st = run_pinned(L, src, opt, &cards, &cost, &ps, extra, ends, &groups, d);
    else if (st == LP_OK)
        st = run_algorithm(L, src, opt, &cards, &cost, ends, &groups, d);
    pin_set_free(&ps);
    if (st == LP_OK) st = lp_plan_from_ends(L, src, &o, ends, groups, out, d);
    if (st == LP_OK && opt->cards > 0 && (*out)->n_cards != opt->cards) /* the searches guarantee it */
        st = lp_error(d, LP_ERR_INTERNAL, "--cards %d: the plan uses %d cards", opt->cards,
                      (*out)->n_cards);
    for (int i = 0; st == LP_OK && i < opt->n_pins; i++) {
        /* the last card starting at or before the layer (cards are in layer order) */
        int layer = opt->pins[i].layer, lo = 0, hi = (*out)->n_cards - 1;
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if ((*out)->cards[mid].first_layer <= layer)
                lo = mid;
            else
                hi = mid - 1;
        }
        int card = (*out)->cards[lo].first_layer <= layer && layer <= (*out)->cards[lo].last_layer ? lo : -1;
        if (card != opt->pins[i].card) /* the search guarantees it */
            st = lp_error(d, LP_ERR_INTERNAL, "layer %d '%s' is pinned to card %d but the plan puts it "
                          "on card %d", layer, L->layers[layer].name, opt->pins[i].card, card);
    }
    if (st != LP_OK && *out) {
        lp_plan_free(*out);
        *out = NULL;
    }
    free(cuts_before);
    free(ends);
    free(shard_counts);
    free(res_prefix);
    return st;
}

/* ---- building a plan from ends ------------------------------------------- */

void lp_plan_free(lp_plan *p) {
    if (p) lp_arena_free(p->arena);
}

/* Appends v to a card's list unless mark[v] already holds this list's tag
 * (tags are unique per card and list, so marks never need clearing). */
typedef struct value_list {
    int n;
    int32_t *items;
} value_list;

static void list_add(value_list *l, int *mark, int tag, int32_t v) {
    if (mark[v] == tag) return;
    mark[v] = tag;
    l->items[l->n++] = v;
}

static bool card_values(lp_plan *p, lp_plan_card *c, const lp_layer_ir *L, const int *last,
                        int *mark, int32_t *scratch) {
    const lp_graph *g = L->g;
    int tag = 3 * c->card;
    value_list w = {0, scratch};
    for (int i = c->first_layer; i <= c->last_layer; i++)
        for (int k = 0; k < L->layers[i].n_weights; k++)
            list_add(&w, mark, tag + 1, L->layers[i].weights[k]);
    c->weights = lp_arena_array(p->arena, (size_t)w.n + 1, sizeof(int32_t));
    if (!c->weights) return false;
    memcpy(c->weights, w.items, sizeof(int32_t) * (size_t)w.n);
    c->n_weights = w.n;

    value_list in = {0, scratch};
    for (int i = c->first_layer; i <= c->last_layer; i++)
        for (int k = 0; k < L->layers[i].n_inputs; k++) {
            int32_t v = L->layers[i].inputs[k];
            if (v >= 0 && is_data(g, v) && producer_layer(L, v) < c->first_layer)
                list_add(&in, mark, tag + 2, v);
        }
    c->inputs = lp_arena_array(p->arena, (size_t)in.n + 1, sizeof(int32_t));
    if (!c->inputs) return false;
    memcpy(c->inputs, in.items, sizeof(int32_t) * (size_t)in.n);
    c->n_inputs = in.n;

    value_list outv = {0, scratch};
    for (int i = c->first_layer; i <= c->last_layer; i++)
        for (int k = 0; k < L->layers[i].n_outputs; k++) {
            int32_t v = L->layers[i].outputs[k];
            if (v >= 0 && (g->values[v].is_graph_output || last[v] > c->last_layer))
                list_add(&outv, mark, tag + 3, v);
        }
    c->outputs = lp_arena_array(p->arena, (size_t)outv.n + 1, sizeof(int32_t));
    if (!c->outputs) return false;
    memcpy(c->outputs, outv.items, sizeof(int32_t) * (size_t)outv.n);
    c->n_outputs = outv.n;
    return true;
}

static lp_transfer *add_transfer(lp_plan *p, int *room, lp_transfer t) {
    if (p->n_transfers == *room) {
        int grown = *room ? 2 * *room : 16;
        lp_transfer *n = lp_arena_array(p->arena, (size_t)grown, sizeof(lp_transfer));
        if (!n) return NULL;
        if (p->n_transfers) memcpy(n, p->transfers, sizeof(lp_transfer) * (size_t)p->n_transfers);
        p->transfers = n;
        *room = grown;
    }
    p->transfers[p->n_transfers] = t;
    if (t.kind == LP_TRANSFER_CUT) {
        p->cards[t.to_card].bytes_in += t.bytes;
        p->cards[t.from_card].bytes_out += t.bytes;
    }
    return &p->transfers[p->n_transfers++];
}

/* One all-gather per sharded node output, among the layer's cards. Card k
 * receives the other cards' slices and sends its own to each of them:
 * bytes_in += (sum of slices) - slice k, bytes_out += (n - 1) slice k.
 * O(n_shards) per gathered value. */
static bool add_gathers(lp_plan *p, const lp_shard *s, const lp_footprint_source *src, int *room) {
    for (int i = 0; i < s->n_weights; i++) {
        const lp_shard_weight *w = &s->weights[i];
        lp_transfer t = {.value = w->output, .kind = LP_TRANSFER_ALL_GATHER,
                         .bytes = value_bytes(src, w->output), .first_card = s->first_card,
                         .n_cards = s->n_shards, .axis = w->output_axis, .dim = w->dim};
        const lp_transfer *added = add_transfer(p, room, t);
        if (!added) return false;
        uint64_t sum = 0;
        for (int k = 0; k < t.n_cards; k++) sum += lp_transfer_slice_bytes(added, k);
        for (int k = 0; k < t.n_cards; k++) {
            uint64_t own = lp_transfer_slice_bytes(added, k);
            p->cards[t.first_card + k].bytes_in += sum - own;
            p->cards[t.first_card + k].bytes_out += own * (uint64_t)(t.n_cards - 1);
        }
    }
    return true;
}

const lp_shard *lp_plan_shard_of_card(const lp_plan *p, int card) {
    int lo = 0, hi = p->n_shards - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (p->shards[mid].first_card <= card)
            lo = mid;
        else
            hi = mid - 1;
    }
    const lp_shard *s = p->n_shards ? &p->shards[lo] : NULL;
    return s && card >= s->first_card && card < s->first_card + s->n_shards ? s : NULL;
}

/* Cards from group ends: one per group, n_shards per sharded layer. */
static lp_status plan_cards(lp_plan *p, const lp_layer_ir *L, const lp_partition_options *opt,
                            const int *ends, int n_groups, lp_diag *d) {
    int n_cards = 0, n_sharded = 0;
    for (int g = 0, a = 0; g < n_groups; a = ends[g] + 1, g++) {
        int s = opt->shard_counts ? opt->shard_counts[a] : 1;
        if (s > 1 && a != ends[g])
            return lp_error(d, LP_ERR_USAGE, "layer %d '%s' is split over %d cards but shares its "
                            "group with layers up to %d", a, L->layers[a].name, s, ends[g]);
        n_cards += s > 1 ? s : 1;
        n_sharded += s > 1;
    }
    p->cards = lp_arena_array(p->arena, (size_t)n_cards, sizeof(lp_plan_card));
    p->shards = lp_arena_array(p->arena, (size_t)n_sharded + 1, sizeof(lp_shard));
    if (!p->cards || !p->shards) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    p->n_cards = n_cards;
    int c = 0;
    for (int g = 0, a = 0; g < n_groups; a = ends[g] + 1, g++) {
        int s = opt->shard_counts && opt->shard_counts[a] > 1 ? opt->shard_counts[a] : 1;
        if (s > 1) {
            lp_shard *sh = &p->shards[p->n_shards++];
            lp_status st = lp_shard_layer(L, a, s, p->arena, sh, d);
            if (st != LP_OK) return st;
            sh->first_card = c;
        }
        for (int k = 0; k < s; k++, c++) {
            lp_plan_card *pc = &p->cards[c];
            pc->card = c;
            pc->first_layer = a;
            pc->last_layer = ends[g];
            pc->shard = k;
            pc->n_shards = s;
            pc->capacity = lp_cards_capacity(&(lp_cards){p->n_caps, p->caps, 0}, c);
        }
    }
    return LP_OK;
}

static lp_status plan_fill(lp_plan *p, const lp_layer_ir *L, const lp_footprint_source *src,
                           lp_diag *d) {
    int n = L->n_layers;
    int *last = last_uses(L);
    int *mark = calloc((size_t)L->g->n_values + 1, sizeof(int));
    int *last_card = malloc(sizeof(int) * (size_t)n); /* card that sends a layer's outputs */
    int32_t *scratch = malloc(sizeof(int32_t) * ((size_t)L->g->n_values + 1));
    lp_status st = LP_OK;
    if (!last || !mark || !last_card || !scratch) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int c = 0; st == LP_OK && c < p->n_cards; c++) {
        lp_plan_card *pc = &p->cards[c];
        const lp_shard *sh = pc->n_shards > 1 ? lp_plan_shard_of_card(p, c) : NULL;
        if (sh)
            lp_shard_footprint(sh, pc->shard, src, &pc->fp);
        else
            src->fn(src->ctx, pc->first_layer, pc->last_layer, &pc->fp);
        for (int i = pc->first_layer; i <= pc->last_layer; i++) {
            pc->flops += L->layers[i].flops / (uint64_t)pc->n_shards;
            last_card[i] = c;
        }
        if (!card_values(p, pc, L, last, mark, scratch)) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        if (pc->shard + 1 < pc->n_shards) pc->n_outputs = 0; /* the last shard sends */
    }
    /* transfers: every card input made on another card, then the gathers */
    int room = 0;
    for (int c = 0; st == LP_OK && c < p->n_cards; c++)
        for (int k = 0; k < p->cards[c].n_inputs; k++) {
            int32_t v = p->cards[c].inputs[k];
            int pl = producer_layer(L, v);
            if (pl < 0) continue;
            if (!add_transfer(p, &room, (lp_transfer){.value = v, .kind = LP_TRANSFER_CUT,
                                                     .bytes = value_bytes(src, v),
                                                     .from_card = last_card[pl], .to_card = c}))
                st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        }
    for (int i = 0; st == LP_OK && i < p->n_shards; i++)
        if (!add_gathers(p, &p->shards[i], src, &room)) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (st == LP_OK && !p->transfers) {
        p->transfers = lp_arena_array(p->arena, 1, sizeof(lp_transfer));
        if (!p->transfers) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    free(last);
    free(mark);
    free(last_card);
    free(scratch);
    return st;
}

/* Stage times from the throughput model, for every algorithm's plan. A
 * shard card does 1/n of its layer's time and then receives its gathers:
 * one link latency and the bytes of the other slices per gathered value. */
static lp_status plan_times(lp_plan *p, const lp_layer_ir *L, const lp_footprint_source *src,
                            lp_diag *d) {
    cost_ctx cc = {src, NULL, NULL, NULL, 0, 0};
    uint64_t *res_prefix = NULL;
    lp_stage_data s;
    bool ok = resident_costs(L, &p->target, p->n_caps, &cc, &res_prefix);
    if (!ok || !lp_stage_data_init(&s, L, src, (lp_range_cost){L->n_layers, range_total, &cc}, &p->target)) {
        free(res_prefix);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    lp_cards cards = {p->n_caps, p->caps, 0};
    p->slowest_s = p->latency_s = 0;
    for (int c = 0; c < p->n_cards; c++) {
        lp_plan_card *pc = &p->cards[c];
        if (pc->n_shards > 1) {
            const lp_target *t = &p->target;
            lp_footprint fp = pc->fp;
            double bw = fp.total <= pc->capacity ? t->chip_bw : t->hbm_bw;
            const lp_layer *l = &L->layers[pc->first_layer];
            double compute = t->peak_flops > 0 ? (double)l->flops / t->peak_flops : 0;
            double memory = bw > 0 ? (double)(l->bytes_read + l->bytes_written) / bw : 0;
            pc->stage_s = (compute > memory ? compute : memory) / pc->n_shards +
                          (double)(l->last_node - l->first_node + 1) * t->launch_s;
            if (pc->first_layer > 0)
                pc->stage_s += t->link_latency_s + (t->link_bw > 0 ? (double)s.cut_bytes[pc->first_layer] / t->link_bw : 0);
            const lp_shard *sh = lp_plan_shard_of_card(p, c);
            /* bytes_in less the cut: what the gathers bring */
            double gathered = (double)pc->bytes_in - (pc->first_layer > 0 ? (double)s.cut_bytes[pc->first_layer] : 0);
            if (gathered < 0) gathered = 0;
            pc->stage_s += (sh ? sh->n_weights : 0) * t->link_latency_s +
                           (t->link_bw > 0 ? gathered / t->link_bw : 0);
        } else {
            pc->stage_s = lp_stage_time(&s.m, &cards, c, pc->first_layer, pc->last_layer);
        }
        if (pc->stage_s > p->slowest_s) p->slowest_s = pc->stage_s;
    }
    /* latency: groups in sequence, the shards of one layer in parallel */
    for (int c = 0; c < p->n_cards;) {
        double worst = 0;
        int k = 0;
        do {
            if (p->cards[c + k].stage_s > worst) worst = p->cards[c + k].stage_s;
            k++;
        } while (k < p->cards[c].n_shards && c + k < p->n_cards);
        p->latency_s += worst;
        c += k;
    }
    lp_stage_data_free(&s);
    free(res_prefix);
    return LP_OK;
}

lp_status lp_plan_from_ends(const lp_layer_ir *L, const lp_footprint_source *src,
                            const lp_partition_options *opt, const int *ends, int n_groups,
                            lp_plan **out, lp_diag *d) {
    *out = NULL;
    for (int c = 0; c < n_groups; c++)
        if (ends[c] < (c ? ends[c - 1] + 1 : 0) || ends[c] >= L->n_layers)
            return lp_error(d, LP_ERR_USAGE, "card %d: layer range ends at %d, out of order", c, ends[c]);
    if (n_groups < 1 || ends[n_groups - 1] != L->n_layers - 1)
        return lp_error(d, LP_ERR_USAGE, "the cards cover layers 0..%d of 0..%d",
                        n_groups ? ends[n_groups - 1] : -1, L->n_layers - 1);
    lp_arena *a = lp_arena_new();
    lp_plan *p = a ? lp_arena_alloc(a, sizeof *p) : NULL;
    if (!p) {
        lp_arena_free(a);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    p->arena = a;
    p->model = lp_arena_strdup(a, L->g->path ? L->g->path : "");
    p->algo = opt->algo;
    p->target = opt->target;
    p->n_caps = opt->n_caps ? opt->n_caps : 1;
    p->caps = lp_arena_array(a, (size_t)p->n_caps, sizeof(uint64_t));
    p->max_cards = opt->cards;
    p->n_layers = L->n_layers;
    p->tokens = opt->tokens;
    if (!p->caps || !p->model) {
        lp_arena_free(a);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    for (int i = 0; i < p->n_caps; i++) p->caps[i] = opt->n_caps ? opt->caps[i] : opt->target.capacity;
    lp_status st = plan_cards(p, L, opt, ends, n_groups, d);
    if (st == LP_OK) st = plan_fill(p, L, src, d);
    if (st == LP_OK) st = plan_times(p, L, src, d);
    if (st != LP_OK) {
        lp_arena_free(a);
        return st;
    }
    *out = p;
    return LP_OK;
}
