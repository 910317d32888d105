"""2-D maps of the common space: fitted once at bundle time, aligned across objectives, queried without numba.

Why this split: umap-learn pays 25-30 s of numba compilation on its first fit in every process, so
the app must never fit. The builder fits one UMAP per objective on both modalities at once (so the
modality gap is visible), aligns every map to a reference by orthogonal Procrustes (rotation,
reflection, uniform scale: shapes are kept, panels become comparable), and the app places a live
query at the similarity-weighted mean of its nearest gallery points' coordinates.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes

UMAP_NEIGHBORS = 15  # umap-learn's default: local structure without over-fragmenting small classes
UMAP_MIN_DIST = 0.1
PLACE_K = 10  # neighbours used to place a query; more smooths, fewer follows the closest items


FIT_AT_MOST = 20_000  # points UMAP is fitted on; a larger gallery's other points are placed by UMAP's transform


def fit_map(embeddings: np.ndarray, seed: int = 0, fit_at_most: int = FIT_AT_MOST) -> np.ndarray:
    """[M, D] unit-norm embeddings -> [M, 2] UMAP coordinates (cosine metric, fixed seed), centred, unit RMS.

    Up to `fit_at_most` points UMAP is fitted on all of them. Beyond, it is fitted on a seeded sample and
    the other points are placed into that map by `transform` (their nearest fitted neighbours, then a few
    optimisation epochs with the fitted points fixed): a 100,000-point map costs a 20,000-point fit."""
    import umap  # heavy (numba); imported only when a map is fitted

    emb = np.asarray(embeddings, dtype=np.float32)
    sample = None if len(emb) <= fit_at_most else np.sort(np.random.default_rng(seed).choice(len(emb), fit_at_most,
                                                                                              replace=False))
    fitted = emb if sample is None else emb[sample]
    n_neighbors = max(2, min(UMAP_NEIGHBORS, len(fitted) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=UMAP_MIN_DIST, metric="cosine", random_state=seed,
                        n_jobs=1, init="spectral" if len(fitted) > n_neighbors + 2 else "random")
    coords = reducer.fit_transform(fitted)
    if sample is not None:
        rest = np.setdiff1d(np.arange(len(emb)), sample)
        placed = np.empty((len(emb), 2), np.float32)
        placed[sample], placed[rest] = coords, reducer.transform(emb[rest])
        coords = placed
    return _normalise(coords)


def _normalise(coords: np.ndarray) -> np.ndarray:
    coords = coords - coords.mean(0)
    return (coords / max(float(np.sqrt((coords ** 2).sum(1).mean())), 1e-12)).astype(np.float32)


def align_to(coords: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate/reflect `coords` (same rows as `reference`, both normalised) onto the reference."""
    rotation, _ = orthogonal_procrustes(coords, reference)
    return (coords @ rotation).astype(np.float32)


def place(query: np.ndarray, gallery: np.ndarray, coords: np.ndarray, k: int = PLACE_K,
          sharpness: float = 20.0) -> np.ndarray:
    """[Q, D] queries -> [Q, 2]: softmax(similarity * sharpness)-weighted mean of the k nearest gallery points.

    A query that equals a gallery item lands (almost) on that item; the weights follow similarity, so
    a query between two clusters lands between them.
    """
    query = np.atleast_2d(np.asarray(query, dtype=np.float32))
    sims = query @ np.asarray(gallery, dtype=np.float32).T  # [Q, M]
    return _weighted_places(sims, coords, min(k, sims.shape[1]), sharpness)


def _weighted_places(sims: np.ndarray, coords: np.ndarray, k: int, sharpness: float) -> np.ndarray:
    """[Q, M] similarities -> [Q, 2]: softmax(similarity * sharpness)-weighted mean of the k most similar rows'
    coordinates."""
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [Q, k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    weights = np.exp(sharpness * (top_sims - top_sims.max(1, keepdims=True)))
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("qk,qkc->qc", weights, coords[top]).astype(np.float32)


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
        out[start:start + len(sims)] = _weighted_places(sims, coords, k, sharpness)
    return out
