#!/usr/bin/env python3
"""The CPU reference path end to end: `lpcc MODEL --dtype fp32 -o DIR` then
`lpcc-run DIR --inputs IN --check REF`, where REF holds ONNX Runtime's
outputs on the same inputs, for the models of models/ on 1 and 2 cards
(relative L2 error <= 1e-5). Also: every card_K.cu compiles with
`nvcc -Werror all-warnings` (skipped with a note when nvcc is absent), and
lpcc-run's errors (missing or corrupt manifest, another manifest version,
corrupt weights, inputs of the wrong shape or dtype, a failed check, usage)
each with its message and exit code."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

SRC = os.environ.get("LPCC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
LPCC = os.environ.get("LPCC", os.path.join(SRC, "build", "cli", "lpcc"))
RUN = os.path.join(os.path.dirname(LPCC), "lpcc-run")
MODELS = os.path.join(SRC, "models")
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)

# model, its dim bindings, the concrete input shapes those give
MODELS_RUN = [
    ("seed_2x256", ["--dim", "batch=1", "--dim", "seq=16"]),
    ("gpt2_tiny", ["--dim", "batch=1", "--dim", "seq=16"]),
    ("bert_tiny", ["--dim", "batch=1", "--dim", "seq=16"]),
    ("cnn_small", ["--dim", "batch=1"]),
    ("mobilenet_small", ["--dim", "batch=1"]),
    ("llama_tiny", ["--dim", "batch=1", "--dim", "seq=16"]),
]


def fp32_model(path):
    """The model with float16 / bfloat16 initializers, constants and graph
    types as float: ONNX Runtime's fp32 reference for --dtype fp32."""
    m = onnx.load(path)
    low = (TensorProto.FLOAT16, TensorProto.BFLOAT16)

    def fix_tensor(t):
        if t.data_type in low:
            a = numpy_helper.to_array(t).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(a, t.name))

    for t in m.graph.initializer:
        fix_tensor(t)
    for n in m.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                fix_tensor(a.t)
            if n.op_type == "Cast" and a.name == "to" and a.i in low:
                a.i = TensorProto.FLOAT
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if vi.type.tensor_type.elem_type in low:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return m


def lpcc(*args):
    return subprocess.run([LPCC, *args], capture_output=True, text=True)


def run(*args):
    return subprocess.run([RUN, *args], capture_output=True, text=True)


def make_inputs(manifest, folder, seed=0):
    """input_N.pb of the manifest's shapes: floats in [-1, 1), token ids in
    [0, 10), masks all ones."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    feeds = {}
    for i, x in enumerate(manifest["inputs"]):
        shape = x["shape"]
        if x["dtype"] in ("float", "float32"):
            a = rng.uniform(-1, 1, size=shape).astype(np.float32)
        elif "mask" in x["name"]:
            a = np.ones(shape, dtype=np.int64)
        else:
            a = rng.integers(0, 10, size=shape).astype(np.int64)
        feeds[x["name"]] = a
        with open(os.path.join(folder, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a, x["name"]).SerializeToString())
    return feeds


def ort_reference(model, feeds, names, folder):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = {i.name for i in s.get_inputs()}
    outs = s.run(names, {k: v for k, v in feeds.items() if k in want})
    os.makedirs(folder, exist_ok=True)
    for i, (n, a) in enumerate(zip(names, outs)):
        with open(os.path.join(folder, f"output_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(a), n).SerializeToString())
    return outs


RESULTS = []


class RunCpu(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="run_cpu_test.")
        cls.dirs = {}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        for r in RESULTS:
            print("%-16s %d card(s)  max relative L2 %.3g" % r)

    def compiled(self, name, args, cards):
        key = (name, cards)
        if key in self.dirs:
            return self.dirs[key]
        out = os.path.join(self.tmp, f"{name}_{cards}")
        r = lpcc(os.path.join(MODELS, f"{name}.onnx"), *args, "--dtype", "fp32", "--cards", str(cards),
                 "-q", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "manifest.json")) as f:
            man = json.load(f)
        self.assertEqual(len(man["cards"]), cards)
        # a plan of several cards moves values between them
        cuts = [t for t in man["transfers"] if t["kind"] == "cut"]
        self.assertEqual(len(cuts) > 0, cards > 1)
        self.dirs[key] = (out, man)
        return out, man

    def check_cuts(self, man, rep, program):
        # a persistent sender writes a cut into the receiver's buffer unless
        # the same bytes also leave the card as another cut or a model output
        cuts = [t for t in man["transfers"] if t["kind"] == "cut"]
        self.assertEqual([(c["value"], c["from"], c["to"]) for c in rep["cuts"]],
                         [(t["value"], t["from"], t["to"]) for t in cuts])
        for t, c in zip(cuts, rep["cuts"]):
            lo, hi = t["src_offset"], t["src_offset"] + t["bytes"]
            leaves = [(u["src_offset"], u["bytes"]) for u in cuts if u is not t and u["from"] == t["from"]]
            leaves += [(p["offset"], o["bytes"]) for o in man["outputs"] for p in o["cards"]
                       if p["card"] == t["from"]]
            twice = any(a < hi and lo < a + n for a, n in leaves)
            if program == "library":
                self.assertEqual((c["direct"], c["why"]), (False, "the sending card runs library kernels"))
            elif twice:
                self.assertEqual((c["direct"], c["why"]),
                                 (False, "the same bytes leave the sending card elsewhere too"))
            else:
                self.assertEqual((c["direct"], c["why"]), (True, ""), t["value"])

    def same_when_copied(self, out, inp, got, n_outputs):
        # the receivers get the same bytes when every cut is copied instead
        copied = got + "_copied"
        r = run(out, "--inputs", inp, "--outputs", copied, "--json", "--program", "persistent", "--copy-cuts")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rep = json.loads(r.stdout)
        self.assertTrue(all(not c["direct"] and c["why"] == "copies were asked for" for c in rep["cuts"]))
        for i in range(n_outputs):
            with open(os.path.join(got, f"output_{i}.pb"), "rb") as a, \
                    open(os.path.join(copied, f"output_{i}.pb"), "rb") as b:
                self.assertEqual(a.read(), b.read())

    def test_models_match_onnxruntime(self):
        for name, args in MODELS_RUN:
            model = fp32_model(os.path.join(MODELS, f"{name}.onnx"))
            for cards in (1, 2, 3):
                with self.subTest(model=name, cards=cards):
                    out, man = self.compiled(name, args, cards)
                    inp = os.path.join(self.tmp, f"{name}_{cards}_in")
                    ref = os.path.join(self.tmp, f"{name}_{cards}_ref")
                    got = os.path.join(self.tmp, f"{name}_{cards}_out")
                    feeds = make_inputs(man, inp)
                    names = [o["name"] for o in man["outputs"]]
                    want = ort_reference(model, feeds, names, ref)
                    # both ways of running a card: a library kernel a node, and
                    # the persistent program (phases, fusions, absorbed copies)
                    for program in ("library", "persistent"):
                        r = run(out, "--inputs", inp, "--outputs", got, "--check", ref, "--json",
                                "--program", program)
                        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                        rep = json.loads(r.stdout)
                        self.assertEqual([c["program"] for c in rep["cards"]], [program] * cards)
                        self.check_cuts(man, rep, program)
                        if program == "persistent" and cards > 1:
                            self.same_when_copied(out, inp, got, len(names))
                        errs = [o["rel_l2"] for o in rep["outputs"]]
                        self.assertEqual(len(errs), len(names))
                        self.assertTrue(all(e <= 1e-5 for e in errs), (program, errs))
                        self.assertEqual(rep["check"], "pass")
                        self.assertEqual([c["allocated_bytes"] for c in rep["cards"]],
                                         [c["total_bytes"] for c in man["cards"]])
                        # the written outputs are the values compared, within the tolerance of ORT's
                        for i, w in enumerate(want):
                            a = numpy_helper.to_array(onnx.load_tensor(os.path.join(got, f"output_{i}.pb")))
                            self.assertEqual(a.shape, np.asarray(w).shape)
                            e = np.linalg.norm(a.astype(np.float64) - w) / max(np.linalg.norm(w), 1e-30)
                            self.assertLessEqual(e, 1e-5)
                        RESULTS.append((f"{name} {program}", cards, max(errs)))
                    if name == "seed_2x256" and cards == 1:
                        # the program these numbers come from fuses bias Adds into
                        # Gemms and carries the shape arithmetic as literals
                        with open(os.path.join(out, "card_0.cu")) as f:
                            prog = f.read()
                        self.assertGreaterEqual(prog.count("run as one Gemm"), 2)
                        self.assertGreaterEqual(prog.count("known when the model was compiled"), 4)

    def test_sharded_plans_match_onnxruntime(self):
        # capacities small enough that a layer is split over several cards by
        # output columns, its slices all-gathered
        for name, args, cap in [("seed_2x256", ["--dim", "batch=1", "--dim", "seq=16"], "700KiB"),
                                ("gpt2_tiny", ["--dim", "batch=1", "--dim", "seq=16"], "700KiB"),
                                ("bert_tiny", ["--dim", "batch=1", "--dim", "seq=16"], "700KiB"),
                                ("llama_tiny", ["--dim", "batch=1", "--dim", "seq=16"], "700KiB")]:
            with self.subTest(model=name, capacity=cap):
                out = os.path.join(self.tmp, f"{name}_sharded")
                r = lpcc(os.path.join(MODELS, f"{name}.onnx"), *args, "--dtype", "fp32", "--capacity", cap,
                         "-q", "-o", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(os.path.join(out, "manifest.json")) as f:
                    man = json.load(f)
                gathers = [t for t in man["transfers"] if t["kind"] == "all_gather"]
                self.assertGreater(len(gathers), 0)
                inp, ref = out + "_in", out + "_ref"
                feeds = make_inputs(man, inp)
                names = [o["name"] for o in man["outputs"]]
                ort_reference(fp32_model(os.path.join(MODELS, f"{name}.onnx")), feeds, names, ref)
                r = run(out, "--inputs", inp, "--check", ref, "--json")
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                errs = [o["rel_l2"] for o in json.loads(r.stdout)["outputs"]]
                self.assertTrue(all(e <= 1e-5 for e in errs), errs)
                RESULTS.append((name + " sharded", len(man["cards"]), max(errs)))
                if NVCC:  # a shard card's program, with its all-gathers
                    r = subprocess.run([NVCC, "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror",
                                        "-I", os.path.join(SRC, "runtime"), "-c", os.path.join(out, "card_1.cu"),
                                        "-o", os.path.join(self.tmp, "shard.o")], capture_output=True, text=True)
                    self.assertEqual(r.returncode, 0, r.stderr)

    def test_shard_card_that_disagrees_stops_the_group(self):
        # one shard card's program edited to gather a different size: its group
        # stops at the all-gather (no hang), exit 1, naming the card and value
        out = os.path.join(self.tmp, "shard_bad")
        r = lpcc(os.path.join(MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim", "seq=16",
                 "--dtype", "fp32", "--capacity", "700KiB", "-q", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        p = os.path.join(out, "card_3.cu")
        with open(p) as f:
            lines = f.read().split("\n")
        k = next(i for i, l in enumerate(lines) if l.strip().startswith("LP_ALL_GATHER("))
        args = lines[k].split(", ")
        args[-2] = str(int(args[-2].rstrip("u")) + 8) + "u"  # whole_bytes
        lines[k] = ", ".join(args)
        with open(p, "w") as f:
            f.write("\n".join(lines))
        r = subprocess.run([RUN, out], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("card 3: all-gather of '/layers.0/attn/q_proj/MatMul_output_0': the card program "
                      "and the manifest disagree", r.stderr)

    def test_shard_card_that_skips_a_gather_does_not_hang(self):
        out = os.path.join(self.tmp, "shard_skip")
        r = lpcc(os.path.join(MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim", "seq=16",
                 "--dtype", "fp32", "--capacity", "700KiB", "-q", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        p = os.path.join(out, "card_13.cu")
        with open(p) as f:
            lines = f.read().split("\n")
        k = max(i for i, l in enumerate(lines) if l.strip().startswith("LP_ALL_GATHER("))
        del lines[k]
        with open(p, "w") as f:
            f.write("\n".join(lines))
        r = subprocess.run([RUN, out], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("cards 11..21: a shard card finished while the others waited at an all-gather",
                      r.stderr)

    def test_names_and_attributes_the_program_must_quote(self):
        # node and value names with comment ends, quotes, backslashes, line breaks and
        # trigraphs; float attributes of every kind; a tensor attribute; a string
        # attribute; literal shape data: the card program compiles and computes them
        from onnx import helper
        odd = 'a*/b"c\\d\n??=e'
        W = numpy_helper.from_array(np.linspace(-1, 1, 32).astype(np.float32).reshape(4, 8), "w" + odd)
        shape = numpy_helper.from_array(np.array([8, 4], np.int64), "shape")
        fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [0.25])
        nodes = [
            helper.make_node("MatMul", ["x", "w" + odd], ["y" + odd], name=odd),
            helper.make_node("LeakyRelu", ["y" + odd], ["l"], name="leaky */", alpha=1e-7),
            helper.make_node("Clip", ["l", "lo", "hi"], ["c"], name="clip"),
            helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
            helper.make_node("Shape", ["r"], ["s"], name="shape_of"),
            helper.make_node("ConstantOfShape", ["s"], ["k"], name="fill", value=fill),
            helper.make_node("Add", ["r", "k"], ["a"], name="add"),
            helper.make_node("Pad", ["a", "pads"], ["z"], name="pad", mode="constant"),
        ]
        lo = numpy_helper.from_array(np.array(-np.inf, np.float32), "lo")
        hi = numpy_helper.from_array(np.array(0.5, np.float32), "hi")
        pads = numpy_helper.from_array(np.array([1, 0, 0, 1], np.int64), "pads")
        g = helper.make_graph(nodes, "odd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                              [W, shape, lo, hi, pads])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        path = os.path.join(self.tmp, "odd.onnx")
        onnx.save(m, path)
        out = os.path.join(self.tmp, "odd")
        r = lpcc(path, "--dtype", "fp32", "-q", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "card_0.cu")) as f:
            src = f.read()
        # the name quoted as a C string, and in comments with no comment end or trigraph
        self.assertIn('{"a*/b\\"c\\\\d\\012\\?\\?=e", "MatMul"', src)
        self.assertIn("/* a*\\/b\"c\\d??? =e (MatMul) */", src)
        self.assertNotIn("leaky */", src.replace('"leaky */"', ""))
        with open(os.path.join(out, "manifest.json")) as f:
            man = json.load(f)
        inp, ref = out + "_in", out + "_ref"
        feeds = make_inputs(man, inp)
        ort_reference(m, feeds, ["z"], ref)
        r = run(out, "--inputs", inp, "--check", ref, "--tolerance", "1e-6")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        if NVCC:
            r = subprocess.run([NVCC, "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror",
                                "-I", os.path.join(SRC, "runtime"), "-c", os.path.join(out, "card_0.cu"),
                                "-o", os.path.join(self.tmp, "odd.o")], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_random_inputs_are_repeatable(self):
        out, man = self.compiled("cnn_small", ["--dim", "batch=1"], 2)
        a, b = os.path.join(self.tmp, "rand_a"), os.path.join(self.tmp, "rand_b")
        self.assertEqual(run(out, "--outputs", a, "--seed", "3").returncode, 0)
        self.assertEqual(run(out, "--outputs", b, "--seed", "3", "--iters", "3").returncode, 0)
        r = run(out, "--check", a, "--seed", "3", "--tolerance", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        x = numpy_helper.to_array(onnx.load_tensor(os.path.join(a, "output_0.pb")))
        y = numpy_helper.to_array(onnx.load_tensor(os.path.join(b, "output_0.pb")))
        self.assertTrue(np.array_equal(x, y))
        self.assertGreater(float(np.abs(x).sum()), 0)
        # another seed, other inputs: the check fails with exit 3
        r = run(out, "--check", a, "--seed", "4")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("differ", r.stderr)

    def test_card_programs_compile_with_nvcc(self):
        if not NVCC:
            print("note: nvcc not found; card_K.cu are not compiled with nvcc")
            return
        for name, args in MODELS_RUN:
            for cards in (1, 2):
                out, man = self.compiled(name, args, cards)
                for c in range(cards):
                    src = os.path.join(out, f"card_{c}.cu")
                    with self.subTest(src=src):
                        r = subprocess.run([NVCC, "-Werror", "all-warnings", "-Xcompiler",
                                            "-Wall,-Wextra,-Werror", "-I", os.path.join(SRC, "runtime"),
                                            "-c", src, "-o", os.path.join(self.tmp, "card.o")],
                                           capture_output=True, text=True)
                        self.assertEqual(r.returncode, 0, r.stderr)

    def copy_of(self, tag):
        out, man = self.compiled("cnn_small", ["--dim", "batch=1"], 2)
        dst = os.path.join(self.tmp, f"bad_{tag}")
        shutil.copytree(out, dst)
        return dst, man

    def test_corrupt_weights(self):
        d, _ = self.copy_of("weights")
        p = os.path.join(d, "card_1.weights")
        with open(p, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0x40]))
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("card_1.weights", r.stderr)
        self.assertIn("checksum mismatch", r.stderr)
        with open(p, "ab") as f:
            f.write(b"x")
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("longer than the manifest says", r.stderr)
        os.remove(p)
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("card_1.weights: cannot open", r.stderr)

    def test_manifest_errors(self):
        d, man = self.copy_of("manifest")
        mp = os.path.join(d, "manifest.json")
        with open(mp) as f:
            text = f.read()
        with open(mp, "w") as f:
            f.write(text[: len(text) // 2])
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("manifest.json", r.stderr)
        self.assertIn("corrupt manifest", r.stderr)
        other = dict(man, version=99)
        with open(mp, "w") as f:
            json.dump(other, f)
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("key 'version'", r.stderr)
        self.assertIn("version 99", r.stderr)
        broken = json.loads(text)
        del broken["cards"][1]["total_bytes"]
        with open(mp, "w") as f:
            json.dump(broken, f)
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("key 'cards[1].total_bytes'", r.stderr)
        broken = json.loads(text)
        broken["cards"][0]["program"] = 5
        with open(mp, "w") as f:
            json.dump(broken, f)
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cards[0].", r.stderr)
        self.assertIn('"program" is not a string', r.stderr)
        os.remove(mp)
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no manifest", r.stderr)
        os.remove(os.path.join(d, "card_0.cu"))
        with open(mp, "w") as f:
            f.write(text)
        r = run(d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("card_0.cu: cannot read the card program", r.stderr)

    def test_cuts_landing_together(self):
        # a manifest whose two cuts arrive in the same bytes of a card: neither
        # is written directly (two senders would race there); the others are
        out, _ = self.compiled("gpt2_tiny", ["--dim", "batch=1", "--dim", "seq=16"], 3)
        d = os.path.join(self.tmp, "bad_landing")
        shutil.copytree(out, d)
        with open(os.path.join(d, "manifest.json")) as f:
            man = json.load(f)
        cuts = [t for t in man["transfers"] if t["kind"] == "cut"]
        into2 = [t for t in cuts if t["to"] == 2]
        self.assertGreaterEqual(len(into2), 2)
        a, b = into2[0], into2[1]
        b["dst_offset"] = a["dst_offset"]
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump(man, f)
        r = run(d, "--program", "persistent", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        why = "another cut arrives in the same bytes of the receiving card"
        for t, c in zip(cuts, rep["cuts"]):
            self.assertEqual(c["value"], t["value"])
            if t is a or t is b:
                self.assertEqual((c["direct"], c["why"]), (False, why))
            else:
                self.assertTrue(c["direct"], c)
        # the untouched folder writes both
        r = run(out, "--program", "persistent", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(all(c["direct"] for c in json.loads(r.stdout)["cuts"]))

    def test_wrong_inputs(self):
        out, man = self.compiled("cnn_small", ["--dim", "batch=1"], 1)
        inp = os.path.join(self.tmp, "wrong_in")
        os.makedirs(inp, exist_ok=True)
        p = os.path.join(inp, "input_0.pb")
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(np.zeros((2, 3, 32, 32), np.float32), "x").SerializeToString())
        r = run(out, "--inputs", inp)
        self.assertEqual(r.returncode, 2)
        self.assertIn("input 'x' has shape [2, 3, 32, 32], the model was compiled for [1, 3, 32, 32]",
                      r.stderr)
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(np.zeros((1, 3, 32, 32), np.int32), "x").SerializeToString())
        r = run(out, "--inputs", inp)
        self.assertEqual(r.returncode, 2)
        self.assertIn("input 'x' is int32, the model takes float", r.stderr)
        os.remove(p)
        r = run(out, "--inputs", inp)
        self.assertEqual(r.returncode, 2)
        self.assertIn("input_0.pb", r.stderr)

    def test_manifest_program(self):
        # persistent: an unsharded card whose group fits the tier's capacity
        src = os.path.join(MODELS, "seed_2x256.onnx")
        dims = ["--dim", "batch=1", "--dim", "seq=16", "--no-build", "-q"]
        for args, want in ((["--cards", "2"], ["persistent", "persistent"]),
                           # the second card holds only the final LayerNorm: no weight to hold in shared memory
                           (["--cards", "2", "--tier", "smem", "--target", "h200"], ["resident", "persistent"]),
                           (["--cards", "2", "--tier", "hbm"], ["library", "library"])):
            out = os.path.join(self.tmp, "program_" + "_".join(a.strip("-") for a in args))
            r = lpcc(src, *dims, *args, "-o", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(out, "manifest.json")) as f:
                self.assertEqual([c["program"] for c in json.load(f)["cards"]], want, args)
            if want[0] == "resident":
                # the CPU has no shared memory to hold weights in: it runs the persistent program
                for prog in ("auto", "resident"):
                    r = run(out, "--json", "--program", prog)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual([c["program"] for c in json.loads(r.stdout)["cards"]], ["persistent"] * 2)
                with open(os.path.join(out, "manifest.json")) as f:
                    man = json.load(f)
                man["cards"][1]["program"] = "fastest"
                with open(os.path.join(out, "manifest.json"), "w") as f:
                    json.dump(man, f)
                r = run(out)
                self.assertEqual(r.returncode, 1)
                self.assertIn("key 'cards[1].program': not \"library\", \"persistent\" or \"resident\"", r.stderr)
        # shared memory of 16 KiB a block: a layer's Gemm weights (36 KiB a block: q, k, v, out and fc1
        # one tile of K 256 each, fc2 one of K 1024) and work (8 KiB) do not fit, so it runs persistent;
        # and no two layers share a card (they fit C, not a block's shared memory)
        target = os.path.join(self.tmp, "small_smem.json")
        with open(os.path.join(SRC, "partition", "targets", "h200.json")) as f:
            t = json.load(f)
        t.update(smem_bytes=132 * 16 * 1024, sms=132)
        with open(target, "w") as f:
            json.dump(t, f)
        out = os.path.join(self.tmp, "program_small_smem")
        r = lpcc(src, *[a for a in dims if a != "-q"], "--tier", "smem", "--target", target, "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "manifest.json")) as f:
            cards = json.load(f)["cards"]
        self.assertTrue(all(c["first_layer"] == c["last_layer"] for c in cards), cards)
        self.assertTrue(all(c["program"] == "persistent" for c in cards), cards)
        self.assertIn("card 1: --tier smem: holding its Gemm weights needs 44.1 KiB of shared memory a block "
                      "(with the work space), more than the 14.0 KiB a block has", r.stderr)
        # with the h200's 225 KiB a block the same layers share cards and run resident
        out = os.path.join(self.tmp, "program_h200_smem")
        r = lpcc(src, *dims, "--tier", "smem", "--target", "h200", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "manifest.json")) as f:
            cards = json.load(f)["cards"]
        self.assertEqual([c["program"] for c in cards], ["resident"] * len(cards))
        self.assertEqual(len(cards), 1)
        out = os.path.join(self.tmp, "program_sharded")
        r = lpcc(src, *dims, "--capacity", "700KiB", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "manifest.json")) as f:
            cards = json.load(f)["cards"]
        self.assertTrue(any(c["n_shards"] > 1 for c in cards))
        for c in cards:
            self.assertEqual(c["program"], "library" if c["n_shards"] > 1 else "persistent", c["card"])

    def test_smem_groups_fit_a_block(self):
        # two seed layers of hidden 768 fit --tier smem's C (28.4 MB of 29.26 MiB) but not a block of
        # shared memory as the resident kernel lays them out (283.1 KiB of 225), so they take a card each;
        # from L2 they share one
        model = os.path.join(self.tmp, "seed_2x768.onnx")
        r = subprocess.run([sys.executable, os.path.join(SRC, "models", "gen_seed.py"), "--layers", "2",
                            "--hidden", "768", "--heads", "12", "--mlp", "3072", "--weights", "external-absent",
                            "--out", model], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        dims = ["--dim", "batch=16", "--dim", "seq=1", "--dtype", "fp16", "--target", "h200", "--no-build", "-q"]
        groups = {}
        for tier in ("smem", "l2"):
            out = os.path.join(self.tmp, f"seed768_{tier}")
            r = lpcc(model, *dims, "--tier", tier, "-o", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(out, "manifest.json")) as f:
                groups[tier] = [(c["first_layer"], c["last_layer"], c["program"]) for c in json.load(f)["cards"]]
        self.assertEqual(groups["smem"], [(0, 0, "resident"), (1, 2, "resident")])
        self.assertEqual(groups["l2"], [(0, 2, "persistent")])
        r = lpcc(model, *dims, "--tier", "smem", "--cards", "1", "-o", os.path.join(self.tmp, "seed768_one"))
        self.assertEqual(r.returncode, 3)
        self.assertIn("a card of two or more layers must also hold their Gemm weights in 225.00 KiB", r.stderr)

    def test_usage(self):
        r = run()
        self.assertEqual(r.returncode, 2)
        self.assertIn("exactly one compiled folder", r.stderr)
        out, _ = self.compiled("cnn_small", ["--dim", "batch=1"], 1)
        r = run(out, "--iters", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--iters", r.stderr)
        r = run(out, "--device", "tpu")
        self.assertEqual(r.returncode, 2)
        r = run(out, "--iters", "2", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["iters"], 2)
        for opt, what in ((["--program", "fast"], "--program 'fast'"),
                          (["--microbatches", "0"], "--microbatches"),
                          (["--microbatches", "2000000"], "--microbatches"),
                          (["--timeout", "-1"], "--timeout")):
            r = run(out, *opt)
            self.assertEqual(r.returncode, 2, opt)
            self.assertIn(what, r.stderr)
        # the manifest's program decides by default; --program overrides it
        r = run(out, "--json", "--program", "library")
        self.assertEqual([c["program"] for c in json.loads(r.stdout)["cards"]], ["library"])
        r = run(out, "--json")
        with open(os.path.join(out, "manifest.json")) as f:
            self.assertEqual([c["program"] for c in json.loads(r.stdout)["cards"]],
                             [c["program"] for c in json.load(f)["cards"]])
        # the GPU's options need the GPU device
        for opt in (["--gpus", "0"], ["--no-graphs"], ["--check-nodes"], ["--profile"]):
            r = run(out, *opt)
            self.assertEqual(r.returncode, 2, opt)
            self.assertIn("need --device cuda", r.stderr)
        # no GPU here (CI): --device cuda is a clear usage error, not a crash
        if not os.path.exists("/dev/nvidia0"):
            r = run(out, "--device", "cuda")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("device cuda", r.stderr)
            self.assertTrue("no CUDA GPU" in r.stderr or "without CUDA" in r.stderr, r.stderr)

    def test_views_read_in_place_only_when_safe(self):
        # a Reshape whose input's bytes the memory plan gives to a later value
        # (big takes a's bytes once a is dead) must copy; reading in place
        # would see big's values. ONNX Runtime is the oracle.
        s88 = numpy_helper.from_array(np.array([8, 8], np.int64), "s88")
        s64 = numpy_helper.from_array(np.array([64], np.int64), "s64")
        nodes = [onnx.helper.make_node("Relu", ["x"], ["a"], name="relu"),
                 onnx.helper.make_node("Reshape", ["a", "s88"], ["v"], name="view"),
                 onnx.helper.make_node("Neg", ["x"], ["big"], name="neg"),
                 onnx.helper.make_node("Reshape", ["v", "s64"], ["w"], name="back"),
                 onnx.helper.make_node("Add", ["w", "big"], ["y"], name="add")]
        g = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                                   [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])], [s88, s64])
        model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
        path = os.path.join(self.tmp, "view_reuse.onnx")
        onnx.save(model, path)
        out = os.path.join(self.tmp, "view_reuse")
        r = lpcc(path, "-q", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "plan.json")) as f:
            slots = {s["value"]: s for s in json.load(f)["cards"][0]["memory"]["slots"]}
        self.assertEqual(slots["big"]["offset"], slots["a"]["offset"])  # the hazard is there
        with open(os.path.join(out, "card_0.cu")) as f:
            prog = f.read()
        self.assertNotIn("a view: its output is its input's bytes", prog)
        with open(os.path.join(out, "manifest.json")) as f:
            man = json.load(f)
        inp, ref = out + "_in", out + "_ref"
        feeds = make_inputs(man, inp)
        ort_reference(model, feeds, ["y"], ref)
        r = run(out, "--inputs", inp, "--check", ref)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # where it is safe, views do read in place (and the models above still match ONNX Runtime)
        out2, _ = self.compiled("gpt2_tiny", ["--dim", "batch=1", "--dim", "seq=16"], 1)
        with open(os.path.join(out2, "card_0.cu")) as f:
            self.assertGreater(f.read().count("a view: its output is its input's bytes"), 5)

    @unittest.skipUnless(NVCC, "nvcc not found")
    def test_lpcc_builds_the_cards(self):
        # by default -o builds card_K.so with nvcc; lpcc-run then needs no compiler
        env = {k: v for k, v in os.environ.items() if k != "LPCC_NO_BUILD"}
        env["PATH"] = os.path.dirname(NVCC) + os.pathsep + env.get("PATH", "")
        out = os.path.join(self.tmp, "built")
        r = subprocess.run([LPCC, os.path.join(MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim",
                            "seq=16", "--cards", "2", "-q", "-o", out], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        names = sorted(os.listdir(out))
        self.assertIn("card_0.so", names)
        self.assertIn("card_1.so", names)
        self.assertIn("Makefile", names)
        no_cxx = dict(env, CXX="false")
        r = subprocess.run([RUN, out, "--json"], capture_output=True, text=True, env=no_cxx)
        self.assertEqual(r.returncode, 0, r.stderr)
        # --no-build: sources and the Makefile only; the earlier run's objects go
        r = subprocess.run([LPCC, os.path.join(MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim",
                            "seq=16", "--cards", "2", "-q", "--no-build", "-o", out],
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse([n for n in os.listdir(out) if n.endswith(".so")])
        r = subprocess.run([RUN, out], capture_output=True, text=True, env=no_cxx)
        self.assertNotEqual(r.returncode, 0)  # it would need the host compiler
        if shutil.which("make"):
            r = subprocess.run(["make", "-C", out, f"NVCC={NVCC}"], capture_output=True, text=True, env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = subprocess.run([RUN, out], capture_output=True, text=True, env=no_cxx)
            self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
