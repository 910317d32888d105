"""Datasets by spec: `NAME[:ARG]` resolved through one registry of readers.

Every reader takes (arg, report) and returns a Dataset; `load_data` adds what is common: the
validation split carved from train when the data has none, and the strict check.
"""
from __future__ import annotations

import importlib
from typing import Callable

from .split import Dataset, DataError, IngestReport, Split, stratified_holdout

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
}


def _reader(name: str) -> Reader:
    return importlib.import_module(f".{READERS[name][0]}", __name__).read


def list_readers() -> list[str]:
    return list(READERS)


def data_spec_help() -> str:
    """--data help for every command: the spec grammar and every reader, from the registry."""
    return "data spec NAME[:ARG]; readers: " + "; ".join(f"{name}: {what}" for name, (_, what) in READERS.items())


def parse_spec(spec: str) -> tuple[str, str]:
    name, _, arg = spec.partition(":")
    if name not in READERS:
        raise DataError(f"unknown data spec '{spec}': the reader must be one of {sorted(READERS)} "
                        f"(e.g. 'wikipedia:path/to/wikipedia', 'manifest:my_data.csv', 'synthetic:2000')")
    return name, arg


def load_data(spec: str, strict: bool = False, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Read `spec`; carve a stratified validation split from train when the data has none."""
    name, arg = parse_spec(spec)
    report = IngestReport()
    dataset = _reader(name)(arg, report)
    dataset.spec, dataset.report = spec, report
    report.check(strict)
    for split_name, split in dataset.splits().items():
        if len(split) == 0:
            raise DataError(f"data '{spec}' has an empty {split_name} split\n{report.summary()}")
    if dataset.val is None and val_fraction > 0:
        dataset.train, dataset.val = stratified_holdout(dataset.train, val_fraction, seed)
        dataset.val_source = f"carved from train ({val_fraction:.0%} per class, seed {seed})"
    return dataset


__all__ = ["Dataset", "DataError", "IngestReport", "Split", "data_spec_help", "load_data", "list_readers", "parse_spec"]
