/* persist_gpu_plan.h - how the GPU's persistent kernel (gpu/gpu_persist.cu)
 * lays a program out: launch shape, which Gemm weights it packs for the
 * tensor cores, and each packed Gemm's plan (tiles a unit, rows of A staged,
 * shared-memory places, weight prefetches, A shared in groups). Host C, so
 * that CI checks it without a GPU (tests/test_persist_gpu_plan.c).
 *
 * Launches: run_step runs the phases between library calls (NODE phases)
 * as kernels of at most PK_LAUNCH_PHASES phases. Intervals: the phases
 * between two barriers (a phase with sync, or a launch's first phase opens
 * one); the interval's first phase issues the weight prefetches of all its
 * Gemms before its barrier, each into a slot of its own, and the Gemms of
 * an interval that read the same rows of A with the same prologue form a
 * group whose rows a block stages once (nothing in an interval writes what
 * it reads). Dynamic shared memory of an interval: [prefetch slots][A]
 * [partial sums][LayerNorm scale, bias], the last three per Gemm. */
#ifndef LP_PERSIST_GPU_PLAN_H
#define LP_PERSIST_GPU_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "lp_persist.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PK_THREADS 256 /* 255 registers a thread: no spills (local memory would live in L2) */
#define PK_WARPS (PK_THREADS / 32)
#define PK_SMEM (212 * 1024)    /* dynamic shared memory: prefetched weights, staged A, partial sums */
#define PK_LAUNCH_PHASES 48     /* at most this many phases a launch: their plans sit in shared memory */
#define PK_PREFETCH (64 * 1024) /* at most this much of a block's first Gemm unit is fetched early */

/* b.weight == PK_PACKED: the Gemm's weight is in fragment order (the GPU's
 * copy of the phases only). */
#define PK_PACKED 2

/* How a Gemm phase uses a block: g column tiles of 8 a unit, mc rows of A
 * staged at a time (0: the tensor-core path cannot run it), and pre: the
 * bytes of the block's first unit of weights fetched early (0: none). */
typedef struct pk_shape {
    int g, mc;
    int64_t pre;
} pk_shape;

/* A packed Gemm phase as the kernel runs it (mc 0: not one). */
typedef struct pk_gemm {
    uint64_t w;        /* the packed weight's offset */
    int P, tiles;      /* K / 32, N / 8 */
    int g, mc, units;  /* column tiles a unit, rows of A staged at a time, ceil(tiles / g) */
    int rot;           /* units of the interval's earlier Gemms: the block's first unit moves on by it */
    int pre, pre_at;   /* bytes of the first unit fetched before the barrier, and where (pre 0: none) */
    int a_at, red_at;  /* where A is staged, and the partial sums */
    int ln_at;         /* where a LayerNorm prologue's scale and bias are staged */
    int a_group;       /* the interval's first Gemm with the same A (and prologue): the rows one stages, all reuse */
    int head;          /* 1: the phase opens an interval (it has a barrier, or it starts a launch) */
    /* the resident kernel (pk_plan_resident): where the block's column tiles
     * of the weight lie in its shared memory, and the unit shape (1, 2 or 4
     * tiles) it takes them in; res_g 0: the weight is read from device memory */
    int res_at, res_g;
    int res_copy;      /* 1: this phase loads the tiles at start (0: an earlier phase with the same weight does) */
    int res_keep;      /* 1: the phase before normalised the same rows of A: its LayerNorm vectors and row
                        * statistics are still in the work region */
} pk_gemm;

/* extra: bytes of shared memory the phase needs besides its A and sums. */
pk_shape pk_gemm_shape(int64_t M, int64_t N, int64_t K, int64_t extra, int blocks);
/* The bytes a Gemm's LayerNorm prologue stages its scale and bias in. */
int64_t pk_ln_bytes(const lp_persist_phase *g);
/* Whether phase i's weight can be packed: the tensor-core path's shape, and
 * no phase but Gemms reading it the same way touches its bytes. */
bool pk_packable(const lp_persist_program *p, int i, int blocks);
/* The end of the launch that starts at phase i (not a NODE phase). */
int pk_launch_end(const lp_persist_program *p, int i);
/* pl[n_phases]: each phase's plan; host: the phases with PK_PACKED marks. */
void pk_plan_gemms(const lp_persist_program *p, const lp_persist_phase *host, int blocks, pk_gemm *pl);

/* The resident kernel holds every packed Gemm's weights in shared memory
 * for as long as it runs, across steps: of a weight of T column tiles,
 * block b of B holds tiles [b T / B, (b + 1) T / B), one contiguous run of
 * the packed layout. Its dynamic shared memory is [work][weights]: work,
 * at 0, is the largest need of a phase (a Gemm's row statistics, 16 x 2
 * floats, its LayerNorm vectors, 2 K values, then its partial sums of res_g
 * tiles; an attention phase's scores); the weights of each phase follow at
 * res_at, as many bytes as the block with the most tiles holds (a weight
 * read by several Gemms the same way is held once). A Gemm right after one
 * that normalised the same rows (the same A, M <= 16, tiles and prologue,
 * no barrier between) keeps their statistics (res_keep). The program must
 * be one launch (no library call). */
typedef struct pk_resident {
    int64_t work_bytes;   /* the work region */
    int64_t weight_bytes; /* the weights region of a block (the largest) */
    int64_t held_bytes;   /* weight bytes held, over all blocks */
    int held, unheld;     /* Gemm phases whose weight is held; Gemm phases reading theirs from device memory */
} pk_resident;

/* The work region bytes of a packed Gemm with res_g g (partial sums of 16
 * rows, LayerNorm scale and bias, row statistics) and of attention. */
int64_t pk_resident_gemm_work(const lp_persist_phase *g, int res_g);
#define PK_RESIDENT_ATTENTION_WORK ((int64_t)PK_WARPS * LP_PERSIST_ATTENTION_N * 4)
/* The first tile block b of `blocks` holds of a weight of `tiles` tiles. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int pk_resident_first_tile(int tiles, int b, int blocks) {
    return (int)((int64_t)tiles * b / blocks);
}
/* The bytes of shared memory a weight of N columns and K rows takes in the
 * block holding the most of its tiles, and the unit shape (1, 2 or 4
 * tiles) those are taken in. */
int64_t pk_resident_weight_bytes(int64_t n, int64_t k, int blocks, int *res_g);
/* The resident kernel's own static shared memory, at most (a block's
 * budget for work and weights is the opt-in size less this). */
#define PK_RESIDENT_STATIC 2048
/* Plans the resident kernel for host (phases with PK_PACKED marks) in at
 * most budget bytes of dynamic shared memory a block: fills pl's res_*
 * fields (pl as pk_plan_gemms left it) and *r. Returns false, with the
 * reason in why, when the program cannot run resident. */
bool pk_plan_resident(const lp_persist_program *p, const lp_persist_phase *host, int blocks, int64_t budget,
                      pk_gemm *pl, pk_resident *r, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif

#endif
