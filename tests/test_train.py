"""The training CLI, called in-process and as a subprocess, on synthetic features."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmr_demo.files import load_json
from cmr_demo.train.heads import load_heads
from cmr_demo.train.stage import STATE_FILE, main

SMALL = ["--data", "synthetic:600", "--hidden-dim", "32", "--embed-dim", "64", "--lr", "1e-3",
         "--batch-size", "100", "--quiet", "--state-every", "0"]  # a few seconds per objective on 2 cores;
# the kill tests below count on a resume state after every epoch


def run(tmp_path, *extra, out="run"):
    return main([*SMALL, "--out", str(tmp_path / out), *extra])


def changed_share(a: dict, b: dict) -> float:
    """Share of test queries (both directions) whose AP differs between two runs' metrics."""
    pa = [*a["per_query_ap"]["i2t"], *a["per_query_ap"]["t2i"]]
    pb = [*b["per_query_ap"]["i2t"], *b["per_query_ap"]["t2i"]]
    return sum(x != y for x, y in zip(pa, pb)) / len(pa)


@pytest.mark.slow  # trains every objective for real through the CLI
def test_every_objective_far_above_chance(tmp_path):
    rows = run(tmp_path, "--objective", "all,pcl+0.5*tl", "--epochs", "25")
    assert len(rows) == 10
    for name, m in rows.items():  # ml (pull only) collapses by design; the rest go far higher
        assert m["avg_map"] > 2 * m["chance_map"], (name, m["avg_map"], m["chance_map"])
    assert rows["pcl"]["avg_map"] > 0.6


def test_outputs_and_their_contents(tmp_path):
    run(tmp_path, "--objective", "pcl", "--epochs", "8")
    out = tmp_path / "run" / "pcl"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "heads.safetensors", "history.csv",
                                                     "metrics.json", "objective.safetensors"]
    metrics = load_json(out / "metrics.json")
    for key in ("i2t_map", "t2i_map", "avg_map", "per_class_ap", "p_at_k", "per_query_ap", "best_epoch", "val"):
        assert key in metrics
    assert len(metrics["per_query_ap"]["i2t"]) == 150  # the test split of synthetic:600
    config = load_json(out / "config.json")
    assert config["train"]["lr"] == 1e-3 and config["heads"]["embed_dim"] == 64
    assert config["features"]["text"] == "precomputed:synthetic:600"
    assert config["data"]["val_source"].startswith("carved from train")
    heads = load_heads(out / "heads.safetensors", image_dim=64, text_dim=48)
    assert heads.cfg.hidden_dim == 32
    assert (out / "history.csv").read_text().count("\n") == 1 + metrics["epochs_run"]


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    a = run(tmp_path, "--epochs", "5", "--objective", "tl", out="a")["tl"]
    b = run(tmp_path, "--epochs", "5", "--objective", "tl", out="b")["tl"]
    c = run(tmp_path, "--epochs", "5", "--objective", "tl", "--seed", "1", out="c")["tl"]
    assert a["avg_map"] == b["avg_map"] and a["per_query_ap"] == b["per_query_ap"]
    assert changed_share(a, c) > 0.5 and c["avg_map"] > 2 * c["chance_map"]  # another start, as good a model


def test_select_on_test_says_so_and_uses_all_training_data(tmp_path, capsys):
    m = run(tmp_path, "--epochs", "3", "--select-on", "test")["pcl"]
    assert "paper's protocol" in capsys.readouterr().out
    assert "val" not in m
    assert load_json(tmp_path / "run" / "pcl" / "config.json")["data"]["sizes"] == {"train": 450, "test": 150}


def test_text_fraction_changes_training(tmp_path):
    full = run(tmp_path, "--epochs", "4", out="full")["pcl"]
    part = run(tmp_path, "--epochs", "4", "--text-fraction", "0.3", out="part")["pcl"]
    assert changed_share(full, part) > 0.5  # most queries rank differently
    history = (tmp_path / "part" / "pcl" / "history.csv").read_text().splitlines()
    assert load_json(tmp_path / "part" / "pcl" / "config.json")["train"]["text_fraction"] == 0.3 and len(history) == 5
    with pytest.raises(ValueError, match=r"text_fraction must be in \(0, 1\]"):
        run(tmp_path, "--epochs", "1", "--text-fraction", "0", out="zero")


def test_objective_options_reach_the_objective(tmp_path):
    a = run(tmp_path, "--epochs", "3", "--objective", "tl", out="a")["tl"]
    b = run(tmp_path, "--epochs", "3", "--objective", "tl", "--objective-opt", "margin=1.0", out="b")["tl"]
    assert changed_share(a, b) > 0.5
    assert load_json(tmp_path / "b" / "tl" / "config.json")["train"]["objective_options"] == {"margin": 1.0}


def test_a_misspelt_option_is_refused_naming_the_valid_ones(tmp_path):
    """`margn=0.3` used to train and record {}: now nothing trains and the message lists the options."""
    for argv in (["--objective", "pcl", "--objective-opt", "margn=0.3"],
                 ["--objective", "pcl,tl", "--objective-opt", "margn=0.3"]):
        with pytest.raises(ValueError, match=r"'margn'.*their options: \[.*'(temperature|margin)'"):
            run(tmp_path, *argv, out="typo")
    assert not (tmp_path / "typo").exists()
    with pytest.raises(ValueError, match="KEY=VALUE"):
        run(tmp_path, "--objective-opt", "margin", out="typo")


def test_the_stage_from_python_is_the_command_line(tmp_path):
    """A TrainJob built in Python trains exactly what its recorded command line trains, and that command line
    reads back into the same job (config.json's `command` is runnable)."""
    from dataclasses import replace

    from cmr_demo.train.heads import HeadConfig
    from cmr_demo.train.spec import ObjectiveSpec
    from cmr_demo.train.stage import DataConfig, TrainJob, parse_job, train
    from cmr_demo.train.fit import TrainConfig
    job = TrainJob(DataConfig("synthetic:600", val_fraction=0.2), ObjectiveSpec.parse("pcl,tl", {"margin": 0.3}),
                   TrainConfig(epochs=3, lr=1e-3, batch_size=100), HeadConfig(hidden_dim=32, embed_dim=64,
                                                                              standardize=False),
                   out=str(tmp_path / "py"), quiet=True)
    assert parse_job(job.argv()) == job
    ours = train(job)
    command = load_json(tmp_path / "py" / "tl" / "config.json")["command"]
    assert command[:3] == ["python", "-m", "cmr_demo.train"] and "--no-standardize" in command
    at = command.index("--out")
    theirs = main([*command[3:at], "--out", str(tmp_path / "cli"), *command[at + 2:]])
    assert {k: v["avg_map"] for k, v in ours.items()} == {k: v["avg_map"] for k, v in theirs.items()}
    assert load_json(tmp_path / "py" / "tl" / "config.json")["train"]["objective_options"] == {"margin": 0.3}
    assert load_json(tmp_path / "py" / "pcl" / "config.json")["train"]["objective_options"] == {}  # tl's only
    alone = ObjectiveSpec.parse("pcl", job.objectives.options_for("pcl"))
    assert train(replace(job, out=None, objectives=alone))["pcl"]["avg_map"] == ours["pcl"]["avg_map"]


def test_existing_runs_are_never_overwritten(tmp_path):
    run(tmp_path, "--epochs", "2")
    with pytest.raises(ValueError, match="--resume"):
        run(tmp_path, "--epochs", "2")
    assert run(tmp_path, "--epochs", "2", "--resume")["pcl"]["epochs_run"] == 2


def _interrupt_after(args, state_file: Path, epochs_done: int, timeout: float = 120) -> None:
    """Run the CLI in a subprocess and SIGKILL it once its state file records `epochs_done` epochs."""
    from cmr_demo.files import load_tensors
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "cmr_demo.train", *args, "--patience", "1000"]
                            if "--patience" not in args else [sys.executable, "-m", "cmr_demo.train", *args], env=env)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if state_file.is_file():
                try:
                    if json.loads(load_tensors(state_file)[1]["progress"])["epoch"] + 1 >= epochs_done:
                        break
                except Exception:  # noqa: BLE001  (file replaced under us: read again)
                    pass
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be interrupted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow  # kill -9 of a real training process
def test_kill_9_then_resume_gives_identical_metrics(tmp_path):
    args = [*SMALL, "--epochs", "40", "--patience", "1000", "--objective", "pcl"]
    whole = main([*args, "--out", str(tmp_path / "whole")])["pcl"]
    out = tmp_path / "killed"
    _interrupt_after([*args, "--out", str(out)], out / "pcl" / STATE_FILE, epochs_done=5)
    assert not (out / "pcl" / "metrics.json").exists()
    (out / "pcl" / ".train_state.safetensors.junk.tmp").write_bytes(b"half a write")  # a killed writer's leftover
    resumed = main([*args, "--out", str(out), "--resume"])["pcl"]
    assert resumed["per_query_ap"] == whole["per_query_ap"] and resumed["avg_map"] == whole["avg_map"]


def test_resume_refuses_a_state_with_other_settings(tmp_path):
    args = [*SMALL, "--epochs", "40", "--patience", "1000", "--objective", "pcl", "--out", str(tmp_path / "r")]
    _interrupt_after(args, tmp_path / "r" / "pcl" / STATE_FILE, epochs_done=2)
    with pytest.raises(ValueError, match="other settings"):
        main([*args, "--resume", "--lr", "5e-4"])


def test_raw_images_and_captions_through_a_real_backbone(tmp_path):
    """shapes (PIL images + captions) -> nano-clip features (cached) -> heads -> metrics, in one CLI call."""
    args = ["--data", "shapes:200", "--backbone", "nano-clip:random", "--epochs", "3", "--hidden-dim", "16",
            "--embed-dim", "32", "--quiet", "--objective", "pcl"]
    m = main([*args, "--out", str(tmp_path / "a")])["pcl"]
    config = load_json(tmp_path / "a" / "pcl" / "config.json")
    assert config["features"]["kind"] == "backbone" and config["features"]["name"] == "nano-clip:random"
    assert config["heads"]["image_dim"] == 32 and m["avg_map"] > m["chance_map"] + 0.05
    with pytest.raises(ValueError, match="trained on features from 'nano-clip:random'"):
        load_heads(tmp_path / "a" / "pcl" / "heads.safetensors", source="tiny-clip:random")


# Runs the training CLI with os.fsync / os.replace patched to SIGKILL the process on the Nth call: the
# kill lands inside atomic_write_bytes, with the temporary file written but not yet renamed into place.
KILL_IN_WRITE = """
import os, signal, sys
import cmr_demo.files as checkpoint
target, nth = sys.argv[1], int(sys.argv[2])
real = getattr(os, target)
calls = [0]
def dying(*args, **kwargs):
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(checkpoint.os, target, dying)
from cmr_demo.train.stage import main
main(sys.argv[3:])
"""


@pytest.mark.slow  # kill -9 of a real training process
@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_kill_9_inside_a_checkpoint_write_then_resume(tmp_path, target):
    """No half-written file is ever taken as the latest state: resuming ends with the uninterrupted metrics."""
    args = [*SMALL, "--epochs", "12", "--patience", "1000", "--objective", "ce"]
    whole = main([*args, "--out", str(tmp_path / "whole")])["ce"]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", KILL_IN_WRITE, target, "4", *args, "--out", str(out)], env=env,
                          capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftovers = list((out / "ce").glob(".*.tmp"))
    assert leftovers, "the kill should have left the temporary file of the interrupted write"
    assert not (out / "ce" / "metrics.json").exists()
    resumed = main([*args, "--out", str(out), "--resume"])["ce"]
    assert resumed["per_query_ap"] == whole["per_query_ap"] and resumed["avg_map"] == whole["avg_map"]


def test_skipped_items_are_reported_at_the_end_and_saved_with_the_metrics(tmp_path, capsys):
    """A manifest with a missing image and an empty caption: counted, listed by id, in metrics.json too."""
    from cmr_demo.data.shapes import render_item
    rows = ["image,text,label,split,id"]
    for i in range(60):
        image, caption, label = render_item(i)
        image.save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,\"{caption}\",{label},{['train', 'train', 'test'][i % 3]},item{i}")
    rows.append("gone.png,a red star,0,train,lost-image")
    rows.append("0.png,,0,train,no-text")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    args = ["--data", f"manifest:{tmp_path / 'data.csv'}", "--backbone", "nano-clip:random", "--epochs", "2",
            "--hidden-dim", "16", "--embed-dim", "16", "--quiet", "--objective", "ce", "--out", str(tmp_path / "run")]
    main(args)
    tail = capsys.readouterr().out.strip().splitlines()
    assert any("skipped 2 item(s)" in line for line in tail[-4:])  # the summary closes the run's output
    saved = load_json(tmp_path / "run" / "ce" / "metrics.json")["ingest"]
    assert saved["skipped_total"] == 2
    assert sorted(i for ids in saved["skipped"].values() for i in ids) == ["lost-image", "no-text"]
