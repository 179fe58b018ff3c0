/* lp_emit.h - what `lpcc MODEL -o DIR` writes for the runtime besides the
 * launch programs: each card's weights blob and the manifest that ties the
 * cards, their memory and their transfers together.
 *
 *     lp_card_blob *blobs = calloc(plan->n_cards, sizeof *blobs);
 *     int32_t absent = lp_emit_absent_weight(plan, L);
 *     if (absent < 0) st = lp_emit_write_weights(plan, L, od, blobs, &diag);
 *     lp_manifest_info mi = {.lpcc_version = "0.1.0", .dtype = LP_DT_FLOAT16,
 *                            .blobs = absent < 0 ? blobs : NULL};
 *     if (st == LP_OK) st = lp_emit_write_manifest(plan, L, &mi, od, &diag);
 *
 * card_K.weights holds card K's weights region byte for byte: every entry of
 * plan->cards[K].memory->weights at its offset, at the deploy dtype
 * (L->deploy_dtype; floats converted with round-to-nearest-even, NaN and
 * Inf kept; integer and bool tensors as stored), a sharded card's split
 * weights as its column slice only, and zero bytes in the padding between
 * entries and up to weights_bytes, which is the file's size. Tensors are
 * read one bounded block at a time (memory, the model file, external data),
 * so memory does not grow with the model. */
#ifndef LP_EMIT_H
#define LP_EMIT_H

#include "lp_partition.h"

/* The weights file written for one card. */
typedef struct lp_card_blob {
    bool written;
    char file[48];     /* "card_K.weights" */
    uint64_t bytes;    /* the file's size: the card's weights_bytes */
    uint32_t crc32;    /* zlib's CRC-32 of the whole file */
} lp_card_blob;

/* The manifest's checksum algorithm, as written in manifest.json. */
#define LP_EMIT_CHECKSUM "crc32"
/* Version of manifest.json's schema; a change readers must know of bumps it. */
#define LP_MANIFEST_VERSION 1

/* A weight some card's memory plan holds whose external file is absent, or
 * -1 when every weight's bytes can be read. */
int32_t lp_emit_absent_weight(const lp_plan *p, const lp_layer_ir *L);

/* Writes card_K.weights for every card of p (placed memory required) into
 * output folder od; blobs ([p->n_cards]) receives each file's name, size and
 * checksum. A weight that cannot be converted (a float type other than
 * float, float16, bfloat16 or double to another deploy dtype) is
 * LP_ERR_UNSUPPORTED naming it. */
lp_status lp_emit_write_weights(const lp_plan *p, const lp_layer_ir *L, lp_outdir *od,
                                lp_card_blob *blobs, lp_diag *d);

/* What the program was specialised for, beyond the plan. */
typedef struct lp_manifest_info {
    const char *lpcc_version;
    const char *model;            /* the model path as given */
    lp_dtype dtype;               /* deploy dtype; LP_DT_UNDEFINED: the model's own */
    const void *bindings;         /* json_t* object {dim: value} (borrowed), or NULL */
    const void *shapes;           /* json_t* object {input: [dims]} (borrowed), or NULL */
    const lp_card_blob *blobs;    /* [n_cards], or NULL when no weights were written */
} lp_manifest_info;

/* Whether card c of p runs as a persistent program (manifest "program"). */
bool lp_card_runs_persistent(const lp_plan *p, int c);
/* Its manifest "program": "resident" (tier smem, and the resident kernel's
 * layout of the card's Gemm weights, estimated from L (lp_resident_need),
 * fits a block's shared memory: *need <= *budget bytes, both 0 when not
 * estimated), "persistent" (also for a card with no weight the tensor cores
 * take) or "library". */
const char *lp_card_program_kind(const lp_plan *p, const lp_layer_ir *L, int c, uint64_t *need,
                                 uint64_t *budget);

/* Writes manifest.json (schema in manifest.c) into od. */
lp_status lp_emit_write_manifest(const lp_plan *p, const lp_layer_ir *L,
                                 const lp_manifest_info *mi, lp_outdir *od, lp_diag *d);

typedef struct lp_program lp_program;

/* Writes card_K.cu, each card's launch program, from the lowered program
 * (card_emit.c says what it holds). An argument whose shape is not bound to
 * numbers or an attribute the program cannot carry is LP_ERR_UNSUPPORTED
 * naming the node. */
lp_status lp_emit_write_cards(const lp_program *prog, const lp_layer_ir *L, const char *model,
                              const char *version, lp_outdir *od, lp_diag *d);

/* Whether `name` is a file this module writes (card_K.weights,
 * card_K.cu, manifest.json): an earlier run's that this one did not write is removed
 * on commit. */
bool lp_emit_is_output_file(const char *name);

/* DIR/Makefile, which rebuilds every card_K.so from card_K.cu with nvcc;
 * then, when `build` (and $LPCC_NO_BUILD is unset or 0) and nvcc is found
 * ($NVCC, PATH, /usr/local/cuda/bin), each card_K.so built now, inside the
 * output folder's transaction. runtime_include is the folder of lp_card.h
 * ($LPCC_RUNTIME_INCLUDE overrides it). A failed nvcc is LP_ERR_INTERNAL
 * naming the card. Call after the card programs are written. */
lp_status lp_emit_build_cards(const lp_program *prog, const char *runtime_include, bool build,
                              lp_outdir *od, lp_diag *d);

#endif
