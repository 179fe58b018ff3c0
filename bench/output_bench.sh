#!/usr/bin/env bash
# The cost of writing results: lpcc on a synthetic graph without output next
# to the same run with -o DIR (graph.json, layers.json, plan.json, the card
# models and cards.json).
#
#     bash bench/output_bench.sh BUILD_DIR [NODES]   # e.g. bash bench/output_bench.sh build 100000
#
# Generates a NODES-node graph (default 100000) with bench/gen_graph.py, then
# runs, RUNS times each (default 3), keeping the fastest:
#   none   lpcc G --dim batch=1 --dim seq=16 -q --algo greedy
#   -o     the same with -o DIR
#   graph, layers, plan   the same with --dump-ir=STAGE --json > /dev/null
# and prints wall and CPU (user + system) seconds and peak RSS of each, the
# ratio of -o to none, and the sizes of the files written. A dump's excess
# over `none` is what its JSON document costs (graph stops after shape
# inference, so its excess can be negative); -o's excess beyond the three
# documents is the card models'.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bench/output_bench.sh BUILD_DIR [NODES]" >&2
    exit 2
fi
lpcc=$1/cli/lpcc
if [ ! -x "$lpcc" ]; then
    echo "bench: $lpcc is not built (cmake --build $1 --target lpcc)" >&2
    exit 2
fi
nodes=${2:-100000}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lpcc_output.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$here/gen_graph.py" --nodes "$nodes" --out "$work/g.onnx" >/dev/null

python3 - "$lpcc" "$work" "$nodes" "${RUNS:-3}" <<'PY'
import os, subprocess, sys, time

lpcc, work, nodes, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = [lpcc, os.path.join(work, "g.onnx"), "--dim", "batch=1", "--dim", "seq=16", "-q", "--algo", "greedy"]
out = os.path.join(work, "out")


def measure(args):
    """Fastest of `runs`: (wall s, cpu s, peak RSS MiB)."""
    best = None
    for _ in range(runs):
        with open(os.devnull, "wb") as null:
            t0 = time.perf_counter()
            p = subprocess.Popen(args, stdout=null)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {' '.join(args)} failed ({os.waitstatus_to_exitcode(status)})")
        r = (wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
        best = r if best is None or r[0] < best[0] else best
    return best


rows = [("none", base), ("-o", base + ["-o", out])]
rows += [(s, base + [f"--dump-ir={s}", "--json"]) for s in ("graph", "layers", "plan")]
res = {}
print(f"== {nodes}-node graph (bench/gen_graph.py), fastest of {runs}")
print(f"{'run':8} {'wall_s':>8} {'cpu_s':>8} {'peak_MiB':>9}")
for name, args in rows:
    res[name] = measure(args)
    w, c, m = res[name]
    print(f"{name:8} {w:8.3f} {c:8.3f} {m:9.1f}")
n, o = res["none"], res["-o"]
print(f"-o / none: wall {o[0] / n[0]:.2f}x, cpu {o[1] / n[1]:.2f}x, peak RSS {o[2] / n[2]:.2f}x "
      f"(+{o[2] - n[2]:.1f} MiB)")
files = sorted(os.listdir(out))
json_mib = sum(os.path.getsize(os.path.join(out, f)) for f in files if f.endswith(".json")) / 2**20
cards = [f for f in files if f.endswith(".onnx")]
cards_mib = sum(os.path.getsize(os.path.join(out, f)) for f in cards) / 2**20
print(f"written: {json_mib:.1f} MiB of JSON, {len(cards)} card models of {cards_mib:.1f} MiB")
PY
