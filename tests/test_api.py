"""The JSON API (/api/v1) against `python app.py`, and its text batcher in-process.

Answers must equal the service's own (same ranking, same embedding), errors must be the app's messages
with 4xx codes, and concurrent texts must share backbone calls without changing any result.
"""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def service(small_bundle):
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    return RetrievalService(load_bundle(small_bundle))


@pytest.fixture(scope="module")
def api(app_url):
    with httpx.Client(base_url=app_url + "api/v1/", timeout=60) as client:
        yield client


def png(path) -> bytes:
    return path.read_bytes()


def test_bundles_lists_the_served_bundles(api, service):
    b, f = api.get("bundles").json()
    assert b["name"] == "b" and b["default"] and b["items"] == service.size and b["classes"] == service.class_names
    assert set(b["objectives"]) == set(service.objectives) and b["capabilities"]["text_queries"]
    assert isinstance(b["backbone"], str) and "runs/" not in str(b)  # the spec, not the build machine's path
    assert f["name"] == "feats" and not f["default"] and f["backbone"] is None
    assert f["capabilities"] == {"text_queries": False, "image_queries": False, "pictures": False, "texts": False,
                                 "item_queries": True}


def test_a_features_only_bundle_beside_the_default(api, features_bundle):
    """Item queries by id through /compare with bundle=, paged item lists, and a clear refusal of new texts."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    s = RetrievalService(load_bundle(features_bundle), "feats")
    item = s.bundle.items[11]["id"]
    r = api.post("compare", json={"item_id": item, "k": 4, "bundle": "feats"})
    assert r.status_code == 200, r.text
    for objective, answer in r.json().items():
        want = s.search(s.item_query(item), objective, 4)
        assert [h["id"] for h in answer["hits"]] == [h.id for h in want.hits] and answer["ap"] == pytest.approx(want.ap)
        assert answer["bundle"] == "feats" and all(h["image_url"] is None for h in answer["hits"])
    r = api.post("search/text", json={"text": "a star", "bundle": "feats"})
    assert r.status_code == 400 and "ships features only" in r.json()["error"]
    page = api.get("items", params={"bundle": "feats", "class_name": "class 2", "limit": 5}).json()
    members = [it["id"] for it, label in zip(s.bundle.items, s.bundle.labels) if label == 2]
    assert page["total"] == len(members) and [it["id"] for it in page["items"]] == members[:5]
    assert api.get(f"../../media/feats/{item}").status_code == 404  # no pictures to serve


def test_text_search_matches_the_service(api, service):
    r = api.post("search/text", json={"text": "a red star", "objective": "ce", "k": 7, "query_class": "star"})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = service.search(service.text_query("a red star", "star"), "ce", 7)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected.hits]
    assert body["ap"] == pytest.approx(expected.ap) and body["target"] == "image" and body["bundle"] == "b"
    hit = body["hits"][0]
    assert set(hit) == {"rank", "id", "score", "class", "relevant", "text", "image_url", "modality"}
    assert hit["image_url"].startswith("/media/b/") and hit["relevant"] == (hit["class"] == "star")
    same = api.post("search/text", json={"text": "a red star", "same_modality": True, "k": 3}).json()
    assert same["target"] == "text" and same["objective"] == service.best  # the best trained objective


def test_image_item_compare_embed_and_info(api, service, small_bundle):
    picture = small_bundle / "gallery" / "images" / "00004.png"
    r = api.post(
        "search/image", files={"file": ("q.png", png(picture), "image/png")}, data={"objective": "pcl", "k": "5"}
    )
    assert r.status_code == 200, r.text
    expected = service.search(service.image_query(str(picture)), "pcl", 5)
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in expected.hits]
    item = service.bundle.items[4]["id"]
    r = api.post("search/item", json={"id": item, "objective": "pcl", "k": 4})
    assert r.status_code == 200 and r.json()["ap"] is not None and len(r.json()["hits"]) == 4
    r = api.post("compare", json={"text": "two hearts", "objectives": ["pcl", "ce"], "k": 3, "query_class": "heart"})
    assert list(r.json()) == ["pcl", "ce"] and all(len(v["hits"]) == 3 for v in r.json().values())
    r = api.post("embed", json={"text": "a red star", "objective": "pcl"}).json()
    want = service.embed(service.text_query("a red star"), "pcl")
    assert r["dim"] == len(want) and np.allclose(r["embedding"], want, atol=1e-5)
    r = api.post("embed", json={"item_id": item, "modality": "text", "objective": "ce"}).json()
    assert np.allclose(r["embedding"], service.bundle.objectives["ce"].text_emb[4], atol=1e-5)
    r = api.post("embed/image", files={"file": ("q.png", png(picture), "image/png")}, data={"objective": "pcl"}).json()
    assert np.allclose(r["embedding"], service.embed(service.image_query(str(picture)), "pcl"), atol=1e-4)
    info = api.post("query_info", json={"text": "a red star"}).json()
    assert {"predicted_class", "confidence", "in_domain", "objective"} <= set(info)
    info = api.post("query_info/image", files={"file": ("q.png", png(picture), "image/png")}).json()
    assert info["predicted_class"] in service.class_names


@pytest.mark.parametrize("route,body,code,words", [
    ("search/text", {"text": "a star", "objective": "nope"}, 400, "unknown objective 'nope'; choose one of"),
    ("search/text", {"text": "   "}, 400, "the text query is empty"),
    ("search/text", {"text": "a star", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("search/text", {"text": "a star", "k": 10 ** 9}, 422, "k: Input should be less than or equal to 100"),
    ("compare", {"text": "a star", "k": 101}, 422, "k: Input should be less than or equal to 100"),
    ("search/text", {"text": "a star", "k": "abc"}, 422, "k: Input should be a valid integer"),
    ("search/text", {"text": "a star", "kk": 3}, 422, "kk: Extra inputs are not permitted"),
    ("search/text", {}, 422, "text: Field required"),
    ("search/text", {"text": "a star", "bundle": "other"}, 400, "unknown bundle 'other'; choose one of: b, feats"),
    ("search/text", {"text": "a star", "query_class": "dragon"}, 400, "unknown class 'dragon'"),
    ("search/item", {"id": "no-such-item"}, 400, "no gallery item has id"),
    ("compare", {"text": "a star", "objectives": ["pcl", "nope"]}, 400, "unknown objective 'nope'"),
    ("embed", {"item_id": "no-such-item"}, 400, "no gallery item has id"),
    ("map", {"color_by": "colour"}, 400, "unknown color_by 'colour'; choose one of: class, modality, ap, ap_diff"),
    ("map", {"color_by": "rank"}, 400, "colouring by rank needs a query"),
    ("map", {"color_by": "ap_diff", "other": "nope"}, 400, "unknown objective 'nope'"),
    ("map", {"limit": 0}, 422, "limit: Input should be greater than or equal to 1"),
    ("map", {"limit": 10 ** 9}, 422, "limit: Input should be less than or equal to 20000"),
])
def test_user_errors_are_4xx_with_the_apps_message(api, app_log, route, body, code, words):
    start = app_log.stat().st_size
    r = api.post(route, json=body)
    assert r.status_code == code and words in r.json()["error"], (r.status_code, r.text)
    assert "Traceback" not in app_log.read_bytes()[start:].decode(errors="replace")


@pytest.mark.parametrize("offset", [2 ** 63, -1, "x"])
def test_an_items_offset_outside_the_documented_range_is_refused(api, offset):
    """offset 2^63 was answered with the first page (and echoed), a negative one as given."""
    r = api.get("items", params={"offset": offset})
    assert r.status_code == 422 and "offset" in r.json()["error"], r.text


def test_the_map_answers_points_whose_ap_is_the_one_compare_gives(api, service):
    """POST /api/v1/map colours each point by its AP difference; every value equals the difference of the APs
    /api/v1/compare gives for that item and modality."""
    r = api.post("map", json={"objective": "pcl", "color_by": "ap_diff", "other": "ce", "text": "a red star", "k": 5})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["other"] == "ce" and answer["scale"] == "diverging" and answer["shown_items"] == service.size
    assert len(answer["points"]) == 2 * service.size and len(answer["query"]["hits"]) == 5
    points = {(p["id"], p["modality"]): p for p in answer["points"]}
    for item_id, modality in [(service.bundle.items[n]["id"], m) for n in (0, 9, 30) for m in ("image", "text")]:
        compared = api.post("compare", json={"item_id": item_id, "item_modality": modality,
                                             "objectives": ["pcl", "ce"], "k": 1}).json()
        expected = compared["pcl"]["ap"] - compared["ce"]["ap"]
        assert points[item_id, modality]["value"] == pytest.approx(expected, abs=1e-4)
    ranked = api.post("map", json={"color_by": "rank", "item_id": service.bundle.items[4]["id"], "k": 3,
                                   "limit": 5}).json()
    values = {p["id"]: p["value"] for p in ranked["points"] if p["modality"] == "text"}
    assert [values[i] for i in ranked["query"]["hits"]] == [1, 2, 3]  # the sample keeps the query's top-k
    feats = api.post("map", json={"bundle": "feats", "color_by": "ap"}).json()  # a features-only bundle too
    assert all(0 <= p["value"] <= 1 for p in feats["points"])


def test_bad_uploads_are_refused_in_the_apps_words(api):
    r = api.post("search/image", files={"file": ("q.png", b"not a picture", "image/png")})
    assert r.status_code == 400 and "not an image this app can read" in r.json()["error"]
    big = b"\x89PNG\r\n\x1a\n" + bytes(21 * 2 ** 20)
    r = api.post("search/image", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "larger than the 20 MB" in r.json()["error"]
    r = api.post("search/image", data={"k": "3"})
    assert r.status_code == 422 and "file: Field required" in r.json()["error"]
    r = api.post("search/image", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data"})
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text  # no boundary: still the app's JSON shape
    r = api.post("search/image", files={"file": ("q.png", b"", "image/png")})
    assert r.status_code == 400 and "empty" in r.json()["error"]


def test_openapi_docs_describe_the_api(app_url):
    spec = httpx.get(app_url + "api/openapi.json", timeout=30).json()
    assert {"/api/v1/search/text", "/api/v1/search/image", "/api/v1/search/item", "/api/v1/compare", "/api/v1/embed",
            "/api/v1/embed/image", "/api/v1/query_info", "/api/v1/bundles"} <= set(spec["paths"])
    page = httpx.get(app_url + "api/docs", timeout=30)
    assert page.status_code == 200 and "/api/openapi.json" in page.text


def test_the_docs_page_loads_nothing_from_outside(app_url):
    """/api/docs works offline: every script, style and icon it names is served by the app itself."""
    import re
    page = httpx.get(app_url + "api/docs", timeout=30).text
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links), links
    for link in links:
        r = httpx.get(app_url + link.lstrip("/"), timeout=30)
        assert r.status_code == 200 and len(r.content) > 500, link


def test_concurrent_texts_share_backbone_calls_and_keep_their_results(service):
    from cmr_demo.serve.api import TextBatcher
    texts = [f"a red star number {n}" for n in range(24)]
    expected = np.concatenate([service.bundle.backbone.encode_texts([t], progress=False) for t in texts])
    batcher = TextBatcher(service, ThreadPoolExecutor(1))
    service.encoder._texts.clear()

    async def all_at_once():
        return await asyncio.gather(*(batcher.features(t) for t in texts + texts[:5]))  # repeats in flight too
    got = asyncio.run(all_at_once())
    assert np.allclose(np.concatenate(got[:24]), expected, atol=1e-5)
    assert all(np.allclose(got[24 + n], expected[n], atol=1e-5) for n in range(5))
    assert batcher.texts == 24 and batcher.batches < 24  # every text encoded once, in shared calls


def test_the_media_cache_keeps_recent_pictures_within_its_limit(tmp_path):
    """/media answers from memory once a picture was read (MediaCache); the least recently used leave past the
    limit, and a file too large for it is read each time, never kept."""
    from cmr_demo.serve.webserver import MediaCache
    files = []
    for n in range(10):
        files.append(tmp_path / f"{n}.png")
        files[-1].write_bytes(bytes([n]) * 100)
    cache = MediaCache(limit=850)  # room for eight 100-byte files; one over 850 // 8 bytes is never kept
    assert cache.read(files[0]) == bytes([0]) * 100 and cache.read(files[1]) == bytes([1]) * 100
    files[0].write_bytes(b"changed")  # served from memory: a bundle's pictures do not change while it is served
    assert cache.read(files[0]) == bytes([0]) * 100
    for f in files[2:]:
        cache.read(f)
    assert cache.size <= 850 and len(cache.kept) == 8
    assert str(files[0]) not in cache.kept and str(files[1]) not in cache.kept and str(files[9]) in cache.kept
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 500)
    assert cache.read(big) == b"x" * 500 and str(big) not in cache.kept
