/* ref_internal.h - helpers shared by the reference kernels. */
#ifndef LP_REF_INTERNAL_H
#define LP_REF_INTERNAL_H

#include <stdbool.h>
#include <string.h>

#include "lp_ref.h"

/* An error naming the op and node: "Conv 'conv1': message". */
lp_status lp_ref_fail(const lp_ref_call *c, lp_status s, const char *fmt, ...) LP_PRINTF(3, 4);

const lp_attr *lp_ref_attr(const lp_ref_call *c, const char *name);
int64_t lp_ref_attr_int(const lp_ref_call *c, const char *name, int64_t fallback);
float lp_ref_attr_float(const lp_ref_call *c, const char *name, float fallback);
const char *lp_ref_attr_string(const lp_ref_call *c, const char *name, const char *fallback);

/* Input i, or NULL when absent or omitted. */
static inline const lp_ref_tensor *lp_ref_in(const lp_ref_call *c, int i) {
    return i < c->n_inputs && c->inputs[i].data ? &c->inputs[i] : NULL;
}
static inline lp_ref_tensor *lp_ref_out(const lp_ref_call *c, int i) {
    return i < c->n_outputs && c->outputs[i].data ? &c->outputs[i] : NULL;
}

/* Element access at any storable dtype: as float (fp32 compute) or int64. */
bool lp_ref_is_float(lp_dtype t);
float lp_ref_loadf(const lp_ref_tensor *t, int64_t i);
void lp_ref_storef(lp_ref_tensor *t, int64_t i, float v);
int64_t lp_ref_loadi(const lp_ref_tensor *t, int64_t i);
void lp_ref_storei(lp_ref_tensor *t, int64_t i, int64_t v);
/* Copies element i of src into element j of dst, same dtype, as bytes. */
static inline void lp_ref_copy_elem(lp_ref_tensor *dst, int64_t j, const lp_ref_tensor *src,
                                    int64_t i, size_t es) {
    memcpy((char *)dst->data + (size_t)j * es, (const char *)src->data + (size_t)i * es, es);
}

/* Checks that input i is there and its dtype can be stored; then that the
 * required inputs / outputs exist. */
lp_status lp_ref_need(const lp_ref_call *c, int n_in, int n_out);

/* Strides of t broadcast to the output shape `dims` of rank `rank`
 * (numpy rules: right-aligned, size-1 dims get stride 0). False if the
 * shapes do not broadcast. */
bool lp_ref_bcast_strides(const lp_ref_tensor *t, int rank, const int64_t *dims, int64_t *strides);
/* Row-major strides of t (element units). */
void lp_ref_strides(const lp_ref_tensor *t, int64_t *strides);

/* Normalises a possibly negative axis against rank; false if out of range. */
bool lp_ref_axis(int64_t axis, int rank, int *out);

/* Kernel families, one function per op family, switching on c->op. */
lp_status lp_ref_unary(const lp_ref_call *c);
lp_status lp_ref_binary(const lp_ref_call *c);
lp_status lp_ref_variadic(const lp_ref_call *c);
lp_status lp_ref_where(const lp_ref_call *c);
lp_status lp_ref_clip(const lp_ref_call *c);
lp_status lp_ref_cast(const lp_ref_call *c);
lp_status lp_ref_view(const lp_ref_call *c);
lp_status lp_ref_shape(const lp_ref_call *c);
lp_status lp_ref_constant_of_shape(const lp_ref_call *c);
lp_status lp_ref_range(const lp_ref_call *c);
lp_status lp_ref_expand(const lp_ref_call *c);
lp_status lp_ref_concat(const lp_ref_call *c);
lp_status lp_ref_split(const lp_ref_call *c);
lp_status lp_ref_slice(const lp_ref_call *c);
lp_status lp_ref_transpose(const lp_ref_call *c);
lp_status lp_ref_gather(const lp_ref_call *c);
lp_status lp_ref_gather_elements(const lp_ref_call *c);
lp_status lp_ref_gather_nd(const lp_ref_call *c);
lp_status lp_ref_pad(const lp_ref_call *c);
lp_status lp_ref_cumsum(const lp_ref_call *c);
lp_status lp_ref_matmul(const lp_ref_call *c);
lp_status lp_ref_gemm(const lp_ref_call *c);
lp_status lp_ref_conv(const lp_ref_call *c);
lp_status lp_ref_pool(const lp_ref_call *c);
lp_status lp_ref_global_pool(const lp_ref_call *c);
lp_status lp_ref_batchnorm(const lp_ref_call *c);
lp_status lp_ref_layernorm(const lp_ref_call *c);
lp_status lp_ref_softmax(const lp_ref_call *c);
lp_status lp_ref_reduce(const lp_ref_call *c);

#endif
