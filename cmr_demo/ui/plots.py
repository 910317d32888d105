"""Plotly figures of the service's plain data: the leaderboard, the class x objective heatmap and the lab's curve (the
embedding maps: cmr_demo.ui.map_figure).

Why separate from the service: figures are presentation (colours, markers, hover text), the
service returns numbers; both the app and the study scripts draw with these functions.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


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
