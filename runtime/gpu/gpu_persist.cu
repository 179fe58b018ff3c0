/* gpu_persist.cu - the persistent kernel: every block walks the same phases;
 * a phase spreads its work over the blocks (grid-stride elements, rows, or
 * Gemm column tiles), and a phase marked `sync` first waits at a grid
 * barrier until every block has finished the phases before it.
 *
 * Gemm phases on fp16 / bf16 run on tensor cores (mma.sync m16n8k16, fp32
 * accumulation): a block stages up to 128 rows of A in shared memory once a
 * phase, takes 1-4 column tiles of 8 at a time, its 16 warps split K, and
 * the weights stream from L2 in fragment order (packed at open), 16 bytes a
 * lane a load. Other Gemms, and every other phase, run on CUDA cores. */
#include "gpu_persist.h"
#include "persist_ops.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

#define PK_THREADS 512
#define PK_WARPS (PK_THREADS / 32)
#define PK_SMEM (200 * 1024) /* dynamic shared memory: staged A + the warps' partial sums */

/* b.weight == PK_PACKED: the Gemm's weight is in fragment order (this
 * file's copy of the phases only). */
#define PK_PACKED 2

struct lp_gpu_persist {
    const lp_persist_program *p;
    lp_persist_phase *host;  /* the phases as launched (packed flags set) */
    lp_persist_phase *dev;
    unsigned *bar;           /* [0] arrivals, [1] blocks done */
    int card, blocks, packed;
    bool cooperative;
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

__device__ __forceinline__ int64_t numel(const lp_persist_view &v) {
    int64_t n = 1;
    for (int k = 0; k < v.rank; k++) n *= v.dims[k];
    return n;
}

/* ---- the grid barrier ---------------------------------------------------- */

__device__ __forceinline__ unsigned load_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void grid_sync(unsigned *bar, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(bar, 1u);
        while (load_acquire(bar) < target) {
        }
        __threadfence();
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

__device__ void run_elementwise(const lp_persist_phase &ph, unsigned char *base) {
    const lp_persist_view &o = ph.out, &a = ph.a, &b = ph.b;
    int64_t n = numel(o);
    int r = o.rank;
    bool binary = ph.kind == LP_PERSIST_ELEMENTWISE && lp_persist_is_binary(ph.op);
    int eo = esize(o.dtype), ea = esize(a.dtype), eb = binary ? esize(b.dtype) : 0;
    bool bits = ph.kind == LP_PERSIST_COPY && a.dtype == o.dtype;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i, oa = 0, ob = 0;
        for (int k = r - 1; k >= 0; k--) {
            int64_t d = o.dims[k], c = t % d;
            t /= d;
            oa += c * a.strides[k];
            ob += c * b.strides[k];
        }
        unsigned char *dst = base + o.offset + i * eo;
        const unsigned char *pa = base + a.offset + oa * ea;
        if (bits) {
            copy_bits(dst, pa, eo);
            continue;
        }
        float x = load_f(pa, a.dtype, a.weight != 0), v;
        if (ph.kind == LP_PERSIST_COPY)
            v = x;
        else if (binary)
            v = lp_persist_binary(ph.op, x, load_f(base + b.offset + ob * eb, b.dtype, b.weight != 0));
        else
            v = lp_persist_unary(ph.op, x, ph.alpha, ph.beta);
        store_f(dst, o.dtype, v);
    }
}

/* ---- rows: LayerNorm and Softmax -------------------------------------------- */

/* Offset (elements) of row `row` of v (all dims but the last). */
__device__ __forceinline__ int64_t row_offset(const lp_persist_view &v, int64_t row) {
    int64_t off = 0;
    for (int k = v.rank - 2; k >= 0; k--) {
        int64_t d = v.dims[k], c = row % d;
        row /= d;
        off += c * v.strides[k];
    }
    return off;
}

__device__ void run_rows(const lp_persist_phase &ph, unsigned char *base, float *scratch) {
    const lp_persist_view &o = ph.out, &a = ph.a;
    int64_t dlast = o.rank ? o.dims[o.rank - 1] : 1;
    if (dlast <= 0) return;
    int64_t rows = numel(o) / dlast;
    int ea = esize(a.dtype), eo = esize(o.dtype);
    int64_t sa = a.rank ? a.strides[a.rank - 1] : 1;
    bool ln = ph.kind == LP_PERSIST_LAYERNORM, logsm = ph.op == LP_OP_LogSoftmax;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const unsigned char *x = base + a.offset + row_offset(a, row) * ea;
        unsigned char *y = base + o.offset + row * dlast * eo;
        float s1 = 0, s2;
        if (ln) {
            for (int64_t d = threadIdx.x; d < dlast; d += blockDim.x) s1 += load_f(x + d * sa * ea, a.dtype, false);
            float mean = block_reduce(s1, false, scratch) / (float)dlast;
            float q = 0;
            for (int64_t d = threadIdx.x; d < dlast; d += blockDim.x) {
                float u = load_f(x + d * sa * ea, a.dtype, false) - mean;
                q += u * u;
            }
            float rstd = rsqrtf(block_reduce(q, false, scratch) / (float)dlast + ph.alpha);
            int es = esize(ph.scale.dtype), eb = ph.has_bias ? esize(ph.bias.dtype) : 0;
            for (int64_t d = threadIdx.x; d < dlast; d += blockDim.x) {
                float v = (load_f(x + d * sa * ea, a.dtype, false) - mean) * rstd *
                          load_f(base + ph.scale.offset + d * es, ph.scale.dtype, ph.scale.weight != 0);
                if (ph.has_bias) v += load_f(base + ph.bias.offset + d * eb, ph.bias.dtype, ph.bias.weight != 0);
                store_f(y + d * eo, o.dtype, v);
            }
        } else {
            float m = -INFINITY;
            for (int64_t d = threadIdx.x; d < dlast; d += blockDim.x)
                m = fmaxf(m, load_f(x + d * sa * ea, a.dtype, false));
            m = block_reduce(m, true, scratch);
            for (int64_t d = threadIdx.x; d < dlast; d += blockDim.x)
                s1 += expf(load_f(x + d * sa * ea, a.dtype, false) - m);
            s2 = block_reduce(s1, false, scratch);
            float ls = logf(s2);
            for (int64_t d = threadIdx.x; d < dlast; d += blockDim.x) {
                float u = load_f(x + d * sa * ea, a.dtype, false) - m;
                store_f(y + d * eo, o.dtype, logsm ? u - ls : expf(u) / s2);
            }
        }
    }
}

/* ---- batched matmul (both operands activations) ------------------------------ */

__device__ void run_bmm(const lp_persist_phase &ph, unsigned char *base) {
    const lp_persist_view &o = ph.out, &a = ph.a, &b = ph.b;
    int r = o.rank;
    int64_t n_out = numel(o), N = o.dims[r - 1], K = a.dims[r - 1];
    int ea = esize(a.dtype), eb = esize(b.dtype), eo = esize(o.dtype);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i, n = t % N;
        t /= N;
        int64_t m = t % o.dims[r - 2];
        t /= o.dims[r - 2];
        int64_t oa = m * a.strides[r - 2], ob = n * b.strides[r - 1];
        for (int k = r - 3; k >= 0; k--) {
            int64_t d = o.dims[k], c = t % d;
            t /= d;
            oa += c * a.strides[k];
            ob += c * b.strides[k];
        }
        float acc = 0;
        for (int64_t k = 0; k < K; k++)
            acc += load_f(base + a.offset + (oa + k * a.strides[r - 1]) * ea, a.dtype, a.weight != 0) *
                   load_f(base + b.offset + (ob + k * b.strides[r - 2]) * eb, b.dtype, b.weight != 0);
        store_f(base + o.offset + i * eo, o.dtype, acc * ph.alpha);
    }
}

/* ---- Gemm ----------------------------------------------------------------------- */

__device__ __forceinline__ float epilogue(const lp_persist_phase &ph, const unsigned char *base,
                                          int64_t m, int64_t n, float v) {
    if (ph.has_bias) v += load_f(base + ph.bias.offset + n * esize(ph.bias.dtype), ph.bias.dtype, true);
    if (ph.epi.act) v = lp_persist_unary(ph.epi.act, v, ph.epi.act_alpha, ph.epi.act_beta);
    if (ph.epi.residual)
        v += load_f(base + ph.epi.res.offset + (m * ph.n + n) * esize(ph.epi.res.dtype), ph.epi.res.dtype,
                    ph.epi.res.weight != 0);
    return v;
}

/* Any dtype, any layout: one output a thread. */
__device__ void run_gemm_plain(const lp_persist_phase &ph, unsigned char *base) {
    int64_t M = ph.m, N = ph.n, K = ph.k;
    int ea = esize(ph.a.dtype), ew = esize(ph.b.dtype), eo = esize(ph.out.dtype);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < M * N;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t m = i / N, n = i % N;
        const unsigned char *pa = base + ph.a.offset + m * K * ea;
        float acc = 0;
        for (int64_t k = 0; k < K; k++) {
            int64_t wi = ph.trans_w ? n * K + k : k * N + n;
            acc += load_f(pa + k * ea, ph.a.dtype, false) * load_f(base + ph.b.offset + wi * ew, ph.b.dtype, true);
        }
        store_f(base + ph.out.offset + i * eo, ph.out.dtype, epilogue(ph, base, m, n, acc));
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

/* G column tiles x MT row tiles of one unit: this warp's share of K. */
template <int G, int MT, bool BF16>
__device__ void gemm_unit(const uint4 *wp, int P, int j0, int gn, const unsigned short *As, int lda,
                          float *red, int mc) {
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
#pragma unroll 2
    for (int p = p0; p < p1; p++) {
        uint4 bq[G];
#pragma unroll
        for (int ti = 0; ti < G; ti++)
            if (ti < gn) bq[ti] = __ldg(&wp[((size_t)(j0 + ti) * P + p) * 32 + lane]);
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

/* Tiles a unit takes and rows a chunk stages, for N/8 tiles over `blocks`. */
__host__ __device__ inline void gemm_shape(int64_t M, int64_t N, int64_t K, int blocks, int *g, int *mc) {
    int64_t tiles = N / 8;
    int gg = (int)((tiles + blocks - 1) / blocks);
    if (gg > 4) gg = 4;
    if (gg < 1) gg = 1;
    int64_t lda_bytes = (K + 8) * 2;
    for (;;) {
        int64_t per_row = lda_bytes + (int64_t)PK_WARPS * gg * 8 * 4;
        int64_t rows = (int64_t)PK_SMEM / per_row / 16 * 16;
        int64_t mpad = (M + 15) / 16 * 16;
        int64_t lim = 8 / gg * 16; /* at most 8 accumulator tiles a warp */
        if (rows > mpad) rows = mpad;
        if (rows > lim) rows = lim;
        if (rows >= 16 || gg == 1) {
            *g = gg;
            *mc = (int)(rows >= 16 ? rows : 0);
            return;
        }
        gg = 1;
    }
}

template <bool BF16>
__device__ void run_gemm_mma(const lp_persist_phase &ph, unsigned char *base, unsigned char *smem, int rot) {
    int64_t M = ph.m, N = ph.n, K = ph.k;
    int P = (int)(K / 32), tiles = (int)(N / 8), G, mc;
    gemm_shape(M, N, K, gridDim.x, &G, &mc);
    int units = (tiles + G - 1) / G;
    int first = (int)(((int)blockIdx.x - rot % (int)gridDim.x + (int)gridDim.x) % (int)gridDim.x);
    if (first >= units) return;
    int lda = (int)K + 8;
    unsigned short *As = (unsigned short *)smem;
    float *red = (float *)(smem + (size_t)mc * lda * 2);
    const uint4 *wp = (const uint4 *)(base + ph.b.offset);
    const unsigned char *A = base + ph.a.offset;
    int eo = esize(ph.out.dtype);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        int rows = (int)(M - m0 < mc ? M - m0 : mc);
        /* stage rows m0 .. m0 + rows of A (zeros below), 16 bytes a thread */
        int vec_row = (int)(K / 8);
        __syncthreads();
        for (int v = threadIdx.x; v < mc * vec_row; v += blockDim.x) {
            int r = v / vec_row, c = v % vec_row;
            uint4 q = make_uint4(0, 0, 0, 0);
            if (r < rows) q = __ldcg((const uint4 *)(A + ((m0 + r) * K + (int64_t)c * 8) * 2));
            unsigned *dst = (unsigned *)(As + (size_t)r * lda + c * 8);
            dst[0] = q.x;
            dst[1] = q.y;
            dst[2] = q.z;
            dst[3] = q.w;
        }
        __syncthreads();
        int mt = mc / 16;
        for (int u = first; u < units; u += gridDim.x) {
            int j0 = u * G, gn = tiles - j0 < G ? tiles - j0 : G;
            switch (G * 16 + mt) {
#define PK_UNIT(g_, m_) \
    case g_ * 16 + m_: gemm_unit<g_, m_, BF16>(wp, P, j0, gn, As, lda, red, mc); break;
                PK_UNIT(1, 1) PK_UNIT(1, 2) PK_UNIT(1, 3) PK_UNIT(1, 4) PK_UNIT(1, 5) PK_UNIT(1, 6)
                PK_UNIT(1, 7) PK_UNIT(1, 8) PK_UNIT(2, 1) PK_UNIT(2, 2) PK_UNIT(2, 3) PK_UNIT(2, 4)
                PK_UNIT(3, 1) PK_UNIT(3, 2) PK_UNIT(4, 1) PK_UNIT(4, 2)
#undef PK_UNIT
            default: break;
            }
            __syncthreads();
            for (int e = threadIdx.x; e < gn * rows * 8; e += blockDim.x) {
                int ti = e / (rows * 8), row = (e / 8) % rows, col = e % 8;
                float v = 0;
                for (int w = 0; w < PK_WARPS; w++) v += red[((size_t)(w * G + ti) * mc + row) * 8 + col];
                int64_t m = m0 + row, n = (int64_t)(j0 + ti) * 8 + col;
                store_f(base + ph.out.offset + (m * N + n) * eo, ph.out.dtype, epilogue(ph, base, m, n, v));
            }
            __syncthreads();
        }
    }
}

/* ---- the kernel ------------------------------------------------------------------------ */

__global__ void __launch_bounds__(PK_THREADS, 1)
    persist_kernel(const lp_persist_phase *phases, int first, int count, unsigned char *base, unsigned *bar) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ lp_persist_phase ph;
    __shared__ float scratch[PK_WARPS + 1];
    unsigned syncs = 0;
    int rot = 0;
    for (int i = first; i < first + count; i++) {
        __syncthreads();
        const int *src = (const int *)&phases[i];
        for (int w = threadIdx.x; w < (int)(sizeof ph / sizeof(int)); w += blockDim.x) ((int *)&ph)[w] = src[w];
        __syncthreads();
        if (ph.sync) {
            syncs++;
            grid_sync(bar, syncs * gridDim.x);
            rot = 0;
        }
        switch (ph.kind) {
        case LP_PERSIST_COPY:
        case LP_PERSIST_ELEMENTWISE: run_elementwise(ph, base); break;
        case LP_PERSIST_LAYERNORM:
        case LP_PERSIST_SOFTMAX: run_rows(ph, base, scratch); break;
        case LP_PERSIST_BATCHED_MATMUL: run_bmm(ph, base); break;
        case LP_PERSIST_GEMM:
            if (ph.b.weight == PK_PACKED) {
                int G, mc;
                gemm_shape(ph.m, ph.n, ph.k, gridDim.x, &G, &mc);
                if (ph.b.dtype == 16) run_gemm_mma<true>(ph, base, smem, rot);
                else run_gemm_mma<false>(ph, base, smem, rot);
                rot += (int)((ph.n / 8 + G - 1) / G);
            } else
                run_gemm_plain(ph, base);
            break;
        default: break;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        /* the last block out resets the barrier for the next launch: every
         * block has passed every barrier by then */
        __threadfence();
        unsigned done = atomicAdd(bar + 1, 1u);
        if (done == gridDim.x - 1) {
            atomicExch(bar, 0u);
            atomicExch(bar + 1, 0u);
        }
    }
}

/* ---- packing ------------------------------------------------------------------------------ */

/* dst word ((j * P + p) * 32 + lane) * 4 + r holds W[k][n], W[k + 1][n] for
 * n = 8j + lane / 4, k = 16 (2p + r / 2) + 2 (lane % 4) + 8 (r % 2): the B
 * fragments of k-steps 2p and 2p + 1 of column tile j. */
__global__ void pack_kernel(unsigned *dst, const unsigned short *w, int64_t K, int64_t N, int trans) {
    int64_t P = K / 32, words = (N / 8) * P * 128;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < words;
         i += (int64_t)gridDim.x * blockDim.x) {
        int r = (int)(i % 4), lane = (int)((i / 4) % 32);
        int64_t jp = i / 128, p = jp % P, j = jp / P;
        int64_t k = 16 * (2 * p + r / 2) + 2 * (lane % 4) + 8 * (r % 2), n = 8 * j + lane / 4;
        unsigned short lo = trans ? w[n * K + k] : w[k * N + n];
        unsigned short hi = trans ? w[n * K + k + 1] : w[(k + 1) * N + n];
        dst[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
}

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) { return a0 < b1 && b0 < a1; }

/* Whether the weight a Gemm phase reads can be packed: the tensor-core
 * path's shape, and no phase but such Gemms reads its bytes. */
static bool packable(const lp_persist_program *p, int i, int blocks) {
    const lp_persist_phase *g = &p->phases[i];
    if (g->kind != LP_PERSIST_GEMM || g->a.dtype != g->b.dtype || (g->b.dtype != 10 && g->b.dtype != 16) ||
        g->k % 32 != 0 || g->n % 8 != 0 || g->a.offset % 16 != 0 || g->b.offset % 16 != 0)
        return false;
    int G, mc;
    gemm_shape(g->m, g->n, g->k, blocks, &G, &mc);
    if (mc < 16) return false;
    uint64_t w0 = g->b.offset, w1 = w0 + (uint64_t)(g->k * g->n) * 2;
    for (int j = 0; j < p->n_phases; j++) {
        const lp_persist_phase *q = &p->phases[j];
        if (q->kind == LP_PERSIST_GEMM && q->b.offset == w0 && q->k == g->k && q->n == g->n &&
            q->trans_w == g->trans_w && q->b.dtype == g->b.dtype)
            continue; /* the same weight read the same way */
        if (q->kind == LP_PERSIST_NODE) {
            const lp_card_node *n = p->nodes[q->node];
            for (int k = 0; k < n->n_inputs; k++)
                if (n->inputs[k].region == LP_CARD_MEMORY &&
                    overlaps(w0, w1, n->inputs[k].offset, n->inputs[k].offset + n->inputs[k].bytes))
                    return false;
            continue;
        }
        const lp_persist_view *vs[6] = {&q->a, &q->b, &q->bias, &q->scale, &q->epi.res, &q->out};
        for (int k = 0; k < 6; k++) {
            if (vs[k]->rank == 0 && vs[k]->offset == 0 && vs[k]->dtype == 0) continue;
            int64_t hi = 0;
            for (int r = 0; r < vs[k]->rank; r++) hi += (vs[k]->dims[r] - 1) * vs[k]->strides[r];
            uint64_t lo = vs[k]->offset, end = lo + (uint64_t)(hi + 1) * (uint64_t)lp_persist_esize(vs[k]->dtype);
            if (overlaps(w0, w1, lo, end)) return false;
        }
    }
    return true;
}

#define GP_CHECK(d, stmt)                                                                    \
    do {                                                                                     \
        cudaError_t e_ = (stmt);                                                             \
        if (e_ != cudaSuccess)                                                               \
            return lp_error((d), LP_ERR_INTERNAL, "card %d: %s failed: %s", card, #stmt,     \
                            cudaGetErrorString(e_));                                         \
    } while (0)

static lp_status pack_weights(lp_gpu_persist *gp, unsigned char *base, int card, lp_diag *d) {
    const lp_persist_program *p = gp->p;
    for (int i = 0; i < p->n_phases; i++) {
        lp_persist_phase *h = &gp->host[i];
        if (!packable(p, i, gp->blocks)) continue;
        bool done = false;
        for (int j = 0; j < i && !done; j++) done = gp->host[j].b.weight == PK_PACKED && gp->host[j].b.offset == h->b.offset;
        if (!done) {
            size_t bytes = (size_t)(h->k * h->n) * 2;
            unsigned short *tmp = NULL;
            GP_CHECK(d, cudaMalloc(&tmp, bytes));
            cudaError_t e = cudaMemcpy(tmp, base + h->b.offset, bytes, cudaMemcpyDeviceToDevice);
            if (e == cudaSuccess) {
                pack_kernel<<<264, 256>>>((unsigned *)(base + h->b.offset), tmp, h->k, h->n, h->trans_w);
                e = cudaGetLastError();
            }
            if (e == cudaSuccess) e = cudaDeviceSynchronize();
            cudaFree(tmp);
            if (e != cudaSuccess)
                return lp_error(d, LP_ERR_INTERNAL, "card %d: packing a Gemm weight failed: %s", card,
                                cudaGetErrorString(e));
            gp->packed++;
        }
        h->b.weight = PK_PACKED;
    }
    return LP_OK;
}

lp_status lp_gpu_persist_open(const lp_persist_program *p, unsigned char *base, uint64_t weights_bytes,
                              int card, lp_gpu_persist **out, lp_diag *d) {
    (void)weights_bytes;
    *out = NULL;
    lp_gpu_persist *gp = (lp_gpu_persist *)calloc(1, sizeof *gp);
    if (!gp) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    gp->p = p;
    gp->card = card;
    gp->host = (lp_persist_phase *)malloc(((size_t)p->n_phases + 1) * sizeof *gp->host);
    if (!gp->host) {
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
    if (e == cudaSuccess && st == LP_OK) e = cudaMalloc(&gp->bar, 2 * sizeof(unsigned));
    if (e == cudaSuccess && st == LP_OK) e = cudaMemset(gp->bar, 0, 2 * sizeof(unsigned));
    if (e != cudaSuccess && st == LP_OK)
        st = lp_error(d, LP_ERR_INTERNAL, "card %d: setting up the persistent kernel: %s", card,
                      cudaGetErrorString(e));
    if (st == LP_OK) st = pack_weights(gp, base, card, d);
    if (st == LP_OK) {
        e = cudaMalloc(&gp->dev, ((size_t)p->n_phases + 1) * sizeof *gp->dev);
        if (e == cudaSuccess)
            e = cudaMemcpy(gp->dev, gp->host, (size_t)p->n_phases * sizeof *gp->dev, cudaMemcpyHostToDevice);
        if (e != cudaSuccess)
            st = lp_error(d, LP_ERR_INTERNAL, "card %d: uploading the persistent program: %s", card,
                          cudaGetErrorString(e));
    }
    if (st != LP_OK) {
        lp_gpu_persist_close(gp);
        return st;
    }
    *out = gp;
    return LP_OK;
}

static lp_status launch(lp_gpu_persist *gp, int first, int count, unsigned char *base, cudaStream_t s,
                        lp_diag *d) {
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
    GP_CHECK(d, cudaLaunchKernelEx(&cfg, persist_kernel, phases, first, count, base, gp->bar));
    return LP_OK;
}

lp_status lp_gpu_persist_step(lp_gpu_persist *gp, lp_card_env *env, unsigned char *base, cudaStream_t s,
                              lp_diag *d) {
    const lp_persist_program *p = gp->p;
    int i = 0;
    while (i < p->n_phases) {
        if (p->phases[i].kind == LP_PERSIST_NODE) {
            int rc = env->compute(env, base, p->nodes[p->phases[i].node]);
            if (rc != 0) return rc > 0 ? (lp_status)rc : LP_ERR_INTERNAL;
            i++;
            continue;
        }
        int j = i;
        while (j < p->n_phases && p->phases[j].kind != LP_PERSIST_NODE) j++;
        lp_status st = launch(gp, i, j - i, base, s, d);
        if (st != LP_OK) return st;
        i = j;
    }
    return LP_OK;
}

void lp_gpu_persist_shape(const lp_gpu_persist *gp, int *blocks, int *threads, int *packed_gemms) {
    *blocks = gp->blocks;
    *threads = PK_THREADS;
    *packed_gemms = gp->packed;
}

void lp_gpu_persist_close(lp_gpu_persist *gp) {
    if (!gp) return;
    if (gp->dev) cudaFree(gp->dev);
    if (gp->bar) cudaFree(gp->bar);
    free(gp->host);
    free(gp);
}
