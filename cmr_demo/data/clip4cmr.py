"""`clip4cmr:DIR`: the official CLIP4CMR pre-computed CLIP features, DIR/clip_train.pkl and DIR/clip_test.pkl.

Each pickle is a dict: `image` [N, 1024], `text` [N, 1024], `label` [N] (or exact one-hot [N, C]),
`ids` [N]. They are read with `safe_pickle.safe_load`, which never executes code from the file.
The files carry no class names, so classes are 'class 0' .. 'class C-1' with C = largest label + 1
over both files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cmr_demo.data.safe_pickle import safe_load
from cmr_demo.data.types import DataError, Dataset, IngestReport, Split

FILES = {"train": "clip_train.pkl", "test": "clip_test.pkl"}
KEYS = ("image", "text", "label", "ids")


def _feature_matrix(path: Path, key: str, value: object, n: int) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: key '{key}' is not a numeric array ({e})") from e
    if matrix.ndim != 2 or len(matrix) != n:
        raise DataError(f"{path}: key '{key}' has shape {matrix.shape}; expected [{n}, d] "
                        f"({n} items, from 'ids')")
    return matrix


def _class_indices(path: Path, value: object, n: int) -> tuple[np.ndarray, int]:
    """Labels [N] int64 from class indices [N] or exact one-hot rows [N, C]; and the classes seen."""
    raw = np.asarray(value)
    if raw.ndim == 2 and len(raw) == n:
        active = raw != 0
        counts = active.sum(axis=1)
        bad = np.flatnonzero((counts != 1) | ((raw != 0) & (raw != 1)).any(axis=1))
        if len(bad):
            raise DataError(f"{path}: key 'label' is [N, C] but row {bad[0]} is not one-hot "
                            f"({int(counts[bad[0]])} active classes); multi-label data is not "
                            f"supported: each item needs exactly one class")
        return active.argmax(axis=1).astype(np.int64), raw.shape[1]
    if raw.ndim != 1 or len(raw) != n or not np.issubdtype(raw.dtype, np.number):
        raise DataError(f"{path}: key 'label' has shape {raw.shape} and dtype {raw.dtype}; expected "
                        f"[{n}] class indices or [{n}, C] one-hot rows")
    labels = raw.astype(np.int64)
    if not np.array_equal(labels, raw) or (n and labels.min() < 0):
        raise DataError(f"{path}: key 'label' must hold class indices 0, 1, ...; got non-integer "
                        f"or negative values")
    return labels, int(labels.max(initial=-1)) + 1


def _read_file(path: Path) -> dict:
    """{ids, labels, image_features, text_features, num_classes} from one pickle, validated."""
    data = safe_load(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict with keys {list(KEYS)}; got {type(data).__name__}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; expected {list(KEYS)} "
                        f"(found {sorted(map(str, data))})")
    ids = [i.decode("utf-8", errors="replace") if isinstance(i, bytes) else str(i)
           for i in np.asarray(data["ids"]).reshape(-1).tolist()]
    labels, num_classes = _class_indices(path, data["label"], len(ids))
    return {"ids": ids, "labels": labels, "num_classes": num_classes,
            "image_features": _feature_matrix(path, "image", data["image"], len(ids)),
            "text_features": _feature_matrix(path, "text", data["text"], len(ids))}


def read(arg: str, report: IngestReport) -> Dataset:
    """`clip4cmr:DIR` with DIR/clip_train.pkl and DIR/clip_test.pkl (official CLIP4CMR features)."""
    if not arg:
        raise DataError("clip4cmr:DIR needs the folder of clip_train.pkl / clip_test.pkl, "
                        "e.g. 'clip4cmr:data/wikipedia_clip'")
    folder = Path(arg).expanduser()
    for name in FILES.values():
        if not (folder / name).is_file():
            raise DataError(f"clip4cmr: {folder / name} not found; the folder must contain "
                            f"{sorted(FILES.values())} (the official pre-computed CLIP features)")
    parts = {split: _read_file(folder / name) for split, name in FILES.items()}
    num_classes = max(part.pop("num_classes") for part in parts.values())
    class_names = [f"class {c}" for c in range(num_classes)]
    splits = {split: Split(class_names=class_names, **part) for split, part in parts.items()}
    dims = {split: (s.image_features.shape[1], s.text_features.shape[1]) for split, s in splits.items()}
    if dims["train"] != dims["test"]:
        raise DataError(f"clip4cmr: train and test features differ in width (image, text): {dims}; "
                        f"both files must come from the same backbone")
    return Dataset(spec=f"clip4cmr:{arg}", train=splits["train"], test=splits["test"])
