"""The layer IR of real models against hand calculations and onnx.

Runs the built lpcc (env LPCC) with --dump-ir=layers --json and checks:
- seed_16x8192: 16 blocks + head, per-block weight bytes equal to the
  architecture's parameter count at FP16, activation bytes bounded by the
  attention scores and the residual stream computed by hand;
- seed_2x256: doubling the batch doubles activations, keeps weights;
- gpt2/bert/llama tiny: embed + 2 blocks + head, contiguous layers in a valid
  topological order, weights summing to the initializers onnx reports,
  --dtype fp16 halving float32 weights;
- the whole-model memory plan: no two slots alive at once overlap, arena at
  least the live bytes at any node;
- --layers node/scope/regex, --workspace, -o DIR/layers.json and --dot;
- --layers regex: in Perl syntax (\\d), a backtracking pattern stopped by the
  match limit, compile errors with their offset, a pattern matching no node:
  each exit 2 with the pattern named, within seconds.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx

LPCC = os.environ["LPCC"]
SRC = os.environ["LPCC_SOURCE_DIR"]
MODELS = os.path.join(SRC, "models")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def layers_json(model, *args):
    r = subprocess.run([LPCC, os.path.join(MODELS, model), "--dump-ir=layers", "--json", "-q", *args],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"lpcc {model} {args} failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def is_shape_data(t):
    """Integer tensors of rank 0-1 are shape data, not weights (layers.c)."""
    return t.data_type not in (1, 10, 11, 16) and len(t.dims) <= 1


def tensor_bytes(t, deploy=None):
    n = int(np.prod(t.dims)) if len(t.dims) else 1
    size = {1: 4, 10: 2, 11: 8, 16: 2, 7: 8, 6: 4, 9: 1, 3: 1, 2: 1}[t.data_type]
    if deploy and t.data_type in (1, 10, 11, 16):
        size = deploy
    return n * size


def seed_full():
    H, M, heads, S, B = 8192, 32768, 16, 2048, 1
    j = layers_json("seed_16x8192.onnx", "--dim", "batch=1", "--dim", f"seq={S}")
    names = [l["name"] for l in j["layers"]]
    check(names == [f"layers.{i}" for i in range(16)] + ["head"], f"seed layers {names}")
    # per block: q,k,v,out [H,H] + fc1 [H,M] + fc2 [M,H]; biases 4H + M + H;
    # two LayerNorms 2*2H; the fp16 scale scalar; all FP16
    params = 4 * H * H + 2 * H * M + 4 * H + M + H + 4 * H
    want = 2 * params + 2
    for l in j["layers"][:16]:
        check(l["weights_bytes"] == want, f"seed {l['name']} weights {l['weights_bytes']} != {want}")
    check(j["layers"][16]["weights_bytes"] == 2 * 2 * H, "seed head = final LayerNorm")
    scores = B * heads * S * S * 2
    x = B * S * H * 2
    for l in j["layers"][:16]:
        a = l["activation_bytes"]
        # at the softmax: its input and output scores, the residual and v
        check(2 * scores + 2 * x <= a <= 2 * scores + 4 * x,
              f"seed {l['name']} activation {a} outside [{2*scores+2*x}, {2*scores+4*x}]")
        check(l["input_bytes"] == x and l["output_bytes"] == x, f"seed {l['name']} boundary")
        check(l["activation_sum_bytes"] > a, "plain sum exceeds the planned peak")
        # FLOPs: 2*S*(4H^2 + 2HM) for projections + 2 * 2*S*S*H for attention
        flops_mm = 2 * B * S * (4 * H * H + 2 * H * M) + 2 * 2 * B * S * S * H
        check(flops_mm <= l["flops"] <= flops_mm * 1.01, f"seed flops {l['flops']} vs {flops_mm}")


def seed_batch_doubling():
    j2 = layers_json("seed_2x256.onnx", "--dim", "batch=2", "--dim", "seq=64")
    j4 = layers_json("seed_2x256.onnx", "--dim", "batch=4", "--dim", "seq=64")
    for a, b in zip(j2["layers"], j4["layers"]):
        check(a["weights_bytes"] == b["weights_bytes"], f"{a['name']}: weights change with batch")
        check(b["input_bytes"] == 2 * a["input_bytes"], f"{a['name']}: input bytes do not double")
        r = b["activation_bytes"] / a["activation_bytes"]
        # shape-arithmetic values (a few bytes, aligned to 256) do not scale
        check(1.97 <= r <= 2.0, f"{a['name']}: activation ratio {r:.4f} for batch 2 -> 4")
        rs = b["activation_sum_bytes"] / a["activation_sum_bytes"]
        check(1.97 <= rs <= 2.0, f"{a['name']}: activation sum ratio {rs:.4f}")


def topo_ok(model_path, order):
    m = onnx.load(model_path, load_external_data=False)
    made = {i.name for i in m.graph.input} | {t.name for t in m.graph.initializer}
    by_name = {n.name: n for n in m.graph.node}
    made |= {n.output[0] for n in m.graph.node if n.op_type == "Constant"}
    for name in order:
        n = by_name[name]
        if any(i and i not in made for i in n.input):
            return False
        made |= set(n.output)
    return True


def small_models():
    blocks = {"gpt2_tiny.onnx": ["h.0", "h.1"], "bert_tiny.onnx": ["encoder.layer.0", "encoder.layer.1"],
              "llama_tiny.onnx": ["layers.0", "layers.1"]}
    for model, want in blocks.items():
        j = layers_json(model, "--dim", "batch=2", "--dim", "seq=16")
        names = [l["name"] for l in j["layers"]]
        check(names == ["embed"] + want + ["head"], f"{model}: layers {names}")
        path = os.path.join(MODELS, model)
        m = onnx.load(path)
        graph_nodes = [n.name for n in m.graph.node if n.op_type != "Constant"]
        order = [n for l in j["layers"] for n in l["nodes"]]
        check(sorted(order) == sorted(graph_nodes), f"{model}: layers do not cover the nodes once")
        check(topo_ok(path, order), f"{model}: layer order is not topological")
        pos = 0
        for l in j["layers"]:
            check(l["first_node"] == pos and l["last_node"] == pos + len(l["nodes"]) - 1,
                  f"{model}: {l['name']} not contiguous")
            pos += len(l["nodes"])
        # weights: every initializer a node reads, once, as onnx stores it
        used = {i for n in m.graph.node for i in n.input}
        inits = {t.name: t for t in m.graph.initializer if t.name in used and not is_shape_data(t)}
        seen = {w for l in j["layers"] for w in l["weights"]}
        check(seen == set(inits) | (seen - set(inits)) and set(inits) <= seen,
              f"{model}: weights missing {set(inits) - seen}")
        per_layer = sum(l["weights_bytes"] for l in j["layers"])
        # a weight shared by layers (tied embeddings) is listed in each
        shared = sum(tensor_bytes(inits[w]) * (sum(w in l["weights"] for l in j["layers"]) - 1)
                     for w in inits)
        check(per_layer - shared == sum(tensor_bytes(t) for t in inits.values()),
              f"{model}: weight bytes {per_layer - shared} != onnx {sum(tensor_bytes(t) for t in inits.values())}")
        jh = layers_json(model, "--dim", "batch=2", "--dim", "seq=16", "--dtype", "fp16")
        want16 = sum(tensor_bytes(t, 2) for t in inits.values()) + shared // 2
        check(sum(l["weights_bytes"] for l in jh["layers"]) == want16, f"{model}: --dtype fp16 weights")
        check_plan(model, j)
        # the embedding reads the rows it gathers (batch*seq*hidden floats), not the table
        embed = j["layers"][0]
        rows = 2 * 16 * 128 * 4
        table = max(tensor_bytes(inits[w]) for w in embed["weights"] if w in inits)
        check(rows <= embed["bytes_read"] < table // 4,
              f"{model}: embed reads {embed['bytes_read']} B (rows {rows}, table {table})")


def check_plan(model, j):
    plan = j["memory_plan"]
    slots = plan["slots"]
    align = plan["alignment"]
    up = lambda b: (b + align - 1) // align * align
    steps = max((s["last"] for s in slots), default=0) + 1
    live = [0] * steps
    for s in slots:
        for t in range(s["first"], s["last"] + 1):
            live[t] += up(s["bytes"])
    check(plan["arena_bytes"] >= max(live), f"{model}: arena below live bytes")
    for i, a in enumerate(slots):
        check(a["offset"] + up(a["bytes"]) <= plan["arena_bytes"], f"{model}: slot past the arena")
        for b in slots[i + 1:]:
            if a["first"] <= b["last"] and b["first"] <= a["last"] and a["bytes"] and b["bytes"]:
                check(a["offset"] + up(a["bytes"]) <= b["offset"] or b["offset"] + up(b["bytes"]) <= a["offset"],
                      f"{model}: slots {a['value']} and {b['value']} overlap")
    print(f"{model}: arena {plan['arena_bytes']} B, live peak {max(live)} B, "
          f"plain sum {plan['activation_sum_bytes']} B")


def modes_and_files():
    g = onnx.load(os.path.join(MODELS, "gpt2_tiny.onnx"))
    n_nodes = sum(n.op_type != "Constant" for n in g.graph.node)
    j = layers_json("gpt2_tiny.onnx", "--dim", "batch=1", "--dim", "seq=8", "--layers", "node")
    check(j["n_layers"] == n_nodes, f"--layers node: {j['n_layers']} != {n_nodes}")
    j = layers_json("seed_2x256.onnx", "--dim", "batch=1", "--dim", "seq=8", "--layers",
                    r"regex:^/(layers\.[0-9]+)/")
    check([l["name"] for l in j["layers"]] == ["layers.0", "layers.1", "/norm/LayerNormalization"]
          or [l["name"] for l in j["layers"]][:2] == ["layers.0", "layers.1"], "regex layers")
    j = layers_json("seed_2x256.onnx", "--dim", "batch=1", "--dim", "seq=8", "--layers", "scope:2")
    check(len(j["layers"]) > 3, "scope:2 splits blocks into submodules")
    with tempfile.TemporaryDirectory() as tmp:
        ws = os.path.join(tmp, "ws.json")
        with open(ws, "w") as f:
            json.dump({"MatMul": 1000, "Softmax": "3*output", "default": 0}, f)
        j = layers_json("seed_2x256.onnx", "--dim", "batch=1", "--dim", "seq=8", "--workspace", ws)
        softmax_out = 1 * 4 * 8 * 8 * 2  # batch, heads, seq, seq, fp16
        check(j["layers"][0]["buffer_bytes"] == max(1000, 3 * softmax_out),
              f"--workspace: buffer {j['layers'][0]['buffer_bytes']}")
        with open(ws, "w") as f:
            f.write('{"MatMul": "2*bogus"}')
        r = subprocess.run([LPCC, os.path.join(MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim",
                            "seq=8", "--workspace", ws, "--dump-ir=layers"], capture_output=True, text=True)
        check(r.returncode == 2 and "bogus" in r.stderr, f"bad --workspace accepted: {r.stderr}")
        out = os.path.join(tmp, "out")
        dot = os.path.join(tmp, "l.dot")
        r = subprocess.run([LPCC, os.path.join(MODELS, "bert_tiny.onnx"), "--dim", "batch=1", "--dim",
                            "seq=8", "-o", out, "--dot", dot, "-q"], capture_output=True, text=True)
        check(r.returncode == 0, f"-o failed: {r.stderr}")
        with open(os.path.join(out, "layers.json")) as f:
            lj = json.load(f)
        check(lj["n_layers"] == 4, "layers.json")
        with open(dot) as f:
            check(f.read().count("subgraph cluster_") == 4, "--dot clusters")


def run_lpcc(path, *args, timeout=30):
    try:
        return subprocess.run([LPCC, path, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        check(False, f"lpcc {path} {args} ran over {timeout} s")
        return None


def chain_model(names, path):
    """x -> Relu -> Relu ... with the given node names."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"], name=nm)
             for i, nm in enumerate(names)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                          [helper.make_tensor_value_info(f"t{len(names)}", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 10
    onnx.save(m, path)


def regex_modes():
    import time
    with tempfile.TemporaryDirectory() as tmp:
        n = 7
        path = os.path.join(tmp, "layers.onnx")
        chain_model([f"/model/layers.{i // 2}/op{i % 2}" for i in range(2 * n)], path)
        # Perl syntax: \d is a digit class
        r = run_lpcc(path, "--dump-ir=layers", "--json", "-q", "--layers", r"regex:layers\.(\d+)")
        check(r is not None and r.returncode == 0, f"regex \\d: {r and r.stderr}")
        if r is not None and r.returncode == 0:
            names = [l["name"] for l in json.loads(r.stdout)["layers"]]
            check(names == [str(i) for i in range(n)], f"regex:layers\\.(\\d+) gave layers {names}")
        # a pattern that matches no node name
        r = run_lpcc(path, "--dump-ir=layers", "--layers", r"regex:blocks\.(\d+)")
        check(r is not None and r.returncode == 2 and "regex:blocks\\.(\\d+) matches none of the 14 node names"
              in r.stderr, f"no-match pattern: {r and (r.returncode, r.stderr)}")
        # also when only the summary is asked for: --layers is never ignored
        r = run_lpcc(path, "--layers", r"regex:blocks\.(\d+)")
        check(r is not None and r.returncode == 2 and "matches none" in r.stderr and not r.stdout,
              f"no-match pattern, summary run: {r and (r.returncode, r.stderr)}")
        # a compile error names its offset
        r = run_lpcc(path, "--dump-ir=layers", "--layers", "regex:layers(\\d+")
        check(r is not None and r.returncode == 2 and "offset 10" in r.stderr and "regex:layers(" in r.stderr,
              f"compile error: {r and (r.returncode, r.stderr)}")
        # no capture group
        r = run_lpcc(path, "--dump-ir=layers", "--layers", "regex:layers")
        check(r is not None and r.returncode == 2 and "capture group" in r.stderr,
              f"no group: {r and (r.returncode, r.stderr)}")
        # exponential under POSIX regexec: PCRE2 settles it at once (no 'b')
        evil = os.path.join(tmp, "evil.onnx")
        chain_model(["a" * 300], evil)
        t0 = time.monotonic()
        r = run_lpcc(evil, "--dump-ir=layers", "--layers", r"regex:(a*)(a*)\1\2b")
        check(r is not None and r.returncode == 2 and "matches none of the 1 node names" in r.stderr,
              f"back-reference pattern: {r and (r.returncode, r.stderr)}")
        check(time.monotonic() - t0 < 5, "back-reference pattern took over 5 s")
        # nested quantifiers backtrack 2^40 ways; the match limit stops them
        chain_model(["a" * 40 + "!"], evil)
        t0 = time.monotonic()
        r = run_lpcc(evil, "--dump-ir=layers", "--layers", r"regex:^((a+)+)$")
        check(r is not None and r.returncode == 2 and "hit the regex match limit" in r.stderr
              and "node 0 'aaaa" in r.stderr and "regex:^((a+)+)$" in r.stderr,
              f"backtracking pattern: {r and (r.returncode, r.stderr)}")
        check(time.monotonic() - t0 < 5, "backtracking pattern took over 5 s")


def workspace_bounds():
    """Hostile --workspace files: each a usage error naming the file and key."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        chain_model(["relu0", "relu1"], path)
        ws = os.path.join(tmp, "ws.json")
        cases = [
            ("deep", '{"Relu": "' + "(" * 500 + "1" + ")" * 500 + '"}', "nested deeper than 32 levels"),
            ("deep_min", '{"Relu": "' + "min(1," * 100 + "1" + ")" * 100 + '"}',
             "nested deeper than 32 levels"),
            ("deep_70k", '{"Relu": "' + "(" * 70000 + "1" + ")" * 70000 + '"}',
             "140001 characters, more than the 1024"),
            ("overflow", '{"Relu": "18446744073709551616*output"}', "does not fit 64 bits"),
            ("long", '{"Relu": "' + "+".join(["1"] * 5000) + '"}', "9999 characters, more than the 1024"),
            ("json_int", '{"Relu": 99999999999999999999}', "ws.json:1"),
        ]
        for name, text, want in cases:
            with open(ws, "w") as f:
                f.write(text)
            r = run_lpcc(path, "--dump-ir=layers", "--workspace", ws)
            check(r is not None and r.returncode == 2 and f"--workspace {ws}" in r.stderr and want in r.stderr
                  and (name == "json_int" or "'Relu'" in r.stderr),
                  f"--workspace {name}: {r and (r.returncode, r.stderr[:300])}")
        # the largest number loads; 32 levels evaluate
        with open(ws, "w") as f:
            f.write('{"Relu": "max(18446744073709551615, 1)"}')
        r = run_lpcc(path, "--dump-ir=layers", "--workspace", ws)
        check(r is not None and r.returncode == 0, f"--workspace 2^64-1: {r and r.stderr}")
        with open(ws, "w") as f:
            f.write('{"Relu": "' + "(" * 31 + "1000 + 2*3" + ")" * 31 + '", "default": 7}')
        r = run_lpcc(path, "--dump-ir=layers", "--json", "-q", "--layers", "node", "--workspace", ws)
        check(r is not None and r.returncode == 0, f"--workspace at the bounds: {r and r.stderr}")
        if r is not None and r.returncode == 0:
            bufs = [l["buffer_bytes"] for l in json.loads(r.stdout)["layers"]]
            check(bufs == [1006, 1006], f"--workspace at the bounds: buffers {bufs}")


def workspace_rules():
    """Per node: a file rule beats the built-in one, built-ins stay for the
    ops the file leaves out, "default" covers the rest, and * binds tighter
    than + inside min and max."""
    path = os.path.join(MODELS, "seed_2x256.onnx")
    ops = {n.name: n.op_type for n in onnx.load(path).graph.node}
    with tempfile.TemporaryDirectory() as tmp:
        ws = os.path.join(tmp, "ws.json")
        with open(ws, "w") as f:
            json.dump({"MatMul": "max(2*3+4, min(5, 1+1))*2", "Softmax": "1+2*3*outnumel",
                       "default": 5}, f)
        j = layers_json("seed_2x256.onnx", "--dim", "batch=1", "--dim", "seq=8", "--layers", "node",
                        "--workspace", ws)
        builtin = {"Gemm", "LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization",
                   "ReduceMean", "ReduceSum"}
        softmax_numel = 1 * 4 * 8 * 8  # batch, heads, seq, seq
        seen = set()
        for l in j["layers"]:
            op = ops[l["nodes"][0]]
            want = {"MatMul": 20, "Softmax": 1 + 6 * softmax_numel}.get(op, None if op in builtin else 5)
            seen.add(op)
            if want is not None:
                check(l["buffer_bytes"] == want, f"--workspace rules: {op} buffer {l['buffer_bytes']} != {want}")
        check({"MatMul", "Softmax"} <= seen, f"--workspace rules: ops seen {seen}")


workspace_rules()
workspace_bounds()
regex_modes()
seed_full()
seed_batch_doubling()
small_models()
modes_and_files()
if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("ok")
