"""Contrastive pre-training: it learns (overfits a fixed batch), saves, reloads identically, and scores."""
import json

import numpy as np
import pytest
import torch

from cmr_demo.backbone import load_backbone, open_clip, register_model_configs
from cmr_demo.checkpoint import load_json, load_tensors
from cmr_demo.data import load_data
from cmr_demo.pretrain import (
    PRETRAIN_FORMAT,
    PretrainConfig,
    main,
    make_optimizer,
    prepare_split,
    random_shift,
    train_step,
    zero_shot_accuracy,
)

ARCH = "nano-clip"  # 32 px: the model's preprocess resizes the 64 px shapes, so any arch fits


@pytest.fixture(scope="module")
def data():
    return load_data("shapes:200")


def _model(seed=0):
    register_model_configs()
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(ARCH)


def test_loss_falls_on_a_fixed_batch(data):
    model, preprocess, tokenizer = _model()
    images, tokens = prepare_split(data.train, preprocess, tokenizer)
    assert images.shape == (len(data.train), 3, 32, 32) and tokens.shape[0] == len(data.train)
    cfg = PretrainConfig(arch=ARCH, lr=2e-3, warmup_steps=1)
    opt, loss_fn = make_optimizer(model, cfg), open_clip.ClipLoss()
    losses = [train_step(model, loss_fn, opt, images[:32], tokens[:32]) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_random_shift_keeps_shape_and_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_cli_writes_files_that_reload_identically(tmp_path, data):
    out = tmp_path / "pre"
    s = main(["--data", "shapes:200", "--arch", ARCH, "--out", str(out), "--epochs", "2",
              "--batch-size", "32", "--minutes", "0.05", "--warmup-steps", "2", "--quiet"])
    assert (out / "backbone.safetensors").is_file() and (out / "pretrain.json").is_file()
    assert 0.0 <= s["zero_shot_test"]["accuracy"] <= 1.0 and s["steps"] >= 1
    assert s["reload_max_abs_diff"] == 0.0
    _, meta = load_tensors(out / "backbone.safetensors")
    assert meta["format"] == PRETRAIN_FORMAT
    cfg = PretrainConfig.from_json(meta["pretrain_config"])
    assert cfg == PretrainConfig(**load_json(out / "pretrain.json")["config"])
    assert (cfg.arch, cfg.batch_size, cfg.minutes) == (ARCH, 32, 0.05)
    # the real loading path, twice: same weights -> same features
    a, b = (load_backbone(f"{ARCH}:{out / 'backbone.safetensors'}") for _ in range(2))
    images = data.test.images[:8]
    np.testing.assert_array_equal(a.encode_images(images, progress=False), b.encode_images(images, progress=False))
    assert json.loads((out / "pretrain.json").read_text())["data"] == "shapes:200"


def test_zero_shot_same_for_model_and_backbone(tmp_path, data):
    model, preprocess, tokenizer = _model()
    bare = zero_shot_accuracy(model, data.test, preprocess=preprocess, tokenizer=tokenizer)
    from safetensors.torch import save_file
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    wrapped = zero_shot_accuracy(load_backbone(f"{ARCH}:{tmp_path / 'w.safetensors'}"), data.test)
    assert bare["accuracy"] == pytest.approx(wrapped["accuracy"])
    assert set(bare["per_class"]) == set(data.test.class_names) and bare["chance"] == 0.1
    with pytest.raises(ValueError, match="preprocess and tokenizer"):
        zero_shot_accuracy(model, data.test)
