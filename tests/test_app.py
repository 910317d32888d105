"""The app as users and clients meet it: `python app.py` launched for real, every named endpoint via gradio_client."""
import re

import pytest

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


def test_named_api_is_the_documented_one(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/search_text", "/search_image", "/search_item", "/compare", "/embedding_map", "/disagreements",
            "/query_info", "/query_info_image", "/bundles"} <= set(api)
    assert [p["parameter_name"] for p in api["/query_info"]["parameters"]] == ["query", "objective", "bundle"]
    for name, endpoint in api.items():  # every endpoint but the list itself takes an optional bundle, last
        if name != "/bundles":
            assert endpoint["parameters"][-1]["parameter_name"] == "bundle", name
            assert endpoint["parameters"][-1]["parameter_has_default"], name
    first = [p["parameter_name"] for p in api["/search_text"]["parameters"]][:3]
    assert first == ["query", "objective", "k"]
    assert [p["parameter_name"] for p in api["/search_image"]["parameters"]][:3] == ["image", "objective", "k"]
    assert [p["parameter_name"] for p in api["/compare"]["parameters"]][:3] == ["query", "objectives", "k"]
    assert [p["parameter_name"] for p in api["/embedding_map"]["parameters"]][:2] == ["objective", "query"]


def test_search_text_returns_ranked_images_with_captions(client):
    gallery, table, summary = client.predict("a red star", "pcl", 5, "star", api_name="/search_text")
    assert len(gallery) == 5
    for item in gallery:  # score and verdict first, so they survive a caption cut at the tile's width
        assert item["image"] and re.match(r"^-?\d\.\d{3} [✓✗] \w+$", item["caption"]), item["caption"]
    assert "AP" in summary and "class **star**" in summary
    assert not table["data"] or table["data"] == [[None] * len(table["headers"])] or table["data"] == []


def test_query_info_names_a_class_and_flags_texts_from_outside_the_world(client):
    info = client.predict("a red star", "pcl", api_name="/query_info")
    assert set(info) >= {"predicted_class", "confidence", "in_domain", "objective"}
    assert info["in_domain"] is True and info["objective"] == "pcl" and 0 < info["confidence"] <= 1
    assert client.predict("a dog", api_name="/query_info")["in_domain"] is False
    with pytest.raises(Exception, match="objective"):
        client.predict("a red star", "nope", api_name="/query_info")


def test_search_image_returns_ranked_texts(client, small_bundle):
    image = gradio_client.handle_file(str(small_bundle / "gallery" / "images" / "00003.png"))
    gallery, table, summary = client.predict(image, "ce", 4, api_name="/search_image")
    assert gallery == [] and len(table["data"]) == 4
    assert table["headers"][:3] == ["rank", "score", "class"] and table["data"][0][0] == 1


def test_compare_gives_one_result_per_objective(client):
    out = client.predict("two hearts", ["pcl", "ce"], 3, "heart", "", api_name="/compare")
    assert list(out) == ["pcl", "ce"]
    assert all(len(r["hits"]) == 3 and r["ap"] is not None for r in out.values())


def test_embedding_map_returns_a_plotly_figure(client):
    plot = client.predict("pcl", "a star", ["ce"], [], True, 5, "", api_name="/embedding_map")
    assert plot["type"] == "plotly" and '"query"' in plot["plot"] and '"top 5"' in plot["plot"]
    # as docs/api.md
    coloured = client.predict("pcl", "a star", colour_by="ap_diff", other="ce", api_name="/embedding_map")
    assert '"coloraxis"' in coloured["plot"] and "AP pcl" in coloured["plot"]  # one colour bar saying what it is


def test_user_errors_reach_the_client_and_the_app_keeps_serving(client):
    with pytest.raises(Exception, match="the text query is empty"):
        client.predict("   ", "pcl", 3, api_name="/search_text")
    with pytest.raises(Exception, match="not in the list of choices|unknown objective"):
        client.predict("a star", "../../etc/passwd", 3, api_name="/search_text")
    gallery, _, _ = client.predict("a star", "pcl", 2, api_name="/search_text")
    assert len(gallery) == 2


def test_several_bundles_one_process(client, features_bundle):
    """/bundles lists both; a features-only bundle answers gallery-item queries through /compare and
    /search_item with bundle=, with its own defaults where a parameter is left out; new texts are refused."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    listed = client.predict(api_name="/bundles")
    assert [b["name"] for b in listed] == ["b", "feats"] and listed[0]["default"]
    assert listed[1]["capabilities"]["text_queries"] is False
    s = RetrievalService(load_bundle(features_bundle), "feats")
    item = s.bundle.items[5]["id"]
    out = client.predict(item_id=item, k=3, bundle="feats", api_name="/compare")  # objectives left out: all of its own
    assert list(out) == s.objectives
    for objective, result in out.items():
        assert [h["id"] for h in result["hits"]] == [h.id for h in s.search(s.item_query(item), objective, 3).hits]
    _, table, summary = client.predict(item, "text", bundle="feats", api_name="/search_item")
    assert f"gallery text {item}" in summary and "AP" in summary and len(table["data"]) == 12
    with pytest.raises(Exception, match="ships features only"):
        client.predict("a red star", bundle="feats", api_name="/search_text")
    with pytest.raises(Exception, match="unknown bundle 'nope'; choose one of: b, feats"):
        client.predict("a red star", bundle="nope", api_name="/search_text")
    assert client.predict(bundle="feats", api_name="/disagreements")["data"]  # its own pair of objectives
    gallery, _, _ = client.predict("a star", "pcl", 2, api_name="/search_text")  # the default is still the first
    assert len(gallery) == 2


def test_lab_train_reproduces_the_bundle_and_its_run_joins_this_client_only(client, app_url, small_bundle):
    import json
    stored = json.loads((small_bundle / "manifest.json").read_text())["objectives"]
    answer = client.predict("pcl", api_name="/lab_train")  # the bundle's own settings and seed
    assert answer["avg_map"] == pytest.approx(stored["pcl"]["avg_map"], abs=1e-9)
    assert answer["name"].startswith("lab ") and answer["epochs"] >= 1 and answer["seconds"] > 0
    other = client.predict("ce", "scale=2", 0.5, 1, 3, api_name="/lab_train")
    assert other["options"] == {"scale": 2.0} and other["settings"]["text_fraction"] == 0.5
    mine = client.predict("two hearts", [], 3, "heart", "", api_name="/compare")
    assert {answer["name"], other["name"]} <= set(mine)
    theirs = gradio_client.Client(app_url, verbose=False).predict("two hearts", [], 3, "heart", "", api_name="/compare")
    assert not any(name.startswith("lab ") for name in theirs)
    with pytest.raises(Exception, match=r"objective option 'margn': no selected objective \(pcl\) has it"):
        client.predict("pcl", "margn=0.3", api_name="/lab_train")
    with pytest.raises(Exception, match="text fraction must be in"):
        client.predict("pcl", "", 0, api_name="/lab_train")
