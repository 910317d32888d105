"""A lab run started by a page or a program: the settings checked, the heads trained in a thread, the run handed
back to the request that started it. No gradio here: the page polls `LabJob` for its live curve.

Why a thread per run: the page streams the curve while the run trains, and a page that goes away stops it
(`LabJob.stop`). Runs still train one at a time for everyone (the lab's own lock, `cmr_demo.serve.lab`).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from cmr_demo.serve import lab
from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.messages import app_failed
from cmr_demo.serve.service import RetrievalService

log = logging.getLogger(__name__)


class LabFailure(RuntimeError):
    """A lab run failed for a reason that is not the user's (logged)."""


@dataclass
class LabJob:
    """A lab run under way: what the request that started it needs to follow and finish it."""
    thread: threading.Thread
    base: RetrievalService
    session: str | None
    stop: threading.Event
    epochs: int
    history: list = field(default_factory=list)
    box: dict = field(default_factory=dict)


def start(runs: lab.SessionRuns, base: RetrievalService, session: str | None, objective, options, text_fraction,
          image_fraction, seed, **hyper) -> LabJob:
    """Check the settings against `base` (the bundle's own service), then train in a thread."""
    if not lab.has_lab(base.bundle):
        raise InputError(f"bundle '{base.name}' has no lab features (built before the lab): run "
                         f"'python -m cmr_demo.bundle add-lab DIR' on it")
    train, heads = lab.settings_for(base.bundle, objective, options, text_fraction=text_fraction,
                                    image_fraction=image_fraction, seed=seed, **hyper)
    stop = runs.new_stop(session)
    name = runs.next_name(session, train.objective, lab.changes(base.bundle, train, heads))
    history, box = [], {}

    def work():
        try:
            box["run"] = lab.train_lab(base.bundle, train, heads, name, on_epoch=history.append, stop=stop)
        except Exception as err:  # noqa: BLE001 (handed to the request, which reports it)
            box["error"] = err
        finally:
            runs.done(session, stop)
    job = LabJob(threading.Thread(target=work, name="lab-run", daemon=True), base, session, stop, train.epochs,
                 history, box)
    job.thread.start()
    return job


def finish(runs: lab.SessionRuns, job: LabJob):
    """The run, once its thread has ended; it joins its session's service. InputError for the user's mistakes,
    LabFailure (logged) for the rest."""
    error = job.box.get("error")
    if isinstance(error, InputError):
        raise error
    if error is not None:
        log.error("lab run failed", exc_info=error)
        raise LabFailure(app_failed("the lab run", "Try other settings."))
    run = job.box["run"]
    runs.add(job.session, job.base, run)
    return run
