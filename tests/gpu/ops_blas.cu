/* ops_blas.cu - MatMul, Gemm and Conv on the GPU against the reference:
 * every MatMul path (one GEMM, 1-D operands, batches folded into M,
 * strided-batched, the per-batch loop of other broadcasts), every Gemm
 * transpose / C variant (bias epilogue, full C, broadcast C with beta), and
 * Conv with groups, depthwise, strides, pads, dilations, auto_pad and bias,
 * in fp32, fp16 and bf16. */
#include <stdio.h>

#include "op_check.h"

static int64_t numel(int rank, const int64_t *d) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= d[i];
    return n;
}

static int matmul(const char *name, lp_dtype dt, int ra, const int64_t *da, int rb,
                  const int64_t *db, int ry, const int64_t *dy) {
    op_case k = op_case_make(name, LP_OP_MatMul, 13);
    op_case_input_f(&k, dt, ra, da, op_rand_f(numel(ra, da), -1.0f, 1.0f));
    op_case_input_f(&k, dt, rb, db, op_rand_f(numel(rb, db), -1.0f, 1.0f));
    op_case_output(&k, dt, ry, dy);
    return op_check(&k);
}

/* Gemm of op(A) [m, k] and op(B) [k, n]; c_rank < 0: no C. */
static int gemm(const char *name, lp_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t kk,
                int c_rank, const int64_t *cd, float alpha, float beta, size_t workspace) {
    op_case k = op_case_make(name, LP_OP_Gemm, 13);
    int64_t ad[2] = {ta ? kk : m, ta ? m : kk}, bd[2] = {tb ? n : kk, tb ? kk : n}, yd[2] = {m, n};
    op_case_input_f(&k, dt, 2, ad, op_rand_f(m * kk, -1.0f, 1.0f));
    op_case_input_f(&k, dt, 2, bd, op_rand_f(kk * n, -1.0f, 1.0f));
    if (c_rank >= 0) op_case_input_f(&k, dt, c_rank, cd, op_rand_f(numel(c_rank, cd), -1.0f, 1.0f));
    op_case_output(&k, dt, 2, yd);
    if (ta) op_case_attr_int(&k, "transA", 1);
    if (tb) op_case_attr_int(&k, "transB", 1);
    if (alpha != 1.0f) op_case_attr_float(&k, "alpha", alpha);
    if (beta != 1.0f) op_case_attr_float(&k, "beta", beta);
    k.workspace_bytes = workspace;
    return op_check(&k);
}

typedef struct conv_geo {
    int ns;               /* spatial dims */
    int64_t n, ci, co, group;
    int64_t in[2], ker[2], stride[2], dil[2], pad0[2], pad1[2];
    const char *auto_pad; /* NULL: explicit pads */
    bool bias;
} conv_geo;

static int conv(const char *name, lp_dtype dt, const conv_geo *g, size_t workspace) {
    op_case k = op_case_make(name, LP_OP_Conv, 11);
    int rank = g->ns + 2;
    int64_t xd[4] = {g->n, g->ci}, wd[4] = {g->co, g->ci / g->group}, yd[4] = {g->n, g->co};
    int64_t pads[4];
    for (int d = 0; d < g->ns; d++) {
        int64_t span = (g->ker[d] - 1) * g->dil[d] + 1, p0 = g->pad0[d], p1 = g->pad1[d];
        if (g->auto_pad) { /* SAME_*: out = ceil(in / stride); VALID: no pads */
            bool same = g->auto_pad[0] == 'S';
            int64_t out = same ? (g->in[d] + g->stride[d] - 1) / g->stride[d]
                               : (g->in[d] - span) / g->stride[d] + 1;
            yd[2 + d] = out;
        } else {
            yd[2 + d] = (g->in[d] + p0 + p1 - span) / g->stride[d] + 1;
        }
        xd[2 + d] = g->in[d];
        wd[2 + d] = g->ker[d];
        pads[d] = p0;
        pads[d + g->ns] = p1;
    }
    op_case_input_f(&k, dt, rank, xd, op_rand_f(numel(rank, xd), -1.0f, 1.0f));
    op_case_input_f(&k, dt, rank, wd, op_rand_f(numel(rank, wd), -1.0f, 1.0f));
    if (g->bias) op_case_input_f(&k, dt, 1, &g->co, op_rand_f(g->co, -1.0f, 1.0f));
    op_case_output(&k, dt, rank, yd);
    if (g->group != 1) op_case_attr_int(&k, "group", g->group);
    op_case_attr_ints(&k, "kernel_shape", g->ns, g->ker);
    op_case_attr_ints(&k, "strides", g->ns, g->stride);
    op_case_attr_ints(&k, "dilations", g->ns, g->dil);
    if (g->auto_pad) op_case_attr_string(&k, "auto_pad", g->auto_pad);
    else op_case_attr_ints(&k, "pads", 2 * g->ns, pads);
    k.workspace_bytes = workspace;
    return op_check(&k);
}

static int matmul_cases(lp_dtype dt, const char *sfx) {
    char nm[96];
    int f = 0;
#define MM(label, ra, da, rb, db, ry, dy)                                                   \
    do {                                                                                    \
        const int64_t da_[] = da, db_[] = db, dy_[] = dy;                                   \
        snprintf(nm, sizeof nm, "MatMul %s %s", label, sfx);                                \
        f += matmul(nm, dt, ra, da_, rb, db_, ry, dy_);                                     \
    } while (0)
#define D(...) {__VA_ARGS__}
    MM("2-D", 2, D(37, 53), 2, D(53, 29), 2, D(37, 29));
    MM("1-D x 2-D", 1, D(53), 2, D(53, 29), 1, D(29));
    MM("2-D x 1-D", 2, D(37, 53), 1, D(53), 1, D(37));
    MM("1-D x 1-D", 1, D(53), 1, D(53), 0, D(1));
    MM("batched x 1-D", 4, D(2, 3, 37, 53), 1, D(53), 3, D(2, 3, 37));
    MM("1-D x batched", 1, D(53), 3, D(3, 53, 29), 2, D(3, 29));
    MM("batch folded", 4, D(4, 5, 37, 53), 2, D(53, 29), 4, D(4, 5, 37, 29));
    MM("batch folded, B [1,K,N]", 3, D(6, 37, 53), 3, D(1, 53, 29), 3, D(6, 37, 29));
    MM("strided batched", 3, D(3, 37, 53), 3, D(3, 53, 29), 3, D(3, 37, 29));
    MM("strided batched rank 4", 4, D(2, 3, 17, 40), 4, D(2, 3, 40, 33), 4, D(2, 3, 17, 33));
    MM("broadcast loop", 4, D(2, 1, 37, 53), 4, D(1, 3, 53, 29), 4, D(2, 3, 37, 29));
    MM("A 2-D, B batched", 2, D(37, 53), 3, D(4, 53, 29), 3, D(4, 37, 29));
    MM("odd sizes", 2, D(1, 7), 2, D(7, 1), 2, D(1, 1));
    /* the seed layer's shape class: 16 tokens against a large weight */
    MM("16 tokens K=4096 N=4096", 3, D(1, 16, 4096), 2, D(4096, 4096), 3, D(1, 16, 4096));
#undef D
#undef MM
    return f;
}

static int gemm_cases(lp_dtype dt, const char *sfx) {
    char nm[96];
    int f = 0;
    const int64_t row[1] = {29}, row2[2] = {1, 29}, full[2] = {37, 29}, col[2] = {37, 1};
    const int64_t one[1] = {1};
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        snprintf(nm, sizeof nm, "Gemm transA=%d transB=%d no C %s", ta, tb, sfx);
        f += gemm(nm, dt, ta, tb, 37, 29, 53, -1, NULL, 1.0f, 1.0f, 0);
        snprintf(nm, sizeof nm, "Gemm transA=%d transB=%d bias [N] %s", ta, tb, sfx);
        f += gemm(nm, dt, ta, tb, 37, 29, 53, 1, row, 1.0f, 1.0f, 0);
        snprintf(nm, sizeof nm, "Gemm transA=%d transB=%d full C alpha beta %s", ta, tb, sfx);
        f += gemm(nm, dt, ta, tb, 37, 29, 53, 2, full, 0.5f, -2.0f, 0);
    }
    snprintf(nm, sizeof nm, "Gemm bias [1,N] %s", sfx);
    f += gemm(nm, dt, false, true, 37, 29, 53, 2, row2, 1.0f, 1.0f, 0);
    snprintf(nm, sizeof nm, "Gemm bias [N] beta 0.5 (broadcast) %s", sfx);
    f += gemm(nm, dt, false, false, 37, 29, 53, 1, row, 1.0f, 0.5f, 0);
    snprintf(nm, sizeof nm, "Gemm C [M,1] %s", sfx);
    f += gemm(nm, dt, true, false, 37, 29, 53, 2, col, 1.5f, 1.0f, 0);
    snprintf(nm, sizeof nm, "Gemm C scalar [1] %s", sfx);
    f += gemm(nm, dt, false, false, 37, 29, 53, 1, one, 1.0f, 3.0f, 0);
    snprintf(nm, sizeof nm, "Gemm C rank 0 %s", sfx);
    f += gemm(nm, dt, false, true, 37, 29, 53, 0, one, 1.0f, 1.0f, 0);
    snprintf(nm, sizeof nm, "Gemm beta 0 ignores C %s", sfx);
    f += gemm(nm, dt, false, false, 37, 29, 53, 2, full, 2.0f, 0.0f, 0);
    snprintf(nm, sizeof nm, "Gemm M=1 C [1,N] beta 2 %s", sfx);
    f += gemm(nm, dt, false, false, 1, 29, 53, 2, row2, 1.0f, 2.0f, 0);
    /* the seed layer's shape class: transB weight, bias, with a workspace */
    const int64_t big[1] = {8192};
    snprintf(nm, sizeof nm, "Gemm 16 tokens K=4096 N=8192 transB bias %s", sfx);
    f += gemm(nm, dt, false, true, 16, 8192, 4096, 1, big, 1.0f, 1.0f, (size_t)32 << 20);
    return f;
}

static int conv_cases(lp_dtype dt, const char *sfx) {
    char nm[96];
    int f = 0;
#define CV(label, ...)                                                                      \
    do {                                                                                    \
        conv_geo g_ = __VA_ARGS__;                                                          \
        snprintf(nm, sizeof nm, "Conv %s %s", label, sfx);                                  \
        f += conv(nm, dt, &g_, (size_t)64 << 20);                                          \
    } while (0)
    CV("3x3 pad 1 bias", {2, 2, 6, 10, 1, {13, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, NULL, true});
    CV("3x3 no pad", {2, 2, 5, 7, 1, {9, 12}, {3, 3}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, NULL, false});
    CV("stride 2 pad 2 5x5", {2, 1, 4, 8, 1, {17, 15}, {5, 5}, {2, 2}, {1, 1}, {2, 2}, {2, 2}, NULL, true});
    CV("groups 2", {2, 2, 6, 4, 2, {10, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, NULL, true});
    CV("depthwise", {2, 2, 8, 8, 8, {12, 12}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, NULL, true});
    CV("depthwise stride 2", {2, 1, 16, 16, 16, {15, 14}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, NULL, false});
    CV("dilation 2", {2, 1, 3, 5, 1, {14, 13}, {3, 3}, {1, 1}, {2, 2}, {2, 2}, {2, 2}, NULL, true});
    CV("1x1", {2, 3, 16, 24, 1, {7, 7}, {1, 1}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, NULL, true});
    CV("SAME_UPPER 3x3", {2, 1, 4, 6, 1, {10, 11}, {3, 3}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, "SAME_UPPER", true});
    CV("VALID stride 2", {2, 1, 4, 6, 1, {11, 11}, {3, 3}, {2, 2}, {1, 1}, {0, 0}, {0, 0}, "VALID", false});
    CV("rectangular kernel, unequal strides", {2, 2, 3, 4, 1, {12, 16}, {2, 5}, {1, 2}, {1, 1}, {1, 2}, {1, 2}, NULL, true});
    CV("1-D", {1, 2, 5, 7, 1, {33}, {3}, {1}, {1}, {1}, {1}, NULL, true});
    CV("1-D stride 2 dilation 2 groups", {1, 3, 6, 9, 3, {40}, {3}, {2}, {2}, {2}, {2}, NULL, true});
    CV("1-D depthwise", {1, 1, 12, 12, 12, {64}, {5}, {1}, {1}, {2}, {2}, NULL, false});
    /* large enough for multi-block paths: Y is 2 x 64 x 56 x 56 */
    CV("56x56 32->64", {2, 2, 32, 64, 1, {56, 56}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, NULL, true});
#undef CV
    /* no workspace at all: an algorithm that needs none */
    conv_geo g0 = {2, 2, 6, 10, 1, {13, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, NULL, true};
    snprintf(nm, sizeof nm, "Conv 3x3 no workspace %s", sfx);
    f += conv(nm, dt, &g0, 0);
    return f;
}

int ops_blas_cases(void) {
    int f = 0;
    f += matmul_cases(LP_DT_FLOAT, "fp32");
    f += matmul_cases(LP_DT_FLOAT16, "fp16");
    f += matmul_cases(LP_DT_BFLOAT16, "bf16");
    f += gemm_cases(LP_DT_FLOAT, "fp32");
    f += gemm_cases(LP_DT_FLOAT16, "fp16");
    f += gemm_cases(LP_DT_BFLOAT16, "bf16");
    f += conv_cases(LP_DT_FLOAT, "fp32");
    f += conv_cases(LP_DT_FLOAT16, "fp16");
    f += conv_cases(LP_DT_BFLOAT16, "bf16");
    return f;
}
