"""A bundle's training on Ray (`bundle build --ray`): every objective of the served seed, and every objective of
each extra seed, as a task of its own, all at once.

The data and features go to the object store once. A served run is trained on a worker into a folder of its own
there, and its files come back with its metrics (a cluster's workers do not share the driver's disk); the driver
writes them where a local build would have. Each task runs the same code a local build runs (`train_objective`,
`train`), on the same features and splits, so the bundle's metrics are the local build's (bit for bit on CPU).
A failed task is retried once, then the build stops with the objective's name (nothing is swapped in).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cmr_demo.ray_cluster import connect, first_line


def _served(job, name: str, carve, head_cfg, threads: int) -> tuple[dict, dict[str, bytes]]:
    """One objective's served run on a worker: (metrics, {relative path: bytes} of its run folder)."""
    import tempfile

    import torch

    from cmr_demo.train.stage import train_objective
    torch.set_num_threads(threads)
    dataset, feats, source = carve
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        metrics = train_objective(name, job, head_cfg, feats, source, dataset, folder=folder)
        files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return metrics, files


def _seed_run(job, seed: int, raw_carve, threads: int) -> dict:
    """Every objective under another training seed, metrics only (`build.seed_metrics`, as a local build runs it)."""
    import torch

    from cmr_demo.bundle.build import seed_metrics
    torch.set_num_threads(threads)
    return seed_metrics(job, *raw_carve, seed)


def train_on_ray(job, dataset, feats, source, raw, raw_feats, seeds: list[int], address: str | None
                 ) -> tuple[dict[str, dict], dict[int, dict[str, dict]]]:
    """(rows, extra) as `build` makes them locally: {objective: metrics} of the served runs, written under
    `job.out`, and {seed: {objective: metrics}} of the other seeds."""
    from tqdm import tqdm

    from cmr_demo.train.stage import run_dir_name
    import torch
    ray = connect(address)
    # each task trains with the driver's torch thread count, as a local build does: a different count changes the
    # last bit of some weights (ce's classifier), and the bundle must be the local build's
    threads = torch.get_num_threads()
    dims = (feats["train"][0].shape[1], feats["train"][1].shape[1])
    head_cfg = replace(job.heads, image_dim=dims[0], text_dim=dims[1])
    carve, raw_carve = ray.put((dataset, feats, source)), ray.put((raw, raw_feats, source))
    gpus = 1 if str(job.train.device).startswith("cuda") else 0
    task = {"num_cpus": threads, "num_gpus": gpus, "max_retries": 1, "retry_exceptions": True}
    served = {ray.remote(_served).options(**task, name=f"bundle run {name}").remote(job, name, carve, head_cfg,
                                                                                     threads): name
              for name in job.objectives.names}
    other = {ray.remote(_seed_run).options(**task, name=f"bundle seed {s}").remote(job, s, raw_carve, threads): s
             for s in seeds}
    rows, extra, pending = {}, {}, [*served, *other]
    with tqdm(total=len(pending), desc="training (ray)", unit="task", disable=job.quiet) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                what = f"objective {served[ref]}" if ref in served else f"seed {other[ref]}"
                try:
                    result = ray.get(ref)
                except Exception as err:  # noqa: BLE001 (after its one retry)
                    raise ValueError(f"training {what} failed on Ray after a retry: {first_line(err)}") from None
                if ref in served:
                    metrics, files = result
                    folder = Path(job.out) / run_dir_name(served[ref])
                    for rel, data in files.items():
                        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                        (folder / rel).write_bytes(data)
                    rows[served[ref]] = metrics
                else:
                    extra[other[ref]] = result
                bar.update()
    rows = {name: rows[name] for name in job.objectives.names}  # the job's order, as a local build
    return rows, {s: extra[s] for s in seeds}
