"""What a bundle's stored metrics say across objectives: the queries on which two objectives disagree most, how far
apart the paper's objectives land, the opening query, and objectives that trained as one model (the leaderboard
and per-class AP with their seed statistics: `comparison`). Plain functions over a loaded bundle: no index, no
backbone, nothing
encoded, so they answer for features-only bundles and lab runs alike."""
from __future__ import annotations

import numpy as np

from cmr_demo.bundle.load import Bundle

DIRECTIONS = ("i2t", "t2i")
PAPER_SIX = ("cl", "ml", "tl", "lrl", "ce", "pcl")  # the objectives the paper compares


def disagreements(bundle: Bundle, a: str, ap_a: np.ndarray, b: str, ap_b: np.ndarray, direction: str,
                  n: int = 20) -> list[dict]:
    """Gallery queries whose AP (`ap_a`, `ap_b`: [N], one per gallery item as a query in `direction`) differs most
    between objectives `a` and `b` (a - b)."""
    order = np.argsort(-np.abs(ap_a - ap_b), kind="stable")[:max(1, min(int(n), len(bundle.items)))]
    modality = "image" if direction == "i2t" else "text"
    names = bundle.class_names
    return [{"row": int(r), "id": bundle.items[r]["id"], "modality": modality,
             "class": names[int(bundle.labels[r])], f"ap_{a}": float(ap_a[r]), f"ap_{b}": float(ap_b[r]),
             "difference": float(ap_a[r] - ap_b[r]), "text": bundle.items[r]["text"]} for r in order]


def disagreeing_share(bundle: Bundle, names=PAPER_SIX, gap: float = 0.2) -> float | None:
    """Share of the test queries (both directions) whose AP differs by at least `gap` between some two of the
    objectives `names` (those the bundle has; None when it has fewer than two)."""
    present = [o for o in names if o in bundle.objectives]
    if len(present) < 2:
        return None
    share = []
    for d in DIRECTIONS:
        ap = np.stack([np.asarray(bundle.objectives[o].metrics["per_query_ap"][d]) for o in present])
        share.append(ap.max(0) - ap.min(0) >= gap)
    return float(np.concatenate(share).mean())


def spread(bundle: Bundle, names=PAPER_SIX) -> dict | None:
    """How far apart the paper's objectives land on this bundle: best and worst by average mAP (the mean over
    training seeds when the bundle has several), and the share of queries on which two of them disagree."""
    present = [o for o in names if o in bundle.objectives]
    if len(present) < 2:
        return None
    mean = {o: (bundle.objectives[o].seeds or {}).get("mean", bundle.objectives[o].metrics["avg_map"]) for o in present}
    best, worst = max(mean, key=mean.get), min(mean, key=mean.get)
    return {"best": best, "best_map": mean[best], "worst": worst, "worst_map": mean[worst],
            "spread": mean[best] - mean[worst], "disagreeing_share": disagreeing_share(bundle, present)}


def showcase(bundle: Bundle, names=PAPER_SIX, good: float = 0.85) -> int | None:
    """The gallery text that shows best why the objective matters, as a query: one the best of the paper's
    objectives (those the bundle has) retrieves well (AP >= `good`, by the build's stored AP) and on which most
    pairs of them disagree (AP 0.2 or more apart; then the largest spread). A pair of objectives failing alike
    while the rest agree says less than many that differ. None with fewer than two of them, or without texts."""
    present = [o for o in names if o in bundle.objectives]
    if len(present) < 2 or not any(it.get("text") for it in bundle.items):
        return None
    ap = np.stack([np.asarray(bundle.objectives[o].metrics["per_query_ap"]["t2i"]) for o in present])  # [O, N]
    pairs = (np.abs(ap[:, None] - ap[None]) >= 0.2).sum((0, 1)) / 2
    usable = (ap.max(0) >= good) & np.array([bool(it.get("text")) for it in bundle.items])
    score = np.where(usable, pairs + ap.std(0), -1)
    return int(np.argmax(score)) if score.max() >= 0 else None



def twins(bundle: Bundle, tolerance: float = 0.005) -> list[tuple[str, str]]:
    """Pairs of objectives whose test AP is the same (within `tolerance`) on every query in both directions: one
    model trained twice
    (e.g. `cl` when its push term never fires, leaving the pull term it shares with `ml`). Said on the page, so
    that two equal columns read as a finding, not a bug."""
    names = list(bundle.objectives)
    ap = {o: np.concatenate([np.asarray(bundle.objectives[o].metrics["per_query_ap"][d]) for d in DIRECTIONS])
          for o in names}
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if np.abs(ap[a] - ap[b]).max(initial=0) <= tolerance]


def showcase_reason(bundle: Bundle, row: int, names=PAPER_SIX) -> str:
    """Why `showcase` chose gallery text `row`, in one sentence: its AP under the best and the worst of the paper's
    objectives, and how many pairs of them differ by 0.2 or more."""
    present = [o for o in names if o in bundle.objectives]
    ap = {o: float(bundle.objectives[o].metrics["per_query_ap"]["t2i"][row]) for o in present}
    hi, lo = max(ap, key=ap.get), min(ap, key=ap.get)
    pairs = sum(abs(ap[a] - ap[b]) >= 0.2 for i, a in enumerate(present) for b in present[i + 1:])
    total = len(present) * (len(present) - 1) // 2
    return (f"This gallery caption opens Compare because the paper's objectives disagree on it: as a query it gets "
            f"AP {ap[hi]:.2f} under `{hi}` and {ap[lo]:.2f} under `{lo}`, and {pairs} of the {total} pairs of them "
            f"differ by 0.2 or more (the build's served seed).")
