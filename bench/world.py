"""Why the default world is built the way it is, and whether the bundle every visitor opens on shows it.

    python bench/world.py levers  [--backbone SPEC] [--n 4000]    # each lever of `webshapes` alone, then all
    python bench/world.py figures [--bundle assets/demo]          # the served bundle against the issue's targets

`levers` trains the paper's six objectives (one seed, the demo's settings) on worlds that differ in one lever
each (cmr_demo.data.webshapes.Levers): shape-and-colour classes alone, plus partial captions, plus label noise,
plus the long tail, then all of them (the served world); with the frozen backbone's zero-shot mAP and a linear
probe of its image and text features beside each. `figures` reads the bundle: the best objective's mean mAP
over seeds, the spread of the paper's six, the share of test queries whose AP differs by >= 0.2 between two of
them, heatmap cells below 0.8, the zero-shot column, and plain written queries' P@5.
Writes bench/results/world_levers.{json,md} and bench/results/world.{json,md}.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmr_demo.provenance import save_result, stamp  # noqa: E402

SIX = ("cl", "ml", "tl", "lrl", "ce", "pcl")  # the paper's six objectives
RESULTS = ROOT / "bench" / "results"
TARGETS = {"best": (0.60, 0.92), "spread": 0.08, "disagree": 0.15}


def lever_worlds():
    from cmr_demo.data.webshapes import LEVERS, NO_LEVERS
    return {"classes only (shape x colour)": NO_LEVERS,
            "+ partial captions": replace(NO_LEVERS, caption_modes=LEVERS.caption_modes),
            "+ label noise": replace(NO_LEVERS, label_noise=LEVERS.label_noise),
            "+ long tail": replace(NO_LEVERS, zipf=LEVERS.zipf),
            "all (the served world)": LEVERS}


def probe(train, test) -> float:
    """Linear probe: logistic regression on unit-norm frozen features, accuracy on the test split."""
    from sklearn.linear_model import LogisticRegression
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)  # noqa: E731
    return float(LogisticRegression(C=10.0, max_iter=3000).fit(unit(train[0]), train[1]).score(unit(test[0]), test[1]))


def run_levers(backbone: str, n: int) -> dict:
    from cmr_demo.data import webshapes
    from cmr_demo.metrics import evaluate
    from cmr_demo.train.heads import HeadConfig
    from cmr_demo.train.spec import ObjectiveSpec
    from cmr_demo.train.stage import DataConfig, FeatureConfig, TrainJob, load_features, train
    rows = {}
    for name, levers in lever_worlds().items():
        data = webshapes.make_dataset(n, levers=levers)
        job = TrainJob(DataConfig(data.spec), ObjectiveSpec.parse(",".join(SIX)), heads=HeadConfig(embed_dim=256),
                       features=FeatureConfig(backbone), quiet=True)
        feats, source = load_features(job, data)
        clean = np.array([webshapes.render_item(i, "train", levers=levers)[3] for i in range(len(data.train))])
        test_labels = data.test.labels
        zero = evaluate(
            *(f / np.linalg.norm(f, axis=1, keepdims=True) for f in feats["test"]),
            test_labels,
            test_labels,
            data.class_names,
        )
        runs = train(job, data, (feats, source))
        rows[name] = {"objectives": {o: runs[o]["avg_map"] for o in SIX}, "zero_shot": zero["avg_map"],
                      "probe_image": probe((feats["train"][0], clean), (feats["test"][0], test_labels)),
                      "probe_text": probe((feats["train"][1], clean), (feats["test"][1], test_labels))}
        print(name, {k: round(v, 3) for k, v in rows[name]["objectives"].items()}, flush=True)
    return rows


def levers_markdown(rows: dict, n: int) -> str:
    lines = [f"Each lever of the default world alone, then all together ({n} items: 70 % train, 10 % val, 20 % test; "
             f"avg mAP@all on test, one seed; linear probes on the frozen features with the clean labels):", "",
             "| world | " + " | ".join(f"`{o}`" for o in SIX) + " | best − worst | zero-shot | probe image | probe "
                                                                "text |",
             "|---" * (len(SIX) + 5) + "|"]
    for name, r in rows.items():
        v = r["objectives"]
        lines.append(f"| {name} | " + " | ".join(f"{v[o]:.3f}" for o in SIX) +
                     f" | {max(v.values()) - min(v.values()):.3f} | {r['zero_shot']:.3f} | {r['probe_image']:.3f} | "
                     f"{r['probe_text']:.3f} |")
    return "\n".join(lines)


def run_figures(bundle: str) -> dict:
    import demo_queries

    from cmr_demo.serve.analytics import disagreeing_share
    from cmr_demo.serve.service import load
    service = load(bundle)
    views, board = service.bundle.objectives, service.leaderboard()
    mean = {r["objective"]: r["mean"] for r in board}  # over training seeds, each at its setting chosen on validation
    std = {r["objective"]: r["std"] if r["n"] > 1 else None for r in board}
    six = {o: mean[o] for o in SIX if o in mean}
    names, objectives, grid = service.class_ap()
    best = max(six, key=six.get)
    pairs = {f"{a} vs {b}": disagreeing_share(service.bundle, (a, b)) for a, b in itertools.combinations(six, 2)}
    plain = demo_queries.measure(service)
    zero = service.search(service.text_query("a red star"), "zero-shot", 10) if "zero-shot" in views else None
    return {"objectives": {o: {"mean": mean[o], "std": std[o], "served": views[o].metrics["avg_map"]} for o in mean},
            "best": best, "best_mean": six[best], "spread": max(six.values()) - min(six.values()),
            "disagreeing_share": disagreeing_share(service.bundle, SIX), "disagreeing_pairs": pairs,
            "heatmap_cells_below_0.8": int((grid[:, [objectives.index(o) for o in six]] < 0.8).sum()),
            "heatmap_cells": int(grid[:, [objectives.index(o) for o in six]].size),
            "zero_shot_map": views["zero-shot"].metrics["avg_map"] if "zero-shot" in views else None,
            "red_star_zero_shot_top10": [h.class_name for h in zero.hits] if zero else None,
            "red_star_best_top10": [h.class_name for h in service.search(service.text_query("a red star"), best,
                                                                           10).hits],
            "plain_queries": {k: plain[k] for k in ("objective", "plain_queries", "mean_p_at_5",
                                                    "predicted_class_accuracy", "worst_p_at_5")},
            "examples_top5": {**plain["text_examples_top5"], **plain["image_examples_top5"]},
            "seeds": max(r["n"] for r in board)}


def figures_markdown(f: dict) -> str:
    lo, hi = TARGETS["best"]
    ok = lambda c: "met" if c else "**missed**"  # noqa: E731
    rows = [f"| `{o}` | {v['mean']:.3f}" + (f" ± {v['std']:.3f}" if v["std"] is not None else "") +
            f" | {v['served']:.3f} |" for o, v in sorted(f["objectives"].items(), key=lambda kv: -kv[1]["mean"])]
    p = f["plain_queries"]
    return "\n".join(
        [
            f"| objective | avg mAP@all, mean ± std over {f['seeds']} seeds | the served seed |",
            "|---|---|---|",
            *rows,
            "",
            "| figure (the paper's six objectives) | measured | target |",
            "|---|---|---|",
            f"| best objective's mean avg mAP (`{f['best']}`) | {f['best_mean']:.3f} | {lo}–{hi}: "
            f"{ok(lo <= f['best_mean'] <= hi)} |",
            f"| best − worst | {f['spread']:.3f} | >= {TARGETS['spread']}: {ok(f['spread'] >= TARGETS['spread'])} |",
            f"| test queries whose AP differs by >= 0.2 between two of them | {f['disagreeing_share']:.1%} | >= 15 %: "
            f"{ok(f['disagreeing_share'] >= TARGETS['disagree'])} |",
            f"| class x objective heatmap cells below 0.8 | {f['heatmap_cells_below_0.8']} of {f['heatmap_cells']} "
            f"| some: "
            f"{ok(f['heatmap_cells_below_0.8'] > 0)} |",
            f"| plain written queries' mean P@5 under `{p['objective']}` ({p['plain_queries']} queries, "
            f"harness/world_queries.py) | {p['mean_p_at_5']:.3f} | >= 0.9: {ok(p['mean_p_at_5'] >= 0.9)} |",
            f"| the app's examples with their class in the top 5 | {sum(f['examples_top5'].values())} of "
            f"{len(f['examples_top5'])} | all: {ok(all(f['examples_top5'].values()))} |",
            "",
            f"The frozen backbone alone (`zero-shot`) scores {f['zero_shot_map']:.3f}. On \"a red star\" its top 10 "
            f"are "
            f"{', '.join(f['red_star_zero_shot_top10'])}; `{f['best']}`'s are {', '.join(f['red_star_best_top10'])}."
            if f["zero_shot_map"] is not None
            else "",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["levers", "figures"])
    p.add_argument("--backbone", default="shapes-rn:assets/demo/backbone/backbone.safetensors")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--bundle", default=str(ROOT / "assets" / "demo"))
    args = p.parse_args()
    command = stamp(["python", "bench/world.py", *sys.argv[1:]])
    if args.what == "levers":
        rows = run_levers(args.backbone, args.n)
        body = levers_markdown(rows, args.n)
        save_result(RESULTS / "world_levers", {**command, "n": args.n, "backbone": args.backbone, "worlds": rows}, body)
    else:
        figures = run_figures(args.bundle)
        body = figures_markdown(figures)
        save_result(RESULTS / "world", {**command, **figures}, body)
    print(body)


if __name__ == "__main__":
    main()
