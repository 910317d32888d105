"""What the Search tab answers, apart from how it is laid out and wired (cmr_demo.ui.search_tab): a text, a
picture or a gallery item as the query, a click on a result or a listed item as the next query, and a picture's
likely class. Each handler is a named endpoint or a private event of the page."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from cmr_demo.serve.inputs import InputError, check_flag
from cmr_demo.serve.schema import SearchResult
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import views
from cmr_demo.ui.context import Context, class_for, item_id as item_id_of, stated_for
from cmr_demo.ui.errors import user_errors


def selected_row(evt: gr.SelectData) -> int | None:
    """The clicked row: galleries give an index, tables a [row, column] pair; anything else is no row."""
    return as_row(evt.index)


def as_row(index) -> int | None:
    index = index[0] if isinstance(index, (list, tuple)) and index else index
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def render(result: SearchResult, s: RetrievalService, before: dict | None = None):
    """A SearchResult -> (image gallery, text table, summary, hits for clicks). Results are pictures for a bundle
    that has them, else the table. `before`: the page's hits state of the last search (None: a program's call, which
    gets both values). On the page the component not shown is left as it is, and which one shows is said only when it
    changes: gradio rebuilds a component and its API schema for every update that sets more than a value (63 ms of a
    Compare click), so a plain value is sent wherever it will do."""
    texts = s.bundle.has_texts
    pictures = s.bundle.has_pictures
    shown = views.shows_pictures(result, s)
    table = pd.DataFrame(views.text_rows(result, pictures, texts), columns=views.text_columns(texts, pictures))
    gallery = views.gallery_value(result, s, urls=before is not None)  # a program downloads paths, not URLs
    hits = {"bundle": s.name, "pictures": shown, "hits": [{"index": h.index, "modality": h.modality}
                                                          for h in result.hits]}
    summary = views.summary(result, s.class_names)
    if before is None:
        return gallery, table, summary, hits
    if isinstance(before, dict) and before.get("pictures") is shown and before.get("bundle") == s.name:
        return (gallery, gr.skip(), summary, hits) if shown else (gr.skip(), table, summary, hits)
    return gr.update(value=gallery, visible=shown), gr.update(value=table, visible=not shown), summary, hits


class SearchEndpoints:
    """The Search tab's named endpoints (`/search_text`, `/search_image`, `/search_item`, `/query_info_image`) and
    its result clicks: request in, rendered answer out, no component of the page in sight."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _target(self, query, same_modality) -> str | None:
        """The modality to search: the query's own when asked, else None (the service's default: the other one)."""
        return query.modality if check_flag(same_modality, "same_modality") else None

    @user_errors
    def search_text(self, query: str, objective: str, k: int, query_class: str = "", same_modality: bool = False,
                    stated_for: str | None = None, bundle: str = "", before: dict | None = None,
                    request: gr.Request = None):
        """Text query -> ranked images with captions (or texts with same_modality), in `bundle` (default the first)."""
        s = self.ctx.for_request(bundle, request)
        q = s.text_query(query, class_for(query_class, query, stated_for))
        return self._answer(s, q, objective, k, same_modality, before)

    @user_errors
    def search_image(self, image: dict, objective: str, k: int, query_class: str = "", same_modality: bool = False,
                     bundle: str = "", before: dict | None = None, request: gr.Request = None):
        """Uploaded image file -> ranked texts (or images with same_modality)."""
        s = self.ctx.for_request(bundle, request)
        s.encoder.require()  # a features-only bundle refuses first, before the upload is read
        q = s.image_query(self.ctx.uploads.read(image), query_class, self.ctx.uploads.source(image))
        return self._answer(s, q, objective, k, same_modality, before)

    @user_errors
    def search_item(self, item_id: str, modality: str = "image", objective: str = "", k: int = 12,
                    same_modality: bool = False, bundle: str = "", before: dict | None = None,
                    request: gr.Request = None):
        """A gallery item (its id; its image or its text) as the query: its class is known, so AP is shown.
        The way to query a features-only bundle."""
        s = self.ctx.for_request(bundle, request)
        q = s.item_query(item_id_of(item_id), modality)
        return self._answer(s, q, objective, k, same_modality, before)

    def _answer(self, s: RetrievalService, q, objective, k, same_modality, before):
        """The search of `q` under `objective` (a program's default resolved), rendered for the page or a program."""
        return render(s.search(q, self.ctx.resolve(s, "objective", objective), k, self._target(q, same_modality)), s,
                      before)

    def _search_row(self, s: RetrievalService, row, modality, objective, k, same_modality, before):
        if not isinstance(row, int):
            raise InputError("that result is no longer on screen: run the search again")
        q = s.item_query(row, modality)
        return *render(s.search(q, objective, k, self._target(q, same_modality)), s, before), None

    @user_errors
    def search_hit(self, state: dict, objective: str, k: int, same_modality: bool, bundle: str,
                   evt: gr.SelectData, request: gr.Request = None):
        """A click on a result: search with that gallery item (its class is known, so AP is shown)."""
        row, s = selected_row(evt), self.ctx.for_request(bundle, request)
        state = state if isinstance(state, dict) else {}
        hits = state.get("hits")
        if not isinstance(hits, list) or row is None or not 0 <= row < len(hits) or not isinstance(hits[row], dict) \
                or state.get("bundle") != s.name:
            raise InputError("that result is no longer on screen: run the search again")
        return self._search_row(s, hits[row].get("index"), hits[row].get("modality"), objective, k, same_modality,
                                state)

    @user_errors
    def search_browsed(self, page: dict, objective: str, k: int, same_modality: bool, bundle: str, before: dict,
                       evt: gr.SelectData, request: gr.Request = None):
        """A click in the gallery list: search with that item (its picture when shown, else its image features)."""
        page = page if isinstance(page, dict) else {}
        rows, row, s = page.get("rows"), selected_row(evt), self.ctx.for_request(bundle, request)
        if not isinstance(rows, list) or row is None or not 0 <= row < len(rows) or page.get("bundle") != s.name:
            raise InputError("that item is no longer listed: open the gallery list again")
        return self._search_row(s, rows[row], "image", objective, k, same_modality, before)

    @user_errors
    def search_text_page(self, query: str, objective: str, k: int, query_class: str, same_modality: bool,
                         stated_for: str | None, bundle: str, before: dict | None = None,
                         request: gr.Request = None):
        """`search_text` as the page runs it: the answer, and the class box emptied when the class it held was stated
        for another text (the search ignored it: the page shows what was used), in the same round trip."""
        answer = self.search_text(query, objective, k, query_class, same_modality, stated_for, bundle, before, request)
        return *answer, ("" if class_for(query_class, query, stated_for) != query_class else gr.skip())

    @user_errors
    def search_text_example(self, query: str, objective: str, k: int, query_class: str, same_modality: bool,
                            bundle: str, before: dict | None = None, request: gr.Request = None):
        """A text example clicked (it set the text and its class together): the answer, and the text that class
        was stated for (`stated_for`), in one round trip."""
        return *self.search_text(query, objective, k, query_class, same_modality, None, bundle, before, request), \
            stated_for(query, query_class)

    @user_errors
    def search_drawing(self, drawing: dict, objective: str, k: int, same_modality: bool = False, bundle: str = "",
                       before: dict | None = None, query_class: str = "", request: gr.Request = None):
        """A drawing made on the page's canvas -> ranked texts (or pictures with same_modality): the canvas's
        flattened picture (`composite`), read like any uploaded picture. The page states no class for it (the
        picture box's class belongs to the picture); a program may (`query_class`)."""
        s = self.ctx.for_request(bundle, request)
        s.encoder.require()
        composite = drawing.get("composite") if isinstance(drawing, dict) else None
        if composite is None:
            raise InputError("the canvas is empty: draw a shape (a star, a heart, a ring ...) in a colour, then search")
        q = s.image_query(self.ctx.uploads.read(composite), query_class, "your drawing")
        extrema = q.image.getextrema() if q.image is not None else ((0, 1),)
        if all(low == high for low, high in (extrema if isinstance(extrema[0], tuple) else [extrema])):  # one colour
            raise InputError("the canvas is empty: draw a shape (a star, a heart, a ring ...) in a colour, then search")
        return self._answer(s, q, objective, k, same_modality, before)

    @user_errors
    def query_info_image(self, image: dict, objective: str = "", bundle: str = "") -> dict:
        """What the bundle can say about an uploaded picture: its likely class, how sure, in or out of its world."""
        s = self.ctx.service(bundle)
        s.encoder.require()
        objective = self.ctx.resolve(s, "objective", objective)
        return s.query_info(s.image_query(self.ctx.uploads.read(image)), objective or None).to_dict()
