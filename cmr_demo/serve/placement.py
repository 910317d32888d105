"""A query on an objective's 2-D map: the gallery's stored points, and the query placed among them from its
nearest gallery neighbours in the common space (no UMAP at serving time), with its top-k to highlight."""
from __future__ import annotations

import numpy as np

from cmr_demo.bundle.load import ObjectiveView
from cmr_demo.bundle.maps import place


def map_points(view: ObjectiveView, labels: np.ndarray, class_names: list[str]) -> dict:
    """Plain data for one objective's map without a query."""
    return {"objective": view.name, "image_xy": view.image_xy, "text_xy": view.text_xy, "labels": labels,
            "class_names": class_names, "query": None}


def place_query(view: ObjectiveView, emb: np.ndarray) -> np.ndarray:
    """[2] map position of a common-space embedding, among both modalities of the gallery."""
    both = np.concatenate([view.image_emb, view.text_emb])
    return place(emb, both, np.concatenate([view.image_xy, view.text_xy]))[0]
