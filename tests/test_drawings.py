"""Drawings of the world's shapes and pictures of other things: deterministic, what their captions say, every style
and kind, and the pre-training stream that mixes them in without a class label."""
import numpy as np
import pytest
from PIL import Image

from cmr_demo.data import drawings, outside, shapes
from cmr_demo.data.shapes_stream import StreamConfig, render_batch


@pytest.mark.parametrize("style", drawings.STYLES)
def test_each_style_draws_the_shape_it_names(style):
    for i in range(6):
        picture, caption, shape, look = drawings.render(i, 7, style=style)
        assert look.style == style and picture.size == (shapes.SIZE, shapes.SIZE) and picture.mode == "RGB"
        plural = {"cross": "crosses"}.get(shape, shape + "s")
        assert shape in caption.lower() or plural in caption.lower(), caption
        ink = np.asarray(picture, np.float32)
        assert ink.std() > 3, "a drawing that left no mark"  # something differs from the paper
    again = drawings.render(3, 7, style=style)
    assert np.array_equal(np.asarray(again[0]), np.asarray(drawings.render(3, 7, style=style)[0]))


def test_drawings_are_made_at_their_own_size_and_reduced_as_the_model_sees_them():
    rng = np.random.default_rng(0)
    look = drawings.Look("outline", False, "black", None, "white", 512, 0.006, 0.4, 0.0, 1)
    full, count = drawings.draw("star", look, rng)
    assert full.size == (512, 512) and count == 1
    small = drawings.to_model_size(full)
    assert small.size == (64, 64)
    # a 3 px line on 512 px arrives as a faint line at 64 px: darker than the paper, far from black
    darkest = np.asarray(small.convert("L")).min()
    assert 60 < darkest < 240
    wide = drawings.to_model_size(Image.new("RGB", (300, 100), "white"))
    assert wide.size == (64, 64)


def test_a_ring_outline_has_two_edges_and_a_circle_outline_one():
    look = drawings.Look("outline", False, "black", None, "white", 256, 0.02, 0.4, 0.0, 1)
    row = {}
    for shape in ("ring", "circle"):
        full, _ = drawings.draw(shape, look, np.random.default_rng(1))
        line = np.asarray(full.convert("L"))[128] < 128  # the middle row
        row[shape] = int(np.count_nonzero(np.diff(line.astype(int)) == 1))  # dark runs crossed
    assert row == {"ring": 4, "circle": 2}


@pytest.mark.parametrize("kind", list(outside.KINDS))
def test_every_outside_kind_renders_with_a_caption(kind):
    image, caption = outside.draw(kind, 3, 11)
    assert image.mode == "RGB" and 96 <= image.size[0] <= 512 and caption.strip()
    image2, caption2 = outside.draw(kind, 3, 11)
    assert caption == caption2 and np.array_equal(np.asarray(image), np.asarray(image2))
    assert not any(f" {s} " in f" {caption.lower()} " for s in shapes.CLASS_NAMES if kind != "flat colour"), caption


def test_held_out_kinds_never_reach_pre_training():
    kinds = {outside.render(i, 5)[2] for i in range(200)}
    assert kinds == set(outside.STREAM) and not kinds & set(outside.HELD_OUT)


def test_the_stream_mixes_world_scenes_drawings_and_other_things_without_labels_reaching_training():
    cfg = StreamConfig(batch_size=40, group=8, drawing_fraction=0.25, outside_fraction=0.15, drawing_group=5)
    pictures, captions, labels = render_batch(2, cfg)
    assert pictures.shape == (40, 64, 64, 3) and len(captions) == 40
    assert (labels[-6:] == -1).all() and (labels[:-6] >= 0).all()  # 6 pictures of other things, last
    drawn = captions[24:34]
    assert all(any(w in c.lower() for w in ("drawing", "outline", "sketch", "doodle", "hand-drawn")) for c in drawn), (
        drawn
    )
    again = render_batch(2, cfg)
    assert np.array_equal(pictures, again[0]) and captions == again[1]


def test_without_drawings_the_stream_is_the_one_the_base_backbone_learned_from():
    """The base pre-training (no drawings, nothing from outside) stays reproducible: batches are byte for byte
    those of the stream before drawings were added (digest taken from that code)."""
    import hashlib
    digest = hashlib.sha256()
    for step in (0, 4):
        pictures, captions, labels = render_batch(step, StreamConfig(batch_size=32, group=8))
        digest.update(pictures.tobytes())
        digest.update("|".join(captions).encode())
        digest.update(labels.tobytes())
    assert digest.hexdigest() == "55fdd672f4c35d224bc6175cd80cdd09ba1a3f10ef486432afaff9e2ed3d9aa7"


def test_the_stream_with_drawings_is_the_one_the_shipped_backbone_continued_on():
    """runs/pretrain-drawings (bench/results/pretrain.json): a quarter drawings, 15 % other things."""
    import hashlib
    digest = hashlib.sha256()
    for step in (0, 7):
        pictures, captions, labels = render_batch(step, StreamConfig(batch_size=40, drawing_fraction=0.25,
                                                                     outside_fraction=0.15))
        digest.update(pictures.tobytes())
        digest.update("|".join(captions).encode())
        digest.update(labels.tobytes())
    assert digest.hexdigest() == "a248955a69fd36a4285aaa64efe5eb49e9239e3c604f61173512cc70db2b50a3"
