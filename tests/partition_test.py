"""Partition end to end: lpcc -o writes card_K.onnx sub-models; each passes
onnx.checker, and running them in sequence in ONNX Runtime (each card's
outputs fed to later cards by name) reproduces the whole model's outputs.
Also: plan.json loads back to the same cuts, a tampered plan is refused,
an infeasible capacity exits 3, and a forced cut is honoured. (The
algorithms' optimality is checked against brute force in test_partition.c.)"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")
BATCH, SEQ = 2, 8


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True)


def feeds_for(model_path):
    m = onnx.load(model_path)
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in m.graph.input:
        t = inp.type.tensor_type
        dims = []
        for d in t.shape.dim:
            dims.append({"batch": BATCH, "seq": SEQ}.get(d.dim_param, d.dim_value or 1) if d.dim_param
                        else d.dim_value)
        np_t = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        if inp.name == "input_ids":
            feeds[inp.name] = rng.integers(0, 1000, dims).astype(np_t)
        elif inp.name == "attention_mask":
            feeds[inp.name] = np.ones(dims, np_t)
        else:
            feeds[inp.name] = rng.standard_normal(dims).astype(np_t)
    return feeds


def run_chain(out_dir, n_cards, feeds):
    values = dict(feeds)
    for k in range(n_cards):
        path = os.path.join(out_dir, f"card_{k}.onnx")
        onnx.checker.check_model(path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        res = sess.run(names, {i.name: values[i.name] for i in sess.get_inputs()})
        values.update(zip(names, res))
    return values


def dims_args(model):
    args = ["--dim", f"batch={BATCH}"]
    if model != "cnn_small":
        args += ["--dim", f"seq={SEQ}"]
    return args


def check_model(model, failures):
    path = os.path.join(MODELS, model + ".onnx")
    feeds = feeds_for(path)
    ref_sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref_names = [o.name for o in ref_sess.get_outputs()]
    ref = dict(zip(ref_names, ref_sess.run(ref_names, feeds)))
    fp16 = model.startswith("seed")
    with tempfile.TemporaryDirectory() as tmp:
        probe = lpcc(path, *dims_args(model), "--dump-ir=layers", "--json", "-q")
        if probe.returncode != 0:
            failures.append(f"{model}: layers: {probe.stderr.strip()}")
            return
        n_layers = len(json.loads(probe.stdout)["layers"])
        for cards in sorted({1, 2, 3, n_layers}):
            if cards > n_layers:
                continue
            out = os.path.join(tmp, f"c{cards}")
            r = lpcc(path, *dims_args(model), "--cards", str(cards), "--algo", "dp",
                     "--capacity", "1GiB", "-q", "-o", out)
            if r.returncode != 0:
                failures.append(f"{model} --cards {cards}: rc {r.returncode}: {r.stderr.strip()}")
                continue
            plan = json.load(open(os.path.join(out, "plan.json")))
            got_cards = len(plan["cards"])
            if got_cards != cards:
                failures.append(f"{model}: dp on {cards} cards used {got_cards}")
            vals = run_chain(out, got_cards, feeds)
            for name, want in ref.items():
                have = vals.get(name)
                if have is None:
                    failures.append(f"{model} --cards {cards}: output {name} not produced")
                    continue
                tol = 2e-2 if fp16 else 1e-4
                err = np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)))
                scale = max(1.0, float(np.max(np.abs(want.astype(np.float64)))))
                if not err <= tol * scale:
                    failures.append(f"{model} --cards {cards}: {name} differs by {err:g}")
            # the plan loads back to the same cuts
            out2 = os.path.join(tmp, f"c{cards}_reload")
            r = lpcc(path, *dims_args(model), "--plan", os.path.join(out, "plan.json"), "-q", "-o", out2)
            if r.returncode != 0:
                failures.append(f"{model} --plan: rc {r.returncode}: {r.stderr.strip()}")
            else:
                plan2 = json.load(open(os.path.join(out2, "plan.json")))
                if plan2["cuts_after"] != plan["cuts_after"] or plan2["transfers"] != plan["transfers"]:
                    failures.append(f"{model} --plan: reloaded plan differs")


def check_errors(failures):
    path = os.path.join(MODELS, "gpt2_tiny.onnx")
    r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--capacity", "64KiB", "--no-split", "-q")
    if r.returncode != 3 or "exceeds" not in r.stderr and "needs" not in r.stderr:
        failures.append(f"tiny capacity: want exit 3 with a report, got {r.returncode}: {r.stderr}")
    r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--capacity", "12 parsecs", "-q")
    if r.returncode != 2:
        failures.append(f"bad capacity: want exit 2, got {r.returncode}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "o")
        r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--cards", "3", "--algo", "dp",
                 "--capacity", "1GiB", "-q", "-o", out)
        if r.returncode != 0:
            failures.append(f"dp 3 cards: {r.stderr}")
            return
        plan = json.load(open(os.path.join(out, "plan.json")))
        # overlapping cards are refused by the validator
        bad = json.loads(json.dumps(plan))
        bad["cards"][0]["last_layer"] = bad["cards"][1]["last_layer"]
        bad["cards"][0]["last_layer_name"] = bad["cards"][1]["last_layer_name"]
        p = os.path.join(tmp, "bad.json")
        json.dump(bad, open(p, "w"))
        r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--plan", p, "-q")
        if r.returncode == 0:
            failures.append("overlapping plan accepted")
        # a plan at a capacity too small for its largest card is refused with numbers
        small = json.loads(json.dumps(plan))
        largest = max(c["total_bytes"] for c in plan["cards"])
        small["capacities"] = [largest - 1]
        json.dump(small, open(p, "w"))
        r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--plan", p, "-q")
        if r.returncode != 3 or "exceeds capacity" not in r.stderr:
            failures.append(f"over-capacity plan: rc {r.returncode}: {r.stderr}")
        # a forced cut is honoured
        r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--capacity", "1GiB", "--cut-after", "0",
                 "--dump-ir=plan", "--json", "-q")
        if r.returncode != 0 or json.loads(r.stdout)["cuts_after"] != [0]:
            failures.append(f"--cut-after 0: rc {r.returncode} {r.stdout[:200]} {r.stderr}")


def main():
    if not LPCC:
        print("LPCC not set; skipping")
        return 0
    failures = []
    for model in ["gpt2_tiny", "bert_tiny", "llama_tiny", "cnn_small", "seed_2x256"]:
        check_model(model, failures)
    check_errors(failures)
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
