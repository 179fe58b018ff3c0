#!/usr/bin/env python3
"""Microbatch pipelining over processes on the CPU path: the same compiled
folder (`--cards N --algo dp`: balanced cards) run as one process (its cards
one after another) and as one process a rank, `--microbatches M` steps back
to back, side by side in one run.

    python3 bench/dist_bench.py --lpcc build/cli/lpcc [--cards 2] [--microbatches 8]

Reports each layout's wall time for the M microbatches (the last rank's,
which finishes last), tokens/s, the ratio, and its bound: the sum of the
cards' step times over the slowest card's (perfect pipelining). The ranks need a core each to
overlap: on a machine with fewer cores than ranks the ratio says so."""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lpcc", default=os.path.join(ROOT, "build", "cli", "lpcc"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "seed_2x256.onnx"))
    ap.add_argument("--cards", type=int, default=2)
    ap.add_argument("--microbatches", type=int, default=8)
    a = ap.parse_args()
    run = os.path.join(os.path.dirname(a.lpcc), "lpcc-run")
    tmp = tempfile.mkdtemp(prefix="lpcc_dist_bench.")
    out = os.path.join(tmp, "m")
    subprocess.run([a.lpcc, a.model, "--dim", "batch=1", "--dim", "seq=16", "--dtype", "fp32",
                    "--cards", str(a.cards), "--algo", "dp", "-q", "-o", out], check=True, env=dict(os.environ, LPCC_NO_BUILD="1"))
    common = [out, "--iters", "1", "--microbatches", str(a.microbatches), "--json", "--program", "library"]
    one = json.loads(subprocess.run([run, *common], capture_output=True, text=True, check=True).stdout)
    base = random.randint(20000, 60000)
    procs = [subprocess.Popen([run, *common], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, RANK=str(r), WORLD_SIZE=str(a.cards), MASTER_PORT=str(base)))
             for r in range(a.cards)]
    reps = [json.loads(p.communicate()[0]) for p in procs]
    many = max(r["pipeline_s"] for r in reps)
    res = {"model": os.path.basename(a.model), "cards": a.cards, "microbatches": a.microbatches,
           "cpus": os.cpu_count(), "one_process_s": one["pipeline_s"], "one_rank_a_card_s": many,
           "one_process_tokens_per_s": one["pipeline_tokens_per_s"],
           "ranks_tokens_per_s": one["tokens"] * a.microbatches / many,
           "speedup": one["pipeline_s"] / many,
           # perfect pipelining: the sum of the cards' step times over the slowest one
           "bound": sum(c["step_s"] for c in one["cards"]) / max(c["step_s"] for c in one["cards"])}
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
