"""Repeated and concurrent compiles: memory stays flat, threads get their own results."""
import threading

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import lpcc
from conftest import ROOT


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def small_model(width=32, n_layers=3):
    rng = np.random.default_rng(width)
    nodes, inits, x = [], [], "x"
    for i in range(n_layers):
        inits.append(numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"], name=f"layers.{i}/MatMul"))
        x = f"h{i}"
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", width])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_thousand_compiles_keep_rss_flat():
    data = small_model().SerializeToString()
    want = lpcc.compile(data, dims={"batch": 4}).to_json()
    for _ in range(100):  # warm-up: allocator pools and interned strings settle
        lpcc.compile(data, dims={"batch": 4})
    try:
        lpcc.compile(data, dims={"batch": 4}, capacity="1KiB")
    except lpcc.InfeasiblePlan:
        pass
    before = rss_bytes()
    for i in range(1000):
        plan = lpcc.compile(data, dims={"batch": 4})
        if i % 100 == 0:  # the error path frees what it built, too
            try:
                lpcc.compile(data, dims={"batch": 4}, capacity="1KiB")
            except lpcc.InfeasiblePlan:
                pass
    grown = rss_bytes() - before
    assert plan.to_json() == want
    # a leak of even 4 KiB a compile would add 4 MiB
    assert grown < 4 << 20, f"RSS grew {grown} bytes over 1000 compiles"


def test_concurrent_compiles_of_different_models():
    models = {w: small_model(width=w).SerializeToString() for w in (16, 32, 48, 64)}
    seed = str(ROOT / "models" / "seed_2x256.onnx")
    serial = {w: lpcc.compile(m, dims={"batch": 2}).to_json() for w, m in models.items()}
    serial["seed"] = lpcc.compile(seed, dims={"batch": 1, "seq": 16}).to_json()
    results, errors = {}, []

    def work(key):
        try:
            for _ in range(20):
                if key == "seed":
                    got = lpcc.compile(seed, dims={"batch": 1, "seq": 16}).to_json()
                else:
                    got = lpcc.compile(models[key], dims={"batch": 2}).to_json()
                results.setdefault(key, set()).add(got)
                try:  # errors of one thread stay that thread's
                    lpcc.compile(models[16] if key == "seed" else seed, shapes={"nope": [1]})
                except lpcc.UsageError as e:
                    assert "no input named 'nope'" in e.message
        except Exception as e:  # reported below, from the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in list(models) + ["seed"] for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert {k: v for k, v in results.items()} == {k: {v} for k, v in serial.items()}


def test_the_gil_is_released_while_compiling():
    """Another Python thread runs while a compile is under way."""
    seed = str(ROOT / "models" / "seed_16x8192.onnx")
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.0005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        for _ in range(3):
            lpcc.compile(seed, dims={"batch": 16, "seq": 1})
    finally:
        done.set()
        t.join()
    assert len(ticks) > 3
