"""The shapes world's geometry and palette: its ten classes, their unit polygons, its colours and picture size.

Why a module of its own: the world's pictures (`cmr_demo.data.shapes`) and the drawings visitors make of it
(`cmr_demo.data.drawings`) draw the same shapes in the same colours; both read them here, and the world's reader
can use the drawings without an import circle.
"""
from __future__ import annotations

import math

import numpy as np

SIZE = 64  # output pixels; small because the tiny CLIP runs on CPU
CLASS_NAMES = ["star", "heart", "circle", "square", "triangle", "cross", "crescent", "hexagon", "ring", "arrow"]
COLOURS = {"red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 215, 30), "green": (40, 160, 60),
           "blue": (40, 90, 220), "purple": (140, 60, 190), "pink": (245, 120, 185), "brown": (125, 75, 35),
           "black": (20, 20, 20), "white": (250, 250, 250)}


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
