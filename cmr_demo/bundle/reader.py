"""A bundle's files, each read once: its bytes checked against the manifest's sha256 as they are read, then parsed
once and kept for whoever asks next (the checks of `verify`, then the loader).

Why: loading used to read each file two or three times (hashing, checking, loading) and the manifest three times;
a bundle's files are read and parsed once now, whatever asks for them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cmr_demo.bundle.layout import FORMAT, FORMERLY, IMAGES_DIR, outside
from cmr_demo.files import CheckpointError, json_from, read_bytes, tensors_from


MAX_MANIFEST_BYTES = 64 * 2 ** 20  # a 50,000-picture bundle's manifest is ~5 MB


def read_manifest(folder: Path) -> dict:
    """The bundle's manifest: a plain JSON object file inside `folder` (not a link, not a device), at most
    MAX_MANIFEST_BYTES; CheckpointError otherwise, before anything else is read."""
    path = folder / "manifest.json"
    if path.is_symlink():
        raise CheckpointError(f"{path} is a link: a bundle's manifest must be a plain file in its folder")
    manifest = json_from(read_bytes(path, MAX_MANIFEST_BYTES), path)
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path} is not a bundle manifest (a JSON object, not a {type(manifest).__name__})")
    return manifest


class BundleFiles:
    """The files of the bundle in `folder`. A file whose bytes do not hash to the manifest's digest raises
    CheckpointError when read (with `check=True`), or, with `strict=False` (what `verify` reports from), is noted in
    `mismatched` and read anyway, so its contents can be checked too."""

    def __init__(self, folder: str | Path, check: bool = True, strict: bool = True, manifest: dict | None = None):
        self.folder, self.check, self.strict = Path(folder), check, strict
        self.mismatched: set[str] = set()
        self._parsed: dict[str, object] = {}
        self.manifest = read_manifest(self.folder) if manifest is None else manifest  # (migrate checks one unwritten)
        self.format = self.manifest.get("format")
        self.listed: dict = self.manifest.get("files") if isinstance(self.manifest.get("files"), dict) else {}

    def format_problem(self) -> str | None:
        """Why this bundle cannot be read by this version, or None."""
        if self.format == FORMAT:
            return None
        if self.format in FORMERLY:
            return (f"bundle {self.folder} is in the older format {self.format!r}: run 'python -m cmr_demo.bundle "
                    f"migrate {self.folder}' to bring it to {FORMAT!r} (nothing is retrained)")
        return f"manifest format {self.format!r} is not {FORMAT!r}"

    def read(self, rel: str) -> bytes:
        """A listed file's bytes, checked against its sha256."""
        if rel not in self.listed:
            raise CheckpointError(f"bundle {self.folder}: {rel} is not listed in its manifest")
        if outside(self.folder, self.folder, [rel]):  # never read through a link (or '..') that leads out of it
            raise CheckpointError(f"bundle {self.folder}: file path {rel!r} points outside the bundle")
        data = read_bytes(self.folder / rel)
        if self.check and hashlib.sha256(data).hexdigest() != self.listed[rel]:
            self.mismatched.add(rel)
            if not self.strict:
                return data
            raise CheckpointError(f"bundle {self.folder}: sha256 mismatch for {rel}: the file was changed or damaged "
                                  f"(run 'python -m cmr_demo.bundle verify {self.folder}' and rebuild it)")
        return data

    def json(self, rel: str):
        if rel not in self._parsed:
            self._parsed[rel] = json_from(self.read(rel), self.folder / rel)
        return self._parsed[rel]

    def tensors(self, rel: str) -> tuple[dict, dict]:
        if rel not in self._parsed:
            self._parsed[rel] = tensors_from(self.read(rel), self.folder / rel)
        return self._parsed[rel]

    def lines(self, rel: str) -> list[dict]:
        """A JSON-lines file as a list of objects."""
        if rel not in self._parsed:
            try:
                self._parsed[rel] = [json.loads(line) for line in self.read(rel).decode().splitlines() if line]
            except (ValueError, UnicodeDecodeError) as err:
                raise CheckpointError(f"{self.folder / rel} is not one JSON object per line: {err}") from None
        return self._parsed[rel]

    def images(self) -> dict[str, str]:
        """{relative path: sha256} of the gallery pictures (checked when first served, not read here)."""
        return {rel: digest for rel, digest in self.listed.items() if rel.startswith(IMAGES_DIR)}
