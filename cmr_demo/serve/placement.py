"""A query on an objective's 2-D map: the gallery's stored points, and the query placed among them from its
nearest gallery neighbours in the common space (no UMAP at serving time: numpy only), with its top-k to highlight.
A lab run's points join the bundle's aligned maps the same way."""
from __future__ import annotations

import numpy as np

from cmr_demo.bundle.load import ObjectiveView
from cmr_demo.nearest import PLACE_K, place, weighted_places

__all__ = ["MAP_ITEMS", "PLACE_K", "map_points", "place", "place_points", "place_query", "sampled"]

MAP_ITEMS = 6000  # gallery items on a map (x 2 modalities) unless asked otherwise; beyond, a class-stratified sample


def map_points(view: ObjectiveView, labels: np.ndarray, class_names: list[str]) -> dict:
    """Plain data for one objective's map without a query."""
    return {"objective": view.name, "image_xy": view.image_xy, "text_xy": view.text_xy, "labels": labels,
            "class_names": class_names, "query": None}


def place_query(view: ObjectiveView, emb: np.ndarray) -> np.ndarray:
    """[2] map position of a common-space embedding, among both modalities of the gallery."""
    both = np.concatenate([view.image_emb, view.text_emb])
    return place(emb, both, np.concatenate([view.image_xy, view.text_xy]))[0]


def place_points(embeddings: np.ndarray, coords: np.ndarray, k: int = PLACE_K, sharpness: float = 20.0) -> np.ndarray:
    """[M, D] embeddings of the gallery under another model -> [M, 2] places on a map of the same M items: each
    point at the similarity-weighted mean of the map coordinates of its k nearest *other* items in its own
    space. How a lab run's points join the bundle's aligned maps without fitting UMAP."""
    emb = np.asarray(embeddings, dtype=np.float32)
    k = min(k, len(emb) - 1)
    out = np.empty((len(emb), 2), np.float32)
    for start in range(0, len(emb), 2048):  # rows in blocks: memory stays bounded for large galleries
        sims = emb[start:start + 2048] @ emb.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        out[start:start + len(sims)] = weighted_places(sims, coords, k, sharpness)
    return out


def sampled(labels: np.ndarray, keep: np.ndarray, max_items: int, seed: int = 0) -> np.ndarray:
    """`keep` thinned to about `max_items` items, every class keeping its share, the same rows for every call: a
    map of a large gallery stays a few MB and smooth, and still shows each class (at least one item each: with
    more classes than `max_items`, one per class)."""
    rows = np.flatnonzero(keep)
    if len(rows) <= max_items:
        return keep
    rng = np.random.default_rng(seed)
    out = np.zeros_like(keep)
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        take = max(1, max_items * len(members) // len(rows))  # floor: within max_items unless a class gets its one
        out[rng.choice(members, size=min(take, len(members)), replace=False)] = True
    return out
