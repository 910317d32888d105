"""The study CLI on a tiny synthetic world: rows, skips, errors, and agreement with a plain training run."""
import contextlib
import csv
import importlib.util
import io
import json
import shutil

import pytest

from cmr_demo.experiments.study import main
from cmr_demo.train.stage import main as train

TINY = ["--data", "synthetic:300", "--epochs", "3", "--hidden-dim", "16", "--embed-dim", "16"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def imbalance(tmp_path_factory):
    """One small imbalance study shared by the tests below (six distinct runs: fraction 1 is trained once)."""
    out = tmp_path_factory.mktemp("imbalance")
    main(["imbalance", *TINY, "--objectives", "pcl,ce", "--fractions", "1,0.5", "--modality", "both",
          "--out", str(out)])
    return out


def test_imbalance_rows_and_figure(imbalance):
    rows = read_csv(imbalance / "imbalance.csv")
    keys = {(r["objective"], float(r["fraction"]), r["modality"]) for r in rows}
    assert len(rows) == len(keys) == 8
    assert keys == {(o, f, m) for o in ("pcl", "ce") for f in (1.0, 0.5) for m in ("text", "image")}
    assert all(0 < float(r["avg_map"]) <= 1 for r in rows)
    html = (imbalance / "imbalance.html").read_text()
    assert "cdn.plot.ly" in html and len(html) < 100_000  # plotly.js from the CDN, not inlined
    assert "I-\\u003eT" in html and "T-\\u003eI" in html  # both directions in the hover (JSON-escaped '>')
    meta = json.loads((imbalance / "imbalance.json").read_text())
    assert meta["command"].startswith("python -m cmr_demo.experiments.study imbalance --data synthetic:300")
    assert meta["machine"] and meta["date"] and meta["versions"]["torch"] and meta["rows"] == 8
    browser = any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome"))
    if importlib.util.find_spec("kaleido") is not None and browser:  # PNG export needs kaleido and a Chrome
        assert (imbalance / "imbalance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fraction_one_equals_plain_train_run(imbalance, tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        plain = train([*TINY, "--objective", "pcl", "--seed", "0", "--quiet", "--out", str(tmp_path)])["pcl"]
    row, = [r for r in read_csv(imbalance / "imbalance.csv")
            if (r["objective"], r["modality"], float(r["fraction"])) == ("pcl", "text", 1.0)]
    assert float(row["avg_map"]) == plain["avg_map"]  # repr round-trips a float exactly


def test_sensitivity_sweeps_flags_and_options_and_skips(tmp_path):
    main(["sensitivity", *TINY, "--objectives", "pcl,tl", "--param", "embed_dim=8,16", "--param", "margin=0.1,0.3",
          "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "sensitivity.csv")
    assert len(rows) == 8
    embed = [r for r in rows if r["parameter"] == "embed_dim"]
    assert {(r["objective"], float(r["value"])) for r in embed} == {(o, v) for o in ("pcl", "tl") for v in (8, 16)}
    assert all(r["avg_map"] for r in embed)
    margin = {r["objective"]: r for r in rows if r["parameter"] == "margin"}
    assert margin["tl"]["avg_map"] and not margin["tl"]["note"]
    assert margin["pcl"]["avg_map"] == "" and "skipped" in margin["pcl"]["note"] and "margin" in margin["pcl"]["note"]
    assert (tmp_path / "sensitivity.html").is_file()


def test_unknown_parameter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter.*warmup.*valid.*embed_dim.*temperature"):
        main(["sensitivity", *TINY, "--objectives", "pcl", "--param", "warmup=1,2", "--out", str(tmp_path)])
    assert not (tmp_path / "sensitivity.csv").exists()


def test_png_export_failure_is_a_note_not_a_crash(tmp_path, monkeypatch, capsys):
    """A missing kaleido or browser must not lose a finished study: HTML written, a note names the fix."""
    import plotly.graph_objects as go

    from cmr_demo.experiments.study import save_figure

    def no_browser(self, *args, **kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed")
    monkeypatch.setattr(go.Figure, "write_image", no_browser)
    save_figure(go.Figure(go.Scatter(x=[1, 2], y=[2, 1])), tmp_path / "s")
    assert (tmp_path / "s.html").is_file() and not (tmp_path / "s.png").exists()
    assert "apt install chromium" in capsys.readouterr().out


@pytest.mark.slow
def test_parallel_jobs_give_the_same_rows_as_one_process(imbalance, tmp_path):
    """--jobs 2 trains the same runs in worker processes; rows come back in plan order, same figures."""
    main(["imbalance", *TINY, "--objectives", "pcl,ce", "--fractions", "1,0.5", "--modality", "both",
          "--out", str(tmp_path), "--jobs", "2"])
    one, two = read_csv(imbalance / "imbalance.csv"), read_csv(tmp_path / "imbalance.csv")
    assert [(r["objective"], r["modality"], r["fraction"]) for r in one] == \
           [(r["objective"], r["modality"], r["fraction"]) for r in two]
    for a, b in zip(one, two):
        assert float(a["avg_map"]) == pytest.approx(float(b["avg_map"]), abs=1e-4)  # thread counts may differ


def test_replot_redraws_from_the_csv_without_training(imbalance, tmp_path, monkeypatch):
    import cmr_demo.experiments.runners as runners
    for suffix in (".csv", ".json"):
        shutil.copy(imbalance / f"imbalance{suffix}", tmp_path / f"imbalance{suffix}")
    monkeypatch.setattr(runners, "train", lambda *a, **k: pytest.fail("--replot must not train"))
    rows = main(["imbalance", "--data", "unused", "--out", str(tmp_path), "--replot"])
    assert len(rows) == 8 and (tmp_path / "imbalance.html").is_file()
    with pytest.raises(ValueError, match="run the study first"):
        main(["sensitivity", "--data", "unused", "--out", str(tmp_path), "--replot"])


def test_runs_with_equal_effective_settings_train_once():
    """A swept value equal to the default is the default run: temperature=1 and lr=1e-4 are both plain pcl."""
    from cmr_demo.experiments.study import Run, effective_settings, job_for
    from cmr_demo.train.stage import DataConfig, TrainJob
    base = TrainJob(DataConfig("synthetic:200"))

    def key(objective, changes=None, seed=0):
        return effective_settings(job_for(base, Run(objective, "", 0.0, changes or {}), seed))
    plain = key("pcl")
    assert key("pcl", {"temperature": 1.0}) == plain
    assert key("pcl", {"lr": 1e-4}) == plain
    assert key("pcl", {"temperature": 0.5}) != plain
    assert key("pcl", {"embed_dim": 64.0}) != plain
    assert key("pcl", seed=1) != plain
    assert key("ce") != plain
    with pytest.raises(ValueError, match="whole numbers"):
        key("pcl", {"embed_dim": 64.5})


def test_a_study_reads_its_data_once_and_runs_from_python(tmp_path, monkeypatch):
    """`run_study` over a TrainJob, no command line: 2 seeds x 2 fractions x 2 objectives train 6 distinct runs
    (fraction 1 is shared) on data read once, and each row is what a plain training job with those settings
    gives (the seed carves its own validation split)."""
    import cmr_demo.experiments.runners as runners
    import cmr_demo.experiments.study as study_module
    from cmr_demo.train.heads import HeadConfig
    from cmr_demo.train.spec import ObjectiveSpec
    from cmr_demo.train.stage import DataConfig, TrainJob, train as train_job
    from cmr_demo.train.fit import TrainConfig
    reads = []
    real = runners.read_data
    monkeypatch.setattr(runners, "read_data", lambda *a, **k: reads.append(a) or real(*a, **k))
    base = TrainJob(DataConfig("synthetic:300"), ObjectiveSpec.parse("pcl,ce"), TrainConfig(epochs=3),
                    HeadConfig(hidden_dim=16, embed_dim=16))
    rows = study_module.run_study(study_module.Imbalance([1.0, 0.5], "text"), base, seeds=2, out=tmp_path)
    assert len(reads) == 1 and len(rows) == 8
    row = next(r for r in rows if r["objective"] == "ce" and r["fraction"] == 0.5 and r["seed"] == 1)
    job = TrainJob(
        DataConfig("synthetic:300"),
        ObjectiveSpec.parse("ce"),
        TrainConfig(epochs=3, seed=1, text_fraction=0.5),
        HeadConfig(hidden_dim=16, embed_dim=16),
        quiet=True,
    )
    assert train_job(job)["ce"]["avg_map"] == row["avg_map"]
