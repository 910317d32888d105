"""docs/shapes_grid.png: twelve samples of the shapes world with their captions.

    python bench/shapes_grid.py [--out docs/shapes_grid.png]
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.data import shapes  # noqa: E402


def sample_grid(n: int = 12, seed: int = shapes.SEED, path: str | Path | None = None, cols: int = 4) -> Image.Image:
    """n samples shown at 2x with their wrapped captions underneath; saved to `path` when given."""
    cell_w, img, line_h, lines = 200, 2 * shapes.SIZE, 11, 5
    cell_h = img + 6 + lines * line_h
    rows = -(-n // cols)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        image, caption, label = shapes.render_item(i, seed)
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        grid.paste(image.resize((img, img), Image.NEAREST), (x + (cell_w - img) // 2, y))
        text = f"[{shapes.CLASS_NAMES[label]}] {caption}"
        for k, line in enumerate(textwrap.wrap(text, 32)[:lines]):
            draw.text((x + 4, y + img + 3 + k * line_h), line, fill="black")
    if path is not None:
        grid.save(path)
    return grid


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "shapes_grid.png"))
    sample_grid(path=p.parse_args().out)
