/* lp_partition.h - layer IR -> plan: contiguous groups of layers, one per
 * card, the values that cross each cut, and a predicted stage time.
 *
 *     lp_target t;
 *     lp_target_builtin("h100", &t);
 *     lp_partition_options po = lp_partition_defaults();
 *     po.target = t;
 *     po.algo = LP_ALGO_GREEDY;             // fewest cards that hold the model
 *     lp_plan *plan = NULL;
 *     lp_footprint_source src = lp_partition_source_analysis(L);
 *     if (lp_partition_run(L, &src, &po, &plan, &diag) != LP_OK) ...;
 *     if (lp_plan_validate(plan, L, &src, &diag) != LP_OK) ...;
 *     lp_plan_dump_text(plan, L, false, stdout);
 *     lp_plan_free(plan);
 *
 * The algorithms themselves work on an abstract range cost (any function
 * where a wider range never costs less), so they are independent of the
 * layer IR and testable against brute force:
 *
 *     int ends[N], n_groups = lp_partition_greedy(&cost, &cards, ends, NULL);
 *     // group g holds layers (g ? ends[g-1] + 1 : 0) .. ends[g]
 */
#ifndef LP_PARTITION_H
#define LP_PARTITION_H

#include "lp_analysis.h"
#include "lp_ir.h"
#include "lp_outdir.h"

/* ---- device profiles ------------------------------------------------------ */

/* One accelerator card. `capacity` is the C the partitioner fits groups into:
 * by default the persisting-L2 maximum, the part of L2 the runtime can pin
 * with an access-policy window and so can promise stays resident; the whole
 * L2 (`l2_bytes`) is shared with everything else the card does. */
typedef struct lp_target {
    char name[64];
    uint64_t l2_bytes;       /* whole L2 cache */
    uint64_t persist_bytes;  /* persisting-L2 maximum */
    uint64_t capacity;       /* C */
    uint64_t dram_bytes;     /* device memory (HBM) */
    double peak_flops;       /* dense FP16 FLOP/s */
    double hbm_bw;           /* bytes/s, streaming */
    double l2_bw;            /* bytes/s, re-reading an L2-resident set */
    double link_latency_s;   /* card-to-card copy, fixed part */
    double link_bw;          /* bytes/s, large card-to-card copies */
    double launch_s;         /* per kernel, inside a CUDA graph */
    uint64_t smem_bytes;     /* shared memory over all SMs (opt-in per block x SMs); 0 unknown */
    int sms;                 /* streaming multiprocessors (a block of shared memory each); 0 unknown */
    double smem_bw;          /* bytes/s, every SM re-reading its shared memory; 0 not measured */
    int tier;                /* enum lp_tier: the on-chip memory a fitting card runs from */
    double chip_bw;          /* bytes/s of that tier: a card that fits reads at this rate */
} lp_target;

/* Where a card whose group fits C runs from: shared memory (C = smem_bytes,
 * smem_bw), L2 (C = the persisting maximum unless given, l2_bw; the
 * default) or device memory (C = dram_bytes, hbm_bw: plain pipelining). */
typedef enum lp_tier { LP_TIER_L2 = 0, LP_TIER_SMEM, LP_TIER_HBM } lp_tier;

/* "smem", "l2" or "hbm" (NULL for another number). */
const char *lp_tier_name(int tier);
/* Applies a tier ("smem", "l2", "hbm") to t: its capacity and chip_bw.
 * LP_ERR_USAGE for another name, or a tier the target has no measured
 * figures for (naming the missing field). */
lp_status lp_target_set_tier(lp_target *t, const char *tier, lp_diag *d);

/* The resident kernel (runtime/persist_gpu_plan.h) at compile time
 * (resident.c): the bytes of shared memory a block would need for layers
 * first..last (their Gemm weights as it lays them out over sms blocks,
 * *weight_bytes, and its largest work region), one layer's weight part
 * (*work: its work region), and a block's budget for both on t (0: t has no
 * SM count). */
uint64_t lp_resident_need(const lp_layer_ir *L, int first, int last, int sms, uint64_t *weight_bytes);
int64_t lp_resident_layer_bytes(const lp_layer_ir *L, int layer, int sms, int64_t *work);
uint64_t lp_resident_budget(const lp_target *t);

/* "h100" or "h200": profiles built in from the measured figures (see
 * partition/targets/h100.json, which hold the same numbers). */
bool lp_target_builtin(const char *name, lp_target *out);
/* A built-in name, or a JSON file with the fields of lp_target (sizes in
 * bytes or as "31 MiB" strings). */
lp_status lp_target_load(const char *name_or_path, lp_target *out, lp_diag *d);
void *lp_target_to_json(const lp_target *t); /* json_t* */
/* The inverse of lp_target_to_json (json is a json_t*); `where` names the
 * source in messages. */
lp_status lp_target_from_json(void *json, const char *where, lp_target *out, lp_diag *d);

/* "31MiB", "40 MB", "1.5GiB", "1024" (bytes): decimal digits with an
 * optional fraction and unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, any
 * case). false on a bad string: a sign, hex, an exponent, trailing text, an
 * unknown unit, a fraction of a byte, more than 2^64 - 1. */
bool lp_parse_size(const char *s, uint64_t *out);
/* The same; NULL when s is a size, else why not (a static string). */
const char *lp_size_error(const char *s, uint64_t *out);

/* ---- the algorithms, over an abstract cost ------------------------------- */

/* Cost of layers first..last on one card. The searches are exact for a
 * monotone cost (a range never costs less than a range inside it). A card's
 * footprint is not quite monotone: a group holds the values crossing its
 * edges, so a layer alone can cost more than the layer with its producer.
 * Then the searches may miss the best split, but under exactly N cards
 * they return N groups or none, and the capacity searches' groups fit
 * (the throughput DP's device memory is checked when the plan is
 * validated: exit 3). */
typedef uint64_t (*lp_range_cost_fn)(void *ctx, int first, int last);

typedef struct lp_range_cost {
    int n;                /* layers */
    lp_range_cost_fn fn;
    void *ctx;
} lp_range_cost;

/* Cards in order. Card i holds caps[i]; with max_cards == 0 the count is
 * free and the last capacity repeats; with max_cards > 0 at most max_cards
 * cards, the last capacity repeating past n_caps. max_cards < 0 asks for
 * exactly -max_cards cards (--cards N): every algorithm then uses that many,
 * each holding at least one layer, or reports no plan (0): greedy keeps one
 * layer back for each card still to fill, fewest / min-max / pinned /
 * throughput search only the splits into that many groups. */
typedef struct lp_cards {
    int n_caps;
    const uint64_t *caps;
    int max_cards;
} lp_cards;

/* The card bound of c (0: none), exact or not. */
int lp_cards_max(const lp_cards *c);
uint64_t lp_cards_capacity(const lp_cards *c, int card);

/* The paper's greedy layer aggregation: add layers to the card while the
 * group fits; start the next card when the next layer would overflow. With
 * a monotone cost and equal capacities this uses the fewest cards. With
 * unequal capacities in a fixed order it can fail where a plan exists
 * (caps 100,10,100 and layers 50,5,50): use lp_partition_fewest. Writes group ends into ends[] (room for c->n) and
 * returns the group count, or 0 if no plan fits: *stuck (if not NULL) is the
 * first layer that could not be placed. */
int lp_partition_greedy(const lp_range_cost *c, const lp_cards *cards, int *ends, int *stuck);

/* Fewest cards for any capacities in card order (exact; every card used
 * holds at least one layer). Same contract as lp_partition_greedy. */
int lp_partition_fewest(const lp_range_cost *c, const lp_cards *cards, int *ends, int *stuck);

/* Exact: among splits into at most k groups that fit their cards, the one
 * whose largest group cost is smallest (binary search over the answer with
 * greedy as the feasibility test). Uses all k cards when n >= k and equal
 * capacities allow it. Returns the group count (0 if infeasible) and the
 * largest group's cost in *largest. */
int lp_partition_minmax(const lp_range_cost *c, const lp_cards *cards, int k, int *ends,
                        uint64_t *largest);

/* Pins for the algorithms: pinned[i] is the group layer i must be in, or
 * -1 where it is free ([c->n] entries). The pinned searches are exact:
 * among splits that fit their cards and put every pinned layer in its
 * group, lp_partition_fewest_pinned finds one with the fewest groups and
 * lp_partition_minmax_pinned (k as in lp_partition_minmax, not obliged to
 * use all k cards) one whose largest group is smallest. Groups are
 * contiguous and in order, so pins that go backwards (a later layer on an
 * earlier group) or that split a group around a layer pinned elsewhere have
 * no plan. They return the group count, 0 if no plan honours the pins, -1
 * out of memory. O(groups * n) cost calls for fewest, times log2(capacity)
 * for minmax. */
int lp_partition_fewest_pinned(const lp_range_cost *c, const lp_cards *cards, const int *pinned,
                               int *ends);
int lp_partition_minmax_pinned(const lp_range_cost *c, const lp_cards *cards, int k,
                               const int *pinned, int *ends, uint64_t *largest);

/* ---- the throughput model ------------------------------------------------- */

/* Per-layer figures for the roofline model. cut_bytes[a] is what crosses a
 * cut placed just before layer a (a = 1..n-1; cut_bytes[0] unused). */
typedef struct lp_stage_model {
    int n;
    const uint64_t *flops;
    const uint64_t *bytes;     /* weights + activations read and written */
    const uint64_t *kernels;   /* launches, one per node */
    const uint64_t *cut_bytes;
    lp_range_cost footprint;   /* decides L2 vs HBM bandwidth */
    const lp_target *target;
} lp_stage_model;

/* Predicted time of layers first..last on `card`: per layer
 * max(flops/peak, bytes/bw) + launches * launch cost, at L2 bandwidth when
 * the group's footprint fits the card's capacity and at HBM bandwidth when
 * not, plus receiving the bytes of the cut before `first`. */
double lp_stage_time(const lp_stage_model *m, const lp_cards *cards, int card, int first,
                     int last);

/* Exact DP minimising the slowest stage over splits into at most k groups
 * (each must fit the card's device memory, not its L2). k == 0: the k in
 * 1..max (cards->max_cards, or n) with the fastest slowest stage, fewest
 * cards on ties; k > 0: exactly min(k, n) cards. Returns the group count
 * (0 if infeasible, -1 out of memory) and the slowest stage in *slowest.
 * When no layer runs faster from HBM than from L2 (every real target), a
 * bisection over the slowest stage with O((n + runs) log n) work a step,
 * for any capacities and pins; otherwise a DP over (card, end), O(k n^2). */
int lp_partition_throughput(const lp_stage_model *m, const lp_cards *cards, int k, int *ends,
                            double *slowest);
/* The same DP over the splits that put every pinned layer in its group
 * (pinned as for lp_partition_fewest_pinned); 0 if none fits. */
int lp_partition_throughput_pinned(const lp_stage_model *m, const lp_cards *cards, int k,
                                   const int *pinned, int *ends, double *slowest);

/* ---- plans ---------------------------------------------------------------- */

typedef enum lp_algo { LP_ALGO_GREEDY, LP_ALGO_DP, LP_ALGO_THROUGHPUT } lp_algo;
const char *lp_algo_name(lp_algo a);
bool lp_algo_from_name(const char *s, lp_algo *out);

/* Footprint of a layer range; lp_partition_source_analysis() wraps
 * lp_analysis_range_footprint(), tests pass their own. */
typedef void (*lp_footprint_fn)(void *ctx, int first, int last, lp_footprint *fp);
typedef bool (*lp_value_bytes_fn)(void *ctx, int32_t value, uint64_t *bytes);
typedef struct lp_footprint_source {
    lp_footprint_fn fn;
    lp_value_bytes_fn value_bytes; /* a value's bytes at the deploy dtype */
    void *ctx;
} lp_footprint_source;

lp_footprint_source lp_partition_source_analysis(const lp_layer_ir *L);

/* ---- sharded layers ------------------------------------------------------------ */

/* A layer larger than C runs on n_shards consecutive cards. Each card holds
 * columns [begin, end) of every weight below (lp_shard_range) and the other
 * weights whole; it computes those columns of the weight's node output, and
 * the cards all-gather the slices (one LP_TRANSFER_ALL_GATHER per split
 * weight) so every card holds the whole output before the layer goes on. Activations are therefore not
 * divided: only the sharded weights are. */
typedef struct lp_shard_weight {
    int32_t weight;   /* the initializer */
    int32_t node;     /* the MatMul, Gemm or Conv that reads it */
    int32_t output;   /* that node's output: its slices are gathered */
    int weight_axis;  /* the weight's output dim: 1 for MatMul, 0 or 1 for Gemm
                         (transB), 0 for Conv */
    int output_axis;  /* the output's axis the slices concatenate along */
    int64_t dim;      /* size of that axis */
} lp_shard_weight;

typedef struct lp_shard {
    int layer;
    int first_card, n_shards;
    int n_weights;
    lp_shard_weight *weights;
} lp_shard;

/* Columns [*begin, *end) of a dim of size dim that shard k of n holds:
 * floor(dim * k / n) .. floor(dim * (k + 1) / n). */
void lp_shard_range(int64_t dim, int n, int k, int64_t *begin, int64_t *end);

/* The weights of `layer` that can be split by output dim (a rank-2 MatMul
 * B or Gemm B, or a Conv W with group 1, read by that one node only).
 * Fills *out (weights allocated from `a`; first_card left 0). */
lp_status lp_shard_layer(const lp_layer_ir *L, int layer, int n_shards, lp_arena *a, lp_shard *out,
                         lp_diag *d);

/* Footprint of card k of a sharded layer: the layer's own footprint with
 * each sharded weight replaced by its k-th slice (bytes rounded up), plus,
 * in boundary_bytes, a receive buffer of each gathered output's whole bytes
 * (where the all-gather lands every participant's slice). */
void lp_shard_footprint(const lp_shard *s, int k, const lp_footprint_source *src, lp_footprint *fp);

/* The most cards one layer is sharded over: a plan's size grows with its
 * cards, and a small file can declare a weight of any size. */
#define LP_MAX_SHARDS 16384

/* Fewest shards whose every card fits `cap`; 0 if none does (the rest of
 * the layer alone exceeds cap, or nothing can be split). The answer may
 * exceed LP_MAX_SHARDS (up to 2^20), for the caller to report. */
int lp_shard_count(const lp_layer_ir *L, const lp_footprint_source *src, int layer, uint64_t cap);

/* A card's memory plan (below, card_memory.c). */
typedef struct lp_card_memory lp_card_memory;

typedef struct lp_plan_card {
    int card;
    int first_layer, last_layer;
    int shard, n_shards;      /* n_shards > 1: this card holds one output slice
                                 of a layer too large for one card */
    uint64_t capacity;
    lp_footprint fp;
    uint64_t flops;
    uint64_t bytes_in, bytes_out;  /* received from / sent to other cards */
    double stage_s;
    int n_weights;
    int32_t *weights;         /* weight values this card holds */
    int n_inputs;
    int32_t *inputs;          /* values from earlier cards or graph inputs */
    int n_outputs;
    int32_t *outputs;         /* values for later cards or graph outputs */
    lp_card_memory *memory;   /* where the card's tensors live in its allocation, in the
                                 plan's arena; NULL until lp_plan_place_memory */
} lp_plan_card;

typedef enum lp_transfer_kind {
    LP_TRANSFER_CUT,        /* a value made on an earlier card */
    LP_TRANSFER_ALL_GATHER, /* a sharded node's output, gathered among its shards */
} lp_transfer_kind;

/* CUT: from_card sends the whole value (`bytes`) to to_card.
 * ALL_GATHER: one collective (an all-gather, as NCCL runs it) among the
 * cards first_card .. first_card + n_cards - 1 of a sharded layer:
 * participant k makes columns lp_transfer_range(t, k) of axis `axis` of
 * the value, lp_transfer_slice_bytes(t, k) bytes, and afterwards every
 * participant holds the whole value, `bytes`. One per gathered value, so
 * its size does not grow with the participants. */
typedef struct lp_transfer {
    int32_t value;
    lp_transfer_kind kind;
    uint64_t bytes;
    int from_card, to_card;  /* CUT */
    int first_card, n_cards; /* ALL_GATHER: the participants */
    int axis;                /* ALL_GATHER: the output axis the slices concatenate along */
    int64_t dim;             /* ALL_GATHER: that axis' size */
} lp_transfer;

/* Columns [*begin, *end) participant k (0 .. n_cards - 1) of an all-gather
 * contributes: lp_shard_range(dim, n_cards, k). */
void lp_transfer_range(const lp_transfer *t, int k, int64_t *begin, int64_t *end);
/* Bytes of participant k's slice: bytes * (end - begin) / dim, rounded up. */
uint64_t lp_transfer_slice_bytes(const lp_transfer *t, int k);

typedef struct lp_plan {
    lp_arena *arena;
    const char *model;        /* path as given */
    lp_algo algo;
    lp_target target;
    int n_caps;
    uint64_t *caps;           /* capacities asked for, card order */
    int max_cards;            /* 0: as many as needed */
    int n_layers;
    int n_cards;
    lp_plan_card *cards;
    int n_transfers;
    lp_transfer *transfers;
    int n_shards;             /* sharded layers, in layer order */
    lp_shard *shards;
    uint64_t tokens;          /* tokens a step, for throughput */
    double slowest_s, latency_s;
} lp_plan;

/* The shard that card `card` holds a part of, or NULL: shards are in card
 * order, so a binary search (a scan per card would make many sharded layers
 * quadratic). */
const lp_shard *lp_plan_shard_of_card(const lp_plan *p, int card);

/* Layer `layer` must go to card `card`. */
typedef struct lp_pin {
    int layer, card;
} lp_pin;

/* Pins a plan can honour must be monotone: a later layer never on an
 * earlier card, one layer never on two cards. Sorts pins by layer, then
 * card; false with *first, *second (indices into the sorted pins) naming
 * a pair that conflicts. */
bool lp_pins_sort_check(lp_pin *pins, int n_pins, int *first, int *second);

typedef struct lp_partition_options {
    lp_algo algo;
    lp_target target;
    int n_caps;               /* 0: target.capacity */
    const uint64_t *caps;
    int cards;                /* 0: as many as needed */
    bool no_split;
    int n_cuts;               /* forced cuts: a cut after each listed layer */
    const int *cuts;
    int n_pins;
    const lp_pin *pins;
    uint64_t tokens;          /* tokens a step (batch x seq), for the report */
    const int *shard_counts;  /* [n_layers] or NULL: cards per layer (> 1: sharded),
                                 for lp_plan_from_ends on a loaded plan */
} lp_partition_options;

lp_partition_options lp_partition_defaults(void);

/* Chooses the groups with opt->algo and builds the plan. Forced cuts
 * split the layers into segments partitioned one after another. With pins
 * the same objective is optimised over the plans that put each pinned
 * layer on its card (the *_pinned searches); pins that are not monotone
 * are LP_ERR_USAGE, pins no plan can honour LP_ERR_INFEASIBLE naming the
 * first such pin and the capacity. A layer larger than C is sharded over
 * consecutive cards unless no_split (a pinned layer cannot be);
 * LP_ERR_INFEASIBLE with a report naming the layer when nothing fits. */
lp_status lp_partition_run(const lp_layer_ir *L, const lp_footprint_source *src,
                           const lp_partition_options *opt, lp_plan **out, lp_diag *d);

/* Builds a plan from given group ends (groups in order), filling
 * footprints, weights, inputs, outputs and transfers. A group of one layer
 * with opt->shard_counts[layer] = s > 1 becomes s cards. */
lp_status lp_plan_from_ends(const lp_layer_ir *L, const lp_footprint_source *src,
                            const lp_partition_options *opt, const int *ends, int n_groups,
                            lp_plan **out, lp_diag *d);

void lp_plan_free(lp_plan *p);

/* Checks a plan (built, loaded or overridden): every layer exactly once,
 * groups contiguous and in order, capacities respected, every value that
 * crosses a cut carried by a transfer. Messages carry the numbers. */
lp_status lp_plan_validate(const lp_plan *p, const lp_layer_ir *L,
                           const lp_footprint_source *src, lp_diag *d);

/* The text report: one row per card in a table (layers, bytes by kind,
 * fill, stage time, bytes in and out), the sharded layers and the totals;
 * with verbose each card's memory regions and inputs and outputs too. */
void lp_plan_dump_text(const lp_plan *p, const lp_layer_ir *L, bool verbose, FILE *out);
void *lp_plan_to_json(const lp_plan *p, const lp_layer_ir *L); /* json_t* */
/* The same document into w as it is built (ir/json_out.h); the members of
 * object `extra` (a json_t*, borrowed; may be NULL) follow the plan's own. */
void lp_plan_write_json(const lp_plan *p, const lp_layer_ir *L, const void *extra, lp_json_out *w);
/* Reads the cuts, shard counts, target and options of a plan.json; the
 * caller rebuilds the plan with lp_plan_from_ends() and validates it. ends,
 * caps and shard_counts ([n_layers], also set in opt) are malloc'ed. */
lp_status lp_plan_load_ends(const char *path, const lp_layer_ir *L, int **ends, int *n_groups,
                            lp_partition_options *opt, uint64_t **caps, int **shard_counts,
                            lp_diag *d);
/* Graphviz: one cluster per card, cut edges labelled with their bytes. */
lp_status lp_plan_write_dot(const lp_plan *p, const lp_layer_ir *L, const char *path,
                            lp_diag *d);
/* ---- per-card memory plans (card_memory.c) ------------------------------------ */

/* Where every tensor of a card lives in the one allocation the runtime makes
 * for it: weights, receive/send buffers, the activation arena, a workspace.
 * Offsets are from the allocation's start; see card_memory.c for the layout
 * and how the totals relate to the card's footprint.
 *
 *     if (lp_plan_place_memory(plan, L, &diag) != LP_OK) ...; // lp_partition_stage does it
 *     const lp_card_memory *m = plan->cards[c].memory;
 *     for (int k = 0; k < m->n_slots; k++)
 *         place(m->slots[k].value, base + m->slots[k].offset);
 */
typedef struct lp_mem_weight {
    int32_t value;
    uint64_t offset, bytes;
    int axis;               /* -1: the whole tensor; else columns [begin, end) */
    int64_t begin, end;     /* of this axis (a sharded card's slice) */
} lp_mem_weight;

/* GATHER: the receive buffer of an all-gather on a sharded card, the whole
 * gathered value, every participant's slice at its place. */
typedef enum lp_mem_dir { LP_MEM_IN, LP_MEM_OUT, LP_MEM_GATHER } lp_mem_dir;

typedef struct lp_mem_boundary {
    int32_t value;
    uint64_t offset, bytes;
    lp_mem_dir dir;         /* IN: received from an earlier card or the host;
                               GATHER: an all-gather's receive buffer */
} lp_mem_boundary;

typedef struct lp_mem_slot {
    int32_t value;
    uint64_t offset, bytes;
    int first, last;        /* steps alive; step 0 is the card's first node */
} lp_mem_slot;

struct lp_card_memory {
    int card;
    uint64_t alignment;     /* of every offset and region (LP_MEMPLAN_ALIGN) */
    int first_node, n_steps;
    int n_weights;
    lp_mem_weight *weights;
    int n_boundary;
    lp_mem_boundary *boundary;
    int n_slots;
    lp_mem_slot *slots;
    uint64_t weights_bytes;                    /* region at offset 0 */
    uint64_t boundary_offset, boundary_bytes;
    uint64_t arena_offset, arena_bytes;        /* arena_bytes = footprint activation_bytes */
    uint64_t workspace_offset, workspace_bytes; /* = footprint buffer_bytes */
    uint64_t padding_bytes;  /* alignment padding of weights and boundary entries */
    uint64_t total_bytes;    /* the allocation: workspace_offset + workspace_bytes */
};

/* The memory plan of every card of p; *out ([p->n_cards]) and its lists
 * are allocated from `a`. */
lp_status lp_plan_memory(const lp_plan *p, const lp_layer_ir *L, lp_arena *a, lp_card_memory **out,
                         lp_diag *d);
/* The memory stage: lp_plan_memory once, into p's arena, each card's
 * `memory` set (freed with the plan). Every reader (plan.json, the -v
 * report, code generation) uses the stored plan. A plan already placed is
 * left as it is. On an error no card's memory is set. */
lp_status lp_plan_place_memory(lp_plan *p, const lp_layer_ir *L, lp_diag *d);
/* Checks the stored memory plan of every card (validate.c): regions in
 * order from offset 0 and aligned to LP_MEMPLAN_ALIGN; weights and
 * boundary entries aligned, inside their region, in order, disjoint; slots
 * aligned, inside the arena, alive within the card's steps, and no two
 * alive at the same step sharing a byte; total_bytes the end of the
 * workspace and equal to the card's footprint total (a shard that does not
 * send: the total less the send buffers the footprint reserves on it).
 * LP_ERR_INTERNAL naming the card and the field; a plan without memory is
 * one too. */
lp_status lp_plan_validate_memory(const lp_plan *p, const lp_layer_ir *L,
                                  const lp_footprint_source *src, lp_diag *d);
/* The "memory" object of a card in plan.json (json_t*). */
void *lp_card_memory_to_json(const lp_card_memory *m, const lp_layer_ir *L);
/* The same object as member `key` (NULL: element) of w's open container. */
void lp_card_memory_write_json(const lp_card_memory *m, const lp_layer_ir *L, const char *key,
                               lp_json_out *w);

/* ---- comparison with tensor x pipeline parallelism ---------------------------- */

/* Predicted time of one step (`tokens` tokens through every layer) on
 * tp * pp cards, two ways, from the same per-layer figures (flops, bytes
 * moved, kernels, the bytes leaving the layer) and the same target:
 *
 *   layer-wise  the layers split into at most tp*pp contiguous groups, one
 *               per card, by the throughput DP (lp_partition_throughput):
 *               a group runs at L2 bandwidth when its footprint fits C,
 *               else at HBM bandwidth; a cut costs link latency +
 *               bytes / link bandwidth.
 *   TP x PP     pp stages of n/pp consecutive layers, each layer split over
 *               tp cards. Per layer on one card:
 *                 max(flops / tp / peak, bytes / tp / bw) + kernels * launch
 *                 + 2 all-reduces of the layer's output, each
 *                   allreduce_latency + 2 (tp-1)/tp * bytes / link_bw (ring)
 *               bw is L2's when the stage's footprint / tp fits C, else HBM's;
 *               a stage boundary adds link latency + bytes / link_bw.
 *
 * Either way step_s is the slowest stage (a pipeline's time between steps)
 * and latency_s the sum over stages (one step start to end). */
typedef struct lp_compare_options {
    int tp, pp;
    double allreduce_latency_s; /* fixed cost of one all-reduce */
} lp_compare_options;

typedef struct lp_compare_side {
    int cards;           /* cards used (layer-wise may use fewer than tp*pp) */
    double step_s, latency_s;
    double comm_s;       /* communication inside one step, on one card */
    bool on_chip;        /* every card's working set fits C */
    bool fits_dram;      /* every card's working set fits device memory */
} lp_compare_side;

typedef struct lp_compare_result {
    uint64_t tokens;
    lp_compare_options opt;
    lp_compare_side layerwise, tp_pp;
} lp_compare_result;

/* tp 8, pp 2, all-reduce 12.5 us (NCCL's measured 11-14 us an op for
 * small messages between two H200s). */
lp_compare_options lp_compare_defaults(void);
/* "tp=8,pp=2[,allreduce_us=12.5]" */
lp_status lp_compare_parse(const char *s, lp_compare_options *o, lp_diag *d);
lp_status lp_compare_run(const lp_layer_ir *L, const lp_target *t, const lp_compare_options *o,
                         uint64_t tokens, lp_compare_result *r, lp_diag *d);
void lp_compare_dump_text(const lp_compare_result *r, FILE *out);
void *lp_compare_to_json(const lp_compare_result *r); /* json_t* */

/* ---- the stage as the driver calls it ---------------------------------------- */

/* Command-line choices, as text; NULL or 0 where not given. */
typedef struct lp_partition_request {
    int cards;              /* --cards N */
    const char *capacity;   /* --capacity SIZE[,SIZE...] */
    const char *target;     /* --target h100|h200|FILE.json (default h100) */
    const char *tier;       /* --tier smem|l2|hbm (default l2) */
    const char *algo;       /* --algo greedy|dp|throughput (default greedy) */
    bool no_split;          /* --no-split */
    const char *plan_file;  /* --plan FILE.json */
    const char *cut_after;  /* --cut-after LAYER,... (names or indices) */
    int n_pins;
    const char *const *pins; /* --pin PATTERN=CARD, PATTERN a glob over layer names */
    uint64_t tokens;        /* tokens a step, for the throughput figure */
} lp_partition_request;

/* Resolves the request against L, runs (or loads) the plan, validates it,
 * then places every card's memory (lp_plan_place_memory) and checks that
 * plan (lp_plan_validate_memory): the plan comes back with its memory. */
lp_status lp_partition_stage(const lp_layer_ir *L, const lp_partition_request *r, lp_plan **out,
                             lp_diag *d);

#endif
