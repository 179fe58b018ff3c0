#!/usr/bin/env python3
"""lpcc's resident and persistent card programs against its library program and PyTorch on
one GPU, for seed-structure layers (fp16, hidden H, H/64 heads, MLP 4H) at T
tokens a step (batch T x seq 1), L layers on one card:

    python3 bench/gpu/persist_bench.py --lpcc build/cli/lpcc --out bench/gpu/persist_bench_h200.json

Each group is compiled once (`--target h200 --cards 1`, tier l2: a group that
fits the persisting L2 gets "program": "persistent"; one that does not is exit 3
and is compiled again with `--tier hbm`, recorded fits_l2 false) and the same
folder run with `lpcc-run --program resident`, `--program persistent` and
`--program library` (resident: weights held in shared memory across steps
where they fit; a row whose weights do not fit records the persistent
program it ran instead);
PyTorch runs a stack of L gpu_bench.SeedLayer modules inside a CUDA graph.
Residency rows at H=1024, T=16: every group again with `--no-pin`, and 16
layers (400 MB, HBM only): what residency buys, measured.

Quick runs: --hidden 1024 --tokens 16 --layers 1 --sections main.
--dry-run compiles H=768, T=16, L=1 and prints the plan's prediction and the
manifest's program (no GPU, no torch needed).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
EXIT_INFEASIBLE = 3


def gen_model(tmp, hidden, layers, cache):
    """models/gen_seed.py's graph with written random weights; one per (H, L)."""
    key = (hidden, layers)
    if key not in cache:
        path = os.path.join(tmp, f"seed_{layers}x{hidden}.onnx")
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "gen_seed.py"),
                        "--layers", str(layers), "--hidden", str(hidden), "--heads", str(hidden // 64),
                        "--mlp", str(4 * hidden), "--weights", "external", "--out", path],
                       check=True, capture_output=True)
        cache[key] = path
    return cache[key]


def compile_group(lpcc, model, tokens, out):
    """Compiles at tier l2; a group over the persisting L2 (exit 3) at tier hbm.
    Returns (fits_l2, plan, manifest)."""
    env = dict(os.environ, LPCC_NO_BUILD="1")
    base = [lpcc, model, "--dim", f"batch={tokens}", "--dim", "seq=1", "--dtype", "fp16",
            "--target", "h200", "--cards", "1", "-q", "-o", out]
    fits = True
    r = subprocess.run(base, capture_output=True, text=True, env=env)
    if r.returncode == EXIT_INFEASIBLE:
        fits = False
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run(base + ["--tier", "hbm"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"lpcc {model} (exit {r.returncode}): {r.stderr[-2000:]}")
    with open(os.path.join(out, "plan.json")) as f:
        plan = json.load(f)
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    return fits, plan, manifest


def lpcc_run(run, folder, program, iters, warmup, pin=True):
    cmd = [run, folder, "--device", "cuda", "--iters", str(iters), "--warmup", str(warmup),
           "--json", "--program", program] + ([] if pin else ["--no-pin"])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"lpcc-run {program} (exit {r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def torch_stack_us(gpu_bench, hidden, layers, tokens, reps):
    import torch
    torch.manual_seed(0)
    mods = [gpu_bench.SeedLayer(hidden, hidden // 64, 4 * hidden) for _ in range(layers)]
    for m in mods[:-1]:
        m.norm = torch.nn.Identity()  # the graph has one final norm
    m = torch.nn.Sequential(*mods).cuda().half().eval()
    x = torch.randn(tokens, 1, hidden, device="cuda", dtype=torch.float16)
    try:
        return gpu_bench.graph_time_us(lambda: m(x), reps=reps)
    finally:
        del m, x
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def measure(a, ctx, kind, hidden, tokens, layers, pin=True, with_torch=True):
    """One row; a failing part records its error and the others still run."""
    row = {"kind": kind, "hidden": hidden, "tokens": tokens, "layers": layers, "pin": pin,
           "errors": {}}
    folder = os.path.join(ctx["tmp"], f"g_{hidden}_{tokens}_{layers}")
    try:
        if folder not in ctx["compiled"]:
            model = gen_model(ctx["tmp"], hidden, layers, ctx["models"])
            ctx["compiled"][folder] = compile_group(a.lpcc, model, tokens, folder)
        fits, plan, manifest = ctx["compiled"][folder]
    except Exception:  # noqa: BLE001  (recorded; the other rows still run)
        row["errors"]["compile"] = traceback.format_exc()[-2000:]
        row["failed"] = True
        return row
    card = plan["cards"][0]
    row.update(fits_l2=fits, runs_from="l2" if fits else "hbm", tier=plan["target"].get("tier"),
               manifest_program=manifest["cards"][0].get("program"),
               weight_bytes=card["weight_bytes"], total_bytes=card["total_bytes"],
               predicted_stage_s=card["stage_s"],
               predicted_us_per_layer=card["stage_s"] * 1e6 / layers)
    if a.dry_run:
        return row
    for prog in a.programs:
        try:
            rep = lpcc_run(ctx["run"], folder, prog, a.iters, a.warmup, pin)
            c = rep["cards"][0]
            row[prog] = {"latency_s": rep["latency_s"], "step_s": c["step_s"],
                         "program": c["program"], "l2_pinned": c.get("l2_pinned"),
                         "gpu_taken_bytes": c.get("gpu_taken_bytes")}
            row[f"{prog}_us_per_layer"] = rep["latency_s"] * 1e6 / layers
            row[f"{prog}_bytes_per_s"] = card["weight_bytes"] / rep["latency_s"]
        except Exception:  # noqa: BLE001
            row["errors"][prog] = traceback.format_exc()[-2000:]
    if with_torch:
        try:
            us = torch_stack_us(ctx["gpu_bench"], hidden, layers, tokens, a.iters)
            row["torch_us_per_layer"] = us / layers
            row["torch_bytes_per_s"] = card["weight_bytes"] / (us * 1e-6)
        except Exception:  # noqa: BLE001
            row["errors"]["torch"] = traceback.format_exc()[-2000:]
    p, lib, t = (row.get(k + "_us_per_layer") for k in ("persistent", "library", "torch"))
    rs = row.get("resident_us_per_layer") if row.get("resident", {}).get("program") == "resident" else None
    if rs and t:
        row["resident_over_torch"] = rs / t
    if p and t:
        row["persistent_over_torch"] = p / t
    if p and lib:
        row["persistent_over_library"] = p / lib
    # lpcc-run's default (--program auto) runs the faster of the two, as its
    # warm-up times them: that is what the plan's stage time should predict
    meas = min(x for x in (p, lib) if x) if (p or lib) else None
    if meas:
        row["predicted_over_measured"] = row["predicted_us_per_layer"] / meas
        row["predicted_over_persistent"] = row["predicted_us_per_layer"] / p if p else None
        row["predicted_over_library"] = row["predicted_us_per_layer"] / lib if lib else None
    row["failed"] = bool(row["errors"])
    return row


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows):
    head = ["hidden", "tokens", "layers", "weights from (l2/hbm)", "resident us/layer", "persistent us/layer",
            "library us/layer", "torch us/layer", "resident/torch", "persistent/torch",
            "TB/s resident / persistent / library / torch", "predicted us/layer", "predicted/measured"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        res = r.get("runs_from", r.get("resident", "?"))
        res = (res if isinstance(res, str) else "?") + ("" if r.get("pin", True) else ", no pin")
        if r.get("failed"):
            res += " (failed: " + ",".join(r["errors"]) + ")"
        # a resident run that could not hold its weights ran the persistent program: not a resident number
        held = isinstance(r.get("resident"), dict) and r["resident"].get("program") == "resident"
        rs = r.get("resident_us_per_layer") if held else None
        bws = [r.get("resident_bytes_per_s") if held else None] + \
              [r.get(k + "_bytes_per_s") for k in ("persistent", "library", "torch")]
        bw = " / ".join(fmt(b and b / 1e12, ".2f") for b in bws)
        out.append("| " + " | ".join([
            str(r["hidden"]), str(r["tokens"]), str(r["layers"]), res, fmt(rs, ".2f"),
            fmt(r.get("persistent_us_per_layer"), ".2f"), fmt(r.get("library_us_per_layer"), ".2f"),
            fmt(r.get("torch_us_per_layer"), ".2f"), fmt(r.get("resident_over_torch"), ".2f"),
            fmt(r.get("persistent_over_torch"), ".2f"),
            bw, fmt(r.get("predicted_us_per_layer"), ".2f"),
            fmt(r.get("predicted_over_measured"), ".2f")]) + " |")
    return "\n".join(out)


def ints(s):
    return [int(x) for x in s.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lpcc", default=os.path.join(ROOT, "build", "cli", "lpcc"))
    ap.add_argument("--out", default=None, help="JSON file: rows and machine info")
    ap.add_argument("--hidden", type=ints, default=[768, 1024, 1536])
    ap.add_argument("--tokens", type=ints, default=[1, 16, 128])
    ap.add_argument("--layers", type=ints, default=[1, 2, 4])
    ap.add_argument("--sections", default="main,nopin,big",
                    help="main: the grid; nopin: H=1024 T=16 groups with --no-pin; "
                         "big: H=1024 T=16, 16 layers (HBM)")
    ap.add_argument("--programs", default="resident,persistent,library",
                    help="lpcc-run programs to time (resident: falls back to persistent where the "
                         "weights do not fit shared memory; the row records which ran)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--dry-run", action="store_true",
                    help="compile H=768 T=16 L=1 only; print the plan's prediction (no GPU)")
    a = ap.parse_args()
    a.lpcc = os.path.abspath(a.lpcc)
    a.programs = a.programs.split(",")
    tmp = tempfile.mkdtemp(prefix="persist_bench.")
    ctx = {"tmp": tmp, "run": os.path.join(os.path.dirname(a.lpcc), "lpcc-run"),
           "models": {}, "compiled": {}, "gpu_bench": None}
    res = {"command": " ".join(sys.argv), "iters": a.iters, "warmup": a.warmup}
    if a.dry_run:
        r = measure(a, ctx, "main", 768, 16, 1)
        print(json.dumps(r, indent=1))
        shutil.rmtree(tmp, ignore_errors=True)
        return 0 if not r.get("failed") else 1
    sys.path.insert(0, HERE)
    import gpu_bench  # torch comes with it; its main() runs only as a script
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ctx["gpu_bench"] = gpu_bench
    res.update(device=torch.cuda.get_device_name(), torch=torch.__version__, cuda=torch.version.cuda)
    sections = a.sections.split(",")
    jobs = []
    if "main" in sections:
        jobs += [("main", h, t, l, True) for h in a.hidden for t in a.tokens for l in a.layers]
    if 1024 in a.hidden and 16 in a.tokens:
        if "nopin" in sections:
            jobs += [("nopin", 1024, 16, l, False) for l in a.layers]
        if "big" in sections:
            jobs.append(("big", 1024, 16, 16, True))
    rows = []
    try:
        for kind, h, t, l, pin in jobs:
            # torch does not know about pinning: its number is the main row's
            r = measure(a, ctx, kind, h, t, l, pin=pin, with_torch=pin)
            for part, err in r["errors"].items():
                print(f"row {kind} H={h} T={t} L={l}: {part} failed:\n{err}", file=sys.stderr)
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "errors"}), flush=True)
            if a.out:  # written after every row, so a cut-short run keeps what it measured
                with open(a.out, "w") as f:
                    json.dump(dict(res, rows=rows), f, indent=1)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{res['device']}, torch {res['torch']}, --iters {a.iters} --warmup {a.warmup}; "
          "predicted/measured against the faster program (what lpcc-run --program auto runs)")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
