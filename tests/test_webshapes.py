"""The default world, `webshapes`: deterministic, classes a picture shows, the designed balance, noise and captions."""
import re

import numpy as np
import pytest

from cmr_demo.data import DataError, IngestReport, shapes, webshapes

N = 1200  # 840 train (a long tail over 40 classes), 120 val, 240 test


@pytest.fixture(scope="module")
def data():
    return webshapes.read(str(N), IngestReport())


def test_items_are_pure_functions_of_index_split_and_seed(data):
    a, b = webshapes.render_item(5, "train"), webshapes.render_item(5, "train")
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and a[1:] == b[1:]
    assert webshapes.render_item(5, "train", seed=3)[1] != a[1]
    again = webshapes.read(str(N), IngestReport())
    for name, split in data.splits().items():
        assert split.content_hash() == again.splits()[name].content_hash(), name
    k = 7
    item = webshapes.render_item(len(data.train) + len(data.val) + k, "test")
    assert item[1] == data.test.texts[k] and item[2] == data.test.labels[k]


def test_classes_are_a_shape_in_a_colour_and_name_their_shape():
    assert len(webshapes.CLASS_NAMES) == 40 == len(set(webshapes.CLASS_NAMES))
    for name in webshapes.CLASS_NAMES:
        colour, shape = name.split(" ")
        assert colour in webshapes.CLASS_COLOURS and shape in shapes.CLASS_NAMES and shape in name
    groups = webshapes.CLASS_GROUPS["shape"]
    assert sorted(c for members in groups.values() for c in members) == sorted(webshapes.CLASS_NAMES)


def test_val_and_test_are_balanced_and_clean(data):
    for split, first in ((data.val, len(data.train)), (data.test, len(data.train) + len(data.val))):
        counts = np.bincount(split.labels, minlength=40)
        assert counts.min() == counts.max() == len(split) // 40
        shown = [webshapes.render_item(first + k, "test" if split is data.test else "val")[3] for k in range(40)]
        assert shown == split.labels[:40].tolist()  # the recorded label is the class the picture shows


def test_train_has_the_designed_long_tail(data):
    counts = np.bincount([webshapes.render_item(i, "train")[3] for i in range(len(data.train))], minlength=40)
    expected = webshapes.train_weights(webshapes.SEED) * len(data.train)
    assert np.corrcoef(counts, expected)[0, 1] > 0.9
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected) + 2)
    assert expected.max() / expected.min() == pytest.approx(40 ** webshapes.LEVERS.zipf, rel=1e-9)


def test_a_fifth_of_training_labels_name_a_confusable_class(data):
    shown = np.array([webshapes.render_item(i, "train")[3] for i in range(len(data.train))])
    noisy = data.train.labels != shown
    assert abs(noisy.mean() - webshapes.LEVERS.label_noise) < 0.05
    for recorded, true in zip(data.train.labels[noisy], shown[noisy]):
        (c1, s1), (c2, s2) = (webshapes.CLASS_NAMES[x].split(" ") for x in (recorded, true))
        assert (s1 == s2) != (c1 == c2)  # the same shape in another colour, or the same colour on another shape


def _shape_words(shape: str) -> list[str]:
    return [w for pair in shapes.SYNONYMS[shape] + shapes.INDIRECT[shape] for w in pair]


def test_captions_describe_all_or_part_of_the_picture_at_the_designed_rates():
    modes, n = {}, 600
    for i in range(n):
        _, text, _, label, mode = webshapes.render_item(i, "test")
        modes[mode] = modes.get(mode, 0) + 1
        colour, shape = webshapes.CLASS_NAMES[label].split(" ")
        # backgrounds and papers, not the class colour
        lower = re.sub(r"pale (blue|green|yellow)", "pale", text.lower())
        names_shape = any(re.search(rf"\b{re.escape(w)}\b", lower) for w in _shape_words(shape))
        if mode == "full":
            assert names_shape and colour in lower, text
        elif mode == "shape only":
            assert names_shape and not any(re.search(rf"\b{c}\b", lower) for c in webshapes.CLASS_COLOURS), text
        elif mode == "colour only":
            assert colour in lower and not names_shape, text
    for mode, share in webshapes.LEVERS.caption_modes.items():
        assert abs(modes.get(mode, 0) / n - share) < 0.06, (mode, modes)


def test_no_levers_gives_balanced_clean_full_captions():
    data = webshapes.make_dataset(400, levers=webshapes.NO_LEVERS)
    assert "levers" in data.spec
    shown = [webshapes.render_item(i, "train", levers=webshapes.NO_LEVERS)[3] for i in range(len(data.train))]
    assert data.train.labels.tolist() == shown
    assert {webshapes.render_item(i, "test", levers=webshapes.NO_LEVERS)[4] for i in range(100)} == {"full"}


@pytest.mark.parametrize("arg, message", [("abc", "item count"), ("100", ">= 200"), ("400,colour=red", "optionally a "
                                                                                                       "seed")])
def test_bad_specs_say_what_the_reader_takes(arg, message):
    with pytest.raises(DataError, match=re.escape(message)):
        webshapes.read(arg, IngestReport())
