"""The process's HTTP surface around the gradio UI: upload limit, gallery pictures by id, the mount.

Why our own FastAPI app instead of `demo.launch()`: the limits must hold before gradio reads a byte
(an upload over the image limit is refused from its Content-Length, with the app's message, before
anything is stored), and answers must name pictures by URL, not by server path (`/media/BUNDLE/ID`,
served here from the bundle's gallery folder by item id: no path from the client is ever opened).
gradio is mounted at "/" with the same options `launch` would get.
"""
from __future__ import annotations

import asyncio
import collections
import json
import threading
from collections.abc import Callable

import fastapi
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.requests import Request

from cmr_demo.serve import messages
from cmr_demo.serve.clients import client_address
from cmr_demo.serve.upload_budget import UploadRefused

UPLOAD_SLACK = 64 * 1024  # multipart headers and boundaries around one picture
BODY_MAX_BYTES = 2 ** 20  # any other request body: a query, an event's inputs, a map selection of 12,000 points
IMAGE_ROUTES = {"/api/v1/search/image", "/api/v1/embed/image", "/api/v1/query_info/image"}  # multipart pictures


class UploadLimit:
    """ASGI middleware: a body limit on every route. A picture upload (gradio's `*/upload`, the JSON API's image
    routes) over `max_bytes`, or any other body over BODY_MAX_BYTES (gradio's event routes included: a 200 MB JSON
    to its queue was read and kept in session state), gets 413 with the app's message.

    A declared Content-Length over the limit is refused before the body is read (nothing stored), and so is a body
    without one (411: a chunked body could be any size). Before an upload is read, `admit(bytes, client, to_disk)`
    reserves room for it (cmr_demo.serve.upload_budget; UploadRefused: the app's refusal, nothing read; `to_disk`:
    gradio's upload route, which stores it) and returns what to call with the paths the upload route stored once it
    has answered (also after a failure: the reservation is released). gradio's own `max_file_size` stays as a
    backstop; its 413 text is replaced by ours.
    """

    def __init__(self, app, max_bytes: int,
                 admit: Callable[[int, str, bool], Callable[[list[str]], object]] | None = None,
                 is_upload: Callable[[str], bool] = lambda path: path.endswith("/upload")):
        self.app, self.max_bytes, self.admit, self.is_upload = app, max_bytes, admit, is_upload
        self.body = json.dumps({"error": messages.picture_too_large(max_bytes)}).encode()
        self.json_body = json.dumps({"error": messages.body_too_large(BODY_MAX_BYTES)}).encode()
        self.no_length = json.dumps({"error": messages.NO_LENGTH}).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        stored = self.is_upload(path)  # gradio's upload route: it stores the file on disk
        upload = stored or path in IMAGE_ROUTES
        limit, refusal = (self.max_bytes + UPLOAD_SLACK, self.body) if upload else (BODY_MAX_BYTES, self.json_body)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if not length.isdigit():  # a chunked body could be any size: gradio's per-file limit and Starlette's
            return await self._refuse(send, 411, self.no_length)  # form parser would store it all first
        if int(length) > limit:
            return await self._refuse(send, 413, refusal)
        finish = None
        if upload and self.admit is not None:
            try:
                finish = await asyncio.to_thread(self.admit, int(length), client_address(Request(scope)), stored)
            except UploadRefused as refused:
                return await self._refuse(send, refused.status, json.dumps({"error": refused.message}).encode())
        replaced, answer = False, []

        async def guarded(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                return await self._refuse(send)
            if finish is not None and message["type"] == "http.response.body":  # the route names the files it stored
                answer.append(message.get("body", b""))
            if not replaced:
                await send(message)
        try:
            return await self.app(scope, receive, guarded)
        finally:
            if finish is not None:
                finish(stored_paths(b"".join(answer)))

    async def _refuse(self, send, status: int = 413, body: bytes | None = None):
        await send_json(send, status, self.body if body is None else body)


def stored_paths(answer: bytes) -> list[str]:
    """The file paths in gradio's upload answer (a JSON list of paths); [] for anything else."""
    try:
        paths = json.loads(answer)
    except ValueError:
        return []
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


async def send_json(send, status: int, body: bytes) -> None:
    """A whole JSON answer, and the connection closed after it (the request's body may be left unread)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class EventBodies:
    """ASGI middleware: gradio's event routes get bodies it can read, and its stream routes ids it holds. `routes`
    (cmr_demo.ui.gradio_adapter.routes.GradioRoutes) knows which routes those are and what gradio can read. An
    event's body is read whole (UploadLimit, outside this one, has capped it at BODY_MAX_BYTES), checked, then handed
    on unchanged; a bad one gets 400 with the app's message, quoting no more than 40 characters of it. A stream for
    an unknown session or event gets 404."""

    def __init__(self, app, routes):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        path, method = scope.get("path", ""), scope.get("method")
        if scope["type"] == "http" and method == "GET" and self.routes.is_stream(path):
            problem = self.routes.stream_problem(path, scope.get("query_string", b"").decode("latin-1"))
            if problem is not None:
                return await send_json(send, 404, json.dumps({"detail": problem, "error": problem}).encode())
        if scope["type"] != "http" or method != "POST" or not self.routes.is_event(path):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        problem = self.routes.event_problem(path, raw)
        if problem is not None:
            return await send_json(send, 400, json.dumps({"detail": problem, "error": problem}).encode())
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await self.app(scope, replay, send)


# a served bundle's pictures never change while it is served: a browser keeps each for the visit and beyond
IMMUTABLE = "public, max-age=31536000, immutable"


MEDIA_CACHE_BYTES = 64 * 2 ** 20  # thumbnails kept in memory (the default world's 800 are 7 MB)


class MediaCache:
    """Recently served pictures' bytes (least recently used out past `limit` bytes): a result page fetches a dozen
    thumbnails at once, and streaming each from disk through a worker thread (starlette's FileResponse) took
    35-60 ms apiece on two busy cores, in waves of six (bench/clicks.py); from memory it is one send."""

    def __init__(self, limit: int = MEDIA_CACHE_BYTES):
        self.limit, self.size = limit, 0
        self.kept: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.lock = threading.Lock()

    def read(self, path) -> bytes:
        key = str(path)
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
                return self.kept[key]
        with open(path, "rb") as f:
            data = f.read()
        with self.lock:
            if key not in self.kept and len(data) <= self.limit // 8:
                self.kept[key], self.size = data, self.size + len(data)
                while self.size > self.limit:
                    self.size -= len(self.kept.popitem(last=False)[1])
        return data


def media_router(services: Callable[[], dict], cache: MediaCache | None = None) -> fastapi.APIRouter:
    """GET /media/{bundle}/{item_id}: a gallery item's picture, looked up by id in a served bundle, from memory
    once read (MediaCache), with a year-long immutable Cache-Control (a served bundle's pictures never change)."""
    import mimetypes

    from fastapi.responses import Response
    router = fastapi.APIRouter()
    cache = cache or MediaCache()

    @router.get("/media/{bundle}/{item_id}", include_in_schema=False)
    async def media(bundle: str, item_id: str):  # async: a thumbnail is one small read, no worker thread
        service = services().get(bundle)
        from cmr_demo.files import CheckpointError
        row = service.catalog.row_of(item_id) if service is not None else None
        try:
            path = None if row is None else service.bundle.image_path(row)
        except CheckpointError as err:  # a damaged picture is never served
            return JSONResponse({"error": str(err)}, 500)
        if path is None:  # unknown, or a features-only bundle
            return JSONResponse({"error": f"no picture for bundle {bundle[:60]!r}, item {item_id[:60]!r}"}, 404)
        return Response(cache.read(path), media_type=mimetypes.guess_type(str(path))[0] or "application/octet-stream",
                        headers={"Cache-Control": IMMUTABLE})
    return router


DOCS_ASSETS = "/api/docs-assets"


def install_docs(app: fastapi.FastAPI) -> None:
    """/api/docs from Swagger UI files this app serves itself (the fastapi-swagger package ships them): FastAPI's
    default page loads them from a CDN, and is blank wherever the visitor's browser cannot reach one (an offline
    or firewalled host). Links are root-relative, so they hold behind a proxy that serves the app over https."""
    from importlib import resources

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(resources.files("fastapi_swagger.resources"))), name="docs-assets")

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


def build_app(demo, services: Callable[[], dict], max_upload_bytes: int, routes,
              admit: Callable[[int, str, bool], Callable[[list[str]], object]] | None = None,
              lifespan=None, **gradio_options) -> fastapi.FastAPI:
    """A FastAPI app: the body limits (`admit(bytes, client, to_disk)` before each upload is read, see UploadLimit),
    gradio's event bodies and streams checked by `routes` (EventBodies), the media route, the JSON API
    (cmr_demo.serve.api, docs at /api/docs), then gradio's UI and its API mounted at '/'. `lifespan`: what runs
    while the app serves (the factory's background jobs)."""
    import gradio as gr

    from cmr_demo.serve.api import install
    app = fastapi.FastAPI(title="CLIP4CMR demo API", docs_url=None, redoc_url=None,
                          openapi_url="/api/openapi.json", lifespan=lifespan,
                          description="Cross-modal search over a bundle's gallery (see the README's API section).")
    app.add_middleware(EventBodies, routes=routes)  # inside UploadLimit: bodies it reads are capped
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes, admit=admit, is_upload=routes.is_upload)
    app.include_router(media_router(services))
    install_docs(app)
    app.state.api = install(app, services)
    # enable_monitoring=False: left at None, gradio answers /gradio_api/monitoring/summary (every event's counts and
    # timings) to anyone; False closes its monitoring routes (403)
    return gr.mount_gradio_app(app, demo, path="/", max_file_size=max_upload_bytes, enable_monitoring=False,
                               **gradio_options)
