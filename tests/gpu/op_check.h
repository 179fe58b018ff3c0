/* op_check.h - GPU kernels checked against the CPU reference kernels on the
 * same inputs (tests/gpu/, run by `make test-gpu` on a GPU machine).
 *
 *     float x[6] = {...};
 *     op_case k = op_case_make("gelu fp16", LP_OP_Gelu, 20);
 *     op_case_input(&k, LP_DT_FLOAT16, 2, (int64_t[]){2, 3}, x);   // floats, converted
 *     op_case_output(&k, LP_DT_FLOAT16, 2, (int64_t[]){2, 3});
 *     op_case_attr_int(&k, "approximate"...);                       // lp_attr helpers
 *     failures += op_check(&k);   // 0 when the GPU matches, else 1 (printed)
 *
 * Inputs are given as float or int64 host values and stored at the tensor's
 * dtype; `literal` inputs are also passed as host literals (lp_gpu_tensor
 * .host), as the program passes shape data. Outputs are compared: floats by
 * relative L2 error (<= tol; default 1e-5 for fp32, 1e-2 for fp16/bf16),
 * integers and bools exactly. */
#ifndef OP_CHECK_H
#define OP_CHECK_H

#include <stdint.h>

extern "C" {
#include "lp_ir.h"
#include "lp_ops.h"
}

#define OP_CASE_MAX_ARGS 8

typedef struct op_arg {
    lp_dtype dtype;
    int rank;
    int64_t dims[8];
    const float *f;        /* float values (float dtypes), or */
    const int64_t *i;      /* integer values (integer dtypes, bool) */
    bool literal;
    bool omitted;
} op_arg;

typedef struct op_case {
    const char *name;
    int op;
    int64_t opset;
    int n_inputs, n_outputs, n_attrs;
    op_arg inputs[OP_CASE_MAX_ARGS];
    op_arg outputs[OP_CASE_MAX_ARGS];
    lp_attr attrs[OP_CASE_MAX_ARGS];
    double tol;            /* 0: the dtype's default */
    size_t workspace_bytes;
} op_case;

op_case op_case_make(const char *name, int op, int64_t opset);
void op_case_input_f(op_case *k, lp_dtype dt, int rank, const int64_t *dims, const float *v);
void op_case_input_i(op_case *k, lp_dtype dt, int rank, const int64_t *dims, const int64_t *v,
                     bool literal);
void op_case_input_none(op_case *k);
void op_case_output(op_case *k, lp_dtype dt, int rank, const int64_t *dims);
void op_case_attr_int(op_case *k, const char *name, int64_t v);
void op_case_attr_float(op_case *k, const char *name, float v);
void op_case_attr_string(op_case *k, const char *name, const char *s);
void op_case_attr_ints(op_case *k, const char *name, int n, const int64_t *v);

/* Random values in [lo, hi): n floats / ints from a fixed seed (static
 * storage the harness owns until exit). */
const float *op_rand_f(int64_t n, float lo, float hi);
const int64_t *op_rand_i(int64_t n, int64_t lo, int64_t hi);

/* Runs the case on the CPU reference and on the GPU; prints one line
 * ("ok   name  err=..." or "FAIL name: why"); 0 on a match. */
int op_check(const op_case *k);

/* Each family's cases (tests/gpu/ops_<family>.cu); returns failures. */
int ops_elementwise_cases(void);
int ops_tensor_cases(void);
int ops_nn_cases(void);
int ops_blas_cases(void);

#endif
