#!/usr/bin/env bash
# The loader benchmark: load time and peak RSS of lp_frontend_load.
#
#     bash bench/run.sh BUILD_DIR          # e.g. bash bench/run.sh build
#
# Generates into a temporary folder (bench/gen_graph.py): synthetic
# transformer-like graphs of 1k, 10k and 100k nodes (external weights,
# absent) and two graphs of the same 116 nodes whose external weights file
# exists, created sparse at 1.5 GiB and 4.1 GiB, and one whose 288 MiB of
# weights are inline (raw_data in the .onnx, which the loader leaves in the
# file: peak RSS stays far below the file's size); then times
# BUILD_DIR/bench/load_bench on each and on models/gpt2_full_graph.onnx,
# next to Python's onnx.load of the same file.
# RUNS (default 10; 3 for the 100k graph) sets the repetitions.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bench/run.sh BUILD_DIR" >&2
    exit 2
fi
bench=$1/bench/load_bench
if [ ! -x "$bench" ]; then
    echo "bench: $bench is not built (cmake --build $1 --target load_bench)" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
runs=${RUNS:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/lpcc_bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

gen() { python3 "$here/gen_graph.py" "$@" >/dev/null; }
gen --nodes 1000 --out "$work/g1k.onnx"
gen --nodes 10000 --out "$work/g10k.onnx"
gen --nodes 100000 --out "$work/g100k.onnx"
gen --layers 4 --hidden 4096 --weights sparse --out "$work/w1g.onnx"
gen --layers 4 --hidden 6784 --weights sparse --out "$work/w4g.onnx"
python3 - "$work/inline.onnx" <<'EOF'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

nodes, inits, prev = [], [], "x"
for i in range(18):  # 18 weights of 16 MiB
    inits.append(numpy_helper.from_array(np.full((2048, 2048), i, dtype=np.float32), f"w{i}"))
    nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
    prev = f"h{i}"
g = helper.make_graph(nodes, "inline", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2048])],
                      [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 2048])], inits)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
EOF

# field NAME from load_bench's "k=v ..." line
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

printf "%-28s %8s %10s %10s %10s %12s %12s\n" model nodes file_MB weights_MB min_ms median_ms peak_rss_MB
row() {
    local name=$1 model=$2 n=$3 weights=0 line
    line=$("$bench" "$model" "$n")
    [ -f "$model.weights" ] && weights=$(stat -c %s "$model.weights")
    printf "%-28s %8s %10.2f %10.0f %10s %12s %12s\n" "$name" "$(field "$line" nodes)" \
        "$(echo "$(stat -c %s "$model") / 1048576" | bc -l)" \
        "$(echo "$weights / 1048576" | bc -l)" \
        "$(field "$line" min_ms)" "$(field "$line" median_ms)" "$(field "$line" peak_rss_mb)"
}
row "synthetic 1k nodes" "$work/g1k.onnx" "$runs"
row "synthetic 10k nodes" "$work/g10k.onnx" "$runs"
row "synthetic 100k nodes" "$work/g100k.onnx" 3
row "1.5 GiB weights (present)" "$work/w1g.onnx" "$runs"
row "4.1 GiB weights (present)" "$work/w4g.onnx" "$runs"
row "288 MiB inline weights" "$work/inline.onnx" "$runs"
row "gpt2_full_graph.onnx" "$root/models/gpt2_full_graph.onnx" "$runs"

python3 - "$root/models/gpt2_full_graph.onnx" "$runs" <<'EOF'
import resource, statistics, sys, time
import onnx

path, runs = sys.argv[1], int(sys.argv[2])
ms = []
for _ in range(runs):
    t0 = time.perf_counter()
    m = onnx.load(path, load_external_data=False)
    ms.append((time.perf_counter() - t0) * 1e3)
    del m
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{'python onnx.load, same file':<28} {'':>8} {'':>10} {'':>10} {min(ms):10.2f} "
      f"{statistics.median(ms):12.2f} {rss:12.1f}")
EOF
