"""Contrastive pre-training: it learns (overfits a fixed batch), saves, reloads identically, and scores."""
import json

import numpy as np
import pytest
import torch

from cmr_demo.backbone.clip import load_backbone, open_clip, register_model_configs
from cmr_demo.files import load_json, load_tensors
from cmr_demo.data import load_data
from cmr_demo.backbone.prompts import zero_shot_accuracy
from cmr_demo.backbone.pretrain import (
    PRETRAIN_FORMAT,
    PretrainConfig,
    main,
    make_optimizer,
    prepare_split,
    random_shift,
    train_step,
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


def test_random_shift_translates_each_image_by_at_most_shift():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect")
    for b in range(2):  # every output is one 8x8 window of the reflect-padded input
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[b, :, dy:dy + 8, dx:dx + 8], y[b])]
        assert len(windows) == 1
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


PRE = ["--arch", ARCH, "--eval-data", "shapes:200", "--batch-size", "16", "--warmup-steps", "2", "--eval-every", "2",
       "--workers", "0", "--quiet"]


def test_cli_writes_files_that_reload_identically(tmp_path, data):
    out = tmp_path / "pre"
    s = main(["--data", "shapes:200", "--out", str(out), "--steps", "4", *PRE])
    assert (out / "backbone.safetensors").is_file() and (out / "pretrain.json").is_file()
    assert s["steps"] == 4 and s["stopped_by"] == "steps" and [h["step"] for h in s["history"]] == [2, 4]
    assert s["zero_shot_test"]["n"] == 40 and s["reload_max_abs_diff"] == 0.0
    _, meta = load_tensors(out / "backbone.safetensors")
    assert meta["format"] == PRETRAIN_FORMAT
    cfg = PretrainConfig(**json.loads(meta["pretrain_config"]))
    assert cfg == PretrainConfig(**load_json(out / "pretrain.json")["config"])
    assert (cfg.arch, cfg.batch_size, cfg.steps) == (ARCH, 16, 4)
    # the real loading path, twice: same weights -> same features
    a, b = (load_backbone(f"{ARCH}:{out / 'backbone.safetensors'}") for _ in range(2))
    images = data.test.images[:8]
    np.testing.assert_array_equal(a.encode_images(images, progress=False), b.encode_images(images, progress=False))
    assert json.loads((out / "pretrain.json").read_text())["data"] == "shapes:200"


@pytest.mark.parametrize("source", ["shapes:200", "shapes-stream"])
def test_resume_continues_exactly_where_a_run_stopped(tmp_path, source):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main(["--data", source, "--out", str(whole), "--steps", "6", *PRE])
    first = main(["--data", source, "--out", str(parts), "--steps", "6", "--sitting-steps", "3", *PRE])
    assert first["steps"] == 3 and first["stopped_by"] == "sitting"
    s = main(["--data", source, "--out", str(parts), "--steps", "6", "--resume", *PRE])
    assert s["steps"] == 6 and s["resumed_at_s"] > 0
    a, _ = load_tensors(whole / "backbone.safetensors")
    b, _ = load_tensors(parts / "backbone.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_resume_refuses_a_state_of_another_configuration(tmp_path):
    main(["--data", "shapes-stream", "--out", str(tmp_path), "--steps", "2", *PRE])
    with pytest.raises(ValueError, match="lr"):
        main(["--data", "shapes-stream", "--out", str(tmp_path), "--steps", "4", "--lr", "0.5", "--resume", *PRE])
    with pytest.raises(FileNotFoundError, match="--resume"):
        main(["--data", "shapes-stream", "--out", str(tmp_path / "empty"), "--resume", *PRE])


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
