"""Loading a bundle for serving: everything the app needs, checked, in memory, without numba.

Why a separate module from the builder: serving must start in seconds and never import umap
(numba compiles for 25-30 s per process). Hashes are verified on load (a damaged or edited bundle
is refused, naming the file), and the heads are checked against the backbone's feature width.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle import GALLERY_FEATURES, backbone_spec, verify
from .checkpoint import CheckpointError, load_heads, load_json, load_tensors
from .heads import Heads
from .losses import Objective, build_objective


@dataclass
class ObjectiveView:
    """One objective's serving state: its heads, gallery embeddings and map coordinates."""
    name: str
    heads: Heads
    image_emb: np.ndarray  # [N, D] float32, unit-norm
    text_emb: np.ndarray  # [N, D]
    image_xy: np.ndarray  # [N, 2] map coordinates
    text_xy: np.ndarray  # [N, 2]
    metrics: dict
    objective: Objective | None = None  # the trained loss module: classifier / prototypes / proxies


@dataclass
class Bundle:
    folder: Path
    manifest: dict
    items: list[dict]  # id, text, label, image (relative path)
    labels: np.ndarray  # [N] int64
    class_names: list[str]
    objectives: dict[str, ObjectiveView] = field(default_factory=dict)
    backbone: object | None = None  # cmr_demo.backbone.Backbone, loaded on request
    image_features: np.ndarray | None = None  # [N, F] backbone features of the gallery (bundles since 2026-11-30)
    text_features: np.ndarray | None = None

    def image_path(self, index: int) -> Path:
        return self.folder / self.items[index]["image"]


def _check_inside(root: Path, rel_paths: list[str], folder: Path) -> None:
    """Refuse a bundle whose gallery paths point outside it: the app serves these files to anyone."""
    root = root.resolve()
    for rel in rel_paths:
        if not (folder / rel).resolve().is_relative_to(root):
            raise CheckpointError(f"bundle {folder}: gallery path {rel!r} points outside {root}; refusing to serve it")


def _load_objective(run: Path, num_classes: int) -> Objective:
    """The objective module as trained (its classifier, prototypes or proxies), in eval mode."""
    cfg = load_json(run / "config.json")
    objective = build_objective(cfg["train"]["objective"], num_classes, cfg["heads"]["embed_dim"],
                                cfg["train"].get("objective_options"))
    state, _ = load_tensors(run / "objective.safetensors")
    state.pop("_empty", None)
    objective.load_state_dict(state)
    return objective.eval()


def load_bundle(folder: str | Path, load_backbone: bool = True, check_hashes: bool = True) -> Bundle:
    """Read and check a bundle; raise CheckpointError naming every problem when it is not intact."""
    folder = Path(folder)
    if check_hashes:
        problems = verify(folder)
        if problems:
            raise CheckpointError(f"bundle {folder} failed verification:\n  " + "\n  ".join(problems[:10]))
    manifest = load_json(folder / "manifest.json")
    items = [json.loads(line) for line in (folder / "gallery" / "items.jsonl").read_text().splitlines() if line]
    _check_inside(folder / "gallery", [it["image"] for it in items], folder)
    bundle = Bundle(folder, manifest, items, np.array([it["label"] for it in items], dtype=np.int64),
                    manifest["data"]["class_names"])
    feature_dim = manifest["backbone"]["feature_dim"]
    for name, entry in manifest["objectives"].items():
        run = folder / entry["dir"]
        emb, _ = load_tensors(run / "embeddings.safetensors")
        xy, _ = load_tensors(run / "map.safetensors")
        bundle.objectives[name] = ObjectiveView(
            name, load_heads(run / "heads.safetensors", image_dim=feature_dim, text_dim=feature_dim),
            emb["image"].float().numpy(), emb["text"].float().numpy(), xy["image"].numpy(), xy["text"].numpy(),
            load_json(run / "metrics.json"), _load_objective(run, len(bundle.class_names)))
    if GALLERY_FEATURES in manifest["files"]:  # listed, so its hash was checked with the rest
        feats, _ = load_tensors(folder / GALLERY_FEATURES)
        bundle.image_features, bundle.text_features = (feats[m].float().numpy() for m in ("image", "text"))
    if load_backbone:
        from .backbone import load_backbone as load
        bundle.backbone = load(backbone_spec(folder))
        if bundle.backbone.feature_dim != feature_dim:
            raise CheckpointError(f"bundle {folder} was built on {feature_dim}-d features but its backbone "
                                  f"'{manifest['backbone']['spec']}' gives {bundle.backbone.feature_dim}-d")
    return bundle
