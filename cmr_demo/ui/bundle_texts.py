"""What the page says about a bundle itself, apart from any query: the hero a visitor reads first, the details
card, the About tab, and the examples it offers (texts, gallery items, one picture per class). Plain functions of the
service, tested without gradio."""
from __future__ import annotations

import numpy as np

from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui.leaderboard import leaderboard_rows
from cmr_demo.ui.pictures import picture


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
                f"**Try** {tries}, or drop a picture; then open **Compare** to see the same query ranked "
                f"by every objective.")
        title_line = "CLIP4CMR demo: supervised cross-modal search on a frozen CLIP"
        if _own_backbone(m):  # not an OpenAI / LAION CLIP: say so where the title says CLIP
            what += " The backbone is a small CLIP pre-trained on this world's own pictures and captions."
    else:
        what = (f"Search {world} with a gallery item. This bundle ships features only ({_features(m)}) and no "
                f"backbone, so it cannot read a new text or picture. **Try** one of the example items under Search; "
                f"then open **Compare**.")
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
    start = ("type a text (or pick an example), then **Search images**" if service.encodes else
             "pick an example item, then **Search with this item**")
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


def first_text(service: RetrievalService) -> str:
    """The text query the page starts with: the bundle's first example ("" when it takes no text)."""
    return (text_examples(service)[:1] or [("", "")])[0][0] if service.encodes else ""


def first_item(service: RetrievalService) -> str:
    """The gallery item the item box starts with where it is the only way in (features only): one that retrieves
    well."""
    return "" if service.encodes else (item_examples(service)[:1] or [("", "", "")])[0][0]
