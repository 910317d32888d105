"""Contrastive pre-training of a small CLIP from scratch on image-caption pairs, and zero-shot scoring.

Why: no published weights can be downloaded here, so the demo's frozen backbone is one we train
ourselves. The architecture comes from open_clip (random init), the objective is open_clip's own
`ClipLoss` with the model's learnable temperature, and the result is an ordinary open_clip state dict
that `load_backbone("ARCH:DIR/backbone.safetensors")` loads like any other weights file. No class
label enters pre-training: the backbone stands in for a CLIP trained on captions alone.

    python -m cmr_demo.backbone.pretrain --out runs/pretrain            # the demo's backbone (see README)
    python -m cmr_demo.backbone.pretrain --out runs/pretrain --resume   # continue a run stopped part-way
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmr_demo.backbone.clip import Backbone, load_backbone, open_clip, register_model_configs
from cmr_demo.backbone.prompts import zero_shot_accuracy
from cmr_demo.files import atomic_write_bytes, package_versions, save_json, save_tensors
from cmr_demo.cliargs import HelpFormatter, add_dataclass_args, dataclass_from_args
from cmr_demo.data import Split, load_data
from cmr_demo.data.shapes_stream import ShapesStream, StreamConfig

PRETRAIN_FORMAT = "cmr_demo.pretrain/1"
WEIGHTS_FILE, SUMMARY_FILE = "backbone.safetensors", "pretrain.json"
MAX_LOGIT_SCALE = math.log(100)  # CLIP's clamp: a larger temperature makes the loss unstable
STREAM = "shapes-stream"
PROBE_ITEMS = 1000  # val items scored during training: ~1 s on 2 cores, +-0.015 at accuracy 0.85


@dataclass
class PretrainConfig:
    data: str = field(default=STREAM, metadata={"help": (
        f"'{STREAM}': endless fresh pairs, batches of style groups (cmr_demo.data.shapes_stream); or a dataset "
        "spec with images and captions, e.g. shapes:40000, whose train split is cycled")})
    eval_data: str = field(default="shapes:40000", metadata={"help": (
        "zero-shot is scored on this spec's test split (8,000 items for shapes:40000) at the end and tracked "
        "on 1,000 of its val items during training")})
    arch: str = field(default="shapes-rn", metadata={"help": (
        "open_clip architecture (package configs included); shapes-rn: a tiny ResNet, 1.3 M image parameters")})
    steps: int = field(default=9000, metadata={"help": "optimisation steps: the cosine schedule ends here"})
    batch_size: int = field(default=128, metadata={"help": "pairs per step; all others in the batch are negatives"})
    group: int = field(default=16, metadata={"help": "stream only: pictures sharing every non-shape style; 1 = none"})
    hard_fraction: float = field(default=0.75, metadata={"help": "stream only: share of the world's scenes in style "
                                                                 "groups"})
    drawing_fraction: float = field(default=0.0, metadata={"help": (
        "stream only: share of a batch that is drawings of the shapes as visitors make them (outline, filled, "
        "wobbly, photographed paper)")})
    drawing_group: int = field(default=8, metadata={"help": "stream only: drawings sharing their look; 1 = none"})
    outside_fraction: float = field(default=0.0, metadata={"help": (
        "stream only: share of a batch that is pictures of other things (noise, flat colours, writing, ...)")})
    init: str = field(default="", metadata={"help": (
        "start from these weights (a backbone.safetensors of the same arch) instead of a random model: continued "
        "pre-training on a changed stream")})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW; small towers from scratch take it)"})
    weight_decay: float = field(default=0.1, metadata={"help": "CLIP's; not on gains, biases, embeddings, temperature"})
    warmup_steps: int = field(default=200, metadata={"help": "linear warmup: avoids an early collapse at the peak lr"})
    shift: int = field(default=0, metadata={"help": (
        "fixed data only: random translation in pixels; the stream needs none (no picture repeats)")})
    seed: int = field(default=0, metadata={"help": "model initialisation and fixed-data order"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    minutes: float = field(default=0.0, metadata={"help": (
        "wall-clock cap over all sittings, 0 = none; the schedule then ends at whichever comes first")})
    eval_every: int = field(default=500, metadata={"help": "steps between zero-shot checks on the val probe"})
    workers: int = field(default=1, metadata={"help": "stream only: processes rendering batches ahead"})
    state_every_s: float = field(default=120.0, metadata={"help": "seconds between resumable state writes"})

    # Fields that may change between sittings of one run without changing what it computes (steps and
    # minutes may not: they shape the cosine schedule; split a run with --sitting-steps/--sitting-minutes)
    RESUMABLE = ("device", "workers", "state_every_s", "eval_every")

    def __post_init__(self) -> None:
        if self.steps < 1 or self.eval_every < 1 or self.batch_size < 2:
            raise ValueError(f"steps and eval_every must be >= 1 and batch_size >= 2 (a contrastive batch needs "
                             f"negatives); got steps={self.steps}, eval_every={self.eval_every}, "
                             f"batch_size={self.batch_size}")


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

    Why progress and not step/steps: with a wall-clock cap the run may end before the planned
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


def _pixels_to_model(preprocess):
    """uint8 [B, 3, h, w] -> the model's normalised float input (resized when its size differs)."""
    from cmr_demo.backbone.clip import split_preprocess
    split = split_preprocess(preprocess)
    if split is None:
        raise ValueError("this architecture's preprocessing does not end in ToTensor + Normalize")
    mean, std = split[1][:, None, None], split[2][:, None, None]
    size = next(t.size for t in preprocess.transforms if hasattr(t, "size"))
    size = size if isinstance(size, int) else size[0]

    def convert(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255)
        if x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp_(0, 1)
        return (x - mean) / std
    return convert


def stream_batches(
    cfg: PretrainConfig, start: int, preprocess, tokenizer
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches `start`, `start + 1`, ... of the endless stream as (model input, tokens)."""
    stream = ShapesStream(
        StreamConfig(
            cfg.batch_size,
            cfg.group,
            cfg.hard_fraction,
            drawing_fraction=cfg.drawing_fraction,
            drawing_group=cfg.drawing_group,
            outside_fraction=cfg.outside_fraction,
        ),
        start,
    )
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=cfg.workers,
                                         prefetch_factor=4 if cfg.workers else None)
    convert = _pixels_to_model(preprocess)
    for pixels, captions in loader:
        yield convert(pixels), tokenizer(captions)


def fixed_batches(cfg: PretrainConfig, start: int, images: torch.Tensor, tokens: torch.Tensor):
    """Shuffled epochs over a fixed set, batch `step` a pure function of (seed, step): resumable."""
    n = len(images)
    per_epoch = max(1, n // cfg.batch_size)  # drop the ragged last batch: fewer negatives, noisier loss
    step = start
    while True:
        epoch, b = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        yield random_shift(images[idx], cfg.shift, gen), tokens[idx]
        step += 1


STATE_FILE = "pretrain_state.pt"


def save_state(out: Path, model, opt, cfg: PretrainConfig, step: int, elapsed_s: float, history: list) -> None:
    """Everything a later sitting needs, written atomically (a kill mid-write keeps the previous state)."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed_s": elapsed_s,
                "history": json.dumps(history), "config": json.dumps(asdict(cfg))}, buf)
    atomic_write_bytes(out / STATE_FILE, buf.getvalue())


def load_state(out: Path, model, opt, cfg: PretrainConfig) -> tuple[int, float, list]:
    """Restore model and optimizer from `out`; (next step, elapsed seconds, history). Refuses a state
    written under another configuration, naming the fields that differ."""
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)  # tensors and plain data only
    saved = json.loads(state["config"])
    differ = {k: (saved.get(k), v) for k, v in asdict(cfg).items()
              if k not in PretrainConfig.RESUMABLE and saved.get(k) != v}
    if differ:
        raise ValueError(f"{out / STATE_FILE} was written by another configuration; differing fields "
                         f"(state, now): {differ}. Resume with the same options or choose another --out")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    return int(state["step"]), float(state["elapsed_s"]), json.loads(state["history"])


@dataclass(frozen=True)
class Sitting:
    """How much of the run to do now; unlike the config, it does not change what the run computes."""
    resume: bool = False
    steps: int = 0  # stop this sitting after this many steps (0 = no limit)
    minutes: float = 0.0  # stop this sitting after this much wall-clock (0 = no limit)
    progress: bool = True


def train(model, batches_from, cfg: PretrainConfig, out: Path, probe, sitting: Sitting = Sitting()) -> dict[str, Any]:
    """The loop: steps until cfg.steps (or cfg.minutes over all sittings), zero-shot on `probe` every
    cfg.eval_every steps, resumable state every cfg.state_every_s seconds and at the end of the
    sitting. Returns the run's record; `stopped_by` says whether the run is complete ("steps", "minutes")
    or only this sitting ended ("sitting")."""
    from tqdm.auto import tqdm
    loss_fn, opt = open_clip.ClipLoss(), make_optimizer(model, cfg)
    step, before_s, history = load_state(out, model, opt, cfg) if sitting.resume else (0, 0.0, [])
    budget_s, start = cfg.minutes * 60 or math.inf, time.perf_counter()
    last_state, losses, stopped_by, first = start, [], "steps", step
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", unit="step", disable=not sitting.progress)
    batches = batches_from(step)
    while step < cfg.steps:
        elapsed = before_s + time.perf_counter() - start
        if elapsed >= budget_s:
            stopped_by = "minutes"
            break
        if (sitting.steps and step - first >= sitting.steps) or \
                (sitting.minutes and time.perf_counter() - start >= sitting.minutes * 60):
            stopped_by = "sitting"
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, max(step / cfg.steps, elapsed / budget_s), cfg)
        images, tokens = next(batches)
        losses.append(train_step(model, loss_fn, opt, images.to(cfg.device), tokens.to(cfg.device)))
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.append({"step": step, "loss": float(np.mean(losses)), "zero_shot_val": probe(model),
                            "logit_scale": model.logit_scale.exp().item(), "elapsed_s": round(elapsed, 1)})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", zero_shot=f"{history[-1]['zero_shot_val']:.3f}")
            losses = []
        if time.perf_counter() - last_state >= cfg.state_every_s:
            save_state(out, model, opt, cfg, step, before_s + time.perf_counter() - start, history)
            last_state = time.perf_counter()
    bar.close()
    sitting_s = time.perf_counter() - start
    save_state(out, model, opt, cfg, step, before_s + sitting_s, history)
    return {"history": history, "steps": step, "stopped_by": stopped_by, "train_s": before_s + sitting_s,
            "resumed_at_s": before_s, "train_images_per_s": step * cfg.batch_size / max(before_s + sitting_s, 1e-9)}


def save_backbone(model: torch.nn.Module, cfg: PretrainConfig, out: Path) -> Path:
    """The open_clip state dict, atomically, with the config that produced it in the metadata."""
    path = out / WEIGHTS_FILE
    save_tensors(path, model.state_dict(), {"format": PRETRAIN_FORMAT, "arch": cfg.arch,
                                            "pretrain_config": json.dumps(asdict(cfg))})
    return path


def check_reload(
    model: torch.nn.Module, spec: str, images: torch.Tensor, tokens: torch.Tensor
) -> tuple[Backbone, float]:
    """Load `spec` through load_backbone and return it with the largest feature difference to `model`."""
    backbone = load_backbone(spec)
    model.eval()
    with torch.no_grad():
        diffs = [(model.encode_image(images) - backbone.model.encode_image(images)).abs().max(),
                 (model.encode_text(tokens) - backbone.model.encode_text(tokens)).abs().max()]
    return backbone, float(max(diffs))


def pretrain(cfg: PretrainConfig, out: str | Path, sitting: Sitting = Sitting()) -> dict[str, Any]:
    """Build `cfg.arch` at random (or resume it), train it, save, reload and score it zero-shot."""
    wall = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if sitting.resume and not (out / STATE_FILE).is_file():
        raise FileNotFoundError(f"--resume: no {STATE_FILE} in {out}; start the run without --resume")
    if not sitting.resume and (out / STATE_FILE).is_file():
        raise FileExistsError(f"{out} holds a run in progress ({STATE_FILE}): pass --resume to continue it, or "
                              f"choose another --out")
    register_model_configs()
    torch.manual_seed(cfg.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(cfg.arch, pretrained=None, device=cfg.device)
    if cfg.init and not sitting.resume:
        from cmr_demo.files import load_tensors
        weights, _ = load_tensors(cfg.init)
        model.load_state_dict(weights)
    tokenizer = open_clip.get_tokenizer(cfg.arch)
    evaluation = load_data(cfg.eval_data)
    probe_split = evaluation.val.subset(np.arange(min(PROBE_ITEMS, len(evaluation.val))))

    def probe(m) -> float:
        return zero_shot_accuracy(m, probe_split, preprocess=preprocess, tokenizer=tokenizer)["accuracy"]

    if cfg.data == STREAM:
        n_train, batches_from = None, (lambda s: stream_batches(cfg, s, preprocess, tokenizer))
    else:
        data = load_data(cfg.data)
        images, tokens = prepare_split(data.train, preprocess, tokenizer)
        n_train, batches_from = len(images), (lambda s: fixed_batches(cfg, s, images, tokens))
    run = train(model, batches_from, cfg, out, probe, sitting)
    if run["stopped_by"] == "sitting":  # the run goes on in a later sitting: no weights or scores yet
        return {"config": asdict(cfg), **run, "state": str(out / STATE_FILE)}
    path = save_backbone(model.cpu(), cfg, out)
    backbone, diff = check_reload(model, f"{cfg.arch}:{path}", *_reload_probe(probe_split, preprocess, tokenizer))
    if diff > 1e-5:
        raise RuntimeError(f"reloaded {path} gives features {diff:.2e} away from the trained model")
    summary = {"format": PRETRAIN_FORMAT, "config": asdict(cfg), "data": cfg.data, "n_train": n_train,
               "pairs_seen": run["steps"] * cfg.batch_size, **run,
               "final_loss": run["history"][-1]["loss"] if run["history"] else None,
               "zero_shot_test": zero_shot_accuracy(backbone, evaluation.test),
               "zero_shot_val": zero_shot_accuracy(backbone, evaluation.val),
               "reload_max_abs_diff": diff, "backbone_spec": f"{cfg.arch}:{path}",
               "weights_bytes": path.stat().st_size, "versions": package_versions()}
    summary["wall_s"] = time.perf_counter() - wall
    save_json(out / SUMMARY_FILE, summary)
    return summary


def _reload_probe(split: Split, preprocess, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    images = list(split.images[:16])
    return torch.stack([preprocess(im.convert("RGB")) for im in images]), tokenizer(list(split.texts[:16]))


def parse_args(argv: Sequence[str] | None = None) -> tuple[PretrainConfig, str, Sitting]:
    p = argparse.ArgumentParser(
        prog="python -m cmr_demo.backbone.pretrain", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for backbone.safetensors, pretrain.json and the resumable "
                                                "state")
    add_dataclass_args(p, PretrainConfig)
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{STATE_FILE} (same options)")
    p.add_argument("--sitting-steps", type=int, default=0, help="end this sitting after N steps (0: no limit); "
                   "the state is saved and --resume continues exactly")
    p.add_argument("--sitting-minutes", type=float, default=0.0, help="end this sitting after M minutes (0: no limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    return (
        dataclass_from_args(PretrainConfig, a),
        a.out,
        Sitting(a.resume, a.sitting_steps, a.sitting_minutes, not a.quiet),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg, out, sitting = parse_args(argv)
    s = pretrain(cfg, out, sitting)
    if s["stopped_by"] == "sitting":
        print(f"sitting ended at step {s['steps']} of {cfg.steps}; continue with the same options and --resume")
        return s
    zs = s["zero_shot_test"]
    print(f"zero-shot test accuracy {zs['accuracy']:.3f} (chance {zs['chance']:.2f}) | final loss "
          f"{s['final_loss']:.3f} | {s['steps']} steps, stopped by {s['stopped_by']} | train {s['train_s']:.0f} s, "
          f"wall {s['wall_s']:.0f} s | {s['weights_bytes'] / 1e6:.1f} MB")
    print(f"load it with --backbone {s['backbone_spec']}; its extraction speed: python bench/extract.py --backbones "
          f"{s['backbone_spec']}")
    return s


if __name__ == "__main__":
    from cmr_demo.cli import run
    sys.exit(run(main))
