"""The procedural `shapes` world: determinism, balanced splits, varied captions, clear errors."""
import re

import numpy as np
import pytest
from PIL import Image

from cmr_demo.data import DataError, IngestReport
from cmr_demo.data import shapes

N = 200  # the smallest set with two class blocks in val; renders in well under a second


@pytest.fixture(scope="module")
def data():
    return shapes.read(str(N), IngestReport())


def same_image(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()


def test_render_item_is_deterministic_and_matches_the_dataset(data):
    for i in (0, 7, 150):
        (im1, cap1, lab1), (im2, cap2, lab2) = shapes.render_item(i), shapes.render_item(i)
        assert same_image(im1, im2) and cap1 == cap2 and lab1 == lab2
    test = data.test
    k = len(test) // 2
    i = int(test.ids[k].split("-")[1])
    image, caption, label = shapes.render_item(i)
    assert same_image(image, test.images[k]) and caption == test.texts[k] and label == test.labels[k]


def test_another_seed_gives_another_world():
    assert not same_image(shapes.render_item(3)[0], shapes.render_item(3, seed=1)[0])


def test_splits_are_balanced_ordered_and_labelled(data):
    splits = data.splits()
    assert set(splits) == {"train", "val", "test"}
    assert [len(s) for s in splits.values()] == [140, 20, 40]
    ids = [i for s in splits.values() for i in s.ids]
    assert ids == [f"shapes-{i:05d}" for i in range(N)]
    for name, split in splits.items():
        assert split.class_names == shapes.CLASS_NAMES and len(shapes.CLASS_NAMES) >= 10
        assert set(split.labels.tolist()) == set(range(shapes.NUM_CLASSES)), name
        assert split.has_media and not split.has_features
        image = split.images[0]
        assert isinstance(image, Image.Image) and image.size == (64, 64) and image.mode == "RGB"


def test_captions_vary_and_name_their_class(data):
    texts, labels = data.train.texts, data.train.labels
    assert len(set(texts)) == len(texts)
    # a template's fixed words survive in its captions: many distinct openings means many templates
    assert len({" ".join(t.split()[:2]) for t in texts}) >= 15
    with_name = [shapes.CLASS_NAMES[c] in t.lower() for t, c in zip(texts, labels)]
    assert 0.3 < np.mean(with_name) < 0.95  # synonyms and indirect descriptions stand in for the rest
    for text, c in zip(texts, labels):
        cls = shapes.CLASS_NAMES[c]
        names = [n for pair in shapes.SYNONYMS[cls] + shapes.INDIRECT[cls] for n in pair]
        assert any(re.search(rf"\b{re.escape(n)}\b", text.lower()) for n in names), (cls, text)


def test_indirect_captions_avoid_every_name_of_their_class():
    indirect = 0
    for i in range(N):
        _, caption, label = shapes.render_item(i)
        cls = shapes.CLASS_NAMES[label]
        if any(n in caption for pair in shapes.INDIRECT[cls] for n in pair):
            indirect += 1
            direct = [n for pair in shapes.SYNONYMS[cls] for n in pair]
            assert not any(re.search(rf"\b{re.escape(n)}\b", caption.lower()) for n in direct), caption
    assert 0.05 * N < indirect < 0.3 * N


def test_images_differ_within_a_class(data):
    split = data.train
    for c in range(shapes.NUM_CLASSES):
        members = np.flatnonzero(split.labels == c)
        digests = {split.images[k].tobytes() for k in members}
        assert len(digests) == len(members)
        arrays = np.stack([np.asarray(split.images[k], np.float32) for k in members[:2]])
        assert np.abs(arrays[0] - arrays[1]).mean() > 5  # not just pixel noise apart


def test_content_hash_is_stable_across_reads(data):
    again = shapes.read(str(N), IngestReport())
    for name, split in data.splits().items():
        assert split.content_hash() == again.splits()[name].content_hash()
    assert data.train.content_hash() != data.test.content_hash()


@pytest.mark.parametrize("arg, message", [("abc", "item count"), ("10", ">= 100"), ("-5", ">= 100")])
def test_bad_specs_raise_clear_errors(arg, message):
    with pytest.raises(DataError, match=re.escape(message)) as err:
        shapes.read(arg, IngestReport())
    assert arg in str(err.value)


def test_default_size():
    assert shapes.DEFAULT_ITEMS == 3000


def test_a_second_seed_draws_a_disjoint_sample_with_its_own_ids():
    other = shapes.read("200,seed=1", IngestReport())
    assert other.spec == "shapes:200,seed=1" and other.test.ids[0].startswith("shapes1-")
    base = shapes.read("200", IngestReport())
    assert other.test.texts != base.test.texts
    with pytest.raises(DataError, match="optionally a seed"):
        shapes.read("200,colour=red", IngestReport())
