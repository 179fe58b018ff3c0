/* gpu_persist.cu - the persistent kernel: every block walks the same phases;
 * a phase spreads its work over the blocks (grid-stride elements, rows, or
 * Gemm column tiles), and a phase marked `sync` first waits at a grid
 * barrier until every block has finished the phases before it.
 *
 * Gemm phases on fp16 / bf16 run on tensor cores (mma.sync m16n8k16, fp32
 * accumulation): a block stages up to 128 rows of A in shared memory (and
 * normalises them, for a LayerNorm prologue), takes 1-4 column tiles of 8
 * at a time, its 8 warps split K, and the weights stream from L2 in
 * fragment order (packed at open), 16 bytes a lane a load, the first unit
 * fetched before the interval's barrier. Where everything lies in shared
 * memory is planned on the host (persist_gpu_plan.h). Other Gemms, and
 * every other phase, run on CUDA cores. */
#include "gpu_persist.h"
#include "persist_gpu_plan.h"
#include "persist_ops.h"

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <type_traits>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pk_control;
typedef CUresult (*pk_mem_op)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

struct lp_gpu_persist {
    const lp_persist_program *p;
    lp_persist_phase *host;  /* the phases as launched (packed flags set) */
    lp_persist_phase *dev;
    pk_gemm *plans;          /* per phase, on the device */
    unsigned long long *bar; /* the barrier's arrivals */
    int card, blocks, packed;
    bool cooperative;
    /* resident: one kernel running from open to close on its own stream */
    bool resident, running;
    pk_resident layout;
    size_t smem;             /* its dynamic shared memory */
    pk_control *ctl;
    cudaStream_t ks;
    cudaStream_t last;       /* the stream of the last step (the stop goes after it) */
    pk_mem_op write32, wait32;
};

/* ---- loads and stores ---------------------------------------------------- */

/* Activations are written by other blocks during the kernel: loaded through
 * L2 (ld.cg), never from a stale L1 line. Weights never change: __ldg. */
__device__ __forceinline__ float load_f(const unsigned char *p, int dt, bool weight) {
    if (dt == 1) return weight ? __ldg((const float *)p) : __ldcg((const float *)p);
    unsigned short h = weight ? __ldg((const unsigned short *)p) : __ldcg((const unsigned short *)p);
    if (dt == 10) return __half2float(__ushort_as_half(h));
    return __bfloat162float(__ushort_as_bfloat16(h));
}

__device__ __forceinline__ void store_f(unsigned char *p, int dt, float v) {
    if (dt == 1) *(float *)p = v;
    else if (dt == 10) *(__half *)p = __float2half_rn(v);
    else *(__nv_bfloat16 *)p = __float2bfloat16_rn(v);
}

__device__ __forceinline__ void copy_bits(unsigned char *dst, const unsigned char *src, int es) {
    switch (es) {
    case 1: *dst = (unsigned char)__ldcg((const char *)src); break;
    case 2: *(unsigned short *)dst = __ldcg((const unsigned short *)src); break;
    case 4: *(unsigned *)dst = __ldcg((const unsigned *)src); break;
    default: *(unsigned long long *)dst = __ldcg((const unsigned long long *)src); break;
    }
}

__device__ __forceinline__ int esize(int dt) { return lp_persist_esize(dt); }

/* One copy of the op arithmetic in the kernel's code: inlined at every use
 * it would make the kernel too large for the instruction caches. */
__device__ __noinline__ float pk_unary(int op, float v, float alpha, float beta) {
    return lp_persist_unary(op, v, alpha, beta);
}
__device__ __noinline__ float pk_binary(int op, float x, float y) { return lp_persist_binary(op, x, y); }

__device__ __forceinline__ int64_t numel(const lp_persist_view &v) {
    int64_t n = 1;
    for (int k = 0; k < v.rank; k++) n *= v.dims[k];
    return n;
}

/* ---- the grid barrier ---------------------------------------------------- */

__device__ __forceinline__ unsigned long long globaltimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}

/* A profiled step's stamps a block and phase: start, after the barrier,
 * end; then, for a Gemm, the nanoseconds its units spent (thread 0's
 * clock between the block's barriers) staging A and the weights, in the
 * LayerNorm prologue, in the MMAs, and in the epilogue and stores. */
#define PK_TRACE 7
enum { PK_T_STAGE = 3, PK_T_PROLOGUE, PK_T_MMA, PK_T_STORE };

/* Adds the time since *t to segment k of tr (a profiled step only). */
__device__ __forceinline__ void stamp(unsigned long long *tr, int k, unsigned long long *t) {
    if (!tr || threadIdx.x != 0) return;
    unsigned long long now = globaltimer();
    tr[k] += now - *t;
    *t = now;
}

/* *bar counts arrivals over the kernel's life and never resets: every
 * barrier adds gridDim.x, so a launch starts on a multiple of it (base),
 * and barrier k of the launch is passed once the count reaches base +
 * k gridDim.x. A block reads base before its first arrival, when no barrier
 * of its launch can have been passed yet. Arrivals are release reductions
 * (the block's writes reach L2 first), with no result to wait for; the
 * polls are relaxed. There is no acquire fence after the wait: it would
 * invalidate the SM's L1 at every barrier, and every load of data another
 * block wrote bypasses L1 (ld.cg, cp.async.cg). */
__device__ __forceinline__ unsigned long long barrier_count(const unsigned long long *bar) {
    unsigned long long c;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(c) : "l"(bar) : "memory");
    return c;
}

__device__ __forceinline__ void grid_sync(unsigned long long *bar, unsigned long long *target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        *target += gridDim.x;
        asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(bar) : "memory");
        while (barrier_count(bar) < *target) {
        }
    }
    __syncthreads();
}

/* ---- block reductions ------------------------------------------------------ */

__device__ float block_reduce(float v, bool is_max, float *scratch) {
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < PK_WARPS ? scratch[lane] : (is_max ? -INFINITY : 0.0f);
        for (int o = 16; o > 0; o >>= 1) {
            float u = __shfl_xor_sync(0xffffffffu, v, o);
            v = is_max ? fmaxf(v, u) : v + u;
        }
        if (lane == 0) scratch[PK_WARPS] = v;
    }
    __syncthreads();
    return scratch[PK_WARPS];
}

/* ---- copy and element-wise ------------------------------------------------- */

/* Element offset in v of the element at row-major index i over dims. */
template <typename I>
__device__ __forceinline__ I view_at(const lp_persist_view &v, const int64_t *dims, int rank, I i) {
    I off = 0;
    for (int k = rank - 1; k >= 0; k--) {
        I d = (I)dims[k], c = i % d;
        i /= d;
        off += c * (I)v.strides[k];
    }
    return off;
}

template <typename I>
__device__ void elementwise_loop(const lp_persist_phase &ph, unsigned char *base) {
    const lp_persist_view &o = ph.out, &a = ph.a, &b = ph.b;
    I n = (I)numel(o);
    int r = o.rank;
    bool binary = ph.kind == LP_PERSIST_ELEMENTWISE && lp_persist_is_binary(ph.op);
    int eo = esize(o.dtype), ea = esize(a.dtype), eb = binary ? esize(b.dtype) : 0;
    bool bits = ph.kind == LP_PERSIST_COPY && a.dtype == o.dtype;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I t = i, oa = 0, ob = 0, oo = 0;
        for (int k = r - 1; k >= 0; k--) {
            I d = (I)o.dims[k], c = t % d;
            t /= d;
            oa += c * (I)a.strides[k];
            ob += c * (I)b.strides[k];
            oo += c * (I)o.strides[k];
        }
        unsigned char *dst = lp_persist_out(&ph, base) + (int64_t)oo * eo;
        const unsigned char *pa = base + a.offset + (int64_t)oa * ea;
        if (bits) {
            copy_bits(dst, pa, eo);
            continue;
        }
        float x = load_f(pa, a.dtype, a.weight != 0), v;
        if (ph.kind == LP_PERSIST_COPY)
            v = x;
        else if (binary)
            v = pk_binary(ph.op, x, load_f(base + b.offset + (int64_t)ob * eb, b.dtype, b.weight != 0));
        else
            v = pk_unary(ph.op, x, ph.alpha, ph.beta);
        store_f(dst, o.dtype, v);
    }
}

/* Index arithmetic is 32-bit: the planner keeps every view of a phase
 * under 2^31 elements (lp_persist.h), so one copy of each loop suffices. */
__device__ __forceinline__ void run_elementwise(const lp_persist_phase &ph, unsigned char *base) {
    elementwise_loop<int>(ph, base);
}

/* ---- rows: LayerNorm and Softmax -------------------------------------------- */

/* Offset (elements) of row `row` of v (all dims but the last). */
__device__ __forceinline__ int row_offset(const lp_persist_view &v, int row) {
    int off = 0;
    for (int k = v.rank - 2; k >= 0; k--) {
        int d = v.dims[k], c = row % d;
        row /= d;
        off += c * v.strides[k];
    }
    return off;
}

/* LayerNorm or Softmax of one row of d <= W * PK_ROW_VALS values by a group
 * of W threads (a warp, or the block), every operand of one storage type
 * T: the row is loaded once into registers, every load in flight
 * together, then reduced and written. The code is kept short: an SM
 * fetches it cold at every step, and the fetch, not the data, is what a
 * longer version waits on. */
#define PK_ROW_VALS 8

template <int W>
__device__ __forceinline__ float group_reduce(float v, bool is_max, float *scratch) {
    if constexpr (W == PK_THREADS) {
        return block_reduce(v, is_max, scratch);
    } else {
        for (int o = 16; o > 0; o >>= 1) {
            float u = __shfl_xor_sync(0xffffffffu, v, o);
            v = is_max ? fmaxf(v, u) : v + u;
        }
        return v;
    }
}

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <int W, typename T>
__device__ __forceinline__ void row_in_registers(const lp_persist_phase &ph, unsigned char *base, int row, int t,
                                                 int dlast, float *scratch) {
    int sa = ph.a.rank ? (int)ph.a.strides[ph.a.rank - 1] : 1;
    const T *x = (const T *)(base + ph.a.offset) + row_offset(ph.a, row);
    T *y = (T *)lp_persist_out(&ph, base) + (int64_t)row * dlast;
    const T *gs = (const T *)(base + ph.scale.offset), *bs = (const T *)(base + ph.bias.offset);
    bool ln = ph.kind == LP_PERSIST_LAYERNORM, bias = ph.has_bias != 0, logsm = ph.op == LP_OP_LogSoftmax;
    float eps = ph.alpha, v[PK_ROW_VALS], g[PK_ROW_VALS], b[PK_ROW_VALS];
#pragma unroll
    for (int j = 0; j < PK_ROW_VALS; j++) {
        int d = t + j * W;
        bool in = d < dlast;
        v[j] = in ? to_f<T>(__ldcg(x + (int64_t)d * sa)) : 0.0f;
        g[j] = in && ln ? to_f<T>(__ldg(gs + d)) : 0.0f;
        b[j] = in && bias ? to_f<T>(__ldg(bs + d)) : 0.0f;
    }
    float r0 = ln ? 0.0f : -INFINITY;
#pragma unroll
    for (int j = 0; j < PK_ROW_VALS; j++)
        if (t + j * W < dlast) r0 = ln ? r0 + v[j] : fmaxf(r0, v[j]);
    float c = group_reduce<W>(r0, !ln, scratch); /* LayerNorm: the sum; Softmax: the max */
    if (ln) c /= (float)dlast;
    float r1 = 0;
#pragma unroll
    for (int j = 0; j < PK_ROW_VALS; j++) {
        float u = v[j] - c;
        if (t + j * W < dlast) r1 += ln ? u * u : expf(u);
    }
    r1 = group_reduce<W>(r1, false, scratch); /* the squares' sum; the exponentials' sum */
    float k = ln ? rsqrtf(r1 / (float)dlast + eps) : 1.0f / r1, ls = ln ? 0.0f : logf(r1);
#pragma unroll
    for (int j = 0; j < PK_ROW_VALS; j++) {
        float u = v[j] - c;
        float o = ln ? u * k * g[j] + b[j] : logsm ? u - ls : expf(u) * k;
        if (t + j * W < dlast) y[t + j * W] = from_f<T>(o);
    }
}

/* A row too long for registers: three passes over it. */
__device__ void row_in_passes(const lp_persist_phase &ph, unsigned char *base, int row, int dlast, float *scratch) {
    const lp_persist_view &o = ph.out, &a = ph.a;
    int ea = esize(a.dtype), eo = esize(o.dtype), sa = a.rank ? (int)a.strides[a.rank - 1] : 1;
    const unsigned char *x = base + a.offset + (int64_t)row_offset(a, row) * ea;
    unsigned char *y = lp_persist_out(&ph, base) + (int64_t)row * dlast * eo;
    float s1 = 0;
    if (ph.kind == LP_PERSIST_LAYERNORM) {
        for (int d = threadIdx.x; d < dlast; d += blockDim.x) s1 += load_f(x + (int64_t)d * sa * ea, a.dtype, false);
        float mean = block_reduce(s1, false, scratch) / (float)dlast;
        float q = 0;
        for (int d = threadIdx.x; d < dlast; d += blockDim.x) {
            float u = load_f(x + (int64_t)d * sa * ea, a.dtype, false) - mean;
            q += u * u;
        }
        float rstd = rsqrtf(block_reduce(q, false, scratch) / (float)dlast + ph.alpha);
        int es = esize(ph.scale.dtype), eb = ph.has_bias ? esize(ph.bias.dtype) : 0;
        for (int d = threadIdx.x; d < dlast; d += blockDim.x) {
            float v = (load_f(x + (int64_t)d * sa * ea, a.dtype, false) - mean) * rstd *
                      load_f(base + ph.scale.offset + (int64_t)d * es, ph.scale.dtype, ph.scale.weight != 0);
            if (ph.has_bias)
                v += load_f(base + ph.bias.offset + (int64_t)d * eb, ph.bias.dtype, ph.bias.weight != 0);
            store_f(y + (int64_t)d * eo, o.dtype, v);
        }
        return;
    }
    float m = -INFINITY;
    for (int d = threadIdx.x; d < dlast; d += blockDim.x) m = fmaxf(m, load_f(x + (int64_t)d * sa * ea, a.dtype, false));
    m = block_reduce(m, true, scratch);
    for (int d = threadIdx.x; d < dlast; d += blockDim.x) s1 += expf(load_f(x + (int64_t)d * sa * ea, a.dtype, false) - m);
    float s2 = block_reduce(s1, false, scratch), ls = logf(s2);
    bool logsm = ph.op == LP_OP_LogSoftmax;
    for (int d = threadIdx.x; d < dlast; d += blockDim.x) {
        float u = load_f(x + (int64_t)d * sa * ea, a.dtype, false) - m;
        store_f(y + (int64_t)d * eo, o.dtype, logsm ? u - ls : expf(u) / s2);
    }
}

template <typename T>
__device__ __forceinline__ void rows_of(const lp_persist_phase &ph, unsigned char *base, int rows, int dlast,
                                        float *scratch) {
    if (dlast <= 32 * PK_ROW_VALS && (dlast <= 64 || rows >= (int)gridDim.x * PK_WARPS / 2)) {
        int warps = (int)gridDim.x * PK_WARPS, lane = threadIdx.x % 32;
        for (int row = (int)blockIdx.x * PK_WARPS + (int)threadIdx.x / 32; row < rows; row += warps)
            row_in_registers<32, T>(ph, base, row, lane, dlast, NULL);
        return;
    }
    for (int row = blockIdx.x; row < rows; row += gridDim.x)
        row_in_registers<PK_THREADS, T>(ph, base, row, threadIdx.x, dlast, scratch);
}

/* Short rows a warp each (many rows, or rows of at most 64), longer ones a
 * block each; rows too long for registers, or of mixed types, in passes. */
__device__ __noinline__ void run_rows(const lp_persist_phase &ph, unsigned char *base, float *scratch) {
    const lp_persist_view &o = ph.out;
    int dlast = o.rank ? (int)o.dims[o.rank - 1] : 1;
    if (dlast <= 0) return;
    int rows = (int)(numel(o) / dlast), dt = o.dtype;
    bool ln = ph.kind == LP_PERSIST_LAYERNORM;
    bool one_type = ph.a.dtype == dt && (!ln || ph.scale.dtype == dt) && (!ph.has_bias || ph.bias.dtype == dt);
    if (one_type && dlast <= PK_THREADS * PK_ROW_VALS) {
        if (dt == 1) rows_of<float>(ph, base, rows, dlast, scratch);
        else if (dt == 10) rows_of<__half>(ph, base, rows, dlast, scratch);
        else rows_of<__nv_bfloat16>(ph, base, rows, dlast, scratch);
        return;
    }
    for (int row = blockIdx.x; row < rows; row += gridDim.x) row_in_passes(ph, base, row, dlast, scratch);
}

/* ---- batched matmul (both operands activations) ------------------------------ */

/* One output a warp, the lanes splitting K (one a thread when K < 32). */
__device__ __forceinline__ void run_bmm(const lp_persist_phase &ph, unsigned char *base) {
    const lp_persist_view &o = ph.out, &a = ph.a, &b = ph.b;
    int r = o.rank;
    int n_out = numel(o), N = o.dims[r - 1], K = a.dims[r - 1];
    int ea = esize(a.dtype), eb = esize(b.dtype), eo = esize(o.dtype);
    int ska = a.strides[r - 1], skb = b.strides[r - 2];
    bool wide = K >= 32;
    int lane = threadIdx.x % 32;
    int who = wide ? ((int)blockIdx.x * blockDim.x + threadIdx.x) / 32
                       : (int)blockIdx.x * blockDim.x + threadIdx.x;
    int step = wide ? (int)gridDim.x * blockDim.x / 32 : (int)gridDim.x * blockDim.x;
    for (int i = who; i < n_out; i += step) {
        int t = i, n = t % N;
        t /= N;
        int m = t % o.dims[r - 2];
        t /= o.dims[r - 2];
        int oa = m * a.strides[r - 2], ob = n * b.strides[r - 1];
        for (int k = r - 3; k >= 0; k--) {
            int d = o.dims[k], c = t % d;
            t /= d;
            oa += c * a.strides[k];
            ob += c * b.strides[k];
        }
        const unsigned char *pa = base + a.offset + oa * ea, *pb = base + b.offset + ob * eb;
        float acc = 0;
        int k0 = wide ? lane : 0, kstep = wide ? 32 : 1;
#pragma unroll 4
        for (int k = k0; k < K; k += kstep)
            acc += load_f(pa + k * ska * ea, a.dtype, a.weight != 0) * load_f(pb + k * skb * eb, b.dtype, b.weight != 0);
        if (wide)
            for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (!wide || lane == 0)
            store_f(lp_persist_out(&ph, base) + view_at<int>(o, o.dims, r, i) * eo, o.dtype, acc * ph.alpha);
    }
}

/* ---- attention ------------------------------------------------------------------- */

/* v rounded to dtype dt, as a store and a load of it would. */
__device__ __forceinline__ float round_to(float v, int dt) {
    if (dt == 10) return __half2float(__float2half_rn(v));
    if (dt == 16) return __bfloat162float(__float2bfloat16_rn(v));
    return v;
}


/* Element i of a strided operand of type T (an activation: through L2). */
template <typename T>
__device__ __forceinline__ float att_ld(const unsigned char *p, int64_t i) {
    return to_f<T>(__ldcg((const T *)p + i));
}

/* A warp a query row (batch.., m), its scores in shared memory (sw: N
 * floats): up to 32 keys (and K <= 128), the lanes split K and each key's
 * dot product is a warp sum; more, lanes take keys n, n + 32, ..., each
 * dot product 8 loads in flight; softmax over the warp; then lanes take
 * columns of the values, 8 keys' loads in flight. One storage type T for every operand; roundings
 * as in lp_persist.h. The loops stay loops: the code is fetched cold. */
template <typename T>
__device__ __noinline__ void attention_of(const lp_persist_phase &ph, unsigned char *base, float *att) {
    const lp_persist_view &q = ph.a, &kt = ph.b, &v = ph.scale, &mk = ph.bias, &o = ph.out;
    int r = o.rank, dt = o.dtype;
    int M = (int)o.dims[r - 2], D = (int)o.dims[r - 1], K = (int)q.dims[r - 1], N = (int)kt.dims[r - 1];
    if (M <= 0 || D <= 0) return;
    int rows = (int)(numel(o) / D), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int qk = (int)q.strides[r - 1], kk = (int)kt.strides[r - 2], kn = (int)kt.strides[r - 1];
    int vn = (int)v.strides[r - 2], vd = (int)v.strides[r - 1], mn = ph.has_bias ? (int)mk.strides[r - 1] : 0;
    float *sw = att + warp * LP_PERSIST_ATTENTION_N;
    for (int row = (int)blockIdx.x * PK_WARPS + warp; row < rows; row += (int)gridDim.x * PK_WARPS) {
        int t = row / M, m = row - t * M, oq = m * (int)q.strides[r - 2], ok = 0, ov = 0;
        int om = ph.has_bias ? m * (int)mk.strides[r - 2] : 0;
        for (int k = r - 3; k >= 0; k--) {
            int d = (int)o.dims[k], c = t % d;
            t /= d;
            oq += c * (int)q.strides[k];
            ok += c * (int)kt.strides[k];
            ov += c * (int)v.strides[k];
            if (ph.has_bias) om += c * (int)mk.strides[k];
        }
        const unsigned char *qp = base + q.offset + (int64_t)oq * sizeof(T);
        const unsigned char *kp = base + kt.offset + (int64_t)ok * sizeof(T);
        const unsigned char *vp = base + v.offset + (int64_t)ov * sizeof(T);
        const unsigned char *mp = base + mk.offset + (int64_t)om * sizeof(T);
        float mx = -INFINITY;
        if (N <= 32 && K <= 32 * 4) {
            /* few keys: the lanes split K (the query's values loaded once), a key's dot
             * product is a warp sum, 4 keys' loads in flight; lane n keeps key n's score */
            float qr[4], mine = 0;
            float mval = ph.has_bias && lane < N ? att_ld<T>(mp, (int64_t)lane * mn) : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) qr[j] = lane + 32 * j < K ? att_ld<T>(qp, (int64_t)(lane + 32 * j) * qk) : 0.0f;
            for (int n0 = 0; n0 < N; n0 += 4) {
                float part[4];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    int n = n0 + u < N ? n0 + u : N - 1;
                    part[u] = 0;
#pragma unroll
                    for (int j = 0; j < 4; j++)
                        if (lane + 32 * j < K)
                            part[u] += qr[j] * att_ld<T>(kp, (int64_t)(lane + 32 * j) * kk + (int64_t)n * kn);
                }
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    for (int w = 16; w > 0; w >>= 1) part[u] += __shfl_xor_sync(0xffffffffu, part[u], w);
                    if (lane == n0 + u) mine = part[u];
                }
            }
            if (lane < N) {
                float x = round_to(ph.alpha * mine, dt);
                if (ph.has_bias) x = round_to(x + mval, dt);
                sw[lane] = x;
                mx = x;
            }
        } else {
            for (int n = lane; n < N; n += 32) {
                float acc = 0;
                for (int k0 = 0; k0 < K; k0 += 8) {
                    float qv[8], kv[8];
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        int k = k0 + u < K ? k0 + u : K - 1;
                        qv[u] = k0 + u < K ? att_ld<T>(qp, (int64_t)k * qk) : 0.0f;
                        kv[u] = att_ld<T>(kp, (int64_t)k * kk + (int64_t)n * kn);
                    }
#pragma unroll
                    for (int u = 0; u < 8; u++) acc += qv[u] * kv[u];
                }
                float x = round_to(ph.alpha * acc, dt);
                if (ph.has_bias) x = round_to(x + att_ld<T>(mp, (int64_t)n * mn), dt);
                sw[n] = x;
                mx = fmaxf(mx, x);
            }
        }
        for (int w = 16; w > 0; w >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, w));
        float sum = 0;
        for (int n = lane; n < N; n += 32) sum += expf(sw[n] - mx);
        for (int w = 16; w > 0; w >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, w);
        for (int n = lane; n < N; n += 32) sw[n] = round_to(expf(sw[n] - mx) / sum, dt);
        __syncwarp();
        for (int d = lane; d < D; d += 32) {
            float acc = 0;
            for (int n0 = 0; n0 < N; n0 += 8) {
                float vv[8];
#pragma unroll
                for (int u = 0; u < 8; u++) {
                    int n = n0 + u < N ? n0 + u : N - 1;
                    vv[u] = n0 + u < N ? att_ld<T>(vp, (int64_t)n * vn + (int64_t)d * vd) * sw[n] : 0.0f;
                }
#pragma unroll
                for (int u = 0; u < 8; u++) acc += vv[u];
            }
            ((T *)lp_persist_out(&ph, base))[view_at<int>(o, o.dims, r, row * D + d)] = from_f<T>(acc);
        }
        __syncwarp();
    }
}

/* att: PK_WARPS x LP_PERSIST_ATTENTION_N floats of shared memory. */
__device__ __noinline__ void run_attention(const lp_persist_phase &ph, unsigned char *base, float *att) {
    int dt = ph.out.dtype;
    if (ph.a.dtype != dt || ph.b.dtype != dt || ph.scale.dtype != dt || (ph.has_bias && ph.bias.dtype != dt))
        return; /* the planner gives every operand out's type */
    if (dt == 1) attention_of<float>(ph, base, att);
    else if (dt == 10) attention_of<__half>(ph, base, att);
    else attention_of<__nv_bfloat16>(ph, base, att);
}

/* ---- Gemm ----------------------------------------------------------------------- */

/* The bias and residual a Gemm epilogue adds at (m, n) (0 where absent). */
__device__ __forceinline__ float epilogue_bias(const lp_persist_phase &ph, const unsigned char *base, int n) {
    return ph.has_bias ? load_f(base + ph.bias.offset + (int64_t)n * esize(ph.bias.dtype), ph.bias.dtype, true) : 0.0f;
}
__device__ __forceinline__ float epilogue_res(const lp_persist_phase &ph, const unsigned char *base, int m, int n) {
    return ph.epi.residual ? load_f(base + ph.epi.res.offset + (int64_t)(m * (int)ph.n + n) * esize(ph.epi.res.dtype),
                                    ph.epi.res.dtype, ph.epi.res.weight != 0)
                           : 0.0f;
}
__device__ __forceinline__ float epilogue_finish(const lp_persist_phase &ph, float v, float bias, float res) {
    v += bias;
    if (ph.epi.act) v = pk_unary(ph.epi.act, v, ph.epi.act_alpha, ph.epi.act_beta);
    return v + res;
}
__device__ __forceinline__ float epilogue(const lp_persist_phase &ph, const unsigned char *base, int m, int n,
                                      float v) {
    return epilogue_finish(ph, v, epilogue_bias(ph, base, n), epilogue_res(ph, base, m, n));
}

/* Any dtype, any layout: one output a thread (with a LayerNorm prologue,
 * the thread takes its row's mean and deviation first). */
__device__ __noinline__ void run_gemm_plain(const lp_persist_phase &ph, unsigned char *base) {
    int M = ph.m, N = ph.n, K = ph.k;
    int ea = esize(ph.a.dtype), ew = esize(ph.b.dtype), eo = esize(ph.out.dtype);
    int es = esize(ph.scale.dtype), eb = esize(ph.ln_bias.dtype);
    for (int i = (int)blockIdx.x * blockDim.x + threadIdx.x; i < M * N;
         i += (int)gridDim.x * blockDim.x) {
        int m = i / N, n = i % N;
        const unsigned char *pa = base + ph.a.offset + m * K * ea;
        float mean = 0, rstd = 1;
        if (ph.ln) {
            float s = 0, q = 0;
            for (int k = 0; k < K; k++) s += load_f(pa + k * ea, ph.a.dtype, false);
            mean = s / (float)K;
            for (int k = 0; k < K; k++) {
                float u = load_f(pa + k * ea, ph.a.dtype, false) - mean;
                q += u * u;
            }
            rstd = rsqrtf(q / (float)K + ph.ln_eps);
        }
        float acc = 0;
        for (int k = 0; k < K; k++) {
            int wi = ph.trans_w ? n * K + k : k * N + n;
            float av = load_f(pa + k * ea, ph.a.dtype, false);
            if (ph.ln) {
                av = (av - mean) * rstd * load_f(base + ph.scale.offset + k * es, ph.scale.dtype, true);
                if (ph.ln_bias.dtype) av += load_f(base + ph.ln_bias.offset + k * eb, ph.ln_bias.dtype, true);
                av = round_to(av, ph.a.dtype);
            }
            acc += av * load_f(base + ph.b.offset + wi * ew, ph.b.dtype, true);
        }
        store_f(lp_persist_out(&ph, base) + view_at<int>(ph.out, ph.out.dims, ph.out.rank, i) * eo, ph.out.dtype,
                epilogue(ph, base, m, n, acc));
    }
}

template <bool BF16>
__device__ __forceinline__ void mma16816(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    if (BF16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                     "{%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                     "{%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* G column tiles x MT row tiles of one unit: this warp's share of K. wu
 * is the unit's first fragment (global memory, or its prefetched copy). */
template <int G, int MT, bool BF16>
__device__ __noinline__ void gemm_unit(const uint4 *wu, int P, int gn, const unsigned short *As, int lda, float *red, int mc) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int gq = lane >> 2, tq = lane & 3;
    float acc[G][MT][4];
#pragma unroll
    for (int ti = 0; ti < G; ti++)
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[ti][mt][e] = 0.0f;
    int p0 = warp * P / PK_WARPS, p1 = (warp + 1) * P / PK_WARPS;
    for (int p = p0; p < p1; p++) {
        uint4 bq[G];
#pragma unroll
        for (int ti = 0; ti < G; ti++)
            if (ti < gn) bq[ti] = wu[((size_t)ti * P + p) * 32 + lane];
#pragma unroll
        for (int s = 0; s < 2; s++) {
            int kb = p * 32 + s * 16 + 2 * tq;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const unsigned short *r0 = As + (size_t)(mt * 16 + gq) * lda + kb;
                const unsigned short *r8 = r0 + 8 * lda;
                unsigned a[4] = {*(const unsigned *)r0, *(const unsigned *)r8, *(const unsigned *)(r0 + 8),
                                 *(const unsigned *)(r8 + 8)};
#pragma unroll
                for (int ti = 0; ti < G; ti++)
                    if (ti < gn)
                        mma16816<BF16>(acc[ti][mt], a, s ? bq[ti].z : bq[ti].x, s ? bq[ti].w : bq[ti].y);
            }
        }
    }
    /* partial sums: red[warp][tile][row][col] */
#pragma unroll
    for (int ti = 0; ti < G; ti++)
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float *r = red + ((size_t)(warp * G + ti) * mc + mt * 16 + gq) * 8 + 2 * tq;
            r[0] = acc[ti][mt][0];
            r[1] = acc[ti][mt][1];
            r[8 * 8] = acc[ti][mt][2];
            r[8 * 8 + 1] = acc[ti][mt][3];
        }
}

/* The block's first unit of a Gemm phase, given the rotation. */
__device__ __forceinline__ int gemm_first_unit(int rot) {
    return (int)(((int)blockIdx.x - rot % (int)gridDim.x + (int)gridDim.x) % (int)gridDim.x);
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(gmem) : "memory");
}

/* Weights do not depend on earlier phases: the block's first unit of them
 * starts moving into shared memory before the interval's barrier. */
__device__ __forceinline__ void gemm_prefetch(const pk_gemm &pl, unsigned char *base, unsigned char *smem) {
    int u = gemm_first_unit(pl.rot);
    if (!pl.pre || u >= pl.units) return;
    int gn = pl.tiles - u * pl.g < pl.g ? pl.tiles - u * pl.g : pl.g;
    const uint4 *src = (const uint4 *)(base + pl.w) + (size_t)u * pl.g * pl.P * 32;
    uint4 *dst = (uint4 *)(smem + pl.pre_at);
    for (int v = threadIdx.x; v < gn * pl.P * 32; v += blockDim.x) cp_async16(dst + v, src + v);
    asm volatile("cp.async.commit_group;" ::: "memory");
}

/* The LayerNorm prologue on staged rows of A: a warp a row, in place, 8
 * values a load, the scale and bias staged beside them (gb: K of each);
 * each value rounded to A's type as a LAYERNORM phase would store it. */
template <typename T>
__device__ __forceinline__ void unpack8(uint4 v, float *f) {
    const T *e = reinterpret_cast<const T *>(&v);
#pragma unroll
    for (int j = 0; j < 8; j++) f[j] = to_f<T>(e[j]);
}

/* Loads of 16 bytes of activation rows: staged in shared memory, or
 * through L2 (ld.cg: another block may have written them this step). */
struct smem_rows {
    __device__ __forceinline__ uint4 operator()(const uint4 *p) const { return *p; }
};
struct l2_rows {
    __device__ __forceinline__ uint4 operator()(const uint4 *p) const { return __ldcg(p); }
};

/* A row's mean and 1 / sqrt(variance + eps) over K values of type T, by
 * one warp, 8 values a load (every lane gets both). */
template <typename T, typename L>
__device__ __forceinline__ void row_stats(const uint4 *x, int K, float eps, L ld, float *mean, float *rstd) {
    int chunks = K / 8, lane = threadIdx.x % 32;
    float s = 0, q = 0, f[8];
#pragma unroll 4
    for (int c = lane; c < chunks; c += 32) {
        unpack8<T>(ld(x + c), f);
#pragma unroll
        for (int j = 0; j < 8; j++) s += f[j];
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float m = s / (float)K;
#pragma unroll 4
    for (int c = lane; c < chunks; c += 32) {
        unpack8<T>(ld(x + c), f);
#pragma unroll
        for (int j = 0; j < 8; j++) q += (f[j] - m) * (f[j] - m);
    }
    for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
    *mean = m;
    *rstd = rsqrtf(q / (float)K + eps);
}

/* row_stats of rows warp, warp + PK_WARPS (below rows) of A, K <= 1024:
 * a lane's loads of both rows in flight at once and held for the second
 * pass, so the statistics take one trip to L2 (same sums, same order). */
template <typename T>
__device__ __forceinline__ void two_row_stats(const unsigned short *A, int K, int rows, float eps, float *stats) {
    static_assert(2 * PK_WARPS >= 16, "two rows a warp cover a unit's 16 rows");
    int chunks = K / 8, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint4 v[2][4];
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int r = warp + PK_WARPS * h, at = lane + 32 * c;
            v[h][c] = r < rows && at < chunks ? __ldcg((const uint4 *)(A + (size_t)r * K) + at) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float s = 0, q = 0, f[8];
#pragma unroll
        for (int c = 0; c < 4; c++) {
            unpack8<T>(v[h][c], f);
#pragma unroll
            for (int j = 0; j < 8; j++) s += f[j];
        }
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        float m = s / (float)K;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            if (lane + 32 * c >= chunks) break;
            unpack8<T>(v[h][c], f);
#pragma unroll
            for (int j = 0; j < 8; j++) q += (f[j] - m) * (f[j] - m);
        }
        for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
        int r = warp + PK_WARPS * h;
        if (lane == 0 && r < rows) {
            stats[2 * r] = m;
            stats[2 * r + 1] = rsqrtf(q / (float)K + eps);
        }
    }
}

/* One value of a LayerNorm prologue's output, rounded to T. */
template <typename T>
__device__ __forceinline__ T ln_value(float x, float mean, float rstd, float g, float b) {
    return from_f<T>((x - mean) * rstd * g + b);
}

/* The LayerNorm prologue on 8 values of A of type T (g, b: their scale and
 * bias), in place. */
template <typename T>
__device__ __forceinline__ void normalise8(uint4 &x, uint4 g, uint4 b, bool bias, float mean, float rstd) {
    float f[8], gf[8], bf[8];
    unpack8<T>(x, f);
    unpack8<T>(g, gf);
    if (bias) unpack8<T>(b, bf);
    T *e = reinterpret_cast<T *>(&x);
#pragma unroll
    for (int j = 0; j < 8; j++) e[j] = ln_value<T>(f[j], mean, rstd, gf[j], bias ? bf[j] : 0.0f);
}

/* normalise_rows for K <= 1024: a half-warp a row, 16 rows at a time, the
 * row's values held in registers from their load to their store (sums
 * over each 8 values, then over the chunks, then over the half-warp). */
template <typename T>
__device__ __forceinline__ void normalise_rows_held(unsigned short *As, int lda, int K, int rows, float eps,
                                                    const unsigned short *gb, bool bias) {
    static_assert(PK_THREADS == 256, "16 half-warps take 16 rows");
    int chunks = K / 8, l = threadIdx.x % 16;
    for (int r = threadIdx.x / 16; r - (int)threadIdx.x / 16 < rows; r += 16) {
        bool live = r < rows;
        uint4 *x = (uint4 *)(As + (size_t)(live ? r : 0) * lda);
        uint4 v[8];
        float f[8], s = 0, q = 0;
#pragma unroll
        for (int c = 0; c < 8; c++)
            v[c] = live && l + 16 * c < chunks ? x[l + 16 * c] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int c = 0; c < 8; c++) {
            unpack8<T>(v[c], f);
            s += ((f[0] + f[1]) + (f[2] + f[3])) + ((f[4] + f[5]) + (f[6] + f[7]));
        }
        for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        float m = s / (float)K;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            if (l + 16 * c >= chunks) break;
            unpack8<T>(v[c], f);
            float d = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) d += (f[j] - m) * (f[j] - m);
            q += d;
        }
        for (int o = 8; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
        float rstd = rsqrtf(q / (float)K + eps);
#pragma unroll
        for (int c = 0; c < 8; c++) {
            int at = l + 16 * c;
            if (!live || at >= chunks) break;
            normalise8<T>(v[c], ((const uint4 *)gb)[at], bias ? ((const uint4 *)(gb + K))[at] : make_uint4(0, 0, 0, 0),
                          bias, m, rstd);
            x[at] = v[c];
        }
    }
}

template <bool BF16>
__device__ __noinline__ void normalise_rows(const lp_persist_phase &ph, unsigned short *As, int lda, int rows,
                                            const unsigned short *gb) {
    typedef typename std::conditional<BF16, __nv_bfloat16, __half>::type T;
    int K = (int)ph.k, chunks = K / 8, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    bool bias = ph.ln_bias.dtype != 0;
    if (K <= 1024) {
        normalise_rows_held<T>(As, lda, K, rows, ph.ln_eps, gb, bias);
        return;
    }
    for (int r = warp; r < rows; r += PK_WARPS) {
        uint4 *x = (uint4 *)(As + (size_t)r * lda);
        float mean, rstd;
        row_stats<T>(x, K, ph.ln_eps, smem_rows(), &mean, &rstd);
#pragma unroll 2
        for (int c = lane; c < chunks; c += 32) {
            uint4 o = x[c];
            normalise8<T>(o, ((const uint4 *)gb)[c], bias ? ((const uint4 *)(gb + K))[c] : make_uint4(0, 0, 0, 0),
                          bias, mean, rstd);
            x[c] = o;
        }
    }
}

/* Sums the warps' partial products (red[warp][tile][row][col] over mc rows)
 * and stores rows m0 .. m0 + rows of gn tiles from tile j0 through the
 * epilogue; element pre_e (-1: none) takes the bias and residual given. */
__device__ __forceinline__ void store_tiles(const lp_persist_phase &ph, unsigned char *base, const float *red, int G,
                                            int mc, int rows, int gn, int j0, int m0, int pre_e, float pre_bias,
                                            float pre_res) {
    int N = (int)ph.n, eo = esize(ph.out.dtype);
    bool contiguous_out = ph.out.rank == 2 && ph.out.strides[0] == N && ph.out.strides[1] == 1;
    for (int e = threadIdx.x; e < gn * rows * 8; e += blockDim.x) {
        int ti = e / (rows * 8), row = (e / 8) % rows, col = e % 8;
        float v = 0;
        for (int w = 0; w < PK_WARPS; w++) v += red[((size_t)(w * G + ti) * mc + row) * 8 + col];
        int m = m0 + row, n = (j0 + ti) * 8 + col;
        int at = contiguous_out ? m * N + n : view_at<int>(ph.out, ph.out.dims, ph.out.rank, m * N + n);
        v = e == pre_e ? epilogue_finish(ph, v, pre_bias, pre_res) : epilogue(ph, base, m, n, v);
        store_f(lp_persist_out(&ph, base) + (int64_t)at * eo, ph.out.dtype, v);
    }
}

/* staged: the group (pk_gemm.a_group) whose rows of A this block's shared
 * memory holds (-1: none); this phase stages them unless they are its own. */
template <bool BF16>
__device__ __noinline__ void run_gemm_mma(const lp_persist_phase &ph, const pk_gemm &pl, int *staged,
                                          unsigned char *base, unsigned char *smem, unsigned long long *tr) {
    int M = (int)ph.m, K = (int)ph.k;
    int P = pl.P, tiles = pl.tiles, G = pl.g, mc = pl.mc, units = pl.units, first = gemm_first_unit(pl.rot);
    if (first >= units) return;
    bool kept = *staged == pl.a_group;
    *staged = M <= mc ? pl.a_group : -1;
    int lda = K + 8;
    const uint4 *bpre = (const uint4 *)(smem + pl.pre_at);
    unsigned short *As = (unsigned short *)(smem + pl.a_at);
    float *red = (float *)(smem + pl.red_at);
    unsigned short *gb = (unsigned short *)(smem + pl.ln_at);
    const uint4 *wp = (const uint4 *)(base + pl.w);
    const unsigned char *A = base + ph.a.offset;
    unsigned long long clock = tr && threadIdx.x == 0 ? globaltimer() : 0;
    /* the first unit's bias and residual, loaded while A arrives */
    float pre_bias = 0, pre_res = 0;
    {
        int rows0 = M < mc ? M : mc, gn0 = tiles - first * G < G ? tiles - first * G : G;
        int e = threadIdx.x;
        if (e < gn0 * rows0 * 8) {
            int ti = e / (rows0 * 8), row = (e / 8) % rows0, col = e % 8;
            int n = (first * G + ti) * 8 + col;
            pre_bias = epilogue_bias(ph, base, n);
            pre_res = epilogue_res(ph, base, row, n);
        }
    }
    for (int m0 = 0; m0 < M; m0 += mc) {
        int rows = M - m0 < mc ? M - m0 : mc;
        if (!kept) {
            /* stage rows m0 .. m0 + rows of A (zeros below), 16 bytes a thread */
            int vec_row = K / 8;
            __syncthreads();
            for (int v = threadIdx.x; v < mc * vec_row; v += blockDim.x) {
                int r = v / vec_row, c = v - r * vec_row;
                unsigned *dst = (unsigned *)(As + (size_t)r * lda + c * 8);
                if (r < rows) cp_async16(dst, A + ((int64_t)(m0 + r) * K + (int64_t)c * 8) * 2);
                else dst[0] = dst[1] = dst[2] = dst[3] = 0;
            }
            if (ph.ln)
                for (int v = threadIdx.x; v < 2 * vec_row; v += blockDim.x) {
                    const lp_persist_view &src = v < vec_row ? ph.scale : ph.ln_bias;
                    if (v < vec_row || src.dtype)
                        cp_async16(gb + (size_t)v * 8, base + src.offset + (size_t)(v % vec_row) * 16);
                }
            asm volatile("cp.async.commit_group;" ::: "memory");
        }
        asm volatile("cp.async.wait_all;" ::: "memory");
        __syncthreads();
        stamp(tr, PK_T_STAGE, &clock);
        if (ph.ln && !kept) {
            normalise_rows<BF16>(ph, As, lda, rows, gb);
            __syncthreads();
            stamp(tr, PK_T_PROLOGUE, &clock);
        }
        int mt = mc / 16;
        for (int u = first; u < units; u += gridDim.x) {
            int j0 = u * G, gn = tiles - j0 < G ? tiles - j0 : G;
            const uint4 *wu = pl.pre && u == first ? bpre : wp + (size_t)j0 * P * 32;
            switch (G * 16 + mt) {
#define PK_UNIT(g_, m_) \
    case g_ * 16 + m_: gemm_unit<g_, m_, BF16>(wu, P, gn, As, lda, red, mc); break;
                PK_UNIT(1, 1) PK_UNIT(1, 2) PK_UNIT(1, 4) PK_UNIT(1, 8) PK_UNIT(2, 1) PK_UNIT(4, 1)
#undef PK_UNIT
            default: break;
            }
            __syncthreads();
            stamp(tr, PK_T_MMA, &clock);
            store_tiles(ph, base, red, G, mc, rows, gn, j0, m0, u == first && m0 == 0 ? (int)threadIdx.x : -1,
                        pre_bias, pre_res);
            __syncthreads();
            stamp(tr, PK_T_STORE, &clock);
        }
    }
}

/* ---- the resident kernel's Gemm ------------------------------------------------------- */


/* Tiles j0 .. j0 + gn of a Gemm whose weights this block holds in shared
 * memory (wb: their fragments, tile-major, packed with the resident K
 * order: lane (gq, tq) of k-step pair p holds k = 32p + 8tq + 2r in word
 * r), so that A's matching values are 8 consecutive ones, one 16-byte load
 * a row from L2. 16 rows at a time; the warps split K, each with up to 4
 * k-step pairs' loads in flight; a LayerNorm prologue normalises A as it
 * arrives (lnv: scale [K] and bias [K]; stats: the rows' mean and 1 /
 * deviation, computed unless keep: the phase before left them). */
template <int G, bool BF16>
__device__ __noinline__ void resident_tiles(const lp_persist_phase &ph, const uint4 *wb, int P, int j0, int gn,
                                            unsigned char *base, float *red, const unsigned short *lnv,
                                            float *stats, bool keep, unsigned long long *tr) {
    typedef typename std::conditional<BF16, __nv_bfloat16, __half>::type T;
    int M = (int)ph.m, K = (int)ph.k, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int gq = lane >> 2, tq = lane & 3;
    bool ln = ph.ln != 0, bias = ph.ln_bias.dtype != 0;
    const unsigned short *A = (const unsigned short *)(base + ph.a.offset);
    const uint4 *gv = (const uint4 *)lnv, *bv = (const uint4 *)(lnv + K);
    int p0 = warp * P / PK_WARPS, p1 = (warp + 1) * P / PK_WARPS;
    for (int m0 = 0; m0 < M; m0 += 16) {
        int rows = M - m0 < 16 ? M - m0 : 16;
        /* this thread's first output's bias and residual, loaded while A arrives */
        int pre_e = -1;
        float pre_bias = 0, pre_res = 0;
        if ((int)threadIdx.x < gn * rows * 8) {
            int e = threadIdx.x, ti = e / (rows * 8), row = (e / 8) % rows, n = (j0 + ti) * 8 + e % 8;
            pre_e = e;
            pre_bias = epilogue_bias(ph, base, n);
            pre_res = epilogue_res(ph, base, m0 + row, n);
        }
        unsigned long long clock = tr && threadIdx.x == 0 ? globaltimer() : 0;
        if (ln && !keep && K <= 1024) {
            two_row_stats<T>(A + (size_t)m0 * K, K, rows, ph.ln_eps, stats);
            __syncthreads();
            stamp(tr, PK_T_PROLOGUE, &clock);
        } else if (ln && !keep) {
            for (int r = warp; r < rows; r += PK_WARPS) {
                float mean, rstd;
                row_stats<T>((const uint4 *)(A + (size_t)(m0 + r) * K), K, ph.ln_eps, l2_rows(), &mean, &rstd);
                if (lane == 0) {
                    stats[2 * r] = mean;
                    stats[2 * r + 1] = rstd;
                }
            }
            __syncthreads();
            stamp(tr, PK_T_PROLOGUE, &clock);
        }
        bool in[2] = {gq < rows, gq + 8 < rows};
        const uint4 *ar[2] = {(const uint4 *)(A + (size_t)(m0 + (in[0] ? gq : 0)) * K),
                              (const uint4 *)(A + (size_t)(m0 + (in[1] ? gq + 8 : 0)) * K)};
        float mean[2] = {0, 0}, rstd[2] = {1, 1};
        if (ln)
            for (int h = 0; h < 2; h++)
                if (in[h]) mean[h] = stats[2 * (gq + 8 * h)], rstd[h] = stats[2 * (gq + 8 * h) + 1];
        float acc[G][4];
#pragma unroll
        for (int ti = 0; ti < G; ti++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[ti][e] = 0.0f;
        for (int p = p0; p < p1; p += 4) {
            uint4 av[4][2];
#pragma unroll
            for (int q = 0; q < 4; q++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    av[q][h] = p + q < p1 && in[h] ? __ldcg(ar[h] + (p + q) * 4 + tq) : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int q = 0; q < 4; q++) {
                if (p + q >= p1) break;
                uint4 bq[G];
#pragma unroll
                for (int ti = 0; ti < G; ti++)
                    if (ti < gn) bq[ti] = wb[((size_t)ti * P + p + q) * 32 + lane];
                if (ln) {
                    int c = (p + q) * 4 + tq;
                    uint4 g = gv[c], b = bias ? bv[c] : make_uint4(0, 0, 0, 0);
                    normalise8<T>(av[q][0], g, b, bias, mean[0], rstd[0]);
                    normalise8<T>(av[q][1], g, b, bias, mean[1], rstd[1]);
                }
                unsigned a0[4] = {av[q][0].x, av[q][1].x, av[q][0].y, av[q][1].y};
                unsigned a1[4] = {av[q][0].z, av[q][1].z, av[q][0].w, av[q][1].w};
#pragma unroll
                for (int ti = 0; ti < G; ti++)
                    if (ti < gn) {
                        mma16816<BF16>(acc[ti], a0, bq[ti].x, bq[ti].y);
                        mma16816<BF16>(acc[ti], a1, bq[ti].z, bq[ti].w);
                    }
            }
        }
#pragma unroll
        for (int ti = 0; ti < G; ti++) {
            float *r = red + ((size_t)(warp * G + ti) * 16 + gq) * 8 + 2 * tq;
            r[0] = acc[ti][0];
            r[1] = acc[ti][1];
            r[8 * 8] = acc[ti][2];
            r[8 * 8 + 1] = acc[ti][3];
        }
        __syncthreads();
        stamp(tr, PK_T_MMA, &clock);
        store_tiles(ph, base, red, G, 16, rows, gn, j0, m0, pre_e, pre_bias, pre_res);
        __syncthreads();
        stamp(tr, PK_T_STORE, &clock);
    }
}

/* This block's tiles of a resident Gemm (pk_plan_resident), res_g at a
 * time. The work region holds the row statistics, the LayerNorm vectors,
 * then the partial sums. */
template <bool BF16>
__device__ __noinline__ void run_gemm_resident(const lp_persist_phase &ph, const pk_gemm &pl, unsigned char *base,
                                               unsigned char *smem, unsigned long long *tr) {
    int t0 = pk_resident_first_tile(pl.tiles, blockIdx.x, gridDim.x);
    int t1 = pk_resident_first_tile(pl.tiles, blockIdx.x + 1, gridDim.x);
    if (t0 >= t1) return;
    int K = (int)ph.k, P = pl.P, G = pl.res_g;
    float *stats = (float *)smem;
    unsigned short *lnv = (unsigned short *)(smem + 16 * 2 * 4);
    float *red = (float *)(lnv + (ph.ln ? 2 * K : 0));
    bool keep = pl.res_keep != 0;
    unsigned long long clock = tr && threadIdx.x == 0 ? globaltimer() : 0;
    if (ph.ln && !keep) {
        for (int v = threadIdx.x; v < 2 * K / 8; v += blockDim.x) {
            const lp_persist_view &src = v < K / 8 ? ph.scale : ph.ln_bias;
            if (v < K / 8 || src.dtype)
                ((uint4 *)lnv)[v] = __ldg((const uint4 *)(base + src.offset) + v % (K / 8));
        }
        __syncthreads();
        stamp(tr, PK_T_STAGE, &clock);
    }
    const uint4 *w = (const uint4 *)(smem + pl.res_at);
    for (int l0 = 0; l0 < t1 - t0; l0 += G) {
        int gn = t1 - t0 - l0 < G ? t1 - t0 - l0 : G;
        bool again = keep || (l0 > 0 && ph.m <= 16); /* the statistics of this phase's first unit */
        const uint4 *wb = w + (size_t)l0 * P * 32;
        if (G == 1) resident_tiles<1, BF16>(ph, wb, P, t0 + l0, gn, base, red, lnv, stats, again, tr);
        else if (G == 2) resident_tiles<2, BF16>(ph, wb, P, t0 + l0, gn, base, red, lnv, stats, again, tr);
        else resident_tiles<4, BF16>(ph, wb, P, t0 + l0, gn, base, red, lnv, stats, again, tr);
    }
}

/* ---- the kernels ------------------------------------------------------------------------ */

/* A phase that is not a Gemm. */
__device__ __forceinline__ void run_other(const lp_persist_phase &ph, unsigned char *base, float *scratch, float *att) {
    switch (ph.kind) {
    case LP_PERSIST_COPY:
    case LP_PERSIST_ELEMENTWISE: run_elementwise(ph, base); break;
    case LP_PERSIST_LAYERNORM:
    case LP_PERSIST_SOFTMAX: run_rows(ph, base, scratch); break;
    case LP_PERSIST_BATCHED_MATMUL: run_bmm(ph, base); break;
    case LP_PERSIST_ATTENTION: run_attention(ph, base, att); break;
    default: break;
    }
}


__global__ void __launch_bounds__(PK_THREADS, 1)
    persist_kernel(const lp_persist_phase *phases, const pk_gemm *plans, int first, int count, unsigned char *base,
                   unsigned long long *bar, unsigned long long *trace, int n_phases) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ lp_persist_phase slot[2];
    __shared__ pk_gemm plan[PK_LAUNCH_PHASES];
    __shared__ float att[PK_WARPS][LP_PERSIST_ATTENTION_N];
    __shared__ float scratch[PK_WARPS + 1];
    const int words = (int)(sizeof(lp_persist_phase) / sizeof(int));
    static_assert(sizeof(lp_persist_phase) % sizeof(int) == 0 && sizeof(lp_persist_phase) / sizeof(int) <= PK_THREADS,
                  "a phase is loaded one word a thread");
    if (threadIdx.x < words) ((int *)&slot[0])[threadIdx.x] = ((const int *)&phases[first])[threadIdx.x];
    static_assert(sizeof(pk_gemm) % sizeof(int) == 0, "plans are loaded a word a thread");
    for (int w = threadIdx.x; w < count * (int)(sizeof(pk_gemm) / sizeof(int)); w += blockDim.x)
        ((int *)plan)[w] = ((const int *)&plans[first])[w];
    __syncthreads();
    int staged = -1;
    unsigned long long target = 0;
    if (threadIdx.x == 0) {
        target = barrier_count(bar);
        target -= target % gridDim.x;
    }
    for (int i = first; i < first + count; i++) {
        const lp_persist_phase &ph = slot[(i - first) & 1];
        /* the next phase's description, loaded while this one runs */
        int next = 0;
        if (i + 1 < first + count && threadIdx.x < words) next = ((const int *)&phases[i + 1])[threadIdx.x];
        bool mma = ph.kind == LP_PERSIST_GEMM && ph.b.weight == PK_PACKED;
        unsigned long long *tr = trace ? trace + ((size_t)blockIdx.x * n_phases + i) * PK_TRACE : NULL;
        if (tr && threadIdx.x == 0) {
            tr[0] = globaltimer();
            tr[PK_T_STAGE] = tr[PK_T_PROLOGUE] = tr[PK_T_MMA] = tr[PK_T_STORE] = 0;
        }
        const pk_gemm &pl = plan[i - first];
        if (pl.head)
            for (int j = i; j < first + count && (j == i || !plan[j - first].head); j++)
                gemm_prefetch(plan[j - first], base, smem);
        if (ph.sync) grid_sync(bar, &target);
        if (tr && threadIdx.x == 0) tr[1] = globaltimer();
        if (ph.kind != LP_PERSIST_GEMM) run_other(ph, base, scratch, &att[0][0]);
        else if (!mma) run_gemm_plain(ph, base);
        else if (ph.b.dtype == 16) run_gemm_mma<true>(ph, pl, &staged, base, smem, tr);
        else run_gemm_mma<false>(ph, pl, &staged, base, smem, tr);
        if (tr) {
            __syncthreads();
            if (threadIdx.x == 0) tr[2] = globaltimer();
        }
        if (threadIdx.x < words) ((int *)&slot[(i - first + 1) & 1])[threadIdx.x] = next;
        __syncthreads();
    }
    /* prefetches this block issued but had no unit to use them for */
    asm volatile("cp.async.wait_all;" ::: "memory");
}

/* The resident kernel's doorbells, in device memory. A step (on the
 * card's stream, graph-capturable): done = 0, go = 1, then wait for
 * done == 1. Block 0 takes go (sets it back to 0) and moves epoch on; the
 * other blocks wait for epoch to move; after the step's last barrier block
 * 0 sets done. stop = 1 with go ends the kernel. */
struct pk_control {
    unsigned go, done, epoch, stop;
};

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_release(unsigned *p, unsigned v) {
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* Holds every packed Gemm's tiles of this block in shared memory (loaded
 * once), then runs one step a doorbell until told to stop. */
__global__ void __launch_bounds__(PK_THREADS, 1)
    resident_kernel(const lp_persist_phase *phases, const pk_gemm *plans, int n, unsigned char *base,
                    unsigned long long *bar, pk_control *ctl, unsigned long long *trace) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ lp_persist_phase slot[2];
    __shared__ float scratch[PK_WARPS + 1];
    __shared__ unsigned stop;
    const int words = (int)(sizeof(lp_persist_phase) / sizeof(int));
    for (int i = 0; i < n; i++) {
        const pk_gemm &pl = plans[i];
        if (!pl.res_copy) continue;
        int t0 = pk_resident_first_tile(pl.tiles, blockIdx.x, gridDim.x);
        int t1 = pk_resident_first_tile(pl.tiles, blockIdx.x + 1, gridDim.x);
        const uint4 *src = (const uint4 *)(base + pl.w) + (size_t)t0 * pl.P * 32;
        uint4 *dst = (uint4 *)(smem + pl.res_at);
        for (int v = threadIdx.x; v < (t1 - t0) * pl.P * 32; v += blockDim.x) cp_async16(dst + v, src + v);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
    unsigned long long target = 0;
    unsigned epoch = 0;
    if (threadIdx.x == 0) {
        target = barrier_count(bar);
        target -= target % gridDim.x;
    }
    for (;;) {
        if (threadIdx.x == 0) {
            if (blockIdx.x == 0) {
                while (ld_acquire(&ctl->go) == 0) {
                }
                *(volatile unsigned *)&ctl->go = 0;
                st_release(&ctl->epoch, epoch + 1);
            } else {
                while (ld_acquire(&ctl->epoch) == epoch) {
                }
            }
            epoch++;
            stop = *(volatile unsigned *)&ctl->stop;
        }
        if (threadIdx.x < words) ((int *)&slot[0])[threadIdx.x] = ((const int *)&phases[0])[threadIdx.x];
        __syncthreads();
        if (stop) break;
        for (int i = 0; i < n; i++) {
            const lp_persist_phase &ph = slot[i & 1];
            int next = 0;
            if (i + 1 < n && threadIdx.x < words) next = ((const int *)&phases[i + 1])[threadIdx.x];
            unsigned long long *tr = trace ? trace + ((size_t)blockIdx.x * n + i) * PK_TRACE : NULL;
            if (tr && threadIdx.x == 0) {
                tr[0] = globaltimer();
                tr[PK_T_STAGE] = tr[PK_T_PROLOGUE] = tr[PK_T_MMA] = tr[PK_T_STORE] = 0;
            }
            if (ph.sync) grid_sync(bar, &target);
            if (tr && threadIdx.x == 0) tr[1] = globaltimer();
            const pk_gemm &pl = plans[i];
            if (ph.kind != LP_PERSIST_GEMM) run_other(ph, base, scratch, (float *)smem);
            else if (!pl.res_g) run_gemm_plain(ph, base);
            else if (ph.b.dtype == 16) run_gemm_resident<true>(ph, pl, base, smem, tr);
            else run_gemm_resident<false>(ph, pl, base, smem, tr);
            if (tr) {
                __syncthreads();
                if (threadIdx.x == 0) tr[2] = globaltimer();
            }
            if (threadIdx.x < words) ((int *)&slot[(i + 1) & 1])[threadIdx.x] = next;
            __syncthreads();
        }
        grid_sync(bar, &target);
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            __threadfence_system();
            st_release(&ctl->done, 1);
        }
    }
}

/* ---- packing ------------------------------------------------------------------------------ */

/* Packed word ((j * P + p) * 32 + lane) * 4 + r holds W[k][n], W[k + 1][n]
 * for n = 8j + lane / 4, k = 16 (2p + r / 2) + 2 (lane % 4) + 8 (r % 2): the
 * B fragments of k-steps 2p and 2p + 1 of column tile j. The resident order
 * (resident 1) permutes K within each 32: k = 32p + 8 (lane % 4) + 2r, so
 * that a lane's values of A are 8 consecutive ones. pack: row-major (or
 * [N, K] with trans) w -> packed; else the inverse. */
__global__ void rearrange_kernel(unsigned *packed, unsigned short *w, int64_t K, int64_t N, int trans, int pack,
                                 int resident) {
    int64_t P = K / 32, words = (N / 8) * P * 128;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < words;
         i += (int64_t)gridDim.x * blockDim.x) {
        int r = (int)(i % 4), lane = (int)((i / 4) % 32);
        int64_t jp = i / 128, p = jp % P, j = jp / P;
        int64_t k = resident ? 32 * p + 8 * (lane % 4) + 2 * r : 16 * (2 * p + r / 2) + 2 * (lane % 4) + 8 * (r % 2);
        int64_t n = 8 * j + lane / 4;
        int64_t lo = trans ? n * K + k : k * N + n, hi = trans ? n * K + k + 1 : (k + 1) * N + n;
        if (pack) {
            packed[i] = (unsigned)w[lo] | ((unsigned)w[hi] << 16);
        } else {
            w[lo] = (unsigned short)(packed[i] & 0xffffu);
            w[hi] = (unsigned short)(packed[i] >> 16);
        }
    }
}

#define GP_CHECK(d, stmt)                                                                    \
    do {                                                                                     \
        cudaError_t e_ = (stmt);                                                             \
        if (e_ != cudaSuccess)                                                               \
            return lp_error((d), LP_ERR_INTERNAL, "card %d: %s failed: %s", card, #stmt,     \
                            cudaGetErrorString(e_));                                         \
    } while (0)

/* Rearranges one Gemm weight in place (through a temporary copy): into
 * fragment order, or back to its own layout. */
static lp_status rearrange(const lp_persist_phase *h, unsigned char *base, bool pack, bool resident, int card,
                           lp_diag *d) {
    size_t bytes = (size_t)(h->k * h->n) * 2;
    void *tmp = NULL;
    GP_CHECK(d, cudaMalloc(&tmp, bytes));
    unsigned char *w = base + h->b.offset;
    cudaError_t e = cudaMemcpy(tmp, w, bytes, cudaMemcpyDeviceToDevice);
    if (e == cudaSuccess) {
        if (pack)
            rearrange_kernel<<<264, 256>>>((unsigned *)w, (unsigned short *)tmp, h->k, h->n, h->trans_w, 1, resident);
        else
            rearrange_kernel<<<264, 256>>>((unsigned *)tmp, (unsigned short *)w, h->k, h->n, h->trans_w, 0, resident);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    cudaFree(tmp);
    if (e != cudaSuccess)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: %s a Gemm weight failed: %s", card,
                        pack ? "packing" : "restoring", cudaGetErrorString(e));
    return LP_OK;
}

/* Whether an earlier phase than i marked the same weight with `mark`. */
static bool marked_before(const lp_gpu_persist *gp, int i, int mark) {
    for (int j = 0; j < i; j++)
        if (gp->host[j].kind == LP_PERSIST_GEMM && gp->host[j].b.weight == mark &&
            gp->host[j].b.offset == gp->host[i].b.offset)
            return true;
    return false;
}

static lp_status resident_stop(lp_gpu_persist *gp, lp_diag *d);

/* Every weight packed at open back in its original layout (each once). */
lp_status lp_gpu_persist_unpack(lp_gpu_persist *gp, unsigned char *base, lp_diag *d) {
    lp_status st0 = resident_stop(gp, d);
    if (st0 != LP_OK) return st0;
    for (int i = 0; i < gp->p->n_phases; i++) {
        lp_persist_phase *h = &gp->host[i];
        if (h->kind != LP_PERSIST_GEMM || h->b.weight != PK_PACKED) continue;
        bool done = marked_before(gp, i, PK_PACKED + 1);
        h->b.weight = PK_PACKED + 1; /* unpacked again */
        lp_status st = done ? LP_OK : rearrange(h, base, false, gp->resident, gp->card, d);
        if (st != LP_OK) return st;
    }
    gp->packed = 0;
    return LP_OK;
}

/* Marks the Gemm weights the kernel packs (before any is rearranged, so
 * that a layout that does not fit leaves the card as it was). */
static void mark_packable(lp_gpu_persist *gp) {
    for (int i = 0; i < gp->p->n_phases; i++)
        if (pk_packable(gp->p, i, gp->blocks)) gp->host[i].b.weight = PK_PACKED;
}

static lp_status pack_weights(lp_gpu_persist *gp, unsigned char *base, lp_diag *d) {
    for (int i = 0; i < gp->p->n_phases; i++) {
        lp_persist_phase *h = &gp->host[i];
        if (h->kind != LP_PERSIST_GEMM || h->b.weight != PK_PACKED) continue;
        if (marked_before(gp, i, PK_PACKED)) continue; /* packed for an earlier phase */
        lp_status st = rearrange(h, base, true, gp->resident, gp->card, d);
        if (st != LP_OK) return st;
        gp->packed++;
    }
    return LP_OK;
}

static lp_status mem_op(lp_gpu_persist *gp, pk_mem_op op, cudaStream_t s, unsigned *addr, unsigned v,
                        unsigned flags, lp_diag *d) {
    CUresult r = op((CUstream)s, (CUdeviceptr)addr, v, flags);
    if (r != CUDA_SUCCESS)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: a stream memory operation of the resident kernel failed "
                        "(CUresult %d)", gp->card, (int)r);
    return LP_OK;
}

static lp_status resident_launch(lp_gpu_persist *gp, unsigned char *base, unsigned long long *trace, lp_diag *d);

/* The resident layout, its doorbells and its stream; *why set (and
 * nothing changed) when the program cannot run resident. */
static lp_status resident_setup(lp_gpu_persist *gp, const pk_gemm *plans, char *why, size_t why_len, lp_diag *d) {
    int card = gp->card, dev = 0, optin = 0;
    cudaFuncAttributes fa;
    GP_CHECK(d, cudaGetDevice(&dev));
    GP_CHECK(d, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    GP_CHECK(d, cudaFuncGetAttributes(&fa, resident_kernel));
    pk_gemm *pl = (pk_gemm *)plans;
    int64_t budget = (int64_t)optin - (int64_t)fa.sharedSizeBytes;
    if (!gp->cooperative) {
        snprintf(why, why_len, "the GPU has no cooperative launch, which keeps every block resident");
        return LP_OK;
    }
    if (!pk_plan_resident(gp->p, gp->host, gp->blocks, budget, pl, &gp->layout, why, why_len)) return LP_OK;
    gp->smem = (size_t)(gp->layout.work_bytes + gp->layout.weight_bytes);
    GP_CHECK(d, cudaFuncSetAttribute(resident_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)gp->smem));
    int per_sm = 0;
    GP_CHECK(d, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, resident_kernel, PK_THREADS, gp->smem));
    if (per_sm < 1) {
        snprintf(why, why_len, "the resident kernel with %zu bytes of shared memory does not fit an SM", gp->smem);
        return LP_OK;
    }
    void *fw = NULL, *fa2 = NULL;
    cudaDriverEntryPointQueryResult q1 = cudaDriverEntryPointSymbolNotFound, q2 = q1;
    if (cudaGetDriverEntryPointByVersion("cuStreamWriteValue32", &fw, 12000, cudaEnableDefault, &q1) != cudaSuccess ||
        cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", &fa2, 12000, cudaEnableDefault, &q2) != cudaSuccess ||
        q1 != cudaDriverEntryPointSuccess || q2 != cudaDriverEntryPointSuccess || !fw || !fa2) {
        snprintf(why, why_len,
                 "the driver has no stream memory operations (cuStreamWriteValue32, cuStreamWaitValue32)");
        return LP_OK;
    }
    gp->write32 = (pk_mem_op)fw;
    gp->wait32 = (pk_mem_op)fa2;
    GP_CHECK(d, cudaMalloc(&gp->ctl, sizeof *gp->ctl));
    GP_CHECK(d, cudaMemset(gp->ctl, 0, sizeof *gp->ctl));
    GP_CHECK(d, cudaStreamCreateWithFlags(&gp->ks, cudaStreamNonBlocking));
    gp->resident = true;
    return LP_OK;
}

static lp_status open_program(const lp_persist_program *p, unsigned char *base, int card, bool resident,
                              lp_gpu_persist **out, char *why, size_t why_len, lp_diag *d) {
    *out = NULL;
    lp_gpu_persist *gp = (lp_gpu_persist *)calloc(1, sizeof *gp);
    if (!gp) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    gp->p = p;
    gp->card = card;
    gp->host = (lp_persist_phase *)malloc(((size_t)p->n_phases + 1) * sizeof *gp->host);
    pk_gemm *plans = (pk_gemm *)calloc((size_t)p->n_phases + 1, sizeof *plans);
    if (!gp->host || !plans) {
        free(plans);
        free(gp->host);
        free(gp);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    memcpy(gp->host, p->phases, (size_t)p->n_phases * sizeof *gp->host);
    int dev = 0, sms = 0, coop = 0;
    lp_status st = LP_OK;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(persist_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PK_SMEM);
    int per_sm = 0;
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persist_kernel, PK_THREADS, PK_SMEM);
    if (e == cudaSuccess && per_sm < 1)
        st = lp_error(d, LP_ERR_INTERNAL, "card %d: the persistent kernel does not fit an SM", card);
    gp->blocks = sms;
    gp->cooperative = coop != 0;
    if (e == cudaSuccess && st == LP_OK) e = cudaMalloc(&gp->bar, sizeof *gp->bar);
    if (e == cudaSuccess && st == LP_OK) e = cudaMemset(gp->bar, 0, sizeof *gp->bar);
    if (e != cudaSuccess && st == LP_OK)
        st = lp_error(d, LP_ERR_INTERNAL, "card %d: setting up the persistent kernel: %s", card,
                      cudaGetErrorString(e));
    if (st == LP_OK) {
        mark_packable(gp);
        pk_plan_gemms(gp->p, gp->host, gp->blocks, plans);
        if (resident) st = resident_setup(gp, plans, why, why_len, d);
    }
    if (st == LP_OK && resident && !gp->resident) {
        free(plans);
        lp_gpu_persist_close(gp);
        return LP_OK; /* why says why; nothing was packed */
    }
    if (st == LP_OK) st = pack_weights(gp, base, d);
    if (st == LP_OK) {
        e = cudaMalloc(&gp->dev, ((size_t)p->n_phases + 1) * sizeof *gp->dev);
        if (e == cudaSuccess)
            e = cudaMemcpy(gp->dev, gp->host, (size_t)p->n_phases * sizeof *gp->dev, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMalloc(&gp->plans, ((size_t)p->n_phases + 1) * sizeof *plans);
        if (e == cudaSuccess)
            e = cudaMemcpy(gp->plans, plans, (size_t)p->n_phases * sizeof *plans, cudaMemcpyHostToDevice);
        if (e != cudaSuccess)
            st = lp_error(d, LP_ERR_INTERNAL, "card %d: uploading the persistent program: %s", card,
                          cudaGetErrorString(e));
    }
    free(plans);
    if (st == LP_OK && gp->resident) st = resident_launch(gp, base, NULL, d);
    if (st != LP_OK) {
        lp_gpu_persist_close(gp);
        return st;
    }
    *out = gp;
    return LP_OK;
}

lp_status lp_gpu_persist_open(const lp_persist_program *p, unsigned char *base, int card, lp_gpu_persist **out,
                              lp_diag *d) {
    char why[8];
    return open_program(p, base, card, false, out, why, sizeof why, d);
}

lp_status lp_gpu_persist_open_resident(const lp_persist_program *p, unsigned char *base, int card,
                                       lp_gpu_persist **out, char *why, size_t why_len, lp_diag *d) {
    why[0] = 0;
    return open_program(p, base, card, true, out, why, why_len, d);
}

static lp_status resident_launch(lp_gpu_persist *gp, unsigned char *base, unsigned long long *trace, lp_diag *d) {
    int card = gp->card;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)gp->blocks);
    cfg.blockDim = dim3(PK_THREADS);
    cfg.dynamicSmemBytes = gp->smem;
    cfg.stream = gp->ks;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    const lp_persist_phase *phases = gp->dev;
    const pk_gemm *plans = gp->plans;
    int n = gp->p->n_phases;
    GP_CHECK(d, cudaMemset(gp->ctl, 0, sizeof *gp->ctl));
    GP_CHECK(d, cudaLaunchKernelEx(&cfg, resident_kernel, phases, plans, n, base, gp->bar, gp->ctl, trace));
    gp->running = true;
    gp->last = NULL;
    return LP_OK;
}

/* Rings stop after the last step, and waits (at most 10 s) for the kernel to end. */
static lp_status resident_stop(lp_gpu_persist *gp, lp_diag *d) {
    if (!gp->running) return LP_OK;
    gp->running = false;
    cudaStream_t s = gp->last ? gp->last : (cudaStream_t)0;
    lp_status st = mem_op(gp, gp->write32, s, &gp->ctl->stop, 1, CU_STREAM_WRITE_VALUE_DEFAULT, d);
    if (st == LP_OK) st = mem_op(gp, gp->write32, s, &gp->ctl->go, 1, CU_STREAM_WRITE_VALUE_DEFAULT, d);
    if (st != LP_OK) return st;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        cudaError_t e = cudaStreamQuery(gp->ks);
        if (e == cudaSuccess) return LP_OK;
        if (e != cudaErrorNotReady)
            return lp_error(d, LP_ERR_INTERNAL, "card %d: the resident kernel failed: %s", gp->card,
                            cudaGetErrorString(e));
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 > 10.0)
            return lp_error(d, LP_ERR_INTERNAL, "card %d: the resident kernel did not stop within 10 s",
                            gp->card);
        struct timespec nap = {0, 100000};
        nanosleep(&nap, NULL);
    }
}

/* One step of the running resident kernel, enqueued on s. */
static lp_status resident_step(lp_gpu_persist *gp, cudaStream_t s, lp_diag *d) {
    if (!gp->running)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: the resident kernel is not running", gp->card);
    lp_status st = mem_op(gp, gp->write32, s, &gp->ctl->done, 0, CU_STREAM_WRITE_VALUE_DEFAULT, d);
    if (st == LP_OK) st = mem_op(gp, gp->write32, s, &gp->ctl->go, 1, CU_STREAM_WRITE_VALUE_DEFAULT, d);
    if (st == LP_OK) st = mem_op(gp, gp->wait32, s, &gp->ctl->done, 1, CU_STREAM_WAIT_VALUE_EQ, d);
    gp->last = s;
    return st;
}

static lp_status launch(lp_gpu_persist *gp, int first, int count, unsigned char *base, cudaStream_t s,
                        unsigned long long *trace, lp_diag *d) {
    int card = gp->card;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)gp->blocks);
    cfg.blockDim = dim3(PK_THREADS);
    cfg.dynamicSmemBytes = PK_SMEM;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = gp->cooperative ? 1 : 0;
    const lp_persist_phase *phases = gp->dev;
    const pk_gemm *plans = gp->plans;
    GP_CHECK(d, cudaLaunchKernelEx(&cfg, persist_kernel, phases, plans, first, count, base, gp->bar, trace, gp->p->n_phases));
    return LP_OK;
}

static lp_status run_step(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base, cudaStream_t s,
                          unsigned long long *trace, lp_diag *d) {
    const lp_persist_program *p = gp->p;
    int i = 0;
    while (i < p->n_phases) {
        if (p->phases[i].kind == LP_PERSIST_NODE) {
            int rc = env->compute(env, base, p->nodes[p->phases[i].node]);
            if (rc != 0) return rc > 0 ? (lp_status)rc : LP_ERR_INTERNAL;
            i++;
            continue;
        }
        int j = pk_launch_end(p, i);
        lp_status st = launch(gp, i, j - i, base, s, trace, d);
        if (st != LP_OK) return st;
        i = j;
    }
    return LP_OK;
}

lp_status lp_gpu_persist_step(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base, cudaStream_t s,
                              lp_diag *d) {
    if (gp->resident) return resident_step(gp, s, d);
    return run_step(gp, env, base, s, NULL, d);
}

/* Two steps with the per-block stamps in dev (the resident kernel, stopped
 * by the caller, is launched with them and stopped again). */
static lp_status traced_steps(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base, cudaStream_t s,
                              unsigned long long *dev, lp_diag *d) {
    if (!gp->resident) {
        lp_status st = LP_OK;
        for (int r = 0; r < 2 && st == LP_OK; r++) st = run_step(gp, env, base, s, dev, d);
        return st;
    }
    lp_status st = resident_launch(gp, base, dev, d);
    for (int r = 0; r < 2 && st == LP_OK; r++) st = resident_step(gp, s, d);
    if (st == LP_OK && cudaStreamSynchronize(s) != cudaSuccess)
        st = lp_error(d, LP_ERR_INTERNAL, "card %d: the resident kernel's profile run failed", gp->card);
    if (st == LP_OK) st = resident_stop(gp, d);
    return st;
}

static int by_u64(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

/* A Gemm phase's work in its parts (PK_T_STAGE ..), the median over the
 * blocks that had units. */
static void print_segments(FILE *out, const unsigned long long *host, int nb, int n, int i, unsigned long long *col) {
    static const char *names[] = {"staging", "prologue", "mma", "epilogue and stores"};
    int busy = 0;
    for (int b = 0; b < nb; b++) {
        const unsigned long long *t = host + ((size_t)b * n + i) * PK_TRACE;
        if (t[PK_T_STAGE] + t[PK_T_PROLOGUE] + t[PK_T_MMA] + t[PK_T_STORE]) busy++;
    }
    if (!busy) return;
    fprintf(out, "         %d blocks with units, median us:", busy);
    for (int k = PK_T_STAGE; k <= PK_T_STORE; k++) {
        int m = 0;
        for (int b = 0; b < nb; b++) {
            const unsigned long long *t = host + ((size_t)b * n + i) * PK_TRACE;
            if (t[PK_T_STAGE] + t[PK_T_PROLOGUE] + t[PK_T_MMA] + t[PK_T_STORE]) col[m++] = t[k];
        }
        qsort(col, (size_t)m, sizeof *col, by_u64);
        fprintf(out, " %s %.2f", names[k - PK_T_STAGE], col[m / 2] * 1e-3);
    }
    fputc('\n', out);
}

lp_status lp_gpu_persist_profile(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base, cudaStream_t s,
                                 FILE *out, lp_diag *d) {
    const lp_persist_program *p = gp->p;
    int card = gp->card, n = p->n_phases, nb = gp->blocks;
    size_t words = (size_t)nb * n * PK_TRACE;
    unsigned long long *dev = NULL, *host = (unsigned long long *)calloc(words + 1, sizeof *host);
    unsigned long long *col = (unsigned long long *)calloc((size_t)nb + 1, sizeof *col);
    if (!host || !col) {
        free(host);
        free(col);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    /* the resident kernel stops first: while it runs, no other kernel (the
     * memset here) is sure to find room on an SM */
    lp_status st = resident_stop(gp, d);
    cudaError_t e = st == LP_OK ? cudaMalloc(&dev, words * sizeof *dev) : cudaSuccess;
    if (st == LP_OK && e == cudaSuccess) e = cudaMemsetAsync(dev, 0, words * sizeof *dev, s);
    if (st == LP_OK && e == cudaSuccess) e = cudaStreamSynchronize(s);
    /* twice: the second run's times, with the first's caches warm */
    if (st == LP_OK && e == cudaSuccess) st = traced_steps(gp, env, base, s, dev, d);
    if (e == cudaSuccess && st == LP_OK) e = cudaStreamSynchronize(s);
    if (e == cudaSuccess && st == LP_OK) e = cudaMemcpy(host, dev, words * sizeof *dev, cudaMemcpyDeviceToHost);
    if (dev) cudaFree(dev);
    if (gp->resident && st == LP_OK && e == cudaSuccess) st = resident_launch(gp, base, NULL, d);
    if (e != cudaSuccess && st == LP_OK)
        st = lp_error(d, LP_ERR_INTERNAL, "card %d: profiling the persistent program: %s", card, cudaGetErrorString(e));
    if (st == LP_OK) {
        static const char *kinds[] = {"?", "copy", "elementwise", "gemm", "batched_matmul", "layernorm",
                                      "softmax", "node", "attention"};
        fprintf(out, "profile of card %d: a %s program, %d phases, %d blocks x %d threads, %d Gemm "
                "weights packed", card, gp->resident ? "resident" : "persistent", n, nb, PK_THREADS, gp->packed);
        if (gp->resident)
            fprintf(out, ", %d Gemms' weights held in shared memory (%.2f MiB; %zu bytes a block)", gp->layout.held,
                    gp->layout.held_bytes / 1048576.0, gp->smem);
        fprintf(out, " (%%globaltimer per block; wait: at the barrier, work: the median and the slowest block)\n");
        fprintf(out, "  phase  kind            wait_us  work_us  slowest_us  node\n");
        double total_wait = 0, total_work = 0;
        for (int i = 0; i < n; i++) {
            const lp_persist_phase *ph = &p->phases[i];
            const char *name = ph->node >= 0 && ph->node < p->n_nodes ? p->nodes[ph->node]->node : "(copy)";
            if (ph->kind == LP_PERSIST_NODE) {
                fprintf(out, "  %5d  %-14s  %7s  %7s  %10s  %s (a library call)\n", i, "node", "-", "-", "-", name);
                continue;
            }
            for (int b = 0; b < nb; b++) {
                const unsigned long long *t = host + ((size_t)b * n + i) * PK_TRACE;
                col[b] = t[1] - t[0];
            }
            qsort(col, (size_t)nb, sizeof *col, by_u64);
            double wait = col[nb / 2] * 1e-3;
            for (int b = 0; b < nb; b++) {
                const unsigned long long *t = host + ((size_t)b * n + i) * PK_TRACE;
                col[b] = t[2] - t[1];
            }
            qsort(col, (size_t)nb, sizeof *col, by_u64);
            double work = col[nb / 2] * 1e-3, slow = col[nb - 1] * 1e-3;
            total_wait += wait;
            total_work += slow;
            fprintf(out, "  %5d  %-14s  %7.2f  %7.2f  %10.2f  %s\n", i, kinds[ph->kind >= 1 && ph->kind <= 8 ? ph->kind : 0],
                    wait, work, slow, name);
            if (ph->kind == LP_PERSIST_GEMM) print_segments(out, host, nb, n, i, col);
        }
        fprintf(out, "  barriers (median wait) %.1f us, phases (slowest block) %.1f us\n", total_wait, total_work);
        /* the first block's first stamp to the last block's last one: the step inside the kernels, for
         * comparison with the step's time on the stream (the rest: launches, or the doorbells) */
        unsigned long long t0 = ~0ull, t1 = 0;
        for (int b = 0; b < nb; b++)
            for (int i = 0; i < n; i++) {
                const unsigned long long *t = host + ((size_t)b * n + i) * PK_TRACE;
                if (p->phases[i].kind == LP_PERSIST_NODE || !t[0]) continue;
                if (t[0] < t0) t0 = t[0];
                if (t[2] > t1) t1 = t[2];
            }
        if (t1 > t0)
            fprintf(out, "  the step inside the kernel (first block in to last block out): %.1f us\n",
                    (t1 - t0) * 1e-3);
    }
    free(host);
    free(col);
    return st;
}

void lp_gpu_persist_shape(const lp_gpu_persist *gp, int *blocks, int *threads, int *packed_gemms) {
    *blocks = gp->blocks;
    *threads = PK_THREADS;
    *packed_gemms = gp->packed;
}

bool lp_gpu_persist_resident(const lp_gpu_persist *gp) { return gp->resident; }

void lp_gpu_persist_close(lp_gpu_persist *gp) {
    if (!gp) return;
    lp_diag quiet = {};
    if (resident_stop(gp, &quiet) != LP_OK)
        fprintf(stderr, "lpcc: error: %s\n", quiet.last_error);
    if (gp->ks) cudaStreamDestroy(gp->ks);
    if (gp->ctl) cudaFree(gp->ctl);
    if (gp->dev) cudaFree(gp->dev);
    if (gp->plans) cudaFree(gp->plans);
    if (gp->bar) cudaFree(gp->bar);
    free(gp->host);
    free(gp);
}
