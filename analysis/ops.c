/* Op ids: each node's op type is looked up once, in a hash table over the
 * rows of ops.def, and kept in lp_node.op, so that the stages after it
 * compare small integers instead of strings. */
#include "infer_internal.h"

#include <string.h>
#include <threads.h>

static const char *const op_names[] = {
    NULL,
#define LP_OP(name, rule, fold) #name,
#include "ops.def"
#undef LP_OP
};

/* Open addressing, at most half full; ids start at 1, so 0 marks an empty
 * slot. */
#define OP_HASH_SLOTS 512
_Static_assert(2 * LP_OP_COUNT <= OP_HASH_SLOTS, "the op hash table must stay half empty");

static int16_t op_slots[OP_HASH_SLOTS];
static once_flag op_once = ONCE_FLAG_INIT;

static uint32_t hash_name(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void build_table(void) {
    for (int id = 1; id <= LP_OP_COUNT; id++) {
        uint32_t h = hash_name(op_names[id]) & (OP_HASH_SLOTS - 1);
        while (op_slots[h]) h = (h + 1) & (OP_HASH_SLOTS - 1);
        op_slots[h] = (int16_t)id;
    }
}

int lp_op_lookup(const char *domain, const char *op_type) {
    if (!op_type || (domain && domain[0] && strcmp(domain, "ai.onnx") != 0)) return LP_OP_UNKNOWN;
    call_once(&op_once, build_table);
    for (uint32_t h = hash_name(op_type) & (OP_HASH_SLOTS - 1); op_slots[h]; h = (h + 1) & (OP_HASH_SLOTS - 1))
        if (strcmp(op_names[op_slots[h]], op_type) == 0) return op_slots[h];
    return LP_OP_UNKNOWN;
}

const char *lp_op_name(int id) { return id >= 1 && id <= LP_OP_COUNT ? op_names[id] : NULL; }

void lp_analysis_assign_ops(lp_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        lp_node *n = &g->nodes[i];
        n->op = (int16_t)lp_op_lookup(n->domain, n->op_type);
    }
}
