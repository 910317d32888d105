"""The embedding map as a plotly figure, and the same figure recoloured in place (`recolouring`).

Why one trace per panel and modality, whatever the colouring, each point with its own colour and marker: a change
of colouring then changes styles only (colours, markers, hover text, the colour bar), never which traces exist, so
the page applies it with one `Plotly.update` from a small answer (browser.RECOLOUR_JS) instead of receiving and
drawing a new 400 kB figure; and few traces, because plotly's cost is per trace (restyling 160 traces, one per
class, took 340 ms; a new figure 280). Classes get legend marks of their own (no points; clicking one hides
nothing, so legend clicks are off: the class filter above the map does that). The figure and the recolouring come
from the same functions (`_point_style`, `_legend_style`), so both draw the same thing (a test applies one to the
other).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cmr_demo.serve.placement import MAP_ITEMS, sampled

PALETTE = qualitative.Plotly + qualitative.Dark24  # one colour per class, 34 before repeating
# classes grouped by colour and by shape (the shapes world) are drawn in their own colour with one marker per shape:
# 40 palette colours made crescents and rings, stars and squares look alike
COLOUR_WORDS = {"red": "#d62728", "yellow": "#e6b800", "green": "#2ca02c", "blue": "#1f77b4", "orange": "#ff7f0e",
                "purple": "#9467bd", "black": "#222222", "white": "#bbbbbb", "grey": "#7f7f7f", "gray": "#7f7f7f",
                "pink": "#e377c2", "brown": "#8c564b"}
# a shape group's marker: its own where plotly has one (or a look-alike), else the next unused of SHAPE_SYMBOLS
NAMED_SYMBOLS = {"star": "star", "circle": "circle", "square": "square", "triangle": "triangle-up", "cross": "cross",
                 "hexagon": "hexagon", "arrow": "arrow-right", "heart": "diamond", "crescent": "triangle-left",
                 "ring": "bowtie", "pentagon": "pentagon", "diamond": "diamond"}  # ring: circle-x read as a circle
SHAPE_SYMBOLS = ["x", "pentagon", "hourglass", "triangle-down", "star-diamond", "bowtie", "hexagram", "octagon",
                 "diamond-wide", "star-square", "square-x", "asterisk"]
MAX_ITEMS = MAP_ITEMS  # gallery items drawn per map (x 2 modalities); beyond this a class-stratified sample
WEBGL_FROM = 4000  # points per panel from which the gallery is drawn with WebGL (Scattergl)
HOVER_TEXT = 90  # characters of each caption in the hover text
SYMBOLS = {"image": "circle", "text": "diamond"}
HOVER = "<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>%{customdata[3]}<extra></extra>"
HOVER_VALUE = "<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>%{text} · %{customdata[3]}" \
              "<extra></extra>"
MODALITY_COLOURS = {"image": "#1f77b4", "text": "#ff7f0e"}
# continuous colourings (cmr_demo.serve.map_colours): one colour bar shared by every panel
COLOUR_AXES = {"sequential": {"colorscale": "Viridis", "cmin": 0, "cmax": 1},
               "diverging": {"colorscale": "RdBu", "cmin": -1, "cmax": 1, "cmid": 0},
               "rank": {"colorscale": "Viridis", "reversescale": True}}
# what a recolouring sets on every point trace (and on the legend's marks): the figure sets the same, nested
STYLE_KEYS = ("visible", "name", "text", "hovertemplate", "marker.color", "marker.symbol", "marker.size",
              "marker.opacity", "marker.coloraxis")


def _colour(label: int) -> str:
    return PALETTE[label % len(PALETTE)]


class ClassStyle:
    """How each class is drawn on a map. With a colour grouping and one other grouping (`about.class_groups`):
    the class's own colour and one marker per group of the other (images filled, texts open), the legend one entry
    per colour and per marker. Otherwise one palette colour per class, circles for images and diamonds for texts."""

    def __init__(self, class_names: Sequence[str], groups: dict | None = None):
        groups = groups or {}
        colour = next((g for k, g in groups.items() if k in ("colour", "color")), None)
        shape = next((g for k, g in groups.items() if k not in ("colour", "color")), None)
        self.grouped = bool(colour and shape and set(colour) <= set(COLOUR_WORDS) and len(shape) <= len(SHAPE_SYMBOLS))
        self.colours, self.symbols, self.legend = {}, {}, []
        if not self.grouped:
            return
        spare = iter(s for s in SHAPE_SYMBOLS if s not in NAMED_SYMBOLS.values())
        marks = {name: NAMED_SYMBOLS.get(name) or next(spare) for name in shape}
        self.legend = ([(name, {"color": COLOUR_WORDS[name], "symbol": "square"}) for name in colour] +
                       [(name, {"color": "#555555", "symbol": marks[name]}) for name in shape])
        for name, members in colour.items():
            self.colours.update({class_names.index(c): COLOUR_WORDS[name] for c in members if c in class_names})
        for name, members in shape.items():
            self.symbols.update({class_names.index(c): marks[name] for c in members if c in class_names})

    def marker(self, label: int, modality: str) -> dict:
        if not self.grouped or label not in self.colours or label not in self.symbols:
            return {"color": _colour(label), "symbol": SYMBOLS[modality]}
        symbol = self.symbols[label]
        return {"color": self.colours[label], "symbol": symbol if modality == "image" else f"{symbol}-open"}


def _colour_axis(colour: dict, size: int) -> dict:
    """The shared colour axis of a numeric colouring; ranks on a log scale (1 ... the gallery) with ranks as ticks."""
    axis = {**COLOUR_AXES[colour["scale"]], "colorbar": {"title": {"text": _wrap(colour["title"], 28), "side": "right"},
                                                         "thickness": 14, "len": 0.9}}
    if colour["scale"] == "rank":
        ticks = [t for t in (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000) if t <= size]
        axis.update(cmin=0, cmax=float(np.log10(max(size, 2))))
        axis["colorbar"].update(tickvals=np.log10(ticks).tolist(), ticktext=[str(t) for t in ticks])
    return axis


def _wrap(text: str, width: int) -> str:
    """A colour bar title broken into lines of about `width` characters (plotly does not wrap)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def _shown_value(colour: dict, v: float) -> str:
    if v != v:
        return "the query itself"
    if colour["scale"] == "rank":
        return f"rank {int(v)}"
    return f"AP {colour['base']} − AP {colour['other']}: {v:+.3f}" if colour["scale"] == "diverging" else f"AP {v:.3f}"


class Layout:
    """What every panel's point traces are: the gallery rows drawn (`keep`: a class filter, a class-stratified sample
    beyond MAX_ITEMS), one trace per panel and modality, the same whatever the colouring."""

    def __init__(self, views: Sequence[dict], classes: Sequence[int] | None, groups: dict | None):
        self.labels = np.asarray(views[0]["labels"])
        keep = np.isin(self.labels, list(classes)) if classes else np.ones(len(self.labels), bool)
        self.chosen = int(keep.sum())
        self.keep = sampled(self.labels, keep, MAX_ITEMS)
        self.rows = np.flatnonzero(self.keep)
        self.classes = [int(c) for c in np.unique(self.labels[self.keep])]
        self.style = ClassStyle(views[0]["class_names"], groups)
        self.class_names = views[0]["class_names"]

    def traces(self, count: int):
        """(panel from 1, modality) of every point trace, in drawing order."""
        for col in range(1, count + 1):
            for modality in ("image", "text"):
                yield col, modality

    def marks(self) -> list[tuple[str, dict]]:
        """The classes' legend marks: one per colour and per shape group, else one per class drawn."""
        if self.style.grouped:
            return self.style.legend
        return [(self.class_names[c], self.style.marker(c, "image")) for c in self.classes]


def _uid(col: int, modality: str) -> str:
    return f"p{col}|{modality}"


def _point_style(layout: Layout, view: dict, modality: str) -> dict:
    """One point trace's style under the view's colouring, as flat plotly keys (STYLE_KEYS), per point where the
    colouring varies by point."""
    colour = view.get("colour") or {"by": "class", "values": None}
    rows = layout.rows
    if colour.get("values") is not None:
        values = np.asarray(colour["values"][modality], dtype=float)[rows]
        shown = np.log10(values) if colour["scale"] == "rank" else values
        return {"visible": True, "name": f"{modality}s", "text": [_shown_value(colour, v) for v in values],
                "hovertemplate": HOVER_VALUE, "marker.color": np.where(np.isnan(shown), None, shown).tolist(),
                "marker.symbol": SYMBOLS[modality], "marker.size": 6, "marker.opacity": 0.85,
                "marker.coloraxis": "coloraxis"}
    if colour["by"] == "modality":
        return {"visible": True, "name": f"{modality}s", "text": None, "hovertemplate": HOVER,
                "marker.color": MODALITY_COLOURS[modality], "marker.symbol": SYMBOLS[modality], "marker.size": 6,
                "marker.opacity": 0.7, "marker.coloraxis": None}
    markers = {c: layout.style.marker(c, modality) for c in layout.classes}
    labels = layout.labels[rows]
    return {"visible": True, "name": f"{modality}s", "text": None, "hovertemplate": HOVER,
            "marker.color": [markers[c]["color"] for c in labels],
            "marker.symbol": [markers[c]["symbol"] for c in labels],
            "marker.size": 7 if layout.style.grouped else 6, "marker.opacity": 0.8 if modality == "image" else 0.6,
            "marker.coloraxis": None}


def _legend_marks(layout: Layout) -> list[str]:
    """The legend's own marks (no points): the classes (or their groups), then images and texts."""
    return [name for name, _ in layout.marks()] + ["images", "texts"]


def _legend_style(layout: Layout, by: str, name: str) -> dict:
    """A legend mark's style under colouring `by` (STYLE_KEYS): the classes' marks only while colouring by class."""
    classes = dict(layout.marks())
    modality = name[:-1]
    if name in classes:
        visible, colour, symbol = by == "class", classes[name]["color"], classes[name]["symbol"]
    elif layout.style.grouped and by == "class":
        visible, colour, symbol = True, "grey", "circle" if modality == "image" else "circle-open"
    else:
        visible, colour = True, MODALITY_COLOURS[modality] if by == "modality" else "grey"
        symbol = SYMBOLS[modality]
    return {"visible": visible, "name": name, "text": None, "hovertemplate": None, "marker.color": colour,
            "marker.symbol": symbol, "marker.size": 9, "marker.opacity": None, "marker.coloraxis": None}


def _nested(flat: dict) -> dict:
    """{"marker.color": x, "name": y} -> {"marker": {"color": x}, "name": y} (None values left out)."""
    out: dict = {}
    for key, value in flat.items():
        if value is None:
            continue
        head, _, tail = key.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def _layout_colour(views: Sequence[dict], size: int, drawing: str) -> dict:
    """The figure-wide part of a colouring: the shared colour bar (numeric colourings) and what the page reads (the
    colouring, and which drawing this is)."""
    colour = (views[0].get("colour") if views else None) or {"by": "class", "values": None}
    axis = _colour_axis(colour, size) if colour.get("values") is not None else None
    return {"coloraxis": axis, "meta": {"colour_by": colour["by"], "drawing": drawing}}


def recolouring(views: Sequence[dict], classes: Sequence[int] | None = None, groups: dict | None = None,
                drawing: str = "") -> dict:
    """What turns the figure `map_figure` drew for the same panels, classes and groups into the one it draws for the
    views' colouring: {"drawing", "traces": {id: flat style}, "legend": {id: flat style}, "layout", and the keys
    each style sets}, the ids being each trace's `meta` (plotly.py drops `uid`). The page applies it only to the
    drawing it was made for (browser.RECOLOUR_JS)."""
    layout = Layout(views, classes, groups)
    by = ((views[0].get("colour") or {}).get("by") or "class") if views else "class"
    traces = {_uid(col, m): _point_style(layout, views[col - 1], m) for col, m in layout.traces(len(views))}
    legend = {f"legend|{name}": _legend_style(layout, by, name) for name in _legend_marks(layout)}
    return {"drawing": drawing, "traces": traces, "legend": legend, "keys": list(STYLE_KEYS),
            "layout": _layout_colour(views, len(layout.labels), drawing)}


def map_figure(views: Sequence[dict], items: Sequence[dict], classes: Sequence[int] | None = None,
               pair_lines: bool = False, selected: int | None = None, groups: dict | None = None,
               selection: Sequence[tuple[int, str]] = (), drawing: str = "") -> go.Figure:
    """One panel per objective view (`RetrievalService.map_view`), its points coloured as the view says: by class
    (`ClassStyle`, with the bundle's class `groups`; filled or open by modality), by modality, or by a number per
    point (AP, AP difference, rank) on one colour bar shared by every panel.

    The query (a star), its top-k (black rings), a selected gallery item (both modalities, large outlined markers)
    and a selected region (`selection`: (row, modality) points, outlined) are drawn on every panel, so panels can be
    read side by side. Dragging selects a region (box; lasso from the tool bar). `drawing`: what the page calls
    this drawing (a recolouring applies to it only).
    """
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=[v["objective"] for v in views],
                        horizontal_spacing=0.03)
    layout = Layout(views, classes, groups)
    scatter = go.Scattergl if 2 * len(layout.labels) > WEBGL_FROM else go.Scatter  # WebGL where SVG would crawl
    rows, names = layout.rows, [layout.class_names[c] for c in layout.labels[layout.rows]]
    for col, modality in layout.traces(len(views)):
        view = views[col - 1]
        xy = np.asarray(view[f"{modality}_xy"])
        fig.add_trace(scatter(x=xy[rows, 0], y=xy[rows, 1], mode="markers", meta=_uid(col, modality),
                              showlegend=False, customdata=[(items[r]["id"], modality, name,
                                                             items[r]["text"][:HOVER_TEXT])
                                                            for r, name in zip(rows, names)],
                              **_nested(_point_style(layout, view, modality))), row=1, col=col)
    for col, view in enumerate(views, start=1):
        if pair_lines:
            _pair_lines(fig, view, layout.rows, col)
        _selection(fig, scatter, view, items, selection, col)
        _overlay(fig, view, items, selected, col)
    by = ((views[0].get("colour") or {}).get("by") or "class") if views else "class"
    for name in _legend_marks(layout):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", meta=f"legend|{name}",
                                 **_nested(_legend_style(layout, by, name))), row=1, col=1)
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    colour_layout = _layout_colour(views, len(layout.labels), drawing)
    if colour_layout["coloraxis"] is not None:
        fig.update_layout(coloraxis=colour_layout["coloraxis"])
    # the legend above the maps, in rows: at the side it scrolled once the query and a selected item joined it;
    # below them sit the notes on how to read the query
    fig.update_layout(height=600, margin={"l": 10, "r": 10, "t": 40, "b": 80}, hovermode="closest", dragmode="select",
                      legend={"itemsizing": "constant", "orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0,
                              "itemclick": False, "itemdoubleclick": False},
                      modebar={"orientation": "v"},  # across the top, the tool bar covered the legend's last entries
                      template="plotly_white", meta=colour_layout["meta"])  # read by the page's scripts
    _notes(fig, views, layout)
    return fig


def _notes(fig: go.Figure, views: Sequence[dict], layout: Layout) -> None:
    """Below the maps: how to read the query's star and rings, and how many items a sample shows."""
    query = views[0].get("query") if views else None
    notes = [_placement_note(query)] if query is not None else []
    if int(layout.keep.sum()) < layout.chosen:
        notes.append(f"showing {int(layout.keep.sum()):,} of {layout.chosen:,} gallery items (a class-stratified "
                     f"sample, the same on every map); the query, its top-k and the selected item are always drawn")
    if notes:
        fig.add_annotation(text="<br>".join(notes), xref="paper", yref="paper", x=0, y=-0.02, xanchor="left",
                           yanchor="top", showarrow=False, align="left", font={"size": 12})


def _selection(fig, scatter, view: dict, items: Sequence[dict], selection: Sequence[tuple[int, str]],
               col: int) -> None:
    """The selected region's points, outlined, on this panel (a box drawn on one map shows on all)."""
    if not selection:
        return
    for modality in ("image", "text"):
        rows = [r for r, m in selection if m == modality]
        if not rows:
            continue
        xy = np.asarray(view[f"{modality}_xy"])[rows]
        fig.add_trace(scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="selected region", legendgroup="region",
            showlegend=col == 1 and modality == selection[0][1],
            marker={"size": 11, "symbol": f"{SYMBOLS[modality]}-open", "color": "#e6007e", "line": {"width": 2}},
            customdata=[(items[r]["id"], modality, "selected", items[r]["text"][:HOVER_TEXT]) for r in rows],
            hovertemplate=HOVER), row=1, col=col)


def _placement_note(query: dict) -> str:
    """How to read the star and the rings (they often sit apart: the modality gap)."""
    from cmr_demo.serve.placement import PLACE_K
    info = query.get("info") or {}
    verdict = ""
    if info:
        verdict = (f"<b>query</b>: <b>outside this gallery's world</b>, closest class "
                   f"{_escape(info['predicted_class'])}"
                   if info.get("in_domain") is False else
                   f"<b>query</b>: looks like {_escape(info['predicted_class'])} ({info['confidence']:.0%})") + "<br>"
    return (verdict + f"★ query: placed at the similarity-weighted mean of its {PLACE_K} nearest gallery points of "
            f"either modality, usually its own ({query['modality']}s: the modality gap).<br>Black rings: its top "
            f"{len(query['hits'])} {query['target']}s, ranked in the full common space, so they need not be "
            f"its 2-D neighbours.")


def _pair_lines(fig: go.Figure, view: dict, rows: np.ndarray, col: int) -> None:
    """Thin grey segments from each image to its own caption: the modality gap at a glance."""
    a, b = np.asarray(view["image_xy"])[rows], np.asarray(view["text_xy"])[rows]
    xs = np.column_stack([a[:, 0], b[:, 0], np.full(len(rows), np.nan)]).ravel()
    ys = np.column_stack([a[:, 1], b[:, 1], np.full(len(rows), np.nan)]).ravel()
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "rgba(0,0,0,0.12)", "width": 1},
                             hoverinfo="skip", showlegend=False), row=1, col=col)


def _overlay(fig: go.Figure, view: dict, items: Sequence[dict], selected: int | None, col: int) -> None:
    query = view.get("query")
    if query is not None:
        hits = query["hits"]
        xy = np.asarray(view[f"{query['target']}_xy"])[hits] if hits else np.zeros((0, 2))
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"top {len(hits)}", legendgroup="hits", showlegend=col == 1,
            marker={"size": 13, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2},
                    "symbol": SYMBOLS[query["target"]]},
            customdata=[(items[r]["id"], query["target"], f"rank {n + 1}", items[r]["text"][:90])
                        for n, r in enumerate(hits)], hovertemplate=HOVER), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=[query["xy"][0]], y=[query["xy"][1]], mode="markers", name="query", legendgroup="query",
            showlegend=col == 1, marker={"size": 20, "symbol": "star", "color": "gold",
                                         "line": {"color": "black", "width": 1.5}},
            hovertemplate=f"<b>query</b><br>{_escape(query['description'])[:120]}<extra></extra>"), row=1, col=col)
    if selected is not None:
        pts = np.array([view["image_xy"][selected], view["text_xy"][selected]])
        fig.add_trace(go.Scatter(
            x=pts[:, 0], y=pts[:, 1], mode="markers+lines", name="selected item", legendgroup="selected",
            showlegend=col == 1, line={"color": "crimson", "width": 2, "dash": "dot"},
            marker={"size": 16, "symbol": ["circle-open", "diamond-open"], "color": "crimson",
                    "line": {"width": 3}},
            hovertemplate=f"<b>selected</b> {items[selected]['id']}<extra></extra>"), row=1, col=col)


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")
