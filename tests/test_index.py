"""GalleryIndex against a naive numpy top-k: exact flat results (ties allowed), HNSW recall, the size switch, edges."""
import numpy as np
import pytest

from cmr_demo.serve import index as gallery_index
from cmr_demo.serve.index import EXACT_MAX_ITEMS, INDEX_KINDS, GalleryIndex, choose_kind


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, d: int, seed: int, queries: int = 0, clusters: int = 50):
    """n unit rows around `clusters` random centres (noise of norm ~1), and `queries` fresh rows of the same mixture."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, d)))
    x = unit(centres[rng.integers(0, clusters, n + queries)] + rng.standard_normal((n + queries, d)) / np.sqrt(d))
    return (x[:n], x[n:]) if queries else x


def naive(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 scores of every pair, best first; equal scores ordered by row (any order is right for ties)."""
    s = queries.astype(np.float64) @ gallery.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


def check_exact(scores, ids, gallery, queries, k, tol=1e-5):
    ref_scores, _ = naive(gallery, queries, k)
    full = queries.astype(np.float64) @ gallery.astype(np.float64).T
    assert scores.shape == ids.shape == (len(queries), k)
    np.testing.assert_allclose(scores, ref_scores, atol=tol)  # same top-k score profile
    for i in range(len(queries)):
        assert len(set(ids[i])) == k  # no item twice
        np.testing.assert_allclose(full[i, ids[i]], scores[i], atol=tol)  # each id carries its own score
        # the ids are the reference's, up to a permutation of items whose scores tie at the k-th place
        kth = ref_scores[i, -1]
        must = set(np.flatnonzero(full[i] > kth + tol))
        allowed = set(np.flatnonzero(full[i] >= kth - tol))
        assert must <= set(ids[i]) <= allowed


@pytest.mark.parametrize("seed", [0, 1])
def test_flat_equals_naive_reference(seed):
    gallery, queries = clustered(500, 32, seed, queries=20)
    idx = GalleryIndex.build(gallery, kind="flat")
    assert idx.exact and idx.kind == "flat" and (idx.size, idx.dim) == (500, 32)
    check_exact(*idx.search(queries, 10), gallery, queries, 10)


def test_flat_with_exact_ties():
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((30, 16)))
    gallery = np.concatenate([base, base, base[:5]])  # every item duplicated: scores tie in pairs and triples
    queries = unit(rng.standard_normal((8, 16)))
    scores, ids = GalleryIndex.build(gallery, kind="flat").search(queries, 7)
    check_exact(scores, ids, gallery, queries, 7)


def test_single_query_vector_is_accepted():
    gallery = clustered(100, 8, 4)
    scores, ids = GalleryIndex.build(gallery, kind="flat").search(gallery[7], 3)  # 1-D query
    assert scores.shape == ids.shape == (1, 3) and ids[0, 0] == 7 and ids.dtype == np.int64
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_hnsw_recall_against_naive():
    gallery, queries = clustered(5000, 64, 5, queries=200)
    idx = GalleryIndex.build(gallery, kind="hnsw")
    assert not idx.exact and idx.kind == "hnsw"
    scores, ids = idx.search(queries, 10)
    _, ref = naive(gallery, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)])
    assert recall >= 0.9, recall
    full = queries.astype(np.float64) @ gallery.astype(np.float64).T
    np.testing.assert_allclose(np.take_along_axis(full, ids, axis=1), scores, atol=1e-5)  # true scores
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_choose_kind_switches_at_threshold(monkeypatch):
    assert choose_kind(1) == "flat"
    assert choose_kind(EXACT_MAX_ITEMS) == "flat"
    assert choose_kind(EXACT_MAX_ITEMS + 1) == "hnsw"
    gallery = clustered(300, 16, 7)
    assert GalleryIndex.build(gallery).kind == "flat"  # auto, small gallery
    monkeypatch.setattr(gallery_index, "EXACT_MAX_ITEMS", 299)
    assert GalleryIndex.build(gallery).kind == "hnsw"
    assert GalleryIndex.build(gallery[:299]).kind == "flat"


@pytest.mark.parametrize("kind", sorted(INDEX_KINDS))
def test_k_larger_than_gallery_returns_every_item(kind):
    gallery, queries = clustered(12, 8, 8, queries=3)
    scores, ids = GalleryIndex.build(gallery, kind=kind).search(queries, 50)
    assert scores.shape == ids.shape == (3, 12)
    for row in ids:
        assert sorted(row) == list(range(12))  # all of them, no -1 padding
    check_exact(scores, ids, gallery, queries, 12)


def test_wrong_query_dimension_names_both():
    idx = GalleryIndex.build(clustered(50, 24, 10), kind="flat")
    with pytest.raises(ValueError, match=r"\b17\b.*\b24\b"):
        idx.search(np.zeros((2, 17), dtype=np.float32), 5)


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match="ivf") as err:
        GalleryIndex.build(clustered(10, 4, 11), kind="ivf")
    for kind in INDEX_KINDS:
        assert kind in str(err.value)
    assert "auto" in str(err.value)


@pytest.mark.parametrize("shape", [(0, 16), (0,), (5,)])
def test_empty_or_flat_gallery_raises(shape):
    with pytest.raises(ValueError, match="non-empty"):
        GalleryIndex.build(np.zeros(shape, dtype=np.float32))
