"""Zero-shot classification with class prompts: how well a frozen CLIP knows a set of classes without training.

Used by pre-training (the tiny CLIP's progress and final score), by bundles (the backbone's zero-shot accuracy on
the gallery, and the `zero-shot` column's class scores) and the benchmarks.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cmr_demo.data import Split

TEMPLATE = "a photo of a {}."  # CLIP's plainest prompt; the tiny CLIP learned captions of this shape


def zero_shot_from_features(img: np.ndarray, prompts: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                            template: str = TEMPLATE) -> dict[str, Any]:
    """Each image classified as the class whose prompt is nearest by cosine: accuracy overall and per class, from
    features already extracted ([N, D] images, [C, D] prompt features, [N] labels)."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    prompts = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)
    hit = (img @ prompts.T).argmax(1) == labels
    per_class = {name: float(hit[labels == c].mean()) for c, name in enumerate(class_names) if (labels == c).any()}
    return {"accuracy": float(hit.mean()), "per_class": per_class, "template": template,
            "n": len(hit), "chance": 1.0 / len(class_names)}


def _encoders(model_or_backbone, preprocess=None, tokenizer=None):
    """(encode_images, encode_texts) returning [N, D] float32 arrays, for a Backbone or a bare model."""
    from cmr_demo.backbone.clip import Backbone  # open_clip: imported when something is encoded
    if isinstance(model_or_backbone, Backbone):
        bb = model_or_backbone
        return (lambda ims: bb.encode_images(ims, progress=False), lambda txt: bb.encode_texts(txt, progress=False))
    if preprocess is None or tokenizer is None:
        raise ValueError("a bare open_clip model needs its preprocess and tokenizer to be scored")
    model = model_or_backbone
    device = next(model.parameters()).device

    @torch.no_grad()
    def images(ims):
        x = torch.stack([preprocess(im.convert("RGB")) for im in ims])
        return torch.cat([model.encode_image(x[i:i + 256].to(device)).cpu() for i in range(0, len(x), 256)]).numpy()

    @torch.no_grad()
    def texts(txt):
        return model.encode_text(tokenizer(list(txt)).to(device)).cpu().numpy()
    return images, texts


def zero_shot_accuracy(model_or_backbone, split: Split, class_names: Sequence[str] | None = None,
                       template: str = TEMPLATE, preprocess=None, tokenizer=None) -> dict[str, Any]:
    """Classify each image as the class whose prompt is nearest by cosine; accuracy overall and per class."""
    class_names = list(class_names or split.class_names)
    encode_images, encode_texts = _encoders(model_or_backbone, preprocess, tokenizer)
    was_training = getattr(model_or_backbone, "training", False)
    if isinstance(model_or_backbone, torch.nn.Module):
        model_or_backbone.eval()
    img = encode_images(split.images)  # [N, D]
    txt = encode_texts([template.format(c) for c in class_names])  # [C, D]
    if was_training:
        model_or_backbone.train()
    return zero_shot_from_features(img, txt, split.labels, class_names, template)
