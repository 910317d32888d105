"""The objective lab: how long a run takes, that it reproduces the bundle, and search latency while it trains.

    python bench/lab.py [--bundles assets/demo assets/wikipedia] [--searches 200]

1. In-process, on each bundle: a default lab run (the bundle's own settings) of its best objective and of
   pcl, timed, with its test avg mAP beside the bundle's stored one (equal when the lab and the builder
   share one code path).
2. Against `python app.py` serving the bundles: JSON API text-search latency (a new text each time, one
   client) while the process is idle, then while lab runs train back to back in it (gradio_client
   /lab_train), p50 / p95 side by side.
Writes bench/results/lab.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.app_server import start_app, stop_app  # noqa: E402
from cmr_demo.serve import lab  # noqa: E402
from cmr_demo.bundle.load import load_bundle  # noqa: E402
from cmr_demo.provenance import save_result, stamp  # noqa: E402

GOALS = {"default_run_s_demo": 20.0}
QUERIES = ["a red star", "two blue hearts", "a shape with three corners", "a small ring", "an arrow pointing left"]


def runs_in_process(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        bundle = load_bundle(folder, load_backbone=False)
        best = max(bundle.manifest["objectives"], key=lambda n: bundle.manifest["objectives"][n]["avg_map"])
        for objective in dict.fromkeys([best, "pcl"]):
            train, heads = lab.settings_for(bundle, objective)
            start = time.perf_counter()
            run = lab.train_lab(bundle, train, heads, f"lab: {objective}")
            rows.append({"bundle": folder.name, "objective": objective, "seconds": time.perf_counter() - start,
                         "epochs": run.metrics["epochs_run"], "avg_map": run.metrics["avg_map"],
                         "stored_avg_map": bundle.manifest["objectives"][objective]["avg_map"]})
            print(rows[-1], flush=True)
    return rows


def latencies(url: str, n: int, tag: str, until=None) -> list[float]:
    """`n` searches one after another (or, with `until`, as many as it takes until it says stop)."""
    import httpx
    out = []
    with httpx.Client(base_url=url + "api/v1/", timeout=60) as http:
        i = 0
        while (until is None and i < n) or (until is not None and not until()):
            i += 1
            body = {"text": f"{QUERIES[i % len(QUERIES)]} {tag} {i}", "k": 10, "bundle": "demo"}
            start = time.perf_counter()
            r = http.post("search/text", json=body)
            out.append((time.perf_counter() - start) * 1000)
            assert r.status_code == 200, r.text
    return out


def search_during_lab(folders: list[Path], n: int, log: Path) -> dict:
    from gradio_client import Client
    proc, url, _ = start_app(folders, log)
    try:
        latencies(url, 20, "warm-up")
        idle = latencies(url, n, "idle")
        done, lab_runs = threading.Event(), []

        def train_back_to_back():
            client = Client(url, verbose=False)
            while not done.is_set():
                start = time.perf_counter()
                answer = client.predict("tl-semihard", bundle="wikipedia", api_name="/lab_train")
                lab_runs.append({"seconds": time.perf_counter() - start, "epochs": answer["epochs"]})
        worker = threading.Thread(target=train_back_to_back, daemon=True)
        worker.start()
        time.sleep(1.0)  # the first run is training
        during = latencies(url, n, "during", until=lambda: len(lab_runs) >= 2)  # two whole runs
        done.set()
        worker.join()
    finally:
        stop_app(proc)
    pct = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    return {"idle_p50_ms": pct(idle, 50), "idle_p95_ms": pct(idle, 95), "during_p50_ms": pct(during, 50),
            "during_p95_ms": pct(during, 95), "searches_idle": len(idle), "searches_during": len(during),
            "lab_runs": lab_runs}


def table(result: dict) -> str:
    lines = [
        "| bundle | objective | lab run | epochs | test avg mAP | the bundle's stored | equal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(f"| {r['bundle']} | `{r['objective']}` | {r['seconds']:.1f} s | {r['epochs']} | "
                     f"{r['avg_map']:.4f} | "
                     f"{r['stored_avg_map']:.4f} | {'yes' if r['avg_map'] == r['stored_avg_map'] else 'no'} |")
    demo = [r["seconds"] for r in result["runs"] if r["bundle"] == "demo"]
    s = result["search"]
    runs = s["lab_runs"]
    lines += ["", f"Default lab run on the demo bundle: {max(demo):.1f} s at most (goal <= "
                  f"{GOALS['default_run_s_demo']:.0f} s: "
              f"{'met' if max(demo) <= GOALS['default_run_s_demo'] else '**missed**'})." if demo else "", "",
              "| JSON API text search (1 client, a new text each time) | searches | p50 | p95 |", "|---|---|---|---|",
              f"| idle | {s['searches_idle']} | {s['idle_p50_ms']:.1f} ms | {s['idle_p95_ms']:.1f} ms |",
              f"| while lab runs train (`tl-semihard` on wikipedia, back to back: {len(runs)} runs of "
              f"{np.mean([r['seconds'] for r in runs]):.1f} s) | {s['searches_during']} | {s['during_p50_ms']:.1f} ms "
              f"| "
              f"{s['during_p95_ms']:.1f} ms |"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", nargs="+", default=[str(ROOT / "assets" / "demo"), str(ROOT / "assets" / "wikipedia")])
    p.add_argument("--searches", type=int, default=300, help="searches while idle (during lab runs: as many as fit)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "lab"))
    args = p.parse_args()
    folders = [Path(b) for b in args.bundles]
    result = {**stamp(["python", "bench/lab.py", *sys.argv[1:]]), "runs": runs_in_process(folders),
              "search": search_during_lab(folders, args.searches, Path(args.out + ".log"))}
    print(save_result(args.out, result, table(result)))


if __name__ == "__main__":
    main()
