/* lp_persist.h - a card's step as a persistent program: phases that one
 * kernel (or a very few) runs back to back, synchronising only where a
 * phase needs what an earlier one wrote.
 *
 * The program is planned from the card's step as its launch program runs it
 * (the sequence of lp_card_node computes and copies lp_card_step makes,
 * recorded once at load): each compute or copy becomes a phase, then
 *   - a Gemm (or MatMul by a 2-D weight) absorbs the activation and the
 *     residual Add that follow it as its epilogue,
 *   - a copy that only reshapes or transposes is absorbed into the phase
 *     that reads it, which then reads the source bytes through strides,
 *   - a LayerNorm read only by Gemms becomes their prologue: each Gemm
 *     normalises the rows of A it reads,
 *   - a batched matmul, its scalar scale, mask Add, Softmax and the batched
 *     matmul by the values become one attention phase,
 *   - a phase that reads or writes bytes an earlier phase since the last
 *     barrier writes (or reads, for a write) opens with a barrier.
 * A node no phase kind covers, or one with a tensor of 2^30 elements or
 * more (the kernels index in 32 bits), stays a library call (LP_PERSIST_NODE), which
 * ends the persistent kernel before it and starts a new one after it.
 *
 * Both devices run the same program: persist_ref.c on the CPU (the check
 * against ONNX Runtime that CI runs), gpu/gpu_persist.cu on the GPU.
 *
 * Numerics: loads convert float16 / bfloat16 / float32 up to fp32, arithmetic
 * in fp32, stores round to nearest even; sums accumulate in fp32 on the GPU
 * and in double on the CPU, as the library kernels and the reference do.
 * Outputs, and a Gemm's a, w, bias and res, are dense row-major; the other
 * inputs are strided views. */
#ifndef LP_PERSIST_H
#define LP_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lp_card.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "lp_ir.h"

#define LP_PERSIST_RANK 6

/* A strided view of bytes of the card's allocation: element (i0, .., ir-1)
 * is at base + offset + esize(dtype) * sum(i_k * strides[k]). A stride of 0
 * broadcasts. */
typedef struct lp_persist_view {
    uint64_t offset;
    int dtype;     /* ONNX TensorProto element type: 1 float, 10 float16, 16 bfloat16 */
    int rank;
    int64_t dims[LP_PERSIST_RANK];
    int64_t strides[LP_PERSIST_RANK]; /* in elements */
    int weight;    /* 1: bytes of the weights region (read-only, never written in a step) */
} lp_persist_view;

typedef enum lp_persist_kind {
    /* out = cast(a), a broadcast or strided view of out's dims; bits when
     * a and out have one dtype. */
    LP_PERSIST_COPY = 1,
    /* out = op(a) (unary) or op(a, b) (binary), a and b views of out's dims. */
    LP_PERSIST_ELEMENTWISE = 2,
    /* out[M, N] = epilogue(a[M, K] . w[K, N] + bias[N]); a and out
     * contiguous; w a weight [K, N] row-major (trans_w: [N, K]). */
    LP_PERSIST_GEMM = 3,
    /* out[batch.., M, N] = alpha * a[batch.., M, K] . b[batch.., K, N], a
     * and b strided views (their batch dims may broadcast). */
    LP_PERSIST_BATCHED_MATMUL = 4,
    /* out = (a - mean) / sqrt(var + eps) * scale + bias over the last dim. */
    LP_PERSIST_LAYERNORM = 5,
    /* out = softmax(a) over the last dim (op: LP_OP_LogSoftmax for its log). */
    LP_PERSIST_SOFTMAX = 6,
    /* the library kernel of a node (node: index into the program's nodes). */
    LP_PERSIST_NODE = 7,
    /* out[batch.., M, D] = softmax(round(alpha * a . b) (+ mask)) . v, a
     * [batch.., M, K] the queries, b [batch.., K, N] the keys transposed, v
     * (the phase's `scale` view) [batch.., N, D] the values, mask (`bias`,
     * has_bias) [batch.., M, N]; all strided views that may broadcast, all of
 * out's dtype.
     * Scores, masked scores and probabilities are rounded to out's dtype,
     * as the phases it replaces stored them. N <= LP_PERSIST_ATTENTION_N. */
    LP_PERSIST_ATTENTION = 8,
} lp_persist_kind;

/* An attention phase's row of N scores lives in one warp's registers. */
#define LP_PERSIST_ATTENTION_N 256

/* What the GEMM epilogue does after the bias, in this order. */
typedef struct lp_persist_epilogue {
    int act;        /* 0, or a unary op id (ir/lp_ops.h: LP_OP_Gelu, LP_OP_Relu, ...) */
    int act_tanh;   /* Gelu: approximate = "tanh" */
    float act_alpha, act_beta; /* LeakyRelu alpha; HardSigmoid alpha, beta */
    int residual;   /* 1: + res[M, N] (contiguous, same dims as out) */
    lp_persist_view res;
} lp_persist_epilogue;

typedef struct lp_persist_phase {
    int kind;        /* lp_persist_kind */
    int op;          /* ELEMENTWISE: the op id (LP_OP_Add, LP_OP_Gelu, ...); SOFTMAX: LP_OP_Softmax
                        or LP_OP_LogSoftmax */
    int sync;        /* 1: every earlier phase's writes are complete and visible first */
    int node;        /* the recorded node it comes from (the first one when fused), for names */
    lp_persist_view out, a, b;
    /* ELEMENTWISE: op parameters (LeakyRelu alpha; HardSigmoid alpha, beta;
     * Gelu: alpha = 1 for approximate "tanh"). LAYERNORM: alpha = epsilon.
     * BATCHED_MATMUL: alpha scales the product. */
    float alpha, beta;
    /* GEMM */
    int64_t m, n, k;
    int trans_w;
    int has_bias;
    lp_persist_view bias;  /* [N] */
    lp_persist_epilogue epi;
    /* LAYERNORM: scale and bias over the last dim (has_bias: bias present) */
    lp_persist_view scale;
    /* GEMM with ln 1: each row of a is first layer-normalised over K (scale,
     * ln_bias [K], ln_eps) and rounded to a's dtype, as a LAYERNORM phase
     * storing it would have; ln_bias dtype 0: none */
    int ln;
    float ln_eps;
    lp_persist_view ln_bias;
    /* 0: out lies in the card's allocation (base + out.offset); else the
     * address of out's first byte in another card's receive buffer: a cut
     * written there directly (lp_persist_write_cut) */
    uint64_t out_at;
} lp_persist_phase;

/* The first byte of phase ph's output. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline unsigned char *lp_persist_out(const lp_persist_phase *ph, unsigned char *base) {
    return ph->out_at ? (unsigned char *)(uintptr_t)ph->out_at : base + ph->out.offset;
}

/* One entry of the recorded step: a compute of node or a copy. */
typedef struct lp_persist_event {
    const lp_card_node *node; /* NULL: a copy */
    uint64_t dst, src, bytes;
    const char *value;
} lp_persist_event;

typedef struct lp_persist_program {
    int n_phases;
    lp_persist_phase *phases;
    int n_nodes;              /* the recorded computes, in order */
    const lp_card_node **nodes;
    int n_kernels;            /* persistent kernels a step launches (runs between NODE phases) */
    int n_syncs;              /* barriers inside them */
    int n_fused;              /* phases absorbed into others */
    /* why a recorded node is a library call, for the dump: the first such node */
    char fallback[160];
} lp_persist_program;

/* A byte range [lo, hi) of the allocation. */
typedef struct lp_persist_range {
    uint64_t lo, hi;
} lp_persist_range;

/* Plans the program of a step recorded as events[n]. weights: the bytes
 * of the weights region [0, weights_bytes) of the allocation (NULL: not
 * known; constant scalars are then not folded); live_out[n_live]: the bytes
 * read after the step (the send buffers), which every phase that writes
 * them keeps writing. Returns LP_OK, or LP_ERR_INTERNAL on no memory. */
lp_status lp_persist_plan(const lp_persist_event *events, int n, const void *weights,
                          uint64_t weights_bytes, const lp_persist_range *live_out, int n_live,
                          lp_persist_program **out, lp_diag *d);
void lp_persist_free(lp_persist_program *p);
/* One line a phase: kind, op, sync, node name, views. */
void lp_persist_dump(const lp_persist_program *p, FILE *out);

/* Has the phases that write bytes [lo, hi) of the allocation (a send
 * buffer) write them at address `at` instead (the receiving card's buffer,
 * as this process addresses it): the copy that would move them after the
 * step is then not needed. Only when those phases' outputs lie inside
 * [lo, hi), cover it, are not library calls, and no phase reads the bytes;
 * else false, with the reason in why. */
bool lp_persist_write_cut(lp_persist_program *p, uint64_t lo, uint64_t hi, uint64_t at, char *why,
                          size_t why_len);

/* Records a card's step: runs step with an env whose callbacks record; a
 * step that makes an all-gather is LP_ERR_UNSUPPORTED. *events is malloc'd. */
lp_status lp_persist_record(lp_card_step_fn step, int card, lp_persist_event **events, int *n,
                            lp_diag *d);

/* The CPU executor (persist_ref.c): runs the program on the allocation at
 * base; NODE phases through env->compute (the reference kernels). */
lp_status lp_persist_run_cpu(const lp_persist_program *p, unsigned char *base, lp_card_env *env,
                             lp_diag *d);

/* Bytes one element of an ONNX dtype takes in a view, 0 for one no phase
 * handles. Arithmetic phases take float (1), float16 (10) and bfloat16 (16);
 * a COPY whose a and out have one dtype moves bits and takes any of these. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int lp_persist_esize(int dtype) {
    switch (dtype) {
    case 2: case 3: case 9: return 1;                /* uint8, int8, bool */
    case 4: case 5: case 10: case 16: return 2;      /* uint16, int16, float16, bfloat16 */
    case 1: case 6: case 12: return 4;               /* float, int32, uint32 */
    case 7: case 11: case 13: return 8;              /* int64, double, uint64 */
    default: return 0;
    }
}

/* Elements from a view's first to one past its last (0 when it has none):
 * its bytes are [offset, offset + extent * esize). */
static inline int64_t lp_persist_view_extent(const lp_persist_view *v) {
    int64_t hi = 0;
    for (int k = 0; k < v->rank; k++) {
        if (v->dims[k] <= 0) return 0;
        hi += (v->dims[k] - 1) * v->strides[k];
    }
    return hi + 1;
}

#ifdef __cplusplus
}
#endif

#endif
