"""The Search tab's layout and wiring: a text, a picture or a gallery item as the query; results as pictures or a
list; a click on a result searches with it. What it answers (the named endpoints `/search_text`, `/search_image`,
`/search_item` and `/query_info_image`) is cmr_demo.ui.search_endpoints."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from cmr_demo.serve.inputs import MAX_K, InputError
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import browser, bundle_texts, glossary, pictures, views
from cmr_demo.ui.context import Context, stated_for
from cmr_demo.ui.gradio_adapter import example_click, example_pictures
from cmr_demo.ui.search_endpoints import SearchEndpoints
from cmr_demo.ui.pager import QUIET, Pager, class_choices

IMAGE_EXAMPLES = range(0, 60, 6)  # gallery rows offered as image examples
# the canvas brush: the default world's colours (red, yellow, green, blue; data/shape_geometry.py) and black
SKETCH_COLOURS = ["#dc2828", "#f0d71e", "#28a03c", "#285adc", "#000000"]


class SearchTab:
    """The Search tab's layout and wiring; what it answers is `SearchEndpoints` (`self.api`)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.api = SearchEndpoints(ctx)

    def build(self) -> None:
        ctx, first = self.ctx, self.ctx.first
        with gr.Row(equal_height=False, elem_id="search-row"):
            with gr.Column(scale=2, min_width=300, elem_id="query-column"):
                self._query_inputs(first)
            with gr.Column(scale=3, min_width=300, elem_id="results-column"):
                self.summary = gr.Markdown(bundle_texts.waiting(first), elem_id="search-summary")
                # no label chip (it covered the first row); two columns on a phone (browser.CSS)
                self.gallery = gr.Gallery(columns=4, height="auto", show_label=False,
                                          elem_id="results-gallery", allow_preview=False, object_fit="contain",
                                          visible=first.bundle.has_pictures)
                texts, shown = first.bundle.has_texts, first.bundle.has_pictures
                self.table = gr.Dataframe(headers=views.text_columns(texts, shown), interactive=False,
                                          label="Results (click a row to search with it)", wrap=True,
                                          column_widths=views.text_column_widths(texts, shown,
                                                                                 views.longest_id(first)),
                                          datatype=views.text_datatypes(texts, shown),
                                          visible=not first.bundle.has_pictures, elem_id="results-table")
                gr.Markdown(glossary.results_legend(), elem_id="results-legend")
        self.browse = Pager(ctx, "Browse the gallery: click an item to search with it", "browse", "search with it")
        self.hits = gr.State({})
        self.info_json = gr.JSON(visible=False)
        self.info_btn = gr.Button(visible=False)
        # the named endpoints' trigger: programs call them by name; the page's own events are private and answer
        # what a click needs in one round trip (the text search also empties a class it ignored)
        self.api_btn = gr.Button(visible=False)
        # the text the stated class belongs to, set whenever the class is set (a State outside a Tab would end the
        # group of tabs: keep it inside)
        self.text_stated = gr.State(None)

    def _query_inputs(self, first: RetrievalService) -> None:
        """The query column: a text (with its examples), the objective, a picture, a gallery item, the options."""
        with gr.Group(visible=first.encodes) as self.text_box:
            # filled with the first example: a first click on "Search images" shows results, not an empty-text error
            self.text_in = gr.Textbox(bundle_texts.first_text(first), label="Text query",
                                      placeholder=bundle_texts.placeholder(first), lines=1, elem_id="text-query")
            self.text_class = gr.Dropdown(class_choices(first), value="",
                                          label="Its class (optional: shows ✓/✗, AP, P@k)")
            self.text_btn = gr.Button("Search images", variant="primary", elem_id="search-text-btn")
        # each example list's click (it fills the inputs), by kind: the search follows it (`wire`)
        self.example_boxes, self.image_examples, self.example_rows = {}, [], []
        self.example_clicks: dict[str, list] = {"text": [], "picture": [], "item": []}
        self._examples("text")
        self.objective = gr.Dropdown(glossary.objective_choices(first), value=first.best, label="Objective",
                                     info=glossary.objective_info(first, first.best), elem_id="search-objective")
        with gr.Accordion("…or search with a picture (a photo or a drawing)", open=True,
                          visible=first.encodes) as self.picture_box:
            # image_mode=None: the file reaches inputs.load_image as uploaded (gradio's RGB conversion would
            # decode bombs before our size check, and clip 16-bit images and drop transparency badly)
            self.image_in = gr.Image(type="filepath", image_mode=None, label="Picture query", height=170,
                                     sources=["upload", "clipboard"])
            self.image_class = gr.Dropdown(class_choices(first), value="", label="Its class (optional)")
            self.image_btn = gr.Button("Search texts", elem_id="search-image-btn")
            self._examples("picture")
        with gr.Accordion("…or draw one", open=False, visible=first.encodes) as self.sketch_box:
            # the world's colours, and black for outlines; what is drawn is read like an uploaded picture
            self.sketch = gr.Sketchpad(type="filepath", label="Drawing", height=300, canvas_size=(320, 320),
                                       brush=gr.Brush(colors=SKETCH_COLOURS, default_color=SKETCH_COLOURS[0],
                                                      default_size=10), layers=False, elem_id="sketch")
            self.sketch_btn = gr.Button("Search texts with the drawing", elem_id="search-sketch-btn")
        with gr.Accordion("…or with a gallery item (its class is known: AP is always shown)",
                          open=not first.encodes) as self.item_box:
            self.item_in = gr.Textbox(bundle_texts.first_item(first), label="Gallery item id",
                                      placeholder=first.bundle.items[0]["id"], elem_id="item-query")
            self.item_modality = gr.Radio(["image", "text"], value="image", label="query with its")
            self.item_btn = gr.Button("Search with this item", elem_id="search-item-btn",
                                      variant="secondary" if first.encodes else "primary")
            self._examples("item")
        with gr.Accordion("Options", open=False):
            self.k = gr.Slider(1, MAX_K, value=12, step=1, label="Top k")
            self.same = gr.Checkbox(False, label="Same modality (text → texts, picture → pictures)")

    def _examples(self, kind: str) -> None:
        """Each bundle's own examples of one kind, shown while it is the bundle picked (a bundle with none of this
        kind gets no box: an empty one still takes a row's gap)."""
        for name, s in self.ctx.services.items():
            if kind == "text":
                rows = [list(e) for e in bundle_texts.text_examples(s)] if s.encodes else []
                labels = [f"{t} ({c})" if c else t for t, c in rows]
                inputs, label = [self.text_in, self.text_class], "Examples (with their class)"
            elif kind == "picture":
                # gallery pictures, with their class: a search with one shows ✓/✗ and AP
                shown = {i: pictures.picture(s, i) for i in IMAGE_EXAMPLES if i < s.size} \
                    if s.bundle.has_pictures and s.encodes else {}
                picked = [i for i, path in shown.items() if isinstance(path, str)]  # a damaged picture is no example
                rows = [[shown[i], s.class_names[int(s.bundle.labels[i])]] for i in picked]
                inputs, label, labels = [self.image_in, self.image_class], "Example pictures", None
            else:
                found = bundle_texts.item_examples(s)
                rows, labels = [list(r[:2]) for r in found], [r[2] for r in found]
                inputs, label = [self.item_in, self.item_modality], "Items that retrieve well"
            if not rows:
                continue
            with gr.Column(visible=name == self.ctx.names[0]) as box:
                examples = gr.Examples(rows, inputs=inputs, label=label, example_labels=labels,
                                       visible_columns=[0])  # pictures as a gallery; the class comes along
            self.example_boxes.setdefault(name, []).append(box)
            self.example_clicks[kind].append(example_click(examples))
            if kind == "picture":
                self.image_examples.append(examples)
                self.example_rows.append((s, picked))

    def example_files(self) -> dict[str, str]:
        """{cached path of an example picture: what it is, in words}, for the upload gate and the summaries."""
        out = {}
        for examples, (s, rows) in zip(self.image_examples, self.example_rows):
            for path, row in zip(example_pictures(examples), rows):
                if path is not None:
                    out[path] = f"example picture (gallery item {s.bundle.items[row]['id']})"
        return out

    def _outputs(self) -> list:
        return [self.gallery, self.table, self.summary, self.hits]

    def _item_inputs(self, bundle_pick) -> list:
        return [self.item_in, self.item_modality, self.objective, self.k, self.same, bundle_pick]

    def follow(self, event, bundle_pick) -> None:
        """After `event` put an item in the item box (a click in a map's selected region): search with it, as the
        item button does."""
        # `success`: a click that failed (an item no longer listed) must not search with what the box held before
        self._shown(event.success(self.api.search_item, [*self._item_inputs(bundle_pick), self.hits], self._outputs(),
                                  api_visibility="private", show_progress="minimal", preprocess=False))

    def _shown(self, searched) -> None:
        """After a search: its results scrolled into view (in the browser), or, when it failed, no results left
        under its error (one more round trip, on failure only)."""
        searched.success(None, js=browser.SHOW_RESULTS_JS, **QUIET)
        searched.failure(self._failed, None, [self.gallery, self.table, self.summary], queue=False, **QUIET)

    def wire(self, bundle_pick) -> None:
        out = self._outputs()
        text_inputs = [self.text_in, self.objective, self.k, self.text_class, self.same, self.text_stated, bundle_pick]
        item_inputs = self._item_inputs(bundle_pick)
        click_inputs = [self.hits, self.objective, self.k, self.same, bundle_pick]
        browse_inputs = [self.browse.rows, self.objective, self.k, self.same, bundle_pick, self.hits]
        image_inputs = [self.image_in, self.objective, self.k, self.image_class, self.same, bundle_pick]
        drawing_inputs = [self.sketch, self.objective, self.k, self.same, bundle_pick]  # no class: see search_drawing
        # the named endpoints (programs call them by name; public endpoints take raw values: the app checks each
        # itself: gradio's checks answer in its own words, and its Image preprocessing would open a path named by
        # the client), registered before any private event of the same function (one registered first took the
        # name, and the endpoint became /search_text_1)
        for fn, inputs, name in [(self.api.search_text, text_inputs, "search_text"),
                                 (self.api.search_image, image_inputs, "search_image"),
                                 (self.api.search_drawing, drawing_inputs, "search_drawing"),
                                 (self.api.search_item, item_inputs, "search_item")]:
            self.api_btn.click(fn, inputs, out, api_name=name, preprocess=False)
        # the page's events also send the last search's hits (`before`: which of gallery and table shows)
        text_page = (self.api.search_text_page, [*text_inputs, self.hits], [*out, self.text_class])
        picture = (self.api.search_image, [*image_inputs, self.hits], out)
        item = (self.api.search_item, [*item_inputs, self.hits], out)
        drawing = (self.api.search_drawing, [*drawing_inputs, self.hits], out)
        # an example searches as soon as it is clicked (a text example also records the text its class belongs to)
        text_example = (self.api.search_text_example, [*text_inputs[:5], bundle_pick, self.hits],
                        [*out, self.text_stated])
        events = [
            (self.text_btn.click, *text_page), (self.text_in.submit, *text_page),
            (self.image_btn.click, *picture), (self.sketch_btn.click, *drawing),
            (self.item_btn.click, *item), (self.item_in.submit, *item),
            # a click on a result or a listed item: its row comes with the click (gr.SelectData)
            (self.gallery.select, self.api.search_hit, click_inputs, [*out, self.image_in]),
            (self.table.select, self.api.search_hit, click_inputs, [*out, self.image_in]),
            (self.browse.gallery.select, self.api.search_browsed, browse_inputs, [*out, self.image_in]),
            (self.browse.table.select, self.api.search_browsed, browse_inputs, [*out, self.image_in]),
            *[(e.then, *text_example) for e in self.example_clicks["text"]],
            *[(e.then, *picture) for e in self.example_clicks["picture"]],
            *[(e.then, *item) for e in self.example_clicks["item"]],
        ]
        for trigger, fn, inputs, outputs in events:
            # one round trip: the search answers its results and which of gallery and table shows them; in the
            # browser first the error toasts of the last search close (FRESH_JS), after it the results scroll into
            # view. Queued: outside the queue gradio drops gr.Error's text and the page shows a bare "Error" badge.
            # Raw values, as the named endpoints take them (the app checks each; gradio's Image preprocessing would
            # hand over a path instead of the upload it can check).
            self._shown(trigger(fn, inputs, outputs, js=browser.FRESH_JS, api_visibility="private",
                                show_progress="minimal", preprocess=False))
        # A stated class belongs to the query it was stated for (✓/✗ and AP stay true). Typing clears it at once
        # (`input`: an example that sets a text and its class keeps both); any other change of the text is caught at
        # search time against the text recorded when the class was set. A new picture clears the image's class.
        self.text_in.input(None, None, self.text_class, js=browser.empties(1), **QUIET)
        # (`input`, not `change`: an example sets the text and the class at once, and a `change` of the class could
        # read the text before it; the example records its own pair once both are set)
        self.text_class.input(stated_for, [self.text_in, self.text_class], self.text_stated, queue=False, **QUIET)
        # a picture the visitor gives (upload, paste, clear) drops the class; an example sets both, and keeps both
        self.image_in.input(None, None, self.image_class, js=browser.empties(1), **QUIET)
        self.objective.change(self.explain, [self.objective, bundle_pick], self.objective, queue=False, **QUIET)
        self.sketch_box.expand(None, js=browser.BRUSH_JS, **QUIET)
        self.info_btn.click(self.api.query_info_image, [self.image_in, self.objective, bundle_pick], self.info_json,
                            api_name="query_info_image", preprocess=False)
        self.browse.wire(bundle_pick)

    @staticmethod
    def _failed():
        """The results after a search that raised: none (results of the search before must not read as its
        answer), and a line pointing at its message in the corner."""
        return [], None, "*No results: the message at the top right says why.*"

    def explain(self, objective: str, bundle: str, request: gr.Request = None):
        """The picked objective's one line under the picker (a lab run of this page's session included)."""
        try:
            s = self.ctx.for_request(bundle, request)
        except InputError:
            return gr.skip()
        return gr.Dropdown(info=glossary.objective_info(s, objective))

    def reset(self, s: RetrievalService) -> dict:
        """Every component of the tab set for a newly picked bundle; results of the previous one cleared."""
        classes, texts_pictures = class_choices(s), (s.bundle.has_texts, s.bundle.has_pictures)
        return {self.text_box: gr.Group(visible=s.encodes),
                self.picture_box: gr.Accordion(visible=s.encodes), self.sketch_box: gr.Accordion(visible=s.encodes),
                self.item_box: gr.Accordion(open=not s.encodes),
                self.item_btn: gr.Button(variant="secondary" if s.encodes else "primary"),
                self.text_in: gr.Textbox(value=bundle_texts.first_text(s), placeholder=bundle_texts.placeholder(s)),
                self.text_class: gr.Dropdown(classes, value=""),
                self.image_in: None, self.image_class: gr.Dropdown(classes, value=""), self.text_stated: None,
                self.item_in: gr.Textbox(value=bundle_texts.first_item(s), placeholder=s.bundle.items[0]["id"]),
                self.summary: bundle_texts.waiting(s),
                self.gallery: gr.Gallery(value=[], visible=s.bundle.has_pictures),
                self.table: gr.Dataframe(value=pd.DataFrame(columns=views.text_columns(*texts_pictures)),
                                         column_widths=views.text_column_widths(*texts_pictures,
                                                                                views.longest_id(s)),
                                         datatype=views.text_datatypes(*texts_pictures),
                                         visible=not s.bundle.has_pictures), self.hits: {},
                **{box: gr.Column(visible=name == s.name) for name, boxes in self.example_boxes.items()
                   for box in boxes},
                **self.browse.reset(s)}
