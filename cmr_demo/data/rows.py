"""What the readers of item tables share: the image check, and rows -> train/val/test (by column or hold-out).

Without a split column, the test split is a stratified hold-out of TEST_FRACTION of each class with
a fixed seed, so the same file always gives the same test set (the validation split is carved
later from train by `load_data`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from cmr_demo.data.types import Dataset, DataError, IngestReport, Split, stratified_holdout

TEST_FRACTION = 0.2  # the usual 80/20 split when the data names none
TEST_SEED = 0  # fixed: the test set must not change between runs or with the training seed
SPLIT_NAMES = ("train", "val", "test")


def image_problem(path: Path) -> str | None:
    """Why `path` cannot serve as an image ('missing image file' / 'unreadable image'), or None."""
    if not path.is_file():
        return "missing image file"
    try:
        with Image.open(path) as image:
            image.verify()  # reads headers and checksums, not the pixels: cheap for a whole folder
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "unreadable image"
    return None


def parse_split_name(value: object) -> str | None:
    """'train' / 'val' / 'test' (any case, surrounding spaces ignored), or None for anything else."""
    name = str(value if value is not None else "").strip().lower()
    return name if name in SPLIT_NAMES else None


def assemble(spec: str, data: Split, split_of_row: Sequence[str] | None) -> Dataset:
    """Dataset from all rows: by each row's split name, or with a stratified test hold-out if None."""
    if not len(data):
        raise DataError(f"{spec}: no usable items (every row was skipped or the file is empty)")
    if split_of_row is None:
        train, test = stratified_holdout(data, TEST_FRACTION, TEST_SEED)
        if not len(test):
            raise DataError(f"{spec}: no class has the 2+ items needed to hold out a test split; "
                            f"add items, or give each row a 'split' of train / val / test")
        return Dataset(spec=spec, train=train, test=test)
    parts = {name: [i for i, s in enumerate(split_of_row) if s == name] for name in SPLIT_NAMES}
    for name in ("train", "test"):
        if not parts[name]:
            raise DataError(f"{spec}: the split column has no usable '{name}' rows; label some rows "
                            f"'{name}', or drop the column to hold out {TEST_FRACTION:.0%} as test")
    val = data.subset(parts["val"]) if parts["val"] else None
    return Dataset(spec=spec, train=data.subset(parts["train"]), test=data.subset(parts["test"]), val=val)


def class_index(values: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Class names (sorted; numeric order when every value is an integer) and value -> label."""
    unique = set(values)
    try:
        as_int = {v: int(v) for v in unique}
    except ValueError:
        names = sorted(unique)
        return names, {v: i for i, v in enumerate(names)}
    numbers = sorted(set(as_int.values()))  # '1' and '01' are one class
    position = {n: i for i, n in enumerate(numbers)}
    return [str(n) for n in numbers], {v: position[n] for v, n in as_int.items()}


def skip_first_seen(report: IngestReport, seen: set[str], item_id: str) -> bool:
    """True (and reported) when `item_id` was already used by an earlier row: the first row wins."""
    if item_id in seen:
        report.skip("duplicate id", item_id)
        return True
    seen.add(item_id)
    return False
