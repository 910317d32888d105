"""`wikipedia:DIR`: the Wikipedia benchmark of Rasiwasia et al. (2010), as its authors lay it out.

DIR holds `trainset_txt_img_cat.list` / `testset_txt_img_cat.list` (tab separated
`text_id image_id category`, category 1..10), `categories.list` (the names, in category order) and
either `raw_features.mat` (their features: `I_tr`/`I_te` image, `T_tr`/`T_te` text; row i is line i
of the list) or the raw media: `images/<category name>/<image_id>.jpg` and `texts/<text_id>.xml`
(or `.txt`). The features file wins when both are present. Item id = text_id.
"""
from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cmr_demo.data.rows import image_problem, skip_first_seen
from cmr_demo.data.types import DataError, Dataset, IngestReport, Split

LISTS = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
CATEGORIES = "categories.list"
FEATURES = "raw_features.mat"
MAT_KEYS = {"train": ("I_tr", "T_tr"), "test": ("I_te", "T_te")}  # (image, text) per split
TEXT_SUFFIXES = (".xml", ".txt")
# The original documents are not all well-formed XML (stray '&', bad bytes): then the <text>
# element is taken by pattern, up to its closing tag or the end of a truncated file.
_TEXT_ELEMENT = re.compile(r"<text\b[^>]*>(.*?)(?:</text\s*>|\Z)", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


class Entry(NamedTuple):
    text_id: str
    image_id: str
    label: int  # 0-based: category - 1


def _read_categories(folder: Path) -> list[str]:
    path = folder / CATEGORIES
    if not path.is_file():
        raise DataError(f"wikipedia: {path} not found; it lists the category names, one per line, "
                        f"in the order of the category numbers 1, 2, ... of the list files")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_list(path: Path, class_names: list[str]) -> list[Entry]:
    if not path.is_file():
        raise DataError(f"wikipedia: {path} not found; DIR must contain {sorted(LISTS.values())}, "
                        f"{CATEGORIES} and either {FEATURES} or images/ and texts/")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[2].isdigit() or not 1 <= int(fields[2]) <= len(class_names):
            raise DataError(f"{path}, line {number}: expected 'text_id<TAB>image_id<TAB>category' "
                            f"with category in 1..{len(class_names)} ({CATEGORIES}); got {line!r}")
        entries.append(Entry(fields[0], fields[1], int(fields[2]) - 1))
    return entries


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat  # only this variant needs scipy
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
    except (MatReadError, OSError, ValueError, TypeError, IndexError, NotImplementedError) as e:
        raise DataError(f"{path}: not a readable MATLAB v5 file ({e}); re-download it") from e
    missing = [k for keys in MAT_KEYS.values() for k in keys if k not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: missing variable(s) {missing}; expected "
                        f"{[k for keys in MAT_KEYS.values() for k in keys]} (found {found})")
    return mat


def _feature_split(mat: dict, split: str, entries: list[Entry], list_path: Path,
                   class_names: list[str], report: IngestReport) -> Split:
    image_key, text_key = MAT_KEYS[split]
    for key in (image_key, text_key):
        if mat[key].ndim != 2 or len(mat[key]) != len(entries):
            raise DataError(f"{FEATURES} variable '{key}' has shape {mat[key].shape} but {list_path} "
                            f"has {len(entries)} items; row i of '{key}' must be line i of the list")
    seen: set[str] = set()
    keep = [i for i, e in enumerate(entries) if not skip_first_seen(report, seen, e.text_id)]
    return Split(ids=[e.text_id for e in entries], labels=[e.label for e in entries],
                 class_names=class_names, image_features=mat[image_key],
                 text_features=mat[text_key]).subset(keep)


def document_text(path: Path) -> str:
    """The text of one document: a .txt file, or the <text> element of an .xml file."""
    data = path.read_bytes()
    if path.suffix.lower() == ".txt":
        return data.decode("utf-8", errors="replace").strip()
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, LookupError):  # malformed XML or bytes: take it by pattern
        match = _TEXT_ELEMENT.search(data.decode("utf-8", errors="replace"))
        return html.unescape(_TAG.sub(" ", match.group(1))).strip() if match else ""
    node = root if root.tag == "text" else root.find(".//text")
    return "".join(node.itertext()).strip() if node is not None else ""


def _text_file(folder: Path, text_id: str) -> Path | None:
    return next((p for p in (folder / "texts" / f"{text_id}{s}" for s in TEXT_SUFFIXES)
                 if p.is_file()), None)


def _media_split(folder: Path, entries: list[Entry], class_names: list[str],
                 report: IngestReport) -> Split:
    """Image paths and document texts; items with a missing or broken file are skipped, reported."""
    kept: list[tuple[Entry, str, str]] = []  # (entry, image path, text)
    seen: set[str] = set()
    for e in entries:
        if skip_first_seen(report, seen, e.text_id):
            continue
        image = folder / "images" / class_names[e.label] / f"{e.image_id}.jpg"
        text_path = _text_file(folder, e.text_id)
        text = document_text(text_path) if text_path else ""
        problem = ("missing text file" if text_path is None else "empty text" if not text
                   else image_problem(image))
        if problem:
            report.skip(problem, e.text_id)
        else:
            kept.append((e, str(image), text))
    return Split(ids=[e.text_id for e, _, _ in kept], labels=np.array([e.label for e, _, _ in kept]),
                 class_names=class_names, images=[i for _, i, _ in kept], texts=[t for _, _, t in kept])


DESCRIPTION = ("The Wikipedia cross-modal benchmark (Rasiwasia et al., ACM MM 2010): sections of Wikipedia featured "
               "articles, each an image with its text, in 10 categories (art, biology, geography, history, literature, "
               "media, music, royalty, sport, warfare); 2,173 pairs to train on, 693 to test.")
FEATURE_NOTE = (" Features as the authors distribute them: 128-d SIFT bag of visual words for images, 10-d LDA topic "
                "proportions for texts (no pictures or texts are shipped).")
LICENSE = ("The Wikipedia dataset is distributed by its authors (Rasiwasia et al., 2010, "
           "http://www.svcl.ucsd.edu/projects/crossmodal/) for research; its terms are theirs, not this project's. "
           "This bundle holds only what was derived from it: heads, embeddings, 2-D maps, metrics and the category "
           "names.")


def read(arg: str, report: IngestReport) -> Dataset:
    """`wikipedia:DIR` (see the module docstring for the layout)."""
    if not arg:
        raise DataError("wikipedia:DIR needs the dataset folder, e.g. 'wikipedia:data/wikipedia'")
    folder = Path(arg).expanduser().absolute()  # image paths stay valid if the working folder changes
    if not folder.is_dir():
        raise DataError(f"wikipedia: folder not found: {folder} (the unpacked Wikipedia dataset)")
    class_names = _read_categories(folder)
    entries = {split: _read_list(folder / name, class_names) for split, name in LISTS.items()}
    if (folder / FEATURES).is_file():
        mat = _load_mat(folder / FEATURES)
        splits = {s: _feature_split(mat, s, entries[s], folder / LISTS[s], class_names, report)
                  for s in LISTS}
    elif (folder / "images").is_dir() and (folder / "texts").is_dir():
        splits = {s: _media_split(folder, entries[s], class_names, report) for s in LISTS}
        for name, split in splits.items():
            if not len(split):
                raise DataError(f"wikipedia: no usable {name} items in {folder}\n{report.summary()}")
    else:
        raise DataError(f"wikipedia: {folder} has neither {FEATURES} nor images/ and texts/ folders; "
                        f"add the features file or the raw media of the dataset")
    return Dataset(spec=f"wikipedia:{arg}", train=splits["train"], test=splits["test"],
                   description=DESCRIPTION + (FEATURE_NOTE if (folder / FEATURES).is_file() else ""),
                   license=LICENSE, license_id="other")
