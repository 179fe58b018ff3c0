/* The plan validator on hand-built plans over a hand-built layer IR: a good
 * plan passes, and each broken invariant (a layer twice, a layer missing,
 * ranges out of order, a card over capacity, a missing or useless transfer,
 * a broken shard) is refused with a message that carries the numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lp_partition.h"

/* Four layers of one node each: x -> L0 -> a0 -> L1 -> a1 -> L2 -> a2 ->
 * L3 -> a3, and L3 also reads a1 (a skip over card boundaries). Layer i
 * weighs wbytes[i] (multiples of the 256 B alignment, so no padding) and has
 * no activations, so a range costs the sum. */
enum { X, A0, A1, A2, A3, W0, W1, W2, W3, N_VALUES };
static const uint64_t wbytes[4] = {256, 512, 768, 1024};

typedef struct fixture {
    lp_value values[N_VALUES];
    lp_node nodes[4];
    lp_graph g;
    int32_t ins[4][2], outs[4][1], ws[4][1];
    lp_layer layers[4];
    int layer_of_node[4];
    lp_layer_ir L;
    lp_footprint_source src;
    uint64_t caps[1];
    lp_plan_card cards[4];
    lp_transfer transfers[8];
    lp_shard shard;
    lp_shard_weight shard_w;
    lp_plan p;
    lp_diag d;
} fixture;

static void range_fp(void *ctx, int first, int last, lp_footprint *fp) {
    (void)ctx;
    memset(fp, 0, sizeof *fp);
    for (int i = first; i <= last; i++) {
        fp->weight_bytes += wbytes[i];
        fp->padding_bytes += lp_align_pad(wbytes[i]);
    }
    fp->total = fp->weight_bytes + fp->padding_bytes;
}

static bool value_bytes(void *ctx, int32_t v, uint64_t *bytes) {
    (void)ctx;
    *bytes = v >= W0 ? wbytes[v - W0] : 64;
    return true;
}

static const char *names[N_VALUES] = {"x", "a0", "a1", "a2", "a3", "w0", "w1", "w2", "w3"};

static void build_ir(fixture *f) {
    for (int v = 0; v < N_VALUES; v++) {
        f->values[v] = (lp_value){.name = names[v], .producer = -1};
        f->values[v].kind = v >= W0 ? LP_VALUE_WEIGHT : v == X ? LP_VALUE_INPUT : LP_VALUE_ACTIVATION;
    }
    for (int i = 0; i < 4; i++) {
        f->values[A0 + i].producer = i;
        f->ins[i][0] = i == 0 ? X : A0 + i - 1;
        f->ins[i][1] = A1; /* only layer 3 lists it: n_inputs 2 below */
        f->outs[i][0] = A0 + i;
        f->ws[i][0] = W0 + i;
        f->nodes[i] = (lp_node){.name = names[A0 + i], .op_type = "MatMul", .n_inputs = 1,
                                .inputs = f->ins[i], .n_outputs = 1, .outputs = f->outs[i]};
        f->layers[i] = (lp_layer){.name = names[A0 + i], .first_node = i, .last_node = i,
                                  .n_weights = 1, .weights = f->ws[i], .n_inputs = i == 3 ? 2 : 1,
                                  .inputs = f->ins[i], .n_outputs = 1, .outputs = f->outs[i],
                                  .weight_bytes = wbytes[i], .total_bytes = wbytes[i]};
        f->layer_of_node[i] = i;
    }
    f->values[A3].is_graph_output = true;
    f->g = (lp_graph){.path = "hand.onnx", .n_values = N_VALUES, .values = f->values, .n_nodes = 4,
                      .nodes = f->nodes};
    f->L = (lp_layer_ir){.g = &f->g, .n_layers = 4, .layers = f->layers, .layer_of_node = f->layer_of_node};
    f->src = (lp_footprint_source){range_fp, value_bytes, NULL};
    f->d = lp_diag_make("hand.onnx");
    f->d.sink = NULL;
}

static void add_card(fixture *f, int first, int last) {
    int c = f->p.n_cards++;
    f->cards[c] = (lp_plan_card){.card = c, .first_layer = first, .last_layer = last, .n_shards = 1,
                                 .capacity = f->caps[0]};
}

static void add_transfer(fixture *f, int32_t v, int from, int to) {
    f->transfers[f->p.n_transfers++] =
        (lp_transfer){.value = v, .kind = LP_TRANSFER_CUT, .bytes = 64, .from_card = from, .to_card = to};
}

/* Cards 0..1 | 2 | 3 at C = 500: totals 300, 300, 400; a1 goes to both
 * later cards. */
static void good_plan(fixture *f) {
    memset(f, 0, sizeof *f);
    build_ir(f);
    f->caps[0] = 1280;
    f->p = (lp_plan){.algo = LP_ALGO_GREEDY, .n_caps = 1, .caps = f->caps, .n_layers = 4,
                     .cards = f->cards, .transfers = f->transfers};
    add_card(f, 0, 1);
    add_card(f, 2, 2);
    add_card(f, 3, 3);
    add_transfer(f, A1, 0, 1);
    add_transfer(f, A2, 1, 2);
    add_transfer(f, A1, 0, 2);
}

static void expect_error(fixture *f, lp_status want, const char *text) {
    lp_status st = lp_plan_validate(&f->p, &f->L, &f->src, &f->d);
    assert_int_equal(st, want);
    if (!strstr(f->d.last_error, text)) fail_msg("want '%s' in '%s'", text, f->d.last_error);
}

static void test_good_plan_passes(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    assert_int_equal(lp_plan_validate(&f.p, &f.L, &f.src, &f.d), LP_OK);
    assert_int_equal(f.d.n_errors, 0);
}

static void test_layer_twice(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    f.cards[1].first_layer = 1; /* layer 1 on cards 0 and 1 */
    expect_error(&f, LP_ERR_USAGE, "card 1 starts at layer 1 but layer 2 is next (a layer is on two cards)");
}

static void test_missing_layer(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    f.cards[0].last_layer = 0; /* layer 1 on no card */
    expect_error(&f, LP_ERR_USAGE, "card 1 starts at layer 2 but layer 1 is next (a layer is on none)");
    good_plan(&f);
    f.p.n_cards = 2; /* layer 3 dropped with its card */
    expect_error(&f, LP_ERR_USAGE, "layers 3..3 are on no card");
}

static void test_out_of_order(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    f.cards[1] = f.cards[2], f.cards[2] = (lp_plan_card){.card = 2, .first_layer = 2, .last_layer = 2,
                                                         .n_shards = 1, .capacity = 1280};
    f.cards[1].card = 1;
    expect_error(&f, LP_ERR_USAGE, "card 1 starts at layer 3 but layer 2 is next");
    good_plan(&f);
    f.cards[1].first_layer = 2, f.cards[1].last_layer = 1;
    expect_error(&f, LP_ERR_USAGE, "card 1 has layers 2..1, not a range of 0..3");
    good_plan(&f);
    f.cards[2].card = 5;
    expect_error(&f, LP_ERR_USAGE, "card 2 is listed as card 5");
}

static void test_over_capacity(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    f.cards[2].capacity = 1023; /* layer 3 weighs 1024 */
    expect_error(&f, LP_ERR_INFEASIBLE, "card 2: 1.00 KiB (1024 B) exceeds capacity 1023 B (1023 B)");
    /* the validator recomputes: a plan claiming a small footprint is no help */
    good_plan(&f);
    f.cards[0].fp.total = 1;
    f.cards[0].capacity = 767;
    expect_error(&f, LP_ERR_INFEASIBLE, "card 0: 768 B (768 B) exceeds capacity 767 B");
}

static void test_missing_transfer(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    f.p.n_transfers = 2; /* a1 no longer reaches card 2 */
    expect_error(&f, LP_ERR_USAGE, "value 'a1' crosses from card 0 to card 2 but no transfer carries it");
    good_plan(&f);
    f.transfers[1].from_card = 0; /* a2 is made on card 1, not 0 */
    expect_error(&f, LP_ERR_USAGE, "value 'a2' crosses from card 1 to card 2 but no transfer carries it");
}

static void test_useless_transfer(void **state) {
    (void)state;
    fixture f;
    good_plan(&f);
    add_transfer(&f, A0, 0, 2); /* card 2 does not read a0 */
    expect_error(&f, LP_ERR_USAGE, "transfer 3 (value 1, card 0 -> 2) carries nothing card 2 reads");
}

/* Layer 3 (1024 B) over cards 2 and 3, its weight split in columns 0..2 and
 * 2..4: each card holds 512 B, and one all-gather among cards 2..3 brings
 * a3 (64 B) whole to both, into a 256 B (aligned) gather buffer. */
static void sharded_plan(fixture *f, uint64_t cap) {
    good_plan(f);
    f->caps[0] = cap;
    for (int c = 0; c < 3; c++) f->cards[c].capacity = cap;
    add_card(f, 3, 3);
    f->cards[2].n_shards = f->cards[3].n_shards = 2;
    f->cards[3].shard = 1;
    f->shard_w = (lp_shard_weight){W3, 3, A3, 1, 1, 4};
    f->shard = (lp_shard){.layer = 3, .first_card = 2, .n_shards = 2, .n_weights = 1, .weights = &f->shard_w};
    f->p.n_shards = 1;
    f->p.shards = &f->shard;
    add_transfer(f, A2, 1, 3);
    add_transfer(f, A1, 0, 3);
    f->transfers[f->p.n_transfers++] =
        (lp_transfer){.value = A3, .kind = LP_TRANSFER_ALL_GATHER, .bytes = 64, .first_card = 2,
                      .n_cards = 2, .axis = 1, .dim = 4};
}

static void test_sharded_plan(void **state) {
    (void)state;
    fixture f;
    sharded_plan(&f, 768);
    assert_int_equal(lp_plan_validate(&f.p, &f.L, &f.src, &f.d), LP_OK);
    lp_footprint fp;
    lp_shard_footprint(&f.shard, 1, &f.src, &fp);
    assert_int_equal(fp.weight_bytes, 512);
    assert_int_equal(fp.boundary_bytes, 64);
    assert_int_equal(fp.total, 512 + 256);
    /* the participants and what each contributes */
    const lp_transfer *g = &f.transfers[f.p.n_transfers - 1];
    int64_t b, e;
    lp_transfer_range(g, 0, &b, &e);
    assert_true(b == 0 && e == 2);
    lp_transfer_range(g, 1, &b, &e);
    assert_true(b == 2 && e == 4);
    assert_int_equal(lp_transfer_slice_bytes(g, 0), 32);
    assert_int_equal(lp_transfer_slice_bytes(g, 1), 32);
    /* each shard card is checked against its capacity */
    sharded_plan(&f, 768);
    f.cards[3].capacity = 767;
    expect_error(&f, LP_ERR_INFEASIBLE, "card 3 (shard 1 of 2 of layer 3): 768 B (768 B) exceeds capacity 767 B");
    /* a missing gather */
    sharded_plan(&f, 768);
    f.p.n_transfers--;
    expect_error(&f, LP_ERR_USAGE, "'a3' (layer 3) is computed in slices on cards 2..3 but no all-gather collects it");
    /* a gather over the wrong cards, axis or dim */
    sharded_plan(&f, 768);
    f.transfers[f.p.n_transfers - 1].n_cards = 3;
    expect_error(&f, LP_ERR_USAGE, "transfer 5 all-gathers 'a3' over cards 2..4 along axis 1 of 4, but layer 3 "
                 "computes it in slices on cards 2..3 along axis 1 of 4");
    sharded_plan(&f, 768);
    f.transfers[f.p.n_transfers - 1].first_card = 1;
    expect_error(&f, LP_ERR_USAGE, "over cards 1..2 along axis 1 of 4");
    sharded_plan(&f, 768);
    f.transfers[f.p.n_transfers - 1].dim = 5;
    expect_error(&f, LP_ERR_USAGE, "along axis 1 of 5, but layer 3");
    /* one gather twice, and a gather of a value no shard splits */
    sharded_plan(&f, 768);
    f.transfers[f.p.n_transfers] = f.transfers[f.p.n_transfers - 1];
    f.p.n_transfers++;
    expect_error(&f, LP_ERR_USAGE, "transfer 6 all-gathers 'a3' (layer 3) a second time");
    sharded_plan(&f, 768);
    f.transfers[f.p.n_transfers] = f.transfers[f.p.n_transfers - 1];
    f.transfers[f.p.n_transfers++].value = A2;
    expect_error(&f, LP_ERR_USAGE, "transfer 6 all-gathers value 3, which no sharded layer computes in slices");
    /* a shard card whose predecessor is not the previous shard */
    sharded_plan(&f, 768);
    f.cards[3].shard = 0;
    expect_error(&f, LP_ERR_USAGE, "card 3 is shard 0 of 2 of layer 3 but the plan's shard list");
    /* the sharded layer still needs its inputs on every card */
    sharded_plan(&f, 768);
    f.transfers[4].to_card = 2; /* a1 0 -> 3 becomes a duplicate 0 -> 2 */
    expect_error(&f, LP_ERR_USAGE, "value 'a1' crosses from card 0 to card 3 but no transfer carries it");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plan_passes),  cmocka_unit_test(test_layer_twice),
        cmocka_unit_test(test_missing_layer),     cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_over_capacity),     cmocka_unit_test(test_missing_transfer),
        cmocka_unit_test(test_useless_transfer),  cmocka_unit_test(test_sharded_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
