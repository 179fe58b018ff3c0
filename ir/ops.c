/* The op table's names and data columns (ops.def), and the lookup that
 * gives each node its op id: a hash table over the rows, built once, so
 * that the stages compare small integers instead of strings. */
#include "lp_ops.h"

#include <string.h>
#include <threads.h>

typedef struct op_row {
    const char *name;
    lp_op_flops flops;
    const char *workspace;
    lp_op_shard shard;
    lp_op_reads reads;
    lp_op_emit emit;
} op_row;

static const op_row op_rows[] = {
    {NULL, LP_FLOPS_OUTPUT, NULL, LP_SHARD_NONE, LP_READS_ALL, LP_EMIT_NONE}, /* id 0: no row */
#define LP_OP(name, infer, fold, flops, workspace, shard, reads, emit) {#name, flops, workspace, shard, reads, emit},
#include "ops.def"
#undef LP_OP
};
_Static_assert(sizeof op_rows / sizeof op_rows[0] == LP_OP_COUNT + 1, "one op id per row of ops.def");

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
        uint32_t h = hash_name(op_rows[id].name) & (OP_HASH_SLOTS - 1);
        while (op_slots[h]) h = (h + 1) & (OP_HASH_SLOTS - 1);
        op_slots[h] = (int16_t)id;
    }
}

int lp_op_lookup(const char *domain, const char *op_type) {
    if (!op_type || (domain && domain[0] && strcmp(domain, "ai.onnx") != 0)) return LP_OP_UNKNOWN;
    call_once(&op_once, build_table);
    for (uint32_t h = hash_name(op_type) & (OP_HASH_SLOTS - 1); op_slots[h]; h = (h + 1) & (OP_HASH_SLOTS - 1))
        if (strcmp(op_rows[op_slots[h]].name, op_type) == 0) return op_slots[h];
    return LP_OP_UNKNOWN;
}

static const op_row *row_of(int id) { return &op_rows[id >= 1 && id <= LP_OP_COUNT ? id : 0]; }

const char *lp_op_name(int id) { return row_of(id)->name; }
lp_op_flops lp_op_flops_of(int id) { return row_of(id)->flops; }
const char *lp_op_workspace_of(int id) { return row_of(id)->workspace; }
lp_op_shard lp_op_shard_of(int id) { return row_of(id)->shard; }
lp_op_reads lp_op_reads_of(int id) { return row_of(id)->reads; }
lp_op_emit lp_op_emit_of(int id) { return row_of(id)->emit; }
