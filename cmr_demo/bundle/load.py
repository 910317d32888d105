"""Loading a bundle for serving: everything the app needs, checked, in memory, without numba.

Why a separate module from the builder: serving must start in seconds and never import umap
(numba compiles for 25-30 s per process). Hashes are verified on load (a damaged or edited bundle
is refused, naming the file), and the heads are checked against the backbone's feature width.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmr_demo.bundle.layout import CALIBRATION, GALLERY_FEATURES, ITEMS_FILE, SEED_APS, feature_dims, outside
from cmr_demo.bundle.reader import BundleFiles

from cmr_demo.bundle import world_check, zero_shot
from cmr_demo.bundle.verify import check
from cmr_demo.files import CheckpointError, file_sha256
from cmr_demo.train.heads import Heads, heads_from
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
    kind: str = "trained"  # or "zero-shot" (the backbone alone, cmr_demo.bundle.zero_shot), or "lab"
    seeds: dict | None = None  # avg mAP of the same objective under other training seeds: {runs, n, mean, std, ci_*}
    entry: dict = field(default_factory=dict)  # the manifest's line: how its setting was chosen, the paper's runs
    seed_ap: dict[str, np.ndarray] = field(default_factory=dict)  # [S, Q] test AP per seed: i2t, t2i (paper_i2t, ..)

    @property
    def trained(self) -> bool:
        """Heads trained with class labels (what the lab can re-train); not the backbone alone."""
        return self.kind != "zero-shot"


@dataclass
class Bundle:
    folder: Path
    manifest: dict
    items: list[dict]  # id, text, label, image (relative path)
    labels: np.ndarray  # [N] int64
    class_names: list[str]
    objectives: dict[str, ObjectiveView] = field(default_factory=dict)
    backbone: object | None = None  # cmr_demo.backbone.clip.Backbone, loaded on request
    image_features: np.ndarray | None = None  # [N, F] backbone features of the gallery
    text_features: np.ndarray | None = None
    unchecked: dict[str, str] = field(default_factory=dict)  # gallery pictures whose sha256 is checked on first use
    picture_check: object | None = None  # cmr_demo.bundle.world_check.PictureCheck, when the bundle has one
    calibration: tuple[np.ndarray, np.ndarray] | None = None  # [M, F] features and [M] labels of related pictures

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


def _load_objective(files: BundleFiles, run: str, num_classes: int) -> Objective:
    """The objective module as trained (its classifier, prototypes or proxies), in eval mode."""
    cfg = files.json(f"{run}/config.json")
    objective = build_objective(cfg["train"]["objective"], num_classes, cfg["heads"]["embed_dim"],
                                cfg["train"].get("objective_options"))
    state = dict(files.tensors(f"{run}/objective.safetensors")[0])
    state.pop("_empty", None)
    objective.load_state_dict(state)
    return objective.eval()


def load_bundle(folder: str | Path, load_backbone: bool = True, check_hashes: bool = True) -> Bundle:
    """Read and check a bundle, each file once; raise CheckpointError naming every problem when it is not intact.
    The gallery pictures are checked when first served (`Bundle.image_path`), not read here."""
    folder = Path(folder)
    files = BundleFiles(folder, check=check_hashes)
    problems = check(files, images=False) if check_hashes else [p for p in [files.format_problem()] if p]
    if problems:
        raise CheckpointError(f"bundle {folder} failed verification:\n  " + "\n  ".join(problems[:10]))
    manifest = files.manifest
    items = [dict(it, text=it.get("text", "")) for it in files.lines(ITEMS_FILE)]  # features-only items: text ""
    if not check_hashes:  # check() has not looked: every item's picture must still lie inside the bundle
        _check_inside(folder / "gallery", [it["image"] for it in items if it.get("image")], folder)
    bundle = Bundle(folder, manifest, items, np.array([it["label"] for it in items], dtype=np.int64),
                    manifest["data"]["class_names"])
    if check_hashes:
        bundle.unchecked = files.images()
    for name, entry in manifest["objectives"].items():
        bundle.objectives[name] = _view(files, name, entry, len(bundle.class_names))
    if GALLERY_FEATURES in files.listed:
        feats, _ = files.tensors(GALLERY_FEATURES)
        bundle.image_features, bundle.text_features = (feats[m].float().numpy() for m in ("image", "text"))
    if CALIBRATION in files.listed:
        tensors, _ = files.tensors(CALIBRATION)
        bundle.calibration = tensors["image"].float().numpy(), tensors["labels"].numpy()
    if world_check.FILE in files.listed:
        bundle.picture_check = world_check.PictureCheck.from_tensors(*files.tensors(world_check.FILE))
    if load_backbone and manifest["backbone"] is not None:
        # ARCH:random draws its weights from torch's one process-wide generator (seeded): built in the background,
        # a module built meanwhile in this thread (the next bundle's heads) drew from it too, and the "same" random
        # backbone differed between processes. Random backbones (tests, demos of the pipeline) load at once.
        random = manifest["backbone"]["spec"].partition(":")[2] == "random"
        bundle.backbone = LazyBackbone(lambda: _backbone(files), background=not random)
    return bundle


class LazyBackbone:
    """A bundle's backbone, loading in a background thread from the moment the bundle is loaded: serving starts
    without waiting for open_clip's import and the model (~2 s of a 2-core start), and the first text or picture
    to encode waits for it if it is not there yet. Attribute access goes to the loaded Backbone; a backbone that
    failed to load raises its error (naming the bundle) wherever it is used."""

    def __init__(self, load, background: bool = True):
        self._done = threading.Event()
        self._value = self._error = None

        def work():
            try:
                self._value = load()
            except Exception as err:  # noqa: BLE001 (kept, raised where the backbone is used)
                self._error = err
            finally:
                self._done.set()
        if not background:
            work()
            return
        # not a daemon: a process that ends while torch is loading the model in a daemon thread aborts
        # ("terminate called without an active exception"); the exit waits the second or two instead
        threading.Thread(target=work, name="backbone-load").start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the backbone has loaded or failed (its error is raised where it is used); whether it has."""
        return self._done.wait(timeout)

    def get(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value

    def __getattr__(self, name: str):
        return getattr(self.get(), name)


def _view(files: BundleFiles, name: str, entry: dict, num_classes: int) -> ObjectiveView:
    run = entry["dir"]
    emb, xy = files.tensors(f"{run}/embeddings.safetensors")[0], files.tensors(f"{run}/map.safetensors")[0]
    if entry.get("kind") == zero_shot.KIND:  # the backbone alone: no heads, classes from prompts
        heads, objective = (
            zero_shot.FrozenHeads(),
            zero_shot.module_from(files.tensors(f"{run}/prompts.safetensors")[0]),
        )
    else:
        image_dim, text_dim = feature_dims(files.manifest)
        heads = heads_from(*files.tensors(f"{run}/heads.safetensors"), files.folder / run / "heads.safetensors",
                           image_dim, text_dim)
        objective = _load_objective(files, run, num_classes)
    seed_ap = {}
    if f"{run}/{SEED_APS}" in files.listed:
        seed_ap = {k: v.numpy().astype(np.float64) for k, v in files.tensors(f"{run}/{SEED_APS}")[0].items()}
    return ObjectiveView(name, heads, emb["image"].float().numpy(), emb["text"].float().numpy(), xy["image"].numpy(),
                         xy["text"].numpy(), files.json(f"{run}/metrics.json"), objective, entry.get("kind", "trained"),
                         entry.get("seeds"), entry, seed_ap)


def _backbone(files: BundleFiles):
    """The bundle's backbone: its own weights file from the bytes already read and checked (shared with other
    bundles on the same weights), or a published tag loaded as usual; checked against the bundle's feature width."""
    backbone = _backbone_weights(files)
    image_dim = feature_dims(files.manifest)[0]
    if backbone.feature_dim != image_dim:
        raise CheckpointError(f"bundle {files.folder} was built on {image_dim}-d features but its backbone "
                              f"'{files.manifest['backbone']['spec']}' gives {backbone.feature_dim}-d")
    return backbone


def _backbone_weights(files: BundleFiles):
    from cmr_demo.backbone.clip import backbone_from_state, in_bundle
    stored = files.manifest["backbone"]["spec"]
    arch, _, rest = stored.partition(":")
    if not rest.startswith("backbone/") or not rest.endswith(".safetensors"):
        return shared_backbone(in_bundle(stored, files.folder))
    key = f"{arch}@{files.listed[rest]}"
    with _SHARING:
        if key not in _BACKBONES:
            _BACKBONES[key] = backbone_from_state(arch, files.tensors(rest)[0], files.listed[rest],
                                                  in_bundle(stored, files.folder))
    return _BACKBONES[key]


_BACKBONES: dict[str, object] = {}
_SHARING = threading.Lock()  # bundles load their backbones in threads of their own


def shared_backbone(spec: str):
    """One loaded backbone per distinct architecture and weights in this process: bundles built on the same
    weights share it, also when each carries its own copy of the file (a ViT-B/32 is ~600 MB; the app may
    serve several bundles)."""
    from cmr_demo.backbone.clip import load_backbone as load, weights_identity
    key = f"{spec.partition(':')[0]}@{weights_identity(spec)}"
    with _SHARING:
        if key not in _BACKBONES:
            _BACKBONES[key] = load(spec)
    return _BACKBONES[key]
