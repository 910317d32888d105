"""`npz:FILE.npz`: pre-computed paired features with labels in one numpy archive, loaded without pickle.

Keys: `image` [N, d_img], `text` [N, d_txt], `label` [N] int (required); `ids` [N], `split` [N]
('train' / 'val' / 'test'), `class_names` [C] (optional; strings, not object arrays). Without
`split`, a stratified 20% of each class is held out as test with the fixed seed 0 (as for manifests).
Items whose label is outside [0, C) are skipped and reported ('label out of range').
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cmr_demo.data.rows import assemble, parse_split_name, skip_first_seen
from cmr_demo.data.types import DataError, Dataset, IngestReport, Split

REQUIRED = ("image", "text", "label")
OPTIONAL = ("ids", "split", "class_names")


def _strings(a: np.ndarray) -> list[str]:
    """Items of a str or bytes array as str (np.savez keeps bytes arrays as bytes)."""
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in a.tolist()]


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every known key of the archive; object arrays are refused (they would need pickle)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e}); write it with np.savez") from e
    with archive:
        missing = [k for k in REQUIRED if k not in archive.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; required {list(REQUIRED)}, optional "
                            f"{list(OPTIONAL)} (found {archive.files})")
        arrays = {}
        for key in (k for k in REQUIRED + OPTIONAL if k in archive.files):
            try:
                arrays[key] = archive[key]
            except ValueError as e:  # numpy refuses object arrays when allow_pickle=False
                raise DataError(f"{path}: key '{key}' is an object array, which would need pickle to "
                                f"load; save it as a plain array, e.g. np.array(values, dtype=str)") from e
    return arrays


def _check_shapes(path: Path, arrays: dict[str, np.ndarray]) -> None:
    n = len(arrays["label"]) if arrays["label"].ndim else 0
    expected_dims = {"image": 2, "text": 2, "label": 1, "ids": 1, "split": 1}
    for key, ndim in expected_dims.items():
        if key not in arrays:
            continue
        a = arrays[key]
        if a.ndim != ndim or len(a) != n:
            want = f"[{n}, d]" if ndim == 2 else f"[{n}]"
            raise DataError(f"{path}: key '{key}' has shape {a.shape}; expected {want} "
                            f"({n} items, from 'label')")
    for key in ("image", "text", "label"):
        if not np.issubdtype(arrays[key].dtype, np.number):
            raise DataError(f"{path}: key '{key}' has dtype {arrays[key].dtype}; expected numbers")


def _labels(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Integer labels [N] and class names (given, or 'class i' up to the largest label)."""
    raw = arrays["label"]
    labels = raw.astype(np.int64)
    if not np.array_equal(labels, raw):
        raise DataError(f"{path}: key 'label' must hold integer class indices; got non-integer values")
    if "class_names" in arrays:
        return labels, _strings(arrays["class_names"].reshape(-1))
    return labels, [f"class {c}" for c in range(int(labels.max(initial=-1)) + 1)]


def _keep_rows(ids: list[str], split: list[str] | None, labels: np.ndarray, num_classes: int,
               report: IngestReport) -> list[int]:
    """Indices of usable items; each unusable item is reported by reason."""
    keep, seen = [], set()
    for i in range(len(ids)):
        if skip_first_seen(report, seen, ids[i]):
            continue
        if split is not None and parse_split_name(split[i]) is None:
            report.skip("unknown split value", ids[i])
        elif not 0 <= labels[i] < num_classes:
            report.skip("label out of range", ids[i])
        else:
            keep.append(i)
    return keep


def read(arg: str, report: IngestReport) -> Dataset:
    """`npz:FILE.npz` (see the module docstring for the keys)."""
    if not arg:
        raise DataError("npz:FILE needs the archive, e.g. 'npz:features.npz'")
    path = Path(arg).expanduser()
    if not path.is_file():
        raise DataError(f"npz file not found: {path} (expected an archive written by np.savez with "
                        f"keys {list(REQUIRED)})")
    arrays = _load_arrays(path)
    _check_shapes(path, arrays)
    labels, class_names = _labels(path, arrays)
    ids = _strings(arrays["ids"]) if "ids" in arrays else [f"row-{i}" for i in range(len(labels))]
    split = _strings(arrays["split"]) if "split" in arrays else None
    keep = _keep_rows(ids, split, labels, len(class_names), report)
    data = Split(ids=[ids[i] for i in keep], labels=labels[keep], class_names=class_names,
                 image_features=arrays["image"][keep], text_features=arrays["text"][keep])
    splits = [parse_split_name(split[i]) for i in keep] if split is not None else None
    return assemble(f"npz:{arg}", data, splits)
