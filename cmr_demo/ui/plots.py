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

PALETTE = qualitative.Plotly + qualitative.Dark24  # one colour per class, 34 before repeating
MAX_ITEMS = 6000  # gallery items drawn per map (x 2 modalities); beyond this a class-stratified sample
WEBGL_FROM = 4000  # points per panel from which the gallery is drawn with WebGL (Scattergl)
HOVER_TEXT = 90  # characters of each caption in the hover text
SYMBOLS = {"image": "circle", "text": "diamond"}
HOVER = "<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>%{customdata[3]}<extra></extra>"


def _colour(label: int) -> str:
    return PALETTE[label % len(PALETTE)]


def map_figure(views: Sequence[dict], items: Sequence[dict], classes: Sequence[int] | None = None,
               pair_lines: bool = False, selected: int | None = None) -> go.Figure:
    """One panel per objective view (`RetrievalService.map_view`): colour = class, marker = modality.

    The query (a star), its top-k (black rings) and a selected gallery item (both modalities, large
    outlined markers) are drawn on every panel, so panels can be read side by side.
    """
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=[v["objective"] for v in views],
                        horizontal_spacing=0.03)
    labels = np.asarray(views[0]["labels"])
    keep = np.isin(labels, list(classes)) if classes else np.ones(len(labels), bool)
    chosen = int(keep.sum())
    keep = sampled(labels, keep, MAX_ITEMS)
    scatter = go.Scattergl if 2 * len(labels) > WEBGL_FROM else go.Scatter  # WebGL where SVG would crawl
    for col, view in enumerate(views, start=1):
        for modality in ("image", "text"):
            xy = np.asarray(view[f"{modality}_xy"])
            for c in np.unique(labels[keep]):
                rows = np.flatnonzero(keep & (labels == c))
                fig.add_trace(scatter(
                    x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=view["class_names"][c],
                    legendgroup=str(c), showlegend=col == 1 and modality == "image",
                    marker={"color": _colour(int(c)), "symbol": SYMBOLS[modality], "size": 6,
                            "opacity": 0.75 if modality == "image" else 0.5},
                    customdata=[(items[r]["id"], modality, view["class_names"][c], items[r]["text"][:HOVER_TEXT])
                                for r in rows], hovertemplate=HOVER), row=1, col=col)
        if pair_lines:
            _pair_lines(fig, view, np.flatnonzero(keep), col)
        _overlay(fig, view, items, selected, col)
    for modality, symbol in SYMBOLS.items():  # legend entries for the marker shapes
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{modality}s",
                                 marker={"color": "grey", "symbol": symbol, "size": 8}), row=1, col=1)
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 40, "b": 70}, legend={"itemsizing": "constant"},
                      hovermode="closest", template="plotly_white")
    query = views[0].get("query") if views else None
    notes = [_placement_note(query)] if query is not None else []
    if int(keep.sum()) < chosen:
        notes.append(f"showing {int(keep.sum()):,} of {chosen:,} gallery items (a class-stratified sample, the same "
                     f"on every map); the query, its top-k and the selected item are always drawn")
    if notes:
        fig.add_annotation(text="<br>".join(notes), xref="paper", yref="paper", x=0, y=-0.02, xanchor="left",
                           yanchor="top", showarrow=False, align="left", font={"size": 12})
    return fig


def sampled(labels: np.ndarray, keep: np.ndarray, max_items: int, seed: int = 0) -> np.ndarray:
    """`keep` thinned to at most `max_items` items, every class keeping its share (at least one item), the
    same rows for every call: a map of a large gallery stays a few MB and smooth, and still shows each class."""
    rows = np.flatnonzero(keep)
    if len(rows) <= max_items:
        return keep
    rng = np.random.default_rng(seed)
    out = np.zeros_like(keep)
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        take = max(1, max_items * len(members) // len(rows))  # floor: the total stays within max_items
        out[rng.choice(members, size=min(take, len(members)), replace=False)] = True
    return out


def _placement_note(query: dict) -> str:
    """How to read the star and the rings (they often sit apart: the modality gap)."""
    from cmr_demo.serve.placement import PLACE_K
    info = query.get("info") or {}
    verdict = ""
    if info:
        verdict = (f"<b>query</b>: <b>outside this gallery's world</b>, closest class {_escape(info['predicted_class'])}"
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
    """Grouped bars of image->text and text->image mAP per objective, with the chance level; with several
    training seeds, their mean average mAP as a point with a +-1 std bar (seed noise beside the differences)."""
    names = [r["objective"] for r in rows]
    fig = go.Figure([go.Bar(name="image -> text", x=names, y=[r["i2t_map"] for r in rows]),
                     go.Bar(name="text -> image", x=names, y=[r["t2i_map"] for r in rows])])
    seeded = [r for r in rows if r.get("seeds")]
    if seeded:
        fig.add_trace(go.Scatter(
            x=[r["objective"] for r in seeded], y=[r["seeds"]["mean"] for r in seeded], mode="markers",
            name=f"average, mean ± std over {seeded[0]['seeds']['n']} seeds", marker={"color": "black", "size": 7},
            error_y={"type": "data", "array": [r["seeds"]["std"] for r in seeded], "thickness": 1.5, "width": 6}))
    chance = rows[0].get("chance_map") if rows else None
    if chance is not None:  # a legend entry, not a label on the plot: a label there sat on the bars
        fig.add_trace(go.Scatter(x=names, y=[chance] * len(names), mode="lines", name=f"chance {chance:.3f}",
                                 line={"dash": "dash", "color": "grey"}, hoverinfo="skip"))
    fig.update_layout(barmode="group", height=360, yaxis_title="mAP@all (test split)", template="plotly_white",
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def heatmap_figure(class_names: Sequence[str], objectives: Sequence[str], grid: np.ndarray,
                   title: str = "AP per class and objective") -> go.Figure:
    """[C, O] mean AP as a heatmap with the values written in the cells."""
    fig = go.Figure(go.Heatmap(z=grid, x=list(objectives), y=list(class_names), colorscale="Viridis", zmin=0, zmax=1,
                               text=np.round(grid, 2), texttemplate="%{text}", hovertemplate=
                               "class %{y}<br>objective %{x}<br>AP %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=80 + 32 * len(class_names), template="plotly_white",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
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
