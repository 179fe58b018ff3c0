/* Lowering: the plan and its stored memory plan become each card's ordered
 * program (lp_lower.h says what the steps are). The sharded layers' phases
 * are computed here, once, for every writer.
 *
 * --dump-ir=program --json writes
 *   {"cards": [{"card", "shard", "n_shards", "total_bytes",
 *     "phases": [{"phase", "first_step", "n_steps", "gathered", "sliced",
 *                 "gather_only", "inputs": [names], "outputs": [names]}, ...],
 *     "steps":  [{"step", "kind": "compute" | "receive" | "send" | "all_gather",
 *                 "phase", ...}, ...]}, ...]}
 * where a compute step adds "node" (name), "op", "inputs" and "outputs"
 * (arguments {"value", "region", "offset", "bytes"}, a view adding "view_of"),
 * "workspace_offset", "workspace_bytes"; a receive adds "value", "from"
 * (card, or "host"), "buffer", "slot"; a send "value", "to", "slot",
 * "buffer"; an all-gather "value", "first_card", "n_cards", "rank", "axis",
 * "slice", "whole", "slot". */
#include "lp_lower.h"
#include "lp_ops.h"
#include "json_out.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool carries_data(const lp_value *v) {
    return v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT;
}

static bool is_view_op(int op) {
    return op == LP_OP_Reshape || op == LP_OP_Squeeze || op == LP_OP_Unsqueeze ||
           op == LP_OP_Flatten || op == LP_OP_Identity;
}

/* Scratch of one lowering: per value, where the current card's memory plan
 * holds it (-1: nowhere), and the marks phase planning uses. */
typedef struct lower_ctx {
    const lp_plan *p;
    const lp_layer_ir *L;
    lp_arena *a;
    lp_diag *d;
    int *weight_at, *slot_at, *in_at, *out_at, *gather_at; /* [n_values] */
    int *from_card;     /* [n_values]: the card a received value comes from */
    int *viewed;        /* [n_values]: the value a view output has the bytes of */
    int *pos;           /* [n_values]: index among the card's outputs */
    int *made, *last_read, *seen; /* [n_values], phase planning */
    bool *sent;         /* [n_values] */
    int *by_from, *from_first; /* cut transfers bucketed by sending card */
    int *by_to, *to_first;     /* ... and by receiving card */
    /* the current card's slots: the last step each slot's bytes are read,
     * counting views that read them in place; slots no step writes */
    int *eff_last;
    bool *unused;
} lower_ctx;

/* Counting sort of the cut transfers by `card_of` (from or to). */
static bool bucket_transfers(const lp_plan *p, bool by_from, int **order, int **first) {
    *order = malloc(sizeof(int) * ((size_t)p->n_transfers + 1));
    *first = calloc((size_t)p->n_cards + 2, sizeof(int));
    if (!*order || !*first) return false;
    for (int i = 0; i < p->n_transfers; i++) {
        const lp_transfer *t = &p->transfers[i];
        int c = by_from ? t->from_card : t->to_card;
        if (t->kind == LP_TRANSFER_CUT && c >= 0 && c < p->n_cards) (*first)[c + 1]++;
    }
    for (int c = 0; c < p->n_cards; c++) (*first)[c + 1] += (*first)[c];
    int *at = malloc(sizeof(int) * ((size_t)p->n_cards + 1));
    if (!at) return false;
    memcpy(at, *first, sizeof(int) * (size_t)p->n_cards);
    for (int i = 0; i < p->n_transfers; i++) {
        const lp_transfer *t = &p->transfers[i];
        int c = by_from ? t->from_card : t->to_card;
        if (t->kind == LP_TRANSFER_CUT && c >= 0 && c < p->n_cards) (*order)[at[c]++] = i;
    }
    free(at);
    return true;
}

/* Marks where card memory m holds each value (set true) or clears the marks. */
static void index_memory(lower_ctx *x, const lp_card_memory *m, bool set) {
    for (int k = 0; k < m->n_weights; k++) x->weight_at[m->weights[k].value] = set ? k : -1;
    for (int k = 0; k < m->n_slots; k++) x->slot_at[m->slots[k].value] = set ? k : -1;
    for (int k = 0; k < m->n_boundary; k++) {
        const lp_mem_boundary *b = &m->boundary[k];
        int *at = b->dir == LP_MEM_IN ? x->in_at : b->dir == LP_MEM_OUT ? x->out_at : x->gather_at;
        at[b->value] = set ? k : -1;
    }
}

static lp_arg arg_make(int32_t v, lp_region r, uint64_t offset, uint64_t bytes) {
    return (lp_arg){.value = v, .region = r, .view_of = -1, .offset = offset, .bytes = bytes};
}

static lp_status no_place(lower_ctx *x, int card, const lp_node *n, int32_t v, const char *what) {
    const char *name = x->L->g->values[v].name;
    if (n)
        return lp_node_error(x->d, LP_ERR_INTERNAL, n, "lowering card %d: %s '%s' has no place in "
                             "the card's memory plan", card, what, name);
    return lp_error(x->d, LP_ERR_INTERNAL, "lowering card %d: %s '%s' has no place in the card's "
                    "memory plan", card, what, name);
}

/* v's arena slot; a view's is the slot of the value it views. */
static lp_arg slot_arg(const lower_ctx *x, const lp_card_memory *m, int32_t v) {
    int k = x->slot_at[v];
    if (x->viewed[v] >= 0) {
        lp_arg a = slot_arg(x, m, x->viewed[v]);
        a.value = v;
        return a;
    }
    return k < 0 ? arg_make(v, LP_REGION_NONE, 0, 0)
                 : arg_make(v, LP_REGION_SLOT, m->slots[k].offset, m->slots[k].bytes);
}

/* The slot whose bytes v is: its own, or through views the viewed value's. */
static int root_slot(const lower_ctx *x, int32_t v) {
    while (x->viewed[v] >= 0) v = x->viewed[v];
    return x->slot_at[v];
}

/* Whether a view output whose own slot is `ws` may read the bytes of slot
 * `ks` in place instead: no other slot that the memory plan lets share
 * those bytes is alive between the last read of ks so far and the view's
 * last read. On success the bytes of ks stay read until then. */
static bool view_in_place(lower_ctx *x, const lp_card_memory *m, int ks, int ws) {
    if (ks < 0 || ws < 0 || ks == ws || m->slots[ks].bytes != m->slots[ws].bytes) return false;
    int lo = x->eff_last[ks], hi = m->slots[ws].last > lo ? m->slots[ws].last : lo;
    if (hi > lo) {
        /* the check is a scan of the card's slots: bounded, else the copy stays */
        if (m->n_slots > 4096) return false;
        uint64_t b0 = m->slots[ks].offset, b1 = b0 + m->slots[ks].bytes;
        for (int j = 0; j < m->n_slots; j++) {
            const lp_mem_slot *o = &m->slots[j];
            if (j == ks || j == ws || x->unused[j] || !o->bytes) continue;
            if (o->offset < b1 && b0 < o->offset + o->bytes && o->first <= hi && x->eff_last[j] > lo)
                return false;
        }
    }
    x->eff_last[ks] = hi;
    x->unused[ws] = true;
    return true;
}

static lp_status input_arg(lower_ctx *x, const lp_card_memory *m, int card, const lp_node *n,
                           int32_t v, lp_arg *a) {
    if (v < 0) {
        *a = arg_make(-1, LP_REGION_NONE, 0, 0);
    } else if (x->weight_at[v] >= 0) {
        const lp_mem_weight *w = &m->weights[x->weight_at[v]];
        *a = arg_make(v, LP_REGION_WEIGHT, w->offset, w->bytes);
    } else if (x->slot_at[v] >= 0) {
        *a = slot_arg(x, m, v);
    } else if (x->viewed[v] >= 0) {
        /* a view made earlier: the bytes of what it views */
        lp_status st = input_arg(x, m, card, n, x->viewed[v], a);
        a->value = v;
        return st;
    } else if (carries_data(&x->L->g->values[v])) {
        *a = arg_make(v, LP_REGION_LITERAL, 0, 0);
    } else {
        return no_place(x, card, n, v, "input");
    }
    return LP_OK;
}

/* The chunk of the gather buffer `whole` that participant k's slice fills:
 * the participants' slices one after another, in rank order. */
static lp_arg gather_chunk(const lp_shard *sh, int i, lp_arg whole, int k) {
    const lp_shard_weight *w = &sh->weights[i];
    lp_transfer t = {.value = w->output, .kind = LP_TRANSFER_ALL_GATHER, .bytes = whole.bytes,
                     .first_card = sh->first_card, .n_cards = sh->n_shards, .axis = w->output_axis,
                     .dim = w->dim};
    uint64_t at = 0;
    for (int j = 0; j < k; j++) at += lp_transfer_slice_bytes(&t, j);
    return arg_make(w->output, LP_REGION_GATHER, whole.offset + at, lp_transfer_slice_bytes(&t, k));
}

static lp_status compute_step(lower_ctx *x, const lp_card_memory *m, int card, const lp_shard *sh,
                              int split, int t, lp_step *s) {
    const lp_graph *g = x->L->g;
    const lp_node *n = &g->nodes[t];
    *s = (lp_step){.kind = LP_STEP_COMPUTE, .value = -1, .node = t, .kernel = lp_node_op(n),
                   .n_inputs = n->n_inputs, .n_outputs = n->n_outputs, .peer = -1, .split = -1,
                   .workspace_offset = m->workspace_offset,
                   .workspace_bytes = x->L->node_buffer_bytes ? x->L->node_buffer_bytes[t] : 0};
    s->inputs = lp_arena_array(x->a, (size_t)n->n_inputs + 1, sizeof(lp_arg));
    s->outputs = lp_arena_array(x->a, (size_t)n->n_outputs + 1, sizeof(lp_arg));
    if (!s->inputs || !s->outputs) return lp_error(x->d, LP_ERR_INTERNAL, "out of memory");
    for (int k = 0; k < n->n_inputs; k++) {
        lp_status st = input_arg(x, m, card, n, n->inputs[k], &s->inputs[k]);
        if (st != LP_OK) return st;
    }
    for (int k = 0; k < n->n_outputs; k++) {
        int32_t v = n->outputs[k];
        lp_arg *a = &s->outputs[k];
        if (v < 0) {
            *a = arg_make(-1, LP_REGION_NONE, 0, 0);
        } else if (split >= 0 && k == 0) {
            /* the split node writes the card's columns into its chunk */
            int gk = x->gather_at[v];
            if (gk < 0) return no_place(x, card, n, v, "gathered output");
            lp_arg whole = arg_make(v, LP_REGION_GATHER, m->boundary[gk].offset, m->boundary[gk].bytes);
            *a = gather_chunk(sh, split, whole, card - sh->first_card);
        } else if (!sh && k == 0 && is_view_op(s->kernel) && x->slot_at[v] >= 0 && n->n_inputs > 0 &&
                   s->inputs[0].region == LP_REGION_SLOT &&
                   view_in_place(x, m, root_slot(x, s->inputs[0].value), x->slot_at[v])) {
            /* a view that reads its input's bytes in place: its own slot stays unused */
            *a = arg_make(v, LP_REGION_VIEW, s->inputs[0].offset, s->inputs[0].bytes);
            a->view_of = 0;
            x->viewed[v] = s->inputs[0].value;
        } else if (x->slot_at[v] >= 0) {
            *a = slot_arg(x, m, v);
        } else if (is_view_op(s->kernel) && n->n_inputs > 0 && s->inputs[0].region != LP_REGION_NONE &&
                   s->inputs[0].region != LP_REGION_LITERAL) {
            uint64_t bytes = 0;
            if (!lp_analysis_value_bytes(x->L, v, &bytes) || bytes != s->inputs[0].bytes)
                return no_place(x, card, n, v, "output");
            *a = arg_make(v, LP_REGION_VIEW, s->inputs[0].offset, bytes);
            a->view_of = 0;
            x->viewed[v] = s->inputs[0].value;
        } else {
            return no_place(x, card, n, v, "output");
        }
    }
    return LP_OK;
}

static lp_status gather_step(lower_ctx *x, const lp_card_memory *m, int card, const lp_shard *sh,
                             int i, int phase, lp_step *s) {
    const lp_shard_weight *w = &sh->weights[i];
    int gk = x->gather_at[w->output];
    if (gk < 0) return no_place(x, card, NULL, w->output, "gathered value");
    lp_arg whole = arg_make(w->output, LP_REGION_GATHER, m->boundary[gk].offset, m->boundary[gk].bytes);
    *s = (lp_step){.kind = LP_STEP_ALL_GATHER, .phase = phase, .value = w->output, .node = -1,
                   .peer = -1, .split = i, .first_card = sh->first_card, .n_cards = sh->n_shards,
                   .rank = card - sh->first_card, .axis = w->output_axis, .whole = whole,
                   .slice = gather_chunk(sh, i, whole, card - sh->first_card),
                   .slot = slot_arg(x, m, w->output)};
    if (s->slot.region == LP_REGION_NONE) return no_place(x, card, NULL, w->output, "gathered value");
    return LP_OK;
}

typedef struct send_key {
    int pos, transfer;
} send_key;

static int send_cmp(const void *a, const void *b) {
    const send_key *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return (x->transfer > y->transfer) - (x->transfer < y->transfer);
}

/* Phase P's inputs and outputs on a shard card, as one card ONNX model of
 * that phase sees them (lp_lower.h). made[v]: the phase whose step makes v
 * (the split node's output is made by its all-gather); last_read[v]: the
 * last phase with compute steps that reads v. */
static lp_status plan_phases(lower_ctx *x, lp_card_program *cp, int stamp) {
    const lp_graph *g = x->L->g;
    for (int s = 0; s < cp->n_steps; s++) {
        const lp_step *st = &cp->steps[s];
        if (st->kind == LP_STEP_ALL_GATHER) x->made[st->value] = stamp + st->phase;
        if (st->kind != LP_STEP_COMPUTE) continue;
        for (int k = 0; k < st->n_outputs; k++)
            if (st->outputs[k].value >= 0 && !(st->outputs[k].region == LP_REGION_GATHER))
                x->made[st->outputs[k].value] = stamp + st->phase;
        for (int k = 0; k < st->n_inputs; k++)
            if (st->inputs[k].value >= 0) x->last_read[st->inputs[k].value] = stamp + st->phase;
    }
    for (int P = 0; P < cp->n_phases; P++) {
        lp_phase *ph = &cp->phases[P];
        size_t room = 1;
        for (int s = ph->first_step; s < ph->first_step + ph->n_steps; s++)
            room += (size_t)cp->steps[s].n_inputs + (size_t)cp->steps[s].n_outputs + 1;
        ph->inputs = lp_arena_array(x->a, room, sizeof(int32_t));
        ph->outputs = lp_arena_array(x->a, room, sizeof(int32_t));
        if (!ph->inputs || !ph->outputs) return lp_error(x->d, LP_ERR_INTERNAL, "out of memory");
        if (ph->gather_only) continue;
        int here = stamp + P;
        for (int s = ph->first_step; s < ph->first_step + ph->n_steps; s++) {
            const lp_step *st = &cp->steps[s];
            if (st->kind == LP_STEP_ALL_GATHER) {
                int32_t v = st->value;
                if (!carries_data(&g->values[v]) && (x->sent[v] || x->last_read[v] > here))
                    ph->outputs[ph->n_outputs++] = v;
            }
            if (st->kind != LP_STEP_COMPUTE) continue;
            for (int k = 0; k < st->n_inputs; k++) {
                int32_t v = st->inputs[k].value;
                if (v < 0 || carries_data(&g->values[v]) || x->made[v] == here || x->seen[v] == here + 1)
                    continue;
                x->seen[v] = here + 1;
                ph->inputs[ph->n_inputs++] = v;
            }
            for (int k = 0; k < st->n_outputs; k++) {
                int32_t v = st->outputs[k].value;
                if (v >= 0 && x->made[v] == here && !carries_data(&g->values[v]) &&
                    (x->sent[v] || x->last_read[v] > here))
                    ph->outputs[ph->n_outputs++] = v;
            }
        }
    }
    return LP_OK;
}

static lp_status lower_card(lower_ctx *x, int c, int *stamp, lp_card_program *cp) {
    const lp_plan_card *pc = &x->p->cards[c];
    const lp_card_memory *m = pc->memory;
    const lp_layer_ir *L = x->L;
    const lp_graph *g = L->g;
    const lp_shard *sh = pc->n_shards > 1 ? lp_plan_shard_of_card(x->p, c) : NULL;
    int a = L->layers[pc->first_layer].first_node, b = L->layers[pc->last_layer].last_node;
    int n_splits = sh ? sh->n_weights : 0;
    *cp = (lp_card_program){.card = c, .shard = pc->shard, .n_shards = pc->n_shards, .memory = m};
    if (!m) return lp_error(x->d, LP_ERR_INTERNAL, "lowering card %d: its memory is not placed", c);
    if (sh && (sh->n_weights < 1 || sh->first_card + sh->n_shards > x->p->n_cards))
        return lp_error(x->d, LP_ERR_INTERNAL, "lowering card %d: its shard splits nothing or runs past the "
                        "plan's cards", c);

    /* the sends: card outputs in order, each to the cards reading it, then the host */
    int nb = x->from_first[c + 1] - x->from_first[c];
    send_key *keys = malloc(sizeof(send_key) * ((size_t)nb + 1));
    if (!keys) return lp_error(x->d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < pc->n_outputs; i++) x->pos[pc->outputs[i]] = i, x->sent[pc->outputs[i]] = true;
    int n_keys = 0;
    for (int i = x->from_first[c]; i < x->from_first[c + 1]; i++) {
        int32_t v = x->p->transfers[x->by_from[i]].value;
        if (x->pos[v] >= 0) keys[n_keys++] = (send_key){x->pos[v], x->by_from[i]};
    }
    qsort(keys, (size_t)n_keys, sizeof *keys, send_cmp);
    for (int i = x->to_first[c]; i < x->to_first[c + 1]; i++) {
        const lp_transfer *t = &x->p->transfers[x->by_to[i]];
        x->from_card[t->value] = t->from_card;
    }

    size_t room = (size_t)pc->n_inputs + (size_t)(b - a + 1) + (size_t)n_splits + (size_t)n_keys +
                  (size_t)pc->n_outputs + 1;
    cp->steps = lp_arena_array(x->a, room, sizeof(lp_step));
    cp->phases = lp_arena_array(x->a, (size_t)n_splits + 1, sizeof(lp_phase));
    x->eff_last = malloc(sizeof(int) * ((size_t)m->n_slots + 1));
    x->unused = calloc((size_t)m->n_slots + 1, sizeof(bool));
    lp_status st = cp->steps && cp->phases && x->eff_last && x->unused
                       ? LP_OK : lp_error(x->d, LP_ERR_INTERNAL, "out of memory");
    for (int k = 0; x->eff_last && k < m->n_slots; k++) x->eff_last[k] = m->slots[k].last;
    index_memory(x, m, true);

    for (int i = 0; st == LP_OK && i < pc->n_inputs; i++) {
        int32_t v = pc->inputs[i];
        lp_step *s = &cp->steps[cp->n_steps++];
        *s = (lp_step){.kind = LP_STEP_RECEIVE, .value = v, .node = -1, .split = -1,
                       .peer = x->from_card[v], .slot = slot_arg(x, m, v)};
        if (x->in_at[v] < 0 || s->slot.region == LP_REGION_NONE)
            st = no_place(x, c, NULL, v, "received value");
        else
            s->buffer = arg_make(v, LP_REGION_IN, m->boundary[x->in_at[v]].offset,
                                 m->boundary[x->in_at[v]].bytes);
    }

    /* a shard that sends nothing made in phase m computes nothing there */
    bool last_computes = true;
    if (sh) {
        int last_split = sh->weights[n_splits - 1].node;
        last_computes = false;
        for (int i = 0; i < pc->n_outputs; i++) {
            int32_t v = pc->outputs[i];
            last_computes |= g->values[v].producer > last_split || v == sh->weights[n_splits - 1].output;
        }
    }
    int P = 0;
    cp->phases[0] = (lp_phase){.first_step = 0, .gathered = -1, .sliced = sh ? 0 : -1};
    for (int t = a; st == LP_OK && t <= b; t++) {
        if (P == n_splits && sh && !last_computes) break;
        int split = sh && P < n_splits && sh->weights[P].node == t ? P : -1;
        lp_step *s = &cp->steps[cp->n_steps++];
        st = compute_step(x, m, c, sh, split, t, s);
        s->phase = P;
        if (st != LP_OK || split < 0) continue;
        cp->phases[P].n_steps = cp->n_steps - cp->phases[P].first_step;
        P++;
        cp->phases[P] = (lp_phase){.first_step = cp->n_steps, .gathered = split,
                                   .sliced = P < n_splits ? P : -1};
        st = gather_step(x, m, c, sh, split, P, &cp->steps[cp->n_steps++]);
    }
    cp->n_phases = P + 1;
    cp->phases[P].gather_only = sh && !last_computes;

    for (int i = 0, k = 0; st == LP_OK && i < pc->n_outputs; i++) {
        int32_t v = pc->outputs[i];
        int ob = x->out_at[v];
        lp_arg slot = slot_arg(x, m, v);
        if (ob < 0 || slot.region == LP_REGION_NONE) {
            st = no_place(x, c, NULL, v, "sent value");
            break;
        }
        lp_arg buf = arg_make(v, LP_REGION_OUT, m->boundary[ob].offset, m->boundary[ob].bytes);
        for (; k < n_keys && keys[k].pos == i; k++)
            cp->steps[cp->n_steps++] = (lp_step){.kind = LP_STEP_SEND, .phase = P, .value = v, .node = -1,
                                                 .split = -1, .peer = x->p->transfers[keys[k].transfer].to_card,
                                                 .slot = slot, .buffer = buf};
        if (g->values[v].is_graph_output)
            cp->steps[cp->n_steps++] = (lp_step){.kind = LP_STEP_SEND, .phase = P, .value = v, .node = -1,
                                                 .split = -1, .peer = -1, .slot = slot, .buffer = buf};
    }
    cp->phases[P].n_steps = cp->n_steps - cp->phases[P].first_step;

    if (st == LP_OK && !sh) {
        cp->phases[0].inputs = pc->inputs;
        cp->phases[0].n_inputs = pc->n_inputs;
        cp->phases[0].outputs = pc->outputs;
        cp->phases[0].n_outputs = pc->n_outputs;
    } else if (st == LP_OK) {
        /* the marks of one card are apart from every other card's */
        st = plan_phases(x, cp, *stamp);
        *stamp += n_splits + 2;
    }

    index_memory(x, m, false);
    for (int s = 0; s < cp->n_steps; s++)
        for (int k = 0; cp->steps[s].kind == LP_STEP_COMPUTE && k < cp->steps[s].n_outputs; k++)
            if (cp->steps[s].outputs[k].region == LP_REGION_VIEW) x->viewed[cp->steps[s].outputs[k].value] = -1;
    for (int i = 0; i < pc->n_outputs; i++) x->pos[pc->outputs[i]] = -1, x->sent[pc->outputs[i]] = false;
    for (int i = x->to_first[c]; i < x->to_first[c + 1]; i++)
        x->from_card[x->p->transfers[x->by_to[i]].value] = -1;
    free(keys);
    free(x->eff_last);
    free(x->unused);
    x->eff_last = NULL;
    x->unused = NULL;
    return st;
}

lp_status lp_lower_run(const lp_plan *p, const lp_layer_ir *L, lp_program **out, lp_diag *d) {
    *out = NULL;
    size_t nv = (size_t)L->g->n_values + 1;
    lower_ctx x = {.p = p, .L = L, .d = d, .a = lp_arena_new()};
    lp_program *prog = x.a ? lp_arena_alloc(x.a, sizeof *prog) : NULL;
    int **ints[] = {&x.weight_at, &x.slot_at, &x.in_at, &x.out_at, &x.gather_at,
                    &x.from_card, &x.viewed, &x.pos, &x.made, &x.last_read, &x.seen};
    bool ok = prog != NULL;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        *ints[i] = malloc(sizeof(int) * nv);
        ok = ok && *ints[i];
        for (size_t v = 0; *ints[i] && v < nv; v++) (*ints[i])[v] = -1;
    }
    x.sent = calloc(nv, sizeof(bool));
    ok = ok && x.sent && bucket_transfers(p, true, &x.by_from, &x.from_first) &&
         bucket_transfers(p, false, &x.by_to, &x.to_first);
    lp_status st = ok ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (st == LP_OK) {
        *prog = (lp_program){.arena = x.a, .n_cards = p->n_cards};
        prog->cards = lp_arena_array(x.a, (size_t)p->n_cards + 1, sizeof(lp_card_program));
        if (!prog->cards) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    int stamp = 0;
    for (int c = 0; st == LP_OK && c < p->n_cards; c++) st = lower_card(&x, c, &stamp, &prog->cards[c]);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) free(*ints[i]);
    free(x.sent);
    free(x.by_from);
    free(x.from_first);
    free(x.by_to);
    free(x.to_first);
    if (st != LP_OK) {
        lp_arena_free(x.a);
        return st;
    }
    *out = prog;
    return LP_OK;
}

void lp_program_free(lp_program *prog) {
    if (prog) lp_arena_free(prog->arena);
}

const char *lp_step_kind_name(lp_step_kind k) {
    switch (k) {
    case LP_STEP_COMPUTE: return "compute";
    case LP_STEP_RECEIVE: return "receive";
    case LP_STEP_SEND: return "send";
    case LP_STEP_ALL_GATHER: return "all_gather";
    }
    return "?";
}

const char *lp_region_name(lp_region r) {
    switch (r) {
    case LP_REGION_NONE: return "none";
    case LP_REGION_LITERAL: return "literal";
    case LP_REGION_WEIGHT: return "weight";
    case LP_REGION_IN: return "in";
    case LP_REGION_OUT: return "out";
    case LP_REGION_GATHER: return "gather";
    case LP_REGION_SLOT: return "slot";
    case LP_REGION_VIEW: return "view";
    }
    return "?";
}
