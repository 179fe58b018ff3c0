// tier_probe.cu - the on-chip tiers a persistent card program would run from,
// measured on the GPU it runs on; prints JSON.
//
//     nvcc -O3 -arch=sm_90 -o tier_probe bench/gpu/tier_probe.cu && ./tier_probe
//
// smem_read:    every block keeps a slice of shared memory (up to the opt-in
//               per-block maximum) and re-reads it R times; bytes read over
//               time, all SMs, one block per SM.
// l2_read:      a buffer of the given size re-read by all SMs (16-byte loads
//               through L2, .cg), with and without a persisting access-policy
//               window over it.
// grid_barrier: a persistent kernel (one block per SM) crossing a grid-wide
//               barrier N times (a counter in global memory, sense reversal).
// phase:        the same kernel doing a tiny unit of work per phase, per
//               phase overhead against launching one kernel per phase in a
//               CUDA graph.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (x);                                                             \
        if (e_ != cudaSuccess) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

__global__ void smem_read(int words, int reps, unsigned *sink) {
    extern __shared__ uint4 buf[];
    for (int i = threadIdx.x; i < words; i += blockDim.x) buf[i] = make_uint4(i, i + 1, i + 2, i + 3);
    __syncthreads();
    uint4 acc = make_uint4(0, 0, 0, 0);
    for (int r = 0; r < reps; r++)
        for (int i = threadIdx.x; i < words; i += blockDim.x) {
            uint4 v = buf[i ^ (r & 1)]; // words is even: stays inside; r defeats hoisting
            acc.x ^= v.x;
            acc.y += v.y;
            acc.z ^= v.z;
            acc.w += v.w;
        }
    if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x12345678u) sink[blockIdx.x] = 1;
}

__global__ void l2_read(const uint4 *p, size_t words, int reps, unsigned *sink) {
    uint4 acc = make_uint4(0, 0, 0, 0);
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (int r = 0; r < reps; r++)
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += stride) {
            uint4 v = __ldcg(p + i);
            acc.x ^= v.x;
            acc.y += v.y;
            acc.z ^= v.z;
            acc.w += v.w;
        }
    if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x12345678u) sink[blockIdx.x] = 1;
}

// Sense-reversing grid barrier over a counter and a generation word.
__device__ __forceinline__ void grid_sync(unsigned *count, volatile unsigned *gen, unsigned n_blocks) {
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned g = *gen;
        __threadfence();
        if (atomicAdd(count, 1) == n_blocks - 1) {
            *count = 0;
            __threadfence();
            *gen = g + 1;
        } else {
            while (*gen == g) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

__global__ void barrier_loop(int phases, unsigned *count, unsigned *gen, float *work, int work_per_phase) {
    for (int p = 0; p < phases; p++) {
        if (work_per_phase) {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            work[i] = work[i] * 0.999f + (float)p;
        }
        grid_sync(count, gen, gridDim.x);
    }
}

__global__ void one_phase(float *work, int p) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    work[i] = work[i] * 0.999f + (float)p;
}

static float time_ms(cudaStream_t s, void (*fn)(cudaStream_t, void *), void *arg, int reps) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    fn(s, arg); // warm
    CHECK(cudaStreamSynchronize(s));
    std::vector<float> t;
    for (int r = 0; r < reps; r++) {
        CHECK(cudaEventRecord(a, s));
        fn(s, arg);
        CHECK(cudaEventRecord(b, s));
        CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return t[t.size() / 2];
}

struct smem_arg { int sms, words, reps, threads; size_t bytes; unsigned *sink; };
static void run_smem(cudaStream_t s, void *v) {
    smem_arg *a = (smem_arg *)v;
    smem_read<<<a->sms, a->threads, a->bytes, s>>>(a->words, a->reps, a->sink);
    CHECK(cudaGetLastError());
}

struct l2_arg { const uint4 *p; size_t words; int reps, blocks; unsigned *sink; };
static void run_l2(cudaStream_t s, void *v) {
    l2_arg *a = (l2_arg *)v;
    l2_read<<<a->blocks, 512, 0, s>>>(a->p, a->words, a->reps, a->sink);
    CHECK(cudaGetLastError());
}

struct bar_arg { int sms, phases, work; unsigned *count, *gen; float *buf; };
static void run_bar(cudaStream_t s, void *v) {
    bar_arg *a = (bar_arg *)v;
    barrier_loop<<<a->sms, 256, 0, s>>>(a->phases, a->count, a->gen, a->buf, a->work);
    CHECK(cudaGetLastError());
}

int main() {
    int dev = 0;
    CHECK(cudaSetDevice(dev));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, dev));
    int sms = prop.multiProcessorCount;
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    unsigned *sink;
    CHECK(cudaMalloc(&sink, 4096 * sizeof(unsigned)));
    printf("{\"device\": \"%s\", \"sms\": %d, \"smem_per_block_optin\": %zu, \"smem_per_sm\": %zu, "
           "\"l2_bytes\": %d, \"persisting_l2_max\": %d,\n", prop.name, sms, prop.sharedMemPerBlockOptin,
           prop.sharedMemPerMultiprocessor, prop.l2CacheSize, prop.persistingL2CacheMaxSize);

    // shared memory: one block per SM holding its opt-in maximum
    size_t smem = prop.sharedMemPerBlockOptin / 32 * 32; /* an even number of 16-byte words */
    CHECK(cudaFuncSetAttribute(smem_read, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    smem_arg sa = {sms, (int)(smem / 16), 200, 1024, smem, sink};
    float ms = time_ms(s, run_smem, &sa, 9);
    double bytes = (double)smem * sms * sa.reps;
    printf(" \"smem_read\": {\"bytes_per_sm\": %zu, \"total_bytes\": %.0f, \"bytes_per_s\": %.4g},\n", smem,
           (double)smem * sms, bytes / (ms * 1e-3));

    // L2: re-read sets of 8..96 MiB, then the same with a persisting window
    printf(" \"l2_read\": [");
    size_t max_bytes = 96u << 20;
    uint4 *buf;
    CHECK(cudaMalloc(&buf, max_bytes));
    CHECK(cudaMemset(buf, 1, max_bytes));
    const size_t sizes[] = {8u << 20, 16u << 20, 25u << 20, 32u << 20, 37u << 20, 48u << 20, 64u << 20, 96u << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        l2_arg la = {buf, sizes[k] / 16, 20, sms * 4, sink};
        float t_plain = time_ms(s, run_l2, &la, 9);
        float t_pin = -1;
        if (sizes[k] <= (size_t)prop.persistingL2CacheMaxSize) {
            CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, prop.persistingL2CacheMaxSize));
            cudaStreamAttrValue v = {};
            v.accessPolicyWindow.base_ptr = buf;
            v.accessPolicyWindow.num_bytes = sizes[k];
            v.accessPolicyWindow.hitRatio = 1.0f;
            v.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
            v.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
            CHECK(cudaStreamSetAttribute(s, cudaStreamAttributeAccessPolicyWindow, &v));
            t_pin = time_ms(s, run_l2, &la, 9);
            v.accessPolicyWindow.num_bytes = 0;
            CHECK(cudaStreamSetAttribute(s, cudaStreamAttributeAccessPolicyWindow, &v));
            CHECK(cudaCtxResetPersistingL2Cache());
            CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 0));
        }
        double b = (double)sizes[k] * la.reps;
        printf("%s{\"bytes\": %zu, \"bytes_per_s\": %.4g, \"pinned_bytes_per_s\": %.4g}", k ? ", " : "",
               sizes[k], b / (t_plain * 1e-3), t_pin > 0 ? b / (t_pin * 1e-3) : 0.0);
    }
    printf("],\n");

    // grid barrier and per-phase overhead of a persistent kernel
    unsigned *count, *gen;
    float *work;
    CHECK(cudaMalloc(&count, sizeof(unsigned)));
    CHECK(cudaMalloc(&gen, sizeof(unsigned)));
    CHECK(cudaMalloc(&work, (size_t)sms * 256 * sizeof(float)));
    CHECK(cudaMemset(count, 0, sizeof(unsigned)));
    CHECK(cudaMemset(gen, 0, sizeof(unsigned)));
    CHECK(cudaMemset(work, 0, (size_t)sms * 256 * sizeof(float)));
    const int phases = 1000;
    bar_arg ba = {sms, phases, 0, count, gen, work};
    float t_bar = time_ms(s, run_bar, &ba, 5);
    ba.work = 1;
    float t_phase = time_ms(s, run_bar, &ba, 5);
    // the same phases as kernels of one CUDA graph
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int p = 0; p < phases; p++) one_phase<<<sms, 256, 0, s>>>(work, p);
    CHECK(cudaStreamEndCapture(s, &graph));
    CHECK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaEventRecord(a, s));
    CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float t_graph = 0;
    CHECK(cudaEventElapsedTime(&t_graph, a, b));
    printf(" \"grid_barrier_s\": %.4g, \"persistent_phase_s\": %.4g, \"graph_kernel_phase_s\": %.4g}\n",
           t_bar * 1e-3 / phases, t_phase * 1e-3 / phases, t_graph * 1e-3 / phases);
    return 0;
}
