"""The objective lab in-process: it reproduces the bundle's runs, stops when asked, checks what users type,
and its runs join one session's service without touching the bundle or anyone else's view."""
import json
import shutil
import threading

import numpy as np
import pytest

from cmr_demo.serve import lab
from cmr_demo.bundle.layout import LAB_FEATURES
from cmr_demo.bundle.build import add_lab
from cmr_demo.bundle.verify import verify
from cmr_demo.bundle.load import load_bundle
from cmr_demo.files import load_tensors
from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.placement import place_points
from cmr_demo.serve.service import RetrievalService
from conftest import quick_job


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return load_bundle(small_bundle)


@pytest.mark.parametrize("objective", ["pcl", "ce", "pcl+0.5*tl"])
def test_the_bundles_own_settings_reproduce_its_stored_metrics(bundle, objective):
    """One training code path: the lab with the bundle's settings and seed gives what the builder stored."""
    train, heads = lab.settings_for(bundle, objective)
    run = lab.train_lab(bundle, train, heads, f"lab 1: {objective}")
    stored = bundle.manifest["objectives"][objective]
    for key in ("i2t_map", "t2i_map", "avg_map"):
        assert run.metrics[key] == pytest.approx(stored[key], abs=1e-9), key
    assert run.stopped is None and run.view.image_emb.shape == bundle.objectives[objective].image_emb.shape


def test_settings_are_checked_in_the_apps_words(bundle):
    train, _ = lab.settings_for(bundle, "tl", "margin=0.3", text_fraction=0.5, lr="0.001", epochs=7.0)
    assert train.objective_options == {"margin": 0.3} and train.text_fraction == 0.5 and train.lr == 0.001
    assert train.epochs == 7 and isinstance(train.epochs, int)
    for args, kwargs, words in [(("pcl", "margn=0.3"), {}, "objective option 'margn': no selected objective (pcl) "
                                                           "has it; their options: ['prototype_seed', 'temperature']"),
                                (("pcl", "temperature"), {}, "an objective option takes KEY=VALUE, got 'temperature'"),
                                (("pcl", "temperature=nan"), {}, "'nan' is not a finite number"),
                                (("pcl", ["margin=1"]), {}, "options are text like"),
                                (("pcl",), {"text_fraction": 0}, "text fraction must be in (0, 1]"),
                                (("pcl",), {"image_fraction": 1.5}, "image fraction must be in (0, 1]"),
                                (("pcl",), {"batch_size": "many"}, "batch size must be a whole number"),
                                (("pcl",), {"seed": 1.5}, "seed must be a whole number"),
                                (("pcl",), {"embed_dim": 10 ** 6}, "embed dim must be from 2 to 1024"),
                                (("nope",), {}, "unknown objective 'nope'"),
                                (("",), {}, "choose an objective")]:
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                           .replace("]", r"\]")):
            lab.settings_for(bundle, *args, **kwargs)


def test_a_run_stops_when_asked_or_at_the_time_cap_and_keeps_its_best_epoch(bundle):
    train, heads = lab.settings_for(bundle, "pcl", epochs=50, patience=50)
    stop, seen = threading.Event(), []

    def on_epoch(row):
        seen.append(row)
        if len(seen) == 2:
            stop.set()
    run = lab.train_lab(bundle, train, heads, "lab 1: pcl", on_epoch=on_epoch, stop=stop)
    assert run.stopped == "stopped on request" and len(run.history) == 2 and run.metrics["epochs_run"] == 2
    stop.set()  # a Stop before the first epoch ends: nothing to keep, said so
    with pytest.raises(InputError, match="stopped on request before it finished its first epoch"):
        lab.train_lab(bundle, train, heads, "lab 2: pcl", stop=stop)
    with pytest.raises(InputError, match="time cap: stopped after 0 s before it finished its first epoch"):
        lab.train_lab(bundle, train, heads, "lab 3: pcl", max_seconds=0.0)


def test_a_hybrid_is_bounded():
    assert lab.check_objective(" pcl+0.5*tl ") == "pcl+0.5*tl"
    with pytest.raises(InputError, match="at most 4 parts"):
        lab.check_objective("ce+ce+ce+ce+ce")
    with pytest.raises(InputError, match="characters long"):
        lab.check_objective("+".join(["ce"] * 100))


def test_a_run_joins_one_sessions_service_only(bundle):
    base = RetrievalService(bundle, "b")
    train, heads = lab.settings_for(bundle, "ce", seed=5)
    first = lab.train_lab(bundle, train, heads, "probe")
    runs = lab.SessionRuns(max_bytes=3 * lab.run_bytes(first), per_bundle=2)
    made = []
    for _ in range(3):
        made.append(lab.train_lab(bundle, train, heads, runs.next_name("alice", "ce")))
        mine = runs.add("alice", base, made[-1])
    assert [r.name for r in runs._runs["alice"]["b"]] == ["lab 2: ce", "lab 3: ce"]  # the newest two are kept
    assert mine.objectives == [*base.objectives, "lab 2: ce", "lab 3: ce"]
    assert runs.service("bob", base) is base and base.objectives == list(bundle.objectives)  # nobody else sees it
    assert "lab 1: ce" not in bundle.objectives  # the bundle is not changed
    name = made[-1].name
    view = made[-1].view
    q = mine.item_query(3, "text")
    result = mine.search(q, name, 5)
    scores = view.image_emb @ view.text_emb[3]
    assert [h.index for h in result.hits] == np.argsort(-scores, kind="stable")[:5].tolist()
    board = {r["objective"]: r for r in mine.leaderboard()}
    assert board[name]["avg_map"] == pytest.approx(made[-1].metrics["avg_map"])
    assert mine.disagreements(name, "pcl") and mine.class_ap("avg")[1][-1] == name
    assert mine.map_view(name, q)["image_xy"].shape == (len(bundle.items), 2)
    runs.add("carol", base, made[0])
    assert runs.service("alice", base) is not base  # 3 runs kept: within the budget
    runs.add("dave", base, made[0])  # 4 runs: over the budget, the least recently active session's go
    assert runs.service("alice", base) is base and runs.service("dave", base) is not base


def test_placed_points_land_among_their_neighbours():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    emb = np.repeat(centres, 5, axis=0) + 0.01 * rng.normal(size=(15, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    coords = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 5, axis=0)
    placed = place_points(emb, coords, k=4)
    assert np.allclose(placed, coords, atol=1e-3)


def test_add_lab_gives_an_older_bundle_the_features_it_was_trained_on(small_bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(small_bundle, old)
    original, _ = load_tensors(small_bundle / LAB_FEATURES)
    (old / LAB_FEATURES).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"][LAB_FEATURES]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert not lab.has_lab(load_bundle(old, load_backbone=False))
    add_lab(old)
    again, _ = load_tensors(old / LAB_FEATURES)
    assert set(again) == set(original) and all(np.array_equal(again[k].numpy(), original[k].numpy()) for k in original)
    assert verify(old) == [] and lab.has_lab(load_bundle(old, load_backbone=False))


def test_a_bundle_built_with_its_own_validation_share_is_reproduced(tmp_path):
    """The lab features hold the splits the builder's training used (here a 30 % validation share)."""
    from cmr_demo.bundle.build import build
    out = build(quick_job("synthetic:300", embed_dim=32, hidden_dim=16, val_fraction=0.3), tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    data = lab.lab_data(bundle)
    share = len(data["val"].labels) / (len(data["val"].labels) + len(data["train"].labels))
    assert abs(share - 0.3) < 0.02  # per class, rounded (the default would be 0.1)
    run = lab.train_lab(bundle, *lab.settings_for(bundle, "pcl"), "lab 1: pcl")
    assert run.metrics["avg_map"] == pytest.approx(out["objectives"]["pcl"]["avg_map"], abs=1e-9)
