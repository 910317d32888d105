"""`python -m cmr_demo.train`: train one CLIP4CMR checkpoint per objective and report mAP@all.

Pipeline: data spec -> frozen features (cached) -> fit heads per objective (select the epoch on
val, or on test for the paper's protocol) -> DIR/<objective>/{heads.safetensors,
objective.safetensors, config.json, metrics.json, history.csv} -> a table of all objectives.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from .checkpoint import package_versions, save_csv, save_heads, save_json, save_tensors
from .cliargs import HelpFormatter, add_dataclass_args, dataclass_from_args
from .data import data_spec_help, load_data
from .features import FeatureSource, dataset_features
from .heads import HeadConfig
from .losses import expand_objectives, list_objectives
from .metrics import evaluate
from .trainer import SELECTION_QUERIES, Tensors, TrainConfig, fit, selection_map, selection_queries

STATE_FILE = "train_state.safetensors"
HEAD_FLAGS = tuple(f.name for f in fields(HeadConfig) if f.name not in ("image_dim", "text_dim"))
TEST_PROTOCOL_NOTE = ("NOTE: --select-on test reproduces the paper's protocol (the official code picks the epoch "
                      "on the test set); the test mAP below is therefore optimistic, not a held-out estimate.")


def run_dir_name(objective: str) -> str:
    """Folder name for an objective: hybrids like 'pcl+0.5*tl' become 'pcl+0.5xtl' (no glob characters)."""
    return objective.replace("*", "x")


def write_run(out: Path, result, cfg: TrainConfig, head_cfg: HeadConfig, source: FeatureSource, dataset,
              metrics: dict, command: list[str]) -> None:
    """Everything a later stage needs, each file written atomically; the resume state goes last."""
    out.mkdir(parents=True, exist_ok=True)
    save_heads(out / "heads.safetensors", result.heads, {"feature_source": source.text})
    save_tensors(out / "objective.safetensors", result.objective.state_dict() or {"_empty": torch.zeros(0)},
                 {"objective": cfg.objective})
    save_json(out / "config.json", {
        "format": "cmr_demo.run/1", "train": asdict(cfg), "heads": asdict(head_cfg),
        "features": asdict(source) | {"text": source.text},
        "data": {"spec": dataset.spec, "class_names": dataset.class_names, "val_source": dataset.val_source,
                 "sizes": {k: len(v) for k, v in dataset.splits().items()}, "ingest": dataset.report.to_dict()},
        "versions": package_versions(), "command": command})
    save_json(out / "metrics.json", {**metrics, "ingest": dataset.report.to_dict()})  # what was skipped, with the result
    save_csv(out / "history.csv", result.history)
    (out / STATE_FILE).unlink(missing_ok=True)


def train_objective(name: str, args, head_cfg: HeadConfig, feats: dict, source: FeatureSource, dataset,
                    command: list[str]) -> dict | None:
    out = Path(args.out) / run_dir_name(name)
    if (out / "metrics.json").is_file():
        if args.resume:
            print(f"{name}: already complete in {out}, skipped (--resume)")
            return json.loads((out / "metrics.json").read_text())
        raise SystemExit(f"{out} already holds a finished run; pass --resume to keep it or use another --out")
    if (out / STATE_FILE).is_file() and not args.resume:
        raise SystemExit(f"{out} holds an interrupted run; pass --resume to continue it or use another --out")
    cfg = replace(dataclass_from_args(TrainConfig, args), objective=name,
                  objective_options=_objective_options(args.objective_opt, name))
    dev = torch.device(args.device)
    labels = {k: s.labels for k, s in dataset.splits().items()}
    data = {k: Tensors.of(*feats[k], labels[k], dev) for k in feats}
    out.mkdir(parents=True, exist_ok=True)
    result = fit(cfg, head_cfg, len(dataset.class_names), data["train"], data[args.select_on],
                 state_path=out / STATE_FILE, progress=not args.quiet, state_every_s=args.state_every)
    metrics = final_metrics(result, data, dataset.class_names, cfg)
    write_run(out, result, cfg, head_cfg, source, dataset, metrics, command)
    return metrics


@torch.no_grad()
def final_metrics(result, data: dict, class_names: list[str], cfg: TrainConfig) -> dict:
    """Test metrics (per class and per query kept) and the selection split's mAP of a finished fit: what
    metrics.json holds, for the trainer and the app's lab alike."""
    out = {"objective": cfg.objective, "selected_on": cfg.select_on, "best_epoch": result.best_epoch,
           "epochs_run": len(result.history), "train_seconds": round(result.seconds, 3)}
    if "test" in data:  # exact, over every query of the test split
        t = data["test"]
        out.update(evaluate(result.heads.encode_image(t.image), result.heads.encode_text(t.text), t.labels, t.labels,
                            class_names, keep_per_query=True))
    if "val" in data:  # the selection split's mAP, as selection measured it (sampled queries past 2,000 items)
        i2t, t2i = selection_map(result.heads, data["val"])
        out["val"] = {"i2t_map": i2t, "t2i_map": t2i, "avg_map": (i2t + t2i) / 2}
        if selection_queries(len(data["val"].labels)) is not None:
            out["val"]["queries"] = SELECTION_QUERIES
    return out


def _declared(name: str) -> set[str]:
    from .losses import option_defaults
    return set(option_defaults(name))


def _objective_options(pairs: list[str], name: str) -> dict:
    """'--objective-opt margin=0.3' applies to every selected objective that declares 'margin'."""
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--objective-opt takes KEY=VALUE, got '{pair}'")
        try:
            number = float(value)
        except ValueError:
            raise SystemExit(f"--objective-opt {key}: '{value}' is not a number") from None
        if key in _declared(name):
            opts[key] = number
    return opts


def check_objective_options(pairs: list[str], names: list[str]) -> None:
    """Refuse an option that none of the selected objectives declares, naming the valid ones: a typo
    such as margn=0.3 must not train and record {} silently."""
    valid = set().union(*(_declared(n) for n in names))
    for pair in pairs:
        key = pair.partition("=")[0]
        if key not in valid:
            raise SystemExit(f"--objective-opt {pair}: no selected objective ({', '.join(names)}) has an option "
                             f"'{key}'; their options: {sorted(valid) or 'none'}")


def print_table(rows: dict[str, dict], select_on: str) -> None:
    header = f"{'objective':<14} {'I->T':>7} {'T->I':>7} {'avg':>7} {'chance':>7} {'best ep':>8} {'epochs':>7} {'sec':>7}"
    print(f"\ntest mAP@all (epoch selected on {select_on})\n{header}\n{'-' * len(header)}")
    for name, m in rows.items():
        print(f"{name:<14} {m['i2t_map']:7.4f} {m['t2i_map']:7.4f} {m['avg_map']:7.4f} {m['chance_map']:7.4f} "
              f"{m['best_epoch']:8d} {m['epochs_run']:7d} {m['train_seconds']:7.1f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cmr_demo.train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--data", required=True, help=data_spec_help())
    p.add_argument("--backbone", default=None, help="backbone spec for raw images/texts (default RN50:openai, the "
                   "paper's); ignored when the data ships pre-computed features")
    p.add_argument("--objective", default="pcl", help="NAME[,NAME..] | all | hybrid like pcl+0.5*tl; names: "
                   + ", ".join(list_objectives()))
    p.add_argument("--objective-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="objective option, e.g. margin=0.3 or temperature=0.5 (repeatable; an option no selected "
                        "objective has is refused)")
    add_dataclass_args(p, TrainConfig, skip=("objective", "objective_options"))
    p.set_defaults(device="cuda" if torch.cuda.is_available() else "cpu")
    add_dataclass_args(p, HeadConfig)
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of train held out for selection when the data has no val split")
    p.add_argument("--strict", action="store_true", help="fail instead of skipping missing/unreadable items")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $CMR_CACHE_DIR or ~/.cache/cmr_demo/features)")
    p.add_argument("--extract-batch-size", type=int, default=64, help="images per backbone batch when extracting")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding workers for extraction")
    p.add_argument("--out", required=True, help="output folder; one sub-folder per objective")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs, keep finished ones")
    p.add_argument("--state-every", type=float, default=2.0, metavar="SECONDS",
                   help="write the resume state at most this often (0: every epoch); a resumed run replays the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def features_for(args, dataset) -> tuple[dict, FeatureSource]:
    """Every split's features for the parsed train arguments (backbone, device, precision, cache, batching)."""
    return dataset_features(dataset, args.backbone, args.device, args.precision, args.cache_dir,
                            args.extract_batch_size, args.num_workers, progress=not args.quiet)


def main(argv: list[str] | None = None, dataset=None, features: tuple | None = None) -> dict[str, dict]:
    """Train every objective `argv` names; returns their metrics. `dataset` and `features`: the data `argv`
    names, already loaded with the same splits, and its `features_for` (the bundle builder passes both, so a
    large dataset is read and hashed once per build)."""
    args = build_parser().parse_args(argv)
    names = expand_objectives(args.objective)
    check_objective_options(args.objective_opt, names)
    if args.select_on == "test":
        print(TEST_PROTOCOL_NOTE)
    if dataset is None:
        dataset = load_data(args.data, strict=args.strict, seed=args.seed,
                            val_fraction=0.0 if args.select_on == "test" else args.val_fraction)
    print(dataset.report.summary())
    print(f"data {dataset.spec}: " + ", ".join(f"{k} {len(v)}" for k, v in dataset.splits().items())
          + f"; {len(dataset.class_names)} classes; val {dataset.val_source if dataset.val else 'none'}")
    t0 = time.perf_counter()
    feats, source = features if features is not None else features_for(args, dataset)
    if source.kind == "precomputed" and args.backbone:
        print(f"note: '{args.data}' ships pre-computed features; --backbone {args.backbone} is not used")
    dims = (feats["train"][0].shape[1], feats["train"][1].shape[1])
    print(f"features from {source.text}: image {dims[0]}-d, text {dims[1]}-d ({time.perf_counter() - t0:.1f}s)")
    head_cfg = HeadConfig(image_dim=dims[0], text_dim=dims[1], **{k: getattr(args, k) for k in HEAD_FLAGS})
    command = ["python", "-m", "cmr_demo.train", *(argv if argv is not None else sys.argv[1:])]
    rows = {name: train_objective(name, args, head_cfg, feats, source, dataset, command) for name in names}
    print_table(rows, args.select_on)
    print(dataset.report.summary())  # again at the end: skipped items must not scroll away unseen
    return rows


def run_silently(objective: str, argv: list[str]) -> dict:
    """One objective trained in a throw-away folder with the CLI's printing silenced; its metrics.

    Why: studies and benchmarks want exactly what `python -m cmr_demo.train` reports, without
    checkpoints piling up or tables interleaving with their own output.
    """
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        return main([*argv, "--objective", objective, "--out", out, "--quiet"])[objective]


if __name__ == "__main__":
    from cmr_demo.cli import run
    sys.exit(run(main))
