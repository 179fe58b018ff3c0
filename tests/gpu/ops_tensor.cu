/* ops_tensor.cu - the data-movement kernels (gpu_tensor.cu) against the
 * reference kernels (ref_tensor.c): every op, float / half / integer / bool
 * dtypes, negative axes and indices, attribute variants, sizes off the
 * block and tile sizes, and large cases for the grid-stride and multi-block
 * paths. */
#include <stdio.h>
#include <string.h>

#include <deque>
#include <initializer_list>
#include <vector>

#include "op_check.h"

namespace {

/* Values that stay alive until exit: the harness keeps pointers to input
 * values until op_check runs. */
const int64_t *I(std::initializer_list<int64_t> v) {
    static std::deque<std::vector<int64_t>> pool;
    pool.emplace_back(v);
    return pool.back().data();
}
const float *F(std::initializer_list<float> v) {
    static std::deque<std::vector<float>> pool;
    pool.emplace_back(v);
    return pool.back().data();
}

bool is_float(lp_dtype t) {
    return t == LP_DT_FLOAT || t == LP_DT_FLOAT16 || t == LP_DT_BFLOAT16 || t == LP_DT_DOUBLE;
}

int64_t numel(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int d = 0; d < rank; d++) n *= dims[d];
    return n;
}

/* A random input of any dtype: floats in [-2, 2), integers in [-50, 50),
 * bools 0 / 1. */
void rand_input(op_case *k, lp_dtype dt, int rank, const int64_t *dims) {
    int64_t n = numel(rank, dims);
    if (is_float(dt)) op_case_input_f(k, dt, rank, dims, op_rand_f(n, -2.0f, 2.0f));
    else if (dt == LP_DT_BOOL || dt == LP_DT_UINT8) op_case_input_i(k, dt, rank, dims, op_rand_i(n, 0, 2), false);
    else op_case_input_i(k, dt, rank, dims, op_rand_i(n, -50, 50), false);
}

/* A 1-D int64 literal (shape data). */
void lit(op_case *k, int n, const int64_t *v) {
    int64_t d[1] = {n};
    op_case_input_i(k, LP_DT_INT64, 1, d, v, true);
}

const lp_dtype kAll[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16, LP_DT_INT64, LP_DT_INT32, LP_DT_BOOL};
const char *dt_tag(lp_dtype t) {
    switch (t) {
    case LP_DT_FLOAT: return "fp32";
    case LP_DT_FLOAT16: return "fp16";
    case LP_DT_BFLOAT16: return "bf16";
    case LP_DT_INT64: return "int64";
    case LP_DT_INT32: return "int32";
    case LP_DT_BOOL: return "bool";
    case LP_DT_UINT8: return "uint8";
    default: return "?";
    }
}

/* Names live as long as the harness needs them. */
const char *name_of(const char *op, const char *what, lp_dtype t) {
    static char buf[256][96];
    static int at;
    char *s = buf[at++ % 256];
    snprintf(s, sizeof buf[0], "%s %s %s", op, what, dt_tag(t));
    return s;
}

int views(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Reshape", "[2,3,5]->[6,5]", t), LP_OP_Reshape, 14);
        rand_input(&k, t, 3, I({2, 3, 5}));
        lit(&k, 2, I({6, 5}));
        op_case_output(&k, t, 2, I({6, 5}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Flatten large fp16", LP_OP_Flatten, 13);
    rand_input(&k, LP_DT_FLOAT16, 4, I({3, 7, 97, 61}));
    op_case_output(&k, LP_DT_FLOAT16, 2, I({3, 7 * 97 * 61}));
    f += op_check(&k);
    k = op_case_make("Squeeze bf16", LP_OP_Squeeze, 13);
    rand_input(&k, LP_DT_BFLOAT16, 3, I({1, 9, 1}));
    lit(&k, 1, I({-1}));
    op_case_output(&k, LP_DT_BFLOAT16, 2, I({1, 9}));
    f += op_check(&k);
    k = op_case_make("Identity int64", LP_OP_Identity, 16);
    rand_input(&k, LP_DT_INT64, 1, I({11}));
    op_case_output(&k, LP_DT_INT64, 1, I({11}));
    f += op_check(&k);
    return f;
}

int shapes(void) {
    int f = 0;
    op_case k = op_case_make("Shape all", LP_OP_Shape, 15);
    rand_input(&k, LP_DT_FLOAT, 4, I({2, 3, 5, 7}));
    op_case_output(&k, LP_DT_INT64, 1, I({4}));
    f += op_check(&k);
    k = op_case_make("Shape start=1 end=-1", LP_OP_Shape, 15);
    rand_input(&k, LP_DT_FLOAT16, 4, I({2, 3, 5, 7}));
    op_case_attr_int(&k, "start", 1);
    op_case_attr_int(&k, "end", -1);
    op_case_output(&k, LP_DT_INT64, 1, I({2}));
    f += op_check(&k);
    k = op_case_make("Shape start=-3 end=99", LP_OP_Shape, 15);
    rand_input(&k, LP_DT_INT32, 3, I({4, 1, 6}));
    op_case_attr_int(&k, "start", -3);
    op_case_attr_int(&k, "end", 99);
    op_case_output(&k, LP_DT_INT64, 1, I({3}));
    f += op_check(&k);

    k = op_case_make("ConstantOfShape default fp32 0", LP_OP_ConstantOfShape, 20);
    lit(&k, 2, I({3, 5}));
    op_case_output(&k, LP_DT_FLOAT, 2, I({3, 5}));
    f += op_check(&k);
    /* value tensors: one element each */
    static const int64_t seven = 7;
    static const float three_and_half = 3.5f;
    static const uint16_t half_one_half = 0x3e00; /* 1.5 */
    static lp_tensor tv[3];
    struct { lp_dtype dt; const void *bytes; size_t nb; const char *name; } vals[3] = {
        {LP_DT_INT64, &seven, 8, "ConstantOfShape int64 7 large"},
        {LP_DT_FLOAT, &three_and_half, 4, "ConstantOfShape fp32 3.5"},
        {LP_DT_FLOAT16, &half_one_half, 2, "ConstantOfShape fp16 1.5"},
    };
    for (int v = 0; v < 3; v++) {
        memset(&tv[v], 0, sizeof tv[v]);
        tv[v].dtype = vals[v].dt;
        tv[v].data.where = LP_DATA_INLINE;
        tv[v].data.bytes = (const uint8_t *)vals[v].bytes;
        tv[v].data.nbytes = vals[v].nb;
        k = op_case_make(vals[v].name, LP_OP_ConstantOfShape, 20);
        const int64_t *dims = v == 0 ? I({301, 517}) : I({2, 7});
        lit(&k, 2, dims);
        op_case_output(&k, vals[v].dt, 2, dims);
        lp_attr *a = &k.attrs[k.n_attrs++];
        memset(a, 0, sizeof *a);
        a->name = "value";
        a->type = LP_ATTR_TENSOR;
        a->tensor = &tv[v];
        f += op_check(&k);
    }

    /* Range: start / delta on the device (not literals) */
    k = op_case_make("Range fp32 1..4.5 step 0.5", LP_OP_Range, 11);
    op_case_input_f(&k, LP_DT_FLOAT, 0, NULL, F({1.0f}));
    op_case_input_f(&k, LP_DT_FLOAT, 0, NULL, F({4.5f}));
    op_case_input_f(&k, LP_DT_FLOAT, 0, NULL, F({0.5f}));
    op_case_output(&k, LP_DT_FLOAT, 1, I({7}));
    f += op_check(&k);
    k = op_case_make("Range int64 10..-5 step -3", LP_OP_Range, 11);
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({10}), false);
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({-5}), false);
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({-3}), false);
    op_case_output(&k, LP_DT_INT64, 1, I({5}));
    f += op_check(&k);
    k = op_case_make("Range int32 large", LP_OP_Range, 11);
    op_case_input_i(&k, LP_DT_INT32, 0, NULL, I({-7}), true);
    op_case_input_i(&k, LP_DT_INT32, 0, NULL, I({-7 + 2 * 150001}), true);
    op_case_input_i(&k, LP_DT_INT32, 0, NULL, I({2}), true);
    op_case_output(&k, LP_DT_INT32, 1, I({150001}));
    f += op_check(&k);
    k = op_case_make("Range fp16 large", LP_OP_Range, 11);
    op_case_input_f(&k, LP_DT_FLOAT16, 0, NULL, F({0.0f}));
    op_case_input_f(&k, LP_DT_FLOAT16, 0, NULL, F({60000.0f}));
    op_case_input_f(&k, LP_DT_FLOAT16, 0, NULL, F({0.5f}));
    op_case_output(&k, LP_DT_FLOAT16, 1, I({120000}));
    f += op_check(&k);
    return f;
}

int expands(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Expand", "[3,1]->[2,3,4]", t), LP_OP_Expand, 13);
        rand_input(&k, t, 2, I({3, 1}));
        lit(&k, 3, I({2, 3, 4}));
        op_case_output(&k, t, 3, I({2, 3, 4}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Expand scalar->[200003] fp16", LP_OP_Expand, 13);
    rand_input(&k, LP_DT_FLOAT16, 1, I({1}));
    lit(&k, 1, I({200003}));
    op_case_output(&k, LP_DT_FLOAT16, 1, I({200003}));
    f += op_check(&k);
    k = op_case_make("Expand row [64]->[1000,64] bf16 (vector units)", LP_OP_Expand, 13);
    rand_input(&k, LP_DT_BFLOAT16, 1, I({64}));
    lit(&k, 2, I({1000, 64}));
    op_case_output(&k, LP_DT_BFLOAT16, 2, I({1000, 64}));
    f += op_check(&k);
    k = op_case_make("Expand [2,1,5]->[2,3,5] with 1s in the target int64", LP_OP_Expand, 13);
    rand_input(&k, LP_DT_INT64, 3, I({2, 1, 5}));
    lit(&k, 2, I({3, 1}));
    op_case_output(&k, LP_DT_INT64, 3, I({2, 3, 5}));
    f += op_check(&k);
    k = op_case_make("Expand [7,1,33]->[4,7,129,33] fp32 large", LP_OP_Expand, 13);
    rand_input(&k, LP_DT_FLOAT, 3, I({7, 1, 33}));
    lit(&k, 4, I({4, 7, 129, 33}));
    op_case_output(&k, LP_DT_FLOAT, 4, I({4, 7, 129, 33}));
    f += op_check(&k);
    return f;
}

int concat_split(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Concat", "axis 1 of 3", t), LP_OP_Concat, 13);
        rand_input(&k, t, 3, I({2, 3, 5}));
        rand_input(&k, t, 3, I({2, 1, 5}));
        rand_input(&k, t, 3, I({2, 4, 5}));
        op_case_attr_int(&k, "axis", 1);
        op_case_output(&k, t, 3, I({2, 8, 5}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Concat axis -1 fp16", LP_OP_Concat, 13);
    rand_input(&k, LP_DT_FLOAT16, 2, I({3, 7}));
    rand_input(&k, LP_DT_FLOAT16, 2, I({3, 1}));
    op_case_attr_int(&k, "axis", -1);
    op_case_output(&k, LP_DT_FLOAT16, 2, I({3, 8}));
    f += op_check(&k);
    k = op_case_make("Concat axis 0 int64", LP_OP_Concat, 13);
    rand_input(&k, LP_DT_INT64, 2, I({2, 3}));
    rand_input(&k, LP_DT_INT64, 2, I({1, 3}));
    op_case_output(&k, LP_DT_INT64, 2, I({3, 3}));
    f += op_check(&k);
    k = op_case_make("Concat large bf16 [517,256]+[517,64] axis 1", LP_OP_Concat, 13);
    rand_input(&k, LP_DT_BFLOAT16, 2, I({517, 256}));
    rand_input(&k, LP_DT_BFLOAT16, 2, I({517, 64}));
    op_case_attr_int(&k, "axis", 1);
    op_case_output(&k, LP_DT_BFLOAT16, 2, I({517, 320}));
    f += op_check(&k);

    k = op_case_make("Split axis 1 [2,2]+[2,3] fp32", LP_OP_Split, 13);
    rand_input(&k, LP_DT_FLOAT, 3, I({2, 5, 3}));
    lit(&k, 2, I({2, 3}));
    op_case_attr_int(&k, "axis", 1);
    op_case_output(&k, LP_DT_FLOAT, 3, I({2, 2, 3}));
    op_case_output(&k, LP_DT_FLOAT, 3, I({2, 3, 3}));
    f += op_check(&k);
    k = op_case_make("Split axis -1 three ways int32", LP_OP_Split, 18);
    rand_input(&k, LP_DT_INT32, 2, I({4, 7}));
    op_case_attr_int(&k, "axis", -1);
    op_case_attr_int(&k, "num_outputs", 3);
    op_case_output(&k, LP_DT_INT32, 2, I({4, 3}));
    op_case_output(&k, LP_DT_INT32, 2, I({4, 3}));
    op_case_output(&k, LP_DT_INT32, 2, I({4, 1}));
    f += op_check(&k);
    k = op_case_make("Split large fp16 qkv [4,300,3*128] axis 2", LP_OP_Split, 13);
    rand_input(&k, LP_DT_FLOAT16, 3, I({4, 300, 384}));
    lit(&k, 3, I({128, 128, 128}));
    op_case_attr_int(&k, "axis", 2);
    for (int o = 0; o < 3; o++) op_case_output(&k, LP_DT_FLOAT16, 3, I({4, 300, 128}));
    f += op_check(&k);
    k = op_case_make("Split axis 0 bool", LP_OP_Split, 13);
    rand_input(&k, LP_DT_BOOL, 2, I({5, 3}));
    lit(&k, 2, I({1, 4}));
    op_case_output(&k, LP_DT_BOOL, 2, I({1, 3}));
    op_case_output(&k, LP_DT_BOOL, 2, I({4, 3}));
    f += op_check(&k);
    return f;
}

int slices(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Slice", "axes 2,0 step 2", t), LP_OP_Slice, 13);
        rand_input(&k, t, 3, I({5, 4, 9}));
        lit(&k, 2, I({1, 1}));
        lit(&k, 2, I({8, 4}));
        lit(&k, 2, I({-1, 0}));
        lit(&k, 2, I({2, 1}));
        op_case_output(&k, t, 3, I({3, 4, 4}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Slice negative step reverses fp16", LP_OP_Slice, 13);
    rand_input(&k, LP_DT_FLOAT16, 2, I({3, 10}));
    lit(&k, 1, I({-1}));
    lit(&k, 1, I({INT64_MIN}));
    lit(&k, 1, I({1}));
    lit(&k, 1, I({-3}));
    op_case_output(&k, LP_DT_FLOAT16, 2, I({3, 4})); /* 9, 6, 3, 0 */
    f += op_check(&k);
    k = op_case_make("Slice ends past the dim, no axes / steps int64", LP_OP_Slice, 13);
    rand_input(&k, LP_DT_INT64, 2, I({6, 5}));
    lit(&k, 2, I({-4, 2}));
    lit(&k, 2, I({INT64_MAX, 100}));
    op_case_output(&k, LP_DT_INT64, 2, I({4, 3}));
    f += op_check(&k);
    k = op_case_make("Slice opset 9 attributes fp32", LP_OP_Slice, 9);
    rand_input(&k, LP_DT_FLOAT, 3, I({4, 6, 8}));
    op_case_attr_ints(&k, "starts", 2, I({1, -5}));
    op_case_attr_ints(&k, "ends", 2, I({3, -1}));
    op_case_attr_ints(&k, "axes", 2, I({1, 2}));
    op_case_output(&k, LP_DT_FLOAT, 3, I({4, 2, 4}));
    f += op_check(&k);
    k = op_case_make("Slice large contiguous rows bf16", LP_OP_Slice, 13);
    rand_input(&k, LP_DT_BFLOAT16, 3, I({8, 250, 96}));
    lit(&k, 1, I({13}));
    lit(&k, 1, I({213}));
    lit(&k, 1, I({1}));
    lit(&k, 1, I({1}));
    op_case_output(&k, LP_DT_BFLOAT16, 3, I({8, 200, 96}));
    f += op_check(&k);
    k = op_case_make("Slice large strided both axes step -2 fp32", LP_OP_Slice, 13);
    rand_input(&k, LP_DT_FLOAT, 2, I({701, 603}));
    lit(&k, 2, I({-1, 600}));
    lit(&k, 2, I({INT64_MIN, 1}));
    lit(&k, 2, I({0, 1}));
    lit(&k, 2, I({-2, -2}));
    op_case_output(&k, LP_DT_FLOAT, 2, I({351, 300}));
    f += op_check(&k);
    return f;
}

int transposes(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Transpose", "default reverse [2,3,5]", t), LP_OP_Transpose, 13);
        rand_input(&k, t, 3, I({2, 3, 5}));
        op_case_output(&k, t, 3, I({5, 3, 2}));
        f += op_check(&k);
        k = op_case_make(name_of("Transpose", "last two (tiled) [3,33,65]", t), LP_OP_Transpose, 13);
        rand_input(&k, t, 3, I({3, 33, 65}));
        op_case_attr_ints(&k, "perm", 3, I({0, 2, 1}));
        op_case_output(&k, t, 3, I({3, 65, 33}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Transpose [B,S,H,D]->[B,H,S,D] fp16 large", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_FLOAT16, 4, I({2, 129, 8, 64}));
    op_case_attr_ints(&k, "perm", 4, I({0, 2, 1, 3}));
    op_case_output(&k, LP_DT_FLOAT16, 4, I({2, 8, 129, 64}));
    f += op_check(&k);
    k = op_case_make("Transpose [B,S,H,D]->[B,H,S,D] fp32 odd D", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_FLOAT, 4, I({3, 17, 5, 7}));
    op_case_attr_ints(&k, "perm", 4, I({0, 2, 1, 3}));
    op_case_output(&k, LP_DT_FLOAT, 4, I({3, 5, 17, 7}));
    f += op_check(&k);
    k = op_case_make("Transpose 2-D large 1000x513 fp32 (tiled)", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_FLOAT, 2, I({1000, 513}));
    op_case_output(&k, LP_DT_FLOAT, 2, I({513, 1000}));
    f += op_check(&k);
    k = op_case_make("Transpose [B,H,S,D]->[B,H,D,S] bf16 (tiled, batched)", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_BFLOAT16, 4, I({2, 4, 100, 40}));
    op_case_attr_ints(&k, "perm", 4, I({0, 1, 3, 2}));
    op_case_output(&k, LP_DT_BFLOAT16, 4, I({2, 4, 40, 100}));
    f += op_check(&k);
    k = op_case_make("Transpose generic perm [2,0,3,1] int64", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_INT64, 4, I({3, 4, 5, 6}));
    op_case_attr_ints(&k, "perm", 4, I({2, 0, 3, 1}));
    op_case_output(&k, LP_DT_INT64, 4, I({5, 3, 6, 4}));
    f += op_check(&k);
    k = op_case_make("Transpose NCHW->NHWC fp16 large", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_FLOAT16, 4, I({2, 3, 224, 225}));
    op_case_attr_ints(&k, "perm", 4, I({0, 2, 3, 1}));
    op_case_output(&k, LP_DT_FLOAT16, 4, I({2, 224, 225, 3}));
    f += op_check(&k);
    k = op_case_make("Transpose with size-1 dims and negative perm fp32", LP_OP_Transpose, 13);
    rand_input(&k, LP_DT_FLOAT, 4, I({1, 6, 1, 9}));
    op_case_attr_ints(&k, "perm", 4, I({-1, 2, 1, 0}));
    op_case_output(&k, LP_DT_FLOAT, 4, I({9, 1, 6, 1}));
    f += op_check(&k);
    return f;
}

int gathers(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Gather", "axis 0 negative indices", t), LP_OP_Gather, 13);
        rand_input(&k, t, 2, I({5, 3}));
        op_case_input_i(&k, LP_DT_INT64, 2, I({2, 2}), I({0, -1, 4, -5}), false);
        op_case_output(&k, t, 3, I({2, 2, 3}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Gather axis 1 int32 indices fp32", LP_OP_Gather, 13);
    rand_input(&k, LP_DT_FLOAT, 3, I({2, 7, 3}));
    op_case_input_i(&k, LP_DT_INT32, 1, I({4}), I({6, -7, 3, 3}), false);
    op_case_attr_int(&k, "axis", 1);
    op_case_output(&k, LP_DT_FLOAT, 3, I({2, 4, 3}));
    f += op_check(&k);
    k = op_case_make("Gather axis -1 scalar index fp16", LP_OP_Gather, 13);
    rand_input(&k, LP_DT_FLOAT16, 2, I({4, 9}));
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({-2}), false);
    op_case_attr_int(&k, "axis", -1);
    op_case_output(&k, LP_DT_FLOAT16, 1, I({4}));
    f += op_check(&k);
    k = op_case_make("Gather embedding [1000,64] x [4,517] bf16 large", LP_OP_Gather, 13);
    rand_input(&k, LP_DT_BFLOAT16, 2, I({1000, 64}));
    op_case_input_i(&k, LP_DT_INT64, 2, I({4, 517}), op_rand_i(4 * 517, -1000, 1000), false);
    op_case_output(&k, LP_DT_BFLOAT16, 3, I({4, 517, 64}));
    f += op_check(&k);

    k = op_case_make("GatherElements axis 1 fp32", LP_OP_GatherElements, 13);
    rand_input(&k, LP_DT_FLOAT, 2, I({3, 4}));
    op_case_input_i(&k, LP_DT_INT64, 2, I({3, 2}), I({0, 3, -1, 1, 2, -4}), false);
    op_case_attr_int(&k, "axis", 1);
    op_case_output(&k, LP_DT_FLOAT, 2, I({3, 2}));
    f += op_check(&k);
    k = op_case_make("GatherElements axis -3 int32 indices fp16", LP_OP_GatherElements, 13);
    rand_input(&k, LP_DT_FLOAT16, 3, I({5, 3, 4}));
    op_case_input_i(&k, LP_DT_INT32, 3, I({2, 3, 3}), op_rand_i(18, -5, 5), false);
    op_case_attr_int(&k, "axis", -3);
    op_case_output(&k, LP_DT_FLOAT16, 3, I({2, 3, 3}));
    f += op_check(&k);
    k = op_case_make("GatherElements large int64", LP_OP_GatherElements, 13);
    rand_input(&k, LP_DT_INT64, 2, I({400, 333}));
    op_case_input_i(&k, LP_DT_INT64, 2, I({400, 300}), op_rand_i(400 * 300, -333, 333), false);
    op_case_attr_int(&k, "axis", 1);
    op_case_output(&k, LP_DT_INT64, 2, I({400, 300}));
    f += op_check(&k);

    k = op_case_make("GatherND depth 2 fp32", LP_OP_GatherND, 13);
    rand_input(&k, LP_DT_FLOAT, 3, I({3, 4, 5}));
    op_case_input_i(&k, LP_DT_INT64, 2, I({3, 2}), I({0, 1, 2, -1, -3, 3}), false);
    op_case_output(&k, LP_DT_FLOAT, 2, I({3, 5}));
    f += op_check(&k);
    k = op_case_make("GatherND depth 1 int32 indices bf16", LP_OP_GatherND, 13);
    rand_input(&k, LP_DT_BFLOAT16, 2, I({6, 8}));
    op_case_input_i(&k, LP_DT_INT32, 3, I({2, 2, 1}), I({5, 0, -2, 3}), false);
    op_case_output(&k, LP_DT_BFLOAT16, 3, I({2, 2, 8}));
    f += op_check(&k);
    k = op_case_make("GatherND batch_dims 1 full depth int64", LP_OP_GatherND, 13);
    rand_input(&k, LP_DT_INT64, 3, I({2, 3, 4}));
    op_case_input_i(&k, LP_DT_INT64, 3, I({2, 2, 2}), I({0, 0, 2, 3, 1, -1, -3, 1}), false);
    op_case_attr_int(&k, "batch_dims", 1);
    op_case_output(&k, LP_DT_INT64, 2, I({2, 2}));
    f += op_check(&k);
    k = op_case_make("GatherND large rows fp16", LP_OP_GatherND, 13);
    rand_input(&k, LP_DT_FLOAT16, 3, I({20, 30, 200}));
    op_case_input_i(&k, LP_DT_INT64, 2, I({700, 2}), op_rand_i(1400, 0, 20), false);
    op_case_output(&k, LP_DT_FLOAT16, 2, I({700, 200}));
    f += op_check(&k);
    return f;
}

int pads(void) {
    int f = 0;
    for (lp_dtype t : kAll) {
        op_case k = op_case_make(name_of("Pad", "constant no value", t), LP_OP_Pad, 13);
        rand_input(&k, t, 2, I({3, 4}));
        lit(&k, 4, I({1, 0, 2, 3}));
        op_case_output(&k, t, 2, I({6, 7}));
        f += op_check(&k);
    }
    op_case k = op_case_make("Pad constant value on the device fp32", LP_OP_Pad, 13);
    rand_input(&k, LP_DT_FLOAT, 3, I({2, 3, 4}));
    lit(&k, 6, I({0, 1, 2, 0, 1, 1}));
    op_case_input_f(&k, LP_DT_FLOAT, 0, NULL, F({-7.25f}));
    op_case_output(&k, LP_DT_FLOAT, 3, I({2, 5, 7}));
    f += op_check(&k);
    k = op_case_make("Pad constant value int64", LP_OP_Pad, 13);
    rand_input(&k, LP_DT_INT64, 2, I({3, 3}));
    lit(&k, 4, I({2, 1, 0, 2}));
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({99}), false);
    op_case_output(&k, LP_DT_INT64, 2, I({5, 6}));
    f += op_check(&k);
    k = op_case_make("Pad reflect fp16", LP_OP_Pad, 13);
    rand_input(&k, LP_DT_FLOAT16, 3, I({2, 4, 5}));
    lit(&k, 6, I({0, 3, 2, 0, 2, 4}));
    op_case_attr_string(&k, "mode", "reflect");
    op_case_output(&k, LP_DT_FLOAT16, 3, I({2, 9, 11}));
    f += op_check(&k);
    k = op_case_make("Pad edge bf16", LP_OP_Pad, 13);
    rand_input(&k, LP_DT_BFLOAT16, 2, I({3, 4}));
    lit(&k, 4, I({2, 5, 3, 1}));
    op_case_attr_string(&k, "mode", "edge");
    op_case_output(&k, LP_DT_BFLOAT16, 2, I({8, 10}));
    f += op_check(&k);
    k = op_case_make("Pad negative pads crop int32", LP_OP_Pad, 13);
    rand_input(&k, LP_DT_INT32, 2, I({5, 6}));
    lit(&k, 4, I({-1, 2, 1, -3}));
    op_case_output(&k, LP_DT_INT32, 2, I({5, 5}));
    f += op_check(&k);
    k = op_case_make("Pad opset 2 attributes value 1.5 fp32", LP_OP_Pad, 2);
    rand_input(&k, LP_DT_FLOAT, 2, I({2, 3}));
    op_case_attr_ints(&k, "pads", 4, I({1, 2, 0, 1}));
    op_case_attr_float(&k, "value", 1.5f);
    op_case_output(&k, LP_DT_FLOAT, 2, I({3, 6}));
    f += op_check(&k);
    k = op_case_make("Pad opset 18 axes input edge fp32", LP_OP_Pad, 18);
    rand_input(&k, LP_DT_FLOAT, 3, I({2, 3, 4}));
    lit(&k, 2, I({2, 1}));
    op_case_input_none(&k);
    lit(&k, 1, I({-2}));
    op_case_attr_string(&k, "mode", "edge");
    op_case_output(&k, LP_DT_FLOAT, 3, I({2, 6, 4}));
    f += op_check(&k);
    k = op_case_make("Pad reflect NCHW large fp32", LP_OP_Pad, 13);
    rand_input(&k, LP_DT_FLOAT, 4, I({2, 3, 223, 130}));
    lit(&k, 8, I({0, 0, 3, 3, 0, 0, 3, 3}));
    op_case_attr_string(&k, "mode", "reflect");
    op_case_output(&k, LP_DT_FLOAT, 4, I({2, 3, 229, 136}));
    f += op_check(&k);
    return f;
}

int cumsums(void) {
    int f = 0;
    const lp_dtype dts[] = {LP_DT_FLOAT, LP_DT_FLOAT16, LP_DT_BFLOAT16, LP_DT_INT64, LP_DT_INT32};
    for (lp_dtype t : dts)
        for (int v = 0; v < 4; v++) {
            static const char *what[4] = {"last axis", "exclusive", "reverse", "exclusive reverse"};
            op_case k = op_case_make(name_of("CumSum", what[v], t), LP_OP_CumSum, 14);
            if (is_float(t)) op_case_input_f(&k, t, 2, I({3, 37}), op_rand_f(3 * 37, 0.0f, 1.0f));
            else rand_input(&k, t, 2, I({3, 37}));
            op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({-1}), true);
            if (v & 1) op_case_attr_int(&k, "exclusive", 1);
            if (v & 2) op_case_attr_int(&k, "reverse", 1);
            op_case_output(&k, t, 2, I({3, 37}));
            f += op_check(&k);
        }
    op_case k = op_case_make("CumSum axis 0 columns fp32", LP_OP_CumSum, 14);
    op_case_input_f(&k, LP_DT_FLOAT, 3, I({9, 5, 7}), op_rand_f(9 * 5 * 7, 0.0f, 1.0f));
    op_case_input_i(&k, LP_DT_INT32, 1, I({1}), I({0}), true);
    op_case_output(&k, LP_DT_FLOAT, 3, I({9, 5, 7}));
    f += op_check(&k);
    k = op_case_make("CumSum middle axis exclusive reverse int64", LP_OP_CumSum, 14);
    rand_input(&k, LP_DT_INT64, 3, I({4, 6, 3}));
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({1}), true);
    op_case_attr_int(&k, "exclusive", 1);
    op_case_attr_int(&k, "reverse", 1);
    op_case_output(&k, LP_DT_INT64, 3, I({4, 6, 3}));
    f += op_check(&k);
    k = op_case_make("CumSum long rows 30x10000 fp32 (chunks)", LP_OP_CumSum, 14);
    op_case_input_f(&k, LP_DT_FLOAT, 2, I({30, 10000}), op_rand_f(300000, 0.0f, 1.0f));
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({1}), true);
    op_case_output(&k, LP_DT_FLOAT, 2, I({30, 10000}));
    f += op_check(&k);
    k = op_case_make("CumSum many short rows 40000x5 reverse int32", LP_OP_CumSum, 14);
    rand_input(&k, LP_DT_INT32, 2, I({40000, 5}));
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({-1}), true);
    op_case_attr_int(&k, "reverse", 1);
    op_case_output(&k, LP_DT_INT32, 2, I({40000, 5}));
    f += op_check(&k);
    k = op_case_make("CumSum columns large exclusive fp16", LP_OP_CumSum, 14);
    op_case_input_f(&k, LP_DT_FLOAT16, 2, I({50, 4099}), op_rand_f(50 * 4099, 0.0f, 1.0f));
    op_case_input_i(&k, LP_DT_INT64, 0, NULL, I({0}), true);
    op_case_attr_int(&k, "exclusive", 1);
    op_case_output(&k, LP_DT_FLOAT16, 2, I({50, 4099}));
    f += op_check(&k);
    return f;
}

} // namespace

int ops_tensor_cases(void) {
    return views() + shapes() + expands() + concat_split() + slices() + transposes() + gathers() +
           pads() + cumsums();
}
