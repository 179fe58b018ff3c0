// probe.cu - measures the figures lpcc's device profiles rest on: L2 size and
// its pinnable part, HBM and L2-resident read bandwidth, kernel launch cost
// (stream and CUDA graph), and dense FP16 GEMM throughput through cuBLAS.
// Prints one JSON object on stdout.
//
//   nvcc -O2 -arch=sm_90 -o probe bench/gpu/probe.cu -lcublas && ./probe
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CUDA_CHECK(x)                                                                   \
    do {                                                                                \
        cudaError_t err_ = (x);                                                         \
        if (err_ != cudaSuccess) {                                                      \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,                  \
                    cudaGetErrorString(err_));                                          \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)
#define CUBLAS_CHECK(x)                                                                 \
    do {                                                                                \
        cublasStatus_t st_ = (x);                                                       \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                             \
            fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x,    \
                    (int)st_);                                                          \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

// Each thread reads float4s strided over the buffer `reps` times; the sum
// is written so the loads cannot be dropped.
__global__ void read_kernel(const float4 *buf, size_t n, int reps, float *sink) {
    float acc = 0.f;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (int r = 0; r < reps; r++)
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += stride) {
            float4 v = __ldcg(&buf[i]);  // cache in L2 only, not L1
            acc += v.x + v.y + v.z + v.w;
        }
    if (acc == 12345.678f) *sink = acc;
}

__global__ void empty_kernel() {}

// Pseudo-random halves in [-1, 1): GEMM on zeros runs faster than on data.
__global__ void fill_random(__half *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        unsigned v = (unsigned)(i * 2654435761u) ^ 0x9e3779b9u;
        v ^= v >> 15;
        v *= 0x85ebca6bu;
        v ^= v >> 13;
        x[i] = __float2half((float)(v & 0xffff) / 32768.f - 1.f);
    }
}

static float time_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return ms;
}

// Bytes per second reading `bytes` `reps` times, median of 5 runs.
static double read_bandwidth(const float4 *buf, size_t bytes, int reps, float *sink, int sms) {
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    size_t n = bytes / sizeof(float4);
    read_kernel<<<sms * 8, 512>>>(buf, n, 1, sink);  // warm: fills L2
    std::vector<double> rates;
    for (int t = 0; t < 5; t++) {
        CUDA_CHECK(cudaEventRecord(a));
        read_kernel<<<sms * 8, 512>>>(buf, n, reps, sink);
        CUDA_CHECK(cudaEventRecord(b));
        CUDA_CHECK(cudaEventSynchronize(b));
        rates.push_back((double)bytes * reps / (time_ms(a, b) * 1e-3));
    }
    std::sort(rates.begin(), rates.end());
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    return rates[2];
}

int main() {
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    printf("{\n  \"device\": \"%s\",\n  \"sms\": %d,\n  \"l2_bytes\": %d,\n"
           "  \"persisting_l2_max_bytes\": %d,\n  \"access_policy_max_window_bytes\": %d,\n"
           "  \"global_mem_bytes\": %zu,\n",
           p.name, p.multiProcessorCount, p.l2CacheSize, p.persistingL2CacheMaxSize,
           p.accessPolicyMaxWindowSize, p.totalGlobalMem);

    float *sink;
    CUDA_CHECK(cudaMalloc(&sink, sizeof(float)));
    size_t big = (size_t)4 << 30;
    float4 *buf;
    CUDA_CHECK(cudaMalloc(&buf, big));
    // Random contents: zeros could flatter the caches (compression).
    fill_random<<<p.multiProcessorCount * 8, 512>>>((__half *)buf, big / sizeof(__half));
    CUDA_CHECK(cudaGetLastError());

    printf("  \"hbm_read_bytes_per_s\": %.4g,\n",
           read_bandwidth(buf, big, 1, sink, p.multiProcessorCount));
    printf("  \"l2_resident_read_bytes_per_s\": {");
    const int mib[] = {4, 8, 16, 24, 32, 40, 48, 56, 64, 96, 128};
    for (size_t i = 0; i < sizeof mib / sizeof mib[0]; i++) {
        size_t bytes = (size_t)mib[i] << 20;
        int reps = (int)std::max<size_t>(4, ((size_t)16 << 30) / bytes / 4);
        printf("%s\"%d MiB\": %.4g", i ? ", " : "", mib[i],
               read_bandwidth(buf, bytes, reps, sink, p.multiProcessorCount));
        fflush(stdout);
    }
    printf("},\n");

    // Launch cost: back-to-back launches in a stream, then as graph nodes.
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreate(&s));
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    const int n_launch = 2000;
    for (int i = 0; i < 100; i++) empty_kernel<<<1, 32, 0, s>>>();
    CUDA_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < n_launch; i++) empty_kernel<<<1, 32, 0, s>>>();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    printf("  \"launch_us_stream\": %.3f,\n", time_ms(a, b) * 1e3 / n_launch);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < n_launch; i++) empty_kernel<<<1, 32, 0, s>>>();
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    CUDA_CHECK(cudaEventRecord(a, s));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    printf("  \"launch_us_graph\": %.3f,\n", time_ms(a, b) * 1e3 / n_launch);

    // Dense FP16 GEMM, FP32 accumulate, 8192^3.
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, s));
    const int m = 8192;
    __half *A = (__half *)buf, *B = A + (size_t)m * m, *C = B + (size_t)m * m;
    float alpha = 1.f, beta = 0.f;
    auto gemm = [&] {
        CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, m, m, &alpha, A, CUDA_R_16F, m,
                                  B, CUDA_R_16F, m, &beta, C, CUDA_R_16F, m, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
    };
    for (int i = 0; i < 3; i++) gemm();
    const int n_gemm = 20;
    CUDA_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < n_gemm; i++) gemm();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    double flops = 2.0 * m * m * (double)m * n_gemm / (time_ms(a, b) * 1e-3);
    printf("  \"fp16_gemm_flop_per_s\": %.4g\n}\n", flops);
    return 0;
}
