"""Fixtures of the lpcc package's tests: the repository, its models and the lpcc command."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = sorted((ROOT / "models").glob("*.onnx"))


def lpcc_command():
    """The lpcc command the package is checked against: $LPCC_BIN or build/cli/lpcc."""
    path = os.environ.get("LPCC_BIN") or str(ROOT / "build" / "cli" / "lpcc")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the lpcc command is not built at {path} (make build, or set LPCC_BIN)")
    return path


@pytest.fixture(scope="session")
def lpcc_bin():
    return lpcc_command()


def model_dims(path):
    """One binding per symbolic dim of the model's inputs: small sizes that every model takes."""
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    sizes = {"batch": 1, "seq": 16, "h": 8, "w": 8, "n": 2, "k": 6}
    dims = {}
    for i in m.graph.input:
        for d in i.type.tensor_type.shape.dim:
            if d.dim_param:
                dims[d.dim_param] = sizes.get(d.dim_param, 4)
    return dims
