"""The embedded demo bundle as a newcomer meets it: its examples find what they ask for, plain queries
retrieve their class, and texts from outside the world are flagged (through the service, no gradio; the measurement
is harness/world_queries.py's `measure` on its hand-written sets, as bench/demo_queries.py records it)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="module")
def measured():
    from harness.world_queries import measure

    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    return measure(RetrievalService(load_bundle(DEMO)))


def test_the_demo_bundle_verifies_and_describes_itself():
    from cmr_demo.bundle.verify import verify
    from cmr_demo.files import load_json
    assert verify(DEMO, require_card=True) == []
    about = load_json(DEMO / "manifest.json")["about"]
    assert "shape" in about["description"] and about["relevance"] and about["examples"]
    assert about["zero_shot"]["accuracy"] >= 0.85


def test_every_example_finds_its_class_in_the_top_5(measured):
    assert all(measured["text_examples_top5"].values()), measured["text_examples_top5"]
    assert all(measured["image_examples_top5"].values()), measured["image_examples_top5"]


def test_plain_queries_retrieve_their_class(measured):
    assert measured["mean_p_at_5"] >= 0.9, measured["worst_p_at_5"]
    assert measured["predicted_class_accuracy"] >= 0.9


def test_texts_from_outside_the_world_are_flagged_and_plain_ones_are_not(measured):
    assert len(measured["false_alarms"]) <= 0.05 * measured["plain_queries"], measured["false_alarms"]
    assert len(measured["misses"]) <= 0.05 * measured["out_of_world_queries"], measured["misses"]
