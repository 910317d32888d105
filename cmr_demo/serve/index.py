"""Nearest-neighbour search over gallery embeddings: one FAISS index per objective and modality.

Why FAISS and why a choice by size: embeddings are unit-norm, so inner product is cosine similarity
and an exact flat scan is both the reference and, for small galleries, the fastest option. Past
`EXACT_MAX_ITEMS` a single query's scan costs more than an HNSW graph walk at near-perfect recall;
the threshold comes from `bench/search.py` (bench/results/search.md, search_crossover.md), not a guess.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The settings below come from bench/search.py (its figures in bench/results/search.md and search_crossover.md).
# A flat scan is exact, builds at once and grows linearly with the gallery; an HNSW walk costs about the same
# from 10k to 1M items but takes seconds to build per index (one per objective and modality).
EXACT_MAX_ITEMS = 15_000  # the largest measured size at d=256 where flat is still as fast as HNSW; above it, HNSW
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # search breadth: recall@10 >= 0.97 for queries offset from the gallery (cross-modal) at 1M
SEARCH_THREADS = 1  # one query per call: 2 FAISS threads made a flat scan 2-3x slower


@functools.cache
def _faiss():
    import faiss  # imported on first use: the app pays for it once, tests of other modules never
    faiss.omp_set_num_threads(SEARCH_THREADS)  # concurrent requests already use the other cores
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


class BundleIndexes:
    """The index stage of serving: one index per (objective, modality) over a bundle's gallery embeddings.

    Exact flat indexes are built at once (a few ms each); where the size calls for HNSW, its graphs are built
    in a background thread and swapped in one assignment at a time, so start-up never waits for them and a
    search sees either the exact index or the finished graph (`exact` in each answer says which). Copies made
    for lab runs (`with_objective`) share the bundle's own indexes, graphs included once built."""

    def __init__(self, galleries: dict[tuple[str, str], np.ndarray], background: bool = True):
        self._galleries = galleries
        self._own = {key: GalleryIndex.build(vectors, "flat") for key, vectors in galleries.items()}  # swapped in place
        self._extra: dict[tuple[str, str], GalleryIndex] = {}  # a lab run's, in this copy only
        sizes = {len(v) for v in galleries.values()}
        self._state = {"building": background and bool(sizes) and choose_kind(max(sizes)) != "flat"}  # shared
        if self._state["building"]:
            import threading
            threading.Thread(target=self._build_graphs, name="hnsw-build", daemon=True).start()

    def _build_graphs(self) -> None:
        try:
            for key in list(self._own):
                self._own[key] = GalleryIndex.build(self._galleries[key])  # one assignment: a search sees old or new
        finally:
            self._state["building"] = False

    def describe(self) -> dict:
        """What searches use now: {"kinds": ["flat"] or ["hnsw"] (both while graphs swap in), "building": bool}."""
        return {"kinds": sorted({i.kind for i in self.values()}), "building": self._state["building"]}

    def __getitem__(self, key: tuple[str, str]) -> GalleryIndex:
        return self._extra[key] if key in self._extra else self._own[key]

    def values(self) -> list[GalleryIndex]:
        return [*self._own.values(), *self._extra.values()]

    def with_objective(self, name: str, galleries: dict[str, np.ndarray]) -> "BundleIndexes":
        """These indexes plus one objective's (a lab run): a new object sharing the bundle's own; this one unchanged."""
        other = copy.copy(self)
        other._extra = {**self._extra, **{(name, m): GalleryIndex.build(v) for m, v in galleries.items()}}
        return other
