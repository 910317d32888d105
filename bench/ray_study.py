"""One study three ways: one run after another, `--jobs 2` (local processes) and `--ray` (a local Ray instance with
this machine's CPUs), timed in the same session; and whether their rows agree.

    python bench/ray_study.py [--data wikipedia:../shared/data/wikipedia]

The study: imbalance on the data's own features, pcl and ce, both modalities, fractions 1/0.5/0.3/0.1 (14 runs).
Each way runs as its own `python -m cmr_demo.experiments.study` process, so its time includes what a user waits
for (Python and torch imports, reading the data, starting Ray). Writes bench/results/ray_study.json and .md.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.provenance import save_result, stamp  # noqa: E402

WAYS = {"one at a time": [], "--jobs 2": ["--jobs", "2"], "--ray (local, 2 CPUs)": ["--ray"]}
SAME = ("objective", "modality", "fraction", "seed", "i2t_map", "t2i_map", "avg_map", "best_epoch", "epochs_run")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=f"wikipedia:{ROOT.parent / 'shared' / 'data' / 'wikipedia'}")
    p.add_argument("--repeat", type=int, default=2, help="runs of each way, interleaved; the fastest is reported")
    args = p.parse_args()
    study = ["imbalance", "--data", args.data, "--standardize", "--objectives", "pcl,ce", "--modality", "both",
             "--fractions", "1,0.5,0.3,0.1"]
    results, rows, every = {}, {}, {name: [] for name in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(args.repeat):  # interleaved: a slow spell on this shared machine hits every way
            for name, extra in WAYS.items():
                out = Path(tmp) / f"{name.split()[0].strip('-')}{attempt}"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cmr_demo.experiments.study", *study, *extra, "--out",
                                str(out)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                every[name].append(time.perf_counter() - start)
                with (out / "imbalance.csv").open(newline="") as f:
                    rows[name] = [{k: r[k] for k in SAME} for r in csv.DictReader(f)]
    results = {name: min(times) for name, times in every.items()}
    base = rows["one at a time"]
    gap = {
        name: max(abs(float(a["avg_map"]) - float(b["avg_map"])) for a, b in zip(base, r)) for name, r in rows.items()
    }
    same = {name: [tuple(x.values()) for x in r] == [tuple(x.values()) for x in base] for name, r in rows.items()}
    # --jobs 2 and --ray both train with one torch thread a run, one at a time with two: the last float bits of a
    # summation can differ between thread counts, never between runners with the same count
    ray_as_jobs = [tuple(x.values()) for x in rows["--ray (local, 2 CPUs)"]] == [
        tuple(x.values()) for x in rows["--jobs 2"]
    ]
    jobs, ray = results["--jobs 2"], results["--ray (local, 2 CPUs)"]
    body = (f"imbalance study on `{args.data.split(':')[0]}` (pcl, ce; both modalities; fractions 1/0.5/0.3/0.1; "
            f"{len(base)} rows, 14 runs), each way a fresh process, {args.repeat} interleaved runs of each in the "
            f"same session, the fastest shown (all: in the .json):\n\n"
            "| runner | wall time | vs one at a time | rows equal to one at a time's | largest avg mAP gap |\n"
            "|---|---|---|---|---|\n" +
            "".join(f"| {name} | {t:.1f} s (all: {', '.join(f'{x:.0f}' for x in every[name])}) | "
                    f"{results['one at a time'] / t:.2f}x | {'yes' if same[name] else 'no'} | "
                    f"{gap[name]:.1e} |\n" for name, t in results.items()) +
            f"\n`--ray` against `--jobs 2`: {abs(ray - jobs) / jobs:.0%} apart (target: within 10 %); their rows "
            f"{'are identical' if ray_as_jobs else '**differ**'} (both train with one torch thread a run; one at a "
            f"time uses two, which can change a float's last bits).")
    print(save_result(ROOT / "bench" / "results" / "ray_study",
                      {**stamp(["python", "bench/ray_study.py", *sys.argv[1:]]), "seconds": results, "every": every,
                       "rows_equal": same, "ray_rows_equal_jobs": ray_as_jobs, "avg_map_gap": gap}, body))


if __name__ == "__main__":
    main()
