/* lp_runtime.h - running a compiled model (the folder `lpcc MODEL -o DIR`
 * writes) in-process.
 *
 *     lp_diag diag = lp_diag_make(NULL);
 *     lp_rt_options o = lp_rt_defaults();          // device "cpu"
 *     lp_rt *rt = NULL;
 *     if (lp_rt_open("build/", &o, &rt, &diag) != LP_OK) return 1;
 *     for (int i = 0; i < lp_rt_n_inputs(rt); i++)
 *         lp_rt_set_input(rt, i, &tensor_i, &diag);  // checked against the manifest
 *     if (lp_rt_run(rt, &diag) != LP_OK) ...;
 *     const void *y = lp_rt_output_data(rt, 0);      // lp_rt_output(rt, 0) says its type
 *     lp_rt_close(rt);
 *
 * Open reads DIR/manifest.json (format "lpcc-manifest", version
 * LP_MANIFEST_VERSION), makes one allocation of exactly total_bytes per card,
 * loads card_K.weights into each card's weights region (its size and CRC-32
 * checked against the manifest), and builds each card's launch program
 * card_K.cu with the host C++ compiler into a shared object in a private
 * temporary folder (removed on close), which it loads. The C++ compiler is
 * $CXX or "c++"; the include folder of lp_card.h is $LPCC_RUNTIME_INCLUDE
 * or the source tree's runtime/ folder lpcc-run was built from.
 *
 * On cuda each card's allocation is on its GPU (options.gpus), the weights
 * are uploaded once, a card whose weights fit the persisting-L2 limit gets
 * an access-policy window over them, and each card's step is captured in a
 * CUDA graph after one eager warm-up and replayed (lp_gpu_device.h); the
 * card programs are the same shared objects.
 *
 * A run writes the graph inputs into the "in" buffers of the cards the
 * manifest lists, runs the cards in order (each card's lp_card_step, whose
 * compute steps call the lp_ref kernels at the program's offsets), copies
 * every cut from the sender's "out" buffer into the receiver's "in" buffer
 * right after the sender ran, and reads the graph outputs from the sender's
 * "out" buffer.
 *
 * Errors: a missing, unreadable or malformed manifest, weights file or card
 * program (and a manifest of another format version) is LP_ERR_INVALID_MODEL
 * naming the file and the key; an input of the wrong dtype, shape or size is
 * LP_ERR_USAGE naming the input; a kernel failure is LP_ERR_INTERNAL naming
 * the card and node (the kernel's own message).
 *
 * The shard cards of a sharded layer run at once, one thread each (their
 * kernels one at a time: the path checks numbers, not speed), and meet at
 * every all-gather: each copies the other participants' chunks from their
 * gather buffers into its own, then lays the whole value out along the
 * gathered axis into the value's slot, as the manifest's all_gather entry
 * describes. */
#ifndef LP_RUNTIME_H
#define LP_RUNTIME_H

#include "lp_ir.h"

#include <stdio.h>

typedef struct lp_rt lp_rt;

typedef struct lp_rt_options {
    const char *device;      /* "cpu" (reference kernels) or "cuda" */
    const char *cxx;         /* host C++ compiler; NULL: $CXX or "c++" */
    const char *include_dir; /* folder of lp_card.h; NULL: $LPCC_RUNTIME_INCLUDE or built-in */
    /* how each card's step runs: "auto" (default: as the manifest's "program"
     * says), "library" (one library kernel a node), "persistent" (every
     * card that is not a shard, as a persistent program, lp_persist.h) or
     * "resident" (cuda: the persistent program as one kernel that holds the
     * Gemm weights in shared memory across steps, where they fit, else
     * persistent; cpu: the persistent program) */
    const char *program;
    /* a cut between two cards of this process whose sender runs a
     * persistent program is written by that program straight into the
     * receiver's buffer (no copy after the step; the sender's next step
     * waits for the receiver's, so microbatches do not overlap across it)
     * unless copy_cuts; lp_rt_cut_direct says which are */
    bool copy_cuts;
    /* one process of several (cpu): this process's rank among `world`; rank r
     * runs cards r * n / world .. (r + 1) * n / world - 1 (a sharded layer's
     * cards with the first) and exchanges cuts with the others over
     * lp_transport.h at rendezvous:port + rank; every wait ends after
     * timeout_s with LP_ERR_PEER */
    int rank, world;
    const char *rendezvous;
    int port;
    double timeout_s;
    /* cuda only */
    const char *gpus;        /* card -> GPU: "0,1,0,1" (the last entry repeats); NULL: all on GPU 0 */
    bool graphs;             /* replay each unsharded card's step as a CUDA graph (default true) */
    bool pin_weights;        /* L2 persisting window over weights that fit (default true) */
    bool check_nodes;        /* the warm-up step compares every node with the CPU reference */
} lp_rt_options;

lp_rt_options lp_rt_defaults(void);

/* A graph input or output as the manifest declares it. */
typedef struct lp_rt_io {
    const char *name;
    lp_dtype dtype;
    int rank;
    const int64_t *dims;
    uint64_t bytes;
} lp_rt_io;

lp_status lp_rt_open(const char *dir, const lp_rt_options *opt, lp_rt **out, lp_diag *d);
void lp_rt_close(lp_rt *rt);

int lp_rt_n_cards(const lp_rt *rt);
/* Planned bytes of card c's allocation (what was allocated). */
uint64_t lp_rt_card_bytes(const lp_rt *rt, int c);

int lp_rt_n_inputs(const lp_rt *rt);
int lp_rt_n_outputs(const lp_rt *rt);
const lp_rt_io *lp_rt_input(const lp_rt *rt, int i);
const lp_rt_io *lp_rt_output(const lp_rt *rt, int i);

/* Binds input i: t's dtype and dims must be the manifest's. The bytes are
 * copied (t->data inline). */
lp_status lp_rt_set_input(lp_rt *rt, int i, const lp_tensor *t, lp_diag *d);
/* Binds input i to raw bytes of the manifest's type (exactly its `bytes`). */
lp_status lp_rt_set_input_bytes(lp_rt *rt, int i, const void *data, uint64_t bytes, lp_diag *d);

/* One step of the whole model; inputs not bound are zero. */
lp_status lp_rt_run(lp_rt *rt, lp_diag *d);
/* m steps back to back on the bound inputs, *seconds their wall time. On
 * cuda in one process (no shard cards) every microbatch's steps and cuts
 * are enqueued before one wait at the end, so card k works on microbatch t
 * while card k - 1 is on t + 1, ordered by events alone; elsewhere (cpu,
 * where one process a rank overlaps them) it is m runs. */
lp_status lp_rt_run_microbatches(lp_rt *rt, int m, double *seconds, lp_diag *d);

/* Seconds card c's step and the transfers after it took in the last run
 * (host clock on the CPU reference path, CUDA events on cuda). */
double lp_rt_card_seconds(const lp_rt *rt, int c);
double lp_rt_transfer_seconds(const lp_rt *rt, int c);
/* The manifest's cuts, and whether cut i is written straight into its
 * receiver's buffer in the last run (else copied; *why: the reason, "" when
 * direct). */
int lp_rt_n_cuts(const lp_rt *rt);
bool lp_rt_cut_direct(const lp_rt *rt, int i, const char **value, int *from, int *to, const char **why);
/* Seconds the last run took end to end (inputs in, outputs out; host clock). */
double lp_rt_run_seconds(const lp_rt *rt);
/* cuda: seconds from the first card's step start to the last card's end
 * (CUDA events; no host copies); the CPU path: lp_rt_run_seconds. */
double lp_rt_device_seconds(const lp_rt *rt);

/* Where card c runs and what it took (cuda: cudaMemGetInfo of its GPU
 * before lp_rt_open made anything and now, so library handles, graphs and
 * literals count; cpu: the allocation only). */
typedef struct lp_rt_memory {
    const char *device;      /* "cpu" or the GPU's name */
    int gpu;                 /* -1 on cpu */
    uint64_t planned;        /* the card's total_bytes */
    uint64_t allocated;      /* what the runtime allocated for it */
    uint64_t gpu_allocated;  /* cuda: all card allocations on this GPU */
    uint64_t gpu_taken;      /* cuda: device memory taken on this GPU since open */
    uint64_t literals;       /* cuda: device copies of the programs' literals on this GPU */
    bool pinned;             /* cuda: the card's weights have an L2 persisting window */
} lp_rt_memory;
lp_status lp_rt_card_memory(lp_rt *rt, int c, lp_rt_memory *m, lp_diag *d);
/* cuda, after a run: each unsharded card's step once more, eagerly, with
 * CUDA events around every node; prints each node's time, longest first. */
lp_status lp_rt_profile(lp_rt *rt, FILE *out, lp_diag *d);
/* cuda with check_nodes: nodes whose output differed from the reference. */
int lp_rt_check_failures(const lp_rt *rt);

/* Whether card c, and graph output i, are this process's (always, with
 * world 1); this process's rank. Outputs of other ranks' cards read zero. */
bool lp_rt_card_here(const lp_rt *rt, int c);
bool lp_rt_output_here(const lp_rt *rt, int i);
int lp_rt_rank(const lp_rt *rt);

/* "resident", "persistent" or "library": how card c's step runs. On cuda
 * with program "auto" a card whose manifest asks for a persistent (or
 * resident) program runs the faster
 * of the two as its warm-up timed them (median microseconds of a captured
 * step in *library_us and *persistent_us, 0 when not timed; either may be
 * NULL); before the first run, and on cpu, the program planned. */
const char *lp_rt_card_program(const lp_rt *rt, int c, double *library_us, double *persistent_us);
/* Each card's persistent program (lp_persist_dump), or "library kernels". */
void lp_rt_dump_programs(const lp_rt *rt, FILE *out);

/* Output i of the last run (lp_rt_output(rt, i)->bytes bytes), or NULL. */
const void *lp_rt_output_data(const lp_rt *rt, int i);

#endif
