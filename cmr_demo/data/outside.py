"""Pictures that are not of the shapes world: noise, flat colours, gradients, patterns, writing, stick figures,
drawings of other things, photo-like scenes. Each comes with a caption that says what it is.

Why: a CLIP that has only ever seen coloured shapes maps everything onto a shape (a plain colour read as
"circle", letters as "star"). A real CLIP has seen the rest of the world; the tiny one learns these kinds
from captions alone, with no class label (`cmr_demo.data.shapes_stream`), so their features land apart from
the shapes'. The same generator, with other seeds, calibrates the app's out-of-world check for pictures
(`cmr_demo.bundle.world_check`). Kinds are named (`KINDS`) so the check reports per kind: `STREAM` are the
kinds the pre-training sees, `FITTED` those the check is fitted on, `HELD_OUT` test how it generalises.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from cmr_demo.data.drawings import INKS, PAPERS, to_model_size

Painter = Callable[[np.random.Generator, int], tuple[Image.Image, str]]
NAMED_COLOURS = {"red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 215, 30), "green": (40, 160, 60),
                 "blue": (40, 90, 220), "purple": (140, 60, 190), "pink": (245, 120, 185), "brown": (125, 75, 35),
                 "black": (20, 20, 20), "white": (250, 250, 250), "grey": (128, 128, 128), "teal": (0, 128, 128)}
WORDS = ["cat", "dog", "hello", "house", "tree", "sun", "car", "book", "apple", "music", "river", "moon", "party",
         "sale", "stop", "open", "love", "data", "art", "map", "blue", "exit", "coffee", "garden"]


def _colour(rng: np.random.Generator) -> tuple[str, tuple[int, int, int]]:
    name = list(NAMED_COLOURS)[rng.integers(len(NAMED_COLOURS))]
    jitter = rng.integers(-20, 21, 3)
    return name, tuple(int(v) for v in np.clip(np.array(NAMED_COLOURS[name]) + jitter, 0, 255))


def noise(rng, c):
    kind = rng.integers(4)
    if kind == 0:
        px = rng.integers(0, 256, (c, c, 3))
        text = ["random noise", "colourful random noise", "static noise", "random coloured pixels"][rng.integers(4)]
    elif kind == 1:
        px = np.repeat(np.clip(rng.normal(128, rng.uniform(30, 80), (c, c, 1)), 0, 255), 3, 2)
        text = ["grey noise", "grainy grey static", "black and white noise"][rng.integers(3)]
    elif kind == 2:
        cells = int(rng.integers(4, 24))
        px = np.asarray(Image.fromarray(rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8)).resize(
            (c, c), Image.NEAREST if rng.random() < 0.5 else Image.BICUBIC))
        text = ["blocky coloured noise", "a mosaic of random colours", "blurry colour noise"][rng.integers(3)]
    else:
        px = np.full((c, c, 3), rng.integers(60, 200, 3), np.float32)
        mask = rng.random((c, c)) < rng.uniform(0.05, 0.3)
        px[mask] = rng.choice([0, 255], (int(mask.sum()), 1))
        text = ["salt and pepper noise", "speckled noise"][rng.integers(2)]
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)), text


def flat(rng, c):
    name, rgb = _colour(rng)
    px = np.full((c, c, 3), rgb, np.float32) + rng.normal(0, rng.uniform(0, 4), (c, c, 3))
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)), \
        [f"a plain {name} picture", f"a blank {name} image", f"just the colour {name}", f"an empty {name} "
                                                                                        f"square"][rng.integers(4)]


def gradient(rng, c):
    (n1, a), (n2, b) = _two_colours(rng)
    yy, xx = np.mgrid[0:c, 0:c].astype(np.float32) / c
    if rng.random() < 0.7:
        t = rng.uniform(0, 2 * math.pi)
        mix = (xx - 0.5) * math.cos(t) + (yy - 0.5) * math.sin(t)
        mix = (mix - mix.min()) / (mix.max() - mix.min())
        text = f"a gradient from {n1} to {n2}"
    else:
        mix = np.clip(np.hypot(xx - rng.uniform(0.2, 0.8), yy - rng.uniform(0.2, 0.8)) / 0.7, 0, 1)
        text = f"a radial gradient of {n1} and {n2}"
    px = np.array(a, np.float32) * (1 - mix[..., None]) + np.array(b, np.float32) * mix[..., None]
    return Image.fromarray(px.astype(np.uint8)), text


def _two_colours(rng) -> tuple[tuple[str, tuple], tuple[str, tuple]]:
    first = _colour(rng)
    second = _colour(rng)
    while second[0] == first[0]:
        second = _colour(rng)
    return first, second


def pattern(rng, c):
    (n1, a), (n2, b) = _two_colours(rng)
    yy, xx = np.mgrid[0:c, 0:c]
    cell = max(2, int(c / rng.integers(3, 17)))
    kind = rng.integers(4)
    if kind == 0:
        on, text = ((xx // cell + yy // cell) % 2).astype(bool), f"a {n1} and {n2} checkerboard"
    elif kind == 1:
        t = rng.uniform(0, math.pi)
        on = ((xx * math.cos(t) + yy * math.sin(t)) // cell % 2).astype(bool)
        text = f"{n1} and {n2} stripes"
    elif kind == 2:
        on = ((xx % cell) < max(1, cell // 6)) | ((yy % cell) < max(1, cell // 6))
        text = f"a {n1} grid of lines on {n2}"
    else:
        on = ((xx % cell - cell / 2) ** 2 + (yy % cell - cell / 2) ** 2) < (cell / 4) ** 2
        text = f"a pattern of {n1} dots on {n2}"
    px = np.where(on[..., None], np.array(a), np.array(b)).astype(np.uint8)
    return Image.fromarray(px), text


def writing(rng, c):
    paper = PAPERS[list(PAPERS)[rng.integers(len(PAPERS))]]
    image = Image.new("RGB", (c, c), paper)
    pen = ImageDraw.Draw(image)
    ink_name = ["black", "dark blue", "red", "grey", "green"][rng.integers(5)]
    kind = rng.integers(3)
    if kind == 0:
        letter = chr(int(rng.integers(65, 91)) if rng.random() < 0.6 else int(rng.integers(97, 123)))
        text, size, caption = letter, int(c * rng.uniform(0.4, 0.9)), f"the letter {letter}"
    elif kind == 1:
        word = WORDS[rng.integers(len(WORDS))]
        text, size, caption = word, int(c * rng.uniform(0.15, 0.35)), f"the word '{word}' written in {ink_name}"
    else:
        digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 5))))
        text, size, caption = digits, int(c * rng.uniform(0.2, 0.6)), f"the number {digits}"
    font = ImageFont.load_default(size=max(8, size))
    box = pen.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    x, y = rng.uniform(0, max(1, c - w)) - box[0], rng.uniform(0, max(1, c - h)) - box[1]
    pen.text((x, y), text, fill=INKS[ink_name], font=font)
    if rng.random() < 0.4:
        image = image.rotate(rng.uniform(-20, 20), fillcolor=paper, resample=Image.BICUBIC)
    return image, caption


def _canvas(rng, c):
    paper = list(PAPERS)[rng.integers(len(PAPERS))]
    image = Image.new("RGB", (c, c), PAPERS[paper])
    ink = ["black", "dark blue", "grey", "red", "brown", "green"][rng.integers(6)]
    return image, ImageDraw.Draw(image), INKS[ink], max(1, int(c * rng.uniform(0.006, 0.04))), paper


def stick_figure(rng, c):
    image, pen, ink, w, _ = _canvas(rng, c)
    s = c * rng.uniform(0.35, 0.9)
    x0, y0 = rng.uniform(s / 3, c - s / 3), rng.uniform(0.05 * c, c - s)
    head = s * 0.12
    pen.ellipse([x0 - head, y0, x0 + head, y0 + 2 * head], outline=ink, width=w)
    neck, hip = (x0, y0 + 2 * head), (x0, y0 + 0.6 * s)
    pen.line([neck, hip], fill=ink, width=w)
    for side in (-1, 1):
        a = rng.uniform(0.1, 1.2)
        pen.line(
            [
                (x0, y0 + 0.3 * s),
                (x0 + side * 0.3 * s * math.cos(a), y0 + 0.3 * s + side * 0.3 * s * math.sin(a) * rng.choice([-1, 1])),
            ],
            fill=ink,
            width=w,
        )
        pen.line([hip, (x0 + side * rng.uniform(0.1, 0.25) * s, y0 + s)], fill=ink, width=w)
    return image, ["a stick figure", "a drawing of a stick man", "a stick person"][rng.integers(3)]


def _house(pen, x, y, s, ink, w, fill):
    pen.rectangle([x, y + 0.4 * s, x + s, y + s], outline=ink, width=w, fill=(238, 228, 196) if fill else None)
    pen.polygon([(x - 0.1 * s, y + 0.4 * s), (x + 0.5 * s, y), (x + 1.1 * s, y + 0.4 * s)], outline=ink, width=w)
    pen.rectangle([x + 0.4 * s, y + 0.7 * s, x + 0.6 * s, y + s], outline=ink, width=w)


def _tree(pen, x, y, s, ink, w, fill):
    pen.rectangle(
        [x + 0.42 * s, y + 0.6 * s, x + 0.58 * s, y + s], outline=ink, width=w, fill=(125, 75, 35) if fill else None
    )
    pen.ellipse([x + 0.1 * s, y, x + 0.9 * s, y + 0.7 * s], outline=ink, width=w, fill=(40, 160, 60) if fill else None)


def _sun(pen, x, y, s, ink, w, fill):
    cx, cy, r = x + s / 2, y + s / 2, 0.25 * s
    pen.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=w, fill=(240, 215, 30) if fill else None)
    for k in range(8):
        a = k * math.pi / 4
        pen.line(
            [
                (cx + 1.3 * r * math.cos(a), cy + 1.3 * r * math.sin(a)),
                (cx + 2 * r * math.cos(a), cy + 2 * r * math.sin(a)),
            ],
            fill=ink,
            width=w,
        )


def _smiley(pen, x, y, s, ink, w, fill):
    pen.ellipse([x, y, x + s, y + s], outline=ink, width=w, fill=(240, 215, 30) if fill else None)
    for ex in (0.33, 0.67):
        pen.ellipse([x + (ex - 0.05) * s, y + 0.3 * s, x + (ex + 0.05) * s, y + 0.42 * s], fill=ink)
    pen.arc([x + 0.25 * s, y + 0.35 * s, x + 0.75 * s, y + 0.78 * s], 20, 160, fill=ink, width=w)


def _flower(pen, x, y, s, ink, w, fill):
    cx, cy, r = x + s / 2, y + 0.35 * s, 0.1 * s
    pen.line([(cx, cy), (cx, y + s)], fill=(40, 160, 60), width=w)
    for k in range(6):
        a = k * math.pi / 3
        px, py = cx + 1.8 * r * math.cos(a), cy + 1.8 * r * math.sin(a)
        pen.ellipse([px - r, py - r, px + r, py + r], outline=ink, width=w, fill=(245, 120, 185) if fill else None)
    pen.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=w, fill=(240, 215, 30) if fill else None)


def _car(pen, x, y, s, ink, w, fill):
    pen.rectangle([x, y + 0.45 * s, x + s, y + 0.75 * s], outline=ink, width=w, fill=(220, 40, 40) if fill else None)
    pen.polygon([(x + 0.2 * s, y + 0.45 * s), (x + 0.35 * s, y + 0.25 * s), (x + 0.7 * s, y + 0.25 * s),
                 (x + 0.8 * s, y + 0.45 * s)], outline=ink, width=w)
    for wx in (0.22, 0.78):
        pen.ellipse(
            [x + (wx - 0.1) * s, y + 0.65 * s, x + (wx + 0.1) * s, y + 0.85 * s], outline=ink, width=w, fill=ink
        )


def _cloud(pen, x, y, s, ink, w, fill):
    for bx, by, br in ((0.3, 0.55, 0.2), (0.5, 0.45, 0.25), (0.7, 0.55, 0.2)):
        pen.ellipse([x + (bx - br) * s, y + (by - br) * s, x + (bx + br) * s, y + (by + br) * s], outline=ink, width=w,
                    fill=(200, 210, 230) if fill else None)


def _boat(pen, x, y, s, ink, w, fill):
    pen.polygon([(x, y + 0.65 * s), (x + s, y + 0.65 * s), (x + 0.8 * s, y + 0.9 * s), (x + 0.2 * s, y + 0.9 * s)],
                outline=ink, width=w, fill=(125, 75, 35) if fill else None)
    pen.line([(x + 0.5 * s, y + 0.65 * s), (x + 0.5 * s, y + 0.05 * s)], fill=ink, width=w)
    pen.polygon(
        [(x + 0.5 * s, y + 0.1 * s), (x + 0.85 * s, y + 0.55 * s), (x + 0.5 * s, y + 0.55 * s)], outline=ink, width=w
    )


def _fish(pen, x, y, s, ink, w, fill):
    pen.ellipse(
        [x, y + 0.3 * s, x + 0.75 * s, y + 0.7 * s], outline=ink, width=w, fill=(245, 140, 20) if fill else None
    )
    pen.polygon([(x + 0.7 * s, y + 0.5 * s), (x + s, y + 0.3 * s), (x + s, y + 0.7 * s)], outline=ink, width=w)
    pen.ellipse([x + 0.15 * s, y + 0.43 * s, x + 0.22 * s, y + 0.5 * s], fill=ink)


def _cat(pen, x, y, s, ink, w, fill):
    pen.ellipse(
        [x + 0.1 * s, y + 0.25 * s, x + 0.9 * s, y + s], outline=ink, width=w, fill=(150, 150, 150) if fill else None
    )
    pen.polygon(
        [(x + 0.15 * s, y + 0.45 * s), (x + 0.2 * s, y + 0.05 * s), (x + 0.42 * s, y + 0.3 * s)], outline=ink, width=w
    )
    pen.polygon(
        [(x + 0.85 * s, y + 0.45 * s), (x + 0.8 * s, y + 0.05 * s), (x + 0.58 * s, y + 0.3 * s)], outline=ink, width=w
    )
    for ex in (0.35, 0.65):
        pen.ellipse([x + (ex - 0.04) * s, y + 0.5 * s, x + (ex + 0.04) * s, y + 0.6 * s], fill=ink)
    for side in (-1, 1):
        pen.line(
            [(x + 0.5 * s, y + 0.72 * s), (x + 0.5 * s + side * 0.45 * s, y + 0.65 * s)], fill=ink, width=max(1, w // 2)
        )


def _umbrella(pen, x, y, s, ink, w, fill):
    pen.pieslice(
        [x, y + 0.1 * s, x + s, y + 0.9 * s], 180, 360, outline=ink, width=w, fill=(40, 90, 220) if fill else None
    )
    pen.line([(x + 0.5 * s, y + 0.5 * s), (x + 0.5 * s, y + 0.95 * s)], fill=ink, width=w)
    pen.arc([x + 0.5 * s, y + 0.85 * s, x + 0.7 * s, y + s], 0, 180, fill=ink, width=w)


OBJECTS = {"house": _house, "tree": _tree, "sun": _sun, "smiley face": _smiley, "flower": _flower, "car": _car,
           "cloud": _cloud, "boat": _boat}
HELD_OUT_OBJECTS = {"fish": _fish, "cat": _cat, "umbrella": _umbrella}  # never in pre-training


def _object_painter(objects: dict) -> Painter:
    def paint(rng, c):
        image, pen, ink, w, _ = _canvas(rng, c)
        name = list(objects)[rng.integers(len(objects))]
        s = c * rng.uniform(0.4, 0.85)
        x, y = rng.uniform(0.05 * c, max(0.05 * c, c - 1.05 * s)), rng.uniform(0.05 * c, max(0.05 * c, c - 1.05 * s))
        objects[name](pen, x, y, s, ink, w, rng.random() < 0.5)
        article = "an" if name[0] in "aeiou" else "a"
        return image, [f"a drawing of {article} {name}", f"a sketch of {article} {name}", f"{article} {name}"][
            rng.integers(3)
        ]

    return paint


def scene(rng, c):
    """Photo-like pictures with no shape of the world: a landscape, blurred colour blobs, soft clouds."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:c, 0:c].astype(np.float32) / c
    if kind == 0:
        sky = np.array([rng.uniform(80, 180), rng.uniform(140, 210), rng.uniform(200, 255)], np.float32)
        ground = np.array([rng.uniform(40, 120), rng.uniform(90, 170), rng.uniform(20, 80)], np.float32)
        horizon = 0.5 + 0.15 * np.sin(xx * rng.uniform(3, 9) + rng.uniform(0, 6)) * rng.uniform(0.3, 1)
        px = np.where(
            (yy > horizon)[..., None], ground * (0.7 + 0.5 * yy[..., None]), sky * (1.1 - 0.4 * yy[..., None])
        )
        text = ["a photo of a landscape", "a photo of hills under a blue sky", "a field and the sky"][rng.integers(3)]
    elif kind == 1:
        px = np.zeros((c, c, 3), np.float32) + rng.uniform(0, 255, 3)
        for _ in range(int(rng.integers(5, 15))):
            cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.3)]
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
            px = px * (1 - blob) + blob * rng.uniform(0, 255, 3)
        text = ["a blurry photo", "an out-of-focus photo with soft colours", "bokeh lights"][rng.integers(3)]
    else:
        coarse = rng.uniform(0, 1, (int(rng.integers(3, 8)),) * 2 + (3,))
        px = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((c, c), Image.BICUBIC), np.float32)
        px += rng.normal(0, 6, px.shape)
        text = ["a photo of clouds", "a soft texture", "a photo of a wall"][rng.integers(3)]
    image = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))), text


def scribble(rng, c):
    """Lines that are no shape of the world: spirals, zigzags, waves, a free scribble."""
    image, pen, ink, w, _ = _canvas(rng, c)
    kind = rng.integers(4)
    t = np.linspace(0, 1, 300)
    cx, cy, r = c * rng.uniform(0.35, 0.65), c * rng.uniform(0.35, 0.65), c * rng.uniform(0.2, 0.45)
    if kind == 0:
        turns = rng.uniform(2, 5)
        a = 2 * math.pi * turns * t
        pts = np.stack([cx + r * t * np.cos(a), cy + r * t * np.sin(a)], 1)
        text = "a spiral"
    elif kind == 1:
        n = int(rng.integers(4, 12))
        xs = np.linspace(0.1, 0.9, n) * c
        pts = np.stack([xs, cy + r * 0.5 * (np.arange(n) % 2 * 2 - 1)], 1)
        text = "a zigzag line"
    elif kind == 2:
        xs = np.linspace(0.05, 0.95, 200) * c
        pts = np.stack([xs, cy + r * 0.4 * np.sin(xs / c * 2 * math.pi * rng.uniform(1, 4))], 1)
        text = "a wavy line"
    else:
        steps = np.cumsum(rng.normal(0, c * 0.03, (120, 2)), 0)
        pts = np.array([cx, cy]) + steps - steps.mean(0)
        text = "a scribble"
    pen.line([tuple(p) for p in pts.tolist()], fill=ink, width=w, joint="curve")
    return image, text


# the kinds in the tiny CLIP's pre-training stream (fixed: the stream is reproduced from it), the kinds the picture
# check is fitted on (those and more line drawings), and kinds nothing is fitted on
STREAM: dict[str, Painter] = {
    "noise": noise,
    "flat colour": flat,
    "gradient": gradient,
    "pattern": pattern,
    "writing": writing,
    "stick figure": stick_figure,
    "object drawing": _object_painter(OBJECTS),
    "photo-like scene": scene,
}
FITTED: dict[str, Painter] = {**STREAM, "scribble": scribble}
HELD_OUT: dict[str, Painter] = {"unseen object drawing": _object_painter(HELD_OUT_OBJECTS)}
KINDS = {**FITTED, **HELD_OUT}


def draw(kind: str, index: int, seed: int) -> tuple[Image.Image, str]:
    """Picture `index` of `kind` at its own canvas size (96-512 px) and its caption; a pure function of the
    arguments."""
    rng = np.random.default_rng([seed, index, 53, list(KINDS).index(kind)])
    canvas = int(rng.choice([96, 128, 200, 256, 300, 400, 512]))
    return KINDS[kind](rng, canvas)


def render(index: int, seed: int, kind: str | None = None) -> tuple[Image.Image, str, str]:
    """A picture of one of the stream's kinds at the model's 64 px, its caption and its kind (random when None)."""
    if kind is None:
        kind = list(STREAM)[np.random.default_rng([seed, index, 54]).integers(len(STREAM))]
    image, text = draw(kind, index, seed)
    return to_model_size(image), text[0].upper() + text[1:], kind
