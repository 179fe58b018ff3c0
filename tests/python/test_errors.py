"""Every exception type with its fields, as the command reports them."""
import subprocess

import onnx
import pytest
from onnx import TensorProto, helper

import lpcc
from conftest import ROOT

SEED = ROOT / "models" / "seed_2x256.onnx"


def one_node(op, in_shapes, name="n0"):
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, s) for i, s in enumerate(in_shapes)]
    g = helper.make_graph([helper.make_node(op, [i.name for i in ins], ["y"], name=name)], "g", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_hierarchy():
    for cls in (lpcc.ModelError, lpcc.InfeasiblePlan, lpcc.UsageError, lpcc.OutputError,
                lpcc.InternalError):
        assert issubclass(cls, lpcc.Error) and issubclass(cls, Exception)


def test_model_error_names_the_node():
    with pytest.raises(lpcc.ModelError) as e:
        lpcc.compile(one_node("MatMul", [[2, 3], [4, 5]], name="mm0"))
    err = e.value
    assert (err.node_index, err.node_name, err.op) == (0, "mm0", "MatMul")
    assert err.message == "node 0 'mm0' (MatMul): inner dims differ: 3 and 4"
    assert err.exit_code == 1 and err.file == "<memory>"
    assert str(err) == "<memory>: " + err.message
    assert "<memory>: error: node 0 'mm0'" in err.diagnostics


def test_model_error_of_a_file_matches_the_command(lpcc_bin, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(lpcc.ModelError) as e:
        lpcc.compile(str(bad))
    p = subprocess.run([lpcc_bin, str(bad), "--dtype", "fp16"], capture_output=True, text=True)
    assert p.returncode == e.value.exit_code == 1
    assert p.stderr == e.value.diagnostics
    assert e.value.file == str(bad) and e.value.node_index is None


def test_garbage_bytes_are_a_model_error():
    with pytest.raises(lpcc.ModelError) as e:
        lpcc.compile(b"\x08\x07garbage")
    assert "not an ONNX model" in e.value.message


def test_infeasible_plan_fields(lpcc_bin):
    with pytest.raises(lpcc.InfeasiblePlan) as e:
        lpcc.compile(str(SEED), dims={"batch": 1, "seq": 16}, capacity="64KiB")
    err = e.value
    assert err.exit_code == 3
    assert (err.layer, err.layer_name) == (0, "layers.0")
    assert err.capacity == 64 * 1024
    assert set(err.bytes_by_kind) == {"weights", "activations", "buffers", "boundary", "alignment"}
    assert err.bytes_by_kind["activations"] == 72 * 1024 and err.bytes_by_kind["alignment"] == 254
    # the parts add up to the total the message states, within its rounding
    assert abs(sum(err.bytes_by_kind.values()) - err.needed_bytes) < 0.01 * err.needed_bytes
    assert err.op == "LayerNormalization" and err.node_index == 0
    assert any("int8" in n for n in err.would_fit) and err.would_fit == err.notes
    p = subprocess.run([lpcc_bin, str(SEED), "--dim", "batch=1", "--dim", "seq=16", "--dtype", "fp16",
                        "--layers", "auto", "--target", "h100", "--algo", "greedy",
                        "--capacity", "64KiB"], capture_output=True, text=True)
    assert p.returncode == 3 and p.stderr == err.diagnostics


@pytest.mark.parametrize("kwargs, text", [
    ({"shapes": {"nope": [1, 2]}}, "no input named 'nope'"),
    ({"dtype": "fp8"}, "--dtype fp8: expected fp16, bf16, fp32 or keep"),
    ({"algo": "magic"}, "magic"),
    ({"layers": "scope:0"}, "--layers scope:0"),
])
def test_usage_errors(kwargs, text):
    with pytest.raises(lpcc.UsageError) as e:
        lpcc.compile(str(SEED), **{"dims": {"batch": 1, "seq": 16}, **kwargs})
    assert e.value.exit_code == 2 and text in e.value.message


def test_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(lpcc.OutputError) as e:
        lpcc.compile(str(SEED), dims={"batch": 1, "seq": 16}, out_dir=str(blocker / "out"))
    assert e.value.exit_code == 4


def test_wrong_model_type_is_a_type_error():
    with pytest.raises(TypeError):
        lpcc.compile(12345)
