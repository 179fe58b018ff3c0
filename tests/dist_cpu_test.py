#!/usr/bin/env python3
"""One process a rank on the CPU path: `RANK=r WORLD_SIZE=n lpcc-run DIR`
for every rank at once, the cards split over the processes and the cuts
between them sent over lp_transport.h. Checked: the rank that holds each
output against ONNX Runtime, microbatches back to back, and failure: a rank
that never starts, or stops, ends every other rank with exit 6 and a
message naming it, well before its timeout, never a hang."""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_cpu_test as rc  # noqa: E402  (its model, input and ONNX Runtime helpers)

RUN = rc.RUN


def free_base(world):
    """A base port with `world` ports after it nobody listens on."""
    import socket
    for _ in range(50):
        base = random.randint(20000, 60000)
        ok = True
        for r in range(world):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + r))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def launch(folder, world, args, ranks=None, timeout=60, extra_env=None):
    """Starts the given ranks (default all) of a world; returns [(rc, stdout, stderr, seconds)]."""
    base = free_base(world)
    procs = []
    t0 = time.monotonic()
    for r in (range(world) if ranks is None else ranks):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(base))
        env.update((extra_env or {}).get(r, {}))
        a = args(r) if callable(args) else args
        procs.append(subprocess.Popen([RUN, folder, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    out = []
    for p in procs:
        o, e = p.communicate(timeout=timeout)
        out.append((p.returncode, o, e, time.monotonic() - t0))
    return out


class DistributedCpu(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lpcc_dist.")
        cls.model = rc.fp32_model(os.path.join(rc.MODELS, "seed_2x256.onnx"))
        cls.out = os.path.join(cls.tmp, "seed_3")
        r = rc.lpcc(os.path.join(rc.MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim", "seq=16",
                    "--dtype", "fp32", "--cards", "3", "-q", "-o", cls.out)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(cls.out, "manifest.json")) as f:
            cls.man = json.load(f)
        cls.inp = os.path.join(cls.tmp, "in")
        cls.ref = os.path.join(cls.tmp, "ref")
        feeds = rc.make_inputs(cls.man, cls.inp)
        cls.names = [o["name"] for o in cls.man["outputs"]]
        rc.ort_reference(cls.model, feeds, cls.names, cls.ref)

    def check_world(self, world, micro=0):
        got = os.path.join(self.tmp, f"got_{world}_{micro}")
        args = ["--inputs", self.inp, "--outputs", got, "--check", self.ref, "--json", "--iters", "2",
                "--timeout", "30"] + (["--microbatches", str(micro)] if micro else [])
        res = launch(self.out, world, args)
        reps = []
        for r, (code, o, e, _) in enumerate(res):
            self.assertEqual(code, 0, f"rank {r}: {e}")
            rep = json.loads(o)
            self.assertEqual(rep["rank"], r)
            reps.append(rep)
        # every card runs on exactly one rank, in order
        here = [[c["card"] for c in rep["cards"] if c["here"]] for rep in reps]
        self.assertEqual(sorted(sum(here, [])), list(range(len(self.man["cards"]))))
        self.assertEqual(sum(here, []), list(range(len(self.man["cards"]))))
        # the outputs, each checked by the rank that holds it, against ONNX Runtime
        checked = [o for rep in reps for o in rep["outputs"]]
        self.assertEqual(sorted(o["name"] for o in checked), sorted(self.names))
        self.assertTrue(all(o["rel_l2"] <= 1e-5 for o in checked), checked)
        self.assertTrue(all(rep["check"] == "pass" for rep in reps))
        self.assertEqual(len(os.listdir(got)), len(self.names))
        if micro:
            for rep in reps:
                self.assertEqual(rep["microbatches"], micro)
                self.assertGreater(rep["pipeline_tokens_per_s"], 0)
        return reps

    def test_three_ranks_match_onnxruntime(self):
        self.check_world(3)

    def test_two_ranks_split_the_cards(self):
        reps = self.check_world(2)
        # 3 cards over 2 ranks: card 0 on rank 0, cards 1 and 2 on rank 1
        self.assertEqual([[c["card"] for c in rep["cards"] if c["here"]] for rep in reps], [[0], [1, 2]])

    def test_microbatches_pipeline(self):
        # 6 microbatches after the timed steps: every rank runs them, the
        # transfers of consecutive steps do not mix up (each carries its step),
        # and the outputs are still ONNX Runtime's (how fast: a benchmark's job)
        reps = self.check_world(3, micro=6)
        self.assertTrue(all(rep["pipeline_s"] > 0 for rep in reps))

    def test_rank_that_never_starts(self):
        res = launch(self.out, 3, ["--timeout", "2"], ranks=[0, 1], timeout=60)
        for code, _, err, secs in res:
            self.assertEqual(code, 6, err)
            self.assertIn("rank 2", err)
            self.assertLess(secs, 30)

    def test_rank_that_fails_stops_the_others(self):
        bad = os.path.join(self.tmp, "bad_in")
        os.makedirs(bad, exist_ok=True)
        with open(os.path.join(bad, "input_0.pb"), "wb") as f:
            f.write(b"\x08\x02")  # a TensorProto of the wrong shape: rank 0 stops (exit 2)
        args = lambda r: ["--timeout", "40"] + (["--inputs", bad] if r == 0 else [])  # noqa: E731
        res = launch(self.out, 3, args, timeout=120)
        self.assertEqual(res[0][0], 2, res[0][2])
        for code, _, err, secs in res[1:]:
            self.assertEqual(code, 6, err)
            self.assertIn("closed its connection", err)
            self.assertLess(secs, 30)  # noticed at once, not at the 40 s timeout

    def test_sharded_layer_stays_in_one_process(self):
        # seed_2x256 at 700 KiB a card: sharded layers, their all-gathers inside one rank
        out = os.path.join(self.tmp, "sharded")
        r = rc.lpcc(os.path.join(rc.MODELS, "seed_2x256.onnx"), "--dim", "batch=1", "--dim", "seq=16",
                    "--dtype", "fp32", "--capacity", "700KiB", "-q", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "manifest.json")) as f:
            man = json.load(f)
        shards = [c for c in man["cards"] if c["n_shards"] > 1]
        self.assertGreater(len(shards), 0)
        res = launch(out, 2, ["--inputs", self.inp, "--check", self.ref, "--json", "--timeout", "30"])
        reps = []
        for code, o, e, _ in res:
            self.assertEqual(code, 0, e)
            reps.append(json.loads(o))
        for c in shards:  # every card of a sharded layer on the rank of the layer's first card
            owners = {rep["rank"] for rep in reps for k in rep["cards"]
                      if k["here"] and man["cards"][k["card"]]["first_layer"] == c["first_layer"]}
            self.assertEqual(len(owners), 1)
        checked = [o for rep in reps for o in rep["outputs"]]
        self.assertEqual(len(checked), len(self.names))
        self.assertTrue(all(o["rel_l2"] <= 1e-5 for o in checked), checked)

    def test_stranger_on_the_port(self):
        # something that is not a rank of this run connects to rank 0's port
        import socket
        base = free_base(2)
        env = dict(os.environ, RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(base))
        p = subprocess.Popen([RUN, self.out, "--timeout", "20"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", base), timeout=1)
                break
            except OSError:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        _, err = p.communicate(timeout=60)
        s.close()
        self.assertEqual(p.returncode, 6, err)
        self.assertIn("not a rank of this run", err)

    def test_usage(self):
        res = launch(self.out, 4, [], ranks=[0], timeout=60)
        self.assertEqual(res[0][0], 2)
        self.assertIn("more than the 3 cards", res[0][2])
        env = dict(os.environ, RANK="3", WORLD_SIZE="2")
        r = subprocess.run([RUN, self.out], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("RANK=3", r.stderr)
        r = subprocess.run([RUN, self.out, "--timeout", "0"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
