/* manifest.json: what the runtime needs to load and run the compiled cards,
 * in one document (sizes and offsets in bytes; offsets from the start of the
 * card's one allocation):
 *
 *   {"format": "lpcc-manifest", "version": LP_MANIFEST_VERSION,
 *    "lpcc_version", "model", "dtype" ("float16", ... or "keep"),
 *    "bindings": {dim: value}, "shapes": {input: [dims]}, "target": {...},
 *    "checksum": "crc32",
 *    "cards": [{"card", "first_layer", "last_layer", "shard", "n_shards",
 *               "alignment", "total_bytes",
 *               "program": "resident" (tier smem) or "persistent" (tier l2): the
 *                          group fits the tier's capacity, one shard; else "library",
 *               "regions": {"weights" | "boundary" | "arena" | "workspace":
 *                           {"offset", "bytes"}},
 *               "weights_file": {"file", "bytes", "crc32"} or null (not written),
 *               "weights": [{"value", "dtype", "shape", "offset", "bytes"
 *                            [, "axis", "begin", "end"]}],
 *               "boundary": [{"value", "offset", "bytes", "direction"}]}],
 *    "transfers": [
 *      {"kind": "cut", "value", "bytes", "from", "to",
 *       "src_offset" (the sender's "out" buffer), "dst_offset" (the receiver's "in")},
 *      {"kind": "all_gather", "value", "bytes", "axis", "dim",
 *       "outer", "row_bytes", "column_bytes",
 *       "participants": [{"card", "begin", "end", "bytes", "offset"}]}],
 *    "inputs":  [{"name", "dtype", "shape", "bytes", "cards": [{"card", "offset"}]}],
 *    "outputs": [{"name", "dtype", "shape", "bytes", "cards": [{"card", "offset"}]}]}
 *
 * An all-gather participant's "offset" is its gather buffer (the whole
 * value); its columns [begin, end) of `axis` lie there at offset
 * + o * row_bytes + begin * column_bytes for o in 0 .. outer - 1, each run
 * (end - begin) * column_bytes long. A graph input is written into the "in"
 * buffer of every card listed; a graph output is read from the sender's
 * "out" buffer. */
#include "lp_emit.h"
#include "json_out.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const lp_mem_boundary *find_boundary(const lp_card_memory *m, int32_t v, lp_mem_dir dir) {
    for (int i = 0; m && i < m->n_boundary; i++)
        if (m->boundary[i].value == v && m->boundary[i].dir == dir) return &m->boundary[i];
    return NULL;
}


typedef struct doc_ctx {
    const lp_plan *p;
    const lp_layer_ir *L;
    const lp_manifest_info *mi;
    const char **programs; /* [n_cards]: lp_card_program_kind */
} doc_ctx;

static void put_region(lp_json_out *w, const char *key, uint64_t offset, uint64_t bytes) {
    lp_json_begin_row_object(w, key);
    lp_json_int(w, "offset", (int64_t)offset);
    lp_json_int(w, "bytes", (int64_t)bytes);
    lp_json_end(w);
}

static void put_type(lp_json_out *w, const lp_layer_ir *L, const lp_value *v) {
    const char *name = lp_dtype_name(lp_analysis_value_dtype(L, v));
    lp_json_string(w, "dtype", name ? name : "undefined");
    lp_json_begin_row_array(w, "shape");
    for (int i = 0; i < v->shape.rank; i++) {
        if (v->shape.dims[i].size >= 0)
            lp_json_int(w, NULL, v->shape.dims[i].size);
        else if (v->shape.dims[i].sym)
            lp_json_string(w, NULL, v->shape.dims[i].sym);
        else
            lp_json_null(w, NULL);
    }
    lp_json_end(w);
}

static const char *dir_name(lp_mem_dir d) {
    return d == LP_MEM_IN ? "in" : d == LP_MEM_OUT ? "out" : "gather";
}

/* A card whose group fits its on-chip capacity (tier smem or l2) runs as
 * one persistent program, resident in shared memory for tier smem; the
 * others, and the shards of a layer, as library kernels launched one by one. */
bool lp_card_runs_persistent(const lp_plan *p, int c) {
    const lp_plan_card *pc = &p->cards[c];
    return pc->n_shards == 1 && p->target.tier != LP_TIER_HBM && pc->memory &&
           pc->memory->total_bytes <= pc->capacity;
}

const char *lp_card_program_kind(const lp_plan *p, const lp_layer_ir *L, int c, uint64_t *need,
                                 uint64_t *budget) {
    *need = *budget = 0;
    if (!lp_card_runs_persistent(p, c)) return "library";
    if (p->target.tier != LP_TIER_SMEM) return "persistent";
    uint64_t b = lp_resident_budget(&p->target);
    if (!L || !b) return "resident"; /* the runtime decides at load */
    *budget = b;
    uint64_t held;
    *need = lp_resident_need(L, p->cards[c].first_layer, p->cards[c].last_layer, p->target.sms, &held);
    if (!held) { /* no weight for the tensor cores to hold: the runtime would refuse it */
        *need = *budget = 0;
        return "persistent";
    }
    return *need <= *budget ? "resident" : "persistent";
}

static void put_card(lp_json_out *w, const doc_ctx *x, int c) {
    const lp_plan_card *pc = &x->p->cards[c];
    const lp_card_memory *m = pc->memory;
    const lp_graph *g = x->L->g;
    lp_json_begin_object(w, NULL);
    lp_json_int(w, "card", pc->card);
    lp_json_int(w, "first_layer", pc->first_layer);
    lp_json_int(w, "last_layer", pc->last_layer);
    lp_json_int(w, "shard", pc->shard);
    lp_json_int(w, "n_shards", pc->n_shards);
    lp_json_int(w, "alignment", (int64_t)m->alignment);
    lp_json_int(w, "total_bytes", (int64_t)m->total_bytes);
    lp_json_string(w, "program", x->programs[c]);
    lp_json_begin_object(w, "regions");
    put_region(w, "weights", 0, m->weights_bytes);
    put_region(w, "boundary", m->boundary_offset, m->boundary_bytes);
    put_region(w, "arena", m->arena_offset, m->arena_bytes);
    put_region(w, "workspace", m->workspace_offset, m->workspace_bytes);
    lp_json_end(w);
    const lp_card_blob *b = x->mi->blobs ? &x->mi->blobs[c] : NULL;
    if (b && b->written) {
        lp_json_begin_row_object(w, "weights_file");
        lp_json_string(w, "file", b->file);
        lp_json_int(w, "bytes", (int64_t)b->bytes);
        lp_json_int(w, "crc32", (int64_t)b->crc32);
        lp_json_end(w);
    } else {
        lp_json_null(w, "weights_file");
    }
    lp_json_begin_array(w, "weights");
    for (int k = 0; k < m->n_weights; k++) {
        const lp_mem_weight *e = &m->weights[k];
        lp_json_begin_row_object(w, NULL);
        lp_json_string(w, "value", g->values[e->value].name);
        put_type(w, x->L, &g->values[e->value]);
        lp_json_int(w, "offset", (int64_t)e->offset);
        lp_json_int(w, "bytes", (int64_t)e->bytes);
        if (e->axis >= 0) {
            lp_json_int(w, "axis", e->axis);
            lp_json_int(w, "begin", e->begin);
            lp_json_int(w, "end", e->end);
        }
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_begin_array(w, "boundary");
    for (int k = 0; k < m->n_boundary; k++) {
        const lp_mem_boundary *e = &m->boundary[k];
        lp_json_begin_row_object(w, NULL);
        lp_json_string(w, "value", g->values[e->value].name);
        lp_json_int(w, "offset", (int64_t)e->offset);
        lp_json_int(w, "bytes", (int64_t)e->bytes);
        lp_json_string(w, "direction", dir_name(e->dir));
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_end(w);
}

/* Bytes an index of `axis` of v spans (the product of the later dims, at
 * the deploy dtype), and the count of indices before it. */
static void axis_strides(const lp_layer_ir *L, const lp_value *v, int axis, uint64_t bytes,
                         uint64_t *outer, uint64_t *column) {
    uint64_t numel = 1, inner = 1;
    *outer = 1;
    for (int i = 0; i < v->shape.rank; i++) {
        uint64_t s = v->shape.dims[i].size > 0 ? (uint64_t)v->shape.dims[i].size : 0;
        numel *= s;
        if (i < axis) *outer *= s;
        if (i > axis) inner *= s;
    }
    *column = numel ? bytes / numel * inner : 0;
}

static void put_transfer(lp_json_out *w, const doc_ctx *x, const lp_transfer *t) {
    const lp_value *v = &x->L->g->values[t->value];
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "kind", t->kind == LP_TRANSFER_CUT ? "cut" : "all_gather");
    lp_json_string(w, "value", v->name);
    lp_json_int(w, "bytes", (int64_t)t->bytes);
    if (t->kind == LP_TRANSFER_CUT) {
        const lp_mem_boundary *src = find_boundary(x->p->cards[t->from_card].memory, t->value, LP_MEM_OUT);
        const lp_mem_boundary *dst = find_boundary(x->p->cards[t->to_card].memory, t->value, LP_MEM_IN);
        lp_json_int(w, "from", t->from_card);
        lp_json_int(w, "to", t->to_card);
        lp_json_int(w, "src_offset", src ? (int64_t)src->offset : -1);
        lp_json_int(w, "dst_offset", dst ? (int64_t)dst->offset : -1);
    } else {
        uint64_t outer, column;
        axis_strides(x->L, v, t->axis, t->bytes, &outer, &column);
        lp_json_int(w, "axis", t->axis);
        lp_json_int(w, "dim", t->dim);
        lp_json_int(w, "outer", (int64_t)outer);
        lp_json_int(w, "row_bytes", (int64_t)(column * (uint64_t)t->dim));
        lp_json_int(w, "column_bytes", (int64_t)column);
        lp_json_begin_array(w, "participants");
        for (int k = 0; k < t->n_cards; k++) {
            int64_t b, e;
            lp_transfer_range(t, k, &b, &e);
            const lp_mem_boundary *gb =
                find_boundary(x->p->cards[t->first_card + k].memory, t->value, LP_MEM_GATHER);
            lp_json_begin_row_object(w, NULL);
            lp_json_int(w, "card", t->first_card + k);
            lp_json_int(w, "begin", b);
            lp_json_int(w, "end", e);
            lp_json_int(w, "bytes", (int64_t)lp_transfer_slice_bytes(t, k));
            lp_json_int(w, "offset", gb ? (int64_t)gb->offset : -1);
            lp_json_end(w);
        }
        lp_json_end(w);
    }
    lp_json_end(w);
}

/* A graph input or output and the cards' buffers that hold it. */
static void put_io(lp_json_out *w, const doc_ctx *x, int32_t v, lp_mem_dir dir) {
    const lp_value *val = &x->L->g->values[v];
    uint64_t bytes = 0;
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "name", val->name);
    put_type(w, x->L, val);
    lp_json_int(w, "bytes", lp_analysis_value_bytes(x->L, v, &bytes) ? (int64_t)bytes : -1);
    lp_json_begin_array(w, "cards");
    for (int c = 0; c < x->p->n_cards; c++) {
        const lp_mem_boundary *b = find_boundary(x->p->cards[c].memory, v, dir);
        if (!b) continue;
        lp_json_begin_row_object(w, NULL);
        lp_json_int(w, "card", x->p->cards[c].card);
        lp_json_int(w, "offset", (int64_t)b->offset);
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_end(w);
}

static void manifest_doc(const void *ctx, lp_json_out *w) {
    const doc_ctx *x = ctx;
    const lp_plan *p = x->p;
    const lp_graph *g = x->L->g;
    lp_json_begin_object(w, NULL);
    lp_json_string(w, "format", "lpcc-manifest");
    lp_json_int(w, "version", LP_MANIFEST_VERSION);
    lp_json_string(w, "lpcc_version", x->mi->lpcc_version ? x->mi->lpcc_version : "");
    lp_json_string(w, "model", x->mi->model ? x->mi->model : p->model);
    lp_json_string(w, "dtype", x->mi->dtype ? lp_dtype_name(x->mi->dtype) : "keep");
    if (x->mi->bindings)
        lp_json_put(w, "bindings", json_incref((json_t *)x->mi->bindings));
    else
        lp_json_put(w, "bindings", json_object());
    if (x->mi->shapes)
        lp_json_put(w, "shapes", json_incref((json_t *)x->mi->shapes));
    else
        lp_json_put(w, "shapes", json_object());
    lp_json_put(w, "target", lp_target_to_json(&p->target));
    lp_json_string(w, "checksum", LP_EMIT_CHECKSUM);
    lp_json_begin_array(w, "cards");
    for (int c = 0; c < p->n_cards; c++) put_card(w, x, c);
    lp_json_end(w);
    lp_json_begin_array(w, "transfers");
    for (int i = 0; i < p->n_transfers; i++) put_transfer(w, x, &p->transfers[i]);
    lp_json_end(w);
    lp_json_begin_array(w, "inputs");
    for (int i = 0; i < g->n_inputs; i++) put_io(w, x, g->inputs[i], LP_MEM_IN);
    lp_json_end(w);
    lp_json_begin_array(w, "outputs");
    for (int i = 0; i < g->n_outputs; i++) put_io(w, x, g->outputs[i], LP_MEM_OUT);
    lp_json_end(w);
    lp_json_end(w);
}

/* Every transfer's buffers exist where the manifest points at them. */
static lp_status check_transfers(const lp_plan *p, const lp_layer_ir *L, lp_diag *d) {
    for (int i = 0; i < p->n_transfers; i++) {
        const lp_transfer *t = &p->transfers[i];
        const char *name = L->g->values[t->value].name;
        if (t->kind == LP_TRANSFER_CUT) {
            if (t->from_card < 0 || t->from_card >= p->n_cards || t->to_card < 0 ||
                t->to_card >= p->n_cards ||
                !find_boundary(p->cards[t->from_card].memory, t->value, LP_MEM_OUT) ||
                !find_boundary(p->cards[t->to_card].memory, t->value, LP_MEM_IN))
                return lp_error(d, LP_ERR_INTERNAL, "manifest: the cut of '%s' from card %d to card %d "
                                "has no send or receive buffer", name, t->from_card, t->to_card);
            continue;
        }
        for (int k = 0; k < t->n_cards; k++)
            if (t->first_card + k < 0 || t->first_card + k >= p->n_cards ||
                !find_boundary(p->cards[t->first_card + k].memory, t->value, LP_MEM_GATHER))
                return lp_error(d, LP_ERR_INTERNAL, "manifest: the all-gather of '%s' has no gather "
                                "buffer on card %d", name, t->first_card + k);
    }
    for (int c = 0; c < p->n_cards; c++)
        if (!p->cards[c].memory)
            return lp_error(d, LP_ERR_INTERNAL, "manifest: card %d has no memory plan", c);
    return LP_OK;
}

lp_status lp_emit_write_manifest(const lp_plan *p, const lp_layer_ir *L,
                                 const lp_manifest_info *mi, lp_outdir *od, lp_diag *d) {
    lp_status st = check_transfers(p, L, d);
    if (st != LP_OK) return st;
    const char **programs = calloc((size_t)p->n_cards + 1, sizeof *programs);
    if (!programs) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int c = 0; c < p->n_cards; c++) {
        uint64_t need, budget;
        programs[c] = lp_card_program_kind(p, L, c, &need, &budget);
        if (need > budget)
            lp_warn(d, "card %d: --tier smem: holding its Gemm weights needs %.1f KiB of shared memory a block "
                    "(with the work space), more than the %.1f KiB a block has; it runs as the persistent "
                    "program, its weights read from L2 (manifest \"program\": \"persistent\")",
                    c, need / 1024.0, budget / 1024.0);
    }
    FILE *f = lp_outdir_create(od, "manifest.json", d);
    if (!f) {
        free(programs);
        return LP_ERR_OUTPUT;
    }
    size_t n = strlen(lp_outdir_path(od)) + sizeof "/manifest.json";
    char *what = malloc(n);
    if (what) snprintf(what, n, "%s/manifest.json", lp_outdir_path(od));
    doc_ctx x = {p, L, mi, programs};
    st = lp_json_write(f, manifest_doc, &x, what ? what : "manifest.json", d);
    free(what);
    free(programs);
    lp_status cs = lp_outdir_close(od, f, d);
    return st != LP_OK ? st : cs;
}
