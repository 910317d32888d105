"""Start `python app.py` as a real subprocess on a free port and wait until it answers."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(bundle: Path | list[Path], log_path: Path, timeout_s: float = 90.0,
              temp_dir: Path | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str, float]:
    """(process, url, seconds to ready) for the app serving `bundle` (or several, the first the default); raises
    with the log if it fails.
    `temp_dir`: gradio's upload and cache folder for this process (GRADIO_TEMP_DIR), to measure it alone; `env`: more
    environment variables (e.g. CMR_BUNDLES with no bundle given)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
           **(env or {})}
    if temp_dir is not None:
        env["GRADIO_TEMP_DIR"] = str(temp_dir)
    log = open(log_path, "wb")
    start = time.perf_counter()
    bundles = [a for b in (bundle if isinstance(bundle, list) else [bundle]) for a in ("--bundle", str(b))]
    proc = subprocess.Popen([sys.executable, "app.py", *bundles, "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2):
                return proc, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"app not ready after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
