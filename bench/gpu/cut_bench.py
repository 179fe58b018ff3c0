#!/usr/bin/env python3
"""A cut written straight into the receiving card's buffer against the same
cut copied after the sender's step, on one GPU (two virtual cards: the
receive buffer is device memory of the same GPU; across GPUs the same write
goes over peer access).

    python3 bench/gpu/cut_bench.py --lpcc build/cli/lpcc --out bench/gpu/cut_bench_h200.json

(about 3 minutes on an H200 with the defaults).

For seed-structure layers (fp16, hidden H, H/64 heads, MLP 4H), two layers
at T tokens a step (batch T x seq 1), compiled `--target h200 --cards 2` (a
layer a card), each folder is run with `lpcc-run --device cuda --program
persistent` three ways, side by side in one run:
  direct   the default: card 0's program writes the cut into card 1's buffer;
  copied   `--copy-cuts`: card 0 writes its own send buffer, then a device copy;
  library  `--program library` (one library kernel a node; the cut copied).
The three ways take turns, --repeats times (a process each run), so that a
drift of the GPU's clock or L2 state shows in all of them. Each row: the
median over the repeats of the step latency (device, itself the median of
--iters), of the cards' step and transfer times, and of --microbatches M back
to back (tokens/s): a direct cut orders the sender's next step after the
receiver's, so microbatches do not overlap across it, where a copied cut lets
them; the spread (min..max) of the latencies is kept too.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from statistics import median

from persist_bench import gen_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")

WAYS = (("direct", ["--program", "persistent"]),
        ("copied", ["--program", "persistent", "--copy-cuts"]),
        ("library", ["--program", "library"]))


def compile_pair(lpcc, tmp, hidden, tokens, models):
    model = gen_model(tmp, hidden, 2, models)
    out = os.path.join(tmp, f"h{hidden}_t{tokens}")
    r = subprocess.run([lpcc, model, "--dim", f"batch={tokens}", "--dim", "seq=1", "--dtype", "fp16",
                        "--target", "h200", "--cards", "2", "-q", "-o", out],
                       capture_output=True, text=True, env=dict(os.environ, LPCC_NO_BUILD="1"))
    if r.returncode != 0:
        raise RuntimeError(f"lpcc (exit {r.returncode}): {r.stderr[-2000:]}")
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    return out, man


def run(lpcc_run, folder, args, iters, warmup, microbatches):
    cmd = [lpcc_run, folder, "--device", "cuda", "--iters", str(iters), "--warmup", str(warmup),
           "--microbatches", str(microbatches), "--json"] + args
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (exit {r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lpcc", default=os.path.join(ROOT, "build", "cli", "lpcc"))
    ap.add_argument("--hidden", default="768,1024")
    ap.add_argument("--tokens", default="1,16")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--microbatches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args()
    lpcc_run = os.path.join(os.path.dirname(os.path.abspath(a.lpcc)), "lpcc-run")
    rows, models = [], {}
    with tempfile.TemporaryDirectory(prefix="cut_bench.") as tmp:
        for hidden in [int(x) for x in a.hidden.split(",")]:
            for tokens in [int(x) for x in a.tokens.split(",")]:
                folder, man = compile_pair(a.lpcc, tmp, hidden, tokens, models)
                cuts = [t for t in man["transfers"] if t["kind"] == "cut"]
                row = {"hidden": hidden, "tokens": tokens, "cards": len(man["cards"]),
                       "cut_bytes": sum(t["bytes"] for t in cuts)}
                reps = {name: [] for name, _ in WAYS}
                for _ in range(a.repeats):
                    for name, args in WAYS:
                        reps[name].append(run(lpcc_run, folder, args, a.iters, a.warmup, a.microbatches))
                for name, _ in WAYS:
                    rs = reps[name]
                    lat = [r["latency_s"] * 1e6 for r in rs]
                    row[name] = {"latency_us": median(lat), "latency_us_all": lat,
                                 "programs": [c["program"] for c in rs[0]["cards"]],
                                 "step_us": [median([r["cards"][c]["step_s"] * 1e6 for r in rs])
                                             for c in range(len(rs[0]["cards"]))],
                                 "transfer_us": [median([r["cards"][c]["transfer_s"] * 1e6 for r in rs])
                                                 for c in range(len(rs[0]["cards"]))],
                                 "direct_cuts": sum(1 for c in rs[0]["cuts"] if c["direct"]),
                                 "cuts": len(rs[0]["cuts"]),
                                 "pipeline_tokens_per_s": median([r.get("pipeline_tokens_per_s", 0.0)
                                                                  for r in rs])}
                rows.append(row)
                d, c, l = row["direct"], row["copied"], row["library"]
                print(f"H {hidden:5d} T {tokens:3d} cards {row['cards']} cut {row['cut_bytes']} B: latency us "
                      f"direct {d['latency_us']:.1f} ({min(d['latency_us_all']):.1f}..{max(d['latency_us_all']):.1f}; "
                      f"{d['direct_cuts']}/{d['cuts']} direct)  copied "
                      f"{c['latency_us']:.1f} ({min(c['latency_us_all']):.1f}..{max(c['latency_us_all']):.1f}; "
                      f"transfer {c['transfer_us'][0]:.1f})  library "
                      f"{l['latency_us']:.1f}  direct/copied {d['latency_us'] / c['latency_us']:.3f}  "
                      f"microbatches tokens/s direct {d['pipeline_tokens_per_s']:.0f} copied "
                      f"{c['pipeline_tokens_per_s']:.0f}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"command": " ".join(sys.argv), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
