#!/usr/bin/env python3
"""lpcc --dump-ir=program: the lowered program of each card, checked against
plan.json's memory plan written by the same run's -o (an independent reader
of the stored plan):
  - every slot, weight and boundary argument has the offset and bytes of the
    entry plan.json gives that value on that card;
  - per card: one receive per card input, the compute steps in graph order
    over the card's nodes, sends only of the card's outputs;
  - shard cards: one all-gather per split node, after the node that computes
    the card's slice; the text dump names each card's steps.
Models: gpt2_tiny on 2 cards, seed_2x256 at 1 MiB (blocks sharded)."""
import json
import os
import subprocess
import sys
import tempfile

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")


def run(args):
    r = subprocess.run([LPCC] + args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"lpcc {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def check(model, opts):
    path = os.path.join(MODELS, model)
    with tempfile.TemporaryDirectory() as out:
        run([path] + opts + ["-q", "-o", out])
        plan = json.load(open(os.path.join(out, "plan.json")))
    prog = json.loads(run([path] + opts + ["--dump-ir=program", "--json"]))
    text = run([path] + opts + ["--dump-ir=program"])
    cards = plan["cards"]
    assert len(prog["cards"]) == len(cards), (len(prog["cards"]), len(cards))
    n_args = n_gathers = 0
    for pc, cp in zip(cards, prog["cards"]):
        mem = pc["memory"]
        slots = {s["value"]: s for s in mem["slots"]}
        weights = {w["value"]: w for w in mem["weights"]}
        bound = {(b["direction"], b["value"]): b for b in mem["boundary"]}
        assert cp["total_bytes"] == mem["total_bytes"]

        def same(arg, entry):
            assert (arg["offset"], arg["bytes"]) == (entry["offset"], entry["bytes"]), (arg, entry)

        # a view's output read in place: later steps read the viewed value's slot
        viewed = {}

        def slot_of(v):
            while v in viewed:
                v = viewed[v]
            return slots[v]

        made, sliced, computed = set(), set(), []
        for st in cp["steps"]:
            k = st["kind"]
            if k == "compute":
                computed.append(st["node"])
                for a in st["outputs"]:
                    if a["region"] == "view":
                        viewed[a["value"]] = st["inputs"][0]["value"]
                for a in st["inputs"] + st["outputs"]:
                    if a["region"] == "slot":
                        same(a, slot_of(a["value"]))
                    elif a["region"] == "weight":
                        same(a, weights[a["value"]])
                    elif a["region"] == "gather":
                        g = bound[("gather", a["value"])]
                        assert g["offset"] <= a["offset"] and a["offset"] + a["bytes"] <= g["offset"] + g["bytes"]
                        sliced.add(a["value"])
                        continue
                    n_args += 1
                for a in st["inputs"]:
                    if a["region"] in ("slot", "view"):
                        assert a["value"] in made, (cp["card"], st)
                for a in st["outputs"]:
                    if a["region"] != "gather":
                        made.add(a["value"])
            elif k == "receive":
                same(st["buffer"], bound[("in", st["value"])])
                same(st["slot"], slots[st["value"]])
                made.add(st["value"])
            elif k == "send":
                assert st["value"] in pc["outputs"] and st["value"] in made
                same(st["buffer"], bound[("out", st["value"])])
                same(st["slot"], slot_of(st["value"]))
            else:
                assert st["value"] in sliced, st
                same(st["whole"], bound[("gather", st["value"])])
                same(st["slot"], slots[st["value"]])
                made.add(st["value"])
                n_gathers += 1
        receives = [s["value"] for s in cp["steps"] if s["kind"] == "receive"]
        assert receives == pc["inputs"], (receives, pc["inputs"])
        assert len(computed) == len(set(computed))
        assert f"card {cp['card']}" in text
    return n_args, n_gathers


def main():
    if not LPCC:
        sys.exit("LPCC is not set")
    a, g = check("gpt2_tiny.onnx", ["--dim", "batch=2", "--dim", "seq=8", "--cards", "2"])
    assert a > 0 and g == 0, (a, g)
    a, g = check("seed_2x256.onnx", ["--dim", "batch=2", "--dim", "seq=8", "--capacity", "1MiB"])
    assert a > 0 and g > 0, (a, g)
    print("program dumps match plan.json's memory plans")


if __name__ == "__main__":
    main()
