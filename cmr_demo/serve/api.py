"""The JSON API (`/api/v1`, OpenAPI docs at `/api/docs`): search, compare, embed, query info, bundles.

Why beside the gradio UI: a gradio event costs ~45 ms of server CPU (queue, session state, event
stream) for ~1 ms of retrieval work, and programs (a notebook, a batch job, another web page) expect
plain JSON. Same process, same `RetrievalService`, same input checks and messages as the UI: a user
error is a 400 whose body is `{"error": the app's message}` (422 for a body of the wrong shape).

How it stays fast on 2 cores: routes are `async`; the cheap parts (checks, a head pass, an index search)
run inline on the event loop, and backbone work goes to one worker thread (pictures to one of their own, two
at most read at a time, decoded and encoded in one step: see `Api.image_query`). Texts go through
`TextBatcher`: every text that arrives while a batch is encoding joins the next batch, so concurrent
queries share one backbone call instead of each paying for one (and no thread per request fights
over the cores).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import fastapi
import numpy as np
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cmr_demo.serve import map_colours
from cmr_demo.serve.inputs import MAX_IMAGE_BYTES, MAX_K, InputError, check_choice
from cmr_demo.serve.messages import app_failed
from cmr_demo.serve.map_colours import MAX_POINTS_ITEMS
from cmr_demo.serve.placement import MAP_ITEMS
from cmr_demo.serve.schema import BundleSummary, Query, SearchResult
from cmr_demo.serve.service import RetrievalService

MAX_BATCH = 64  # texts per backbone call
MAX_OFFSET = 2 ** 31 - 1  # /items: an offset past any gallery is refused, not answered as the first page
PICTURES_AT_ONCE = 2  # uploaded pictures read and decoded at a time (one encoding, the next one ready)
log = logging.getLogger(__name__)


class TextBatcher:
    """Backbone features of texts, encoded in batches on one worker thread (see module doc)."""

    def __init__(self, service: RetrievalService, worker: ThreadPoolExecutor):
        self.service, self.worker = service, worker
        self.pending: list[tuple[str, asyncio.Future]] = []
        self.running = False
        self.batches = self.texts = 0  # counters: texts / batches is the batching achieved

    async def features(self, text: str) -> np.ndarray:
        cached = self.service.encoder.cached_text_features(text)
        if cached is not None:
            return cached
        future = asyncio.get_running_loop().create_future()
        self.pending.append((text, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                texts = list(dict.fromkeys(t for t, _ in batch))
                try:
                    feats = await loop.run_in_executor(self.worker, self.service.encoder.text_features, texts)
                    rows = {t: feats[n:n + 1] for n, t in enumerate(texts)}
                except Exception:  # noqa: BLE001 (one bad text must not fail the others: each alone, its own error)
                    rows = {}
                    for text in texts:
                        try:
                            rows[text] = await loop.run_in_executor(
                                self.worker, self.service.encoder.text_features, [text]
                            )
                        except Exception as err:  # noqa: BLE001 (handed to the requests that sent this text)
                            rows[text] = err
                self.batches, self.texts = self.batches + 1, self.texts + len(texts)
                for text, fut in batch:
                    if fut.done():  # the client went away (its request was cancelled)
                        continue
                    if isinstance(rows[text], Exception):
                        fut.set_exception(rows[text])
                    else:
                        fut.set_result(rows[text])
        finally:
            self.running = False


# ---- request and answer models ------------------------------------------------------------------
class Common(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored
    objective: str | None = Field(None, description="a name from /api/v1/bundles; default: the bundle's best")
    k: int = Field(10, description=f"number of results, 1-{MAX_K}", ge=1, le=MAX_K)
    bundle: str | None = Field(None, description="a bundle name from /api/v1/bundles; default: the first")


class TextSearch(Common):
    text: str = Field(..., description="the query text", examples=["a red star on a striped background"])
    query_class: str | None = Field(None, description="the query's class, when known: adds AP, P@k and relevance")
    same_modality: bool = Field(False, description="search texts instead of images")


class ItemSearch(Common):
    id: str = Field(..., description="a gallery item id")
    modality: str = Field("image", description="search with the item's image or its text")
    same_modality: bool = False


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="a text query (or give item_id)")
    item_id: str | None = Field(None, description="a gallery item id (overrides text)")
    item_modality: str = "image"
    objectives: list[str] | None = Field(None, description="default: all")
    k: int = Field(6, description=f"results per objective, 1-{MAX_K}", ge=1, le=MAX_K)
    query_class: str | None = None
    bundle: str | None = None


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="a text (or give item_id)")
    item_id: str | None = None
    modality: str = Field("image", description="for item_id: its image or its text")
    objective: str | None = None
    bundle: str | None = None


class MapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objective: str | None = Field(None, description="the map's objective; default: the bundle's best")
    color_by: str = Field("class", description="class | modality | ap (each point's AP as a query) | ap_diff (AP "
                                               "minus AP under `other`) | rank (each point's rank for the query)")
    other: str | None = Field(None, description="for ap_diff: the objective compared with; default: the best other")
    text: str | None = Field(None, description="a text query placed on the map (or give item_id)")
    item_id: str | None = Field(None, description="a gallery item as the query (overrides text)")
    item_modality: str = "image"
    k: int = Field(10, description=f"the query's top-k, listed and always among the points; 1-{MAX_K}", ge=1,
                   le=MAX_K)
    limit: int = Field(MAP_ITEMS, description=f"items on the map at most (each a picture and a text point; "
                                              f"beyond, a class-stratified sample); 1-{MAX_POINTS_ITEMS}",
                       ge=1, le=MAX_POINTS_ITEMS)
    bundle: str | None = None


class InfoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    objective: str | None = None
    bundle: str | None = None


class EmbedAnswer(BaseModel):
    bundle: str
    objective: str
    modality: str
    dim: int
    embedding: list[float]


def embedding_answer(bundle: str, objective: str, modality: str, emb: np.ndarray) -> dict:
    return {"bundle": bundle, "objective": objective, "modality": modality, "dim": int(emb.shape[0]),
            "embedding": emb.astype(float).tolist()}


class Api:
    """The routes over the served bundles ({name: RetrievalService}; the first is the default)."""

    def __init__(self, services: Callable[[], dict[str, RetrievalService]]):
        self.services = services
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="backbone")  # all backbone work, one at a time
        # pictures (decoding a large one takes a second) on a worker of their own: texts never queue behind them
        self.picture_worker = ThreadPoolExecutor(1, thread_name_prefix="pictures")
        self.pictures = asyncio.Semaphore(PICTURES_AT_ONCE)
        self.batchers: dict[str, TextBatcher] = {}

    def pick(self, bundle: str | None) -> tuple[str, RetrievalService]:
        services = self.services()
        name = next(iter(services)) if bundle is None else check_choice(bundle, list(services), "bundle")
        return name, services[name]

    def batcher(self, name: str, service: RetrievalService) -> TextBatcher:
        if name not in self.batchers:
            self.batchers[name] = TextBatcher(service, self.worker)
        return self.batchers[name]

    async def features(self, name: str, service: RetrievalService, query: Query) -> np.ndarray | None:
        """A text's backbone features (batched); None for a gallery item. Pictures get theirs in `image_query`."""
        return None if query.item is not None else await self.batcher(name, service).features(query.text)

    async def image_query(self, service: RetrievalService, file: fastapi.UploadFile,
                          query_class: str | None) -> tuple[Query, np.ndarray]:
        """(the picture as a query, its backbone features), decoded and encoded in one step of the pictures' own
        worker, the decoded pixels dropped at once: a decoded picture waiting for the backbone worker held up to
        120 MB (48 concurrent 6300x6300 PNGs: +7.6 GB) and texts waited behind them. At most PICTURES_AT_ONCE
        uploads are read into memory at a time; the rest wait, unread."""
        async with self.pictures:
            data = await file.read(MAX_IMAGE_BYTES + 1)  # one byte over is enough for load_image to refuse it

            def decode_and_encode() -> tuple[Query, np.ndarray]:
                q = service.image_query(data, query_class)
                features = service.encoder.features(q)
                q.image = None  # the pixels are no longer needed: the features stand for them
                return q, features
            return await asyncio.get_running_loop().run_in_executor(self.picture_worker, decode_and_encode)

    def router(self) -> fastapi.APIRouter:
        r = fastapi.APIRouter(prefix="/api/v1", tags=["retrieval"])
        self._gallery_routes(r)
        self._search_routes(r)
        self._reading_routes(r)
        return r

    def _gallery_routes(self, r: fastapi.APIRouter) -> None:

        @r.get("/bundles", summary="The served bundles: name, size, classes, objectives (best first)")
        async def bundles() -> list[BundleSummary]:
            return [s.describe(default=n == 0) for n, s in enumerate(self.services().values())]

        @r.get("/items", summary="A page of gallery items (of one class, ids containing a string): their ids for "
                                 "item queries")
        async def items(bundle: str | None = None, class_name: str | None = None, contains: str | None = None,
                        offset: int = fastapi.Query(0, ge=0, le=MAX_OFFSET),
                        limit: int = fastapi.Query(60, ge=1, le=500)) -> dict:
            name, s = self.pick(bundle)
            rows, total = s.catalog.page(class_name, contains, offset, limit)
            return {"bundle": name, "total": total, "offset": offset,
                    "items": [{"id": s.bundle.items[r]["id"], "class": s.class_names[int(s.bundle.labels[r])],
                               "text": s.bundle.items[r]["text"], "image_url": s.catalog.media_url(r)} for r in rows]}

        @r.get("/leaderboard", summary="Every objective ranked by its mean over training seeds: per-seed values, "
                                       "sample "
                                       "std, 95 % interval, a paired test against the best, and how its setting was "
                                       "chosen; the paper's setting as a row of its own where tuning changed it")
        async def leaderboard(bundle: str | None = None) -> dict:
            name, s = self.pick(bundle)
            return {"bundle": name, "rows": s.leaderboard(with_paper=True)}

    def _search_routes(self, r: fastapi.APIRouter) -> None:
        @r.post("/search/text", response_model=SearchResult, summary="Text -> images (or texts)")
        async def search_text(req: TextSearch) -> SearchResult:
            name, s = self.pick(req.bundle)
            q = s.text_query(req.text, req.query_class)
            checked = s.request(q, req.objective, req.k, q.modality if req.same_modality else None)
            return s.search(checked, features=await self.features(name, s, q))

        @r.post("/search/image", response_model=SearchResult, summary="Uploaded image -> texts (or images)")
        async def search_image(file: fastapi.UploadFile, objective: str | None = fastapi.Form(None),
                               k: int = fastapi.Form(10, ge=1, le=MAX_K), bundle: str | None = fastapi.Form(None),
                               query_class: str | None = fastapi.Form(None),
                               same_modality: bool = fastapi.Form(False)) -> SearchResult:
            name, s = self.pick(bundle)
            s.request(Query("image"), objective, k)  # settings refused before the upload is read
            q, features = await self.image_query(s, file, query_class)
            checked = s.request(q, objective, k, q.modality if same_modality else None)
            return s.search(checked, features=features)

        @r.post("/search/item", response_model=SearchResult, summary="A gallery item (its image or text) as the query")
        async def search_item(req: ItemSearch) -> SearchResult:
            name, s = self.pick(req.bundle)
            q = s.item_query(req.id, req.modality)
            return s.search(s.request(q, req.objective, req.k, q.modality if req.same_modality else None))

        @r.post("/compare", summary="One query under several objectives: {objective: answer}")
        async def compare(req: CompareRequest) -> dict[str, SearchResult]:
            name, s = self.pick(req.bundle)
            q = s.item_query(req.item_id, req.item_modality) if req.item_id else s.text_query(req.text, req.query_class)
            return s.compare(q, req.objectives, req.k, features=await self.features(name, s, q))

    def _reading_routes(self, r: fastapi.APIRouter) -> None:
        @r.post("/map", summary="An objective's 2-D map: points {id, modality, class, x, y, value} coloured by class, "
                                "modality, per-item AP, AP difference or rank for a query")
        async def embedding_map(req: MapRequest) -> dict:
            name, s = self.pick(req.bundle)
            q = (s.item_query(req.item_id, req.item_modality) if req.item_id else
                 s.text_query(req.text) if req.text is not None else None)
            features = await self.features(name, s, q) if q is not None else None
            # off the event loop: the first AP colouring of an objective ranks the whole gallery once (cached after),
            # and the answer lists up to 40,000 points
            def answer() -> dict:
                view = s.map_view(req.objective, q, req.k, features, req.color_by, req.other)
                return {"bundle": name, **map_colours.answer(s, view, req.limit)}
            return await asyncio.to_thread(answer)

        @r.post("/embed", response_model=EmbedAnswer, summary="A text's or gallery item's common-space embedding")
        async def embed(req: EmbedRequest) -> dict:
            name, s = self.pick(req.bundle)
            q = s.item_query(req.item_id, req.modality) if req.item_id else s.text_query(req.text)
            objective = s.request(q, req.objective, 1).objective
            return embedding_answer(name, objective, q.modality, s.embed(q, objective, await self.features(name, s, q)))

        @r.post("/embed/image", response_model=EmbedAnswer, summary="An uploaded image's common-space embedding")
        async def embed_image(file: fastapi.UploadFile, objective: str | None = fastapi.Form(None),
                              bundle: str | None = fastapi.Form(None)) -> dict:
            name, s = self.pick(bundle)
            objective = s.request(Query("image"), objective, 1).objective
            q, features = await self.image_query(s, file, None)
            return embedding_answer(name, objective, "image", s.embed(q, objective, features))

        @r.post("/query_info", summary="A text's likely class, confidence and whether it is in the gallery's world")
        async def query_info(req: InfoRequest) -> dict:
            name, s = self.pick(req.bundle)
            q = s.text_query(req.text)
            objective = s.request(q, req.objective, 1).objective
            return {"bundle": name, **s.query_info(q, objective, await self.features(name, s, q)).to_dict()}

        @r.post("/query_info/image", summary="The same for an uploaded image")
        async def query_info_image(file: fastapi.UploadFile, objective: str | None = fastapi.Form(None),
                                   bundle: str | None = fastapi.Form(None)) -> dict:
            name, s = self.pick(bundle)
            objective = s.request(Query("image"), objective, 1).objective
            q, features = await self.image_query(s, file, None)
            return {"bundle": name, **s.query_info(q, objective, features).to_dict()}


def validation_message(err: RequestValidationError) -> str:
    """pydantic's errors as one line in the app's style: where, what, the value given."""
    parts = []
    for e in err.errors()[:4]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        given = f" (got {str(e.get('input'))[:40]!r})" if "input" in e and e.get("type") != "missing" else ""
        parts.append(f"{where}: {e.get('msg', 'invalid')}{given}")
    return "; ".join(parts) + ": see the request schema at /api/docs"


def install(app: fastapi.FastAPI, services: Callable[[], dict[str, RetrievalService]]) -> Api:
    """Add the API's routes and its error answers to `app` (before gradio is mounted at '/')."""
    api = Api(services)
    app.include_router(api.router())

    @app.exception_handler(InputError)
    async def user_error(_, err: InputError):
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_shape(_, err: RequestValidationError):
        return JSONResponse({"error": validation_message(err)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, err: StarletteHTTPException):  # unknown route, wrong method, unreadable multipart body
        return JSONResponse({"error": f"{err.detail}: see the routes at /api/docs"}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def failure(request, err: Exception):  # a bug, not the client's mistake: logged once, answered plainly
        log.error("request to %s failed: %s: %s", request.url.path, type(err).__name__, err, exc_info=err)
        return JSONResponse({"error": app_failed()}, 500)
    return api
