"""A paged, filterable list of the gallery (60 items a page: thumbnails, or a table for a bundle without pictures)
inside a closed accordion, filled when first opened.

Why paged: sending every thumbnail took 17 s at 12,000 items; a page costs the same at any size. Search uses one
to query with an item, the map tab one to select an item; `rows` (a State) holds the page's row numbers for
their click handlers.
"""
from __future__ import annotations

import functools

import gradio as gr

from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import pictures
from cmr_demo.ui.context import PAGE, Context, page_number, step_page
from cmr_demo.ui.errors import user_errors

QUIET = {"api_visibility": "private", "show_progress": "hidden"}


def class_choices(s: RetrievalService, none: str = "(unknown)") -> list[tuple[str, str]]:
    return [(none, "")] + [(c, c) for c in s.class_names]


def browse_page(ctx: Context, class_name: str, contains: str, page: int, bundle: str):
    """One page of the gallery list (of a class, ids containing a string): thumbnails when the bundle has pictures,
    else a table; the rows shown, for clicks; and where in the list this page is."""
    s = ctx.service(bundle)
    page = page_number(page)
    rows, total = s.catalog.page(class_name, contains, (page - 1) * PAGE, PAGE)
    last = max(1, -(-total // PAGE))
    if page > last:
        page = last
        rows, total = s.catalog.page(class_name, contains, (page - 1) * PAGE, PAGE)
    items = s.bundle.items
    thumbs = [(pictures.picture(s, r), f"{items[r]['id']} · {s.class_names[items[r]['label']]}") for r in rows] \
        if s.bundle.has_pictures else []
    texts = s.bundle.has_texts
    table = [[items[r]["id"], s.class_names[items[r]["label"]], *([items[r]["text"][:120]] if texts else [])]
             for r in rows]
    shown_range = f"items {(page - 1) * PAGE + 1}–{(page - 1) * PAGE + len(rows)} of {total}" if rows else \
        "no item matches: clear the filters"
    return (
        gr.Gallery(thumbs, visible=s.bundle.has_pictures),
        gr.Dataframe(table, headers=["id", "class", *(["text"] if texts else [])], visible=not s.bundle.has_pictures),
        f"{shown_range} · page {page} of {last}",
        page,
        {"bundle": s.name, "rows": rows},
    )


class Pager:
    """The accordion's components; `wire` connects them to `bundle_pick`, `reset` empties them for a new bundle."""

    def __init__(self, ctx: Context, title: str, key: str, action: str):
        self.ctx, first = ctx, ctx.first
        with gr.Accordion(title, open=False) as self.box:
            with gr.Row():
                self.klass = gr.Dropdown(class_choices(first, "(all classes)"), value="", label="class", scale=2,
                                         elem_id=f"{key}-class")
                self.contains = gr.Textbox("", label="id contains", scale=2)
                self.prev = gr.Button("◀ previous", scale=1, elem_id=f"{key}-prev")
                self.num = gr.Number(1, label="page", precision=0, minimum=1, scale=1)
                self.next = gr.Button("next ▶", scale=1, elem_id=f"{key}-next")
            self.where = gr.Markdown(elem_id=f"{key}-where")
            self.gallery = gr.Gallery(columns=10, height=420, allow_preview=False, label="Gallery",
                                      elem_id=f"{key}-gallery", visible=first.bundle.has_pictures)
            self.table = gr.Dataframe(headers=["id", "class", "text"], interactive=False, wrap=True,
                                      visible=not first.bundle.has_pictures, elem_id=f"{key}-table",
                                      label=f"Gallery items (click one to {action})")
            self.rows = gr.State({})

    @user_errors
    def show(self, class_name: str, contains: str, page: int, bundle: str):
        return browse_page(self.ctx, class_name, contains, page, bundle)

    def wire(self, bundle_pick) -> None:
        inputs = [self.klass, self.contains, self.num, bundle_pick]
        outputs = [self.gallery, self.table, self.where, self.num, self.rows]
        show = self.show
        self.box.expand(show, inputs, outputs, **QUIET)
        for trigger in (self.klass.change, self.contains.submit, self.num.submit):
            trigger(show, inputs, outputs, **QUIET)
        for button, step in ((self.prev, -1), (self.next, 1)):
            button.click(functools.partial(step_page, step=step), self.num, self.num, queue=False, **QUIET).then(
                show, inputs, outputs, **QUIET)

    def reset(self, s: RetrievalService) -> dict:
        """Updates for a newly picked bundle: closed, filters cleared, emptied (filled again when opened)."""
        return {self.klass: gr.Dropdown(class_choices(s, "(all classes)"), value=""), self.contains: "", self.num: 1,
                self.gallery: gr.Gallery(value=None, visible=s.bundle.has_pictures),
                self.table: gr.Dataframe(value=[], visible=not s.bundle.has_pictures), self.where: "",
                self.rows: {}, self.box: gr.Accordion(open=False)}
