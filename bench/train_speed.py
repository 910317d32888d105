"""Training speed on Wikipedia: each objective to early stop, beside a naive loop measured in the same run.

    python bench/train_speed.py --data ../shared/data/wikipedia [--objectives all] [--profile pcl]

The naive loop is what a first implementation looks like: Python batching over numpy arrays (a new
tensor per batch) and a per-epoch numpy mAP on the test split (as the official code) with one argsort
per query in a Python loop. Ours also writes a crash-safe resume state (fsync) every epoch. It trains the
same heads with the same objective for the same number of epochs as our `pcl` run, so the comparison
is time per epoch, not luck. With --profile NAME, pyinstrument's view of one run shows where time goes.
Writes bench/results/train_speed.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.data import load_data  # noqa: E402
from cmr_demo.train.heads import HeadConfig, Heads  # noqa: E402
from cmr_demo.train.objectives import build_objective, expand_objectives  # noqa: E402
from cmr_demo.provenance import machine  # noqa: E402
from cmr_demo.train.spec import ObjectiveSpec  # noqa: E402
from cmr_demo.train.stage import DataConfig, TrainJob, train  # noqa: E402
from cmr_demo.train.fit import TrainConfig  # noqa: E402

TARGET_S = 5.0  # the target for one Wikipedia run to early stop on 2 cores


def run_ours(data: str, objective: str, device: str = "cpu", precision: str = "fp32") -> dict:
    start = time.perf_counter()
    m = train(
        TrainJob(
            DataConfig(f"wikipedia:{data}"),
            ObjectiveSpec.parse(objective),
            TrainConfig(device=device, precision=precision),
            HeadConfig(standardize=True),
            quiet=True,
        )
    )[objective]
    wall = time.perf_counter() - start
    return {"wall_s": wall, "train_s": m["train_seconds"], "epochs": m["epochs_run"], "avg_map": m["avg_map"]}


PROBE = ("import time; t = time.perf_counter(); import torch; a = time.perf_counter(); "
         "torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]); print(a - t, time.perf_counter() - a)")


def fresh_process(data: str, objective: str) -> dict:
    """`python -m cmr_demo.train` in a new process, start to exit, and the one-off imports it pays.

    Why both: the in-process figures above leave out what every new process pays once: importing
    torch, and torch.optim's first optimizer importing torch._dynamo (its add_param_group is wrapped
    in a lazily imported dynamo guard)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cmr_demo.train", "--data", f"wikipedia:{data}", "--standardize",
                        "--objective", objective, "--device", "cpu", "--quiet", "--out", out],
                       check=True, capture_output=True, env=env)
        wall = time.perf_counter() - start
    torch_s, dynamo_s = map(float, subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True,
                                                  text=True, env=env).stdout.split())
    return {"objective": objective, "wall_s": wall, "import_torch_s": torch_s, "import_dynamo_s": dynamo_s}


def naive_map(query: np.ndarray, ql: np.ndarray, gallery: np.ndarray, gl: np.ndarray) -> float:
    aps = []
    for q, label in zip(query, ql):  # one argsort per query, in Python
        order = np.argsort(-(gallery @ q))
        rel = (gl[order] == label).astype(float)
        aps.append(float((np.cumsum(rel) / np.arange(1, len(rel) + 1) * rel).sum() / max(rel.sum(), 1)))
    return float(np.mean(aps))


def run_naive(data: str, epochs: int) -> dict:
    """The same heads and pcl objective, trained the straightforward way for `epochs` epochs."""
    ds = load_data(f"wikipedia:{data}")
    tr, va = ds.train, ds.test  # evaluated on test every epoch, as the official code does
    mean_i, std_i = tr.image_features.mean(0), tr.image_features.std(0) + 1e-6
    mean_t, std_t = tr.text_features.mean(0), tr.text_features.std(0) + 1e-6
    xi, xt = (tr.image_features - mean_i) / std_i, (tr.text_features - mean_t) / std_t
    vi, vt = (va.image_features - mean_i) / std_i, (va.text_features - mean_t) / std_t
    torch.manual_seed(0)
    heads = Heads(HeadConfig(image_dim=xi.shape[1], text_dim=xt.shape[1]))
    objective = build_objective("pcl", len(ds.class_names), 1024)
    opt = torch.optim.Adam(list(heads.parameters()) + list(objective.parameters()), lr=1e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(epochs):
        heads.train()
        order = rng.permutation(len(xi))
        for b in range(0, len(order), 300):
            idx = order[b:b + 300]
            img = heads.encode_image(torch.tensor(xi[idx], dtype=torch.float32))
            txt = heads.encode_text(torch.tensor(xt[idx], dtype=torch.float32))
            loss = objective(img, txt, torch.tensor(tr.labels[idx]))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        heads.eval()
        with torch.no_grad():
            ei = heads.encode_image(torch.tensor(vi, dtype=torch.float32)).numpy()
            et = heads.encode_text(torch.tensor(vt, dtype=torch.float32)).numpy()
        (naive_map(ei, va.labels, et, va.labels) + naive_map(et, va.labels, ei, va.labels)) / 2
    return {"train_s": time.perf_counter() - start, "epochs": epochs}


def profile(data: str, objective: str, device: str = "cpu") -> str:
    from pyinstrument import Profiler
    profiler = Profiler(interval=0.001)
    with profiler:
        run_ours(data, objective, device)
    return profiler.output_text(unicode=False, color=False, show_all=False)


def markdown(r: dict) -> str:
    lines = [f"Training speed on Wikipedia, {r['date']}, {r['machine']}, command `{r['command']}`, "
             f"load average after {[round(x, 1) for x in r['load_avg_after']]}", "",
             f"Target: one run to early stop <= {TARGET_S:.0f} s wall. Naive loop (same heads, pcl, "
             f"{r['naive']['epochs']} epochs, Python batching + per-query numpy mAP on the test split each epoch): "
             f"**{r['naive']['train_s']:.1f} s**, {r['naive']['train_s'] / r['naive']['epochs'] * 1000:.0f} "
             f"ms/epoch.", "",
             "| objective | wall s (run in a warm process, data load incl.) | train s | epochs | ms/epoch | pairs/s | "
             "avg mAP | target |",
             "|---|---|---|---|---|---|---|---|"]
    for name, o in r["ours"].items():
        pairs = r["n_train"] * o["epochs"] / o["train_s"]
        lines.append(f"| `{name}` | {o['wall_s']:.1f} | {o['train_s']:.1f} | {o['epochs']} | "
                     f"{o['train_s'] / o['epochs'] * 1000:.0f} | {pairs:,.0f} | {o['avg_map']:.3f} | "
                     f"{'met' if o['wall_s'] <= TARGET_S else 'missed'} |")
    if r.get("process"):
        pr = r["process"]
        lines += ["", f"A fresh `python -m cmr_demo.train` process ({pr['objective']}): {pr['wall_s']:.1f} s from "
                      f"start to "
                      f"exit, of which importing torch {pr['import_torch_s']:.1f} s and torch.optim's first optimizer "
                      f"(it imports torch._dynamo) {pr['import_dynamo_s']:.1f} s."]
    if r.get("profile"):
        lines += ["", f"Profile of one `{r['profile_objective']}` run (pyinstrument):", "", "```", r["profile"], "```"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--objectives", default="all")
    p.add_argument("--profile", default="pcl", help="objective to profile ('' for none)")
    p.add_argument("--device", default="cpu", help="device of our runs (the naive loop stays on the CPU)")
    p.add_argument("--bf16", default="pcl", help="objectives also timed under bf16 autocast ('' for none)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_speed"))
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    run_ours(args.data, "pcl", args.device)  # one-off imports and (on a GPU) CUDA set-up, outside every timed run
    ours = {name: run_ours(args.data, name, args.device) for name in expand_objectives(args.objectives)}
    ours.update({f"{name} (bf16)": run_ours(args.data, name, args.device, "bf16")
                 for name in (expand_objectives(args.bf16) if args.bf16 else [])})
    epochs = ours.get("pcl", next(iter(ours.values())))["epochs"]  # the naive loop runs as many as our fp32 pcl
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": args.device,
              "machine": f"{machine()}, {torch.get_num_threads()} torch threads",
              "command": " ".join(["python", "bench/train_speed.py", *sys.argv[1:]]),
              "n_train": len(load_data(f"wikipedia:{args.data}").train), "ours": ours,
              "naive": run_naive(args.data, epochs), "load_avg_after": os.getloadavg()}
    if not args.device.startswith("cuda"):
        result["process"] = fresh_process(args.data, "pcl")
    if args.profile:
        text = profile(args.data, args.profile, args.device)
        result["profile_objective"], result["profile"] = args.profile, "\n".join(text.splitlines()[:45])
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    Path(args.out + ".md").write_text(markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
