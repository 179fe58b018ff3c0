#!/usr/bin/env python3
"""Generate the seed test model: a dense FP16 transformer as an ONNX graph.

Only onnx and numpy are needed (no torch).  Default is the full-size model:
16 layers, hidden 8192 = 16 heads x 512, MLP hidden 32768, weights declared as
external data in `<model>.weights` but that file not written.

    python3 models/gen_seed.py                                   # full size
    python3 models/gen_seed.py --layers 2 --hidden 256 --heads 4 --mlp 1024 \
        --weights inline --out models/seed_2x256.onnx

Graph (per layer i, all tensors FLOAT16, activations [batch, seq, hidden]):

    x -> LayerNormalization(ln1)
      -> q/k/v: MatMul [H,H] + Add bias
      -> Reshape [batch, seq, heads, head_dim]
         (q and v: target computed from Shape -> Gather -> Unsqueeze ->
          Concat with constants, the way exporters do it;
          k: constant target [0, 0, heads, head_dim] with copy-dims)
      -> Transpose q,v perm [0,2,1,3]; k perm [0,2,3,1] (K^T directly)
      -> MatMul q @ K^T -> Div by sqrt(head_dim) -> Softmax(-1) -> MatMul V
      -> Transpose [0,2,1,3] -> Reshape [batch, seq, H] (computed target)
      -> out_proj MatMul [H,H] + Add bias -> residual Add
      -> LayerNormalization(ln2) -> fc1 MatMul [H,M] + bias -> Gelu
      -> fc2 MatMul [M,H] + bias -> residual Add
    final LayerNormalization(norm) -> last_hidden_state

Weights are stored as [in_features, out_features] (ready for MatMul) and
named after the module tree: layers.{i}.attn.q_proj.weight, ...
Small shape constants (reshape targets, gather indices, the softmax scale) are
always stored inline, whatever --weights says, so the graph can be analysed
without the weights file.

Node names follow the TorchScript exporter's style (`/layers.3/attn/q_proj/MatMul`).
Each node also carries the metadata_props written by
torch.onnx.export(..., dynamo=True) (torch 2.11, checked against a real export
of the same module tree, see seed_ref_torch.onnx):

  namespace
      "/".join("<scope>: <class>" for each module on the stack)
      + "/<fx node name>: <aten target>"
      e.g. ": __main__.SeedTransformer/layers.0: __main__.SeedLayer/
            layers.0.attn: __main__.SeedAttention/layers.0.attn.q_proj:
            torch.nn.modules.linear.Linear/linear: aten.linear.default"
      (one line; the root module has the empty scope name, hence the leading
      ": ").
  pkg.torch.onnx.class_hierarchy
      Python repr() of the list of qualified class names of the module stack,
      then the aten target:
      "['__main__.SeedTransformer', '__main__.SeedLayer',
        '__main__.SeedAttention', 'torch.nn.modules.linear.Linear',
        'aten.linear.default']"
  pkg.torch.onnx.name_scopes
      Python repr() of the list of full dotted module paths of the stack
      (root is ''), then the fx node name:
      "['', 'layers.0', 'layers.0.attn', 'layers.0.attn.q_proj', 'linear']"

All ONNX nodes lowered from one fx node (e.g. MatMul + Add of one Linear)
share the same values.  fx node names are the aten op's short name with a
global counter suffix (linear, linear_1, linear_2, ...), as torch.export names
them.  Values of --weights:

  external-absent  every weight is an external-data tensor (location, offset,
                   length), laid out back to back in `<model>.weights`, which
                   is NOT written
  external         same layout, weights file written (random FP16 values)
  inline           random FP16 values stored in the .onnx file
"""

import argparse
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16 = TensorProto.FLOAT16
INT64 = TensorProto.INT64

ROOT_CLASS = "__main__.SeedTransformer"
LAYER_CLASS = "__main__.SeedLayer"
ATTN_CLASS = "__main__.SeedAttention"
MLP_CLASS = "__main__.SeedMLP"
LINEAR_CLASS = "torch.nn.modules.linear.Linear"
LN_CLASS = "torch.nn.modules.normalization.LayerNorm"
GELU_CLASS = "torch.nn.modules.activation.GELU"


class Builder:
    def __init__(self, args):
        self.a = args
        self.nodes = []
        self.inits = []
        self.fx_counts = {}
        self.rng = np.random.default_rng(args.seed)
        self.weights_name = os.path.splitext(os.path.basename(args.out))[0] + ".weights"
        self.offset = 0
        self.blob = []  # for --weights external

    # ---- naming / metadata -------------------------------------------------
    def fx(self, base):
        """Next fx node name for an aten op: base, base_1, base_2, ..."""
        n = self.fx_counts.get(base, 0)
        self.fx_counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    @staticmethod
    def meta(stack, fx_name, target):
        scopes = [s for s, _ in stack] + [fx_name]
        classes = [c for _, c in stack] + [target]
        ns = "/".join(f"{s}: {c}" for s, c in stack) + f"/{fx_name}: {target}"
        return {
            "namespace": ns,
            "pkg.torch.onnx.class_hierarchy": repr(classes),
            "pkg.torch.onnx.name_scopes": repr(scopes),
        }

    def node(self, op, name, inputs, meta, n_out=1, **attrs):
        outs = [f"{name}_output_{k}" for k in range(n_out)]
        nd = helper.make_node(op, inputs, outs, name=name, **attrs)
        for k, v in meta.items():
            p = nd.metadata_props.add()
            p.key = k
            p.value = v
        self.nodes.append(nd)
        return outs[0] if n_out == 1 else outs

    # ---- initializers ------------------------------------------------------
    def const(self, name, arr):
        """Small constant, always inline."""
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(self, name, shape, kind):
        """A model weight (fp16).  kind: 'w' (matrix), 'b' (bias), 'g' (LN gain)."""
        mode = self.a.weights
        if mode == "external-absent":
            t = TensorProto()
            t.name = name
            t.data_type = FP16
            t.dims.extend(shape)
            nbytes = int(np.prod(shape)) * 2
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", self.weights_name), ("offset", str(self.offset)),
                         ("length", str(nbytes))):
                e = t.external_data.add()
                e.key = k
                e.value = v
            self.offset += nbytes
            self.inits.append(t)
            return name
        if kind == "g":
            arr = 1.0 + 0.02 * self.rng.standard_normal(shape, dtype=np.float32)
        else:
            arr = 0.02 * self.rng.standard_normal(shape, dtype=np.float32)
        arr = arr.astype(np.float16)
        if mode == "inline":
            self.inits.append(numpy_helper.from_array(arr, name))
            return name
        # external, written
        raw = arr.tobytes()
        t = TensorProto()
        t.name = name
        t.data_type = FP16
        t.dims.extend(shape)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.weights_name), ("offset", str(self.offset)),
                     ("length", str(len(raw)))):
            e = t.external_data.add()
            e.key = k
            e.value = v
        self.offset += len(raw)
        self.blob.append(raw)
        self.inits.append(t)
        return name

    # ---- blocks ------------------------------------------------------------
    def layer_norm(self, x, prefix, path, stack):
        """prefix: node-name prefix (/layers.0/ln1); path: dotted module path."""
        st = stack + [(path, LN_CLASS)]
        g = self.weight(f"{path}.weight", [self.a.hidden], "g")
        b = self.weight(f"{path}.bias", [self.a.hidden], "b")
        return self.node("LayerNormalization", f"{prefix}/LayerNormalization", [x, g, b],
                         self.meta(st, self.fx("layer_norm"), "aten.layer_norm.default"),
                         axis=-1, epsilon=1e-5, stash_type=1)

    def linear(self, x, prefix, path, stack, n_in, n_out):
        st = stack + [(path, LINEAR_CLASS)]
        w = self.weight(f"{path}.weight", [n_in, n_out], "w")
        b = self.weight(f"{path}.bias", [n_out], "b")
        md = self.meta(st, self.fx("linear"), "aten.linear.default")
        y = self.node("MatMul", f"{prefix}/MatMul", [x, w], md)
        return self.node("Add", f"{prefix}/Add", [y, b], md)

    def attention(self, x, i, stack):
        a = self.a
        hd = a.hidden // a.heads
        P = f"/layers.{i}/attn"
        path = f"layers.{i}.attn"
        st = stack + [(path, ATTN_CLASS)]

        # reshape target [batch, seq, heads, head_dim] computed from the input shape
        shp = self.node("Shape", f"{P}/Shape", [x], self.meta(st, self.fx("sym_size_int"),
                                                               "aten.sym_size.int"))
        md_b = self.meta(st, self.fx("sym_size_int"), "aten.sym_size.int")
        i0 = self.node("Constant", f"{P}/Constant", [], md_b,
                       value=numpy_helper.from_array(np.array(0, dtype=np.int64)))
        bsz = self.node("Gather", f"{P}/Gather", [shp, i0], md_b, axis=0)
        md_s = self.meta(st, self.fx("sym_size_int"), "aten.sym_size.int")
        i1 = self.node("Constant", f"{P}/Constant_1", [], md_s,
                       value=numpy_helper.from_array(np.array(1, dtype=np.int64)))
        seq = self.node("Gather", f"{P}/Gather_1", [shp, i1], md_s, axis=0)

        md_view_q = self.meta(st, self.fx("view"), "aten.view.default")
        bsz1 = self.node("Unsqueeze", f"{P}/Unsqueeze", [bsz, "const_axes_0"], md_view_q)
        seq1 = self.node("Unsqueeze", f"{P}/Unsqueeze_1", [seq, "const_axes_0"], md_view_q)
        tgt4 = self.node("Concat", f"{P}/Concat", [bsz1, seq1, "const_heads", "const_head_dim"],
                         md_view_q, axis=0)

        q = self.linear(x, f"{P}/q_proj", f"{path}.q_proj", st, a.hidden, a.hidden)
        q = self.node("Reshape", f"{P}/Reshape", [q, tgt4], md_view_q)
        q = self.node("Transpose", f"{P}/Transpose", [q],
                      self.meta(st, self.fx("transpose"), "aten.transpose.int"), perm=[0, 2, 1, 3])

        k = self.linear(x, f"{P}/k_proj", f"{path}.k_proj", st, a.hidden, a.hidden)
        k = self.node("Reshape", f"{P}/Reshape_1", [k, "const_shape_bshd"],
                      self.meta(st, self.fx("view"), "aten.view.default"))
        kt = self.node("Transpose", f"{P}/Transpose_1", [k],
                       self.meta(st, self.fx("transpose"), "aten.transpose.int"), perm=[0, 2, 3, 1])

        v = self.linear(x, f"{P}/v_proj", f"{path}.v_proj", st, a.hidden, a.hidden)
        v = self.node("Reshape", f"{P}/Reshape_2", [v, tgt4],
                      self.meta(st, self.fx("view"), "aten.view.default"))
        v = self.node("Transpose", f"{P}/Transpose_2", [v],
                      self.meta(st, self.fx("transpose"), "aten.transpose.int"), perm=[0, 2, 1, 3])

        s = self.node("MatMul", f"{P}/MatMul", [q, kt],
                      self.meta(st, self.fx("matmul"), "aten.matmul.default"))
        s = self.node("Div", f"{P}/Div", [s, "const_scale"],
                      self.meta(st, self.fx("div"), "aten.div.Tensor"))
        p = self.node("Softmax", f"{P}/Softmax", [s],
                      self.meta(st, self.fx("softmax"), "aten.softmax.int"), axis=-1)
        o = self.node("MatMul", f"{P}/MatMul_1", [p, v],
                      self.meta(st, self.fx("matmul"), "aten.matmul.default"))
        o = self.node("Transpose", f"{P}/Transpose_3", [o],
                      self.meta(st, self.fx("transpose"), "aten.transpose.int"), perm=[0, 2, 1, 3])
        md_uv = self.meta(st, self.fx("_unsafe_view"), "aten._unsafe_view.default")
        tgt3 = self.node("Concat", f"{P}/Concat_1", [bsz1, seq1, "const_hidden"], md_uv, axis=0)
        o = self.node("Reshape", f"{P}/Reshape_3", [o, tgt3], md_uv)
        return self.linear(o, f"{P}/out_proj", f"{path}.out_proj", st, a.hidden, a.hidden)

    def mlp(self, x, i, stack):
        a = self.a
        P = f"/layers.{i}/mlp"
        path = f"layers.{i}.mlp"
        st = stack + [(path, MLP_CLASS)]
        h = self.linear(x, f"{P}/fc1", f"{path}.fc1", st, a.hidden, a.mlp)
        st_act = st + [(f"{path}.act", GELU_CLASS)]
        md = self.meta(st_act, self.fx("gelu"), "aten.gelu.default")
        if a.opset >= 20:
            h = self.node("Gelu", f"{P}/act/Gelu", [h], md, approximate="none")
        else:  # 0.5 * x * (1 + erf(x / sqrt(2)))
            d = self.node("Div", f"{P}/act/Div", [h, "const_sqrt2"], md)
            e = self.node("Erf", f"{P}/act/Erf", [d], md)
            e1 = self.node("Add", f"{P}/act/Add", [e, "const_one"], md)
            m = self.node("Mul", f"{P}/act/Mul", [h, e1], md)
            h = self.node("Mul", f"{P}/act/Mul_1", [m, "const_half"], md)
        return self.linear(h, f"{P}/fc2", f"{path}.fc2", st, a.mlp, a.hidden)

    def build(self):
        a = self.a
        hd = a.hidden // a.heads
        self.const("const_axes_0", np.array([0], dtype=np.int64))
        self.const("const_heads", np.array([a.heads], dtype=np.int64))
        self.const("const_head_dim", np.array([hd], dtype=np.int64))
        self.const("const_hidden", np.array([a.hidden], dtype=np.int64))
        self.const("const_shape_bshd", np.array([0, 0, a.heads, hd], dtype=np.int64))
        self.const("const_scale", np.array(math.sqrt(hd), dtype=np.float16))
        if a.opset < 20:
            self.const("const_sqrt2", np.array(math.sqrt(2.0), dtype=np.float16))
            self.const("const_one", np.array(1.0, dtype=np.float16))
            self.const("const_half", np.array(0.5, dtype=np.float16))

        root = [("", ROOT_CLASS)]
        x = "hidden_states"
        for i in range(a.layers):
            st = root + [(f"layers.{i}", LAYER_CLASS)]
            h = self.layer_norm(x, f"/layers.{i}/ln1", f"layers.{i}.ln1", st)
            h = self.attention(h, i, st)
            x = self.node("Add", f"/layers.{i}/Add", [x, h],
                          self.meta(st, self.fx("add"), "aten.add.Tensor"))
            h = self.layer_norm(x, f"/layers.{i}/ln2", f"layers.{i}.ln2", st)
            h = self.mlp(h, i, st)
            x = self.node("Add", f"/layers.{i}/Add_1", [x, h],
                          self.meta(st, self.fx("add"), "aten.add.Tensor"))
        y = self.layer_norm(x, "/norm", "norm", root)
        # rename the final value to the graph output name
        self.nodes[-1].output[0] = "last_hidden_state"

        inp = helper.make_tensor_value_info("hidden_states", FP16, ["batch", "seq", a.hidden])
        out = helper.make_tensor_value_info("last_hidden_state", FP16, ["batch", "seq", a.hidden])
        for vi, kind in ((inp, "InputSpec"), (out, "OutputSpec")):
            p = vi.metadata_props.add()
            p.key = f"pkg.torch.export.graph_signature.{kind}.kind"
            p.value = "USER_INPUT" if kind == "InputSpec" else "USER_OUTPUT"
        graph = helper.make_graph(self.nodes, "main_graph", [inp], [out], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", a.opset)],
                                  producer_name="gen_seed.py", producer_version="1")
        model.ir_version = 10
        model.doc_string = (f"Dense FP16 transformer: {a.layers} layers, hidden {a.hidden} "
                            f"({a.heads} heads x {hd}), MLP {a.mlp}; weights: {a.weights}")
        for k, v in (("layers", a.layers), ("hidden", a.hidden), ("heads", a.heads),
                     ("mlp", a.mlp), ("weights", a.weights)):
            p = model.metadata_props.add()
            p.key = f"seed.{k}"
            p.value = str(v)
        return model


def check_structure(model):
    """onnx.checker + strict shape inference without needing the weights.

    The checker only verifies that external-data files exist (it reads no
    bytes), so the graph is saved into a temporary folder next to empty
    placeholder files with the referenced names."""
    import tempfile
    locs = {e.value for t in model.graph.initializer for e in t.external_data
            if e.key == "location"}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        onnx.save_model(model, path)
        for loc in locs:
            open(os.path.join(d, loc), "wb").close()
        onnx.checker.check_model(path, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--mlp", type=int, default=None, help="default 4 * hidden")
    ap.add_argument("--out", default=None,
                    help="default: seed_<layers>x<hidden>.onnx next to this script")
    ap.add_argument("--weights", choices=["external-absent", "inline", "external"],
                    default="external-absent")
    ap.add_argument("--opset", type=int, default=20, choices=[18, 19, 20],
                    help="20: Gelu op; 18/19: Gelu written with Erf")
    ap.add_argument("--seed", type=int, default=0, help="numpy RNG seed for the weights")
    a = ap.parse_args(argv)
    if a.mlp is None:
        a.mlp = 4 * a.hidden
    if a.hidden % a.heads:
        ap.error("--hidden must be divisible by --heads")
    if a.out is None:
        a.out = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             f"seed_{a.layers}x{a.hidden}.onnx")

    b = Builder(a)
    model = b.build()

    check_structure(model)

    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    wpath = os.path.join(out_dir, b.weights_name)
    if a.weights == "external":
        with open(wpath, "wb") as f:
            for raw in b.blob:
                f.write(raw)
    elif os.path.exists(wpath):
        os.remove(wpath)  # a stale weights file would not match this graph
    onnx.save_model(model, a.out)  # tensors already carry their data_location

    n_w = sum(1 for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL)
    print(f"wrote {a.out}: {len(model.graph.node)} nodes, {len(model.graph.initializer)} "
          f"initializers ({n_w} external), file {os.path.getsize(a.out)} bytes, "
          f"weights {b.offset if a.weights != 'inline' else 'inline'} bytes"
          + (f" in {b.weights_name} ({'written' if a.weights == 'external' else 'not written'})"
             if a.weights != "inline" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
