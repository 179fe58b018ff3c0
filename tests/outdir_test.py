"""The -o folder is a transaction: a run leaves either its own complete set of
files or the earlier run's, byte for byte; two runs on one folder take turns;
inputs inside the folder are never replaced; files are created only in a
private staging folder, so links planted at temporary names are not followed.
"""
import fcntl
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LPCC = os.environ.get("LPCC")
EXIT_OK, EXIT_MODEL, EXIT_USAGE, EXIT_INFEASIBLE, EXIT_OUTPUT = 0, 1, 2, 3, 4
# four 16 KiB weights, one layer each: 40 KiB cards hold two layers
MANY = ["--dim", "batch=2", "--layers", "node", "--capacity", "40KiB"]
ONE = ["--dim", "batch=2", "--layers", "node", "--capacity", "1MiB"]


def run(*args, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([LPCC, *args], stderr=subprocess.PIPE, text=True, timeout=120, **kw)


def chain_model(folder, name="chain.onnx", weights="weights.bin"):
    """x[batch, 64] -> 4 MatMuls with 64x64 weights stored in one external file."""
    nodes, inits, prev = [], [], "x"
    for i in range(4):
        inits.append(numpy_helper.from_array(np.full((64, 64), i + 1, np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        prev = f"h{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", 64])
    m = helper.make_model(helper.make_graph(nodes, "chain", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", 18)])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=weights, size_threshold=0)
    return path


def snapshot(folder):
    """Every entry of a folder: file bytes, link targets, or 'dir'."""
    out = {}
    for name in os.listdir(folder):
        p = os.path.join(folder, name)
        if os.path.islink(p):
            out[name] = ("link", os.readlink(p))
        elif os.path.isdir(p):
            out[name] = ("dir",)
        else:
            with open(p, "rb") as f:
                out[name] = ("file", f.read())
    return out


def card_files(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("card_"))


class OutDir(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not LPCC:
            raise unittest.SkipTest("LPCC is not set")
        cls.tmp = tempfile.mkdtemp(prefix="lpcc_outdir_")
        cls.model = chain_model(os.path.join(cls.tmp, "model"))
        cls.garbage = os.path.join(cls.tmp, "garbage.onnx")
        with open(cls.garbage, "wb") as f:
            f.write(b"\x08" + b"\xff" * 12)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def fresh(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        return d

    def assert_exit(self, p, code):
        self.assertEqual(p.returncode, code, f"exit {p.returncode}, want {code}: {p.stderr!r}")

    def good_run(self, out, args=MANY):
        p = run(self.model, "-o", out, "-q", *args)
        self.assert_exit(p, EXIT_OK)
        return snapshot(out)

    def assert_coherent(self, out):
        """plan.json parses, and the card files are exactly those cards.json runs."""
        with open(os.path.join(out, "plan.json")) as f:
            plan = json.load(f)
        with open(os.path.join(out, "cards.json")) as f:
            cards = json.load(f)
        self.assertEqual(len(plan["cards"]), cards["cards"])
        models = sorted(n for n in os.listdir(out) if n.startswith("card") and n.endswith(".onnx"))
        self.assertEqual(models, sorted(s["file"] for s in cards["steps"]))
        self.assertEqual([n for n in os.listdir(out) if n.startswith(".")], [])

    # ---- a failed run leaves the earlier one as it was ----------------------------

    def test_failed_runs_keep_the_earlier_files(self):
        out = self.fresh("keep")
        before = self.good_run(out)
        self.assertEqual(card_files(out), ["card_0.cu", "card_0.onnx", "card_0.onnx.data", "card_0.weights",
                                           "card_1.cu", "card_1.onnx", "card_1.onnx.data", "card_1.weights"])

        def fsize_limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

        with open("/dev/full", "w") as full:
            cases = [
                ("stdout full", dict(stdout=full), [self.model, *ONE], EXIT_OUTPUT, "stdout"),
                ("disk full", dict(preexec_fn=fsize_limit), [self.model, *ONE], EXIT_OUTPUT,
                 "cannot write"),
                ("infeasible", {}, [self.model, "--dim", "batch=2", "--capacity", "1B"],
                 EXIT_INFEASIBLE, None),
                ("bad model", {}, [self.garbage], EXIT_MODEL, None),
                ("usage", {}, [self.model, "--dim", "batch=2", "--dim", "batch=3"], EXIT_USAGE,
                 "batch"),
            ]
            for what, kw, args, code, msg in cases:
                with self.subTest(what):
                    p = run(*args, "-o", out, **kw)
                    self.assert_exit(p, code)
                    if msg:
                        self.assertIn(msg, p.stderr)
                    self.assertEqual(snapshot(out), before)

    def test_stale_cards_removed_on_success_kept_on_failure(self):
        out = self.fresh("stale")
        self.good_run(out, MANY)
        self.assertEqual(len(card_files(out)), 8)  # program, model, sidecar and weights of 2 cards
        # a one-card plan that fails (stdout full) keeps the two-card set
        two = snapshot(out)
        with open("/dev/full", "w") as full:
            self.assert_exit(run(self.model, "-o", out, *ONE, stdout=full), EXIT_OUTPUT)
        self.assertEqual(snapshot(out), two)
        # and one that succeeds removes card_1 and both sidecars of the old set
        one = self.good_run(out, ONE)
        self.assertEqual(card_files(out), ["card_0.cu", "card_0.onnx", "card_0.onnx.data", "card_0.weights"])
        self.assert_coherent(out)
        # a two-card plan that fails leaves the one card
        with open("/dev/full", "w") as full:
            self.assert_exit(run(self.model, "-o", out, *MANY, stdout=full), EXIT_OUTPUT)
        self.assertEqual(snapshot(out), one)

    def test_user_files_stay(self):
        """Files lpcc does not write are never touched, nor a folder in its way."""
        out = self.fresh("user")
        os.makedirs(os.path.join(out, "notes"))
        with open(os.path.join(out, "README"), "w") as f:
            f.write("mine")
        with open(os.path.join(out, "card_x.onnx"), "w") as f:
            f.write("not a card name")
        self.good_run(out, MANY)
        self.good_run(out, ONE)
        with open(os.path.join(out, "README")) as f:
            self.assertEqual(f.read(), "mine")
        self.assertTrue(os.path.isdir(os.path.join(out, "notes")))
        self.assertTrue(os.path.exists(os.path.join(out, "card_x.onnx")))

    # ---- two runs on one folder -------------------------------------------------------

    def test_concurrent_runs_leave_one_coherent_set(self):
        refs = []
        for i, args in enumerate((MANY, ONE)):
            ref = self.fresh(f"ref{i}")
            refs.append(self.good_run(ref, args))
        # graph.json names the model path only: the folders compare byte for byte
        out = self.fresh("race")
        for i in range(12):
            first, second = (MANY, ONE) if i % 2 else (ONE, MANY)
            a = subprocess.Popen([LPCC, self.model, "-o", out, "-q", *first],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            b = subprocess.Popen([LPCC, self.model, "-o", out, "-q", *second],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.assertEqual((a.wait(60), b.wait(60)), (0, 0))
            a.stderr.close()
            b.stderr.close()
            have = snapshot(out)
            self.assertIn(have, refs, f"pair {i}: folder holds {sorted(have)}")
            self.assert_coherent(out)

    def test_second_run_waits_for_the_lock(self):
        out = self.fresh("locked")
        before = self.good_run(out, MANY)
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            procs = [subprocess.Popen([LPCC, self.model, "-o", out, *quiet, *ONE],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for quiet in ([], ["-q"])]
            time.sleep(1.0)
            self.assertEqual([p.poll() for p in procs], [None, None])
            self.assertEqual(snapshot(out), before)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        errs = [p.communicate(timeout=60)[1] for p in procs]
        self.assertEqual([p.returncode for p in procs], [0, 0], errs)
        self.assertIn("waiting for another run writing to", errs[0])
        self.assertEqual(errs[1], "")
        self.assertEqual(card_files(out), ["card_0.cu", "card_0.onnx", "card_0.onnx.data", "card_0.weights"])
        self.assert_coherent(out)

    # ---- inputs inside the output folder ----------------------------------------------

    def test_card_model_of_the_folder_as_input(self):
        out = self.fresh("selfref")
        before = self.good_run(out, MANY)
        card = os.path.join(out, "card_1.onnx")
        p = run(card, "-o", out)
        self.assert_exit(p, EXIT_OUTPUT)
        self.assertIn("card_1.onnx", p.stderr)
        self.assertIn("another folder", p.stderr)
        self.assertEqual(snapshot(out), before)
        # its weights file is an input too
        p = run(card, "-o", out + "/")
        self.assert_exit(p, EXIT_OUTPUT)
        self.assertEqual(snapshot(out), before)
        # elsewhere the card model is an ordinary input
        p = run(card, "-o", self.fresh("selfref_elsewhere"), "-q")
        self.assert_exit(p, EXIT_OK)
        self.assertEqual(snapshot(out), before)

    def test_sidecar_of_an_input_is_protected(self):
        """The model reads card_0.onnx.data, a name a run writes: refused."""
        out = self.fresh("sidecar_in")
        self.good_run(out, MANY)
        chain_model(out, name="other.onnx", weights="card_0.onnx.data")
        before = snapshot(out)
        p = run(os.path.join(out, "other.onnx"), "-o", out, *ONE)
        self.assert_exit(p, EXIT_OUTPUT)
        self.assertIn("card_0.onnx.data", p.stderr)
        self.assertEqual(snapshot(out), before)

    def test_model_inside_the_folder_under_its_own_name(self):
        out = self.fresh("inside")
        model = chain_model(out)
        before = snapshot(out)
        for args in (MANY, ONE, MANY):
            p = run(model, "-o", out, "-q", *args)
            self.assert_exit(p, EXIT_OK)
            for name in ("chain.onnx", "weights.bin"):
                self.assertEqual(snapshot(out)[name], before[name])
        # the cards read the weights in place: no copies next to them
        self.assertEqual(card_files(out), ["card_0.cu", "card_0.onnx", "card_0.weights", "card_1.cu", "card_1.onnx",
                                           "card_1.weights"])
        m = onnx.load(os.path.join(out, "card_1.onnx"), load_external_data=False)
        locations = {kv.value for t in m.graph.initializer for kv in t.external_data
                     if kv.key == "location"}
        self.assertEqual(locations, {"weights.bin"})

    # ---- links planted at temporary names ---------------------------------------------

    def test_planted_links_are_not_followed(self):
        out = self.fresh("planted")
        os.makedirs(out)
        target = os.path.join(self.tmp, "precious.txt")
        with open(target, "w") as f:
            f.write("precious")
        temps = [".graph.json.tmp", ".layers.json.tmp", ".plan.json.tmp", "cards.json.tmp",
                 ".cards.json.tmp", "card_0.onnx.tmp", "card_0.onnx.data.tmp", "card_1.onnx.tmp",
                 "card_1.onnx.data.tmp", "graph.json.tmp", "plan.json.tmp"]
        for t in temps:
            os.symlink(target, os.path.join(out, t))
        # a link at a final name is replaced, not written through
        os.symlink(target, os.path.join(out, "graph.json"))
        dot = os.path.join(self.tmp, "plan.dot")
        if os.path.lexists(dot):
            os.unlink(dot)
        os.symlink(target, dot)
        p = run(self.model, "-o", out, "-q", "--dot", dot, *MANY)
        self.assert_exit(p, EXIT_OK)
        with open(target) as f:
            self.assertEqual(f.read(), "precious")
        for t in temps:
            self.assertEqual(os.readlink(os.path.join(out, t)), target)
        self.assertFalse(os.path.islink(os.path.join(out, "graph.json")))
        with open(os.path.join(out, "graph.json")) as f:
            self.assertIn("nodes", json.load(f))
        self.assertFalse(os.path.islink(dot))
        with open(dot) as f:
            self.assertTrue(f.read().startswith("digraph plan"))
        self.assertEqual([n for n in os.listdir(out) if n.startswith(".lpcc")], [])
        self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith(".plan.dot")], [])

    def test_dot_unchanged_when_the_run_fails(self):
        dot = os.path.join(self.tmp, "kept.dot")
        with open(dot, "w") as f:
            f.write("earlier")
        with open("/dev/full", "w") as full:
            p = run(self.model, "--dot", dot, *ONE, stdout=full)
        self.assert_exit(p, EXIT_OUTPUT)
        with open(dot) as f:
            self.assertEqual(f.read(), "earlier")
        self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith(".kept.dot")], [])

    # ---- the folder and its parents ----------------------------------------------------

    def test_missing_parents_are_created(self):
        base = self.fresh("parents")
        out = os.path.join(base, "a", "b", "c")
        p = run(self.model, "-o", out, "-q", *ONE)
        self.assert_exit(p, EXIT_OK)
        self.assert_coherent(out)
        # a file where a parent should be: named in the message, nothing made
        os.makedirs(os.path.join(base, "x"))
        with open(os.path.join(base, "x", "file"), "w") as f:
            f.write("x")
        blocked = os.path.join(base, "x", "file", "d", "e")
        p = run(self.model, "-o", blocked, *ONE)
        self.assert_exit(p, EXIT_OUTPUT)
        self.assertIn(f"'{os.path.join(base, 'x', 'file')}' is not a folder", p.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(base, "x"))), ["file"])

    def test_staging_of_a_killed_run_is_cleaned(self):
        out = self.fresh("killed")
        os.makedirs(os.path.join(out, ".lpcc-staging-dead01"))
        with open(os.path.join(out, ".lpcc-staging-dead01", "graph.json"), "w") as f:
            f.write("{")
        self.good_run(out, ONE)
        self.assertEqual([n for n in os.listdir(out) if n.startswith(".")], [])
        self.assert_coherent(out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
