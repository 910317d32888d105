"""Demo bundles: a self-contained folder with a gallery, a backbone, one checkpoint per objective,
gallery embeddings and aligned 2-D maps; built by `build`, checked by `verify`.

`python -m cmr_demo.bundle build --backbone SPEC --data SPEC --objectives all --out DIR [train options]`
trains through `cmr_demo.train` (the same code, not a copy), then adds what serving needs.
`python -m cmr_demo.bundle verify DIR` checks every file's sha256, every array's shape, and that each
objective is complete. Layout (all paths relative to DIR; see README "Bundles"):

  README.md                          the model card (hub format, model-index results), generated from the manifest
  manifest.json                      format, backbone spec + weights identity, data spec, class names,
                                     objectives -> folder, sha256 of every file, versions, command
  backbone/<file>                    the backbone weights when they are not a public pretrained tag
  gallery/items.jsonl                one line per test item: id, label, text and image (relative path) when the
                                     data has them
  gallery/images/<n>.png             the test images, small (absent when the data ships features only)
  gallery/features.safetensors       image [N, Fi], text [N, Ft]: the gallery's input features (float16), from
                                     the frozen backbone or as the data shipped them; the app calibrates its
                                     out-of-world check on them

Features-only bundles (`build` without `--backbone`, on data that ships features: `clip4cmr:`, `npz:`,
`wikipedia:` with raw_features.mat, `synthetic`): the manifest's `backbone` is null and `features` names
where the features came from. The app serves them for everything that needs no new encoding: gallery
items as queries, Compare, the leaderboard, per-class AP, disagreements and maps.
  lab/features.safetensors           train / val / test input features (float32) and labels: what the app's
                                     objective lab trains on (bundles since 2026-11-30; `add-lab` adds it)
  objectives/<dir>/heads.safetensors, objective.safetensors, config.json, metrics.json, history.csv
  objectives/<dir>/embeddings.safetensors   image [N, D], text [N, D] (float16, unit-norm)
  objectives/<dir>/map.safetensors          image [N, 2], text [N, 2] (UMAP, aligned across objectives)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import (CheckpointError, atomic_write_bytes, file_sha256, load_heads, load_json, load_tensors, package_versions,
                         save_json, save_tensors)
from .bundle_card import CARD_FILE, render_card
from .provenance import machine

FORMAT = "cmr_demo.bundle/1"
RUN_FILES = ("heads.safetensors", "objective.safetensors", "config.json", "metrics.json", "history.csv",
             "embeddings.safetensors", "map.safetensors")
THUMB_PX = 256  # gallery images are stored at most this large: enough for the UI, small on disk
GALLERY_FEATURES = "gallery/features.safetensors"
ITEMS_FILE = "gallery/items.jsonl"
LAB_FEATURES = "lab/features.safetensors"
RELEVANCE = "a result is relevant to a query when it has the query's class"


def _write_gallery(out: Path, split) -> list[dict]:
    """items.jsonl (id, label; text and image when the data has them) plus the test images as small PNGs;
    returns the item records."""
    records = []
    for n, (item_id, label) in enumerate(zip(split.ids, split.labels.tolist())):
        record = {"id": item_id, "label": int(label)}
        if split.texts is not None:
            record["text"] = split.texts[n]
        if split.images is not None:
            record["image"] = _write_thumb(out, n, split.images[n])
        records.append(record)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(out / ITEMS_FILE, lines.encode())
    return records


def _write_thumb(out: Path, n: int, image) -> str:
    from PIL import Image
    (out / "gallery" / "images").mkdir(parents=True, exist_ok=True)
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            thumb = im.convert("RGB")
    else:
        thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_PX, THUMB_PX))
    rel = f"gallery/images/{n:05d}.png"
    atomic_write_bytes(out / rel, _png_bytes(thumb))
    return rel


def _png_bytes(image) -> bytes:
    import io
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _embed_and_map(out: Path, run_dirs: dict[str, Path], image_feats, text_feats, seed: int) -> None:
    """Gallery embeddings per objective and one UMAP per objective, aligned to the first objective's."""
    from tqdm.auto import tqdm

    from .maps import align_to, fit_map  # scipy/umap: build time only, kept out of the serving import path
    reference = None
    for name, run in tqdm(run_dirs.items(), desc="embeddings + maps", unit="objective"):
        heads = load_heads(run / "heads.safetensors", image_feats.shape[1], text_feats.shape[1])
        with torch.no_grad():
            img = heads.encode_image(torch.from_numpy(image_feats)).numpy()
            txt = heads.encode_text(torch.from_numpy(text_feats)).numpy()
        coords = fit_map(np.concatenate([img, txt]), seed=seed)
        reference = coords if reference is None else reference
        coords = align_to(coords, reference)
        n = len(img)
        save_tensors(run / "embeddings.safetensors", {"image": torch.from_numpy(img).half(),
                                                      "text": torch.from_numpy(txt).half()}, {"objective": name})
        save_tensors(run / "map.safetensors", {"image": torch.from_numpy(coords[:n]), "text": torch.from_numpy(coords[n:])},
                     {"objective": name, "method": "umap-cosine+procrustes", "seed": str(seed)})


def build(job, out: str | Path, overwrite: bool = False) -> dict:
    """Train every objective of `job` (a `cmr_demo.train.TrainJob`; its runs go to OUT/objectives), then
    write gallery, embeddings, maps, backbone and manifest into `out`. The data is read and encoded once.

    Without a backbone (`job.features.backbone` None) the data's own features are used and the bundle has
    no backbone (features-only): what needs no new encoding is served, free-text and picture queries are not."""
    from .backbone import bundle_backbone
    from .train import load_dataset, load_features, run_dir_name, train
    out = Path(out)
    job = replace(job, out=str(out / "objectives"))
    backbone, data, seed = job.features.backbone, job.data.spec, job.train.seed
    clock = [time.perf_counter()]
    stages: dict[str, float] = {}

    def stage(name: str) -> None:  # seconds per stage, in the manifest and printed: where a large build goes
        now = time.perf_counter()
        stages[name], clock[0] = round(now - clock[0], 1), now
    dataset = load_dataset(job)  # the splits training uses: the lab trains on exactly these
    _check_buildable(dataset, data, backbone)
    stage("data")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite to rebuild it")
        shutil.rmtree(out)
    feats, source = load_features(job, dataset)
    stage("features")
    rows = train(job, dataset, (feats, source))
    stage("training")
    records = _write_gallery(out, dataset.test)
    write_lab_features(out, feats, dataset)
    stage("gallery")
    run_dirs = {name: out / "objectives" / run_dir_name(name) for name in rows}
    _embed_and_map(out, run_dirs, *feats["test"], seed=seed)
    stage("embeddings + maps")
    save_tensors(out / GALLERY_FEATURES, {"image": torch.from_numpy(feats["test"][0]).half(),
                                          "text": torch.from_numpy(feats["test"][1]).half()}, {"source": source.text})
    image_dim, text_dim = (int(f.shape[1]) for f in feats["test"])
    manifest = {
        "format": FORMAT, "name": out.resolve().name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "command": ["python", "-m", "cmr_demo.bundle", "build", *job.argv(run_options=False), "--out", str(out)],
        "backbone": None if backbone is None else {
            "spec": bundle_backbone(backbone, out), "built_from": backbone, "weights": source.weights_sha256,
            "feature_dim": image_dim},
        "features": {"source": source.kind, "from": source.text, "image_dim": image_dim, "text_dim": text_dim},
        "data": {"spec": data, "class_names": dataset.class_names, "gallery_items": len(records),
                 "texts": dataset.test.texts is not None, "pictures": dataset.test.images is not None},
        "objectives": {name: {"dir": f"objectives/{run_dir_name(name)}",
                              **{k: rows[name][k] for k in ("i2t_map", "t2i_map", "avg_map")}} for name in rows},
        "maps": {"method": "umap (cosine) per objective, orthogonal Procrustes onto the first", "seed": seed},
        "about": _about(dataset, backbone, feats["test"][0]),
        "versions": package_versions(),
    }
    atomic_write_bytes(out / CARD_FILE, render_card(manifest).encode())
    manifest["files"] = {str(p.relative_to(out)): file_sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
    stage("card + hashes")
    manifest["build_seconds"] = stages
    save_json(out / "manifest.json", manifest)
    print("build stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    return manifest


def write_lab_features(out: Path, feats: dict, dataset) -> None:
    """Every split's input features (float32, as trained on) and labels, so the app's lab trains heads with
    exactly what the builder used: with the same settings it reproduces the stored metrics."""
    tensors = {}
    for split, (image, text) in feats.items():
        tensors[f"{split}_image"] = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        tensors[f"{split}_text"] = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32))
        tensors[f"{split}_labels"] = torch.from_numpy(dataset.splits()[split].labels.astype(np.int64))
    (out / LAB_FEATURES).parent.mkdir(parents=True, exist_ok=True)
    save_tensors(out / LAB_FEATURES, tensors, {"splits": ",".join(feats), "val_source": dataset.val_source})


def add_lab(folder: str | Path) -> Path:
    """Give a bundle built before the lab existed its lab features, re-derived from the data and backbone it
    names (the feature cache makes this quick), checked against the gallery it stores, and listed (hashed)
    in its manifest."""
    from .data import DataError
    from .features import dataset_features
    folder = Path(folder)
    manifest = load_json(folder / "manifest.json")
    from .train import load_dataset, parse_job
    run = load_json(folder / next(iter(manifest["objectives"].values()))["dir"] / "config.json")
    dataset = load_dataset(parse_job(run["command"][3:]))  # the run's own `python -m cmr_demo.train` arguments
    feats, _ = dataset_features(dataset, backbone_spec(folder), progress=False)
    stored, _ = load_tensors(folder / GALLERY_FEATURES)
    ids = [json.loads(line)["id"] for line in (folder / ITEMS_FILE).read_text().splitlines() if line]
    if dataset.test.ids != ids or not np.allclose(stored["image"].float().numpy(), feats["test"][0], atol=1e-2, rtol=1e-2):
        raise DataError(f"the data '{manifest['data']['spec']}' no longer gives the gallery {folder} was built from")
    write_lab_features(folder, feats, dataset)
    manifest["files"][LAB_FEATURES] = file_sha256(folder / LAB_FEATURES)
    manifest["files"] = dict(sorted(manifest["files"].items()))
    save_json(folder / "manifest.json", manifest)
    return folder / LAB_FEATURES


def _check_buildable(dataset, data: str, backbone: str | None) -> None:
    """Refuse, before anything is trained or deleted, a bundle the data cannot make."""
    from .data import DataError
    test = dataset.test
    if backbone is None and not test.has_features:
        raise DataError(f"'{data}' gives images and texts, not features: pass --backbone SPEC to encode them "
                        f"(e.g. --backbone RN50:openai)")
    if backbone is not None and not test.has_media:
        raise DataError(f"'{data}' ships features only, so --backbone {backbone} would not be used and the bundle "
                        f"could not encode new queries with it: drop --backbone to build a features-only bundle "
                        f"(gallery items as queries, Compare, leaderboard, maps; no free-text or picture search)")


def feature_dims(manifest: dict) -> tuple[int, int]:
    """(image, text) input widths of the bundle's heads (bundles before `features` had one backbone width)."""
    if "features" in manifest:
        return manifest["features"]["image_dim"], manifest["features"]["text_dim"]
    width = manifest["backbone"]["feature_dim"]
    return width, width


def _about(dataset, backbone: str | None, image_feats: np.ndarray) -> dict:
    """What the bundle shows, for people: the data's own description, relevance, and how well the frozen
    backbone alone knows the classes (zero-shot on the gallery with "a photo of a {class}." prompts; only
    with a backbone: shipped features have no text encoder to write prompts with)."""
    about = {"description": dataset.description, "relevance": RELEVANCE, "classes": len(dataset.class_names),
             "license": dataset.license, "license_id": dataset.license_id,
             "examples": [list(e) for e in dataset.examples]}
    if backbone is None:
        return about
    from .backbone import load_backbone
    from .pretrain import TEMPLATE, zero_shot_from_features
    prompts = load_backbone(backbone).encode_texts([TEMPLATE.format(c) for c in dataset.class_names], progress=False)
    zero_shot = zero_shot_from_features(image_feats, prompts, dataset.test.labels, dataset.class_names)
    zero_shot.pop("per_class")
    return {**about, "zero_shot": {**zero_shot, "on": "the gallery (test split)"}}


def backbone_spec(folder: str | Path) -> str | None:
    """The bundle's backbone spec with bundled weight paths made absolute (loadable from anywhere);
    None for a features-only bundle."""
    from .backbone import in_bundle
    backbone = load_json(Path(folder) / "manifest.json")["backbone"]
    return None if backbone is None else in_bundle(backbone["spec"], Path(folder))


IMAGES_DIR = "gallery/images/"


def outside(root: Path, folder: Path, rels) -> list[str]:
    """The relative paths among `rels` that lead outside `root` (resolved) from `folder`: '..', absolute paths,
    or a link (the file itself or a folder on its way) pointing elsewhere.

    Why not `resolve()` on every path: that walks each component with system calls (~40 us a path: 6 s for a
    50,000-picture bundle at every start). Paths are checked by their text; only links are resolved, and each
    distinct folder once."""
    import os
    from pathlib import PurePosixPath
    root, bad, folders = Path(root).resolve(), [], {}
    for rel in rels:
        pure = PurePosixPath(rel)
        parent = folder / pure.parent
        if parent not in folders:
            folders[parent] = parent.resolve().is_relative_to(root)
        path = folder / rel
        if pure.is_absolute() or ".." in pure.parts or not folders[parent] or (
                os.path.islink(path) and not path.resolve().is_relative_to(root)):
            bad.append(rel)
    return bad


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
                f"cmr_demo.bundle_card.render_card(manifest) to it"]
    return []


def _verify_items(folder: Path, manifest: dict, n: int) -> list[str]:
    """One record per gallery item, each picture it names a file the manifest lists (so hashed)."""
    path = folder / ITEMS_FILE
    if ITEMS_FILE not in manifest["files"] or not path.is_file():
        return [f"missing file {ITEMS_FILE}"]
    try:
        items = [json.loads(line) for line in path.read_text().splitlines() if line]
    except ValueError as err:
        return [f"{ITEMS_FILE} is not one JSON object per line: {err}"]
    problems = [] if len(items) == n else [f"{ITEMS_FILE} has {len(items)} items, the manifest says {n}"]
    unlisted = [it.get("image") for it in items if it.get("image") and it["image"] not in manifest["files"]]
    return problems + ([f"{len(unlisted)} gallery pictures are not listed in the manifest, e.g. {unlisted[0]!r}"]
                       if unlisted else [])


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


def main(argv: list[str] | None = None) -> int:
    from .cliargs import HelpFormatter
    from .train import add_job_args, job_from_args
    parser = argparse.ArgumentParser(prog="python -m cmr_demo.bundle", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train every objective and assemble a bundle the app serves",
                       description="Train one checkpoint per objective (the training stage, cmr_demo.train), then "
                                   "write the gallery, embeddings, maps, backbone and manifest into --out. Without "
                                   "--backbone, on data that ships features (clip4cmr:, npz:, wikipedia: with "
                                   "raw_features.mat, synthetic), the bundle is features-only.",
                       formatter_class=HelpFormatter)
    add_job_args(b, objectives="all")
    b.add_argument("--out", required=True, help="bundle folder (must be empty, or pass --overwrite)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    b.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    v = sub.add_parser("verify", help="check hashes, shapes and completeness", formatter_class=HelpFormatter,
                       description="Check every file's sha256, every array's shape and each objective's files.")
    v.add_argument("folder", help="the bundle folder")
    a = sub.add_parser("add-lab", help="add the lab's train/val/test features to a bundle built before them",
                       formatter_class=HelpFormatter,
                       description="Re-derive the features the bundle was trained on from the data and backbone it "
                                   "names, check them against its gallery, and add them (the app's objective lab).")
    a.add_argument("folder", help="the bundle folder")
    args = parser.parse_args(argv)
    if args.command == "add-lab":
        print(f"wrote {add_lab(args.folder)}")
        return 0
    if args.command == "build":
        manifest = build(job_from_args(args, None), args.out, args.overwrite)
        print(f"bundle written to {args.out}: {len(manifest['objectives'])} objectives, "
              f"{manifest['data']['gallery_items']} gallery items, {len(manifest['files'])} files")
        return 0
    problems = verify(args.folder)
    print("\n".join(problems) if problems else f"{args.folder}: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    from cmr_demo.cli import run
    sys.exit(run(main))
