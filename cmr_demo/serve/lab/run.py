"""A lab run: the heads trained on the bundle's own features (`train_lab`, one at a time in this process), scored
on its test split and placed on its map; `start` runs one in a thread for a request and hands back a `LabJob`
whose `future` holds the run (or the error) when it ends."""
from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cmr_demo.bundle.layout import LAB_FEATURES
from cmr_demo.bundle.load import Bundle, ObjectiveView
from cmr_demo.files import load_tensors
from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.lab.sessions import LabRun, SessionRuns
from cmr_demo.serve.lab.settings import LabSettings, changes, has_lab
from cmr_demo.serve.messages import app_failed
from cmr_demo.serve.placement import place_points
from cmr_demo.train.fit import Diverged, Tensors, TrainConfig, fit
from cmr_demo.train.heads import HeadConfig

log = logging.getLogger(__name__)
TRAINING = threading.Lock()
MAX_SECONDS = 90.0  # a lab run is stopped here (the best epoch so far is kept): one user cannot hold the CPU


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




class LabFailure(RuntimeError):
    """A lab run failed for a reason that is not the user's (logged)."""


@dataclass
class LabJob:
    """A lab run under way: its `future` (the LabRun, or the error that ended it), the live curve (`history`, one
    dict per epoch) and the event that stops it within one batch."""
    future: Future
    base: object  # the bundle's own RetrievalService: the run joins the session's copy of it
    session: str | None
    stop: threading.Event
    epochs: int
    history: list = field(default_factory=list)

    def running(self) -> bool:
        return not self.future.done()


def start(runs: SessionRuns, base, session: str | None, asked: LabSettings) -> LabJob:
    """Check `asked` against `base` (the bundle's own service), then train in a thread of its own: the page
    streams the curve while it trains, and a page that goes away stops it (`LabJob.stop`). Runs still train one
    at a time for everyone (`TRAINING`)."""
    if not has_lab(base.bundle):
        raise InputError(f"bundle '{base.name}' has no lab features (built before the lab): run "
                         f"'python -m cmr_demo.bundle add-lab DIR' on it")
    train, heads = asked.configs(base.bundle)
    job = LabJob(Future(), base, session, runs.new_stop(session), train.epochs)
    name = runs.next_name(session, train.objective, changes(base.bundle, train, heads))

    def work():
        job.future.set_running_or_notify_cancel()
        try:
            job.future.set_result(train_lab(base.bundle, train, heads, name, on_epoch=job.history.append,
                                            stop=job.stop))
        except Exception as err:  # noqa: BLE001 (handed to the request through the future, which reports it)
            job.future.set_exception(err)
        finally:
            runs.done(session, job.stop)
    threading.Thread(target=work, name="lab-run", daemon=True).start()
    return job


def finish(runs: SessionRuns, job: LabJob, timeout: float | None = None) -> LabRun:
    """The run, once it has ended; it joins its session's service. InputError for the user's mistakes,
    LabFailure (logged) for the rest."""
    error = job.future.exception(timeout)
    if isinstance(error, InputError):
        raise error
    if error is not None:
        log.error("lab run failed", exc_info=error)
        raise LabFailure(app_failed("the lab run", "Try other settings."))
    run = job.future.result()
    runs.add(job.session, job.base, run)
    return run
