#!/usr/bin/env python3
"""lpcc's compiled programs against PyTorch on one GPU, side by side in one
run (PyTorch's kernels inside a CUDA graph, median of replays; lpcc:
`lpcc-run DIR --device cuda --iters N --json`, the card's step replayed as a
CUDA graph, median of CUDA-event times).

    python3 bench/gpu/gpu_bench.py --lpcc build/cli/lpcc --out bench/gpu/gpu_bench_h200.json

1. seed: the seed's dense layer (hidden 8192 = 16 heads x 512, MLP 32768,
   fp16) at 16 tokens a step (batch 16 x seq 1), one layer compiled from
   models/gen_seed.py's graph with real random weights; PyTorch runs the same
   module tree (q/k/v/out projections, two LayerNorms, GELU MLP, final norm).
2. models: each small model of models/ end to end on one card (fp32 and
   fp16), PyTorch running the same architecture and config
   (models/export_torch.py's builders) at the same input shapes.
3. resident: a seed-structure layer of hidden 1024, MLP 4096 (25 MB fp16) at
   16 tokens, its weights re-read every step, with the bytes-over-time rate.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "models"))


def graph_time_us(fn, reps=50):
    """Median microseconds of one replay of fn captured in a CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        fn()
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    times.sort()
    return times[len(times) // 2]


class SeedLayer(torch.nn.Module):
    """The module tree gen_seed.py's graph is written from, plus its final norm."""

    def __init__(self, hidden, heads, mlp):
        super().__init__()
        self.h, self.heads = hidden, heads
        self.ln1 = torch.nn.LayerNorm(hidden)
        self.q = torch.nn.Linear(hidden, hidden)
        self.k = torch.nn.Linear(hidden, hidden)
        self.v = torch.nn.Linear(hidden, hidden)
        self.o = torch.nn.Linear(hidden, hidden)
        self.ln2 = torch.nn.LayerNorm(hidden)
        self.fc1 = torch.nn.Linear(hidden, mlp)
        self.fc2 = torch.nn.Linear(mlp, hidden)
        self.norm = torch.nn.LayerNorm(hidden)

    def forward(self, x):
        b, s, _ = x.shape
        y = self.ln1(x)
        sh = (b, s, self.heads, self.h // self.heads)
        q, k, v = (t(y).view(sh).transpose(1, 2) for t in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, self.h))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return self.norm(x)


def lpcc_compile(lpcc, model, args, out):
    r = subprocess.run([lpcc, model, *args, "-q", "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"lpcc {model}: {r.stderr}")


def lpcc_time_us(run, folder, iters=100):
    r = subprocess.run([run, folder, "--device", "cuda", "--iters", str(iters), "--warmup", "5", "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"lpcc-run {folder}: {r.stderr[-2000:]}")
    rep = json.loads(r.stdout)
    return rep["latency_s"] * 1e6, rep


def seed_layer(lpcc, run, tmp, hidden, heads, mlp, tokens):
    model = os.path.join(tmp, f"seed_{hidden}.onnx")
    subprocess.run([sys.executable, os.path.join(ROOT, "models", "gen_seed.py"), "--layers", "1",
                    "--hidden", str(hidden), "--heads", str(heads), "--mlp", str(mlp), "--weights",
                    "external", "--out", model], check=True, capture_output=True)
    out = os.path.join(tmp, f"seed_{hidden}_out")
    lpcc_compile(lpcc, model, ["--dim", f"batch={tokens}", "--dim", "seq=1", "--dtype", "fp16",
                               "--cards", "1", "--capacity", "1TiB"], out)
    ours, rep = lpcc_time_us(run, out)
    torch.manual_seed(0)
    m = SeedLayer(hidden, heads, mlp).cuda().half().eval()
    x = torch.randn(tokens, 1, hidden, device="cuda", dtype=torch.float16)
    theirs = graph_time_us(lambda: m(x))
    weight_bytes = sum(p.numel() * p.element_size() for p in m.parameters())
    return {"hidden": hidden, "mlp": mlp, "tokens": tokens, "weight_bytes": weight_bytes,
            "lpcc_us": ours, "torch_graph_us": theirs, "ratio": ours / theirs,
            "lpcc_bytes_per_s": weight_bytes / (ours * 1e-6),
            "torch_bytes_per_s": weight_bytes / (theirs * 1e-6),
            "l2_pinned": rep["cards"][0].get("l2_pinned"),
            "gpu_taken_bytes": rep["cards"][0].get("gpu_taken_bytes"),
            "planned_bytes": rep["cards"][0]["planned_bytes"]}


def small_models(lpcc, run, tmp):
    import export_torch as et
    rows = []
    builders = {"bert_tiny": et.make_bert, "gpt2_tiny": et.make_gpt2_tiny, "llama_tiny": et.make_llama}
    for name, make in builders.items():
        for dtype in ("fp32", "fp16"):
            out = os.path.join(tmp, f"{name}_{dtype}")
            lpcc_compile(lpcc, os.path.join(ROOT, "models", f"{name}.onnx"),
                         ["--dim", "batch=1", "--dim", "seq=16", "--dtype", dtype, "--cards", "1",
                          "--capacity", "1TiB"], out)
            ours, _ = lpcc_time_us(run, out)
            torch.manual_seed(0)
            m = make().eval().cuda()
            # PyTorch's own attention (the transformers default), not the
            # eager path the ONNX export was traced with
            if hasattr(m, "set_attn_implementation"):
                m.set_attn_implementation("sdpa")
            else:
                m.config._attn_implementation = "sdpa"
            if dtype == "fp16":
                m = m.half()
            ids = torch.randint(0, 10, (1, 16), device="cuda")
            # an all-ones mask is the same as none; without one the models
            # build nothing on the host, which a graph could not capture
            try:
                theirs = graph_time_us(lambda: m(input_ids=ids))
            except Exception as e:  # noqa: BLE001  (recorded; the other models still run)
                import traceback
                rows.append({"model": name, "dtype": dtype, "lpcc_us": ours,
                             "torch_error": traceback.format_exc()[-1500:]})
                torch.cuda.synchronize()
                continue
            rows.append({"model": name, "dtype": dtype, "inputs": "1x16", "lpcc_us": ours,
                         "torch_graph_us": theirs, "ratio": ours / theirs})
    import export_patterns as ep
    # the image models and their PyTorch modules (same architecture, random weights)
    images = [("cnn_small", getattr(et, "SmallResNet", None)), ("mobilenet_small", ep.MobileNetSmall)]
    for name, cls in images:
        if cls is None:
            continue
        for dtype in ("fp32", "fp16"):
            out = os.path.join(tmp, f"{name}_{dtype}")
            lpcc_compile(lpcc, os.path.join(ROOT, "models", f"{name}.onnx"),
                         ["--dim", "batch=1", "--dtype", dtype, "--cards", "1", "--capacity", "1TiB"], out)
            ours, _ = lpcc_time_us(run, out)
            torch.manual_seed(0)
            m = cls().eval().cuda()
            x = torch.randn(1, 3, 32, 32, device="cuda")
            if dtype == "fp16":
                m, x = m.half(), x.half()
            theirs = graph_time_us(lambda: m(x))
            rows.append({"model": name, "dtype": dtype, "inputs": "1x3x32x32", "lpcc_us": ours,
                         "torch_graph_us": theirs, "ratio": ours / theirs})
    # the seed structure at 2 layers of 256 (models/seed_2x256.onnx)
    for dtype in ("fp32", "fp16"):
        out = os.path.join(tmp, f"seed_2x256_{dtype}")
        lpcc_compile(lpcc, os.path.join(ROOT, "models", "seed_2x256.onnx"),
                     ["--dim", "batch=1", "--dim", "seq=16", "--dtype", dtype, "--cards", "1",
                      "--capacity", "1TiB"], out)
        ours, _ = lpcc_time_us(run, out)
        torch.manual_seed(0)
        layers = [SeedLayer(256, 4, 1024) for _ in range(2)]
        for l in layers[:-1]:
            l.norm = torch.nn.Identity()  # the graph has one final norm
        m = torch.nn.Sequential(*layers).eval().cuda()
        x = torch.randn(1, 16, 256, device="cuda")
        if dtype == "fp16":
            m, x = m.half(), x.half()
        theirs = graph_time_us(lambda: m(x))
        rows.append({"model": "seed_2x256", "dtype": dtype, "inputs": "1x16x256", "lpcc_us": ours,
                     "torch_graph_us": theirs, "ratio": ours / theirs})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lpcc", default=os.path.join(ROOT, "build", "cli", "lpcc"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default="seed,resident,models")
    a = ap.parse_args()
    run = os.path.join(os.path.dirname(a.lpcc), "lpcc-run")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tmp = tempfile.mkdtemp(prefix="gpu_bench.")
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    only = a.only.split(",")
    for key, fn in (("resident", lambda: seed_layer(a.lpcc, run, tmp, 1024, 16, 4096, 16)),
                    ("seed", lambda: seed_layer(a.lpcc, run, tmp, 8192, 16, 32768, 16)),
                    ("models", lambda: small_models(a.lpcc, run, tmp))):
        if key not in only:
            continue
        try:
            res[key] = fn()
        except Exception as e:  # noqa: BLE001  (recorded, the others still run)
            res[key] = {"error": str(e)[-3000:]}
        print(json.dumps({key: res[key]}), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
