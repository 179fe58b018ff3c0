#!/usr/bin/env bash
# The analysis benchmark: load + shape inference + layer IR (memory plans and
# footprints included) and the dp partitioner over the real footprints.
#
#     bash bench/analysis_bench.sh BUILD_DIR      # e.g. bash bench/analysis_bench.sh build
#
# Runs BUILD_DIR/bench/analysis_bench on models/gpt2_full_graph.onnx (batch 1,
# seq 128) next to Python's onnx.shape_inference.infer_shapes(data_prop=True)
# on the same file, then on synthetic transformers of 100, 300, 1000 and 3000
# blocks (bench/gen_graph.py, weights absent) for time and peak RSS, then
# partitions the 1000- and 5000-block graphs with --algo dp over 64 cards.
# RUNS (default 20; fewer for the large graphs) sets the repetitions.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bench/analysis_bench.sh BUILD_DIR" >&2
    exit 2
fi
bench=$1/bench/analysis_bench
if [ ! -x "$bench" ]; then
    echo "bench: $bench is not built (cmake --build $1 --target analysis_bench)" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
runs=${RUNS:-20}
work=$(mktemp -d "${TMPDIR:-/tmp}/lpcc_analysis.XXXXXX")
trap 'rm -rf "$work"' EXIT
dims=(--dim batch=1 --dim seq=128)

echo "== gpt2_full_graph.onnx, $runs runs"
"$bench" "$root/models/gpt2_full_graph.onnx" "${dims[@]}" --runs "$runs"
python3 - "$root/models/gpt2_full_graph.onnx" "$runs" <<'PY'
import statistics, sys, time
import onnx
from onnx import shape_inference

path, runs = sys.argv[1], int(sys.argv[2])
model = onnx.load(path, load_external_data=False)
infer, both = [], []
for _ in range(runs):
    t0 = time.perf_counter()
    shape_inference.infer_shapes(model, data_prop=True)
    infer.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    shape_inference.infer_shapes(onnx.load(path, load_external_data=False), data_prop=True)
    both.append((time.perf_counter() - t0) * 1e3)
print(f"python infer_shapes(data_prop=True) min_ms={min(infer):.3f} "
      f"median_ms={statistics.median(infer):.3f}; onnx.load + infer_shapes "
      f"min_ms={min(both):.3f} median_ms={statistics.median(both):.3f}")
PY

echo "== synthetic transformers (2 layers a block), growth"
for blocks in 100 300 1000 3000; do
    python3 "$here/gen_graph.py" --layers "$blocks" --out "$work/b$blocks.onnx" >/dev/null
    n=$runs
    [ "$blocks" -ge 1000 ] && n=5
    echo "blocks=$blocks $("$bench" "$work/b$blocks.onnx" "${dims[@]}" --runs "$n")"
done

echo "== dp over 64 cards, real footprints"
python3 "$here/gen_graph.py" --layers 5000 --out "$work/b5000.onnx" >/dev/null
for blocks in 1000 5000; do
    echo "blocks=$blocks $("$bench" "$work/b$blocks.onnx" "${dims[@]}" --runs 3 --cards 64)"
done
