"""How much of gradio's upload folder each visitor may hold, counted before an upload is read.

Why reservations: the folder's quota and each visitor's share used to be checked against the files on disk only, so
40 uploads sent at once from one address were all admitted (761 MB against a 400 MB quota) before any of them was
written. Every upload now reserves its declared size at the door, under one lock, and holds it until the upload
route has answered; what it stored then counts as the visitor's until it is searched with (and deleted by the
upload gate) or swept.

Who loses what: a visitor over its share loses its own oldest unsearched uploads first; an upload that still does
not fit (its other uploads are still arriving) is refused. Uploads from one network (IPv4 /24, IPv6 /64: one client
may hold many addresses) share a larger allowance. When the folder as a whole is full, only files older than
GRACE_S (an upload nobody searched with for that long, or an old copy of a result picture) make room; another
visitor's recent upload is never deleted for someone else, and the newcomer is asked to try again shortly. A
deleted upload is reported to `forget`, so that a later search with it says "upload it again".
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from threading import Lock

from cmr_demo.serve.clients import network_of

MB = 2 ** 20
# gradio's folder (uploads not searched yet, its copies of result pictures), at most
UPLOAD_QUOTA_BYTES = int(float(os.environ.get("CMR_UPLOAD_QUOTA_MB", "400")) * MB)
# one client's uploads not searched yet or arriving, at most: its own oldest go first, before anyone else's
CLIENT_SHARE_BYTES = int(float(os.environ.get("CMR_UPLOAD_SHARE_MB", "60")) * MB)
# one network's (IPv4 /24, IPv6 /64), at most; default twice a client's share
NETWORK_SHARE_BYTES = int(float(os.environ.get("CMR_UPLOAD_NETWORK_SHARE_MB", "0")) * MB) or 2 * CLIENT_SHARE_BYTES
# a file younger than this is deleted only for its own uploader (or once searched with), never to make room for others
GRACE_S = float(os.environ.get("CMR_UPLOAD_GRACE_S", "300"))


class UploadRefused(Exception):
    """An upload the budget cannot take now: the HTTP status and the app's message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class UploadBudget:
    """Reservations and holdings in gradio's upload folder (see the module docstring). `admit(client, bytes)` before
    an upload is read returns the function to call with the paths it stored once the route has answered (also
    with [] when it failed: the reservation is released either way)."""

    def __init__(self, folder: str, quota: int = UPLOAD_QUOTA_BYTES, share: int = CLIENT_SHARE_BYTES,
                 network_share: int = NETWORK_SHARE_BYTES, keep: Callable[[], Collection[str]] = frozenset,
                 forget: Callable[[set[str]], object] = lambda paths: None, grace_s: float = GRACE_S,
                 clients: int = 10_000):
        self.folder, self.quota, self.share, self.network_share = folder, quota, share, network_share
        self.keep, self.forget, self.grace_s, self.clients = keep, forget, grace_s, clients
        self._files: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()  # client -> its uploads, oldest first
        self._arriving: dict[int, tuple[str, int]] = {}  # reservation -> (client, bytes)
        self._next = 0
        self._lock = Lock()

    def admit(self, client: str, incoming: int, to_disk: bool = True) -> Callable[[list[str]], None]:
        """Reserve `incoming` bytes for `client`'s upload, or UploadRefused. `to_disk=False`: a picture read into
        memory (the JSON API's image routes) counts against the client's and its network's share while it arrives,
        not against the folder's quota."""
        gone: set[str] = set()
        try:
            with self._lock:
                self._fit_share(client, incoming, gone)
                self._fit_network(client, incoming)
                if to_disk:
                    self._fit_quota(incoming, gone)
                self._next += 1
                ticket = self._next
                self._arriving[ticket] = (client, incoming)
        finally:
            if gone:
                self.forget(gone)
        return lambda paths: self._received(ticket, paths)

    def held(self, client: str) -> int:
        """Bytes of `client`'s uploads on disk or arriving."""
        with self._lock:
            return self._holding(client)

    def _received(self, ticket: int, paths: list[str]) -> None:
        with self._lock:
            client, _ = self._arriving.pop(ticket, (None, 0))
            if client is None:
                return
            held = self._files.setdefault(client, [])
            self._files.move_to_end(client)
            for path in paths:
                try:
                    held.append((path, os.lstat(path).st_size))
                except OSError:
                    continue
            while len(self._files) > self.clients:
                self._files.popitem(last=False)

    def _live(self, client: str) -> list[tuple[str, int]]:
        live = [(p, size) for p, size in self._files.get(client, []) if os.path.lexists(p)]
        if client in self._files:
            self._files[client] = live
        return live

    def _arriving_for(self, client: str) -> int:
        return sum(size for who, size in self._arriving.values() if who == client)

    def _holding(self, client: str) -> int:
        return sum(size for _, size in self._live(client)) + self._arriving_for(client)

    def _fit_share(self, client: str, incoming: int, gone: set[str]) -> None:
        """The client's own oldest uploads go (into `gone`) until its share fits `incoming` more; refused, deleting
        nothing, when its uploads still arriving leave no room (those cannot be deleted)."""
        live, arriving = self._live(client), self._arriving_for(client)
        on_disk = sum(size for _, size in live)
        refused = UploadRefused(429, f"you already have {(on_disk + arriving) / MB:.0f} MB of pictures arriving or "
                                     f"not yet searched with (at most {self.share / MB:.0f} MB at once): search with "
                                     f"them or wait for them to finish uploading, then upload again")
        if arriving + incoming > self.share:
            raise refused
        kept = set(self.keep())
        freed, deleted = delete_oldest([(p, size) for p, size in live if p not in kept],
                                       on_disk + arriving + incoming - self.share)
        gone |= deleted
        self._files[client] = [(p, size) for p, size in live if p not in deleted]
        if on_disk - freed + arriving + incoming > self.share:  # what is left is in use (or would not go)
            raise refused

    def _fit_network(self, client: str, incoming: int) -> None:
        network = network_of(client)
        clients = {c for c in self._files if network_of(c) == network} | \
            {c for c, _ in self._arriving.values() if network_of(c) == network}
        if sum(self._holding(c) for c in clients) + incoming > self.network_share:
            raise UploadRefused(429, f"uploads from your network ({network}) already hold "
                                     f"{self.network_share / MB:.0f} MB not yet searched with: search with them or "
                                     f"try again in a few minutes")

    def _fit_quota(self, incoming: int, gone: set[str]) -> None:
        """Files older than the grace period go (into `gone`), oldest first, until the folder plus every upload
        arriving fits the quota; refused if that is not enough (younger files are someone's fresh upload or a page's
        results)."""
        kept, files, total = set(self.keep()), [], 0
        limit = time.time() - self.grace_s
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                total += st.st_size
                if path not in kept and st.st_ctime < limit:
                    files.append((st.st_ctime, st.st_size, path))
        arriving = sum(size for _, size in self._arriving.values())
        need = total + arriving + incoming - self.quota
        freed, deleted = delete_oldest([(path, size) for _, size, path in sorted(files)], need)
        gone |= deleted
        if freed < need:
            raise UploadRefused(503, "the app's space for uploads is full right now (other visitors' pictures are "
                                     "waiting to be searched): try again in a few minutes")


def delete_oldest(files: list[tuple[str, int]], need: int) -> tuple[int, set[str]]:
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
