"""The demo bundle as a newcomer queries it: plain class queries, the app's examples, out-of-world texts.

    python bench/demo_queries.py [--bundle assets/demo]

On the hand-written sets in tests/data/world_queries.py (50 plain in-world queries naming their class,
51 texts from outside the world): mean P@5 with the class stated, under the bundle's default (best)
objective; how often the predicted class is right; false alarms (in-world texts flagged as outside) and
misses (outside texts taken as in-world) of the out-of-world notice; and whether each of the app's text
and image examples finds its class in the top 5. Writes bench/results/demo_queries.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))
import world_queries  # noqa: E402

from cmr_demo.bundle.load import load_bundle  # noqa: E402
from cmr_demo.files import save_json  # noqa: E402
from cmr_demo.provenance import stamp  # noqa: E402
from cmr_demo.serve.service import RetrievalService  # noqa: E402
from cmr_demo.ui.views import text_examples  # noqa: E402

IMAGE_EXAMPLES = range(0, 60, 6)  # the gallery rows app.py offers as image examples


def measure(service: RetrievalService) -> dict:
    best = service.best
    plain = [(q, c, service.search(service.text_query(q, c), best, 5)) for q, c in world_queries.PLAIN]
    p5 = [r.p_at_k["5"] for _, _, r in plain]
    right = [r.info.predicted_class == c for _, c, r in plain]
    false_alarms = [q for q, _, r in plain if r.info.in_domain is False]
    misses = [q for q in world_queries.OUT_OF_WORLD if service.query_info(service.text_query(q), best).in_domain]
    examples = {t: c in [h.class_name for h in service.search(service.text_query(t), best, 5).hits]
                for t, c in text_examples(service)}
    images = {}
    for row in IMAGE_EXAMPLES:
        hits = service.search(service.image_query(str(service.bundle.image_path(row))), best, 5).hits
        images[service.bundle.items[row]["id"]] = service.class_names[service.bundle.labels[row]] in [
            h.class_name for h in hits
        ]
    return {"objective": best, "plain_queries": len(plain), "out_of_world_queries": len(world_queries.OUT_OF_WORLD),
            "mean_p_at_5": float(np.mean(p5)), "predicted_class_accuracy": float(np.mean(right)),
            "worst_p_at_5": sorted([(float(p), q) for p, (q, _, _) in zip(p5, plain)])[:5],
            "false_alarms": false_alarms, "misses": misses, "text_examples_top5": examples,
            "image_examples_top5": images}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="assets/demo")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo_queries.json"))
    args = p.parse_args()
    result = {**stamp(["python", "bench/demo_queries.py", *sys.argv[1:]]),
              **measure(RetrievalService(load_bundle(args.bundle)))}
    save_json(args.out, result)
    print({k: result[k] for k in ("objective", "mean_p_at_5", "predicted_class_accuracy")},
          f"false alarms {len(result['false_alarms'])}/{result['plain_queries']}",
          f"misses {len(result['misses'])}/{result['out_of_world_queries']}")


if __name__ == "__main__":
    main()
