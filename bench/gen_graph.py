#!/usr/bin/env python3
"""Synthetic transformer-like ONNX graphs for the loader benchmark.

    python3 bench/gen_graph.py --nodes 10000 --out /tmp/g10k.onnx
    python3 bench/gen_graph.py --layers 4 --hidden 4096 --weights sparse --out /tmp/big.onnx

Each layer is the usual pre-norm block (LayerNormalization, q/k/v MatMul +
bias Add, Reshape/Transpose to heads, scores MatMul, Div, Softmax, context
MatMul, Transpose/Reshape back, out-projection, residual Add, MLP with Gelu,
residual Add): 29 nodes and 19 initializers per layer. With --nodes the layer
count is chosen to reach at least that many nodes. Weights are FP16 external
data in OUT.weights, back to back:

  --weights absent   the weights file is not written (the default)
  --weights sparse   the file is created at its full length with truncate,
                     so it exists and covers every range but uses no disk
"""

import argparse
import os
import sys

import onnx
from onnx import TensorProto, helper

NODES_PER_LAYER = 29


class Builder:
    def __init__(self, hidden, heads, mlp, weights_name):
        self.hidden, self.heads, self.mlp = hidden, heads, mlp
        self.weights_name = weights_name
        self.offset = 0
        self.nodes, self.inits = [], []

    def weight(self, name, dims):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT16, dims=dims)
        t.data_location = TensorProto.EXTERNAL
        length = 2
        for d in dims:
            length *= d
        for k, v in (("location", self.weights_name), ("offset", str(self.offset)),
                     ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        self.offset += length
        self.inits.append(t)
        return name

    def const(self, name, values):
        self.inits.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], values))
        return name

    def node(self, op, inputs, name, **attrs):
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def linear(self, x, p, n_in, n_out):
        y = self.node("MatMul", [x, self.weight(f"{p}.weight", [n_in, n_out])], f"{p}/MatMul")
        return self.node("Add", [y, self.weight(f"{p}.bias", [n_out])], f"{p}/Add")

    def layer_norm(self, x, p):
        w = self.weight(f"{p}.weight", [self.hidden])
        b = self.weight(f"{p}.bias", [self.hidden])
        return self.node("LayerNormalization", [x, w, b], f"{p}/LayerNorm", axis=-1)

    def layer(self, x, i):
        h, p = self.hidden, f"layers.{i}"
        n = self.layer_norm(x, f"{p}.ln1")
        split = self.const(f"{p}.heads_shape", [0, 0, self.heads, h // self.heads])
        merge = self.const(f"{p}.merge_shape", [0, 0, h])
        q, k, v = (self.node("Transpose",
                             [self.node("Reshape", [self.linear(n, f"{p}.attn.{w}", h, h), split],
                                        f"{p}/attn/{w}/Reshape")],
                             f"{p}/attn/{w}/Transpose", perm=perm)
                   for w, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])))
        s = self.node("MatMul", [q, k], f"{p}/attn/scores")
        s = self.node("Div", [s, self.weight(f"{p}.attn.scale", [1])], f"{p}/attn/scale")
        s = self.node("Softmax", [s], f"{p}/attn/Softmax", axis=-1)
        c = self.node("MatMul", [s, v], f"{p}/attn/context")
        c = self.node("Transpose", [c], f"{p}/attn/merge/Transpose", perm=[0, 2, 1, 3])
        c = self.node("Reshape", [c, merge], f"{p}/attn/merge/Reshape")
        x = self.node("Add", [x, self.linear(c, f"{p}.attn.out", h, h)], f"{p}/residual1")
        m = self.layer_norm(x, f"{p}.ln2")
        m = self.node("Gelu", [self.linear(m, f"{p}.mlp.fc1", h, self.mlp)], f"{p}/mlp/Gelu")
        return self.node("Add", [x, self.linear(m, f"{p}.mlp.fc2", self.mlp, h)], f"{p}/residual2")


def build(layers, hidden, heads, mlp, weights_name):
    b = Builder(hidden, heads, mlp, weights_name)
    x = "hidden_states"
    for i in range(layers):
        x = b.layer(x, i)
    vi = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT16,
                                                    ["batch", "seq", hidden])
    graph = helper.make_graph(b.nodes, "synthetic", [vi("hidden_states")], [vi(x)], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)],
                              producer_name="lpcc bench/gen_graph.py")
    model.ir_version = 10
    return model, b.offset


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--nodes", type=int, help="at least this many nodes")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, help="default 4 * hidden")
    ap.add_argument("--weights", choices=("absent", "sparse"), default="absent")
    a = ap.parse_args()
    layers = -(-a.nodes // NODES_PER_LAYER) if a.nodes else a.layers
    weights_name = os.path.basename(a.out) + ".weights"
    model, nbytes = build(layers, a.hidden, a.heads, a.mlp or 4 * a.hidden, weights_name)
    onnx.save(model, a.out)
    weights_path = os.path.join(os.path.dirname(os.path.abspath(a.out)), weights_name)
    if a.weights == "sparse":
        with open(weights_path, "wb") as f:
            f.truncate(nbytes)
    elif os.path.exists(weights_path):
        os.unlink(weights_path)
    print(f"{a.out}: {len(model.graph.node)} nodes, {len(model.graph.initializer)} initializers, "
          f"{nbytes} bytes of weights ({a.weights})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
