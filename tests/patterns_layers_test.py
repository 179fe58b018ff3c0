"""--layers auto on graphs without module metadata (Paddle2ONNX / tf2onnx
style): the models in models/ with every node's metadata_props removed and
the nodes renamed to `<op>_<k>` (conv_12), so that neither metadata nor
names carry a module path.

- layers: every node that reads a float weight is in the same layer as with
  the metadata (layers compared in order), for the CNNs (cnn_small,
  mobilenet_small) and the transformers (gpt2, bert, llama tiny, seed_2x256);
  the one documented difference: mobilenet's stem.1 (Conv) and stem.2
  (activation) form one layer;
- a capacity of the metadata's largest layer, below the whole model on one card,
  partitions (exit 0, several cards);
- the card models of the stripped MobileNet on --cards 3 run in sequence in
  ONNX Runtime and reproduce the whole model's outputs."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from model_feeds import feeds_for  # noqa: E402

LPCC = os.environ["LPCC"]
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")
failures = []
# metadata layers that form one layer without it
MERGED = {"mobilenet_small": [("stem.1", "stem.2")]}


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def stripped(model, tmp):
    """The model without node metadata, nodes renamed <op>_<k>; and the map
    from new names to the old ones."""
    m = onnx.load(os.path.join(MODELS, model + ".onnx"))
    names, count = {}, {}
    for n in m.graph.node:
        del n.metadata_props[:]
        op = n.op_type.lower()
        k = count.get(op, 0)
        count[op] = k + 1
        new = f"{op}_{k}"
        names[new] = n.name
        n.name = new
    path = os.path.join(tmp, model + "_stripped.onnx")
    onnx.save(m, path)
    return path, names


def dims(model):
    return ["--dim", "batch=2"] + ([] if model in ("cnn_small", "mobilenet_small") else ["--dim", "seq=8"])


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True, timeout=120)


def layers(path, model):
    r = lpcc(path, *dims(model), "--dump-ir=layers", "--json", "-q")
    if r.returncode != 0:
        raise SystemExit(f"lpcc {path}: rc {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)["layers"]


def weighted_nodes(model):
    """Names of the nodes that read a float weight (not shape data)."""
    m = onnx.load(os.path.join(MODELS, model + ".onnx"))
    w = {t.name for t in m.graph.initializer if t.data_type in (1, 10, 11, 16) and len(t.dims) >= 1}
    return [n.name for n in m.graph.node if any(i in w for i in n.input)]


def check_layers(model, tmp):
    path, names = stripped(model, tmp)
    want = {}
    meta = layers(os.path.join(MODELS, model + ".onnx"), model)
    alias = {}
    for group in MERGED.get(model, []):
        for name in group:
            alias[name] = group[0]
    order = []
    for l in meta:
        key = alias.get(l["name"], l["name"])
        if key not in order:
            order.append(key)
        for n in l["nodes"]:
            want[n] = order.index(key)
    got = {}
    plain = layers(path, model)
    for j, l in enumerate(plain):
        for n in l["nodes"]:
            got[names[n]] = j
    if len(plain) != len(order):
        fail(f"{model}: {len(plain)} layers without metadata, {len(order)} with ({order})")
    for n in weighted_nodes(model):
        if want.get(n) != got.get(n):
            fail(f"{model}: node {n} in layer {got.get(n)} without metadata, {want.get(n)} with")
            break
    else:
        print(f"ok   {model}: {len(plain)} layers line up with the metadata's")
    return path


def check_capacity(model, path):
    """A capacity of the metadata's largest layer, below the whole model on one
    card: exit 0 on several cards."""
    r = lpcc(path, *dims(model), "--capacity", "1GiB", "--dump-ir=plan", "--json", "-q")
    whole = json.loads(r.stdout)["cards"][0]["total_bytes"] if r.returncode == 0 else 0
    # the largest layer the metadata gives: without metadata, no larger one
    cap = max(l["total_bytes"] for l in layers(os.path.join(MODELS, model + ".onnx"), model))
    if not cap < whole:
        fail(f"{model}: the largest layer ({cap}) is not below the whole model ({whole})")
        return
    r = lpcc(path, *dims(model), "--capacity", str(cap), "--dump-ir=plan", "--json", "-q")
    if r.returncode != 0:
        fail(f"{model}: --capacity {cap} (whole model {whole}): rc {r.returncode}: {r.stderr.strip()}")
        return
    n = len(json.loads(r.stdout)["cards"])
    if n < 2:
        fail(f"{model}: --capacity {cap}: {n} card")
    else:
        print(f"ok   {model}: --capacity {cap} (whole model {whole}) on {n} cards")


def check_chain(model, path, tmp):
    feeds = feeds_for(path, {"batch": 2})
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in ref.get_outputs()]
    want = dict(zip(names, ref.run(names, feeds)))
    out = os.path.join(tmp, model + "_cards")
    r = lpcc(path, *dims(model), "--cards", "3", "--algo", "dp", "--capacity", "1GiB", "-q", "-o", out)
    if r.returncode != 0:
        fail(f"{model} --cards 3: rc {r.returncode}: {r.stderr.strip()}")
        return
    plan = json.load(open(os.path.join(out, "plan.json")))
    if len(plan["cards"]) != 3:
        fail(f"{model} --cards 3: {len(plan['cards'])} cards")
        return
    values = dict(feeds)
    for k in range(3):
        card = os.path.join(out, f"card_{k}.onnx")
        onnx.checker.check_model(card)
        s = ort.InferenceSession(card, providers=["CPUExecutionProvider"])
        outs = [o.name for o in s.get_outputs()]
        values.update(zip(outs, s.run(outs, {i.name: values[i.name] for i in s.get_inputs()})))
    for name, w in want.items():
        have = values.get(name)
        if have is None:
            fail(f"{model} --cards 3: output {name} not produced")
            continue
        err = float(np.max(np.abs(have.astype(np.float64) - w.astype(np.float64))))
        if not err <= 1e-4 * max(1.0, float(np.max(np.abs(w)))):
            fail(f"{model} --cards 3: {name} differs by {err:g}")
            continue
        print(f"ok   {model} --cards 3: {name} matches the whole model (max error {err:.2g})")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for model in ("cnn_small", "mobilenet_small", "gpt2_tiny", "bert_tiny", "llama_tiny", "seed_2x256"):
            paths[model] = check_layers(model, tmp)
        for model in ("cnn_small", "mobilenet_small"):
            check_capacity(model, paths[model])
        check_chain("mobilenet_small", paths["mobilenet_small"], tmp)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
