"""gradio's HTTP routes as the app's middleware needs to know them (cmr_demo.serve.webserver.EventBodies and
UploadLimit): which paths take an event's body (`/queue/join`, `/run/`, `/api/`, `/call/`), which stream its
answers (GET `/queue/data`, `/call/NAME/ID`), which store an upload (`/upload`), and what gradio can read in them.

Why: gradio takes `fn_index` (or the api name in the path) as given (-1, 9999, an unknown name: a KeyError and a
500 with a traceback), pydantic's refusals quote the whole input back, and a stream nobody opened raises inside a
response gradio already started. Route paths and event keys are gradio 6's (checked by tests/test_ui_context.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qs

import gradio as gr

from cmr_demo.ui.gradio_adapter.queue import Streams

EVENT_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/api/", "/gradio_api/call/")
STREAM_ROUTES = ("/gradio_api/queue/data", "/gradio_api/call/")  # GET: an event's answers, as a stream
EVENT_KEYS = {"data": list, "fn_index": int, "session_hash": str, "event_id": str, "trigger_id": int}
MAX_ID = 128  # characters of a session hash or an event id (gradio's are 10-32)
UPLOAD_ROUTE = "/upload"  # gradio's upload route ends so (`/gradio_api/upload`)




def event_problem(path: str, raw: bytes, events: dict) -> str | None:
    """What is wrong with an event request (`path`, its body) for gradio's event routes, in the app's words, or None.
    `events`: gradio's events by index. gradio takes `fn_index` (or the api name in `path`) as given (-1, 9999, an
    unknown name: a KeyError and a 500 with a traceback) and pydantic's refusals quote the whole input back."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return "the request body is not JSON: send the endpoint's parameters as listed under 'Use via API'"
    if not isinstance(body, dict):
        return "the request body must be a JSON object with the event's 'data' list"
    v2 = path.startswith("/gradio_api/call/v2/")  # named parameters: any key, any type
    for key, kind in EVENT_KEYS.items():
        value = body.get(key)
        if not v2 and value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"'{key}' must be {'a list' if kind is list else 'an integer' if kind is int else 'text'}"
    if isinstance(body.get("session_hash"), str) and len(body["session_hash"]) > MAX_ID:
        return f"'session_hash' is longer than {MAX_ID} characters"
    if isinstance(body.get("trigger_id"), int) and abs(body["trigger_id"]) > 2 ** 53:
        return "'trigger_id' is out of range"
    if (body.get("fn_index") is not None or path.startswith(EVENT_ROUTES[0])) and body.get("fn_index") not in events:
        return f"no event has the index {str(body.get('fn_index'))[:20]}: use the endpoints listed under 'Use via API'"
    if body.get("fn_index") is None and not path.startswith(EVENT_ROUTES[0]):
        return name_problem(path.rstrip("/").rsplit("/", 1)[-1], events)
    return None


def name_problem(name: str, events: dict) -> str | None:
    """None when `name` is an endpoint's api name, else the app's refusal (quoting at most 40 characters)."""
    if any(fn.api_name == name for fn in events.values()):
        return None
    return f"no endpoint is named '{name[:40]}': use the endpoints listed under 'Use via API'"


def stream_problem(path: str, query: str, events: dict, streams) -> str | None:
    """What is wrong with a request for an event's answers (GET `/queue/data?session_hash=`, GET `/call/NAME/ID`), or
    None. gradio answers a stream nobody opened by raising inside the stream it already started: a traceback in the
    log per request ("response already started"), quoting the id however long. `streams`: the gradio adapter's
    `Streams` (which sessions and events the queue holds)."""
    if path.startswith(STREAM_ROUTES[0]):
        hashes = parse_qs(query, max_num_fields=8).get("session_hash", [""])
        session = hashes[0]
        if len(session) > MAX_ID or not streams.has_session(session):
            return "no event stream is open for this session: join the queue first (POST /gradio_api/queue/join)"
        return None
    parts = path[len(STREAM_ROUTES[1]):].strip("/").split("/")
    if parts[0] == "v2":
        parts = parts[1:]
    if len(parts) != 2:
        return "read an event's answer at /gradio_api/call/NAME/EVENT_ID, with the id POST /gradio_api/call/NAME gave"
    problem = name_problem(parts[0], events)
    if problem is None and (len(parts[1]) > MAX_ID or not streams.has_event(parts[1])):
        problem = f"no event has the id '{parts[1][:40]}' (or its answer was read already): POST /gradio_api/call/" \
                  f"{parts[0][:40]} first, then read the id it gives"
    return problem


@dataclass(frozen=True)
class GradioRoutes:
    """The checks of gradio's routes for one Blocks (its events by index, the streams its queue holds)."""
    blocks: gr.Blocks

    @staticmethod
    def is_event(path: str) -> bool:
        return path.startswith(EVENT_ROUTES)

    @staticmethod
    def is_stream(path: str) -> bool:
        return path.startswith(STREAM_ROUTES)

    @staticmethod
    def is_upload(path: str) -> bool:
        return path.rstrip("/").endswith(UPLOAD_ROUTE)

    def event_problem(self, path: str, raw: bytes) -> str | None:
        return event_problem(path, raw, self.blocks.fns)

    def stream_problem(self, path: str, query: str) -> str | None:
        return stream_problem(path, query, self.blocks.fns, Streams(self.blocks))
