"""Console scripts and `python -m cmr_demo.<stage>` exit the same way: 0 on success, one line for a user error."""
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cmr_demo import cli

ROOT = Path(__file__).resolve().parents[1]


def test_run_turns_results_and_user_errors_into_exit_statuses():
    assert (
        cli.run(lambda argv: {"metrics": 1}) == 0 and cli.run(lambda argv: 3) == 3 and cli.run(lambda argv: None) == 0
    )

    def bad(argv):
        raise ValueError("unknown data spec 'x'")
    with pytest.raises(SystemExit, match="^error: unknown data spec 'x'$"):
        cli.run(bad)


def test_every_console_script_names_a_stage_with_a_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert module == "cmr_demo.cli" and callable(getattr(cli, attr)), name
        runs, stage = cli.COMMANDS[attr]
        assert callable(importlib.import_module(stage).main), name
        as_module = ROOT / Path(*runs.split("."))
        assert (as_module / "__main__.py").is_file() or as_module.with_suffix(".py").is_file(), name


def test_python_dash_m_reports_a_user_error_in_one_line():
    out = subprocess.run([sys.executable, "-m", "cmr_demo.train", "--data", "nope:x", "--out", "unused"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.strip().startswith("error: unknown data spec 'nope:x'")
    assert "Traceback" not in out.stderr
