"""Feature extraction through a real (tiny, random) backbone, and the on-disk cache."""
import numpy as np
import pytest
from PIL import Image

import cmr_demo.backbone.clip as backbone_mod
from cmr_demo.data import Dataset, Split
from cmr_demo.backbone.features import dataset_features


def media_dataset(tmp_path, caption_suffix=""):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        p = tmp_path / f"img{i}.png"
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(p)
        paths.append(str(p))
    texts = [f"item {i} of class {i % 3}{caption_suffix}" for i in range(12)]
    split = Split(ids=[f"i{i}" for i in range(12)], labels=np.arange(12) % 3, class_names=["a", "b", "c"],
                  images=paths, texts=texts)
    return Dataset(spec="test", train=split.subset(range(8)), test=split.subset(range(8, 12)))


def test_extract_then_reuse_cache_without_loading_the_model(tmp_path, monkeypatch):
    data = media_dataset(tmp_path)
    feats, source = dataset_features(data, "nano-clip:random", progress=False)
    assert feats["train"][0].shape == (8, 32) and feats["test"][1].shape == (4, 32)
    assert source.kind == "backbone" and source.name == "nano-clip:random"

    def no_model(*a, **k):
        raise AssertionError("cache hit expected: the backbone must not be loaded")
    monkeypatch.setattr(backbone_mod, "load_backbone", no_model)
    again, _ = dataset_features(data, "nano-clip:random", progress=False)
    np.testing.assert_array_equal(again["train"][0], feats["train"][0])
    with pytest.raises(AssertionError, match="cache hit expected"):  # changed captions miss the cache
        dataset_features(media_dataset(tmp_path, " (edited)"), "nano-clip:random", progress=False)


def test_live_encoding_matches_cached_features(tmp_path):
    data = media_dataset(tmp_path)
    feats, _ = dataset_features(data, "nano-clip:random", progress=False)
    live = backbone_mod.load_backbone("nano-clip:random")
    with Image.open(data.test.images[0]) as im:
        np.testing.assert_allclose(live.encode_images([im.copy()], progress=False)[0], feats["test"][0][0], atol=1e-5)
    np.testing.assert_allclose(
        live.encode_texts([data.test.texts[1]], progress=False)[0], feats["test"][1][1], atol=1e-5
    )


def test_precomputed_features_skip_the_backbone():
    from cmr_demo.data import load_data
    feats, source = dataset_features(load_data("synthetic:200"), "ViT-B-32:laion2b_s34b_b79k")
    assert source.text == "precomputed:synthetic:200" and feats["train"][0].shape[1] == 64
