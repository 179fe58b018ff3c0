"""Oracle for test_onnx_suite: how the onnx package reads each model.

Usage: python3 onnx_counts.py FOLDER...
Prints one line per *.onnx below each folder, tab-separated:
    path  nodes  constants  initializers  inputs  outputs
where nodes excludes default-domain Constant nodes (counted in constants)
and inputs excludes graph inputs that are initializers. A model the onnx
package cannot read prints nothing.
"""
import os
import sys

import onnx


def counts(path):
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    const = sum(1 for n in g.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx"))
    inits = {t.name for t in g.initializer}
    inputs = sum(1 for i in g.input if i.name not in inits)
    return len(g.node) - const, const, len(g.initializer), inputs, len(g.output)


def main(folders):
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith(".onnx"):
                    continue
                path = os.path.join(root, name)
                try:
                    c = counts(path)
                except Exception:  # the loader test reports these on its own
                    continue
                print(path, *c, sep="\t")


if __name__ == "__main__":
    main(sys.argv[1:])
