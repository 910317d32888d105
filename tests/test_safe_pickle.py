"""The restricted unpickler: numpy arrays and plain containers load; whatever could run code is refused."""
import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

from cmr_demo.data.safe_pickle import safe_load
from cmr_demo.data.types import DataError


def legit_payload() -> dict:
    return {
        "image": np.arange(12, dtype=np.float32).reshape(3, 4),
        "text": np.ones((3, 2), dtype=np.float64),
        "label": np.array([0, 2, 1]),
        "ids": np.array(["a", "b", "c"]),
        "names": np.array(["x", "y"], dtype=object),
        "record": np.zeros(2, dtype=[("a", "<f4"), ("b", "<U3")]),
        "scalars": [np.float32(1.5), np.int64(3), np.bool_(True), 1 + 2j, 7, 2.5, True, None],
        "containers": ({1, 2}, frozenset({"z"}), b"raw", b"", bytearray(b"ba"), range(3), slice(1, 5)),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    }


def assert_same(a, b) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tolist() == b.tolist()
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_loads_dict_of_numpy_arrays(tmp_path, protocol):
    payload = legit_payload()
    path = tmp_path / "features.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    assert_same(payload, safe_load(path))


def test_loads_numpy1_module_names(tmp_path):
    """Pickles written by numpy 1.x name `numpy.core.multiarray`; numpy 2 writes `numpy._core`."""
    data = pickle.dumps({"x": np.arange(3.0), "s": np.float32(2)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    out = safe_load(path)
    assert out["x"].tolist() == [0.0, 1.0, 2.0] and out["s"] == np.float32(2)


class _Evil:
    """Pickles to a call of `func(*args)`: what a malicious file does on plain `pickle.load`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    return {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.exec": _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Evil(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "subprocess.call": _Evil(subprocess.call, ["touch", str(marker)]),
        "builtins.open": _Evil(builtins.open, str(marker), "w"),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "builtins.eval", "subprocess.call",
                                  "builtins.open"])
def test_refuses_code_execution(tmp_path, protocol, name):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[name]
    # hidden inside an otherwise legitimate feature dict, after real arrays
    path = tmp_path / "clip_train.pkl"
    path.write_bytes(pickle.dumps({"image": np.zeros((2, 2)), "label": evil}, protocol=protocol))
    with pytest.raises(DataError) as err:
        safe_load(path)
    message = str(err.value)
    assert "refused" in message and "malicious" in message and str(path) in message
    assert ".system" in message or ".exec" in message or ".eval" in message or "open" in message \
        or ".call" in message
    assert not marker.exists()


def test_refused_global_is_named(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_Evil(os.system, "true"), protocol=4))
    with pytest.raises(DataError, match=r"'(posix|nt|os)\.system'"):
        safe_load(path)


@pytest.mark.parametrize("raw", [
    b"(Vtrue\nios\nsystem\n.",  # protocol-0 INST opcode: also resolved through find_class
    b"cnumpy\nload\n(Vx\ntR.",  # a numpy function that is not needed to rebuild arrays
    b"cnumpy.testing\nassert_\n(I1\ntR.",
    b"c_codecs\nencode\n(Vabc\nVrot13\ntR.",  # _codecs.encode is admitted for latin-1 only
    b"ccopyreg\n_reconstructor\n(cbuiltins\nobject\ncbuiltins\nobject\nNtR.",
])
def test_refuses_other_globals(tmp_path, raw):
    path = tmp_path / "x.pkl"
    path.write_bytes(raw)
    with pytest.raises(DataError):
        safe_load(path)


def test_torch_tensor_refused_with_hint(tmp_path):
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps({"image": torch.zeros(2, 3)}))
    with pytest.raises(DataError, match=r"torch.*\.numpy\(\)"):
        safe_load(path)


@pytest.mark.parametrize("raw", [b"", b"not a pickle at all", pickle.dumps([1, 2, 3])[:-3]])
def test_corrupt_file_is_data_error(tmp_path, raw):
    path = tmp_path / "broken.pkl"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="broken.pkl"):
        safe_load(path)


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match="nope.pkl"):
        safe_load(tmp_path / "nope.pkl")
