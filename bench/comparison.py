"""The objective comparison each embedded bundle serves, against the comparison issue's targets.

    python bench/comparison.py [--bundle assets/demo --bundle assets/wikipedia] [--items 160]

Per bundle: the leaderboard as the page and /api/v1/leaderboard give it (mean over seeds, sample std, 95 %
interval, paired test against the best; each objective at its setting chosen on validation and, where that changed
it, at the paper's), which rows are tied with the best, and what tuning changed. On `--items` random gallery items
(both directions, the AP Compare shows): cl against ml and proxy-anchor against the best. For the default world:
the best mean, the spread of the paper's six and the share of queries that differ by >= 0.2 between two of them.
Writes bench/results/comparison.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmr_demo.provenance import save_result, stamp  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def sample_gap(service, a: str, b: str, rows: np.ndarray) -> float:
    """Mean AP of `a` minus `b` over gallery items `rows` as queries, both directions (the AP Compare shows)."""
    return float(np.mean([service.item_ap(a, d)[rows].mean() - service.item_ap(b, d)[rows].mean()
                          for d in ("i2t", "t2i")]))


def measure(folder: str, items: int, seed: int) -> dict:
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve import analytics
    from cmr_demo.serve.service import RetrievalService
    service = RetrievalService(load_bundle(folder, load_backbone=False))
    rows = service.leaderboard(with_paper=True)
    keep = ("label", "objective", "variant", "kind", "per_seed", "n", "mean", "std", "ci_low", "ci_high",
            "tied_with_best", "p_value", "difference_to_best", "settings", "grid", "selected_on")
    pick = np.random.default_rng(seed).choice(service.size, size=min(items, service.size), replace=False)
    served = [r for r in rows if not r["paper_setting"]]
    best = served[0]["objective"]
    out = {"bundle": service.name, "rows": [{k: r[k] for k in keep} for r in rows], "items": len(pick),
           "spread": analytics.spread(service.bundle)}
    if {"cl", "ml"} <= set(service.objectives):
        out["cl_minus_ml"] = sample_gap(service, "cl", "ml", pick)
    if "proxy-anchor" in service.objectives:
        out["best_minus_proxy_anchor"] = sample_gap(service, best, "proxy-anchor", pick)
        out["best"] = best
    return out


def markdown(result: dict) -> str:
    return "\n".join(f"#### `{b['bundle']}`\n\n{bundle_markdown(b)}" for b in result["bundles"])


def bundle_markdown(b: dict) -> str:
    """One bundle's leaderboard table and its figures against the targets (bench/report.py shows it too)."""
    from cmr_demo.ui.leaderboard import LEADERBOARD_COLUMNS, row_cells
    lines = ["| " + " | ".join(LEADERBOARD_COLUMNS) + " |", "|---" * len(LEADERBOARD_COLUMNS) + "|"]
    lines += ["| `" + " | ".join(row_cells(r)).replace(" | ", "` | ", 1) + " |" for r in b["rows"]]
    extra = []
    if "cl_minus_ml" in b:
        extra.append(f"on {b['items']} random gallery items (both directions): `cl` − `ml` = {b['cl_minus_ml']:+.3f} "
                     f"mean AP (target ≥ 0.05)")
    if "best_minus_proxy_anchor" in b:
        extra.append(f"`{b['best']}` − `proxy-anchor` = {b['best_minus_proxy_anchor']:+.3f} (target ≤ 0.08)")
    s = b.get("spread")
    if s:
        extra.append(f"the paper's six: best `{s['best']}` {s['best_map']:.3f}, worst `{s['worst']}` "
                     f"{s['worst_map']:.3f} "
                     f"(spread {s['spread']:.3f}, target ≥ 0.08); {s['disagreeing_share']:.0%} of test queries differ "
                     f"by ≥ 0.2 between two of them (target ≥ 15 %)")
    return "\n".join(lines + (["", "; ".join(extra) + "."] if extra else []))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", default=None)
    p.add_argument("--items", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    bundles = args.bundle or [str(ROOT / "assets" / "demo"), str(ROOT / "assets" / "wikipedia")]
    result = {**stamp(["python", "bench/comparison.py", *sys.argv[1:]]),
              "bundles": [measure(b, args.items, args.seed) for b in bundles]}
    print(save_result(RESULTS / "comparison", result, markdown(result)))


if __name__ == "__main__":
    main()
