"""Ranking a gallery for one query: the top k, and when the query's class is known, its metrics from the same
ranking.

Why one ranking: a query whose class is known is scored against the whole gallery anyway for its AP, so its
hits are that exact ranking's top k (nothing ranked twice); a query of unknown class asks the index for its top
k only (exact flat search, or HNSW on large galleries).
"""
from __future__ import annotations

import numpy as np
import torch

from cmr_demo.metrics import expected_relevance, order_keys
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


SERVED_AP_MAX_ITEMS = 5_000  # beyond, the build's stored values
SERVED_AP_CHUNK = 256  # queries ranked together: [256, N] float64 arrays (N = 5,000: 10 MB each)


def served_ap(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N] AP of every gallery item as a cross-modal query (`queries` [N, D] of one modality, `gallery` [N, D] of
    the other, labels shared), by the very scoring, sort and AP `rank` uses for one query: what Compare shows for
    an item, for all of them. Each query's scores are its own matrix-vector product (as `rank` scores it: a batched
    product rounds differently and swaps near-ties); the stable sort and the tie-aware AP then run on a chunk of
    queries at once, in numpy (`tie_aware_aps`; no torch op, whose intra-op threads fought a request's for the
    cores). One query at a time, the shapes world's tied texts made this 1.9 s per objective and direction."""
    aps = np.zeros(len(queries))
    for start in range(0, len(queries), SERVED_AP_CHUNK):
        rows = np.arange(start, min(start + SERVED_AP_CHUNK, len(queries)))
        scores = np.stack([scores_of(gallery, queries[q]) for q in rows])
        # row by row, the order `ranked` gives each query (int32 keys order exactly like the scores, 3x faster)
        order = np.argsort(order_keys(-scores), axis=1, kind="stable")
        rel = (labels[order] == labels[rows][:, None]).astype(np.float64)
        aps[rows] = tie_aware_aps(rel, np.take_along_axis(scores, order, axis=1))  # (keys were made of a copy)
    return aps


def tie_aware_aps(rel: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """[Q, G] relevance and scores in ranked order -> [Q] AP over the orders of tied scores: `tie_aware`'s value
    (cmr_demo.metrics.expected_relevance's formula) for many queries at once. A tie group's first and last positions
    come from running maxima and minima instead of a scatter; without a tie it is the usual AP, to the bit."""
    queries, size = rel.shape
    pos = np.broadcast_to(np.arange(size), (queries, size))
    new = np.ones((queries, size), bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    last = np.ones((queries, size), bool)
    last[:, :-1] = new[:, 1:]
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # first position of each position's group
    end = np.minimum.accumulate(np.where(last, pos, size - 1)[:, ::-1], axis=1)[:, ::-1]  # and its last
    cumulative = np.cumsum(rel, axis=1)
    before = np.take_along_axis(cumulative - rel, start, axis=1)  # relevant items ranked above the group
    n = (end - start + 1).astype(np.float64)
    k = np.take_along_axis(cumulative, end, axis=1) - before
    p_rel = k / n
    expected = p_rel * (before + 1 + (pos - start).astype(np.float64) * (k - 1) / np.maximum(n - 1, 1))
    return (expected / (pos + 1)).sum(axis=1) / np.maximum(rel.sum(axis=1), 1)
