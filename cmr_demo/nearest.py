"""A point placed on a 2-D map from its nearest neighbours in the space the map was made of: the similarity-weighted
mean of their coordinates. Below both the build (cmr_demo.bundle.maps places a large gallery's points beyond the
ones UMAP was fitted on) and serving (cmr_demo.serve.placement places a query and a lab run's points): one
placement for both, numpy only."""
from __future__ import annotations

import numpy as np

PLACE_K = 10  # neighbours used to place a query; more smooths, fewer follows the closest items


def place(query: np.ndarray, gallery: np.ndarray, coords: np.ndarray, k: int = PLACE_K,
          sharpness: float = 20.0) -> np.ndarray:
    """[Q, D] queries -> [Q, 2]: softmax(similarity * sharpness)-weighted mean of the k nearest gallery points.

    A query that equals a gallery item lands (almost) on that item; the weights follow similarity, so
    a query between two clusters lands between them.
    """
    query = np.atleast_2d(np.asarray(query, dtype=np.float32))
    sims = query @ np.asarray(gallery, dtype=np.float32).T  # [Q, M]
    return weighted_places(sims, coords, min(k, sims.shape[1]), sharpness)


def weighted_places(sims: np.ndarray, coords: np.ndarray, k: int, sharpness: float) -> np.ndarray:
    """[Q, M] similarities -> [Q, 2]: softmax(similarity * sharpness)-weighted mean of the k most similar rows'
    coordinates."""
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [Q, k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    weights = np.exp(sharpness * (top_sims - top_sims.max(1, keepdims=True)))
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("qk,qkc->qc", weights, coords[top]).astype(np.float32)
