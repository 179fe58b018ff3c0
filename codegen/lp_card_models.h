/* lp_card_models.h - the per-card ONNX models of a plan (shard_submodels.c). */
#ifndef LP_CARD_MODELS_H
#define LP_CARD_MODELS_H

#include "lp_lower.h"
#include "lp_outdir.h"

/* Runnable ONNX models of every card, through lp_frontend_write_submodel()
 * (see shard_submodels.c for how a sharded layer is cut), walking the
 * lowered program `prog` (lp_lower.h) of p:
 *
 *   DIR/card_K.onnx          an unsharded card: the nodes of its layers
 *   DIR/card_K.phase_P.onnx  phase P of a card holding one shard of a layer:
 *                            its split nodes multiply by the card's column
 *                            slice of the weight (an initializer of just
 *                            those columns) and output "<value>.shard<k>";
 *                            phase P > 0 first concatenates the slices of
 *                            every shard back into the value
 *   DIR/cards.json           the order that runs them:
 *       {"model": ..., "cards": N,
 *        "steps": [{"file": "card_2.phase_0.onnx", "card": 2, "phase": 0,
 *                   "inputs": [names], "outputs": [names]}, ...]}
 *
 * Running the steps in order, feeding each the named values earlier steps
 * produced or the model's inputs, yields the model's outputs ("phase" is 0
 * for an unsharded card). Shards compute the unsplit nodes alike, so a
 * name two shards both output holds the same value. The files are created
 * in output folder `od` (lp_outdir.h), whose commit moves them into place
 * and removes an earlier run's card files (lp_plan_is_card_file) this run
 * did not write. A split weight whose external bytes are absent cannot be
 * sliced: LP_ERR_UNSUPPORTED before anything is written
 * (lp_plan_unsliceable_weight tells beforehand). */
lp_status lp_plan_write_submodels(const lp_plan *p, const lp_layer_ir *L, const lp_program *prog,
                                  lp_outdir *od, lp_diag *d);

/* A weight (or bias) a sharded layer splits whose bytes are in an absent
 * external file, or -1 when every split weight can be sliced. */
int32_t lp_plan_unsliceable_weight(const lp_plan *p, const lp_layer_ir *L);

/* Whether `name` is a file lp_plan_write_submodels writes: card_K.onnx,
 * card_K.phase_P.onnx, their ".data" sidecars, or cards.json. An output
 * folder's commit removes those an earlier run left and this one did not
 * write. */
bool lp_plan_is_card_file(const char *name);

#endif
