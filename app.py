"""CLIP4CMR demo: cross-modal search, objectives side by side, embedding maps. Layout and wiring only.

    python app.py [--bundle assets/demo] [--host 127.0.0.1] [--port 7860]

Behaviour lives in `cmr_demo.service` (plain Python, unit-tested); this file turns its results into
component values (`cmr_demo.views`, `cmr_demo.plots`) and user errors into `gr.Error`. `demo` is built
at import so `gradio app.py` reload mode works; the bundle is loaded once, before the first request.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import typing
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# gradio's upload and cache folder, private to this app (the sweeper below deletes old files in it)
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(), "cmr-demo-gradio"))

import gradio as gr  # noqa: E402

from cmr_demo import plots, views  # noqa: E402
from cmr_demo.inputs import MAX_IMAGE_BYTES, MAX_K, InputError, check_choices, check_flag  # noqa: E402
from cmr_demo.service import Hit, RetrievalService, SearchResult  # noqa: E402
from cmr_demo.uploads import FILE_SHAPE, NOT_UPLOADED, UploadGate, sweep  # noqa: E402

log = logging.getLogger("cmr_demo.app")
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "demo"
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
    p.add_argument("--bundle", default=os.environ.get("CMR_BUNDLE", str(DEFAULT_BUNDLE)),
                   help="bundle folder (python -m cmr_demo.bundle build ...); default assets/demo or $CMR_BUNDLE")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    return p.parse_args(argv)


def load_service(folder: str) -> RetrievalService:
    from cmr_demo.bundle_loader import load_bundle
    from cmr_demo.checkpoint import CheckpointError
    if not (Path(folder) / "manifest.json").is_file():
        raise SystemExit(f"error: no bundle at '{folder}' (manifest.json missing). Build one with "
                         f"'python -m cmr_demo.bundle build ... --out DIR' and pass --bundle DIR")
    try:
        return RetrievalService(load_bundle(folder))
    except (CheckpointError, ValueError, OSError) as err:
        raise SystemExit(f"error: bundle '{folder}' cannot be served: {err}") from None


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


def user_errors(fn):
    """InputError -> gr.Error with its message; anything else is logged and reported without a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as err:  # the user's mistake, not the app's: no traceback in the server log
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error:
            raise
        except Exception:
            log.exception("request failed in %s", fn.__name__)
            raise gr.Error("the request failed inside the app; it was logged. Try another query.") from None
    return wrapper


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
SERVICE = load_service(ARGS.bundle)
OBJECTIVES = SERVICE.objectives
BEST = SERVICE.best
CLASSES = SERVICE.class_names
ITEMS = SERVICE.bundle.items
EXAMPLES = views.text_examples(SERVICE)  # (text, class) pairs the bundle offers, else a few of its captions


def _render(result):
    """A SearchResult -> (image gallery, text table, summary, hits for clicks)."""
    for note in result.notes:
        gr.Warning(note)  # a toast: the answer is still given
    return (views.gallery_value(result, SERVICE), views.text_rows(result), views.summary(result, CLASSES),
            {"target": result.target, "hits": [{"index": h.index, "modality": h.modality} for h in result.hits]})


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
    """Only the result component of the searched modality is visible (a separate step: the API stays plain)."""
    image = (state if isinstance(state, dict) else {}).get("target", "image") == "image"
    return gr.Gallery(visible=image), gr.Dataframe(visible=not image)


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
                stated_for: str | None = None):
    """Text query -> ranked images with captions (or texts with same_modality)."""
    q = SERVICE.text_query(query, own_class(query_class, query, stated_for))
    return _render(SERVICE.search(q, objective, k, _target(q, same_modality)))


@user_errors
def search_image(image: dict, objective: str, k: int, query_class: str = "", same_modality: bool = False):
    """Uploaded image file -> ranked texts (or images with same_modality)."""
    q = SERVICE.image_query(GATE.read(image), query_class)
    return _render(SERVICE.search(q, objective, k, _target(q, same_modality)))


@user_errors
def search_hit(state: dict, objective: str, k: int, same_modality: bool, evt: gr.SelectData):
    """A click on a result: search with that gallery item (its class is known, so AP is shown)."""
    row = _row(evt)
    hits = (state if isinstance(state, dict) else {}).get("hits")
    if not isinstance(hits, list) or row is None or not 0 <= row < len(hits) or not isinstance(hits[row], dict):
        raise InputError("that result is no longer on screen: run the search again")
    q = SERVICE.item_query(hits[row].get("index"), hits[row].get("modality"))
    return *_render(SERVICE.search(q, objective, k, _target(q, same_modality))), None


@user_errors
def search_browsed(objective: str, k: int, same_modality: bool, evt: gr.SelectData):
    q = SERVICE.item_query(_row(evt), "image")
    return *_render(SERVICE.search(q, objective, k, _target(q, same_modality))), None


@user_errors
def query_info(query: str, objective: str = "") -> dict:
    """A text's likely class under `objective` (default: the best), its calibrated confidence, and whether it
    belongs to this gallery's world: {"predicted_class", "confidence", "in_domain", "objective", ...}."""
    return SERVICE.query_info(SERVICE.text_query(query), objective or None).to_dict()


@user_errors
def query_info_image(image: dict, objective: str = "") -> dict:
    """The same for an uploaded picture."""
    return SERVICE.query_info(SERVICE.image_query(GATE.read(image)), objective or None).to_dict()


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
            item_modality: str = "image", stated_for: str | None = None, progress=gr.Progress()):
    """One query under several objectives -> {objective: result}; a gallery item id overrides the text."""
    q = SERVICE.item_query(item_id, item_modality) if _given(item_id) else \
        SERVICE.text_query(query, own_class(query_class, query, stated_for))
    results = SERVICE.compare(q, objectives or None, k, progress=progress)
    return {name: r.to_dict() for name, r in results.items()}


@user_errors
def render_columns(results: dict):
    """The notice about the query (its likely class; outside the world?), then one column per objective."""
    results = results if isinstance(results, dict) else {}
    first = next(iter(results.values()), None)
    out = [views.info_line(first.get("info")) if isinstance(first, dict) and isinstance(first.get("info"), dict) else ""]
    for name in OBJECTIVES:
        r = results.get(name)
        if not isinstance(r, dict):
            out += [gr.Column(visible=False), "", gr.Gallery(value=[]), ""]
            continue
        try:  # the page hands back what /compare returned; anything else is not a result to draw
            res = SearchResult(**{**r, "hits": [Hit(**h) for h in r["hits"]]})
        except (TypeError, KeyError, ValueError):
            raise InputError("the page sent results this app cannot show: run the comparison again") from None
        out += [gr.Column(visible=True), views.column_header(res),
                gr.Gallery(value=views.gallery_value(res, SERVICE, short=True), visible=res.target == "image"),
                views.text_list(res)]
    return out


@user_errors
def disagreements(a: str, b: str, direction: str):
    rows = SERVICE.disagreements(a, b, direction, n=25)
    return [[r["id"], r["class"], round(r[f"ap_{a}"], 3), round(r[f"ap_{b}"], 3), round(r["difference"], 3), r["text"]]
            for r in rows]


@user_errors
def pick_disagreement(table, direction: str, evt: gr.SelectData):
    row = _row(evt)
    rows = table.values.tolist() if hasattr(table, "values") else table
    if row is None or not isinstance(rows, list) or not 0 <= row < len(rows) or not rows[row]:
        raise InputError("that row is no longer in the table: find the disagreements again")
    return rows[row][0], ("image" if direction == "i2t" else "text")


@user_errors
def embedding_map(objective: str, query: str = "", others: list[str] | None = None, classes: list[str] | None = None,
                  lines: bool = False, k: int = 10, selected: str = "", progress=gr.Progress()):
    """The common space of `objective` (and `others` beside it) with the query and its top-k placed on it."""
    names = list(dict.fromkeys([SERVICE.check_objective(objective), *check_choices(others, OBJECTIVES, "objectives")]))
    q = SERVICE.text_query(query) if _given(query) else None
    chosen = [CLASSES.index(c) for c in check_choices(classes, CLASSES, "classes")]
    lines = check_flag(lines, "lines")
    sel = SERVICE.item_query(selected).item if _given(selected) else None
    map_views = []
    for n, name in enumerate(names):
        progress((n, len(names)), desc=f"placing the query on {name}")
        map_views.append(SERVICE.map_view(name, q, k))
    return plots.map_figure(map_views, ITEMS, chosen or None, lines, sel)


def others_than(objective: str) -> list[str]:
    return [o for o in OBJECTIVES if o != objective]


@user_errors
def side_choices(main: str, chosen: list[str] | None):
    """'Side by side with' never offers the main objective itself."""
    chosen = chosen if isinstance(chosen, list) else []
    return gr.CheckboxGroup(choices=others_than(main), value=[o for o in chosen if o != main and o in OBJECTIVES])


def browse_gallery(current):
    """The whole gallery as thumbnails, sent once: a gallery already filled is left as it is."""
    return gr.skip() if current else BROWSE


@user_errors
def picked_id(evt: gr.SelectData) -> str:
    row = _row(evt)
    if row is None or not 0 <= row < len(ITEMS):
        raise InputError("that picture is not in the gallery: open the gallery and click one")
    return ITEMS[row]["id"]


@user_errors
def leaderboard_plots(direction: str):
    return plots.heatmap_figure(*SERVICE.class_ap(direction), title=f"AP per class ({direction})")


BROWSE = [(str(SERVICE.bundle.image_path(i)), f"{it['id']} · {CLASSES[it['label']]}") for i, it in enumerate(ITEMS)]
class_choices = [("(unknown)", "")] + [(c, c) for c in CLASSES]

with ServedBlocks(title="CLIP4CMR demo") as demo:
    gr.Markdown(views.header_markdown(SERVICE), elem_id="header-card")
    gr.Gallery(views.class_examples(SERVICE), columns=10, height=150, allow_preview=False,
               label="One gallery picture of each class", elem_id="class-examples", object_fit="contain")
    with gr.Tab("Search"):
        with gr.Row():
            with gr.Column(scale=3):
                text_in = gr.Textbox(label="Text query", placeholder=EXAMPLES[0][0], lines=1)
                text_class = gr.Dropdown(class_choices, value="", label="Class of this text (optional: shows AP, P@k)")
                text_btn = gr.Button("Search images", variant="primary", elem_id="search-text-btn")
            with gr.Column(scale=2):
                # image_mode=None: the file reaches inputs.load_image as uploaded (gradio's RGB conversion would
                # decode bombs before our size check, and clip 16-bit images and drop transparency badly)
                image_in = gr.Image(type="filepath", image_mode=None, label="Image query", height=180,
                                    sources=["upload", "clipboard"])
                image_class = gr.Dropdown(class_choices, value="", label="Class of this image (optional)")
                image_btn = gr.Button("Search texts", elem_id="search-image-btn")
        with gr.Row():
            objective = gr.Dropdown(OBJECTIVES, value=BEST, label="Objective")
            k = gr.Slider(1, MAX_K, value=12, step=1, label="Top k")
            same = gr.Checkbox(False, label="Same modality (text → texts, image → images)")
        summary_md = gr.Markdown(elem_id="search-summary", label="summary")
        results_gallery = gr.Gallery(label="Image results (click one to search with it)", columns=6, height="auto",
                                     elem_id="results-gallery", allow_preview=False)
        results_table = gr.Dataframe(headers=views.TEXT_COLUMNS, label="Text results (click a row to search with it)",
                                     interactive=False, visible=False, wrap=True, elem_id="results-table",
                                     column_widths=["64px", "80px", "96px", "84px", "auto", "150px"])
        hits = gr.State({})
        gr.Examples([list(e) for e in EXAMPLES], inputs=[text_in, text_class], label="Text examples (with their class)")
        image_examples = gr.Examples([[str(SERVICE.bundle.image_path(i))] for i in range(0, min(len(ITEMS), 60), 6)],
                                     inputs=[image_in], label="Image examples")
        with gr.Accordion("Browse the gallery: click an image to search texts with it", open=False) as browse_box:
            browse = gr.Gallery(columns=10, height=420, allow_preview=False, label="Gallery", elem_id="browse-gallery")
        info_json = gr.JSON(visible=False)
        info_btn = gr.Button(visible=False)
        # the text the stated class belongs to, set whenever the class is set (a State outside a Tab would
        # end the group of tabs: keep it inside)
        text_stated = gr.State(None)
    out = [results_gallery, results_table, summary_md, hits]
    events = [(text_btn.click, search_text, [text_in, objective, k, text_class, same, text_stated], out, "search_text"),
              (text_in.submit, search_text, [text_in, objective, k, text_class, same, text_stated], out, None),
              (image_btn.click, search_image, [image_in, objective, k, image_class, same], out, "search_image"),
              (results_gallery.select, search_hit, [hits, objective, k, same], [*out, image_in], None),
              (results_table.select, search_hit, [hits, objective, k, same], [*out, image_in], None),
              (browse.select, search_browsed, [objective, k, same], [*out, image_in], None)]
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
    info_btn.click(query_info_image, [image_in, objective], info_json, api_name="query_info_image", preprocess=False)

    with gr.Tab("Compare objectives"):
        with gr.Row():
            cmp_query = gr.Textbox(label="Text query", value=EXAMPLES[0][0], scale=3)
            cmp_class = gr.Dropdown(class_choices, value=EXAMPLES[0][1], label="Class of the query (optional)")
            cmp_item = gr.Textbox("", label="…or a gallery item id (overrides the text)", placeholder=ITEMS[0]["id"])
            cmp_modality = gr.Radio(["image", "text"], value="image", label="item modality")
        with gr.Row():
            cmp_objs = gr.CheckboxGroup(OBJECTIVES, value=OBJECTIVES, label="Objectives", scale=3)
            cmp_k = gr.Slider(1, 24, value=6, step=1, label="Top k")
            cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
        cmp_json = gr.JSON(visible=False)
        cmp_notice = gr.Markdown(elem_id="compare-notice")
        col_parts = [cmp_notice]
        with gr.Row(equal_height=False):
            for name in OBJECTIVES:
                with gr.Column(min_width=190) as col:
                    col_parts += [col, gr.Markdown(f"### {name}"),
                                  gr.Gallery(columns=2, height="auto", allow_preview=False, show_label=False), gr.Markdown()]
        gr.Markdown("## Leaderboard (test split of the bundle)")
        with gr.Row():
            gr.Dataframe(views.leaderboard_rows(SERVICE), headers=["objective", "I→T mAP", "T→I mAP", "average",
                                                                   "best epoch", "selected on"], interactive=False)
            gr.Plot(plots.leaderboard_figure(SERVICE.leaderboard()))
        heat_dir = gr.Radio(["avg", "i2t", "t2i"], value="avg", label="direction")
        heatmap = gr.Plot(leaderboard_plots("avg"))
        gr.Markdown("## Where two objectives disagree most (click a row to compare on it)")
        with gr.Row():
            dis_a = gr.Dropdown(OBJECTIVES, value=BEST, label="objective A")
            dis_b = gr.Dropdown(OBJECTIVES, value=OBJECTIVES[-1] if OBJECTIVES[-1] != BEST else OBJECTIVES[0],
                                label="objective B")
            dis_dir = gr.Radio(["t2i", "i2t"], value="t2i", label="query direction")
            dis_btn = gr.Button("Find disagreements")
        dis_table = gr.Dataframe(headers=["id", "class", "AP A", "AP B", "A − B", "caption"], interactive=False, wrap=True)
        cmp_stated = gr.State(None)  # None for API calls (their class is theirs); a page load sets it below
    cmp_inputs = [cmp_query, cmp_objs, cmp_k, cmp_class, cmp_item, cmp_modality, cmp_stated]
    cmp_query.input(clear, None, cmp_class, queue=False, api_visibility="private", show_progress="hidden")
    cmp_class.change(owned, [cmp_query, cmp_class], cmp_stated, queue=False, api_visibility="private",
                     show_progress="hidden")
    cmp_btn.click(compare, cmp_inputs, cmp_json, api_name="compare", preprocess=False).then(
        render_columns, cmp_json, col_parts, api_visibility="private").then(
        sync_class, [cmp_query, cmp_class, cmp_stated], cmp_class, queue=False, api_visibility="private",
        show_progress="hidden")
    heat_dir.change(leaderboard_plots, heat_dir, heatmap, api_visibility="private")
    dis_btn.click(disagreements, [dis_a, dis_b, dis_dir], dis_table, api_name="disagreements", preprocess=False)
    dis_table.select(pick_disagreement, [dis_table, dis_dir], [cmp_item, cmp_modality], api_visibility="private").then(
        compare, cmp_inputs, cmp_json, api_visibility="private").then(
        render_columns, cmp_json, col_parts, api_visibility="private")

    with gr.Tab("Embedding map"):
        with gr.Row():
            map_obj = gr.Dropdown(OBJECTIVES, value=BEST, label="Objective")
            map_others = gr.CheckboxGroup(others_than(BEST), value=others_than(BEST)[:1],
                                          label="Side by side with", scale=3)
        with gr.Row():
            map_query = gr.Textbox(label="Query placed on the maps (optional)", value=EXAMPLES[0][0], scale=3)
            map_k = gr.Slider(1, 50, value=10, step=1, label="Top k highlighted")
            map_lines = gr.Checkbox(False, label="Lines image ↔ caption")
        with gr.Row():
            map_classes = gr.CheckboxGroup(CLASSES, label="Show only these classes (none = all)", scale=3)
            map_selected = gr.Textbox("", label="Selected gallery item id", placeholder="click an image below")
            map_btn = gr.Button("Draw maps", variant="primary", elem_id="map-btn")
        map_plot = gr.Plot(elem_id="map-plot")
        with gr.Accordion("Pick a gallery item to highlight it on every map", open=False) as pick_box:
            map_pick = gr.Gallery(columns=10, height=300, allow_preview=False, label="Gallery")
    map_inputs = [map_obj, map_query, map_others, map_classes, map_lines, map_k, map_selected]
    map_obj.change(side_choices, [map_obj, map_others], map_others, queue=False, api_visibility="private",
                   show_progress="hidden")
    map_btn.click(embedding_map, map_inputs, map_plot, api_name="embedding_map", preprocess=False)
    map_pick.select(picked_id, None, map_selected, api_visibility="private").then(
        embedding_map, map_inputs, map_plot, api_visibility="private")
    text_btn.click(lambda q: q, text_in, map_query, api_visibility="private")  # the map follows the search query

    # The 600-thumbnail galleries are filled when first opened: building them costs ~2 s each at start-up.
    browse_box.expand(browse_gallery, browse, browse, api_visibility="private", show_progress="hidden")
    pick_box.expand(browse_gallery, map_pick, map_pick, api_visibility="private", show_progress="hidden")

    with gr.Tab("About"):
        gr.Markdown(views.about_markdown(SERVICE))
        if STUDY_FIGURES:  # cheap to show: a few PNGs the studies already wrote (absent outside a checkout)
            with gr.Accordion("The paper's studies, as measured (bench/results/study)", open=False):
                for path in STUDY_FIGURES:
                    gr.Image(str(path), label=f"{path.stem} on {path.parent.name}", interactive=False)

    demo.load(embedding_map, map_inputs, map_plot, api_visibility="private")
    # in a browser, Compare opens on the first example with its class: that class was stated for that text
    demo.load(lambda: EXAMPLES[0][0], None, cmp_stated, api_visibility="private", queue=False)
    gr.api(resolved(query_info), api_name="query_info")  # after the tabs: between them it split the tab row

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
demo.state_session_capacity = SESSIONS  # a `launch` option; the mounted app reads the attribute
# query pictures: only files this app received (uploads, its own examples) are opened (cmr_demo.uploads)
EXAMPLE_FILES = frozenset(s[0]["path"] for s in image_examples.dataset.samples if isinstance(s[0], dict))
GATE = UploadGate(image_in.GRADIO_CACHE, lambda: demo.upload_file_set, lambda: EXAMPLE_FILES,
                  registries=lambda: demo.temp_file_sets)


def launch_options() -> dict:
    """What gradio is served with: only the gallery images as files, no tracebacks to clients."""
    return {"allowed_paths": [str(Path(SERVICE.bundle.folder).resolve() / "gallery" / "images")],
            "show_error": False}


def make_app():
    """The FastAPI app serving the UI (cmr_demo.webserver: upload limit, /media, gradio mounted at '/')."""
    from cmr_demo.webserver import build_app, every, trim_memory_every
    trim_memory_every(10.0)
    # not gradio's delete_cache: it skips files outside its sets (parts of interrupted uploads) and iterates
    # the sets while requests change them
    every(SWEEP[0], lambda: sweep(GATE.folder, SWEEP[1], kept_files, lambda: demo.temp_file_sets), "upload-sweeper")
    return build_app(demo, lambda: {SERVICE.name: SERVICE}, MAX_IMAGE_BYTES, **launch_options())


def kept_files() -> set[str]:
    """Files the page shows from gradio's folder for as long as the app runs: examples, the header's pictures."""
    return set(EXAMPLE_FILES).union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values()))


if __name__ == "__main__":
    import uvicorn
    logging.basicConfig(level=logging.INFO)
    print(f"* serving {ARGS.bundle} at http://{ARGS.host}:{ARGS.port}/", flush=True)
    uvicorn.run(make_app(), host=ARGS.host, port=ARGS.port, log_level="warning")
