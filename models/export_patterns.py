#!/usr/bin/env python3
"""Export small PyTorch models that carry the exporters' patterns lpcc must handle.

Needs torch, onnx, onnxscript and onnxruntime.  Usage:

    python3 models/export_patterns.py --out DIR

Writes into DIR (every weight random, torch.manual_seed(0)):
    pad_opset17.onnx        F.pad + Conv, TorchScript exporter (dynamo=False), opset 17:
                            the pads built as ConstantOfShape -> Concat -> Reshape ->
                            Slice(steps -1) -> Transpose -> Reshape -> Cast
    anchor_grid.onnx        YOLO-style anchor grid: arange over float(W), float(H) from
                            Shape -> Gather -> Cast(float), TorchScript exporter, opset 17,
                            H and W symbolic
    mobilenet_small.onnx    MobileNetV2-style CNN (inverted residual blocks), dynamo=True,
                            opset 18, with the module-path metadata
    batch1_export.onnx      a small MLP-with-reshape model exported with dynamo=True from
                            an example batch of 1 while asking for a symbolic batch
    if_shape.onnx           a TorchScript-scripted branch on x.shape[1] (an If node whose
                            condition depends only on shapes), opset 17
    patterns_report.json    per model: the exporter, opset, op counts, graph input shapes,
                            and whether ONNX Runtime reproduces torch
"""

import argparse
import collections
import json
import os
import traceback

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

REPORT = {}


class PadConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.relu(self.conv(F.pad(x, (1, 2, 3, 4))))


class AnchorGrid(nn.Module):
    """Adds to each cell its (x, y) position, as YOLO heads build their grids."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        h, w = y.shape[2], y.shape[3]
        gx = torch.arange(w, dtype=torch.float32)
        gy = torch.arange(h, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij"), 0)
        return y + grid.unsqueeze(0)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
                                nn.BatchNorm2d(mid), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_res else y


class MobileNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        cfg = [(16, 16, 1), (16, 24, 2), (24, 24, 1), (24, 32, 2), (32, 32, 1), (32, 32, 1)]
        self.blocks = nn.Sequential(*[InvertedResidual(a, b, s, 4) for a, b, s in cfg])
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        y = self.blocks(self.stem(x))
        return self.head(y.mean((2, 3)))


class Batch1Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32)

    def forward(self, x):
        b, s, _ = x.shape
        y = self.down(torch.relu(self.up(x)))
        return y.reshape(b, s, 4, 8).transpose(1, 2).reshape(b, 4, s * 8)


class IfShape(nn.Module):
    def forward(self, x):
        if x.shape[1] > 4:
            return x.reshape(x.shape[0], -1) * 2.0
        return x.transpose(0, 1) + 1.0


def describe(path):
    m = onnx.load(path)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    ins = []
    for i in m.graph.input:
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value
                for d in i.type.tensor_type.shape.dim]
        ins.append({"name": i.name, "dims": dims})
    return {"opset": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
            "nodes": len(m.graph.node), "ops": dict(ops), "inputs": ins,
            "metadata_nodes": sum(1 for n in m.graph.node if len(n.metadata_props))}


def check_ort(path, model, feeds):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    for feed in feeds:
        with torch.no_grad():
            ref = model(*[torch.from_numpy(a) for a in feed])
        out = sess.run(None, dict(zip(names, feed)))[0]
        worst = max(worst, float(np.abs(out - ref.numpy()).max()))
    return worst


def save(name, out, model, feeds, export):
    path = os.path.join(out, name)
    rep = {}
    try:
        export(path)
        onnx.checker.check_model(path)
        rep.update(describe(path))
        rep["ort_max_abs_diff"] = check_ort(path, model, feeds)
        rep["ok"] = True
    except Exception:
        rep["ok"] = False
        rep["error"] = traceback.format_exc()[-3000:]
    REPORT[name] = rep
    print(name, json.dumps({k: v for k, v in rep.items() if k != "ops"})[:600], flush=True)


def dynamo(model, args, dyn, opset):
    def export(path):
        prog = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=dyn, opset_version=opset)
        prog.save(path)
    return export


def torchscript(model, args, names, dyn_axes, opset):
    def export(path):
        torch.onnx.export(model, args, path, dynamo=False, opset_version=opset,
                          input_names=names, output_names=["y"], dynamic_axes=dyn_axes)
    return export


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def img(b, h, w):
        return rng.standard_normal((b, 3, h, w)).astype(np.float32)

    m = PadConv().eval()
    save("pad_opset17.onnx", out, m, [[img(2, 16, 16)]],
         torchscript(m, (torch.randn(1, 3, 16, 16),), ["x"], {"x": {0: "batch"}}, 17))

    m = AnchorGrid().eval()
    save("anchor_grid.onnx", out, m, [[img(1, 8, 12)], [img(2, 5, 7)]],
         torchscript(m, (torch.randn(1, 3, 8, 12),), ["x"], {"x": {0: "batch", 2: "h", 3: "w"}}, 17))

    m = MobileNetSmall().eval()
    save("mobilenet_small.onnx", out, m, [[img(2, 32, 32)]],
         dynamo(m, (torch.randn(2, 3, 32, 32),), {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}, 18))

    m = Batch1Mlp().eval()
    x1 = rng.standard_normal((1, 6, 32)).astype(np.float32)
    save("batch1_export.onnx", out, m, [[x1]],
         dynamo(m, (torch.from_numpy(x1),), {"x": {0: "batch", 1: "seq"}}, 18))

    m = torch.jit.script(IfShape())
    xs = [rng.standard_normal((3, 6)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)]
    save("if_shape.onnx", out, IfShape(), [[xs[0]], [xs[1]]],
         torchscript(m, (torch.randn(3, 6),), ["x"], {"x": {0: "n", 1: "k"}}, 17))

    REPORT["env"] = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    with open(os.path.join(out, "patterns_report.json"), "w") as f:
        json.dump(REPORT, f, indent=1)


if __name__ == "__main__":
    main()
