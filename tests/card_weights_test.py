#!/usr/bin/env python3
"""card_K.weights and manifest.json against their oracles.

For models of models/ with real weights (inline, in the model file and as
external data) and a sharded plan, every weight entry of every card's
memory plan is read back from card_K.weights and compared byte for byte
with the model's initializer (onnx.numpy_helper) converted to the deploy
dtype by numpy (float16: numpy's own conversion; bfloat16: the float32 bits
rounded to nearest even), or its column slice on a sharded card; padding
is zero, the file is the weights region's size, its CRC-32 is zlib's and
manifest.json's offsets are plan.json's memory sections. A generated model
checks the conversions at their edges (ties, subnormals, overflow, NaN,
Inf, -0, double rounding) from float, double, float16 and bfloat16, with
integer and bool weights kept. A weight whose external file is absent
writes no weights files and warns. Peak RSS writing 300 MB of external
weights stays far below their size (measured as loader_memory_test.py
does)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
LPCC = os.environ.get("LPCC", os.path.join(SRC, "build", "cli", "lpcc"))
MODELS = os.path.join(SRC, "models")
MB = 1 << 20

failed = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failed.append(what)


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True)


def bf16_bits(a32):
    """float32 -> bfloat16 bits, rounded to nearest even (NaN kept a NaN)."""
    u = np.ascontiguousarray(a32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a32)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def as_float32(a):
    if a.dtype == np.float32 or a.dtype == np.float64 or a.dtype == np.float16:
        return a.astype(np.float32)
    return a.astype(np.float32)  # ml_dtypes bfloat16: exact


FLOATS = ("float32", "float64", "float16", "bfloat16")


def deployed(a, dtype):
    """What card_K.weights holds for array a at deploy dtype `dtype`."""
    if a.dtype.name not in FLOATS or dtype == "keep":
        return np.ascontiguousarray(a).tobytes()
    if dtype == "fp16":
        src = a if a.dtype.name in ("float32", "float64", "float16") else as_float32(a)
        return src.astype(np.float16).tobytes()
    if dtype == "fp32":
        return as_float32(a).tobytes()
    return bf16_bits(as_float32(a)).tobytes()


def model_tensors(model):
    """Initializers and Constant outputs by name, as numpy."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def check_output(tag, out, tensors, dtype):
    plan = json.load(open(os.path.join(out, "plan.json")))
    man = json.load(open(os.path.join(out, "manifest.json")))
    check(man["format"] == "lpcc-manifest" and man["version"] == 1 and man["checksum"] == "crc32",
          f"{tag}: manifest format, version, checksum kind")
    check(len(man["cards"]) == len(plan["cards"]), f"{tag}: manifest has every card")
    bad_entries, missing, n_entries, n_sliced = [], [], 0, 0
    for pc, mc in zip(plan["cards"], man["cards"]):
        m, k = pc["memory"], pc["card"]
        regions = {"weights": (0, m["weights_bytes"]),
                   "boundary": (m["boundary_offset"], m["boundary_bytes"]),
                   "arena": (m["arena_offset"], m["arena_bytes"]),
                   "workspace": (m["workspace_offset"], m["workspace_bytes"])}
        same = (mc["card"] == k and mc["total_bytes"] == m["total_bytes"] and
                all((mc["regions"][r]["offset"], mc["regions"][r]["bytes"]) == regions[r] for r in regions) and
                [(w["value"], w["offset"], w["bytes"], w.get("axis"), w.get("begin"), w.get("end"))
                 for w in mc["weights"]] ==
                [(w["value"], w["offset"], w["bytes"], w.get("axis"), w.get("begin"), w.get("end"))
                 for w in m["weights"]] and
                [(b["value"], b["offset"], b["bytes"], b["direction"]) for b in mc["boundary"]] ==
                [(b["value"], b["offset"], b["bytes"], b["direction"]) for b in m["boundary"]])
        if not same:
            bad_entries.append(f"card {k} manifest != plan.json memory")
        path = os.path.join(out, f"card_{k}.weights")
        blob = open(path, "rb").read()
        wf = mc["weights_file"]
        if not (wf and wf["file"] == f"card_{k}.weights" and wf["bytes"] == len(blob) ==
                m["weights_bytes"] and wf["crc32"] == zlib.crc32(blob)):
            bad_entries.append(f"card {k}: size {len(blob)} / {m['weights_bytes']} or crc32 differs")
        used = np.zeros(len(blob), dtype=bool)
        for w in m["weights"]:
            n_entries += 1
            a = tensors.get(w["value"])
            if a is None:
                missing.append(w["value"])
                continue
            if "axis" in w:
                n_sliced += 1
                a = np.take(a, range(w["begin"], w["end"]), axis=w["axis"])
            want = deployed(a, dtype)
            got = blob[w["offset"]:w["offset"] + w["bytes"]]
            if got != want:
                bad_entries.append(f"card {k} '{w['value']}' ({len(got)} vs {len(want)} bytes)")
            used[w["offset"]:w["offset"] + w["bytes"]] = True
        pad = np.frombuffer(blob, dtype=np.uint8)[~used]
        if pad.size and pad.any():
            bad_entries.append(f"card {k}: {int(np.count_nonzero(pad))} padding bytes not zero")
    check(not missing, f"{tag}: every weight entry is a model tensor (missing {missing[:3]})")
    check(not bad_entries, f"{tag}: {n_entries} entries ({n_sliced} sliced) equal the model's tensors "
          f"at {dtype}, padding zero, sizes and crc32 right {bad_entries[:3]}")
    # transfers: offsets are the plan's send / receive / gather buffers
    bufs = {(c["card"], b["value"], b["direction"]): b["offset"]
            for c in plan["cards"] for b in c["memory"]["boundary"]}
    bad = []
    for t in man["transfers"]:
        if t["kind"] == "cut":
            if (t["src_offset"] != bufs.get((t["from"], t["value"], "out")) or
                    t["dst_offset"] != bufs.get((t["to"], t["value"], "in"))):
                bad.append(t["value"])
        else:
            parts = t["participants"]
            cols = [(p["begin"], p["end"]) for p in parts]
            if (any(p["offset"] != bufs.get((p["card"], t["value"], "gather")) for p in parts) or
                    cols[0][0] != 0 or cols[-1][1] != t["dim"] or
                    any(cols[i][1] != cols[i + 1][0] for i in range(len(cols) - 1)) or
                    t["outer"] * t["row_bytes"] != t["bytes"]):
                bad.append(t["value"])
    check(not bad, f"{tag}: {len(man['transfers'])} transfers point at the plan's buffers {bad[:3]}")
    plan_cuts = sorted((t["from_card"], t["to_card"], t["value"], t["bytes"])
                       for t in plan["transfers"] if t["kind"] == "cut")
    man_cuts = sorted((t["from"], t["to"], t["value"], t["bytes"])
                      for t in man["transfers"] if t["kind"] == "cut")
    check(plan_cuts == man_cuts, f"{tag}: the manifest's cuts are the plan's")
    ins_ok = all(c and all(x["offset"] == bufs.get((x["card"], i["name"], "in")) for x in c)
                 for i in man["inputs"] for c in [i["cards"]])
    outs_ok = all(len(o["cards"]) >= 1 and all(x["offset"] == bufs.get((x["card"], o["name"], "out"))
                                               for x in o["cards"]) for o in man["outputs"])
    check(ins_ok and outs_ok and man["inputs"] and man["outputs"],
          f"{tag}: graph inputs and outputs name the cards and buffers that hold them")
    return man


def run_model(tmp, name, model_path, args, dtype):
    out = os.path.join(tmp, name)
    extra = [] if dtype == "keep" else ["--dtype", dtype]
    r = lpcc(model_path, "-q", *args, *extra, "-o", out)
    check(r.returncode == 0, f"{name}: lpcc exits 0 (got {r.returncode}: {r.stderr.strip()[:200]})")
    return out if r.returncode == 0 else None


def conversion_model(path):
    """Weights of every float kind with the values conversions get wrong,
    and integer and bool weights, each read by one node."""
    specials = np.array([0.0, -0.0, 1.0, 65504.0, 65520.0, 65519.99, 70000.0, -70000.0,
                         2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -26, 6e-8, 1e-9,
                         1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8,
                         np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-40,
                         np.inf, -np.inf, np.nan, 3.14159, -2.71828], dtype=np.float32)
    rng = np.random.default_rng(0)
    f32 = np.concatenate([specials, (rng.standard_normal(230) *
                                     np.exp2(rng.integers(-30, 20, 230))).astype(np.float32)])
    f32 = f32[:256].reshape(4, 64)
    f64 = np.concatenate([np.array([1 + 2.0 ** -11 + 2.0 ** -40, 1 + 2.0 ** -11 - 2.0 ** -40,
                                    65520.0 - 2.0 ** -30, 2.0 ** -25 + 2.0 ** -60, 1e-300, np.nan,
                                    -np.inf]), rng.standard_normal(249)]).reshape(4, 64)
    f16 = (rng.standard_normal(256) * 100).astype(np.float16).reshape(4, 64)
    f16.flat[:4] = [np.inf, -np.inf, np.nan, -0.0]
    bf = bf16_bits(f32)  # bfloat16 bits
    i64 = rng.integers(-(1 << 40), 1 << 40, (4, 64)).astype(np.int64)
    bl = rng.integers(0, 2, (4, 64)).astype(bool)
    inits = [numpy_helper.from_array(f32, "w_f32"), numpy_helper.from_array(f64, "w_f64"),
             numpy_helper.from_array(f16, "w_f16"),
             helper.make_tensor("w_bf16", TensorProto.BFLOAT16, [4, 64], bf.tobytes(), raw=True),
             numpy_helper.from_array(i64, "w_i64"), numpy_helper.from_array(bl, "w_bool")]
    kinds = [("f32", TensorProto.FLOAT, "Add"), ("f64", TensorProto.DOUBLE, "Add"),
             ("f16", TensorProto.FLOAT16, "Add"), ("bf16", TensorProto.BFLOAT16, "Add"),
             ("i64", TensorProto.INT64, "Add"), ("bool", TensorProto.BOOL, "And")]
    nodes, ins, outs = [], [], []
    for k, t, op in kinds:
        nodes.append(helper.make_node(op, [f"x_{k}", f"w_{k}"], [f"y_{k}"], name=f"n_{k}"))
        ins.append(helper.make_tensor_value_info(f"x_{k}", t, [4, 64]))
        outs.append(helper.make_tensor_value_info(f"y_{k}", t, [4, 64]))
    g = helper.make_graph(nodes, "conversions", ins, outs, inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return {"w_f32": f32, "w_f64": f64, "w_f16": f16, "w_bool": bl, "w_i64": i64,
            "w_bf16": bf.view(np.uint16)}


def check_conversions(tmp):
    path = os.path.join(tmp, "conversions.onnx")
    arrays = conversion_model(path)
    for dtype in ("keep", "fp16", "bf16", "fp32"):
        out = run_model(tmp, f"conv_{dtype}", path, [], dtype)
        if not out:
            continue
        man = json.load(open(os.path.join(out, "manifest.json")))
        blobs = {c["card"]: open(os.path.join(out, f"card_{c['card']}.weights"), "rb").read()
                 for c in man["cards"]}
        entries = {w["value"]: (c["card"], w) for c in man["cards"] for w in c["weights"]}
        check(sorted(entries) == sorted(arrays), f"conversions {dtype}: every weight is packed")
        bad = []
        for name, a in arrays.items():
            if name not in entries:
                continue
            card, w = entries[name]
            got = blobs[card][w["offset"]:w["offset"] + w["bytes"]]
            if name == "w_bf16":  # bfloat16 source: its float32 value is exact
                src = (a.astype(np.uint32) << 16).view(np.float32)
                want = a.tobytes() if dtype in ("keep", "bf16") else deployed(src, dtype)
            elif name == "w_f64" and dtype == "bf16":
                # every value but the double-rounding probes is float32-exact here:
                # compare those through float32, the probes by value
                want = deployed(a.astype(np.float32), dtype)
                got_a = np.frombuffer(got, dtype=np.uint16)[7:]
                want_a = np.frombuffer(want, dtype=np.uint16)[7:]
                exact = a.flatten()[7:].astype(np.float32).astype(np.float64) == a.flatten()[7:]
                if not np.array_equal(got_a[exact], want_a[exact]):
                    bad.append(name)
                continue
            else:
                want = deployed(a, dtype)
            if got != want:
                g16 = np.frombuffer(got, dtype=np.uint8)
                w16 = np.frombuffer(want, dtype=np.uint8)
                n = int(np.count_nonzero(g16 != w16)) if len(got) == len(want) else -1
                bad.append(f"{name} ({n} bytes differ)")
            if dtype == "fp16" and name == "w_f64":
                # double -> half rounds once: 1 + 2^-11 + 2^-40 goes up, not to 1.0
                h = np.frombuffer(got, dtype=np.float16)
                if not (h[0] == np.float16(1 + 2.0 ** -10) and h[1] == np.float16(1.0)):
                    bad.append("w_f64 double rounding")
        check(not bad, f"conversions to {dtype}: ties to even, subnormals, overflow to Inf, NaN, "
              f"-0, ints and bools kept {bad}")


MEASURE = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(r.stderr)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""

BIG_LAYERS, BIG_D = 18, 2048  # 18 float32 weights of 16 MiB: 302 MB


def big_weight(i):
    return (np.arange(BIG_D * BIG_D, dtype=np.float32).reshape(BIG_D, BIG_D) % 977 + i) * 0.001


def make_big_model(path):
    nodes, inits, prev = [], [], "x"
    for i in range(BIG_LAYERS):
        inits.append(numpy_helper.from_array(big_weight(i), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "external_weights",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, BIG_D])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, BIG_D])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path,
              save_as_external_data=True, all_tensors_to_one_file=True, location="big.bin",
              size_threshold=1024)


def check_rss(tmp):
    model = os.path.join(tmp, "big", "big.onnx")
    os.makedirs(os.path.dirname(model))
    subprocess.run([sys.executable, __file__, "--generate-big", model], check=True)
    weights_mb = os.path.getsize(os.path.join(tmp, "big", "big.bin")) / MB
    for dtype in ("keep", "fp16"):
        out = os.path.join(tmp, f"big_out_{dtype}")
        extra = [] if dtype == "keep" else ["--dtype", dtype]
        r = subprocess.run([sys.executable, "-S", "-c", MEASURE, LPCC, model, "-q", *extra,
                            "--capacity", "40MiB", "-o", out], capture_output=True, text=True, check=True)
        rc, peak = r.stdout.split()
        rc, peak = int(rc), float(peak)
        check(rc == 0, f"big model {dtype}: lpcc exits 0 (got {rc}: {r.stderr.strip()[:200]})")
        if rc:
            continue
        print(f"     peak RSS writing {weights_mb:.0f} MB of external weights at {dtype}: {peak:.1f} MB")
        check(peak < weights_mb / 4, f"big model {dtype}: peak RSS {peak:.1f} MB < a quarter of the "
              f"{weights_mb:.0f} MB of weights")
        man = json.load(open(os.path.join(out, "manifest.json")))
        total = sum(os.path.getsize(os.path.join(out, c["weights_file"]["file"])) for c in man["cards"])
        bad = []
        for c in man["cards"]:
            blob = np.memmap(os.path.join(out, c["weights_file"]["file"]), dtype=np.uint8, mode="r")
            for w in c["weights"]:
                i = int(w["value"][1:])
                if bytes(blob[w["offset"]:w["offset"] + w["bytes"]]) != deployed(big_weight(i), dtype):
                    bad.append(w["value"])
            del blob
        check(len(man["cards"]) > 1 and not bad and total >= BIG_LAYERS * BIG_D * BIG_D *
              (4 if dtype == "keep" else 2),
              f"big model {dtype}: {len(man['cards'])} cards' weights hold every weight's values {bad[:3]}")
        shutil.rmtree(out)


def main():
    configs = [
        ("seed_2x256", "seed_2x256.onnx", ["--dim", "batch=1", "--dim", "seq=16"], ["keep", "bf16"]),
        ("gpt2_tiny", "gpt2_tiny.onnx", ["--dim", "batch=1", "--dim", "seq=16"], ["keep", "fp16", "bf16"]),
        ("cnn_small", "cnn_small.onnx", ["--dim", "batch=1"], ["keep", "fp16"]),
        ("seed_4x256_ext", "seed_4x256_ext.onnx", ["--dim", "batch=1", "--dim", "seq=16",
                                                    "--capacity", "2MiB"], ["keep", "fp32"]),
        ("seed_2x256_sharded", "seed_2x256.onnx", ["--dim", "batch=1", "--dim", "seq=16",
                                                   "--capacity", "700KiB"], ["keep", "fp32"]),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for tag, file, args, dtypes in configs:
            path = os.path.join(MODELS, file)
            tensors = model_tensors(onnx.load(path))
            for dtype in dtypes:
                out = run_model(tmp, f"{tag}_{dtype}", path, args, dtype)
                if out:
                    man = check_output(f"{tag} {dtype}", out, tensors, dtype)
                    if tag.endswith("sharded"):
                        check(any(t["kind"] == "all_gather" for t in man["transfers"]) and
                              any(c["n_shards"] > 1 for c in man["cards"]),
                              f"{tag} {dtype}: the plan is sharded and gathers")
                    shutil.rmtree(out)

        check_conversions(tmp)

        # an absent external file: no weights files, a warning, the manifest says so
        lonely = os.path.join(tmp, "lonely")
        os.makedirs(lonely)
        shutil.copy(os.path.join(MODELS, "seed_4x256_ext.onnx"), lonely)
        out = os.path.join(tmp, "lonely_out")
        r = lpcc(os.path.join(lonely, "seed_4x256_ext.onnx"), "--dim", "batch=1", "--dim", "seq=16",
                 "-o", out)
        names = os.listdir(out) if os.path.isdir(out) else []
        man = json.load(open(os.path.join(out, "manifest.json"))) if "manifest.json" in names else None
        check(r.returncode == 0 and "absent" in r.stderr and "card_K.weights" in r.stderr and
              not any(n.endswith(".weights") for n in names) and man and
              all(c["weights_file"] is None for c in man["cards"]),
              f"absent external data: exit 0, a warning, no weights files, weights_file null "
              f"(rc {r.returncode}: {r.stderr.strip()[:200]})")
        # the same folder, weights back: the files appear; removed again when absent
        r = lpcc(os.path.join(MODELS, "seed_4x256_ext.onnx"), "-q", "--dim", "batch=1", "--dim",
                 "seq=16", "-o", out)
        had = any(n.endswith(".weights") for n in os.listdir(out))
        r = lpcc(os.path.join(lonely, "seed_4x256_ext.onnx"), "-q", "--dim", "batch=1", "--dim",
                 "seq=16", "-o", out)
        check(had and not any(n.endswith(".weights") for n in os.listdir(out)),
              "an earlier run's weights files are removed by a run that writes none")

        check_rss(tmp)

    print(f"{len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--generate-big":
        make_big_model(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
