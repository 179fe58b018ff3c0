#!/usr/bin/env python3
"""`make test-gpu`'s model half: every model of models/ that carries its
weights, compiled by lpcc at fp32 and fp16 on 1 card, 3 cards and (the
transformers) a sharded plan, run on the GPU in virtual-card mode
(`lpcc-run DIR --device cuda`) and compared with ONNX Runtime (CPU) on the
same inputs: fp32 relative L2 error <= 1e-4 (TF32 off), fp16 <= 1e-2
against the fp32 reference. The first plan of each model also runs with
--check-nodes, which names any node whose GPU output differs from the CPU
reference kernel on the same inputs. Prints one line a run; exit 1 if any
run fails.

Programs: library, persistent, resident (where a card's program cannot run
resident it runs persistent, and the line says how many cards ran which),
auto. A quicker subset: --programs persistent --plans 1 (the programs and
the plans, of 1 / 3 / sharded, to run)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from run_cpu_test import MODELS, MODELS_RUN, LPCC, RUN, fp32_model, ort_reference  # noqa: E402

SHARDED = {"seed_2x256", "gpt2_tiny", "bert_tiny", "llama_tiny"}


def make_inputs(manifest, folder, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    feeds = {}
    for i, x in enumerate(manifest["inputs"]):
        shape, dt = x["shape"], x["dtype"]
        if dt in ("float", "float32", "float16", "bfloat16"):
            a = rng.uniform(-1, 1, size=shape).astype(np.float32)
            stored = a.astype(np.float16) if dt == "float16" else a
            a = stored.astype(np.float32)
        elif "mask" in x["name"]:
            a = stored = np.ones(shape, dtype=np.int64)
        else:
            a = stored = rng.integers(0, 10, size=shape).astype(np.int64)
        feeds[x["name"]] = a
        with open(os.path.join(folder, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(stored, x["name"]).SerializeToString())
    return feeds


def main():
    ap = argparse.ArgumentParser(description="every model on the GPU against ONNX Runtime")
    ap.add_argument("--programs", default="library,persistent,resident,auto")
    ap.add_argument("--plans", default="1,3,sharded")
    a = ap.parse_args()
    programs, plan_kinds = a.programs.split(","), a.plans.split(",")
    tmp = tempfile.mkdtemp(prefix="test_gpu.")
    failures = 0
    for name, args in MODELS_RUN:
        ref_model = fp32_model(os.path.join(MODELS, f"{name}.onnx"))
        plans = [p for k, p in (("1", ["--cards", "1"]), ("3", ["--cards", "3"])) if k in plan_kinds]
        if name in SHARDED and "sharded" in plan_kinds:
            plans.append(["--capacity", "700KiB"])
        for dtype, tol in (("fp32", 1e-4), ("fp16", 1e-2)):
            for pi, plan in enumerate(plans):
                tag = f"{name} {dtype} {' '.join(plan)}"
                out = os.path.join(tmp, f"{name}_{dtype}_{pi}")
                r = subprocess.run([LPCC, os.path.join(MODELS, f"{name}.onnx"), *args, "--dtype", dtype,
                                    *plan, "-q", "-o", out], capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"FAIL {tag}: lpcc exit {r.returncode}: {r.stderr.strip()}")
                    failures += 1
                    continue
                with open(os.path.join(out, "manifest.json")) as f:
                    man = json.load(f)
                inp, ref = out + "_in", out + "_ref"
                feeds = make_inputs(man, inp)
                names = [o["name"] for o in man["outputs"]]
                ort_reference(ref_model, feeds, names, ref)
                # auto: the faster of the two, as the warm-up timed them
                for program in programs:
                    cmd = [RUN, out, "--device", "cuda", "--inputs", inp, "--check", ref, "--tolerance",
                           str(tol), "--iters", "20", "--warmup", "3", "--json", "--program", program]
                    if pi == 0 and program == "library":
                        cmd.append("--check-nodes")
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    try:
                        rep = json.loads(r.stdout)
                    except json.JSONDecodeError:
                        rep = None
                    if r.returncode != 0 or not rep:
                        print(f"FAIL {tag} {program}: lpcc-run exit {r.returncode}: {r.stderr.strip()[-3000:]}")
                        failures += 1
                        continue
                    ran = [c["program"] for c in rep["cards"]]
                    errs = [o["rel_l2"] for o in rep["outputs"]]
                    kinds = ", ".join(f"{ran.count(k)} {k}" for k in ("resident", "persistent", "library")
                                      if ran.count(k))
                    print(f"ok   {tag} {program} (ran: {kinds}): "
                          f"{len(man['cards'])} card(s), max relative L2 {max(errs):.3g} "
                          f"(tolerance {tol:g}), latency {rep['latency_s'] * 1e6:.1f} us, "
                          f"cuts written directly {sum(c['direct'] for c in rep['cuts'])}/{len(rep['cuts'])}, "
                          f"allocated = planned: {all(c['allocated_bytes'] == c['planned_bytes'] for c in rep['cards'])}, "
                          f"GPU memory taken {rep['cards'][0]['gpu_taken_bytes'] / 2**20:.1f} MiB "
                          f"(cards {rep['cards'][0]['gpu_allocated_bytes'] / 2**20:.1f} MiB)")
    print(f"test-gpu models: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
