"""A bundle's training runs: every objective tuned on validation, then trained under every seed at the chosen setting
and at the paper's, as one list of independent trials that a runner trains locally or on Ray (`ray_train`).

Why trials: tuning, the served runs and the seed spread are all "train objective O with options X under seed S", so
one function trains each (`run_trial`) wherever it runs, and the order of events is plain: (1) the served seed's grid,
round by round (`cmr_demo.train.tuning`); the chosen point's run folder becomes the served run; (2) the other seeds
at the chosen setting, and at the paper's where tuning changed it, metrics only (per query kept, for the paired test).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from cmr_demo.train.spec import ObjectiveSpec
from cmr_demo.train.tuning import Search, search_all


@dataclass(frozen=True)
class Trial:
    objective: str
    options: tuple[tuple[str, float], ...]
    seed: int
    folder: str | None = None  # where its run folder goes (a served-seed grid point); None: metrics only


def trial_job(job, trial: Trial):
    """The training job of one trial: the build's job with this objective, options and seed."""
    spec = ObjectiveSpec.parse(trial.objective, dict(trial.options))
    return replace(job, objectives=spec, train=replace(job.train, seed=trial.seed), quiet=True)


def run_trial(job, trial: Trial, carve, head_cfg) -> dict:
    """Train one trial on `carve` = (dataset, features, source) of its seed; its test metrics (per query kept)."""
    from cmr_demo.train.stage import train_objective
    dataset, feats, source = carve
    if trial.folder is not None:
        return train_objective(trial.objective, trial_job(job, trial), head_cfg, feats, source, dataset,
                               folder=trial.folder)
    with tempfile.TemporaryDirectory() as tmp:
        return train_objective(trial.objective, trial_job(job, trial), head_cfg, feats, source, dataset,
                               folder=Path(tmp) / "run")


def head_config(job, feats):
    dims = (feats["train"][0].shape[1], feats["train"][1].shape[1])
    return replace(job.heads, image_dim=dims[0], text_dim=dims[1])


class LocalRunner:
    """Trains trials one after another in this process; each seed's validation carve is made once."""

    def __init__(self, job, dataset, feats, source, raw, raw_feats):
        self.job, self.raw, self.raw_feats, self.source = job, raw, raw_feats, source
        self.carves = {job.train.seed: (dataset, feats, source)}
        self.head_cfg = head_config(job, feats)

    def carve(self, seed: int):
        if seed not in self.carves:
            from cmr_demo.data import with_validation
            dataset, feats = with_validation(self.raw, self.job.val_fraction(), seed, self.raw_feats)
            self.carves[seed] = (dataset, feats, self.source)
        return self.carves[seed]

    def run(self, trials: list[Trial], desc: str) -> list[dict]:
        from tqdm.auto import tqdm
        return [run_trial(self.job, t, self.carve(t.seed), self.head_cfg)
                for t in tqdm(trials, desc=desc, unit="run", disable=self.job.quiet)]


@dataclass
class Runs:
    """What the training part of a build produced."""
    rows: dict[str, dict]  # objective -> the served run's metrics (the chosen setting, the served seed)
    seeds: list[int]  # served first
    chosen: dict[str, dict[int, dict]]  # objective -> seed -> metrics at the chosen setting
    paper: dict[str, dict[int, dict]] = field(default_factory=dict)  # the same at the paper's, where tuning changed it
    tuning: dict[str, dict] = field(default_factory=dict)  # objective -> Search.result()
    tuned: bool = True  # False: every objective at the paper's settings (`--no-tune`)


def train_runs(job, runner, work: Path, others: list[int], tune: bool = True) -> Runs:
    """Tune every objective of `job` on the served seed's validation split, keep the chosen runs under `job.out`,
    then train the other seeds at the chosen setting and at the paper's where they differ."""
    from cmr_demo.train.stage import run_dir_name
    served, trials_dir = job.train.seed, work / "trials"
    tune = tune and job.train.select_on != "test"  # the paper's protocol selects on test: nothing to tune on
    searches = [Search(n, job.objectives.options_for(n), tune) for n in job.objectives.names]
    found: dict[tuple, tuple[dict, Trial]] = {}

    def score_many(asked: list[tuple[str, dict]]) -> list[float]:
        trials = [Trial(name, tuple(sorted(p.items())), served, str(trials_dir / f"{len(found) + i:03d}"))
                  for i, (name, p) in enumerate(asked)]
        for trial, metrics in zip(trials, runner.run(trials, "tuning on validation" if tune else "training")):
            found[(trial.objective, trial.options)] = (metrics, trial)
        return [found[(t.objective, t.options)][0].get("val", {}).get("avg_map", 0.0) for t in trials]

    search_all(searches, score_many)
    runs = Runs(rows={}, seeds=[served, *others], chosen={}, tuned=tune)
    for s in searches:
        metrics, trial = found[(s.objective, tuple(sorted(s.best.items())))]
        shutil.move(trial.folder, Path(job.out) / run_dir_name(s.objective))
        runs.rows[s.objective], runs.chosen[s.objective] = metrics, {served: metrics}
        runs.tuning[s.objective] = s.result()
        if s.best != s.paper:
            runs.paper[s.objective] = {served: found[(s.objective, tuple(sorted(s.paper.items())))][0]}
    shutil.rmtree(trials_dir, ignore_errors=True)
    later = [
        (table, Trial(s.objective, tuple(sorted(point.items())), seed))
        for seed in others
        for s in searches
        for table, point in ((runs.chosen, s.best), *([(runs.paper, s.paper)] if s.objective in runs.paper else []))
    ]
    for (table, trial), metrics in zip(later, runner.run([t for _, t in later], "other seeds")):
        table[trial.objective][trial.seed] = metrics
    return runs
