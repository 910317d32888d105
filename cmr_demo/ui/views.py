"""Service results as the values the app's components show: gallery lists, table rows, summaries, a lab run's
line. What the page says about a bundle itself (the hero, the details card, About, its examples) is
cmr_demo.ui.bundle_texts. Plain functions of plain data, tested without gradio; the tabs put their output into
components."""
from __future__ import annotations

import html
import re
from collections.abc import Sequence


from cmr_demo.serve.schema import Hit, QueryInfo, SearchResult
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui.pictures import picture

TEXT_COLUMNS = ["rank", "score", "class", "✓/✗", "picture", "caption", "id"]
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


def gallery_value(result: SearchResult, service: RetrievalService, urls: bool = True) -> list[tuple[str, str]]:
    """(image path, caption) per hit when the results are pictures; [] otherwise. Paths are looked up here,
    on the server: results that leave the process (API answers) carry URLs, not paths."""
    return ([(picture(service, h.index, urls), caption(h)) for h in result.hits]
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
    unknown = "".join(f"\n\n⚠️ {' and '.join(f'**{w}**' for w in said)} {'is' if len(said) == 1 else 'are'} not a "
                      f"{kind} of any class here: read as the nearest class" for kind, said in info.unknown.items())
    return (f"looks like **{info.predicted_class}** ({info.confidence:.0%}, from {info.objective}'s "
            f"{info.class_source}){groups}{unknown}")


def text_rows(result: SearchResult, pictures: bool = True, texts: bool = True) -> list[list]:
    """One table row per hit when the results are not drawn as pictures (texts, or items of a bundle
    without pictures); [] otherwise. Without texts (a features-only bundle) there is no caption column; with
    pictures, each text comes with its own item's picture (a caption marked ✗ that describes only part of its picture
    read as a labelling error without it)."""
    if result.target == "image" and pictures:
        return []
    shown = pictures and texts
    return [[h.rank, f"{h.score:.3f}", h.class_name, MARK[h.relevant],  # one number format: three decimals
             *([f"![{h.class_name}]({h.image_url})" if h.image_url else ""] if shown else []),
             *([h.text] if texts else []), h.id] for h in result.hits]


def text_columns(texts: bool = True, pictures: bool = False) -> list[str]:
    """The results table's columns: a picture column where the texts have pictures, a caption column where there are
    texts (`text_rows` fills them in this order)."""
    return [c for c in TEXT_COLUMNS if (c != "caption" or texts) and (c != "picture" or (texts and pictures))]


def text_column_widths(texts: bool = True, pictures: bool = False, id_chars: int = 9) -> list[str]:
    """Widths of the results table's columns, in pixels: each fits its longest word (a share of a phone's width broke
    "rank" into "ran / k"; a bundle's 40-character ids broke over four lines), the caption wraps, and a phone
    scrolls the table sideways instead of breaking words. `id_chars`: the bundle's longest item id (`id_width`)."""
    widths = {"rank": "56px", "score": "72px", "class": "112px" if texts else "160px", "✓/✗": "48px",
              "picture": "80px", "caption": "230px" if pictures else "300px", "id": id_width(id_chars)}
    return [widths[c] for c in text_columns(texts, pictures)]


def id_width(chars: int) -> str:
    """A column wide enough for ids of `chars` characters in the tables' monospace font (about 8.5 px each)."""
    return f"{max(110, int(8.6 * chars) + 26)}px"


def longest_id(service: RetrievalService) -> int:
    return max((len(str(it["id"])) for it in service.bundle.items), default=9)


def text_datatypes(texts: bool = True, pictures: bool = False) -> list[str]:
    """Each column's kind for the table: the picture is markdown (an image), the rest plain."""
    return ["markdown" if c == "picture" else "number" if c == "rank" else "str"
            for c in text_columns(texts, pictures)]


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


def compare_heading(result: SearchResult, objectives: int, class_names: Sequence[str] = ()) -> str:
    """What Compare searched, exactly: the query as the service read it (a text, or a gallery item, which overrides
    the text), its class when known, the modality searched and how many objectives."""
    label = result.query_label
    klass = f" · class **{class_names[label]}**" if label is not None and 0 <= label < len(class_names) else (
        " · class stated" if label is not None else " · class unknown (no ✓/✗ or AP)")
    return (f"**Compared**: {as_text(result.query)}{klass} · {len(result.hits)} {result.target}s per objective · "
            f"{objectives} objective{'s' if objectives != 1 else ''}")


def column_header(result: SearchResult, about: str = "") -> str:
    """A Compare column's head, as HTML: the objective (and what it is, `about`), its AP and P@5 for this query, how
    the objective reads the query."""
    info = result.info
    guess = "" if not info else (f"outside this world; closest class {info.predicted_class}"
                                 if info.in_domain is False else
                                 f"looks like {info.predicted_class} ({info.confidence:.0%})")
    about = f'<p class="cmp-about">{html.escape(about)}</p>' if about else ""
    head = f"<h3>{html.escape(result.objective)}</h3>"
    if result.query_label is None:
        return f"{head}<p>{html.escape(guess or 'class of the query unknown')}</p>{about}"
    p = result.p_at_k or {}
    seeds = ""
    if result.ap_over_seeds:  # a gallery item: how far its AP moves with the training seed alone
        seeds = f" (seeds: {_fmt(result.ap_over_seeds[0])}–{_fmt(result.ap_over_seeds[1])})"
    return (f"{head}<p>AP <b>{_fmt(result.ap)}</b>{seeds} · P@5 {_fmt(p.get('5'), 2)} · first relevant "
            f"#{result.first_relevant_rank or '–'}</p>" + (f"<p>{html.escape(guess)}</p>" if guess else "") + about)


def compare_columns(results: Sequence[SearchResult], service: RetrievalService, about=lambda name: "") -> str:
    """Compare's columns, one per objective, as one block of HTML: each column's head, then its results as pictures
    with their whole caption (score, ✓/✗, class) or as a numbered list of texts. One component for every column:
    as eleven galleries (and their columns and headings), a comparison was 47 components for gradio to send and the
    browser to lay out, and a gallery cut each caption at its thumbnail's width ("0.832 ✓ gr…"). Pictures are
    linked by the app's /media route, relative to the page (right behind a proxy's path too), and kept by the
    browser for the visit."""
    columns = []
    for r in results:
        if shows_pictures(r, service):
            tiles = []
            for h in r.hits:
                # the hit's /media URL, unless its file failed its hash check (picture() logs it, once)
                url = h.image_url if isinstance(picture(service, h.index, url=False), str) else None
                img = (f'<img src="{html.escape(url.lstrip("/"))}" alt="{html.escape(h.class_name)}">' if url else
                       '<div class="cmp-damaged">picture damaged</div>')
                tiles.append(f'<figure title="#{h.rank} {html.escape(h.id)}">{img}<figcaption>{h.score:.3f} '
                             f'{MARK[h.relevant]}<br>{html.escape(h.class_name)}</figcaption></figure>')
            body = f'<div class="cmp-tiles">{"".join(tiles)}</div>'
        else:
            body = "<ol>" + "".join(f"<li>{MARK[h.relevant]} <i>{html.escape(h.class_name)}</i> {h.score:.3f} — "
                                    f"{html.escape(h.text or h.modality + ' ' + h.id)}</li>" for h in r.hits) + "</ol>"
        columns.append(f'<section class="cmp-col">{column_header(r, about(r.objective))}{body}</section>')
    return f'<div class="cmp-grid">{"".join(columns)}</div>' if columns else ""


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
