/* op_check.cu - the GPU kernels against the CPU reference on the same
 * inputs (op_check.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_kernels.h"
#include "op_check.h"

extern "C" {
#include "lp_ref.h"
}

op_case op_case_make(const char *name, int op, int64_t opset) {
    op_case k;
    memset(&k, 0, sizeof k);
    k.name = name;
    k.op = op;
    k.opset = opset;
    return k;
}

static void set_arg(op_arg *a, lp_dtype dt, int rank, const int64_t *dims) {
    memset(a, 0, sizeof *a);
    a->dtype = dt;
    a->rank = rank;
    for (int r = 0; r < rank && r < 8; r++) a->dims[r] = dims[r];
}

void op_case_input_f(op_case *k, lp_dtype dt, int rank, const int64_t *dims, const float *v) {
    op_arg *a = &k->inputs[k->n_inputs++];
    set_arg(a, dt, rank, dims);
    a->f = v;
}

void op_case_input_i(op_case *k, lp_dtype dt, int rank, const int64_t *dims, const int64_t *v,
                     bool literal) {
    op_arg *a = &k->inputs[k->n_inputs++];
    set_arg(a, dt, rank, dims);
    a->i = v;
    a->literal = literal;
}

void op_case_input_none(op_case *k) {
    op_arg *a = &k->inputs[k->n_inputs++];
    memset(a, 0, sizeof *a);
    a->omitted = true;
}

void op_case_output(op_case *k, lp_dtype dt, int rank, const int64_t *dims) {
    set_arg(&k->outputs[k->n_outputs++], dt, rank, dims);
}

static lp_attr *new_attr(op_case *k, const char *name, lp_attr_type t) {
    lp_attr *a = &k->attrs[k->n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = t;
    return a;
}

void op_case_attr_int(op_case *k, const char *name, int64_t v) { new_attr(k, name, LP_ATTR_INT)->i = v; }
void op_case_attr_float(op_case *k, const char *name, float v) { new_attr(k, name, LP_ATTR_FLOAT)->f = v; }
void op_case_attr_string(op_case *k, const char *name, const char *s) {
    lp_attr *a = new_attr(k, name, LP_ATTR_STRING);
    a->s = s;
    a->s_len = strlen(s);
}
void op_case_attr_ints(op_case *k, const char *name, int n, const int64_t *v) {
    lp_attr *a = new_attr(k, name, LP_ATTR_INTS);
    /* a copy: callers pass temporaries; it lives until exit, as the case may */
    int64_t *copy = (int64_t *)malloc(sizeof *copy * (size_t)(n > 0 ? n : 1));
    if (!copy) abort();
    for (int i = 0; i < n; i++) copy[i] = v[i];
    a->n = n;
    a->ints = copy;
}

/* Random values from one fixed stream: blocks live until exit. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

const float *op_rand_f(int64_t n, float lo, float hi) {
    float *p = (float *)malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) abort();
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)((double)next_u32() / 2147483648.0);
    return p;
}

const int64_t *op_rand_i(int64_t n, int64_t lo, int64_t hi) {
    int64_t *p = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!p) abort();
    for (int64_t i = 0; i < n; i++) p[i] = lo + (int64_t)(next_u32() % (uint32_t)(hi - lo));
    return p;
}

static int64_t numel(const op_arg *a) {
    int64_t n = 1;
    for (int r = 0; r < a->rank; r++) n *= a->dims[r];
    return n;
}

/* The host bytes of an argument at its dtype. */
static void *pack(const op_arg *a) {
    int64_t n = numel(a);
    size_t es = lp_ref_dtype_size(a->dtype);
    void *p = calloc((size_t)(n > 0 ? n : 1), es ? es : 1);
    if (!p) abort();
    lp_ref_tensor t;
    memset(&t, 0, sizeof t);
    t.data = p;
    t.dtype = a->dtype;
    for (int64_t i = 0; i < n; i++) {
        switch (a->dtype) {
        case LP_DT_FLOAT: ((float *)p)[i] = a->f ? a->f[i] : (float)a->i[i]; break;
        case LP_DT_DOUBLE: ((double *)p)[i] = a->f ? a->f[i] : (double)a->i[i]; break;
        case LP_DT_FLOAT16: ((uint16_t *)p)[i] = lp_ref_f32_to_f16(a->f ? a->f[i] : (float)a->i[i]); break;
        case LP_DT_BFLOAT16: ((uint16_t *)p)[i] = lp_ref_f32_to_bf16(a->f ? a->f[i] : (float)a->i[i]); break;
        case LP_DT_INT64: ((int64_t *)p)[i] = a->i ? a->i[i] : (int64_t)a->f[i]; break;
        case LP_DT_INT32: ((int32_t *)p)[i] = (int32_t)(a->i ? a->i[i] : (int64_t)a->f[i]); break;
        case LP_DT_INT8: ((int8_t *)p)[i] = (int8_t)(a->i ? a->i[i] : (int64_t)a->f[i]); break;
        case LP_DT_UINT8: ((uint8_t *)p)[i] = (uint8_t)(a->i ? a->i[i] : (int64_t)a->f[i]); break;
        case LP_DT_BOOL: ((uint8_t *)p)[i] = (a->i ? a->i[i] : (int64_t)a->f[i]) != 0; break;
        default: break;
        }
    }
    return p;
}

static lp_gpu_libs *shared_libs(void) {
    static lp_gpu_libs *libs = NULL;
    static bool tried = false;
    if (!tried) {
        tried = true;
        lp_diag d = lp_diag_make("op_check");
        if (lp_gpu_libs_open(&libs, &d) != LP_OK) libs = NULL;
    }
    return libs;
}

int op_check(const op_case *k) {
    int ni = k->n_inputs, no = k->n_outputs;
    lp_ref_tensor rin[OP_CASE_MAX_ARGS], rout[OP_CASE_MAX_ARGS];
    lp_gpu_tensor gin[OP_CASE_MAX_ARGS], gout[OP_CASE_MAX_ARGS];
    void *host_in[OP_CASE_MAX_ARGS] = {0}, *dev_in[OP_CASE_MAX_ARGS] = {0}, *dev_out[OP_CASE_MAX_ARGS] = {0};
    void *gpu_result[OP_CASE_MAX_ARGS] = {0};
    memset(rin, 0, sizeof rin);
    memset(rout, 0, sizeof rout);
    memset(gin, 0, sizeof gin);
    memset(gout, 0, sizeof gout);
    char why[1200] = "";
    bool ok = true;
    for (int i = 0; i < ni; i++) {
        const op_arg *a = &k->inputs[i];
        if (a->omitted) continue;
        host_in[i] = pack(a);
        size_t bytes = (size_t)numel(a) * lp_ref_dtype_size(a->dtype);
        rin[i].data = host_in[i];
        rin[i].dtype = gin[i].dtype = a->dtype;
        rin[i].rank = gin[i].rank = a->rank;
        for (int r = 0; r < a->rank; r++) rin[i].dims[r] = gin[i].dims[r] = a->dims[r];
        if (cudaMalloc(&dev_in[i], bytes ? bytes : 1) != cudaSuccess ||
            cudaMemcpy(dev_in[i], host_in[i], bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
            snprintf(why, sizeof why, "cannot place input %d on the GPU", i);
            ok = false;
        }
        gin[i].data = dev_in[i];
        if (a->literal) gin[i].host = host_in[i];
    }
    for (int i = 0; ok && i < no; i++) {
        const op_arg *a = &k->outputs[i];
        size_t bytes = (size_t)numel(a) * lp_ref_dtype_size(a->dtype);
        rout[i].data = calloc(bytes ? bytes : 1, 1);
        gpu_result[i] = calloc(bytes ? bytes : 1, 1);
        rout[i].dtype = gout[i].dtype = a->dtype;
        rout[i].rank = gout[i].rank = a->rank;
        for (int r = 0; r < a->rank; r++) rout[i].dims[r] = gout[i].dims[r] = a->dims[r];
        if (cudaMalloc(&dev_out[i], bytes ? bytes : 1) != cudaSuccess ||
            cudaMemset(dev_out[i], 0xff, bytes ? bytes : 1) != cudaSuccess) {
            snprintf(why, sizeof why, "cannot place output %d on the GPU", i);
            ok = false;
        }
        gout[i].data = dev_out[i];
    }
    lp_diag d = lp_diag_make(NULL);
    d.sink = NULL;
    void *ws = NULL;
    if (ok && k->workspace_bytes && cudaMalloc(&ws, k->workspace_bytes) != cudaSuccess) ok = false;
    if (ok) {
        lp_ref_call rc;
        memset(&rc, 0, sizeof rc);
        rc.op = k->op;
        rc.node = k->name;
        rc.opset = k->opset;
        rc.n_inputs = ni;
        rc.inputs = rin;
        rc.n_outputs = no;
        rc.outputs = rout;
        rc.n_attrs = k->n_attrs;
        rc.attrs = k->attrs;
        rc.diag = &d;
        if (lp_ref_run(&rc) != LP_OK) {
            snprintf(why, sizeof why, "reference: %s", d.last_error);
            ok = false;
        }
    }
    if (ok) {
        lp_gpu_fn f = lp_gpu_kernel(k->op);
        lp_gpu_call gc;
        memset(&gc, 0, sizeof gc);
        gc.op = k->op;
        gc.node = k->name;
        gc.opset = k->opset;
        gc.n_inputs = ni;
        gc.inputs = gin;
        gc.n_outputs = no;
        gc.outputs = gout;
        gc.n_attrs = k->n_attrs;
        gc.attrs = k->attrs;
        gc.workspace = ws;
        gc.workspace_bytes = k->workspace_bytes;
        gc.stream = 0;
        gc.libs = shared_libs();
        gc.warmup = true;
        gc.diag = &d;
        if (!f) {
            snprintf(why, sizeof why, "no GPU kernel for op %s", lp_op_name(k->op));
            ok = false;
        } else if (f(&gc) != LP_OK) {
            snprintf(why, sizeof why, "GPU: %s", d.last_error);
            ok = false;
        } else {
            cudaError_t e = cudaDeviceSynchronize();
            if (e != cudaSuccess) {
                snprintf(why, sizeof why, "GPU: %s", cudaGetErrorString(e));
                ok = false;
            }
        }
    }
    double worst = 0;
    for (int i = 0; ok && i < no; i++) {
        const op_arg *a = &k->outputs[i];
        int64_t n = numel(a);
        size_t bytes = (size_t)n * lp_ref_dtype_size(a->dtype);
        if (cudaMemcpy(gpu_result[i], dev_out[i], bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
            snprintf(why, sizeof why, "cannot read output %d", i);
            ok = false;
            break;
        }
        lp_ref_diff df;
        lp_ref_compare(gpu_result[i], a->dtype, rout[i].data, a->dtype, n, &df);
        double err = df.rel_l2;
        int64_t wrong = df.n_mismatch, first = df.first_mismatch, worst_at = df.worst_at;
        double tol = k->tol > 0 ? k->tol : a->dtype == LP_DT_FLOAT || a->dtype == LP_DT_DOUBLE ? 1e-5 : 1e-2;
        if (err > worst) worst = err;
        if (wrong || !(err <= tol)) {
            int64_t at = first >= 0 ? first : worst_at;
            snprintf(why, sizeof why, "output %d: relative L2 error %.3g (tolerance %.1g), %lld elements "
                     "differ in kind (NaN, infinity; integers: in value); at %lld: GPU %g, reference %g", i, err, tol,
                     (long long)wrong, (long long)at, at >= 0 ? lp_ref_elem(gpu_result[i], a->dtype, at) : 0.0,
                     at >= 0 ? lp_ref_elem(rout[i].data, a->dtype, at) : 0.0);
            ok = false;
        }
    }
    if (ok) printf("ok   %-40s err %.2g\n", k->name, worst);
    else printf("FAIL %-40s %s\n", k->name, why);
    for (int i = 0; i < ni; i++) {
        free(host_in[i]);
        if (dev_in[i]) cudaFree(dev_in[i]);
    }
    for (int i = 0; i < no; i++) {
        free(rout[i].data);
        free(gpu_result[i]);
        if (dev_out[i]) cudaFree(dev_out[i]);
    }
    if (ws) cudaFree(ws);
    cudaGetLastError();
    return ok ? 0 : 1;
}
