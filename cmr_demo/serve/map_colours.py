"""What a map's points are coloured by (the Embedding map and `POST /api/v1/map`): class, modality, each gallery
item's AP as a query under the shown objective, the difference of that AP between the shown objective and another
(where in the common space one beats the other), or each item's rank for a query. And a selection of points (a
lasso on the map) read back as items with their AP under each objective.

Why per point and not per item: an item is two points, its picture and its text, and each is a different query
(its picture searches the texts, 'i2t'; its text the pictures, 't2i') with its own AP. The values are the ones
Compare shows for that item and modality (`RetrievalService.item_ap`: computed from the served embeddings by
Compare's ranking up to 5,000 items; past that, the build's stored values, which may differ in the third decimal).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from cmr_demo.serve.inputs import InputError, check_choice, shown
from cmr_demo.serve.placement import sampled
from cmr_demo.serve.ranking import scores_of

DIRECTION = {"image": "i2t", "text": "t2i"}  # a point's modality -> the direction it queries in
MAX_POINTS_ITEMS = 20_000  # items an API map answer may list (x 2 points each)
MAX_SELECTED = 20_000  # points a selection may name (a lasso over a 6,000-item map draws at most 12,000)


@dataclass(frozen=True)
class ColourBy:
    """One way to colour a map. `scale`: 'category' (one colour per value), 'sequential' (0..1), 'diverging' (centred
    on 0) or 'rank' (1 is the best, drawn on a log scale). `needs`: what else it takes ('other': a second objective,
    'query': a text or item)."""
    name: str
    label: str  # for a picker
    scale: str
    needs: str | None = None

    def title(self, objective: str, other: str | None) -> str:
        """What the colour means, for a colour bar or legend (`objective`: the AP difference's first term)."""
        return {"class": "class", "modality": "modality",
                "ap": "AP of each point as a query, under each map's objective",
                "ap_diff": f"AP {objective} − AP {other}: blue where {objective} is better, red where {other} is",
                "rank": "rank for the query under each map's objective (1 = first)"}[self.name]


COLOUR_BY = {c.name: c for c in (
    ColourBy("class", "class", "category"),
    ColourBy("modality", "modality", "category"),
    ColourBy("ap", "AP as a query", "sequential"),
    ColourBy("ap_diff", "AP difference to a second objective", "diverging", "other"),
    ColourBy("rank", "rank for the query", "rank", "query"),
)}


def check_colour_by(name: object) -> ColourBy:
    return COLOUR_BY[check_choice(name or "class", list(COLOUR_BY), "color_by")]


def point_aps(service, objective: str) -> dict[str, np.ndarray]:
    """{modality: [N] AP of each item's picture / text as a query under `objective`} (Compare's numbers)."""
    return {m: service.item_ap(objective, d) for m, d in DIRECTION.items()}


def query_ranks(service, objective: str, emb: np.ndarray, item: int | None, modality: str) -> dict[str, np.ndarray]:
    """{modality: [N] rank (1 = first) of each gallery point for the query embedding `emb`}: the exact ranking (one
    matrix-vector product, stable sort: what search gives wherever it scans the whole gallery; past 15,000 items
    search may use an approximate index, and the map then rings the exact top-k these ranks give). In the query's
    own modality a gallery item query is left out (NaN), as a same-modality search leaves it out."""
    out = {}
    for m in DIRECTION:
        scores = scores_of(service._gallery(objective, m), emb)
        if item is not None and m == modality:
            scores[item] = -np.inf
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(len(scores))
        ranks[order] = np.arange(1, len(scores) + 1)
        if item is not None and m == modality:
            ranks[item] = np.nan
        out[m] = ranks
    return out


def values(service, colour: ColourBy, objective: str, base: str | None, other: str | None,
           ranks: dict | None) -> dict | None:
    """{modality: [N] value per point} for a numeric colouring (AP under the map's `objective`, AP `base` minus AP
    `other`, or the query's `ranks`), None for class and modality."""
    if colour.name == "ap":
        return point_aps(service, objective)
    if colour.name == "ap_diff":
        mine, theirs = point_aps(service, base), point_aps(service, other)
        return {m: mine[m] - theirs[m] for m in DIRECTION}
    if colour.name == "rank":
        return ranks
    return None


def parse_selection(text: object, service) -> list[tuple[int, str]]:
    """A selection as the page sends it (JSON: [[id, modality], ...], from the map's lasso or box) -> [(row,
    modality)], ids checked against the gallery, duplicates dropped; InputError for anything else. Empty: []."""
    if text in (None, ""):
        return []
    if not isinstance(text, str) or len(text) > MAX_SELECTED * 200:
        raise InputError("the selection is not one the map sent: select the points again")
    try:
        pairs = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: brackets nested thousands deep
        raise InputError("the selection is not one the map sent: select the points again") from None
    if not isinstance(pairs, list) or len(pairs) > MAX_SELECTED:
        raise InputError(f"a selection is a list of at most {MAX_SELECTED:,} [id, modality] pairs; got {shown(pairs)}")
    out: dict[tuple[int, str], None] = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], str)
                and pair[1] in DIRECTION):
            raise InputError(f"a selected point is [id, 'image' | 'text']; got {shown(pair)}")
        row = service.catalog.row_of(pair[0])
        if row is None:
            raise InputError(f"no gallery item has id {pair[0][:60]!r}: select the points again")
        out[(row, pair[1])] = None
    return list(out)


def selection_summary(service, selection: list[tuple[int, str]], objectives: list[str]) -> tuple[list[dict], dict]:
    """The selected points as rows (id, modality, class, text, AP under each objective), those where the first two
    objectives differ most first, and the mean AP per objective over them."""
    aps = {o: point_aps(service, o) for o in objectives}
    items = service.bundle.items
    rows = [{"row": r, "id": items[r]["id"], "modality": m, "class": service.class_names[int(service.bundle.labels[r])],
             "text": items[r]["text"], "ap": {o: float(aps[o][m][r]) for o in objectives}} for r, m in selection]
    means = {o: float(np.mean([row["ap"][o] for row in rows])) if rows else None for o in objectives}
    if len(objectives) > 1:
        a, b = objectives[:2]
        rows.sort(key=lambda row: -abs(row["ap"][a] - row["ap"][b]))  # stable: ties keep the selection's order
    return rows, means


def answer(service, view: dict, limit: int) -> dict:
    """A map view as `POST /api/v1/map` answers it: the points {id, modality, class, x, y, value} of at most `limit`
    items (a class-stratified sample beyond, the same on every call, the query's top-k always in), the query's place
    and top-k ids, and what the values mean. `value` is the class name or modality for those colourings, else a
    number (null for the query's own item under `rank`)."""
    labels, items, names = service.bundle.labels, service.bundle.items, service.class_names
    keep = sampled(labels, np.ones(len(labels), bool), limit)
    query = view.get("query")
    if query is not None:
        keep[query["hits"]] = True
    rows = np.flatnonzero(keep)
    colour, numbers = view["colour"], view["colour"]["values"]
    points = []
    for m in DIRECTION:
        xy = np.asarray(view[f"{m}_xy"], dtype=float)
        for r in rows.tolist():
            if numbers is not None:
                v = float(numbers[m][r])
                value = round(v, 4) if v == v else None
            else:
                value = names[int(labels[r])] if colour["by"] == "class" else m
            points.append({"id": items[r]["id"], "modality": m, "class": names[int(labels[r])],
                           "x": round(float(xy[r, 0]), 4), "y": round(float(xy[r, 1]), 4), "value": value})
    placed = None if query is None else {
        "x": float(query["xy"][0]), "y": float(query["xy"][1]), "modality": query["modality"],
        "description": query["description"], "target": query["target"], "ap": query["ap"],
        "hits": [items[r]["id"] for r in query["hits"]]}
    return {"objective": view["objective"], "color_by": colour["by"], "other": colour["other"],
            "scale": colour["scale"], "title": colour["title"], "items": len(items), "shown_items": len(rows),
            "points": points, "query": placed}
