"""Checkpoint files: atomic, safetensors + JSON only, refusing what does not fit."""
import pytest
import torch

from cmr_demo.files import CheckpointError, save_json, load_json
from cmr_demo.train.heads import load_heads, save_heads
from cmr_demo.train.heads import HeadConfig, Heads


def test_heads_round_trip_rebuilds_from_saved_config(tmp_path):
    torch.manual_seed(0)
    heads = Heads(HeadConfig(image_dim=10, text_dim=7, hidden_dim=8, embed_dim=16, standardize=True))
    heads.fit_standardization(torch.randn(50, 10) * 3 + 1, torch.randn(50, 7))
    save_heads(tmp_path / "h.safetensors", heads.eval())
    loaded = load_heads(tmp_path / "h.safetensors")
    x = torch.randn(4, 10)
    assert torch.allclose(loaded.encode_image(x), heads.encode_image(x))
    assert loaded.cfg == heads.cfg
    assert [p.name for p in tmp_path.iterdir()] == ["h.safetensors"]  # no temporary file left behind


def test_mismatched_dims_name_both_sides(tmp_path):
    save_heads(tmp_path / "h.safetensors", Heads(HeadConfig(image_dim=10, text_dim=7)))
    with pytest.raises(CheckpointError, match="10-d image features but the backbone gives 512-d"):
        load_heads(tmp_path / "h.safetensors", image_dim=512)


def test_damaged_or_foreign_files_are_refused(tmp_path):
    save_heads(tmp_path / "h.safetensors", Heads(HeadConfig(image_dim=4, text_dim=4)))
    data = (tmp_path / "h.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_heads(tmp_path / "cut.safetensors")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle is never unpickled
    with pytest.raises(CheckpointError):
        load_heads(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_heads(tmp_path / "none.safetensors")
    save_json(tmp_path / "c.json", {"a": 1})
    assert load_json(tmp_path / "c.json") == {"a": 1}
