/* The GPU persistent kernel's layout of a program (runtime/persist_gpu_plan.c),
 * without a GPU: Gemm shapes worked out by hand from the kernel's unit
 * shapes and shared-memory budget, launches and intervals, prefetch slots,
 * groups sharing staged A, which weights may be packed; and, over random
 * programs, that every Gemm's places fit the shared memory without
 * overlapping and that every group shares its rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lp_ir.h"
#include "lp_ops.h"
#include "persist_gpu_plan.h"

#define BLOCKS 132
#define F16 LP_DT_FLOAT16
#define F32 LP_DT_FLOAT

static lp_persist_view dense(uint64_t off, int dt, int64_t rows, int64_t cols) {
    lp_persist_view v = {.offset = off, .dtype = dt, .rank = 2, .dims = {rows, cols}, .strides = {cols, 1}};
    return v;
}

/* A Gemm out[M, N] = a[M, K] . w[K, N], w at woff (a weight), marked packed. */
static lp_persist_phase gemm(uint64_t aoff, uint64_t woff, uint64_t ooff, int64_t M, int64_t N, int64_t K, int sync) {
    lp_persist_phase g = {.kind = LP_PERSIST_GEMM, .sync = sync, .m = M, .n = N, .k = K};
    g.a = dense(aoff, F16, M, K);
    g.b = dense(woff, F16, K, N);
    g.b.weight = 1;
    g.out = dense(ooff, F16, M, N);
    return g;
}

static void with_ln(lp_persist_phase *g, uint64_t scale, uint64_t bias, float eps) {
    g->ln = 1;
    g->ln_eps = eps;
    g->scale = (lp_persist_view){.offset = scale, .dtype = F16, .rank = 1, .dims = {g->k}, .strides = {1}, .weight = 1};
    g->ln_bias = (lp_persist_view){.offset = bias, .dtype = F16, .rank = 1, .dims = {g->k}, .strides = {1}, .weight = 1};
}

static lp_persist_phase elementwise(uint64_t in, uint64_t out, int64_t n, int sync) {
    lp_persist_phase e = {.kind = LP_PERSIST_ELEMENTWISE, .op = LP_OP_Relu, .sync = sync};
    e.a = dense(in, F16, 1, n);
    e.out = dense(out, F16, 1, n);
    return e;
}

static lp_persist_program program(lp_persist_phase *ph, int n) {
    return (lp_persist_program){.n_phases = n, .phases = ph};
}

/* Marks every Gemm's weight packed, as open does for those it packs. */
static void mark_packed(lp_persist_phase *ph, int n) {
    for (int i = 0; i < n; i++)
        if (ph[i].kind == LP_PERSIST_GEMM) ph[i].b.weight = PK_PACKED;
}

/* The shared memory a planned Gemm stages A, its sums and its vectors in. */
static int64_t a_bytes(const pk_gemm *g, const lp_persist_phase *ph) { return (int64_t)g->mc * (ph->k + 8) * 2; }
static int64_t red_bytes(const pk_gemm *g) { return (int64_t)PK_WARPS * g->g * 8 * g->mc * 4; }

/* ---- shapes ------------------------------------------------------------- */

/* Worked by hand: per row of A (K + 8) * 2 bytes plus 8 warps' sums of g
 * tiles; rows a power of two times 16, at most 128 (16 with g > 1), at
 * least 16; the first unit's g * K / 32 * 512 bytes fetched early when they
 * are at most 64 KiB and the rows still fit beside them. */
static void test_shapes(void **state) {
    (void)state;
    pk_shape s = pk_gemm_shape(16, 1024, 1024, 0, BLOCKS); /* 128 tiles: one a block */
    assert_int_equal(s.g, 1);
    assert_int_equal(s.mc, 16);
    assert_int_equal(s.pre, 16384);
    s = pk_gemm_shape(16, 4096, 1024, 0, BLOCKS); /* 512 tiles: 4 a unit */
    assert_int_equal(s.g, 4);
    assert_int_equal(s.mc, 16);
    assert_int_equal(s.pre, 65536);
    s = pk_gemm_shape(16, 1024, 4096, 0, BLOCKS); /* 64 KiB of weights a unit: still fetched early */
    assert_int_equal(s.g, 1);
    assert_int_equal(s.mc, 16);
    assert_int_equal(s.pre, 65536);
    /* a LayerNorm's 16 KiB of vectors leave no room for the prefetch: (212 - 64 - 16) KiB / 8464 B < 16 rows */
    s = pk_gemm_shape(16, 1024, 4096, 16384, BLOCKS);
    assert_int_equal(s.mc, 16);
    assert_int_equal(s.pre, 0);
    /* 128 rows: (212 KiB - 16 KiB) / 2320 B = 86 rows: 64 a time */
    s = pk_gemm_shape(128, 1024, 1024, 0, BLOCKS);
    assert_int_equal(s.g, 1);
    assert_int_equal(s.mc, 64);
    assert_int_equal(s.pre, 16384);
    /* K 16384: one row of A is 32 KiB, not 16 rows: no tensor-core shape */
    s = pk_gemm_shape(16, 1024, 16384, 0, BLOCKS);
    assert_int_equal(s.mc, 0);
    /* 3 rows are staged as a tile of 16 */
    s = pk_gemm_shape(3, 256, 512, 0, BLOCKS);
    assert_int_equal(s.mc, 16);
}

/* Over many shapes: what a shape promises fits, and is what the kernel is built for. */
static void test_shapes_fit(void **state) {
    (void)state;
    uint32_t r = 12345u;
    for (int t = 0; t < 20000; t++) {
        r = r * 1664525u + 1013904223u;
        int64_t M = 1 + (r >> 8) % 300, N = 8 * (1 + (r >> 3) % 1024), K = 32 * (1 + (r >> 13) % 300);
        int64_t extra = (r & 1) ? 4 * K : 0;
        pk_shape s = pk_gemm_shape(M, N, K, extra, BLOCKS);
        if (!s.mc) continue;
        assert_true(s.g == 1 || s.g == 2 || s.g == 4);
        assert_true(s.mc == 16 || s.mc == 32 || s.mc == 64 || s.mc == 128);
        assert_true(s.g == 1 || s.mc == 16);
        assert_true(s.pre == 0 || s.pre == (int64_t)s.g * (K / 32) * 512);
        assert_true(s.pre <= PK_PREFETCH);
        assert_true(s.mc <= (M + 15) / 16 * 16 || s.mc == 16);
        int64_t need = s.mc * (K + 8) * 2 + (int64_t)PK_WARPS * s.g * 8 * s.mc * 4 + s.pre + extra;
        assert_true(need <= PK_SMEM);
    }
}

/* ---- launches and intervals ------------------------------------------------ */

static void test_launches(void **state) {
    (void)state;
    enum { N = 100 };
    lp_persist_phase ph[N];
    for (int i = 0; i < N; i++) ph[i] = elementwise(1u << 20, 2u << 20, 64, 0);
    lp_persist_program p = program(ph, N);
    assert_int_equal(pk_launch_end(&p, 0), PK_LAUNCH_PHASES);
    assert_int_equal(pk_launch_end(&p, PK_LAUNCH_PHASES), 2 * PK_LAUNCH_PHASES);
    assert_int_equal(pk_launch_end(&p, 2 * PK_LAUNCH_PHASES), N);
    ph[10] = (lp_persist_phase){.kind = LP_PERSIST_NODE};
    ph[30].sync = 1;
    assert_int_equal(pk_launch_end(&p, 0), 10);
    assert_int_equal(pk_launch_end(&p, 11), 11 + PK_LAUNCH_PHASES);
    pk_gemm pl[N];
    pk_plan_gemms(&p, ph, BLOCKS, pl);
    for (int i = 0; i < N; i++) {
        bool head = i == 0 || i == 11 || i == 30 || i == 11 + PK_LAUNCH_PHASES || i == 11 + 2 * PK_LAUNCH_PHASES;
        if (i == 10) head = false; /* a library call is no kernel's phase */
        assert_int_equal(pl[i].head, head);
        assert_int_equal(pl[i].mc, 0);
    }
}

/* q, k and v read one A through one LayerNorm: one interval, one group,
 * three prefetch slots side by side, rotations 0, 128, 256. The Gemm after
 * the barrier opens its own interval and group; the one after a library
 * call too. A fourth Gemm of the first interval with another epsilon has
 * its own group. */
static void test_intervals_and_groups(void **state) {
    (void)state;
    const uint64_t X = 1u << 24, Y = X + (1u << 20), Z = Y + (1u << 20), O = Z + (1u << 20);
    lp_persist_phase ph[8];
    ph[0] = gemm(X, 0, O, 16, 1024, 1024, 1);
    ph[1] = gemm(X, 1u << 21, O + 32768, 16, 1024, 1024, 0);
    ph[2] = gemm(X, 2u << 21, O + 65536, 16, 1024, 1024, 0);
    ph[3] = gemm(X, 3u << 21, O + 98304, 16, 1024, 1024, 0);
    for (int i = 0; i < 4; i++) with_ln(&ph[i], 1u << 23, (1u << 23) + 4096, i == 3 ? 1e-6f : 1e-5f);
    ph[4] = elementwise(O, Y, 16 * 1024, 1);
    ph[5] = gemm(Y, 4u << 21, Z, 16, 1024, 1024, 1);
    ph[6] = (lp_persist_phase){.kind = LP_PERSIST_NODE};
    ph[7] = gemm(Y, 5u << 21, Z + 65536, 16, 1024, 1024, 0);
    lp_persist_program p = program(ph, 8);
    mark_packed(ph, 8);
    pk_gemm pl[8];
    pk_plan_gemms(&p, ph, BLOCKS, pl);
    const int heads[8] = {1, 0, 0, 0, 1, 1, 0, 1};
    for (int i = 0; i < 8; i++) assert_int_equal(pl[i].head, heads[i]);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pl[i].mc, 16);
        assert_int_equal(pl[i].units, 128);
        assert_int_equal(pl[i].rot, 128 * i);
        assert_int_equal(pl[i].pre, 16384);
        assert_int_equal(pl[i].pre_at, 16384 * i);
        assert_int_equal(pl[i].a_at, 4 * 16384);
        assert_int_equal(pl[i].red_at, 4 * 16384 + 16 * 1032 * 2);
        assert_int_equal(pl[i].ln_at, pl[i].red_at + PK_WARPS * 8 * 16 * 4);
        assert_int_equal(pl[i].w, ph[i].b.offset);
    }
    assert_int_equal(pl[0].a_group, 0);
    assert_int_equal(pl[1].a_group, 0);
    assert_int_equal(pl[2].a_group, 0);
    assert_int_equal(pl[3].a_group, 3); /* another epsilon: rows of its own */
    assert_int_equal(pl[4].mc, 0);
    assert_int_equal(pl[5].rot, 0);
    assert_int_equal(pl[5].a_group, 5);
    assert_int_equal(pl[5].pre_at, 0);
    assert_int_equal(pl[7].rot, 0); /* a new launch */
    assert_int_equal(pl[7].a_group, 7); /* Y again, but in another interval */
}

/* Five Gemms of 64 KiB prefetches in one interval: two slots fit beside the
 * largest staging, the other three fetch at their turn. */
static void test_prefetch_budget(void **state) {
    (void)state;
    lp_persist_phase ph[5];
    for (int i = 0; i < 5; i++) ph[i] = gemm(1u << 26, (uint64_t)i << 23, (2u << 26) + (uint64_t)i * 131072, 16, 4096, 1024, 0);
    lp_persist_program p = program(ph, 5);
    mark_packed(ph, 5);
    pk_gemm pl[5];
    pk_plan_gemms(&p, ph, BLOCKS, pl);
    int64_t stage = 16 * 1032 * 2 + PK_WARPS * 4 * 8 * 16 * 4;
    assert_true(2 * 65536 + stage <= PK_SMEM && 3 * 65536 + stage > PK_SMEM);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pl[i].g, 4);
        assert_int_equal(pl[i].pre, i < 2 ? 65536 : 0);
        assert_int_equal(pl[i].a_at, 2 * 65536);
        assert_int_equal(pl[i].a_group, 0);
    }
    assert_int_equal(pl[1].pre_at, 65536);
}

/* ---- packing ------------------------------------------------------------------ */

static void test_packable(void **state) {
    (void)state;
    const uint64_t X = 1u << 24;
    lp_persist_phase ph[3];
    ph[0] = gemm(X, 0, X + 65536, 16, 256, 256, 0);
    ph[1] = gemm(X, 0, X + 131072, 16, 256, 256, 1); /* the same weight read the same way */
    ph[2] = elementwise(X + 131072, X + 196608, 16 * 256, 1);
    lp_persist_program p = program(ph, 3);
    assert_true(pk_packable(&p, 0, BLOCKS));
    assert_true(pk_packable(&p, 1, BLOCKS));
    assert_false(pk_packable(&p, 2, BLOCKS));
    ph[2].a = dense(4096, F16, 16, 256); /* an element-wise phase reads the weight's bytes */
    assert_false(pk_packable(&p, 0, BLOCKS));
    ph[2] = elementwise(X + 131072, X + 196608, 16 * 256, 1);
    ph[1].trans_w = 1; /* read another way */
    assert_false(pk_packable(&p, 0, BLOCKS));
    ph[1].trans_w = 0;
    ph[0].k = 48; /* not a multiple of 32 */
    assert_false(pk_packable(&p, 0, BLOCKS));
    ph[0].k = 256;
    ph[0].a.dtype = ph[0].b.dtype = F32;
    assert_false(pk_packable(&p, 0, BLOCKS));
    ph[0].a.dtype = ph[0].b.dtype = F16;
    with_ln(&ph[0], 1u << 20, (1u << 20) + 1024, 1e-5f);
    assert_true(pk_packable(&p, 0, BLOCKS));
    ph[0].scale.dtype = F32; /* the kernel stages the vectors as A's type */
    assert_false(pk_packable(&p, 0, BLOCKS));
    ph[0].scale.dtype = F16;
    ph[0].ln_bias.offset += 2; /* staged 16 bytes at a time */
    assert_false(pk_packable(&p, 0, BLOCKS));
    /* a library call reading the weight */
    lp_card_tensor in = {LP_CARD_MEMORY, 1024, 64, F16, 0, NULL, NULL};
    lp_card_node node = {.node = "lib", .op = "Conv", .n_inputs = 1, .inputs = &in};
    const lp_card_node *nodes[1] = {&node};
    ph[0].ln = 0;
    ph[2] = (lp_persist_phase){.kind = LP_PERSIST_NODE, .node = 0};
    p.nodes = nodes;
    p.n_nodes = 1;
    assert_false(pk_packable(&p, 0, BLOCKS));
    in.offset = 1u << 22;
    assert_true(pk_packable(&p, 0, BLOCKS));
}

/* ---- random programs ------------------------------------------------------------ */

static uint32_t rs = 777u;
static uint32_t rnd(uint32_t n) {
    rs = rs * 1103515245u + 12345u;
    return (rs >> 8) % n;
}

/* Every planned Gemm's prefetch slot, A, sums and vectors lie in the
 * shared memory without overlapping each other or another slot of the
 * interval; a Gemm's group is itself or an earlier Gemm of its interval
 * reading the same rows the same way; rotations add up the interval's
 * earlier units. */
static void test_random_programs(void **state) {
    (void)state;
    enum { N = 40 };
    const int64_t shapes[6][3] = {{16, 1024, 1024}, {16, 4096, 1024}, {16, 1024, 4096},
                                  {128, 768, 768}, {1, 2304, 768}, {64, 512, 2048}};
    for (int trial = 0; trial < 300; trial++) {
        lp_persist_phase ph[N];
        for (int i = 0; i < N; i++) {
            int kind = (int)rnd(10);
            if (kind < 6) {
                const int64_t *s = shapes[rnd(6)];
                uint64_t a = (uint64_t)(1 + rnd(3)) << 26;
                ph[i] = gemm(a, (uint64_t)i << 24, (8u << 26) + (uint64_t)i * (1u << 22), s[0], s[1], s[2],
                             rnd(3) == 0);
                if (rnd(2)) with_ln(&ph[i], 1u << 23, (1u << 23) + 16384, rnd(2) ? 1e-5f : 1e-6f);
            } else if (kind < 9) {
                ph[i] = elementwise(9u << 26, 10u << 26, 1024, (int)rnd(2));
            } else {
                ph[i] = (lp_persist_phase){.kind = LP_PERSIST_NODE};
            }
        }
        lp_persist_program p = program(ph, N);
        mark_packed(ph, N);
        pk_gemm pl[N];
        pk_plan_gemms(&p, ph, BLOCKS, pl);
        int h = -1, rot = 0;
        for (int i = 0; i < N; i++) {
            if (ph[i].kind == LP_PERSIST_NODE) {
                assert_int_equal(pl[i].head, 0);
                h = -1;
                continue;
            }
            if (pl[i].head || h < 0) {
                assert_int_equal(pl[i].head, 1);
                h = i;
                rot = 0;
            }
            assert_int_equal(pl[i].head, i == h);
            const pk_gemm *g = &pl[i];
            if (!g->mc) continue;
            assert_int_equal(g->rot, rot);
            rot += g->units;
            int64_t a_end = g->a_at + a_bytes(g, &ph[i]);
            assert_true(g->red_at >= a_end);
            assert_true(g->ln_at >= g->red_at + red_bytes(g));
            assert_true(g->ln_at + pk_ln_bytes(&ph[i]) <= PK_SMEM);
            for (int j = h; j <= i; j++) {
                if (!pl[j].mc) continue;
                assert_int_equal(pl[j].a_at, g->a_at); /* one staging place an interval */
                if (pl[j].pre) assert_true(pl[j].pre_at + pl[j].pre <= g->a_at);
                if (j < i && pl[j].pre && g->pre)
                    assert_true(pl[j].pre_at + pl[j].pre <= g->pre_at || g->pre_at + g->pre <= pl[j].pre_at);
            }
            if (g->a_group != i) {
                int q = g->a_group;
                assert_true(q >= h && q < i && pl[q].mc == g->mc && ph[i].m <= g->mc);
                assert_true(ph[q].a.offset == ph[i].a.offset && ph[q].k == ph[i].k && ph[q].m == ph[i].m);
                assert_true(ph[q].ln == ph[i].ln && (!ph[i].ln || ph[q].ln_eps == ph[i].ln_eps));
            }
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_shapes_fit),
        cmocka_unit_test(test_launches),
        cmocka_unit_test(test_intervals_and_groups),
        cmocka_unit_test(test_prefetch_budget),
        cmocka_unit_test(test_packable),
        cmocka_unit_test(test_random_programs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
