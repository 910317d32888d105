"""The training stage: train one CLIP4CMR checkpoint per objective and report mAP@all.

    from cmr_demo.train.spec import ObjectiveSpec
    from cmr_demo.train.stage import DataConfig, TrainJob, train
    metrics = train(TrainJob(DataConfig("wikipedia:../shared/data/wikipedia"), ObjectiveSpec.parse("pcl,ce"),
                             out="runs/wiki"))

Pipeline: data spec -> frozen features (cached) -> fit heads per objective (select the epoch on val, or on
test for the paper's protocol) -> OUT/<objective>/{heads.safetensors, objective.safetensors, config.json,
metrics.json, history.csv} -> a table of all objectives. `python -m cmr_demo.train` is a thin wrapper: its
flags are generated from the dataclasses below, parsed into a `TrainJob`, and `train` runs it.

Why a job value rather than argv: the bundle builder and the studies call this stage from Python with a
dataset and features already loaded (read and hashed once per build, once per study), and each run's
config.json records the job both as values and as the equivalent command line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from cmr_demo.files import package_versions, save_csv, save_json, save_tensors
from cmr_demo.cliargs import HelpFormatter, add_dataclass_args, dataclass_from_args, field_default
from cmr_demo.data import data_spec_help, load_data
from cmr_demo.backbone.features import FeatureSource, dataset_features
from cmr_demo.train.heads import HeadConfig, save_heads
from cmr_demo.train.objectives import list_objectives
from cmr_demo.train.spec import ObjectiveSpec
from cmr_demo.metrics import evaluate
from cmr_demo.train.fit import SELECTION_QUERIES, Tensors, TrainConfig, fit, selection_map, selection_queries

STATE_FILE = "train_state.safetensors"
STATE_EVERY_S = 2.0
TEST_PROTOCOL_NOTE = ("NOTE: --select-on test reproduces the paper's protocol (the official code picks the epoch "
                      "on the test set); the test mAP below is therefore optimistic, not a held-out estimate.")


@dataclass
class DataConfig:
    """Which data, and how the validation split is made when the data has none."""
    spec: str
    val_fraction: float = field(default=0.1, metadata={
        "help": "share of train held out for selection when the data has no val split"})
    strict: bool = field(default=False, metadata={"help": "fail instead of skipping missing/unreadable items"})


@dataclass
class FeatureConfig:
    """Where the frozen features come from: the data's own, or a backbone run over its images and texts."""
    backbone: str | None = None  # None: the data's own features, else RN50:openai (the paper's) on raw data
    cache_dir: str | None = None  # None: $CMR_CACHE_DIR or ~/.cache/cmr_demo/features
    extract_batch_size: int = field(default=64, metadata={"help": "images per backbone batch when extracting"})
    num_workers: int = field(default=0, metadata={"help": "image decoding workers for extraction"})


@dataclass
class TrainJob:
    """One call of the stage: data, objectives, training and head settings, where features come from, and
    where the runs go (`out=None`: a throw-away folder, metrics only, nothing printed unless asked)."""
    data: DataConfig
    objectives: ObjectiveSpec = field(default_factory=lambda: ObjectiveSpec.parse("pcl"))
    train: TrainConfig = field(default_factory=TrainConfig)  # objective / objective_options are set per run
    heads: HeadConfig = field(default_factory=HeadConfig)  # widths 0: taken from the features
    features: FeatureConfig = field(default_factory=FeatureConfig)
    out: str | None = None
    resume: bool = False
    state_every: float = STATE_EVERY_S  # seconds between resume-state writes (0: every epoch)
    quiet: bool = False  # no progress bars, tables or summaries (warnings are still printed)

    def val_fraction(self) -> float:
        return 0.0 if self.train.select_on == "test" else self.data.val_fraction

    def values(self) -> dict:
        """The job's settings as plain JSON values (what a bundle's manifest stores; `from_values` reads them)."""
        return {"data": asdict(self.data), "objectives": {"names": list(self.objectives.names),
                                                          "options": dict(self.objectives.options)},
                "train": asdict(self.train), "heads": asdict(self.heads), "features": asdict(self.features)}

    @classmethod
    def from_values(cls, values: dict, out: str | None = None) -> TrainJob:
        """The job `values()` describes (`out`: where its runs go; None: a throw-away folder)."""
        spec = ObjectiveSpec.parse(values["objectives"]["names"], values["objectives"]["options"])
        return cls(DataConfig(**values["data"]), spec, TrainConfig(**values["train"]), HeadConfig(**values["heads"]),
                   FeatureConfig(**values["features"]), out=out)

    def argv(self, run_options: bool = True) -> list[str]:
        """The equivalent `python -m cmr_demo.train` arguments (recorded with every run; `parse_job` reads them);
        without `run_options`, only the settings (no --out, --resume, --state-every, --quiet)."""
        out = ["--data", self.data.spec, *(["--backbone", self.features.backbone] if self.features.backbone else []),
               *self.objectives.argv()]
        for group, skip in ((self.train, TRAIN_SET_PER_RUN), (self.heads, HEAD_WIDTHS), (self.data, ("spec",)),
                            (self.features, ("backbone",))):
            for f in fields(group):
                if f.name in skip:
                    continue
                value = getattr(group, f.name)
                if value == field_default(f) and f.name != "device":  # the CLI's device default varies by machine
                    continue
                flag = "--" + f.name.replace("_", "-")
                out += [flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, str(value)]
        if not run_options:
            return out
        return out + ["--out", self.out or "-", *(["--resume"] if self.resume else []),
                      *(["--state-every", str(self.state_every)] if self.state_every != STATE_EVERY_S else []),
                      *(["--quiet"] if self.quiet else [])]


TRAIN_SET_PER_RUN = ("objective", "objective_options")
HEAD_WIDTHS = ("image_dim", "text_dim")


def load_dataset(job: TrainJob):
    """The job's data with the splits every stage shares (its validation share, none under select_on=test, its
    seed): the builder's lab features and the trainer see the same items."""
    return load_data(job.data.spec, strict=job.data.strict, seed=job.train.seed, val_fraction=job.val_fraction())


def load_features(job: TrainJob, dataset, ray: str | None = None) -> tuple[dict, FeatureSource]:
    """Every split's features for the job (the data's own, or extracted by its backbone, cached; on Ray with `ray`,
    a cluster's address or "" for a local instance)."""
    f = job.features
    return dataset_features(dataset, f.backbone, job.train.device, job.train.precision, f.cache_dir,
                            f.extract_batch_size, f.num_workers, progress=not job.quiet, ray=ray)


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
    # what was skipped, with the result
    save_json(out / "metrics.json", {**metrics, "ingest": dataset.report.to_dict()})
    save_csv(out / "history.csv", result.history)
    (out / STATE_FILE).unlink(missing_ok=True)


def train_objective(name: str, job: TrainJob, head_cfg: HeadConfig, feats: dict, source: FeatureSource,
                    dataset, folder: str | Path | None = None) -> dict:
    """Train one objective of `job` and write its run into `folder` (default: its folder under `job.out`; a Ray
    worker writes elsewhere and ships the files back: the run's recorded command is the job's either way)."""
    out = Path(folder) if folder is not None else Path(job.out) / run_dir_name(name)
    if (out / "metrics.json").is_file():
        if job.resume:
            _say(job, f"{name}: already complete in {out}, skipped (--resume)")
            return json.loads((out / "metrics.json").read_text())
        raise ValueError(f"{out} already holds a finished run; pass --resume to keep it or use another --out")
    if (out / STATE_FILE).is_file() and not job.resume:
        raise ValueError(f"{out} holds an interrupted run; pass --resume to continue it or use another --out")
    cfg = replace(job.train, objective=name, objective_options=job.objectives.options_for(name))
    dev = torch.device(cfg.device)
    data = {k: Tensors.of(*feats[k], s.labels, dev) for k, s in dataset.splits().items() if k in feats}
    out.mkdir(parents=True, exist_ok=True)
    result = fit(cfg, head_cfg, len(dataset.class_names), data["train"], data[cfg.select_on],
                 state_path=out / STATE_FILE, progress=not job.quiet, state_every_s=job.state_every,
                 log=lambda line: _say(job, line))
    metrics = final_metrics(result, data, dataset.class_names, cfg)
    write_run(out, result, cfg, head_cfg, source, dataset, metrics, ["python", "-m", "cmr_demo.train", *job.argv()])
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


def _say(job: TrainJob, line: str) -> None:
    if line and not job.quiet:
        print(line)


def print_table(rows: dict[str, dict], select_on: str) -> None:
    header = (
        f"{'objective':<14} {'I->T':>7} {'T->I':>7} {'avg':>7} {'chance':>7} {'best ep':>8} {'epochs':>7} {'sec':>7}"
    )
    print(f"\ntest mAP@all (epoch selected on {select_on})\n{header}\n{'-' * len(header)}")
    for name, m in rows.items():
        print(f"{name:<14} {m['i2t_map']:7.4f} {m['t2i_map']:7.4f} {m['avg_map']:7.4f} {m['chance_map']:7.4f} "
              f"{m['best_epoch']:8d} {m['epochs_run']:7d} {m['train_seconds']:7.1f}")


def train(job: TrainJob, dataset=None, features: tuple | None = None) -> dict[str, dict]:
    """Train every objective of `job`; returns {objective: metrics}. `dataset` and `features`: the job's data
    already loaded (`load_dataset`) and its `load_features`, so a caller training many jobs on the same data
    reads and hashes it once."""
    if job.out is None:  # metrics only: the runs go to a folder that is removed afterwards
        with tempfile.TemporaryDirectory() as out:
            return train(replace(job, out=out), dataset, features)
    _say(job, TEST_PROTOCOL_NOTE if job.train.select_on == "test" else "")
    dataset = dataset if dataset is not None else load_dataset(job)
    _say(job, dataset.report.summary())
    _say(job, f"data {dataset.spec}: " + ", ".join(f"{k} {len(v)}" for k, v in dataset.splits().items())
         + f"; {len(dataset.class_names)} classes; val {dataset.val_source if dataset.val else 'none'}")
    t0 = time.perf_counter()
    feats, source = features if features is not None else load_features(job, dataset)
    if source.kind == "precomputed" and job.features.backbone:
        _say(job, f"note: '{job.data.spec}' ships pre-computed features; --backbone {job.features.backbone} is not "
                  f"used")
    dims = (feats["train"][0].shape[1], feats["train"][1].shape[1])
    _say(job, f"features from {source.text}: image {dims[0]}-d, text {dims[1]}-d ({time.perf_counter() - t0:.1f}s)")
    head_cfg = replace(job.heads, image_dim=dims[0], text_dim=dims[1])
    rows = {name: train_objective(name, job, head_cfg, feats, source, dataset) for name in job.objectives.names}
    if not job.quiet:
        print_table(rows, job.train.select_on)
    _say(job, dataset.report.summary())  # again at the end: skipped items must not scroll away unseen
    return rows


def add_job_args(p: argparse.ArgumentParser, objectives: str = "pcl") -> None:
    """Every TrainJob setting as a flag, generated from the dataclasses (their defaults and help); the
    objectives default to `objectives` (--objective and --objectives are the same flag)."""
    p.add_argument("--data", required=True, help=data_spec_help())
    p.add_argument("--backbone", default=None, help="backbone spec for raw images/texts (default RN50:openai, the "
                   "paper's); data that ships features uses its own")
    p.add_argument("--objective", "--objectives", dest="objective", default=objectives,
                   help="NAME[,NAME..] | all | hybrid like pcl+0.5*tl; names: " + ", ".join(list_objectives()))
    p.add_argument("--objective-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="objective option, e.g. margin=0.3 or temperature=0.5 (repeatable; an option no selected "
                        "objective has is refused)")
    add_dataclass_args(p, TrainConfig, skip=TRAIN_SET_PER_RUN)
    p.set_defaults(device="cuda" if torch.cuda.is_available() else "cpu")
    add_dataclass_args(p, HeadConfig, skip=HEAD_WIDTHS)
    add_dataclass_args(p, DataConfig)
    add_dataclass_args(p, FeatureConfig, skip=("backbone", "cache_dir"))
    p.add_argument("--cache-dir", default=None, help="feature cache (default $CMR_CACHE_DIR or "
                                                     "~/.cache/cmr_demo/features)")


def job_from_args(args: argparse.Namespace, out: str | None) -> TrainJob:
    return TrainJob(
        data=DataConfig(args.data, **{f.name: getattr(args, f.name) for f in fields(DataConfig) if f.name != "spec"}),
        objectives=ObjectiveSpec.parse(args.objective, args.objective_opt),
        train=TrainConfig(
            **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in TRAIN_SET_PER_RUN}
        ),
        heads=dataclass_from_args(HeadConfig, args),
        features=FeatureConfig(args.backbone, args.cache_dir, args.extract_batch_size, args.num_workers),
        out=out,
        resume=getattr(args, "resume", False),
        state_every=getattr(args, "state_every", STATE_EVERY_S),
        quiet=getattr(args, "quiet", False),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cmr_demo.train", description=__doc__, formatter_class=HelpFormatter)
    add_job_args(p)
    p.add_argument("--out", required=True, help="output folder; one sub-folder per objective")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs, keep finished ones")
    p.add_argument("--state-every", type=float, default=STATE_EVERY_S, metavar="SECONDS",
                   help="write the resume state at most this often (0: every epoch); a resumed run replays the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    return p


def parse_job(argv: list[str]) -> TrainJob:
    """The job a `python -m cmr_demo.train` command line describes (`--out -`: a throw-away folder)."""
    args = build_parser().parse_args(argv)
    return job_from_args(args, None if args.out == "-" else args.out)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """The command: the job its flags describe. With --quiet (no bars, tables or summaries) the warnings about
    the numbers are still printed: the test-split protocol note, and the items the data left out, last."""
    job = parse_job(sys.argv[1:] if argv is None else argv)
    dataset = load_dataset(job)
    if job.quiet and job.train.select_on == "test":
        print(TEST_PROTOCOL_NOTE)
    rows = train(job, dataset)
    if job.quiet and dataset.report.total:
        print(dataset.report.summary())
    return rows
