"""lpcc: plan and compile an ONNX model over cards' on-chip memory, in-process.

    import lpcc
    plan = lpcc.compile("model.onnx", dims={"batch": 1, "seq": 128})
    print(plan)                      # the cards, their fill and predicted stage time
    open("plan.json", "wb").write(plan.to_json())

`model` is a path, ``bytes``, an ``onnx.ModelProto`` or anything with a
``model_proto`` attribute (PyTorch's ONNXProgram). The compiler is the same C
pipeline as the ``lpcc`` command (run with the GIL released); its errors are
raised as :class:`ModelError`, :class:`InfeasiblePlan` or :class:`UsageError`.
"""
from __future__ import annotations

import html
import json
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _lpcc

__version__ = "0.1.0"
__all__ = ["compile", "analyze", "Plan", "Layers", "Runtime", "Error", "ModelError",
           "InfeasiblePlan", "UsageError", "OutputError", "InternalError", "main"]

# ---- errors ------------------------------------------------------------------


class Error(Exception):
    """An lpcc error: `message` is what the command prints after "error: ",
    `exit_code` the command's exit status, `diagnostics` all it printed on
    stderr, `notes` the notes that follow the error."""

    def __init__(self, message: str, *, exit_code: int, status: str, file: Optional[str],
                 diagnostics: str, notes: List[str]):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status
        self.file = file
        self.diagnostics = diagnostics
        self.notes = notes

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" if self.file else self.message


class ModelError(Error):
    """Invalid or unsupported model (exit 1). `node_index` (position in the
    model file), `node_name` and `op` are set when the error is at a node."""
    node_index: Optional[int] = None
    node_name: Optional[str] = None
    op: Optional[str] = None


class UsageError(Error):
    """A bad option value (exit 2), e.g. an unknown input in `shapes`."""


class InfeasiblePlan(Error):
    """No plan fits the cards (exit 3). For a layer no card holds: `layer`,
    `layer_name`, `needed_bytes`, `capacity` (bytes, as the message rounds
    them), `bytes_by_kind` (weights, activations, buffers, boundary,
    alignment) and `would_fit` (the notes saying what would fit)."""
    node_index: Optional[int] = None
    node_name: Optional[str] = None
    op: Optional[str] = None
    layer: Optional[int] = None
    layer_name: Optional[str] = None
    needed_bytes: Optional[int] = None
    capacity: Optional[int] = None
    bytes_by_kind: Optional[Dict[str, int]] = None

    @property
    def would_fit(self) -> List[str]:
        return self.notes


class OutputError(Error):
    """The output folder cannot be written (exit 4)."""


class InternalError(Error):
    """An internal error (exit 5)."""


_ERRORS = {1: ModelError, 2: UsageError, 3: InfeasiblePlan, 4: OutputError, 5: InternalError}
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}
_SIZE = r"([0-9.]+ (?:B|KiB|MiB|GiB|TiB|PiB))"
_NODE_RE = re.compile(r"^node (-?\d+) '(.*?)' \((.*?)\): ")
_OVERSIZE_RE = re.compile(
    r"layer (\d+) '(.*?)' needs " + _SIZE + r" on one card but a card holds " + _SIZE +
    r" .*?: weights " + _SIZE + r" \+ activations " + _SIZE + r" \+ buffers " + _SIZE +
    r" \+ boundary " + _SIZE + r" \+ alignment " + _SIZE)


def _size(text: str) -> int:
    number, unit = text.split(" ")
    return int(round(float(number) * _UNITS[unit]))


def _error(r: Mapping[str, Any], file: Optional[str]) -> Error:
    msg = r["error"] or r["status"]
    notes = [line.split(": note: ", 1)[1] for line in r["err"].splitlines() if ": note: " in line]
    cls = _ERRORS.get(r["exit_code"], InternalError)
    e = cls(msg, exit_code=r["exit_code"], status=r["status"], file=file, diagnostics=r["err"],
            notes=notes)
    m = _NODE_RE.match(msg)
    if m and isinstance(e, (ModelError, InfeasiblePlan)):
        e.node_index, e.node_name, e.op = int(m.group(1)), m.group(2), m.group(3)
    m = _OVERSIZE_RE.search(msg)
    if m and isinstance(e, InfeasiblePlan):
        e.layer, e.layer_name = int(m.group(1)), m.group(2)
        e.needed_bytes, e.capacity = _size(m.group(3)), _size(m.group(4))
        kinds = ("weights", "activations", "buffers", "boundary", "alignment")
        e.bytes_by_kind = {k: _size(m.group(5 + i)) for i, k in enumerate(kinds)}
    return e


# ---- inputs ------------------------------------------------------------------

ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]


def _model_source(model: ModelLike, base_dir: Optional[str]):
    """(name, bytes or None): a path is read by the loader; anything else is
    serialised and handed over in memory, named after base_dir (where its
    external data resolves)."""
    if isinstance(model, (str, os.PathLike)):
        if base_dir is not None:
            raise TypeError("base_dir= is for in-memory models; a path's external data "
                            "resolves against its own folder")
        return os.fspath(model), None
    if hasattr(model, "model_proto") and not hasattr(model, "SerializeToString"):
        model = model.model_proto
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    if isinstance(model, (bytearray, memoryview)):
        model = bytes(model)
    if not isinstance(model, bytes):
        raise TypeError(f"model must be a path, bytes, an onnx.ModelProto or have a model_proto "
                        f"attribute, not {type(model).__name__}")
    name = "<memory>"
    if base_dir is not None:
        name = os.path.join(os.fspath(base_dir), name)
    return name, model


def _shape_text(dims: Iterable[int]) -> str:
    return "x".join(str(int(d)) for d in dims)


def _value_text(name: str, v: Any) -> str:
    if isinstance(v, (str, os.PathLike)):
        return f"{name}={os.fspath(v)}"
    try:
        import numpy as np
        flat = np.asarray(v).reshape(-1).tolist()
    except ImportError:
        flat = list(v) if isinstance(v, (list, tuple)) else [v]
    return f"{name}=" + ",".join(str(x).lower() if isinstance(x, bool) else str(x) for x in flat)


def _argv(name: str, *, dims=None, shapes=None, values=None, dtype="fp16", layers="auto",
          target="h100", cards=None, capacity=None, algo="greedy", pins=None, cut_after=None,
          out_dir=None, compare=None, no_split=False, no_build=False, plan=None, workspace=None,
          verbose=False, tier=None) -> List[str]:
    argv = ["lpcc"]
    for k, v in (dims or {}).items():
        argv += ["--dim", f"{k}={int(v)}"]
    if shapes:
        argv += ["--shapes", ",".join(f"{k}:{_shape_text(v)}" for k, v in shapes.items())]
    for k, v in (values or {}).items():
        argv += ["--value", _value_text(k, v)]
    if dtype is not None:
        argv += ["--dtype", str(dtype)]
    if layers is not None:
        argv += ["--layers", str(layers)]
    if workspace is not None:
        argv += ["--workspace", os.fspath(workspace)]
    if target is not None:
        argv += ["--target", os.fspath(target)]
    if tier is not None:
        argv += ["--tier", str(tier)]
    if cards is not None:
        argv += ["--cards", str(int(cards))]
    if capacity is not None:
        if isinstance(capacity, (list, tuple)):
            capacity = ",".join(str(c) for c in capacity)
        argv += ["--capacity", str(capacity)]
    if algo is not None:
        argv += ["--algo", str(algo)]
    if no_split:
        argv += ["--no-split"]
    if plan is not None:
        argv += ["--plan", os.fspath(plan)]
    if cut_after is not None:
        if isinstance(cut_after, (list, tuple)):
            cut_after = ",".join(str(c) for c in cut_after)
        argv += ["--cut-after", str(cut_after)]
    for pattern, card in (pins or {}).items():
        argv += ["--pin", f"{pattern}={int(card)}"]
    if compare is not None:
        if isinstance(compare, Mapping):
            compare = ",".join(f"{k}={v}" for k, v in compare.items())
        argv += ["--compare", str(compare)]
    if out_dir is not None:
        argv += ["-o", os.fspath(out_dir)]
    if no_build:
        argv += ["--no-build"]
    if verbose:
        argv += ["-v"]
    return argv + ["--", name]


def _invoke(model, base_dir, want_plan, want_layers, **options):
    name, data = _model_source(model, base_dir)
    argv = _argv(name, **options)
    r = _lpcc.invoke(argv, data, want_plan, want_layers)
    if r["exit_code"] != 0:
        raise _error(r, name)
    return name, r


# ---- results -----------------------------------------------------------------

def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


class Layers:
    """The model's layers as lpcc groups them, with shapes and footprints:
    `layers` is layers.json's list, `graph` graph.json's document."""

    def __init__(self, layers_json: bytes, graph_json: bytes, report: str, warnings: int):
        self._layers_json = layers_json
        self._graph_json = graph_json
        self.doc: Dict[str, Any] = json.loads(layers_json)
        self.graph: Dict[str, Any] = json.loads(graph_json)
        self.layers: List[Dict[str, Any]] = self.doc.get("layers", [])
        self.report = report
        self.warnings = warnings

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def to_json(self) -> bytes:
        """layers.json's bytes."""
        return self._layers_json

    def __repr__(self) -> str:
        return f"<lpcc.Layers: {len(self.layers)} layers>\n{self.report}"


_CARD_COLUMNS = ("card", "first_layer", "last_layer", "weight_bytes", "activation_bytes",
                 "buffer_bytes", "boundary_bytes", "total_bytes", "fill", "stage_s")


class Plan:
    """A plan: `cards` (layer ranges, bytes by kind, fill, predicted stage
    time), `transfers`, `totals`, `comparison` (when `compare=` was given),
    `to_json()` (plan.json's bytes) and `card_models()`."""

    def __init__(self, plan_json: bytes, report: str, out_dir: Optional[str], warnings: int):
        self._json = plan_json
        self.doc: Dict[str, Any] = json.loads(plan_json)
        self.cards: List[Dict[str, Any]] = self.doc["cards"]
        self.transfers: List[Dict[str, Any]] = self.doc["transfers"]
        self.totals: Dict[str, Any] = self.doc["totals"]
        self.comparison: Optional[Dict[str, Any]] = self.doc.get("comparison")
        self.report = report
        self.out_dir = out_dir
        self.warnings = warnings

    def to_json(self) -> bytes:
        """The plan.json document, byte for byte as `lpcc -o` writes it."""
        return self._json

    def card_models(self):
        """The card sub-models: their paths in out_dir when compiled with
        out_dir=, else onnx.ModelProto objects (the models written to a
        folder that is removed afterwards)."""
        if self.out_dir is not None:
            names = sorted((f for f in os.listdir(self.out_dir) if re.fullmatch(r"card_\d+\.onnx", f)),
                           key=lambda f: int(f[5:-5]))
            return [os.path.join(self.out_dir, f) for f in names]
        if self._models is None:
            raise Error("card models are written by compile(..., out_dir=DIR)", exit_code=2,
                        status="usage error", file=None, diagnostics="", notes=[])
        return self._models

    _models: Optional[list] = None

    def __repr__(self) -> str:
        t = self.totals
        head = (f"<lpcc.Plan: {t['cards_used']} card(s), slowest stage "
                f"{t['slowest_stage_s'] * 1e6:.2f} us, {len(self.transfers)} transfer(s)>")
        return head + "\n" + self.report if self.report else head

    def _repr_html_(self) -> str:
        rows = []
        for c in self.cards:
            rows.append("<tr>" + "".join(
                f"<td>{html.escape(v)}</td>" for v in (
                    str(c["card"]), f"{c['first_layer']}..{c['last_layer']}",
                    _fmt_bytes(c["weight_bytes"]), _fmt_bytes(c["activation_bytes"]),
                    _fmt_bytes(c["buffer_bytes"]), _fmt_bytes(c["boundary_bytes"]),
                    _fmt_bytes(c["total_bytes"]), f"{c['fill'] * 100:.1f}%",
                    f"{c['stage_s'] * 1e6:.2f}")) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in ("card", "layers", "weights", "activations",
                                                  "buffers", "boundary", "total", "fill",
                                                  "stage (us)"))
        t = self.totals
        return (f"<table><caption>lpcc plan of {html.escape(str(self.doc['model']))}: "
                f"{t['cards_used']} card(s), {len(self.transfers)} transfer(s), latency "
                f"{t['latency_s'] * 1e6:.2f} us</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")


# ---- the API -----------------------------------------------------------------

def compile(model: ModelLike, *, dims: Optional[Mapping[str, int]] = None,
            shapes: Optional[Mapping[str, Sequence[int]]] = None,
            values: Optional[Mapping[str, Any]] = None, dtype: Optional[str] = "fp16",
            layers: Optional[str] = "auto", target: Optional[str] = "h100",
            cards: Optional[int] = None, capacity: Union[None, int, str, Sequence] = None,
            algo: Optional[str] = "greedy", pins: Optional[Mapping[str, int]] = None,
            cut_after: Union[None, str, Sequence] = None, out_dir: Optional[str] = None,
            base_dir: Optional[str] = None, compare: Union[None, str, Mapping[str, int]] = None,
            no_split: bool = False, no_build: bool = False, plan: Optional[str] = None,
            workspace: Optional[str] = None, verbose: bool = False,
            tier: Optional[str] = None) -> Plan:
    """Plans (and with out_dir= compiles) `model`; the options are the
    command's (README), e.g. dims={"batch": 1} is --dim batch=1."""
    options = dict(dims=dims, shapes=shapes, values=values, dtype=dtype, layers=layers,
                   target=target, cards=cards, capacity=capacity, algo=algo, pins=pins,
                   cut_after=cut_after, out_dir=out_dir, compare=compare, no_split=no_split,
                   no_build=no_build, plan=plan, workspace=workspace, verbose=verbose, tier=tier)
    _, r = _invoke(model, base_dir, True, False, **options)
    result = Plan(r["plan_json"], r["out"], os.fspath(out_dir) if out_dir is not None else None,
                  r["n_warnings"])
    if out_dir is None:
        result._models = _card_models_in_memory(model, base_dir, options)
    return result


def _card_models_in_memory(model, base_dir, options):
    """A deferred list: the card models compiled into a temporary folder on first use."""
    return _LazyCardModels(model, base_dir, options)


class _LazyCardModels(list):
    def __init__(self, model, base_dir, options):
        super().__init__()
        self._args = (model, base_dir, options)
        self._done = False

    def _load(self):
        if self._done:
            return
        import tempfile
        import onnx
        model, base_dir, options = self._args
        with tempfile.TemporaryDirectory(prefix="lpcc-") as tmp:
            _invoke(model, base_dir, True, False, **dict(options, out_dir=tmp, no_build=True))
            for f in sorted((f for f in os.listdir(tmp) if re.fullmatch(r"card_\d+\.onnx", f)),
                            key=lambda f: int(f[5:-5])):
                self.append(onnx.load(os.path.join(tmp, f), load_external_data=False))
        self._done = True

    def __len__(self):
        self._load()
        return super().__len__()

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __getitem__(self, i):
        self._load()
        return super().__getitem__(i)

    def __repr__(self):
        self._load()
        return super().__repr__()


def analyze(model: ModelLike, *, dims: Optional[Mapping[str, int]] = None,
            shapes: Optional[Mapping[str, Sequence[int]]] = None,
            values: Optional[Mapping[str, Any]] = None, dtype: Optional[str] = "fp16",
            layers: Optional[str] = "auto", workspace: Optional[str] = None,
            base_dir: Optional[str] = None) -> Layers:
    """Shapes, layers and footprints without partitioning."""
    _, r = _invoke(model, base_dir, False, True, dims=dims, shapes=shapes, values=values,
                   dtype=dtype, layers=layers, workspace=workspace, target=None, algo=None)
    return Layers(r["layers_json"], r["graph_json"], r["out"], r["n_warnings"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The lpcc command (python -m lpcc): prints on this process's stdout and stderr."""
    import sys
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    return _lpcc.main(["lpcc"] + args)


from ._runtime import Runtime  # noqa: E402
