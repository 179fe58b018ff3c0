"""lpcc.Runtime: runs a folder that lpcc.compile(..., out_dir=DIR) wrote (lp_runtime.h)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import _lpcc

# ONNX TensorProto element types -> numpy (lp_dtype uses ONNX's numbering)
_NUMPY = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}

_INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def _raise(report, file):
    from . import _ERRORS, Error, InternalError
    code, message, diagnostics = report
    notes = [line.split(": note: ", 1)[1] for line in diagnostics.splitlines() if ": note: " in line]
    cls = _ERRORS.get(code, InternalError)
    raise cls(message, exit_code=code, status="", file=file, diagnostics=diagnostics, notes=notes)


class Runtime:
    """Runs a compiled folder on the CPU reference path ("cpu") or on CUDA
    GPUs ("cuda", where the package was built with CUDA):

        rt = lpcc.Runtime("out/")
        outputs = rt.run({"input_ids": ids})   # {name: numpy array}
    """

    def __init__(self, out_dir: str, device: str = "cpu", include_dir: Optional[str] = None):
        self.out_dir = os.fspath(out_dir)
        include = include_dir or os.environ.get("LPCC_RUNTIME_INCLUDE") or _INCLUDE
        handle, report = _lpcc.rt_open(self.out_dir, device, include)
        if handle is None:
            _raise(report, self.out_dir)
        self._rt = handle
        ins, outs = _lpcc.rt_io(handle)
        self.inputs: List[Tuple[str, Any, Tuple[int, ...]]] = [(n, _NUMPY.get(t), d) for n, t, d, _ in ins]
        self.outputs: List[Tuple[str, Any, Tuple[int, ...]]] = [(n, _NUMPY.get(t), d) for n, t, d, _ in outs]

    def run(self, feeds: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """One step: feeds by input name (cast to the manifest's dtype when
        lossless, shapes checked); returns {output name: numpy array}."""
        from . import UsageError
        unknown = set(feeds) - {n for n, _, _ in self.inputs}
        if unknown:
            raise UsageError(f"no input named '{sorted(unknown)[0]}'", exit_code=2, status="usage error",
                             file=self.out_dir, diagnostics="", notes=[])
        buffers = []
        for name, dt, dims in self.inputs:
            if name not in feeds:
                raise UsageError(f"input '{name}' is not given", exit_code=2, status="usage error",
                                 file=self.out_dir, diagnostics="", notes=[])
            a = np.asarray(feeds[name])
            if tuple(a.shape) != tuple(dims):
                raise UsageError(f"input '{name}' has shape {list(a.shape)}; the program takes {list(dims)}",
                                 exit_code=2, status="usage error", file=self.out_dir, diagnostics="",
                                 notes=[])
            if dt is not None and a.dtype != dt:
                if not np.can_cast(a.dtype, dt, casting="same_kind"):
                    raise UsageError(f"input '{name}' is {a.dtype}; the program takes {np.dtype(dt)}",
                                     exit_code=2, status="usage error", file=self.out_dir,
                                     diagnostics="", notes=[])
                a = a.astype(dt)
            buffers.append(np.ascontiguousarray(a))
        report, outs = _lpcc.rt_run(self._rt, buffers)
        if outs is None:
            _raise(report, self.out_dir)
        result = {}
        for (name, dt, dims), data in zip(self.outputs, outs):
            result[name] = None if data is None else np.frombuffer(data, dtype=dt).reshape(dims).copy()
        return result

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {np.dtype(t).name if t else '?'}{list(d)}" for n, t, d in self.inputs)
        return f"<lpcc.Runtime {self.out_dir}: {ins}>"
