"""The one in-memory shape every reader produces: a Split of paired items, and a Dataset of splits.

Why one type: downstream stages (features, training, bundles) should not care whether items came
from pre-computed features, a folder of images or a CSV. A Split carries raw media (`images`,
`texts`), pre-computed features (`image_features`, `text_features`), or both; row i of every
field is item i.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


class DataError(ValueError):
    """A dataset cannot be read as asked; the message names the item or file and the fix."""


@dataclass
class Split:
    ids: list[str]
    labels: np.ndarray  # [N] int64, values in [0, len(class_names))
    class_names: list[str]
    images: list[Any] | None = None  # [N] image file paths (str/Path) or PIL images
    texts: list[str] | None = None  # [N] captions / documents
    image_features: np.ndarray | None = None  # [N, d_img] float32, pre-computed
    text_features: np.ndarray | None = None  # [N, d_txt] float32, pre-computed

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        raw = np.asarray(self.labels).reshape(-1)
        if raw.size and not np.all(np.mod(raw.astype(np.float64), 1) == 0):
            raise DataError(
                f"labels must be whole class ids; got e.g. {raw[np.mod(raw.astype(np.float64), 1) != 0][:3]}"
            )
        self.labels = raw.astype(np.int64)
        if len(set(self.ids)) != len(self.ids):
            seen, dups = set(), []
            for i in self.ids:
                (dups if i in seen else seen.add(i) or []).append(i)
            raise DataError(f"item ids must be unique within a split; repeated: {sorted(set(dups))[:5]}")
        n = len(self.ids)
        for name in ("labels", "images", "texts", "image_features", "text_features"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"split field '{name}' has {len(value)} rows but there are {n} ids")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(
                f"labels must lie in [0, {len(self.class_names)}) for classes {self.class_names}; "
                f"got range [{self.labels.min()}, {self.labels.max()}]")
        for name in ("image_features", "text_features"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.ascontiguousarray(value, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_features(self) -> bool:
        return self.image_features is not None and self.text_features is not None

    @property
    def has_media(self) -> bool:
        return self.images is not None and self.texts is not None

    def subset(self, index: Sequence[int] | np.ndarray) -> "Split":
        index = np.asarray(index, dtype=np.int64)
        pick = lambda seq: None if seq is None else [seq[i] for i in index]  # noqa: E731
        arr = lambda a: None if a is None else a[index]  # noqa: E731
        return replace(self, ids=pick(self.ids), labels=self.labels[index], images=pick(self.images),
                       texts=pick(self.texts), image_features=arr(self.image_features),
                       text_features=arr(self.text_features))

    def content_hash(self) -> str:
        """sha256 over everything that determines features: ids, labels, texts, image bytes, features.

        Image files are hashed by content, not path, so a moved folder still hits the feature cache
        and an edited image misses it.
        """
        h = hashlib.sha256()
        h.update("\x1f".join(self.ids).encode())
        h.update(self.labels.tobytes())
        if self.texts is not None:
            h.update("\x1f".join(self.texts).encode("utf-8", "surrogatepass"))
        for image in self.images or []:
            h.update(_image_digest(image))
        for feats in (self.image_features, self.text_features):
            if feats is not None:
                h.update(str(feats.shape).encode() + feats.tobytes())
        return h.hexdigest()


def _image_digest(image: Any) -> bytes:
    if isinstance(image, (str, Path)):
        return hashlib.sha256(Path(image).read_bytes()).digest()
    return hashlib.sha256(image.tobytes() + str((image.mode, image.size)).encode()).digest()


@dataclass
class IngestReport:
    """Items a reader skipped, by reason, so nothing is dropped silently (and `strict` can refuse)."""
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> item ids

    def skip(self, reason: str, item_id: str) -> None:
        self.skipped.setdefault(reason, []).append(str(item_id))

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self, show: int = 5) -> str:
        if not self.total:
            return "ingest: every item read"
        lines = [f"ingest: skipped {self.total} item(s)"]
        for reason, ids in sorted(self.skipped.items()):
            more = f", ... (+{len(ids) - show} more)" if len(ids) > show else ""
            lines.append(f"  {len(ids)} x {reason}: {', '.join(ids[:show])}{more}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"skipped_total": self.total, "skipped": {k: list(v) for k, v in self.skipped.items()}}

    def check(self, strict: bool) -> None:
        """Raise under `strict` when anything was skipped (the caller prints the summary otherwise)."""
        if strict and self.total:
            raise DataError(self.summary() + "\n(--strict: fix or remove these items, or drop --strict)")


@dataclass
class Dataset:
    spec: str
    train: Split
    test: Split
    val: Split | None = None
    report: IngestReport = field(default_factory=IngestReport)
    val_source: str = "data"  # "data", or how it was carved from train
    description: str = ""  # what the data is, in a sentence or two, for people (bundle cards, the app header)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (text query, its class) the app offers
    license: str = ""  # what covers the data, in words, for bundle cards ("" = unknown: the data's own terms)
    license_id: str = "other"  # the hub's license identifier for cards
    # named groupings of the classes, e.g. {"shape": {"star": ["red star", "blue star", ...]}}: the app reports the
    # group of a query too ("a star", however sure it is of the colour)
    class_groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # (n, seed) -> (n pictures that belong to the world without being in the data, e.g. drawings of its shapes, and
    # [n] their class ids, -1 where no class applies): the bundle's out-of-world check for pictures learns that they
    # are in, and the confidence of a picture's class read is calibrated on them too (cmr_demo.bundle.world_check)
    related_pictures: Callable[[int, int], tuple[list, Any]] | None = field(default=None, repr=False)

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    def splits(self) -> dict[str, Split]:
        out = {"train": self.train, "val": self.val, "test": self.test}
        return {k: v for k, v in out.items() if v is not None}


def holdout_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) row numbers: a seeded `fraction` of each class (at least one item; a class of one
    stays in `rest`)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"hold-out fraction (e.g. --val-fraction) must be in (0, 1); got {fraction}")
    rng = np.random.default_rng(seed)
    held_idx: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue  # a class of one item stays in `rest`: it cannot be both learned and held out
        take = max(1, int(round(fraction * len(members))))
        held_idx.extend(rng.choice(members, size=take, replace=False).tolist())
    held = np.zeros(len(labels), dtype=bool)
    held[held_idx] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def stratified_holdout(data: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(rest, held-out) splits (`holdout_indices`). Carves validation from train in `with_validation`, and
    test from untagged rows in the readers."""
    rest, held = holdout_indices(data.labels, fraction, seed)
    return data.subset(rest), data.subset(held)
