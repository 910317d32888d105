"""Pictures as a visitor might make them, drawn by code that shares nothing with the pre-training's generators.

Why separate code: `cmr_demo.data.drawings` and `cmr_demo.data.outside` made the pictures the tiny CLIP and the
picture check learned from; a test set from the same code would measure memory. Here the shapes have their own
geometry (a heart from two discs and a triangle, a crescent cut by a second disc, other star and arrow
proportions), strokes come from a pen model (segments of varying width), and the pictures come in the four
styles of the issue that asked for them: filled on white, outline only, small and off-centre on grey, wobbly
hand-drawn. The outside set adds what no generator made: real photographs (scikit-learn's two sample photos,
cropped), handwritten digits (scikit-learn's digits), a spiral, and the stick figures and letters a visitor tries.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SHAPES = ["star", "heart", "circle", "square", "triangle", "cross", "crescent", "hexagon", "ring", "arrow"]
STYLES = ["filled on white", "outline only", "small off-centre on grey", "wobbly hand-drawn"]
INKS = {"red": (210, 30, 30), "yellow": (235, 200, 20), "green": (30, 150, 50), "blue": (30, 70, 210),
        "black": (0, 0, 0), "purple": (120, 40, 170)}


def _poly(shape: str) -> list[np.ndarray]:
    """Unit-size outline loops (x right, y down), built here from scratch."""
    t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
    circ = np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "circle":
        return [circ]
    if shape == "ring":
        return [circ, 0.55 * circ]
    if shape == "star":
        a = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)]
    if shape == "square":
        return [np.array([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)])]
    if shape == "triangle":
        return [np.array([(0, -0.95), (0.9, 0.75), (-0.9, 0.75)])]
    if shape == "hexagon":
        a = np.arange(6) * math.pi / 3
        return [np.stack([np.cos(a), np.sin(a)], 1) * 0.95]
    if shape == "cross":
        w = 0.28
        return [np.array([(-w, -0.9), (w, -0.9), (w, -w), (0.9, -w), (0.9, w), (w, w), (w, 0.9), (-w, 0.9), (-w, w),
                          (-0.9, w), (-0.9, -w), (-w, -w)])]
    if shape == "arrow":
        return [np.array([(-0.9, -0.2), (0.2, -0.2), (0.2, -0.55), (0.95, 0), (0.2, 0.55), (0.2, 0.2), (-0.9, 0.2)])]
    if shape == "heart":  # two lobes and a point, traced as one loop
        left = np.stack([-0.45 + 0.5 * np.cos(np.linspace(0.25 * math.pi, 1.1 * math.pi, 30)),
                         -0.25 - 0.5 * np.sin(np.linspace(0.25 * math.pi, 1.1 * math.pi, 30))], 1)[::-1]
        right = left[::-1] * [-1, 1]
        return [np.concatenate([left[::-1], [[0, 0.9]], right[::-1]])[::-1]]
    if shape == "crescent":
        outer = np.linspace(0.35 * math.pi, 1.65 * math.pi, 50)
        inner = np.linspace(1.55 * math.pi, 0.45 * math.pi, 40)
        return [np.concatenate([np.stack([np.cos(outer), np.sin(outer)], 1),
                                np.stack([0.45 + 0.75 * np.cos(inner), 0.75 * np.sin(inner)], 1)]) - [0.15, 0]]
    raise ValueError(shape)


def _pen(draw: ImageDraw.ImageDraw, loop: np.ndarray, colour, width: float, rng, shaky: float) -> None:
    """A closed stroke as short segments whose width varies like a pen's pressure."""
    pts = np.concatenate([loop, loop[:1]])
    for a, b in zip(pts[:-1], pts[1:]):
        steps = max(1, int(np.linalg.norm(b - a) / 4))
        for k in range(steps):
            p = a + (b - a) * k / steps
            q = a + (b - a) * (k + 1) / steps
            jitter = rng.normal(0, shaky, 2) if shaky else 0
            w = max(1, int(round(width * rng.uniform(0.8, 1.2))))
            draw.line([tuple(p + jitter), tuple(q + jitter)], fill=colour, width=w)


def _smooth_noise(n: int, amount: float, rng) -> np.ndarray:
    s = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return sum(amount / k * rng.normal(size=(1, 2)) * np.stack([np.sin(k * s + rng.uniform(0, 6)),
                                                                  np.cos(k * s + rng.uniform(0, 6))], 1)
               for k in range(1, 4))


def drawing(shape: str, style: str, index: int) -> tuple[Image.Image, str]:
    """One picture of `shape` in `style` (a 256-512 px PNG as uploaded) and its ink colour name."""
    rng = np.random.default_rng([SHAPES.index(shape), STYLES.index(style), index, 77])
    size = int(rng.choice([256, 320, 400, 512]))
    ink = list(INKS)[rng.integers(len(INKS))]
    bg = (128, 128, 128) if style.startswith("small") else (255, 255, 255)
    if style.startswith("small") and ink in ("black",):
        ink = "yellow"
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    if style.startswith("small"):
        r = size * rng.uniform(0.08, 0.14)
        cx, cy = rng.choice([0.22, 0.78]) * size, rng.choice([0.22, 0.78]) * size
    else:
        r = size * rng.uniform(0.25, 0.42)
        cx, cy = size / 2 + rng.uniform(-0.05, 0.05) * size, size / 2 + rng.uniform(-0.05, 0.05) * size
    angle = rng.uniform(-0.25, 0.25) if shape not in ("circle", "ring") else 0.0
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    loops = []
    for loop in _poly(shape):
        if style == "wobbly hand-drawn":
            dense = np.concatenate([a + (b - a) * np.linspace(0, 1, 12, endpoint=False)[:, None]
                                    for a, b in zip(loop, np.roll(loop, -1, 0))])
            loop = dense + _smooth_noise(len(dense), 0.07, rng)
        loops.append((loop @ rot) * r + (cx, cy))
    filled = style in ("filled on white", "small off-centre on grey") or (style == "wobbly hand-drawn" and index % 2)
    if filled:
        draw.polygon([tuple(p) for p in loops[0]], fill=INKS[ink])
        if shape == "ring":
            draw.polygon([tuple(p) for p in loops[1]], fill=bg)
    else:
        width = size * rng.uniform(0.006, 0.025)
        for loop in loops:
            _pen(draw, loop, INKS[ink], width, rng, shaky=1.5 if style == "wobbly hand-drawn" else 0)
    return image, ink


def drawings(per_style: int = 3) -> list[tuple[Image.Image, str, str, str]]:
    """(picture, shape, style, ink) for every shape and style, `per_style` each."""
    out = []
    for shape in SHAPES:
        for style in STYLES:
            for i in range(per_style):
                image, ink = drawing(shape, style, i)
                out.append((image, shape, style, ink))
    return out


def _sklearn_photo(name: str, rng) -> Image.Image:
    from sklearn.datasets import load_sample_image
    pixels = load_sample_image(name)
    h, w = pixels.shape[:2]
    s = int(rng.integers(min(h, w) // 3, min(h, w)))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    return Image.fromarray(pixels[y:y + s, x:x + s]).resize((320, 320))


def _digits(rng) -> Image.Image:
    from sklearn.datasets import load_digits
    d = load_digits()
    pick = rng.integers(len(d.images), size=int(rng.integers(1, 4)))
    canvas = np.full((8, 8 * len(pick)), 0.0)
    for n, k in enumerate(pick):
        canvas[:, 8 * n:8 * n + 8] = d.images[k] / 16
    return Image.fromarray((255 - 255 * canvas).astype(np.uint8)).convert("RGB").resize((96 * len(pick), 96),
                                                                                        Image.BILINEAR)


def _spiral(rng) -> Image.Image:
    image = Image.new("RGB", (300, 300), "white")
    draw = ImageDraw.Draw(image)
    t = np.linspace(0, 6 * math.pi, 400)
    pts = np.stack([150 + 8 * t * np.cos(t), 150 + 8 * t * np.sin(t)], 1)
    draw.line([tuple(p) for p in pts], fill=(0, 0, 0), width=3)
    return image


def _stick_man(rng) -> Image.Image:
    image = Image.new("RGB", (300, 300), "white")
    d = ImageDraw.Draw(image)
    d.ellipse([125, 30, 175, 80], outline="black", width=4)
    d.line([(150, 80), (150, 190)], fill="black", width=4)
    d.line([(150, 110), (100, 150)], fill="black", width=4)
    d.line([(150, 110), (200, 150)], fill="black", width=4)
    d.line([(150, 190), (110, 270)], fill="black", width=4)
    d.line([(150, 190), (190, 270)], fill="black", width=4)
    return image


def _letters(rng) -> Image.Image:
    image = Image.new("RGB", (400, 200), "white")
    text = ["ABC", "hello", "Shapes", "xyz"][int(rng.integers(4))]
    ImageDraw.Draw(image).text((20, 40), text, fill="black", font=ImageFont.load_default(size=90))
    return image


def _flat(rng) -> Image.Image:
    return Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(0, 256, 3)))


def _noise(rng) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))


def _gradient(rng) -> Image.Image:
    x = np.linspace(0, 1, 256)[None, :, None]
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return Image.fromarray(np.broadcast_to(a * (1 - x) + b * x, (256, 256, 3)).astype(np.uint8))


def _checkerboard(rng) -> Image.Image:
    cell = int(rng.integers(16, 64))
    yy, xx = np.mgrid[0:256, 0:256]
    on = ((yy // cell + xx // cell) % 2).astype(bool)
    return Image.fromarray(np.where(on[..., None], 0, 255).astype(np.uint8).repeat(3, 2))


OUTSIDE = {"photo (temple)": lambda rng: _sklearn_photo("china.jpg", rng),
           "photo (flower)": lambda rng: _sklearn_photo("flower.jpg", rng),
           "handwritten digits": _digits, "spiral": _spiral, "stick figure": _stick_man, "letters": _letters,
           "plain colour": _flat, "random noise": _noise, "gradient": _gradient, "checkerboard": _checkerboard}


def outside_pictures(per_kind: int = 3) -> list[tuple[Image.Image, str]]:
    """(picture, kind) for every kind of picture that is not of the shapes world."""
    out = []
    for n, (kind, make) in enumerate(OUTSIDE.items()):
        for i in range(per_kind):
            picture = make(np.random.default_rng([n, i, 91]))
            out.append((picture.filter(ImageFilter.SMOOTH) if kind == "spiral" and i else picture, kind))
    return out
