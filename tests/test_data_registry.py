"""The reader registry as a whole: every registered reader loads through `load_data` (a new reader is tested by being
registered), validation is carved when the data has none, and bad specs say what the readers are."""
import numpy as np
import pytest

from cmr_demo.data import READERS, DataError, load_data
from test_data_readers import (
    make_clip4cmr,
    make_manifest_jsonl,
    make_npz,
    make_wikipedia_features,
    make_wikipedia_media,
)


SPEC_BUILDERS = {  # one fixture per registered reader: a new reader is tested by being registered
    "clip4cmr": lambda tmp: f"clip4cmr:{make_clip4cmr(tmp / 'c')}",
    "wikipedia": lambda tmp: f"wikipedia:{make_wikipedia_features(tmp / 'w', 40, 10)}",
    "manifest": lambda tmp: f"manifest:{make_manifest_jsonl(tmp / 'm')}",
    "npz": lambda tmp: f"npz:{make_npz(tmp / 'f.npz')}",
    "synthetic": lambda tmp: "synthetic:200",
    "shapes": lambda tmp: "shapes:200",
    "webshapes": lambda tmp: "webshapes:400",
}


@pytest.mark.parametrize("name", list(READERS))
def test_load_data_every_reader(tmp_path, name):
    if name not in SPEC_BUILDERS:
        pytest.fail(f"reader '{name}' has no fixture: add one to SPEC_BUILDERS")
    spec = SPEC_BUILDERS[name](tmp_path)
    data = load_data(spec)
    assert data.spec == spec and len(data.train) and len(data.test) and data.val is not None
    assert {k: s.class_names for k, s in data.splits().items()} == dict.fromkeys(data.splits(),
                                                                                 data.class_names)


def test_load_data_carves_stratified_validation(tmp_path):
    folder = make_wikipedia_features(tmp_path / "w", n_train=60, n_test=9)
    data = load_data(f"wikipedia:{folder}", val_fraction=0.2, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (48, 12, 9)
    assert not set(data.train.ids) & set(data.val.ids)
    assert np.bincount(data.val.labels).tolist() == [4, 4, 4]  # 20% of each class of 20
    assert "carved from train" in data.val_source


@pytest.mark.parametrize("name", ["clip4cmr", "wikipedia", "manifest", "npz"])
def test_reader_without_argument(name):
    with pytest.raises(DataError, match=f"{name}:(DIR|FILE) needs"):
        load_data(name)


def test_load_data_strict_and_unknown_reader(tmp_path):
    folder = make_wikipedia_media(tmp_path / "wiki")
    assert load_data(f"wikipedia:{folder}").report.total == 4
    with pytest.raises(DataError, match="--strict"):
        load_data(f"wikipedia:{folder}", strict=True)
    with pytest.raises(DataError) as err:
        load_data("flickr:/data")
    for name in READERS:
        assert name in str(err.value)
