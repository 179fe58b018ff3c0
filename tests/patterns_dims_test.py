#!/usr/bin/env python3
"""Dims that exporters write without a name: dim_value -1 (Paddle2ONNX) and
the literal dim_param "?". ONNX Runtime reads each as an unknown of its own
on its axis; so must lpcc:

  - unbound, lpcc names every such input axis, how the model writes it, and
    the --shapes option that fixes it (exit 1);
  - bound with --shapes (two "?" axes of one input may take two sizes), every
    value's dtype and shape equals what ONNX Runtime computes with inputs of
    those shapes (every node output made a graph output), and -1 or "?" in
    value_info and graph outputs is an unknown, never a conflict;
  - --dim cannot bind "?" or -1 (exit 2, pointing to --shapes);
  - with -o and --cards 2 the card models run as a chain in ONNX Runtime and
    give the whole model's outputs.

Environment: LPCC (the built lpcc), LPCC_SOURCE_DIR, LPCC_BINARY_DIR.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shape_oracle_test as oracle  # noqa: E402
import submodel_test as sub  # noqa: E402

LPCC = oracle.LPCC
EXIT_MODEL, EXIT_USAGE = 1, 2
OPSET = [helper.make_opsetid("", 17)]


def paddle_model():
    """Paddle2ONNX style: -1 on the batch axis of two inputs and in the
    declared shapes inside; Conv -> Relu -> Reshape[0, -1] -> MatMul -> Add."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
        numpy_helper.from_array(rng.standard_normal((4 * 6 * 6, 5)).astype(np.float32), "fc_w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["conv_out"], name="conv2d_0"),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu_0"),
        helper.make_node("Reshape", ["relu_out", "flat"], ["flat_out"], name="reshape_0"),
        helper.make_node("MatMul", ["flat_out", "fc_w"], ["fc_out"], name="matmul_0"),
        helper.make_node("Add", ["fc_out", "skip"], ["y"], name="add_0"),
    ]
    g = helper.make_graph(
        nodes, "paddle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 8, 8]),
         helper.make_tensor_value_info("skip", TensorProto.FLOAT, [-1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 5])], inits,
        value_info=[helper.make_tensor_value_info("conv_out", TensorProto.FLOAT, [-1, 4, 6, "?"]),
                    helper.make_tensor_value_info("flat_out", TensorProto.FLOAT, [-1, -1])])
    m = helper.make_model(g, opset_imports=OPSET, producer_name="PaddlePaddle", ir_version=9)
    onnx.checker.check_model(m)
    return m


def qmark_model():
    """"?" on two axes of one input and on two other inputs: MatMul then a
    broadcasting Add, with "?" in value_info and the graph output."""
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["ab"], name="matmul"),
        helper.make_node("Add", ["ab", "c"], ["out"], name="add"),
        helper.make_node("Transpose", ["out"], ["out_t"], name="transpose", perm=[2, 0, 1]),
    ]
    g = helper.make_graph(
        nodes, "qmark",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, "?", "?"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["?", 4]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, ["?", 1, 4])],
        [helper.make_tensor_value_info("out_t", TensorProto.FLOAT, ["?", "?", "?"])],
        value_info=[helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["?", "?", 4])])
    m = helper.make_model(g, opset_imports=OPSET, ir_version=9)
    onnx.checker.check_model(m, full_check=True)
    return m


# the shapes the tests bind: every "?" / -1 a size of its own
PADDLE_SHAPES = {"x": [2, 3, 8, 8], "skip": [1, 5]}
QMARK_SHAPES = {"a": [2, 3, 5], "b": [5, 4], "c": [2, 1, 4]}


def shapes_arg(shapes):
    return ",".join("%s:%s" % (k, "x".join(map(str, v))) for k, v in shapes.items())


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True, timeout=60)


def feeds_for(shapes):
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}


def ort_shapes(model, feeds, work):
    """Every node output's (dtype name, shape) as ONNX Runtime computes it."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        m.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in n.output
                              if o and o not in have)
    path = os.path.join(work, "all_outputs.onnx")
    onnx.save(m, path)
    s = sub.session(path)
    names = [o.name for o in s.get_outputs()]
    arrays = s.run(names, feeds)
    return {n: (oracle.DTYPE_NAMES[helper.np_dtype_to_tensor_dtype(a.dtype)], list(a.shape))
            for n, a in zip(names, arrays)}


class WrittenUnknownDims(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="dims_")
        self.paddle = os.path.join(self.work, "paddle.onnx")
        self.qmark = os.path.join(self.work, "qmark.onnx")
        onnx.save(paddle_model(), self.paddle)
        onnx.save(qmark_model(), self.qmark)

    def assert_exit(self, p, code):
        self.assertEqual(p.returncode, code, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr))

    def test_unbound_names_input_and_axis(self):
        p = lpcc(self.paddle, "-q")
        self.assert_exit(p, EXIT_MODEL)
        self.assertIn("input 'x' axis 0 (written -1) has no size; give the input's shape with "
                      "--shapes x:Ax3x8x8", p.stderr)
        self.assertIn("input 'skip' axis 0 (written -1) has no size; give the input's shape "
                      "with --shapes skip:Ax5", p.stderr)
        p = lpcc(self.qmark, "-q")
        self.assert_exit(p, EXIT_MODEL)
        self.assertIn("input 'a' axes 1 (written '?') and 2 (written '?') have no size; give the "
                      "input's shape with --shapes a:2xAxB", p.stderr)
        self.assertIn("input 'b' axis 0 (written '?') has no size", p.stderr)
        self.assertIn("input 'c' axis 0 (written '?') has no size", p.stderr)
        # one input bound, the other still named
        p = lpcc(self.paddle, "-q", "--shapes", "x:2x3x8x8")
        self.assert_exit(p, EXIT_MODEL)
        self.assertIn("input 'skip' axis 0 (written -1)", p.stderr)
        self.assertNotIn("input 'x'", p.stderr)

    def check_bound(self, path, model, shapes):
        p = lpcc(path, "--dump-ir=graph", "--json", "-q", "--shapes", shapes_arg(shapes))
        self.assert_exit(p, 0)
        got = oracle.lpcc_values(json.loads(p.stdout))
        want = ort_shapes(model, feeds_for(shapes), self.work)
        made = [o for n in model.graph.node for o in n.output]
        self.assertEqual(sorted(want), sorted(made))
        for name, (dtype, shape) in want.items():
            self.assertEqual(tuple(got.get(name, (None, None))), (dtype, shape), name)
        for name, shape in shapes.items():
            self.assertEqual(got[name], ("float", shape), name)

    def test_bound_paddle_matches_onnxruntime(self):
        self.check_bound(self.paddle, paddle_model(), PADDLE_SHAPES)

    def test_bound_qmark_matches_onnxruntime(self):
        # a's two "?" axes take two sizes: they are not one dim
        self.check_bound(self.qmark, qmark_model(), QMARK_SHAPES)

    def test_dim_cannot_bind_unnamed(self):
        p = lpcc(self.qmark, "-q", "--dim", "?=3")
        self.assert_exit(p, EXIT_USAGE)
        self.assertIn("--dim ?=3: '?' is not a dim name", p.stderr)
        self.assertIn("--shapes INPUT:AxBx.. (unknown: input 'a' axes 1, 2; input 'b' axis 0; "
                      "input 'c' axis 0)", p.stderr)
        p = lpcc(self.paddle, "-q", "--dim", "-1=2")
        self.assert_exit(p, EXIT_USAGE)
        self.assertIn("'-1' is not a dim name", p.stderr)
        self.assertIn("(unknown: input 'x' axis 0; input 'skip' axis 0)", p.stderr)

    def check_cards(self, path, model, shapes):
        out = os.path.join(self.work, os.path.basename(path) + ".out")
        p = lpcc(path, "-q", "--shapes", shapes_arg(shapes), "--cards", "2", "--layers", "node", "-o", out)
        self.assert_exit(p, 0)
        with open(os.path.join(out, "cards.json")) as f:
            steps = json.load(f)["steps"]
        self.assertEqual([s["card"] for s in steps], [0, 1])
        cards = [os.path.join(out, s["file"]) for s in steps]
        self.assertEqual(sub.check_cards(model, cards), [])
        feeds = feeds_for(shapes)
        want = sub.run(path, feeds)
        env = sub.run_chain(cards, feeds)
        for name, ref in want.items():
            self.assertIsNone(sub.compare(name, ref, env.get(name)))

    def test_cards_chain_paddle(self):
        self.check_cards(self.paddle, paddle_model(), PADDLE_SHAPES)

    def test_cards_chain_qmark(self):
        self.check_cards(self.qmark, qmark_model(), QMARK_SHAPES)


if __name__ == "__main__":
    if not os.path.exists(LPCC):
        print("lpcc not found at %s" % LPCC)
        sys.exit(1)
    unittest.main(verbosity=2)
