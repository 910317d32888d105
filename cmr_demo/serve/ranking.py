"""Ranking a gallery for one query: the top k, and when the query's class is known, its metrics from the same
ranking.

Why one ranking: a query whose class is known is scored against the whole gallery anyway for its AP, so its
hits are that exact ranking's top k (nothing ranked twice); a query of unknown class asks the index for its top
k only (exact flat search, or HNSW on large galleries).
"""
from __future__ import annotations

import numpy as np
import torch

from cmr_demo.metrics import ap_from_relevance
from cmr_demo.serve.index import BundleIndexes
from cmr_demo.serve.schema import Query

P_AT = (1, 5, 10)  # precision cut-offs reported per query


def rank(indexes: BundleIndexes, gallery: np.ndarray, labels: np.ndarray, objective: str, target: str, query: Query,
         emb: np.ndarray, k: int) -> tuple[list[tuple[int, float]], dict | None, bool]:
    """([(row, score)] best first, up to k; metrics or None; exact?) for `query` embedded as `emb` [D] among the
    `target` rows `gallery` [N, D] of `objective`. The query's own item is never among its results."""
    itself = query.item if query.item is not None and target == query.modality else None
    if query.label is None:
        index = indexes[objective, target]
        scores, rows = index.search(emb[None], k + (itself is not None))
        pairs = [(int(r), float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0 and r != itself]
        return pairs[:k], None, index.exact
    scores = gallery @ emb.astype(np.float32)
    if itself is not None:
        scores[itself] = -np.inf
    order = np.argsort(-scores, kind="stable")
    if itself is not None:
        order = order[:-1]  # the item itself, ranked last above
    rel = (labels[order] == query.label).astype(np.float64)
    metrics = {"ap": float(ap_from_relevance(torch.from_numpy(rel[None]))[0]),
               "p_at_k": {str(n): float(rel[:n].mean()) for n in P_AT},
               "first_relevant_rank": int(np.argmax(rel)) + 1 if rel.any() else None}
    return [(int(r), float(scores[r])) for r in order[:k]], metrics, True
