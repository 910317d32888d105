"""A comparison an expert can trust: tie-aware AP against a naive enumeration of orders, the statistics against
naive formulas, the tuning search's rule, the objectives' settings that act, and a tuned bundle's leaderboard."""
import itertools
import math

import numpy as np
import pytest
import torch

from cmr_demo import stats
from cmr_demo.metrics import average_precision, evaluate
from cmr_demo.train.objectives import OBJECTIVES, build_objective, option_defaults, option_grid
from cmr_demo.train.tuning import Search, search_all

from conftest import quick_job


# ------------------------------------------------------------------ AP with ties
def naive_expected_ap(scores: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """(AP, P@2) averaged over every order of the items that keeps the scores descending: each order of tied items
    counted once, by brute force."""
    aps, p2 = [], []
    for perm in itertools.permutations(range(len(scores))):
        s, r = scores[list(perm)], relevant[list(perm)]
        if np.any(np.diff(s) > 0):
            continue
        hits = np.cumsum(r)
        aps.append(float((hits / np.arange(1, len(r) + 1) * r).sum() / max(r.sum(), 1)))
        p2.append(float(r[:2].mean()))
    return float(np.mean(aps)), float(np.mean(p2))


@pytest.mark.parametrize("seed", range(12))
def test_ap_counts_ties_by_their_expectation(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    gallery_labels = rng.integers(0, 2, n)
    # gallery vectors from 3 directions only: many exact ties, between relevant and irrelevant items alike
    directions = np.eye(4, dtype=np.float32)[:3]
    gallery = directions[rng.integers(0, 3, n)]
    query = np.array([[0.9, 0.5, 0.1, 0.0]], np.float32)
    got = evaluate(query, gallery, [1], gallery_labels, ["a", "b"], ks=(2,), keep_per_query=True)
    scores = (gallery / np.linalg.norm(gallery, axis=1, keepdims=True)) @ (query[0] / np.linalg.norm(query[0]))
    ap, p2 = naive_expected_ap(scores.astype(np.float32), (gallery_labels == 1).astype(float))
    assert got["per_query_ap"]["i2t"][0] == pytest.approx(ap, abs=1e-6)
    assert got["p_at_k"]["i2t"]["2"] == pytest.approx(p2, abs=1e-6)
    assert average_precision(query, [1], gallery, gallery_labels)[0] == pytest.approx(ap, abs=1e-6)


def test_tied_relevant_and_irrelevant_items_score_the_same_in_either_gallery_order():
    """The gallery's order must not credit an objective: a relevant and an irrelevant item with the same caption."""
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    forward = average_precision([[1.0, 0.0]], [0], gallery, [0, 1, 1])[0]
    backward = average_precision([[1.0, 0.0]], [0], gallery[[1, 0, 2]], [1, 0, 1])[0]
    assert forward == pytest.approx(backward) == pytest.approx((1 + 0.5) / 2)


def test_the_large_gallery_path_agrees_with_the_reference_on_ties(monkeypatch):
    from cmr_demo import metrics
    rng = np.random.default_rng(3)
    gallery = np.eye(6, dtype=np.float32)[rng.integers(0, 6, 300)]
    labels = rng.integers(0, 4, 300)
    query, qlabels = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 4, 40)
    reference = evaluate(query, gallery, qlabels, labels, list("abcd"), keep_per_query=True)
    monkeypatch.setattr(metrics, "SORT_ALL_MAX_ITEMS", 10)
    fast = evaluate(query, gallery, qlabels, labels, list("abcd"), keep_per_query=True)
    np.testing.assert_allclose(fast["per_query_ap"]["i2t"], reference["per_query_ap"]["i2t"], atol=1e-6)
    for d in ("i2t", "t2i"):
        np.testing.assert_allclose(fast["per_query_ap"][d], reference["per_query_ap"][d], atol=1e-6)
        assert fast["p_at_k"][d] == pytest.approx(reference["p_at_k"][d], abs=1e-6)


# ------------------------------------------------------------------ statistics
def test_summary_is_the_sample_std_with_a_t_interval():
    s = stats.summary([0.70, 0.72, 0.75])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.72333333)
    assert s["std"] == pytest.approx(np.std([0.70, 0.72, 0.75], ddof=1))
    half = 4.302652729911275 * s["std"] / math.sqrt(3)  # t(0.975, 2)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((s["mean"] - half, s["mean"] + half))
    one = stats.summary([0.5])
    assert one["std"] == 0.0 and one["ci_low"] == one["ci_high"] == 0.5


def test_students_t_matches_scipy_over_the_degrees_of_freedom_the_app_meets():
    """stats computes Student's t itself (the app's start-up must not import scipy.stats): the same tails and
    quantiles as scipy's, for whole and Satterthwaite (fractional) degrees of freedom, far tails included."""
    from scipy.stats import t
    for df in (1, 1.5, 2, 3, 4.7, 9, 30, 199.3, 1599, 1e5):
        for x in (0.0, 0.01, 0.5, 1.0, 2.0, 3.5, 6.0, 12.0, -2.0):
            assert stats.t_sf(x, df) == pytest.approx(t.sf(x, df), rel=1e-8, abs=1e-300)
        for p in (0.01, 0.5, 0.6, 0.9, 0.975, 0.995, 0.9999):
            assert stats._t_quantile(p, df) == pytest.approx(t.ppf(p, df), rel=1e-9, abs=1e-12)


def test_paired_test_against_naive_formulas():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(3, 200))
    b = a - 0.05 + rng.normal(0, 0.02, size=(3, 200))
    t = stats.paired_test(a, b)
    d = a - b
    seed_part, query_part = d.mean(1).var(ddof=1) / 3, d.mean(0).var(ddof=1) / 200
    assert t["difference"] == pytest.approx(d.mean())
    assert t["se"] == pytest.approx(math.sqrt(seed_part + query_part))
    assert t["df"] == pytest.approx((seed_part + query_part) ** 2 / (seed_part ** 2 / 2 + query_part ** 2 / 199))
    assert t["p"] < 0.01
    assert stats.paired_test(a, a)["p"] == 1.0
    noise = stats.paired_test(a, a + rng.normal(0, 0.3, size=a.shape))  # no real difference: not significant
    assert noise["p"] > 0.05
    single = stats.paired_test(a[:1], b[:1])  # one seed: the paired t-test over queries
    assert single["df"] == pytest.approx(199)


def test_within_spread_means_the_seeds_disagree_on_the_sign():
    assert stats.within_spread([0.1, -0.05, 0.2]) and stats.within_spread([0.0, 0.1, 0.1])
    assert not stats.within_spread([0.1, 0.05, 0.2]) and not stats.within_spread([-0.1, -0.3, -0.01])


# ------------------------------------------------------------------ tuning
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_grid_holds_the_papers_setting_and_at_least_three_values_per_margin_scale_or_temperature(name):
    grid, defaults = option_grid(name), option_defaults(name)
    for key, values in grid.items():
        assert defaults[key] in values
        if key in ("margin", "scale", "temperature", "alpha"):
            assert len(values) >= 3
    if any(k in defaults for k in ("margin", "scale", "temperature", "alpha")):
        assert grid, f"{name} has a margin, scale or temperature but no grid"


def test_search_is_coordinate_wise_and_ties_keep_the_papers_setting():
    scores = {(32.0, 0.1): 0.5, (4.0, 0.1): 0.7, (8.0, 0.1): 0.7, (16.0, 0.1): 0.6,  # alpha 4 first of equals
              (4.0, 0.0): 0.7, (4.0, 0.2): 0.65}  # delta 0.0 ties the current 0.1: kept
    search = Search("proxy-anchor")
    asked = []

    def score_many(points):
        asked.append(len(points))
        return [scores[(p["alpha"], p["delta"])] for _, p in points]
    search_all([search], score_many)
    result = search.result()
    assert result["settings"] == {"alpha": 4.0, "delta": 0.1} and result["paper_settings"] == {
        "alpha": 32.0,
        "delta": 0.1,
    }
    assert result["selected_on"] == "validation" and len(result["trials"]) == 6 and asked == [4, 2]
    assert result["trials"][0] == {"settings": {"alpha": 32.0, "delta": 0.1}, "val_avg_map": 0.5}


def test_fixed_options_and_no_tune_are_kept_as_given():
    fixed = Search("tl", {"margin": 0.3})
    assert fixed.pending() == [{"margin": 0.3}] and fixed.grid == {}
    off = Search("pcl", tune=False)
    assert off.pending() == [{"temperature": 1.0}]
    off.record({"temperature": 1.0}, 0.4)
    assert off.pending() == [] and off.result()["untuned"] == "tuning was turned off"
    assert "Adam" in Search("ml").result()["untuned"]


# ------------------------------------------------------------------ objectives' settings that act
def test_cl_at_the_papers_margin_never_pushes_unit_vectors_apart_but_a_margin_that_acts_does():
    g = torch.Generator().manual_seed(0)
    img, txt = (torch.nn.functional.normalize(torch.randn(40, 16, generator=g), dim=1) for _ in range(2))
    labels = torch.arange(40) % 4
    paper = build_objective("cl", 4, 16)(img, txt, labels)
    assert float(paper["negative"]) == 0.0  # random unit vectors: cosine far below 0.9
    hadsell = build_objective("cl", 4, 16, {"margin": 1.0, "form": 1.0})(img, txt, labels)
    d = torch.cdist(img, txt)
    neg = labels[:, None] != labels[None, :]
    assert float(hadsell["negative"]) == pytest.approx(float(torch.relu(1.0 - d[neg]).pow(2).mean()), rel=1e-4)
    with pytest.raises(ValueError, match="form"):
        build_objective("cl", 4, 16, {"form": 2.0})(img, txt, labels)


def test_prototypes_follow_the_training_seed_unless_given():
    from cmr_demo.train.fit import TrainConfig, seeded_options
    assert seeded_options(TrainConfig(objective="pcl", seed=2))["prototype_seed"] == 2.0
    assert seeded_options(TrainConfig(objective="pcl", seed=2, objective_options={"prototype_seed": 5.0}))[
        "prototype_seed"] == 5.0
    assert "prototype_seed" not in seeded_options(TrainConfig(objective="tl", seed=2))
    assert seeded_options(TrainConfig(objective="pcl+0.5*tl", seed=1))["prototype_seed"] == 1.0


def test_imbalance_standardises_on_the_rows_that_train():
    from cmr_demo.train.fit import Tensors, TrainConfig, fit, modality_masks
    from cmr_demo.train.heads import HeadConfig
    g = torch.Generator().manual_seed(0)
    n = 60
    text = torch.randn(n, 8, generator=g)
    data = Tensors(torch.randn(n, 8, generator=g), text, torch.arange(n) % 3)
    cfg = TrainConfig(epochs=1, text_fraction=0.5)
    result = fit(cfg, HeadConfig(image_dim=8, text_dim=8, hidden_dim=8, embed_dim=8, standardize=True), 3, data, data,
                 progress=False, log=lambda _: None)
    keep = modality_masks(n, cfg)[1]
    state = result.heads.state_dict()
    mean_key = next(k for k in state if k.startswith("text") and k.endswith("mean"))
    assert torch.allclose(state[mean_key], text[keep].mean(0), atol=1e-6)
    assert not torch.allclose(state[mean_key], text.mean(0), atol=1e-3)


# ------------------------------------------------------------------ a tuned bundle's leaderboard
@pytest.fixture(scope="module")
def tuned_bundle(tmp_path_factory):
    """A features-only bundle with three seeds, every objective with a grid tuned on validation."""
    from cmr_demo.bundle.build import build
    out = tmp_path_factory.mktemp("tuned") / "b"
    build(quick_job("synthetic:400", "ml,tl,proxy-anchor", epochs=4), out, seeds=[0, 1, 2])
    return out


def test_the_manifest_records_grid_trials_choice_and_the_papers_runs(tuned_bundle):
    import json
    from cmr_demo.files import load_tensors
    manifest = json.loads((tuned_bundle / "manifest.json").read_text())
    pa = manifest["objectives"]["proxy-anchor"]
    assert pa["tuning"]["grid"]["alpha"] == [4.0, 8.0, 16.0, 32.0]
    chosen = pa["tuning"]["settings"]
    best = max(pa["tuning"]["trials"], key=lambda t: t["val_avg_map"])["val_avg_map"]
    assert next(t for t in pa["tuning"]["trials"] if t["settings"] == chosen)["val_avg_map"] == best
    config = json.loads((tuned_bundle / pa["dir"] / "config.json").read_text())
    assert {k: config["train"]["objective_options"][k] for k in chosen} == chosen  # the served run is the chosen one
    tensors, meta = load_tensors(tuned_bundle / pa["dir"] / "seeds.safetensors")
    assert meta["seeds"] == "0,1,2" and tuple(tensors["i2t"].shape) == (3, 100)
    runs = list(pa["seeds"]["runs"].values())
    assert [float((tensors["i2t"][s].double().mean() + tensors["t2i"][s].double().mean()) / 2) for s in range(3)] == \
        pytest.approx(runs, abs=1e-6)
    assert ("paper" in pa) == (chosen != pa["tuning"]["paper_settings"])
    assert manifest["objectives"]["ml"]["tuning"]["grid"] == {}


def test_leaderboard_ranks_by_the_mean_with_intervals_and_ties(tuned_bundle):
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    rows = RetrievalService(load_bundle(tuned_bundle)).leaderboard(with_paper=True)
    means = [r["mean"] for r in rows]
    assert means == sorted(means, reverse=True)
    for r in rows:
        assert r["mean"] == pytest.approx(np.mean(r["per_seed"])) and r["n"] == len(r["per_seed"]) == 3
        assert r["std"] == pytest.approx(np.std(r["per_seed"], ddof=1))
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
    assert rows[0]["tied_with_best"] is True
    assert all(isinstance(r["tied_with_best"], bool) for r in rows)
    assert {r["objective"] for r in rows if r["paper_setting"]} == {
        r["objective"] for r in rows if r["variant"] == "chosen" and r["settings"] != _paper(r)}


def _paper(row):
    return {k: option_defaults(row["objective"])[k] for k in row["settings"]}


def test_the_json_api_answers_the_pages_leaderboard_and_item_seed_ranges(tuned_bundle):
    import fastapi
    from fastapi.testclient import TestClient

    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.api import install
    from cmr_demo.serve.service import RetrievalService
    from cmr_demo.ui.leaderboard import leaderboard_rows
    s = RetrievalService(load_bundle(tuned_bundle), "tuned")
    app = fastapi.FastAPI()
    install(app, lambda: {"tuned": s})
    with TestClient(app) as client:
        answer = client.get("/api/v1/leaderboard", params={"bundle": "tuned"}).json()
        assert answer["bundle"] == "tuned"
        assert [r["label"] for r in answer["rows"]] == [row[0] for row in leaderboard_rows(s)]  # the page's order
        for row in answer["rows"]:
            assert {"objective", "per_seed", "mean", "std", "ci_low", "ci_high", "tied_with_best", "settings", "grid",
                    "selected_on"} <= set(row)
        assert client.get("/api/v1/leaderboard", params={"bundle": "nope"}).status_code == 400
        item = s.bundle.items[3]["id"]
        hit = client.post("/api/v1/search/item", json={"id": item, "objective": "tl", "bundle": "tuned"}).json()
    low, high = hit["ap_over_seeds"]
    seeds = s.bundle.objectives["tl"].seed_ap["i2t"][:, 3]
    assert (low, high) == pytest.approx((seeds.min(), seeds.max())) and low <= hit["ap"] + 0.02


def test_disagreements_say_whether_the_seeds_agree(tuned_bundle):
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    s = RetrievalService(load_bundle(tuned_bundle))
    rows = s.disagreements("tl", "ml", "t2i", n=8)
    a, b = (s.bundle.objectives[o].seed_ap["t2i"] for o in ("tl", "ml"))
    for r in rows:
        per_seed = a[:, r["row"]] - b[:, r["row"]]
        assert r["within_seed_spread"] == (not (np.all(per_seed > 0) or np.all(per_seed < 0)))
    from cmr_demo.serve.comparison import class_ap
    names, objectives, means, halves = class_ap(s.bundle, "avg")
    labels = np.tile(s.bundle.labels, 2)
    per_query = np.concatenate([s.bundle.objectives["tl"].seed_ap[d] for d in ("i2t", "t2i")], axis=1)
    first = per_query[:, labels == 0].mean(1)
    assert means[0, objectives.index("tl")] == pytest.approx(first.mean())
    assert halves[0, objectives.index("tl")] == pytest.approx(stats.summary(first)["ci_high"] - first.mean())


def test_a_study_trains_each_objective_at_the_setting_a_bundle_chose(tuned_bundle):
    import json

    from cmr_demo.experiments.study import Run, job_for, settings_from
    chosen = settings_from(tuned_bundle)
    manifest = json.loads((tuned_bundle / "manifest.json").read_text())
    assert chosen["proxy-anchor"] == manifest["objectives"]["proxy-anchor"]["tuning"]["settings"]
    assert "ml" not in chosen  # nothing to tune
    base = quick_job("synthetic:400", "tl,proxy-anchor")
    job = job_for(base, Run("proxy-anchor", "modality", 0.5, {"text_fraction": 0.5}), 1, chosen)
    assert job.objectives.options_for("proxy-anchor") == chosen["proxy-anchor"] and job.train.text_fraction == 0.5
    swept = job_for(base, Run("tl", "parameter", 0.7, {"margin": 0.7}), 0, chosen)  # a swept option goes over it
    assert swept.objectives.options_for("tl") == {"margin": 0.7}


@pytest.mark.parametrize("name", ["demo", "wikipedia"])
def test_the_embedded_bundles_leaderboards_carry_their_evidence(name):
    """What the comparison issue asks of both shipped bundles: rows by the mean over >= 3 seeds, sample std, an
    interval holding the mean, the best tied with itself and some row not, a grid of >= 3 values with the choice in it
    for every objective with a margin, scale or temperature."""
    from pathlib import Path

    from cmr_demo.serve.service import load
    s = load(Path(__file__).resolve().parents[1] / "assets" / name, backbone=False)
    rows = s.leaderboard(with_paper=True)
    assert [r["mean"] for r in rows] == sorted((r["mean"] for r in rows), reverse=True)
    assert rows[0]["tied_with_best"] is True and any(r["tied_with_best"] is False for r in rows)
    for r in rows:
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
        if r["kind"] == "zero-shot":
            assert r["n"] == 1 and r["grid"] == {}
            continue
        assert r["n"] >= 3 and r["std"] == pytest.approx(np.std(r["per_seed"], ddof=1))
        for key in ("margin", "scale", "temperature", "alpha"):
            if key in option_defaults(r["objective"]) and r["variant"] == "chosen":
                assert len(r["grid"][key]) >= 3 and r["settings"][key] in r["grid"][key]
    if name == "demo":
        rng = np.random.default_rng(1)
        rows_160 = rng.choice(s.size, 160, replace=False)
        gap = lambda a, b: np.mean([s.item_ap(a, d)[rows_160].mean() - s.item_ap(b, d)[rows_160].mean()  # noqa: E731
                                    for d in ("i2t", "t2i")])
        best = next(r["objective"] for r in rows if not r["paper_setting"] and r["kind"] != "zero-shot")
        assert gap("cl", "ml") >= 0.05 and gap(best, "proxy-anchor") <= 0.08
        from cmr_demo.serve.analytics import spread
        paper = spread(s.bundle)
        assert 0.60 <= paper["best_map"] <= 0.92 and paper["spread"] >= 0.08 and paper["disagreeing_share"] >= 0.15


def test_a_one_seed_row_is_not_tested_and_a_hybrids_clashing_option_keeps_each_parts_default(tuned_bundle):
    """One seed says nothing about seed noise, so its difference from the best is not called significant; a hybrid
    whose parts share an option with different defaults (ce's scale 1, proxy-nca's 3) neither tunes nor sets it."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.comparison import leaderboard
    bundle = load_bundle(tuned_bundle)
    name = leaderboard(bundle, with_paper=False)[-1]["objective"]  # the worst: one seed of it stays below the best
    view = bundle.objectives[name]
    view.seed_ap, view.entry = {}, {k: v for k, v in view.entry.items() if k not in ("seeds", "paper")}
    row = next(r for r in leaderboard(bundle, with_paper=False) if r["objective"] == name)
    assert row["n"] == 1 and row["tied_with_best"] is None and row["p_value"] is None
    search = Search("ce+proxy-nca")
    assert search.grid == {} and "scale" not in search.paper and search.pending() == [{}]
    assert Search("tl", {"margin": 0.3}).result()["untuned"] == "its options were given"


def test_standardisation_never_rests_on_one_kept_row():
    from cmr_demo.train.fit import Tensors, kept_rows
    data = Tensors(torch.randn(5, 3), torch.randn(5, 3), torch.arange(5))
    one = torch.tensor([True, False, False, False, False])
    image, text = kept_rows(data, None, one)
    assert image.shape[0] == 5 and text.shape[0] == 5  # one row has no spread: all rows
    assert kept_rows(data, None, one | torch.tensor([False, True, False, False, False]))[1].shape[0] == 2
