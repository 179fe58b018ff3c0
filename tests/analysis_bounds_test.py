#!/usr/bin/env python3
"""Analysis work is bounded by the model file, never by a number written in it.

Small models that ask for a huge rank (a Reshape / Expand / ConstantOfShape
whose shape tensor has 1e8 elements, made by Range or ConstantOfShape; an
Unsqueeze past the rank limit; a graph input of rank 200,000) must fail
with exit 1 within a second, naming the file, the node (index, name, op) and
the rank asked, while lpcc's peak RSS stays small. Models just inside the
limits (rank 64, shape tensors too long to fold) still succeed.
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import onnx_graphs  # noqa: E402
from onnx_graphs import i64, vi  # noqa: E402,F401

LPCC = os.environ.get("LPCC", "lpcc")
MAX_RANK = 64
TIME_LIMIT_S = 1.0
RSS_LIMIT_MB = 150

failures = []


def fail(case, msg):
    failures.append(f"{case}: {msg}")
    print(f"FAIL {case}: {msg}", file=sys.stderr)


def model(nodes, inputs, outputs, inits=(), opset=18):
    return onnx_graphs.model(nodes, inputs, outputs, inits, opset, name="bounds")


def scalar_i64(name, v):
    return numpy_helper.from_array(np.array(v, dtype=np.int64), name)


def huge_range(n):
    """Nodes and initializers making 'shp' = Range(1, n + 1, 1): n elements."""
    inits = [scalar_i64("r0", 1), scalar_i64("r1", n + 1), scalar_i64("r2", 1)]
    return [helper.make_node("Range", ["r0", "r1", "r2"], ["shp"], name="the_range")], inits


def huge_cos(n):
    """'shp' = ConstantOfShape([n], value=1): n int64 ones."""
    value = helper.make_tensor("value", TensorProto.INT64, [1], [1])
    return ([helper.make_node("ConstantOfShape", ["n"], ["shp"], name="the_fill", value=value)],
            [i64("n", [n])])


def run(work, case, m, expect, want=(), args=()):
    before = len(failures)
    path = os.path.join(work, f"{case}.onnx")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    t0 = time.monotonic()
    try:
        r = subprocess.run([LPCC, path, *args], capture_output=True, text=True, errors="replace",
                           timeout=60)
    except subprocess.TimeoutExpired:
        fail(case, "lpcc ran over 60 s")
        return
    took = time.monotonic() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if r.returncode != expect:
        fail(case, f"exit {r.returncode}, expected {expect}; stderr:\n{r.stderr[-1500:]}")
    if took > TIME_LIMIT_S:
        fail(case, f"took {took:.2f} s (limit {TIME_LIMIT_S} s)")
    if rss_mb > RSS_LIMIT_MB:
        fail(case, f"peak RSS of the runs so far is {rss_mb:.0f} MB (limit {RSS_LIMIT_MB} MB)")
    if expect != 0 and f"{path}: error: " not in r.stderr:
        fail(case, f"stderr does not name the file:\n{r.stderr}")
    for w in want:
        if w not in r.stderr:
            fail(case, f"stderr lacks {w!r}:\n{r.stderr}")
    if len(failures) == before:
        print(f"ok {case}: exit {r.returncode} in {took:.3f} s")


def main():
    with tempfile.TemporaryDirectory() as work:
        n = 100_000_000
        # Reshape / Expand / ConstantOfShape whose shape tensor has 1e8 elements
        for maker, src in ((huge_range, "range"), (huge_cos, "fill")):
            nodes, inits = maker(n)
            m = model(nodes + [helper.make_node("Reshape", ["x", "shp"], ["y"], name="big_reshape")],
                      [vi("x", [2, 3])], [vi("y", None)], inits)
            run(work, f"reshape_{src}", m, 1,
                ["node 1 'big_reshape' (Reshape)", f"rank {n}", f"up to {MAX_RANK}"])
            m = model(nodes + [helper.make_node("Expand", ["x", "shp"], ["y"], name="big_expand")],
                      [vi("x", [2, 3])], [vi("y", None)], inits)
            run(work, f"expand_{src}", m, 1,
                ["node 1 'big_expand' (Expand)", f"rank {n}", f"up to {MAX_RANK}"])
            m = model(nodes + [helper.make_node("ConstantOfShape", ["shp"], ["y"], name="big_cos")],
                      [vi("x", [2, 3])], [vi("y", None)], inits)
            run(work, f"constantofshape_{src}", m, 1,
                ["node 1 'big_cos' (ConstantOfShape)", f"rank {n}", f"up to {MAX_RANK}"])

        # a shape tensor of 65 known elements: one past the limit, values known
        m = model([helper.make_node("Reshape", ["x", "shp"], ["y"], name="reshape65")],
                  [vi("x", [1])], [vi("y", None)], [i64("shp", [1] * (MAX_RANK + 1))])
        run(work, "reshape_rank65", m, 1, ["node 0 'reshape65' (Reshape)", "rank 65"])
        # exactly the limit is fine
        m = model([helper.make_node("Reshape", ["x", "shp"], ["y"], name="reshape64")],
                  [vi("x", [1])], [vi("y", [1] * MAX_RANK)], [i64("shp", [1] * MAX_RANK)])
        run(work, "reshape_rank64", m, 0)

        # Unsqueeze of a rank-60 input by 10 axes
        m = model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")],
                  [vi("x", [1] * 60)], [vi("y", None)], [i64("axes", list(range(10)))])
        run(work, "unsqueeze_rank70", m, 1, ["node 0 'unsq' (Unsqueeze)", "rank 70"])

        # a graph input of rank 200,000 through 1000 Relus
        relus = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"], name=f"relu{i}")
                 for i in range(1000)]
        m = model(relus, [vi("x", [1] * 200_000)], [vi("t1000", None)])
        run(work, "input_rank200k", m, 1, ["rank 200000"])

        # a Range of 1e9 elements feeding Shape -> Reshape: the length is a
        # number, never materialised, and the model is valid
        nodes, inits = huge_range(1_000_000_000)
        nodes += [helper.make_node("Shape", ["shp"], ["s"], name="shape_of_range"),
                  helper.make_node("Reshape", ["shp", "s"], ["y"], name="flat")]
        m = model(nodes, [vi("x", [1])], [vi("y", [1_000_000_000], TensorProto.INT64)], inits)
        run(work, "range_1e9_valid", m, 0, args=["--capacity", "32GiB"])

    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("all bounds cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
