"""`webshapes[:N[,seed=S]]`: the shapes world made hard the way real benchmarks are hard (the app's default).

Why another world: on `shapes` the frozen tiny CLIP already separates the 10 classes linearly (probe 0.998),
so every objective scores AP ~1 and comparing them shows nothing. Measured one lever at a time on 4,000 items
(bench/world.py, its table in docs/results.md), none alone leaves the saturated regime; together they give
the spread real benchmarks show. The levers, each as web-crawled image-text data has it:

- **finer classes a picture still shows**: 40 classes, a shape in a colour ("red star", "blue ring"), as
  XMediaNet's 200 visible categories are finer than Pascal's 20; each name contains its shape's name;
- **captions that describe only part of the picture** (35 %): the shape without its colour (15 %), the
  colour without its shape (10 %), or a side detail, a small distractor or the background (10 %);
- **label noise** (20 % of training pairs): the label of a confusable class (same shape in another colour,
  or same colour on another shape), as when a crawled pair's tag is near but wrong;
- **a long tail**: training class sizes follow a Zipf law (exponent 0.8) over a seeded order of the classes,
  the largest class ~20x the smallest.

A fifth of the pictures are drawings of the shape in its colour (`cmr_demo.data.drawings`: outline or filled, on
paper, photographed, hand-drawn), as clip art sits among photos on the web; their captions follow the same
modes. Validation and test are clean and balanced (every class once per block of 40), so the gallery's relevance
marks are true and its mAP is comparable across classes. Pictures are the `shapes` renderer's with the
class colour fixed and a background it stands out on. Item i comes from its own RNG, as in `shapes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmr_demo.data import shapes
from cmr_demo.data.shapes import (BACKGROUNDS, COLOURS, INDIRECT, MIN_CONTRAST, POSITION_PHRASES, SIZE_WORDS,
                                  SYNONYMS, TEXTURES, article, render_scene, scene_caption)
from cmr_demo.data.types import Dataset, IngestReport, Split

CLASS_COLOURS = ("red", "yellow", "green", "blue")  # far apart in hue: a visitor tells them at a glance
SHAPES = tuple(shapes.CLASS_NAMES)
CLASS_NAMES = [f"{colour} {shape}" for shape in SHAPES for colour in CLASS_COLOURS]
NUM_CLASSES = len(CLASS_NAMES)
DEFAULT_ITEMS = 4000  # 2,800 train (70 a class on average), 400 val, 800 test (20 a class)
SEED = 20261206  # the data is fixed; training seeds vary separately
TRAIN_FRACTION, VAL_FRACTION = 0.7, 0.1
MIN_ITEMS = 5 * NUM_CLASSES
DRAWINGS = 0.2  # share of items that are drawings rather than scenes


@dataclass(frozen=True)
class Levers:
    """What makes the world hard; the defaults are the served world's, measured against the alternatives in
    bench/world.py (each lever alone, all together)."""
    caption_modes: dict[str, float] = field(default_factory=lambda: {
        "full": 0.65, "shape only": 0.15, "colour only": 0.10, "detail": 0.10})
    label_noise: float = 0.2  # share of training labels that name a confusable class
    zipf: float = 0.8  # exponent of the training class sizes (0: balanced)

    def __hash__(self) -> int:
        return hash((tuple(self.caption_modes.items()), self.label_noise, self.zipf))


LEVERS = Levers()
NO_LEVERS = Levers({"full": 1.0}, 0.0, 0.0)  # shape x colour classes alone

DESCRIPTION = ("Pictures of coloured shapes, 64x64, in 40 classes: a shape (star, heart, circle, square, triangle, "
               "cross, crescent, hexagon, ring, arrow) in a colour (red, yellow, green, blue), one to three of them "
               "on a textured background, sometimes beside small shapes of other classes; a fifth are drawings "
               "of the shape (outline or filled, on paper). As with pairs crawled "
               "from the web, a third of the captions describe only part of the picture (the shape but not its "
               "colour, the colour but not the shape, or a side detail), a fifth of the training labels name a "
               "near class, and some classes have twenty times more training pairs than others. Nothing else "
               "exists in this world: no animals, objects or photographs.")
LICENSE = shapes.LICENSE
EXAMPLES = [("a red star", "red star"), ("two blue hearts", "blue heart"), ("a green shape with three corners",
            "green triangle"), ("a big yellow hexagon in the top left corner", "yellow hexagon"),
            ("a blue ring on a dark background", "blue ring"), ("a yellow crescent moon", "yellow crescent")]
CLASS_GROUPS = {"shape": {shape: [f"{c} {shape}" for c in CLASS_COLOURS] for shape in SHAPES},
                "colour": {colour: [f"{colour} {shape}" for shape in SHAPES] for colour in CLASS_COLOURS}}


def drawn_shapes(n: int, seed: int) -> tuple[list, np.ndarray]:
    """n drawings of the world's shapes as visitors make them (every style, any colour): pictures of this world,
    with their class when drawn in a class colour, else -1 (a black star is a star of no class here)."""
    from cmr_demo.data import drawings
    drawn = drawings.sample(n, seed)
    return [d[0] for d in drawn], np.array([class_of(shape, colour) if colour in CLASS_COLOURS else -1
                                            for _, shape, colour in drawn])


def class_of(shape: str, colour: str) -> int:
    return CLASS_NAMES.index(f"{colour} {shape}")


def train_weights(seed: int, levers: Levers = LEVERS) -> np.ndarray:
    """[C] class shares of the training split: Zipf over a seeded order of the classes (the long tail)."""
    weights = 1.0 / (1 + np.arange(NUM_CLASSES)) ** levers.zipf
    weights = weights[np.random.default_rng([seed, 99]).permutation(NUM_CLASSES)]
    return weights / weights.sum()


def true_label(i: int, seed: int, split: str, levers: Levers = LEVERS) -> int:
    """The class item i shows: long-tailed in train, balanced blocks of every class elsewhere."""
    if split == "train":
        return int(np.random.default_rng([seed, i, 7]).choice(NUM_CLASSES, p=train_weights(seed, levers)))
    order = np.random.default_rng([seed, 1 << 30, i // NUM_CLASSES]).permutation(NUM_CLASSES)
    return int(order[i % NUM_CLASSES])


def noisy_label(i: int, seed: int, label: int, levers: Levers = LEVERS) -> int:
    """The training label as crawled: `levers.label_noise` of them name a confusable class instead."""
    rng = np.random.default_rng([seed, i, 11])
    if rng.random() >= levers.label_noise:
        return label
    shape, colour = divmod(label, len(CLASS_COLOURS))
    if rng.random() < 0.5:  # the same shape in another colour
        colour = (colour + 1 + rng.integers(len(CLASS_COLOURS) - 1)) % len(CLASS_COLOURS)
    else:  # the same colour on another shape
        shape = (shape + 1 + rng.integers(len(SHAPES) - 1)) % len(SHAPES)
    return int(shape * len(CLASS_COLOURS) + colour)


def _background_for(colour: str, rng: np.random.Generator) -> str:
    ok = [b for b, rgb in BACKGROUNDS.items()
          if np.linalg.norm(np.array(COLOURS[colour]) - np.array(rgb)) >= MIN_CONTRAST]
    return ok[rng.integers(len(ok))]


def _noun(f: dict, rng: np.random.Generator) -> str:
    """The shape as a caption names it: a synonym, sometimes only a description, with count and size."""
    table = INDIRECT if rng.random() < shapes.INDIRECT_RATE else SYNONYMS
    names = table[f["cls"]][rng.integers(len(table[f["cls"]]))]
    size = SIZE_WORDS[f["size"]][rng.integers(2)] + " " if rng.random() < 0.5 else ""
    phrase = {1: "", 2: "two ", 3: "three "}[f["count"]] + size + names[0 if f["count"] == 1 else 1]
    return article(phrase) if f["count"] == 1 else phrase


def _background_phrase(f: dict, rng: np.random.Generator) -> str:
    texture = TEXTURES[f["texture"]][rng.integers(2)]
    return article(f"{f['bg'] + ' ' if rng.random() < 0.6 else ''}{texture} background")


PARTIAL = {  # templates of the partial captions, by what they leave out
    "shape only": ["{noun} {pos} on {bg}.", "A picture of {noun}.", "There {be} {noun} {pos}.", "{bg} with {noun}.",
                   "Here {be} {noun}, {pos}.", "{noun}."],
    "colour only": ["Something {colour} {pos} on {bg}.", "A {colour} thing {pos}.", "{colour} on {bg}.",
                    "Mostly {bgname}, with a bit of {colour} {pos}.", "A splash of {colour}."],
    "detail": ["A small {d_col} {d_cls} on {bg}.", "{bg}.", "A {texture} {bgname} backdrop.",
               "Look at the little {d_col} {d_cls}."],
}


def caption(f: dict, rng: np.random.Generator, levers: Levers = LEVERS) -> tuple[str, str]:
    """(caption, mode): the whole scene in the `shapes` world's words, or only part of it (`levers.caption_modes`)."""
    modes = levers.caption_modes
    mode = list(modes)[rng.choice(len(modes), p=list(modes.values()))]
    if mode == "full":
        return scene_caption(f, rng), mode
    templates = PARTIAL[mode]
    if mode == "detail" and not f["distractors"]:
        templates = [t for t in templates if "{d_" not in t]
    d_col, d_cls = f["distractors"][0] if f["distractors"] else ("", "")
    text = templates[rng.integers(len(templates))].format(
        noun=_noun(f, rng), colour=f["colour"], pos=POSITION_PHRASES[f["where"]], bg=_background_phrase(f, rng),
        be="is" if f["count"] == 1 else "are", bgname=f["bg"], texture=TEXTURES[f["texture"]][0], d_col=d_col,
        d_cls=d_cls)
    return text[0].upper() + text[1:], mode


DRAWN = {"colour only": ["A drawing in {colour}.", "Something {colour} drawn on paper.", "{colour} lines on paper.",
                         "A {colour} doodle."],
         "detail": ["A drawing on {paper} paper.", "A sketch on paper.", "A page with a drawing on it."]}


def _drawing(i: int, shape: str, colour: str, seed: int, levers: Levers) -> tuple:
    """A drawing of the class (its shape in its colour) and its caption, in the caption modes of the scenes."""
    from cmr_demo.data import drawings
    rng = np.random.default_rng([seed, i, 13])
    look = drawings.random_look(rng, colour=colour)
    modes = levers.caption_modes
    mode = list(modes)[np.random.default_rng([seed, i, 1]).choice(len(modes), p=list(modes.values()))]
    picture, text = drawings.render_look(shape, look, rng, colour_word=mode != "shape only")
    if mode in DRAWN:
        options = DRAWN[mode]
        text = options[rng.integers(len(options))].format(colour=colour, paper=look.paper)
        text = text[0].upper() + text[1:]
    return picture, text, mode


def render_item(i: int, split: str, seed: int = SEED, levers: Levers = LEVERS) -> tuple:
    """Item i of `split`: (64x64 picture, caption, label as recorded, class shown, caption mode)."""
    label = true_label(i, seed, split, levers)
    shape, colour = divmod(label, len(CLASS_COLOURS))
    colour_name = CLASS_COLOURS[colour]
    if np.random.default_rng([seed, i, 17]).random() < DRAWINGS:
        image, text, mode = _drawing(i, SHAPES[shape], colour_name, seed, levers)
    else:
        style = {"colour": colour_name, "bg": _background_for(colour_name, np.random.default_rng([seed, i, 5]))}
        image, facts = render_scene(i, shape, seed, style)
        text, mode = caption(facts, np.random.default_rng([seed, i, 1]), levers)
    recorded = noisy_label(i, seed, label, levers) if split == "train" else label
    return image, text, recorded, label, mode


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test); val and test hold whole blocks of all classes."""
    n_val = NUM_CLASSES * max(1, int(VAL_FRACTION * n / NUM_CLASSES))
    n_test = NUM_CLASSES * max(1, int((1 - TRAIN_FRACTION - VAL_FRACTION) * n / NUM_CLASSES))
    return n - n_val - n_test, n_val, n_test


def make_split(name: str, first: int, count: int, seed: int, levers: Levers = LEVERS) -> Split:
    items = [render_item(i, name, seed, levers) for i in range(first, first + count)]
    prefix = "web" if seed == SEED else f"web{seed}"
    return Split(ids=[f"{prefix}-{i:05d}" for i in range(first, first + count)],
                 labels=np.array([it[2] for it in items]), class_names=list(CLASS_NAMES),
                 images=[it[0] for it in items], texts=[it[1] for it in items])


def parse_arg(arg: str) -> tuple[int, int]:
    """`N` or `N,seed=S` -> (N, S)."""
    return shapes.parse_arg(arg, "webshapes", DEFAULT_ITEMS, SEED, MIN_ITEMS, "webshapes:4000")


def read(arg: str, report: IngestReport) -> Dataset:
    """`webshapes[:N[,seed=S]]`: N items, 70 % train (long-tailed, noisy labels), 10 % val, 20 % test (clean)."""
    n, seed = parse_arg(arg)
    return make_dataset(n, seed)


def make_dataset(n: int = DEFAULT_ITEMS, seed: int = SEED, levers: Levers = LEVERS) -> Dataset:
    """The world with other levers (bench/world.py measures them); `read` gives the default levers."""
    n_train, n_val, n_test = split_sizes(n)
    spec = f"webshapes:{n}" if seed == SEED else f"webshapes:{n},seed={seed}"
    if levers != LEVERS:
        spec += " (levers: " + ", ".join(f"{k}={v}" for k, v in vars(levers).items()) + ")"
    return Dataset(spec=spec, train=make_split("train", 0, n_train, seed, levers),
                   val=make_split("val", n_train, n_val, seed, levers),
                   test=make_split("test", n_train + n_val, n_test, seed, levers),
                   description=DESCRIPTION, examples=list(EXAMPLES), license=LICENSE, license_id="mit",
                   class_groups=CLASS_GROUPS, related_pictures=drawn_shapes)
