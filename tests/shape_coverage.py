#!/usr/bin/env python3
"""Measures shape-inference coverage of the ONNX node test suite.

Prints: default-domain ops in ir/ops.def that occur in the suite, out
of the distinct ops the suite's test models use; and how many test models
lpcc infers with output shapes equal to the ones the test declares (the
models are stripped of those declarations first, see shape_oracle_test.py).

usage: LPCC=build/cli/lpcc python3 tests/shape_coverage.py [-v]
"""
import glob
import os
import re
import sys

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shape_oracle_test as oracle  # noqa: E402


def main():
    ops_def = open(os.path.join(oracle.SRC, "ir", "ops.def")).read()
    supported = set(re.findall(r"^LP_OP\((\w+), (?!lp_infer_none)", ops_def, re.M))
    supported.add("Constant")  # folded into a constant value by the frontend
    suite_ops = set()
    for path in glob.glob(os.path.join(oracle.NODE_SUITE, "*", "model.onnx")):
        try:
            m = onnx.load(path)
        except Exception:
            continue
        for n in m.graph.node:
            if n.domain in ("", "ai.onnx"):
                suite_ops.add(n.op_type)
    failures = []
    passed, total, skipped = oracle.node_suite(failures, verbose="-v" in sys.argv)
    print("ops in ops.def: %d; of the %d distinct ops in the node suite, %d are supported"
          % (len(supported), len(suite_ops), len(suite_ops & supported)))
    print("node test models inferred with matching output shapes: %d of %d" % (passed, total))
    print("wrong shapes: %d" % len(failures))
    for f in failures:
        print("  " + f)
    print("ops of the suite not supported: " + ", ".join(sorted(suite_ops - supported)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
