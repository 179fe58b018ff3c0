/* gpu_kernels.h - the CUDA kernel library: one family function per group of
 * ONNX ops, the GPU twin of the reference kernels (lp_ref.h).
 *
 * A family function enqueues the node's work on c->stream and returns; it
 * never synchronises, never allocates device memory and never copies to or
 * from the host, so that a card's step can be captured in a CUDA graph. It
 * sees plain data:
 *
 *   lp_gpu_tensor  a contiguous row-major tensor on the device: data (device
 *                  pointer, NULL for an omitted optional argument), dtype
 *                  (ONNX numbering), rank and dims. An argument the program
 *                  carries as a literal (small integer shape data: Slice's
 *                  starts, Expand's shape, Reshape's shape ...) also has
 *                  `host`, the same bytes readable on the host; arguments in
 *                  the card's memory have host NULL. A kernel that needs an
 *                  input's values on the host (to size or configure the
 *                  launch) reads `host` and fails with LP_ERR_UNSUPPORTED
 *                  when it is NULL ("input 1 is computed at run time").
 *   lp_gpu_call    the node's inputs and outputs (dims and dtype from shape
 *                  inference, data at the memory plan's offsets), attributes
 *                  (lp_attr, as the IR holds them), the opset, the node's
 *                  workspace (device, from the plan's workspace region), the
 *                  stream, the library handles (cuBLASLt, cuDNN) and the
 *                  diagnostics.
 *
 * Numerics: float32, float16 and bfloat16 in memory; arithmetic in fp32
 * (loads convert up, stores round to nearest even); matrix products
 * accumulate in fp32 with TF32 off. Integer ops on int64 / int32 (and the
 * other integer types where the reference has them), bool as uint8 0/1.
 * Outputs never alias inputs (views are copies unless lowering made them
 * the same bytes, in which case data pointers are equal and nothing needs
 * doing).
 *
 * Errors: an attribute value, dtype or shape a kernel does not handle is
 * LP_ERR_UNSUPPORTED (inconsistent shapes LP_ERR_INVALID_MODEL) through
 * lp_gpu_fail, naming op and node; a failed CUDA, cuBLASLt or cuDNN call is
 * LP_ERR_INTERNAL naming the statement (LP_GPU_CHECK and friends). */
#ifndef LP_GPU_KERNELS_H
#define LP_GPU_KERNELS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "lp_ir.h"
#include "lp_ops.h"
}

typedef struct lp_gpu_tensor {
    void *data;
    const void *host;
    lp_dtype dtype;
    int rank;
    int64_t dims[LP_MAX_RANK];
} lp_gpu_tensor;

/* Handles and caches shared by every node of a process (gpu_libs.cu). */
typedef struct lp_gpu_libs lp_gpu_libs;

typedef struct lp_gpu_call {
    int op;                 /* enum lp_op_id */
    const char *node;       /* ONNX node name, for messages */
    int64_t opset;          /* default domain's version */
    int card;
    int n_inputs;
    const lp_gpu_tensor *inputs;
    int n_outputs;
    lp_gpu_tensor *outputs; /* an omitted optional output has data NULL */
    int n_attrs;
    const lp_attr *attrs;
    void *workspace;        /* device; workspace_bytes of it */
    size_t workspace_bytes;
    cudaStream_t stream;
    lp_gpu_libs *libs;
    /* The warm-up pass before a card's step is captured in a CUDA graph: a
     * family may then synchronise, time alternatives (cuBLASLt algorithms,
     * cuDNN convolution algorithms) and cache its choice in libs, keyed by
     * the call's shapes. Outside warm-up (during capture) it must not
     * synchronise and must find its choice cached or choose without timing. */
    bool warmup;
    lp_diag *diag;
} lp_gpu_call;

typedef lp_status (*lp_gpu_fn)(const lp_gpu_call *c);

/* The family function of an op (from ops.def's emit column), or NULL. */
lp_gpu_fn lp_gpu_kernel(int op);

/* ---- helpers (gpu_core.cu) ----------------------------------------------- */

/* "card 0, MatMul 'fc1': message" as an error of status s. */
lp_status lp_gpu_fail(const lp_gpu_call *c, lp_status s, const char *fmt, ...) LP_PRINTF(3, 4);
/* A failed CUDA runtime call, naming the statement. */
lp_status lp_gpu_cuda_fail(const lp_gpu_call *c, cudaError_t e, const char *stmt);

#define LP_GPU_CHECK(c, stmt)                                       \
    do {                                                            \
        cudaError_t lp_e_ = (stmt);                                 \
        if (lp_e_ != cudaSuccess) return lp_gpu_cuda_fail((c), lp_e_, #stmt); \
    } while (0)
/* After a kernel launch: the launch's own error (bad configuration). */
#define LP_GPU_LAUNCHED(c) LP_GPU_CHECK((c), cudaGetLastError())

const lp_attr *lp_gpu_attr(const lp_gpu_call *c, const char *name);
int64_t lp_gpu_attr_int(const lp_gpu_call *c, const char *name, int64_t fallback);
float lp_gpu_attr_float(const lp_gpu_call *c, const char *name, float fallback);
const char *lp_gpu_attr_string(const lp_gpu_call *c, const char *name, const char *fallback);

/* Input i, or NULL when absent or omitted. */
static inline const lp_gpu_tensor *lp_gpu_in(const lp_gpu_call *c, int i) {
    return i < c->n_inputs && c->inputs[i].data ? &c->inputs[i] : NULL;
}
static inline lp_gpu_tensor *lp_gpu_out(const lp_gpu_call *c, int i) {
    return i < c->n_outputs && c->outputs[i].data ? &c->outputs[i] : NULL;
}
/* Element count (1 for rank 0). */
int64_t lp_gpu_numel(const lp_gpu_tensor *t);
/* Bytes an element takes (0: not storable). */
size_t lp_gpu_dtype_size(lp_dtype t);
/* Normalises a possibly negative axis; false if out of range. */
bool lp_gpu_axis(int64_t axis, int rank, int *out);
/* Input i's values as int64 on the host (a literal of an integer dtype),
 * at most max of them; LP_ERR_UNSUPPORTED naming the input when its values
 * are only known at run time. */
lp_status lp_gpu_host_ints(const lp_gpu_call *c, int i, int64_t *vals, int max, int *count);

/* ---- families (one file each) ---------------------------------------------- */

/* gpu_elementwise.cu */
lp_status lp_gpu_unary(const lp_gpu_call *c);    /* Neg Abs Sqrt Reciprocal Exp Log Gelu Erf Tanh
                                                    Sigmoid Relu Sin Cos Not HardSigmoid HardSwish
                                                    Floor Ceil Sign LeakyRelu Softplus Softsign */
lp_status lp_gpu_binary(const lp_gpu_call *c);   /* Add Sub Mul Div Pow And Or Xor Equal Less
                                                    LessOrEqual Greater GreaterOrEqual (broadcast) */
lp_status lp_gpu_variadic(const lp_gpu_call *c); /* Max Min Sum Mean (broadcast) */
lp_status lp_gpu_where(const lp_gpu_call *c);
lp_status lp_gpu_clip(const lp_gpu_call *c);
lp_status lp_gpu_cast(const lp_gpu_call *c);
/* gpu_tensor.cu */
lp_status lp_gpu_view(const lp_gpu_call *c);     /* Identity Reshape Squeeze Unsqueeze Flatten */
lp_status lp_gpu_shape(const lp_gpu_call *c);
lp_status lp_gpu_constant_of_shape(const lp_gpu_call *c);
lp_status lp_gpu_range(const lp_gpu_call *c);
lp_status lp_gpu_expand(const lp_gpu_call *c);
lp_status lp_gpu_concat(const lp_gpu_call *c);
lp_status lp_gpu_split(const lp_gpu_call *c);
lp_status lp_gpu_slice(const lp_gpu_call *c);
lp_status lp_gpu_transpose(const lp_gpu_call *c);
lp_status lp_gpu_gather(const lp_gpu_call *c);
lp_status lp_gpu_gather_elements(const lp_gpu_call *c);
lp_status lp_gpu_gather_nd(const lp_gpu_call *c);
lp_status lp_gpu_pad(const lp_gpu_call *c);
lp_status lp_gpu_cumsum(const lp_gpu_call *c);
/* gpu_nn.cu */
lp_status lp_gpu_pool(const lp_gpu_call *c);        /* MaxPool AveragePool */
lp_status lp_gpu_global_pool(const lp_gpu_call *c); /* GlobalAveragePool GlobalMaxPool */
lp_status lp_gpu_batchnorm(const lp_gpu_call *c);
lp_status lp_gpu_layernorm(const lp_gpu_call *c);
lp_status lp_gpu_softmax(const lp_gpu_call *c);     /* Softmax LogSoftmax */
lp_status lp_gpu_reduce(const lp_gpu_call *c);      /* ReduceMean Sum Max Min Prod SumSquare */
/* gpu_blas.cu */
lp_status lp_gpu_matmul(const lp_gpu_call *c);
lp_status lp_gpu_gemm(const lp_gpu_call *c);
lp_status lp_gpu_conv(const lp_gpu_call *c);

/* ---- library handles (gpu_blas.cu) --------------------------------------- */

/* Creates the cuBLASLt and cuDNN handles on the current device. */
lp_status lp_gpu_libs_open(lp_gpu_libs **out, lp_diag *d);
void lp_gpu_libs_close(lp_gpu_libs *l);

#endif
