/* Plans out: the per-card text report, plan.json (and reading its cuts
 * back) and Graphviz; the per-card ONNX models are in shard_submodels.c. */
#define _GNU_SOURCE
#include "lp_partition.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *layer_name(const lp_layer_ir *L, int i) {
    return L->layers[i].name ? L->layers[i].name : "";
}

static double fill(const lp_plan_card *c) {
    return c->capacity ? 100.0 * (double)c->fp.total / (double)c->capacity : 0;
}

/* "  memory ..." for card c: the regions of its one allocation. */
static void dump_card_memory(const lp_card_memory *m, FILE *out) {
    char b[6][32];
    fprintf(out, "  memory  weights %s (%d)  boundary %s (%d)  arena %s (%d slots)  workspace %s  "
            "= %s allocated\n",
            lp_format_bytes(m->weights_bytes, b[0]), m->n_weights, lp_format_bytes(m->boundary_bytes, b[1]),
            m->n_boundary, lp_format_bytes(m->arena_bytes, b[2]), m->n_slots,
            lp_format_bytes(m->workspace_bytes, b[3]), lp_format_bytes(m->total_bytes, b[4]));
}

/* The per-card table: one row per card, a totals row below. Columns are
 * as wide as their widest cell, so the table stays aligned for any plan. */
enum { COL_CARD, COL_LAYERS, COL_WEIGHTS, COL_ACT, COL_BUF, COL_BOUNDARY, COL_ALIGN, COL_TOTAL,
       COL_FILL, COL_STAGE, COL_IN, COL_OUT, N_COLS };
#define CELL 40

static const char *const col_head[N_COLS] = {"card",     "layers", "weights", "activations",
                                             "buffers",  "boundary", "alignment", "total",
                                             "fill",     "stage_us", "in", "out"};

static void card_cells(const lp_plan_card *pc, char cell[N_COLS][CELL]) {
    snprintf(cell[COL_CARD], CELL, "%d", pc->card);
    if (pc->n_shards > 1)
        snprintf(cell[COL_LAYERS], CELL, "%d [%d/%d]", pc->first_layer, pc->shard + 1, pc->n_shards);
    else
        snprintf(cell[COL_LAYERS], CELL, "%d..%d", pc->first_layer, pc->last_layer);
    lp_format_bytes(pc->fp.weight_bytes, cell[COL_WEIGHTS]);
    lp_format_bytes(pc->fp.activation_bytes, cell[COL_ACT]);
    lp_format_bytes(pc->fp.buffer_bytes, cell[COL_BUF]);
    lp_format_bytes(pc->fp.boundary_bytes, cell[COL_BOUNDARY]);
    lp_format_bytes(pc->fp.padding_bytes, cell[COL_ALIGN]);
    lp_format_bytes(pc->fp.total, cell[COL_TOTAL]);
    snprintf(cell[COL_FILL], CELL, "%.1f%%%s", fill(pc), pc->fp.total > pc->capacity ? "*" : "");
    snprintf(cell[COL_STAGE], CELL, "%.2f", pc->stage_s * 1e6);
    lp_format_bytes(pc->bytes_in, cell[COL_IN]);
    lp_format_bytes(pc->bytes_out, cell[COL_OUT]);
}

static void table_row(FILE *out, char cell[N_COLS][CELL], const int *width) {
    for (int k = 0; k < N_COLS; k++) /* the layers column reads left-aligned */
        fprintf(out, k == COL_LAYERS ? "  %-*s" : k ? "  %*s" : "%*s", width[k], cell[k]);
    fputc('\n', out);
}

/* -v: what a card holds, beyond its row. */
static void dump_card_details(const lp_plan *p, const lp_layer_ir *L, int c, const lp_card_memory *m,
                              FILE *out) {
    const lp_plan_card *pc = &p->cards[c];
    char b[3][32];
    if (pc->n_shards > 1)
        fprintf(out, "card %d  layer %d (%s) shard %d of %d\n", c, pc->first_layer,
                layer_name(L, pc->first_layer), pc->shard + 1, pc->n_shards);
    else
        fprintf(out, "card %d  layers %d..%d (%s .. %s)\n", c, pc->first_layer, pc->last_layer,
                layer_name(L, pc->first_layer), layer_name(L, pc->last_layer));
    fprintf(out, "  capacity %s  %.3g GFLOP  received %s  sent %s  %d input%s  %d output%s\n",
            lp_format_bytes(pc->capacity, b[0]), (double)pc->flops / 1e9, lp_format_bytes(pc->bytes_in, b[1]),
            lp_format_bytes(pc->bytes_out, b[2]), pc->n_inputs, pc->n_inputs == 1 ? "" : "s",
            pc->n_outputs, pc->n_outputs == 1 ? "" : "s");
    if (m) dump_card_memory(m, out);
}

void lp_plan_dump_text(const lp_plan *p, const lp_layer_ir *L, bool verbose, FILE *out) {
    char b[8][32];
    fprintf(out, "plan %s: %s on %s, C = %s%s\n", p->model, lp_algo_name(p->algo), p->target.name,
            lp_format_bytes(p->caps[0], b[0]), p->n_caps > 1 ? " (first card; unequal cards)" : "");
    int width[N_COLS], largest = 0, over = 0, n_gathers = 0;
    char cell[N_COLS][CELL];
    for (int k = 0; k < N_COLS; k++) width[k] = (int)strlen(col_head[k]);
    lp_footprint sum = {0};
    uint64_t sum_in = 0, sum_out = 0;
    for (int c = 0; c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        card_cells(pc, cell);
        for (int k = 0; k < N_COLS; k++)
            if ((int)strlen(cell[k]) > width[k]) width[k] = (int)strlen(cell[k]);
        if (pc->fp.total > p->cards[largest].fp.total) largest = c;
        over += pc->fp.total > pc->capacity;
        sum.weight_bytes += pc->fp.weight_bytes;
        sum.activation_bytes += pc->fp.activation_bytes;
        sum.buffer_bytes += pc->fp.buffer_bytes;
        sum.boundary_bytes += pc->fp.boundary_bytes;
        sum.padding_bytes += pc->fp.padding_bytes;
        sum.total += pc->fp.total;
        sum_in += pc->bytes_in;
        sum_out += pc->bytes_out;
    }
    char total[N_COLS][CELL] = {{0}};
    snprintf(total[COL_CARD], CELL, "sum");
    lp_format_bytes(sum.weight_bytes, total[COL_WEIGHTS]);
    lp_format_bytes(sum.activation_bytes, total[COL_ACT]);
    lp_format_bytes(sum.buffer_bytes, total[COL_BUF]);
    lp_format_bytes(sum.boundary_bytes, total[COL_BOUNDARY]);
    lp_format_bytes(sum.padding_bytes, total[COL_ALIGN]);
    lp_format_bytes(sum.total, total[COL_TOTAL]);
    lp_format_bytes(sum_in, total[COL_IN]);
    lp_format_bytes(sum_out, total[COL_OUT]);
    for (int k = 0; k < N_COLS; k++)
        if ((int)strlen(total[k]) > width[k]) width[k] = (int)strlen(total[k]);
    char head[N_COLS][CELL];
    for (int k = 0; k < N_COLS; k++) snprintf(head[k], CELL, "%s", col_head[k]);
    table_row(out, head, width);
    for (int c = 0; c < p->n_cards; c++) {
        card_cells(&p->cards[c], cell);
        table_row(out, cell, width);
    }
    table_row(out, total, width);
    if (over)
        fprintf(out, "* %d card%s over C: %s working set is not on-chip\n", over, over == 1 ? "" : "s",
                over == 1 ? "its" : "their");
    if (verbose) {
        lp_arena *ma = lp_arena_new();
        lp_card_memory *mem = NULL;
        lp_diag quiet = lp_diag_make(NULL);
        quiet.sink = NULL;
        if (ma && lp_plan_memory(p, L, ma, &mem, &quiet) != LP_OK) mem = NULL;
        for (int c = 0; c < p->n_cards; c++) dump_card_details(p, L, c, mem ? &mem[c] : NULL, out);
        lp_arena_free(ma);
    }
    for (int i = 0; i < p->n_shards; i++) {
        const lp_shard *sh = &p->shards[i];
        fprintf(out, "shard   layer %d (%s) over cards %d..%d: %d weight%s split by output columns\n",
                sh->layer, layer_name(L, sh->layer), sh->first_card, sh->first_card + sh->n_shards - 1,
                sh->n_weights, sh->n_weights == 1 ? "" : "s");
        for (int k = 0; k < sh->n_weights; k++) {
            int64_t b0, e0;
            lp_shard_range(sh->weights[k].dim, sh->n_shards, 0, &b0, &e0);
            fprintf(out, "  %s: axis %d of %" PRId64 ", card %d holds %" PRId64 "..%" PRId64 ", ...\n",
                    L->g->values[sh->weights[k].weight].name, sh->weights[k].weight_axis,
                    sh->weights[k].dim, sh->first_card, b0, e0);
        }
    }
    for (int t = 0; t < p->n_transfers; t++) n_gathers += p->transfers[t].kind == LP_TRANSFER_ALL_GATHER;
    fprintf(out, "total   %d card%s, largest group %s on card %d, %d transfer%s (%d cut%s, %d all-gather%s)\n",
            p->n_cards, p->n_cards == 1 ? "" : "s", lp_format_bytes(p->cards[largest].fp.total, b[0]),
            largest, p->n_transfers, p->n_transfers == 1 ? "" : "s", p->n_transfers - n_gathers,
            p->n_transfers - n_gathers == 1 ? "" : "s", n_gathers, n_gathers == 1 ? "" : "s");
    fprintf(out, "predict slowest stage %.2f us, latency %.2f us", p->slowest_s * 1e6, p->latency_s * 1e6);
    if (p->tokens && p->slowest_s > 0)
        fprintf(out, ", %.4g tokens/s (%" PRIu64 " tokens a step)", (double)p->tokens / p->slowest_s,
                p->tokens);
    fputc('\n', out);
}

static json_t *json_u64(uint64_t v) { return json_integer((json_int_t)v); }

static json_t *value_names(const lp_layer_ir *L, const int32_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_string(L->g->values[v[i]].name));
    return a;
}

/* An all-gather in plan.json: the value's bytes, the axis, the
 * participants first_card .. first_card + n_cards - 1 and what each
 * contributes ({"card", "begin", "end", "bytes"}). */
static void transfer_gather_json(const lp_transfer *t, json_t *o) {
    json_t *parts = json_array();
    for (int k = 0; parts && k < t->n_cards; k++) {
        int64_t b, e;
        lp_transfer_range(t, k, &b, &e);
        json_array_append_new(parts, json_pack("{s:i, s:I, s:I, s:I}", "card", t->first_card + k, "begin",
                                               (json_int_t)b, "end", (json_int_t)e, "bytes",
                                               (json_int_t)lp_transfer_slice_bytes(t, k)));
    }
    json_object_set_new(o, "kind", json_string("all_gather"));
    json_object_set_new(o, "bytes", json_u64(t->bytes));
    json_object_set_new(o, "axis", json_integer(t->axis));
    json_object_set_new(o, "dim", json_integer(t->dim));
    json_object_set_new(o, "first_card", json_integer(t->first_card));
    json_object_set_new(o, "n_cards", json_integer(t->n_cards));
    json_object_set_new(o, "participants", parts);
}

/* Per sharded layer: its cards and, per split weight, every card's columns,
 * which is what a code generator slices the weights by. */
static json_t *shards_json(const lp_plan *p, const lp_layer_ir *L) {
    json_t *a = json_array();
    for (int i = 0; a && i < p->n_shards; i++) {
        const lp_shard *sh = &p->shards[i];
        json_t *o = json_object(), *ws = json_array();
        json_object_set_new(o, "layer", json_integer(sh->layer));
        json_object_set_new(o, "layer_name", json_string(layer_name(L, sh->layer)));
        json_object_set_new(o, "first_card", json_integer(sh->first_card));
        json_object_set_new(o, "n_shards", json_integer(sh->n_shards));
        for (int k = 0; k < sh->n_weights; k++) {
            const lp_shard_weight *w = &sh->weights[k];
            json_t *wo = json_object(), *ranges = json_array();
            json_object_set_new(wo, "weight", json_string(L->g->values[w->weight].name));
            json_object_set_new(wo, "node", json_string(L->g->nodes[w->node].name));
            json_object_set_new(wo, "output", json_string(L->g->values[w->output].name));
            json_object_set_new(wo, "weight_axis", json_integer(w->weight_axis));
            json_object_set_new(wo, "output_axis", json_integer(w->output_axis));
            json_object_set_new(wo, "dim", json_integer(w->dim));
            for (int c = 0; c < sh->n_shards; c++) {
                int64_t b, e;
                lp_shard_range(w->dim, sh->n_shards, c, &b, &e);
                json_array_append_new(ranges, json_pack("[II]", (json_int_t)b, (json_int_t)e));
            }
            json_object_set_new(wo, "ranges", ranges);
            json_array_append_new(ws, wo);
        }
        json_object_set_new(o, "weights", ws);
        json_array_append_new(a, o);
    }
    return a;
}

void *lp_plan_to_json(const lp_plan *p, const lp_layer_ir *L) {
    /* each card's memory plan is recomputed from the cuts, never read back */
    lp_arena *ma = lp_arena_new();
    lp_card_memory *mem = NULL;
    lp_diag quiet = lp_diag_make(NULL);
    quiet.sink = NULL;
    json_t *j = json_object(), *cards = json_array(), *tr = json_array(), *caps = json_array();
    if (!j || !cards || !tr || !caps || !ma || lp_plan_memory(p, L, ma, &mem, &quiet) != LP_OK) {
        json_decref(j), json_decref(cards), json_decref(tr), json_decref(caps);
        lp_arena_free(ma);
        return NULL;
    }
    json_object_set_new(j, "model", json_string(p->model));
    json_object_set_new(j, "algorithm", json_string(lp_algo_name(p->algo)));
    json_object_set_new(j, "target", lp_target_to_json(&p->target));
    for (int i = 0; i < p->n_caps; i++) json_array_append_new(caps, json_u64(p->caps[i]));
    json_object_set_new(j, "capacities", caps);
    json_object_set_new(j, "cards_requested", json_integer(p->max_cards));
    json_object_set_new(j, "n_layers", json_integer(p->n_layers));
    json_t *cuts = json_array();
    for (int c = 0; c + 1 < p->n_cards; c++) json_array_append_new(cuts, json_integer(p->cards[c].last_layer));
    json_object_set_new(j, "cuts_after", cuts);
    uint64_t largest = 0;
    for (int c = 0; c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        if (pc->fp.total > largest) largest = pc->fp.total;
        json_t *o = json_object();
        json_object_set_new(o, "card", json_integer(c));
        json_object_set_new(o, "first_layer", json_integer(pc->first_layer));
        json_object_set_new(o, "last_layer", json_integer(pc->last_layer));
        json_object_set_new(o, "first_layer_name", json_string(layer_name(L, pc->first_layer)));
        json_object_set_new(o, "last_layer_name", json_string(layer_name(L, pc->last_layer)));
        json_object_set_new(o, "shard", json_integer(pc->shard));
        json_object_set_new(o, "n_shards", json_integer(pc->n_shards));
        json_object_set_new(o, "capacity", json_u64(pc->capacity));
        json_object_set_new(o, "weight_bytes", json_u64(pc->fp.weight_bytes));
        json_object_set_new(o, "activation_bytes", json_u64(pc->fp.activation_bytes));
        json_object_set_new(o, "buffer_bytes", json_u64(pc->fp.buffer_bytes));
        json_object_set_new(o, "boundary_bytes", json_u64(pc->fp.boundary_bytes));
        json_object_set_new(o, "padding_bytes", json_u64(pc->fp.padding_bytes));
        json_object_set_new(o, "total_bytes", json_u64(pc->fp.total));
        json_object_set_new(o, "fill", json_real(fill(pc) / 100.0));
        json_object_set_new(o, "flops", json_u64(pc->flops));
        json_object_set_new(o, "bytes_in", json_u64(pc->bytes_in));
        json_object_set_new(o, "bytes_out", json_u64(pc->bytes_out));
        json_object_set_new(o, "stage_s", json_real(pc->stage_s));
        json_object_set_new(o, "weights", value_names(L, pc->weights, pc->n_weights));
        json_object_set_new(o, "inputs", value_names(L, pc->inputs, pc->n_inputs));
        json_object_set_new(o, "outputs", value_names(L, pc->outputs, pc->n_outputs));
        json_object_set_new(o, "memory", lp_card_memory_to_json(&mem[c], L));
        json_array_append_new(cards, o);
    }
    json_object_set_new(j, "cards", cards);
    for (int t = 0; t < p->n_transfers; t++) {
        json_t *o = json_object();
        json_object_set_new(o, "value", json_string(L->g->values[p->transfers[t].value].name));
        if (p->transfers[t].kind == LP_TRANSFER_ALL_GATHER)
            transfer_gather_json(&p->transfers[t], o);
        else {
            json_object_set_new(o, "from_card", json_integer(p->transfers[t].from_card));
            json_object_set_new(o, "to_card", json_integer(p->transfers[t].to_card));
            json_object_set_new(o, "bytes", json_u64(p->transfers[t].bytes));
            json_object_set_new(o, "kind", json_string("cut"));
        }
        json_array_append_new(tr, o);
    }
    json_object_set_new(j, "transfers", tr);
    json_object_set_new(j, "shards", shards_json(p, L));
    json_t *tot = json_object();
    json_object_set_new(tot, "cards_used", json_integer(p->n_cards));
    json_object_set_new(tot, "largest_group_bytes", json_u64(largest));
    json_object_set_new(tot, "slowest_stage_s", json_real(p->slowest_s));
    json_object_set_new(tot, "latency_s", json_real(p->latency_s));
    json_object_set_new(tot, "tokens_per_step", json_u64(p->tokens));
    json_object_set_new(tot, "tokens_per_s",
                        json_real(p->slowest_s > 0 ? (double)p->tokens / p->slowest_s : 0));
    json_object_set_new(j, "totals", tot);
    lp_arena_free(ma);
    return j;
}

lp_status lp_plan_load_ends(const char *path, const lp_layer_ir *L, int **ends, int *n_groups,
                            lp_partition_options *opt, uint64_t **caps, int **shard_counts,
                            lp_diag *d) {
    json_error_t err;
    *ends = NULL;
    *caps = NULL;
    *shard_counts = NULL;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return lp_error(d, LP_ERR_USAGE, "plan '%s': %s (line %d)", path, err.text, err.line);
    lp_status st = LP_OK;
    json_t *cards = json_object_get(j, "cards"), *jc = json_object_get(j, "capacities");
    const char *algo = json_string_value(json_object_get(j, "algorithm"));
    size_t n = json_array_size(cards), nc = json_array_size(jc);
    if (!n || !nc || !algo || !lp_algo_from_name(algo, &opt->algo))
        st = lp_error(d, LP_ERR_USAGE, "plan '%s': needs 'cards', 'capacities' and 'algorithm'", path);
    if (st == LP_OK) {
        *ends = malloc(sizeof(int) * n);
        *caps = malloc(sizeof(uint64_t) * nc);
        *shard_counts = calloc((size_t)L->n_layers + 1, sizeof(int));
        if (!*ends || !*caps || !*shard_counts) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    for (size_t i = 0; st == LP_OK && i < nc; i++) {
        json_t *v = json_array_get(jc, i);
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
            st = lp_error(d, LP_ERR_USAGE, "plan '%s': capacity %zu is not a positive integer", path, i);
        else
            (*caps)[i] = (uint64_t)json_integer_value(v);
    }
    size_t groups = 0;
    for (size_t i = 0; st == LP_OK && i < n; i++) {
        json_t *c = json_array_get(cards, i);
        json_t *last = json_object_get(c, "last_layer");
        /* the cards of a sharded layer are one group; shard 0 carries the count */
        json_int_t shard = json_integer_value(json_object_get(c, "shard"));
        json_int_t n_shards = json_integer_value(json_object_get(c, "n_shards"));
        if (n_shards > 1 && (shard < 0 || shard >= n_shards || n_shards > LP_MAX_SHARDS)) {
            st = lp_error(d, LP_ERR_USAGE, "plan '%s': card %zu: shard %lld of %lld", path, i,
                          (long long)shard, (long long)n_shards);
            break;
        }
        if (n_shards > 1 && shard > 0) continue;
        const char *name = json_string_value(json_object_get(c, "last_layer_name"));
        if (!json_is_integer(last) || json_integer_value(last) < 0 ||
            json_integer_value(last) >= L->n_layers) {
            st = lp_error(d, LP_ERR_USAGE, "plan '%s': card %zu: last_layer missing or not in 0..%d", path,
                          i, L->n_layers - 1);
            break;
        }
        int end = (int)json_integer_value(last);
        (*ends)[groups++] = end;
        if (n_shards > 1) (*shard_counts)[end] = (int)n_shards;
        if (name && strcmp(name, layer_name(L, end)) != 0)
            st = lp_error(d, LP_ERR_USAGE, "plan '%s': card %zu ends at layer %d '%s' but this model's "
                          "layer %d is '%s' (a plan for another model or other options?)",
                          path, i, end, name, end, layer_name(L, end));
    }
    /* each card's "memory" is not read: it follows from the cuts and is
     * recomputed when the plan is rebuilt */
    /* the profile the plan was made for, built in or not */
    json_t *t = json_object_get(j, "target");
    if (st == LP_OK && t) st = lp_target_from_json(t, path, &opt->target, d);
    json_t *req = json_object_get(j, "cards_requested");
    if (st == LP_OK && req && (!json_is_integer(req) || json_integer_value(req) < 0 ||
                               json_integer_value(req) > 1 << 20))
        st = lp_error(d, LP_ERR_USAGE, "plan '%s': cards_requested is not a count in 0..%d", path, 1 << 20);
    if (st == LP_OK && req) opt->cards = (int)json_integer_value(req);
    if (st == LP_OK) {
        *n_groups = (int)groups;
        opt->n_caps = (int)nc;
        opt->caps = *caps;
        opt->shard_counts = *shard_counts;
    } else {
        free(*ends);
        free(*caps);
        free(*shard_counts);
        *ends = NULL;
        *caps = NULL;
        *shard_counts = NULL;
    }
    json_decref(j);
    return st;
}

/* Writes s with the characters a DOT string cannot hold escaped. */
static void dot_quoted(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

/* First layer of card c that reads v (the card's first layer if none). */
static int reader_layer(const lp_plan *p, const lp_layer_ir *L, int c, int32_t v) {
    const lp_plan_card *pc = &p->cards[c];
    for (int i = pc->first_layer; i <= pc->last_layer; i++)
        for (int k = 0; k < L->layers[i].n_inputs; k++)
            if (L->layers[i].inputs[k] == v) return i;
    return pc->first_layer;
}

/* An all-gather is one node, g<t>, labelled with the value and its bytes,
 * joined to each participant by an edge labelled with its columns: the
 * drawing grows with the participants, not their pairs. */
static void dot_gather(FILE *f, const lp_plan *p, const lp_layer_ir *L, const lp_transfer *tr,
                       int t) {
    char b[32];
    fprintf(f, "  g%d [shape=ellipse, color=blue, label=\"all-gather ", t);
    dot_quoted(f, L->g->values[tr->value].name);
    fprintf(f, "\\naxis %d, %d cards\\n%" PRIu64 " B (%s)\"];\n", tr->axis, tr->n_cards, tr->bytes,
            lp_format_bytes(tr->bytes, b));
    for (int k = 0; k < tr->n_cards; k++) {
        int c = tr->first_card + k;
        int64_t lo, hi;
        lp_transfer_range(tr, k, &lo, &hi);
        fprintf(f, "  c%d_L%d -> g%d [color=blue, dir=both, label=\"[%" PRId64 ":%" PRId64 "]\"];\n", c,
                p->cards[c].first_layer, t, lo, hi);
    }
}

/* Nodes are named c<card>_L<layer>, so a layer sharded over several cards
 * appears once in each card's cluster. */
lp_status lp_plan_write_dot(const lp_plan *p, const lp_layer_ir *L, const char *path, lp_diag *d) {
    /* a fresh temporary beside `path`, renamed over it when complete */
    lp_atomic_file af;
    FILE *f = lp_atomic_open(&af, path, d);
    if (!f) return LP_ERR_OUTPUT;
    char b[32];
    fputs("digraph plan {\n  rankdir=TB;\n  node [shape=box];\n", f);
    for (int c = 0; c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        fprintf(f, "  subgraph cluster_card%d {\n    label=\"card %d", c, c);
        if (pc->n_shards > 1) fprintf(f, " (shard %d of %d)", pc->shard + 1, pc->n_shards);
        fprintf(f, ": %s (%.0f%%)\";\n", lp_format_bytes(pc->fp.total, b), fill(pc));
        for (int i = pc->first_layer; i <= pc->last_layer; i++) {
            fprintf(f, "    c%d_L%d [label=\"%d ", c, i, i);
            dot_quoted(f, layer_name(L, i));
            fputs("\"];\n", f);
        }
        for (int i = pc->first_layer; i < pc->last_layer; i++)
            fprintf(f, "    c%d_L%d -> c%d_L%d;\n", c, i, c, i + 1);
        fputs("  }\n", f);
    }
    for (int t = 0; t < p->n_transfers; t++) {
        const lp_transfer *tr = &p->transfers[t];
        if (tr->kind == LP_TRANSFER_ALL_GATHER) {
            dot_gather(f, p, L, tr, t);
            continue;
        }
        int from = p->cards[tr->from_card].first_layer;
        int producer = L->g->values[tr->value].producer;
        if (producer >= 0) from = L->layer_of_node[producer];
        if (from < p->cards[tr->from_card].first_layer || from > p->cards[tr->from_card].last_layer)
            from = p->cards[tr->from_card].last_layer;
        int to = reader_layer(p, L, tr->to_card, tr->value);
        fprintf(f, "  c%d_L%d -> c%d_L%d [color=red, label=\"", tr->from_card, from, tr->to_card, to);
        dot_quoted(f, L->g->values[tr->value].name);
        fprintf(f, "\\n%" PRIu64 " B (%s)\"];\n", tr->bytes, lp_format_bytes(tr->bytes, b));
    }
    fputs("}\n", f);
    return lp_atomic_commit(&af, d);
}
