"""Choosing each objective's defining settings on the validation split, so that a comparison gives every objective
its best shot (`bundle build` tunes by default; `--no-tune` keeps the paper's settings).

Each objective declares a small grid (`Objective.grid`: cl's margin and form, the triplets' margin, ce's and
proxy-NCA's scale, pcl's temperature, proxy-anchor's alpha and delta; a hybrid takes its parts'). The search is
coordinate-wise, in the order the grid lists the options: it starts at the official code's settings, tries every
value of the first option with the others held, keeps the best, then goes on to the next option. The score is the
validation split's average mAP at the selected epoch, and the rule is epoch selection's: a setting replaces the
current one only when it scores strictly higher, so ties keep the paper's setting. The test split is never looked at.

A `Search` only says which settings it needs scored next (`pending`) and takes their scores (`record`): the caller
trains them however it likes (one at a time, or every objective's round at once on Ray).
"""
from __future__ import annotations

from cmr_demo.train.objectives import OBJECTIVES, option_defaults, option_grid, parse_hybrid, untuned_reason

SELECTED_ON = "validation"
RULE = ("coordinate-wise over the grid, from the paper's setting; the highest validation avg mAP at the selected "
        "epoch wins, ties keep the earlier (the paper's) setting")


def settings_text(settings: dict) -> str:
    """{'margin': 1.0, 'form': 0.0} -> 'margin=1, form=0': how a setting is written everywhere (card, page, bench)."""
    return ", ".join(f"{k}={v:g}" for k, v in settings.items())


def _key(point: dict) -> tuple:
    return tuple(sorted(point.items()))


class Search:
    """The coordinate-wise search of one objective. `fixed`: options the user set (not tuned); `tune` False: the
    starting point (the paper's setting, with `fixed`) is the only one tried."""

    def __init__(self, objective: str, fixed: dict[str, float] | None = None, tune: bool = True):
        fixed = dict(fixed or {})
        defaults, clash = option_defaults(objective), _clashing(objective)
        self.objective = objective
        self.fixed_all = bool(option_grid(objective)) and set(option_grid(objective)) <= set(fixed)
        self.grid = (
            {k: v for k, v in option_grid(objective).items() if k not in fixed and k not in clash} if tune else {}
        )
        self.paper = {**{k: defaults[k] for k in option_grid(objective) if k not in clash}, **fixed}
        self.best = dict(self.paper)
        self.scores: dict[tuple, float] = {}
        self.order: list[dict] = []  # every point scored, in the order it was asked for
        self._step = 0

    def pending(self) -> list[dict]:
        """The settings to score next ([] once the search is over; then `best` is the choice)."""
        params = list(self.grid)
        while self._step < len(params):
            param = params[self._step]
            points = [
                self.best,
                *(dict(self.best, **{param: v}) for v in self.grid[param] if v != self.best.get(param)),
            ]
            todo = [p for p in points if _key(p) not in self.scores]
            if todo:
                return todo
            self.best = max(points, key=lambda p: self.scores[_key(p)])  # the first of equals: the current setting
            self._step += 1
        return [] if _key(self.best) in self.scores else [dict(self.best)]

    def record(self, point: dict, score: float) -> None:
        if _key(point) not in self.scores:
            self.order.append(dict(point))
        self.scores[_key(point)] = float(score)

    def score(self, point: dict) -> float:
        return self.scores[_key(point)]

    def result(self) -> dict:
        """What the manifest records: the grid, every point's validation score, the choice and the paper's setting."""
        return {"grid": {k: list(v) for k, v in self.grid.items()}, "settings": dict(self.best),
                "paper_settings": dict(self.paper), "selected_on": SELECTED_ON if self.grid else None,
                "rule": RULE if self.grid else None, "untuned": None if self.grid else (
                    untuned_reason(self.objective) if option_grid(self.objective) == {} else
                    "its options were given" if self.fixed_all else "tuning was turned off"),
                "trials": [{"settings": p, "val_avg_map": self.scores[_key(p)]} for p in self.order]}


def _clashing(objective: str) -> set[str]:
    """Options that parts of a hybrid share with different defaults (ce's scale 1 and proxy-nca's 3 in
    'ce+proxy-nca'): one value would train both parts off their official setting, so such an option is neither tuned
    nor set, and each part keeps its own default."""
    values: dict[str, set[float]] = {}
    for _, part in parse_hybrid(objective):
        for key, value in OBJECTIVES[part].defaults.items():
            values.setdefault(key, set()).add(value)
    return {k for k, v in values.items() if len(v) > 1}


def search_all(searches: list[Search], score_many) -> None:
    """Run every search to its end: each round gathers every search's pending settings and scores them with one call
    of `score_many([(objective, settings), ...]) -> [score, ...]` (so a runner can train a round in parallel)."""
    while True:
        asked = [(s, p) for s in searches for p in s.pending()]
        if not asked:
            return
        for (search, point), score in zip(asked, score_many([(s.objective, p) for s, p in asked])):
            search.record(point, score)
