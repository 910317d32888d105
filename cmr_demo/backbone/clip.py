"""The frozen CLIP backbone: resolve a spec through open_clip, encode images and texts in batches.

Spec grammar (one string, as on the command line):
  ARCH:TAG          a pretrained tag open_clip knows        ViT-B-32:laion2b_s34b_b79k, RN50:openai
  ARCH:FILE         local weights (.safetensors/.pt/.pth/.bin)   tiny-clip:assets/demo/backbone.safetensors
  ARCH:random       random initialisation (seed 0), for tests and from-scratch pre-training
  hf-hub:ORG/REPO   an open_clip model repository on the Hugging Face hub
  local-dir:DIR     a folder with open_clip_config.json and weights
Architectures are open_clip's plus the small JSON configs in cmr_demo/model_configs/.

Weights that are neither cached nor reachable fail at once, saying how to provide them (`cmr_demo.backbone.hub`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import numpy as np
import torch

from cmr_demo.backbone.hub import BackboneError, cached_hf, hub_endpoint, require_downloadable
from cmr_demo.files import file_sha256
from cmr_demo.compat import ensure_torchvision

ensure_torchvision()
import open_clip  # noqa: E402  (must follow the compat step)

CONFIG_DIR = Path(__file__).parent / "model_configs"
DEFAULT_BACKBONE = "RN50:openai"  # the paper's frozen backbone
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=None)
def register_model_configs() -> list[str]:
    """Make the package's JSON architectures known to open_clip (idempotent)."""
    open_clip.add_model_config(CONFIG_DIR)
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


@dataclass(frozen=True)
class BackboneSpec:
    kind: str  # a key of SPEC_KINDS: "tag", "file", "random", "hf-hub", "local-dir"
    arch: str  # architecture name ("" for hf-hub / local-dir, whose config travels with the weights)
    value: str  # tag, path or repo id

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.value}" if SPEC_KINDS[self.kind].prefixed else f"{self.arch}:{self.value}"


class SpecKind:
    """One form of backbone spec: how it is recognised, checked before loading, created through open_clip,
    identified (what the weights are, without loading them) and carried into a bundle. The loader, the feature
    cache and the bundle builder all ask the registry below (SPEC_KINDS), never the spec's form."""
    prefixed = False  # "KIND:VALUE" (hf-hub, local-dir) rather than "ARCH:VALUE"

    def matches(self, arch: str, rest: str) -> bool:  # for ARCH:VALUE kinds, tried in registry order
        return False

    def check(self, spec: BackboneSpec) -> None:
        """Raise BackboneError before loading when the weights cannot be had (offline, missing files)."""

    def create_args(self, spec: BackboneSpec) -> tuple[str, str | None]:
        """(model name, pretrained) for open_clip.create_model_and_transforms."""
        return spec.arch, spec.value

    def identity(self, spec: BackboneSpec) -> str:
        return "published:" + spec.text  # public tags and repositories name immutable published weights

    def into_bundle(self, spec: BackboneSpec, out: Path) -> str:
        """Copy what the bundle needs to load the backbone without this machine; return the spec it stores."""
        return spec.text


class Random(SpecKind):
    def matches(self, arch, rest):
        return rest == "random"

    def create_args(self, spec):
        return spec.arch, None

    def identity(self, spec):
        return "random-init-seed-0:" + hashlib.sha256(open_clip.__version__.encode()).hexdigest()[:16]


class Tag(SpecKind):
    def matches(self, arch, rest):
        return bool(open_clip.get_pretrained_cfg(arch, rest))

    def check(self, spec):
        require_downloadable(spec, *_tag_source(spec))


class File(SpecKind):
    def matches(self, arch, rest):
        if not (rest.endswith(WEIGHT_SUFFIXES) or os.sep in rest or Path(rest).exists()):
            return False
        if not Path(rest).is_file():
            raise BackboneError(f"weights file '{rest}' for backbone '{arch}:{rest}' does not exist")
        return True

    def identity(self, spec):
        return file_sha256(spec.value)

    def into_bundle(self, spec, out):
        (out / "backbone").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.value, out / "backbone" / Path(spec.value).name)
        return f"{spec.arch}:backbone/{Path(spec.value).name}"


class HfHub(SpecKind):
    prefixed = True

    def check(self, spec):
        require_downloadable(spec, hub_endpoint(), cached_hf(spec.value, ["open_clip_config.json"]))

    def create_args(self, spec):
        return spec.text, None


class LocalDir(SpecKind):
    prefixed = True

    def check(self, spec):
        if not (Path(spec.value) / "open_clip_config.json").is_file():
            raise BackboneError(f"'{spec.text}': folder must hold open_clip_config.json and a weights file")

    def create_args(self, spec):
        return spec.text, None

    def identity(self, spec):
        files = sorted(p for p in Path(spec.value).iterdir() if p.suffix in WEIGHT_SUFFIXES)
        return file_sha256(files[0]) if files else "no-weights-file"

    def into_bundle(self, spec, out):
        shutil.copytree(spec.value, out / "backbone" / "local", dirs_exist_ok=True)
        return "local-dir:backbone/local"


SPEC_KINDS: dict[str, SpecKind] = {"hf-hub": HfHub(), "local-dir": LocalDir(), "random": Random(), "tag": Tag(),
                                   "file": File()}  # ARCH:VALUE kinds are tried in this order


def _forms(arch: str) -> str:
    tags = open_clip.list_pretrained_tags_by_model(arch) if arch in open_clip.list_models() else []
    return (f"'{arch}:TAG' (tags: {', '.join(tags) or 'none published'}), '{arch}:/path/weights.safetensors', "
            f"'{arch}:random', 'hf-hub:ORG/REPO' or 'local-dir:/path/to/folder'")


def parse_backbone_spec(spec: str) -> BackboneSpec:
    register_model_configs()
    head, sep, rest = spec.partition(":")
    if head in SPEC_KINDS and SPEC_KINDS[head].prefixed:
        if not rest:
            raise BackboneError(f"'{spec}' names no {'repository' if head == 'hf-hub' else 'folder'}")
        return BackboneSpec(head, "", rest)
    if head not in open_clip.list_models():
        raise BackboneError(f"unknown architecture '{head}' in backbone '{spec}'; known: "
                            f"{', '.join(open_clip.list_models())}")
    if not sep or not rest:
        raise BackboneError(f"backbone '{spec}' names no weights; use one of {_forms(head)}")
    for name, kind in SPEC_KINDS.items():
        if not kind.prefixed and kind.matches(head, rest):
            return BackboneSpec(name, head, rest)
    raise BackboneError(f"'{rest}' is neither a pretrained tag of {head} nor a weights file; use one of {_forms(head)}")


def bundle_backbone(spec: str, out: Path) -> str:
    """Carry the backbone `spec` into the bundle folder `out` (weights that are not public are copied);
    returns the spec as the bundle stores it, relative to the bundle."""
    parsed = parse_backbone_spec(spec)
    return SPEC_KINDS[parsed.kind].into_bundle(parsed, out)


def in_bundle(stored: str, folder: Path) -> str:
    """A bundle's stored spec, loadable from anywhere: what `bundle_backbone` copied under backbone/ made
    absolute."""
    head, _, rest = stored.partition(":")
    return f"{head}:{Path(folder).resolve() / rest}" if rest.startswith("backbone/") else stored


def _tag_source(spec: BackboneSpec) -> tuple[str, str | None]:
    """(where a pretrained tag's weights download from, their cached copy or None)."""
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.value)
    if cfg.get("hf_hub"):  # open_clip's rule: "org/repo/file" or "org/repo/" (default names)
        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename, filename.replace(".bin", ".safetensors")] if filename else [
            "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        return hub_endpoint(), cached_hf(repo, names)
    where = cfg.get("url", "")
    local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(where).path)
    return where, str(local) if local.is_file() else None


def split_preprocess(preprocess) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
    """open_clip's preprocessing cut before ToTensor (or its MaybeToTensor) + Normalize: (PIL -> uint8, mean, std).

    Why: decoding workers then hand over uint8 pixels instead of float32 (4x fewer bytes through
    shared memory, pinned memory and the bus), and the float conversion and normalisation run on the
    device. On a GPU the float batches, not the model, were what capped ViT-B-32 extraction. The
    arithmetic is ToTensor's and Normalize's own (x / 255 - mean) / std, so features do not change.
    """
    from torchvision import transforms as T
    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], T.ToTensor) or not isinstance(steps[-1], T.Normalize):
        return None
    norm = steps[-1]
    return T.Compose([*steps[:-2], T.PILToTensor()]), torch.tensor(norm.mean), torch.tensor(norm.std)


class _ImageItems(torch.utils.data.Dataset):
    """Paths or PIL images -> preprocessed tensors (a Dataset so DataLoader workers can decode)."""

    def __init__(self, images: Sequence[Any], preprocess):
        self.images, self.preprocess = images, preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image
        item = self.images[i]
        if isinstance(item, (str, Path)):
            with Image.open(item) as im:
                return self.preprocess(im.convert("RGB"))
        return self.preprocess(item.convert("RGB"))


@dataclass
class Backbone:
    """A frozen open_clip model with its preprocessing and tokenizer, and what identifies its weights."""
    spec: str
    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    weights_sha256: str
    device: torch.device
    precision: str = "fp32"
    feature_dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)
        with torch.no_grad():
            self.feature_dim = int(self.model.encode_text(self.tokenizer(["probe"]).to(self.device)).shape[-1])
        split = split_preprocess(self.preprocess)  # decided once: encode_images runs per app query too
        self._on_cpu = self.preprocess if split is None else split[0]
        self._finish = None if split is None else self._normalizer(*split[1:])

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Any], batch_size: int = 64, num_workers: int = 0,
                      progress: bool = True) -> np.ndarray:
        """[N] paths or PIL images -> [N, feature_dim] float32 (not normalised, as in CLIP4CMR)."""
        from tqdm.auto import tqdm
        loader = torch.utils.data.DataLoader(_ImageItems(images, self._on_cpu), batch_size=batch_size,
                                             num_workers=num_workers, pin_memory=self.device.type == "cuda")
        out = []
        for batch in tqdm(loader, desc="encode images", unit="batch", disable=not progress):
            batch = batch.to(self.device, non_blocking=True)
            if self._finish is not None:
                batch = self._finish(batch)
            with self._autocast():
                out.append(self.model.encode_image(batch).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim), np.float32)

    def _normalizer(self, mean: torch.Tensor, std: torch.Tensor):
        """uint8 [B, 3, H, W] on the device -> what ToTensor + Normalize would have produced."""
        mean, std = mean.to(self.device)[:, None, None], std.to(self.device)[:, None, None]
        return lambda x: x.float().div_(255).sub_(mean).div_(std)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
        """[N] strings -> [N, feature_dim] float32; long texts are truncated to the context length."""
        from tqdm.auto import tqdm
        out = []
        for start in tqdm(range(0, len(texts), batch_size), desc="encode texts", unit="batch",
                          disable=not progress):
            tokens = self.tokenizer(list(texts[start:start + batch_size])).to(self.device)
            with self._autocast():
                out.append(self.model.encode_text(tokens).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim), np.float32)


def _resolve_device(device: str, precision: str) -> torch.device:
    if precision not in PRECISIONS:
        raise BackboneError(f"precision '{precision}' is not one of {list(PRECISIONS)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError("device 'cuda' asked for but no CUDA GPU is visible; use --device cpu")
    if dev.type == "cpu" and precision == "fp16":
        raise BackboneError("fp16 autocast needs a CUDA device; on CPU use --precision fp32 or bf16")
    return dev


# torch's RNG is one per process: two models created at once (a bundle's backbone loading in the background while
# another is loaded) drew from it in turn, and ARCH:random came out different each time (its text features no
# longer matched the gallery's). One creation at a time.
_CREATING = threading.Lock()


def _create(spec: BackboneSpec, device: torch.device):
    name, pretrained = SPEC_KINDS[spec.kind].create_args(spec)
    with _CREATING, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # ARCH:random is the same network in every process
        created = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    return created, open_clip.get_tokenizer(name)


@lru_cache(maxsize=32)
def weights_identity(spec: str) -> str:
    """What the weights behind `spec` are, without loading the model (memoised per process)."""
    parsed = parse_backbone_spec(spec)
    return SPEC_KINDS[parsed.kind].identity(parsed)


def load_backbone(spec: str, device: str = "cpu", precision: str = "fp32") -> Backbone:
    """Resolve `spec` (see module docstring) and load it frozen, in eval mode, on `device`."""
    parsed = parse_backbone_spec(spec)
    dev = _resolve_device(device, precision)
    SPEC_KINDS[parsed.kind].check(parsed)
    try:
        (model, _, preprocess), tokenizer = _create(parsed, dev)
    except (RuntimeError, OSError, KeyError) as err:
        raise BackboneError(f"open_clip could not load backbone '{spec}': {err}") from err
    return Backbone(spec=parsed.text, model=model, preprocess=preprocess, tokenizer=tokenizer,
                    weights_sha256=weights_identity(spec), device=dev, precision=precision)


def backbone_from_state(arch: str, state: dict, identity: str, spec: str, device: str = "cpu") -> Backbone:
    """A backbone from weights already in memory (a bundle's, read and checked once): the architecture built as
    `ARCH:random` would be, then the weights loaded. `identity` is what the weights are (their sha256)."""
    register_model_configs()
    dev = _resolve_device(device, "fp32")
    logging.disable(logging.WARNING)  # open_clip warns that it made a model without weights: they come next
    try:
        (model, _, preprocess), tokenizer = _create(BackboneSpec("random", arch, "random"), dev)
    finally:
        logging.disable(logging.NOTSET)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BackboneError(f"the weights of backbone '{spec}' do not fit the architecture '{arch}': "
                            f"{str(err)[:300]}") from None
    return Backbone(spec=spec, model=model, preprocess=preprocess, tokenizer=tokenizer, weights_sha256=identity,
                    device=dev)
