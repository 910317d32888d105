"""Nearest-neighbour search over gallery embeddings: one FAISS index per objective and modality.

Why FAISS and why a choice by size: embeddings are unit-norm, so inner product is cosine similarity
and an exact flat scan is both the reference and, for small galleries, the fastest option. Past
`EXACT_MAX_ITEMS` a single query's scan costs more than an HNSW graph walk at near-perfect recall;
the threshold comes from `bench/search.py` (see README "Results"), not from a guess.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

EXACT_MAX_ITEMS = 200_000  # above this, HNSW (bench/search.py: flat p50 grows linearly with N)
HNSW_M = 32  # graph degree: recall@10 >= 0.95 at 1M x 256 with the efSearch below
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64  # search breadth: the recall/latency dial


def _faiss():
    import faiss  # imported on first use: the app pays for it once, tests of other modules never
    return faiss


def _flat(vectors: np.ndarray):
    index = _faiss().IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def _hnsw(vectors: np.ndarray):
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


# kind -> builder of a FAISS index over [N, D] float32 rows; `auto` picks by gallery size
INDEX_KINDS: dict[str, Callable[[np.ndarray], object]] = {"flat": _flat, "hnsw": _hnsw}


def choose_kind(n_items: int) -> str:
    return "flat" if n_items <= EXACT_MAX_ITEMS else "hnsw"


@dataclass
class GalleryIndex:
    """Top-k inner-product search over [N, D] unit-norm rows; `exact` says whether results are exact."""
    kind: str
    index: object
    size: int
    dim: int

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto") -> GalleryIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"an index needs a non-empty [N, D] array; got shape {vectors.shape}")
        kind = choose_kind(len(vectors)) if kind == "auto" else kind
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind '{kind}'; choose one of {sorted(INDEX_KINDS)} or 'auto'")
        return cls(kind, INDEX_KINDS[kind](vectors), len(vectors), vectors.shape[1])

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """[Q, D] queries -> (scores [Q, k'], item indices [Q, k']) best first, k' = min(k, N)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the index {self.dim}")
        k = max(1, min(int(k), self.size))
        if self.kind == "hnsw":  # the graph walk keeps efSearch candidates: fewer than k would return -1 ids
            self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        scores, ids = self.index.search(queries, k)
        return scores, ids.astype(np.int64)
