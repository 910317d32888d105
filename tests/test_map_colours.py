"""Maps coloured by class, modality, per-item AP, AP difference and rank, and a selected region: each value checked
against the search a user would run for that point (Compare's AP, search's ranks), through the service, the
figure and `POST /api/v1/map`."""
import json

import numpy as np
import pytest

from cmr_demo.bundle.load import load_bundle
from cmr_demo.serve import map_colours
from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import map_figure, region


@pytest.fixture(scope="module")
def service(small_bundle):
    return RetrievalService(load_bundle(small_bundle))


def test_ap_colours_are_the_ap_compare_shows_for_each_point(service):
    """Each point is a query: an item's picture searching the texts, its text searching the pictures."""
    view = service.map_view("pcl", colour_by="ap")
    assert view["colour"]["scale"] == "sequential" and "AP" in view["colour"]["title"]
    for modality in ("image", "text"):
        values = view["colour"]["values"][modality]
        assert values.shape == (service.size,) and ((0 <= values) & (values <= 1)).all()
        for row in (0, 7, service.size - 1):
            compared = service.compare(service.item_query(row, modality), ["pcl"], 3)["pcl"]
            assert values[row] == pytest.approx(compared.ap, abs=1e-12)


def test_ap_difference_is_centred_on_zero_and_names_both_objectives(service):
    view = service.map_view("pcl", colour_by="ap_diff", other="ce")
    colour = view["colour"]
    assert (
        colour["scale"] == "diverging"
        and colour["other"] == "ce"
        and "pcl" in colour["title"]
        and "ce" in colour["title"]
    )
    for modality in ("image", "text"):
        expected = service.map_view("pcl", colour_by="ap")["colour"]["values"][modality] - \
            service.map_view("ce", colour_by="ap")["colour"]["values"][modality]
        np.testing.assert_array_equal(colour["values"][modality], expected)
    assert np.abs(np.concatenate(list(colour["values"].values()))).max() > 0  # two objectives that differ somewhere
    default = service.map_view("ce", colour_by="ap_diff")["colour"]["other"]
    assert default != "ce" and default in service.objectives  # the best other objective when none is named


def test_maps_side_by_side_share_one_ap_difference(service):
    """One colour bar: every map shows AP base − AP other (the main objective against the second), the map of the
    second objective included; naming the base itself as `other` falls back to the best other objective."""
    main = service.map_view("pcl", colour_by="ap_diff", other="ce", base="pcl")["colour"]
    beside = service.map_view("ce", colour_by="ap_diff", other="ce", base="pcl")["colour"]
    assert (main["base"], main["other"]) == (beside["base"], beside["other"]) == ("pcl", "ce")
    for m in ("image", "text"):
        np.testing.assert_array_equal(main["values"][m], beside["values"][m])
    same = service.map_view("pcl", colour_by="ap_diff", other="pcl")["colour"]
    assert same["other"] != "pcl"


def test_rank_colours_are_the_search_ranks_and_need_a_query(service):
    q = service.text_query("a red star on a striped background")
    view = service.map_view("pcl", q, k=8, colour_by="rank")
    ranks = view["colour"]["values"]["image"]
    assert sorted(ranks.tolist()) == list(range(1, service.size + 1))  # a permutation: every item ranked once
    assert [int(ranks[r]) for r in view["query"]["hits"]] == list(range(1, 9))  # search's own top 8, in order
    item = service.map_view("pcl", service.item_query(3, "text"), colour_by="rank")["colour"]["values"]
    assert np.isnan(item["text"][3]) and np.isfinite(np.delete(item["text"], 3)).all()  # the query is not ranked
    with pytest.raises(InputError, match="needs a query"):
        service.map_view("pcl", colour_by="rank")


@pytest.mark.parametrize("colour_by, message", [("colour", "unknown color_by"), (["ap"], "color_by"),
                                                ("AP", "unknown color_by")])
def test_an_unknown_colouring_is_refused_naming_the_valid_ones(service, colour_by, message):
    with pytest.raises(InputError, match=message) as err:
        service.map_view("pcl", colour_by=colour_by)
    assert "ap_diff" in str(err.value)


@pytest.mark.parametrize("sent, message", [
    ("not json", "not one the map sent"), ('{"a": 1}', "list of at most"), ('[["x"]]', "id, 'image' | 'text'"),
    ('[[1, "image"]]', "id, 'image' | 'text'"), ('[["nope", "image"]]', "no gallery item has id"),
    ('[["%s", "audio"]]', "id, 'image' | 'text'"), (json.dumps([["a", "image"]] * 20_001), "list of at most"),
    (5, "not one the map sent"), ("[" * 100_000, "not one the map sent"), ('[["x", []]]', "id, 'image' | 'text'"),
    ('[["x", {}]]', "id, 'image' | 'text'")])
def test_a_selection_the_map_did_not_send_is_refused(service, sent, message):
    if isinstance(sent, str) and "%s" in sent:
        sent = sent % service.bundle.items[0]["id"]
    with pytest.raises(InputError, match=message):
        map_colours.parse_selection(sent, service)


def test_a_selection_lists_its_points_with_ap_per_objective(service):
    items = service.bundle.items
    sent = json.dumps([[items[r]["id"], m] for r in (1, 2, 5) for m in ("image", "text")] + [[items[1]["id"], "image"]])
    selection = map_colours.parse_selection(sent, service)
    assert len(selection) == 6  # the repeated point once
    rows, means = map_colours.selection_summary(service, selection, ["pcl", "ce"])
    diffs = [abs(r["ap"]["pcl"] - r["ap"]["ce"]) for r in rows]
    assert diffs == sorted(diffs, reverse=True)  # where the two differ most first
    for name in ("pcl", "ce"):
        aps = map_colours.point_aps(service, name)
        assert means[name] == pytest.approx(np.mean([aps[m][r] for r, m in selection]))
    assert "6 points selected" in region.region_markdown(rows, means) and "Mean AP" in region.region_markdown(
        rows, means
    )
    thumbs, headers, table = region.region_listing(service, rows, ["pcl", "ce"])
    assert len(thumbs) == len(table) == 6 and headers[3:5] == ["AP pcl", "AP ce"]


def test_the_figure_draws_one_colour_bar_and_the_region_on_every_map(service):
    q = service.text_query("two hearts")
    maps = [service.map_view(o, q, 5, colour_by="ap_diff", other="ce" if o != "ce" else "pcl") for o in ("pcl", "ce")]
    region = [(1, "image"), (4, "text")]
    fig = map_figure.map_figure(maps, service.bundle.items, selection=region)
    assert fig.layout.coloraxis.cmid == 0 and fig.layout.coloraxis.colorscale  # diverging, centred on 0
    outlined = [t for t in fig.data if t.name == "selected region"]
    assert {t.xaxis or "x" for t in outlined} == {"x", "x2"}  # on both maps
    coloured = [t for t in fig.data if getattr(t.marker, "coloraxis", None) == "coloraxis"]
    assert len(coloured) == 4  # two modalities x two maps
    ranked = map_figure.map_figure([service.map_view("pcl", q, 5, colour_by="rank")], service.bundle.items)
    assert list(ranked.layout.coloraxis.colorbar.ticktext)[:2] == ["1", "3"]  # ranks on a log scale
    by_modality = map_figure.map_figure([service.map_view("pcl", colour_by="modality")], service.bundle.items)
    assert {t.marker.color for t in by_modality.data if t.name in ("images", "texts") and t.x is not None and
            len(t.x)} == set(map_figure.MODALITY_COLOURS.values())


def test_the_api_answer_holds_every_point_with_its_value(service):
    view = service.map_view("pcl", service.item_query(2, "image"), 4, colour_by="ap_diff", other="ce")
    answer = map_colours.answer(service, view, limit=10)
    assert answer["shown_items"] <= 10 + 4 and answer["items"] == service.size
    ids = {p["id"] for p in answer["points"]}
    assert set(answer["query"]["hits"]) <= ids  # the query's top-k always among the points
    row = {it["id"]: n for n, it in enumerate(service.bundle.items)}
    for p in answer["points"]:
        assert p["value"] == pytest.approx(view["colour"]["values"][p["modality"]][row[p["id"]]], abs=1e-4)
        assert p["class"] == service.class_names[int(service.bundle.labels[row[p["id"]]])]
    by_class = map_colours.answer(service, service.map_view("pcl"), limit=1000)
    assert len(by_class["points"]) == 2 * service.size and all(p["value"] == p["class"] for p in by_class["points"])


def _style_of(trace: dict, key: str):
    value = trace
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value.tolist() if hasattr(value, "tolist") else (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize("start, to", [("class", "ap"), ("ap", "modality"), ("modality", "ap_diff"),
                                       ("ap_diff", "class"), ("rank", "class")])
def test_a_recolouring_turns_the_drawn_map_into_the_map_of_the_new_colouring(service, start, to):
    """The page recolours a drawn map in place (map_figure.recolouring, applied by browser.RECOLOUR_JS) instead of
    drawing a new figure: applied to the figure of one colouring, it must give, trace by trace, the styles the
    figure of the other colouring has, and the same colour bar."""
    q = service.text_query("two hearts")
    views = {by: [service.map_view(o, q, 5, colour_by=by, other="ce" if o != "ce" else "pcl") for o in ("pcl", "ce")]
             for by in (start, to)}
    drawn = map_figure.map_figure(views[start], service.bundle.items, drawing="d1").to_dict()
    wanted = map_figure.map_figure(views[to], service.bundle.items, drawing="d1").to_dict()
    payload = map_figure.recolouring(views[to], drawing="d1")
    styles = {**payload["traces"], **payload["legend"]}
    assert {t.get("meta") for t in drawn["data"] if str(t.get("meta", "")).startswith(("p", "legend"))} == set(styles)
    for got, want in zip(drawn["data"], wanted["data"]):
        assert got.get("meta") == want.get("meta")
        style = styles.get(got.get("meta"))
        if style is None:  # the query, its top-k, a selection: not a colouring's
            continue
        for key in payload["keys"]:
            expected = _style_of(want, key)
            assert style[key] == expected or (style[key] is None and expected in (None, True)), (got["meta"], key)
    assert (payload["layout"]["coloraxis"] is None) == ("coloraxis" not in wanted["layout"])
    if payload["layout"]["coloraxis"] is not None:  # (plotly.py spells a named colour scale out)
        axis, want = payload["layout"]["coloraxis"], wanted["layout"]["coloraxis"]
        assert axis["colorbar"]["title"]["text"] == want["colorbar"]["title"]["text"]
        assert (axis.get("cmin"), axis.get("cmax"), axis.get("cmid")) == (want.get("cmin"), want.get("cmax"),
                                                                          want.get("cmid"))
    assert payload["layout"]["meta"] == wanted["layout"]["meta"]
