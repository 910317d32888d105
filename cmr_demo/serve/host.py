"""Hosting the app with uvicorn as a public host needs it: deadlines for a request's headers and body, the open-file
limit raised, a prompt stop on SIGTERM, and the housekeeping threads (malloc trim, the upload sweeper).

Why deadlines in the protocol rather than in a middleware: a middleware runs once the headers are complete and
cannot close a socket; a connection that never finishes its headers, or whose body stalls, holds a file descriptor
until the process runs out of them (20,000 such connections made every normal request fail).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)
HEADER_TIMEOUT_S = float(os.environ.get("CMR_HEADER_TIMEOUT_S", "10"))  # a request's headers, in full, within this
# a request's body: this long for its first bytes, then at least BODY_MIN_RATE bytes a second on average
BODY_TIMEOUT_S = float(os.environ.get("CMR_BODY_TIMEOUT_S", "10"))
BODY_MIN_RATE = float(os.environ.get("CMR_BODY_MIN_RATE_KB", "16")) * 1024  # a 20 MB picture may take 21 minutes
SHUTDOWN_S = 3.0  # SIGTERM: open connections get this long, then the app stops anyway


def every(seconds: float, task: Callable[[], object], name: str) -> None:
    """Run `task` every `seconds` in a daemon thread; a failure is logged and the next round still runs."""
    def loop():
        while True:
            time.sleep(seconds)
            try:
                task()
            except Exception:  # housekeeping must not die: logged, and the next round runs
                log.exception("%s failed", name)
    threading.Thread(target=loop, name=name, daemon=True).start()


def trim_memory_every(seconds: float) -> None:
    """Hand freed heap memory back to the OS now and then (glibc's malloc_trim).

    Why: under many concurrent requests, worker threads each grow their own malloc arena with the
    tensors and pictures of a request; the memory is freed but stays mapped, so RSS creeps up for as
    long as the load lasts although Python's own allocations stay flat (tracemalloc: +10 MB over a
    minute of load while RSS grew by ~100 MB). A no-op where glibc is absent.
    """
    import ctypes
    import ctypes.util
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    every(seconds, lambda: trim(0), "malloc-trim")


class Deadlines(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus two deadlines.

    Headers: a connection whose headers have not all arrived HEADER_TIMEOUT_S after it opened (or after its last
    response) is closed (without it, 0 of 20,000 slow clients were closed in 90 s). Body: once the headers are in,
    the body must arrive by `BODY_TIMEOUT_S + bytes received / BODY_MIN_RATE` after them, so a stalled or trickled
    body is closed BODY_TIMEOUT_S after it stops keeping pace, while an upload at any usable speed is never cut (a
    declared Content-Length buys nothing until its bytes arrive). When the app itself is not reading (uvicorn paused
    the socket because the app has not consumed what came), the clock waits for the app."""

    _deadline = None
    _body_timer = None
    _body_start = 0.0
    _received = 0

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._close)

    def _disarm(self) -> None:
        for name in ("_deadline", "_body_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    def _close(self) -> None:
        self._deadline = self._body_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _check_body(self) -> None:
        self._body_timer = None
        due = self._body_start + BODY_TIMEOUT_S + self._received / BODY_MIN_RATE
        if self.loop.time() < due:
            self._body_timer = self.loop.call_at(due, self._check_body)
        elif self.flow is not None and self.flow.read_paused:  # the app is the slow one: wait for it
            self._body_timer = self.loop.call_later(1.0, self._check_body)
        else:
            self._close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._body_start, self._received = self.loop.time(), 0
        self._body_timer = self.loop.call_later(BODY_TIMEOUT_S, self._check_body)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport is not None and not self.transport.is_closing():
            self._arm()  # the next request on this kept-alive connection gets its own deadline

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def serve(app, host: str, port: int) -> None:
    """Run `app` with uvicorn as a public host needs it: deadlines for request headers and bodies, client addresses
    from the socket (see cmr_demo.serve.clients for X-Forwarded-For), the process's
    open-file limit raised to its hard limit (each client is a socket), keep-alive connections closed after 5 idle
    seconds, and a stop within SHUTDOWN_S of SIGTERM even while clients hold connections open."""
    import resource

    import uvicorn
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # a container may forbid it: keep the soft limit
        pass
    # proxy_headers=False: uvicorn would otherwise replace the peer's address with X-Forwarded-For's last entry for any
    # connection from 127.0.0.1, so a local client could pose as anyone; cmr_demo.serve.clients reads that header
    # itself, from configured proxies only
    uvicorn.run(app, host=host, port=port, log_level="warning", http=Deadlines, proxy_headers=False,
                timeout_keep_alive=5, timeout_graceful_shutdown=SHUTDOWN_S)
