"""Datasets by spec: `NAME[:ARG]` resolved through one registry of readers.

Every reader takes (arg, report) and returns a Dataset; `read_data` adds the strict check and refuses empty
splits, `with_validation` carves a validation split from train when the data has none, and `load_data` does
both (a study reads once and carves per seed).
"""
from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Callable

from cmr_demo.data.types import Dataset, DataError, IngestReport, Split, holdout_indices

Reader = Callable[[str, IngestReport], Dataset]


# name -> (module in this package, what it reads). Modules are imported only when used, so a
# reader's heavy dependency (scipy for .mat files) costs nothing to the others.
READERS: dict[str, tuple[str, str]] = {
    "clip4cmr": ("clip4cmr", "official CLIP4CMR features: DIR/clip_{train,test}.pkl"),
    "wikipedia": ("wikipedia", "Rasiwasia et al. layout: DIR/*.list + raw_features.mat or media"),
    "manifest": ("manifest", "your data: FILE.csv|.jsonl with image,text,label[,split]"),
    "npz": ("npz", "pre-computed features with labels in one .npz"),
    "synthetic": ("synthetic", "seeded class-structured features, for tests and smoke runs"),
    "shapes": ("shapes", "procedural images + captions of 10 shape classes: shapes[:N[,seed=S]]"),
    "webshapes": ("webshapes", "the shapes world made hard: 40 shape-and-colour classes, partial captions, noisy "
                               "labels, a long tail: webshapes[:N[,seed=S]]"),
}

# what each reader's data is called where people read it (the app's first line)
TITLES = {"clip4cmr": "features from the official CLIP4CMR release", "wikipedia": "the Wikipedia benchmark",
          "manifest": "your own pictures and captions", "npz": "your own features", "synthetic": "synthetic features",
          "shapes": "the simple shapes world", "webshapes": "the shapes world"}


# the features a reader's data comes with, where they are fixed (readers of your own data: none)
FEATURE_WORDS = {"wikipedia": "128-d SIFT bag of visual words per image, 10-d LDA topic proportions per text",
                 "clip4cmr": "the release's CLIP image and text features"}


def feature_words(spec: str) -> str | None:
    return FEATURE_WORDS.get(spec.partition(":")[0])


def title(spec: str) -> str:
    """The data of `spec` in words ('wikipedia:../data' -> 'the Wikipedia benchmark'); the spec for an unknown
    reader."""
    return TITLES.get(spec.partition(":")[0], f"`{spec}`")


def _reader(name: str) -> Reader:
    return importlib.import_module(f".{READERS[name][0]}", __name__).read


def data_spec_help() -> str:
    """--data help for every command: the spec grammar and every reader, from the registry."""
    return "data spec NAME[:ARG]; readers: " + "; ".join(f"{name}: {what}" for name, (_, what) in READERS.items())


def parse_spec(spec: str) -> tuple[str, str]:
    name, _, arg = spec.partition(":")
    if name not in READERS:
        raise DataError(f"unknown data spec '{spec}': the reader must be one of {sorted(READERS)} "
                        f"(e.g. 'wikipedia:path/to/wikipedia', 'manifest:my_data.csv', 'synthetic:2000')")
    return name, arg


def read_data(spec: str, strict: bool = False) -> Dataset:
    """Read `spec` as the data gives it (its own splits; no validation split carved)."""
    name, arg = parse_spec(spec)
    report = IngestReport()
    dataset = _reader(name)(arg, report)
    dataset.spec, dataset.report = spec, report
    report.check(strict)
    for split_name, split in dataset.splits().items():
        if len(split) == 0:
            raise DataError(f"data '{spec}' has an empty {split_name} split\n{report.summary()}")
    return dataset


def with_validation(dataset: Dataset, val_fraction: float, seed: int, features: dict | None = None):
    """`dataset` with a stratified validation split carved from train when it has none (a copy; `dataset` is
    unchanged). With `features` ({split: (image, text)} of `dataset`), returns (dataset, features) carved
    alike: a study reads and encodes its data once and carves per seed."""
    out, feats = dataset, features
    if dataset.val is None and val_fraction > 0:
        rest, held = holdout_indices(dataset.train.labels, val_fraction, seed)
        out = replace(dataset, train=dataset.train.subset(rest), val=dataset.train.subset(held),
                      val_source=f"carved from train ({val_fraction:.0%} per class, seed {seed})")
        if features is not None:
            image, text = features["train"]
            feats = {**features, "train": (image[rest], text[rest]), "val": (image[held], text[held])}
    return out if features is None else (out, feats)


def load_data(spec: str, strict: bool = False, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Read `spec`; carve a stratified validation split from train when the data has none."""
    return with_validation(read_data(spec, strict), val_fraction, seed)


__all__ = ["Dataset", "DataError", "IngestReport", "Split", "data_spec_help", "load_data", "parse_spec", "read_data",
           "with_validation"]
