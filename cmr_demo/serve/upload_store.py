"""gradio's upload folder as the app manages it, in one object: which files a client may name (`UploadGate`), how
much of the folder each visitor may hold (`UploadBudget`), and the sweep that deletes what nobody searched with.

Why one owner: the gate, the budget and the sweep each delete uploads, and each deletion must reach the same three
places (the gate's "upload it again" memory, gradio's registries of the files it handed out, the files kept for as
long as the app runs). With one store they share those callables instead of each path wiring its own in app.py.

`registry` is what the store knows of gradio: `uploaded()` (the upload route's paths), `sets()` (gradio's sets a
deleted upload must leave), `handed_out(path)` and `kept()` (cmr_demo.ui.gradio_adapter.files.GradioFiles).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from cmr_demo.serve.host import every
from cmr_demo.serve.inputs import MAX_IMAGE_BYTES
from cmr_demo.serve.upload_budget import UploadBudget
from cmr_demo.serve.uploads import UploadGate, sweep

# every 10 minutes, files in gradio's folder older than 30 minutes go (uploads never searched with, result copies)
SWEEP_EVERY_S = float(os.environ.get("CMR_SWEEP_EVERY_S", "600"))
SWEEP_OLDER_THAN_S = float(os.environ.get("CMR_SWEEP_AFTER_S", "1800"))


class UploadStore:
    """The upload folder's gate, budget and sweep (see the module docstring)."""

    def __init__(self, folder: str, registry, max_bytes: int = MAX_IMAGE_BYTES):
        self.registry = registry
        self.examples: dict[str, str] = {}  # {cached path of an example picture: what it is, in words}
        self.gate = UploadGate(folder, registry.uploaded, lambda: self.examples, max_bytes=max_bytes,
                               registries=registry.sets)
        self.folder = self.gate.folder
        self.budget = UploadBudget(self.folder, keep=self.kept, forget=self.gate.evicted)

    def add_examples(self, examples: dict[str, str]) -> None:
        """Example pictures the page cached in the folder: clients may name them, and they are never deleted."""
        self.examples.update(examples)

    def read(self, payload: object) -> bytes:
        """The bytes of a picture a client sent (UploadGate.read: InputError names the problem and the fix)."""
        return self.gate.read(payload)

    def source(self, payload: object) -> str:
        """What a picture payload is, in words ("uploaded picture", "example picture (gallery item 12)")."""
        return self.gate.source(payload)

    def opens(self, path: str) -> bool:
        """Whether a file a client names is one this app received or wrote: a file gradio handed out (an upload, a
        result copy, an example), or an upload already read and deleted (a page sends it again), by exact path."""
        return self.registry.handed_out(path) or self.gate.remembers(path)

    def kept(self) -> set[str]:
        """Files the page shows from the folder for as long as the app runs: examples, the header's pictures."""
        return set(self.examples) | set(self.registry.kept())

    def admit(self, size: int, client: str, to_disk: bool) -> Callable[[list[str]], None]:
        """Room for an upload of `size` bytes from `client`, reserved before a byte is read (UploadBudget.admit;
        UploadRefused when there is none)."""
        return self.budget.admit(client, size, to_disk)

    def sweep(self) -> int:
        """Delete files older than SWEEP_OLDER_THAN_S (except those kept); returns how many went."""
        return sweep(self.folder, SWEEP_OLDER_THAN_S, self.kept, self.gate.evicted)

    def start(self) -> None:
        """Sweep every SWEEP_EVERY_S in a background thread. Not gradio's delete_cache: it skips files outside its
        sets (parts of interrupted uploads) and iterates the sets while requests change them."""
        every(SWEEP_EVERY_S, self.sweep, "upload-sweeper")
