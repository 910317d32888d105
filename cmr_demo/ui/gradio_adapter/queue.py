"""gradio's event queue as the app needs it: one queue whose size counts the shared events only, with events of
their own concurrency id (the lab) capped per client, per network and in all; a session's waiting events withdrawn
(Stop); which sessions and events it holds (to refuse a stream nobody opened).

`FairQueue` is built where gradio builds its queue (`ServedBlocks.queue`), never swapped in afterwards. What of
gradio's `queueing.Queue` it relies on (checked by tests/test_ui_context.py against the installed gradio): its
constructor's arguments, `push(body, request, username)` returning (ok, message_or_id, state),
`event_queue_per_concurrency_id[id].queue`, `active_jobs`, `remove_from_queue(event_id)`,
`pending_messages_per_session`, `pending_event_ids_session`, `event_ids_to_events`, and `Event.session_hash`,
`.concurrency_id`, `.request`, `.fn.outputs`, `._id`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio import queueing
from gradio.server_messages import ProcessCompletedMessage

from cmr_demo.serve.clients import network_of
from cmr_demo.serve.messages import busy


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
    client and in all instead (`OwnQueue`; `client_of(request)` names a client). gradio's own size check is off
    (`max_size` None: it counts every event, and its processing loop relies on `len()` counting every event too);
    `shared_max` replaces it."""

    def __init__(self, *args, max_size: int | None = None, own: dict[str, OwnQueue] | None = None,
                 client_of: Callable[[object], str] = lambda request: "", **kwargs):
        super().__init__(*args, max_size=None, **kwargs)
        self.shared_max, self.own, self.client_of = max_size, dict(own or {}), client_of
        self.admit_lock: asyncio.Lock | None = None  # made in the server's event loop, on first use

    def shared(self) -> int:
        """Events waiting in the shared queue."""
        return sum(len(q.queue) for cid, q in self.event_queue_per_concurrency_id.items() if cid not in self.own)

    def holding(self, concurrency_id: str) -> list:
        """Every event of `concurrency_id` waiting or running."""
        waiting = self.event_queue_per_concurrency_id.get(concurrency_id)
        running = [e for job in self.active_jobs if job for e in job if e.concurrency_id == concurrency_id]
        return (list(waiting.queue) if waiting else []) + running

    async def push(self, body, request, username):
        # body.fn_index names an event: the routes' check (routes.GradioRoutes) refuses a join that does not
        concurrency_id = self.blocks.fns[body.fn_index].concurrency_id
        share = self.own.get(concurrency_id)
        if share is None:
            if self.shared_max is not None and self.shared() >= self.shared_max:
                return False, busy(self.shared()), "queue_full"
            return await super().push(body, request, username)
        if self.admit_lock is None:
            self.admit_lock = asyncio.Lock()
        async with self.admit_lock:  # the count and the push as one step: a burst cannot slip past the caps
            problem = self._over(share, concurrency_id, self.client_of(request))
            if problem is not None:
                return False, refusal(problem), "validator_error"
            return await super().push(body, request, username)

    def _over(self, share: OwnQueue, concurrency_id: str, client: str) -> str | None:
        """The refusal for one more event of `client` under `share`'s caps, or None when it fits."""
        clients = [self.client_of(e.request) for e in self.holding(concurrency_id)]
        if clients.count(client) >= share.per_client:
            return share.busy_client
        network = network_of(client)
        if sum(network_of(c) == network for c in clients) >= share.per_network:
            return share.busy_network
        return share.busy_all if len(clients) >= share.in_all else None

    async def withdraw(self, concurrency_id: str, session_hash: str | None) -> int:
        """Take `session_hash`'s events of `concurrency_id` that are still waiting out of the queue (what gradio's
        own /cancel route does for one event): each one's stream is told it completed, leaving its outputs as they
        are, so the page stops waiting. Returns how many were withdrawn. Running events are not touched (the lab
        stops those itself, keeping their best epoch)."""
        waiting = self.event_queue_per_concurrency_id.get(concurrency_id)
        events = [
            e for e in (list(waiting.queue) if waiting else []) if session_hash and e.session_hash == session_hash
        ]
        for event in events:
            await self.remove_from_queue(event._id)
            messages = self.pending_messages_per_session.get(event.session_hash)
            if messages is not None:  # every output left as it is (gradio's own cancel sends {}: "Error" on the page)
                unchanged = {"data": [gr.skip()] * len(event.fn.outputs), "is_generating": False}
                messages.put_nowait(ProcessCompletedMessage(output=unchanged, success=True, event_id=event._id))
        return len(events)


def refusal(message: str) -> list[dict]:
    """A refusal at the queue's door that both clients show in the app's words: gradio's validation answer (422).
    The page puts it under the event's first input; gradio_client raises ValidationError with it. (A 503 shows
    only gradio's own "queue is full" text in both, a 400 only a status code in gradio_client.)"""
    return [gr.validate(False, message)]


@dataclass(frozen=True)
class Streams:
    """Which event streams gradio's queue holds: a session that joined (`pending_messages_per_session`), an event
    waiting, running or not yet read (`event_ids_to_events`, `pending_event_ids_session`). Read-only; a queue not
    built yet holds none."""
    blocks: gr.Blocks

    def has_session(self, session_hash: str) -> bool:
        q = getattr(self.blocks, "_queue", None)
        return q is not None and session_hash in q.pending_messages_per_session

    def has_event(self, event_id: str) -> bool:
        q = getattr(self.blocks, "_queue", None)
        return q is not None and (event_id in q.event_ids_to_events or
                                  any(event_id in ids for ids in list(q.pending_event_ids_session.values())))
