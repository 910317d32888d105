"""Where and how a result was made: date, machine, command and package versions, for every result file.

Why: a figure without its machine and command cannot be rerun or compared; `bench/report.py` prints
these beside each table it puts in the README.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

from cmr_demo.files import package_versions


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may use (the affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def machine() -> str:
    """'AMD EPYC, 2 cores, 24 GiB' (+ ', NVIDIA H200' when torch sees a GPU)."""
    text = f"{cpu_name()}, {cores()} cores, {ram_gib():.0f} GiB"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += ", " + torch.cuda.get_device_name(0)
    return text


def stamp(command: list[str]) -> dict:
    """{date, machine, command, versions} for a result written now by `command`."""
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "command": " ".join(command),
            "versions": package_versions()}


def save_result(base: str | Path, result: dict, body: str) -> str:
    """Write a benchmark's `result` (stamped: date, machine, command) to BASE.json and `body` under a line saying
    where and how it was measured to BASE.md; returns the markdown (what bench/report.py puts in the README)."""
    import json
    text = f"*{result['date']}, {result['machine']}; `{result['command']}`*\n\n{body}"
    Path(str(base) + ".json").write_text(json.dumps(result, indent=1))
    Path(str(base) + ".md").write_text(text + "\n")
    return text
