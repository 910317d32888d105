"""The bundle folder contract, read by the builder, `verify` and the loader alike: a self-contained folder with a
gallery, a backbone, one checkpoint per objective,
gallery embeddings and aligned 2-D maps; built by `cmr_demo.bundle.build`, checked by `cmr_demo.bundle.verify`, loaded
by
`cmr_demo.bundle.load`.

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
                                     objective lab trains on (`add-lab` adds it to a bundle built without it)
  objectives/<dir>/heads.safetensors, objective.safetensors, config.json, metrics.json, history.csv
  objectives/<dir>/embeddings.safetensors   image [N, D], text [N, D] (float16, unit-norm)
  objectives/<dir>/map.safetensors          image [N, 2], text [N, 2] (UMAP, aligned across objectives)
"""
from __future__ import annotations

from pathlib import Path

from cmr_demo.files import load_json

FORMAT = "cmr_demo.bundle/2"  # 2: the build's training job stored as JSON values ("job"), every bundle has "features"
FORMERLY = ("cmr_demo.bundle/1",)  # formats `python -m cmr_demo.bundle migrate` brings to FORMAT
RUN_FILES = ("heads.safetensors", "objective.safetensors", "config.json", "metrics.json", "history.csv",
             "embeddings.safetensors", "map.safetensors")
THUMB_PX = 256  # gallery images are stored at most this large: enough for the UI, small on disk
GALLERY_FEATURES = "gallery/features.safetensors"
CALIBRATION = "gallery/calibration.safetensors"  # labelled pictures beside the gallery that calibrate class reads
ITEMS_FILE = "gallery/items.jsonl"
LAB_FEATURES = "lab/features.safetensors"
SEED_APS = "seeds.safetensors"  # in a run folder: [S, Q] test AP per seed and query (`bundle.build.write_seed_aps`)
RELEVANCE = "a result is relevant to a query when it has the query's class"


IMAGES_DIR = "gallery/images/"


def feature_dims(manifest: dict) -> tuple[int, int]:
    """(image, text) input widths of the bundle's heads."""
    return manifest["features"]["image_dim"], manifest["features"]["text_dim"]


def backbone_spec(folder: str | Path) -> str | None:
    """The bundle's backbone spec with bundled weight paths made absolute (loadable from anywhere);
    None for a features-only bundle."""
    from cmr_demo.backbone.clip import in_bundle
    backbone = load_json(Path(folder) / "manifest.json")["backbone"]
    return None if backbone is None else in_bundle(backbone["spec"], Path(folder))


def outside(root: Path, folder: Path, rels) -> list[str]:
    """The relative paths among `rels` that lead outside `root` (resolved) from `folder`: '..', absolute paths,
    or a link (the file itself or a folder on its way) pointing elsewhere.

    Why not `resolve()` on every path: that walks each component with system calls (~40 us a path: 6 s for a
    50,000-picture bundle at every start). Paths are checked as strings; each distinct folder is resolved once
    and listed once (`scandir` tells links apart without a stat per file); only links are resolved."""
    import os
    root, bad, folders = Path(root).resolve(), [], {}
    for rel in rels:
        if rel.startswith("/") or ".." in rel.split("/"):
            bad.append(rel)
            continue
        parent, _, name = rel.rpartition("/")
        if parent not in folders:
            where = Path(folder, parent)
            try:
                links = {entry.name for entry in os.scandir(where) if entry.is_symlink()}
            except OSError:  # missing: the hash check reports it
                links = set()
            folders[parent] = (where.resolve().is_relative_to(root), links)
        inside, links = folders[parent]
        if not inside or (name in links and not Path(folder, rel).resolve().is_relative_to(root)):
            bad.append(rel)
    return bad
