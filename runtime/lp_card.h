/* lp_card.h - what a generated card program (card_K.cu) includes.
 *
 * A card program is host code that compiles both as CUDA (nvcc) and as plain
 * C++ (the CPU reference path): static tables that describe each step's
 * arguments (offsets inside the card's one allocation, dtypes, dims),
 * attributes and literal shape data, and one function
 *
 *     extern "C" int lp_card_step(lp_card_env *env, unsigned char *base);
 *
 * that runs the card's steps in plan order through the runtime's callbacks:
 * env->compute for a node (the CPU runtime calls the lp_ref kernel of the
 * op), env->copy for a receive or send between a boundary buffer and an
 * arena slot. A nonzero return stops the step function with that value.
 * The header has no dependency but <stdint.h>, so the runtime's C code and
 * the generated C++ / CUDA share these structs. */
#ifndef LP_CARD_H
#define LP_CARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when the structs below change; the runtime refuses other versions. */
#define LP_CARD_ABI 1

/* Where an argument's bytes are. */
enum lp_card_region {
    LP_CARD_NONE = 0,    /* an omitted optional argument */
    LP_CARD_MEMORY = 1,  /* base + offset */
    LP_CARD_LITERAL = 2, /* the program's own data (shape constants) */
};

typedef struct lp_card_tensor {
    int region;          /* enum lp_card_region */
    uint64_t offset;     /* MEMORY: from the allocation's start */
    uint64_t bytes;
    int dtype;           /* ONNX TensorProto element type */
    int rank;
    const int64_t *dims; /* [rank]; NULL for rank 0 */
    const void *literal; /* LITERAL: the bytes */
} lp_card_tensor;

/* An attribute as the ONNX node holds it (type numbering of AttributeProto). */
typedef struct lp_card_attr {
    const char *name;
    int type;                      /* 1 float, 2 int, 3 string, 4 tensor, 6 floats, 7 ints */
    int64_t i;
    float f;
    const char *s;
    uint64_t s_len;
    int n;                         /* FLOATS, INTS */
    const int64_t *ints;
    const float *floats;
    const lp_card_tensor *tensor;  /* TENSOR: region LITERAL */
} lp_card_attr;

/* One compute step: the node, its op, its arguments (same positions as the
 * ONNX node's inputs and outputs), its workspace. */
typedef struct lp_card_node {
    const char *node;   /* ONNX node name */
    const char *op;     /* op type, default domain */
    int64_t opset;
    int n_inputs, n_outputs, n_attrs;
    const lp_card_tensor *inputs;
    const lp_card_tensor *outputs;
    const lp_card_attr *attrs;
    uint64_t workspace_offset, workspace_bytes;
} lp_card_node;

typedef struct lp_card_env lp_card_env;
struct lp_card_env {
    int abi;  /* LP_CARD_ABI of the runtime */
    int card;
    int (*compute)(lp_card_env *env, unsigned char *base, const lp_card_node *n);
    /* copies bytes inside the allocation: a receive (in buffer -> slot) or
     * a send (slot -> out buffer); `value` names it in errors */
    int (*copy)(lp_card_env *env, unsigned char *base, uint64_t dst, uint64_t src, uint64_t bytes,
                const char *value);
    /* an all-gather among the shard cards of a layer: this card's chunk
     * [chunk, chunk + chunk_bytes) of the gather buffer [whole, whole +
     * whole_bytes) is filled; afterwards the whole buffer is, and is laid
     * out concatenated along `axis` into `dst` (the value's slot) */
    int (*all_gather)(lp_card_env *env, unsigned char *base, const char *value, int first_card,
                      int n_cards, int rank, int axis, uint64_t chunk, uint64_t chunk_bytes,
                      uint64_t whole, uint64_t whole_bytes, uint64_t dst);
    void *user;
};

/* The step function's name and signature. */
#define LP_CARD_STEP_SYMBOL "lp_card_step"
#define LP_CARD_ABI_SYMBOL "lp_card_abi"
typedef int (*lp_card_step_fn)(lp_card_env *env, unsigned char *base);

#ifdef __cplusplus
}
#endif

/* ---- macros the generated programs use ---------------------------------- */

#ifdef __cplusplus
#define LP_CARD_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define LP_CARD_EXPORT __attribute__((visibility("default")))
#endif

/* An argument at `offset` of the allocation. */
#define LP_MEM(offset, bytes, dtype, rank, dims) \
    { LP_CARD_MEMORY, (offset), (bytes), (dtype), (rank), (dims), 0 }
/* An argument the program carries. */
#define LP_LIT(data, bytes, dtype, rank, dims) \
    { LP_CARD_LITERAL, 0, (bytes), (dtype), (rank), (dims), (data) }
#define LP_NONE_ARG { LP_CARD_NONE, 0, 0, 0, 0, 0, 0 }

#define LP_ATTR_I(name, v) { (name), 2, (v), 0.0f, 0, 0, 0, 0, 0, 0 }
#define LP_ATTR_F(name, v) { (name), 1, 0, (v), 0, 0, 0, 0, 0, 0 }
#define LP_ATTR_S(name, s, len) { (name), 3, 0, 0.0f, (s), (len), 0, 0, 0, 0 }
#define LP_ATTR_INTS(name, n, p) { (name), 7, 0, 0.0f, 0, 0, (n), (p), 0, 0 }
#define LP_ATTR_FLOATS(name, n, p) { (name), 6, 0, 0.0f, 0, 0, (n), 0, (p), 0 }
#define LP_ATTR_T(name, t) { (name), 4, 0, 0.0f, 0, 0, 0, 0, 0, (t) }

#define LP_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Runs a node; returns from the step function on an error. */
#define LP_COMPUTE(env, base, n)                          \
    do {                                                  \
        int lp_rc_ = (env)->compute((env), (base), &(n)); \
        if (lp_rc_ != 0) return lp_rc_;                   \
    } while (0)

#define LP_COPY(env, base, dst, src, bytes, value)                           \
    do {                                                                     \
        int lp_rc_ = (env)->copy((env), (base), (dst), (src), (bytes), (value)); \
        if (lp_rc_ != 0) return lp_rc_;                                      \
    } while (0)

#define LP_ALL_GATHER(env, base, value, first, n, rank, axis, chunk, chunk_bytes, whole, whole_bytes, dst) \
    do {                                                                                           \
        int lp_rc_ = (env)->all_gather((env), (base), (value), (first), (n), (rank), (axis),        \
                                       (chunk), (chunk_bytes), (whole), (whole_bytes), (dst));      \
        if (lp_rc_ != 0) return lp_rc_;                                                            \
    } while (0)

#endif
