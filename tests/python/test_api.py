"""lpcc.compile / lpcc.analyze against the lpcc command: the same plan.json, byte for byte."""
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lpcc
from conftest import MODELS, ROOT, model_dims

EXIT_CLASS = {1: lpcc.ModelError, 2: lpcc.UsageError, 3: lpcc.InfeasiblePlan,
              4: lpcc.OutputError, 5: lpcc.InternalError}


def cli_plan(lpcc_bin, model, dims, tmp_path, extra=()):
    out = tmp_path / "cli"
    argv = [lpcc_bin, str(model), "--dtype", "fp16", "-o", str(out), "--no-build", *extra]
    for k, v in dims.items():
        argv += ["--dim", f"{k}={v}"]
    p = subprocess.run(argv, capture_output=True, text=True)
    plan = (out / "plan.json").read_bytes() if p.returncode == 0 else None
    return p, plan


def error_message(stderr):
    """The message of the command's error line ("FILE: error: MESSAGE")."""
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert lines, stderr
    return lines[-1].split(": error: ", 1)[1]


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_plan_json_matches_cli(lpcc_bin, model, tmp_path):
    dims = model_dims(model)
    p, want = cli_plan(lpcc_bin, model, dims, tmp_path)
    if p.returncode != 0:
        # a model the command does not plan fails the same way here
        with pytest.raises(EXIT_CLASS[p.returncode]) as e:
            lpcc.compile(str(model), dims=dims)
        assert e.value.exit_code == p.returncode
        assert e.value.message == error_message(p.stderr)
        return
    plan = lpcc.compile(str(model), dims=dims)
    assert plan.to_json() == want
    doc = json.loads(want)
    assert plan.cards == doc["cards"] and plan.totals == doc["totals"]
    assert plan.transfers == doc["transfers"]
    assert plan.cards and plan.cards[0]["first_layer"] == 0


def test_every_model_is_planned_somewhere(lpcc_bin, tmp_path):
    """The comparison above is not vacuous: most bundled models do plan."""
    planned = sum(cli_plan(lpcc_bin, m, model_dims(m), tmp_path / m.stem)[0].returncode == 0
                  for m in MODELS)
    assert planned >= len(MODELS) - 2, planned


SEED = ROOT / "models" / "seed_2x256.onnx"
SEED_DIMS = {"batch": 1, "seq": 16}


def without_model(doc_bytes):
    doc = json.loads(doc_bytes)
    doc.pop("model")
    return doc


def test_bytes_and_modelproto_plan_like_the_path():
    by_path = lpcc.compile(str(SEED), dims=SEED_DIMS)
    proto = onnx.load(str(SEED))
    by_proto = lpcc.compile(proto, dims=SEED_DIMS)
    by_bytes = lpcc.compile(SEED.read_bytes(), dims=SEED_DIMS)

    class Exported:  # what torch.onnx.export(..., dynamo=True) returns: an ONNXProgram
        model_proto = proto

    by_program = lpcc.compile(Exported(), dims=SEED_DIMS)
    want = without_model(by_path.to_json())
    for p in (by_proto, by_bytes, by_program):
        assert without_model(p.to_json()) == want
        assert p.doc["model"] == "<memory>"
    assert by_path.doc["model"] == str(SEED)


def test_external_data_resolves_against_base_dir():
    ext = ROOT / "models" / "seed_4x256_ext.onnx"
    proto = onnx.load(str(ext), load_external_data=False)
    by_path = lpcc.compile(str(ext), dims=SEED_DIMS)
    by_proto = lpcc.compile(proto, dims=SEED_DIMS, base_dir=str(ext.parent))
    assert without_model(by_proto.to_json()) == without_model(by_path.to_json())
    assert by_proto.doc["model"] == os.path.join(str(ext.parent), "<memory>")
    with pytest.raises(TypeError):
        lpcc.compile(str(ext), base_dir=str(ext.parent))


def mlp(n_layers=4, width=64, batch="batch"):
    """An export pipeline's model in memory: n_layers MatMul + Relu, weights inline."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "x"
    for i in range(n_layers):
        w = f"w{i}"
        inits.append(numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), w))
        nodes.append(helper.make_node("MatMul", [x, w], [f"mm{i}"], name=f"layers.{i}/MatMul"))
        nodes.append(helper.make_node("Relu", [f"mm{i}"], [f"h{i}"], name=f"layers.{i}/Relu"))
        x = f"h{i}"
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, width])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_export_pipeline_in_memory():
    m = mlp()
    plan = lpcc.compile(m, dims={"batch": 2}, capacity="40KiB", dtype="fp32")
    assert plan.totals["cards_used"] == len(plan.cards) >= 2
    assert plan.cards[0]["first_layer"] == 0
    assert plan.cards[-1]["last_layer"] == plan.doc["n_layers"] - 1
    for a, b in zip(plan.cards, plan.cards[1:]):
        assert b["first_layer"] == a["last_layer"] + 1
    assert len(plan.transfers) == len(plan.cards) - 1
    cards = plan.card_models()
    assert len(cards) == len(plan.cards)
    assert all(isinstance(c, onnx.ModelProto) for c in cards)
    onnx.checker.check_model(cards[0])
    html = plan._repr_html_()
    assert html.count("<tr>") == len(plan.cards) + 1 and "fill" in html
    assert repr(plan).startswith(f"<lpcc.Plan: {len(plan.cards)} card(s)")


def test_out_dir_writes_what_the_command_writes(lpcc_bin, tmp_path):
    out = tmp_path / "py"
    plan = lpcc.compile(str(SEED), dims=SEED_DIMS, out_dir=str(out), no_build=True)
    p, want = cli_plan(lpcc_bin, SEED, SEED_DIMS, tmp_path)
    assert p.returncode == 0
    assert (out / "plan.json").read_bytes() == plan.to_json() == want
    assert plan.card_models() == [str(out / f"card_{k}.onnx") for k in range(len(plan.cards))]
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "cli"))


def test_analyze_layers_match_the_command(lpcc_bin, tmp_path):
    L = lpcc.analyze(str(SEED), dims=SEED_DIMS)
    cli_plan(lpcc_bin, SEED, SEED_DIMS, tmp_path)
    assert L.to_json() == (tmp_path / "cli" / "layers.json").read_bytes()
    assert len(L) == json.loads((tmp_path / "cli" / "plan.json").read_bytes())["n_layers"] == 3
    assert [layer["name"] for layer in L][:1] == ["layers.0"]
    assert L.graph["nodes"] and "<lpcc.Layers: 3 layers>" in repr(L)


def test_compare_is_in_the_plan():
    plan = lpcc.compile(str(SEED), dims=SEED_DIMS, compare={"tp": 2, "pp": 1})
    assert plan.comparison is not None and plan.comparison == plan.doc["comparison"]


def test_tier_is_the_commands(lpcc_bin, tmp_path):
    path = os.path.join(ROOT, "models", "seed_2x256.onnx")
    dims = {"batch": 1, "seq": 16}
    plan = lpcc.compile(path, dims=dims, target="h200", tier="smem")
    doc = json.loads(plan.to_json())
    assert doc["target"]["tier"] == "smem"
    assert doc["target"]["capacity"] == 132 * 227 * 1024
    out = tmp_path / "cli"
    subprocess.run([lpcc_bin, path, "--dim", "batch=1", "--dim", "seq=16", "--dtype", "fp16",
                    "--target", "h200", "--tier", "smem", "-q", "--no-build", "-o", str(out)], check=True)
    assert json.loads((out / "plan.json").read_text())["target"] == doc["target"]
    with pytest.raises(lpcc.UsageError) as e:
        lpcc.compile(path, dims=dims, target="h100", tier="smem")
    assert "no measured shared-memory bandwidth" in e.value.message
