"""lpcc.Runtime on the CPU path against ONNX Runtime."""
import numpy as np
import onnxruntime as ort
import pytest

import lpcc
from test_api import mlp


def reference(model, feeds):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


@pytest.mark.parametrize("capacity", [None, "40KiB"], ids=["one card", "several cards"])
def test_runtime_matches_onnxruntime(tmp_path, capacity):
    m = mlp(n_layers=4, width=64)
    plan = lpcc.compile(m, dims={"batch": 2}, dtype="fp32", capacity=capacity, out_dir=str(tmp_path),
                        no_build=True)
    assert (len(plan.cards) > 1) == (capacity is not None)
    rt = lpcc.Runtime(str(tmp_path))
    assert rt.inputs == [("x", np.float32, (2, 64))]
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    got = rt.run({"x": x})
    want = reference(m, {"x": x})
    assert list(got) == list(want) == ["h3"]
    assert got["h3"].dtype == np.float32 and got["h3"].shape == (2, 64)
    np.testing.assert_allclose(got["h3"], want["h3"], rtol=1e-4, atol=1e-4)
    # a second step with other inputs gives other outputs
    got2 = rt.run({"x": x * 2})
    np.testing.assert_allclose(got2["h3"], reference(m, {"x": x * 2})["h3"], rtol=1e-4, atol=1e-4)


def test_runtime_errors(tmp_path):
    with pytest.raises(lpcc.ModelError) as e:
        lpcc.Runtime(str(tmp_path / "nothing"))
    assert "manifest.json" in e.value.message
    lpcc.compile(mlp(), dims={"batch": 2}, dtype="fp32", out_dir=str(tmp_path / "ok"), no_build=True)
    rt = lpcc.Runtime(str(tmp_path / "ok"))
    with pytest.raises(lpcc.UsageError, match="shape"):
        rt.run({"x": np.zeros((3, 64), np.float32)})
    with pytest.raises(lpcc.UsageError, match="no input named 'y'"):
        rt.run({"y": np.zeros((2, 64), np.float32)})
