"""`manifest:FILE.csv|.jsonl`: your own image-text pairs, one row each: image, text, label[, split][, id].

Image paths are relative to the manifest's folder (absolute paths work too). Labels are class names
or integers; the classes are their sorted unique values (numeric order when all are integers).
Without a `split` column, a stratified 20% of each class is held out as test with the fixed seed 0
(`rows.TEST_FRACTION`, `rows.TEST_SEED`). Rows that cannot be used are skipped and reported, never
dropped silently: missing image file, unreadable image, empty text, empty label, duplicate id (the
first row keeps it), unknown split value, malformed line (JSONL).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from cmr_demo.data.rows import assemble, class_index, image_problem, parse_split_name, skip_first_seen
from cmr_demo.data.types import DataError, IngestReport, Dataset, Split

REQUIRED = ("image", "text", "label")
FORMATS = (".csv", ".jsonl")

Row = dict  # one manifest row: column -> value (str, or JSON scalars for .jsonl)


def _csv_rows(path: Path, report: IngestReport) -> Iterator[tuple[int, Row]]:
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheet exports add a BOM
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the header must have "
                            f"{list(REQUIRED)} and may add 'split' and 'id' (found {reader.fieldnames})")
        for row in reader:
            yield reader.line_num, row


def _jsonl_rows(path: Path, report: IngestReport) -> Iterator[tuple[int, Row]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # a blank line is not an item
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                report.skip("malformed line", f"row-{number}")
                continue
            yield number, row


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _row_problem(row: Row, has_split: bool) -> str | None:
    """The skip reason for a row's own fields (the image is checked last: it costs a file read)."""
    if has_split and parse_split_name(row.get("split")) is None:
        return "unknown split value"
    if not _text(row.get("label")):
        return "empty label"
    if not _text(row.get("text")):
        return "empty text"
    return None


def _image_path(base: Path, value: object) -> Path:
    path = Path(_text(value)).expanduser()
    return path if path.is_absolute() else base / path


def _read_rows(path: Path, report: IngestReport) -> tuple[list[dict], bool]:
    """Usable rows as {id, image, text, label, split}; whether the data has a split column."""
    rows = list((_csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows)(path, report))
    has_split = any("split" in row for _, row in rows)
    kept, seen = [], set()
    for number, row in rows:
        item_id = _text(row.get("id")) or f"row-{number}"
        if skip_first_seen(report, seen, item_id):
            continue
        problem = _row_problem(row, has_split)
        image = _image_path(path.parent, row.get("image")) if _text(row.get("image")) else None
        problem = problem or (image_problem(image) if image else "missing image file")
        if problem:
            report.skip(problem, item_id)
            continue
        kept.append({"id": item_id, "image": str(image), "text": _text(row["text"]),
                     "label": _text(row["label"]), "split": parse_split_name(row.get("split"))})
    return kept, has_split


def read(arg: str, report: IngestReport) -> Dataset:
    """`manifest:FILE.csv` or `manifest:FILE.jsonl` (see the module docstring for the columns)."""
    if not arg:
        raise DataError("manifest:FILE needs the manifest file, e.g. 'manifest:my_data.csv'")
    path = Path(arg).expanduser().absolute()  # image paths stay valid if the working folder changes
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"manifest '{arg}': unsupported file type '{path.suffix}'; use one of "
                        f"{list(FORMATS)}, e.g. 'manifest:my_data.csv'")
    if not path.is_file():
        raise DataError(f"manifest file not found: {path}")
    try:
        rows, has_split = _read_rows(path, report)
    except (UnicodeDecodeError, csv.Error) as e:
        kind = "CSV with a header row" if path.suffix.lower() == ".csv" else "JSON lines"
        raise DataError(f"{path}: cannot be parsed ({e}); save it as UTF-8 {kind}") from e
    class_names, label_of = class_index([r["label"] for r in rows])
    data = Split(ids=[r["id"] for r in rows], labels=np.array([label_of[r["label"]] for r in rows]),
                 class_names=class_names, images=[r["image"] for r in rows],
                 texts=[r["text"] for r in rows])
    return assemble(f"manifest:{arg}", data, [r["split"] for r in rows] if has_split else None)
