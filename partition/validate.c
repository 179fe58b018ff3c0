/* The plan verifier: runs on every plan, built, loaded or overridden, and
 * recomputes what it checks from the layer IR instead of trusting the plan. */
#include "lp_partition.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* shard_of[layer]: index of the first shard entry naming the layer, -1 if
 * none; one pass, so checking every shard card stays linear. */
static int *shard_table(const lp_plan *p, const lp_layer_ir *L) {
    int *t = malloc(sizeof(int) * ((size_t)L->n_layers + 1));
    if (!t) return NULL;
    for (int i = 0; i < L->n_layers; i++) t[i] = -1;
    for (int i = p->n_shards - 1; i >= 0; i--)
        if (p->shards[i].layer >= 0 && p->shards[i].layer < L->n_layers) t[p->shards[i].layer] = i;
    return t;
}

static const lp_shard *find_shard(const lp_plan *p, const int *shard_of, int layer) {
    return shard_of[layer] >= 0 ? &p->shards[shard_of[layer]] : NULL;
}

/* A shard card: one layer, its shard number one past the previous card's,
 * and an lp_shard entry that names these cards. */
static lp_status check_shard_card(const lp_plan *p, const int *shard_of, int c, int *next,
                                  lp_diag *d) {
    const lp_plan_card *pc = &p->cards[c];
    if (pc->first_layer != pc->last_layer)
        return lp_error(d, LP_ERR_USAGE, "plan: card %d is shard %d of %d but holds layers %d..%d",
                        c, pc->shard, pc->n_shards, pc->first_layer, pc->last_layer);
    const lp_shard *sh = find_shard(p, shard_of, pc->first_layer);
    if (!sh || sh->n_shards != pc->n_shards || sh->first_card + pc->shard != c)
        return lp_error(d, LP_ERR_USAGE,
                        "plan: card %d is shard %d of %d of layer %d but the plan's shard list "
                        "does not place it there", c, pc->shard, pc->n_shards, pc->first_layer);
    bool starts = pc->shard == 0;
    if (starts ? pc->first_layer != *next
               : c == 0 || p->cards[c - 1].first_layer != pc->first_layer ||
                     p->cards[c - 1].shard != pc->shard - 1)
        return lp_error(d, LP_ERR_USAGE,
                        "plan: card %d (layer %d, shard %d of %d) does not follow shard %d of the "
                        "same layer (layer %d is next)", c, pc->first_layer, pc->shard, pc->n_shards,
                        pc->shard - 1, *next);
    if (pc->shard == pc->n_shards - 1) *next = pc->first_layer + 1;
    return LP_OK;
}

static lp_status check_ranges(const lp_plan *p, const lp_layer_ir *L, const int *shard_of,
                              lp_diag *d) {
    if (p->n_cards < 1) return lp_error(d, LP_ERR_USAGE, "plan: no cards");
    int next = 0;
    for (int c = 0; c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        if (pc->card != c)
            return lp_error(d, LP_ERR_USAGE, "plan: card %d is listed as card %d", c, pc->card);
        if (pc->last_layer < pc->first_layer || pc->first_layer < 0 || pc->last_layer >= L->n_layers)
            return lp_error(d, LP_ERR_USAGE, "plan: card %d has layers %d..%d, not a range of 0..%d",
                            c, pc->first_layer, pc->last_layer, L->n_layers - 1);
        if (pc->n_shards > 1) {
            lp_status st = check_shard_card(p, shard_of, c, &next, d);
            if (st != LP_OK) return st;
            continue;
        }
        if (pc->first_layer != next)
            return lp_error(d, LP_ERR_USAGE,
                            "plan: card %d starts at layer %d but layer %d is next (%s)", c,
                            pc->first_layer, next,
                            pc->first_layer < next ? "a layer is on two cards" : "a layer is on none");
        next = pc->last_layer + 1;
    }
    if (next != L->n_layers)
        return lp_error(d, LP_ERR_USAGE, "plan: layers %d..%d are on no card", next, L->n_layers - 1);
    return LP_OK;
}

/* Throughput plans are bound by device memory; the others by C. A shard
 * card's footprint is recomputed from its slice of each split weight. */
static lp_status check_capacity(const lp_plan *p, const int *shard_of, const lp_footprint_source *src,
                                lp_diag *d) {
    lp_status st = LP_OK;
    for (int c = 0; c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        lp_footprint fp;
        const lp_shard *sh = pc->n_shards > 1 ? find_shard(p, shard_of, pc->first_layer) : NULL;
        if (sh)
            lp_shard_footprint(sh, pc->shard, src, &fp);
        else
            src->fn(src->ctx, pc->first_layer, pc->last_layer, &fp);
        uint64_t cap = p->algo == LP_ALGO_THROUGHPUT ? p->target.dram_bytes : pc->capacity;
        if (fp.total <= cap) continue;
        char b[7][32], what[64] = "";
        if (sh) snprintf(what, sizeof what, " (shard %d of %d of layer %d)", pc->shard, pc->n_shards, sh->layer);
        st = lp_error(d, LP_ERR_INFEASIBLE,
                      "card %d%s: %s (%" PRIu64 " B) exceeds capacity %s (%" PRIu64 " B) (weights %s + "
                      "activations %s + buffers %s + boundary %s + alignment %s)",
                      c, what, lp_format_bytes(fp.total, b[0]), fp.total, lp_format_bytes(cap, b[1]), cap,
                      lp_format_bytes(fp.weight_bytes, b[2]), lp_format_bytes(fp.activation_bytes, b[3]),
                      lp_format_bytes(fp.buffer_bytes, b[4]), lp_format_bytes(fp.boundary_bytes, b[5]),
                      lp_format_bytes(fp.padding_bytes, b[6]));
    }
    return st;
}

/* The cards that run each layer, first[i]..last[i] (more than one when
 * sharded), from one pass over the cards. check_ranges has passed. */
static bool layer_cards(const lp_plan *p, const lp_layer_ir *L, int **first, int **last) {
    *first = malloc(sizeof(int) * ((size_t)L->n_layers + 1));
    *last = malloc(sizeof(int) * ((size_t)L->n_layers + 1));
    if (!*first || !*last) return false;
    for (int i = 0; i < L->n_layers; i++) (*first)[i] = (*last)[i] = -1;
    for (int c = 0; c < p->n_cards; c++)
        for (int i = p->cards[c].first_layer; i <= p->cards[c].last_layer; i++) {
            if ((*first)[i] < 0) (*first)[i] = c;
            (*last)[i] = c;
        }
    return true;
}

/* Cut transfers sorted by (value, from, to) for lookups in O(log T). */
typedef struct transfer_index {
    int n;
    const lp_transfer **sorted;
} transfer_index;

static int transfer_cmp(const lp_transfer *a, const lp_transfer *b) {
    if (a->value != b->value) return a->value < b->value ? -1 : 1;
    if (a->from_card != b->from_card) return a->from_card < b->from_card ? -1 : 1;
    return (a->to_card > b->to_card) - (a->to_card < b->to_card);
}

static int transfer_ptr_cmp(const void *a, const void *b) {
    return transfer_cmp(*(const lp_transfer *const *)a, *(const lp_transfer *const *)b);
}

static bool transfer_index_build(transfer_index *ix, const lp_plan *p) {
    ix->n = 0;
    ix->sorted = malloc(sizeof(lp_transfer *) * (size_t)(p->n_transfers + 1));
    if (!ix->sorted) return false;
    for (int t = 0; t < p->n_transfers; t++)
        if (p->transfers[t].kind == LP_TRANSFER_CUT) ix->sorted[ix->n++] = &p->transfers[t];
    qsort(ix->sorted, (size_t)ix->n, sizeof(lp_transfer *), transfer_ptr_cmp);
    return true;
}

static const lp_transfer *find_transfer(const transfer_index *ix, int32_t v, int from, int to) {
    lp_transfer key = {.value = v, .from_card = from, .to_card = to};
    int lo = 0, hi = ix->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (transfer_cmp(ix->sorted[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ix->n && transfer_cmp(ix->sorted[lo], &key) == 0 ? ix->sorted[lo] : NULL;
}

static bool is_data(const lp_graph *g, int32_t v) {
    return v >= 0 && g->values[v].producer >= 0 && g->values[v].kind != LP_VALUE_WEIGHT &&
           g->values[v].kind != LP_VALUE_CONSTANT;
}

/* Every value made on a card and read on another travels from the last
 * card of its layer to each card of the reading layer. */
static lp_status check_cut_transfers(const lp_plan *p, const transfer_index *ix, const lp_layer_ir *L,
                                     const int *first, const int *last, lp_diag *d) {
    const lp_graph *g = L->g;
    lp_status st = LP_OK;
    for (int i = 0; i < L->n_layers; i++)
        for (int k = 0; k < L->layers[i].n_inputs; k++) {
            int32_t v = L->layers[i].inputs[k];
            if (!is_data(g, v)) continue;
            int from = last[L->layer_of_node[g->values[v].producer]];
            for (int to = first[i]; to <= last[i]; to++) {
                if (from == to) continue;
                if (from > to)
                    st = lp_error(d, LP_ERR_USAGE, "plan: value '%s' flows backwards from card %d to card %d",
                                  g->values[v].name, from, to);
                else if (!find_transfer(ix, v, from, to))
                    st = lp_error(d, LP_ERR_USAGE,
                                  "plan: value '%s' crosses from card %d to card %d but no transfer carries it",
                                  g->values[v].name, from, to);
            }
        }
    return st;
}

/* Each split node's output of a sharded layer is gathered by exactly one
 * all-gather whose participants are the layer's cards, in order, each
 * contributing the columns it computes. O(transfers + values + split
 * weights). */
static lp_status check_gathers(const lp_plan *p, const lp_layer_ir *L, lp_diag *d) {
    const lp_graph *g = L->g;
    lp_status st = LP_OK;
    int n_split = 0;
    for (int i = 0; i < p->n_shards; i++) n_split += p->shards[i].n_weights;
    /* owner[v]: index of the split weight whose node makes v, or -1 */
    int *owner = malloc(sizeof(int) * ((size_t)g->n_values + 1));
    const lp_shard **shard = malloc(sizeof(*shard) * ((size_t)n_split + 1));
    int *weight = malloc(sizeof(int) * ((size_t)n_split + 1));
    int *seen = calloc((size_t)n_split + 1, sizeof(int));
    if (!owner || !shard || !weight || !seen) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        n_split = 0;
    }
    for (int v = 0; st == LP_OK && v < g->n_values; v++) owner[v] = -1;
    for (int i = 0, key = 0; st == LP_OK && i < p->n_shards; i++)
        for (int w = 0; w < p->shards[i].n_weights; w++, key++) {
            shard[key] = &p->shards[i];
            weight[key] = w;
            int32_t v = p->shards[i].weights[w].output;
            if (v >= 0 && v < g->n_values) owner[v] = key;
        }
    for (int t = 0; st != LP_ERR_INTERNAL && t < p->n_transfers; t++) {
        const lp_transfer *tr = &p->transfers[t];
        if (tr->kind != LP_TRANSFER_ALL_GATHER) continue;
        if (tr->value < 0 || tr->value >= g->n_values || owner[tr->value] < 0) {
            st = lp_error(d, LP_ERR_USAGE, "plan: transfer %d all-gathers value %d, which no sharded "
                          "layer computes in slices", t, tr->value);
            continue;
        }
        int key = owner[tr->value];
        const lp_shard *sh = shard[key];
        const lp_shard_weight *w = &sh->weights[weight[key]];
        const char *name = g->values[tr->value].name;
        if (seen[key]++)
            st = lp_error(d, LP_ERR_USAGE, "plan: transfer %d all-gathers '%s' (layer %d) a second time",
                          t, name, sh->layer);
        else if (tr->first_card != sh->first_card || tr->n_cards != sh->n_shards ||
                 tr->axis != w->output_axis || tr->dim != w->dim)
            st = lp_error(d, LP_ERR_USAGE,
                          "plan: transfer %d all-gathers '%s' over cards %d..%d along axis %d of %" PRId64
                          ", but layer %d computes it in slices on cards %d..%d along axis %d of %" PRId64,
                          t, name, tr->first_card, tr->first_card + tr->n_cards - 1, tr->axis, tr->dim,
                          sh->layer, sh->first_card, sh->first_card + sh->n_shards - 1, w->output_axis, w->dim);
    }
    for (int key = 0; key < n_split; key++) {
        if (seen[key]) continue;
        const lp_shard *sh = shard[key];
        int32_t v = sh->weights[weight[key]].output;
        st = lp_error(d, LP_ERR_USAGE,
                      "plan: '%s' (layer %d) is computed in slices on cards %d..%d but no all-gather "
                      "collects it", v >= 0 && v < g->n_values ? g->values[v].name : "?", sh->layer,
                      sh->first_card, sh->first_card + sh->n_shards - 1);
    }
    free(owner);
    free(shard);
    free(weight);
    free(seen);
    return st;
}

/* The layers reading each value, in layer order (CSR): whether a card reads
 * v is a binary search over v's readers, not a scan of the card's layers
 * per transfer. */
typedef struct readers {
    int *start; /* [n_values + 1] */
    int *layer;
} readers;

static bool readers_build(readers *r, const lp_layer_ir *L) {
    int nv = L->g->n_values;
    size_t total = 0;
    for (int i = 0; i < L->n_layers; i++) total += (size_t)L->layers[i].n_inputs;
    r->start = calloc((size_t)nv + 2, sizeof(int));
    r->layer = malloc(sizeof(int) * (total + 1));
    if (!r->start || !r->layer || total > (size_t)INT32_MAX) return false;
    for (int i = 0; i < L->n_layers; i++)
        for (int k = 0; k < L->layers[i].n_inputs; k++) {
            int32_t v = L->layers[i].inputs[k];
            if (v >= 0 && v < nv) r->start[v + 2]++;
        }
    for (int v = 0; v < nv; v++) r->start[v + 2] += r->start[v + 1];
    for (int i = 0; i < L->n_layers; i++) /* start[v + 1] is v's fill pointer */
        for (int k = 0; k < L->layers[i].n_inputs; k++) {
            int32_t v = L->layers[i].inputs[k];
            if (v >= 0 && v < nv) r->layer[r->start[v + 1]++] = i;
        }
    return true;
}

static bool card_reads(const lp_plan *p, const readers *r, int c, int32_t v) {
    const lp_plan_card *pc = &p->cards[c];
    int lo = r->start[v], hi = r->start[v + 1]; /* the first reader at or after first_layer */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (r->layer[mid] < pc->first_layer)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->start[v + 1] && r->layer[lo] <= pc->last_layer;
}

/* Every cut transfer carries something its receiver reads (all-gathers
 * are checked by check_gathers). */
static lp_status check_transfers_used(const lp_plan *p, const lp_layer_ir *L, lp_diag *d) {
    readers r = {0};
    if (!readers_build(&r, L)) {
        free(r.start);
        free(r.layer);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    lp_status st = LP_OK;
    for (int t = 0; t < p->n_transfers; t++) {
        const lp_transfer *tr = &p->transfers[t];
        if (tr->kind == LP_TRANSFER_ALL_GATHER) continue;
        bool ok = tr->kind == LP_TRANSFER_CUT && tr->value >= 0 && tr->value < L->g->n_values &&
                  tr->to_card >= 0 && tr->to_card < p->n_cards && tr->from_card >= 0 &&
                  tr->from_card < p->n_cards && card_reads(p, &r, tr->to_card, tr->value);
        if (!ok)
            st = lp_error(d, LP_ERR_USAGE,
                          "plan: transfer %d (value %d, card %d -> %d) carries nothing card %d reads", t,
                          tr->value, tr->from_card, tr->to_card, tr->to_card);
    }
    free(r.start);
    free(r.layer);
    return st;
}

lp_status lp_plan_validate(const lp_plan *p, const lp_layer_ir *L, const lp_footprint_source *src,
                           lp_diag *d) {
    int *shard_of = shard_table(p, L);
    if (!shard_of) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = check_ranges(p, L, shard_of, d);
    if (st != LP_OK) {
        free(shard_of);
        return st;
    }
    transfer_index ix = {0};
    int *first = NULL, *last = NULL;
    if (!transfer_index_build(&ix, p) || !layer_cards(p, L, &first, &last)) {
        free(ix.sorted);
        free(first);
        free(last);
        free(shard_of);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    lp_status cut = check_cut_transfers(p, &ix, L, first, last, d);
    free(ix.sorted);
    free(first);
    free(last);
    lp_status gather = check_gathers(p, L, d);
    lp_status used = check_transfers_used(p, L, d);
    st = check_capacity(p, shard_of, src, d);
    free(shard_of);
    if (cut != LP_OK) return cut;
    if (gather != LP_OK) return gather;
    return used != LP_OK ? used : st;
}

/* ---- the stored memory plan ------------------------------------------------ */

static const char *mem_name(const lp_layer_ir *L, int32_t v) {
    return v >= 0 && v < L->g->n_values && L->g->values[v].name ? L->g->values[v].name : "?";
}

/* One weight or boundary entry: aligned, inside its region [lo, hi), at or
 * after the end of the entry before it (*end), so the entries are in order
 * and disjoint. */
static lp_status check_mem_entry(const lp_layer_ir *L, int c, const char *region, int k, int32_t v,
                                 uint64_t offset, uint64_t bytes, uint64_t align, uint64_t lo,
                                 uint64_t hi, uint64_t *end, lp_diag *d) {
    const char *name = mem_name(L, v);
    if (offset % align)
        return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: %s entry %d '%s' at offset %" PRIu64
                        " is not %" PRIu64 "-byte aligned", c, region, k, name, offset, align);
    if (offset < *end)
        return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: %s entry %d '%s' at offset %" PRIu64
                        " starts before the entry before it ends (%" PRIu64 ")", c, region, k, name,
                        offset, *end);
    if (offset < lo || offset > hi || bytes > hi - offset)
        return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: %s entry %d '%s' (%" PRIu64 " B at %"
                        PRIu64 ") is outside the %s region %" PRIu64 "..%" PRIu64, c, region, k, name,
                        bytes, offset, region, lo, hi);
    *end = offset + bytes;
    return LP_OK;
}

/* The regions one after another from offset 0, each aligned, and the total
 * the workspace's end. */
static lp_status check_mem_regions(const lp_card_memory *m, int c, lp_diag *d) {
    if (m->card != c)
        return lp_error(d, LP_ERR_INTERNAL, "plan: card %d's memory plan is card %d's", c, m->card);
    if (m->alignment != LP_MEMPLAN_ALIGN)
        return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: alignment %" PRIu64 ", not %d", c,
                        m->alignment, LP_MEMPLAN_ALIGN);
    const struct {
        const char *name;
        uint64_t offset, want;
    } r[] = {{"boundary", m->boundary_offset, m->weights_bytes},
             {"arena", m->arena_offset, m->boundary_offset + m->boundary_bytes},
             {"workspace", m->workspace_offset, m->arena_offset + m->arena_bytes},
             {"end (total_bytes)", m->total_bytes, m->workspace_offset + m->workspace_bytes}};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        if (r[i].offset != r[i].want)
            return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: the %s is at %" PRIu64 " but the "
                            "region before it ends at %" PRIu64 " (regions out of order)", c, r[i].name,
                            r[i].offset, r[i].want);
        if (r[i].offset % m->alignment && i < 3)
            return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: the %s region at %" PRIu64
                            " is not %" PRIu64 "-byte aligned", c, r[i].name, r[i].offset, m->alignment);
    }
    return LP_OK;
}

static int slot_by_start(const void *x, const void *y) {
    const lp_mem_slot *a = *(const lp_mem_slot *const *)x, *b = *(const lp_mem_slot *const *)y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

/* Slots aligned, inside the arena and the card's steps; then, in order of
 * first step, each slot against the slots alive when it starts, kept
 * sorted by offset and pairwise disjoint, so its neighbours there are the
 * only ones it could overlap. O(slots x most alive at once). */
static lp_status check_mem_slots(const lp_layer_ir *L, const lp_card_memory *m, int c, int n_steps,
                                 lp_diag *d) {
    uint64_t lo = m->arena_offset, hi = m->arena_offset + m->arena_bytes;
    for (int k = 0; k < m->n_slots; k++) {
        const lp_mem_slot *s = &m->slots[k];
        const char *name = mem_name(L, s->value);
        if (s->offset % m->alignment)
            return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: slot %d '%s' at offset %" PRIu64
                            " is not %" PRIu64 "-byte aligned", c, k, name, s->offset, m->alignment);
        if (s->bytes && (s->offset < lo || s->offset > hi || s->bytes > hi - s->offset))
            return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: slot %d '%s' (%" PRIu64 " B at %"
                            PRIu64 ") is outside the arena %" PRIu64 "..%" PRIu64, c, k, name, s->bytes,
                            s->offset, lo, hi);
        if (s->first < 0 || s->last < s->first || s->last >= n_steps)
            return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: slot %d '%s' alive at steps %d..%d,"
                            " not inside the card's 0..%d", c, k, name, s->first, s->last, n_steps - 1);
    }
    const lp_mem_slot **order = malloc(sizeof *order * ((size_t)m->n_slots + 1));
    const lp_mem_slot **alive = malloc(sizeof *alive * ((size_t)m->n_slots + 1));
    if (!order || !alive) {
        free(order);
        free(alive);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    int n = 0, n_alive = 0;
    for (int k = 0; k < m->n_slots; k++)
        if (m->slots[k].bytes) order[n++] = &m->slots[k]; /* an empty slot holds no byte */
    qsort(order, (size_t)n, sizeof *order, slot_by_start);
    lp_status st = LP_OK;
    for (int i = 0; st == LP_OK && i < n; i++) {
        const lp_mem_slot *s = order[i];
        int kept = 0;
        for (int j = 0; j < n_alive; j++)
            if (alive[j]->last >= s->first) alive[kept++] = alive[j];
        n_alive = kept;
        int at = 0, top = n_alive; /* the first alive slot at or above s's offset */
        while (at < top) {
            int mid = at + (top - at) / 2;
            if (alive[mid]->offset < s->offset)
                at = mid + 1;
            else
                top = mid;
        }
        const lp_mem_slot *below = at > 0 ? alive[at - 1] : NULL, *above = at < n_alive ? alive[at] : NULL;
        const lp_mem_slot *hit = below && below->offset + below->bytes > s->offset ? below
                                 : above && s->offset + s->bytes > above->offset   ? above
                                                                                   : NULL;
        if (hit) {
            st = lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: slots '%s' (%" PRIu64 " B at %" PRIu64
                          ", steps %d..%d) and '%s' (%" PRIu64 " B at %" PRIu64 ", steps %d..%d) are both "
                          "alive at step %d and overlap", c, mem_name(L, hit->value), hit->bytes,
                          hit->offset, hit->first, hit->last, mem_name(L, s->value), s->bytes, s->offset,
                          s->first, s->last, s->first);
            break;
        }
        memmove(&alive[at + 1], &alive[at], sizeof *alive * (size_t)(n_alive - at));
        alive[at] = s;
        n_alive++;
    }
    free(order);
    free(alive);
    return st;
}

/* What the card allocates is what the partitioner fitted: the footprint's
 * total, less on a shard that does not send the send buffers (the
 * footprint reserves them on every shard of the layer; the layer's last
 * card lists them as its outputs). */
static lp_status check_mem_total(const lp_plan *p, const lp_footprint_source *src, int c, lp_diag *d) {
    const lp_plan_card *pc = &p->cards[c];
    const lp_card_memory *m = pc->memory;
    uint64_t want = pc->fp.total, unsent = 0;
    if (pc->n_shards > 1 && pc->shard + 1 < pc->n_shards) {
        const lp_plan_card *sender = &p->cards[c + pc->n_shards - 1 - pc->shard];
        for (int k = 0; k < sender->n_outputs; k++) {
            uint64_t b = 0;
            if (!src->value_bytes(src->ctx, sender->outputs[k], &b))
                return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: size of output %d unknown", c,
                                sender->outputs[k]);
            unsent += b + lp_align_pad(b);
        }
        want = unsent <= want ? want - unsent : 0;
    }
    if (m->total_bytes != want)
        return lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: total_bytes %" PRIu64 " but the card's "
                        "footprint total is %" PRIu64 "%s", c, m->total_bytes, want,
                        unsent ? " (less its unsent outputs)" : "");
    return LP_OK;
}

lp_status lp_plan_validate_memory(const lp_plan *p, const lp_layer_ir *L,
                                  const lp_footprint_source *src, lp_diag *d) {
    for (int c = 0; c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        const lp_card_memory *m = pc->memory;
        if (!m) return lp_error(d, LP_ERR_INTERNAL, "plan: card %d has no memory plan", c);
        lp_status st = check_mem_regions(m, c, d);
        uint64_t end = 0;
        for (int k = 0; st == LP_OK && k < m->n_weights; k++)
            st = check_mem_entry(L, c, "weights", k, m->weights[k].value, m->weights[k].offset,
                                 m->weights[k].bytes, m->alignment, 0, m->weights_bytes, &end, d);
        end = m->boundary_offset;
        for (int k = 0; st == LP_OK && k < m->n_boundary; k++)
            st = check_mem_entry(L, c, "boundary", k, m->boundary[k].value, m->boundary[k].offset,
                                 m->boundary[k].bytes, m->alignment, m->boundary_offset,
                                 m->boundary_offset + m->boundary_bytes, &end, d);
        int a = L->layers[pc->first_layer].first_node, b = L->layers[pc->last_layer].last_node;
        if (st == LP_OK && (m->first_node != a || m->n_steps != b - a + 1))
            st = lp_error(d, LP_ERR_INTERNAL, "plan: card %d memory: steps from node %d, %d of them, but "
                          "the card runs nodes %d..%d", c, m->first_node, m->n_steps, a, b);
        if (st == LP_OK) st = check_mem_slots(L, m, c, m->n_steps, d);
        if (st == LP_OK) st = check_mem_total(p, src, c, d);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}
