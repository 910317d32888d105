"""The flags of `python -m cmr_demo.bundle build` (the training stage's own, then the bundle's), and the parser a
bundle's recorded command line is read back with (`cmr_demo.bundle.migrate`).

Why apart from the command: migrating an old bundle reads its build command with the same parser, and the command
runs migrate; both import this module, neither the other.
"""
from __future__ import annotations

import argparse


def _seeds(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes whole numbers separated by commas, e.g. 0,1,2; got {text!r}")


def add_build_args(b: argparse.ArgumentParser) -> None:
    """`build`'s flags: the training job's, then where the bundle goes and how many seeds it trains."""
    from cmr_demo.train.stage import add_job_args
    add_job_args(b, objectives="all")
    b.add_argument("--out", required=True, help="bundle folder (must be empty, or pass --overwrite)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    b.add_argument("--seeds", type=_seeds, default=None, metavar="S1,S2,..",
                   help="train every objective with these seeds too (metrics only): the leaderboard shows the mean and "
                        "standard deviation over them, the served heads are --seed's")
    b.add_argument("--no-tune", dest="tune", action="store_false",
                   help="train every objective at the paper's (the official code's) settings instead of choosing each "
                        "objective's margin, scale or temperature on the validation split first")
    b.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    b.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="extract features as Ray Data batches and train every objective as a Ray task: on a new local "
                        "Ray instance, or on the cluster at ADDRESS (host:port, or 'auto'); needs pip install '.[ray]'")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `build` alone (what a bundle's recorded command line is read with)."""
    from cmr_demo.cliargs import HelpFormatter
    b = argparse.ArgumentParser(prog="python -m cmr_demo.bundle build", formatter_class=HelpFormatter)
    add_build_args(b)
    return b
