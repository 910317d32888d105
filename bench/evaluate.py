"""Exact test metrics at gallery scale: the builder's evaluation against the full stable sort it replaced.

    python bench/evaluate.py [--sizes 5000,20000,50000] [--dim 256] [--classes 10]

For each size N: N image and N text embeddings (class-structured, unit-norm, seeded), one direction (image
queries over all texts) evaluated by the rank counting `metrics.evaluate` uses past
SORT_ALL_MAX_ITEMS test items (integer sorts + binary search), and by the reference it replaced there (a stable torch
sort of the whole gallery per query with its indices, then the
cumulative-precision AP), timed in the same run. Both give every query's AP: the largest difference is
printed beside the times. Writes bench/results/evaluate.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo import metrics  # noqa: E402
from cmr_demo.provenance import save_result, stamp  # noqa: E402


def world(n: int, dim: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim))
    img = centres[labels] + 1.5 * rng.normal(size=(n, dim))
    txt = centres[labels] + 1.5 * rng.normal(size=(n, dim))
    return img.astype(np.float32), txt.astype(np.float32), labels


def reference_ap(q, ql, g, gl) -> np.ndarray:
    return np.concatenate([metrics.ap_from_relevance(rel).double().numpy()
                           for rel in metrics.ranked_relevance(q, ql, g, gl)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="5000,20000,50000")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--classes", type=int, default=10)
    args = p.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        img, txt, labels = world(n, args.dim, args.classes)
        names = [str(c) for c in range(args.classes)]
        start = time.perf_counter()
        ours = metrics._direction_by_rank_counts(img, labels, txt, labels, names, list(metrics.DEFAULT_KS))
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        ref = reference_ap(
            torch.from_numpy(img), torch.from_numpy(labels), torch.from_numpy(txt), torch.from_numpy(labels)
        )
        ref_s = time.perf_counter() - start
        rows.append({"items": n, "ours_s": round(ours_s, 2), "reference_s": round(ref_s, 2),
                     "speedup": round(ref_s / ours_s, 1), "map": ours["map"],
                     "max_abs_ap_difference": float(np.abs(ours["ap"] - ref).max())})
        print(rows[-1], flush=True)
    body = ["| test items (one direction) | rank counting (integer sorts + binary search) | full stable sort "
            "(reference) "
            "| speed-up | mAP | largest AP difference |", "|---|---|---|---|---|---|"]
    body += [f"| {r['items']:,} | {r['ours_s']:.1f} s | {r['reference_s']:.1f} s | {r['speedup']:.1f}x | "
             f"{r['map']:.4f} | "
             f"{r['max_abs_ap_difference']:.1e} |" for r in rows]
    result = {**stamp(["python", "bench/evaluate.py", *sys.argv[1:]]), "rows": rows}
    print(save_result(ROOT / "bench" / "results" / "evaluate", result, "\n".join(body)))


if __name__ == "__main__":
    main()
