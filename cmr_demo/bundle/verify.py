"""Is a bundle complete and unchanged? Every file's sha256 against the manifest, every array's shape, each
objective's files, the gallery items and the model card; `python -m cmr_demo.bundle verify DIR`.

`check(files)` runs on a `BundleFiles`, so the loader checks a bundle with the very bytes it then loads (each file
read and parsed once)."""
from __future__ import annotations

from pathlib import Path

from cmr_demo.bundle import zero_shot
from cmr_demo.bundle.card import CARD_FILE, render_card
from cmr_demo.bundle.layout import GALLERY_FEATURES, IMAGES_DIR, ITEMS_FILE, RUN_FILES, feature_dims, outside
from cmr_demo.bundle.reader import BundleFiles
from cmr_demo.files import CheckpointError, file_sha256



def verify(folder: str | Path, require_card: bool = False, images: bool = True) -> list[str]:
    """Every problem found (an empty list means the bundle is complete and intact). The model card is checked
    against the manifest when the bundle lists one, or always with `require_card`. With `images=False` the gallery
    pictures are only checked to exist: the app checks each one's hash when it first serves it."""
    try:
        files = BundleFiles(folder, strict=False)
    except CheckpointError as err:
        return [str(err)]
    return check(files, require_card, images)


def check(files: BundleFiles, require_card: bool = False, images: bool = True) -> list[str]:
    problem = files.format_problem()
    if problem:
        return [problem]
    problems = _check_files(files, images)
    manifest = files.manifest
    try:
        n = manifest["data"]["gallery_items"]
        dims = feature_dims(manifest)
        problems += _verify_items(files, n)
        for name, entry in manifest["objectives"].items():
            try:
                problems += _verify_objective(files, name, entry["dir"], n, dims, entry.get("kind"))
            except CheckpointError:  # one of its files is damaged: reported above
                pass
        if CARD_FILE in files.listed or require_card:
            problems += _verify_card(files)
        if GALLERY_FEATURES in files.listed:
            tensors, _ = files.tensors(GALLERY_FEATURES)
            widths = dict(zip(("image", "text"), dims))
            problems += [f"{GALLERY_FEATURES}[{m}] has shape {_shape(tensors, m)}, expected {(n, w)}"
                         for m, w in widths.items() if _shape(tensors, m) != (n, w)]
    except CheckpointError:  # a damaged or missing file, reported above: its contents cannot be checked
        pass
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # a manifest or config of the wrong shape
        problems.append(f"the manifest or a run's config does not have the bundle layout ({type(err).__name__}: "
                        f"{str(err)[:120]}): rebuild the bundle")
    return problems


def _check_files(files: BundleFiles, images: bool) -> list[str]:
    """Every listed file exists inside the bundle with its digest; those the loader parses are parsed now."""
    escaping = set(outside(files.folder, files.folder, files.listed))
    problems = []
    for rel, digest in files.listed.items():
        path = files.folder / rel
        if rel in escaping:
            problems.append(f"file path {rel!r} points outside the bundle")
        elif not path.is_file():
            problems.append(f"missing file {rel}")
        elif rel.startswith(IMAGES_DIR):
            try:
                if images and file_sha256(path) != digest:
                    problems.append(f"sha256 mismatch for {rel}: the file was changed or damaged")
            except CheckpointError as err:  # a device, a folder or a huge file where a picture belongs
                problems.append(str(err))
        else:
            try:
                _read(files, rel)
            except CheckpointError as err:
                problems.append(str(err).replace(f"bundle {files.folder}: ", ""))
            if rel in files.mismatched:
                problems.append(f"sha256 mismatch for {rel}: the file was changed or damaged")
    return problems


def _read(files: BundleFiles, rel: str) -> None:
    if rel.endswith(".jsonl"):
        files.lines(rel)
    elif rel.endswith(".json"):
        files.json(rel)
    elif rel.endswith(".safetensors"):
        files.tensors(rel)
    else:
        files.read(rel)


def _shape(tensors: dict, name: str):
    return tuple(tensors[name].shape) if name in tensors else None


def _verify_card(files: BundleFiles) -> list[str]:
    path = files.folder / CARD_FILE
    if not path.is_file():
        return [f"no model card {CARD_FILE}: rebuild the bundle (bundle build writes it)"]
    if path.read_text() != render_card(files.manifest):
        return [f"{CARD_FILE} does not agree with manifest.json (edited by hand, or written by an older version): run "
                f"'python -m cmr_demo.bundle migrate {files.folder}' to write it again from the manifest"]
    return []


def _verify_items(files: BundleFiles, n: int) -> list[str]:
    """One record per gallery item, each picture it names a file under gallery/images/ that the manifest lists (so
    hashed, and checked not to lead outside the bundle): what lets the loader serve items' pictures as they are."""
    if ITEMS_FILE not in files.listed:
        return [f"missing file {ITEMS_FILE}"]
    items = files.lines(ITEMS_FILE)
    problems = [] if len(items) == n else [f"{ITEMS_FILE} has {len(items)} items, the manifest says {n}"]
    unlisted = [it.get("image") for it in items if it.get("image") and it["image"] not in files.listed]
    elsewhere = [it["image"] for it in items if it.get("image") and not str(it["image"]).startswith(IMAGES_DIR)]
    return problems + ([f"{len(unlisted)} gallery pictures are not listed in the manifest, e.g. {unlisted[0]!r}"]
                       if unlisted else []) + ([f"{len(elsewhere)} gallery pictures are not under {IMAGES_DIR}, e.g. "
                                               f"{elsewhere[0]!r}: the app serves only gallery pictures"]
                                              if elsewhere else [])


def _verify_objective(files: BundleFiles, name: str, rel_dir: str, n: int, dims: tuple[int, int],
                      kind: str | None = None) -> list[str]:
    needed = zero_shot.FILES if kind == zero_shot.KIND else RUN_FILES
    missing = [f for f in needed if f"{rel_dir}/{f}" not in files.listed or not (files.folder / rel_dir / f).is_file()]
    if missing:
        return [f"objective '{name}' is incomplete: missing {', '.join(missing)}"]
    heads = files.json(f"{rel_dir}/config.json")["heads"]
    dim = heads["embed_dim"]
    if kind == zero_shot.KIND:  # the backbone's own features: one width for both modalities
        heads = {"image_dim": dims[0], "text_dim": dims[0], "embed_dim": dims[0]}
    problems = [] if (heads["image_dim"], heads["text_dim"]) == dims else [
        f"objective '{name}': heads take {heads['image_dim']}-d image and {heads['text_dim']}-d text features, "
        f"the bundle's features are {dims[0]}-d and {dims[1]}-d"]
    for fname, width in (("embeddings.safetensors", dim), ("map.safetensors", 2)):
        tensors, _ = files.tensors(f"{rel_dir}/{fname}")
        for modality in ("image", "text"):
            if _shape(tensors, modality) != (n, width):
                problems.append(f"objective '{name}': {fname}[{modality}] has shape {_shape(tensors, modality)}, "
                                f"expected {(n, width)}")
    return problems
