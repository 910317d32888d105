"""Connecting to Ray and running tasks on it, for the stages that can (`--ray [ADDRESS]`: studies, bundle builds).

One runner for both (`run_remote`): each call a task retried once (on its exception or a lost worker), results
yielded as they finish, a task that failed twice yielded as `TaskFailed` with its error in one line; the stage decides
what a failure means (a study keeps its other rows, a build stops).

Ray is an optional extra (`pip install '.[ray]'`): it is imported here, on demand, and nowhere else at import
time; without it, `--ray` is one line saying how to install it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

INSTALL = "pip install '.[ray]' (or pip install -r requirements-ray.txt)"


class RayMissing(ValueError):
    """--ray was asked for where Ray is not installed."""


def ray_module():
    """Ray, imported on demand, or RayMissing saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissing(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str | None, cpus: int | None = None):
    """Ray, connected: to the cluster at `address` (host:port, or "auto" for the one this machine belongs to), or to a
    new local instance with `cpus` CPUs (default: all) when `address` is None or empty."""
    ray = ray_module()
    if not ray.is_initialized():
        options = {"address": address} if address else {"num_cpus": cpus or os.cpu_count(), "include_dashboard": False}
        ray.init(**options, log_to_driver=False, configure_logging=False)
    return ray


def first_line(err: BaseException) -> str:
    """A failed task's error in one line: Ray wraps the task's own exception (or a lost worker's) in its own."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]


@dataclass
class TaskFailed:
    """A task that failed on Ray twice (its first try and its one retry)."""
    key: object
    error: str


def gpus_for(device: str) -> int:
    """The GPUs a task asks Ray for: one when it trains on CUDA."""
    return 1 if str(device).startswith("cuda") else 0


def run_remote(address: str | None, calls: dict[object, tuple[Callable, tuple, dict]]) -> Iterator[tuple]:
    """Run every call (key -> (function, its arguments, Ray options such as num_cpus, num_gpus, name)) as a Ray task,
    retried once; yield (key, result) or (key, TaskFailed) as each finishes. Arguments that are object references
    (`ray.put`, for data several tasks share) reach a node once."""
    ray = connect(address)
    refs = {}
    for key, (fn, args, options) in calls.items():
        remote = ray.remote(fn).options(max_retries=1, retry_exceptions=True, **options)
        refs[remote.remote(*args)] = key
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                yield refs[ref], ray.get(ref)
            except Exception as err:  # noqa: BLE001 (Ray wraps the task's error, or a lost worker's, after its retry)
                yield refs[ref], TaskFailed(refs[ref], first_line(err))
