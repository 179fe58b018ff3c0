/* resident.c - the shared memory the resident kernel
 * (runtime/persist_gpu_plan.h) would need a block for a run of layers,
 * estimated from the layer IR: every MatMul or Gemm by a weight the tensor
 * cores take (2-D, fp16 or bf16 as deployed, K a multiple of 32, N of 8),
 * laid out as the runtime lays it (pk_resident_weight_bytes), and the
 * largest work region (a LayerNorm prologue assumed on every Gemm). A
 * weight read twice in one layer counts once; across layers, twice. */
#include "lp_partition.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "persist_gpu_plan.h"

/* A layer's need past any block's shared memory, small enough that the
 * sums over 2^20 layers stay in range. */
#define LP_RESIDENT_TOO_MUCH ((int64_t)1 << 40)

int64_t lp_resident_layer_bytes(const lp_layer_ir *L, int layer, int sms, int64_t *work) {
    const lp_graph *g = L->g;
    const lp_layer *ly = &L->layers[layer];
    int64_t weights = 0;
    int32_t *held = NULL; /* the weights counted so far (the layer's Gemm weights: few) */
    int n_held = 0, cap = 0;
    *work = PK_RESIDENT_ATTENTION_WORK;
    for (int i = ly->first_node; i <= ly->last_node; i++) {
        const lp_node *n = &g->nodes[i];
        bool gemm = strcmp(n->op_type, "Gemm") == 0;
        if ((!gemm && strcmp(n->op_type, "MatMul") != 0) || n->n_inputs < 2 || n->inputs[1] < 0) continue;
        const lp_value *w = &g->values[n->inputs[1]];
        lp_dtype dt = lp_analysis_value_dtype(L, w);
        if (w->kind != LP_VALUE_WEIGHT || w->shape.rank != 2 || (dt != LP_DT_FLOAT16 && dt != LP_DT_BFLOAT16))
            continue;
        bool trans = gemm && lp_node_attr_int(n, "transB", 0) != 0;
        int64_t k = w->shape.dims[trans ? 1 : 0].size, cols = w->shape.dims[trans ? 0 : 1].size;
        if (k <= 0 || cols <= 0 || k % 32 || cols % 8) continue;
        if (k > ((int64_t)1 << 24) || cols > ((int64_t)1 << 24)) {
            weights = LP_RESIDENT_TOO_MUCH; /* no block holds this: the sums below stay finite */
            continue;
        }
        bool again = false;
        for (int j = 0; j < n_held && !again; j++) again = held[j] == n->inputs[1];
        if (!again && n_held == cap) {
            int32_t *grown = realloc(held, sizeof *held * (size_t)(cap = cap ? 2 * cap : 16));
            if (!grown) {
                free(held);
                return LP_RESIDENT_TOO_MUCH; /* out of memory: counted as too much to hold */
            }
            held = grown;
        }
        if (!again) held[n_held++] = n->inputs[1];
        int res_g;
        int64_t bytes = pk_resident_weight_bytes(cols, k, sms, &res_g);
        if (!again && weights < LP_RESIDENT_TOO_MUCH) weights += bytes;
        if (weights > LP_RESIDENT_TOO_MUCH) weights = LP_RESIDENT_TOO_MUCH;
        lp_persist_phase as_phase = {.kind = LP_PERSIST_GEMM, .k = k, .ln = 1};
        int64_t need = pk_resident_gemm_work(&as_phase, res_g);
        if (need > *work) *work = need;
    }
    free(held);
    *work = (*work + 15) / 16 * 16;
    return weights;
}

uint64_t lp_resident_need(const lp_layer_ir *L, int first, int last, int sms, uint64_t *weight_bytes) {
    int64_t weights = 0, work = 0;
    for (int l = first; l <= last; l++) {
        int64_t w;
        weights += lp_resident_layer_bytes(L, l, sms, &w);
        if (w > work) work = w;
    }
    *weight_bytes = (uint64_t)weights;
    return (uint64_t)(weights + work);
}

uint64_t lp_resident_budget(const lp_target *t) {
    if (t->sms <= 0 || t->smem_bytes / (uint64_t)t->sms <= PK_RESIDENT_STATIC) return 0;
    return t->smem_bytes / (uint64_t)t->sms - PK_RESIDENT_STATIC;
}
