"""Bringing a bundle of an older format to the current one, without retraining: `python -m cmr_demo.bundle migrate DIR`.

Format 1 -> 2: the manifest gains the build's training job as JSON values (`job`, parsed from the command it
recorded) and, where it lacks them, the feature widths (`features`, from the backbone's width). Nothing else
changes: every file keeps its bytes and its digest, the model card stays true.
"""
from __future__ import annotations

from pathlib import Path

from cmr_demo.bundle.layout import FORMAT, FORMERLY
from cmr_demo.files import CheckpointError, load_json, save_json


def migrate(folder: str | Path) -> bool:
    """Migrate the bundle in `folder` in place; False when it is already current. The result is verified."""
    from cmr_demo.bundle.verify import verify
    folder = Path(folder)
    manifest = load_json(folder / "manifest.json")
    if manifest.get("format") == FORMAT:
        return False
    if manifest.get("format") not in FORMERLY:
        raise CheckpointError(f"{folder}: unknown bundle format {manifest.get('format')!r}; this version reads "
                              f"{FORMAT!r} and migrates {', '.join(FORMERLY)}")
    manifest = {**manifest, "format": FORMAT, "job": job_values(manifest["command"])}
    if "features" not in manifest:  # format 1 bundles built with a backbone had one width for both modalities
        width = manifest["backbone"]["feature_dim"]
        manifest["features"] = {"source": "backbone", "from": manifest["backbone"]["spec"], "image_dim": width,
                                "text_dim": width}
    save_json(folder / "manifest.json", manifest)
    problems = verify(folder)
    if problems:
        raise CheckpointError(f"{folder} was migrated but does not verify:\n  " + "\n  ".join(problems[:10]))
    return True


def job_values(command: list[str]) -> dict:
    """The training job a recorded `python -m cmr_demo.bundle build ...` command line describes, as JSON values."""
    from cmr_demo.bundle.command import build_parser
    from cmr_demo.train.stage import job_from_args
    args = build_parser().parse_args(command[4:])  # after "python -m cmr_demo.bundle build"
    return {**job_from_args(args, None).values(), "seeds": args.seeds or [args.seed]}
