/* The lowered program's verifier and its dumps (text, JSON). */
#include "lp_lower.h"
#include "lp_ops.h"
#include "json_out.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- verifier ------------------------------------------------------------------ */

typedef struct verify_ctx {
    const lp_layer_ir *L;
    lp_diag *d;
    int card, step;
    const lp_step *s;
    int *made;   /* [n_values]: card + 1 once a step of the card made or received it */
    int *sliced; /* [n_values]: card + 1 once the card computed its slice */
} verify_ctx;

static const char *vname(const verify_ctx *x, int32_t v) {
    return v >= 0 && v < x->L->g->n_values ? x->L->g->values[v].name : "(none)";
}

/* "card 1, step 4 (compute 'n3')" */
static const char *where(const verify_ctx *x, char *buf, size_t n) {
    if (x->s->kind == LP_STEP_COMPUTE && x->s->node >= 0 && x->s->node < x->L->g->n_nodes)
        snprintf(buf, n, "program of card %d, step %d (compute '%s')", x->card, x->step,
                 x->L->g->nodes[x->s->node].name);
    else
        snprintf(buf, n, "program of card %d, step %d (%s '%s')", x->card, x->step,
                 lp_step_kind_name(x->s->kind), vname(x, x->s->value));
    return buf;
}

static bool inside(uint64_t off, uint64_t bytes, uint64_t lo, uint64_t size) {
    return off >= lo && off - lo <= size && bytes <= size - (off - lo);
}

static lp_status check_arg(verify_ctx *x, const lp_card_memory *m, const lp_arg *a, const char *role) {
    char buf[512];
    uint64_t lo = 0, size = 0;
    const lp_graph *g = x->L->g;
    if (a->value < -1 || a->value >= g->n_values)
        return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s has no value (index %d)", where(x, buf, sizeof buf),
                        role, a->value);
    switch (a->region) {
    case LP_REGION_NONE:
        if (a->value >= 0)
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s '%s' has no place", where(x, buf, sizeof buf),
                            role, vname(x, a->value));
        return LP_OK;
    case LP_REGION_LITERAL: {
        const lp_value *v = &g->values[a->value < 0 ? 0 : a->value];
        if (a->value < 0 || (v->kind != LP_VALUE_WEIGHT && v->kind != LP_VALUE_CONSTANT))
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s '%s' is a literal but holds no data",
                            where(x, buf, sizeof buf), role, vname(x, a->value));
        return LP_OK;
    }
    case LP_REGION_WEIGHT: lo = 0, size = m->weights_bytes; break;
    case LP_REGION_IN:
    case LP_REGION_OUT:
    case LP_REGION_GATHER: lo = m->boundary_offset, size = m->boundary_bytes; break;
    case LP_REGION_SLOT: lo = m->arena_offset, size = m->arena_bytes; break;
    case LP_REGION_VIEW: {
        const lp_arg *of = a->view_of >= 0 && a->view_of < x->s->n_inputs ? &x->s->inputs[a->view_of] : NULL;
        if (!of || of->offset != a->offset || of->bytes != a->bytes)
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s '%s' is a view but not of the bytes of an "
                            "input (view_of %d)", where(x, buf, sizeof buf), role, vname(x, a->value),
                            a->view_of);
        return LP_OK; /* the input was checked */
    }
    default:
        return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s '%s' has region %d, which is none of the program's",
                        where(x, buf, sizeof buf), role, vname(x, a->value), (int)a->region);
    }
    if (!inside(lo, size, 0, m->total_bytes) || !inside(a->offset, a->bytes, 0, m->total_bytes))
        return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s '%s' at %" PRIu64 "+%" PRIu64 " lies outside the "
                        "card's allocation of %" PRIu64 " bytes", where(x, buf, sizeof buf), role,
                        vname(x, a->value), a->offset, a->bytes, m->total_bytes);
    if (!inside(a->offset, a->bytes, lo, size))
        return lp_error(x->d, LP_ERR_INTERNAL, "%s: %s '%s' at %" PRIu64 "+%" PRIu64 " lies outside its %s "
                        "region [%" PRIu64 ", %" PRIu64 ")", where(x, buf, sizeof buf), role,
                        vname(x, a->value), a->offset, a->bytes, lp_region_name(a->region), lo, lo + size);
    return LP_OK;
}

static bool available(const verify_ctx *x, const lp_arg *a) {
    return a->region == LP_REGION_NONE || a->region == LP_REGION_LITERAL || a->region == LP_REGION_WEIGHT ||
           x->made[a->value] == x->card + 1;
}

static lp_status check_step(verify_ctx *x, const lp_card_memory *m, const lp_card_program *cp) {
    const lp_step *s = x->s;
    const lp_graph *g = x->L->g;
    char buf[512];
    lp_status st = LP_OK;
    int tag = x->card + 1;
    switch (s->kind) {
    case LP_STEP_COMPUTE:
        if (s->node < 0 || s->node >= g->n_nodes || s->n_inputs != g->nodes[s->node].n_inputs ||
            s->n_outputs != g->nodes[s->node].n_outputs)
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: its node %d or its argument counts do not match "
                            "the graph", where(x, buf, sizeof buf), s->node);
        for (int k = 0; st == LP_OK && k < s->n_inputs; k++) {
            st = check_arg(x, m, &s->inputs[k], "input");
            if (st == LP_OK && !available(x, &s->inputs[k]))
                st = lp_error(x->d, LP_ERR_INTERNAL, "%s: input '%s' is read before any step of the "
                              "card makes or receives it", where(x, buf, sizeof buf),
                              vname(x, s->inputs[k].value));
        }
        for (int k = 0; st == LP_OK && k < s->n_outputs; k++) st = check_arg(x, m, &s->outputs[k], "output");
        if (st == LP_OK && (s->workspace_bytes > m->workspace_bytes || s->workspace_offset != m->workspace_offset))
            st = lp_error(x->d, LP_ERR_INTERNAL, "%s: workspace %" PRIu64 "+%" PRIu64 " lies outside the "
                          "workspace region %" PRIu64 "+%" PRIu64, where(x, buf, sizeof buf),
                          s->workspace_offset, s->workspace_bytes, m->workspace_offset, m->workspace_bytes);
        for (int k = 0; st == LP_OK && k < s->n_outputs; k++) {
            const lp_arg *a = &s->outputs[k];
            if (a->value < 0) continue;
            if (a->region == LP_REGION_GATHER)
                x->sliced[a->value] = tag; /* one participant's columns: made by the all-gather */
            else
                x->made[a->value] = tag;
        }
        return st;
    case LP_STEP_RECEIVE:
        if (s->buffer.region != LP_REGION_IN || s->slot.region != LP_REGION_SLOT ||
            s->buffer.value != s->value || s->slot.value != s->value)
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: expected an in buffer and a slot of the value",
                            where(x, buf, sizeof buf));
        if ((st = check_arg(x, m, &s->buffer, "buffer")) == LP_OK) st = check_arg(x, m, &s->slot, "slot");
        if (s->peer < -1 || s->peer >= cp->card)
            st = lp_error(x->d, LP_ERR_INTERNAL, "%s: comes from card %d, not an earlier card or the host",
                          where(x, buf, sizeof buf), s->peer);
        x->made[s->value] = tag;
        return st;
    case LP_STEP_SEND:
        if (s->buffer.region != LP_REGION_OUT || s->slot.region != LP_REGION_SLOT ||
            s->buffer.value != s->value || s->slot.value != s->value)
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: expected a slot and an out buffer of the value",
                            where(x, buf, sizeof buf));
        if ((st = check_arg(x, m, &s->buffer, "buffer")) == LP_OK) st = check_arg(x, m, &s->slot, "slot");
        if (st == LP_OK && x->made[s->value] != tag)
            st = lp_error(x->d, LP_ERR_INTERNAL, "%s: sends '%s' before any step of the card makes it",
                          where(x, buf, sizeof buf), vname(x, s->value));
        if (st == LP_OK && s->peer != -1 && s->peer <= cp->card)
            st = lp_error(x->d, LP_ERR_INTERNAL, "%s: goes to card %d, not a later card or the host",
                          where(x, buf, sizeof buf), s->peer);
        return st;
    case LP_STEP_ALL_GATHER:
        if (s->slice.region != LP_REGION_GATHER || s->whole.region != LP_REGION_GATHER ||
            s->slot.region != LP_REGION_SLOT || s->rank < 0 || s->rank >= s->n_cards ||
            cp->card != s->first_card + s->rank)
            return lp_error(x->d, LP_ERR_INTERNAL, "%s: expected gather buffers, a slot and the card's "
                            "rank among the participants", where(x, buf, sizeof buf));
        if ((st = check_arg(x, m, &s->slice, "slice")) == LP_OK) st = check_arg(x, m, &s->whole, "whole");
        if (st == LP_OK) st = check_arg(x, m, &s->slot, "slot");
        if (st == LP_OK && !inside(s->slice.offset, s->slice.bytes, s->whole.offset, s->whole.bytes))
            st = lp_error(x->d, LP_ERR_INTERNAL, "%s: the slice %" PRIu64 "+%" PRIu64 " lies outside the "
                          "gather buffer %" PRIu64 "+%" PRIu64, where(x, buf, sizeof buf), s->slice.offset,
                          s->slice.bytes, s->whole.offset, s->whole.bytes);
        if (st == LP_OK && x->sliced[s->value] != tag)
            st = lp_error(x->d, LP_ERR_INTERNAL, "%s: gathers '%s' before the step that computes the "
                          "card's slice of it", where(x, buf, sizeof buf), vname(x, s->value));
        x->made[s->value] = tag;
        return st;
    }
    return lp_error(x->d, LP_ERR_INTERNAL, "%s: unknown step kind %d", where(x, buf, sizeof buf), (int)s->kind);
}

static lp_status check_phases(const lp_card_program *cp, lp_diag *d) {
    int next = 0;
    for (int P = 0; P < cp->n_phases; P++) {
        const lp_phase *ph = &cp->phases[P];
        if (ph->first_step != next || ph->n_steps < 0 || ph->n_steps > cp->n_steps - next)
            return lp_error(d, LP_ERR_INTERNAL, "program of card %d: phase %d covers steps %d..+%d, "
                            "not the steps after the phase before (from %d)", cp->card, P,
                            ph->first_step, ph->n_steps, next);
        for (int s = next; s < next + ph->n_steps; s++)
            if (cp->steps[s].phase != P)
                return lp_error(d, LP_ERR_INTERNAL, "program of card %d: step %d says phase %d but lies "
                                "in phase %d", cp->card, s, cp->steps[s].phase, P);
        next += ph->n_steps;
    }
    if (next != cp->n_steps)
        return lp_error(d, LP_ERR_INTERNAL, "program of card %d: its phases cover %d of its %d steps",
                        cp->card, next, cp->n_steps);
    return LP_OK;
}

lp_status lp_program_verify(const lp_program *prog, const lp_plan *p, const lp_layer_ir *L,
                            lp_diag *d) {
    if (prog->n_cards != p->n_cards)
        return lp_error(d, LP_ERR_INTERNAL, "program: %d cards, the plan has %d", prog->n_cards, p->n_cards);
    size_t nv = (size_t)L->g->n_values + 1;
    verify_ctx x = {.L = L, .d = d, .made = calloc(nv, sizeof(int)), .sliced = calloc(nv, sizeof(int))};
    lp_status st = x.made && x.sliced ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int c = 0; st == LP_OK && c < prog->n_cards; c++) {
        const lp_card_program *cp = &prog->cards[c];
        const lp_card_memory *m = p->cards[c].memory;
        if (cp->card != c || !m || cp->memory != m) {
            st = lp_error(d, LP_ERR_INTERNAL, "program of card %d: not lowered from the plan's card "
                          "and its stored memory plan", c);
            break;
        }
        x.card = c;
        for (int s = 0; st == LP_OK && s < cp->n_steps; s++) {
            x.step = s;
            x.s = &cp->steps[s];
            st = check_step(&x, m, cp);
        }
        if (st == LP_OK) st = check_phases(cp, d);
    }
    free(x.made);
    free(x.sliced);
    return st;
}

/* ---- dumps ---------------------------------------------------------------------- */

static const char *name_of(const lp_layer_ir *L, int32_t v) {
    return v >= 0 && v < L->g->n_values ? L->g->values[v].name : "-";
}

static void arg_text(const lp_layer_ir *L, const lp_arg *a, FILE *out) {
    if (a->region == LP_REGION_NONE) {
        fputs("-", out);
        return;
    }
    fprintf(out, "%s %s", name_of(L, a->value), lp_region_name(a->region));
    if (a->region != LP_REGION_LITERAL) fprintf(out, " @%" PRIu64 "+%" PRIu64, a->offset, a->bytes);
}

static void peer_text(int peer, FILE *out) {
    if (peer < 0)
        fputs("host", out);
    else
        fprintf(out, "card %d", peer);
}

static void step_text(const lp_layer_ir *L, int i, const lp_step *s, FILE *out) {
    fprintf(out, "  %4d  p%d  %-10s ", i, s->phase, lp_step_kind_name(s->kind));
    switch (s->kind) {
    case LP_STEP_COMPUTE: {
        const char *op = lp_op_name(s->kernel);
        fprintf(out, "%s '%s' (", op ? op : L->g->nodes[s->node].op_type, L->g->nodes[s->node].name);
        for (int k = 0; k < s->n_inputs; k++) {
            if (k) fputs(", ", out);
            arg_text(L, &s->inputs[k], out);
        }
        fputs(") -> (", out);
        for (int k = 0; k < s->n_outputs; k++) {
            if (k) fputs(", ", out);
            arg_text(L, &s->outputs[k], out);
        }
        fputs(")", out);
        if (s->workspace_bytes) fprintf(out, " workspace @%" PRIu64 "+%" PRIu64, s->workspace_offset, s->workspace_bytes);
        break;
    }
    case LP_STEP_RECEIVE:
        fprintf(out, "'%s' from ", name_of(L, s->value));
        peer_text(s->peer, out);
        fprintf(out, ": in @%" PRIu64 "+%" PRIu64 " -> slot @%" PRIu64, s->buffer.offset, s->buffer.bytes,
                s->slot.offset);
        break;
    case LP_STEP_SEND:
        fprintf(out, "'%s' to ", name_of(L, s->value));
        peer_text(s->peer, out);
        fprintf(out, ": slot @%" PRIu64 " -> out @%" PRIu64 "+%" PRIu64, s->slot.offset, s->buffer.offset,
                s->buffer.bytes);
        break;
    case LP_STEP_ALL_GATHER:
        fprintf(out, "'%s' among cards %d..%d (rank %d, axis %d): slice @%" PRIu64 "+%" PRIu64
                " of gather @%" PRIu64 "+%" PRIu64 " -> slot @%" PRIu64, name_of(L, s->value), s->first_card,
                s->first_card + s->n_cards - 1, s->rank, s->axis, s->slice.offset, s->slice.bytes,
                s->whole.offset, s->whole.bytes, s->slot.offset);
        break;
    }
    fputc('\n', out);
}

static void names_text(const lp_layer_ir *L, const int32_t *v, int n, FILE *out) {
    for (int i = 0; i < n; i++) fprintf(out, "%s%s", i ? ", " : "", name_of(L, v[i]));
    if (!n) fputs("-", out);
}

void lp_program_dump_text(const lp_program *prog, const lp_layer_ir *L, FILE *out) {
    for (int c = 0; c < prog->n_cards; c++) {
        const lp_card_program *cp = &prog->cards[c];
        fprintf(out, "card %d", c);
        if (cp->n_shards > 1) fprintf(out, " (shard %d of %d)", cp->shard, cp->n_shards);
        fprintf(out, ": %d steps, %d phase%s, allocation %" PRIu64 " bytes\n", cp->n_steps, cp->n_phases,
                cp->n_phases == 1 ? "" : "s", cp->memory ? cp->memory->total_bytes : 0);
        for (int P = 0; P < cp->n_phases; P++) {
            const lp_phase *ph = &cp->phases[P];
            if (cp->n_phases > 1) {
                fprintf(out, "  phase %d: steps %d..%d%s; in ", P, ph->first_step,
                        ph->first_step + ph->n_steps - 1, ph->gather_only ? ", all-gather only" : "");
                names_text(L, ph->inputs, ph->n_inputs, out);
                fputs("; out ", out);
                names_text(L, ph->outputs, ph->n_outputs, out);
                fputc('\n', out);
            }
            for (int s = ph->first_step; s < ph->first_step + ph->n_steps; s++) step_text(L, s, &cp->steps[s], out);
        }
    }
}

static void arg_json(lp_json_out *w, const lp_layer_ir *L, const char *key, const lp_arg *a) {
    lp_json_begin_row_object(w, key);
    if (a->value >= 0)
        lp_json_string(w, "value", name_of(L, a->value));
    else
        lp_json_null(w, "value");
    lp_json_string(w, "region", lp_region_name(a->region));
    lp_json_int(w, "offset", (int64_t)a->offset);
    lp_json_int(w, "bytes", (int64_t)a->bytes);
    if (a->region == LP_REGION_VIEW) lp_json_int(w, "view_of", a->view_of);
    lp_json_end(w);
}

static void peer_json(lp_json_out *w, const char *key, int peer) {
    if (peer < 0)
        lp_json_string(w, key, "host");
    else
        lp_json_int(w, key, peer);
}

static void names_json(lp_json_out *w, const lp_layer_ir *L, const char *key, const int32_t *v, int n) {
    lp_json_begin_row_array(w, key);
    for (int i = 0; i < n; i++) lp_json_string(w, NULL, name_of(L, v[i]));
    lp_json_end(w);
}

static void step_json(lp_json_out *w, const lp_layer_ir *L, int i, const lp_step *s) {
    lp_json_begin_row_object(w, NULL);
    lp_json_int(w, "step", i);
    lp_json_string(w, "kind", lp_step_kind_name(s->kind));
    lp_json_int(w, "phase", s->phase);
    switch (s->kind) {
    case LP_STEP_COMPUTE: {
        const char *op = lp_op_name(s->kernel);
        lp_json_string(w, "node", L->g->nodes[s->node].name);
        lp_json_string(w, "op", op ? op : L->g->nodes[s->node].op_type);
        lp_json_begin_row_array(w, "inputs");
        for (int k = 0; k < s->n_inputs; k++) arg_json(w, L, NULL, &s->inputs[k]);
        lp_json_end(w);
        lp_json_begin_row_array(w, "outputs");
        for (int k = 0; k < s->n_outputs; k++) arg_json(w, L, NULL, &s->outputs[k]);
        lp_json_end(w);
        lp_json_int(w, "workspace_offset", (int64_t)s->workspace_offset);
        lp_json_int(w, "workspace_bytes", (int64_t)s->workspace_bytes);
        break;
    }
    case LP_STEP_RECEIVE:
        lp_json_string(w, "value", name_of(L, s->value));
        peer_json(w, "from", s->peer);
        arg_json(w, L, "buffer", &s->buffer);
        arg_json(w, L, "slot", &s->slot);
        break;
    case LP_STEP_SEND:
        lp_json_string(w, "value", name_of(L, s->value));
        peer_json(w, "to", s->peer);
        arg_json(w, L, "slot", &s->slot);
        arg_json(w, L, "buffer", &s->buffer);
        break;
    case LP_STEP_ALL_GATHER:
        lp_json_string(w, "value", name_of(L, s->value));
        lp_json_int(w, "first_card", s->first_card);
        lp_json_int(w, "n_cards", s->n_cards);
        lp_json_int(w, "rank", s->rank);
        lp_json_int(w, "axis", s->axis);
        arg_json(w, L, "slice", &s->slice);
        arg_json(w, L, "whole", &s->whole);
        arg_json(w, L, "slot", &s->slot);
        break;
    }
    lp_json_end(w);
}

void lp_program_write_json(const lp_program *prog, const lp_layer_ir *L, lp_json_out *w) {
    lp_json_begin_object(w, NULL);
    lp_json_begin_array(w, "cards");
    for (int c = 0; c < prog->n_cards; c++) {
        const lp_card_program *cp = &prog->cards[c];
        lp_json_begin_object(w, NULL);
        lp_json_int(w, "card", cp->card);
        lp_json_int(w, "shard", cp->shard);
        lp_json_int(w, "n_shards", cp->n_shards);
        lp_json_int(w, "total_bytes", cp->memory ? (int64_t)cp->memory->total_bytes : 0);
        lp_json_begin_array(w, "phases");
        for (int P = 0; P < cp->n_phases; P++) {
            const lp_phase *ph = &cp->phases[P];
            lp_json_begin_row_object(w, NULL);
            lp_json_int(w, "phase", P);
            lp_json_int(w, "first_step", ph->first_step);
            lp_json_int(w, "n_steps", ph->n_steps);
            lp_json_int(w, "gathered", ph->gathered);
            lp_json_int(w, "sliced", ph->sliced);
            lp_json_bool(w, "gather_only", ph->gather_only);
            names_json(w, L, "inputs", ph->inputs, ph->n_inputs);
            names_json(w, L, "outputs", ph->outputs, ph->n_outputs);
            lp_json_end(w);
        }
        lp_json_end(w);
        lp_json_begin_array(w, "steps");
        for (int s = 0; s < cp->n_steps; s++) step_json(w, L, s, &cp->steps[s]);
        lp_json_end(w);
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_end(w);
}
