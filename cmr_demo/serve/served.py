"""Which bundles one process serves: folders given on the command line (a bundle, or a folder of bundles) or Hub
bundles (`hf:ORG/NAME[@REVISION]`, fetched through the Hugging Face cache), loaded once, named by their folder or
repository."""
from __future__ import annotations

from pathlib import Path

from cmr_demo.files import CheckpointError
from cmr_demo.serve.service import RetrievalService, load


class NoBundle(ValueError):
    """A path that holds no bundle, or a bundle that cannot be served; the message says which and why."""


def bundle_folders(paths: list[str]) -> list[tuple[Path, str]]:
    """(folder, name) of each bundle: a path as given when it is a bundle, else the bundles directly inside it (sorted
    by name); a Hub bundle fetched (`cmr_demo.bundle.hub`) and named after its repository."""
    from cmr_demo.bundle.hub import HubError, is_hub, resolve
    folders = []
    for spec in paths:
        if is_hub(spec):
            try:
                folder, name = resolve(spec)
            except HubError as err:
                raise NoBundle(str(err)) from None
            folders.append((folder, name))
            continue
        path = Path(spec)
        if (path / "manifest.json").is_file():
            folders.append((path, path.resolve().name))
            continue
        inside = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file()) if path.is_dir() else []
        if not inside:
            raise NoBundle(f"no bundle at '{path}' (no manifest.json in it or in its sub-folders). Build one with "
                           f"'python -m cmr_demo.bundle build ... --out DIR' and pass --bundle DIR")
        folders += [(p, p.resolve().name) for p in inside]
    return folders


def load_services(paths: list[str]) -> dict[str, RetrievalService]:
    """{name: service} for every bundle, in order (the first is the default); names are folder names, made unique
    with a suffix when two folders share one."""
    services: dict[str, RetrievalService] = {}
    for folder, base in bundle_folders(paths):
        name, n = base, 2
        while name in services:
            name, n = f"{base}-{n}", n + 1
        try:
            services[name] = load(folder, name)
        except (CheckpointError, ValueError, OSError) as err:
            raise NoBundle(f"bundle '{folder}' cannot be served: {err}") from None
    return services
