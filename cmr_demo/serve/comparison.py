"""The leaderboard as far as the evidence carries it: objectives ranked by their mean over training seeds, each with
its sample standard deviation, 95 % interval and a paired test against the best, the paper's setting beside the
chosen one wherever tuning changed it; and the per-class and per-query figures with their seed spread.

Why here and not in the builder: the test is over the very per-query APs the bundle stores for every seed
(`seeds.safetensors`), so the page, the JSON API and Python answer the same rows, lab runs of a session included.
"""
from __future__ import annotations

import numpy as np

from cmr_demo.bundle.load import Bundle, ObjectiveView
from cmr_demo.serve.analytics import DIRECTIONS
from cmr_demo.stats import ALPHA, paired_test, summary, within_spread

PAPER_LABEL = "paper's setting"


def _per_query(view: ObjectiveView, prefix: str = "") -> np.ndarray | None:
    """[S, 2Q] test AP of every query (image queries, then text queries) under each seed; the served run's alone
    ([1, 2Q]) when the bundle kept no other seeds; None when nothing per query is stored."""
    if f"{prefix}i2t" in view.seed_ap:
        return np.concatenate([view.seed_ap[f"{prefix}{d}"] for d in DIRECTIONS], axis=1)
    per_query = view.metrics.get("per_query_ap")
    if prefix or not per_query:
        return None
    return np.concatenate([np.asarray(per_query[d], np.float64) for d in DIRECTIONS])[None]


def _row(name: str, view: ObjectiveView, paper: bool) -> dict:
    tuning = view.entry.get("tuning") or {}
    source = view.entry["paper"] if paper else {**view.metrics, **view.entry}
    seeds = (source.get("seeds") or {}).get("runs") or {"served": source["avg_map"]}
    variant = ("zero-shot" if view.kind == "zero-shot" else "lab run" if view.kind == "lab" else
               "paper" if paper else "chosen" if tuning.get("selected_on") else "as given")
    row = {"objective": name, "label": f"{name} ({PAPER_LABEL})" if paper else name, "variant": variant,
           "kind": view.kind, **{k: source.get(k) for k in ("i2t_map", "t2i_map", "avg_map")},
           "chance_map": view.metrics.get("chance_map"), "per_seed": [float(v) for v in seeds.values()],
           **summary(seeds.values()),
           "settings": dict(tuning.get("paper_settings" if paper else "settings") or {}),
           "grid": {} if paper else dict(tuning.get("grid") or {}),
           "selected_on": None if paper else tuning.get("selected_on"),
           "paper_setting": paper, "untuned": None if paper else tuning.get("untuned"),
           "trials": [] if paper else list(tuning.get("trials") or []),
           "best_epoch": None if paper else view.metrics.get("best_epoch"),
           "epoch_selected_on": view.metrics.get("selected_on")}
    return row


def leaderboard(bundle: Bundle, with_paper: bool = True) -> list[dict]:
    """Rows ordered by the mean average mAP over seeds: every objective at its chosen setting, then (with
    `with_paper`) at the paper's wherever tuning changed it. Each row is compared with the best, paired over the same
    test queries and seeds (`stats.paired_test`); `tied_with_best` where the difference is not significant at 5 %, None
    (not tested) where either side is a trained row with one seed."""
    rows, aps = [], []
    for name, view in bundle.objectives.items():
        for paper in ((False, True) if with_paper and view.entry.get("paper") else (False,)):
            rows.append(_row(name, view, paper))
            aps.append(_per_query(view, "paper_" if paper else ""))
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["mean"])
    rows, aps = [rows[i] for i in order], [aps[i] for i in order]
    best = aps[0]
    for n, (row, ap) in enumerate(zip(rows, aps)):
        if n == 0:
            row.update(difference_to_best=0.0, p_value=None, tied_with_best=True)
        elif (
            ap is None or best is None or ap.shape[1] != best.shape[1] or _one_seed(row, ap) or _one_seed(rows[0], best)
        ):
            row.update(difference_to_best=rows[0]["mean"] - row["mean"], p_value=None, tied_with_best=None)
        else:
            test = paired_test(best, ap)
            row.update(difference_to_best=test["difference"], p_value=test["p"], tied_with_best=test["p"] >= ALPHA)
    return rows


def _one_seed(row: dict, ap: np.ndarray) -> bool:
    """A trained row with one seed only (a lab run, a bundle built without --seeds): its seed variance is unknown, so
    no test can tell its difference from the best from seed noise (the frozen backbone has none: it is tested)."""
    return ap.shape[0] == 1 and row["kind"] != "zero-shot"


def class_ap(bundle: Bundle, direction: str = "avg") -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(class names, objectives, [C, O] AP per class as the mean over seeds, [C, O] half-width of its 95 % interval
    over seeds: 0 where there is one seed) for 'i2t', 't2i' or their average 'avg'."""
    dirs = list(DIRECTIONS) if direction == "avg" else [direction]
    names, labels = list(bundle.class_names), bundle.labels
    means = np.full((len(names), len(bundle.objectives)), np.nan)
    halves = np.zeros_like(means)
    for o, view in enumerate(bundle.objectives.values()):
        per_query = _per_query(view)
        if per_query is None:
            continue
        n = len(labels)
        cols = np.concatenate([per_query[:, i * n:(i + 1) * n] for i, d in enumerate(DIRECTIONS) if d in dirs], axis=1)
        col_labels = np.tile(labels, len(dirs))
        for c in range(len(names)):
            mask = col_labels == c
            if mask.any():
                s = summary(cols[:, mask].mean(1))
                means[c, o], halves[c, o] = s["mean"], s["ci_high"] - s["mean"]
    return names, list(bundle.objectives), means, halves


def query_spread(bundle: Bundle, a: str, b: str, direction: str, rows: np.ndarray) -> list[bool | None]:
    """For gallery items `rows` as queries in `direction`: is the AP difference between objectives a and b within the
    seed spread (the per-seed differences, seed by seed, disagree on its sign)? None where either has one seed."""
    ap = [bundle.objectives[o].seed_ap.get(direction) for o in (a, b)]
    if any(x is None or len(x) < 2 for x in ap):
        return [None] * len(rows)
    return [within_spread(ap[0][:, r] - ap[1][:, r]) for r in rows]  # paired by seed


def query_ap_range(bundle: Bundle, objective: str, direction: str, row: int) -> tuple[float, float] | None:
    """(lowest, highest) test AP of one gallery item as a query over the objective's training seeds; None with one."""
    ap = bundle.objectives[objective].seed_ap.get(direction)
    if ap is None or len(ap) < 2:
        return None
    return float(ap[:, row].min()), float(ap[:, row].max())


def typical_query_spread(bundle: Bundle) -> tuple[float, float] | None:
    """(median, 90th percentile), over trained objectives and gallery queries, of how far one query's AP moves between
    training seeds (highest minus lowest): below that, a difference between two objectives on one new query says
    little. None without seeds."""
    ranges = [ap.max(0) - ap.min(0) for view in bundle.objectives.values()
              for d in DIRECTIONS if (ap := view.seed_ap.get(d)) is not None and len(ap) > 1]
    if not ranges:
        return None
    median, p90 = np.percentile(np.concatenate(ranges), [50, 90])
    return float(median), float(p90)
