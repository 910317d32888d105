"""The Embedding map tab: one objective's common space in 2-D and others beside it, the query placed with its top-k,
a class filter, image-caption lines, a selected item marked on every map. Its handler is `/embedding_map`."""
from __future__ import annotations

import gradio as gr

from cmr_demo.serve.inputs import InputError, check_choices, check_flag
from cmr_demo.serve.schema import check_objectives
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import plots
from cmr_demo.ui.context import Context, given, others_than
from cmr_demo.ui.errors import user_errors
from cmr_demo.ui.pager import QUIET, Pager
from cmr_demo.ui.search_tab import selected_row


class MapTab:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @user_errors
    def embedding_map(self, objective: str, query: str = "", others: list[str] | None = None,
                      classes: list[str] | None = None, lines: bool = False, k: int = 10, selected: str = "",
                      bundle: str = "", progress=gr.Progress(), request: gr.Request = None):
        """The common space of `objective` (and `others` beside it) with the query and its top-k placed on it."""
        s = self.ctx.service(bundle, getattr(request, "session_hash", None))
        objective, others = self.ctx.resolve(s, "objective", objective), self.ctx.resolve(s, "others", others)
        query = self.ctx.resolve(s, "query", query)
        names = check_objectives([objective, *check_choices(others, s.objectives, "objectives")], s.objectives)
        q = s.text_query(query) if given(query) else None
        chosen = [s.class_names.index(c) for c in check_choices(classes, s.class_names, "classes")]
        lines = check_flag(lines, "lines")
        sel = s.item_query(selected).item if given(selected) else None
        views = []
        for n, name in enumerate(names):
            progress((n, len(names)), desc=f"placing the query on {name}")
            views.append(s.map_view(name, q, k))
        return plots.map_figure(views, s.bundle.items, chosen or None, lines, sel)

    @user_errors
    def side_choices(self, main: str, chosen: list[str] | None, bundle: str, request: gr.Request = None):
        """'Side by side with' never offers the main objective itself."""
        s = self.ctx.service(bundle, getattr(request, "session_hash", None))
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
            self.objective = gr.Dropdown(first.objectives, value=first.best, label="Objective")
            self.others = gr.CheckboxGroup(others_than(first.best, first), value=others_than(first.best, first)[:1],
                                           label="Side by side with", scale=3)
        with gr.Row():
            self.query = gr.Textbox(label="Query placed on the maps (optional)", value=d.query, scale=3,
                                    visible=first.encodes)
            self.k = gr.Slider(1, 50, value=10, step=1, label="Top k highlighted")
            self.lines = gr.Checkbox(False, label="Lines image ↔ caption")
        with gr.Row():
            self.classes = gr.CheckboxGroup(first.class_names, label="Show only these classes (none = all)", scale=3)
            self.selected = gr.Textbox("", label="Selected gallery item id",
                                       placeholder=f"e.g. {first.bundle.items[0]['id']}, or pick one below")
            self.btn = gr.Button("Draw maps", variant="primary", elem_id="map-btn")
        self.plot = gr.Plot(elem_id="map-plot")
        self.pick = Pager(ctx, "Pick a gallery item to highlight it on every map", "pick", "highlight it")

    def inputs(self, bundle_pick) -> list:
        return [self.objective, self.query, self.others, self.classes, self.lines, self.k, self.selected, bundle_pick]

    def wire(self, bundle_pick, search_text_btn, search_text_in) -> None:
        inputs = self.inputs(bundle_pick)
        self.objective.change(self.side_choices, [self.objective, self.others, bundle_pick], self.others, queue=False,
                              **QUIET)
        self.btn.click(self.embedding_map, inputs, self.plot, api_name="embedding_map", preprocess=False)
        for listing in (self.pick.gallery, self.pick.table):
            listing.select(self.picked_id, self.pick.rows, self.selected, api_visibility="private").then(
                self.embedding_map, inputs, self.plot, api_visibility="private")
        search_text_btn.click(lambda q: q, search_text_in, self.query, api_visibility="private")  # the map follows
        self.pick.wire(bundle_pick)

    def objective_lists(self, s: RetrievalService) -> dict:
        others = others_than(s.best, s)
        return {self.objective: gr.Dropdown(s.objectives, value=s.best),
                self.others: gr.CheckboxGroup(others, value=others[:1])}

    def reset(self, s: RetrievalService) -> dict:
        d = self.ctx.defaults[s.name]
        return {self.query: gr.Textbox(value=d.query if s.encodes else "", visible=s.encodes),
                self.classes: gr.CheckboxGroup(s.class_names, value=[]),
                self.selected: gr.Textbox(value="", placeholder=f"e.g. {s.bundle.items[0]['id']}, or pick one below"),
                **self.pick.reset(s)}
