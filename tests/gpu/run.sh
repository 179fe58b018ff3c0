#!/usr/bin/env bash
# make test-gpu: on a machine with a CUDA GPU, the kernel library against
# the reference kernels, then every model on the GPU against ONNX Runtime.
# usage: bash tests/gpu/run.sh BUILD_DIR   (prints a log; exit 1 on a failure;
# LPCC_COMMIT names the commit in its first line where the tree has no git)
set -uo pipefail
build=${1:-build}
cd "$(dirname "$0")/../.."
export LPCC="$build/cli/lpcc" LPCC_RUNTIME_INCLUDE="$PWD/runtime"
echo "test-gpu on ${LPCC_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "?")}, $(date -u +%Y-%m-%dT%H:%MZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
status=0
"$build/tests/gpu_ops_test" || status=1
python3 tests/gpu/run_models.py || status=1
echo "test-gpu: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
