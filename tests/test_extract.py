"""Sharded extraction: torchrun with 2 CPU processes on gloo fills the same cache a single process would."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmr_demo.data import load_data
from cmr_demo.backbone.features import cache_path, dataset_features

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--data", "shapes:200", "--backbone", "nano-clip:random", "--quiet", "--batch-size", "16"]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_fill_the_cache_like_one(tmp_path):
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous (port 0 does not work with torchrun)
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "cmr_demo.backbone.extract", *ARGS, "--backend", "gloo", "--cache-dir", str(sharded)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "extracted 140 items on 2 process(es)" in run.stdout  # the train split, sharded over 2 ranks
    dataset = load_data("shapes:200")
    for split in dataset.splits().values():
        assert cache_path(split, "nano-clip:random", sharded).is_file()
    from_cache, _ = dataset_features(dataset, "nano-clip:random", cache_dir=sharded, progress=False)
    fresh, _ = dataset_features(dataset, "nano-clip:random", cache_dir=single, progress=False)
    for name in fresh:
        for a, b in zip(from_cache[name], fresh[name]):
            np.testing.assert_allclose(a, b, atol=1e-5)  # same rows, same order as one process
    again = subprocess.run(
        [sys.executable, "-m", "cmr_demo.backbone.extract", *ARGS, "--cache-dir", str(sharded)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert "train: cached" in again.stdout
