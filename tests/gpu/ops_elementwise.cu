/* ops_elementwise.cu - the element-wise family (gpu_elementwise.cu) checked
 * against the CPU reference: every op, the float and integer dtypes, each
 * broadcast path (equal shapes, scalar, row, strided) and multi-block sizes. */
#include <stdio.h>
#include <stdlib.h>

#include "op_check.h"

static const lp_dtype ew_floats[3] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16};

static const char *ew_dt(lp_dtype t) {
    const char *s = lp_dtype_name(t);
    return s ? s : "?";
}

/* A case's name; it lives until exit, as the harness keeps the pointer. */
static const char *ew_name(const char *fmt, const char *a, const char *b) {
    int len = snprintf(NULL, 0, fmt, a, b);
    char *s = len >= 0 ? (char *)malloc((size_t)len + 1) : NULL;
    if (!s) return "(name)";
    snprintf(s, (size_t)len + 1, fmt, a, b);
    return s;
}

static int ew_unary_f(int op, lp_dtype dt, int rank, const int64_t *dims, float lo, float hi,
                      const char *attr, float av) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    op_case k = op_case_make(ew_name("%s %s", lp_op_name(op), ew_dt(dt)), op, 17);
    op_case_input_f(&k, dt, rank, dims, op_rand_f(n, lo, hi));
    op_case_output(&k, dt, rank, dims);
    if (attr) op_case_attr_float(&k, attr, av);
    return op_check(&k);
}

static int ew_unary_cases(void) {
    int fails = 0;
    static const int ops[] = {LP_OP_Neg, LP_OP_Abs, LP_OP_Exp, LP_OP_Gelu, LP_OP_Erf,
                              LP_OP_Tanh, LP_OP_Sigmoid, LP_OP_Relu, LP_OP_Sin, LP_OP_Cos,
                              LP_OP_HardSigmoid, LP_OP_HardSwish, LP_OP_Floor, LP_OP_Ceil,
                              LP_OP_Sign, LP_OP_LeakyRelu, LP_OP_Softplus, LP_OP_Softsign};
    int64_t dims[2] = {3, 37};
    for (int d = 0; d < 3; d++) {
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            fails += ew_unary_f(ops[i], ew_floats[d], 2, dims, -4.0f, 4.0f, NULL, 0);
        /* positive domains */
        fails += ew_unary_f(LP_OP_Sqrt, ew_floats[d], 2, dims, 0.0f, 9.0f, NULL, 0);
        fails += ew_unary_f(LP_OP_Log, ew_floats[d], 2, dims, 0.01f, 9.0f, NULL, 0);
        fails += ew_unary_f(LP_OP_Reciprocal, ew_floats[d], 2, dims, 0.5f, 9.0f, NULL, 0);
    }
    /* attributes */
    fails += ew_unary_f(LP_OP_LeakyRelu, LP_DT_FLOAT, 2, dims, -4, 4, "alpha", 0.3f);
    fails += ew_unary_f(LP_OP_HardSigmoid, LP_DT_FLOAT, 2, dims, -4, 4, "alpha", 0.5f);
    fails += ew_unary_f(LP_OP_Softplus, LP_DT_FLOAT, 2, dims, -30, 30, NULL, 0);
    {
        op_case k = op_case_make("Gelu tanh fp32", LP_OP_Gelu, 20);
        op_case_input_f(&k, LP_DT_FLOAT, 2, dims, op_rand_f(111, -5, 5));
        op_case_output(&k, LP_DT_FLOAT, 2, dims);
        op_case_attr_string(&k, "approximate", "tanh");
        fails += op_check(&k);
    }
    {
        op_case k = op_case_make("Gelu none bf16", LP_OP_Gelu, 20);
        op_case_input_f(&k, LP_DT_BFLOAT16, 2, dims, op_rand_f(111, -5, 5));
        op_case_output(&k, LP_DT_BFLOAT16, 2, dims);
        op_case_attr_string(&k, "approximate", "none");
        fails += op_check(&k);
    }
    /* large, not a multiple of the vector width or block: grid-stride loops */
    int64_t big[2] = {1001, 1037};
    fails += ew_unary_f(LP_OP_Gelu, LP_DT_FLOAT16, 2, big, -6, 6, NULL, 0);
    fails += ew_unary_f(LP_OP_Sigmoid, LP_DT_FLOAT, 2, big, -30, 30, NULL, 0);
    /* integer and bool inputs */
    static const int iops[] = {LP_OP_Neg, LP_OP_Abs, LP_OP_Sign, LP_OP_Relu, LP_OP_Floor};
    static const lp_dtype idts[] = {LP_DT_INT64, LP_DT_INT32, LP_DT_INT8};
    int64_t n = 3 * 37;
    for (size_t d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof iops / sizeof iops[0]; i++) {
            op_case k = op_case_make(ew_name("%s %s", lp_op_name(iops[i]), ew_dt(idts[d])), iops[i], 17);
            op_case_input_i(&k, idts[d], 2, dims, op_rand_i(n, -100, 100), false);
            op_case_output(&k, idts[d], 2, dims);
            fails += op_check(&k);
        }
    {
        op_case k = op_case_make("Not bool", LP_OP_Not, 17);
        op_case_input_i(&k, LP_DT_BOOL, 2, dims, op_rand_i(n, 0, 2), false);
        op_case_output(&k, LP_DT_BOOL, 2, dims);
        fails += op_check(&k);
    }
    return fails;
}

/* A binary op on generated inputs of shapes da / db broadcast to dy. */
static int ew_bin(const char *name, int op, lp_dtype ta, int ra, const int64_t *da, lp_dtype tb,
                  int rb, const int64_t *db, lp_dtype ty, int ry, const int64_t *dy, float lo,
                  float hi) {
    int64_t na = 1, nb = 1;
    for (int i = 0; i < ra; i++) na *= da[i];
    for (int i = 0; i < rb; i++) nb *= db[i];
    op_case k = op_case_make(name, op, 17);
    bool fa = ta == LP_DT_FLOAT || ta == LP_DT_FLOAT16 || ta == LP_DT_BFLOAT16 || ta == LP_DT_DOUBLE;
    bool fb = tb == LP_DT_FLOAT || tb == LP_DT_FLOAT16 || tb == LP_DT_BFLOAT16 || tb == LP_DT_DOUBLE;
    if (fa) op_case_input_f(&k, ta, ra, da, op_rand_f(na, lo, hi));
    else op_case_input_i(&k, ta, ra, da, op_rand_i(na, (int64_t)lo, (int64_t)hi), false);
    if (fb) op_case_input_f(&k, tb, rb, db, op_rand_f(nb, lo, hi));
    else op_case_input_i(&k, tb, rb, db, op_rand_i(nb, (int64_t)lo, (int64_t)hi), false);
    op_case_output(&k, ty, ry, dy);
    return op_check(&k);
}

static int ew_binary_cases(void) {
    int fails = 0;
    static const int arith[] = {LP_OP_Add, LP_OP_Sub, LP_OP_Mul, LP_OP_Div};
    static const int cmps[] = {LP_OP_Equal, LP_OP_Less, LP_OP_LessOrEqual, LP_OP_Greater,
                               LP_OP_GreaterOrEqual};
    int64_t mn[2] = {7, 130}, row[1] = {130}, col[2] = {7, 1}, one[1] = {1};
    int64_t a3[3] = {5, 1, 33}, b3[3] = {1, 6, 33}, y3[3] = {5, 6, 33};
    for (int d = 0; d < 3; d++) {
        lp_dtype t = ew_floats[d];
        const char *dn = ew_dt(t);
        for (int i = 0; i < 4; i++) {
            const char *on = lp_op_name(arith[i]);
            fails += ew_bin(ew_name("%s %s same", on, dn), arith[i], t, 2, mn, t, 2, mn, t, 2, mn, 0.5f, 4);
            fails += ew_bin(ew_name("%s %s row", on, dn), arith[i], t, 2, mn, t, 1, row, t, 2, mn, 0.5f, 4);
            fails += ew_bin(ew_name("%s %s row first", on, dn), arith[i], t, 1, row, t, 2, mn, t, 2, mn, 0.5f, 4);
            fails += ew_bin(ew_name("%s %s scalar", on, dn), arith[i], t, 2, mn, t, 0, one, t, 2, mn, 0.5f, 4);
            fails += ew_bin(ew_name("%s %s scalar first", on, dn), arith[i], t, 1, one, t, 2, mn, t, 2, mn, 0.5f, 4);
            fails += ew_bin(ew_name("%s %s column", on, dn), arith[i], t, 2, mn, t, 2, col, t, 2, mn, 0.5f, 4);
            fails += ew_bin(ew_name("%s %s outer", on, dn), arith[i], t, 3, a3, t, 3, b3, t, 3, y3, 0.5f, 4);
        }
        for (int i = 0; i < 5; i++)
            fails += ew_bin(ew_name("%s %s", lp_op_name(cmps[i]), dn), cmps[i], t, 2, mn, t, 1, row,
                            LP_DT_BOOL, 2, mn, -2, 2);
        fails += ew_bin(ew_name("Pow %s %s", dn, "fp32 scalar"), LP_OP_Pow, t, 2, mn, LP_DT_FLOAT, 0, one,
                        t, 2, mn, 0.5f, 3);
        fails += ew_bin(ew_name("Pow %s %s", dn, "same"), LP_OP_Pow, t, 2, mn, t, 2, mn, t, 2, mn, 0.5f, 3);
    }
    /* integers: exact arithmetic, Div truncating toward zero */
    static const lp_dtype idts[] = {LP_DT_INT64, LP_DT_INT32};
    for (int d = 0; d < 2; d++) {
        const char *dn = ew_dt(idts[d]);
        for (int i = 0; i < 3; i++)
            fails += ew_bin(ew_name("%s %s", lp_op_name(arith[i]), dn), arith[i], idts[d], 2, mn,
                            idts[d], 1, row, idts[d], 2, mn, -1000, 1000);
        for (int i = 0; i < 5; i++)
            fails += ew_bin(ew_name("%s %s", lp_op_name(cmps[i]), dn), cmps[i], idts[d], 2, mn,
                            idts[d], 2, col, LP_DT_BOOL, 2, mn, -3, 3);
        fails += ew_bin(ew_name("Pow %s %s", dn, "int"), LP_OP_Pow, idts[d], 2, mn, idts[d], 2, mn,
                        idts[d], 2, mn, -4, 5);
        fails += ew_bin(ew_name("Pow %s %s", dn, "fp32"), LP_OP_Pow, idts[d], 2, mn, LP_DT_FLOAT, 0, one,
                        idts[d], 2, mn, 1, 4);
    }
    {
        /* truncating division with every sign combination */
        static const int64_t p[8] = {7, -7, 7, -7, 9, -9, 1, 0};
        static const int64_t q[8] = {2, 2, -2, -2, 4, 4, -3, 5};
        int64_t d8[1] = {8};
        op_case k = op_case_make("Div int64 signs", LP_OP_Div, 17);
        op_case_input_i(&k, LP_DT_INT64, 1, d8, p, false);
        op_case_input_i(&k, LP_DT_INT64, 1, d8, q, false);
        op_case_output(&k, LP_DT_INT64, 1, d8);
        fails += op_check(&k);
        op_case k32 = op_case_make("Div int32 signs", LP_OP_Div, 17);
        op_case_input_i(&k32, LP_DT_INT32, 1, d8, p, false);
        op_case_input_i(&k32, LP_DT_INT32, 1, d8, q, false);
        op_case_output(&k32, LP_DT_INT32, 1, d8);
        fails += op_check(&k32);
    }
    static const int logic[] = {LP_OP_And, LP_OP_Or, LP_OP_Xor};
    for (int i = 0; i < 3; i++)
        fails += ew_bin(ew_name("%s %s", lp_op_name(logic[i]), "bool"), logic[i], LP_DT_BOOL, 2, mn,
                        LP_DT_BOOL, 1, row, LP_DT_BOOL, 2, mn, 0, 2);
    /* large: bias over rows of 4096+, and a strided broadcast */
    int64_t big[2] = {61, 4099}, brow[1] = {4099}, bcol[2] = {61, 1};
    fails += ew_bin("Add fp16 bias large", LP_OP_Add, LP_DT_FLOAT16, 2, big, LP_DT_FLOAT16, 1, brow,
                    LP_DT_FLOAT16, 2, big, -2, 2);
    fails += ew_bin("Mul fp32 same large", LP_OP_Mul, LP_DT_FLOAT, 2, big, LP_DT_FLOAT, 2, big,
                    LP_DT_FLOAT, 2, big, -2, 2);
    fails += ew_bin("Sub bf16 column large", LP_OP_Sub, LP_DT_BFLOAT16, 2, big, LP_DT_BFLOAT16, 2, bcol,
                    LP_DT_BFLOAT16, 2, big, -2, 2);
    int64_t ba[4] = {3, 1, 50, 700}, bb[4] = {1, 5, 1, 700}, by[4] = {3, 5, 50, 700};
    fails += ew_bin("Add fp32 strided large", LP_OP_Add, LP_DT_FLOAT, 4, ba, LP_DT_FLOAT, 4, bb,
                    LP_DT_FLOAT, 4, by, -2, 2);
    return fails;
}

static int ew_variadic_cases(void) {
    int fails = 0;
    static const int ops[] = {LP_OP_Max, LP_OP_Min, LP_OP_Sum, LP_OP_Mean};
    int64_t shapes[5][2] = {{9, 131}, {131, 0}, {9, 1}, {1, 131}, {9, 131}};
    int ranks[5] = {2, 1, 2, 2, 2};
    static const lp_dtype dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16, LP_DT_INT64, LP_DT_INT32};
    for (int o = 0; o < 4; o++)
        for (int d = 0; d < 5; d++)
            for (int n_in = 1; n_in <= 5; n_in += 1) {
                char tag[16];
                snprintf(tag, sizeof tag, "%d inputs", n_in);
                op_case k = op_case_make(ew_name("%s %s", lp_op_name(ops[o]), ew_name("%s %s", ew_dt(dts[d]), tag)),
                                         ops[o], 13);
                for (int i = 0; i < n_in; i++) {
                    int64_t n = 1;
                    for (int r = 0; r < ranks[i]; r++) n *= shapes[i][r];
                    if (dts[d] == LP_DT_INT64 || dts[d] == LP_DT_INT32)
                        op_case_input_i(&k, dts[d], ranks[i], shapes[i], op_rand_i(n, -50, 50), false);
                    else op_case_input_f(&k, dts[d], ranks[i], shapes[i], op_rand_f(n, -3, 3));
                }
                op_case_output(&k, dts[d], 2, shapes[0]);
                fails += op_check(&k);
            }
    {
        int64_t big[2] = {300, 1001};
        op_case k = op_case_make("Sum fp16 3 inputs large", LP_OP_Sum, 13);
        for (int i = 0; i < 3; i++) op_case_input_f(&k, LP_DT_FLOAT16, 2, big, op_rand_f(300 * 1001, -2, 2));
        op_case_output(&k, LP_DT_FLOAT16, 2, big);
        fails += op_check(&k);
    }
    return fails;
}

static int ew_where_cases(void) {
    int fails = 0;
    static const lp_dtype dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16, LP_DT_INT64, LP_DT_INT32, LP_DT_BOOL};
    int64_t yd[3] = {4, 5, 67}, cd[2] = {5, 67}, xd[3] = {4, 1, 67}, sd[1] = {1};
    for (int d = 0; d < 6; d++) {
        bool fl = d < 3;
        for (int v = 0; v < 3; v++) {
            /* v 0: all full; 1: row condition, scalar Y; 2: strided X */
            const int64_t *dx = v == 2 ? xd : yd, *dy = v == 1 ? sd : yd, *dc = v == 0 ? yd : cd;
            int rx = 3, ry = v == 1 ? 0 : 3, rc = v == 0 ? 3 : 2;
            int64_t nx = v == 2 ? 4 * 67 : 4 * 5 * 67, ny = v == 1 ? 1 : 4 * 5 * 67, nc = v == 0 ? 4 * 5 * 67 : 5 * 67;
            char tag[16];
            snprintf(tag, sizeof tag, "variant %d", v);
            op_case k = op_case_make(ew_name("Where %s %s", ew_dt(dts[d]), tag), LP_OP_Where, 16);
            op_case_input_i(&k, LP_DT_BOOL, rc, dc, op_rand_i(nc, 0, 2), false);
            if (fl) {
                op_case_input_f(&k, dts[d], rx, dx, op_rand_f(nx, -3, 3));
                op_case_input_f(&k, dts[d], ry, dy, op_rand_f(ny, -3, 3));
            } else {
                op_case_input_i(&k, dts[d], rx, dx, op_rand_i(nx, -9, 9), false);
                op_case_input_i(&k, dts[d], ry, dy, op_rand_i(ny, -9, 9), false);
            }
            op_case_output(&k, dts[d], 3, yd);
            fails += op_check(&k);
        }
    }
    {
        int64_t big[2] = {257, 1031};
        op_case k = op_case_make("Where fp32 large", LP_OP_Where, 16);
        op_case_input_i(&k, LP_DT_BOOL, 2, big, op_rand_i(257 * 1031, 0, 2), false);
        op_case_input_f(&k, LP_DT_FLOAT, 2, big, op_rand_f(257 * 1031, -3, 3));
        op_case_input_f(&k, LP_DT_FLOAT, 0, big, op_rand_f(1, -3, 3));
        op_case_output(&k, LP_DT_FLOAT, 2, big);
        fails += op_check(&k);
    }
    return fails;
}

static int ew_clip_cases(void) {
    int fails = 0;
    int64_t d[2] = {13, 77}, n = 13 * 77;
    static const float lo[1] = {-0.5f}, hi[1] = {1.25f};
    static const int64_t ilo[1] = {-20}, ihi[1] = {35};
    for (int t = 0; t < 3; t++) {
        for (int v = 0; v < 4; v++) {
            /* v 0: min and max; 1: min only; 2: max only (min omitted); 3: neither */
            char tag[16];
            snprintf(tag, sizeof tag, "inputs %d", v);
            op_case k = op_case_make(ew_name("Clip %s %s", ew_dt(ew_floats[t]), tag), LP_OP_Clip, 13);
            op_case_input_f(&k, ew_floats[t], 2, d, op_rand_f(n, -3, 3));
            if (v == 0 || v == 1) op_case_input_f(&k, ew_floats[t], 0, d, lo);
            else if (v == 2) op_case_input_none(&k);
            if (v == 0 || v == 2) op_case_input_f(&k, ew_floats[t], 0, d, hi);
            op_case_output(&k, ew_floats[t], 2, d);
            fails += op_check(&k);
        }
        op_case k = op_case_make(ew_name("Clip %s %s", ew_dt(ew_floats[t]), "opset 6 attributes"), LP_OP_Clip, 6);
        op_case_input_f(&k, ew_floats[t], 2, d, op_rand_f(n, -3, 3));
        op_case_output(&k, ew_floats[t], 2, d);
        op_case_attr_float(&k, "min", -1.0f);
        op_case_attr_float(&k, "max", 0.75f);
        fails += op_check(&k);
    }
    static const lp_dtype idts[] = {LP_DT_INT64, LP_DT_INT32};
    for (int t = 0; t < 2; t++) {
        op_case k = op_case_make(ew_name("Clip %s %s", ew_dt(idts[t]), "min max"), LP_OP_Clip, 13);
        op_case_input_i(&k, idts[t], 2, d, op_rand_i(n, -100, 100), false);
        op_case_input_i(&k, idts[t], 0, d, ilo, true);
        op_case_input_i(&k, idts[t], 0, d, ihi, false);
        op_case_output(&k, idts[t], 2, d);
        fails += op_check(&k);
    }
    {
        int64_t big[1] = {200003};
        op_case k = op_case_make("Clip fp32 large", LP_OP_Clip, 13);
        op_case_input_f(&k, LP_DT_FLOAT, 1, big, op_rand_f(200003, -3, 3));
        op_case_input_f(&k, LP_DT_FLOAT, 0, big, lo);
        op_case_input_f(&k, LP_DT_FLOAT, 0, big, hi);
        op_case_output(&k, LP_DT_FLOAT, 1, big);
        fails += op_check(&k);
    }
    return fails;
}

static bool ew_is_float_dt(lp_dtype t) {
    return t == LP_DT_FLOAT || t == LP_DT_FLOAT16 || t == LP_DT_BFLOAT16 || t == LP_DT_DOUBLE;
}

static int ew_cast_cases(void) {
    int fails = 0;
    static const lp_dtype dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16, LP_DT_DOUBLE,
                                   LP_DT_INT64, LP_DT_INT32, LP_DT_INT8, LP_DT_UINT8, LP_DT_BOOL};
    const int nd = (int)(sizeof dts / sizeof dts[0]);
    int64_t d[2] = {3, 41}, n = 3 * 41;
    for (int a = 0; a < nd; a++)
        for (int b = 0; b < nd; b++) {
            op_case k = op_case_make(ew_name("Cast %s to %s", ew_dt(dts[a]), ew_dt(dts[b])), LP_OP_Cast, 19);
            if (ew_is_float_dt(dts[a]))
                op_case_input_f(&k, dts[a], 2, d, op_rand_f(n, -120.0f, 120.0f));
            else if (dts[a] == LP_DT_BOOL)
                op_case_input_i(&k, dts[a], 2, d, op_rand_i(n, 0, 2), false);
            else
                op_case_input_i(&k, dts[a], 2, d, op_rand_i(n, dts[a] == LP_DT_UINT8 ? 0 : -120, 120), false);
            op_case_output(&k, dts[b], 2, d);
            op_case_attr_int(&k, "to", dts[b]);
            fails += op_check(&k);
        }
    {
        /* rounding to nearest even at fp16's and bf16's last bit, subnormals */
        static const float v[8] = {1.00048828125f, 1.00146484375f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256,
                                   3.0e-7f, 6.0e-8f, 70000.0f, -0.0f};
        int64_t d8[1] = {8};
        op_case k = op_case_make("Cast fp32 to fp16 ties", LP_OP_Cast, 19);
        op_case_input_f(&k, LP_DT_FLOAT, 1, d8, v);
        op_case_output(&k, LP_DT_FLOAT16, 1, d8);
        op_case_attr_int(&k, "to", LP_DT_FLOAT16);
        k.tol = 1e-7;
        fails += op_check(&k);
        op_case kb = op_case_make("Cast fp32 to bf16 ties", LP_OP_Cast, 19);
        op_case_input_f(&kb, LP_DT_FLOAT, 1, d8, v);
        op_case_output(&kb, LP_DT_BFLOAT16, 1, d8);
        op_case_attr_int(&kb, "to", LP_DT_BFLOAT16);
        kb.tol = 1e-7;
        fails += op_check(&kb);
    }
    {
        int64_t big[1] = {300007};
        op_case k = op_case_make("Cast fp32 to bf16 large", LP_OP_Cast, 19);
        op_case_input_f(&k, LP_DT_FLOAT, 1, big, op_rand_f(300007, -5, 5));
        op_case_output(&k, LP_DT_BFLOAT16, 1, big);
        op_case_attr_int(&k, "to", LP_DT_BFLOAT16);
        fails += op_check(&k);
    }
    return fails;
}

int ops_elementwise_cases(void) {
    int fails = 0;
    fails += ew_unary_cases();
    fails += ew_binary_cases();
    fails += ew_variadic_cases();
    fails += ew_where_cases();
    fails += ew_clip_cases();
    fails += ew_cast_cases();
    return fails;
}
