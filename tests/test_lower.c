/* Lowering (codegen/lower.c): each card's program on hand-built plans, its
 * arguments at the stored memory plan's offsets, and the verifier refusing
 * each broken invariant with its message. */
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

#include "json_out.h"
#include "lp_lower.h"
#include "lp_ops.h"
#include "support/ir_builder.h"

/* x -> Relu -> a -> MatMul(W1 [8,16]) -> h -> Relu -> r -> Identity -> i
 *   -> MatMul(W2 [16,8]) -> y, one layer per node. */
typedef struct chain {
    lp_graph *g;
    lp_layer_ir *L;
    lp_plan *p;
    lp_program *prog;
    lp_diag d;
    int32_t x, a, h, r, i, y, w1, w2;
} chain;

/* Cards by group ends; shard > 1 shards layer 1 (the first MatMul) over
 * that many cards. */
static void chain_open(chain *k, const int *ends, int n_groups, int shard) {
    memset(k, 0, sizeof *k);
    lp_graph *g = k->g = lp_graph_new("chain.onnx");
    assert_non_null(g);
    g->nodes = lp_arena_array(g->arena, 5, sizeof(lp_node));
    k->x = ib_value(g, "x", LP_VALUE_INPUT, 4, 8);
    k->w1 = ib_value(g, "W1", LP_VALUE_WEIGHT, 8, 16);
    k->w2 = ib_value(g, "W2", LP_VALUE_WEIGHT, 16, 8);
    k->a = ib_value(g, "a", LP_VALUE_ACTIVATION, 4, 8);
    k->h = ib_value(g, "h", LP_VALUE_ACTIVATION, 4, 16);
    k->r = ib_value(g, "r", LP_VALUE_ACTIVATION, 4, 16);
    k->i = ib_value(g, "i", LP_VALUE_ACTIVATION, 4, 16);
    k->y = ib_value(g, "y", LP_VALUE_ACTIVATION, 4, 8);
    ib_inputs(g, 1, &k->x);
    int n = 0;
    ib_node(g, &n, "Relu", k->x, -1, k->a);
    ib_node(g, &n, "MatMul", k->a, k->w1, k->h);
    ib_node(g, &n, "Relu", k->h, -1, k->r);
    ib_node(g, &n, "Identity", k->r, -1, k->i);
    ib_node(g, &n, "MatMul", k->i, k->w2, k->y);
    g->n_nodes = n;
    ib_output(g, k->y);
    k->L = ib_build_layers(g, LP_LAYERS_NODE);
    assert_int_equal(k->L->n_layers, 5);
    k->d = lp_diag_make("chain.onnx");
    k->d.sink = NULL;
    lp_footprint_source src = lp_partition_source_analysis(k->L);
    lp_partition_options o = lp_partition_defaults();
    int counts[5] = {1, shard, 1, 1, 1};
    if (shard > 1) o.shard_counts = counts;
    assert_int_equal(lp_plan_from_ends(k->L, &src, &o, ends, n_groups, &k->p, &k->d), LP_OK);
    assert_int_equal(lp_plan_place_memory(k->p, k->L, &k->d), LP_OK);
}

static void chain_lower(chain *k) {
    lp_program_free(k->prog);
    k->prog = NULL;
    assert_int_equal(lp_lower_run(k->p, k->L, &k->prog, &k->d), LP_OK);
    assert_int_equal(lp_program_verify(k->prog, k->p, k->L, &k->d), LP_OK);
}

static void chain_close(chain *k) {
    lp_program_free(k->prog);
    lp_plan_free(k->p);
    lp_layer_ir_free(k->L);
    lp_graph_free(k->g);
}

static const lp_mem_slot *slot_of(const lp_card_memory *m, int32_t v) {
    for (int i = 0; i < m->n_slots; i++)
        if (m->slots[i].value == v) return &m->slots[i];
    fail_msg("no slot for value %d", v);
    return NULL;
}

static const lp_mem_weight *weight_of(const lp_card_memory *m, int32_t v) {
    for (int i = 0; i < m->n_weights; i++)
        if (m->weights[i].value == v) return &m->weights[i];
    fail_msg("no weight entry for value %d", v);
    return NULL;
}

static const lp_mem_boundary *boundary_of(const lp_card_memory *m, int32_t v, lp_mem_dir dir) {
    for (int i = 0; i < m->n_boundary; i++)
        if (m->boundary[i].value == v && m->boundary[i].dir == dir) return &m->boundary[i];
    fail_msg("no boundary entry for value %d", v);
    return NULL;
}

/* Every slot and weight argument of every compute step, every receive and
 * send buffer, at the memory plan's offset and size. */
static void check_offsets(const chain *k) {
    for (int c = 0; c < k->prog->n_cards; c++) {
        const lp_card_program *cp = &k->prog->cards[c];
        const lp_card_memory *m = k->p->cards[c].memory;
        assert_ptr_equal(cp->memory, m);
        for (int s = 0; s < cp->n_steps; s++) {
            const lp_step *st = &cp->steps[s];
            for (int io = 0; io < 2 && st->kind == LP_STEP_COMPUTE; io++)
                for (int j = 0; j < (io ? st->n_outputs : st->n_inputs); j++) {
                    const lp_arg *a = io ? &st->outputs[j] : &st->inputs[j];
                    if (a->region == LP_REGION_SLOT) {
                        assert_int_equal(a->offset, slot_of(m, a->value)->offset);
                        assert_int_equal(a->bytes, slot_of(m, a->value)->bytes);
                    } else if (a->region == LP_REGION_WEIGHT) {
                        assert_int_equal(a->offset, weight_of(m, a->value)->offset);
                        assert_int_equal(a->bytes, weight_of(m, a->value)->bytes);
                    }
                }
            if (st->kind == LP_STEP_COMPUTE) {
                assert_int_equal(st->kernel, lp_node_op(&k->g->nodes[st->node]));
                assert_int_equal(st->workspace_offset, m->workspace_offset);
            }
            if (st->kind == LP_STEP_RECEIVE || st->kind == LP_STEP_SEND) {
                const lp_mem_boundary *b = boundary_of(m, st->value, st->kind == LP_STEP_RECEIVE ? LP_MEM_IN : LP_MEM_OUT);
                assert_int_equal(st->buffer.offset, b->offset);
                assert_int_equal(st->buffer.bytes, b->bytes);
                assert_int_equal(st->slot.offset, slot_of(m, st->value)->offset);
            }
        }
    }
}

/* Two cards: the steps in plan order, each argument where the memory plan
 * put it, the cut value sent by card 0 and received by card 1. */
static void test_two_cards(void **state) {
    (void)state;
    chain k;
    chain_open(&k, (int[]){1, 4}, 2, 1);
    chain_lower(&k);
    assert_int_equal(k.prog->n_cards, 2);
    const lp_card_program *c0 = &k.prog->cards[0], *c1 = &k.prog->cards[1];
    /* card 0: receive x from the host, Relu, MatMul, send h to card 1 */
    assert_int_equal(c0->n_steps, 4);
    assert_int_equal(c0->steps[0].kind, LP_STEP_RECEIVE);
    assert_int_equal(c0->steps[0].value, k.x);
    assert_int_equal(c0->steps[0].peer, -1);
    assert_int_equal(c0->steps[1].kind, LP_STEP_COMPUTE);
    assert_int_equal(c0->steps[1].kernel, LP_OP_Relu);
    assert_int_equal(c0->steps[2].kernel, LP_OP_MatMul);
    assert_int_equal(c0->steps[2].inputs[1].region, LP_REGION_WEIGHT);
    assert_int_equal(c0->steps[3].kind, LP_STEP_SEND);
    assert_int_equal(c0->steps[3].value, k.h);
    assert_int_equal(c0->steps[3].peer, 1);
    /* card 1: receive h from card 0, Relu, Identity, MatMul, y to the host */
    assert_int_equal(c1->n_steps, 5);
    assert_int_equal(c1->steps[0].kind, LP_STEP_RECEIVE);
    assert_int_equal(c1->steps[0].peer, 0);
    assert_int_equal(c1->steps[2].kernel, LP_OP_Identity);
    assert_int_equal(c1->steps[2].outputs[0].region, LP_REGION_SLOT); /* the plan gives it a slot */
    assert_int_equal(c1->steps[4].kind, LP_STEP_SEND);
    assert_int_equal(c1->steps[4].peer, -1);
    assert_int_equal(c1->n_phases, 1);
    assert_int_equal(c1->phases[0].n_steps, 5);
    assert_int_equal(c1->phases[0].n_inputs, 1);
    assert_int_equal(c1->phases[0].inputs[0], k.h);
    assert_int_equal(c1->phases[0].outputs[0], k.y);
    check_offsets(&k);
    chain_close(&k);
}

/* The first MatMul sharded over cards 1 and 2: each writes its columns into
 * its chunk of the gather buffer, the all-gather follows in phase 1, and
 * only the last shard sends; the first one's phase 1 is the collective. */
static void test_sharded(void **state) {
    (void)state;
    chain k;
    chain_open(&k, (int[]){0, 1, 4}, 3, 2);
    chain_lower(&k);
    assert_int_equal(k.prog->n_cards, 4);
    check_offsets(&k);
    for (int s = 0; s < 2; s++) {
        const lp_card_program *cp = &k.prog->cards[1 + s];
        const lp_card_memory *m = cp->memory;
        const lp_mem_boundary *gb = boundary_of(m, k.h, LP_MEM_GATHER);
        assert_int_equal(cp->n_phases, 2);
        assert_int_equal(cp->steps[0].kind, LP_STEP_RECEIVE);
        const lp_step *mm = &cp->steps[1];
        assert_int_equal(mm->kind, LP_STEP_COMPUTE);
        assert_int_equal(mm->outputs[0].region, LP_REGION_GATHER);
        assert_int_equal(mm->outputs[0].offset, gb->offset + (uint64_t)s * gb->bytes / 2);
        assert_int_equal(mm->outputs[0].bytes, gb->bytes / 2);
        assert_int_equal(mm->inputs[1].bytes, weight_of(m, k.w1)->bytes); /* the slice of W1 */
        assert_int_equal(weight_of(m, k.w1)->bytes, 8 * 16 * 4 / 2);
        const lp_step *ag = &cp->steps[2];
        assert_int_equal(ag->kind, LP_STEP_ALL_GATHER);
        assert_int_equal(ag->phase, 1);
        assert_int_equal(ag->rank, s);
        assert_int_equal(ag->first_card, 1);
        assert_int_equal(ag->n_cards, 2);
        assert_int_equal(ag->whole.offset, gb->offset);
        assert_int_equal(ag->slice.offset, mm->outputs[0].offset);
        assert_int_equal(ag->slot.offset, slot_of(m, k.h)->offset);
        assert_int_equal(cp->phases[0].sliced, 0);
        assert_int_equal(cp->phases[1].gathered, 0);
        assert_int_equal(cp->phases[0].n_inputs, 1); /* a */
        assert_int_equal(cp->phases[0].n_outputs, 0); /* the slice only */
    }
    const lp_card_program *first = &k.prog->cards[1], *last = &k.prog->cards[2];
    assert_true(first->phases[1].gather_only);
    assert_int_equal(first->n_steps, 3);
    assert_false(last->phases[1].gather_only);
    assert_int_equal(last->n_steps, 4);
    assert_int_equal(last->steps[3].kind, LP_STEP_SEND);
    assert_int_equal(last->steps[3].peer, 3);
    assert_int_equal(last->phases[1].n_outputs, 1);
    assert_int_equal(last->phases[1].outputs[0], k.h);
    chain_close(&k);
}

/* A view op whose output the memory plan gives no slot is a view of its
 * input's bytes; any other output without a place is an error. */
static void test_view_and_no_place(void **state) {
    (void)state;
    chain k;
    chain_open(&k, (int[]){1, 4}, 2, 1);
    lp_card_memory *m = k.p->cards[1].memory;
    int at = -1;
    for (int s = 0; s < m->n_slots; s++)
        if (m->slots[s].value == k.i) at = s;
    assert_true(at >= 0);
    lp_mem_slot kept = m->slots[at];
    m->slots[at] = m->slots[m->n_slots - 1];
    m->n_slots--;
    chain_lower(&k);
    const lp_arg *out = &k.prog->cards[1].steps[2].outputs[0];
    assert_int_equal(out->region, LP_REGION_VIEW);
    assert_int_equal(out->view_of, 0);
    assert_int_equal(out->offset, slot_of(m, k.r)->offset);
    assert_int_equal(k.prog->cards[1].steps[3].inputs[0].offset, out->offset); /* the reader follows */
    /* a Relu output without a slot has no place */
    for (int s = 0; s < m->n_slots; s++)
        if (m->slots[s].value == k.i) fail_msg("slot kept");
    m->slots[m->n_slots++] = kept;
    for (int s = 0; s < m->n_slots; s++)
        if (m->slots[s].value == k.r) m->slots[s].value = k.x; /* x is not on card 1 */
    lp_program_free(k.prog);
    k.prog = NULL;
    assert_int_equal(lp_lower_run(k.p, k.L, &k.prog, &k.d), LP_ERR_INTERNAL);
    assert_non_null(strstr(k.d.last_error, "lowering card 1: "));
    assert_non_null(strstr(k.d.last_error, "has no place in the card's memory plan"));
    assert_null(k.prog);
    chain_close(&k);
}

static void expect_refused(chain *k, const char *want) {
    assert_int_equal(lp_program_verify(k->prog, k->p, k->L, &k->d), LP_ERR_INTERNAL);
    if (!strstr(k->d.last_error, want)) fail_msg("want '%s' in '%s'", want, k->d.last_error);
}

static void swap_steps(lp_card_program *cp, int a, int b) {
    lp_step t = cp->steps[a];
    cp->steps[a] = cp->steps[b];
    cp->steps[b] = t;
    int pa = cp->steps[a].phase;
    cp->steps[a].phase = cp->steps[b].phase;
    cp->steps[b].phase = pa;
}

/* Arguments outside the allocation or their region, a view of other bytes,
 * a workspace past its region. */
static void test_verify_places(void **state) {
    (void)state;
    chain k;
    chain_open(&k, (int[]){1, 4}, 2, 1);
    chain_lower(&k);
    lp_card_program *cp = &k.prog->cards[1];
    const lp_card_memory *m = cp->memory;
    lp_arg *in = &cp->steps[1].inputs[0], saved = *in;
    char want[256];
    in->offset = m->arena_offset - 256; /* the boundary's last bytes */
    snprintf(want, sizeof want, "program of card 1, step 1 (compute 'n2'): input 'h' at %llu+%llu lies "
             "outside its slot region [%llu, %llu)", (unsigned long long)in->offset,
             (unsigned long long)in->bytes, (unsigned long long)m->arena_offset,
             (unsigned long long)(m->arena_offset + m->arena_bytes));
    expect_refused(&k, want);
    in->offset = m->total_bytes;
    expect_refused(&k, "lies outside the card's allocation of");
    *in = saved;
    in->region = LP_REGION_WEIGHT; /* a slot offset is past the weights */
    expect_refused(&k, "outside its weight region");
    *in = saved;
    assert_int_equal(lp_program_verify(k.prog, k.p, k.L, &k.d), LP_OK);

    lp_arg *out = &cp->steps[2].outputs[0];
    saved = *out;
    *out = (lp_arg){.value = k.i, .region = LP_REGION_VIEW, .view_of = 0, .offset = saved.offset,
                    .bytes = saved.bytes};
    expect_refused(&k, "output 'i' is a view but not of the bytes of an input (view_of 0)");
    *out = saved;
    cp->steps[3].workspace_bytes = m->workspace_bytes + 1;
    expect_refused(&k, "lies outside the workspace region");
    cp->steps[3].workspace_bytes = 0;
    cp->phases[0].n_steps--;
    expect_refused(&k, "program of card 1: its phases cover 4 of its 5 steps");
    cp->phases[0].n_steps++;
    assert_int_equal(lp_program_verify(k.prog, k.p, k.L, &k.d), LP_OK);
    chain_close(&k);
}

/* Order: an input read before its producer, a send before the value is
 * made, an all-gather before the slice is computed. */
static void test_verify_order(void **state) {
    (void)state;
    chain k;
    chain_open(&k, (int[]){1, 4}, 2, 1);
    chain_lower(&k);
    lp_card_program *c1 = &k.prog->cards[1];
    swap_steps(c1, 1, 2); /* Identity before the Relu making r */
    expect_refused(&k, "program of card 1, step 1 (compute 'n3'): input 'r' is read before any step of "
                       "the card makes or receives it");
    swap_steps(c1, 1, 2);
    swap_steps(c1, 0, 1); /* the Relu before h is received */
    expect_refused(&k, "step 0 (compute 'n2'): input 'h' is read before any step");
    swap_steps(c1, 0, 1);
    lp_card_program *c0 = &k.prog->cards[0];
    swap_steps(c0, 2, 3); /* h sent before the MatMul makes it */
    expect_refused(&k, "program of card 0, step 2 (send 'h'): sends 'h' before any step of the card makes it");
    swap_steps(c0, 2, 3);
    assert_int_equal(lp_program_verify(k.prog, k.p, k.L, &k.d), LP_OK);
    chain_close(&k);

    chain_open(&k, (int[]){0, 1, 4}, 3, 2);
    chain_lower(&k);
    lp_card_program *sh = &k.prog->cards[2];
    swap_steps(sh, 1, 2); /* the all-gather before the MatMul computes the slice */
    expect_refused(&k, "program of card 2, step 1 (all_gather 'h'): gathers 'h' before the step that "
                       "computes the card's slice of it");
    swap_steps(sh, 1, 2);
    sh->steps[2].slice.offset = sh->steps[2].whole.offset - 64; /* into the buffer before */
    expect_refused(&k, "lies outside the gather buffer");
    chain_close(&k);
}

/* The dumps: text names each step, JSON carries the same offsets. */
static void test_dumps(void **state) {
    (void)state;
    chain k;
    chain_open(&k, (int[]){0, 1, 4}, 3, 2);
    chain_lower(&k);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    lp_program_dump_text(k.prog, k.L, f);
    fclose(f);
    const lp_step *ag = &k.prog->cards[2].steps[2];
    char want[256];
    snprintf(want, sizeof want, "all_gather 'h' among cards 1..2 (rank 1, axis 1): slice @%llu+%llu",
             (unsigned long long)ag->slice.offset, (unsigned long long)ag->slice.bytes);
    if (!strstr(text, want) || !strstr(text, "card 1 (shard 0 of 2): 3 steps, 2 phases") ||
        !strstr(text, "receive    'a' from card 0") || !strstr(text, "send       'y' to host"))
        fail_msg("'%s' not in:\n%s", want, text);
    free(text);

    lp_json_out *w = lp_json_out_tree();
    lp_program_write_json(k.prog, k.L, w);
    json_t *j = lp_json_out_take(w);
    assert_non_null(j);
    json_t *card = json_array_get(json_object_get(j, "cards"), 2);
    json_t *step = json_array_get(json_object_get(card, "steps"), 2);
    assert_string_equal(json_string_value(json_object_get(step, "kind")), "all_gather");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(step, "slice"), "offset")), ag->slice.offset);
    json_t *mm = json_array_get(json_object_get(card, "steps"), 1);
    assert_string_equal(json_string_value(json_object_get(mm, "op")), "MatMul");
    json_t *o = json_array_get(json_object_get(mm, "outputs"), 0);
    assert_string_equal(json_string_value(json_object_get(o, "region")), "gather");
    json_t *ph = json_array_get(json_object_get(json_array_get(json_object_get(j, "cards"), 1), "phases"), 1);
    assert_true(json_is_true(json_object_get(ph, "gather_only")));
    json_decref(j);
    chain_close(&k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_cards),      cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_view_and_no_place), cmocka_unit_test(test_verify_places),
        cmocka_unit_test(test_verify_order),   cmocka_unit_test(test_dumps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
