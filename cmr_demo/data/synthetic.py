"""`synthetic[:N]`: a seeded, class-structured paired feature dataset for tests and CPU smoke runs.

Why features, not pixels: it exercises every stage after the backbone (heads, objectives, training,
metrics) in seconds, with no weights. Each item has a latent point near its class centre; the two
modalities are different random non-linear maps of that latent plus modality-specific noise, so
the modalities live in different spaces of different widths (no shortcut through raw similarity)
and classes overlap enough that mAP is well below 1. The procedural image world is `shapes`.
"""
from __future__ import annotations

import numpy as np

from cmr_demo.data.types import Dataset, DataError, IngestReport, Split

DEFAULT_ITEMS = 2000  # big enough for stable mAP, small enough for a training run in seconds
NUM_CLASSES = 10
LATENT_DIM, IMAGE_DIM, TEXT_DIM = 16, 64, 48  # unequal widths catch dimension mix-ups
CLASS_SPREAD = 0.25  # within-class latent std relative to unit-norm class centres: classes overlap
MODALITY_NOISE = 0.35
TEST_FRACTION = 0.25
SEED = 1234  # the data is fixed; training seeds vary separately


def _random_map(rng: np.random.Generator, d_in: int, d_out: int):
    w1 = rng.normal(size=(d_in, 2 * d_out)) / np.sqrt(d_in)
    w2 = rng.normal(size=(2 * d_out, d_out)) / np.sqrt(2 * d_out)
    return lambda z: np.tanh(z @ w1) @ w2


def make_synthetic(n: int = DEFAULT_ITEMS, seed: int = SEED) -> Split:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_CLASSES, LATENT_DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.arange(n) % NUM_CLASSES
    rng.shuffle(labels)
    latent = centres[labels] + CLASS_SPREAD * rng.normal(size=(n, LATENT_DIM)) / np.sqrt(LATENT_DIM) * 2
    to_image, to_text = _random_map(rng, LATENT_DIM, IMAGE_DIM), _random_map(rng, LATENT_DIM, TEXT_DIM)
    image = to_image(latent) + MODALITY_NOISE * rng.normal(size=(n, IMAGE_DIM))
    text = to_text(latent) + MODALITY_NOISE * rng.normal(size=(n, TEXT_DIM))
    return Split(ids=[f"syn-{i:05d}" for i in range(n)], labels=labels,
                 class_names=[f"class {c}" for c in range(NUM_CLASSES)],
                 image_features=image.astype(np.float32), text_features=text.astype(np.float32))


def read(arg: str, report: IngestReport) -> Dataset:
    """`synthetic` or `synthetic:N` (N items in all, a fixed quarter of them held out as test)."""
    try:
        n = int(arg) if arg else DEFAULT_ITEMS
    except ValueError:
        raise DataError(f"synthetic:N takes an item count, e.g. 'synthetic:2000'; got '{arg}'") from None
    if n < 4 * NUM_CLASSES:
        raise DataError(f"synthetic:N needs N >= {4 * NUM_CLASSES} (a few items per class per split); got {n}")
    data = make_synthetic(n)
    n_test = int(round(TEST_FRACTION * n))
    return Dataset(spec=f"synthetic:{n}", train=data.subset(np.arange(n_test, n)),
                   test=data.subset(np.arange(n_test)))
