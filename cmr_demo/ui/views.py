"""Service results as the values the app's components show: gallery lists, table rows, markdown.

Why here and not in app.py: these are plain functions of plain data, tested without gradio; app.py
only puts their output into components.
"""
from __future__ import annotations

from collections.abc import Sequence

from cmr_demo.serve.schema import Hit, SearchResult
from cmr_demo.serve.service import RetrievalService

TEXT_COLUMNS = ["rank", "score", "class", "relevant", "caption", "id"]
MARK = {True: "✓", False: "✗", None: ""}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def caption(hit: Hit, short: bool = False) -> str:
    """The verdict first (✓/✗, class), then rank and score: what fits under a thumbnail must say the most."""
    mark = f"{MARK[hit.relevant]} " if hit.relevant is not None else ""
    head = f"{mark}{hit.class_name} · #{hit.rank} · {hit.score:.3f}"
    return head if short else f"{head} — {hit.text}"


def shows_pictures(result: SearchResult, service: RetrievalService) -> bool:
    """Results are drawn as pictures when they are images and the bundle has them; else as a list."""
    return result.target == "image" and service.bundle.has_pictures


def gallery_value(result: SearchResult, service: RetrievalService, short: bool = False) -> list[tuple[str, str]]:
    """(image path, caption) per hit when the results are pictures; [] otherwise. Paths are looked up here,
    on the server: results that leave the process (API answers) carry URLs, not paths."""
    return ([(str(service.bundle.image_path(h.index)), caption(h, short)) for h in result.hits]
            if shows_pictures(result, service) else [])


def info_line(info: dict | None) -> str:
    """How the objective reads the query: its class with a calibrated confidence (and the group a bundle declares,
    e.g. its shape); outside the bundle's world, a warning with the reason and only the closest class, no
    percentage (a confident class next to "outside this world" would contradict it)."""
    if not info:
        return ""
    if info["in_domain"] is False:
        return (f"⚠️ **outside this gallery's world**: {info['reason']}. The ranking below is what the model "
                f"returns anyway; its scores do not mean a match. Closest class: {info['predicted_class']}.")
    groups = "".join(f" · {kind}: **{g['name']}** ({g['confidence']:.0%})" for kind, g in (info.get("groups") or {}).items())
    return (f"looks like **{info['predicted_class']}** ({info['confidence']:.0%}, from {info['objective']}'s "
            f"{info['class_source']}){groups}")


def text_rows(result: SearchResult, pictures: bool = True, texts: bool = True) -> list[list]:
    """One table row per hit when the results are not drawn as pictures (texts, or items of a bundle
    without pictures); [] otherwise. Without texts (a features-only bundle) there is no caption column."""
    if result.target == "image" and pictures:
        return []
    return [[h.rank, round(h.score, 4), h.class_name, MARK[h.relevant], *([h.text] if texts else []), h.id]
            for h in result.hits]


def text_columns(texts: bool = True) -> list[str]:
    return TEXT_COLUMNS if texts else [c for c in TEXT_COLUMNS if c != "caption"]


def summary(result: SearchResult, class_names: Sequence[str]) -> str:
    """One-line heading: the query, and its AP / P@k / first relevant rank when its class is known."""
    head = f"**{result.objective}** · query: {result.query} → {result.target}s"
    if result.query_label is None:
        tail = " · state the query's class to see AP, P@k and ✓/✗"
    else:
        p = result.p_at_k or {}
        tail = (f" · class **{class_names[result.query_label]}** · AP {_fmt(result.ap)} · "
                + " · ".join(f"P@{k} {_fmt(v, 2)}" for k, v in p.items())
                + f" · first relevant at rank {result.first_relevant_rank or '–'}")
    notes = "".join(f"\n\n> note: {n}" for n in result.notes)
    info = f"\n\n{info_line(result.info)}" if result.info else ""
    return head + tail + info + notes + ("" if result.exact else "\n\n> approximate index (HNSW)")


def column_header(result: SearchResult) -> str:
    info = result.info or {}
    guess = "" if not info else (f"outside this world; closest class {info['predicted_class']}"
                                 if info.get("in_domain") is False else
                                 f"looks like {info['predicted_class']} ({info['confidence']:.0%})")
    if result.query_label is None:
        return f"### {result.objective}\n{guess}" + ("" if guess else "class of the query unknown")
    p = result.p_at_k or {}
    return (f"### {result.objective}\nAP **{_fmt(result.ap)}** · P@5 {_fmt(p.get('5'), 2)} · "
            f"first relevant #{result.first_relevant_rank or '–'}" + (f"\n\n{guess}" if guess else ""))


def text_list(result: SearchResult, pictures: bool = True) -> str:
    """Markdown list of the hits not drawn as pictures (for the compare columns): texts, or the items of a
    bundle without pictures (by id when they have no text)."""
    if result.target == "image" and pictures:
        return ""
    return "\n".join(f"{h.rank}. {MARK[h.relevant]} *{h.class_name}* {h.score:.3f} — {h.text or h.modality + ' ' + h.id}"
                     for h in result.hits)


def header_markdown(service: RetrievalService) -> str:
    """The card at the top of the app: what the gallery is, what relevant means, which backbone, how good."""
    m = service.bundle.manifest
    about = m.get("about", {})
    zs = about.get("zero_shot")
    zero_shot = (f" · zero-shot {zs['accuracy']:.0%} on {zs['on']} (chance {zs['chance']:.0%})" if zs else "")
    description = about.get("description") or f"Data `{m['data']['spec']}`."
    examples = " (one picture of each below)" if service.bundle.has_pictures else ""
    features = (f"**Backbone** (frozen): `{m['backbone']['spec']}`{zero_shot}" if m.get("backbone") else
                f"**Features**: as the data ships them ({_dims(m)}); no backbone, so queries are gallery items")
    stating = ("state a query's class to see ✓/✗, AP and P@k" if service.encodes else
               "a gallery item's class is known, so every query shows ✓/✗, AP and P@k")
    return (f"# CLIP4CMR: supervised cross-modal retrieval on a frozen CLIP\n"
            f"**Gallery**: {len(service.bundle.items)} items of `{short_spec(m['data']['spec'])}`, "
            f"{len(service.class_names)} classes{examples}. {description}\n\n"
            f"**Relevant** = {about.get('relevance', 'same class as the query')}; {stating}. {features}. "
            f"**Objectives**: {len(service.objectives)}, one pair of heads each, best `{service.best}`.")


def short_spec(spec: str) -> str:
    """A data spec as people read it: the reader and the last part of its path ('wikipedia:../data/wikipedia' ->
    'wikipedia:wikipedia'); specs without a path ('shapes:3000,seed=1') unchanged."""
    name, _, arg = spec.partition(":")
    return f"{name}:{arg.rstrip('/').rsplit('/', 1)[-1]}" if "/" in arg else spec


def _dims(manifest: dict) -> str:
    from cmr_demo.bundle.layout import feature_dims
    image, text = feature_dims(manifest)
    return f"{image}-d image, {text}-d text features"


def features_only_notice(service: RetrievalService) -> str:
    """Why the free-text and picture inputs are hidden for this bundle, and what to do instead ("" when shown)."""
    if service.encodes:
        return ""
    return (f"ℹ️ **This bundle ships features only** (no backbone), so it cannot encode a new text or picture. "
            f"Query it with a gallery item: type an id (e.g. `{service.bundle.items[0]['id']}`) below, or pick one "
            f"from the gallery list.")


def text_examples(service: RetrievalService, n: int = 5) -> list[tuple[str, str]]:
    """(text, class) examples: the ones the bundle's data offers, else the first captions of its gallery."""
    given = service.bundle.manifest.get("about", {}).get("examples")
    if not service.encodes:
        return []
    if given:
        return [(t, c) for t, c in given]
    items = [it for it in service.bundle.items if it.get("text")][:n]
    return [(it["text"], service.class_names[it["label"]]) for it in items] or [("", "")]


def class_examples(service: RetrievalService) -> list[tuple[str, str]]:
    """One gallery picture per class, captioned with its class: the header's small grid ([] without pictures)."""
    if not service.bundle.has_pictures:
        return []
    first = {}
    for n, label in enumerate(service.bundle.labels.tolist()):
        first.setdefault(label, n)
    return [(str(service.bundle.image_path(n)), service.class_names[c]) for c, n in sorted(first.items())]


LEADERBOARD_COLUMNS = ["objective", "I→T mAP", "T→I mAP", "average", "average over seeds (mean ± std)", "best epoch",
                       "selected on"]


def seeds_cell(row: dict) -> str:
    """'0.786 ± 0.004 (3 seeds)', or why there is no spread: the backbone alone has no training seed."""
    seeds = row.get("seeds")
    if seeds:
        return f"{seeds['mean']:.3f} ± {seeds['std']:.3f} ({seeds['n']} seeds)"
    return "no training (the backbone alone)" if row.get("kind") == "zero-shot" else "one seed"


def leaderboard_rows(service: RetrievalService) -> list[list]:
    return [[r["objective"], round(r["i2t_map"], 4), round(r["t2i_map"], 4), round(r["avg_map"], 4), seeds_cell(r),
             r["best_epoch"] if r["best_epoch"] is not None else "–", r["selected_on"] or "–"]
            for r in service.leaderboard()]


def _spread_line(service: RetrievalService) -> str:
    """What separates the paper's objectives on this bundle, in one line ("" when it has fewer than two)."""
    from cmr_demo.serve import analytics
    s = analytics.spread(service.bundle)
    if s is None:
        return ""
    seeds = " (means over training seeds)" if service.bundle.objectives[s["best"]].seeds else ""
    return (f" Of the paper's six objectives, `{s['best']}` is best ({s['best_map']:.3f}) and `{s['worst']}` worst "
            f"({s['worst_map']:.3f}){seeds}: {s['spread']:.3f} apart, and {s['disagreeing_share']:.0%} of the test "
            f"queries change AP by 0.2 or more between two of them.")


def about_markdown(service: RetrievalService) -> str:
    """What is being served: backbone, data, objectives, and how to build and serve another bundle."""
    m = service.bundle.manifest
    rows = "\n".join(f"| `{r[0]}` | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]} |" for r in leaderboard_rows(service))
    chance = service.leaderboard()[0]["chance_map"]
    return f"""
## What is being served
- **Bundle**: `{service.name}` ({m['data']['gallery_items']} gallery items, {len(service.objectives)} objectives,
  built {m['created']})
- **{"Backbone** (frozen): `" + m['backbone']['spec'] + "`" if m.get('backbone') else "Features** (no backbone): as the data ships them"} → {_dims(m)}
- **Data**: `{m['data']['spec']}`, classes: {', '.join(service.class_names)}
- **Method**: CLIP4CMR (Zeng & Mao, ICMR 2022): one projection head per modality into a common space,
  trained with class labels under each learning objective; relevance = same class; mAP over the whole gallery.

| objective | image → text mAP | text → image mAP | average | average over training seeds |
|---|---|---|---|---|
{rows}

Chance level (random ranking): {chance:.3f}.{_spread_line(service)}

## Your own bundle
```
python -m cmr_demo.bundle build --backbone ViT-B-32:laion2b_s34b_b79k --data manifest:my_data.csv \\
    --objectives all --out my_bundle --device cuda
# features you already have (the official CLIP4CMR pickles, an npz): no backbone, no pictures needed
python -m cmr_demo.bundle build --data clip4cmr:my_features --objectives all --standardize --out my_features
python app.py --bundle my_bundle --bundle my_features
```
`manifest:FILE.csv` takes columns `image,text,label[,split]`. This bundle was built with:
`{' '.join(m['command'])}`

## From a program
A JSON API runs beside this page: [`/api/docs`](/api/docs) (search by text, image or gallery item, compare,
embed, query info); the gradio endpoints are under "Use via API" at the bottom of the page.
"""


def lab_answer(run, stored: dict | None) -> dict:
    """A lab run as plain data (the /lab_train answer): its test metrics, how long it ran and how it ended."""
    m = run.metrics
    return {"name": run.name, "objective": run.objective, "options": run.settings["train"]["objective_options"],
            "i2t_map": m["i2t_map"], "t2i_map": m["t2i_map"], "avg_map": m["avg_map"], "best_epoch": m["best_epoch"],
            "epochs": m["epochs_run"], "seconds": run.seconds, "stopped": run.stopped,
            "settings": {**{k: run.settings["train"][k] for k in ("lr", "batch_size", "epochs", "patience", "seed",
                                                                   "text_fraction", "image_fraction")},
                         **{k: run.settings["heads"][k] for k in ("embed_dim", "hidden_dim")}},
            "bundle_run": None if stored is None else {k: stored[k] for k in ("i2t_map", "t2i_map", "avg_map")}}


def lab_markdown(answer: dict) -> str:
    """One finished lab run for people: its test mAP beside the bundle's own run of that objective."""
    ref = answer["bundle_run"]
    beside = (f" (the bundle's `{answer['objective']}`: {ref['i2t_map']:.3f} / {ref['t2i_map']:.3f} / "
              f"{ref['avg_map']:.3f})") if ref else ""
    ended = f" · ⚠️ {answer['stopped']}" if answer["stopped"] else ""
    settings = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in answer["settings"].items())
    options = ", ".join(f"{k}={v:g}" for k, v in answer["options"].items()) or "defaults"
    return (f"**{answer['name']}** · test mAP@all I→T **{answer['i2t_map']:.3f}** · T→I **{answer['t2i_map']:.3f}** · "
            f"avg **{answer['avg_map']:.3f}**{beside} · best epoch {answer['best_epoch']} of {answer['epochs']} · "
            f"{answer['seconds']:.1f} s{ended}\n\n{settings}; options: {options}.\n\nIt is now in Compare, the leaderboard "
            f"and the maps, for you only (this page's session; the bundle is not changed).")
