/* persist_ops.h - the element-wise arithmetic of persistent phases, one
 * definition for the CPU executor (C) and the GPU one (CUDA). */
#ifndef LP_PERSIST_OPS_H
#define LP_PERSIST_OPS_H

#include <math.h>

#include "lp_ops.h"

#ifdef __CUDACC__
#define LP_PERSIST_FN static __host__ __device__ __forceinline__
#else
#define LP_PERSIST_FN static inline
#endif

/* Unary ops a phase runs; the planner leaves others as library calls. */
LP_PERSIST_FN int lp_persist_is_unary(int op) {
    switch (op) {
    case LP_OP_Neg: case LP_OP_Abs: case LP_OP_Sqrt: case LP_OP_Reciprocal: case LP_OP_Exp:
    case LP_OP_Log: case LP_OP_Gelu: case LP_OP_Erf: case LP_OP_Tanh: case LP_OP_Sigmoid:
    case LP_OP_Relu: case LP_OP_Sin: case LP_OP_Cos: case LP_OP_LeakyRelu: case LP_OP_Softplus:
    case LP_OP_Softsign: case LP_OP_HardSigmoid: case LP_OP_HardSwish: case LP_OP_Identity:
        return 1;
    default:
        return 0;
    }
}

LP_PERSIST_FN int lp_persist_is_binary(int op) {
    switch (op) {
    case LP_OP_Add: case LP_OP_Sub: case LP_OP_Mul: case LP_OP_Div: case LP_OP_Pow:
    case LP_OP_Max: case LP_OP_Min:
        return 1;
    default:
        return 0;
    }
}

/* alpha, beta: LeakyRelu alpha; HardSigmoid alpha, beta; Gelu alpha != 0: tanh form. */
LP_PERSIST_FN float lp_persist_unary(int op, float v, float alpha, float beta) {
    switch (op) {
    case LP_OP_Neg: return -v;
    case LP_OP_Abs: return fabsf(v);
    case LP_OP_Sqrt: return sqrtf(v);
    case LP_OP_Reciprocal: return 1.0f / v;
    case LP_OP_Exp: return expf(v);
    case LP_OP_Log: return logf(v);
    case LP_OP_Gelu:
        if (alpha != 0.0f)
            return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        return 0.5f * v * erfcf(-v * 0.70710678118654752f);
    case LP_OP_Erf: return erff(v);
    case LP_OP_Tanh: return tanhf(v);
    case LP_OP_Sigmoid: return v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
    case LP_OP_Relu: return v > 0 ? v : 0.0f;
    case LP_OP_Sin: return sinf(v);
    case LP_OP_Cos: return cosf(v);
    case LP_OP_LeakyRelu: return v >= 0 ? v : alpha * v;
    case LP_OP_Softplus: return v > 20.0f ? v : log1pf(expf(v));
    case LP_OP_Softsign: return v / (1.0f + fabsf(v));
    case LP_OP_HardSigmoid: return fmaxf(0.0f, fminf(1.0f, alpha * v + beta));
    case LP_OP_HardSwish: return v * fmaxf(0.0f, fminf(1.0f, v / 6.0f + 0.5f));
    default: return v; /* Identity */
    }
}

LP_PERSIST_FN float lp_persist_binary(int op, float x, float y) {
    switch (op) {
    case LP_OP_Add: return x + y;
    case LP_OP_Sub: return x - y;
    case LP_OP_Mul: return x * y;
    case LP_OP_Div: return x / y;
    case LP_OP_Pow: return powf(x, y);
    case LP_OP_Max: return x != x ? x : y != y ? y : fmaxf(x, y);
    default: return x != x ? x : y != y ? y : fminf(x, y); /* Min */
    }
}

#endif
