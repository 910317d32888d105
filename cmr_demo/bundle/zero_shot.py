"""The frozen backbone alone as a column beside the objectives: `zero-shot`, ranking by CLIP's own cosine.

Why: it is the paper's reference point. Supervised heads add class-level relevance (a "red star" query finds
red stars, whatever their size or place) and throw away what the classes do not name (the same query under
zero-shot also finds red hearts and blue stars, because the backbone matches colour and shape words
separately). Served like any objective (its gallery embeddings are the L2-normalised backbone features, its
map is fitted like the others', its metrics computed on the same test split), it shows in every place an
objective does: the objective pickers, Compare, the leaderboard, the heatmap, the disagreements and the maps.

Only a bundle with a backbone has one: a features-only bundle's image and text features come from different
models (Wikipedia's SIFT and LDA), so their cosine means nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cmr_demo.backbone.prompts import TEMPLATE as PROMPT  # the pre-training's zero-shot template
from cmr_demo.files import save_json, save_tensors

NAME = "zero-shot"
KIND = "zero-shot"
FILES = ("embeddings.safetensors", "map.safetensors", "metrics.json", "config.json", "prompts.safetensors")


class FrozenHeads(torch.nn.Module):
    """Heads that keep the backbone's features, only L2-normalised: [B, F] -> [B, F]."""

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=-1)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=-1)


class PromptClasses(torch.nn.Module):
    """Class scores as zero-shot classification has them: cosine to each class's prompt, "a photo of a {class}."."""
    class_source = "class prompts"

    def __init__(self, prompts: torch.Tensor):
        super().__init__()
        self.register_buffer("prompts", F.normalize(prompts.float(), dim=-1))  # [C, F]

    def class_scores(self, emb: torch.Tensor) -> torch.Tensor:
        return emb.float() @ self.prompts.T


def write(run: Path, image_feats: np.ndarray, text_feats: np.ndarray, labels: np.ndarray, class_names: list[str],
          prompts: np.ndarray) -> dict:
    """objectives/zero-shot/: metrics (the same evaluation as every objective), the class prompts' features and
    a config; its embeddings and map are written with the others' (`cmr_demo.bundle.build`). Returns the metrics."""
    from cmr_demo.metrics import evaluate
    run.mkdir(parents=True, exist_ok=True)
    img, txt = (F.normalize(torch.from_numpy(np.asarray(f, np.float32)), dim=1) for f in (image_feats, text_feats))
    metrics = {"objective": NAME, "kind": KIND, "selected_on": None, "best_epoch": None, "epochs_run": 0,
               "train_seconds": 0.0, **evaluate(img, txt, labels, labels, class_names, keep_per_query=True)}
    save_tensors(run / "prompts.safetensors", {"prompts": torch.from_numpy(np.asarray(prompts, np.float32))},
                 {"template": PROMPT})
    save_json(run / "metrics.json", metrics)
    save_json(run / "config.json", {"format": "cmr_demo.run/1", "kind": KIND, "template": PROMPT,
                                    "heads": {"embed_dim": int(img.shape[1])}})
    return metrics


def module_from(tensors: dict) -> PromptClasses:
    """The class prompts' module from prompts.safetensors's tensors."""
    return PromptClasses(tensors["prompts"]).eval()


def embeddings(image_feats: np.ndarray, text_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gallery as zero-shot ranks it: unit-norm backbone features, [N, F] each."""
    norm = lambda f: np.asarray(f, np.float32) / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)  # noqa: E731
    return norm(image_feats), norm(text_feats)
