"""`shapes[:N]`: a seeded procedural world of 64x64 pictures of 10 shape classes with varied captions.

Why: a real image-text dataset with no download, small enough for the tiny CLIP on a laptop CPU, yet
not trivial: colours, sizes, positions, counts, textured backgrounds, pixel noise and distractor
shapes vary within a class, and captions come from many templates with synonyms, some naming the
class only indirectly, so text retrieval is not string matching. Item i is drawn from its own RNG
(`default_rng([seed, i])`), so any item can be regenerated alone and the set is identical everywhere.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .split import Dataset, DataError, IngestReport, Split

DEFAULT_ITEMS = 3000  # ~300 per class: enough for stable mAP, renders in a few seconds
SIZE = 64  # output pixels; small because the tiny CLIP runs on CPU
SS = 2  # drawn at 2x and box-reduced: anti-aliased edges at the cost of a 128px canvas
SEED = 20240601  # the data is fixed; training seeds vary separately
TRAIN_FRACTION, VAL_FRACTION = 0.7, 0.1  # the rest is test
INDIRECT_RATE = 0.15  # share of captions that name the class only by description
CLASS_NAMES = ["star", "heart", "circle", "square", "triangle", "cross", "crescent", "hexagon", "ring", "arrow"]
NUM_CLASSES = len(CLASS_NAMES)
MIN_ITEMS = 10 * NUM_CLASSES  # the val split must hold at least one whole block of 10 classes

# (singular, plural) names per class; the first is the canonical one used for distractors
SYNONYMS = {
    "star": [("star", "stars"), ("five-pointed star", "five-pointed stars"), ("starburst shape", "starburst shapes")],
    "heart": [("heart", "hearts"), ("love heart", "love hearts"), ("heart symbol", "heart symbols")],
    "circle": [("circle", "circles"), ("disc", "discs"), ("round dot", "round dots")],
    "square": [("square", "squares"), ("box", "boxes"), ("block", "blocks")],
    "triangle": [("triangle", "triangles"), ("three-sided shape", "three-sided shapes")],
    "cross": [("cross", "crosses"), ("plus sign", "plus signs"), ("plus shape", "plus shapes")],
    "crescent": [("crescent", "crescents"), ("crescent moon", "crescent moons"), ("moon shape", "moon shapes")],
    "hexagon": [("hexagon", "hexagons"), ("hex shape", "hex shapes")],
    "ring": [("ring", "rings"), ("hoop", "hoops"), ("donut shape", "donut shapes")],
    "arrow": [("arrow", "arrows"), ("pointer", "pointers"), ("arrow sign", "arrow signs")],
}
INDIRECT = {  # descriptions that never use a class name or synonym
    "star": [("shape with five points", "shapes with five points")],
    "heart": [("symbol of love", "symbols of love")],
    "circle": [("filled round shape", "filled round shapes")],
    "square": [("shape with four equal sides", "shapes with four equal sides")],
    "triangle": [("shape with three corners", "shapes with three corners")],
    "cross": [("shape with four arms at right angles", "shapes with four arms at right angles")],
    "crescent": [("sliver of a moon", "slivers of a moon")],
    "hexagon": [("six-sided figure", "six-sided figures")],
    "ring": [("hollow round outline", "hollow round outlines")],
    "arrow": [("shape pointing one way", "shapes pointing one way")],
}
COLOURS = {"red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 215, 30), "green": (40, 160, 60),
           "blue": (40, 90, 220), "purple": (140, 60, 190), "pink": (245, 120, 185), "brown": (125, 75, 35),
           "black": (20, 20, 20), "white": (250, 250, 250)}
BACKGROUNDS = {"white": (240, 240, 240), "grey": (150, 150, 150), "cream": (238, 228, 196),
               "pale blue": (185, 210, 240), "pale green": (195, 230, 195), "dark grey": (70, 70, 70),
               "navy": (25, 35, 85), "black": (10, 10, 10)}
TEXTURES = {"plain": ["plain", "flat"], "gradient": ["gradient", "shaded"], "stripes": ["striped", "stripy"],
            "dots": ["dotted", "polka-dot"], "noise": ["mottled", "noisy"]}
DESCRIPTION = ("A synthetic world of 64x64 pictures, each of one to three shapes of one class (star, heart, circle, "
               "square, triangle, cross, crescent, hexagon, ring, arrow) in one colour on a textured background, "
               "sometimes with small shapes of other classes beside them, and a generated caption that names the "
               "class, its colour, size, count and position (15% only describe the shape). Nothing else exists "
               "in this world: no animals, objects or photographs.")
MIN_CONTRAST = 150  # RGB distance between an object and its background: below this shapes vanish


def _regular(n: int, r_inner: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    """n vertices (2n when r_inner < 1: a star) on the unit circle, first vertex pointing up."""
    k = n if r_inner == 1.0 else 2 * n
    a = phase + np.arange(k) * 2 * math.pi / k
    r = np.where(np.arange(k) % 2 == 0, 1.0, r_inner) if r_inner != 1.0 else np.ones(k)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], 1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.abs(pts).max()


def _crescent() -> np.ndarray:
    # outer unit circle minus a circle of radius 0.8 centred at (0.45, 0): they meet at x = 0.625
    y0 = math.sqrt(1 - 0.625 ** 2)
    a0, b0 = math.atan2(y0, 0.625), math.atan2(y0, 0.625 - 0.45)
    outer = np.linspace(a0, 2 * math.pi - a0, 28)
    inner = np.linspace(2 * math.pi - b0, b0, 20)
    pts = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], 1),
                          np.stack([0.45 + 0.8 * np.cos(inner), 0.8 * np.sin(inner)], 1)])
    pts = pts + [0.2, 0]  # centre the visible mass
    return pts / np.linalg.norm(pts, axis=1).max()


_PLUS = np.array([(-.3, -1), (.3, -1), (.3, -.3), (1, -.3), (1, .3), (.3, .3), (.3, 1), (-.3, 1),
                  (-.3, .3), (-1, .3), (-1, -.3), (-.3, -.3)])
_ARROW = np.array([(-1, -.22), (.15, -.22), (.15, -.6), (1, 0), (.15, .6), (.15, .22), (-1, .22)])
# unit polygons fitting the unit circle; None = drawn as an ellipse. Max rotation keeps hearts upright-ish.
POLYGONS = {"star": (_regular(5, 0.42), 2 * math.pi), "heart": (_heart(), 0.6), "circle": (None, 0),
            "square": (_regular(4), math.pi / 2), "triangle": (_regular(3), 2 * math.pi),
            "cross": (_PLUS / 1.04, math.pi / 2), "crescent": (_crescent(), 2 * math.pi),
            "hexagon": (_regular(6), math.pi / 3), "ring": (None, 0), "arrow": (_ARROW, 2 * math.pi)}


def _draw_shape(draw: ImageDraw.ImageDraw, cls: str, cx: float, cy: float, r: float, colour, rng) -> None:
    """Draw one instance at 64px coordinates (scaled by SS); rotation is applied to the polygon."""
    cx, cy, r = cx * SS, cy * SS, r * SS
    if cls in ("circle", "ring"):
        box = [cx - r, cy - r, cx + r, cy + r]
        draw.ellipse(box, fill=colour if cls == "circle" else None,
                     outline=colour if cls == "ring" else None, width=max(2, int(0.32 * r)))
        return
    unit, max_turn = POLYGONS[cls]
    theta = rng.uniform(-max_turn, max_turn) if max_turn < 1 else rng.uniform(0, max_turn)
    c, s = math.cos(theta), math.sin(theta)
    pts = unit @ np.array([[c, s], [-s, c]]) * r + (cx, cy)
    draw.polygon([tuple(p) for p in pts.tolist()], fill=colour)


def _background(rng: np.random.Generator, style: dict | None = None) -> tuple[np.ndarray, str, str]:
    """[SIZE, SIZE, 3] float background, its colour name and texture (`style` may fix either)."""
    name = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    texture = list(TEXTURES)[rng.integers(len(TEXTURES))]
    if style:  # drawn first and then replaced, so the unstyled world's random stream is unchanged
        name, texture = style.get("bg", name), style.get("texture", texture)
    base = np.array(BACKGROUNDS[name], dtype=np.float32)
    shade = base + (-35 if base.mean() > 128 else 35)  # the pattern's second tone, subtle on purpose
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    if texture == "plain":
        mix = np.zeros((SIZE, SIZE), np.float32)
    elif texture == "gradient":
        mix = (along - along.min()) / (along.max() - along.min())
    elif texture == "stripes":
        mix = ((along // rng.integers(4, 9)) % 2).astype(np.float32)
    elif texture == "dots":
        p = rng.integers(7, 12)
        mix = (((xx % p) - p / 2) ** 2 + ((yy % p) - p / 2) ** 2 < (p / 4) ** 2).astype(np.float32)
    else:  # low-frequency blotches: 8x8 noise upsampled smoothly
        coarse = Image.fromarray((rng.uniform(0, 255, (8, 8))).astype(np.uint8))
        mix = np.asarray(coarse.resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 255
    return base + mix[..., None] * (shade - base), name, texture


def _colour_against(rng: np.random.Generator, bg_name: str, avoid: str | None = None) -> str:
    bg = np.array(BACKGROUNDS[bg_name])
    ok = [c for c, v in COLOURS.items() if c != avoid and np.linalg.norm(np.array(v) - bg) >= MIN_CONTRAST]
    return ok[rng.integers(len(ok))]


def _place(rng, radii: list[float], taken: list[tuple]) -> list[tuple]:
    """Non-overlapping (cx, cy, r) inside the canvas; an object that finds no room is shrunk, then dropped."""
    out = []
    for r in radii:
        for attempt in range(40):
            rr = r * (1 - attempt / 60)
            cx, cy = rng.uniform(rr + 1, SIZE - 1 - rr, size=2)
            if all(math.hypot(cx - x, cy - y) > rr + q + 1.5 for x, y, q in taken + out):
                out.append((cx, cy, rr))
                break
    return out


def _scene(i: int, label: int, seed: int, style: dict | None = None) -> tuple[Image.Image, dict]:
    """Render item i; return the image and the facts its caption may mention.

    `style` (pre-training only) fixes some non-shape facts: `bg`, `texture`, `count`, `size`, `colour`, and
    `at` (x, y), the centre of a single object.
    """
    rng = np.random.default_rng([seed, i])
    style = style or {}
    cls = CLASS_NAMES[label]
    bg, bg_name, texture = _background(rng, style)
    count = int(rng.choice([1, 1, 2, 3]))  # single objects are commonest, as in photos
    count = style.get("count", count)
    size = ["small", "medium", "large"][rng.integers(3 if count == 1 else 2)]
    size = style.get("size", size)
    r = {"small": (7, 10), "medium": (11, 15), "large": (17, 23)}[size]
    radius = rng.uniform(*r)
    mains = _place(rng, [radius] * count, [])
    if "at" in style and count == 1:  # one object at the group's point (kept inside the canvas)
        mains = [(*(float(np.clip(v, radius + 1, SIZE - 1 - radius)) for v in style["at"]), radius)]
    others = [c for c in CLASS_NAMES if c != cls]
    n_distract = int(rng.integers(0, 3))
    extra = _place(rng, [rng.uniform(4.5, 6.5) for _ in range(n_distract)], mains)
    colour = _colour_against(rng, bg_name)
    colour = style.get("colour", colour)
    canvas = Image.fromarray(bg.astype(np.uint8)).resize((SIZE * SS, SIZE * SS), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for cx, cy, rr in mains:
        _draw_shape(draw, cls, cx, cy, rr, COLOURS[colour], rng)
    distractors = []
    for cx, cy, rr in extra:
        d_cls, d_col = others[rng.integers(len(others))], _colour_against(rng, bg_name)
        _draw_shape(draw, d_cls, cx, cy, rr, COLOURS[d_col], rng)
        distractors.append((d_col, d_cls))
    pixels = np.asarray(canvas.reduce(SS), np.float32)
    pixels += rng.normal(0, rng.uniform(0, 10), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    facts = dict(cls=cls, count=len(mains), size=size, colour=colour, bg=bg_name, texture=texture,
                 where=_where(mains), distractors=distractors)
    return image, facts


def _where(mains: list[tuple]) -> str:
    if len(mains) != 1:
        return "scattered"
    cx, cy, _ = mains[0]
    col, row = min(2, int(cx * 3 / SIZE)), min(2, int(cy * 3 / SIZE))
    return [["top left", "top", "top right"], ["left", "centre", "right"],
            ["bottom left", "bottom", "bottom right"]][row][col]


POSITION_PHRASES = {"top left": "in the top left corner", "top": "at the top", "top right": "in the top right corner",
                    "left": "on the left", "centre": "in the centre", "right": "on the right",
                    "bottom left": "in the bottom left corner", "bottom": "at the bottom",
                    "bottom right": "in the bottom right corner", "scattered": "scattered around the picture"}
SIZE_WORDS = {"small": ["small", "little"], "medium": ["medium-sized", "mid-sized"], "large": ["large", "big"]}
TEMPLATES = [
    "{obj} {pos} on {bg}{extra}.", "A picture of {obj}{extra}.", "{obj} on {bg}.", "There {be} {obj} {pos}{extra}.",
    "{bg} with {obj} {pos}.", "An image showing {obj}{extra}, {pos}.", "{bare} in {colour}, {pos}.",
    "Drawing of {obj} against {bg}.", "{pos}: {obj}{extra}.", "Simple icon of {obj} on {bg}.",
    "You can see {obj} {pos}.", "Look: {obj}{extra}!", "{bare}, coloured {colour}{extra}, on {bg}.",
    "Synthetic scene with {obj} {pos}{extra}.", "{texture} backdrop and {obj}.", "Here {be} {obj} {pos}.",
    "{obj} {be} drawn {pos} on {bg}{extra}.", "A {colour} colour scheme: {bare} on {bg}.",
]


def _caption(f: dict, rng: np.random.Generator) -> str:
    """One caption of the scene facts `f`: a random template, synonyms and optional attributes."""
    table = INDIRECT if rng.random() < INDIRECT_RATE else SYNONYMS
    names = table[f["cls"]][rng.integers(len(table[f["cls"]]))]
    n, noun = f["count"], names[0 if f["count"] == 1 else 1]
    size = SIZE_WORDS[f["size"]][rng.integers(2)] + " " if rng.random() < 0.5 else ""
    count = {1: "", 2: "two ", 3: "three "}[n]
    bare = _article(count + size + noun) if n == 1 else count + size + noun
    obj = _article(f"{count}{size}{f['colour']} {noun}") if n == 1 else f"{count}{size}{f['colour']} {noun}"
    tex = TEXTURES[f["texture"]][rng.integers(2)]
    bg_colour = f["bg"] + " " if rng.random() < 0.6 else ""
    extra = ""
    if f["distractors"] and rng.random() < 0.5:
        d_col, d_cls = f["distractors"][0]
        extra = f" and a small {d_col} {d_cls}"
    text = TEMPLATES[rng.integers(len(TEMPLATES))].format(
        obj=obj, bare=bare, colour=f["colour"], pos=POSITION_PHRASES[f["where"]], be="is" if n == 1 else "are",
        bg=_article(f"{bg_colour}{tex} background"), texture=_article(f"{bg_colour}{tex}"), extra=extra)
    return text[0].upper() + text[1:]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _label(i: int, seed: int) -> int:
    """Each block of 10 consecutive items holds every class once, in a seeded order: balanced splits."""
    order = np.random.default_rng([seed, 1 << 30, i // NUM_CLASSES]).permutation(NUM_CLASSES)
    return int(order[i % NUM_CLASSES])


def render_item(i: int, seed: int = SEED) -> tuple[Image.Image, str, int]:
    """Item i alone: (64x64 RGB image, caption, label), identical to item i of `read`."""
    label = _label(i, seed)
    image, facts = _scene(i, label, seed)
    caption = _caption(facts, np.random.default_rng([seed, i, 1]))  # own stream: captions vary independently
    return image, caption, label


def make_shapes(n: int = DEFAULT_ITEMS, seed: int = SEED) -> Split:
    items = [render_item(i, seed) for i in range(n)]
    return Split(ids=[f"shapes-{i:05d}" for i in range(n)], labels=np.array([it[2] for it in items]),
                 class_names=list(CLASS_NAMES), images=[it[0] for it in items], texts=[it[1] for it in items])


def parse_arg(arg: str) -> tuple[int, int]:
    """`N` or `N,seed=S` -> (N, S). A second seed draws a disjoint sample of the same world, e.g. to keep
    the demo gallery out of the images the tiny CLIP was pre-trained on."""
    count, _, rest = arg.partition(",")
    try:
        n = int(count) if count else DEFAULT_ITEMS
        if rest and not rest.startswith("seed="):
            raise ValueError
        seed = int(rest[len("seed="):]) if rest else SEED
    except ValueError:
        raise DataError(f"shapes takes an item count and optionally a seed: 'shapes:N' or 'shapes:N,seed=S' "
                        f"(e.g. 'shapes:3000,seed=1'); got '{arg}'") from None
    if n < MIN_ITEMS:
        raise DataError(f"shapes:N needs N >= {MIN_ITEMS} (every class in every split); got {n}")
    return n, seed


def read(arg: str, report: IngestReport) -> Dataset:
    """`shapes[:N[,seed=S]]` (N items in all: 70% train, 10% val, 20% test, by index in whole class blocks)."""
    n, seed = parse_arg(arg)
    data = make_shapes(n, seed)
    if seed != SEED:  # ids name the world too, so items of two worlds never share an id
        data.ids = [f"shapes{seed}-{i:05d}" for i in range(n)]
    # boundaries on multiples of NUM_CLASSES, so every split holds whole blocks of all classes
    n_train = NUM_CLASSES * int(TRAIN_FRACTION * n / NUM_CLASSES)
    n_val = NUM_CLASSES * max(1, int(VAL_FRACTION * n / NUM_CLASSES))
    spec = f"shapes:{n}" if seed == SEED else f"shapes:{n},seed={seed}"
    return Dataset(spec=spec, train=data.subset(np.arange(n_train)),
                   val=data.subset(np.arange(n_train, n_train + n_val)),
                   test=data.subset(np.arange(n_train + n_val, n)), description=DESCRIPTION)


def sample_grid(n: int = 12, seed: int = SEED, path: str | Path | None = None, cols: int = 4) -> Image.Image:
    """n samples shown at 2x with their wrapped captions underneath; saved to `path` when given."""
    cell_w, img, line_h, lines = 200, 2 * SIZE, 11, 5
    cell_h = img + 6 + lines * line_h
    rows = -(-n // cols)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        image, caption, label = render_item(i, seed)
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        grid.paste(image.resize((img, img), Image.NEAREST), (x + (cell_w - img) // 2, y))
        text = f"[{CLASS_NAMES[label]}] {caption}"
        for k, line in enumerate(textwrap.wrap(text, 32)[:lines]):
            draw.text((x + 4, y + img + 3 + k * line_h), line, fill="black")
    if path is not None:
        grid.save(path)
    return grid
