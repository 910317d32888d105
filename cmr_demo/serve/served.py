"""Which bundles one process serves: folders given on the command line (a bundle, or a folder of bundles), loaded
once, named by their folder."""
from __future__ import annotations

from pathlib import Path

from cmr_demo.files import CheckpointError
from cmr_demo.serve.service import RetrievalService, load


class NoBundle(ValueError):
    """A path that holds no bundle, or a bundle that cannot be served; the message says which and why."""


def bundle_folders(paths: list[str]) -> list[Path]:
    """Each path as given when it is a bundle, else the bundles directly inside it (sorted by name)."""
    folders = []
    for path in map(Path, paths):
        if (path / "manifest.json").is_file():
            folders.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file()) if path.is_dir() else []
        if not inside:
            raise NoBundle(f"no bundle at '{path}' (no manifest.json in it or in its sub-folders). Build one with "
                           f"'python -m cmr_demo.bundle build ... --out DIR' and pass --bundle DIR")
        folders += inside
    return folders


def load_services(paths: list[str]) -> dict[str, RetrievalService]:
    """{name: service} for every bundle, in order (the first is the default); names are folder names, made unique
    with a suffix when two folders share one."""
    services: dict[str, RetrievalService] = {}
    for folder in bundle_folders(paths):
        name, n = folder.resolve().name, 2
        while name in services:
            name, n = f"{folder.resolve().name}-{n}", n + 1
        try:
            services[name] = load(folder, name)
        except (CheckpointError, ValueError, OSError) as err:
            raise NoBundle(f"bundle '{folder}' cannot be served: {err}") from None
    return services
