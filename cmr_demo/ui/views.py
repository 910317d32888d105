"""Service results as the values the app's components show: gallery lists, table rows, markdown.

Why here and not in app.py: these are plain functions of plain data, tested without gradio; app.py
only puts their output into components.
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np

from cmr_demo.serve.schema import Hit, QueryInfo, SearchResult
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui.pictures import picture
from cmr_demo.ui.leaderboard import leaderboard_rows

TEXT_COLUMNS = ["rank", "score", "class", "✓/✗", "caption", "id"]
MARK = {True: "✓", False: "✗", None: ""}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def caption(hit: Hit) -> str:
    """Score, verdict, class: a thumbnail's caption is cut at its width, so the shortest and most asked-for come
    first ('0.948 ✓ red star'); the rank is the tile's place."""
    mark = f"{MARK[hit.relevant]} " if hit.relevant is not None else ""
    return f"{hit.score:.3f} {mark}{hit.class_name}"


def shows_pictures(result: SearchResult, service: RetrievalService) -> bool:
    """Results are drawn as pictures when they are images and the bundle has them; else as a list."""
    return result.target == "image" and service.bundle.has_pictures


def gallery_value(result: SearchResult, service: RetrievalService) -> list[tuple[str, str]]:
    """(image path, caption) per hit when the results are pictures; [] otherwise. Paths are looked up here,
    on the server: results that leave the process (API answers) carry URLs, not paths."""
    return ([(picture(service, h.index), caption(h)) for h in result.hits]
            if shows_pictures(result, service) else [])


def info_line(info: QueryInfo | None) -> str:
    """How the objective reads the query: its class with a calibrated confidence (and the group a bundle declares,
    e.g. its shape); outside the bundle's world, a warning with the reason and only the closest class, no
    percentage (a confident class next to "outside this world" would contradict it)."""
    if not info:
        return ""
    if info.in_domain is False:
        return (f"⚠️ **outside this gallery's world**: {info.reason}. The ranking below is what the model "
                f"returns anyway; its scores do not mean a match. Closest class: {info.predicted_class}.")
    groups = "".join(f" · {kind}: **{g['name']}** ({g['confidence']:.0%})" for kind, g in info.groups.items())
    return (f"looks like **{info.predicted_class}** ({info.confidence:.0%}, from {info.objective}'s "
            f"{info.class_source}){groups}")


def text_rows(result: SearchResult, pictures: bool = True, texts: bool = True) -> list[list]:
    """One table row per hit when the results are not drawn as pictures (texts, or items of a bundle
    without pictures); [] otherwise. Without texts (a features-only bundle) there is no caption column."""
    if result.target == "image" and pictures:
        return []
    return [[h.rank, round(h.score, 4), h.class_name, MARK[h.relevant], *([h.text] if texts else []), h.id]
            for h in result.hits]


def text_columns(texts: bool = True) -> list[str]:
    return TEXT_COLUMNS if texts else [c for c in TEXT_COLUMNS if c != "caption"]


def text_column_widths(texts: bool = True) -> list[str]:
    """Widths of the results table's columns: the short ones just fit their headers ("rank" broke into "ran / k"
    and the id went off the table's right edge when the caption took all the room)."""
    return ["9%", "11%", "17%", "8%", "35%", "20%"] if texts else ["12%", "16%", "34%", "10%", "28%"]


def first_text(service: RetrievalService) -> str:
    """The text query the page starts with: the bundle's first example ("" when it takes no text)."""
    return (text_examples(service)[:1] or [("", "")])[0][0] if service.encodes else ""


def first_item(service: RetrievalService) -> str:
    """The gallery item the item box starts with where it is the only way in (features only): one that retrieves
    well."""
    return "" if service.encodes else (item_examples(service)[:1] or [("", "", "")])[0][0]


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~])")
AUTOLINKS = re.compile(r"(?<=:)//|(?<=www)\.", re.IGNORECASE)  # http://..., www. ...: links once rendered


def as_text(text: str) -> str:
    """A visitor's text inside markdown, shown as the characters typed: HTML escaped (a query's `<img src=...>`
    loaded a remote picture, a link became clickable) and markdown's special characters backslashed."""
    text = MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return AUTOLINKS.sub(lambda m: "\\/\\/" if m.group() == "//" else "\\.", text)


def summary(result: SearchResult, class_names: Sequence[str]) -> str:
    """One-line heading: the query (as `Query.describe` cuts it, shown as text), and its AP / P@k / first relevant
    rank when its class is known; then how the objective reads the query, and each note once."""
    head = f"**{result.objective}** · query: {as_text(result.query)} → {result.target}s"
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


def column_header(result: SearchResult, about: str = "") -> str:
    """A Compare column's head: the objective (and what it is, `about`), its AP and P@5 for this query."""
    info = result.info
    guess = "" if not info else (f"outside this world; closest class {info.predicted_class}"
                                 if info.in_domain is False else
                                 f"looks like {info.predicted_class} ({info.confidence:.0%})")
    about = f"\n\n<small>{about}</small>" if about else ""
    if result.query_label is None:
        return f"### {result.objective}\n{guess or 'class of the query unknown'}{about}"
    p = result.p_at_k or {}
    seeds = ""
    if result.ap_over_seeds:  # a gallery item: how far its AP moves with the training seed alone
        seeds = f" (seeds: {_fmt(result.ap_over_seeds[0])}–{_fmt(result.ap_over_seeds[1])})"
    return (f"### {result.objective}\nAP **{_fmt(result.ap)}**{seeds} · P@5 {_fmt(p.get('5'), 2)} · "
            f"first relevant #{result.first_relevant_rank or '–'}" + (f"\n\n{guess}" if guess else "") + about)


def seed_note(result: SearchResult, service: RetrievalService) -> str:
    """Above Compare's columns, how much of a difference between them is seed noise: a gallery item's columns carry
    their AP's range over training seeds; for a new query, the typical range of one query's AP over seeds."""
    from cmr_demo.serve.comparison import typical_query_spread
    if result.ap is None:
        return ""
    if result.ap_over_seeds is not None:
        return ("<small>Each AP is followed by its range over the objective's training seeds: where two columns' "
                "ranges overlap, their difference on this query is within the seed spread.</small>")
    typical = typical_query_spread(service.bundle)
    if typical is None:
        return ""
    return (f"<small>These columns are the served seed's heads. The training seed alone moves one query's AP by "
            f"{typical[0]:.2f} for half of the gallery's queries and by {typical[1]:.2f} or more for one in ten (range "
            f"over seeds): a difference of that size between two columns says little.</small>")


def text_list(result: SearchResult, pictures: bool = True) -> str:
    """Markdown list of the hits not drawn as pictures (for the compare columns): texts, or the items of a
    bundle without pictures (by id when they have no text)."""
    if result.target == "image" and pictures:
        return ""
    return "\n".join(
        f"{h.rank}. {MARK[h.relevant]} *{h.class_name}* {h.score:.3f} — {h.text or h.modality + ' ' + h.id}"
        for h in result.hits
    )


def hero_markdown(service: RetrievalService) -> str:
    """The first thing a visitor reads: what this is, over which gallery, and what to try first."""
    from cmr_demo.data import title
    m = service.bundle.manifest
    world = (
        f"**{len(service.bundle.items):,} items of {title(m['data']['spec'])}** ({len(service.class_names)} classes)"
    )
    if service.encodes:
        examples = [t for t, _ in text_examples(service)[:2] if t]
        tries = " or ".join(f"*{t}*" for t in examples) or "a few words"
        what = (f"Find pictures from words, or words from a picture (a photo or a drawing), among {world}. "
                f"**Try** {tries}, or drop a picture; then open **Compare objectives** to see the same query ranked "
                f"by every objective.")
        title_line = "CLIP4CMR demo: supervised cross-modal search on a frozen CLIP"
        if _own_backbone(m):  # not an OpenAI / LAION CLIP: say so where the title says CLIP
            what += " The backbone is a small CLIP pre-trained on this world's own pictures and captions."
    else:
        what = (f"Search {world} with a gallery item. This bundle ships features only ({_features(m)}) and no "
                f"backbone, so it cannot read a new text or picture. **Try** an example item on the left; then open "
                f"**Compare objectives**.")
        title_line = "CLIP4CMR demo: supervised cross-modal retrieval on precomputed features"
    return (f"## {title_line}\n{what} Each *objective* trained its own projection heads with the class labels; "
            f"the words are explained where they appear.")


def _own_backbone(manifest: dict) -> bool:
    """True when the bundle's backbone is one of this project's small architectures (cmr_demo/backbone/model_configs),
    pre-trained here on a synthetic world rather than a public CLIP."""
    from pathlib import Path
    configs = Path(__file__).resolve().parents[1] / "backbone" / "model_configs"  # clip.CONFIG_DIR, without torch
    spec = (manifest.get("backbone") or {}).get("spec", "")
    return bool(spec) and (configs / f"{spec.split(':', 1)[0]}.json").exists()


def served_from(manifest: dict) -> str:
    """About's "Backbone** ..." / "Features** ..." line start (the bold is opened by the caller)."""
    if manifest.get("backbone"):
        return "Backbone** (frozen): " + backbone_words(manifest)
    return "Features** (no backbone): as the data ships them"


def backbone_words(manifest: dict) -> str:
    """The backbone as a reader needs it (its architecture and where its weights come from), not as a file spec;
    the exact spec is in the details fold and the folded build command."""
    arch, _, weights = manifest["backbone"]["spec"].partition(":")
    if _own_backbone(manifest):
        return f"`{arch}`, a small CLIP pre-trained on this world's own pictures and captions"
    shipped = "/" in weights or weights.endswith((".safetensors", ".pt", ".bin"))
    return f"`{arch}` ({'weights shipped with the bundle' if shipped else f'{weights} weights'})"


def details_title(service: RetrievalService) -> str:
    return ("About this gallery: its classes, what counts as relevant, the " +
            ("backbone" if service.bundle.manifest.get("backbone") else "features"))


def details_markdown(service: RetrievalService) -> str:
    """The gallery's details, folded under the hero: what it holds, what relevant means, the backbone or the
    features (their specs), how many objectives."""
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
    return (f"**Gallery**: {len(service.bundle.items)} items of `{short_spec(m['data']['spec'])}`, "
            f"{len(service.class_names)} classes{examples}. {description}\n\n"
            f"**Relevant** = {about.get('relevance', 'same class as the query')}; {stating}. {features}. "
            f"**Objectives**: {len(service.objectives)}, one pair of heads each, best `{service.best}`.")


def short_spec(spec: str) -> str:
    """A data spec as people read it: the reader and the last part of its path ('wikipedia:../data/wikipedia' ->
    'wikipedia:wikipedia'); specs without a path ('shapes:3000,seed=1') unchanged."""
    name, _, arg = spec.partition(":")
    return f"{name}:{arg.rstrip('/').rsplit('/', 1)[-1]}" if "/" in arg else spec


def _features(manifest: dict) -> str:
    """The features a features-only bundle ships, as its data describes them (else their sizes)."""
    from cmr_demo.data import feature_words
    return feature_words(manifest["data"]["spec"]) or _dims(manifest)


def _dims(manifest: dict) -> str:
    from cmr_demo.bundle.layout import feature_dims
    image, text = feature_dims(manifest)
    return f"{image}-d image, {text}-d text features"


def waiting(service: RetrievalService) -> str:
    """What the results column says before the first search: where to start."""
    start = ("type a text on the left (or pick an example), then **Search images**" if service.encodes else
             "pick an example item on the left, then **Search with this item**")
    return f"*Results appear here: {start}.*"


def item_examples(service: RetrievalService, n: int = 6) -> list[tuple[str, str, str]]:
    """(id, modality, label) of gallery items that retrieve well under the best objective: the best item of each
    class (by the AP the build stored, in its better direction), the n best of those, so a first try shows what
    works."""
    per_query = service.bundle.objectives[service.best].metrics.get("per_query_ap")
    if not per_query:
        first = service.bundle.items[0]
        return [(first["id"], "image", f"{first['id']} · {service.class_names[first['label']]}")]
    ap = np.stack([np.asarray(per_query["i2t"]), np.asarray(per_query["t2i"])])  # [2, N]: as image, as text
    best_dir, best_ap = ap.argmax(0), ap.max(0)
    labels = service.bundle.labels
    tops = [max(np.flatnonzero(labels == c), key=lambda r: best_ap[r]) for c in np.unique(labels)]
    tops = sorted(tops, key=lambda r: -best_ap[r])[:n]
    return [(service.bundle.items[r]["id"], ("image", "text")[best_dir[r]],
             f"AP {best_ap[r]:.2f} · {service.class_names[labels[r]]} · {('image', 'text')[best_dir[r]]} "
             f"{service.bundle.items[r]['id']}") for r in tops]


def text_examples(service: RetrievalService, n: int = 5) -> list[tuple[str, str]]:
    """(text, class) examples: the ones the bundle's data offers, else the first captions of its gallery."""
    given = service.bundle.manifest.get("about", {}).get("examples")
    if not service.encodes:
        return []
    if given:
        return [(t, c) for t, c in given]
    items = [it for it in service.bundle.items if it.get("text")][:n]
    return [(it["text"], service.class_names[it["label"]]) for it in items] or [("", "")]


def placeholder(service: RetrievalService) -> str:
    """The text query box's grey hint: the bundle's first example."""
    return (text_examples(service) or [("", "")])[0][0]


def class_examples(service: RetrievalService) -> list[tuple[str, str]]:
    """One gallery picture per class, captioned with its class: the header's small grid ([] without pictures)."""
    if not service.bundle.has_pictures:
        return []
    first = {}
    for n, label in enumerate(service.bundle.labels.tolist()):
        first.setdefault(label, n)
    return [(picture(service, n), service.class_names[c]) for c, n in sorted(first.items())]


def _spread_line(service: RetrievalService) -> str:
    """What separates the paper's objectives on this bundle, in one line ("" when it has fewer than two)."""
    from cmr_demo.serve import analytics
    s = analytics.spread(service.bundle)
    if s is None:
        return ""
    seeds = " (means over training seeds, each at its setting chosen on validation)" \
        if service.bundle.objectives[s["best"]].seeds else ""
    return (f" Of the paper's six objectives, `{s['best']}` is best ({s['best_map']:.3f}) and `{s['worst']}` worst "
            f"({s['worst_map']:.3f}){seeds}: {s['spread']:.3f} apart, and {s['disagreeing_share']:.0%} of the test "
            f"queries change AP by 0.2 or more between two of them.")


def about_markdown(service: RetrievalService) -> str:
    """What is being served: backbone, data, objectives, and how to build and serve another bundle (the exact build
    command folded away: it names the build machine's folders)."""
    from cmr_demo.data import title
    m = service.bundle.manifest
    rows = "\n".join(f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in leaderboard_rows(service))
    chance = service.leaderboard()[0]["chance_map"]
    return f"""
## What is being served
- **Bundle**: `{service.name}` ({m['data']['gallery_items']} gallery items, {len(service.objectives)} objectives,
  built {m['created']})
- **{served_from(m)} → {_dims(m)}
- **Data**: {title(m['data']['spec'])}, classes: {', '.join(service.class_names)}
- **Method**: CLIP4CMR (Zeng & Mao, ICMR 2022): one projection head per modality into a common space,
  trained with class labels under each learning objective; relevance = same class; mAP over the whole gallery.

| objective | setting | avg mAP: mean ± std (seeds) | 95 % interval | against the best |
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
`manifest:FILE.csv` takes columns `image,text,label[,split]`.

<details><summary>The command this bundle was built with</summary>

`{' '.join(m['command'])}`
</details>

## From a program
A JSON API runs beside this page: [`/api/docs`](/api/docs) (search by text, image or gallery item, compare,
embed, query info); the gradio endpoints are under "Use via API" at the bottom of the page.
"""


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
            f"{answer['seconds']:.1f} s{ended}\n\n{settings}; options: {options}.\n\nIt is now in Compare, the "
            f"leaderboard "
            f"and the maps, for you only (this page's session; the bundle is not changed).")
