/* gpu_persist.h - a card's persistent program (lp_persist.h) on the GPU: one
 * kernel per run of phases between library calls, one block per SM, the
 * phases of a run separated by grid barriers where the plan asks for them.
 *
 *     lp_gpu_persist *gp;
 *     lp_gpu_persist_open(prog, base, card, &gp, &diag);           // packs Gemm weights
 *     lp_gpu_persist_step(gp, env, base, stream, &diag);           // capturable
 *     lp_gpu_persist_close(gp);
 *
 * Open rearranges, in place, the weights that only Gemm phases read (fp16 /
 * bf16, K a multiple of 32, N of 8) into the tensor-core fragment order the
 * kernel streams them in: after it, those bytes are no longer the row-major
 * weights, and the card must keep running this program. */
#ifndef LP_GPU_PERSIST_H
#define LP_GPU_PERSIST_H

#include <cuda_runtime.h>
#include <stdio.h>

#include "lp_persist.h"

typedef struct lp_gpu_persist lp_gpu_persist;

extern "C" {

lp_status lp_gpu_persist_open(const lp_persist_program *p, unsigned char *base, int card, lp_gpu_persist **out,
                              lp_diag *d);
/* The resident form: one kernel, launched at open and running until close
 * on a stream of its own, holds every packed Gemm's weights in shared
 * memory across steps (persist_gpu_plan.h: pk_plan_resident); a step is
 * three stream memory operations on s (doorbells), capturable. When the
 * program cannot run so (a library call, weights over the shared memory,
 * no tensor-core weight), it returns LP_OK with *out NULL, why saying why,
 * and the weights untouched. */
lp_status lp_gpu_persist_open_resident(const lp_persist_program *p, unsigned char *base, int card,
                                       lp_gpu_persist **out, char *why, size_t why_len, lp_diag *d);
/* Whether gp is resident (its profile says what it holds). */
bool lp_gpu_persist_resident(const lp_gpu_persist *gp);
/* Enqueues the step on s: the persistent kernels, and env->compute for each
 * library call between them. Returns LP_OK or the failing status. */
lp_status lp_gpu_persist_step(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base,
                              cudaStream_t s, lp_diag *d);
/* Runs the step twice eagerly with a %globaltimer stamp per block at each
 * phase's start, after its barrier and at its end, and prints per phase
 * the barrier wait and the work (median and slowest block). */
lp_status lp_gpu_persist_profile(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base,
                                 cudaStream_t s, FILE *out, lp_diag *d);
/* Puts every weight open packed back in its original layout: the card's
 * launch program can run again (gp must not run after this). */
lp_status lp_gpu_persist_unpack(lp_gpu_persist *gp, unsigned char *base, lp_diag *d);
/* The kernels' launch shape, for reports. */
void lp_gpu_persist_shape(const lp_gpu_persist *gp, int *blocks, int *threads, int *packed_gemms);
void lp_gpu_persist_close(lp_gpu_persist *gp);
}

#endif
