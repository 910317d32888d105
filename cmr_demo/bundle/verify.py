"""Is a bundle complete and unchanged? Every file's sha256 against the manifest, every array's shape, each
objective's files, the gallery items and the model card; `python -m cmr_demo.bundle verify DIR`."""
from __future__ import annotations

import json
from pathlib import Path

from cmr_demo.bundle.card import CARD_FILE, render_card
from cmr_demo.bundle.layout import FORMAT, GALLERY_FEATURES, IMAGES_DIR, ITEMS_FILE, RUN_FILES, feature_dims, outside
from cmr_demo.files import CheckpointError, file_sha256, load_json, load_tensors


def verify(folder: str | Path, require_card: bool = False, images: bool = True) -> list[str]:
    """Every problem found (an empty list means the bundle is complete and intact). The model card is
    checked against the manifest when the bundle lists one, or always with `require_card`. With
    `images=False` the gallery pictures are only checked to exist: the app checks each one's hash when it
    first serves it, so starting does not read thousands of files (`bundle verify` checks them all)."""
    folder = Path(folder)
    try:
        manifest = load_json(folder / "manifest.json")
    except ValueError as err:
        return [str(err)]
    if manifest.get("format") != FORMAT:
        return [f"manifest format {manifest.get('format')!r} is not {FORMAT!r}"]
    escaping = set(outside(folder, folder, manifest["files"]))
    problems = []
    for rel, digest in manifest["files"].items():
        path = folder / rel
        if rel in escaping:
            problems.append(f"file path {rel!r} points outside the bundle")
        elif not path.is_file():
            problems.append(f"missing file {rel}")
        elif not images and rel.startswith(IMAGES_DIR):
            continue
        elif file_sha256(path) != digest:
            problems.append(f"sha256 mismatch for {rel}: the file was changed or damaged")
    n = manifest["data"]["gallery_items"]
    problems += _verify_items(folder, manifest, n)
    for name, entry in manifest["objectives"].items():
        problems += _verify_objective(folder, name, entry["dir"], n, set(manifest["files"]), feature_dims(manifest))
    if CARD_FILE in manifest["files"] or require_card:
        problems += _verify_card(folder, manifest)
    if GALLERY_FEATURES in manifest["files"] and (folder / GALLERY_FEATURES).is_file():
        try:
            tensors, _ = load_tensors(folder / GALLERY_FEATURES)
        except CheckpointError as err:
            return problems + [f"{GALLERY_FEATURES}: {err}"]
        widths = dict(zip(("image", "text"), feature_dims(manifest)))
        problems += [f"{GALLERY_FEATURES}[{m}] has shape {tuple(tensors[m].shape) if m in tensors else None}, "
                     f"expected {(n, w)}" for m, w in widths.items()
                     if m not in tensors or tuple(tensors[m].shape) != (n, w)]
    return problems


def _verify_card(folder: Path, manifest: dict) -> list[str]:
    path = folder / CARD_FILE
    if not path.is_file():
        return [f"no model card {CARD_FILE}: rebuild the bundle (bundle build writes it)"]
    if path.read_text() != render_card(manifest):
        return [f"{CARD_FILE} does not agree with manifest.json (edited by hand?): rebuild the bundle, or write "
                f"cmr_demo.bundle.card.render_card(manifest) to it"]
    return []


def _verify_items(folder: Path, manifest: dict, n: int) -> list[str]:
    """One record per gallery item, each picture it names a file under gallery/images/ that the manifest lists (so
    hashed, and checked not to lead outside the bundle): what lets the loader serve items' pictures as they are."""
    path = folder / ITEMS_FILE
    if ITEMS_FILE not in manifest["files"] or not path.is_file():
        return [f"missing file {ITEMS_FILE}"]
    try:
        items = [json.loads(line) for line in path.read_text().splitlines() if line]
    except ValueError as err:
        return [f"{ITEMS_FILE} is not one JSON object per line: {err}"]
    problems = [] if len(items) == n else [f"{ITEMS_FILE} has {len(items)} items, the manifest says {n}"]
    unlisted = [it.get("image") for it in items if it.get("image") and it["image"] not in manifest["files"]]
    elsewhere = [it["image"] for it in items if it.get("image") and not str(it["image"]).startswith(IMAGES_DIR)]
    return problems + ([f"{len(unlisted)} gallery pictures are not listed in the manifest, e.g. {unlisted[0]!r}"]
                       if unlisted else []) + ([f"{len(elsewhere)} gallery pictures are not under {IMAGES_DIR}, e.g. "
                                               f"{elsewhere[0]!r}: the app serves only gallery pictures"]
                                              if elsewhere else [])


def _verify_objective(folder: Path, name: str, rel_dir: str, n: int, listed: set[str],
                      dims: tuple[int, int]) -> list[str]:
    missing = [f for f in RUN_FILES if f"{rel_dir}/{f}" not in listed or not (folder / rel_dir / f).is_file()]
    if missing:
        return [f"objective '{name}' is incomplete: missing {', '.join(missing)}"]
    heads = load_json(folder / rel_dir / "config.json")["heads"]
    dim = heads["embed_dim"]
    problems = [] if (heads["image_dim"], heads["text_dim"]) == dims else [
        f"objective '{name}': heads take {heads['image_dim']}-d image and {heads['text_dim']}-d text features, "
        f"the bundle's features are {dims[0]}-d and {dims[1]}-d"]
    for fname, width in (("embeddings.safetensors", dim), ("map.safetensors", 2)):
        tensors, _ = load_tensors(folder / rel_dir / fname)
        for modality in ("image", "text"):
            shape = tuple(tensors[modality].shape) if modality in tensors else None
            if shape != (n, width):
                problems.append(f"objective '{name}': {fname}[{modality}] has shape {shape}, expected {(n, width)}")
    return problems


