/* lp_gpu_device.h - the runtime's CUDA device (gpu_device.cu), seen from C.
 *
 * Each card of a compiled model gets one device allocation of exactly its
 * planned bytes on the GPU the card is mapped to, and a stream of its own.
 * A card's step runs first as a warm-up (eagerly: library algorithms are
 * chosen and literals uploaded), is then captured in a CUDA graph and from
 * then on replayed. Cards whose programs meet at all-gathers (shards of one
 * layer) run eagerly every time: their steps wait for each other on the
 * host.
 *
 *     lp_gdev *g;  lp_gdev_open(n_cards, gpu_of_card, &g, &diag);
 *     lp_gdev_alloc(g, c, total_bytes, &diag);  lp_gdev_upload(g, c, 0, weights, n, &diag);
 *     lp_gdev_env(g, c, &env);   // compute / copy callbacks for lp_card_step
 *     lp_gdev_step(g, c, step, &env, &diag);    // enqueue (graph after the first)
 *     lp_gdev_copy(g, from, src, to, dst, bytes, &diag);   // a cut, after `from`'s step
 *     lp_gdev_download(g, c, offset, host, n, &diag);      // waits for the card
 *
 * Errors name the CUDA statement, the card and (for a kernel) the node. */
#ifndef LP_GPU_DEVICE_H
#define LP_GPU_DEVICE_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include "lp_card.h"
#include "lp_ir.h"
#include "lp_persist.h"

typedef struct lp_gdev lp_gdev;

typedef struct lp_gdev_options {
    bool graphs;        /* capture unsharded steps in CUDA graphs (default true) */
    bool pin_weights;   /* an L2 persisting window over weights that fit (default true) */
    bool check_nodes;   /* warm-up compares every node with the CPU reference */
    double check_tol;   /* relative L2 error a node may have (check_nodes) */
} lp_gdev_options;

lp_gdev_options lp_gdev_defaults(void);

/* Opens the GPUs the cards are mapped to (gpu_of_card[c]); LP_ERR_USAGE
 * when one is not present, naming the card and how many GPUs there are. */
lp_status lp_gdev_open(int n_cards, const int *gpu_of_card, const lp_gdev_options *o, lp_gdev **out,
                       lp_diag *d);
void lp_gdev_close(lp_gdev *g);

lp_status lp_gdev_alloc(lp_gdev *g, int card, uint64_t bytes, lp_diag *d);
/* Device address of card's allocation (the `base` its step receives). */
unsigned char *lp_gdev_base(const lp_gdev *g, int card);
lp_status lp_gdev_upload(lp_gdev *g, int card, uint64_t offset, const void *src, uint64_t bytes,
                         lp_diag *d);
/* Waits for the card's work, then copies out. */
lp_status lp_gdev_download(lp_gdev *g, int card, uint64_t offset, void *dst, uint64_t bytes,
                           lp_diag *d);
/* Pins [0, bytes) of the card's allocation in L2 with an access-policy
 * window when it fits the persisting limit; *pinned says whether it did. */
lp_status lp_gdev_pin(lp_gdev *g, int card, uint64_t bytes, bool *pinned, lp_diag *d);

/* The card's step becomes program p (lp_persist.h), whose Gemm weights are
 * packed in place. With `choose` (and
 * graphs on), the warm-up first times the launch program's graph and then
 * the persistent program's, and keeps the faster (the weights restored when
 * that is the launch program); without, p runs from now on. */
lp_status lp_gdev_set_persist(lp_gdev *g, int card, const lp_persist_program *p, bool choose, lp_diag *d);
/* The same with the resident kernel (gpu_persist.h), its weights held in
 * shared memory; a program that cannot run resident runs as the persistent
 * one, with a note saying why. */
lp_status lp_gdev_set_resident(lp_gdev *g, int card, const lp_persist_program *p, bool choose, lp_diag *d);
/* "resident", "persistent" or "library": how the card's step runs, and the
 * warm-up's timings of the launch program and the other (microseconds a
 * step, median; 0 when not timed). */
const char *lp_gdev_program(const lp_gdev *g, int card, double *library_us, double *persistent_us);

/* The callbacks a card program runs on this device; env->user is set to g,
 * the all-gather callback is the caller's (it needs its group). */
void lp_gdev_env(lp_gdev *g, int card, lp_card_env *env);
/* The diagnostics the callbacks report into, until the next call. */
void lp_gdev_set_diag(lp_gdev *g, lp_diag *d);
/* Runs (enqueues) the card's step. `eager`: never capture it (shard cards). */
lp_status lp_gdev_step(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, bool eager,
                       lp_diag *d);
/* What the card's step function itself last returned (0, a status, or a
 * negative value its callbacks chose). */
int lp_gdev_step_result(const lp_gdev *g, int card);
/* Copies bytes from card `from` at src to card `to` at dst, ordered after
 * `from`'s work and before `to`'s next step. */
lp_status lp_gdev_copy(lp_gdev *g, int from, uint64_t src, int to, uint64_t dst, uint64_t bytes,
                       lp_diag *d);
/* The address card `from`'s kernels write bytes [dst, dst + bytes) of card
 * `to` at (a cut written straight into the receiver's buffer): *at, or 0
 * with the reason in why when its GPU cannot reach the other's memory
 * (peer access is enabled when it can). */
lp_status lp_gdev_cut_address(lp_gdev *g, int from, int to, uint64_t dst, uint64_t bytes, uint64_t *at,
                              char *why, size_t why_len, lp_diag *d);
/* Orders card `then`'s next work after `first`'s last step (nothing when
 * `first` has not run). */
lp_status lp_gdev_order(lp_gdev *g, int first, int then, lp_diag *d);
/* Waits until card's enqueued work is done. */
lp_status lp_gdev_sync(lp_gdev *g, int card, lp_diag *d);

/* Milliseconds of the card's last step and of the copies it sent after it
 * (CUDA events), once the work is done. */
lp_status lp_gdev_card_times(lp_gdev *g, int card, double *step_ms, double *send_ms, lp_diag *d);
/* Milliseconds from the first card's last step start to the last card's end. */
lp_status lp_gdev_span_ms(lp_gdev *g, double *ms, lp_diag *d);

/* Device memory: bytes free before open and now, per GPU index (the GPU of
 * card `card`); planned = the card allocations on that GPU. */
typedef struct lp_gdev_memory {
    int gpu;
    char name[96];
    uint64_t total, free_at_open, free_now, allocated, literals;
    bool graph_instantiated;
} lp_gdev_memory;
lp_status lp_gdev_memory_of(lp_gdev *g, int card, lp_gdev_memory *m, lp_diag *d);
/* Runs the card's step once eagerly with CUDA events around every node and
 * prints each node's time, longest first. */
lp_status lp_gdev_profile(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, FILE *out,
                          lp_diag *d);
/* Number of nodes the check found over tolerance (check_nodes). */
int lp_gdev_check_failures(const lp_gdev *g);

#endif
