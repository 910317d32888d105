"""Loading pickles without executing code: an unpickler that rebuilds numpy arrays and plain containers only.

Why: `pickle.load` calls whatever callable the file names, so a downloaded `.pkl` can run any
command. This unpickler resolves only an allow-list of globals; every other one is refused before
anything is called. (The official CLIP4CMR code loads its features with plain pickle.)
"""
from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

from cmr_demo.data.types import DataError

# Plain containers and scalars that pickles of dicts/lists of arrays may name (sets, bytes, ...).
ALLOWED_BUILTINS = frozenset({
    "list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
    "bytearray", "bool", "slice", "range"})
# What numpy's own pickles name to rebuild arrays, dtypes and scalars. numpy 2 writes `numpy._core`,
# numpy 1 wrote `numpy.core`; `numeric._frombuffer` is how arrays come back under protocol 5.
ALLOWED_NUMPY = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")})


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes; other codecs are not needed."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise DataError(f"pickle asks _codecs.encode for codec '{encoding}'; only latin-1 is allowed")
    return text.encode("latin1", errors)


def _numpy_core(submodule: str) -> Any:
    """numpy's private core submodule, under whichever name this numpy has (`_core` from 2.0)."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{submodule}")


def _resolve(module: str, name: str) -> Any | None:
    """The allowed object for a pickle global (after py2 name mapping), or None when refused."""
    if (module, name) in _compat_pickle.NAME_MAPPING:  # e.g. __builtin__.xrange -> builtins.range
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # e.g. __builtin__ -> builtins
    if module == "builtins" and name in ALLOWED_BUILTINS:
        return getattr(builtins, name)
    if module == "_codecs" and name == "encode":
        return _latin1_encode
    if (module, name) in ALLOWED_NUMPY:
        return getattr(importlib.import_module("numpy"), name)
    prefix, _, submodule = module.rpartition(".")
    if prefix in ("numpy.core", "numpy._core") and (submodule, name) in ALLOWED_NUMPY:
        return getattr(_numpy_core(submodule), name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dtypes, scalars and builtin containers; refuses every other global."""

    def __init__(self, file, source: str = "<pickle>") -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _resolve(module, name)
        if found is None:
            hint = (" (torch tensors: save them as numpy arrays with .numpy())"
                    if module.split(".")[0] == "torch" else "")
            raise DataError(
                f"{self.source}: refused to load global '{module}.{name}'. Only numpy arrays and plain "
                f"Python containers/scalars are allowed; the file may be malicious and is never "
                f"executed. Re-save the data as a dict of numpy arrays{hint}, or as .npz.")
        return found


def safe_load(path: str | Path) -> object:
    """Unpickle `path` with RestrictedUnpickler; any refusal or corruption is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pickle file not found: {path}")
    with path.open("rb") as f:
        try:
            return RestrictedUnpickler(f, source=str(path)).load()
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
                KeyError, TypeError, ValueError, OverflowError, MemoryError) as e:
            raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); "
                            f"re-create the file or check that the download is complete") from e
