"""If nodes that fold at compile time, --value, and the report of every
control-flow node that does not fold.

Exporters leave If nodes whose condition depends only on shapes (Shape ->
Gather -> Greater) or on an input that is a configuration constant in
deployment (a sample rate). With the dims bound, or the input fixed with
--value, lpcc picks the branch and inlines it; every value's shape must then
be what ONNX Runtime computes for the original model, and the card models
written from the inlined graph, run in sequence in ONNX Runtime, must give
the original model's outputs.
"""
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

LPCC = os.environ.get("LPCC")
EXIT_OK, EXIT_MODEL, EXIT_USAGE = 0, 1, 2
OPSET = [helper.make_opsetid("", 17)]


def run(*args):
    return subprocess.run([LPCC, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120)


def const(name, arr):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name + "_v"))


def shape_cond(x, axis, op, k, out, pfx):
    """out = Shape(x)[axis] <op> k, as exporters write it."""
    return [helper.make_node("Shape", [x], [pfx + "shape"], name=pfx + "shape"),
            const(pfx + "axis", np.array(axis, np.int64)),
            helper.make_node("Gather", [pfx + "shape", pfx + "axis"], [pfx + "dim"], name=pfx + "gather", axis=0),
            const(pfx + "k", np.array(k, np.int64)),
            helper.make_node(op, [pfx + "dim", pfx + "k"], [out], name=pfx + "cmp")]


def out_info(name, shape=None):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=OPSET, ir_version=8)
    return m


def shape_if_model():
    """x[batch, 6]; If Shape(x)[0] > 2: y = Reshape(x, [-1, 3]) else y = Reshape(x, [-1]);
    z = Relu(y). The branches give y different ranks."""
    then_b = helper.make_graph([const("t_shape", np.array([-1, 3], np.int64)),
                                helper.make_node("Reshape", ["x", "t_shape"], ["t_y"], name="t_reshape")],
                               "then", [], [out_info("t_y")])
    else_b = helper.make_graph([const("e_shape", np.array([-1], np.int64)),
                                helper.make_node("Reshape", ["x", "e_shape"], ["e_y"], name="e_reshape")],
                               "else", [], [out_info("e_y")])
    nodes = shape_cond("x", 0, "Greater", 2, "cond", "c_") + [
        helper.make_node("If", ["cond"], ["y"], name="pick", then_branch=then_b, else_branch=else_b),
        helper.make_node("Relu", ["y"], ["z"], name="relu")]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])], [out_info("z")])


def value_if_model():
    """x[1, 8], sample_rate int64 scalar; If sample_rate > 16000: y = x * 2 (a weight
    of the branch) else y = Reshape(x, [2, 4]) + 1."""
    then_b = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t_y"], name="t_mul")], "then", [],
                               [out_info("t_y")], initializer=[numpy_helper.from_array(np.float32([2.0]), "two")])
    else_b = helper.make_graph([const("e_shape", np.array([2, 4], np.int64)),
                                helper.make_node("Reshape", ["x", "e_shape"], ["e_r"], name="e_reshape"),
                                const("one", np.float32([1.0])),
                                helper.make_node("Add", ["e_r", "one"], ["e_y"], name="e_add")],
                               "else", [], [out_info("e_y")])
    nodes = [const("limit", np.array(16000, np.int64)),
             helper.make_node("Greater", ["sample_rate", "limit"], ["hi"], name="cmp"),
             helper.make_node("If", ["hi"], ["y"], name="rate", then_branch=then_b, else_branch=else_b),
             helper.make_node("Sigmoid", ["y"], ["z"], name="sig")]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                         helper.make_tensor_value_info("sample_rate", TensorProto.INT64, [])], [out_info("z")])


def outer_scope_model():
    """The branches read outer values: a = Relu(x) computed before the If, the
    graph's weight W, x itself; the else branch passes out a weight of its own. Names
    inside the branches repeat names of the main graph ('h'), which inlining
    must keep apart. The If's output is a graph output."""
    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4) / 16, "W")
    then_b = helper.make_graph([helper.make_node("MatMul", ["a", "W"], ["h"], name="t_mm"),
                                helper.make_node("Add", ["h", "x"], ["t_y"], name="t_add")],
                               "then", [], [out_info("t_y")])
    else_b = helper.make_graph([], "else", [], [out_info("e_k")],
                               initializer=[numpy_helper.from_array(np.full((1, 4), 0.5, np.float32), "e_k")])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu")] + shape_cond("x", 0, "Equal", 3, "cond", "c_") + [
        helper.make_node("If", ["cond"], ["y"], name="branchy", then_branch=then_b, else_branch=else_b),
        helper.make_node("Neg", ["y"], ["h"], name="neg")]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                 [out_info("y"), out_info("h")], [w])


def nested_if_model():
    """Outer If on Shape(x)[0] > 2; its then branch computes u = x * 3 and holds
    an inner If on Shape(x)[1] < 5 whose branches read u (a value of the outer
    branch) and x (of the main graph)."""
    inner_then = helper.make_graph([helper.make_node("Add", ["u", "x"], ["it_y"], name="it_add")], "ithen", [],
                                   [out_info("it_y")])
    inner_else = helper.make_graph([helper.make_node("Sub", ["u", "x"], ["ie_y"], name="ie_sub")], "ielse", [],
                                   [out_info("ie_y")])
    then_b = helper.make_graph(
        [const("three", np.float32([3.0])), helper.make_node("Mul", ["x", "three"], ["u"], name="t_mul")] +
        shape_cond("x", 1, "Less", 5, "icond", "ic_") +
        [helper.make_node("If", ["icond"], ["t_y"], name="inner", then_branch=inner_then, else_branch=inner_else)],
        "then", [], [out_info("t_y")])
    else_b = helper.make_graph([helper.make_node("Abs", ["x"], ["e_y"], name="e_abs")], "else", [],
                               [out_info("e_y")])
    nodes = shape_cond("x", 0, "Greater", 2, "cond", "c_") + [
        helper.make_node("If", ["cond"], ["y"], name="outer", then_branch=then_b, else_branch=else_b),
        helper.make_node("Tanh", ["y"], ["z"], name="tanh")]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", "cols"])], [out_info("z")])


def control_flow_model():
    """An If on a run-time input and a Loop: neither can be compiled."""
    then_b = helper.make_graph([helper.make_node("Relu", ["x"], ["t_y"], name="t_relu")], "then", [], [out_info("t_y")])
    else_b = helper.make_graph([helper.make_node("Neg", ["x"], ["e_y"], name="e_neg")], "else", [], [out_info("e_y")])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="b_cond"),
         helper.make_node("Add", ["acc_in", "x"], ["acc_out"], name="b_add")], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2])])
    nodes = [helper.make_node("If", ["flag"], ["y"], name="runtime_if", then_branch=then_b, else_branch=else_b),
             const("trips", np.array(3, np.int64)), const("go", np.array(True)),
             helper.make_node("Loop", ["trips", "go", "y"], ["acc"], name="loop", body=body),
             helper.make_node("Relu", ["acc"], ["z"], name="relu")]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])], [out_info("z")])


def ort_run(path, feeds, names=None):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = names or [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def ort_all_values(m, feeds):
    """ONNX Runtime's value of every main-graph value of m (each exposed as an output)."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    have = {o.name for o in m.graph.output}
    inits = {t.name for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            continue
        for o in n.output:
            if o and o not in have:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
                have.add(o)
    with tempfile.NamedTemporaryFile(suffix=".onnx", delete=False) as f:
        f.write(m.SerializeToString())
    try:
        sess = ort.InferenceSession(f.name, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs() if o.name not in inits]
        return dict(zip(names, sess.run(names, feeds)))
    finally:
        os.unlink(f.name)


def run_chain(out_dir, feeds):
    with open(os.path.join(out_dir, "plan.json")) as f:
        n_cards = len(json.load(f)["cards"])
    values = dict(feeds)
    for k in range(n_cards):
        path = os.path.join(out_dir, f"card_{k}.onnx")
        onnx.checker.check_model(path, full_check=True)
        got = ort_run(path, {i.name: values[i.name]
                             for i in ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()})
        values.update(got)
    return n_cards, values


class FoldIf(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not LPCC:
            raise unittest.SkipTest("LPCC is not set")
        cls.tmp = tempfile.mkdtemp(prefix="lpcc_if_")

    def save(self, m, name):
        path = os.path.join(self.tmp, name + ".onnx")
        onnx.save(m, path)
        return path

    def shapes(self, path, *args):
        p = run(path, "--dump-ir", "--json", *args)
        self.assertEqual(p.returncode, EXIT_OK, p.stderr)
        g = json.loads(p.stdout)
        return g, {v["name"]: v["shape"] for v in g["values"]}

    def check(self, m, name, feeds, args, cards=1, layers="node"):
        """lpcc's shapes of every main-graph value equal ONNX Runtime's; the card
        models reproduce the original model's outputs. Returns lpcc's graph."""
        path = self.save(m, name)
        g, shapes = self.shapes(path, *args)
        self.assertFalse([n for n in g["nodes"] if n["op"] == "If"], "an If is left")
        real = ort_all_values(m, feeds)
        for vname, arr in real.items():
            self.assertIn(vname, shapes, f"{name}: '{vname}' is missing after inlining")
            self.assertEqual(shapes[vname], list(arr.shape), f"{name}: shape of '{vname}'")
        out = os.path.join(self.tmp, name + "_out")
        p = run(path, "-o", out, "--cards", cards, "--layers", layers, *args)
        self.assertEqual(p.returncode, EXIT_OK, p.stderr)
        fixed = {args[i + 1].split("=")[0] for i in range(len(args) - 1) if args[i] == "--value"}
        n_cards, values = run_chain(out, {k: v for k, v in feeds.items() if k not in fixed})
        self.assertEqual(n_cards, cards)
        for o in m.graph.output:
            np.testing.assert_allclose(values[o.name], real[o.name], rtol=1e-6, atol=1e-6, err_msg=f"{name}: {o.name}")
        return g

    def test_shape_condition_both_ways(self):
        m = shape_if_model()
        rng = np.random.default_rng(0)
        for batch, want in ((4, [8, 3]), (2, [12])):
            with self.subTest(batch=batch):
                x = rng.standard_normal((batch, 6)).astype(np.float32)
                g = self.check(m, f"shape_if_{batch}", {"x": x}, ["--dim", f"batch={batch}"])
                self.assertEqual({v["name"]: v["shape"] for v in g["values"]}["z"], want)
                ops = sorted(n["op"] for n in g["nodes"])
                self.assertEqual(ops, ["Gather", "Greater", "Relu", "Reshape", "Shape"])

    def test_value_selects_branch(self):
        m = value_if_model()
        x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
        for rate, want in ((22050, [1, 8]), (8000, [2, 4])):
            with self.subTest(rate=rate):
                feeds = {"x": x, "sample_rate": np.array(rate, np.int64)}
                g = self.check(m, f"value_if_{rate}", feeds, ["--value", f"sample_rate={rate}"])
                self.assertEqual({v["name"]: v["shape"] for v in g["values"]}["z"], want)
                self.assertEqual([i for i in g["inputs"]], ["x"])
        # the same from a TensorProto file
        pb = os.path.join(self.tmp, "rate.pb")
        with open(pb, "wb") as f:
            f.write(numpy_helper.from_array(np.array(8000, np.int64), "sample_rate").SerializeToString())
        _, shapes = self.shapes(self.save(m, "value_if_pb"), "--value", f"sample_rate={pb}")
        self.assertEqual(shapes["z"], [2, 4])

    def test_outer_scope_references(self):
        m = outer_scope_model()
        rng = np.random.default_rng(1)
        for n in (3, 5):
            with self.subTest(n=n):
                x = rng.standard_normal((n, 4)).astype(np.float32)
                g = self.check(m, f"outer_{n}", {"x": x}, ["--dim", f"n={n}"])
                names = [v["name"] for v in g["values"]]
                self.assertEqual(len(names), len(set(names)))
                self.assertIn("h", names)
                if n == 3:
                    self.assertIn("branchy/then_branch/h", names)

    def test_nested_if(self):
        m = nested_if_model()
        rng = np.random.default_rng(2)
        for rows, cols in ((4, 3), (4, 6), (2, 3)):
            with self.subTest(rows=rows, cols=cols):
                x = rng.standard_normal((rows, cols)).astype(np.float32)
                g = self.check(m, f"nested_{rows}x{cols}", {"x": x}, ["--dim", f"rows={rows}", "--dim", f"cols={cols}"])
                ops = {n["op"] for n in g["nodes"]}
                want = {(4, 3): "Add", (4, 6): "Sub", (2, 3): "Abs"}[(rows, cols)]
                self.assertIn(want, ops)

    def test_card_chain_two_cards(self):
        m = outer_scope_model()
        x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
        self.check(m, "outer_cards", {"x": x}, ["--dim", "n=3"], cards=2)
        m = nested_if_model()
        x = np.random.default_rng(4).standard_normal((4, 3)).astype(np.float32)
        self.check(m, "nested_cards", {"x": x}, ["--dim", "rows=4", "--dim", "cols=3"], cards=2)

    def test_many_ifs(self):
        """2000 Ifs in a chain, each selecting by the same shape test: every one
        folds, in time and memory linear-ish in the graph."""
        n = 2000
        nodes = shape_cond("x", 0, "Greater", 2, "cond", "c_")
        prev = "x"
        for i in range(n):
            t = helper.make_graph([helper.make_node("Relu", [prev], [f"t{i}"], name=f"t{i}")], "t", [],
                                  [out_info(f"t{i}")])
            e = helper.make_graph([helper.make_node("Neg", [prev], [f"e{i}"], name=f"e{i}")], "e", [],
                                  [out_info(f"e{i}")])
            nodes.append(helper.make_node("If", ["cond"], [f"y{i}"], name=f"if{i}", then_branch=t, else_branch=e))
            prev = f"y{i}"
        m = model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])], [out_info(prev)])
        g, shapes = self.shapes(self.save(m, "many_ifs"), "--dim", "b=1")
        self.assertEqual(sum(1 for nd in g["nodes"] if nd["op"] == "Neg"), n)
        self.assertEqual(shapes[prev], [1, 4])

    def test_unfoldable_reported_together(self):
        path = self.save(control_flow_model(), "control_flow")
        p = run(path)
        self.assertEqual(p.returncode, EXIT_MODEL, p.stderr)
        lines = p.stderr.splitlines()
        self.assertTrue(any(l.startswith(path + ": error: node 0 'runtime_if' (If): control-flow subgraph "
                                        "(attribute 'then_branch') is not supported yet: its condition 'flag' "
                                        "is known only at run time") for l in lines), p.stderr)
        self.assertTrue(any(l.startswith(path + ": error: node 3 'loop' (Loop): control-flow subgraph "
                                        "(attribute 'body') is not supported yet: Loop is not unrolled")
                            for l in lines), p.stderr)
        self.assertIn("2 control-flow nodes cannot be compiled", p.stderr)
        # a shape If whose dim is left unbound does not fold either, and says why
        p = run(self.save(shape_if_model(), "shape_if_unbound"))
        self.assertEqual(p.returncode, EXIT_MODEL, p.stderr)
        self.assertIn("node 5 'pick' (If): control-flow subgraph (attribute 'then_branch') is not supported "
                      "yet: its condition 'cond' is known only at run time", p.stderr)
        self.assertIn("1 control-flow node cannot be compiled", p.stderr)

    def test_value_errors(self):
        path = self.save(value_if_model(), "value_errors")
        bad_pb = os.path.join(self.tmp, "bad.pb")
        with open(bad_pb, "wb") as f:
            f.write(b"\xff\xff\xff")
        float_pb = os.path.join(self.tmp, "float.pb")
        with open(float_pb, "wb") as f:
            f.write(numpy_helper.from_array(np.array(1.0, np.float32), "r").SerializeToString())
        vec_pb = os.path.join(self.tmp, "vec.pb")
        with open(vec_pb, "wb") as f:
            f.write(numpy_helper.from_array(np.array([1, 2], np.int64), "r").SerializeToString())
        cases = [
            (["--value", "rate=16000"], "--value rate=16000: the model has no input named 'rate'"),
            (["--value", "sample_rate=1,2"], "2 values given, but input 'sample_rate' holds 1 element"),
            (["--value", "sample_rate=16k"], "'16k' is not a int64 value"),
            (["--value", "sample_rate=1.5"], "'1.5' is not a int64 value"),
            (["--value", "x=1,2"], "2 values given, but input 'x' holds 8 elements"),
            (["--value", "sample_rate"], "expected NAME=V[,V...] or NAME=FILE.pb"),
            (["--value", "sample_rate=" + os.path.join(self.tmp, "absent.pb")], "cannot open tensor file"),
            (["--value", "sample_rate=" + bad_pb], "is not an ONNX TensorProto file"),
            (["--value", "sample_rate=" + float_pb], "the input is int64, the value given is float"),
            (["--value", "sample_rate=" + vec_pb], "input 'sample_rate' has rank 0, the shape given has 1"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                p = run(path, *args)
                self.assertEqual(p.returncode, EXIT_USAGE, p.stderr)
                self.assertIn(needle, p.stderr)


if __name__ == "__main__":
    unittest.main()
