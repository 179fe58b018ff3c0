/* The per-card memory plan: where every tensor of a card lives in the one
 * device allocation the runtime makes for that card, so that code generation
 * and the runtime place tensors at fixed offsets instead of allocating.
 *
 * Layout of card c (every region starts at a multiple of `alignment`, 256 B,
 * and every offset below is from the start of the card's allocation):
 *
 *   weights    [0, weights_bytes): each weight and constant the card's layers
 *              read (lp_layer.weights, in first-read order), once, at an
 *              aligned offset, at the deploy dtype's size. Integer tensors of
 *              rank 0-1 (axes, target shapes, indices) are not here: they are
 *              shape data that the launch programs carry as literals, and the
 *              footprint does not count them either.
 *   boundary   [boundary_offset, +boundary_bytes): a receive buffer for each
 *              card input (direction "in": values from earlier cards and graph
 *              inputs), then a send buffer for each card output ("out": values
 *              later cards or the host read), then on a shard card a gather
 *              buffer per split node's output ("gather", see below).
 *   arena      [arena_offset, +arena_bytes): the activation slots placed by
 *              lp_memplan_run over the card's nodes, with the items
 *              lp_analysis_range_footprint plans: every value a node of the
 *              card makes (alive from its node to its last reader on the card;
 *              to the card's last step when it is sent), and every received
 *              value (alive from step 0 to its last reader). The items are
 *              built in the same order, so arena_bytes equals the footprint's
 *              activation_bytes exactly.
 *   workspace  [workspace_offset, +workspace_bytes): one scratch buffer of the
 *              largest per-node workspace (the footprint's buffer_bytes); the
 *              card's nodes run one at a time and share it.
 *
 * A received value thus has a receive buffer and an arena slot, and a sent one
 * an arena slot and a send buffer, as the footprint counts them: while the
 * card computes step s of a pipeline, the next micro-batch's inputs arrive in
 * the receive buffers and the previous one's outputs drain from the send
 * buffers. The runtime copies receive buffer -> slot before step 0 and
 * slot -> send buffer after the last step.
 *
 * Hence for a card of one group:
 *   total_bytes = weights_bytes + boundary_bytes + arena_bytes + workspace_bytes
 *               = footprint total
 * where padding_bytes, the alignment padding of the weights and boundary
 * entries, equals the footprint's padding_bytes (the arena's items are
 * already padded in activation_bytes): the partitioner fits exactly what is
 * allocated.
 *
 * A sharded card (n_shards > 1) holds only its columns [begin, end) of each
 * split weight (bytes as lp_shard_footprint rounds them) and the other weights
 * whole. Its activations are not divided: every shard computes its columns of
 * the split node's output, and one all-gather per split node (a collective
 * among the layer's cards, as NCCL runs it) lands every participant's columns
 * in the card's gather buffer for that output (direction "gather", the whole
 * value's bytes, after the send buffers), from which the layer reads on into
 * the output's whole-size arena slot. The arena is therefore the layer's own,
 * and the gather buffers are in the footprint's boundary_bytes. Only the last shard sends the layer's outputs, so the other
 * shards have no send buffers: their total is the footprint total less the
 * sent values and their padding (the footprint reserves them on every shard).
 *
 * plan.json, per card:
 *   "memory": {
 *     "alignment": 256,
 *     "weights":  [{"value", "offset", "bytes"}, ...]   split weights add
 *                 "axis", "begin", "end" (the columns held),
 *     "weights_bytes",
 *     "boundary_offset", "boundary_bytes",
 *     "boundary": [{"value", "offset", "bytes", "direction": "in" | "out" | "gather"}, ...],
 *     "arena_offset", "arena_bytes",
 *     "slots":    [{"value", "offset", "bytes", "first", "last"}, ...]
 *                 first/last: steps alive, 0 = the card's first node,
 *     "workspace_offset", "workspace_bytes",
 *     "padding_bytes", "total_bytes"
 *   }
 * The plan is made once, by the memory stage (lp_plan_place_memory, which
 * lp_partition_stage runs after validating the plan), stored in the plan's
 * cards and read from there by every writer; it is derived from the cuts,
 * so `--plan` makes it anew from the loaded cuts rather than reading it. */
#include "lp_partition.h"
#include "json_out.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Activations and graph inputs live in the arena; weights and folded
 * constants do not. */
static bool in_arena(const lp_value *v) {
    return v->kind == LP_VALUE_ACTIVATION || v->kind == LP_VALUE_INPUT;
}

/* Scratch shared by the cards of one plan: per value, the last node that
 * reads it anywhere, and marks local to one card. */
typedef struct mem_ctx {
    const lp_plan *p;
    const lp_layer_ir *L;
    lp_arena *a;
    lp_diag *d;
    int *last_use;   /* [n_values]: last reading node, -1 if none */
    int *mark;       /* [n_values]: card + 1 when last_in is valid */
    int *last_in;    /* [n_values]: last reading node within the card */
    int *split;      /* [n_values]: -1, or the card's split weight entry of v */
    lp_memplan_item *items;
    int32_t *item_value;
    int items_cap;
} mem_ctx;

static lp_status value_size(const mem_ctx *m, int32_t v, uint64_t *bytes) {
    if (lp_analysis_value_bytes(m->L, v, bytes)) return LP_OK;
    return lp_error(m->d, LP_ERR_UNSUPPORTED, "card memory: size of '%s' is unknown",
                    m->L->g->values[v].name);
}

/* The weights region: each weight at the next aligned offset; split weights
 * at their slice's size. */
static lp_status place_weights(mem_ctx *m, const lp_plan_card *pc, lp_card_memory *cm) {
    const lp_shard *sh = pc->n_shards > 1 ? lp_plan_shard_of_card(m->p, pc->card) : NULL;
    /* split[v]: the entry of v among the layer's split weights, so a card
     * costs O(weights), not weights x split weights */
    for (int i = 0; sh && i < sh->n_weights; i++)
        if (sh->weights[i].weight >= 0 && sh->weights[i].weight < m->L->g->n_values &&
            sh->weights[i].dim > 0)
            m->split[sh->weights[i].weight] = i;
    cm->weights = lp_arena_array(m->a, (size_t)pc->n_weights + 1, sizeof *cm->weights);
    if (!cm->weights) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
    uint64_t at = 0;
    for (int k = 0; k < pc->n_weights; k++) {
        lp_mem_weight *w = &cm->weights[cm->n_weights++];
        *w = (lp_mem_weight){.value = pc->weights[k], .offset = at, .axis = -1};
        lp_status st = value_size(m, w->value, &w->bytes);
        if (st != LP_OK) return st;
        if (sh && m->split[w->value] >= 0) {
            const lp_shard_weight *sw = &sh->weights[m->split[w->value]];
            lp_shard_range(sw->dim, sh->n_shards, pc->shard, &w->begin, &w->end);
            w->axis = sw->weight_axis;
            w->bytes = (w->bytes * (uint64_t)(w->end - w->begin) + (uint64_t)sw->dim - 1) / (uint64_t)sw->dim;
        }
        at += align_up(w->bytes, cm->alignment);
        cm->padding_bytes += align_up(w->bytes, cm->alignment) - w->bytes;
    }
    cm->weights_bytes = at;
    for (int i = 0; sh && i < sh->n_weights; i++)
        if (sh->weights[i].weight >= 0 && sh->weights[i].weight < m->L->g->n_values)
            m->split[sh->weights[i].weight] = -1;
    return LP_OK;
}

/* Receive buffers, then send buffers, then on a shard card one gather
 * buffer per split node's output, from boundary_offset on. */
static lp_status place_boundary(mem_ctx *m, const lp_plan_card *pc, lp_card_memory *cm) {
    const lp_shard *sh = pc->n_shards > 1 ? lp_plan_shard_of_card(m->p, pc->card) : NULL;
    int n_gathers = sh ? sh->n_weights : 0;
    cm->boundary = lp_arena_array(m->a, (size_t)(pc->n_inputs + pc->n_outputs + n_gathers) + 1,
                                  sizeof *cm->boundary);
    if (!cm->boundary) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
    cm->boundary_offset = cm->weights_bytes;
    uint64_t at = cm->boundary_offset;
    int32_t *gathered = NULL;
    if (n_gathers) {
        gathered = lp_arena_array(m->a, (size_t)n_gathers, sizeof *gathered);
        if (!gathered) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
        for (int i = 0; i < n_gathers; i++) gathered[i] = sh->weights[i].output;
    }
    for (int dir = 0; dir < 3; dir++) {
        static const lp_mem_dir dirs[3] = {LP_MEM_IN, LP_MEM_OUT, LP_MEM_GATHER};
        int n = dir == 0 ? pc->n_inputs : dir == 1 ? pc->n_outputs : n_gathers;
        const int32_t *vs = dir == 0 ? pc->inputs : dir == 1 ? pc->outputs : gathered;
        for (int k = 0; k < n; k++) {
            lp_mem_boundary *b = &cm->boundary[cm->n_boundary++];
            *b = (lp_mem_boundary){.value = vs[k], .offset = at, .dir = dirs[dir]};
            lp_status st = value_size(m, b->value, &b->bytes);
            if (st != LP_OK) return st;
            at += align_up(b->bytes, cm->alignment);
            cm->padding_bytes += align_up(b->bytes, cm->alignment) - b->bytes;
        }
    }
    cm->boundary_bytes = at - cm->boundary_offset;
    return LP_OK;
}

static bool add_item(mem_ctx *m, int *n, int32_t v, uint64_t bytes, int first, int last) {
    if (*n == m->items_cap) {
        int cap = m->items_cap ? 2 * m->items_cap : 64;
        lp_memplan_item *ni = realloc(m->items, (size_t)cap * sizeof *ni);
        if (!ni) return false;
        m->items = ni;
        int32_t *nv = realloc(m->item_value, (size_t)cap * sizeof *nv);
        if (!nv) return false;
        m->item_value = nv;
        m->items_cap = cap;
    }
    m->items[*n] = (lp_memplan_item){.bytes = bytes, .first = first, .last = last};
    m->item_value[(*n)++] = v;
    return true;
}

/* The arena items of nodes a..b with steps relative to a, in the order
 * lp_analysis_range_footprint builds them (the planner's ties depend on it):
 * per node, its received inputs (first read), then its outputs. */
static lp_status arena_items(mem_ctx *m, int card, int a, int b, int *n_items) {
    const lp_graph *g = m->L->g;
    int tag = card + 1, n = 0;
    for (int t = a; t <= b; t++)
        for (int k = 0; k < g->nodes[t].n_inputs; k++) {
            int32_t v = g->nodes[t].inputs[k];
            if (v < 0) continue;
            m->mark[v] = tag;
            m->last_in[v] = t;
        }
    for (int t = a; t <= b; t++) {
        const lp_node *nd = &g->nodes[t];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0 || m->mark[v] != tag || !in_arena(&g->values[v])) continue;
            if (g->values[v].kind == LP_VALUE_ACTIVATION && g->values[v].producer >= a) continue;
            m->mark[v] = -tag; /* received: planned once */
            uint64_t bytes;
            lp_status st = value_size(m, v, &bytes);
            if (st != LP_OK) return st;
            if (!add_item(m, &n, v, bytes, 0, m->last_in[v] - a))
                return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
        }
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = nd->outputs[k];
            if (v < 0) continue;
            bool sent = g->values[v].is_graph_output || m->last_use[v] > b;
            int last = sent ? b : m->last_use[v] > t ? m->last_use[v] : t;
            uint64_t bytes;
            lp_status st = value_size(m, v, &bytes);
            if (st != LP_OK) return st;
            if (!add_item(m, &n, v, bytes, t - a, last - a))
                return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
        }
    }
    *n_items = n;
    return LP_OK;
}

static lp_status place_arena(mem_ctx *m, const lp_plan_card *pc, lp_card_memory *cm) {
    const lp_layer_ir *L = m->L;
    int a = L->layers[pc->first_layer].first_node, b = L->layers[pc->last_layer].last_node;
    cm->first_node = a;
    cm->n_steps = b - a + 1;
    cm->arena_offset = cm->boundary_offset + cm->boundary_bytes;
    int n = 0;
    lp_status st = arena_items(m, pc->card, a, b, &n);
    if (st != LP_OK) return st;
    if (lp_memplan_run(m->items, n, cm->n_steps, cm->alignment, &cm->arena_bytes) != LP_OK)
        return lp_error(m->d, LP_ERR_INTERNAL, "out of memory while planning card %d's arena", pc->card);
    cm->slots = lp_arena_array(m->a, (size_t)n + 1, sizeof *cm->slots);
    if (!cm->slots) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < n; i++)
        cm->slots[i] = (lp_mem_slot){m->item_value[i], cm->arena_offset + m->items[i].offset,
                                     m->items[i].bytes, m->items[i].first, m->items[i].last};
    cm->n_slots = n;
    return LP_OK;
}

static lp_status card_memory(mem_ctx *m, const lp_plan_card *pc, lp_card_memory *cm) {
    *cm = (lp_card_memory){.card = pc->card, .alignment = LP_MEMPLAN_ALIGN};
    lp_status st = place_weights(m, pc, cm);
    if (st == LP_OK) st = place_boundary(m, pc, cm);
    if (st == LP_OK) st = place_arena(m, pc, cm);
    if (st != LP_OK) return st;
    for (int i = pc->first_layer; i <= pc->last_layer; i++)
        if (m->L->layers[i].buffer_bytes > cm->workspace_bytes)
            cm->workspace_bytes = m->L->layers[i].buffer_bytes;
    cm->workspace_offset = cm->arena_offset + cm->arena_bytes;
    cm->total_bytes = cm->workspace_offset + cm->workspace_bytes;
    return LP_OK;
}

lp_status lp_plan_memory(const lp_plan *p, const lp_layer_ir *L, lp_arena *a, lp_card_memory **out,
                         lp_diag *d) {
    const lp_graph *g = L->g;
    size_t nv = (size_t)g->n_values + 1;
    mem_ctx m = {p, L, a, d, malloc(nv * sizeof(int)), calloc(nv, sizeof(int)),
                 malloc(nv * sizeof(int)), malloc(nv * sizeof(int)), NULL, NULL, 0};
    *out = lp_arena_array(a, (size_t)p->n_cards + 1, sizeof **out);
    lp_status st = LP_OK;
    if (!m.last_use || !m.mark || !m.last_in || !m.split || !*out)
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int v = 0; st == LP_OK && v < g->n_values; v++) m.last_use[v] = m.split[v] = -1;
    for (int t = 0; st == LP_OK && t < g->n_nodes; t++)
        for (int k = 0; k < g->nodes[t].n_inputs; k++)
            if (g->nodes[t].inputs[k] >= 0) m.last_use[g->nodes[t].inputs[k]] = t;
    for (int c = 0; st == LP_OK && c < p->n_cards; c++) st = card_memory(&m, &p->cards[c], &(*out)[c]);
    free(m.last_use);
    free(m.mark);
    free(m.last_in);
    free(m.split);
    free(m.items);
    free(m.item_value);
    if (st != LP_OK) *out = NULL;
    return st;
}

lp_status lp_plan_place_memory(lp_plan *p, const lp_layer_ir *L, lp_diag *d) {
    if (p->n_cards > 0 && p->cards[0].memory) return LP_OK; /* placed once */
    lp_card_memory *mem = NULL;
    lp_status st = lp_plan_memory(p, L, p->arena, &mem, d);
    if (st != LP_OK) return st;
    for (int c = 0; c < p->n_cards; c++) p->cards[c].memory = &mem[c];
    return LP_OK;
}

static void entry_json(lp_json_out *w, const lp_layer_ir *L, int32_t v, uint64_t offset, uint64_t bytes) {
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "value", L->g->values[v].name);
    lp_json_int(w, "offset", (int64_t)offset);
    lp_json_int(w, "bytes", (int64_t)bytes);
}

void lp_card_memory_write_json(const lp_card_memory *cm, const lp_layer_ir *L, const char *key,
                               lp_json_out *w) {
    lp_json_begin_row_object(w, key);
    lp_json_int(w, "alignment", (int64_t)cm->alignment);
    lp_json_begin_row_array(w, "weights");
    for (int k = 0; k < cm->n_weights; k++) {
        const lp_mem_weight *mw = &cm->weights[k];
        entry_json(w, L, mw->value, mw->offset, mw->bytes);
        if (mw->axis >= 0) {
            lp_json_int(w, "axis", mw->axis);
            lp_json_int(w, "begin", mw->begin);
            lp_json_int(w, "end", mw->end);
        }
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_int(w, "weights_bytes", (int64_t)cm->weights_bytes);
    lp_json_int(w, "boundary_offset", (int64_t)cm->boundary_offset);
    lp_json_int(w, "boundary_bytes", (int64_t)cm->boundary_bytes);
    lp_json_begin_row_array(w, "boundary");
    for (int k = 0; k < cm->n_boundary; k++) {
        const lp_mem_boundary *b = &cm->boundary[k];
        entry_json(w, L, b->value, b->offset, b->bytes);
        lp_json_string(w, "direction", b->dir == LP_MEM_IN    ? "in"
                                        : b->dir == LP_MEM_OUT ? "out"
                                                               : "gather");
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_int(w, "arena_offset", (int64_t)cm->arena_offset);
    lp_json_int(w, "arena_bytes", (int64_t)cm->arena_bytes);
    lp_json_begin_row_array(w, "slots");
    for (int k = 0; k < cm->n_slots; k++) {
        const lp_mem_slot *s = &cm->slots[k];
        entry_json(w, L, s->value, s->offset, s->bytes);
        lp_json_int(w, "first", s->first);
        lp_json_int(w, "last", s->last);
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_int(w, "workspace_offset", (int64_t)cm->workspace_offset);
    lp_json_int(w, "workspace_bytes", (int64_t)cm->workspace_bytes);
    lp_json_int(w, "padding_bytes", (int64_t)cm->padding_bytes);
    lp_json_int(w, "total_bytes", (int64_t)cm->total_bytes);
    lp_json_end(w);
}

void *lp_card_memory_to_json(const lp_card_memory *cm, const lp_layer_ir *L) {
    lp_json_out *w = lp_json_out_tree();
    lp_card_memory_write_json(cm, L, NULL, w);
    return lp_json_out_take(w);
}
