"""lpcc as a user runs it: exit codes, messages, dumps and the output folder.

Exit codes (cli/lpcc_cli.h): 0 ok, 1 invalid or unsupported model, 2 usage,
3 infeasible plan, 4 cannot write output, 5 internal error. Expected graph
contents come from the onnx package reading the same files.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import onnx
from onnx import TensorProto, helper

LPCC = os.environ.get("LPCC")
SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(SRC, "models")

EXIT_OK, EXIT_MODEL, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 4


def run(*args, stdout=subprocess.PIPE, timeout=60):
    return subprocess.run([LPCC, *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def relu_model():
    """x[batch, 4] -> Relu -> y[batch, 4]"""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    node = helper.make_node("Relu", ["x"], ["y"], name="relu0")
    graph = helper.make_graph([node], "relu", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def if_model():
    """node 1 'cond' is an If with two branches"""
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])

    def branch(name, value):
        out = helper.make_tensor_value_info("o_" + name, TensorProto.FLOAT, [1])
        k = helper.make_node("Constant", [], ["o_" + name],
                             value=helper.make_tensor("k", TensorProto.FLOAT, [1], [value]))
        return helper.make_graph([k], name, [], [out])

    nodes = [helper.make_node("Not", ["c"], ["nc"], name="neg"),
             helper.make_node("If", ["nc"], ["y"], name="cond",
                              then_branch=branch("then", 1.0), else_branch=branch("else", 0.0))]
    graph = helper.make_graph(nodes, "branchy", [c], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def expected_graph(path):
    """What the onnx package sees: nodes (Constant nodes fold into values),
    initializers and graph inputs that are not initializers."""
    m = onnx.load(path, load_external_data=False)
    inits = [t.name for t in m.graph.initializer]
    nodes = [n for n in m.graph.node if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
    inputs = [i.name for i in m.graph.input if i.name not in set(inits)]
    return m, nodes, inits, inputs


class Cli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not LPCC:
            raise unittest.SkipTest("LPCC is not set")
        cls.tmp = tempfile.mkdtemp(prefix="lpcc_cli_")
        cls.relu = os.path.join(cls.tmp, "relu.onnx")
        onnx.save(relu_model(), cls.relu)
        cls.branchy = os.path.join(cls.tmp, "branchy.onnx")
        onnx.save(if_model(), cls.branchy)
        cls.garbage = os.path.join(cls.tmp, "garbage.onnx")
        with open(cls.garbage, "wb") as f:
            f.write(b"\x08" + b"\xff" * 12)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def fresh_dir(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        return d

    def assert_exit(self, proc, code):
        self.assertEqual(proc.returncode, code,
                         f"exit {proc.returncode}, want {code}; stderr: {proc.stderr!r}")

    # ---- help, version, usage -------------------------------------------------

    def test_exit_codes_as_documented(self):
        with open(os.path.join(SRC, "cli", "lpcc_cli.h")) as f:
            doc = dict((k, int(v)) for k, v in re.findall(r"LPCC_EXIT_(\w+)\s*=\s*(\d+)", f.read()))
        self.assertEqual((doc["OK"], doc["MODEL"], doc["USAGE"], doc["OUTPUT"]),
                         (EXIT_OK, EXIT_MODEL, EXIT_USAGE, EXIT_OUTPUT))
        help_text = run("--help").stdout
        for name, code in doc.items():
            self.assertRegex(help_text, rf"\b{code} ", f"exit code {code} ({name}) not in --help")

    def test_help_and_version(self):
        for flag in ("--help", "-h"):
            p = run(flag)
            self.assert_exit(p, EXIT_OK)
            self.assertIn("usage: lpcc", p.stdout)
            self.assertIn("exit codes", p.stdout)
            self.assertEqual(p.stderr, "")
        p = run("--version")
        self.assert_exit(p, EXIT_OK)
        self.assertRegex(p.stdout.strip(), r"^lpcc \d+\.\d+\.\d+$")

    def test_usage_errors(self):
        cases = [
            (["--bogus", self.relu], "unknown option '--bogus'"),
            ([], "no model given"),
            (["--dim", "batch", self.relu], "--dim 'batch'"),
            (["--dim", "=3", self.relu], "--dim '=3'"),
            (["--dim", "batch=-1", self.relu], "--dim 'batch=-1'"),
            (["--dim", "batch=two", self.relu], "--dim 'batch=two'"),
            (["--dim", "batch=99999999999999999999", self.relu], "--dim"),
            (["--shapes", "x", self.relu], "--shapes 'x'"),
            (["--shapes", "x:4xq", self.relu], "--shapes 'x:4xq': 'q' is not a dim"),
            (["--shapes", "x:1x4,y:2xz", self.relu], "--shapes 'x:1x4,y:2xz': 'z' is not a dim"),
            (["--shapes", ":4", self.relu], "--shapes"),
            (["--dump-ir=nonsense", self.relu], "--dump-ir=nonsense"),
            ([self.relu, self.branchy], "one model at a time"),
            ([self.relu, "-o"], "needs a value"),
            # well-formed options that do not fit the model
            (["--dim", "heads=2", self.relu], "'heads'"),
            (["--shapes", "nope:1x4", self.relu], "no input named 'nope'"),
            (["--shapes", "x:1x4x4", self.relu], "rank 2"),
            (["--shapes", "x:1x5", self.relu], "axis 1 is 4 in the model, not 5"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                p = run(*args)
                self.assert_exit(p, EXIT_USAGE)
                self.assertIn("error:", p.stderr)
                self.assertIn(needle, p.stderr)
                self.assertEqual(p.stdout, "")

    def test_repeated_bindings(self):
        """A binding given twice with one value counts once; two values are an error."""
        for args in (["--dim", "batch=3", "--dim", "batch=3"], ["--shapes", "x:3x4", "--shapes", "x:3x4"],
                     ["--shapes", "x:3x4,x:3x4"]):
            with self.subTest(args=args):
                p = run(self.relu, "--dump-ir", "--json", *args)
                self.assert_exit(p, EXIT_OK)
                self.assertEqual({v["name"]: v["shape"] for v in json.loads(p.stdout)["values"]}["y"],
                                 [3, 4])
        for args, needle in [
            (["--dim", "batch=3", "--dim", "batch=4"], "--dim batch is given twice, as 3 and as 4"),
            (["--shapes", "x:3x4", "--shapes", "x:2x4"], "input 'x' twice, as 3x4 and as 2x4"),
            (["--shapes", "x:3x4,x:3"], "input 'x' twice, as 3x4 and as 3"),
        ]:
            with self.subTest(args=args):
                p = run(self.relu, *args)
                self.assert_exit(p, EXIT_USAGE)
                self.assertIn(needle, p.stderr)
                self.assertEqual(p.stdout, "")

    # ---- bad models -----------------------------------------------------------

    def test_model_errors_name_the_file(self):
        missing = os.path.join(self.tmp, "absent.onnx")
        for path, needle in [(missing, "cannot open"), (self.garbage, "not an ONNX model"),
                             (self.tmp, "not a regular file")]:
            with self.subTest(path=path):
                p = run(path)
                self.assert_exit(p, EXIT_MODEL)
                self.assertTrue(p.stderr.startswith(path + ": error: "), p.stderr)
                self.assertIn(needle, p.stderr)
        p = run(self.branchy)
        self.assert_exit(p, EXIT_MODEL)
        self.assertTrue(p.stderr.startswith(self.branchy + ": error: "), p.stderr)
        self.assertIn("node 1 'cond' (If)", p.stderr)

    # ---- dumps ------------------------------------------------------------------

    def dump_json(self, *args):
        p = run(*args, "--dump-ir", "--json")
        self.assert_exit(p, EXIT_OK)
        return json.loads(p.stdout)

    def test_dump_text(self):
        p = run(self.relu, "--dump-ir=graph")
        self.assert_exit(p, EXIT_OK)
        self.assertRegex(p.stdout, r"%x : float\[batch, 4\]")
        self.assertRegex(p.stdout, r"'relu0' Relu \(%x\) -> \(%y\)")
        p = run(self.relu, "--dump-ir", "--dim", "batch=2")
        self.assert_exit(p, EXIT_OK)
        self.assertRegex(p.stdout, r"%x : float\[2, 4\]")
        self.assertRegex(p.stdout, r"%y : float\[2, 4\]")
        self.assertNotIn("batch", p.stdout)

    def test_dump_json_binds_dims(self):
        def shapes(j):
            return {v["name"]: v["shape"] for v in j["values"]}

        j = self.dump_json(self.relu)
        self.assertEqual(shapes(j)["x"], ["batch", 4])
        self.assertEqual(shapes(j)["y"], ["batch", 4])
        self.assertEqual([n["op"] for n in j["nodes"]], ["Relu"])
        self.assertEqual(shapes(self.dump_json(self.relu, "--dim", "batch=2"))["y"], [2, 4])
        self.assertEqual(shapes(self.dump_json(self.relu, "--shapes", "x:3x4"))["y"], [3, 4])

    def test_json_matches_onnx(self):
        """A real export: nodes, weights and inputs as the onnx package reads them."""
        for name in ("bert_tiny.onnx", "cnn_small.onnx", "seed_4x256_ext.onnx"):
            path = os.path.join(MODELS, name)
            if not os.path.exists(path):
                continue
            with self.subTest(model=name):
                m, nodes, inits, inputs = expected_graph(path)
                j = self.dump_json(path)
                self.assertIsInstance(j["nodes"], list)
                self.assertIsInstance(j["values"], list)
                # the same nodes, each at its file position (the file is sorted)
                self.assertEqual(sorted((n["file_index"], n["op"], n["name"]) for n in j["nodes"]),
                                 sorted((i, n.op_type, n.name) for i, n in enumerate(m.graph.node)
                                        if n in nodes))
                self.assertEqual(j["inputs"], inputs)
                self.assertEqual(j["outputs"], [o.name for o in m.graph.output])
                kinds = {v["name"]: v["kind"] for v in j["values"]}
                for t in inits:
                    self.assertEqual(kinds[t], "weight", t)
                byname = {v["name"]: v for v in j["values"]}
                for t in m.graph.initializer:
                    want = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
                    for d in t.dims:
                        want *= d
                    self.assertEqual(byname[t.name]["bytes"], want, t.name)
                    self.assertEqual(byname[t.name]["shape"], list(t.dims), t.name)
                # the plain summary counts the same nodes
                p = run(path)
                self.assert_exit(p, EXIT_OK)
                self.assertRegex(p.stdout, rf"graph\s+{len(nodes)} nodes")

    # ---- the output folder -------------------------------------------------------

    def assert_no_temp_files(self, folder):
        left = [n for n in os.listdir(folder) if n.startswith(".") or n.endswith(".tmp")]
        self.assertEqual(left, [], f"temporary files left in {folder}")

    def test_output_folder(self):
        out = self.fresh_dir("out_ok")
        p = run(self.relu, "-o", out, "--dim", "batch=5")
        self.assert_exit(p, EXIT_OK)
        self.assertIn("graph.json", os.listdir(out))
        self.assert_no_temp_files(out)
        with open(os.path.join(out, "graph.json")) as f:
            written = json.load(f)
        self.assertEqual(written, self.dump_json(self.relu, "--dim", "batch=5"))
        self.assertEqual({v["name"]: v["shape"] for v in written["values"]}["y"], [5, 4])
        # a second run replaces the file, still leaving no temporary one
        p = run(self.relu, "--output", out, "--dim", "batch=6")
        self.assert_exit(p, EXIT_OK)
        self.assert_no_temp_files(out)
        with open(os.path.join(out, "graph.json")) as f:
            self.assertEqual({v["name"]: v["shape"] for v in json.load(f)["values"]}["y"], [6, 4])

    def test_failed_runs_leave_no_files(self):
        out = self.fresh_dir("out_bad_model")
        os.mkdir(out)
        for model in (self.branchy, self.garbage):
            p = run(model, "-o", out)
            self.assert_exit(p, EXIT_MODEL)
            self.assertEqual(os.listdir(out), [])
        p = run(self.relu, "-o", out, "--dim", "heads=3")
        self.assert_exit(p, EXIT_USAGE)
        self.assertEqual(os.listdir(out), [])

        # the output folder is a file: refused, the file untouched
        parent = self.fresh_dir("out_is_file")
        os.mkdir(parent)
        target = os.path.join(parent, "result")
        with open(target, "w") as f:
            f.write("keep")
        p = run(self.relu, "-o", target, "--dim", "batch=1")
        self.assert_exit(p, EXIT_OUTPUT)
        self.assertIn(target, p.stderr)
        self.assertEqual(os.listdir(parent), ["result"])
        with open(target) as f:
            self.assertEqual(f.read(), "keep")

        # stdout cannot be written after graph.json was: the run fails as a whole
        if os.path.exists("/dev/full"):
            out = self.fresh_dir("out_stdout_full")
            with open("/dev/full", "w") as full:
                p = run(self.relu, "-o", out, "--dim", "batch=1", stdout=full)
            self.assert_exit(p, EXIT_OUTPUT)
            self.assertEqual(os.listdir(out) if os.path.isdir(out) else [], [])

    def test_ops_without_kernels_are_listed(self):
        # Round and Mod have shape rules but no kernel family: -o stops before
        # writing anything, listing each such op once with its node count
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
        z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])
        nodes = [helper.make_node("Round", ["x"], ["r"], name="round0"),
                 helper.make_node("Round", ["r"], ["s"], name="round1"),
                 helper.make_node("Mod", ["s", "x"], ["m"], name="mod0", fmod=1),
                 helper.make_node("Relu", ["m"], ["z"], name="relu0")]
        model = os.path.join(self.tmp, "no_kernel.onnx")
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [z]),
                                    opset_imports=[helper.make_opsetid("", 17)]), model)
        out = self.fresh_dir("out_no_kernel")
        p = run(model, "-o", out)
        self.assert_exit(p, EXIT_MODEL)
        self.assertIn("2 ops in the plan have no kernel", p.stderr)
        self.assertIn("Round: 2 nodes (e.g. 'round0')", p.stderr)
        self.assertIn("Mod: 1 node (e.g. 'mod0')", p.stderr)
        self.assertNotIn("Relu", p.stderr)
        self.assertFalse(os.path.exists(out) and os.listdir(out))
        # analysis alone still runs
        self.assert_exit(run(model), EXIT_OK)

    def test_cards_of_an_earlier_plan_are_removed(self):
        out = self.fresh_dir("recards")
        model = os.path.join(MODELS, "gpt2_tiny.onnx")
        args = ["--dim", "batch=1", "--dim", "seq=4", "--algo", "dp", "-o", out, "-q"]
        self.assert_exit(run(model, "--cards", "3", *args), EXIT_OK)
        self.assertEqual(sorted(f for f in os.listdir(out) if f.startswith("card_")),
                         ["card_0.cu", "card_0.onnx", "card_0.weights", "card_1.cu", "card_1.onnx", "card_1.weights",
                          "card_2.cu", "card_2.onnx", "card_2.weights"])
        self.assert_exit(run(model, "--cards", "1", *args), EXIT_OK)
        self.assertEqual(sorted(f for f in os.listdir(out) if f.startswith("card_")),
                         ["card_0.cu", "card_0.onnx", "card_0.weights"])
        with open(os.path.join(out, "plan.json")) as f:
            self.assertEqual(len(json.load(f)["cards"]), 1)
        # a failing run writes nothing: DIR still holds the last complete result
        self.assert_exit(run(model, "--cards", "2", "--capacity", "1B", *args), 3)
        self.assertEqual(sorted(f for f in os.listdir(out) if f.startswith("card_")),
                         ["card_0.cu", "card_0.onnx", "card_0.weights"])
        with open(os.path.join(out, "plan.json")) as f:
            self.assertEqual(len(json.load(f)["cards"]), 1)
        self.assert_no_temp_files(out)

    def test_unwritable_output(self):
        parent = self.fresh_dir("unwritable")
        os.mkdir(parent)
        blocker = os.path.join(parent, "file")
        with open(blocker, "w") as f:
            f.write("x")
        p = run(self.relu, "-o", os.path.join(blocker, "sub"), "--dim", "batch=1")
        self.assert_exit(p, EXIT_OUTPUT)
        self.assertIn("error:", p.stderr)
        if os.geteuid() != 0:  # root writes anywhere
            ro = os.path.join(parent, "ro")
            os.mkdir(ro, 0o500)
            p = run(self.relu, "-o", ro, "--dim", "batch=1")
            self.assert_exit(p, EXIT_OUTPUT)
            self.assertEqual(os.listdir(ro), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
