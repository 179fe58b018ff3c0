#!/usr/bin/env python3
"""Card models of plans with sharded layers. At capacities that split each
block over 2 and 3 cards, lpcc -o writes card_K.onnx for whole cards and
card_K.phase_P.onnx for shard cards plus cards.json, the order that runs
them. Checked here:
  - every file passes onnx.checker with full_check, and the folder holds
    exactly the files cards.json names (an earlier run's files are gone);
  - each step's inputs and outputs are its model's graph inputs and outputs,
    and every input was made by an earlier step or is a model input;
  - no phase model holds a split weight whole: it holds an initializer with
    exactly columns [begin, end) of the original, as plan.json's ranges say
    (compared with the original's bytes, not with lpcc's output), and no
    other initializer as large as the original;
  - running the steps in ONNX Runtime reproduces the whole model's outputs
    (tolerances as tests/partition_test.py);
  - slices of weights in a present external file are written inline; with
    the external file absent no card file is written, plan.json is, and
    lpcc warns; a phase model that cannot be written fails the run and
    leaves no card file behind."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from model_feeds import feeds_for  # noqa: E402

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")
CARD_FILE = re.compile(r"^card_\d+(\.phase_\d+)?\.onnx(\.data)?$")

# model, dims, capacity, shards per sharded layer
CASES = [
    ("seed_2x256", {"batch": 2, "seq": 8}, "1MiB", 2),
    ("seed_2x256", {"batch": 2, "seq": 8}, "800KiB", 3),
    ("gpt2_tiny", {"batch": 1, "seq": 32}, "950KiB", 2),
    ("gpt2_tiny", {"batch": 1, "seq": 32}, "850KiB", 3),
    ("bert_tiny", {"batch": 2, "seq": 8}, "700KiB", 2),
    ("seed_4x256_ext", {"batch": 2, "seq": 8}, "1MiB", 2),
]


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True)


def dim_args(dims):
    return [a for k, v in dims.items() for a in ("--dim", f"{k}={v}")]


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def run_steps(out, cards, feeds, fail):
    values = dict(feeds)
    for s in cards["steps"]:
        sess = session(os.path.join(out, s["file"]))
        ins = [i.name for i in sess.get_inputs()]
        outs = [o.name for o in sess.get_outputs()]
        if ins != s["inputs"] or outs != s["outputs"]:
            fail(f"{s['file']}: graph inputs/outputs {ins} -> {outs} differ from its step")
        missing = [n for n in ins if n not in values]
        if missing:
            fail(f"{s['file']}: inputs {missing} made by no earlier step")
            return values
        try:
            values.update(zip(outs, sess.run(outs, {n: values[n] for n in ins})))
        except Exception as e:  # noqa: BLE001 - a step that cannot run fails the case
            fail(f"{s['file']}: {e}")
            return values
    return values


def initializers(path):
    m = onnx.load(path, load_external_data=True)
    return {t.name: t for t in m.graph.initializer}


def check_slices(out, plan, cards, weights, fail):
    """Each split weight is on its shard cards only as its column slice."""
    files = {}
    for s in cards["steps"]:
        files.setdefault(s["card"], []).append(s["file"])
    for sh in plan["shards"]:
        for k in range(sh["n_shards"]):
            card = sh["first_card"] + k
            if not all(".phase_" in f for f in files.get(card, [])) or not files.get(card):
                fail(f"card {card} (shard {k} of layer {sh['layer']}) has no phase models")
                continue
            inits = {}
            for f in files[card]:
                for name, t in initializers(os.path.join(out, f)).items():
                    inits[name] = (f, t)
            for w in sh["weights"]:
                whole = weights[w["weight"]]
                b, e = w["ranges"][k]
                want = np.take(whole, np.arange(b, e), axis=w["weight_axis"])
                if w["weight"] in inits:
                    fail(f"card {card}: {inits[w['weight']][0]} holds split weight {w['weight']} whole")
                slices = [(f, t) for n, (f, t) in inits.items() if n.startswith(w["weight"] + ".shard")]
                if len(slices) != 1:
                    fail(f"card {card}: {len(slices)} slices of {w['weight']}, want 1")
                    continue
                f, t = slices[0]
                if t.data_location == onnx.TensorProto.EXTERNAL:
                    fail(f"{f}: slice {t.name} is not inline")
                got = numpy_helper.to_array(t)
                if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
                    fail(f"{f}: {t.name} is not columns {b}..{e} of {w['weight']}")
            # nor under another name
            for name, (f, t) in inits.items():
                for w in sh["weights"]:
                    whole = weights[w["weight"]]
                    if tuple(t.dims) == whole.shape and np.array_equal(numpy_helper.to_array(t), whole):
                        fail(f"{f}: initializer {name} holds split weight {w['weight']} whole")


def check_gathers(plan, values, fail):
    """One all_gather transfer per split weight: its participants are the
    layer's cards, each contributing the columns its card model computes
    (the "<output>.shard<k>" value the steps made), and every participant
    has a gather buffer of the whole value in its memory plan."""
    gathers = [t for t in plan["transfers"] if t["kind"] == "all_gather"]
    split = [(sh, w) for sh in plan["shards"] for w in sh["weights"]]
    if len(gathers) != len(split) or any(t["kind"] not in ("cut", "all_gather") for t in plan["transfers"]):
        fail(f"{len(gathers)} all-gathers for {len(split)} split weights")
    by_value = {t["value"]: t for t in gathers}
    for sh, w in split:
        t = by_value.get(w["output"])
        if t is None:
            fail(f"no all-gather of {w['output']}")
            continue
        n = sh["n_shards"]
        if (t["first_card"], t["n_cards"], t["axis"], t["dim"]) != (sh["first_card"], n, w["output_axis"], w["dim"]):
            fail(f"all-gather of {w['output']}: {t} does not match shard {sh}")
        parts = [(p["card"], [p["begin"], p["end"]]) for p in t["participants"]]
        if parts != [(sh["first_card"] + k, w["ranges"][k]) for k in range(n)]:
            fail(f"all-gather of {w['output']}: participants {parts}")
        if sum(p["bytes"] for p in t["participants"]) < t["bytes"]:
            fail(f"all-gather of {w['output']}: slices sum below the value's {t['bytes']} bytes")
        for k, p in enumerate(t["participants"]):
            got = values.get(f"{w['output']}.shard{k}")
            cols = p["end"] - p["begin"]
            if got is None or got.shape[t["axis"]] != cols or p["bytes"] != -(-t["bytes"] * cols // t["dim"]):
                fail(f"{w['output']}.shard{k}: the steps made {None if got is None else got.shape}, "
                     f"participant says columns {p['begin']}..{p['end']}, {p['bytes']} B")
            mem = plan["cards"][p["card"]]["memory"]["boundary"]
            bufs = [b for b in mem if b["direction"] == "gather" and b["value"] == w["output"]]
            if len(bufs) != 1 or bufs[0]["bytes"] != t["bytes"]:
                fail(f"card {p['card']}: gather buffers of {w['output']}: {bufs}")


def check_case(model, dims, cap, n_shards, tmp, fail):
    path = os.path.join(MODELS, model + ".onnx")
    what = f"{model} --capacity {cap}"
    out = os.path.join(tmp, "out")  # reused: each run must clear the last one's files
    r = lpcc(path, *dim_args(dims), "--capacity", cap, "-q", "-o", out)
    if r.returncode != 0:
        fail(f"{what}: rc {r.returncode}: {r.stderr.strip()}")
        return
    plan = json.load(open(os.path.join(out, "plan.json")))
    shards = plan["shards"]
    if not shards or any(s["n_shards"] != n_shards for s in shards):
        fail(f"{what}: want every sharded layer over {n_shards} cards, got "
             f"{[(s['layer'], s['n_shards']) for s in shards]}")
        return
    cards = json.load(open(os.path.join(out, "cards.json")))
    listed = {s["file"] for s in cards["steps"]}
    on_disk = {f for f in os.listdir(out) if CARD_FILE.match(f)}
    if {f for f in on_disk if not f.endswith(".data")} != listed:
        fail(f"{what}: folder holds {sorted(on_disk - listed)} beyond cards.json, "
             f"or lacks {sorted(listed - on_disk)}")
    if {s["card"] for s in cards["steps"]} != set(range(len(plan["cards"]))):
        fail(f"{what}: cards.json does not cover every card")
    for f in sorted(listed):
        try:
            onnx.checker.check_model(os.path.join(out, f), full_check=True)
        except Exception as e:  # noqa: BLE001 - report every checker failure
            fail(f"{what}: {f}: {e}")
    m = onnx.load(path)
    weights = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    check_slices(out, plan, cards, weights, lambda s: fail(f"{what}: {s}"))

    feeds = feeds_for(path, dims)
    ref_sess = session(path)
    ref_names = [o.name for o in ref_sess.get_outputs()]
    ref = dict(zip(ref_names, ref_sess.run(ref_names, feeds)))
    values = run_steps(out, cards, feeds, lambda s: fail(f"{what}: {s}"))
    check_gathers(plan, values, lambda s: fail(f"{what}: {s}"))
    for name, want in ref.items():
        have = values.get(name)
        if have is None:
            fail(f"{what}: output {name} not produced")
            continue
        tol = 2e-2 if want.dtype == np.float16 else 1e-4
        err = np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)))
        scale = max(1.0, float(np.max(np.abs(want.astype(np.float64)))))
        if not err <= tol * scale:
            fail(f"{what}: {name} differs by {err:g}")


def check_absent_weights(tmp, fail):
    """Split weights whose external file is missing cannot be sliced."""
    model = os.path.join(tmp, "ext", "seed_4x256_ext.onnx")
    os.makedirs(os.path.dirname(model))
    shutil.copy(os.path.join(MODELS, "seed_4x256_ext.onnx"), model)
    out = os.path.join(tmp, "out")
    r = lpcc(model, "--dim", "batch=2", "--dim", "seq=8", "--capacity", "1MiB", "-o", out)
    left = sorted(f for f in os.listdir(out) if CARD_FILE.match(f) or f == "cards.json")
    if r.returncode != 0 or "absent" not in r.stderr or "no card models" not in r.stderr:
        fail(f"absent weights: rc {r.returncode}, want 0 and a warning: {r.stderr.strip()}")
    if left or not os.path.exists(os.path.join(out, "plan.json")):
        fail(f"absent weights: want plan.json and no card files, folder holds {left}")


def check_blocked_phase(tmp, fail):
    """A phase model that cannot be written fails the run, and no card file
    of it stays (a folder in the way is the user's and stays)."""
    out = os.path.join(tmp, "blocked")
    os.makedirs(os.path.join(out, "card_1.phase_2.onnx"))
    path = os.path.join(MODELS, "seed_2x256.onnx")
    r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--capacity", "1MiB", "-q", "-o", out)
    left = sorted(f for f in os.listdir(out) if f.startswith("card"))
    if r.returncode != 4 or "card_1.phase_2.onnx" not in r.stderr or left != ["card_1.phase_2.onnx"]:
        fail(f"blocked phase model: rc {r.returncode}, folder holds {left}: {r.stderr.strip()}")


def check_unsharded_after_sharded(tmp, fail):
    """An unsharded plan written over a sharded one leaves card_K.onnx only."""
    out = os.path.join(tmp, "out")
    path = os.path.join(MODELS, "seed_2x256.onnx")
    r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--capacity", "1GiB", "-q", "-o", out)
    cards = json.load(open(os.path.join(out, "cards.json"))) if r.returncode == 0 else None
    left = sorted(f for f in os.listdir(out) if CARD_FILE.match(f))
    if cards is None or left != sorted(s["file"] for s in cards["steps"]) or \
            any(".phase_" in f for f in left):
        fail(f"unsharded rerun: rc {r.returncode}, folder holds {left}: {r.stderr.strip()}")


def main():
    if not LPCC:
        print("LPCC not set", file=sys.stderr)
        return 2
    failures = []
    with tempfile.TemporaryDirectory(prefix="lpcc_shard_") as tmp:
        for case in CASES:
            check_case(*case, tmp, failures.append)
        check_unsharded_after_sharded(tmp, failures.append)
        check_blocked_phase(tmp, failures.append)
        check_absent_weights(tmp, failures.append)
    for f in failures:
        print("FAIL", f)
    print(f"{len(CASES)} sharded plans, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
