"""The gallery as a list people browse: items by id or row, a page at a time, and where their pictures are served.

Why apart from search: paging and URLs need no index, no backbone and no embedding; the page's gallery list,
the JSON API's `/items` and `/media` routes use only this.
"""
from __future__ import annotations

from urllib.parse import quote

import numpy as np

from cmr_demo.bundle.load import Bundle
from cmr_demo.serve.inputs import InputError, check_class, check_choice, shown
from cmr_demo.serve.schema import MODALITIES, Query

PAGE_LIMIT = 500  # items per page at most


class Catalog:
    def __init__(self, bundle: Bundle, name: str):
        self.bundle, self.name = bundle, name
        self.size = len(bundle.items)
        self._rows_by_id = {it["id"]: n for n, it in enumerate(bundle.items)}

    def row_of(self, item_id: object) -> int | None:
        """The gallery row of an item id, or None when no item has it."""
        return self._rows_by_id.get(item_id) if isinstance(item_id, str) else None

    def item_query(self, item: object, modality: object = "image") -> Query:
        """A gallery item by id (a string, always: ids that look like numbers are ids) or by row number (an int);
        its class is known, so AP and P@k can be shown."""
        modality = check_choice(modality, MODALITIES, "modality")
        if isinstance(item, str) and not item.strip():
            raise InputError(f"the gallery item id is empty: type one (ids look like '{self.bundle.items[0]['id']}') "
                             f"or pick an example")
        if isinstance(item, str):
            row = self.row_of(item.strip())
            if row is None:
                raise InputError(f"no gallery item has id {item[:60]!r}; ids look like '{self.bundle.items[0]['id']}'")
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            row = int(item)
            if not 0 <= row < self.size:
                raise InputError(f"gallery row {shown(row, 30)} does not exist: rows go from 0 to {self.size - 1}")
        else:
            raise InputError(f"a gallery item is an id (text) or a row number; got {shown(item)}")
        it = self.bundle.items[row]
        return Query(modality, text=it["text"], item=row, label=int(it["label"]))

    def media_url(self, row: int) -> str | None:
        """The URL path of a gallery item's picture, by bundle name and item id (cmr_demo.serve.webserver); None when
        the item has no picture."""
        if not self.bundle.items[row].get("image"):
            return None
        return f"/media/{quote(self.name, safe='')}/{quote(self.bundle.items[row]['id'], safe='')}"

    def page(self, class_name: object = None, contains: object = None, offset: object = 0,
             limit: object = 60) -> tuple[list[int], int]:
        """(gallery rows of one page, how many rows match): items of a class and/or whose id contains a string, in
        gallery order. Browsing a gallery of any size sends one page at a time."""
        label = check_class(class_name, self.bundle.class_names)
        text = contains.strip().lower() if isinstance(contains, str) else ""
        rows = np.arange(self.size) if label is None else np.flatnonzero(self.bundle.labels == label)
        if text:
            rows = [r for r in rows.tolist() if text in self.bundle.items[r]["id"].lower()]
        offset = max(0, int(offset)) if _number(offset) else 0
        limit = min(max(1, int(limit)), PAGE_LIMIT) if _number(limit) else 60
        rows = list(rows)
        return [int(r) for r in rows[offset:offset + limit]], len(rows)

    def capabilities(self, encodes: bool) -> dict:
        """What this bundle can answer, for clients and the page (which inputs to show)."""
        return {"text_queries": encodes, "image_queries": encodes, "pictures": self.bundle.has_pictures,
                "texts": self.bundle.has_texts, "item_queries": True}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 2 ** 62
