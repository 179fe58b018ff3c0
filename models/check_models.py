#!/usr/bin/env python3
"""Check every .onnx file in this folder (or the files given as arguments).

For each model:
  * load with onnx (external data not loaded);
  * external-data references: in range and non-overlapping; file present?
  * onnx.checker (when a weights file is missing, the graph is checked
    against empty placeholder files, since the checker reads no bytes);
  * onnx.shape_inference.infer_shapes;
  * when all weights are present: run with onnxruntime on CPU with batch 2,
    seq 8 (the CNN: 2x3x32x32) and require finite outputs;
  * models written by gen_seed.py with weights present: compare with a
    float32 numpy implementation of the same transformer.

Exit status 1 if anything fails.  Usage: python3 models/check_models.py [FILES]
"""

import glob
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))

NP_TYPES = {
    TensorProto.FLOAT: np.float32,
    TensorProto.FLOAT16: np.float16,
    TensorProto.DOUBLE: np.float64,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.BOOL: np.bool_,
}
SYMBOLIC = {"batch": 2, "seq": 8}


def external_refs(model):
    refs = []
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        kv = {e.key: e.value for e in t.external_data}
        refs.append((t.name, kv.get("location"), int(kv.get("offset", 0)),
                     int(kv["length"]) if "length" in kv else None, t))
    return refs


def tensor_nbytes(t):
    n = int(np.prod(t.dims)) if len(t.dims) else 1
    size = {TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2, TensorProto.FLOAT: 4,
            TensorProto.DOUBLE: 8, TensorProto.INT64: 8, TensorProto.INT32: 4,
            TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.BOOL: 1}.get(t.data_type)
    return None if size is None else n * size


def check_external(path, refs):
    """Returns (errors, all_present)."""
    errs = []
    d = os.path.dirname(os.path.abspath(path))
    by_loc = {}
    for name, loc, off, length, t in refs:
        if loc is None:
            errs.append(f"{name}: external tensor without location")
            continue
        want = tensor_nbytes(t)
        if length is not None and want is not None and length != want:
            errs.append(f"{name}: length {length} != {want} bytes for dims {list(t.dims)}")
        by_loc.setdefault(loc, []).append((off, length or want or 0, name))
    present = True
    for loc, spans in by_loc.items():
        spans.sort()
        end = 0
        for off, ln, name in spans:
            if off < end:
                errs.append(f"{loc}: {name} overlaps the previous tensor")
            end = max(end, off + ln)
        p = os.path.join(d, loc)
        if os.path.isfile(p):
            if os.path.getsize(p) < end:
                errs.append(f"{loc}: file has {os.path.getsize(p)} bytes, references need {end}")
        else:
            present = False
    return errs, present, by_loc


def checker_without_weights(model):
    locs = {e.value for t in model.graph.initializer for e in t.external_data
            if e.key == "location"}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "model.onnx")
        onnx.save_model(model, p)
        for loc in locs:
            open(os.path.join(d, loc), "wb").close()
        onnx.checker.check_model(p)


def make_feeds(sess, rng):
    feeds = {}
    for i in sess.get_inputs():
        shape = [SYMBOLIC.get(d, 2) if not isinstance(d, int) else d for d in i.shape]
        t = i.type
        if "int64" in t:
            if "mask" in i.name:
                arr = np.ones(shape, dtype=np.int64)
            else:
                arr = rng.integers(0, 100, size=shape, dtype=np.int64)
        elif "float16" in t:
            arr = rng.standard_normal(shape).astype(np.float16)
        elif "float" in t:
            arr = rng.standard_normal(shape).astype(np.float32)
        else:
            raise RuntimeError(f"no feed rule for input {i.name} of type {t}")
        feeds[i.name] = arr
    return feeds


def seed_reference(path, x):
    """float32 numpy forward pass of a gen_seed.py model."""
    m = onnx.load(path, load_external_data=True)
    W = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in m.graph.initializer}
    meta = {p.key: p.value for p in m.metadata_props}
    L, H, A = int(meta["seed.layers"]), int(meta["seed.hidden"]), int(meta["seed.heads"])
    hd = H // A

    def ln(v, name):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * W[name + ".weight"] + W[name + ".bias"]

    def lin(v, name):
        return v @ W[name + ".weight"] + W[name + ".bias"]

    def gelu(v):
        from math import erf
        return 0.5 * v * (1.0 + np.vectorize(erf)(v / np.sqrt(2.0)))

    x = x.astype(np.float32)
    b, s, _ = x.shape
    for i in range(L):
        p = f"layers.{i}"
        h = ln(x, p + ".ln1")
        q = lin(h, p + ".attn.q_proj").reshape(b, s, A, hd).transpose(0, 2, 1, 3)
        k = lin(h, p + ".attn.k_proj").reshape(b, s, A, hd).transpose(0, 2, 3, 1)
        v = lin(h, p + ".attn.v_proj").reshape(b, s, A, hd).transpose(0, 2, 1, 3)
        sc = (q @ k) / np.sqrt(hd)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        o = (sc @ v).transpose(0, 2, 1, 3).reshape(b, s, H)
        x = x + lin(o, p + ".attn.out_proj")
        x = x + lin(gelu(lin(ln(x, p + ".ln2"), p + ".mlp.fc1")), p + ".mlp.fc2")
    return ln(x, "norm")


def check_one(path):
    import onnxruntime as ort
    name = os.path.basename(path)
    problems = []
    info = []
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001
        return name, [f"cannot load: {e}"], info
    refs = external_refs(m)
    errs, present, by_loc = check_external(path, refs)
    problems += errs
    if refs:
        info.append(f"external: {len(refs)} tensors in {sorted(by_loc)}"
                    f" ({'present' if present else 'absent'})")
    try:
        if present:
            onnx.checker.check_model(path)
        else:
            checker_without_weights(m)
    except Exception as e:  # noqa: BLE001
        problems.append(f"checker: {e}")
    try:
        onnx.shape_inference.infer_shapes(m)
    except Exception as e:  # noqa: BLE001
        problems.append(f"shape inference: {e}")
    info.append(f"ir {m.ir_version}, opset "
                + ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in m.opset_import)
                + f", {len(m.graph.node)} nodes")
    if present:
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            feeds = make_feeds(sess, np.random.default_rng(0))
            outs = sess.run(None, feeds)
            shapes = [list(o.shape) for o in outs]
            if not all(np.isfinite(o).all() for o in outs if o.dtype.kind == "f"):
                problems.append("onnxruntime: non-finite output")
            info.append(f"ort ok, inputs {[list(v.shape) for v in feeds.values()]} "
                        f"-> outputs {shapes}")
            if m.producer_name == "gen_seed.py":
                ref = seed_reference(path, feeds["hidden_states"])
                diff = float(np.max(np.abs(ref - outs[0].astype(np.float32))))
                info.append(f"max |ort - numpy reference| = {diff:.4g}")
                if not diff < 0.05:
                    problems.append(f"differs from numpy reference by {diff}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"onnxruntime: {e}")
    else:
        info.append("weights absent: onnxruntime run skipped")
    return name, problems, info


def main(argv):
    files = argv or sorted(glob.glob(os.path.join(HERE, "*.onnx")))
    if not files:
        print("no .onnx files found")
        return 1
    bad = 0
    for f in files:
        name, problems, info = check_one(f)
        status = "OK  " if not problems else "FAIL"
        print(f"{status} {name}")
        for line in info:
            print(f"       {line}")
        for p in problems:
            print(f"       ERROR {p}")
        bad += bool(problems)
    print(f"{len(files) - bad}/{len(files)} models passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
