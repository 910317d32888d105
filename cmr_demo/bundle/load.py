"""Loading a bundle for serving: everything the app needs, checked, in memory, without numba.

Why a separate module from the builder: serving must start in seconds and never import umap
(numba compiles for 25-30 s per process). Hashes are verified on load (a damaged or edited bundle
is refused, naming the file), and the heads are checked against the backbone's feature width.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmr_demo.bundle.layout import GALLERY_FEATURES, IMAGES_DIR, ITEMS_FILE, backbone_spec, feature_dims, outside

from cmr_demo.bundle.verify import verify
from cmr_demo.files import CheckpointError, file_sha256, load_heads, load_json, load_tensors
from cmr_demo.train.heads import Heads
from cmr_demo.train.objectives import Objective, build_objective


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
    backbone: object | None = None  # cmr_demo.backbone.clip.Backbone, loaded on request
    image_features: np.ndarray | None = None  # [N, F] backbone features of the gallery (bundles since 2026-11-30)
    text_features: np.ndarray | None = None
    unchecked: dict[str, str] = field(default_factory=dict)  # gallery pictures whose sha256 is checked on first use

    @functools.cached_property
    def has_pictures(self) -> bool:  # asked on every request: looked through the items once
        return all(it.get("image") for it in self.items)

    @property
    def has_texts(self) -> bool:
        """The items carry their texts (features-only bundles may not: their items' text is "")."""
        return self.manifest["data"].get("texts", True)

    def image_path(self, index: int) -> Path | None:
        """The item's picture in the bundle, or None (features-only bundles have none); its hash is checked the
        first time it is asked for (a damaged picture is refused, never served)."""
        rel = self.items[index].get("image")
        if not rel:
            return None
        digest = self.unchecked.get(rel)
        if digest is not None:
            if file_sha256(self.folder / rel) != digest:
                raise CheckpointError(f"bundle {self.folder.name}: gallery picture {rel} was changed or damaged "
                                      f"(sha256 mismatch); run 'python -m cmr_demo.bundle verify' and rebuild it")
            self.unchecked.pop(rel, None)
        return self.folder / rel


def _check_inside(root: Path, rel_paths: list[str], folder: Path) -> None:
    """Refuse a bundle whose gallery paths point outside it: the app serves these files to anyone."""
    bad = outside(root, folder, rel_paths)
    if bad:
        raise CheckpointError(f"bundle {folder}: gallery path {bad[0]!r} points outside {root.resolve()}; refusing "
                              f"to serve it")


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
    if check_hashes:  # every file but the gallery pictures now; each picture when first used (Bundle.image_path)
        problems = verify(folder, images=False)
        if problems:
            raise CheckpointError(f"bundle {folder} failed verification:\n  " + "\n  ".join(problems[:10]))
    manifest = load_json(folder / "manifest.json")
    items = [json.loads(line) for line in (folder / ITEMS_FILE).read_text().splitlines() if line]
    if not check_hashes:  # verify() has checked it already: every item's picture is a listed file, none outside
        _check_inside(folder / "gallery", [it["image"] for it in items if it.get("image")], folder)
    for it in items:  # one shape for every consumer: a features-only item without its text has ""
        it.setdefault("text", "")
    bundle = Bundle(folder, manifest, items, np.array([it["label"] for it in items], dtype=np.int64),
                    manifest["data"]["class_names"])
    if check_hashes:
        bundle.unchecked = {rel: d for rel, d in manifest["files"].items() if rel.startswith(IMAGES_DIR)}
    image_dim, text_dim = feature_dims(manifest)
    for name, entry in manifest["objectives"].items():
        run = folder / entry["dir"]
        emb, _ = load_tensors(run / "embeddings.safetensors")
        xy, _ = load_tensors(run / "map.safetensors")
        bundle.objectives[name] = ObjectiveView(
            name, load_heads(run / "heads.safetensors", image_dim=image_dim, text_dim=text_dim),
            emb["image"].float().numpy(), emb["text"].float().numpy(), xy["image"].numpy(), xy["text"].numpy(),
            load_json(run / "metrics.json"), _load_objective(run, len(bundle.class_names)))
    if GALLERY_FEATURES in manifest["files"]:  # listed, so its hash was checked with the rest
        feats, _ = load_tensors(folder / GALLERY_FEATURES)
        bundle.image_features, bundle.text_features = (feats[m].float().numpy() for m in ("image", "text"))
    spec = backbone_spec(folder)
    if load_backbone and spec is not None:
        bundle.backbone = shared_backbone(spec)
        if bundle.backbone.feature_dim != image_dim:
            raise CheckpointError(f"bundle {folder} was built on {image_dim}-d features but its backbone "
                                  f"'{manifest['backbone']['spec']}' gives {bundle.backbone.feature_dim}-d")
    return bundle


_BACKBONES: dict[str, object] = {}


def shared_backbone(spec: str):
    """One loaded backbone per distinct architecture and weights in this process: bundles built on the same
    weights share it, also when each carries its own copy of the file (a ViT-B/32 is ~600 MB; the app may
    serve several bundles)."""
    from cmr_demo.backbone.clip import load_backbone as load, weights_identity
    key = f"{spec.partition(':')[0]}@{weights_identity(spec)}"
    if key not in _BACKBONES:
        _BACKBONES[key] = load(spec)
    return _BACKBONES[key]
