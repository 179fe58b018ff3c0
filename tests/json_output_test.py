"""The JSON files of `lpcc -o DIR` against what onnx says about the model.

For every model in models/ (and a generated one whose node and value names
are not valid UTF-8) lpcc writes graph.json, layers.json, plan.json and
cards.json; each is parsed with Python's json and checked:
- graph.json: every node's name, op type and domain at its file_index equal
  onnx.load's, every initializer a weight or constant with onnx's dims, the
  graph inputs and outputs onnx's, every value that onnx's shape inference
  (data_prop, dims bound as on the command line) gives a static shape the
  same shape;
- layers.json: the layers' node lists hold graph.json's nodes, each once,
  and their weights are initializers;
- plan.json: the cards cover the layers in order with layers.json's names,
  and `--plan plan.json` reads it back into the same plan;
- the same documents printed by --dump-ir=STAGE --json are equal to the files;
- names that are not UTF-8 appear in every file with each invalid byte as
  the text \\xNN (ir/json_out.h), none dropped.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import onnx
from onnx import TensorProto, helper, shape_inference

LPCC = os.environ["LPCC"]
SRC = os.environ["LPCC_SOURCE_DIR"]
MODELS = os.path.join(SRC, "models")

# model, dims, extra options (a capacity that shards, several cards)
CASES = [
    ("bert_tiny", {"batch": 1, "seq": 16}, []),
    ("cnn_small", {"batch": 2}, []),
    ("gpt2_tiny", {"batch": 1, "seq": 16}, []),
    ("gpt2_tiny", {"batch": 1, "seq": 32}, ["--capacity", "700KiB"]),
    ("gpt2_full_graph", {"batch": 1, "seq": 16}, ["--capacity", "80GiB"]),
    ("llama_tiny", {"batch": 1, "seq": 16}, ["--cards", "2", "--algo", "dp"]),
    ("seed_2x256", {"batch": 2, "seq": 8}, ["--capacity", "1MiB"]),
    ("seed_4x256_ext", {"batch": 2, "seq": 8}, ["--capacity", "1MiB"]),
    ("seed_16x8192", {"batch": 1, "seq": 16}, []),
    ("seed_ref_torch", {"batch": 1, "seq": 16}, ["--compare", "tp=2,pp=1"]),
]

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)
    return cond


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, timeout=300)


def dim_args(dims):
    return [a for k, v in dims.items() for a in ("--dim", f"{k}={v}")]


def load(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def static_shapes(model, dims):
    """Value name -> dims of every value onnx infers a fully static shape for."""
    m = onnx.load(model, load_external_data=False)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    m = shape_inference.infer_shapes(m, data_prop=True)
    out = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        if all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = [d.dim_value for d in t.shape.dim]
    return m, out


def check_graph(what, m, shapes, g):
    nodes = g["nodes"]
    # Constant nodes become constant values; every other node is there once
    kept = sorted(n["file_index"] for n in nodes)
    check(kept == sorted(set(kept)), f"{what}: a node appears twice")
    gone = [m.graph.node[i].op_type for i in set(range(len(m.graph.node))) - set(kept)]
    check(set(gone) <= {"Constant"}, f"{what}: nodes missing from graph.json: {gone}")
    for n in nodes:
        ref = m.graph.node[n["file_index"]]
        if not check((n["name"], n["op"], n["domain"]) == (ref.name, ref.op_type, ref.domain),
                     f"{what}: node {n['file_index']} is {n['name']} {n['op']}, onnx: {ref.name} {ref.op_type}"):
            break
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    values = {v["name"]: v for v in g["values"]}
    for name, d in inits.items():
        v = values.get(name)
        if check(v is not None, f"{what}: initializer {name} missing"):
            check(v["kind"] in ("weight", "constant") and v["shape"] == d,
                  f"{what}: initializer {name}: {v['kind']} {v['shape']}, onnx {d}")
    check(g["inputs"] == [i.name for i in m.graph.input if i.name not in inits],
          f"{what}: inputs {g['inputs']}")
    check(g["outputs"] == [o.name for o in m.graph.output], f"{what}: outputs {g['outputs']}")
    n_checked = 0
    for name, d in shapes.items():
        v = values.get(name)
        if v is not None and all(isinstance(x, int) for x in v["shape"] or []) and v["shape"] is not None:
            n_checked += 1
            check(v["shape"] == d, f"{what}: value {name}: shape {v['shape']}, onnx {d}")
    check(n_checked > 0, f"{what}: no value shape compared")


def check_layers(what, m, g, layers):
    order = sorted(n["name"] for n in g["nodes"])
    flat = sorted(name for l in layers["layers"] for name in l["nodes"])
    check(flat == order, f"{what}: layers' nodes are not graph.json's nodes, each once")
    check(layers["n_layers"] == len(layers["layers"]), f"{what}: n_layers")
    inits = {t.name for t in m.graph.initializer}
    for l in layers["layers"]:
        check(set(l["weights"]) <= inits, f"{what}: layer {l['name']} weights {l['weights']} not initializers")


def check_plan(what, layers, plan):
    names = [l["name"] for l in layers["layers"]]
    expect = 0
    for c in plan["cards"]:
        if c["shard"] > 0:
            continue
        check(c["first_layer"] == expect, f"{what}: card {c['card']} starts at {c['first_layer']}, want {expect}")
        check((c["first_layer_name"], c["last_layer_name"]) ==
              (names[c["first_layer"]], names[c["last_layer"]]), f"{what}: card {c['card']} layer names")
        expect = c["last_layer"] + 1
    check(expect == len(names), f"{what}: cards end at layer {expect - 1} of {len(names)}")


def run_case(tmp, what, model, dims, extra):
    out = os.path.join(tmp, re.sub(r"\W", "_", what))
    args = [model, *dim_args(dims), "-q", *extra]
    r = lpcc(*args, "-o", out)
    if not check(r.returncode == 0, f"{what}: lpcc -o failed ({r.returncode}): {r.stderr.decode(errors='replace')}"):
        return None
    docs = {n: load(os.path.join(out, n + ".json")) for n in ("graph", "layers", "plan")}
    # the dumps print the same documents (graph.json is written after layering,
    # which may reorder the nodes)
    for stage in ("graph", "layers", "plan"):
        r = lpcc(*args, f"--dump-ir={stage}", "--json")
        if check(r.returncode == 0, f"{what}: --dump-ir={stage} --json failed"):
            got = json.loads(r.stdout.decode("utf-8"))
            if stage == "graph":
                for d in (got, docs[stage]):
                    d["nodes"].sort(key=lambda n: n["file_index"])
            check(got == docs[stage], f"{what}: --dump-ir={stage} --json differs from {stage}.json")
    # --plan reads back what was written: the same plan
    again = out + "_again"
    plan_args = [a for a in args if a not in extra] + ["--plan", os.path.join(out, "plan.json")]
    r = lpcc(*plan_args, "-o", again)
    if check(r.returncode == 0, f"{what}: --plan plan.json failed: {r.stderr.decode(errors='replace')}"):
        p2 = load(os.path.join(again, "plan.json"))
        for key in ("cards", "transfers", "shards", "capacities", "target", "totals"):
            check(p2[key] == docs["plan"][key], f"{what}: --plan plan.json: '{key}' differs")
    return out, docs


def check_models(tmp):
    for name, dims, extra in CASES:
        what = f"{name} {' '.join(extra)}".strip()
        model = os.path.join(MODELS, name + ".onnx")
        res = run_case(tmp, what, model, dims, extra)
        if res is None:
            continue
        _, docs = res
        m, shapes = static_shapes(model, dims)
        check_graph(what, m, shapes, docs["graph"])
        check_layers(what, m, docs["graph"], docs["layers"])
        check_plan(what, docs["layers"], docs["plan"])


# ---- names that are not UTF-8 -------------------------------------------------

# placeholder (valid, for onnx.helper) -> the bytes put in its place in the
# serialized model: same length, so every length prefix stays right
BAD = {
    b"relu@@": b"relu\xff\xfe",     # bytes that never occur in UTF-8
    b"add@@@": b"add\xc3(\x80",     # a lead byte without its continuation
    b"mid@@@": b"mid\xed\xa0\x80",  # a surrogate
    b"w@@@": b"w\xc0\xaf\xe9",      # an overlong form and a truncated sequence
    b"out@@": b"out\xf5\x80",       # above U+10FFFF
}


def escaped(raw):
    """The text lpcc writes for raw bytes (ir/json_out.h): Python's decoder
    marks the same bytes invalid, and backslashreplace writes each as \\xNN."""
    return raw.decode("utf-8", errors="backslashreplace")


def bad_names_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("out@@", TensorProto.FLOAT, ["batch", 4])
    w = helper.make_tensor("w@@@", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    nodes = [helper.make_node("Relu", ["x"], ["mid@@@"], name="relu@@"),
             helper.make_node("Add", ["mid@@@", "w@@@"], ["out@@"], name="add@@@")]
    graph = helper.make_graph(nodes, "bad", [x], [y], initializer=[w])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    for k, v in BAD.items():
        assert len(k) == len(v) and k in data
        data = data.replace(k, v)
    with open(path, "wb") as f:
        f.write(data)


def check_bad_names(tmp):
    model = os.path.join(tmp, "bad.onnx")
    bad_names_model(model)
    want = {escaped(v) for v in BAD.values()}
    check(escaped(b"relu\xff\xfe") == "relu\\xff\\xfe" and escaped(b"mid\xed\xa0\x80") == "mid\\xed\\xa0\\x80"
          and escaped(b"w\xc0\xaf\xe9") == "w\\xc0\\xaf\\xe9", "escaped() itself")
    args = [model, "--dim", "batch=2", "-q", "--layers", "node", "--cards", "2", "--algo", "dp"]
    r = lpcc(*args, "-o", os.path.join(tmp, "bad"))
    if not check(r.returncode == 0, f"bad names: lpcc failed ({r.returncode}): {r.stderr.decode(errors='replace')}"):
        return
    docs = {n: load(os.path.join(tmp, "bad", n + ".json")) for n in ("graph", "layers", "plan", "cards")}
    for stage in ("load", "graph", "layers", "plan"):
        r = lpcc(*(args[:3] if stage == "load" else args), f"--dump-ir={stage}", "--json")
        if check(r.returncode == 0, f"bad names: --dump-ir={stage} --json failed"):
            docs["dump " + stage] = json.loads(r.stdout.decode("utf-8"))

    def strings(j):
        if isinstance(j, str):
            yield j
        elif isinstance(j, list):
            for v in j:
                yield from strings(v)
        elif isinstance(j, dict):
            for v in j.values():
                yield from strings(v)

    g = docs["graph"]
    check({n.get("name") for n in g["nodes"]} == {escaped(BAD[b"relu@@"]), escaped(BAD[b"add@@@"])},
          f"bad names: graph.json node names {[n.get('name') for n in g['nodes']]}")
    check({escaped(BAD[k]) for k in (b"mid@@@", b"w@@@", b"out@@")} <= {v.get("name") for v in g["values"]},
          f"bad names: graph.json value names {[v.get('name') for v in g['values']]}")
    check(g.get("outputs") == [escaped(BAD[b"out@@"])], f"bad names: graph.json outputs {g.get('outputs')}")
    check(g["nodes"][1].get("inputs") == [escaped(BAD[b"mid@@@"]), escaped(BAD[b"w@@@"])],
          f"bad names: graph.json Add inputs {g['nodes'][1].get('inputs')}")
    # per file, which names must appear in it
    need = {
        "graph": want, "dump load": want, "dump graph": want,
        "layers": want, "dump layers": want,
        "plan": want, "dump plan": want,
        "cards": {escaped(BAD[k]) for k in (b"mid@@@", b"out@@")},  # the cards' inputs and outputs
    }
    for name, names in need.items():
        if name not in docs:
            continue
        found = set(strings(docs[name]))
        missing = names - found
        check(not missing, f"bad names: {name}: missing {sorted(missing)}")
    # the layers are named after their nodes; --plan accepts the names it wrote
    r = lpcc(model, "--dim", "batch=2", "-q", "--layers", "node", "--plan",
             os.path.join(tmp, "bad", "plan.json"), "--dump-ir=plan", "--json")
    if check(r.returncode == 0, f"bad names: --plan plan.json failed: {r.stderr.decode(errors='replace')}"):
        check(json.loads(r.stdout.decode("utf-8"))["cards"] == docs["plan"]["cards"],
              "bad names: --plan plan.json gives other cards")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_bad_names(tmp)
        check_models(tmp)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
