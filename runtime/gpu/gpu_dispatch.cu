/* gpu_dispatch.cu - the CUDA family of an op, from ops.def's emit column. */
#include "gpu_kernels.h"

static const lp_gpu_fn family_kernel[LP_EMIT_COUNT] = {
    NULL, /* LP_EMIT_NONE */
    lp_gpu_unary, /* LP_EMIT_UNARY */
    lp_gpu_binary, /* LP_EMIT_BINARY */
    lp_gpu_variadic, /* LP_EMIT_VARIADIC */
    lp_gpu_where, /* LP_EMIT_WHERE */
    lp_gpu_clip, /* LP_EMIT_CLIP */
    lp_gpu_cast, /* LP_EMIT_CAST */
    lp_gpu_view, /* LP_EMIT_VIEW */
    lp_gpu_shape, /* LP_EMIT_SHAPE */
    lp_gpu_constant_of_shape, /* LP_EMIT_CONSTANT_OF_SHAPE */
    lp_gpu_range, /* LP_EMIT_RANGE */
    lp_gpu_expand, /* LP_EMIT_EXPAND */
    lp_gpu_concat, /* LP_EMIT_CONCAT */
    lp_gpu_split, /* LP_EMIT_SPLIT */
    lp_gpu_slice, /* LP_EMIT_SLICE */
    lp_gpu_transpose, /* LP_EMIT_TRANSPOSE */
    lp_gpu_gather, /* LP_EMIT_GATHER */
    lp_gpu_gather_elements, /* LP_EMIT_GATHER_ELEMENTS */
    lp_gpu_gather_nd, /* LP_EMIT_GATHER_ND */
    lp_gpu_pad, /* LP_EMIT_PAD */
    lp_gpu_cumsum, /* LP_EMIT_CUMSUM */
    lp_gpu_matmul, /* LP_EMIT_MATMUL */
    lp_gpu_gemm, /* LP_EMIT_GEMM */
    lp_gpu_conv, /* LP_EMIT_CONV */
    lp_gpu_pool, /* LP_EMIT_POOL */
    lp_gpu_global_pool, /* LP_EMIT_GLOBAL_POOL */
    lp_gpu_batchnorm, /* LP_EMIT_BATCHNORM */
    lp_gpu_layernorm, /* LP_EMIT_LAYERNORM */
    lp_gpu_softmax, /* LP_EMIT_SOFTMAX */
    lp_gpu_reduce, /* LP_EMIT_REDUCE */
};
static_assert(sizeof family_kernel / sizeof family_kernel[0] == LP_EMIT_COUNT,
              "one CUDA family per emit value");

lp_gpu_fn lp_gpu_kernel(int op) {
    lp_op_emit e = lp_op_emit_of(op);
    return e > LP_EMIT_NONE && e < LP_EMIT_COUNT ? family_kernel[e] : NULL;
}
