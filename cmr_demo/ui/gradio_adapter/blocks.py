"""gr.Blocks as the app serves it: requests gradio cannot read answered in the app's words, client files opened
only when the app says so, the fair queue built in place of gradio's, and a cap on the sessions it keeps.

- `preprocess_data`: gradio copies a client's FileData into its cache *before* any app code runs (and skips its
  own "was this uploaded?" check when mounted), and answers malformed arguments with its generic text and a
  traceback in the log. Event validators run after that copy, so they cannot help: files are checked here first
  (`opens(path)`), and a failure is the user's, told in the app's words.
- `process_api`: whatever gradio itself fails on while reading a request (an event that runs in the browser only,
  malformed event data, a value outside a dropdown's choices) is answered in the app's words, with a short prefix
  of the input and no traceback; an app failure outside `user_errors` is still logged in full. It also keeps the
  root URL gradio gives the event's files (`root_path`: the page's address, behind a proxy too) where handlers
  read it (`page_root`): result pictures are sent as URLs of the app's /media route, which gradio passes on
  untouched (a server path costs a path check per picture, twice, and a copy into its cache).
- `queue`: gradio's `Blocks.queue` building `queue.FairQueue` in place of its queue (and no throw-away web app).
- `sessions`: how many sessions' component values gradio keeps is a `launch` option; the mounted app reads the
  attribute `state_session_capacity`.
"""
from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from contextvars import ContextVar

import gradio as gr

from cmr_demo.serve import messages
from cmr_demo.serve.messages import FILE_SHAPE, NOT_UPLOADED
from cmr_demo.ui.gradio_adapter.files import GradioFiles
from cmr_demo.ui.gradio_adapter.queue import FairQueue, OwnQueue

log = logging.getLogger(__name__)
QUOTED = 120  # characters of a client's input an error message may quote
# the root URL gradio computed for the event being processed (handlers run in a copy of this context)
_PAGE_ROOT: ContextVar[str | None] = ContextVar("page_root", default=None)


def page_root() -> str | None:
    """The root URL (no trailing slash) gradio gives the current event's files: where the page reaches this app.
    None outside an event (a handler called directly)."""
    return _PAGE_ROOT.get()


class ServedBlocks(gr.Blocks):
    """Blocks whose input-reading failures are the user's, told in the app's words (see the module docstring).
    `opens(path)`: whether a file a client names is one this app received or wrote (the upload store's answer);
    `sessions`: how many sessions' component values are kept; `files`: the registry (files.GradioFiles) that reads
    this Blocks' sets of files for the upload store."""

    def __init__(self, *args, opens: Callable[[str], bool] = lambda path: False, sessions: int = 10_000,
                 files: GradioFiles | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.opens = opens
        self.state_session_capacity = sessions
        if files is not None:
            files.blocks = self

    def queue(self, status_update_rate: float | str = "auto", api_open: bool | None = None,
              max_size: int | None = None, *, default_concurrency_limit: int | None | str = "not_set",
              own: dict[str, OwnQueue] | None = None, client_of: Callable[[object], str] | None = None):
        """gradio's `Blocks.queue`, building a `FairQueue` where it builds its queue, from the same settings:
        `max_size` counts the shared events only; the concurrency ids in `own` get their own caps, per client as
        `client_of(request)` names one. Unlike gradio's, it makes no web app: gradio's `queue` rebuilt one (0.25 s,
        its 430 routes) on every call, and the app is made where it is served (cmr_demo.serve.webserver). The
        canary test_the_fair_queue_is_built_where_gradio_builds_its_queue compares both queues' settings."""
        if api_open is not None:
            self.api_open = api_open
        self._queue = FairQueue(live_updates=status_update_rate == "auto", concurrency_count=self.max_threads,
                                update_intervals=status_update_rate if status_update_rate != "auto" else 1,
                                max_size=max_size, blocks=self, default_concurrency_limit=default_concurrency_limit,
                                own=own, client_of=client_of or (lambda request: ""))
        return self

    async def withdraw(self, concurrency_id: str, session_hash: str | None) -> int:
        """Take `session_hash`'s waiting events of `concurrency_id` out of the queue (FairQueue.withdraw); 0 before
        the queue exists."""
        q = getattr(self, "_queue", None)
        return await q.withdraw(concurrency_id, session_hash) if isinstance(q, FairQueue) else 0

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        for path in file_paths(inputs):
            if not isinstance(path, str):
                raise gr.Error(FILE_SHAPE, print_exception=False)
            if not self.opens(path):
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
        root = kwargs.get("root_path")
        token = _PAGE_ROOT.set(root.rstrip("/") if isinstance(root, str) and root else None)
        try:
            return await super().process_api(block_fn, *args, **kwargs)
        except gr.Error as err:
            if not err.print_exception:
                raise
            # gradio's own checks (a dropdown's choices, a number's bounds) quote the whole input and log a traceback
            raise gr.Error(shortened(err.message), print_exception=False, duration=err.duration) from None
        except Exception as err:  # gradio reading a request it could not; or an app bug, logged
            if raised_in_app(err):
                log.error("an event failed inside the app", exc_info=err)
                raise gr.Error(messages.app_failed(retry="Try again."),
                               print_exception=False) from None
            log.warning("a request gradio could not read was refused: %s", shortened(f"{type(err).__name__}: {err}"))
            raise unreadable(err) from None
        finally:
            _PAGE_ROOT.reset(token)


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
    return gr.Error(messages.unreadable(what), print_exception=False)


def raised_in_app(err: BaseException) -> bool:
    """Whether `err` was raised through the app's own code, a handler (a bug: `user_errors` turns the user's
    mistakes into messages, so what escapes is logged in full), rather than in gradio's alone (a request it could
    not read). This module's frames do not count: they are where it is caught."""
    frames = traceback.extract_tb(err.__traceback__)
    return any("/cmr_demo/" in f.filename.replace("\\", "/") and "gradio_adapter" not in f.filename for f in frames)


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
