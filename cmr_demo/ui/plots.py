"""Plotly figures of the service's plain data: embedding maps, the leaderboard and the class x objective heatmap.

Why separate from the service: figures are presentation (colours, markers, hover text), the
service returns numbers; both the app and the study scripts draw with these functions.
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


MODALITY_COLOURS = {"image": "#1f77b4", "text": "#ff7f0e"}
# continuous colourings (cmr_demo.serve.map_colours): one colour bar shared by every panel
COLOUR_AXES = {"sequential": {"colorscale": "Viridis", "cmin": 0, "cmax": 1},
               "diverging": {"colorscale": "RdBu", "cmin": -1, "cmax": 1, "cmid": 0},
               "rank": {"colorscale": "Viridis", "reversescale": True}}


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


def map_figure(views: Sequence[dict], items: Sequence[dict], classes: Sequence[int] | None = None,
               pair_lines: bool = False, selected: int | None = None, groups: dict | None = None,
               selection: Sequence[tuple[int, str]] = ()) -> go.Figure:
    """One panel per objective view (`RetrievalService.map_view`), its points coloured as the view says: by class
    (`ClassStyle`, with the bundle's class `groups`; filled or open by modality), by modality, or by a number per
    point (AP, AP difference, rank) on one colour bar shared by every panel.

    The query (a star), its top-k (black rings), a selected gallery item (both modalities, large outlined markers)
    and a selected region (`selection`: (row, modality) points, outlined) are drawn on every panel, so panels can be
    read side by side. Dragging selects a region (box; lasso from the tool bar).
    """
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=[v["objective"] for v in views],
                        horizontal_spacing=0.03)
    labels = np.asarray(views[0]["labels"])
    keep = np.isin(labels, list(classes)) if classes else np.ones(len(labels), bool)
    chosen = int(keep.sum())
    keep = sampled(labels, keep, MAX_ITEMS)
    scatter = go.Scattergl if 2 * len(labels) > WEBGL_FROM else go.Scatter  # WebGL where SVG would crawl
    style = ClassStyle(views[0]["class_names"] if views else [], groups)
    colour = (views[0].get("colour") if views else None) or {"by": "class", "values": None}
    for col, view in enumerate(views, start=1):
        if (view.get("colour") or {}).get("values") is not None:
            _numeric_points(fig, scatter, view, items, keep, col)
        elif colour["by"] == "modality":
            _modality_points(fig, scatter, view, items, keep, col)
        else:
            _class_points(fig, scatter, view, items, keep, style, col)
        if pair_lines:
            _pair_lines(fig, view, np.flatnonzero(keep), col)
        _selection(fig, scatter, view, items, selection, col)
        _overlay(fig, view, items, selected, col)
    if colour.get("values") is not None:
        fig.update_layout(coloraxis=_colour_axis(colour, len(labels)))
    by_class = colour["by"] == "class"
    grey = {"images": {"color": "grey", "symbol": "circle"}, "texts": {"color": "grey", "symbol": "circle-open"}}
    modality_marks = grey if style.grouped and by_class else {
        f"{m}s": {"color": MODALITY_COLOURS[m] if colour["by"] == "modality" else "grey", "symbol": s}
        for m, s in SYMBOLS.items()}
    for name, marker in [*(style.legend if by_class else []), *modality_marks.items()]:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, marker={**marker, "size": 9}),
                      row=1, col=1)
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    # the legend above the maps, in rows: at the side it scrolled once the query and a selected item joined it;
    # below them sit the notes on how to read the query
    fig.update_layout(height=600, margin={"l": 10, "r": 10, "t": 40, "b": 80}, hovermode="closest", dragmode="select",
                      legend={"itemsizing": "constant", "orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0},
                      modebar={"orientation": "v"},  # across the top, the tool bar covered the legend's last entries
                      template="plotly_white")
    query = views[0].get("query") if views else None
    notes = [_placement_note(query)] if query is not None else []
    if int(keep.sum()) < chosen:
        notes.append(f"showing {int(keep.sum()):,} of {chosen:,} gallery items (a class-stratified sample, the same "
                     f"on every map); the query, its top-k and the selected item are always drawn")
    if notes:
        fig.add_annotation(text="<br>".join(notes), xref="paper", yref="paper", x=0, y=-0.02, xanchor="left",
                           yanchor="top", showarrow=False, align="left", font={"size": 12})
    return fig


def _class_points(fig, scatter, view: dict, items: Sequence[dict], keep: np.ndarray, style: ClassStyle,
                  col: int) -> None:
    labels = np.asarray(view["labels"])
    for modality in ("image", "text"):
        xy = np.asarray(view[f"{modality}_xy"])
        for c in np.unique(labels[keep]):
            rows = np.flatnonzero(keep & (labels == c))
            fig.add_trace(scatter(
                x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=view["class_names"][c],
                legendgroup=str(c), showlegend=col == 1 and modality == "image" and not style.grouped,
                marker={**style.marker(int(c), modality), "size": 7 if style.grouped else 6,
                        "opacity": 0.8 if modality == "image" else 0.6},
                customdata=[(items[r]["id"], modality, view["class_names"][c], items[r]["text"][:HOVER_TEXT])
                            for r in rows], hovertemplate=HOVER), row=1, col=col)


def _modality_points(fig, scatter, view: dict, items: Sequence[dict], keep: np.ndarray, col: int) -> None:
    labels, rows = np.asarray(view["labels"]), np.flatnonzero(keep)
    for modality in ("image", "text"):
        xy = np.asarray(view[f"{modality}_xy"])
        fig.add_trace(scatter(
            x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=f"{modality}s", showlegend=False,
            marker={"color": MODALITY_COLOURS[modality], "symbol": SYMBOLS[modality], "size": 6, "opacity": 0.7},
            customdata=[(items[r]["id"], modality, view["class_names"][labels[r]], items[r]["text"][:HOVER_TEXT])
                        for r in rows], hovertemplate=HOVER), row=1, col=col)


def _numeric_points(fig, scatter, view: dict, items: Sequence[dict], keep: np.ndarray, col: int) -> None:
    """Points coloured by their value on the shared colour axis; ranks drawn as log10(rank). The query's own item
    (no rank) is drawn grey."""
    labels, rows, colour = np.asarray(view["labels"]), np.flatnonzero(keep), view["colour"]
    for modality in ("image", "text"):
        xy, values = np.asarray(view[f"{modality}_xy"]), np.asarray(colour["values"][modality], dtype=float)[rows]
        shown = np.log10(values) if colour["scale"] == "rank" else values
        fig.add_trace(scatter(
            x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=f"{modality}s", showlegend=False,
            marker={"color": np.where(np.isnan(shown), None, shown).tolist(), "coloraxis": "coloraxis",
                    "symbol": SYMBOLS[modality], "size": 6, "opacity": 0.85},
            customdata=[(items[r]["id"], modality, view["class_names"][labels[r]],
                         f"{_shown_value(colour, v)} · {items[r]['text'][:HOVER_TEXT]}") for r, v in zip(rows, values)],
            hovertemplate=HOVER), row=1, col=col)


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


def leaderboard_figure(rows: Sequence[dict]) -> go.Figure:
    """A forest plot, best mean at the top: per row (an objective, or one at the paper's setting) its mean average mAP
    over seeds with its 95 % interval, filled where the row is tied with the best (paired test), hollow where it is
    below; the served seed's image->text and text->image mAP as small marks beside. The axis spans the values, not
    0-1: the differences the test speaks of are hundredths, which a 0-1 axis of bars hid."""
    rows = list(reversed(rows))  # plotly draws the first category at the bottom
    fig = go.Figure()
    for name, key, symbol in (("I → T (served seed)", "i2t_map", "triangle-right"),
                              ("T → I (served seed)", "t2i_map", "triangle-left")):
        fig.add_trace(go.Scatter(y=[r["label"] for r in rows], x=[r[key] for r in rows], mode="markers", name=name,
                                 marker={"symbol": symbol, "size": 7, "color": "#9aa5b1"},
                                 hovertemplate="%{y}: %{x:.3f}<extra>" + name + "</extra>"))
    n = max((r["n"] for r in rows), default=1)
    for tied, symbol, label in ((True, "circle", "tied with the best"), (False, "circle-open", "below the best"),
                                (None, "circle-open-dot", "not tested (one seed)")):
        pick = [r for r in rows if r["tied_with_best"] is tied]
        if not pick:
            continue
        fig.add_trace(go.Scatter(
            y=[r["label"] for r in pick], x=[r["mean"] for r in pick], mode="markers",
            name=f"mean of {n} seeds, 95 % interval: {label}",
            marker={"color": "#1f3b73", "size": 10, "symbol": symbol, "line": {"width": 2, "color": "#1f3b73"}},
            error_x={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["mean"] for r in pick],
                     "arrayminus": [r["mean"] - r["ci_low"] for r in pick], "thickness": 1.5, "width": 4,
                     "color": "#1f3b73"},
            customdata=[[r["std"], r["n"], r["ci_low"], r["ci_high"]] for r in pick],
            hovertemplate="%{y}: %{x:.3f} ± %{customdata[0]:.3f} (n %{customdata[1]}), 95 % interval "
                          "%{customdata[2]:.3f}–%{customdata[3]:.3f}<extra></extra>"))
    chance = rows[0].get("chance_map") if rows else None
    fig.update_layout(height=150 + 22 * len(rows), template="plotly_white", margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis_title="mAP@all on the test split" + (f" (chance {chance:.3f})" if chance else ""),
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0})
    return fig


def heatmap_figure(class_names: Sequence[str], objectives: Sequence[str], grid: np.ndarray,
                   half: np.ndarray | None = None, title: str = "AP per class and objective",
                   wide: float = 0.1) -> go.Figure:
    """[C, O] AP per class (the mean over training seeds) as a heatmap with the values written in the cells; with
    `half` ([C, O] half-width of each cell's 95 % interval over seeds), the interval on hover and a cell whose
    interval is wider than +-`wide` marked with a '±' after its value: such a cell's colour says little."""
    half = np.zeros_like(grid) if half is None else half
    text = [[("" if np.isnan(v) else f"{v:.2f}" + ("±" if h > wide else "")) for v, h in zip(rv, rh)]
            for rv, rh in zip(grid, half)]
    fig = go.Figure(go.Heatmap(z=grid, x=list(objectives), y=list(class_names), colorscale="Viridis", zmin=0, zmax=1,
                               text=text, texttemplate="%{text}", customdata=half, hovertemplate=
                               "class %{y}<br>objective %{x}<br>AP %{z:.3f} ± %{customdata:.3f} (95 % interval over "
                               "seeds)<extra></extra>"))
    # 18 px a class: the 40 classes of the default world in 800 px, beside the leaderboard's plot on a laptop
    fig.update_layout(title={"text": title, "font": {"size": 12}}, height=80 + 18 * len(class_names),
                      template="plotly_white", margin={"l": 10, "r": 10, "t": 40, "b": 10}, font={"size": 10})
    return fig


def lab_figure(history: Sequence[dict], title: str = "", reference: float | None = None) -> go.Figure:
    """A lab run's curve as it trains: training loss (left axis) and the selection split's avg mAP (right
    axis) per epoch, the best epoch marked, and the bundle's own run of the same objective as a line."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs = [h["epoch"] for h in history]
    sel = next((k for k in (history[0] if history else {}) if k.endswith("_avg_map")), None)
    fig.add_trace(go.Scatter(x=epochs, y=[h["loss"] for h in history], name="training loss", mode="lines",
                             line={"color": "#636EFA"}), secondary_y=False)
    if sel:
        fig.add_trace(go.Scatter(x=epochs, y=[h[sel] for h in history], name=f"{sel.split('_')[0]} avg mAP",
                                 mode="lines", line={"color": "#EF553B"}), secondary_y=True)
        best = max(history, key=lambda h: h[sel])
        fig.add_trace(go.Scatter(x=[best["epoch"]], y=[best[sel]], name=f"best epoch ({best['epoch']})",
                                 mode="markers", marker={"size": 11, "color": "#EF553B", "symbol": "star"}),
                      secondary_y=True)
    if reference is not None:
        fig.add_trace(go.Scatter(x=[epochs[0] if epochs else 1, epochs[-1] if epochs else 2], y=[reference] * 2,
                                 name=f"the bundle's own run: best validation avg mAP {reference:.3f}", mode="lines",
                                 line={"dash": "dot", "color": "grey"}), secondary_y=True)
    fig.update_layout(title=title, height=340, template="plotly_white", margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.25}, xaxis_title="epoch")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="mAP@all", secondary_y=True)
    return fig
