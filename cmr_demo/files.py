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

from cmr_demo.train.heads import HeadConfig, Heads

HEADS_FORMAT = "cmr_demo.heads/1"


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
    """sha256 of a file, streamed (weights files can be gigabytes)."""
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


def save_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def load_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the file is damaged") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a safetensors file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    try:
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
        return st_load(data), metadata
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); it is damaged or "
                              f"of another format") from None


def save_heads(path: str | Path, heads: Heads, extra: dict[str, str] | None = None) -> None:
    """Weights plus the config that rebuilds them (and e.g. the feature source) in the metadata."""
    meta = {**(extra or {}), "format": HEADS_FORMAT, "head_config": json.dumps(heads.cfg.__dict__)}
    save_tensors(path, heads.state_dict(), meta)


def load_heads(path: str | Path, image_dim: int | None = None, text_dim: int | None = None,
               source: str | None = None) -> Heads:
    """Rebuild heads from their own saved config; refuse features of other widths or origin."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != HEADS_FORMAT:
        raise CheckpointError(f"{path} is not a cmr_demo heads file (format {meta.get('format')!r}, "
                              f"expected {HEADS_FORMAT!r})")
    cfg = HeadConfig(**json.loads(meta["head_config"]))
    for name, want, have in (("image", image_dim, cfg.image_dim), ("text", text_dim, cfg.text_dim)):
        if want is not None and want != have:
            raise CheckpointError(f"{path} was trained on {have}-d {name} features but the backbone gives "
                                  f"{want}-d {name} features; use the backbone it was trained with")
    if source is not None and meta.get("feature_source") not in (None, source):
        raise CheckpointError(f"{path} was trained on features from '{meta['feature_source']}', not '{source}'")
    heads = Heads(cfg)
    heads.load_state_dict(tensors)
    return heads.eval()
