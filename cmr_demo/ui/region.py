"""A region selected on the maps (box or lasso), as the page lists it: a line with how many points and their mean
AP per objective, thumbnails captioned with AP, and a table. Plain functions of the service's rows
(`map_colours.selection_summary`), tested without gradio."""
from __future__ import annotations

from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui.pictures import picture

REGION_SHOWN = 60  # selected items listed (the mean AP covers all of them)


def region_markdown(rows: list[dict] | None, means: dict) -> str:
    """What a selected region holds: how many points, and the mean AP per shown objective over them (the best
    first), or how to select one."""
    if not rows:
        return ("**Select a region**: drag a box on any map (the lasso is in the map's tool bar, top right) to list "
                "its items with their AP under each shown objective.")
    pictures = sum(r["modality"] == "image" for r in rows)
    names = list(means)
    listed = f"the {REGION_SHOWN} listed" if len(rows) > REGION_SHOWN else "listed"
    order = f", {listed} where `{names[0]}` and `{names[1]}` differ most first" if len(names) > 1 else f", {listed}"
    return (f"**{len(rows)} points selected** ({pictures} pictures, {len(rows) - pictures} texts{order}). "
            f"Mean AP of these points as queries: " + " · ".join(f"`{o}` **{means[o]:.3f}**" for o in names) +
            ". Thumbnails say the AP under " + " / ".join(f"`{o}`" for o in names[:2]) + ". Click an item to search "
            "with it (Search and Compare follow).")


def region_listing(
    service: RetrievalService, rows: list[dict], objectives: list[str]
) -> tuple[list | None, list, list]:
    """The selected items (the first REGION_SHOWN) as the page lists them: (picture thumbnails captioned with the AP
    under each objective, or None for a bundle without pictures; table headers; table rows: id, modality, class,
    AP per objective, text)."""
    shown = rows[:REGION_SHOWN]
    thumbs = [(picture(service, r["row"]), "AP " + " / ".join(f"{r['ap'][o]:.2f}" for o in objectives[:2]))
              for r in shown] if service.bundle.has_pictures else None  # two numbers: more were cut off
    headers = ["id", "query with its", "class", *[f"AP {o}" for o in objectives],
               *(["text"] if service.bundle.has_texts else [])]
    table = [[r["id"], r["modality"], r["class"], *[round(r["ap"][o], 3) for o in objectives],
              *([r["text"][:100]] if service.bundle.has_texts else [])] for r in shown]
    return thumbs, headers, table
