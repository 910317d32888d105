"""mAP@all, P@k and per-class AP against naive loops written here, with ties and absent classes."""
import numpy as np
import pytest

from cmr_demo.metrics import average_precision, chance_map, evaluate


def naive_ap(q, ql, g, gl):
    """AP over the whole gallery per query, items at equal distance counted by their expectation over every order
    (McSherry & Najork 2008), written per relevant item: the mean over the ranks its tie group allows of the
    expected precision there (the other relevant items of the group above it are hypergeometric)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = []
    for i in range(len(q)):
        dist = [round(float(np.sum((q[i] - g[j]) ** 2)), 6) for j in range(len(g))]  # Euclidean, as the official code
        rel = [gl[j] == ql[i] for j in range(len(g))]
        total = 0.0
        for j in (j for j in range(len(g)) if rel[j]):
            above = [x for x in range(len(g)) if dist[x] < dist[j]]
            group = [x for x in range(len(g)) if dist[x] == dist[j]]
            c, b, n, k = len(above), sum(rel[x] for x in above), len(group), sum(rel[x] for x in group)
            total += np.mean([(b + 1 + (m - 1) * (k - 1) / max(n - 1, 1)) / (c + m) for m in range(1, n + 1)])
        out.append(total / sum(rel) if sum(rel) else 0.0)
    return np.array(out)


def naive_p_at_k(q, ql, g, gl, k):
    """P@k per query, averaged; a tie group straddling rank k counts its share of relevant items per place."""
    scores = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    out = []
    for i in range(len(q)):
        s = np.round(scores[i], 6)
        hits = 0.0
        for value in np.unique(s):
            group = np.flatnonzero(s == value)
            above = int((s > value).sum())
            places = max(0, min(k, above + len(group)) - above)
            hits += places * np.mean(gl[group] == ql[i])
        out.append(hits / k)
    return float(np.mean(out))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_naive(seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(37, 8)), rng.normal(size=(53, 8))
    ql, gl = rng.integers(0, 4, 37), rng.integers(0, 4, 53)
    np.testing.assert_allclose(average_precision(q, ql, g, gl), naive_ap(q, ql, g, gl), atol=1e-6)


def test_ties_and_queries_without_relevant_items():
    g = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [1.0, 0]])  # three identical gallery vectors
    gl = np.array([0, 1, 1, 0])
    q, ql = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 2])  # class 2 is absent from the gallery
    np.testing.assert_allclose(average_precision(q, ql, g, gl), naive_ap(q, ql, g, gl), atol=1e-9)
    assert average_precision(q, ql, g, gl)[1] == 0.0


def test_chunking_does_not_change_results(monkeypatch):
    import cmr_demo.metrics as m
    rng = np.random.default_rng(5)
    q, g, ql, gl = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)), rng.integers(0, 3, 50), rng.integers(0, 3, 40)
    whole = average_precision(q, ql, g, gl)
    monkeypatch.setattr(m, "_CHUNK", 7)
    np.testing.assert_allclose(average_precision(q, ql, g, gl), whole)


@pytest.mark.parametrize("k", [1, 5, 10, 100])
def test_p_at_k_matches_naive(k):
    rng = np.random.default_rng(k)
    q, g, ql, gl = rng.normal(size=(20, 5)), rng.normal(size=(30, 5)), rng.integers(0, 3, 20), rng.integers(0, 3, 30)
    got = evaluate(q, g, ql, gl, ["a", "b", "c"], ks=(k,))["p_at_k"]["i2t"][str(k)]
    assert got == pytest.approx(naive_p_at_k(q, ql, g, gl, min(k, 30)))


def test_perfect_and_chance_rankings():
    labels = np.repeat(np.arange(4), 10)
    onehot = np.eye(4)[labels] + 1e-3 * np.random.default_rng(0).normal(size=(40, 4))
    m = evaluate(onehot, onehot, labels, labels, ["a", "b", "c", "d"])
    assert m["i2t_map"] == pytest.approx(1.0) and m["t2i_map"] == pytest.approx(1.0)
    assert set(m["per_class_ap"]["i2t"]) == {"a", "b", "c", "d"}
    assert m["p_at_k"]["t2i"]["10"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    rand = evaluate(rng.normal(size=(400, 16)), rng.normal(size=(400, 16)), np.arange(400) % 4, np.arange(400) % 4,
                    list("abcd"))
    assert abs(rand["avg_map"] - chance_map(np.arange(400) % 4, np.arange(400) % 4)) < 0.03


def test_per_class_ap_is_the_mean_over_that_class():
    rng = np.random.default_rng(3)
    x, y, labels = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), np.arange(30) % 3
    m = evaluate(x, y, labels, labels, ["a", "b", "c"], keep_per_query=True)
    ap = np.array(m["per_query_ap"]["i2t"])
    assert m["per_class_ap"]["i2t"]["b"] == pytest.approx(ap[labels == 1].mean())
    assert m["i2t_map"] == pytest.approx(ap.mean())


def test_labels_as_tensors_that_cannot_become_numpy_directly(monkeypatch):
    """The training CLI evaluates tensors where they live; a CUDA tensor refuses np.asarray (no GPU here,
    so that refusal is what this test imitates)."""
    import torch
    rng = np.random.default_rng(3)
    img, txt, labels = rng.normal(size=(30, 6)), rng.normal(size=(30, 6)), rng.integers(0, 3, 30)
    expected = evaluate(img, txt, labels, labels, ["a", "b", "c"])

    def refuse(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")
    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    t = torch.as_tensor(labels)
    got = evaluate(torch.as_tensor(img), torch.as_tensor(txt), t, t, ["a", "b", "c"])
    assert got["avg_map"] == expected["avg_map"] and got["per_class_ap"] == expected["per_class_ap"]


@pytest.mark.slow  # ranks 25,000 x 25,000 exactly to compare with: ~15 s on 2 cores
def test_selection_on_a_large_split_samples_queries_and_stays_faithful_to_map_at_all():
    """Above 2,000 validation items the per-epoch selection ranks a fixed sample of 2,000 queries against the whole
    split (linear, not quadratic, in its size); its mean AP stays within 0.01 of mAP@all over every query."""
    import torch

    from cmr_demo.train.heads import HeadConfig, Heads
    from cmr_demo.train.fit import Tensors, selection_map, selection_queries
    assert selection_queries(2000) is None  # small splits: every query, exactly as before
    q = selection_queries(9000)
    assert len(q) == 2000 and torch.equal(q, selection_queries(9000))  # the same queries every epoch
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 9000)
    centres = rng.normal(size=(10, 32))
    image = (centres[labels] + 0.8 * rng.normal(size=(9000, 32))).astype(np.float32)
    text = (centres[labels] + 0.8 * rng.normal(size=(9000, 32))).astype(np.float32)
    torch.manual_seed(0)
    heads = Heads(HeadConfig(image_dim=32, text_dim=32, hidden_dim=64, embed_dim=32)).eval()
    heads.fit_standardization(torch.from_numpy(image), torch.from_numpy(text))
    i2t, t2i = selection_map(heads, Tensors.of(image, text, labels, "cpu"))
    with torch.no_grad():
        img, txt = (
            heads.encode_image(torch.from_numpy(image)).numpy(),
            heads.encode_text(torch.from_numpy(text)).numpy(),
        )
    exact = average_precision(img, labels, txt, labels).mean(), average_precision(txt, labels, img, labels).mean()
    assert abs(i2t - exact[0]) < 0.01 and abs(t2i - exact[1]) < 0.01, (i2t, t2i, exact)
    assert exact[0] > 0.15  # above chance (0.1): the estimate is tested on a ranking with structure


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sort_all_max", [0, 10_000])
def test_evaluate_matches_naive_with_cross_class_ties_and_absent_classes(seed, sort_all_max, monkeypatch):
    """`evaluate` past SORT_ALL_MAX_ITEMS ranks relevant items by integer sorts and binary search (not a full
    stable sort per query); both ways give the naive loop's numbers:
    against the naive loop, with exact ties between a relevant and an irrelevant item (duplicated vectors
    across classes), ties inside a class, a query class absent from the gallery, and small chunks."""
    import cmr_demo.metrics as m
    monkeypatch.setattr(m, "SORT_ALL_MAX_ITEMS", sort_all_max)  # 0: the rank-counting path, else the full sort
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(60, 5))
    g[10:20] = g[0:10]  # same vectors, other labels below: ties across classes
    g[30:33] = g[29]  # ties inside a class
    gl = rng.integers(0, 4, 60)
    gl[10:20] = (gl[0:10] + 1) % 4
    q = np.concatenate([rng.normal(size=(25, 5)), g[:8] + 0.0])
    ql = np.concatenate([rng.integers(0, 5, 25), gl[:8]])  # class 4 never appears in the gallery
    names = list("abcde")
    for chunk in (1024, 7):
        old = m._CHUNK
        m._CHUNK = chunk
        try:
            got = evaluate(q, g, ql, gl, names, ks=(1, 5, 100), keep_per_query=True)
        finally:
            m._CHUNK = old
        np.testing.assert_allclose(got["per_query_ap"]["i2t"], naive_ap(q, ql, g, gl), atol=1e-6)  # float32 ties
        np.testing.assert_allclose(got["per_query_ap"]["t2i"], naive_ap(g, gl, q, ql), atol=1e-6)
        for k in (1, 5, 100):
            assert got["p_at_k"]["i2t"][str(k)] == pytest.approx(naive_p_at_k(q, ql, g, gl, min(k, 60)))
