#!/usr/bin/env python3
"""Hostile models and options through the whole lpcc pipeline, run as a user
runs it: `lpcc MODEL -o DIR [options]`.

Each case states the exit code it must give. A failure must also name the
model file on stderr (and the node, by index, name and op, where a node is at
fault) with a reason, print no summary or plan on stdout, and leave DIR with
none of graph.json, layers.json, plan.json, card_*.onnx or temporary files.
No case may exit 5 (internal error), crash, or make a sanitizer speak.
Where onnx's checker and strict shape inference reject a model, lpcc must
not accept it; where they accept it and lpcc does too, the output shapes
lpcc infers must equal theirs.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import onnx_graphs  # noqa: E402
from onnx_graphs import i64, vi  # noqa: E402,F401

LPCC = os.environ.get("LPCC", "lpcc")
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
RESULT_FILES = ("graph.json", "layers.json", "plan.json")

failures = []


def fail(case, msg):
    failures.append(f"{case}: {msg}")
    print(f"FAIL {case}: {msg}", file=sys.stderr)


# ---- model builders ---------------------------------------------------------

def model(nodes, inputs, outputs, inits=(), opset=18):
    return onnx_graphs.model(nodes, inputs, outputs, inits, opset, name="hostile")


def f32(name, shape):
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def one(op, inputs, shape_in, inits=(), attrs=None, name=None, in_dt=TensorProto.FLOAT,
        out_dt=TensorProto.FLOAT, n_out=1):
    """A model of one node `op` reading x (shape_in) and the initializers."""
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, inputs, outs, name=name or f"the_{op.lower()}", **(attrs or {}))
    return model([node], [vi("x", shape_in, in_dt)], [vi(o, None, out_dt) for o in outs], inits)


def onnx_verdict(m):
    """(accepted, {output: shape}) by onnx's checker and strict shape inference."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inf = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
            # the checker wants typed outputs: check the model with inferred ones
            onnx.checker.check_model(inf)
    except Exception:
        return False, {}
    shapes = {}
    for o in inf.graph.output:
        t = o.type.tensor_type
        if t.HasField("shape"):
            shapes[o.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param or None
                              for d in t.shape.dim]
    return True, shapes


# ---- running lpcc -----------------------------------------------------------

def run_case(work, case, m, args=(), expect=(1,), node=None, oracle=True, reason=None,
             raw=None, out_dir=True, runtime=True):
    path = os.path.join(work, f"{case}.onnx")
    data = raw if raw is not None else m.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    out = os.path.join(work, f"out_{case}")
    os.makedirs(out, exist_ok=True)
    cmd = [LPCC, path] + (["-o", out] if out_dir else []) + list(args)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60)
    except subprocess.TimeoutExpired:
        fail(case, "lpcc ran over 60 s (a hang)")
        return None
    err = r.stderr
    if any(s in err for s in ("runtime error", "AddressSanitizer", "LeakSanitizer")):
        fail(case, f"sanitizer report:\n{err[-3000:]}")
    if r.returncode not in expect:
        fail(case, f"exit {r.returncode}, expected {expect}; stderr:\n{err[-1500:]}")
        return r
    if r.returncode == 0:
        if out_dir:
            for f in RESULT_FILES:
                if not os.path.exists(os.path.join(out, f)):
                    fail(case, f"exit 0 but no {f}")
        if oracle and m is not None:
            check_shapes(case, m, out, runtime)
        return r
    # a failure: a reason naming the file (and node), nothing on stdout, no outputs
    if f"{path}: error: " not in err and "lpcc: error: " not in err:
        fail(case, f"stderr does not name the file '{path}':\n{err}")
    if node is not None and node not in err:
        fail(case, f"stderr does not name the node {node!r}:\n{err}")
    if reason is not None and reason.lower() not in err.lower():
        fail(case, f"stderr gives no reason mentioning {reason!r}:\n{err}")
    if r.stdout.strip():
        fail(case, f"stdout after an error:\n{r.stdout[:500]}")
    left = sorted(os.listdir(out))
    if left:
        fail(case, f"-o folder keeps {left} after a failure")
    if oracle and m is not None and r.returncode == 1:
        ran, _ = ort_verdict(m)
        if ran:
            fail(case, f"ONNX Runtime runs the model, lpcc rejects it:\n{err}")
    return r


def ort_verdict(m):
    """(ran, {output: shape}) from running the model in ONNX Runtime on zeros.
    onnx's checker passes models whose values break the operator's rules
    (a Reshape to the wrong size); the runtime does not."""
    import onnxruntime as ort
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            dt = {"tensor(float)": np.float32, "tensor(int64)": np.int64}[i.type]
            feeds[i.name] = np.zeros(i.shape, dtype=dt)
        outs = sess.run(None, feeds)
    except Exception:
        return False, {}
    return True, {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), outs)}


def check_shapes(case, m, out, runtime=True):
    ok, shapes = onnx_verdict(m)
    if not ok:
        fail(case, "onnx rejects the model, lpcc accepted it")
        return
    ran, run_shapes = ort_verdict(m) if runtime else (True, {})
    if not ran:
        fail(case, "ONNX Runtime cannot run the model, lpcc accepted it")
        return
    shapes.update(run_shapes)
    with open(os.path.join(out, "graph.json")) as f:
        g = json.load(f)
    by_name = {v["name"]: v for v in g["values"]}
    for name, shape in shapes.items():
        got = by_name.get(name, {}).get("shape")
        if got is None or any(isinstance(d, int) and d != s for d, s in zip(got, shape)) or \
                len(got) != len(shape):
            fail(case, f"output {name}: lpcc infers {got}, onnx {shape}")


# ---- the cases --------------------------------------------------------------

def node_tag(idx, name, op):
    return f"node {idx} '{name}' ({op})"


def model_cases(work):
    two = 2 ** 40
    # dims of 0 are legal: the tensors are empty
    run_case(work, "zero_dim_relu", one("Relu", ["x"], [0, 4]), expect=(0,))
    run_case(work, "zero_k_matmul", one("MatMul", ["x", "w"], [3, 0], [f32("w", [0, 5])]),
             expect=(0,))
    # external data that leaves the model's folder
    ext = one("MatMul", ["x", "w"], [2, 4], name="mm")
    w = ext.graph.initializer.add()
    w.CopyFrom(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4]))
    w.data_location = TensorProto.EXTERNAL
    for loc in ("../outside.bin", "/etc/passwd"):
        del w.external_data[:]
        e = w.external_data.add()
        e.key, e.value = "location", loc
        run_case(work, "external_" + ("dotdot" if loc[0] == "." else "absolute"), ext,
                 expect=(1,), reason=loc, oracle=False)
    # byte counts beyond 64 bits
    run_case(work, "input_2p40_squared", one("Relu", ["x"], [two, two]), expect=(1,),
             oracle=False, reason="overflow")
    run_case(work, "bound_dim_2p62", one("Relu", ["x"], ["batch", 4]),
             args=["--dim", "batch=4611686018427387904"], expect=(1,), oracle=False,
             reason="overflow")
    # each value 2^62 bytes: sums over a layer overflow 64 bits
    run_case(work, "byte_sums_overflow",
             model([helper.make_node("Relu", ["x"], ["a"], name="r1"),
                    helper.make_node("Neg", ["a"], ["b"], name="r2"),
                    helper.make_node("Add", ["a", "b"], ["c"], name="r3"),
                    helper.make_node("Add", ["c", "x"], ["y"], name="r4")],
                   [vi("x", [1 << 30, 1 << 30])], [vi("y", None)]),
             args=["--cards", "1"], expect=(1,), reason="EiB", oracle=False)
    # 2*M*N*K = 2^64: FLOPs overflow while bytes (2^44) do not
    mm = one("MatMul", ["x", "w"], [1 << 21, 1 << 21], name="big_mm")
    mm.graph.input.append(vi("w", [1 << 21, 1 << 21]))
    r = run_case(work, "matmul_flops_overflow", mm, args=["--capacity", str(1 << 62), "--cards", "1"],
                 expect=(0, 1, 3), oracle=False)
    if r is not None and r.returncode == 0:
        with open(os.path.join(work, "out_matmul_flops_overflow", "layers.json")) as f:
            flops = sum(l["flops"] for l in json.load(f)["layers"])
        if flops < (1 << 63) - 1:
            fail("matmul_flops_overflow", f"FLOPs wrapped around to {flops}")

    n = lambda op, name=None: node_tag(0, name or f"the_{op.lower()}", op)  # noqa: E731
    run_case(work, "reshape_product_mismatch",
             one("Reshape", ["x", "s"], [2, 3], [i64("s", [4, 2])]), node=n("Reshape"))
    run_case(work, "reshape_two_minus_one",
             one("Reshape", ["x", "s"], [2, 3], [i64("s", [-1, -1])]), node=n("Reshape"))
    run_case(work, "concat_axis_out_of_range",
             one("Concat", ["x", "x"], [2, 3], attrs={"axis": 2}), node=n("Concat"))
    run_case(work, "concat_axis_int64_min",
             one("Concat", ["x", "x"], [2, 3], attrs={"axis": I64_MIN}), node=n("Concat"))
    run_case(work, "gather_axis_out_of_range",
             one("Gather", ["x", "i"], [2, 3], [i64("i", [0])], attrs={"axis": -3}),
             node=n("Gather"))
    run_case(work, "gather_index_out_of_range",
             one("Gather", ["x", "i"], [2, 3], [i64("i", [5])], attrs={"axis": 0}),
             expect=(0, 1), oracle=False)
    conv = lambda case, w, attrs, x=(1, 4, 8, 8): run_case(  # noqa: E731
        work, case, one("Conv", ["x", "w"], list(x), [f32("w", w)], attrs=attrs),
        node=n("Conv"))
    conv("conv_zero_strides", [2, 4, 3, 3], {"strides": [0, 0]})
    conv("conv_negative_pads", [2, 4, 3, 3], {"pads": [-5, -5, -5, -5]})
    conv("conv_kernel_larger_than_input", [2, 4, 9, 9], {})
    conv("conv_group_not_dividing", [2, 1, 3, 3], {"group": 3})
    conv("conv_zero_dilations", [2, 4, 3, 3], {"dilations": [0, 0]})
    # channels x group beyond 64 bits, and a window sum beyond 64 bits
    cg = one("Conv", ["x", "w"], [1, 4, 8, 8], attrs={"group": 4})
    cg.graph.input.append(vi("w", [2, 1 << 62, 3, 3]))
    run_case(work, "conv_channels_times_group_overflow", cg, node=n("Conv"), oracle=False)
    cp = one("Conv", ["x", "w"], [1, 4, 1 << 62, 8], [f32("w", [2, 4, 3, 3])],
             attrs={"pads": [I64_MAX, 0, I64_MAX, 0]})
    run_case(work, "conv_pads_overflow", cp, node=n("Conv"), oracle=False)
    conv("conv_kernel_shape_zero", [2, 4, 3, 3], {"kernel_shape": [0, 3]})
    run_case(work, "conv_stride_int64_max",
             one("Conv", ["x", "w"], [1, 4, 8, 8], [f32("w", [2, 4, 3, 3])],
                 attrs={"strides": [I64_MAX, 1]}), expect=(0,))
    run_case(work, "transpose_perm_out_of_range",
             one("Transpose", ["x"], [2, 3], attrs={"perm": [0, 2]}), node=n("Transpose"))
    run_case(work, "transpose_perm_repeats",
             one("Transpose", ["x"], [2, 3], attrs={"perm": [1, 1]}), node=n("Transpose"))
    run_case(work, "transpose_perm_short",
             one("Transpose", ["x"], [2, 3, 4], attrs={"perm": [1, 0]}), node=n("Transpose"))
    # INT64_MIN / INT64_MAX bounds are legal and clamp
    run_case(work, "slice_int64_bounds",
             one("Slice", ["x", "s", "e", "a", "t"], [5, 6],
                 [i64("s", [I64_MIN, 1]), i64("e", [I64_MAX, I64_MAX]), i64("a", [0, 1]),
                  i64("t", [1, 2])]), expect=(0,))
    run_case(work, "slice_reverse_int64_bounds",
             one("Slice", ["x", "s", "e", "a", "t"], [5, 6],
                 [i64("s", [I64_MAX]), i64("e", [I64_MIN]), i64("a", [1]),
                  i64("t", [I64_MIN])]), expect=(0,))
    # ONNX (unlike numpy) clamps a negative step's start to 0: one element
    run_case(work, "slice_reverse_before_start",
             one("Slice", ["x", "s", "e", "a", "t"], [3, 2],
                 [i64("s", [-5]), i64("e", [-10]), i64("a", [0]), i64("t", [-1])]), expect=(0,))
    run_case(work, "slice_step_zero",
             one("Slice", ["x", "s", "e", "a", "t"], [5, 6],
                 [i64("s", [0]), i64("e", [3]), i64("a", [0]), i64("t", [0])]),
             node=n("Slice"))
    run_case(work, "range_delta_zero",
             model([helper.make_node("Range", ["a", "b", "c"], ["y"], name="rng")], [],
                   [vi("y", None, TensorProto.INT64)],
                   [numpy_helper.from_array(np.array(v, dtype=np.int64), k)
                    for k, v in (("a", 0), ("b", 10), ("c", 0))]),
             node=node_tag(0, "rng", "Range"))
    run_case(work, "range_huge",
             model([helper.make_node("Range", ["a", "b", "c"], ["y"], name="rng")], [],
                   [vi("y", None, TensorProto.INT64)],
                   [numpy_helper.from_array(np.array(v, dtype=np.int64), k)
                    for k, v in (("a", I64_MIN), ("b", I64_MAX), ("c", 1))]),
             node=node_tag(0, "rng", "Range"), oracle=False)
    run_case(work, "expand_incompatible",
             one("Expand", ["x", "s"], [2, 3], [i64("s", [4, 4])]), node=n("Expand"))
    run_case(work, "split_sizes_not_summing",
             one("Split", ["x", "s"], [6, 2], [i64("s", [2, 2])], attrs={"axis": 0}, n_out=2),
             node=n("Split"))
    run_case(work, "split_negative_size",
             one("Split", ["x", "s"], [6, 2], [i64("s", [8, -2])], attrs={"axis": 0}, n_out=2),
             node=n("Split"))
    cos = lambda case, dims: run_case(  # noqa: E731
        work, case, model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [],
                          [vi("y", None)], [i64("s", dims)]),
        node=node_tag(0, "cos", "ConstantOfShape"), oracle=False)
    cos("constant_of_shape_negative", [2, -3])
    cos("constant_of_shape_huge", [1 << 40, 1 << 40])
    run_case(work, "pad_negative_within",
             one("Pad", ["x", "p"], [4, 5], [i64("p", [-1, 0, -1, 0])]), expect=(0,))
    run_case(work, "pad_negative_beyond",
             one("Pad", ["x", "p"], [4, 5], [i64("p", [-3, 0, -3, 0])]), node=n("Pad"),
             oracle=False)
    run_case(work, "topk_k_larger",
             model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")],
                   [vi("x", [3, 4])], [vi("v", None), vi("i", None, TensorProto.INT64)],
                   [i64("k", [9])]),
             node=node_tag(0, "topk", "TopK"), oracle=False)
    # a variadic op with none of its (at least one) inputs
    run_case(work, "einsum_no_inputs",
             model([helper.make_node("Einsum", [], ["y"], name="es", equation="->"),
                    helper.make_node("Relu", ["x"], ["z"], name="r")],
                   [vi("x", [2])], [vi("y", None), vi("z", None)]),
             node=node_tag(0, "es", "Einsum"))
    # an initializer that is only a graph output, beside a real node
    m = one("Relu", ["x"], [2, 2])
    m.graph.initializer.append(f32("w", [3]))
    m.graph.output.append(vi("w", [3]))
    run_case(work, "initializer_as_output", m, expect=(0,))
    # nothing to place on a card: a clear error, not an empty plan
    run_case(work, "zero_nodes", model([], [vi("x", [2])], [vi("x", [2])]), expect=(1,),
             reason="no layers", oracle=False)
    run_case(work, "node_with_zero_outputs",
             model([helper.make_node("Relu", ["x"], [], name="mute"),
                    helper.make_node("Relu", ["x"], ["y"], name="r")],
                   [vi("x", [2])], [vi("y", None)]), node=node_tag(0, "mute", "Relu"))
    # ONNX allows duplicate node names (ONNX Runtime refuses them)
    run_case(work, "duplicate_node_names",
             model([helper.make_node("Relu", ["x"], ["a"], name="same"),
                    helper.make_node("Neg", ["a"], ["b"], name="same"),
                    helper.make_node("Abs", ["b"], ["y"], name="same")],
                   [vi("x", [2, 3])], [vi("y", None)]),
             expect=(0,), args=["--layers", "node"], runtime=False)
    run_case(work, "every_value_an_output",
             model([helper.make_node("Relu", ["x"], ["a"], name="r"),
                    helper.make_node("Neg", ["a"], ["b"], name="n"),
                    helper.make_node("Add", ["a", "b"], ["y"], name="add")],
                   [vi("x", [2, 3])], [vi("a", None), vi("b", None), vi("y", None)]),
             expect=(0,), args=["--layers", "node"])


def small_model(work):
    m = model([helper.make_node("MatMul", ["x", f"w{i}" if i else "w0"], [f"h{i}"], name=f"mm{i}")
               if i == 0 else
               helper.make_node("MatMul", [f"h{i - 1}", f"w{i}"], [f"h{i}"], name=f"mm{i}")
               for i in range(4)],
              [vi("x", ["batch", 64])], [vi("h3", None)],
              [f32(f"w{i}", [64, 64]) for i in range(4)])
    path = os.path.join(work, "chain.onnx")
    onnx.save(m, path)
    return m


def option_cases(work):
    m = small_model(work)
    base = ["--dim", "batch=2", "--layers", "node"]
    opt = lambda case, args, expect, reason=None: run_case(  # noqa: E731
        work, case, m, args=base + args, expect=expect, reason=reason, oracle=False)
    opt("capacity_zero", ["--capacity", "0"], (2,), "capacity")
    opt("capacity_1B", ["--capacity", "1B"], (3,))
    opt("capacity_1B_no_split", ["--capacity", "1B", "--no-split"], (3,))
    opt("capacity_2p64", ["--capacity", "18446744073709551616"], (2,), "capacity")
    opt("capacity_huge", ["--capacity", "16EiB"], (0, 2))
    opt("cards_zero", ["--cards", "0"], (2,), "cards")
    opt("cards_negative", ["--cards", "-3"], (2,), "cards")
    opt("cards_huge", ["--cards", "99999999999999999999"], (2,), "cards")
    opt("cards_more_than_layers", ["--cards", "1000", "--algo", "dp"], (0, 3))
    opt("cut_after_unknown", ["--cut-after", "no_such_layer"], (2,), "no_such_layer")
    opt("cut_after_out_of_range", ["--cut-after", "4"], (2,))
    opt("cut_after_last", ["--cut-after", "3"], (0, 2))
    opt("pin_beyond_cards", ["--cards", "2", "--pin", "mm1=5"], (2, 3), "card")
    opt("pin_huge_card", ["--pin", "mm1=99999999999999999999"], (2,))
    opt("pin_backwards", ["--pin", "mm0=1", "--pin", "mm3=0"], (2, 3))
    opt("dim_negative", ["--dim", "batch=-1"], (2,))
    opt("dim_unknown_name", ["--dim", "nope=3"], (2,), "nope")
    run_case(work, "dim_int64_max", m, args=["--dim", "batch=9223372036854775807"], expect=(1,),
             reason="overflow", oracle=False)


def plan_cases(work):
    """A good plan.json, then damaged copies given back through --plan."""
    m = small_model(work)
    path = os.path.join(work, "chain.onnx")
    base = ["--dim", "batch=2", "--layers", "node"]
    good_dir = os.path.join(work, "good")
    r = subprocess.run([LPCC, path, "-o", good_dir, "--capacity", "40KiB"] + base,
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("plan_good", f"exit {r.returncode}: {r.stderr}")
        return
    with open(os.path.join(good_dir, "plan.json")) as f:
        good = json.load(f)
    if len(good["cards"]) < 2:
        fail("plan_good", "expected a plan over several cards")
        return

    def plan(case, mutate, expect=(1, 2, 3), text=None):
        p = json.loads(json.dumps(good))
        if mutate:
            mutate(p)
        ppath = os.path.join(work, f"{case}.json")
        with open(ppath, "w") as f:
            f.write(text if text is not None else json.dumps(p))
        run_case(work, case, m, args=base + ["--plan", ppath], expect=expect, oracle=False)

    def setc(key, value, card=0):
        return lambda p: p["cards"][card].__setitem__(key, value)

    plan("plan_roundtrip", None, expect=(0,))
    plan("plan_not_json", None, text="{\"cards\": [")
    plan("plan_empty_object", None, text="{}")
    plan("plan_array", None, text="[1, 2, 3]")
    plan("plan_missing_cards", lambda p: p.pop("cards"))
    plan("plan_missing_capacities", lambda p: p.pop("capacities"))
    plan("plan_cards_not_array", lambda p: p.__setitem__("cards", "many"))
    plan("plan_negative_card", setc("card", -1), expect=(0, 1, 2))
    plan("plan_last_layer_negative", setc("last_layer", -1))
    plan("plan_last_layer_huge", setc("last_layer", I64_MAX))
    plan("plan_last_layer_beyond", setc("last_layer", 99))
    plan("plan_last_layer_string", setc("last_layer", "2"))
    plan("plan_last_layer_float", setc("last_layer", 1.5))
    plan("plan_last_layer_missing", lambda p: p["cards"][0].pop("last_layer"))
    plan("plan_ranges_backwards", lambda p: p["cards"].reverse())
    plan("plan_cards_duplicated", lambda p: p["cards"].append(p["cards"][0]))
    plan("plan_capacity_negative", lambda p: p.__setitem__("capacities", [-1]))
    plan("plan_capacity_zero", lambda p: p.__setitem__("capacities", [0]))
    plan("plan_capacity_huge", lambda p: p.__setitem__("capacities", [I64_MAX]), expect=(0,))
    plan("plan_capacity_tiny", lambda p: p.__setitem__("capacities", [1]), expect=(3,))
    plan("plan_cards_requested_negative", lambda p: p.__setitem__("cards_requested", -5))
    plan("plan_cards_requested_huge", lambda p: p.__setitem__("cards_requested", I64_MAX))
    plan("plan_cards_requested_wrapping", lambda p: p.__setitem__("cards_requested", 1 << 32),
         expect=(1, 2, 3))
    plan("plan_n_shards_huge", setc("n_shards", I64_MAX))
    plan("plan_shard_negative", lambda p: (p["cards"][0].__setitem__("n_shards", 2),
                                           p["cards"][0].__setitem__("shard", -1)))
    plan("plan_algorithm_unknown", lambda p: p.__setitem__("algorithm", "magic"))
    plan("plan_target_wrong_types", lambda p: p.__setitem__("target", {"capacity": "lots"}))
    plan("plan_target_negative", lambda p: p["target"].__setitem__("peak_flops", -1))
    plan("plan_transfer_unknown_value", lambda p: p.setdefault("transfers", []).append(
        {"value": "no_such_value", "from_card": 0, "to_card": 1, "bytes": 4, "kind": "cut"}),
        expect=(0, 1, 2))
    plan("plan_layer_name_other_model", setc("last_layer_name", "someone_else"))


def output_cases(work):
    """Failures while writing: nothing printed, nothing left in DIR."""
    small_model(work)
    path = os.path.join(work, "chain.onnx")
    args = ["--dim", "batch=2", "--layers", "node", "--capacity", "40KiB"]
    out = os.path.join(work, "out_blocked")
    os.makedirs(os.path.join(out, "card_1.onnx"))  # a folder where a card model goes
    r = subprocess.run([LPCC, path, "-o", out] + args, capture_output=True, text=True)
    if r.returncode != 4 or "card_1.onnx" not in r.stderr:
        fail("card_path_blocked", f"exit {r.returncode}, expected 4 naming card_1.onnx: {r.stderr}")
    if r.stdout.strip():
        fail("card_path_blocked", f"stdout after an error:\n{r.stdout[:300]}")
    if sorted(os.listdir(out)) != ["card_1.onnx"]:
        fail("card_path_blocked", f"-o folder keeps {sorted(os.listdir(out))}")
    out = os.path.join(work, "out_full")
    with open("/dev/full", "w") as full:
        r = subprocess.run([LPCC, path, "-o", out] + args, stdout=full, stderr=subprocess.PIPE,
                           text=True)
    if r.returncode != 4 or "stdout" not in r.stderr:
        fail("stdout_full", f"exit {r.returncode}, expected 4 naming stdout: {r.stderr}")
    if os.path.isdir(out) and os.listdir(out):
        fail("stdout_full", f"-o folder keeps {sorted(os.listdir(out))}")


def main():
    with tempfile.TemporaryDirectory(prefix="lpcc_hostile_") as work:
        model_cases(work)
        option_cases(work)
        plan_cases(work)
        output_cases(work)
    if failures:
        print(f"{len(failures)} hostile case(s) failed", file=sys.stderr)
        return 1
    print("hostile: all cases behave")
    return 0


if __name__ == "__main__":
    sys.exit(main())
