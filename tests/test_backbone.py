"""Backbone specs through the real open_clip path, offline: local files, local-dir, random, failures."""
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cmr_demo.backbone.clip import BackboneError, load_backbone, parse_backbone_spec, weights_identity
from cmr_demo.compat import ensure_torchvision


def images(n=3, size=48):
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")) for _ in range(n)]


TEXTS = ["a red star on grey", "two blue circles", "a crescent"]


def test_compat_is_idempotent_and_torchvision_imports():
    ensure_torchvision()
    ensure_torchvision()
    import torchvision.transforms as T
    assert T.CenterCrop(8)(torch.zeros(3, 16, 16)).shape == (3, 8, 8)


@pytest.mark.parametrize("spec,kind", [("ViT-B-32:laion2b_s34b_b79k", "tag"), ("RN50:openai", "tag"),
                                       ("tiny-clip:random", "random"), ("hf-hub:org/repo", "hf-hub"),
                                       ("local-dir:/some/dir", "local-dir")])
def test_spec_kinds(spec, kind):
    assert parse_backbone_spec(spec).kind == kind


@pytest.mark.parametrize("spec,message", [("ViT-B-32", "names no weights.*laion2b_s34b_b79k.*local-dir"),
                                          ("NoSuchNet:x", "unknown architecture.*ViT-B-32"),
                                          ("ViT-B-32:nope", "neither a pretrained tag"),
                                          ("ViT-B-32:/missing/w.safetensors", "does not exist"),
                                          ("hf-hub:", "names no repository")])
def test_bad_specs_say_what_is_valid(spec, message):
    with pytest.raises(BackboneError, match=message):
        load_backbone(spec)


@pytest.mark.parametrize(
    "spec", ["ViT-B-32:laion2b_s34b_b79k", "RN50:openai", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"]
)
def test_offline_without_local_weights_fails_fast_naming_the_fixes(spec):
    start = time.perf_counter()
    with pytest.raises(BackboneError) as err:
        load_backbone(spec)
    assert time.perf_counter() - start < 1.0
    for fix in ("HF_HUB_OFFLINE", "local-dir:", "safetensors"):
        assert fix in str(err.value)


def test_unreachable_hub_fails_fast_without_offline_flag(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # loopback, closed port: refused at once
    start = time.perf_counter()
    with pytest.raises(BackboneError, match="cannot be reached"):
        load_backbone("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert time.perf_counter() - start < 2.0


@pytest.mark.slow
def test_vit_b32_random_weights_saved_and_loaded_back(tmp_path, vit_b32_weights):
    """The real ViT-B-32 through the file path: .safetensors and a weights-only .pt give the same features,
    and the file's identity is its hash, not the random initialisation's."""
    original = load_backbone(f"ViT-B-32:{vit_b32_weights}")
    torch.save({k: v.contiguous() for k, v in original.model.state_dict().items()}, tmp_path / "vitb32.pt")
    ref_img, ref_txt = original.encode_images(images(2), progress=False), original.encode_texts(TEXTS, progress=False)
    assert ref_img.shape == (2, 512) and ref_txt.shape == (3, 512)
    del original
    loaded = load_backbone(f"ViT-B-32:{tmp_path / 'vitb32.pt'}")
    np.testing.assert_allclose(loaded.encode_images(images(2), progress=False), ref_img, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_texts(TEXTS, progress=False), ref_txt, atol=1e-5)
    del loaded
    assert weights_identity(f"ViT-B-32:{vit_b32_weights}") != weights_identity("ViT-B-32:random")


def test_local_dir_with_a_package_config(tmp_path):
    from safetensors.torch import save_file
    from cmr_demo.backbone.clip import CONFIG_DIR
    ref = load_backbone("nano-clip:random")
    (tmp_path / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": json.loads((CONFIG_DIR / "nano-clip.json").read_text()), "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()}, tmp_path / "open_clip_model.safetensors")
    loaded = load_backbone(f"local-dir:{tmp_path}")
    np.testing.assert_allclose(
        loaded.encode_texts(TEXTS, progress=False), ref.encode_texts(TEXTS, progress=False), atol=1e-5
    )
    with pytest.raises(BackboneError, match="open_clip_config.json"):
        load_backbone(f"local-dir:{tmp_path / 'nowhere'}")


def test_package_configs_encode_and_precisions():
    tiny = load_backbone("tiny-clip:random")
    assert tiny.feature_dim == 128
    assert tiny.encode_images(images(5, size=90), batch_size=2, progress=False).shape == (5, 128)
    assert load_backbone("nano-clip:random", precision="bf16").encode_texts(TEXTS, progress=False).dtype == np.float32
    with pytest.raises(BackboneError, match="fp16 autocast needs a CUDA"):
        load_backbone("nano-clip:random", precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(BackboneError, match="no CUDA GPU"):
            load_backbone("nano-clip:random", device="cuda")
    # ARCH:random is the same network in every call (seeded), so its features can be cached
    np.testing.assert_array_equal(load_backbone("nano-clip:random").encode_texts(TEXTS, progress=False),
                                  load_backbone("nano-clip:random").encode_texts(TEXTS, progress=False))


@pytest.mark.parametrize("arch", ["ViT-B-32", "shapes-rn"])
def test_uint8_hand_over_gives_the_features_of_open_clips_own_preprocessing(arch, tmp_path):
    """Workers ship uint8 pixels and the device normalises: same features as open_clip's float preprocess."""
    from cmr_demo.backbone.clip import split_preprocess
    backbone = load_backbone(f"{arch}:random")
    assert split_preprocess(backbone.preprocess) is not None  # the fast path is the one taken
    ims = images(4, size=61)
    paths = []
    for i, im in enumerate(ims):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    on_cpu, mean, std = split_preprocess(backbone.preprocess)
    handed_over = torch.stack([on_cpu(im) for im in ims])
    assert handed_over.dtype == torch.uint8
    pixels = torch.stack([backbone.preprocess(im) for im in ims])
    torch.testing.assert_close(backbone._normalizer(mean, std)(handed_over), pixels, rtol=0, atol=0)  # bit for bit
    with torch.no_grad():
        reference = backbone.model.encode_image(pixels).numpy()
    # batches of 3 and 1 round differently from one batch of 4 in the matmuls, hence atol, not equality
    np.testing.assert_allclose(backbone.encode_images(ims, batch_size=3, progress=False), reference, atol=2e-5)
    np.testing.assert_allclose(backbone.encode_images(paths, batch_size=3, num_workers=2, progress=False),
                               reference, atol=2e-5)


def test_unusual_preprocessing_keeps_the_float_path():
    from torchvision import transforms as T

    from cmr_demo.backbone.clip import split_preprocess
    assert split_preprocess(T.Compose([T.Resize(8), T.ToTensor()])) is None
    assert split_preprocess(lambda im: im) is None
