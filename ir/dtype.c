/* ONNX element types: names and packed storage sizes. */
#include "lp_ir.h"

#include <string.h>

static const struct {
    const char *name;
    int bits;
    bool is_float;
} dtype_table[LP_DT_COUNT] = {
    [LP_DT_UNDEFINED] = {"undefined", 0, false},
    [LP_DT_FLOAT] = {"float", 32, true},
    [LP_DT_UINT8] = {"uint8", 8, false},
    [LP_DT_INT8] = {"int8", 8, false},
    [LP_DT_UINT16] = {"uint16", 16, false},
    [LP_DT_INT16] = {"int16", 16, false},
    [LP_DT_INT32] = {"int32", 32, false},
    [LP_DT_INT64] = {"int64", 64, false},
    [LP_DT_STRING] = {"string", 0, false},
    [LP_DT_BOOL] = {"bool", 8, false},
    [LP_DT_FLOAT16] = {"float16", 16, true},
    [LP_DT_DOUBLE] = {"double", 64, true},
    [LP_DT_UINT32] = {"uint32", 32, false},
    [LP_DT_UINT64] = {"uint64", 64, false},
    [LP_DT_COMPLEX64] = {"complex64", 64, false},
    [LP_DT_COMPLEX128] = {"complex128", 128, false},
    [LP_DT_BFLOAT16] = {"bfloat16", 16, true},
    [LP_DT_FLOAT8E4M3FN] = {"float8e4m3fn", 8, true},
    [LP_DT_FLOAT8E4M3FNUZ] = {"float8e4m3fnuz", 8, true},
    [LP_DT_FLOAT8E5M2] = {"float8e5m2", 8, true},
    [LP_DT_FLOAT8E5M2FNUZ] = {"float8e5m2fnuz", 8, true},
    [LP_DT_UINT4] = {"uint4", 4, false},
    [LP_DT_INT4] = {"int4", 4, false},
    [LP_DT_FLOAT4E2M1] = {"float4e2m1", 4, true},
    [LP_DT_FLOAT8E8M0] = {"float8e8m0", 8, true},
    [LP_DT_UINT2] = {"uint2", 2, false},
    [LP_DT_INT2] = {"int2", 2, false},
    [LP_DT_FLOAT6E2M3] = {"float6e2m3", 6, true},
    [LP_DT_FLOAT6E3M2] = {"float6e3m2", 6, true},
};

const char *lp_dtype_name(lp_dtype t) {
    return (unsigned)t < LP_DT_COUNT ? dtype_table[t].name : NULL;
}

const char *lp_dtype_label(lp_dtype t) {
    const char *s = lp_dtype_name(t);
    return s ? s : "?";
}

bool lp_dtype_from_name(const char *name, lp_dtype *out) {
    for (int t = 0; t < LP_DT_COUNT; t++) {
        if (strcmp(dtype_table[t].name, name) == 0) {
            *out = (lp_dtype)t;
            return true;
        }
    }
    return false;
}

int lp_dtype_bits(lp_dtype t) { return (unsigned)t < LP_DT_COUNT ? dtype_table[t].bits : 0; }

bool lp_dtype_is_float(lp_dtype t) {
    return (unsigned)t < LP_DT_COUNT && dtype_table[t].is_float;
}

/* Every 8 elements fill exactly `bits` bytes; only the last partial group
 * rounds up. Splitting the count this way keeps count * bits, which can
 * overflow even when the byte count fits, out of the arithmetic. */
bool lp_dtype_storage_bytes(lp_dtype t, uint64_t count, uint64_t *bytes) {
    uint64_t bits = (uint64_t)lp_dtype_bits(t);
    if (bits == 0 || count / 8 > UINT64_MAX / bits) return false;
    uint64_t whole = count / 8 * bits, tail = (count % 8 * bits + 7) / 8;
    if (whole > UINT64_MAX - tail) return false;
    *bytes = whole + tail;
    return true;
}

bool lp_shape_numel(const lp_shape *s, uint64_t *numel) {
    if (s->rank < 0) return false;
    uint64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        int64_t d = s->dims[i].size;
        if (d < 0) return false;
        if (d != 0 && n > (uint64_t)INT64_MAX / (uint64_t)d) return false;
        n *= (uint64_t)d;
    }
    *numel = n;
    return true;
}

bool lp_value_bytes(const lp_value *v, uint64_t *bytes) {
    uint64_t n;
    return lp_shape_numel(&v->shape, &n) && lp_dtype_storage_bytes(v->dtype, n, bytes);
}
