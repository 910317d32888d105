"""The pre-training stream: deterministic per step, fresh pictures, groups that share every non-shape style."""
import re

import numpy as np

from cmr_demo.data import shapes
from cmr_demo.data.shapes_stream import StreamConfig, render_batch


def test_a_batch_is_a_pure_function_of_its_step():
    cfg = StreamConfig(batch_size=32, group=8)
    (a, ca, la), (b, cb, lb) = render_batch(5, cfg), render_batch(5, cfg)
    assert np.array_equal(a, b) and ca == cb and np.array_equal(la, lb)
    c, _, _ = render_batch(6, cfg)
    assert not np.array_equal(a, c)
    assert a.shape == (32, shapes.SIZE, shapes.SIZE, 3) and a.dtype == np.uint8


def test_groups_share_background_colour_count_and_size_but_not_the_shape():
    cfg = StreamConfig(batch_size=64, group=16, hard_fraction=0.5)  # 2 groups of 16, then 32 plain scenes
    _, captions, _ = render_batch(0, cfg)
    colours = [{c for c in shapes.COLOURS if re.search(rf"\b{c}\b", t.lower())} for t in captions]
    for g in range(2):
        members = colours[g * 16:(g + 1) * 16]
        shared = set.intersection(*members)
        assert shared, f"group {g} shares no colour word: {captions[g * 16:(g + 1) * 16]}"
    named = [[c for c, words in shapes.SYNONYMS.items() if any(w in t for pair in words for w in pair)]
             for t in captions[:16]]
    assert len({tuple(n) for n in named}) > 2  # the shape varies inside a group


def test_stream_pictures_are_not_the_benchmark_or_gallery_pictures():
    stream, _, _ = render_batch(0, StreamConfig(batch_size=16, group=1, hard_fraction=0))
    for seed in (shapes.SEED, 1):
        fixed = [np.asarray(shapes.render_item(i, seed)[0]) for i in range(16)]
        assert not any(np.array_equal(s, f) for s in stream for f in fixed)


def test_the_unstyled_world_is_unchanged_by_the_style_option():
    image, facts = shapes.render_scene(7, 3, shapes.SEED, None)
    image2, facts2 = shapes.render_scene(7, 3, shapes.SEED, {})
    assert np.array_equal(np.asarray(image), np.asarray(image2)) and facts == facts2
