"""Is a picture of this bundle's world? A check fitted when the bundle is built, on pictures the builder makes.

Why fitted, not a distance: a tiny CLIP trained on one world maps anything onto it, so the nearest gallery
picture of a page of writing or a scribble can look close (measured on the default world: a nearest-neighbour
threshold flags 40 % of writing and 13 % of scribbles; a linear model on the features, 47 % and 33 %). A small
network (one hidden layer) on the frozen image features learns "of this world" (the training split's pictures,
and the world's drawings when the data can make them: `Dataset.related_pictures`) against each kind of picture
that is not (`cmr_demo.data.outside`: noise, flat colours, gradients, patterns, writing, stick figures, drawings
of other things, photo-like scenes, scribbles). It names the kind, so the app can say why ("it looks like
writing"). The threshold on P(of this world) lets CALIBRATION_RATE of the world's own pictures through as
flagged: the gallery's and a fresh set of drawings, pooled.

The check, its threshold and what it measured at build time (the flag rate per kind on fresh pictures,
including kinds it was not fitted on, on the gallery and on fresh drawings) are stored in
`gallery/world_check.safetensors`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmr_demo.files import load_tensors, save_tensors

FILE = "gallery/world_check.safetensors"
FORMAT = "cmr_demo.world-check/2"
IN_WORLD = "of this world"
PER_KIND = 300  # fitting pictures per outside kind (fewer for a small world: a tenth of its pictures, at least 20)
RELATED = 2000  # fitting pictures of the world's drawings, when the data can make them (at most its own count)
MAX_WORLD = 4000  # training-split pictures used as the world (a seeded sample beyond)
HIDDEN = 256  # the network's hidden width: a linear model left writing and scribbles in (see above)
CALIBRATION_RATE = 0.01  # share of the world's own pictures (gallery and fresh drawings) the threshold flags
FIT_SEED, CALIBRATION_SEED, MEASURE_SEED = 8_000_001, 8_000_002, 8_000_003  # fit, threshold and report apart
# how each kind reads in a reason; kinds with no object at all say so first
PHRASES = {"noise": "random noise", "flat colour": "a plain colour", "gradient": "a colour gradient",
           "pattern": "a pattern", "writing": "writing (letters or numbers)", "stick figure": "a stick figure",
           "object drawing": "a drawing of something else (a house, a tree, a face ...)",
           "photo-like scene": "a photograph", "scribble": "a scribble or a line"}
NO_OBJECT = {"noise", "flat colour", "gradient", "pattern"}


def _unit(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _outside_pictures(per_kind: int, seed: int, kinds) -> tuple[list, list[str]]:
    from cmr_demo.data import outside
    pictures, names = [], []
    for kind in kinds:
        for i in range(per_kind):
            pictures.append(outside.to_model_size(outside.draw(kind, i, seed)[0]))
            names.append(kind)
    return pictures, names


@dataclass
class PictureCheck:
    """The fitted check: one hidden layer (ReLU) over unit features, then a softmax over [of this world, *kinds]."""
    hidden_weights: np.ndarray  # [H, F]
    hidden_bias: np.ndarray  # [H]
    weights: np.ndarray  # [K+1, H]
    bias: np.ndarray  # [K+1]
    kinds: list[str]  # [K+1], IN_WORLD first
    min_probability: float  # P(of this world) below this: flagged
    measured: dict

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """[N, F] backbone features -> [N, K+1] probabilities (column 0: of this world)."""
        h = np.maximum(_unit(np.atleast_2d(features)) @ self.hidden_weights.T + self.hidden_bias, 0)
        z = h @ self.weights.T + self.bias
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def judge(self, features: np.ndarray) -> tuple[bool, str]:
        """(in the world?, why) for one picture's [F] backbone features."""
        p = self.probabilities(features)[0]
        other = int(np.argmax(p[1:])) + 1
        kind = self.kinds[other]
        if p[0] >= self.min_probability:
            return True, f"it looks like a picture of this world ({p[0]:.0%})"
        phrase = PHRASES.get(kind, kind)
        if kind in NO_OBJECT:
            return False, f"no shape of this world found: it looks like {phrase}"
        return False, f"it looks like {phrase}, not a picture of this world"

    def save(self, path: Path) -> None:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(getattr(self, name))) for name in
                   ("hidden_weights", "hidden_bias", "weights", "bias")}
        save_tensors(
            path,
            tensors,
            {
                "format": FORMAT,
                "kinds": json.dumps(self.kinds),
                "min_probability": repr(self.min_probability),
                "measured": json.dumps(self.measured),
            },
        )

    @classmethod
    def load(cls, path: Path) -> PictureCheck:
        return cls.from_tensors(*load_tensors(path))

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> PictureCheck:
        arrays = {k: v.float().numpy() for k, v in tensors.items()}
        return cls(arrays["hidden_weights"], arrays["hidden_bias"], arrays["weights"], arrays["bias"],
                   json.loads(meta["kinds"]), float(meta["min_probability"]), json.loads(meta["measured"]))


def fit(encode, world_pictures: list, gallery_features: np.ndarray, related=None) -> PictureCheck:
    """Fit and calibrate the check. `encode`: pictures -> [N, F] backbone features; `world_pictures`: the training
    split's pictures; `gallery_features`: [G, F] the gallery's; `related(n, seed)`: n more pictures of the world
    (its drawings) or None. Measures it on fresh pictures of every kind, held-out kinds included."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from cmr_demo.data import outside
    rng = np.random.default_rng(FIT_SEED)
    if len(world_pictures) > MAX_WORLD:
        world_pictures = [world_pictures[i] for i in np.sort(rng.choice(len(world_pictures), MAX_WORLD, replace=False))]
    per_kind, n_related = min(PER_KIND, max(20, len(world_pictures) // 10)), min(RELATED, len(world_pictures))
    inside = list(world_pictures) + (list(related(n_related, FIT_SEED)[0]) if related else [])
    out_pictures, out_kinds = _outside_pictures(per_kind, FIT_SEED, outside.FITTED)
    kinds = [IN_WORLD, *outside.FITTED]
    x = _unit(encode(inside + out_pictures))
    y = np.array([0] * len(inside) + [kinds.index(k) for k in out_kinds])
    with warnings.catch_warnings():  # a tiny world (tests) stops at max_iter before converging: still a fitted check
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=1e-3, max_iter=500, random_state=0).fit(x, y)
    check = PictureCheck(net.coefs_[0].T.astype(np.float32), net.intercepts_[0].astype(np.float32),
                         net.coefs_[1].T.astype(np.float32), net.intercepts_[1].astype(np.float32), kinds, 0.0, {})
    own = _unit(gallery_features)
    if related:
        own = np.concatenate([own, _unit(encode(related(n_related // 2, CALIBRATION_SEED)[0]))])
    check.min_probability = float(np.quantile(check.probabilities(own)[:, 0], CALIBRATION_RATE))
    check.measured = measure(check, encode, gallery_features, related, per_kind=min(100, per_kind))
    return check


def measure(check: PictureCheck, encode, gallery_features: np.ndarray, related=None, per_kind: int = 100) -> dict:
    """Flag rates on pictures the check was not fitted on: every outside kind (fitted and held-out), the gallery
    (its threshold's share, counted) and fresh drawings of the world."""
    from cmr_demo.data import outside
    flagged = lambda features: float(np.mean(check.probabilities(features)[:, 0] < check.min_probability))  # noqa: E731
    out = {"outside_flagged": {kind: flagged(encode(_outside_pictures(per_kind, MEASURE_SEED, [kind])[0]))
                               for kind in outside.KINDS},
           "gallery_flagged": flagged(gallery_features)}
    if related:
        out["drawings_flagged"] = flagged(encode(related(5 * per_kind, MEASURE_SEED)[0]))
    return out


CLASS_CALIBRATION_SEED = 8_000_004
CLASS_CALIBRATION_PICTURES = 3000  # drawn; those of a class (a class colour, in a world of coloured classes) kept


def class_calibration(encode, related, world_size: int,
                      n: int = CLASS_CALIBRATION_PICTURES) -> tuple[np.ndarray, np.ndarray] | None:
    """([M, F] backbone features, [M] class ids) of the world's related pictures that have a class: the app fits the
    temperature of a picture's class read on them beside the gallery's pictures, so a drawing's confidence means
    what it says (fitted on the gallery alone, the class read of drawings was over-confident: ECE 0.09)."""
    if related is None:
        return None
    pictures, labels = related(min(n, 2 * world_size), CLASS_CALIBRATION_SEED)  # a small world: fewer
    keep = np.flatnonzero(np.asarray(labels) >= 0)
    if not len(keep):
        return None
    return encode([pictures[i] for i in keep]), np.asarray(labels)[keep].astype(np.int64)
