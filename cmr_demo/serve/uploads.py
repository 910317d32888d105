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

KEEP_BYTES = 32 * 2 ** 20  # read uploads kept in memory for repeated searches (LRU, by size)
FILE_SHAPE = ("an image is sent as an uploaded file, {'path': PATH_FROM_THE_UPLOAD_ROUTE, 'meta': {'_type': "
              "'gradio.FileData'}}: upload the picture first (gradio_client.handle_file does both)")
NOT_UPLOADED = ("the image must be a file uploaded to this app (the upload route, or gradio_client.handle_file); "
                "a path on the server is never opened: upload the picture instead")


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
        return InputError("the uploaded image is no longer on the server (uploads are deleted once searched with "
                          "and forgotten after a while, or after 30 minutes unused): upload it again")

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
        self._unregister(path)
        with self._lock:
            self._gone[path] = None
            while len(self._gone) > 10_000:
                self._gone.popitem(last=False)


def sweep(folder: str | Path, older_than_s: float, keep: Callable[[], Collection[str]] = frozenset,
          registries: Callable[[], list[set]] = list) -> int:
    """Delete files under `folder` last changed more than `older_than_s` ago (except `keep`), then empty
    folders; the deleted paths leave `registries` too. Returns how many files went. Meant for a folder
    this app owns (app.py gives gradio a private one): uploads never searched with, gradio's copies of
    result pictures, partial files of interrupted uploads."""
    import time
    limit, kept, gone = time.time() - older_than_s, set(keep()), []
    for root, dirs, names in os.walk(folder, topdown=False):
        for name in names:
            path = os.path.join(root, name)
            try:
                if path not in kept and os.lstat(path).st_ctime < limit:
                    os.unlink(path)
                    gone.append(path)
            except OSError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(root, name))  # only empty ones go
            except OSError:
                pass
    for files in registries():
        files.difference_update(gone)
    return len(gone)


# gradio's folder (uploads not searched yet, its copies of result pictures), at most
UPLOAD_QUOTA_BYTES = int(float(os.environ.get("CMR_UPLOAD_QUOTA_MB", "400")) * 2 ** 20)
# one client's uploads not searched yet, at most: its own oldest go first, before anyone else's
CLIENT_SHARE_BYTES = int(float(os.environ.get("CMR_UPLOAD_SHARE_MB", "60")) * 2 ** 20)


class UploadShares:
    """Which client uploaded which file still on disk, so a client over its share loses its own oldest uploads,
    not other visitors' (with one quota for all, 100 uploads from one client pushed everyone else's out).

    `before(client, incoming)` makes room in the client's share before its upload is read; `received(client,
    paths)` records what the upload route stored. Bounded: at most `clients` clients are remembered (the least
    recent forgotten; their files stay under the global quota and the sweeper)."""

    def __init__(self, share: int = CLIENT_SHARE_BYTES, keep: Callable[[], Collection[str]] = frozenset,
                 registries: Callable[[], list[set]] = list, clients: int = 10_000):
        self.share, self.keep, self.registries, self.clients = share, keep, registries, clients
        self._files: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()
        self._lock = Lock()

    def received(self, client: str, paths: list[str]) -> None:
        with self._lock:
            held = self._files.setdefault(client, [])
            self._files.move_to_end(client)
            for path in paths:
                try:
                    held.append((path, os.lstat(path).st_size))
                except OSError:
                    continue
            while len(self._files) > self.clients:
                self._files.popitem(last=False)

    def held(self, client: str) -> int:
        """Bytes of `client`'s uploads still on disk."""
        with self._lock:
            return sum(size for _, size in self._live(client))

    def _live(self, client: str) -> list[tuple[str, int]]:
        live = [(p, size) for p, size in self._files.get(client, []) if os.path.lexists(p)]
        if client in self._files:
            self._files[client] = live
        return live

    def before(self, client: str, incoming: int) -> int:
        """Delete `client`'s oldest uploads (not in use) until its share fits `incoming` more bytes; the bytes freed."""
        kept = set(self.keep())
        with self._lock:
            live = self._live(client)
            need = sum(size for _, size in live) + incoming - self.share
            freed, gone = _delete_oldest([(p, size) for p, size in live if p not in kept], need)
            self._files[client] = [(p, size) for p, size in live if p not in gone]
        for registry in self.registries():
            registry.difference_update(gone)
        return freed


def _delete_oldest(files: list[tuple[str, int]], need: int) -> tuple[int, set[str]]:
    """Delete `files` ((path, size), oldest first) until `need` bytes are freed: (bytes freed, paths deleted)."""
    freed, gone = 0, set()
    for path, size in files:
        if freed >= need:
            break
        try:
            os.unlink(path)
        except OSError:
            continue
        freed += size
        gone.add(path)
    return freed, gone


def make_room(folder: str | Path, incoming: int, quota: int = UPLOAD_QUOTA_BYTES,
              keep: Callable[[], Collection[str]] = frozenset, registries: Callable[[], list[set]] = list) -> int:
    """Before an upload of `incoming` bytes: delete the oldest files under `folder` (except `keep`) until the folder
    plus the upload fits in `quota`. Returns the bytes freed. A searched upload is deleted once read, so what is
    left is mostly uploads nobody searched with (100 of 19 MB in 7 s filled 1.9 GB for 30 minutes): the oldest go
    first; a visitor whose unsearched upload went is asked to upload it again."""
    kept, files, total = set(keep()), [], 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            total += st.st_size
            if path not in kept:
                files.append((st.st_ctime, st.st_size, path))
    freed, gone = _delete_oldest([(path, size) for _, size, path in sorted(files)], total + incoming - quota)
    for registry in registries():
        registry.difference_update(gone)
    return freed
