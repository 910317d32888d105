"""The one place the app reaches into gradio's internals, for what no public hook does; tested against the
installed gradio (tests/test_ui_context.py fails on an upgrade that moves what is used here).

- `ServedBlocks.preprocess_data`: gradio copies a client's FileData into its cache *before* any app code runs
  (and skips its own "was this uploaded?" check when mounted), and answers malformed arguments with its generic
  text and a traceback in the log. Event validators run after that copy, so they cannot help: files are checked
  here first, and a failure is the user's, told in the app's words.
- `limit_sessions`: how many sessions' component values gradio keeps is a `launch` option; the mounted app
  reads the attribute.
- `file_sets`: gradio's sets of the files it handed out (uploads, result copies); the upload gate reads and
  prunes them.
- `ServedBlocks.process_api`: whatever gradio itself fails on while reading a request (an event that runs in the
  browser only, malformed event data, a value outside a dropdown's choices) is answered in the app's words, with
  a short prefix of the input and no traceback; an app failure outside `user_errors` is still logged in full.
- `FairQueue` (`own_queue`): gradio's queue has one size for every event. Events with a queue of their own (the
  lab) are left out of it and capped per client, per network and in all, so one client queuing lab runs cannot
  make the queue refuse other users' searches; `withdraw` takes a session's waiting events out of it (Stop).
- `Streams`: which sessions and events gradio's queue holds, so that a stream nobody opened is refused before
  gradio raises inside a response it already started.
"""
from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio import queueing
from gradio.server_messages import ProcessCompletedMessage

from cmr_demo.serve.clients import network_of
from cmr_demo.serve.uploads import FILE_SHAPE, NOT_UPLOADED

log = logging.getLogger(__name__)
QUOTED = 120  # characters of a client's input an error message may quote


class ServedBlocks(gr.Blocks):
    """Blocks whose input-reading failures are the user's, told in the app's words (see the module docstring).
    `made_here(path)`: whether a file path is one this app received or wrote (set by the app once its upload gate
    exists)."""

    made_here = staticmethod(lambda path: False)

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        for path in file_paths(inputs):
            if not isinstance(path, str):
                raise gr.Error(FILE_SHAPE, print_exception=False)
            if not self.made_here(path):
                raise gr.Error(NOT_UPLOADED, print_exception=False)
        if isinstance(inputs, list) and len(inputs) < len(block_fn.inputs):
            # arguments a raw HTTP caller left out at the end take the values gradio_client would send: the
            # components' starting values
            inputs = inputs + [getattr(c, "value", None) for c in block_fn.inputs[len(inputs):]]
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 (pydantic's ValidationError, gradio's argument-count ValueError)
            if "ImageData" in str(err) or "FileData" in str(err):
                raise gr.Error(FILE_SHAPE, print_exception=False) from None
            raise unreadable(err) from None

    async def process_api(self, block_fn, *args, **kwargs):
        try:
            return await super().process_api(block_fn, *args, **kwargs)
        except gr.Error as err:
            if not err.print_exception:
                raise
            # gradio's own checks (a dropdown's choices, a number's bounds) quote the whole input and log a traceback
            raise gr.Error(shortened(err.message), print_exception=False, duration=err.duration) from None
        except Exception as err:  # noqa: BLE001 (gradio reading a request it could not; or an app bug, logged)
            if raised_in_app(err):
                log.error("an event failed inside the app", exc_info=err)
                raise gr.Error("the request failed inside the app; it was logged. Try again.",
                               print_exception=False) from None
            log.warning("a request gradio could not read was refused: %s", shortened(f"{type(err).__name__}: {err}"))
            raise unreadable(err) from None


def shortened(text: str, limit: int = 3 * QUOTED) -> str:
    """`text` cut to `limit` characters: an error never echoes a client's whole input back (or into the log)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def unreadable(err: BaseException) -> gr.Error:
    """The app's answer to a request gradio could not read."""
    first = (str(err).strip().splitlines() or [""])[0]
    what = shortened(first, QUOTED) if first else type(err).__name__
    if isinstance(err, IndexError) and "no backend method" in first:
        what = "this event runs in the browser only"
    return gr.Error(f"the request's arguments could not be read ({what}): send the endpoint's parameters as listed "
                    f"under 'Use via API' at the bottom of the page", print_exception=False)


def raised_in_app(err: BaseException) -> bool:
    """Whether `err` was raised through the app's own code, a handler (a bug: `user_errors` turns the user's
    mistakes into messages, so what escapes is logged in full), rather than in gradio's alone (a request it could
    not read). This module's frames do not count: they are where it is caught."""
    frames = traceback.extract_tb(err.__traceback__)
    return any("/cmr_demo/" in f.filename.replace("\\", "/") and "gradio_adapter" not in f.filename for f in frames)


@dataclass(frozen=True)
class OwnQueue:
    """A queue of its own for one concurrency id: at most `per_client` events waiting or running for one client,
    `per_network` for one network (IPv4 /24, IPv6 /64: one client may hold many addresses) and `in_all` for
    everyone; `busy_*`: the app's refusals."""
    per_client: int
    per_network: int
    in_all: int
    busy_client: str
    busy_network: str
    busy_all: str


class FairQueue(queueing.Queue):
    """gradio's queue whose size counts only the shared events; events of `own` concurrency ids are capped per
    client and in all instead (see `own_queue`). gradio's own size check is off (`max_size` None: it counts every
    event, and its processing loop relies on `len()` counting every event too); `shared_max` replaces it."""
    own: dict[str, OwnQueue]
    client_of: Callable[[object], str]
    admit_lock: asyncio.Lock | None
    shared_max: int | None

    def shared(self) -> int:
        """Events waiting in the shared queue."""
        return sum(len(q.queue) for cid, q in self.event_queue_per_concurrency_id.items() if cid not in self.own)

    def holding(self, concurrency_id: str) -> list:
        """Every event of `concurrency_id` waiting or running."""
        waiting = self.event_queue_per_concurrency_id.get(concurrency_id)
        running = [e for job in self.active_jobs if job for e in job if e.concurrency_id == concurrency_id]
        return (list(waiting.queue) if waiting else []) + running

    async def push(self, body, request, username):
        # body.fn_index names an event: webserver.EventBodies refuses a join that does not, before gradio reads it
        fns = self.blocks.fns
        share = self.own.get(fns[body.fn_index].concurrency_id)
        if share is None:
            if self.shared_max is not None and self.shared() >= self.shared_max:
                return False, f"the app is busy ({self.shared()} requests are waiting): try again in a minute", \
                    "queue_full"
            return await super().push(body, request, username)
        if self.admit_lock is None:
            self.admit_lock = asyncio.Lock()
        async with self.admit_lock:  # the count and the push as one step: a burst cannot slip past the caps
            held = self.holding(fns[body.fn_index].concurrency_id)
            client = self.client_of(request)
            clients = [self.client_of(e.request) for e in held]
            if clients.count(client) >= share.per_client:
                return False, refusal(share.busy_client), "validator_error"
            network = network_of(client)
            if sum(network_of(c) == network for c in clients) >= share.per_network:
                return False, refusal(share.busy_network), "validator_error"
            if len(held) >= share.in_all:
                return False, refusal(share.busy_all), "validator_error"
            return await super().push(body, request, username)


async def withdraw(demo: gr.Blocks, concurrency_id: str, session_hash: str | None) -> int:
    """Take `session_hash`'s events of `concurrency_id` that are still waiting out of the queue (what gradio's own
    /cancel route does for one event): each one's stream is told it completed, leaving its outputs as they are, so
    the page stops waiting. Returns how many were withdrawn. Running events are not touched (the lab stops those
    itself, keeping their best epoch)."""
    q = demo._queue
    waiting = q.event_queue_per_concurrency_id.get(concurrency_id)
    events = [e for e in (list(waiting.queue) if waiting else []) if session_hash and e.session_hash == session_hash]
    for event in events:
        await q.remove_from_queue(event._id)
        messages = q.pending_messages_per_session.get(event.session_hash)
        if messages is not None:  # every output left as it is (gradio's own cancel sends {}: the page shows "Error")
            unchanged = {"data": [{"__type__": "update"}] * len(event.fn.outputs), "is_generating": False}
            messages.put_nowait(ProcessCompletedMessage(output=unchanged, success=True, event_id=event._id))
    return len(events)


def refusal(message: str) -> list[dict]:
    """A refusal at the queue's door that both clients show in the app's words: gradio's validation answer (422).
    The page puts it under the event's first input; gradio_client raises ValidationError with it. (A 503 shows
    only gradio's own "queue is full" text in both, a 400 only a status code in gradio_client.)"""
    return [{"__type__": "validate", "is_valid": False, "message": message}]


def own_queue(demo: gr.Blocks, concurrency_id: str, share: OwnQueue, client_of: Callable[[object], str]) -> None:
    """Give `concurrency_id`'s events a queue of their own (after `demo.queue()`): left out of the queue's size,
    capped per client (`client_of(request)` names one) and in all."""
    q = demo._queue
    if not isinstance(q, FairQueue):
        q.__class__ = FairQueue
        q.own, q.admit_lock, q.shared_max, q.max_size = {}, None, q.max_size, None
    q.client_of = client_of
    q.own[concurrency_id] = share


@dataclass(frozen=True)
class Streams:
    """Which event streams gradio's queue holds: a session that joined (`pending_messages_per_session`), an event
    waiting, running or not yet read (`event_ids_to_events`, `pending_event_ids_session`). Read-only; a queue not
    built yet holds none."""
    demo: gr.Blocks

    def has_session(self, session_hash: str) -> bool:
        q = getattr(self.demo, "_queue", None)
        return q is not None and session_hash in q.pending_messages_per_session

    def has_event(self, event_id: str) -> bool:
        q = getattr(self.demo, "_queue", None)
        return q is not None and (event_id in q.event_ids_to_events or
                                  any(event_id in ids for ids in list(q.pending_event_ids_session.values())))


def file_paths(value):
    """Every "path" of a FileData-like dict in a request's inputs, at any depth (gradio's own walk has no limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item:
                yield item["path"]
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def limit_sessions(demo: gr.Blocks, sessions: int) -> None:
    """Keep at most `sessions` sessions' component values (a `launch` option the mounted app reads)."""
    demo.state_session_capacity = sessions


def uploaded_files(demo: gr.Blocks) -> set:
    """The paths gradio received through its upload route."""
    return demo.upload_file_set


def file_sets(demo: gr.Blocks) -> list[set]:
    """gradio's sets of files it handed out (per component), which a deleted upload must leave."""
    return demo.temp_file_sets
