"""Should the heads z-score their input features by default? Measured on both worlds the app ships.

    python bench/standardize.py --wikipedia ../shared/data/wikipedia [--seeds 3] [--objectives pcl,ce,lrl,tl]

For each world (the demo's shapes world through its own tiny CLIP, and the Wikipedia benchmark's
original SIFT / LDA features) and each objective, trains with and without `--standardize` on the same
seeds (epoch selected on validation, metrics on test) and prints mean ± std of avg mAP@all side by side.
Writes bench/results/standardize.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cmr_demo.provenance import save_result, stamp
from cmr_demo.train.stage import parse_job, train

ROOT = Path(__file__).resolve().parents[1]


def worlds(wikipedia: str) -> dict[str, list[str]]:
    """World name -> the training arguments that read it (the demo bundle's own data and backbone)."""
    demo = json.loads((ROOT / "assets" / "demo" / "manifest.json").read_text())
    return {
        "demo (shapes, tiny CLIP features)": [
            "--data",
            demo["data"]["spec"],
            "--backbone",
            f"shapes-rn:{ROOT / 'assets' / 'demo' / 'backbone' / 'backbone.safetensors'}",
            "--embed-dim",
            "256",
        ],
        "wikipedia (SIFT BoW / LDA features)": ["--data", f"wikipedia:{wikipedia}"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wikipedia", required=True, help="folder of the Wikipedia dataset")
    p.add_argument("--objectives", default="pcl,ce,lrl,tl")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "standardize"))
    args = p.parse_args()
    results: dict = {}
    for world, argv in worlds(args.wikipedia).items():
        for objective in args.objectives.split(","):
            row = results.setdefault(world, {}).setdefault(objective, {})
            for label, extra in (("raw", ["--no-standardize"]), ("standardized", ["--standardize"])):
                runs = [train(parse_job([*argv, "--objective", objective, "--seed", str(s), *extra, "--out", "-",
                                         "--quiet"]))[objective] for s in range(args.seeds)]
                row[label] = [r["avg_map"] for r in runs]
                print(f"{world:<38} {objective:<6} {label:<13} "
                      f"{np.mean(row[label]):.4f} ± {np.std(row[label], ddof=1):.4f}", flush=True)
    lines = ["| world | objective | raw features | standardized | difference |", "|---|---|---|---|---|"]
    for world, per_obj in results.items():
        for objective, row in per_obj.items():
            raw, std = np.array(row["raw"]), np.array(row["standardized"])
            lines.append(f"| {world} | `{objective}` | {raw.mean():.4f} ± {raw.std(ddof=1):.4f} | "
                         f"{std.mean():.4f} ± {std.std(ddof=1):.4f} | {std.mean() - raw.mean():+.4f} |")
    result = {**stamp(["python", "bench/standardize.py", *sys.argv[1:]]), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    print(save_result(args.out, result, f"avg mAP@all on test (epoch selected on val), {args.seeds} seeds per cell\n\n"
                      + "\n".join(lines)))


if __name__ == "__main__":
    main()
