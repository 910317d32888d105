"""The page's words: what each objective does, in one line, and what AP, mAP, P@k and a result's score are.

Why a module: the same terms appear in Search (the objective picker, the line under the results), in Compare (its
columns, the glossary) and on the maps; one source keeps them the same. The objectives' lines come from their
registry (each objective's `about` in `cmr_demo.train.objectives`): a new objective is explained once registered.
"""
from __future__ import annotations

from cmr_demo.train.objectives import OBJECTIVES, parse_hybrid
from cmr_demo.train.tuning import settings_text

FAMILIES = {
    "pair-wise": "learn from pairs of items: which image and text belong together (same class) and which do not",
    "class-wise": "learn from each item against its class: a classifier, a fixed prototype or a learned proxy per "
                  "class",
    "hybrid": "a weighted sum of objectives of both families",
    "baseline": "no training with labels: the frozen backbone's own common space",
    "lab": "a run you trained in the Lab tab (this page's session only)",
}
ZERO_SHOT = "the backbone alone: CLIP's own image and text embeddings, no heads trained (the baseline to beat)"

METRICS = {
    "score": "cosine similarity of the query and the item in the objective's common space (at most 1). Only the "
             "order counts: each objective spreads its scores differently (a triplet's top scores sit near 0.5, "
             "a contrastive one's near 1), so compare ranks, not scores, across objectives",
    "✓ / ✗": "the item has (✓) or has not (✗) the query's class: relevant or not",
    "AP": "average precision of one query: the precision at the rank of each relevant item, averaged over every "
          "relevant item in the gallery (1 = all of them ranked first; chance = their share of the gallery). Items "
          "that score exactly the same (identical captions of different classes) count as the average over their "
          "possible orders (McSherry & Najork 2008), not as the gallery's order happens to put them",
    "P@k": "precision at k: the share of the top k results that are relevant",
    "mAP": "mean average precision: AP averaged over every test query of a direction (image → text, text → "
           "image), the leaderboard's number",
}

LEADERBOARD = {
    "mean ± std (seeds)": "the average mAP of both directions, as the mean over the training seeds, ± their sample "
                          "standard deviation (n − 1), with n the number of seeds; the rows are in the order of this "
                          "mean",
    "95 % interval": "Student's t interval of that mean over the seeds (n − 1 degrees of freedom): where the mean "
                     "would land with other seeds",
    "against the best": "the best row against this one, paired over the same test queries and seeds: the mean AP "
                        "difference, its standard error counting both the seed spread and the sample of queries "
                        "(crossed design, Satterthwaite's degrees of freedom), and a two-sided t-test. *Tied* means "
                        "p ≥ 0.05: the evidence does not rank the two",
    "setting": "each objective's margin, scale or temperature chosen on the validation split from a small grid, by "
               "the rule that picks the epoch (highest validation mAP; ties keep the paper's value). Where that "
               "changed the official code's setting, the objective has a second row at the paper's setting",
}


def describe(spec: str) -> tuple[str, str]:
    """(family, one line) of a registered objective (its kind and `about`) or of a hybrid, by its parts
    ('pcl+0.5*tl' -> 'a weighted sum of objectives: pcl (prototype contrastive) + 0.5 × tl (triplet)'). Raises
    ValueError for a name that is no objective."""
    parts = parse_hybrid(spec)
    if len(parts) == 1 and parts[0][0] == 1.0:
        cls = OBJECTIVES[parts[0][1]]
        return cls.kind, cls.about
    terms = " + ".join(f"{'' if w == 1.0 else f'{w:g} × '}{name} ({OBJECTIVES[name].about.split(':')[0]})"
                       for w, name in parts)
    return "hybrid", f"a weighted sum of objectives: {terms}"


def family_and_line(name: str, kind: str = "trained", objective: str | None = None) -> tuple[str, str]:
    """(family, one line) for an objective the app serves: `kind` as the bundle stores it ('trained', 'zero-shot',
    'lab'); `objective` the loss a lab run trained (its name is the run's own)."""
    if kind == "zero-shot":
        return "baseline", ZERO_SHOT
    try:
        family, line = describe(objective or name)
    except ValueError:  # a name from an older bundle the registry no longer has
        return "trained", "an objective this version of the app does not describe"
    return ("lab", f"your run of {objective}: {line}") if kind == "lab" else (family, line)


def _served(service, name: str) -> tuple[str, str]:
    view = service.bundle.objectives[name]
    loss = getattr(view.objective, "name", None) if view.kind == "lab" else None
    return family_and_line(name, view.kind, loss)


def objective_short(service, name: str) -> str:
    """'class-wise: prototype contrastive (the paper's choice)': the family and the line's name part."""
    family, line = _served(service, name)
    return f"{family}: {line.split(':')[0] if ':' in line else line.split(',')[0]}"


def objective_choices(service) -> list[tuple[str, str]]:
    """Dropdown choices (label, name): 'pcl · class-wise: prototype contrastive (the paper's choice)'."""
    return [(f"{name} · {objective_short(service, name)}", name) for name in service.objectives]


def objective_info(service, name: str) -> str:
    """The picked objective, in one line (the dropdown's help text)."""
    if name not in service.objectives:
        return ""
    family, line = _served(service, name)
    return f"{family}: {line}"


def results_legend() -> str:
    """The line under search results: what the numbers on them are."""
    return ("**Reading the results** (click one to search with it): the number on each result is its *score*, "
            f"{METRICS['score']}. ✓ = same class as the query (relevant), ✗ = not. **AP** (average precision) is 1 "
            "when every relevant item of the gallery comes first; **P@k** (precision at k) is the share of relevant "
            "items in the top k.")


def _setting(service, name: str) -> str:
    """'margin=1, form=1 (chosen; the paper's: margin=0.2, form=0)', or '–'."""
    tuning = service.bundle.objectives[name].entry.get("tuning") or {}
    words = settings_text
    if not tuning.get("settings"):
        return "nothing to tune" if tuning.get("untuned") and tuning.get("untuned") != "tuning was turned off" else "–"
    if tuning["settings"] == tuning.get("paper_settings") or not tuning.get("selected_on"):
        return f"{words(tuning['settings'])} (the paper's" + (
            ", kept on validation)" if tuning.get("selected_on") else ")"
        )
    return f"{words(tuning['settings'])} (chosen on validation; the paper's: {words(tuning['paper_settings'])})"


def glossary_markdown(service) -> str:
    """The terms and every served objective, for Compare."""
    metrics = "\n".join(f"- **{term}**: {text}." for term, text in METRICS.items())
    board = "\n".join(f"- **{term}**: {text}." for term, text in LEADERBOARD.items())
    families = "\n".join(f"- **{family}** objectives {text}." for family, text in FAMILIES.items()
                         if family in {_served(service, n)[0] for n in service.objectives})
    rows = "\n".join(f"| `{name}` | {family} | {line} | {_setting(service, name)} |" for name in service.objectives
                     for family, line in [_served(service, name)])
    return (f"**The numbers**\n{metrics}\n\n**The leaderboard**\n{board}\n\n**The objectives** (each trains its own "
            f"pair of heads, one per modality, "
            f"into its own common space)\n{families}\n\n| objective | family | what it does | setting "
            f"|\n|---|---|---|---|\n{rows}"
            f"{twins_note(service)}")


def twins_note(service) -> str:
    """A line for each pair of objectives that came out as one model on this bundle (`analytics.twins`), with the
    evidence: their per-query APs, and what each one's grid scored on validation."""
    from cmr_demo.serve.analytics import twins
    lines = []
    for a, b in twins(service.bundle):
        evidence = []
        for name in (a, b):
            trials = service.bundle.objectives[name].entry.get("tuning", {}).get("trials") or []
            if len(trials) > 1:
                scores = [t["val_avg_map"] for t in trials]
                evidence.append(f"`{name}`'s {len(trials)} settings tried scored {min(scores):.3f}–{max(scores):.3f} "
                                f"on validation")
        tried = f" Tuning did not separate them: {'; '.join(evidence)}." if evidence else ""
        lines.append(f"\n\n**`{a}` and `{b}` are the same model here**: AP within 0.005 on every test query.{tried}")
    return "".join(lines)
