"""Connecting to Ray, for the stages that can run on it (`--ray [ADDRESS]`: studies, bundle builds).

Ray is an optional extra (`pip install '.[ray]'`): it is imported here, on demand, and nowhere else at import
time; without it, `--ray` is one line saying how to install it.
"""
from __future__ import annotations

import os

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
