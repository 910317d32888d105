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
from cmr_demo.files import CheckpointError, save_json


def migrate(folder: str | Path) -> bool:
    """Migrate the bundle in `folder` in place; False when it is already current. The migrated manifest is verified
    before it is written: a bundle that would not verify is left exactly as it was (CheckpointError says why)."""
    from cmr_demo.bundle.reader import BundleFiles, read_manifest
    from cmr_demo.bundle.verify import check
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("format") == FORMAT:
        return refresh_card(folder, manifest)
    if manifest.get("format") not in FORMERLY:
        raise CheckpointError(f"{folder}: unknown bundle format {manifest.get('format')!r}; this version reads "
                              f"{FORMAT!r} and migrates {', '.join(FORMERLY)}")
    migrated = migrated_manifest(folder, manifest)
    problems = check(BundleFiles(folder, strict=False, manifest=migrated))
    if problems:
        raise CheckpointError(f"{folder} cannot be migrated: it would not verify (left unchanged):\n  " +
                              "\n  ".join(problems[:10]))
    save_json(folder / "manifest.json", migrated)
    return True


def migrated_manifest(folder: Path, manifest: dict) -> dict:
    """The format-1 `manifest` in the current format (nothing written), or CheckpointError naming what it lacks."""
    try:
        migrated = {**manifest, "format": FORMAT, "job": job_values(manifest["command"])}
        if "features" not in migrated:  # format 1 bundles built with a backbone had one width for both modalities
            width = manifest["backbone"]["feature_dim"]
            migrated["features"] = {"source": "backbone", "from": manifest["backbone"]["spec"], "image_dim": width,
                                    "text_dim": width}
    except (KeyError, TypeError, ValueError, IndexError, SystemExit) as err:  # SystemExit: argparse on a bad command
        what = f"{type(err).__name__}: {str(err)[:80]}" if not isinstance(err, SystemExit) else "an unreadable command"
        raise CheckpointError(f"{folder}: its format-1 manifest lacks what migration needs (the build's 'command' "
                              f"list and its 'backbone' with 'feature_dim' and 'spec'; {what}): rebuild the bundle "
                              f"with 'python -m cmr_demo.bundle build'") from None
    return migrated


def job_values(command: list[str]) -> dict:
    """The training job a recorded `python -m cmr_demo.bundle build ...` command line describes, as JSON values."""
    import contextlib
    import io

    from cmr_demo.bundle.build_args import build_parser
    from cmr_demo.train.stage import job_from_args
    if not isinstance(command, list) or not all(isinstance(word, str) for word in command):
        raise TypeError("'command' is not a list of words")
    with contextlib.redirect_stderr(io.StringIO()):  # argparse's usage text: the caller words the refusal
        args = build_parser().parse_args(command[4:])  # after "python -m cmr_demo.bundle build"
    return {**job_from_args(args, None).values(), "seeds": args.seeds or [args.seed]}


def refresh_card(folder: Path, manifest: dict) -> bool:
    """Write the bundle's model card again from its manifest when it differs (and its digest); False when it agrees."""
    from cmr_demo.bundle.card import CARD_FILE, render_card
    from cmr_demo.bundle.layout import outside
    from cmr_demo.files import atomic_write_bytes, file_sha256, read_bytes
    if not isinstance(manifest.get("files"), dict) or CARD_FILE not in manifest["files"]:
        return False
    card = render_card(manifest)
    path = folder / CARD_FILE
    try:  # never read through a link out of the bundle, nor a device or a huge file where the card belongs
        current = None if outside(folder, folder, [CARD_FILE]) else read_bytes(path, 16 * 2 ** 20)
    except CheckpointError:
        current = None
    if current == card.encode():
        return False
    atomic_write_bytes(path, card.encode())
    manifest["files"][CARD_FILE] = file_sha256(path)
    save_json(folder / "manifest.json", manifest)
    return True
