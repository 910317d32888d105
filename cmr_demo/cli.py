"""Console scripts (`pyproject.toml` [project.scripts]) and the `python -m cmr_demo.<stage>` entry, in one place.

Why: each stage's `main(argv)` returns a value for Python callers (metrics, paths, an exit code), while a
command must exit 0 on success and print a one-line "error: ..." for a user mistake (bad data spec,
missing weights, unknown objective: ValueError / OSError), never a traceback. `run` does that for
both ways in.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable


def run(main: Callable, argv: list[str] | None = None) -> int:
    """Exit status of a stage's main: its own int when it returns one, else 0; user errors as one line."""
    try:
        out = main(argv)
    except (ValueError, OSError) as err:  # DataError, BackboneError, CheckpointError, bad objective names
        raise SystemExit(f"error: {err}") from None
    return out if isinstance(out, int) and not isinstance(out, bool) else 0


def _command(module: str) -> Callable[[], int]:
    def command() -> int:
        return run(importlib.import_module(f"cmr_demo.{module}").main)
    command.__name__ = module
    command.__doc__ = f"`python -m cmr_demo.{module}` as a console script"
    return command


train, bundle, study, pretrain, extract, publish = (_command(m) for m in
                                                    ("train", "bundle", "study", "pretrain", "extract", "publish"))
