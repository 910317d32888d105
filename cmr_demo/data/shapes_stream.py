"""An endless stream of fresh shapes pictures and captions for contrastive pre-training.

Why a stream: the world is procedural, so a pre-training run never needs to see a picture twice
(the old fixed 28,000-pair set was memorised: train loss 0.48, zero-shot 0.39). Why groups: in a batch
of random scenes the colour, background and position words already tell every pair apart, so a
contrastive model can reach a low loss without ever looking at the shape. A group shares its
background, texture, colour, count and size, so inside it only the shape, the position and the
distractors differ (a single object also shares its place) and the caption's shape words become the cue worth learning.
No class label is
used: a group is formed from caption attributes that are not the class, and each member's shape is
an independent uniform draw, exactly as the world draws it.

Besides the world's own scenes, a batch holds drawings of the world's shapes as visitors make them
(`cmr_demo.data.drawings`: outline or filled, any stroke and size, on paper, photographed) in groups sharing
their look so that only the shape tells them apart, and pictures of other things (`cmr_demo.data.outside`:
noise, flat colours, writing, stick figures, ...), each with a caption saying what it is and no class label.

Batch `step` is a pure function of (seed, step), so a resumed run continues the same sequence.
The stream's seed is its own world: disjoint from the `shapes:N` splits (seed 20240601) the
zero-shot test uses and from the demo gallery (`shapes:3000,seed=1`).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from cmr_demo.data import drawings, outside
from cmr_demo.data.shapes import (BACKGROUNDS, CLASS_NAMES, NUM_CLASSES, SIZE, TEXTURES, colour_against, render_scene,
                                  scene_caption)

STREAM_SEED = 7_000_001  # a world of its own; see the module docstring


@dataclass(frozen=True)
class StreamConfig:
    batch_size: int = 128  # pairs per step; every other item in the batch is a negative
    group: int = 16  # items sharing their non-shape style; 1 = plain i.i.d. scenes
    hard_fraction: float = 0.75  # share of the world's scenes in style groups; the rest are plain scenes
    seed: int = STREAM_SEED
    drawing_fraction: float = 0.0  # share of each batch that is drawings of the shapes (cmr_demo.data.drawings)
    drawing_group: int = 8  # drawings sharing their look (style, ink, paper, size); only the shape differs
    outside_fraction: float = 0.0  # share of each batch that is pictures of other things (cmr_demo.data.outside)


def _style(rng: np.random.Generator) -> dict:
    """Background, texture, colour, count and size shared by one group (a legal combination)."""
    bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    count = int(rng.choice([1, 1, 2, 3]))
    size = ["small", "medium", "large"][rng.integers(3 if count == 1 else 2)]
    style = {"bg": bg, "texture": list(TEXTURES)[rng.integers(len(TEXTURES))], "count": count, "size": size,
             "colour": colour_against(rng, bg)}
    if count == 1:  # one place for the group, so position words cannot tell its captions apart either
        style["at"] = tuple(rng.uniform(8, SIZE - 8, size=2).tolist())
    return style


def render_batch(step: int, cfg: StreamConfig) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Batch `step`: [B, 64, 64, 3] uint8 pictures, their B captions and [B] class ids (-1 for a picture of
    another thing). The class ids serve the supervised ceiling in bench/backbone.py only; pre-training never
    receives them. Order: the world's scenes (style groups first), then drawings, then other things."""
    b = cfg.batch_size
    n_draw, n_out = int(round(cfg.drawing_fraction * b)), int(round(cfg.outside_fraction * b))
    n_world = b - n_draw - n_out
    rng = np.random.default_rng([cfg.seed, step])
    pictures, captions, labels = _world_scenes(step, n_world, cfg, rng)
    for j in range(n_draw):
        index = step * b + n_world + j
        if j % max(cfg.drawing_group, 1) == 0:
            look = drawings.random_look(rng)
        shape = int(rng.integers(NUM_CLASSES))
        picture, caption = drawings.render_look(CLASS_NAMES[shape], look, np.random.default_rng([cfg.seed, index, 2]))
        pictures.append(np.asarray(picture))
        captions.append(caption)
        labels.append(shape)
    for j in range(n_out):
        picture, caption, _ = outside.render(step * b + n_world + n_draw + j, cfg.seed)
        pictures.append(np.asarray(picture))
        captions.append(caption)
        labels.append(-1)
    return np.stack(pictures), captions, np.array(labels)


def _world_scenes(step: int, n: int, cfg: StreamConfig, rng: np.random.Generator):
    """n scenes of the world: the first `hard_fraction` in style groups of `group`, the rest plain."""
    n_hard = int(round(cfg.hard_fraction * n / max(cfg.group, 1))) * max(cfg.group, 1) if cfg.group > 1 else 0
    images, captions, labels = [], [], []
    style = None
    for j in range(n):
        index = step * cfg.batch_size + j  # a unique item of the stream's world
        if j < n_hard and j % cfg.group == 0:
            style = _style(rng)
        label = int(rng.integers(NUM_CLASSES))
        image, facts = render_scene(index, label, cfg.seed, style if j < n_hard else None)
        images.append(np.asarray(image))
        captions.append(scene_caption(facts, np.random.default_rng([cfg.seed, index, 1])))
        labels.append(label)
    return images, captions, labels


class ShapesStream(torch.utils.data.IterableDataset):
    """Batches `start`, `start + 1`, ... as ([B, 3, 64, 64] uint8 tensor, captions); for a DataLoader
    with batch_size=None. With several workers, worker w renders the steps congruent to w."""

    def __init__(self, cfg: StreamConfig, start: int = 0, stop: int | None = None):
        self.cfg, self.start, self.stop = cfg, start, stop

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        info = torch.utils.data.get_worker_info()
        step = self.start + (info.id if info else 0)
        stride = info.num_workers if info else 1
        while self.stop is None or step < self.stop:
            images, captions, _ = render_batch(step, self.cfg)  # no class label leaves the stream
            yield torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions
            step += stride
