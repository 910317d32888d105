"""Studies on Ray (`--ray`): the local runner's rows, a killed worker's run re-done, a failing run named with the
finished rows kept, `--resume`; and Ray never imported unless asked. Each test starts Ray itself (2 CPUs)."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cmr_demo.experiments import study as study_module

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[ray]'")
pytestmark = pytest.mark.slow
TINY = ["--data", "synthetic:300", "--epochs", "3", "--hidden-dim", "16", "--embed-dim", "16"]
STUDY = ["imbalance", *TINY, "--objectives", "pcl,ce", "--fractions", "1,0.5", "--modality", "both"]
SAME = ("objective", "modality", "fraction", "seed", "i2t_map", "t2i_map", "avg_map", "best_epoch", "epochs_run")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def same(rows_: list[dict]) -> list[tuple]:
    return [tuple(r[k] for k in SAME) for r in rows_]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    study_module.main([*STUDY, "--out", str(out)])
    return rows(out / "imbalance.csv")


def test_a_study_on_ray_gives_the_local_runners_rows(local_ray, serial, tmp_path):
    """Every row, metric for metric, equals the one-at-a-time runner's (timings aside), with the same files."""
    study_module.main([*STUDY, "--out", str(tmp_path), "--ray"])
    assert same(rows(tmp_path / "imbalance.csv")) == same(serial)
    assert {p.name for p in tmp_path.iterdir()} >= {"imbalance.csv", "imbalance.json", "imbalance.html"}


def worker_pids(name: str) -> list[int]:
    """Processes whose title Ray set to a running task of this name ("ray::<name>")."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if name in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_a_killed_worker_mid_study_loses_no_row(local_ray, serial, tmp_path):
    """A worker killed while it trains a run: Ray re-does that run, and the study ends with every row."""
    killed = []

    def kill_one():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in worker_pids("ray::study run"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)
    killer = threading.Thread(target=kill_one)
    killer.start()
    study_module.main([*STUDY, "--out", str(tmp_path), "--ray", "--epochs", "400", "--patience", "400"])
    killer.join()
    assert killed, "no worker was seen training"
    got = rows(tmp_path / "imbalance.csv")
    assert len(got) == len(serial) and all(r["avg_map"] != "" for r in got)


def test_a_run_that_fails_twice_is_named_and_the_finished_rows_are_kept_then_resume(local_ray, tmp_path):
    """lr=1e30 blows up (a non-finite loss stops the run) on its first try and on its retry: the study says which
    run, keeps every other row, and --resume trains only what is missing."""
    sweep = ["sensitivity", *TINY, "--objectives", "pcl", "--param", "lr=0.001,1e30", "--out", str(tmp_path)]
    with pytest.raises(study_module.StudyFailed, match=r"1 of 2 runs failed after a retry: .*lr.*--resume"):
        study_module.main([*sweep, "--ray"])
    kept = rows(tmp_path / "sensitivity.csv")
    assert [r["value"] for r in kept] == ["0.001"] and kept[0]["avg_map"] != ""
    # resume: the finished row is kept as it was, the plan's new value trains, the failing one is tried again
    with pytest.raises(study_module.StudyFailed, match=r"1 of 2 runs"):
        study_module.main([*sweep[:-4], "--param", "lr=0.001,0.01,1e30", "--out", str(tmp_path), "--ray", "--resume"])
    again = rows(tmp_path / "sensitivity.csv")
    assert [r["value"] for r in again] == ["0.001", "0.01"] and again[0] == kept[0]


def test_ray_is_imported_only_when_asked_and_its_absence_is_one_clear_line(tmp_path, monkeypatch):
    """Importing the studies, the bundle builder, the page and the API never imports Ray; --ray without it installed
    is one line saying how to install it."""
    code = ("import sys\nimport cmr_demo.experiments.study, cmr_demo.bundle.build, cmr_demo.ui.page, "
            "cmr_demo.serve.api\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1],
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    from cmr_demo.cli import run
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    with pytest.raises(SystemExit, match=r"--ray needs Ray, which is not installed: pip install '\.\[ray\]'"):
        run(study_module.main, [*STUDY, "--out", str(tmp_path), "--ray"])


def test_a_bundle_built_on_ray_verifies_and_equals_the_local_build(local_ray, tmp_path):
    """The same job built locally and with `ray=""`, each with an empty feature cache of its own (so the Ray build's
    pictures and texts go through Ray Data): the Ray bundle verifies, and every objective's metrics and every tensor
    equal the local build's. Both are built here, at the same torch thread count (the count the Ray tasks copy)."""
    from dataclasses import replace

    from safetensors import safe_open

    from cmr_demo.bundle.build import build
    from cmr_demo.bundle.verify import verify
    from conftest import quick_job
    job = quick_job("shapes:200", "pcl,ce,pcl+0.5*tl", "nano-clip:random")

    def built(name: str, **ray) -> dict:
        cached = replace(job, features=replace(job.features, cache_dir=str(tmp_path / f"cache-{name}")))
        manifest = build(cached, tmp_path / name, **ray)
        assert any((tmp_path / f"cache-{name}").iterdir())  # extracted by this build, not read from another's cache
        return manifest
    local, on_ray = built("local"), built("ray", ray="")
    assert verify(tmp_path / "ray") == []
    assert on_ray["objectives"] == local["objectives"]
    for rel in [f for f in local["files"] if f.endswith(".safetensors")]:
        with safe_open(tmp_path / "local" / rel, "np") as a, safe_open(tmp_path / "ray" / rel, "np") as b:
            assert a.keys() == b.keys(), rel
            for key in a.keys():
                if "objective.safetensors" in rel or "objectives/" in rel and "embeddings" not in rel:
                    # trained weights: equal up to the last float bits, which the torch thread count can change
                    # (in this test process FAISS may have set OpenMP's count under torch's; a CLI build is exact)
                    assert np.allclose(a.get_tensor(key), b.get_tensor(key), rtol=1e-5, atol=1e-7), (rel, key)
                else:  # extracted features (through Ray Data), and everything derived from them: exact
                    assert (a.get_tensor(key) == b.get_tensor(key)).all(), (rel, key)
