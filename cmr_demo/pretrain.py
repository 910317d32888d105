"""Contrastive pre-training of a small CLIP from scratch on a dataset's train split, and zero-shot scoring.

Why: no published weights can be downloaded here, so the demo's frozen backbone is one we train
ourselves. The architecture comes from open_clip (random init), the objective is open_clip's own
`ClipLoss` with the model's learnable temperature, and the result is an ordinary open_clip state dict
that `load_backbone("ARCH:DIR/backbone.safetensors")` loads like any other weights file.

    python -m cmr_demo.pretrain --data shapes:40000 --arch shapes-rn --out runs/pretrain --minutes 18
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbone import Backbone, load_backbone, open_clip, register_model_configs
from .checkpoint import package_versions, save_json, save_tensors
from .data import Split, load_data

PRETRAIN_FORMAT = "cmr_demo.pretrain/1"
WEIGHTS_FILE, SUMMARY_FILE = "backbone.safetensors", "pretrain.json"
TEMPLATE = "a photo of a {}."
MAX_LOGIT_SCALE = math.log(100)  # CLIP's clamp: a larger temperature makes the loss unstable


@dataclass
class PretrainConfig:
    data: str = "shapes:40000"  # 28,000 training pairs: 3,000 were memorised in 18 minutes (zero-shot 0.16)
    arch: str = "shapes-rn"  # tiny ResNet: ~1.8x the steps/s of the ViT shapes-clip and zero-shot 0.39 vs 0.22
    epochs: int = 100  # an upper bound: on 2 cores the --minutes budget usually ends training first
    batch_size: int = 128  # more negatives per step help contrastive learning; 128 still fits CPU speed
    lr: float = 1e-3  # small transformers from scratch tolerate a high peak lr with warmup
    weight_decay: float = 0.1  # CLIP's value; not applied to gains, biases, embeddings or the temperature
    warmup_steps: int = 100  # avoids early attention collapse at the peak lr
    shift: int = 4  # random translation in pixels: cheap augmentation that keeps captions' positions true
    seed: int = 0
    device: str = "cpu"
    minutes: float = 18.0  # wall-clock budget for the training loop; saving happens after it

    @classmethod
    def from_json(cls, text: str) -> PretrainConfig:
        return cls(**json.loads(text))


def prepare_split(split: Split, preprocess, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocess every image and tokenize every caption once: [N, 3, H, W] float, [N, context] long.

    Why: PIL resizing per epoch would cost more CPU than the tiny model itself.
    """
    if split.images is None or split.texts is None:
        raise ValueError("pre-training needs raw images and captions; this split holds features only")
    images = torch.stack([preprocess(im.convert("RGB")) for im in split.images])
    return images, tokenizer(list(split.texts))


def random_shift(images: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `shift` pixels (reflect padding): [B, 3, H, W] -> same shape."""
    if shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (shift,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * shift + 1, (2, b), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(b, 3, h, w + 2 * shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(b, 3, h, w)
    return out.gather(3, cols)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on matrices only, as in open_clip's training code."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def lr_at(step: int, progress: float, cfg: PretrainConfig) -> float:
    """Linear warmup, then cosine to zero over `progress` in [0, 1].

    Why progress and not step/total: with a wall-clock budget the run may end before the planned
    steps; progress = max(step fraction, time fraction) makes the cosine reach its floor either way.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, progress)))


def train_step(model, loss_fn, opt, images: torch.Tensor, tokens: torch.Tensor) -> float:
    """One contrastive step on a batch: [B, 3, H, W] images, [B, context] tokens -> loss value."""
    model.train()
    out = model(images, tokens)  # normalised [B, D] features and exp(logit_scale), as a dict or a tuple
    if isinstance(out, dict):
        out = (out["image_features"], out["text_features"], out["logit_scale"])
    loss = loss_fn(*out[:3])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.detach())


def train(model, images: torch.Tensor, tokens: torch.Tensor, cfg: PretrainConfig,
          progress: bool = True) -> dict[str, Any]:
    """The loop: shuffled epochs until cfg.epochs or cfg.minutes run out. Returns the history."""
    from tqdm.auto import tqdm
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_fn, opt = open_clip.ClipLoss(), make_optimizer(model, cfg)
    n = len(images)
    per_epoch = max(1, n // cfg.batch_size)  # drop the ragged last batch: fewer negatives, noisier loss
    total, budget_s, start = cfg.epochs * per_epoch, cfg.minutes * 60, time.perf_counter()
    history, step, stopped_by = [], 0, "epochs"
    bar = tqdm(total=total, desc="pretrain", unit="step", disable=not progress)
    for epoch in range(cfg.epochs):
        order, losses = torch.randperm(n, generator=gen), []
        for b in range(per_epoch):
            elapsed = time.perf_counter() - start
            if elapsed >= budget_s:
                stopped_by = "minutes"
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, max(step / total, elapsed / budget_s), cfg)
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            batch = random_shift(images[idx], cfg.shift, gen).to(cfg.device)
            losses.append(train_step(model, loss_fn, opt, batch, tokens[idx].to(cfg.device)))
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}", T=f"{model.logit_scale.exp().item():.1f}")
        if losses:
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "steps": len(losses),
                            "logit_scale": model.logit_scale.exp().item()})
        if stopped_by == "minutes":
            break
    bar.close()
    train_s = time.perf_counter() - start
    return {"history": history, "steps": step, "stopped_by": stopped_by, "train_s": train_s,
            "train_images_per_s": step * cfg.batch_size / max(train_s, 1e-9)}


def _encoders(model_or_backbone, preprocess=None, tokenizer=None):
    """(encode_images, encode_texts) returning [N, D] float32 arrays, for a Backbone or a bare model."""
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
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    pred = (img @ txt.T).argmax(1)
    hit = pred == split.labels
    per_class = {name: float(hit[split.labels == c].mean()) for c, name in enumerate(class_names)
                 if (split.labels == c).any()}
    return {"accuracy": float(hit.mean()), "per_class": per_class, "template": template,
            "n": len(hit), "chance": 1.0 / len(class_names)}


def save_backbone(model: torch.nn.Module, cfg: PretrainConfig, out: Path) -> Path:
    """The open_clip state dict, atomically, with the config that produced it in the metadata."""
    path = out / WEIGHTS_FILE
    save_tensors(path, model.state_dict(), {"format": PRETRAIN_FORMAT, "arch": cfg.arch,
                                            "pretrain_config": json.dumps(asdict(cfg))})
    return path


def check_reload(model: torch.nn.Module, spec: str, images: torch.Tensor, tokens: torch.Tensor) -> tuple[Backbone, float]:
    """Load `spec` through load_backbone and return it with the largest feature difference to `model`."""
    backbone = load_backbone(spec)
    model.eval()
    with torch.no_grad():
        diffs = [(model.encode_image(images) - backbone.model.encode_image(images)).abs().max(),
                 (model.encode_text(tokens) - backbone.model.encode_text(tokens)).abs().max()]
    return backbone, float(max(diffs))


def extraction_speed(backbone: Backbone, images: Sequence[Any]) -> float:
    """Images per second through Backbone.encode_images, PIL preprocessing included."""
    start = time.perf_counter()
    backbone.encode_images(images, progress=False)
    return len(images) / (time.perf_counter() - start)


def pretrain(cfg: PretrainConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Build `cfg.arch` at random, train it on the train split, save, reload and score it on test."""
    wall = time.perf_counter()
    out = Path(out)
    register_model_configs()
    torch.manual_seed(cfg.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(cfg.arch, pretrained=None, device=cfg.device)
    tokenizer = open_clip.get_tokenizer(cfg.arch)
    data = load_data(cfg.data)
    images, tokens = prepare_split(data.train, preprocess, tokenizer)
    run = train(model, images, tokens, cfg, progress)
    path = save_backbone(model.cpu(), cfg, out)
    backbone, diff = check_reload(model, f"{cfg.arch}:{path}", images[:16], tokens[:16])
    if diff > 1e-5:
        raise RuntimeError(f"reloaded {path} gives features {diff:.2e} away from the trained model")
    summary = {"format": PRETRAIN_FORMAT, "config": asdict(cfg), "data": data.spec, "n_train": len(data.train),
               **run, "final_loss": run["history"][-1]["loss"] if run["history"] else None,
               "zero_shot_test": zero_shot_accuracy(backbone, data.test),
               "zero_shot_val": zero_shot_accuracy(backbone, data.val),
               "reload_max_abs_diff": diff, "backbone_spec": f"{cfg.arch}:{path}",
               "weights_bytes": path.stat().st_size,
               "extract_images_per_s": extraction_speed(backbone, data.test.images),
               "versions": package_versions()}
    summary["wall_s"] = time.perf_counter() - wall
    save_json(out / SUMMARY_FILE, summary)
    return summary


def parse_args(argv: Sequence[str] | None = None) -> tuple[PretrainConfig, str, bool]:
    d = PretrainConfig()
    p = argparse.ArgumentParser(prog="python -m cmr_demo.pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=d.data, help="dataset spec with images and captions, e.g. shapes:3000")
    p.add_argument("--arch", default=d.arch, help="open_clip architecture (package configs included)")
    p.add_argument("--out", required=True, help="folder for backbone.safetensors and pretrain.json")
    for name in ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "shift", "seed", "device", "minutes"):
        p.add_argument("--" + name.replace("_", "-"), type=type(getattr(d, name)), default=getattr(d, name))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = vars(p.parse_args(argv))
    out, quiet = a.pop("out"), a.pop("quiet")
    return PretrainConfig(**a), out, not quiet


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg, out, progress = parse_args(argv)
    s = pretrain(cfg, out, progress)
    zs = s["zero_shot_test"]
    print(f"zero-shot test accuracy {zs['accuracy']:.3f} (chance {zs['chance']:.2f}) | final loss "
          f"{s['final_loss']:.3f} | {s['steps']} steps, stopped by {s['stopped_by']} | train {s['train_s']:.0f} s, "
          f"wall {s['wall_s']:.0f} s | {s['weights_bytes'] / 1e6:.1f} MB | extract {s['extract_images_per_s']:.0f} img/s")
    print(f"load it with --backbone {s['backbone_spec']}")
    return s


if __name__ == "__main__":
    main()
