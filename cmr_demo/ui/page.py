"""The whole page from its tabs: the header with the bundle picker, Search, Compare, the maps, the lab and About,
and the events that span tabs (switching bundles, the objective lists a lab run joins). `build_demo` is the
factory app.py calls."""
from __future__ import annotations

import typing
from pathlib import Path

import gradio as gr

from cmr_demo.serve.clients import client_address
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import browser, bundle_texts, glossary
from cmr_demo.ui.compare_tab import CompareTab
from cmr_demo.ui.context import Context
from cmr_demo.ui.errors import user_errors
from cmr_demo.ui.gradio_adapter import GradioFiles, ServedBlocks
from cmr_demo.ui.lab_tab import LAB_ID, LAB_QUEUE, LabTab
from cmr_demo.ui.map_tab import MapTab
from cmr_demo.ui.pager import QUIET
from cmr_demo.ui.search_tab import SearchTab

CONCURRENCY = 4  # encoding is CPU-bound: more parallel requests than cores only add latency
QUEUE_SIZE = 64  # beyond this, clients are told the app is busy instead of waiting minutes
# gradio keeps every session's component values (a map's figure is ~400 kB, a compare's JSON ...) until this many
# newer sessions exist, and each raw API call is a session of its own: with gradio's default (10,000) the soak's RSS
# grew by 1.9 GB in 5 minutes (bench/soak.py). A page evicted this way answers "run the search again" on its next
# result click; programs should use gradio_client (one session) or the JSON API.
SESSIONS = 256


class Page:
    """The tabs and the header, built inside one Blocks; `switch` and `objective_lists` span them."""

    def __init__(self, ctx: Context, study_figures: list[Path]):
        self.ctx = ctx
        self.search, self.compare, self.maps, self.lab = SearchTab(ctx), CompareTab(ctx), MapTab(ctx), LabTab(ctx)
        self.study_figures = study_figures

    def build(self, demo) -> None:
        ctx, first = self.ctx, self.ctx.first
        with gr.Row(equal_height=False, elem_id="hero-row"):
            with gr.Column(scale=5, min_width=300):
                self.hero = gr.Markdown(bundle_texts.hero_markdown(first), elem_id="hero")
            self.bundle_pick = gr.Dropdown(ctx.names, value=ctx.names[0], label="Bundle", scale=1, min_width=180,
                                           elem_id="bundle-pick", visible=len(ctx.names) > 1,
                                           info="switch the gallery and models")
        with gr.Accordion(bundle_texts.details_title(first), open=False, elem_id="gallery-details") as self.details_box:
            self.header = gr.Markdown(bundle_texts.details_markdown(first), elem_id="header-card")
            self.class_strip = gr.Gallery(bundle_texts.class_examples(first), columns=10, height=150,
                                          allow_preview=False, label="One gallery picture of each class",
                                          elem_id="class-examples", object_fit="contain",
                                          visible=first.bundle.has_pictures)
        with gr.Tabs(elem_id="tabs") as self.tabs:
            with gr.Tab("Search", id="search"):
                self.search.build()
            with gr.Tab("Compare", id="compare") as self.compare_tab:
                self.compare.build()
            with gr.Tab("Map", id="map"):
                self.maps.build()
            with gr.Tab("Lab", id="lab"):
                self.lab.build()
            with gr.Tab("About", id="about"):
                self.about = gr.Markdown(bundle_texts.about_markdown(first))
                # cheap to show: a few PNGs the studies already wrote (absent outside a checkout)
                if self.study_figures:
                    with gr.Accordion("The paper's studies, as measured (bench/results/study)", open=False):
                        for path in self.study_figures:  # titled in markdown: an image's label chip covers its title
                            gr.Markdown(f"**{path.stem.replace('_', ' ')}** on `{path.parent.name}`")
                            gr.Image(str(path), show_label=False, interactive=False, buttons=["fullscreen"])
        self.search.wire(self.bundle_pick)
        self.compare.wire(self.bundle_pick, demo)
        # Compare arrives filled: the first time for a bundle, its figures, the opening query under every objective
        # and the opening pair's disagreements, in one round trip
        arrival = self.compare_tab.select(
            self.compare.arrive, [self.compare.arrived, *self.compare.inputs(self.bundle_pick), self.compare.dis_a,
                                  self.compare.dis_b, self.compare.dis_dir, self.compare.heat_dir],
            self.compare.arrival_outputs, api_visibility="private", show_progress="minimal")
        # a comparison the visitor starts while the opening one still runs wins: the opening one is cancelled (its
        # answer landing later would replace the visitor's columns)
        self.compare.btn.click(None, None, None, cancels=[arrival], queue=False, **QUIET)
        self.maps.wire(self.bundle_pick, self.search.text_btn, self.search.text_in)
        self.maps.wire_region_clicks(self.tabs, self.search, self.compare, self.bundle_pick)
        demo.load(None, js=browser.MAP_SELECT_JS, **QUIET)  # reports a region selected on a map (see map_tab)
        demo.load(None, js=browser.plotly_preload(), **QUIET)  # the Map tab's first map draws at once
        demo.load(self.maps.embedding_map, self.maps.inputs(self.bundle_pick), self.maps.outputs,
                  api_visibility="private")

    def objective_lists(self, s: RetrievalService, probe: bool = False) -> dict:
        """The components that list the bundle's objectives (a user's lab runs included) or show its leaderboard."""
        return {self.search.objective: gr.Dropdown(glossary.objective_choices(s), value=s.best,
                                                   info=glossary.objective_info(s, s.best)),
                **self.compare.objective_lists(s, probe),
                **self.maps.objective_lists(s)}

    @user_errors
    def refresh(self, bundle: str, request: gr.Request = None) -> dict:
        """The objective lists and leaderboard for the bundle picked now (a lab run may have joined them)."""
        return self.objective_lists(self.ctx.for_request(bundle, request))

    @user_errors
    def switch(self, bundle: str, request: gr.Request = None) -> dict:
        """Every component that shows the picked bundle, set for it; results of the previous one cleared."""
        return self.switched(self.ctx.for_request(bundle, request))

    def switched(self, s: RetrievalService, probe: bool = False) -> dict:
        """`switch`'s answer for service `s` (`probe`: which components it sets, its figures left unmade)."""
        return {self.hero: bundle_texts.hero_markdown(s), self.header: bundle_texts.details_markdown(s),
                self.details_box: gr.Accordion(label=bundle_texts.details_title(s)),
                self.class_strip: gr.Gallery(bundle_texts.class_examples(s), visible=s.bundle.has_pictures),
                **self.search.reset(s), **self.compare.reset(s), **self.maps.reset(s), **self.lab.reset(s),
                self.about: bundle_texts.about_markdown(s), **self.objective_lists(s, probe)}

    def wire_across(self, demo) -> None:
        """Events whose outputs span the tabs: which components they set is asked outside the Blocks context (inside
        it, every update built by the call would be rendered as a new component); the listeners then join the page."""
        switched = list(self.switched(self.ctx.first, probe=True))
        lists = list(self.objective_lists(self.ctx.first, probe=True))
        with demo:
            self.bundle_pick.change(self.switch, self.bundle_pick, switched, api_visibility="private",
                                    show_progress="minimal").then(
                self.maps.embedding_map, self.maps.inputs(self.bundle_pick), self.maps.outputs,
                api_visibility="private")
            self.lab.wire(self.bundle_pick, self.refresh, lists, demo)


def build_demo(ctx: Context, study_figures: list[Path] = (), files: GradioFiles | None = None,
               sessions: int = SESSIONS) -> tuple[gr.Blocks, Page]:
    """The Blocks serving `ctx`'s bundles, queued, and the Page (its components, for the upload store and tests).
    `files`: the registry through which the upload store reads gradio's sets of files; `sessions`: how many
    sessions' component values gradio keeps."""
    page = Page(ctx, list(study_figures))
    opens = ctx.uploads.opens if ctx.uploads is not None else (lambda path: False)
    with ServedBlocks(title="CLIP4CMR demo", opens=opens, sessions=sessions, files=files) as demo:
        page.build(demo)
        gr.api(ctx_api(ctx, "query_info"), api_name="query_info")  # after the tabs: between them it split the tab row
        gr.api(ctx_api(ctx, "bundles"), api_name="bundles")
    page.wire_across(demo)
    # api_open=False: a queued event (a search, a lab run) is not run by a direct POST to /run/<name> outside the
    # queue and its caps (gradio leaves that side door open unless SYSTEM=spaces); events outside the queue still are.
    # The lab's runs have a queue of their own beside the shared one (gradio_adapter.FairQueue)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE, api_open=False, own={LAB_ID: LAB_QUEUE},
               client_of=client_address)
    return demo, page


def ctx_api(ctx: Context, which: str):
    """The two endpoints that are functions, not events: `/query_info` (a text's likely class and world) and
    `/bundles` (the served bundles)."""
    @user_errors
    def query_info(query: str, objective: str = "", bundle: str = "") -> dict:
        """A text's likely class under `objective` (default: the best), its calibrated confidence, and whether it
        belongs to this gallery's world: {"predicted_class", "confidence", "in_domain", "objective", ...}."""
        s = ctx.service(bundle)
        return s.query_info(s.text_query(query), objective or None).to_dict()

    def bundles() -> list[dict]:
        """The served bundles, the default first: name, items, classes, backbone, objectives (best first),
        description and what each can answer (features-only bundles take gallery items as queries)."""
        return [s.describe(default=name == ctx.names[0]).to_json() for name, s in ctx.services.items()]
    fn = {"query_info": query_info, "bundles": bundles}[which]
    fn.__annotations__ = typing.get_type_hints(fn)  # gr.api reads the types; postponed annotations are strings
    return fn
