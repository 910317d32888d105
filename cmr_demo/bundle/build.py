"""Building a bundle: train every objective (the training stage), then write the gallery, the lab's
features, gallery embeddings, aligned 2-D maps, the backbone, the model card and the manifest (the folder
contract is `cmr_demo.bundle.layout`). `python -m cmr_demo.bundle build ...` is its command line."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cmr_demo.files import (atomic_write_bytes, file_sha256, load_json, load_tensors, package_versions,
                         save_json, save_tensors)
from cmr_demo.bundle.card import CARD_FILE, render_card
from cmr_demo.train.heads import load_heads
from cmr_demo.provenance import machine

from cmr_demo.bundle.layout import (
    CALIBRATION,
    FORMAT,
    GALLERY_FEATURES,
    ITEMS_FILE,
    LAB_FEATURES,
    RELEVANCE,
    SEED_APS,
    THUMB_PX,
    backbone_spec,
)


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


def _embed_and_map(out: Path, run_dirs: dict[str, Path], image_feats, text_feats, seed: int,
                   fixed: dict[str, tuple] | None = None) -> None:
    """Gallery embeddings per objective and one UMAP per objective, aligned to the first objective's. `fixed`:
    entries whose embeddings are given rather than computed by heads (zero-shot: the features themselves),
    written before the others (their map is the reference the others are aligned to)."""
    from tqdm.auto import tqdm

    # scipy/umap: build time only, kept out of the serving import path
    from cmr_demo.bundle.maps import align_to, fit_map
    todo = {name: ("fixed", run) for name, run in run_dirs.items() if name in (fixed or {})}
    todo.update({name: ("heads", run) for name, run in run_dirs.items() if name not in todo})
    reference = None
    for name, (how, run) in tqdm(todo.items(), desc="embeddings + maps", unit="objective"):
        if how == "fixed":
            img, txt = fixed[name]
        else:
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
        save_tensors(
            run / "map.safetensors",
            {"image": torch.from_numpy(coords[:n]), "text": torch.from_numpy(coords[n:])},
            {"objective": name, "method": "umap-cosine+procrustes", "seed": str(seed)},
        )


def seed_summary(values: dict[int, float]) -> dict:
    """{seed: avg mAP} -> the runs, their mean, sample standard deviation and 95 % interval (`cmr_demo.stats`)."""
    from cmr_demo.stats import summary
    return {"runs": {str(k): float(x) for k, x in values.items()}, **summary(values.values())}


def write_seed_aps(run: Path, seeds: list[int], chosen: dict[int, dict], paper: dict[int, dict] | None) -> None:
    """`seeds.safetensors` in a run folder: [S, Q] test AP of every query in each direction under each seed (served
    first), at the chosen setting and, where tuning changed it, at the paper's (`paper_i2t`, `paper_t2i`): what the
    leaderboard's paired test and the per-query seed spread are computed from."""
    tensors = {}
    for prefix, table in (("", chosen), ("paper_", paper or {})):
        for d in ("i2t", "t2i"):
            if table:
                tensors[prefix + d] = torch.tensor([table[s]["per_query_ap"][d] for s in seeds], dtype=torch.float32)
    save_tensors(run / SEED_APS, tensors, {"seeds": ",".join(map(str, seeds))})


class StageTimer:
    """Seconds per build stage (in the manifest and printed: where a large build goes)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self._last = round(now - self._last, 1), now


def build(job, out: str | Path, overwrite: bool = False, seeds: list[int] | None = None, ray: str | None = None,
          tune: bool = True) -> dict:
    """Train every objective of `job` (a `cmr_demo.train.stage.TrainJob`), then write gallery, embeddings, maps,
    backbone and manifest: a bundle in `out`. The data is read and encoded once.

    `tune`: each objective's defining settings are chosen on the validation split first (`cmr_demo.train.tuning`;
    options the job sets are kept as given). `seeds`: more training seeds per objective, at the chosen setting and at
    the paper's where tuning changed it, metrics only; the leaderboard shows their mean, sample standard deviation,
    interval and a paired test against the best (the served heads are `job.train.seed`'s). With a backbone, the
    backbone alone joins the objectives
    as `zero-shot` (`cmr_demo.bundle.zero_shot`). Without one (`job.features.backbone` None) the data's own
    features are used and the bundle has no backbone (features-only).

    Nothing in `out` is touched until the new bundle is complete and verified: it is built in a sibling folder
    and swapped in; a build that fails or is killed leaves the old bundle as it was. `overwrite` replaces only
    a bundle (a folder with a manifest), never another folder.

    `ray`: extract features and train on Ray (a cluster's address, or "" for a local instance): extraction as Ray
    Data batches (`backbone.ray_extract`), every trial as a task (`bundle.ray_train`); the bundle is the one a local
    build makes."""
    from cmr_demo.bundle.trials import LocalRunner, train_runs
    from cmr_demo.data import read_data, with_validation
    from cmr_demo.train.stage import load_features
    out = Path(out)
    _check_target(out, overwrite)
    if ray is not None:  # before any data is read: where Ray is missing, say so at once
        from cmr_demo.ray_cluster import ray_module
        ray_module()
    work = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    job, timer = replace(job, out=str(work / "objectives")), StageTimer()
    try:
        raw = read_data(job.data.spec, strict=job.data.strict)  # read once: every seed carves its validation from it
        _check_buildable(raw, job.data.spec, job.features.backbone)
        timer("data")
        raw_feats, source = load_features(job, raw, ray)
        dataset, feats = with_validation(raw, job.val_fraction(), job.train.seed, raw_feats)  # the lab's splits too
        timer("features")
        others = list(dict.fromkeys(s for s in (seeds or []) if s != job.train.seed))  # each seed once
        if ray is None:
            runner = LocalRunner(job, dataset, feats, source, raw, raw_feats)
        else:
            from cmr_demo.bundle.ray_train import RayRunner
            runner = RayRunner(job, dataset, feats, source, raw, raw_feats, ray or None)
        Path(job.out).mkdir(parents=True, exist_ok=True)
        runs = train_runs(job, runner, work, others, tune)
        _print_runs(runs, job.quiet)
        timer("training")
        manifest = _assemble(work, out, job, seeds, dataset, feats, source, runs, timer)
        _swap_in(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("build stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in timer.seconds.items()))
    return manifest


def _print_runs(runs, quiet: bool) -> None:
    """The choice of each objective's setting and its test mAP over seeds, one line each."""
    from cmr_demo.train.tuning import settings_text
    if quiet:
        return
    for name, result in runs.tuning.items():
        chosen = settings_text(result["settings"]) or "no option"
        values = [m["avg_map"] for m in runs.chosen[name].values()]
        line = f"{name:<14} {chosen:<26} test avg mAP {np.mean(values):.4f} over {len(values)} seed(s)"
        if name in runs.paper:
            paper = [m["avg_map"] for m in runs.paper[name].values()]
            line += f"; at the paper's setting {np.mean(paper):.4f}"
        print(line)


def _assemble(work: Path, out: Path, job, seeds, dataset, feats, source, runs, timer: StageTimer) -> dict:
    """Everything but the training runs, written into `work`, then its manifest and card; verified."""
    from cmr_demo.bundle.verify import verify
    from cmr_demo.train.stage import run_dir_name
    backbone, seed, rows = job.features.backbone, job.train.seed, runs.rows
    for name in rows:
        write_seed_aps(work / "objectives" / run_dir_name(name), runs.seeds, runs.chosen[name], runs.paper.get(name))
    records = _write_gallery(work, dataset.test)
    write_lab_features(work, feats, dataset)
    timer("gallery")
    prompts = _prompt_features(backbone, dataset.class_names)
    if backbone is not None and dataset.train.images is not None:
        _fit_picture_check(work, backbone, dataset, feats["test"][0])
        timer("picture check")
    run_dirs, fixed = {name: work / "objectives" / run_dir_name(name) for name in rows}, {}
    if prompts is not None:
        from cmr_demo.bundle import zero_shot
        run_dirs = {zero_shot.NAME: work / "objectives" / zero_shot.NAME, **run_dirs}
        rows = {zero_shot.NAME: zero_shot.write(run_dirs[zero_shot.NAME], *feats["test"], dataset.test.labels,
                                                dataset.class_names, prompts), **rows}
        fixed[zero_shot.NAME] = zero_shot.embeddings(*feats["test"])
    _embed_and_map(work, run_dirs, *feats["test"], seed=seed, fixed=fixed)
    timer("embeddings + maps")
    save_tensors(work / GALLERY_FEATURES, {"image": torch.from_numpy(feats["test"][0]).half(),
                                           "text": torch.from_numpy(feats["test"][1]).half()}, {"source": source.text})
    manifest = _manifest(work, out, job, seeds, dataset, feats["test"], source, rows, runs, prompts, len(records))
    atomic_write_bytes(work / CARD_FILE, render_card(manifest).encode())
    manifest["files"] = {str(p.relative_to(work)): file_sha256(p) for p in sorted(work.rglob("*")) if p.is_file()}
    timer("card + hashes")
    manifest["build_seconds"] = timer.seconds
    save_json(work / "manifest.json", manifest)
    problems = verify(work)
    if problems:
        raise RuntimeError("the new bundle does not verify (the old one is kept):\n  " + "\n  ".join(problems[:10]))
    return manifest


def _manifest(work: Path, out: Path, job, seeds, dataset, test_feats, source, rows, runs, prompts, items: int) -> dict:
    from cmr_demo.backbone.clip import bundle_backbone
    backbone, seed = job.features.backbone, job.train.seed
    image_dim, text_dim = (int(f.shape[1]) for f in test_feats)
    return {
        "format": FORMAT, "name": out.resolve().name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "command": ["python", "-m", "cmr_demo.bundle", "build", *job.argv(run_options=False),
                    *(["--seeds", ",".join(str(s) for s in seeds)] if seeds else []),
                    *([] if runs.tuned else ["--no-tune"]), "--out", str(out)],
        "job": {**replace(job, out=None).values(), "seeds": list(seeds or [seed])},
        "backbone": None if backbone is None else {
            "spec": bundle_backbone(backbone, work), "built_from": backbone, "weights": source.weights_sha256,
            "feature_dim": image_dim},
        "features": {"source": source.kind, "from": source.text, "image_dim": image_dim, "text_dim": text_dim},
        "data": {"spec": job.data.spec, "class_names": dataset.class_names, "gallery_items": items,
                 "texts": dataset.test.texts is not None, "pictures": dataset.test.images is not None},
        "objectives": {name: _objective_entry(name, rows[name], seed, runs) for name in rows},
        "maps": {"method": "umap (cosine) per objective, orthogonal Procrustes onto the first", "seed": seed},
        "about": _about(dataset, prompts, test_feats[0]),
        "versions": package_versions(),
    }


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse, before anything is read or trained, an `out` that must not be replaced."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise ValueError(f"{out} is a file, not a bundle folder: choose another --out")
    if not overwrite:
        raise ValueError(f"{out} is not empty; pass --overwrite to replace the bundle in it")
    if not (out / "manifest.json").is_file():
        raise ValueError(f"{out} holds no bundle (no manifest.json), so --overwrite will not replace it: nothing "
                         f"but a bundle is ever deleted. Choose an empty or new --out")


def _swap_in(work: Path, out: Path) -> None:
    """Put the finished bundle in `work` at `out`: the old bundle moves aside first, and is removed last."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)


def _objective_entry(name: str, metrics: dict, seed: int, runs) -> dict:
    """The manifest's line for one objective: its folder, test metrics, how its setting was chosen, and the average
    mAP over seeds at that setting and at the paper's where tuning changed it."""
    from cmr_demo.bundle import zero_shot
    from cmr_demo.train.stage import run_dir_name
    entry = {"dir": f"objectives/{run_dir_name(name)}", **{k: metrics[k] for k in ("i2t_map", "t2i_map", "avg_map")}}
    if name == zero_shot.NAME:
        return {**entry, "kind": zero_shot.KIND}
    entry["tuning"] = runs.tuning[name]
    entry["seeds"] = {"served": seed, **seed_summary({s: m["avg_map"] for s, m in runs.chosen[name].items()})}
    if name in runs.paper:
        entry["paper"] = {"settings": runs.tuning[name]["paper_settings"],
                          "seeds": seed_summary({s: m["avg_map"] for s, m in runs.paper[name].items()}),
                          **{k: runs.paper[name][seed][k] for k in ("i2t_map", "t2i_map", "avg_map")}}
    return entry


def _fit_picture_check(out: Path, backbone: str, dataset, gallery_features: np.ndarray) -> None:
    """The out-of-world check for pictures (`cmr_demo.bundle.world_check`), fitted on this data and backbone."""
    from cmr_demo.backbone.clip import load_backbone
    from cmr_demo.bundle import world_check
    model = load_backbone(backbone)
    check = world_check.fit(lambda pictures: model.encode_images(pictures, batch_size=256, progress=False),
                            dataset.train.images, gallery_features, dataset.related_pictures)
    (out / world_check.FILE).parent.mkdir(parents=True, exist_ok=True)
    check.save(out / world_check.FILE)
    calibration = world_check.class_calibration(lambda p: model.encode_images(p, batch_size=256, progress=False),
                                                dataset.related_pictures, len(dataset.train))
    if calibration is not None:
        save_tensors(out / CALIBRATION, {"image": torch.from_numpy(calibration[0]).half(),
                                         "labels": torch.from_numpy(calibration[1])}, {"what": "related pictures"})
    m = check.measured
    print(f"picture check: gallery flagged {m['gallery_flagged']:.1%}"
          + (f", drawings {m['drawings_flagged']:.1%}" if "drawings_flagged" in m else "")
          + "; outside kinds flagged " + ", ".join(f"{k} {v:.0%}" for k, v in m["outside_flagged"].items()))


def _prompt_features(backbone: str | None, class_names: list[str]) -> np.ndarray | None:
    """[C, F] backbone features of "a photo of a {class}." for each class; None without a backbone."""
    if backbone is None:
        return None
    from cmr_demo.backbone.clip import load_backbone
    from cmr_demo.bundle.zero_shot import PROMPT
    return load_backbone(backbone).encode_texts([PROMPT.format(c) for c in class_names], progress=False)


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
    from cmr_demo.train.stage import TrainJob, load_dataset
    dataset = load_dataset(TrainJob.from_values(manifest["job"]))  # the build's own training job
    feats, _ = dataset_features(dataset, backbone_spec(folder), progress=False)
    stored, _ = load_tensors(folder / GALLERY_FEATURES)
    ids = [json.loads(line)["id"] for line in (folder / ITEMS_FILE).read_text().splitlines() if line]
    if dataset.test.ids != ids or not np.allclose(
        stored["image"].float().numpy(), feats["test"][0], atol=1e-2, rtol=1e-2
    ):
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


def _about(dataset, prompts: np.ndarray | None, image_feats: np.ndarray) -> dict:
    """What the bundle shows, for people: the data's own description, relevance, and how well the frozen
    backbone alone knows the classes (zero-shot on the gallery with "a photo of a {class}." prompts; only
    with a backbone: shipped features have no text encoder to write prompts with)."""
    about = {"description": dataset.description, "relevance": RELEVANCE, "classes": len(dataset.class_names),
             "license": dataset.license, "license_id": dataset.license_id,
             "examples": [list(e) for e in dataset.examples]}
    if dataset.class_groups:
        about["class_groups"] = dataset.class_groups
    if prompts is None:
        return about
    from cmr_demo.backbone.prompts import TEMPLATE, zero_shot_from_features
    zero_shot = zero_shot_from_features(image_feats, prompts, dataset.test.labels, dataset.class_names, TEMPLATE)
    zero_shot.pop("per_class")
    return {**about, "zero_shot": {**zero_shot, "on": "the gallery (test split)"}}
