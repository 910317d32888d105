"""CLIP4CMR's projection heads: one small MLP per modality into an L2-normalised common space.

The default is the paper's head (Linear d_in->256, GELU, Linear 256->1024, Dropout 0.1, then
L2-normalise; no norm layers, no residual, no weight sharing between modalities). Optional
per-modality feature standardisation (mean/std fitted on train) lives inside the heads as
buffers, so a saved checkpoint encodes live queries exactly as it encoded the training data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cmr_demo.files import CheckpointError, load_tensors, save_tensors


@dataclass
class HeadConfig:
    image_dim: int = 0  # width of the image features (1024 for CLIP RN50); 0 in a job: taken from the features
    text_dim: int = 0  # width of the text features
    hidden_dim: int = field(default=256, metadata={"help": "the paper's bottleneck"})
    embed_dim: int = field(default=1024, metadata={"help": "the paper's common space (equals RN50's feature width)"})
    dropout: float = field(default=0.1, metadata={"help": "the paper's; after the second linear layer"})
    # on by default, from measurement (bench/standardize.py): neutral on CLIP-like features (within +-0.0003
    # avg mAP on the demo world), +0.01 to +0.06 on Wikipedia's SIFT/LDA features and 4x less spread over seeds
    standardize: bool = field(default=True, metadata={"help": "z-score features with train statistics (neutral on "
                                                               "CLIP features, helps others; bench/standardize.py)"})

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.image_dim < 0 or self.text_dim < 0:
            raise ValueError(f"feature widths must be >= 0 (0: taken from the features); got {self.image_dim}, "
                             f"{self.text_dim}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")


class Dropout(nn.Module):
    """nn.Dropout whose CPU masks come from numpy's PCG64 (`self.rng`) instead of torch's generator.

    Why: on 2 CPU cores torch drew a 300x1024 mask in ~2.7 ms (bernoulli_ on mt19937), a quarter of a
    training step of the paper's heads (profile in bench/results/train_speed.md); numpy draws one in
    ~0.6 ms. The trainer re-seeds `rng` every epoch from (seed, epoch), so runs stay reproducible and
    resumable. On a GPU torch's own dropout (Philox, on the device) is used. Same keys in state dicts as
    nn.Dropout (it has none), so checkpoints are unaffected.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p, self.rng = p, np.random.default_rng(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        return x * torch.from_numpy(keep).to(x.dtype).mul_(1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _mlp(d_in: int, cfg: HeadConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, cfg.hidden_dim), nn.GELU(),
                         nn.Linear(cfg.hidden_dim, cfg.embed_dim), Dropout(cfg.dropout))


class Heads(nn.Module):
    """`encode_image` / `encode_text`: features [B, d_in] -> unit-norm embeddings [B, embed_dim]."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.image = _mlp(cfg.image_dim, cfg)
        self.text = _mlp(cfg.text_dim, cfg)
        for name, dim in (("image", cfg.image_dim), ("text", cfg.text_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def reseed_dropout(self, seed: int) -> None:
        """Fix the CPU dropout masks that follow (one stream per head, both from `seed`)."""
        for i, module in enumerate(m for m in self.modules() if isinstance(m, Dropout)):
            module.rng = np.random.default_rng([seed, i])

    @torch.no_grad()
    def fit_standardization(self, image_features: torch.Tensor, text_features: torch.Tensor) -> None:
        """Store train mean/std; a no-op unless cfg.standardize (buffers stay 0/1)."""
        if not self.cfg.standardize:
            return
        for name, x in (("image", image_features), ("text", text_features)):
            getattr(self, f"{name}_mean").copy_(x.float().mean(0))
            getattr(self, f"{name}_std").copy_(x.float().std(0).clamp(min=1e-6))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image((x - self.image_mean) / self.image_std), dim=-1)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text((x - self.text_mean) / self.text_std), dim=-1)


HEADS_FORMAT = "cmr_demo.heads/1"


def save_heads(path: str | Path, heads: Heads, extra: dict[str, str] | None = None) -> None:
    """Weights plus the config that rebuilds them (and e.g. the feature source) in the metadata."""
    meta = {**(extra or {}), "format": HEADS_FORMAT, "head_config": json.dumps(heads.cfg.__dict__)}
    save_tensors(path, heads.state_dict(), meta)


def load_heads(path: str | Path, image_dim: int | None = None, text_dim: int | None = None,
               source: str | None = None) -> Heads:
    """Rebuild heads from their own saved config; refuse features of other widths or origin."""
    return heads_from(*load_tensors(path), path, image_dim, text_dim, source)


def heads_from(tensors: dict, meta: dict, path: str | Path, image_dim: int | None = None, text_dim: int | None = None,
               source: str | None = None) -> Heads:
    """`load_heads` from a heads file's tensors and metadata already read (`path` names it in errors)."""
    if meta.get("format") != HEADS_FORMAT:
        raise CheckpointError(f"{path} is not a cmr_demo heads file (format {meta.get('format')!r}, "
                              f"expected {HEADS_FORMAT!r})")
    cfg = HeadConfig(**json.loads(meta["head_config"]))
    for name, want, have in (("image", image_dim, cfg.image_dim), ("text", text_dim, cfg.text_dim)):
        if want is not None and want != have:
            raise CheckpointError(f"{path} was trained on {have}-d {name} features but the backbone gives "
                                  f"{want}-d {name} features; use the backbone it was trained with")
    if source is not None and meta.get("feature_source") not in (None, source):
        raise CheckpointError(f"{path} was trained on features from '{meta['feature_source']}', not '{source}'")
    with torch.device("meta"):  # no random initialisation to throw away (a third of the app's bundle loading)
        heads = Heads(cfg)
    heads.load_state_dict(tensors, assign=True)
    return heads.eval()
