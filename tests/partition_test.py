"""Partition end to end: lpcc -o writes card_K.onnx sub-models; each passes
onnx.checker, and running them in sequence in ONNX Runtime (each card's
outputs fed to later cards by name) reproduces the whole model's outputs.
Also: plan.json loads back to the same cuts, a tampered plan is refused,
an infeasible capacity exits 3, and a forced cut is honoured; a layer
larger than C is sharded with the footprint and gather bytes a hand
calculation from the ONNX file gives; --dot names every card and transfer;
a plan made for a custom target loads back with that target; every
card's memory section agrees with its footprint and is recomputed the same
on reload; and the TP x PP comparison model predicts the seed layer's
measured H200 timings within 1.5x; --pin moves a layer to its card and
still reproduces the model. (The algorithms' optimality is checked against brute force in
test_partition.c.)"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from model_feeds import feeds_for  # noqa: E402

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")
BATCH, SEQ = 2, 8


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True)


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


def check_memory(what, plan, failures):
    """Every card's memory section: its weights and boundary buffers are the
    card's weights, inputs and outputs; its regions add up to total_bytes;
    arena = activation_bytes, workspace = buffer_bytes, and total = the card's
    footprint total, alignment padding included (a shard card before the last
    sends nothing, so it allocates less: checked in test_card_memory.c)."""
    for c in plan["cards"]:
        m = c.get("memory")
        if m is None:
            failures.append(f"{what} card {c['card']}: no memory section")
            continue
        align = m["alignment"]
        ins = [b["value"] for b in m["boundary"] if b["direction"] == "in"]
        outs = [b["value"] for b in m["boundary"] if b["direction"] == "out"]
        pad = sum(-e["bytes"] % align for e in m["weights"] + m["boundary"])
        entries = m["weights"] + m["boundary"] + m["slots"]
        last = c["shard"] == c["n_shards"] - 1
        checks = {
            "weights": [w["value"] for w in m["weights"]] == c["weights"],
            "inputs": ins == c["inputs"],
            "outputs": outs == c["outputs"],
            "weight bytes": sum(w["bytes"] for w in m["weights"]) == c["weight_bytes"],
            "arena": m["arena_bytes"] == c["activation_bytes"],
            "workspace": m["workspace_bytes"] == c["buffer_bytes"],
            "regions": m["weights_bytes"] + m["boundary_bytes"] + m["arena_bytes"]
            + m["workspace_bytes"] == m["total_bytes"],
            "padding": pad == m["padding_bytes"],
            "aligned": all(e["offset"] % align == 0 for e in entries),
            "total": not last or (m["total_bytes"] == c["total_bytes"]
                                  and pad == c["padding_bytes"]),
            "fits": m["total_bytes"] <= c["total_bytes"],
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            failures.append(f"{what} card {c['card']}: memory section wrong: {', '.join(bad)}")


def check_model(model, failures):
    path = os.path.join(MODELS, model + ".onnx")
    feeds = feeds_for(path, {"batch": BATCH, "seq": SEQ})
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
            check_memory(f"{model} --cards {cards}", plan, failures)
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
                if [c["memory"] for c in plan2["cards"]] != [c["memory"] for c in plan["cards"]]:
                    failures.append(f"{model} --plan: recomputed memory sections differ")


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


def shard_hand_calc(failures):
    """seed_2x256 at C = 1 MiB: each 1.65 MiB block must split in two. Card k
    holds half the columns of every MatMul weight (rank 2, read by one node)
    and all other weights; the all-gather moves each MatMul output's half to
    the other card."""
    path = os.path.join(MODELS, "seed_2x256.onnx")
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    args = [path, "--dim", f"batch={BATCH}", "--dim", f"seq={SEQ}"]
    layers = json.loads(lpcc(*args, "--dump-ir=layers", "--json", "-q").stdout)["layers"]
    cap = 1 << 20
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "o")
        r = lpcc(*args, "--capacity", "1MiB", "-o", out, "--dot", os.path.join(tmp, "p.dot"))
        if r.returncode != 0:
            failures.append(f"shard: rc {r.returncode}: {r.stderr}")
            return
        phases = sorted(f for f in os.listdir(out) if ".phase_" in f)
        if not phases or not os.path.exists(os.path.join(out, "cards.json")):
            failures.append("shard: expected phase models and cards.json for a sharded plan "
                            "(run end to end in shard_submodel_test.py)")
        plan = json.load(open(os.path.join(out, "plan.json")))
        check_memory("shard", plan, failures)
        shards = plan["shards"]
        if [s["layer"] for s in shards] != [0, 1] or any(s["n_shards"] != 2 for s in shards):
            failures.append(f"shard: want layers 0 and 1 over 2 cards each, got {shards}")
            return
        for sh in shards:
            prefix = f"layers.{sh['layer']}."
            mats = [n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits
                    and n.input[1].startswith(prefix)]
            want_w = sorted(n.input[1] for n in mats)
            got_w = sorted(w["weight"] for w in sh["weights"])
            if want_w != got_w:
                failures.append(f"shard layer {sh['layer']}: weights {got_w} != {want_w}")
                continue
            layer = layers[sh["layer"]]
            whole = sum(int(np.prod(inits[w].dims)) * 2 for w in want_w)
            halves = {}
            for w in sh["weights"]:
                dim = inits[w["weight"]].dims[1]
                if w["ranges"] != [[0, dim // 2], [dim // 2, dim]]:
                    failures.append(f"shard {w['weight']}: ranges {w['ranges']}")
                halves[w["output"]] = dim
            # each card also holds a gather buffer of every split output, whole
            gather_bufs = sum(-(-BATCH * SEQ * d * 2 // 256) * 256 for d in halves.values())
            for k in range(2):
                card = plan["cards"][sh["first_card"] + k]
                want = layer["total_bytes"] - whole // 2 + gather_bufs
                if card["total_bytes"] != want or card["total_bytes"] > cap or card["shard"] != k:
                    failures.append(f"shard card {card['card']}: total {card['total_bytes']} want {want}")
            if layer["total_bytes"] <= cap:
                failures.append("shard: the layer fits whole; the test needs it not to")
            # one all-gather per split output among the layer's two cards
            gathers = [t for t in plan["transfers"] if t["kind"] == "all_gather"
                       and t["first_card"] == sh["first_card"]]
            if len(gathers) != len(want_w) or sorted(t["value"] for t in gathers) != sorted(halves):
                failures.append(f"shard layer {sh['layer']}: {len(gathers)} all-gathers, want {len(want_w)}")
            for t in gathers:
                dim = halves[t["value"]]
                half = BATCH * SEQ * (dim // 2) * 2
                want = [{"card": sh["first_card"], "begin": 0, "end": dim // 2, "bytes": half},
                        {"card": sh["first_card"] + 1, "begin": dim // 2, "end": dim, "bytes": half}]
                if t["bytes"] != 2 * half or t["n_cards"] != 2 or t["participants"] != want:
                    failures.append(f"all-gather {t}: want {2 * half} bytes from {want}")
            for k in range(2):  # each receives the other's half, sends its own
                card = plan["cards"][sh["first_card"] + k]
                cut_in = sum(t["bytes"] for t in plan["transfers"]
                             if t["kind"] == "cut" and t["to_card"] == card["card"])
                got = card["bytes_in"] - cut_in
                want = sum(BATCH * SEQ * (d // 2) * 2 for d in halves.values())
                if got != want:
                    failures.append(f"shard card {card['card']}: gathers bring {got} B, want {want}")
        dot = open(os.path.join(tmp, "p.dot")).read()
        for c in plan["cards"]:
            if f"cluster_card{c['card']} " not in dot:
                failures.append(f"dot: card {c['card']} missing")
        for i, t in enumerate(plan["transfers"]):
            if t["kind"] == "all_gather":  # a node joined to each participant
                edges = [f"c{p['card']}_L{sh_layer} -> g{i} " for p in t["participants"]
                         for sh_layer in [plan["cards"][p["card"]]["first_layer"]]]
                if f"  g{i} [" not in dot or any(e not in dot for e in edges):
                    failures.append(f"dot: all-gather {t['value']} not drawn with its participants")
            elif f"c{t['from_card']}_" not in dot or f"\\n{t['bytes']} B" not in dot:
                failures.append(f"dot: transfer {t['value']} {t['bytes']} B missing")
        # the sharded plan loads back whole, and a card over capacity is refused
        r = lpcc(*args, "--plan", os.path.join(out, "plan.json"), "--dump-ir=plan", "--json", "-q")
        if r.returncode != 0:
            failures.append(f"shard --plan: {r.stderr}")
        else:
            back = json.loads(r.stdout)
            if back["shards"] != plan["shards"] or back["transfers"] != plan["transfers"]:
                failures.append("shard --plan: reloaded plan differs")
            if [c["memory"] for c in back["cards"]] != [c["memory"] for c in plan["cards"]]:
                failures.append("shard --plan: recomputed memory sections differ")
        small = json.loads(json.dumps(plan))
        small["capacities"] = [plan["cards"][0]["total_bytes"] - 1]
        p = os.path.join(tmp, "small.json")
        json.dump(small, open(p, "w"))
        r = lpcc(*args, "--plan", p, "-q")
        if r.returncode != 3 or "shard 0 of 2 of layer 0" not in r.stderr:
            failures.append(f"sharded card over capacity: rc {r.returncode}: {r.stderr}")
    # --no-split: the oversize report instead
    r = lpcc(*args, "--capacity", "1MiB", "--no-split")
    if r.returncode != 3 or "layer 0 'layers.0' needs" not in r.stderr or "fit 2 cards" not in r.stderr:
        failures.append(f"--no-split: rc {r.returncode}: {r.stderr}")


def dot_plan(failures):
    path = os.path.join(MODELS, "gpt2_tiny.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        dot = os.path.join(tmp, "p.dot")
        r = lpcc(path, "--dim", "batch=2", "--dim", "seq=8", "--cards", "3", "--algo", "dp",
                 "--capacity", "1GiB", "--dump-ir=plan", "--json", "-q", "--dot", dot)
        if r.returncode != 0:
            failures.append(f"dot: {r.stderr}")
            return
        plan, text = json.loads(r.stdout), open(dot).read()
        if not plan["transfers"]:
            failures.append("dot: a 3-card plan with no transfers")
        for c in range(3):
            if f"subgraph cluster_card{c} " not in text:
                failures.append(f"dot: card {c} not drawn")
        for t in plan["transfers"]:
            label = f"{t['value']}\\n{t['bytes']} B"
            if label not in text:
                failures.append(f"dot: transfer label '{label}' missing")


def custom_target(failures):
    """A plan made for a profile file loads back with that profile, not h100's."""
    path = os.path.join(MODELS, "gpt2_tiny.onnx")
    args = [path, "--dim", "batch=2", "--dim", "seq=8"]
    with tempfile.TemporaryDirectory() as tmp:
        prof = {"name": "testcard", "capacity": "600 KiB", "l2_bytes": "1 MiB", "dram_bytes": "1 GiB",
                "peak_flops": 1e12, "hbm_bw": 1e11, "l2_bw": 5e11, "link_latency_s": 1e-5,
                "link_bw": 1e10, "launch_s": 2e-6}
        tp = os.path.join(tmp, "t.json")
        json.dump(prof, open(tp, "w"))
        out = os.path.join(tmp, "o")
        r = lpcc(*args, "--target", tp, "-q", "-o", out)
        if r.returncode != 0:
            failures.append(f"custom target: {r.stderr}")
            return
        plan = json.load(open(os.path.join(out, "plan.json")))
        r = lpcc(*args, "--plan", os.path.join(out, "plan.json"), "--dump-ir=plan", "--json", "-q")
        back = json.loads(r.stdout) if r.returncode == 0 else None
        if back is None or back["target"] != plan["target"] or back["target"]["name"] != "testcard" \
                or back["target"]["capacity"] != 600 * 1024:
            failures.append(f"custom target --plan: {r.stderr} {back and back['target']}")
        elif [c["stage_s"] for c in back["cards"]] != [c["stage_s"] for c in plan["cards"]]:
            failures.append("custom target --plan: stage times differ")


def card_of(plan, layer):
    return [c["card"] for c in plan["cards"] if c["first_layer"] <= layer <= c["last_layer"]]


def pins(failures):
    """--pin: at 2500 KiB gpt2_tiny fits one card; pinning h.1 to card 1
    moves it there and the chained cards still reproduce the model; with
    --cut-after both hold; an impossible pin exits 3 naming the pin and the
    capacity, pins out of order exit 2 naming both."""
    path = os.path.join(MODELS, "gpt2_tiny.onnx")
    args = [path, *dims_args("gpt2_tiny"), "--capacity", "2500KiB", "-q"]
    layers = json.loads(lpcc(*args, "--dump-ir=layers", "--json").stdout)["layers"]
    h1 = [i for i, l in enumerate(layers) if l["name"] == "h.1"][0]
    natural = json.loads(lpcc(*args, "--dump-ir=plan", "--json").stdout)
    if card_of(natural, h1) != [0]:
        failures.append(f"pin: the test needs h.1 on card 0 without pins, got {card_of(natural, h1)}")
    feeds = feeds_for(path, {"batch": BATCH, "seq": SEQ})
    ref_sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref_names = [o.name for o in ref_sess.get_outputs()]
    ref = dict(zip(ref_names, ref_sess.run(ref_names, feeds)))
    with tempfile.TemporaryDirectory() as tmp:
        for algo in ["greedy", "dp", "throughput"]:
            out = os.path.join(tmp, algo)
            r = lpcc(*args, "--algo", algo, "--pin", "h.1=1", "-o", out)
            if r.returncode != 0:
                failures.append(f"pin h.1=1 {algo}: rc {r.returncode}: {r.stderr}")
                continue
            plan = json.load(open(os.path.join(out, "plan.json")))
            if card_of(plan, h1) != [1]:
                failures.append(f"pin h.1=1 {algo}: h.1 on cards {card_of(plan, h1)}")
            vals = run_chain(out, len(plan["cards"]), feeds)
            for name, want in ref.items():
                have = vals.get(name)
                if have is None or not np.allclose(have, want, atol=1e-4, rtol=1e-4):
                    failures.append(f"pin h.1=1 {algo}: output {name} differs")
    # with forced cuts: cut after 0, h.1 alone after h.0 on card 2
    r = lpcc(*args, "--cut-after", "0", "--pin", "h.1=2", "--dump-ir=plan", "--json")
    if r.returncode != 0:
        failures.append(f"pin + cut-after: rc {r.returncode}: {r.stderr}")
    else:
        plan = json.loads(r.stdout)
        if plan["cuts_after"] != [0, h1 - 1] or card_of(plan, h1) != [2]:
            failures.append(f"pin + cut-after: cuts {plan['cuts_after']}, h.1 on {card_of(plan, h1)}")
    # h.0 is layer 1: cards 0 and 1 before card 2 cannot each get a layer
    r = lpcc(*args, "--pin", "h.0=2")
    if r.returncode != 3 or "'h.0' is pinned to card 2" not in r.stderr or "2.44 MiB" not in r.stderr:
        failures.append(f"impossible pin: rc {r.returncode}: {r.stderr}")
    # embed..h.1 on card 0 need more than 2 MiB
    r = lpcc(path, *dims_args("gpt2_tiny"), "--capacity", "2MiB", "--pin", "embed=0", "--pin", "h.1=0")
    if r.returncode != 3 or "'h.1' is pinned to card 0" not in r.stderr or "2.00 MiB" not in r.stderr \
            or "layers 0..2, all pinned to card 0" not in r.stderr:
        failures.append(f"pinned span over capacity: rc {r.returncode}: {r.stderr}")
    r = lpcc(*args, "--pin", "h.1=0", "--pin", "h.0=1")
    if r.returncode != 2 or "'h.0' on card 1" not in r.stderr or "'h.1' on card 0" not in r.stderr:
        failures.append(f"pins out of order: rc {r.returncode}: {r.stderr}")


# The seed's dense layer on one H200 and over 4 (tensor parallel).
# Measured on an H200 (PyTorch kernels in CUDA graphs): (batch, seq) -> ms for 16 layers on 1
# GPU, TP4, and 4 layers on 1 GPU.
MEASURED_H200 = {(16, 1): (6.99, 2.86, 2.04), (1, 2048): (95.4, 30.0, 23.3), (4, 2048): (370, 118, 93.2)}
FACTOR = 1.5


def compare_model(failures):
    path = os.path.join(MODELS, "seed_16x8192.onnx")
    for (batch, seq), (one, tp4, four) in MEASURED_H200.items():
        def predict(tp, pp):
            r = lpcc(path, "--dim", f"batch={batch}", "--dim", f"seq={seq}", "--target", "h200",
                     "--algo", "throughput", "--compare", f"tp={tp},pp={pp}", "--dump-ir=plan", "--json", "-q")
            if r.returncode != 0:
                failures.append(f"compare {batch}x{seq}: {r.stderr}")
                return None
            return json.loads(r.stdout)["comparison"]
        c1, c4 = predict(1, 1), predict(4, 1)
        if not c1 or not c4:
            continue
        got = {"16 layers, 1 GPU": (c1["tp_pp"]["step_s"] * 1e3, one),
               "TP4": (c4["tp_pp"]["step_s"] * 1e3, tp4),
               "4 layers a GPU": (c4["layerwise"]["step_s"] * 1e3, four)}
        for what, (pred, meas) in got.items():
            if not meas / FACTOR <= pred <= meas * FACTOR:
                failures.append(f"compare {batch}x{seq} {what}: predicted {pred:.3g} ms, measured {meas} ms")


def compare_h100(failures):
    """The model against the seed layer timed on an H100 (bench/gpu/seed_layer_bench.py,
    results in bench/gpu/seed_layer_h100.json): 16 layers on one card, and the slowest
    stage of 4 and of 16 cards (4 layers and 1 layer a card)."""
    path = os.path.join(MODELS, "seed_16x8192.onnx")
    with open(os.path.join(SRC, "bench", "gpu", "seed_layer_h100.json")) as f:
        runs = json.load(f)["runs"]
    for run in runs:
        cards = {16: 1, 4: 4, 1: 16}[run["layers"]]
        r = lpcc(path, "--dim", f"batch={run['batch']}", "--dim", f"seq={run['seq']}", "--target", "h100",
                 "--algo", "throughput", "--compare", f"tp={cards},pp=1", "--dump-ir=plan", "--json", "-q")
        if r.returncode != 0:
            failures.append(f"h100 {run}: {r.stderr}")
            continue
        c = json.loads(r.stdout)["comparison"]
        pred = (c["tp_pp"] if cards == 1 else c["layerwise"])["step_s"] * 1e3
        if not run["ms"] / FACTOR <= pred <= run["ms"] * FACTOR:
            failures.append(f"h100 {run['layers']} layers {run['batch']}x{run['seq']}: predicted "
                            f"{pred:.3g} ms, measured {run['ms']} ms")


def main():
    if not LPCC:
        print("LPCC not set; skipping")
        return 0
    failures = []
    for model in ["gpt2_tiny", "bert_tiny", "llama_tiny", "cnn_small", "seed_2x256"]:
        check_model(model, failures)
    check_errors(failures)
    shard_hand_calc(failures)
    dot_plan(failures)
    custom_target(failures)
    pins(failures)
    compare_model(failures)
    compare_h100(failures)
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
