"""CLIP4CMR demo: cross-modal search, objectives side by side, embedding maps. Layout and wiring only.

    python app.py [--bundle assets] [--bundle OTHER ...] [--host 127.0.0.1] [--port 7860]

Several bundles are served by one process: a picker in the header switches between them, every endpoint
takes an optional `bundle` (a name from `/bundles`; default the first), and bundles built on the same
backbone weights share one loaded copy.

Behaviour lives in `cmr_demo.serve.service` (plain Python, unit-tested); this file turns its results into
component values (`cmr_demo.serve.views`, `cmr_demo.serve.plots`) and user errors into `gr.Error`. `demo` is built
at import so `gradio app.py` reload mode works; the bundle is loaded once, before the first request.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import logging
import os
import sys
import tempfile
import threading
import typing
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# gradio's upload and cache folder, private to this app (the sweeper below deletes old files in it)
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(), "cmr-demo-gradio"))

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from cmr_demo.serve import lab, plots, views  # noqa: E402
from cmr_demo.serve.inputs import MAX_IMAGE_BYTES, MAX_K, InputError, check_choice, check_choices, check_flag  # noqa: E402
from cmr_demo.train.objectives import option_defaults  # noqa: E402
from cmr_demo.serve.service import Hit, RetrievalService, SearchResult  # noqa: E402
from cmr_demo.serve.uploads import FILE_SHAPE, NOT_UPLOADED, UploadGate, sweep  # noqa: E402

log = logging.getLogger("cmr_demo.app")
DEFAULT_BUNDLES = Path(__file__).resolve().parent / "assets"  # every bundle in it: the demo and the Wikipedia benchmark
CONCURRENCY = 4  # encoding is CPU-bound: more parallel requests than cores only add latency
QUEUE_SIZE = 64  # beyond this, clients are told the app is busy instead of waiting minutes
# gradio keeps every session's component values (a map's figure is ~400 kB, a compare's JSON ...) until this
# many newer sessions exist, and each raw API call is a session of its own: with gradio's default (10,000) the
# soak's RSS grew by 1.9 GB (113 %) in 5 minutes (bench/soak.py). A page evicted this way answers "run the
# search again" on its next result click; programs should use gradio_client (one session) or the JSON API.
SESSIONS = 256
SWEEP = (600, 1800)  # every 10 min, files in gradio's folder older than 30 min go (uploads never searched with)
STUDY_FIGURES = sorted((Path(__file__).resolve().parent / "bench" / "results" / "study").glob("*/*.png"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CLIP4CMR demo app")
    p.add_argument("--bundle", action="append", default=None, metavar="FOLDER",
                   help="a bundle folder (python -m cmr_demo.bundle build ...) or a folder of bundles; repeatable, the "
                        "first is the default. Default: $CMR_BUNDLE (folders separated by ':'), else every bundle "
                        "in assets/")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = p.parse_args(argv)
    env = [f for f in os.environ.get("CMR_BUNDLE", "").split(os.pathsep) if f]
    args.bundle = args.bundle or env or [str(DEFAULT_BUNDLES)]
    return args


def bundle_folders(paths: list[str]) -> list[Path]:
    """Each path as given when it is a bundle, else the bundles directly inside it (sorted by name)."""
    folders = []
    for path in map(Path, paths):
        if (path / "manifest.json").is_file():
            folders.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file()) if path.is_dir() else []
        if not inside:
            raise SystemExit(f"error: no bundle at '{path}' (no manifest.json in it or in its sub-folders). Build one "
                             f"with 'python -m cmr_demo.bundle build ... --out DIR' and pass --bundle DIR")
        folders += inside
    return folders


def load_services(paths: list[str]) -> dict[str, RetrievalService]:
    """{name: service} for every bundle, in order (the first is the default); names are folder names,
    made unique with a suffix when two folders share one."""
    from cmr_demo.files import CheckpointError
    from cmr_demo.serve.service import load
    services: dict[str, RetrievalService] = {}
    for folder in bundle_folders(paths):
        name, n = folder.resolve().name, 2
        while name in services:
            name, n = f"{folder.resolve().name}-{n}", n + 1
        try:
            services[name] = load(folder, name)
        except (CheckpointError, ValueError, OSError) as err:
            raise SystemExit(f"error: bundle '{folder}' cannot be served: {err}") from None
    return services


class ServedBlocks(gr.Blocks):
    """Blocks whose input-reading failures are the user's, told in the app's words.

    The public events take raw values (`preprocess=False`: the app checks every value itself), so what
    gradio still does before the app sees a request is move uploaded files and count the arguments.
    A FileData naming a server file, a malformed FileData or a wrong number of arguments fails there,
    which gradio would answer with its generic text and a traceback in the log.
    """

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        # gradio copies a FileData's file into its cache before any app code runs, and skips its own
        # "was this uploaded?" check when mounted (it tests `has_launched`): check every file first
        for path in _file_paths(inputs):
            if not isinstance(path, str):
                raise gr.Error(FILE_SHAPE, print_exception=False)
            if not self.made_here(path):
                raise gr.Error(NOT_UPLOADED, print_exception=False)
        if isinstance(inputs, list) and len(inputs) < len(block_fn.inputs):
            # arguments a raw HTTP caller left out at the end (`bundle`, added later) take the values gradio_client
            # would send: the components' starting values
            inputs = inputs + [getattr(c, "value", None) for c in block_fn.inputs[len(inputs):]]
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 (pydantic's ValidationError, gradio's argument-count ValueError)
            first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            if "ImageData" in first or "FileData" in first:
                raise gr.Error(FILE_SHAPE, print_exception=False) from None
            raise gr.Error(f"the request's arguments could not be read ({first}): send the endpoint's parameters "
                           f"as listed under 'Use via API' at the bottom of the page", print_exception=False) from None

    def made_here(self, path: str) -> bool:
        """A file this app received (an upload, also one already read and deleted: a page sends it again) or
        wrote (examples, result galleries), by exact path."""
        return any(path in files for files in self.temp_file_sets) or GATE.remembers(path)


def _file_paths(value):
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


@contextlib.contextmanager
def _reported(name: str):
    try:
        yield
    except InputError as err:  # the user's mistake, not the app's: no traceback in the server log
        raise gr.Error(str(err), print_exception=False) from None
    except gr.Error:
        raise
    except Exception:
        log.exception("request failed in %s", name)
        raise gr.Error("the request failed inside the app; it was logged. Try another query.") from None


def user_errors(fn):
    """InputError -> gr.Error with its message; anything else is logged and reported without a traceback.
    Generators (live updates) stay generators, so gradio streams them."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            with _reported(fn.__name__):
                yield from fn(*args, **kwargs)
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _reported(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
SERVICES = load_services(ARGS.bundle)
NAMES = list(SERVICES)
FIRST = SERVICES[NAMES[0]]
# every objective of any bundle, in order of first appearance: Compare has one column per name
ALL_OBJECTIVES = list(dict.fromkeys(o for s in SERVICES.values() for o in s.objectives))
PAGE = 60  # gallery items per page when browsing
ITEM_LABEL = "…or a gallery item id (overrides the text)"


def service(bundle, request: gr.Request | None = None) -> RetrievalService:
    """The served bundle named `bundle` ("" or None: the first, the default), with the lab runs of the
    request's session added (each user sees only their own)."""
    base = FIRST if not _given(bundle) else SERVICES[check_choice(bundle, NAMES, "bundle")]
    return LAB_RUNS.service(getattr(request, "session_hash", None), base)


def defaults_of(s: RetrievalService) -> dict:
    """The values the page starts with for bundle `s` (and sets when a user switches to it)."""
    example = (views.text_examples(s) or [("", "")])[0]
    last = s.objectives[-1]
    seed = lab.base_settings(s.bundle, s.best)[0].seed if lab.has_lab(s.bundle) else 0
    return {"objective": s.best, "objectives": list(s.objectives), "others": others_than(s.best, s)[:1],
            "query": example[0], "query_class": example[1], "a": s.best, "b": last if last != s.best else s.objectives[0],
            "seed": seed}


def own(s: RetrievalService, key: str, value):
    """A parameter a program left at its default means the picked bundle's default.

    gradio_client sends every parameter it is not given with the page's starting value, which is the
    first bundle's; for another bundle such a value may name an objective it lacks or a text it cannot
    encode. Only a value equal to the first bundle's default is replaced, and only where it would not
    fit `s` (a whole objective list: always, so "all" stays all)."""
    first = DEFAULTS[NAMES[0]][key]
    if s.name == NAMES[0] or value != first:  # (a session's service of the first bundle is another object)
        return value
    fits = {"objective": lambda: value in s.objectives, "a": lambda: value in s.objectives,
            "b": lambda: value in s.objectives, "objectives": lambda: False,
            "others": lambda: all(o in s.objectives for o in value),
            "query": lambda: s.encodes, "query_class": lambda: value in s.class_names, "seed": lambda: False}[key]
    if fits():
        return value
    if key == "query_class":  # "" (unknown), never another text's class: the query text may be the one kept
        return ""
    return list(s.objectives) if key == "objectives" else DEFAULTS[s.name][key]  # all of them, a user's lab runs too


def _render(result, s: RetrievalService):
    """A SearchResult -> (image gallery, text table, summary, hits for clicks)."""
    for note in result.notes:
        gr.Warning(note)  # a toast: the answer is still given
    pictures = views.shows_pictures(result, s)
    texts = s.bundle.has_texts
    table = pd.DataFrame(views.text_rows(result, s.bundle.has_pictures, texts), columns=views.text_columns(texts))
    return (views.gallery_value(result, s), table,
            views.summary(result, s.class_names),
            {"bundle": s.name, "pictures": pictures,
             "hits": [{"index": h.index, "modality": h.modality} for h in result.hits]})


def _target(query, same_modality: bool) -> str | None:
    """The modality to search: the query's own when asked, else None (the service's default: the other one)."""
    return query.modality if check_flag(same_modality, "same_modality") else None


def _given(value) -> bool:
    """An optional argument was given: anything but None or blank text (wrong types then meet the checks)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _row(evt: gr.SelectData) -> int | None:
    """The clicked row: galleries give an index, tables a [row, column] pair; anything else is no row."""
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) and evt.index else evt.index
    return index if isinstance(index, int) and not isinstance(index, bool) else None


@user_errors
def show_target(state: dict):
    """Results drawn as pictures (images of a bundle that has them) or as a table (a separate step: the API
    stays plain)."""
    pictures = (state if isinstance(state, dict) else {}).get("pictures", True) is not False
    return gr.Gallery(visible=pictures), gr.Dataframe(visible=not pictures)


def owned(query: str, query_class: str) -> str | None:
    """Which query a class was stated for: the text in the box when the class was set (None: no class)."""
    return query if query_class else None


def own_class(query_class: str, query: str, stated_for: str | None) -> str:
    """The stated class, or "" when it was stated for another text (pasted over, set by code): ✓/✗ and AP
    must never describe a query with another query's class. API calls carry no page state: their class is theirs."""
    return "" if query_class and stated_for is not None and stated_for != query else query_class


def sync_class(query: str, query_class: str, stated_for: str | None):
    """After a search, clear a class the search ignored, so the page shows what was used."""
    return "" if own_class(query_class, query, stated_for) != query_class else gr.skip()


@user_errors
def search_text(query: str, objective: str, k: int, query_class: str = "", same_modality: bool = False,
                stated_for: str | None = None, bundle: str = "", request: gr.Request = None):
    """Text query -> ranked images with captions (or texts with same_modality), in `bundle` (default the first)."""
    s = service(bundle, request)
    q = s.text_query(query, own_class(query_class, query, stated_for))
    return _render(s.search(q, own(s, "objective", objective), k, _target(q, same_modality)), s)


@user_errors
def search_image(image: dict, objective: str, k: int, query_class: str = "", same_modality: bool = False,
                 bundle: str = "", request: gr.Request = None):
    """Uploaded image file -> ranked texts (or images with same_modality)."""
    s = service(bundle, request)
    s.require_encoder()  # a features-only bundle refuses first, before the upload is read
    q = s.image_query(GATE.read(image), query_class)
    return _render(s.search(q, own(s, "objective", objective), k, _target(q, same_modality)), s)


@user_errors
def search_item(item_id: str, modality: str = "image", objective: str = "", k: int = 12, same_modality: bool = False,
                bundle: str = "", request: gr.Request = None):
    """A gallery item (its id; its image or its text) as the query: its class is known, so AP is shown.
    The way to query a features-only bundle."""
    s = service(bundle, request)
    q = s.item_query(item_id, modality)
    return _render(s.search(q, s.objective_or_best(own(s, "objective", objective)), k, _target(q, same_modality)), s)


def _search_row(s: RetrievalService, row, modality, objective, k, same_modality):
    q = s.item_query(row, modality)
    return *_render(s.search(q, objective, k, _target(q, same_modality)), s), None


@user_errors
def search_hit(state: dict, objective: str, k: int, same_modality: bool, bundle: str, evt: gr.SelectData,
               request: gr.Request = None):
    """A click on a result: search with that gallery item (its class is known, so AP is shown)."""
    row, s = _row(evt), service(bundle, request)
    state = state if isinstance(state, dict) else {}
    hits = state.get("hits")
    if not isinstance(hits, list) or row is None or not 0 <= row < len(hits) or not isinstance(hits[row], dict) \
            or state.get("bundle") != s.name:
        raise InputError("that result is no longer on screen: run the search again")
    return _search_row(s, hits[row].get("index"), hits[row].get("modality"), objective, k, same_modality)


@user_errors
def search_browsed(page: dict, objective: str, k: int, same_modality: bool, bundle: str, evt: gr.SelectData,
                   request: gr.Request = None):
    """A click in the gallery list: search with that item (its picture when shown, else its image features)."""
    rows, row, s = (page if isinstance(page, dict) else {}).get("rows"), _row(evt), service(bundle, request)
    if not isinstance(rows, list) or row is None or not 0 <= row < len(rows) or page.get("bundle") != s.name:
        raise InputError("that item is no longer listed: open the gallery list again")
    return _search_row(s, rows[row], "image", objective, k, same_modality)


@user_errors
def browse_page(class_name: str, contains: str, page: int, bundle: str):
    """One page of the gallery list (of a class, ids containing a string): thumbnails when the bundle has
    pictures, else a table; the rows shown, for clicks; and where in the list this page is."""
    s = service(bundle)
    page = max(1, int(page)) if isinstance(page, (int, float)) and page == page else 1
    rows, total = s.items_page(class_name, contains, (page - 1) * PAGE, PAGE)
    last = max(1, -(-total // PAGE))
    if page > last:
        page = last
        rows, total = s.items_page(class_name, contains, (page - 1) * PAGE, PAGE)
    items = s.bundle.items
    thumbs = [(str(s.bundle.image_path(r)), f"{items[r]['id']} · {s.class_names[items[r]['label']]}") for r in rows] \
        if s.bundle.has_pictures else []
    texts = s.bundle.has_texts
    table = [[items[r]["id"], s.class_names[items[r]["label"]], *([items[r]["text"][:120]] if texts else [])]
             for r in rows]
    shown_range = f"items {(page - 1) * PAGE + 1}–{(page - 1) * PAGE + len(rows)} of {total}" if rows else \
        "no item matches: clear the filters"
    return (gr.Gallery(thumbs, visible=s.bundle.has_pictures),
            gr.Dataframe(table, headers=["id", "class", *(["text"] if texts else [])], visible=not s.bundle.has_pictures),
            f"{shown_range} · page {page} of {last}", page, {"bundle": s.name, "rows": rows})


def turn(page, step: int):
    page = int(page) if isinstance(page, (int, float)) and page == page else 1
    return max(1, page + step)


class Pager:
    """A paged, filterable list of the gallery (60 items a page: thumbnails, or a table for a bundle without
    pictures) inside a closed accordion, filled when first opened. Why paged: sending every thumbnail took
    17 s at 12,000 items; a page costs the same at any size. Search uses one to query with an item, the map
    tab one to select an item; `rows` (a State) holds the page's row numbers for their click handlers."""

    def __init__(self, title: str, key: str, action: str):
        with gr.Accordion(title, open=False) as self.box:
            with gr.Row():
                self.klass = gr.Dropdown(class_choices(FIRST, "(all classes)"), value="", label="class", scale=2,
                                         elem_id=f"{key}-class")
                self.contains = gr.Textbox("", label="id contains", scale=2)
                self.prev = gr.Button("◀ previous", scale=1, elem_id=f"{key}-prev")
                self.num = gr.Number(1, label="page", precision=0, minimum=1, scale=1)
                self.next = gr.Button("next ▶", scale=1, elem_id=f"{key}-next")
            self.where = gr.Markdown(elem_id=f"{key}-where")
            self.gallery = gr.Gallery(columns=10, height=420, allow_preview=False, label="Gallery",
                                      elem_id=f"{key}-gallery", visible=FIRST.bundle.has_pictures)
            self.table = gr.Dataframe(headers=["id", "class", "text"], interactive=False, wrap=True,
                                      visible=not FIRST.bundle.has_pictures, elem_id=f"{key}-table",
                                      label=f"Gallery items (click one to {action})")
            self.rows = gr.State({})

    def wire(self, bundle_pick) -> None:
        inputs = [self.klass, self.contains, self.num, bundle_pick]
        outputs = [self.gallery, self.table, self.where, self.num, self.rows]
        quiet = {"api_visibility": "private", "show_progress": "hidden"}
        self.box.expand(browse_page, inputs, outputs, **quiet)
        for trigger in (self.klass.change, self.contains.submit, self.num.submit):
            trigger(browse_page, inputs, outputs, **quiet)
        for button, step in ((self.prev, -1), (self.next, 1)):
            button.click(functools.partial(turn, step=step), self.num, self.num, queue=False, **quiet).then(
                browse_page, inputs, outputs, **quiet)

    def reset(self, s: RetrievalService) -> dict:
        """Updates for a newly picked bundle: closed, filters cleared, emptied (filled again when opened)."""
        return {self.klass: gr.Dropdown(class_choices(s, "(all classes)"), value=""), self.contains: "", self.num: 1,
                self.gallery: gr.Gallery(value=None, visible=s.bundle.has_pictures),
                self.table: gr.Dataframe(value=[], visible=not s.bundle.has_pictures), self.where: "",
                self.rows: {}, self.box: gr.Accordion(open=False)}


@user_errors
def query_info(query: str, objective: str = "", bundle: str = "") -> dict:
    """A text's likely class under `objective` (default: the best), its calibrated confidence, and whether it
    belongs to this gallery's world: {"predicted_class", "confidence", "in_domain", "objective", ...}."""
    s = service(bundle)
    return s.query_info(s.text_query(query), objective or None).to_dict()


@user_errors
def query_info_image(image: dict, objective: str = "", bundle: str = "") -> dict:
    """The same for an uploaded picture."""
    s = service(bundle)
    s.require_encoder()
    return s.query_info(s.image_query(GATE.read(image)), own(s, "objective", objective) or None).to_dict()


def bundles() -> list[dict]:
    """The served bundles, the default first: name, items, classes, backbone, objectives (best first), description
    and what each can answer (features-only bundles take gallery items as queries, not new texts or pictures)."""
    return [{"name": name, **s.describe(), "default": name == NAMES[0]} for name, s in SERVICES.items()]


def resolved(fn):
    """gr.api reads the API's types from the signature; under postponed annotations they are strings
    ("dict"), which it cannot map, so resolve them first."""
    fn.__annotations__ = typing.get_type_hints(fn)
    return fn


def clear():
    """An empty value: a stated class is cleared when the query it was stated for changes."""
    return ""


@user_errors
def compare(query: str, objectives: list[str], k: int, query_class: str = "", item_id: str = "",
            item_modality: str = "image", stated_for: str | None = None, bundle: str = "", progress=gr.Progress(),
            request: gr.Request = None):
    """One query under several objectives -> {objective: result}; a gallery item id overrides the text."""
    s = service(bundle, request)
    query, query_class = own(s, "query", query), own(s, "query_class", query_class)
    q = s.item_query(item_id, item_modality) if _given(item_id) else \
        s.text_query(query, own_class(query_class, query, stated_for))
    results = s.compare(q, own(s, "objectives", objectives) or None, k, progress=progress)
    return {name: r.to_dict() for name, r in results.items()}


@user_errors
def render_columns(results: dict, bundle: str, request: gr.Request = None):
    """The notice about the query (its likely class; outside the world?), then one column per objective."""
    s = service(bundle, request)
    results = results if isinstance(results, dict) else {}
    first = next(iter(results.values()), None)
    info = first.get("info") if isinstance(first, dict) and isinstance(first.get("info"), dict) else None
    # above the columns only when the query lies outside the world (each column says its own likely class)
    out = [views.info_line(info) if info and info.get("in_domain") is False else ""]
    labs = [n for n in results if n not in ALL_OBJECTIVES and n in s.objectives][:LAB_RUNS.per_bundle]
    for name in ALL_OBJECTIVES + labs + [""] * (LAB_RUNS.per_bundle - len(labs)):  # a user's lab runs: last columns
        r = results.get(name)
        if not isinstance(r, dict) or name not in s.objectives:
            out += [gr.Column(visible=False), "", gr.Gallery(value=[]), ""]
            continue
        try:  # the page hands back what /compare returned; anything else is not a result to draw
            res = SearchResult(**{**r, "hits": [Hit(**h) for h in r["hits"]]})
            if any(s.row_of(h.id) != h.index for h in res.hits):  # results of another bundle (switched meanwhile)
                raise ValueError
            pictures = views.gallery_value(res, s, short=True)
        except (TypeError, KeyError, ValueError, IndexError):
            raise InputError("the page sent results this app cannot show: run the comparison again") from None
        out += [gr.Column(visible=True), views.column_header(res),
                gr.Gallery(value=pictures, visible=views.shows_pictures(res, s)),
                views.text_list(res, s.bundle.has_pictures)]
    return out


@user_errors
def disagreements(a: str, b: str, direction: str, bundle: str = "", request: gr.Request = None):
    s = service(bundle, request)
    a, b = own(s, "a", a), own(s, "b", b)
    rows = s.disagreements(a, b, direction, n=25)
    texts = s.bundle.has_texts
    return pd.DataFrame([[r["id"], r["class"], round(r[f"ap_{a}"], 3), round(r[f"ap_{b}"], 3), round(r["difference"], 3),
                          *([r["text"]] if texts else [])] for r in rows],
                        columns=["id", "class", "AP A", "AP B", "A − B", *(["caption"] if texts else [])])


@user_errors
def pick_disagreement(table, direction: str, evt: gr.SelectData):
    row = _row(evt)
    rows = table.values.tolist() if hasattr(table, "values") else table
    if row is None or not isinstance(rows, list) or not 0 <= row < len(rows) or not rows[row]:
        raise InputError("that row is no longer in the table: find the disagreements again")
    return rows[row][0], ("image" if direction == "i2t" else "text")


@user_errors
def embedding_map(objective: str, query: str = "", others: list[str] | None = None, classes: list[str] | None = None,
                  lines: bool = False, k: int = 10, selected: str = "", bundle: str = "", progress=gr.Progress(),
                  request: gr.Request = None):
    """The common space of `objective` (and `others` beside it) with the query and its top-k placed on it."""
    s = service(bundle, request)
    objective, others, query = own(s, "objective", objective), own(s, "others", others), own(s, "query", query)
    names = list(dict.fromkeys([s.check_objective(objective), *check_choices(others, s.objectives, "objectives")]))
    q = s.text_query(query) if _given(query) else None
    chosen = [s.class_names.index(c) for c in check_choices(classes, s.class_names, "classes")]
    lines = check_flag(lines, "lines")
    sel = s.item_query(selected).item if _given(selected) else None
    map_views = []
    for n, name in enumerate(names):
        progress((n, len(names)), desc=f"placing the query on {name}")
        map_views.append(s.map_view(name, q, k))
    return plots.map_figure(map_views, s.bundle.items, chosen or None, lines, sel)


def others_than(objective: str, s: RetrievalService) -> list[str]:
    return [o for o in s.objectives if o != objective]


@user_errors
def side_choices(main: str, chosen: list[str] | None, bundle: str, request: gr.Request = None):
    """'Side by side with' never offers the main objective itself."""
    s = service(bundle, request)
    chosen = chosen if isinstance(chosen, list) else []
    return gr.CheckboxGroup(choices=others_than(main, s), value=[o for o in chosen if o != main and o in s.objectives])


@user_errors
def picked_id(page: dict, evt: gr.SelectData) -> str:
    """A click in the map's gallery list: that item's id (the map is then redrawn with it selected)."""
    rows, row = (page if isinstance(page, dict) else {}).get("rows"), _row(evt)
    if not isinstance(rows, list) or row is None or not 0 <= row < len(rows):
        raise InputError("that item is no longer listed: open the gallery list again")
    return service(page.get("bundle")).bundle.items[rows[row]]["id"]


def heatmap(s: RetrievalService, direction: str = "avg"):
    return plots.heatmap_figure(*s.class_ap(direction), title=f"AP per class ({direction})")


@user_errors
def leaderboard_plots(direction: str, bundle: str = "", request: gr.Request = None):
    return heatmap(service(bundle, request), direction)


def class_choices(s: RetrievalService, none: str = "(unknown)") -> list[tuple[str, str]]:
    return [(none, "")] + [(c, c) for c in s.class_names]


LAB_RUNS = lab.SessionRuns()
LAB_LIMIT = 1  # lab runs training at once (2 cores): the others wait in gradio's queue, their position shown


def lab_settings(objective: str, bundle: str) -> tuple:
    """The bundle's own settings for `objective` (a hybrid, or one it did not train: its best run's), as the
    lab's boxes show them: lr, batch size, epochs, patience, embed dim, hidden dim, seed, the options' defaults."""
    train, heads = lab.base_settings(service(bundle).bundle, lab.check_objective(objective))
    options = ",".join(f"{k}={v:g}" for k, v in option_defaults(train.objective).items())
    return (train.lr, train.batch_size, train.epochs, train.patience, heads.embed_dim, heads.hidden_dim, train.seed,
            f"defaults: {options or 'none'}")


def lab_defaults(objective: str, bundle: str):
    """The boxes follow the objective picked; a name being typed (not an objective yet) changes nothing: Train
    says what is wrong with it."""
    try:
        *values, placeholder = lab_settings(objective, bundle)
    except InputError:
        return (gr.skip(),) * 8
    return *values, gr.Textbox(placeholder=placeholder)


@dataclass
class LabJob:
    """A lab run under way in a thread: what the request that started it needs to follow and finish it."""
    thread: threading.Thread
    history: list
    box: dict
    base: RetrievalService
    session: str | None
    stop: threading.Event
    epochs: int


def _start_lab(objective, options, text_fraction, image_fraction, seed, bundle, request, **hyper) -> LabJob:
    """Check the settings, then train in a thread (the lab's lock inside `lab.train_lab` makes runs take turns)."""
    base = service(bundle)  # the bundle's own service: a run trains on the bundle, whatever the session holds
    if not lab.has_lab(base.bundle):
        raise InputError(f"bundle '{base.name}' has no lab features (built before the lab): run "
                         f"'python -m cmr_demo.bundle add-lab DIR' on it")
    seed = own(base, "seed", seed)
    train, heads = lab.settings_for(base.bundle, objective, options, text_fraction=text_fraction,
                                    image_fraction=image_fraction, seed=seed, **hyper)
    session = getattr(request, "session_hash", None)
    stop = LAB_RUNS.new_stop(session)
    name = LAB_RUNS.next_name(session, train.objective, lab.changes(base.bundle, train, heads))
    history, box = [], {}

    def work():
        try:
            box["run"] = lab.train_lab(base.bundle, train, heads, name, on_epoch=history.append, stop=stop)
        except Exception as err:  # noqa: BLE001 (handed to the request, which reports it)
            box["error"] = err
        finally:
            LAB_RUNS.done(session, stop)
    thread = threading.Thread(target=work, name="lab-run", daemon=True)
    thread.start()
    return LabJob(thread, history, box, base, session, stop, train.epochs)


def _finish_lab(job: LabJob) -> dict:
    """The run's answer, once its thread has ended; the run joins its session's service."""
    error = job.box.get("error")
    if isinstance(error, InputError):
        raise error
    if error is not None:
        log.error("lab run failed", exc_info=error)
        raise gr.Error("the lab run failed inside the app; it was logged. Try other settings.")
    run = job.box["run"]
    LAB_RUNS.add(job.session, job.base, run)
    return views.lab_answer(run, job.base.bundle.manifest["objectives"].get(run.objective))


@user_errors
def lab_train(objective: str, options: str = "", text_fraction: float = 1.0, image_fraction: float = 1.0,
              seed: int = 0, bundle: str = "", request: gr.Request = None) -> dict:
    """Train heads live on the bundle's own features: `objective` (a registry name or a hybrid like
    'pcl+0.5*tl'), `options` like 'margin=0.3,temperature=0.5' ("" = defaults), the modality-imbalance
    fractions in (0, 1], a seed; everything else as the bundle's run. Returns the run's test metrics
    (i2t_map, t2i_map, avg_map, epochs, seconds, ...); it joins this session's compare/leaderboard/maps."""
    job = _start_lab(objective, options, text_fraction, image_fraction, seed, bundle, request)
    job.thread.join()  # a sync call gradio cannot interrupt; the 90 s cap bounds it
    return _finish_lab(job)


@user_errors
def lab_page(objective, options, text_fraction, image_fraction, seed, lr, batch_size, epochs, patience, embed_dim,
             hidden_dim, bundle, request: gr.Request = None, progress=gr.Progress()):
    """The Lab tab's run: the curve and progress live, then the result (the objective lists follow in a next step,
    for the bundle picked by then)."""
    job = _start_lab(objective, options, text_fraction, image_fraction, seed, bundle, request, lr=lr,
                     batch_size=batch_size, epochs=epochs, patience=patience, embed_dim=embed_dim, hidden_dim=hidden_dim)
    stored = job.base.bundle.objectives.get(lab.check_objective(objective))
    reference = ((stored.metrics.get("val") or {}).get("avg_map") if stored is not None else None)  # same split
    try:
        while job.thread.is_alive():
            job.thread.join(0.5)
            if not job.history:
                progress(None, desc="waiting for the lab (one run trains at a time)")
                continue
            progress((len(job.history), job.epochs), desc=f"epoch {len(job.history)} (stops early when the "
                     f"validation mAP stops improving)")
            yield plots.lab_figure(job.history, "training…", reference), \
                f"training · epoch {len(job.history)} · loss {job.history[-1]['loss']:.4f}"
    finally:  # the page went away or the event was cancelled: stop the run instead of training for no one
        if job.thread.is_alive():
            job.stop.set()
    answer = _finish_lab(job)
    yield plots.lab_figure(job.history, answer["name"], reference), views.lab_markdown(answer)


def lab_stop(request: gr.Request = None):
    """Stop this session's lab run within one batch, keeping its best epoch so far."""
    LAB_RUNS.stop(getattr(request, "session_hash", None))


@user_errors
def refresh_objectives(bundle: str, request: gr.Request = None) -> dict:
    """The objective lists and leaderboard for the bundle picked now (a lab run may have joined them)."""
    return objective_components(service(bundle, request))


EXAMPLES = {name: views.text_examples(s) for name, s in SERVICES.items()}  # (text, class) pairs per bundle
DEFAULTS = {name: defaults_of(s) for name, s in SERVICES.items()}

with ServedBlocks(title="CLIP4CMR demo") as demo:
    with gr.Row(equal_height=False):
        header_md = gr.Markdown(views.header_markdown(FIRST), elem_id="header-card")
        bundle_pick = gr.Dropdown(NAMES, value=NAMES[0], label="Bundle", scale=0, min_width=200, elem_id="bundle-pick",
                                  visible=len(NAMES) > 1, info="switch the gallery and models")
    class_gallery = gr.Gallery(views.class_examples(FIRST), columns=10, height=150, allow_preview=False,
                               label="One gallery picture of each class", elem_id="class-examples",
                               object_fit="contain", visible=FIRST.bundle.has_pictures)
    with gr.Tab("Search"):
        notice_md = gr.Markdown(views.features_only_notice(FIRST), elem_id="features-only-notice")
        with gr.Row(visible=FIRST.encodes) as query_row:
            with gr.Column(scale=3):
                text_in = gr.Textbox(label="Text query", placeholder=DEFAULTS[NAMES[0]]["query"], lines=1)
                text_class = gr.Dropdown(class_choices(FIRST), value="",
                                         label="Class of this text (optional: shows AP, P@k)")
                text_btn = gr.Button("Search images", variant="primary", elem_id="search-text-btn")
            with gr.Column(scale=2):
                # image_mode=None: the file reaches inputs.load_image as uploaded (gradio's RGB conversion would
                # decode bombs before our size check, and clip 16-bit images and drop transparency badly)
                image_in = gr.Image(type="filepath", image_mode=None, label="Image query", height=180,
                                    sources=["upload", "clipboard"])
                image_class = gr.Dropdown(class_choices(FIRST), value="", label="Class of this image (optional)")
                image_btn = gr.Button("Search texts", elem_id="search-image-btn")
        with gr.Row():
            item_in = gr.Textbox("", label="Gallery item id (its class is known: AP is shown)", placeholder=FIRST.bundle.items[0]["id"],
                                 elem_id="item-query", scale=2)
            item_modality = gr.Radio(["image", "text"], value="image", label="its", scale=1)
            item_btn = gr.Button("Search with this item", elem_id="search-item-btn", scale=1)
        with gr.Row():
            objective = gr.Dropdown(FIRST.objectives, value=FIRST.best, label="Objective")
            k = gr.Slider(1, MAX_K, value=12, step=1, label="Top k")
            same = gr.Checkbox(False, label="Same modality (text → texts, image → images)")
        summary_md = gr.Markdown(elem_id="search-summary", label="summary")
        results_gallery = gr.Gallery(label="Image results (click one to search with it)", columns=6, height="auto",
                                     elem_id="results-gallery", allow_preview=False)
        results_table = gr.Dataframe(headers=views.TEXT_COLUMNS, label="Results (click a row to search with it)",
                                     interactive=False, visible=False, wrap=True, elem_id="results-table",
                                     column_widths=["60px", "76px", "96px", "80px", "auto", "200px"])
        hits = gr.State({})
        example_boxes, image_example_sets = {}, []
        for name, s in SERVICES.items():  # each bundle's own examples, shown while it is the bundle picked
            with gr.Column(visible=name == NAMES[0]) as box:
                text_examples = [list(e) for e in EXAMPLES[name]]
                if text_examples:
                    gr.Examples(text_examples, inputs=[text_in, text_class], label=f"Text examples of {name} "
                                "(with their class)")
                if s.bundle.has_pictures and s.encodes:
                    image_example_sets.append(gr.Examples([[str(s.bundle.image_path(i))] for i in range(0, min(s.size, 60), 6)],
                                inputs=[image_in], label=f"Image examples of {name}"))
            example_boxes[name] = box
        browse = Pager("Browse the gallery: click an item to search with it", "browse", "search with it")
        info_json = gr.JSON(visible=False)
        info_btn = gr.Button(visible=False)
        # the text the stated class belongs to, set whenever the class is set (a State outside a Tab would
        # end the group of tabs: keep it inside)
        text_stated = gr.State(None)
    out = [results_gallery, results_table, summary_md, hits]
    search_inputs = [text_in, objective, k, text_class, same, text_stated, bundle_pick]
    events = [(text_btn.click, search_text, search_inputs, out, "search_text"),
              (text_in.submit, search_text, search_inputs, out, None),
              (image_btn.click, search_image, [image_in, objective, k, image_class, same, bundle_pick], out,
               "search_image"),
              (item_btn.click, search_item, [item_in, item_modality, objective, k, same, bundle_pick], out,
               "search_item"),
              (item_in.submit, search_item, [item_in, item_modality, objective, k, same, bundle_pick], out, None),
              (results_gallery.select, search_hit, [hits, objective, k, same, bundle_pick], [*out, image_in], None),
              (results_table.select, search_hit, [hits, objective, k, same, bundle_pick], [*out, image_in], None),
              (browse.gallery.select, search_browsed, [browse.rows, objective, k, same, bundle_pick], [*out, image_in],
               None),
              (browse.table.select, search_browsed, [browse.rows, objective, k, same, bundle_pick], [*out, image_in],
               None)]
    for trigger, fn, inputs, outputs, api_name in events:
        # public endpoints take raw values: the app checks each itself (gradio's checks answer in its own
        # words, and its Image preprocessing would open a path named by the client)
        visibility = {"api_name": api_name, "preprocess": False} if api_name else {"api_visibility": "private"}
        # queued (not queue=False): outside the queue gradio drops gr.Error's text and the page shows a bare
        # "Error" badge; the queue's round trip costs a few ms, which a user does not notice
        event = trigger(fn, inputs, outputs, **visibility).then(
            show_target, hits, [results_gallery, results_table], queue=False, api_visibility="private",
            show_progress="hidden")
        if fn is search_text:
            event.then(sync_class, [text_in, text_class, text_stated], text_class, queue=False,
                       api_visibility="private", show_progress="hidden")
    # A stated class belongs to the query it was stated for (✓/✗ and AP stay true). Typing clears it at once
    # (`input`: an example that sets a text and its class keeps both); any other change of the text (paste,
    # code) is caught at search time by comparing with the text recorded when the class was set. A new
    # picture in the image box, by upload, example or a click on a result, clears the image's class.
    text_in.input(clear, None, text_class, queue=False, api_visibility="private", show_progress="hidden")
    text_class.change(owned, [text_in, text_class], text_stated, queue=False, api_visibility="private",
                      show_progress="hidden")
    image_in.change(clear, None, image_class, queue=False, api_visibility="private", show_progress="hidden")
    info_btn.click(query_info_image, [image_in, objective, bundle_pick], info_json, api_name="query_info_image",
                   preprocess=False)
    browse.wire(bundle_pick)

    with gr.Tab("Compare objectives"):
        ex0 = DEFAULTS[NAMES[0]]["query"], DEFAULTS[NAMES[0]]["query_class"]
        with gr.Row():
            cmp_query = gr.Textbox(label="Text query", value=ex0[0], scale=3, visible=FIRST.encodes)
            cmp_class = gr.Dropdown(class_choices(FIRST), value=ex0[1], label="Class of the query (optional)",
                                    visible=FIRST.encodes)
            cmp_item = gr.Textbox("" if FIRST.encodes else FIRST.bundle.items[0]["id"],
                                  label=ITEM_LABEL if FIRST.encodes else "Gallery item id",
                                  placeholder=FIRST.bundle.items[0]["id"])
            cmp_modality = gr.Radio(["image", "text"], value="image", label="item modality")
        with gr.Row():
            cmp_objs = gr.CheckboxGroup(FIRST.objectives, value=FIRST.objectives, label="Objectives", scale=3)
            cmp_k = gr.Slider(1, 24, value=6, step=1, label="Top k")
            cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
        cmp_json = gr.JSON(visible=False)
        cmp_notice = gr.Markdown(elem_id="compare-notice")
        col_parts = [cmp_notice]
        with gr.Row(equal_height=False):
            for name in ALL_OBJECTIVES + [""] * LAB_RUNS.per_bundle:  # then one column per lab run a user keeps
                with gr.Column(min_width=190, visible=False) as col:
                    col_parts += [col, gr.Markdown(f"### {name}"),
                                  gr.Gallery(columns=2, height="auto", allow_preview=False, show_label=False), gr.Markdown()]
        gr.Markdown("## Leaderboard (test split of the bundle)")
        with gr.Row():
            board = gr.Dataframe(views.leaderboard_rows(FIRST), headers=["objective", "I→T mAP", "T→I mAP", "average",
                                                                     "best epoch", "selected on"], interactive=False)
            board_plot = gr.Plot(plots.leaderboard_figure(FIRST.leaderboard()))
        heat_dir = gr.Radio(["avg", "i2t", "t2i"], value="avg", label="direction")
        heatmap_plot = gr.Plot(heatmap(FIRST))
        gr.Markdown("## Where two objectives disagree most (click a row to compare on it)")
        with gr.Row():
            dis_a = gr.Dropdown(FIRST.objectives, value=DEFAULTS[NAMES[0]]["a"], label="objective A")
            dis_b = gr.Dropdown(FIRST.objectives, value=DEFAULTS[NAMES[0]]["b"], label="objective B")
            dis_dir = gr.Radio(["t2i", "i2t"], value="t2i", label="query direction")
            dis_btn = gr.Button("Find disagreements")
        dis_table = gr.Dataframe(headers=["id", "class", "AP A", "AP B", "A − B", "caption"], interactive=False, wrap=True)
        cmp_stated = gr.State(None)  # None for API calls (their class is theirs); a page load sets it below
    cmp_inputs = [cmp_query, cmp_objs, cmp_k, cmp_class, cmp_item, cmp_modality, cmp_stated, bundle_pick]
    cmp_query.input(clear, None, cmp_class, queue=False, api_visibility="private", show_progress="hidden")
    cmp_class.change(owned, [cmp_query, cmp_class], cmp_stated, queue=False, api_visibility="private",
                     show_progress="hidden")
    cmp_btn.click(compare, cmp_inputs, cmp_json, api_name="compare", preprocess=False).then(
        render_columns, [cmp_json, bundle_pick], col_parts, api_visibility="private").then(
        sync_class, [cmp_query, cmp_class, cmp_stated], cmp_class, queue=False, api_visibility="private",
        show_progress="hidden")
    heat_dir.change(leaderboard_plots, [heat_dir, bundle_pick], heatmap_plot, api_visibility="private")
    dis_btn.click(disagreements, [dis_a, dis_b, dis_dir, bundle_pick], dis_table, api_name="disagreements",
                  preprocess=False)
    dis_table.select(pick_disagreement, [dis_table, dis_dir], [cmp_item, cmp_modality], api_visibility="private").then(
        compare, cmp_inputs, cmp_json, api_visibility="private").then(
        render_columns, [cmp_json, bundle_pick], col_parts, api_visibility="private")

    with gr.Tab("Embedding map"):
        with gr.Row():
            map_obj = gr.Dropdown(FIRST.objectives, value=FIRST.best, label="Objective")
            map_others = gr.CheckboxGroup(others_than(FIRST.best, FIRST), value=others_than(FIRST.best, FIRST)[:1],
                                          label="Side by side with", scale=3)
        with gr.Row():
            map_query = gr.Textbox(label="Query placed on the maps (optional)", value=ex0[0], scale=3,
                                   visible=FIRST.encodes)
            map_k = gr.Slider(1, 50, value=10, step=1, label="Top k highlighted")
            map_lines = gr.Checkbox(False, label="Lines image ↔ caption")
        with gr.Row():
            map_classes = gr.CheckboxGroup(FIRST.class_names, label="Show only these classes (none = all)", scale=3)
            map_selected = gr.Textbox("", label="Selected gallery item id",
                                      placeholder=f"e.g. {FIRST.bundle.items[0]['id']}, or pick one below")
            map_btn = gr.Button("Draw maps", variant="primary", elem_id="map-btn")
        map_plot = gr.Plot(elem_id="map-plot")
        pick = Pager("Pick a gallery item to highlight it on every map", "pick", "highlight it")
    map_inputs = [map_obj, map_query, map_others, map_classes, map_lines, map_k, map_selected, bundle_pick]
    map_obj.change(side_choices, [map_obj, map_others, bundle_pick], map_others, queue=False, api_visibility="private",
                   show_progress="hidden")
    map_btn.click(embedding_map, map_inputs, map_plot, api_name="embedding_map", preprocess=False)
    for listing in (pick.gallery, pick.table):
        listing.select(picked_id, pick.rows, map_selected, api_visibility="private").then(
            embedding_map, map_inputs, map_plot, api_visibility="private")
    text_btn.click(lambda q: q, text_in, map_query, api_visibility="private")  # the map follows the search query
    pick.wire(bundle_pick)

    with gr.Tab("Objective lab"):
        gr.Markdown("Train one pair of heads **live** on this bundle's own features: any objective (or a hybrid "
                    "like `pcl+0.5*tl`), its options, the share of training pairs that keep their text or image "
                    "(the paper's modality-imbalance setting), a seed and the hyper-parameters. The boxes start "
                    "at the bundle's own settings, which reproduce its stored metrics. The run joins Compare, the "
                    "leaderboard and the maps **for you only** (the bundle is not changed); runs train one at a "
                    f"time for everyone, each for at most {lab.MAX_SECONDS:.0f} s.", elem_id="lab-intro")
        lab0 = lab_settings(FIRST.best, NAMES[0]) if lab.has_lab(FIRST.bundle) else None
        with gr.Row():
            lab_objective = gr.Dropdown(list(lab.OBJECTIVES) + ["pcl+0.5*tl"], value=FIRST.best,
                                        allow_custom_value=True, label="Objective (or a hybrid like pcl+0.5*tl)",
                                        elem_id="lab-objective")
            lab_options = gr.Textbox("", label="Options (KEY=VALUE, comma-separated; empty = defaults)",
                                     placeholder=lab0[7] if lab0 else "", elem_id="lab-options")
            lab_seed = gr.Number(lab0[6] if lab0 else 0, precision=0, label="seed", minimum=0)
        with gr.Row():
            lab_text = gr.Slider(0.05, 1, value=1, step=0.05, label="share of training pairs that keep their text")
            lab_image = gr.Slider(0.05, 1, value=1, step=0.05, label="share of training pairs that keep their image")
        with gr.Accordion("Hyper-parameters (the bundle's own settings for this objective)", open=False):
            with gr.Row():
                lab_lr = gr.Number(lab0[0] if lab0 else 1e-4, label="learning rate")
                lab_batch = gr.Number(lab0[1] if lab0 else 300, precision=0, label="batch size")
                lab_epochs = gr.Number(lab0[2] if lab0 else 500, precision=0, label="max epochs")
                lab_patience = gr.Number(lab0[3] if lab0 else 10, precision=0, label="patience (epochs)")
                lab_embed = gr.Number(lab0[4] if lab0 else 256, precision=0, label="embedding dim")
                lab_hidden = gr.Number(lab0[5] if lab0 else 256, precision=0, label="hidden dim")
        with gr.Row():
            lab_btn = gr.Button("Train", variant="primary", elem_id="lab-train-btn")
            lab_stop_btn = gr.Button("Stop (keep the best epoch so far)", elem_id="lab-stop-btn")
        lab_plot = gr.Plot(label="training loss and validation mAP per epoch", elem_id="lab-plot")
        lab_md = gr.Markdown(elem_id="lab-result")
        lab_json = gr.JSON(visible=False)
        lab_api_btn = gr.Button(visible=False)
    lab_inputs = [lab_objective, lab_options, lab_text, lab_image, lab_seed, lab_lr, lab_batch, lab_epochs,
                  lab_patience, lab_embed, lab_hidden, bundle_pick]
    lab_objective.change(lab_defaults, [lab_objective, bundle_pick],
                         [lab_lr, lab_batch, lab_epochs, lab_patience, lab_embed, lab_hidden, lab_seed, lab_options],
                         api_visibility="private", show_progress="hidden")
    lab_stop_btn.click(lab_stop, None, None, queue=False, api_visibility="private", show_progress="hidden")
    lab_api_btn.click(lab_train, [lab_objective, lab_options, lab_text, lab_image, lab_seed, bundle_pick], lab_json,
                      api_name="lab_train", preprocess=False, concurrency_id="lab", concurrency_limit=LAB_LIMIT)

    with gr.Tab("About"):
        about_md = gr.Markdown(views.about_markdown(FIRST))
        if STUDY_FIGURES:  # cheap to show: a few PNGs the studies already wrote (absent outside a checkout)
            with gr.Accordion("The paper's studies, as measured (bench/results/study)", open=False):
                for path in STUDY_FIGURES:
                    gr.Image(str(path), label=f"{path.stem} on {path.parent.name}", interactive=False)

    def objective_components(s: RetrievalService) -> dict:
        """The components that list the bundle's objectives (a user's lab runs included) or show its leaderboard."""
        d = DEFAULTS[s.name]
        others = others_than(s.best, s)
        return {objective: gr.Dropdown(s.objectives, value=s.best),
                cmp_objs: gr.CheckboxGroup(s.objectives, value=s.objectives),
                board: views.leaderboard_rows(s), board_plot: plots.leaderboard_figure(s.leaderboard()),
                heat_dir: "avg", heatmap_plot: heatmap(s),
                dis_a: gr.Dropdown(s.objectives, value=d["a"]), dis_b: gr.Dropdown(s.objectives, value=d["b"]),
                map_obj: gr.Dropdown(s.objectives, value=s.best), map_others: gr.CheckboxGroup(others, value=others[:1])}

    def switch_bundle(bundle: str, request: gr.Request = None) -> dict:
        """Every component that shows the picked bundle, set for it; results of the previous one cleared."""
        s = service(bundle, request)
        d = DEFAULTS[s.name]
        ex = (d["query"], d["query_class"])
        first_id = s.bundle.items[0]["id"]
        classes = class_choices(s)
        return {
            header_md: views.header_markdown(s),
            class_gallery: gr.Gallery(views.class_examples(s), visible=s.bundle.has_pictures),
            notice_md: views.features_only_notice(s), query_row: gr.Row(visible=s.encodes),
            text_in: gr.Textbox(value="", placeholder=ex[0]), text_class: gr.Dropdown(classes, value=""),
            image_in: None, image_class: gr.Dropdown(classes, value=""), text_stated: None,
            item_in: gr.Textbox(value="", placeholder=first_id),
            summary_md: "", results_gallery: gr.Gallery(value=[], visible=s.bundle.has_pictures),
            results_table: gr.Dataframe(value=pd.DataFrame(columns=views.text_columns(s.bundle.has_texts)),
                                        visible=not s.bundle.has_pictures), hits: {},
            **{box: gr.Column(visible=name == s.name) for name, box in example_boxes.items()},
            **browse.reset(s), **pick.reset(s),
            cmp_query: gr.Textbox(value=ex[0], visible=s.encodes), cmp_stated: ex[0] if ex[1] else None,
            cmp_class: gr.Dropdown(classes, value=ex[1], visible=s.encodes),
            cmp_item: gr.Textbox(value="" if s.encodes else first_id, placeholder=first_id,
                                 label=ITEM_LABEL if s.encodes else "Gallery item id"),
            cmp_json: None, cmp_notice: "",
            **{part: gr.Column(visible=False) for part in col_parts[1::4]},
            dis_table: [],
            map_query: gr.Textbox(value=ex[0] if s.encodes else "", visible=s.encodes),
            map_classes: gr.CheckboxGroup(s.class_names, value=[]),
            map_selected: gr.Textbox(value="", placeholder=f"e.g. {first_id}, or pick one below"),
            about_md: views.about_markdown(s), **objective_components(s),
            lab_objective: s.best, lab_options: "", lab_text: 1, lab_image: 1, lab_plot: None, lab_md:
                "" if lab.has_lab(s.bundle) else f"⚠️ bundle '{s.name}' has no lab features (built before the lab)"}

    demo.load(embedding_map, map_inputs, map_plot, api_visibility="private")
    # in a browser, Compare opens on the first example with its class: that class was stated for that text
    demo.load(lambda: ex0[0] if ex0[1] else None, None, cmp_stated, api_visibility="private", queue=False)
    gr.api(resolved(query_info), api_name="query_info")  # after the tabs: between them it split the tab row
    gr.api(resolved(bundles), api_name="bundles")

# which components a switch sets: asked outside the Blocks context (inside it, every update built by the
# call would be rendered as a new component); the listener then joins the page
SWITCHED = list(switch_bundle(NAMES[0]))
LISTS_OBJECTIVES = list(objective_components(FIRST))
with demo:
    bundle_pick.change(user_errors(switch_bundle), bundle_pick, SWITCHED, api_visibility="private",
                       show_progress="minimal").then(embedding_map, map_inputs, map_plot, api_visibility="private")
    lab_btn.click(lambda: (None, ""), None, [lab_plot, lab_md], queue=False, api_visibility="private",
                  show_progress="hidden").then(
        lab_page, lab_inputs, [lab_plot, lab_md], api_visibility="private", preprocess=False,
                  concurrency_id="lab", concurrency_limit=LAB_LIMIT).success(
        refresh_objectives, bundle_pick, LISTS_OBJECTIVES, api_visibility="private", show_progress="hidden")

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
demo.state_session_capacity = SESSIONS  # a `launch` option; the mounted app reads the attribute
# query pictures: only files this app received (uploads, its own examples) are opened (cmr_demo.serve.uploads)
EXAMPLE_FILES = frozenset(sample[0]["path"] for examples in image_example_sets for sample in examples.dataset.samples
                          if isinstance(sample[0], dict))
GATE = UploadGate(image_in.GRADIO_CACHE, lambda: demo.upload_file_set, lambda: EXAMPLE_FILES,
                  registries=lambda: demo.temp_file_sets)


def launch_options() -> dict:
    """What gradio is served with: only the gallery images as files, no tracebacks to clients."""
    return {"allowed_paths": [str(Path(s.bundle.folder).resolve() / "gallery" / "images") for s in SERVICES.values()],
            "show_error": False}


def make_app():
    """The FastAPI app serving the UI (cmr_demo.serve.webserver: upload limit, /media, gradio mounted at '/')."""
    from cmr_demo.serve.webserver import build_app, every, trim_memory_every
    trim_memory_every(10.0)
    # not gradio's delete_cache: it skips files outside its sets (parts of interrupted uploads) and iterates
    # the sets while requests change them
    every(SWEEP[0], lambda: sweep(GATE.folder, SWEEP[1], kept_files, lambda: demo.temp_file_sets), "upload-sweeper")
    return build_app(demo, lambda: SERVICES, MAX_IMAGE_BYTES, **launch_options())


def kept_files() -> set[str]:
    """Files the page shows from gradio's folder for as long as the app runs: examples, the header's pictures."""
    return set(EXAMPLE_FILES).union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values()))


if __name__ == "__main__":
    import uvicorn
    logging.basicConfig(level=logging.INFO)
    print(f"* serving {', '.join(NAMES)} at http://{ARGS.host}:{ARGS.port}/", flush=True)
    uvicorn.run(make_app(), host=ARGS.host, port=ARGS.port, log_level="warning")
