#!/usr/bin/env bash
# Runs a libFuzzer target (fuzz_load or fuzz_pipeline) for a time budget;
# fails on a crash.
#
#     bash fuzz/run.sh build-fuzz/fuzz/fuzz_load 60
#     bash fuzz/run.sh build-fuzz/fuzz/fuzz_pipeline 60
#
# The seed corpus is made in a temporary folder: the small models of
# models/, the model files of onnx's backend test data, the models of onnx's
# node test cases (written from onnx.backend.test.case.node), and the hostile
# files of fuzz/hostile_models.py; fuzz/onnx.dict lists the strings the
# loader looks for (external-data keys, file names in the target's scratch
# folder). On a crash the reproducers are copied to
# fuzz/artifacts/ (FUZZ_ARTIFACTS to change), to rerun with
#     build-fuzz/fuzz/fuzz_load fuzz/artifacts/crash-...
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: fuzz/run.sh FUZZ_BINARY SECONDS" >&2
    exit 2
fi
bin=$(realpath "$1")
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
max_len=${FUZZ_MAX_LEN:-360000}
artifacts=${FUZZ_ARTIFACTS:-$here/artifacts}

work=$(mktemp -d "${TMPDIR:-/tmp}/lpcc_fuzz_run.XXXXXX")
trap 'rm -rf "$work"' EXIT
corpus=$work/corpus
mkdir -p "$corpus" "$work/seed" "$work/artifacts"

# models/: those that fit in one input
for f in "$root"/models/*.onnx; do
    if [ "$(stat -c %s "$f")" -le "$max_len" ]; then
        cp "$f" "$work/seed/models_$(basename "$f")"
    fi
done

python3 - "$work/seed" "$max_len" <<'EOF'
import glob, os, sys, warnings
import onnx

out, max_len = sys.argv[1], int(sys.argv[2])
data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
n = 0
for path in sorted(glob.glob(os.path.join(data, "*", "*.onnx")) +
                   glob.glob(os.path.join(data, "*", "*", "model.onnx"))):
    if os.path.getsize(path) <= max_len:
        name = "suite_" + "_".join(path.split(os.sep)[-2:])
        with open(path, "rb") as src, open(os.path.join(out, name), "wb") as dst:
            dst.write(src.read())
        n += 1
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import numpy as np
    np.seterr(all="ignore")
    from onnx.backend.test.case import node
    for case in node.collect_testcases(None):
        b = case.model.SerializeToString()
        if len(b) <= max_len:
            with open(os.path.join(out, f"node_{case.name}.onnx"), "wb") as f:
                f.write(b)
            n += 1
print(f"fuzz: {n} suite and node-test models in the seed corpus")
EOF
python3 "$here/hostile_models.py" "$work/seed"
# fuzz_pipeline reads an optional "LPFZ" + 8 option bytes before the model
# (see fuzz_pipeline.c): the small models again with options that let them
# reach the partitioner (dims bound to 1 or 2, a few cards, algorithms).
if [ "$(basename "$bin")" = fuzz_pipeline ]; then
    for f in "$work"/seed/models_*.onnx; do
        for opt in '\x00\x00\x19\x26\x26' '\x15\x08\x14\x25\x26' '\x21\x0c\x1e\x25\x25'; do
            { printf 'LPFZ'; printf "$opt"'\x00\x00\x00'; cat "$f"; } \
                >"$work/seed/opt$(printf "$opt" | od -An -tx1 | tr -d ' \n')_$(basename "$f")"
        done
    done
fi
echo "fuzz: $(ls "$work/seed" | wc -l) seed files; running $(basename "$bin") for ${seconds}s"

# TMPDIR: the target's scratch folder goes inside $work and is removed with it
set +e
TMPDIR=$work "$bin" "$corpus" "$work/seed" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$max_len" -timeout=25 \
    -dict="$here/onnx.dict" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    >"$work/log" 2>&1
status=$?
set -e
grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)" "$work/log" || true
if [ "$status" -ne 0 ]; then
    grep -A40 -E "^==[0-9]+==ERROR|runtime error|^SUMMARY" "$work/log" | head -n 80
    mkdir -p "$artifacts"
    cp "$work"/artifacts/* "$artifacts"/ 2>/dev/null || true
    echo "fuzz: FAILED (exit $status); reproducers in $artifacts" >&2
    exit 1
fi
echo "fuzz: no crash in ${seconds}s"
