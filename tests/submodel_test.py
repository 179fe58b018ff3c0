#!/usr/bin/env python3
"""Splits models into K sub-models with tests/tools/split_model (which calls
lp_frontend_write_submodel), checks each with onnx.checker, runs the chain in
ONNX Runtime feeding every card's outputs to the later cards by name, and
compares the final outputs with the whole model run on the same inputs.

Models without value_info for their intermediate values get a copy with
onnx's shape inference first: the writer needs the element type of every
value that crosses a cut."""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
BIN = os.environ.get("LPCC_BINARY_DIR", os.path.join(SRC, "build"))
SPLIT = os.path.join(BIN, "tests", "tools", "split_model")
SUITE = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")

MODELS = [
    os.path.join(SRC, "models", n + ".onnx")
    for n in ("bert_tiny", "gpt2_tiny", "llama_tiny", "cnn_small", "seed_2x256", "seed_4x256_ext",
              "pad_opset17", "anchor_grid", "mobilenet_small", "batch1_export")
] + [
    os.path.join(SUITE, "light", "light_squeezenet.onnx"),
    os.path.join(SUITE, "light", "light_inception_v1.onnx"),
    os.path.join(SUITE, "pytorch-converted", "test_PixelShuffle", "model.onnx"),
]
KS = (1, 2, 3, 5)
DIMS = {"batch": 2, "seq": 8}
TOLERANCE = {np.float32: 1e-5, np.float16: 1e-2, np.float64: 1e-12}


def external_files(model):
    files = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            files.update(e.value for e in t.external_data if e.key == "location")
    return files


def prepared(path, work):
    """The model itself, or a shape-inferred copy (with its external data
    files beside it) when intermediate values lack types."""
    m = onnx.load(path, load_external_data=False)
    typed = {v.name for v in m.graph.value_info} | {o.name for o in m.graph.output}
    made = {o for n in m.graph.node if n.op_type != "Constant" for o in n.output if o}
    if made <= typed:
        return path
    name = os.path.basename(path)
    if name == "model.onnx":
        name = os.path.basename(os.path.dirname(path)) + ".onnx"
    copy = os.path.join(work, name)
    onnx.save(onnx.shape_inference.infer_shapes(m, data_prop=True), copy)
    for f in external_files(m):
        shutil.copyfile(os.path.join(os.path.dirname(path), f), os.path.join(work, f))
    return copy


def vocab_of(model, input_name):
    """Rows of the embedding table an integer input indexes, else 10."""
    inits = {t.name: t for t in model.graph.initializer}
    rows = [inits[n.input[0]].dims[0] for n in model.graph.node
            if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == input_name
            and n.input[0] in inits]
    return min(rows) if rows else 10


def make_feeds(model, rng):
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else DIMS.get(d.dim_param, 3)
                 for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.integer):
            if "mask" in vi.name:
                feeds[vi.name] = np.ones(shape, dtype)
            else:
                feeds[vi.name] = rng.integers(0, vocab_of(model, vi.name), shape).astype(dtype)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path, feeds):
    s = session(path)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, {i.name: feeds[i.name] for i in s.get_inputs()})))


def compare(name, want, got):
    """None if equal within the dtype's tolerance, else a message."""
    if got is None:
        return f"{name}: no card produced it"
    if want.shape != got.shape or want.dtype != got.dtype:
        return f"{name}: {got.dtype}{list(got.shape)} instead of {want.dtype}{list(want.shape)}"
    tol = TOLERANCE.get(want.dtype.type)
    if tol is None:
        return None if np.array_equal(want, got) else f"{name}: values differ"
    w, g = want.astype(np.float64), got.astype(np.float64)
    if not np.isfinite(w).all():
        return f"{name}: the whole model gives non-finite values"
    err = float(np.max(np.abs(w - g))) if w.size else 0.0
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-6)
    return None if err <= tol * scale else f"{name}: max error {err:.3g} (scale {scale:.3g}, tolerance {tol:g})"


def split(model_path, out_dir, k):
    r = subprocess.run([SPLIT, model_path, out_dir, str(k)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"split_model {model_path} {k} failed ({r.returncode}): {r.stderr}")
    return [os.path.join(out_dir, f"card_{c}.onnx") for c in range(k)]


def check_cards(model, cards):
    """Checker passes, every card has producer lpcc, and the cards' nodes
    are the model's (Constant nodes become initializers) in order."""
    errors = []
    nodes = []
    for card in cards:
        try:
            onnx.checker.check_model(card, full_check=True)
        except onnx.checker.ValidationError as e:
            errors.append(f"{os.path.basename(card)}: checker: {str(e).splitlines()[0]}")
        m = onnx.load(card, load_external_data=False)
        if m.producer_name != "lpcc" or m.ir_version != model.ir_version:
            errors.append(f"{os.path.basename(card)}: producer {m.producer_name!r} ir {m.ir_version}")
        if [(o.domain, o.version) for o in m.opset_import] != [(o.domain, o.version) for o in model.opset_import]:
            errors.append(f"{os.path.basename(card)}: opset imports differ")
        nodes += [(n.name, n.op_type, list(n.input), list(n.output)) for n in m.graph.node]
    want = [(n.name, n.op_type, list(n.input), list(n.output)) for n in model.graph.node
            if n.op_type != "Constant"]
    if sorted(nodes) != sorted(want):
        errors.append(f"the cards hold {len(nodes)} nodes, the model {len(want)} (or they differ)")
    return errors


def run_chain(cards, feeds):
    env = dict(feeds)
    for card in cards:
        env.update(run(card, env))
    return env


def test_model(path, work, rng):
    prep = prepared(path, work)
    model = onnx.load(prep, load_external_data=False)
    feeds = make_feeds(model, rng)
    try:
        want = run(prep, feeds)
    except Exception as e:
        return [f"{os.path.basename(prep)}: the whole model does not run: {e}"]
    n_nodes = sum(n.op_type != "Constant" for n in model.graph.node)
    failures = []
    for k in KS:
        if k > n_nodes:
            continue
        out_dir = tempfile.mkdtemp(prefix=f"k{k}_", dir=work)
        label = f"{os.path.basename(prep)} K={k}"
        try:
            cards = split(prep, out_dir, k)
            failures += [f"{label}: {e}" for e in check_cards(model, cards)]
            env = run_chain(cards, feeds)
        except Exception as e:  # report and go on with the next case
            failures.append(f"{label}: {type(e).__name__}: {e}")
            continue
        for name, ref in want.items():
            msg = compare(name, ref, env.get(name))
            if msg:
                failures.append(f"{label}: {msg}")
        ok = not failures or not failures[-1].startswith(label)
        print(f"{'ok  ' if ok else 'FAIL'} {label}", flush=True)
    return failures


def test_external_in_place(work):
    """Sub-models written next to the model reference its weights file;
    elsewhere the bytes they need go to card_k.onnx.data, exactly."""
    src = os.path.join(SRC, "models", "seed_4x256_ext.onnx")
    here = os.path.join(work, "in_place")
    os.mkdir(here)
    prep = prepared(src, here)
    failures = []
    cards = split(prep, here, 2)
    for card in cards:
        m = onnx.load(card, load_external_data=False)
        locs = {e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"}
        if locs != {"seed_4x256_ext.weights"}:
            failures.append(f"in place: {os.path.basename(card)} references {sorted(locs)}")
        if os.path.exists(card + ".data"):
            failures.append(f"in place: {os.path.basename(card)}.data was written")
    elsewhere = os.path.join(work, "elsewhere")
    cards = split(prep, elsewhere, 2)
    orig = {t.name: numpy_helper.to_array(t, base_dir=here)
            for t in onnx.load(prep, load_external_data=False).graph.initializer}
    for card in cards:
        m = onnx.load(card, load_external_data=False)
        ext = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        size = os.path.getsize(card + ".data") if os.path.exists(card + ".data") else 0
        if sum(orig[t.name].nbytes for t in ext) != size:
            failures.append(f"elsewhere: {os.path.basename(card)}.data holds {size} bytes")
        for t in ext:
            if not np.array_equal(numpy_helper.to_array(t, base_dir=elsewhere), orig[t.name]):
                failures.append(f"elsewhere: {os.path.basename(card)}: '{t.name}' differs")
    return failures


def test_external_absent(work):
    """A model whose weights file is absent still splits: the cards declare
    the same location, offset and length for every external tensor."""
    src = os.path.join(SRC, "models", "gpt2_full_graph.onnx")
    model = onnx.load(src, load_external_data=False)
    want = {t.name: {e.key: e.value for e in t.external_data}
            for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    failures, seen = [], set()
    out_dir = os.path.join(work, "absent")
    cards = split(src, out_dir, 3)
    for loc in {w["location"] for w in want.values()}:
        open(os.path.join(out_dir, loc), "wb").close()  # the checker only asks that it exists
    for card in cards:
        m = onnx.load(card, load_external_data=False)
        try:
            onnx.checker.check_model(card, full_check=True)
        except onnx.checker.ValidationError as e:
            failures.append(f"absent: {os.path.basename(card)}: checker: {str(e).splitlines()[0]}")
        for t in m.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                continue
            seen.add(t.name)
            got = {e.key: e.value for e in t.external_data}
            ref = want.get(t.name, {})
            if got.get("location") != ref.get("location") or int(got.get("offset", 0)) != int(ref.get("offset", 0)) \
                    or int(got["length"]) != int(ref.get("length", -1)):
                failures.append(f"absent: '{t.name}' declared as {got}, the model says {ref}")
    if seen != set(want):
        failures.append(f"absent: the cards declare {len(seen)} external tensors, the model {len(want)}")
    return failures


def main():
    if not os.path.exists(SPLIT):
        print(f"split_model not built at {SPLIT}")
        return 1
    rng = np.random.default_rng(0)
    failures = []
    with tempfile.TemporaryDirectory(prefix="lpcc_submodel_") as work:
        for path in MODELS:
            if not os.path.exists(path):
                failures.append(f"{path}: missing")
                continue
            d = tempfile.mkdtemp(dir=work)
            failures += test_model(path, d, rng)
        failures += test_external_in_place(work)
        failures += test_external_absent(work)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
