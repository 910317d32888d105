"""Pictures a visitor sends to the default bundle: drawings read as their shape, pictures from outside flagged.

    python bench/pictures.py [--bundle assets/demo] [--per-style 30]

Through the service's own query_info (what `/api/v1/query_info/image` answers), under the bundle's best
objective, on three sets the check was never fitted on:
- drawings of the world's shapes from `cmr_demo.data.drawings` in every style, with a seed of their own;
- the visitor set of harness/visitor_pictures.py: drawings made by code that shares nothing with the
  pre-training's generators, in the four styles people draw (filled on white, outline only, small and
  off-centre on grey, wobbly hand-drawn), and pictures from outside the world no generator made (photographs,
  handwritten digits, a spiral) beside the usual ones (noise, a plain colour, letters, a stick figure);
- pictures of every kind in `cmr_demo.data.outside`, the held-out kinds included.
Reports per style and per kind, the gallery's own pictures wrongly flagged, and calibration: expected
calibration error (10 equal-width bins) of the shape read and of the class read (drawings in a class colour),
and how often a read shown at >= 90 % is right. Writes bench/results/pictures.json and .md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness import visitor_pictures  # noqa: E402

from cmr_demo.data import drawings, outside  # noqa: E402
from cmr_demo.provenance import save_result, stamp  # noqa: E402
from cmr_demo.serve.service import load  # noqa: E402

DRAWING_SEED, OUTSIDE_SEED = 9_000_001, 9_000_002  # neither pre-training's nor the picture check's


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the bin-size-weighted gap between mean confidence and accuracy."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(confidence[which == b].mean() - correct[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def read(service, pictures: list) -> list[dict]:
    """query_info of each picture (PIL) under the bundle's best objective, as the API gives it."""
    return [service.query_info(service.image_query(p), None).to_dict() for p in pictures]


def drawing_rows(service, per_style: int) -> list[dict]:
    rows = []
    for style in drawings.STYLES:
        for i in range(per_style):
            picture, _, shape, look = drawings.render(i, DRAWING_SEED, style=style)
            rows.append({"set": "generated", "style": style, "shape": shape,
                         "colour": look.fill if look.filled else look.ink, "picture": picture})
    for picture, shape, style, ink in visitor_pictures.drawings(per_style=max(1, per_style // 10)):
        rows.append({"set": "visitor", "style": style, "shape": shape, "colour": ink, "picture": picture})
    for row, info in zip(rows, read(service, [r.pop("picture") for r in rows])):
        shape_read = (info.get("groups") or {}).get("shape", {})
        row.update(predicted=info["predicted_class"], confidence=info["confidence"],
                   shape_read=shape_read.get("name"), shape_confidence=shape_read.get("confidence"),
                   in_domain=info["in_domain"], shape_right=info["predicted_class"].endswith(" " + row["shape"]),
                   class_right=info["predicted_class"] == f"{row['colour']} {row['shape']}")
    return rows


def outside_rows(service, per_kind: int) -> list[dict]:
    rows = [{"set": "generated", "kind": k, "picture": outside.draw(k, i, OUTSIDE_SEED)[0],
             "held_out": k in outside.HELD_OUT} for k in outside.KINDS for i in range(per_kind)]
    rows += [{"set": "visitor", "kind": k, "picture": p, "held_out": True}
             for p, k in visitor_pictures.outside_pictures(per_kind=max(1, per_kind // 10))]
    for row, info in zip(rows, read(service, [r.pop("picture") for r in rows])):
        row.update(flagged=info["in_domain"] is False, reason=info["reason"])
    return rows


def _share(rows, key, where=lambda r: True) -> float:
    picked = [r[key] for r in rows if where(r)]
    return float(np.mean(picked)) if picked else float("nan")


def summarise(service, draws: list[dict], outs: list[dict]) -> dict:
    colours = set((service.bundle.manifest.get("about", {}).get("class_groups") or {}).get("colour", {}))
    in_colour = [r for r in draws if r["colour"] in colours]
    shape_conf = np.array([r["shape_confidence"] for r in draws])
    shape_ok = np.array([r["shape_right"] for r in draws], float)
    class_conf = np.array([r["confidence"] for r in in_colour])
    class_ok = np.array([r["class_right"] for r in in_colour], float)
    pictures = [service.bundle.image_path(n) for n in range(service.size)]
    flagged_gallery = [service.query_info(service.image_query(str(p)), None).in_domain is False for p in pictures]
    return {
        "objective": service.best,
        "drawings": len(draws),
        "outside": len(outs),
        "shape_read": {
            "all": float(shape_ok.mean()),
            **{
                f"{s} ({st})": _share(draws, "shape_right", lambda r, s=s, st=st: r["set"] == s and r["style"] == st)
                for s, st in dict.fromkeys((r["set"], r["style"]) for r in draws)
            },
        },
        "drawings_flagged": float(np.mean([r["in_domain"] is False for r in draws])),
        "outside_flagged": {
            "all": _share(outs, "flagged"),
            **{
                f"{k} ({s})": _share(outs, "flagged", lambda r, k=k, s=s: r["kind"] == k and r["set"] == s)
                for s, k in dict.fromkeys((r["set"], r["kind"]) for r in outs)
            },
        },
        "gallery_flagged": float(np.mean(flagged_gallery)),
        "gallery_items": len(pictures),
        "calibration": {
            "shape_ece": ece(shape_conf, shape_ok),
            "class_ece": ece(class_conf, class_ok) if len(in_colour) else None,
            "shape_right_when_shown_90": _share([{"ok": o} for c, o in zip(shape_conf, shape_ok) if c >= 0.9], "ok"),
            "shape_shown_90": int((shape_conf >= 0.9).sum()),
            "class_right_when_shown_90": _share([{"ok": o} for c, o in zip(class_conf, class_ok) if c >= 0.9], "ok"),
            "class_shown_90": int((class_conf >= 0.9).sum()),
            "class_drawings": len(in_colour),
        },
        "misread": [
            f"{r['style']}: {r['shape']} read as {r['predicted']} ({r['shape_confidence']:.0%})"
            for r in draws
            if not r["shape_right"]
        ][:20],
        "missed_outside": [f"{r['kind']} ({r['set']}): {r['reason']}" for r in outs if not r["flagged"]][:20],
    }


def markdown(result: dict) -> str:
    c = result["calibration"]
    lines = [f"Pictures sent to the default bundle under `{result['objective']}` ({result['drawings']} drawings, "
             f"{result['outside']} pictures from outside the world):", "",
             "| drawings, by set and style | read as their shape |", "|---|---|",
             *[f"| {k} | {v:.1%} |" for k, v in result["shape_read"].items()], "",
             "| pictures from outside, by kind | flagged |", "|---|---|",
             *[f"| {k} | {v:.0%} |" for k, v in result["outside_flagged"].items()], "",
             f"Gallery pictures wrongly flagged: {result['gallery_flagged']:.1%} of {result['gallery_items']}; "
             f"drawings "
             f"flagged: {result['drawings_flagged']:.1%}. Calibration: ECE of the shape read {c['shape_ece']:.3f}, of "
             f"the class read {c['class_ece']:.3f} ({c['class_drawings']} drawings in a class colour); a shape shown "
             f"at "
             f">= 90 % is right {c['shape_right_when_shown_90']:.1%} of {c['shape_shown_90']} times, a class "
             f"{c['class_right_when_shown_90']:.1%} of {c['class_shown_90']}."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "assets" / "demo"))
    p.add_argument("--per-style", type=int, default=30, help="generated drawings per style (the visitor set: a tenth)")
    p.add_argument("--per-kind", type=int, default=30, help="generated outside pictures per kind")
    args = p.parse_args()
    service = load(args.bundle)
    draws, outs = drawing_rows(service, args.per_style), outside_rows(service, args.per_kind)
    result = {**stamp(["python", "bench/pictures.py", *sys.argv[1:]]), **summarise(service, draws, outs)}
    save_result(ROOT / "bench" / "results" / "pictures", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
