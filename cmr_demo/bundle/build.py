"""Building a bundle: train every objective (the training stage), then write the gallery, the lab's
features, gallery embeddings, aligned 2-D maps, the backbone, the model card and the manifest (the folder
contract is `cmr_demo.bundle.layout`). `python -m cmr_demo.bundle build ...` is its command line."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cmr_demo.files import (atomic_write_bytes, file_sha256, load_heads, load_json, load_tensors, package_versions,
                         save_json, save_tensors)
from cmr_demo.bundle.card import CARD_FILE, render_card
from cmr_demo.provenance import machine

from cmr_demo.bundle.layout import (FORMAT, GALLERY_FEATURES, ITEMS_FILE, LAB_FEATURES, RELEVANCE, THUMB_PX,
                                    backbone_spec)


def _write_gallery(out: Path, split) -> list[dict]:
    """items.jsonl (id, label; text and image when the data has them) plus the test images as small PNGs;
    returns the item records."""
    records = []
    for n, (item_id, label) in enumerate(zip(split.ids, split.labels.tolist())):
        record = {"id": item_id, "label": int(label)}
        if split.texts is not None:
            record["text"] = split.texts[n]
        if split.images is not None:
            record["image"] = _write_thumb(out, n, split.images[n])
        records.append(record)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(out / ITEMS_FILE, lines.encode())
    return records


def _write_thumb(out: Path, n: int, image) -> str:
    from PIL import Image
    (out / "gallery" / "images").mkdir(parents=True, exist_ok=True)
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            thumb = im.convert("RGB")
    else:
        thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_PX, THUMB_PX))
    rel = f"gallery/images/{n:05d}.png"
    atomic_write_bytes(out / rel, _png_bytes(thumb))
    return rel


def _png_bytes(image) -> bytes:
    import io
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _embed_and_map(out: Path, run_dirs: dict[str, Path], image_feats, text_feats, seed: int) -> None:
    """Gallery embeddings per objective and one UMAP per objective, aligned to the first objective's."""
    from tqdm.auto import tqdm

    from cmr_demo.bundle.maps import align_to, fit_map  # scipy/umap: build time only, kept out of the serving import path
    reference = None
    for name, run in tqdm(run_dirs.items(), desc="embeddings + maps", unit="objective"):
        heads = load_heads(run / "heads.safetensors", image_feats.shape[1], text_feats.shape[1])
        with torch.no_grad():
            img = heads.encode_image(torch.from_numpy(image_feats)).numpy()
            txt = heads.encode_text(torch.from_numpy(text_feats)).numpy()
        coords = fit_map(np.concatenate([img, txt]), seed=seed)
        reference = coords if reference is None else reference
        coords = align_to(coords, reference)
        n = len(img)
        save_tensors(run / "embeddings.safetensors", {"image": torch.from_numpy(img).half(),
                                                      "text": torch.from_numpy(txt).half()}, {"objective": name})
        save_tensors(run / "map.safetensors", {"image": torch.from_numpy(coords[:n]), "text": torch.from_numpy(coords[n:])},
                     {"objective": name, "method": "umap-cosine+procrustes", "seed": str(seed)})


def build(job, out: str | Path, overwrite: bool = False) -> dict:
    """Train every objective of `job` (a `cmr_demo.train.stage.TrainJob`; its runs go to OUT/objectives), then
    write gallery, embeddings, maps, backbone and manifest into `out`. The data is read and encoded once.

    Without a backbone (`job.features.backbone` None) the data's own features are used and the bundle has
    no backbone (features-only): what needs no new encoding is served, free-text and picture queries are not."""
    from cmr_demo.backbone.clip import bundle_backbone
    from cmr_demo.train.stage import load_dataset, load_features, run_dir_name, train
    out = Path(out)
    job = replace(job, out=str(out / "objectives"))
    backbone, data, seed = job.features.backbone, job.data.spec, job.train.seed
    clock = [time.perf_counter()]
    stages: dict[str, float] = {}

    def stage(name: str) -> None:  # seconds per stage, in the manifest and printed: where a large build goes
        now = time.perf_counter()
        stages[name], clock[0] = round(now - clock[0], 1), now
    dataset = load_dataset(job)  # the splits training uses: the lab trains on exactly these
    _check_buildable(dataset, data, backbone)
    stage("data")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite to rebuild it")
        shutil.rmtree(out)
    feats, source = load_features(job, dataset)
    stage("features")
    rows = train(job, dataset, (feats, source))
    stage("training")
    records = _write_gallery(out, dataset.test)
    write_lab_features(out, feats, dataset)
    stage("gallery")
    run_dirs = {name: out / "objectives" / run_dir_name(name) for name in rows}
    _embed_and_map(out, run_dirs, *feats["test"], seed=seed)
    stage("embeddings + maps")
    save_tensors(out / GALLERY_FEATURES, {"image": torch.from_numpy(feats["test"][0]).half(),
                                          "text": torch.from_numpy(feats["test"][1]).half()}, {"source": source.text})
    image_dim, text_dim = (int(f.shape[1]) for f in feats["test"])
    manifest = {
        "format": FORMAT, "name": out.resolve().name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "command": ["python", "-m", "cmr_demo.bundle", "build", *job.argv(run_options=False), "--out", str(out)],
        "backbone": None if backbone is None else {
            "spec": bundle_backbone(backbone, out), "built_from": backbone, "weights": source.weights_sha256,
            "feature_dim": image_dim},
        "features": {"source": source.kind, "from": source.text, "image_dim": image_dim, "text_dim": text_dim},
        "data": {"spec": data, "class_names": dataset.class_names, "gallery_items": len(records),
                 "texts": dataset.test.texts is not None, "pictures": dataset.test.images is not None},
        "objectives": {name: {"dir": f"objectives/{run_dir_name(name)}",
                              **{k: rows[name][k] for k in ("i2t_map", "t2i_map", "avg_map")}} for name in rows},
        "maps": {"method": "umap (cosine) per objective, orthogonal Procrustes onto the first", "seed": seed},
        "about": _about(dataset, backbone, feats["test"][0]),
        "versions": package_versions(),
    }
    atomic_write_bytes(out / CARD_FILE, render_card(manifest).encode())
    manifest["files"] = {str(p.relative_to(out)): file_sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
    stage("card + hashes")
    manifest["build_seconds"] = stages
    save_json(out / "manifest.json", manifest)
    print("build stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    return manifest


def write_lab_features(out: Path, feats: dict, dataset) -> None:
    """Every split's input features (float32, as trained on) and labels, so the app's lab trains heads with
    exactly what the builder used: with the same settings it reproduces the stored metrics."""
    tensors = {}
    for split, (image, text) in feats.items():
        tensors[f"{split}_image"] = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        tensors[f"{split}_text"] = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32))
        tensors[f"{split}_labels"] = torch.from_numpy(dataset.splits()[split].labels.astype(np.int64))
    (out / LAB_FEATURES).parent.mkdir(parents=True, exist_ok=True)
    save_tensors(out / LAB_FEATURES, tensors, {"splits": ",".join(feats), "val_source": dataset.val_source})


def add_lab(folder: str | Path) -> Path:
    """Give a bundle built before the lab existed its lab features, re-derived from the data and backbone it
    names (the feature cache makes this quick), checked against the gallery it stores, and listed (hashed)
    in its manifest."""
    from cmr_demo.data import DataError
    from cmr_demo.backbone.features import dataset_features
    folder = Path(folder)
    manifest = load_json(folder / "manifest.json")
    from cmr_demo.train.stage import load_dataset, parse_job
    run = load_json(folder / next(iter(manifest["objectives"].values()))["dir"] / "config.json")
    dataset = load_dataset(parse_job(run["command"][3:]))  # the run's own `python -m cmr_demo.train` arguments
    feats, _ = dataset_features(dataset, backbone_spec(folder), progress=False)
    stored, _ = load_tensors(folder / GALLERY_FEATURES)
    ids = [json.loads(line)["id"] for line in (folder / ITEMS_FILE).read_text().splitlines() if line]
    if dataset.test.ids != ids or not np.allclose(stored["image"].float().numpy(), feats["test"][0], atol=1e-2, rtol=1e-2):
        raise DataError(f"the data '{manifest['data']['spec']}' no longer gives the gallery {folder} was built from")
    write_lab_features(folder, feats, dataset)
    manifest["files"][LAB_FEATURES] = file_sha256(folder / LAB_FEATURES)
    manifest["files"] = dict(sorted(manifest["files"].items()))
    save_json(folder / "manifest.json", manifest)
    return folder / LAB_FEATURES


def _check_buildable(dataset, data: str, backbone: str | None) -> None:
    """Refuse, before anything is trained or deleted, a bundle the data cannot make."""
    from cmr_demo.data import DataError
    test = dataset.test
    if backbone is None and not test.has_features:
        raise DataError(f"'{data}' gives images and texts, not features: pass --backbone SPEC to encode them "
                        f"(e.g. --backbone RN50:openai)")
    if backbone is not None and not test.has_media:
        raise DataError(f"'{data}' ships features only, so --backbone {backbone} would not be used and the bundle "
                        f"could not encode new queries with it: drop --backbone to build a features-only bundle "
                        f"(gallery items as queries, Compare, leaderboard, maps; no free-text or picture search)")


def _about(dataset, backbone: str | None, image_feats: np.ndarray) -> dict:
    """What the bundle shows, for people: the data's own description, relevance, and how well the frozen
    backbone alone knows the classes (zero-shot on the gallery with "a photo of a {class}." prompts; only
    with a backbone: shipped features have no text encoder to write prompts with)."""
    about = {"description": dataset.description, "relevance": RELEVANCE, "classes": len(dataset.class_names),
             "license": dataset.license, "license_id": dataset.license_id,
             "examples": [list(e) for e in dataset.examples]}
    if backbone is None:
        return about
    from cmr_demo.backbone.clip import load_backbone
    from cmr_demo.backbone.pretrain import TEMPLATE, zero_shot_from_features
    prompts = load_backbone(backbone).encode_texts([TEMPLATE.format(c) for c in dataset.class_names], progress=False)
    zero_shot = zero_shot_from_features(image_feats, prompts, dataset.test.labels, dataset.class_names)
    zero_shot.pop("per_class")
    return {**about, "zero_shot": {**zero_shot, "on": "the gallery (test split)"}}


