"""Times the seed model's dense layer on the GPU, the way lpcc's throughput
model predicts it: N layers (hidden 8192 = 16 heads x 512, MLP 32768, FP16)
run back to back inside one CUDA graph, for a few token counts.

    python3 bench/gpu/seed_layer_bench.py > seed_layer.json

Prints JSON: {"device", "runs": [{"layers", "batch", "seq", "ms"}]} with the
median of 20 graph replays after warm-up.
"""
import json
import sys

import torch
import torch.nn.functional as F

HIDDEN, HEADS, MLP = 8192, 16, 32768


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(HIDDEN)
        self.qkv = torch.nn.Linear(HIDDEN, 3 * HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, HIDDEN)
        self.ln2 = torch.nn.LayerNorm(HIDDEN)
        self.up = torch.nn.Linear(HIDDEN, MLP)
        self.down = torch.nn.Linear(MLP, HIDDEN)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, HEADS, HIDDEN // HEADS).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.out(a.transpose(1, 2).reshape(b, s, HIDDEN))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


def time_graph(model, batch, seq):
    x = torch.randn(batch, seq, HIDDEN, device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        model(x)
    for _ in range(3):
        graph.replay()
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del graph
    return sorted(times)[len(times) // 2]


def main():
    torch.manual_seed(0)
    layers = [Layer().cuda().half().eval() for _ in range(16)]
    runs = []
    for n in (16, 4, 1):
        model = torch.nn.Sequential(*layers[:n])
        for batch, seq in ((16, 1), (1, 2048), (4, 2048)):
            ms = time_graph(model, batch, seq)
            runs.append({"layers": n, "batch": batch, "seq": seq, "ms": round(ms, 4)})
            print(json.dumps(runs[-1]), file=sys.stderr)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
