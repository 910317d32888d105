"""`python -m cmr_demo.experiments.study`: the paper's studies as sweeps of `cmr_demo.train` runs.

    python -m cmr_demo.experiments.study imbalance   --data SPEC [--objectives pcl,ce] [--fractions 1,0.5,0.1]
    [--modality both]
    python -m cmr_demo.experiments.study sensitivity --data SPEC [--objectives pcl,ce] --param embed_dim=64,256 --param
    margin=0.1,0.3

Any other option (e.g. --standardize, --epochs 50) goes to every training run unchanged. Each finished
run is appended to DIR/<study>.csv at once (written atomically, so a long study can be read midway);
at the end DIR/<study>.html (and .png when kaleido is installed) draws avg mAP per objective, and
DIR/<study>.json records the date, machine, command and package versions.

From Python: `run_study(Imbalance([1, 0.5], "text"), TrainJob(DataConfig(spec), ObjectiveSpec.parse("pcl,ce")))`.

Why `cmr_demo.train.stage.train` calls on throw-away folders: a study row is then exactly what a plain
`python -m cmr_demo.train` with the same settings reports, and no checkpoints pile up. The data is read
and encoded once per study (once per worker with --jobs); each seed carves its own validation split.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from tqdm import tqdm

from cmr_demo.files import load_csv, save_csv, save_json
from cmr_demo.cliargs import HelpFormatter
from cmr_demo.experiments.runners import METRICS, finished_rows, run_all, study_data
from cmr_demo.ray_cluster import ray_module  # imports Ray only when called
from cmr_demo.train.heads import HeadConfig
from cmr_demo.train.objectives import option_defaults
from cmr_demo.train.spec import ObjectiveSpec
from cmr_demo.provenance import stamp
from cmr_demo.train.stage import HEAD_WIDTHS, TEST_PROTOCOL_NOTE, DataConfig, TrainJob, add_job_args, job_from_args
from cmr_demo.train.fit import TrainConfig

NOT_SWEPT = {"seed"}  # set by --seeds
PALETTE = qualitative.Plotly + qualitative.Dark24  # one colour per objective


@dataclass
class Run:
    """One planned row: `changes` (setting or objective option -> value) is None for a row that is recorded
    but not trained (a skipped combination)."""
    objective: str
    facet: str
    x: float
    changes: dict[str, float] | None
    note: str = ""


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _options(objective: str) -> set[str]:
    """Options an objective (or every part of a hybrid) declares, e.g. {'margin'} for tl."""
    return set(option_defaults(objective))


def sweepable() -> dict[str, tuple[str, type]]:
    """Numeric settings a sensitivity sweep may vary: name -> (the TrainJob group holding it, its type), e.g.
    'embed_dim' -> ('heads', int), from the config dataclasses themselves."""
    out = {}
    for group, cls, skip in (("train", TrainConfig, NOT_SWEPT), ("heads", HeadConfig, HEAD_WIDTHS),
                             ("data", DataConfig, ())):
        for f in fields(cls):
            kind = {"int": int, "float": float}.get(f.type, f.type)
            if f.name not in skip and kind in (int, float):
                out[f.name] = (group, kind)
    return out


def job_for(base: TrainJob, run: Run, seed: int, settings: dict[str, dict] | None = None) -> TrainJob:
    """The training job of one planned row: `base` with the row's objective, changes and seed, metrics only.
    `settings`: {objective: options} each objective starts from (a bundle's choice on validation,
    `settings_from`); options `base` names and the row's own changes go over them."""
    groups = {"train": replace(base.train, seed=seed), "heads": base.heads, "data": base.data}
    options = {**(settings or {}).get(run.objective, {}), **base.objectives.options_for(run.objective)}
    where = sweepable()
    for name, value in (run.changes or {}).items():
        if name not in where:
            options[name] = value
            continue
        group_name, kind = where[name]  # the field's declared type, not the value's (TrainConfig(lr=1) is a float)
        if kind is int and value != int(value):
            raise ValueError(f"{name} takes whole numbers; got {value}")
        groups[group_name] = replace(groups[group_name], **{name: kind(value)})
    return replace(base, objectives=ObjectiveSpec.parse(run.objective, options), out=None, quiet=True, **groups)


def settings_from(bundle: str | Path) -> dict[str, dict]:
    """{objective: options} a bundle chose on validation for each objective it trained (its manifest's `tuning`):
    a study then compares every objective at its own tuned setting, not at the official code's."""
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    return {name: dict(entry["tuning"]["settings"]) for name, entry in manifest["objectives"].items()
            if (entry.get("tuning") or {}).get("settings")}


def effective_settings(job: TrainJob) -> str:
    """What a job actually trains with, as one comparable string: every setting that can change a result, and
    the objective's options with their defaults filled in (pcl's temperature=1 is pcl with no option)."""
    settings = asdict(job)
    for key in ("out", "quiet", "resume", "state_every"):
        settings.pop(key)
    settings["features"] = {"backbone": job.features.backbone}
    settings["objectives"] = {name: job.objectives.effective_options(name) for name in job.objectives.names}
    return json.dumps(settings, sort_keys=True, default=str)


@dataclass
class Imbalance:
    """Modality imbalance: only a fraction of the training pairs keep their text (or image), the rest of
    that modality is unseen. Why both directions: the paper's claim is that PCL degrades least either way."""
    fractions: list[float]
    modality: str
    facet, x_name, x_title = "modality", "fraction", "share of training pairs that keep the modality"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--fractions", type=_floats, default=[1.0, 0.7, 0.5, 0.3, 0.1],
                       help="comma-separated shares of training pairs that keep the modality")
        p.add_argument("--modality", choices=["text", "image", "both"], default="text",
                       help="text: all images, a fraction of texts; image: the mirror case")

    @classmethod
    def from_args(cls, args) -> Imbalance:
        return cls(args.fractions, args.modality)

    def argv(self) -> list[str]:
        return ["--fractions", ",".join(repr(float(f)) for f in self.fractions), "--modality", self.modality]

    def plan(self, objectives: list[str]) -> list[Run]:
        modalities = ["text", "image"] if self.modality == "both" else [self.modality]
        return [Run(name, m, f, {f"{m}_fraction": f})
                for m in modalities for name in objectives for f in self.fractions]


@dataclass
class Sensitivity:
    """One-at-a-time sweeps around the defaults (plus any pass-through flags): each value of each
    parameter is one run with everything else unchanged, so a curve shows that parameter alone."""
    params: dict[str, list[str]]
    facet, x_name, x_title = "parameter", "value", "parameter value"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2,..",
                       help="a setting (embed_dim, hidden_dim, batch_size, lr, ...) or an objective option "
                            "(margin, temperature, ...); repeatable")

    @classmethod
    def from_args(cls, args) -> Sensitivity:
        params = {}
        for item in args.param:
            name, sep, values = item.partition("=")
            if not sep or not values.strip():
                raise ValueError(f"--param takes NAME=V1,V2,..; got '{item}'")
            params[name.strip().replace("-", "_")] = [v.strip() for v in values.split(",") if v.strip()]
        if not params:
            raise ValueError("sensitivity needs at least one --param NAME=V1,V2,..")
        return cls(params)

    def argv(self) -> list[str]:
        return [a for name, values in self.params.items() for a in ("--param", f"{name}={','.join(map(str, values))}")]

    def plan(self, objectives: list[str]) -> list[Run]:
        settings, options = sweepable(), set().union(*map(_options, objectives))
        unknown = [n for n in self.params if n not in settings and n not in options]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; valid: settings {sorted(settings)} or options of "
                             f"{','.join(objectives)}: {sorted(options) or 'none'}")
        runs = []
        for name, values in self.params.items():
            for obj in objectives:
                for v in values:
                    try:
                        x = float(v)
                    except ValueError:
                        raise ValueError(f"--param {name}: '{v}' is not a number") from None
                    if name in settings or name in _options(obj):
                        runs.append(Run(obj, name, x, {name: x}))
                    else:
                        runs.append(Run(obj, name, x, None, f"skipped: {obj} has no option '{name}'"))
        return runs


STUDIES = {"imbalance": Imbalance, "sensitivity": Sensitivity}


def _mean(rows: list[dict], key: str) -> float:
    return sum(float(r[key]) for r in rows) / len(rows)


def _std(rows: list[dict], key: str) -> float:
    """The sample standard deviation over seeds (the project's one convention, `cmr_demo.stats`)."""
    from cmr_demo.stats import summary
    return summary(float(r[key]) for r in rows)["std"]


def figure(study, rows: list[dict], title: str) -> go.Figure:
    """One panel per facet (modality / parameter), one line per objective (mean over seeds, bars +-1 sample std);
    hover shows both directions, which is where objectives differ most."""
    done = [r for r in rows if r.get("avg_map") not in (None, "")]
    facets = list(dict.fromkeys(r[study.facet] for r in rows))
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    fig = make_subplots(rows=1, cols=max(1, len(facets)), subplot_titles=facets, horizontal_spacing=0.06)
    for col, facet in enumerate(facets, start=1):
        for k, obj in enumerate(objectives):
            groups: dict[float, list[dict]] = {}
            for r in done:
                if r[study.facet] == facet and r["objective"] == obj:
                    groups.setdefault(float(r[study.x_name]), []).append(r)
            xs = sorted(groups)
            fig.add_trace(go.Scatter(
                x=xs, y=[_mean(groups[x], "avg_map") for x in xs], mode="lines+markers", name=obj, legendgroup=obj,
                showlegend=col == 1, line={"color": PALETTE[k % len(PALETTE)]},
                error_y={"type": "data", "array": [_std(groups[x], "avg_map") for x in xs], "thickness": 1, "width": 3},
                customdata=[(_mean(groups[x], "i2t_map"), _mean(groups[x], "t2i_map"), len(groups[x])) for x in xs],
                hovertemplate=f"<b>{obj}</b><br>{facet} %{{x}}<br>avg %{{y:.4f}}<br>I->T %{{customdata[0]:.4f}}"
                              "<br>T->I %{customdata[1]:.4f}<br>seeds %{customdata[2]}<extra></extra>"), row=1, col=col)
        xs = [float(r[study.x_name]) for r in rows if r[study.facet] == facet]
        log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 10  # lr, embed dims: even spacing on a log axis
        fig.update_xaxes(type="log" if log else "linear", title_text=study.x_title if col == 1 else None,
                         row=1, col=col)
    fig.update_yaxes(title_text="avg mAP@all (test)", row=1, col=1)
    fig.update_layout(title=title, height=420, template="plotly_white", hovermode="closest",
                      margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def save_figure(fig: go.Figure, base: Path) -> None:
    """HTML always (plotly.js from the CDN keeps it small); PNG when kaleido finds a Chrome, never fatal.

    Why never fatal: the PNG is a convenience copy of the HTML figure, and a study's hours of training
    must not be lost to a missing browser at the very end (the CSV is already written by then)."""
    fig.write_html(base.with_suffix(".html"), include_plotlyjs="cdn")
    try:
        fig.write_image(base.with_suffix(".png"), width=1200, height=460)
    except Exception as err:  # noqa: BLE001  (ImportError without kaleido, kaleido's own errors without Chrome)
        print(f"note: {base.with_suffix('.png')} not written ({type(err).__name__}: {str(err)[:200]}); PNG "
              "export needs `pip install kaleido` and Chrome or Chromium (e.g. `apt install chromium`)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cmr_demo.experiments.study", description=__doc__, formatter_class=HelpFormatter
    )
    sub = p.add_subparsers(dest="study", required=True)
    for name, cls in STUDIES.items():
        s = sub.add_parser(name, help=(cls.__doc__ or "").split("\n")[0],
                           description=cls.__doc__ + "\nEvery `cmr_demo.train` setting applies to every run.",
                           formatter_class=HelpFormatter)
        add_job_args(s, objectives="pcl,ce")
        s.add_argument("--seeds", type=int, default=1, help="seeds S..S+N-1 per setting, from --seed S")
        s.add_argument("--out", default="runs/study", help="folder for <study>.csv/.html/.png")
        s.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (many cores or a "
                                                           "GPU)")
        s.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run each training run as a Ray task: on a new local Ray instance, or on the cluster at "
                            "ADDRESS (host:port, or 'auto'); needs pip install '.[ray]'")
        s.add_argument("--settings-from", default=None, metavar="BUNDLE",
                       help="train each objective at the setting this bundle chose for it on validation (its margin, "
                            "scale or temperature); --objective-opt and swept options go over it")
        s.add_argument("--resume", action="store_true",
                       help="keep the rows already in OUT/<study>.csv and train only the missing ones")
        s.add_argument("--replot", action="store_true",
                       help="no training: redraw DIR/<study>.html/.png from DIR/<study>.csv (e.g. where kaleido is)")
        cls.add_arguments(s)
    return p


def replot(study, base: Path) -> list[dict]:
    """Redraw a finished study's figures from its CSV (and the title in its JSON); nothing is trained."""
    import json
    if not base.with_suffix(".csv").is_file():
        raise ValueError(f"{base.with_suffix('.csv')} does not exist: run the study first (without --replot)")
    rows = load_csv(base.with_suffix(".csv"))
    meta = base.with_suffix(".json")
    title = json.loads(meta.read_text()).get("title", base.name) if meta.is_file() else base.name
    save_figure(figure(study, rows, title), base)
    print(f"redrew {base}.html (and .png where kaleido can) from {len(rows)} rows")
    return rows


def _tasks(base: TrainJob, runs: list, settings: dict | None = None) -> tuple[dict[str, TrainJob], list[str | None]]:
    """({key: job} to train, each planned (run, seed)'s key or None for a recorded skip). Runs whose effective
    settings are equal train once: fraction 1 of text and of image, or a swept value equal to the default
    (temperature=1 and lr=1e-4 are both pcl's defaults)."""
    tasks: dict[str, TrainJob] = {}
    keys: list[str | None] = []
    for run, seed in runs:
        job = None if run.changes is None else job_for(base, run, seed, settings)
        keys.append(None if job is None else effective_settings(job))
        if job is not None:
            tasks.setdefault(keys[-1], job)
    return tasks, keys


def _finished(runs: list, keys: list, csv_path: Path) -> dict[str, dict]:
    """{task key: metrics} of the planned runs an earlier run of the study wrote to `csv_path` (a study cut
    short, or with failed runs)."""
    earlier, done = finished_rows(csv_path), {}
    for (run, seed), key in zip(runs, keys):
        row = earlier.get((run.objective, str(run.facet), str(run.x), str(seed)))
        if key is not None and row is not None:
            done[key] = row
    return done


class StudyFailed(ValueError):
    """Runs that failed (on Ray: twice); the finished ones are in the study's CSV. A ValueError so the command line
    says it in one line (cli.run), with what to do next."""


def run_study(study, base: TrainJob, seeds: int = 1, out: str | Path = "runs/study", jobs: int = 1,
              command: list[str] | None = None, ray: str | None = None, resume: bool = False,
              settings: dict[str, dict] | None = None) -> list[dict]:
    """Run `study` (Imbalance or Sensitivity) around `base` for `seeds` seeds; returns its rows, also written to
    OUT/<study>.csv (as runs finish), .html/.png and .json. `ray`: on Ray (a cluster's address, or "" for a local
    instance). `resume`: rows in OUT/<study>.csv are kept. `settings`: objectives' options (`settings_from`)."""
    name = next(k for k, v in STUDIES.items() if isinstance(study, v))
    if ray is not None:  # before any data is read: where Ray is missing, say so at once
        ray_module()
    started, out, first = time.perf_counter(), Path(out), base.train.seed
    out.mkdir(parents=True, exist_ok=True)
    runs = [(run, seed) for run in study.plan(list(base.objectives.names)) for seed in range(first, first + seeds)]
    tasks, keys = _tasks(base, runs, settings)
    done = _finished(runs, keys, out / f"{name}.csv") if resume else {}  # only what is missing trains
    tasks = {k: v for k, v in tasks.items() if k not in done}
    if done:
        print(f"resuming: {len(done)} runs already in {out / name}.csv, {len(tasks)} to train")

    def rows_so_far() -> list[dict]:
        """Rows in plan order whose run has finished (or is a recorded skip)."""
        rows = []
        for (run, seed), key in zip(runs, keys):
            if key is not None and key not in done:
                continue
            row = {"objective": run.objective, study.facet: run.facet, study.x_name: run.x, "seed": seed}
            row.update(done.get(key, {}))
            rows.append({**row, **{k: row.get(k, "") for k in METRICS}, "note": run.note})
        return rows

    if base.train.select_on == "test":
        print(TEST_PROTOCOL_NOTE)  # once for the study (its runs are quiet)
    data = study_data(base, ray) if tasks and (jobs <= 1 or ray is not None) else None
    if data is not None and data.raw.report.total:
        print(data.raw.report.summary())
    bar = tqdm(total=len(tasks), desc=name + (" (ray)" if ray is not None else ""), unit="run", file=sys.stderr)
    failed = []
    for key, metrics in run_all(tasks, jobs, data, ray):
        if isinstance(metrics, dict):
            done[key] = metrics
            save_csv(out / f"{name}.csv", rows_so_far())  # a study cut short keeps every finished run
        else:
            failed.append(metrics)
        bar.update()
    bar.close()
    rows = rows_so_far()
    if not tasks or not done:  # every row a recorded skip, or nothing trained: the loop above wrote nothing
        save_csv(out / f"{name}.csv", rows)
    if failed:
        raise StudyFailed(f"{len(failed)} of {len(tasks)} runs failed after a retry: " + "; ".join(
            f"{f.key} ({f.error})" for f in failed[:5]) + f". The {len(rows)} finished rows are in {out / name}.csv; "
            f"run the same command with --resume to train only the missing ones")
    title = f"{name} on {base.data.spec} ({seeds} seed{'s' * (seeds > 1)})"
    save_figure(figure(study, rows, title), out / name)
    command = command or ["python", "-m", "cmr_demo.experiments.study", name, *study.argv(),
                          *base.argv(run_options=False), "--seeds", str(seeds), "--out", str(out), "--jobs", str(jobs)]
    save_json(out / f"{name}.json", {**stamp(command), "title": title, "seeds": seeds, "rows": len(rows),
                                     "settings": settings or {}, "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {out / name}.csv, .json and .html ({len(rows)} rows)")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Run a study from its command line; returns its rows (also in DIR/<study>.csv)."""
    args = build_parser().parse_args(argv)
    if args.replot:
        return replot(STUDIES[args.study], Path(args.out) / args.study)
    command = ["python", "-m", "cmr_demo.experiments.study", *(argv if argv is not None else sys.argv[1:])]
    return run_study(STUDIES[args.study].from_args(args), job_from_args(args, None), args.seeds, args.out, args.jobs,
                     command, ray=args.ray, resume=args.resume,
                     settings=settings_from(args.settings_from) if args.settings_from else None)


if __name__ == "__main__":
    from cmr_demo.cli import run
    sys.exit(run(main))
