/* ops_nn.cu - the nn family (gpu_nn.cu) checked against the reference:
 * LayerNormalization, Softmax / LogSoftmax, the reductions, the pools,
 * the global pools and BatchNormalization. Sizes are chosen off the
 * kernels' block sizes, and each op has a case large enough for the
 * grid-stride and block-per-row paths. */
#include <initializer_list>

#include "op_check.h"

namespace {

const lp_dtype FLOATS[3] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16};

struct Dims {
    int rank;
    int64_t d[8];
    Dims() : rank(0) {}
    Dims(std::initializer_list<int64_t> l) : rank(0) {
        for (int64_t v : l) d[rank++] = v;
    }
    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < rank; i++) n *= d[i];
        return n;
    }
};

/* A random float input in [lo, hi). */
void in_rand(op_case *k, lp_dtype dt, const Dims &s, float lo = -2.f, float hi = 2.f) {
    op_case_input_f(k, dt, s.rank, s.d, op_rand_f(s.numel(), lo, hi));
}
void in_rand_i(op_case *k, lp_dtype dt, const Dims &s, int64_t lo, int64_t hi) {
    op_case_input_i(k, dt, s.rank, s.d, op_rand_i(s.numel(), lo, hi), false);
}
void out(op_case *k, lp_dtype dt, const Dims &s) { op_case_output(k, dt, s.rank, s.d); }
void ints(op_case *k, const char *name, std::initializer_list<int64_t> l) {
    int64_t v[8];
    int n = 0;
    for (int64_t x : l) v[n++] = x;
    op_case_attr_ints(k, name, n, v);
}

/* ---- LayerNormalization ---- */

int layernorm(const char *name, lp_dtype dt, const Dims &x, int64_t axis, const Dims &scale,
              const Dims *bias, bool stats, float eps = 0.f) {
    op_case k = op_case_make(name, LP_OP_LayerNormalization, 17);
    in_rand(&k, dt, x, -3.f, 5.f);
    in_rand(&k, dt, scale, 0.5f, 1.5f);
    if (bias) in_rand(&k, dt, *bias);
    out(&k, dt, x);
    if (stats) {
        int ax = (int)(axis < 0 ? axis + x.rank : axis);
        Dims st = x;
        for (int d = ax; d < x.rank; d++) st.d[d] = 1;
        out(&k, LP_DT_FLOAT, st);
        out(&k, LP_DT_FLOAT, st);
    }
    op_case_attr_int(&k, "axis", axis);
    if (eps > 0.f) op_case_attr_float(&k, "epsilon", eps);
    return op_check(&k);
}

int layernorm_cases(void) {
    int f = 0;
    const char *names[3] = {"layernorm fp32 [4,7,33] axis -1", "layernorm fp16 [4,7,33] axis -1",
                            "layernorm bf16 [4,7,33] axis -1"};
    Dims b33 = {33};
    for (int i = 0; i < 3; i++) f += layernorm(names[i], FLOATS[i], {4, 7, 33}, -1, {33}, &b33, true);
    /* Scale over the last normalised dim only, then a general broadcast */
    Dims b1 = {1};
    f += layernorm("layernorm fp32 axis 1, scale [33]", LP_DT_FLOAT, {4, 7, 33}, 1, {33}, &b1, true);
    Dims b71 = {7, 1};
    f += layernorm("layernorm fp16 axis 1, scale [7,1] bias [7,1]", LP_DT_FLOAT16, {3, 7, 9}, 1, {7, 1},
                   &b71, false);
    f += layernorm("layernorm fp32 no bias, eps 1e-3", LP_DT_FLOAT, {5, 3, 70}, -2, {3, 70}, NULL, true,
                   1e-3f);
    f += layernorm("layernorm fp32 row 1 element", LP_DT_FLOAT, {10, 1}, -1, {1}, NULL, true);
    /* warp rows of every register width, block rows, long rows, many rows */
    f += layernorm("layernorm fp32 rows 1000", LP_DT_FLOAT, {37, 1000}, -1, {1000}, NULL, false);
    Dims b4096 = {4096};
    f += layernorm("layernorm bf16 rows 4096", LP_DT_BFLOAT16, {65, 4096}, -1, {4096}, &b4096, true);
    f += layernorm("layernorm fp32 rows 1500", LP_DT_FLOAT, {9, 1500}, -1, {1500}, NULL, true);
    f += layernorm("layernorm fp32 rows 20001", LP_DT_FLOAT, {6, 20001}, -1, {20001}, NULL, true);
    Dims b200 = {200};
    f += layernorm("layernorm fp16 [3000, 200]", LP_DT_FLOAT16, {3000, 200}, -1, {200}, &b200, false);
    return f;
}

/* ---- Softmax / LogSoftmax ---- */

int softmax(const char *name, int op, int64_t opset, lp_dtype dt, const Dims &x, bool has_axis,
            int64_t axis) {
    op_case k = op_case_make(name, op, opset);
    in_rand(&k, dt, x, -6.f, 6.f);
    out(&k, dt, x);
    if (has_axis) op_case_attr_int(&k, "axis", axis);
    return op_check(&k);
}

int softmax_cases(void) {
    int f = 0;
    const char *sm[3] = {"softmax fp32 [6,5,77]", "softmax fp16 [6,5,77]", "softmax bf16 [6,5,77]"};
    const char *lsm[3] = {"logsoftmax fp32 [6,5,77]", "logsoftmax fp16 [6,5,77]",
                          "logsoftmax bf16 [6,5,77]"};
    for (int i = 0; i < 3; i++) {
        f += softmax(sm[i], LP_OP_Softmax, 13, FLOATS[i], {6, 5, 77}, false, 0);
        f += softmax(lsm[i], LP_OP_LogSoftmax, 13, FLOATS[i], {6, 5, 77}, false, 0);
    }
    /* a non-last axis: the strided path */
    f += softmax("softmax fp32 axis 1 of [3,50,17]", LP_OP_Softmax, 13, LP_DT_FLOAT, {3, 50, 17}, true, 1);
    f += softmax("logsoftmax fp16 axis -3 of [4,9,5,3]", LP_OP_LogSoftmax, 13, LP_DT_FLOAT16, {4, 9, 5, 3},
                 true, -3);
    f += softmax("softmax fp32 axis 0 of [300, 400]", LP_OP_Softmax, 13, LP_DT_FLOAT, {300, 400}, true, 0);
    /* opset < 13: flattened to 2-D at axis (default 1) */
    f += softmax("softmax opset 11 default axis [4,5,6]", LP_OP_Softmax, 11, LP_DT_FLOAT, {4, 5, 6}, false, 0);
    f += softmax("logsoftmax opset 11 axis 2 [2,3,4,5]", LP_OP_LogSoftmax, 11, LP_DT_FLOAT, {2, 3, 4, 5},
                 true, 2);
    f += softmax("softmax opset 11 axis 0 [3,20,30]", LP_OP_Softmax, 11, LP_DT_FLOAT16, {3, 20, 30}, true, 0);
    /* row lengths around the warp / block switch and long rows */
    f += softmax("softmax fp32 rows 1", LP_OP_Softmax, 13, LP_DT_FLOAT, {33, 1}, false, 0);
    f += softmax("softmax fp32 rows 1024", LP_OP_Softmax, 13, LP_DT_FLOAT, {19, 1024}, false, 0);
    f += softmax("softmax fp32 rows 1025", LP_OP_Softmax, 13, LP_DT_FLOAT, {19, 1025}, false, 0);
    f += softmax("softmax bf16 rows 4096", LP_OP_Softmax, 13, LP_DT_BFLOAT16, {40, 4096}, false, 0);
    f += softmax("logsoftmax fp32 rows 12000", LP_OP_LogSoftmax, 13, LP_DT_FLOAT, {7, 12000}, false, 0);
    f += softmax("softmax fp16 [2048, 129]", LP_OP_Softmax, 13, LP_DT_FLOAT16, {2048, 129}, false, 0);
    return f;
}

/* ---- reductions ---- */

enum { KEEP = 1, NOOP = 2, AXES_INPUT = 4 };

/* Axes given as the attribute, or (AXES_INPUT) as a literal input. */
int reduce(const char *name, int op, lp_dtype dt, const Dims &x, std::initializer_list<int64_t> axes,
           int flags, const Dims &y, bool int_vals = false) {
    int64_t opset = (flags & AXES_INPUT) ? (op == LP_OP_ReduceSum ? 13 : 18) : 11;
    op_case k = op_case_make(name, op, opset);
    if (int_vals) in_rand_i(&k, dt, x, -5, 6);
    else if (op == LP_OP_ReduceProd) in_rand(&k, dt, x, 0.8f, 1.25f);
    else in_rand(&k, dt, x);
    int64_t av[8];
    int na = 0;
    for (int64_t a : axes) av[na++] = a;
    if (flags & AXES_INPUT) {
        int64_t ad[1] = {na};
        op_case_input_i(&k, LP_DT_INT64, 1, ad, av, true);
    } else if (na) {
        op_case_attr_ints(&k, "axes", na, av);
    }
    op_case_attr_int(&k, "keepdims", (flags & KEEP) ? 1 : 0);
    if (flags & NOOP) op_case_attr_int(&k, "noop_with_empty_axes", 1);
    out(&k, dt, y);
    return op_check(&k);
}

int reduce_cases(void) {
    int f = 0;
    const int ops[6] = {LP_OP_ReduceMean, LP_OP_ReduceSum, LP_OP_ReduceMax, LP_OP_ReduceMin,
                        LP_OP_ReduceProd, LP_OP_ReduceSumSquare};
    const char *last[6] = {"reducemean fp32 last", "reducesum fp32 last", "reducemax fp32 last",
                           "reducemin fp32 last", "reduceprod fp32 last", "reducesumsquare fp32 last"};
    const char *mid[6] = {"reducemean fp16 middle", "reducesum fp16 middle", "reducemax fp16 middle",
                          "reducemin fp16 middle", "reduceprod fp16 middle", "reducesumsquare fp16 middle"};
    const char *gen[6] = {"reducemean bf16 axes 0,2", "reducesum bf16 axes 0,2", "reducemax bf16 axes 0,2",
                          "reducemin bf16 axes 0,2", "reduceprod bf16 axes 0,2",
                          "reducesumsquare bf16 axes 0,2"};
    const char *in[6] = {"reducemean int64 input axes", "reducesum int64 input axes",
                         "reducemax int64 input axes", "reducemin int64 input axes",
                         "reduceprod int64 input axes", "reducesumsquare int64 input axes"};
    for (int i = 0; i < 6; i++) {
        f += reduce(last[i], ops[i], LP_DT_FLOAT, {5, 6, 37}, {-1}, KEEP, {5, 6, 1});
        f += reduce(mid[i], ops[i], LP_DT_FLOAT16, {5, 6, 37}, {1}, 0, {5, 37});
        f += reduce(gen[i], ops[i], LP_DT_BFLOAT16, {5, 6, 7, 3}, {0, 2}, KEEP, {1, 6, 1, 3});
        f += reduce(in[i], ops[i], LP_DT_INT64, {4, 3, 5}, {2, 0}, AXES_INPUT, {3}, true);
    }
    f += reduce("reducemax int32 last 2 dims", LP_OP_ReduceMax, LP_DT_INT32, {7, 3, 11}, {1, 2}, KEEP,
                {7, 1, 1}, true);
    f += reduce("reducesum int32 middle", LP_OP_ReduceSum, LP_DT_INT32, {7, 3, 11}, {1}, 0, {7, 11}, true);
    f += reduce("reducemean fp32 all (no axes)", LP_OP_ReduceMean, LP_DT_FLOAT, {9, 13}, {}, 0, {});
    f += reduce("reducesum fp32 all keepdims", LP_OP_ReduceSum, LP_DT_FLOAT, {9, 13}, {}, KEEP, {1, 1});
    f += reduce("reducesumsquare fp32 noop empty axes", LP_OP_ReduceSumSquare, LP_DT_FLOAT, {4, 5}, {},
                NOOP | AXES_INPUT, {4, 5});
    f += reduce("reducemax fp32 axis of size 1", LP_OP_ReduceMax, LP_DT_FLOAT, {4, 1, 5}, {1}, 0, {4, 5});
    f += reduce("reducemin fp32 axes 1,3 of 5-D", LP_OP_ReduceMin, LP_DT_FLOAT, {2, 3, 4, 5, 6}, {1, 3},
                AXES_INPUT, {2, 4, 6});
    /* long rows (block per row), many short rows, a tall column */
    f += reduce("reducesum fp32 [300, 4097] last", LP_OP_ReduceSum, LP_DT_FLOAT, {300, 4097}, {1}, 0, {300});
    f += reduce("reducemean fp16 [100000, 3] last", LP_OP_ReduceMean, LP_DT_FLOAT16, {100000, 3}, {-1}, 0,
                {100000});
    f += reduce("reducemax fp32 [64, 2000, 3] middle", LP_OP_ReduceMax, LP_DT_FLOAT, {64, 2000, 3}, {1}, KEEP,
                {64, 1, 3});
    f += reduce("reducesum fp32 [250000] all", LP_OP_ReduceSum, LP_DT_FLOAT, {250000}, {0}, 0, {});
    f += reduce("reducemean fp32 [40, 50, 60] axes 0,2", LP_OP_ReduceMean, LP_DT_FLOAT, {40, 50, 60}, {0, 2},
                0, {50});
    return f;
}

/* ---- pools ---- */

int pool_cases(void) {
    int f = 0;
    for (int i = 0; i < 3; i++) {
        const char *mx[3] = {"maxpool fp32 2-D 3x3 s2 p1", "maxpool fp16 2-D 3x3 s2 p1",
                             "maxpool bf16 2-D 3x3 s2 p1"};
        op_case k = op_case_make(mx[i], LP_OP_MaxPool, 12);
        in_rand(&k, FLOATS[i], {2, 3, 11, 13});
        out(&k, FLOATS[i], {2, 3, 6, 7});
        ints(&k, "kernel_shape", {3, 3});
        ints(&k, "strides", {2, 2});
        ints(&k, "pads", {1, 1, 1, 1});
        f += op_check(&k);
    }
    for (int i = 0; i < 3; i++) {
        const char *av[3] = {"averagepool fp32 2-D 3x2 pads", "averagepool fp16 2-D 3x2 pads",
                             "averagepool bf16 2-D 3x2 pads"};
        op_case k = op_case_make(av[i], LP_OP_AveragePool, 19);
        in_rand(&k, FLOATS[i], {2, 3, 10, 9});
        out(&k, FLOATS[i], {2, 3, 10, 5});
        ints(&k, "kernel_shape", {3, 2});
        ints(&k, "strides", {1, 2});
        ints(&k, "pads", {1, 0, 1, 1});
        f += op_check(&k);
    }
    {   /* Indices, row-major and column-major */
        for (int order = 0; order < 2; order++) {
            op_case k = op_case_make(order ? "maxpool indices storage_order 1" : "maxpool indices",
                                     LP_OP_MaxPool, 12);
            in_rand(&k, LP_DT_FLOAT, {2, 2, 7, 9});
            out(&k, LP_DT_FLOAT, {2, 2, 3, 4});
            out(&k, LP_DT_INT64, {2, 2, 3, 4});
            ints(&k, "kernel_shape", {2, 3});
            ints(&k, "strides", {2, 2});
            op_case_attr_int(&k, "storage_order", order);
            f += op_check(&k);
        }
    }
    {   /* count_include_pad: pads count, the ceil_mode overhang does not */
        op_case k = op_case_make("averagepool count_include_pad ceil_mode", LP_OP_AveragePool, 19);
        in_rand(&k, LP_DT_FLOAT, {1, 2, 9, 9});
        out(&k, LP_DT_FLOAT, {1, 2, 5, 5}); /* ceil((9 + 1 - 3) / 2) + 1 */
        ints(&k, "kernel_shape", {3, 3});
        ints(&k, "strides", {2, 2});
        ints(&k, "pads", {1, 1, 0, 0});
        op_case_attr_int(&k, "count_include_pad", 1);
        op_case_attr_int(&k, "ceil_mode", 1);
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("maxpool ceil_mode dilation 2", LP_OP_MaxPool, 12);
        in_rand(&k, LP_DT_FLOAT, {1, 3, 10, 10});
        out(&k, LP_DT_FLOAT, {1, 3, 4, 4}); /* span 5: ceil((10 - 5) / 2) + 1 */
        ints(&k, "kernel_shape", {3, 3});
        ints(&k, "strides", {2, 2});
        ints(&k, "dilations", {2, 2});
        op_case_attr_int(&k, "ceil_mode", 1);
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("maxpool SAME_UPPER 1-D", LP_OP_MaxPool, 12);
        in_rand(&k, LP_DT_FLOAT, {3, 4, 17});
        out(&k, LP_DT_FLOAT, {3, 4, 6});
        ints(&k, "kernel_shape", {4});
        ints(&k, "strides", {3});
        op_case_attr_string(&k, "auto_pad", "SAME_UPPER");
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("averagepool SAME_LOWER 2-D", LP_OP_AveragePool, 19);
        in_rand(&k, LP_DT_FLOAT, {2, 3, 9, 8});
        out(&k, LP_DT_FLOAT, {2, 3, 5, 4});
        ints(&k, "kernel_shape", {2, 3});
        ints(&k, "strides", {2, 2});
        op_case_attr_string(&k, "auto_pad", "SAME_LOWER");
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("averagepool VALID 3-D", LP_OP_AveragePool, 19);
        in_rand(&k, LP_DT_FLOAT16, {2, 3, 6, 7, 5});
        out(&k, LP_DT_FLOAT16, {2, 3, 5, 3, 4});
        ints(&k, "kernel_shape", {2, 3, 2});
        ints(&k, "strides", {1, 2, 1});
        op_case_attr_string(&k, "auto_pad", "VALID");
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("maxpool 3-D pads", LP_OP_MaxPool, 12);
        in_rand(&k, LP_DT_FLOAT, {1, 2, 5, 6, 7});
        out(&k, LP_DT_FLOAT, {1, 2, 2, 3, 4});
        ints(&k, "kernel_shape", {3, 2, 3});
        ints(&k, "strides", {2, 2, 2});
        ints(&k, "pads", {1, 0, 1, 0, 0, 1});
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("maxpool int8", LP_OP_MaxPool, 12);
        in_rand_i(&k, LP_DT_INT8, {2, 3, 9, 9}, -100, 100);
        out(&k, LP_DT_INT8, {2, 3, 4, 4});
        ints(&k, "kernel_shape", {3, 3});
        ints(&k, "strides", {2, 2});
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("maxpool uint8 pads", LP_OP_MaxPool, 12);
        in_rand_i(&k, LP_DT_UINT8, {1, 4, 8, 8}, 0, 255);
        out(&k, LP_DT_UINT8, {1, 4, 8, 8});
        ints(&k, "kernel_shape", {3, 3});
        ints(&k, "pads", {1, 1, 1, 1});
        f += op_check(&k);
    }
    {   /* large: grid-stride over 2 * 32 * 64 * 64 outputs */
        op_case k = op_case_make("maxpool fp16 [2,32,128,128] 2x2 s2", LP_OP_MaxPool, 12);
        in_rand(&k, LP_DT_FLOAT16, {2, 32, 128, 128});
        out(&k, LP_DT_FLOAT16, {2, 32, 64, 64});
        ints(&k, "kernel_shape", {2, 2});
        ints(&k, "strides", {2, 2});
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("averagepool fp32 [4,16,100,100] 3x3 p1", LP_OP_AveragePool, 19);
        in_rand(&k, LP_DT_FLOAT, {4, 16, 100, 100});
        out(&k, LP_DT_FLOAT, {4, 16, 100, 100});
        ints(&k, "kernel_shape", {3, 3});
        ints(&k, "pads", {1, 1, 1, 1});
        f += op_check(&k);
    }
    return f;
}

int global_pool_cases(void) {
    int f = 0;
    const char *av[3] = {"globalaveragepool fp32", "globalaveragepool fp16", "globalaveragepool bf16"};
    const char *mx[3] = {"globalmaxpool fp32", "globalmaxpool fp16", "globalmaxpool bf16"};
    for (int i = 0; i < 3; i++) {
        op_case k = op_case_make(av[i], LP_OP_GlobalAveragePool, 1);
        in_rand(&k, FLOATS[i], {3, 5, 7, 9});
        out(&k, FLOATS[i], {3, 5, 1, 1});
        f += op_check(&k);
        op_case m = op_case_make(mx[i], LP_OP_GlobalMaxPool, 1);
        in_rand(&m, FLOATS[i], {3, 5, 7, 9});
        out(&m, FLOATS[i], {3, 5, 1, 1});
        f += op_check(&m);
    }
    {
        op_case k = op_case_make("globalaveragepool 1-D spatial 5", LP_OP_GlobalAveragePool, 1);
        in_rand(&k, LP_DT_FLOAT, {4, 6, 5});
        out(&k, LP_DT_FLOAT, {4, 6, 1});
        f += op_check(&k);
    }
    {
        op_case k = op_case_make("globalaveragepool fp32 [8,64,56,56]", LP_OP_GlobalAveragePool, 1);
        in_rand(&k, LP_DT_FLOAT, {8, 64, 56, 56});
        out(&k, LP_DT_FLOAT, {8, 64, 1, 1});
        f += op_check(&k);
        op_case m = op_case_make("globalmaxpool fp16 [2,512,7,7]", LP_OP_GlobalMaxPool, 1);
        in_rand(&m, LP_DT_FLOAT16, {2, 512, 7, 7});
        out(&m, LP_DT_FLOAT16, {2, 512, 1, 1});
        f += op_check(&m);
    }
    return f;
}

/* ---- BatchNormalization ---- */

int batchnorm(const char *name, lp_dtype dt, lp_dtype pdt, const Dims &x, float eps) {
    op_case k = op_case_make(name, LP_OP_BatchNormalization, 15);
    Dims ch = {x.d[1]};
    in_rand(&k, dt, x, -3.f, 3.f);
    in_rand(&k, pdt, ch, 0.5f, 1.5f);
    in_rand(&k, pdt, ch, -1.f, 1.f);
    in_rand(&k, pdt, ch, -0.5f, 0.5f);
    in_rand(&k, pdt, ch, 0.2f, 2.f);
    out(&k, dt, x);
    if (eps > 0.f) op_case_attr_float(&k, "epsilon", eps);
    return op_check(&k);
}

int batchnorm_cases(void) {
    int f = 0;
    f += batchnorm("batchnorm fp32 [2,3,5,7]", LP_DT_FLOAT, LP_DT_FLOAT, {2, 3, 5, 7}, 0.f);
    f += batchnorm("batchnorm fp16 [2,3,5,7] fp32 params", LP_DT_FLOAT16, LP_DT_FLOAT, {2, 3, 5, 7}, 1e-3f);
    f += batchnorm("batchnorm bf16 [2,3,5,7]", LP_DT_BFLOAT16, LP_DT_BFLOAT16, {2, 3, 5, 7}, 0.f);
    f += batchnorm("batchnorm fp32 [N, C]", LP_DT_FLOAT, LP_DT_FLOAT, {17, 6}, 0.f);
    f += batchnorm("batchnorm fp32 1-D spatial", LP_DT_FLOAT, LP_DT_FLOAT, {3, 4, 11}, 0.f);
    f += batchnorm("batchnorm fp32 [8,64,33,33]", LP_DT_FLOAT, LP_DT_FLOAT, {8, 64, 33, 33}, 0.f);
    return f;
}

} /* namespace */

int ops_nn_cases(void) {
    int f = 0;
    f += layernorm_cases();
    f += softmax_cases();
    f += reduce_cases();
    f += pool_cases();
    f += global_pool_cases();
    f += batchnorm_cases();
    return f;
}
