#!/usr/bin/env python3
"""Checks lpcc's shape inference against two oracles.

1. Every model in models/: the model is stripped of the shapes it declares
   (value_info, graph output types), lpcc infers them with the symbolic dims
   bound, and every value's dtype and shape must equal what
   onnx.shape_inference (data_prop=True) gives for the same bindings, and
   the graph outputs what ONNX Runtime produces on random inputs (models
   whose weights are present). The unstripped model must also pass, so the
   declared shapes agree with the inferred ones.
2. The ONNX node test suite: each test model stripped of its output types;
   where lpcc succeeds its output shapes must equal the declared ones. Ops
   lpcc does not support are counted, not failed; a wrong shape fails.

Environment: LPCC (the built lpcc), LPCC_SOURCE_DIR.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import shape_inference

SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
LPCC = os.environ.get("LPCC", os.path.join(SRC, "build", "cli", "lpcc"))
NODE_SUITE = "/usr/share/libonnx-testdata/data/node"
BIND = {"batch": 2, "seq": 8}
OTHER_DIM = 3

DTYPE_NAMES = {
    onnx.TensorProto.FLOAT: "float", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT16: "uint16", onnx.TensorProto.INT16: "int16", onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.STRING: "string", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "double",
    onnx.TensorProto.UINT32: "uint32", onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.BFLOAT16: "bfloat16",
}


def strip_declared(model):
    """Removes every shape the model declares for computed values."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.ClearField("type")
    return m


def run_lpcc(path, dims):
    args = [LPCC, path, "--dump-ir=graph", "--json", "-q"]
    for k, v in dims.items():
        args += ["--dim", "%s=%d" % (k, v)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return None, p.stderr.strip()
    return json.loads(p.stdout), None


def lpcc_values(dump):
    return {v["name"]: (v["dtype"], v["shape"]) for v in dump["values"]}


def full_shape(vi):
    """(dtype name, [ints]) when onnx gives a complete static shape, else None."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(d.dim_value)
    return DTYPE_NAMES.get(t.elem_type, str(t.elem_type)), dims


def bindings_for(model):
    dims = {}
    for i in model.graph.input:
        for d in i.type.tensor_type.shape.dim:
            if d.dim_param:
                dims[d.dim_param] = BIND.get(d.dim_param, OTHER_DIM)
    return dims


def bind_inputs(model, dims):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.input:
        for d in i.type.tensor_type.shape.dim:
            if d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    return m


def weights_present(path):
    m = onnx.load(path, load_external_data=False)
    folder = os.path.dirname(path)
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in t.external_data}["location"]
            if not os.path.exists(os.path.join(folder, loc)):
                return False
    return True


def random_feed(sess, dims, model):
    feed = {}
    rng = np.random.default_rng(0)
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else dims[d] for d in i.shape]
        if "int64" in i.type:
            feed[i.name] = (np.ones(shape, np.int64) if "mask" in i.name
                            else rng.integers(0, 100, shape).astype(np.int64))
        elif "float16" in i.type:
            feed[i.name] = rng.standard_normal(shape).astype(np.float16)
        else:
            feed[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def check_model(path, failures):
    name = os.path.basename(path)
    model = onnx.load(path, load_external_data=False)
    dims = bindings_for(model)
    with tempfile.TemporaryDirectory() as tmp:
        # shapes need no weight bytes: missing external data is only a warning
        stripped = os.path.join(tmp, name)
        onnx.save(strip_declared(model), stripped)
        dump, err = run_lpcc(stripped, dims)
    if dump is None:
        failures.append("%s: lpcc failed on the stripped model: %s" % (name, err))
        return 0
    got = lpcc_values(dump)
    _, err = run_lpcc(path, dims)
    if err is not None:
        failures.append("%s: lpcc failed on the model as exported: %s" % (name, err))

    oracle = shape_inference.infer_shapes(bind_inputs(strip_declared(model), dims), data_prop=True)
    compared = 0
    for vi in list(oracle.graph.value_info) + list(oracle.graph.output):
        want = full_shape(vi)
        if want is None:
            continue
        compared += 1
        if vi.name not in got:
            failures.append("%s: value '%s' missing from lpcc's dump" % (name, vi.name))
        elif tuple(got[vi.name]) != (want[0], want[1]):
            failures.append("%s: value '%s': lpcc %s%s, onnx %s%s" % (name, vi.name, *got[vi.name], *want))
    if compared < len(model.graph.node) // 2:
        failures.append("%s: onnx gave only %d full shapes to compare" % (name, compared))

    if weights_present(path):
        import onnxruntime as ort
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outs = sess.run(None, random_feed(sess, dims, model))
        for o, arr in zip(sess.get_outputs(), outs):
            if got.get(o.name, (None, None))[1] != list(arr.shape):
                failures.append("%s: output '%s': lpcc %s, onnxruntime %s" % (name, o.name, got.get(o.name),
                                                                               list(arr.shape)))
            compared += 1
    return compared


def node_suite(failures=None, verbose=False):
    """Runs every node test; returns (passed, total, unsupported counts by op)."""
    passed, total, skipped = 0, 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        for d in sorted(glob.glob(os.path.join(NODE_SUITE, "*", "model.onnx"))):
            test = os.path.basename(os.path.dirname(d))
            try:
                model = onnx.load(d)
            except Exception:
                continue
            total += 1
            path = os.path.join(tmp, test + ".onnx")
            onnx.save(strip_declared(model), path)
            dump, err = run_lpcc(path, {})
            if dump is None:
                op = model.graph.node[0].op_type if model.graph.node else "?"
                skipped[op] = skipped.get(op, 0) + 1
                if verbose:
                    print("  no  %s: %s" % (test, err.splitlines()[-1] if err else ""))
                continue
            got = lpcc_values(dump)
            ok = True
            for o in model.graph.output:
                want = full_shape(o)
                if want is None:
                    continue
                if tuple(got.get(o.name, (None, None))) != (want[0], want[1]):
                    ok = False
                    msg = "node test %s: output '%s': lpcc %s, declared %s" % (test, o.name, got.get(o.name), want)
                    if failures is not None:
                        failures.append(msg)
                    if verbose:
                        print("  BAD " + msg)
            passed += ok
    return passed, total, skipped


def main():
    if not os.path.exists(LPCC):
        print("lpcc not found at %s" % LPCC)
        return 1
    failures = []
    for path in sorted(glob.glob(os.path.join(SRC, "models", "*.onnx"))):
        n = check_model(path, failures)
        print("%-24s %4d shapes compared" % (os.path.basename(path), n))
    if os.path.isdir(NODE_SUITE):
        passed, total, _ = node_suite(failures)
        print("node suite: %d of %d test models inferred and matching" % (passed, total))
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
