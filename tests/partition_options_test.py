"""Partition options through the lpcc binary: --cards N is exact for every
algorithm (N cards, or exit 3 with the reason, never fewer); overlapping
--pin patterns; --capacity and a target file's sizes refused with a reason
(exit 2) for every sloppy form; each regression generated, no blobs."""
import json
import os
import subprocess
import sys
import tempfile

import onnx
from onnx import TensorProto, helper

LPCC = os.environ.get("LPCC")


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True)


def chain_model(path, n_layers, hidden=16):
    """layers.0 .. layers.N-1, each a MatMul by its own weight then a Relu."""
    nodes, inits = [], []
    x = "x"
    for i in range(n_layers):
        w = f"layers.{i}.w"
        inits.append(helper.make_tensor(w, TensorProto.FLOAT, [hidden, hidden], [0.01] * hidden * hidden))
        nodes.append(helper.make_node("MatMul", [x, w], [f"layers.{i}.mm"], name=f"/layers.{i}/MatMul"))
        nodes.append(helper.make_node("Relu", [f"layers.{i}.mm"], [f"layers.{i}.out"], name=f"/layers.{i}/Relu"))
        x = f"layers.{i}.out"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, hidden])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4, hidden])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)


def plan_of(r):
    return json.loads(r.stdout)


def cards_exact(model, failures):
    base = [model, "-q", "--dump-ir=plan", "--json"]
    r = lpcc(*base, "--capacity", "1GiB")
    if r.returncode != 0:
        failures.append(f"chain: rc {r.returncode}: {r.stderr}")
        return
    n = plan_of(r)["n_layers"]
    if n != 6 or len(plan_of(r)["cards"]) != 1:
        failures.append(f"chain: want 6 layers on 1 card, got {n}, {len(plan_of(r)['cards'])}")
    for algo in ["greedy", "dp", "throughput"]:
        for cards in [1, 2, 5, 6]:
            r = lpcc(*base, "--capacity", "1GiB", "--algo", algo, "--cards", str(cards))
            got = len(plan_of(r)["cards"]) if r.returncode == 0 else None
            if got != cards:
                failures.append(f"{algo} --cards {cards}: rc {r.returncode}, {got} cards: {r.stderr}")
        r = lpcc(*base, "--capacity", "1GiB", "--algo", algo, "--cards", "7")
        if r.returncode != 3 or "only 6 layers" not in r.stderr:
            failures.append(f"{algo} --cards 7 on 6 layers: rc {r.returncode}: {r.stderr}")
    # unequal capacities in card order: a small card in the middle still gets one layer
    r = lpcc(*base, "--capacity", "1GiB,1GiB,1GiB", "--cards", "3")
    if r.returncode != 0 or len(plan_of(r)["cards"]) != 3:
        failures.append(f"3 capacities --cards 3: rc {r.returncode}: {r.stderr}")
    # too few cards still names what is needed
    r = lpcc(*base, "--capacity", "4KiB", "--cards", "2")
    if r.returncode != 3 or "needs" not in r.stderr:
        failures.append(f"--cards 2 at 4 KiB: rc {r.returncode}: {r.stderr}")


def loss_model(path):
    """The expanded SoftmaxCrossEntropyLoss of the ONNX backend tests: two
    layers, the second receiving an 84-byte log-softmax from the first, so
    layer 1 alone needs more than the whole model on one card."""
    p = "sce_"
    nodes = [
        helper.make_node("Constant", [], [p + "shape3d"],
                         value=helper.make_tensor("v", TensorProto.INT64, [3], [0, 0, -1])),
        helper.make_node("Reshape", ["x", p + "shape3d"], [p + "ncd"]),
        helper.make_node("Transpose", [p + "ncd"], [p + "ndc"], perm=[0, 2, 1]),
        helper.make_node("LogSoftmax", [p + "ndc"], [p + "logsm"], axis=2),
        helper.make_node("Transpose", [p + "logsm"], [p + "logsm_ncd"], perm=[0, 2, 1]),
        helper.make_node("Shape", ["x"], [p + "xshape"]),
        helper.make_node("Reshape", [p + "logsm_ncd", p + "xshape"], [p + "log"]),
        helper.make_node("NegativeLogLikelihoodLoss", [p + "log", "y"], ["z"], ignore_index=2,
                         reduction="mean"),
    ]
    g = helper.make_graph(nodes, "sce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 2]),
                                         helper.make_tensor_value_info("y", TensorProto.INT64, [3, 2])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def cards_exact_boundary(model, failures):
    """dp --cards 2 where a card's footprint is not monotone: 2 cards, never 1."""
    base = [model, "-q", "--dump-ir=plan", "--json", "--dtype", "bf16", "--capacity", "32MiB"]
    r = lpcc(*base)
    if r.returncode != 0 or plan_of(r)["n_layers"] != 2:
        failures.append(f"loss model: want 2 layers: rc {r.returncode}: {r.stderr}")
        return
    whole = plan_of(r)["cards"][0]["total_bytes"]
    for algo in ["greedy", "dp", "throughput"]:
        r = lpcc(*base, "--algo", algo, "--cards", "2", "--no-split")
        cards = plan_of(r)["cards"] if r.returncode == 0 else []
        got = [(c["first_layer"], c["last_layer"]) for c in cards]
        if got != [(0, 0), (1, 1)]:
            failures.append(f"loss model {algo} --cards 2: rc {r.returncode}, {got}: {r.stderr}")
        elif cards[1]["total_bytes"] <= whole:
            failures.append(f"loss model: layer 1 alone {cards[1]['total_bytes']} B is no more "
                            f"than the whole model's {whole} B, so the case tests nothing")


def pins_overlap(model, failures):
    base = [model, "-q", "--capacity", "1GiB", "--dump-ir=plan", "--json"]
    for order in [("layers.*=0", "layers.5=0"), ("layers.5=0", "layers.*=0")]:
        r = lpcc(*base, "--pin", order[0], "--pin", order[1])
        if r.returncode != 0 or len(plan_of(r)["cards"]) != 1:
            failures.append(f"--pin {order}: rc {r.returncode}: {r.stderr}")
    r = lpcc(*base, "--pin", "layers.*=0", "--pin", "layers.5=1")
    if r.returncode != 2 or "'layers.*=0' and --pin 'layers.5=1' both match layer 5" not in r.stderr:
        failures.append(f"conflicting overlapping pins: rc {r.returncode}: {r.stderr}")
    r = lpcc(*base, "--pin", "nothing.*=0")
    if r.returncode != 2 or "matches no layer name" not in r.stderr:
        failures.append(f"pin matching nothing: rc {r.returncode}: {r.stderr}")
    r = lpcc(*base, "--pin", "layers.1=99999999999999")
    if r.returncode != 2 or "expected PATTERN=CARD" not in r.stderr:
        failures.append(f"pin card out of range: rc {r.returncode}: {r.stderr}")


BAD_CAPACITIES = {
    "0x10MiB": "hexadecimal",
    "31MiB,,": "entry 2 '': empty entry",
    ",31MiB": "entry 1 '': empty entry",
    "31MiB,": "entry 2 '': empty entry",
    "0": "at least one byte",
    "31MiB,0B": "entry 2 '0B': a card must hold at least one byte",
    "-1MiB": "negative",
    "+1MiB": "sign",
    "1e6": "unknown unit",
    "31MiB trailing": "unknown unit",
    "3 parsecs": "unknown unit",
    "99999999999999999999": "too large",
    "17000000TiB": "too large",
    "0.3B": "whole number",
    "": "no size given",
}


def capacity_errors(model, failures):
    for arg, want in BAD_CAPACITIES.items():
        r = lpcc(model, "-q", "--capacity", arg)
        if r.returncode != 2 or want not in r.stderr or f"--capacity '{arg}'" not in r.stderr:
            failures.append(f"--capacity {arg!r}: rc {r.returncode}, want '{want}': {r.stderr.strip()}")
    r = lpcc(model, "-q", "--capacity", "1.5 MiB,2mib", "--dump-ir=plan", "--json")
    if r.returncode != 0 or plan_of(r)["capacities"] != [1572864, 2097152]:
        failures.append(f"--capacity 1.5 MiB,2mib: rc {r.returncode}: {r.stdout[:200]} {r.stderr}")


def target_errors(model, tmp, failures):
    cases = [({"capacity": "0", "persist_bytes": "31MiB"}, "'capacity' is 0"),
             ({"capacity": 0}, "'capacity' is 0"),
             ({"capacity": "0x10MiB"}, "'capacity' \"0x10MiB\" is not a size: hexadecimal"),
             ({"capacity": "31MiB,"}, "unknown unit"),
             ({"dram_bytes": -1, "capacity": "1MiB"}, "'dram_bytes': a size cannot be negative"),
             ({"capacity": 1.5}, "'capacity': expected an integer")]
    for i, (body, want) in enumerate(cases):
        path = os.path.join(tmp, f"t{i}.json")
        with open(path, "w") as f:
            json.dump(body, f)
        r = lpcc(model, "-q", "--target", path)
        if r.returncode != 2 or want not in r.stderr or path not in r.stderr:
            failures.append(f"target {body}: rc {r.returncode}, want '{want}': {r.stderr.strip()}")


def tiers(model, tmp, failures):
    """--tier sets C and the on-chip rate the stage times use; a plan keeps its tier."""
    base = [model, "-q", "--dump-ir=plan", "--json", "--target", "h200"]
    plans = {}
    for tier in ("smem", "l2", "hbm"):
        r = lpcc(*base, "--tier", tier)
        if r.returncode != 0:
            failures.append(f"tier {tier}: rc {r.returncode}: {r.stderr}")
            return
        plans[tier] = plan_of(r)
    want = {"smem": (132 * 227 * 1024, 3.01e13), "l2": (37 * 1024 * 1024, 7.1e12), "hbm": (139 * 2**30, 4.5e12)}
    for tier, (cap, bw) in want.items():
        t = plans[tier]["target"]
        if t["tier"] != tier or t["capacity"] != cap or abs(t["chip_bw"] - bw) > 1:
            failures.append(f"tier {tier}: target {t}")
    # the chain fits every tier on one card: its memory time shrinks with the tier's rate
    times = {k: v["cards"][0]["stage_s"] for k, v in plans.items()}
    if not (times["smem"] < times["l2"] < times["hbm"]):
        failures.append(f"tier stage times not ordered by bandwidth: {times}")
    # a plan read back keeps its tier
    path = os.path.join(tmp, "smem_plan.json")
    with open(path, "w") as f:
        json.dump(plans["smem"], f)
    r = lpcc(model, "-q", "--dump-ir=plan", "--json", "--plan", path)
    if r.returncode != 0 or plan_of(r)["target"]["tier"] != "smem" or \
            plan_of(r)["target"]["capacity"] != want["smem"][0]:
        failures.append(f"--plan of a smem plan: rc {r.returncode}: {r.stderr or plan_of(r)['target']}")
    # no measured shared-memory rate on the h100 profile; a bad tier name
    for args, want_msg in ((["--target", "h100", "--tier", "smem"], "no measured shared-memory bandwidth"),
                           (["--tier", "sram"], "--tier sram: expected smem, l2 or hbm")):
        r = lpcc(model, "-q", *args)
        if r.returncode != 2 or want_msg not in r.stderr:
            failures.append(f"{args}: rc {r.returncode}, want '{want_msg}': {r.stderr.strip()}")


def main():
    if not LPCC:
        print("LPCC not set; skipping")
        return 0
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "chain.onnx")
        chain_model(model, 6)
        cards_exact(model, failures)
        loss = os.path.join(tmp, "loss.onnx")
        loss_model(loss)
        cards_exact_boundary(loss, failures)
        pins_overlap(model, failures)
        capacity_errors(model, failures)
        target_errors(model, tmp, failures)
        tiers(model, tmp, failures)
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
