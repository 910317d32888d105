"""Bringing a bundle of an older format to the current one, without retraining: `python -m cmr_demo.bundle migrate DIR`.

Format 1 -> 2: the manifest gains the build's training job as JSON values (`job`, parsed from the command it
recorded) and, where it lacks them, the feature widths (`features`, from the backbone's width). Nothing else
changes: every file keeps its bytes and its digest, the model card stays true.

A current bundle whose model card an older version wrote (the card is generated from the manifest, and its format
grew: Hub front matter, settings, intervals) gets its card written again from its manifest, and the card's digest
updated; nothing else changes.
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
        return refresh_card(folder, manifest)
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


def refresh_card(folder: Path, manifest: dict) -> bool:
    """Write the bundle's model card again from its manifest when it differs (and its digest); False when it agrees."""
    from cmr_demo.bundle.card import CARD_FILE, render_card
    from cmr_demo.files import atomic_write_bytes, file_sha256
    card = render_card(manifest)
    path = folder / CARD_FILE
    if CARD_FILE not in (manifest.get("files") or {}) or (path.is_file() and path.read_text() == card):
        return False
    atomic_write_bytes(path, card.encode())
    manifest["files"][CARD_FILE] = file_sha256(path)
    save_json(folder / "manifest.json", manifest)
    return True
