/* lp_lower.h - lowering: a plan with its memory plan becomes, per card, the
 * ordered program that card runs. Plain data: arrays of structs in the
 * program's one arena, no callbacks; every writer (card ONNX models, CUDA
 * launch programs) walks the same program.
 *
 *     lp_program *prog = NULL;
 *     if (lp_lower_run(plan, L, &prog, &diag) != LP_OK) ...;   // plan->cards[c].memory placed
 *     if (lp_program_verify(prog, plan, L, &diag) != LP_OK) ...;
 *     const lp_card_program *cp = &prog->cards[c];
 *     for (int s = 0; s < cp->n_steps; s++) {
 *         const lp_step *st = &cp->steps[s];
 *         if (st->kind == LP_STEP_COMPUTE)   // kernel st->kernel on node st->node
 *             launch(st->kernel, base + st->inputs[0].offset, ...,
 *                    base + st->workspace_offset, st->workspace_bytes);
 *         else if (st->kind == LP_STEP_RECEIVE)   // st->buffer (in) -> st->slot
 *             ...
 *     }
 *     lp_program_free(prog);
 *
 * A card's steps, in plan order:
 *   receive     one per card input (plan->cards[c].inputs order): the value
 *               arrives from card `peer` (-1: the host, a graph input) in its
 *               boundary "in" buffer (`buffer`), copied into its arena slot
 *               (`slot`) before the first compute step.
 *   compute     one per node of the card's layers, in graph order: kernel is
 *               the node's op id (ir/lp_ops.h), one argument per node input and
 *               output (same positions), the workspace the node uses.
 *   all_gather  on a card holding one shard of a layer, after each split node
 *               (the node whose weight is cut by output columns): the split
 *               node wrote the card's columns (`slice`, chunk `rank` of the
 *               gather buffer, participants' chunks in rank order); the
 *               collective among cards first_card .. first_card + n_cards - 1
 *               fills the whole gather buffer (`whole`), which is laid out,
 *               concatenated along `axis`, into the value's arena slot
 *               (`slot`) that later steps read.
 *   send        one per (card output, destination), card outputs in
 *               plan->cards[c].outputs order: the value's slot (`slot`) is
 *               copied into its boundary "out" buffer (`buffer`) and sent to
 *               card `peer` (-1: the host, a graph output).
 *
 * Offsets are from the start of the card's one allocation and come from the
 * stored memory plan (plan->cards[c].memory, lp_plan_place_memory): a
 * weight's entry, a boundary buffer, an arena slot. An argument a node reads
 * without memory is a literal (integer shape data of rank 0-1 the program
 * carries, as the memory plan leaves it out). The output of a view op
 * (Reshape, Squeeze, Unsqueeze, Flatten, Identity) to which the memory plan
 * gives no slot of its own is a view: the same bytes as its input 0.
 *
 * Phases: an unsharded card is one phase. A shard card of a layer with m
 * split nodes s_0 < ... < s_m-1 has phases 0..m: phase 0 is the receives and
 * the nodes up to s_0; phase P > 0 the all-gather of s_P-1, then the nodes
 * after s_P-1 up to s_P (the last phase: to the layer's end), then the sends.
 * A shard that sends nothing (all but the last) computes nothing in phase
 * m: that phase holds only the all-gather it takes part in (gather_only).
 * Each phase lists the values it reads that none of its steps make (weights
 * aside) and the values it makes that a later phase reads or the card sends:
 * the inputs and outputs of one card ONNX model (shard_submodels.c).
 *
 * `--dump-ir=program` prints the program, as text or (--json) as
 * lp_program_write_json's document. */
#ifndef LP_LOWER_H
#define LP_LOWER_H

#include "lp_partition.h"

#include <stdio.h>

typedef enum lp_region {
    LP_REGION_NONE,    /* an omitted optional argument (value -1) */
    LP_REGION_LITERAL, /* shape data carried by the program, not in memory */
    LP_REGION_WEIGHT,  /* the card's weights region */
    LP_REGION_IN,      /* a boundary receive buffer */
    LP_REGION_OUT,     /* a boundary send buffer */
    LP_REGION_GATHER,  /* an all-gather's buffer (whole, or one participant's chunk) */
    LP_REGION_SLOT,    /* an activation slot in the arena */
    LP_REGION_VIEW,    /* the bytes of input `view_of` of the same step */
} lp_region;

typedef struct lp_arg {
    int32_t value;     /* -1 with LP_REGION_NONE */
    lp_region region;
    int view_of;       /* VIEW: index into the step's inputs; else -1 */
    uint64_t offset, bytes;
} lp_arg;

typedef enum lp_step_kind {
    LP_STEP_COMPUTE,
    LP_STEP_RECEIVE,
    LP_STEP_SEND,
    LP_STEP_ALL_GATHER,
} lp_step_kind;

typedef struct lp_step {
    lp_step_kind kind;
    int phase;
    int32_t value;         /* RECEIVE, SEND, ALL_GATHER: the value moved; COMPUTE: -1 */
    /* COMPUTE */
    int32_t node;          /* index into L->g->nodes; else -1 */
    int kernel;            /* the node's op id (lp_node_op) */
    int n_inputs, n_outputs;
    lp_arg *inputs, *outputs;
    uint64_t workspace_offset, workspace_bytes;
    /* RECEIVE, SEND */
    int peer;              /* the card it comes from / goes to; -1: the host */
    lp_arg buffer;         /* the boundary in / out buffer */
    lp_arg slot;           /* RECEIVE, SEND: the value's arena slot; ALL_GATHER: where
                              the gathered value is laid out */
    /* ALL_GATHER */
    int split;             /* index into the shard's weights */
    int first_card, n_cards, rank;
    int axis;              /* of the value, the slices concatenate along it */
    lp_arg slice, whole;
} lp_step;

typedef struct lp_phase {
    int first_step, n_steps;
    int gathered;          /* P > 0 of a shard card: the split whose all-gather opens it; else -1 */
    int sliced;            /* P < m of a shard card: the split whose slice it ends with; else -1 */
    bool gather_only;      /* computes nothing: only the all-gather it takes part in */
    int n_inputs, n_outputs;
    int32_t *inputs, *outputs;
} lp_phase;

typedef struct lp_card_program {
    int card;
    int shard, n_shards;
    const lp_card_memory *memory;  /* the plan's, borrowed */
    int n_steps;
    lp_step *steps;
    int n_phases;
    lp_phase *phases;
} lp_card_program;

typedef struct lp_program {
    lp_arena *arena;
    int n_cards;
    lp_card_program *cards;
} lp_program;

/* Lowers every card of p (whose memory is placed). LP_ERR_INTERNAL naming the
 * card, node and value when the memory plan has no place for an argument. */
lp_status lp_lower_run(const lp_plan *p, const lp_layer_ir *L, lp_program **out, lp_diag *d);
void lp_program_free(lp_program *prog);

/* Checks the program against the plan: every argument inside the card's
 * allocation and inside its region (a view: its input's bytes), every
 * compute input made earlier on the card, received, a weight or a literal,
 * every send's value made before it, every all-gather after the split node
 * that computes its slice, phases covering the steps in order.
 * LP_ERR_INTERNAL naming the card, step and value. */
lp_status lp_program_verify(const lp_program *prog, const lp_plan *p, const lp_layer_ir *L,
                            lp_diag *d);

/* Name of a step kind and of a region, as the dumps write them. */
const char *lp_step_kind_name(lp_step_kind k);
const char *lp_region_name(lp_region r);

void lp_program_dump_text(const lp_program *prog, const lp_layer_ir *L, FILE *out);
/* {"cards": [{"card", "shard", "n_shards", "total_bytes", "phases": [...],
 *   "steps": [...]}, ...]} as lp_lower.c's comment spells out. */
void lp_program_write_json(const lp_program *prog, const lp_layer_ir *L, lp_json_out *w);

#endif
