/* lp_ref.h - the CPU reference kernels: one plain C function per ONNX op.
 *
 * The reference path runs a card's program on the CPU with the same buffers
 * and offsets as the GPU one; each step calls the op's reference kernel. A
 * kernel sees only plain data:
 *
 *   lp_ref_tensor  a contiguous row-major tensor: data pointer, dtype (ONNX
 *                  numbering), rank and dims. Rank 0 is a scalar (1 element).
 *   lp_ref_call    the node's inputs (an omitted optional input has data
 *                  NULL), its outputs (dims and dtype filled in by the caller
 *                  from shape inference / the memory plan, data pointing at
 *                  numel * dtype size bytes to write), its attributes as the IR
 *                  holds them (lp_attr), the opset of the default domain, and
 *                  a scratch workspace.
 *
 * Kernels compute in fp32 (float16 and bfloat16 are converted at load and
 * store, round to nearest even; double is computed in fp32 too; dot
 * products and reductions accumulate in double), integer ops
 * on int64 / int32 / the other integer types, bool as uint8 (0 or 1). A
 * kernel never allocates and never aborts: an attribute value, dtype or
 * shape it does not handle returns LP_ERR_UNSUPPORTED (or LP_ERR_INVALID_MODEL
 * for inconsistent shapes) through c->diag, with a message naming the op and
 * the node. Outputs must not alias inputs.
 *
 *     float x[6] = {...}, w[6] = {...}, y[4];
 *     lp_ref_tensor in[2] = {
 *         {.data = x, .dtype = LP_DT_FLOAT, .rank = 2, .dims = {2, 3}},
 *         {.data = w, .dtype = LP_DT_FLOAT, .rank = 2, .dims = {2, 3}},
 *     };
 *     lp_ref_tensor out = {.data = y, .dtype = LP_DT_FLOAT, .rank = 2, .dims = {2, 2}};
 *     lp_attr tb = {.name = "transB", .type = LP_ATTR_INT, .i = 1};
 *     lp_diag diag = lp_diag_make("card_0");
 *     lp_ref_call call = {.op = LP_OP_Gemm, .node = "fc1", .opset = 17,
 *                         .n_inputs = 2, .inputs = in, .n_outputs = 1, .outputs = &out,
 *                         .n_attrs = 1, .attrs = &tb, .diag = &diag};
 *     lp_ref_fn f = lp_ref_kernel(call.op, &diag);   // NULL: no kernel, diag says which op
 *     if (!f || f(&call) != LP_OK) return 1;         // diag.last_error names op and node
 *
 * Views (Reshape, Squeeze, Unsqueeze, Flatten, Identity) copy their input's
 * bytes into the output in the reference; the output's dims say the shape.
 * Ops whose output shape depends on input values (Expand, Reshape, Range,
 * ConstantOfShape, Slice...) take it from the output tensor given: the
 * caller knows it from shape inference, and the kernel checks it where the
 * inputs determine it.
 */
#ifndef LP_REF_H
#define LP_REF_H

#include <stddef.h>
#include <stdint.h>

#include "lp_ir.h"
#include "lp_ops.h"

typedef struct lp_ref_tensor {
    void *data;
    lp_dtype dtype;
    int rank;
    int64_t dims[LP_MAX_RANK];
} lp_ref_tensor;

typedef struct lp_ref_call {
    int op;                /* enum lp_op_id of ir/lp_ops.h */
    const char *node;      /* node name for messages; may be NULL or "" */
    int64_t opset;         /* version of the default domain (attribute defaults) */
    int n_inputs;
    const lp_ref_tensor *inputs;
    int n_outputs;
    lp_ref_tensor *outputs; /* an omitted optional output has data NULL */
    int n_attrs;
    const lp_attr *attrs;
    void *workspace;       /* scratch; no kernel in this library needs it yet */
    size_t workspace_bytes;
    lp_diag *diag;
} lp_ref_call;

typedef lp_status (*lp_ref_fn)(const lp_ref_call *c);

/* The reference kernel for an op id, or NULL (an error in d naming the op,
 * when d is not NULL) for an op the library has no kernel for. */
lp_ref_fn lp_ref_kernel(int op, lp_diag *d);
/* Looks up and runs c->op's kernel. */
lp_status lp_ref_run(const lp_ref_call *c);

/* Element count (1 for rank 0); -1 on a negative dim or overflow. */
int64_t lp_ref_numel(const lp_ref_tensor *t);
/* Bytes one element of dtype takes, 0 for a dtype the kernels cannot store. */
size_t lp_ref_dtype_size(lp_dtype t);

/* Element i of a tensor of dtype t as a double (0 for a dtype the kernels
 * cannot store). */
double lp_ref_elem(const void *data, lp_dtype t, int64_t i);

/* How far `got` is from `want`, n elements of their own dtypes: the
 * relative L2 error sqrt(sum (g - w)^2 / sum w^2) (absolute when want is all
 * zero) over the elements both hold as finite numbers; the elements that
 * differ in kind (NaN against a number, unequal infinities, and for two
 * integer dtypes any unequal pair); where the first such element and the
 * largest difference are. */
typedef struct lp_ref_diff {
    double rel_l2, worst_abs;
    int64_t n_mismatch, first_mismatch, worst_at; /* -1: none */
} lp_ref_diff;
void lp_ref_compare(const void *got, lp_dtype got_t, const void *want, lp_dtype want_t, int64_t n,
                    lp_ref_diff *out);

/* IEEE half and bfloat16 <-> float, round to nearest even, NaN kept quiet. */
float lp_ref_f16_to_f32(uint16_t h);
uint16_t lp_ref_f32_to_f16(float f);
float lp_ref_bf16_to_f32(uint16_t h);
uint16_t lp_ref_f32_to_bf16(float f);

#endif
