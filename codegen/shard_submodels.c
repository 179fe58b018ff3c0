/* Per-card ONNX models of a plan and cards.json, the order that runs them.
 *
 * An unsharded card is one model, card_K.onnx: the nodes of its layers. The
 * card holding shard k of a sharded layer is a series of phase models,
 * card_K.phase_P.onnx, cut at the layer's split nodes s_0 < s_1 < ... < s_m-1
 * (the nodes whose weight is divided by output columns):
 *
 *   phase 0      the layer's nodes up to and including s_0, which multiplies
 *                by this shard's column slice of its weight (an initializer
 *                holding just those columns) and outputs "<output>.shard<k>"
 *   phase P > 0  a Concat of "<output of s_P-1>.shard<0..n-1>" (the
 *                all-gather) back into the value under its own name, then the
 *                nodes after s_P-1 up to and including s_P, sliced again; the
 *                last phase (P = m) runs to the layer's end
 *
 * Every shard computes the unsplit nodes, so their values are the same on
 * every card of the layer. A value one phase makes and a later phase of the
 * same card reads leaves as an output and comes back as an input. Only the
 * last shard sends the layer's outputs, so the others stop after their last
 * split node (they have no phase m).
 *
 * The phases, their nodes, inputs and outputs are the card's lowered program
 * (lp_lower.h): this writer walks it and adds only what ONNX needs, the
 * sliced weights and the Concat standing for each all-gather.
 */
#define _GNU_SOURCE
#include "lp_frontend.h"
#include "lp_ops.h"
#include "lp_card_models.h"
#include "json_out.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CARDS_JSON "cards.json"

static bool carries_data(const lp_value *v) {
    return v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT;
}

/* ---- file names ------------------------------------------------------------ */

static bool parse_index(const char **s, long *out) {
    const char *p = *s;
    long v = 0;
    if (*p < '0' || *p > '9') return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT32_MAX - 9) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    *s = p;
    *out = v;
    return true;
}

/* The card of a file this module writes (card_K.onnx, card_K.phase_P.onnx,
 * or the ".data" sidecar of either); -1 for any other name. */
static long card_file_index(const char *name) {
    long card, phase;
    const char *s = name + 5;
    if (strncmp(name, "card_", 5) != 0 || !parse_index(&s, &card)) return -1;
    if (strncmp(s, ".phase_", 7) == 0) {
        s += 7;
        if (!parse_index(&s, &phase)) return -1;
    }
    return strcmp(s, ".onnx") == 0 || strcmp(s, ".onnx.data") == 0 ? card : -1;
}

bool lp_plan_is_card_file(const char *name) {
    return card_file_index(name) >= 0 || strcmp(name, CARDS_JSON) == 0;
}

/* ---- split nodes ----------------------------------------------------------- */

/* The bias of a split Gemm (C) or Conv (B), whose last axis runs along the
 * output columns and so is sliced with them; -1 if the node has none. */
static int32_t split_bias(const lp_graph *g, const lp_shard_weight *w) {
    const lp_node *n = &g->nodes[w->node];
    lp_op_shard how = lp_op_shard_of(lp_node_op(n));
    bool has_bias = how == LP_SHARD_GEMM || how == LP_SHARD_CONV;
    return has_bias && n->n_inputs > 2 ? n->inputs[2] : -1;
}

/* Whether a bias needs slicing: its last axis spans the columns (a
 * broadcast axis of 1, or a scalar, is kept whole). */
static bool bias_is_split(const lp_value *b, int64_t dim) {
    return b->shape.rank >= 1 && b->shape.dims[b->shape.rank - 1].size == dim;
}

int32_t lp_plan_unsliceable_weight(const lp_plan *p, const lp_layer_ir *L) {
    const lp_graph *g = L->g;
    for (int i = 0; i < p->n_shards; i++)
        for (int k = 0; k < p->shards[i].n_weights; k++) {
            const lp_shard_weight *w = &p->shards[i].weights[k];
            int32_t b = split_bias(g, w);
            int32_t cut[2] = {w->weight, b >= 0 && bias_is_split(&g->values[b], w->dim) ? b : -1};
            for (int j = 0; j < 2; j++) {
                const lp_tensor_data *t = cut[j] >= 0 ? &g->values[cut[j]].data : NULL;
                if (t && t->where == LP_DATA_EXTERNAL && !t->present) return cut[j];
            }
        }
    return -1;
}

/* ---- one shard card's graph -------------------------------------------------- */

/* Shard k's view of the graph: g's values and nodes, then the slices, with
 * each split node rewritten to read its weight slice and make its output
 * slice, and one Concat per split node. Names, shapes and attributes not
 * changed are shared with g. */
typedef struct shard_graph {
    lp_graph g;
    lp_arena *a;
    const lp_shard *sh;
    int k;
    int32_t *slice_out; /* [n_weights * n_shards]: value "<output>.shard<j>" */
    int *concat;        /* [n_weights]: the node gathering split node i */
} shard_graph;

/* A name not used in the original graph: base, else base_1, base_2, ... */
static const char *fresh_name(shard_graph *sg, const lp_graph *g, const char *base) {
    const char *name = base;
    for (int i = 1; name && lp_graph_find_value(g, name) >= 0; i++)
        name = lp_arena_printf(sg->a, "%s_%d", base, i);
    return name;
}

/* Appends a copy of `like` named `name` whose dim `axis` is `size`. */
static int32_t add_value(shard_graph *sg, const lp_value *like, const char *name, int axis,
                         int64_t size) {
    if (!name) return -1;
    lp_value *v = &sg->g.values[sg->g.n_values];
    *v = *like;
    v->name = name;
    v->producer = -1;
    v->is_graph_input = v->is_graph_output = false;
    v->data = (lp_tensor_data){0};
    if (like->shape.rank > 0) {
        v->shape.dims = lp_arena_array(sg->a, (size_t)like->shape.rank, sizeof(lp_dim));
        if (!v->shape.dims) return -1;
        memcpy(v->shape.dims, like->shape.dims, sizeof(lp_dim) * (size_t)like->shape.rank);
        v->shape.dims[axis] = (lp_dim){.size = size};
    }
    return sg->g.n_values++;
}

/* Columns [b, e) along `axis` of weight v as a new inline weight: one
 * contiguous run per index of the axes before `axis`, read from wherever
 * the weight lives (memory, the model file, an external file) through a
 * scratch block of whole rows of at most SLICE_BLOCK bytes, or run by run
 * straight into the slice when a row is larger: the whole weight is never
 * held. */
#define SLICE_BLOCK ((uint64_t)16 << 20)
static lp_status slice_weight(shard_graph *sg, const lp_graph *g, int32_t v, int axis, int64_t b,
                              int64_t e, int32_t *out, lp_diag *d) {
    const lp_value *src = &g->values[v];
    int bits = lp_dtype_bits(src->dtype);
    uint64_t nbytes = 0;
    if (bits <= 0 || bits % 8 || !lp_value_bytes(src, &nbytes) || src->data.nbytes != nbytes ||
        axis >= src->shape.rank)
        return lp_error(d, LP_ERR_UNSUPPORTED, "weight '%s': cannot cut columns %" PRId64 "..%" PRId64
                        " of axis %d (element type %s, %" PRIu64 " bytes stored)", src->name, b, e,
                        axis, lp_dtype_label(src->dtype),
                        src->data.nbytes);
    uint64_t outer = 1, inner = (uint64_t)bits / 8;
    for (int i = 0; i < axis; i++) outer *= (uint64_t)src->shape.dims[i].size;
    for (int i = axis + 1; i < src->shape.rank; i++) inner *= (uint64_t)src->shape.dims[i].size;
    uint64_t dim = (uint64_t)src->shape.dims[axis].size, run = (uint64_t)(e - b) * inner;
    uint64_t row = dim * inner, rows = row && row <= SLICE_BLOCK ? SLICE_BLOCK / row : 1;
    if (rows > outer) rows = outer;
    uint8_t *block = row <= SLICE_BLOCK ? malloc(rows * row > 0 ? (size_t)(rows * row) : 1) : NULL;
    uint8_t *part = lp_arena_alloc(sg->a, outer * run > 0 ? (size_t)(outer * run) : 1);
    if ((row <= SLICE_BLOCK && !block) || !part) {
        free(block);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory slicing '%s'", src->name);
    }
    lp_status st = LP_OK;
    for (uint64_t o = 0; st == LP_OK && o < outer; o += rows) {
        uint64_t k = outer - o < rows ? outer - o : rows;
        if (!block) {
            st = lp_frontend_read_tensor(g, &src->data, src->name, o * row + (uint64_t)b * inner,
                                         part + o * run, run, d);
            continue;
        }
        st = lp_frontend_read_tensor(g, &src->data, src->name, o * row, block, k * row, d);
        for (uint64_t r = 0; st == LP_OK && r < k; r++)
            memcpy(part + (o + r) * run, block + r * row + (uint64_t)b * inner, (size_t)run);
    }
    free(block);
    if (st != LP_OK) return st;
    const char *name = fresh_name(sg, g, lp_arena_printf(sg->a, "%s.shard%d", src->name, sg->k));
    *out = add_value(sg, src, name, axis, e - b);
    if (*out < 0) return lp_error(d, LP_ERR_INTERNAL, "out of memory slicing '%s'", src->name);
    lp_value *sv = &sg->g.values[*out];
    sv->kind = LP_VALUE_WEIGHT;
    sv->data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = part, .nbytes = outer * run};
    return LP_OK;
}

/* Split node i of shard k: reads the weight (and bias) slices and makes
 * output slice k; a Concat of all n output slices remakes the whole value. */
static lp_status rewrite_split(shard_graph *sg, const lp_graph *g, int i, lp_diag *d) {
    const lp_shard *sh = sg->sh;
    const lp_shard_weight *w = &sh->weights[i];
    const lp_value *outv = &g->values[w->output];
    int32_t *slices = &sg->slice_out[i * sh->n_shards];
    int64_t b = 0, e = 0;
    for (int j = 0; j < sh->n_shards; j++) {
        lp_shard_range(w->dim, sh->n_shards, j, &b, &e);
        const char *name = fresh_name(sg, g, lp_arena_printf(sg->a, "%s.shard%d", outv->name, j));
        if ((slices[j] = add_value(sg, outv, name, w->output_axis, e - b)) < 0)
            return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    lp_shard_range(w->dim, sh->n_shards, sg->k, &b, &e);

    lp_node *n = &sg->g.nodes[w->node];
    int32_t *in = lp_arena_array(sg->a, (size_t)n->n_inputs, sizeof(int32_t));
    int32_t *out = lp_arena_array(sg->a, (size_t)n->n_outputs, sizeof(int32_t));
    if (!in || !out) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    memcpy(in, n->inputs, sizeof(int32_t) * (size_t)n->n_inputs);
    memcpy(out, n->outputs, sizeof(int32_t) * (size_t)n->n_outputs);
    lp_status st = slice_weight(sg, g, w->weight, w->weight_axis, b, e, &in[1], d);
    int32_t bias = split_bias(g, w);
    if (st == LP_OK && bias >= 0 && bias_is_split(&g->values[bias], w->dim)) {
        const lp_value *bv = &g->values[bias];
        if (!carries_data(bv))
            return lp_node_error(d, LP_ERR_UNSUPPORTED, &g->nodes[w->node], "its bias '%s' is "
                                 "computed, not a weight: it cannot be cut by output columns",
                                 bv->name);
        st = slice_weight(sg, g, bias, bv->shape.rank - 1, b, e, &in[2], d);
    }
    if (st != LP_OK) return st;
    out[0] = slices[sg->k];
    n->inputs = in;
    n->outputs = out;

    int c = sg->concat[i] = sg->g.n_nodes++;
    lp_node *cn = &sg->g.nodes[c];
    lp_attr *axis = lp_arena_alloc(sg->a, sizeof *axis);
    int32_t *gathered = lp_arena_alloc(sg->a, sizeof(int32_t));
    const char *cname = lp_arena_printf(sg->a, "%s.gather", outv->name);
    if (!axis || !gathered || !cname) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    *axis = (lp_attr){.name = "axis", .type = LP_ATTR_INT, .i = w->output_axis};
    *gathered = w->output;
    *cn = (lp_node){.name = cname, .op_type = "Concat", .domain = "", .file_index = -1,
                    .n_inputs = sh->n_shards, .inputs = slices, .n_outputs = 1, .outputs = gathered,
                    .n_attrs = 1, .attrs = axis};
    return LP_OK;
}

static lp_status shard_graph_build(shard_graph *sg, const lp_graph *g, const lp_shard *sh, int k,
                                   lp_diag *d) {
    *sg = (shard_graph){.g = *g, .sh = sh, .k = k};
    size_t nw = (size_t)sh->n_weights, extra_values = nw * ((size_t)sh->n_shards + 2);
    if (!(sg->a = lp_arena_new())) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    sg->g.values = lp_arena_array(sg->a, (size_t)g->n_values + extra_values, sizeof(lp_value));
    sg->g.nodes = lp_arena_array(sg->a, (size_t)g->n_nodes + nw, sizeof(lp_node));
    sg->slice_out = lp_arena_array(sg->a, nw * (size_t)sh->n_shards + 1, sizeof(int32_t));
    sg->concat = lp_arena_array(sg->a, nw + 1, sizeof(int));
    if (!sg->g.values || !sg->g.nodes || !sg->slice_out || !sg->concat)
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    memcpy(sg->g.values, g->values, sizeof(lp_value) * (size_t)g->n_values);
    memcpy(sg->g.nodes, g->nodes, sizeof(lp_node) * (size_t)g->n_nodes);
    /* Before IR 4 the writer lists initializers among the inputs and looks
     * them up by name; the slices are not in g's name map, and IR 4 lists
     * initializers on their own, which every runtime accepts. */
    if (sg->g.ir_version < 4) sg->g.ir_version = 4;
    for (int i = 0; i < sh->n_weights; i++) {
        assert(i == 0 || sh->weights[i].node > sh->weights[i - 1].node);
        lp_status st = rewrite_split(sg, g, i, d);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

/* ---- writing ------------------------------------------------------------------- */

typedef struct card_writer {
    const lp_plan *p;
    const lp_program *prog;
    const lp_layer_ir *L;
    lp_outdir *od;
    lp_diag *d;
    json_t *steps;
} card_writer;

static json_t *names_json(const lp_graph *g, const int32_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, lp_json_name(g->values[v[i]].name)) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Writes one model file and its step of cards.json (appended to `steps`). */
static lp_status write_model(card_writer *cw, const lp_graph *g, const char *file, int card, int step_phase,
                             const int *nodes, int n_nodes, const int32_t *in, int n_in,
                             const int32_t *out, int n_out, json_t *steps) {
    lp_status st = lp_frontend_write_submodel_in(g, nodes, n_nodes, in, n_in, out, n_out, cw->od, file,
                                                 cw->d);
    json_t *step = json_pack("{s:s, s:i, s:i, s:o, s:o}", "file", file, "card", card, "phase", step_phase,
                             "inputs", names_json(g, in, n_in), "outputs", names_json(g, out, n_out));
    if (st == LP_OK && (!step || json_array_append_new(steps, step) != 0))
        return lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
    if (st != LP_OK) json_decref(step);
    return st;
}

/* The compute steps' nodes of steps [first, first + n) after `lead` (a
 * node to put first, or -1), into *nodes (malloc'ed). */
static bool phase_nodes(const lp_card_program *cp, const lp_phase *ph, int lead, int **nodes, int *n) {
    *nodes = malloc(sizeof(int) * ((size_t)ph->n_steps + 1));
    *n = 0;
    if (!*nodes) return false;
    if (lead >= 0) (*nodes)[(*n)++] = lead;
    for (int s = ph->first_step; s < ph->first_step + ph->n_steps; s++)
        if (cp->steps[s].kind == LP_STEP_COMPUTE) (*nodes)[(*n)++] = cp->steps[s].node;
    return true;
}

static lp_status write_whole_card(card_writer *cw, int c) {
    const lp_card_program *cp = &cw->prog->cards[c];
    const lp_phase *ph = &cp->phases[0];
    int *nodes = NULL, n = 0;
    char *file = NULL;
    if (!phase_nodes(cp, ph, -1, &nodes, &n) || asprintf(&file, "card_%d.onnx", c) < 0) {
        free(nodes);
        return lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
    }
    lp_status st = write_model(cw, cw->L->g, file, c, 0, nodes, n, ph->inputs, ph->n_inputs, ph->outputs,
                               ph->n_outputs, cw->steps);
    free(file);
    free(nodes);
    return st;
}

/* The phase models of shard k, one per phase of its program that computes;
 * phase P's step goes to by_phase[P]. Phase P > 0 opens with the Concat of
 * the slices the all-gather brings (they are its first inputs), and phase
 * P < m outputs the card's slice first. */
static lp_status write_shard_card(card_writer *cw, const lp_shard *sh, int k, json_t **by_phase) {
    int c = sh->first_card + k;
    const lp_card_program *cp = &cw->prog->cards[c];
    shard_graph sg;
    lp_status st = shard_graph_build(&sg, cw->L->g, sh, k, cw->d);
    int n = sh->n_shards;
    for (int P = 0; st == LP_OK && P < cp->n_phases; P++) {
        const lp_phase *ph = &cp->phases[P];
        if (ph->gather_only) continue;
        int *nodes = NULL, n_nodes = 0;
        char *file = NULL;
        int32_t *in = malloc(sizeof(int32_t) * ((size_t)(ph->n_inputs + n) + 1));
        int32_t *out = malloc(sizeof(int32_t) * ((size_t)ph->n_outputs + 2));
        int n_in = 0, n_out = 0;
        if (!in || !out || asprintf(&file, "card_%d.phase_%d.onnx", c, P) < 0 ||
            !phase_nodes(cp, ph, ph->gathered >= 0 ? sg.concat[ph->gathered] : -1, &nodes, &n_nodes)) {
            st = lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
        } else {
            for (int j = 0; ph->gathered >= 0 && j < n; j++) in[n_in++] = sg.slice_out[ph->gathered * n + j];
            memcpy(in + n_in, ph->inputs, sizeof(int32_t) * (size_t)ph->n_inputs);
            n_in += ph->n_inputs;
            if (ph->sliced >= 0) out[n_out++] = sg.slice_out[ph->sliced * n + k];
            memcpy(out + n_out, ph->outputs, sizeof(int32_t) * (size_t)ph->n_outputs);
            n_out += ph->n_outputs;
            st = write_model(cw, &sg.g, file, c, P, nodes, n_nodes, in, n_in, out, n_out, by_phase[P]);
        }
        free(in);
        free(out);
        free(file);
        free(nodes);
    }
    lp_arena_free(sg.a);
    return st;
}

/* All shards of one layer, their steps ordered phase by phase: phase P of
 * every shard reads the output slices phase P-1 of every shard made. */
static lp_status write_sharded_layer(card_writer *cw, const lp_shard *sh) {
    int n_ph = sh->n_weights + 1;
    json_t **by_phase = calloc((size_t)n_ph, sizeof(json_t *));
    lp_status st = by_phase ? LP_OK : lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
    for (int P = 0; st == LP_OK && P < n_ph; P++)
        if (!(by_phase[P] = json_array())) st = lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
    for (int k = 0; st == LP_OK && k < sh->n_shards; k++) st = write_shard_card(cw, sh, k, by_phase);
    for (int P = 0; st == LP_OK && P < n_ph; P++)
        if (json_array_extend(cw->steps, by_phase[P]) != 0) st = lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
    for (int P = 0; by_phase && P < n_ph; P++) json_decref(by_phase[P]);
    free(by_phase);
    return st;
}

static lp_status write_cards_json(card_writer *cw) {
    json_t *j = json_pack("{s:o, s:i, s:O}", "model", lp_json_name(cw->p->model), "cards", cw->p->n_cards, "steps",
                          cw->steps);
    if (!j) return lp_error(cw->d, LP_ERR_INTERNAL, "out of memory");
    FILE *f = lp_outdir_create(cw->od, CARDS_JSON, cw->d);
    lp_status st = f ? LP_OK : LP_ERR_OUTPUT;
    if (f) {
        json_dumpf(j, f, JSON_INDENT(2)); /* a failed write shows in the close */
        st = lp_outdir_close(cw->od, f, cw->d);
    }
    json_decref(j);
    return st;
}

lp_status lp_plan_write_submodels(const lp_plan *p, const lp_layer_ir *L, const lp_program *prog,
                                  lp_outdir *od, lp_diag *d) {
    int32_t absent = lp_plan_unsliceable_weight(p, L);
    if (absent >= 0)
        return lp_error(d, LP_ERR_UNSUPPORTED, "weight '%s' of a sharded layer is in external file "
                        "'%s', which is absent: its column slices cannot be cut", L->g->values[absent].name,
                        L->g->values[absent].data.location);
    card_writer cw = {.p = p, .prog = prog, .L = L, .od = od, .d = d, .steps = json_array()};
    lp_status st = cw.steps ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int c = 0; st == LP_OK && c < p->n_cards; c++) {
        const lp_plan_card *pc = &p->cards[c];
        if (pc->n_shards <= 1)
            st = write_whole_card(&cw, c);
        else if (pc->shard == 0) {
            const lp_shard *sh = lp_plan_shard_of_card(p, c);
            assert(sh && sh->first_card == c);
            st = write_sharded_layer(&cw, sh);
        }
    }
    if (st == LP_OK) st = write_cards_json(&cw);
    json_decref(cw.steps);
    return st;
}
