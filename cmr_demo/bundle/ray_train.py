"""A bundle's training on Ray (`bundle build --ray`): each trial (`cmr_demo.bundle.trials`: a grid point of the served
seed, or an objective under another seed) as a task of its own, a whole round at once.

The data and features go to the object store once. A trial whose run folder is kept is trained on a worker into a
folder of its own there, and its files come back with its metrics (a cluster's workers do not share the driver's
disk); the driver writes them where a local build would have. Each task runs the same code a local build runs
(`trials.run_trial`), on the same features and splits, so the bundle's metrics are the local build's (bit for bit on
CPU). A failed task is retried once, then the build stops naming the trial (nothing is swapped in).
"""
from __future__ import annotations

from pathlib import Path

from cmr_demo.bundle.trials import LocalRunner, Trial, run_trial
from cmr_demo.ray_cluster import TaskFailed, connect, gpus_for, run_remote


def _task(job, trial: Trial, carve_or_raw, head_cfg, threads: int, served: bool) -> tuple[dict, dict[str, bytes]]:
    """One trial on a worker: (metrics, {relative path: bytes} of its run folder when it is kept)."""
    import tempfile

    import torch

    from dataclasses import replace
    torch.set_num_threads(threads)
    if served:
        carve = carve_or_raw
    else:  # another seed carves its own validation split, as `LocalRunner.carve` does
        from cmr_demo.data import with_validation
        raw, raw_feats, source = carve_or_raw
        dataset, feats = with_validation(raw, job.val_fraction(), trial.seed, raw_feats)
        carve = (dataset, feats, source)
    if trial.folder is None:
        return run_trial(job, trial, carve, head_cfg), {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        metrics = run_trial(job, replace(trial, folder=str(folder)), carve, head_cfg)
        return metrics, {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class RayRunner(LocalRunner):
    """`LocalRunner`'s `run`, with every trial of a call a Ray task, all at once."""

    def __init__(self, job, dataset, feats, source, raw, raw_feats, address: str | None):
        import torch
        super().__init__(job, dataset, feats, source, raw, raw_feats)
        self.ray = connect(address)
        # each task trains with the driver's torch thread count, as a local build does: a different count changes the
        # last bit of some weights (ce's classifier), and the bundle must be the local build's
        self.threads = torch.get_num_threads()
        self.served_ref = self.ray.put((dataset, feats, source))
        self.raw_ref = self.ray.put((raw, raw_feats, source))
        self.address = address
        self.options = {"num_cpus": self.threads, "num_gpus": gpus_for(job.train.device)}

    def run(self, trials: list[Trial], desc: str) -> list[dict]:
        from tqdm import tqdm
        calls = {}
        for n, t in enumerate(trials):
            served = t.seed == self.job.train.seed
            args = (self.job, t, self.served_ref if served else self.raw_ref, self.head_cfg, self.threads, served)
            calls[n] = (_task, args, {**self.options, "name": f"bundle {t.objective} seed {t.seed}"})
        results: dict[int, dict] = {}
        with tqdm(total=len(calls), desc=f"{desc} (ray)", unit="task", disable=self.job.quiet) as bar:
            for n, answer in run_remote(self.address, calls):
                trial = trials[n]
                if isinstance(answer, TaskFailed):
                    raise ValueError(f"training {trial.objective} (seed {trial.seed}, {dict(trial.options)}) failed "
                                     f"on Ray after a retry: {answer.error}")
                metrics, files = answer
                for rel, data in files.items():
                    (Path(trial.folder) / rel).parent.mkdir(parents=True, exist_ok=True)
                    (Path(trial.folder) / rel).write_bytes(data)
                results[n] = metrics
                bar.update()
        return [results[n] for n in range(len(trials))]
