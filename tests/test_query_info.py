"""Query info: class scores from every objective's own class structure, calibrated confidences, and the
in/out-of-world checks, each against a reference written here."""
import numpy as np
import pytest
import torch

from cmr_demo.train.objectives import OBJECTIVES, build_objective
from cmr_demo.serve.index import GalleryIndex
from cmr_demo.serve.query_info import ClassGroups, NeighbourScorer, WorldCheck, content_words, fit_temperature


@pytest.mark.parametrize("name", list(OBJECTIVES) + ["pcl+0.5*tl"])
def test_class_scores_come_from_class_wise_objectives_only(name):
    objective = build_objective(name, num_classes=4, embed_dim=8)
    scores = objective.class_scores(torch.nn.functional.normalize(torch.randn(5, 8), dim=1))
    class_wise = objective.kind in ("class-wise", "hybrid")
    assert (scores is not None) == class_wise
    if class_wise:
        assert scores.shape == (5, 4) and torch.isfinite(scores).all()


def test_prototype_scores_rank_a_prototype_first():
    pcl = build_objective("pcl", num_classes=6, embed_dim=16)
    assert pcl.class_scores(pcl.prototypes).argmax(1).tolist() == list(range(6))


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20000, 5)) * 3
    z = scores / 2.5
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(scores, labels) == pytest.approx(2.5, rel=0.05)


def test_calibrated_confidence_matches_accuracy_on_the_gallery():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 200)

    def draw():
        emb = np.eye(4, 8)[labels] + rng.normal(scale=0.6, size=(800, 8))
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)
    images, texts = draw(), draw()
    texts = texts * 3 - 2 * texts.mean(0)  # texts on another scale, as a text head's output often is
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    indexes = {"image": GalleryIndex.build(images, "flat"), "text": GalleryIndex.build(texts, "flat")}
    scorer = NeighbourScorer(lambda emb, modality, k: indexes[modality].search(emb, k), labels, 4, images, texts)
    assert scorer.source == "nearest gallery items"
    for modality, emb in (("image", images), ("text", texts)):  # each modality calibrated on its own
        probs = np.concatenate([scorer.probabilities(emb[[n]], modality) for n in range(0, 800, 4)])
        accuracy = (probs.argmax(1) == labels[::4]).mean()
        assert 0.5 < accuracy < 0.999
        assert abs(probs.max(1).mean() - accuracy) < 0.06  # confidence means what it says, on the gallery


def test_the_class_read_agrees_with_the_ranking():
    """The read comes from the query's own nearest items of the modality searched: where every top result is of
    one class, that is the class named (an objective's own classifier once named another)."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 50)
    images = np.eye(3, 6)[labels] + rng.normal(scale=0.3, size=(150, 6))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    index = GalleryIndex.build(images, "flat")
    scorer = NeighbourScorer(lambda emb, modality, k: index.search(emb, k), labels, 3, images, images)
    queries = np.eye(3, 6) + rng.normal(scale=0.1, size=(3, 6))
    for query in queries:
        _, rows = index.search(query[None], 5)
        top = np.bincount(labels[rows[0]], minlength=3)
        if top.max() == 5:  # all five results of one class
            assert scorer.probabilities(query[None], "text")[0].argmax() == top.argmax()


def test_a_text_naming_a_colour_or_a_shape_no_class_has_is_told_so():
    groups = ClassGroups({"shape": {"star": ["red star", "blue star"], "ring": ["red ring", "blue ring"]},
                          "colour": {"red": ["red star", "red ring"], "blue": ["blue star", "blue ring"]}},
                         ["red star", "blue star", "red ring", "blue ring"])
    assert groups.unknown("three small purple circles") == {"colour": ["purple"], "shape": ["circle"]}
    assert groups.unknown("a blue pentagon") == {"shape": ["pentagon"]}
    assert groups.unknown("two red stars on a white background") == {}  # the white is the background
    assert groups.unknown("a picture") == {}


def test_world_check_on_words():
    world = WorldCheck(["A red star on a grey striped background.", "Two blue rings at the top."],
                       ["star", "ring"], None)
    assert world.text("a red star")[0] is True
    assert world.text("two blue rings on the left")[0] is True  # 'left' unknown, 3 of 4 content words known
    assert world.text("a dog")[0] is False and "dog" in world.text("a dog")[1]
    assert world.text("a red dog")[0] is False  # half is not enough
    assert world.text("!!! ???")[0] is False
    assert world.text("a picture of the")[0] is None  # nothing to judge by
    assert content_words("Show me a picture of THE Red-star") == ["red-star"]
    assert WorldCheck(["", ""], ["a"], None).text("a red star")[0] is None  # no captions: cannot tell


def test_world_check_on_images_is_calibrated_on_the_gallery():
    rng = np.random.default_rng(2)
    gallery = rng.normal(size=(500, 16)) + 5  # one cluster, far from the origin
    world = WorldCheck(["x"] * 500, ["a"], gallery.astype(np.float32))
    inside = [world.image(g + rng.normal(scale=0.3, size=16))[0] for g in gallery[:50]]
    outside = [world.image(-gallery[i])[0] for i in range(50)]
    assert np.mean(inside) >= 0.9 and not any(outside)
    assert world.image(np.zeros(16) + 5)[1].startswith("nearest gallery picture at similarity")
    assert WorldCheck(["x"], ["a"], None).image(np.ones(16))[0] is None
