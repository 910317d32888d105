"""The leaderboard's table for people: each row of `comparison.leaderboard` as five short cells (objective, setting,
mean ± std over seeds, interval, the paired test against the best), for Compare and the About tab."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cmr_demo.train.tuning import settings_text

if TYPE_CHECKING:  # the cells are plain functions of a row: bench/comparison.py formats its JSON rows with them
    from cmr_demo.serve.service import RetrievalService

LEADERBOARD_COLUMNS = ["objective", "setting", "avg mAP: mean ± std (seeds)", "95 % interval", "against the best"]


def setting_cell(row: dict) -> str:
    """'margin=1, form=1 · chosen on validation', 'paper's: alpha=32, delta=0.1', or why there is no setting."""
    values = settings_text(row["settings"])
    if row["variant"] == "paper":
        return f"the paper's: {values}"
    if row["variant"] == "chosen":
        return f"{values} · chosen on validation"
    return {"zero-shot": "no training (the backbone alone)", "lab run": "your lab run"}.get(
        row["variant"], values or "no option to tune")


def seeds_cell(row: dict) -> str:
    """'0.786 ± 0.004 (3)', or why there is no spread: the backbone alone has no training seed."""
    if row["n"] > 1:
        return f"{row['mean']:.3f} ± {row['std']:.3f} ({row['n']})"
    return f"{row['mean']:.3f} (" + ("no seed" if row["kind"] == "zero-shot" else "1 seed") + ")"


def interval_cell(row: dict) -> str:
    # word joiners around the dash: an interval is one word, never broken across lines in a narrow cell
    return f"{row['ci_low']:.3f}\u2060–\u2060{row['ci_high']:.3f}" if row["n"] > 1 else "–"


def versus_cell(row: dict) -> str:
    """'best', 'tied (p 0.41)', '−0.021 (p < 0.001)': the paired test against the best (glossary: 'tied')."""
    if row["difference_to_best"] == 0.0 and row["p_value"] is None:
        return "best"
    if row["p_value"] is None:
        return f"−{row['difference_to_best']:.3f} (not tested)"
    p = "p < 0.001" if row["p_value"] < 0.001 else f"p {row['p_value']:.3f}"
    return f"tied ({p})" if row["tied_with_best"] else f"−{row['difference_to_best']:.3f} ({p})"


def row_cells(r: dict) -> list[str]:
    """One leaderboard row as the table's five cells (LEADERBOARD_COLUMNS)."""
    return [r["label"], setting_cell(r), seeds_cell(r), interval_cell(r), versus_cell(r)]


def leaderboard_rows(service: RetrievalService) -> list[list]:
    return [row_cells(r) for r in service.leaderboard(with_paper=True)]
