#!/usr/bin/env python3
"""Sharded layers at scale, and the plan's text report.

A layer too large for C is split over n cards and each split node's output
is gathered by one all-gather among them, so a plan's size grows with n,
not n^2. Models are made with onnx.helper: one MatMul whose fp16 weight is
declared external and absent (a 154-byte file standing for 1 GiB or
24 GiB). Checked here:
  - 1 GiB at --capacity 1MiB (about 1600 cards): one transfer, an
    all_gather whose participants are every card with contiguous column
    ranges covering the axis; the run's peak RSS (getrusage of the child)
    and time stay far below what n (n - 1) pairwise transfers took (3 GB,
    18 s); --dot draws one node with one edge per participant; the plan
    validates again and reloads with --plan to the same transfers;
  - 24 GiB at the h100's C: the same bound; at a C that would need more
    than 16384 cards, exit 3 naming the layer, the count and the limit,
    at once;
  - card models of a present 64 MiB weight over 8+ cards: each slice is
    read alone (peak RSS under 40 MiB) and holds the right columns;
  - the text report: one row per card, whose numbers are plan.json's, a
    totals row, and the per-card details only under -v."""
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")
RSS_LIMIT = 256 << 20  # bytes; n (n - 1) gathers took 3 GB at 1 GiB / 1 MiB
TIME_LIMIT = 10.0      # seconds; they took 18 s

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def giant_matmul(path, k, n, data=None):
    """x[1, k] @ w[k, n] (fp16, external in w.bin next to path: `data`, or
    absent) -> y[1, n]."""
    if data is not None:
        data.astype(np.float16).tofile(os.path.join(os.path.dirname(path), "w.bin"))
    w = TensorProto(name="w", data_type=TensorProto.FLOAT16, dims=[k, n],
                    data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(k * n * 2))):
        e = w.external_data.add()
        e.key, e.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, n])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "giant",
                          [x], [y], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def measured(*args):
    """Runs lpcc; returns (result, seconds, peak RSS in bytes of the children
    so far, which the largest run sets)."""
    t0 = time.monotonic()
    r = subprocess.run([LPCC, *args], capture_output=True, text=True)
    took = time.monotonic() - t0
    return r, took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def check_gather_plan(what, plan, n_split, dim, value_bytes):
    cards = plan["cards"]
    if len(plan["transfers"]) != n_split:
        fail(f"{what}: {len(plan['transfers'])} transfers, want {n_split} (one per gathered value)")
        return
    t = plan["transfers"][0]
    n = len(cards)
    if (t["kind"], t["value"], t["first_card"], t["n_cards"], t["axis"], t["dim"], t["bytes"]) != \
            ("all_gather", "y", 0, n, 1, dim, value_bytes):
        fail(f"{what}: transfer { {k: v for k, v in t.items() if k != 'participants'} }")
    parts = t["participants"]
    if [p["card"] for p in parts] != list(range(n)):
        fail(f"{what}: participants are not cards 0..{n - 1}")
    edges = [p["begin"] for p in parts] + [parts[-1]["end"]]
    if edges[0] != 0 or edges[-1] != dim or any(p["end"] != q["begin"] for p, q in zip(parts, parts[1:])):
        fail(f"{what}: participant ranges do not tile 0..{dim}")
    for p in parts:
        if p["bytes"] != -(-value_bytes * (p["end"] - p["begin"]) // dim):
            fail(f"{what}: participant {p}: bytes")
            break
    # every card is a shard of layer 0 with a gather buffer of y, whole
    for c in cards:
        bufs = [b for b in c["memory"]["boundary"] if b["direction"] == "gather"]
        if c["n_shards"] != n or [(b["value"], b["bytes"]) for b in bufs] != [("y", value_bytes)]:
            fail(f"{what}: card {c['card']}: n_shards {c['n_shards']}, gather buffers {bufs}")
            break
        want_in = sum(p["bytes"] for p in parts) - parts[c["card"]]["bytes"]
        if c["bytes_in"] != want_in:
            fail(f"{what}: card {c['card']} receives {c['bytes_in']} B, want {want_in}")
            break


def scale_cases(tmp):
    # 1 GiB weight at C = 1 MiB: first, so the peak RSS of the children is its own
    big = os.path.join(tmp, "big1g.onnx")
    giant_matmul(big, 16384, 32768)
    out, dot = os.path.join(tmp, "o1"), os.path.join(tmp, "p.dot")
    r, took, rss = measured(big, "--capacity", "1MiB", "-q", "-o", out, "--dot", dot)
    if r.returncode != 0:
        fail(f"1 GiB / 1 MiB: rc {r.returncode}: {r.stderr}")
        return
    print(f"1 GiB / 1 MiB: {took:.2f} s, peak RSS {rss / 2**20:.1f} MiB")
    if rss > RSS_LIMIT or took > TIME_LIMIT:
        fail(f"1 GiB / 1 MiB: {took:.2f} s and {rss >> 20} MiB, limits {TIME_LIMIT} s and {RSS_LIMIT >> 20} MiB")
    plan = json.load(open(os.path.join(out, "plan.json")))
    n = len(plan["cards"])
    if n < 1000:
        fail(f"1 GiB / 1 MiB: {n} cards; the case needs a layer over 1000+")
    check_gather_plan("1 GiB / 1 MiB", plan, 1, 32768, 32768 * 2)
    text = open(dot).read()
    if len(re.findall(r"-> g0 \[", text)) != n or text.count("  g0 [") != 1:
        fail(f"dot: want one all-gather node with {n} edges")
    # reloads (and so validates again) to the same transfers and cards
    r = subprocess.run([LPCC, big, "--plan", os.path.join(out, "plan.json"), "--dump-ir=plan", "--json", "-q"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"--plan: rc {r.returncode}: {r.stderr}")
    else:
        back = json.loads(r.stdout)
        if back["transfers"] != plan["transfers"] or back["cards"] != plan["cards"]:
            fail("--plan: the reloaded plan differs")

    # 24 GiB in one layer at the h100's C: about 850 cards
    huge = os.path.join(tmp, "big24g.onnx")
    giant_matmul(huge, 65536, 196608)
    r, took, rss = measured(huge, "-q", "--dump-ir=plan", "--json")
    if r.returncode != 0:
        fail(f"24 GiB: rc {r.returncode}: {r.stderr}")
    else:
        plan = json.loads(r.stdout)
        check_gather_plan("24 GiB", plan, 1, 196608, 196608 * 2)
        print(f"24 GiB: {len(plan['cards'])} cards, {took:.2f} s")
        if took > TIME_LIMIT or rss > RSS_LIMIT:
            fail(f"24 GiB: {took:.2f} s, peak RSS so far {rss >> 20} MiB")
    # more than LP_MAX_SHARDS cards: refused at once
    r, took, _ = measured(huge, "--capacity", "3MiB", "-q")
    if r.returncode != 3 or "layer 0 'part.0'" not in r.stderr or "16384" not in r.stderr or took > 2:
        fail(f"24 GiB / 3 MiB: rc {r.returncode} in {took:.2f} s: {r.stderr}")
    elif not re.search(r"over (\d+) cards of 3.00 MiB", r.stderr) or \
            int(re.search(r"over (\d+) cards", r.stderr).group(1)) <= 16384:
        fail(f"24 GiB / 3 MiB: the message lacks the count: {r.stderr}")


def peak_rss(*args):
    """Runs lpcc in a fresh child of a fresh interpreter: that run's peak RSS."""
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:  # freed blocks held in quarantine are not lpcc's peak
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    r = subprocess.run([sys.executable, "-c", probe, LPCC, *args], capture_output=True, text=True, env=env)
    rc, rss = r.stdout.split()
    return int(rc), int(rss)


def slice_case(tmp):
    """Card models of a layer whose 64 MiB weight is present: each shard's
    slice is read by itself, never the whole weight (which took 75 MB)."""
    work = os.path.join(tmp, "present")
    os.makedirs(work)
    k, n = 4096, 8192
    w = (np.arange(k * n, dtype=np.int64).reshape(k, n) % 2039).astype(np.float16)
    path = os.path.join(work, "m.onnx")
    giant_matmul(path, k, n, w)
    out = os.path.join(work, "o")
    rc, rss = peak_rss(path, "--capacity", "8MiB", "-q", "-o", out)
    # what the build itself takes (a sanitizer's runtime and shadow), measured
    _, base = peak_rss("--version")
    print(f"64 MiB present weight, 8 MiB cards: peak RSS {rss / 2**20:.1f} MiB "
          f"({base / 2**20:.1f} MiB for lpcc --version)")
    if rc != 0 or rss - base > 32 << 20:
        fail(f"present weight: rc {rc}, peak RSS {rss >> 20} MiB, {(rss - base) >> 20} MiB above "
             f"lpcc --version (limit 32 MiB, half the 64 MiB weight)")
        return
    plan = json.load(open(os.path.join(out, "plan.json")))
    sh = plan["shards"][0]
    b, e = sh["weights"][0]["ranges"][-1]
    last = sh["first_card"] + sh["n_shards"] - 1
    m = onnx.load(os.path.join(out, f"card_{last}.phase_0.onnx"))
    got = [numpy_helper.to_array(t) for t in m.graph.initializer if t.name.startswith("w.shard")]
    if sh["n_shards"] < 8 or len(got) != 1 or not np.array_equal(got[0], w[:, b:e]):
        fail(f"present weight: card {last} does not hold columns {b}..{e} of w")


UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def fmt_bytes(b):
    """lp_format_bytes."""
    if b < 1024:
        return f"{b} B"
    v, u = float(b), 0
    while v >= 1024.0 and u < 5:
        v /= 1024.0
        u += 1
    return f"{v:.2f} {UNITS[u]}"


def table_rows(stdout):
    """The table: its header line, then rows up to the 'sum' row."""
    lines = stdout.splitlines()
    head = next((i for i, line in enumerate(lines) if line.split()[:2] == ["card", "layers"]), None)
    if head is None:
        return None
    rows, end = [], head + 1
    while end < len(lines) and not lines[end].lstrip().startswith("sum"):
        rows.append(lines[end])
        end += 1
    return (lines[head], rows, lines[end]) if end < len(lines) else None


def report_case(tmp, model, args, want_cards):
    what = os.path.basename(model)
    out = os.path.join(tmp, "report_" + what)
    r = subprocess.run([LPCC, model, *args, "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"report {what}: rc {r.returncode}: {r.stderr}")
        return
    plan = json.load(open(os.path.join(out, "plan.json")))
    table = table_rows(r.stdout)
    if table is None:
        fail(f"report {what}: no table (a 'card layers ...' header, rows, a 'sum' row):\n{r.stdout[:400]}")
        return
    head, rows, total = table
    if len(rows) != len(plan["cards"]) or len(rows) != want_cards:
        fail(f"report {what}: {len(rows)} rows for {len(plan['cards'])} cards, want {want_cards}")
        return
    cols = ["weight_bytes", "activation_bytes", "buffer_bytes", "boundary_bytes", "padding_bytes",
            "total_bytes"]
    width = len(head)
    for line, c in zip(rows, plan["cards"]):
        if len(line) != width:
            fail(f"report {what}: row not aligned with the header:\n{head}\n{line}")
        layers = (f"{c['first_layer']} [{c['shard'] + 1}/{c['n_shards']}]" if c["n_shards"] > 1
                  else f"{c['first_layer']}..{c['last_layer']}")
        over = "*" if c["total_bytes"] > c["capacity"] else ""
        want = ([str(c["card"]), layers] + [fmt_bytes(c[k]) for k in cols] +
                [f"{100 * c['fill']:.1f}%{over}", f"{c['stage_s'] * 1e6:.2f}",
                 fmt_bytes(c["bytes_in"]), fmt_bytes(c["bytes_out"])])
        # cells are separated by two spaces at least; a byte cell holds one
        got = re.split(r"\s{2,}", line.strip())
        if got != want:
            fail(f"report {what}: card {c['card']}: row {got}, plan.json says {want}")
            break
    sums = [fmt_bytes(sum(c[k] for c in plan["cards"])) for k in cols + ["bytes_in", "bytes_out"]]
    if re.split(r"\s{2,}", total.strip()) != ["sum"] + sums:
        fail(f"report {what}: totals row {total!r}, want {sums}")
    n_tr = len(plan["transfers"])
    if f"{len(plan['cards'])} card" not in r.stdout or f"{n_tr} transfer" not in r.stdout:
        fail(f"report {what}: no totals line")
    details = len(re.findall(r"^card \d+  layer", r.stdout, re.M))
    if details:
        fail(f"report {what}: {details} per-card detail blocks without -v")
    rv = subprocess.run([LPCC, model, *args, "-v"], capture_output=True, text=True)
    details = len(re.findall(r"^card \d+  layer", rv.stdout, re.M))
    if rv.returncode != 0 or details != want_cards or rv.stdout.count("  memory  weights") != want_cards:
        fail(f"report {what} -v: {details} detail blocks, want {want_cards}")


def main():
    if not LPCC:
        print("LPCC not set")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        scale_cases(tmp)
        slice_case(tmp)
        report_case(tmp, os.path.join(MODELS, "seed_16x8192.onnx"),
                    ["--dim", "batch=16", "--dim", "seq=1", "--dtype", "fp16", "--target", "h100",
                     "--algo", "throughput", "--cards", "16"], 16)
        report_case(tmp, os.path.join(MODELS, "seed_2x256.onnx"),
                    ["--dim", "batch=2", "--dim", "seq=8", "--capacity", "1MiB"], 5)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
