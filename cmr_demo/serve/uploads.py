"""Query pictures sent by clients: which files may be opened, how large, and when they are deleted.

Why not gradio's preprocessing: an API client can send a FileData without "meta", which gradio's Image
component opens (and copies into its cache) from any path the process can read, before the app sees
it. The app's events therefore take the raw payload (`preprocess=False`) and `UploadGate` decides
before anything is opened:

- a file is read only when its path is one this app handed out: a file received through its upload
  route (`Blocks.upload_file_set`) or one of its own example pictures. Any other path, however it is
  spelled (relative, `..`, a symlink, a gallery file, `/etc/passwd`), is refused without touching the
  filesystem;
- it must still be a regular file (not a link) inside the upload folder and at most `max_bytes`;
- once read, an upload is deleted from disk and its bytes kept in a small in-memory LRU (bounded in
  bytes), so a page that sends the same picture again (another objective, another k) still works and
  nothing accumulates on disk. Uploads never searched with, and anything else left in the upload folder
  (parts of an interrupted upload), are deleted by age by `sweep` (the app runs it every 10 minutes).
"""
from __future__ import annotations

import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Collection
from pathlib import Path
from threading import Lock

from cmr_demo.serve.inputs import MAX_IMAGE_BYTES, InputError, shown
from cmr_demo.serve.messages import FILE_SHAPE, NOT_UPLOADED, UPLOAD_GONE

KEEP_BYTES = 32 * 2 ** 20  # read uploads kept in memory for repeated searches (LRU, by size)


class UploadGate:
    """Turns a client's image payload into bytes, reading only files this app received (see module doc)."""

    def __init__(self, upload_folder: str | Path, uploaded: Callable[[], Collection[str]],
                 examples: Callable[[], Collection[str]] = frozenset, max_bytes: int = MAX_IMAGE_BYTES,
                 keep_bytes: int = KEEP_BYTES, registries: Callable[[], list[set]] | None = None):
        self.folder = os.path.realpath(upload_folder)
        # callables: both grow while the app runs; `examples` may map each path to what it is, in words
        self.uploaded, self.examples = uploaded, examples
        # the sets a deleted upload is removed from (gradio's upload set and its per-component file sets)
        self.registries = registries or (lambda: [u] if isinstance(u := self.uploaded(), set) else [])
        self.max_bytes, self.keep_bytes = max_bytes, keep_bytes
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._kept_bytes = 0
        self._gone: OrderedDict[str, None] = OrderedDict()  # recently deleted uploads, for a precise message
        self._lock = Lock()
        self._read_lock = Lock()

    def source(self, payload: object) -> str:
        """What a picture payload is, in words: an example picture says which (when `examples` maps each path to
        its words), anything else is an uploaded picture."""
        examples = self.examples()
        path = payload.get("path") if isinstance(payload, dict) else payload
        words = examples.get(path) if isinstance(examples, dict) and isinstance(path, str) else None
        return words or "uploaded picture"

    def remembers(self, path: str) -> bool:
        """An upload this gate read and deleted (its bytes may still be kept): the page may send it again."""
        with self._lock:
            return path in self._kept or path in self._gone

    def read(self, payload: object) -> bytes:
        """The bytes of an uploaded picture, or InputError naming the problem and the fix.

        Check, read and delete happen under one lock: two requests naming the same fresh upload must
        not see it half-forgotten (the second would be told it is gone)."""
        path = self._path(payload)
        with self._read_lock:
            with self._lock:
                data = self._kept.get(path)
                if data is not None:
                    self._kept.move_to_end(path)
            if data is not None:
                if path in self.uploaded():  # the same picture uploaded again lands on the same path
                    self._delete(path)
                self._unregister(path)  # gradio registers the path again on each request that names it
                return data
            example = path in self.examples()
            if not example and path not in self.uploaded():
                raise self._missing() if path in self._gone else InputError(NOT_UPLOADED)
            data = self._read_file(path)
            if not example:
                self._forget(path)
            with self._lock:
                self._kept_bytes += len(data) - len(self._kept.pop(path, b""))
                self._kept[path] = data
                while self._kept_bytes > self.keep_bytes and len(self._kept) > 1:
                    self._kept_bytes -= len(self._kept.popitem(last=False)[1])
            return data

    @staticmethod
    def _path(payload: object) -> str:
        if payload is None:
            raise InputError("no image was given: upload one, or pick an example or a gallery item")
        path = payload.get("path") if isinstance(payload, dict) else payload
        if not isinstance(path, str) or not path or "\x00" in path:
            raise InputError(f"{FILE_SHAPE}; got {shown(payload)}")
        return path

    def _read_file(self, path: str) -> bytes:
        """Read a file already known to be this app's, re-checking it is still a plain file in the folder."""
        if os.path.commonpath([os.path.realpath(path), self.folder]) != self.folder:
            raise InputError(NOT_UPLOADED)
        try:
            info = os.lstat(path)
        except OSError:
            raise self._missing() from None
        if not stat.S_ISREG(info.st_mode):
            raise InputError(NOT_UPLOADED)
        if info.st_size > self.max_bytes:
            raise InputError(f"the image is {info.st_size / 2 ** 20:.1f} MB, more than the "
                             f"{self.max_bytes / 2 ** 20:.0f} MB allowed: upload a smaller file")
        try:
            with open(path, "rb") as f:
                return f.read(self.max_bytes + 1)
        except OSError:
            raise self._missing() from None

    def _unregister(self, path: str) -> None:
        for files in self.registries():  # gradio's sets of its files would otherwise grow with every upload
            files.discard(path)

    @staticmethod
    def _missing() -> InputError:
        return InputError(UPLOAD_GONE)

    @staticmethod
    def _delete(path: str) -> None:
        """Delete the file, not its folder: gradio names the folder by the content's hash and makes it again
        for the same picture uploaded at the same moment; removing it under that upload failed the upload
        (a 500 and a traceback; seen once in the suite, reproduced with 8 clients uploading one picture).
        Emptied folders go with the sweep."""
        try:
            os.unlink(path)
        except OSError:
            pass  # already gone

    def _forget(self, path: str) -> None:
        self._delete(path)
        self.evicted({path})

    def evicted(self, paths: Collection[str]) -> None:
        """`paths` were deleted (read, or to make room: cmr_demo.serve.upload_budget): they leave gradio's sets, and
        a search that names one later is told to upload it again, not that the path was never uploaded."""
        for path in paths:
            self._unregister(path)
        with self._lock:
            for path in paths:
                self._gone[path] = None
            while len(self._gone) > 10_000:
                self._gone.popitem(last=False)


def sweep(folder: str | Path, older_than_s: float, keep: Callable[[], Collection[str]] = frozenset,
          forget: Callable[[set[str]], object] = lambda paths: None) -> int:
    """Delete files under `folder` last changed more than `older_than_s` ago (except `keep`), then empty
    folders; the deleted paths go to `forget` (UploadGate.evicted). Returns how many files went. Meant for a folder
    this app owns (app.py gives gradio a private one): uploads never searched with, gradio's copies of
    result pictures, partial files of interrupted uploads."""
    import time
    limit, kept, gone = time.time() - older_than_s, set(keep()), set()
    for root, dirs, names in os.walk(folder, topdown=False):
        for name in names:
            path = os.path.join(root, name)
            try:
                if path not in kept and os.lstat(path).st_ctime < limit:
                    os.unlink(path)
                    gone.add(path)
            except OSError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(root, name))  # only empty ones go
            except OSError:
                pass
    if gone:
        forget(gone)
    return len(gone)
