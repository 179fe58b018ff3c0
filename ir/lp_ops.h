/* lp_ops.h - the op table (ops.def) as every stage sees it: the op enum,
 * the lookup that sets lp_node.op, and the table's stage columns that are
 * plain data. The columns holding analysis's functions (infer, fold) are
 * expanded by analysis itself (shape_infer.c). */
#ifndef LP_OPS_H
#define LP_OPS_H

#include "lp_ir.h"

/* Op ids (lp_node.op): the rows of ops.def, numbered from 1. */
enum lp_op_id {
    LP_OP_UNKNOWN = -1, /* an op with no row, or in another domain */
    LP_OP_UNSET = 0,    /* not looked up yet */
#define LP_OP(name, infer, fold, flops, workspace, shard, reads, emit) LP_OP_##name,
#include "ops.def"
#undef LP_OP
    LP_OP_END
};
#define LP_OP_COUNT (LP_OP_END - 1)

/* How a node's FLOPs are counted (analysis/footprint.c says the formulas). */
typedef enum lp_op_flops {
    LP_FLOPS_OUTPUT, /* numel(Y): element-wise */
    LP_FLOPS_MATMUL,
    LP_FLOPS_GEMM,
    LP_FLOPS_CONV,
    LP_FLOPS_CONV_T,
    LP_FLOPS_NORM,
    LP_FLOPS_POOL,
    LP_FLOPS_INPUT, /* numel(X): reductions */
    LP_FLOPS_ZERO,  /* data movement */
} lp_op_flops;

/* How a node's weight (input 1) splits along the output columns. */
typedef enum lp_op_shard {
    LP_SHARD_NONE,
    LP_SHARD_MATMUL, /* B [K, N]: columns */
    LP_SHARD_GEMM,   /* B [K, N] or [N, K] (transB); bias C sliced with it */
    LP_SHARD_CONV,   /* W [C_out, ...], group 1; bias B sliced with it */
} lp_op_shard;

/* How many bytes of its data input a node reads. */
typedef enum lp_op_reads {
    LP_READS_ALL,  /* all of it */
    LP_READS_ROWS, /* the rows it picks: as many bytes as it writes */
} lp_op_reads;

/* The kernel family that runs an op: one reference (lp_ref.h) and one CUDA
 * (runtime/gpu/gpu_kernels.h) function each. */
typedef enum lp_op_emit {
    LP_EMIT_NONE, /* no program can run the op yet */
    LP_EMIT_UNARY,
    LP_EMIT_BINARY,
    LP_EMIT_VARIADIC,
    LP_EMIT_WHERE,
    LP_EMIT_CLIP,
    LP_EMIT_CAST,
    LP_EMIT_VIEW,
    LP_EMIT_SHAPE,
    LP_EMIT_CONSTANT_OF_SHAPE,
    LP_EMIT_RANGE,
    LP_EMIT_EXPAND,
    LP_EMIT_CONCAT,
    LP_EMIT_SPLIT,
    LP_EMIT_SLICE,
    LP_EMIT_TRANSPOSE,
    LP_EMIT_GATHER,
    LP_EMIT_GATHER_ELEMENTS,
    LP_EMIT_GATHER_ND,
    LP_EMIT_PAD,
    LP_EMIT_CUMSUM,
    LP_EMIT_MATMUL,
    LP_EMIT_GEMM,
    LP_EMIT_CONV,
    LP_EMIT_POOL,
    LP_EMIT_GLOBAL_POOL,
    LP_EMIT_BATCHNORM,
    LP_EMIT_LAYERNORM,
    LP_EMIT_SOFTMAX,
    LP_EMIT_REDUCE,
    LP_EMIT_COUNT
} lp_op_emit;

#define LP_WS_NONE NULL

/* The id of an op type in the default domain ("" or "ai.onnx"), or
 * LP_OP_UNKNOWN: one hash probe, no scan over the table. */
int lp_op_lookup(const char *domain, const char *op_type);
/* The node's id: n->op once it was set (lp_analysis_assign_ops), else looked up. */
static inline int lp_node_op(const lp_node *n) {
    return n->op ? n->op : lp_op_lookup(n->domain, n->op_type);
}
/* Name of an op id (1..LP_OP_COUNT), else NULL. */
const char *lp_op_name(int id);

/* The stage columns of a row; an id with no row (LP_OP_UNKNOWN, LP_OP_UNSET)
 * gets LP_FLOPS_OUTPUT, no workspace expression, LP_SHARD_NONE,
 * LP_READS_ALL, LP_EMIT_NONE. */
lp_op_flops lp_op_flops_of(int id);
const char *lp_op_workspace_of(int id);
lp_op_shard lp_op_shard_of(int id);
lp_op_reads lp_op_reads_of(int id);
lp_op_emit lp_op_emit_of(int id);

#endif
