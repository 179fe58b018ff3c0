#!/usr/bin/env python3
"""Export small reference models with torch.onnx.export(dynamo=True).

Needs torch, transformers, onnx, onnxscript and onnxruntime.  Usage:

    python3 models/export_torch.py --out DIR

Writes into DIR:
    bert_tiny.onnx        BertModel, hidden 128, 2 layers, 2 heads, vocab 1000
    gpt2_tiny.onnx        GPT2Model, n_embd 128, 2 layers, 2 heads, vocab 1000
    llama_tiny.onnx       LlamaModel, hidden 128, 2 layers, 4 heads / 2 kv heads
    cnn_small.onnx        small ResNet-style CNN, input [batch, 3, 32, 32]
    seed_ref_torch.onnx   2-layer FP16 version of the seed transformer block,
                          written in plain torch (reference for the metadata
                          that gen_seed.py reproduces)
    gpt2_full_graph.onnx  GPT-2 small (12 layers, 768, vocab 50257); weights
                          go to gpt2_full_graph.onnx.data, which is left in a
                          separate work directory and is not part of DIR
    export_report.json    opsets, node counts, op lists, metadata examples,
                          onnxruntime-vs-torch differences

All weights are random (torch.manual_seed(0)).  Batch and sequence dims are
exported as the symbolic dims "batch" and "seq".
"""

import argparse
import inspect
import json
import math
import os
import shutil
import sys
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

OPSET = 18

REPORT = {"env": {}, "models": {}}


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------
# model definitions written in torch
# --------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.downsample = None

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class SmallResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class SeedAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        b, s, h = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        p = torch.softmax(scores, dim=-1)
        o = torch.matmul(p, v).transpose(1, 2).reshape(b, s, h)
        return self.out_proj(o)


class SeedMLP(nn.Module):
    def __init__(self, hidden, mlp):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp, hidden)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SeedLayer(nn.Module):
    def __init__(self, hidden, heads, mlp):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = SeedAttention(hidden, heads)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = SeedMLP(hidden, mlp)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SeedTransformer(nn.Module):
    def __init__(self, layers=2, hidden=64, heads=4, mlp=256):
        super().__init__()
        self.layers = nn.ModuleList([SeedLayer(hidden, heads, mlp) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden)

    def forward(self, hidden_states):
        x = hidden_states
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class LastHidden(nn.Module):
    """Fallback wrapper: returns only the last hidden state tensor."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        out = self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                     return_dict=True)
        return out.last_hidden_state


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def rename_dims(model, want):
    """Rename symbolic dims of the graph inputs to the wanted names.

    want: {input_name: {axis: name}}.  Every occurrence of the old dim_param
    in inputs, outputs and value_info is renamed."""
    mapping = {}
    for inp in model.graph.input:
        if inp.name not in want:
            continue
        dims = inp.type.tensor_type.shape.dim
        for ax, name in want[inp.name].items():
            d = dims[ax]
            if d.HasField("dim_param") and d.dim_param != name:
                mapping[d.dim_param] = name
    if not mapping:
        return {}
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if not vi.type.HasField("tensor_type"):
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in mapping:
                d.dim_param = mapping[d.dim_param]
    return mapping


def io_desc(vis):
    out = []
    for vi in vis:
        tt = vi.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in tt.shape.dim]
        out.append({"name": vi.name, "elem_type": onnx.TensorProto.DataType.Name(tt.elem_type),
                    "shape": dims})
    return out


def describe(path, with_data=True):
    m = onnx.load(path, load_external_data=False)
    ops = sorted({(n.domain or "") + ("::" if n.domain else "") + n.op_type for n in m.graph.node})
    keys = set()
    for n in m.graph.node:
        for p in n.metadata_props:
            keys.add(p.key)
    examples = []
    seen_types = set()
    for n in m.graph.node:
        md = {p.key: p.value for p in n.metadata_props}
        if n.op_type in seen_types or not md:
            continue
        if n.op_type in ("MatMul", "Gemm", "LayerNormalization", "Softmax", "Conv", "Reshape",
                         "Gelu", "Add", "Transpose", "BatchNormalization", "Concat", "Shape",
                         "Gather", "Erf", "Div", "Mul"):
            seen_types.add(n.op_type)
            examples.append({"name": n.name, "op_type": n.op_type, "inputs": list(n.input),
                             "outputs": list(n.output), "metadata_props": md,
                             "attributes": [a.name for a in n.attribute]})
    n_ext = sum(1 for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    d = {
        "file_size": os.path.getsize(path),
        "ir_version": m.ir_version,
        "opset_import": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "producer": f"{m.producer_name} {m.producer_version}",
        "model_metadata_props": {p.key: p.value for p in m.metadata_props},
        "nodes": len(m.graph.node),
        "initializers": len(m.graph.initializer),
        "external_initializers": n_ext,
        "functions": len(m.functions),
        "ops": ops,
        "op_counts": {},
        "node_metadata_keys": sorted(keys),
        "inputs": io_desc(m.graph.input),
        "outputs": io_desc(m.graph.output),
        "first_node_names": [n.name for n in m.graph.node[:25]],
        "metadata_examples": examples,
    }
    for n in m.graph.node:
        d["op_counts"][n.op_type] = d["op_counts"].get(n.op_type, 0) + 1
    return d


def to_numpy(t):
    return t.detach().cpu().numpy()


def flatten_out(o):
    if isinstance(o, torch.Tensor):
        return [o]
    if hasattr(o, "to_tuple"):
        o = o.to_tuple()
    if isinstance(o, (list, tuple)):
        r = []
        for x in o:
            if x is not None:
                r.extend(flatten_out(x))
        return r
    return []


def verify(path, model, feeds_list):
    """Run the ONNX file with onnxruntime and compare with torch eager."""
    res = {}
    m = onnx.load(path)  # loads external data if any
    try:
        onnx.checker.check_model(path, full_check=False)
        res["checker"] = "ok"
    except Exception as e:  # noqa: BLE001
        res["checker"] = f"FAIL: {e}"
    try:
        onnx.shape_inference.infer_shapes(m, strict_mode=False)
        res["shape_inference"] = "ok"
    except Exception as e:  # noqa: BLE001
        res["shape_inference"] = f"FAIL: {e}"
    del m
    so = ort.SessionOptions()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    runs = []
    for feeds in feeds_list:
        with torch.no_grad():
            ref = flatten_out(model(**feeds))
        ort_in = {k: to_numpy(v) for k, v in feeds.items() if k in in_names}
        outs = sess.run(None, ort_in)
        diffs = []
        for r, o in zip(ref, outs):
            r = to_numpy(r).astype(np.float64)
            o = np.asarray(o).astype(np.float64)
            if r.shape != o.shape:
                diffs.append(f"shape torch {r.shape} vs ort {o.shape}")
            else:
                diffs.append(float(np.max(np.abs(r - o))) if r.size else 0.0)
        runs.append({"input_shapes": {k: list(v.shape) for k, v in feeds.items()},
                     "n_outputs": len(outs), "finite": bool(all(np.isfinite(o).all() for o in outs)),
                     "max_abs_diff_per_output": diffs})
    res["runs"] = runs
    return res


def export_dynamo(model, kwargs, dyn, opset):
    return torch.onnx.export(model, (), kwargs=kwargs, dynamo=True, dynamic_shapes=dyn,
                             opset_version=opset)


def save_program(prog, path, external):
    sig = inspect.signature(prog.save)
    if "external_data" in sig.parameters:
        prog.save(path, external_data=external)
    else:
        prog.save(path)


def inline_weights(path):
    """Make sure all weights are inside the .onnx file; remove side files."""
    d = os.path.dirname(os.path.abspath(path))
    before = set(os.listdir(d))
    m = onnx.load(path, load_external_data=True)
    ext = [t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    locs = set()
    mm = onnx.load(path, load_external_data=False)
    for t in mm.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                locs.add(e.value)
    onnx.save_model(m, path, save_as_external_data=False)
    for loc in locs:
        p = os.path.join(d, loc)
        if os.path.exists(p):
            os.remove(p)
    return {"had_external": bool(locs or ext), "removed": sorted(locs), "dir_before": sorted(before)}


def run_one(name, workdir, outdir, builder, external=False, copy=True):
    log(f"\n===== {name} =====")
    t0 = time.time()
    rep = {"attempts": []}
    REPORT["models"][name] = rep
    try:
        model, attempts, feeds_list = builder()
    except Exception:  # noqa: BLE001
        rep["error"] = traceback.format_exc()
        log(rep["error"])
        return
    path = os.path.join(workdir, name + ".onnx")
    ok = False
    for label, fn in attempts:
        log(f"-- attempt {label}")
        ta = time.time()
        try:
            used_model, want_dims = fn(path)
            rep["attempts"].append({"label": label, "ok": True, "seconds": round(time.time() - ta, 1)})
            ok = True
            break
        except Exception:  # noqa: BLE001
            tb = traceback.format_exc()
            rep["attempts"].append({"label": label, "ok": False, "error": tb[-4000:]})
            log(tb[-4000:])
    if not ok:
        rep["error"] = "all attempts failed"
        return
    rep["export_method"] = rep["attempts"][-1]["label"]
    if not external:
        rep["inline"] = inline_weights(path)
    # symbolic dim names
    m = onnx.load(path, load_external_data=False)
    mapping = rename_dims(m, want_dims)
    if mapping:
        rep["renamed_dims"] = mapping
        if external:
            onnx.save_model(m, path)  # external references are kept as they are
        else:
            m = onnx.load(path, load_external_data=True)
            rename_dims(m, want_dims)
            onnx.save_model(m, path, save_as_external_data=False)
    del m
    rep["files_in_workdir"] = sorted(f for f in os.listdir(workdir) if f.startswith(name))
    try:
        rep["verify"] = verify(path, used_model, feeds_list)
    except Exception:  # noqa: BLE001
        rep["verify"] = {"error": traceback.format_exc()[-4000:]}
    rep.update(describe(path))
    rep["seconds"] = round(time.time() - t0, 1)
    if copy:
        shutil.copy(path, os.path.join(outdir, name + ".onnx"))
    short = {k: rep.get(k) for k in ("export_method", "ir_version", "opset_import", "nodes",
                                     "file_size", "ops", "inputs", "outputs", "verify",
                                     "seconds")}
    log(json.dumps(short, indent=1, default=str))
    with open(os.path.join(outdir, "export_report.json"), "w") as f:
        json.dump(REPORT, f, indent=1, default=str)


# --------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------

def text_feeds(vocab, batch, seq, gen):
    ids = torch.randint(0, vocab, (batch, seq), generator=gen, dtype=torch.long)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if batch > 1 and seq > 3:
        mask[1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def hf_builder(make_model, vocab):
    def builder():
        torch.manual_seed(0)
        model = make_model().eval()
        gen = torch.Generator().manual_seed(1)
        ex = text_feeds(vocab, 2, 8, gen)
        feeds_list = [text_feeds(vocab, 2, 8, gen), text_feeds(vocab, 3, 5, gen)]
        want = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
        str_dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}

        def a_direct(path):
            prog = export_dynamo(model, ex, str_dyn, OPSET)
            save_program(prog, path, False)
            return model, want

        wrapped = LastHidden(model).eval()

        def a_wrap_dims(path):
            b = torch.export.Dim("batch", min=1, max=1024)
            s = torch.export.Dim("seq", min=1, max=128)
            dyn = {"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}
            prog = export_dynamo(wrapped, ex, dyn, OPSET)
            save_program(prog, path, False)
            return wrapped, want

        def a_wrap_default_opset(path):
            prog = torch.onnx.export(wrapped, (), kwargs=ex, dynamo=True, dynamic_shapes=str_dyn)
            save_program(prog, path, False)
            return wrapped, want

        def a_torchscript(path):
            torch.onnx.export(wrapped, (ex["input_ids"], ex["attention_mask"]), path,
                              dynamo=False, opset_version=OPSET,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                            "attention_mask": {0: "batch", 1: "seq"},
                                            "last_hidden_state": {0: "batch", 1: "seq"}})
            return wrapped, want

        attempts = [("dynamo=True direct, str dims, opset %d" % OPSET, a_direct),
                    ("dynamo=True wrapper, Dim objects, opset %d" % OPSET, a_wrap_dims),
                    ("dynamo=True wrapper, default opset", a_wrap_default_opset),
                    ("dynamo=False (TorchScript) wrapper", a_torchscript)]
        return model, attempts, feeds_list
    return builder


def set_eager(cfg):
    try:
        cfg._attn_implementation = "eager"
    except Exception:  # noqa: BLE001
        pass
    return cfg


def make_bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=128, type_vocab_size=2)
    return BertModel(set_eager(cfg))


def make_gpt2_tiny():
    from transformers import GPT2Config, GPT2Model
    cfg = GPT2Config(vocab_size=1000, n_embd=128, n_layer=2, n_head=2, n_positions=128,
                     use_cache=False)
    return GPT2Model(set_eager(cfg))


def make_gpt2_full():
    from transformers import GPT2Config, GPT2Model
    cfg = GPT2Config(use_cache=False)  # GPT-2 small: 12 x 768, vocab 50257, 1024 positions
    return GPT2Model(set_eager(cfg))


def make_llama():
    from transformers import LlamaConfig, LlamaModel
    cfg = LlamaConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=344, max_position_embeddings=128,
                      use_cache=False)
    return LlamaModel(set_eager(cfg))


def cnn_builder():
    torch.manual_seed(0)
    model = SmallResNet()
    with torch.no_grad():  # non-trivial BN statistics
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    ex = {"x": torch.randn(2, 3, 32, 32, generator=gen)}
    feeds_list = [{"x": torch.randn(2, 3, 32, 32, generator=gen)},
                  {"x": torch.randn(5, 3, 32, 32, generator=gen)}]
    want = {"x": {0: "batch"}}

    def a_direct(path):
        prog = export_dynamo(model, ex, {"x": {0: "batch"}}, OPSET)
        save_program(prog, path, False)
        return model, want

    def a_dim(path):
        prog = export_dynamo(model, ex, {"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
                             OPSET)
        save_program(prog, path, False)
        return model, want

    def a_ts(path):
        torch.onnx.export(model, (ex["x"],), path, dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        return model, want

    return model, [("dynamo=True str dims", a_direct), ("dynamo=True Dim", a_dim),
                   ("dynamo=False", a_ts)], feeds_list


def seed_ref_builder():
    torch.manual_seed(0)
    model = SeedTransformer(layers=2, hidden=64, heads=4, mlp=256).half().eval()
    gen = torch.Generator().manual_seed(1)

    def f(b, s):
        return {"hidden_states": torch.randn(b, s, 64, generator=gen).half()}
    ex = f(2, 8)
    feeds_list = [f(2, 8), f(3, 5)]
    want = {"hidden_states": {0: "batch", 1: "seq"}}
    dyn = {"hidden_states": {0: "batch", 1: "seq"}}

    def a20(path):
        prog = export_dynamo(model, ex, dyn, 20)
        save_program(prog, path, False)
        return model, want

    def a18(path):
        prog = export_dynamo(model, ex, dyn, 18)
        save_program(prog, path, False)
        return model, want

    return model, [("dynamo=True opset 20", a20), ("dynamo=True opset 18", a18)], feeds_list


def gpt2_full_builder():
    model, attempts, feeds_list = hf_builder(make_gpt2_full, 50257)()
    feeds_list = feeds_list[:1]
    ex = text_feeds(50257, 2, 8, torch.Generator().manual_seed(1))
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    want = dyn

    def a_ext(path):
        prog = export_dynamo(model, ex, dyn, OPSET)
        save_program(prog, path, True)
        return model, want

    def a_ext_f(path):
        torch.onnx.export(model, (), path, kwargs=ex, dynamo=True, dynamic_shapes=dyn,
                          opset_version=OPSET, external_data=True)
        return model, want

    return model, [("dynamo=True external data (prog.save)", a_ext),
                   ("dynamo=True external data (f=path)", a_ext_f)], feeds_list


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--work", default="/tmp/onnx_export_work")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    import onnxscript
    import transformers
    REPORT["env"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                     "onnxruntime": ort.__version__, "python": sys.version,
                     "export_signature": str(inspect.signature(torch.onnx.export))}
    log(json.dumps(REPORT["env"], indent=1))
    jobs = [
        ("seed_ref_torch", seed_ref_builder, False, True),
        ("cnn_small", cnn_builder, False, True),
        ("bert_tiny", hf_builder(make_bert, 1000), False, True),
        ("gpt2_tiny", hf_builder(make_gpt2_tiny, 1000), False, True),
        ("llama_tiny", hf_builder(make_llama, 1000), False, True),
        ("gpt2_full_graph", gpt2_full_builder, True, True),
    ]
    for name, b, ext, copy in jobs:
        if args.only and name not in args.only.split(","):
            continue
        run_one(name, args.work, args.out, b, external=ext, copy=copy)
        with open(os.path.join(args.out, "export_report.json"), "w") as f:
            json.dump(REPORT, f, indent=1, default=str)
    log("\nsummary:")
    bad = 0
    for name, r in REPORT["models"].items():
        v = r.get("verify", {})
        log(f"  {name}: method={r.get('export_method')} nodes={r.get('nodes')} "
            f"size={r.get('file_size')} checker={v.get('checker')} "
            f"runs={[x.get('max_abs_diff_per_output') for x in v.get('runs', [])]}")
        if "error" in r:
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
