"""The frozen backbone as a `zero-shot` column, and objectives trained with several seeds (mean ± std)."""
import json

import numpy as np
import pytest
import torch

from cmr_demo.backbone.clip import load_backbone
from cmr_demo.bundle.build import build, seed_summary
from cmr_demo.bundle.layout import backbone_spec
from cmr_demo.bundle.load import load_bundle
from cmr_demo.bundle.verify import verify
from cmr_demo.serve.service import RetrievalService
from conftest import quick_job


@pytest.fixture(scope="module")
def service(small_bundle):
    return RetrievalService(load_bundle(small_bundle))


def _naive_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if relevant[i]:
            hits += 1
            total += hits / rank
    return total / max(1, relevant.sum())


def test_zero_shot_ranks_by_the_backbones_own_cosine(service, small_bundle):
    assert service.objectives[0] == "zero-shot" and service.bundle.objectives["zero-shot"].kind == "zero-shot"
    backbone = load_backbone(backbone_spec(small_bundle))
    pictures = [service.bundle.image_path(n) for n in range(service.size)]
    gallery = backbone.encode_images([str(p) for p in pictures], progress=False)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    for text in ("a red star", "two hearts on a striped background"):
        query = backbone.encode_texts([text], progress=False)[0]
        naive = gallery @ (query / np.linalg.norm(query))
        result = service.search(service.text_query(text), "zero-shot", 10)
        for hit in result.hits:  # each score is the cosine, and nothing outside the top 10 scores higher
            assert hit.score == pytest.approx(naive[hit.index], abs=3e-3)
        assert min(h.score for h in result.hits) >= np.sort(naive)[-11] - 3e-3


def test_zero_shot_metrics_are_the_naive_ap_of_the_features(service):
    view = service.bundle.objectives["zero-shot"]
    labels = service.bundle.labels
    img = service.bundle.image_features / np.linalg.norm(service.bundle.image_features, axis=1, keepdims=True)
    txt = service.bundle.text_features / np.linalg.norm(service.bundle.text_features, axis=1, keepdims=True)
    i2t = [_naive_ap(txt @ img[q], labels == labels[q]) for q in range(len(labels))]
    t2i = [_naive_ap(img @ txt[q], labels == labels[q]) for q in range(len(labels))]
    # stored features are float16; the build scored float32 features, so near-ties may swap: close, not equal
    assert view.metrics["i2t_map"] == pytest.approx(np.mean(i2t), abs=0.02)
    assert view.metrics["t2i_map"] == pytest.approx(np.mean(t2i), abs=0.02)
    assert view.seeds is None and view.metrics["best_epoch"] is None


def test_zero_shot_is_everywhere_an_objective_is(service):
    assert "zero-shot" in [r["objective"] for r in service.leaderboard()]
    names, objectives, grid = service.class_ap()
    assert "zero-shot" in objectives and grid.shape == (len(names), len(objectives))
    rows = service.disagreements("zero-shot", service.best, "t2i", n=5)
    assert len(rows) == 5 and all(f"ap_{service.best}" in r for r in rows)
    assert service.map_view("zero-shot", service.text_query("a star"), 5)["query"]["hits"]
    info = service.query_info(service.text_query("a red star"), "zero-shot")
    assert info.class_source == "nearest gallery items" and 0 < info.confidence <= 1  # read from its own ranking
    assert "zero-shot" in service.compare(service.item_query(0), k=3)


def test_a_features_only_bundle_has_no_zero_shot(features_bundle):
    assert "zero-shot" not in json.loads((features_bundle / "manifest.json").read_text())["objectives"]


def test_seed_summary_is_the_mean_and_sample_std():
    s = seed_summary({0: 0.5, 1: 0.7, 2: 0.6})
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.6)
    assert s["std"] == pytest.approx(np.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2 + 0) / 2))
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    assert s["runs"] == {"0": 0.5, "1": 0.7, "2": 0.6}


def test_a_bundle_built_with_seeds_records_each_and_serves_the_first(tmp_path):
    out = tmp_path / "seeded"
    manifest = build(quick_job("shapes:200", "pcl,ce", "nano-clip:random"), out, seeds=[0, 1, 2])
    assert verify(out) == []
    for name in ("pcl", "ce"):
        entry = manifest["objectives"][name]
        runs = entry["seeds"]["runs"]
        assert set(runs) == {"0", "1", "2"} and entry["seeds"]["served"] == 0
        assert runs["0"] == entry["avg_map"]  # the served heads are seed 0's
        assert entry["seeds"]["mean"] == pytest.approx(np.mean(list(runs.values())))
        assert entry["seeds"]["std"] == pytest.approx(np.std(list(runs.values()), ddof=1))
    assert "--seeds" in manifest["command"] and "0,1,2" in manifest["command"]
    card = (out / "README.md").read_text()
    pcl = manifest["objectives"]["pcl"]["seeds"]
    assert f"{pcl['mean']:.3f} ± {pcl['std']:.3f}" in card
    board = RetrievalService(load_bundle(out)).leaderboard()
    assert {r["objective"]: r for r in board}["ce"]["n"] == 3
    with torch.no_grad():  # a seed really changes the run: the three are not all equal
        assert len(set(manifest["objectives"]["pcl"]["seeds"]["runs"].values())) > 1
