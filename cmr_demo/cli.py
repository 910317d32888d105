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


# command -> (what `python -m` runs, the module whose main it calls)
COMMANDS = {"train": ("cmr_demo.train", "cmr_demo.train.stage"),
            "bundle": ("cmr_demo.bundle", "cmr_demo.bundle.command"),
            "study": ("cmr_demo.experiments.study", "cmr_demo.experiments.study"),
            "pretrain": ("cmr_demo.backbone.pretrain", "cmr_demo.backbone.pretrain"),
            "extract": ("cmr_demo.backbone.extract", "cmr_demo.backbone.extract"),
            "publish": ("cmr_demo.serve.publish", "cmr_demo.serve.publish")}


def _command(name: str) -> Callable[[], int]:
    runs, module = COMMANDS[name]

    def command() -> int:
        return run(importlib.import_module(module).main)
    command.__name__ = name
    command.__doc__ = f"`python -m {runs}` as a console script"
    return command


train, bundle, study, pretrain, extract, publish = (_command(m) for m in COMMANDS)
