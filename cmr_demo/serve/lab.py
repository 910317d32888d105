"""The objective lab: train one pair of heads live on a bundle's own features, with any objective and setting.

Why it exists: the paper's value is its study (which objective, how robust to missing texts or images,
how sensitive to hyper-parameters), and on a bundle's stored features one training run takes seconds.
Why it reproduces the bundle: it trains with `train.fit.fit` (the builder's code path) on the features the
builder trained on (`lab/features.safetensors`, float32) and scores with `train.stage.final_metrics`; the same
settings and seed therefore give the stored metrics.

A lab run never touches the bundle: its heads, gallery embeddings and map points live in the caller's
hands (the app keeps them in one user's session, see `RetrievalService.with_objective`). Its map points are
placed on the bundle's aligned map from their nearest neighbours in the run's own space, without UMAP.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cmr_demo.bundle.layout import LAB_FEATURES
from cmr_demo.bundle.load import Bundle, ObjectiveView
from cmr_demo.files import load_json, load_tensors
from cmr_demo.train.heads import HeadConfig
from cmr_demo.serve.inputs import InputError, shown
from cmr_demo.train.objectives import OBJECTIVES, parse_hybrid
from cmr_demo.train.spec import ObjectiveSpec
from cmr_demo.serve.placement import place_points
from cmr_demo.train.fit import Diverged, Tensors, TrainConfig, fit

TRAINING = threading.Lock()
MAX_SECONDS = 90.0  # a lab run is stopped here (the best epoch so far is kept): one user cannot hold the CPU
MAX_EPOCHS = 1000  # early stopping or the time cap ends a run long before
MAX_DIM = 1024  # the paper's embedding width; wider runs would cost memory for every session that keeps one
MAX_PARTS = 4  # parts of a hybrid objective: each costs a loss per batch
# what a user may set, with its bounds: (type, low, high); everything else comes from the bundle's own run
LIMITS: dict[str, tuple[type, float, float]] = {
    "lr": (float, 1e-6, 1.0), "batch_size": (int, 8, 4096), "epochs": (int, 1, MAX_EPOCHS), "patience": (int, 1, 100),
    "seed": (int, 0, 2 ** 31 - 1), "text_fraction": (float, 0.0, 1.0), "image_fraction": (float, 0.0, 1.0),
    "embed_dim": (int, 2, MAX_DIM), "hidden_dim": (int, 2, MAX_DIM)}


@dataclass
class LabRun:
    """A finished (or stopped) lab run: what to show and what joins the user's compare/leaderboard/map."""
    name: str  # "lab 1: pcl" — never an objective name of the bundle
    objective: str
    settings: dict  # the train and head settings as run
    metrics: dict  # final_metrics(): test mAP per direction, per class, per query
    history: list[dict]
    seconds: float
    stopped: str | None  # why the run ended before early stopping ("stopped on request", "time cap ..."), else None
    view: ObjectiveView = field(repr=False)


def has_lab(bundle: Bundle) -> bool:
    return LAB_FEATURES in bundle.manifest["files"]


def check_objective(spec: object) -> str:
    """An objective of the registry or a hybrid like 'pcl+0.5*tl' (refused in the app's words otherwise)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"choose an objective: {', '.join(OBJECTIVES)}, or a hybrid like 'pcl+0.5*tl'")
    if len(spec) > 80:
        raise InputError(f"the objective is {len(spec)} characters long; a hybrid has at most {MAX_PARTS} parts, "
                         f"like 'pcl+0.5*tl'")
    try:
        parts = parse_hybrid(spec.strip())
    except ValueError:
        raise InputError(f"unknown objective {spec.strip()[:40]!r}: choose one of {', '.join(OBJECTIVES)}, or a hybrid "
                         f"like 'pcl+0.5*tl' (weights times objectives, joined by +)") from None
    if len(parts) > MAX_PARTS:
        raise InputError(f"a hybrid objective has at most {MAX_PARTS} parts here; '{spec.strip()[:40]}' has "
                         f"{len(parts)}")
    return spec.strip()


@functools.lru_cache(maxsize=256)
def _run_config(path: Path) -> dict:
    """A bundle run's config.json, read once (bundles do not change while served; every lab request asks)."""
    return load_json(path)


def base_settings(bundle: Bundle, objective: str) -> tuple[TrainConfig, HeadConfig]:
    """The bundle's own settings for `objective` (from its run's config.json), or its best run's settings with
    that objective and its default options when the bundle did not train it."""
    runs = {n: e for n, e in bundle.manifest["objectives"].items() if e.get("kind") != "zero-shot"}  # no settings
    name = objective if objective in runs else max(runs, key=lambda n: runs[n]["avg_map"])
    config = _run_config(bundle.folder / runs[name]["dir"] / "config.json")
    train = TrainConfig(**{k: v for k, v in config["train"].items() if k in {f.name for f in fields(TrainConfig)}})
    if name != objective:
        train = replace(train, objective=objective, objective_options={})
    return replace(train, device="cpu", precision="fp32"), HeadConfig(**config["heads"])


def settings_for(
    bundle: Bundle, objective: object, options: object = "", **overrides
) -> tuple[TrainConfig, HeadConfig]:
    """The run's settings: the bundle's own for the objective, then the user's options and overrides, checked."""
    objective = check_objective(objective)
    train, heads = base_settings(bundle, objective)
    if options is not None and not isinstance(options, str):
        raise InputError(f"options are text like 'margin=0.3,temperature=0.5'; got {shown(options)}")
    try:  # the trainer's own parser: an option no part of the objective has is refused, naming the valid ones
        spec = ObjectiveSpec.parse(objective, [p for p in (options or "").split(",") if p.strip()])
    except ValueError as err:
        raise InputError(str(err)) from None
    if spec.options:
        train = replace(train, objective_options={**train.objective_options, **spec.options_for(objective)})
    changes = {}
    for key, value in overrides.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        kind, low, high = LIMITS[key]
        try:
            number = float(value)
            if kind is int:
                if not number.is_integer():
                    raise ValueError
                number = int(number)
        except (TypeError, ValueError, OverflowError):
            whole = "a whole number" if kind is int else "a number"
            raise InputError(f"{key.replace('_', ' ')} must be {whole}; got {shown(value)}") from None
        if isinstance(value, bool) or not low <= number <= high or (key.endswith("fraction") and number <= 0):
            span = f"in (0, {high:g}]" if key.endswith("fraction") else f"from {low:g} to {high:g}"
            raise InputError(f"{key.replace('_', ' ')} must be {span}; got {shown(value)}")
        changes[key] = number
    head_keys = {f.name for f in fields(HeadConfig)}
    try:  # the configs' own checks (a setting no training can use) in the app's words
        train = replace(train, **{k: v for k, v in changes.items() if k not in head_keys})
        heads = replace(heads, **{k: v for k, v in changes.items() if k in head_keys})
    except ValueError as err:
        raise InputError(str(err)) from None
    return train, heads


def changes(bundle: Bundle, train: TrainConfig, heads: HeadConfig) -> str:
    """What a run changes from the bundle's own settings for its objective, short: 'margin=0.3, text 0.3'.
    Goes into the run's name, so a user can tell runs apart in Compare, the leaderboard and the maps."""
    base_train, base_heads = base_settings(bundle, train.objective)
    short = {"text_fraction": "text", "image_fraction": "image", "batch_size": "batch", "embed_dim": "embed",
             "hidden_dim": "hidden"}
    parts = [f"{k}={v:g}" for k, v in train.objective_options.items() if base_train.objective_options.get(k) != v]
    for cfg, base in ((train, base_train), (heads, base_heads)):
        for f in fields(cfg):
            if f.name in LIMITS and getattr(cfg, f.name) != getattr(base, f.name):
                parts.append(f"{short.get(f.name, f.name)} {getattr(cfg, f.name):g}")
    return ", ".join(parts)


def lab_data(bundle: Bundle) -> dict[str, Tensors]:
    """The bundle's train / val / test features as the builder trained on them (read once per bundle)."""
    if not has_lab(bundle):
        raise InputError(f"this bundle has no lab features (built before the lab): add them with "
                         f"'python -m cmr_demo.bundle add-lab {bundle.folder.name}'")
    return _lab_tensors(bundle.folder / LAB_FEATURES)


@functools.lru_cache(maxsize=16)
def _lab_tensors(path: Path) -> dict[str, Tensors]:
    tensors, _ = load_tensors(path)
    splits = {k.rsplit("_", 1)[0] for k in tensors}
    return {s: Tensors(tensors[f"{s}_image"].float(), tensors[f"{s}_text"].float(), tensors[f"{s}_labels"].long())
            for s in splits}


def train_lab(bundle: Bundle, train: TrainConfig, heads: HeadConfig, name: str,
              on_epoch: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
              max_seconds: float = MAX_SECONDS) -> LabRun:
    """Fit the heads, score them on the bundle's test split, embed its gallery and place it on the map."""
    from cmr_demo.train.stage import final_metrics
    data = lab_data(bundle)
    select = data[train.select_on] if train.select_on in data else data["val"]
    why: list[str] = []
    started = [time.perf_counter()]  # reset once this run holds the lock: waiting does not count

    def interrupted() -> bool:
        """Asked before every batch: a Stop or the time cap ends the run within one batch, not one epoch."""
        if not why and stop is not None and stop.is_set():
            why.append("stopped on request")
        elif not why and time.perf_counter() - started[0] > max_seconds:
            why.append(f"time cap: stopped after {max_seconds:.0f} s")
        return bool(why)

    heads = replace(heads, image_dim=int(data["train"].image.shape[1]), text_dim=int(data["train"].text.shape[1]))
    with TRAINING:  # one lab run trains at a time in this process, whoever started it (page, API, a dropped request)
        started[0] = time.perf_counter()
        try:
            result = fit(train, heads, len(bundle.class_names), data["train"], select, progress=False,
                         on_epoch=on_epoch, interrupt=interrupted)
        except Diverged as err:  # the user's settings blew the run up: say so, keep nothing
            raise InputError(str(err)) from None
    if not all(torch.isfinite(p).all() for m in (result.heads, result.objective) for p in m.state_dict().values()):
        raise InputError(f"the run's weights are not finite numbers (the settings blew it up): lower the learning "
                         f"rate or the objective's options ({train.objective_options or 'defaults'})")
    if not result.history:
        raise InputError(f"the run was {why[0] if why else 'stopped'} before it finished its first epoch: nothing to "
                         f"show (a larger batch size or smaller widths make epochs shorter)")
    metrics = final_metrics(result, {k: v for k, v in data.items() if k in ("test", "val")}, bundle.class_names, train)
    view = gallery_view(bundle, name, result, data["test"], metrics)
    return LabRun(name, train.objective, {"train": asdict(train), "heads": asdict(heads)}, metrics, result.history,
                  round(time.perf_counter() - started[0], 2), why[0] if why else None, view)


@torch.no_grad()
def gallery_view(bundle: Bundle, name: str, result, test: Tensors, metrics: dict) -> ObjectiveView:
    """The run's gallery embeddings and their places on the bundle's aligned map (reference: its best objective)."""
    img = result.heads.encode_image(test.image).numpy()
    txt = result.heads.encode_text(test.text).numpy()
    best = max(bundle.objectives.values(), key=lambda v: v.metrics.get("avg_map") or 0)
    xy = place_points(np.concatenate([img, txt]), np.concatenate([best.image_xy, best.text_xy]))
    n = len(img)
    return ObjectiveView(name, result.heads, img, txt, xy[:n], xy[n:], metrics, result.objective, kind="lab")


class SessionRuns:
    """Each user's lab runs, by session and bundle, as that bundle's service with the runs added.

    Why keyed by session: a run is one user's experiment, so it joins that user's Compare, leaderboard and
    maps and nobody else's (a program using one gradio_client sees its own runs the same way). Bounded:
    the newest `per_bundle` runs per bundle, and at most `max_bytes` of runs in all (heads, embeddings and
    their indexes), the least recently active sessions' runs dropped first."""

    def __init__(self, max_bytes: int = 512 * 2 ** 20, per_bundle: int = 3):
        from collections import OrderedDict
        self.max_bytes, self.per_bundle = max_bytes, per_bundle
        self._runs: OrderedDict[str, dict[str, list[LabRun]]] = OrderedDict()
        self._services: dict[tuple[str, str], object] = {}
        self._stops: dict[str, threading.Event] = {}
        self._counts: dict[str | None, int] = {}
        self._lock = threading.Lock()

    def service(self, session: str | None, base):
        """`base` (a RetrievalService) with this session's runs on its bundle, or `base` itself."""
        with self._lock:
            return self._services.get((session, base.name), base) if session else base

    def next_name(self, session: str | None, objective: str, changed: str = "") -> str:
        """'lab N: objective (what changed)', N counting this session's runs (never reused: names stay unique)."""
        with self._lock:
            self._counts[session] = n = self._counts.get(session, 0) + 1
            while len(self._counts) > 4096:
                self._counts.pop(next(iter(self._counts)))
        return f"lab {n}: {objective}" + (f" ({changed[:48]})" if changed else "")

    def add(self, session: str | None, base, run: LabRun):
        """Keep `run` for this session (dropping its oldest beyond the limits); the service it now sees."""
        if not session:
            return base.with_objective(run.view)
        with self._lock:
            per_bundle = self._runs.setdefault(session, {})
            self._runs.move_to_end(session)
            per_bundle[base.name] = (per_bundle.get(base.name, []) + [run])[-self.per_bundle:]
            while self._bytes() > self.max_bytes and len(self._runs) > 1:
                old, _ = self._runs.popitem(last=False)
                for key in [k for k in self._services if k[0] == old]:
                    del self._services[key]
            service = base
            for r in per_bundle[base.name]:
                service = service.with_objective(r.view)
            self._services[(session, base.name)] = service
            return service

    def _bytes(self) -> int:
        return sum(run_bytes(r) for bundles in self._runs.values() for runs in bundles.values() for r in runs)

    def new_stop(self, session: str | None) -> threading.Event:
        """A fresh flag for a run about to start (a Stop meant for an earlier run never reaches this one)."""
        with self._lock:
            self._stops[session or ""] = event = threading.Event()
            return event

    def stop(self, session: str | None) -> bool:
        """Stop this session's run under way, if any (the Stop button): whether there was one."""
        with self._lock:
            event = self._stops.get(session or "")
        if event is not None:
            event.set()
        return event is not None

    def done(self, session: str | None, event: threading.Event) -> None:
        with self._lock:
            if self._stops.get(session or "") is event:
                del self._stops[session or ""]


def run_bytes(run: LabRun) -> int:
    """What a kept run holds in memory: its heads and objective, its gallery embeddings twice (the index copies)."""
    params = sum(t.numel() * t.element_size() for m in (run.view.heads, run.view.objective) if m is not None
                 for t in m.state_dict().values())
    return params + 2 * (run.view.image_emb.nbytes + run.view.text_emb.nbytes)
