"""The Embedding map tab: one objective's common space in 2-D and others beside it, the query placed with its top-k,
points coloured by class, modality, per-item AP, AP difference to a second objective or rank for the query, a class
filter, image-caption lines, a selected item marked on every map, and a region selected by dragging (box or lasso)
listed with its AP under each objective; a click on a listed item searches with it. Its handler is
`/embedding_map`.

The region: plotly reports selected points in the browser only, so `browser.MAP_SELECT_JS` writes them (ids and
modalities) into a hidden textbox whose change lists them here; the ids are checked like any other input."""
from __future__ import annotations

import hashlib
import json
import uuid

import gradio as gr

from cmr_demo.serve import map_colours
from cmr_demo.serve.inputs import InputError, check_choices, check_flag
from cmr_demo.serve.schema import check_objectives
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import browser, glossary, map_figure, region
from cmr_demo.ui.context import Context, given, item_id as item_id_of, others_than
from cmr_demo.ui.errors import user_errors
from cmr_demo.ui.pager import QUIET, Pager
from cmr_demo.ui.search_endpoints import selected_row


def _quiet(*args, **kwargs) -> None:
    """No progress bar (a step of a larger answer)."""


def _groups(s: RetrievalService) -> dict | None:
    """The bundle's class groups (colour, shape ...), which decide each class's marker."""
    return (s.bundle.manifest.get("about") or {}).get("class_groups")


def _draw(s: RetrievalService, maps: list, chosen: list, lines: bool, sel, region, signature: str) -> tuple:
    """A new drawing of the maps: (figure, what the page keeps of it: its signature, its id, its colouring)."""
    drawing = uuid.uuid4().hex[:12]
    figure = map_figure.map_figure(maps, s.bundle.items, chosen or None, lines, sel, _groups(s), region, drawing)
    return figure, {"signature": signature, "drawing": drawing, "colour_by": maps[0]["colour"]["by"]}


class MapTab:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _views(self, objective, query, others, classes, lines, k, selected, colour_by, other, selection, bundle,
               request, progress=lambda *args, **kwargs: None) -> tuple:
        """The inputs checked and each panel's view: (service, views, chosen classes, lines, selected row, region,
        signature). The signature names what was drawn apart from its colours (a recolouring applies to it only)."""
        s = self.ctx.for_request(bundle, request)
        objective, others = self.ctx.resolve(s, "objective", objective), self.ctx.resolve(s, "others", others)
        query = self.ctx.resolve(s, "query", query)
        names = check_objectives([objective, *check_choices(others, s.objectives, "objectives")], s.objectives)
        colour = map_colours.check_colour_by(colour_by)
        other = check_objectives([other], s.objectives)[0] if colour.needs == "other" and given(other) else None
        chosen = [s.class_names.index(c) for c in check_choices(classes, s.class_names, "classes")]
        lines = check_flag(lines, "lines")
        sel = s.item_query(item_id_of(selected)).item if given(selected) else None
        region = map_colours.parse_selection(selection, s)
        q = s.text_query(query) if given(query) else s.item_query(sel) if sel is not None and colour.needs == "query" \
            else None
        if colour.needs == "query" and q is None:
            raise InputError("colouring by rank needs a query: type one above, or pick a gallery item to rank for")
        maps = []
        for n, name in enumerate(names):
            progress((n, len(names)), desc=f"placing the query on {name}")
            maps.append(s.map_view(name, q, k, colour_by=colour.name, other=other, base=names[0]))
        drawn = json.dumps([s.name, names, sorted(chosen), lines, sel, [q.modality, q.text, q.item] if q else None,
                            [int(h) for h in maps[0]["query"]["hits"]] if q is not None else None, region],
                           default=str)
        signature = hashlib.sha1(drawn.encode()).hexdigest()[:16]
        return s, maps, chosen, lines, sel, region, signature

    @user_errors
    def embedding_map(self, objective: str, query: str = "", others: list[str] | None = None,
                      classes: list[str] | None = None, lines: bool = False, k: int = 10, selected: str = "",
                      colour_by: str = "class", other: str = "", selection: str = "", bundle: str = "",
                      progress=gr.Progress(), request: gr.Request = None):
        """The common space of `objective` (and `others` beside it) with the query and its top-k placed on it, points
        coloured by `colour_by` (class, modality, ap, ap_diff: AP under `objective` minus AP under `other` on every
        map, rank for the query: the text, else the selected item's picture), a selected region (`selection`, as the
        map sends it) outlined on every map. The page also keeps what it drew (`drawn`, a State: programs get the
        figure alone)."""
        s, maps, chosen, lines, sel, region, signature = self._views(
            objective, query, others, classes, lines, k, selected, colour_by, other, selection, bundle, request,
            progress)
        return _draw(s, maps, chosen, lines, sel, region, signature)

    @user_errors
    def recolour(self, objective: str, query: str, others: list[str] | None, classes: list[str] | None, lines: bool,
                 k: int, selected: str, colour_by: str, other: str, selection: str, bundle: str, drawn: dict,
                 request: gr.Request = None):
        """A change of colouring (or of the AP difference's second objective): when the map shown is the one these
        inputs draw, only its new styles (`map_figure.recolouring`, ~40 kB, applied in the browser by
        browser.RECOLOUR_JS) instead of a new figure (~400 kB, and plotly drawing it anew); otherwise (an input
        changed since it was drawn) the whole figure. The second objective's picker shows with the AP difference."""
        s, maps, chosen, lines, sel, region, signature = self._views(
            objective, query, others, classes, lines, k, selected, colour_by, other, selection, bundle, request)
        drawn = drawn if isinstance(drawn, dict) else {}
        by = maps[0]["colour"]["by"]
        picker = gr.skip() if (drawn.get("colour_by") == "ap_diff") == (by == "ap_diff") else \
            gr.update(visible=by == "ap_diff")
        if drawn.get("signature") != signature or not drawn.get("drawing"):
            figure, kept = _draw(s, maps, chosen, lines, sel, region, signature)
            return figure, None, kept, picker
        payload = map_figure.recolouring(maps, chosen or None, _groups(s), drawn["drawing"])
        return gr.skip(), payload, {**drawn, "colour_by": by}, picker

    @user_errors
    def list_region(self, selection: str, objective: str, others: list[str] | None, colour_by: str = "class",
               other: str = "", bundle: str = "", request: gr.Request = None):
        """The points selected on a map, listed: pictures (or a table), class and AP under each shown objective
        (and the one the AP difference is against), with the mean AP per objective over them; the rows, for
        clicks. Listed where the map's objective and the second (the AP difference's, else the next map's) differ
        most first."""
        s = self.ctx.for_request(bundle, request)
        against = [other] if map_colours.check_colour_by(colour_by).needs == "other" and given(other) else []
        names = check_objectives([objective, *against, *check_choices(others, s.objectives, "objectives")],
                                 s.objectives)
        rows, means = map_colours.selection_summary(s, map_colours.parse_selection(selection, s), names)
        thumbs, headers, table = region.region_listing(s, rows, names)
        return (region.region_markdown(rows, means), gr.Gallery(thumbs or [], visible=bool(thumbs)),
                gr.Dataframe(table, headers=headers, visible=bool(table)),
                {"bundle": s.name, "points": [(r["id"], r["modality"]) for r in rows[:region.REGION_SHOWN]]})

    @user_errors
    def region_map(self, objective, query, others, classes, lines, k, selected, colour_by, other, selection, bundle,
                   request: gr.Request = None):
        """A region selected on a map (or cleared): its list, and the map redrawn with it outlined on every panel."""
        listed = self.list_region(selection, objective, others, colour_by, other, bundle, request=request)
        return *listed, *self.embedding_map(objective, query, others, classes, lines, k, selected, colour_by, other,
                                            selection, bundle, progress=_quiet, request=request)

    @user_errors
    def picked_map(self, page: dict, objective, query, others, classes, lines, k, selected, colour_by, other,
                   selection, bundle, evt: gr.SelectData, request: gr.Request = None):
        """A click in the map's gallery list: that item's id, and the map redrawn with it selected."""
        picked = self.picked_id(page, evt)
        return picked, *self.embedding_map(objective, query, others, classes, lines, k, picked, colour_by, other,
                                           selection, bundle, progress=_quiet, request=request)

    @user_errors
    def region_pick(self, listed: dict, evt: gr.SelectData):
        """A click on a listed item of the region: its id and modality, twice (the queries of Search and Compare),
        and the Search tab shown."""
        points, row = (listed.get("points") if isinstance(listed, dict) else None), selected_row(evt)
        if not isinstance(points, list) or row is None or not 0 <= row < len(points):
            raise InputError("that item is no longer listed: select the region again")
        item_id, modality = points[row]
        return item_id, modality, item_id, modality, gr.Tabs(selected="search")

    @user_errors
    def side_choices(self, main: str, chosen: list[str] | None, bundle: str, request: gr.Request = None):
        """'Side by side with' never offers the main objective itself."""
        s = self.ctx.for_request(bundle, request)
        chosen = chosen if isinstance(chosen, list) else []
        return gr.CheckboxGroup(choices=others_than(main, s),
                                value=[o for o in chosen if o != main and o in s.objectives])

    @user_errors
    def picked_id(self, page: dict, evt: gr.SelectData) -> str:
        """A click in the map's gallery list: that item's id (the map is then redrawn with it selected)."""
        page = page if isinstance(page, dict) else {}
        rows, row = page.get("rows"), selected_row(evt)
        if not isinstance(rows, list) or row is None or not 0 <= row < len(rows):
            raise InputError("that item is no longer listed: open the gallery list again")
        return self.ctx.service(page.get("bundle")).bundle.items[rows[row]]["id"]

    def build(self) -> None:
        ctx, first = self.ctx, self.ctx.first
        d = ctx.defaults[ctx.names[0]]
        with gr.Row():
            self.objective = gr.Dropdown(glossary.objective_choices(first), value=first.best, label="Objective")
            self.others = gr.CheckboxGroup(others_than(first.best, first), value=d.others,
                                           label="Side by side with", scale=3)
        with gr.Row():
            self.colour_by = gr.Radio([(c.label, c.name) for c in map_colours.COLOUR_BY.values()], value="class",
                                      label="Colour points by", scale=3, elem_id="map-colour-by",
                                      info="AP: each point as a query (its picture searching the texts, its text the "
                                           "pictures), as Compare shows it")
            self.other = gr.Dropdown(glossary.objective_choices(first), value=d.b, label="…AP difference against",
                                     visible=False, elem_id="map-other")
        with gr.Row():
            self.query = gr.Textbox(label="Query placed on the maps (optional)", value=d.query, scale=3,
                                    visible=first.encodes)
            self.k = gr.Slider(1, 50, value=10, step=1, label="Top k highlighted")
            self.lines = gr.Checkbox(False, label="Lines image ↔ caption")
        with gr.Row():
            self.classes = gr.Dropdown(first.class_names, value=[], multiselect=True, scale=3,
                                       label="Show only these classes (none = all)")
            self.selected = gr.Textbox("", label="Selected gallery item id",
                                       placeholder=f"e.g. {first.bundle.items[0]['id']}, or pick one below")
            self.btn = gr.Button("Draw maps", variant="primary", elem_id="map-btn")
        self.plot = gr.Plot(elem_id="map-plot", show_label=False)  # its label chip covered the legend
        self.drawn = gr.State({})  # what the plot shows: its signature and colouring (`recolour`)
        self.colours = gr.JSON(visible=False)  # a recolouring, applied in the browser (browser.RECOLOUR_JS)
        self.selection = gr.Textbox("", visible="hidden", elem_id="map-selection")  # written by MAP_SELECT_JS
        with gr.Row(equal_height=True):
            self.region_note = gr.Markdown(region.region_markdown(None, {}), elem_id="map-region")
            self.clear_region = gr.Button("Clear the selection", size="sm", scale=0, min_width=170,
                                          elem_id="map-clear-region")
        self.region_gallery = gr.Gallery(columns=10, height="auto", allow_preview=False, visible=False,
                                         label="Selected items (click one to search with it)", elem_id="region-gallery")
        self.region_table = gr.Dataframe(interactive=False, wrap=True, visible=False, elem_id="region-table",
                                         label="Selected items (click one to search with it)")
        self.region_listed = gr.State({})
        self.pick = Pager(ctx, "Pick a gallery item to highlight it on every map", "pick", "highlight it")

    @property
    def outputs(self) -> list:
        """What drawing the map sets: the figure, and what it shows (`drawn`)."""
        return [self.plot, self.drawn]

    def inputs(self, bundle_pick) -> list:
        return [self.objective, self.query, self.others, self.classes, self.lines, self.k, self.selected,
                self.colour_by, self.other, self.selection, bundle_pick]

    def wire(self, bundle_pick, search_text_btn, search_text_in) -> None:
        inputs = self.inputs(bundle_pick)
        self.objective.change(self.side_choices, [self.objective, self.others, bundle_pick], self.others, queue=False,
                              **QUIET)
        self.btn.click(self.embedding_map, inputs, self.outputs, api_name="embedding_map", preprocess=False)
        # a new colouring: one round trip answering the new styles, applied in the browser (`recolour`)
        for trigger in (self.colour_by.input, self.other.input):
            trigger(self.recolour, [*inputs, self.drawn], [self.plot, self.colours, self.drawn, self.other],
                    api_visibility="private", preprocess=False, show_progress="hidden").success(
                None, self.colours, None, js=browser.RECOLOUR_JS, **QUIET)
        # one round trip each: a pick from the list (the item and the map redrawn with it), a region (its list and
        # the map with it outlined)
        for listing in (self.pick.gallery, self.pick.table):
            listing.select(self.picked_map, [self.pick.rows, *inputs], [self.selected, *self.outputs],
                           api_visibility="private")
        region_out = [self.region_note, self.region_gallery, self.region_table, self.region_listed]
        self.selection.change(self.region_map, inputs, [*region_out, *self.outputs], api_visibility="private",
                              show_progress="minimal")
        self.clear_region.click(None, None, self.selection, js=browser.empties(1), **QUIET)
        # the map's query follows the searched text, in the browser (a queued step cost a second round trip)
        search_text_btn.click(None, search_text_in, self.query, js="(q) => q", **QUIET)
        self.pick.wire(bundle_pick)

    def wire_region_clicks(self, tabs, search, compare, bundle_pick) -> None:
        """A click on a listed item of the region searches with it: Search and Compare follow, Search is shown."""
        for listing in (self.region_gallery, self.region_table):
            picked = listing.select(self.region_pick, self.region_listed,
                                    [search.item_in, search.item_modality, compare.item, compare.modality, tabs],
                                    api_visibility="private")
            search.follow(picked, bundle_pick)
            compare.follow(picked, bundle_pick)

    def objective_lists(self, s: RetrievalService) -> dict:
        others = others_than(s.best, s)
        d = self.ctx.defaults[s.name]
        return {self.objective: gr.Dropdown(glossary.objective_choices(s), value=s.best),
                self.others: gr.CheckboxGroup(others, value=d.others),
                self.other: gr.Dropdown(glossary.objective_choices(s), value=d.b)}

    def reset(self, s: RetrievalService) -> dict:
        d = self.ctx.defaults[s.name]
        return {
            self.query: gr.Textbox(value=d.query if s.encodes else "", visible=s.encodes),
            self.classes: gr.Dropdown(s.class_names, value=[], multiselect=True),
            self.selected: gr.Textbox(value="", placeholder=f"e.g. {s.bundle.items[0]['id']}, or pick one below"),
            self.colour_by: "class",
            self.other: gr.Dropdown(visible=False),
            self.drawn: {},
            self.colours: None,
            self.selection: "",
            self.region_note: region.region_markdown(None, {}),
            self.region_gallery: gr.Gallery(value=[], visible=False),
            self.region_table: gr.Dataframe(value=[], visible=False),
            self.region_listed: {},
            **self.pick.reset(s),
        }
