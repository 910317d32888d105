"""Where a study's runs run: one after another here, in `--jobs` worker processes, or as Ray tasks (`--ray`,
`ray_runner`); and which of its rows an earlier run already finished (`--resume`). Every runner ends in `train_on`,
so a row is the same whichever ran it."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

from cmr_demo.data import read_data, with_validation
from cmr_demo.files import load_csv
from cmr_demo.train.stage import TrainJob, load_features, train

METRICS = ("i2t_map", "t2i_map", "avg_map", "best_epoch", "epochs_run", "train_seconds")


class StudyData:
    """The study's data read and encoded once; each (validation share, seed) carved from it once.

    Why: every run of a study trains on the same data, and reading it (3 s to render shapes:3000, as long as
    a training run) or hashing its pictures per run doubled a study's time."""

    def __init__(self, base: TrainJob):
        self.raw = read_data(base.data.spec, strict=base.data.strict)
        self.carved = {}

    def for_job(self, job: TrainJob):
        """(dataset, features) with the splits a plain training job with these settings makes; the features come
        through the same cache (`load_features`), so a study after `extract` encodes nothing again."""
        key = (job.val_fraction(), job.train.seed if self.raw.val is None else 0)
        if key not in self.carved:
            dataset = with_validation(self.raw, key[0], job.train.seed)
            self.carved[key] = dataset, load_features(replace(job, quiet=True), dataset)
        return self.carved[key]


_WORKER_DATA: dict[str, StudyData] = {}


def _train_one(job: TrainJob, data: StudyData | None = None) -> dict:
    """One run's metrics; in a worker process the study's data is read there once (`data` None)."""
    if data is None:
        key = json.dumps([job.data.spec, job.data.strict, asdict(job.features), job.train.device, job.train.precision])
        if key not in _WORKER_DATA:
            _WORKER_DATA[key] = StudyData(job)
        data = _WORKER_DATA[key]
    return train_on(job, data.for_job(job))


def train_on(job: TrainJob, carved: tuple) -> dict:
    """One run's metrics (a study row's), trained on `carved` = (dataset, features) as `StudyData.for_job` made it:
    the one function every runner (here, --jobs workers, Ray tasks) ends in, so their rows are the same."""
    dataset, features = carved
    metrics = train(job, dataset, features)[job.objectives.names[0]]
    return {k: metrics[k] for k in METRICS}


def loaded() -> None:
    """Nothing: a Ray worker that runs it has imported this module, hence torch and the trainer (ray_runner.warm_up)."""


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def study_data(base: TrainJob, ray: str | None) -> StudyData:
    """The study's data, read on this machine; with `ray`, while Ray starts and its workers import the trainer
    (on 2 cores, starting Ray and its first workers took 6 s of a 70 s study)."""
    if ray is None:
        return StudyData(base)
    from concurrent.futures import ThreadPoolExecutor

    from cmr_demo.experiments.ray_runner import warm_up
    with ThreadPoolExecutor(1) as pool:  # Ray starts in the main thread: started from another, it lost its GCS
        reading = pool.submit(StudyData, base)
        warm_up(ray or None, loaded)
        return reading.result()


def run_all(tasks: dict[str, TrainJob], jobs: int, data: StudyData | None, ray: str | None = None):
    """Yield (key, metrics) as runs finish: in this process, in `jobs` worker processes, or as Ray tasks (`ray`: a
    cluster's address, "" for a local instance; see `ray_runner`), one CPU each, as many at once as the cluster has
    CPUs (a run that failed twice yields a `RunFailed`).

    Why processes: every run is independent, and one small-head run uses about two cores, so a machine
    with many cores (or one GPU shared by several runs) finishes a study that many times sooner. Each
    worker gets an equal share of the cores for torch; results do not depend on the order of finishing.
    """
    if ray is not None:
        from cmr_demo.experiments.ray_runner import run_tasks
        yield from run_tasks(tasks, data.for_job, train_on, ray or None, cpus_per_run=1.0)  # one core a run
        return
    if jobs <= 1:
        for key, job in tasks.items():
            yield key, _train_one(job, data)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_train_one, job): key for key, job in tasks.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()


def finished_rows(csv_path: Path) -> dict[tuple, dict]:
    """The trained rows of an earlier run of a study, by (objective, facet, x, seed) as text: their metrics."""
    out = {}
    for row in load_csv(csv_path) if csv_path.is_file() else []:
        if row.get("avg_map", "") != "":  # a recorded skip has no metrics
            metrics = {k: (int(float(row[k])) if k in ("best_epoch", "epochs_run") else float(row[k])) for k in METRICS}
            out[tuple(list(row.values())[:4])] = metrics
    return out
