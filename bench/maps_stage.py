"""The build's "embeddings + maps" stage at 50,000 items, part by part, beside the way it placed points before.

    python bench/maps_stage.py FEATURES.safetensors [--peer]

FEATURES: the test split's backbone features of a large build (the feature cache `bundle build` writes, e.g. the
50,000-item test split of shapes:250000,seed=5). The stage's work for a bundle of one trained objective and the
zero-shot column: the zero-shot column's metrics (the same exact evaluation every objective gets), then one map per
objective of both modalities (2 x 50,000 points): UMAP fitted on 20,000 of them, the rest placed. The trained
objective's embeddings are stood in for by a fixed random projection of the features to 256 dimensions, unit norm
(the heads' output has that shape; the stage's cost does not depend on the weights). The feature cache holds no
labels: synthetic ones (row % 40) make identical features of different classes tie between a relevant and an
irrelevant item, which sends most rows of the metrics down the exact tie path (an upper bound on that part).
`--peer` also times the
previous placement (UMAP's own `transform`) on the zero-shot map, in the same run. Writes
bench/results/maps_stage.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.provenance import save_result, stamp  # noqa: E402

BUILD_TARGET_MIN = 20.0  # the whole 50,000-item build (issue 41)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def transform_map(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """The previous placement: UMAP fitted on the same sample, the other points placed by `transform`."""
    import umap

    from cmr_demo.bundle import maps
    from cmr_demo.sampling import seeded_rows
    sample = seeded_rows(len(emb), maps.FIT_AT_MOST, seed)
    reducer = umap.UMAP(n_neighbors=maps.UMAP_NEIGHBORS, min_dist=maps.UMAP_MIN_DIST, metric="cosine",
                        random_state=seed, n_jobs=1, init="spectral")
    coords = reducer.fit_transform(emb[sample])
    rest = np.setdiff1d(np.arange(len(emb)), sample)
    return np.concatenate([coords, reducer.transform(emb[rest])])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features")
    p.add_argument("--peer", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "maps_stage"))
    args = p.parse_args()
    from safetensors.numpy import load_file

    from cmr_demo.bundle.maps import fit_map
    from cmr_demo.metrics import evaluate
    import torch
    feats = load_file(args.features)
    image, text = _unit(feats["image"]), _unit(feats["text"])
    n = len(image)
    labels = np.arange(n) % 40  # synthetic (see the docstring): the worst case for the metrics' tie path
    rng = np.random.default_rng(0)
    project = rng.normal(size=(image.shape[1], 256)).astype(np.float32)
    heads = _unit(image @ project), _unit(text @ project)
    parts = {}
    start = time.perf_counter()
    evaluate(torch.from_numpy(image), torch.from_numpy(text), labels, labels, [str(c) for c in range(40)],
             keep_per_query=True)
    parts["zero-shot metrics"] = time.perf_counter() - start
    fit_map(np.concatenate([image[:2000], text[:2000]]))  # numba's compilation, paid once per build
    for name, (img, txt) in {"zero-shot map": (image, text), "trained objective's map": heads}.items():
        start = time.perf_counter()
        fit_map(np.concatenate([img, txt]))
        parts[name] = time.perf_counter() - start
    peer = None
    if args.peer:
        start = time.perf_counter()
        transform_map(np.concatenate([image, text]))
        peer = time.perf_counter() - start
    shown = [Path(a).name if a == args.features else a for a in sys.argv[1:]]  # no machine path in the result
    result = {**stamp(["python", "bench/maps_stage.py", *shown]), "items": n, "parts_s": parts,
              "peer_transform_map_s": peer}
    lines = ["| part | seconds |", "|---|---|", *[f"| {k} | {v:.1f} |" for k, v in parts.items()],
             f"| **the stage** | **{sum(parts.values()):.1f}** |"]
    note = (f"\n\n{n:,} items, 2 x {n:,} points per map, UMAP fitted on 20,000 of them, the rest placed by "
            f"similarity-weighted nearest fitted points (as the app places a query).")
    if peer is not None:
        note += (f" Peer in the same run, the previous placement (UMAP's `transform`) of the zero-shot map: "
                 f"{peer:.1f} s against {parts['zero-shot map']:.1f} s.")
    print(save_result(args.out, result, "\n".join(lines) + note))


if __name__ == "__main__":
    main()
