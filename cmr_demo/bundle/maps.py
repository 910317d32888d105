"""2-D maps of the common space, fitted once at bundle time and aligned across objectives (build time only).

Why at build time: umap-learn pays 25-30 s of numba compilation on its first fit in every process, so the app
must never fit. The builder fits one UMAP per objective on both modalities at once (so the modality gap is
visible) and aligns every map to a reference by orthogonal Procrustes (rotation, reflection, uniform scale:
shapes are kept, panels become comparable). The app places a live query without fitting anything
(`cmr_demo.serve.placement`); this module's scipy and umap are never imported by serving.
"""
from __future__ import annotations

import numpy as np

from cmr_demo.sampling import seeded_rows

UMAP_NEIGHBORS = 15  # umap-learn's default: local structure without over-fragmenting small classes
UMAP_MIN_DIST = 0.1


FIT_AT_MOST = 20_000  # points UMAP is fitted on; a larger gallery's other points are placed among them
PLACE_BLOCK = 4096  # rows placed at once: [4096, 20,000] similarities, 330 MB in float32


def fit_map(embeddings: np.ndarray, seed: int = 0, fit_at_most: int = FIT_AT_MOST) -> np.ndarray:
    """[M, D] unit-norm embeddings -> [M, 2] UMAP coordinates (cosine metric, fixed seed), centred, unit RMS.

    Up to `fit_at_most` points UMAP is fitted on all of them. Beyond, it is fitted on a seeded sample and the
    other points are placed into that map as the app places a query (cmr_demo.nearest.place: the
    similarity-weighted mean of their nearest fitted points' coordinates): one matrix product per block of rows, on
    every core. UMAP's own `transform` (nearest neighbours, then optimisation epochs, on one core) made the maps
    of a 50,000-item bundle (two objectives, 100,000 points each) most of the build's 514 s "embeddings + maps"."""
    import umap  # heavy (numba); imported only when a map is fitted

    emb = np.asarray(embeddings, dtype=np.float32)
    sample = seeded_rows(len(emb), fit_at_most, seed)
    fitted = emb if sample is None else emb[sample]
    n_neighbors = max(2, min(UMAP_NEIGHBORS, len(fitted) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=UMAP_MIN_DIST, metric="cosine", random_state=seed,
                        n_jobs=1, init="spectral" if len(fitted) > n_neighbors + 2 else "random")
    coords = reducer.fit_transform(fitted)
    if sample is not None:
        from cmr_demo.nearest import place
        rest = np.setdiff1d(np.arange(len(emb)), sample)
        placed = np.empty((len(emb), 2), np.float32)
        placed[sample] = coords
        for start in range(0, len(rest), PLACE_BLOCK):
            rows = rest[start:start + PLACE_BLOCK]
            placed[rows] = place(emb[rows], fitted, coords)
        coords = placed
    return _normalise(coords)


def _normalise(coords: np.ndarray) -> np.ndarray:
    coords = coords - coords.mean(0)
    return (coords / max(float(np.sqrt((coords ** 2).sum(1).mean())), 1e-12)).astype(np.float32)


def align_to(coords: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate/reflect `coords` (same rows as `reference`, both normalised) onto the reference."""
    from scipy.linalg import orthogonal_procrustes
    rotation, _ = orthogonal_procrustes(coords, reference)
    return (coords @ rotation).astype(np.float32)
