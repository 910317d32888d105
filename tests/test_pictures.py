"""Pictures a visitor sends to the default bundle (through the service, as /api/v1/query_info/image answers): drawings
are read as their shape, pictures from outside the world are flagged with a reason, confidence means something.

The pictures come from harness/visitor_pictures.py, code that shares nothing with the generators the backbone
and the picture check learned from; bench/pictures.py measures larger sets and writes the README's figures."""
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
from harness import visitor_pictures  # noqa: E402

from cmr_demo.serve.service import load  # noqa: E402
from cmr_demo.ui.views import info_line  # noqa: E402


@pytest.fixture(scope="module")
def service():
    return load(ROOT / "assets" / "demo")


@pytest.fixture(scope="module")
def drawn(service):
    rows = []
    for picture, shape, style, ink in visitor_pictures.drawings(per_style=3):
        info = service.query_info(service.image_query(picture)).to_dict()
        rows.append((shape, style, ink, info))
    return rows


def test_drawings_are_read_as_their_shape_in_every_style(drawn):
    right = [info["predicted_class"].endswith(" " + shape) for shape, _, _, info in drawn]
    assert np.mean(right) >= 0.9, [(s, st, i["predicted_class"]) for (s, st, _, i), ok in zip(drawn, right) if not ok]
    for style in visitor_pictures.STYLES:
        in_style = [ok for (_, st, _, _), ok in zip(drawn, right) if st == style]
        assert np.mean(in_style) >= 0.8, style
    for shape, _, _, info in drawn:  # the shape read is the class's shape, with its own probability
        assert info["groups"]["shape"]["name"] == info["predicted_class"].split(" ")[-1]
        assert info["groups"]["shape"]["confidence"] >= info["confidence"] - 1e-9


def test_a_read_shown_at_90_percent_is_right_90_percent_of_the_time(drawn):
    sure = [info["groups"]["shape"]["name"] == shape for shape, _, _, info in drawn
            if info["groups"]["shape"]["confidence"] >= 0.9]
    assert len(sure) >= 20 and np.mean(sure) >= 0.9
    classes = [info["predicted_class"] == f"{ink} {shape}" for shape, _, ink, info in drawn
               if info["confidence"] >= 0.9 and ink in ("red", "yellow", "green", "blue")]
    assert not classes or np.mean(classes) >= 0.9


def test_pictures_from_outside_the_world_are_flagged_with_a_reason(service):
    rows = [(kind, service.query_info(service.image_query(p)))
            for p, kind in visitor_pictures.outside_pictures(per_kind=3)]
    flagged = [info.in_domain is False for _, info in rows]
    assert np.mean(flagged) >= 0.9, [(k, i.reason) for (k, i), f in zip(rows, flagged) if not f]
    for _, info in rows:
        if info.in_domain is False:
            assert info.reason and ("looks like" in info.reason or "no picture of this world" in info.reason)
            line = info_line(info)  # the page: the closest class, never a confidence beside the warning
            assert "outside this gallery's world" in line and "%" not in line


def test_the_gallerys_own_pictures_are_rarely_flagged(service):
    flagged = [service.query_info(service.image_query(str(service.bundle.image_path(n)))).in_domain is False
               for n in range(service.size)]
    assert np.mean(flagged) <= 0.02
