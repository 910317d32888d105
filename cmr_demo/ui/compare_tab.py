"""The Compare tab: one query under every objective, side by side (`zero-shot` first when the bundle has a backbone);
the leaderboard, the class x objective heatmap, and the queries on which two objectives disagree most. Its handlers
are the named endpoints `/compare` and `/disagreements`."""
from __future__ import annotations

import weakref

import gradio as gr
import pandas as pd

from cmr_demo.serve.inputs import InputError, check_choice
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import browser, bundle_texts, glossary, plots, views
from cmr_demo.ui.leaderboard import LEADERBOARD_COLUMNS, leaderboard_rows
from cmr_demo.ui.context import class_for, Context, given, item_id as item_id_of, stated_for
from cmr_demo.ui.errors import user_errors
from cmr_demo.ui.pager import QUIET, class_choices
from cmr_demo.ui.search_endpoints import selected_row

ITEM_LABEL = "…or a gallery item id (overrides the text)"
DISAGREEMENT_COLUMNS = ["id", "class", "AP A", "AP B", "A − B", "over seeds", "caption"]
SPREAD_WORDS = {True: "within the spread", False: "every seed agrees", None: "one seed"}


# figures that depend on a service alone, made once per service (plotly takes ~0.1 s a figure; the page asks for them
# at start-up and on every bundle switch); weak keys: a lab session's service leaves with its session
FIGURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def figure_of(s: RetrievalService, key: tuple, make):
    """`make()` for service `s`, kept under `key` for as long as `s` lives."""
    kept = FIGURES.setdefault(s, {})
    if key not in kept:
        kept[key] = make()
    return kept[key]


def heatmap(s: RetrievalService, direction: str = "avg"):
    direction = check_choice(direction, ["avg", "i2t", "t2i"], "direction")
    return figure_of(s, ("heatmap", direction), lambda: plots.heatmap_figure(
        *s.class_ap(direction, intervals=True),
        title=f"AP per class ({direction}), mean over seeds; ± marks a cell whose 95 % interval is wider than ±0.1"))


def leaderboard_plot(s: RetrievalService):
    return figure_of(s, ("leaderboard",), lambda: plots.leaderboard_figure(s.leaderboard(with_paper=True)))


def disagreement_widths(s: RetrievalService) -> list[str]:
    """The disagreement table's columns in pixels, the id column as wide as the bundle's longest id."""
    return [views.id_width(views.longest_id(s)), "124px", "72px", "72px", "80px", "150px", "330px"]


def warm_figures(services) -> None:
    """Make every served bundle's Compare figures in a background thread (the app calls it once it is up), so the
    first visitor who opens Compare finds them made."""
    import threading

    def warm():
        for s in services.values():
            leaderboard_plot(s), heatmap(s)
    threading.Thread(target=warm, name="compare-figures", daemon=True).start()


class CompareTab:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @user_errors
    def compare(self, query: str, objectives: list[str], k: int, query_class: str = "", item_id: str = "",
                item_modality: str = "image", stated: str | None = None, bundle: str = "", progress=gr.Progress(),
                request: gr.Request = None):
        """One query under several objectives -> {objective: answer} (as the JSON API answers); a gallery item id
        overrides the text."""
        s = self.ctx.for_request(bundle, request)
        query, query_class = self.ctx.resolve(s, "query", query), self.ctx.resolve(s, "query_class", query_class)
        q = s.item_query(item_id_of(item_id), item_modality) if given(item_id) else \
            s.text_query(query, class_for(query_class, query, stated))
        results = s.compare(q, self.ctx.resolve(s, "objectives", objectives) or None, k, progress=progress)
        return {name: r.to_json() for name, r in results.items()}, results

    @user_errors
    def render_columns(self, results: dict, bundle: str, request: gr.Request = None):
        """The notice about the query (what was searched; a warning when it lies outside the world: each column
        says its own likely class), then every objective's column in one block (views.compare_columns), a user's
        lab runs last."""
        s = self.ctx.for_request(bundle, request)
        results = results if isinstance(results, dict) else {}
        first = next(iter(results.values()), None)
        if first is None:
            return "", ""
        if any(r.bundle != s.name for r in results.values()):  # results of another bundle (switched meanwhile)
            raise InputError("the page sent results this app cannot show: run the comparison again")
        info = first.info
        notice = "\n\n".join(filter(None, [views.compare_heading(first, len(results), s.class_names),
                                            views.info_line(info) if info and info.in_domain is False else "",
                                            views.seed_note(first, s)]))
        per_bundle = self.ctx.lab_runs.per_bundle
        labs = [n for n in results if n not in self.ctx.all_objectives and n in s.objectives][:per_bundle]
        shown = [results[n] for n in self.ctx.all_objectives + labs if n in results and n in s.objectives]
        return notice, views.compare_columns(shown, s, lambda name: glossary.objective_short(s, name))

    @user_errors
    def compare_page(self, query: str, objectives: list[str], k: int, query_class: str = "", item_id: str = "",
                     item_modality: str = "image", stated: str | None = None, bundle: str = "",
                     request: gr.Request = None):
        """A comparison as the page runs it, in one round trip: the results, the columns, and the class box emptied
        (and its `stated`) when the class it held was stated for another text (ignored: the page shows what was
        used). The JSON the API answers is not sent: the page does not show it."""
        _, results = self.compare(query, objectives, k, query_class, item_id, item_modality, stated, bundle,
                                  progress=lambda *args, **kwargs: None, request=request)
        ignored = class_for(query_class, query, stated) != query_class
        return [results, *self.render_columns(results, bundle, request=request),
                *(["", None] if ignored else [gr.skip(), gr.skip()])]

    @user_errors
    def arrive(self, arrived: bool, query: str, objectives: list[str], k: int, query_class: str, item_id: str,
               item_modality: str, stated: str | None, bundle: str, a: str, b: str, direction: str,
               direction_of_heatmap: str = "avg", request: gr.Request = None):
        """The tab filled the first time it is opened (after a page load or a bundle switch): the opening query under
        every objective, the disagreement table of the opening pair and the figures (from the cache the app fills
        once it is up), in one round trip. Later openings change nothing (`arrived`)."""
        if arrived:
            return [gr.skip()] * len(self.arrival_outputs)
        _, results = self.compare(query, objectives, k, query_class, item_id, item_modality, stated, bundle,
                                  progress=lambda *args, **kwargs: None, request=request)
        return [True, results, *self.render_columns(results, bundle, request=request),
                self.disagreements(a, b, direction, bundle, request=request),
                *self.figures(direction_of_heatmap, bundle, request=request)]

    @property
    def arrival_outputs(self) -> list:
        """What `arrive` sets, in its order."""
        return [self.arrived, self.results, self.notice, self.columns, self.dis_table, self.board_plot, self.heatmap]

    @user_errors
    def disagreements(self, a: str, b: str, direction: str, bundle: str = "", request: gr.Request = None):
        """The gallery queries on which objectives a and b differ most in AP."""
        s = self.ctx.for_request(bundle, request)
        a, b = self.ctx.resolve(s, "a", a), self.ctx.resolve(s, "b", b)
        rows = s.disagreements(a, b, direction, n=25)
        texts = s.bundle.has_texts
        return pd.DataFrame([[r["id"], r["class"], round(r[f"ap_{a}"], 3), round(r[f"ap_{b}"], 3),
                              round(r["difference"], 3), SPREAD_WORDS[r["within_seed_spread"]],
                              *([r["text"]] if texts else [])] for r in rows],
                            columns=DISAGREEMENT_COLUMNS[:7 if texts else 6])

    @user_errors
    def pick_disagreement(self, table, direction: str, evt: gr.SelectData):
        row = selected_row(evt)
        rows = table.values.tolist() if hasattr(table, "values") else table
        if row is None or not isinstance(rows, list) or not 0 <= row < len(rows) or not rows[row]:
            raise InputError("that row is no longer in the table: find the disagreements again")
        return rows[row][0], ("image" if direction == "i2t" else "text")

    @user_errors
    def figures(self, direction: str, bundle: str = "", request: gr.Request = None) -> tuple:
        """The leaderboard's forest plot and the class x objective heatmap for the picked bundle (cached)."""
        s = self.ctx.for_request(bundle, request)
        return leaderboard_plot(s), heatmap(s, direction)

    @user_errors
    def heatmap_for(self, direction: str, bundle: str = "", request: gr.Request = None):
        return heatmap(self.ctx.for_request(bundle, request), direction)

    def build(self) -> None:
        ctx, first = self.ctx, self.ctx.first
        d = ctx.defaults[ctx.names[0]]
        with gr.Row():
            self.query = gr.Textbox(label="Text query", value=d.query, scale=3, visible=first.encodes)
            self.klass = gr.Dropdown(class_choices(first), value=d.query_class, label="Class of the query (optional)",
                                     visible=first.encodes)
            self.item = gr.Textbox("" if first.encodes else bundle_texts.item_examples(first)[0][0],
                                   label=ITEM_LABEL if first.encodes else "Gallery item id",
                                   placeholder=first.bundle.items[0]["id"])
            self.modality = gr.Radio(["image", "text"], value="image", label="item modality")
        self.why = gr.Markdown(d.why, elem_id="compare-why")
        with gr.Row():
            self.objectives = gr.CheckboxGroup(first.objectives, value=first.objectives, label="Objectives", scale=3)
            self.k = gr.Slider(1, 24, value=6, step=1, label="Top k")
            self.btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
        self.json = gr.JSON(visible=False)
        self.results = gr.State({})
        self.notice = gr.Markdown(elem_id="compare-notice")
        self.columns = gr.HTML("", elem_id="compare-columns")  # every objective's column (views.compare_columns)
        with gr.Accordion("What the objectives and the numbers mean", open=False, elem_id="glossary"):
            self.glossary = gr.Markdown(glossary.glossary_markdown(first))
        gr.Markdown("## Leaderboard (test split of the bundle)\nOrdered by the mean over training seeds. *Against the "
                    "best*: a paired test over the same test queries and seeds; *tied* where the evidence does not "
                    "rank "
                    "the two (p ≥ 0.05). Rows marked *paper's setting* show an objective at the official code's "
                    "setting where validation chose another (the glossary above says more).")
        self.board = gr.Dataframe(leaderboard_rows(first), headers=LEADERBOARD_COLUMNS,
                                  interactive=False, wrap=True, elem_id="leaderboard", max_height=400,
                                  # in pixels: on a phone the table scrolls sideways instead of breaking words
                                  column_widths=["190px", "330px", "190px", "130px", "170px"])
        # the figures come when the tab is first opened (`figures`), from a cache the app fills once it is up: made
        # here they cost a second of every start (plotly's first figure)
        with gr.Row(equal_height=False):  # side by side on a laptop, one under the other on a phone
            with gr.Column(min_width=360):
                self.board_plot = gr.Plot(None, elem_id="leaderboard-plot")
            with gr.Column(min_width=360):
                self.heat_dir = gr.Radio(["avg", "i2t", "t2i"], value="avg", label="heatmap direction")
                self.heatmap = gr.Plot(None, elem_id="class-heatmap")
        gr.Markdown("## Where two objectives disagree most\nThe gallery items whose AP as a query differs most between "
                    "objective A and B (the AP Compare shows for that item). *Over seeds*: whether every training seed "
                    "puts A and B in the same order on that query, or the difference is within the seed spread (some "
                    "seed orders them the other way). Click a row to compare every objective on it.")
        with gr.Row():
            self.dis_a = gr.Dropdown(glossary.objective_choices(first), value=d.a, label="objective A")
            self.dis_b = gr.Dropdown(glossary.objective_choices(first), value=d.b, label="objective B")
            self.dis_dir = gr.Radio(["t2i", "i2t"], value="t2i", label="query direction")
            self.dis_btn = gr.Button("Find disagreements")
        self.dis_table = gr.Dataframe(headers=DISAGREEMENT_COLUMNS, interactive=False, wrap=True, max_height=420,
                                      column_widths=disagreement_widths(first))
        self.stated = gr.State(None)  # None for API calls (their class is theirs); a page load sets it
        self.arrived = gr.State(False)  # the tab was filled for this bundle (`arrive`)
        self.api_btn = gr.Button(visible=False)  # `/compare`'s trigger: the page's own button runs `compare_page`

    def inputs(self, bundle_pick) -> list:
        return [self.query, self.objectives, self.k, self.klass, self.item, self.modality, self.stated, bundle_pick]

    def follow(self, event, bundle_pick) -> None:
        """After `event` put an item in the item box (a click in a map's selected region, a disagreement row):
        compare every objective on it (the opening query's explanation goes; not after a failed click)."""
        event.success(None, None, self.why, js=browser.empties(1), **QUIET)
        event.success(self.compare_page, self.inputs(bundle_pick), self.page_outputs, api_visibility="private",
                      show_progress="minimal", show_progress_on=[self.columns], preprocess=False).success(
            None, js=browser.scroll_to("compare-notice"), **QUIET)  # the columns sit far above the table clicked

    @property
    def page_outputs(self) -> list:
        """What `compare_page` sets, in its order."""
        return [self.results, self.notice, self.columns, self.klass, self.stated]

    def wire(self, bundle_pick, demo) -> None:
        inputs = self.inputs(bundle_pick)
        # `/compare` for programs (its answers as JSON); registered before the page's own events
        self.api_btn.click(self.compare, inputs, [self.json, self.results], api_name="compare", preprocess=False)
        # a text typed is what is searched: the class stated for another text and an item picked before both go
        self.query.input(None, None, [self.klass, self.item, self.why], js=browser.empties(3), **QUIET)
        # (`input`: a class the visitor picks; one the page sets comes with its own `stated`)
        self.klass.input(stated_for, [self.query, self.klass], self.stated, queue=False, **QUIET)
        # one round trip: answers, columns and the class box together (the toasts of the last one close first)
        self.btn.click(self.compare_page, inputs, self.page_outputs, js=browser.FRESH_JS, api_visibility="private",
                       show_progress="minimal", show_progress_on=[self.columns], preprocess=False)  # raw, as /compare
        self.heat_dir.change(self.heatmap_for, [self.heat_dir, bundle_pick], self.heatmap, api_visibility="private")
        self.dis_btn.click(self.disagreements, [self.dis_a, self.dis_b, self.dis_dir, bundle_pick], self.dis_table,
                           api_name="disagreements", preprocess=False)
        self.follow(self.dis_table.select(self.pick_disagreement, [self.dis_table, self.dis_dir],
                                          [self.item, self.modality], api_visibility="private"), bundle_pick)
        # in a browser, Compare opens on the first example with its class: that class was stated for that text
        d = self.ctx.defaults[self.ctx.names[0]]
        demo.load(lambda: d.query if d.query_class else None, None, self.stated, api_visibility="private", queue=False)

    def objective_lists(self, s: RetrievalService, probe: bool = False) -> dict:
        """The components that list `s`'s objectives, set for it (`probe`: only which components, the figures
        left unmade)."""
        d = self.ctx.defaults[s.name]
        return {
            self.objectives: gr.CheckboxGroup(s.objectives, value=s.objectives),
            self.board: leaderboard_rows(s),
            self.board_plot: None if probe else leaderboard_plot(s),
            self.heat_dir: "avg",
            self.heatmap: None if probe else heatmap(s),
            self.dis_a: gr.Dropdown(glossary.objective_choices(s), value=d.a),
            self.dis_b: gr.Dropdown(glossary.objective_choices(s), value=d.b),
            self.glossary: glossary.glossary_markdown(s),
        }

    def reset(self, s: RetrievalService) -> dict:
        d = self.ctx.defaults[s.name]
        first_id = s.bundle.items[0]["id"]
        return {self.query: gr.Textbox(value=d.query, visible=s.encodes), self.why: d.why,
                self.stated: d.query if d.query_class else None,
                self.klass: gr.Dropdown(class_choices(s), value=d.query_class, visible=s.encodes),
                self.item: gr.Textbox(value="" if s.encodes else bundle_texts.item_examples(s)[0][0],
                                      placeholder=first_id, label=ITEM_LABEL if s.encodes else "Gallery item id"),
                self.json: None, self.results: {}, self.notice: "", self.columns: "", self.arrived: False,
                self.dis_table: gr.Dataframe(value=None, column_widths=disagreement_widths(s))}
