"""Frozen backbone features per split, cached on disk by backbone + weights + data content.

Why a cache: extraction is the only expensive stage (minutes to hours); heads train in seconds.
The key hashes the backbone spec, its weights identity (a file's sha256, or the published tag)
and the split's content hash, so a changed image, caption or weights file misses the cache and
a renamed folder hits it. Datasets that ship pre-computed features skip the backbone entirely.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmr_demo.files import CheckpointError, load_tensors, save_tensors
from cmr_demo.data import Dataset, DataError, Split

CACHE_VERSION = "1"  # bump when extraction changes in a way that alters features


def default_cache_dir() -> Path:
    return Path(os.environ.get("CMR_CACHE_DIR", Path.home() / ".cache" / "cmr_demo" / "features"))


@dataclass
class FeatureSource:
    """Where features come from; recorded with every checkpoint and checked when it is loaded."""
    kind: str  # "backbone" or "precomputed"
    name: str  # the backbone spec, or the data spec for pre-computed features
    weights_sha256: str = ""

    @property
    def text(self) -> str:
        return self.name if self.kind == "backbone" else f"precomputed:{self.name}"


def cache_key(backbone_spec: str, weights: str, split: Split) -> str:
    text = "\n".join([CACHE_VERSION, backbone_spec, weights, split.content_hash()])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def split_features(split: Split, backbone_spec: str, cache_dir: Path, load, batch_size: int = 64,
                   num_workers: int = 0, progress: bool = True, encoder=None) -> tuple[np.ndarray, np.ndarray]:
    """(image [N, d], text [N, d]) for a split with raw media, from the cache or the backbone.

    `load` is a zero-argument callable returning the Backbone: it is only called on a cache miss,
    so a second run never loads the model at all. `encoder(split)`: another way to encode a missing split
    (`cmr_demo.backbone.ray_extract`, on a Ray cluster), whose results go through the same cache.
    """
    path = cache_path(split, backbone_spec, cache_dir)
    if path.is_file():
        try:
            tensors, _ = load_tensors(path)
            return tensors["image"].numpy(), tensors["text"].numpy()
        except (CheckpointError, KeyError):
            path.unlink()  # a damaged cache entry is recomputed, never trusted
    if encoder is not None:
        image, text = encoder(split)
    else:
        image, text = encode(load(), split.images, split.texts, batch_size, num_workers, progress)
    save_cache(path, image, text, backbone_spec)
    return image, text


def encode(backbone, images, texts, batch_size: int = 64, num_workers: int = 0,
           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images and texts through the backbone (texts in 4x larger batches: they are far cheaper)."""
    return (backbone.encode_images(images, batch_size, num_workers, progress),
            backbone.encode_texts(texts, batch_size=4 * batch_size, progress=progress))


def cache_path(split: Split, backbone_spec: str, cache_dir: Path) -> Path:
    from cmr_demo.backbone.clip import weights_identity
    return Path(cache_dir) / f"{cache_key(backbone_spec, weights_identity(backbone_spec), split)}.safetensors"


def save_cache(path: Path, image: np.ndarray, text: np.ndarray, backbone_spec: str) -> None:
    save_tensors(path, {"image": torch.from_numpy(np.ascontiguousarray(image)),
                        "text": torch.from_numpy(np.ascontiguousarray(text))},
                 {"backbone": backbone_spec, "items": str(len(image))})


def dataset_features(dataset: Dataset, backbone_spec: str | None, device: str = "cpu", precision: str = "fp32",
                     cache_dir: Path | None = None, batch_size: int = 64, num_workers: int = 0,
                     progress: bool = True, ray: str | None = None
                     ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], FeatureSource]:
    """Features of every split, and their source. Pre-computed features win over the backbone. `ray`: encode the
    splits missing from the cache on Ray (a cluster's address, "" for a local instance; `ray_extract`)."""
    splits = dataset.splits()
    if all(s.has_features for s in splits.values()):
        return ({k: (s.image_features, s.text_features) for k, s in splits.items()},
                FeatureSource("precomputed", dataset.spec))
    if not all(s.has_media for s in splits.values()):
        raise DataError(f"data '{dataset.spec}' has neither pre-computed features nor images and texts")
    from cmr_demo.backbone.clip import DEFAULT_BACKBONE, load_backbone, parse_backbone_spec, weights_identity
    spec = parse_backbone_spec(backbone_spec or DEFAULT_BACKBONE).text
    loaded = []

    def load():
        if not loaded:
            loaded.append(load_backbone(spec, device=device, precision=precision))
        return loaded[0]
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    encoder = None
    if ray is not None:
        from cmr_demo.backbone.ray_extract import RayEncoder
        encoder = RayEncoder(ray or None, spec, device, precision, batch_size)
    out = {k: split_features(s, spec, cache_dir, load, batch_size, num_workers, progress, encoder)
           for k, s in splits.items()}
    return out, FeatureSource("backbone", spec, weights_identity(spec))
