#!/usr/bin/env python3
"""Round trip: what `lpcc MODEL --dump-ir=load --json` reports (the graph IR
as the frontend built it, before shape inference adds types) against what
the onnx package reads from the same file.

For every models/*.onnx and the model files that ship with the onnx package's
backend test data (light, simple, pytorch-converted, pytorch-operator), the
oracle is built from onnx.load(path, load_external_data=False) alone:

  * graph inputs (initializers excluded) and outputs, by name and in order;
  * every node except the folded Constant nodes: name, op_type, domain,
    inputs, outputs, and its position in the file; nodes are matched by
    their outputs, and lpcc's order must be topological;
  * every value (graph input, initializer, node output, Constant output):
    kind, dtype name, shape (ints, symbol names, null for unknown) as the
    graph inputs, value_info entries and graph outputs declare it;
  * tensor byte sizes: numpy's nbytes of the decoded tensor (packed size for
    sub-byte types); for external data the declared length (or dims times
    item size), location and offset.

Models lpcc must reject (an unsupported operator domain) are checked for a
clean exit code 1 with a located message, and so are the hostile files of
fuzz/hostile_models.py (overflowing dims, rank 100000, a million repeated
entries, external data leaving the folder, deep nesting); those that are
valid must load and agree with onnx like any other model. The comparison itself is checked
on mutated copies of lpcc's output, so a comparer that misses differences
fails the test.

Environment: LPCC (the built lpcc), LPCC_SOURCE_DIR.
"""

import copy
import glob
import json
import math
import os
import subprocess
import sys
import tempfile

import onnx
from onnx import TensorProto, numpy_helper

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MAX_SHOWN = 15

# onnx data types whose elements are packed below one byte
SUB_BYTE_BITS = {
    TensorProto.UINT4: 4,
    TensorProto.INT4: 4,
    TensorProto.FLOAT4E2M1: 4,
}
for _name, _bits in (("UINT2", 2), ("INT2", 2), ("FLOAT6E2M3", 6), ("FLOAT6E3M2", 6)):
    if hasattr(TensorProto, _name):
        SUB_BYTE_BITS[getattr(TensorProto, _name)] = _bits


def dtype_name(dt):
    """lpcc prints ONNX's enum name in lower case ("float16"); 0 is unknown."""
    if not dt:
        return None
    return TensorProto.DataType.Name(dt).lower()


def item_bits(dt):
    if dt in SUB_BYTE_BITS:
        return SUB_BYTE_BITS[dt]
    return onnx.helper.tensor_dtype_to_np_dtype(dt).itemsize * 8


def tensor_bytes(t):
    """Bytes the tensor's data occupies, from onnx's own decoding."""
    if t.data_type == TensorProto.STRING:
        return None
    numel = math.prod(t.dims)
    if t.data_location == TensorProto.EXTERNAL:
        ext = {e.key: e.value for e in t.external_data}
        if "length" in ext:
            return int(ext["length"])
        return (numel * item_bits(t.data_type) + 7) // 8
    if t.data_type in SUB_BYTE_BITS or len(t.dims) > 64:  # numpy's rank limit is 64
        packed = (numel * item_bits(t.data_type) + 7) // 8
        if t.HasField("raw_data") and len(t.raw_data) != packed:
            raise ValueError(f"tensor {t.name}: raw_data {len(t.raw_data)} bytes, dims need {packed}")
        return packed
    return int(numpy_helper.to_array(t).nbytes)


def type_of(vi):
    """(dtype name or None, shape or None, has dtype, has shape) of a ValueInfoProto."""
    if not vi.HasField("type") or vi.type.WhichOneof("value") != "tensor_type":
        return None, None, False, False
    tt = vi.type.tensor_type
    dt = dtype_name(tt.elem_type) if tt.elem_type else None
    if not tt.HasField("shape"):
        return dt, None, dt is not None, False
    shape = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")
        if which == "dim_value":
            shape.append(d.dim_value)
        elif which == "dim_param" and d.dim_param:
            shape.append(d.dim_param)
        else:
            shape.append(None)
    return dt, shape, dt is not None, True


def constant_value(node):
    """(dtype name, shape, bytes) of a Constant node's output."""
    (a,) = node.attribute
    if a.name == "value":
        t = a.t
        return dtype_name(t.data_type), list(t.dims), tensor_bytes(t)
    if a.name == "value_float":
        return "float", [], 4
    if a.name == "value_floats":
        return "float", [len(a.floats)], 4 * len(a.floats)
    if a.name == "value_int":
        return "int64", [], 8
    if a.name == "value_ints":
        return "int64", [len(a.ints)], 8 * len(a.ints)
    if a.name == "value_string":
        return "string", [], None
    if a.name == "value_strings":
        return "string", [len(a.strings)], None
    raise ValueError(f"Constant attribute {a.name}")


def is_constant(node):
    return node.op_type == "Constant" and node.domain in ("", "ai.onnx")


def expected_graph(model):
    """What lpcc should report, from the protobuf alone."""
    g = model.graph
    init_names = {t.name for t in g.initializer}
    values = {}

    def value(name, kind):
        v = values.setdefault(name, {"name": name, "kind": kind, "dtype": None, "shape": None})
        return v

    for t in g.initializer:
        v = value(t.name, "weight")
        v["dtype"] = dtype_name(t.data_type)
        v["shape"] = list(t.dims)
        v["bytes"] = tensor_bytes(t)
        if t.data_location == TensorProto.EXTERNAL:
            ext = {e.key: e.value for e in t.external_data}
            v["external"] = {
                "location": ext.get("location"),
                "offset": int(ext.get("offset", "0")),
                "length": v["bytes"],
            }
    for i in g.input:
        value(i.name, "input")

    nodes = []
    for idx, n in enumerate(g.node):
        if is_constant(n):
            v = value(n.output[0], "constant")
            v["dtype"], v["shape"], v["bytes"] = constant_value(n)
            continue
        for o in n.output:
            if o:
                value(o, "activation")
        nodes.append({
            "name": n.name,
            "op": n.op_type,
            "domain": "" if n.domain == "ai.onnx" else n.domain,
            "file_index": idx,
            "inputs": list(n.input),
            "outputs": list(n.output),
        })

    # declared types, later declarations refining earlier ones; weights and
    # constants keep the type of their data
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        v = values.get(vi.name)
        if v is None or v["kind"] in ("weight", "constant"):
            continue
        dt, shape, has_dt, has_shape = type_of(vi)
        if has_dt:
            v["dtype"] = dt
        if has_shape:
            v["shape"] = shape

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                 1 if not model.opset_import else None)
    return {
        "ir_version": model.ir_version,
        "opset": opset,
        "inputs": [i.name for i in g.input if i.name not in init_names],
        "outputs": [o.name for o in g.output],
        "nodes": nodes,
        "values": values,
    }


def compare(exp, got):
    """List of differences between the oracle and lpcc's JSON, first ones first."""
    diffs = []
    for key in ("ir_version", "opset", "inputs", "outputs"):
        if exp[key] != got.get(key):
            diffs.append(f"{key}: onnx {exp[key]!r}, lpcc {got.get(key)!r}")

    # nodes, keyed by their outputs (unique: a value has one producer)
    got_nodes = got.get("nodes", [])
    if len(got_nodes) != len(exp["nodes"]):
        diffs.append(f"node count: onnx {len(exp['nodes'])} (Constant excluded), lpcc {len(got_nodes)}")
    by_out = {tuple(n["outputs"]) + (n["file_index"],): n for n in got_nodes}
    for e in exp["nodes"]:
        g = by_out.get(tuple(e["outputs"]) + (e["file_index"],))
        if g is None:
            diffs.append(f"node {e['file_index']} '{e['name']}' ({e['op']}) -> {e['outputs']}: missing in lpcc")
            continue
        for key in ("name", "op", "domain", "inputs", "outputs"):
            if e[key] != g.get(key):
                diffs.append(f"node {e['file_index']} '{e['name']}' {key}: onnx {e[key]!r}, lpcc {g.get(key)!r}")

    # lpcc's node order is topological
    got_vals = {v["name"]: v for v in got.get("values", [])}
    ready = {name for name, v in got_vals.items() if v["kind"] != "activation"}
    for pos, n in enumerate(got_nodes):
        for i in n["inputs"]:
            if i and i not in ready:
                diffs.append(f"lpcc node #{pos} '{n['name']}' reads '{i}' before it is produced")
        ready.update(o for o in n["outputs"] if o)

    # values
    if len(got_vals) != len(got.get("values", [])):
        diffs.append("lpcc lists a value name twice")
    for name in exp["values"].keys() - got_vals.keys():
        diffs.append(f"value '{name}': missing in lpcc")
    for name in got_vals.keys() - exp["values"].keys():
        diffs.append(f"value '{name}': in lpcc but not in the model")
    for name, e in exp["values"].items():
        g = got_vals.get(name)
        if g is None:
            continue
        for key in ("kind", "dtype", "shape", "bytes", "external"):
            if key in ("bytes", "external") and e.get(key) is None and g.get(key) is None:
                continue
            want = e.get(key)
            have = g.get(key)
            if key == "external" and have is not None:
                have = {k: have.get(k) for k in ("location", "offset", "length")}
            if want != have:
                diffs.append(f"value '{name}' {key}: onnx {want!r}, lpcc {have!r}")
    return diffs


def mutations(got):
    """Copies of lpcc's output with one plausible bug each."""
    def first(pred):
        return next((v for v in got["values"] if pred(v)), None)

    out = []
    if got["nodes"]:
        m = copy.deepcopy(got)
        m["nodes"][-1]["op"] += "X"
        out.append(("op renamed", m))
        produced = {o for n in got["nodes"] for o in n["outputs"] if o}
        if any(i in produced for n in got["nodes"] for i in n["inputs"]):
            m = copy.deepcopy(got)
            m["nodes"].reverse()
            out.append(("nodes reversed", m))
        m = copy.deepcopy(got)
        n = next((n for n in m["nodes"] if len(n["inputs"]) > 1), None)
        if n and n["inputs"][0] != n["inputs"][-1]:
            n["inputs"].reverse()
            out.append(("inputs swapped", m))
    v = first(lambda v: isinstance(v.get("shape"), list) and v["shape"])
    if v:
        m = copy.deepcopy(got)
        mv = next(x for x in m["values"] if x["name"] == v["name"])
        d = mv["shape"][0]
        mv["shape"][0] = (d + 1) if isinstance(d, int) else None if isinstance(d, str) else "n"
        out.append(("dim changed", m))
    v = first(lambda v: v.get("dtype"))
    if v:
        m = copy.deepcopy(got)
        mv = next(x for x in m["values"] if x["name"] == v["name"])
        mv["dtype"] = "bfloat16" if mv["dtype"] != "bfloat16" else "float16"
        out.append(("dtype changed", m))
    v = first(lambda v: "bytes" in v)
    if v:
        m = copy.deepcopy(got)
        mv = next(x for x in m["values"] if x["name"] == v["name"])
        mv["bytes"] += 1
        out.append(("bytes off by one", m))
    v = first(lambda v: "external" in v)
    if v:
        m = copy.deepcopy(got)
        mv = next(x for x in m["values"] if x["name"] == v["name"])
        mv["external"]["offset"] += 2
        out.append(("external offset moved", m))
    v = first(lambda v: v["kind"] == "constant")
    if v:
        m = copy.deepcopy(got)
        mv = next(x for x in m["values"] if x["name"] == v["name"])
        mv["kind"] = "weight"
        out.append(("constant listed as weight", m))
    if got["values"]:
        m = copy.deepcopy(got)
        m["values"].pop()
        out.append(("value dropped", m))
    if len(got["inputs"]) > 1:
        m = copy.deepcopy(got)
        m["inputs"].reverse()
        out.append(("inputs reordered", m))
    return out


def run_lpcc(path):
    return subprocess.run([LPCC, path, "--dump-ir=load", "--json", "-q"],
                          capture_output=True, text=True, timeout=120)


def check_model(path):
    """Returns the list of problems with lpcc's reading of `path`."""
    r = run_lpcc(path)
    if r.returncode != 0:
        return [f"lpcc exited {r.returncode}: {r.stderr.strip()[:400]}"]
    try:
        got = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        return [f"lpcc printed invalid JSON: {e}"]
    exp = expected_graph(onnx.load(path, load_external_data=False))
    diffs = compare(exp, got)
    if diffs:
        return diffs
    if len(got["nodes"]) + len(got["values"]) > 20000:
        return []  # the comparer's self-check runs on the smaller models
    for what, bad in mutations(got):
        if not compare(exp, bad):
            return [f"the comparison misses a mutation: {what}"]
    return []


def suite_models():
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    files = sorted(glob.glob(os.path.join(data, "light", "*.onnx")))
    for sub in ("simple", "pytorch-converted", "pytorch-operator"):
        files += sorted(glob.glob(os.path.join(data, sub, "*", "model.onnx")))
    return files


def must_reject(path):
    """Models that need what lpcc does not read (here: a non-default domain)."""
    m = onnx.load(path, load_external_data=False)
    return any(n.domain not in ("", "ai.onnx") for n in m.graph.node)


def check_hostile(tmp):
    """lpcc's verdict on each hostile file: exit 1 with an error, or a load
    whose JSON still agrees with onnx. Never a crash or an internal error."""
    sys.path.insert(0, os.path.join(SRC, "fuzz"))
    from hostile_models import hostile_models

    failed = 0
    for name, data, verdict in hostile_models():
        path = os.path.join(tmp, f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(data)
        if verdict == "accept":
            problems = check_model(path)
        else:
            r = run_lpcc(path)
            ok = r.returncode == 1 and ": error: " in r.stderr
            problems = [] if ok else [f"expected exit 1 with an error, got {r.returncode}: "
                                      f"{r.stderr.strip()[:300]}"]
        os.unlink(path)
        if problems:
            failed += 1
            print(f"FAIL hostile {name} ({verdict}): {problems[0]}")
            for p in problems[1:MAX_SHOWN]:
                print(f"    {p}")
    return failed + check_external_files(tmp)


def external_model(location, nbytes):
    """One float initializer of nbytes/4 elements stored at `location`."""
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[nbytes // 4])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["w"], ["y"], name="id")],
                               "ext", [], [onnx.helper.make_tensor_value_info(
                                   "y", TensorProto.FLOAT, None)], [t])
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18)])


def check_external_files(tmp):
    """External data on disk: present, too short, a link leaving the folder,
    a dangling link; lpcc must report `present` right or refuse the file."""
    model_dir = os.path.join(tmp, "model")
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "ok.bin"), "wb") as f:
        f.truncate(64)
    with open(os.path.join(model_dir, "short.bin"), "wb") as f:
        f.truncate(8)
    with open(os.path.join(tmp, "outside.bin"), "wb") as f:
        f.truncate(64)
    os.symlink(os.path.join(tmp, "outside.bin"), os.path.join(model_dir, "escape.bin"))
    os.symlink("ok.bin", os.path.join(model_dir, "inside.bin"))
    os.symlink("nowhere.bin", os.path.join(model_dir, "dangling.bin"))
    cases = [("ok.bin", True), ("inside.bin", True), ("absent.bin", False),
             ("short.bin", None), ("escape.bin", None), ("dangling.bin", None)]
    failed = 0
    for location, present in cases:
        path = os.path.join(model_dir, f"m_{location}.onnx")
        onnx.save(external_model(location, 64), path)
        if present is None:
            r = run_lpcc(path)
            problems = [] if r.returncode == 1 and location in r.stderr else \
                [f"expected exit 1 naming '{location}', got {r.returncode}: {r.stderr.strip()[:300]}"]
        else:
            problems = check_model(path)
            r = run_lpcc(path)
            if not problems:
                (w,) = [v for v in json.loads(r.stdout)["values"] if v["name"] == "w"]
                if w["external"].get("present") is not present:
                    problems = [f"external present: lpcc {w['external'].get('present')}, "
                                f"file there: {present}"]
        if problems:
            failed += 1
            print(f"FAIL external data '{location}': {problems[0]}")
    return failed


def main():
    if not LPCC or not os.access(LPCC, os.X_OK):
        print("LPCC must name the built lpcc", file=sys.stderr)
        return 2
    local = sorted(glob.glob(os.path.join(SRC, "models", "*.onnx")))
    if len(local) < 5:
        print(f"expected the bundled models in {SRC}/models", file=sys.stderr)
        return 2
    failed = checked = rejected = 0
    for path in local + suite_models():
        short = os.path.relpath(path, SRC) if path.startswith(SRC) else \
            "/".join(path.split(os.sep)[-2:])
        if path not in local and must_reject(path):
            r = run_lpcc(path)
            if r.returncode != 1 or "error: node" not in r.stderr:
                print(f"FAIL {short}: expected exit 1 with a node error, got {r.returncode}: "
                      f"{r.stderr.strip()[:300]}")
                failed += 1
            rejected += 1
            continue
        problems = check_model(path)
        checked += 1
        if problems:
            failed += 1
            print(f"FAIL {short}: {len(problems)} differences")
            for p in problems[:MAX_SHOWN]:
                print(f"    {p}")
            if len(problems) > MAX_SHOWN:
                print(f"    ... {len(problems) - MAX_SHOWN} more")
    with tempfile.TemporaryDirectory() as tmp:
        failed += check_hostile(tmp)
    print(f"{checked} models compared with onnx, {rejected} rejected as expected, "
          f"hostile files checked; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
