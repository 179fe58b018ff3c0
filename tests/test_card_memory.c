/* Per-card memory plans against what the graph says they must be. For every
 * card of plans over the real models (several card counts, a sharded layer)
 * and of random plans over random DAGs, the weights, boundary buffers and
 * arena slots are recomputed here from the nodes alone (a direct reading of
 * the definitions, not the planner's code) and compared entry by entry:
 * the weights the card's nodes read, each once; receive buffers for values
 * made before the card, send buffers for values read after it; a slot per
 * value with the lifetime its readers give; no two slots alive at the same
 * step overlap; every offset aligned; and the totals against the card's
 * footprint (arena = activation_bytes exactly). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lp_frontend.h"
#include "lp_partition.h"

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static bool is_weight(const lp_value *v) {
    return v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT;
}

/* Integer tensors of rank 0-1 are shape data, not weights. */
static bool is_shape_data(const lp_value *v) {
    return !lp_dtype_is_float(v->dtype) && v->shape.rank >= 0 && v->shape.rank <= 1;
}

static uint64_t bytes_of(const lp_layer_ir *L, int32_t v) {
    uint64_t b = 0;
    assert_true(lp_analysis_value_bytes(L, v, &b));
    return b;
}

/* Last node reading v at or before `upto` (-1 if none), by scanning. */
static int last_reader(const lp_graph *g, int32_t v, int upto) {
    int last = -1;
    for (int t = 0; t <= upto && t < g->n_nodes; t++)
        for (int k = 0; k < g->nodes[t].n_inputs; k++)
            if (g->nodes[t].inputs[k] == v) last = t;
    return last;
}

static bool read_in(const lp_graph *g, int32_t v, int a, int b) {
    for (int t = a; t <= b; t++)
        for (int k = 0; k < g->nodes[t].n_inputs; k++)
            if (g->nodes[t].inputs[k] == v) return true;
    return false;
}

static int count_weight(const lp_card_memory *m, int32_t v) {
    int n = 0;
    for (int k = 0; k < m->n_weights; k++) n += m->weights[k].value == v;
    return n;
}

static int count_boundary(const lp_card_memory *m, int32_t v, lp_mem_dir dir) {
    int n = 0;
    for (int k = 0; k < m->n_boundary; k++) n += m->boundary[k].value == v && m->boundary[k].dir == dir;
    return n;
}

static const lp_mem_slot *find_slot(const lp_card_memory *m, int32_t v, int *count) {
    const lp_mem_slot *s = NULL;
    *count = 0;
    for (int k = 0; k < m->n_slots; k++)
        if (m->slots[k].value == v) {
            s = &m->slots[k];
            (*count)++;
        }
    return s;
}

static const lp_shard_weight *split_weight(const lp_plan *p, const lp_plan_card *pc, int32_t v) {
    for (int i = 0; pc->n_shards > 1 && i < p->n_shards; i++) {
        const lp_shard *sh = &p->shards[i];
        if (pc->card < sh->first_card || pc->card >= sh->first_card + sh->n_shards) continue;
        for (int k = 0; k < sh->n_weights; k++)
            if (sh->weights[k].weight == v) return &sh->weights[k];
    }
    return NULL;
}

/* Weights: exactly the non-shape weights and constants the card's nodes
 * read, each once, at its (slice's) size, inside the weights region. */
static uint64_t check_weights(const lp_plan *p, const lp_layer_ir *L, const lp_plan_card *pc,
                              const lp_card_memory *m, int a, int b) {
    const lp_graph *g = L->g;
    uint64_t sum = 0;
    for (int v = 0; v < g->n_values; v++) {
        bool want = is_weight(&g->values[v]) && !is_shape_data(&g->values[v]) && read_in(g, v, a, b);
        assert_int_equal(count_weight(m, v), want ? 1 : 0);
    }
    for (int k = 0; k < m->n_weights; k++) {
        const lp_mem_weight *w = &m->weights[k];
        uint64_t whole = bytes_of(L, w->value), want = whole;
        const lp_shard_weight *sw = split_weight(p, pc, w->value);
        if (sw) {
            int64_t lo = sw->dim * pc->shard / pc->n_shards, hi = sw->dim * (pc->shard + 1) / pc->n_shards;
            want = (whole * (uint64_t)(hi - lo) + (uint64_t)sw->dim - 1) / (uint64_t)sw->dim;
            assert_int_equal(w->axis, sw->weight_axis);
            assert_int_equal(w->begin, lo);
            assert_int_equal(w->end, hi);
        } else {
            assert_int_equal(w->axis, -1);
        }
        assert_int_equal(w->bytes, want);
        assert_int_equal(w->offset % m->alignment, 0);
        assert_true(w->offset + w->bytes <= m->weights_bytes);
        for (int j = 0; j < k; j++) /* weights never overlap */
            assert_true(w->offset >= align_up(m->weights[j].offset + m->weights[j].bytes, m->alignment) ||
                        m->weights[j].offset >= w->offset + w->bytes);
        sum += w->bytes;
    }
    return sum;
}

/* Whether v is the output of a split node of the layer card pc is a shard
 * of: a MatMul whose rank-2 weight only it reads (the seed models' case). */
static bool gathered_here(const lp_plan_card *pc, const lp_layer_ir *L, int32_t v) {
    const lp_graph *g = L->g;
    int producer = g->values[v].producer;
    if (pc->n_shards < 2 || producer < 0 || L->layer_of_node[producer] != pc->first_layer) return false;
    const lp_node *n = &g->nodes[producer];
    if (strcmp(n->op_type, "MatMul") != 0 || n->inputs[1] < 0) return false;
    const lp_value *w = &g->values[n->inputs[1]];
    if (!is_weight(w) || w->shape.rank != 2) return false;
    int reads = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) reads += g->nodes[i].inputs[k] == n->inputs[1];
    return reads == 1;
}

/* Boundary: a receive buffer for each value made before the card (or a
 * graph input) that a node reads, a send buffer for each value made here
 * that a later node or the host reads (only the last shard sends), and on
 * a shard card one gather buffer, the whole value, per split node's
 * output. */
static uint64_t check_boundary(const lp_layer_ir *L, const lp_plan_card *pc, const lp_card_memory *m,
                               int a, int b) {
    const lp_graph *g = L->g;
    bool sends = pc->shard + 1 == pc->n_shards;
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        bool data = !is_weight(val);
        bool in = data && read_in(g, v, a, b) && val->producer < a;
        bool made = data && val->producer >= a && val->producer <= b;
        bool out = made && sends && (val->is_graph_output || last_reader(g, v, g->n_nodes - 1) > b);
        assert_int_equal(count_boundary(m, v, LP_MEM_IN), in ? 1 : 0);
        assert_int_equal(count_boundary(m, v, LP_MEM_OUT), out ? 1 : 0);
        assert_int_equal(count_boundary(m, v, LP_MEM_GATHER), gathered_here(pc, L, v) ? 1 : 0);
    }
    uint64_t sum = 0;
    for (int k = 0; k < m->n_boundary; k++) {
        const lp_mem_boundary *e = &m->boundary[k];
        assert_int_equal(e->bytes, bytes_of(L, e->value));
        assert_int_equal(e->offset % m->alignment, 0);
        assert_true(e->offset >= m->boundary_offset &&
                    e->offset + e->bytes <= m->boundary_offset + m->boundary_bytes);
        for (int j = 0; j < k; j++)
            assert_true(e->offset >= m->boundary[j].offset + m->boundary[j].bytes ||
                        m->boundary[j].offset >= e->offset + e->bytes);
        sum += e->bytes;
    }
    return sum;
}

/* Slots: one per value made on the card or received, alive exactly from its
 * node (step 0 if received) to its last reader on the card, or to the last
 * step when a later card or the host reads it; inside the arena; no two
 * alive at one step overlap. Returns the largest aligned live sum. */
static uint64_t check_slots(const lp_layer_ir *L, const lp_card_memory *m, int a, int b) {
    const lp_graph *g = L->g;
    int n_steps = b - a + 1;
    assert_int_equal(m->first_node, a);
    assert_int_equal(m->n_steps, n_steps);
    int expected = 0;
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        bool made = !is_weight(val) && val->producer >= a && val->producer <= b;
        bool received = !is_weight(val) && val->producer < a && read_in(g, v, a, b);
        int count;
        const lp_mem_slot *s = find_slot(m, v, &count);
        if (!made && !received) {
            assert_int_equal(count, 0);
            continue;
        }
        expected++;
        assert_int_equal(count, 1);
        int last_here = last_reader(g, v, b);
        bool later = val->is_graph_output || last_reader(g, v, g->n_nodes - 1) > b;
        int first = made ? val->producer - a : 0;
        int last = made && later ? n_steps - 1 : last_here >= a ? last_here - a : first;
        if (made && !later && last < first) last = first;
        assert_int_equal(s->first, first);
        assert_int_equal(s->last, last);
        assert_int_equal(s->bytes, bytes_of(L, v));
        /* every read on the card falls inside the lifetime */
        for (int t = a; t <= b; t++)
            for (int k = 0; k < g->nodes[t].n_inputs; k++)
                if (g->nodes[t].inputs[k] == v) assert_true(s->first <= t - a && t - a <= s->last);
    }
    assert_int_equal(m->n_slots, expected);
    uint64_t peak = 0;
    for (int step = 0; step < n_steps; step++) {
        uint64_t live = 0;
        for (int i = 0; i < m->n_slots; i++) {
            const lp_mem_slot *x = &m->slots[i];
            if (x->first > step || x->last < step) continue;
            live += align_up(x->bytes, m->alignment);
            for (int j = i + 1; j < m->n_slots; j++) {
                const lp_mem_slot *y = &m->slots[j];
                if (y->first > step || y->last < step || !x->bytes || !y->bytes) continue;
                if (!(x->offset + x->bytes <= y->offset || y->offset + y->bytes <= x->offset))
                    fail_msg("card %d step %d: slots '%s' and '%s' overlap", m->card, step,
                             g->values[x->value].name, g->values[y->value].name);
            }
        }
        if (live > peak) peak = live;
    }
    for (int i = 0; i < m->n_slots; i++) {
        assert_int_equal(m->slots[i].offset % m->alignment, 0);
        if (m->slots[i].bytes)
            assert_true(m->slots[i].offset >= m->arena_offset &&
                        m->slots[i].offset + m->slots[i].bytes <= m->arena_offset + m->arena_bytes);
    }
    return peak;
}

/* Everything about card c; returns nothing, fails the test on a mismatch. */
static void check_card(const lp_plan *p, const lp_layer_ir *L, const lp_card_memory *m, int c) {
    const lp_plan_card *pc = &p->cards[c];
    int a = L->layers[pc->first_layer].first_node, b = L->layers[pc->last_layer].last_node;
    assert_int_equal(m->card, c);
    assert_int_equal(m->alignment, LP_MEMPLAN_ALIGN);
    uint64_t wsum = check_weights(p, L, pc, m, a, b);
    uint64_t bsum = check_boundary(L, pc, m, a, b);
    uint64_t live = check_slots(L, m, a, b);
    /* regions follow one another, aligned, in one allocation */
    assert_int_equal(m->boundary_offset, m->weights_bytes);
    assert_int_equal(m->arena_offset, m->boundary_offset + m->boundary_bytes);
    assert_int_equal(m->workspace_offset, m->arena_offset + m->arena_bytes);
    assert_int_equal(m->total_bytes, m->workspace_offset + m->workspace_bytes);
    assert_int_equal(m->arena_offset % m->alignment, 0);
    assert_int_equal(m->workspace_offset % m->alignment, 0);
    uint64_t pad = 0;
    for (int k = 0; k < m->n_weights; k++) pad += align_up(m->weights[k].bytes, m->alignment) - m->weights[k].bytes;
    for (int k = 0; k < m->n_boundary; k++) pad += align_up(m->boundary[k].bytes, m->alignment) - m->boundary[k].bytes;
    assert_int_equal(m->padding_bytes, pad);
    assert_int_equal(m->weights_bytes + m->boundary_bytes, wsum + bsum + pad);
    /* against the footprint the partitioner fitted */
    const lp_footprint *fp = &pc->fp;
    assert_int_equal(wsum, fp->weight_bytes);
    assert_int_equal(m->arena_bytes, fp->activation_bytes);
    assert_true(m->arena_bytes >= live);
    assert_int_equal(m->workspace_bytes, fp->buffer_bytes);
    uint64_t unsent = pc->shard + 1 < pc->n_shards ? fp->sent_bytes : 0;
    assert_int_equal(bsum, fp->boundary_bytes - unsent);
    if (unsent == 0) {
        /* what the card allocates is exactly what the partitioner fitted */
        assert_int_equal(m->padding_bytes, fp->padding_bytes);
        assert_int_equal(m->total_bytes, fp->total);
    } else {
        assert_true(m->total_bytes <= fp->total - unsent);
    }
    if (pc->n_shards == 1) {
        lp_footprint direct;
        lp_analysis_range_footprint(L, pc->first_layer, pc->last_layer, &direct);
        assert_int_equal(direct.activation_bytes, m->arena_bytes);
        assert_int_equal(direct.total, fp->total);
    }
}

/* Two memory plans alike, field by field, in plan.json's form. */
static void assert_same_memory(const lp_card_memory *x, const lp_card_memory *y, const lp_layer_ir *L) {
    json_t *jx = lp_card_memory_to_json(x, L), *jy = lp_card_memory_to_json(y, L);
    assert_non_null(jx);
    assert_non_null(jy);
    assert_true(json_equal(jx, jy));
    json_decref(jx);
    json_decref(jy);
}

/* Each card's plan against the definitions; then the memory stage stores
 * the same plans in p, and the validator accepts them. */
static void check_plan(lp_plan *p, const lp_layer_ir *L) {
    lp_arena *a = lp_arena_new();
    assert_non_null(a);
    lp_diag d = lp_diag_make("plan");
    lp_card_memory *mem = NULL;
    assert_int_equal(lp_plan_memory(p, L, a, &mem, &d), LP_OK);
    for (int c = 0; c < p->n_cards; c++) check_card(p, L, &mem[c], c);
    for (int c = 0; c < p->n_cards; c++) assert_null(p->cards[c].memory);
    assert_int_equal(lp_plan_place_memory(p, L, &d), LP_OK);
    for (int c = 0; c < p->n_cards; c++) assert_same_memory(p->cards[c].memory, &mem[c], L);
    lp_footprint_source src = lp_partition_source_analysis(L);
    if (lp_plan_validate_memory(p, L, &src, &d) != LP_OK) fail_msg("%s", d.last_error);
    lp_arena_free(a);
}

/* ---- real models --------------------------------------------------------- */

typedef struct model {
    lp_graph *g;
    lp_layer_ir *L;
} model;

/* The stage calls the CLI makes: load, bind batch=2 seq=8, shapes, layers. */
static void model_load(model *m, const char *name, lp_dtype deploy) {
    const char *src = getenv("LPCC_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", src ? src : "..", name);
    lp_diag d = lp_diag_make(path);
    m->g = NULL;
    m->L = NULL;
    assert_int_equal(lp_frontend_load(path, NULL, &m->g, &d), LP_OK);
    lp_diag quiet = lp_diag_make(path);
    quiet.sink = NULL;
    lp_graph_bind_dim(m->g, "batch", 2, &quiet); /* not every model has both */
    lp_graph_bind_dim(m->g, "seq", 8, &quiet);
    lp_analysis_options ao = lp_analysis_defaults();
    ao.deploy_dtype = deploy;
    assert_int_equal(lp_analysis_infer_shapes(m->g, &ao, &d), LP_OK);
    assert_int_equal(lp_analysis_build_layers(m->g, &ao, &m->L, &d), LP_OK);
}

static void model_free(model *m) {
    lp_layer_ir_free(m->L);
    lp_graph_free(m->g);
}

static void check_model_plans(const char *name, lp_dtype deploy) {
    model m;
    model_load(&m, name, deploy);
    lp_footprint_source src = lp_partition_source_analysis(m.L);
    lp_diag d = lp_diag_make(name);
    int n = m.L->n_layers;
    int *ends = malloc(sizeof(int) * (size_t)n);
    assert_non_null(ends);
    /* one card; every layer alone; dp on 3 cards */
    for (int shape = 0; shape < 3; shape++) {
        lp_partition_options o = lp_partition_defaults();
        o.target.capacity = (uint64_t)1 << 40;
        lp_plan *p = NULL;
        if (shape < 2) {
            int groups = shape == 0 ? 1 : n;
            for (int i = 0; i < groups; i++) ends[i] = shape == 0 ? n - 1 : i;
            assert_int_equal(lp_plan_from_ends(m.L, &src, &o, ends, groups, &p, &d), LP_OK);
        } else {
            o.algo = LP_ALGO_DP;
            o.cards = n < 3 ? n : 3;
            assert_int_equal(lp_partition_run(m.L, &src, &o, &p, &d), LP_OK);
        }
        check_plan(p, m.L);
        lp_plan_free(p);
    }
    free(ends);
    model_free(&m);
}

static void test_gpt2_tiny(void **state) {
    (void)state;
    check_model_plans("gpt2_tiny.onnx", LP_DT_UNDEFINED);
}

static void test_bert_llama_cnn(void **state) {
    (void)state;
    check_model_plans("bert_tiny.onnx", LP_DT_FLOAT16);
    check_model_plans("llama_tiny.onnx", LP_DT_UNDEFINED);
    check_model_plans("cnn_small.onnx", LP_DT_UNDEFINED);
}

/* seed_2x256 at C = 1 MiB: its blocks are sharded over two cards each; the
 * split weights are halves, the arena the layer's own. */
static void test_sharded_seed(void **state) {
    (void)state;
    model m;
    model_load(&m, "seed_2x256.onnx", LP_DT_UNDEFINED);
    lp_footprint_source src = lp_partition_source_analysis(m.L);
    lp_diag d = lp_diag_make("seed_2x256.onnx");
    lp_partition_options o = lp_partition_defaults();
    o.target.capacity = (uint64_t)1 << 20;
    lp_plan *p = NULL;
    assert_int_equal(lp_partition_run(m.L, &src, &o, &p, &d), LP_OK);
    assert_true(p->n_shards > 0);
    check_plan(p, m.L);
    /* a split weight's two halves add up to the whole */
    lp_arena *a = lp_arena_new();
    lp_card_memory *mem = NULL;
    assert_int_equal(lp_plan_memory(p, m.L, a, &mem, &d), LP_OK);
    const lp_shard *sh = &p->shards[0];
    int32_t w = sh->weights[0].weight;
    uint64_t halves = 0;
    for (int k = 0; k < sh->n_shards; k++) {
        const lp_card_memory *cm = &mem[sh->first_card + k];
        for (int i = 0; i < cm->n_weights; i++)
            if (cm->weights[i].value == w) halves += cm->weights[i].bytes;
    }
    assert_int_equal(halves, bytes_of(m.L, w));
    /* one all-gather per split weight, its participants the layer's cards */
    int gathers = 0, split = 0;
    for (int i = 0; i < p->n_shards; i++) split += p->shards[i].n_weights;
    for (int t = 0; t < p->n_transfers; t++) {
        const lp_transfer *tr = &p->transfers[t];
        if (tr->kind != LP_TRANSFER_ALL_GATHER) continue;
        gathers++;
        const lp_shard *s = NULL;
        for (int i = 0; i < p->n_shards; i++)
            for (int k = 0; k < p->shards[i].n_weights; k++)
                if (p->shards[i].weights[k].output == tr->value) s = &p->shards[i];
        assert_non_null(s);
        assert_int_equal(tr->first_card, s->first_card);
        assert_int_equal(tr->n_cards, s->n_shards);
        assert_int_equal(tr->bytes, bytes_of(m.L, tr->value));
        for (int k = 0; k < tr->n_cards; k++) {
            const lp_card_memory *cm = &mem[tr->first_card + k];
            int found = 0;
            for (int i = 0; i < cm->n_boundary; i++)
                found += cm->boundary[i].value == tr->value && cm->boundary[i].dir == LP_MEM_GATHER &&
                         cm->boundary[i].bytes == tr->bytes;
            assert_int_equal(found, 1);
        }
    }
    assert_int_equal(gathers, split);
    lp_arena_free(a);
    lp_plan_free(p);
    model_free(&m);
}

/* ---- random DAGs ----------------------------------------------------------- */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int rng_below(int n) { return (int)(rng() % (uint64_t)n); }

static void set_value(lp_graph *g, int32_t v, lp_value_kind kind, lp_dtype dt, int64_t numel) {
    lp_value *val = &g->values[v];
    val->kind = kind;
    val->dtype = dt;
    val->producer = -1;
    val->shape.rank = 1;
    val->shape.dims = lp_arena_array(g->arena, 1, sizeof(lp_dim));
    assert_non_null(val->shape.dims);
    val->shape.dims[0].size = numel;
    if (kind == LP_VALUE_WEIGHT) {
        uint64_t bytes = 0;
        assert_true(lp_dtype_storage_bytes(dt, (uint64_t)numel, &bytes));
        val->data = (lp_tensor_data){.where = LP_DATA_INLINE, .nbytes = bytes,
                                     .bytes = lp_arena_alloc(g->arena, bytes)};
        assert_non_null(val->data.bytes);
    }
}

/* Graph inputs, float weights, an int64 index vector (shape data), and
 * nodes reading 1-3 earlier values each; some make two outputs, some
 * outputs nobody reads; the last node's output and a random other are
 * graph outputs. Sizes are not multiples of the alignment. */
static lp_graph *random_dag(void) {
    lp_graph *g = lp_graph_new("dag.onnx");
    assert_non_null(g);
    int n_in = 1 + rng_below(2), n_w = 1 + rng_below(4), n_nodes = 2 + rng_below(11);
    int32_t *pool = malloc(sizeof(int32_t) * (size_t)(n_in + n_w + 1 + 2 * n_nodes));
    assert_non_null(pool);
    char name[32];
    int n_pool = 0, n_data = 0;
    /* names first: interning may move g->values */
    for (int i = 0; i < n_in + n_w + 1 + 2 * n_nodes; i++) {
        snprintf(name, sizeof name, "v%d", i);
        assert_true(lp_graph_intern_value(g, name) == i);
    }
    g->inputs = lp_arena_array(g->arena, (size_t)n_in, sizeof(int32_t));
    g->n_inputs = n_in;
    for (int i = 0; i < n_in; i++) {
        set_value(g, i, LP_VALUE_INPUT, LP_DT_FLOAT, 1 + rng_below(3000));
        g->values[i].is_graph_input = true;
        g->inputs[i] = i;
        pool[n_pool++] = i;
    }
    for (int i = n_in; i < n_in + n_w; i++) {
        set_value(g, i, LP_VALUE_WEIGHT, LP_DT_FLOAT, 1 + rng_below(5000));
        pool[n_pool++] = i;
    }
    int32_t idx = n_in + n_w;
    set_value(g, idx, LP_VALUE_WEIGHT, LP_DT_INT64, 3);
    g->nodes = lp_arena_array(g->arena, (size_t)n_nodes, sizeof(lp_node));
    g->n_nodes = n_nodes;
    int32_t next = idx + 1;
    for (int i = 0; i < n_nodes; i++) {
        lp_node *nd = &g->nodes[i];
        nd->name = lp_arena_printf(g->arena, "n%d", i);
        nd->op_type = "Add";
        nd->domain = "";
        nd->file_index = i;
        nd->n_inputs = 1 + rng_below(3);
        nd->inputs = lp_arena_array(g->arena, (size_t)nd->n_inputs + 1, sizeof(int32_t));
        for (int k = 0; k < nd->n_inputs; k++) {
            /* mostly recent values, so lifetimes vary */
            int pick = rng_below(3) ? n_pool - 1 - rng_below(n_pool < 3 ? n_pool : 3) : rng_below(n_pool);
            nd->inputs[k] = pool[pick];
        }
        if (rng_below(5) == 0) nd->inputs[nd->n_inputs++] = idx;
        nd->n_outputs = 1 + (rng_below(4) == 0);
        nd->outputs = lp_arena_array(g->arena, (size_t)nd->n_outputs, sizeof(int32_t));
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = next++;
            set_value(g, v, LP_VALUE_ACTIVATION, LP_DT_FLOAT, 1 + rng_below(4000));
            g->values[v].producer = i;
            nd->outputs[k] = v;
            pool[n_pool++] = v;
            n_data++;
        }
    }
    g->n_outputs = 1 + (n_data > 1);
    g->outputs = lp_arena_array(g->arena, 2, sizeof(int32_t));
    g->outputs[0] = g->nodes[n_nodes - 1].outputs[0];
    g->outputs[1] = pool[n_pool - 1 - rng_below(n_data)];
    for (int k = 0; k < g->n_outputs; k++) g->values[g->outputs[k]].is_graph_output = true;
    free(pool);
    return g;
}

static void test_random_dags(void **state) {
    (void)state;
    for (int round = 0; round < 300; round++) {
        lp_graph *g = random_dag();
        lp_diag d = lp_diag_make("dag.onnx");
        assert_int_equal(lp_graph_verify(g, &d), LP_OK);
        lp_analysis_options ao = lp_analysis_defaults();
        ao.layering = LP_LAYERS_NODE;
        if (round % 3 == 0) ao.deploy_dtype = LP_DT_FLOAT16;
        lp_layer_ir *L = NULL;
        assert_int_equal(lp_analysis_build_layers(g, &ao, &L, &d), LP_OK);
        int n = L->n_layers, ends[16], groups = 0;
        assert_true(n <= 16);
        for (int i = 0; i < n - 1; i++)
            if (rng_below(3) == 0) ends[groups++] = i;
        ends[groups++] = n - 1;
        lp_footprint_source src = lp_partition_source_analysis(L);
        lp_partition_options o = lp_partition_defaults();
        lp_plan *p = NULL;
        assert_int_equal(lp_plan_from_ends(L, &src, &o, ends, groups, &p, &d), LP_OK);
        check_plan(p, L);
        lp_plan_free(p);
        lp_layer_ir_free(L);
        lp_graph_free(g);
    }
}

/* The JSON section carries the plan's numbers, entry for entry, inside
 * plan.json's card; the text report names the arena. */
static void test_json_and_report(void **state) {
    (void)state;
    model m;
    model_load(&m, "gpt2_tiny.onnx", LP_DT_UNDEFINED);
    lp_footprint_source src = lp_partition_source_analysis(m.L);
    lp_diag d = lp_diag_make("gpt2_tiny.onnx");
    lp_partition_options o = lp_partition_defaults();
    o.target.capacity = (uint64_t)1 << 20;
    lp_plan *p = NULL;
    assert_int_equal(lp_partition_run(m.L, &src, &o, &p, &d), LP_OK);
    assert_true(p->n_cards > 1);
    /* plan.json and the -v report read the stored plan: none without it */
    assert_null(lp_plan_to_json(p, m.L));
    assert_int_equal(lp_plan_place_memory(p, m.L, &d), LP_OK);
    const lp_card_memory *mem = p->cards[0].memory;
    json_t *plan = lp_plan_to_json(p, m.L);
    assert_non_null(plan);
    for (int c = 0; c < p->n_cards; c++) {
        const lp_card_memory *cm = &mem[c];
        json_t *j = json_object_get(json_array_get(json_object_get(plan, "cards"), (size_t)c), "memory");
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "total_bytes")), cm->total_bytes);
        assert_int_equal(json_integer_value(json_object_get(j, "arena_bytes")), cm->arena_bytes);
        json_t *slots = json_object_get(j, "slots"), *bnd = json_object_get(j, "boundary");
        assert_int_equal(json_array_size(slots), cm->n_slots);
        assert_int_equal(json_array_size(bnd), cm->n_boundary);
        for (int k = 0; k < cm->n_slots; k++) {
            json_t *s = json_array_get(slots, (size_t)k);
            assert_string_equal(json_string_value(json_object_get(s, "value")),
                                m.g->values[cm->slots[k].value].name);
            assert_int_equal(json_integer_value(json_object_get(s, "offset")), cm->slots[k].offset);
            assert_int_equal(json_integer_value(json_object_get(s, "last")), cm->slots[k].last);
        }
        for (int k = 0; k < cm->n_boundary; k++)
            assert_string_equal(json_string_value(json_object_get(json_array_get(bnd, (size_t)k), "direction")),
                                cm->boundary[k].dir == LP_MEM_IN ? "in" : "out");
    }
    json_decref(plan);
    char want[128], buf[32];
    const lp_card_memory *cm = &mem[p->n_cards - 1];
    snprintf(want, sizeof want, "arena %s (%d slots)", lp_format_bytes(cm->arena_bytes, buf), cm->n_slots);
    for (int verbose = 0; verbose < 2; verbose++) { /* the memory regions under -v only */
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        lp_plan_dump_text(p, m.L, verbose, f);
        fclose(f);
        if ((strstr(text, want) != NULL) != verbose)
            fail_msg("'%s' %s the %s report:\n%s", want, verbose ? "not in" : "in", verbose ? "-v" : "plain",
                     text);
        free(text);
    }
    lp_plan_free(p);
    model_free(&m);
}

/* ---- the memory stage and its validator ------------------------------------ */

/* lp_partition_stage returns the plan with every card's memory placed
 * once, the same plan lp_plan_memory makes; placing again keeps it. */
static void test_stage_stores_memory(void **state) {
    (void)state;
    model m;
    model_load(&m, "gpt2_tiny.onnx", LP_DT_UNDEFINED);
    lp_diag d = lp_diag_make("gpt2_tiny.onnx");
    lp_partition_request r = {.cards = 2, .tokens = 16};
    lp_plan *p = NULL;
    assert_int_equal(lp_partition_stage(m.L, &r, &p, &d), LP_OK);
    assert_int_equal(p->n_cards, 2);
    lp_arena *a = lp_arena_new();
    lp_card_memory *mem = NULL;
    assert_int_equal(lp_plan_memory(p, m.L, a, &mem, &d), LP_OK);
    const lp_card_memory *stored[2];
    for (int c = 0; c < 2; c++) {
        stored[c] = p->cards[c].memory;
        assert_non_null(stored[c]);
        assert_int_equal(stored[c]->card, c);
        assert_int_equal(stored[c]->total_bytes, p->cards[c].fp.total);
        assert_same_memory(stored[c], &mem[c], m.L);
    }
    assert_int_equal(lp_plan_place_memory(p, m.L, &d), LP_OK);
    for (int c = 0; c < 2; c++) assert_ptr_equal(p->cards[c].memory, stored[c]);
    lp_arena_free(a);
    lp_plan_free(p);
    model_free(&m);
}

/* A two-card plan of gpt2_tiny through the stage, for corrupting. */
typedef struct mem_case {
    model m;
    lp_plan *p;
    lp_footprint_source src;
    lp_diag d;
} mem_case;

static void mem_case_open(mem_case *k) {
    model_load(&k->m, "gpt2_tiny.onnx", LP_DT_UNDEFINED);
    k->d = lp_diag_make("gpt2_tiny.onnx");
    k->d.sink = NULL;
    lp_partition_request r = {.cards = 2, .tokens = 16};
    k->p = NULL;
    assert_int_equal(lp_partition_stage(k->m.L, &r, &k->p, &k->d), LP_OK);
    k->src = lp_partition_source_analysis(k->m.L);
    assert_int_equal(lp_plan_validate_memory(k->p, k->m.L, &k->src, &k->d), LP_OK);
}

static void mem_case_close(mem_case *k) {
    lp_plan_free(k->p);
    model_free(&k->m);
}

static void expect_mem_error(mem_case *k, const char *text) {
    assert_int_equal(lp_plan_validate_memory(k->p, k->m.L, &k->src, &k->d), LP_ERR_INTERNAL);
    if (!strstr(k->d.last_error, text)) fail_msg("want '%s' in '%s'", text, k->d.last_error);
}

/* Regions in order: an arena that starts past the boundary's end. */
static void test_validate_regions_in_order(void **state) {
    (void)state;
    mem_case k;
    mem_case_open(&k);
    lp_card_memory *cm = k.p->cards[1].memory;
    char want[160];
    snprintf(want, sizeof want, "card 1 memory: the arena is at %llu but the region before it ends at %llu "
             "(regions out of order)", (unsigned long long)cm->arena_offset + 256,
             (unsigned long long)cm->arena_offset);
    cm->arena_offset += 256;
    expect_mem_error(&k, want);
    cm->arena_offset -= 256;
    cm->boundary_offset += 256; /* a gap after the weights */
    expect_mem_error(&k, "the boundary is at");
    mem_case_close(&k);
}

/* Regions and entries 256-byte aligned. */
static void test_validate_alignment(void **state) {
    (void)state;
    mem_case k;
    mem_case_open(&k);
    lp_card_memory *cm = k.p->cards[0].memory;
    assert_true(cm->n_weights > 0);
    /* the weights region one byte longer: the rest in order but unaligned */
    cm->weights_bytes++;
    cm->boundary_offset++;
    expect_mem_error(&k, "card 0 memory: the boundary region at");
    expect_mem_error(&k, "is not 256-byte aligned");
    cm->weights_bytes--;
    cm->boundary_offset--;
    assert_int_equal(lp_plan_validate_memory(k.p, k.m.L, &k.src, &k.d), LP_OK);
    cm->weights[0].offset += 1;
    expect_mem_error(&k, "weights entry 0");
    cm->weights[0].offset -= 1;
    cm->alignment = 128;
    expect_mem_error(&k, "alignment 128, not 256");
    mem_case_close(&k);
}

/* Slots inside the arena. */
static void test_validate_slot_in_arena(void **state) {
    (void)state;
    mem_case k;
    mem_case_open(&k);
    lp_card_memory *cm = k.p->cards[0].memory;
    int s = -1;
    for (int i = 0; i < cm->n_slots && s < 0; i++)
        if (cm->slots[i].bytes) s = i;
    assert_true(s >= 0);
    cm->slots[s].offset = cm->arena_offset + cm->arena_bytes; /* just past the arena */
    char want[200];
    snprintf(want, sizeof want, "slot %d '%s' (%llu B at %llu) is outside the arena %llu..%llu", s,
             k.m.g->values[cm->slots[s].value].name, (unsigned long long)cm->slots[s].bytes,
             (unsigned long long)cm->slots[s].offset, (unsigned long long)cm->arena_offset,
             (unsigned long long)(cm->arena_offset + cm->arena_bytes));
    expect_mem_error(&k, want);
    mem_case_close(&k);
}

/* Two slots alive at one step never share a byte: one moved onto another
 * alive with it is refused, naming both (the planner's own reuse of a dead
 * slot's bytes passed in mem_case_open). */
static void test_validate_slots_overlap(void **state) {
    (void)state;
    mem_case k;
    mem_case_open(&k);
    lp_card_memory *cm = k.p->cards[0].memory;
    int x = -1, y = -1;
    for (int i = 0; i < cm->n_slots && x < 0; i++)
        for (int j = 0; j < cm->n_slots; j++) {
            const lp_mem_slot *a = &cm->slots[i], *b = &cm->slots[j];
            if (i != j && a->bytes && b->bytes && a->offset != b->offset && a->first <= b->last &&
                b->first <= a->last) {
                x = i, y = j;
                break;
            }
        }
    assert_true(x >= 0);
    uint64_t was = cm->slots[y].offset;
    cm->slots[y].offset = cm->slots[x].offset;
    expect_mem_error(&k, "are both alive at step");
    expect_mem_error(&k, k.m.g->values[cm->slots[x].value].name);
    expect_mem_error(&k, k.m.g->values[cm->slots[y].value].name);
    cm->slots[y].offset = was;
    mem_case_close(&k);
}

/* total_bytes equal to the footprint total, the regions still in order. */
static void test_validate_total(void **state) {
    (void)state;
    mem_case k;
    mem_case_open(&k);
    lp_card_memory *cm = k.p->cards[1].memory;
    char want[160];
    snprintf(want, sizeof want, "card 1 memory: total_bytes %llu but the card's footprint total is %llu",
             (unsigned long long)cm->total_bytes + 256, (unsigned long long)k.p->cards[1].fp.total);
    cm->workspace_bytes += 256;
    cm->total_bytes += 256;
    expect_mem_error(&k, want);
    cm->workspace_bytes -= 256;
    expect_mem_error(&k, "the end (total_bytes) is at"); /* the total past the workspace */
    cm->total_bytes -= 256;
    k.p->cards[1].memory = NULL;
    expect_mem_error(&k, "card 1 has no memory plan");
    k.p->cards[1].memory = cm;
    mem_case_close(&k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_dags),  cmocka_unit_test(test_gpt2_tiny),
        cmocka_unit_test(test_bert_llama_cnn), cmocka_unit_test(test_sharded_seed),
        cmocka_unit_test(test_json_and_report), cmocka_unit_test(test_stage_stores_memory),
        cmocka_unit_test(test_validate_regions_in_order), cmocka_unit_test(test_validate_alignment),
        cmocka_unit_test(test_validate_slot_in_arena), cmocka_unit_test(test_validate_slots_overlap),
        cmocka_unit_test(test_validate_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
