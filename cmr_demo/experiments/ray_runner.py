"""Study runs as Ray tasks (`--ray [ADDRESS]`): on a local Ray instance, or on a cluster's.

Why Ray and not a bigger home-made pool: a sweep of hundreds of runs, or one over features too large for one
machine, needs what a cluster scheduler gives (resources per task, GPUs, retries when a worker dies, one copy of
the data per node); Ray is what this field already runs sweeps and batch inference on.

How: the driver reads and encodes the study's data once (`StudyData`) and puts each validation carve it needs into
Ray's object store once; every run is a task that gets its carve by reference (so a node fetches it once) and
returns the same metrics the local runner records. A task that fails (its exception, or its worker killed) is
retried once; a run that fails again is reported by name, and every finished run stays in the CSV.

Ray is an optional extra (`pip install '.[ray]'`): nothing here imports it until a study asks for it
(`cmr_demo.ray_cluster`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from cmr_demo.ray_cluster import TaskFailed, connect, gpus_for, run_remote

RunFailed = TaskFailed  # a run that failed on Ray twice (its first try and its one retry)


def _train_remote(work: Callable[[object, tuple], dict], job, carved, threads: int) -> dict:
    """One study run on a Ray worker: `work`, the function the local runner calls, on the carve shipped once."""
    import torch
    torch.set_num_threads(threads)  # as many as the CPUs the task holds (a local --jobs worker does the same)
    return work(job, carved)


def warm_up(address: str | None, touch: Callable[[], None]) -> None:
    """Connect, and have as many workers as there are CPUs run `touch` (a function of the trainer's module: running
    it imports the trainer there) while the driver reads the data."""
    ray = connect(address)
    task = ray.remote(touch).options(num_cpus=1)
    for _ in range(int(ray.cluster_resources().get("CPU", 1))):
        task.remote()


def run_tasks(tasks: dict, carve_of, work: Callable[[object, tuple], dict], address: str | None,
              cpus_per_run: float = 1.0) -> Iterator[tuple[str, object]]:
    """Yield (key, metrics) or (key, RunFailed) as runs finish. `tasks`: key -> TrainJob; `carve_of(job)`: its
    (dataset, features), computed on the driver and put in the object store once per distinct carve; `work(job,
    carve)`: one run's metrics (the runners' `train_on`, shipped by reference: this module never imports them)."""
    ray = connect(address)
    calls, carves = {}, {}
    for key, job in tasks.items():
        carve_key = id(carve_of(job))
        if carve_key not in carves:
            carves[carve_key] = ray.put(carve_of(job))
        options = {"num_cpus": cpus_per_run, "num_gpus": gpus_for(job.train.device), "name": f"study run {key}"}
        calls[key] = (_train_remote, (work, job, carves[carve_key], max(1, int(cpus_per_run))), options)
    yield from run_remote(address, calls)
