"""The Search tab: a text, a picture or a gallery item as the query; results as pictures or a list; a click on a
result searches with it. Its handlers are the named endpoints `/search_text`, `/search_image`, `/search_item` and
`/query_info_image`."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from cmr_demo.serve.inputs import MAX_K, InputError, check_flag
from cmr_demo.serve.schema import SearchResult
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import views
from cmr_demo.ui.context import Context, class_for, stated_for
from cmr_demo.ui.errors import user_errors
from cmr_demo.ui.pager import QUIET, Pager, class_choices

IMAGE_EXAMPLES = range(0, 60, 6)  # gallery rows offered as image examples


def clear():
    """An empty value: a stated class is cleared when the query it was stated for changes."""
    return ""


def selected_row(evt: gr.SelectData) -> int | None:
    """The clicked row: galleries give an index, tables a [row, column] pair; anything else is no row."""
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) and evt.index else evt.index
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def render(result: SearchResult, s: RetrievalService):
    """A SearchResult -> (image gallery, text table, summary, hits for clicks)."""
    for note in result.notes:
        gr.Warning(note)  # a toast: the answer is still given
    texts = s.bundle.has_texts
    table = pd.DataFrame(views.text_rows(result, s.bundle.has_pictures, texts), columns=views.text_columns(texts))
    return (views.gallery_value(result, s), table, views.summary(result, s.class_names),
            {"bundle": s.name, "pictures": views.shows_pictures(result, s),
             "hits": [{"index": h.index, "modality": h.modality} for h in result.hits]})


class SearchTab:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _target(self, query, same_modality) -> str | None:
        """The modality to search: the query's own when asked, else None (the service's default: the other one)."""
        return query.modality if check_flag(same_modality, "same_modality") else None

    @user_errors
    def search_text(self, query: str, objective: str, k: int, query_class: str = "", same_modality: bool = False,
                    stated_for: str | None = None, bundle: str = "", request: gr.Request = None):
        """Text query -> ranked images with captions (or texts with same_modality), in `bundle` (default the first)."""
        s = self.ctx.service(bundle, getattr(request, "session_hash", None))
        q = s.text_query(query, class_for(query_class, query, stated_for))
        return render(s.search(q, self.ctx.resolve(s, "objective", objective), k, self._target(q, same_modality)), s)

    @user_errors
    def search_image(self, image: dict, objective: str, k: int, query_class: str = "", same_modality: bool = False,
                     bundle: str = "", request: gr.Request = None):
        """Uploaded image file -> ranked texts (or images with same_modality)."""
        s = self.ctx.service(bundle, getattr(request, "session_hash", None))
        s.encoder.require()  # a features-only bundle refuses first, before the upload is read
        q = s.image_query(self.ctx.gate.read(image), query_class)
        return render(s.search(q, self.ctx.resolve(s, "objective", objective), k, self._target(q, same_modality)), s)

    @user_errors
    def search_item(self, item_id: str, modality: str = "image", objective: str = "", k: int = 12,
                    same_modality: bool = False, bundle: str = "", request: gr.Request = None):
        """A gallery item (its id; its image or its text) as the query: its class is known, so AP is shown.
        The way to query a features-only bundle."""
        s = self.ctx.service(bundle, getattr(request, "session_hash", None))
        q = s.item_query(item_id, modality)
        return render(s.search(q, self.ctx.resolve(s, "objective", objective), k, self._target(q, same_modality)), s)

    def _search_row(self, s: RetrievalService, row, modality, objective, k, same_modality):
        if not isinstance(row, int):
            raise InputError("that result is no longer on screen: run the search again")
        q = s.item_query(row, modality)
        return *render(s.search(q, objective, k, self._target(q, same_modality)), s), None

    @user_errors
    def search_hit(self, state: dict, objective: str, k: int, same_modality: bool, bundle: str, evt: gr.SelectData,
                   request: gr.Request = None):
        """A click on a result: search with that gallery item (its class is known, so AP is shown)."""
        row, s = selected_row(evt), self.ctx.service(bundle, getattr(request, "session_hash", None))
        state = state if isinstance(state, dict) else {}
        hits = state.get("hits")
        if not isinstance(hits, list) or row is None or not 0 <= row < len(hits) or not isinstance(hits[row], dict) \
                or state.get("bundle") != s.name:
            raise InputError("that result is no longer on screen: run the search again")
        return self._search_row(s, hits[row].get("index"), hits[row].get("modality"), objective, k, same_modality)

    @user_errors
    def search_browsed(self, page: dict, objective: str, k: int, same_modality: bool, bundle: str,
                       evt: gr.SelectData, request: gr.Request = None):
        """A click in the gallery list: search with that item (its picture when shown, else its image features)."""
        page = page if isinstance(page, dict) else {}
        rows, row, s = page.get("rows"), selected_row(evt), self.ctx.service(bundle, getattr(request, "session_hash", None))
        if not isinstance(rows, list) or row is None or not 0 <= row < len(rows) or page.get("bundle") != s.name:
            raise InputError("that item is no longer listed: open the gallery list again")
        return self._search_row(s, rows[row], "image", objective, k, same_modality)

    @user_errors
    def query_info_image(self, image: dict, objective: str = "", bundle: str = "") -> dict:
        """What the bundle can say about an uploaded picture: its likely class, how sure, in or out of its world."""
        s = self.ctx.service(bundle)
        s.encoder.require()
        objective = self.ctx.resolve(s, "objective", objective)
        return s.query_info(s.image_query(self.ctx.gate.read(image)), objective or None).to_dict()

    @user_errors
    def show_target(self, state: dict):
        """Results drawn as pictures (images of a bundle that has them) or as a table (a separate step: the API
        stays plain)."""
        pictures = (state if isinstance(state, dict) else {}).get("pictures", True) is not False
        return gr.Gallery(visible=pictures), gr.Dataframe(visible=not pictures)

    def sync_class(self, query: str, query_class: str, stated: str | None):
        """After a search, clear a class the search ignored, so the page shows what was used."""
        return "" if class_for(query_class, query, stated) != query_class else gr.skip()

    def build(self) -> None:
        ctx, first = self.ctx, self.ctx.first
        d = ctx.defaults[ctx.names[0]]
        self.notice = gr.Markdown(views.features_only_notice(first), elem_id="features-only-notice")
        with gr.Row(visible=first.encodes) as self.query_row:
            with gr.Column(scale=3):
                self.text_in = gr.Textbox(label="Text query", placeholder=d.query, lines=1)
                self.text_class = gr.Dropdown(class_choices(first), value="",
                                              label="Class of this text (optional: shows AP, P@k)")
                self.text_btn = gr.Button("Search images", variant="primary", elem_id="search-text-btn")
            with gr.Column(scale=2):
                # image_mode=None: the file reaches inputs.load_image as uploaded (gradio's RGB conversion would
                # decode bombs before our size check, and clip 16-bit images and drop transparency badly)
                self.image_in = gr.Image(type="filepath", image_mode=None, label="Image query", height=180,
                                         sources=["upload", "clipboard"])
                self.image_class = gr.Dropdown(class_choices(first), value="", label="Class of this image (optional)")
                self.image_btn = gr.Button("Search texts", elem_id="search-image-btn")
        with gr.Row():
            self.item_in = gr.Textbox("", label="Gallery item id (its class is known: AP is shown)",
                                      placeholder=first.bundle.items[0]["id"], elem_id="item-query", scale=2)
            self.item_modality = gr.Radio(["image", "text"], value="image", label="its", scale=1)
            self.item_btn = gr.Button("Search with this item", elem_id="search-item-btn", scale=1)
        with gr.Row():
            self.objective = gr.Dropdown(first.objectives, value=first.best, label="Objective")
            self.k = gr.Slider(1, MAX_K, value=12, step=1, label="Top k")
            self.same = gr.Checkbox(False, label="Same modality (text → texts, image → images)")
        self.summary = gr.Markdown(elem_id="search-summary", label="summary")
        self.gallery = gr.Gallery(label="Image results (click one to search with it)", columns=6, height="auto",
                                  elem_id="results-gallery", allow_preview=False)
        self.table = gr.Dataframe(headers=views.TEXT_COLUMNS, label="Results (click a row to search with it)",
                                  interactive=False, visible=False, wrap=True, elem_id="results-table",
                                  column_widths=["60px", "76px", "96px", "80px", "auto", "200px"])
        self.hits = gr.State({})
        self.example_boxes, self.image_examples = {}, []
        for name, s in ctx.services.items():  # each bundle's own examples, shown while it is the bundle picked
            with gr.Column(visible=name == ctx.names[0]) as box:
                text_examples = [list(e) for e in views.text_examples(s)]
                if text_examples:
                    gr.Examples(text_examples, inputs=[self.text_in, self.text_class],
                                label=f"Text examples of {name} (with their class)")
                if s.bundle.has_pictures and s.encodes:
                    self.image_examples.append(gr.Examples(
                        [[str(s.bundle.image_path(i))] for i in IMAGE_EXAMPLES if i < s.size], inputs=[self.image_in],
                        label=f"Image examples of {name}"))
            self.example_boxes[name] = box
        self.browse = Pager(ctx, "Browse the gallery: click an item to search with it", "browse", "search with it")
        self.info_json = gr.JSON(visible=False)
        self.info_btn = gr.Button(visible=False)
        # the text the stated class belongs to, set whenever the class is set (a State outside a Tab would end the
        # group of tabs: keep it inside)
        self.text_stated = gr.State(None)

    def wire(self, bundle_pick) -> None:
        out = [self.gallery, self.table, self.summary, self.hits]
        text_inputs = [self.text_in, self.objective, self.k, self.text_class, self.same, self.text_stated, bundle_pick]
        item_inputs = [self.item_in, self.item_modality, self.objective, self.k, self.same, bundle_pick]
        click_inputs = [self.hits, self.objective, self.k, self.same, bundle_pick]
        browse_inputs = [self.browse.rows, self.objective, self.k, self.same, bundle_pick]
        events = [(self.text_btn.click, self.search_text, text_inputs, out, "search_text"),
                  (self.text_in.submit, self.search_text, text_inputs, out, None),
                  (self.image_btn.click, self.search_image,
                   [self.image_in, self.objective, self.k, self.image_class, self.same, bundle_pick], out, "search_image"),
                  (self.item_btn.click, self.search_item, item_inputs, out, "search_item"),
                  (self.item_in.submit, self.search_item, item_inputs, out, None),
                  (self.gallery.select, self.search_hit, click_inputs, [*out, self.image_in], None),
                  (self.table.select, self.search_hit, click_inputs, [*out, self.image_in], None),
                  (self.browse.gallery.select, self.search_browsed, browse_inputs, [*out, self.image_in], None),
                  (self.browse.table.select, self.search_browsed, browse_inputs, [*out, self.image_in], None)]
        for trigger, fn, inputs, outputs, api_name in events:
            # public endpoints take raw values: the app checks each itself (gradio's checks answer in its own words,
            # and its Image preprocessing would open a path named by the client); queued: outside the queue gradio
            # drops gr.Error's text and the page shows a bare "Error" badge
            visibility = {"api_name": api_name, "preprocess": False} if api_name else {"api_visibility": "private"}
            event = trigger(fn, inputs, outputs, **visibility).then(
                self.show_target, self.hits, [self.gallery, self.table], queue=False, **QUIET)
            if fn == self.search_text:
                event.then(self.sync_class, [self.text_in, self.text_class, self.text_stated], self.text_class,
                           queue=False, **QUIET)
        # A stated class belongs to the query it was stated for (✓/✗ and AP stay true). Typing clears it at once
        # (`input`: an example that sets a text and its class keeps both); any other change of the text is caught at
        # search time against the text recorded when the class was set. A new picture clears the image's class.
        self.text_in.input(clear, None, self.text_class, queue=False, **QUIET)
        self.text_class.change(stated_for, [self.text_in, self.text_class], self.text_stated, queue=False, **QUIET)
        self.image_in.change(clear, None, self.image_class, queue=False, **QUIET)
        self.info_btn.click(self.query_info_image, [self.image_in, self.objective, bundle_pick], self.info_json,
                            api_name="query_info_image", preprocess=False)
        self.browse.wire(bundle_pick)

    def reset(self, s: RetrievalService) -> dict:
        """Every component of the tab set for a newly picked bundle; results of the previous one cleared."""
        d = self.ctx.defaults[s.name]
        classes = class_choices(s)
        return {self.notice: views.features_only_notice(s), self.query_row: gr.Row(visible=s.encodes),
                self.text_in: gr.Textbox(value="", placeholder=d.query), self.text_class: gr.Dropdown(classes, value=""),
                self.image_in: None, self.image_class: gr.Dropdown(classes, value=""), self.text_stated: None,
                self.item_in: gr.Textbox(value="", placeholder=s.bundle.items[0]["id"]), self.summary: "",
                self.gallery: gr.Gallery(value=[], visible=s.bundle.has_pictures),
                self.table: gr.Dataframe(value=pd.DataFrame(columns=views.text_columns(s.bundle.has_texts)),
                                         visible=not s.bundle.has_pictures), self.hits: {},
                **{box: gr.Column(visible=name == s.name) for name, box in self.example_boxes.items()},
                **self.browse.reset(s)}
