"""The service layer against naive references: rankings, AP, compare, leaderboard, disagreements, maps."""
import numpy as np
import pytest

from cmr_demo.ui import bundle_texts, map_figure, plots, views
from cmr_demo.bundle.load import load_bundle
from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.service import RetrievalService


@pytest.fixture(scope="module")
def service(small_bundle):
    return RetrievalService(load_bundle(small_bundle))


def naive_ranking(query: np.ndarray, gallery: np.ndarray) -> list[int]:
    scores = [float(np.dot(query, g)) for g in gallery]
    return sorted(range(len(gallery)), key=lambda i: (-scores[i], i))


def naive_ap(ranking: list[int], labels, label) -> float:
    hits, total = 0, 0.0
    for n, row in enumerate(ranking, start=1):
        if labels[row] == label:
            hits += 1
            total += hits / n
    return total / max(hits, 1)


def test_text_search_matches_a_naive_ranking(service):
    q = service.text_query("a red star on a striped background", "star")
    result = service.search(q, "pcl", 7)
    emb = service.embed(q, "pcl")
    gallery = service.bundle.objectives["pcl"].image_emb
    expected = naive_ranking(emb, gallery)
    assert [h.index for h in result.hits] == expected[:7]
    assert [h.rank for h in result.hits] == list(range(1, 8))
    assert result.target == "image" and result.exact
    assert result.ap == pytest.approx(naive_ap(expected, service.bundle.labels, q.label))
    rel = [service.bundle.labels[r] == q.label for r in expected]
    assert result.p_at_k["5"] == pytest.approx(np.mean(rel[:5]))
    assert result.first_relevant_rank == rel.index(True) + 1
    assert all(h.relevant == (h.label == q.label) for h in result.hits)


def test_unlabelled_query_has_no_metrics(service):
    result = service.search(service.text_query("two hearts"), "ce", 3)
    assert result.ap is None and result.p_at_k is None and all(h.relevant is None for h in result.hits)
    assert "state the query's class" in views.summary(result, service.class_names)


def test_gallery_item_query_uses_its_stored_embedding_and_excludes_itself(service):
    q = service.item_query(5, "image")
    assert q.label == service.bundle.labels[5]
    cross = service.search(q, "ce", 4)
    emb = service.bundle.objectives["ce"].image_emb[5]
    assert [h.index for h in cross.hits] == naive_ranking(emb, service.bundle.objectives["ce"].text_emb)[:4]
    same = service.search(q, "ce", service.size + 5, target="image")
    assert 5 not in [h.index for h in same.hits] and len(same.hits) == service.size - 1
    ranking = [r for r in naive_ranking(emb, service.bundle.objectives["ce"].image_emb) if r != 5]
    assert same.ap == pytest.approx(naive_ap(ranking, service.bundle.labels, q.label))
    by_id = service.item_query(service.bundle.items[5]["id"], "text")
    assert by_id.item == 5 and by_id.modality == "text"


def test_image_upload_query_round_trips_a_gallery_image(service):
    path = service.bundle.image_path(3)
    result = service.search(service.image_query(str(path)), "pcl", 3, target="image")
    assert result.hits[0].index == 3  # the gallery's own image comes back first
    assert result.hits[0].score == pytest.approx(1.0, abs=5e-3)


def test_one_ranking_gives_the_hits_and_the_metrics(service):
    """With the query's class known the whole gallery is ranked once (its top k are the hits); without, the index
    answers: the two give the same top k on an exact index."""
    for text in ("a red star", "two rings on a dotted background"):
        known = service.search(service.text_query(text, "star"), "ce", 6)
        unknown = service.search(service.text_query(text), "ce", 6)
        assert [h.index for h in known.hits] == [h.index for h in unknown.hits] and known.exact and unknown.exact
        assert [h.score for h in known.hits] == pytest.approx([h.score for h in unknown.hits], abs=1e-5)


def test_compare_equals_separate_searches(service):
    q = service.text_query("a shape with three corners", "triangle")
    both = service.compare(q, ["pcl", "pcl+0.5*tl"], 5)
    assert list(both) == ["pcl", "pcl+0.5*tl"]
    for name, result in both.items():
        alone = service.search(q, name, 5)
        assert [h.index for h in result.hits] == [h.index for h in alone.hits] and result.ap == alone.ap
    assert list(service.compare(q, None, 2)) == service.objectives
    assert both["pcl"].to_dict()["hits"][0]["rank"] == 1


def test_leaderboard_class_ap_and_disagreements_come_from_the_bundle(service):
    board = service.leaderboard()
    assert [r["avg_map"] for r in board] == sorted((r["avg_map"] for r in board), reverse=True)
    for row in board:
        assert row["avg_map"] == pytest.approx(service.bundle.manifest["objectives"][row["objective"]]["avg_map"])
    classes, objectives, grid = service.class_ap("i2t")
    assert grid.shape == (len(classes), len(objectives))
    assert grid[0, 0] == pytest.approx(
        service.bundle.objectives[objectives[0]].metrics["per_class_ap"]["i2t"][classes[0]]
    )
    rows = service.disagreements("pcl", "ce", "t2i", n=10)
    diffs = [abs(r["difference"]) for r in rows]
    assert diffs == sorted(diffs, reverse=True) and len(rows) == 10
    ap = service.bundle.objectives["pcl"].metrics["per_query_ap"]["t2i"]
    assert rows[0]["ap_pcl"] == pytest.approx(ap[rows[0]["row"]], abs=0.02)  # the build's float32 embeddings


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_disagreements_show_the_ap_compare_shows_for_the_same_item(service, direction):
    """Every row's AP is the AP a search with that item reports (one ranking, not the build's float32 one)."""
    modality = "image" if direction == "i2t" else "text"
    for row in service.disagreements("pcl", "ce", direction, n=service.size):
        for name in ("pcl", "ce"):
            result = service.search(service.item_query(row["row"], modality), name, 3)
            assert row[f"ap_{name}"] == pytest.approx(result.ap, abs=1e-12)


def test_map_view_places_a_gallery_item_on_its_own_point(service):
    view = service.map_view("pcl", service.item_query(7, "image"), k=5)
    own = service.bundle.objectives["pcl"].image_xy[7]
    spread = np.ptp(service.bundle.objectives["pcl"].image_xy, axis=0).max()
    assert np.linalg.norm(view["query"]["xy"] - own) < 0.25 * spread
    assert len(view["query"]["hits"]) == 5 and view["query"]["target"] == "text"
    fig = map_figure.map_figure([view, service.map_view("ce")], service.bundle.items, classes=[0, 1], pair_lines=True,
                           selected=7)
    names = {t.name for t in fig.data}
    assert {"query", "top 5", "selected item"} <= names
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == ["pcl", "ce"]  # one titled panel per objective, then the note on reading the query
    assert len(titles) == 3 and "modality gap" in titles[2] and "top 5 texts" in titles[2]


@pytest.mark.parametrize("call, message", [
    (lambda s: s.search(s.text_query("x"), "no-such-objective"), "unknown objective 'no-such-objective'"),
    (lambda s: s.search(s.text_query("x"), "../../etc/passwd"), "choose one of: zero-shot, pcl, ce"),
    (lambda s: s.search(s.text_query("x"), "pcl", 0), "k (number of results)"),
    (lambda s: s.search(s.text_query("x"), "pcl", "ten"), "k (number of results)"),
    (lambda s: s.text_query("   \t "), "the text query is empty"),
    (lambda s: s.text_query("x", "dragon"), "unknown class 'dragon'"),
    (lambda s: s.item_query("no-such-id"), "no gallery item has id"),
    (lambda s: s.item_query(10 ** 6), "rows go from 0 to 39"),
    (lambda s: s.item_query(1, "audio"), "unknown modality"),
    (lambda s: s.disagreements("pcl", "ce", "sideways"), "unknown direction"),
])
def test_user_errors_name_the_problem(service, call, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        call(service)


def test_k_beyond_the_gallery_is_capped_with_a_note(service):
    result = service.search(service.text_query("a ring"), "pcl", 500)
    assert len(result.hits) == service.size and any("showing 40" in n for n in result.notes)
    assert "note:" in views.summary(result, service.class_names)


def test_views_format_results(service):
    images = service.search(service.text_query("a ring", "ring"), "pcl", 3)
    texts = service.search(service.item_query(0, "image"), "pcl", 3)
    assert len(views.gallery_value(images, service)) == 3 and views.text_rows(images) == []
    assert all(path == str(service.bundle.image_path(h.index)) for h, (path, _) in
               zip(images.hits, views.gallery_value(images, service)))
    rows = views.text_rows(texts)
    assert len(rows) == 3 and rows[0][0] == 1 and rows[0][3] in ("✓", "✗")
    assert views.gallery_value(texts, service) == [] and "AP" in views.column_header(texts)
    columns = views.compare_columns([images, texts], service, lambda name: f"about <{name}>")
    assert columns.count('<section class="cmp-col">') == 2 and columns.count("<img") == 3  # texts are a list
    assert columns.count('src="media/') == 3 and "&lt;pcl&gt;" in columns and "<pcl>" not in columns  # escaped
    assert f"{images.hits[0].score:.3f} " in columns and images.hits[0].class_name in columns  # the whole caption
    about = bundle_texts.about_markdown(service)
    assert "pcl" in about and "python -m cmr_demo.bundle build" in about
    heat = plots.heatmap_figure(*service.class_ap())
    assert np.asarray(heat.data[0].z).shape == (len(service.class_names), len(service.objectives))


@pytest.fixture(scope="module")
def features_service(features_bundle):
    return RetrievalService(load_bundle(features_bundle))


def test_a_features_only_bundle_answers_item_queries_and_refuses_new_ones(features_service):
    """Gallery items are queries (AP against a naive ranking of the stored embeddings); a new text or picture is
    refused naming the bundle and what to do instead; the views draw items as a list, not pictures."""
    s = features_service
    assert s.catalog.capabilities(s.encodes) == {
        "text_queries": False,
        "image_queries": False,
        "pictures": False,
        "texts": False,
        "item_queries": True,
    }
    for ask in (lambda: s.text_query("a star"), lambda: s.image_query(b"\x89PNG")):
        with pytest.raises(InputError, match="ships features only .* query it with a gallery item"):
            ask()
    view = s.bundle.objectives["pcl"]
    q = s.item_query(s.bundle.items[7]["id"], "image")
    result = s.search(q, "pcl", 5)
    ranking = naive_ranking(view.image_emb[7], view.text_emb)
    assert [h.index for h in result.hits] == ranking[:5]
    assert result.ap == pytest.approx(naive_ap(ranking, s.bundle.labels, s.bundle.labels[7]), abs=1e-6)
    assert all(h.image_url is None and h.text == "" for h in result.hits)
    assert set(s.compare(q, k=3)) == {"pcl", "ce"} and s.map_view("ce", q)["query"]["hits"]
    assert views.gallery_value(result, s) == [] and len(views.text_rows(result, pictures=False)) == 5
    assert "text " + result.hits[0].id in views.compare_columns([result], s)  # listed by id: no text, no picture


def test_items_page_filters_by_class_and_id_and_pages(features_service):
    s = features_service
    rows, total = s.catalog.page("class 3", None, 0, 4)
    members = np.flatnonzero(s.bundle.labels == 3).tolist()
    assert total == len(members) and rows == members[:4]
    rows, total = s.catalog.page(None, "0009", 0, 60)
    assert [s.bundle.items[r]["id"] for r in rows] == [i["id"] for i in s.bundle.items if "0009" in i["id"]]
    assert s.catalog.page(None, None, 90, 60) == (list(range(90, 100)), 100)
    with pytest.raises(InputError, match="unknown class"):
        s.catalog.page("dragon")


def test_a_map_of_a_large_gallery_stays_small_and_keeps_what_matters_exact():
    """50,000 items: the gallery is a class-stratified sample drawn with WebGL, the payload stays under 5 MB, and
    the query, its top-k and the selected item are drawn exactly (they may lie outside the sample)."""
    rng = np.random.default_rng(1)
    n = 50_000
    labels = rng.integers(0, 10, n)
    items = [{"id": f"item-{i}", "text": f"caption {i} " * 8, "label": int(labels[i])} for i in range(n)]
    hits = [int(r) for r in rng.choice(n, 10, replace=False)]
    view = {"objective": "pcl", "image_xy": rng.normal(size=(n, 2)), "text_xy": rng.normal(size=(n, 2)),
            "labels": labels, "class_names": [f"class {c}" for c in range(10)],
            "query": {"xy": np.zeros(2), "modality": "text", "label": None, "description": "q", "target": "image",
                      "hits": hits, "ap": None, "info": None}}
    selected = 49_999
    fig = map_figure.map_figure([view, {**view, "objective": "ce"}], items, selected=selected)
    payload = fig.to_json()
    assert len(payload) < 5e6, len(payload)
    gallery = [t for t in fig.data if t.type == "scattergl"]
    drawn = sum(len(t.x) for t in gallery) // 4  # 2 modalities x 2 panels
    assert 0 < drawn <= map_figure.MAX_ITEMS and len({c[2] for t in gallery for c in t.customdata}) == 10  # all kept
    top = next(t for t in fig.data if t.name == "top 10")
    assert np.allclose(np.c_[top.x, top.y], view["image_xy"][hits])
    chosen = next(t for t in fig.data if t.name == "selected item")
    assert np.allclose(np.c_[chosen.x, chosen.y], [view["image_xy"][selected], view["text_xy"][selected]])
    assert f"showing {drawn:,} of 50,000 gallery items" in fig.layout.annotations[-1].text


def test_a_large_gallery_serves_at_once_and_gets_its_graph_index_in_the_background(small_bundle, monkeypatch):
    """Where the size calls for HNSW, the service starts on exact flat indexes and swaps each graph in when built."""
    import threading

    import cmr_demo.serve.index
    monkeypatch.setattr(cmr_demo.serve.index, "EXACT_MAX_ITEMS", 10)  # the 40-item gallery now counts as large
    s = RetrievalService(load_bundle(small_bundle))
    q = s.text_query("a star")  # no class stated: the index answers (with a class, the whole gallery is ranked)
    before = [h.index for h in s.search(q, "pcl", 5).hits]
    for thread in threading.enumerate():
        if thread.name == "hnsw-build":
            thread.join(30)
    assert {i.kind for i in s.indexes.values()} == {"hnsw"}
    assert [h.index for h in s.search(q, "pcl", 5).hits] == before  # 40 items: the graph finds the exact top 5


def test_a_damaged_gallery_picture_is_a_placeholder_not_a_failure(small_bundle, tmp_path, caplog):
    """A gallery picture changed after the build fails its hash check when first shown: the search still answers,
    its tile is a placeholder (never the damaged file), the class strip still builds, and the log says which."""
    import shutil
    copy = tmp_path / "b"
    shutil.copytree(small_bundle, copy)
    s = RetrievalService(load_bundle(copy))
    damaged = copy / s.bundle.items[0]["image"]
    damaged.write_bytes(damaged.read_bytes()[:100])
    result = s.search(s.item_query(0, "text"), "pcl", s.size)  # every picture ranked, the damaged one among them
    tiles = views.gallery_value(result, s)
    placeholders = [t for t, _ in tiles if not isinstance(t, str)]
    assert len(tiles) == s.size and len(placeholders) == 1
    assert all(str(damaged) != t for t, _ in tiles)
    strip = bundle_texts.class_examples(s)
    assert len(strip) == len(s.class_names)
    assert "shown as a placeholder" in caplog.text and s.bundle.items[0]["image"] in caplog.text


def test_every_items_ap_at_once_is_what_one_query_at_a_time_gives_ties_included():
    """served_ap (the maps' per-point APs, the disagreement table) ranks a chunk of queries at once; each value must
    be the AP that ranking that one query alone gives (Compare's number), where tied scores abound too: the shapes
    world's identical texts tie, and one query at a time that took 1.9 s per objective and direction."""
    from cmr_demo.serve import ranking
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 700)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    texts = base[rng.integers(0, 40, 700)]  # 700 texts, 40 distinct: ties everywhere
    images = rng.normal(size=(700, 16)).astype(np.float32)
    for queries, gallery in [(images, texts), (texts, images)]:
        got = ranking.served_ap(queries, gallery, labels)
        for q in range(len(queries)):
            scores = ranking.scores_of(gallery, queries[q])
            order, rel = ranking.ranked(scores, labels, labels[q], None)
            assert got[q] == pytest.approx(ranking.tie_aware(rel, scores[order])[1], abs=1e-12), q
