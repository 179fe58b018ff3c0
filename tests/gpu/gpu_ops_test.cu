/* gpu_ops_test: every family of the CUDA kernel library against the CPU
 * reference (op_check.h); exit 1 when any case fails. Needs a GPU. */
#include <stdio.h>

#include "op_check.h"

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "gpu_ops_test: no CUDA GPU\n");
        return 77;
    }
    int failed = 0;
    failed += ops_elementwise_cases();
    failed += ops_tensor_cases();
    failed += ops_nn_cases();
    failed += ops_blas_cases();
    printf("gpu_ops_test: %d failed\n", failed);
    return failed ? 1 : 0;
}
