"""python -m lpcc against the lpcc command: the same stdout, stderr and exit code."""
import subprocess
import sys

import pytest

from conftest import ROOT

SEED = str(ROOT / "models" / "seed_2x256.onnx")


@pytest.mark.parametrize("args, code", [
    (["--version"], 0),
    (["--help"], 0),
    ([SEED, "--dim", "batch=1", "--dim", "seq=16"], 0),
    ([SEED, "--dim", "batch=1", "--dim", "seq=16", "--cards", "2", "--algo", "dp"], 0),
    ([SEED, "--dim", "batch=1", "--dim", "seq=16", "--dump-ir=plan", "--json"], 0),
    ([SEED, "--dump-ir=layers"], 1),  # symbolic dims unbound: a model error
    ([], 2),
    (["--bogus", SEED], 2),
    ([SEED, "--dtype", "fp8"], 2),
    ([str(ROOT / "models" / "missing.onnx")], 1),
    ([SEED, "--dim", "batch=1", "--dim", "seq=16", "--capacity", "64KiB"], 3),
], ids=lambda a: " ".join(a) if isinstance(a, list) else str(a))
def test_python_m_lpcc_is_the_command(lpcc_bin, args, code):
    want = subprocess.run([lpcc_bin, *args], capture_output=True, cwd=ROOT)
    got = subprocess.run([sys.executable, "-m", "lpcc", *args], capture_output=True, cwd=ROOT)
    assert want.returncode == code
    assert got.returncode == want.returncode
    assert got.stdout == want.stdout
    assert got.stderr == want.stderr


def test_python_m_lpcc_writes_the_same_folder(lpcc_bin, tmp_path):
    args = [SEED, "--dim", "batch=1", "--dim", "seq=16", "--no-build", "-q"]
    subprocess.run([lpcc_bin, *args, "-o", str(tmp_path / "a")], check=True)
    subprocess.run([sys.executable, "-m", "lpcc", *args, "-o", str(tmp_path / "b")], check=True)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and "plan.json" in names
    for n in ("plan.json", "manifest.json", "card_0.onnx", "card_0.weights"):
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
