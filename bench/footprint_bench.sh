#!/usr/bin/env bash
# Footprint queries of the layer IR at 1,000 and 10,000 layers.
# usage: bench/footprint_bench.sh [BUILD_DIR]   (default build)
set -euo pipefail
build=${1:-build}
cmake --build "$build" --target footprint_bench >/dev/null
for n in 1000 10000; do "$build/bench/footprint_bench" "$n"; done
