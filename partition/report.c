/* Plans out: the per-card text report, plan.json (and reading its cuts
 * back) and Graphviz; the per-card ONNX models are in shard_submodels.c. */
#define _GNU_SOURCE
#include "lp_partition.h"
#include "json_out.h"

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
    if (verbose) /* the stored memory plan; none before the memory stage */
        for (int c = 0; c < p->n_cards; c++) dump_card_details(p, L, c, p->cards[c].memory, out);
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

/* Sets o[key] = v; a NULL v (out of memory) or a failed set drops o. */
static json_t *set(json_t *o, const char *key, json_t *v) {
    if (!o || !v || json_object_set_new(o, key, v) != 0) {
        json_decref(o);
        if (!o) json_decref(v);
        return NULL;
    }
    return o;
}

/* Appends v to a; a NULL v or a failed append drops a. */
static json_t *append(json_t *a, json_t *v) {
    if (!a || !v || json_array_append_new(a, v) != 0) {
        json_decref(a);
        if (!a) json_decref(v);
        return NULL;
    }
    return a;
}

static void value_names(lp_json_out *w, const char *key, const lp_layer_ir *L, const int32_t *v, int n) {
    lp_json_begin_row_array(w, key);
    for (int i = 0; i < n; i++) lp_json_string(w, NULL, L->g->values[v[i]].name);
    lp_json_end(w);
}

/* One sharded layer: its cards and, per split weight, every card's columns,
 * which is what a code generator slices the weights by. */
static json_t *shard_json(const lp_plan *p, const lp_layer_ir *L, int i) {
    const lp_shard *sh = &p->shards[i];
    json_t *o = json_object(), *ws = json_array();
    o = set(o, "layer", json_integer(sh->layer));
    o = set(o, "layer_name", lp_json_name(layer_name(L, sh->layer)));
    o = set(o, "first_card", json_integer(sh->first_card));
    o = set(o, "n_shards", json_integer(sh->n_shards));
    for (int k = 0; ws && k < sh->n_weights; k++) {
        const lp_shard_weight *w = &sh->weights[k];
        json_t *wo = json_object(), *ranges = json_array();
        wo = set(wo, "weight", lp_json_name(L->g->values[w->weight].name));
        wo = set(wo, "node", lp_json_name(L->g->nodes[w->node].name));
        wo = set(wo, "output", lp_json_name(L->g->values[w->output].name));
        wo = set(wo, "weight_axis", json_integer(w->weight_axis));
        wo = set(wo, "output_axis", json_integer(w->output_axis));
        wo = set(wo, "dim", json_integer(w->dim));
        for (int c = 0; ranges && c < sh->n_shards; c++) {
            int64_t b, e;
            lp_shard_range(w->dim, sh->n_shards, c, &b, &e);
            ranges = append(ranges, json_pack("[II]", (json_int_t)b, (json_int_t)e));
        }
        wo = set(wo, "ranges", ranges);
        ws = append(ws, wo);
    }
    return set(o, "weights", ws);
}

static void card_json(lp_json_out *w, const lp_plan *p, const lp_layer_ir *L, int c) {
    const lp_plan_card *pc = &p->cards[c];
    lp_json_begin_row_object(w, NULL);
    lp_json_int(w, "card", c);
    lp_json_int(w, "first_layer", pc->first_layer);
    lp_json_int(w, "last_layer", pc->last_layer);
    lp_json_string(w, "first_layer_name", layer_name(L, pc->first_layer));
    lp_json_string(w, "last_layer_name", layer_name(L, pc->last_layer));
    lp_json_int(w, "shard", pc->shard);
    lp_json_int(w, "n_shards", pc->n_shards);
    lp_json_int(w, "capacity", (int64_t)pc->capacity);
    lp_json_int(w, "weight_bytes", (int64_t)pc->fp.weight_bytes);
    lp_json_int(w, "activation_bytes", (int64_t)pc->fp.activation_bytes);
    lp_json_int(w, "buffer_bytes", (int64_t)pc->fp.buffer_bytes);
    lp_json_int(w, "boundary_bytes", (int64_t)pc->fp.boundary_bytes);
    lp_json_int(w, "padding_bytes", (int64_t)pc->fp.padding_bytes);
    lp_json_int(w, "total_bytes", (int64_t)pc->fp.total);
    lp_json_put(w, "fill", json_real(fill(pc) / 100.0));
    lp_json_int(w, "flops", (int64_t)pc->flops);
    lp_json_int(w, "bytes_in", (int64_t)pc->bytes_in);
    lp_json_int(w, "bytes_out", (int64_t)pc->bytes_out);
    lp_json_put(w, "stage_s", json_real(pc->stage_s));
    value_names(w, "weights", L, pc->weights, pc->n_weights);
    value_names(w, "inputs", L, pc->inputs, pc->n_inputs);
    value_names(w, "outputs", L, pc->outputs, pc->n_outputs);
    lp_card_memory_write_json(pc->memory, L, "memory", w);
    lp_json_end(w);
}

/* One entry of "transfers": a cut, or an all-gather with its participants
 * first_card .. first_card + n_cards - 1 and what each contributes. */
static void transfer_json(lp_json_out *w, const lp_plan *p, const lp_layer_ir *L, int t) {
    const lp_transfer *tr = &p->transfers[t];
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "value", L->g->values[tr->value].name);
    if (tr->kind == LP_TRANSFER_ALL_GATHER) {
        lp_json_string(w, "kind", "all_gather");
        lp_json_int(w, "bytes", (int64_t)tr->bytes);
        lp_json_int(w, "axis", tr->axis);
        lp_json_int(w, "dim", tr->dim);
        lp_json_int(w, "first_card", tr->first_card);
        lp_json_int(w, "n_cards", tr->n_cards);
        lp_json_begin_row_array(w, "participants");
        for (int k = 0; k < tr->n_cards; k++) {
            int64_t b, e;
            lp_transfer_range(tr, k, &b, &e);
            lp_json_begin_row_object(w, NULL);
            lp_json_int(w, "card", tr->first_card + k);
            lp_json_int(w, "begin", b);
            lp_json_int(w, "end", e);
            lp_json_int(w, "bytes", (int64_t)lp_transfer_slice_bytes(tr, k));
            lp_json_end(w);
        }
        lp_json_end(w);
    } else {
        lp_json_int(w, "from_card", tr->from_card);
        lp_json_int(w, "to_card", tr->to_card);
        lp_json_int(w, "bytes", (int64_t)tr->bytes);
        lp_json_string(w, "kind", "cut");
    }
    lp_json_end(w);
}

static json_t *totals_json(const lp_plan *p) {
    uint64_t largest = 0;
    for (int c = 0; c < p->n_cards; c++)
        if (p->cards[c].fp.total > largest) largest = p->cards[c].fp.total;
    json_t *tot = json_object();
    tot = set(tot, "cards_used", json_integer(p->n_cards));
    tot = set(tot, "largest_group_bytes", json_u64(largest));
    tot = set(tot, "slowest_stage_s", json_real(p->slowest_s));
    tot = set(tot, "latency_s", json_real(p->latency_s));
    tot = set(tot, "tokens_per_step", json_u64(p->tokens));
    return set(tot, "tokens_per_s", json_real(p->slowest_s > 0 ? (double)p->tokens / p->slowest_s : 0));
}

void lp_plan_write_json(const lp_plan *p, const lp_layer_ir *L, const void *extra, lp_json_out *w) {
    /* each card's stored memory plan (the memory stage's): a plan without
     * one has no plan.json */
    for (int c = 0; c < p->n_cards; c++)
        if (!p->cards[c].memory) {
            lp_json_put(w, NULL, NULL); /* marks the document failed */
            return;
        }
    lp_json_begin_object(w, NULL);
    lp_json_put(w, "model", lp_json_name(p->model));
    lp_json_put(w, "algorithm", json_string(lp_algo_name(p->algo)));
    lp_json_put(w, "target", lp_target_to_json(&p->target));
    json_t *caps = json_array();
    for (int i = 0; caps && i < p->n_caps; i++) caps = append(caps, json_u64(p->caps[i]));
    lp_json_put(w, "capacities", caps);
    lp_json_put(w, "cards_requested", json_integer(p->max_cards));
    lp_json_put(w, "n_layers", json_integer(p->n_layers));
    json_t *cuts = json_array();
    for (int c = 0; cuts && c + 1 < p->n_cards; c++) cuts = append(cuts, json_integer(p->cards[c].last_layer));
    lp_json_put(w, "cuts_after", cuts);
    lp_json_begin_array(w, "cards");
    for (int c = 0; c < p->n_cards; c++) card_json(w, p, L, c);
    lp_json_end(w);
    lp_json_begin_array(w, "transfers");
    for (int t = 0; t < p->n_transfers; t++) transfer_json(w, p, L, t);
    lp_json_end(w);
    lp_json_begin_array(w, "shards");
    for (int i = 0; i < p->n_shards; i++) lp_json_put(w, NULL, shard_json(p, L, i));
    lp_json_end(w);
    lp_json_put(w, "totals", totals_json(p));
    if (extra) lp_json_put_members(w, extra);
    lp_json_end(w);
}

void *lp_plan_to_json(const lp_plan *p, const lp_layer_ir *L) {
    lp_json_out *w = lp_json_out_tree();
    lp_plan_write_json(p, L, NULL, w);
    return lp_json_out_take(w);
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
        /* names are compared as plan.json writes them (json_out.h escapes) */
        char *want = name ? lp_json_escape_name(layer_name(L, end)) : NULL;
        if (name && !want)
            st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        else if (name && strcmp(name, want) != 0)
            st = lp_error(d, LP_ERR_USAGE, "plan '%s': card %zu ends at layer %d '%s' but this model's "
                          "layer %d is '%s' (a plan for another model or other options?)",
                          path, i, end, name, end, want);
        free(want);
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
