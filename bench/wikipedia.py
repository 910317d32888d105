"""Real-data reproduction: every objective on the Wikipedia benchmark's original features, several seeds,
both selection protocols, printed beside the published rows of the dataset's README.

    python bench/wikipedia.py --data ../shared/data/wikipedia [--seeds 5] [--objectives all]

Writes bench/results/wikipedia.json and .md. The data is read in place, never copied. Features are
standardised with train statistics (SIFT bag-of-words and LDA proportions are not CLIP features).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cmr_demo.train.objectives import expand_objectives
from cmr_demo.provenance import stamp
from cmr_demo.train.stage import parse_job, train

PUBLISHED = [("random", 0.118, 0.118), ("CM (CCA)", 0.249, 0.196), ("SM", 0.225, 0.223), ("SCM", 0.277, 0.226)]
PROTOCOLS = {"val": "epoch selected on a validation split carved from train",
             "test": "epoch selected on the test split (the official code's protocol; optimistic)"}


def run_one(data: str, objective: str, seed: int, select_on: str, extra: list[str]) -> dict:
    job = parse_job(["--data", f"wikipedia:{data}", "--objective", objective, "--seed", str(seed), "--standardize",
                     "--select-on", select_on, *extra, "--out", "-", "--quiet"])  # this bench's flags go to training
    m = train(job)[objective]
    return {k: m[k] for k in ("i2t_map", "t2i_map", "avg_map", "best_epoch", "epochs_run", "train_seconds")}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in ("i2t_map", "t2i_map", "avg_map", "train_seconds"):
        values = np.array([r[key] for r in runs])
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out


def table(results: dict, seeds: int) -> str:
    lines = ["| method | protocol | I->T | T->I | avg | s/run |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {name} (published) | - | {i2t:.3f} | {t2i:.3f} | {(i2t + t2i) / 2:.3f} | - |"
        for name, i2t, t2i in PUBLISHED
    ]
    fmt = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    for protocol, per_obj in results.items():
        for name, s in per_obj.items():
            lines.append(f"| `{name}` ({seeds} seeds) | {protocol} | {fmt(s['i2t_map'])} | {fmt(s['t2i_map'])} | "
                         f"{fmt(s['avg_map'])} | {s['train_seconds']['mean']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of the Wikipedia dataset (raw_features.mat + lists)")
    p.add_argument("--objectives", default="all")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--protocols", default="val,test")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "wikipedia"))
    args, extra = p.parse_known_args()
    results: dict = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for protocol in args.protocols.split(","):
        for name in expand_objectives(args.objectives):
            runs = [run_one(args.data, name, seed, protocol, extra) for seed in range(args.seeds)]
            results.setdefault(protocol, {})[name] = {**summarise(runs), "runs": runs}
            s = results[protocol][name]
            print(f"{protocol:4s} {name:14s} I->T {s['i2t_map']['mean']:.3f}±{s['i2t_map']['std']:.3f}  "
                  f"T->I {s['t2i_map']['mean']:.3f}±{s['t2i_map']['std']:.3f}", flush=True)
    md = table(results, args.seeds)
    meta = stamp(["python", "bench/wikipedia.py", *sys.argv[1:]])
    header = (f"Wikipedia (original features), {args.seeds} seeds, run {started} on {meta['machine']}, "
              f"command: `{meta['command']}`\n\n" + "\n".join(f"- {k}: {v}" for k, v in PROTOCOLS.items()) + "\n\n")
    print("\n" + header + md)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({**meta, "started": started, "argv": sys.argv[1:],
                                                    "results": results, "published": PUBLISHED}, indent=2))
    Path(args.out + ".md").write_text(header + md + "\n")


if __name__ == "__main__":
    main()
