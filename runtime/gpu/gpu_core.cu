/* gpu_core.cu - the kernel library's dispatcher and the helpers its
 * families share (gpu_kernels.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gpu_kernels.h"

lp_status lp_gpu_fail(const lp_gpu_call *c, lp_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *op = lp_op_name(c->op);
    return lp_error(c->diag, s, "card %d, %s '%s': %s", c->card, op ? op : "?",
                    c->node ? c->node : "", msg);
}

lp_status lp_gpu_cuda_fail(const lp_gpu_call *c, cudaError_t e, const char *stmt) {
    return lp_gpu_fail(c, LP_ERR_INTERNAL, "%s failed: %s (%s)", stmt, cudaGetErrorString(e),
                       cudaGetErrorName(e));
}

const lp_attr *lp_gpu_attr(const lp_gpu_call *c, const char *name) {
    return lp_attrs_find(c->attrs, c->n_attrs, name);
}

int64_t lp_gpu_attr_int(const lp_gpu_call *c, const char *name, int64_t fallback) {
    return lp_attrs_int(c->attrs, c->n_attrs, name, fallback);
}

float lp_gpu_attr_float(const lp_gpu_call *c, const char *name, float fallback) {
    return lp_attrs_float(c->attrs, c->n_attrs, name, fallback);
}

const char *lp_gpu_attr_string(const lp_gpu_call *c, const char *name, const char *fallback) {
    return lp_attrs_string(c->attrs, c->n_attrs, name, fallback);
}

int64_t lp_gpu_numel(const lp_gpu_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dims[i];
    return n;
}

size_t lp_gpu_dtype_size(lp_dtype t) {
    switch (t) {
    case LP_DT_BOOL: case LP_DT_UINT8: case LP_DT_INT8: return 1;
    case LP_DT_FLOAT16: case LP_DT_BFLOAT16: case LP_DT_UINT16: case LP_DT_INT16: return 2;
    case LP_DT_FLOAT: case LP_DT_INT32: case LP_DT_UINT32: return 4;
    case LP_DT_DOUBLE: case LP_DT_INT64: case LP_DT_UINT64: return 8;
    default: return 0;
    }
}

bool lp_gpu_axis(int64_t axis, int rank, int *out) {
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= (rank ? rank : 1)) return false;
    *out = (int)axis;
    return true;
}

lp_status lp_gpu_host_ints(const lp_gpu_call *c, int i, int64_t *vals, int max, int *count) {
    const lp_gpu_tensor *t = i < c->n_inputs ? &c->inputs[i] : NULL;
    if (!t || (!t->data && !t->host))
        return lp_gpu_fail(c, LP_ERR_INVALID_MODEL, "input %d is missing", i);
    if (!t->host)
        return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input %d is computed at run time; its values "
                           "must be known when the model is compiled", i);
    int64_t n = lp_gpu_numel(t);
    if (n > max) return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input %d has %lld values, more than %d",
                                    i, (long long)n, max);
    for (int64_t k = 0; k < n; k++) {
        switch (t->dtype) {
        case LP_DT_INT64: vals[k] = ((const int64_t *)t->host)[k]; break;
        case LP_DT_INT32: vals[k] = ((const int32_t *)t->host)[k]; break;
        case LP_DT_UINT8: case LP_DT_BOOL: vals[k] = ((const uint8_t *)t->host)[k]; break;
        default:
            return lp_gpu_fail(c, LP_ERR_UNSUPPORTED, "input %d has dtype %s, not an integer type", i,
                               lp_dtype_label(t->dtype));
        }
    }
    *count = (int)n;
    return LP_OK;
}
