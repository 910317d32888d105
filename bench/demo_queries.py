"""The demo bundle as a newcomer queries it: plain class queries, the app's examples, out-of-world texts.

    python bench/demo_queries.py [--bundle assets/demo]

On the hand-written sets in harness/world_queries.py (50 plain in-world queries naming their class,
51 texts from outside the world): mean P@5 with the class stated, under the bundle's default (best)
objective; how often the predicted class is right; false alarms (in-world texts flagged as outside) and
misses (outside texts taken as in-world) of the out-of-world notice; and whether each of the app's text
and image examples finds its class in the top 5. Writes bench/results/demo_queries.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.world_queries import measure  # noqa: E402

from cmr_demo.bundle.load import load_bundle  # noqa: E402
from cmr_demo.files import save_json  # noqa: E402
from cmr_demo.provenance import stamp  # noqa: E402
from cmr_demo.serve.service import RetrievalService  # noqa: E402

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
