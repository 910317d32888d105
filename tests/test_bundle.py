"""Bundles: build on a very small world, verify, catch damage, and the real-backbone path."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cmr_demo.backbone.clip import load_backbone
from cmr_demo.bundle.layout import backbone_spec
from cmr_demo.bundle.build import build
from cmr_demo.bundle.command import main as bundle_main
from cmr_demo.bundle.verify import verify
from cmr_demo.files import load_tensors
from cmr_demo.train.heads import load_heads
from conftest import quick_job



def test_round_trip(small_bundle):
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    assert verify(small_bundle) == []
    assert set(manifest["objectives"]) == {"zero-shot", "pcl", "ce", "pcl+0.5*tl"}  # the backbone alone, first
    assert manifest["machine"] and manifest["command"][:4] == ["python", "-m", "cmr_demo.bundle", "build"]
    items = [json.loads(line) for line in (small_bundle / "gallery" / "items.jsonl").read_text().splitlines()]
    assert len(items) == manifest["data"]["gallery_items"] == 40
    assert all((small_bundle / it["image"]).is_file() for it in items)
    # stored embeddings equal a fresh encoding of the gallery through the bundle's own backbone + heads
    backbone = load_backbone(backbone_spec(small_bundle))
    from PIL import Image
    with Image.open(small_bundle / items[0]["image"]) as im:
        feats = backbone.encode_images([im.copy()], progress=False)
    heads = load_heads(small_bundle / "objectives" / "pcl" / "heads.safetensors", image_dim=backbone.feature_dim)
    with torch.no_grad():
        live = heads.encode_image(torch.from_numpy(feats)).numpy()[0]
    stored = load_tensors(small_bundle / "objectives" / "pcl" / "embeddings.safetensors")[0]["image"][0].float().numpy()
    np.testing.assert_allclose(live, stored, atol=2e-3)  # float16 storage
    coords = load_tensors(small_bundle / "objectives" / "ce" / "map.safetensors")[0]
    assert coords["image"].shape == (40, 2) and torch.isfinite(coords["text"]).all()


def test_verify_catches_a_corrupted_file_and_a_missing_objective(small_bundle, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(small_bundle, damaged)
    heads = damaged / "objectives" / "ce" / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-8] + b"\x00" * 8)
    shutil.rmtree(damaged / "objectives" / "pcl")
    problems = verify(damaged)
    assert any("sha256 mismatch for objectives/ce/heads.safetensors" in p for p in problems)
    assert any("objective 'pcl' is incomplete" in p for p in problems)
    assert bundle_main(["verify", str(damaged)]) == 1
    assert bundle_main(["verify", str(small_bundle)]) == 0


def test_refuses_to_overwrite_and_what_the_data_cannot_make(small_bundle, tmp_path):
    with pytest.raises(ValueError, match="--overwrite"):
        build(quick_job("shapes:200", backbone="nano-clip:random"), small_bundle)
    with pytest.raises(ValueError, match="ships features only.*drop --backbone"):
        build(quick_job("synthetic:200", backbone="nano-clip:random"), tmp_path / "x")
    with pytest.raises(ValueError, match="gives images and texts, not features: pass --backbone"):
        build(quick_job("shapes:200"), tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # refused before anything was trained


def test_a_features_only_bundle_is_complete_and_checked(features_bundle, tmp_path):
    """No backbone, no pictures, no texts: the data's own features (64-d image, 48-d text) feed the heads;
    verify checks them; the card says where the features came from; the loader serves it without a backbone."""
    from cmr_demo.bundle.card import render_card
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.data import load_data
    manifest = json.loads((features_bundle / "manifest.json").read_text())
    assert manifest["backbone"] is None and "--backbone" not in manifest["command"]
    assert manifest["features"]["source"] == "precomputed" and manifest["features"]["from"].startswith(
        "precomputed:clip4cmr:"
    )
    assert (manifest["features"]["image_dim"], manifest["features"]["text_dim"]) == (64, 48)
    assert not (features_bundle / "gallery" / "images").exists() and not (features_bundle / "backbone").exists()
    assert verify(features_bundle, require_card=True) == []
    assert "64-d for images and 48-d for texts" in render_card(manifest)
    bundle = load_bundle(features_bundle)
    test = load_data("synthetic:400").test
    assert bundle.backbone is None and not bundle.has_pictures and not bundle.has_texts
    assert [it["id"] for it in bundle.items] == test.ids and bundle.image_path(0) is None
    assert np.allclose(bundle.image_features, test.image_features, atol=2e-3 * np.abs(test.image_features).max())
    # a gallery row lost, and heads that do not take the bundle's features: both named
    damaged = tmp_path / "damaged"
    shutil.copytree(features_bundle, damaged)
    items = damaged / "gallery" / "items.jsonl"
    items.write_text("".join(items.read_text().splitlines(keepends=True)[:-1]))
    wrong = json.loads((damaged / "manifest.json").read_text())
    wrong["features"]["text_dim"] = 47
    (damaged / "manifest.json").write_text(json.dumps(wrong))
    problems = verify(damaged)
    assert any("items.jsonl has 99 items, the manifest says 100" in p for p in problems), problems
    assert any("heads take 64-d image and 48-d text features, the bundle's features are 64-d and 47-d" in p
               for p in problems), problems


@pytest.mark.slow
def test_real_backbone_path_vit_b32_random_weights_from_a_local_file(tmp_path, vit_b32_weights):
    """The builder with a ViT-B-32 whose (random) weights come from a local file, on a handful of items."""
    out = tmp_path / "vit_bundle"
    manifest = build(quick_job("shapes:100", backbone=f"ViT-B-32:{vit_b32_weights}", epochs=1, embed_dim=32,
                               hidden_dim=16), out)
    assert manifest["backbone"]["spec"] == "ViT-B-32:backbone/vitb32.safetensors"
    assert manifest["backbone"]["feature_dim"] == 512 and verify(out) == []
    assert backbone_spec(out).endswith("vit_bundle/backbone/vitb32.safetensors")


def test_loader_gives_the_app_everything_without_umap(small_bundle, tmp_path):
    import subprocess
    import sys
    code = ("import sys, time; t=time.perf_counter(); from cmr_demo.bundle.load import load_bundle; "
            f"b=load_bundle({str(small_bundle)!r}); "
            "assert 'umap' not in sys.modules and 'numba' not in sys.modules, 'serving imported umap/numba'; "
            "print(len(b.items), sorted(b.objectives), b.backbone.feature_dim)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "40" and "pcl" in out
    from cmr_demo.bundle.load import load_bundle
    bundle = load_bundle(small_bundle)
    view = bundle.objectives["pcl"]
    assert view.image_emb.shape == (40, 64) and view.text_xy.shape == (40, 2)
    assert bundle.image_path(0).is_file() and len(bundle.labels) == 40
    damaged = tmp_path / "d"
    shutil.copytree(small_bundle, damaged)
    (damaged / "gallery" / "items.jsonl").write_text("")
    from cmr_demo.files import CheckpointError
    with pytest.raises(CheckpointError, match="sha256 mismatch for gallery/items.jsonl"):
        load_bundle(damaged)


def test_gallery_paths_cannot_escape_the_bundle(small_bundle, tmp_path):
    """A bundle whose items point at ../../etc/passwd is refused, even with matching hashes (re-signed)."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.files import CheckpointError, file_sha256
    evil = tmp_path / "evil"
    shutil.copytree(small_bundle, evil)
    items = evil / "gallery" / "items.jsonl"
    lines = items.read_text().splitlines()
    first = json.loads(lines[0])
    first["image"] = "../../../../etc/passwd"
    items.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["files"]["gallery/items.jsonl"] = file_sha256(items)
    manifest["files"]["../outside.txt"] = "0" * 64
    (evil / "manifest.json").write_text(json.dumps(manifest))
    assert any("points outside the bundle" in p for p in verify(evil))
    with pytest.raises(CheckpointError, match="points outside"):
        load_bundle(evil, check_hashes=False)
    # a re-signed item naming a listed file of the bundle that is not a gallery picture: refused at load too
    first["image"] = "objectives/ce/heads.safetensors"
    items.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    manifest["files"]["gallery/items.jsonl"] = file_sha256(items)
    del manifest["files"]["../outside.txt"]
    (evil / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not under gallery/images/"):
        load_bundle(evil)


def test_links_out_of_the_bundle_are_refused_and_links_within_it_are_not(small_bundle, tmp_path):
    """A gallery picture that is a link to a file elsewhere, or a gallery folder that is a link to a folder
    elsewhere, is refused even with matching hashes; a link that stays inside the bundle is fine."""
    from cmr_demo.bundle.layout import outside
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(small_bundle / "gallery" / "images", elsewhere)
    bundle = tmp_path / "b"
    shutil.copytree(small_bundle, bundle)
    images = sorted(p.name for p in (bundle / "gallery" / "images").iterdir())
    rels = [f"gallery/images/{name}" for name in images]
    assert outside(bundle, bundle, rels) == []
    (bundle / "gallery" / "images" / images[0]).unlink()
    (bundle / "gallery" / "images" / images[0]).symlink_to(elsewhere / images[0])  # same bytes, outside
    (bundle / "gallery" / "images" / images[1]).unlink()
    (bundle / "gallery" / "images" / images[1]).symlink_to(bundle / "gallery" / "images" / images[2])  # inside
    assert outside(bundle, bundle, rels) == [rels[0]]
    assert any("points outside the bundle" in p for p in verify(bundle))
    shutil.rmtree(bundle / "gallery" / "images")
    (bundle / "gallery" / "images").symlink_to(elsewhere)  # the whole folder elsewhere
    assert outside(bundle, bundle, rels) == rels
    assert outside(bundle, bundle, ["/etc/passwd", "gallery/../../x", "README.md"]) == [
        "/etc/passwd",
        "gallery/../../x",
    ]


def test_the_bundle_describes_itself_and_its_card_agrees(small_bundle, tmp_path):
    from cmr_demo.bundle.card import render_card
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    about = manifest["about"]
    assert about["classes"] == 10 and "shape" in about["description"] and about["license_id"] == "mit"
    # the zero-shot score, recomputed: the frozen backbone's prompts against the gallery features it was built on
    from cmr_demo.backbone.prompts import TEMPLATE
    lab_tensors, _ = load_tensors(small_bundle / "lab" / "features.safetensors")
    prompts = load_backbone("nano-clip:random").encode_texts(
        [TEMPLATE.format(c) for c in manifest["data"]["class_names"]], progress=False
    )
    image = lab_tensors["test_image"].numpy()
    hits = ((image / np.linalg.norm(image, axis=1, keepdims=True)) @ prompts.T).argmax(1) == lab_tensors[
        "test_labels"
    ].numpy()
    assert about["zero_shot"]["n"] == 40 and about["zero_shot"]["accuracy"] == pytest.approx(hits.mean())
    card = (small_bundle / "README.md").read_text()
    assert card == render_card(manifest) and card.startswith("---\nlicense: mit\n")
    for name, o in manifest["objectives"].items():  # every objective's result is in the model-index
        assert f"mAP@all image->text ({name})\", value: {o['i2t_map']:.4f}" in card
    feats, _ = load_tensors(small_bundle / "gallery" / "features.safetensors")
    assert feats["image"].shape == feats["text"].shape == (40, manifest["backbone"]["feature_dim"])
    edited = tmp_path / "edited"
    shutil.copytree(small_bundle, edited)
    (edited / "README.md").write_text(card.replace("mAP", "MAP", 1))
    assert any("does not agree with manifest.json" in p for p in verify(edited))


def test_bundles_on_the_same_backbone_weights_share_one_loaded_copy(small_bundle, tmp_path):
    """Two bundles (one a copy in another folder) load one backbone between them: the app may serve several."""
    from cmr_demo.bundle.load import load_bundle
    copy = tmp_path / "copy"
    shutil.copytree(small_bundle, copy)
    assert load_bundle(small_bundle).backbone.get() is load_bundle(copy).backbone.get()


def test_a_damaged_gallery_picture_is_caught_when_first_used_and_by_verify(small_bundle, tmp_path):
    """Loading reads no gallery picture (start-up does not grow with the gallery); each picture's hash is
    checked the first time it is asked for, and `bundle verify` still checks every one."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.files import CheckpointError
    copy = tmp_path / "copy"
    shutil.copytree(small_bundle, copy)
    picture = copy / "gallery" / "images" / "00002.png"
    picture.write_bytes(picture.read_bytes()[:-4] + b"\0\0\0\0")
    bundle = load_bundle(copy, load_backbone=False)
    assert len(bundle.unchecked) == len(bundle.items)  # none read yet
    assert bundle.image_path(1).is_file() and "gallery/images/00001.png" not in bundle.unchecked  # checked once
    with pytest.raises(CheckpointError, match="gallery picture gallery/images/00002.png was changed or damaged"):
        bundle.image_path(2)
    assert any("sha256 mismatch for gallery/images/00002.png" in p for p in verify(copy))


@pytest.mark.slow
def test_a_large_map_is_fitted_on_a_sample_and_places_the_rest():
    """Beyond `fit_at_most` points UMAP is fitted on a sample and the others are placed among it: every point gets a
    place, and points keep their class's neighbourhood (most nearest 2-D neighbours share the class)."""
    from cmr_demo.bundle.maps import fit_map
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 1500)
    emb = rng.normal(size=(5, 16))[labels] + 0.3 * rng.normal(size=(1500, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    coords = fit_map(emb, seed=0, fit_at_most=500)
    assert coords.shape == (1500, 2) and np.isfinite(coords).all()
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    same = (labels[np.argsort(d, axis=1)[:, :5]] == labels[:, None]).mean()
    assert same > 0.9, same


def test_a_manifest_of_the_wrong_shape_is_refused_in_the_apps_words(features_bundle, tmp_path):
    """Each top-level manifest field (and each field one level down) replaced with a value of another type: the
    loader refuses with CheckpointError (the app's one-line refusal) and verify lists a problem; never a raw TypeError,
    KeyError
    or AttributeError (a list for "objectives" or "about" gave AttributeError)."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.files import CheckpointError
    folder = tmp_path / "b"
    shutil.copytree(features_bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    paths = [(k,) for k in manifest] + [(k, j) for k, v in manifest.items() if isinstance(v, dict) for j in v]
    for path in paths:
        for bad in ([], "x", 5, None, {"a": 1}):
            changed = json.loads(json.dumps(manifest))
            parent = changed if len(path) == 1 else changed[path[0]]
            parent[path[-1]] = bad
            (folder / "manifest.json").write_text(json.dumps(changed))
            try:
                load_bundle(folder, load_backbone=False)
            except CheckpointError:
                pass
            assert isinstance(verify(folder), list), path


def test_migrate_writes_an_older_card_again_from_the_manifest(small_bundle, tmp_path):
    from cmr_demo.bundle.migrate import migrate
    old = tmp_path / "old-card"
    shutil.copytree(small_bundle, old)
    (old / "README.md").write_text("a card an older version wrote\n")
    problems = verify(old)
    assert any("migrate" in p for p in problems)
    assert migrate(old) is True and verify(old) == [] and migrate(old) is False


def test_bundle_tools_check_sizes_and_kinds_before_reading(small_bundle, tmp_path):
    """A listed file that is a sparse 3 GB file, a link to /dev/zero or a link out of the bundle is refused from the
    file system, unread: `verify` once read the sparse file whole (killed at 4 GB) and read /dev/zero until killed;
    the app took 38 s and 3.4 GB before refusing."""
    import os
    import subprocess
    import sys
    import time

    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.files import CheckpointError
    folder = tmp_path / "hostile"
    shutil.copytree(small_bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    big = next(rel for rel in manifest["files"] if rel.endswith("embeddings.safetensors"))
    os.truncate(folder / big, 3 * 2 ** 30)  # sparse: 3 GB declared, nothing on disk
    items = next(rel for rel in manifest["files"] if rel.endswith(".jsonl"))
    (folder / items).unlink()
    (folder / items).symlink_to("/dev/zero")
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": 1}')
    config = next(rel for rel in manifest["files"] if rel.endswith("config.json"))
    (folder / config).unlink()
    (folder / config).symlink_to(secret)
    code = ("import sys, time; from cmr_demo.bundle.verify import verify; t = time.time(); p = verify(sys.argv[1]); "
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "  # this process's
            "print(round(time.time() - t, 1), int(peak) // 1024); print(*p, sep='\\n')")  # (ru_maxrss: the parent's)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, rss_mb = out.stdout.splitlines()[0].split()
    problems = out.stdout.splitlines()[1:]
    assert time.perf_counter() - start <= 60 and float(seconds) <= 20 and int(rss_mb) <= 600, out.stdout[:300]
    assert any(big in p and "GB, more than" in p for p in problems), problems
    assert any(repr(items) in p and "outside the bundle" in p for p in problems), problems
    assert any(repr(config) in p and "outside the bundle" in p for p in problems), problems
    assert "secret" not in out.stdout
    with pytest.raises(CheckpointError):
        load_bundle(folder, load_backbone=False)
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to("/dev/zero")
    assert "is a link" in verify(folder)[0]


def test_migrate_refuses_what_it_cannot_migrate_and_changes_nothing(small_bundle, tmp_path):
    """A list manifest, a format-1 manifest without its build command or with `backbone: null`: the app's message,
    not an AttributeError, KeyError or TypeError. A format-1 bundle that would not verify is left byte for byte as
    it was (migrate once rewrote the manifest before it checked)."""
    from cmr_demo.bundle.layout import FORMERLY
    from cmr_demo.bundle.migrate import migrate
    from cmr_demo.files import CheckpointError
    folder = tmp_path / "old"
    shutil.copytree(small_bundle, folder)
    current = json.loads((folder / "manifest.json").read_text())
    old = {k: v for k, v in current.items() if k != "job"} | {"format": FORMERLY[0]}
    cases = {"a list": ([1, 2], "not a bundle manifest"),
             "no command": ({k: v for k, v in old.items() if k not in ("command", "features")}, "lacks what migration"),
             "no backbone": ({k: v for k, v in old.items() if k != "features"} | {"backbone": None},
                             "lacks what migration"),
             "a bad command": (old | {"command": ["python", "-m", "x", "build", "--no-such-flag"]}, "lacks what"),
             "a damaged file": (old | {"files": {**old["files"], "gallery/items.jsonl": "0" * 64}}, "would not verify")}
    for what, (manifest, words) in cases.items():
        text = json.dumps(manifest)
        (folder / "manifest.json").write_text(text)
        with pytest.raises(CheckpointError, match=words):
            migrate(folder)
        assert (folder / "manifest.json").read_text() == text, f"{what}: the manifest was changed"
    (folder / "manifest.json").write_text(json.dumps(old))
    assert migrate(folder) is True and verify(folder) == []
