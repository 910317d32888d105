"""Files between stages: atomic writes, safetensors + JSON only, and loading with fit checks.

Why atomic: a trainer killed mid-write (kill -9, a full disk) must never leave a half file that a
later run takes as the latest checkpoint; we write a temporary file in the same folder, fsync it,
then rename over the target (rename is atomic on POSIX). Nothing here ever unpickles.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load, save as st_save


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged or does not fit what it is loaded for."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; artefacts are meant to be read by others (a served bundle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    """sha256 of a regular file of at most MAX_FILE_BYTES, streamed (weights files can be gigabytes)."""
    plain_file_size(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions recorded in every artefact, from package metadata (importing open_clip here would
    bypass the torchvision compat step)."""
    from importlib.metadata import PackageNotFoundError, version

    from cmr_demo import __version__

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"
    return {"cmr_demo": __version__, "python": platform.python_version(),
            **{name: of(name) for name in ("torch", "open_clip_torch", "numpy", "safetensors")}}


def save_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows of dicts as CSV, atomically; the columns are every key seen, in first-seen order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def load_csv(path: str | Path) -> list[dict]:
    """The rows `save_csv` wrote, as dicts of text."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


# an artefact file read whole, at most (a 50,000-item bundle's largest, its gallery features, is ~400 MB)
MAX_FILE_BYTES = int(float(os.environ.get("CMR_MAX_FILE_MB", "2048")) * 2 ** 20)


def plain_file_size(path: str | Path, limit: int = MAX_FILE_BYTES) -> int:
    """The size of `path` from the file system, or CheckpointError when it is missing, not a regular file (a device
    such as /dev/zero, a pipe, a folder: reading one never ends or fails late) or over `limit` (a sparse 3 GB file
    read whole took 4 GB before failing): checked before a byte is read."""
    import stat
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a device, a pipe or a folder): replace it with the file "
                              f"the manifest lists, or rebuild")
    if info.st_size > limit:
        raise CheckpointError(f"{path} is {info.st_size / 2 ** 30:.2f} GB, more than the {limit / 2 ** 30:.2f} GB an "
                              f"artefact file may be here (CMR_MAX_FILE_MB): it is not the file that was written")
    return info.st_size


def read_bytes(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A whole file, once `plain_file_size` has checked it; a file that grows past `limit` while read is refused."""
    plain_file_size(path, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    if len(data) > limit:
        raise CheckpointError(f"{path} grew past {limit / 2 ** 30:.2f} GB while it was read")
    return data


def json_from(data: bytes, where: str | Path) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{where} is not valid JSON ({err}); the file is damaged") from None


def load_json(path: str | Path) -> Any:
    return json_from(read_bytes(path), path)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a safetensors file."""
    return tensors_from(read_bytes(path), path)


def tensors_from(data: bytes, path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a safetensors file's bytes (`path` names it in errors)."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
        return st_load(data), metadata
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); it is damaged or "
                              f"of another format") from None
