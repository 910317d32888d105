"""Make torchvision importable next to a CPU-only torch whose ABI its compiled ops do not match.

Why: on machines where the only torchvision wheel is a CUDA build, its `_C` extension fails to
load against the CPU torch. torchvision then still registers fake (meta) kernels for
`torchvision::nms` and `torchvision::qnms`, which raises "operator torchvision::nms does not
exist" at import time, and open_clip imports torchvision. Defining the two op *schemas* (no
kernels) first lets the import succeed; nothing in this project calls those detection ops.

`ensure_torchvision()` must run before the first import of open_clip or torchvision. Where
torchvision's own ops load (a matching wheel, a GPU machine) it does nothing.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

# Schemas exactly as torchvision's csrc/ops/nms.cpp and quantized/qnms declare them.
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it unregisters the schemas
_STATE = {"patched": False}


def _op_exists(name: str) -> bool:
    try:
        torch._C._get_schema(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def _native_ops_load() -> bool:
    """Try torchvision's compiled ops the way torchvision itself does (True if they load)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: nothing to patch; the importer reports the missing package
    folder = Path(next(iter(spec.submodule_search_locations)))
    libs = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
        return True
    except (OSError, RuntimeError):
        return False


def ensure_torchvision() -> bool:
    """Define the missing op schemas if torchvision's ops cannot load. Returns True if it patched."""
    global _LIBRARY
    if "torchvision" in sys.modules or _STATE["patched"]:
        return _STATE["patched"]
    if _native_ops_load():
        return False
    missing = [name for name in _SCHEMAS if not _op_exists(name)]
    if missing:
        _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _LIBRARY.define(_SCHEMAS[name])
    _STATE["patched"] = True
    return True
