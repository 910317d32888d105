"""Ranking a gallery for one query: the top k, and when the query's class is known, its metrics from the same
ranking.

Why one ranking: a query whose class is known is scored against the whole gallery anyway for its AP, so its
hits are that exact ranking's top k (nothing ranked twice); a query of unknown class asks the index for its top
k only (exact flat search, or HNSW on large galleries).
"""
from __future__ import annotations

import numpy as np
import torch

from cmr_demo.metrics import expected_relevance
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
    scores = scores_of(gallery, emb)
    order, rel = ranked(scores, labels, query.label, itself)
    p_rel, ap = tie_aware(rel, scores[order])
    metrics = {"ap": ap, "p_at_k": {str(n): float(p_rel[:n].mean()) for n in P_AT},
               "first_relevant_rank": int(np.argmax(rel)) + 1 if rel.any() else None}
    return [(int(r), float(scores[r])) for r in order[:k]], metrics, True


def tie_aware(rel: np.ndarray, ordered_scores: np.ndarray) -> tuple[np.ndarray, float]:
    """(each position's expected relevance, AP) of one ranking, over the orders of exactly tied scores: the build's
    metric (`cmr_demo.metrics`), so a query's AP here is the one stored for it. Without a tie it is the usual AP,
    computed without torch: `served_ap` runs this for every gallery item of every objective at start-up."""
    if not np.any(ordered_scores[1:] == ordered_scores[:-1]):
        return rel, float((np.cumsum(rel) / np.arange(1, len(rel) + 1) * rel).sum() / max(rel.sum(), 1))
    p_rel, weighted = expected_relevance(torch.from_numpy(rel[None]), torch.from_numpy(ordered_scores[None]
                                                                                       .astype(np.float64)))
    return p_rel[0].numpy(), float(weighted[0].sum() / max(rel.sum(), 1))


def scores_of(gallery: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """[N] float32 scores of one query (dot products of the served embeddings, as stored: no re-normalisation).
    Always one matrix-vector product: a batched product rounds differently (1e-7), enough to swap near-ties
    and move an AP in its fourth decimal, so every caller scores one query at a time."""
    return gallery @ emb.astype(np.float32)


def ranked(scores: np.ndarray, labels: np.ndarray, label: int, itself: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(gallery rows best first, float64 relevance in that order) for one query's scores; the query's own item
    (same-modality search) left out. The stable sort: equal scores keep gallery order, in every caller."""
    scores = scores.copy()
    if itself is not None:
        scores[itself] = -np.inf
    order = np.argsort(-scores, kind="stable")
    if itself is not None:
        order = order[:-1]  # the item itself, ranked last above
    return order, (labels[order] == label).astype(np.float64)


SERVED_AP_MAX_ITEMS = 5_000  # ~2.5 s per objective and direction on 2 cores; beyond, the build's stored values


def served_ap(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N] AP of every gallery item as a cross-modal query (`queries` [N, D] of one modality, `gallery` [N, D] of
    the other, labels shared), by the very scoring, sort and AP `rank` uses for one query: what Compare shows for
    an item, for all of them. One query at a time, as `rank` does: the same arithmetic, and no batched torch op,
    whose two intra-op threads fought a request's for the cores (a first map answer took 2.3 s instead of 0.3)."""
    aps = np.zeros(len(queries))
    for q in range(len(queries)):
        scores = scores_of(gallery, queries[q])
        order, rel = ranked(scores, labels, labels[q], None)
        aps[q] = tie_aware(rel, scores[order])[1]
    return aps
