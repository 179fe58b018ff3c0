#!/usr/bin/env python3
"""Compile-time evaluation of the shape arithmetic real exporters write.

Each model is built as the exporter writes it, and lpcc's shape of every
value is compared with the shape ONNX Runtime really produces (the model run
with every value added as a graph output) and with onnx.shape_inference
(data_prop=True) where that knows a full shape:

1. PyTorch's F.pad at opset 17: the pads are built from constants through
   ConstantOfShape -> Concat -> Reshape[-1, 2] -> Slice(step -1) ->
   Transpose -> Reshape -> Cast; plus a model that folds Slice (several
   axes, negative steps), Transpose, Concat, Gather, Tile, Split, Expand,
   Where, Squeeze/Unsqueeze on 2-D and 3-D integer tensors and feeds every
   result into ConstantOfShape, so each element reaches a shape.
2. A YOLO-style anchor grid: Range(0.0, float(W), 1.0) from Shape -> Gather
   -> Cast(float), with Div / Mul / Floor / Ceil / Cast back to int64 on the
   way to a Reshape target; with W bound and with W symbolic.
3. A batch specialised to 1 by the exporter (value_info and Reshape targets
   say 1 where the input says `batch`): --dim batch=4 gives exactly one
   error line naming the dim and the first node, exit 1; batch=1 works.

Environment: LPCC (the built lpcc).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shape_oracle_test as oracle  # noqa: E402

LPCC = os.environ.get("LPCC", oracle.LPCC)
oracle.LPCC = LPCC
INT64_MIN = -(2**63)

failures = []


def fail(case, msg):
    failures.append("%s: %s" % (case, msg))
    print("FAIL %s: %s" % (case, msg), file=sys.stderr)


def make_model(name, nodes, inputs, outputs, inits=(), value_info=(), opset=17):
    g = helper.make_graph(nodes, name, list(inputs), list(outputs), list(inits),
                          value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if all(o.type.tensor_type.HasField("shape") for o in m.graph.output):
        onnx.checker.check_model(m)
    return m


def const(name, values, dtype=np.int64):
    return helper.make_node("Constant", [], [name], name=name,
                            value=numpy_helper.from_array(np.array(values, dtype=dtype), name + "_t"))


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, name=outs[0] + "_node", **attrs)


def ort_shapes(model, feed):
    """The shape of every node output, as ONNX Runtime computes it."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
                have.add(o)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feed)
    return {o.name: list(a.shape) for o, a in zip(sess.get_outputs(), outs)}


def lpcc_dump(model, dims, strip=True):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        onnx.save(oracle.strip_declared(model) if strip else model, path)
        return oracle.run_lpcc(path, dims)


def check_shapes(case, model, dims, feed):
    """Every value's shape from lpcc (declarations stripped) equals ONNX
    Runtime's, and onnx's wherever onnx knows a full shape."""
    dump, err = lpcc_dump(model, dims)
    if dump is None:
        fail(case, "lpcc failed: %s" % err)
        return None
    got = oracle.lpcc_values(dump)
    real = ort_shapes(model, feed)
    for name, shape in real.items():
        if name not in got:
            fail(case, "value '%s' missing from lpcc's dump" % name)
        elif got[name][1] != shape:
            fail(case, "value '%s': lpcc %s, onnxruntime %s" % (name, got[name][1], shape))
    bound = oracle.bind_inputs(oracle.strip_declared(model), dims)
    inferred = shape_inference.infer_shapes(bound, data_prop=True)
    compared = 0
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        want = oracle.full_shape(vi)
        if want is None:
            continue
        compared += 1
        if tuple(got.get(vi.name, (None, None))) != want:
            fail(case, "value '%s': lpcc %s, onnx %s" % (vi.name, got.get(vi.name), want))
    print("%-14s %3d values checked against onnxruntime, %3d against onnx" % (case, len(real), compared))
    return got


# ---- 1. padding arithmetic ------------------------------------------------------

def torch_pad_model():
    """F.pad(x, (1, 2, 3, 4)) on a rank-4 input, as torch.onnx exports it at
    opset 17 (symbolic_opset11._prepare_onnx_paddings, opset10.flip)."""
    nodes = [
        const("pad", [1, 2, 3, 4]),
        const("zero_idx", [0]),
        node("Shape", ["pad"], ["pad_shape"]),
        node("Gather", ["pad_shape", "zero_idx"], ["pad_len"], axis=0),
        const("rank", 4),
        const("two", 2),
        node("Mul", ["rank", "two"], ["rank2"]),
        node("Sub", ["rank2", "pad_len"], ["extension"]),
        node("Cast", ["pad"], ["pad_i64"], to=TensorProto.INT64),
        helper.make_node("ConstantOfShape", ["extension"], ["zeros"], name="zeros_node",
                         value=numpy_helper.from_array(np.array([0], np.int64), "v")),
        node("Concat", ["pad_i64", "zeros"], ["paddings"], axis=0),
        const("shape_m1_2", [-1, 2]),
        node("Reshape", ["paddings", "shape_m1_2"], ["pairs"]),
        const("flip_starts", [-1]),
        const("flip_ends", [-9223372036854775807]),
        const("flip_axes", [0]),
        const("flip_steps", [-1]),
        node("Slice", ["pairs", "flip_starts", "flip_ends", "flip_axes", "flip_steps"], ["flipped"]),
        node("Transpose", ["flipped"], ["pairs_t"], perm=[1, 0]),
        const("shape_m1", [-1]),
        node("Reshape", ["pairs_t", "shape_m1"], ["pads_flat"]),
        node("Cast", ["pads_flat"], ["pads"], to=TensorProto.INT64),
        const("pad_value", 0.0, np.float32),
        node("Pad", ["x", "pads", "pad_value"], ["y"], mode="constant"),
        node("Relu", ["y"], ["out"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 15, 11])
    # the exporter writes value_info for the padded value as well
    vi = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 15, 11])]
    return make_model("torch_pad", nodes, [x], [out], value_info=vi)


def nd_fold_model():
    """Folds of 2-D / 3-D integer tensors, each flattened into a
    ConstantOfShape so that every element becomes a dim."""
    c = [[1, 2, 3], [2, 1, 3]]
    nodes = [const("c", c), const("m1", [-1])]
    outputs = []

    def shape_of(v):
        nodes.append(node("Reshape", [v, "m1"], [v + "_flat"]))
        nodes.append(helper.make_node("ConstantOfShape", [v + "_flat"], [v + "_cos"], name=v + "_cos_node",
                                      value=numpy_helper.from_array(np.array([1.0], np.float32), "v")))
        outputs.append(helper.make_tensor_value_info(v + "_cos", TensorProto.FLOAT, None))

    # Slice on both axes with negative steps and a clamped end
    nodes += [const("s_st", [-1, 2]), const("s_en", [INT64_MIN, -9223372036854775807]),
              const("s_ax", [0, 1]), const("s_sp", [-1, -2]),
              node("Slice", ["c", "s_st", "s_en", "s_ax", "s_sp"], ["sl"])]
    shape_of("sl")
    # Slice with a positive step on axis 1 only (axes given negative)
    nodes += [const("s2_st", [1]), const("s2_en", [100]), const("s2_ax", [-1]),
              node("Slice", ["c", "s2_st", "s2_en", "s2_ax"], ["sl2"])]
    shape_of("sl2")
    # Transpose 2-D and 3-D
    nodes += [node("Transpose", ["c"], ["tr"])]
    shape_of("tr")
    nodes += [const("c3", [[[1, 2], [3, 1]], [[2, 2], [1, 3]]]),
              node("Transpose", ["c3"], ["tr3"], perm=[2, 0, 1])]
    shape_of("tr3")
    # Concat along axis 1 and axis 0
    nodes += [node("Concat", ["c", "sl2"], ["cat1"], axis=1), node("Concat", ["c", "c"], ["cat0"], axis=-2)]
    shape_of("cat1")
    shape_of("cat0")
    # Gather on axis 1 with 2-D indices (one negative), on axis 0 with a scalar
    nodes += [const("gi", [[2, -3]]), node("Gather", ["c", "gi"], ["ga"], axis=1),
              const("gs", 1), node("Gather", ["c", "gs"], ["gb"], axis=0)]
    shape_of("ga")
    shape_of("gb")
    # Tile, Expand, Where, Split, Squeeze / Unsqueeze
    nodes += [const("rep", [2, 1]), node("Tile", ["c", "rep"], ["ti"])]
    shape_of("ti")
    nodes += [const("row", [[3, 1, 2]]), const("eshape", [2, 1, 1]),
              node("Expand", ["row", "eshape"], ["ex"])]
    shape_of("ex")
    nodes += [const("two", 2), node("Equal", ["c", "two"], ["is2"]), const("one", 1),
              node("Where", ["is2", "one", "c"], ["wh"])]
    shape_of("wh")
    nodes += [const("split", [1, 2]), node("Split", ["c", "split"], ["sp0", "sp1"], axis=1)]
    shape_of("sp0")
    shape_of("sp1")
    nodes += [const("ax0", [0]), node("Unsqueeze", ["tr", "ax0"], ["un"]),
              node("Squeeze", ["un", "ax0"], ["sq"])]
    shape_of("sq")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    nodes.append(node("Identity", ["x"], ["xo"]))
    outputs.append(helper.make_tensor_value_info("xo", TensorProto.FLOAT, [2]))
    return make_model("nd_fold", nodes, [x], outputs, opset=17)


# ---- 2. shape values through float -------------------------------------------------

def anchor_grid_model(rounding=True):
    """grid = stack(meshgrid(arange(float(H)), arange(float(W)))), as YOLO
    heads export it, plus sizes computed in float and cast back (with
    rounding: floor(W / 2) + ceil(H / 2) - 1, a sum, so only for bound dims)."""
    nodes = [
        node("Shape", ["x"], ["shp"]),
        const("i2", 2), const("i3", 3),
        node("Gather", ["shp", "i2"], ["h"], axis=0),
        node("Gather", ["shp", "i3"], ["w"], axis=0),
        node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
        node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
        const("f0", 0.0, np.float32), const("f1", 1.0, np.float32), const("f2", 2.0, np.float32),
        node("Range", ["f0", "wf", "f1"], ["gx"]),
        node("Range", ["f0", "hf", "f1"], ["gy"]),
        const("ax1", [1]), const("ax0", [0]), const("axm1", [-1]),
        node("Unsqueeze", ["gy", "ax1"], ["gy2"]),
        node("Unsqueeze", ["gx", "ax0"], ["gx2"]),
        node("Unsqueeze", ["h", "ax0"], ["h1"]),
        node("Unsqueeze", ["w", "ax0"], ["w1"]),
        node("Concat", ["h1", "w1"], ["hw"], axis=0),
        node("Expand", ["gy2", "hw"], ["yy"]),
        node("Expand", ["gx2", "hw"], ["xx"]),
        node("Unsqueeze", ["yy", "axm1"], ["yy3"]),
        node("Unsqueeze", ["xx", "axm1"], ["xx3"]),
        node("Concat", ["xx3", "yy3"], ["grid"], axis=-1),
        # cells = int(float(H) * float(W)); half = floor(float(W) / 2); ceil(H / 2)
        node("Mul", ["hf", "wf"], ["cells_f"]),
        node("Cast", ["cells_f"], ["cells"], to=TensorProto.INT64),
        node("Unsqueeze", ["cells", "ax0"], ["cells1"]),
        const("one2", [1]), const("two1", [2]),
        node("Concat", ["one2", "cells1", "two1"], ["gshape"], axis=0),
        node("Reshape", ["grid", "gshape"], ["anchors"]),
    ]
    outs = ["anchors"]
    if rounding:
        outs += ["steps", "filler"]
        nodes += [
        node("Div", ["wf", "f2"], ["half_f"]),
        node("Floor", ["half_f"], ["half_fl"]),
        node("Div", ["hf", "f2"], ["hh_f"]),
        node("Ceil", ["hh_f"], ["hh_c"]),
        node("Add", ["half_fl", "hh_c"], ["sum_f"]),
        node("Sub", ["sum_f", "f1"], ["less_f"]),
        node("Cast", ["less_f"], ["less"], to=TensorProto.INT64),
        node("Range", ["f0", "less_f", "f1"], ["steps"]),
        node("Unsqueeze", ["less", "ax0"], ["less1"]),
        helper.make_node("ConstantOfShape", ["less1"], ["filler"], name="filler_node"),
        ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "H", "W"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outs]
    return make_model("anchor_grid", nodes, [x], outs)


# ---- 3. batch specialised to 1 --------------------------------------------------------

def specialised_model():
    """torch.export with an example batch of 1: the input says `batch`,
    everything declared inside says 1."""
    nodes = [
        node("Relu", ["x"], ["act"]),
        const("t1", [1, 8, 4, 4]),
        node("Reshape", ["act", "t1"], ["heads"]),
        node("Transpose", ["heads"], ["heads_t"], perm=[0, 2, 1, 3]),
        const("t2", [1, 4, 32]),
        node("Reshape", ["heads_t", "t2"], ["merged"]),
        node("Sigmoid", ["merged"], ["out"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 16])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 32])
    vi = [helper.make_tensor_value_info("act", TensorProto.FLOAT, [1, 8, 16]),
          helper.make_tensor_value_info("heads", TensorProto.FLOAT, [1, 8, 4, 4]),
          helper.make_tensor_value_info("heads_t", TensorProto.FLOAT, [1, 4, 8, 4]),
          helper.make_tensor_value_info("merged", TensorProto.FLOAT, [1, 4, 32])]
    return make_model("specialised", nodes, [x], [out], value_info=vi)


def run_cli(model, args):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        p = subprocess.run([LPCC, path] + args, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stderr.replace(path, "model.onnx")


def test_torch_pad():
    m = torch_pad_model()
    got = check_shapes("torch_pad", m, {"batch": 2}, {"x": np.ones((2, 3, 8, 8), np.float32)})
    if got and got.get("out", (None, None))[1] != [2, 3, 15, 11]:
        fail("torch_pad", "out is %s" % (got.get("out"),))
    # as exported (value_info kept): no error at all
    rc, err = run_cli(m, ["--dim", "batch=2", "--dump-ir=graph", "-q"])
    if rc != 0:
        fail("torch_pad", "the model as exported fails with exit %d: %s" % (rc, err.strip()))


def test_nd_fold():
    m = nd_fold_model()
    check_shapes("nd_fold", m, {}, {"x": np.ones((2,), np.float32)})


def test_anchor_grid():
    m = anchor_grid_model()
    got = check_shapes("anchor_grid", m, {"batch": 1, "H": 4, "W": 6}, {"x": np.ones((1, 3, 4, 6), np.float32)})
    if got:
        want = {"gx": [6], "gy": [4], "anchors": [1, 24, 2], "steps": [4], "filler": [4]}
        for k, v in want.items():
            if got.get(k, (None, None))[1] != v:
                fail("anchor_grid", "%s is %s, want %s" % (k, got.get(k), v))
    # odd sizes: floor(7/2) = 3 and ceil(5/2) = 3 are not exact quotients
    check_shapes("anchor_odd", m, {"batch": 1, "H": 5, "W": 7}, {"x": np.ones((1, 3, 5, 7), np.float32)})
    # W and H left symbolic: the ranges and the product keep the symbols
    dump, err = lpcc_dump(anchor_grid_model(rounding=False), {"batch": 1})
    if dump is None:
        fail("anchor_sym", "lpcc failed: %s" % err)
        return
    got = oracle.lpcc_values(dump)
    for k, v in {"wf": [], "gx": ["W"], "gy": ["H"], "grid": ["H", "W", 2], "anchors": [1, "H*W", 2]}.items():
        if got.get(k, (None, None))[1] != v:
            fail("anchor_sym", "%s is %s, want %s" % (k, got.get(k), v))


def error_lines(err):
    return [ln for ln in err.splitlines() if ": error: " in ln]


def test_specialised_batch():
    m = specialised_model()
    rc, err = run_cli(m, ["--dim", "batch=4"])
    lines = error_lines(err)
    want = ("model.onnx: error: the model fixes the dim 'batch' to 1 (first seen at node 0 'act_node' (Relu)), "
            "so batch=4 cannot hold; re-export with an example batch > 1 or bind batch=1")
    if rc != 1 or lines != [want]:
        fail("specialised", "exit %d, errors %r; want exit 1 and [%r]" % (rc, lines, want))
    # bound to 1 it is a correct model
    got = check_shapes("specialised", m, {"batch": 1}, {"x": np.ones((1, 8, 16), np.float32)})
    rc, err = run_cli(m, ["--dim", "batch=1", "--dump-ir=graph", "-q"])
    if rc != 0:
        fail("specialised", "batch=1 fails with exit %d: %s" % (rc, err.strip()))
    if got and got.get("out", (None, None))[1] != [1, 4, 32]:
        fail("specialised", "out is %s" % (got.get("out"),))
    # a declaration that is wrong for every batch keeps its own message
    bad = specialised_model()
    bad.graph.value_info[2].type.tensor_type.shape.dim[3].dim_value = 5
    rc, err = run_cli(bad, ["--dim", "batch=4"])
    lines = error_lines(err)
    if rc != 1 or not lines or any("fixes the dim" in ln for ln in lines):
        fail("specialised_bad", "exit %d, errors %r" % (rc, lines))


def main():
    if not os.path.exists(LPCC):
        print("lpcc not found at %s" % LPCC)
        return 1
    test_torch_pad()
    test_nd_fold()
    test_anchor_grid()
    test_specialised_batch()
    for f in failures:
        print("FAIL " + f)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
