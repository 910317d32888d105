"""Pictures a visitor draws of the shapes world: outline or filled, thin or thick, wobbly, any size, on paper.

Why: the world's own pictures are small filled shapes on textured backgrounds, rendered at 64 px. What people
upload is drawn in a paint program or on paper: outline-only shapes with strokes of any width, plain white or
grey backgrounds, shapes from a corner of the canvas up to the whole of it, lines that wobble and do not
quite close, and photos of paper under uneven light. A backbone that never saw such pictures misreads them
(an outlined star read as "crescent" at confidence 1.00). These drawings join the tiny CLIP's pre-training
stream with captions and no class label (`cmr_demo.data.shapes_stream`), and calibrate the picture checks.

A drawing is rendered at its own canvas size (96-512 px, as uploaded) by `draw`; `render` also brings it to the
model's 64 px exactly as open_clip's preprocessing does (bicubic, antialiased), so a 2 px stroke on a 512 px
canvas arrives as the faint line the model will really see. Each style is a named recipe (`STYLES`), so
tests and benchmarks report accuracy per style.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cmr_demo.data.shape_geometry import CLASS_NAMES, COLOURS, POLYGONS, SIZE

# colours people draw with: the world's, plus pencil and pen
INKS = {**COLOURS, "grey": (110, 110, 110), "dark blue": (20, 40, 140)}
PAPERS = {"white": (255, 255, 255), "off-white": (246, 244, 236), "light grey": (225, 225, 225),
          "grey": (150, 150, 150), "cream": (240, 230, 200), "pale yellow": (250, 245, 205)}
STYLES = ("filled", "outline", "small", "hand-drawn", "photo", "large")
STYLE_WORDS = {"filled": ["a drawing of", "a filled drawing of", "a simple drawing of"],
               "outline": ["an outline of", "an outline drawing of", "a line drawing of"],
               "small": ["a small drawing of", "a little drawing of"],
               "hand-drawn": ["a hand-drawn", "a sketch of", "a doodle of", "a wobbly drawing of"],
               "photo": ["a photo of a drawing of", "a photographed sketch of"],
               "large": ["a big drawing of", "a large drawing of"]}


@dataclass(frozen=True)
class Look:
    """How one drawing is made; `draw` turns it into a picture."""
    style: str
    filled: bool
    ink: str  # stroke colour name (INKS)
    fill: str | None  # fill colour name when filled (COLOURS)
    paper: str
    canvas: int  # pixels of the square canvas
    stroke: float  # line width as a share of the canvas
    scale: float  # shape radius as a share of the canvas
    wobble: float  # smooth displacement of the outline, as a share of the radius
    count: int


def _outline(shape: str, n: int = 160) -> list[np.ndarray]:
    """The shape's closed outline(s) as unit-radius point loops; a ring is two circles (its two edges)."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "circle":
        return [circle]
    if shape == "ring":
        return [circle, 0.58 * circle]
    unit, _ = POLYGONS[shape]
    return [_densify(unit, n)]


def _densify(poly: np.ndarray, n: int) -> np.ndarray:
    """About n points along a closed polygon, corners kept, so a wobble bends edges instead of moving corners."""
    closed = np.concatenate([poly, poly[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    per = np.maximum(1, np.round(n * seg / seg.sum()).astype(int))
    return np.concatenate([a + (b - a) * np.linspace(0, 1, k, endpoint=False)[:, None]
                           for a, b, k in zip(closed[:-1], closed[1:], per)])


def _wobble(loop: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """A hand's wobble: a smooth random displacement along the loop (a few low-frequency waves)."""
    if amount <= 0:
        return loop
    s = np.linspace(0, 2 * math.pi, len(loop), endpoint=False)
    out = loop.copy()
    for axis in (0, 1):
        for k in range(1, 5):
            out[:, axis] += amount / k * rng.normal() * np.sin(k * s + rng.uniform(0, 2 * math.pi))
    return out


def _place(look: Look, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(cx, cy, r) in canvas pixels for each copy: inside the canvas, apart where there is room."""
    c, r = look.canvas, look.scale * look.canvas
    out = []
    for _ in range(look.count):
        for _attempt in range(30):
            margin = r + look.stroke * c
            lo, hi = min(margin, c / 2), max(c - margin, c / 2)
            if look.style == "small":  # off-centre: kept away from the middle
                x, y = rng.uniform(lo, hi, 2)
                if math.hypot(x - c / 2, y - c / 2) < 0.18 * c:
                    continue
            else:
                x, y = rng.uniform(lo, hi, 2)
            if all(math.hypot(x - a, y - b) > r + q for a, b, q in out):
                out.append((x, y, r))
                break
    return out or [(c / 2, c / 2, r)]


def draw(shape: str, look: Look, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """The drawing at its own canvas size (what a visitor uploads), and how many copies found room."""
    c = look.canvas
    image = Image.new("RGB", (c, c), PAPERS[look.paper])
    pen = ImageDraw.Draw(image)
    width = max(1, int(round(look.stroke * c)))
    turn_max = POLYGONS[shape][1] if shape in POLYGONS else 0
    places = _place(look, rng)
    for cx, cy, r in places:
        theta = rng.uniform(-min(turn_max, 0.6), min(turn_max, 0.6)) if turn_max else 0.0
        rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
        loops = [(_wobble(loop, look.wobble, rng) @ rot) * r + (cx, cy) for loop in _outline(shape)]
        if look.filled:
            fill = INKS[look.fill or look.ink]
            if shape == "ring":  # a filled ring is a band: the outer disc minus the inner one
                pen.polygon([tuple(p) for p in loops[0].tolist()], fill=fill)
                pen.polygon([tuple(p) for p in loops[1].tolist()], fill=PAPERS[look.paper])
            else:
                pen.polygon([tuple(p) for p in loops[0].tolist()], fill=fill)
        if not look.filled or look.ink != look.fill:
            for loop in loops:
                gap = int(rng.integers(0, 4)) if look.wobble > 0 else 0  # a hand rarely closes a line exactly
                pts = np.concatenate([loop, loop[:max(1, 2 - gap)]])
                pen.line([tuple(p) for p in pts.tolist()], fill=INKS[look.ink], width=width, joint="curve")
    if look.style == "photo":
        image = _photographed(image, rng)
    return image, len(places)


def _photographed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Paper under uneven light: a brightness gradient and vignette, a colour cast, blur, sensor noise, JPEG."""
    c = image.size[0]
    yy, xx = np.mgrid[0:c, 0:c].astype(np.float32) / c
    angle = rng.uniform(0, 2 * math.pi)
    light = 1 - rng.uniform(0.15, 0.45) * ((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.5)
    light *= 1 - rng.uniform(0, 0.25) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    cast = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.82, 1.0)], np.float32)
    blurred = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5) * c / 256))
    pixels = np.asarray(blurred, np.float32) * light[..., None] * cast
    pixels += rng.normal(0, rng.uniform(2, 8), pixels.shape)
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=int(rng.integers(35, 90)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def random_look(rng: np.random.Generator, style: str | None = None, colour: str | None = None) -> Look:
    """A look of `style` (random when None) with every other choice drawn as people make them; `colour` (a colour
    of the world) fixes what the shape is drawn in: its fill, or its line when it is an outline."""
    style = style or STYLES[rng.integers(len(STYLES))]
    filled = style == "filled" or (style in ("small", "hand-drawn", "photo", "large") and rng.random() < 0.45)
    inks = list(INKS)
    ink = inks[rng.integers(len(inks))] if rng.random() < 0.6 else ["black", "grey", "dark blue"][rng.integers(3)]
    fill = list(COLOURS)[rng.integers(len(COLOURS))] if filled else None
    if filled and rng.random() < 0.5:
        ink = fill  # a flat fill with no separate outline
    papers = [p for p in PAPERS if not _too_close(ink, p) and not (fill and _too_close(fill, p))]
    if not papers:  # nothing shows on any paper: a black pen on white always does
        ink, fill, papers = "black", ("black" if filled else None), ["white"]
    paper = (
        "grey" if style == "small" and "grey" in papers and rng.random() < 0.6 else papers[rng.integers(len(papers))]
    )
    scale = {"small": rng.uniform(0.07, 0.16), "large": rng.uniform(0.38, 0.49)}.get(style, rng.uniform(0.18, 0.45))
    count = 1 if style in ("large",) or rng.random() < 0.8 else int(rng.integers(2, 4))
    if count > 1:
        scale = min(scale, 0.22)
    stroke = rng.uniform(0.004, 0.05) if rng.random() < 0.8 else rng.uniform(0.05, 0.09)
    wobble = (
        rng.uniform(0.03, 0.09)
        if style == "hand-drawn"
        else (rng.uniform(0, 0.05) if style == "photo" else (rng.uniform(0, 0.02) if rng.random() < 0.3 else 0.0))
    )
    canvas = int(rng.choice([96, 128, 200, 256, 300, 400, 512]))
    if colour is not None:  # decided after every draw above, so looks without a colour are the stream's own
        ink, fill = (ink if ink != fill else colour, colour) if filled else (colour, None)
        if _too_close(colour, paper) or _too_close(ink, paper):
            paper = "white" if sum(INKS[colour]) < 600 else "grey"
    return Look(style, filled, ink, fill, paper, canvas, float(stroke), float(scale), float(wobble), count)


def _too_close(ink: str, paper: str) -> bool:
    return float(np.linalg.norm(np.array(INKS[ink]) - np.array(PAPERS[paper]))) < 120


def to_model_size(image: Image.Image, size: int = SIZE) -> Image.Image:
    """Down to the model's input as open_clip's Resize + CenterCrop does it (bicubic, antialiased)."""
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def caption(shape: str, look: Look, rng: np.random.Generator, colour_word: bool | None = None) -> str:
    """A caption in the world's words plus the drawing's own: 'an outline of a blue star on white paper'. The
    colour is named 85 % of the time, or always / never with `colour_word` True / False."""
    colour = look.fill if look.filled and look.fill else look.ink
    noun = shape if look.count == 1 else {"cross": "crosses"}.get(shape, shape + "s")
    count = {1: "a", 2: "two", 3: "three"}[look.count]
    lead = STYLE_WORDS[look.style][rng.integers(len(STYLE_WORDS[look.style]))]
    chance = rng.random()  # drawn either way: the stream's captions do not depend on `colour_word`
    named = chance < 0.85 if colour_word is None else colour_word
    thing = f"{count} {colour} {noun}" if named else f"{count} {noun}"
    if lead.endswith("hand-drawn"):
        thing = (f"{colour} {noun}" if colour_word is not False else noun) if look.count == 1 else thing
        text = f"{lead} {thing}" if look.count == 1 else f"hand-drawn {thing}"
    else:
        text = f"{lead} {thing}"
    if look.filled is False and look.style not in ("outline",) and rng.random() < 0.5:
        text += ", outline only"
    if rng.random() < 0.5:
        text += f" on {look.paper} paper" if look.paper != "grey" else " on a grey background"
    return (text[0].upper() + text[1:]).replace(" a a", " an a").replace(" a o", " an o")


def render_look(shape: str, look: Look, rng: np.random.Generator,
                colour_word: bool | None = None) -> tuple[Image.Image, str]:
    """`shape` drawn with `look`, at the model's 64 px, and its caption."""
    full, count = draw(shape, look, rng)
    look = replace(look, count=count)  # the caption counts what was drawn
    return to_model_size(full), caption(shape, look, rng, colour_word)


def render(index: int, seed: int, style: str | None = None, shape: str | None = None):
    """Drawing `index` of world `seed`: (64 px picture, caption, shape, look), a pure function of its arguments."""
    rng = np.random.default_rng([seed, index, 31])
    shape = shape or CLASS_NAMES[rng.integers(len(CLASS_NAMES))]
    look = random_look(rng, style)
    picture, text = render_look(shape, look, rng)
    return picture, text, shape, look


def sample(n: int, seed: int) -> list[tuple[Image.Image, str, str]]:
    """n drawings in every style, at 64 px, with the shape and the colour each is drawn in (its fill, or its line)."""
    out = []
    for i in range(n):
        picture, _, shape, look = render(i, seed)
        out.append((picture, shape, look.fill if look.filled and look.fill else look.ink))
    return out
