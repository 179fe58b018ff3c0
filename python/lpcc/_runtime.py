"""lpcc.Runtime: runs a compiled folder (lpcc.compile(..., out_dir=DIR))."""
from __future__ import annotations


class Runtime:
    def __init__(self, out_dir: str, device: str = "cpu"):
        raise NotImplementedError("lpcc.Runtime is not built yet")
